//! Metric names of the raft log.
use std::time::Duration;

pub const APPENDS: &str = "shale_raftlog_appends_total";
pub const APPEND_BYTES: &str = "shale_raftlog_append_bytes_total";
pub const FSYNCS: &str = "shale_raftlog_fsyncs_total";
pub const FSYNC_SECONDS: &str = "shale_raftlog_fsync_seconds";
pub const BATCH_WRITES: &str = "shale_raftlog_batch_writes";
pub const BATCH_BYTES: &str = "shale_raftlog_batch_bytes";

pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(APPENDS, "log entries appended");
    describe_counter!(APPEND_BYTES, Unit::Bytes, "bytes of log entries appended");
    describe_counter!(FSYNCS, "fdatasync calls of the log");
    describe_histogram!(FSYNC_SECONDS, Unit::Seconds, "fdatasync latency");
    describe_histogram!(
        BATCH_WRITES,
        "writes made durable by one fsync (group commit)"
    );
    describe_histogram!(BATCH_BYTES, Unit::Bytes, "bytes written by one batch");
}

pub(crate) fn appended(entries: usize, bytes: usize) {
    metrics::counter!(APPENDS).increment(entries as u64);
    metrics::counter!(APPEND_BYTES).increment(bytes as u64);
}

pub(crate) fn fsync(took: Duration) {
    metrics::counter!(FSYNCS).increment(1);
    metrics::histogram!(FSYNC_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn batch(writes: usize, bytes: usize) {
    metrics::histogram!(BATCH_WRITES).record(writes as f64);
    metrics::histogram!(BATCH_BYTES).record(bytes as f64);
}
