//! Lease reads end with the lease (`meta/src/raft/lease.rs`). Three real `shale master`
//! processes. With both followers SIGSTOPped, the leader serves linearizable reads only within
//! half a leader lease of the last heartbeat they acknowledged, then refuses them. Once the
//! followers resume, it serves them again.
//!
//! One scenario in one test: multi-process tests run serially and never starve each other.
mod common;

use common::*;
use shale_proto::metapb::*;
use std::time::{Duration, Instant};

/// A linearizable stat of `path` on the master at `addr`; whether it was served (within a
/// second).
async fn served(addr: &str, path: &str) -> bool {
    let mut c = client(addr).await;
    let call = c.stat(PathRequest {
        path: path.into(),
        follower_read: false,
    });
    matches!(
        tokio::time::timeout(Duration::from_secs(1), call).await,
        Ok(Ok(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_followers_stops_serving_reads_when_its_lease_ends() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Leader lease 300 ms: reads are served for at most 150 ms after a quorum's heartbeat.
    let extra = ["--election-timeout-ms", "150"];
    let ms = three_masters(tmp.path(), &extra);
    let addrs: Vec<String> = ms.iter().map(|m| m.addr.clone()).collect();
    bootstrap(&ms).await;
    let leader_addr = leader(&addrs).await;
    touch(&addrs, "/x").await.expect("touch");
    assert!(served(&leader_addr, "/x").await);

    let followers: Vec<&MasterProc> = ms.iter().filter(|m| m.addr != leader_addr).collect();
    for f in &followers {
        f.signal(libc::SIGSTOP);
    }
    let stopped = Instant::now();
    // Reads right after the stop may still be served (no other leader can exist yet); none
    // may be served after the lease window, and the leader must start refusing.
    let mut last_served = None;
    let mut refused = false;
    while stopped.elapsed() < Duration::from_secs(3) {
        if served(&leader_addr, "/x").await {
            last_served = Some(stopped.elapsed());
        } else {
            refused = true;
            if stopped.elapsed() > Duration::from_millis(800) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for f in &followers {
        f.signal(libc::SIGCONT);
    }
    assert!(refused, "a leader without a quorum kept serving reads");
    // 150 ms of window, plus slack for a loaded machine; far below the 3 s watched.
    assert!(
        last_served.is_none_or(|t| t < Duration::from_millis(600)),
        "a read was served {last_served:?} after both followers stopped"
    );

    // The followers are back: reads are served again (by whoever leads now).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = leader(&addrs).await;
        if served(&l, "/x").await {
            break;
        }
        assert!(Instant::now() < deadline, "reads never served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
