//! [`RaftLog`]: the log itself, knowing nothing of openraft. Entries, the vote, the committed id
//! and the purged id are opaque bytes; the adapter (`crate::openraft`) serializes them.
//!
//! Callers change the in-memory [`State`] and queue the matching records to the flusher under
//! one lock, so the order on disk is the order of the changes. Appends are readable at once
//! (from the tail cache) and durable when their `done` fires; `save_vote` returns only once the
//! vote is durable.
use crate::error::{LogError, Result};
use crate::flusher::{Cmd, Done, EntryPos, Flusher};
use crate::index::{Found, State};
use crate::metrics as m;
use crate::record::{self, Kind, BATCH_RECORD_BYTES, PAYLOAD_MAX_BYTES, SEGMENT_HEADER_BYTES};
use crate::segment::{self, OpenReport};
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot, Semaphore};

#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A segment is closed and a new one started past this size.
    pub segment_bytes_max: u64,
    /// Budget of the in-memory tail cache (flushed entries beyond it are read from files).
    pub cache_bytes_max: u64,
    /// Bytes queued for the flusher before appenders wait.
    pub queued_bytes_max: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 64 << 20,
            cache_bytes_max: 64 << 20,
            queued_bytes_max: 64 << 20,
        }
    }
}

/// The durable log of one Raft node.
pub struct RaftLog {
    dir: PathBuf,
    config: LogConfig,
    state: Arc<Mutex<State>>,
    tx: Option<mpsc::UnboundedSender<Cmd>>,
    queue: Arc<Semaphore>,
    failed: Arc<Mutex<Option<String>>>,
    readers: Mutex<HashMap<u64, Arc<File>>>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl RaftLog {
    /// Opens (creating if needed) the log in `dir`, replaying it.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(Self, OpenReport)> {
        m::describe();
        std::fs::create_dir_all(dir).map_err(|e| LogError::io("create dir", dir.display(), e))?;
        let mut report = OpenReport::default();
        let mut seqs = segment::list(dir, &mut report)?;
        let mut st = State::new(config.cache_bytes_max);
        let (batch_seq, active_len) = if seqs.is_empty() {
            segment::create(dir, 1)?;
            seqs.push(1);
            st.active_segment = 1;
            st.segments.entry(1).or_default();
            (1, SEGMENT_HEADER_BYTES as u64)
        } else {
            segment::replay(dir, &seqs, &mut st, &mut report)?
        };
        report.segments = seqs.len();
        report.entries = st.len();
        report.first_index = st.first_index();
        report.last_index = st.last_index();
        st.active_bytes = active_len;
        let active = st.active_segment;
        let p = segment::path(dir, active);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .map_err(|e| LogError::io("open", p.display(), e))?;
        let state = Arc::new(Mutex::new(st));
        let failed = Arc::new(Mutex::new(None));
        let (tx, rx) = mpsc::unbounded_channel();
        let flusher = Flusher {
            dir: dir.to_path_buf(),
            file,
            segment: active,
            offset: active_len,
            batch_seq,
            state: state.clone(),
            failed: failed.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("shale-raftlog-flush".into())
            .spawn(move || flusher.run(rx))
            .map_err(|e| LogError::io("spawn flusher", dir.display(), e))?;
        tracing::info!(dir = %dir.display(), "raft log open: {report}");
        let log = RaftLog {
            dir: dir.to_path_buf(),
            queue: Arc::new(Semaphore::new(config.queued_bytes_max as usize)),
            config,
            state,
            tx: Some(tx),
            failed,
            readers: Mutex::new(HashMap::new()),
            flusher: Some(handle),
        };
        Ok((log, report))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_running(&self) -> Result<()> {
        match self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(why) => Err(LogError::Stopped(why.clone())),
            None => Ok(()),
        }
    }

    fn send(&self, cmd: Cmd) -> Result<()> {
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(cmd).ok())
            .ok_or_else(|| LogError::Stopped("flusher thread is gone".into()))
    }

    /// Starts a new segment if `incoming` bytes would overflow the active one; the new segment
    /// begins with a checkpoint of the vote, committed and purged state, so old segments can be
    /// deleted without losing them.
    fn maybe_rotate(&self, st: &mut State, incoming: usize) -> Result<()> {
        let header = SEGMENT_HEADER_BYTES as u64;
        if st.active_bytes + incoming as u64 <= self.config.segment_bytes_max
            || st.active_bytes <= header
        {
            return Ok(());
        }
        let seq = st.active_segment + 1;
        self.send(Cmd::Rotate { seq })?;
        st.active_segment = seq;
        st.segments.entry(seq).or_default();
        st.active_bytes = header;
        let mut ckpt = Vec::new();
        if let Some(v) = &st.vote {
            record::encode(&mut ckpt, Kind::Vote, 0, v);
        }
        if let Some(c) = &st.committed {
            record::encode(&mut ckpt, Kind::Committed, 0, c);
        }
        if let Some((upto, id)) = &st.purged {
            record::encode(&mut ckpt, Kind::Purge, *upto, id);
        }
        if !ckpt.is_empty() {
            self.submit(st, ckpt, Vec::new(), None, None)?;
        }
        Ok(())
    }

