//! `shale-bench meta`: three real master processes on loopback (fsync on), measured from
//! client tasks over gRPC:
//! * create+complete of empty files with 1 and 64 concurrent clients;
//! * linearizable stat with 64 clients (ReadIndex rounds shared by concurrent reads);
//! * failover: `kill -9` the leader under write load, time from the kill to the first
//!   successful write (several trials; the killed master restarts and catches up in between);
//! * memory of the master state per file and per chunk, with ≥ 1 M chunks, measured in this
//!   process with a counting allocator on the same state-machine code the masters run.
//!
//! The master processes are this binary re-executed with the hidden `internal-master`
//! subcommand (the same `shale_meta::server::serve` as `shale master`).
#[path = "meta_scale.rs"]
pub(crate) mod scale;

use crate::report::{pct, print_json, r1, r3};
use serde_json::json;
use shale_meta::sm::{Command, MetaState, Reply};
use shale_proto::metapb::master_service_client::MasterServiceClient;
use shale_proto::metapb::*;
use shale_proto::NodeId;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(clap::Args)]
pub struct Args {
    /// Files created by the single client.
    #[arg(long, default_value_t = 1000)]
    creates_1: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: u64,
    /// Files created by each of the concurrent clients.
    #[arg(long, default_value_t = 150)]
    creates_per_client: u64,
    /// Stats issued by each of the concurrent clients.
    #[arg(long, default_value_t = 600)]
    stats_per_client: u64,
    /// Failover trials.
    #[arg(long, default_value_t = 20)]
    failovers: u32,
    /// Chunks in the memory measurement.
    #[arg(long, default_value_t = 1_000_000)]
    chunks: u64,
    /// Files in the namespace the snapshot and quota costs are measured at (in-process).
    #[arg(long, default_value_t = 1_000_000)]
    snapshot_files: u64,
    /// Files the namespace is grown to (through `Batch` calls) for the scale phase: create
    /// latency and elections while it grows, creates/s at that size, restart time (0: skip).
    #[arg(long, default_value_t = 1_000_000)]
    load_files: u64,
    /// Where to put the masters' data (default: a temp dir under the current directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run the masters and clients in plaintext (default: mutual TLS).
    #[arg(long)]
    plaintext: bool,
    /// The masters' Raft election timeout, ms (lower bound; the upper is twice it, the
    /// heartbeat a quarter of it), as `shale master --election-timeout-ms`.
    #[arg(long, default_value_t = ELECTION_MS_DEFAULT)]
    election_timeout_ms: u64,
    /// Run the masters without the pre-vote (as `shale master --no-pre-vote`).
    #[arg(long)]
    no_pre_vote: bool,
    /// Run the masters without lease reads (as `shale master --no-lease-reads`).
    #[arg(long)]
    no_lease_reads: bool,
}

/// Switches every master of the run is started with (`--no-pre-vote`, `--no-lease-reads`),
/// set once at the start of [`run`].
static MASTER_SWITCHES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();

/// The benchmarks' masters' election timeout unless told otherwise, ms.
pub(crate) const ELECTION_MS_DEFAULT: u64 = 150;
/// The election timeout every master of the run is started with, set once at its start.
static ELECTION_MS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Sets the election timeout of the run's masters, once.
pub(crate) fn set_election_ms(ms: u64) {
    let _ = ELECTION_MS.set(ms);
}

/// The run's TLS folder (`None`: plaintext), set once at the start of [`run`].
static TLS_DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
/// The run's client transport, made from [`TLS_DIR`].
static TRANSPORT: std::sync::OnceLock<shale_client::Transport> = std::sync::OnceLock::new();

