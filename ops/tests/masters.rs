//! Three real `shale master` processes: acknowledged writes survive `kill -9` of the leader, a
//! new leader serves, the killed master restarts and catches up (through a snapshot: the log is
//! compacted meanwhile), a SIGSTOPped follower resumes and catches up, a master is added and
//! one removed at runtime, a master moves to a new address, bad input gets clear statuses, and
//! SIGTERM stops cleanly.
//!
//! One scenario in one test: multi-process tests run serially and never starve each other.
mod common;

use common::*;
use shale_proto::metapb::*;
use std::time::Instant;

async fn files_visible(addr: &str, paths: &[String]) {
    for p in paths {
        let s = follower_stat(addr, p)
            .await
            .unwrap_or_else(|e| panic!("{p} missing on {addr}: {e}"));
        assert!(!s.is_dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_survive_kill_stop_restart_and_membership_changes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let extra = ["--snapshot-every", "40", "--election-timeout-ms", "150"];
    let mut ms: Vec<MasterProc> = (1..=3)
        .map(|id| {
            MasterProc::start(
                id,
                "127.0.0.1:0",
                &tmp.path().join(format!("m{id}")),
                &extra,
            )
        })
        .collect();
    let addrs: Vec<String> = ms.iter().map(|m| m.addr.clone()).collect();
    bootstrap(&ms).await;
    // Safe to run twice.
    bootstrap(&ms).await;
    let leader_addr = leader(&addrs).await;

    // Acknowledged writes.
    on_leader(&addrs, |mut c| async move {
        c.mkdir(MkdirRequest {
            mode: None,
            request_id: None,
            path: "/d".into(),
            parents: true,
        })
        .await
    })
    .await
    .expect("mkdir");
    let mut acked = Vec::new();
    for i in 0..60 {
        let p = format!("/d/a{i}");
        touch(&addrs, &p).await.expect("touch");
        acked.push(p);
    }

    // kill -9 the leader; a new one serves; nothing acknowledged is lost.
    let li = ms
        .iter()
        .position(|m| m.addr == leader_addr)
        .expect("leader proc");
    let killed = Instant::now();
    ms[li].kill9();
    let live: Vec<String> = addrs
        .iter()
        .filter(|a| **a != leader_addr)
        .cloned()
        .collect();
    touch(&live, "/d/after-failover")
        .await
        .expect("write after failover");
    println!("failover: first write {:?} after kill -9", killed.elapsed());
    acked.push("/d/after-failover".into());
    let new_leader = leader(&live).await;
    assert_ne!(new_leader, leader_addr);
    all_there(&live, &acked, "failover").await;

    // More writes while it is down: past the snapshot interval, so the log gets compacted and
    // the restarted master must catch up from a snapshot.
    for i in 0..80 {
        let p = format!("/d/b{i}");
        touch(&live, &p).await.expect("touch");
        acked.push(p);
    }
    ms[li].restart();
    let target = status(&new_leader).await.applied_index;
    caught_up(&ms[li].addr, target).await;
    files_visible(&ms[li].addr, &acked).await;

    // SIGSTOP a follower, write, SIGCONT: it resumes and catches up.
    let leader_now = leader(&addrs).await;
    let fi = ms
        .iter()
        .position(|m| m.addr != leader_now)
        .expect("a follower");
    ms[fi].signal(libc::SIGSTOP);
    for i in 0..30 {
        let p = format!("/d/c{i}");
        touch(&addrs, &p)
            .await
            .expect("touch with a follower stopped");
        acked.push(p);
    }
    // The leader shows the stopped member as not answering (not as a healthy follower), and
    // the others as answering.
    let stopped = ms[fi].id;
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let st = status(&leader(&addrs).await).await;
        let silent = |m: &MasterInfo| m.heard_ms_ago.is_none_or(|ms| ms > 2_000);
        let me = st.id;
        let others_fine = st
            .masters
            .iter()
            .filter(|m| m.id != stopped && m.id != me)
            .all(|m| !silent(m));
        if st.masters.iter().any(|m| m.id == stopped && silent(m)) && others_fine {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stopped master passes for healthy: {st:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    ms[fi].signal(libc::SIGCONT);
    let target = status(&leader(&addrs).await).await.applied_index;
    caught_up(&ms[fi].addr, target).await;
    files_visible(&ms[fi].addr, &acked).await;

    // Add master 4 at runtime, then remove master 2.
    let m4 = MasterProc::start(4, "127.0.0.1:0", &tmp.path().join("m4"), &extra);
    let a4 = m4.addr.clone();
    let st = on_leader(&addrs, |mut c| {
        let a4 = a4.clone();
        async move { c.add_master(MasterRequest { id: 4, address: a4 }).await }
    })
    .await
    .expect("add master 4");
    assert!(st.masters.iter().any(|m| m.id == 4 && m.voter), "{st:?}");
    ms.push(m4);
    let all: Vec<String> = ms.iter().map(|m| m.addr.clone()).collect();
    let target = status(&leader(&all).await).await.applied_index;
    caught_up(&ms[3].addr, target).await;
    files_visible(&ms[3].addr, &acked).await;
    let st = on_leader(&all, |mut c| async move {
        c.remove_master(MasterRequest {
            id: 2,
            address: String::new(),
        })
        .await
    })
    .await
    .expect("remove master 2");
    assert!(st.masters.iter().all(|m| m.id != 2 || !m.voter), "{st:?}");
    let remaining: Vec<String> = ms
        .iter()
        .filter(|m| m.id != 2)
        .map(|m| m.addr.clone())
        .collect();
    touch(&remaining, "/d/after-membership")
        .await
        .expect("write after changes");

    // Master 3 moves: restarted at a new address on the same data, it is unreachable for the
    // group until the group is told — by a membership change, through the CLI.
    let i3 = ms.iter().position(|m| m.id == 3).expect("master 3");
    assert!(ms[i3].terminate(), "master 3 did not stop cleanly");
    let data3 = ms[i3].data.clone();
    ms[i3] = MasterProc::start(3, "127.0.0.1:0", &data3, &extra);
    let new3 = ms[i3].addr.clone();
    let others: Vec<String> = ms
        .iter()
        .filter(|m| m.id != 2 && m.id != 3)
        .map(|m| m.addr.clone())
        .collect();
    let out = common::shale_cmd()
        .args(["--masters", &others.join(",")])
        .args(["admin", "set-master-address", "3", &new3])
        .output()
        .expect("run shale");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&new3),
        "set-master-address: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let remaining: Vec<String> = others.iter().cloned().chain([new3.clone()]).collect();
    touch(&remaining, "/d/after-move")
        .await
        .expect("write after the move");
    let target = status(&leader(&remaining).await).await.applied_index;
    caught_up(&new3, target).await;
    files_visible(&new3, &["/d/after-move".to_string()]).await;

    bad_input(&remaining).await;

    for m in ms.iter_mut() {
        if m.id != 2 {
            assert!(
                m.terminate(),
                "master {} did not stop cleanly on SIGTERM",
                m.id
            );
        }
    }
}

async fn bad_input(addrs: &[String]) {
    use tonic::Code;
    let code = |r: Result<_, tonic::Status>| -> (Code, String) {
        let s: tonic::Status = match r {
            Ok::<(), _>(()) => panic!("must fail"),
            Err(s) => s,
        };
        (s.code(), s.message().to_string())
    };
    let before = status(&leader(addrs).await).await;
    let (c, m) = code(
        on_leader(addrs, |mut c| async move {
            c.mkdir(MkdirRequest {
                mode: None,
                request_id: None,
                path: "no/leading/slash".into(),
                parents: true,
            })
            .await
        })
        .await
        .map(|_| ()),
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("invalid path"), "{m}");
    let (c, m) = code(
        on_leader(addrs, |mut c| async move {
            c.create(CreateRequest {
                mode: None,
                request_id: None,
                path: "/d".into(),
                overwrite: true,
                replication: 0,
                chunk_size: 0,
                client_id: 1,
                lease_ms: 1000,
            })
            .await
        })
        .await
        .map(|_| ()),
    );
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    assert!(m.contains("is a directory"), "{m}");
    let (c, m) = code(
        on_leader(addrs, |mut c| async move {
            c.rename(RenameRequest {
                request_id: None,
                src: "/d".into(),
                dst: "/d/x/y".into(),
                no_replace: false,
            })
            .await
        })
        .await
        .map(|_| ()),
    );
    assert!(
        c == Code::FailedPrecondition || c == Code::NotFound,
        "{c:?} {m}"
    );
    on_leader(addrs, |mut c| async move {
        c.mkdir(MkdirRequest {
            mode: None,
            request_id: None,
            path: "/d/sub".into(),
            parents: true,
        })
        .await
    })
    .await
    .expect("mkdir sub");
    let (c, m) = code(
        on_leader(addrs, |mut c| async move {
            c.rename(RenameRequest {
                request_id: None,
                src: "/d".into(),
                dst: "/d/sub/d".into(),
                no_replace: false,
            })
            .await
        })
        .await
        .map(|_| ()),
    );
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    assert!(m.contains("own subtree"), "{m}");
    let (c, m) = code(
        on_leader(addrs, |mut c| async move {
            c.complete(CompleteRequest {
                chunk_digests: vec![],
                request_id: None,
                file: 999_999,
                client_id: 1,
                length: 0,
            })
            .await
        })
        .await
        .map(|_| ()),
    );
    assert_eq!(c, Code::NotFound, "{m}");
    // Complete without holding the lease.
    let f = on_leader(addrs, |mut c| async move {
        c.create(CreateRequest {
            mode: None,
            request_id: None,
            path: "/d/leased".into(),
            overwrite: false,
            replication: 1,
            chunk_size: 0,
            client_id: 7,
            lease_ms: 60_000,
        })
        .await
    })
    .await
    .expect("create");
    let (c, m) = code(
        on_leader(addrs, |mut c| async move {
            c.complete(CompleteRequest {
                chunk_digests: vec![],
                request_id: None,
                file: f.file,
                client_id: 8,
                length: 0,
            })
            .await
        })
        .await
        .map(|_| ()),
    );
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    assert!(m.contains("lease"), "{m}");
    // A chunk index that is not next (stale or ahead) is refused; so is a heartbeat from an
    // unknown chunkserver.
    let (c, m) = code(
        on_leader(addrs, |mut c| async move {
            c.abandon_chunk(AbandonChunkRequest {
                request_id: None,
                file: f.file,
                client_id: 7,
                index: 3,
            })
            .await
        })
        .await
        .map(|_| ()),
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    let (c, m) = code(
        client(&addrs[0])
            .await
            .heartbeat({
                let mut r = tonic::Request::new(HeartbeatRequest {
                    node_id: 77,
                    ..Default::default()
                });
                r.metadata_mut()
                    .insert("shale-node-id", "77".parse().expect("ascii"));
                r
            })
            .await
            .map(|_| ()),
    );
    assert_eq!(c, Code::NotFound, "{m}");
    // None of it changed the namespace.
    let after = status(&leader(addrs).await).await;
    assert_eq!(after.files, before.files, "refused requests created files");
    assert_eq!(after.dirs, before.dirs + 1, "only /d/sub was added");
}
