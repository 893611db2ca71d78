//! Which chunks the healer looks at in a round, so that a round's work is bounded and follows
//! what changed, not the size of the namespace (one pass over every chunk under the state lock,
//! every second, cost the leader 0.2 s of CPU per second at 300 k chunks and would have cost
//! seconds at 10 M, stalling the Raft core).
//!
//! A round looks at:
//! * the chunks in *trouble* at their last look (lost, under their target, over it, or with a
//!   replica on a draining server): all of them, or [`TROUBLE_PER_ROUND`] in turn when there
//!   are more;
//! * the chunks that lost a replica or saw one change version since the last round
//!   (`Soft::take_touched`: reported gone or missing from a full report, found bad, removed,
//!   a write that moved on to a new version); a new replica can only help, and is seen through
//!   the trouble map (if the chunk needed it) or the scan (if it is one too many);
//! * every chunk of a server that died, came back, started or stopped draining, or was
//!   removed since the last round — and, on the first round of a leader, of every server dead
//!   or draining then;
//! * the next [`SCAN_PER_ROUND`] chunk ids of a background scan over the id space (ids are
//!   handed out in order), which catches what no event names: a file completed with fewer
//!   replicas than its target, a target changed by `setrep`, anything this master missed.
//!
//! Invariants: a chunk that loses a replica (or has one go stale) in this master's soft state
//! is looked at in the next round; every chunk at least once per pass of the scan (`chunks / SCAN_PER_ROUND`
//! rounds); the counts of lost and under-replicated chunks are those of the trouble map, each
//! chunk as it was at its last look.
use super::soft::Liveness;
use shale_proto::{ChunkId, NodeId};
use std::collections::{BTreeMap, HashMap};

/// Chunk ids the background scan covers per round.
pub const SCAN_PER_ROUND: u64 = 65_536;
/// Chunks in trouble looked at again per round, at most.
pub const TROUBLE_PER_ROUND: usize = 65_536;

/// What is wrong with a chunk.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// No replica left on a server that is not dead.
    Lost,
    /// Fewer live replicas than its target.
    Under,
    /// More than its target, or a replica on a draining server (to be moved off).
    Extra,
}

/// What the healer sees of a server, for noticing changes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub dead: bool,
    pub draining: bool,
}

impl Seen {
    pub fn of(liveness: Liveness, draining: bool) -> Seen {
        Seen {
            dead: liveness == Liveness::Dead,
            draining,
        }
    }
}

/// The healer's memory between rounds (one leadership: start afresh when elected).
pub struct Watch {
    /// The next chunk id the background scan looks at.
    cursor: u64,
    trouble: BTreeMap<ChunkId, Trouble>,
    /// Where the next round's look at the trouble map starts (when it holds more than a round).
    trouble_cursor: ChunkId,
    seen: Option<HashMap<NodeId, Seen>>,
    /// Where the next round's look for garbage with no replica left starts.
    pub garbage_cursor: ChunkId,
    lost: usize,
    under: usize,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            cursor: 1,
            trouble: BTreeMap::new(),
            trouble_cursor: ChunkId(0),
            seen: None,
            garbage_cursor: ChunkId(0),
            lost: 0,
            under: 0,
        }
    }
}

impl Watch {
    /// The servers whose chunks must be looked at, given every server's state now: changed
    /// since the last call (or gone); on the first call, those dead or draining.
    pub fn changed_servers(&mut self, now: HashMap<NodeId, Seen>) -> Vec<NodeId> {
        let out = match &self.seen {
            None => now
                .iter()
                .filter(|(_, s)| s.dead || s.draining)
                .map(|(n, _)| *n)
                .collect(),
            Some(before) => before
                .iter()
                .filter(|(n, s)| now.get(n) != Some(s))
                .map(|(n, _)| *n)
                .chain(
                    now.iter()
                        .filter(|(n, s)| !before.contains_key(n) && (s.dead || s.draining))
                        .map(|(n, _)| *n),
                )
                .collect(),
        };
        self.seen = Some(now);
        out
    }