#[derive(clap::Args)]
pub struct MasterArgs {
    #[arg(long)]
    id: u64,
    #[arg(long)]
    listen: String,
    #[arg(long)]
    data: PathBuf,
    /// TLS folder (certificate `master-ID`); plaintext without it.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Chunkservers silent this long are dead, ms.
    #[arg(long, default_value_t = 30_000)]
    dead_after_ms: u64,
    /// Re-replication copies per chunkserver at once.
    #[arg(long, default_value_t = 2)]
    copies_per_server: usize,
    /// Default chunk size of new files, MiB.
    #[arg(long, default_value_t = 64)]
    chunk_size_mib: u64,
    /// The healer's round, ms.
    #[arg(long, default_value_t = 200)]
    heal_interval_ms: u64,
    /// Safe mode after an election, ms.
    #[arg(long, default_value_t = 500)]
    safe_mode_ms: u64,
    /// Raft election timeout (lower bound; the upper is twice it), ms.
    #[arg(long, default_value_t = ELECTION_MS_DEFAULT)]
    election_timeout_ms: u64,
    /// Campaign on openraft's timer only.
    #[arg(long)]
    no_pre_vote: bool,
    /// A heartbeat round for every batch of linearizable reads.
    #[arg(long)]
    no_lease_reads: bool,
}

/// The body of a master child process.
pub async fn internal_master(a: MasterArgs) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind(&a.listen).await?;
    let addr = listener.local_addr()?.to_string();
    let mut config = shale_meta::server::MasterConfig::new(a.id, addr.clone(), a.data);
    // As `shale master` derives them from `--election-timeout-ms`.
    config.election_timeout_min_ms = a.election_timeout_ms.max(50);
    config.election_timeout_max_ms = 2 * config.election_timeout_min_ms;
    config.heartbeat_ms = (config.election_timeout_min_ms / 4).max(10);
    config.pre_vote = !a.no_pre_vote;
    config.lease_reads = !a.no_lease_reads;
    config.timeouts.dead_after = Duration::from_millis(a.dead_after_ms);
    config.timeouts.stale_after = Duration::from_millis(a.dead_after_ms.min(3000) / 2);
    config.copies_per_server = a.copies_per_server;
    config.transport = crate::tls::server(
        a.tls_dir.as_deref(),
        shale_client::Role::Master,
        &a.id.to_string(),
    )?;
    config.chunk_size_bytes = a.chunk_size_mib << 20;
    config.heal_interval = Duration::from_millis(a.heal_interval_ms);
    config.safe_mode = Duration::from_millis(a.safe_mode_ms);
    println!("listening on {addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    // SIGTERM stops it cleanly (as `shale master`): the scale phase times a planned restart.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    shale_meta::server::serve(config, listener, async move {
        term.recv().await;
    })
    .await
}

pub(crate) struct Proc {
    pub id: u64,
    addr: String,
    data: PathBuf,
    kid: crate::procs::Kid,
}

/// Sets the run's TLS folder (`None`: plaintext) and client transport, once.
pub(crate) fn set_tls(dir: Option<PathBuf>) -> Result<(), BoxError> {
    let _ = TRANSPORT.set(crate::tls::client(dir.as_deref())?);
    let _ = TLS_DIR.set(dir);
    Ok(())
}

impl Proc {
    fn start(id: u64, listen: &str, data: &Path) -> Result<Proc, BoxError> {
        Self::start_with(id, listen, data, &[])
    }

    /// This master started again (it was stopped or killed) on its address and data.
    pub(crate) fn again(&self) -> Result<Proc, BoxError> {
        Self::start(self.id, &self.addr, &self.data)
    }

    /// A master process with `extra` arguments of `internal-master`.
    pub(crate) fn start_with(
        id: u64,
        listen: &str,
        data: &Path,
        extra: &[&str],
    ) -> Result<Proc, BoxError> {
        let (kid, addr) = crate::procs::spawn(
            &[
                std::ffi::OsStr::new("internal-master"),
                "--id".as_ref(),
                id.to_string().as_ref(),
                "--listen".as_ref(),
                listen.as_ref(),
                "--data".as_ref(),
                data.as_os_str(),
            ]
            .into_iter()
            .map(std::ffi::OsStr::to_os_string)
            .chain(
                TLS_DIR
                    .get()
                    .cloned()
                    .flatten()
                    .into_iter()
                    .flat_map(|d| ["--tls-dir".into(), d.into_os_string()]),
            )
            .chain(
                ELECTION_MS
                    .get()
                    .into_iter()
                    .flat_map(|ms| ["--election-timeout-ms".into(), ms.to_string().into()]),
            )
            .chain(
                MASTER_SWITCHES
                    .get()
                    .into_iter()
                    .flatten()
                    .map(std::ffi::OsString::from),
            )
            .chain(extra.iter().map(std::ffi::OsString::from))
            .collect::<Vec<_>>(),
        )?;
        Ok(Proc {
            id,
            addr,
            data: data.to_path_buf(),
            kid,
        })
    }

