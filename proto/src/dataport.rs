//! The data port's wire format (spec: `docs/data-port.md`), shared by the chunkserver and the
//! client: length-prefixed protobuf heads ([`crate::datapb`]) and raw payload frames, each
//! behind an 8-byte head (length, crc32c of the payload), both little-endian.
//!
//! Invariants: a head is at most [`HEAD_MAX_BYTES`], a frame at most [`FRAME_MAX_BYTES`];
//! nothing larger is ever allocated from what a peer sends. A frame whose length is
//! [`FRAME_ERROR`] is not a frame: a [`crate::datapb::DataReply`] with the error follows.
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The ALPN protocol name of the data port (over TLS).
pub const ALPN: &[u8] = b"shale-data/1";
/// Largest protobuf head accepted.
pub const HEAD_MAX_BYTES: usize = 64 << 10;
/// Largest payload frame sent or accepted.
pub const FRAME_MAX_BYTES: usize = 1 << 20;
/// The frame length that announces an error instead of a frame.
pub const FRAME_ERROR: u32 = u32::MAX;

/// Writes `m` with its length in front.
pub async fn write_head<W: AsyncWrite + Unpin, M: Message>(
    w: &mut W,
    m: &M,
) -> std::io::Result<()> {
    let body = m.encode_to_vec();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    w.write_all(&out).await
}

/// Reads one length-prefixed head (`Ok(None)`: the peer closed the connection cleanly before
/// it). Too long or undecodable heads are `InvalidData`.
pub async fn read_head<R: AsyncRead + Unpin, M: Message + Default>(
    r: &mut R,
) -> std::io::Result<Option<M>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > HEAD_MAX_BYTES {
        return Err(invalid(format!(
            "a head of {len} bytes (at most {HEAD_MAX_BYTES})"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    M::decode(&body[..])
        .map(Some)
        .map_err(|e| invalid(format!("a head that does not decode: {e}")))
}

/// The 8-byte head of a payload frame of `len` bytes whose crc32c is `crc`.
pub fn frame_head(len: u32, crc: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Reads a frame head: (length, crc32c). A length over [`FRAME_MAX_BYTES`] other than
/// [`FRAME_ERROR`] is `InvalidData`.
pub async fn read_frame_head<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u32, u32)> {
    let mut h = [0u8; 8];
    r.read_exact(&mut h).await?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len != FRAME_ERROR && len as usize > FRAME_MAX_BYTES {
        return Err(invalid(format!(
            "a frame of {len} bytes (at most {FRAME_MAX_BYTES})"
        )));
    }
    Ok((len, crc))
}

/// Writes a frame: its head and `payload`, in as few system calls as the socket allows
/// (vectored: the payload is not copied in user space).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    crc: u32,
    payload: &[u8],
) -> std::io::Result<()> {
    let head = frame_head(payload.len() as u32, crc);
    let (mut h, mut p) = (&head[..], payload);
    while !h.is_empty() || !p.is_empty() {
        let bufs = [std::io::IoSlice::new(h), std::io::IoSlice::new(p)];
        let n = w.write_vectored(&bufs).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(h.len());
        h = &h[from_head..];
        p = &p[n - from_head..];
    }
    Ok(())
}

/// Connects to the data port at `addr` (`host:port`, `[v6]:port`) as `transport` says (TLS
/// with this protocol's ALPN, or plaintext), within `within`.
pub async fn dial(
    transport: &shale_security::Transport,
    addr: &str,
    within: std::time::Duration,
) -> std::io::Result<shale_security::transport::Stream> {
    dial_staged(transport, addr, within)
        .await
        .map_err(DialError::into_io)
}

/// Why [`dial_staged`] failed.
#[derive(Debug)]
enum DialError {
    /// No TCP connection (refused, unreachable, or none in time: nothing answers there), or a
    /// handshake that failed (a certificate, a protocol not offered).
    Failed(std::io::Error),
    /// The TCP connection was made but the handshake did not finish in time: a server took
    /// the connection (its kernel did) and does not answer — stopped or hung.
    Silent(std::io::Error),
}

impl DialError {
    /// The error inside, whatever the stage.
    fn into_io(self) -> std::io::Error {
        match self {
            DialError::Failed(e) | DialError::Silent(e) => e,
        }
    }
}

/// [`dial`], saying which stage failed: the TCP connect and the handshake each get `within`.
async fn dial_staged(
    transport: &shale_security::Transport,
    addr: &str,
    within: std::time::Duration,
) -> Result<shale_security::transport::Stream, DialError> {
    let timed_out = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} in {} ms", within.as_millis()),
        )
    };
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            DialError::Failed(invalid(format!("data port {addr:?} is not host:port")))
        })?;
    let tcp = tokio::time::timeout(within, shale_security::transport::connect_tcp(host, port))
        .await
        .map_err(|_| DialError::Failed(timed_out("no connection")))?
        .map_err(DialError::Failed)?;
    tokio::time::timeout(within, transport.handshake(tcp, host, ALPN))
        .await
        .map_err(|_| DialError::Silent(timed_out("connected, but no handshake")))?
        .map_err(DialError::Failed)
}

