//! One torture run: start the cluster, run the clients while the nemesis injects faults, heal,
//! then check — (a) the history is linearizable, (b) every read returned whole writes and every
//! file reads back, (c) within a bound after the faults every chunk of every file has its full
//! replica count and every replica holds exactly the written bytes, (d) no server crashed on its
//! own or logged a panic.
use crate::appends;
use crate::cluster::Cluster;
use crate::linear::{self, Verdict};
use crate::model::{Input, Output};
use crate::nemesis;
use crate::workload::{self, History};
use shale_client::{Client, ClientConfig, Transport};
use shale_proto::pb::chunk_service_client::ChunkServiceClient;
use shale_proto::pb::{ChunkRef, ReadChunkRequest};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `shale` binary.
    pub shale: PathBuf,
    /// A folder for data and logs.
    pub dir: PathBuf,
    /// How long the faults go on.
    pub duration: Duration,
    pub seed: u64,
    pub clients: usize,
    /// Keys (file names) the clients share (≤ 61: `workload::DIRS` directory names come after).
    pub keys: usize,
    pub chunkservers: usize,
    /// How long the cluster may take to heal after the faults.
    pub heal_within: Duration,
    /// Extra flags for every master.
    pub master_extra: Vec<String>,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub mode: String,
    pub faults: u64,
    pub ops: u64,
    pub ok_ops: u64,
    pub unknown_ops: u64,
    pub failed_ops: u64,
    pub anomalies: Vec<String>,
    pub bytes_lost: u64,
    pub checker: String,
    pub heal_s: f64,
    /// Records acknowledged to the appenders (see `appends`).
    pub appended: u64,
}

impl Report {
    /// The run's one JSON line.
    pub fn json(&self, seed: u64, runs: u64) -> serde_json::Value {
        serde_json::json!({
            "bench": "torture",
            "runs": runs,
            "mode": self.mode,
            "faults": self.faults,
            "ops": self.ops,
            "ok_ops": self.ok_ops,
            "unknown_ops": self.unknown_ops,
            "failed_ops": self.failed_ops,
            "anomalies": self.anomalies.len(),
            "bytes_lost": self.bytes_lost,
            "checker": self.checker,
            "heal_s": (self.heal_s * 10.0).round() / 10.0,
            "appended": self.appended,
            "seed": seed,
        })
    }
}

fn config(transport: &Transport) -> ClientConfig {
    ClientConfig {
        transport: transport.clone(),
        call_timeout: Duration::from_secs(5),
        retry_for: Duration::from_secs(20),
        connect_within: Duration::from_secs(2),
        ..ClientConfig::default()
    }
}

