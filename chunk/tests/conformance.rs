//! One conformance suite, run against every backend (io_uring, std::fs, in-memory).
mod common;

use bytes::Bytes;
use common::{content, cref, Harness};
use shale_chunk::{ChunkError, ChunkStore, StoreConfig, VerifyAtOpen};
use shale_proto::{ChunkId, ChunkVersion};

const KIB: usize = 1024;

fn cfg() -> StoreConfig {
    StoreConfig {
        chunk_size_max_bytes: 4 << 20,
        ..StoreConfig::default()
    }
}

/// Writes a whole chunk in frames of `frame` bytes and seals it.
async fn put(s: &impl ChunkStore, id: u64, v: u64, len: usize, frame: usize) -> Vec<u8> {
    put_frames(s, id, v, len, frame, false).await
}

/// [`put`], with every frame in a page-aligned buffer of its own if `aligned` (as the data
/// port receives them: the store may write their whole pages without a copy).
async fn put_frames(
    s: &impl ChunkStore,
    id: u64,
    v: u64,
    len: usize,
    frame: usize,
    aligned: bool,
) -> Vec<u8> {
    let data = content(id, v, len);
    s.create(cref(id, v)).await.expect("create");
    let mut off = 0;
    for piece in data.chunks(frame.max(1)) {
        let bytes = if aligned {
            let pool = shale_chunk::backend::aligned::Pool::new(piece.len(), 0);
            let mut b = pool.take();
            assert_eq!(b.buf().extend_from_slice(piece), piece.len());
            b.into_bytes()
        } else {
            Bytes::copy_from_slice(piece)
        };
        s.write(cref(id, v), off as u64, bytes)
            .await
            .expect("write");
        off += piece.len();
    }
    let info = s.seal(cref(id, v)).await.expect("seal");
    assert_eq!(info.length_bytes, len as u64);
    assert!(info.sealed);
    data
}

async fn read_all(s: &impl ChunkStore, id: u64, v: u64, len: usize) -> Vec<u8> {
    s.read(cref(id, v), 0, len as u64)
        .await
        .expect("read")
        .to_vec()
}

/// O_DIRECT and buffered writes store the same bytes, whatever the frame sizes and chunk
/// lengths (whole pages, a partial last page, chunks under one page), and O_DIRECT is used
/// wherever the file system takes it.
pub async fn direct_and_buffered_writes_agree<H: Harness>(h: &H) {
    let small_batches = StoreConfig {
        write_batch_bytes: 64 * KIB as u64,
        ..cfg()
    };
    let cases: [(usize, usize); 10] = [
        (1, 1),
        (4095, 1000),
        (4096, 4096),
        (4097, 4097),
        (200_003, 777),
        (1 << 20, 65_536),
        (3 * (1 << 20) + 5, 1_000_003),
        (4 << 20, 3 << 20),
        (1 << 20, 8192),
        (200_003, 12_288),
    ];
    let mut id = 1;
    for direct in [true, false] {
        let (s, _) = h
            .open(StoreConfig {
                direct_io: direct,
                ..small_batches.clone()
            })
            .await;
        for ((len, frame), aligned) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
            let data = put_frames(&s, id, 1, len, frame, aligned).await;
            assert_eq!(
                read_all(&s, id, 1, len).await,
                data,
                "len {len} frame {frame} aligned {aligned}"
            );
            let raw = h.read_raw(&format!("{id:016x}.chunk")).expect("data file");
            assert!(
                raw == data,
                "file of len {len} (direct {direct}, aligned frames {aligned}) differs"
            );
            id += 1;
        }
        assert_eq!(s.writes_direct(), direct && h.supports_direct());
        drop(s);
        // Reopened (recovery reads them back): every chunk is still whole.
        let (s, report) = h.open(small_batches.clone()).await;
        assert!(report.quarantined.is_empty(), "{report}");
        assert_eq!(s.list().len() as u64, id - 1);
    }
}