/// How long a write's sender waits for the answer to its header (and for a new connection's
/// handshake) from a receiver with `below` replicas after it in the pipeline: 5 s, plus 1 s
/// per replica below (at most 16 counted). The receiver answers only once every replica below
/// it has, each waiting the same way on its own next one, so the deepest waiter gives up
/// first and the blame lands on the replica that is really silent, not on one above it that
/// was still waiting.
pub fn header_wait(below: usize) -> std::time::Duration {
    std::time::Duration::from_secs(5 + below.min(16) as u64)
}

/// Idle connections kept per data address.
pub const IDLE_PER_SERVER: usize = 4;
/// Addresses with idle connections kept, at most (beyond that, the pool starts over).
const IDLE_SERVERS_MAX: usize = 1024;

/// Idle data-port connections by address (each ready for its next request), bounded: at most
/// [`IDLE_PER_SERVER`] per address and 1,024 addresses.
#[derive(Default)]
pub struct Idle {
    idle:
        std::sync::Mutex<std::collections::HashMap<String, Vec<shale_security::transport::Stream>>>,
}

impl Idle {
    /// An idle connection to `addr`, if one is kept.
    pub fn take(&self, addr: &str) -> Option<shale_security::transport::Stream> {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(addr)
            .and_then(Vec::pop)
    }

    /// Keeps `s` (ready for its next request) for another request to `addr`.
    pub fn put(&self, addr: &str, s: shale_security::transport::Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= IDLE_SERVERS_MAX && !idle.contains_key(addr) {
            idle.clear();
        }
        let list = idle.entry(addr.to_string()).or_default();
        if list.len() < IDLE_PER_SERVER {
            list.push(s);
        }
    }
}

/// A refusal or failure the server answered with: (gRPC status code, message).
pub type Refusal = (u32, String);

/// The client side of one read: [`Reader::start`] sends the request and reads the answer's
/// head; [`Reader::next`] yields the payload frame by frame, each checked against its crc32c
/// and received into a buffer that is reused while its earlier frames are gone.
pub struct Reader<S> {
    s: S,
    left: u64,
    at: u64,
    buf: prost::bytes::BytesMut,
    /// Where frames are received, if set (else into `buf`).
    pool: Option<std::sync::Arc<crate::bufpool::Pool>>,
}

