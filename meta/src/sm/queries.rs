//! Read-only questions to the master state (served without going through the log).
use super::perms::{Actor, Who, EXEC, READ};
use super::snaps::Target;
use super::{InodeKind, MetaError, MetaState, ServerInfo, Stat};
use crate::path;
use shale_proto::{ChunkId, ChunkVersion, InodeId, NodeId};

/// Most entries one `list` call returns.
pub const LIST_LIMIT_MAX: usize = 10_000;

/// A complete file's chunks, for readers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChunks {
    pub file: InodeId,
    pub length: u64,
    pub chunk_size_bytes: u64,
    pub replication: u8,
    pub chunks: Vec<(ChunkId, ChunkVersion)>,
    /// An append file (its bytes are its extents: see `appends`).
    pub append: bool,
}

/// Counts for status pages and memory measurements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub chunks: u64,
    pub under_construction: u64,
    pub garbage_chunks: u64,
    pub chunkservers: u64,
}

impl MetaState {
    pub(super) fn stat_inode(&self, id: InodeId) -> Option<Stat> {
        let i = self.inodes.get(&id)?;
        let (owner, group) = self.names_of(i.attrs);
        let (owner, group, mode) = (owner.to_string(), group.to_string(), i.attrs.mode);
        Some(match &i.kind {
            InodeKind::Dir(e) => Stat {
                inode: id,
                is_dir: true,
                length: 0,
                mtime_ms: i.mtime_ms,
                replication: i.dir_replication,
                chunk_size_bytes: 0,
                chunks: 0,
                entries: e.len() as u64,
                owner,
                group,
                mode,
            },
            InodeKind::File(f) => Stat {
                inode: id,
                is_dir: false,
                length: f.length,
                mtime_ms: i.mtime_ms,
                replication: i.replication,
                chunk_size_bytes: i.chunk_size_bytes(),
                chunks: f.chunks.len() as u32,
                entries: 0,
                owner,
                group,
                mode,
            },
        })
    }

    /// `stat` as the superuser.
    pub fn stat(&self, p: &str) -> Result<Stat, MetaError> {
        self.stat_as(p, &Who::root())
    }

    /// A path's attributes, as `who` sees them (execute on every directory on the way).
    pub fn stat_as(&self, p: &str, who: &Who) -> Result<Stat, MetaError> {
        let s = match self.resolve_target(&path::components(p)?, &self.actor(who))? {
            Target::At(id, view) => self.stat_at(id, view),
            Target::Snapshots(dir) => self.stat_inode(dir).map(|mut s| {
                s.entries = self.snaps.roots.get(&dir).map_or(0, |r| r.len() as u64);
                s
            }),
        };
        s.ok_or_else(|| MetaError::NotFound(p.to_string()))
    }

    /// `list` as the superuser.
    pub fn list(
        &self,
        p: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(String, Stat)>, bool), MetaError> {
        self.list_as(p, start_after, limit, &Who::root())
    }

    /// Up to `limit` entries of a directory after `start_after` (exclusive), in name order, and
    /// whether more follow; `who` needs read and execute on the directory.
    pub fn list_as(
        &self,
        p: &str,
        start_after: Option<&str>,
        limit: usize,
        who: &Who,
    ) -> Result<(Vec<(String, Stat)>, bool), MetaError> {
        let actor = self.actor(who);
        let (id, view) = match self.resolve_target(&path::components(p)?, &actor)? {
            Target::At(id, view) => (id, view),
            Target::Snapshots(dir) => {
                self.require(dir, &actor, READ | EXEC, || p.to_string())?;
                let limit = limit.clamp(1, LIST_LIMIT_MAX);
                let all = self.snapshot_views(dir);
                let after: Vec<(String, Stat)> = all
                    .into_iter()
                    .filter(|v| start_after.is_none_or(|s| v.name.as_str() > s))
                    .map(|v| (v.name, v.stat))
                    .collect();
                let more = after.len() > limit;
                return Ok((after.into_iter().take(limit).collect(), more));
            }
        };
        let entries = self
            .entries_at(id, view)
            .ok_or_else(|| MetaError::NotADirectory(p.to_string()))?;
        self.require(id, &actor, READ | EXEC, || p.to_string())?;
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let range = match start_after {
            Some(s) => {
                entries.range::<str, _>((std::ops::Bound::Excluded(s), std::ops::Bound::Unbounded))
            }
            None => entries.range::<str, _>(..),
        };
        let mut out = Vec::new();
        let mut more = false;
        for (name, child) in range {
            if out.len() == limit {
                more = true;
                break;
            }
            if let Some(s) = self.stat_at(*child, view) {
                out.push((name.to_string(), s));
            }
        }
        Ok((out, more))
    }

