//! The io_uring backend: chunk data and sidecars are written and synced through tokio-uring.
//!
//! tokio-uring files are `!Send`, so they live on dedicated I/O threads (one tokio-uring runtime
//! each). Callers send an [`Op`] over a bounded channel and await a oneshot reply; each thread runs
//! every op as its own local task, so many writes are in flight in one ring at once. A handle's
//! low byte names its thread. Directory operations, listing and range reads are not data writes
//! and use the shared blocking code in [`super::posix`].
//!
//! Invariant: a file is only ever touched by the thread that created it.
use super::posix;
use super::FileHandle;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Ops queued per I/O thread before senders wait.
const QUEUE_DEPTH_MAX: usize = 256;
/// Most I/O threads a backend may start.
pub const THREADS_MAX: usize = 16;

type Reply<T> = oneshot::Sender<io::Result<T>>;

enum Op {
    Create {
        path: PathBuf,
        id: u64,
        how: Open,
        reply: Reply<()>,
    },
    WriteAt {
        id: u64,
        offset: u64,
        bufs: Vec<Bytes>,
        reply: Reply<()>,
    },
    SyncData {
        id: u64,
        reply: Reply<()>,
    },
    Close {
        id: u64,
        reply: Reply<()>,
    },
}

/// How [`Op::Create`] opens its file.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Open {
    /// Create (or truncate) it.
    New,
    /// The existing file, for O_DIRECT writes.
    Direct,
    /// The existing file, as it is.
    Existing,
}

pub struct UringBackend {
    dir: posix::DiskDir,
    threads: Vec<mpsc::Sender<Op>>,
    next: AtomicU64,
}

type Files = Rc<RefCell<HashMap<u64, Rc<tokio_uring::fs::File>>>>;

impl UringBackend {
    /// Starts `threads` I/O threads. Fails (without panicking) when io_uring cannot start here,
    /// e.g. under a seccomp profile that blocks `io_uring_setup`.
    pub fn new(root: impl Into<PathBuf>, threads: usize) -> io::Result<Self> {
        let dir = posix::DiskDir::new(root.into())?;
        let n = threads.clamp(1, THREADS_MAX);
        let mut senders = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH_MAX);
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("shale-uring-{i}"))
                .spawn(move || io_thread(rx, ready_tx))?;
            ready_rx
                .recv()
                .map_err(|_| io::Error::other("io_uring thread exited during start"))??;
            senders.push(tx);
        }
        Ok(UringBackend {
            dir,
            threads: senders,
            next: AtomicU64::new(1),
        })
    }

    /// A new file handle id; its low byte names its I/O thread.
    fn new_id(&self) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n << 8) | (n % self.threads.len() as u64)
    }

    async fn call<T>(&self, id: u64, op: impl FnOnce(Reply<T>) -> Op) -> io::Result<T> {
        let shard = (id & 0xff) as usize % self.threads.len();
        let (tx, rx) = oneshot::channel();
        self.threads[shard]
            .send(op(tx))
            .await
            .map_err(|_| io::Error::other("io_uring thread stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("io_uring thread dropped the request"))?
    }
}

fn io_thread(rx: mpsc::Receiver<Op>, ready: std::sync::mpsc::Sender<io::Result<()>>) {
    let rt = match tokio_uring::Runtime::new(&tokio_uring::builder()) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    rt.block_on(serve(rx));
}

async fn serve(mut rx: mpsc::Receiver<Op>) {
    let files: Files = Rc::new(RefCell::new(HashMap::new()));
    while let Some(op) = rx.recv().await {
        let files = files.clone();
        tokio_uring::spawn(run(op, files));
    }
}

fn lookup(files: &Files, id: u64) -> io::Result<Rc<tokio_uring::fs::File>> {
    files
        .borrow()
        .get(&id)
        .cloned()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown file handle"))
}

async fn run(op: Op, files: Files) {
    match op {
        Op::Create {
            path,
            id,
            how,
            reply,
        } => {
            let mut o = tokio_uring::fs::OpenOptions::new();
            match how {
                Open::Direct => o.write(true).custom_flags(libc::O_DIRECT),
                Open::Existing => o.read(true).write(true),
                Open::New => o.read(true).write(true).create(true).truncate(true),
            };
            let r = o.open(&path).await.map(|f| {
                files.borrow_mut().insert(id, Rc::new(f));
            });
            let _ = reply.send(r);
        }
        Op::WriteAt {
            id,
            offset,
            bufs,
            reply,
        } => {
            let want: usize = bufs.iter().map(|b| b.len()).sum();
            let r = match lookup(&files, id) {
                Ok(f) => match f.writev_at_all(bufs, Some(offset)).await.0 {
                    Ok(n) if n == want => Ok(()),
                    Ok(n) => Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("wrote {n} of {want} bytes"),
                    )),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            let _ = reply.send(r);
        }
        Op::SyncData { id, reply } => {
            let r = match lookup(&files, id) {
                Ok(f) => f.sync_data().await,
                Err(e) => Err(e),
            };
            let _ = reply.send(r);
        }
        Op::Close { id, reply } => {
            let f = files.borrow_mut().remove(&id);
            let r = match f.map(Rc::try_unwrap) {
                Some(Ok(f)) => f.close().await,
                // Still in use by an op in flight: it closes when that op drops it.
                Some(Err(_)) | None => Ok(()),
            };
            let _ = reply.send(r);
        }
    }
}

posix::disk_backend_impl!(UringBackend, {
    fn kind(&self) -> &'static str {
        "uring"
    }

    async fn create(&self, name: &str) -> io::Result<FileHandle> {
        let path = self.dir.path(name)?;
        let id = self.new_id();
        self.call(id, |reply| Op::Create {
            path,
            id,
            how: Open::New,
            reply,
        })
        .await?;
        Ok(FileHandle(id))
    }

    async fn open_existing(&self, name: &str) -> io::Result<FileHandle> {
        let path = self.dir.path(name)?;
        let id = self.new_id();
        self.call(id, |reply| Op::Create {
            path,
            id,
            how: Open::Existing,
            reply,
        })
        .await?;
        Ok(FileHandle(id))
    }

    async fn open_direct(&self, name: &str) -> io::Result<Option<FileHandle>> {
        let path = self.dir.path(name)?;
        let id = self.new_id();
        match self
            .call(id, |reply| Op::Create {
                path,
                id,
                how: Open::Direct,
                reply,
            })
            .await
        {
            Ok(()) => Ok(Some(FileHandle(id))),
            Err(e) if posix::direct_refused(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write_at(&self, fh: FileHandle, offset: u64, bufs: Vec<Bytes>) -> io::Result<()> {
        let id = fh.0;
        self.call(id, |reply| Op::WriteAt {
            id,
            offset,
            bufs,
            reply,
        })
        .await
    }

    async fn sync_data(&self, fh: FileHandle) -> io::Result<()> {
        let id = fh.0;
        self.call(id, |reply| Op::SyncData { id, reply }).await
    }

    async fn close(&self, fh: FileHandle) -> io::Result<()> {
        let id = fh.0;
        self.call(id, |reply| Op::Close { id, reply }).await
    }
});
