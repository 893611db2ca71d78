//! MasterService over gRPC: converts wire messages to commands and queries, and replies back.
use super::perms::who;
use super::soft::Liveness;
use super::{status_of, Master};
use crate::placement::{self, Candidate, ReadReplica};
use crate::sm::{perms, Command, Reply, Stat, Who};
use shale_proto::metapb::master_service_server::MasterService;
use shale_proto::metapb::*;
use shale_proto::{ChunkId, ChunkVersion, InodeId, NodeId};
use shale_security::token::{READ, WRITE};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// How long `Complete` waits for the replicas' reports of the file's last chunks.
pub(super) const COMPLETE_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The bytes a file's chunks hold durably (from the replicas' reports), or why that is not
/// known or not a valid file: a chunk sealed nowhere, or a chunk other than the last one
/// shorter than a whole chunk. Pure.
pub fn durable_length(
    chunks: &[(ChunkId, ChunkVersion)],
    chunk_size: u64,
    sealed_length: impl Fn(ChunkId, ChunkVersion) -> Option<u64>,
) -> Result<u64, String> {
    let mut total = 0u64;
    for (i, (c, v)) in chunks.iter().enumerate() {
        let len = sealed_length(*c, *v)
            .ok_or_else(|| format!("chunk {i} ({c}@{v}) is sealed on no replica"))?;
        if len == 0 || len > chunk_size || (i + 1 < chunks.len() && len != chunk_size) {
            return Err(format!(
                "chunk {i} ({c}@{v}) holds {len} bytes (chunks hold 1..={chunk_size}, all but the last full)"
            ));
        }
        total += len;
    }
    Ok(total)
}

/// Reported chunks classified per hold of the state lock.
use super::reports::REPORT_BATCH;
use tonic::{Request, Response, Status};

pub struct Svc(pub Arc<Master>);

type R<T> = Result<Response<T>, Status>;

pub(super) fn file_stat(name: &str, s: &Stat) -> FileStat {
    FileStat {
        name: name.to_string(),
        inode: s.inode.get(),
        is_dir: s.is_dir,
        length: s.length,
        mtime_ms: s.mtime_ms,
        replication: u32::from(s.replication),
        chunk_size: s.chunk_size_bytes,
        chunks: s.chunks,
        entries: s.entries,
        root: Default::default(),
        owner: s.owner.clone(),
        group: s.group.clone(),
        mode: u32::from(s.mode),
    }
}

pub(super) fn unexpected(r: Reply) -> Status {
    Status::internal(format!("unexpected reply {r:?}"))
}

fn u8_arg(v: u32, what: &str) -> Result<u8, Status> {
    u8::try_from(v).map_err(|_| Status::invalid_argument(format!("{what} {v} is out of range")))
}

impl Svc {
    /// Proposes `cmd` as `who`, named by the request id when the client sent one (applied at
    /// most once).
    pub(super) async fn write(
        &self,
        who: &Who,
        rid: Option<RequestId>,
        cmd: Command,
    ) -> Result<Reply, Status> {
        self.0.write(Self::wrap(who, rid, cmd)?).await
    }

    /// `cmd` as `who` (root's commands are not wrapped), named by the request id when the
    /// client sent one (applied at most once).
    pub(super) fn wrap(who: &Who, rid: Option<RequestId>, cmd: Command) -> Result<Command, Status> {
        let cmd = match rid {
            None => cmd,
            Some(RequestId { client_id, seq }) => {
                if client_id == 0 || seq == 0 {
                    return Err(Status::invalid_argument(
                        "request_id needs a client_id and a seq, both ≥ 1",
                    ));
                }
                Command::Session {
                    client: client_id,
                    seq,
                    cmd: Box::new(cmd),
                }
            }
        };
        // The superuser root is what an unwrapped command runs as.
        Ok(if *who == Who::root() {
            cmd
        } else {
            Command::As {
                who: who.clone(),
                cmd: Box::new(cmd),
            }
        })
    }

    pub(super) fn mkdir_cmd(r: &MkdirRequest) -> Result<Command, Status> {
        Ok(Command::MkdirWithMode {
            path: r.path.clone(),
            parents: r.parents,
            mode: r
                .mode
                .map_or(Ok(perms::DIR_MODE_DEFAULT), super::perms::mode_arg)?,
        })
    }

    pub(super) fn rename_cmd(r: &RenameRequest) -> Command {
        let (src, dst) = (r.src.clone(), r.dst.clone());
        if r.no_replace {
            Command::RenameNoReplace { src, dst }
        } else {
            Command::Rename { src, dst }
        }
    }

    pub(super) fn delete_cmd(r: &DeleteRequest) -> Command {
        Command::Delete {
            path: r.path.clone(),
            recursive: r.recursive,
        }
    }

    pub(super) fn trash_cmd(r: &DeleteRequest) -> Command {
        Command::Trash {
            path: r.path.clone(),
            recursive: r.recursive,
        }
    }

