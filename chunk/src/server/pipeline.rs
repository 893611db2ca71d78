//! A write's downstream hop: the replica after this one in the pipeline, reached over its data
//! port when the header names one (on the host the chunk token vouches for) and it answers,
//! over gRPC `WriteChunk` otherwise. Either way the same header goes down (minus this
//! replica), every frame is forwarded as it arrives, and the hop is judged by progress: it
//! must answer the header within `dataport::header_wait` (data port; longer the more replicas
//! are below it, so the deepest waiter blames first), keep taking frames ([`FORWARD_STALL`]) and
//! acknowledge within [`DOWNSTREAM_ACK`] of the last one, with exactly the replicas after this
//! one durable.
//!
//! Invariants: frames wait in a bounded queue ([`FORWARD_QUEUE`]); dropping a [`Downstream`]
//! aborts its call, which ends the downstream replica's write too; every failure comes back
//! blamed on a replica (the deepest one that failed).
use super::service::ChunkServer;
use super::status::{blame, FAILED_NODE};
use bytes::Bytes;
use shale_proto::datapb::DataReply;
use shale_proto::dataport::{self, Opened};
use shale_proto::pb::write_chunk_request::Kind;
use shale_proto::pb::{WriteChunkRequest, WriteChunkResponse};
use shale_proto::WriteHeader as DomainHeader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// A downstream replica that accepts no frame for this long fails the write, blamed on it.
pub(crate) const FORWARD_STALL: Duration = Duration::from_secs(5);
/// How long a downstream replica may take to acknowledge after taking the last frame (it seals,
/// and waits for its own downstream).
pub(crate) const DOWNSTREAM_ACK: Duration = Duration::from_secs(10);
/// Frames buffered towards the downstream replica.
const FORWARD_QUEUE: usize = 8;

/// The hop to the next replica of a write.
pub(crate) struct Downstream {
    node: u64,
    /// The replicas after this one, in order: what the hop must report durable.
    want: Vec<u64>,
    hop: Hop,
}

enum Hop {
    Grpc {
        tx: mpsc::Sender<WriteChunkRequest>,
        call: AbortOnDrop<Result<tonic::Response<WriteChunkResponse>, Status>>,
        progress: Arc<Progress>,
    },
    Port {
        tx: mpsc::Sender<(u32, Bytes)>,
        call: AbortOnDrop<Result<Vec<u64>, Status>>,
    },
}

impl Downstream {
    /// Opens the hop to the first replica of `h.downstream` (None on the tail). `wire` is the
    /// header this replica received (its token goes down unchanged).
    pub(crate) async fn open(
        server: &ChunkServer,
        h: &DomainHeader,
        wire: &shale_proto::pb::WriteHeader,
    ) -> Result<Option<Downstream>, Status> {
        let Some(next) = h.downstream.first() else {
            return Ok(None);
        };
        let node = next.node.get();
        let header = shale_proto::pb::WriteHeader {
            chunk: Some(h.chunk.into()),
            downstream: wire.downstream[1..].to_vec(),
            length: h.length,
            node_id: node,
            token: wire.token.clone(),
        };
        let want = h.downstream.iter().map(|t| t.node.get()).collect();
        if let Some(addr) = &next.data_address {
            if let Some(hop) = port(server, addr, header.clone(), node).await? {
                return Ok(Some(Downstream { node, want, hop }));
            }
        }
        let hop = grpc(server, &next.address, header)?;
        Ok(Some(Downstream { node, want, hop }))
    }