    fn submit(
        &self,
        st: &mut State,
        bytes: Vec<u8>,
        entries: Vec<EntryPos>,
        done: Option<Done>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<()> {
        st.active_bytes += (bytes.len() + BATCH_RECORD_BYTES) as u64;
        self.send(Cmd::Write {
            bytes,
            entries,
            done,
            permit,
        })
    }

    /// Appends entries `(index, payload)` with consecutive indexes following the log. They are
    /// readable when this returns; `done` fires once they are durable (or the write failed).
    pub async fn append(&self, entries: Vec<(u64, Bytes)>, done: Done) -> Result<()> {
        let size: usize = entries
            .iter()
            .map(|(_, p)| record::encoded_len(p.len()))
            .sum();
        let want = size.clamp(1, self.config.queued_bytes_max as usize) as u32;
        let permit = self
            .queue
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| LogError::Stopped("queue closed".into()))?;
        self.check_running()?;
        let mut st = self.lock();
        for (i, (index, payload)) in entries.iter().enumerate() {
            if payload.len() > PAYLOAD_MAX_BYTES {
                return Err(LogError::TooLarge {
                    index: *index,
                    len: payload.len(),
                    max: PAYLOAD_MAX_BYTES,
                });
            }
            if i > 0 && *index != entries[i - 1].0 + 1 {
                return Err(LogError::NotContiguous {
                    expected: (entries[i - 1].0 + 1).to_string(),
                    got: *index,
                });
            }
        }
        let overwrite = match entries.first() {
            Some((first, _)) => st.check_next(*first),
            None => None,
        };
        self.maybe_rotate(&mut st, size)?;
        let mut bytes = Vec::with_capacity(size + record::encoded_len(0));
        if let Some(from) = overwrite {
            st.truncate(from);
            record::encode(&mut bytes, Kind::Truncate, from, &[]);
        }
        let mut positions = Vec::with_capacity(entries.len());
        let n = entries.len();
        for (index, payload) in entries {
            let rel_offset = bytes.len();
            record::encode(&mut bytes, Kind::Append, index, &payload);
            let len = payload.len() as u32;
            let seq = st.insert(index, Some(payload), None);
            positions.push(EntryPos {
                index,
                seq,
                rel_offset,
                len,
            });
        }
        m::appended(n, bytes.len());
        self.submit(&mut st, bytes, positions, Some(done), Some(permit))
    }

    /// Durably records the vote; returns once it is synced.
    pub async fn save_vote(&self, vote: Bytes) -> Result<()> {
        self.check_running()?;
        let rx = {
            let mut st = self.lock();
            let mut bytes = Vec::new();
            record::encode(&mut bytes, Kind::Vote, 0, &vote);
            st.vote = Some(vote);
            let (tx, rx) = oneshot::channel();
            self.maybe_rotate(&mut st, bytes.len())?;
            let done: Done = Box::new(move |r| {
                let _ = tx.send(r);
            });
            self.submit(&mut st, bytes, Vec::new(), Some(done), None)?;
            rx
        };
        rx.await
            .map_err(|_| LogError::Stopped("flusher dropped the vote".into()))?
            .map_err(|e| LogError::io("save vote", self.dir.display(), e))
    }

    /// Records the committed id (made durable with the next sync; losing it is harmless).
    pub fn save_committed(&self, committed: Bytes) -> Result<()> {
        self.check_running()?;
        let mut st = self.lock();
        let mut bytes = Vec::new();
        record::encode(&mut bytes, Kind::Committed, 0, &committed);
        st.committed = Some(committed);
        self.maybe_rotate(&mut st, bytes.len())?;
        self.submit(&mut st, bytes, Vec::new(), None, None)
    }

    /// Removes entries at `from` and after.
    pub fn truncate(&self, from: u64) -> Result<()> {
        self.check_running()?;
        let mut st = self.lock();
        st.truncate(from);
        let mut bytes = Vec::new();
        record::encode(&mut bytes, Kind::Truncate, from, &[]);
        self.maybe_rotate(&mut st, bytes.len())?;
        self.submit(&mut st, bytes, Vec::new(), None, None)
    }