    pub(super) fn create_cmd(r: &CreateRequest) -> Result<Command, Status> {
        let replication = match r.replication {
            0 => None,
            v => Some(u8_arg(v, "replication")?),
        };
        Ok(Command::CreateWithMode {
            path: r.path.clone(),
            overwrite: r.overwrite,
            replication,
            chunk_size_bytes: (r.chunk_size != 0).then_some(r.chunk_size),
            holder: r.client_id,
            lease_ms: r.lease_ms,
            mode: r
                .mode
                .map_or(Ok(perms::FILE_MODE_DEFAULT), super::perms::mode_arg)?,
        })
    }

    pub(super) fn complete_cmd(r: &CompleteRequest) -> Command {
        let (file, holder, length) = (InodeId(r.file), r.client_id, r.length);
        if r.chunk_digests.is_empty() {
            Command::Complete {
                file,
                holder,
                length,
            }
        } else {
            Command::CompleteWithDigests {
                file,
                holder,
                length,
                digests: r.chunk_digests.iter().map(|d| d.to_vec()).collect(),
            }
        }
    }

    pub(super) fn abandon_cmd(r: &AbandonRequest) -> Command {
        Command::Abandon {
            file: InodeId(r.file),
            holder: r.client_id,
        }
    }

    pub(super) fn stat_path(&self, path: &str, who: &Who) -> Result<FileStat, Status> {
        let g = self.0.sm.read();
        let s = g.state.stat_as(path, who).map_err(|e| status_of(&e))?;
        let name = path.rsplit('/').next().unwrap_or("");
        let mut st = file_stat(name, &s);
        if let Some(root) = g.state.file_root_of(s.inode) {
            st.root = root.to_vec().into();
        }
        Ok(st)
    }

    pub(super) fn replica(&self, node: NodeId) -> Replica {
        let g = self.0.sm.read();
        let (address, host) = g
            .state
            .server(node)
            .map(|s| (s.address.clone(), s.host.clone()))
            .unwrap_or_default();
        Replica {
            node_id: node.get(),
            address,
            alive: true,
            host,
            load: 0,
            data_address: String::new(),
        }
    }