    pub(crate) fn kill9(&mut self) {
        self.kid.kill9();
    }

    /// Stops the process with SIGTERM and waits for it to exit (at most `within`, then
    /// `kill -9`); whether it exited by itself.
    pub(crate) fn stop(&mut self, within: Duration) -> bool {
        self.kid.stop(within)
    }

    /// The process id (0 once killed).
    pub(crate) fn pid(&self) -> u32 {
        self.kid.0.as_ref().map_or(0, |c| c.id())
    }
}

pub(crate) fn channel(addr: &str) -> Result<Channel, BoxError> {
    let t = TRANSPORT.get().cloned().unwrap_or_default();
    Ok(t.channel(addr, |e| {
        e.connect_timeout(Duration::from_millis(300))
            .timeout(Duration::from_secs(2))
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
    })?)
}

/// A client that follows leader hints and retries (bounded) through elections.
#[derive(Clone)]
pub(crate) struct Client {
    addrs: Arc<Vec<String>>,
    leader: Arc<std::sync::Mutex<String>>,
    channels: Arc<std::sync::Mutex<std::collections::HashMap<String, Channel>>>,
}

impl Client {
    pub(crate) fn new(addrs: Vec<String>) -> Client {
        Client {
            leader: Arc::new(std::sync::Mutex::new(addrs[0].clone())),
            addrs: Arc::new(addrs),
            channels: Arc::default(),
        }
    }

    fn svc(&self, addr: &str) -> Result<MasterServiceClient<Channel>, BoxError> {
        let mut ch = self.channels.lock().map_err(|_| "poisoned")?;
        if let Some(c) = ch.get(addr) {
            return Ok(MasterServiceClient::new(c.clone()));
        }
        let c = channel(addr)?;
        ch.insert(addr.to_string(), c.clone());
        Ok(MasterServiceClient::new(c))
    }

    async fn call<T, F, Fut>(&self, op: F) -> Result<T, BoxError>
    where
        F: Fn(MasterServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut i = 0;
        loop {
            let target = self.leader.lock().map_err(|_| "poisoned")?.clone();
            match op(self.svc(&target)?).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s)
                    if Instant::now() < deadline
                        && matches!(
                            s.code(),
                            tonic::Code::Unavailable
                                | tonic::Code::Unknown
                                | tonic::Code::Cancelled
                                | tonic::Code::DeadlineExceeded
                        ) =>
                {
                    if s.code() != tonic::Code::Unavailable {
                        // Not an answer from a master: start over with a new connection.
                        self.channels
                            .lock()
                            .map_err(|_| "poisoned")?
                            .remove(&target);
                    }
                    let hint = s
                        .metadata()
                        .get("shale-leader")
                        .and_then(|v| v.to_str().ok())
                        .filter(|h| self.addrs.iter().any(|a| a == h))
                        .map(str::to_string);
                    let next = hint.unwrap_or_else(|| {
                        i += 1;
                        self.addrs[i % self.addrs.len()].clone()
                    });
                    *self.leader.lock().map_err(|_| "poisoned")? = next;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(s) => return Err(Box::new(s)),
            }
        }
    }

    pub(crate) async fn touch(&self, path: String) -> Result<(), BoxError> {
        // Request ids as the client library sends them, so that a retry (after a lost reply
        // or a leader change) is answered as the first time: a session of its own per file.
        let session = fastrand::u64(1 << 32..u64::MAX / 2);
        let rid = |seq| {
            Some(RequestId {
                client_id: session,
                seq,
            })
        };
        let c = self
            .call(|mut c| {
                let p = path.clone();
                async move {
                    c.create(CreateRequest {
                        request_id: rid(1),
                        path: p,
                        overwrite: true,
                        replication: 0,
                        chunk_size: 0,
                        client_id: 1,
                        lease_ms: 60_000,
                        mode: None,
                    })
                    .await
                }
            })
            .await?;
        self.call(|mut cl| async move {
            cl.complete(CompleteRequest {
                chunk_digests: vec![],
                request_id: rid(2),
                file: c.file,
                client_id: 1,
                length: 0,
            })
            .await
        })
        .await?;
        Ok(())
    }
}

