//! `shale-bench e2e`: a local cluster (3 masters, 3 chunkservers, 64 MiB chunks, 3 replicas) as
//! real processes; a sequential write of one file and its cold read, then 4 clients (one
//! process) on 4 files, written and read cold; then warm reads — every replica file cached —
//! by one client and by the four, their passes alternating (median of 5 each); and in the
//! same run the baselines: the same bytes written 3× to the local disk with fdatasync (the
//! least three replicas on one disk must do), the O_DIRECT limits and a raw loopback TCP
//! stream.
use crate::report::{print_json, print_machine, r1, r3};
use bytes::Bytes;
use serde_json::json;
use shale_client::{Client, ClientConfig};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(clap::Args)]
pub struct Args {
    /// Size of the single file, MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Size of each of the 4 files, MiB.
    #[arg(long, default_value_t = 256)]
    size_4_mib: u64,
    /// Chunk size, MiB.
    #[arg(long, default_value_t = 64)]
    chunk_mib: u64,
    /// Where to put the data (default: a temp dir under the current directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run only in plaintext (default: mutual TLS, then the single-client figures again in
    /// plaintext for comparison).
    #[arg(long)]
    plaintext: bool,
    /// Chunkservers write through the page cache instead of with O_DIRECT.
    #[arg(long)]
    buffered_io: bool,
    /// Chunkservers serve no data port: reads go over gRPC (for comparison).
    #[arg(long)]
    no_data_port: bool,
}

#[derive(clap::Args)]
pub struct ChunkserverArgs {
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    masters: String,
    #[arg(long)]
    host: String,
    /// TLS folder (certificate `chunkserver-HOST`); plaintext without it.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Write through the page cache instead of with O_DIRECT.
    #[arg(long)]
    buffered_io: bool,
    /// Serve no data port.
    #[arg(long)]
    no_data_port: bool,
}

/// The body of a chunkserver child process.
pub async fn internal_chunkserver(a: ChunkserverArgs) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let transport = crate::tls::server(
        a.tls_dir.as_deref(),
        shale_client::Role::Chunkserver,
        &a.host,
    )?;
    let config = shale_chunk::server::ChunkserverConfig {
        data_dir: a.data,
        masters: a.masters.split(',').map(str::to_string).collect(),
        advertise: addr.clone(),
        host: a.host,
        rack: None,
        chunk_size_max_bytes: 1 << 30,
        capacity_bytes: None,
        heartbeat: Duration::from_millis(500),
        scrub_bytes_per_s: 0,
        scrub_every: Duration::from_secs(3600),
        // The benchmarks run with the re-replication throttle off.
        replicate_bytes_per_s: 0,
        stream_idle: shale_chunk::server::service::STREAM_IDLE_DEFAULT,
        transport,
        direct_io: !a.buffered_io,
        node: Default::default(),
        data_port: (!a.no_data_port).then_some(0),
    };
    println!("listening on {addr}");
    std::io::stdout().flush()?;
    shale_chunk::server::serve(config, listener, std::future::pending()).await
}

/// A local cluster of child processes: 3 masters and `n` chunkservers.
pub struct LocalCluster {
    pub masters: Vec<String>,
    /// How its clients connect (mutual TLS as the `bench` admin, or plaintext).
    pub transport: shale_client::Transport,
    /// (process, address)
    pub chunkservers: Vec<(crate::procs::Kid, String)>,
    /// Where its processes keep their data.
    pub dir: PathBuf,
    _masters: Vec<crate::procs::Kid>,
}

