//! The hostile-client regression suite (issue: hardening): what a third-party client written
//! against `proto/*.proto` did to a real cluster, kept as permanent tests. Every case talks raw
//! gRPC to real `shale` processes, as an outside client would.
//!
//! One cluster per test, scenarios run serially inside it: multi-process tests must not starve
//! each other on 2 cores.
mod common;

use common::*;
use shale_proto::convert::pipeline_header;
use shale_proto::metapb::master_service_client::MasterServiceClient;
use shale_proto::metapb::*;
use shale_proto::pb::chunk_service_client::ChunkServiceClient;
use shale_proto::pb::{write_chunk_request::Kind, ChunkRef, WriteChunkRequest, WriteHeader};
use std::time::{Duration, Instant};
use tonic::Code;

/// The tests of this file start clusters: one at a time (2 cores).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn rid(client_id: u64, seq: u64) -> Option<RequestId> {
    Some(RequestId { client_id, seq })
}

fn chunk_client(addr: &str) -> ChunkServiceClient<tonic::transport::Channel> {
    let ch = common::admin()
        .channel(addr, |e| {
            e.connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(20))
        })
        .expect("uri");
    ChunkServiceClient::new(ch)
}

/// Streams `data` as one chunk through the pipeline the master allocated.
async fn write_chunk(
    alloc: &AllocateChunkReply,
    data: &[u8],
) -> Result<shale_proto::pb::WriteChunkResponse, tonic::Status> {
    let head = &alloc.pipeline[0];
    let header = WriteChunkRequest {
        kind: Some(Kind::Header(pipeline_header(alloc, data.len() as u64))),
    };
    let frames = vec![
        header,
        WriteChunkRequest {
            kind: Some(Kind::Data(data.to_vec().into())),
        },
    ];
    chunk_client(&head.address)
        .write_chunk(tokio_stream::iter(frames))
        .await
        .map(|r| r.into_inner())
}

async fn create(addrs: &[String], path: &str, client: u64, seq: u64) -> CreateReply {
    let path = path.to_string();
    on_leader(addrs, |mut c| {
        let path = path.clone();
        async move {
            c.create(CreateRequest {
                path,
                overwrite: false,
                replication: 0,
                chunk_size: 0,
                client_id: client,
                lease_ms: 60_000,
                mode: None,
                request_id: rid(client, seq),
            })
            .await
        }
    })
    .await
    .expect("create")
}

async fn allocate(
    addrs: &[String],
    file: u64,
    client: u64,
    seq: u64,
) -> Result<AllocateChunkReply, tonic::Status> {
    on_leader(addrs, |mut c| async move {
        c.allocate_chunk(AllocateChunkRequest {
            file,
            client_id: client,
            index: 0,
            exclude: vec![],
            client_host: String::new(),
            request_id: rid(client, seq),
        })
        .await
    })
    .await
}

async fn complete(
    addrs: &[String],
    file: u64,
    client: u64,
    length: u64,
    seq: u64,
) -> Result<FileStat, tonic::Status> {
    // Complete may wait a few seconds for replica reports: a longer call timeout than usual.
    let ch = common::admin()
        .channel(&leader(addrs).await, |e| e.timeout(Duration::from_secs(15)))
        .expect("uri");
    MasterServiceClient::new(ch)
        .complete(CompleteRequest {
            chunk_digests: vec![],
            file,
            client_id: client,
            length,
            request_id: rid(client, seq),
        })
        .await
        .map(|r| r.into_inner())
}

