//! Reads over the chunkservers' data ports (spec: `docs/data-port.md`): a request head, a
//! reply head, then the bytes in frames with a crc32c each — no HTTP/2 framing, no protobuf
//! message per frame. Connections are kept per chunkserver and reused (at most
//! [`IDLE_PER_SERVER`] idle each); frames are received by `shale_proto::dataport::Reader`
//! into a buffer reused across frames and handed out as slices of it (no zero-filling, no
//! copy).
//!
//! Invariants: a connection goes back to the pool only after a complete answer (its stream
//! position is known); every wait is bounded by [`IO_TIMEOUT`]; a frame's bytes are checked
//! against its crc32c before they are used, and the frames must add up to exactly the length
//! asked for.
use crate::read::Frames;
use shale_proto::dataport::{self, Reader};
use shale_proto::metapb::ChunkLocation;
use shale_security::transport::Stream;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Idle connections kept per chunkserver.
pub const IDLE_PER_SERVER: usize = 4;
/// Chunkservers with idle connections kept, at most (beyond that, the pool starts over).
const SERVERS_MAX: usize = 1024;
/// Longest wait for a connection, a head or a frame.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle data-port connections of one client, by chunkserver data address.
#[derive(Default)]
pub(crate) struct DataConns {
    idle: Mutex<HashMap<String, Vec<Stream>>>,
}

impl DataConns {
    fn take(&self, addr: &str) -> Option<Stream> {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(addr)
            .and_then(Vec::pop)
    }

    fn put(&self, addr: &str, s: Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= SERVERS_MAX && !idle.contains_key(addr) {
            idle.clear();
        }
        let list = idle.entry(addr.to_string()).or_default();
        if list.len() < IDLE_PER_SERVER {
            list.push(s);
        }
    }
}

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
    conns: &DataConns,
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
        Ok(Ok(r)) => r,
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
