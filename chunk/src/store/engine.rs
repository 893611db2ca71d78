//! [`Store`]: the chunk store over any [`Backend`]. Holds the inventory in memory (sealed
//! chunks with their decoded sidecars; chunks being written with their running crcs).
//!
//! Locking: `state` (a std mutex) guards the inventory and is never held across an `.await`;
//! each chunk being written has its own async mutex, so writes to one chunk are serialized
//! while different chunks proceed in parallel.
//!
//! Direct I/O: with [`StoreConfig::direct_io`] and a backend and file system that do O_DIRECT,
//! a chunk's data goes to the disk without the page cache: staged frames are copied into
//! pooled page-aligned buffers and written in whole pages through a second, O_DIRECT handle;
//! only the last partial page of the chunk is written through the ordinary handle at seal.
//! Invariant: the bytes handed to the O_DIRECT handle always end at a page boundary, so the
//! staged frames always start at one. Durability is unchanged: fdatasync at seal (on the
//! inode: both handles' data, and the device cache).
use super::{ChunkInfo, ChunkStore, QuarantineRecord, StoreConfig, Usage};
use crate::backend::aligned::{Pool, DIRECT_ALIGN};
use crate::backend::{Backend, FileHandle};
use crate::error::{ChunkError, Result};
use crate::format::{CrcAccumulator, Sidecar, BLOCK_SIZE_BYTES};
use crate::{durable, metrics as m, names};
use async_trait::async_trait;
use bytes::Bytes;
use shale_proto::{ChunkId, ChunkRef, ChunkVersion};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;

pub(super) struct Sealed {
    pub(super) version: ChunkVersion,
    pub(super) sidecar: Arc<Sidecar>,
}

struct OpenChunk {
    version: ChunkVersion,
    fh: Option<FileHandle>,
    /// The O_DIRECT handle of the same file, where there is one.
    direct: Option<FileHandle>,
    written: u64,
    crc: CrcAccumulator,
    /// Frames accepted but not yet handed to the backend, starting at `written - staged_bytes`.
    staged: Vec<Bytes>,
    staged_bytes: u64,
    pending: VecDeque<JoinHandle<io::Result<()>>>,
    /// Set once sealed or discarded; later calls on this handle find nothing.
    done: bool,
}

type OpenSlot = (ChunkVersion, Arc<AsyncMutex<OpenChunk>>);

#[derive(Default)]
pub(super) struct State {
    pub(super) sealed: HashMap<ChunkId, Sealed>,
    open: HashMap<ChunkId, OpenSlot>,
    pub(super) sealed_bytes: u64,
    open_bytes: u64,
    pub(super) reports: Vec<QuarantineRecord>,
    /// Serializes record appends (and deletes) per chunk (see `append.rs`).
    pub(super) append_locks: HashMap<ChunkId, Arc<AsyncMutex<()>>>,
}

pub struct Store<B: Backend> {
    pub(super) backend: Arc<B>,
    pub(super) config: StoreConfig,
    pub(super) state: Mutex<State>,
    quarantine_seq: AtomicU64,
    /// Aligned buffers for O_DIRECT writes.
    pool: Arc<Pool>,
    /// Whether O_DIRECT was found refused here (said once in the log, then not tried again).
    direct_refused: std::sync::atomic::AtomicBool,
}

/// Bytes per pooled O_DIRECT buffer.
const DIRECT_BUFFER_BYTES: usize = 1 << 20;
/// Idle O_DIRECT buffers kept.
const DIRECT_BUFFERS_KEPT: usize = 64;

pub(super) fn sidecar_bytes(length: u64) -> u64 {
    48 + 4 * crate::format::block_count(length, BLOCK_SIZE_BYTES)
}

