//! Self-healing with real processes (3 masters, 4 chunkservers, 1 MiB chunks, short timeouts):
//! a chunkserver killed with `kill -9` → fsck non-zero, then every chunk back to 3 live replicas
//! and fsck clean; a replica corrupted on disk is found by the scrubber and re-created; a deleted
//! file's chunk files disappear from the disks; a returning server's extra replicas are trimmed.
mod common;

use common::*;
use shale_client::{Client, ClientConfig};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn fsck(masters: &[String]) -> bool {
    Command::new(env!("CARGO_BIN_EXE_shale"))
        .args(["--masters", &masters.join(","), "fsck", "/"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run fsck")
        .status
        .success()
}

/// Replica counts (alive only) per chunk of `path`.
async fn alive_replicas(c: &Client, path: &str) -> Vec<usize> {
    c.chunk_locations(path)
        .await
        .expect("locations")
        .chunks
        .iter()
        .map(|ch| ch.replicas.iter().filter(|r| r.alive).count())
        .collect()
}

async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(40);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn chunk_files(dir: &Path, chunk_id: u64) -> bool {
    dir.join("chunks")
        .join(format!("{chunk_id:016x}.chunk"))
        .exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_heals_itself() {
    let mut cluster = Cluster::start_with(
        4,
        1,
        &[
            "--stale-after-ms",
            "600",
            "--dead-after-ms",
            "2500",
            "--safe-mode-ms",
            "300",
            "--heal-interval-ms",
            "200",
        ],
        &["--scrub-mib-per-s", "200", "--scrub-every-s", "1"],
    )
    .await;
    let masters = cluster.master_addrs();
    let c = Client::connect(&masters, ClientConfig::default())
        .await
        .expect("connect");
    let data: Vec<u8> = (0..5 * MIB + 7).map(|i| (i * 7 % 251) as u8).collect();
    c.put("/f", &data[..], true, &|_| {}).await.expect("put");
    c.put("/doomed", &data[..2 * MIB], true, &|_| {})
        .await
        .expect("put");
    assert!(fsck(&masters), "fsck clean at the start");

    // kill -9 a chunkserver: fsck reports the risk, then healing restores 3 live replicas.
    cluster.chunkservers[0].kill9();
    wait_until("fsck notices the dead server", || async { !fsck(&masters) }).await;
    wait_until("every chunk has 3 live replicas again", || async {
        alive_replicas(&c, "/f").await.iter().all(|n| *n == 3)
            && alive_replicas(&c, "/doomed").await.iter().all(|n| *n == 3)
    })
    .await;
    assert!(fsck(&masters), "fsck clean after healing");
    let mut back = Vec::new();
    c.get("/f", &mut back, &|_| {}).await.expect("get");
    assert_eq!(back, data);

    // Corrupt one replica on disk: the scrubber finds it, it is quarantined and re-created.
    let locs = c.chunk_locations("/f").await.expect("locations");
    let ch = &locs.chunks[1];
    let victim = &ch.replicas[0];
    let cs = cluster
        .chunkservers
        .iter()
        .find(|p| p.addr == victim.address)
        .expect("victim chunkserver");
    let file = cs
        .data
        .join("chunks")
        .join(format!("{:016x}.chunk", ch.chunk_id));
    let mut b = std::fs::read(&file).expect("replica file");
    b[4096] ^= 0x5a;
    std::fs::write(&file, b).expect("corrupt");
    let quarantine = cs.data.join("chunks").join("quarantine");
    wait_until("the scrubber quarantines the corrupt replica", || async {
        std::fs::read_dir(&quarantine).is_ok_and(|d| d.count() > 0)
    })
    .await;
    wait_until("the corrupt replica is re-created", || async {
        alive_replicas(&c, "/f").await.iter().all(|n| *n == 3)
    })
    .await;
    let mut back = Vec::new();
    c.get("/f", &mut back, &|_| {}).await.expect("get");
    assert_eq!(back, data);

    // A deleted file's chunk files disappear from every live chunkserver's disk.
    let doomed: Vec<u64> = c
        .chunk_locations("/doomed")
        .await
        .expect("locations")
        .chunks
        .iter()
        .map(|ch| ch.chunk_id)
        .collect();
    c.delete("/doomed", false).await.expect("delete");
    let live_dirs: Vec<std::path::PathBuf> = cluster.chunkservers[1..]
        .iter()
        .map(|p| p.data.clone())
        .collect();
    wait_until("deleted chunks leave the disks", || {
        let (dirs, ids) = (live_dirs.clone(), doomed.clone());
        async move {
            dirs.iter()
                .all(|d| ids.iter().all(|id| !chunk_files(d, *id)))
        }
    })
    .await;

    // The killed server comes back with old replicas: the extra replicas are trimmed, and its
    // copies of the deleted file are deleted.
    let old = cluster.chunkservers[0].data.clone();
    cluster.chunkservers[0] = ChunkProc::start_with(
        &masters,
        "cs1",
        &old,
        &["--scrub-mib-per-s", "200", "--scrub-every-s", "1"],
    );
    cluster.wait_chunkservers(4).await;
    wait_until("over-replication is trimmed back to 3", || async {
        let f = c.chunk_locations("/f").await.expect("locations");
        f.chunks.iter().all(|ch| ch.replicas.len() == 3)
    })
    .await;
    wait_until(
        "the returning server drops the deleted file's chunks",
        || {
            let (dir, ids) = (old.clone(), doomed.clone());
            async move { ids.iter().all(|id| !chunk_files(&dir, *id)) }
        },
    )
    .await;
    assert!(fsck(&masters));
}
