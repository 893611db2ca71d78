//! Access: the FUSE mount and the S3 gateway against the native client, in one run on one
//! cluster: write and read one file of `--size-mib` each way, page cache dropped before every
//! cold read. The mount and the gateway are the `shale-access` ones `shale mount` and
//! `shale s3` run, in this process (the mount needs root or fusermount3, and /dev/fuse); the
//! S3 client is curl (`--aws-sigv4`), sending from a local file and reading into /dev/null.
use crate::e2e::{drop_caches, mibps, no_progress, pool, start_cluster, Source};
use crate::report::{print_json, print_machine, r1, r3};
use serde_json::json;
use shale_access::fuse::{self, MountOptions};
use shale_client::Client;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(clap::Args)]
pub struct Args {
    /// Size of the file, MiB (the figure: one 2 GiB object).
    #[arg(long, default_value_t = 2048)]
    size_mib: u64,
    /// Chunk size, MiB.
    #[arg(long, default_value_t = 64)]
    chunk_mib: u64,
    /// Where to put the data (default: a temp dir under the current directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Reads a whole local file in 1 MiB reads; bytes read.
fn read_all(path: &std::path::Path) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        n += k as u64;
    }
}

/// Writes `size` bytes from `pool` (cycling through it) in 1 MiB writes.
fn write_from_pool(w: &mut impl Write, pool: &[u8], size: u64) -> std::io::Result<()> {
    let (mut left, mut at) = (size, 0usize);
    while left > 0 {
        let n = (1usize << 20).min(left as usize).min(pool.len() - at);
        w.write_all(&pool[at..at + n])?;
        at = (at + n) % pool.len();
        left -= n as u64;
    }
    Ok(())
}

pub async fn run(a: Args) -> Result<(), BoxError> {
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };
    print_machine(tmp.path());
    let size = a.size_mib << 20;
    println!(
        "access: 3 masters + 3 chunkservers (mutual TLS), {} MiB chunks, 3 replicas; one file of {} MiB",
        a.chunk_mib, a.size_mib
    );
    let pool = pool();
    let chunk_mib = a.chunk_mib.to_string();
    let cluster = start_cluster(
        &tmp.path().join("cluster"),
        3,
        &["--chunk-size-mib", &chunk_mib],
        &[],
        true,
    )
    .await?;
    let client = Client::connect(&cluster.masters, cluster.config()).await?;

    // Native client.
    let t = Instant::now();
    client
        .put("/native", Source::new(&pool, size, 0), true, &no_progress)
        .await?;
    let native_write = mibps(size, t.elapsed());
    let dropped = drop_caches();
    let t = Instant::now();
    let n = client
        .get("/native", &mut tokio::io::sink(), &no_progress)
        .await?;
    let native_read_cold = mibps(n, t.elapsed());
    let t = Instant::now();
    let n = client
        .get("/native", &mut tokio::io::sink(), &no_progress)
        .await?;
    let native_read = mibps(n, t.elapsed());
    println!(
        "native client: write {native_write:.1} MiB/s, read {native_read:.1} MiB/s (cold {native_read_cold:.1})"
    );

    // The mount.
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt)?;
    let m = fuse::mount(client.clone(), &mnt, MountOptions::default()).await?;
    let (p, pl) = (mnt.join("mounted"), pool.clone());
    let t = Instant::now();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&p)?;
        write_from_pool(&mut f, &pl, size)?;
        drop(f); // close(2): the file completes here
        Ok(())
    })
    .await??;
    let mount_write = mibps(size, t.elapsed());
    let st = client.stat("/mounted").await?;
    if st.length != size {
        return Err(format!("the mount wrote {} of {size} bytes", st.length).into());
    }
    drop_caches();
    let p = mnt.join("mounted");
    let t = Instant::now();
    let n = tokio::task::spawn_blocking(move || read_all(&p)).await??;
    let mount_read_cold = mibps(n, t.elapsed());
    let p = mnt.join("mounted");
    let t = Instant::now();
    let n = tokio::task::spawn_blocking(move || read_all(&p)).await??;
    let mount_read = mibps(n, t.elapsed());
    println!(
        "mount: write {mount_write:.1} MiB/s, read {mount_read:.1} MiB/s (cold {mount_read_cold:.1})"
    );
    tokio::task::spawn_blocking(move || m.unmount()).await??;

    // The S3 gateway, driven by curl (SigV4), in this process.
    let me = client.who_am_i().await?.user;
    let (key, secret) = shale_access::s3::create_key(&client, &me).await?;
    client.mkdir("/bench", false).await?;
    let gw = shale_access::s3::Gateway::new(client.clone(), cluster.masters.clone()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/bench/object", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(shale_access::s3::serve(listener, gw, async move {
        let _ = stop_rx.await;
    }));
    let src = tmp.path().join("s3-source.bin");
    write_from_pool(&mut std::fs::File::create(&src)?, &pool, size)?;
    let curl = |args: Vec<String>| {
        let (key, secret, url) = (key.clone(), secret.clone(), url.clone());
        tokio::task::spawn_blocking(move || -> Result<std::time::Duration, BoxError> {
            let t = Instant::now();
            let out = std::process::Command::new("curl")
                .args([
                    "-sS",
                    "--fail",
                    "--aws-sigv4",
                    "aws:amz:us-east-1:s3",
                    "--user",
                ])
                .arg(format!("{key}:{secret}"))
                .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
                .args(&args)
                .arg(&url)
                .output()
                .map_err(|e| format!("cannot run curl (install it): {e}"))?;
            if !out.status.success() {
                return Err(
                    format!("curl failed: {}", String::from_utf8_lossy(&out.stderr)).into(),
                );
            }
            Ok(t.elapsed())
        })
    };
    let s3_put = mibps(
        size,
        curl(vec!["-T".into(), src.display().to_string()]).await??,
    );
    if client.stat("/bench/object").await?.length != size {
        return Err("the S3 PUT stored another length".into());
    }
    drop_caches();
    let get = || curl(vec!["-o".into(), "/dev/null".into()]);
    let s3_get_cold = mibps(size, get().await??);
    let s3_get = mibps(size, get().await??);
    println!("s3 (curl): put {s3_put:.1} MiB/s, get {s3_get:.1} MiB/s (cold {s3_get_cold:.1})");
    let _ = stop_tx.send(());
    let _ = server.await;
    drop(cluster);
    print_json(vec![
        ("bench", json!("access")),
        ("size_mib", json!(a.size_mib)),
        ("caches_dropped", json!(dropped)),
        ("native_write_MiBps", json!(r1(native_write))),
        ("native_read_MiBps", json!(r1(native_read))),
        ("native_read_cold_MiBps", json!(r1(native_read_cold))),
        ("mount_write_MiBps", json!(r1(mount_write))),
        ("mount_read_MiBps", json!(r1(mount_read))),
        ("mount_read_cold_MiBps", json!(r1(mount_read_cold))),
        ("mount_write_ratio", json!(r3(mount_write / native_write))),
        ("mount_read_ratio", json!(r3(mount_read / native_read))),
        (
            "mount_read_cold_ratio",
            json!(r3(mount_read_cold / native_read_cold)),
        ),
        ("s3_put_MiBps", json!(r1(s3_put))),
        ("s3_get_MiBps", json!(r1(s3_get))),
        ("s3_get_cold_MiBps", json!(r1(s3_get_cold))),
        ("s3_put_ratio", json!(r3(s3_put / native_write))),
        ("s3_get_ratio", json!(r3(s3_get / native_read))),
    ]);
    Ok(())
}
