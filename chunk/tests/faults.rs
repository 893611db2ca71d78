//! Fault injection on the in-memory backend: torn writes, lost fsyncs, ENOSPC, and a sweep of
//! every crash point of writing, sealing and replacing a chunk.
mod common;

use bytes::Bytes;
use common::{content, cref};
use shale_chunk::backend::mem::{Fault, MemBackend};
use shale_chunk::{ChunkError, ChunkStore, Store, StoreConfig};
use shale_proto::ChunkId;

fn cfg() -> StoreConfig {
    StoreConfig {
        chunk_size_max_bytes: 4 << 20,
        inflight_writes_max: 2,
        ..StoreConfig::default()
    }
}

async fn open(fs: &MemBackend) -> (Store<MemBackend>, shale_chunk::RecoveryReport) {
    Store::open(fs.clone(), cfg()).await.expect("open")
}

/// Writes and seals; returns the first error.
async fn try_put(s: &impl ChunkStore, id: u64, v: u64, len: usize) -> Result<(), ChunkError> {
    let data = content(id, v, len);
    s.create(cref(id, v)).await?;
    for (i, piece) in data.chunks(40_000).enumerate() {
        s.write(
            cref(id, v),
            (i * 40_000) as u64,
            Bytes::copy_from_slice(piece),
        )
        .await?;
    }
    s.seal(cref(id, v)).await.map(|_| ())
}

fn chunk_files(fs: &MemBackend, id: u64) -> Vec<String> {
    let stem = format!("{id:016x}");
    fs.names()
        .into_iter()
        .filter(|n| n.starts_with(&stem))
        .collect()
}

#[tokio::test]
async fn torn_write_fails_the_chunk_and_leaves_nothing() {
    let fs = MemBackend::new(1 << 30);
    let (s, _) = open(&fs).await;
    try_put(&s, 1, 1, 100_000).await.expect("healthy chunk");
    fs.inject(Fault::TornWrite);
    let e = try_put(&s, 2, 1, 300_000).await.expect_err("torn");
    assert!(matches!(e, ChunkError::Failed { .. }), "{e}");
    assert!(e.to_string().contains("partial chunk was removed"), "{e}");
    assert_eq!(s.stat(ChunkId(2)), None);
    assert!(chunk_files(&fs, 2).is_empty(), "{:?}", fs.names());
    // The store keeps working; the chunk can be written again.
    try_put(&s, 2, 1, 300_000).await.expect("retry");
    assert_eq!(
        &s.read(cref(2, 1), 0, 300_000).await.expect("read")[..],
        &content(2, 1, 300_000)[..]
    );
    assert_eq!(s.read(cref(1, 1), 0, 10).await.expect("old").len(), 10);
}

#[tokio::test]
async fn enospc_from_the_disk_is_no_space_and_leaves_nothing() {
    let fs = MemBackend::new(1 << 30);
    let (s, _) = open(&fs).await;
    fs.inject(Fault::NoSpace);
    let e = try_put(&s, 3, 1, 200_000).await.expect_err("enospc");
    assert!(matches!(e, ChunkError::NoSpace { .. }), "{e}");
    assert_eq!(s.stat(ChunkId(3)), None);
    assert!(chunk_files(&fs, 3).is_empty(), "{:?}", fs.names());
    assert_eq!(s.usage().used_bytes, 0);
}

