//! Reopen, rotation, torn tails, corruption and golden files of the raft log (core API).
use bytes::Bytes;
use shale_raftlog::record::{self, Kind};
use shale_raftlog::{LogConfig, LogError, RaftLog};
use std::path::{Path, PathBuf};

fn payload(i: u64, len: usize) -> Bytes {
    let mut v = format!("entry-{i}-").into_bytes();
    while v.len() < len {
        v.push(b'a' + (v.len() as u64 * 7 + i) as u8 % 26);
    }
    v.truncate(len.max(1));
    Bytes::from(v)
}

async fn append(log: &RaftLog, i: u64, len: usize) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    log.append(
        vec![(i, payload(i, len))],
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )
    .await
    .expect("append");
    rx.await.expect("done").expect("durable");
}

fn open(dir: &Path, config: LogConfig) -> RaftLog {
    RaftLog::open(dir, config).expect("open").0
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn reopen_restores_entries_vote_committed_truncate_and_purge() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let log = open(dir.path(), LogConfig::default());
        for i in 1..=100 {
            append(&log, i, 50 + i as usize).await;
        }
        log.save_vote(Bytes::from_static(b"vote-1"))
            .await
            .expect("vote");
        log.save_committed(Bytes::from_static(b"c-50"))
            .expect("committed");
        log.truncate(90).expect("truncate");
        for i in 90..=95 {
            append(&log, i, 7).await;
        }
        log.purge(10, Bytes::from_static(b"purged-10"))
            .expect("purge");
        log.sync().await.expect("sync");
    }
    let (log, report) = RaftLog::open(dir.path(), LogConfig::default()).expect("reopen");
    assert_eq!(report.torn_tail_bytes, 0);
    assert_eq!((log.first_index(), log.last_index()), (Some(11), Some(95)));
    assert_eq!(log.vote().as_deref(), Some(&b"vote-1"[..]));
    assert_eq!(log.committed().as_deref(), Some(&b"c-50"[..]));
    assert_eq!(log.purged().map(|p| p.0), Some(10));
    let all = log.read(0, 1000).expect("read");
    assert_eq!(all.len(), 85);
    for (i, data) in all {
        let want = if i >= 90 {
            payload(i, 7)
        } else {
            payload(i, 50 + i as usize)
        };
        assert_eq!(data, want, "entry {i}");
    }
}

#[tokio::test]
async fn rotation_checkpoints_state_and_purge_deletes_old_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        segment_bytes_max: 4096,
        cache_bytes_max: 1024,
        ..LogConfig::default()
    };
    {
        let log = open(dir.path(), config.clone());
        log.save_vote(Bytes::from_static(b"vote-7"))
            .await
            .expect("vote");
        for i in 1..=300 {
            append(&log, i, 100).await;
        }
        assert!(segments(dir.path()).len() > 5);
        // Reads of old entries come from the files (the cache is tiny).
        assert_eq!(log.read(3, 3).expect("read")[0].1, payload(3, 100));
        log.purge(250, Bytes::from_static(b"p250")).expect("purge");
        log.sync().await.expect("sync");
    }
    let left = segments(dir.path()).len();
    assert!(left <= 3, "old segments deleted, {left} left");
    let log = open(dir.path(), config);
    assert_eq!(
        log.vote().as_deref(),
        Some(&b"vote-7"[..]),
        "vote survives via checkpoint"
    );
    assert_eq!(
        (log.first_index(), log.last_index()),
        (Some(251), Some(300))
    );
    assert_eq!(log.read(260, 260).expect("read")[0].1, payload(260, 100));
}

async fn log_with_20(dir: &Path) {
    let log = open(dir, LogConfig::default());
    for i in 1..=20 {
        append(&log, i, 64).await;
    }
}

fn last_segment(dir: &Path) -> PathBuf {
    segments(dir).pop().expect("a segment")
}

fn push_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(bytes).expect("write");
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_the_log_goes_on() {
    let mut full = Vec::new();
    record::encode(&mut full, Kind::Append, 21, &payload(21, 64));
    let tails: Vec<(&str, Vec<u8>)> = vec![
        ("half a record", full[..full.len() / 2].to_vec()),
        ("zeros", vec![0u8; 300]),
        ("junk", (0..200u32).map(|i| (i * 37 % 251) as u8).collect()),
        ("record with a bad crc", {
            let mut b = full.clone();
            b[30] ^= 1;
            b
        }),
    ];
    for (what, tail) in tails {
        let dir = tempfile::tempdir().expect("tmp");
        log_with_20(dir.path()).await;
        push_bytes(&last_segment(dir.path()), &tail);
        let (log, report) = RaftLog::open(dir.path(), LogConfig::default()).expect(what);
        assert_eq!(report.torn_tail_bytes, tail.len() as u64, "{what}");
        assert_eq!(log.last_index(), Some(20), "{what}");
        append(&log, 21, 64).await;
        drop(log);
        let (log, report) = RaftLog::open(dir.path(), LogConfig::default()).expect(what);
        assert_eq!(report.torn_tail_bytes, 0, "{what}: clean after the cut");
        assert_eq!(log.read(21, 21).expect("read")[0].1, payload(21, 64));
    }
}

