//! Soft state (as in GFS): chunkserver liveness and load, and where replicas are. Learned from
//! heartbeats and chunk reports on every master, never written to Raft, so a new leader knows
//! locations at once.
use shale_proto::{ChunkId, ChunkVersion, NodeId};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::sm::idmap::Sharded;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Missed heartbeats: no new replicas placed on it.
    Stale,
    /// Gone: its replicas no longer count.
    Dead,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Stale => "stale",
            Liveness::Dead => "dead",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Live {
    pub last_seen: Instant,
    pub free_bytes: u64,
    pub used_bytes: u64,
    /// Writes in flight.
    pub inflight: u32,
    /// Reads in flight.
    pub reading: u32,
    /// Chunk bytes the server wrote and read since it started (as it reported).
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Its data port (host:port, checked like registered addresses; empty: none).
    pub data_address: String,
}

#[cfg(test)]
impl Live {
    /// A server last heard from `at`, idle, with 1 byte free (for tests).
    pub fn idle(at: Instant) -> Live {
        Live {
            last_seen: at,
            free_bytes: 1,
            used_bytes: 0,
            inflight: 0,
            reading: 0,
            bytes_written: 0,
            bytes_read: 0,
            data_address: String::new(),
        }
    }
}

#[derive(Copy, Clone, Debug)]
pub struct Timeouts {
    pub stale_after: Duration,
    pub dead_after: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            stale_after: Duration::from_secs(3),
            dead_after: Duration::from_secs(30),
        }
    }
}

/// The hash of sets and maps keyed by chunk ids, which chunkservers report: a fast hash
/// seeded at random per process (SipHash was a tenth of a master's time taking in 30 M
/// reported replicas; an unseeded multiply, as for the state's own maps, would let a
/// chunkserver pick colliding ids).
type ChunkHash = foldhash::fast::RandomState;
type ChunkSet = HashSet<ChunkId, ChunkHash>;

/// What is known of one chunk's replicas.
#[derive(Default)]
struct Known {
    /// (server, version) of every replica reported.
    list: Vec<(NodeId, ChunkVersion)>,
    /// The length of the newest sealed version any replica reported (sealed replicas are
    /// immutable, so every replica of one version has one length).
    sealed: Option<(ChunkVersion, u64)>,
}

#[derive(Default)]
pub struct Soft {
    pub servers: HashMap<NodeId, Live>,
    /// Replicas of chunks the master does not know (neither live nor garbage): when each was
    /// first reported. Deleted only after a grace period (and never in safe mode).
    pub orphans: HashMap<(NodeId, ChunkId), Instant>,
    /// Sharded: it grows to every chunk while full reports come in (see `sm::idmap`).
    replicas: Sharded<ChunkId, Known, ChunkHash>,
    held: HashMap<NodeId, ChunkSet>,
    /// Replicas proven bad (bytes not matching the writer's digest): never listed again,
    /// deleted through heartbeat replies. At most [`BAD_MAX`].
    bad: HashMap<(NodeId, ChunkId), ChunkVersion>,
    /// Servers that sent this master a full report since it started.
    reported: HashSet<NodeId>,
    /// Chunks whose replicas changed since the healer last took them (see `watch`): at most
    /// [`TOUCHED_MAX`]; past that, changes are left to the healer's background scan.
    touched: Vec<ChunkId>,
    /// Replicas of garbage chunks to order deleted, per server (queued by the healer, taken
    /// by the server's next heartbeat on the leader): at most [`DOOMED_MAX`] in all. Full
    /// reports are rare, so deletions cannot wait for the server to report the chunk again.
    doomed: HashMap<NodeId, HashSet<(ChunkId, ChunkVersion)>>,
    doomed_len: usize,
    /// Servers asked for their full report, and since when (see [`Soft::ask_full_report`]).
    leases: HashMap<NodeId, Instant>,
}

/// Servers asked for a full report at once, at most: a thousand chunkservers starting together
/// send their reports a few at a time instead of all at once (each is tens of thousands of
/// replicas; all at once, the reports outlasted the servers' timeouts and were sent again and
/// again).
pub const REPORT_LEASES: usize = 8;
/// A server asked for its full report that has not sent it by then is asked again later,
/// and another one is asked meanwhile.
pub const REPORT_LEASE_TTL: Duration = Duration::from_secs(20);

/// Garbage replicas queued for deletion, at most.
pub const DOOMED_MAX: usize = 1 << 20;

/// Touched chunks remembered between two healing rounds, at most.
pub const TOUCHED_MAX: usize = 1 << 20;

/// Bad replicas remembered, at most.
pub const BAD_MAX: usize = 100_000;

