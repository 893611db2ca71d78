//! The data path end to end with real processes (3 masters, 3 chunkservers, 1 MiB chunks):
//! put/get of assorted sizes; a chunkserver killed mid-put; replicas corrupted on disk; the
//! master leader killed mid-put; atomic overwrite under concurrent reads; bad input.
//!
//! One scenario per cluster, run serially in one test: multi-process tests must not starve
//! each other on 2 cores.
mod common;

use common::*;
use shale_client::{Client, ClientConfig, ClientError};
use shale_proto::metapb::{LocationsRequest, MkdirRequest};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Multi-process tests run one at a time (2 cores).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn put(c: &Client, path: &str, bytes: &[u8]) -> u64 {
    c.put(path, bytes, true, &|_| {}).await.expect("put")
}

async fn get(c: &Client, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    c.get(path, &mut out, &|_| {}).await.expect("get");
    out
}

/// Starts a put in another task and returns once it has written `progress_at_least` bytes.
async fn put_in_background(
    addrs: &[String],
    path: &str,
    bytes: Vec<u8>,
    progress_at_least: u64,
) -> tokio::task::JoinHandle<shale_client::Result<u64>> {
    let done = Arc::new(AtomicU64::new(0));
    let task = {
        let (addrs, path, done) = (addrs.to_vec(), path.to_string(), done.clone());
        tokio::spawn(async move {
            let c = Client::connect(&addrs, common::client_config())
                .await
                .expect("connect");
            c.put(&path, &bytes[..], true, &|d| {
                done.store(d, Ordering::Relaxed)
            })
            .await
        })
    };
    let deadline = Instant::now() + WAIT;
    while done.load(Ordering::Relaxed) < progress_at_least {
        assert!(Instant::now() < deadline, "put made no progress");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    task
}

fn chunk_files(cluster: &Cluster) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for cs in &cluster.chunkservers {
        if let Ok(rd) = std::fs::read_dir(cs.data.join("chunks")) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "chunk") {
                    v.push(e.path());
                }
            }
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_path_end_to_end() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, 1).await;
    let addrs = cluster.master_addrs();
    let c = Client::connect(&addrs, common::client_config())
        .await
        .expect("connect");

    // Sizes: empty, one byte, exactly 3 chunks, 3 chunks + 1, 2.5 chunks.
    for (i, len) in [0, 1, 3 * MIB, 3 * MIB + 1, 5 * MIB / 2]
        .into_iter()
        .enumerate()
    {
        let bytes = data(len, i as u64);
        let path = format!("/f{i}");
        assert_eq!(put(&c, &path, &bytes).await, len as u64);
        assert_eq!(get(&c, &path).await, bytes, "{path} ({len} bytes)");
        let st = c.stat(&path).await.expect("stat");
        assert_eq!(st.length, len as u64);
        assert_eq!(st.chunks as usize, len.div_ceil(MIB));
        // Each chunk's length is in its location: full chunks, then the tail.
        let l = c.chunk_locations(&path).await.expect("locations");
        let lengths: Vec<u64> = l.chunks.iter().map(|ch| ch.length).collect();
        let want: Vec<u64> = (0..len.div_ceil(MIB))
            .map(|k| (len - k * MIB).min(MIB) as u64)
            .collect();
        assert_eq!(lengths, want, "{path}");
    }
    let ranged = c
        .read_range("/f3", MIB as u64 - 10, 20)
        .await
        .expect("range");
    assert_eq!(&ranged[..], &data(3 * MIB + 1, 3)[MIB - 10..MIB + 10]);

    // Replicas corrupted on disk: two of three replicas of every chunk of /f2 damaged; get still
    // returns exact bytes, and the corruption reaches the master (the replicas drop out of the
    // locations).
    let before: Vec<_> = chunk_files(&cluster);
    let locs = on_leader(&addrs, |mut m| async move {
        m.get_chunk_locations(LocationsRequest {
            client_host: String::new(),
            path: "/f2".into(),
            offset: 0,
            length: 0,
            follower_read: false,
        })
        .await
    })
    .await
    .expect("locations");
    let mut corrupted = 0;
    for ch in &locs.chunks {
        // The two replicas a reader tries first: with equally loaded replicas, it starts at
        // replica `index % 3` (parallel fetches spread over the replicas).
        let n = ch.replicas.len();
        for r in (0..2).map(|k| &ch.replicas[(ch.index as usize + k) % n]) {
            let cs = cluster
                .chunkservers
                .iter()
                .find(|p| p.addr == r.address)
                .expect("replica on a known chunkserver");
            let file = cs
                .data
                .join("chunks")
                .join(format!("{:016x}.chunk", ch.chunk_id));
            let mut b = std::fs::read(&file).expect("chunk file");
            b[1000] ^= 0xff;
            std::fs::write(&file, b).expect("corrupt");
            corrupted += 1;
        }
    }
    assert_eq!(corrupted, 6);
    assert_eq!(
        get(&c, "/f2").await,
        data(3 * MIB, 2),
        "exact despite corrupt replicas"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let l = on_leader(&addrs, |mut m| async move {
            m.get_chunk_locations(LocationsRequest {
                client_host: String::new(),
                path: "/f2".into(),
                offset: 0,
                length: 0,
                follower_read: false,
            })
            .await
        })
        .await
        .expect("locations");
        // Every corrupt replica the reads ran into is reported and no longer listed.
        if l.chunks.iter().all(|ch| ch.replicas.len() < 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "corruption never reported: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!before.is_empty());
    // ...and the leader re-creates the lost replicas from the healthy one.
    let deadline = Instant::now() + WAIT;
    loop {
        let l = c.chunk_locations("/f2").await.expect("locations");
        if l.chunks.iter().all(|ch| ch.replicas.len() == 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "corrupt replicas never repaired: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(&c, "/f2").await, data(3 * MIB, 2));

    // A chunkserver killed in the middle of a put: only the failed chunk is retried and the
    // file reads back exact.
    let big = data(8 * MIB, 77);
    let put_task = put_in_background(&addrs, "/big", big.clone(), 2 * MIB as u64).await;
    cluster.chunkservers[0].kill9();
    let n = put_task
        .await
        .expect("task")
        .expect("put survives a dead chunkserver");
    assert_eq!(n, big.len() as u64);
    assert_eq!(get(&c, "/big").await, big);

    // The master leader killed in the middle of a put: the put completes after failover.
    let leader_addr = leader(&addrs).await;
    let big2 = data(6 * MIB, 78);
    let put_task = put_in_background(&addrs, "/big2", big2.clone(), MIB as u64).await;
    let li = cluster
        .masters
        .iter()
        .position(|m| m.addr == leader_addr)
        .expect("leader");
    cluster.masters[li].kill9();
    let n = put_task
        .await
        .expect("task")
        .expect("put survives a leader failover");
    assert_eq!(n, big2.len() as u64);
    let live: Vec<String> = addrs
        .iter()
        .filter(|a| **a != leader_addr)
        .cloned()
        .collect();
    let c2 = Client::connect(&live, common::client_config())
        .await
        .expect("connect");
    assert_eq!(get(&c2, "/big2").await, big2);

    // Overwrite is atomic: a concurrent reader sees the old or the new file, never a mix.
    let (old, new) = (vec![b'a'; 2 * MIB + 5], vec![b'b'; 2 * MIB + 5]);
    put(&c2, "/ow", &old).await;
    let writer = {
        let (live, old, new) = (live.clone(), old.clone(), new.clone());
        tokio::spawn(async move {
            let c = Client::connect(&live, common::client_config())
                .await
                .expect("connect");
            for i in 0..6 {
                let v = if i % 2 == 0 { &new } else { &old };
                c.put("/ow", &v[..], true, &|_| {})
                    .await
                    .expect("overwrite");
            }
        })
    };
    let mut seen = 0;
    while !writer.is_finished() {
        let mut out = Vec::new();
        if c2.get("/ow", &mut out, &|_| {}).await.is_ok() {
            assert!(
                out == old || out == new,
                "a reader saw a mix of two versions"
            );
            seen += 1;
        }
    }
    writer.await.expect("writer");
    assert!(seen > 0, "the reader never completed a read");

    bad_input(&c2, &live).await;
    let cs = &cluster.chunkservers[1];
    oversize_frame(&cs.addr, &cs.data, &c2, &live).await;
}

/// A chunkserver given a frame over the size limit refuses it clearly, stores nothing, and keeps
/// serving.
async fn oversize_frame(addr: &str, data_dir: &std::path::Path, c: &Client, masters: &[String]) {
    use shale_proto::metapb::{AllocateChunkRequest, CreateRequest};
    use shale_proto::pb::write_chunk_request::Kind;
    use shale_proto::pb::{ChunkRef, WriteChunkRequest, WriteHeader};
    // A real allocation on this server alone (one replica, this server's host label leads),
    // so that the write carries a valid token and only the frame is wrong.
    let host = c
        .status()
        .await
        .expect("status")
        .chunkservers
        .iter()
        .find(|s| s.address == addr)
        .expect("registered")
        .host
        .clone();
    let created = common::on_leader(masters, |mut m| async move {
        m.create(CreateRequest {
            path: "/oversize".into(),
            overwrite: false,
            replication: 1,
            chunk_size: 0,
            client_id: 77,
            lease_ms: 60_000,
            mode: None,
            request_id: None,
        })
        .await
    })
    .await
    .expect("create");
    let alloc = common::on_leader(masters, |mut m| {
        let host = host.clone();
        async move {
            m.allocate_chunk(AllocateChunkRequest {
                file: created.file,
                client_id: 77,
                index: 0,
                exclude: vec![],
                client_host: host,
                request_id: None,
            })
            .await
        }
    })
    .await
    .expect("allocate");
    assert_eq!(
        alloc.pipeline[0].address, addr,
        "the allocation is elsewhere"
    );
    let mut cs = common::chunk_client(addr).max_encoding_message_size(16 << 20);
    let msgs = vec![
        WriteChunkRequest {
            kind: Some(Kind::Header(WriteHeader {
                chunk: Some(ChunkRef {
                    chunk_id: alloc.chunk_id,
                    version: alloc.version,
                }),
                downstream: vec![],
                length: 5 << 20,
                node_id: alloc.pipeline[0].node_id,
                token: alloc.token.clone(),
            })),
        },
        WriteChunkRequest {
            kind: Some(Kind::Data(vec![0u8; 5 << 20].into())),
        },
    ];
    let err = cs
        .write_chunk(tokio_stream::iter(msgs))
        .await
        .expect_err("an oversize frame must be refused");
    assert!(
        matches!(
            err.code(),
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{err:?}"
    );
    // Still serving, and nothing was stored.
    assert_eq!(get(c, "/f1").await, data(1, 1));
    let stem = format!("{:016x}", alloc.chunk_id);
    let left: Vec<_> = std::fs::read_dir(data_dir.join("chunks"))
        .expect("chunk dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&stem))
        .collect();
    assert!(
        left.is_empty(),
        "the refused chunk left files behind: {left:?}"
    );
}

async fn bad_input(c: &Client, masters: &[String]) {
    // Missing path.
    let mut out = Vec::new();
    match c.get("/nope", &mut out, &|_| {}).await {
        Err(ClientError::NotFound(m)) => assert!(m.contains("/nope"), "{m}"),
        other => panic!("get of a missing path: {other:?}"),
    }
    // Put onto a directory changes nothing.
    on_leader(masters, |mut m| async move {
        m.mkdir(MkdirRequest {
            request_id: None,
            path: "/dir".into(),
            parents: true,
            mode: None,
        })
        .await
    })
    .await
    .expect("mkdir");
    match c.put("/dir", &b"x"[..], true, &|_| {}).await {
        Err(ClientError::FailedPrecondition(m)) => assert!(m.contains("is a directory"), "{m}"),
        other => panic!("put onto a directory: {other:?}"),
    }
    assert!(c.stat("/dir").await.expect("stat").is_dir);
    // A wrong master address: a clear error, quickly.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = free.local_addr().expect("addr").to_string();
    drop(free);
    let cfg = ClientConfig {
        retry_for: Duration::from_secs(1),
        ..common::client_config()
    };
    match Client::connect(std::slice::from_ref(&dead), cfg.clone()).await {
        Err(ClientError::Unavailable(m)) => assert!(m.contains(&dead), "{m}"),
        other => panic!("connect to a dead address: {:?}", other.map(|_| ())),
    }
    match Client::connect(&["not-an-address".into()], cfg).await {
        Err(ClientError::InvalidArgument(_)) => {}
        other => panic!("bad address: {:?}", other.map(|_| ())),
    }
}

/// A stopped chunkserver in a write pipeline is found by lack of progress and blamed, and the
/// chunk goes elsewhere: a put does not wait for a total timeout (30 s to 120 s before). As the
/// pipeline's head, it is blamed by the client when its data port does not answer the header
/// (on a kept connection) or the TLS handshake (on a new one) within `header_wait`; further
/// down, by the replica before it (the same bound on the data port; HTTP/2 pings unanswered
/// for 2 s, or no frame taken for 5 s, over gRPC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_does_not_stall_puts() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(4, 1).await;
    let addrs = cluster.master_addrs();
    // Pipelines start on the client's host when a chunkserver is there: `cs1` is the one
    // stopped below, `cs2` another.
    let on = |host: &str| ClientConfig {
        host: host.into(),
        ..common::client_config()
    };
    let kept = Client::connect(&addrs, on("cs1")).await.expect("connect");
    let fresh = Client::connect(&addrs, on("cs1")).await.expect("connect");
    let below = Client::connect(&addrs, on("cs2")).await.expect("connect");
    let body = data(3 << 20, 9);
    // Leaves `kept` an idle data-port connection to `cs1`.
    put(&kept, "/warm", &body).await;
    // Stop `cs1`, and write at once (before the masters see it as stale, so it is placed in
    // pipelines).
    let victim = cluster.chunkservers[0]
        .child
        .as_ref()
        .map(|ch| ch.id() as i32)
        .expect("pid");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(victim, libc::SIGSTOP) };
    // Four replicas on four servers: every pipeline includes the stopped one.
    let opts = shale_client::CreateOptions::default().replication(4);
    let timed = |c: &Client, path: &'static str| {
        let (c, opts, body) = (c.clone(), opts.clone(), body.clone());
        async move {
            let t0 = std::time::Instant::now();
            let r = c.put_with(path, &body[..], &opts, &|_| {}).await;
            (path, r, t0.elapsed())
        }
    };
    let runs = futures_util::future::join3(
        timed(&kept, "/head-kept"),
        timed(&fresh, "/head-new"),
        timed(&below, "/below"),
    )
    .await;
    // SAFETY: as above.
    unsafe { libc::kill(victim, libc::SIGCONT) };
    for (path, r, took) in [runs.0, runs.1, runs.2] {
        r.unwrap_or_else(|e| panic!("put {path} with a stopped replica: {e}"));
        eprintln!("a put ({path}) with a stopped replica in its pipelines took {took:?}");
        assert!(
            took < std::time::Duration::from_secs(12),
            "a stopped replica stalled the put of {path} for {took:?}"
        );
        assert!(get(&below, path).await == body, "{path}");
    }
}
