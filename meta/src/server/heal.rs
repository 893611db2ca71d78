//! Self-healing on the leader: re-replication of under-replicated chunks (fewest live replicas
//! first, throttled per server), trimming of over-replicated ones, and forgetting garbage whose
//! replicas are all gone. Each round looks only at the chunks [`watch`](super::watch) picks
//! (what changed, what was in trouble, and a bounded slice of a background scan), in batches
//! with the locks released between them.
//!
//! Safe mode (as in HDFS): a new leader deletes nothing — no trimming, no deletions in heartbeat
//! replies — until it has led for `safe_mode` *and* heard from every registered chunkserver
//! since, so it never acts on locations it has not learned yet.
use super::soft::Liveness;
use super::watch::{Seen, Trouble, Watch};
use super::{retire, Master};
use crate::placement::{self, Candidate};
use crate::sm::Command;
use shale_proto::pb::chunk_service_client::ChunkServiceClient;
use shale_proto::pb::{ChunkRef, DeleteChunksRequest, PipelineTarget, ReplicateChunkRequest};
use shale_proto::{ChunkId, ChunkVersion, NodeId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Copies one server takes part in at once (as source or target), by default.
pub const COPIES_PER_SERVER_DEFAULT: usize = 2;
/// Copies started per healing round.
pub const COPIES_PER_ROUND_MAX: usize = 64;
/// Endangered chunks remembered per round (for `Status`'s files at risk).
pub const AT_RISK_MAX: usize = 20;
/// Chunks looked at under one taking of the locks.
const LOOK_BATCH: usize = 4096;
/// Garbage chunks checked for remaining replicas per round.
const GARBAGE_PER_ROUND: usize = 65_536;
/// Garbage chunks forgotten per round, at most.
const FORGET_PER_ROUND: usize = 10_000;

#[derive(Default)]
struct Progress {
    copying: HashSet<ChunkId>,
    busy: HashMap<NodeId, usize>,
}

/// Channels to chunkservers kept at most (beyond that, the cache starts over).
const CHANNELS_MAX: usize = 4096;

/// A client of the chunkserver at `addr`, on a channel the master keeps across healing rounds
/// (one connection, one TLS handshake, per server rather than per copy).
fn chunk_client(
    master: &Master,
    addr: &str,
) -> Option<ChunkServiceClient<tonic::transport::Channel>> {
    let mut map = master
        .chunk_channels
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(c) = map.get(addr) {
        return Some(ChunkServiceClient::new(c.clone()));
    }
    let channel = master
        .config
        .transport
        .channel(addr, |ep| {
            ep.connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(300))
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(10))
        })
        .ok()?;
    if map.len() >= CHANNELS_MAX {
        map.clear();
    }
    map.insert(addr.to_string(), channel.clone());
    Some(ChunkServiceClient::new(channel))
}

/// One chunk's state as the healer sees it.
struct View {
    id: ChunkId,
    version: ChunkVersion,
    target: usize,
    /// Replicas on servers that are not dead and not draining: these count.
    live: Vec<NodeId>,
    /// Replicas on draining servers (not dead): sources for copies, removed once redundant.
    draining: Vec<NodeId>,
    /// A chunk of an append file: its committed end, and whether it still takes records (it
    /// is fenced before it is copied, so that a copy holding the end holds every record).
    append: Option<(u64, bool)>,
    /// Replicas of older versions (to be deleted: a write moved on without them).
    stale: Vec<(NodeId, ChunkVersion)>,
}

impl View {
    fn trouble(&self) -> Option<Trouble> {
        if self.live.is_empty() && self.draining.is_empty() {
            Some(Trouble::Lost)
        } else if self.live.len() < self.target {
            Some(Trouble::Under)
        } else if self.live.len() > self.target || !self.draining.is_empty() {
            Some(Trouble::Extra)
        } else {
            None
        }
    }
}

/// A chunkserver as the healer sees it.
struct Server {
    liveness: Liveness,
    host: String,
    rack: Option<String>,
    free: u64,
    /// Heard from since this master became leader.
    heard: bool,
    draining: bool,
}

/// Everything one healing round needs, read under the locks at once.
struct Round {
    views: Vec<View>,
    servers: HashMap<NodeId, Server>,
    addrs: HashMap<NodeId, String>,
    /// Data ports (from heartbeats; absent: none known).
    data_addrs: HashMap<NodeId, String>,
    garbage_gone: Vec<(ChunkId, ChunkVersion)>,
    /// Replicas proven bad and not yet deleted: no copy goes to those servers meanwhile.
    bad: HashSet<(NodeId, ChunkId)>,
    /// Chunkservers whose full report this master still waits for (locations incomplete).
    unreported: usize,
}