/// What reading failed on: the transport (the connection is unusable) or the server's answer.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Refused(Refusal),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Refused((code, msg)) => {
                write!(f, "{:?} {msg}", tonic::Code::from(*code as i32))
            }
        }
    }
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Reader<S> {
    /// Sends `req` on `s` and reads the answer's head. A refusal comes back with the stream
    /// (still usable: nothing follows a refusal).
    pub async fn start(
        mut s: S,
        req: crate::pb::ReadChunkRequest,
    ) -> Result<Reader<S>, (Option<S>, ReadError)> {
        let head = crate::datapb::DataRequest {
            op: Some(crate::datapb::data_request::Op::Read(req)),
        };
        let sent = async {
            write_head(&mut s, &head).await?;
            s.flush().await
        };
        if let Err(e) = sent.await {
            return Err((None, e.into()));
        }
        let reply: crate::datapb::DataReply = match read_head(&mut s).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                );
                return Err((None, e.into()));
            }
            Err(e) => return Err((None, e.into())),
        };
        if reply.code != 0 {
            return Err((Some(s), ReadError::Refused((reply.code, reply.message))));
        }
        Ok(Reader {
            s,
            left: reply.length,
            at: 0,
            buf: prost::bytes::BytesMut::new(),
            pool: None,
        })
    }

    /// Receives every frame into a buffer of `pool` (whose buffers must hold a whole frame:
    /// [`FRAME_MAX_BYTES`]), reused once the frame's bytes are dropped.
    pub fn pooled(mut self, pool: std::sync::Arc<crate::bufpool::Pool>) -> Self {
        if pool.buffer_bytes() >= FRAME_MAX_BYTES {
            self.pool = Some(pool);
        }
        self
    }

    /// The bytes announced and not yet received.
    pub fn left(&self) -> u64 {
        self.left
    }

    /// The next frame's bytes (checked against its crc32c), or None after the last one.
    pub async fn next(&mut self) -> Result<Option<prost::bytes::Bytes>, ReadError> {
        if self.left == 0 {
            return Ok(None);
        }
        let (n, crc) = read_frame_head(&mut self.s).await?;
        if n == FRAME_ERROR {
            let why: crate::datapb::DataReply = read_head(&mut self.s).await?.unwrap_or_default();
            return Err(ReadError::Refused((why.code, why.message)));
        }
        if n == 0 || u64::from(n) > self.left {
            return Err(invalid(format!(
                "a frame of {n} bytes with {} left to come",
                self.left
            ))
            .into());
        }
        let n = n as usize;
        let data = match &self.pool {
            Some(pool) => {
                // `pooled` took only pools whose buffers hold a whole frame.
                let mut b = pool.take();
                self.s.read_exact(&mut b.buf().spare_mut()[..n]).await?;
                b.buf().advance(n);
                b.into_bytes()
            }
            None => {
                // Frames handed out earlier keep their memory; once they are all dropped,
                // `reserve` reuses it.
                self.buf
                    .reserve(n.max(4 * FRAME_MAX_BYTES).min(self.left as usize));
                let mut part = (&mut self.s).take(n as u64);
                while self.buf.len() < n {
                    if part.read_buf(&mut self.buf).await? == 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                    }
                }
                self.buf.split_to(n).freeze()
            }
        };
        let actual = crc32c::crc32c(&data);
        if actual != crc {
            return Err(invalid(format!(
                "the frame at byte {} arrived damaged (crc32c {actual:08x}, sent {crc:08x})",
                self.at
            ))
            .into());
        }
        self.left -= n as u64;
        self.at += n as u64;
        Ok(Some(data))
    }

    /// The connection, once every announced byte was read (ready for the next request).
    pub fn finish(self) -> Option<S> {
        (self.left == 0).then_some(self.s)
    }
}

/// Sends a write's header (`DataRequest.write`) and reads the server's first answer: OK (the
/// whole pipeline is ready: send the bytes) or a refusal (nothing is to follow; the connection
/// stays usable).
pub async fn write_start<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    header: crate::pb::WriteHeader,
) -> std::io::Result<crate::datapb::DataReply> {
    let head = crate::datapb::DataRequest {
        op: Some(crate::datapb::data_request::Op::Write(header)),
    };
    write_head(s, &head).await?;
    s.flush().await?;
    read_head(s).await?.ok_or_else(closed)
}

/// How the start of a write over the data port went ([`open_write`]).
pub enum Opened {
    /// The whole pipeline is ready: send the frames on this connection.
    Go(shale_security::transport::Stream),
    /// Refused (the connection went back to the idle ones): the answer says why and whom
    /// to blame.
    Refused(crate::datapb::DataReply),
    /// No connection could be made, or the header was not understood as a write at all (a
    /// server older than writes on the data port says so, and closes): use gRPC.
    Fallback(String),
}

/// Starts a write at the data port `addr`, on a kept connection from `idle` or a new one (a
/// kept one the server has closed meanwhile is replaced by a new one): the connection, its
/// handshake and the server's first answer each within [`header_wait`] for the header's
/// downstream. An error: the connection broke, or the server took it and never answered
/// (blame it); a fallback: nothing listens there, or the header was not understood.
pub async fn open_write(
    transport: &shale_security::Transport,
    idle: &Idle,
    addr: &str,
    header: crate::pb::WriteHeader,
) -> std::io::Result<Opened> {
    let within = header_wait(header.downstream.len());
    let (s, answer) = loop {
        let (mut s, kept) = match idle.take(addr) {
            Some(s) => (s, true),
            None => match dial_staged(transport, addr, within).await {
                Ok(s) => (s, false),
                // Taken by the kernel but never answered: the server is stopped or hung, and
                // gRPC would wait on it as well.
                Err(DialError::Silent(e)) => return Err(e),
                Err(DialError::Failed(e)) => {
                    return Ok(Opened::Fallback(format!("data port {addr}: connect: {e}")));
                }
            },
        };
        match tokio::time::timeout(within, write_start(&mut s, header.clone())).await {
            Ok(Ok(answer)) => break (s, answer),
            Ok(Err(_)) if kept => continue,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer to the header in {} s", within.as_secs()),
                ))
            }
        }
    };
    if answer.code == tonic::Code::InvalidArgument as u32 {
        return Ok(Opened::Fallback(format!(
            "data port {addr}: write not understood: {}",
            answer.message
        )));
    }
    if answer.code != 0 {
        // A refusal is a complete answer: the connection stays usable.
        idle.put(addr, s);
        return Ok(Opened::Refused(answer));
    }
    Ok(Opened::Go(s))
}

