//! ChunkService over gRPC: pipelined writes (store locally and forward downstream at once),
//! verified streaming reads, peer-to-peer replication, deletion.
//!
//! A write is acknowledged only when this replica has sealed the chunk (durable) *and* the
//! downstream replica acknowledged (so, recursively, every replica has it durable). A failure is
//! returned with the failing replica's node id in the `shale-failed-node` metadata so the client
//! can exclude it when it retries the chunk.
use super::pipeline::Downstream;
use super::status::{blame, status_of};
use crate::store::ChunkStore;
use bytes::Bytes;
use shale_proto::pb::chunk_service_client::ChunkServiceClient;
use shale_proto::pb::chunk_service_server::ChunkService;
use shale_proto::pb::write_chunk_request::Kind;
use shale_proto::pb::*;
use shale_proto::{ChunkRef as DomainRef, ReadRange, WriteHeader as DomainHeader};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Largest data frame a write may carry (clients send ≈1 MiB).
pub const FRAME_MAX_BYTES: usize = 4 << 20;
/// Reads stream in frames of this size.
pub const READ_FRAME_BYTES: u64 = 1 << 20;
/// Idle frame buffers kept for the data port (1 MiB each).
const FRAME_POOL_KEEP: usize = 32;
/// Write and replicate streams open at once on one chunkserver; more are refused with
/// RESOURCE_EXHAUSTED (the client retries the chunk elsewhere).
pub const WRITE_STREAMS_MAX: usize = 64;
/// A write stream that sends nothing for this long is cut off and its chunk discarded (the
/// default of [`ChunkServer::stream_idle`]).
pub const STREAM_IDLE_DEFAULT: Duration = Duration::from_secs(30);

/// Discards a chunk being written unless disarmed: a write whose caller vanished (cancelled
/// stream, dropped connection, error) leaves no temp file and no "being written" slot behind.
/// The chunk is created on its own task (see [`AbortOnDrop::create`]), so a caller dropped
/// mid-create still gets its chunk discarded once the create has finished.
struct AbortOnDrop {
    store: Arc<dyn ChunkStore>,
    chunk: DomainRef,
    creating: Option<tokio::task::JoinHandle<crate::Result<()>>>,
    armed: bool,
}

impl AbortOnDrop {
    /// Creates `chunk` in the store, guarded from this moment on.
    async fn create(
        store: &Arc<dyn ChunkStore>,
        chunk: DomainRef,
    ) -> Result<Self, ChunkErrorStatus> {
        let s = store.clone();
        let mut guard = AbortOnDrop {
            store: store.clone(),
            chunk,
            creating: Some(tokio::spawn(async move { s.create(chunk).await })),
            armed: true,
        };
        let created = match guard.creating.as_mut() {
            Some(h) => h.await,
            None => return Err(ChunkErrorStatus::Internal("no create task".into())),
        };
        guard.creating = None;
        match created {
            Ok(Ok(())) => Ok(guard),
            Ok(Err(e)) => {
                guard.armed = false;
                Err(ChunkErrorStatus::Store(e))
            }
            Err(e) => {
                guard.armed = false;
                Err(ChunkErrorStatus::Internal(format!("create task: {e}")))
            }
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }

    /// Discards the chunk now (before an error is returned, so a retry can create it again).
    /// The discard runs on its own task: the caller may be a request handler that the server
    /// drops when its client disconnects, and a discard cut off half-way would leave the temp
    /// files and a stuck "being written" slot behind for good.
    async fn abort_now(mut self) {
        self.armed = false;
        let (store, chunk) = (self.store.clone(), self.chunk);
        let r = tokio::spawn(async move { store.abort(chunk).await }).await;
        tracing::debug!(chunk = %self.chunk.id, ?r, "aborted");
    }
}

/// Why a guarded create failed.
enum ChunkErrorStatus {
    Store(crate::ChunkError),
    Internal(String),
}

impl ChunkErrorStatus {
    fn status(self) -> Status {
        match self {
            ChunkErrorStatus::Store(e) => status_of(&e),
            ChunkErrorStatus::Internal(m) => Status::internal(m),
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(chunk = %self.chunk.id, "write stream went away; discarding its chunk");
            let (store, chunk, creating) = (self.store.clone(), self.chunk, self.creating.take());
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Some(c) = creating {
                        let _ = c.await;
                    }
                    let _ = store.abort(chunk).await;
                });
            }
        }
    }
}

