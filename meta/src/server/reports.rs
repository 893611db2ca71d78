//! Taking in a chunkserver's heartbeat: its liveness and load, and its chunk report (full or
//! a delta) into the soft state, with the deletions only the leader orders (garbage, stale
//! versions, bad replicas, orphans past their grace). Synchronous: the service runs a large
//! report on the [`background`](super::background) thread and a small one inline.
//!
//! Both locks are taken per batch of [`REPORT_BATCH`] reported chunks and released between
//! batches, so a report of tens of thousands of replicas never holds off `apply` (the state's
//! lock) or other heartbeats and lookups (the soft state's) for long.
use super::soft::Live;
use super::Master;
use shale_proto::metapb::{HeartbeatReply, HeartbeatRequest, ReportedChunk};
use shale_proto::{ChunkId, ChunkVersion, NodeId};
use std::collections::HashSet;
use std::time::Instant;

/// Reported chunks handled under one taking of a lock.
pub const REPORT_BATCH: usize = 1024;

/// Takes in `node`'s heartbeat `r` (a registered server of `capacity` bytes); `orders`: this
/// master leads and is out of safe mode, so it orders deletions.
pub fn take(
    master: &Master,
    node: NodeId,
    r: HeartbeatRequest,
    capacity: u64,
    orders: bool,
    now: Instant,
) -> HeartbeatReply {
    let mut delete = Vec::new();
    let mut unknown = Vec::new();
    // A full report's chunks: what the server holds, exactly.
    let reported: Option<HashSet<ChunkId>> = r
        .full_report
        .then(|| r.chunks.iter().map(|c| ChunkId(c.chunk_id)).collect());
    // Classify in bounded batches, releasing the state lock between them, so a large report
    // never holds off `apply` (and with it the Raft core) for long.
    for batch in r.chunks.chunks(REPORT_BATCH) {
        {
            let g = master.sm.read();
            for c in batch {
                let id = ChunkId(c.chunk_id);
                let live = g.state.chunk_version(id);
                let garbage = g.state.is_garbage(id);
                if live.is_none() && !garbage {
                    unknown.push(*c);
                } else if orders && (garbage || live.is_some_and(|v| c.version < v.get())) {
                    // Only the leader orders deletions: garbage and stale versions.
                    delete.push(*c);
                }
            }
        }
    }
    if orders {
        let mut soft = master.soft.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = &reported {
            // Orphans this server no longer reports are gone: forget them (bounded memory).
            let still: HashSet<u64> = unknown.iter().map(|c| c.chunk_id).collect();
            soft.orphans
                .retain(|(n, c), _| *n != node || still.contains(&c.get()));
            // Bad replicas it no longer holds need no more deleting.
            soft.deleted_bad(node, held);
        }
        for (c, v) in soft.take_doomed(node).into_iter().chain(soft.bad_on(node)) {
            delete.push(ReportedChunk {
                chunk_id: c.get(),
                version: v.get(),
                length: 0,
            });
        }
        for c in unknown {
            let first = *soft
                .orphans
                .entry((node, ChunkId(c.chunk_id)))
                .or_insert(now);
            if now.duration_since(first) >= master.config.orphan_grace {
                tracing::info!(chunk = c.chunk_id, %node, "deleting an orphan replica");
                soft.orphans.remove(&(node, ChunkId(c.chunk_id)));
                delete.push(c);
            }
        }
    }
    let mut removed: Vec<ChunkId> = r.removed.iter().map(|c| ChunkId(*c)).collect();
    for c in &r.corrupt {
        tracing::warn!(chunk = c.chunk_id, version = c.version, node = %node,
            "replica reported corrupt (quarantined on its chunkserver)");
        removed.push(ChunkId(c.chunk_id));
    }
    {
        let mut soft = master.soft.lock().unwrap_or_else(|p| p.into_inner());
        soft.beat(
            node,
            Live {
                last_seen: now,
                // A server cannot have more free space than the capacity it registered.
                free_bytes: r.free_bytes.min(capacity),
                used_bytes: r.used_bytes.min(capacity),
                inflight: r.inflight_writes,
                reading: r.inflight_reads,
                bytes_written: r.bytes_written,
                bytes_read: r.bytes_read,
                // An address no one can dial is dropped, not handed to readers.
                data_address: if crate::sm::registry::check_address(&r.data_address).is_ok() {
                    r.data_address.clone()
                } else {
                    String::new()
                },
            },
        );
        soft.gone(node, &removed);
    }
    // The report in batches, the soft state's lock released between them: a full report
    // of tens of thousands of replicas never holds off other heartbeats or lookups long.
    for batch in r.chunks.chunks(REPORT_BATCH) {
        let held: Vec<(ChunkId, ChunkVersion, Option<u64>)> = batch
            .iter()
            .map(|c| (ChunkId(c.chunk_id), ChunkVersion(c.version), Some(c.length)))
            .collect();
        master
            .soft
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(node, &held);
    }
    let (full_report_needed, unreported) = {
        let mut soft = master.soft.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = &reported {
            soft.full_done(node, held);
        }
        (soft.ask_full_report(node, now), !soft.fully_reported(node))
    };
    HeartbeatReply {
        delete,
        token_keys: master.token_keys(),
        full_report_needed,
        unreported,
    }
}