pub async fn write_seal_read_any_range<H: Harness>(h: &H) {
    let (s, _) = h.open(cfg()).await;
    let len = 3 * 64 * KIB + 12_345;
    let data = put(&s, 1, 1, len, 100_003).await;
    assert_eq!(read_all(&s, 1, 1, len).await, data);
    for (off, l) in [
        (0, 1),
        (1, 1),
        (65_535, 2),
        (65_536, 65_536),
        (100, 150_000),
        (len - 1, 1),
        (len - 7, 7),
        (12_345, 64 * KIB * 2 + 3),
    ] {
        let got = s
            .read(cref(1, 1), off as u64, l as u64)
            .await
            .expect("range");
        assert_eq!(&got[..], &data[off..off + l], "range {off}+{l}");
    }
    // Zero-length reads return nothing and change nothing, anywhere inside or at the end.
    assert!(s.read(cref(1, 1), 0, 0).await.expect("empty").is_empty());
    assert!(s
        .read(cref(1, 1), len as u64, 0)
        .await
        .expect("empty")
        .is_empty());
    // An empty chunk and a chunk of exactly N blocks.
    put(&s, 2, 1, 0, 1).await;
    assert!(s
        .read(cref(2, 1), 0, 0)
        .await
        .expect("empty chunk")
        .is_empty());
    let exact = put(&s, 3, 1, 2 * 64 * KIB, 64 * KIB).await;
    assert_eq!(read_all(&s, 3, 1, exact.len()).await, exact);
    let ids: Vec<u64> = s.list().iter().map(|c| c.id.get()).collect();
    assert_eq!(ids, vec![1, 2, 3]);
}

pub async fn reopen_serves_sealed_and_drops_unsealed<H: Harness>(h: &H) {
    let data = {
        let (s, _) = h.open(cfg()).await;
        let data = put(&s, 7, 3, 200_000, 65_536).await;
        s.create(cref(8, 1)).await.expect("create");
        s.write(cref(8, 1), 0, Bytes::from(vec![1u8; 1000]))
            .await
            .expect("write");
        assert!(matches!(
            s.read(cref(8, 1), 0, 10).await,
            Err(ChunkError::NotSealed(_))
        ));
        data
    };
    let (s, report) = h.open(cfg()).await;
    assert_eq!(report.sealed_chunks, 1, "{report}");
    assert_eq!(report.sealed_bytes, 200_000);
    assert_eq!(report.temp_removed.len(), 1, "{report}");
    assert!(report.quarantined.is_empty(), "{report}");
    assert_eq!(read_all(&s, 7, 3, data.len()).await, data);
    assert!(matches!(
        s.read(cref(8, 1), 0, 10).await,
        Err(ChunkError::NotFound(_))
    ));
    assert!(
        h.names().iter().all(|n| !n.ends_with(".tmp")),
        "{:?}",
        h.names()
    );
}

