//! The chunk store: the [`ChunkStore`] trait, its value types, and [`Store`], the one
//! implementation, generic over the I/O [`Backend`](crate::backend::Backend).
//!
//! Invariants (checked by `tests/conformance.rs` on every backend):
//! * a store holds at most one *sealed* version of a chunk and at most one version being
//!   written; a newer version replaces an older one only when the newer one is sealed;
//! * only sealed chunks are served, and every byte served was crc-verified after it was read;
//! * a chunk counts as sealed only after: data fdatasync → sidecar temp written and synced →
//!   renames → directory sync (see [`crate::durable`]);
//! * a write that fails (I/O error, no space) removes the partial chunk: nothing half-written
//!   stays behind or is ever served;
//! * a replica that fails verification is moved to `quarantine/`, never served again, and
//!   recorded for the master ([`ChunkStore::take_quarantine_reports`]).
use crate::error::Result;
use async_trait::async_trait;
use bytes::Bytes;
use shale_proto::{ChunkId, ChunkRef, ChunkVersion};
use std::fmt;

mod append;
mod engine;
mod recovery;

pub use engine::Store;

/// The default largest chunk: 64 MiB.
pub const CHUNK_SIZE_DEFAULT_BYTES: u64 = 64 << 20;
/// Backend writes of one chunk that may be in flight at once before a writer waits.
pub const INFLIGHT_WRITES_DEFAULT: usize = 4;
/// Frames of one chunk are gathered into vectored backend writes of about this size.
pub const WRITE_BATCH_DEFAULT_BYTES: u64 = 2 << 20;

/// How much of each chunk the recovery scan at open verifies.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum VerifyAtOpen {
    /// Sidecar, length, and the last block (catches torn tails; reads and the scrubber catch
    /// the rest). Fast enough for large disks.
    #[default]
    Tail,
    /// Every block of every chunk.
    Full,
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Largest chunk the store accepts (the cluster's chunk size).
    pub chunk_size_max_bytes: u64,
    /// Cap on the bytes this store may hold (`None`: the file system's size).
    pub capacity_bytes: Option<u64>,
    pub verify_at_open: VerifyAtOpen,
    /// Bounds the write-behind of one chunk: at most this many batches in flight...
    pub inflight_writes_max: usize,
    /// ...of about this many bytes each (so ≈ their product is buffered per chunk).
    pub write_batch_bytes: u64,
    /// Write chunk data with O_DIRECT (no page cache) where the backend and file system allow;
    /// sealing still fdatasyncs. Falls back to buffered writes, with a log line, elsewhere.
    pub direct_io: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            chunk_size_max_bytes: CHUNK_SIZE_DEFAULT_BYTES,
            capacity_bytes: None,
            verify_at_open: VerifyAtOpen::Tail,
            inflight_writes_max: INFLIGHT_WRITES_DEFAULT,
            write_batch_bytes: WRITE_BATCH_DEFAULT_BYTES,
            direct_io: true,
        }
    }
}

/// What the store knows of one chunk.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    pub id: ChunkId,
    pub version: ChunkVersion,
    pub length_bytes: u64,
    pub sealed: bool,
}

/// Space accounting.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub sealed_chunks: u64,
    pub open_chunks: u64,
}

/// A replica taken out of service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineRecord {
    pub id: ChunkId,
    pub version: Option<ChunkVersion>,
    pub reason: String,
}

impl fmt::Display for QuarantineRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{} {}: {}", self.id, v, self.reason),
            None => write!(f, "{}: {}", self.id, self.reason),
        }
    }
}

/// What the recovery scan at open found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub sealed_chunks: u64,
    pub sealed_bytes: u64,
    pub temp_removed: Vec<String>,
    pub quarantined: Vec<QuarantineRecord>,
    pub unknown_files: Vec<String>,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sealed chunks ({} bytes), {} temp files removed, {} quarantined, {} unknown files",
            self.sealed_chunks,
            self.sealed_bytes,
            self.temp_removed.len(),
            self.quarantined.len(),
            self.unknown_files.len()
        )?;
        for q in &self.quarantined {
            write!(f, "\n  quarantined {q}")?;
        }
        for u in &self.unknown_files {
            write!(f, "\n  unknown file {u} (left alone)")?;
        }
        Ok(())
    }
}

/// A chunkserver's local chunk storage.
#[async_trait]
pub trait ChunkStore: Send + Sync {
    /// Starts writing `chunk`. Refused if that id is already being written, or if the store
    /// holds the same or a newer sealed version.
    async fn create(&self, chunk: ChunkRef) -> Result<()>;
    /// Appends `data` at `offset`, which must equal the bytes written so far. May return before
    /// the bytes reach the disk (bounded write-behind); [`ChunkStore::seal`] waits for them.
    async fn write(&self, chunk: ChunkRef, offset: u64, data: Bytes) -> Result<()>;
    /// Makes the chunk durable and immutable, replacing any older sealed version.
    async fn seal(&self, chunk: ChunkRef) -> Result<ChunkInfo>;
    /// Record append: adds `data` to sealed `chunk` at `offset`, which must equal its length,
    /// durably (data fdatasync, then a new sidecar committed by rename: the commit point)
    /// before returning the new length. With `create`, a chunk the store does not hold is first
    /// created empty and sealed. Appends to one chunk are serialized; reads meanwhile see the
    /// old length or the new one.
    async fn append(&self, chunk: ChunkRef, offset: u64, data: Bytes, create: bool) -> Result<u64>;
    /// Discards a chunk being written.
    async fn abort(&self, chunk: ChunkRef) -> Result<()>;
    /// Verified bytes `[offset, offset + length)` of a sealed chunk.
    async fn read(&self, chunk: ChunkRef, offset: u64, length: u64) -> Result<Bytes>;
    /// [`ChunkStore::read`] and the crc32c of the bytes (for a frame on the wire): from the
    /// verified blocks' checksums where the range is whole blocks, else computed.
    async fn read_crc(&self, chunk: ChunkRef, offset: u64, length: u64) -> Result<(Bytes, u32)> {
        let data = self.read(chunk, offset, length).await?;
        let crc = crc32c::crc32c(&data);
        Ok((data, crc))
    }
    /// [`ChunkStore::read_crc`], with the open data file the bytes were read from and checked
    /// (where the store has one), so that a sender may `sendfile` the same range from the
    /// page cache instead of copying the buffer. The crc32c is the verified bytes', so a
    /// receiver still catches anything that changed on the disk between the check and the
    /// send.
    async fn read_with_file(
        &self,
        chunk: ChunkRef,
        offset: u64,
        length: u64,
    ) -> Result<(Bytes, u32, Option<std::fs::File>)> {
        let (data, crc) = self.read_crc(chunk, offset, length).await?;
        Ok((data, crc, None))
    }
    /// Deletes the chunk (sealed or being written) if its version is at most `version`.
    /// Returns whether anything was deleted.
    async fn delete(&self, id: ChunkId, version: ChunkVersion) -> Result<bool>;
    /// Every sealed chunk.
    fn list(&self) -> Vec<ChunkInfo>;
    /// One chunk, sealed or being written.
    fn stat(&self, id: ChunkId) -> Option<ChunkInfo>;
    fn usage(&self) -> Usage;
    /// Quarantine records not yet taken (for the next report to the master).
    fn take_quarantine_reports(&self) -> Vec<QuarantineRecord>;
    /// The I/O backend in use: "uring", "std" or "mem".
    fn backend_kind(&self) -> &'static str;
}
