//! Shale's master.
//!
//! * [`path`]: path validation (pure);
//! * [`sm`]: the state machine — namespace, files under construction, chunk map, garbage,
//!   chunkserver registry — changed only by `MetaState::apply` (pure, deterministic);
//! * [`placement`]: choosing chunkservers for a chunk (pure);
//! * [`snapshot`]: the versioned, checksummed snapshot format of the state.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod error;
pub mod path;
pub mod placement;
pub mod raft;
pub mod server;
pub mod sm;
pub mod snapshot;

pub use shale_raftlog as raftlog;
