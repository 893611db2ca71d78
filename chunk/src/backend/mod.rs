//! The I/O boundary of the chunk store: one flat directory of files.
//!
//! [`Backend`] is all the store may do to a disk. Three implementations sit behind it and run the
//! same conformance suite (`tests/conformance.rs`):
//! * [`uring::UringBackend`]: data and sidecar writes and syncs through io_uring (tokio-uring) on
//!   dedicated I/O threads fed by bounded channels;
//! * [`std_fs::StdBackend`]: the same with `std::fs` on tokio's blocking pool, picked when io_uring
//!   cannot start;
//! * [`mem::MemBackend`]: an in-memory file system that models what survives a crash (only
//!   synced data and synced directory entries) and injects faults.
//!
//! Paths are plain names inside the store directory (one level, no separators), or names under
//! the `quarantine/` subdirectory.
use async_trait::async_trait;
use bytes::Bytes;
use std::io;

pub mod aligned;
pub mod mem;
pub(crate) mod posix;
pub mod std_fs;
#[cfg(target_os = "linux")]
pub mod uring;

/// An open, writable file owned by a backend.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileHandle(pub u64);

/// Space on the file system under the store.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FsSpace {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs and metrics: "uring", "std" or "mem".
    fn kind(&self) -> &'static str;
    /// Creates (or truncates) `name` for reading and writing.
    async fn create(&self, name: &str) -> io::Result<FileHandle>;
    /// Opens `name` (made by [`Backend::create`]) a second time, for O_DIRECT writes: the
    /// offset, the length and every buffer address of a write through it must be multiples of
    /// [`aligned::DIRECT_ALIGN`]. `Ok(None)` where the file system refuses O_DIRECT (tmpfs) or
    /// the backend has no such thing. Data written this way is durable, like any other, after
    /// [`Backend::sync_data`] on either handle (fdatasync flushes the file and the device cache).
    async fn open_direct(&self, _name: &str) -> io::Result<Option<FileHandle>> {
        Ok(None)
    }
    /// Opens an existing file for writing without truncating it (appends to a sealed chunk).
    async fn open_existing(&self, name: &str) -> io::Result<FileHandle>;
    /// Writes all of `bufs`, one after another, starting at `offset` (one vectored write where
    /// the backend can).
    async fn write_at(&self, fh: FileHandle, offset: u64, bufs: Vec<Bytes>) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    async fn sync_data(&self, fh: FileHandle) -> io::Result<()>;
    /// Closes the handle.
    async fn close(&self, fh: FileHandle) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`. Durable only after [`Backend::sync_dir`].
    async fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file. Durable only after [`Backend::sync_dir`].
    async fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes the directory entries (creates, renames, removes) durable, in the store directory
    /// and in `quarantine/`.
    async fn sync_dir(&self) -> io::Result<()>;
    /// Every regular file in the store directory (not subdirectories) with its size.
    async fn list(&self) -> io::Result<Vec<(String, u64)>>;
    /// Reads a whole (small) file.
    async fn read_all(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Bytes `[offset, offset + len)` of a file, in a buffer of their own (disk backends read
    /// with pread: a mapping of a file truncated underneath would raise SIGBUS). A file shorter
    /// than the range is `UnexpectedEof`.
    async fn map(&self, name: &str, offset: u64, len: u64) -> io::Result<Bytes>;
    /// [`Backend::map`], with the open file the bytes were read from where the backend has
    /// one: once the bytes are verified, the same range can be sent from the page cache
    /// (`sendfile`) instead of from the buffer (a copy fewer).
    async fn map_file(
        &self,
        name: &str,
        offset: u64,
        len: u64,
    ) -> io::Result<(Bytes, Option<std::fs::File>)> {
        Ok((self.map(name, offset, len).await?, None))
    }
    /// Space left on the file system.
    fn space(&self) -> io::Result<FsSpace>;
}
