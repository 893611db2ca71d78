//! Client sessions: the reply of every recent request, so a retried request is answered with
//! its original reply instead of being applied twice (Raft dissertation §6.3).
//!
//! A request is named by (client id, sequence number); clients pick a random 64-bit id and
//! number their requests from 1, reusing a number only to retry that same request. The table
//! is part of the replicated state (applied by every master, kept in snapshots) and changed only
//! by `apply`, by log time:
//!
//! * each session keeps the replies of its latest [`SESSION_REPLIES_MAX`] requests; older ones
//!   are dropped and their numbers (≤ `floor`) are refused with [`MetaError::StaleRequest`] —
//!   the table cannot say whether such a request took effect, so it must not apply it again;
//! * a session idle for [`SESSION_IDLE_MS`] of log time is dropped (its client is gone: a
//!   writer lease is at most 10 minutes, and clients give up retrying much sooner);
//! * at most [`SESSIONS_MAX`] sessions are kept; beyond that the least recently used goes.
//!
//! Everything is bounded and deterministic: every master evicts the same entries.
use super::{MetaError, Reply};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Replies kept per client session.
pub const SESSION_REPLIES_MAX: usize = 256;
/// Sessions kept at once.
pub const SESSIONS_MAX: usize = 10_000;
/// A session unused this long (log time) is dropped.
pub const SESSION_IDLE_MS: u64 = 15 * 60 * 1000;

/// Names one request of one client: a retry carries the same id.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub client: u64,
    pub seq: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    last_ms: u64,
    /// Every sequence number at or below this one was dropped from `replies` (or is one).
    floor: u64,
    replies: BTreeMap<u64, Reply>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    by_client: HashMap<u64, Session>,
    /// (last use, client): the eviction order.
    by_age: BTreeSet<(u64, u64)>,
}

/// What to do with a request.
pub enum Seen {
    /// Not seen: apply it.
    New,
    /// Seen: answer with this reply and apply nothing.
    Again(Reply),
}

impl Sessions {
    /// Drops sessions idle since before `now_ms - SESSION_IDLE_MS`.
    pub fn expire(&mut self, now_ms: u64) {
        while let Some(&(last, client)) = self.by_age.first() {
            if last.saturating_add(SESSION_IDLE_MS) > now_ms {
                break;
            }
            self.by_age.pop_first();
            self.by_client.remove(&client);
        }
    }

    /// Whether `id` was applied already (and its reply), or is too old to know.
    pub fn check(&self, id: RequestId) -> Result<Seen, MetaError> {
        let Some(s) = self.by_client.get(&id.client) else {
            return Ok(Seen::New);
        };
        if let Some(r) = s.replies.get(&id.seq) {
            return Ok(Seen::Again(r.clone()));
        }
        if id.seq <= s.floor {
            return Err(MetaError::StaleRequest {
                client: id.client,
                seq: id.seq,
            });
        }
        Ok(Seen::New)
    }

    /// Records the reply of a request just applied.
    pub fn record(&mut self, id: RequestId, reply: &Reply, now_ms: u64) {
        let s = self.by_client.entry(id.client).or_default();
        // A new session (last use 0) is not in `by_age` yet; one used at this log time
        // already (every item of a `Batch` shares its entry's time) keeps its place.
        if s.last_ms != now_ms || s.replies.is_empty() {
            self.by_age.remove(&(s.last_ms, id.client));
            s.last_ms = now_ms;
            self.by_age.insert((now_ms, id.client));
        }
        s.replies.insert(id.seq, reply.clone());
        while s.replies.len() > SESSION_REPLIES_MAX {
            if let Some((old, _)) = s.replies.pop_first() {
                s.floor = s.floor.max(old);
            }
        }
        while self.by_client.len() > SESSIONS_MAX {
            let Some((_, client)) = self.by_age.pop_first() else {
                break;
            };
            self.by_client.remove(&client);
        }
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Consistency of the two indexes (for `validate`).
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.by_age.len() != self.by_client.len() || self.by_client.len() > SESSIONS_MAX {
            return Err("session indexes out of step".into());
        }
        for (last, client) in &self.by_age {
            match self.by_client.get(client) {
                Some(s) if s.last_ms == *last && s.replies.len() <= SESSION_REPLIES_MAX => {}
                _ => return Err(format!("session {client:x} out of step")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(client: u64, seq: u64) -> RequestId {
        RequestId { client, seq }
    }

    #[test]
    fn replies_are_remembered_bounded_and_expire() {
        let mut s = Sessions::default();
        assert!(matches!(s.check(id(1, 1)), Ok(Seen::New)));
        s.record(id(1, 1), &Reply::Done, 10);
        assert!(matches!(s.check(id(1, 1)), Ok(Seen::Again(Reply::Done))));
        for seq in 2..=(SESSION_REPLIES_MAX as u64 + 1) {
            s.record(id(1, seq), &Reply::Expired(seq as u32), 11);
        }
        assert!(matches!(
            s.check(id(1, 1)),
            Err(MetaError::StaleRequest { .. })
        ));
        assert!(matches!(s.check(id(1, 2)), Ok(Seen::Again(_))));
        assert!(matches!(s.check(id(1, 9999)), Ok(Seen::New)));
        s.check_invariants().expect("ok");
        s.expire(11 + SESSION_IDLE_MS);
        assert!(s.is_empty());
        assert!(matches!(s.check(id(1, 2)), Ok(Seen::New)));
    }

    #[test]
    fn requests_at_one_log_time_keep_one_place_in_the_age_order() {
        let mut s = Sessions::default();
        // A new session at log time 0 (its default last use) is still put in the order.
        for seq in 1..=3 {
            s.record(id(7, seq), &Reply::Done, 0);
        }
        s.check_invariants().expect("ok");
        for seq in 1..=3 {
            s.record(id(8, seq), &Reply::Done, 5);
        }
        s.record(id(7, 4), &Reply::Done, 5);
        s.check_invariants().expect("ok");
        s.expire(SESSION_IDLE_MS + 4);
        assert_eq!(s.len(), 2);
        s.expire(SESSION_IDLE_MS + 5);
        assert!(s.is_empty());
        s.check_invariants().expect("ok");
    }

    #[test]
    fn least_recently_used_session_goes_first() {
        let mut s = Sessions::default();
        for c in 0..=(SESSIONS_MAX as u64) {
            s.record(id(c, 1), &Reply::Done, c);
        }
        assert_eq!(s.len(), SESSIONS_MAX);
        assert!(matches!(s.check(id(0, 1)), Ok(Seen::New)));
        assert!(matches!(s.check(id(1, 1)), Ok(Seen::Again(_))));
        s.check_invariants().expect("ok");
    }
}