impl<B: Backend> Store<B> {
    pub(super) fn new(backend: B, config: StoreConfig) -> Self {
        m::describe();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Store {
            backend: Arc::new(backend),
            config,
            state: Mutex::new(State::default()),
            quarantine_seq: AtomicU64::new(seed),
            pool: Pool::new(DIRECT_BUFFER_BYTES, DIRECT_BUFFERS_KEPT),
            direct_refused: Default::default(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // The inventory is updated in small steps that leave it consistent; a panic elsewhere
        // while holding the lock must not take the whole server down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether chunk data is written with O_DIRECT (configured, and not refused by the backend
    /// or file system so far).
    pub fn writes_direct(&self) -> bool {
        self.config.direct_io && !self.direct_refused.load(Ordering::Relaxed)
    }

    /// The backend (tests use it to inject faults).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn open_slot(&self, c: ChunkRef) -> Result<Arc<AsyncMutex<OpenChunk>>> {
        let st = self.lock();
        match st.open.get(&c.id) {
            Some((v, oc)) if *v == c.version => Ok(oc.clone()),
            Some((v, _)) => Err(ChunkError::WrongVersion {
                chunk: c.id,
                have: *v,
                want: c.version,
            }),
            None => match st.sealed.get(&c.id) {
                Some(s) if s.version == c.version => Err(ChunkError::AlreadySealed(c.id)),
                _ => Err(ChunkError::NotFound(c.id)),
            },
        }
    }

    /// Bytes this store may still take.
    pub(super) fn free_space(&self) -> u64 {
        let st = self.lock();
        self.free_bytes(&st)
    }

    fn free_bytes(&self, st: &State) -> u64 {
        let used = st.sealed_bytes + st.open_bytes;
        let fs_free = self.backend.space().map_or(u64::MAX, |s| s.available_bytes);
        let cap_free = self
            .config
            .capacity_bytes
            .map_or(u64::MAX, |c| c.saturating_sub(used));
        fs_free.min(cap_free)
    }

    /// Hands the staged frames to the backend as one vectored write (in the background). With
    /// an O_DIRECT handle, the whole pages of them go through it (copied into aligned buffers)
    /// and the rest stays staged — unless `last`: then the rest (the chunk's final partial
    /// page) goes through the ordinary handle.
    fn flush_staged(&self, oc: &mut OpenChunk, last: bool) {
        let Some(fh) = oc.fh else { return };
        if oc.staged.is_empty() {
            return;
        }
        let offset = oc.written - oc.staged_bytes;
        if let Some(direct) = oc.direct {
            let pages = oc.staged_bytes / DIRECT_ALIGN as u64 * DIRECT_ALIGN as u64;
            if pages > 0 {
                let bufs = self.take_aligned(oc, pages);
                let backend = self.backend.clone();
                oc.pending.push_back(tokio::spawn(async move {
                    backend.write_at(direct, offset, bufs).await
                }));
            }
            if !last || oc.staged.is_empty() {
                return;
            }
        }
        let offset = oc.written - oc.staged_bytes;
        let bufs = std::mem::take(&mut oc.staged);
        oc.staged_bytes = 0;
        let backend = self.backend.clone();
        oc.pending.push_back(tokio::spawn(async move {
            backend.write_at(fh, offset, bufs).await
        }));
    }

    /// Moves the first `n` staged bytes (a multiple of the page size) into aligned buffers
    /// (copied, unless a frame's whole pages already are in one).
    fn take_aligned(&self, oc: &mut OpenChunk, n: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut cur = self.pool.take();
        let mut left = n as usize;
        let mut rest = Vec::new();
        for frame in std::mem::take(&mut oc.staged) {
            if left == 0 {
                rest.push(frame);
                continue;
            }
            // A frame received into a page-aligned buffer (the data port's) goes to the disk
            // as it is, its whole pages at least: no copy.
            let whole = frame.len().min(left) / DIRECT_ALIGN * DIRECT_ALIGN;
            let aligned = (frame.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN);
            let mut f = &frame[..];
            if aligned && whole > 0 && cur.buf().len().is_multiple_of(DIRECT_ALIGN) {
                if !cur.buf().is_empty() {
                    out.push(std::mem::replace(&mut cur, self.pool.take()).into_bytes());
                }
                out.push(frame.slice(..whole));
                f = &frame[whole..];
                left -= whole;
            }
            while left > 0 && !f.is_empty() {
                if cur.buf().spare() == 0 {
                    out.push(std::mem::replace(&mut cur, self.pool.take()).into_bytes());
                }
                let k = cur.buf().extend_from_slice(&f[..f.len().min(left)]);
                f = &f[k..];
                left -= k;
            }
            if !f.is_empty() {
                rest.push(frame.slice(frame.len() - f.len()..));
            }
        }
        if !cur.buf().is_empty() {
            out.push(cur.into_bytes());
        }
        oc.staged = rest;
        oc.staged_bytes -= n;
        out
    }

    /// Verified bytes of a sealed chunk, the sidecar they were verified against, and the open
    /// data file they were read from (where the backend has one).
    async fn read_verified(
        &self,
        c: ChunkRef,
        offset: u64,
        length: u64,
    ) -> Result<(Bytes, Arc<Sidecar>, Option<std::fs::File>)> {
        let started = Instant::now();
        let sidecar = {
            let st = self.lock();
            match st.sealed.get(&c.id) {
                Some(s) if s.version == c.version => s.sidecar.clone(),
                Some(s) => {
                    return Err(ChunkError::WrongVersion {
                        chunk: c.id,
                        have: s.version,
                        want: c.version,
                    })
                }
                None if st.open.contains_key(&c.id) => return Err(ChunkError::NotSealed(c.id)),
                None => return Err(ChunkError::NotFound(c.id)),
            }
        };
        let end = offset.checked_add(length);
        if end.is_none_or(|e| e > sidecar.length) {
            return Err(ChunkError::ReadPastEnd {
                chunk: c.id,
                offset,
                length,
                chunk_len: sidecar.length,
            });
        }
        if length == 0 {
            return Ok((Bytes::new(), sidecar, None));
        }
        let (start, span_end) = sidecar.block_span(offset, length);
        let (span, file) = match self
            .backend
            .map_file(&names::data(c.id), start, span_end - start)
            .await
        {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Listed sealed, yet its data file is gone: removed by someone else (the store
                // itself takes it out of the inventory first). Quarantine what is left so that
                // it is reported and re-created, unless it was replaced or deleted meanwhile.
                let why = "data file missing".to_string();
                if self
                    .quarantine(c.id, Some(c.version), why, Some(&sidecar))
                    .await
                {
                    return Err(ChunkError::ChecksumMismatch {
                        chunk: c.id,
                        block: start / u64::from(sidecar.block_size),
                    });
                }
                return Err(ChunkError::NotFound(c.id));
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let why = format!("data file shorter than its sidecar says: {e}");
                self.quarantine(c.id, Some(c.version), why, Some(&sidecar))
                    .await;
                return Err(ChunkError::ChecksumMismatch {
                    chunk: c.id,
                    block: start / u64::from(sidecar.block_size),
                });
            }
            Err(e) => return Err(ChunkError::io("map", names::data(c.id), e)),
        };
        if let Err(block) = sidecar.verify_blocks(start, &span) {
            m::checksum_failure(self.backend.kind());
            let why = format!("checksum mismatch in block {block} on read");
            if !self
                .quarantine(c.id, Some(c.version), why, Some(&sidecar))
                .await
            {
                // Replaced while we read: the bytes we mapped belong to the newer version.
                return Err(ChunkError::NotFound(c.id));
            }
            return Err(ChunkError::ChecksumMismatch { chunk: c.id, block });
        }
        let from = (offset - start) as usize;
        let out = span.slice(from..from + length as usize);
        m::read(self.backend.kind(), length, started.elapsed());
        Ok((out, sidecar, file))
    }

    /// Opens the O_DIRECT handle of a new chunk's data file, where the config asks for it and
    /// the file system allows it.
    async fn open_direct(&self, id: ChunkId) -> io::Result<Option<FileHandle>> {
        if !self.config.direct_io || self.direct_refused.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let fh = self.backend.open_direct(&names::data_tmp(id)).await?;
        if fh.is_none() && !self.direct_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                backend = self.backend.kind(),
                "this file system refuses O_DIRECT: chunk data is written through the page cache"
            );
        }
        Ok(fh)
    }

