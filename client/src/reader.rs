//! [`FileReader`]: a stored file as an [`AsyncRead`] + [`AsyncSeek`], with read-ahead.
//!
//! Invariants: the file is read in windows of at most [`WINDOW`] bytes that never cross a chunk
//! boundary; while reads go front to back, the window holding the position and up to
//! `read_parallelism` windows after it are fetched at once; after a seek away from what is
//! read or being fetched, only the 64 KiB digest blocks a read needs are fetched (no
//! read-ahead) until a read continues where the previous one ended, each on its own task (aborted when no longer wanted: after a seek elsewhere
//! or when the reader is dropped). Every byte comes verified from a replica (see `read.rs`); a
//! window whose replicas all fail is retried once with fresh locations (replicas move when the
//! cluster heals). The length and chunk map are those of the file when it was opened: files are
//! write-once, and a file replaced meanwhile keeps its old chunks readable until they are
//! collected.
use crate::error::{ClientError, Result};
use crate::read::Frames;
use crate::Client;
use shale_proto::metapb::ChunkLocation;
use shale_security::digest::BLOCK_BYTES;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tokio::task::JoinHandle;

/// The largest piece fetched at once.
pub const WINDOW: u64 = 4 << 20;

/// The window `[start, end)` holding `pos` (which must be below `length`).
fn window_at(pos: u64, chunk_size: u64, length: u64) -> (u64, u64) {
    let chunk_start = pos - pos % chunk_size;
    let start = chunk_start + (pos - chunk_start) / WINDOW * WINDOW;
    let end = (start + WINDOW).min(chunk_start + chunk_size).min(length);
    (start, end)
}

/// A window being fetched; aborted when dropped.
struct Fetch {
    start: u64,
    end: u64,
    task: JoinHandle<Result<Frames>>,
}

impl Drop for Fetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A window's bytes.
struct Window {
    start: u64,
    frames: Frames,
}

impl Window {
    /// Copies bytes at `pos` into `buf`; how many.
    fn copy(&self, pos: u64, buf: &mut ReadBuf<'_>) -> usize {
        let mut at = self.start;
        for f in &self.frames {
            let end = at + f.len() as u64;
            if pos < end && pos >= at {
                let from = (pos - at) as usize;
                let n = (f.len() - from).min(buf.remaining());
                buf.put_slice(&f[from..from + n]);
                return n;
            }
            at = end;
        }
        0
    }

    fn end(&self) -> u64 {
        self.start + self.frames.iter().map(|f| f.len() as u64).sum::<u64>()
    }
}

/// A stored file opened for reading: [`AsyncRead`] from the current position, [`AsyncSeek`]
/// to any offset, and the next windows fetched ahead while the caller consumes this one.
///
/// ```no_run
/// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
/// use tokio::io::{AsyncReadExt, AsyncSeekExt};
/// let mut r = c.open("/logs/today.txt").await?;
/// let mut head = [0u8; 5];
/// r.read_exact(&mut head).await?;
/// r.seek(std::io::SeekFrom::End(-4)).await?;
/// let mut tail = Vec::new();
/// r.read_to_end(&mut tail).await?;
/// # Ok(()) }
/// ```
pub struct FileReader {
    client: Client,
    path: Arc<str>,
    length: u64,
    chunk_size: u64,
    chunks: Arc<Vec<ChunkLocation>>,
    pos: u64,
    current: Option<Window>,
    ahead: VecDeque<Fetch>,
    /// How many windows are fetched at once.
    depth: usize,
    /// Whether reads go front to back (whole windows and read-ahead) or hop about (only the
    /// blocks a read needs, no read-ahead) since the last seek.
    sequential: bool,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("path", &self.path)
            .field("length", &self.length)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens the file at `path` for reading (see [`FileReader`]).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let mut r = c.open("/data/in/sample.bin").await?;
    /// let mut out = tokio::io::sink();
    /// let copied = tokio::io::copy(&mut r, &mut out).await?;
    /// assert_eq!(copied, r.len());
    /// # Ok(()) }
    /// ```
    pub async fn open(&self, path: &str) -> Result<FileReader> {
        let locs = self.locations(path, 0, 0).await?;
        if locs.chunk_size == 0 && locs.length > 0 {
            return Err(ClientError::Other(format!(
                "{path}: the master reported chunk size 0"
            )));
        }
        Ok(FileReader {
            client: self.clone(),
            path: Arc::from(path),
            length: locs.length,
            chunk_size: locs.chunk_size.max(1),
            chunks: Arc::new(locs.chunks),
            pos: 0,
            current: None,
            ahead: VecDeque::new(),
            depth: self.config.read_parallelism.max(1) + 1,
            sequential: true,
        })
    }
}

