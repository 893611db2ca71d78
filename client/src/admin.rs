//! [`AdminClient`]: the calls an operator makes (draining and forgetting chunkservers, changing
//! the master group), kept apart from the file calls.
use crate::error::{ClientError, Result};
use crate::Client;
use shale_proto::metapb::*;

/// Administrative calls on a cluster (from [`Client::admin`]).
///
/// ```no_run
/// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
/// let admin = c.admin();
/// admin.add_master(4, "10.0.0.4:7101").await?;
/// admin.remove_master(1).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AdminClient {
    client: Client,
}

impl AdminClient {
    pub(crate) fn new(client: Client) -> Self {
        AdminClient { client }
    }

    /// Starts (or, with `draining: false`, stops) draining a chunkserver: no new replicas go
    /// there and its replicas are copied elsewhere, after which it can be removed.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.admin().drain(3, true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn drain(&self, node: u64, draining: bool) -> Result<StatusReply> {
        let m = &self.client.masters;
        let request_id = m.request_id();
        m.call(|mut m| async move {
            m.drain(DrainRequest {
                node_id: node,
                draining,
                request_id,
            })
            .await
        })
        .await
    }

    /// Forgets a dead chunkserver's registration (refused while it is alive or may hold the
    /// only replica of something).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.admin().remove_chunkserver(3).await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove_chunkserver(&self, node: u64) -> Result<StatusReply> {
        let m = &self.client.masters;
        let request_id = m.request_id();
        m.call(|mut m| async move {
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
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.admin().add_master(4, "10.0.0.4:7101").await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_master(&self, id: u64, address: &str) -> Result<StatusReply> {
        let address = address.to_string();
        self.client
            .masters
            .call(|mut m| {
                let address = address.clone();
                async move { m.add_master(MasterRequest { id, address }).await }
            })
            .await
    }

    /// Removes master `id` from the group's voters.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.admin().remove_master(2).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Retried as every call is. A removal is not repeatable as such (the second finds no such
    /// voter), so when an earlier attempt failed with its outcome unknown (it may have taken
    /// effect: the master lost its leadership, or the answer was lost) and a retry finds `id`
    /// no longer a voter, that is the earlier attempt's success: the answer is the group's
    /// status now.
    pub async fn remove_master(&self, id: u64) -> Result<StatusReply> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let in_doubt = AtomicBool::new(false);
        let r = self
            .client
            .masters
            .call(|mut m| {
                let in_doubt = &in_doubt;
                async move {
                    let r = m
                        .remove_master(MasterRequest {
                            id,
                            address: String::new(),
                        })
                        .await;
                    if r.as_ref().is_err_and(crate::master::outcome_unknown) {
                        in_doubt.store(true, Ordering::Relaxed);
                    }
                    r
                }
            })
            .await;
        match r {
            Err(ClientError::NotFound(why)) if in_doubt.load(Ordering::Relaxed) => {
                tracing::info!(id, %why, "an earlier attempt removed the master");
                self.client.status().await
            }
            r => r,
        }
    }
}