    /// Waits for every write in flight; the first error wins.
    async fn drain(oc: &mut OpenChunk) -> io::Result<()> {
        let mut first = Ok(());
        while let Some(h) = oc.pending.pop_front() {
            let r = h
                .await
                .unwrap_or_else(|e| Err(io::Error::other(format!("write task failed: {e}"))));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Throws away a chunk being written: waits for its writes, closes and removes its temp
    /// files, and drops it from the inventory. Temp files left by a crash are removed at open.
    async fn discard(&self, id: ChunkId, oc: &mut OpenChunk) {
        if oc.done {
            return;
        }
        oc.done = true;
        oc.staged.clear();
        let _ = Self::drain(oc).await;
        for fh in [oc.fh.take(), oc.direct.take()].into_iter().flatten() {
            let _ = self.backend.close(fh).await;
        }
        let _ = self.backend.remove(&names::data_tmp(id)).await;
        let _ = self.backend.remove(&names::sidecar_tmp(id)).await;
        let mut st = self.lock();
        if st.open.get(&id).is_some_and(|(v, _)| *v == oc.version) {
            st.open.remove(&id);
        }
        st.open_bytes = st.open_bytes.saturating_sub(oc.written);
    }

    /// Turns an I/O failure of a chunk being written into its error, after discarding it.
    async fn fail(
        &self,
        id: ChunkId,
        oc: &mut OpenChunk,
        op: &'static str,
        e: io::Error,
    ) -> ChunkError {
        self.discard(id, oc).await;
        match ChunkError::io(op, names::data_tmp(id), e) {
            ChunkError::NoSpace { .. } => ChunkError::NoSpace {
                need_bytes: 0,
                free_bytes: self.free_bytes(&self.lock()),
            },
            ChunkError::Io { source, .. } => ChunkError::Failed {
                chunk: id,
                why: format!("{op}: {source}"),
            },
            other => other,
        }
    }

    /// Moves a replica's files to `quarantine/` and records why. With `only_if`, does so only
    /// if that sidecar is still the one in the inventory (a read racing a replacement must not
    /// quarantine the new version); returns whether it quarantined. Never fails: a replica whose
    /// files cannot even be moved is still dropped from the inventory (never served).
    pub(super) async fn quarantine(
        &self,
        id: ChunkId,
        version: Option<ChunkVersion>,
        reason: String,
        only_if: Option<&Arc<Sidecar>>,
    ) -> bool {
        {
            let mut st = self.lock();
            let current = st.sealed.get(&id).map(|s| s.sidecar.clone());
            if let Some(expected) = only_if {
                if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, expected)) {
                    return false;
                }
            }
            if let Some(sc) = current {
                st.sealed.remove(&id);
                let len = sc.length;
                st.sealed_bytes = st.sealed_bytes.saturating_sub(len + sidecar_bytes(len));
            }
        }
        for name in [names::data(id), names::data_new(id), names::sidecar(id)] {
            let n = self.quarantine_seq.fetch_add(1, Ordering::Relaxed);
            let _ = self
                .backend
                .rename(&name, &names::quarantined(&name, n))
                .await;
        }
        if let Err(e) = self.backend.sync_dir().await {
            tracing::warn!(chunk = %id, error = %e, "sync after quarantine failed");
        }
        tracing::warn!(chunk = %id, %reason, "replica quarantined");
        m::quarantined(self.backend.kind());
        let rec = QuarantineRecord {
            id,
            version,
            reason,
        };
        self.lock().reports.push(rec);
        true
    }