async fn connect(
    transport: &Transport,
    masters: &[String],
    within: Duration,
) -> Result<Client, String> {
    let t0 = Instant::now();
    loop {
        match Client::connect(masters, config(transport)).await {
            Ok(c) => return Ok(c),
            Err(e) if t0.elapsed() > within => return Err(format!("no cluster: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Problems with the stored copies of the file at key `k` holding write `v`: a chunk with fewer
/// than its replication of live replicas, or a replica whose bytes differ.
async fn replica_problems(
    transport: &Transport,
    c: &Client,
    k: usize,
    v: u64,
) -> Result<Vec<String>, String> {
    let p = workload::path(k);
    let st = c.stat(&p).await.map_err(|e| e.to_string())?;
    let locs = c.chunk_locations(&p).await.map_err(|e| e.to_string())?;
    let want = workload::content(v);
    let mut out = Vec::new();
    for ch in &locs.chunks {
        let live: Vec<_> = ch.replicas.iter().filter(|r| r.alive).collect();
        if live.len() < st.replication as usize {
            out.push(format!(
                "{p} chunk {}: {} of {} live replicas",
                ch.index,
                live.len(),
                st.replication
            ));
        }
        let start = u64::from(ch.index) * locs.chunk_size;
        let end = (start + locs.chunk_size).min(locs.length);
        for r in live {
            let mut cs = ChunkServiceClient::new(transport.channel(&r.address, |e| e)?)
                .max_decoding_message_size(8 << 20);
            let read = async {
                let mut s = cs
                    .read_chunk(ReadChunkRequest {
                        chunk: Some(ChunkRef {
                            chunk_id: ch.chunk_id,
                            version: ch.version,
                        }),
                        offset: 0,
                        length: end - start,
                        to_end: false,
                        token: ch.token.clone(),
                    })
                    .await?
                    .into_inner();
                let mut got = Vec::new();
                while let Some(f) = s.message().await? {
                    got.extend_from_slice(&f.data);
                }
                Ok::<_, tonic::Status>(got)
            };
            match tokio::time::timeout(Duration::from_secs(10), read).await {
                Ok(Ok(got)) if got[..] == want[start as usize..end as usize] => {}
                Ok(Ok(got)) => out.push(format!(
                    "{p} chunk {} on node {}: {} bytes that differ from the written ones",
                    ch.index,
                    r.node_id,
                    got.len()
                )),
                Ok(Err(s)) => out.push(format!(
                    "{p} chunk {} on node {}: {:?} {}",
                    ch.index,
                    r.node_id,
                    s.code(),
                    s.message()
                )),
                Err(_) => out.push(format!(
                    "{p} chunk {} on node {}: read timed out",
                    ch.index, r.node_id
                )),
            }
        }
    }
    Ok(out)
}

/// Runs once; `Err` only when the cluster could not be set up at all.
pub async fn run(cfg: &Config) -> Result<Report, String> {
    let mut cluster = Cluster::start(
        &cfg.shale,
        &cfg.dir,
        cfg.chunkservers,
        cfg.seed,
        &cfg.master_extra,
    )?;
    let mut r = Report {
        mode: match &cluster.net.fallback {
            None => "namespaces".into(),
            Some(why) => format!("loopback ({why})"),
        },
        ..Report::default()
    };
    println!(
        "torture: seed {}, {} hosts, mode {}",
        cfg.seed,
        cluster.servers.len(),
        r.mode
    );
    let masters = cluster.masters();
    let transport = cluster.transport()?;
    let admin = connect(&transport, &masters, Duration::from_secs(60)).await?;
    let t0 = Instant::now();
    loop {
        let alive = admin
            .status()
            .await
            .map(|s| s.chunkservers.iter().filter(|c| c.state == "alive").count())
            .unwrap_or(0);
        if alive >= cfg.chunkservers {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(format!("only {alive} chunkservers came up"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for d in [workload::DIR, appends::DIR] {
        admin.mkdir(d, true).await.map_err(|e| e.to_string())?;
    }

    // Who leads, as seen from the harness (the nemesis aims at it half the time).
    let leader: Arc<Mutex<Option<usize>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (leader, stop, admin, masters) =
            (leader.clone(), stop.clone(), admin.clone(), masters.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Ok(s)) =
                    tokio::time::timeout(Duration::from_secs(2), admin.status()).await
                {
                    let i = masters.iter().position(|m| *m == s.leader_address);
                    *leader.lock().unwrap_or_else(|p| p.into_inner()) = i;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let h = History::new();
    let next_value = Arc::new(AtomicU64::new(1));
    let mut clients = Vec::new();
    for i in 0..cfg.clients {
        let c = connect(&transport, &masters, Duration::from_secs(30)).await?;
        let (h, nv, stop) = (h.clone(), next_value.clone(), stop.clone());
        let (keys, seed) = (cfg.keys, cfg.seed.wrapping_add(1 + i as u64));
        clients.push(tokio::spawn(workload::client_loop(
            c, h, i, keys, seed, nv, stop,
        )));
    }
    // Two record appenders on one append file beside them.
    let acks: appends::Acks = Default::default();
    let mut appenders = Vec::new();
    for a in 0..2u64 {
        let c = connect(&transport, &masters, Duration::from_secs(30)).await?;
        appenders.push(tokio::spawn(appends::appender(
            c,
            a,
            stop.clone(),
            acks.clone(),
        )));
    }
    let mut log = nemesis::Log::default();
    let until = Instant::now() + cfg.duration;
    let l2 = leader.clone();
    nemesis::run(
        &mut cluster,
        cfg.seed,
        until,
        move || *l2.lock().unwrap_or_else(|p| p.into_inner()),
        &mut log,
    )
    .await;
    r.faults = log.faults;
    // A little more load on the healed cluster, then the clients stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients.into_iter().chain(appenders) {
        let _ = c.await;
    }
    let _ = watcher.await;

    // (c) healing: every file whole on all its replicas within the bound.
    let healed_at = Instant::now();
    let final_reader = connect(&transport, &masters, Duration::from_secs(30)).await?;
    let mut problems;
    loop {
        problems = Vec::new();
        for k in 0..cfg.keys {
            let mut buf = Vec::new();
            match final_reader
                .get(&workload::path(k), &mut buf, &|_| {})
                .await
            {
                Ok(_) => match workload::decode(&buf) {
                    Ok(v) => match replica_problems(&transport, &final_reader, k, v).await {
                        Ok(p) => problems.extend(p),
                        Err(e) => problems.push(format!("{}: {e}", workload::path(k))),
                    },
                    Err(why) => problems.push(format!("{}: {why}", workload::path(k))),
                },
                Err(shale_client::ClientError::NotFound(_)) => {}
                Err(e) => problems.push(format!("{}: {e}", workload::path(k))),
            }
        }
        if problems.is_empty() || healed_at.elapsed() > cfg.heal_within {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    r.heal_s = healed_at.elapsed().as_secs_f64();
    // The append file: exactly once (read with retries while the cluster settles).
    let acks = acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    r.appended = acks.len() as u64;
    let mut read = Err(String::new());
    for _ in 0..10 {
        let mut buf = Vec::new();
        read = final_reader
            .get(appends::LOG, &mut buf, &|_| {})
            .await
            .map(|_| buf)
            .map_err(|e| e.to_string());
        if read.is_ok() || acks.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    match read {
        Ok(bytes) => r.anomalies.extend(appends::check(&bytes, &acks)),
        Err(e) if !acks.is_empty() => r.anomalies.push(format!(
            "{}: unreadable after the faults: {e}",
            appends::LOG
        )),
        Err(_) => {}
    }
    for p in &problems {
        r.anomalies.push(format!(
            "not healed {:.0?} after the faults: {p}",
            cfg.heal_within
        ));
        if p.contains("no replica could be read") {
            if let Some(k) = (0..cfg.keys).find(|k| p.starts_with(&workload::path(*k))) {
                if let Ok(st) = final_reader.stat(&workload::path(k)).await {
                    r.bytes_lost += st.length;
                }
            }
        }
    }
    // The final state, as reads in the history.
    for k in 0..cfg.keys {
        workload::perform(
            &final_reader,
            &h,
            cfg.clients,
            cfg.keys,
            Input::Get { key: k },
            Duration::from_secs(30),
        )
        .await;
    }
    workload::perform(
        &final_reader,
        &h,
        cfg.clients,
        cfg.keys,
        Input::Ls,
        Duration::from_secs(30),
    )
    .await;

    // Good requests refused as invalid.
    for x in h.refused.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        r.anomalies
            .push(format!("a well-formed request refused: {x}"));
    }
    // (b) reads of damaged bytes.
    for c in h.corrupt.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        r.anomalies.push(format!("corrupt read: {c}"));
    }
    // (d) crashes and panics.
    nemesis::reap(&mut cluster, &mut log, Instant::now());
    for c in &log.crashes {
        r.anomalies.push(format!("crash: {c}"));
    }
    for p in cluster.panics() {
        r.anomalies.push(format!("panic: {p}"));
    }
    // (a) linearizability.
    let ops = h.ops();
    r.ops = ops.len() as u64 + h.failed.load(Ordering::Relaxed);
    r.unknown_ops = ops.iter().filter(|o| o.output == Output::Unknown).count() as u64;
    r.ok_ops = ops.len() as u64 - r.unknown_ops;
    r.failed_ops = h.failed.load(Ordering::Relaxed);
    for (why, (n, first)) in h.failures.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        println!("failed (not in the history): {n:>6}  {why}  (first: {first})");
    }
    let keys = cfg.keys;
    let verdict = tokio::task::spawn_blocking(move || {
        let v = linear::check(&ops, keys + workload::DIRS, 50_000_000);
        (v, ops)
    })
    .await
    .map_err(|e| e.to_string())?;
    r.checker = match &verdict.0 {
        Verdict::Linearizable => "linearizable".into(),
        Verdict::Violation { op, linearized, of } => {
            let o = &verdict.1[*op];
            r.anomalies.push(format!(
                "not linearizable: no order explains op {op} (client {}, {:?} → {:?}, called at {:.3}s, returned at {}); the best order placed {linearized} of {of} operations",
                o.client,
                o.input,
                o.output,
                o.call as f64 / 1e9,
                o.ret.map_or("never".to_string(), |t| format!("{:.3}s", t as f64 / 1e9))
            ));
            "violation".into()
        }
        Verdict::GaveUp { steps } => format!("gave up after {steps} steps"),
    };
    Ok(r)
}