    fn status(&self) -> StatusReply {
        let m = &self.0;
        let metrics = m.raft.metrics().borrow().clone();
        let mut role = format!("{:?}", metrics.state).to_lowercase();
        if m.unconfirmed().is_some() {
            role = "leader-unconfirmed".into();
        }
        let membership = metrics.membership_config.membership().clone();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let matched = metrics.replication.clone().unwrap_or_default();
        let masters = membership
            .nodes()
            .map(|(id, n)| MasterInfo {
                id: *id,
                address: n.addr.clone(),
                voter: voters.contains(id),
                heard_ms_ago: (*id != m.id)
                    .then(|| m.peers.since(*id))
                    .flatten()
                    .map(|d| d.as_millis() as u64),
                matched_index: matched.get(id).map(|l| l.map_or(0, |l| l.index)),
            })
            .collect();
        let (leader, leader_address) = m.leader().unwrap_or((0, String::new()));
        let now = Instant::now();
        let g = m.sm.read();
        let soft = m.soft.lock().unwrap_or_else(|p| p.into_inner());
        let mut unreported = 0;
        let chunkservers = g
            .state
            .servers()
            .map(|(id, s)| {
                let live = soft.servers.get(id);
                let unknown = m.unreported(&soft, *id, now);
                unreported += u64::from(unknown);
                let state = match soft.liveness(*id, now, m.config.timeouts) {
                    // Not heard from since this master started, which is recent.
                    Liveness::Dead if unknown => "unknown",
                    l => l.as_str(),
                };
                ChunkserverInfo {
                    node_id: id.get(),
                    address: s.address.clone(),
                    host: s.host.clone(),
                    rack: s.rack.clone().unwrap_or_default(),
                    reported: soft.fully_reported(*id),
                    state: state.into(),
                    free_bytes: live.map_or(0, |l| l.free_bytes),
                    capacity_bytes: s.capacity_bytes,
                    chunks: soft.held_count(*id) as u64,
                    draining: s.draining,
                    load: live.map_or(0, |l| l.inflight.saturating_add(l.reading)),
                    heard_ms_ago: live
                        .map(|l| now.saturating_duration_since(l.last_seen).as_millis() as u64),
                    bytes_written: live.map_or(0, |l| l.bytes_written),
                    bytes_read: live.map_or(0, |l| l.bytes_read),
                }
            })
            .collect();
        let bad_replicas = soft.bad_replicas().len() as u64;
        drop(soft);
        let leads = metrics.current_leader == Some(m.id);
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        let at_risk = if leads {
            m.at_risk
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter_map(|(c, live, target)| {
                    let (inode, index, path) = g.state.chunk_file_path(*c)?;
                    Some(AtRisk {
                        path: path.unwrap_or_default(),
                        inode: inode.get(),
                        chunk_index: index,
                        live_replicas: *live,
                        target: *target,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let counts = g.state.counts();
        let (snapshot_build_ms, snapshot_frozen_ms) = g.last_build_ms();
        StatusReply {
            id: m.id,
            role,
            leader,
            leader_address,
            term: metrics.current_term,
            applied_index: metrics.last_applied.map_or(0, |l| l.index),
            masters,
            chunkservers,
            files: counts.files,
            dirs: counts.dirs,
            chunks: counts.chunks,
            under_replicated: m
                .under_replicated
                .load(std::sync::atomic::Ordering::Relaxed),
            copying: m.copying.load(std::sync::atomic::Ordering::Relaxed),
            safe_mode: !m.safe.load(std::sync::atomic::Ordering::Relaxed),
            unreported,
            snapshot_index: g.snapshot_index(),
            snapshot_build_ms,
            snapshot_frozen_ms,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            committed_index: m.log.committed_index().unwrap_or(0),
            missing: if leads { m.missing.load(relaxed) } else { 0 },
            bad_replicas,
            at_risk,
            client_requests: m.client_requests.load(relaxed),
        }
    }
}

/// Most extents of an append file one `GetChunkLocations` returns.
const EXTENTS_PER_REPLY: usize = 4096;

#[tonic::async_trait]
impl MasterService for Svc {
    async fn mkdir(&self, req: Request<MkdirRequest>) -> R<FileStat> {
        let who = who(&req)?;
        let r = req.into_inner();
        let cmd = Self::mkdir_cmd(&r)?;
        let reply = self.write(&who, r.request_id, cmd).await?;
        let Reply::Inode(id) = reply else {
            return Err(unexpected(reply));
        };
        // The answer is what apply did: the directory may be gone again by now (a concurrent
        // `rm -r`), which must not turn a successful mkdir into NOT_FOUND.
        match self.stat_path(&r.path, &who) {
            Ok(s) if s.inode == id.get() => Ok(Response::new(s)),
            _ => Ok(Response::new(FileStat {
                name: r.path.rsplit('/').next().unwrap_or("").to_string(),
                inode: id.get(),
                is_dir: true,
                ..FileStat::default()
            })),
        }
    }

    async fn stat(&self, req: Request<PathRequest>) -> R<FileStat> {
        let who = who(&req)?;
        let r = req.into_inner();
        self.0.read_ready(r.follower_read).await?;
        Ok(Response::new(self.stat_path(&r.path, &who)?))
    }

    async fn list(&self, req: Request<ListRequest>) -> R<ListReply> {
        let who = who(&req)?;
        let r = req.into_inner();
        self.0.read_ready(r.follower_read).await?;
        let g = self.0.sm.read();
        let after = (!r.start_after.is_empty()).then_some(r.start_after.as_str());
        let limit = if r.limit == 0 { 1000 } else { r.limit as usize };
        let (entries, more) = g
            .state
            .list_as(&r.path, after, limit, &who)
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(ListReply {
            entries: entries.iter().map(|(n, s)| file_stat(n, s)).collect(),
            more,
        }))
    }

    async fn rename(&self, req: Request<RenameRequest>) -> R<Empty> {
        let who = who(&req)?;
        let r = req.into_inner();
        self.write(&who, r.request_id, Self::rename_cmd(&r)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn delete(&self, req: Request<DeleteRequest>) -> R<Empty> {
        let who = who(&req)?;
        let r = req.into_inner();
        self.write(&who, r.request_id, Self::delete_cmd(&r)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn set_replication(&self, req: Request<SetReplicationRequest>) -> R<Empty> {
        shale_security::caller(&req)?.require_admin("change a file's replication")?;
        let who = who(&req)?;
        let r = req.into_inner();
        let replication = u8_arg(r.replication, "replication")?;
        self.write(
            &who,
            r.request_id,
            Command::SetReplication {
                path: r.path,
                replication,
            },
        )
        .await?;
        Ok(Response::new(Empty {}))
    }

    async fn create(&self, req: Request<CreateRequest>) -> R<CreateReply> {
        let who = who(&req)?;
        let r = req.into_inner();
        let cmd = Self::create_cmd(&r)?;
        let reply = self.write(&who, r.request_id, cmd).await?;
        let Reply::Created {
            file,
            lease_expires_ms,
            chunk_size_bytes,
            replication,
        } = reply
        else {
            return Err(unexpected(reply));
        };
        Ok(Response::new(CreateReply {
            file: file.get(),
            lease_expires_ms,
            chunk_size: chunk_size_bytes,
            replication: u32::from(replication),
        }))
    }

    async fn renew_lease(&self, req: Request<LeaseRequest>) -> R<LeaseReply> {
        let who = who(&req)?;
        let r = req.into_inner();
        match self
            .write(
                &who,
                r.request_id,
                Command::RenewLease {
                    file: InodeId(r.file),
                    holder: r.client_id,
                    lease_ms: r.lease_ms,
                },
            )
            .await?
        {
            Reply::Lease { expires_ms } => Ok(Response::new(LeaseReply { expires_ms })),
            other => Err(unexpected(other)),
        }
    }

    async fn allocate_chunk(&self, req: Request<AllocateChunkRequest>) -> R<AllocateChunkReply> {
        let who = who(&req)?;
        let r = req.into_inner();
        // The file (created through the previous leader, perhaps) must be in the applied state
        // this handler reads (as `check_durable_length`).
        self.0.applied_acknowledged().await?;
        let file = InodeId(r.file);
        let (chunk_size, replication) =
            self.0.sm.read().state.pending_file(file).ok_or_else(|| {
                Status::not_found(format!("{file}: no such file under construction"))
            })?;
        let candidates = self.candidates();
        let exclude: Vec<NodeId> = r.exclude.iter().map(|n| NodeId(*n)).collect();
        let client_host = (!r.client_host.is_empty()).then_some(r.client_host.as_str());
        let pipeline = placement::place(
            &candidates,
            usize::from(replication),
            &exclude,
            chunk_size,
            client_host,
        )
        .map_err(|e| self.unplaced(e, candidates.is_empty()))?;
        match self
            .write(
                &who,
                r.request_id,
                Command::AllocateChunk {
                    file,
                    holder: r.client_id,
                    index: r.index,
                    pipeline,
                },
            )
            .await?
        {
            Reply::Chunk {
                id,
                version,
                pipeline,
            } => {
                let (pipeline, token) = self.grant(id, version, pipeline)?;
                Ok(Response::new(AllocateChunkReply {
                    chunk_id: id.get(),
                    version: version.get(),
                    pipeline,
                    token,
                }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn abandon_chunk(&self, req: Request<AbandonChunkRequest>) -> R<Empty> {
        let who = who(&req)?;
        let r = req.into_inner();
        self.write(
            &who,
            r.request_id,
            Command::AbandonChunk {
                file: InodeId(r.file),
                holder: r.client_id,
                index: r.index,
            },
        )
        .await?;
        Ok(Response::new(Empty {}))
    }

    async fn complete(&self, req: Request<CompleteRequest>) -> R<FileStat> {
        let who = who(&req)?;
        let r = req.into_inner();
        let file = InodeId(r.file);
        self.check_durable_length(file, r.length).await?;
        match self
            .write(&who, r.request_id, Self::complete_cmd(&r))
            .await?
        {
            Reply::Completed { file, length } => Ok(Response::new(FileStat {
                inode: file.get(),
                length,
                ..FileStat::default()
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn abandon(&self, req: Request<AbandonRequest>) -> R<Empty> {
        let who = who(&req)?;
        let r = req.into_inner();
        self.write(&who, r.request_id, Self::abandon_cmd(&r))
            .await?;
        Ok(Response::new(Empty {}))
    }

    async fn get_chunk_locations(&self, req: Request<LocationsRequest>) -> R<LocationsReply> {
        let who = who(&req)?;
        let r = req.into_inner();
        self.0.read_ready(r.follower_read).await?;
        let fc = self
            .0
            .sm
            .read()
            .state
            .file_chunks_as(&r.path, &who)
            .map_err(|e| status_of(&e))?;
        let cs = fc.chunk_size_bytes;
        let end = if r.length == 0 {
            fc.length
        } else {
            r.offset.saturating_add(r.length).min(fc.length)
        };
        // An append file's extents in the range (a bounded page of them), and the chunks they
        // name; a regular file's chunks in the range.
        let extents = fc.append.then(|| {
            let g = self.0.sm.read();
            g.state.append_log(fc.file).map_or_else(Vec::new, |a| {
                a.extents_in(fc.length, r.offset, end.saturating_sub(r.offset))
                    .take(EXTENTS_PER_REPLY)
                    .collect::<Vec<_>>()
            })
        });
        let wanted: Vec<usize> = match &extents {
            Some(ex) => {
                let mut w: Vec<usize> = ex.iter().map(|e| e.index as usize).collect();
                w.sort_unstable();
                w.dedup();
                w
            }
            None => ((r.offset / cs) as usize..end.div_ceil(cs) as usize).collect(),
        };
        let now = Instant::now();
        let t = self.0.config.timeouts;
        // Each chunk's replicas, nearest to the reader first, then least loaded.
        let mut data_addrs: BTreeMap<NodeId, String> = BTreeMap::new();
        let located: Vec<(usize, ChunkId, ChunkVersion, Vec<ReadReplica>)> = {
            let soft = self.0.soft.lock().unwrap_or_else(|p| p.into_inner());
            let located = wanted
                .iter()
                .filter_map(|i| fc.chunks.get(*i).map(|c| (*i, c)))
                .map(|(i, (c, v))| {
                    let nodes = soft
                        .locations(*c, *v, now, t)
                        .into_iter()
                        .map(|n| {
                            let live = soft.servers.get(&n);
                            let load = live.map_or(0, |l| l.inflight + l.reading);
                            if let Some(l) = live.filter(|l| !l.data_address.is_empty()) {
                                data_addrs.insert(n, l.data_address.clone());
                            }
                            ReadReplica {
                                node: n,
                                alive: soft.liveness(n, now, t) == Liveness::Alive,
                                host: String::new(),
                                rack: None,
                                load,
                            }
                        })
                        .collect();
                    (i, *c, *v, nodes)
                })
                .collect();
            located
        };
        let client_host = (!r.client_host.is_empty()).then_some(r.client_host.as_str());
        let (located, addrs, digests) = {
            let g = self.0.sm.read();
            let servers: BTreeMap<NodeId, &crate::sm::ServerInfo> =
                g.state.servers().map(|(n, s)| (*n, s)).collect();
            let client_rack = client_host.and_then(|h| {
                servers
                    .values()
                    .find(|s| s.host == h)
                    .and_then(|s| s.rack.clone())
            });
            let mut addrs = BTreeMap::new();
            let mut digests = Vec::with_capacity(located.len());
            let located: Vec<_> = located
                .into_iter()
                .map(|(i, c, v, mut nodes)| {
                    for n in &mut nodes {
                        if let Some(s) = servers.get(&n.node) {
                            n.host = s.host.clone();
                            n.rack = s.rack.clone();
                            addrs.insert(n.node, s.address.clone());
                        }
                    }
                    placement::order_for_reader(&mut nodes, client_host, client_rack.as_deref());
                    digests.push(
                        g.state
                            .chunk_digest(c)
                            .map(|d| d.to_vec().into())
                            .unwrap_or_default(),
                    );
                    (i, c, v, nodes)
                })
                .collect();
            (located, addrs, digests)
        };
        let chunks = located
            .into_iter()
            .zip(digests)
            .map(
                |((i, c, v, nodes), digest)| -> Result<ChunkLocation, Status> {
                    let replicas: Vec<Replica> = nodes
                        .into_iter()
                        .map(|n| Replica {
                            node_id: n.node.get(),
                            address: addrs.get(&n.node).cloned().unwrap_or_default(),
                            alive: n.alive,
                            host: n.host,
                            load: n.load,
                            data_address: data_addrs.get(&n.node).cloned().unwrap_or_default(),
                        })
                        .collect();
                    let targets = replicas
                        .iter()
                        .map(|r| (r.node_id, r.address.clone()))
                        .collect();
                    Ok(ChunkLocation {
                        digest,
                        chunk_id: c.get(),
                        version: v.get(),
                        index: i as u32,
                        length: fc.length.saturating_sub(i as u64 * cs).min(cs),
                        token: self.0.token_or_wait(c.get(), v.get(), READ, targets)?,
                        replicas,
                        file_offset: i as u64 * cs,
                        chunk_offset: 0,
                    })
                },
            )
            .collect::<Result<Vec<_>, Status>>()?;
        let append = extents.is_some();
        let chunks = match extents {
            None => chunks,
            Some(ex) => {
                let by_index: BTreeMap<u32, &ChunkLocation> =
                    chunks.iter().map(|c| (c.index, c)).collect();
                ex.iter()
                    .filter_map(|e| {
                        by_index.get(&e.index).map(|c| ChunkLocation {
                            // Records, not the whole chunk a digest would cover.
                            digest: Default::default(),
                            length: e.len,
                            file_offset: e.at,
                            chunk_offset: e.chunk_off,
                            ..(*c).clone()
                        })
                    })
                    .collect()
            }
        };
        Ok(Response::new(LocationsReply {
            file: fc.file.get(),
            length: fc.length,
            chunk_size: cs,
            chunks,
            append,
        }))
    }

    async fn append_tail(&self, req: Request<AppendTailRequest>) -> R<AppendTailReply> {
        self.append_tail_as(req).await
    }

    async fn commit_record(&self, req: Request<CommitRecordRequest>) -> R<CommitRecordReply> {
        self.commit_record_as(req).await
    }

    async fn seal_append(&self, req: Request<SealAppendRequest>) -> R<Empty> {
        self.seal_append_as(req).await
    }

    async fn report_bad_replica(&self, req: Request<BadReplicaRequest>) -> R<BadReplicaReply> {
        let r = req.into_inner();
        if !self.0.is_leader() {
            return Err(self.0.not_leader());
        }
        let (confirmed, detail) = super::integrity::check_report(
            &self.0,
            ChunkId(r.chunk_id),
            ChunkVersion(r.version),
            NodeId(r.node_id),
        )
        .await?;
        Ok(Response::new(BadReplicaReply { confirmed, detail }))
    }

    async fn register_chunkserver(&self, req: Request<RegisterRequest>) -> R<RegisterReply> {
        let caller = shale_security::caller(&req)?;
        caller.require(
            &[shale_security::Role::Chunkserver],
            "register a chunkserver",
        )?;
        // With TLS the registration binds the node id to the chunkserver's certificate.
        let principal = caller.principal().map(|p| p.name.clone());
        let r = req.into_inner();
        let rack = (!r.rack.is_empty()).then_some(r.rack);
        let cmd = match principal {
            Some(principal) => Command::RegisterChunkserverAs {
                uuid: r.uuid,
                address: r.address,
                host: r.host,
                rack,
                capacity_bytes: r.capacity_bytes,
                principal,
            },
            None => Command::RegisterChunkserver {
                uuid: r.uuid,
                address: r.address,
                host: r.host,
                rack,
                capacity_bytes: r.capacity_bytes,
            },
        };
        match self.write(&Who::root(), r.request_id, cmd).await? {
            Reply::Server(n) => Ok(Response::new(RegisterReply { node_id: n.get() })),
            other => Err(unexpected(other)),
        }
    }

    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> R<HeartbeatReply> {
        shale_security::caller(&req)?.require(
            &[shale_security::Role::Chunkserver],
            "send chunkserver heartbeats",
        )?;
        let named = req
            .metadata()
            .get(super::NODE_ID_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let r = req.into_inner();
        let node = NodeId(r.node_id);
        if named != Some(r.node_id) {
            return Err(Status::invalid_argument(format!(
                "the heartbeat body names chunkserver {node}, its metadata {named:?}"
            )));
        }
        let now = Instant::now();
        // Refuse unknown senders before any per-chunk work (nothing of theirs is kept).
        let Some(capacity) = self
            .0
            .sm
            .read()
            .state
            .server(node)
            .map(|s| s.capacity_bytes)
        else {
            return Err(Status::not_found(format!(
                "chunkserver {node} is not registered; register first"
            )));
        };
        let n_reported = r.chunks.len() + r.removed.len() + r.corrupt.len();
        if n_reported > super::REPORT_CHUNKS_MAX {
            return Err(Status::invalid_argument(format!(
                "a heartbeat may report at most {} chunks, not {n_reported}",
                super::REPORT_CHUNKS_MAX
            )));
        }
        let _slot = self
            .0
            .heartbeat_slots
            .acquire()
            .await
            .map_err(|_| Status::unavailable("master shutting down"))?;
        let orders = self.0.is_leader() && self.0.safe.load(std::sync::atomic::Ordering::Relaxed);
        let m = self.0.clone();
        let take = move || super::reports::take(&m, node, r, capacity, orders, now);
        let reply = if n_reported > REPORT_BATCH {
            // A large report is taken in off the async runtime (see `background`).
            self.0
                .background
                .run(take)
                .await
                .ok_or_else(|| Status::internal("the chunk report could not be taken in"))?
        } else {
            take()
        };
        self.0.reports.notify_waiters();
        Ok(Response::new(reply))
    }

    async fn status(&self, _req: Request<Empty>) -> R<StatusReply> {
        Ok(Response::new(self.status()))
    }

    async fn leader(&self, _req: Request<Empty>) -> R<LeaderReply> {
        let m = &self.0;
        let (mut role, term) = {
            let metrics = m.raft.metrics();
            let metrics = metrics.borrow();
            (
                format!("{:?}", metrics.state).to_lowercase(),
                metrics.current_term,
            )
        };
        if m.unconfirmed().is_some() {
            role = "leader-unconfirmed".into();
        }
        let (leader, leader_address) = m.leader().unwrap_or((0, String::new()));
        Ok(Response::new(LeaderReply {
            id: m.id,
            role,
            term,
            leader,
            leader_address,
            members: m.member_addresses(),
        }))
    }

    async fn add_master(&self, req: Request<MasterRequest>) -> R<StatusReply> {
        shale_security::caller(&req)?.require_admin("add a master")?;
        let r = req.into_inner();
        if r.id == 0 || !r.address.contains(':') {
            return Err(Status::invalid_argument(
                "add master: need an id ≥ 1 and host:port",
            ));
        }
        self.0.add_master(r.id, r.address).await?;
        Ok(Response::new(self.status()))
    }

    async fn remove_master(&self, req: Request<MasterRequest>) -> R<StatusReply> {
        shale_security::caller(&req)?.require_admin("remove a master")?;
        self.0.remove_master(req.into_inner().id).await?;
        Ok(Response::new(self.status()))
    }

    async fn drain(&self, req: Request<DrainRequest>) -> R<StatusReply> {
        shale_security::caller(&req)?.require_admin("drain a chunkserver")?;
        let r = req.into_inner();
        self.write(
            &Who::root(),
            r.request_id,
            Command::SetDraining {
                node: NodeId(r.node_id),
                draining: r.draining,
            },
        )
        .await?;
        Ok(Response::new(self.status()))
    }

    async fn set_attributes(&self, req: Request<SetAttributesRequest>) -> R<FileStat> {
        self.set_attributes_as(req).await
    }

    async fn set_group_member(&self, req: Request<GroupMemberRequest>) -> R<Empty> {
        self.set_group_member_as(req).await
    }

    async fn list_groups(&self, req: Request<Empty>) -> R<GroupsReply> {
        self.list_groups_as(req).await
    }

    async fn who_am_i(&self, req: Request<Empty>) -> R<WhoAmIReply> {
        self.who_am_i_as(req)
    }

    async fn issue_user_token(&self, req: Request<IssueTokenRequest>) -> R<IssueTokenReply> {
        self.issue_user_token_as(req).await
    }

    async fn revoke_user_tokens(&self, req: Request<Empty>) -> R<Empty> {
        self.revoke_user_tokens_as(req).await
    }

    async fn set_quota(&self, req: Request<SetQuotaRequest>) -> R<QuotaReply> {
        self.set_quota_as(req).await
    }

    async fn get_quota(&self, req: Request<PathRequest>) -> R<QuotaReply> {
        self.get_quota_as(req).await
    }

    async fn list_quotas(&self, req: Request<Empty>) -> R<QuotaList> {
        self.list_quotas_as(req).await
    }

    async fn trash(&self, req: Request<DeleteRequest>) -> R<TrashReply> {
        self.trash_as(req).await
    }

    async fn list_trash(&self, req: Request<ListTrashRequest>) -> R<TrashList> {
        self.list_trash_as(req).await
    }

    async fn create_snapshot(&self, req: Request<SnapshotRequest>) -> R<SnapshotInfo> {
        self.create_snapshot_as(req).await
    }

    async fn delete_snapshot(&self, req: Request<SnapshotRequest>) -> R<Empty> {
        self.delete_snapshot_as(req).await
    }

    async fn batch(&self, req: Request<BatchRequest>) -> R<BatchReply> {
        self.batch_as(req).await
    }

    async fn list_snapshots(&self, req: Request<PathRequest>) -> R<SnapshotList> {
        self.list_snapshots_as(req).await
    }

    async fn remove_chunkserver(&self, req: Request<RemoveChunkserverRequest>) -> R<StatusReply> {
        shale_security::caller(&req)?.require_admin("remove a chunkserver")?;
        let r = req.into_inner();
        let node = NodeId(r.node_id);
        if !self.0.is_leader() {
            return Err(self.0.not_leader());
        }
        self.0.read_ready(false).await?;
        if !self.0.safe.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Status::unavailable(
                "the leader is in safe mode (still learning where replicas are); retry shortly",
            ));
        }
        let why = {
            let g = self.0.sm.read();
            if g.state.server(node).is_none() {
                return Err(Status::not_found(format!(
                    "chunkserver {node} is not registered"
                )));
            }
            let soft = self.0.soft.lock().unwrap_or_else(|p| p.into_inner());
            let (now, t) = (Instant::now(), self.0.config.timeouts);
            let unprotected = super::retire::unprotected(g.state.all_chunks(), &soft, now, t);
            super::retire::refusal(node, &unprotected, &soft, now, t)
        };
        if let Some(why) = why {
            return Err(Status::failed_precondition(why));
        }
        self.write(
            &Who::root(),
            r.request_id,
            Command::RemoveChunkserver { node },
        )
        .await?;
        tracing::info!(%node, "chunkserver registration removed by an operator");
        Ok(Response::new(self.status()))
    }

    async fn bootstrap(&self, req: Request<BootstrapRequest>) -> R<StatusReply> {
        shale_security::caller(&req)?.require_admin("bootstrap the group")?;
        let r = req.into_inner();
        let mut members = BTreeMap::new();
        for m in r.masters {
            if m.id == 0 || !m.address.contains(':') {
                return Err(Status::invalid_argument(format!(
                    "bootstrap: master {} at {:?} needs an id ≥ 1 and host:port",
                    m.id, m.address
                )));
            }
            members.insert(m.id, m.address);
        }
        if !members.contains_key(&self.0.id) {
            return Err(Status::invalid_argument(format!(
                "bootstrap: the members must include this master ({})",
                self.0.id
            )));
        }
        self.0.bootstrap(&members).await?;
        Ok(Response::new(self.status()))
    }
}

impl Svc {
    /// Refuses a `Complete` whose length is not what the replicas hold: every chunk of the file
    /// must be sealed on some replica at its current version (as reported by the chunkservers,
    /// waited for up to [`COMPLETE_REPORT_WAIT`]), all but the last exactly one chunk long, and
    /// the lengths must add up to `length`. A file that is no longer under construction is let
    /// through: the state machine answers (a retry of a Complete that took effect gets its
    /// first reply; anything else is refused there).
    async fn check_durable_length(&self, file: InodeId, length: u64) -> Result<(), Status> {
        // A new leader may not have applied every committed entry yet: without this barrier it
        // judged a file by a stale chunk list (seen under the torture harness: "Complete says
        // 2156603 bytes but its chunks hold 1048576" right after a failover).
        self.0.applied_acknowledged().await?;
        let deadline = tokio::time::Instant::now() + COMPLETE_REPORT_WAIT;
        self.durable_length_by(file, length, deadline).await
    }

    /// [`Self::check_durable_length`] after the leader's read barrier: waits until `deadline`
    /// at most for the replicas' reports of the file's chunks.
    pub(super) async fn durable_length_by(
        &self,
        file: InodeId,
        length: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), Status> {
        loop {
            let notified = self.0.reports.notified();
            let Some((chunk_size, chunks)) = self.0.sm.read().state.pending_chunks(file) else {
                return Ok(());
            };
            let verdict = {
                let soft = self.0.soft.lock().unwrap_or_else(|p| p.into_inner());
                durable_length(&chunks, chunk_size, |c, v| soft.sealed_length(c, v))
            };
            match verdict {
                Ok(durable) if durable == length => return Ok(()),
                Ok(durable) => {
                    return Err(Status::invalid_argument(format!(
                        "{file}: Complete says {length} bytes but its chunks hold {durable}"
                    )))
                }
                Err(why) if tokio::time::Instant::now() >= deadline => {
                    return Err(Status::failed_precondition(format!(
                        "{file}: cannot complete: {why}"
                    )))
                }
                Err(_) => {
                    let _ = tokio::time::timeout_at(deadline, notified).await;
                }
            }
        }
    }

    /// Placement candidates: registered chunkservers that are alive, with their labels, free
    /// space and load.
    /// Registered chunkservers (not draining) this master has no heartbeat from since it started.
    /// A chunk just placed on `pipeline`: remembered as where its replicas will be, and the
    /// pipeline's replicas with a write token for all of them.
    pub(super) fn grant(
        &self,
        id: ChunkId,
        version: ChunkVersion,
        pipeline: Vec<NodeId>,
    ) -> Result<(Vec<Replica>, Option<shale_proto::pb::ChunkToken>), Status> {
        // Data ports as the servers last reported them: the pipeline's bytes go there.
        let data: Vec<String> = {
            let mut soft = self.0.soft.lock().unwrap_or_else(|p| p.into_inner());
            soft.placed(id, version, &pipeline);
            let data = |n: &NodeId| soft.servers.get(n).map(|l| l.data_address.clone());
            pipeline
                .iter()
                .map(|n| data(n).unwrap_or_default())
                .collect()
        };
        let pipeline: Vec<Replica> = pipeline
            .into_iter()
            .zip(data)
            .map(|(n, data_address)| Replica {
                data_address,
                ..self.replica(n)
            })
            .collect();
        let targets = pipeline
            .iter()
            .map(|r| (r.node_id, r.address.clone()))
            .collect();
        let token = self
            .0
            .token_or_wait(id.get(), version.get(), WRITE, targets)?;
        Ok((pipeline, token))
    }

    /// Why placement found no pipeline, as a status.
    pub(super) fn unplaced(&self, e: impl std::fmt::Display, no_candidates: bool) -> Status {
        // No live chunkserver at all (as this master sees it: just started, just elected, or
        // cut off from them), or one it has not heard from yet: an availability problem,
        // transient, retried (seen under the torture harness: puts failed right after a
        // restarted or isolated master was elected). Live servers that are all full are a
        // capacity problem instead.
        if no_candidates || self.unheard_servers() > 0 {
            return Status::unavailable(format!(
                "{e}: master {} hears from no live chunkserver that can take it yet; retry",
                self.0.id
            ));
        }
        // Otherwise not a transient failure of this master: retrying elsewhere does not help,
        // and the client must see why (RESOURCE_EXHAUSTED, not UNAVAILABLE).
        Status::resource_exhausted(e.to_string())
    }

    fn unheard_servers(&self) -> usize {
        let g = self.0.sm.read();
        let soft = self.0.soft.lock().unwrap_or_else(|p| p.into_inner());
        g.state
            .servers()
            .filter(|(id, s)| !s.draining && !soft.servers.contains_key(id))
            .count()
    }

    pub(super) fn candidates(&self) -> Vec<Candidate> {
        let now = Instant::now();
        let t = self.0.config.timeouts;
        let g = self.0.sm.read();
        let soft = self.0.soft.lock().unwrap_or_else(|p| p.into_inner());
        g.state
            .servers()
            .filter(|(id, s)| !s.draining && soft.liveness(**id, now, t) == Liveness::Alive)
            .filter_map(|(id, s)| {
                soft.servers.get(id).map(|l| Candidate {
                    node: *id,
                    host: s.host.clone(),
                    rack: s.rack.clone(),
                    free_bytes: l.free_bytes,
                    load: l.inflight,
                })
            })
            .collect()
    }
}
