//! `shale-bench meta`, the scale phase: the namespace grown to `--load-files` empty files
//! through `Batch` calls (8 loaders, 1,000 creates then 1,000 completes per pair of calls),
//! while 8 clients create files one at a time beside them (their latencies are what a user
//! feels while the namespace grows and snapshots are built) and the term is watched
//! (elections); then one client's create rate and latencies and the 64-client create rate at
//! that size, each master's last snapshot build, and the time from `kill -9` of every master
//! to a successful create after all three restart (snapshot load, log replay, election); then
//! a planned restart (SIGTERM: each master saves a snapshot) and the create rates again on the
//! namespace as loaded at start.
use super::{creates_one_client, creates_parallel, parallel, BoxError, Client, OneClient, Proc};
use shale_proto::metapb::batch_item::Op;
use shale_proto::metapb::master_service_client::MasterServiceClient;
use shale_proto::metapb::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Scale {
    pub files: u64,
    pub load_per_s: f64,
    pub elections: u64,
    pub create_ms_p99: f64,
    pub create_ms_max: f64,
    /// One client alone at that size (the loaders done).
    pub one: OneClient,
    pub creates_per_s_64: f64,
    pub snapshot_build_s: f64,
    pub snapshot_frozen_ms: f64,
    pub restart_to_serving_s: f64,
    /// Stopping every master with SIGTERM (each saves a snapshot), then serving again.
    pub stop_s: f64,
    pub restart_after_stop_s: f64,
    /// After the planned restart: the namespace loaded from snapshots at start, with no bulk
    /// load's builds pending (one client, then the concurrent clients, in a 10,000-entry
    /// directory).
    pub one_after_restart: OneClient,
    pub creates_per_s_64_after_restart: f64,
}

const LOADERS: u64 = 8;
const PER_CALL: u64 = 1000;

async fn batch(c: &Client, items: Vec<BatchItem>) -> Result<BatchReply, BoxError> {
    c.call(|mut s| {
        let items = items.clone();
        async move { s.batch(BatchRequest { items }).await }
    })
    .await
}

/// Creates and completes files `from..to` of loader `k` under `/big`.
async fn load(c: Client, k: u64, from: u64, to: u64) -> Result<(), BoxError> {
    let mut i = from;
    while i < to {
        let n = PER_CALL.min(to - i);
        // Request ids, so that a retried call is answered as the first time (a master keeps
        // a session's last 256 replies: a fresh session per 256 items).
        let base = fastrand::u64(1 << 32..u64::MAX / 2);
        let rid = |x: u64| {
            Some(RequestId {
                client_id: base + x / 256,
                seq: x % 256 + 1,
            })
        };
        let creates = (i..i + n)
            .map(|j| BatchItem {
                op: Some(Op::Create(CreateRequest {
                    path: format!("/big/d{}/l{k}-{j}", j % 1000),
                    client_id: 1,
                    lease_ms: 600_000,
                    request_id: rid(j - i),
                    ..CreateRequest::default()
                })),
            })
            .collect();
        let created = batch(&c, creates).await?;
        let completes = created
            .results
            .iter()
            .filter(|r| r.code == 0)
            .enumerate()
            .map(|(x, r)| BatchItem {
                op: Some(Op::Complete(CompleteRequest {
                    file: r.inode,
                    client_id: 1,
                    length: 0,
                    request_id: rid(PER_CALL + x as u64),
                    ..CompleteRequest::default()
                })),
            })
            .collect();
        let done = batch(&c, completes).await?;
        if let Some(bad) = created
            .results
            .iter()
            .chain(&done.results)
            .find(|r| r.code != 0)
        {
            return Err(format!("load: {}", bad.message).into());
        }
        i += n;
    }
    Ok(())
}

