//! The chaining values of a sealed chunk's blocks (`ChunkDigests`), for readers that check
//! part of a chunk end to end (`shale_security::digest`). Computed from the chunk's bytes on
//! the first request and kept in a bounded cache: a sealed chunk at a version never changes,
//! so an entry stays right until the chunk is deleted (then it is simply never asked for, and
//! ages out).
//!
//! Nothing here is trusted by readers: they check the values against the writer's digest.
use super::service::ChunkServer;
use super::status::status_of;
use shale_proto::ChunkRef as DomainRef;
use shale_security::digest::{block_cv, BLOCK_BYTES};
use std::sync::Arc;
use tonic::Status;

/// Chunks whose chaining values are kept (32 KiB each for a 64 MiB chunk: 8 MiB in all).
pub const CACHED_CHUNKS_MAX: usize = 256;
/// Bytes read at a time while hashing (large reads: the chunk is usually cold on disk).
const READ_BYTES: u64 = 8 << 20;

/// (length, chaining values) of one chunk, computed once however many readers ask at once.
pub type Cvs = Arc<tokio::sync::OnceCell<(u64, Arc<Vec<u8>>)>>;

/// (chunk id, version) → its [`Cvs`], oldest first out.
pub type CvCache = shale_proto::fifo::FifoCache<(u64, u64), Cvs>;

impl ChunkServer {
    /// (length, chaining values as 32-byte runs) of sealed chunk `c` (empty for a chunk of one
    /// block). Reads the chunk through the store, which checks every byte against its crc32c
    /// sidecar, so a disk error is an error here rather than a wrong value.
    /// Readers of one chunk that ask together share one computation (a sequential reader's
    /// windows of a new chunk all ask at once).
    pub(crate) async fn chunk_cvs(&self, c: DomainRef) -> Result<(u64, Arc<Vec<u8>>), Status> {
        let key = (c.id.get(), c.version.get());
        let cell = self.cvs.get_or_insert_with(key, Default::default);
        cell.get_or_try_init(|| self.compute_cvs(c)).await.cloned()
    }

    async fn compute_cvs(&self, c: DomainRef) -> Result<(u64, Arc<Vec<u8>>), Status> {
        let info = self.sealed(c)?;
        let len = info.length_bytes;
        let mut out = Vec::new();
        if len > BLOCK_BYTES {
            out.reserve(len.div_ceil(BLOCK_BYTES) as usize * 32);
            let mut at = 0;
            while at < len {
                let n = (len - at).min(READ_BYTES);
                let data = self.store.read(c, at, n).await.map_err(|e| status_of(&e))?;
                // Reads are whole blocks (READ_BYTES is a multiple of BLOCK_BYTES).
                for (i, b) in data.chunks(BLOCK_BYTES as usize).enumerate() {
                    out.extend_from_slice(&block_cv(b, at / BLOCK_BYTES + i as u64));
                }
                at += n;
                tokio::task::yield_now().await;
            }
        }
        Ok((len, Arc::new(out)))
    }
}
