//! `shale-bench sim-cluster`: the real master group (3 processes, fsync on, TLS) driven by
//! `--servers` simulated chunkservers holding `--chunks` × 3 replicas — past what one machine
//! can run for real (1,000 chunkservers, 10 M chunks by default).
//!
//! * The namespace (files of `--chunks-per-file` chunks, every simulated server registered) is
//!   built in this process on the masters' own state machine and written into each master's
//!   fresh data directory as the snapshot of a just-initialized group (`raft::store::seed`),
//!   so the masters start holding it, as after a restart.
//! * Each simulated chunkserver is a task (on a runtime of their own at nice 10: real ones run
//!   on other machines) speaking the real protocol with its own certificate:
//!   it registers (idempotent by uuid), then heartbeats to every master each `--heartbeat-ms`
//!   as a chunkserver does: a full report when the master asks for one (`full_report_needed`,
//!   a few servers at a time), or when the chunkserver's own schedule says so
//!   ([`shale_chunk::server::heartbeat::full_report_due`]), nothing while the master holds no
//!   full report of it (`unreported`), deltas (empty: nothing changes) otherwise. Chunk `c`'s
//!   replicas are on servers `c`, `c + n/3` and `c + 2n/3` mod `n`.
//! * Measured: the time until the leader has every server's full report (every chunkserver
//!   starting within `--start-spread-ms` of the others), the leader's CPU per second under steady heartbeats (minus its idle
//!   CPU measured before the simulated servers start), elections during the run, create
//!   latency through all of it (a probe client, running during the idle measurement too), the
//!   time from `kill -9` of the leader until a
//!   new leader knows every location, and the time until the killed master, restarted, has
//!   every full report again.
use crate::meta::{BoxError, Client, Proc};
use crate::report::{pct, print_json, r1};
use serde_json::json;
use shale_meta::sm::{Command, MetaState, Reply};
use shale_proto::metapb::master_service_client::MasterServiceClient;
use shale_proto::metapb::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(clap::Args)]
pub struct Args {
    /// Simulated chunkservers.
    #[arg(long, default_value_t = 1000)]
    servers: u64,
    /// Chunks in the namespace (3 replicas each).
    #[arg(long, default_value_t = 10_000_000)]
    chunks: u64,
    /// Chunks per file.
    #[arg(long, default_value_t = 10)]
    chunks_per_file: u64,
    /// Seconds of steady heartbeats measured.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// The masters' Raft election timeout, ms (as `shale-bench meta --election-timeout-ms`).
    #[arg(long, default_value_t = crate::meta::ELECTION_MS_DEFAULT)]
    election_timeout_ms: u64,
    /// Heartbeat interval of the simulated chunkservers, ms (the chunkserver's default).
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// The simulated servers start (register, then heartbeat) within this many ms of each
    /// other, as a whole cluster restarted at once does (a chunkserver opens and checks its
    /// store before it registers).
    #[arg(long, default_value_t = 5000)]
    start_spread_ms: u64,
    /// Where to put the masters' data (default: a temp dir under the current directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run the masters and servers in plaintext (default: mutual TLS).
    #[arg(long)]
    plaintext: bool,
}

const DIRS: u64 = 1000;
/// The simulated chunkservers' nice value.
const SIM_NICE: i32 = 10;

/// The servers (indexes `0..n`) holding chunk `c`.
fn holders(c: u64, n: u64) -> [u64; 3] {
    let (o1, o2) = ((n / 3).max(1), (2 * n / 3).max(2));
    [c % n, (c + o1) % n, (c + o2) % n]
}

/// The chunks (ids `1..=chunks`) server `s` of `n` holds: those `c` with `c mod n` in
/// `{s, s - n/3, s - 2n/3}` (mod n).
fn held(s: u64, n: u64, chunks: u64) -> impl Iterator<Item = u64> {
    let (o1, o2) = ((n / 3).max(1), (2 * n / 3).max(2));
    [s, (s + n - o1) % n, (s + n - o2) % n]
        .into_iter()
        .flat_map(move |r| {
            let first = if r == 0 { n } else { r };
            (first..=chunks).step_by(n as usize)
        })
}

