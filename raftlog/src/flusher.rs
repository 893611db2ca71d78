//! The flusher: one thread that owns the active segment file and makes writes durable with
//! group commit.
//!
//! It takes one command, then every further write already queued (up to [`BATCH_BYTES_MAX`]),
//! writes them as one batch (a batch record, then the records) with one `write`, makes them
//! durable with one `fdatasync`, publishes where each entry landed, and only then completes
//! every waiter of the batch. Proposers that arrive while a sync runs form the next batch, so
//! one fsync covers many appends under load.
//!
//! A batch that nobody waits for (only `committed`, `truncate` or `purge` records, which need
//! no durability of their own) is written without a sync: the next synced batch covers it (one
//! file, earlier offsets), and rotation and segment deletion sync first.
//!
//! After any write or sync failure the flusher stops: every later command fails (a log whose
//! fsync failed cannot be trusted; the process must restart and recover).
use crate::error::LogError;
use crate::index::{Loc, State};
use crate::metrics as m;
use crate::record::{self, BATCH_RECORD_BYTES};
use crate::segment;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// Most bytes of records written by one batch.
pub const BATCH_BYTES_MAX: usize = 4 << 20;

/// Called once the write it belongs to is durable (or failed).
pub type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// An entry inside a write: its index, its slot sequence, and its record's offset in `bytes`.
pub struct EntryPos {
    pub index: u64,
    pub seq: u64,
    pub rel_offset: usize,
    pub len: u32,
}

pub enum Cmd {
    Write {
        bytes: Vec<u8>,
        entries: Vec<EntryPos>,
        done: Option<Done>,
        /// Queue budget held until the flusher takes the write.
        permit: Option<OwnedSemaphorePermit>,
    },
    /// Start segment `seq` (the current one is already synced: every batch is).
    Rotate { seq: u64 },
    /// Delete whole segments (their purge is already durable: it was an earlier write).
    Delete { seqs: Vec<u64> },
}

/// How long the flusher polls for the next write before it parks. A proposer that waited for
/// the last sync usually sends its next entry within microseconds; catching it without a
/// park/unpark round trip (tens of microseconds on a VM) is most of the single-proposer latency
/// that group commit adds over a bare write+fdatasync.
const SPIN_BEFORE_PARK: std::time::Duration = std::time::Duration::from_micros(50);

fn spin_recv(rx: &mut mpsc::UnboundedReceiver<Cmd>) -> Option<Cmd> {
    let until = Instant::now() + SPIN_BEFORE_PARK;
    loop {
        match rx.try_recv() {
            Ok(c) => return Some(c),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) if Instant::now() < until => {
                std::thread::yield_now();
            }
            Err(mpsc::error::TryRecvError::Empty) => return None,
        }
    }
}

pub struct Flusher {
    pub dir: PathBuf,
    pub file: File,
    pub segment: u64,
    pub offset: u64,
    pub batch_seq: u64,
    pub state: Arc<Mutex<State>>,
    pub failed: Arc<Mutex<Option<String>>>,
}

impl Flusher {
    pub fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut next: Option<Cmd> = None;
        loop {
            let cmd = match next.take().or_else(|| spin_recv(&mut rx)) {
                Some(c) => c,
                None => match rx.blocking_recv() {
                    Some(c) => c,
                    None => return,
                },
            };
            match cmd {
                Cmd::Write { .. } => {
                    let mut bytes = match &cmd {
                        Cmd::Write { bytes, .. } => bytes.len(),
                        _ => 0,
                    };
                    let mut batch = vec![cmd];
                    while bytes < BATCH_BYTES_MAX {
                        match rx.try_recv() {
                            Ok(c @ Cmd::Write { .. }) => {
                                if let Cmd::Write { bytes: b, .. } = &c {
                                    bytes += b.len();
                                }
                                batch.push(c);
                            }
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write_batch(batch);
                }
                Cmd::Rotate { seq } => {
                    let r = self.rotate(seq);
                    self.check(r);
                }
                Cmd::Delete { seqs } => {
                    let r = self.delete(&seqs);
                    self.check(r);
                }
            }
        }
    }

    fn stopped(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn check(&self, r: Result<(), LogError>) {
        if let Err(e) = r {
            tracing::error!(error = %e, "raft log flusher failed; the log is stopped");
            *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }

    fn write_batch(&mut self, batch: Vec<Cmd>) {
        let payload: usize = batch
            .iter()
            .map(|c| match c {
                Cmd::Write { bytes, .. } => bytes.len(),
                _ => 0,
            })
            .sum();
        let mut buf = Vec::with_capacity(BATCH_RECORD_BYTES + payload);
        record::encode_batch(&mut buf, self.batch_seq, payload as u64);
        let mut positions = Vec::new();
        let mut dones = Vec::new();
        for c in batch {
            if let Cmd::Write {
                bytes,
                entries,
                done,
                permit,
            } = c
            {
                let base = self.offset + buf.len() as u64;
                for e in entries {
                    let loc = Loc {
                        segment: self.segment,
                        offset: base + e.rel_offset as u64,
                        len: e.len,
                    };
                    positions.push((e.index, e.seq, loc));
                }
                buf.extend_from_slice(&bytes);
                dones.extend(done);
                drop(permit);
            }
        }
        let sync = !dones.is_empty() || !positions.is_empty();
        let result = match self.stopped() {
            Some(why) => Err(io::Error::other(format!("raft log stopped: {why}"))),
            None => self.write_batch_bytes(&buf, sync),
        };
        match &result {
            Ok(()) => {
                self.offset += buf.len() as u64;
                self.batch_seq += 1;
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                for (index, seq, loc) in positions {
                    st.publish(index, seq, loc);
                }
            }
            Err(e) => self.check(Err(LogError::io(
                "append",
                segment::name(self.segment),
                io::Error::new(e.kind(), e.to_string()),
            ))),
        }
        m::batch(dones.len(), buf.len());
        for d in dones {
            d(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }

    fn write_batch_bytes(&mut self, buf: &[u8], sync: bool) -> io::Result<()> {
        self.file.write_all_at(buf, self.offset)?;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let t = Instant::now();
        self.file.sync_data()?;
        m::fsync(t.elapsed());
        Ok(())
    }

    fn rotate(&mut self, seq: u64) -> Result<(), LogError> {
        if let Some(why) = self.stopped() {
            return Err(LogError::Stopped(why));
        }
        self.sync()
            .map_err(|e| LogError::io("fsync", segment::name(self.segment), e))?;
        self.file = segment::create(&self.dir, seq)?;
        self.segment = seq;
        self.offset = record::SEGMENT_HEADER_BYTES as u64;
        Ok(())
    }

    fn delete(&mut self, seqs: &[u64]) -> Result<(), LogError> {
        if let Some(why) = self.stopped() {
            return Err(LogError::Stopped(why));
        }
        // The purge record that allows this deletion must be durable first.
        self.sync()
            .map_err(|e| LogError::io("fsync", segment::name(self.segment), e))?;
        for &s in seqs {
            let p = segment::path(&self.dir, s);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("remove", p.display(), e)),
            }
        }
        segment::fsync_dir(&self.dir)
    }
}
