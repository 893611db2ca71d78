//! `shale master`: one master process (Raft member + MasterService) until SIGTERM / Ctrl-C.
use shale_meta::server::{serve, MasterConfig};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A TOML file with any of these flags as keys (`chunk_size_mib = 64`; see `shale config
    /// example master`); flags and SHALE_MASTER_* variables override it.
    #[arg(long, value_name = "FILE", env = "SHALE_MASTER_CONFIG")]
    pub config: Option<std::path::PathBuf>,
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
    /// Snapshot the state and compact the log after this many changes (commands: a batched
    /// entry counts each of its commands; member N waits N mod 3 thirds of it more, and
    /// builds take at most a tenth of the time).
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_every: u64,
    /// Raft election timeout (the lower bound; the upper is twice it), ms.
    #[arg(long, default_value_t = 200)]
    pub election_timeout_ms: u64,
    /// HTTP status port: `/metrics` (Prometheus) and a status page at `/`.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub http: String,
    /// A chunkserver silent this long is stale (no new replicas placed on it), ms.
    #[arg(long, default_value_t = 3_000)]
    pub stale_after_ms: u64,
    /// A chunkserver silent this long is dead (its replicas are re-created elsewhere), ms.
    #[arg(long, default_value_t = 30_000)]
    pub dead_after_ms: u64,
    /// A new leader deletes nothing for this long (and until every chunkserver reported), ms.
    #[arg(long, default_value_t = 10_000)]
    pub safe_mode_ms: u64,
    /// How often the leader looks for chunks to heal, ms.
    #[arg(long, default_value_t = 1_000)]
    pub heal_interval_ms: u64,
    /// Re-replication throttle: copies one chunkserver takes part in at once.
    #[arg(long, default_value_t = 2)]
    pub copies_per_server: usize,
    /// Replicas of chunks no master knows are deleted after being reported this long, ms.
    #[arg(long, default_value_t = 3_600_000)]
    pub orphan_grace_ms: u64,
    /// The leader forgets a chunkserver registration silent this long (unless it may hold the
    /// only replica of something), ms.
    #[arg(long, default_value_t = 3_600_000)]
    pub forget_silent_ms: u64,
    /// How long deleted paths stay in the trash before they are removed for good, ms
    /// (default one day).
    #[arg(long, default_value_t = 86_400_000)]
    pub trash_retention_ms: u64,
    /// Check every invariant of the state snapshot loaded at start (O(files); by default only
    /// its checksum and structure are checked, which is what makes restarts fast).
    #[arg(long)]
    pub verify_state: bool,
    /// The state snapshot format this master writes: 9 (this release), or 8 while a rolling
    /// upgrade still has masters of an older release, which cannot read format 9 (a leader
    /// sends its snapshot to a lagging member). Every format loads either way.
    #[arg(long, default_value_t = shale_meta::snapshot::FORMAT_VERSION)]
    pub snapshot_format: u16,
    /// Campaign only on openraft's own election timer, without first asking the other masters
    /// (the pre-vote: a follower asks once the leader lease runs out, and the one with the
    /// longest log campaigns; failover ≈ the lease plus half the timeout).
    #[arg(long)]
    pub no_pre_vote: bool,
    /// Confirm leadership with a heartbeat round for every batch of linearizable reads, instead
    /// of serving them while a majority acknowledged this leader within half the leader lease
    /// (the lease assumes the masters' clocks run at nearly the same rate).
    #[arg(long)]
    pub no_lease_reads: bool,
    /// TEST ONLY: disarm openraft's own election timer (only the pre-vote starts campaigns).
    #[arg(long, hide = true)]
    pub test_pre_vote_only: bool,
    /// TEST ONLY: serve reads without confirming leadership (a planted bug the torture harness
    /// must catch).
    #[arg(long, hide = true)]
    pub test_unsafe_reads: bool,
    /// TEST ONLY: lifetime of the chunk access tokens this master signs, ms (default 1 h).
    #[arg(long, hide = true)]
    pub test_token_lifetime_ms: Option<u64>,
}

/// A follower at most this many entries behind the leader counts as caught up.
pub const READY_LAG_MAX: u64 = 1000;

/// A lazily connected channel to a master's gRPC port, for the status port's calls (short
/// timeouts: a page or probe must not hang).
pub(crate) fn status_channel(
    transport: &shale_security::Transport,
    addr: &str,
) -> Result<tonic::transport::Channel, String> {
    transport.channel(addr, |e| {
        e.connect_timeout(std::time::Duration::from_secs(1))
            .timeout(std::time::Duration::from_secs(2))
    })
}

/// `/readyz` of a master: ready when it is in a group that has a leader (a confirmed one, if
/// it is the leader) and, as a follower, has applied to within [`READY_LAG_MAX`] entries of
/// the leader. Asked over its own gRPC port (and the leader's), like the status page.
fn ready(grpc: String, transport: &shale_security::Transport) -> crate::http::Ready {
    use shale_proto::metapb::{master_service_client::MasterServiceClient, Empty};
    let dial = {
        let transport = transport.clone();
        move |addr: &str| status_channel(&transport, addr).map(MasterServiceClient::new)
    };
    let own = dial(&grpc).ok();
    std::sync::Arc::new(move || {
        let (own, dial) = (own.clone(), dial.clone());
        Box::pin(async move {
            let mut c = own.ok_or("no channel to its own gRPC port")?;
            let s = c
                .status(Empty {})
                .await
                .map_err(|e| format!("its gRPC port does not answer: {}", e.message()))?
                .into_inner();
            if s.leader == 0 {
                return Err(format!(
                    "no leader known (role {}, term {})",
                    s.role, s.term
                ));
            }
            if s.role == "leader" {
                return Ok(format!("leader of term {}", s.term));
            }
            if s.role != "follower" && s.role != "learner" {
                return Err(format!("role {}", s.role));
            }
            let mut l = dial(&s.leader_address).map_err(|e| format!("leader address: {e}"))?;
            let leader = l
                .status(Empty {})
                .await
                .map_err(|e| format!("the leader does not answer: {}", e.message()))?
                .into_inner();
            let lag = leader.applied_index.saturating_sub(s.applied_index);
            if lag > READY_LAG_MAX {
                return Err(format!("{lag} entries behind the leader"));
            }
            Ok(format!(
                "{} of master {} (term {}), {lag} entries behind",
                s.role, s.leader, s.term
            ))
        })
    })
}

