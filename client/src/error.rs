//! The client's one error type: each variant is a kind a caller can match on (the enum is
//! `#[non_exhaustive]`: new kinds may come), and [`ClientError::is_retryable`] says whether trying
//! the same call again later can succeed.
use tonic::{Code, Status};

/// Why a call failed.
///
/// ```
/// use shale_client::ClientError;
/// let e = ClientError::NotFound("/a: no such file or directory".into());
/// assert!(!e.is_retryable());
/// assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::NotFound);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The path (or chunk, or server) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The path exists (and the call would not replace it).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is malformed: a bad path, address, size or option.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is well formed but the state does not allow it (e.g. the path is a directory,
    /// or another client is writing it).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The cluster does not know who the caller is (no client certificate, or one it cannot
    /// use).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// No space (or another limit) left in the cluster.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A concurrent change made the call moot (e.g. a record's chunk was fenced before its
    /// commit): the operation as a whole may be tried again.
    #[error("aborted: {0}")]
    Aborted(String),
    /// No master (or no leader) answered in time, or the leader hears from no chunkserver that
    /// can take a replica: the cluster may be down, electing, or cut off.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A chunk could not be written to any pipeline after every attempt.
    #[error("chunk {index} of {path}: write failed after {attempts} attempts: {last}")]
    ChunkWrite {
        /// The file being written.
        path: String,
        /// The chunk's index in the file.
        index: u32,
        /// How many allocations were tried.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// No replica of a chunk could be read whole and verified.
    #[error("chunk {index} of {path}: no replica could be read: {why}")]
    ChunkRead {
        /// The file being read.
        path: String,
        /// The chunk's index in the file.
        index: u32,
        /// Every replica's failure.
        why: String,
    },
    /// Reading the source or writing the destination failed locally.
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else a server reported.
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// Whether the same call may succeed if tried again later (the cluster was unreachable, a
    /// leader was being elected, or every replica failed for now). The client already retried
    /// these for its configured time before reporting them.
    ///
    /// ```
    /// use shale_client::ClientError;
    /// assert!(ClientError::Unavailable("no leader".into()).is_retryable());
    /// assert!(!ClientError::AlreadyExists("/a".into()).is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Unavailable(_)
                | ClientError::ChunkWrite { .. }
                | ClientError::ChunkRead { .. }
                | ClientError::ResourceExhausted(_)
        )
    }
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        // A transport failure's reason (a TLS alert, a refused connection) is in its sources.
        let mut m = s.message().to_string();
        let mut src = std::error::Error::source(&s);
        while let Some(e) = src {
            let e_text = e.to_string();
            if !m.contains(&e_text) {
                m = format!("{m}: {e_text}");
            }
            src = e.source();
        }
        match s.code() {
            Code::NotFound => ClientError::NotFound(m),
            Code::AlreadyExists => ClientError::AlreadyExists(m),
            Code::InvalidArgument | Code::OutOfRange => ClientError::InvalidArgument(m),
            Code::FailedPrecondition => ClientError::FailedPrecondition(m),
            Code::PermissionDenied => ClientError::PermissionDenied(m),
            Code::Unauthenticated => ClientError::Unauthenticated(m),
            Code::ResourceExhausted => ClientError::ResourceExhausted(m),
            Code::Aborted => ClientError::Aborted(m),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                ClientError::Unavailable(m)
            }
            _ => ClientError::Other(format!("{:?}: {m}", s.code())),
        }
    }
}

impl From<ClientError> for std::io::Error {
    fn from(e: ClientError) -> Self {
        use std::io::ErrorKind as K;
        let kind = match &e {
            ClientError::Io(io) => return std::io::Error::new(io.kind(), e),
            ClientError::NotFound(_) => K::NotFound,
            ClientError::AlreadyExists(_) => K::AlreadyExists,
            ClientError::InvalidArgument(_) => K::InvalidInput,
            ClientError::PermissionDenied(_) | ClientError::Unauthenticated(_) => {
                K::PermissionDenied
            }
            ClientError::ResourceExhausted(_) => K::StorageFull,
            ClientError::Unavailable(_) => K::TimedOut,
            _ => K::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// A result with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