    /// Puts a synced data temp and sidecar temp in place so that a crash at any point leaves
    /// either the old sealed version or the new one (never a mix, never neither):
    /// 1. `<id>.chunk.tmp` → `<id>.chunk.new`, dir sync (new data durable under a known name);
    /// 2. `<id>.crc.tmp` → `<id>.crc`, dir sync: the commit point;
    /// 3. `<id>.chunk.new` → `<id>.chunk`, no sync needed: recovery rolls a `.chunk.new` forward
    ///    when it fully matches the sidecar in place, and removes it otherwise.
    ///
    /// The older version leaves the inventory before step 3 (it is stale from then on; reads that
    /// already mapped it keep a valid mapping of its inode).
    async fn commit_seal(&self, id: ChunkId) -> io::Result<()> {
        let b = &*self.backend;
        durable::commit(b, &[(&names::data_tmp(id), &names::data_new(id))]).await?;
        durable::commit(b, &[(&names::sidecar_tmp(id), &names::sidecar(id))]).await?;
        {
            let mut st = self.lock();
            if let Some(old) = st.sealed.remove(&id) {
                let len = old.sidecar.length;
                st.sealed_bytes = st.sealed_bytes.saturating_sub(len + sidecar_bytes(len));
            }
        }
        b.rename(&names::data_new(id), &names::data(id)).await
    }

