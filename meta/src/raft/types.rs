//! openraft's type configuration for the master group.
use crate::sm::{Command, Reply};
use serde::{Deserialize, Serialize};

/// A log entry's payload: commands proposed together (applied in order) and the log time the
/// leader stamped on them. Batching concurrent proposals into one entry is what lets the group
/// commit many changes per fsync: openraft 0.9 waits for each append's flush before the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub cmds: Vec<Command>,
    pub time_ms: u64,
}

/// One reply per command of a [`Request`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replies(pub Vec<Reply>);

openraft::declare_raft_types!(
    /// The master group's Raft types.
    pub TypeConfig:
        D = Request,
        R = Replies,
        // The snapshot file itself, header included: sent from it and received into one
        // (a 10 M-file snapshot is ≈ 400 MB; held in memory, every try to send it read it
        // again, and a receiver held all of it before it decoded a byte).
        SnapshotData = tokio::fs::File,
);

pub type MasterRaft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
