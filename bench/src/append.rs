//! `shale-bench append`: record append on a local cluster (3 masters, 3 chunkservers, 3
//! replicas, real processes): records/s and latency with 1 and 16 appending clients, and in the
//! same run the baseline: a 4 KiB write + fdatasync loop on the same disk (an acknowledged
//! record costs at least one such round per replica, and its commit one Raft round). After
//! each phase the file's length is checked against the acknowledged records (exactly once).
use crate::e2e::start_cluster;
use crate::report::{pct, print_json, print_machine, r1, r3};
use serde_json::json;
use shale_client::Client;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes per record.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Clients of the second phase.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Where to put the data (default: a temp dir under the current directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Plaintext instead of mutual TLS.
    #[arg(long)]
    plaintext: bool,
}

/// 4 KiB write + fdatasync rounds per second, for `secs`.
fn fsync_per_s(dir: &std::path::Path, secs: f64) -> Result<f64, BoxError> {
    let mut f = std::fs::File::create(dir.join("fsync-baseline"))?;
    let block = vec![7u8; 4096];
    let (t, mut n) = (Instant::now(), 0u64);
    while t.elapsed().as_secs_f64() < secs {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// `clients` clients append for `secs` to `path`: (records/s, latencies in ms, sorted).
async fn phase(
    clients: &[Client],
    path: &str,
    record: &[u8],
    secs: u64,
) -> Result<(f64, Vec<f64>), BoxError> {
    let t = Instant::now();
    let until = t + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in clients {
        let (c, path, record) = (c.clone(), path.to_string(), record.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let s = Instant::now();
                c.append_record(&path, &record).await?;
                lat.push(s.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, shale_client::ClientError>(lat)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let rate = all.len() as f64 / t.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok((rate, all))
}

pub async fn run(a: Args) -> Result<(), BoxError> {
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };
    print_machine(tmp.path());
    let tls = !a.plaintext;
    println!(
        "append: 3 masters + 3 chunkservers ({}), 3 replicas; {}-byte records, 1 then {} clients, {} s each",
        if tls { "TLS" } else { "plaintext" },
        a.record_bytes,
        a.clients,
        a.seconds
    );
    let fsyncs = fsync_per_s(tmp.path(), 3.0)?;
    let cluster = start_cluster(&tmp.path().join("cluster"), 3, &[], &[], tls).await?;
    let config = cluster.config();
    let mut clients = Vec::new();
    for _ in 0..a.clients.max(1) {
        clients.push(Client::connect(&cluster.masters, config.clone()).await?);
    }
    let record: Vec<u8> = (0..a.record_bytes).map(|i| (i % 251) as u8).collect();
    let cpu0 = cluster.server_cpu_s();
    let (rate1, lat1) = phase(&clients[..1], "/append-1", &record, a.seconds).await?;
    let (rate_n, lat_n) = phase(&clients, "/append-n", &record, a.seconds).await?;
    let cpu = cluster.server_cpu_s() - cpu0;
    for (path, n) in [("/append-1", lat1.len()), ("/append-n", lat_n.len())] {
        let len = clients[0].stat(path).await?.length;
        if len != (n * a.record_bytes) as u64 {
            return Err(format!(
                "{path}: {len} bytes for {n} acknowledged records of {} bytes: not exactly once",
                a.record_bytes
            )
            .into());
        }
    }
    let records = (lat1.len() + lat_n.len()) as f64;
    println!(
        "1 client: {:.0} records/s (p50 {:.2} ms, p99 {:.2} ms); {} clients: {:.0} records/s (p50 {:.2} ms, p99 {:.2} ms); 4 KiB write+fdatasync: {:.0}/s",
        rate1,
        pct(&lat1, 0.5),
        pct(&lat1, 0.99),
        a.clients,
        rate_n,
        pct(&lat_n, 0.5),
        pct(&lat_n, 0.99),
        fsyncs
    );
    let n = a.clients.to_string();
    print_json(vec![
        ("bench", json!("append")),
        ("record_bytes", json!(a.record_bytes)),
        ("tls", json!(tls)),
        ("append_records_per_s_1", json!(r1(rate1))),
        ("append_ms_p50_1", json!(r3(pct(&lat1, 0.5)))),
        ("append_ms_p99_1", json!(r3(pct(&lat1, 0.99)))),
        (&format!("append_records_per_s_{n}"), json!(r1(rate_n))),
        (&format!("append_ms_p50_{n}"), json!(r3(pct(&lat_n, 0.5)))),
        (&format!("append_ms_p99_{n}"), json!(r3(pct(&lat_n, 0.99)))),
        (
            "server_cpu_ms_per_record",
            json!(r3(cpu * 1000.0 / records.max(1.0))),
        ),
        ("baseline_fsync_per_s", json!(r1(fsyncs))),
    ]);
    Ok(())
}
