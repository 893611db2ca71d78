//! The master state machine: namespace, files under construction, chunk map, garbage list and
//! chunkserver registry, changed only by [`MetaState::apply`].
//!
//! `apply(command, log_time)` is a pure function of the state and its inputs: no I/O, no clock,
//! no randomness (the leader stamps the log time into each entry; leases expire by log time).
//! A refused command returns [`Reply::Err`] and changes nothing: every handler checks all it
//! needs before it mutates. In debug builds [`MetaState::validate`] runs after every apply.
//!
//! Files are write-once: `Create` starts an invisible file under construction held by a writer
//! lease; `Complete` links it into its directory atomically with its length, replacing an
//! overwritten file (whose chunks become garbage). An expired lease abandons the file: it was
//! never visible, so nothing visible changes; all its chunks — including a last chunk that may
//! be partly written on some replicas — become garbage, and an overwritten file stays as it was.
use crate::path;
use serde::{Deserialize, Serialize};
use shale_proto::{ChunkId, ChunkVersion, InodeId, NodeId};
use std::collections::{BTreeMap, HashMap};

mod queries;
mod types;
mod validate;

pub use types::*;

pub const ROOT: InodeId = InodeId(1);
/// Longest writer lease a client may ask for.
pub const LEASE_MS_MAX: u64 = 10 * 60 * 1000;
pub const REPLICATION_MAX: u8 = 16;
pub const CHUNK_SIZE_MIN_BYTES: u64 = 1 << 20;
pub const CHUNK_SIZE_MAX_BYTES: u64 = 1 << 30;

type Res<T> = Result<T, MetaError>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// The latest log time applied; time never runs backwards in the state (a new leader with
    /// a slower clock cannot un-expire a lease).
    pub(crate) log_time_ms: u64,
    pub(crate) next_inode: u64,
    pub(crate) next_chunk: u64,
    pub(crate) next_server: u64,
    pub(crate) chunk_size_log2: u8,
    pub(crate) replication: u8,
    pub(crate) inodes: HashMap<InodeId, Inode>,
    pub(crate) chunks: HashMap<ChunkId, ChunkMeta>,
    pub(crate) pending: HashMap<InodeId, Pending>,
    pub(crate) pending_names: HashMap<(InodeId, Box<str>), InodeId>,
    pub(crate) garbage: BTreeMap<ChunkId, ChunkVersion>,
    pub(crate) servers: BTreeMap<NodeId, ServerInfo>,
}

fn check_chunk_size(bytes: u64) -> Res<u8> {
    if !bytes.is_power_of_two() || !(CHUNK_SIZE_MIN_BYTES..=CHUNK_SIZE_MAX_BYTES).contains(&bytes) {
        return Err(MetaError::BadArgument(format!(
            "chunk size {bytes} must be a power of two from 1 MiB to 1 GiB"
        )));
    }
    Ok(bytes.trailing_zeros() as u8)
}

fn check_replication(r: u8) -> Res<u8> {
    if r == 0 || r > REPLICATION_MAX {
        return Err(MetaError::BadArgument(format!(
            "replication {r} must be 1..={REPLICATION_MAX}"
        )));
    }
    Ok(r)
}

