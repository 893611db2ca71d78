//! Writing a file: create → for each chunk: allocate → pipeline write (retried alone on a fresh
//! allocation excluding the failed replica) → complete. One chunk's frames are buffered (for
//! retries); the writer lease is renewed in the background while the file is written.
use crate::error::{ClientError, Result};
use crate::master::Masters;
use crate::Client;
use bytes::Bytes;
use shale_proto::metapb::*;
use shale_proto::pb::{write_chunk_request::Kind, WriteChunkRequest};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

const FAILED_NODE: &str = "shale-failed-node";

/// Why a pipeline of `got` replicas is refused.
pub(crate) fn short_pipeline(got: usize, need: usize) -> String {
    format!(
        "only {got} chunkserver(s) could take a replica; a chunk is acknowledged only when \
         durable on at least {need} (ClientConfig::min_replicas)"
    )
}

/// A pipeline head that takes no frame for this long is blamed (a stopped or cut-off server is
/// judged by progress, not by the call's total timeout; a stalled replica further down is
/// blamed by the one before it, sooner).
const FRAME_STALL: Duration = Duration::from_secs(10);
/// How long the acknowledgement may take after the last frame (every replica seals; each
/// replica gives the next 10 s before blaming it).
const ACK_WAIT: Duration = Duration::from_secs(30);

/// A chunk's messages as a stream that records when the transport last took one.
struct Paced {
    msgs: std::vec::IntoIter<WriteChunkRequest>,
    t0: std::time::Instant,
    /// Milliseconds after `t0` when a message was last taken.
    taken_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    left: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl futures_util::Stream for Paced {
    type Item = WriteChunkRequest;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<WriteChunkRequest>> {
        use std::sync::atomic::Ordering;
        let next = self.msgs.next();
        if next.is_some() {
            let ms = self.t0.elapsed().as_millis() as u64;
            self.taken_ms.store(ms, Ordering::Relaxed);
            self.left.fetch_sub(1, Ordering::Relaxed);
        }
        std::task::Poll::Ready(next)
    }
}

/// Reads up to `chunk_bytes` from `src` as frames of `frame_bytes`.
async fn read_chunk<R: AsyncRead + Unpin>(
    src: &mut R,
    chunk_bytes: u64,
    frame_bytes: usize,
) -> Result<(Vec<Bytes>, u64)> {
    let mut frames = Vec::new();
    let mut total = 0u64;
    while total < chunk_bytes {
        let want = (chunk_bytes - total).min(frame_bytes as u64) as usize;
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            let n = src.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        total += filled as u64;
        let eof = filled < want;
        if filled > 0 {
            frames.push(Bytes::from(buf));
        }
        if eof {
            break;
        }
    }
    Ok((frames, total))
}

/// Writes one chunk through its pipeline; on failure names the replica to blame.
async fn send_chunk(
    transport: &shale_security::Transport,
    reply: &AllocateChunkReply,
    frames: &[Bytes],
    length: u64,
) -> std::result::Result<(), (Option<u64>, String)> {
    let head = reply
        .pipeline
        .first()
        .ok_or((None, "empty pipeline".to_string()))?;
    let mut client =
        crate::chunkserver::connect(transport, &head.address, Duration::from_secs(120))
            .map_err(|e| (Some(head.node_id), e))?;
    let header = WriteChunkRequest {
        kind: Some(Kind::Header(shale_proto::convert::pipeline_header(
            reply, length,
        ))),
    };
    let msgs: Vec<WriteChunkRequest> = std::iter::once(header)
        .chain(frames.iter().map(|f| WriteChunkRequest {
            kind: Some(Kind::Data(f.clone())),
        }))
        .collect();
    let t0 = std::time::Instant::now();
    let taken_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(msgs.len()));
    let paced = Paced {
        msgs: msgs.into_iter(),
        t0,
        taken_ms: taken_ms.clone(),
        left: left.clone(),
    };
    let call = client.write_chunk(paced);
    tokio::pin!(call);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let outcome = loop {
        tokio::select! {
            r = &mut call => break r,
            _ = tick.tick() => {
                use std::sync::atomic::Ordering;
                let idle = t0.elapsed().saturating_sub(Duration::from_millis(taken_ms.load(Ordering::Relaxed)));
                let pending = left.load(Ordering::Relaxed) > 0;
                if pending && idle > FRAME_STALL {
                    return Err((Some(head.node_id), format!(
                        "{} (node {}) accepted no data for {} s",
                        head.address, head.node_id, FRAME_STALL.as_secs()
                    )));
                }
                if !pending && idle > ACK_WAIT {
                    return Err((Some(head.node_id), format!(
                        "{} (node {}) did not acknowledge within {} s of the last frame",
                        head.address, head.node_id, ACK_WAIT.as_secs()
                    )));
                }
            }
        }
    };
    match outcome {
        Ok(r) => durable_as_placed(reply, &r.into_inner().durable_on),
        Err(s) => {
            let blamed = s
                .metadata()
                .get(FAILED_NODE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .or(Some(head.node_id));
            Err((blamed, format!("{:?}: {}", s.code(), s.message())))
        }
    }
}

impl Client {
    /// Writes one chunk over its pipeline head's data port, if it has one (None: it has none,
    /// or it could not be reached: the caller writes over gRPC).
    async fn send_chunk_port(
        &self,
        reply: &AllocateChunkReply,
        frames: &[Bytes],
        length: u64,
    ) -> Option<std::result::Result<(), (Option<u64>, String)>> {
        let head = reply.pipeline.first()?;
        if !self.config.data_port || head.data_address.is_empty() {
            return None;
        }
        let header = shale_proto::convert::pipeline_header(reply, length);
        let sent = crate::dataport::write(
            &self.config.transport,
            &self.data,
            (&head.data_address, head.node_id),
            header,
            frames,
            FRAME_STALL,
            ACK_WAIT,
        )
        .await;
        Some(match sent {
            Ok(durable_on) => durable_as_placed(reply, &durable_on),
            Err(crate::dataport::WriteFailure::Failed(node, why)) => Err((node, why)),
            Err(crate::dataport::WriteFailure::Unreachable(why)) => {
                tracing::debug!(%why, "data port unreachable; writing over gRPC");
                return None;
            }
        })
    }
}

/// Whether a write's acknowledgement names exactly the pipeline it was placed on.
fn durable_as_placed(
    reply: &AllocateChunkReply,
    durable_on: &[u64],
) -> std::result::Result<(), (Option<u64>, String)> {
    let want: Vec<u64> = reply.pipeline.iter().map(|p| p.node_id).collect();
    if durable_on != want {
        return Err((
            None,
            format!(
                "durable on {durable_on:?}, pipeline was {} replicas",
                reply.pipeline.len()
            ),
        ));
    }
    Ok(())
}

/// How a file is created.
///
/// ```
/// let opts = shale_client::CreateOptions::default().overwrite(true).replication(2);
/// assert!(opts.overwrite);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Replace an existing file atomically when the new one is complete (else the create fails
    /// with [`ClientError::AlreadyExists`]).
    pub overwrite: bool,
    /// Replicas of each chunk (0: the cluster's default).
    pub replication: u32,
    /// Chunk size in bytes (0: the cluster's default).
    pub chunk_size: u64,
    /// Mode bits of the new file (None: 0644).
    pub mode: Option<u32>,
}