/// The next message of a client stream, or an error if none comes within `idle`.
pub(crate) async fn next_message<T>(
    stream: &mut Streaming<T>,
    idle: Duration,
) -> Result<Option<T>, Status> {
    match tokio::time::timeout(idle, stream.message()).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "write stream idle for {} ms",
            idle.as_millis()
        ))),
    }
}

pub struct ChunkServer {
    pub store: Arc<dyn ChunkStore>,
    /// Assigned by the masters at registration (0 until then).
    pub node: Arc<AtomicU64>,
    pub chunk_size_max_bytes: u64,
    pub inflight: AtomicU32,
    /// Read streams being served (reported to the masters, which send readers elsewhere).
    pub reading: Arc<AtomicU32>,
    /// Wakes the heartbeat loop to report a newly sealed chunk at once (an incremental report,
    /// as HDFS's block-received).
    pub report_now: tokio::sync::Notify,
    /// Re-replication bandwidth cap for copies this server pulls (bytes/s, 0: none), shared
    /// by all copies: a token bucket kept as the time the next byte may start.
    pub replicate_bytes_per_s: u64,
    replicate_next: Mutex<std::time::Instant>,
    /// A write stream silent this long is cut off.
    pub stream_idle: Duration,
    peers: Mutex<HashMap<String, ChunkServiceClient<Channel>>>,
    /// Idle data-port connections to peers (writes forwarded down a pipeline).
    pub(crate) data_conns: Arc<shale_proto::dataport::Idle>,
    /// Page-aligned buffers that data-port frames are received into (they go to the disk
    /// with O_DIRECT as they are, and downstream, without a copy).
    pub(crate) frame_pool: Arc<crate::backend::aligned::Pool>,
    /// Open write and replicate streams (bounded by [`WRITE_STREAMS_MAX`]).
    write_slots: Arc<tokio::sync::Semaphore>,
    /// How this server reaches its peers (mutual TLS as itself, or plaintext).
    pub transport: shale_security::Transport,
    /// The keys chunk access tokens are checked with.
    pub keys: super::access::TokenKeys,
    /// Record appends queued per chunk at their primary (see `append.rs`).
    pub(crate) append_queues: Mutex<HashMap<u64, super::append::Queue>>,
    /// Block chaining values of recently asked-for chunks.
    pub(crate) cvs: super::digests::CvCache,
}

/// Takes one off a counter of work in flight when dropped.
pub(crate) struct Inflight<T: std::ops::Deref<Target = AtomicU32>>(pub(crate) T);
impl<T: std::ops::Deref<Target = AtomicU32>> Drop for Inflight<T> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

pub fn peer_client(
    transport: &shale_security::Transport,
    addr: &str,
) -> Result<ChunkServiceClient<Channel>, Status> {
    let channel = transport
        .channel(addr, |ep| {
            shale_proto::channels::chunk_endpoint(ep, Duration::from_secs(120))
        })
        .map_err(|e| invalid(format!("bad peer address: {e}")))?;
    Ok(ChunkServiceClient::new(channel)
        .max_decoding_message_size(FRAME_MAX_BYTES + (64 << 10))
        .max_encoding_message_size(FRAME_MAX_BYTES + (64 << 10)))
}

impl ChunkServer {
    pub fn new(store: Arc<dyn ChunkStore>, chunk_size_max_bytes: u64) -> Self {
        ChunkServer {
            store,
            node: Arc::new(AtomicU64::new(0)),
            chunk_size_max_bytes,
            inflight: AtomicU32::new(0),
            reading: Arc::new(AtomicU32::new(0)),
            report_now: tokio::sync::Notify::new(),
            replicate_bytes_per_s: 0,
            replicate_next: Mutex::new(std::time::Instant::now()),
            stream_idle: STREAM_IDLE_DEFAULT,
            peers: Mutex::new(HashMap::new()),
            data_conns: Default::default(),
            frame_pool: crate::backend::aligned::Pool::new(
                shale_proto::dataport::FRAME_MAX_BYTES,
                FRAME_POOL_KEEP,
            ),
            write_slots: Arc::new(tokio::sync::Semaphore::new(WRITE_STREAMS_MAX)),
            transport: shale_security::Transport::plaintext(),
            keys: Default::default(),
            append_queues: Default::default(),
            cvs: super::digests::CvCache::new(super::digests::CACHED_CHUNKS_MAX),
        }
    }

