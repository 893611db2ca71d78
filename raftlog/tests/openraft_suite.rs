//! openraft's storage conformance suite (`Suite::test_all`) against `LogStore`, with a small
//! in-memory state machine (the suite tests a log store and a state machine together).
// openraft's StorageError is large; the suite returns it.
#![allow(clippy::result_large_err)]
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use shale_raftlog::{LogConfig, LogStore, RaftLog};
use std::io::Cursor;
use std::sync::{Arc, Mutex};

openraft::declare_raft_types!(
    pub Tc:
        D = String,
        R = String,
);

type NodeId = u64;

#[derive(Clone, Default, Serialize, Deserialize)]
struct SmData {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    values: Vec<String>,
}

type StoredSnapshot = (SnapshotMeta<NodeId, BasicNode>, Vec<u8>);

#[derive(Clone, Default)]
struct Sm {
    data: Arc<Mutex<SmData>>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
}

fn io_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    openraft::StorageIOError::read_state_machine(&std::io::Error::other(e.to_string())).into()
}

impl RaftSnapshotBuilder<Tc> for Sm {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Tc>, StorageError<NodeId>> {
        let d = self.data.lock().expect("lock").clone();
        let bytes = postcard::to_allocvec(&d).map_err(io_err)?;
        let meta = SnapshotMeta {
            last_log_id: d.last_applied,
            last_membership: d.membership.clone(),
            snapshot_id: format!("snap-{:?}", d.last_applied),
        };
        *self.snapshot.lock().expect("lock") = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<Tc> for Sm {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let d = self.data.lock().expect("lock");
        Ok((d.last_applied, d.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<String>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<Tc>> + Send,
        I::IntoIter: Send,
    {
        let mut d = self.data.lock().expect("lock");
        let mut out = Vec::new();
        for e in entries {
            d.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(String::new()),
                EntryPayload::Normal(v) => {
                    d.values.push(v.clone());
                    out.push(v);
                }
                EntryPayload::Membership(m) => {
                    d.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(String::new());
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let mut d: SmData = postcard::from_bytes(&bytes).map_err(io_err)?;
        d.last_applied = meta.last_log_id;
        d.membership = meta.last_membership.clone();
        *self.data.lock().expect("lock") = d;
        *self.snapshot.lock().expect("lock") = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Tc>>, StorageError<NodeId>> {
        Ok(self
            .snapshot
            .lock()
            .expect("lock")
            .clone()
            .map(|(meta, bytes)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(bytes)),
            }))
    }
}

struct Builder {
    /// Small segments and cache so the suite also exercises rotation and reads from files.
    config: LogConfig,
}

impl StoreBuilder<Tc, LogStore<Tc>, Sm, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore<Tc>, Sm), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(io_err)?;
        let (log, _) = RaftLog::open(dir.path(), self.config.clone()).map_err(io_err)?;
        Ok((dir, LogStore::new(Arc::new(log)), Sm::default()))
    }
}

#[test]
fn openraft_storage_suite_default_config() -> Result<(), StorageError<NodeId>> {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    Suite::test_all(Builder {
        config: LogConfig::default(),
    })
}

#[test]
fn openraft_storage_suite_tiny_segments_and_cache() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(Builder {
        config: LogConfig {
            segment_bytes_max: 512,
            cache_bytes_max: 64,
            queued_bytes_max: 4096,
        },
    })
}
