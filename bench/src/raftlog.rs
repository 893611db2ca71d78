//! `shale-bench raftlog`: durable appends per second of 256-byte entries, with 1 and with 64
//! concurrent proposers, against the raw baseline of one `write` + `fdatasync` per entry on the
//! same disk in the same run.
//!
//! Proposers take the next index and queue their append under one lock (as a Raft leader
//! sequences its log), then wait for durability outside it, so group commit can batch them.
use crate::report::{print_json, print_machine, r1, r3};
use bytes::Bytes;
use serde_json::json;
use shale_raftlog::{LogConfig, RaftLog};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Mutex};

#[derive(clap::Args)]
pub struct Args {
    /// Entries per proposer in the 64-proposer run.
    #[arg(long, default_value_t = 300)]
    per_proposer: u64,
    /// Entries in each single-proposer and baseline round.
    #[arg(long, default_value_t = 1500)]
    entries: u64,
    /// Entry size in bytes.
    #[arg(long, default_value_t = 256)]
    entry_bytes: usize,
    /// Rounds of (baseline, 1 proposer); the best of each counts.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Concurrent proposers in the group-commit run.
    #[arg(long, default_value_t = 64)]
    proposers: u64,
    /// Where to put the data (default: a temp dir under the current directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn baseline(dir: &std::path::Path, n: u64, entry: &[u8]) -> Result<Duration, BoxError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join("baseline.log"))?;
    let t = Instant::now();
    for _ in 0..n {
        f.write_all(entry)?;
        f.sync_data()?;
    }
    Ok(t.elapsed())
}

struct Sequencer {
    next: Mutex<u64>,
    log: RaftLog,
}

impl Sequencer {
    /// Appends one entry and waits until it is durable.
    async fn propose(&self, entry: Bytes) -> Result<(), BoxError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut next = self.next.lock().await;
            let i = *next;
            self.log
                .append(
                    vec![(i, entry)],
                    Box::new(move |r| {
                        let _ = tx.send(r);
                    }),
                )
                .await?;
            *next += 1;
        }
        rx.await??;
        Ok(())
    }
}

async fn run_log(
    dir: &std::path::Path,
    proposers: u64,
    per: u64,
    entry: Bytes,
) -> Result<Duration, BoxError> {
    let (log, _) = RaftLog::open(dir, LogConfig::default())?;
    let seq = Arc::new(Sequencer {
        next: Mutex::new(1),
        log,
    });
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..proposers {
        let (seq, entry) = (seq.clone(), entry.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                seq.propose(entry.clone()).await?;
            }
            Ok::<(), BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(t.elapsed())
}

pub async fn run(a: Args) -> Result<(), BoxError> {
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };
    print_machine(tmp.path());
    let entry = Bytes::from(vec![0x5a; a.entry_bytes]);
    println!(
        "raftlog: {}-byte entries; baseline and 1 proposer: {} entries; {} proposers x {}",
        a.entry_bytes, a.entries, a.proposers, a.per_proposer
    );
    // Alternate baseline and single-proposer rounds; the best of each counts, so drift of the
    // machine hits both alike.
    let (mut baseline_per_s, mut e1) = (0f64, 0f64);
    for round in 0..a.rounds.max(1) {
        let b = baseline(tmp.path(), a.entries, &entry)?;
        let d1 = tmp.path().join(format!("p1-{round}"));
        let t1 = run_log(&d1, 1, a.entries, entry.clone()).await?;
        let (rb, r1_) = (
            a.entries as f64 / b.as_secs_f64(),
            a.entries as f64 / t1.as_secs_f64(),
        );
        println!(
            "round {round}: baseline write+fdatasync {rb:.0}/s, log with 1 proposer {r1_:.0}/s"
        );
        baseline_per_s = baseline_per_s.max(rb);
        e1 = e1.max(r1_);
    }
    let d64 = tmp.path().join("p64");
    let n64 = a.proposers * a.per_proposer;
    let t64 = run_log(&d64, a.proposers, a.per_proposer, entry).await?;
    let e64 = n64 as f64 / t64.as_secs_f64();
    println!("{} proposers: {e64:.0} durable entries/s", a.proposers);
    print_json(vec![
        ("bench", json!("raftlog")),
        ("entry_bytes", json!(a.entry_bytes)),
        ("proposers", json!(a.proposers)),
        ("entries_per_s_1", json!(r1(e1))),
        ("entries_per_s_64", json!(r1(e64))),
        ("baseline_fsyncs_per_s", json!(r1(baseline_per_s))),
        ("group_commit_gain", json!(r3(e64 / baseline_per_s))),
        ("single_vs_baseline", json!(r3(e1 / baseline_per_s))),
    ]);
    Ok(())
}
