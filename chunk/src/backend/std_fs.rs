//! The `std::fs` backend: positional writes and fdatasync on tokio's blocking pool.
//! Used when io_uring is unavailable (e.g. blocked by a seccomp profile).
use super::posix::{self, blocking};
use super::FileHandle;
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct StdBackend {
    dir: posix::DiskDir,
    files: Mutex<HashMap<u64, Arc<File>>>,
    next: AtomicU64,
}

impl StdBackend {
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = posix::DiskDir::new(root.into())?;
        Ok(StdBackend {
            dir,
            files: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    /// Keeps an opened file in the table; its handle.
    fn keep(&self, file: File) -> io::Result<FileHandle> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.files
            .lock()
            .map_err(|_| io::Error::other("file table poisoned"))?
            .insert(id, Arc::new(file));
        Ok(FileHandle(id))
    }

    fn file(&self, fh: FileHandle) -> io::Result<Arc<File>> {
        self.files
            .lock()
            .map_err(|_| io::Error::other("file table poisoned"))?
            .get(&fh.0)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown file handle"))
    }
}

posix::disk_backend_impl!(StdBackend, {
    fn kind(&self) -> &'static str {
        "std"
    }

    async fn create(&self, name: &str) -> io::Result<FileHandle> {
        let path = self.dir.path(name)?;
        let file = blocking(move || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
        })
        .await?;
        self.keep(file)
    }

    async fn open_existing(&self, name: &str) -> io::Result<FileHandle> {
        let path = self.dir.path(name)?;
        let file = blocking(move || OpenOptions::new().read(true).write(true).open(path)).await?;
        self.keep(file)
    }

    async fn open_direct(&self, name: &str) -> io::Result<Option<FileHandle>> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.path(name)?;
        let opened = blocking(move || {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
        })
        .await;
        let file = match opened {
            Ok(f) => f,
            Err(e) if posix::direct_refused(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.keep(file).map(Some)
    }

    async fn write_at(&self, fh: FileHandle, offset: u64, bufs: Vec<Bytes>) -> io::Result<()> {
        let f = self.file(fh)?;
        blocking(move || {
            let mut at = offset;
            for b in &bufs {
                f.write_all_at(b, at)?;
                at += b.len() as u64;
            }
            Ok(())
        })
        .await
    }

    async fn sync_data(&self, fh: FileHandle) -> io::Result<()> {
        let f = self.file(fh)?;
        blocking(move || f.sync_data()).await
    }

    async fn close(&self, fh: FileHandle) -> io::Result<()> {
        self.files
            .lock()
            .map_err(|_| io::Error::other("file table poisoned"))?
            .remove(&fh.0);
        Ok(())
    }
});
