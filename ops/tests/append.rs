//! Record append on real processes: concurrent appenders while a chunkserver and the leader
//! master are killed (every acknowledged record exactly once, whole, at its offset; nothing
//! but whole records in the file), retries that return the original offset, the CLI verbs,
//! sealing, and a snapshot's view of a growing file.
mod common;

use common::Cluster;
use shale_client::{AppendOptions, Client, ClientError, RecordId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: u64 = 4;
const RECORDS: u64 = 120;

/// Record `seq` of writer `w`: a line that names itself, of a length that varies.
fn record(w: u64, seq: u64) -> Vec<u8> {
    let pad = ((seq * 7919 + w * 104_729) % 6000 + 1) as usize;
    let mut r = format!("w{w:02}-r{seq:05}-").into_bytes();
    r.extend((0..pad).map(|i| b'a' + ((i as u64 + seq + w) % 26) as u8));
    r.push(b'\n');
    r
}

async fn client(c: &Cluster) -> Client {
    Client::builder()
        .masters(c.master_addrs())
        .transport(common::admin())
        .retry_for(Duration::from_secs(30))
        .connect()
        .await
        .expect("connect")
}

/// Waits (bounded) until `n` more records are acknowledged than `from`.
async fn wait_acks(acked: &Mutex<HashMap<(u64, u64), u64>>, from: usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < from + n {
        assert!(Instant::now() < deadline, "appends stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_is_there_exactly_once_through_crashes() {
    let mut cluster = Cluster::start(4, 1).await;
    client(&cluster)
        .await
        .mkdir("/logs", false)
        .await
        .expect("mkdir");
    let acked: Arc<Mutex<HashMap<(u64, u64), u64>>> = Default::default();
    let failed: Arc<Mutex<Vec<(u64, u64, String)>>> = Default::default();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let c = client(&cluster).await;
        let (acked, failed) = (acked.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            for seq in 0..RECORDS {
                match c.append_record("/logs/events", &record(w, seq)).await {
                    Ok(at) => {
                        acked.lock().unwrap().insert((w, seq), at.offset);
                    }
                    Err(e) => {
                        eprintln!("append {w}/{seq} failed: {e}");
                        failed.lock().unwrap().push((w, seq, e.to_string()))
                    }
                }
            }
        }));
    }
    // A chunkserver dies and comes back; then the leader master dies and comes back.
    let addrs = cluster.master_addrs();
    wait_acks(&acked, 0, 40).await;
    // The primary of the tail being appended to.
    let probe = client(&cluster).await;
    let locs = probe
        .chunk_locations("/logs/events")
        .await
        .expect("locations");
    let tail = locs.chunks.last().expect("a chunk");
    let victim = cluster
        .chunkservers
        .iter()
        .position(|cs| tail.replicas.first().is_some_and(|r| r.address == cs.addr))
        .expect("the tail's primary");
    cluster.chunkservers[victim].kill9();
    wait_acks(&acked, 40, 40).await;
    let (data, masters) = (cluster.chunkservers[victim].data.clone(), addrs.clone());
    let host = format!("cs{}", victim + 1);
    cluster.chunkservers[victim] = common::ChunkProc::start(&masters, &host, &data);
    let leader = common::leader(&addrs).await;
    let li = cluster
        .masters
        .iter()
        .position(|m| m.addr == leader)
        .expect("leader");
    let seen = acked.lock().unwrap().len();
    cluster.masters[li].kill9();
    wait_acks(&acked, seen, 40).await;
    cluster.masters[li].restart();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(180), t)
            .await
            .expect("appenders finish")
            .expect("appender");
    }
    let acked = acked.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    assert!(
        failed.len() < 5,
        "{} appends failed: {failed:?}",
        failed.len()
    );
    // The whole file: only whole records, each once; every acknowledged one at its offset.
    let c = client(&cluster).await;
    let mut bytes = Vec::new();
    let n = c
        .get("/logs/events", &mut bytes, &|_| {})
        .await
        .expect("get");
    assert_eq!(n as usize, bytes.len());
    let mut at = 0usize;
    let mut found: HashMap<(u64, u64), u64> = HashMap::new();
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let head = std::str::from_utf8(&line[..line.len().min(11)]).expect("utf8");
        let w: u64 = head[1..3]
            .parse()
            .unwrap_or_else(|_| panic!("garbage at {at}: {head:?}"));
        let seq: u64 = head[5..10].parse().expect("seq");
        assert_eq!(
            line,
            &record(w, seq)[..],
            "a torn or foreign record at {at}"
        );
        assert!(
            found.insert((w, seq), at as u64).is_none(),
            "record {w}/{seq} twice (second at {at})"
        );
        at += line.len();
    }
    for (k, off) in &acked {
        assert_eq!(
            found.get(k),
            Some(off),
            "acknowledged record {k:?} not at {off}"
        );
    }
    // Unacknowledged (failed) ones may be there or not, never twice (checked above).
    assert!(found.len() >= acked.len());
    // A healthy cluster after healing: fsck passes (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = common::shale_cmd()
            .args(["--masters", &addrs.join(","), "fsck", "/logs"])
            .output()
            .expect("fsck");
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fsck never passed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn shale(masters: &[String], args: &[&str], input: &[u8]) -> std::process::Output {
    let mut cmd = common::shale_cmd();
    cmd.args(["--masters", &masters.join(",")]).args(args);
    common::output_with_input(cmd, input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_return_the_first_offset_and_the_cli_appends_lines() {
    let cluster = Cluster::start(3, 1).await;
    let m = cluster.master_addrs();
    let c = client(&cluster).await;
    // A retried record (same id) lands once and reports its first offset.
    let id = RecordId {
        client: 4242,
        seq: 1,
    };
    let o = AppendOptions::default();
    let first = c
        .append_record_as("/r", id, b"one\n", &o)
        .await
        .expect("append");
    let two = c.append_record("/r", b"two\n").await.expect("append");
    let again = c
        .append_record_as("/r", id, b"one\n", &o)
        .await
        .expect("retry");
    assert_eq!(again, first);
    assert_eq!(two.offset, 4);
    assert_eq!(c.stat("/r").await.expect("stat").length, 8);
    assert_eq!(
        &c.read_range("/r", 0, 100).await.expect("read")[..],
        b"one\ntwo\n"
    );
    // Bad input changes nothing.
    for bad in [&b""[..], &vec![0u8; (1 << 20) + 1][..]] {
        let e = c.append_record("/r", bad).await.expect_err("bad record");
        assert!(matches!(e, ClientError::InvalidArgument(_)), "{e}");
    }
    c.put("/plain", &b"x"[..], false, &|_| {})
        .await
        .expect("put");
    let e = c
        .append_record("/plain", b"y")
        .await
        .expect_err("regular file");
    assert!(matches!(e, ClientError::AlreadyExists(_)), "{e}");
    // A snapshot keeps the length it saw while the file grows.
    c.create_snapshot("/", "s1").await.expect("snapshot");
    c.append_record("/r", b"three\n").await.expect("append");
    assert_eq!(c.stat("/.snapshot/s1/r").await.expect("stat").length, 8);
    let mut snap = Vec::new();
    c.get("/.snapshot/s1/r", &mut snap, &|_| {})
        .await
        .expect("get");
    assert_eq!(snap, b"one\ntwo\n");
    // Readable while being appended, through a reader with seeks.
    let mut r = c.open("/r").await.expect("open");
    let mut all = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut r, &mut all)
        .await
        .expect("read");
    assert_eq!(all, b"one\ntwo\nthree\n");
    // Copying an append file gives a regular file with its bytes.
    c.copy("/r", "/r.copy", &Default::default())
        .await
        .expect("copy");
    assert_eq!(
        &c.read_range("/r.copy", 0, 100).await.expect("read")[..],
        b"one\ntwo\nthree\n"
    );

    // The CLI: lines are records; the same --id run again appends nothing twice.
    let input = b"alpha\nbeta\ngamma";
    let run = || {
        shale(
            &m,
            &["append", "/cli", "-", "--id", "99:1", "--offsets"],
            input,
        )
    };
    let a = run();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(String::from_utf8_lossy(&a.stdout), "0 6\n6 5\n11 5\n");
    let b = run();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(a.stdout, b.stdout);
    let got = shale(&m, &["get", "/cli", "-"], b"");
    assert_eq!(got.stdout, input);
    // Sealed: no more records, a clear error, non-zero exit.
    let s = shale(&m, &["seal", "/cli"], b"");
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let late = shale(&m, &["append", "/cli", "--whole"], b"late");
    assert!(!late.status.success());
    assert!(
        String::from_utf8_lossy(&late.stderr).contains("sealed"),
        "{}",
        String::from_utf8_lossy(&late.stderr)
    );
    let missing = shale(&m, &["append", "/cli", "/no/such/local/file"], b"");
    assert!(!missing.status.success());
    assert_eq!(shale(&m, &["get", "/cli", "-"], b"").stdout, input);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_appends_are_refused_and_change_nothing() {
    use shale_proto::pb::{AppendChunkRequest, ChunkRef};
    let cluster = Cluster::start(3, 1).await;
    let c = client(&cluster).await;
    let first = c.append_record("/h", b"first\n").await.expect("append");
    let locs = c.chunk_locations("/h").await.expect("locations");
    let loc = &locs.chunks[0];
    let primary = &loc.replicas[0];
    let cs = cluster
        .chunkservers
        .iter()
        .find(|p| p.addr == primary.address)
        .expect("primary");
    let mut raw = common::chunk_client(&cs.addr);
    let good = AppendChunkRequest {
        chunk: Some(ChunkRef {
            chunk_id: loc.chunk_id,
            version: loc.version,
        }),
        data: b"forged\n".to_vec().into(),
        offset: None,
        downstream: vec![],
        node_id: primary.node_id,
        token: None,
        chunk_size: 1 << 20,
    };
    let bad = [
        // No token: an authenticated user still needs the masters' write token.
        good.clone(),
        AppendChunkRequest {
            chunk: None,
            ..good.clone()
        },
        AppendChunkRequest {
            node_id: primary.node_id + 100,
            ..good.clone()
        },
        AppendChunkRequest {
            data: Default::default(),
            ..good.clone()
        },
        AppendChunkRequest {
            data: vec![0u8; (1 << 20) + 1].into(),
            ..good.clone()
        },
        AppendChunkRequest {
            chunk_size: 0,
            ..good.clone()
        },
        AppendChunkRequest {
            offset: Some(1 << 40),
            ..good.clone()
        },
    ];
    for req in bad {
        let e = raw.append_chunk(req).await.expect_err("refused");
        assert_ne!(e.code(), tonic::Code::Ok);
    }
    // Nothing changed: the file still holds its one record; the servers still serve.
    assert_eq!(
        &c.read_range("/h", 0, 100).await.expect("read")[..],
        b"first\n"
    );
    let second = c.append_record("/h", b"second\n").await.expect("append");
    assert_eq!(second.offset, first.length);
    // A commit naming a chunk that is not the file's, or bytes on too few replicas, is refused.
    let e = c
        .append_record_as(
            "/h",
            RecordId { client: 5, seq: 1 },
            &[],
            &AppendOptions::default(),
        )
        .await
        .expect_err("empty");
    assert!(matches!(e, ClientError::InvalidArgument(_)), "{e}");
    assert_eq!(c.stat("/h").await.expect("stat").length, 13);
}
