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
/// Bytes read at a time while hashing.
const READ_BYTES: u64 = 1 << 20;

/// (chunk id, version) → (length, chaining values), oldest first out.
pub type CvCache = shale_proto::fifo::FifoCache<(u64, u64), (u64, Arc<Vec<u8>>)>;

impl ChunkServer {
    /// (length, chaining values as 32-byte runs) of sealed chunk `c` (empty for a chunk of one
    /// block). Reads the chunk through the store, which checks every byte against its crc32c
    /// sidecar, so a disk error is an error here rather than a wrong value.
    pub(crate) async fn chunk_cvs(&self, c: DomainRef) -> Result<(u64, Arc<Vec<u8>>), Status> {
        let key = (c.id.get(), c.version.get());
        if let Some(hit) = self.cvs.get(&key) {
            return Ok(hit);
        }
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
        let value = (len, Arc::new(out));
        self.cvs.put(key, value.clone());
        Ok(value)
    }
}