pub(crate) async fn parallel<F, Fut>(clients: u64, f: F) -> Result<Duration, BoxError>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients).map(|k| tokio::spawn(f(k))).collect();
    for task in tasks {
        task.await??;
    }
    Ok(t.elapsed())
}

/// What one client's create+complete calls, one after the other, gave.
pub(crate) struct OneClient {
    pub per_s: f64,
    pub ms_p50: f64,
    pub ms_p99: f64,
    pub ms_max: f64,
}

impl std::fmt::Display for OneClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)",
            self.per_s, self.ms_p50, self.ms_p99, self.ms_max
        )
    }
}

/// `n` create+complete calls from one client, one after the other, under `dir`.
pub(crate) async fn creates_one_client(
    c: &Client,
    n: u64,
    dir: &str,
) -> Result<OneClient, BoxError> {
    let mut lat = Vec::with_capacity(n as usize);
    let t = Instant::now();
    for i in 0..n {
        let t1 = Instant::now();
        c.touch(format!("{dir}/one-{i}")).await?;
        lat.push(t1.elapsed().as_secs_f64() * 1000.0);
    }
    let per_s = n as f64 / t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(OneClient {
        per_s,
        ms_p50: pct(&lat, 0.5),
        ms_p99: pct(&lat, 0.99),
        ms_max: pct(&lat, 1.0),
    })
}

/// Creates/s of `clients` tasks (over the `pool`'s connections) creating `per` files each
/// in `dir`.
pub(crate) async fn creates_parallel(
    pool: &[Client],
    clients: u64,
    per: u64,
    dir: &str,
) -> Result<f64, BoxError> {
    let took = parallel(clients, |k| {
        let c = pool[(k % pool.len() as u64) as usize].clone();
        let dir = dir.to_string();
        async move {
            for i in 0..per {
                c.touch(format!("{dir}/c{k}-{i}")).await?;
            }
            Ok(())
        }
    })
    .await?;
    Ok((clients * per) as f64 / took.as_secs_f64())
}

async fn wait_leader(client: &Client) -> Result<(), BoxError> {
    client
        .call(|mut c| async move {
            c.stat(PathRequest {
                path: "/".into(),
                follower_read: false,
            })
            .await
        })
        .await
        .map(|_| ())
}

/// Heap bytes per file and per chunk of the master state.
/// What snapshots and quotas cost in the state machine with `files` files in 1,000
/// directories (in-process, the work every master does per entry).
struct SpaceCosts {
    snapshot_create_us: f64,
    first_change_after_snapshot_us: f64,
    change_us: f64,
    snapshot_delete_ms: f64,
    quota_set_ms: f64,
    create_with_quota_us: f64,
}

