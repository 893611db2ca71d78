//! `shale-bench torture`: the fault harness (`torture/`) as a long run: `--minutes` of faults,
//! cut into runs of `--run-minutes` on fresh clusters (seeds `--seed`, `--seed`+1, …) so that each
//! history stays checkable. Prints every anomaly with the seed that reproduces it, and one JSON
//! line.
use crate::report;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Total minutes of faults.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Minutes of one run (a fresh cluster each).
    #[arg(long, default_value_t = 5.0)]
    pub run_minutes: f64,
    /// Seed of the first run (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5)]
    pub clients: usize,
    /// File names the clients share (≤ 61; three directory names come beside them).
    #[arg(long, default_value_t = 8)]
    pub keys: usize,
    #[arg(long, default_value_t = 4)]
    pub chunkservers: usize,
    /// The `shale` binary (default: beside this one, built if missing).
    #[arg(long)]
    pub shale: Option<PathBuf>,
    /// Keep each run's data and logs here (default: a temp dir, removed after a clean run).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The `shale` binary: given, beside this executable, or built.
fn shale_binary(given: Option<PathBuf>) -> Result<PathBuf, Box<dyn std::error::Error>> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let beside = me.with_file_name("shale");
    if !beside.exists() {
        let release = me.parent().is_some_and(|d| d.ends_with("release"));
        println!("building the shale binary (cargo build -p shale)…");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-p", "shale", "--bin", "shale"]);
        if release {
            cmd.arg("--release");
        }
        if !cmd.status()?.success() || !beside.exists() {
            return Err(format!(
                "no shale binary at {} (build it, or pass --shale)",
                beside.display()
            )
            .into());
        }
    }
    Ok(beside)
}

pub async fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    let shale = shale_binary(a.shale)?;
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let runs = (a.minutes / a.run_minutes).ceil().max(1.0) as u64;
    let tmp = tempfile::tempdir()?;
    let base = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    report::print_machine(&base);
    println!(
        "torture: {runs} run(s) of {} min, first seed {seed}",
        a.run_minutes
    );
    let (mut faults, mut ops, mut ok_ops, mut anomalies, mut lost) =
        (0u64, 0u64, 0u64, 0usize, 0u64);
    let (mut unknown, mut failed) = (0u64, 0u64);
    let mut mode = String::new();
    let mut checkers = Vec::new();
    for i in 0..runs {
        let s = seed.wrapping_add(i);
        let dir = base.join(format!("run-{s}"));
        std::fs::create_dir_all(&dir)?;
        let cfg = shale_torture::Config {
            shale: shale.clone(),
            dir: dir.clone(),
            duration: Duration::from_secs_f64(a.run_minutes * 60.0),
            seed: s,
            clients: a.clients,
            keys: a.keys.clamp(2, 64 - shale_torture::workload::DIRS),
            chunkservers: a.chunkservers.max(3),
            heal_within: Duration::from_secs(120),
            master_extra: Vec::new(),
        };
        let r = shale_torture::run(&cfg).await?;
        println!("run {} (seed {s}): {}", i + 1, r.json(s, 1));
        for x in &r.anomalies {
            println!("ANOMALY (seed {s}): {x}");
        }
        if !r.anomalies.is_empty() {
            println!(
                "reproduce: cargo run --release -p shale-bench -- torture --minutes {m} --run-minutes {m} --seed {s} --clients {} --keys {} --chunkservers {}   (data and logs: {})",
                a.clients,
                a.keys,
                a.chunkservers,
                dir.display(),
                m = a.run_minutes
            );
        } else if a.dir.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        faults += r.faults;
        ops += r.ops;
        ok_ops += r.ok_ops;
        unknown += r.unknown_ops;
        failed += r.failed_ops;
        anomalies += r.anomalies.len();
        lost += r.bytes_lost;
        mode = r.mode.clone();
        checkers.push(r.checker.clone());
    }
    if anomalies > 0 {
        // Keep the evidence.
        let _ = tmp.keep();
    }
    report::print_json(vec![
        ("bench", json!("torture")),
        ("runs", json!(runs)),
        ("minutes", json!(a.minutes)),
        ("mode", json!(mode)),
        ("faults", json!(faults)),
        ("ops", json!(ops)),
        ("ok_ops", json!(ok_ops)),
        ("unknown_ops", json!(unknown)),
        ("failed_ops", json!(failed)),
        ("anomalies", json!(anomalies)),
        ("bytes_lost", json!(lost)),
        ("checkers", json!(checkers)),
        ("seed", json!(seed)),
    ]);
    Ok(())
}