/// Sends the frames of a write whose start was answered OK, and returns the final answer.
/// Each frame must leave within `stall`, and the answer come within `ack` of the last one. An
/// answer before the last frame left (the write failed somewhere down the pipeline) ends the
/// sending at once. The connection comes back only when it is ready for another request
/// (every frame sent and a final OK read).
pub async fn write_frames<S, F>(
    s: S,
    mut frames: F,
    stall: std::time::Duration,
    ack: std::time::Duration,
) -> (std::io::Result<crate::datapb::DataReply>, Option<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: futures_util::Stream<Item = (u32, prost::bytes::Bytes)> + Unpin,
{
    use futures_util::StreamExt;
    let timed_out = |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, what);
    let (mut rd, mut wr) = tokio::io::split(s);
    let (answer, reusable) = {
        let send = async {
            while let Some((crc, data)) = frames.next().await {
                tokio::time::timeout(stall, write_frame(&mut wr, crc, &data))
                    .await
                    .map_err(|_| timed_out("the server took no frame in time"))??;
            }
            tokio::time::timeout(stall, wr.flush())
                .await
                .map_err(|_| timed_out("the server took no frame in time"))?
        };
        let reply = async {
            read_head::<_, crate::datapb::DataReply>(&mut rd)
                .await?
                .ok_or_else(closed)
        };
        tokio::pin!(send, reply);
        tokio::select! {
            early = &mut reply => match early {
                Ok(r) if r.code == 0 => (Err(invalid(
                    "the server answered OK before the last frame".into(),
                )), false),
                other => (other, false),
            },
            sent = &mut send => match sent {
                Ok(()) => match tokio::time::timeout(ack, &mut reply).await {
                    Err(_) => (Err(timed_out("no answer after the last frame")), false),
                    Ok(r) => {
                        let ok = matches!(&r, Ok(a) if a.code == 0);
                        (r, ok)
                    }
                },
                // The server may have answered why before it stopped reading.
                Err(e) => match tokio::time::timeout(std::time::Duration::from_secs(1), &mut reply).await {
                    Ok(Ok(r)) if r.code != 0 => (Ok(r), false),
                    _ => (Err(e), false),
                },
            },
        }
    };
    (answer, reusable.then(|| rd.unsplit(wr)))
}