impl MetaState {
    /// An empty namespace (just `/`) with cluster defaults.
    pub fn new(chunk_size_bytes: u64, replication: u8) -> Result<Self, MetaError> {
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT,
            Inode {
                parent: ROOT,
                mtime_ms: 0,
                kind: InodeKind::Dir(BTreeMap::new()),
            },
        );
        Ok(MetaState {
            log_time_ms: 0,
            next_inode: ROOT.get() + 1,
            next_chunk: 1,
            next_server: 1,
            chunk_size_log2: check_chunk_size(chunk_size_bytes)?,
            replication: check_replication(replication)?,
            inodes,
            chunks: HashMap::new(),
            pending: HashMap::new(),
            pending_names: HashMap::new(),
            garbage: BTreeMap::new(),
            servers: BTreeMap::new(),
        })
    }

    /// Applies one command at log time `now_ms`.
    pub fn apply(&mut self, cmd: &Command, now_ms: u64) -> Reply {
        let now_ms = now_ms.max(self.log_time_ms);
        self.log_time_ms = now_ms;
        let r = match cmd {
            Command::Mkdir { path, parents } => self.mkdir(path, *parents, now_ms),
            Command::Create {
                path,
                overwrite,
                replication,
                chunk_size_bytes,
                holder,
                lease_ms,
            } => self.create(
                path,
                *overwrite,
                *replication,
                *chunk_size_bytes,
                *holder,
                *lease_ms,
                now_ms,
            ),
            Command::RenewLease {
                file,
                holder,
                lease_ms,
            } => self.renew(*file, *holder, *lease_ms, now_ms),
            Command::AllocateChunk {
                file,
                holder,
                index,
                pipeline,
            } => self.allocate_chunk(*file, *holder, *index, pipeline, now_ms),
            Command::AbandonChunk {
                file,
                holder,
                index,
            } => self.abandon_chunk(*file, *holder, *index, now_ms),
            Command::Complete {
                file,
                holder,
                length,
            } => self.complete(*file, *holder, *length, now_ms),
            Command::Abandon { file, holder } => self.abandon(*file, *holder),
            Command::Rename { src, dst } => self.rename(src, dst, now_ms),
            Command::Delete { path, recursive } => self.delete(path, *recursive, now_ms),
            Command::SetReplication { path, replication } => {
                self.set_replication(path, *replication)
            }
            Command::RegisterChunkserver {
                uuid,
                address,
                host,
                rack,
                capacity_bytes,
            } => self.register(uuid, address, host, rack, *capacity_bytes, now_ms),
            Command::SetDraining { node, draining } => match self.servers.get_mut(node) {
                Some(s) => {
                    s.draining = *draining;
                    Ok(Reply::Done)
                }
                None => Err(MetaError::BadArgument(format!(
                    "unknown chunkserver {node}"
                ))),
            },
            Command::ExpireLeases => Ok(self.expire_leases(now_ms)),
            Command::ForgetGarbage { chunks } => {
                for (id, v) in chunks {
                    if self.garbage.get(id) == Some(v) {
                        self.garbage.remove(id);
                    }
                }
                Ok(Reply::Done)
            }
        };
        #[cfg(debug_assertions)]
        if let Err(why) = self.validate() {
            panic!("master state invariant broken after {cmd:?}: {why}");
        }
        r.unwrap_or_else(Reply::Err)
    }

    fn alloc_inode(&mut self) -> InodeId {
        let id = InodeId(self.next_inode);
        self.next_inode += 1;
        id
    }

    pub(crate) fn entries(&self, dir: InodeId) -> Option<&BTreeMap<Box<str>, InodeId>> {
        match &self.inodes.get(&dir)?.kind {
            InodeKind::Dir(e) => Some(e),
            InodeKind::File(_) => None,
        }
    }

    fn entries_mut(&mut self, dir: InodeId) -> Option<&mut BTreeMap<Box<str>, InodeId>> {
        match &mut self.inodes.get_mut(&dir)?.kind {
            InodeKind::Dir(e) => Some(e),
            InodeKind::File(_) => None,
        }
    }

    fn is_dir(&self, id: InodeId) -> bool {
        self.entries(id).is_some()
    }

    /// Walks `comps` from the root; every component but the last must be a directory.
    pub(crate) fn resolve(&self, comps: &[&str]) -> Res<InodeId> {
        let mut cur = ROOT;
        for (i, c) in comps.iter().enumerate() {
            let prefix = || format!("/{}", comps[..=i].join("/"));
            let Some(entries) = self.entries(cur) else {
                return Err(MetaError::NotADirectory(format!(
                    "/{}",
                    comps[..i].join("/")
                )));
            };
            cur = *entries
                .get(*c)
                .ok_or_else(|| MetaError::NotFound(prefix()))?;
        }
        Ok(cur)
    }

    /// Resolves the parent directory of a non-root path.
    fn parent_dir<'p>(&self, p: &'p str) -> Res<(InodeId, &'p str)> {
        let (parent, name) = path::split(p)?;
        let dir = self.resolve(&parent)?;
        if !self.is_dir(dir) {
            return Err(MetaError::NotADirectory(format!("/{}", parent.join("/"))));
        }
        Ok((dir, name))
    }

    fn touch(&mut self, id: InodeId, now_ms: u64) {
        if let Some(i) = self.inodes.get_mut(&id) {
            i.mtime_ms = i.mtime_ms.max(now_ms);
        }
    }

    fn mkdir(&mut self, p: &str, parents: bool, now_ms: u64) -> Res<Reply> {
        let comps = path::components(p)?;
        let mut cur = ROOT;
        let mut k = 0;
        while k < comps.len() {
            let Some(entries) = self.entries(cur) else {
                return Err(MetaError::NotADirectory(format!(
                    "/{}",
                    comps[..k].join("/")
                )));
            };
            match entries.get(comps[k]) {
                Some(id) => cur = *id,
                None => break,
            }
            k += 1;
        }
        if k == comps.len() {
            return match (parents, self.is_dir(cur)) {
                (true, true) => Ok(Reply::Inode(cur)),
                (_, false) => Err(MetaError::NotADirectory(p.to_string())),
                (false, true) => Err(MetaError::AlreadyExists(p.to_string())),
            };
        }
        if !self.is_dir(cur) {
            return Err(MetaError::NotADirectory(format!(
                "/{}",
                comps[..k].join("/")
            )));
        }
        if k + 1 < comps.len() && !parents {
            return Err(MetaError::NotFound(format!("/{}", comps[..=k].join("/"))));
        }
        for name in &comps[k..] {
            let id = self.alloc_inode();
            self.inodes.insert(
                id,
                Inode {
                    parent: cur,
                    mtime_ms: now_ms,
                    kind: InodeKind::Dir(BTreeMap::new()),
                },
            );
            if let Some(e) = self.entries_mut(cur) {
                e.insert((*name).into(), id);
            }
            self.touch(cur, now_ms);
            cur = id;
        }
        Ok(Reply::Inode(cur))
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        p: &str,
        overwrite: bool,
        replication: Option<u8>,
        chunk_size: Option<u64>,
        holder: Holder,
        lease_ms: u64,
        now_ms: u64,
    ) -> Res<Reply> {
        if lease_ms == 0 || lease_ms > LEASE_MS_MAX {
            return Err(MetaError::BadArgument(format!(
                "lease of {lease_ms} ms must be 1..={LEASE_MS_MAX}"
            )));
        }
        let replication = check_replication(replication.unwrap_or(self.replication))?;
        let chunk_size_log2 = match chunk_size {
            Some(b) => check_chunk_size(b)?,
            None => self.chunk_size_log2,
        };
        let (dir, name) = self.parent_dir(p)?;
        match self.entries(dir).and_then(|e| e.get(name)) {
            Some(id) if self.is_dir(*id) => return Err(MetaError::IsADirectory(p.to_string())),
            Some(_) if !overwrite => return Err(MetaError::AlreadyExists(p.to_string())),
            _ => {}
        }
        let key: (InodeId, Box<str>) = (dir, name.into());
        if let Some(other) = self.pending_names.get(&key).copied() {
            let live = self
                .pending
                .get(&other)
                .is_some_and(|o| o.expires_ms > now_ms);
            if live {
                return Err(MetaError::Lease {
                    file: other,
                    why: format!("{p} is being written by another client"),
                });
            }
            self.drop_pending(other);
        }
        let id = self.alloc_inode();
        self.inodes.insert(
            id,
            Inode {
                parent: dir,
                mtime_ms: now_ms,
                kind: InodeKind::File(FileMeta {
                    length: 0,
                    replication,
                    chunk_size_log2,
                    chunks: Vec::new(),
                }),
            },
        );
        let expires_ms = now_ms.saturating_add(lease_ms);
        self.pending.insert(
            id,
            Pending {
                parent: dir,
                name: name.into(),
                holder,
                expires_ms,
                overwrite,
            },
        );
        self.pending_names.insert(key, id);
        Ok(Reply::Created {
            file: id,
            lease_expires_ms: expires_ms,
        })
    }

    /// Checks that `holder` holds a live lease on `file`.
    fn writer(&self, file: InodeId, holder: Holder, now_ms: u64) -> Res<&Pending> {
        let p = self
            .pending
            .get(&file)
            .ok_or(MetaError::UnknownFile(file))?;
        if p.holder != holder {
            return Err(MetaError::Lease {
                file,
                why: "the writer lease is held by another client".into(),
            });
        }
        if p.expires_ms <= now_ms {
            return Err(MetaError::Lease {
                file,
                why: "the writer lease expired".into(),
            });
        }
        Ok(p)
    }

    fn file_mut(&mut self, file: InodeId) -> Res<&mut FileMeta> {
        match self.inodes.get_mut(&file).map(|i| &mut i.kind) {
            Some(InodeKind::File(f)) => Ok(f),
            _ => Err(MetaError::UnknownFile(file)),
        }
    }

    fn renew(&mut self, file: InodeId, holder: Holder, lease_ms: u64, now_ms: u64) -> Res<Reply> {
        if lease_ms == 0 || lease_ms > LEASE_MS_MAX {
            return Err(MetaError::BadArgument(format!(
                "lease of {lease_ms} ms must be 1..={LEASE_MS_MAX}"
            )));
        }
        self.writer(file, holder, now_ms)?;
        let expires_ms = now_ms.saturating_add(lease_ms);
        if let Some(p) = self.pending.get_mut(&file) {
            p.expires_ms = expires_ms;
        }
        Ok(Reply::Lease { expires_ms })
    }

    fn allocate_chunk(
        &mut self,
        file: InodeId,
        holder: Holder,
        index: u32,
        pipeline: &[NodeId],
        now_ms: u64,
    ) -> Res<Reply> {
        self.writer(file, holder, now_ms)?;
        let mut seen = pipeline.to_vec();
        seen.sort_unstable();
        seen.dedup();
        if pipeline.is_empty()
            || pipeline.len() > REPLICATION_MAX as usize
            || seen.len() != pipeline.len()
        {
            return Err(MetaError::BadArgument(format!(
                "pipeline {pipeline:?} must name 1..=16 distinct chunkservers"
            )));
        }
        if let Some(unknown) = pipeline.iter().find(|n| !self.servers.contains_key(n)) {
            return Err(MetaError::BadArgument(format!(
                "unknown chunkserver {unknown}"
            )));
        }
        let n = self.file_mut(file)?.chunks.len();
        let (id, version) = if index as usize == n {
            let id = ChunkId(self.next_chunk);
            self.next_chunk += 1;
            self.file_mut(file)?.chunks.push(id);
            let meta = ChunkMeta {
                version: ChunkVersion(1),
                file,
                index,
            };
            self.chunks.insert(id, meta);
            (id, meta.version)
        } else if index as usize + 1 == n {
            let id = self.file_mut(file)?.chunks[n - 1];
            let meta = self
                .chunks
                .get_mut(&id)
                .ok_or(MetaError::UnknownFile(file))?;
            meta.version = ChunkVersion(meta.version.get() + 1);
            (id, meta.version)
        } else {
            return Err(MetaError::ChunkIndex {
                file,
                index,
                why: format!("the file has {n} chunks; chunks are written in order"),
            });
        };
        Ok(Reply::Chunk {
            id,
            version,
            pipeline: pipeline.to_vec(),
        })
    }

    fn abandon_chunk(
        &mut self,
        file: InodeId,
        holder: Holder,
        index: u32,
        now_ms: u64,
    ) -> Res<Reply> {
        self.writer(file, holder, now_ms)?;
        let f = self.file_mut(file)?;
        if f.chunks.is_empty() || index as usize + 1 != f.chunks.len() {
            let n = f.chunks.len();
            return Err(MetaError::ChunkIndex {
                file,
                index,
                why: format!(
                    "only the last chunk ({}) can be abandoned",
                    n.saturating_sub(1)
                ),
            });
        }
        if let Some(id) = f.chunks.pop() {
            if let Some(meta) = self.chunks.remove(&id) {
                self.garbage.insert(id, meta.version);
            }
        }
        Ok(Reply::Done)
    }

    fn complete(&mut self, file: InodeId, holder: Holder, length: u64, now_ms: u64) -> Res<Reply> {
        let p = self.writer(file, holder, now_ms)?.clone();
        let f = match self.inodes.get(&file).map(|i| &i.kind) {
            Some(InodeKind::File(f)) => f,
            _ => return Err(MetaError::UnknownFile(file)),
        };
        let n = f.chunks.len() as u64;
        let cs = f.chunk_size_bytes();
        let ok = if n == 0 {
            length == 0
        } else {
            length > (n - 1) * cs && length <= n * cs
        };
        if !ok {
            return Err(MetaError::Length {
                file,
                length,
                why: format!("{n} chunks of {cs} bytes cannot hold it"),
            });
        }
        let existing = self.entries(p.parent).and_then(|e| e.get(&p.name)).copied();
        let replaced = match existing {
            Some(id) if self.is_dir(id) => {
                return Err(MetaError::IsADirectory(p.name.to_string()));
            }
            Some(_) if !p.overwrite => return Err(MetaError::AlreadyExists(p.name.to_string())),
            other => other,
        };
        if let Some(old) = replaced {
            self.remove_inode(old);
        }
        self.pending.remove(&file);
        self.pending_names.remove(&(p.parent, p.name.clone()));
        if let Ok(f) = self.file_mut(file) {
            f.length = length;
        }
        self.touch(file, now_ms);
        if let Some(e) = self.entries_mut(p.parent) {
            e.insert(p.name, file);
        }
        self.touch(p.parent, now_ms);
        Ok(Reply::Completed { file, length })
    }

    fn abandon(&mut self, file: InodeId, holder: Holder) -> Res<Reply> {
        let p = self
            .pending
            .get(&file)
            .ok_or(MetaError::UnknownFile(file))?;
        if p.holder != holder {
            return Err(MetaError::Lease {
                file,
                why: "the writer lease is held by another client".into(),
            });
        }
        self.drop_pending(file);
        Ok(Reply::Done)
    }

    /// Removes a file under construction and turns its chunks into garbage.
    fn drop_pending(&mut self, file: InodeId) {
        if let Some(p) = self.pending.remove(&file) {
            self.pending_names.remove(&(p.parent, p.name));
        }
        self.remove_inode(file);
    }

    /// Removes one inode (a file, or an empty or recursive directory) from the inode table;
    /// its chunks become garbage. Does not touch directory entries.
    fn remove_inode(&mut self, id: InodeId) {
        let Some(inode) = self.inodes.remove(&id) else {
            return;
        };
        match inode.kind {
            InodeKind::File(f) => {
                for c in f.chunks {
                    if let Some(meta) = self.chunks.remove(&c) {
                        self.garbage.insert(c, meta.version);
                    }
                }
            }
            InodeKind::Dir(entries) => {
                for child in entries.into_values() {
                    self.remove_inode(child);
                }
            }
        }
    }

    fn rename(&mut self, src: &str, dst: &str, now_ms: u64) -> Res<Reply> {
        let sc = path::components(src)?;
        let dc = path::components(dst)?;
        if sc.is_empty() || dc.is_empty() {
            return Err(MetaError::Root);
        }
        let id = self.resolve(&sc)?;
        let (src_dir, src_name) = self.parent_dir(src)?;
        let (dst_dir, dst_name) = self.parent_dir(dst)?;
        if self.is_dir(id) {
            let mut cur = dst_dir;
            loop {
                if cur == id {
                    return Err(MetaError::IntoOwnSubtree {
                        src: src.to_string(),
                        dst: dst.to_string(),
                    });
                }
                if cur == ROOT {
                    break;
                }
                cur = self.inodes.get(&cur).map_or(ROOT, |i| i.parent);
            }
        }
        let replaced = match self.entries(dst_dir).and_then(|e| e.get(dst_name)).copied() {
            Some(same) if same == id => return Ok(Reply::Done),
            Some(t) if self.is_dir(t) || self.is_dir(id) => {
                return Err(MetaError::AlreadyExists(dst.to_string()));
            }
            other => other,
        };
        if let Some(old) = replaced {
            self.remove_inode(old);
        }
        if let Some(e) = self.entries_mut(src_dir) {
            e.remove(src_name);
        }
        if let Some(e) = self.entries_mut(dst_dir) {
            e.insert(dst_name.into(), id);
        }
        if let Some(i) = self.inodes.get_mut(&id) {
            i.parent = dst_dir;
        }
        self.touch(src_dir, now_ms);
        self.touch(dst_dir, now_ms);
        Ok(Reply::Done)
    }

    fn delete(&mut self, p: &str, recursive: bool, now_ms: u64) -> Res<Reply> {
        let comps = path::components(p)?;
        if comps.is_empty() {
            return Err(MetaError::Root);
        }
        let id = self.resolve(&comps)?;
        if let Some(e) = self.entries(id) {
            if !e.is_empty() && !recursive {
                return Err(MetaError::NotEmpty(p.to_string()));
            }
        }
        let (dir, name) = self.parent_dir(p)?;
        if self.is_dir(id) {
            // Files being written inside the subtree lose their directory: abandon them.
            let doomed: Vec<InodeId> = self
                .pending
                .iter()
                .filter(|(_, pf)| self.is_within(pf.parent, id))
                .map(|(f, _)| *f)
                .collect();
            for f in doomed {
                self.drop_pending(f);
            }
        }
        self.remove_inode(id);
        if let Some(e) = self.entries_mut(dir) {
            e.remove(name);
        }
        self.touch(dir, now_ms);
        Ok(Reply::Done)
    }

    /// Whether `id` is `ancestor` or below it.
    fn is_within(&self, mut id: InodeId, ancestor: InodeId) -> bool {
        loop {
            if id == ancestor {
                return true;
            }
            if id == ROOT {
                return false;
            }
            id = match self.inodes.get(&id) {
                Some(i) => i.parent,
                None => return false,
            };
        }
    }

    fn set_replication(&mut self, p: &str, replication: u8) -> Res<Reply> {
        let r = check_replication(replication)?;
        let id = self.resolve(&path::components(p)?)?;
        match self.inodes.get_mut(&id).map(|i| &mut i.kind) {
            Some(InodeKind::File(f)) => {
                f.replication = r;
                Ok(Reply::Done)
            }
            _ => Err(MetaError::IsADirectory(p.to_string())),
        }
    }

    fn register(
        &mut self,
        uuid: &str,
        address: &str,
        host: &str,
        rack: &Option<String>,
        capacity_bytes: u64,
        now_ms: u64,
    ) -> Res<Reply> {
        if uuid.is_empty() || uuid.len() > 64 {
            return Err(MetaError::BadArgument(
                "chunkserver uuid must be 1..=64 bytes".into(),
            ));
        }
        if !address.contains(':') || address.len() > 256 {
            return Err(MetaError::BadArgument(format!(
                "{address:?} is not host:port"
            )));
        }
        if host.is_empty() || host.len() > 255 || rack.as_ref().is_some_and(|r| r.len() > 255) {
            return Err(MetaError::BadArgument(
                "host and rack labels must be 1..=255 bytes".into(),
            ));
        }
        let info = ServerInfo {
            uuid: uuid.to_string(),
            address: address.to_string(),
            host: host.to_string(),
            rack: rack.clone(),
            capacity_bytes,
            registered_ms: now_ms,
            draining: false,
        };
        if let Some((id, s)) = self.servers.iter_mut().find(|(_, s)| s.uuid == uuid) {
            let draining = s.draining;
            *s = ServerInfo { draining, ..info };
            return Ok(Reply::Server(*id));
        }
        let id = NodeId(self.next_server);
        self.next_server += 1;
        self.servers.insert(id, info);
        Ok(Reply::Server(id))
    }

    fn expire_leases(&mut self, now_ms: u64) -> Reply {
        let expired: Vec<InodeId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.expires_ms <= now_ms)
            .map(|(f, _)| *f)
            .collect();
        for f in &expired {
            self.drop_pending(*f);
        }
        Reply::Expired(expired.len() as u32)
    }
}
