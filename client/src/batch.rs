//! Many namespace operations per call (the master's `Batch` RPC: one call and one Raft entry
//! for up to 1,000 items, each with its own result): [`Client::batch`] for mkdir, delete,
//! trash and rename, and [`Client::put_many`], which stores many local files with their
//! creates in one call, their data written a few files at a time, and their completes in
//! another call. Every item carries its own request id, kept across retries of the call, so
//! a retried batch reports each item's first answer.
use crate::error::{ClientError, Result};
use crate::write::{Construction, CreateOptions};
use crate::Client;
use futures_util::stream::{self, StreamExt};
use shale_proto::metapb::batch_item::Op;
use shale_proto::metapb::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use tonic::{Code, Status};

/// Items per `Batch` call (the master's limit).
pub const BATCH_ITEMS_MAX: usize = 1000;
/// Files of a [`Client::put_many`] created (and completed) per call.
const PUT_GROUP: usize = 256;
/// Files of a [`Client::put_many`] written at once.
const PUT_PARALLEL: usize = 4;

/// One namespace operation of [`Client::batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceOp {
    /// [`Client::mkdir_mode`]: `path`, with `parents` made on the way, `mode` (None: 0755).
    Mkdir {
        /// The directory.
        path: String,
        /// Make missing parents too.
        parents: bool,
        /// Mode bits (None: 0755).
        mode: Option<u32>,
    },
    /// [`Client::delete`]: removes `path` for good.
    Delete {
        /// What to remove.
        path: String,
        /// A directory with everything below it.
        recursive: bool,
    },
    /// [`Client::trash`]: moves the path to the caller's trash; the result's `path` says where.
    Trash {
        /// What to move.
        path: String,
        /// A directory with everything below it.
        recursive: bool,
    },
    /// [`Client::rename`] (or, with `no_replace`, [`Client::rename_no_replace`]).
    Rename {
        /// From.
        src: String,
        /// To.
        dst: String,
        /// Fail if `dst` exists.
        no_replace: bool,
    },
}

fn outcome(r: BatchResult) -> Result<BatchResult> {
    if r.code == 0 {
        Ok(r)
    } else {
        Err(Status::new(Code::from(r.code as i32), r.message).into())
    }
}

