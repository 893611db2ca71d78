//! The master state as openraft's state machine, with snapshots kept on disk.
//!
//! The state itself lives in memory; what makes it durable is the Raft log plus the latest
//! snapshot file (`<dir>/snapshot`), written with the durability recipe (temp, fsync, rename,
//! fsync dir) whenever a snapshot is built or installed. At start the snapshot is loaded and
//! openraft re-applies the log after it.
//!
//! Snapshots are built by [`super::checkpoint`]: the state is frozen by `fork(2)` and a child
//! process writes the file, so applies wait only for the fork.
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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Commands applied between two yields to the async runtime.
const APPLY_YIELD_EVERY: u64 = 2000;

const FILE_MAGIC: &[u8; 8] = b"SHALESMF";
const FILE_VERSION: u16 = 1;

pub struct Inner {
    pub state: MetaState,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership<NodeId, Node>,
    /// The latest snapshot's meta. Its bytes live only in the file (`get_current_snapshot`
    /// reads them when a follower needs them): a master of 10 M files kept a 350 MB copy in
    /// memory, and copied it twice more under the state lock at every build.
    snapshot: Option<SnapshotMeta<NodeId, Node>>,
    /// When the last snapshot build ended, how long it took, and how long the state was
    /// locked for it (for [`super::checkpoint::due`] and `Status`).
    last_build: Option<(Instant, Duration, Duration)>,
    /// When this process finished loading the snapshot file at start, and how long that took.
    loaded: Option<(Instant, Duration)>,
    /// Commands applied by this process (a `Batch` entry counts each of its commands), and
    /// that count where the latest snapshot was taken: what [`super::checkpoint::due`] counts.
    applied_cmds: u64,
    snapshot_cmds: u64,
}

impl Inner {
    /// The index of the latest snapshot (0: none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot
            .as_ref()
            .and_then(|m| m.last_log_id)
            .map_or(0, |l| l.index)
    }

    /// Commands applied since the latest snapshot.
    pub fn changes_since_snapshot(&self) -> u64 {
        self.applied_cmds.saturating_sub(self.snapshot_cmds)
    }

    /// How long ago the last snapshot build ended, and how long it took: what paces the next
    /// one. Before this process's first build, loading the snapshot at start stands in for one
    /// (a build costs at least what a load does: it encodes and writes what the load read and
    /// decoded). Without it a master restarted at 10 M files built again (≈ 25 s in the child)
    /// as soon as `every` commands had been applied, beside the clients, ignoring the duty
    /// limit (`checkpoint::due`).
    pub fn last_build(&self) -> Option<(Duration, Duration)> {
        self.last_build
            .map(|(end, took, _)| (end, took))
            .or(self.loaded)
            .map(|(end, took)| (end.elapsed(), took))
    }

    /// The last build's time and frozen time, ms (0, 0: none since start).
    pub fn last_build_ms(&self) -> (u64, u64) {
        self.last_build.map_or((0, 0), |(_, took, frozen)| {
            (took.as_millis() as u64, frozen.as_millis() as u64)
        })
    }
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
    /// Snapshots built by this process (for unique snapshot ids).
    built: Arc<AtomicU64>,
    /// Held by a build from start to end: builds share one temp file name (this process's
    /// id), and the one at stop may run while openraft's last one has not finished.
    building: Arc<std::sync::Mutex<()>>,
    /// The snapshot format builds write (`snapshot::FORMAT_VERSION`, or 8 while a rolling
    /// upgrade still has masters of a release that reads no later one).
    format: u16,
}

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

pub(super) fn encode_file(
    meta: &SnapshotMeta<NodeId, Node>,
    data: &[u8],
) -> Result<Vec<u8>, StorageError> {
    let mut out = file_head(meta, data).map_err(io)?;
    out.extend_from_slice(data);
    Ok(out)
}