fn uuid(s: u64) -> String {
    format!("sim-{s}")
}

/// The namespace: `servers` registered chunkservers (node ids `1..=servers` in order) and
/// `chunks` chunks (ids `1..=chunks`) in complete files.
fn build_state(servers: u64, chunks: u64, per_file: u64, tls: bool) -> Result<MetaState, BoxError> {
    let cs: u64 = 64 << 20;
    let mut s = MetaState::new(cs, 3).map_err(|e| e.to_string())?;
    let ok = |r: Reply, what: &str| -> Result<Reply, BoxError> {
        match r {
            Reply::Err(e) => Err(format!("{what}: {e}").into()),
            r => Ok(r),
        }
    };
    for i in 0..servers {
        let (uuid, address, host) = (uuid(i), "127.0.0.1:9".to_string(), format!("simhost-{i}"));
        let rack = Some(format!("rack-{}", i % 40));
        let capacity_bytes = 1 << 44;
        let cmd = if tls {
            Command::RegisterChunkserverAs {
                principal: uuid.clone(),
                uuid,
                address,
                host,
                rack,
                capacity_bytes,
            }
        } else {
            Command::RegisterChunkserver {
                uuid,
                address,
                host,
                rack,
                capacity_bytes,
            }
        };
        match ok(s.apply(&cmd, 1), "register")? {
            Reply::Server(n) if n.get() == i + 1 => {}
            r => return Err(format!("register {i}: {r:?}").into()),
        }
    }
    ok(
        s.apply(
            &Command::Mkdir {
                path: "/sim".into(),
                parents: false,
            },
            1,
        ),
        "mkdir",
    )?;
    for d in 0..DIRS {
        let path = format!("/sim/d{d}");
        ok(
            s.apply(
                &Command::Mkdir {
                    path,
                    parents: false,
                },
                1,
            ),
            "mkdir",
        )?;
    }
    let mut next = 1u64;
    let mut file_no = 0u64;
    while next <= chunks {
        let n = per_file.min(chunks - next + 1);
        let path = format!("/sim/d{}/f{file_no}", file_no % DIRS);
        let create = Command::Create {
            path,
            overwrite: false,
            replication: None,
            chunk_size_bytes: None,
            holder: 1,
            lease_ms: 600_000,
        };
        let Reply::Created { file, .. } = ok(s.apply(&create, 2), "create")? else {
            return Err("create: no file".into());
        };
        for index in 0..n {
            let pipeline = holders(next, servers)
                .iter()
                .map(|h| shale_proto::NodeId(h + 1))
                .collect();
            let alloc = Command::AllocateChunk {
                file,
                holder: 1,
                index: index as u32,
                pipeline,
            };
            match ok(s.apply(&alloc, 2), "allocate")? {
                Reply::Chunk { id, .. } if id.get() == next => {}
                r => return Err(format!("chunk {next}: {r:?}").into()),
            }
            next += 1;
        }
        let complete = Command::Complete {
            file,
            holder: 1,
            length: n * cs,
        };
        ok(s.apply(&complete, 2), "complete")?;
        file_no += 1;
    }
    Ok(s)
}

/// What every simulated server shares: the cluster's shape, the masters, counters, the stop.
struct Shared {
    n: u64,
    chunks: u64,
    masters: Vec<String>,
    interval: Duration,
    start_spread: Duration,
    beats: AtomicU64,
    failed: AtomicU64,
    full_reports: AtomicU64,
    stop: AtomicBool,
}

