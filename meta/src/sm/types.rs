//! Commands, replies, errors and the records of the master state. Everything here is
//! serialized into the Raft log or a snapshot: change only with a format version bump.
use super::name::Name;
use super::perms::{Attrs, Who};
use crate::error::MetaError;
use serde::{Deserialize, Serialize};
use shale_proto::{ChunkId, ChunkVersion, InodeId, NodeId};
use std::collections::BTreeMap;
use thin_vec::ThinVec;

/// A directory's entries by name (ordered, for paged listing).
pub type Entries = BTreeMap<Name, InodeId>;

/// Who holds a writer lease: a client session id (random per client process).
pub type Holder = u64;

/// A change to the master state. The leader stamps each with the log time it is applied at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// `MkdirWithMode` with mode 0755 (servers now write `MkdirWithMode`; kept for older logs).
    Mkdir {
        path: String,
        parents: bool,
    },
    /// Starts a file under construction (invisible until `Complete`), mode 0644 (servers now
    /// write `CreateWithMode`; kept for older logs).
    Create {
        path: String,
        overwrite: bool,
        replication: Option<u8>,
        chunk_size_bytes: Option<u64>,
        holder: Holder,
        lease_ms: u64,
    },
    RenewLease {
        file: InodeId,
        holder: Holder,
        lease_ms: u64,
    },
    /// Allocates chunk `index` of a file under construction on `pipeline` (chosen by the leader
    /// from soft state: placement is not deterministic). Re-allocating an existing index keeps
    /// the chunk id and bumps its version (older replicas become stale).
    AllocateChunk {
        file: InodeId,
        holder: Holder,
        index: u32,
        pipeline: Vec<NodeId>,
    },
    /// Drops the last chunk of a file under construction.
    AbandonChunk {
        file: InodeId,
        holder: Holder,
        index: u32,
    },
    /// Makes the file visible atomically with its length (replacing an overwritten file).
    Complete {
        file: InodeId,
        holder: Holder,
        length: u64,
    },
    /// Gives up a file under construction.
    Abandon {
        file: InodeId,
        holder: Holder,
    },
    Rename {
        src: String,
        dst: String,
    },
    Delete {
        path: String,
        recursive: bool,
    },
    SetReplication {
        path: String,
        replication: u8,
    },
    RegisterChunkserver {
        uuid: String,
        address: String,
        host: String,
        rack: Option<String>,
        capacity_bytes: u64,
    },
    /// Marks a chunkserver as draining (no new replicas; its replicas are copied elsewhere and
    /// then removed) or back in service.
    SetDraining {
        node: NodeId,
        draining: bool,
    },
    /// Abandons files whose writer lease expired by this command's log time.
    ExpireLeases,
    /// Garbage chunks whose replicas are all deleted.
    ForgetGarbage {
        chunks: Vec<(ChunkId, ChunkVersion)>,
    },
    /// A client's request `seq` (≥ 1) in session `client`: applied once; a retry (same client
    /// and seq) is answered with the first reply (see `sessions`).
    Session {
        client: u64,
        seq: u64,
        cmd: Box<Command>,
    },
    /// Forgets a chunkserver's registration (an operator's removal, or the leader expiring one
    /// silent for long). Its replicas on disk are untouched: if it comes back it registers
    /// again, under a new node id, and reports them.
    RemoveChunkserver {
        node: NodeId,
    },
    /// `Rename` that fails if `dst` exists (never replaces).
    RenameNoReplace {
        src: String,
        dst: String,
    },
    /// `RegisterChunkserver` from a chunkserver that authenticated as `principal`: binds its
    /// node id to that principal (see `security`).
    RegisterChunkserverAs {
        uuid: String,
        address: String,
        host: String,
        rack: Option<String>,
        capacity_bytes: u64,
        principal: String,
    },
    /// A new chunk-token signing key (made by the leader; see `security`).
    AddTokenKey {
        id: u64,
        secret: Vec<u8>,
    },
    /// `Complete` with the writer's digest of each chunk (see `security`).
    CompleteWithDigests {
        file: InodeId,
        holder: Holder,
        length: u64,
        digests: Vec<Vec<u8>>,
    },
    /// `cmd` run as `who` (see `perms`); unwrapped commands run as the superuser.
    As {
        who: Who,
        cmd: Box<Command>,
    },
    /// `Mkdir` with the new directories' mode bits.
    MkdirWithMode {
        path: String,
        parents: bool,
        mode: u16,
    },
    /// `Create` with the new file's mode bits.
    CreateWithMode {
        path: String,
        overwrite: bool,
        replication: Option<u8>,
        chunk_size_bytes: Option<u64>,
        holder: Holder,
        lease_ms: u64,
        mode: u16,
    },
    /// chmod, chown, chgrp: changes each attribute given, all or none.
    SetAttrs {
        path: String,
        mode: Option<u16>,
        owner: Option<String>,
        group: Option<String>,
    },
    /// Adds a user to (or removes it from) a supplementary group.
    SetMember {
        group: String,
        user: String,
        member: bool,
    },
    /// Replaces the key user tokens are signed with (revoking every token signed with an
    /// older one; see `perms`).
    SetUserKey {
        id: u64,
        secret: Vec<u8>,
    },
    /// Sets the limits of a directory's quota (neither: removes it; see `quota`).
    SetQuota {
        path: String,
        max_bytes: Option<u64>,
        max_names: Option<u64>,
    },
    /// Moves a file or tree to the caller's trash (see `trash`).
    Trash {
        path: String,
        recursive: bool,
    },
    /// Removes the trash checkpoints older than `retention_ms` by log time.
    ExpireTrash {
        retention_ms: u64,
    },
    /// Takes snapshot `name` of directory `path` (see `snaps`).
    CreateSnapshot {
        path: String,
        name: String,
    },
    DeleteSnapshot {
        path: String,
        name: String,
    },
    /// Creates append file `path` (linked at once, empty), or finds it (see `appends`).
    CreateAppend {
        path: String,
        replication: Option<u8>,
        chunk_size_bytes: Option<u64>,
        mode: u16,
    },
    /// The tail chunk of append file `path` records go to: the current one, unless it is
    /// fenced or is `after` (then a new one on `pipeline`, chosen by the leader; with `fence`
    /// the old one takes no more records).
    AppendTail {
        path: String,
        after: Option<ChunkId>,
        fence: bool,
        pipeline: Vec<NodeId>,
    },
    /// Commits the record stored at `[chunk_off, chunk_off + len)` of `chunk` on replicas `on`
    /// to the end of append file `path` (still `file`). Sent as a session request: a retry is
    /// answered with the original offset.
    CommitRecord {
        path: String,
        file: InodeId,
        chunk: ChunkId,
        chunk_off: u64,
        len: u64,
        on: Vec<NodeId>,
    },
    /// Stops commits into an append chunk (the healer, before copying it).
    FenceChunk {
        chunk: ChunkId,
    },
    /// Seals an append file: no more records.
    SealAppend {
        path: String,
    },
}