/// Everything of a snapshot file before the state bytes `data` (which follow it unchanged):
/// magic, version, the checksum of the body, the meta's length and the meta.
pub(super) fn file_head(
    meta: &SnapshotMeta<NodeId, Node>,
    data: &[u8],
) -> Result<Vec<u8>, postcard::Error> {
    let m = postcard::to_allocvec(meta)?;
    let len = (m.len() as u64).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(&len), &m), data);
    let mut out = Vec::with_capacity(24 + m.len());
    out.extend_from_slice(FILE_MAGIC);
    out.extend_from_slice(&FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&len);
    out.extend_from_slice(&m);
    Ok(out)
}

/// The fixed 24 bytes that open a snapshot file: magic and version checked; the body's
/// checksum and the meta's length.
fn parse_head(head: &[u8; 24]) -> Result<(u32, usize), String> {
    if &head[..8] != FILE_MAGIC {
        return Err("not a Shale snapshot file".into());
    }
    let v = u16::from_le_bytes([head[8], head[9]]);
    if v != FILE_VERSION {
        return Err(format!("unsupported snapshot file version {v}"));
    }
    let crc = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    let mut l = [0u8; 8];
    l.copy_from_slice(&head[16..24]);
    let mlen = usize::try_from(u64::from_le_bytes(l)).map_err(|e| e.to_string())?;
    Ok((crc, mlen))
}

/// Checks a snapshot file on disk (header and checksum) reading it in pieces; its meta and
/// size. What a build's parent checks of the file its child wrote, without holding it.
pub(super) fn check_file(path: &Path) -> Result<(SnapshotMeta<NodeId, Node>, u64), String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    check_open(&mut f)
}

/// [`check_file`] of a file open at its start.
fn check_open(f: &mut impl std::io::Read) -> Result<(SnapshotMeta<NodeId, Node>, u64), String> {
    let mut head = [0u8; 24];
    f.read_exact(&mut head)
        .map_err(|_| "snapshot file cut short".to_string())?;
    let (want, mlen) = parse_head(&head)?;
    if mlen > 64 << 20 {
        return Err("snapshot file meta too long".into());
    }
    let mut m = vec![0u8; mlen];
    f.read_exact(&mut m)
        .map_err(|_| "snapshot file cut short".to_string())?;
    let mut crc = crc32c::crc32c_append(crc32c::crc32c(&head[16..24]), &m);
    let mut size = 24 + mlen as u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        size += n as u64;
    }
    if crc != want {
        return Err("snapshot file checksum mismatch".into());
    }
    let meta = postcard::from_bytes(&m).map_err(|e| e.to_string())?;
    Ok((meta, size))
}

/// Writes `state` into a fresh master data directory `data_dir` as the snapshot of a group
/// just initialized with `members` (id → address): log id 0, the log id `initialize` gives the
/// first membership. For starting a group on a namespace built elsewhere (benchmarks at
/// millions of chunks): every member gets the same seed and an empty log; the group then
/// elects a leader as after `initialize` (openraft purges the empty log up to the snapshot).
pub fn seed(
    data_dir: &Path,
    state: &MetaState,
    members: &std::collections::BTreeMap<u64, String>,
) -> Result<(), String> {
    let dir = data_dir.join("state");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if dir.join("snapshot").exists() || data_dir.join("raft").exists() {
        return Err(format!(
            "{} is not a fresh data directory",
            data_dir.display()
        ));
    }
    let log_id = LogId::new(openraft::CommittedLeaderId::new(0, 0), 0);
    let voters: std::collections::BTreeSet<u64> = members.keys().copied().collect();
    let nodes: std::collections::BTreeMap<u64, Node> = members
        .iter()
        .map(|(id, a)| (*id, Node::new(a.clone())))
        .collect();
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(
            Some(log_id),
            openraft::Membership::new(vec![voters], nodes),
        ),
        snapshot_id: "seed".into(),
    };
    let data = snapshot::encode(state).map_err(|e| e.to_string())?;
    let file = encode_file(&meta, &data).map_err(|e| e.to_string())?;
    shale_proto::durable::write_file(&dir, "snapshot", &file).map_err(|e| e.to_string())
}

