//! The client crate as a library, against a real cluster (issue: the CLI and client library):
//! a cancelled `put` releases its path at once (item 3); a `FileWriter` publishes at close and
//! abandons when dropped; a `FileReader` seeks and reads ahead across chunks; listings stream
//! page by page; errors have kinds; connecting to nothing fails fast and says where it looked;
//! a call waiting on a leader that stopped answering moves to the new leader soon after the
//! election, not after the call's timeout; `settle` after a dropped writer waits for its abandon.
mod common;

use common::*;
use futures_util::TryStreamExt;
use shale_client::{Client, ClientError, CreateOptions};
use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, ReadBuf};

/// A source that yields `left` bytes and then never anything more (a stuck pipe).
struct Stall {
    left: usize,
    stalled: Arc<AtomicBool>,
}

impl AsyncRead for Stall {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            self.stalled.store(true, Ordering::SeqCst);
            return Poll::Pending;
        }
        let n = self.left.min(buf.remaining());
        buf.put_slice(&vec![7u8; n]);
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}

/// Until `path` can be created by `c` (bounded by `within`): how long it took.
async fn free_within(c: &Client, path: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        match c.put(path, &b"mine"[..], false, &|_| {}).await {
            Ok(_) => return t0.elapsed(),
            Err(ClientError::FailedPrecondition(m)) if t0.elapsed() < within => {
                assert!(m.contains("being written"), "{m}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{path} still not free after {:?}: {e}", t0.elapsed()),
        }
    }
}