/// The result of applying a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Done,
    Inode(InodeId),
    Created {
        file: InodeId,
        lease_expires_ms: u64,
        chunk_size_bytes: u64,
        replication: u8,
    },
    Lease {
        expires_ms: u64,
    },
    Chunk {
        id: ChunkId,
        version: ChunkVersion,
        pipeline: Vec<NodeId>,
    },
    Completed {
        file: InodeId,
        length: u64,
    },
    Server(NodeId),
    Expired(u32),
    Err(MetaError),
    /// Where `Trash` moved the path.
    Trashed(String),
    /// A committed record: its offset in the file, and the file's length after it.
    Record {
        offset: u64,
        length: u64,
    },
}

/// A file or directory: 48 bytes (the inode map's slots are 56 with the key; a file's
/// replication and chunk size live here, beside the directory default, rather than in
/// [`FileMeta`], whose padding made the inode 56 and the slot 64). Serialized as it was when
/// they were in `FileMeta` (`Inode` → `parent, mtime_ms, kind`; a file's kind → `length,
/// replication, chunk_size_log2, chunks`): the snapshot bytes are unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "wire::InodeIn")]
pub struct Inode {
    pub parent: InodeId,
    pub mtime_ms: u64,
    pub kind: InodeKind,
    /// Owner, group and mode: serialized apart from the inode (snapshot format 4).
    pub attrs: Attrs,
    /// Directories: the replication of new files below (0: as the parent's, or the cluster
    /// default at the root). Files: 0. Serialized apart (snapshot format 5).
    pub dir_replication: u8,
    /// Files: the file's replication. Directories: 0.
    pub replication: u8,
    /// Files: log2 of the file's chunk size. Directories: 0.
    pub chunk_size_log2: u8,
}

impl Inode {
    /// A file's chunk size (meaningful for files only).
    pub fn chunk_size_bytes(&self) -> u64 {
        1u64 << self.chunk_size_log2
    }

