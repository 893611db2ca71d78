//! The chunk store's one error enum. Every variant says what was wrong in its message; the
//! chunkserver maps it to a `tonic::Status` in one place.
use shale_proto::{ChunkId, ChunkVersion};
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("{0} not found")]
    NotFound(ChunkId),
    #[error("{chunk}: stored version is {have}, request names {want}")]
    WrongVersion {
        chunk: ChunkId,
        have: ChunkVersion,
        want: ChunkVersion,
    },
    #[error("{chunk}: cannot create {want}, the store already holds {have} (not newer)")]
    VersionNotNewer {
        chunk: ChunkId,
        have: ChunkVersion,
        want: ChunkVersion,
    },
    #[error("{chunk}: version {version} is already being written")]
    AlreadyOpen {
        chunk: ChunkId,
        version: ChunkVersion,
    },
    #[error("{0} is already sealed (sealed chunks are immutable)")]
    AlreadySealed(ChunkId),
    #[error("{0} is still being written (not sealed)")]
    NotSealed(ChunkId),
    #[error("{chunk}: write at offset {got}, but {expected} bytes are written (writes append)")]
    BadOffset {
        chunk: ChunkId,
        expected: u64,
        got: u64,
    },
    #[error("{chunk}: write would grow the chunk to {size_bytes} bytes, over the {max_bytes}-byte chunk size")]
    TooLarge {
        chunk: ChunkId,
        size_bytes: u64,
        max_bytes: u64,
    },
    #[error("{chunk}: range {offset}+{length} is past the end ({chunk_len} bytes)")]
    ReadPastEnd {
        chunk: ChunkId,
        offset: u64,
        length: u64,
        chunk_len: u64,
    },
    #[error("{chunk}: checksum mismatch in block {block}; replica quarantined")]
    ChecksumMismatch { chunk: ChunkId, block: u64 },
    #[error(
        "no space: {need_bytes} bytes needed, {free_bytes} free; the partial chunk was removed"
    )]
    NoSpace { need_bytes: u64, free_bytes: u64 },
    #[error("{chunk}: write failed earlier ({why}); the partial chunk was removed")]
    Failed { chunk: ChunkId, why: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("store directory {path} is unusable: {why}")]
    BadStore { path: String, why: String },
}

impl ChunkError {
    pub(crate) fn io(op: &'static str, path: impl Into<String>, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return ChunkError::NoSpace {
                need_bytes: 0,
                free_bytes: 0,
            };
        }
        ChunkError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = ChunkError> = std::result::Result<T, E>;
