//! End-to-end integrity (issue: security, item 7): a chunkserver that lies — a sealed
//! replica's bytes replaced *and* its sidecar rewritten to match, so every checksum the server
//! keeps agrees — cannot hand out the forgery. `shale stat` shows the file's root, `shale
//! verify` names the bad replica and exits non-zero, `get` and partial reads (checked block
//! by block) return the original bytes from another replica, and the masters (after reading the replica themselves) drop it and heal
//! the chunk, after which every replica verifies again.
mod common;

use common::*;
use shale_chunk::format::{CrcAccumulator, Sidecar, BLOCK_SIZE_BYTES};
use shale_client::Client;
use shale_proto::metapb::{ChunkLocation, Replica};
use shale_proto::pb::{ChunkDigestsRequest, ChunkRef};
use shale_proto::{ChunkId, ChunkVersion};
use shale_security::digest;
use std::time::{Duration, Instant};

/// Rewrites chunk `id` in the store at `dir` with `forged` bytes and a sidecar that matches
/// them (what a lying or compromised chunkserver would serve).
fn forge(dir: &std::path::Path, id: u64, version: u64, forged: &[u8]) {
    let chunks = dir.join("chunks");
    let data = chunks.join(shale_chunk::names::data(ChunkId(id)));
    let side = chunks.join(shale_chunk::names::sidecar(ChunkId(id)));
    assert_eq!(
        std::fs::metadata(&data).expect("replica data").len(),
        forged.len() as u64
    );
    std::fs::write(&data, forged).expect("forge data");
    let mut acc = CrcAccumulator::new(BLOCK_SIZE_BYTES);
    acc.update(forged);
    let sc = Sidecar {
        block_size: BLOCK_SIZE_BYTES,
        chunk: ChunkId(id),
        version: ChunkVersion(version),
        length: forged.len() as u64,
        block_crcs: acc.finish(),
    };
    std::fs::write(&side, sc.encode()).expect("forge sidecar");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_chunkserver_cannot_hand_out_forged_bytes() {
    let mut cluster = Cluster::start_with(
        4,
        1,
        &["--heal-interval-ms", "200", "--safe-mode-ms", "500"],
        &[],
    )
    .await;
    let masters = cluster.master_addrs();
    let c = Client::connect(&masters, client_config())
        .await
        .expect("connect");
    let data: Vec<u8> = (0..(5u32 << 19)).map(|i| (i * 7 % 253) as u8).collect();
    c.put("/precious", &data[..], Default::default(), &|_| {})
        .await
        .expect("put");
    let st = c.stat("/precious").await.expect("stat");
    assert_eq!(st.root.len(), 32, "no root: {st:?}");
    assert!(c.verify("/precious").await.expect("verify").is_ok());

    // The liar: chunk 0's first replica, stopped, forged consistently, restarted.
    let (_, liar, liar_addr) = plant_liar(&mut cluster, &c, &data, 0).await;

    // `shale verify` names the bad replica and fails.
    let out = shale_cmd()
        .args(["--masters", &masters.join(","), "verify", "/precious"])
        .output()
        .expect("run shale verify");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "verify passed a forged replica: {text}"
    );
    assert!(
        text.contains(&format!("chunk 0 on chunkserver {}", liar.node_id))
            && text.contains("do not match"),
        "{text}"
    );

    // A reader gets the original bytes, whichever replica it tries first.
    for _ in 0..3 {
        let mut back = Vec::new();
        c.get("/precious", &mut back, &|_| {}).await.expect("get");
        assert!(back == data, "a reader got forged bytes");
    }

    // The masters drop the liar's replica, have it deleted and heal the chunk: every replica
    // verifies again and none is the forgery.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = c.verify("/precious").await.expect("verify");
        let bad_listed = c
            .chunk_locations("/precious")
            .await
            .expect("locations")
            .chunks[0]
            .replicas
            .iter()
            .any(|r| r.address == liar_addr && r.node_id == liar.node_id)
            && !v.is_ok();
        if v.is_ok() && v.replicas.iter().filter(|r| r.index == 0).count() >= 3 && !bad_listed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the forged replica was not healed: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut back = Vec::new();
    c.get("/precious", &mut back, &|_| {}).await.expect("get");
    assert!(back == data);

    // Partial reads are checked too, block by block. A new liar for chunk 1, tried first:
    let (ch, liar, liar_addr) = plant_liar(&mut cluster, &c, &data, 1).await;
    // its block digests (computed from its forged bytes) do not merge into the writer's
    // digest, which is how readers catch it;
    let r = chunk_client(&liar_addr)
        .chunk_digests(ChunkDigestsRequest {
            chunk: Some(ChunkRef {
                chunk_id: ch.chunk_id,
                version: ch.version,
            }),
            token: ch.token.clone(),
        })
        .await
        .expect("the liar's digests")
        .into_inner();
    let cvs = digest::cvs_from_bytes(&r.cvs).expect("whole values");
    let root = digest::root_of_cvs(&cvs, ch.length).expect("a root");
    assert_ne!(
        root[..],
        ch.digest[..],
        "the forgery merged into the writer's digest"
    );
    // fresh readers of parts of chunk 1 get the original bytes ...
    let base = 1u64 << 20;
    for (off, len) in [
        (base + 100, 5000u64),
        (base + 70_000, 200_000),
        (base + 1, ch.length - 2),
        (base + ch.length - 10, 20),
    ] {
        let fresh = Client::connect(&masters, client_config())
            .await
            .expect("connect");
        let got = fresh
            .read_range("/precious", off, len)
            .await
            .expect("read_range");
        assert!(
            got[..] == data[off as usize..(off + len) as usize],
            "a partial reader got forged bytes at {off}+{len}"
        );
    }
    // ... and their reports (no one else read the chunk) make the masters drop the liar.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c
        .chunk_locations("/precious")
        .await
        .expect("locations")
        .chunks[1]
        .replicas
        .iter()
        .any(|r| r.node_id == liar.node_id && r.address == liar_addr)
    {
        assert!(
            Instant::now() < deadline,
            "partial readers did not report the liar"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes the replica of chunk `index` of /precious (`data`) that a reader tries first a liar
/// (readers start at replica `index % n` among equally loaded ones): stopped, its bytes and
/// sidecar forged consistently, restarted; waits until it is listed there again.
/// The chunk's location (with a read token), the liar, and its new address.
async fn plant_liar(
    cluster: &mut Cluster,
    c: &Client,
    data: &[u8],
    index: usize,
) -> (ChunkLocation, Replica, String) {
    let masters = cluster.master_addrs();
    // Positions are only stable once every replica is alive and idle (a late heartbeat moves a
    // stale replica to the end of the list, a busy one goes after idle ones).
    let ch = wait_all_alive(c, index).await;
    let at = index % ch.replicas.len();
    let liar = ch.replicas[at].clone();
    let i = cluster
        .chunkservers
        .iter()
        .position(|s| s.addr == liar.address)
        .expect("the liar's process");
    let (dir, host) = (cluster.chunkservers[i].data.clone(), format!("cs{}", i + 1));
    cluster.chunkservers[i].kill9();
    let start = index * (1 << 20);
    let mut forged = data[start..start + ch.length as usize].to_vec();
    for b in forged.iter_mut().step_by(4096) {
        *b ^= 0x5a;
    }
    forge(&dir, ch.chunk_id, ch.version, &forged);
    cluster.chunkservers[i] = ChunkProc::start(&masters, &host, &dir);
    let addr = cluster.chunkservers[i].addr.clone();
    // Wait until the liar is back and listed where it was.
    let deadline = Instant::now() + WAIT;
    loop {
        let l = c.chunk_locations("/precious").await.expect("locations");
        if all_alive(&l.chunks[index])
            && l.chunks[index]
                .replicas
                .get(at)
                .is_some_and(|r| r.address == addr)
        {
            return (l.chunks[index].clone(), liar, addr);
        }
        assert!(
            Instant::now() < deadline,
            "the liar ({addr}, was {liar:?}) never came back at {at}: {:?}",
            l.chunks[index]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether all three replicas of a chunk are listed alive and idle (the master orders
/// replicas by load, then node: only then are positions stable).
fn all_alive(ch: &ChunkLocation) -> bool {
    ch.replicas.len() >= 3 && ch.replicas.iter().all(|r| r.alive && r.load == 0)
}

/// Chunk `index` of /precious once all its replicas are listed alive and idle.
async fn wait_all_alive(c: &Client, index: usize) -> ChunkLocation {
    let deadline = Instant::now() + WAIT;
    loop {
        let l = c.chunk_locations("/precious").await.expect("locations");
        if all_alive(&l.chunks[index]) {
            return l.chunks[index].clone();
        }
        assert!(
            Instant::now() < deadline,
            "chunk {index} never had all replicas alive: {:?}",
            l.chunks[index]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
