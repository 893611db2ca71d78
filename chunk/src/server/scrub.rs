//! The scrubber: re-verifies every sealed chunk in the background at a bounded rate. A chunk
//! that fails is quarantined by the store's verified read and reported with the next heartbeat;
//! the leader then re-creates the replica from a healthy one.
use super::service::ChunkServer;
use crate::error::ChunkError;
use shale_proto::ChunkRef;
use std::sync::Arc;
use std::time::Duration;

const PIECE_BYTES: u64 = 1 << 20;
pub const SCRUBBED_BYTES: &str = "shale_chunk_scrubbed_bytes_total";

/// Runs passes over all sealed chunks, `rate_bytes_per_s` at most, one pass every `every`.
pub async fn run(server: Arc<ChunkServer>, rate_bytes_per_s: u64, every: Duration) {
    if rate_bytes_per_s == 0 {
        return;
    }
    let pause_per_piece = Duration::from_secs_f64(PIECE_BYTES as f64 / rate_bytes_per_s as f64);
    loop {
        let mut bad = 0;
        for info in server.store.list() {
            let c = ChunkRef {
                id: info.id,
                version: info.version,
            };
            let mut off = 0;
            while off < info.length_bytes {
                let n = PIECE_BYTES.min(info.length_bytes - off);
                match server.store.read(c, off, n).await {
                    Ok(_) => metrics::counter!(SCRUBBED_BYTES).increment(n),
                    Err(ChunkError::ChecksumMismatch { chunk, block }) => {
                        tracing::warn!(%chunk, block, "scrubber found a corrupt replica");
                        bad += 1;
                        server.report_now.notify_one();
                        break;
                    }
                    // Deleted or replaced meanwhile: nothing to verify.
                    Err(_) => break,
                }
                off += n;
                tokio::time::sleep(pause_per_piece).await;
            }
        }
        tracing::info!(bad, "scrub pass done");
        tokio::time::sleep(every).await;
    }
}
