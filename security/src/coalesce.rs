//! Writes held back until a flush, and each flush put off once behind the tasks that are ready
//! to run: what lets one gRPC connection carry the answers of many calls in one `writev`.
//!
//! hyper's HTTP/2 connection task flushes as soon as it has a frame to send, and the task that
//! finishes a call wakes it at once. Under many concurrent calls that is one TLS record and one
//! system call per answer (≈ 0.85 per `stat` on a master at 45 k stats/s, and one per request on
//! the client), and on loopback the sender's system call also runs the receiver's TCP input. A
//! [`Held`] buffer takes the connection's writes; at a flush it first yields once (the task
//! wakes itself, so it runs again after the tasks already queued on its worker), and during that
//! time the other calls' answers join the buffer; the second flush writes them all. A yield
//! that gained nothing (no write joined: a lone caller) costs a trip through the run queue and
//! an `epoll_wait`, so the next [`SKIP_AFTER_IDLE`] flushes write at once: a client that calls
//! one at a time pays for one yield in seventeen flushes.
//!
//! Invariants: at most [`HELD_MAX`] bytes are held (a write that would pass it first drains
//! what is held; a write at least that large goes through after the drain); everything held
//! is written before a flush or shutdown completes, in order; a flush yields at most once
//! before it writes.
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;

/// Bytes held at most before they are written without waiting for a flush.
pub const HELD_MAX: usize = 64 << 10;
/// The buffer's capacity kept after a drain (a burst's larger buffer is given back).
const KEPT_CAPACITY: usize = 16 << 10;
/// Flushes that write at once, without yielding, after a yield that gained nothing (no other
/// write joined while it waited: a lone caller, whose answers should not wait at all).
pub const SKIP_AFTER_IDLE: u8 = 16;

/// The held writes of one connection.
#[derive(Debug, Default)]
pub(crate) struct Held {
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    sent: usize,
    flush: Flush,
    /// Flushes left that write at once (see [`SKIP_AFTER_IDLE`]).
    skip: u8,
}

/// Where a flush is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// None in progress.
    #[default]
    Idle,
    /// Yielded once; whether a write came in since.
    Yielded { gained: bool },
    /// Writing what is held (a socket that takes no more brings it back here).
    Draining,
}

impl Held {
    fn held(&self) -> usize {
        self.buf.len() - self.sent
    }