/// Items 2 and 8: the master checks a Complete's length against what the replicas hold, and a
/// retried Create / AllocateChunk / Complete is answered with its first reply.
async fn lengths_and_retries(addrs: &[String]) {
    // Retried Create: the same reply, not "being written by another client".
    let c1 = create(addrs, "/retry", 77, 1).await;
    let c2 = create(addrs, "/retry", 77, 1).await;
    assert_eq!(c1, c2);
    // Retried AllocateChunk: the same chunk at the same version.
    let a1 = allocate(addrs, c1.file, 77, 2).await.expect("allocate");
    let a2 = allocate(addrs, c1.file, 77, 2)
        .await
        .expect("allocate again");
    assert_eq!(
        (a1.chunk_id, a1.version),
        (a2.chunk_id, a2.version),
        "a retry bumped the version"
    );
    let data = vec![7u8; 1000];
    let w = write_chunk(&a1, &data).await.expect("write");
    assert_eq!(w.length, 1000);
    // Lies about the length are refused, the truth is accepted, and a retry of it succeeds.
    let lie = complete(addrs, c1.file, 77, 3, 3)
        .await
        .expect_err("3 bytes");
    assert_eq!(lie.code(), Code::InvalidArgument, "{lie:?}");
    let ok = complete(addrs, c1.file, 77, 1000, 4)
        .await
        .expect("complete");
    assert_eq!(ok.length, 1000);
    let again = complete(addrs, c1.file, 77, 1000, 4).await.expect("retry");
    assert_eq!(again.length, 1000);

    // A chunk that was never written: Complete is refused, the file stays invisible.
    let c = create(addrs, "/never-written", 78, 1).await;
    allocate(addrs, c.file, 78, 2).await.expect("allocate");
    let e = complete(addrs, c.file, 78, 5, 3)
        .await
        .expect_err("unwritten");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let l = leader(addrs).await;
    let st = client(&l)
        .await
        .stat(PathRequest {
            path: "/never-written".into(),
            follower_read: false,
        })
        .await
        .expect_err("must stay invisible");
    assert_eq!(st.code(), Code::NotFound);
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Item 4: heartbeats from a node id nobody registered, carrying a million unknown chunks,
/// are refused without growing the leader or costing an election.
async fn unknown_heartbeats(cluster: &Cluster) {
    let addrs = cluster.master_addrs();
    let l = leader(&addrs).await;
    let before = status(&l).await;
    let pid = cluster
        .masters
        .iter()
        .find(|m| m.addr == l)
        .expect("leader")
        .pid();
    let rss0 = rss_kib(pid);
    let chunks: Vec<ReportedChunk> = (0..1_000_000u64)
        .map(|i| ReportedChunk {
            chunk_id: (1 << 40) + i,
            version: 1,
            length: 1,
        })
        .collect();
    for _ in 0..4 {
        let t0 = Instant::now();
        // A real chunkserver's identity: only chunkservers may send heartbeats.
        let ch = common::transport_as(shale_security::Role::Chunkserver, "cs1")
            .channel(&l, |e| e.timeout(Duration::from_secs(30)))
            .expect("uri");
        let mut c = MasterServiceClient::new(ch).max_encoding_message_size(64 << 20);
        let mut req = tonic::Request::new(HeartbeatRequest {
            node_id: 999_999,
            free_bytes: 1 << 50,
            full_report: true,
            chunks: chunks.clone(),
            ..HeartbeatRequest::default()
        });
        req.metadata_mut()
            .insert("shale-node-id", "999999".parse().expect("ascii"));
        let e = c.heartbeat(req).await.expect_err("unknown node");
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let f: Vec<&str> = cpu.split_whitespace().collect();
        eprintln!(
            "heartbeat flood round took {:?}, leader utime {} stime {}, term {}",
            t0.elapsed(),
            f.get(13).unwrap_or(&""),
            f.get(14).unwrap_or(&""),
            status(&l).await.term
        );
    }
    let rss1 = rss_kib(pid);
    let after = status(&l).await;
    assert_eq!(after.term, before.term, "the flood cost an election");
    assert_eq!(after.role, "leader");
    assert!(
        rss1 < rss0 + 120 * 1024,
        "leader grew from {rss0} KiB to {rss1} KiB"
    );
}

/// Temp files (chunks being written) left in a chunkserver's store.
fn temp_files(data: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(data.join("chunks"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp") || n.ends_with(".new"))
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_no_temp_files(cluster: &Cluster) {
    wait_no_temp_files_within(cluster, WAIT).await
}

async fn wait_no_temp_files_within(cluster: &Cluster, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<String> = cluster
            .chunkservers
            .iter()
            .flat_map(|c| temp_files(&c.data))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "temp files left: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type WriteCall = tokio::task::JoinHandle<
    Result<tonic::Response<shale_proto::pb::WriteChunkResponse>, tonic::Status>,
>;

/// Opens a write stream and sends the header and `sent` bytes; returns the call's task and the
/// sender (drop both to abandon the stream; keep the sender to leave it open and silent).
async fn open_write(
    addr: &str,
    header: WriteHeader,
    sent: usize,
) -> (WriteCall, tokio::sync::mpsc::Sender<WriteChunkRequest>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut c = chunk_client(addr);
    let task = tokio::spawn(async move {
        c.write_chunk(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tx.send(WriteChunkRequest {
        kind: Some(Kind::Header(header)),
    })
    .await
    .expect("header");
    if sent > 0 {
        tx.send(WriteChunkRequest {
            kind: Some(Kind::Data(vec![1u8; sent].into())),
        })
        .await
        .expect("data");
    }
    (task, tx)
}

/// Item 3: silent write streams (single and pipelined) are cut off and leave no temp file and
/// no stuck "being written" slot; write streams are bounded.
async fn cancelled_writes(cluster: &Cluster, node_of: &std::collections::HashMap<String, u64>) {
    let cs = &cluster.chunkservers[0];
    let me = node_of[&cs.addr];
    let mut tasks = Vec::new();
    let mut refused = 0;
    // Chunks to write, with the tokens that allow it: one allocation each (every pipeline of
    // this 3-server cluster names this server).
    let addrs = cluster.master_addrs();
    let mut allocs = Vec::new();
    for i in 0..140u64 {
        let client = 5000 + i;
        let c = create(&addrs, &format!("/lone-{i}"), client, 1).await;
        allocs.push(allocate(&addrs, c.file, client, 2).await.expect("allocate"));
    }
    let mut allocs = allocs.into_iter();
    // A 1 MiB write of a chunk to this server alone.
    let mut lone = || {
        let a = allocs.next().expect("allocations");
        WriteHeader {
            chunk: Some(ChunkRef {
                chunk_id: a.chunk_id,
                version: a.version,
            }),
            downstream: vec![],
            length: 1 << 20,
            node_id: me,
            token: a.token,
        }
    };
    for _ in 0..100u64 {
        tasks.push(open_write(&cs.addr, lone(), 4096).await);
    }
    // Let them all reach the server, then cancel every one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (t, _) in &tasks {
        if t.is_finished() {
            refused += 1;
        }
    }
    assert!(
        refused >= 30,
        "write streams are not bounded ({refused} refused)"
    );
    // Streams that fall silent are cut off by the idle timeout (2 s in this cluster) and leave
    // nothing behind.
    wait_no_temp_files(cluster).await;
    drop(tasks);

    // Streams a client abandons part-way (its calls cancelled and connections gone, so the
    // server drops the handlers mid-discard) are discarded at once, well before the idle
    // timeout (2 s here).
    let mut tasks = Vec::new();
    for _ in 0..40u64 {
        tasks.push(open_write(&cs.addr, lone(), 256 << 10).await);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while temp_files(&cs.data).len() < 40 {
        assert!(Instant::now() < deadline, "the 40 writes never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (t, _) in &tasks {
        t.abort();
    }
    drop(tasks);
    wait_no_temp_files_within(cluster, Duration::from_millis(1500)).await;

    // A pipelined write cancelled part-way: no replica keeps anything, and the same chunk can
    // be written again at once.
    let c = create(&addrs, "/cancelled", 79, 1).await;
    let a = allocate(&addrs, c.file, 79, 2).await.expect("allocate");
    let header = pipeline_header(&a, 1 << 20);
    let (t, tx) = open_write(&a.pipeline[0].address, header, 512 << 10).await;
    wait_no_temp_files(cluster).await;
    t.await.expect("call").expect_err("cut off");
    drop(tx);
    let data = vec![3u8; 1 << 20];
    let w = write_chunk(&a, &data)
        .await
        .expect("the slot is free again");
    assert_eq!(w.length, 1 << 20);
    complete(&addrs, c.file, 79, 1 << 20, 3)
        .await
        .expect("complete");
}

/// Item 7: a header whose node id is not the receiver's is refused, and a forwarder checks
/// that the replicas that acknowledge are the ones the pipeline named.
async fn pipeline_integrity(cluster: &Cluster, node_of: &std::collections::HashMap<String, u64>) {
    let addrs = cluster.master_addrs();
    let c = create(&addrs, "/pipeline", 80, 1).await;
    let a = allocate(&addrs, c.file, 80, 2).await.expect("allocate");
    // Head right, second hop: node id of replica 2, address of replica 3.
    let mut wrong = a.clone();
    wrong.pipeline[1].address = a.pipeline[2].address.clone();
    let e = write_chunk(&wrong, &[5u8; 100])
        .await
        .expect_err("the second hop is not who the header says");
    // The chunk token names every replica at its address: the head refuses to forward to an
    // address the master did not name (before it would have found out from the second hop).
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("not good at"), "{e:?}");
    // The head itself addressed under another node's id.
    let other = node_of
        .values()
        .find(|n| **n != a.pipeline[0].node_id)
        .copied()
        .expect("another node");
    let mut lying = a.clone();
    lying.pipeline[0].node_id = other;
    let e = write_chunk(&lying, &[5u8; 100])
        .await
        .expect_err("wrong head");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    wait_no_temp_files(cluster).await;
    let w = write_chunk(&a, &[5u8; 100])
        .await
        .expect("the true pipeline");
    let want: Vec<u64> = a.pipeline.iter().map(|r| r.node_id).collect();
    assert_eq!(w.durable_on, want);
}

/// A message whose field 1 is a varint: wrong wire type for every request whose field 1 is a
/// string or a message.
#[derive(Clone, PartialEq, prost::Message)]
struct WrongWireType {
    #[prost(uint64, tag = "1")]
    x: u64,
}

/// Sends [`WrongWireType`] as the request of `method` (a unary or server-streaming call).
async fn send_malformed(addr: &str, method: &'static str) -> tonic::Status {
    let ch = common::admin()
        .channel(addr, |e| e.timeout(Duration::from_secs(5)))
        .expect("uri");
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.expect("ready");
    let codec: tonic_prost::ProstCodec<WrongWireType, WrongWireType> = Default::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    match grpc
        .server_streaming(tonic::Request::new(WrongWireType { x: 7 }), path, codec)
        .await
    {
        Err(e) => e,
        Ok(mut r) => match r.get_mut().message().await {
            Err(e) => e,
            Ok(m) => panic!("{method} accepted a malformed message: {m:?}"),
        },
    }
}

/// Item 9: errors a client can act on. A message that does not decode is the caller's error
/// (not the server's); no chunkserver able to take a replica is not a transient failure; a client
/// that knows only a follower finds the leader.
async fn actionable_errors(addrs: &[String], chunkserver: &str, nodes: &[u64]) {
    for (addr, method) in [
        (addrs[0].as_str(), "/shale.meta.v1.MasterService/Mkdir"),
        (addrs[1].as_str(), "/shale.meta.v1.MasterService/Create"),
        (chunkserver, "/shale.chunk.v1.ChunkService/ReadChunk"),
    ] {
        let e = send_malformed(addr, method).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{method}: {e:?}");
        assert!(e.message().contains("malformed"), "{method}: {e:?}");
    }

    let c = create(addrs, "/nowhere", 79, 1).await;
    let e = on_leader(addrs, |mut m| async move {
        m.allocate_chunk(AllocateChunkRequest {
            file: c.file,
            client_id: 79,
            index: 0,
            exclude: nodes.to_vec(),
            client_host: String::new(),
            request_id: rid(79, 2),
        })
        .await
    })
    .await
    .expect_err("every node excluded");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");

    let l = leader(addrs).await;
    let follower = addrs.iter().find(|a| **a != l).expect("a follower").clone();
    let t0 = Instant::now();
    let c = shale_client::Client::connect(&[follower], common::client_config())
        .await
        .expect("connect through a follower");
    c.mkdir("/via-follower", true)
        .await
        .expect("mkdir through a follower: the hint names a master not in the list");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_against_a_cluster() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start_with(3, 1, &[], &["--stream-idle-s", "2"]).await;
    let addrs = cluster.master_addrs();
    lengths_and_retries(&addrs).await;
    let node_of: std::collections::HashMap<String, u64> = status(&leader(&addrs).await)
        .await
        .chunkservers
        .iter()
        .map(|c| (c.address.clone(), c.node_id))
        .collect();
    let nodes: Vec<u64> = node_of.values().copied().collect();
    actionable_errors(&addrs, &cluster.chunkservers[0].addr, &nodes).await;
    unknown_heartbeats(&cluster).await;
    cancelled_writes(&cluster, &node_of).await;
    pipeline_integrity(&cluster, &node_of).await;
}

/// Item 1: a tree nested ≈ 32 k levels deep (by renames: no single path can name it) is deleted
/// recursively; every master survives, and survives replaying that log after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_tree_survives_delete_and_replay() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(0, 1).await;
    let addrs = cluster.master_addrs();
    let level = "/a".repeat(2040);
    let deep = |i: usize| format!("/t{i}{level}");
    let mkdir = |p: String| {
        let addrs = addrs.clone();
        async move {
            on_leader(&addrs, |mut c| {
                let path = p.clone();
                async move {
                    c.mkdir(MkdirRequest {
                        path,
                        parents: true,
                        mode: None,
                        request_id: None,
                    })
                    .await
                }
            })
            .await
            .expect("mkdir")
        }
    };
    mkdir(deep(0)).await;
    for i in 1..16 {
        mkdir(deep(i)).await;
        let (src, dst) = (format!("/t{}", i - 1), format!("{}/t{}", deep(i), i - 1));
        on_leader(&addrs, |mut c| {
            let (src, dst) = (src.clone(), dst.clone());
            async move {
                c.rename(RenameRequest {
                    src,
                    dst,
                    request_id: None,
                    no_replace: false,
                })
                .await
            }
        })
        .await
        .expect("rename");
    }
    let l = leader(&addrs).await;
    assert!(status(&l).await.dirs > 32_000);
    on_leader(&addrs, |mut c| async move {
        c.delete(DeleteRequest {
            path: "/t15".into(),
            recursive: true,
            request_id: None,
        })
        .await
    })
    .await
    .expect("recursive delete");
    for m in &cluster.masters {
        assert_eq!(follower_dirs(&m.addr).await, 1, "master {}", m.id);
    }
    // Replay: every master restarts from its log (and snapshot) and comes back.
    for m in cluster.masters.iter_mut() {
        m.restart();
    }
    leader(&addrs).await;
    touch(&addrs, "/after-replay")
        .await
        .expect("write after replay");
    for m in &cluster.masters {
        assert_eq!(follower_dirs(&m.addr).await, 1, "master {}", m.id);
    }
}

/// The directories one master counts, waiting (bounded) for it to catch up.
async fn follower_dirs(addr: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(r) = client(addr).await.status(Empty {}).await {
            let s = r.into_inner();
            if s.dirs == 1 || Instant::now() > deadline {
                return s.dirs;
            }
        }
        assert!(Instant::now() < deadline, "{addr} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `shale ARGS` to its end (bounded); returns (success, stdout + stderr).
fn run_shale(args: &[&str]) -> (bool, String) {
    let mut child = common::shale_cmd()
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("shale {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Item 12: a second master on a live master's data directory, and a debug tool on a live
/// chunkserver's store, are refused; a debug tool never creates a mistyped directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_directories_are_locked() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(1, 1).await;
    let m1 = cluster.masters[0].data.to_string_lossy().into_owned();
    let (ok, out) = run_shale(&[
        "master",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--data",
        &m1,
    ]);
    assert!(!ok && out.contains("in use"), "{out}");
    let store = cluster.chunkservers[0].data.join("chunks");
    let store = store.to_string_lossy().into_owned();
    let (ok, out) = run_shale(&["debug", "chunk-store", &store]);
    assert!(!ok && out.contains("in use"), "{out}");
    let typo = cluster.dir.path().join("no-such-dir");
    let (ok, out) = run_shale(&["debug", "chunk-store", &typo.to_string_lossy()]);
    assert!(!ok && out.contains("not a directory"), "{out}");
    assert!(!typo.exists(), "the debug tool created {typo:?}");
    // The cluster still serves.
    touch(&cluster.master_addrs(), "/still-fine")
        .await
        .expect("still serving");
}
