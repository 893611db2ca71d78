//! Record append in the state machine: many simulated clients append, retry, roll tails, get
//! fenced and take snapshots in random order; every acknowledged record is in the file exactly
//! once, the bytes the extents map to are exactly the records, snapshots keep their view, and
//! the state survives a snapshot round trip.
use shale_meta::sm::appends::RECORD_MAX_BYTES;
use shale_meta::sm::{Command, MetaError, MetaState, Reply, Who};
use shale_proto::{ChunkId, InodeId, NodeId};
use std::collections::HashMap;

const CS: u64 = 1 << 20;

fn state() -> MetaState {
    let mut s = MetaState::new(CS, 3).expect("state");
    for i in 1..=4 {
        s.apply(
            &Command::RegisterChunkserver {
                uuid: format!("cs-{i}"),
                address: format!("127.0.0.1:{i}"),
                host: format!("h{i}"),
                rack: None,
                capacity_bytes: 1 << 40,
            },
            1,
        );
    }
    s
}

fn pipeline(rng: &mut fastrand::Rng) -> Vec<NodeId> {
    let skip = rng.u64(1..=4);
    (1..=4).filter(|n| *n != skip).map(NodeId).collect()
}

fn tail(
    s: &mut MetaState,
    after: Option<ChunkId>,
    fence: bool,
    rng: &mut fastrand::Rng,
) -> (ChunkId, Vec<NodeId>) {
    let p = pipeline(rng);
    match s.apply(
        &Command::AppendTail {
            path: "/log".into(),
            after,
            fence,
            pipeline: p,
        },
        10,
    ) {
        Reply::Chunk { id, pipeline, .. } => (id, pipeline),
        other => panic!("tail: {other:?}"),
    }
}

fn commit(
    s: &mut MetaState,
    seq: u64,
    file: InodeId,
    chunk: ChunkId,
    at: (u64, u64),
    on: &[NodeId],
) -> Reply {
    s.apply(
        &Command::Session {
            client: 7,
            seq,
            cmd: Box::new(Command::CommitRecord {
                path: "/log".into(),
                file,
                chunk,
                chunk_off: at.0,
                len: at.1,
                on: on.to_vec(),
            }),
        },
        10,
    )
}

/// The file's bytes as a reader sees them through its extents.
fn read(s: &MetaState, path: &str, chunks: &HashMap<ChunkId, Vec<u8>>) -> Vec<u8> {
    let fc = s.file_chunks(path).expect("file");
    let log = s.append_log(fc.file).expect("append file");
    let mut out = Vec::new();
    for e in log.extents_in(fc.length, 0, fc.length) {
        let (c, _) = fc.chunks[e.index as usize];
        let bytes = &chunks[&c];
        out.extend_from_slice(&bytes[e.chunk_off as usize..(e.chunk_off + e.len) as usize]);
    }
    assert_eq!(out.len() as u64, fc.length);
    out
}

#[test]
fn every_acknowledged_record_is_in_the_file_exactly_once() {
    for seed in 0..20u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut s = state();
        let file = match s.apply(
            &Command::CreateAppend {
                path: "/log".into(),
                replication: None,
                chunk_size_bytes: None,
                mode: 0o644,
            },
            5,
        ) {
            Reply::Inode(f) => f,
            other => panic!("{other:?}"),
        };
        // Chunk bytes as the replicas hold them (orphans included).
        let mut chunks: HashMap<ChunkId, Vec<u8>> = HashMap::new();
        // Acknowledged records: seq -> (offset, bytes).
        let mut acked: HashMap<u64, (u64, Vec<u8>)> = HashMap::new();
        let mut snaps: Vec<(String, Vec<u8>)> = Vec::new();
        let mut cur = tail(&mut s, None, false, &mut rng);
        for seq in 1..=300u64 {
            let len = rng.u64(1..=40_000);
            let rec: Vec<u8> = (0..len).map(|i| (seq as u8) ^ (i as u8)).collect();
            loop {
                // The primary appends at the chunk's length, or finds it full.
                let bytes = chunks.entry(cur.0).or_default();
                if bytes.len() as u64 + len > CS {
                    cur = tail(&mut s, Some(cur.0), false, &mut rng);
                    continue;
                }
                let at = bytes.len() as u64;
                bytes.extend_from_slice(&rec);
                match rng.u8(0..10) {
                    // A replica failed: the client fences and rolls; the bytes are an orphan.
                    0 => {
                        cur = tail(&mut s, Some(cur.0), true, &mut rng);
                        continue;
                    }
                    // The healer fenced the chunk between append and commit.
                    1 => {
                        s.apply(&Command::FenceChunk { chunk: cur.0 }, 10);
                    }
                    2 => {
                        let name = format!("s{}", snaps.len());
                        s.apply(
                            &Command::MkdirWithMode {
                                path: "/d".into(),
                                parents: true,
                                mode: 0o755,
                            },
                            10,
                        );
                        let r = s.apply(
                            &Command::CreateSnapshot {
                                path: "/".into(),
                                name: name.clone(),
                            },
                            10,
                        );
                        assert_eq!(r, Reply::Done, "{r:?} seq {seq}");
                        snaps.push((name, read(&s, "/log", &chunks)));
                    }
                    _ => {}
                }
                // Not all replicas: refused.
                let r = commit(&mut s, seq, file, cur.0, (at, len), &cur.1[1..]);
                assert!(matches!(r, Reply::Err(MetaError::StaleChunk(_))), "{r:?}");
                let r = commit(&mut s, seq, file, cur.0, (at, len), &cur.1);
                match r {
                    Reply::Record { offset, length } => {
                        assert_eq!(length, offset + len);
                        // A retry (reply lost) gets the same answer and adds nothing, even
                        // if the retry appended the bytes again elsewhere.
                        let again = commit(&mut s, seq, file, cur.0, (at + 1, len), &cur.1);
                        assert_eq!(again, Reply::Record { offset, length });
                        acked.insert(seq, (offset, rec.clone()));
                        break;
                    }
                    Reply::Err(MetaError::StaleChunk(_)) => {
                        cur = tail(&mut s, Some(cur.0), true, &mut rng);
                    }
                    other => panic!("commit: {other:?}"),
                }
            }
        }
        // Every acknowledged record exactly once, at its offset; nothing else.
        let data = read(&s, "/log", &chunks);
        let total: usize = acked.values().map(|(_, r)| r.len()).sum();
        assert_eq!(data.len(), total, "seed {seed}: no padding, no duplicates");
        for (seq, (off, rec)) in &acked {
            let off = *off as usize;
            assert_eq!(
                &data[off..off + rec.len()],
                &rec[..],
                "seed {seed} record {seq}"
            );
        }
        // Snapshots still see what they saw.
        for (name, seen) in &snaps {
            let p = format!("/.snapshot/{name}/log");
            assert_eq!(&read(&s, &p, &chunks), seen, "seed {seed} snapshot {name}");
            assert_eq!(s.stat(&p).expect("stat").length, seen.len() as u64);
        }
        // Through a snapshot of the master state and back.
        let bytes = shale_meta::snapshot::encode(&s).expect("encode");
        let back = shale_meta::snapshot::decode(&bytes).expect("decode");
        assert_eq!(back, s, "seed {seed}");
    }
}

