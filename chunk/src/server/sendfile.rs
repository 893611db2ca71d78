//! One data-port frame sent straight from a chunk's data file: the 8-byte head with `send`
//! (`MSG_MORE`, so it leaves with the payload's first segment), then the payload with
//! `sendfile` from the page cache — no copy into a user-space buffer and none out of it.
//! Used only on plaintext connections (under TLS the bytes must pass through rustls) and only
//! for a range the store has just read and verified (`ChunkStore::read_with_file`); the
//! frame's crc32c is that of the verified bytes, so a receiver catches anything that changed
//! on the disk in between.
//!
//! Invariants: the socket is tokio's (non-blocking): every syscall runs inside `try_io` after
//! the socket reported writable, so a slow reader parks the task, not the thread; a file that
//! ends before the range does (truncated underneath) is an error, never a short frame.
use std::io;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Sends a frame head for `len` bytes with `crc`, then bytes `[offset, offset + len)` of
/// `file`.
pub async fn send_frame(
    tcp: &TcpStream,
    crc: u32,
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let frame_len = u32::try_from(len).map_err(io::Error::other)?;
    let head = shale_proto::dataport::frame_head(frame_len, crc);
    let (sock, fd) = (tcp.as_raw_fd(), file.as_raw_fd());
    let mut sent = 0;
    while sent < head.len() {
        let rest = &head[sent..];
        // SAFETY: `rest` is valid for reads of its length; `sock` is the open socket.
        let n = when_writable(tcp, || unsafe {
            libc::send(
                sock,
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n;
    }
    let end = offset.saturating_add(len);
    let mut at = offset;
    while at < end {
        let want = usize::try_from(end - at).map_err(io::Error::other)?;
        let mut off = libc::off_t::try_from(at).map_err(io::Error::other)?;
        // SAFETY: both descriptors are open; `off` is a valid in/out pointer.
        let n = when_writable(tcp, || unsafe { libc::sendfile(sock, fd, &mut off, want) }).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the chunk file ended at {at} sending {offset}+{len}"),
            ));
        }
        at += n as u64;
    }
    Ok(())
}

/// Runs the write syscall `op` (returning a count, or -1 and errno) once `tcp` is writable,
/// again after `EAGAIN` or `EINTR`; the count it wrote.
async fn when_writable(tcp: &TcpStream, mut op: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        tcp.writable().await?;
        let done = tcp.try_io(Interest::WRITABLE, || {
            let n = op();
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        });
        match done {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn a_frame_from_a_file_arrives_as_head_and_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let data: Vec<u8> = (0..3 << 20)
            .map(|i: u32| (i * 7 + i / 4096) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let (tx, mut rx) = pair().await;
        let (off, len) = (12_345u64, 2u64 << 20);
        // The reader drains as the sender sends (the range exceeds the socket buffers).
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 8 + len as usize];
            rx.read_exact(&mut got).await.unwrap();
            got
        });
        send_frame(&tx, 0xdead_beef, &file, off, len).await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(
            got[..8],
            shale_proto::dataport::frame_head(len as u32, 0xdead_beef)
        );
        assert!(got[8..] == data[off as usize..(off + len) as usize]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_the_range_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::write(&path, vec![5u8; 1000]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let (tx, _rx) = pair().await;
        let e = send_frame(&tx, 1, &file, 500, 1000).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
