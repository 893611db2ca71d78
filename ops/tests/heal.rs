//! Self-healing with real processes (3 masters, 4 chunkservers, 1 MiB chunks, short timeouts):
//! a chunkserver killed with `kill -9` → fsck non-zero, then every chunk back to 3 live replicas
//! and fsck clean; a replica corrupted on disk is found by the scrubber and re-created; a deleted
//! file's chunk files disappear from the disks; a returning server's extra replicas are trimmed.
mod common;

use common::*;
use shale_client::Client;
use shale_proto::metapb::{
    AllocateChunkReply, AllocateChunkRequest, CompleteRequest, CreateRequest,
};
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn fsck(masters: &[String]) -> bool {
    common::shale_cmd()
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
    let c = Client::connect(&masters, common::client_config())
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

    short_put(&mut cluster, &c, &masters).await;
    stale_replica(&cluster, &c).await;
    drain(&cluster, &c, &masters).await;
}

/// A put while only 2 chunkservers live completes with 2 replicas (the client is not blocked);
/// fsck says so meanwhile, and healing restores the third replica once a server returns.
async fn short_put(cluster: &mut Cluster, c: &Client, masters: &[String]) {
    let data: Vec<u8> = (0..3 * MIB / 2).map(|i| (i * 13 % 241) as u8).collect();
    cluster.chunkservers[2].kill9();
    cluster.chunkservers[3].kill9();
    wait_until("two servers dead", || async {
        let l = leader(masters).await;
        status(&l)
            .await
            .chunkservers
            .iter()
            .filter(|s| s.state == "alive")
            .count()
            == 2
    })
    .await;
    c.put("/two", &data[..], true, &|_| {})
        .await
        .expect("put with 2 servers");
    assert!(alive_replicas(c, "/two").await.iter().all(|n| *n == 2));
    assert!(!fsck(masters), "fsck must report the under-replicated file");
    for i in [2, 3] {
        let dir = cluster.chunkservers[i].data.clone();
        cluster.chunkservers[i] = ChunkProc::start_with(
            masters,
            &format!("cs{}", i + 1),
            &dir,
            &["--scrub-mib-per-s", "200", "--scrub-every-s", "1"],
        );
    }
    cluster.wait_chunkservers(4).await;
    wait_until("the 2-replica file gets its third replica", || async {
        alive_replicas(c, "/two").await.iter().all(|n| *n == 3)
    })
    .await;
    assert!(fsck(masters), "fsck clean once healed");
    let mut back = Vec::new();
    c.get("/two", &mut back, &|_| {}).await.expect("get");
    assert_eq!(back, data);
}

/// Writes a whole chunk through a pipeline with raw ChunkService calls.
async fn write_chunk(reply: &AllocateChunkReply, bytes: &[u8]) {
    use shale_proto::pb::chunk_service_client::ChunkServiceClient;
    use shale_proto::pb::write_chunk_request::Kind;
    use shale_proto::pb::WriteChunkRequest;
    let head = &reply.pipeline[0];
    let mut cs: ChunkServiceClient<_> = common::chunk_client(&head.address);
    let msgs = vec![
        WriteChunkRequest {
            kind: Some(Kind::Header(shale_proto::convert::pipeline_header(
                reply,
                bytes.len() as u64,
            ))),
        },
        WriteChunkRequest {
            kind: Some(Kind::Data(bytes.to_vec().into())),
        },
    ];
    let r = cs
        .write_chunk(tokio_stream::iter(msgs))
        .await
        .expect("write");
    assert_eq!(r.into_inner().durable_on.len(), reply.pipeline.len());
}

/// A replica left at an older version (its server missed the retried write) is never served
/// and is deleted.
async fn stale_replica(cluster: &Cluster, c: &Client) {
    let masters = cluster.master_addrs();
    let file = on_leader(&masters, |mut m| async move {
        m.create(CreateRequest {
            request_id: None,
            path: "/stale".into(),
            overwrite: false,
            replication: 3,
            chunk_size: 0,
            client_id: 9,
            lease_ms: 60_000,
            mode: None,
        })
        .await
    })
    .await
    .expect("create")
    .file;
    let alloc = |exclude: Vec<u64>| {
        let masters = masters.clone();
        async move {
            on_leader(&masters, |mut m| {
                let exclude = exclude.clone();
                async move {
                    m.allocate_chunk(AllocateChunkRequest {
                        request_id: None,
                        file,
                        client_id: 9,
                        index: 0,
                        exclude,
                        client_host: String::new(),
                    })
                    .await
                }
            })
            .await
            .expect("allocate")
        }
    };
    let v1 = alloc(vec![]).await;
    write_chunk(&v1, b"version one").await;
    let left_behind = v1.pipeline[0].clone();
    let v2 = alloc(vec![left_behind.node_id]).await;
    assert_eq!(v2.chunk_id, v1.chunk_id);
    assert!(v2.version > v1.version);
    write_chunk(&v2, b"version two").await;
    on_leader(&masters, |mut m| async move {
        m.complete(CompleteRequest {
            chunk_digests: vec![],
            request_id: None,
            file,
            client_id: 9,
            length: 11,
        })
        .await
    })
    .await
    .expect("complete");
    let locs = c.chunk_locations("/stale").await.expect("locations");
    assert!(
        locs.chunks[0]
            .replicas
            .iter()
            .all(|r| r.node_id != left_behind.node_id),
        "the stale replica is never served"
    );
    let mut out = Vec::new();
    c.get("/stale", &mut out, &|_| {}).await.expect("get");
    assert_eq!(out, b"version two");
    let holder = cluster
        .chunkservers
        .iter()
        .find(|p| p.addr == left_behind.address)
        .expect("stale holder");
    let (dir, id) = (holder.data.clone(), v1.chunk_id);
    wait_until("the stale replica is deleted", || {
        let dir = dir.clone();
        async move { !chunk_files(&dir, id) }
    })
    .await;
}

/// Draining a chunkserver moves its replicas elsewhere; then it holds none and nothing is lost.
async fn drain(cluster: &Cluster, c: &Client, masters: &[String]) {
    let st = c.status().await.expect("status");
    let addr = cluster.chunkservers[1].addr.clone();
    let node = st
        .chunkservers
        .iter()
        .find(|cs| cs.address == addr)
        .expect("chunkserver 2")
        .node_id;
    let st = c.admin().drain(node, true).await.expect("drain");
    assert!(st
        .chunkservers
        .iter()
        .any(|cs| cs.node_id == node && cs.draining));
    wait_until("the drained server holds no replicas", || async {
        let s = c.status().await.expect("status");
        s.chunkservers
            .iter()
            .any(|cs| cs.node_id == node && cs.chunks == 0)
    })
    .await;
    assert!(fsck(masters), "nothing lost by the drain");
    let mut out = Vec::new();
    c.get("/f", &mut out, &|_| {})
        .await
        .expect("get after drain");
    assert_eq!(out.len(), 5 * MIB + 7);
}
