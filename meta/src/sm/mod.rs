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

pub mod appends;
mod entries;
mod files;
pub mod idmap;
pub mod name;
pub mod namespace;
pub mod perms;
mod queries;
pub mod quota;
pub mod registry;
pub mod security;
pub mod sessions;
pub mod snaps;
pub mod trash;
mod types;
mod validate;

pub use crate::error::MetaError;
use perms::Actor;
pub use perms::Who;
use quota::{Quota, Usage};
pub use sessions::RequestId;
use sessions::{Seen, Sessions};
use trash::TrashItem;

use idmap::IdMap;
use name::Name;
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
    /// Serialized apart, in parts that load in parallel (snapshot format 9).
    #[serde(skip)]
    pub(crate) inodes: IdMap<InodeId, Inode>,
    #[serde(skip)]
    pub(crate) chunks: IdMap<ChunkId, ChunkMeta>,
    pub(crate) pending: IdMap<InodeId, Pending>,
    pub(crate) pending_names: HashMap<(InodeId, Name), InodeId>,
    pub(crate) garbage: BTreeMap<ChunkId, ChunkVersion>,
    pub(crate) servers: BTreeMap<NodeId, ServerInfo>,
    /// Recent replies per client, for retried requests. Serialized after the rest of the state
    /// by the snapshot format (v2), so v1 snapshots still decode.
    #[serde(skip)]
    pub(crate) sessions: Sessions,
    /// Chunkserver identities and token keys. Serialized after the sessions (snapshot v3).
    #[serde(skip)]
    pub(crate) security: security::SecurityState,
    /// Owner and group names and group memberships. Serialized after the security state,
    /// with every inode's attributes (snapshot v4).
    #[serde(skip)]
    pub(crate) perms: perms::PermState,
    /// How many inodes are directories (so that counting is O(1)); derived, recounted after
    /// a snapshot is decoded.
    #[serde(skip)]
    pub(crate) dirs: u64,
    /// Directory quotas with their usage (snapshot format 6; see `quota`).
    #[serde(skip)]
    pub(crate) quotas: BTreeMap<InodeId, Quota>,
    /// The trees in users' trash (snapshot format 6; see `trash`).
    #[serde(skip)]
    pub(crate) trash: BTreeMap<InodeId, TrashItem>,
    /// Directory snapshots (snapshot format 7; see `snaps`).
    #[serde(skip)]
    pub(crate) snaps: snaps::SnapState,
    /// Append files' extents and tail chunks (snapshot format 8; see `appends`).
    #[serde(skip)]
    pub(crate) appends: BTreeMap<InodeId, appends::AppendLog>,
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
        let mut inodes = IdMap::default();
        inodes.insert(
            ROOT,
            Inode {
                parent: ROOT,
                mtime_ms: 0,
                kind: InodeKind::Dir(Box::default()),
                attrs: perms::Attrs::legacy(true),
                dir_replication: 0,
                replication: 0,
                chunk_size_log2: 0,
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
            chunks: IdMap::default(),
            pending: IdMap::default(),
            pending_names: HashMap::new(),
            garbage: BTreeMap::new(),
            servers: BTreeMap::new(),
            sessions: Sessions::default(),
            security: Default::default(),
            perms: Default::default(),
            dirs: 1,
            quotas: BTreeMap::new(),
            trash: BTreeMap::new(),
            snaps: Default::default(),
            appends: BTreeMap::new(),
        })
    }

    /// Applies one command at log time `now_ms`.
    pub fn apply(&mut self, cmd: &Command, now_ms: u64) -> Reply {
        let now_ms = now_ms.max(self.log_time_ms);
        self.log_time_ms = now_ms;
        self.sessions.expire(now_ms);
        let r = match cmd {
            Command::As { who, cmd } => {
                let actor = self.actor(who);
                match &**cmd {
                    Command::Session { client, seq, cmd } => self.apply_once(
                        RequestId {
                            client: *client,
                            seq: *seq,
                        },
                        cmd,
                        now_ms,
                        &actor,
                    ),
                    other => self.apply_cmd(other, now_ms, &actor),
                }
            }
            Command::Session { client, seq, cmd } => self.apply_once(
                RequestId {
                    client: *client,
                    seq: *seq,
                },
                cmd,
                now_ms,
                &Actor::root(),
            ),
            other => self.apply_cmd(other, now_ms, &Actor::root()),
        };
        #[cfg(debug_assertions)]
        if let Err(why) = self.validate() {
            panic!("master state invariant broken after {cmd:?}: {why}");
        }
        r
    }

    /// Applies a request named by `id` once: a retry gets the first reply.
    fn apply_once(&mut self, id: RequestId, cmd: &Command, now_ms: u64, who: &Actor) -> Reply {
        if id.seq == 0 {
            return Reply::Err(MetaError::BadArgument(
                "request sequence numbers start at 1".into(),
            ));
        }
        match self.sessions.check(id) {
            Err(e) => Reply::Err(e),
            Ok(Seen::Again(r)) => r,
            Ok(Seen::New) => {
                let r = self.apply_cmd(cmd, now_ms, who);
                // A record refused because of where its bytes are is appended again elsewhere
                // and committed under the same id (its record id): not remembered, so that the
                // next try applies (the refusal changed nothing).
                if !matches!(r, Reply::Err(MetaError::StaleChunk(_))) {
                    self.sessions.record(id, &r, now_ms);
                }
                r
            }
        }
    }

    fn apply_cmd(&mut self, cmd: &Command, now_ms: u64, who: &Actor) -> Reply {
        let r = match cmd {
            Command::Session { .. } | Command::As { .. } => Err(MetaError::BadArgument(
                "a session or caller wraps only a plain command".into(),
            )),
            Command::Mkdir { path, parents } => {
                self.mkdir(path, *parents, perms::DIR_MODE_DEFAULT, now_ms, who)
            }
            Command::MkdirWithMode {
                path,
                parents,
                mode,
            } => self.mkdir(path, *parents, *mode, now_ms, who),
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
                (*replication, *chunk_size_bytes),
                (*holder, *lease_ms),
                perms::FILE_MODE_DEFAULT,
                now_ms,
                who,
            ),
            Command::CreateWithMode {
                path,
                overwrite,
                replication,
                chunk_size_bytes,
                holder,
                lease_ms,
                mode,
            } => self.create(
                path,
                *overwrite,
                (*replication, *chunk_size_bytes),
                (*holder, *lease_ms),
                *mode,
                now_ms,
                who,
            ),
            Command::SetAttrs {
                path,
                mode,
                owner,
                group,
            } => self.set_attrs(path, *mode, owner.as_deref(), group.as_deref(), who),
            Command::SetMember {
                group,
                user,
                member,
            } => self.set_member(group, user, *member, who),
            Command::SetUserKey { id, secret } => self.set_user_key(*id, secret, now_ms),
            Command::RenewLease {
                file,
                holder,
                lease_ms,
            } => self.renew(*file, *holder, *lease_ms, now_ms, who),
            Command::AllocateChunk {
                file,
                holder,
                index,
                pipeline,
            } => self.allocate_chunk(*file, *holder, *index, pipeline, now_ms, who),
            Command::AbandonChunk {
                file,
                holder,
                index,
            } => self.abandon_chunk(*file, *holder, *index, now_ms, who),
            Command::Complete {
                file,
                holder,
                length,
            } => self.complete(*file, *holder, *length, now_ms, who),
            Command::Abandon { file, holder } => self.abandon(*file, *holder, who),
            Command::Rename { src, dst } => self.rename(src, dst, true, now_ms, who),
            Command::RenameNoReplace { src, dst } => self.rename(src, dst, false, now_ms, who),
            Command::Delete { path, recursive } => self.delete(path, *recursive, now_ms, who),
            Command::SetReplication { path, replication } => {
                self.set_replication(path, *replication, who)
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
            Command::RemoveChunkserver { node } => self.remove_server(*node),
            Command::RegisterChunkserverAs {
                uuid,
                address,
                host,
                rack,
                capacity_bytes,
                principal,
            } => self.register_as(
                (uuid, address, host, rack, *capacity_bytes),
                principal,
                now_ms,
            ),
            Command::AddTokenKey { id, secret } => self.add_token_key(*id, secret, now_ms),
            Command::CompleteWithDigests {
                file,
                holder,
                length,
                digests,
            } => self.complete_with_digests(*file, *holder, *length, digests, now_ms, who),
            Command::ExpireLeases => Ok(self.expire_leases(now_ms)),
            Command::SetQuota {
                path,
                max_bytes,
                max_names,
            } => self.set_quota(path, *max_bytes, *max_names, who),
            Command::Trash { path, recursive } => self.trash(path, *recursive, now_ms, who),
            Command::ExpireTrash { retention_ms } => Ok(self.expire_trash(*retention_ms, now_ms)),
            Command::CreateSnapshot { path, name } => self.create_snapshot(path, name, now_ms, who),
            Command::DeleteSnapshot { path, name } => self.delete_snapshot(path, name, who),
            Command::CreateAppend {
                path,
                replication,
                chunk_size_bytes,
                mode,
            } => self.create_append(path, (*replication, *chunk_size_bytes), *mode, now_ms, who),
            Command::AppendTail {
                path,
                after,
                fence,
                pipeline,
            } => self.append_tail(path, *after, *fence, pipeline, who),
            Command::CommitRecord {
                path,
                file,
                chunk,
                chunk_off,
                len,
                on,
            } => self.commit_record(path, *file, *chunk, (*chunk_off, *len), on, now_ms, who),
            Command::FenceChunk { chunk } => self.fence_chunk(*chunk),
            Command::SealAppend { path } => self.seal_append(path, now_ms, who),
            Command::ForgetGarbage { chunks } => {
                for (id, v) in chunks {
                    if self.garbage.get(id) == Some(v) {
                        self.garbage.remove(id);
                    }
                }
                Ok(Reply::Done)
            }
        };
        r.unwrap_or_else(Reply::Err)
    }

    /// Recounts the derived directory count (after decoding a snapshot).
    pub(crate) fn recount(&mut self) {
        self.dirs = self
            .inodes
            .values()
            .filter(|i| matches!(i.kind, InodeKind::Dir(_)))
            .count() as u64;
    }

    fn alloc_inode(&mut self) -> InodeId {
        let id = InodeId(self.next_inode);
        self.next_inode += 1;
        id
    }

    pub(crate) fn entries(&self, dir: InodeId) -> Option<&Entries> {
        match &self.inodes.get(&dir)?.kind {
            InodeKind::Dir(e) => Some(e),
            InodeKind::File(_) => None,
        }
    }

    /// A directory's live entries, to change them: snapshots that see it keep a copy first.
    fn entries_mut(&mut self, dir: InodeId) -> Option<&mut Entries> {
        self.cow_dir(dir);
        match &mut self.inodes.get_mut(&dir)?.kind {
            InodeKind::Dir(e) => Some(e),
            InodeKind::File(_) => None,
        }
    }

    /// `id` and its ancestors by parent links, `id` first, up to and including the root; ends
    /// early after an inode that is gone (an unlinked tree's). Bounded by the number of inodes
    /// (parent links have no cycles; the bound keeps a broken state from looping).
    pub(crate) fn ancestors(&self, id: InodeId) -> impl Iterator<Item = InodeId> + '_ {
        let mut next = Some(id);
        let mut left = self.inodes.len() + 1;
        std::iter::from_fn(move || {
            let cur = next?;
            if left == 0 {
                return None;
            }
            left -= 1;
            next = if cur == ROOT {
                None
            } else {
                self.inodes.get(&cur).map(|i| i.parent)
            };
            Some(cur)
        })
    }

    /// What `Delete` and `Trash` check before removing `p` (its components, inode, directory
    /// and name): not the root, exists, empty unless `recursive`, `who` may unlink it and
    /// everything in it, no snapshots in it.
    fn removable<'p>(
        &self,
        p: &'p str,
        recursive: bool,
        who: &Actor,
    ) -> Res<(InodeId, InodeId, &'p str)> {
        let comps = path::components(p)?;
        if comps.is_empty() {
            return Err(MetaError::Root);
        }
        let id = self.resolve(&comps, who)?;
        if let Some(e) = self.entries(id) {
            if !e.is_empty() && !recursive {
                return Err(MetaError::NotEmpty(p.to_string()));
            }
        }
        let (dir, name) = self.parent_dir(p, who)?;
        self.require_unlink(dir, id, who, p)?;
        self.require_tree(id, who, p)?;
        self.check_no_snapshots(id, p)?;
        Ok((id, dir, name))
    }

    fn is_dir(&self, id: InodeId) -> bool {
        self.entries(id).is_some()
    }

    /// Walks `comps` from the root as `who`; every component but the last must be a directory
    /// `who` may pass through (execute).
    pub(crate) fn resolve(&self, comps: &[&str], who: &Actor) -> Res<InodeId> {
        let mut cur = ROOT;
        for (i, c) in comps.iter().enumerate() {
            let prefix = || format!("/{}", comps[..=i].join("/"));
            let Some(entries) = self.entries(cur) else {
                return Err(MetaError::NotADirectory(format!(
                    "/{}",
                    comps[..i].join("/")
                )));
            };
            self.require(cur, who, perms::EXEC, || {
                format!("/{}", comps[..i].join("/"))
            })?;
            if *c == snaps::SNAPSHOT_DIR && self.snaps.roots.contains_key(&cur) {
                return Err(MetaError::BadArgument(format!(
                    "{}: snapshots are read-only",
                    prefix()
                )));
            }
            cur = *entries
                .get(*c)
                .ok_or_else(|| MetaError::NotFound(prefix()))?;
        }
        Ok(cur)
    }

    /// Resolves the parent directory of a non-root path as `who`.
    fn parent_dir<'p>(&self, p: &'p str, who: &Actor) -> Res<(InodeId, &'p str)> {
        let (parent, name) = path::split(p)?;
        let dir = self.resolve(&parent, who)?;
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
}