impl CreateOptions {
    /// Mode bits of the new file (e.g. `0o600`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }
    /// Whether to replace an existing file.
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }
    /// Replicas per chunk (0: the default).
    pub fn replication(mut self, n: u32) -> Self {
        self.replication = n;
        self
    }
    /// Chunk size in bytes (0: the default).
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes;
        self
    }
}

/// A file under construction held by this client: its lease is renewed in the background while
/// this lives; dropped before [`Construction::finish`] (an error, a cancelled future, a dropped
/// writer) it stops renewing and abandons the file at once, so the path is free again and its
/// chunks become garbage (the abandon runs as a background clean-up, see [`Client::settle`]).
pub(crate) struct Construction {
    masters: std::sync::Arc<Masters>,
    file: u64,
    holder: u64,
    renewer: tokio::task::JoinHandle<()>,
    finished: bool,
}

impl Construction {
    pub(crate) fn start(
        masters: std::sync::Arc<Masters>,
        file: u64,
        holder: u64,
        lease_ms: u64,
    ) -> Self {
        let m = masters.clone();
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(lease_ms / 3)).await;
                let request_id = m.request_id();
                let r = m
                    .call(|mut c| async move {
                        c.renew_lease(LeaseRequest {
                            file,
                            client_id: holder,
                            lease_ms,
                            request_id,
                        })
                        .await
                    })
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "lease renewal failed");
                }
            }
        });
        Construction {
            masters,
            file,
            holder,
            renewer,
            finished: false,
        }
    }

    /// The file under construction.
    pub(crate) fn file(&self) -> u64 {
        self.file
    }

    /// The file was completed by other means (a `Batch`): stop renewing, do not abandon.
    pub(crate) fn settled(mut self) {
        self.renewer.abort();
        self.finished = true;
    }

    /// Makes the file visible with `length` bytes, committing each chunk's digest (all or
    /// none).
    pub(crate) async fn finish(mut self, length: u64, chunk_digests: Vec<Bytes>) -> Result<()> {
        self.renewer.abort();
        let (file, holder) = (self.file, self.holder);
        let request_id = self.masters.request_id();
        self.masters
            .call(|mut m| {
                let chunk_digests = chunk_digests.clone();
                async move {
                    m.complete(CompleteRequest {
                        file,
                        client_id: holder,
                        length,
                        chunk_digests,
                        request_id,
                    })
                    .await
                }
            })
            .await?;
        self.finished = true;
        Ok(())
    }
}

