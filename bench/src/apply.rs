//! `shale-bench apply`: what one master pays, in CPU alone, to apply the commands of the meta
//! benchmark's scale phase — which is also what a restarted master pays per command to replay
//! its log after its snapshot. One process, no Raft, no network, no disk: entries of 1,000
//! commands as the scale phase's loaders send them (`Batch` of 1,000 creates, then 1,000
//! completes; TLS's superuser `bench`; request ids, a session per 256 items; 1,000
//! directories), encoded as the log stores them (postcard), then decoded and applied to a
//! `MetaState`, timed per step of `--step` files. Baseline, same run: inserting the same
//! paths into one `HashMap<String, u64>` (a namespace with nothing but names). At the end,
//! what a restart pays to load the final state from a snapshot, each load in a fresh process:
//! format 9 on every core (`snapshot_load_ms`) and on one, and format 8 on one (the baseline).
use clap::Args as ClapArgs;
use shale_meta::raft::types::Request;
use shale_meta::sm::perms::FILE_MODE_DEFAULT;
use shale_meta::sm::{Command, MetaState, Reply, Who};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(ClapArgs)]
pub struct Args {
    /// Files in the namespace at the end.
    #[arg(long, default_value_t = 2_000_000)]
    files: u64,
    /// Files per timed step.
    #[arg(long, default_value_t = 500_000)]
    step: u64,
    /// Also keep the final state's snapshot (format 9) in this file, e.g. to profile a load
    /// with `shale-bench internal-load FILE`.
    #[arg(long)]
    save_snapshot: Option<std::path::PathBuf>,
    /// Snapshot loads in this process rather than fresh ones (the unit test: its binary is
    /// not `shale-bench`).
    #[arg(skip)]
    loads_in_process: bool,
}

const LOADERS: u64 = 8;
const PER_CALL: u64 = 1000;
const DIRS: u64 = 1000;
const TIME_STEP_MS: u64 = 2;

/// One loader call's commands (creates or completes), with request ids as the loader makes them.
fn wrap(base: u64, x: u64, cmd: Command) -> Command {
    Command::As {
        who: Who {
            user: "bench".into(),
            superuser: true,
        },
        cmd: Box::new(Command::Session {
            client: base + x / 256,
            seq: x % 256 + 1,
            cmd: Box::new(cmd),
        }),
    }
}

#[derive(Default)]
struct Clock {
    decode: Duration,
    apply: Duration,
    cmds: u64,
}

impl Clock {
    /// Decodes and applies one logged entry; returns the replies.
    fn entry(&mut self, st: &mut MetaState, bytes: &[u8]) -> Result<Vec<Reply>, String> {
        let t = Instant::now();
        let req: Request = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        let t1 = Instant::now();
        let out: Vec<Reply> = req.cmds.iter().map(|c| st.apply(c, req.time_ms)).collect();
        self.apply += t1.elapsed();
        self.decode += t1 - t;
        self.cmds += req.cmds.len() as u64;
        Ok(out)
    }
}

/// What a restart pays to load the state from its snapshot: on the loader's threads, on
/// one, and in format 8 (one body, one thread: the baseline of this run). Each load runs in
/// a fresh process (`internal-load`), as a restart does: a process that had freed a state
/// before would take its pages back instead of faulting in new ones.
struct SnapshotCosts {
    mb: u64,
    mb_v8: u64,
    encode_ms: f64,
    threads: usize,
    load_ms: f64,
    load_ms_1: f64,
    load_ms_v8: f64,
}

fn snapshot_costs(
    st: &MetaState,
    in_process: bool,
    save: Option<&std::path::Path>,
) -> Result<SnapshotCosts, Box<dyn std::error::Error>> {
    use shale_meta::snapshot;
    let t = Instant::now();
    let bytes = snapshot::encode(st)?;
    let encode_ms = t.elapsed().as_secs_f64() * 1e3;
    let threads = snapshot::load_threads();
    // What every load below reads back must be this state.
    if snapshot::decode_trusted_with(&bytes, threads)? != *st {
        return Err("the snapshot loads as another state".into());
    }
    let dir = tempfile::tempdir()?;
    let (v9, v8) = (dir.path().join("v9"), dir.path().join("v8"));
    std::fs::write(&v9, &bytes)?;
    if let Some(path) = save {
        std::fs::write(path, &bytes)?;
    }
    drop(bytes);
    std::fs::write(&v8, snapshot::encode_format(st, 8)?)?;
    let load = |file: &std::path::Path, threads| {
        if in_process {
            load_file(file, threads)
        } else {
            load_in_child(file, threads)
        }
    };
    let load_ms = load(&v9, threads)?;
    let load_ms_1 = load(&v9, 1)?;
    let load_ms_v8 = load(&v8, 1)?;
    let mb = std::fs::metadata(&v9)?.len() >> 20;
    let mb_v8 = std::fs::metadata(&v8)?.len() >> 20;
    println!(
        "snapshot: {mb} MB, encode {encode_ms:.0} ms, load {load_ms:.0} ms on {threads} threads, \
         {load_ms_1:.0} ms on one; format 8 (one body) {mb_v8} MB, {load_ms_v8:.0} ms"
    );
    Ok(SnapshotCosts {
        mb,
        mb_v8,
        encode_ms,
        threads,
        load_ms,
        load_ms_1,
        load_ms_v8,
    })
}

/// Milliseconds a fresh `shale-bench internal-load` took to load `file` on `threads`.
fn load_in_child(
    file: &std::path::Path,
    threads: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("internal-load")
        .arg(file)
        .arg("--threads")
        .arg(threads.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("internal-load {}: {}", file.display(), out.status).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("load_ms=")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("internal-load printed {text:?}").into())
}

