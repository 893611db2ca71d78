//! `shale-bench chunk-store`: the chunk store against the raw disk, in one run.
//!
//! * write: N chunks written as frames through the store (create → write … → seal) vs the same
//!   bytes written with `std::fs` + one fdatasync per file. Rounds alternate (baseline, store,
//!   baseline, store …) and the best round of each counts, so drift of the machine hits both.
//! * read: every chunk read through the store in frame-sized ranges (mmap + crc verify) vs plain
//!   `read()` of the baseline files in buffers of the same size. Both are page-cache hot (they
//!   were just written); this compares the read paths, not the disk.
//! * random reads: 64 KiB at random unaligned offsets through the store; p50/p99 latency.
use crate::report::{print_json, print_machine, r1, r3};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::json;
use shale_chunk::{open_disk_store, BackendChoice, ChunkStore, StoreConfig};
use shale_proto::{ChunkId, ChunkRef, ChunkVersion};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Total bytes written per round, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Chunk size in MiB.
    #[arg(long, default_value_t = 64)]
    chunk_mib: u64,
    /// Frame (write call / read range) size in KiB.
    #[arg(long, default_value_t = 1024)]
    frame_kib: usize,
    /// Rounds of (baseline, store) writes; the best of each counts.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Random 64 KiB reads to time.
    #[arg(long, default_value_t = 5000)]
    rand_reads: u32,
    /// Writes of one chunk in flight at once in the store.
    #[arg(long, default_value_t = shale_chunk::store::INFLIGHT_WRITES_DEFAULT)]
    inflight: usize,
    /// Backend: auto, uring or std.
    #[arg(long, default_value = "uring")]
    backend: String,
    /// Where to put the data (default: a temp dir under the current directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

type BoxError = Box<dyn std::error::Error>;

fn mibps(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
}

fn cref(i: u64) -> ChunkRef {
    ChunkRef {
        id: ChunkId(i + 1),
        version: ChunkVersion(1),
    }
}

/// Distinct source frames both sides cycle through: 64 MiB of them, more than any CPU cache, so
/// neither side copies from a cache-hot buffer (data from the network would not be hot either).
const SOURCE_POOL_BYTES: usize = 64 << 20;

struct Source {
    frames: Vec<Bytes>,
}

impl Source {
    fn new(frame_bytes: usize) -> Self {
        let n = (SOURCE_POOL_BYTES / frame_bytes).max(1);
        Source {
            frames: (0..n as u64).map(|i| frame(frame_bytes, i)).collect(),
        }
    }

    /// The bytes of frame `i` of chunk `c`, `n` long.
    fn get(&self, c: u64, i: u64, n: usize) -> Bytes {
        let k = (c.wrapping_mul(7919) + i) as usize % self.frames.len();
        self.frames[k].slice(..n)
    }
}

/// One frame of pseudo-random bytes (content does not matter to the disk; generating it must
/// not be what we measure).
fn frame(len: usize, seed: u64) -> Bytes {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

fn baseline_write(
    dir: &Path,
    chunks: u64,
    chunk_bytes: u64,
    frame_bytes: usize,
    src: &Source,
) -> Result<Duration, BoxError> {
    let started = Instant::now();
    for i in 0..chunks {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(format!("raw-{i}")))?;
        let (mut off, mut k) = (0, 0);
        while off < chunk_bytes {
            let n = (chunk_bytes - off).min(frame_bytes as u64) as usize;
            f.write_all(&src.get(i, k, n))?;
            off += n as u64;
            k += 1;
        }
        f.sync_data()?;
    }
    Ok(started.elapsed())
}

async fn store_write(
    s: &dyn ChunkStore,
    chunks: u64,
    chunk_bytes: u64,
    frame_bytes: usize,
    src: &Source,
) -> Result<Duration, BoxError> {
    let started = Instant::now();
    for i in 0..chunks {
        s.create(cref(i)).await?;
        let (mut off, mut k) = (0, 0);
        while off < chunk_bytes {
            let n = (chunk_bytes - off).min(frame_bytes as u64) as usize;
            s.write(cref(i), off, src.get(i, k, n)).await?;
            off += n as u64;
            k += 1;
        }
        s.seal(cref(i)).await?;
    }
    Ok(started.elapsed())
}

