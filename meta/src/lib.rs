//! Shale's master: namespace and chunk map as a Raft state machine (arrives with the
//! replicated-master issue). Today it only re-exports the Raft log it will be built on.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub use shale_raftlog as raftlog;