impl Construction {
    /// `r`, after abandoning the file if it is an error, returning once the masters have (or
    /// the call gave up): a failed put or copy returns with its path free, so that trying
    /// again at once finds no file under construction (dropping the guard abandons in the
    /// background instead). Marked finished only once the abandon returned: if this future
    /// is dropped while it waits (a dropped `FileWriter` aborts its task just as its pipe
    /// ends, and the pipe's end is what failed `r`), the guard's drop abandons instead; before,
    /// the abandon was cut off with the guard already marked finished, and the path stayed
    /// held until the lease expired (CI: `client_lib`, a create right after a dropped writer).
    pub(crate) async fn abandon_on_err<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() && !self.finished {
            self.renewer.abort();
            abandon(self.masters.clone(), self.file, self.holder).await;
            self.finished = true;
        }
        r
    }
}

/// Abandons `file` held by `holder` (a failure is logged: its lease will expire).
async fn abandon(masters: std::sync::Arc<Masters>, file: u64, holder: u64) {
    let request_id = masters.request_id();
    let r = masters
        .call(|mut c| async move {
            c.abandon(AbandonRequest {
                file,
                client_id: holder,
                request_id,
            })
            .await
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(file, error = %e, "abandoning an unfinished file failed (its lease will expire)");
    }
}

impl Drop for Construction {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.finished {
            return;
        }
        let (m, file, holder) = (self.masters.clone(), self.file, self.holder);
        self.masters.cleanup(abandon(m, file, holder));
    }
}

impl Client {
    /// Stores `src` at `path` (replacing an existing file if `overwrite`). `progress` gets the
    /// bytes written so far after each chunk. Returns the file's length. The file appears
    /// atomically when it is complete; on an error, or if this future is dropped before it ends,
    /// nothing appears and the path is released at once.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let n = c.put("/data/hello.txt", &b"hello"[..], false, &|_| {}).await?;
    /// assert_eq!(n, 5);
    /// # Ok(()) }
    /// ```
    pub async fn put<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        src: R,
        overwrite: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64> {
        let opts = CreateOptions::default().overwrite(overwrite);
        self.put_with(path, src, &opts, progress).await
    }

    /// [`Client::put`] with per-file options (replication, chunk size).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// use shale_client::CreateOptions;
    /// let opts = CreateOptions::default().replication(2).chunk_size(8 << 20);
    /// c.put_with("/scratch/tmp.bin", &[0u8; 1000][..], &opts, &|_| {}).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_with<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        src: R,
        opts: &CreateOptions,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64> {
        self.put_created(path, src, opts, progress, None).await
    }

    /// [`Client::put_with`], telling `created` once the file exists (under construction).
    pub(crate) async fn put_created<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        mut src: R,
        opts: &CreateOptions,
        progress: &(dyn Fn(u64) + Sync),
        created: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<u64> {
        let (reply, mut building) = self.begin(path, opts).await?;
        if let Some(tx) = created {
            let _ = tx.send(());
        }
        let need = self.replicas_needed(reply.replication);
        let written = self
            .write_chunks(path, reply.file, reply.chunk_size, need, &mut src, progress)
            .await;
        let (total, digests) = building.abandon_on_err(written).await?;
        building.finish(total, digests).await?;
        Ok(total)
    }