    /// The checks of every read (gRPC `ReadChunk` and the data port alike): a well-formed
    /// request, `caller` may read the chunk (its role, or the token), the chunk is sealed at
    /// that version here, the range is inside it. The chunk and the range `[offset, end)`.
    pub(crate) async fn check_read(
        &self,
        caller: &shale_security::Caller<'_>,
        wire: &shale_proto::pb::ReadChunkRequest,
    ) -> Result<(DomainRef, u64, u64), Status> {
        let r = ReadRange::try_from(wire)?;
        let c = r.chunk;
        self.may_read(caller, wire.token.as_ref(), (c.id.get(), c.version.get()))
            .await?;
        let info = self.sealed(c)?;
        let end = match r.length {
            Some(l) => r.offset + l,
            None => info.length_bytes,
        };
        if end > info.length_bytes || r.offset > end {
            return Err(Status::out_of_range(format!(
                "{}: range {}..{end} is past the end ({} bytes)",
                c.id, r.offset, info.length_bytes
            )));
        }
        Ok((c, r.offset, end))
    }

    /// What the store holds of `c`, if it is sealed at exactly that version (NOT_FOUND,
    /// UNAVAILABLE while being written, FAILED_PRECONDITION for another version).
    pub(crate) fn sealed(&self, c: DomainRef) -> Result<crate::ChunkInfo, Status> {
        let info = self
            .store
            .stat(c.id)
            .ok_or_else(|| Status::not_found(format!("{} not found", c.id)))?;
        if !info.sealed {
            return Err(Status::unavailable(format!(
                "{} is still being written",
                c.id
            )));
        }
        if info.version != c.version {
            return Err(Status::failed_precondition(format!(
                "stale version: {} is at {}, request names {}",
                c.id, info.version, c.version
            )));
        }
        Ok(info)
    }

    /// Waits until `n` more bytes of re-replication fit under the bandwidth cap.
    async fn throttle(&self, n: u64) {
        if self.replicate_bytes_per_s == 0 {
            return;
        }
        let wait_until = {
            let mut next = self
                .replicate_next
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(n as f64 / self.replicate_bytes_per_s as f64);
            start
        };
        tokio::time::sleep_until(wait_until.into()).await;
    }

    pub(crate) fn me(&self) -> u64 {
        self.node.load(Ordering::Relaxed)
    }

