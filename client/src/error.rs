//! The client's one error type.
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("no master answered: {0}")]
    Unavailable(String),
    #[error("chunk {index} of {path}: write failed after {attempts} attempts: {last}")]
    ChunkWrite {
        path: String,
        index: u32,
        attempts: u32,
        last: String,
    },
    #[error("chunk {index} of {path}: no replica could be read: {why}")]
    ChunkRead {
        path: String,
        index: u32,
        why: String,
    },
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        let m = s.message().to_string();
        match s.code() {
            Code::NotFound => ClientError::NotFound(m),
            Code::AlreadyExists => ClientError::AlreadyExists(m),
            Code::InvalidArgument | Code::OutOfRange => ClientError::InvalidArgument(m),
            Code::FailedPrecondition => ClientError::FailedPrecondition(m),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                ClientError::Unavailable(m)
            }
            _ => ClientError::Other(format!("{:?}: {m}", s.code())),
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