fn data(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// Multi-process tests run one at a time (2 cores).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_library() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, 1).await;
    let masters = cluster.master_addrs();
    let c = Client::builder()
        .masters(masters.clone())
        .transport(common::admin())
        .connect()
        .await
        .expect("connect");
    let other = Client::connect(&masters, common::client_config())
        .await
        .expect("connect");
    assert!(format!("{c:?}").contains("Client"));

    // Item 3: a put future dropped part-way stops renewing its lease and abandons the file.
    let stalled = Arc::new(AtomicBool::new(false));
    let src = Stall {
        left: 3 << 20,
        stalled: stalled.clone(),
    };
    let c2 = c.clone();
    let task = tokio::spawn(async move { c2.put("/cancelled", src, false, &|_| {}).await });
    let t0 = Instant::now();
    while !stalled.load(Ordering::SeqCst) {
        assert!(t0.elapsed() < WAIT, "the put never drained its source");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match other.put("/cancelled", &b"x"[..], false, &|_| {}).await {
        Err(ClientError::FailedPrecondition(m)) => assert!(m.contains("being written"), "{m}"),
        r => panic!("the path should be held by the first put: {r:?}"),
    }
    task.abort();
    let _ = task.await;
    assert!(
        c.settle(Duration::from_secs(5)).await,
        "abandon never ended"
    );
    let took = free_within(&other, "/cancelled", Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(3), "{took:?}");

    // FileWriter: visible only at close, with the bytes written.
    let body = data(2_500_000, 1);
    let mut w = c
        .create("/w", CreateOptions::default())
        .await
        .expect("create");
    for part in body.chunks(300_001) {
        w.write_all(part).await.expect("write");
    }
    assert!(matches!(c.stat("/w").await, Err(ClientError::NotFound(_))));
    assert_eq!(w.close().await.expect("close"), body.len() as u64);
    let st = c.stat("/w").await.expect("stat");
    assert_eq!((st.length, st.chunks), (body.len() as u64, 3));
    // A create over an existing file fails at once, and names it.
    match c.create("/w", CreateOptions::default()).await {
        Err(e @ ClientError::AlreadyExists(_)) => assert!(!e.is_retryable()),
        r => panic!("create over /w: {r:?}"),
    }
    // Dropped without close: nothing visible, the old file intact, the path free at once.
    let mut w = c
        .create("/w", CreateOptions::default().overwrite(true))
        .await
        .expect("create");
    w.write_all(&data(1_500_000, 2)).await.expect("write");
    drop(w);
    assert!(c.settle(Duration::from_secs(5)).await);
    let mut back = Vec::new();
    c.get("/w", &mut back, &|_| {}).await.expect("get");
    assert!(back == body, "a dropped writer changed /w");
    let mut w = other
        .create(
            "/w",
            CreateOptions::default().overwrite(true).replication(2),
        )
        .await
        .expect("the path is free again");
    w.write_all(b"short").await.expect("write");
    w.shutdown().await.expect("shutdown publishes");
    let st = c.stat("/w").await.expect("stat");
    assert_eq!((st.length, st.replication), (5, 2));

    // FileReader: whole, and at random positions across chunk boundaries.
    let body = data(3_300_000, 3);
    c.put("/r", &body[..], false, &|_| {}).await.expect("put");
    let mut r = c.open("/r").await.expect("open");
    assert_eq!(r.len(), body.len() as u64);
    let mut all = Vec::new();
    r.read_to_end(&mut all).await.expect("read");
    assert!(all == body, "read_to_end differs");
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..40 {
        let at = rng.u64(0..body.len() as u64);
        let n = rng.usize(1..1_500_000);
        r.seek(SeekFrom::Start(at)).await.expect("seek");
        let mut buf = vec![0u8; n];
        let got = read_up_to(&mut r, &mut buf).await;
        let end = (at as usize + n).min(body.len());
        assert_eq!(got, end - at as usize, "at {at} n {n}");
        assert!(buf[..got] == body[at as usize..end], "bytes at {at} n {n}");
    }
    assert_eq!(
        r.seek(SeekFrom::End(-10)).await.expect("seek"),
        body.len() as u64 - 10
    );
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).await.expect("tail");
    assert!(tail == body[body.len() - 10..]);
    assert!(r
        .seek(SeekFrom::Current(-(body.len() as i64) - 1))
        .await
        .is_err());
    assert_eq!(
        c.read_range("/r", 1_048_000, 1000).await.expect("range")[..],
        body[1_048_000..1_049_000]
    );

    // Listings stream page by page (pages hold 1000 entries).
    c.mkdir("/many", false).await.expect("mkdir");
    let names: Vec<String> = (0..1010).map(|i| format!("/many/d{i:04}")).collect();
    for batch in names.chunks(64) {
        futures_util::future::try_join_all(batch.iter().map(|n| c.mkdir(n, false)))
            .await
            .expect("mkdirs");
    }
    let streamed: Vec<_> = c
        .list_stream("/many")
        .try_collect::<Vec<_>>()
        .await
        .expect("stream");
    assert_eq!(streamed.len(), 1010);
    assert!(streamed.windows(2).all(|w| w[0].name < w[1].name));
    assert_eq!(c.list("/many").await.expect("list").len(), 1010);

    // A mkdir that took effect reports success even when a concurrent `rm -r` removes the
    // directory before the reply (it read the path back and said NOT_FOUND).
    let races = (0..4).map(|i| {
        let c = c.clone();
        async move {
            for _ in 0..60 {
                if i % 2 == 0 {
                    c.mkdir("/race/a/b", true)
                        .await
                        .expect("mkdir -p never fails here");
                } else {
                    match c.delete("/race", true).await {
                        Ok(()) | Err(ClientError::NotFound(_)) => {}
                        Err(e) => panic!("rm -r: {e}"),
                    }
                }
            }
        }
    });
    futures_util::future::join_all(races).await;

    // Error kinds.
    match c.open("/nope").await {
        Err(e @ ClientError::NotFound(_)) => {
            assert!(!e.is_retryable());
            assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::NotFound);
        }
        r => panic!("open /nope: {r:?}"),
    }
    assert!(matches!(
        c.rename_no_replace("/r", "/w").await,
        Err(ClientError::AlreadyExists(_))
    ));
    c.rename_no_replace("/r", "/r2").await.expect("rename");
    assert!(c.exists("/r2").await.expect("exists") && !c.exists("/r").await.expect("exists"));

    // Nothing listening: a fast, telling failure.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let t0 = Instant::now();
    match Client::connect(std::slice::from_ref(&dead), common::client_config()).await {
        Err(e @ ClientError::Unavailable(_)) => {
            assert!(e.is_retryable());
            assert!(e.to_string().contains(&dead), "{e}");
        }
        r => panic!("connect to nothing: {r:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(matches!(
        Client::connect(&["ftp://h:1/x".into()], common::client_config()).await,
        Err(ClientError::InvalidArgument(_))
    ));
}

