//! [`FileWriter`]: a file being written, as an [`AsyncWrite`].
//!
//! Invariants: the bytes written go through an in-memory pipe to a task running
//! [`Client::put_with`]; the file becomes visible only when [`FileWriter::close`] (or
//! `AsyncWriteExt::shutdown`) succeeds. The pipe's end of file counts as the end of the file only
//! after `close` marked it so: a writer dropped without `close` makes the task fail, and the
//! task is also aborted, so the file is abandoned and its path released at once.
use crate::error::{ClientError, Result};
use crate::write::CreateOptions;
use crate::Client;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;

/// Bytes buffered between the writer and the chunk pipeline.
const PIPE_BYTES: usize = 4 << 20;

/// A file being written: an [`AsyncWrite`] whose bytes are stored chunk by chunk as they come.
/// [`FileWriter::close`] makes the file visible (atomically, replacing an existing one if the
/// options said so); dropping the writer without closing it abandons the file.
///
/// ```no_run
/// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
/// use tokio::io::AsyncWriteExt;
/// let mut w = c.create("/logs/today.txt", Default::default()).await?;
/// w.write_all(b"first line\n").await?;
/// w.write_all(b"second line\n").await?;
/// let length = w.close().await?;
/// assert_eq!(length, 23);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileWriter {
    path: String,
    pipe: Option<DuplexStream>,
    closed: Arc<AtomicBool>,
    task: Option<JoinHandle<Result<u64>>>,
    outcome: Option<std::result::Result<u64, String>>,
    /// For the drop's clean-up (see `Drop`).
    masters: Arc<crate::master::Masters>,
}

/// The reading end of the pipe: end of file only once the writer closed properly.
struct Gate {
    pipe: DuplexStream,
    closed: Arc<AtomicBool>,
}

impl AsyncRead for Gate {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.pipe).poll_read(cx, buf))?;
        if buf.filled().len() == before
            && buf.remaining() > 0
            && !self.closed.load(Ordering::SeqCst)
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the writer was dropped before close: file abandoned",
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl Client {
    /// Starts writing a new file at `path` (see [`FileWriter`]). Fails at once if the path
    /// cannot be created (an existing file without `overwrite`, a missing parent, a file being
    /// written by another client).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// use shale_client::CreateOptions;
    /// use tokio::io::AsyncWriteExt;
    /// let mut w = c.create("/a.bin", CreateOptions::default().overwrite(true)).await?;
    /// w.write_all(&[7u8; 4096]).await?;
    /// w.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn create(&self, path: &str, opts: CreateOptions) -> Result<FileWriter> {
        let (mine, theirs) = tokio::io::duplex(PIPE_BYTES);
        let closed = Arc::new(AtomicBool::new(false));
        let gate = Gate {
            pipe: theirs,
            closed: closed.clone(),
        };
        let (c, p) = (self.clone(), path.to_string());
        let (created_tx, created_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            c.put_created(&p, gate, &opts, &|_| {}, Some(created_tx))
                .await
        });
        let mut w = FileWriter {
            path: path.to_string(),
            pipe: Some(mine),
            closed,
            task: Some(task),
            outcome: None,
            masters: self.masters.clone(),
        };
        // Report a refused create now, not at the first write.
        if created_rx.await.is_err() {
            return Err(w.result().await.err().unwrap_or_else(|| {
                ClientError::Other(format!("{path}: the create ended without an answer"))
            }));
        }
        Ok(w)
    }
}

impl FileWriter {
    /// The path being written.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Ends the file and makes it visible; returns its length. After an error nothing is
    /// visible and the path is released.
    pub async fn close(mut self) -> Result<u64> {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(mut p) = self.pipe.take() {
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut p).await;
        }
        self.result().await
    }

    /// Waits for the writing task; its outcome.
    async fn result(&mut self) -> Result<u64> {
        if let Some(t) = self.task.take() {
            let r = match t.await {
                Ok(r) => r,
                Err(e) => Err(ClientError::Other(format!("the writing task failed: {e}"))),
            };
            self.outcome = Some(r.as_ref().map(|n| *n).map_err(|e| e.to_string()));
            return r;
        }
        match &self.outcome {
            Some(Ok(n)) => Ok(*n),
            Some(Err(e)) => Err(ClientError::Other(e.clone())),
            None => Err(ClientError::Other("the file was already closed".into())),
        }
    }

    /// The task's error, once a write found the pipe closed (the task ended early).
    fn poll_failure(&mut self, cx: &mut Context<'_>, why: io::Error) -> Poll<io::Error> {
        let Some(t) = self.task.as_mut() else {
            return Poll::Ready(why);
        };
        let r = ready!(Pin::new(t).poll(cx));
        self.task = None;
        let e = match r {
            Ok(Ok(_)) => why,
            Ok(Err(e)) => io::Error::from(e),
            Err(e) => io::Error::other(format!("the writing task failed: {e}")),
        };
        self.outcome = Some(Err(e.to_string()));
        Poll::Ready(e)
    }
}

use std::future::Future;

impl AsyncWrite for FileWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(p) = self.pipe.as_mut() else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the file is closed",
            )));
        };
        match ready!(Pin::new(p).poll_write(cx, buf)) {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(why) => Poll::Ready(Err(ready!(self.poll_failure(cx, why)))),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.pipe.as_mut() {
            Some(p) => Pin::new(p).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Closes the file: it is visible once this returns `Ok`.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(p) = self.pipe.as_mut() {
            ready!(Pin::new(p).poll_shutdown(cx))?;
            self.pipe = None;
        }
        if let Some(t) = self.task.as_mut() {
            let r = ready!(Pin::new(t).poll(cx));
            self.task = None;
            self.outcome = Some(match r {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the writing task failed: {e}")),
            });
        }
        match &self.outcome {
            Some(Ok(_)) => Poll::Ready(Ok(())),
            Some(Err(e)) => Poll::Ready(Err(io::Error::other(e.clone()))),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Not closed: the task sees an error at the pipe's end, and is aborted besides; either
        // way its file is abandoned (see `Construction`). The abort takes effect when a runtime
        // worker next polls the task, after this returns: the task's end is remembered as a
        // clean-up, so that `Client::settle` also waits for the abandon its end starts (a
        // settle right after the drop used to miss it, and the path was still held).
        if let Some(t) = self.task.take() {
            t.abort();
            self.masters.cleanup(async move {
                let _ = t.await;
            });
        }
    }
}
