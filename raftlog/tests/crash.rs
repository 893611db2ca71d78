//! Crash test with a real process: a child appends entries as fast as group commit allows
//! (pipelined, many per fsync), saves votes and purges, and prints each entry and vote as it is
//! acknowledged durable; the parent SIGKILLs it at random moments, reopens the log, and checks
//! every acknowledged entry is present and byte-equal, and the vote is not older than the last
//! acknowledged one.
use bytes::Bytes;
use shale_raftlog::{LogConfig, RaftLog};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "SHALE_RAFTLOG_CRASH_DIR";
const TRIALS: u32 = 6;
const CHILD_LIFETIME: Duration = Duration::from_secs(20);

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 64 * 1024,
        cache_bytes_max: 16 * 1024,
        queued_bytes_max: 256 * 1024,
    }
}

fn payload(i: u64) -> Bytes {
    let len = 16 + (i.wrapping_mul(2_654_435_761) % 700) as usize;
    Bytes::from(
        (0..len)
            .map(|k| (i as usize * 31 + k * 7) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Not a test on its own: the child process body (a no-op without the env var).
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let (log, _) = RaftLog::open(dir.as_ref(), config()).expect("open");
        let mut next = log.last_index().map_or(1, |l| l + 1);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let printer = tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").expect("stdout");
                out.flush().expect("flush");
            }
        });
        tx.send(format!("ready {next}")).expect("send");
        let started = Instant::now();
        let mut vote = 0u64;
        while started.elapsed() < CHILD_LIFETIME {
            let t = tx.clone();
            let i = next;
            log.append(
                vec![(i, payload(i))],
                Box::new(move |r| {
                    if r.is_ok() {
                        let _ = t.send(format!("acked {i}"));
                    }
                }),
            )
            .await
            .expect("append");
            next += 1;
            if i % 97 == 0 {
                vote += 1;
                let v = format!("{:020}", i * 1000 + vote);
                log.save_vote(Bytes::from(v.clone())).await.expect("vote");
                tx.send(format!("vote {v}")).expect("send");
            }
            if i % 400 == 0 {
                log.purge(i - 200, Bytes::from(format!("p{}", i - 200)))
                    .expect("purge");
            }
        }
        drop(tx);
        let _ = printer.await;
    });
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().expect("tmp");
    let seed = fastrand::u64(..);
    println!("raftlog crash test seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut max_acked = 0u64;
    let mut last_vote = String::new();
    let mut total = 0;
    for trial in 0..TRIALS {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if rx
                .recv_timeout(left)
                .expect("child ready")
                .contains("ready ")
            {
                break;
            }
        }
        let kill_after = Duration::from_millis(rng.u64(50..1200));
        std::thread::sleep(kill_after);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        reader.join().expect("reader");
        let mut acked = 0;
        for line in rx.try_iter() {
            if let Some(at) = line.find("acked ") {
                let i: u64 = line[at + 6..].trim().parse().expect("index");
                max_acked = max_acked.max(i);
                acked += 1;
            } else if let Some(at) = line.find("vote ") {
                last_vote = line[at + 5..].trim().to_string();
            }
        }
        total += acked;
        println!("trial {trial}: killed after {kill_after:?}, {acked} entries acknowledged, max {max_acked}");
        let (log, report) = RaftLog::open(dir.path(), config()).expect("reopen");
        println!("  reopened: {report}");
        let last = log.last_index().unwrap_or(0);
        assert!(
            last >= max_acked,
            "trial {trial}: acked {max_acked} but log ends at {last}"
        );
        let first = log.first_index().unwrap_or(1);
        for (i, data) in log.read(first, last).expect("read") {
            assert_eq!(data, payload(i), "trial {trial}: entry {i} differs");
        }
        assert_eq!(
            log.read(first, last).expect("read").len() as u64,
            last - first + 1,
            "trial {trial}: a hole in the log"
        );
        let vote = log.vote().map(|v| String::from_utf8_lossy(&v).into_owned());
        if !last_vote.is_empty() {
            let v = vote.expect("a vote was acknowledged");
            assert!(
                v >= last_vote,
                "trial {trial}: vote went back from {last_vote} to {v}"
            );
        }
    }
    assert!(total > 0, "nothing was ever acknowledged");
}
