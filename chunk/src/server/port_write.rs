//! Writes over the data port (spec: `docs/data-port.md`): a `DataRequest.write` header, checked
//! exactly as gRPC `WriteChunk` checks its header (`ChunkServer::begin_write`), the first
//! answer once the whole pipeline below is ready, then raw frames (each behind its length and
//! crc32c), then the final answer once every replica holds the chunk durable
//! (`ChunkServer::end_write`, as for gRPC).
//!
//! Frames are received into pooled page-aligned buffers, checked against their crc32c, then
//! forwarded downstream and written locally from that same buffer (with O_DIRECT the store
//! writes it to the disk as it is): no user-space copy of the payload.
//!
//! Invariants: a refused header is answered and leaves the connection usable (nothing was to
//! follow it); after a failure mid-stream the answer is sent and the connection closed (its
//! position in the client's frames is unknown); every read of a frame is bounded by the
//! server's stream idle time; a frame is at most 1 MiB and the frames add up to exactly the
//! header's length, or the write fails and nothing is left behind.
use super::pipeline::{status_reply, Downstream};
use super::service::ChunkServer;
use super::status::blame;
use shale_proto::datapb::DataReply;
use shale_proto::dataport::{self, FRAME_ERROR, FRAME_MAX_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tonic::Status;

/// One write on a data-port connection. Ok(true): the connection is ready for the next
/// request; Ok(false): it must be closed.
pub(super) async fn write<S: AsyncRead + AsyncWrite + Unpin>(
    server: &ChunkServer,
    peer: &shale_security::Peer,
    s: &mut S,
    wire: shale_proto::pb::WriteHeader,
) -> std::io::Result<bool> {
    let begun = match shale_security::peer_or_anonymous(Some(peer)) {
        Ok(caller) => server.begin_write(&caller, &wire).await,
        Err(st) => Err(st),
    };
    let w = match begun {
        Ok(w) => w,
        // A refused header is an answer; the connection stays usable.
        Err(st) => return answer(s, &status_reply(&st)).await.map(|()| true),
    };
    let down = match Downstream::open(server, &w.h, &wire).await {
        Ok(d) => d,
        Err(st) => {
            let st = server.end_write(w, Err(st), None).await.err();
            let st = st.unwrap_or_else(|| Status::internal("write neither began nor failed"));
            return answer(s, &status_reply(&st)).await.map(|()| true);
        }
    };
    // The whole pipeline is ready: the bytes may come.
    answer(s, &DataReply::default()).await?;
    let received = receive(server, &w.h, s, down.as_ref()).await;
    let clean = received.is_ok();
    let reply = match server.end_write(w, received, down).await {
        Ok(r) => DataReply {
            length: r.length,
            durable_on: r.durable_on,
            ..Default::default()
        },
        Err(st) => status_reply(&st),
    };
    answer(s, &reply).await?;
    Ok(clean)
}

async fn answer<S: AsyncWrite + Unpin>(s: &mut S, reply: &DataReply) -> std::io::Result<()> {
    dataport::write_head(s, reply).await?;
    s.flush().await
}

/// Receives the header's `length` bytes in frames, each checked, forwarded downstream and
/// written here.
async fn receive<S: AsyncRead + Unpin>(
    server: &ChunkServer,
    h: &shale_proto::WriteHeader,
    s: &mut S,
    down: Option<&Downstream>,
) -> Result<(), Status> {
    let me = server.me();
    let idle = server.stream_idle;
    let silent =
        || Status::deadline_exceeded(format!("write stream idle for {} ms", idle.as_millis()));
    let broken = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::InvalidData => Status::invalid_argument(e.to_string()),
        _ => Status::unavailable(format!("the write stream broke: {e}")),
    };
    let mut off = 0u64;
    while off < h.length {
        let (n, crc) = tokio::time::timeout(idle, dataport::read_frame_head(s))
            .await
            .map_err(|_| silent())?
            .map_err(broken)?;
        if n == FRAME_ERROR || n == 0 || off + u64::from(n) > h.length {
            return Err(Status::invalid_argument(format!(
                "a frame of {n} bytes at byte {off} of {} (1 to {FRAME_MAX_BYTES}, within the length)",
                h.length
            )));
        }
        let n = n as usize;
        // The pool's buffers hold a whole frame (1 MiB).
        let mut buf = server.frame_pool.take();
        tokio::time::timeout(idle, s.read_exact(&mut buf.buf().spare_mut()[..n]))
            .await
            .map_err(|_| silent())?
            .map_err(broken)?;
        buf.buf().advance(n);
        let data = buf.into_bytes();
        let actual = crc32c::crc32c(&data);
        if actual != crc {
            return Err(blame(
                Status::data_loss(format!(
                    "the frame at byte {off} arrived damaged (crc32c {actual:08x}, sent {crc:08x})"
                )),
                me,
            ));
        }
        if let Some(d) = down {
            d.send(Some(crc), &data).await?;
        }
        server
            .write_detached(h.chunk, off, data)
            .await
            .map_err(|e| blame(e, me))?;
        off += n as u64;
    }
    Ok(())
}
