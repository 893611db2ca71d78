//! A restarted master does not call replicas missing before the chunkservers have reported to
//! it: while it waits (chunkservers stopped), `status` shows them "unknown", `fsck` says "not
//! known yet" (non-zero exit, no AT RISK); once they resume, their first heartbeat brings a
//! full report (the master asks for one) and fsck is healthy at once.
mod common;

use common::*;
use std::time::{Duration, Instant};

fn shale(m: &[String], args: &[&str]) -> (i32, String, String) {
    let o = shale_cmd()
        .args(["--masters", &m.join(",")])
        .args(args)
        .output()
        .expect("run shale");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn signal(cs: &ChunkProc, sig: i32) {
    let pid = cs.child.as_ref().map_or(0, |c| c.id() as i32);
    // SAFETY: a signal to our own child process.
    unsafe {
        libc::kill(pid, sig);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_waits_for_reports() {
    let mut cluster = Cluster::start(3, 1).await;
    let m = cluster.master_addrs();
    let (code, _, err) = shale(&m, &["touchz", "/x"]);
    assert_eq!(code, 0, "{err}");
    let mut put = shale_cmd()
        .args(["--masters", &m.join(","), "put", "-", "/f"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("put");
    {
        use std::io::Write;
        let mut i = put.stdin.take().expect("stdin");
        i.write_all(&vec![5u8; 3 << 20]).expect("write");
    }
    assert!(put.wait().expect("wait").success());
    for cs in &cluster.chunkservers {
        signal(cs, libc::SIGSTOP);
    }
    for mp in &mut cluster.masters {
        mp.kill9();
    }
    for mp in &mut cluster.masters {
        mp.restart();
    }
    leader(&m).await;
    let (_, out, _) = shale(&m, &["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(s["unreported"], 3, "{out}");
    assert!(
        s["chunkservers"]
            .as_array()
            .is_some_and(|a| a.iter().all(|c| c["state"] == "unknown")),
        "{out}"
    );
    let (code, out, err) = shale(&m, &["fsck", "/"]);
    assert_ne!(code, 0);
    assert!(
        out.contains("NOT KNOWN YET") && !out.contains("AT RISK"),
        "{out}"
    );
    assert!(err.contains("not known yet"), "{err}");
    for cs in &cluster.chunkservers {
        signal(cs, libc::SIGCONT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out, _) = shale(&m, &["fsck", "/"]);
        if code == 0 {
            assert!(out.contains("HEALTHY"), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "fsck never healthy: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
