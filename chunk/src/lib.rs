//! Shale's chunk store: the storage engine of a chunkserver.
//!
//! * [`format`]: the versioned sidecar format and block crc32c math (pure);
//! * [`backend`]: the I/O boundary (io_uring, std::fs, in-memory with faults);
//! * [`store`]: the [`ChunkStore`] trait and [`Store`], its implementation over any backend:
//!   create → write (append) → seal, verified reads, versions, quarantine, recovery at open;
//! * [`durable`]: the temp → sync → rename → dir-sync recipe;
//! * [`metrics`]: metric names.
//!
//! [`open_disk_store`] opens a store on a directory with io_uring when it can start here and
//! `std::fs` otherwise, and logs which.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod backend;
pub mod durable;
pub mod error;
pub mod format;
pub mod metrics;
pub mod names;
pub mod server;
pub mod store;

pub use error::{ChunkError, Result};
pub use store::{
    ChunkInfo, ChunkStore, QuarantineRecord, RecoveryReport, Store, StoreConfig, Usage,
    VerifyAtOpen,
};

use std::path::Path;
use std::sync::Arc;

/// Which I/O backend a disk store uses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// io_uring if it starts and passes a probe write, else std::fs.
    #[default]
    Auto,
    Uring,
    Std,
}

/// io_uring threads of a disk store.
pub const URING_THREADS_DEFAULT: usize = 2;

/// Opens (creating if needed) the chunk store in `dir`.
pub async fn open_disk_store(
    dir: &Path,
    config: StoreConfig,
    choice: BackendChoice,
) -> Result<(Arc<dyn ChunkStore>, RecoveryReport)> {
    let bad = |why: String| ChunkError::BadStore {
        path: dir.display().to_string(),
        why,
    };
    #[cfg(target_os = "linux")]
    if choice != BackendChoice::Std {
        match start_uring(dir).await {
            Ok(b) => {
                let (s, r) = Store::open(b, config).await?;
                tracing::info!(dir = %dir.display(), "chunk store backend: io_uring");
                return Ok((Arc::new(s), r));
            }
            Err(e) if choice == BackendChoice::Uring => {
                return Err(bad(format!("io_uring unavailable: {e}")));
            }
            Err(e) => {
                tracing::warn!(error = %e, "io_uring unavailable; chunk store falls back to std::fs");
            }
        }
    }
    let b = backend::std_fs::StdBackend::new(dir).map_err(|e| bad(e.to_string()))?;
    let (s, r) = Store::open(b, config).await?;
    tracing::info!(dir = %dir.display(), "chunk store backend: std::fs");
    Ok((Arc::new(s), r))
}

/// Starts the io_uring backend and proves it works with a synced probe write.
#[cfg(target_os = "linux")]
async fn start_uring(dir: &Path) -> std::io::Result<backend::uring::UringBackend> {
    use backend::Backend;
    let b = backend::uring::UringBackend::new(dir, URING_THREADS_DEFAULT)?;
    let probe = "uring-probe.tmp";
    let fh = b.create(probe).await?;
    let r = async {
        b.write_at(fh, 0, vec![bytes::Bytes::from_static(&[0u8; 4096])])
            .await?;
        b.sync_data(fh).await
    }
    .await;
    b.close(fh).await?;
    b.remove(probe).await?;
    r.map(|()| b)
}