pub async fn bad_input_is_refused_and_changes_nothing<H: Harness>(h: &H) {
    let (s, _) = h.open(cfg()).await;
    let data = put(&s, 1, 2, 70_000, 4096).await;
    let before = h.names();
    let err = |r: Result<Bytes, ChunkError>| r.expect_err("must fail");
    assert!(matches!(
        err(s.read(cref(9, 1), 0, 1).await),
        ChunkError::NotFound(_)
    ));
    assert!(matches!(
        err(s.read(cref(1, 1), 0, 1).await),
        ChunkError::WrongVersion { .. }
    ));
    assert!(matches!(
        err(s.read(cref(1, 3), 0, 1).await),
        ChunkError::WrongVersion { .. }
    ));
    for (off, len) in [
        (70_000, 1),
        (69_999, 2),
        (80_000, 0),
        (u64::MAX, 2),
        (1, u64::MAX),
    ] {
        let e = err(s.read(cref(1, 2), off, len).await);
        assert!(
            matches!(e, ChunkError::ReadPastEnd { .. }),
            "{off}+{len}: {e}"
        );
        assert!(e.to_string().contains("past the end"), "{e}");
    }
    // Creating the same or an older version of a sealed chunk is refused.
    assert!(matches!(
        s.create(cref(1, 2)).await,
        Err(ChunkError::VersionNotNewer { .. })
    ));
    assert!(matches!(
        s.create(cref(1, 1)).await,
        Err(ChunkError::VersionNotNewer { .. })
    ));
    // Writes to unknown, sealed or wrong-version chunks.
    let w = |id, v, off| s.write(cref(id, v), off, Bytes::from_static(b"x"));
    assert!(matches!(w(9, 1, 0).await, Err(ChunkError::NotFound(_))));
    assert!(matches!(
        w(1, 2, 70_000).await,
        Err(ChunkError::AlreadySealed(_))
    ));
    assert!(matches!(
        s.seal(cref(9, 1)).await,
        Err(ChunkError::NotFound(_))
    ));
    // A chunk being written: bad offsets, oversize writes, double create, wrong version.
    s.create(cref(5, 1)).await.expect("create");
    assert!(matches!(
        s.create(cref(5, 1)).await,
        Err(ChunkError::AlreadyOpen { .. })
    ));
    assert!(matches!(
        s.create(cref(5, 2)).await,
        Err(ChunkError::AlreadyOpen { .. })
    ));
    s.write(cref(5, 1), 0, Bytes::from(vec![7u8; 10]))
        .await
        .expect("write");
    assert!(matches!(
        w(5, 1, 0).await,
        Err(ChunkError::BadOffset { .. })
    ));
    assert!(matches!(
        w(5, 1, 11).await,
        Err(ChunkError::BadOffset { .. })
    ));
    assert!(matches!(
        w(5, 2, 10).await,
        Err(ChunkError::WrongVersion { .. })
    ));
    let big = Bytes::from(vec![0u8; 4 << 20]);
    let e = s.write(cref(5, 1), 10, big).await.expect_err("oversize");
    assert!(matches!(e, ChunkError::TooLarge { .. }), "{e}");
    // None of that disturbed the chunk being written or the sealed one.
    s.write(cref(5, 1), 10, Bytes::from(vec![8u8; 5]))
        .await
        .expect("write continues");
    let info = s.seal(cref(5, 1)).await.expect("seal");
    assert_eq!(info.length_bytes, 15);
    let mut want = vec![7u8; 10];
    want.extend_from_slice(&[8u8; 5]);
    assert_eq!(read_all(&s, 5, 1, 15).await, want);
    assert_eq!(read_all(&s, 1, 2, data.len()).await, data);
    let after: Vec<String> = h
        .names()
        .into_iter()
        .filter(|n| !n.starts_with("0000000000000005"))
        .collect();
    assert_eq!(before, after);
}