#[tokio::test]
async fn a_lost_fsync_is_detected_after_a_crash_never_served() {
    let fs = MemBackend::new(1 << 30);
    let (s, _) = open(&fs).await;
    fs.inject(Fault::LostFsync);
    try_put(&s, 4, 1, 200_000).await.expect("the disk lied");
    drop(s);
    fs.crash();
    let (s, report) = open(&fs).await;
    assert_eq!(report.sealed_chunks, 0, "{report}");
    assert_eq!(report.quarantined.len(), 1, "{report}");
    assert!(matches!(
        s.read(cref(4, 1), 0, 1).await,
        Err(ChunkError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_sealed_chunk_survives_a_crash_right_after_seal() {
    let fs = MemBackend::new(1 << 30);
    let (s, _) = open(&fs).await;
    try_put(&s, 5, 1, 250_000).await.expect("put");
    drop(s);
    fs.crash();
    let (s, report) = open(&fs).await;
    assert_eq!(report.sealed_chunks, 1, "{report}");
    assert_eq!(
        &s.read(cref(5, 1), 0, 250_000).await.expect("read")[..],
        &content(5, 1, 250_000)[..]
    );
}

/// Kills the machine after every possible number of operations while a chunk is written and
/// sealed (a first version, then a replacing second version), then checks what recovery
/// serves: only a whole version, and the newest one once its seal returned.
#[tokio::test]
async fn every_crash_point_leaves_a_whole_version_or_nothing() {
    for replacing in [false, true] {
        let mut n = 0;
        loop {
            let fs = MemBackend::new(1 << 30);
            let (s, _) = open(&fs).await;
            if replacing {
                try_put(&s, 9, 1, 150_000).await.expect("v1");
            }
            let v = if replacing { 2 } else { 1 };
            let len = 130_000;
            fs.die_after_ops(n);
            let sealed = try_put(&s, 9, v, len).await.is_ok();
            drop(s);
            fs.crash();
            let (s, report) = open(&fs).await;
            let got = s.stat(ChunkId(9));
            match got {
                Some(info) if info.version.get() == v => {
                    let data = s.read(cref(9, v), 0, len as u64).await.expect("new");
                    assert_eq!(&data[..], &content(9, v, len)[..], "crash point {n}");
                }
                Some(info) => {
                    assert!(!sealed, "crash point {n}: acknowledged v{v} lost");
                    assert_eq!(info.version.get(), 1);
                    let data = s.read(cref(9, 1), 0, 150_000).await.expect("old");
                    assert_eq!(&data[..], &content(9, 1, 150_000)[..], "crash point {n}");
                }
                None => {
                    assert!(!sealed, "crash point {n}: acknowledged chunk lost");
                    assert!(
                        !replacing,
                        "crash point {n}: replacement lost both versions"
                    );
                }
            }
            assert!(report.quarantined.is_empty(), "crash point {n}: {report}");
            if sealed {
                break;
            }
            n += 1;
            assert!(n < 100, "seal never completed");
        }
    }
}

/// Kills the machine after every possible number of operations while records are appended to
/// a sealed chunk: recovery serves exactly the acknowledged appends (and possibly the one in
/// flight, whole), never a torn one, and quarantines nothing.
#[tokio::test]
async fn every_crash_point_of_an_append_keeps_what_was_acknowledged() {
    let recs: Vec<Vec<u8>> = (0..3).map(|i| content(5, i + 1, 50_000)).collect();
    let mut n = 0;
    loop {
        let fs = MemBackend::new(1 << 30);
        let (s, _) = open(&fs).await;
        s.append(cref(5, 1), 0, Bytes::from(recs[0].clone()), true)
            .await
            .expect("first record");
        fs.die_after_ops(n);
        let mut acked = 1;
        for r in &recs[1..] {
            let at = (acked * 50_000) as u64;
            if s.append(cref(5, 1), at, Bytes::from(r.clone()), false)
                .await
                .is_err()
            {
                break;
            }
            acked += 1;
        }
        drop(s);
        fs.crash();
        let (s, report) = open(&fs).await;
        assert!(report.quarantined.is_empty(), "crash point {n}: {report}");
        let len = s.stat(ChunkId(5)).expect("chunk kept").length_bytes as usize;
        assert!(
            len == acked * 50_000 || len == (acked + 1) * 50_000,
            "crash point {n}: {len} bytes after {acked} acknowledged records"
        );
        let data = s.read(cref(5, 1), 0, len as u64).await.expect("read");
        assert_eq!(&data[..], &recs.concat()[..len], "crash point {n}");
        if acked == recs.len() {
            break;
        }
        n += 1;
        assert!(n < 100, "appends never completed");
    }
}

#[tokio::test]
async fn bit_flip_at_rest_is_caught_on_read() {
    let fs = MemBackend::new(1 << 30);
    let (s, _) = open(&fs).await;
    try_put(&s, 6, 1, 100_000).await.expect("put");
    fs.flip_bit("0000000000000006.chunk", 99_999).expect("flip");
    let e = s.read(cref(6, 1), 99_000, 1000).await.expect_err("flip");
    assert!(
        matches!(e, ChunkError::ChecksumMismatch { block: 1, .. }),
        "{e}"
    );
    assert_eq!(s.take_quarantine_reports().len(), 1);
}
