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
}
