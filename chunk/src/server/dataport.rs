//! The data port: chunk bytes without gRPC's framing and message encoding (as HDFS's
//! DataTransferProtocol beside its RPC). A client sends a [`DataRequest`] and gets a
//! [`DataReply`] head, then the bytes in frames of at most 1 MiB, each behind an 8-byte head
//! (length, crc32c); a connection carries any number of requests in turn. Wire format:
//! `shale_proto::dataport`, spec: `docs/data-port.md`.
//!
//! Reads are checked by the very code `ChunkService.ReadChunk` uses
//! (`ChunkServer::check_read`: request shape, caller's role or chunk token, sealed version,
//! range) and served as the store reads and verifies them (one `pread` into a buffer of their
//! own). On a plaintext connection a verified frame then leaves by `sendfile` from the chunk
//! file the buffer was read from (`sendfile.rs`: the kernel sends the page-cache pages, no
//! copy out of the buffer); under TLS rustls encrypts from the buffer, and a frame's head and
//! payload leave in one vectored write.
//!
//! Invariants: at most [`CONNECTIONS_MAX`] connections are served at once (more are closed
//! at once); a connection's TLS handshake must finish in [`HANDSHAKE_TIMEOUT`] and a request
//! head arrive within [`IDLE_TIMEOUT`] of the last answer; a request that is not understood
//! gets an error answer and the connection is closed (its stream position is unknown); an
//! error while streaming is sent as an error frame, after which the connection is closed.
use super::service::{ChunkServer, Inflight, READ_FRAME_BYTES};
use super::status::status_of;
use shale_proto::datapb::{data_request::Op, DataReply, DataRequest};
use shale_proto::dataport::{self, FRAME_ERROR};
use shale_security::transport::Stream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tonic::Status;

pub const CONNECTIONS_MAX: usize = 1024;
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one frame may take to leave (a reader that stops reading is cut off).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves the data port on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, server: Arc<ChunkServer>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!("data port: accept: {e}; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let hs = server.transport.accept_alpn(tcp, dataport::ALPN);
            let Ok(Ok(mut stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, hs).await else {
                return;
            };
            let peer = stream.peer().clone();
            if let Err(e) = connection(&server, &peer, &mut stream).await {
                tracing::debug!(remote = ?peer.remote, "data port connection ended: {e}");
            }
        });
    }
}

/// Serves one connection's requests in turn.
async fn connection(
    server: &ChunkServer,
    peer: &shale_security::Peer,
    s: &mut Stream,
) -> std::io::Result<()> {
    loop {
        let head = tokio::time::timeout(IDLE_TIMEOUT, dataport::read_head::<_, DataRequest>(s));
        let req = match head.await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(r))) => r,
            Ok(Err(e)) => {
                let _ = reply_error(s, &Status::invalid_argument(e.to_string())).await;
                return Err(e);
            }
        };
        match req.op {
            Some(Op::Read(r)) => read(server, peer, s, &r).await?,
            Some(Op::Write(w)) => {
                if !super::port_write::write(server, peer, s, w).await? {
                    return Ok(());
                }
            }
            None => {
                let st = Status::invalid_argument("a data request names no operation");
                reply_error(s, &st).await?;
                return Ok(());
            }
        }
    }
}

async fn reply_error<S: AsyncWrite + Unpin>(s: &mut S, st: &Status) -> std::io::Result<()> {
    let reply = super::pipeline::status_reply(st);
    dataport::write_head(s, &reply).await?;
    s.flush().await
}

