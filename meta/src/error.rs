//! The master's error: why a command or query was refused. Part of the Raft log (a refused
//! command's reply is recorded), so change only with a format version bump.
use serde::{Deserialize, Serialize};
use shale_proto::InodeId;

/// Why a command or query was refused. Applying a refused command changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetaError {
    #[error("invalid path {path:?}: {why}")]
    InvalidPath { path: String, why: String },
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("{0}: is a directory")]
    IsADirectory(String),
    #[error("{0}: directory not empty")]
    NotEmpty(String),
    #[error("cannot move {src} into its own subtree {dst}")]
    IntoOwnSubtree { src: String, dst: String },
    #[error("the root directory cannot be renamed or deleted")]
    Root,
    #[error("{0}: no such file under construction")]
    UnknownFile(InodeId),
    #[error("{file}: {why}")]
    Lease { file: InodeId, why: String },
    #[error("{file}: bad chunk index {index}: {why}")]
    ChunkIndex {
        file: InodeId,
        index: u32,
        why: String,
    },
    #[error("{file}: bad length {length}: {why}")]
    Length {
        file: InodeId,
        length: u64,
        why: String,
    },
    #[error("bad argument: {0}")]
    BadArgument(String),
    #[error("request {seq} of client {client:x} is too old to tell whether it took effect (its reply was dropped); do not retry it")]
    StaleRequest { client: u64, seq: u64 },
    #[error("chunkserver {0} is not registered")]
    UnknownServer(u64),
    #[error("{0}")]
    Full(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    QuotaExceeded(String),
    /// A record's chunk takes no more records (fenced, or its replicas changed): append it
    /// again on the file's tail.
    #[error("{0}")]
    StaleChunk(String),
    #[error("{0} is sealed: it takes no more records")]
    Sealed(String),
}