impl Client {
    /// Sends `items` in `Batch` calls of at most [`BATCH_ITEMS_MAX`]; one result per item, in
    /// order. An `Err` of the whole call means the cluster could not be reached (items of
    /// calls that were answered may have taken effect: their request ids make a retry safe).
    async fn batch_items(&self, items: Vec<Op>) -> Result<Vec<Result<BatchResult>>> {
        let mut out = Vec::with_capacity(items.len());
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let part: Vec<BatchItem> = items
                .by_ref()
                .take(BATCH_ITEMS_MAX)
                .map(|op| BatchItem { op: Some(op) })
                .collect();
            let n = part.len();
            let reply = self
                .masters
                .call(|mut m| {
                    let items = part.clone();
                    async move { m.batch(BatchRequest { items }).await }
                })
                .await?;
            if reply.results.len() != n {
                return Err(ClientError::Other(format!(
                    "batch of {n} items answered with {} results",
                    reply.results.len()
                )));
            }
            out.extend(reply.results.into_iter().map(outcome));
        }
        Ok(out)
    }

    /// Applies `ops` in order, many per call and per Raft entry; each gets its own result (a
    /// failing one does not stop the others).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// use shale_client::NamespaceOp;
    /// let ops: Vec<NamespaceOp> = (0..100)
    ///     .map(|i| NamespaceOp::Mkdir { path: format!("/runs/{i}"), parents: true, mode: None })
    ///     .collect();
    /// for (op, r) in ops.iter().zip(c.batch(&ops).await?) {
    ///     if let Err(e) = r { eprintln!("{op:?}: {e}"); }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn batch(&self, ops: &[NamespaceOp]) -> Result<Vec<Result<BatchResult>>> {
        let items = ops
            .iter()
            .map(|op| {
                let request_id = self.masters.request_id();
                match op.clone() {
                    NamespaceOp::Mkdir {
                        path,
                        parents,
                        mode,
                    } => Op::Mkdir(MkdirRequest {
                        path,
                        parents,
                        mode,
                        request_id,
                    }),
                    NamespaceOp::Delete { path, recursive } => Op::Delete(DeleteRequest {
                        path,
                        recursive,
                        request_id,
                    }),
                    NamespaceOp::Trash { path, recursive } => Op::Trash(DeleteRequest {
                        path,
                        recursive,
                        request_id,
                    }),
                    NamespaceOp::Rename {
                        src,
                        dst,
                        no_replace,
                    } => Op::Rename(RenameRequest {
                        src,
                        dst,
                        no_replace,
                        request_id,
                    }),
                }
            })
            .collect();
        self.batch_items(items).await
    }

    /// Stores each local file at its remote path (`(remote, local)` pairs), as [`Client::put_with`]
    /// does one: each file appears atomically when complete, or not at all. Creates and
    /// completes go many per call; data is written a few files at a time. `progress` gets the
    /// bytes written so far over all files. One result per file, in order: its length or why
    /// it was not written.
    pub async fn put_many(
        &self,
        files: &[(String, PathBuf)],
        opts: &CreateOptions,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<Result<u64>>> {
        let done = AtomicU64::new(0);
        let mut out = Vec::with_capacity(files.len());
        for group in files.chunks(PUT_GROUP) {
            out.extend(self.put_group(group, opts, progress, &done).await?);
        }
        Ok(out)
    }

    async fn put_group(
        &self,
        files: &[(String, PathBuf)],
        opts: &CreateOptions,
        progress: &(dyn Fn(u64) + Sync),
        done: &AtomicU64,
    ) -> Result<Vec<Result<u64>>> {
        let (id, lease_ms) = (self.id, self.config.lease_ms);
        let creates = files
            .iter()
            .map(|(remote, _)| {
                Op::Create(CreateRequest {
                    path: remote.clone(),
                    overwrite: opts.overwrite,
                    replication: opts.replication,
                    chunk_size: opts.chunk_size,
                    client_id: id,
                    lease_ms,
                    mode: opts.mode,
                    request_id: self.masters.request_id(),
                })
            })
            .collect();
        let created = self.batch_items(creates).await?;
        // Each created file is held (lease renewed, abandoned unless completed) from here on.
        let held: Vec<Result<(BatchResult, Construction)>> = created
            .into_iter()
            .map(|r| {
                r.map(|c| {
                    let building = Construction::start(self.masters.clone(), c.inode, id, lease_ms);
                    (c, building)
                })
            })
            .collect();
        let written: Vec<Result<(u64, Vec<bytes::Bytes>, Construction)>> =
            stream::iter(files.iter().zip(held))
                .map(|((remote, local), h)| async move {
                    let (c, building) = h?;
                    let mut src = tokio::fs::File::open(local)
                        .await
                        .map_err(|e| ClientError::Other(format!("{}: {e}", local.display())))?;
                    let need = self.replicas_needed(c.replication);
                    let before = done.load(Ordering::Relaxed);
                    let each = |n: u64| progress(before + n);
                    let (total, digests) = self
                        .write_chunks(remote, c.inode, c.chunk_size, need, &mut src, &each)
                        .await?;
                    progress(done.fetch_add(total, Ordering::Relaxed) + total);
                    Ok((total, digests, building))
                })
                .buffered(PUT_PARALLEL)
                .collect()
                .await;
        let mut completes = Vec::new();
        let mut waiting = Vec::new();
        let mut out: Vec<Result<u64>> = Vec::with_capacity(files.len());
        for (i, w) in written.into_iter().enumerate() {
            match w {
                Ok((total, digests, building)) => {
                    completes.push(Op::Complete(CompleteRequest {
                        file: building.file(),
                        client_id: id,
                        length: total,
                        chunk_digests: digests,
                        request_id: self.masters.request_id(),
                    }));
                    waiting.push((i, total, building));
                    out.push(Ok(total));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        let completed = self.batch_items(completes).await?;
        for ((i, total, building), r) in waiting.into_iter().zip(completed) {
            match r {
                Ok(_) => {
                    building.settled();
                    out[i] = Ok(total);
                }
                // Dropping `building` abandons the file.
                Err(e) => out[i] = Err(e),
            }
        }
        Ok(out)
    }
}