    /// `file_chunks` as the superuser.
    pub fn file_chunks(&self, p: &str) -> Result<FileChunks, MetaError> {
        self.file_chunks_as(p, &Who::root())
    }

    /// The chunks of a complete file, for `who` to read (read permission on the file).
    pub fn file_chunks_as(&self, p: &str, who: &Who) -> Result<FileChunks, MetaError> {
        let actor = self.actor(who);
        self.file_chunks_actor(p, &actor)
    }

    fn file_chunks_actor(&self, p: &str, who: &Actor) -> Result<FileChunks, MetaError> {
        let (id, view) = match self.resolve_target(&path::components(p)?, who)? {
            Target::At(id, view) => (id, view),
            Target::Snapshots(_) => return Err(MetaError::IsADirectory(p.to_string())),
        };
        if matches!(
            self.inodes.get(&id).map(|i| &i.kind),
            Some(InodeKind::File(_))
        ) {
            self.require(id, who, READ, || p.to_string())?;
        }
        match self.inodes.get(&id).and_then(|i| i.file()) {
            Some((f, chunk_size_bytes, replication)) => Ok(FileChunks {
                file: id,
                length: self
                    .appends
                    .get(&id)
                    .and_then(|a| a.view_len(view))
                    .unwrap_or(f.length),
                chunk_size_bytes,
                replication,
                chunks: f
                    .chunks
                    .iter()
                    .map(|c| {
                        (
                            *c,
                            self.chunks.get(c).map_or(ChunkVersion(0), |m| m.version()),
                        )
                    })
                    .collect(),
                append: self.appends.contains_key(&id),
            }),
            _ => Err(MetaError::IsADirectory(p.to_string())),
        }
    }

    /// (chunk size, replication) of a file under construction.
    pub fn pending_file(&self, file: InodeId) -> Option<(u64, u8)> {
        if !self.pending.contains_key(&file) {
            return None;
        }
        self.inodes
            .get(&file)
            .and_then(|i| i.file())
            .map(|(_, cs, r)| (cs, r))
    }

    /// (chunk size, chunks with versions) of a file under construction.
    pub fn pending_chunks(&self, file: InodeId) -> Option<(u64, Vec<(ChunkId, ChunkVersion)>)> {
        if !self.pending.contains_key(&file) {
            return None;
        }
        match self.inodes.get(&file).and_then(|i| i.file()) {
            Some((f, cs, _)) => Some((
                cs,
                f.chunks
                    .iter()
                    .map(|c| {
                        (
                            *c,
                            self.chunks.get(c).map_or(ChunkVersion(0), |m| m.version()),
                        )
                    })
                    .collect(),
            )),
            _ => None,
        }
    }

    /// The version and replication target of chunk `id` if it is live and its file complete
    /// (chunks of files under construction are left to their writer). O(1): the healer looks
    /// at a bounded number of chunks per round, by id.
    pub fn complete_chunk(&self, id: ChunkId) -> Option<(ChunkVersion, u8)> {
        let m = self.chunks.get(&id)?;
        if self.pending.contains_key(&m.file) {
            return None;
        }
        let (_, _, replication) = self.inodes.get(&m.file)?.file()?;
        Some((m.version(), replication))
    }

    /// One past the highest chunk id handed out (ids are assigned in order from 1).
    pub fn chunk_id_end(&self) -> u64 {
        self.next_chunk
    }