pub async fn newer_version_replaces_older<H: Harness>(h: &H) {
    let (s, _) = h.open(cfg()).await;
    let v1 = put(&s, 4, 1, 100_000, 30_000).await;
    s.create(cref(4, 2)).await.expect("create v2");
    s.write(cref(4, 2), 0, Bytes::from(content(4, 2, 50_000)))
        .await
        .expect("write v2");
    // The old version is served until the new one is sealed.
    assert_eq!(read_all(&s, 4, 1, v1.len()).await, v1);
    assert_eq!(s.stat(ChunkId(4)).map(|c| c.sealed), Some(true));
    s.seal(cref(4, 2)).await.expect("seal v2");
    assert!(matches!(
        s.read(cref(4, 1), 0, 1).await,
        Err(ChunkError::WrongVersion { .. })
    ));
    assert_eq!(read_all(&s, 4, 2, 50_000).await, content(4, 2, 50_000));
    assert_eq!(s.list().len(), 1);
    drop(s);
    let (s, report) = h.open(cfg()).await;
    assert!(report.quarantined.is_empty(), "{report}");
    assert_eq!(s.stat(ChunkId(4)).map(|c| c.version), Some(ChunkVersion(2)));
    assert_eq!(read_all(&s, 4, 2, 50_000).await, content(4, 2, 50_000));
    // A store holds one version: exactly one data file and one sidecar.
    let files: Vec<String> = h
        .names()
        .into_iter()
        .filter(|n| !n.starts_with("quarantine/"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
}

pub async fn delete_respects_versions<H: Harness>(h: &H) {
    let (s, _) = h.open(cfg()).await;
    put(&s, 1, 5, 1000, 1000).await;
    assert!(matches!(
        s.delete(ChunkId(1), ChunkVersion(4)).await,
        Err(ChunkError::WrongVersion { .. })
    ));
    assert_eq!(s.list().len(), 1);
    assert!(s.delete(ChunkId(1), ChunkVersion(5)).await.expect("delete"));
    assert!(!s.delete(ChunkId(1), ChunkVersion(5)).await.expect("again"));
    assert!(!s
        .delete(ChunkId(99), ChunkVersion(1))
        .await
        .expect("unknown"));
    s.create(cref(2, 1)).await.expect("create");
    s.write(cref(2, 1), 0, Bytes::from_static(b"abc"))
        .await
        .expect("write");
    assert!(s
        .delete(ChunkId(2), ChunkVersion(1))
        .await
        .expect("delete open"));
    assert!(s.list().is_empty());
    assert_eq!(s.usage().used_bytes, 0);
    assert!(h.names().is_empty(), "{:?}", h.names());
}

pub async fn corrupt_block_is_caught_on_read_and_quarantined<H: Harness>(h: &H) {
    let (s, _) = h.open(cfg()).await;
    let data = put(&s, 3, 1, 300_000, 65_536).await;
    h.flip_bit("0000000000000003.chunk", 200_000);
    // Blocks before the bad one still read fine.
    assert_eq!(
        &s.read(cref(3, 1), 0, 1000).await.expect("ok")[..],
        &data[..1000]
    );
    let e = s
        .read(cref(3, 1), 150_000, 100_000)
        .await
        .expect_err("corrupt");
    assert!(
        matches!(e, ChunkError::ChecksumMismatch { block: 3, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("block 3"), "{e}");
    // Never served again, recorded for the master, files moved aside.
    assert!(matches!(
        s.read(cref(3, 1), 0, 10).await,
        Err(ChunkError::NotFound(_))
    ));
    let reports = s.take_quarantine_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].id, ChunkId(3));
    assert!(s.take_quarantine_reports().is_empty());
    let names = h.names();
    assert!(
        names.iter().all(|n| n.starts_with("quarantine/")),
        "{names:?}"
    );
    drop(s);
    let (s, report) = h.open(cfg()).await;
    assert_eq!(report.sealed_chunks, 0);
    assert!(s.list().is_empty());
}

/// Chunk files deleted or truncated by someone else while the store runs (the torture harness's
/// disk faults): the read fails as damage (never a crash), the replica leaves the inventory and
/// is reported for re-creation.
pub async fn files_removed_or_cut_underneath_are_quarantined<H: Harness>(h: &H) {
    let (s, _) = h.open(cfg()).await;
    put(&s, 4, 1, 300_000, 65_536).await;
    let data = put(&s, 5, 1, 300_000, 65_536).await;
    h.delete("0000000000000004.chunk");
    let e = s.read(cref(4, 1), 0, 1000).await.expect_err("deleted");
    assert!(matches!(e, ChunkError::ChecksumMismatch { .. }), "{e}");
    let short = &data[..100_000];
    h.put("0000000000000005.chunk", short);
    let e = s
        .read(cref(5, 1), 150_000, 1000)
        .await
        .expect_err("truncated");
    assert!(matches!(e, ChunkError::ChecksumMismatch { .. }), "{e}");
    assert!(s.list().is_empty(), "damaged replicas are still listed");
    let mut ids: Vec<u64> = s
        .take_quarantine_reports()
        .iter()
        .map(|r| r.id.get())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![4, 5]);
}

pub async fn damaged_files_are_quarantined_at_open<H: Harness>(h: &H) {
    {
        let (s, _) = h.open(cfg()).await;
        for id in 1..=6 {
            put(&s, id, 1, 150_000, 50_000).await;
        }
    }
    let good = content(6, 1, 150_000);
    // 1: garbage sidecar; 2: missing sidecar; 3: truncated data; 4: torn sidecar;
    // 5: flipped bit in the last block; 6 untouched. Plus an unknown file.
    h.put("0000000000000001.crc", &[b'#'; 64]);
    let side2 = h.read_raw("0000000000000002.crc").expect("sidecar");
    h.put("0000000000000002.crc", &side2[..side2.len() / 2]);
    let data3 = h.read_raw("0000000000000003.chunk").expect("data");
    h.put("0000000000000003.chunk", &data3[..100_000]);
    h.flip_bit("0000000000000004.crc", 50);
    h.flip_bit("0000000000000005.chunk", 140_000);
    h.put("notes.txt", b"operator notes");
    let (s, report) = h.open(cfg()).await;
    assert_eq!(report.sealed_chunks, 1, "{report}");
    assert_eq!(report.unknown_files, vec!["notes.txt".to_string()]);
    let mut q: Vec<(u64, String)> = report
        .quarantined
        .iter()
        .map(|r| (r.id.get(), r.reason.clone()))
        .collect();
    q.sort();
    assert_eq!(q.len(), 5, "{report}");
    assert!(q[0].1.contains("bad magic"), "{q:?}");
    assert!(q[1].1.contains("sidecar"), "{q:?}");
    assert!(q[2].1.contains("100000 bytes"), "{q:?}");
    assert!(q[3].1.contains("sidecar"), "{q:?}");
    assert!(q[4].1.contains("checksum mismatch"), "{q:?}");
    assert_eq!(read_all(&s, 6, 1, good.len()).await, good);
    for id in 1..=5 {
        assert!(matches!(
            s.read(cref(id, 1), 0, 1).await,
            Err(ChunkError::NotFound(_))
        ));
    }
    assert!(
        h.read_raw("notes.txt").is_some(),
        "unknown files are left alone"
    );
}

pub async fn full_verify_at_open_catches_middle_blocks<H: Harness>(h: &H) {
    {
        let (s, _) = h.open(cfg()).await;
        put(&s, 1, 1, 300_000, 65_536).await;
    }
    h.flip_bit("0000000000000001.chunk", 10);
    let (s, report) = h.open(cfg()).await;
    assert_eq!(report.sealed_chunks, 1, "tail check does not read block 0");
    drop(s);
    let full = StoreConfig {
        verify_at_open: VerifyAtOpen::Full,
        ..cfg()
    };
    let (s, report) = h.open(full).await;
    assert_eq!(report.sealed_chunks, 0, "{report}");
    assert!(report.quarantined[0].reason.contains("block 0"), "{report}");
    assert!(s.list().is_empty());
}

pub async fn no_space_leaves_nothing_behind<H: Harness>(h: &H) {
    let small = StoreConfig {
        capacity_bytes: Some(1 << 20),
        ..cfg()
    };
    let (s, _) = h.open(small).await;
    put(&s, 1, 1, 300_000, 100_000).await;
    let used = s.usage().used_bytes;
    assert!(used >= 300_000);
    s.create(cref(2, 1)).await.expect("create");
    let mut res = Ok(());
    for i in 0..20u64 {
        res = s
            .write(cref(2, 1), i * 100_000, Bytes::from(vec![1u8; 100_000]))
            .await;
        if res.is_err() {
            break;
        }
    }
    let e = res.expect_err("must run out of space");
    assert!(matches!(e, ChunkError::NoSpace { .. }), "{e}");
    assert!(e.to_string().contains("no space"), "{e}");
    assert_eq!(s.stat(ChunkId(2)), None, "partial chunk removed");
    assert_eq!(s.usage().used_bytes, used);
    assert!(
        h.names().iter().all(|n| !n.starts_with("0000000000000002")),
        "{:?}",
        h.names()
    );
    // The store still works, and the space is usable again.
    put(&s, 3, 1, 500_000, 100_000).await;
    let u = s.usage();
    assert_eq!(u.capacity_bytes, 1 << 20);
    assert_eq!(u.sealed_chunks, 2);
    assert_eq!(u.used_bytes + u.free_bytes, 1 << 20);
}

pub async fn many_chunks_in_parallel<H: Harness>(h: &H) {
    let (s, _) = h.open(cfg()).await;
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for id in 1..=16u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let len = (id as usize) * 37_000;
            let data = put(&*s, id, 1, len, 16_384 + id as usize).await;
            assert_eq!(read_all(&*s, id, 1, len).await, data);
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(s.list().len(), 16);
    assert_eq!(s.usage().open_chunks, 0);
}

/// Record append: durable appends to a sealed chunk, created on the first; wrong offsets,
/// versions and sizes refused; reads see whole appends; reopen serves every appended byte.
pub async fn appends_grow_a_sealed_chunk<H: Harness>(h: &H) {
    let (s, _) = h.open(cfg()).await;
    let c = cref(7, 1);
    assert!(matches!(
        s.append(c, 0, Bytes::from_static(b"x"), false).await,
        Err(ChunkError::NotFound(_))
    ));
    let mut want = Vec::new();
    // Records of odd sizes across block boundaries (64 KiB blocks).
    for (i, len) in [5usize, 70_000, 1, 65_531, 200_000, 3]
        .into_iter()
        .enumerate()
    {
        let rec = content(7, i as u64 + 1, len);
        let end = s
            .append(c, want.len() as u64, Bytes::from(rec.clone()), i == 0)
            .await
            .expect("append");
        want.extend_from_slice(&rec);
        assert_eq!(end, want.len() as u64);
        assert_eq!(s.stat(ChunkId(7)).map(|i| i.length_bytes), Some(end));
        assert_eq!(read_all(&s, 7, 1, want.len()).await, want);
    }
    // A stale offset (a lost reply's retry) and a gap are refused and change nothing.
    for off in [0, want.len() as u64 - 3, want.len() as u64 + 1] {
        let e = s
            .append(c, off, Bytes::from_static(b"dup"), true)
            .await
            .expect_err("offset");
        assert!(matches!(e, ChunkError::BadOffset { .. }), "{e}");
    }
    let e = s
        .append(
            cref(7, 2),
            want.len() as u64,
            Bytes::from_static(b"v"),
            false,
        )
        .await
        .expect_err("version");
    assert!(matches!(e, ChunkError::WrongVersion { .. }), "{e}");
    let e = s
        .append(c, want.len() as u64, Bytes::from(vec![0u8; 4 << 20]), false)
        .await
        .expect_err("too large");
    assert!(matches!(e, ChunkError::TooLarge { .. }), "{e}");
    let mid = s.read(c, 69_990, 20).await.expect("mid");
    assert_eq!(&mid[..], &want[69_990..70_010]);
    // Bytes past the sidecar's length (an append that crashed before its commit) are ignored.
    let mut longer = h.read_raw("0000000000000007.chunk").expect("data");
    longer.extend_from_slice(b"uncommitted");
    h.put("0000000000000007.chunk", &longer);
    drop(s);
    let (s, report) = h.open(cfg()).await;
    assert!(report.quarantined.is_empty(), "{report}");
    assert_eq!(read_all(&s, 7, 1, want.len()).await, want);
    let end = s
        .append(c, want.len() as u64, Bytes::from_static(b"after"), false)
        .await
        .expect("append after reopen");
    want.extend_from_slice(b"after");
    assert_eq!(end, want.len() as u64);
    drop(s);
    let (s, _) = h
        .open(StoreConfig {
            verify_at_open: VerifyAtOpen::Full,
            ..cfg()
        })
        .await;
    assert_eq!(read_all(&s, 7, 1, want.len()).await, want);
    // Deleting works as for any sealed chunk.
    assert!(s.delete(ChunkId(7), ChunkVersion(1)).await.expect("delete"));
    assert!(s.list().is_empty());
}

/// Concurrent appenders at racing offsets: exactly one wins each offset, none is torn.
pub async fn concurrent_appends_are_serialized<H: Harness>(h: &H) {
    let (s, _) = h.open(cfg()).await;
    let s = std::sync::Arc::new(s);
    let c = cref(8, 1);
    s.append(c, 0, Bytes::new(), true).await.expect("create");
    let mut tasks = Vec::new();
    for t in 0..4u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = 0;
            while mine < 10 {
                let at = s.stat(ChunkId(8)).map_or(0, |i| i.length_bytes);
                match s.append(c, at, Bytes::from(vec![t; 1000]), false).await {
                    Ok(_) => mine += 1,
                    Err(ChunkError::BadOffset { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let all = read_all(&*s, 8, 1, 40_000).await;
    for rec in all.chunks(1000) {
        assert!(rec.iter().all(|b| *b == rec[0]), "torn record");
    }
}

macro_rules! suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn write_seal_read_any_range() {
                super::write_seal_read_any_range(&$make).await
            }
            #[tokio::test]
            async fn reopen_serves_sealed_and_drops_unsealed() {
                super::reopen_serves_sealed_and_drops_unsealed(&$make).await
            }
            #[tokio::test]
            async fn bad_input_is_refused_and_changes_nothing() {
                super::bad_input_is_refused_and_changes_nothing(&$make).await
            }
            #[tokio::test]
            async fn newer_version_replaces_older() {
                super::newer_version_replaces_older(&$make).await
            }
            #[tokio::test]
            async fn delete_respects_versions() {
                super::delete_respects_versions(&$make).await
            }
            #[tokio::test]
            async fn corrupt_block_is_caught_on_read_and_quarantined() {
                super::corrupt_block_is_caught_on_read_and_quarantined(&$make).await
            }
            #[tokio::test]
            async fn files_removed_or_cut_underneath_are_quarantined() {
                super::files_removed_or_cut_underneath_are_quarantined(&$make).await
            }
            #[tokio::test]
            async fn damaged_files_are_quarantined_at_open() {
                super::damaged_files_are_quarantined_at_open(&$make).await
            }
            #[tokio::test]
            async fn full_verify_at_open_catches_middle_blocks() {
                super::full_verify_at_open_catches_middle_blocks(&$make).await
            }
            #[tokio::test]
            async fn no_space_leaves_nothing_behind() {
                super::no_space_leaves_nothing_behind(&$make).await
            }
            #[tokio::test]
            async fn direct_and_buffered_writes_agree() {
                super::direct_and_buffered_writes_agree(&$make).await
            }
            #[tokio::test]
            async fn appends_grow_a_sealed_chunk() {
                super::appends_grow_a_sealed_chunk(&$make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_appends_are_serialized() {
                super::concurrent_appends_are_serialized(&$make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_chunks_in_parallel() {
                super::many_chunks_in_parallel(&$make).await
            }
        }
    };
}

suite!(uring, common::uring_disk());
suite!(std_fs, common::std_disk());
suite!(mem, common::Mem::new());