    async fn seal_locked(&self, c: ChunkRef, oc: &mut OpenChunk) -> Result<ChunkInfo> {
        let id = c.id;
        self.flush_staged(oc, true);
        if let Err(e) = Self::drain(oc).await {
            return Err(self.fail(id, oc, "write", e).await);
        }
        let Some(fh) = oc.fh else {
            return Err(ChunkError::NotFound(id));
        };
        if let Err(e) = self.backend.sync_data(fh).await {
            return Err(self.fail(id, oc, "fdatasync", e).await);
        }
        let sidecar = Sidecar {
            block_size: BLOCK_SIZE_BYTES,
            chunk: id,
            version: c.version,
            length: oc.written,
            block_crcs: oc.crc.clone().finish(),
        };
        let encoded = Bytes::from(sidecar.encode());
        if let Err(e) =
            durable::write_synced_temp(&*self.backend, &names::sidecar_tmp(id), encoded).await
        {
            return Err(self.fail(id, oc, "write sidecar", e).await);
        }
        oc.fh = None;
        let _ = self.backend.close(fh).await;
        if let Some(d) = oc.direct.take() {
            let _ = self.backend.close(d).await;
        }
        if let Err(e) = self.commit_seal(id).await {
            return Err(self.fail(id, oc, "commit", e).await);
        }
        oc.done = true;
        let info = ChunkInfo {
            id,
            version: c.version,
            length_bytes: oc.written,
            sealed: true,
        };
        let mut st = self.lock();
        st.open.remove(&id);
        st.open_bytes = st.open_bytes.saturating_sub(oc.written);
        st.sealed_bytes += oc.written + sidecar_bytes(oc.written);
        st.sealed.insert(
            id,
            Sealed {
                version: c.version,
                sidecar: Arc::new(sidecar),
            },
        );
        Ok(info)
    }
}