    pub(crate) fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(w, cx, &[io::IoSlice::new(buf)])
    }

    pub(crate) fn poll_write_vectored<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.held() + total > HELD_MAX {
            ready!(self.poll_drain(w, cx))?;
        }
        if let Flush::Yielded { gained } = &mut self.flush {
            *gained |= total > 0;
        }
        if total >= HELD_MAX {
            return Pin::new(w).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            self.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    pub(crate) fn poll_flush<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.held() > 0 {
            match self.flush {
                Flush::Idle if self.skip > 0 => self.skip -= 1,
                Flush::Idle => {
                    self.flush = Flush::Yielded { gained: false };
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Flush::Yielded { gained: false } => self.skip = SKIP_AFTER_IDLE,
                Flush::Yielded { gained: true } | Flush::Draining => {}
            }
            self.flush = Flush::Draining;
            ready!(self.poll_drain(w, cx))?;
        }
        self.flush = Flush::Idle;
        Pin::new(w).poll_flush(cx)
    }

    pub(crate) fn poll_shutdown<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(w, cx))?;
        Pin::new(w).poll_shutdown(cx)
    }

    /// Writes everything held.
    fn poll_drain<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut *w).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.buf.shrink_to(KEPT_CAPACITY);
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncReadExt;

    /// A writer that records each write call (as a system call would be) and may take only
    /// part of what it is given.
    #[derive(Default)]
    struct Calls {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        at_most: Option<usize>,
    }

    impl AsyncWrite for Calls {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.at_most.map_or(buf.len(), |m| m.min(buf.len()));
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn written(c: &Calls) -> Vec<u8> {
        c.writes.concat()
    }

    #[tokio::test]
    async fn writes_wait_for_the_second_flush_and_go_out_together_in_order() {
        let (mut h, mut w) = (Held::default(), Calls::default());
        for part in [&b"one "[..], b"two ", b"three"] {
            let n = poll_fn(|cx| h.poll_write(&mut w, cx, part)).await.unwrap();
            assert_eq!(n, part.len());
        }
        assert!(w.writes.is_empty(), "nothing is written before a flush");
        // The first flush yields (and wakes its task), the second writes.
        assert_eq!(flush_polls(&mut h, &mut w).await, 2);
        assert_eq!(w.writes.len(), 1, "one write for all three");
        assert_eq!(written(&w), b"one two three");
        assert_eq!(w.flushes, 1);
        // A flush with nothing held does not yield.
        assert_eq!(flush_polls(&mut h, &mut w).await, 1);
        assert_eq!(w.flushes, 2);
    }

    /// Counts a flush's polls (two: it yielded).
    async fn flush_polls(h: &mut Held, w: &mut Calls) -> usize {
        let mut polls = 0;
        poll_fn(|cx| {
            polls += 1;
            h.poll_flush(w, cx)
        })
        .await
        .unwrap();
        polls
    }

    #[tokio::test]
    async fn a_yield_that_gains_nothing_makes_the_next_flushes_write_at_once() {
        let (mut h, mut w) = (Held::default(), Calls::default());
        let write = |h: &mut Held, w: &mut Calls| {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            assert!(h.poll_write(w, &mut cx, b"x").is_ready());
        };
        // A lone writer: the yield gained nothing...
        write(&mut h, &mut w);
        assert_eq!(flush_polls(&mut h, &mut w).await, 2);
        // ...so the next ones do not yield.
        for _ in 0..SKIP_AFTER_IDLE {
            write(&mut h, &mut w);
            assert_eq!(flush_polls(&mut h, &mut w).await, 1);
        }
        // Then it tries again; a write joining during the yield keeps it yielding.
        write(&mut h, &mut w);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(h.poll_flush(&mut w, &mut cx).is_pending());
        write(&mut h, &mut w);
        assert!(h.poll_flush(&mut w, &mut cx).is_ready());
        assert_eq!(w.writes.last().map(Vec::as_slice), Some(&b"xx"[..]));
        write(&mut h, &mut w);
        assert_eq!(flush_polls(&mut h, &mut w).await, 2);
    }

    #[tokio::test]
    async fn large_writes_go_through_after_what_is_held_and_partial_writes_resume() {
        let mut h = Held::default();
        let mut w = Calls {
            at_most: Some(1000),
            ..Calls::default()
        };
        let small = vec![1u8; 3000];
        let big = vec![2u8; HELD_MAX];
        poll_fn(|cx| h.poll_write(&mut w, cx, &small))
            .await
            .unwrap();
        // Past the bound: what is held is drained first (in 1,000-byte pieces here).
        let n = poll_fn(|cx| h.poll_write(&mut w, cx, &big)).await.unwrap();
        assert_eq!(n, 1000, "the large write went straight through");
        assert_eq!(&written(&w)[..3000], &small[..]);
        assert_eq!(&written(&w)[3000..], &big[..1000]);
        // Vectored writes are held as one.
        let bufs = [io::IoSlice::new(b"ab"), io::IoSlice::new(b"cd")];
        let n = poll_fn(|cx| h.poll_write_vectored(&mut w, cx, &bufs))
            .await
            .unwrap();
        assert_eq!(n, 4);
        poll_fn(|cx| h.poll_shutdown(&mut w, cx)).await.unwrap();
        assert!(written(&w).ends_with(b"abcd"));
        assert_eq!(h.held(), 0);
    }

    /// Through a real pipe: what is written arrives complete and in order, however the writes
    /// and flushes interleave.
    #[tokio::test]
    async fn bytes_arrive_whole_through_a_pipe() {
        let (a, mut b) = tokio::io::duplex(4096);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.map(|_| got)
        });
        let mut w = a;
        let mut h = Held::default();
        let mut want = Vec::new();
        for i in 0..200u32 {
            let part = vec![(i % 251) as u8; (i as usize * 97) % 9000];
            want.extend_from_slice(&part);
            let mut off = 0;
            while off < part.len() {
                off += poll_fn(|cx| h.poll_write(&mut w, cx, &part[off..]))
                    .await
                    .unwrap();
            }
            if i % 7 == 0 {
                poll_fn(|cx| h.poll_flush(&mut w, cx)).await.unwrap();
            }
        }
        poll_fn(|cx| h.poll_shutdown(&mut w, cx)).await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap().unwrap(), want);
    }
}