    /// Creates the file under construction; the guard that renews its lease and abandons it
    /// unless finished.
    pub(crate) async fn begin(
        &self,
        path: &str,
        opts: &CreateOptions,
    ) -> Result<(CreateReply, Construction)> {
        let (p, id, lease_ms) = (path.to_string(), self.id, self.config.lease_ms);
        let request_id = self.masters.request_id();
        let o = opts.clone();
        let reply = self
            .masters
            .call(|mut m| {
                let path = p.clone();
                let o = o.clone();
                async move {
                    m.create(CreateRequest {
                        path,
                        overwrite: o.overwrite,
                        replication: o.replication,
                        chunk_size: o.chunk_size,
                        client_id: id,
                        lease_ms,
                        mode: o.mode,
                        request_id,
                    })
                    .await
                }
            })
            .await?;
        let building = Construction::start(self.masters.clone(), reply.file, id, lease_ms);
        Ok((reply, building))
    }

    /// A fresh allocation of chunk `index` of a file under construction, excluding `exclude`.
    pub(crate) async fn allocate(
        &self,
        file: u64,
        index: u32,
        exclude: &[u64],
    ) -> Result<AllocateChunkReply> {
        let (ex, host, id) = (exclude.to_vec(), self.config.host.clone(), self.id);
        let request_id = self.masters.request_id();
        self.masters
            .call(|mut m| {
                let (exclude, client_host) = (ex.clone(), host.clone());
                async move {
                    m.allocate_chunk(AllocateChunkRequest {
                        file,
                        client_id: id,
                        index,
                        exclude,
                        client_host,
                        request_id,
                    })
                    .await
                }
            })
            .await
    }

    /// Replicas a chunk must be durable on before it counts as written: the configured minimum,
    /// never more than the file's replication.
    pub(crate) fn replicas_needed(&self, replication: u32) -> usize {
        self.config.min_replicas.min(replication).max(1) as usize
    }

    pub(crate) async fn write_chunks<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        file: u64,
        chunk_size: u64,
        need: usize,
        src: &mut R,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(u64, Vec<Bytes>)> {
        let mut total = 0u64;
        let mut index = 0u32;
        let mut digests = Vec::new();
        let frame_bytes = self.config.frame_bytes;
        let (mut frames, mut len) = read_chunk(src, chunk_size, frame_bytes).await?;
        loop {
            if len == 0 {
                return Ok((total, digests));
            }
            // The end-to-end digest, from the bytes as this client has them.
            digests.push(crate::integrity::digest(&frames));
            let write = self.write_one_chunk(path, file, index, need, &frames, len);
            // The next chunk is read from the source while this one is written (two chunks
            // in memory at most); a failure of either ends both.
            let next = if len < chunk_size {
                write.await?;
                None
            } else {
                let read = read_chunk(src, chunk_size, frame_bytes);
                Some(futures_util::future::try_join(write, read).await?.1)
            };
            total += len;
            index += 1;
            progress(total);
            match next {
                None => return Ok((total, digests)),
                Some(n) => (frames, len) = n,
            }
        }
    }

    async fn write_one_chunk(
        &self,
        path: &str,
        file: u64,
        index: u32,
        need: usize,
        frames: &[Bytes],
        len: u64,
    ) -> Result<()> {
        let mut exclude: Vec<u64> = Vec::new();
        let mut last = String::new();
        for attempt in 1..=self.config.chunk_attempts {
            let alloc = self.allocate(file, index, &exclude).await?;
            if alloc.pipeline.len() < need {
                // Too few servers to acknowledge safely: wait a little (servers come back, the
                // excluded ones get another chance), then ask again.
                last = short_pipeline(alloc.pipeline.len(), need);
                tracing::warn!(path, index, attempt, %last, "chunk not written");
                exclude.clear();
                tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
                continue;
            }
            let sent = match self.send_chunk_port(&alloc, frames, len).await {
                Some(sent) => sent,
                None => send_chunk(&self.config.transport, &alloc, frames, len).await,
            };
            match sent {
                Ok(()) => return Ok(()),
                Err((blamed, why)) => {
                    tracing::warn!(path, index, attempt, ?blamed, %why, "chunk write failed; retrying this chunk");
                    last = why;
                    if let Some(n) = blamed {
                        if !exclude.contains(&n) {
                            exclude.push(n);
                        }
                    }
                }
            }
        }
        Err(ClientError::ChunkWrite {
            path: path.to_string(),
            index,
            attempts: self.config.chunk_attempts,
            last,
        })
    }
}