pub(crate) async fn status(addr: &str) -> Result<StatusReply, BoxError> {
    let mut c = MasterServiceClient::new(super::channel(addr)?);
    Ok(c.status(Empty {}).await?.into_inner())
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    files: u64,
    creates_1: u64,
    clients: u64,
    per_client: u64,
    client: &Client,
    pool: &[Client],
    procs: &mut [Proc],
) -> Result<Scale, BoxError> {
    let addrs: Vec<String> = procs.iter().map(|p| p.addr.clone()).collect();
    let term_before = status(&addrs[0]).await?.term;
    let mkdirs: Vec<BatchItem> = (0..1000)
        .map(|d| BatchItem {
            op: Some(Op::Mkdir(MkdirRequest {
                path: format!("/big/d{d}"),
                parents: true,
                ..MkdirRequest::default()
            })),
        })
        .collect();
    batch(client, mkdirs).await?;
    // One-at-a-time creates beside the load: what a user feels meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Vec::<f64>::new()));
    let watchers: Vec<_> = (0..8u64)
        .map(|k| {
            let (c, stop, lat) = (
                pool[k as usize % pool.len()].clone(),
                stop.clone(),
                lat.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if c.touch(format!("/big/w{k}-{i}")).await.is_ok() {
                        let ms = t.elapsed().as_secs_f64() * 1000.0;
                        lat.lock().map(|mut l| l.push(ms)).ok();
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let per = files / LOADERS;
    let took = parallel(LOADERS, |k| {
        let c = pool[k as usize % pool.len()].clone();
        load(c, k, k * per, (k + 1) * per)
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    for w in watchers {
        let _ = w.await;
    }
    let loaded = per * LOADERS;
    let load_per_s = loaded as f64 / took.as_secs_f64();
    let mut l = lat.lock().map_err(|_| "poisoned")?.clone();
    l.sort_by(f64::total_cmp);
    let create_ms_p99 = l.get(l.len() * 99 / 100).copied().unwrap_or(0.0);
    let create_ms_max = l.last().copied().unwrap_or(0.0);
    let mut term_after = term_before;
    let (mut build_ms, mut frozen_ms) = (0u64, 0u64);
    for a in &addrs {
        let s = status(a).await?;
        term_after = term_after.max(s.term);
        build_ms = build_ms.max(s.snapshot_build_ms);
        frozen_ms = frozen_ms.max(s.snapshot_frozen_ms);
    }
    println!(
        "scale: {loaded} files loaded at {load_per_s:.0}/s; one-at-a-time creates meanwhile: \
         p99 {create_ms_p99:.1} ms, max {create_ms_max:.1} ms ({} of them); elections: {}; \
         last snapshot build {build_ms} ms (state locked {frozen_ms} ms)",
        l.len(),
        term_after - term_before
    );
    // One client alone at this size: what a create costs once the namespace is large.
    let one = creates_one_client(client, creates_1, "/big").await?;
    println!("create+complete, 1 client, at {loaded} files: {one}");
    // The 64-client create rate at this size.
    let creates_per_s_64 = creates_parallel(pool, clients, per_client, "/big").await?;
    println!("create+complete, {clients} clients, at {loaded} files: {creates_per_s_64:.0}/s");
    // Every master killed and restarted: time to the first successful create.
    for p in procs.iter_mut() {
        p.kill9();
    }
    let killed = Instant::now();
    for p in procs.iter_mut() {
        *p = p.again()?;
    }
    let restart_to_serving_s = serving(&addrs, killed, "after-restart").await?;
    println!(
        "restart of every master at {loaded} files: serving after {restart_to_serving_s:.1} s"
    );
    // A planned restart: every master stopped with SIGTERM (each saves what it applied since
    // its last snapshot), then started again.
    let stopping = Instant::now();
    std::thread::scope(|s| {
        for p in procs.iter_mut() {
            s.spawn(move || p.stop(Duration::from_secs(120)));
        }
    });
    let stop_s = stopping.elapsed().as_secs_f64();
    let started = Instant::now();
    for p in procs.iter_mut() {
        *p = p.again()?;
    }
    let restart_after_stop_s = serving(&addrs, started, "after-stop").await?;
    println!(
        "planned restart at {loaded} files: stopped in {stop_s:.1} s, serving {restart_after_stop_s:.1} s after the start"
    );
    // The size as a namespace loaded at start has it (the metadata issue's "pre-loaded, e.g.
    // through a snapshot installed at start"): no builds left over from the bulk load, but
    // builds as the creates accrue, as on any master. Fresh connections, to a directory of
    // the load (its names are `l…`, these `one-…` and `c…`).
    let fresh: Vec<Client> = (0..pool.len().max(1))
        .map(|_| Client::new(addrs.clone()))
        .collect();
    let one_after_restart = creates_one_client(&fresh[0], creates_1, "/big/d1").await?;
    let creates_per_s_64_after_restart =
        creates_parallel(&fresh, clients, per_client, "/big/d1").await?;
    println!(
        "after the planned restart, at {loaded} files: 1 client {one_after_restart}, \
         {clients} clients {creates_per_s_64_after_restart:.0}/s"
    );
    Ok(Scale {
        files: loaded,
        load_per_s,
        elections: term_after - term_before,
        create_ms_p99,
        create_ms_max,
        one,
        creates_per_s_64,
        snapshot_build_s: build_ms as f64 / 1000.0,
        snapshot_frozen_ms: frozen_ms as f64,
        restart_to_serving_s,
        stop_s,
        restart_after_stop_s,
        one_after_restart,
        creates_per_s_64_after_restart,
    })
}

/// Seconds from `since` to the first create that succeeds on the masters at `addrs` (new
/// paths under `/big` named by `tag`), within 300 s.
async fn serving(addrs: &[String], since: Instant, tag: &str) -> Result<f64, BoxError> {
    let fresh = Client::new(addrs.to_vec());
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut failures, mut last_error) = (0u32, String::new());
    loop {
        // A new path each time: a create whose complete failed holds its path under
        // construction until its lease (60 s) expires, which is not what is measured here.
        match fresh.touch(format!("/big/{tag}-{failures}")).await {
            Ok(()) => break,
            Err(e) => {
                failures += 1;
                last_error = e.to_string();
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "masters did not serve within 300 s of a restart (last error: {last_error})"
            )
            .into());
        }
    }
    let s = since.elapsed().as_secs_f64();
    if failures > 0 {
        println!("  ({failures} failed creates before serving; the last said: {last_error:?})");
    }
    Ok(s)
}
