//! `shale master`: one master process (Raft member + MasterService) until SIGTERM / Ctrl-C.
use shale_meta::server::{serve, MasterConfig};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// This master's id in the group (≥ 1).
    #[arg(long)]
    pub id: u64,
    /// Address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Address the other masters and clients reach this one at (default: the bound address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Data directory (Raft log and snapshots).
    #[arg(long)]
    pub data: PathBuf,
    /// Initial voting masters, `id=host:port,...` (this one included). Safe to give on every
    /// start: a master that already has a log ignores it. Without it the master waits to be
    /// bootstrapped (`Bootstrap` RPC) or added to a running group.
    #[arg(long, default_value = "")]
    pub peers: String,
    /// Default chunk size of new files, MiB (power of two, 1..=1024).
    #[arg(long, default_value_t = 64)]
    pub chunk_size_mib: u64,
    /// Default replication of new files.
    #[arg(long, default_value_t = 3)]
    pub replication: u8,
    /// Snapshot and compact the log every this many entries.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_every: u64,
    /// Raft election timeout (the lower bound; the upper is twice it), ms.
    #[arg(long, default_value_t = 200)]
    pub election_timeout_ms: u64,
}

fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("peer {part:?} is not id=host:port"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("peer id {id:?} is not a number"))?;
        if id == 0 || !addr.contains(':') {
            return Err(format!("peer {part:?} needs an id ≥ 1 and host:port"));
        }
        out.insert(id, addr.to_string());
    }
    Ok(out)
}

pub async fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    if a.id == 0 {
        return Err("--id must be at least 1".into());
    }
    let peers = parse_peers(&a.peers)?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", a.listen))?;
    let bound = listener.local_addr()?.to_string();
    let advertise = a.advertise.clone().unwrap_or_else(|| bound.clone());
    let mut config = MasterConfig::new(a.id, advertise.clone(), a.data.clone());
    config.peers = peers;
    config.chunk_size_bytes = a.chunk_size_mib << 20;
    config.replication = a.replication;
    config.snapshot_every = a.snapshot_every.max(10);
    config.election_timeout_min_ms = a.election_timeout_ms.max(50);
    config.election_timeout_max_ms = 2 * config.election_timeout_min_ms;
    config.heartbeat_ms = (config.election_timeout_min_ms / 4).max(10);
    println!(
        "shale master {} listening on {bound} (advertised as {advertise})",
        a.id
    );
    std::io::stdout().flush()?;
    serve(config, listener, shutdown_signal())
        .await
        .map_err(|e| e as Box<dyn std::error::Error>)?;
    println!("shale master {} stopped", a.id);
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_reject_garbage() {
        let p = parse_peers("1=127.0.0.1:7001, 2=127.0.0.1:7002").expect("ok");
        assert_eq!(p.len(), 2);
        assert!(parse_peers("").expect("empty").is_empty());
        for bad in ["1", "x=1.2.3.4:5", "0=a:1", "1=nohost"] {
            assert!(parse_peers(bad).is_err(), "{bad}");
        }
    }
}