#[async_trait]
impl<B: Backend> ChunkStore for Store<B> {
    async fn create(&self, c: ChunkRef) -> Result<()> {
        let slot = {
            let mut st = self.lock();
            if let Some((v, _)) = st.open.get(&c.id) {
                return Err(ChunkError::AlreadyOpen {
                    chunk: c.id,
                    version: *v,
                });
            }
            if let Some(s) = st.sealed.get(&c.id) {
                if s.version >= c.version {
                    return Err(ChunkError::VersionNotNewer {
                        chunk: c.id,
                        have: s.version,
                        want: c.version,
                    });
                }
            }
            let oc = Arc::new(AsyncMutex::new(OpenChunk {
                version: c.version,
                fh: None,
                direct: None,
                written: 0,
                crc: CrcAccumulator::new(BLOCK_SIZE_BYTES),
                staged: Vec::new(),
                staged_bytes: 0,
                pending: VecDeque::new(),
                done: false,
            }));
            st.open.insert(c.id, (c.version, oc.clone()));
            oc
        };
        let mut oc = slot.lock().await;
        match self.backend.create(&names::data_tmp(c.id)).await {
            Ok(fh) => oc.fh = Some(fh),
            Err(e) => return Err(self.fail(c.id, &mut oc, "create", e).await),
        }
        match self.open_direct(c.id).await {
            Ok(d) => {
                oc.direct = d;
                Ok(())
            }
            Err(e) => Err(self.fail(c.id, &mut oc, "open O_DIRECT", e).await),
        }
    }

    async fn write(&self, c: ChunkRef, offset: u64, data: Bytes) -> Result<()> {
        let started = Instant::now();
        let slot = self.open_slot(c)?;
        let mut oc = slot.lock().await;
        if oc.done {
            return Err(ChunkError::NotFound(c.id));
        }
        if offset != oc.written {
            return Err(ChunkError::BadOffset {
                chunk: c.id,
                expected: oc.written,
                got: offset,
            });
        }
        let len = data.len() as u64;
        let size = oc.written + len;
        if size > self.config.chunk_size_max_bytes {
            return Err(ChunkError::TooLarge {
                chunk: c.id,
                size_bytes: size,
                max_bytes: self.config.chunk_size_max_bytes,
            });
        }
        if len == 0 {
            return Ok(());
        }
        let need = len + sidecar_bytes(size);
        let free = {
            let mut st = self.lock();
            let free = self.free_bytes(&st);
            if need <= free {
                st.open_bytes += len;
            }
            free
        };
        if need > free {
            self.discard(c.id, &mut oc).await;
            return Err(ChunkError::NoSpace {
                need_bytes: need,
                free_bytes: free,
            });
        }
        oc.crc.update(&data);
        oc.written = size;
        oc.staged.push(data);
        oc.staged_bytes += len;
        if oc.staged_bytes >= self.config.write_batch_bytes {
            self.flush_staged(&mut oc, false);
        }
        // Bound the write-behind; surface errors of finished writes early.
        while oc.pending.len() > self.config.inflight_writes_max
            || oc.pending.front().is_some_and(|h| h.is_finished())
        {
            let Some(h) = oc.pending.pop_front() else {
                break;
            };
            let r = h
                .await
                .unwrap_or_else(|e| Err(io::Error::other(format!("write task failed: {e}"))));
            if let Err(e) = r {
                return Err(self.fail(c.id, &mut oc, "write", e).await);
            }
        }
        m::wrote(self.backend.kind(), len, started.elapsed());
        Ok(())
    }

    async fn seal(&self, c: ChunkRef) -> Result<ChunkInfo> {
        let started = Instant::now();
        let slot = self.open_slot(c)?;
        let mut oc = slot.lock().await;
        if oc.done {
            return Err(ChunkError::NotFound(c.id));
        }
        let info = self.seal_locked(c, &mut oc).await?;
        m::sealed(self.backend.kind(), started.elapsed());
        Ok(info)
    }

    async fn append(&self, c: ChunkRef, offset: u64, data: Bytes, create: bool) -> Result<u64> {
        self.append_sealed(c, offset, data, create).await
    }

    async fn abort(&self, c: ChunkRef) -> Result<()> {
        let slot = self.open_slot(c)?;
        let mut oc = slot.lock().await;
        self.discard(c.id, &mut oc).await;
        Ok(())
    }

    async fn read(&self, c: ChunkRef, offset: u64, length: u64) -> Result<Bytes> {
        Ok(self.read_verified(c, offset, length).await?.0)
    }

