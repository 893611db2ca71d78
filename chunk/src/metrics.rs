//! Metric names of the chunk store (the `metrics` crate; exported by the servers as Prometheus
//! text). Labels: `backend` = uring | std | mem.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const BYTES_WRITTEN: &str = "shale_chunk_bytes_written_total";
pub const BYTES_READ: &str = "shale_chunk_bytes_read_total";
pub const WRITE_OPS: &str = "shale_chunk_write_ops_total";
pub const READ_OPS: &str = "shale_chunk_read_ops_total";
pub const SEALS: &str = "shale_chunk_seals_total";
pub const WRITE_SECONDS: &str = "shale_chunk_write_seconds";
pub const SEAL_SECONDS: &str = "shale_chunk_seal_seconds";
pub const READ_SECONDS: &str = "shale_chunk_read_seconds";
pub const CHECKSUM_FAILURES: &str = "shale_chunk_checksum_failures_total";
pub const QUARANTINED: &str = "shale_chunk_quarantined_total";

/// Registers descriptions once per process (harmless to call again).
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        BYTES_WRITTEN,
        Unit::Bytes,
        "chunk bytes accepted for writing"
    );
    describe_counter!(
        BYTES_READ,
        Unit::Bytes,
        "verified chunk bytes returned by reads"
    );
    describe_counter!(WRITE_OPS, "chunk write calls");
    describe_counter!(READ_OPS, "chunk read calls");
    describe_counter!(SEALS, "chunks sealed (durable)");
    describe_histogram!(WRITE_SECONDS, Unit::Seconds, "latency of one write call");
    describe_histogram!(SEAL_SECONDS, Unit::Seconds, "latency of sealing a chunk");
    describe_histogram!(READ_SECONDS, Unit::Seconds, "latency of one verified read");
    describe_counter!(CHECKSUM_FAILURES, "blocks that failed crc verification");
    describe_counter!(QUARANTINED, "replicas moved to quarantine");
    describe_counter!(
        crate::server::scrub::SCRUBBED_BYTES,
        Unit::Bytes,
        "chunk bytes the background scrubber re-read and verified"
    );
}

/// Chunk bytes written since the process started (every backend), for heartbeats.
pub static TOTAL_WRITTEN: AtomicU64 = AtomicU64::new(0);
/// Verified chunk bytes returned by reads since the process started, for heartbeats.
pub static TOTAL_READ: AtomicU64 = AtomicU64::new(0);

pub(crate) fn wrote(backend: &'static str, bytes: u64, took: Duration) {
    TOTAL_WRITTEN.fetch_add(bytes, Ordering::Relaxed);
    metrics::counter!(BYTES_WRITTEN, "backend" => backend).increment(bytes);
    metrics::counter!(WRITE_OPS, "backend" => backend).increment(1);
    metrics::histogram!(WRITE_SECONDS, "backend" => backend).record(took.as_secs_f64());
}

pub(crate) fn sealed(backend: &'static str, took: Duration) {
    metrics::counter!(SEALS, "backend" => backend).increment(1);
    metrics::histogram!(SEAL_SECONDS, "backend" => backend).record(took.as_secs_f64());
}

pub(crate) fn read(backend: &'static str, bytes: u64, took: Duration) {
    TOTAL_READ.fetch_add(bytes, Ordering::Relaxed);
    metrics::counter!(BYTES_READ, "backend" => backend).increment(bytes);
    metrics::counter!(READ_OPS, "backend" => backend).increment(1);
    metrics::histogram!(READ_SECONDS, "backend" => backend).record(took.as_secs_f64());
}

pub(crate) fn checksum_failure(backend: &'static str) {
    metrics::counter!(CHECKSUM_FAILURES, "backend" => backend).increment(1);
}

pub(crate) fn quarantined(backend: &'static str) {
    metrics::counter!(QUARANTINED, "backend" => backend).increment(1);
}
