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

/// Replication reads stop at the byte limit (at least one entry), from the cache and from
/// segment files alike, and never skip or reorder entries.
#[tokio::test]
async fn limited_reads_stop_at_the_byte_limit() {
    use openraft::{CommittedLeaderId, RaftLogReader};
    for cache in [1 << 20, 0] {
        let dir = tempfile::tempdir().expect("tmp");
        let config = LogConfig {
            cache_bytes_max: cache,
            ..LogConfig::default()
        };
        let (log, _) = RaftLog::open(dir.path(), config).expect("open");
        let log = Arc::new(log);
        let mut sizes = Vec::new();
        for i in 1..=50u64 {
            let e = Entry::<Tc> {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                payload: EntryPayload::Normal("x".repeat(40 + i as usize * 3)),
            };
            let b = bytes::Bytes::from(postcard::to_allocvec(&e).expect("encode"));
            sizes.push(b.len());
            let (tx, rx) = tokio::sync::oneshot::channel();
            let done = Box::new(move |r| {
                let _ = tx.send(r);
            });
            log.append(vec![(i, b)], done).await.expect("append");
            rx.await.expect("done").expect("durable");
        }
        let mut unlimited = LogStore::<Tc>::new(log.clone());
        assert_eq!(
            unlimited
                .limited_get_log_entries(1, 51)
                .await
                .expect("read")
                .len(),
            50
        );
        for limit in [1, 100, 500, 2000] {
            let mut store = LogStore::<Tc>::new(log.clone()).with_read_limit(limit);
            for start in [1u64, 7, 50] {
                let got = store
                    .limited_get_log_entries(start, 51)
                    .await
                    .expect("read");
                let idx: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
                let want_n = {
                    let (mut n, mut total) = (0, 0);
                    for s in &sizes[start as usize - 1..] {
                        total += s;
                        if n > 0 && total > limit {
                            break;
                        }
                        n += 1;
                    }
                    n
                };
                assert_eq!(idx, (start..start + want_n as u64).collect::<Vec<_>>());
            }
            // An empty range reads nothing; a one-entry range reads that entry.
            assert!(store
                .limited_get_log_entries(9, 9)
                .await
                .expect("read")
                .is_empty());
            assert_eq!(
                store
                    .limited_get_log_entries(9, 10)
                    .await
                    .expect("read")
                    .len(),
                1
            );
        }
    }
}

#[test]
fn openraft_storage_suite_with_a_read_limit() -> Result<(), StorageError<NodeId>> {
    struct Limited;
    impl StoreBuilder<Tc, LogStore<Tc>, Sm, tempfile::TempDir> for Limited {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore<Tc>, Sm), StorageError<NodeId>> {
            let dir = tempfile::tempdir().map_err(io_err)?;
            let (log, _) = RaftLog::open(dir.path(), LogConfig::default()).map_err(io_err)?;
            Ok((
                dir,
                LogStore::new(Arc::new(log)).with_read_limit(64),
                Sm::default(),
            ))
        }
    }
    Suite::test_all(Limited)
}