/// Starts 3 masters (with `master_args` extra) and `n` chunkservers (with `cs_args` extra),
/// and waits until every chunkserver is alive.
pub async fn start_cluster(
    dir: &Path,
    n: usize,
    master_args: &[&str],
    cs_args: &[&str],
    tls: bool,
) -> Result<LocalCluster, BoxError> {
    let hosts: Vec<String> = (1..=n).map(|i| format!("cs{i}")).collect();
    let tls_dir = if tls {
        Some(crate::tls::provision(dir, &hosts)?)
    } else {
        None
    };
    let transport = crate::tls::client(tls_dir.as_deref())?;
    let tls_args: Vec<String> = tls_dir
        .iter()
        .flat_map(|d| ["--tls-dir".to_string(), d.display().to_string()])
        .collect();
    let mut kids = Vec::new();
    let mut masters = Vec::new();
    for id in 1..=3u64 {
        let data = dir.join(format!("m{id}"));
        let mut args: Vec<String> = vec![
            "internal-master".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data".into(),
            data.display().to_string(),
        ];
        args.extend(master_args.iter().map(|a| a.to_string()));
        args.extend(tls_args.iter().cloned());
        let (k, addr) = crate::procs::spawn(&args)?;
        kids.push(k);
        masters.push(addr);
    }
    let mut boot = shale_proto::metapb::master_service_client::MasterServiceClient::new(
        transport.channel(&masters[0], |e| e)?,
    );
    boot.bootstrap(shale_proto::metapb::BootstrapRequest {
        masters: masters
            .iter()
            .enumerate()
            .map(|(i, m)| shale_proto::metapb::MasterInfo {
                id: i as u64 + 1,
                address: m.clone(),
                voter: true,
                ..Default::default()
            })
            .collect(),
    })
    .await?;
    let mut chunkservers = Vec::new();
    for i in 1..=n {
        let data = dir.join(format!("cs{i}"));
        let mut args = vec![
            "internal-chunkserver".into(),
            "--data".into(),
            data.display().to_string(),
            "--masters".into(),
            masters.join(","),
            "--host".into(),
            hosts[i - 1].clone(),
        ];
        args.extend(cs_args.iter().map(|a| a.to_string()));
        args.extend(tls_args.iter().cloned());
        let (k, addr) = crate::procs::spawn(&args)?;
        chunkservers.push((k, addr));
    }
    let config = ClientConfig {
        transport: transport.clone(),
        ..ClientConfig::default()
    };
    let client = Client::connect(&masters, config).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = client.status().await?;
        if s.chunkservers.iter().filter(|c| c.state == "alive").count() == n {
            break;
        }
        if Instant::now() > deadline {
            return Err("chunkservers did not come up".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(LocalCluster {
        dir: dir.to_path_buf(),
        masters,
        transport,
        chunkservers,
        _masters: kids,
    })
}

impl LocalCluster {
    /// CPU seconds used so far by every server process of the cluster.
    pub fn server_cpu_s(&self) -> f64 {
        self._masters
            .iter()
            .chain(self.chunkservers.iter().map(|(k, _)| k))
            .filter_map(|k| {
                k.0.as_ref()
                    .map(|c| cpu_s(&format!("/proc/{}/stat", c.id())))
            })
            .sum()
    }

    /// A client configuration for this cluster.
    pub fn config(&self) -> ClientConfig {
        ClientConfig {
            transport: self.transport.clone(),
            ..ClientConfig::default()
        }
    }
}

/// An endless source of pseudo-random bytes (from a 64 MiB pool, so neither side copies from a
/// cache-hot buffer), limited to `left` bytes.
pub struct Source {
    pool: Bytes,
    pos: usize,
    left: u64,
}

impl Source {
    pub fn new(pool: &Bytes, len: u64, start: usize) -> Source {
        Source {
            pool: pool.clone(),
            pos: start % pool.len(),
            left: len,
        }
    }
}

impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left) as usize;
        let n = n.min(self.pool.len() - self.pos);
        let pos = self.pos;
        buf.put_slice(&self.pool[pos..pos + n]);
        self.pos = (pos + n) % self.pool.len();
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

pub fn pool() -> Bytes {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut v = Vec::with_capacity(64 << 20);
    while v.len() < 64 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

/// User + system CPU seconds of the process whose `/proc/…/stat` is at `path` (0 if gone).
pub fn cpu_s(path: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

/// Drops the page cache (root only); whether it could.
pub fn drop_caches() -> bool {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// The disk's limits for the payload, measured with O_DIRECT: 3 writers at once, each writing
/// `size` bytes in 1 MiB writes and fdatasyncing (MiB/s per writer: the aggregate ÷ 3), then
/// one reader of those files (MiB/s).
fn baseline_direct(dir: &Path, size: u64, pool: &Bytes) -> Result<(f64, f64), BoxError> {
    use shale_chunk::backend::aligned::AlignedBuf;
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    std::fs::create_dir_all(dir)?;
    let size = size / (1 << 20) * (1 << 20);
    let mut buf = AlignedBuf::new(1 << 20);
    buf.extend_from_slice(&pool[..1 << 20]);
    let buf = std::sync::Arc::new(buf);
    let open = |p: &Path, write: bool| {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .create(write)
            .truncate(write)
            .custom_flags(libc::O_DIRECT)
            .open(p)
    };
    let t = Instant::now();
    let writers: Vec<_> = (0..3)
        .map(|k| {
            let (f, buf) = (open(&dir.join(format!("direct-{k}")), true), buf.clone());
            std::thread::spawn(move || -> std::io::Result<()> {
                let f = f?;
                let mut at = 0;
                while at < size {
                    f.write_all_at((*buf).as_ref(), at)?;
                    at += 1 << 20;
                }
                f.sync_data()
            })
        })
        .collect();
    for w in writers {
        w.join().map_err(|_| "writer panicked")??;
    }
    let write = mibps(3 * size, t.elapsed()) / 3.0;
    drop_caches();
    let mut rbuf = AlignedBuf::new(1 << 20);
    rbuf.extend_from_slice(&[0u8; 1 << 20]);
    let f = open(&dir.join("direct-0"), false)?;
    let t = Instant::now();
    let mut at = 0;
    while at < size {
        let n = f.read_at(rbuf.as_mut_slice(), at)?;
        if n == 0 {
            break;
        }
        at += n as u64;
    }
    let read = mibps(at, t.elapsed());
    std::fs::remove_dir_all(dir)?;
    Ok((write, read))
}

/// CPU seconds per GiB moved.
fn per_gib(cpu_s: f64, bytes: u64) -> f64 {
    cpu_s / (bytes as f64 / (1u64 << 30) as f64)
}

pub fn mibps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / t.as_secs_f64()
}

/// The same bytes written 3× to the local disk, each copy in chunk-sized files with one
/// fdatasync per file.
fn baseline_disk(dir: &Path, size: u64, chunk: u64, pool: &Bytes) -> Result<f64, BoxError> {
    std::fs::create_dir_all(dir)?;
    let t = Instant::now();
    for copy in 0..3 {
        let mut left = size;
        let mut i = 0;
        while left > 0 {
            let n = left.min(chunk);
            let mut f = std::fs::File::create(dir.join(format!("{copy}-{i}")))?;
            let mut w = 0u64;
            while w < n {
                let k = (n - w).min(1 << 20) as usize;
                let off = ((w as usize) + i * 4096) % (pool.len() - k);
                f.write_all(&pool[off..off + k])?;
                w += k as u64;
            }
            f.sync_data()?;
            left -= n;
            i += 1;
        }
    }
    let took = t.elapsed();
    std::fs::remove_dir_all(dir)?;
    Ok(mibps(size, took))
}

/// A raw loopback TCP stream: one writer, one reader, 1 MiB buffers.
fn baseline_loopback(size: u64, pool: &Bytes) -> Result<f64, BoxError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    let t = Instant::now();
    let mut w = 0u64;
    while w < size {
        let k = (size - w).min(1 << 20) as usize;
        s.write_all(&pool[..k])?;
        w += k as u64;
    }
    drop(s);
    let got = reader.join().map_err(|_| "reader panicked")??;
    if got != size {
        return Err(format!("loopback read {got} of {size}").into());
    }
    Ok(mibps(size, t.elapsed()))
}

/// What one client writing one file and reading it cold measured: MiB/s, and CPU seconds per
/// GiB of the servers and of the client (this process) for the write.
struct OneClient {
    write: f64,
    /// The first read, after the page cache was dropped (if it could be).
    read_cold: f64,
    server_cpu_write: f64,
    client_cpu_write: f64,
}

async fn one_client(
    cluster: &LocalCluster,
    client: &Client,
    pool: &Bytes,
    size: u64,
    mode: &str,
) -> Result<OneClient, BoxError> {
    let me = "/proc/self/stat";
    let (s0, c0) = (cluster.server_cpu_s(), cpu_s(me));
    let t = Instant::now();
    client
        .put("/e2e-1", Source::new(pool, size, 0), true, &no_progress)
        .await?;
    let w = mibps(size, t.elapsed());
    let (sw, cw) = (cluster.server_cpu_s(), cpu_s(me));
    let (server_cpu_write, client_cpu_write) = (per_gib(sw - s0, size), per_gib(cw - c0, size));
    println!(
        "write, 1 client, {mode}: {w:.1} MiB/s; CPU s/GiB: servers {server_cpu_write:.2}, \
         client {client_cpu_write:.2}"
    );
    drop_caches();
    let t = Instant::now();
    let n = client
        .get("/e2e-1", &mut tokio::io::sink(), &no_progress)
        .await?;
    let read_cold = mibps(n, t.elapsed());
    println!("read, 1 client, {mode}, cold: {read_cold:.1} MiB/s");
    Ok(OneClient {
        write: w,
        read_cold,
        server_cpu_write,
        client_cpu_write,
    })
}

/// Warm reads are timed this many times and the median reported: one pass of 1 GiB takes
/// well under a second here, where a neighbour's burst moves a single pass by ±30 %. Where
/// one reader and four are compared, their passes alternate, so that both see the same
/// machine.
const WARM_PASSES: usize = 5;

/// Timed passes of one kind of warm read: their rates, and the bytes and CPU seconds of the
/// servers and of this process over all of them.
#[derive(Default)]
struct Warm {
    rates: Vec<f64>,
    bytes: u64,
    server_s: f64,
    client_s: f64,
}

impl Warm {
    /// Times one pass, `read` (which returns the bytes it read).
    async fn pass(
        &mut self,
        cluster: &LocalCluster,
        read: impl std::future::Future<Output = Result<u64, BoxError>>,
    ) -> Result<(), BoxError> {
        let me = "/proc/self/stat";
        let (s0, c0) = (cluster.server_cpu_s(), cpu_s(me));
        let t = Instant::now();
        let n = read.await?;
        self.rates.push(mibps(n, t.elapsed()));
        self.bytes += n;
        self.server_s += cluster.server_cpu_s() - s0;
        self.client_s += cpu_s(me) - c0;
        Ok(())
    }

    fn median(&self) -> f64 {
        crate::report::median(&self.rates)
    }

    fn server_per_gib(&self) -> f64 {
        per_gib(self.server_s, self.bytes)
    }

    fn client_per_gib(&self) -> f64 {
        per_gib(self.client_s, self.bytes)
    }

    fn print(&self, what: &str) {
        println!(
            "read, {what}: {:.1} MiB/s (median of {} passes: {:?}); CPU s/GiB: servers {:.2}, \
             client {:.2}",
            self.median(),
            self.rates.len(),
            self.rates.iter().map(|r| r1(*r)).collect::<Vec<_>>(),
            self.server_per_gib(),
            self.client_per_gib()
        );
    }
}

/// One client reads `/e2e-1` into a sink: the bytes read.
async fn read_one(client: &Client) -> Result<u64, BoxError> {
    Ok(client
        .get("/e2e-1", &mut tokio::io::sink(), &no_progress)
        .await?)
}

pub async fn run(a: Args) -> Result<(), BoxError> {
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };
    print_machine(tmp.path());
    let size = a.size_mib << 20;
    let size4 = a.size_4_mib << 20;
    let chunk = a.chunk_mib << 20;
    println!(
        "e2e: 3 masters + 3 chunkservers, {} MiB chunks, 3 replicas; 1 file of {} MiB, then 4 files of {} MiB",
        a.chunk_mib, a.size_mib, a.size_4_mib
    );
    let pool = pool();

    let chunk_mib = a.chunk_mib.to_string();
    let tls = !a.plaintext;
    let mut cs_args: Vec<&str> = Vec::new();
    if a.buffered_io {
        cs_args.push("--buffered-io");
    }
    if a.no_data_port {
        cs_args.push("--no-data-port");
    }
    let cs_args = &cs_args[..];
    let cluster = start_cluster(
        &tmp.path().join("tls-cluster"),
        3,
        &["--chunk-size-mib", &chunk_mib],
        cs_args,
        tls,
    )
    .await?;
    let masters = cluster.masters.clone();
    let config = cluster.config();
    let client = Client::connect(&masters, config.clone()).await?;
    let mode = if tls { "TLS" } else { "plaintext" };

    // One client, one file.
    let one = one_client(&cluster, &client, &pool, size, mode).await?;
    let w1 = one.write;

    // Four clients, four files. The clients connect before the clock starts, as the single
    // client did (a connection probes every master: tens of milliseconds that are not I/O).
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Client::connect(&masters, config.clone()).await?);
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (k, c) in clients.iter().cloned().enumerate() {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            c.put(
                &format!("/e2e-4-{k}"),
                Source::new(&p, size4, k << 24),
                true,
                &no_progress,
            )
            .await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let w4 = mibps(4 * size4, t.elapsed());
    println!("write, 4 clients: {w4:.1} MiB/s aggregate");
    // Read as the single client was: first from the disk (caches dropped; the chunkservers
    // wrote with O_DIRECT, so nothing of these files is cached yet either way), then warm.
    drop_caches();
    let t = Instant::now();
    let r4_cold = mibps(read_four(&clients).await?, t.elapsed());
    println!("read, 4 clients, cold: {r4_cold:.1} MiB/s aggregate");
    // Warm: every replica cached; one reader's and four readers' passes alternate.
    let cached = warm_cache(&cluster.dir);
    let (mut warm1, mut warm4) = (Warm::default(), Warm::default());
    for _ in 0..WARM_PASSES {
        warm1.pass(&cluster, read_one(&client)).await?;
        warm4.pass(&cluster, read_four(&clients)).await?;
    }
    warm1.print(&format!("1 client, {mode}"));
    warm4.print("4 clients, aggregate");
    let (r1_, r4) = (warm1.median(), warm4.median());
    drop(cluster);
    // The same single-client figures in plaintext (authentication and encryption off).
    let plain = if tls {
        let cluster = start_cluster(
            &tmp.path().join("plain-cluster"),
            3,
            &["--chunk-size-mib", &chunk_mib],
            cs_args,
            false,
        )
        .await?;
        let client = Client::connect(&cluster.masters, cluster.config()).await?;
        let p = one_client(&cluster, &client, &pool, size, "plaintext").await?;
        warm_cache(&cluster.dir);
        let mut warm = Warm::default();
        for _ in 0..WARM_PASSES {
            warm.pass(&cluster, read_one(&client)).await?;
        }
        warm.print("1 client, plaintext");
        Some((p.write, warm.median()))
    } else {
        None
    };

    let disk = baseline_disk(&tmp.path().join("baseline"), size, chunk, &pool)?;
    println!("baseline: 3 copies to disk with fdatasync: {disk:.1} MiB/s of payload");
    let (write_limit, read_disk_limit) = baseline_direct(&tmp.path().join("direct"), size, &pool)?;
    println!(
        "baseline: O_DIRECT, 3 writers: {write_limit:.1} MiB/s each; cold O_DIRECT read: \
         {read_disk_limit:.1} MiB/s"
    );
    let dropped = drop_caches();
    let lo = baseline_loopback(size, &pool)?;
    println!("baseline: loopback TCP: {lo:.1} MiB/s");
    print_json(vec![
        ("bench", json!("e2e")),
        ("tls", json!(tls)),
        ("direct_io", json!(!a.buffered_io)),
        ("data_port", json!(!a.no_data_port)),
        ("write_MiBps_1", json!(r1(w1))),
        ("read_MiBps_1", json!(r1(r1_))),
        ("read_cold_MiBps_1", json!(r1(one.read_cold))),
        ("caches_dropped", json!(dropped)),
        ("write_MiBps_4", json!(r1(w4))),
        ("read_MiBps_4", json!(r1(r4))),
        ("read_cold_MiBps_4", json!(r1(r4_cold))),
        ("plaintext_write_MiBps_1", json!(plain.map(|(w, _)| r1(w)))),
        ("plaintext_read_MiBps_1", json!(plain.map(|(_, r)| r1(r)))),
        ("tls_write_ratio", json!(plain.map(|(w, _)| r3(w1 / w)))),
        ("tls_read_ratio", json!(plain.map(|(_, r)| r3(r1_ / r)))),
        (
            "server_cpu_s_per_GiB_write",
            json!(r3(one.server_cpu_write)),
        ),
        (
            "server_cpu_s_per_GiB_read",
            json!(r3(warm1.server_per_gib())),
        ),
        (
            "server_cpu_s_per_GiB_read_4",
            json!(r3(warm4.server_per_gib())),
        ),
        (
            "client_cpu_s_per_GiB_write",
            json!(r3(one.client_cpu_write)),
        ),
        (
            "client_cpu_s_per_GiB_read",
            json!(r3(warm1.client_per_gib())),
        ),
        (
            "client_cpu_s_per_GiB_read_4",
            json!(r3(warm4.client_per_gib())),
        ),
        ("warm_all_cached", json!(cached)),
        ("baseline_3x_disk_write_MiBps", json!(r1(disk))),
        ("write_limit_MiBps", json!(r1(write_limit))),
        ("read_disk_limit_MiBps", json!(r1(read_disk_limit))),
        ("write_limit_ratio", json!(r3(w1 / write_limit))),
        (
            "cold_read_ratio",
            json!(r3(one.read_cold / read_disk_limit)),
        ),
        ("baseline_loopback_MiBps", json!(r1(lo))),
        ("write_ratio", json!(r3(w1 / disk))),
        ("read_ratio", json!(r3(r1_ / lo))),
    ]);
    Ok(())
}

/// Reads every file under `dir` through the page cache (as `vmtouch -t` does), so that a warm
/// read finds every replica cached whichever one the client picks; returns whether all could
/// be read. (Chunkservers write with O_DIRECT, and a cold read caches only the replicas it
/// read, so without this a "warm" read could still go to the disk.)
pub fn warm_cache(dir: &Path) -> bool {
    let mut buf = vec![0u8; 1 << 20];
    let mut todo = vec![dir.to_path_buf()];
    let mut all = true;
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            all = false;
            continue;
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                todo.push(e.path());
            } else if kind.is_file() {
                match std::fs::File::open(e.path()) {
                    Ok(mut f) => while matches!(f.read(&mut buf), Ok(1..)) {},
                    Err(_) => all = false,
                }
            }
        }
    }
    all
}

/// Four clients each read their own file `/e2e-4-{k}` at once: the bytes read.
async fn read_four(clients: &[Client]) -> Result<u64, BoxError> {
    let mut tasks = Vec::new();
    for (k, c) in clients.iter().cloned().enumerate() {
        tasks.push(tokio::spawn(async move {
            c.get(&format!("/e2e-4-{k}"), &mut tokio::io::sink(), &no_progress)
                .await
        }));
    }
    let mut n = 0;
    for task in tasks {
        n += task.await??;
    }
    Ok(n)
}

pub fn no_progress(_: u64) {}
