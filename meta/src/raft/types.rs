//! openraft's type configuration for the master group.
use crate::sm::{Command, Reply};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// A log entry's payload: a command and the log time the leader stamped on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub cmd: Command,
    pub time_ms: u64,
}

openraft::declare_raft_types!(
    /// The master group's Raft types.
    pub TypeConfig:
        D = Request,
        R = Reply,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type MasterRaft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
