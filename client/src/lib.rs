//! Shale's client library: what a program links to store and fetch files in a Shale cluster.
//!
//! * [`Client::builder`] / [`Client::connect`] take any master addresses; calls follow the
//!   leader and retry transient failures with backoff (bounded). A [`Client`] is cheap to clone
//!   (clones share connections and the session).
//! * Writing: [`Client::create`] returns a [`FileWriter`] (`AsyncWrite`; `close` makes the file
//!   visible atomically, dropping it abandons the file); [`Client::put`] stores any reader.
//!   A failed chunk is retried alone on a fresh allocation that excludes the failed replica.
//! * Reading: [`Client::open`] returns a [`FileReader`] (`AsyncRead + AsyncSeek`, reading
//!   ahead across chunks); [`Client::get`] copies a whole file to a writer, [`Client::read_range`]
//!   returns any byte range. Each chunk comes from the first healthy replica, verified.
//! * Namespace: [`Client::stat`], [`Client::list`] / [`Client::list_stream`], [`Client::mkdir`],
//!   [`Client::rename`], [`Client::delete`], [`Client::set_replication`].
//! * Quotas and the trash: [`Client::set_quota`], [`Client::quota`], [`Client::trash`],
//!   [`Client::trash_list`], [`Client::restore`].
//! * Snapshots: [`Client::create_snapshot`], [`Client::snapshots`], [`Client::delete_snapshot`];
//!   read them at `DIR/.snapshot/NAME`.
//! * Administration lives on [`AdminClient`] ([`Client::admin`]).
//!
//! Errors are [`ClientError`]s: match on the kind, or ask [`ClientError::is_retryable`].
//!
//! ```no_run
//! use shale_client::Client;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn f() -> shale_client::Result<()> {
//! let client = Client::builder()
//!     .masters(["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"])
//!     .connect()
//!     .await?;
//! client.mkdir("/docs", true).await?;
//! let mut w = client.create("/docs/hello.txt", Default::default()).await?;
//! w.write_all(b"hello, shale").await?;
//! w.close().await?;
//! let mut text = String::new();
//! client.open("/docs/hello.txt").await?.read_to_string(&mut text).await?;
//! assert_eq!(text, "hello, shale");
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![deny(missing_docs)]

mod admin;
mod append;
mod batch;
mod chunkserver;
mod copy;
mod dataport;
pub mod error;
pub mod integrity;
mod master;
mod namespace;
mod partial;
mod perms;
mod read;
mod reader;
mod space;
mod write;
mod writer;

pub use admin::AdminClient;
pub use append::{AppendOptions, Appended, RecordId, RECORD_MAX_BYTES};
pub use batch::{NamespaceOp, BATCH_ITEMS_MAX};
pub use error::{ClientError, Result};
pub use integrity::{ReplicaCheck, Verification};
pub use reader::FileReader;
pub use shale_proto::metapb::{
    FileStat, IssueTokenReply, LocationsReply, QuotaReply, SnapshotInfo, StatusReply, TrashItem,
    WhoAmIReply,
};
pub use shale_security::{Principal, Role, Tls, TlsFiles, Transport};
pub use write::CreateOptions;
pub use writer::FileWriter;

use master::Masters;
use shale_proto::metapb::*;
use std::sync::Arc;
use std::time::Duration;