fn space_costs(files: u64) -> Result<SpaceCosts, BoxError> {
    const DIRS: u64 = 1000;
    let mut s = MetaState::new(1 << 20, 3).map_err(|e| e.to_string())?;
    for d in 0..DIRS {
        s.apply(
            &Command::Mkdir {
                path: format!("/d{d}"),
                parents: false,
            },
            1,
        );
    }
    let touch = |s: &mut MetaState, path: String| -> Result<(), BoxError> {
        let r = s.apply(
            &Command::Create {
                path,
                overwrite: false,
                replication: None,
                chunk_size_bytes: None,
                holder: 1,
                lease_ms: 60_000,
            },
            2,
        );
        let Reply::Created { file, .. } = r else {
            return Err(format!("create: {r:?}").into());
        };
        s.apply(
            &Command::Complete {
                file,
                holder: 1,
                length: 0,
            },
            2,
        );
        Ok(())
    };
    for i in 0..files {
        touch(&mut s, format!("/d{}/f-{i:08}", i % DIRS))?;
    }
    let timed = |s: &mut MetaState, cmd: Command| -> Result<f64, BoxError> {
        let t = Instant::now();
        let r = s.apply(&cmd, 3);
        if let Reply::Err(e) = r {
            return Err(format!("{cmd:?}: {e}").into());
        }
        Ok(t.elapsed().as_secs_f64() * 1e6)
    };
    let mkdir = |p: &str| Command::Mkdir {
        path: p.into(),
        parents: false,
    };
    let change_us = timed(&mut s, mkdir("/d0/plain"))?;
    let snapshot_create_us = timed(
        &mut s,
        Command::CreateSnapshot {
            path: "/".into(),
            name: "s1".into(),
        },
    )?;
    // The first change of a directory after a snapshot copies its entries (once).
    let first_change_after_snapshot_us = timed(&mut s, mkdir("/d1/after"))?;
    // Change every directory (each copied once), then delete the snapshot: its copies go.
    for d in 2..DIRS {
        s.apply(&mkdir(&format!("/d{d}/after")), 3);
    }
    let snapshot_delete_ms = timed(
        &mut s,
        Command::DeleteSnapshot {
            path: "/".into(),
            name: "s1".into(),
        },
    )? / 1000.0;
    // A quota on the root walks the whole tree once; creates below it pay the walk up.
    let quota_set_ms = timed(
        &mut s,
        Command::SetQuota {
            path: "/".into(),
            max_bytes: None,
            max_names: Some(u64::MAX / 2),
        },
    )? / 1000.0;
    let n = 10_000u64;
    let t = Instant::now();
    for i in 0..n {
        touch(&mut s, format!("/d{}/q-{i:08}", i % DIRS))?;
    }
    let create_with_quota_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    // What a snapshot of this state costs to write and to load (restart).
    let t = Instant::now();
    let bytes = shale_meta::snapshot::encode(&s).map_err(|e| e.to_string())?;
    let encode_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let back = shale_meta::snapshot::decode(&bytes).map_err(|e| e.to_string())?;
    let decode_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    back.validate().map_err(|e| e.to_string())?;
    let validate_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "state snapshot at {files} files: {} MB, encode {encode_ms:.0} ms, decode {decode_ms:.0} ms \
         (of which validate {validate_ms:.0} ms)",
        bytes.len() >> 20
    );
    Ok(SpaceCosts {
        snapshot_create_us,
        first_change_after_snapshot_us,
        change_us,
        snapshot_delete_ms,
        quota_set_ms,
        create_with_quota_us,
    })
}

