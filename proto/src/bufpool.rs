//! Reusable page-aligned buffers: for O_DIRECT writes (the chunk store) and for frames read
//! from a socket or a file (data-port frames at both ends, chunkservers' reads). A [`Pooled`]
//! buffer turns into [`Bytes`] without a copy (`Bytes::from_owner`) and goes back to its pool
//! when the last `Bytes` of it drops, so steady-state writing and reading allocate nothing and
//! touch memory they already have (a fresh page costs a fault and the kernel's zeroing: a
//! quarter of a reading client's CPU before reads used a pool).
//!
//! O_DIRECT needs the buffer address, the length and the file offset of every write to be
//! multiples of the device's logical block size; [`DIRECT_ALIGN`] (4 KiB) covers every device
//! in use.
//!
//! Invariants: an [`AlignedBuf`] owns `cap` bytes at an address aligned to [`DIRECT_ALIGN`],
//! initialized (zeroed at allocation), of which `[..len]` are the buffer's contents; the pool
//! keeps at most `keep` idle buffers, and drops idle ones not reused for [`IDLE_FOR`] whenever
//! it is used.
use prost::bytes::Bytes;
use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Idle buffers unused this long are released (at the pool's next use).
pub const IDLE_FOR: Duration = Duration::from_secs(10);

/// The alignment of O_DIRECT buffers, offsets and lengths.
pub const DIRECT_ALIGN: usize = 4096;

/// A heap buffer aligned to [`DIRECT_ALIGN`].
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: the buffer is plain owned memory; access goes through &/&mut self.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access is read-only (`as_ref`).
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `cap` bytes (rounded up to [`DIRECT_ALIGN`], at least one page).
    pub fn new(cap: usize) -> AlignedBuf {
        let cap = cap.max(1).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        let layout = Self::layout(cap);
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, cap, len: 0 }
    }

    fn layout(cap: usize) -> Layout {
        // `cap` is a non-zero multiple of a power of two: always a valid layout.
        Layout::from_size_align(cap, DIRECT_ALIGN).unwrap_or_else(|_| Layout::new::<u8>())
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left.
    pub fn spare(&self) -> usize {
        self.cap - self.len
    }

    /// Appends `src` (at most [`AlignedBuf::spare`] bytes of it); returns how many were taken.
    pub fn extend_from_slice(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(self.spare());
        // SAFETY: `len + n <= cap`, the regions do not overlap (`src` is not ours: we hand
        // out only shared slices of initialized bytes, never while mutably borrowed).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(self.len), n);
        }
        self.len += n;
        n
    }

    /// The room past the contents, writable (zeroed or earlier contents: initialized), to be
    /// filled and then taken in with [`AlignedBuf::advance`].
    pub fn spare_mut(&mut self) -> &mut [u8] {
        // SAFETY: `[len..cap]` is initialized memory we own (zeroed at allocation), borrowed
        // mutably once.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.len), self.cap - self.len)
        }
    }

    /// Takes `n` more bytes of the room (filled through [`AlignedBuf::spare_mut`]) into the
    /// contents; at most what is left.
    pub fn advance(&mut self, n: usize) {
        self.len += n.min(self.spare());
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The contents, writable (e.g. to read into them).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `[..len]` is initialized memory we own, borrowed mutably once.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `[..len]` is initialized memory we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

/// Idle buffers of one size, most recently returned last.
pub struct Pool {
    size: usize,
    keep: usize,
    idle: Mutex<Vec<(Instant, AlignedBuf)>>,
}

impl Pool {
    /// A pool of `size`-byte buffers keeping at most `keep` idle ones.
    pub fn new(size: usize, keep: usize) -> Arc<Pool> {
        Arc::new(Pool {
            size: size.max(DIRECT_ALIGN).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN,
            keep,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The size of every buffer.
    pub fn buffer_bytes(&self) -> usize {
        self.size
    }

    /// An empty buffer (reused, or new).
    pub fn take(self: &Arc<Self>) -> Pooled {
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            Self::trim(&mut idle);
            idle.pop().map(|(_, b)| b)
        };
        let buf = idle.unwrap_or_else(|| AlignedBuf::new(self.size));
        Pooled {
            buf: Some(buf),
            pool: self.clone(),
        }
    }

    /// Idle buffers now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Drops the buffers idle for longer than [`IDLE_FOR`] (the oldest are first).
    fn trim(idle: &mut Vec<(Instant, AlignedBuf)>) {
        let stale = idle
            .iter()
            .take_while(|(t, _)| t.elapsed() > IDLE_FOR)
            .count();
        idle.drain(..stale);
    }
}

/// A buffer that returns to its pool when dropped.
pub struct Pooled {
    buf: Option<AlignedBuf>,
    pool: Arc<Pool>,
}

impl Pooled {
    pub fn buf(&mut self) -> &mut AlignedBuf {
        // Only `drop` takes the buffer out.
        self.buf
            .get_or_insert_with(|| AlignedBuf::new(DIRECT_ALIGN))
    }

    /// The contents as `Bytes`, without a copy; the buffer goes back to the pool when the last
    /// clone of them drops.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| b.as_ref())
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(mut b) = self.buf.take() {
            b.clear();
            let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            Pool::trim(&mut idle);
            if idle.len() < self.pool.keep {
                idle.push((Instant::now(), b));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_reused_and_bounded() {
        let pool = Pool::new(10_000, 2);
        assert_eq!(pool.buffer_bytes(), 12_288);
        let mut a = pool.take();
        assert_eq!(a.buf().as_ref().as_ptr() as usize % DIRECT_ALIGN, 0);
        assert_eq!(a.buf().extend_from_slice(&[7u8; 20_000]), 12_288);
        assert_eq!(a.buf().spare(), 0);
        let bytes = a.into_bytes();
        assert_eq!(bytes.len(), 12_288);
        assert_eq!(bytes.as_ptr() as usize % DIRECT_ALIGN, 0);
        let clone = bytes.slice(100..200);
        drop(bytes);
        assert_eq!(pool.idle(), 0, "still referenced by a slice");
        drop(clone);
        assert_eq!(pool.idle(), 1);
        let mut b = pool.take();
        assert!(b.buf().is_empty(), "a reused buffer starts empty");
        let (c, d) = (pool.take(), pool.take());
        drop((b, c, d));
        assert_eq!(pool.idle(), 2, "at most `keep` idle");
    }

    #[test]
    fn buffers_are_reused_bounded_and_hold_what_was_filled() {
        let pool = Pool::new(8, 2);
        let mut a = pool.take();
        a.buf().spare_mut()[..3].copy_from_slice(b"abc");
        a.buf().advance(3);
        a.buf().advance(1 << 20);
        assert_eq!(
            a.buf().len(),
            a.buf().capacity(),
            "advance stops at the end"
        );
        let ptr = a.as_ref().as_ptr();
        let bytes = a.into_bytes();
        let part = bytes.slice(0..3);
        drop(bytes);
        assert_eq!(&part[..], b"abc");
        assert_eq!(pool.idle(), 0, "still held by a slice");
        drop(part);
        assert_eq!(pool.idle(), 1);
        let mut b = pool.take();
        assert_eq!(b.as_ref().as_ptr(), ptr, "the same memory again");
        assert!(b.buf().is_empty());
        let (c, d, e) = (pool.take(), pool.take(), pool.take());
        drop((b, c, d, e));
        assert_eq!(pool.idle(), 2, "at most `keep` idle");
    }
}
