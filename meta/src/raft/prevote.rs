//! Pre-vote: who campaigns, and when, after the leader goes silent.
//!
//! openraft 0.9 has no pre-vote. A follower campaigns on its own timer: after the leader
//! lease (`election_timeout_max`, during which it refuses every vote) plus its election
//! timeout (drawn once per process from `[min, max)`), at its next tick. Whoever times out
//! first campaigns. When that follower has the shorter log, the other refuses it, and the other
//! cannot win the same term either (the first voted for itself). A failover then took the lease
//! plus two timeouts: 1.1–1.5 s in 2 of 20 trials of `shale-bench meta`, with a p50 of 580 ms.
//!
//! Here a follower that has not heard a leader for [`Timing::suspect`] (the lease plus the
//! lower timeout: openraft's own earliest campaign) first asks the other voters ([`RaftKind::PreVote`]). A voter says yes
//! ([`answer`]) only if all of these hold:
//! * it does not lead;
//! * its own lease has run out: it has not heard a leader for the lease plus [`Timing::slack`];
//! * the asker's log is at least as long as its own;
//! * the asker's next term is new to it;
//! * it is not better placed itself: an equal log, a lower id, and ready to campaign.
//!
//! With a majority of yeses (itself included, in every configuration of a joint membership),
//! the follower starts a campaign (`raft.trigger().elect()`).
//!
//! Invariants:
//! * The pre-vote decides only *when* and *who*. The campaign is openraft's own; every vote is
//!   judged by its rules (lease, log, term). Safety does not depend on this module.
//! * openraft's own timer stays armed as the fallback: a master whose pre-votes are refused, or
//!   a peer that wrongly claims to go first, delays a failover at most to what openraft alone
//!   would do.
//! * A master that may not campaign (rejoining quietly, or moved: see `server::serve`) neither
//!   asks nor claims to go first.
//! * A live leader is never unseated by it: a voter that hears a leader says no.
//!
//! [`RaftKind::PreVote`]: shale_proto::metapb::RaftKind::PreVote
use super::types::{LogId, MasterRaft, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a master that suspects its leader is gone asks each other voter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    /// The asker's current term (its campaign would be for the next one).
    pub term: u64,
    pub last_log_id: Option<LogId>,
}

/// A voter's answer: yes, or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Granted,
    /// The voter leads.
    Leading,
    /// The voter heard a leader within its lease: it would refuse the vote.
    HearsLeader,
    /// The voter's log is longer: it would refuse the vote.
    LongerLog,
    /// The voter has a vote in the asker's next term already.
    TermTaken,
    /// The voter has as long a log and a lower id, and is about to campaign itself.
    GoesFirst,
    /// The asker is not a voter of the membership this master knows.
    NotVoter,
}

/// The timings, from the group's Raft configuration.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// openraft's leader lease (`election_timeout_max`): a follower refuses votes this long
    /// after it last heard its leader.
    pub lease: Duration,
    /// Margin over the lease before a voter says yes (covers the gap between its answer and
    /// the vote request, and heartbeats reaching the followers at slightly different times).
    pub slack: Duration,
    /// Silence after which a follower asks: the lease plus the lower election timeout, the
    /// earliest openraft itself would campaign. (Half the timeout failed over in 396 ms instead
    /// of ≈ 450, but loading 10 M files, with leader stalls from forking a multi-GB state on two
    /// busy cores, went from 0 elections to dozens.)
    pub suspect: Duration,
    /// Least time between two of one master's rounds of asking.
    pub retry: Duration,
    /// How long a round waits for answers.
    pub ask_timeout: Duration,
    /// How often a master checks whether to ask.
    pub poll: Duration,
}

impl Timing {
    /// Timings for a group run with these openraft settings (ms).
    pub fn new(election_min_ms: u64, election_max_ms: u64, heartbeat_ms: u64) -> Timing {
        let ms = Duration::from_millis;
        Timing {
            lease: ms(election_max_ms),
            slack: ms((election_min_ms / 8).max(2)),
            suspect: ms(election_max_ms + election_min_ms),
            retry: ms(election_min_ms),
            ask_timeout: ms((election_min_ms / 2).max(5)),
            poll: ms((heartbeat_ms / 4).clamp(2, 10)),
        }
    }
}