fn memory(chunks: u64) -> Result<(f64, f64, u64), BoxError> {
    const FILES: u64 = 200_000;
    let cs: u64 = 1 << 20;
    let mut s = MetaState::new(cs, 3).map_err(|e| e.to_string())?;
    s.apply(
        &Command::RegisterChunkserver {
            uuid: "cs".into(),
            address: "127.0.0.1:1".into(),
            host: "h".into(),
            rack: None,
            capacity_bytes: 1 << 50,
        },
        1,
    );
    for d in 0..100 {
        s.apply(
            &Command::Mkdir {
                path: format!("/d{d}"),
                parents: false,
            },
            1,
        );
    }
    let per_file_chunks = chunks.div_ceil(FILES);
    let base = crate::alloc::live_bytes();
    for i in 0..FILES {
        let r = s.apply(
            &Command::Create {
                path: format!("/d{}/file-{i:07}", i % 100),
                overwrite: false,
                replication: None,
                chunk_size_bytes: None,
                holder: 1,
                lease_ms: 60_000,
            },
            2,
        );
        let Reply::Created { file, .. } = r else {
            return Err(format!("create: {r:?}").into());
        };
        s.apply(
            &Command::Complete {
                file,
                holder: 1,
                length: 0,
            },
            2,
        );
    }
    let after_files = crate::alloc::live_bytes();
    // Chunks: a second set of files, each with `per_file_chunks` chunks.
    let mut n_chunks = 0u64;
    let before_chunks = crate::alloc::live_bytes();
    for i in 0..FILES {
        let r = s.apply(
            &Command::Create {
                path: format!("/d{}/big-{i:07}", i % 100),
                overwrite: false,
                replication: None,
                chunk_size_bytes: None,
                holder: 1,
                lease_ms: 60_000,
            },
            3,
        );
        let Reply::Created { file, .. } = r else {
            return Err(format!("create: {r:?}").into());
        };
        for index in 0..per_file_chunks as u32 {
            s.apply(
                &Command::AllocateChunk {
                    file,
                    holder: 1,
                    index,
                    pipeline: vec![NodeId(1)],
                },
                3,
            );
            n_chunks += 1;
        }
        s.apply(
            &Command::Complete {
                file,
                holder: 1,
                length: per_file_chunks * cs,
            },
            3,
        );
    }
    let after_chunks = crate::alloc::live_bytes();
    let per_file = (after_files - base) as f64 / FILES as f64;
    // The chunk files cost a file each too; what is left is the chunks' own cost.
    let per_chunk =
        ((after_chunks - before_chunks) as f64 - per_file * FILES as f64) / n_chunks as f64;
    Ok((per_file, per_chunk, n_chunks))
}