#[tokio::test]
async fn damage_inside_the_last_unsynced_batch_is_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tmp");
    log_with_20(dir.path()).await;
    // A batch that reached the disk only in part: its header and first record are fine, a
    // later record is damaged, and a record after that happens to be intact.
    let mut batch = Vec::new();
    let mut recs = Vec::new();
    for i in 21..=23 {
        record::encode(&mut recs, Kind::Append, i, &payload(i, 64));
    }
    record::encode_batch(&mut batch, 1000, recs.len() as u64);
    let rec_len = recs.len() / 3;
    recs[rec_len + 40] ^= 0xff;
    batch.extend_from_slice(&recs);
    push_bytes(&last_segment(dir.path()), &batch);
    let (log, report) = RaftLog::open(dir.path(), LogConfig::default()).expect("open");
    assert_eq!(report.torn_tail_bytes, 2 * rec_len as u64);
    assert_eq!(log.last_index(), Some(21));
}

#[tokio::test]
async fn corruption_before_the_tail_is_a_hard_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    log_with_20(dir.path()).await;
    let seg = last_segment(dir.path());
    let mut bytes = std::fs::read(&seg).expect("read");
    // Entry 3's payload sits in an early batch; later batches prove it had been synced.
    let at = bytes
        .windows(8)
        .position(|w| w == b"entry-3-")
        .expect("entry 3 on disk");
    bytes[at + 2] ^= 0x20;
    std::fs::write(&seg, &bytes).expect("write");
    let err = match RaftLog::open(dir.path(), LogConfig::default()) {
        Err(e) => e,
        Ok(_) => panic!("a corrupt log must not open"),
    };
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("not a torn tail"), "{err}");
    assert_eq!(std::fs::read(&seg).expect("read"), bytes, "nothing was cut");
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

#[test]
fn record_format_v1_bytes_are_stable() {
    let mut b = record::encode_segment_header(1).to_vec();
    record::encode_batch(&mut b, 1, 0);
    record::encode(&mut b, Kind::Append, 1, b"hello raft");
    record::encode(&mut b, Kind::Vote, 0, b"vote");
    record::encode(&mut b, Kind::Committed, 0, b"c");
    record::encode(&mut b, Kind::Truncate, 5, b"");
    record::encode(&mut b, Kind::Purge, 3, b"p3");
    let path = golden("records_v1.bin");
    if std::env::var_os("SHALE_BLESS").is_some() {
        std::fs::write(&path, &b).expect("bless");
    }
    let g = std::fs::read(&path).expect("golden present");
    assert_eq!(b, g, "record encoding changed: bump the format version");
    assert_eq!(record::decode_segment_header(&g), Ok(1));
    let mut pos = record::SEGMENT_HEADER_BYTES;
    let mut kinds = Vec::new();
    while pos < g.len() {
        let (r, n) = record::decode(&g[pos..]).expect("decode golden");
        kinds.push((r.kind, r.index, r.payload.to_vec()));
        pos += n;
    }
    assert_eq!(kinds[1], (Kind::Append, 1, b"hello raft".to_vec()));
    assert_eq!(kinds[5], (Kind::Purge, 3, b"p3".to_vec()));
}

#[tokio::test]
async fn a_v1_log_directory_opens() {
    let dir = tempfile::tempdir().expect("tmp");
    let name = "00000000000000000001.seg";
    let src = golden("log_v1").join(name);
    if std::env::var_os("SHALE_BLESS").is_some() {
        let gen = tempfile::tempdir().expect("tmp");
        {
            let log = open(gen.path(), LogConfig::default());
            log.save_vote(Bytes::from_static(b"golden-vote"))
                .await
                .expect("vote");
            for i in 1..=5 {
                append(&log, i, 20).await;
            }
        }
        std::fs::create_dir_all(golden("log_v1")).expect("mkdir");
        std::fs::copy(gen.path().join(name), &src).expect("bless");
    }
    std::fs::copy(&src, dir.path().join(name)).expect("golden log present");
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.vote().as_deref(), Some(&b"golden-vote"[..]));
    let all = log.read(1, 5).expect("read");
    assert_eq!(all.len(), 5);
    for (i, d) in all {
        assert_eq!(d, payload(i, 20));
    }
}