    async fn read_crc(&self, c: ChunkRef, offset: u64, length: u64) -> Result<(Bytes, u32)> {
        let (b, crc, _) = self.read_with_file(c, offset, length).await?;
        Ok((b, crc))
    }

    async fn read_with_file(
        &self,
        c: ChunkRef,
        offset: u64,
        length: u64,
    ) -> Result<(Bytes, u32, Option<std::fs::File>)> {
        let (b, sidecar, file) = self.read_verified(c, offset, length).await?;
        // From the blocks the bytes were just verified against, where they are whole blocks.
        let crc = sidecar
            .range_crc(offset, length)
            .unwrap_or_else(|| crc32c::crc32c(&b));
        Ok((b, crc, file))
    }

    async fn delete(&self, id: ChunkId, version: ChunkVersion) -> Result<bool> {
        // Not in the middle of a record append to it.
        let appending = self.lock().append_locks.remove(&id);
        let _append = match &appending {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let open = self.lock().open.get(&id).cloned();
        if let Some((v, slot)) = open {
            if v > version {
                return Err(ChunkError::WrongVersion {
                    chunk: id,
                    have: v,
                    want: version,
                });
            }
            let mut oc = slot.lock().await;
            self.discard(id, &mut oc).await;
            return Ok(true);
        }
        let removed = {
            let mut st = self.lock();
            match st.sealed.get(&id) {
                None => return Ok(false),
                Some(s) if s.version > version => {
                    return Err(ChunkError::WrongVersion {
                        chunk: id,
                        have: s.version,
                        want: version,
                    })
                }
                Some(_) => {
                    let s = st.sealed.remove(&id);
                    if let Some(s) = &s {
                        let len = s.sidecar.length;
                        st.sealed_bytes = st.sealed_bytes.saturating_sub(len + sidecar_bytes(len));
                    }
                    s
                }
            }
        };
        // Sidecar first: a crash in between leaves data without a sidecar, which is
        // quarantined at open, never served.
        for name in [names::sidecar(id), names::data(id), names::data_new(id)] {
            match self.backend.remove(&name).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ChunkError::io("remove", name, e)),
            }
        }
        self.backend
            .sync_dir()
            .await
            .map_err(|e| ChunkError::io("sync dir", "", e))?;
        Ok(removed.is_some())
    }

    fn list(&self) -> Vec<ChunkInfo> {
        let st = self.lock();
        let mut out: Vec<ChunkInfo> = st
            .sealed
            .iter()
            .map(|(id, s)| ChunkInfo {
                id: *id,
                version: s.version,
                length_bytes: s.sidecar.length,
                sealed: true,
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    fn stat(&self, id: ChunkId) -> Option<ChunkInfo> {
        let st = self.lock();
        if let Some(s) = st.sealed.get(&id) {
            return Some(ChunkInfo {
                id,
                version: s.version,
                length_bytes: s.sidecar.length,
                sealed: true,
            });
        }
        st.open.get(&id).map(|(v, slot)| ChunkInfo {
            id,
            version: *v,
            length_bytes: slot.try_lock().map_or(0, |oc| oc.written),
            sealed: false,
        })
    }

    fn usage(&self) -> Usage {
        let st = self.lock();
        let used = st.sealed_bytes + st.open_bytes;
        let free = self.free_bytes(&st);
        let capacity = self.config.capacity_bytes.unwrap_or_else(|| {
            self.backend
                .space()
                .map_or(used.saturating_add(free), |s| s.total_bytes)
        });
        Usage {
            capacity_bytes: capacity,
            used_bytes: used,
            free_bytes: free,
            sealed_chunks: st.sealed.len() as u64,
            open_chunks: st.open.len() as u64,
        }
    }

    fn take_quarantine_reports(&self) -> Vec<QuarantineRecord> {
        std::mem::take(&mut self.lock().reports)
    }

    fn backend_kind(&self) -> &'static str {
        self.backend.kind()
    }
}
