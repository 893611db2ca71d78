//! The raft log's one error enum.
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// Damage before the tail: a synced record no longer verifies. Never repaired silently.
    #[error("raft log corrupt in segment {segment} at offset {offset}: {why} (not a torn tail: refusing to drop synced records)")]
    Corrupt {
        segment: u64,
        offset: u64,
        why: String,
    },
    #[error("append of index {got} does not follow the log (expected {expected})")]
    NotContiguous { expected: String, got: u64 },
    #[error("entry {index} is {len} bytes, over the {max}-byte limit")]
    TooLarge { index: u64, len: usize, max: usize },
    #[error("log entry {0} is not in the log")]
    Missing(u64),
    #[error("the log stopped after an earlier I/O failure: {0}")]
    Stopped(String),
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl std::fmt::Display, source: io::Error) -> Self {
        LogError::Io {
            op,
            path: path.to_string(),
            source,
        }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
