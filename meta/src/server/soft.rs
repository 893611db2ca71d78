//! Soft state (as in GFS): chunkserver liveness and load, and where replicas are. Learned from
//! heartbeats and chunk reports on every master, never written to Raft, so a new leader knows
//! locations at once.
use shale_proto::{ChunkId, ChunkVersion, NodeId};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

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

#[derive(Default)]
pub struct Soft {
    pub servers: HashMap<NodeId, Live>,
    /// Replicas of chunks the master does not know (neither live nor garbage): when each was
    /// first reported. Deleted only after a grace period (and never in safe mode).
    pub orphans: HashMap<(NodeId, ChunkId), Instant>,
    replicas: HashMap<ChunkId, Vec<(NodeId, ChunkVersion)>>,
    /// The length of the newest sealed version any replica reported (sealed replicas are
    /// immutable, so every replica of one version has one length).
    lengths: HashMap<ChunkId, (ChunkVersion, u64)>,
    held: HashMap<NodeId, HashSet<ChunkId>>,
    /// Replicas proven bad (bytes not matching the writer's digest): never listed again,
    /// deleted through heartbeat replies. At most [`BAD_MAX`].
    bad: HashMap<(NodeId, ChunkId), ChunkVersion>,
    /// Servers that sent this master a full report since it started.
    reported: HashSet<NodeId>,
}

/// Bad replicas remembered, at most.
pub const BAD_MAX: usize = 100_000;

impl Soft {
    /// Records a heartbeat; with `full`, `chunks` replaces everything known of that server.
    #[allow(clippy::too_many_arguments)]
    pub fn heartbeat(
        &mut self,
        node: NodeId,
        live: Live,
        full: bool,
        chunks: &[(ChunkId, ChunkVersion)],
        removed: &[ChunkId],
    ) {
        self.servers.insert(node, live);
        if full {
            self.reported.insert(node);
            let old = self.held.remove(&node).unwrap_or_default();
            for c in old {
                self.drop_replica(c, node);
            }
        }
        for c in removed {
            // A bad replica the server deleted needs no more deleting.
            self.bad.remove(&(node, *c));
            self.drop_replica(*c, node);
            if let Some(h) = self.held.get_mut(&node) {
                h.remove(c);
            }
        }
        for (c, v) in chunks {
            if self.bad.get(&(node, *c)) == Some(v) {
                continue;
            }
            let list = self.replicas.entry(*c).or_default();
            list.retain(|(n, _)| *n != node);
            list.push((node, *v));
            self.held.entry(node).or_default().insert(*c);
        }
    }

    /// Records where the leader just placed a chunk (the write's pipeline), so a read right
    /// after the write finds it before the chunkservers' next reports. A full report that
    /// lacks it drops it again.
    pub fn placed(&mut self, chunk: ChunkId, version: ChunkVersion, nodes: &[NodeId]) {
        for n in nodes {
            let list = self.replicas.entry(chunk).or_default();
            list.retain(|(x, _)| x != n);
            list.push((*n, version));
            self.held.entry(*n).or_default().insert(chunk);
        }
    }

    fn drop_replica(&mut self, c: ChunkId, node: NodeId) {
        if let Some(list) = self.replicas.get_mut(&c) {
            list.retain(|(n, _)| *n != node);
            if list.is_empty() {
                self.replicas.remove(&c);
                self.lengths.remove(&c);
            }
        }
    }

    /// Records the lengths chunkservers reported for sealed replicas.
    pub fn sealed(&mut self, reported: &[(ChunkId, ChunkVersion, u64)]) {
        for (c, v, len) in reported {
            match self.lengths.get(c) {
                Some((old, _)) if old > v => {}
                _ => {
                    self.lengths.insert(*c, (*v, *len));
                }
            }
        }
    }

    /// The length of `version` of `chunk` if some replica reported it sealed.
    pub fn sealed_length(&self, chunk: ChunkId, version: ChunkVersion) -> Option<u64> {
        match self.lengths.get(&chunk) {
            Some((v, len)) if *v == version => Some(*len),
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
            .map(|l| {
                l.iter()
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
        self.replicas.get(&chunk).map_or(&[], |v| v.as_slice())
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
                            .and_then(|l| l.iter().find(|(n, _)| *n == node))
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
        let live = |at| Live {
            last_seen: at,
            free_bytes: 1,
            used_bytes: 0,
            inflight: 0,
            reading: 0,
            bytes_written: 0,
            bytes_read: 0,
            data_address: String::new(),
        };
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
}