fn baseline_read(dir: &Path, chunks: u64, frame_bytes: usize) -> Result<(Duration, u64), BoxError> {
    let mut buf = vec![0u8; frame_bytes];
    let mut total = 0u64;
    let started = Instant::now();
    for i in 0..chunks {
        let mut f = File::open(dir.join(format!("raw-{i}")))?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok((started.elapsed(), total))
}

async fn store_read(
    s: &dyn ChunkStore,
    chunks: u64,
    chunk_bytes: u64,
    frame_bytes: u64,
) -> Result<(Duration, u64), BoxError> {
    let mut total = 0u64;
    let started = Instant::now();
    for i in 0..chunks {
        let mut off = 0;
        while off < chunk_bytes {
            let n = (chunk_bytes - off).min(frame_bytes);
            total += s.read(cref(i), off, n).await?.len() as u64;
            off += n;
        }
    }
    Ok((started.elapsed(), total))
}

async fn random_reads(
    s: &dyn ChunkStore,
    chunks: u64,
    chunk_bytes: u64,
    reads: u32,
) -> Result<Histogram<u64>, BoxError> {
    const LEN: u64 = 64 * 1024;
    let mut h = Histogram::<u64>::new(3)?;
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..reads {
        let c = rng.u64(..chunks);
        let off = rng.u64(..=chunk_bytes - LEN);
        let t = Instant::now();
        let got = s.read(cref(c), off, LEN).await?;
        h.record(t.elapsed().as_micros() as u64)?;
        if got.len() as u64 != LEN {
            return Err("short random read".into());
        }
    }
    Ok(h)
}

pub async fn run(a: Args) -> Result<(), BoxError> {
    let chunk_bytes = a.chunk_mib << 20;
    let chunks = (a.size_mib / a.chunk_mib).max(1);
    let total = chunks * chunk_bytes;
    let frame_bytes = a.frame_kib * 1024;
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };
    let raw_dir = tmp.path().join("raw");
    let store_dir = tmp.path().join("store");
    let choice = match a.backend.as_str() {
        "auto" => BackendChoice::Auto,
        "uring" => BackendChoice::Uring,
        "std" => BackendChoice::Std,
        other => return Err(format!("unknown backend {other:?} (auto, uring, std)").into()),
    };
    let config = StoreConfig {
        chunk_size_max_bytes: chunk_bytes,
        inflight_writes_max: a.inflight.max(1),
        ..StoreConfig::default()
    };
    print_machine(tmp.path());
    println!(
        "chunk-store: {chunks} chunks x {} MiB = {} MiB per round, frames of {} KiB, {} rounds",
        a.chunk_mib,
        total >> 20,
        a.frame_kib,
        a.rounds
    );
    let src = Source::new(frame_bytes);
    let mut best_base = Duration::MAX;
    let mut best_store = Duration::MAX;
    let mut store: Option<Arc<dyn ChunkStore>> = None;
    for round in 0..a.rounds.max(1) {
        // Both sides write fresh files into a fresh directory every round, so the file system's
        // allocator (and a thin-provisioned virtual disk under it) treats them alike.
        if raw_dir.exists() {
            std::fs::remove_dir_all(&raw_dir)?;
        }
        std::fs::create_dir_all(&raw_dir)?;
        let b = baseline_write(&raw_dir, chunks, chunk_bytes, frame_bytes, &src)?;
        if let Some(s) = store.take() {
            drop(s);
        }
        if store_dir.exists() {
            std::fs::remove_dir_all(&store_dir)?;
        }
        let (s, _) = open_disk_store(&store_dir, config.clone(), choice).await?;
        let w = store_write(&*s, chunks, chunk_bytes, frame_bytes, &src).await?;
        println!(
            "round {round}: baseline write {:.1} MiB/s, store ({}) write {:.1} MiB/s",
            mibps(total, b),
            s.backend_kind(),
            mibps(total, w)
        );
        best_base = best_base.min(b);
        best_store = best_store.min(w);
        store = Some(s);
    }
    let s = store.ok_or("no store")?;
    let (rb, rb_bytes) = baseline_read(&raw_dir, chunks, frame_bytes)?;
    let (rs, rs_bytes) = store_read(&*s, chunks, chunk_bytes, frame_bytes as u64).await?;
    if rb_bytes != total || rs_bytes != total {
        return Err(format!("read {rb_bytes}/{rs_bytes} bytes, expected {total}").into());
    }
    let h = random_reads(&*s, chunks, chunk_bytes, a.rand_reads).await?;
    let (wb, ws) = (mibps(total, best_base), mibps(total, best_store));
    let (rbm, rsm) = (mibps(total, rb), mibps(total, rs));
    println!("write: store {ws:.1} MiB/s vs std::fs+fdatasync {wb:.1} MiB/s");
    println!("read:  store (mmap+verify) {rsm:.1} MiB/s vs read() {rbm:.1} MiB/s");
    println!(
        "random 64 KiB reads: p50 {} us, p99 {} us, max {} us ({} reads)",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max(),
        h.len()
    );
    print_json(vec![
        ("bench", json!("chunk_store")),
        ("backend", json!(s.backend_kind())),
        ("size_MiB", json!(total >> 20)),
        ("chunk_MiB", json!(a.chunk_mib)),
        ("frame_KiB", json!(a.frame_kib)),
        ("write_MiBps", json!(r1(ws))),
        ("baseline_write_MiBps", json!(r1(wb))),
        ("write_ratio", json!(r3(ws / wb))),
        ("read_MiBps", json!(r1(rsm))),
        ("baseline_read_MiBps", json!(r1(rbm))),
        ("read_ratio", json!(r3(rsm / rbm))),
        ("rand_read_p50_us", json!(h.value_at_quantile(0.5))),
        ("rand_read_p99_us", json!(h.value_at_quantile(0.99))),
    ]);
    Ok(())
}
