//! The pre-vote elects on its own: three real `shale master` processes with openraft's own
//! election timer disarmed (`--test-pre-vote-only`), so every campaign is one the pre-vote
//! started (`meta/src/raft/prevote.rs`). The group elects its first leader, elects another
//! after `kill -9` of the leader (one election: the term moves by one), keeps every
//! acknowledged write, and the killed master rejoins without unseating anyone.
//!
//! One scenario in one test: multi-process tests run serially and never starve each other.
mod common;

use common::*;
use std::time::{Duration, Instant};

async fn term_of(addr: &str) -> u64 {
    status(addr).await.term
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pre_vote_alone_elects_and_fails_over_in_one_election() {
    let tmp = tempfile::tempdir().expect("tmp");
    let extra = ["--test-pre-vote-only", "--election-timeout-ms", "150"];
    let mut ms = three_masters(tmp.path(), &extra);
    let addrs: Vec<String> = ms.iter().map(|m| m.addr.clone()).collect();
    bootstrap(&ms).await;
    // (The first leader is the master that initialized the group: openraft campaigns at once
    // there. Every later campaign needs the pre-vote.)
    let first = leader(&addrs).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let p = format!("/a{i}");
        touch(&addrs, &p).await.expect("touch");
        acked.push(p);
    }
    let term = term_of(&first).await;

    let li = ms
        .iter()
        .position(|m| m.addr == first)
        .expect("leader proc");
    let killed = Instant::now();
    ms[li].kill9();
    let live: Vec<String> = addrs.iter().filter(|a| **a != first).cloned().collect();
    touch(&live, "/after").await.expect("write after failover");
    println!("failover: first write {:?} after kill -9", killed.elapsed());
    acked.push("/after".into());
    let second = leader(&live).await;
    assert_ne!(second, first);
    // The survivor with the longer log (or, equal, the lower id) campaigned, and the other
    // agreed: one election, not a split vote and another round.
    assert_eq!(
        term_of(&second).await,
        term + 1,
        "one election after the kill"
    );
    all_there(&live, &acked, "failover").await;

    // The killed master comes back: it catches up and follows; the leader and term stay.
    ms[li].restart();
    let target = status(&second).await.applied_index;
    caught_up(&ms[li].addr, target).await;
    // Past its quiet rejoin and a few leases: nobody campaigned meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = status(&ms[li].addr).await;
    assert_eq!(st.leader_address, second, "the rejoined master follows");
    assert_eq!(
        term_of(&second).await,
        term + 1,
        "no election at the rejoin"
    );
    touch(&addrs, "/last").await.expect("write after rejoin");
}
