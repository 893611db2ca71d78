//! [`FileReader`]: a stored file as an [`AsyncRead`] + [`AsyncSeek`], with read-ahead.
//!
//! Invariants: the file is read in windows of at most [`WINDOW`] bytes that never cross a piece
//! boundary (a chunk of a regular file, an extent of an append file: see `read.rs`); while reads go front to back, the window holding the position and up to
//! `read_parallelism` windows after it are fetched at once; after a seek away from what is
//! read or being fetched, only the 64 KiB digest blocks a read needs are fetched (no
//! read-ahead) until a read continues where the previous one ended, each on its own task (aborted when no longer wanted: after a seek elsewhere
//! or when the reader is dropped). Every byte comes verified from a replica (see `read.rs`); a
//! window whose replicas all fail is retried once with fresh locations (replicas move when the
//! cluster heals). The length and chunk map are those of the file when it was opened: files are
//! write-once (an append file only grows: the reader sees the records committed when it was
//! opened), and a file replaced meanwhile keeps its old chunks readable until they are
//! collected.
use crate::error::{ClientError, Result};
use crate::read::{Frames, Piece};
use crate::Client;
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

/// The window `[start, end)` holding `pos` in the piece `[piece_start, piece_end)` holding it.
fn window_at(pos: u64, (piece_start, piece_end): (u64, u64)) -> (u64, u64) {
    let start = piece_start + (pos - piece_start) / WINDOW * WINDOW;
    let end = (start + WINDOW).min(piece_end);
    (start, end)
}

/// The index of the piece holding `pos`, if any.
fn piece_at(pieces: &[Piece], pos: u64) -> Option<usize> {
    let i = pieces.partition_point(|p| p.end() <= pos);
    (i < pieces.len() && pieces[i].start <= pos).then_some(i)
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
    /// Where the bytes are, in file order, covering `[0, length)`.
    pieces: Arc<Vec<Piece>>,
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
        let (length, pieces) = self.pieces_of(path, 0, 0).await?;
        let mut at = 0;
        for p in &pieces {
            if p.start != at {
                return Err(ClientError::Other(format!(
                    "{path}: the masters listed no chunk for byte {at}"
                )));
            }
            at = p.end();
        }
        if at != length {
            return Err(ClientError::Other(format!(
                "{path}: the masters listed chunks for {at} of {length} bytes"
            )));
        }
        Ok(FileReader {
            client: self.clone(),
            path: Arc::from(path),
            length,
            pieces: Arc::new(pieces),
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

    /// The bounds of the piece holding `pos` (below the length).
    fn piece_bounds(&self, pos: u64) -> (u64, u64) {
        piece_at(&self.pieces, pos).map_or((pos, self.length), |i| {
            (self.pieces[i].start, self.pieces[i].end())
        })
    }

    /// Starts fetching window `[start, end)` (inside one piece).
    fn fetch(&self, start: u64, end: u64) -> Fetch {
        let (client, path, pieces) = (self.client.clone(), self.path.clone(), self.pieces.clone());
        let task = tokio::spawn(async move {
            let p = piece_at(&pieces, start)
                .map(|i| &pieces[i])
                .ok_or_else(|| {
                    ClientError::Other(format!(
                        "{path}: the masters listed no chunk for byte {start}"
                    ))
                })?;
            let (off, len) = (p.chunk_off + (start - p.start), end - start);
            match client.fetch(&path, &p.loc, off, len).await {
                Ok(f) => Ok(f),
                Err(first) => {
                    // Replicas may have moved since the file was opened: ask once more.
                    let fresh = client.locations(&path, start, 1).await?;
                    match fresh
                        .chunks
                        .into_iter()
                        .find(|c| c.chunk_id == p.loc.chunk_id)
                    {
                        Some(c) => client.fetch(&path, &c, off, len).await,
                        None => Err(first),
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
        let (chunk_start, chunk_end) = self.piece_bounds(pos);
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
        let (start, _) = window_at(self.pos, self.piece_bounds(self.pos));
        // Windows wholly before the position are not wanted any more (a short seek forward).
        while self.ahead.front().is_some_and(|f| f.end <= start) {
            self.ahead.pop_front();
        }
        if self.ahead.front().is_some_and(|f| f.start != start) {
            self.ahead.clear();
        }
        let mut next = self.ahead.back().map_or(start, |f| f.end);
        while self.ahead.len() < self.depth && next < self.length {
            let (s, e) = window_at(next, self.piece_bounds(next));
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
    fn windows_never_cross_pieces_or_the_end() {
        let m = 1 << 20;
        // 10 MiB chunks of a 25 MiB file: windows 0-4, 4-8, 8-10 MiB, ...
        let piece = |start: u64, len: u64| Piece {
            start,
            len,
            chunk_off: 0,
            loc: Default::default(),
        };
        let ps = vec![
            piece(0, 10 * m),
            piece(10 * m, 10 * m),
            piece(20 * m, 5 * m),
        ];
        let w = |pos: u64| {
            let i = piece_at(&ps, pos).expect("piece");
            window_at(pos, (ps[i].start, ps[i].end()))
        };
        assert_eq!(w(0), (0, 4 * m));
        assert_eq!(w(9 * m), (8 * m, 10 * m));
        assert_eq!(w(10 * m), (10 * m, 14 * m));
        assert_eq!(w(24 * m), (24 * m, 25 * m));
        assert_eq!(piece_at(&ps, 25 * m), None);
        // Extents of an append file: small pieces, windows inside each.
        let ex = vec![piece(0, 3), piece(3, 4), piece(7, 1)];
        assert_eq!(piece_at(&ex, 3), Some(1));
        assert_eq!(window_at(5, (3, 7)), (3, 7));
        assert_eq!(piece_at(&ex, 7), Some(2));
    }
}