/// One read: checked as `ReadChunk` is, then streamed as the store reads and verifies it;
/// on a plaintext connection each verified frame leaves by `sendfile` from the chunk file.
async fn read(
    server: &ChunkServer,
    peer: &shale_security::Peer,
    s: &mut Stream,
    wire: &shale_proto::pb::ReadChunkRequest,
) -> std::io::Result<()> {
    let checked = match shale_security::peer_or_anonymous(Some(peer)) {
        Ok(caller) => server.check_read(&caller, wire).await,
        Err(st) => Err(st),
    };
    let (c, offset, end) = match checked {
        Ok(x) => x,
        // A refused request is an answer; the connection stays usable.
        Err(st) => return reply_error(s, &st).await,
    };
    server.reading.fetch_add(1, Ordering::Relaxed);
    let _reading = Inflight(server.reading.clone());
    let head = DataReply {
        length: end - offset,
        ..Default::default()
    };
    dataport::write_head(s, &head).await?;
    let mut at = offset;
    while at < end {
        let n = (end - at).min(READ_FRAME_BYTES);
        match server.store.read_with_file(c, at, n).await {
            Ok((data, crc, file)) => {
                let sent = if let (Some(tcp), Some(file)) = (s.plain_tcp(), &file) {
                    let send = super::sendfile::send_frame(tcp, crc, file, at, n);
                    tokio::time::timeout(SEND_TIMEOUT, send).await
                } else {
                    tokio::time::timeout(SEND_TIMEOUT, dataport::write_frame(s, crc, &data)).await
                };
                sent.map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            }
            Err(e) => {
                // The reader learns why (e.g. DATA_LOSS: a block failed its checksum) and
                // tries another replica; the stream position is lost, so the connection ends.
                s.write_all(&dataport::frame_head(FRAME_ERROR, 0)).await?;
                reply_error(s, &status_of(&e)).await?;
                return Err(std::io::Error::other(format!("read failed: {e}")));
            }
        }
        at += n;
    }
    s.flush().await
}

/// Where a copy's bytes come from (`ReplicateChunk`): the source's gRPC `ReadChunk` stream or
/// its data port. Either way every frame is checked against its crc32c before it is used.
pub enum Pull {
    Grpc(tonic::Streaming<shale_proto::pb::ReadChunkResponse>),
    Port(dataport::Reader<shale_security::transport::Stream>, String),
}

impl Pull {
    /// Starts reading `req` from the data port at `addr`.
    pub async fn port(
        transport: &shale_security::Transport,
        addr: &str,
        req: shale_proto::pb::ReadChunkRequest,
    ) -> Result<Pull, Status> {
        let s = dataport::dial(transport, addr, HANDSHAKE_TIMEOUT)
            .await
            .map_err(|e| Status::unavailable(format!("data port {addr}: {e}")))?;
        let start = tokio::time::timeout(IDLE_TIMEOUT, dataport::Reader::start(s, req));
        match start.await {
            Err(_) => Err(Status::unavailable(format!("data port {addr}: no answer"))),
            Ok(Err((_, e))) => Err(status(e, addr)),
            Ok(Ok(r)) => Ok(Pull::Port(r, addr.to_string())),
        }
    }

    /// The next frame's bytes, checked; None at the end. Silence for `idle` is an error.
    pub async fn next(&mut self, idle: Duration) -> Result<Option<bytes::Bytes>, Status> {
        match self {
            Pull::Grpc(s) => {
                let Some(frame) = super::service::next_message(s, idle).await? else {
                    return Ok(None);
                };
                if crc32c::crc32c(&frame.data) != frame.crc32c {
                    return Err(Status::data_loss(
                        "a frame from the source arrived damaged (crc32c mismatch)",
                    ));
                }
                Ok(Some(frame.data))
            }
            Pull::Port(r, addr) => match tokio::time::timeout(idle, r.next()).await {
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "data port {addr}: silent for {} s",
                    idle.as_secs()
                ))),
                Ok(Ok(b)) => Ok(b),
                Ok(Err(e)) => Err(status(e, addr)),
            },
        }
    }
}

/// A failed data-port read as a status: the source's own answer, DATA_LOSS for bytes that
/// arrived damaged (or frames that do not add up), UNAVAILABLE for a broken connection.
fn status(e: dataport::ReadError, addr: &str) -> Status {
    match e {
        dataport::ReadError::Refused((code, msg)) => {
            Status::new(tonic::Code::from(code as i32), msg)
        }
        dataport::ReadError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Status::data_loss(format!("data port {addr}: {e}"))
        }
        dataport::ReadError::Io(e) => Status::unavailable(format!("data port {addr}: {e}")),
    }
}
