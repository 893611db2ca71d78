//! Registration and heartbeats to every master.
//!
//! The chunkserver registers (through the leader, following `shale-leader` hints) and gets its
//! node id — again whenever most masters say it is not registered (an operator removed it, or
//! the leader forgot it after a long silence); then every interval it heartbeats to *each* master: free/used bytes, writes in
//! flight, its chunk report, and replicas quarantined since the last beat. The chunk report is
//! full when that master asks for it (`full_report_needed`: a master asks a few servers at a
//! time, so a thousand servers starting together do not send their reports all at once) and
//! every [`FULL_REPORT_EVERY`] beats at a phase of its own ([`full_report_due`]); deltas against
//! what that master last acknowledged in between; nothing while the master says it holds no
//! full report of ours (`unreported`: a delta needs a baseline) and has not asked for one yet.
//! A failed beat forces nothing: its delta is sent again (adding a replica twice is a no-op);
//! a full report whose answer was lost but which the master took is sent again once. Deletions in the replies (garbage
//! and stale versions, ordered by the leader only) are carried out.
use super::service::ChunkServer;
use shale_proto::metapb::master_service_client::MasterServiceClient;
use shale_proto::metapb::{HeartbeatRequest, RegisterRequest, ReportedChunk};
use shale_proto::{ChunkId, ChunkVersion};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Beats between two periodic full reports to one master (10 minutes at the default 1 s
/// interval). Full reports only correct drift: the deltas carry every change, a master that
/// restarted asks for a full report at once, and a failed beat is followed by one. A master of
/// 1,000 chunkservers holding 30 M replicas then takes in 50 k reported replicas a second
/// instead of 1 M (every 30 beats, as before).
pub const FULL_REPORT_EVERY: u64 = 600;

/// Whether a chunkserver's `beats`-th successful heartbeat to a master carries its periodic full
/// report. The phase comes from the node id, so servers started together (a cluster restart)
/// spread their periodic reports over the whole period instead of sending them all at once.
pub fn full_report_due(node: u64, beats: u64) -> bool {
    let phase = (node.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % FULL_REPORT_EVERY;
    beats % FULL_REPORT_EVERY == phase
}

#[derive(Clone, Debug)]
pub struct Identity {
    pub uuid: String,
    pub address: String,
    /// Its data port (empty: none).
    pub data_address: String,
    pub host: String,
    pub rack: Option<String>,
}

fn client(
    transport: &shale_security::Transport,
    addr: &str,
) -> Option<MasterServiceClient<Channel>> {
    let channel = transport
        .channel(addr, |ep| {
            ep.connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(5))
        })
        .ok()?;
    Some(MasterServiceClient::new(channel).max_decoding_message_size(64 << 20))
}

/// Registers with the master group; retries (following leader hints) until it succeeds.
pub async fn register(
    transport: &shale_security::Transport,
    masters: &[String],
    id: &Identity,
    capacity_bytes: u64,
) -> u64 {
    let mut target = 0usize;
    let mut hint: Option<String> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        let addr = hint
            .take()
            .unwrap_or_else(|| masters[target % masters.len()].clone());
        if let Some(mut c) = client(transport, &addr) {
            let req = RegisterRequest {
                uuid: id.uuid.clone(),
                address: id.address.clone(),
                host: id.host.clone(),
                rack: id.rack.clone().unwrap_or_default(),
                capacity_bytes,
                // Registration is idempotent by uuid: no request id needed.
                request_id: None,
            };
            match c.register_chunkserver(req).await {
                Ok(r) => return r.into_inner().node_id,
                Err(s) => {
                    hint = s
                        .metadata()
                        .get("shale-leader")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    if s.code() == tonic::Code::InvalidArgument {
                        // Not transient: the operator has to fix the flags.
                        tracing::error!(master = %addr, error = %s, "registration refused");
                    } else {
                        tracing::debug!(master = %addr, error = %s, "register: retrying");
                    }
                }
            }
        }
        target += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

struct MasterLink {
    addr: String,
    client: Option<MasterServiceClient<Channel>>,
    /// What this master acknowledged (the baseline of deltas).
    known: HashMap<ChunkId, ChunkVersion>,
    beats: u64,
    /// The master asked for a full report.
    needs_full: bool,
    /// The master said (in its last answer) that it holds no full report of ours. Until the
    /// first answer: unknown, taken as true.
    master_lacks: bool,
    /// Whether `known` is a baseline the master holds (a full report it acknowledged, and
    /// deltas since).
    baseline: bool,
}

/// Registers, then heartbeats to every master until the task is dropped.
pub async fn run(
    server: Arc<ChunkServer>,
    masters: Vec<String>,
    interval: Duration,
    identity: Identity,
    capacity_bytes: u64,
) {
    let node = register(&server.transport, &masters, &identity, capacity_bytes).await;
    server.node.store(node, Ordering::Relaxed);
    tracing::info!(node, "registered with the masters");
    let mut links: Vec<MasterLink> = masters
        .iter()
        .map(|a| MasterLink {
            addr: a.clone(),
            client: client(&server.transport, a),
            known: HashMap::new(),
            beats: 0,
            needs_full: false,
            master_lacks: true,
            baseline: false,
        })
        .collect();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = server.report_now.notified() => {}
        }
        let node = server.node.load(Ordering::Relaxed);
        let held = server.store.list();
        let now: HashMap<ChunkId, ChunkVersion> = held.iter().map(|c| (c.id, c.version)).collect();
        let lengths: HashMap<ChunkId, u64> = held.iter().map(|c| (c.id, c.length_bytes)).collect();
        let corrupt: Vec<ReportedChunk> = server
            .store
            .take_quarantine_reports()
            .into_iter()
            .map(|q| ReportedChunk {
                chunk_id: q.id.get(),
                version: q.version.map_or(0, |v| v.get()),
                length: 0,
            })
            .collect();
        let usage = server.store.usage();
        let started = Instant::now();
        let mut deletes: Vec<ReportedChunk> = Vec::new();
        let mut unregistered = 0;
        // Every master at once, each bounded: a master that hangs (shutting down, paused)
        // must not delay the others' heartbeats (they would mark this server stale).
        let timeout = (interval * 2).max(Duration::from_secs(1));
        let rounds = links.iter_mut().map(|link| {
            let (now, lengths, corrupt, server) = (&now, &lengths, &corrupt, &server);
            let data_address = &identity.data_address;
            async move {
                let full = link.needs_full
                    || (!link.master_lacks
                        && (!link.baseline || full_report_due(node, link.beats)));
                let report = |c: &ChunkId, v: &ChunkVersion| ReportedChunk {
                    chunk_id: c.get(),
                    version: v.get(),
                    length: lengths.get(c).copied().unwrap_or(0),
                };
                let (chunks, removed): (Vec<ReportedChunk>, Vec<u64>) = if full {
                    (now.iter().map(|(c, v)| report(c, v)).collect(), Vec::new())
                } else if link.master_lacks {
                    (Vec::new(), Vec::new())
                } else {
                    (
                        now.iter()
                            .filter(|(c, v)| link.known.get(c) != Some(v))
                            .map(|(c, v)| report(c, v))
                            .collect(),
                        link.known
                            .keys()
                            .filter(|c| !now.contains_key(c))
                            .map(|c| c.get())
                            .collect(),
                    )
                };
                let req = HeartbeatRequest {
                    node_id: node,
                    free_bytes: usage.free_bytes,
                    used_bytes: usage.used_bytes,
                    inflight_writes: server.inflight.load(Ordering::Relaxed),
                    inflight_reads: server.reading.load(Ordering::Relaxed),
                    full_report: full,
                    chunks,
                    removed,
                    corrupt: corrupt.clone(),
                    bytes_written: crate::metrics::TOTAL_WRITTEN.load(Ordering::Relaxed),
                    bytes_read: crate::metrics::TOTAL_READ.load(Ordering::Relaxed),
                    data_address: data_address.clone(),
                };
                let Some(c) = link.client.as_mut() else {
                    return (Vec::new(), false);
                };
                let mut req = tonic::Request::new(req);
                if let Ok(v) = node.to_string().parse() {
                    req.metadata_mut().insert("shale-node-id", v);
                }
                req.set_timeout(timeout);
                match tokio::time::timeout(timeout, c.heartbeat(req)).await {
                    Ok(Ok(r)) => {
                        link.beats += 1;
                        let r = r.into_inner();
                        if full || !link.master_lacks {
                            link.known = now.clone();
                            link.baseline = true;
                        }
                        link.master_lacks = r.unreported;
                        if r.unreported {
                            // It has nothing of ours (it restarted): deltas wait for a full
                            // report it asks for.
                            link.baseline = false;
                        }
                        // A master restarted since our last full report knows nothing we hold.
                        link.needs_full = r.full_report_needed;
                        if r.full_report_needed {
                            server.report_now.notify_one();
                        }
                        server.keys.update(&r.token_keys);
                        (r.delete, false)
                    }
                    Ok(Err(s)) => {
                        tracing::debug!(master = %link.addr, error = %s, "heartbeat failed");
                        (Vec::new(), s.code() == tonic::Code::NotFound)
                    }
                    Err(_) => {
                        tracing::debug!(master = %link.addr, "heartbeat timed out");
                        (Vec::new(), false)
                    }
                }
            }
        });
        for (d, not_found) in futures_util::future::join_all(rounds).await {
            deletes.extend(d);
            unregistered += usize::from(not_found);
        }
        if unregistered > links.len() / 2 {
            tracing::warn!(
                node,
                "the masters no longer know this chunkserver: registering again"
            );
            let again = register(&server.transport, &masters, &identity, capacity_bytes).await;
            server.node.store(again, Ordering::Relaxed);
            tracing::info!(node = again, "registered with the masters");
            for link in links.iter_mut() {
                // A new registration: the masters hold nothing of it yet.
                link.known.clear();
                link.baseline = false;
                link.master_lacks = true;
                link.needs_full = false;
            }
            continue;
        }
        for d in deletes {
            let (id, v) = (ChunkId(d.chunk_id), ChunkVersion(d.version));
            match server.store.delete(id, v).await {
                Ok(true) => {
                    tracing::info!(chunk = %id, version = %v, "deleted as ordered by the leader")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(chunk = %id, error = %e, "ordered delete refused"),
            }
        }
        tracing::trace!(took = ?started.elapsed(), "heartbeat round");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One periodic full report per period for every node, at phases spread over the period.
    #[test]
    fn periodic_full_reports_are_spread() {
        let mut phases = std::collections::HashSet::new();
        for node in 1..=1000u64 {
            let due: Vec<u64> = (0..FULL_REPORT_EVERY * 3)
                .filter(|b| full_report_due(node, *b))
                .collect();
            assert_eq!(due.len(), 3, "node {node}");
            assert_eq!(due[1] - due[0], FULL_REPORT_EVERY);
            phases.insert(due[0]);
        }
        // 1,000 nodes over 600 phases: most phases taken, none crowded.
        assert!(phases.len() > 400, "{}", phases.len());
    }
}
