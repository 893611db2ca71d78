//! The durability recipe, written once: a file becomes durable under its final name only via
//! temp name → write → fdatasync → rename → directory sync. Used for every sidecar.
use crate::backend::Backend;
use bytes::Bytes;
use std::io;

/// Writes `data` to `tmp_name` and syncs it. The caller renames it into place and then calls
/// [`commit`].
pub async fn write_synced_temp<B: Backend + ?Sized>(
    backend: &B,
    tmp_name: &str,
    data: Bytes,
) -> io::Result<()> {
    let fh = backend.create(tmp_name).await?;
    let res = async {
        backend.write_at(fh, 0, vec![data]).await?;
        backend.sync_data(fh).await
    }
    .await;
    let closed = backend.close(fh).await;
    res.and(closed)
}

/// Renames each `(from, to)` in order, then syncs the directory: after this returns, every
/// rename is durable.
pub async fn commit<B: Backend + ?Sized>(backend: &B, renames: &[(&str, &str)]) -> io::Result<()> {
    for (from, to) in renames {
        backend.rename(from, to).await?;
    }
    backend.sync_dir().await
}
