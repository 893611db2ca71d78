//! `shale-bench heal`: 3 masters and 4 chunkservers (64 MiB chunks, 3 replicas), ≥ 1 GiB
//! written, one chunkserver killed; time until every chunk has 3 live replicas again (the
//! re-replication throttle opened up), measured from the moment the master declared the server
//! dead (detection time is reported apart). In the same run, the single-client write of the same
//! bytes is the reference.
use crate::e2e::{mibps, no_progress, pool, start_cluster, Source};
use crate::report::{print_json, print_machine, r1, r3};
use serde_json::json;
use shale_client::Client;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(clap::Args)]
pub struct Args {
    /// Bytes written, MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// A silent chunkserver is declared dead after this long, ms.
    #[arg(long, default_value_t = 3000)]
    dead_after_ms: u64,
    /// Copies one chunkserver takes part in at once (the throttle; high = off).
    #[arg(long, default_value_t = 16)]
    copies_per_server: usize,
    /// Where to put the data (default: a temp dir under the current directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

pub async fn run(a: Args) -> Result<(), BoxError> {
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };
    print_machine(tmp.path());
    let size = a.size_mib << 20;
    let (dead, copies) = (a.dead_after_ms.to_string(), a.copies_per_server.to_string());
    let mut cluster = start_cluster(
        tmp.path(),
        4,
        &["--dead-after-ms", &dead, "--copies-per-server", &copies],
        &[],
        true,
    )
    .await?;
    let client = Client::connect(&cluster.masters, cluster.config()).await?;
    let pool = pool();
    let t = Instant::now();
    client
        .put("/heal", Source::new(&pool, size, 0), true, &no_progress)
        .await?;
    let ref_write = mibps(size, t.elapsed());
    println!("reference: single-client write {ref_write:.1} MiB/s");

    // The chunkserver with the most replicas goes.
    let locs = client.chunk_locations("/heal").await?;
    let mut held: std::collections::HashMap<String, u64> = Default::default();
    for ch in &locs.chunks {
        for r in &ch.replicas {
            *held.entry(r.address.clone()).or_default() += 1;
        }
    }
    let (victim, n_chunks) = held
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(a, n)| (a.clone(), *n))
        .ok_or("no replicas")?;
    let cs = locs.chunk_size;
    let rereplicated = n_chunks * cs;
    let i = cluster
        .chunkservers
        .iter()
        .position(|(_, addr)| *addr == victim)
        .ok_or("victim not found")?;
    let killed = Instant::now();
    cluster.chunkservers[i].0.kill9();
    println!(
        "killed the chunkserver at {victim} ({n_chunks} replicas, {} MiB)",
        rereplicated >> 20
    );
    let deadline = killed + Duration::from_secs(600);
    let mut declared: Option<Instant> = None;
    // (seconds since the kill, % of the victim's replicas re-created), sampled as it heals.
    let mut progress: Vec<(f64, f64)> = Vec::new();
    loop {
        let s = client.status().await?;
        if declared.is_none()
            && s.chunkservers
                .iter()
                .any(|c| c.address == victim && c.state == "dead")
        {
            declared = Some(Instant::now());
        }
        if declared.is_some() {
            let l = client.chunk_locations("/heal").await?;
            let whole = |ch: &shale_proto::metapb::ChunkLocation| {
                ch.replicas
                    .iter()
                    .filter(|r| r.alive && r.address != victim)
                    .count()
                    >= 3
            };
            let healed = l.chunks.iter().filter(|ch| whole(ch)).count();
            // Chunks the victim did not hold were whole all along.
            let victims = n_chunks as usize;
            let pct = 100.0 * healed.saturating_sub(l.chunks.len().saturating_sub(victims)) as f64
                / victims.max(1) as f64;
            let t = killed.elapsed().as_secs_f64();
            if progress.last().is_none_or(|(_, p)| *p != pct) || healed == l.chunks.len() {
                progress.push((r3(t), r1(pct)));
            }
            if healed == l.chunks.len() {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err("healing did not finish in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = Instant::now();
    let declared = declared.ok_or("never declared dead")?;
    let detect_s = declared.duration_since(killed).as_secs_f64();
    let heal_s = done.duration_since(declared).as_secs_f64();
    let heal_mibps = (rereplicated >> 20) as f64 / heal_s;
    println!("detection {detect_s:.2} s, healing {heal_s:.2} s: {heal_mibps:.1} MiB/s");
    print_json(vec![
        ("bench", json!("heal")),
        ("rereplicated_MiB", json!(rereplicated >> 20)),
        ("detect_s", json!(r3(detect_s))),
        ("heal_s", json!(r3(heal_s))),
        ("heal_MiBps", json!(r1(heal_mibps))),
        ("ref_write_MiBps", json!(r1(ref_write))),
        ("heal_ratio", json!(r3(heal_mibps / ref_write))),
        // [seconds since the kill, % healed] pairs: the report draws them as a timeline.
        (
            "heal_progress_pct",
            json!(progress.iter().map(|(t, p)| [*t, *p]).collect::<Vec<_>>()),
        ),
    ]);
    Ok(())
}