pub async fn run(a: Args) -> Result<(), BoxError> {
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };
    crate::report::print_machine(tmp.path());
    let tls = !a.plaintext;
    let tls_dir = if tls {
        Some(crate::tls::provision(tmp.path(), &[])?)
    } else {
        None
    };
    set_tls(tls_dir)?;
    set_election_ms(a.election_timeout_ms);
    let _ = MASTER_SWITCHES.set(
        [
            a.no_pre_vote.then_some("--no-pre-vote"),
            a.no_lease_reads.then_some("--no-lease-reads"),
        ]
        .into_iter()
        .flatten()
        .collect(),
    );
    println!("meta: {}", if tls { "mutual TLS" } else { "plaintext" });
    let (bytes_per_file, bytes_per_chunk, n_chunks) = memory(a.chunks)?;
    println!("memory: {bytes_per_file:.0} bytes/file, {bytes_per_chunk:.0} bytes/chunk ({n_chunks} chunks)");
    let space = space_costs(a.snapshot_files)?;
    println!(
        "at {} files: snapshot create {:.1} µs, first change of a directory after it {:.0} µs \
         (a plain change {:.0} µs), snapshot delete after every directory changed {:.1} ms, \
         quota set on / {:.1} ms, create+complete under a quota {:.1} µs",
        a.snapshot_files,
        space.snapshot_create_us,
        space.first_change_after_snapshot_us,
        space.change_us,
        space.snapshot_delete_ms,
        space.quota_set_ms,
        space.create_with_quota_us
    );

    let mut procs = Vec::new();
    for id in 1..=3u64 {
        procs.push(Proc::start(
            id,
            &format!("127.0.0.1:{}", crate::procs::stable_port()?),
            &tmp.path().join(format!("m{id}")),
        )?);
    }
    let addrs: Vec<String> = procs.iter().map(|p| p.addr.clone()).collect();
    let mut boot = MasterServiceClient::new(channel(&addrs[0])?);
    boot.bootstrap(BootstrapRequest {
        masters: procs
            .iter()
            .map(|p| MasterInfo {
                id: p.id,
                address: p.addr.clone(),
                voter: true,
                ..Default::default()
            })
            .collect(),
    })
    .await?;
    let client = Client::new(addrs.clone());
    wait_leader(&client).await?;
    client
        .call(|mut c| async move {
            c.mkdir(MkdirRequest {
                request_id: None,
                path: "/b".into(),
                parents: true,
                mode: None,
            })
            .await
        })
        .await?;

    // RPC round trip alone (no Raft): sequential `Status` calls to the leader.
    let mut rtt = Vec::with_capacity(500);
    for _ in 0..500 {
        let t = Instant::now();
        client
            .call(|mut c| async move { c.status(Empty {}).await })
            .await?;
        rtt.push(t.elapsed().as_micros() as u64);
    }
    rtt.sort_unstable();
    let rtt_p50 = rtt[rtt.len() / 2];
    println!("status RPC round trip, 1 client: p50 {rtt_p50} µs");

    // 1 client.
    let one = creates_one_client(&client, a.creates_1, "/b").await?;
    let creates_1 = one.per_s;
    println!("create+complete, 1 client: {one}");

    // 64 clients, 8 connections.
    let pool: Vec<Client> = (0..8).map(|_| Client::new(addrs.clone())).collect();
    let creates_64 = creates_parallel(&pool, a.clients, a.creates_per_client, "/b").await?;
    println!("create+complete, {} clients: {creates_64:.0}/s", a.clients);

    // Stats, linearizable.
    let per = a.stats_per_client;
    let files_per_client = a.creates_per_client.max(1);
    let took = parallel(a.clients, |k| {
        let c = pool[(k % 8) as usize].clone();
        async move {
            for i in 0..per {
                let p = format!("/b/c{k}-{}", i % files_per_client);
                c.call(|mut s| {
                    let p = p.clone();
                    async move {
                        s.stat(PathRequest {
                            path: p,
                            follower_read: false,
                        })
                        .await
                    }
                })
                .await?;
            }
            Ok(())
        }
    })
    .await?;
    let stats_64 = (a.clients * per) as f64 / took.as_secs_f64();
    println!(
        "stat (linearizable), {} clients: {stats_64:.0}/s",
        a.clients
    );

    // A snapshot over RPC (through Raft) of the directory all those files are in.
    let t = Instant::now();
    client
        .call(|mut c| async move {
            c.create_snapshot(SnapshotRequest {
                path: "/b".into(),
                name: "bench".into(),
                request_id: None,
            })
            .await
        })
        .await?;
    let snapshot_rpc_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!("snapshot of /b over RPC: {snapshot_rpc_ms:.1} ms");

    // Failover under load.
    let mut failovers = Vec::new();
    for trial in 0..a.failovers {
        let stop = Arc::new(AtomicBool::new(false));
        let ok_writes = Arc::new(AtomicU64::new(0));
        let load: Vec<_> = (0..8u64)
            .map(|k| {
                let (c, stop, ok) = (pool[k as usize].clone(), stop.clone(), ok_writes.clone());
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if c.touch(format!("/b/f{trial}-{k}-{i}")).await.is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let leader = client
            .call(|mut c| async move { c.status(Empty {}).await })
            .await?
            .leader_address;
        let li = procs
            .iter()
            .position(|p| p.addr == leader)
            .ok_or("leader not among the masters")?;
        let survivors: Vec<String> = addrs.iter().filter(|a| **a != leader).cloned().collect();
        let probe = Client::new(survivors);
        procs[li].kill9();
        let killed = Instant::now();
        probe.touch(format!("/b/probe-{trial}")).await?;
        let ms = killed.elapsed().as_secs_f64() * 1000.0;
        println!("failover trial {trial}: first write {ms:.0} ms after kill -9");
        failovers.push(ms);
        stop.store(true, Ordering::Relaxed);
        for l in load {
            let _ = l.await;
        }
        // Restart the killed master on its address; let it catch up.
        procs[li] = procs[li].again()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let big = if a.load_files > 0 {
        Some(
            scale::run(
                a.load_files,
                a.creates_1,
                a.clients,
                a.creates_per_client,
                &client,
                &pool,
                &mut procs,
            )
            .await?,
        )
    } else {
        None
    };
    let trials: Vec<f64> = failovers.iter().map(|m| r1(*m)).collect();
    failovers.sort_by(f64::total_cmp);
    let p50 = failovers.get(failovers.len() / 2).copied().unwrap_or(0.0);
    let max = failovers.last().copied().unwrap_or(0.0);
    let mut scale_fields = Vec::new();
    if let Some(b) = &big {
        scale_fields = vec![
            ("load_files", json!(b.files)),
            ("load_files_per_s", json!(r1(b.load_per_s))),
            ("elections_during_load", json!(b.elections)),
            ("create_ms_p99_during_load", json!(r1(b.create_ms_p99))),
            ("create_ms_max_during_load", json!(r1(b.create_ms_max))),
            ("creates_per_s_1_at_load", json!(r1(b.one.per_s))),
            ("create_ms_p50_1_at_load", json!(r3(b.one.ms_p50))),
            ("create_ms_p99_1_at_load", json!(r3(b.one.ms_p99))),
            ("create_ms_max_1_at_load", json!(r3(b.one.ms_max))),
            ("creates_per_s_64_at_load", json!(r1(b.creates_per_s_64))),
            ("snapshot_build_s_at_load", json!(b.snapshot_build_s)),
            ("snapshot_frozen_ms_at_load", json!(b.snapshot_frozen_ms)),
            (
                "restart_to_serving_s_at_load",
                json!(r1(b.restart_to_serving_s)),
            ),
            ("stop_s_at_load", json!(r1(b.stop_s))),
            (
                "restart_after_stop_s_at_load",
                json!(r1(b.restart_after_stop_s)),
            ),
            (
                "creates_per_s_1_after_restart_at_load",
                json!(r1(b.one_after_restart.per_s)),
            ),
            (
                "create_ms_max_1_after_restart_at_load",
                json!(r3(b.one_after_restart.ms_max)),
            ),
            (
                "creates_per_s_64_after_restart_at_load",
                json!(r1(b.creates_per_s_64_after_restart)),
            ),
        ];
    }
    let mut fields = vec![
        ("bench", json!("meta")),
        ("tls", json!(tls)),
        ("election_timeout_ms", json!(a.election_timeout_ms)),
        ("pre_vote", json!(!a.no_pre_vote)),
        ("lease_reads", json!(!a.no_lease_reads)),
        ("status_rtt_us_p50", json!(rtt_p50)),
        ("creates_per_s_1", json!(r1(creates_1))),
        ("create_ms_p50_1", json!(r3(one.ms_p50))),
        ("create_ms_p99_1", json!(r3(one.ms_p99))),
        ("creates_per_s_64", json!(r1(creates_64))),
        ("stats_per_s_64", json!(r1(stats_64))),
        ("failover_ms_p50", json!(r1(p50))),
        ("failover_ms_max", json!(r1(max))),
        ("failover_ms_trials", json!(trials)),
        ("bytes_per_chunk", json!(r1(bytes_per_chunk))),
        ("bytes_per_file", json!(r1(bytes_per_file))),
        ("chunks_in_state", json!(n_chunks)),
        ("space_files", json!(a.snapshot_files)),
        (
            "snapshot_create_ms",
            json!(space.snapshot_create_us / 1000.0),
        ),
        ("snapshot_rpc_ms", json!(r1(snapshot_rpc_ms))),
        (
            "first_change_after_snapshot_us",
            json!(r1(space.first_change_after_snapshot_us)),
        ),
        ("change_us", json!(r1(space.change_us))),
        ("snapshot_delete_ms", json!(r1(space.snapshot_delete_ms))),
        ("quota_set_ms", json!(r1(space.quota_set_ms))),
        (
            "create_with_quota_us",
            json!(r1(space.create_with_quota_us)),
        ),
    ];
    fields.extend(scale_fields);
    print_json(fields);
    Ok(())
}