/// How chunk `id` stands (None: not a complete file's chunk, or an append chunk holding no
/// record yet).
fn view_of(
    state: &crate::sm::MetaState,
    soft: &super::soft::Soft,
    servers: &HashMap<NodeId, Server>,
    id: ChunkId,
) -> Option<View> {
    let (version, target) = state.complete_chunk(id)?;
    let append = state.append_chunk_state(id);
    if append.is_some_and(|(end, _)| end == 0) {
        // An append chunk holding no committed record: nothing to keep (its replicas may not
        // even exist yet).
        return None;
    }
    let (mut live, mut draining, mut stale) = (Vec::new(), Vec::new(), Vec::new());
    for (n, v) in soft.replicas(id) {
        if *v < version {
            stale.push((*n, *v));
        }
        let Some(s) = servers.get(n) else { continue };
        if *v != version || s.liveness == Liveness::Dead {
            continue;
        }
        if s.draining {
            draining.push(*n);
        } else {
            live.push(*n);
        }
    }
    Some(View {
        id,
        version,
        target: usize::from(target),
        live,
        draining,
        append,
        stale,
    })
}

/// The next slice of garbage chunks from `watch`'s cursor: their replicas are queued for
/// deletion (in their servers' next heartbeat replies); those with none left are returned, to
/// be forgotten.
fn garbage_slice(
    state: &crate::sm::MetaState,
    soft: &mut super::soft::Soft,
    watch: &mut Watch,
) -> Vec<(ChunkId, ChunkVersion)> {
    let mut checked = 0usize;
    let mut gone = Vec::new();
    for (c, v) in state.garbage_from(watch.garbage_cursor) {
        if checked == GARBAGE_PER_ROUND || gone.len() == FORGET_PER_ROUND {
            break;
        }
        checked += 1;
        watch.garbage_cursor = ChunkId(c.get() + 1);
        let replicas: Vec<(NodeId, ChunkVersion)> = soft.replicas(*c).to_vec();
        if replicas.is_empty() {
            gone.push((*c, *v));
        }
        for (n, rv) in replicas {
            soft.doom(n, *c, rv);
        }
    }
    if checked < GARBAGE_PER_ROUND && gone.len() < FORGET_PER_ROUND {
        watch.garbage_cursor = ChunkId(0);
    }
    gone
}

/// Reads a round: the servers, then the chunks `watch` picks, looked at in batches of
/// [`LOOK_BATCH`] with the locks released (and the runtime yielded to) between them. Only
/// chunks in trouble are kept in the round; every look is recorded in `watch`.
async fn observe(master: &Master, since: Instant, now: Instant, watch: &mut Watch) -> Round {
    let t = master.config.timeouts;
    let (servers, addrs, data_addrs, bad, unreported, extra, id_end, garbage_gone) = {
        let g = master.sm.read();
        let mut soft = master.soft.lock().unwrap_or_else(|p| p.into_inner());
        let servers: HashMap<NodeId, Server> = g
            .state
            .servers()
            .map(|(id, s)| {
                let (free, heard) = soft
                    .servers
                    .get(id)
                    .map_or((0, false), |x| (x.free_bytes, x.last_seen >= since));
                let server = Server {
                    liveness: soft.liveness(*id, now, t),
                    host: s.host.clone(),
                    rack: s.rack.clone(),
                    free,
                    heard,
                    draining: s.draining,
                };
                (*id, server)
            })
            .collect();
        let addrs: HashMap<NodeId, String> = g
            .state
            .servers()
            .map(|(id, s)| (*id, s.address.clone()))
            .collect();
        let changed = watch.changed_servers(
            servers
                .iter()
                .map(|(n, s)| (*n, Seen::of(s.liveness, s.draining)))
                .collect(),
        );
        let mut extra = soft.take_touched();
        for n in changed {
            extra.extend(soft.held_ids(n));
        }
        let unreported = g
            .state
            .servers()
            .filter(|(id, _)| master.unreported(&soft, **id, now))
            .count();
        // Garbage with no known replica is known to have none only once every server reported.
        let gone = if unreported == 0 {
            garbage_slice(&g.state, &mut soft, watch)
        } else {
            Vec::new()
        };
        let data_addrs: HashMap<NodeId, String> = soft
            .servers
            .iter()
            .filter(|(_, l)| !l.data_address.is_empty())
            .map(|(n, l)| (*n, l.data_address.clone()))
            .collect();
        (
            servers,
            addrs,
            data_addrs,
            soft.bad_replicas(),
            unreported,
            extra,
            g.state.chunk_id_end(),
            gone,
        )
    };
    let views = if unreported > 0 {
        // Locations are incomplete (this master started, or servers have yet to report):
        // every chunk would look lost. Look at nothing and start afresh once every report is
        // in, as a new leader does (servers dead or draining then are looked at first).
        *watch = Watch::default();
        Vec::new()
    } else {
        look(master, watch, &servers, extra, id_end).await
    };
    Round {
        views,
        servers,
        addrs,
        data_addrs,
        garbage_gone,
        bad,
        unreported,
    }
}