impl Soft {
    /// Soft state with room for the replicas of `chunks` chunks (the state's count at start):
    /// taking in the first full reports then grows nothing.
    pub fn for_chunks(chunks: usize) -> Soft {
        let mut s = Soft::default();
        s.replicas.reserve(chunks);
        s
    }

    /// Records a whole heartbeat at once (for tests); with `full`, `chunks` replaces everything
    /// known of that server. (The service feeds a report in pieces: [`Soft::beat`],
    /// [`Soft::gone`], [`Soft::add`] per batch, then [`Soft::full_done`].)
    #[cfg(test)]
    pub fn heartbeat(
        &mut self,
        node: NodeId,
        live: Live,
        full: bool,
        chunks: &[(ChunkId, ChunkVersion)],
        removed: &[ChunkId],
    ) {
        self.beat(node, live);
        self.gone(node, removed);
        let chunks: Vec<(ChunkId, ChunkVersion, Option<u64>)> =
            chunks.iter().map(|(c, v)| (*c, *v, None)).collect();
        self.add(node, &chunks);
        if full {
            let reported: HashSet<ChunkId> = chunks.iter().map(|(c, _, _)| *c).collect();
            self.full_done(node, &reported);
        }
    }

    /// Records that `node` is alive, with its load.
    pub fn beat(&mut self, node: NodeId, live: Live) {
        self.servers.insert(node, live);
    }

    /// Records replicas `node` reports gone.
    pub fn gone(&mut self, node: NodeId, removed: &[ChunkId]) {
        for c in removed {
            // A bad replica the server deleted needs no more deleting.
            self.bad.remove(&(node, *c));
            self.drop_replica(*c, node);
            if let Some(h) = self.held.get_mut(&node) {
                h.remove(c);
            }
        }
    }

    /// Records replicas `node` reports holding (a delta, or a piece of a full report), with
    /// the length it reports (for sealed replicas); only what is news changes anything.
    pub fn add(&mut self, node: NodeId, chunks: &[(ChunkId, ChunkVersion, Option<u64>)]) {
        let mut held = self.held.remove(&node).unwrap_or_default();
        for (c, v, len) in chunks {
            if !self.bad.is_empty() && self.bad.get(&(node, *c)) == Some(v) {
                continue;
            }
            self.set_replica(*c, node, *v, *len);
            held.insert(*c);
        }
        self.held.insert(node, held);
    }