fn decode_file(b: &[u8], verify: bool) -> Result<(SnapshotMeta<NodeId, Node>, MetaState), String> {
    let (meta, data) = split_file(b)?;
    let state = if verify {
        snapshot::decode(data)
    } else {
        snapshot::decode_trusted(data)
    }
    .map_err(|e| e.to_string())?;
    Ok((meta, state))
}

/// Checks a snapshot file's header and checksum; its meta and the state bytes.
pub(super) fn split_file(b: &[u8]) -> Result<(SnapshotMeta<NodeId, Node>, &[u8]), String> {
    let Some(head) = b.first_chunk::<24>() else {
        return Err("not a Shale snapshot file".into());
    };
    let (crc, mlen) = parse_head(head)?;
    let body = &b[16..];
    if crc32c::crc32c(body) != crc {
        return Err("snapshot file checksum mismatch".into());
    }
    if 8 + mlen > body.len() {
        return Err("snapshot file cut short".into());
    }
    let meta: SnapshotMeta<NodeId, Node> =
        postcard::from_bytes(&body[8..8 + mlen]).map_err(|e| e.to_string())?;
    Ok((meta, &body[8 + mlen..]))
}

/// The temp file a snapshot build writes (one per process; a build is one at a time).
fn build_tmp(dir: &Path) -> PathBuf {
    dir.join(format!("snapshot.build-{}", std::process::id()))
}

/// Where a snapshot sent by the leader is received (then checked and renamed `snapshot`).
const RECEIVED: &str = "snapshot.received";