/// Looks at the chunks the watch picks this round (`extra`: touched or on changed servers),
/// in batches with both locks released between them: stale replicas are doomed, each chunk's
/// trouble is settled in the watch, and the views of those in trouble are returned.
async fn look(
    master: &Master,
    watch: &mut Watch,
    servers: &HashMap<NodeId, Server>,
    extra: Vec<ChunkId>,
    id_end: u64,
) -> Vec<View> {
    let n_extra = extra.len();
    let ids = watch.pick(extra, id_end);
    tracing::debug!(
        looked = ids.len(),
        touched_or_changed = n_extra,
        lost = watch.lost(),
        under = watch.under(),
        "healing round"
    );
    let mut views = Vec::new();
    for batch in ids.chunks(LOOK_BATCH) {
        {
            let g = master.sm.read();
            let mut soft = master.soft.lock().unwrap_or_else(|p| p.into_inner());
            for id in batch {
                let view = view_of(&g.state, &soft, servers, *id);
                for (n, v) in view.iter().flat_map(|v| v.stale.iter()) {
                    soft.doom(*n, *id, *v);
                }
                let trouble = view.as_ref().and_then(View::trouble);
                watch.settle(*id, trouble);
                if let (Some(v), Some(_)) = (view, trouble) {
                    views.push(v);
                }
            }
        }
        tokio::task::yield_now().await;
    }
    views
}