/// One simulated chunkserver: registers, then heartbeats to every master until `stop`.
async fn sim_server(s: u64, transport: shale_client::Transport, sh: Arc<Shared>) {
    let (n, chunks, interval) = (sh.n, sh.chunks, sh.interval);
    let (counts, stop) = (&*sh, &sh.stop);
    let chan = |a: &str| -> Option<MasterServiceClient<Channel>> {
        let c = transport
            .channel(a, |e| {
                e.connect_timeout(Duration::from_millis(500))
                    .timeout(Duration::from_secs(5))
            })
            .ok()?;
        Some(MasterServiceClient::new(c))
    };
    // (client, asked for a full report, the master holds one, beats)
    let mut links: Vec<(Option<MasterServiceClient<Channel>>, bool, bool, u64)> = sh
        .masters
        .iter()
        .map(|a| (chan(a), false, false, 0u64))
        .collect();
    tokio::time::sleep(sh.start_spread.mul_f64(fastrand::f64())).await;
    // Register (through whichever master leads).
    let node = 'reg: loop {
        for (c, _, _, _) in links.iter_mut() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(c) = c else { continue };
            let req = RegisterRequest {
                uuid: uuid(s),
                address: "127.0.0.1:9".into(),
                host: format!("simhost-{s}"),
                rack: format!("rack-{}", s % 40),
                capacity_bytes: 1 << 44,
                request_id: None,
            };
            if let Ok(r) = c.register_chunkserver(req).await {
                break 'reg r.into_inner().node_id;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Servers start within one interval of each other, as after a restart of all of them.
    tokio::time::sleep(interval.mul_f64(fastrand::f64())).await;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        // Asked for a full report: at once, as a chunkserver does (`report_now`).
        if !links.iter().any(|l| l.1) {
            tick.tick().await;
        }
        let beats = links
            .iter_mut()
            .map(|(c, needs_full, reported, beats)| async move {
                let Some(c) = c else { return };
                let full = *needs_full
                    || (*reported && shale_chunk::server::heartbeat::full_report_due(node, *beats));
                let chunks = if full {
                    held(s, n, chunks)
                        .map(|c| ReportedChunk {
                            chunk_id: c,
                            version: 1,
                            length: 64 << 20,
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let mut req = tonic::Request::new(HeartbeatRequest {
                    node_id: node,
                    free_bytes: 1 << 43,
                    used_bytes: 1 << 43,
                    full_report: full,
                    chunks,
                    ..HeartbeatRequest::default()
                });
                if let Ok(v) = node.to_string().parse() {
                    req.metadata_mut().insert("shale-node-id", v);
                }
                match c.heartbeat(req).await {
                    Ok(r) => {
                        counts.beats.fetch_add(1, Ordering::Relaxed);
                        if full {
                            counts.full_reports.fetch_add(1, Ordering::Relaxed);
                        }
                        let r = r.into_inner();
                        *needs_full = r.full_report_needed;
                        *reported = !r.unreported;
                        *beats += 1;
                    }
                    Err(_) => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        futures_util::future::join_all(beats).await;
    }
}

async fn status(addr: &str) -> Option<StatusReply> {
    crate::meta::scale::status(addr).await.ok()
}

/// The index (into `addrs`) of the master that says it leads, with its status.
async fn leader(addrs: &[String]) -> Option<(usize, StatusReply)> {
    for (i, a) in addrs.iter().enumerate() {
        if let Some(s) = status(a).await {
            if s.role == "leader" {
                return Some((i, s));
            }
        }
    }
    None
}

/// Polls until `f` holds (every 100 ms, at most `limit`); the time it took.
async fn until<F, Fut>(limit: Duration, what: &str, mut f: F) -> Result<Duration, BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !f().await {
        if t.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(t.elapsed())
}

pub async fn run(a: Args) -> Result<(), BoxError> {
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };
    crate::report::print_machine(tmp.path());
    let (n, tls) = (a.servers.max(3), !a.plaintext);
    let t = Instant::now();
    let names: Vec<String> = (0..n).map(uuid).collect();
    let tls_dir = if tls {
        Some(crate::tls::provision(tmp.path(), &names)?)
    } else {
        None
    };
    crate::meta::set_tls(tls_dir.clone())?;
    crate::meta::set_election_ms(a.election_timeout_ms);
    println!(
        "sim-cluster: {n} servers, {} chunks, {}; certificates in {:.1} s",
        a.chunks,
        if tls { "mutual TLS" } else { "plaintext" },
        t.elapsed().as_secs_f64()
    );

    // The namespace, seeded into three fresh data directories.
    let t = Instant::now();
    let state = build_state(n, a.chunks, a.chunks_per_file.max(1), tls)?;
    let build_s = t.elapsed().as_secs_f64();
    let ports: Vec<u16> = (0..3)
        .map(|_| crate::procs::stable_port())
        .collect::<Result<_, _>>()?;
    let members: BTreeMap<u64, String> = (1..=3u64)
        .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
        .collect();
    let t = Instant::now();
    for id in 1..=3u64 {
        shale_meta::raft::store::seed(&tmp.path().join(format!("m{id}")), &state, &members)?;
    }
    let seed_s = t.elapsed().as_secs_f64();
    drop(state);
    println!("namespace built in {build_s:.1} s, seeded in {seed_s:.1} s");

    let extra = ["--heal-interval-ms", "1000", "--safe-mode-ms", "5000"];
    let mut procs: Vec<Proc> = Vec::new();
    let t = Instant::now();
    for (id, addr) in &members {
        procs.push(Proc::start_with(
            *id,
            addr,
            &tmp.path().join(format!("m{id}")),
            &extra,
        )?);
    }
    let addrs: Vec<String> = members.values().cloned().collect();
    until(Duration::from_secs(300), "a leader", || async {
        leader(&addrs).await.is_some()
    })
    .await?;
    let start_s = t.elapsed().as_secs_f64();
    println!("masters loaded the namespace and elected a leader in {start_s:.1} s");

    // A probe creating files one at a time through the whole run.
    let client = Client::new(addrs.clone());
    let stop_probe = Arc::new(AtomicBool::new(false));
    // (when it started, ms it took)
    let lat: Arc<Mutex<Vec<(Instant, f64)>>> = Arc::default();
    let probe = {
        let (c, stop, lat) = (client.clone(), stop_probe.clone(), lat.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if c.touch(format!("/sim/probe-{i}")).await.is_ok() {
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    lat.lock().map(|mut l| l.push((t, ms))).ok();
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let term0 = leader(&addrs).await.ok_or("no leader")?.1.term;
    // The leader's CPU with the probe and no chunkserver at all.
    let cpu = |p: &Proc| crate::e2e::cpu_s(&format!("/proc/{}/stat", p.pid()));
    let (li, _) = leader(&addrs).await.ok_or("no leader")?;
    let c0 = cpu(&procs[li]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_ms_per_s = (cpu(&procs[li]) - c0) * 1000.0 / 5.0;

    // Every simulated chunkserver starts at once.
    let sh = Arc::new(Shared {
        n,
        chunks: a.chunks,
        masters: addrs.clone(),
        interval: Duration::from_millis(a.heartbeat_ms.max(50)),
        start_spread: Duration::from_millis(a.start_spread_ms),
        beats: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        full_reports: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let (counts, stop) = (&*sh, &sh.stop);
    // The simulated servers run on a runtime of their own at nice 10: real chunkservers run on
    // other machines, so the two cores here go to the masters (the system measured) first.
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sim-chunkserver")
        .on_thread_start(|| {
            // SAFETY: a plain system call on the starting thread (nice is per thread on Linux).
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, SIM_NICE);
            }
        })
        .enable_all()
        .build()?;
    let mut sims = Vec::new();
    for s in 0..n {
        let transport = crate::tls::server(
            tls_dir.as_deref(),
            shale_client::Role::Chunkserver,
            &uuid(s),
        )?;
        sims.push(sim_rt.spawn(sim_server(s, transport, sh.clone())));
    }
    let all_reported = until(Duration::from_secs(600), "every full report", || async {
        leader(&addrs)
            .await
            .is_some_and(|(_, s)| s.unreported == 0 && s.chunkservers.len() as u64 >= n)
    })
    .await?;
    println!(
        "every chunkserver's full report at the leader {:.1} s after they all started",
        all_reported.as_secs_f64()
    );

    // Steady heartbeats.
    let (li, s0) = leader(&addrs).await.ok_or("no leader")?;
    let (c0, b0, f0) = (
        cpu(&procs[li]),
        counts.beats.load(Ordering::Relaxed),
        counts.full_reports.load(Ordering::Relaxed),
    );
    let followers_c0: Vec<f64> = procs.iter().map(cpu).collect();
    tokio::time::sleep(Duration::from_secs(a.secs)).await;
    let secs = a.secs as f64;
    let leader_ms_per_s = (cpu(&procs[li]) - c0) * 1000.0 / secs;
    let heartbeat_cpu = (leader_ms_per_s - idle_ms_per_s).max(0.0);
    let others_ms_per_s: Vec<f64> = procs
        .iter()
        .zip(&followers_c0)
        .map(|(p, c)| (cpu(p) - c) * 1000.0 / secs)
        .collect();
    let beats_per_s = (counts.beats.load(Ordering::Relaxed) - b0) as f64 / secs;
    let fulls_per_s = (counts.full_reports.load(Ordering::Relaxed) - f0) as f64 / secs;
    let (_, s1) = leader(&addrs).await.ok_or("no leader")?;
    let steady_elections = s1.term.saturating_sub(s0.term);
    println!(
        "steady: leader CPU {leader_ms_per_s:.0} ms/s ({idle_ms_per_s:.0} idle) for \
         {beats_per_s:.0} heartbeats/s ({fulls_per_s:.1} full reports/s); every master: \
         {others_ms_per_s:.0?} ms/s; under-replicated {}, missing {}",
        s1.under_replicated, s1.missing
    );

    // Failover: how soon a new leader knows where every replica is.
    let term_before = s1.term;
    let killed = Instant::now();
    procs[li].kill9();
    let others: Vec<String> = addrs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != li)
        .map(|(_, a)| a.clone())
        .collect();
    until(
        Duration::from_secs(120),
        "a new leader knowing every location",
        || async {
            leader(&others)
                .await
                .is_some_and(|(_, s)| s.unreported == 0 && s.term > term_before)
        },
    )
    .await?;
    let known_after_failover = killed.elapsed().as_secs_f64();
    let (_, s2) = leader(&others).await.ok_or("no leader")?;
    println!(
        "failover: a new leader knowing every location {known_after_failover:.2} s after kill -9 \
         (missing {}, under-replicated {}; at risk: {:?})",
        s2.missing,
        s2.under_replicated,
        s2.at_risk
            .iter()
            .take(3)
            .map(|r| (r.path.clone(), r.live_replicas, r.target))
            .collect::<Vec<_>>()
    );
    // Nothing was lost: the new leader's healer must find every chunk whole.
    let whole = until(Duration::from_secs(60), "no chunk at risk", || async {
        leader(&others)
            .await
            .is_some_and(|(_, s)| s.under_replicated == 0 && s.missing == 0)
    })
    .await?;
    println!(
        "every chunk whole at the new leader {:.2} s later",
        whole.as_secs_f64()
    );
    // The killed master back: every server's full report again.
    let restarted = Instant::now();
    let (id, addr) = (procs[li].id, addrs[li].clone());
    procs[li] = Proc::start_with(id, &addr, &tmp.path().join(format!("m{id}")), &extra)?;
    until(
        Duration::from_secs(600),
        "the restarted master's reports",
        || async {
            status(&addr).await.is_some_and(|s| {
                s.unreported == 0 && s.chunkservers.len() as u64 >= n && s.applied_index > 0
            })
        },
    )
    .await?;
    let restart_reported = restarted.elapsed().as_secs_f64();
    let (_, s3) = leader(&addrs).await.ok_or("no leader")?;
    let elections_after = s3.term.saturating_sub(s2.term);
    println!(
        "the killed master restarted: every full report {restart_reported:.1} s later; \
         elections meanwhile: {elections_after}"
    );
    stop.store(true, Ordering::Relaxed);
    stop_probe.store(true, Ordering::Relaxed);
    for s in sims {
        s.abort();
    }
    sim_rt.shutdown_background();
    let _ = probe.await;
    // Creates started outside the forced failover (from the kill until a new leader knew
    // every location): what heartbeats and reports cost a user.
    let failover = killed..killed + Duration::from_secs_f64(known_after_failover);
    let mut l: Vec<f64> = lat
        .lock()
        .map_err(|_| "poisoned")?
        .iter()
        .filter(|(t, ms)| {
            let end = *t + Duration::from_secs_f64(ms / 1000.0);
            end < failover.start || *t > failover.end
        })
        .map(|(_, ms)| *ms)
        .collect();
    l.sort_by(f64::total_cmp);
    let (p50, p99, max) = (pct(&l, 0.5), pct(&l, 0.99), pct(&l, 1.0));
    let elections = (term_before - term0) + elections_after;
    println!(
        "probe creates (outside the forced failover): {} ok, p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; elections \
         besides the forced one: {elections}; heartbeats failed: {}",
        l.len(),
        counts.failed.load(Ordering::Relaxed)
    );
    print_json(vec![
        ("bench", json!("sim-cluster")),
        ("tls", json!(tls)),
        ("election_timeout_ms", json!(a.election_timeout_ms)),
        ("servers", json!(n)),
        ("chunks", json!(a.chunks)),
        ("replicas", json!(a.chunks * 3)),
        ("namespace_build_s", json!(r1(build_s))),
        ("masters_start_s", json!(r1(start_s))),
        ("leader_idle_cpu_ms_per_s", json!(r1(idle_ms_per_s))),
        (
            &format!("heartbeat_cpu_ms_per_s_{n}"),
            json!(r1(heartbeat_cpu)),
        ),
        ("leader_cpu_ms_per_s", json!(r1(leader_ms_per_s))),
        ("heartbeats_per_s", json!(r1(beats_per_s))),
        ("full_reports_per_s", json!(r1(fulls_per_s))),
        ("all_reported_s", json!(r1(all_reported.as_secs_f64()))),
        (
            "locations_known_s_after_failover",
            json!(r1(known_after_failover)),
        ),
        ("restarted_master_reported_s", json!(r1(restart_reported))),
        ("elections_during_run", json!(elections)),
        ("steady_elections", json!(steady_elections)),
        ("probe_create_ms_p50", json!(r1(p50))),
        ("probe_create_ms_p99", json!(r1(p99))),
        ("probe_create_ms_max", json!(r1(max))),
        (
            "heartbeats_failed",
            json!(counts.failed.load(Ordering::Relaxed)),
        ),
    ]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk is held by exactly three distinct servers, and `held` lists exactly the
    /// chunks `holders` puts on each server.
    #[test]
    fn placement_is_consistent() {
        for n in [3u64, 4, 7, 1000] {
            let chunks = 5000;
            let mut count = vec![0u32; chunks as usize + 1];
            for s in 0..n {
                for c in held(s, n, chunks) {
                    assert!(holders(c, n).contains(&s), "n {n} s {s} c {c}");
                    count[c as usize] += 1;
                }
            }
            for c in 1..=chunks {
                let h = holders(c, n);
                assert!(h[0] != h[1] && h[1] != h[2] && h[0] != h[2]);
                assert_eq!(count[c as usize], 3, "n {n} c {c}");
            }
        }
    }
}