    fn write_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.write_slots.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "chunkserver {} has {WRITE_STREAMS_MAX} write streams open; retry elsewhere",
                self.me()
            ))
        })
    }

    /// Writes a frame on its own task: the store's write-behind bookkeeping is not safe to
    /// abandon half-way, and a caller that goes away mid-write must still leave a chunk that
    /// its guard can discard.
    pub(crate) async fn write_detached(
        &self,
        c: DomainRef,
        off: u64,
        data: Bytes,
    ) -> Result<(), Status> {
        let store = self.store.clone();
        tokio::spawn(async move { store.write(c, off, data).await })
            .await
            .map_err(|e| Status::internal(format!("write task: {e}")))?
            .map_err(|e| status_of(&e))
    }

    /// Seals on its own task, so a caller that goes away mid-seal cannot leave a half-sealed
    /// chunk: the seal runs to its end (and discards the chunk itself if it fails).
    async fn seal_detached(&self, c: DomainRef) -> Result<crate::ChunkInfo, Status> {
        let store = self.store.clone();
        tokio::spawn(async move { store.seal(c).await })
            .await
            .map_err(|e| Status::internal(format!("seal task: {e}")))?
            .map_err(|e| status_of(&e))
    }

    /// Deletes this replica's sealed copy of `c` (a write that sealed here but failed
    /// downstream), on its own task so that it runs to its end.
    async fn discard_sealed(&self, c: DomainRef) {
        let store = self.store.clone();
        let r = tokio::spawn(async move { store.delete(c.id, c.version).await }).await;
        tracing::debug!(chunk = %c.id, ?r, "sealed copy of a failed write deleted");
    }

    pub(super) fn peer(&self, addr: &str) -> Result<ChunkServiceClient<Channel>, Status> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = peers.get(addr) {
            return Ok(c.clone());
        }
        let c = peer_client(&self.transport, addr)?;
        peers.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Receives the data frames, writing each locally and forwarding it downstream.
    async fn receive(
        &self,
        h: &DomainHeader,
        stream: &mut Streaming<WriteChunkRequest>,
        down: Option<&Downstream>,
    ) -> Result<(), Status> {
        let me = self.me();
        let mut off = 0u64;
        while let Some(msg) = next_message(stream, self.stream_idle).await? {
            let Some(Kind::Data(data)) = msg.kind else {
                return Err(invalid("only data frames may follow the header"));
            };
            if data.len() > FRAME_MAX_BYTES {
                return Err(invalid(format!(
                    "frame of {} bytes is over the {FRAME_MAX_BYTES}-byte limit",
                    data.len()
                )));
            }
            let len = data.len() as u64;
            if off + len > h.length {
                return Err(invalid(format!(
                    "more data than the header's {} bytes",
                    h.length
                )));
            }
            if let Some(d) = down {
                d.send(None, &data).await?;
            }
            self.write_detached(h.chunk, off, data)
                .await
                .map_err(|e| blame(e, me))?;
            off += len;
        }
        if off != h.length {
            return Err(invalid(format!(
                "stream ended after {off} of the header's {} bytes",
                h.length
            )));
        }
        Ok(())
    }

    /// The checks every write's header passes (over gRPC and the data port alike), then the
    /// chunk created here, guarded: a well-formed header for this node, a free write slot, and
    /// `caller` may write the chunk through that pipeline (its token).
    pub(crate) async fn begin_write(
        &self,
        caller: &shale_security::Caller<'_>,
        wire: &shale_proto::pb::WriteHeader,
    ) -> Result<Writing<'_>, Status> {
        let slot = self.write_slot()?;
        let h = DomainHeader::from_wire(wire, self.chunk_size_max_bytes)?;
        let me = self.me();
        if me == 0 {
            return Err(Status::unavailable(
                "this chunkserver is not registered yet",
            ));
        }
        if h.node.get() != me {
            return Err(Status::failed_precondition(format!(
                "this is chunkserver {me}, not {} as the header says: wrong address for that node",
                h.node
            )));
        }
        let downstream: Vec<(u64, &str)> = h
            .downstream
            .iter()
            .map(|d| (d.node.get(), d.address.as_str()))
            .collect();
        self.may_write(
            caller,
            wire.token.as_ref(),
            (h.chunk.id.get(), h.chunk.version.get()),
            &downstream,
        )
        .await?;
        let guard = AbortOnDrop::create(&self.store, h.chunk)
            .await
            .map_err(|e| blame(e.status(), me))?;
        self.inflight.fetch_add(1, Ordering::Relaxed);
        Ok(Writing {
            h,
            guard,
            _slot: slot,
            _inflight: Inflight(&self.inflight),
        })
    }

    /// Ends a write whose frames were `received` (or not): on success this replica seals while
    /// the downstream ones seal theirs, and the answer names every replica that holds the chunk
    /// durable; on any failure this replica's copy goes and the deepest failure is returned.
    pub(crate) async fn end_write(
        &self,
        w: Writing<'_>,
        received: Result<(), Status>,
        down: Option<Downstream>,
    ) -> Result<WriteChunkResponse, Status> {
        let me = self.me();
        let Writing { h, guard, .. } = w;
        if let Err(e) = received {
            tracing::debug!(chunk = %h.chunk.id, error = %e, "write failed; discarding");
            let down_failure = match down {
                Some(d) => d.abandon().await,
                None => None,
            };
            guard.abort_now().await;
            // A downstream failure explains a stopped forward better than our own error.
            return Err(down_failure.unwrap_or(e));
        }
        let down = async {
            match down {
                Some(d) => d.finish().await,
                None => Ok(()),
            }
        };
        // Every byte is here: seal this replica while the downstream ones seal theirs (one
        // seal's time per chunk, not one per replica). The seal discards the chunk itself if
        // it fails.
        guard.disarm();
        let (sealed, down_result) = tokio::join!(self.seal_detached(h.chunk), down);
        let info = match (sealed, down_result) {
            (Ok(info), Ok(())) => info,
            (Ok(_), Err(d)) => {
                // Sealed here, but not acknowledged by every replica: not written. The copy
                // goes (version-guarded), so the retry's new version is the only one.
                self.discard_sealed(h.chunk).await;
                return Err(d);
            }
            // The deepest failure wins (it names the replica to exclude).
            (Err(s), Err(d)) => {
                tracing::debug!(chunk = %h.chunk.id, error = %s, "this replica's seal failed too");
                return Err(d);
            }
            (Err(s), Ok(())) => return Err(blame(s, me)),
        };
        self.report_now.notify_one();
        let mut durable_on = vec![me];
        durable_on.extend(h.downstream.iter().map(|t| t.node.get()));
        Ok(WriteChunkResponse {
            chunk: Some(h.chunk.into()),
            length: info.length_bytes,
            durable_on,
        })
    }
}