/// Starts copies for under-replicated chunks, most endangered first.
fn start_copies(
    master: &Arc<Master>,
    r: &Round,
    watch: &Watch,
    progress: &Arc<std::sync::Mutex<Progress>>,
) {
    let per_server = master.config.copies_per_server.max(1);
    let mut under: Vec<&View> = r
        .views
        .iter()
        .filter(|v| v.trouble() == Some(Trouble::Under))
        .collect();
    under.sort_by_key(|v| v.live.len() * 100 / v.target.max(1));
    master
        .under_replicated
        .store(watch.under() as u64, Ordering::Relaxed);
    // Chunks with no replica left: counted, the first ones kept for `Status`'s files at risk.
    let lost = watch.lost();
    let first_lost: Vec<&View> = r
        .views
        .iter()
        .filter(|v| v.trouble() == Some(Trouble::Lost))
        .take(AT_RISK_MAX)
        .collect();
    master.missing.store(
        if r.unreported == 0 { lost as u64 } else { 0 },
        Ordering::Relaxed,
    );
    // Lost chunks first, then the least replicated (only once every server has reported).
    let at_risk: Vec<(ChunkId, u32, u32)> = if r.unreported == 0 {
        first_lost
            .into_iter()
            .chain(under.iter().copied())
            .take(AT_RISK_MAX)
            .map(|v| (v.id, v.live.len() as u32, v.target as u32))
            .collect()
    } else {
        Vec::new()
    };
    *master.at_risk.lock().unwrap_or_else(|p| p.into_inner()) = at_risk;
    if lost > 0 && r.unreported == 0 {
        tracing::warn!(lost, "chunks with no live replica: data at risk");
    } else if lost > 0 {
        // Just started or elected: the chunkservers' full reports are on their way.
        tracing::debug!(
            lost,
            unreported = r.unreported,
            "chunk locations not known yet"
        );
    }
    if r.unreported > 0 {
        // Copies made now could duplicate replicas a report is about to show (HDFS replicates
        // nothing in safe mode either).
        return;
    }
    let mut started = 0;
    for v in under {
        if started >= COPIES_PER_ROUND_MAX {
            break;
        }
        let mut p = progress.lock().unwrap_or_else(|p| p.into_inner());
        if p.copying.contains(&v.id) {
            continue;
        }
        if v.append.is_some_and(|(_, open)| open) {
            // Fence it first (no record lands in it from then on); copy it next round.
            let (m, id) = (master.clone(), v.id);
            tokio::spawn(async move {
                if let Err(e) = m.write(Command::FenceChunk { chunk: id }).await {
                    tracing::warn!(chunk = %id, error = %e, "fencing an append chunk failed");
                }
            });
            continue;
        }
        let busy = |p: &Progress, n: &NodeId| p.busy.get(n).copied().unwrap_or(0);
        let Some(source) = v
            .live
            .iter()
            .chain(v.draining.iter())
            .copied()
            .filter(|n| {
                r.servers
                    .get(n)
                    .is_some_and(|s| s.liveness == Liveness::Alive)
            })
            .find(|n| busy(&p, n) < per_server)
        else {
            continue;
        };
        let used_hosts: HashSet<&String> = v
            .live
            .iter()
            .filter_map(|n| r.servers.get(n).map(|s| &s.host))
            .collect();
        let candidates: Vec<Candidate> = r
            .servers
            .iter()
            .filter(|(n, s)| {
                s.liveness == Liveness::Alive
                    && !s.draining
                    && !v.live.contains(n)
                    && !v.draining.contains(n)
                    && !used_hosts.contains(&s.host)
                    && !r.bad.contains(&(**n, v.id))
                    && busy(&p, n) < per_server
            })
            .map(|(n, s)| Candidate {
                node: *n,
                host: s.host.clone(),
                rack: s.rack.clone(),
                free_bytes: s.free,
                load: busy(&p, n) as u32,
            })
            .collect();
        let Some(target) = placement::place(&candidates, 1, &[], 1, None)
            .ok()
            .and_then(|c| c.first().copied())
        else {
            continue;
        };
        let (Some(src_addr), Some(dst_addr)) = (r.addrs.get(&source), r.addrs.get(&target)) else {
            continue;
        };
        p.copying.insert(v.id);
        *p.busy.entry(source).or_default() += 1;
        *p.busy.entry(target).or_default() += 1;
        drop(p);
        started += 1;
        let (m, prog, src_addr, dst_addr) = (
            master.clone(),
            progress.clone(),
            src_addr.clone(),
            dst_addr.clone(),
        );
        let src_data = r.data_addrs.get(&source).cloned().unwrap_or_default();
        let (id, version) = (v.id, v.version);
        let need = v.append.map_or(0, |(end, _)| end);
        tokio::spawn(async move {
            let ok = match chunk_client(&m, &dst_addr) {
                Some(mut c) => match c
                    .replicate_chunk(ReplicateChunkRequest {
                        chunk: Some(ChunkRef {
                            chunk_id: id.get(),
                            version: version.get(),
                        }),
                        source: Some(PipelineTarget {
                            node_id: source.get(),
                            address: src_addr,
                            data_address: String::new(),
                        }),
                        from: None,
                        // A master's own request: its identity is its authority.
                        token: None,
                        from_token: None,
                        source_data_address: src_data,
                    })
                    .await
                {
                    Ok(r) if r.get_ref().length < need => {
                        // An append chunk's source missed committed records (it cannot,
                        // if every commit named every replica; never count such a copy).
                        tracing::error!(chunk = %id, got = r.get_ref().length, need, "copy of an append chunk is short; deleting it");
                        let _ = c
                            .delete_chunks(shale_proto::pb::DeleteChunksRequest {
                                chunks: vec![ChunkRef {
                                    chunk_id: id.get(),
                                    version: version.get(),
                                }],
                            })
                            .await;
                        false
                    }
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(chunk = %id, error = %e, "re-replication failed");
                        false
                    }
                },
                None => false,
            };
            if ok {
                tracing::info!(chunk = %id, from = %source, to = %target, "re-replicated");
                m.soft
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .placed(id, version, &[target]);
            }
            let mut p = prog.lock().unwrap_or_else(|p| p.into_inner());
            p.copying.remove(&id);
            for n in [source, target] {
                if let Some(b) = p.busy.get_mut(&n) {
                    *b = b.saturating_sub(1);
                }
            }
        });
    }
    master.copying.store(
        progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .copying
            .len() as u64,
        Ordering::Relaxed,
    );
}