/// Reads until `buf` is full or the end.
async fn read_up_to(r: &mut shale_client::FileReader, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..]).await.expect("read");
        if n == 0 {
            break;
        }
        got += n;
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_follow_a_failover_without_waiting_for_their_timeout() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(1, 1).await;
    let masters = cluster.master_addrs();
    let c = Client::connect(&masters, common::client_config())
        .await
        .expect("connect");
    for round in 0..2 {
        c.mkdir(&format!("/before{round}"), false)
            .await
            .expect("mkdir");
        let old = c.status().await.expect("status").leader_address;
        let proc_ = cluster
            .masters
            .iter()
            .find(|m| m.addr == old)
            .expect("the leader is one of ours");
        // A stopped leader accepts connections and never answers.
        proc_.signal(libc::SIGSTOP);
        let t0 = Instant::now();
        let r = c.mkdir(&format!("/after{round}"), false).await;
        let took = t0.elapsed();
        proc_.signal(libc::SIGCONT);
        r.expect("mkdir after the failover");
        eprintln!("round {round}: the call took {took:?} across the failover");
        // Election timeouts are 150-300 ms here; the call timeout is 10 s.
        assert!(took < Duration::from_secs(3), "round {round}: {took:?}");
        let now = c.status().await.expect("status");
        assert_ne!(now.leader_address, old, "round {round}");
    }
    // One live chunkserver: a put is not acknowledged on a single replica (min_replicas 2)…
    match c.put("/lonely", &[1u8; 1000][..], false, &|_| {}).await {
        Err(e @ ClientError::ChunkWrite { .. }) => {
            assert!(e.to_string().contains("at least 2"), "{e}")
        }
        r => panic!("a put with one replica was acknowledged: {r:?}"),
    }
    assert!(matches!(
        c.stat("/lonely").await,
        Err(ClientError::NotFound(_))
    ));
    // …unless the file asks for one.
    let one = CreateOptions::default().replication(1);
    c.put_with("/lonely", &[1u8; 1000][..], &one, &|_| {})
        .await
        .expect("a 1-replica file");

    // No live chunkserver as the leader sees it (stopped past the stale bound): an availability
    // problem, retried — not "the cluster is full" (it was RESOURCE_EXHAUSTED, failing puts right
    // after an isolated master was elected).
    let cs = cluster.chunkservers[0]
        .child
        .as_ref()
        .map(|ch| ch.id() as i32)
        .expect("pid");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(cs, libc::SIGSTOP) };
    let t0 = Instant::now();
    while c
        .status()
        .await
        .expect("status")
        .chunkservers
        .iter()
        .any(|s| s.state == "alive")
    {
        assert!(t0.elapsed() < WAIT, "the stopped chunkserver stays alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let impatient = Client::builder()
        .masters(masters.clone())
        .retry_for(Duration::from_secs(1))
        .transport(common::admin())
        .connect()
        .await
        .expect("connect");
    let r = impatient
        .put_with("/nobody", &[1u8; 10][..], &one, &|_| {})
        .await;
    // SAFETY: as above.
    unsafe { libc::kill(cs, libc::SIGCONT) };
    match r {
        Err(e @ ClientError::Unavailable(_)) => {
            assert!(
                e.is_retryable() && e.to_string().contains("no live chunkserver"),
                "{e}"
            )
        }
        r => panic!("a put with no live chunkserver: {r:?}"),
    }
}

/// `settle` right after a writer is dropped waits for the abandon the drop causes: the path is
/// free once it returns. On one runtime thread the dropped writer's task cannot even be
/// cancelled before `settle` starts (it runs when `settle` first yields), so a `settle` that
/// waited only for the clean-ups already registered returned at once with the path still held.
#[tokio::test(flavor = "current_thread")]
async fn settle_waits_for_what_a_dropped_writer_starts() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, 1).await;
    let masters = cluster.master_addrs();
    let c = Client::connect(&masters, common::client_config())
        .await
        .expect("connect");
    let other = Client::connect(&masters, common::client_config())
        .await
        .expect("connect");
    for round in 0..3 {
        let path = format!("/dropped{round}");
        let mut w = c
            .create(&path, CreateOptions::default())
            .await
            .expect("create");
        w.write_all(&data(100_000, round)).await.expect("write");
        drop(w);
        assert!(c.settle(Duration::from_secs(10)).await, "settled");
        let mut w = other
            .create(&path, CreateOptions::default())
            .await
            .expect("the path is free once settle returns");
        w.write_all(b"theirs").await.expect("write");
        w.shutdown().await.expect("shutdown publishes");
        assert_eq!(c.stat(&path).await.expect("stat").length, 6);
    }
}