fn closed() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the server closed the connection",
    )
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapb::DataReply;

    #[tokio::test]
    async fn heads_and_frames_round_trip_and_oversize_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let reply = DataReply {
            code: 0,
            message: "ok".into(),
            length: 5,

            ..Default::default()
        };
        write_head(&mut a, &reply).await.expect("write head");
        write_frame(&mut a, 77, b"hello")
            .await
            .expect("write frame");
        let got: DataReply = read_head(&mut b).await.expect("read").expect("a head");
        assert_eq!(got, reply);
        assert_eq!(read_frame_head(&mut b).await.expect("frame head"), (5, 77));
        let mut p = [0u8; 5];
        b.read_exact(&mut p).await.expect("payload");
        assert_eq!(&p, b"hello");
        // Oversize heads and frames are refused before anything is allocated.
        a.write_all(&(HEAD_MAX_BYTES as u32 + 1).to_le_bytes())
            .await
            .expect("write");
        let e = read_head::<_, DataReply>(&mut b)
            .await
            .expect_err("too long");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        a.write_all(&frame_head(FRAME_MAX_BYTES as u32 + 1, 0))
            .await
            .expect("write");
        assert!(read_frame_head(&mut b).await.is_err());
        a.write_all(&frame_head(FRAME_ERROR, 0))
            .await
            .expect("write");
        assert_eq!(
            read_frame_head(&mut b).await.expect("error"),
            (FRAME_ERROR, 0)
        );
        // A clean close before a head is no error.
        drop(a);
        assert!(read_head::<_, DataReply>(&mut b)
            .await
            .expect("eof")
            .is_none());
    }

    /// A server's side of one read, by hand: the request, then `reply`, then `frames`.
    async fn serve_one(
        mut s: tokio::io::DuplexStream,
        reply: DataReply,
        frames: Vec<(Vec<u8>, u32)>,
    ) -> tokio::io::DuplexStream {
        let req: crate::datapb::DataRequest =
            read_head(&mut s).await.expect("req").expect("a head");
        assert!(req.op.is_some());
        write_head(&mut s, &reply).await.expect("reply");
        for (p, crc) in frames {
            write_frame(&mut s, crc, &p).await.expect("frame");
        }
        s
    }

    #[tokio::test]
    async fn the_reader_checks_every_frame_and_the_total() {
        let ok = |len| DataReply {
            code: 0,
            message: String::new(),
            length: len,

            ..Default::default()
        };
        let req = crate::pb::ReadChunkRequest::default();
        // Two good frames, then the connection is ready for the next request.
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(serve_one(
            b,
            ok(8),
            vec![
                (b"abc".to_vec(), crc32c::crc32c(b"abc")),
                (b"defgh".to_vec(), crc32c::crc32c(b"defgh")),
            ],
        ));
        let mut r = Reader::start(a, req.clone())
            .await
            .map_err(|e| e.1)
            .expect("start");
        assert_eq!(r.left(), 8);
        assert_eq!(&r.next().await.expect("1").expect("a frame")[..], b"abc");
        assert_eq!(&r.next().await.expect("2").expect("a frame")[..], b"defgh");
        assert!(r.next().await.expect("end").is_none());
        assert!(r.finish().is_some(), "reusable after a complete answer");
        server.await.expect("server");
        // A damaged frame is an error, as is a frame longer than what is left.
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(serve_one(b, ok(3), vec![(b"abc".to_vec(), 1)]));
        let mut r = Reader::start(a, req.clone())
            .await
            .map_err(|e| e.1)
            .expect("start");
        assert!(matches!(r.next().await, Err(ReadError::Io(_))));
        drop(server.await);
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(serve_one(
            b,
            ok(2),
            vec![(b"abc".to_vec(), crc32c::crc32c(b"abc"))],
        ));
        let mut r = Reader::start(a, req.clone())
            .await
            .map_err(|e| e.1)
            .expect("start");
        assert!(r.next().await.is_err());
        drop(server.await);
        // A refusal comes back with the connection.
        let (a, b) = tokio::io::duplex(1 << 16);
        let refused = DataReply {
            code: 7,
            message: "no".into(),
            length: 0,

            ..Default::default()
        };
        let server = tokio::spawn(serve_one(b, refused, vec![]));
        match Reader::start(a, req).await {
            Err((Some(_), ReadError::Refused((7, m)))) => assert_eq!(m, "no"),
            Err((_, e)) => panic!("unexpected {e}"),
            Ok(_) => panic!("accepted"),
        }
        drop(server.await);
    }

    /// Starts a write at `addr`: Err (to blame the receiver), Ok(true) for a fallback to gRPC,
    /// Ok(false) for anything else; and how long it took.
    async fn start_at(
        t: &shale_security::Transport,
        addr: &str,
    ) -> (std::io::Result<bool>, std::time::Duration) {
        let header = crate::pb::WriteHeader {
            length: 1,
            node_id: 1,
            ..Default::default()
        };
        let t0 = std::time::Instant::now();
        let r = open_write(t, &Idle::default(), addr, header).await;
        (r.map(|o| matches!(o, Opened::Fallback(_))), t0.elapsed())
    }

    /// A receiver whose kernel took the connection but which never answers (a stopped
    /// server) is an error after `header_wait`, over TLS (no handshake) and in plaintext (no
    /// answer to the header): the writer blames it rather than waiting on gRPC. Where nothing
    /// listens, the write falls back to gRPC at once.
    #[tokio::test]
    async fn a_silent_receiver_is_blamed_and_an_absent_one_falls_back() {
        use shale_security::certs::{init_ca, issue, IssueOptions};
        use shale_security::{Principal, Role, Tls, TlsFiles, Transport};
        let d = tempfile::tempdir().expect("tmp");
        init_ca(d.path()).expect("ca");
        let alice = Principal::new(Role::User, "alice").expect("principal");
        issue(d.path(), d.path(), &alice, &IssueOptions::default()).expect("issue");
        let tls = Transport::tls(Tls::load(TlsFiles::of(d.path(), &alice)).expect("tls"));
        // Listening, never accepting: the kernel completes TCP handshakes all the same.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr").to_string();
        let plain = Transport::plaintext();
        let ((over_tls, t1), (over_tcp, t2)) =
            tokio::join!(start_at(&tls, &addr), start_at(&plain, &addr));
        for (r, took) in [(over_tls, t1), (over_tcp, t2)] {
            match r {
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
                Ok(fallback) => panic!("a silent receiver was not blamed (fallback: {fallback})"),
            }
            assert!(took >= header_wait(0), "gave up after {took:?}");
        }
        drop(silent);
        // Nothing listens there now.
        let (absent, _) = start_at(&tls, &addr).await;
        assert!(matches!(absent, Ok(true)), "{absent:?}");
    }
}