    /// The file's length and chunks, chunk size and replication, if this is a file.
    pub fn file(&self) -> Option<(&FileMeta, u64, u8)> {
        match &self.kind {
            InodeKind::File(f) => Some((f, self.chunk_size_bytes(), self.replication)),
            InodeKind::Dir(_) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InodeKind {
    /// Entries by name (ordered, for paged listing).
    /// Boxed: a file's inode is the common one, and the box keeps the kind at 16 bytes.
    /// Decoded in one bulk build (`entries.rs`).
    Dir(Box<Entries>),
    File(FileMeta),
}

/// A file's length and chunks (its replication and chunk size are the inode's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub length: u64,
    /// One pointer (empty: no allocation); shrunk to fit when the file completes.
    pub chunks: ThinVec<ChunkId>,
}

impl Serialize for Inode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        wire::InodeOut::from(self).serialize(s)
    }
}

/// The inode's serialized shape (that of the fields as they were before the file layout moved
/// into the inode): borrowed to write, owned to read.
mod wire {
    use super::*;

    #[derive(Serialize)]
    #[serde(rename = "Inode")]
    pub struct InodeOut<'a> {
        parent: InodeId,
        mtime_ms: u64,
        kind: KindOut<'a>,
    }

    #[derive(Serialize)]
    #[serde(rename = "InodeKind")]
    enum KindOut<'a> {
        Dir(&'a Entries),
        File(FileOut<'a>),
    }

    #[derive(Serialize)]
    #[serde(rename = "FileMeta")]
    struct FileOut<'a> {
        length: u64,
        replication: u8,
        chunk_size_log2: u8,
        chunks: &'a ThinVec<ChunkId>,
    }

    impl<'a> From<&'a Inode> for InodeOut<'a> {
        fn from(i: &'a Inode) -> Self {
            InodeOut {
                parent: i.parent,
                mtime_ms: i.mtime_ms,
                kind: match &i.kind {
                    InodeKind::Dir(e) => KindOut::Dir(e),
                    InodeKind::File(f) => KindOut::File(FileOut {
                        length: f.length,
                        replication: i.replication,
                        chunk_size_log2: i.chunk_size_log2,
                        chunks: &f.chunks,
                    }),
                },
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(rename = "Inode")]
    pub struct InodeIn {
        parent: InodeId,
        mtime_ms: u64,
        kind: KindIn,
    }

    #[derive(Deserialize)]
    #[serde(rename = "InodeKind")]
    enum KindIn {
        #[serde(deserialize_with = "super::super::entries::deserialize_dir")]
        Dir(Box<Entries>),
        File(FileIn),
    }

    #[derive(Deserialize)]
    #[serde(rename = "FileMeta")]
    struct FileIn {
        length: u64,
        replication: u8,
        chunk_size_log2: u8,
        chunks: ThinVec<ChunkId>,
    }

    impl From<InodeIn> for Inode {
        /// Attributes and the directory default are decoded apart (their own sections).
        fn from(i: InodeIn) -> Self {
            let (kind, replication, chunk_size_log2) = match i.kind {
                KindIn::Dir(e) => (InodeKind::Dir(e), 0, 0),
                KindIn::File(f) => (
                    InodeKind::File(FileMeta {
                        length: f.length,
                        chunks: f.chunks,
                    }),
                    f.replication,
                    f.chunk_size_log2,
                ),
            };
            Inode {
                parent: i.parent,
                mtime_ms: i.mtime_ms,
                kind,
                attrs: Attrs::default(),
                dir_replication: 0,
                replication,
                chunk_size_log2,
            }
        }
    }
}

/// The writer side of a file under construction (not linked into any directory yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub parent: InodeId,
    pub name: Name,
    pub holder: Holder,
    pub expires_ms: u64,
    pub overwrite: bool,
}

/// A chunk's record: 16 bytes (24 with its key in the chunk map). The version is held in 32
/// bits (a chunk whose version would pass `u32::MAX` is given a new id instead: see
/// `allocate_chunk`) and serialized as the `ChunkVersion` it always was (postcard varints:
/// the snapshot bytes are unchanged).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ChunkMetaWire", try_from = "ChunkMetaWire")]
pub struct ChunkMeta {
    pub file: InodeId,
    pub index: u32,
    ver: u32,
}

impl ChunkMeta {
    /// Version 1 of chunk `index` of `file`.
    pub fn new(file: InodeId, index: u32) -> Self {
        ChunkMeta {
            file,
            index,
            ver: 1,
        }
    }

