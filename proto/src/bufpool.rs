//! Reusable receive buffers: frames read from a socket land in buffers that go back to their
//! pool when the last `Bytes` of them drops, so steady reading touches memory it already has
//! instead of fresh pages (a fresh page costs a fault and the kernel's zeroing: a quarter of a
//! reading client's CPU before this pool).
//!
//! Invariants: every buffer of a pool has the pool's size and is initialized memory (zeroed
//! when first allocated); a [`Buf`]'s contents are `[..len]`; a pool keeps at most `keep` idle
//! buffers, and drops idle ones that were not reused for [`IDLE_FOR`] whenever it is used.
use prost::bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Idle buffers unused this long are released (at the pool's next use).
pub const IDLE_FOR: Duration = Duration::from_secs(10);

/// Idle buffers of one size, most recently returned last.
pub struct Pool {
    size: usize,
    keep: usize,
    idle: Mutex<Vec<(Instant, Box<[u8]>)>>,
}

impl Pool {
    /// A pool of `size`-byte buffers keeping at most `keep` idle ones.
    pub fn new(size: usize, keep: usize) -> Arc<Pool> {
        Arc::new(Pool {
            size: size.max(1),
            keep,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The size of every buffer.
    pub fn buffer_bytes(&self) -> usize {
        self.size
    }

    /// An empty buffer: the most recently returned one, or a new one.
    pub fn take(self: &Arc<Self>) -> Buf {
        let mem = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            Self::trim(&mut idle);
            idle.pop().map(|(_, m)| m)
        };
        Buf {
            mem: Some(mem.unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice())),
            len: 0,
            pool: self.clone(),
        }
    }

    /// Idle buffers now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Drops the buffers idle for longer than [`IDLE_FOR`] (the oldest are first).
    fn trim(idle: &mut Vec<(Instant, Box<[u8]>)>) {
        let stale = idle
            .iter()
            .take_while(|(t, _)| t.elapsed() > IDLE_FOR)
            .count();
        idle.drain(..stale);
    }
}

/// A buffer of a [`Pool`], filled front to back; back to its pool when dropped.
pub struct Buf {
    mem: Option<Box<[u8]>>,
    len: usize,
    pool: Arc<Pool>,
}

impl Buf {
    /// The bytes filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was filled yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The room after the contents, to fill and then take in with [`Buf::advance`].
    pub fn spare_mut(&mut self) -> &mut [u8] {
        match self.mem.as_deref_mut() {
            Some(m) => &mut m[self.len..],
            None => &mut [],
        }
    }

    /// Takes `n` more bytes of the room into the contents (at most what is left).
    pub fn advance(&mut self, n: usize) {
        let cap = self.mem.as_ref().map_or(0, |m| m.len());
        self.len = (self.len + n).min(cap);
    }

    /// The contents as `Bytes`, without a copy; the buffer goes back to the pool when the last
    /// clone of them drops.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Buf {
    fn as_ref(&self) -> &[u8] {
        self.mem.as_deref().map_or(&[], |m| &m[..self.len])
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some(m) = self.mem.take() {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            Pool::trim(&mut idle);
            if idle.len() < self.pool.keep {
                idle.push((Instant::now(), m));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_bounded_and_hold_what_was_filled() {
        let pool = Pool::new(8, 2);
        let mut a = pool.take();
        a.spare_mut()[..3].copy_from_slice(b"abc");
        a.advance(3);
        a.advance(100);
        assert_eq!(a.len(), 8, "advance stops at the end");
        let ptr = a.as_ref().as_ptr();
        let bytes = a.freeze();
        let part = bytes.slice(0..3);
        drop(bytes);
        assert_eq!(&part[..], b"abc");
        assert_eq!(pool.idle(), 0, "still held by a slice");
        drop(part);
        assert_eq!(pool.idle(), 1);
        let b = pool.take();
        assert_eq!(b.as_ref().as_ptr(), ptr, "the same memory again");
        assert!(b.is_empty());
        let (c, d, e) = (pool.take(), pool.take(), pool.take());
        drop((b, c, d, e));
        assert_eq!(pool.idle(), 2, "at most `keep` idle");
    }
}
