//! Forgetting chunkservers: an operator's `remove-chunkserver`, and the leader expiring
//! registrations silent for [`MasterConfig::forget_after`](super::MasterConfig) (junk
//! registrations that never heartbeat, servers long gone).
//!
//! Removing a registration never deletes data (a server that comes back registers again under a
//! new id and reports its replicas), but an operator who removes a server usually wipes it next.
//! So a removal is refused while the server is alive or stale (stop it first), while the leader
//! is in safe mode (locations are not known yet), and while it may hold the only replica of a
//! chunk: a chunk with no replica on a server that is not dead, whose last known replica is on
//! that server — or any such chunk at all when that server never reported to this leader (its
//! contents are unknown).
use super::soft::{Liveness, Soft, Timeouts};
use shale_proto::{ChunkId, ChunkVersion, NodeId};
use std::time::Instant;

/// Leader-side auto-expiry removes at most this many servers per healing round.
pub const EXPIRE_PER_ROUND_MAX: usize = 16;

/// Chunks no server that is not dead holds at their current version, each with the (dead or
/// never-reporting) servers last known to hold it.
pub fn unprotected(
    chunks: impl Iterator<Item = (ChunkId, ChunkVersion)>,
    soft: &Soft,
    now: Instant,
    t: Timeouts,
) -> Vec<(ChunkId, Vec<NodeId>)> {
    let mut out = Vec::new();
    for (c, v) in chunks {
        let at_version = soft.replicas(c).iter().filter(|(_, rv)| *rv == v);
        let mut holders = Vec::new();
        let mut protected = false;
        for (n, _) in at_version {
            if soft.liveness(*n, now, t) == Liveness::Dead {
                holders.push(*n);
            } else {
                protected = true;
                break;
            }
        }
        if !protected {
            out.push((c, holders));
        }
    }
    out
}

/// Why `node` must not be forgotten now, if it must not.
pub fn refusal(
    node: NodeId,
    unprotected: &[(ChunkId, Vec<NodeId>)],
    soft: &Soft,
    now: Instant,
    t: Timeouts,
) -> Option<String> {
    let liveness = soft.liveness(node, now, t);
    if liveness != Liveness::Dead {
        return Some(format!(
            "chunkserver {node} is {}: stop it first (drain it first to keep its replicas' \
             redundancy)",
            liveness.as_str()
        ));
    }
    let reported = soft.servers.contains_key(&node);
    let at_risk: Vec<ChunkId> = unprotected
        .iter()
        .filter(|(_, holders)| !reported || holders.contains(&node))
        .map(|(c, _)| *c)
        .collect();
    if at_risk.is_empty() {
        return None;
    }
    let examples: Vec<String> = at_risk.iter().take(5).map(|c| c.to_string()).collect();
    Some(format!(
        "chunkserver {node} may hold the only replica of {} chunk(s) (e.g. {}){}; bring it back \
         so healing can copy them, or wait until they are found elsewhere",
        at_risk.len(),
        examples.join(", "),
        if reported {
            ""
        } else {
            " — it has not reported to this leader, so its contents are unknown"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::super::soft::Live;
    use super::*;
    use std::time::Duration;

    #[test]
    fn refuses_alive_servers_and_sole_holders() {
        let t = Timeouts {
            stale_after: Duration::from_secs(1),
            dead_after: Duration::from_secs(5),
        };
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        let (c1, c2, v) = (ChunkId(1), ChunkId(2), ChunkVersion(1));
        let mut s = Soft::default();
        // Node 1 (dies) holds c1 alone; c2 is on nodes 1 and 2 (2 stays alive).
        s.heartbeat(NodeId(1), Live::idle(t0), true, &[(c1, v), (c2, v)], &[]);
        s.heartbeat(NodeId(2), Live::idle(later), true, &[(c2, v)], &[]);
        let u = unprotected([(c1, v), (c2, v)].into_iter(), &s, later, t);
        assert_eq!(u, vec![(c1, vec![NodeId(1)])]);
        assert!(refusal(NodeId(2), &u, &s, later, t)
            .expect("alive")
            .contains("alive"));
        assert!(refusal(NodeId(1), &u, &s, later, t)
            .expect("sole holder")
            .contains("only replica of 1 chunk"));
        // Node 3 never reported: unknown contents block it while anything is unprotected.
        assert!(refusal(NodeId(3), &u, &s, later, t)
            .expect("unknown")
            .contains("not reported"));
        // Once c1 is found on node 2, both dead servers may go.
        s.heartbeat(NodeId(2), Live::idle(later), true, &[(c1, v), (c2, v)], &[]);
        let u = unprotected([(c1, v), (c2, v)].into_iter(), &s, later, t);
        assert!(u.is_empty());
        assert_eq!(refusal(NodeId(1), &u, &s, later, t), None);
        assert_eq!(refusal(NodeId(3), &u, &s, later, t), None);
    }
}
