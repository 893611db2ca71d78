//! `shale chunkserver`: one chunkserver process until SIGTERM / Ctrl-C.
use shale_chunk::server::{serve, ChunkserverConfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A TOML file with any of these flags as keys (`data = "/srv/shale"`; see `shale config
    /// example chunkserver`); flags and SHALE_CHUNKSERVER_* variables override it.
    #[arg(long, value_name = "FILE", env = "SHALE_CHUNKSERVER_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Address the masters, clients and other chunkservers reach this one at.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Data directory (chunk store and identity).
    #[arg(long)]
    pub data: PathBuf,
    /// Failure-domain host label (default: this machine's hostname). Two replicas of a chunk
    /// never share a host label.
    #[arg(long)]
    pub host: Option<String>,
    /// Optional rack label; replicas spread over racks when they can.
    #[arg(long)]
    pub rack: Option<String>,
    /// Largest chunk accepted, MiB.
    #[arg(long, default_value_t = 1024)]
    pub chunk_size_max_mib: u64,
    /// Cap on the bytes stored (default: the file system's size).
    #[arg(long)]
    pub capacity_bytes: Option<u64>,
    /// Heartbeat interval to the masters, ms.
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// HTTP status port: `/metrics` (Prometheus) and a status page at `/`.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub http: String,
    /// Scrubber: re-verify sealed chunks at this rate, MiB/s (0 turns it off).
    #[arg(long, default_value_t = 32)]
    pub scrub_mib_per_s: u64,
    /// Scrubber: seconds between passes.
    #[arg(long, default_value_t = 3600)]
    pub scrub_every_s: u64,
    /// Bandwidth cap of re-replication copies this server pulls, MiB/s (0: none).
    #[arg(long, default_value_t = 128)]
    pub replicate_mib_per_s: u64,
    /// This server's certificate name (`chunkserver-NAME.pem` in the TLS folder). Default: the
    /// host label.
    #[arg(long)]
    pub name: Option<String>,
    /// A write stream that sends nothing for this many seconds is cut off (its chunk discarded).
    #[arg(long, default_value_t = 30)]
    pub stream_idle_s: u64,
    /// Write chunk data through the page cache instead of with O_DIRECT (the default where the
    /// file system allows it). Either way a chunk is fdatasynced before it is acknowledged.
    #[arg(long)]
    pub buffered_io: bool,
    /// The data port (chunk reads without gRPC, docs/data-port.md), on the listen address;
    /// 0 picks a free port (advertised to the masters, which hand it to readers).
    #[arg(long, default_value_t = 0)]
    pub data_port: u16,
    /// Serve no data port (readers use the gRPC port only).
    #[arg(long)]
    pub no_data_port: bool,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

pub async fn run(
    a: Args,
    masters: Vec<String>,
    tls: &crate::tls::TlsArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let host = a.host.clone().unwrap_or_else(hostname);
    let name = a.name.clone().unwrap_or_else(|| host.clone());
    let principal = shale_security::Principal::new(shale_security::Role::Chunkserver, &name)?;
    let transport = tls.server(&principal)?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", a.listen))?;
    let bound = listener.local_addr()?.to_string();
    let advertise = a.advertise.clone().unwrap_or_else(|| bound.clone());
    // The masters refuse a registration they could not dial back: say so now, not never.
    shale_meta::sm::registry::check_address(&advertise).map_err(|e| {
        format!("{e}; pass --advertise HOST:PORT that the masters and peers can reach")
    })?;
    let config = ChunkserverConfig {
        data_dir: a.data.clone(),
        masters,
        advertise: advertise.clone(),
        host,
        rack: a.rack.clone(),
        chunk_size_max_bytes: a.chunk_size_max_mib.clamp(1, 1024) << 20,
        capacity_bytes: a.capacity_bytes,
        heartbeat: Duration::from_millis(a.heartbeat_ms.max(50)),
        scrub_bytes_per_s: a.scrub_mib_per_s << 20,
        scrub_every: Duration::from_secs(a.scrub_every_s.max(1)),
        replicate_bytes_per_s: a.replicate_mib_per_s << 20,
        stream_idle: Duration::from_secs(a.stream_idle_s.max(1)),
        transport: transport.clone(),
        direct_io: !a.buffered_io,
        node: Default::default(),
        data_port: (!a.no_data_port).then_some(a.data_port),
    };
    let (addr, masters_list, data) = (
        advertise.clone(),
        config.masters.join(", "),
        a.data.display().to_string(),
    );
    let page: crate::http::Page = std::sync::Arc::new(move || {
        let body = format!(
            "<html><head><title>shale chunkserver {0}</title></head><body><h1>shale chunkserver</h1><p>gRPC {0} · data {1} · masters {2} · <a href=\"/metrics\">metrics</a></p></body></html>",
            crate::http::escape(&addr),
            crate::http::escape(&data),
            crate::http::escape(&masters_list)
        );
        Box::pin(async move { body })
    });
    // Ready once registered: the node id is set after the store opened and the masters
    // answered.
    let node = config.node.clone();
    let ready: crate::http::Ready = std::sync::Arc::new(move || {
        let n = node.load(std::sync::atomic::Ordering::Relaxed);
        Box::pin(async move {
            if n == 0 {
                Err("not registered with the masters yet".to_string())
            } else {
                Ok(format!("chunkserver node {n}, store open"))
            }
        })
    });
    let http = crate::http::start(&a.http, page, ready, None, &transport).await?;
    println!(
        "shale chunkserver listening on {bound} (advertised as {advertise}), http status on {http}"
    );
    std::io::stdout().flush()?;
    serve(config, listener, crate::master::shutdown_signal())
        .await
        .map_err(|e| e as Box<dyn std::error::Error>)?;
    println!("shale chunkserver stopped");
    Ok(())
}