/// Removes redundant replicas: those on draining servers once enough others exist, then extras
/// beyond the target — keeping the best spread: a replica whose rack another replica shares
/// goes first, then the one on the server with the least free space. Only outside safe mode.
async fn trim(master: &Master, r: &Round) {
    for v in r.views.iter().filter(|v| v.live.len() >= v.target) {
        let victim = match v.draining.first() {
            Some(d) => Some(*d),
            None if v.live.len() > v.target => {
                let rack = |n: &NodeId| r.servers.get(n).and_then(|s| s.rack.clone());
                let shared = |n: &NodeId| {
                    rack(n).is_some() && v.live.iter().filter(|m| rack(m) == rack(n)).count() > 1
                };
                v.live
                    .iter()
                    .copied()
                    .min_by_key(|n| (!shared(n), r.servers.get(n).map_or(0, |s| s.free)))
            }
            None => None,
        };
        let Some(victim) = victim else { continue };
        let Some(mut c) = r.addrs.get(&victim).and_then(|a| chunk_client(master, a)) else {
            continue;
        };
        let req = DeleteChunksRequest {
            chunks: vec![ChunkRef {
                chunk_id: v.id.get(),
                version: v.version.get(),
            }],
        };
        if c.delete_chunks(req).await.is_ok() {
            tracing::info!(chunk = %v.id, node = %victim, "removed a redundant replica");
            master
                .soft
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(v.id, victim);
        }
    }
}

/// Forgets chunkservers silent for `forget_after` (see `retire`), a few per round.
async fn expire_silent(master: &Master, now: Instant) {
    let (t, forget) = (master.config.timeouts, master.config.forget_after);
    let victims: Vec<NodeId> = {
        let g = master.sm.read();
        let soft = master.soft.lock().unwrap_or_else(|p| p.into_inner());
        let silent: Vec<NodeId> = g
            .state
            .servers()
            .map(|(n, _)| *n)
            .filter(|n| {
                soft.servers
                    .get(n)
                    .is_none_or(|l| now.saturating_duration_since(l.last_seen) >= forget)
            })
            .collect();
        if silent.is_empty() {
            return;
        }
        let unprotected = retire::unprotected(g.state.all_chunks(), &soft, now, t);
        silent
            .into_iter()
            .filter(|n| retire::refusal(*n, &unprotected, &soft, now, t).is_none())
            .take(retire::EXPIRE_PER_ROUND_MAX)
            .collect()
    };
    for node in victims {
        match master.write(Command::RemoveChunkserver { node }).await {
            Ok(_) => tracing::warn!(%node, silent_for = ?forget,
                "forgot a chunkserver registration silent too long (its data is untouched; it registers again if it returns)"),
            Err(e) => tracing::debug!(%node, error = %e, "forgetting a silent chunkserver"),
        }
    }
}

pub async fn run(master: Arc<Master>) {
    let progress = Arc::new(std::sync::Mutex::new(Progress::default()));
    let mut leader_since: Option<Instant> = None;
    let mut expiry_checked: Option<Instant> = None;
    let expiry_every = master.config.forget_after.min(Duration::from_secs(60));
    let mut watch = Watch::default();
    let mut tick = tokio::time::interval(master.config.heal_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !master.is_leader() {
            leader_since = None;
            expiry_checked = None;
            watch = Watch::default();
            master.safe.store(false, Ordering::Relaxed);
            // What changed while following is covered by a new leader's first look.
            drop(
                master
                    .soft
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take_touched(),
            );
            continue;
        }
        let since = *leader_since.get_or_insert_with(Instant::now);
        let now = Instant::now();
        let round = observe(&master, since, now, &mut watch).await;
        let safe = now.duration_since(since) >= master.config.safe_mode
            && round
                .servers
                .values()
                .all(|s| s.heard || s.liveness == Liveness::Dead);
        master.safe.store(safe, Ordering::Relaxed);
        start_copies(&master, &round, &watch, &progress);
        if !safe {
            continue;
        }
        trim(&master, &round).await;
        if now.duration_since(since) >= master.config.forget_after
            && expiry_checked.is_none_or(|c| now.duration_since(c) >= expiry_every)
        {
            expiry_checked = Some(now);
            expire_silent(&master, now).await;
        }
        if !round.garbage_gone.is_empty() {
            let _ = master
                .write(Command::ForgetGarbage {
                    chunks: round.garbage_gone,
                })
                .await;
        }
    }
}
