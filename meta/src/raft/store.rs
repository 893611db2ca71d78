//! The master state as openraft's state machine, with snapshots kept on disk.
//!
//! The state itself lives in memory; what makes it durable is the Raft log plus the latest
//! snapshot file (`<dir>/snapshot`), written with the durability recipe (temp, fsync, rename,
//! fsync dir) whenever a snapshot is built or installed. At start the snapshot is loaded and
//! openraft re-applies the log after it.
//!
//! Snapshot file: magic `SHALESMF`, format version 1, crc32c of the rest, then the length and
//! postcard bytes of openraft's `SnapshotMeta`, then the state (`crate::snapshot` format, with
//! its own header and crc).
#![allow(clippy::result_large_err)]
use super::types::{LogId, Node, NodeId, Replies, StorageError, TypeConfig};
use crate::sm::{MetaState, Reply};
use crate::snapshot;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

const FILE_MAGIC: &[u8; 8] = b"SHALESMF";
const FILE_VERSION: u16 = 1;

pub struct Inner {
    pub state: MetaState,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership<NodeId, Node>,
    snapshot: Option<(SnapshotMeta<NodeId, Node>, Vec<u8>)>,
    snapshots_built: u64,
}

/// Shared handle: the service reads `inner` for queries; openraft drives the rest.
#[derive(Clone)]
pub struct SmStore {
    pub inner: Arc<RwLock<Inner>>,
    dir: PathBuf,
    /// The last log id of the snapshot file on disk, held while it is written: a snapshot
    /// being built (on openraft's builder task) and one being installed (on the state-machine
    /// task) used to write the same temp file at once — one rename then failed with ENOENT and
    /// openraft shut the master's Raft down for good (seen in `ops/tests/masters.rs`: a
    /// restarted master "did not catch up", its Raft "shutdown") — and an older snapshot could
    /// land after a newer one. Now writes are one at a time, and never go backwards.
    persisted: Arc<std::sync::Mutex<Option<LogId>>>,
}

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

fn encode_file(meta: &SnapshotMeta<NodeId, Node>, data: &[u8]) -> Result<Vec<u8>, StorageError> {
    let m = postcard::to_allocvec(meta).map_err(io)?;
    let mut body = Vec::with_capacity(8 + m.len() + data.len());
    body.extend_from_slice(&(m.len() as u64).to_le_bytes());
    body.extend_from_slice(&m);
    body.extend_from_slice(data);
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(FILE_MAGIC);
    out.extend_from_slice(&FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

type Loaded = (SnapshotMeta<NodeId, Node>, Vec<u8>, MetaState);

fn decode_file(b: &[u8]) -> Result<Loaded, String> {
    if b.len() < 24 || &b[..8] != FILE_MAGIC {
        return Err("not a Shale snapshot file".into());
    }
    let v = u16::from_le_bytes([b[8], b[9]]);
    if v != FILE_VERSION {
        return Err(format!("unsupported snapshot file version {v}"));
    }
    let crc = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
    let body = &b[16..];
    if crc32c::crc32c(body) != crc {
        return Err("snapshot file checksum mismatch".into());
    }
    let mut l = [0u8; 8];
    l.copy_from_slice(&body[..8]);
    let mlen = usize::try_from(u64::from_le_bytes(l)).map_err(|e| e.to_string())?;
    if 8 + mlen > body.len() {
        return Err("snapshot file cut short".into());
    }
    let meta: SnapshotMeta<NodeId, Node> =
        postcard::from_bytes(&body[8..8 + mlen]).map_err(|e| e.to_string())?;
    let data = body[8 + mlen..].to_vec();
    let state = snapshot::decode(&data).map_err(|e| e.to_string())?;
    Ok((meta, data, state))
}

impl SmStore {
    /// Opens the state machine in `dir`, loading the latest snapshot if there is one.
    pub fn open(dir: &Path, chunk_size_bytes: u64, replication: u8) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("snapshot");
        let (state, last_applied, membership, snap) = match std::fs::read(&path) {
            Ok(b) => {
                let (meta, data, state) =
                    decode_file(&b).map_err(|e| format!("{}: {e}", path.display()))?;
                tracing::info!(last = ?meta.last_log_id, "loaded master snapshot");
                (
                    state,
                    meta.last_log_id,
                    meta.last_membership.clone(),
                    Some((meta, data)),
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                MetaState::new(chunk_size_bytes, replication).map_err(|e| e.to_string())?,
                None,
                StoredMembership::default(),
                None,
            ),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let on_disk = snap.as_ref().and_then(|(m, _)| m.last_log_id);
        Ok(SmStore {
            inner: Arc::new(RwLock::new(Inner {
                state,
                last_applied,
                membership,
                snapshot: snap,
                snapshots_built: 0,
            })),
            dir: dir.to_path_buf(),
            persisted: Arc::new(std::sync::Mutex::new(on_disk)),
        })
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the snapshot file, unless the one on disk is newer; whether it wrote.
    fn persist(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        data: &[u8],
    ) -> Result<bool, StorageError> {
        let file = encode_file(meta, data)?;
        let mut on_disk = self.persisted.lock().unwrap_or_else(|p| p.into_inner());
        if on_disk.is_some() && meta.last_log_id < *on_disk {
            return Ok(false);
        }
        shale_proto::durable::write_file(&self.dir, "snapshot", &file).map_err(io)?;
        *on_disk = meta.last_log_id;
        Ok(true)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SmStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Encoding and writing the file run off the async runtime (whose few workers carry
        // heartbeats and client calls), and encoding holds only a read lock: queries, reports
        // and the healer go on meanwhile; only applies wait for it.
        let store = self.clone();
        let (meta, data) = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
            let n = {
                let mut g = store.write();
                g.snapshots_built += 1;
                g.snapshots_built
            };
            let (meta, data) = {
                let g = store.read();
                let data = snapshot::encode(&g.state).map_err(io)?;
                let meta = SnapshotMeta {
                    last_log_id: g.last_applied,
                    last_membership: g.membership.clone(),
                    snapshot_id: format!("{}-{n}", g.last_applied.map_or(0, |l| l.index)),
                };
                (meta, data)
            };
            store.persist(&meta, &data)?;
            Ok((meta, data))
        })
        .await
        .map_err(io)??;
        {
            // Never replace a newer snapshot (one installed meanwhile) with this one.
            let mut g = self.write();
            let current = g.snapshot.as_ref().and_then(|(m, _)| m.last_log_id);
            if g.snapshot.is_none() || meta.last_log_id >= current {
                g.snapshot = Some((meta.clone(), data.clone()));
            }
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for SmStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, Node>), StorageError> {
        let g = self.read();
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Replies>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut g = self.write();
        let mut out = Vec::new();
        for e in entries {
            g.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(Replies::default()),
                EntryPayload::Normal(req) => {
                    let state = &mut g.state;
                    let r: Vec<Reply> = req
                        .cmds
                        .iter()
                        .map(|c| state.apply(c, req.time_ms))
                        .collect();
                    out.push(Replies(r));
                }
                EntryPayload::Membership(m) => {
                    g.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Replies::default());
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state = snapshot::decode(&data).map_err(io)?;
        self.persist(meta, &data)?;
        let mut g = self.write();
        g.state = state;
        g.last_applied = meta.last_log_id;
        g.membership = meta.last_membership.clone();
        g.snapshot = Some((meta.clone(), data));
        tracing::info!(last = ?meta.last_log_id, "installed master snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.read().snapshot.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