impl FileReader {
    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.length
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The path opened.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The current position.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Starts fetching window `[start, end)`.
    fn fetch(&self, start: u64, end: u64) -> Fetch {
        let (client, path, chunks) = (self.client.clone(), self.path.clone(), self.chunks.clone());
        let cs = self.chunk_size;
        let task = tokio::spawn(async move {
            let index = start / cs;
            let chunk_start = index * cs;
            let loc = chunks
                .iter()
                .find(|c| u64::from(c.index) == index)
                .cloned()
                .ok_or_else(|| {
                    ClientError::Other(format!("{path}: the master listed no chunk {index}"))
                })?;
            let (off, len) = (start - chunk_start, end - start);
            match client.fetch(&path, &loc, off, len).await {
                Ok(f) => Ok(f),
                Err(first) => {
                    // Replicas may have moved since the file was opened: ask once more.
                    let fresh = client.locations(&path, chunk_start, 1).await?;
                    match fresh
                        .chunks
                        .into_iter()
                        .find(|c| u64::from(c.index) == index)
                    {
                        Some(c) if c.chunk_id == loc.chunk_id => {
                            client.fetch(&path, &c, off, len).await
                        }
                        _ => Err(first),
                    }
                }
            }
        });
        Fetch { start, end, task }
    }

    /// After a seek: fetches only the digest blocks holding the `want` bytes at the position
    /// (no read-ahead), unless that piece is being fetched already.
    fn plan_random(&mut self, want: usize) {
        let pos = self.pos;
        if self
            .ahead
            .front()
            .is_some_and(|f| f.start <= pos && pos < f.end)
        {
            return;
        }
        self.ahead.clear();
        let block = BLOCK_BYTES;
        let chunk_start = pos - pos % self.chunk_size;
        let chunk_end = chunk_start.saturating_add(self.chunk_size);
        let start = (pos - pos % block).max(chunk_start);
        let end = pos
            .saturating_add(want.max(1) as u64)
            .div_ceil(block)
            .saturating_mul(block)
            .min(chunk_end)
            .min(self.length);
        self.ahead.push_back(self.fetch(start, end));
    }

    /// Keeps the windows from the one holding the position onwards being fetched.
    fn plan(&mut self) {
        let (start, _) = window_at(self.pos, self.chunk_size, self.length);
        // Windows wholly before the position are not wanted any more (a short seek forward).
        while self.ahead.front().is_some_and(|f| f.end <= start) {
            self.ahead.pop_front();
        }
        if self.ahead.front().is_some_and(|f| f.start != start) {
            self.ahead.clear();
        }
        let mut next = self.ahead.back().map_or(start, |f| f.end);
        while self.ahead.len() < self.depth && next < self.length {
            let (s, e) = window_at(next, self.chunk_size, self.length);
            self.ahead.push_back(self.fetch(s, e));
            next = e;
        }
    }
}

impl AsyncRead for FileReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        loop {
            if me.pos >= me.length || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if let Some(w) = &me.current {
                if me.pos >= w.start && me.pos < w.end() {
                    let n = w.copy(me.pos, buf);
                    me.pos += n as u64;
                    return Poll::Ready(Ok(()));
                }
            }
            // A read that continues where the last piece ended is sequential again.
            if me.current.take().is_some_and(|w| w.end() == me.pos) {
                me.sequential = true;
            }
            if me.sequential {
                me.plan();
            } else {
                me.plan_random(buf.remaining());
            }
            let Some(front) = me.ahead.front_mut() else {
                return Poll::Ready(Ok(()));
            };
            let r = ready!(Pin::new(&mut front.task).poll(cx));
            let start = front.start;
            let want = front.end - front.start;
            me.ahead.pop_front();
            let frames = match r {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => return Poll::Ready(Err(e.into())),
                Err(e) => return Poll::Ready(Err(io::Error::other(e))),
            };
            let w = Window { start, frames };
            if w.end() - start != want {
                return Poll::Ready(Err(io::Error::other(format!(
                    "{}: window at {start} came back with {} of {want} bytes",
                    me.path,
                    w.end() - start
                ))));
            }
            me.current = Some(w);
        }
    }
}

impl AsyncSeek for FileReader {
    fn start_seek(mut self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.length.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )
        })?;
        // Within what is read or being read ahead, reading stays sequential.
        let near = target == self.pos
            || self
                .current
                .as_ref()
                .is_some_and(|w| w.start <= target && target < w.end())
            || self
                .ahead
                .iter()
                .any(|f| f.start <= target && target < f.end);
        if !near {
            self.sequential = false;
        }
        self.pos = target;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_never_cross_chunks_or_the_end() {
        let cs = 10 << 20; // 10 MiB chunks: windows 0-4, 4-8, 8-10 MiB
        let m = 1 << 20;
        assert_eq!(window_at(0, cs, 25 * m), (0, 4 * m));
        assert_eq!(window_at(9 * m, cs, 25 * m), (8 * m, 10 * m));
        assert_eq!(window_at(10 * m, cs, 25 * m), (10 * m, 14 * m));
        assert_eq!(window_at(24 * m, cs, 25 * m), (24 * m, 25 * m));
        assert_eq!(window_at(5, 3, 7), (3, 6));
    }
}
