//! Reads over the chunkservers' data ports (spec: `docs/data-port.md`): a request head, a
//! reply head, then the bytes in frames with a crc32c each — no HTTP/2 framing, no protobuf
//! message per frame. Connections are kept per chunkserver and reused (at most
//! `shale_proto::dataport::IDLE_PER_SERVER` idle each); frames are received by `shale_proto::dataport::Reader`
//! into a buffer reused across frames and handed out as slices of it (no zero-filling, no
//! copy).
//!
//! Invariants: a connection goes back to the pool only after a complete answer (its stream
//! position is known); every wait of a read is bounded by [`IO_TIMEOUT`], a write's start by
//! `shale_proto::dataport::header_wait` (a stopped head is blamed after it); a frame's bytes are checked
//! against its crc32c before they are used, and the frames must add up to exactly the length
//! asked for.
use crate::read::Frames;
use shale_proto::dataport::{self, Opened, Reader};
use shale_proto::metapb::ChunkLocation;
use std::time::Duration;

/// Longest wait for a connection, a head or a frame.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle 1 MiB frame buffers a process keeps for its clients (256 MiB: four 64 MiB chunks
/// being read at once, `ClientConfig::read_parallelism`'s default; released after 10 s
/// unused).
pub(crate) const FRAMES_KEPT: usize = 256;

/// The process's pool of frame buffers, shared by all its clients (a process that reads with
/// several clients reuses the same memory).
pub(crate) fn frame_pool() -> std::sync::Arc<shale_proto::bufpool::Pool> {
    static POOL: std::sync::OnceLock<std::sync::Arc<shale_proto::bufpool::Pool>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        shale_proto::bufpool::Pool::new(shale_proto::dataport::FRAME_MAX_BYTES, FRAMES_KEPT)
    })
    .clone()
}

/// Idle data-port connections of one client, by chunkserver data address.
pub(crate) type DataConns = dataport::Idle;

/// Why a data-port read failed.
pub(crate) enum PortError {
    /// No connection could be made (a firewall, an old server): gRPC may still work.
    Unreachable(String),
    /// The server answered (a refusal, damaged bytes, a broken stream).
    Failed(String),
}

/// Bytes `[offset, offset + len)` of chunk `c` from the data port at `addr`: the frames, each
/// checked against its crc32c. Errors say what went wrong, naming `addr`.
pub(crate) async fn read(
    transport: &shale_security::Transport,
    (conns, pool): (&DataConns, &std::sync::Arc<shale_proto::bufpool::Pool>),
    addr: &str,
    c: &ChunkLocation,
    offset: u64,
    len: u64,
) -> Result<Frames, PortError> {
    let e = |e: String| PortError::Failed(format!("{addr}: {e}"));
    let s = match conns.take(addr) {
        Some(s) => s,
        None => dataport::dial(transport, addr, IO_TIMEOUT)
            .await
            .map_err(|why| PortError::Unreachable(format!("data port {addr}: connect: {why}")))?,
    };
    let req = crate::read::read_request(c, offset, len);
    let mut r = match tokio::time::timeout(IO_TIMEOUT, Reader::start(s, req)).await {
        Err(_) => return Err(e(format!("no answer in {} s", IO_TIMEOUT.as_secs()))),
        Ok(Err((back, why))) => {
            // A refusal is a complete answer: the connection stays usable.
            if let Some(s) = back {
                conns.put(addr, s);
            }
            return Err(e(why.to_string()));
        }
        Ok(Ok(r)) => r.pooled(pool.clone()),
    };
    if r.left() != len {
        return Err(e(format!("announced {} bytes, not {len}", r.left())));
    }
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(IO_TIMEOUT, r.next()).await {
            Err(_) => return Err(e(format!("no frame in {} s", IO_TIMEOUT.as_secs()))),
            Ok(Err(why)) => {
                return Err(e(format!(
                    "{why} (chunk {}, reading from byte {offset})",
                    c.chunk_id
                )))
            }
            Ok(Ok(Some(f))) => frames.push(f),
            Ok(Ok(None)) => break,
        }
    }
    if let Some(s) = r.finish() {
        conns.put(addr, s);
    }
    Ok(frames)
}

/// Writes one chunk through the pipeline headed by the data port `addr` of node `head`:
/// the header, then `frames` with their crc32c, then the final answer. Ok: the replicas that
/// hold the chunk durable. A failure names the replica to blame (as the servers said, else the
/// head), or says the port could not be reached at all or took no write (gRPC may still work).
pub(crate) async fn write(
    transport: &shale_security::Transport,
    conns: &DataConns,
    (addr, head): (&str, u64),
    header: shale_proto::pb::WriteHeader,
    frames: &[bytes::Bytes],
    stall: Duration,
    ack: Duration,
) -> Result<Vec<u64>, WriteFailure> {
    let failed =
        |node: u64, why: String| WriteFailure::Failed(Some(node), format!("{addr}: {why}"));
    let refused = |a: &shale_proto::datapb::DataReply| {
        let node = if a.failed_node != 0 {
            a.failed_node
        } else {
            head
        };
        let code = tonic::Code::from(a.code as i32);
        failed(node, format!("{code:?}: {}", a.message))
    };
    let s = match dataport::open_write(transport, conns, addr, header).await {
        Err(e) => return Err(failed(head, e.to_string())),
        Ok(Opened::Go(s)) => s,
        Ok(Opened::Refused(answer)) => return Err(refused(&answer)),
        Ok(Opened::Fallback(why)) => return Err(WriteFailure::Unreachable(why)),
    };
    let frames = futures_util::stream::iter(frames.iter().map(|f| (crc32c::crc32c(f), f.clone())));
    let (answer, back) = dataport::write_frames(s, frames, stall, ack).await;
    if let Some(s) = back {
        conns.put(addr, s);
    }
    match answer {
        Ok(a) if a.code == 0 => Ok(a.durable_on),
        Ok(a) => Err(refused(&a)),
        Err(e) => Err(failed(head, e.to_string())),
    }
}

/// Why a data-port write failed.
pub(crate) enum WriteFailure {
    /// No connection could be made, or the header was not understood: gRPC may still work.
    Unreachable(String),
    /// The pipeline failed: the replica to blame, and why.
    Failed(Option<u64>, String),
}
