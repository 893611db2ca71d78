//! The chunkserver process: ChunkService over gRPC on the chunk store, plus registration and
//! heartbeats to every master.
pub mod access;
mod append;
pub mod dataport;
mod digests;
pub mod heartbeat;
mod pipeline;
mod port_write;
pub mod scrub;
mod sendfile;
pub mod service;
pub mod status;

use crate::{open_disk_store, BackendChoice, StoreConfig};
use service::{ChunkServer, FRAME_MAX_BYTES};
use shale_proto::pb::chunk_service_server::ChunkServiceServer;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;

#[derive(Clone, Debug)]
pub struct ChunkserverConfig {
    pub data_dir: PathBuf,
    pub masters: Vec<String>,
    /// host:port this server is reached at (registered with the masters).
    pub advertise: String,
    pub host: String,
    pub rack: Option<String>,
    pub chunk_size_max_bytes: u64,
    pub capacity_bytes: Option<u64>,
    pub heartbeat: Duration,
    /// Scrubber rate (0: off) and pause between passes.
    pub scrub_bytes_per_s: u64,
    pub scrub_every: Duration,
    /// Bandwidth cap of re-replication copies pulled by this server (bytes/s, 0: none).
    pub replicate_bytes_per_s: u64,
    /// A write stream silent this long is cut off and its chunk discarded.
    pub stream_idle: Duration,
    /// How this server accepts and makes connections (mutual TLS as itself, or plaintext).
    pub transport: shale_security::Transport,
    /// Write chunk data with O_DIRECT where the file system allows (see `store`).
    pub direct_io: bool,
    /// The node id the masters assigned (0 until registered): shared with the caller, e.g.
    /// for a readiness probe.
    pub node: Arc<std::sync::atomic::AtomicU64>,
    /// The data port (`dataport`): `Some(0)` any free port on the gRPC listener's address,
    /// `Some(p)` that port, `None` none (readers use gRPC only).
    pub data_port: Option<u16>,
}

/// The chunkserver's stable identity: a random id kept in `<data>/uuid`.
fn uuid(dir: &std::path::Path) -> std::io::Result<String> {
    let p = dir.join("uuid");
    match std::fs::read_to_string(&p) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            shale_proto::durable::write_file(dir, "uuid", id.as_bytes())?;
            Ok(id)
        }
    }
}

/// Serves until `shutdown` completes.
pub async fn serve(
    config: ChunkserverConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(config.data_dir.join("chunks"))?;
    // Held for the life of the server: one process per data directory.
    let _locks = (
        shale_proto::dirlock::lock_dir(&config.data_dir)?,
        shale_proto::dirlock::lock_dir(&config.data_dir.join("chunks"))?,
    );
    let uuid = uuid(&config.data_dir)?;
    let store_config = StoreConfig {
        chunk_size_max_bytes: config.chunk_size_max_bytes,
        capacity_bytes: config.capacity_bytes,
        direct_io: config.direct_io,
        ..StoreConfig::default()
    };
    let (store, report) = open_disk_store(
        &config.data_dir.join("chunks"),
        store_config,
        BackendChoice::Auto,
    )
    .await?;
    tracing::info!("chunk store: {report}");
    let mut server = ChunkServer::new(store, config.chunk_size_max_bytes);
    server.node = config.node.clone();
    server.replicate_bytes_per_s = config.replicate_bytes_per_s;
    server.stream_idle = config.stream_idle;
    server.transport = config.transport.clone();
    let server = Arc::new(server);
    // The data port listens where the gRPC port does; advertised on the advertised host.
    let data = match config.data_port {
        Some(port) => {
            let mut at = listener.local_addr()?;
            at.set_port(port);
            let l = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| format!("data port {at}: {e}"))?;
            let bound = l.local_addr()?.port();
            let host = config
                .advertise
                .rsplit_once(':')
                .map_or(config.advertise.as_str(), |(h, _)| h);
            Some((l, format!("{host}:{bound}")))
        }
        None => None,
    };
    let data_address = data.as_ref().map(|(_, a)| a.clone()).unwrap_or_default();
    if !data_address.is_empty() {
        tracing::info!("data port on {data_address}");
    }
    let data_port = data.map(|(l, _)| tokio::spawn(dataport::serve(l, server.clone())));
    let identity = heartbeat::Identity {
        uuid,
        address: config.advertise.clone(),
        data_address,
        host: config.host.clone(),
        rack: config.rack.clone(),
    };
    let capacity = server.store.usage().capacity_bytes;
    let masters = config.masters.clone();
    let hb_server = server.clone();
    let interval = config.heartbeat;
    let background = tokio::spawn(heartbeat::run(
        hb_server, masters, interval, identity, capacity,
    ));
    let scrubber = tokio::spawn(scrub::run(
        server.clone(),
        config.scrub_bytes_per_s,
        config.scrub_every,
    ));
    let result = shale_security::limits::server()
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .add_service(InterceptedService::new(
            ChunkServiceServer::from_arc(server)
                .max_decoding_message_size(FRAME_MAX_BYTES + (64 << 10))
                .max_encoding_message_size(FRAME_MAX_BYTES + (64 << 10)),
            // Clients without certificates may come with chunk tokens (see `access`).
            shale_security::authenticate_or_anonymous,
        ))
        .serve_with_incoming_shutdown(config.transport.incoming(listener), shutdown)
        .await;
    background.abort();
    scrubber.abort();
    if let Some(d) = data_port {
        d.abort();
    }
    result.map_err(Into::into)
}
