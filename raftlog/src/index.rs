//! The in-memory view of the log: which entries exist, where each lives on disk, the tail cache,
//! the vote / committed / purged state, and what each segment holds. Pure: no I/O.
//!
//! Invariants:
//! * `slots` holds exactly the live entries, with contiguous indexes;
//! * every slot has its bytes cached, its on-disk location, or both; a slot loses its cached
//!   bytes only once its location is known (flushed), so unflushed entries are always readable;
//! * `purged` (if set) is below the first slot.
use bytes::Bytes;
use std::collections::BTreeMap;

/// Where an entry's record lives.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub segment: u64,
    /// Offset of the record start in the segment file.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

#[derive(Debug)]
struct Slot {
    /// Unique per append, so a late location report for a truncated entry is ignored.
    seq: u64,
    data: Option<Bytes>,
    loc: Option<Loc>,
}

/// What a read of one index needs.
pub enum Found {
    Cached(Bytes),
    OnDisk(Loc),
}

#[derive(Debug, Default)]
pub struct SegInfo {
    /// Highest entry index appended while this segment was active.
    pub max_index: Option<u64>,
}

#[derive(Debug)]
pub struct State {
    slots: BTreeMap<u64, Slot>,
    next_seq: u64,
    cached_bytes: u64,
    cache_max_bytes: u64,
    pub vote: Option<Bytes>,
    pub committed: Option<Bytes>,
    pub purged: Option<(u64, Bytes)>,
    pub segments: BTreeMap<u64, SegInfo>,
    pub active_segment: u64,
    /// Bytes in the active segment, counting what is queued for it.
    pub active_bytes: u64,
}

impl State {
    pub fn new(cache_max_bytes: u64) -> Self {
        State {
            slots: BTreeMap::new(),
            next_seq: 1,
            cached_bytes: 0,
            cache_max_bytes,
            vote: None,
            committed: None,
            purged: None,
            segments: BTreeMap::new(),
            active_segment: 0,
            active_bytes: 0,
        }
    }

    pub fn first_index(&self) -> Option<u64> {
        self.slots.keys().next().copied()
    }