/// How a [`Client`] behaves. `ClientConfig::default()` suits most programs.
///
/// ```
/// let cfg = shale_client::ClientConfig {
///     read_parallelism: 8,
///     ..Default::default()
/// };
/// assert_eq!(cfg.chunk_attempts, 4);
/// ```
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Data frame size of chunk writes.
    pub frame_bytes: usize,
    /// Writer lease length asked for (renewed every third of it while a file is written).
    pub lease_ms: u64,
    /// Attempts per chunk (each on a fresh allocation excluding failed replicas).
    pub chunk_attempts: u32,
    /// A chunk is acknowledged only when durable on at least this many replicas (or the file's
    /// replication, if lower); with fewer live chunkservers a put fails instead. Like HDFS's
    /// minimum replication: the rest are added by healing.
    pub min_replicas: u32,
    /// Chunks fetched at once by `get`; windows read ahead by a [`FileReader`].
    pub read_parallelism: usize,
    /// Timeout of one call to a master.
    pub call_timeout: Duration,
    /// How long calls to the masters keep retrying through elections and failures.
    pub retry_for: Duration,
    /// How long [`Client::connect`] tries to reach a first master before giving up.
    pub connect_within: Duration,
    /// This client's host label (the nearest replica leads write pipelines).
    pub host: String,
    /// How to reach the cluster: mutual TLS with a certificate from the cluster CA
    /// ([`Transport::tls`]), or plaintext for a development cluster ([`Transport::plaintext`],
    /// the default).
    pub transport: Transport,
    /// Read chunk bytes over the chunkservers' data ports where they have one (a small framed
    /// protocol, docs/data-port.md) instead of gRPC `ReadChunk`. Same checks, same bytes.
    pub data_port: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            frame_bytes: 1 << 20,
            lease_ms: 60_000,
            chunk_attempts: 4,
            min_replicas: 2,
            read_parallelism: 4,
            call_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(30),
            connect_within: Duration::from_millis(1500),
            host: String::new(),
            transport: Transport::plaintext(),
            data_port: true,
        }
    }
}

/// Builds a [`Client`].
///
/// ```no_run
/// # async fn f() -> shale_client::Result<()> {
/// let c = shale_client::Client::builder()
///     .masters(["10.0.0.1:7101"])
///     .host("rack1-node7")
///     .retry_for(std::time::Duration::from_secs(60))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClientBuilder {
    masters: Vec<String>,
    config: ClientConfig,
}

impl ClientBuilder {
    /// Master addresses (`host:port`; any subset of the group; `http://` is accepted).
    pub fn masters<I, S>(mut self, addrs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.masters = addrs.into_iter().map(Into::into).collect();
        self
    }
    /// The whole configuration at once.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }
    /// This client's host label (pipelines start at a replica on this host when there is one).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.config.host = host.into();
        self
    }
    /// How long calls keep retrying through elections and failures.
    pub fn retry_for(mut self, d: Duration) -> Self {
        self.config.retry_for = d;
        self
    }
    /// Timeout of one call to a master.
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.config.call_timeout = d;
        self
    }
    /// How long `connect` tries before giving up.
    pub fn connect_within(mut self, d: Duration) -> Self {
        self.config.connect_within = d;
        self
    }
    /// Chunks (or windows) fetched at once when reading.
    pub fn read_parallelism(mut self, n: usize) -> Self {
        self.config.read_parallelism = n;
        self
    }
    /// Mutual TLS with `tls` (see [`Tls::load`]), or plaintext.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self
    }
    /// Connects (see [`Client::connect`]).
    pub async fn connect(self) -> Result<Client> {
        Client::connect(&self.masters, self.config).await
    }
}