/// A write past its checks: the header, the guarded chunk, its write slot and its count in the
/// writes in flight (both released when this goes).
pub(crate) struct Writing<'a> {
    pub(crate) h: DomainHeader,
    guard: AbortOnDrop,
    _slot: tokio::sync::OwnedSemaphorePermit,
    _inflight: Inflight<&'a AtomicU32>,
}

type ReadStream = ReceiverStream<Result<ReadChunkResponse, Status>>;

#[tonic::async_trait]
impl ChunkService for ChunkServer {
    async fn write_chunk(
        &self,
        req: Request<Streaming<WriteChunkRequest>>,
    ) -> Result<Response<WriteChunkResponse>, Status> {
        // Kept past the request, which the stream consumes (`None`: plaintext, trusted).
        let principal = shale_security::caller_or_anonymous(&req)?
            .principal()
            .cloned();
        let caller = principal
            .as_ref()
            .map_or(shale_security::Caller::Trusted, shale_security::Caller::Is);
        let mut stream = req.into_inner();
        let first = next_message(&mut stream, self.stream_idle)
            .await?
            .ok_or_else(|| invalid("empty write stream"))?;
        let Some(Kind::Header(wire)) = first.kind else {
            return Err(invalid("the first message must be the header"));
        };
        let w = self.begin_write(&caller, &wire).await?;
        let down = Downstream::open(self, &w.h, &wire).await;
        let down = match down {
            Ok(d) => d,
            Err(e) => return self.end_write(w, Err(e), None).await.map(Response::new),
        };
        let received = self.receive(&w.h, &mut stream, down.as_ref()).await;
        self.end_write(w, received, down).await.map(Response::new)
    }

    type ReadChunkStream = ReadStream;

