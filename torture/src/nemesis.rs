//! The nemesis: a seeded schedule of faults, one at a time (several servers at once where the
//! fault kind says so), each held for a while and then healed, every step logged with its time.
//!
//! Fault budget: at most one master and at most two chunkservers are down, paused or cut off at
//! once (a majority of masters and one replica of every chunk stay reachable); disk damage hits
//! one replica of a chunk at most once per run.
use crate::cluster::{Cluster, Role};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every fault applied, with the time (ms since the nemesis began).
#[derive(Default, Debug)]
pub struct Log {
    pub lines: Vec<String>,
    pub faults: u64,
    /// Servers that exited without the nemesis killing them.
    pub crashes: Vec<String>,
}

impl Log {
    fn note(&mut self, t0: Instant, what: String) {
        let line = format!("{:>8.3}s  {what}", t0.elapsed().as_secs_f64());
        println!("nemesis {line}");
        self.lines.push(line);
    }
}

/// Damage done to chunk files (their ids, so none is damaged twice).
#[derive(Default)]
pub struct Damage {
    chunks: HashSet<String>,
}

/// A sealed chunk file (`.chunk` or `.crc`) in `dir`, not damaged before.
fn pick_file(
    dir: &Path,
    sidecar: bool,
    rng: &mut fastrand::Rng,
    damage: &Damage,
) -> Option<PathBuf> {
    let ext = if sidecar { ".crc" } else { ".chunk" };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.ends_with(ext) && !damage.chunks.contains(n.split('.').next().unwrap_or(""))
            })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return None;
    }
    Some(files.swap_remove(rng.usize(0..files.len())))
}

/// Damages one chunk file on chunkserver `i`: a flipped byte (data or sidecar), a truncation,
/// or a deletion. What was done, if anything.
fn disk_fault(
    c: &Cluster,
    i: usize,
    rng: &mut fastrand::Rng,
    damage: &mut Damage,
) -> Option<String> {
    let kind = rng.u8(0..4);
    let file = pick_file(&c.chunk_dir(i), kind == 1, rng, damage)?;
    let name = file.file_name()?.to_string_lossy().into_owned();
    let id = name.split('.').next().unwrap_or("").to_string();
    let len = std::fs::metadata(&file).ok()?.len();
    let what = match kind {
        0 | 1 if len > 0 => {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&file)
                .ok()?;
            let at = rng.u64(0..len);
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, at).ok()?;
            b[0] ^= 1 << rng.u8(0..8);
            f.write_all_at(&b, at).ok()?;
            format!("flipped a bit at byte {at} of {name}")
        }
        2 => {
            let f = std::fs::OpenOptions::new().write(true).open(&file).ok()?;
            f.set_len(len / 2).ok()?;
            format!("truncated {name} to {} bytes", len / 2)
        }
        _ => {
            std::fs::remove_file(&file).ok()?;
            format!("deleted {name}")
        }
    };
    damage.chunks.insert(id);
    Some(format!("{}: {what}", c.servers[i].name))
}

/// Fills the file system of `dir` but for 64 KiB (a file `filler` beside the chunk store):
/// how many bytes were written.
fn fill_disk(dir: &Path) -> u64 {
    use std::io::Write;
    let Ok(mut f) = std::fs::File::create(dir.join("filler")) else {
        return 0;
    };
    let block = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let free = free_bytes(dir);
        if free <= 64 << 10 {
            break;
        }
        let n = ((free - (64 << 10)) as usize).min(block.len());
        match f.write_all(&block[..n]) {
            Ok(()) => written += n as u64,
            Err(_) => break,
        }
    }
    let _ = f.sync_all();
    written
}

fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: a valid NUL-terminated path and a zeroed out-struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_bavail * st.f_frsize
}

/// Which fault to inject next.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Kill,
    KillTwo,
    Pause,
    Isolate,
    SplitMasters,
    OneWay,
    ClientCut,
    Loss,
    Slow,
    Disk,
    FullDisk,
}