    /// Ends a full report of `node`, whose pieces were [`Soft::add`]ed: it holds exactly
    /// `reported`; replicas it lacks are gone. From now on its locations are known here.
    pub fn full_done(&mut self, node: NodeId, reported: &HashSet<ChunkId>) {
        let lacking: Vec<ChunkId> = self
            .held
            .get(&node)
            .map(|h| {
                h.iter()
                    .filter(|c| !reported.contains(c))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for c in lacking {
            self.drop_replica(c, node);
            if let Some(h) = self.held.get_mut(&node) {
                h.remove(&c);
            }
        }
        self.reported.insert(node);
        self.leases.remove(&node);
    }

    /// Whether to ask `node` for its full report now: it has sent none to this master, and it
    /// holds one of the [`REPORT_LEASES`] (kept until the report arrives or
    /// [`REPORT_LEASE_TTL`] passes).
    pub fn ask_full_report(&mut self, node: NodeId, now: Instant) -> bool {
        if self.reported.contains(&node) {
            return false;
        }
        self.leases
            .retain(|_, at| now.saturating_duration_since(*at) < REPORT_LEASE_TTL);
        if self.leases.contains_key(&node) {
            return true;
        }
        if self.leases.len() < REPORT_LEASES {
            self.leases.insert(node, now);
            return true;
        }
        false
    }

    /// Records `node`'s replica of `c` at version `v` (and its length, if sealed). Touches `c`
    /// when the replica's version changed (replicas of the old version elsewhere are stale
    /// now); a new replica touches nothing: it can only bring a chunk up to or over its target,
    /// which the healer sees in its trouble map and its scan.
    fn set_replica(&mut self, c: ChunkId, node: NodeId, v: ChunkVersion, len: Option<u64>) {
        let k = self.replicas.entry_or_default(c);
        if let Some(len) = len {
            match k.sealed {
                Some((old, _)) if old > v => {}
                _ => k.sealed = Some((v, len)),
            }
        }
        match k.list.iter_mut().find(|(n, _)| *n == node) {
            Some((_, old)) if *old == v => {}
            Some((_, old)) => {
                *old = v;
                self.touch(c);
            }
            None => k.list.push((node, v)),
        }
    }

    fn touch(&mut self, c: ChunkId) {
        if self.touched.len() < TOUCHED_MAX {
            self.touched.push(c);
        }
    }

    /// The chunks whose replicas changed since the last call.
    pub fn take_touched(&mut self) -> Vec<ChunkId> {
        std::mem::take(&mut self.touched)
    }

    /// Queues the deletion of `node`'s replica of garbage chunk `c` (once; bounded).
    pub fn doom(&mut self, node: NodeId, c: ChunkId, v: ChunkVersion) {
        if self.doomed_len < DOOMED_MAX && self.doomed.entry(node).or_default().insert((c, v)) {
            self.doomed_len += 1;
        }
    }

    /// The garbage replicas `node` is to delete (each handed out once).
    pub fn take_doomed(&mut self, node: NodeId) -> Vec<(ChunkId, ChunkVersion)> {
        let d = self.doomed.remove(&node).unwrap_or_default();
        self.doomed_len -= d.len();
        d.into_iter().collect()
    }

    /// The chunks `node` is known to hold.
    pub fn held_ids(&self, node: NodeId) -> Vec<ChunkId> {
        self.held
            .get(&node)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Records where the leader just placed a chunk (the write's pipeline), so a read right
    /// after the write finds it before the chunkservers' next reports. A full report that
    /// lacks it drops it again.
    pub fn placed(&mut self, chunk: ChunkId, version: ChunkVersion, nodes: &[NodeId]) {
        for n in nodes {
            self.set_replica(chunk, *n, version, None);
            self.held.entry(*n).or_default().insert(chunk);
        }
    }

    fn drop_replica(&mut self, c: ChunkId, node: NodeId) {
        if let Some(k) = self.replicas.get_mut(&c) {
            let before = k.list.len();
            k.list.retain(|(n, _)| *n != node);
            let dropped = k.list.len() < before;
            if k.list.is_empty() {
                self.replicas.remove(&c);
            }
            if dropped {
                self.touch(c);
            }
        }
    }

    /// The length of `version` of `chunk` if some replica reported it sealed.
    pub fn sealed_length(&self, chunk: ChunkId, version: ChunkVersion) -> Option<u64> {
        match self.replicas.get(&chunk).and_then(|k| k.sealed) {
            Some((v, len)) if v == version => Some(len),
            _ => None,
        }
    }

    pub fn liveness(&self, node: NodeId, now: Instant, t: Timeouts) -> Liveness {
        match self.servers.get(&node) {
            None => Liveness::Dead,
            Some(l) => {
                let age = now.saturating_duration_since(l.last_seen);
                if age >= t.dead_after {
                    Liveness::Dead
                } else if age >= t.stale_after {
                    Liveness::Stale
                } else {
                    Liveness::Alive
                }
            }
        }
    }

    /// Servers holding `version` of `chunk` that are not dead, alive ones first.
    pub fn locations(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        now: Instant,
        t: Timeouts,
    ) -> Vec<NodeId> {
        let mut out: Vec<(Liveness, NodeId)> = self
            .replicas
            .get(&chunk)
            .map(|k| {
                k.list
                    .iter()
                    .filter(|(_, v)| *v == version)
                    .map(|(n, _)| (self.liveness(*n, now, t), *n))
                    .filter(|(l, _)| *l != Liveness::Dead)
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|(l, n)| (*l != Liveness::Alive, *n));
        out.into_iter().map(|(_, n)| n).collect()
    }

    /// Every known replica of a chunk: (server, version).
    pub fn replicas(&self, chunk: ChunkId) -> &[(NodeId, ChunkVersion)] {
        self.replicas.get(&chunk).map_or(&[], |k| k.list.as_slice())
    }

    /// Marks `node`'s replica of `chunk`@`version` bad: forgotten, and from now on neither
    /// listed nor counted, whatever the server reports.
    pub fn mark_bad(&mut self, node: NodeId, chunk: ChunkId, version: ChunkVersion) {
        self.remove(chunk, node);
        if self.bad.len() < BAD_MAX {
            self.bad.insert((node, chunk), version);
        }
    }

    /// The bad replicas `node` should delete (and stops being asked to once it reports them
    /// gone: see [`Soft::deleted_bad`]).
    pub fn bad_on(&self, node: NodeId) -> Vec<(ChunkId, ChunkVersion)> {
        self.bad
            .iter()
            .filter(|((n, _), _)| *n == node)
            .map(|((_, c), v)| (*c, *v))
            .collect()
    }

    /// Every replica proven bad and not yet gone.
    pub fn bad_replicas(&self) -> HashSet<(NodeId, ChunkId)> {
        self.bad.keys().copied().collect()
    }

    /// `node` no longer holds `chunks` (a full report without them): forget they were bad.
    pub fn deleted_bad(&mut self, node: NodeId, still_held: &HashSet<ChunkId>) {
        self.bad
            .retain(|(n, c), _| *n != node || still_held.contains(c));
    }

    /// Forgets one replica (deleted or found bad).
    pub fn remove(&mut self, chunk: ChunkId, node: NodeId) {
        self.drop_replica(chunk, node);
        if let Some(h) = self.held.get_mut(&node) {
            h.remove(&chunk);
        }
    }

    /// Chunks a server reported, with versions.
    /// Whether `node` sent a full report to this master since it started (until then, what it
    /// holds is unknown here).
    pub fn fully_reported(&self, node: NodeId) -> bool {
        self.reported.contains(&node)
    }

    /// How many chunks `node` holds (O(1), for status pages).
    pub fn held_count(&self, node: NodeId) -> usize {
        self.held.get(&node).map_or(0, |h| h.len())
    }

    pub fn held_by(&self, node: NodeId) -> Vec<(ChunkId, ChunkVersion)> {
        self.held
            .get(&node)
            .map(|h| {
                h.iter()
                    .filter_map(|c| {
                        self.replicas
                            .get(c)
                            .and_then(|k| k.list.iter().find(|(n, _)| *n == node))
                            .map(|(_, v)| (*c, *v))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_liveness_and_locations() {
        let mut s = Soft::default();
        let t = Timeouts {
            stale_after: Duration::from_secs(1),
            dead_after: Duration::from_secs(5),
        };
        let t0 = Instant::now();
        let live = Live::idle;
        s.heartbeat(
            NodeId(1),
            live(t0),
            true,
            &[(ChunkId(7), ChunkVersion(2))],
            &[],
        );
        s.heartbeat(
            NodeId(2),
            live(t0),
            true,
            &[(ChunkId(7), ChunkVersion(1))],
            &[],
        );
        assert_eq!(
            s.locations(ChunkId(7), ChunkVersion(2), t0, t),
            vec![NodeId(1)]
        );
        assert_eq!(
            s.liveness(NodeId(1), t0 + Duration::from_secs(2), t),
            Liveness::Stale
        );
        assert_eq!(
            s.liveness(NodeId(1), t0 + Duration::from_secs(6), t),
            Liveness::Dead
        );
        assert!(s
            .locations(ChunkId(7), ChunkVersion(2), t0 + Duration::from_secs(6), t)
            .is_empty());
        s.heartbeat(NodeId(1), live(t0), false, &[], &[ChunkId(7)]);
        assert!(s.locations(ChunkId(7), ChunkVersion(2), t0, t).is_empty());
        s.heartbeat(NodeId(2), live(t0), true, &[], &[]);
        assert!(s.held_by(NodeId(2)).is_empty());
    }

    /// Reports touch exactly the chunks whose replicas went away or changed version; new
    /// replicas (reported or placed) and repeated reports touch nothing.
    #[test]
    fn reports_touch_only_what_changed() {
        let mut s = Soft::default();
        let live = Live::idle(Instant::now());
        let v1 = ChunkVersion(1);
        let report: Vec<(ChunkId, ChunkVersion)> = (1..=5).map(|c| (ChunkId(c), v1)).collect();
        // New replicas touch nothing (they can only help); repeating them neither.
        s.heartbeat(NodeId(1), live.clone(), true, &report, &[]);
        assert!(s.take_touched().is_empty());
        s.heartbeat(NodeId(1), live.clone(), true, &report, &[]);
        assert!(s.take_touched().is_empty());
        // Chunk 1 gone, chunk 2 at a new version, chunk 6 new.
        let mut next: Vec<(ChunkId, ChunkVersion)> = (3..=6).map(|c| (ChunkId(c), v1)).collect();
        next.push((ChunkId(2), ChunkVersion(2)));
        s.heartbeat(NodeId(1), live.clone(), true, &next, &[]);
        let mut t = s.take_touched();
        t.sort();
        assert_eq!(t, vec![ChunkId(1), ChunkId(2)]);
        assert!(s.replicas(ChunkId(1)).is_empty());
        assert_eq!(s.replicas(ChunkId(2)), &[(NodeId(1), ChunkVersion(2))]);
        assert_eq!(s.held_ids(NodeId(1)).len(), 5);
        s.heartbeat(NodeId(1), live, false, &[], &[ChunkId(3)]);
        assert_eq!(s.take_touched(), vec![ChunkId(3)]);
        s.placed(ChunkId(9), v1, &[NodeId(2)]);
        assert!(s.take_touched().is_empty());
        assert_eq!(s.held_ids(NodeId(2)), vec![ChunkId(9)]);
    }
}
