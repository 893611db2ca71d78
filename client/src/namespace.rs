//! Namespace calls: stat, list (all at once or as a paged stream), mkdir, rename, delete,
//! replication. Every mutation carries one request id across its retries, so a retried call that
//! already took effect reports success.
use crate::error::{ClientError, Result};
use crate::Client;
use futures_util::stream::{self, Stream};
use shale_proto::metapb::*;

/// Entries per page of a listing.
const PAGE: u32 = 1000;

impl Client {
    /// A file's or directory's attributes.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let s = c.stat("/data/in/sample.bin").await?;
    /// println!("{} bytes in {} chunks", s.length, s.chunks);
    /// # Ok(()) }
    /// ```
    pub async fn stat(&self, path: &str) -> Result<FileStat> {
        let p = path.to_string();
        self.masters
            .call(|mut m| {
                let path = p.clone();
                async move {
                    m.stat(PathRequest {
                        path,
                        follower_read: false,
                    })
                    .await
                }
            })
            .await
    }

    /// Whether `path` exists (a file or a directory).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// if !c.exists("/data").await? {
    ///     c.mkdir("/data", true).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn exists(&self, path: &str) -> Result<bool> {
        match self.stat(path).await {
            Ok(_) => Ok(true),
            Err(ClientError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One page of a directory: up to `limit` entries after the name `start_after` (in name
    /// order), and whether more follow.
    async fn list_page(&self, path: &str, start_after: &str, limit: u32) -> Result<ListReply> {
        let (p, a) = (path.to_string(), start_after.to_string());
        self.masters
            .call(|mut m| {
                let (path, start_after) = (p.clone(), a.clone());
                async move {
                    m.list(ListRequest {
                        path,
                        start_after,
                        limit,
                        follower_read: false,
                    })
                    .await
                }
            })
            .await
    }

    /// Every entry of a directory, in name order (all pages; see [`Client::list_stream`] for
    /// huge directories).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// for e in c.list("/").await? {
    ///     println!("{}{}", e.name, if e.is_dir { "/" } else { "" });
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, path: &str) -> Result<Vec<FileStat>> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.list_page(path, &after, PAGE).await?;
            if let Some(last) = page.entries.last() {
                after = last.name.clone();
            }
            out.extend(page.entries);
            if !page.more {
                return Ok(out);
            }
        }
    }

    /// A directory's entries as a stream, fetched a page at a time as it is consumed.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// use futures_util::TryStreamExt;
    /// let mut entries = std::pin::pin!(c.list_stream("/logs"));
    /// while let Some(e) = entries.try_next().await? {
    ///     println!("{}", e.name);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list_stream(&self, path: &str) -> impl Stream<Item = Result<FileStat>> + Send + '_ {
        struct Cursor {
            after: String,
            buffered: std::vec::IntoIter<FileStat>,
            more: bool,
        }
        let start = Cursor {
            after: String::new(),
            buffered: Vec::new().into_iter(),
            more: true,
        };
        let path = path.to_string();
        stream::unfold(Some(start), move |cursor| {
            let path = path.clone();
            async move {
                let mut cur = cursor?;
                loop {
                    if let Some(e) = cur.buffered.next() {
                        return Some((Ok(e), Some(cur)));
                    }
                    if !cur.more {
                        return None;
                    }
                    match self.list_page(&path, &cur.after, PAGE).await {
                        Ok(page) => {
                            if let Some(last) = page.entries.last() {
                                cur.after = last.name.clone();
                            }
                            cur.more = page.more && !page.entries.is_empty();
                            cur.buffered = page.entries.into_iter();
                        }
                        Err(e) => return Some((Err(e), None)),
                    }
                }
            }
        })
    }

    /// Makes a directory (with `parents`: its missing parents too, and no error if it exists).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.mkdir("/a/b/c", true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn mkdir(&self, path: &str, parents: bool) -> Result<FileStat> {
        self.mkdir_mode(path, parents, None).await
    }

    /// [`Client::mkdir`] with the new directories' mode bits (None: 0755). Parents made on the
    /// way also get owner write and execute, as `mkdir -p` gives them.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.mkdir_mode("/home/alice/private", false, Some(0o700)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn mkdir_mode(
        &self,
        path: &str,
        parents: bool,
        mode: Option<u32>,
    ) -> Result<FileStat> {
        let (p, request_id) = (path.to_string(), self.masters.request_id());
        self.masters
            .call(|mut m| {
                let path = p.clone();
                async move {
                    m.mkdir(MkdirRequest {
                        path,
                        parents,
                        mode,
                        request_id,
                    })
                    .await
                }
            })
            .await
    }

    /// Renames a file or directory atomically; a file at `dst` is replaced (atomically). See
    /// [`Client::rename_no_replace`].
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.rename("/incoming/part.bin", "/data/part.bin").await?;
    /// # Ok(()) }
    /// ```
    pub async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        self.rename_with(src, dst, false).await
    }

    /// Renames atomically, failing with [`ClientError::AlreadyExists`] if `dst` exists.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// match c.rename_no_replace("/a", "/b").await {
    ///     Err(shale_client::ClientError::AlreadyExists(_)) => println!("/b is taken"),
    ///     r => r?,
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn rename_no_replace(&self, src: &str, dst: &str) -> Result<()> {
        self.rename_with(src, dst, true).await
    }

    async fn rename_with(&self, src: &str, dst: &str, no_replace: bool) -> Result<()> {
        let (s, d) = (src.to_string(), dst.to_string());
        let request_id = self.masters.request_id();
        self.masters
            .call(|mut m| {
                let (src, dst) = (s.clone(), d.clone());
                async move {
                    m.rename(RenameRequest {
                        src,
                        dst,
                        no_replace,
                        request_id,
                    })
                    .await
                }
            })
            .await
            .map(|_| ())
    }

    /// Deletes a file, or an empty directory (with `recursive`: a directory and everything in
    /// it). Space is reclaimed in the background.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.delete("/scratch", true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, path: &str, recursive: bool) -> Result<()> {
        let (p, request_id) = (path.to_string(), self.masters.request_id());
        self.masters
            .call(|mut m| {
                let path = p.clone();
                async move {
                    m.delete(DeleteRequest {
                        path,
                        recursive,
                        request_id,
                    })
                    .await
                }
            })
            .await
            .map(|_| ())
    }

    /// Sets how many replicas each chunk of a file keeps (healing adds or trims copies), or, for
    /// a directory, how many new files below it get (unless they or a nearer directory say
    /// otherwise). Admins only.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.set_replication("/data/hot.bin", 5).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_replication(&self, path: &str, replication: u32) -> Result<()> {
        let (p, request_id) = (path.to_string(), self.masters.request_id());
        self.masters
            .call(|mut m| {
                let path = p.clone();
                async move {
                    m.set_replication(SetReplicationRequest {
                        path,
                        replication,
                        request_id,
                    })
                    .await
                }
            })
            .await
            .map(|_| ())
    }
}