    pub fn version(&self) -> ChunkVersion {
        ChunkVersion(u64::from(self.ver))
    }

    /// Moves to the next version; false (unchanged) when this id has used up its versions.
    pub fn bump(&mut self) -> bool {
        match self.ver.checked_add(1) {
            Some(v) => {
                self.ver = v;
                true
            }
            None => false,
        }
    }

    #[cfg(test)]
    pub(crate) fn with_version(mut self, ver: u32) -> Self {
        self.ver = ver;
        self
    }
}

/// [`ChunkMeta`] as snapshots hold it (field order and types of the original record).
#[derive(Serialize, Deserialize)]
struct ChunkMetaWire {
    version: ChunkVersion,
    file: InodeId,
    index: u32,
}

impl From<ChunkMeta> for ChunkMetaWire {
    fn from(m: ChunkMeta) -> Self {
        ChunkMetaWire {
            version: m.version(),
            file: m.file,
            index: m.index,
        }
    }
}

impl TryFrom<ChunkMetaWire> for ChunkMeta {
    type Error = String;

    fn try_from(w: ChunkMetaWire) -> Result<Self, String> {
        let ver = u32::try_from(w.version.get())
            .map_err(|_| format!("chunk version {} past u32::MAX", w.version))?;
        Ok(ChunkMeta {
            file: w.file,
            index: w.index,
            ver,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub uuid: String,
    pub address: String,
    pub host: String,
    pub rack: Option<String>,
    pub capacity_bytes: u64,
    pub registered_ms: u64,
    pub draining: bool,
}

/// What `stat` says about a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub inode: InodeId,
    pub is_dir: bool,
    pub length: u64,
    pub mtime_ms: u64,
    pub replication: u8,
    pub chunk_size_bytes: u64,
    pub chunks: u32,
    pub entries: u64,
    pub owner: String,
    pub group: String,
    pub mode: u16,
}

#[cfg(test)]
mod inode_tests {
    use super::*;

    /// The inode as it was serialized before a file's replication and chunk size moved into
    /// it (derived): the bytes must not change.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct OldInode {
        parent: InodeId,
        mtime_ms: u64,
        kind: OldKind,
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum OldKind {
        Dir(Box<Entries>),
        File(OldFile),
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct OldFile {
        length: u64,
        replication: u8,
        chunk_size_log2: u8,
        chunks: ThinVec<ChunkId>,
    }

    #[test]
    fn an_inode_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Inode>(), 48);
    }

    #[test]
    fn inodes_serialize_as_before() {
        let old_file = OldInode {
            parent: InodeId(7),
            mtime_ms: 1_700_000_000_123,
            kind: OldKind::File(OldFile {
                length: 300 << 20,
                replication: 2,
                chunk_size_log2: 26,
                chunks: ThinVec::from(vec![ChunkId(9), ChunkId(1 << 40)]),
            }),
        };
        let mut entries = Entries::new();
        entries.insert(Name::new("a"), InodeId(3));
        entries.insert(Name::new("bb"), InodeId(4));
        let old_dir = OldInode {
            parent: InodeId(1),
            mtime_ms: 5,
            kind: OldKind::Dir(Box::new(entries.clone())),
        };
        let file = Inode {
            parent: InodeId(7),
            mtime_ms: 1_700_000_000_123,
            kind: InodeKind::File(FileMeta {
                length: 300 << 20,
                chunks: ThinVec::from(vec![ChunkId(9), ChunkId(1 << 40)]),
            }),
            attrs: Attrs::default(),
            dir_replication: 0,
            replication: 2,
            chunk_size_log2: 26,
        };
        let dir = Inode {
            parent: InodeId(1),
            mtime_ms: 5,
            kind: InodeKind::Dir(Box::new(entries)),
            attrs: Attrs::default(),
            dir_replication: 0,
            replication: 0,
            chunk_size_log2: 0,
        };
        for (old, new) in [(&old_file, &file), (&old_dir, &dir)] {
            let bytes = postcard::to_allocvec(old).expect("encode");
            assert_eq!(postcard::to_allocvec(new).expect("encode"), bytes);
            let back: Inode = postcard::from_bytes(&bytes).expect("decode");
            assert_eq!(&back, new);
            assert_eq!(
                back.file().map(|(_, cs, r)| (cs, r)),
                new.file().map(|(_, cs, r)| (cs, r))
            );
        }
        assert_eq!(file.file().map(|(_, cs, r)| (cs, r)), Some((1 << 26, 2)));
        assert!(dir.file().is_none());
    }
}