#[test]
fn bad_appends_are_refused_and_change_nothing() {
    let mut rng = fastrand::Rng::with_seed(1);
    let mut s = state();
    let create = |path: &str| Command::CreateAppend {
        path: path.into(),
        replication: Some(2),
        chunk_size_bytes: None,
        mode: 0o600,
    };
    let Reply::Inode(file) = s.apply(&create("/log"), 5) else {
        panic!()
    };
    // Creating again finds it.
    assert_eq!(s.apply(&create("/log"), 6), Reply::Inode(file));
    let (c, on) = tail(&mut s, None, false, &mut rng);
    let before = s.clone();
    let refused = |s: &mut MetaState, cmd: Command| {
        let r = s.apply(&cmd, 7);
        assert!(matches!(r, Reply::Err(_)), "{cmd:?} gave {r:?}");
    };
    let rec = |chunk: ChunkId, chunk_off: u64, len: u64| Command::CommitRecord {
        path: "/log".into(),
        file,
        chunk,
        chunk_off,
        len,
        on: on.clone(),
    };
    refused(&mut s, rec(c, 0, 0));
    refused(&mut s, rec(c, 0, RECORD_MAX_BYTES + 1));
    refused(&mut s, rec(c, CS - 1, 2));
    refused(&mut s, rec(c, u64::MAX, 2));
    refused(&mut s, rec(ChunkId(999), 0, 2));
    refused(&mut s, {
        let mut r = rec(c, 0, 2);
        if let Command::CommitRecord { file, .. } = &mut r {
            *file = InodeId(1);
        }
        r
    });
    // Another user may not append to a 0600 file.
    let alice = Who {
        user: "alice".into(),
        superuser: false,
    };
    refused(
        &mut s,
        Command::As {
            who: alice,
            cmd: Box::new(rec(c, 0, 2)),
        },
    );
    // A regular file takes no records; a directory neither.
    refused(
        &mut s,
        Command::AppendTail {
            path: "/".into(),
            after: None,
            fence: false,
            pipeline: on.clone(),
        },
    );
    refused(
        &mut s,
        Command::AppendTail {
            path: "/log".into(),
            after: Some(c),
            fence: false,
            pipeline: vec![NodeId(1), NodeId(1)],
        },
    );
    let mut after = s.clone();
    after.apply(&Command::ExpireLeases, 7);
    let mut b = before.clone();
    b.apply(&Command::ExpireLeases, 7);
    assert_eq!(after, b, "nothing changed but the clock");
    // Sealed: no more records, and sealing again is fine.
    assert_eq!(
        s.apply(&rec(c, 0, 5), 8),
        Reply::Record {
            offset: 0,
            length: 5
        }
    );
    let seal = Command::SealAppend {
        path: "/log".into(),
    };
    assert_eq!(s.apply(&seal, 9), Reply::Done);
    assert_eq!(s.apply(&seal, 9), Reply::Done);
    assert!(matches!(
        s.apply(&rec(c, 5, 5), 9),
        Reply::Err(MetaError::Sealed(_))
    ));
    // Deleting it frees its chunks.
    s.apply(
        &Command::Delete {
            path: "/log".into(),
            recursive: false,
        },
        10,
    );
    assert!(s.is_garbage(c));
    assert!(s.append_log(file).is_none());
}