/// Runs faults until `until`, then heals everything (restarting and continuing every server).
/// `leader` names the current leader master's index when it can.
pub async fn run(
    c: &mut Cluster,
    seed: u64,
    until: Instant,
    leader: impl Fn() -> Option<usize>,
    log: &mut Log,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut damage = Damage::default();
    let t0 = Instant::now();
    let masters: Vec<usize> = (0..c.servers.len())
        .filter(|&i| matches!(c.servers[i].role, Role::Master(_)))
        .collect();
    let chunkservers: Vec<usize> = (0..c.servers.len())
        .filter(|&i| matches!(c.servers[i].role, Role::Chunkserver(_)))
        .collect();
    let mut kinds = vec![Kind::Kill, Kind::KillTwo, Kind::Pause, Kind::Disk];
    if !c.small_disks.is_empty() {
        kinds.push(Kind::FullDisk);
    }
    if c.net.partitions() {
        kinds.extend([
            Kind::Isolate,
            Kind::SplitMasters,
            Kind::OneWay,
            Kind::ClientCut,
            Kind::Loss,
            Kind::Slow,
        ]);
    } else {
        log.note(
            t0,
            format!(
                "network faults off: {}",
                c.net.fallback.clone().unwrap_or_default()
            ),
        );
    }
    while Instant::now() < until {
        reap(c, log, t0);
        let hold = Duration::from_millis(rng.u64(1000..5000));
        let master = || match leader() {
            Some(l) if fastrand::bool() => l,
            _ => masters[fastrand::usize(0..masters.len())],
        };
        let any = |rng: &mut fastrand::Rng| {
            if rng.bool() {
                master()
            } else {
                chunkservers[rng.usize(0..chunkservers.len())]
            }
        };
        let kind = kinds[rng.usize(0..kinds.len())];
        let mut down: Vec<usize> = Vec::new();
        let mut impaired: Vec<usize> = Vec::new();
        let mut paused: Vec<usize> = Vec::new();
        let mut filled: Vec<PathBuf> = Vec::new();
        match kind {
            Kind::Kill => {
                let s = any(&mut rng);
                c.kill(s);
                log.note(t0, format!("kill -9 {}", c.servers[s].name));
                down.push(s);
            }
            Kind::KillTwo => {
                let a = master();
                let b = chunkservers[rng.usize(0..chunkservers.len())];
                c.kill(a);
                c.kill(b);
                log.note(
                    t0,
                    format!(
                        "kill -9 {} and {} at once",
                        c.servers[a].name, c.servers[b].name
                    ),
                );
                down.extend([a, b]);
            }
            Kind::Pause => {
                let s = any(&mut rng);
                c.stop(s);
                log.note(t0, format!("SIGSTOP {} for {hold:?}", c.servers[s].name));
                paused.push(s);
            }
            Kind::Isolate => {
                let s = any(&mut rng);
                let others: Vec<String> = (0..c.servers.len())
                    .filter(|&o| o != s)
                    .map(|o| c.ip(o))
                    .chain([c.net.client_ip.clone()])
                    .collect();
                if c.net.impair(c.servers[s].host, &others, false, 0).is_ok() {
                    log.note(t0, format!("isolate {} for {hold:?}", c.servers[s].name));
                    impaired.push(s);
                }
            }
            Kind::SplitMasters => {
                // One master (often the leader) cut off from the other two; clients see all.
                let s = master();
                let others = c.other_masters(s);
                if c.net.impair(c.servers[s].host, &others, false, 0).is_ok() {
                    log.note(
                        t0,
                        format!(
                            "split masters: {} | the other two, for {hold:?}",
                            c.servers[s].name
                        ),
                    );
                    impaired.push(s);
                }
            }
            Kind::OneWay => {
                // A master hears nothing from the others but can still send to them.
                let s = master();
                let others = c.other_masters(s);
                if c.net.impair(c.servers[s].host, &others, true, 0).is_ok() {
                    log.note(
                        t0,
                        format!(
                            "one-way: {} receives nothing from the other masters, for {hold:?}",
                            c.servers[s].name
                        ),
                    );
                    impaired.push(s);
                }
            }
            Kind::ClientCut => {
                // The clients on the minority side: they reach one master only.
                let keep = master();
                for &m in &masters {
                    if m != keep
                        && c.net
                            .impair(
                                c.servers[m].host,
                                std::slice::from_ref(&c.net.client_ip),
                                false,
                                0,
                            )
                            .is_ok()
                    {
                        impaired.push(m);
                    }
                }
                log.note(
                    t0,
                    format!("clients reach only {}, for {hold:?}", c.servers[keep].name),
                );
            }
            Kind::Loss => {
                let s = any(&mut rng);
                let pct = rng.u8(10..40);
                if c.net.impair(c.servers[s].host, &[], false, pct).is_ok() {
                    log.note(
                        t0,
                        format!("{pct}% packet loss into {} for {hold:?}", c.servers[s].name),
                    );
                    impaired.push(s);
                }
            }
            Kind::Slow => {
                let s = any(&mut rng);
                let kbit = rng.u32(2_000..40_000);
                let lat = rng.u32(50..400);
                if c.net.slow(c.servers[s].host, kbit, lat).is_ok() {
                    log.note(
                        t0,
                        format!(
                            "slow link to {}: {kbit} kbit/s, up to {lat} ms queued, for {hold:?}",
                            c.servers[s].name
                        ),
                    );
                    impaired.push(s);
                }
            }
            Kind::FullDisk => {
                let (s, dir) = c.small_disks[rng.usize(0..c.small_disks.len())].clone();
                let n = fill_disk(&dir);
                log.note(
                    t0,
                    format!(
                        "filled the disk of {} ({n} bytes) for {hold:?}",
                        c.servers[s].name
                    ),
                );
                filled.push(dir);
            }
            Kind::Disk => {
                let s = chunkservers[rng.usize(0..chunkservers.len())];
                if let Some(what) = disk_fault(c, s, &mut rng, &mut damage) {
                    log.note(t0, what);
                }
            }
        }
        log.faults += 1;
        tokio::time::sleep(hold).await;
        for dir in filled {
            let _ = std::fs::remove_file(dir.join("filler"));
            log.note(t0, format!("freed the disk at {}", dir.display()));
        }
        for s in paused {
            c.cont(s);
            log.note(t0, format!("SIGCONT {}", c.servers[s].name));
        }
        for s in impaired {
            let _ = c.net.heal(c.servers[s].host);
            log.note(t0, format!("healed the network of {}", c.servers[s].name));
        }
        for s in down {
            match tokio::task::block_in_place(|| c.spawn(s)) {
                Ok(()) => log.note(t0, format!("restarted {}", c.servers[s].name)),
                Err(e) => log.note(t0, format!("could not restart {}: {e}", c.servers[s].name)),
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(300..1500))).await;
    }
    heal_everything(c, log, t0);
}

/// Records servers that died on their own (a crash: an anomaly) and starts them again.
pub fn reap(c: &mut Cluster, log: &mut Log, t0: Instant) {
    for (name, status) in c.crashed() {
        log.note(t0, format!("CRASH: {name} exited on its own ({status})"));
        log.crashes
            .push(format!("{name} exited on its own ({status})"));
    }
}

/// Every server running and continued, every network fault removed.
pub fn heal_everything(c: &mut Cluster, log: &mut Log, t0: Instant) {
    reap(c, log, t0);
    let _ = c.net.heal_all();
    for s in 0..c.servers.len() {
        if c.servers[s].stopped {
            c.cont(s);
        }
        if !c.running(s) {
            match tokio::task::block_in_place(|| c.spawn(s)) {
                Ok(()) => log.note(t0, format!("restarted {}", c.servers[s].name)),
                Err(e) => log.note(t0, format!("could not restart {}: {e}", c.servers[s].name)),
            }
        }
    }
}
