//! The chunkserver registry under junk and removal (issue: hardening, item 6): registrations
//! are validated; `shale admin remove-chunkserver` forgets a dead server but never one that is
//! alive or may hold the only replica of something; the leader forgets registrations silent for
//! long; a forgotten server that is still running registers again.
mod common;

use common::*;
use shale_proto::metapb::*;
use std::time::{Duration, Instant};
use tonic::Code;

async fn register(
    addrs: &[String],
    uuid: &str,
    address: &str,
    host: &str,
    capacity: u64,
) -> Result<u64, tonic::Status> {
    let (uuid, address, host) = (uuid.to_string(), address.to_string(), host.to_string());
    // Only chunkservers may register (as themselves).
    let cs = common::transport_as(shale_security::Role::Chunkserver, "junk");
    on_leader_as(&cs, addrs, |mut c| {
        let req = RegisterRequest {
            uuid: uuid.clone(),
            address: address.clone(),
            host: host.clone(),
            rack: String::new(),
            capacity_bytes: capacity,
            request_id: None,
        };
        async move { c.register_chunkserver(req).await }
    })
    .await
    .map(|r| r.node_id)
}

async fn servers(addrs: &[String]) -> Vec<ChunkserverInfo> {
    status(&leader(addrs).await).await.chunkservers
}

/// Waits (bounded) until `cond` holds for the leader's view of the chunkservers.
async fn wait_servers(addrs: &[String], what: &str, cond: impl Fn(&[ChunkserverInfo]) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = servers(addrs).await;
        if cond(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state_of(s: &[ChunkserverInfo], node: u64) -> Option<String> {
    s.iter()
        .find(|c| c.node_id == node)
        .map(|c| c.state.clone())
}

/// `shale admin remove-chunkserver NODE`: (exit ok, stderr).
fn remove_cli(addrs: &[String], node: u64) -> (bool, String) {
    let out = common::shale_cmd()
        .args([
            "--masters",
            &addrs.join(","),
            "admin",
            "remove-chunkserver",
            &node.to_string(),
        ])
        .output()
        .expect("run shale");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_junk_and_removal() {
    let mut cluster = Cluster::start_with(
        3,
        1,
        &[
            "--stale-after-ms",
            "500",
            "--dead-after-ms",
            "1200",
            "--safe-mode-ms",
            "300",
            "--heal-interval-ms",
            "200",
            "--forget-silent-ms",
            "4000",
        ],
        &[],
    )
    .await;
    let addrs = cluster.master_addrs();

    // Junk is refused with a reason.
    for (address, host, cap) in [
        ("0.0.0.0:7000", "h", 1 << 30),
        ("no-port", "h", 1 << 30),
        ("10.1.1.1:7000", "<b>x</b>", 1 << 30),
        ("10.1.1.1:7000", "h", u64::MAX),
        ("10.1.1.1:7000", "h", 0),
    ] {
        let e = register(&addrs, "junk0", address, host, cap)
            .await
            .expect_err(address);
        assert_eq!(
            e.code(),
            Code::InvalidArgument,
            "{address} {host} {cap}: {e:?}"
        );
    }
    // A plausible registration that never heartbeats.
    let junk = register(&addrs, "junk1", "10.255.255.1:7000", "junk", 1 << 30)
        .await
        .expect("register");

    // A file with one replica, on one server.
    let c = shale_client::Client::connect(&addrs, common::client_config())
        .await
        .expect("client");
    c.put("/one", &vec![9u8; 300_000][..], true, &|_| {})
        .await
        .expect("put");
    on_leader(&addrs, |mut m| async move {
        m.set_replication(SetReplicationRequest {
            path: "/one".into(),
            replication: 1,
            request_id: None,
        })
        .await
    })
    .await
    .expect("setrep 1");
    let deadline = Instant::now() + WAIT;
    let holder = loop {
        let l = c.chunk_locations("/one").await.expect("locations");
        if let [r] = l.chunks[0].replicas.as_slice() {
            break r.node_id;
        }
        assert!(
            Instant::now() < deadline,
            "never trimmed to 1 replica: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_node: std::collections::HashMap<u64, usize> = {
        let s = servers(&addrs).await;
        cluster
            .chunkservers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    s.iter()
                        .find(|c| c.address == p.addr)
                        .expect("listed")
                        .node_id,
                    i,
                )
            })
            .collect()
    };
    let holder_i = by_node[&holder];
    let (other, other_i) = by_node
        .iter()
        .map(|(n, i)| (*n, *i))
        .find(|(n, _)| *n != holder)
        .expect("other");

    // Alive: refused.
    let (ok, err) = remove_cli(&addrs, other);
    assert!(!ok && err.contains("alive"), "{err}");
    // Dead, but the only holder of /one's chunk: refused; the junk (contents unknown) too.
    cluster.chunkservers[holder_i].kill9();
    wait_servers(&addrs, "holder dead", |s| {
        state_of(s, holder).as_deref() == Some("dead")
    })
    .await;
    let (ok, err) = remove_cli(&addrs, holder);
    assert!(!ok && err.contains("only replica"), "{err}");
    let (ok, err) = remove_cli(&addrs, junk);
    assert!(!ok && err.contains("only replica"), "{err}");
    // Nor does the leader forget either of them while the chunk is unprotected.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = servers(&addrs).await;
    assert!(
        state_of(&s, junk).is_some() && state_of(&s, holder).is_some(),
        "{s:?}"
    );

    // The holder comes back (same data, same id): the junk is forgotten by the leader.
    let data = cluster.chunkservers[holder_i].data.clone();
    cluster.chunkservers[holder_i] =
        ChunkProc::start(&addrs, &format!("cs{}", holder_i + 1), &data);
    wait_servers(&addrs, "holder back", |s| {
        state_of(s, holder).as_deref() == Some("alive")
    })
    .await;
    wait_servers(&addrs, "junk forgotten", |s| state_of(s, junk).is_none()).await;

    // A stopped server holding nothing unique is removed by the operator; resumed, it registers
    // again under a new id.
    let pid = cluster.chunkservers[other_i]
        .child
        .as_ref()
        .expect("child")
        .id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    wait_servers(&addrs, "other dead", |s| {
        state_of(s, other).as_deref() == Some("dead")
    })
    .await;
    let (ok, err) = remove_cli(&addrs, other);
    assert!(ok, "{err}");
    assert!(state_of(&servers(&addrs).await, other).is_none());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let addr = cluster.chunkservers[other_i].addr.clone();
    wait_servers(&addrs, "re-registered", |s| {
        s.iter()
            .any(|c| c.address == addr && c.node_id != other && c.state == "alive")
    })
    .await;
    // Unknown node ids are NOT_FOUND.
    let (ok, err) = remove_cli(&addrs, 999);
    assert!(!ok && err.contains("not registered"), "{err}");
    let mut out = Vec::new();
    c.get("/one", &mut out, &|_| {}).await.expect("get");
    assert_eq!(out.len(), 300_000);
}
