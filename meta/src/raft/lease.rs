//! Leader lease: a leader that a majority acknowledged a moment ago serves linearizable reads
//! from its own state, without a heartbeat round per batch of reads.
//!
//! Why no other leader can exist meanwhile:
//! * A follower that accepted an AppendEntries of this leader refuses every vote for openraft's
//!   leader lease (`election_timeout_max`) after it *received* it. Our pre-vote says no for
//!   longer (`prevote.rs`).
//! * A new leader needs the votes of a majority, which shares a member with every majority that
//!   acknowledged this leader's messages sent at or after `t`. So no leader of a later term can
//!   be elected before `t + lease`.
//! * `t` is when the leader *sent* the message. The follower's lease starts when it received
//!   it, which is later, so this errs on the safe side.
//!
//! Reads are served while `now < t + window`, with `window` half the lease: margin for clocks
//! that run at slightly different rates and for a master descheduled between its check and its
//! read.
//!
//! A restarted master has lost the time it last heard a leader, and openraft would grant a
//! vote at once. So the Raft service refuses votes for a lease after a master starts
//! ([`Lease::may_vote`]).
//!
//! Invariants:
//! * Only acknowledgements of this master's own AppendEntries count (success, partial or
//!   conflict: each means the follower accepted this leader's vote). Each counts for the term
//!   it was sent in; a newer term forgets the older ones.
//! * The quorum is a majority of *every* configuration of a joint membership, this master
//!   counted as acknowledging now.
//! * The caller also needs this master to lead in that term and to have applied an entry of
//!   that term. Then its state holds every write acknowledged by anyone: what it acknowledged
//!   itself was applied first, and all earlier entries precede its own first one.
use super::types::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The latest sending time of an acknowledged AppendEntries, per follower, in one term.
#[derive(Default)]
struct Acks {
    term: u64,
    sent: BTreeMap<NodeId, Instant>,
}

pub struct Lease {
    /// openraft's leader lease (`election_timeout_max`).
    lease: Duration,
    /// How long after a quorum's sending time reads are served.
    window: Duration,
    started: Instant,
    acks: Mutex<Acks>,
}

impl Lease {
    pub fn new(lease: Duration) -> Lease {
        Lease {
            lease,
            window: lease / 2,
            started: Instant::now(),
            acks: Mutex::default(),
        }
    }

    /// Records that `peer` accepted an AppendEntries this master sent at `sent` as the leader
    /// of `term`.
    pub fn acked(&self, term: u64, peer: NodeId, sent: Instant) {
        let mut a = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        if term < a.term {
            return;
        }
        if term > a.term {
            a.term = term;
            a.sent.clear();
        }
        let e = a.sent.entry(peer).or_insert(sent);
        if sent > *e {
            *e = sent;
        }
    }

    /// Whether leader `me` of `term` holds the lease now (see the module invariants for what
    /// else a read needs).
    pub fn holds(&self, term: u64, me: NodeId, configs: &[BTreeSet<NodeId>]) -> bool {
        let now = Instant::now();
        let a = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        if a.term != term {
            return configs.iter().all(|c| c.len() == 1 && c.contains(&me));
        }
        quorum_sent(configs, me, &a.sent, now).is_some_and(|t| now < t + self.window)
    }

    /// Whether this master may grant votes: not within a lease of its start (it cannot know
    /// whether it acknowledged a leader just before it stopped).
    pub fn may_vote(&self) -> bool {
        self.started.elapsed() > self.lease
    }
}

/// The latest time such that a majority of every configuration acknowledged messages sent at
/// or after it (`me` counts as acknowledging at `now`); `None` if no such majority (pure).
pub fn quorum_sent(
    configs: &[BTreeSet<NodeId>],
    me: NodeId,
    sent: &BTreeMap<NodeId, Instant>,
    now: Instant,
) -> Option<Instant> {
    let mut oldest: Option<Instant> = None;
    for c in configs {
        let mut times: Vec<Instant> = c
            .iter()
            .filter_map(|v| {
                if *v == me {
                    Some(now)
                } else {
                    sent.get(v).copied()
                }
            })
            .collect();
        let need = c.len() / 2 + 1;
        if times.len() < need {
            return None;
        }
        times.sort_unstable_by(|a, b| b.cmp(a));
        let t = times[need - 1];
        oldest = Some(oldest.map_or(t, |o| o.min(t)));
    }
    oldest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn the_quorum_time_is_the_majoritys_oldest_acknowledgement() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let sent = BTreeMap::from([(2, now - ms(10)), (3, now - ms(50))]);
        // Three voters: me (now) and the fresher follower.
        assert_eq!(
            quorum_sent(&[set(&[1, 2, 3])], 1, &sent, now),
            Some(now - ms(10))
        );
        // Five voters: three needed, the third freshest counts.
        let sent5 = BTreeMap::from([(2, now - ms(10)), (3, now - ms(50)), (4, now - ms(5))]);
        assert_eq!(
            quorum_sent(&[set(&[1, 2, 3, 4, 5])], 1, &sent5, now),
            Some(now - ms(10))
        );
        // Not enough acknowledgements.
        let one = BTreeMap::from([(2, now - ms(10))]);
        assert_eq!(quorum_sent(&[set(&[1, 2, 3, 4, 5])], 1, &one, now), None);
        assert_eq!(
            quorum_sent(&[set(&[1, 2, 3])], 1, &BTreeMap::new(), now),
            None
        );
        // A joint membership needs both majorities: the older one counts.
        assert_eq!(
            quorum_sent(&[set(&[1, 2, 3]), set(&[3, 4, 5])], 1, &sent5, now),
            Some(now - ms(50))
        );
        assert_eq!(
            quorum_sent(&[set(&[1, 2, 3]), set(&[3, 4, 5])], 1, &sent, now),
            None
        );
        let joint = BTreeMap::from([(2, now - ms(10)), (3, now - ms(50)), (4, now - ms(20))]);
        assert_eq!(
            quorum_sent(&[set(&[1, 2, 3]), set(&[1, 3, 4])], 1, &joint, now),
            Some(now - ms(20))
        );
        assert_eq!(quorum_sent(&[], 1, &sent, now), None);
    }

    #[test]
    fn the_lease_holds_for_half_the_lease_after_the_quorum_sent() {
        let l = Lease::new(Duration::from_millis(300));
        let voters = [set(&[1, 2, 3])];
        assert!(!l.holds(5, 1, &voters), "nothing acknowledged yet");
        l.acked(5, 2, Instant::now());
        assert!(l.holds(5, 1, &voters));
        assert!(!l.holds(6, 1, &voters), "another term");
        // Acknowledged long ago: expired.
        let l = Lease::new(Duration::from_millis(300));
        l.acked(5, 2, Instant::now() - Duration::from_millis(151));
        assert!(!l.holds(5, 1, &voters));
        // A newer term forgets the older acknowledgements; an older one changes nothing.
        l.acked(7, 3, Instant::now());
        l.acked(5, 2, Instant::now());
        assert!(l.holds(7, 1, &voters));
        assert!(!l.holds(5, 1, &voters));
        // A single voter needs nobody.
        assert!(l.holds(9, 1, &[set(&[1])]));
    }

    #[test]
    fn a_master_votes_only_a_lease_after_it_started() {
        let l = Lease::new(Duration::from_millis(30));
        assert!(!l.may_vote());
        std::thread::sleep(Duration::from_millis(40));
        assert!(l.may_vote());
    }
}
