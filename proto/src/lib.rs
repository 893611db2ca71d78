//! Shale's wire protocol.
//!
//! * [`pb`]: the prost/tonic code generated from `proto/*.proto` (built with protox, so no
//!   system `protoc` is needed).
//! * [`ids`]: typed ids (`ChunkId`, `ChunkVersion`, `NodeId`, `InodeId`) used everywhere in the
//!   domain code.
//! * [`convert`]: checked conversions from wire messages to domain types. prost types stay at the
//!   edge: a missing or out-of-range field becomes a [`WireError`] that names the field.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod bufpool;
pub mod channels;
pub mod codec;
pub mod convert;
pub mod dataport;
pub mod dirlock;
pub mod durable;
pub mod fifo;
pub mod ids;

/// All generated code, nested by package (`shale::chunk::v1`).
#[allow(clippy::all, missing_docs)]
pub mod generated {
    include!(concat!(env!("OUT_DIR"), "/protos.rs"));
}

/// The chunk service protocol, version 1.
pub use generated::shale::chunk::v1 as pb;
/// The data port's headers (see `docs/data-port.md`).
pub use generated::shale::data::v1 as datapb;
/// The master and Raft protocols, version 1.
pub use generated::shale::meta::v1 as metapb;

pub use convert::{ChunkRef, ReadRange, WireError, WriteHeader, READ_LEN_MAX_BYTES};
pub use ids::{ChunkId, ChunkVersion, InodeId, NodeId};

/// Response metadata a master sets on a failure that came after it handed the change to Raft
/// (value [`OUTCOME_UNKNOWN`]): the change may have taken effect, so a retry that finds it done
/// is the first call's success.
pub const OUTCOME_HEADER: &str = "shale-outcome";
/// The value of [`OUTCOME_HEADER`]: whether the call took effect is unknown.
pub const OUTCOME_UNKNOWN: &str = "unknown";