/// A connection to a Shale cluster. Cheap to clone: clones share connections and the client
/// session (writer leases, request ids).
#[derive(Clone)]
pub struct Client {
    masters: Arc<Masters>,
    config: Arc<ClientConfig>,
    /// This client's writer-lease identity (its session id).
    id: u64,
    /// Checked block digests of recently read chunks (for partial reads).
    cvs: Arc<partial::CvCache>,
    /// Idle connections to chunkservers' data ports.
    data: Arc<dataport::DataConns>,
    /// Buffers data-port frames are received into (reused: no fresh pages per read; one pool
    /// per process).
    frames: Arc<shale_proto::bufpool::Pool>,
    /// Append files' tail chunks, by path (see `append`).
    tails: Arc<std::sync::Mutex<std::collections::HashMap<String, append::Tail>>>,
    /// Connections to the primaries of append files' tails, by address.
    append_conns: Arc<std::sync::Mutex<std::collections::HashMap<String, append::Conn>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `host:port` from what a user may type: `http://host:port/` is accepted.
fn address(a: &str) -> Result<String> {
    let a = a.trim();
    let bare = a
        .strip_prefix("http://")
        .or_else(|| a.strip_prefix("https://"))
        .or_else(|| a.strip_prefix("grpc://"))
        .unwrap_or(a)
        .trim_end_matches('/');
    if bare.contains('/') || !bare.contains(':') {
        return Err(ClientError::InvalidArgument(format!(
            "master address {a:?} is not host:port (e.g. 127.0.0.1:7101)"
        )));
    }
    Ok(bare.to_string())
}

impl Client {
    /// A [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client of the group at `masters` (any subset of the masters; `host:port` each). Checks
    /// that one of them answers within `config.connect_within`.
    ///
    /// ```no_run
    /// # async fn f() -> shale_client::Result<()> {
    /// let c = shale_client::Client::connect(&["127.0.0.1:7101".into()], Default::default()).await?;
    /// println!("{} files", c.status().await?.files);
    /// # Ok(()) }
    /// ```
    pub async fn connect(masters: &[String], config: ClientConfig) -> Result<Client> {
        let addrs = masters
            .iter()
            .map(|a| address(a))
            .collect::<Result<Vec<_>>>()?;
        let masters = Masters::new(
            addrs.clone(),
            config.call_timeout,
            config.retry_for,
            config.transport.clone(),
        )?;
        let c = Client {
            cvs: partial::cache(),
            data: Default::default(),
            frames: dataport::frame_pool(),
            tails: Default::default(),
            append_conns: Default::default(),
            id: masters.client_id,
            masters: Arc::new(masters),
            config: Arc::new(config),
        };
        let r = c
            .masters
            .call_for(c.config.connect_within, |mut m| async move {
                m.status(Empty {}).await
            })
            .await;
        match r {
            Ok(_) => Ok(c),
            Err(ClientError::Unavailable(why)) => Err(ClientError::Unavailable(format!(
                "tried {} ({why})",
                addrs.join(", ")
            ))),
            // What a plaintext client gets from a TLS port.
            Err(ClientError::Other(why))
                if !c.config.transport.is_tls() && why.contains("protocol error") =>
            {
                Err(ClientError::Unavailable(format!(
                    "{}: {why} (the masters may require TLS: connect with a certificate)",
                    addrs.join(", ")
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// This client's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The cluster as the leader sees it: masters, chunkservers, namespace counts, healing.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let s = c.status().await?;
    /// let free: u64 = s.chunkservers.iter().map(|cs| cs.free_bytes).sum();
    /// println!("leader {}, {free} bytes free", s.leader);
    /// # Ok(()) }
    /// ```
    pub async fn status(&self) -> Result<StatusReply> {
        self.masters
            .call(|mut m| async move { m.status(Empty {}).await })
            .await
    }

    /// The administrative calls (draining servers, changing the master group).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.admin().drain(4, true).await?;
    /// # Ok(()) }
    /// ```
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(self.clone())
    }

    /// Waits (at most `within`) for background clean-ups to reach the masters: files abandoned
    /// because their writer was dropped or their `put` cancelled. A program about to exit calls
    /// this so that the paths it was writing are released at once rather than when their leases
    /// expire. Returns whether all finished.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) {
    /// c.settle(std::time::Duration::from_secs(2)).await;
    /// # }
    /// ```
    pub async fn settle(&self, within: Duration) -> bool {
        self.masters.settle(within).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_with_a_scheme_are_accepted_or_explained() {
        assert_eq!(super::address("h:1").ok().as_deref(), Some("h:1"));
        assert_eq!(super::address("http://h:1/").ok().as_deref(), Some("h:1"));
        assert_eq!(super::address("https://h:1").ok().as_deref(), Some("h:1"));
        assert!(super::address("h").is_err());
        assert!(super::address("h:1/x").is_err());
    }
}