    /// Forwards one frame (`crc`: its crc32c, if known). Judged by progress: a replica that
    /// takes nothing for [`FORWARD_STALL`] fails the write.
    pub(crate) async fn send(&self, crc: Option<u32>, data: &Bytes) -> Result<(), Status> {
        let queued = match &self.hop {
            Hop::Grpc { tx, .. } => {
                let m = WriteChunkRequest {
                    kind: Some(Kind::Data(data.clone())),
                };
                tokio::time::timeout(FORWARD_STALL, tx.send(m))
                    .await
                    .map(|r| r.is_ok())
            }
            Hop::Port { tx, .. } => {
                let crc = crc.unwrap_or_else(|| crc32c::crc32c(data));
                tokio::time::timeout(FORWARD_STALL, tx.send((crc, data.clone())))
                    .await
                    .map(|r| r.is_ok())
            }
        };
        match queued {
            Ok(true) => Ok(()),
            // The downstream call ended early; its result says why.
            Ok(false) => Err(Status::unavailable("downstream replica stopped receiving")),
            // A stopped or cut-off replica: judged by progress, not a total timeout.
            Err(_) => Err(blame(
                Status::unavailable(format!(
                    "downstream replica {} accepted nothing for {} ms",
                    self.node,
                    FORWARD_STALL.as_millis()
                )),
                self.node,
            )),
        }
    }

    /// Gives the hop up after this replica's own failure: its failure if it had already
    /// failed (which explains ours better), otherwise it is ended at once (a gRPC stream ends
    /// short; a data-port connection is cut), so the replicas below discard their copies now.
    pub(crate) async fn abandon(self) -> Option<Status> {
        match self.hop {
            // Its queue is still taken from: it has not failed (or not yet noticed).
            Hop::Port { ref tx, .. } if !tx.is_closed() => None,
            _ => self.finish().await.err(),
        }
    }

    /// Ends the forwarding and waits for the hop's acknowledgement: Ok once every replica
    /// after this one holds the chunk durable.
    pub(crate) async fn finish(self) -> Result<(), Status> {
        let node = self.node;
        let durable_on = match self.hop {
            Hop::Grpc {
                tx,
                mut call,
                progress,
            } => {
                // Sent = taken + still queued (read in this order, a race can only undercount,
                // which judges the last message by the longer acknowledgement bound).
                let taken = progress.taken.load(Ordering::Relaxed);
                let sent = taken + (tx.max_capacity() - tx.capacity()) as u64;
                drop(tx);
                match await_grpc(&mut call.0, &progress, sent, node).await {
                    Ok(Ok(r)) => r.into_inner().durable_on,
                    Ok(Err(s)) => return Err(blame(s, node)),
                    Err(e) => {
                        let s = Status::internal(format!("forwarding task: {e}"));
                        return Err(blame(s, node));
                    }
                }
            }
            Hop::Port { tx, mut call } => {
                drop(tx);
                match (&mut call.0).await {
                    Ok(r) => r?,
                    Err(e) => {
                        let s = Status::internal(format!("forwarding task: {e}"));
                        return Err(blame(s, node));
                    }
                }
            }
        };
        if durable_on != self.want {
            return Err(blame(
                Status::internal(format!(
                    "downstream acknowledged {durable_on:?}, the pipeline was {:?}",
                    self.want
                )),
                node,
            ));
        }
        Ok(())
    }
}

/// The hop over the data port at `addr`; None if no connection could be made there or the
/// header was not understood as a write (the write goes over gRPC instead). A refusal of the
/// header is the write's failure, blamed on the replica that refused.
async fn port(
    server: &ChunkServer,
    addr: &str,
    header: shale_proto::pb::WriteHeader,
    node: u64,
) -> Result<Option<Hop>, Status> {
    let opened = dataport::open_write(&server.transport, &server.data_conns, addr, header)
        .await
        .map_err(|e| {
            let s = Status::unavailable(format!("downstream replica {node} ({addr}): {e}"));
            blame(s, node)
        })?;
    let s = match opened {
        Opened::Go(s) => s,
        Opened::Refused(answer) => return Err(reply_status(&answer, node)),
        Opened::Fallback(why) => {
            tracing::debug!(addr, "forwarding over gRPC: {why}");
            return Ok(None);
        }
    };
    let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
    let conns = server.data_conns.clone();
    let addr = addr.to_string();
    let call = tokio::spawn(async move {
        let frames = ReceiverStream::new(rx);
        let (answer, back) = dataport::write_frames(s, frames, FORWARD_STALL, DOWNSTREAM_ACK).await;
        if let Some(s) = back {
            conns.put(&addr, s);
        }
        match answer {
            Ok(a) if a.code == 0 => Ok(a.durable_on),
            Ok(a) => Err(reply_status(&a, node)),
            Err(e) => Err(blame(
                Status::unavailable(format!("downstream replica {node} ({addr}): {e}")),
                node,
            )),
        }
    });
    Ok(Some(Hop::Port {
        tx,
        call: AbortOnDrop(call),
    }))
}