#[derive(ClapArgs)]
pub struct LoadArgs {
    /// A master state snapshot file (`shale_meta::snapshot` format).
    file: std::path::PathBuf,
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// `internal-load`: reads a snapshot file, loads it on `--threads` and prints `load_ms=`.
pub fn internal_load(a: LoadArgs) -> Result<(), Box<dyn std::error::Error>> {
    println!("load_ms={:.1}", load_file(&a.file, a.threads)?);
    Ok(())
}

/// Reads `file` and loads it on `threads`: the milliseconds of the load.
fn load_file(file: &std::path::Path, threads: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(file)?;
    let t = Instant::now();
    let st = shale_meta::snapshot::decode_trusted_with(&bytes, threads)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    // A restart keeps what it loaded: freeing it is not what is measured.
    std::mem::forget(st);
    Ok(ms)
}

fn encode(cmds: Vec<Command>, time_ms: u64) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(&Request { cmds, time_ms }).map_err(|e| e.to_string())
}

pub fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    if a.step == 0 || a.files < a.step {
        return Err("--step must be at least 1 and at most --files".into());
    }
    let mut st = MetaState::new(64 << 20, 3)?;
    let mut now = 1_000u64;
    let mkdirs = (0..DIRS)
        .map(|d| Command::MkdirWithMode {
            path: format!("/big/d{d}"),
            parents: true,
            mode: 0o755,
        })
        .collect();
    let mut clock = Clock::default();
    for r in clock.entry(&mut st, &encode(mkdirs, now)?)? {
        if let Reply::Err(e) = r {
            return Err(format!("mkdir: {e}").into());
        }
    }
    let mut steps = Vec::new();
    let mut names: HashMap<String, u64> = HashMap::new();
    let mut baseline = Duration::ZERO;
    let mut done = 0u64;
    let mut call = 0u64;
    while done < a.files {
        let mut clock = Clock::default();
        let step_end = (done + a.step).min(a.files);
        while done < step_end {
            // The loaders take turns: loader k's next call.
            let (k, n) = (call % LOADERS, PER_CALL.min(step_end - done));
            let base = 1 + call * 8;
            call += 1;
            let paths: Vec<String> = (done..done + n)
                .map(|j| format!("/big/d{}/l{k}-{j}", j % DIRS))
                .collect();
            let creates = paths
                .iter()
                .enumerate()
                .map(|(x, p)| {
                    let c = Command::CreateWithMode {
                        path: p.clone(),
                        overwrite: false,
                        replication: None,
                        chunk_size_bytes: None,
                        holder: 1,
                        lease_ms: 600_000,
                        mode: FILE_MODE_DEFAULT,
                    };
                    wrap(base, x as u64, c)
                })
                .collect();
            now += TIME_STEP_MS;
            let created = clock.entry(&mut st, &encode(creates, now)?)?;
            let mut completes = Vec::with_capacity(created.len());
            for (x, r) in created.iter().enumerate() {
                match r {
                    Reply::Created { file, .. } => completes.push(wrap(
                        base + 4,
                        x as u64,
                        Command::Complete {
                            file: *file,
                            holder: 1,
                            length: 0,
                        },
                    )),
                    other => return Err(format!("create: {other:?}").into()),
                }
            }
            now += TIME_STEP_MS;
            for r in clock.entry(&mut st, &encode(completes, now)?)? {
                if let Reply::Err(e) = r {
                    return Err(format!("complete: {e}").into());
                }
            }
            let t = Instant::now();
            for (j, p) in paths.into_iter().enumerate() {
                names.insert(p, j as u64);
            }
            baseline += t.elapsed();
            done += n;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / clock.cmds as f64;
        println!(
            "at {done} files: apply {:.2} µs/command, decode {:.2} µs/command ({} commands)",
            per(clock.apply),
            per(clock.decode),
            clock.cmds
        );
        steps.push((done, per(clock.apply), per(clock.decode)));
    }
    let snap = snapshot_costs(&st, a.loads_in_process, a.save_snapshot.as_deref())?;
    // Freeing millions of inodes one by one is not what is measured (the process exits).
    std::mem::forget(st);
    std::mem::forget(names);
    let baseline_ns = baseline.as_secs_f64() * 1e9 / a.files as f64;
    println!("baseline: a HashMap<String, u64> insert of the same paths, {baseline_ns:.0} ns each");
    let (first, last) = (steps[0], steps[steps.len() - 1]);
    let series: Vec<serde_json::Value> = steps
        .iter()
        .map(|(f, ap, de)| serde_json::json!({"files": f, "apply_us": ap, "decode_us": de}))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "bench": "apply",
            "files": a.files,
            "apply_us_per_cmd_first": first.1,
            "apply_us_per_cmd_last": last.1,
            "decode_us_per_cmd_last": last.2,
            "baseline_hashmap_insert_ns": baseline_ns,
            "snapshot_mb": snap.mb,
            "snapshot_encode_ms": snap.encode_ms,
            "load_threads": snap.threads,
            "snapshot_load_ms": snap.load_ms,
            "snapshot_load_ms_1_thread": snap.load_ms_1,
            "snapshot_load_ms_format_8": snap.load_ms_v8,
            "snapshot_mb_format_8": snap.mb_v8,
            "steps": series,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every loader command applies (a refused one fails the run; debug builds check the
    /// state after each), in steps that do not divide the file count.
    #[test]
    fn a_small_run_applies_every_command() {
        run(Args {
            files: 600,
            step: 250,
            save_snapshot: None,
            loads_in_process: true,
        })
        .expect("run");
        assert!(run(Args {
            files: 10,
            step: 0,
            save_snapshot: None,
            loads_in_process: true,
        })
        .is_err());
    }
}
