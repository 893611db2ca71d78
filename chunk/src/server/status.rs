//! ChunkError → gRPC status, in one place.
use crate::error::ChunkError;
use tonic::Status;

/// Response metadata naming the replica that failed a pipeline write.
pub const FAILED_NODE: &str = "shale-failed-node";

pub fn status_of(e: &ChunkError) -> Status {
    let msg = e.to_string();
    match e {
        ChunkError::NotFound(_) => Status::not_found(msg),
        ChunkError::WrongVersion { .. } | ChunkError::VersionNotNewer { .. } => {
            Status::failed_precondition(format!("stale version: {msg}"))
        }
        ChunkError::AlreadyOpen { .. } | ChunkError::AlreadySealed(_) => {
            Status::already_exists(msg)
        }
        ChunkError::NotSealed(_) => Status::unavailable(msg),
        ChunkError::BadOffset { .. } | ChunkError::TooLarge { .. } => Status::invalid_argument(msg),
        ChunkError::ReadPastEnd { .. } => Status::out_of_range(msg),
        ChunkError::ChecksumMismatch { .. } => Status::data_loss(msg),
        ChunkError::NoSpace { .. } => Status::resource_exhausted(msg),
        ChunkError::Failed { .. } | ChunkError::Io { .. } | ChunkError::BadStore { .. } => {
            Status::internal(msg)
        }
    }
}

/// `status` marked as caused by replica `node` (unless a replica further down already is).
pub fn blame(mut status: Status, node: u64) -> Status {
    if !status.metadata().contains_key(FAILED_NODE) {
        if let Ok(v) = node.to_string().parse() {
            status.metadata_mut().insert(FAILED_NODE, v);
        }
    }
    status
}
