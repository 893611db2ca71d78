//! Crash test with a real process and a real disk: a child writes and seals chunks (some
//! replacing an older version) and prints each one it was told is sealed; the parent SIGKILLs it
//! at a random moment, reopens the store, and checks that every printed chunk reads back
//! byte-exact and that nothing half-written is ever served.
mod common;

use bytes::Bytes;
use common::{content, cref};
use shale_chunk::{open_disk_store, BackendChoice, StoreConfig};
use shale_proto::ChunkId;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "SHALE_CRASH_CHILD_DIR";
const CHILD_TRIAL: &str = "SHALE_CRASH_CHILD_TRIAL";
const FRAME: usize = 256 * 1024;
const TRIALS: u64 = 6;
/// The child stops by itself after this long, in case the parent is gone.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);

/// Not a test on its own: the body of the child process (a no-op without the env vars).
#[test]
fn crash_child() {
    let (Ok(dir), Ok(trial)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_TRIAL)) else {
        return;
    };
    let trial: u64 = trial.parse().expect("trial");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let (s, _) = open_disk_store(dir.as_ref(), StoreConfig::default(), BackendChoice::Auto)
            .await
            .expect("open");
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {}", s.backend_kind()).expect("stdout");
        out.flush().expect("flush");
        let mut rng = fastrand::Rng::with_seed(trial);
        let mut mine: Vec<(u64, u64)> = Vec::new();
        let started = Instant::now();
        let mut next = trial * 10_000 + 1;
        while started.elapsed() < CHILD_LIFETIME {
            let (id, v) = if !mine.is_empty() && rng.u8(..4) == 0 {
                let i = rng.usize(..mine.len());
                mine[i].1 += 1;
                mine[i]
            } else {
                next += 1;
                mine.push((next, 1));
                (next, 1)
            };
            let len = rng.usize(..(5 * FRAME / 2));
            let data = content(id, v, len);
            s.create(cref(id, v)).await.expect("create");
            for (i, piece) in data.chunks(FRAME).enumerate() {
                s.write(
                    cref(id, v),
                    (i * FRAME) as u64,
                    Bytes::copy_from_slice(piece),
                )
                .await
                .expect("write");
            }
            s.seal(cref(id, v)).await.expect("seal");
            writeln!(out, "sealed {id} {v} {len}").expect("stdout");
            out.flush().expect("flush");
        }
    });
}

#[test]
fn sigkill_at_random_points_loses_no_sealed_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = fastrand::u64(..);
    println!("crash test seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut acked: HashMap<u64, (u64, usize)> = HashMap::new();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for trial in 0..TRIALS {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_TRIAL, trial.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
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
            let line = rx.recv_timeout(left).expect("child became ready");
            // libtest may print "test crash_child ... " on the same line.
            if line.contains("ready ") {
                break;
            }
        }
        let kill_after = Duration::from_millis(rng.u64(50..1500));
        std::thread::sleep(kill_after);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        reader.join().expect("reader");
        let mut printed = 0;
        for line in rx.try_iter() {
            let Some(at) = line.find("sealed ") else {
                continue;
            };
            let f: Vec<&str> = line[at..].split_whitespace().collect();
            if f.len() == 4 {
                let p = |i: usize| f[i].parse::<u64>().expect("number");
                acked.insert(p(1), (p(2), p(3) as usize));
                printed += 1;
            }
        }
        println!("trial {trial}: killed after {kill_after:?}, {printed} chunks acknowledged");
        rt.block_on(async {
            let (s, report) =
                open_disk_store(dir.path(), StoreConfig::default(), BackendChoice::Auto)
                    .await
                    .expect("reopen");
            assert!(report.quarantined.is_empty(), "trial {trial}: {report}");
            // Everything served is a whole, exact version.
            for info in s.list() {
                let (id, v) = (info.id.get(), info.version.get());
                let got = s
                    .read(cref(id, v), 0, info.length_bytes)
                    .await
                    .expect("read");
                let want = content(id, v, info.length_bytes as usize);
                assert!(got[..] == want[..], "trial {trial}: {id} v{v} differs");
            }
            // Everything acknowledged is there (or a newer version sealed just before the kill).
            for (id, (v, len)) in &acked {
                let info = s
                    .stat(ChunkId(*id))
                    .unwrap_or_else(|| panic!("trial {trial}: acknowledged chunk {id} v{v} lost"));
                assert!(info.sealed);
                assert!(info.version.get() >= *v, "trial {trial}: {id} went back");
                if info.version.get() == *v {
                    assert_eq!(info.length_bytes, *len as u64);
                }
            }
        });
    }
    assert!(!acked.is_empty(), "no chunk was ever acknowledged");
}