    /// The chunk ids to look at this round (sorted, no duplicates): `extra` (touched chunks and
    /// those of changed servers), the trouble map (bounded, in turn) and the scan's next ids
    /// below `id_end` (one past the highest id handed out).
    pub fn pick(&mut self, extra: Vec<ChunkId>, id_end: u64) -> Vec<ChunkId> {
        let mut ids = extra;
        if self.trouble.len() <= TROUBLE_PER_ROUND {
            ids.extend(self.trouble.keys().copied());
        } else {
            let from: Vec<ChunkId> = self
                .trouble
                .range(self.trouble_cursor..)
                .map(|(c, _)| *c)
                .chain(self.trouble.keys().copied())
                .take(TROUBLE_PER_ROUND)
                .collect();
            self.trouble_cursor = from.last().map_or(ChunkId(0), |c| ChunkId(c.get() + 1));
            ids.extend(from);
        }
        if id_end > 1 {
            if self.cursor < 1 || self.cursor >= id_end {
                self.cursor = 1;
            }
            let end = (self.cursor + SCAN_PER_ROUND).min(id_end);
            ids.extend((self.cursor..end).map(ChunkId));
            self.cursor = end;
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Records what a look at chunk `id` found (`None`: nothing wrong, or no such chunk).
    pub fn settle(&mut self, id: ChunkId, found: Option<Trouble>) {
        let old = match found {
            Some(t) => self.trouble.insert(id, t),
            None => self.trouble.remove(&id),
        };
        let count = |w: &mut Watch, t: Option<Trouble>, add: bool| {
            let c = match t {
                Some(Trouble::Lost) => &mut w.lost,
                Some(Trouble::Under) => &mut w.under,
                _ => return,
            };
            *c = if add { *c + 1 } else { c.saturating_sub(1) };
        };
        count(self, old, false);
        count(self, found, true);
    }

    /// Chunks with no replica left, as last seen.
    pub fn lost(&self) -> usize {
        self.lost
    }

    /// Chunks below their target (with a replica left), as last seen.
    pub fn under(&self) -> usize {
        self.under
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<ChunkId> {
        v.iter().map(|i| ChunkId(*i)).collect()
    }

    /// The scan covers every id once per pass and wraps; extra and trouble ids come every
    /// round, without duplicates.
    #[test]
    fn scan_wraps_and_trouble_comes_back() {
        let mut w = Watch::default();
        let end = SCAN_PER_ROUND * 2 + 10;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            seen.extend(w.pick(Vec::new(), end));
        }
        assert_eq!(seen.len() as u64, end - 1);
        // Next pass starts over at 1.
        let again = w.pick(ids(&[5, 5, 7]), end);
        assert_eq!(again.first(), Some(&ChunkId(1)));
        assert_eq!(again.len() as u64, SCAN_PER_ROUND);
        w.settle(ChunkId(end - 1), Some(Trouble::Lost));
        w.settle(ChunkId(3), Some(Trouble::Under));
        let r = w.pick(Vec::new(), end);
        assert!(r.contains(&ChunkId(end - 1)) && r.contains(&ChunkId(3)));
        assert_eq!((w.lost(), w.under()), (1, 1));
        // Fixed: forgotten, counts follow.
        w.settle(ChunkId(3), None);
        w.settle(ChunkId(end - 1), Some(Trouble::Under));
        assert_eq!((w.lost(), w.under()), (0, 1));
        w.settle(ChunkId(end - 1), Some(Trouble::Extra));
        assert_eq!((w.lost(), w.under()), (0, 0));
        // No chunk at all: nothing to scan.
        assert!(Watch::default().pick(Vec::new(), 1).is_empty());
    }

    /// More trouble than a round takes: looked at in turn, every one within a few rounds.
    #[test]
    fn large_trouble_is_taken_in_turn() {
        let mut w = Watch::default();
        let n = TROUBLE_PER_ROUND as u64 * 2 + 5;
        for i in 0..n {
            w.settle(ChunkId(1_000_000 + i), Some(Trouble::Under));
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let r = w.pick(Vec::new(), 0);
            assert_eq!(r.len(), TROUBLE_PER_ROUND);
            seen.extend(r);
        }
        assert_eq!(seen.len() as u64, n);
    }

    /// Server changes: first round names the dead and draining; later rounds what changed or
    /// went away.
    #[test]
    fn changed_servers() {
        let (alive, dead, draining) = (
            Seen::of(Liveness::Alive, false),
            Seen::of(Liveness::Dead, false),
            Seen::of(Liveness::Alive, true),
        );
        let mut w = Watch::default();
        let mut now: HashMap<NodeId, Seen> =
            [(NodeId(1), alive), (NodeId(2), dead), (NodeId(3), draining)].into();
        let mut first = w.changed_servers(now.clone());
        first.sort();
        assert_eq!(first, vec![NodeId(2), NodeId(3)]);
        assert!(w.changed_servers(now.clone()).is_empty());
        // Stale is not a change (its replicas still count).
        now.insert(NodeId(1), Seen::of(Liveness::Stale, false));
        assert!(w.changed_servers(now.clone()).is_empty());
        now.insert(NodeId(1), dead);
        now.remove(&NodeId(3));
        now.insert(NodeId(4), alive);
        let mut r = w.changed_servers(now);
        r.sort();
        assert_eq!(r, vec![NodeId(1), NodeId(3)]);
    }
}
