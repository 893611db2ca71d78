//! Shale's client library: what a user links to store and fetch files.
//!
//! * [`Client::connect`] takes any master addresses; calls follow the leader and retry
//!   transient failures with backoff (bounded);
//! * [`Client::put`] streams a file from any reader chunk by chunk (only one chunk is held in
//!   memory, for retries); a failed chunk is retried alone, on a fresh allocation that excludes
//!   the replica that failed; the file appears atomically when complete;
//! * [`Client::get`] / [`Client::read_range`] fetch chunks in parallel (bounded) from the first
//!   healthy replica, failing over on error, checksum mismatch or timeout;
//! * namespace calls: [`Client::stat`], [`Client::list`], [`Client::mkdir`], [`Client::rename`],
//!   [`Client::delete`], and [`Client::status`].
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod error;
mod master;
mod read;
mod write;

pub use error::{ClientError, Result};
pub use shale_proto::metapb::{FileStat, StatusReply};

use master::Masters;
use shale_proto::metapb::*;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Data frame size of chunk writes.
    pub frame_bytes: usize,
    pub lease_ms: u64,
    /// Attempts per chunk (each on a fresh allocation excluding failed replicas).
    pub chunk_attempts: u32,
    /// Chunks fetched at once by `get`.
    pub read_parallelism: usize,
    /// Timeout of one call to a master.
    pub call_timeout: Duration,
    /// How long calls to the masters keep retrying through elections and failures.
    pub retry_for: Duration,
    /// This client's host label (the nearest replica leads write pipelines).
    pub host: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            frame_bytes: 1 << 20,
            lease_ms: 60_000,
            chunk_attempts: 4,
            read_parallelism: 4,
            call_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(30),
            host: String::new(),
        }
    }
}

pub struct Client {
    masters: std::sync::Arc<Masters>,
    config: ClientConfig,
    /// This client's writer-lease identity (its session id).
    id: u64,
}

impl Client {
    /// A client of the group at `masters` (any subset of the masters; host:port each). Checks
    /// that one of them answers.
    pub async fn connect(masters: &[String], config: ClientConfig) -> Result<Client> {
        let masters = Masters::new(masters.to_vec(), config.call_timeout, config.retry_for)?;
        let c = Client {
            id: masters.client_id,
            masters: std::sync::Arc::new(masters),
            config,
        };
        c.masters
            .call(|mut m| async move { m.status(Empty {}).await })
            .await?;
        Ok(c)
    }

    pub async fn status(&self) -> Result<StatusReply> {
        self.masters
            .call(|mut m| async move { m.status(Empty {}).await })
            .await
    }

    /// Starts (or, with `draining: false`, stops) draining a chunkserver.
    pub async fn drain(&self, node: u64, draining: bool) -> Result<StatusReply> {
        let request_id = self.masters.request_id();
        self.masters
            .call(|mut m| async move {
                m.drain(DrainRequest {
                    node_id: node,
                    draining,
                    request_id,
                })
                .await
            })
            .await
    }

    /// Forgets a dead chunkserver's registration (refused while it is alive or may hold the only
    /// replica of something).
    pub async fn remove_chunkserver(&self, node: u64) -> Result<StatusReply> {
        let request_id = self.masters.request_id();
        self.masters
            .call(|mut m| async move {
                m.remove_chunkserver(RemoveChunkserverRequest {
                    node_id: node,
                    request_id,
                })
                .await
            })
            .await
    }

    /// Adds master `id` at `address` to the group (it catches up as a learner, then votes), or
    /// sets the address of a member that moved. Idempotent.
    pub async fn add_master(&self, id: u64, address: &str) -> Result<StatusReply> {
        let address = address.to_string();
        self.masters
            .call(|mut m| {
                let address = address.clone();
                async move { m.add_master(MasterRequest { id, address }).await }
            })
            .await
    }

    /// Removes master `id` from the group's voters.
    pub async fn remove_master(&self, id: u64) -> Result<StatusReply> {
        self.masters
            .call(|mut m| async move {
                m.remove_master(MasterRequest {
                    id,
                    address: String::new(),
                })
                .await
            })
            .await
    }

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

    /// Every entry of a directory (all pages).
    pub async fn list(&self, path: &str) -> Result<Vec<FileStat>> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let (p, a) = (path.to_string(), after.clone());
            let page = self
                .masters
                .call(|mut m| {
                    let (path, start_after) = (p.clone(), a.clone());
                    async move {
                        m.list(ListRequest {
                            path,
                            start_after,
                            limit: 1000,
                            follower_read: false,
                        })
                        .await
                    }
                })
                .await?;
            if let Some(last) = page.entries.last() {
                after = last.name.clone();
            }
            out.extend(page.entries);
            if !page.more {
                return Ok(out);
            }
        }
    }

    pub async fn mkdir(&self, path: &str, parents: bool) -> Result<FileStat> {
        let (p, request_id) = (path.to_string(), self.masters.request_id());
        self.masters
            .call(|mut m| {
                let path = p.clone();
                async move {
                    m.mkdir(MkdirRequest {
                        path,
                        parents,
                        request_id,
                    })
                    .await
                }
            })
            .await
    }

    pub async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        let (s, d) = (src.to_string(), dst.to_string());
        let request_id = self.masters.request_id();
        self.masters
            .call(|mut m| {
                let (src, dst) = (s.clone(), d.clone());
                async move {
                    m.rename(RenameRequest {
                        src,
                        dst,
                        request_id,
                    })
                    .await
                }
            })
            .await
            .map(|_| ())
    }

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
}