    /// Removes entries at `upto` and before, remembering `id` as the last purged; deletes whole
    /// segments that hold nothing live any more (after the purge record is durable).
    pub fn purge(&self, upto: u64, id: Bytes) -> Result<()> {
        self.check_running()?;
        let mut st = self.lock();
        if st.purged.as_ref().is_some_and(|(p, _)| *p >= upto) {
            return Ok(());
        }
        let mut bytes = Vec::new();
        record::encode(&mut bytes, Kind::Purge, upto, &id);
        st.purge(upto, id);
        self.maybe_rotate(&mut st, bytes.len())?;
        self.submit(&mut st, bytes, Vec::new(), None, None)?;
        let seqs = st.deletable_segments();
        if !seqs.is_empty() {
            st.forget_segments(&seqs);
            let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            for s in &seqs {
                readers.remove(s);
            }
            self.send(Cmd::Delete { seqs })?;
        }
        Ok(())
    }

    /// Waits until everything queued so far is durable.
    pub async fn sync(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.lock();
            let done: Done = Box::new(move |r| {
                let _ = tx.send(r);
            });
            self.submit(&mut st, Vec::new(), Vec::new(), Some(done), None)?;
        }
        rx.await
            .map_err(|_| LogError::Stopped("flusher dropped a sync".into()))?
            .map_err(|e| LogError::io("sync", self.dir.display(), e))
    }

    pub fn vote(&self) -> Option<Bytes> {
        self.lock().vote.clone()
    }

    pub fn committed(&self) -> Option<Bytes> {
        self.lock().committed.clone()
    }

    pub fn purged(&self) -> Option<(u64, Bytes)> {
        self.lock().purged.clone()
    }

    pub fn first_index(&self) -> Option<u64> {
        self.lock().first_index()
    }

    pub fn last_index(&self) -> Option<u64> {
        self.lock().last_index()
    }

    /// Live segment sequence numbers.
    pub fn segments(&self) -> Vec<u64> {
        self.lock().segments.keys().copied().collect()
    }

    /// Entries `start..=end` that exist, in order (stops early only if the log is shorter).
    pub fn read(&self, start: u64, end_inclusive: u64) -> Result<Vec<(u64, Bytes)>> {
        self.read_limited(start, end_inclusive, usize::MAX)
    }

    /// The entries `start..=end_inclusive` in order, stopping before the one that would take
    /// the records read past `max_bytes` (always at least the first, if any): what a
    /// replication round sends, read and handed on without touching the rest of the range.
    pub fn read_limited(
        &self,
        start: u64,
        end_inclusive: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>> {
        if start > end_inclusive {
            return Ok(Vec::new());
        }
        let found = self.lock().find(start, end_inclusive);
        let mut out = Vec::with_capacity(found.len());
        let mut bytes = 0usize;
        for (index, f) in found {
            let len = match &f {
                Found::Cached(b) => b.len(),
                Found::OnDisk(loc) => loc.len as usize,
            };
            bytes = bytes.saturating_add(len);
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            let data = match f {
                Found::Cached(b) => b,
                Found::OnDisk(loc) => self.read_at(index, loc)?,
            };
            out.push((index, data));
        }
        Ok(out)
    }

    fn reader(&self, seg: u64) -> Result<Arc<File>> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = readers.get(&seg) {
            return Ok(f.clone());
        }
        let p = segment::path(&self.dir, seg);
        let f = Arc::new(File::open(&p).map_err(|e| LogError::io("open", p.display(), e))?);
        readers.insert(seg, f.clone());
        Ok(f)
    }

    /// Reads one entry's record from its segment and verifies it.
    fn read_at(&self, index: u64, loc: crate::index::Loc) -> Result<Bytes> {
        let f = self.reader(loc.segment)?;
        let len = record::encoded_len(loc.len as usize);
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, loc.offset)
            .map_err(|e| LogError::io("read", segment::name(loc.segment), e))?;
        let corrupt = |why: String| LogError::Corrupt {
            segment: loc.segment,
            offset: loc.offset,
            why,
        };
        let (r, _) = record::decode(&buf).map_err(|e| corrupt(e.to_string()))?;
        if r.kind != Kind::Append || r.index != index {
            return Err(corrupt(format!(
                "expected entry {index}, found {} {}",
                r.kind, r.index
            )));
        }
        Ok(Bytes::copy_from_slice(r.payload))
    }
}

impl Drop for RaftLog {
    fn drop(&mut self) {
        // Closing the queue lets the flusher finish what is queued and exit.
        self.tx = None;
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
    }
}
