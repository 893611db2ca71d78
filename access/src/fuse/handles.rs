//! Open files and directories of the mount.
//!
//! Invariants:
//! * A file open for reading is a [`FileReader`] owned by one task that serves the handle's
//!   reads in the kernel's order: reads at the position continue its read-ahead; a read
//!   elsewhere seeks it (random reads work at any offset).
//! * A file open for writing is a [`FileWriter`]: the cluster's files are write-once, so bytes
//!   must come in order from offset 0. A write anywhere else fails with `EOPNOTSUPP` and
//!   abandons the new file (a file it was replacing stays as it was): nothing half-written ever
//!   becomes visible. The file becomes visible, atomically, when the handle is flushed
//!   (`close(2)`), fsynced or released, whichever comes first; afterwards the handle takes no
//!   more bytes.
//! * A directory handle holds the listing taken when it was opened, so offsets stay stable
//!   however the directory changes meanwhile.
use super::attrs::errno_of;
use fuser::{Errno, FileType, ReplyData};
use shale_client::{FileReader, FileWriter};
use std::io::SeekFrom;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

/// One open file or directory.
#[derive(Clone)]
pub enum Handle {
    Read(Arc<ReadHandle>),
    Write(Arc<WriteSlot>),
    Dir(Arc<Vec<DirEntry>>),
}

/// One directory entry as listed at open.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileType,
    pub name: String,
}

/// A file open for reading: its reads are served one after another, in the order the kernel
/// sent them, by one task that owns the reader. The kernel sends read-ahead requests in
/// ascending order but several at once; served by racing tasks they would arrive out of order
/// and make the reader seek back and fetch again what it had just dropped.
pub struct ReadHandle {
    tx: mpsc::UnboundedSender<(u64, u32, ReplyData)>,
}

impl ReadHandle {
    /// Starts the task serving `r` on `rt`.
    pub fn start(rt: &tokio::runtime::Handle, mut r: FileReader) -> ReadHandle {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, u32, ReplyData)>();
        rt.spawn(async move {
            while let Some((offset, size, reply)) = rx.recv().await {
                match read_at(&mut r, offset, size).await {
                    Ok(b) => reply.data(&b),
                    Err(e) => reply.error(Errno::from_i32(e)),
                }
            }
        });
        ReadHandle { tx }
    }

    /// Queues a read (answered by the task).
    pub fn read(&self, offset: u64, size: u32, reply: ReplyData) {
        if let Err(mpsc::error::SendError((_, _, reply))) = self.tx.send((offset, size, reply)) {
            reply.error(Errno::EIO);
        }
    }
}

/// Reads up to `size` bytes at `offset` (fewer only at the end of the file).
async fn read_at(r: &mut FileReader, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
    let len = r.len();
    if offset >= len {
        return Ok(Vec::new());
    }
    if r.position() != offset {
        r.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    }
    let want = (len - offset).min(u64::from(size)) as usize;
    let mut buf = vec![0u8; want];
    if let Err(e) = r.read_exact(&mut buf).await {
        tracing::warn!(path = r.path(), offset, "read failed: {e}");
        return Err(libc::EIO);
    }
    Ok(buf)
}

enum WriteState {
    Open(FileWriter),
    Done(Result<u64, i32>),
}

/// A file being written through the mount.
pub struct WriteSlot {
    /// The kernel's inode number for it.
    pub ino: u64,
    pub path: String,
    pub since: SystemTime,
    /// The mode it is created with.
    created_mode: u32,
    /// The mode and owner asked for while it is written (`fchmod`/`fchown` before `close`,
    /// as `tar` and `rsync` do), applied once it is complete.
    later: std::sync::Mutex<Later>,
    size: AtomicU64,
    /// Its handle was released (the last descriptor closed).
    released: std::sync::atomic::AtomicBool,
    state: Mutex<WriteState>,
}

/// Attribute changes waiting for the file to complete.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Later {
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl WriteSlot {
    pub fn new(ino: u64, path: String, mode: u32, writer: FileWriter) -> WriteSlot {
        WriteSlot {
            ino,
            path,
            created_mode: mode,
            later: Default::default(),
            since: SystemTime::now(),
            size: AtomicU64::new(0),
            released: Default::default(),
            state: Mutex::new(WriteState::Open(writer)),
        }
    }

    fn later(&self) -> std::sync::MutexGuard<'_, Later> {
        self.later.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The mode it will have.
    pub fn mode(&self) -> u32 {
        self.later().mode.unwrap_or(self.created_mode)
    }

    /// Asks for `mode` and/or a new owner and group once the file is complete.
    pub fn change(&self, mode: Option<u32>, owner: Option<String>, group: Option<String>) {
        let mut l = self.later();
        if let Some(m) = mode {
            l.mode = (m != self.created_mode).then_some(m);
        }
        if owner.is_some() {
            l.owner = owner;
        }
        if group.is_some() {
            l.group = group;
        }
    }

    /// The changes still to apply (each handed out once).
    pub fn take_changes(&self) -> Later {
        std::mem::take(&mut *self.later())
    }

    /// Its last descriptor was closed.
    pub fn mark_released(&self) {
        self.released.store(true, Ordering::SeqCst);
    }

    pub fn released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }

    /// Bytes taken so far.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    /// Takes `data` at `offset`, which must be where the file ends now.
    pub async fn write(&self, offset: u64, data: &[u8]) -> Result<u32, i32> {
        let mut st = self.state.lock().await;
        let WriteState::Open(w) = &mut *st else {
            return Err(libc::EIO);
        };
        let at = self.size();
        if offset != at {
            tracing::warn!(
                path = self.path,
                offset,
                end = at,
                "write not at the end of a write-once file: the new file is abandoned"
            );
            *st = WriteState::Done(Err(libc::EIO));
            return Err(libc::EOPNOTSUPP);
        }
        if let Err(e) = w.write_all(data).await {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            tracing::warn!(path = self.path, "write failed: {e}");
            *st = WriteState::Done(Err(errno));
            return Err(errno);
        }
        self.size.fetch_add(data.len() as u64, Ordering::SeqCst);
        Ok(data.len() as u32)
    }

    /// Completes the file (once; later calls report the first outcome): its length, or the
    /// errno of why nothing became visible.
    pub async fn finish(&self) -> Result<u64, i32> {
        let mut st = self.state.lock().await;
        match std::mem::replace(&mut *st, WriteState::Done(Err(libc::EIO))) {
            WriteState::Done(r) => {
                *st = WriteState::Done(r);
                r
            }
            WriteState::Open(w) => {
                let r = w.close().await.map_err(|e| {
                    tracing::warn!(path = self.path, "completing the file failed: {e}");
                    errno_of(&e)
                });
                *st = WriteState::Done(r);
                r
            }
        }
    }
}