/// A data-port answer that is not OK, as a status blamed on the replica it names (or `node`,
/// the one that answered).
pub(crate) fn reply_status(a: &DataReply, node: u64) -> Status {
    let s = Status::new(tonic::Code::from(a.code as i32), a.message.clone());
    blame(
        s,
        if a.failed_node != 0 {
            a.failed_node
        } else {
            node
        },
    )
}

/// A status as a data-port answer (the replica it blames, if any).
pub(crate) fn status_reply(s: &Status) -> DataReply {
    let failed_node = s
        .metadata()
        .get(FAILED_NODE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    DataReply {
        code: s.code() as u32,
        message: s.message().to_string(),
        failed_node,
        ..Default::default()
    }
}

/// The hop over the next replica's gRPC `WriteChunk`.
fn grpc(
    server: &ChunkServer,
    address: &str,
    header: shale_proto::pb::WriteHeader,
) -> Result<Hop, Status> {
    let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
    let mut client = server.peer(address)?;
    // The channel has room: the header never blocks.
    let _ = tx.try_send(WriteChunkRequest {
        kind: Some(Kind::Header(header)),
    });
    let progress = Arc::new(Progress {
        t0: std::time::Instant::now(),
        taken: AtomicU64::new(0),
        last_ms: AtomicU64::new(0),
    });
    let tracked = Tracked {
        inner: ReceiverStream::new(rx),
        progress: progress.clone(),
    };
    // Aborted if this write goes away, which ends the downstream stream (and so its replica's
    // write) too.
    let call = AbortOnDrop(tokio::spawn(
        async move { client.write_chunk(tracked).await },
    ));
    Ok(Hop::Grpc { tx, call, progress })
}

/// How far the downstream call has taken the forwarded messages.
struct Progress {
    t0: std::time::Instant,
    taken: AtomicU64,
    /// Milliseconds after `t0` when the last message was taken.
    last_ms: AtomicU64,
}

impl Progress {
    fn idle(&self) -> Duration {
        self.t0
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The forwarded messages as a stream that records the downstream call's progress.
struct Tracked {
    inner: ReceiverStream<WriteChunkRequest>,
    progress: Arc<Progress>,
}

impl tokio_stream::Stream for Tracked {
    type Item = WriteChunkRequest;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<WriteChunkRequest>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        if let std::task::Poll::Ready(Some(_)) = &r {
            let p = &self.progress;
            p.taken.fetch_add(1, Ordering::Relaxed);
            p.last_ms
                .store(p.t0.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        r
    }
}

/// Waits for the downstream gRPC call, judging it by progress: it must keep taking the
/// forwarded messages (none taken for [`FORWARD_STALL`] while some wait), and acknowledge
/// within [`DOWNSTREAM_ACK`] of taking the last of the `sent` ones.
async fn await_grpc<T>(
    call: &mut tokio::task::JoinHandle<Result<T, Status>>,
    progress: &Progress,
    sent: u64,
    node: u64,
) -> Result<Result<T, Status>, tokio::task::JoinError> {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            r = &mut *call => return r,
            _ = tick.tick() => {
                let pending = progress.taken.load(Ordering::Relaxed) < sent;
                let idle = progress.idle();
                if pending && idle > FORWARD_STALL {
                    return Ok(Err(Status::unavailable(format!(
                        "downstream replica {node} took nothing for {} ms",
                        FORWARD_STALL.as_millis()
                    ))));
                }
                if !pending && idle > DOWNSTREAM_ACK {
                    return Ok(Err(Status::unavailable(format!(
                        "downstream replica {node} did not acknowledge within {} ms of the last frame",
                        DOWNSTREAM_ACK.as_millis()
                    ))));
                }
            }
        }
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