/// What this master knows of itself when it answers or decides to ask.
#[derive(Clone, Debug)]
pub struct Me {
    pub id: NodeId,
    pub leading: bool,
    pub voter: bool,
    /// May campaign now (see the module invariants).
    pub campaigns: bool,
    /// Since this master last heard a leader (or granted a vote).
    pub silence: Duration,
    /// The term of its vote.
    pub term: u64,
    pub last_log_id: Option<LogId>,
}

/// A voter's answer to `req` (pure).
pub fn answer(me: &Me, req: &PreVoteRequest, t: &Timing) -> Answer {
    if me.leading {
        return Answer::Leading;
    }
    if me.silence <= t.lease + t.slack {
        return Answer::HearsLeader;
    }
    if req.last_log_id < me.last_log_id {
        return Answer::LongerLog;
    }
    if req.term.saturating_add(1) <= me.term {
        return Answer::TermTaken;
    }
    if me.campaigns
        && me.voter
        && me.id < req.candidate
        && req.last_log_id == me.last_log_id
        && me.silence >= t.suspect
    {
        return Answer::GoesFirst;
    }
    Answer::Granted
}

/// Whether `me` should ask the other voters now (pure).
pub fn should_ask(me: &Me, t: &Timing) -> bool {
    !me.leading && me.voter && me.campaigns && me.silence >= t.suspect
}

/// Whether the voters in `granted` (the asker counted among them) form a majority of every
/// configuration in `configs` (one, or two during a joint membership change) (pure).
pub fn majority(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !configs.is_empty()
        && configs
            .iter()
            .all(|c| c.iter().filter(|v| granted.contains(v)).count() * 2 > c.len())
}

/// When this master last heard a leader: stamped by the Raft service when openraft accepts a
/// leader's AppendEntries or snapshot, or grants a vote (its candidate is about to lead).
#[derive(Debug)]
pub struct Contact {
    base: Instant,
    last_ns: AtomicU64,
}

impl Default for Contact {
    /// Counts from now: a master that just started waits a whole suspicion before it asks.
    fn default() -> Contact {
        Contact {
            base: Instant::now(),
            last_ns: AtomicU64::new(0),
        }
    }
}

impl Contact {
    pub fn heard(&self) {
        let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_ns.fetch_max(ns, Ordering::Relaxed);
    }

