//! Shale's durable Raft log.
//!
//! * [`record`]: the byte format (segment header, 8-byte aligned crc32c-framed records, batch
//!   markers); pure;
//! * [`index`]: the in-memory view (live entries, where each lives, tail cache, vote/committed/
//!   purged, per-segment contents); pure;
//! * [`segment`]: segment files and the replay at open (torn tail cut, corruption refused);
//! * `flusher`: the group-commit thread (one write + one fdatasync per batch);
//! * [`RaftLog`]: the log API, knowing nothing of openraft;
//! * [`LogStore`]: the openraft `RaftLogStorage` adapter (the only file naming openraft);
//! * [`dump`](dump::dump): a human-readable dump of a log directory.
//!
//! Durability rule: an append's completion (openraft's `LogFlushed`) fires only after the
//! fdatasync that covers it; `save_vote` returns only after its own sync.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod dump;
pub mod error;
mod flusher;
pub mod index;
mod log;
pub mod metrics;
mod openraft;
pub mod record;
pub mod segment;

pub use error::{LogError, Result};
pub use flusher::{Done, BATCH_BYTES_MAX};
pub use log::{LogConfig, RaftLog};
pub use openraft::LogStore;
pub use segment::OpenReport;