    pub fn last_index(&self) -> Option<u64> {
        self.slots.keys().next_back().copied()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// What appending an entry at `index` does first: appending at or below the last index
    /// replaces that suffix (returns the index to truncate from), as Raft does when a leader
    /// overwrites a follower's uncommitted entries. Indexes above the last are accepted as
    /// they come: openraft never leaves gaps, and its storage suite drives the log as a sparse
    /// map (it appends past the end and below a purge point), which this log supports.
    pub fn check_next(&self, index: u64) -> Option<u64> {
        match self.last_index() {
            Some(last) if index <= last => Some(index),
            _ => None,
        }
    }

    /// Adds an entry (already checked with [`State::check_next`]). `loc` is known during
    /// recovery; `data` is known for fresh appends. Returns the slot's sequence number.
    pub fn insert(&mut self, index: u64, data: Option<Bytes>, loc: Option<Loc>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.cached_bytes += data.as_ref().map_or(0, |d| d.len() as u64);
        self.slots.insert(index, Slot { seq, data, loc });
        let seg = self.active_segment;
        let info = self.segments.entry(seg).or_default();
        info.max_index = Some(info.max_index.map_or(index, |m| m.max(index)));
        seq
    }

    /// Records where a flushed entry lives, unless it was truncated meanwhile; then evicts.
    pub fn publish(&mut self, index: u64, seq: u64, loc: Loc) {
        if let Some(slot) = self.slots.get_mut(&index) {
            if slot.seq == seq {
                slot.loc = Some(loc);
            }
        }
        self.evict();
    }

    /// Drops cached bytes of the oldest flushed entries while over the cache budget.
    fn evict(&mut self) {
        if self.cached_bytes <= self.cache_max_bytes {
            return;
        }
        for slot in self.slots.values_mut() {
            if self.cached_bytes <= self.cache_max_bytes {
                break;
            }
            if slot.loc.is_some() {
                if let Some(d) = slot.data.take() {
                    self.cached_bytes -= d.len() as u64;
                }
            }
        }
    }

    /// Removes entries at `from` and after.
    pub fn truncate(&mut self, from: u64) {
        let gone = self.slots.split_off(&from);
        for s in gone.values() {
            self.cached_bytes -= s.data.as_ref().map_or(0, |d| d.len() as u64);
        }
        for info in self.segments.values_mut() {
            if info.max_index.is_some_and(|m| m >= from) {
                info.max_index = from.checked_sub(1);
            }
        }
    }

    /// Removes entries at `upto` and before, remembering the purged id.
    pub fn purge(&mut self, upto: u64, id: Bytes) {
        let keep = self.slots.split_off(&(upto.saturating_add(1)));
        for s in self.slots.values() {
            self.cached_bytes -= s.data.as_ref().map_or(0, |d| d.len() as u64);
        }
        self.slots = keep;
        self.purged = Some((upto, id));
    }

    /// Segments that hold only purged entries and are not active, oldest first (a prefix).
    pub fn deletable_segments(&self) -> Vec<u64> {
        let Some((upto, _)) = &self.purged else {
            return Vec::new();
        };
        self.segments
            .iter()
            .take_while(|(seq, info)| {
                **seq != self.active_segment && info.max_index.is_none_or(|m| m <= *upto)
            })
            .map(|(seq, _)| *seq)
            .collect()
    }

    pub fn forget_segments(&mut self, seqs: &[u64]) {
        for s in seqs {
            self.segments.remove(s);
        }
    }

    /// Where each index of `range` is; stops at the first missing index.
    pub fn find(&self, start: u64, end_inclusive: u64) -> Vec<(u64, Found)> {
        self.slots
            .range(start..=end_inclusive)
            .map(|(i, s)| match (&s.data, s.loc) {
                (Some(d), _) => (*i, Found::Cached(d.clone())),
                (None, Some(loc)) => (*i, Found::OnDisk(loc)),
                // Unreachable by the invariant; report it as on disk at an impossible place.
                (None, None) => (
                    *i,
                    Found::OnDisk(Loc {
                        segment: u64::MAX,
                        offset: 0,
                        len: 0,
                    }),
                ),
            })
            .collect()
    }

    pub fn cached_bytes(&self) -> u64 {
        self.cached_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn append_truncate_purge_and_stale_publish() {
        let mut st = State::new(1 << 20);
        st.active_segment = 1;
        for i in 1..=5 {
            assert_eq!(st.check_next(i), None);
            st.insert(i, b("x"), None);
        }
        assert_eq!(st.check_next(3), Some(3), "overwrite the suffix from 3");
        let seq5 = 5;
        st.truncate(4);
        assert_eq!(st.last_index(), Some(3));
        // A location report for the truncated 5 is ignored; a new 4 can be appended.
        st.publish(
            5,
            seq5,
            Loc {
                segment: 1,
                offset: 0,
                len: 1,
            },
        );
        assert!(st.find(5, 5).is_empty());
        st.insert(4, b("y"), None);
        st.purge(2, Bytes::from_static(b"id2"));
        assert_eq!(st.first_index(), Some(3));
        assert_eq!(st.check_next(5), None);
        st.purge(10, Bytes::from_static(b"id10"));
        assert!(st.is_empty());
        assert_eq!(st.check_next(11), None);
    }

    #[test]
    fn eviction_keeps_unflushed_entries() {
        let mut st = State::new(4);
        st.active_segment = 1;
        let s1 = st.insert(1, b("aaaa"), None);
        st.insert(2, b("bbbb"), None);
        st.publish(
            1,
            s1,
            Loc {
                segment: 1,
                offset: 24,
                len: 4,
            },
        );
        assert!(matches!(st.find(1, 1)[0].1, Found::OnDisk(_)));
        assert!(matches!(st.find(2, 2)[0].1, Found::Cached(_)));
        assert_eq!(st.cached_bytes(), 4);
    }

    #[test]
    fn only_fully_purged_inactive_segments_are_deletable() {
        let mut st = State::new(1 << 20);
        for (seg, idx) in [(1, 1), (1, 2), (2, 3), (3, 4)] {
            st.active_segment = seg;
            st.insert(idx, b("e"), None);
        }
        st.purge(2, Bytes::new());
        assert_eq!(st.deletable_segments(), vec![1]);
        st.purge(4, Bytes::new());
        assert_eq!(
            st.deletable_segments(),
            vec![1, 2],
            "active segment 3 stays"
        );
    }
}