    pub fn silence(&self) -> Duration {
        let last = Duration::from_nanos(self.last_ns.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// What the Raft service and the driver share.
pub struct PreVote {
    pub id: NodeId,
    pub timing: Timing,
    pub contact: Contact,
    /// Whether this master may campaign (cleared while it rejoins quietly or has moved).
    pub campaigns: AtomicBool,
    pub log: crate::raftlog::LogStore<super::types::TypeConfig>,
    /// openraft's own election timer armed whenever this master may campaign (off only in
    /// tests: then the pre-vote alone starts campaigns).
    raft_timer: bool,
}

impl PreVote {
    pub fn new(
        id: NodeId,
        timing: Timing,
        log: crate::raftlog::LogStore<super::types::TypeConfig>,
        raft_timer: bool,
    ) -> Arc<PreVote> {
        Arc::new(PreVote {
            id,
            timing,
            contact: Contact::default(),
            campaigns: AtomicBool::new(true),
            log,
            raft_timer,
        })
    }

    /// Lets this master campaign (on its own timer and by pre-vote), or stops it.
    pub fn allow(&self, raft: &MasterRaft, yes: bool) {
        self.campaigns.store(yes, Ordering::Relaxed);
        raft.runtime_config().elect(yes && self.raft_timer);
    }

    /// This master as it stands (its last log id read from the log only when `with_log`).
    pub async fn me(&self, raft: &MasterRaft, with_log: bool) -> Me {
        let (leading, voter, term) = {
            let m = raft.metrics();
            let m = m.borrow();
            (
                m.state == openraft::ServerState::Leader,
                m.membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == self.id),
                m.vote.leader_id().term,
            )
        };
        let last_log_id = if with_log {
            use openraft::storage::RaftLogStorage;
            match self.log.clone().get_log_state().await {
                Ok(s) => s.last_log_id,
                // Unreadable: claim the shortest log (asks are refused; answers say yes only
                // to what openraft itself will judge).
                Err(_) => None,
            }
        } else {
            None
        };
        Me {
            id: self.id,
            leading,
            voter,
            campaigns: self.campaigns.load(Ordering::Relaxed),
            silence: self.contact.silence(),
            term,
            last_log_id,
        }
    }

    /// The answer to a peer's pre-vote request.
    pub async fn answer(&self, raft: &MasterRaft, req: &PreVoteRequest) -> Answer {
        let known = {
            let m = raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            // As for votes: a master that knows no membership yet (the group is being formed)
            // refuses nobody.
            let mut voters = membership.voter_ids().peekable();
            voters.peek().is_none() || voters.any(|v| v == req.candidate)
        };
        if !known {
            return Answer::NotVoter;
        }
        let me = self.me(raft, true).await;
        answer(&me, req, &self.timing)
    }
}

/// Asks a peer at `addr`; `None` when it cannot be reached or answers nonsense.
pub type Ask = Arc<
    dyn Fn(String, PreVoteRequest) -> futures_util::future::BoxFuture<'static, Option<Answer>>
        + Send
        + Sync,
>;

/// Runs for the life of the master: watches for a silent leader and starts the campaign a
/// majority agrees to.
pub async fn run(raft: MasterRaft, pv: Arc<PreVote>, ask: Ask) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let t = pv.timing;
    let mut last_round: Option<Instant> = None;
    loop {
        tokio::time::sleep(t.poll).await;
        if !should_ask(&pv.me(&raft, false).await, &t)
            || last_round.is_some_and(|l| l.elapsed() < t.retry)
        {
            continue;
        }
        last_round = Some(Instant::now());
        let me = pv.me(&raft, true).await;
        let (configs, peers) = {
            let m = raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            let configs: Vec<BTreeSet<NodeId>> = membership.get_joint_config().clone();
            let peers: Vec<(NodeId, String)> = membership
                .nodes()
                .filter(|(id, _)| **id != pv.id && membership.voter_ids().any(|v| v == **id))
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect();
            (configs, peers)
        };
        let req = PreVoteRequest {
            candidate: pv.id,
            term: me.term,
            last_log_id: me.last_log_id,
        };
        let mut granted = BTreeSet::from([pv.id]);
        let mut answers = Vec::new();
        let mut asks: FuturesUnordered<_> = peers
            .into_iter()
            .map(|(id, addr)| {
                let a = ask(addr, req.clone());
                async move {
                    (
                        id,
                        tokio::time::timeout(t.ask_timeout, a).await.ok().flatten(),
                    )
                }
            })
            .collect();
        let mut won = false;
        while let Some((id, a)) = asks.next().await {
            answers.push((id, a));
            if a == Some(Answer::Granted) {
                granted.insert(id);
                if majority(&configs, &granted) {
                    won = true;
                    break;
                }
            }
        }
        if won {
            tracing::info!(
                master = pv.id,
                silence_ms = me.silence.as_millis() as u64,
                ?answers,
                "no leader heard; a majority agrees to a campaign: campaigning"
            );
            if raft.trigger().elect().await.is_err() {
                return;
            }
        } else {
            tracing::debug!(master = pv.id, ?answers, "pre-vote not granted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    fn t() -> Timing {
        Timing::new(150, 300, 37)
    }

    fn me(id: NodeId, silence_ms: u64, last: Option<LogId>) -> Me {
        Me {
            id,
            leading: false,
            voter: true,
            campaigns: true,
            silence: Duration::from_millis(silence_ms),
            term: 3,
            last_log_id: last,
        }
    }

    fn req(candidate: NodeId, last: Option<LogId>) -> PreVoteRequest {
        PreVoteRequest {
            candidate,
            term: 3,
            last_log_id: last,
        }
    }

    #[test]
    fn timings_follow_the_raft_settings() {
        let t = t();
        assert_eq!(t.lease, Duration::from_millis(300));
        assert_eq!(t.suspect, Duration::from_millis(450));
        assert!(t.lease + t.slack < t.suspect);
        assert!(t.poll <= Duration::from_millis(10));
    }

    #[test]
    fn a_voter_that_hears_a_leader_or_leads_says_no() {
        let t = t();
        assert_eq!(
            answer(&me(2, 100, log(3, 9)), &req(1, log(3, 9)), &t),
            Answer::HearsLeader
        );
        // Within the lease plus the slack: openraft would still refuse the vote.
        assert_eq!(
            answer(&me(2, 310, log(3, 9)), &req(1, log(3, 9)), &t),
            Answer::HearsLeader
        );
        let mut leader = me(2, 1000, log(3, 9));
        leader.leading = true;
        assert_eq!(answer(&leader, &req(1, log(3, 9)), &t), Answer::Leading);
    }

    #[test]
    fn the_longer_log_goes_first_then_the_lower_id() {
        let t = t();
        // The asker's log is shorter (by index, or by term).
        assert_eq!(
            answer(&me(2, 400, log(3, 10)), &req(1, log(3, 9)), &t),
            Answer::LongerLog
        );
        assert_eq!(
            answer(&me(2, 400, log(4, 2)), &req(1, log(3, 9)), &t),
            Answer::LongerLog
        );
        assert_eq!(
            answer(&me(2, 400, log(3, 9)), &req(1, log(3, 10)), &t),
            Answer::Granted
        );
        // Equal logs: the lower id, ready itself, goes first; the higher id says yes to it.
        assert_eq!(
            answer(&me(1, 500, log(3, 9)), &req(2, log(3, 9)), &t),
            Answer::GoesFirst
        );
        assert_eq!(
            answer(&me(2, 400, log(3, 9)), &req(1, log(3, 9)), &t),
            Answer::Granted
        );
        // Not ready yet (past the lease, not yet suspecting), or not allowed to campaign: no
        // claim to go first.
        assert_eq!(
            answer(&me(1, 350, log(3, 9)), &req(2, log(3, 9)), &t),
            Answer::Granted
        );
        let mut quiet = me(1, 500, log(3, 9));
        quiet.campaigns = false;
        assert_eq!(answer(&quiet, &req(2, log(3, 9)), &t), Answer::Granted);
    }

    #[test]
    fn a_taken_term_is_refused() {
        let t = t();
        let mut voted = me(2, 400, log(3, 9));
        voted.term = 4;
        assert_eq!(answer(&voted, &req(1, log(3, 9)), &t), Answer::TermTaken);
        let mut r = req(1, log(3, 9));
        r.term = 4;
        assert_eq!(answer(&voted, &r, &t), Answer::Granted);
        r.term = u64::MAX;
        assert_eq!(answer(&voted, &r, &t), Answer::Granted);
    }

    #[test]
    fn asking_needs_silence_a_vote_and_leave() {
        let t = t();
        assert!(!should_ask(&me(1, 440, None), &t));
        assert!(should_ask(&me(1, 460, None), &t));
        let mut m = me(1, 1000, None);
        m.campaigns = false;
        assert!(!should_ask(&m, &t));
        m.campaigns = true;
        m.voter = false;
        assert!(!should_ask(&m, &t));
        m.voter = true;
        m.leading = true;
        assert!(!should_ask(&m, &t));
    }

    #[test]
    fn majorities_count_in_every_joint_configuration() {
        let c = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        assert!(majority(&[c(&[1, 2, 3])], &c(&[1, 2])));
        assert!(!majority(&[c(&[1, 2, 3])], &c(&[1])));
        assert!(!majority(&[c(&[1, 2, 3, 4])], &c(&[1, 2])));
        assert!(majority(&[c(&[1, 2, 3]), c(&[2, 3, 4])], &c(&[2, 3])));
        assert!(!majority(&[c(&[1, 2, 3]), c(&[3, 4, 5])], &c(&[1, 2, 3])));
        assert!(!majority(&[], &c(&[1])));
    }

    #[test]
    fn contact_counts_silence_from_the_last_stamp() {
        let c = Contact::default();
        std::thread::sleep(Duration::from_millis(20));
        let before = c.silence();
        assert!(before >= Duration::from_millis(20));
        c.heard();
        assert!(c.silence() < before);
    }
}