/// The JSON API: `/api/status` (this master's `Status`, as `shale status --json` prints it,
/// asked now) and `/api/dashboard` (the dashboard's figures).
fn api(
    grpc: String,
    transport: &shale_security::Transport,
    dash: std::sync::Arc<crate::dashboard::Dashboard>,
) -> crate::http::Api {
    let channel = status_channel(transport, &grpc).ok();
    std::sync::Arc::new(move |path: &str| {
        let channel = channel.clone();
        let dash = dash.clone();
        let f: std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>> =
            match path {
                "status" => Box::pin(async move {
                    let mut c =
                        shale_proto::metapb::master_service_client::MasterServiceClient::new(
                            channel?,
                        );
                    let s = c
                        .status(shale_proto::metapb::Empty {})
                        .await
                        .ok()?
                        .into_inner();
                    Some(crate::cli::admin::status_json(&s).to_string())
                }),
                "dashboard" => Box::pin(async move { Some(dash.json().to_string()) }),
                _ => return None,
            };
        Some(f)
    })
}

/// The status page: the operator's dashboard.
fn page(dash: std::sync::Arc<crate::dashboard::Dashboard>) -> crate::http::Page {
    std::sync::Arc::new(move || {
        let dash = dash.clone();
        Box::pin(async move { dash.page() })
    })
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

pub async fn run(a: Args, tls: &crate::tls::TlsArgs) -> Result<(), Box<dyn std::error::Error>> {
    if a.id == 0 {
        return Err("--id must be at least 1".into());
    }
    let principal =
        shale_security::Principal::new(shale_security::Role::Master, &a.id.to_string())?;
    let transport = tls.server(&principal)?;
    let peers = parse_peers(&a.peers)?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", a.listen))?;
    let bound_addr = listener.local_addr()?;
    let bound = bound_addr.to_string();
    if a.advertise.is_none() && bound_addr.ip().is_unspecified() {
        return Err(format!(
            "listening on {bound} (every interface) needs --advertise HOST:PORT: the address \
             the other masters, the chunkservers and the clients reach this master at"
        )
        .into());
    }
    let advertise = a.advertise.clone().unwrap_or_else(|| bound.clone());
    let mut config = MasterConfig::new(a.id, advertise.clone(), a.data.clone());
    config.peers = peers;
    config.chunk_size_bytes = a.chunk_size_mib << 20;
    config.replication = a.replication;
    config.snapshot_every = a.snapshot_every.max(10);
    config.election_timeout_min_ms = a.election_timeout_ms.max(50);
    config.election_timeout_max_ms = 2 * config.election_timeout_min_ms;
    config.heartbeat_ms = (config.election_timeout_min_ms / 4).max(10);
    config.timeouts = shale_meta::server::soft::Timeouts {
        stale_after: std::time::Duration::from_millis(a.stale_after_ms.max(100)),
        dead_after: std::time::Duration::from_millis(
            a.dead_after_ms.max(a.stale_after_ms).max(200),
        ),
    };
    config.safe_mode = std::time::Duration::from_millis(a.safe_mode_ms);
    config.heal_interval = std::time::Duration::from_millis(a.heal_interval_ms.max(50));
    config.orphan_grace = std::time::Duration::from_millis(a.orphan_grace_ms);
    config.copies_per_server = a.copies_per_server.max(1);
    config.forget_after = std::time::Duration::from_millis(a.forget_silent_ms.max(1000));
    config.test_unsafe_reads = a.test_unsafe_reads;
    config.trash_retention = std::time::Duration::from_millis(a.trash_retention_ms);
    config.verify_state = a.verify_state;
    config.snapshot_format = a.snapshot_format;
    config.pre_vote = !a.no_pre_vote;
    config.lease_reads = !a.no_lease_reads;
    config.raft_timer = !a.test_pre_vote_only;
    if a.no_pre_vote && a.test_pre_vote_only {
        return Err("--test-pre-vote-only needs the pre-vote (drop --no-pre-vote)".into());
    }
    config.transport = transport.clone();
    if let Some(ms) = a.test_token_lifetime_ms {
        config.token_lifetime = std::time::Duration::from_millis(ms).min(config.token_lifetime);
    }
    if a.test_unsafe_reads {
        eprintln!("WARNING: --test-unsafe-reads: this master serves stale reads when deposed (a planted bug for the torture tests)");
    }
    let dash = crate::dashboard::Dashboard::start(advertise.clone(), &transport);
    let http = crate::http::start(
        &a.http,
        page(dash.clone()),
        ready(advertise.clone(), &transport),
        Some(api(advertise.clone(), &transport, dash)),
        &transport,
    )
    .await?;
    println!(
        "shale master {} listening on {bound} (advertised as {advertise}), http status on {http}",
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