/// Removes temp files of builds and transfers a crash interrupted.
fn remove_stale_builds(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snapshot.build-") || name == RECEIVED {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl SmStore {
    /// Opens the state machine in `dir`, loading the latest snapshot if there is one (with
    /// every invariant checked if `verify`; otherwise its checksum and structure only).
    pub fn open(
        dir: &Path,
        chunk_size_bytes: u64,
        replication: u8,
        verify: bool,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        remove_stale_builds(dir);
        let path = dir.join("snapshot");
        let t = Instant::now();
        let (state, last_applied, membership, snap) = match std::fs::read(&path) {
            Ok(b) => {
                let (meta, state) =
                    decode_file(&b, verify).map_err(|e| format!("{}: {e}", path.display()))?;
                tracing::info!(
                    last = ?meta.last_log_id,
                    mb = b.len() >> 20,
                    ms = t.elapsed().as_millis() as u64,
                    verified = verify,
                    "loaded master snapshot"
                );
                (
                    state,
                    meta.last_log_id,
                    meta.last_membership.clone(),
                    Some(meta),
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
        let on_disk = snap.as_ref().and_then(|m| m.last_log_id);
        let loaded = snap.is_some().then(|| (Instant::now(), t.elapsed()));
        Ok(SmStore {
            inner: Arc::new(RwLock::new(Inner {
                state,
                last_applied,
                membership,
                snapshot: snap,
                last_build: None,
                loaded,
                applied_cmds: 0,
                snapshot_cmds: 0,
            })),
            dir: dir.to_path_buf(),
            persisted: Arc::new(std::sync::Mutex::new(on_disk)),
            built: Arc::new(AtomicU64::new(0)),
            building: Arc::default(),
            format: snapshot::FORMAT_VERSION,
        })
    }

    /// Makes builds write snapshot format `version` (8 or the current one; every format
    /// loads).
    pub fn with_snapshot_format(mut self, version: u16) -> Result<Self, String> {
        if !snapshot::WRITTEN.contains(&version) {
            return Err(format!(
                "snapshot format {version}: this release writes {:?}",
                snapshot::WRITTEN
            ));
        }
        self.format = version;
        Ok(self)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl SmStore {
    /// The state in a snapshot file received from the leader, checked against the `meta`
    /// it was sent with; the file becomes the snapshot on disk unless a newer one is there
    /// (then it is removed). Blocking.
    fn take_received(
        &self,
        mut file: std::fs::File,
        meta: &SnapshotMeta<NodeId, Node>,
    ) -> Result<MetaState, StorageError> {
        use std::io::{Read, Seek};
        let path = self.dir.join(RECEIVED);
        file.sync_all().map_err(io)?;
        file.rewind().map_err(io)?;
        let mut b = Vec::new();
        file.read_to_end(&mut b).map_err(io)?;
        drop(file);
        let (sent, data) = split_file(&b).map_err(|e| io(format!("received snapshot: {e}")))?;
        if sent.last_log_id != meta.last_log_id || sent.snapshot_id != meta.snapshot_id {
            return Err(io(format!(
                "received snapshot file is {} at {:?}, not {} at {:?}",
                sent.snapshot_id, sent.last_log_id, meta.snapshot_id, meta.last_log_id
            )));
        }
        let state = snapshot::decode(data).map_err(io)?;
        drop(b);
        self.keep(&path, meta.last_log_id)?;
        Ok(state)
    }

    /// Makes the checked file at `tmp`, the snapshot at `last`, the snapshot file, unless the
    /// one on disk is newer (then `tmp` is removed): one at a time, never going backwards.
    fn keep(&self, tmp: &Path, last: Option<LogId>) -> Result<(), StorageError> {
        let mut on_disk = self.persisted.lock().unwrap_or_else(|p| p.into_inner());
        if on_disk.is_some() && last < *on_disk {
            let _ = std::fs::remove_file(tmp);
        } else {
            std::fs::rename(tmp, self.dir.join("snapshot")).map_err(io)?;
            shale_proto::durable::fsync_dir(&self.dir).map_err(io)?;
            *on_disk = last;
        }
        Ok(())
    }

    /// At a clean stop (the Raft core shut down, nothing applying any more): builds a
    /// snapshot of the state as applied if at least `min_changes` commands were applied since
    /// the last one, so the next start loads it instead of replaying them (at 10 M files a
    /// replay of what a bulk load left was most of a 24–29 s restart). Blocking. The new
    /// snapshot's meta, or `None` if there was too little to save.
    pub fn snapshot_at_stop(
        &self,
        min_changes: u64,
    ) -> Result<Option<SnapshotMeta<NodeId, Node>>, StorageError> {
        {
            let g = self.read();
            if g.last_applied.is_none() || g.changes_since_snapshot() < min_changes.max(1) {
                return Ok(None);
            }
        }
        self.build_now().map(Some)
    }

    /// Builds a snapshot of the state as applied now and makes it the file on disk (unless a
    /// newer one is there). Blocking: runs on a thread of its own.
    fn build_now(&self) -> Result<SnapshotMeta<NodeId, Node>, StorageError> {
        let _one = self.building.lock().unwrap_or_else(|p| p.into_inner());
        let t = Instant::now();
        let n = self.built.fetch_add(1, Ordering::Relaxed) + 1;
        let tmp = build_tmp(&self.dir);
        let g = self.read();
        let cmds = g.applied_cmds;
        let meta = SnapshotMeta {
            last_log_id: g.last_applied,
            last_membership: g.membership.clone(),
            snapshot_id: format!("{}-{n}", g.last_applied.map_or(0, |l| l.index)),
        };
        let built = super::checkpoint::build(g, meta, &tmp, self.format).map_err(io)?;
        self.keep(&tmp, built.meta.last_log_id)?;
        let took = t.elapsed();
        metrics::histogram!(super::checkpoint::BUILD_SECONDS).record(took.as_secs_f64());
        metrics::histogram!(super::checkpoint::FROZEN_SECONDS).record(built.frozen.as_secs_f64());
        tracing::info!(
            index = built.meta.last_log_id.map_or(0, |l| l.index),
            mb = built.bytes >> 20,
            took_ms = took.as_millis() as u64,
            frozen_ms = built.frozen.as_millis() as u64,
            cpu_ms = built.cpu.as_millis() as u64,
            forked = built.forked,
            "built master snapshot"
        );
        let mut g = self.write();
        g.last_build = Some((Instant::now(), took, built.frozen));
        // Never replace a newer snapshot (one installed meanwhile) with this one.
        let current = g.snapshot.as_ref().and_then(|m| m.last_log_id);
        if g.snapshot.is_none() || built.meta.last_log_id >= current {
            g.snapshot = Some(built.meta.clone());
            g.snapshot_cmds = cmds;
        }
        Ok(built.meta)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SmStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // On a thread of its own: it waits for the child process that writes the file (see
        // `checkpoint`); the async runtime's few workers carry heartbeats and client calls.
        let store = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                let _ = tx.send(store.build_now());
            })
            .map_err(io)?;
        let meta = rx.await.map_err(io)??;
        // openraft 0.9 keeps only the meta of a snapshot it asked for and drops the data
        // handle (`sm/worker.rs`); `get_current_snapshot` opens the file to send it. (The file
        // may not be there: a build older than the snapshot on disk is not kept.)
        let file = tokio::fs::File::open("/dev/null").await.map_err(io)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
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
        // One entry at a time under the write lock, yielding to the runtime every few
        // thousand commands: a restarted master replaying hundreds of 1,000-command entries
        // used to hold the lock for seconds, and every task that reads the state (on the same
        // two runtime workers as the Raft RPCs) blocked behind it; AppendEntries timed out and
        // the group went through a dozen elections before it served again.
        let mut out = Vec::new();
        let mut since_yield = 0u64;
        for e in entries {
            let n = match &e.payload {
                EntryPayload::Normal(req) => req.cmds.len().max(1) as u64,
                _ => 1,
            };
            {
                let mut g = self.write();
                g.last_applied = Some(e.log_id);
                g.applied_cmds += n;
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
            since_yield += n;
            if since_yield >= APPLY_YIELD_EVERY {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    /// A fresh file to receive the leader's snapshot file into (a new stream starts over).
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.dir.join(RECEIVED);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let f = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io)?;
        Ok(Box::new(f))
    }

    /// Checks the received file (header, checksum, and that it is the snapshot `meta`
    /// names), decodes it off the runtime, and makes it the snapshot file (renamed into
    /// place, unless a newer one is there).
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let file = snapshot.into_std().await;
        let (me, want) = (self.clone(), meta.clone());
        let state = tokio::task::spawn_blocking(move || me.take_received(file, &want))
            .await
            .map_err(io)??;
        let mut g = self.write();
        g.state = state;
        g.last_applied = meta.last_log_id;
        g.membership = meta.last_membership.clone();
        g.snapshot = Some(meta.clone());
        g.snapshot_cmds = g.applied_cmds;
        tracing::info!(last = ?meta.last_log_id, "installed master snapshot");
        Ok(())
    }

    /// The snapshot file, open at its start and checked (in pieces, off the runtime) through
    /// the same handle that is sent: a build renaming a newer file into place meanwhile does
    /// not change what this handle reads. It is the newest snapshot: builds and installs write
    /// it before they are recorded, and never replace a newer one.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        use std::io::Seek;
        if self.read().snapshot.is_none() {
            return Ok(None);
        }
        let path = self.dir.join("snapshot");
        let open = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            let mut reader = std::io::BufReader::with_capacity(1 << 20, &mut f);
            let (meta, _) =
                check_open(&mut reader).map_err(|e| format!("{}: {e}", path.display()))?;
            f.rewind().map_err(|e| e.to_string())?;
            Ok(Some((meta, f)))
        });
        let got = open.await.map_err(io)?.map_err(io)?;
        Ok(got.map(|(meta, f)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(f)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::Request;
    use crate::sm::Command;
    use openraft::{CommittedLeaderId, Membership};
    use std::collections::{BTreeMap, BTreeSet};

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload,
        }
    }

    fn mkdir(path: String) -> EntryPayload<TypeConfig> {
        EntryPayload::Normal(Request {
            cmds: vec![Command::Mkdir {
                path,
                parents: true,
            }],
            time_ms: 5,
        })
    }

    fn membership() -> EntryPayload<TypeConfig> {
        let voters = BTreeSet::from([1u64, 2, 3]);
        let nodes: BTreeMap<u64, Node> = voters
            .iter()
            .map(|i| (*i, Node::new(format!("127.0.0.1:{i}"))))
            .collect();
        EntryPayload::Membership(Membership::new(vec![voters], nodes))
    }

    /// A store in `dir` that applied the membership (entry 1) and mkdirs up to entry
    /// `upto - 1`, spread over `dirs` directories; and its state.
    async fn applied(dir: &std::path::Path, upto: u64, dirs: u64) -> (SmStore, MetaState) {
        let mut sm = SmStore::open(dir, 1 << 20, 3, true).expect("open");
        let mut entries = vec![entry(1, membership())];
        for i in 2..upto {
            entries.push(entry(i, mkdir(format!("/d{}/e{i}", i % dirs))));
        }
        sm.apply(entries).await.expect("apply");
        let live = sm.read().state.clone();
        (sm, live)
    }

    async fn read_all(mut f: Box<tokio::fs::File>) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut b = Vec::new();
        f.read_to_end(&mut b).await.expect("read");
        b
    }

    /// Streams `bytes` into a receiving store as openraft does (chunks at offsets), then
    /// installs it as `meta`.
    async fn receive(
        to: &mut SmStore,
        meta: &SnapshotMeta<NodeId, Node>,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        use tokio::io::{AsyncSeekExt, AsyncWriteExt};
        let mut f = to.begin_receiving_snapshot().await.expect("begin");
        for (i, c) in bytes.chunks(1000).enumerate() {
            f.seek(std::io::SeekFrom::Start(i as u64 * 1000))
                .await
                .expect("seek");
            f.write_all(c).await.expect("write");
        }
        f.shutdown().await.expect("flush");
        to.install_snapshot(meta, f).await
    }

    /// At a clean stop a snapshot is built only when enough was applied since the last one;
    /// a store reopened after it starts at the last applied entry, with nothing to replay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clean_stop_saves_what_was_applied() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut sm, live) = applied(dir.path(), 50, 5).await;
        assert!(sm.snapshot_at_stop(100).expect("stop").is_none());
        assert!(!dir.path().join("snapshot").exists());
        let meta = sm.snapshot_at_stop(10).expect("stop").expect("built");
        assert_eq!(meta.last_log_id.map(|l| l.index), Some(49));
        assert!(sm.snapshot_at_stop(1).expect("again").is_none());
        sm.apply(vec![entry(50, mkdir("/after".into()))])
            .await
            .expect("apply");
        let reopened = SmStore::open(dir.path(), 1 << 20, 3, true).expect("reopen");
        assert_eq!(reopened.read().state, live);
        assert_eq!(reopened.read().last_applied.map(|l| l.index), Some(49));
        let meta = sm.snapshot_at_stop(1).expect("stop").expect("built");
        assert_eq!(meta.last_log_id.map(|l| l.index), Some(50));
        let reopened = SmStore::open(dir.path(), 1 << 20, 3, true).expect("reopen");
        assert_eq!(reopened.read().state, sm.read().state);
    }

    /// A store told to write format 8 (a rolling upgrade from an older release) builds files
    /// of format 8, which load like the current one; a format no release writes is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn builds_write_the_format_asked_for() {
        let dir = tempfile::tempdir().expect("tmp");
        let (sm, live) = applied(dir.path(), 20, 5).await;
        assert!(sm.clone().with_snapshot_format(7).is_err());
        let version = |d: &Path| {
            let b = std::fs::read(d.join("snapshot")).expect("file");
            let (_, data) = split_file(&b).expect("split");
            u16::from_le_bytes([data[8], data[9]])
        };
        let old = sm.clone().with_snapshot_format(8).expect("format 8");
        old.snapshot_at_stop(1).expect("stop").expect("built");
        assert_eq!(version(dir.path()), 8);
        let reopened = SmStore::open(dir.path(), 1 << 20, 3, true).expect("reopen");
        assert_eq!(reopened.read().state, live);
        reopened.write().applied_cmds += 1;
        reopened.snapshot_at_stop(1).expect("stop").expect("built");
        assert_eq!(version(dir.path()), snapshot::FORMAT_VERSION);
    }

    /// A snapshot travels as its file: what the sender's store hands out is received and
    /// installed by another store, which then holds the same state and the same file (and
    /// loads it when reopened); a file cut short, with a flipped byte, or of another
    /// snapshot than the one named is refused and changes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_file_is_sent_and_installed() {
        let (a, b) = (
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
        );
        let (mut from, live) = applied(a.path(), 300, 11).await;
        from.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        let sent = from
            .get_current_snapshot()
            .await
            .expect("get")
            .expect("some");
        let meta = sent.meta.clone();
        let bytes = read_all(sent.snapshot).await;
        assert_eq!(
            bytes,
            std::fs::read(a.path().join("snapshot")).expect("file")
        );

        let mut to = SmStore::open(b.path(), 1 << 20, 3, true).expect("open");
        let empty = to.read().state.clone();
        let mut flipped = bytes.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 1;
        let mut other = meta.clone();
        other.snapshot_id = "another".into();
        for (m, body) in [
            (&meta, &bytes[..bytes.len() - 1]),
            (&meta, &flipped[..]),
            (&other, &bytes[..]),
        ] {
            assert!(receive(&mut to, m, body).await.is_err());
            assert_eq!(to.read().state, empty);
            assert!(!b.path().join("snapshot").exists());
        }
        receive(&mut to, &meta, &bytes).await.expect("install");
        assert_eq!(to.read().state, live);
        assert_eq!(to.read().snapshot_index(), 299);
        assert_eq!(
            std::fs::read(b.path().join("snapshot")).expect("installed file"),
            bytes
        );
        assert!(!b.path().join(RECEIVED).exists());
        let reopened = SmStore::open(b.path(), 1 << 20, 3, true).expect("reopen");
        assert_eq!(reopened.read().state, live);
    }

    /// A snapshot built by the forked writer holds exactly the state as applied, at the
    /// applied log id with its membership; it replaces the file on disk, a reopened store
    /// loads it, and applies after the build are not in it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn built_snapshot_is_the_applied_state() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut sm, live) = applied(dir.path(), 200, 7).await;
        let mut builder = sm.get_snapshot_builder().await;
        let snap = builder.build_snapshot().await.expect("build");
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(199));
        assert_eq!(snap.meta.last_membership.log_id().map(|l| l.index), Some(1));
        let sent = sm.get_current_snapshot().await.expect("get").expect("some");
        assert_eq!(sent.meta, snap.meta);
        let (meta, state) = decode_file(&read_all(sent.snapshot).await, true).expect("decode");
        assert_eq!(meta, snap.meta);
        assert_eq!(state, live);
        // Later applies change the live state, not the snapshot.
        sm.apply(vec![entry(200, mkdir("/later".into()))])
            .await
            .expect("apply");
        let current = sm.get_current_snapshot().await.expect("get").expect("some");
        assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(199));
        assert_eq!(sm.read().snapshot_index(), 199);
        assert_eq!(sm.read().changes_since_snapshot(), 1);
        assert!(sm.read().last_build().is_some());
        // Nothing is left of the build's temp file; a reopened store loads the snapshot.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["snapshot".to_string()]);
        let reopened = SmStore::open(dir.path(), 1 << 20, 3, true).expect("reopen");
        assert_eq!(reopened.read().state, live);
        assert_eq!(reopened.read().last_applied.map(|l| l.index), Some(199));
        // The load paces the next build as a build would; the status shows builds only.
        assert!(reopened.read().last_build().is_some());
        assert_eq!(reopened.read().last_build_ms(), (0, 0));
    }

    /// A file checked in pieces gives the meta and size `split_file` gives for the whole;
    /// a flipped byte or a cut tail is refused by both.
    #[test]
    fn check_file_agrees_with_split_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 77)),
            last_membership: StoredMembership::default(),
            snapshot_id: "77-1".into(),
        };
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = encode_file(&meta, &data).expect("encode");
        let path = dir.path().join("s");
        std::fs::write(&path, &file).expect("write");
        let (m, size) = check_file(&path).expect("check");
        assert_eq!((m.clone(), size), (meta.clone(), file.len() as u64));
        assert_eq!(split_file(&file).expect("split"), (meta, &data[..]));
        let mut bad = file.clone();
        bad[file.len() / 2] ^= 1;
        std::fs::write(&path, &bad).expect("write");
        assert!(check_file(&path).is_err() && split_file(&bad).is_err());
        std::fs::write(&path, &file[..file.len() - 1]).expect("write");
        assert!(check_file(&path).is_err());
        std::fs::write(&path, &file[..20]).expect("write");
        assert!(check_file(&path).is_err());
    }

    /// A temp file left by a build that a crash interrupted is removed at open, and a build
    /// older than the snapshot on disk does not replace it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_builds_are_cleaned_and_never_go_backwards() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("snapshot.build-1"), b"torn").expect("write");
        let mut sm = SmStore::open(dir.path(), 1 << 20, 3, true).expect("open");
        assert!(!dir.path().join("snapshot.build-1").exists());
        sm.apply(vec![entry(1, membership()), entry(2, mkdir("/a".into()))])
            .await
            .expect("apply");
        // Pretend a newer snapshot is on disk already (installed meanwhile).
        *sm.persisted.lock().expect("lock") = Some(LogId::new(CommittedLeaderId::new(1, 1), 50));
        let mut builder = sm.get_snapshot_builder().await;
        builder.build_snapshot().await.expect("build");
        assert!(!dir.path().join("snapshot").exists());
        assert!(!build_tmp(dir.path()).exists());
    }

    /// A seeded data directory opens as a group initialized with the members, at log id 0,
    /// holding the seeded namespace; the empty log is purged up to the seed; a seed never
    /// overwrites a used directory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seeded_directory_opens_as_an_initialized_group() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut state = MetaState::new(1 << 20, 3).expect("state");
        state.apply(
            &Command::Mkdir {
                path: "/seeded".into(),
                parents: false,
            },
            1,
        );
        let members: BTreeMap<u64, String> = (1..=3u64)
            .map(|i| (i, format!("127.0.0.1:{}", 9000 + i)))
            .collect();
        seed(dir.path(), &state, &members).expect("seed");
        assert!(seed(dir.path(), &state, &members).is_err());
        let (log, _) = crate::raftlog::RaftLog::open(
            &dir.path().join("raft"),
            crate::raftlog::LogConfig::default(),
        )
        .expect("log");
        let mut log = crate::raftlog::LogStore::new(std::sync::Arc::new(log));
        let mut sm = SmStore::open(&dir.path().join("state"), 1 << 20, 3, true).expect("open");
        let init = openraft::storage::StorageHelper::new(&mut log, &mut sm)
            .get_initial_state()
            .await
            .expect("initial state");
        assert_eq!(init.committed.map(|l| l.index), Some(0));
        let voters: Vec<u64> = init.membership_state.effective().voter_ids().collect();
        assert_eq!(voters, vec![1, 2, 3]);
        assert!(sm.read().state.stat("/seeded").is_ok());
    }
}