    async fn read_chunk(
        &self,
        req: Request<ReadChunkRequest>,
    ) -> Result<Response<ReadStream>, Status> {
        let caller = shale_security::caller_or_anonymous(&req)?;
        let (c, offset, end) = self.check_read(&caller, req.get_ref()).await?;
        let (tx, rx) = mpsc::channel(4);
        let store = self.store.clone();
        let reading = self.reading.clone();
        reading.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _reading = Inflight(reading);
            let mut at = offset;
            while at < end {
                let n = (end - at).min(READ_FRAME_BYTES);
                let item = store
                    .read_crc(c, at, n)
                    .await
                    .map(|(data, crc32c)| ReadChunkResponse { crc32c, data })
                    .map_err(|e| status_of(&e));
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
                at += n;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn chunk_digests(
        &self,
        req: Request<ChunkDigestsRequest>,
    ) -> Result<Response<ChunkDigestsReply>, Status> {
        let caller = shale_security::caller_or_anonymous(&req)?;
        let wire = req.get_ref();
        let c = DomainRef::try_from(wire.chunk.as_ref())?;
        self.may_read(&caller, wire.token.as_ref(), (c.id.get(), c.version.get()))
            .await?;
        let (length, cvs) = self.chunk_cvs(c).await?;
        Ok(Response::new(ChunkDigestsReply {
            length,
            block_bytes: shale_security::digest::BLOCK_BYTES,
            cvs: Bytes::copy_from_slice(&cvs),
        }))
    }

    async fn replicate_chunk(
        &self,
        req: Request<ReplicateChunkRequest>,
    ) -> Result<Response<ReplicateChunkResponse>, Status> {
        let caller = shale_security::caller_or_anonymous(&req)?;
        let r = req.get_ref();
        let c = DomainRef::try_from(r.chunk.as_ref())?;
        let src = r
            .source
            .as_ref()
            .ok_or_else(|| invalid("missing field `source`"))?;
        self.may_replicate(
            &caller,
            r,
            (c.id.get(), c.version.get()),
            (src.node_id, &src.address),
        )
        .await?;
        // A copy (`from` set) is a client's request, paced like its writes; re-replication is
        // capped so that it cannot crowd out clients.
        let (from, capped) = match r.from.as_ref() {
            Some(f) => (DomainRef::try_from(Some(f))?, false),
            None => (c, true),
        };
        let read = ReadChunkRequest {
            chunk: Some(from.into()),
            offset: 0,
            length: 0,
            to_end: true,
            // The source serves this server on its own identity; a client's token rides
            // along for servers that want it.
            token: r.from_token.clone(),
        };
        // The source's data port, when a master names one (a client's copy request could name
        // any address: its token vouches only for the gRPC address).
        let from_master = match &caller {
            shale_security::Caller::Trusted => true,
            shale_security::Caller::Is(p) => p.role == shale_security::Role::Master,
        };
        let mut stream = if from_master && !r.source_data_address.is_empty() {
            super::dataport::Pull::port(&self.transport, &r.source_data_address, read).await?
        } else {
            let mut client = self.peer(&src.address)?;
            super::dataport::Pull::Grpc(client.read_chunk(read).await?.into_inner())
        };
        let _slot = self.write_slot()?;
        let guard = AbortOnDrop::create(&self.store, c)
            .await
            .map_err(|e| e.status())?;
        let copied: Result<u64, Status> = async {
            let mut off = 0u64;
            while let Some(data) = stream.next(self.stream_idle).await? {
                let n = data.len() as u64;
                if capped {
                    self.throttle(n).await;
                }
                self.write_detached(c, off, data).await?;
                off += n;
            }
            Ok(off)
        }
        .await;
        if let Err(e) = copied {
            guard.abort_now().await;
            return Err(e);
        }
        guard.disarm();
        let info = self.seal_detached(c).await?;
        self.report_now.notify_one();
        Ok(Response::new(ReplicateChunkResponse {
            chunk: Some(c.into()),
            length: info.length_bytes,
        }))
    }

    async fn append_chunk(
        &self,
        req: Request<AppendChunkRequest>,
    ) -> Result<Response<AppendChunkResponse>, Status> {
        self.append_chunk_rpc(req).await
    }

    async fn delete_chunks(
        &self,
        req: Request<DeleteChunksRequest>,
    ) -> Result<Response<DeleteChunksResponse>, Status> {
        // Only the masters decide what is garbage.
        shale_security::caller(&req)?.require(&[shale_security::Role::Master], "delete chunks")?;
        let (mut deleted, mut missing) = (0, 0);
        for wire in &req.get_ref().chunks {
            let c = DomainRef::try_from(wire)?;
            match self.store.delete(c.id, c.version).await {
                Ok(true) => deleted += 1,
                Ok(false) => missing += 1,
                Err(e) => return Err(status_of(&e)),
            }
        }
        Ok(Response::new(DeleteChunksResponse { deleted, missing }))
    }
}