    /// The file a live chunk belongs to, the chunk's index in it, and the file's path (None
    /// when the file is not linked under the root: under construction, or a snapshot's
    /// copy). Walks at most one level per two bytes of the longest path, scanning each
    /// parent's entries for the child's name (O(directory size) per level): for a handful
    /// of chunks (the dashboard's files at risk), not for bulk use.
    pub fn chunk_file_path(&self, id: ChunkId) -> Option<(InodeId, u32, Option<String>)> {
        let m = self.chunks.get(&id)?;
        let mut names: Vec<&str> = Vec::new();
        let mut at = m.file;
        let mut linked = false;
        for _ in 0..path::PATH_MAX_BYTES / 2 {
            if at == super::ROOT {
                linked = true;
                break;
            }
            let Some(node) = self.inodes.get(&at) else {
                break;
            };
            let Some(InodeKind::Dir(entries)) = self.inodes.get(&node.parent).map(|p| &p.kind)
            else {
                break;
            };
            let Some((name, _)) = entries.iter().find(|(_, child)| **child == at) else {
                break;
            };
            names.push(name);
            at = node.parent;
        }
        let path = linked.then(|| names.iter().rev().fold(String::new(), |p, n| p + "/" + n));
        Some((m.file, m.index, path))
    }

    /// Every live chunk (of complete files and files under construction) at its version.
    pub fn all_chunks(&self) -> impl Iterator<Item = (ChunkId, ChunkVersion)> + '_ {
        self.chunks.iter().map(|(c, m)| (*c, m.version()))
    }

    /// Whether a chunk is garbage (its file is gone; replicas are to be deleted).
    pub fn is_garbage(&self, id: ChunkId) -> bool {
        self.garbage.contains_key(&id)
    }

    /// Whether a chunk id is known at all (live or garbage).
    pub fn knows_chunk(&self, id: ChunkId) -> bool {
        self.chunks.contains_key(&id) || self.garbage.contains_key(&id)
    }

    /// The current version of a live chunk.
    pub fn chunk_version(&self, id: ChunkId) -> Option<ChunkVersion> {
        self.chunks.get(&id).map(|m| m.version())
    }

    pub fn servers(&self) -> impl Iterator<Item = (&NodeId, &ServerInfo)> {
        self.servers.iter()
    }

    /// One registered chunkserver (O(log servers)).
    pub fn server(&self, node: NodeId) -> Option<&ServerInfo> {
        self.servers.get(&node)
    }

    pub fn garbage(&self) -> impl Iterator<Item = (&ChunkId, &ChunkVersion)> {
        self.garbage.iter()
    }

    /// Garbage chunks from id `from` on, in id order.
    pub fn garbage_from(&self, from: ChunkId) -> impl Iterator<Item = (&ChunkId, &ChunkVersion)> {
        self.garbage.range(from..)
    }

    /// The latest log time applied.
    pub fn log_time_ms(&self) -> u64 {
        self.log_time_ms
    }

    /// Whether any file is under construction (lease expiry has work to do).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn default_chunk_size_bytes(&self) -> u64 {
        1 << self.chunk_size_log2
    }

    pub fn default_replication(&self) -> u8 {
        self.replication
    }

    /// Whether `/` exists and is a directory (the one structural fact every walk relies on).
    pub fn root_is_dir(&self) -> bool {
        matches!(
            self.inodes.get(&super::ROOT).map(|i| &i.kind),
            Some(InodeKind::Dir(_))
        )
    }

    pub fn counts(&self) -> Counts {
        // O(1): status pages ask every second, and states hold millions of inodes.
        let under_construction = self.pending.len() as u64;
        Counts {
            chunks: self.chunks.len() as u64,
            under_construction,
            garbage_chunks: self.garbage.len() as u64,
            chunkservers: self.servers.len() as u64,
            dirs: self.dirs,
            files: (self.inodes.len() as u64)
                .saturating_sub(self.dirs)
                .saturating_sub(under_construction),
        }
    }
}
