//! Quotas and the trash: per-directory limits on bytes and names, and deletions that can be
//! undone until they expire. Every change carries one request id across its retries (a retried
//! change that took effect reports success).
use crate::error::{ClientError, Result};
use crate::Client;
use shale_proto::metapb::*;

impl Client {
    /// Sets a directory's quota (admins only): at most `max_bytes` bytes (lengths, not counting
    /// replicas) and `max_names` files and directories below it; `None` means no limit, and
    /// both `None` removes the quota. Returns the quota with its current usage. A limit below
    /// the usage refuses growth and removes nothing.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let q = c.set_quota("/projects/x", Some(10 << 30), Some(100_000)).await?;
    /// println!("{} of {:?} bytes used", q.used_bytes, q.max_bytes);
    /// # Ok(()) }
    /// ```
    pub async fn set_quota(
        &self,
        path: &str,
        max_bytes: Option<u64>,
        max_names: Option<u64>,
    ) -> Result<QuotaReply> {
        let (p, request_id) = (path.to_string(), self.masters.request_id());
        self.masters
            .call(|mut m| {
                let path = p.clone();
                async move {
                    m.set_quota(SetQuotaRequest {
                        path,
                        max_bytes,
                        max_names,
                        request_id,
                    })
                    .await
                }
            })
            .await
    }

    /// A directory's quota and usage (`has_quota` false: it has none).
    pub async fn quota(&self, path: &str) -> Result<QuotaReply> {
        let p = path.to_string();
        self.masters
            .call(|mut m| {
                let path = p.clone();
                async move {
                    m.get_quota(PathRequest {
                        path,
                        follower_read: false,
                    })
                    .await
                }
            })
            .await
    }

    /// Every quota in the cluster, by path (admins only).
    pub async fn quotas(&self) -> Result<Vec<QuotaReply>> {
        self.masters
            .call(|mut m| async move { m.list_quotas(Empty {}).await })
            .await
            .map(|l| l.quotas)
    }

    /// Moves a file (or, with `recursive`, a directory tree) to the caller's trash, where it
    /// can be restored until it expires; returns where it went. Paths already in the trash are
    /// refused: [`Client::delete`] removes them for good.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let at = c.trash("/scratch/old", true).await?;
    /// println!("moved to {at}");
    /// # Ok(()) }
    /// ```
    pub async fn trash(&self, path: &str, recursive: bool) -> Result<String> {
        let (p, request_id) = (path.to_string(), self.masters.request_id());
        self.masters
            .call(|mut m| {
                let path = p.clone();
                async move {
                    m.trash(DeleteRequest {
                        path,
                        recursive,
                        request_id,
                    })
                    .await
                }
            })
            .await
            .map(|r| r.path)
    }

    /// What is in a user's trash (`None`: the caller's; another user's: admins only), newest
    /// first.
    pub async fn trash_list(&self, user: Option<&str>) -> Result<Vec<TrashItem>> {
        let u = user.unwrap_or("").to_string();
        self.masters
            .call(|mut m| {
                let user = u.clone();
                async move {
                    m.list_trash(ListTrashRequest {
                        user,
                        limit: 10_000,
                    })
                    .await
                }
            })
            .await
            .map(|l| l.items)
    }

    /// Puts the most recently deleted `original` back where it was (its directory must exist;
    /// an existing path there is never replaced). Returns the trash path it came from.
    pub async fn restore(&self, original: &str) -> Result<String> {
        let items = self.trash_list(None).await?;
        let item = items
            .into_iter()
            .find(|i| i.original == original)
            .ok_or_else(|| ClientError::NotFound(format!("{original}: not in the trash")))?;
        self.rename_no_replace(&item.path, original).await?;
        Ok(item.path)
    }
}

impl Client {
    /// Takes snapshot `name` of directory `path` (its owner or an admin): an instant,
    /// read-only copy of the tree, readable at `path/.snapshot/name` (`stat`, `list`, `open`,
    /// `copy` all work there). Later changes do not touch it; the space its files hold is
    /// reclaimed when the last snapshot showing them is deleted.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.create_snapshot("/projects/x", "before-migration").await?;
    /// let old = c.stat("/projects/x/.snapshot/before-migration/config.toml").await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_snapshot(&self, path: &str, name: &str) -> Result<SnapshotInfo> {
        let (p, n, request_id) = (
            path.to_string(),
            name.to_string(),
            self.masters.request_id(),
        );
        self.masters
            .call(|mut m| {
                let (path, name) = (p.clone(), n.clone());
                async move {
                    m.create_snapshot(SnapshotRequest {
                        path,
                        name,
                        request_id,
                    })
                    .await
                }
            })
            .await
    }

    /// Deletes snapshot `name` of directory `path`.
    pub async fn delete_snapshot(&self, path: &str, name: &str) -> Result<()> {
        let (p, n, request_id) = (
            path.to_string(),
            name.to_string(),
            self.masters.request_id(),
        );
        self.masters
            .call(|mut m| {
                let (path, name) = (p.clone(), n.clone());
                async move {
                    m.delete_snapshot(SnapshotRequest {
                        path,
                        name,
                        request_id,
                    })
                    .await
                }
            })
            .await
            .map(|_| ())
    }

    /// The snapshots of directory `path`, by name.
    pub async fn snapshots(&self, path: &str) -> Result<Vec<SnapshotInfo>> {
        let p = path.to_string();
        self.masters
            .call(|mut m| {
                let path = p.clone();
                async move {
                    m.list_snapshots(PathRequest {
                        path,
                        follower_read: false,
                    })
                    .await
                }
            })
            .await
            .map(|l| l.snapshots)
    }
}
