//! The snapshot file format across versions: a state holding one of everything the format
//! carries (directories with modes and owners, files with chunks, a file under construction,
//! groups, sessions, token keys, a quota, a trash item, a directory snapshot, an append file,
//! garbage) decodes from a golden file written by format 8 (the last format with one body)
//! to exactly the state the same commands build now, and the current format round-trips it
//! whatever number of threads loads it.
//!
//! `SHALE_WRITE_GOLDEN=1 cargo test -p shale-meta --test snapshot_format` rewrites the
//! golden file of the current format (`tests/golden/state-v<N>.bin`); older ones are kept.
use shale_meta::sm::{Command, MetaState, Reply, Who};
use shale_meta::snapshot;
use shale_proto::NodeId;
use std::path::PathBuf;

const CS: u64 = 1 << 20;
/// 2026-12-01T00:00:00Z.
const T0: u64 = 1_796_083_200_000;

fn golden(version: u16) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/state-v{version}.bin"))
}

fn as_(who: &str, cmd: Command) -> Command {
    Command::As {
        who: Who::user(who),
        cmd: Box::new(cmd),
    }
}

fn ok(s: &mut MetaState, cmd: Command, now: u64) -> Reply {
    let r = s.apply(&cmd, now);
    assert!(!matches!(r, Reply::Err(_)), "{cmd:?}: {r:?}");
    r
}

/// Creates `path` as `who` with `len` bytes in chunks on server 1; completes it unless
/// `complete` is false.
fn file(s: &mut MetaState, who: &str, path: &str, len: u64, complete: bool, now: u64) {
    let r = ok(
        s,
        as_(
            who,
            Command::CreateWithMode {
                path: path.into(),
                overwrite: false,
                replication: None,
                chunk_size_bytes: Some(CS),
                holder: 9,
                lease_ms: 600_000,
                mode: 0o640,
            },
        ),
        now,
    );
    let Reply::Created { file, .. } = r else {
        panic!("create {path}: {r:?}");
    };
    for index in 0..len.div_ceil(CS) as u32 {
        ok(
            s,
            as_(
                who,
                Command::AllocateChunk {
                    file,
                    holder: 9,
                    index,
                    pipeline: vec![NodeId(1)],
                },
            ),
            now,
        );
    }
    if complete {
        ok(
            s,
            as_(
                who,
                Command::Complete {
                    file,
                    holder: 9,
                    length: len,
                },
            ),
            now,
        );
    }
}

/// One of everything a snapshot carries, built by the same commands every time.
fn rich_state() -> MetaState {
    let mut s = MetaState::new(CS, 1).expect("state");
    let t = T0;
    ok(
        &mut s,
        Command::RegisterChunkserverAs {
            uuid: "cs-1".into(),
            address: "127.0.0.1:1".into(),
            host: "h1".into(),
            rack: Some("r1".into()),
            capacity_bytes: 1 << 40,
            principal: "chunkserver-1".into(),
        },
        t,
    );
    ok(
        &mut s,
        Command::AddTokenKey {
            id: 1,
            secret: vec![7; 32],
        },
        t,
    );
    ok(
        &mut s,
        Command::SetUserKey {
            id: 2,
            secret: vec![9; 32],
        },
        t,
    );
    for d in ["/home", "/home/alice", "/data", "/data/logs"] {
        ok(
            &mut s,
            Command::MkdirWithMode {
                path: d.into(),
                parents: false,
                mode: 0o755,
            },
            t,
        );
    }
    ok(
        &mut s,
        Command::SetAttrs {
            path: "/home/alice".into(),
            mode: Some(0o750),
            owner: Some("alice".into()),
            group: Some("staff".into()),
        },
        t,
    );
    ok(
        &mut s,
        Command::SetMember {
            group: "staff".into(),
            user: "bob".into(),
            member: true,
        },
        t,
    );
    ok(
        &mut s,
        Command::SetReplication {
            path: "/data/logs".into(),
            replication: 1,
        },
        t,
    );
    for i in 0..40u64 {
        file(
            &mut s,
            "alice",
            &format!("/home/alice/f{i}"),
            i * 300_000,
            true,
            t + i,
        );
    }
    file(&mut s, "alice", "/home/alice/open", 3 * CS, false, t + 50);
    ok(
        &mut s,
        Command::SetQuota {
            path: "/home/alice".into(),
            max_bytes: Some(1 << 40),
            max_names: Some(10_000),
        },
        t + 60,
    );
    ok(
        &mut s,
        as_(
            "alice",
            Command::Trash {
                path: "/home/alice/f3".into(),
                recursive: false,
            },
        ),
        t + 70,
    );
    ok(
        &mut s,
        Command::CreateSnapshot {
            path: "/home/alice".into(),
            name: "s1".into(),
        },
        t + 80,
    );
    ok(
        &mut s,
        Command::Delete {
            path: "/home/alice/f5".into(),
            recursive: false,
        },
        t + 90,
    );
    ok(
        &mut s,
        Command::Delete {
            path: "/home/alice/f6".into(),
            recursive: false,
        },
        t + 90,
    );
    ok(
        &mut s,
        Command::CreateAppend {
            path: "/data/logs/events".into(),
            replication: None,
            chunk_size_bytes: Some(CS),
            mode: 0o644,
        },
        t + 100,
    );
    let r = ok(
        &mut s,
        Command::AppendTail {
            path: "/data/logs/events".into(),
            after: None,
            fence: false,
            pipeline: vec![NodeId(1)],
        },
        t + 101,
    );
    if let Reply::Chunk { id, .. } = r {
        let file = s.stat("/data/logs/events").expect("append file").inode;
        ok(
            &mut s,
            Command::Session {
                client: 77,
                seq: 1,
                cmd: Box::new(Command::CommitRecord {
                    path: "/data/logs/events".into(),
                    file,
                    chunk: id,
                    chunk_off: 0,
                    len: 4096,
                    on: vec![NodeId(1)],
                }),
            },
            t + 102,
        );
    } else {
        panic!("append tail: {r:?}");
    }
    for seq in 1..=5 {
        ok(
            &mut s,
            Command::Session {
                client: 1234,
                seq,
                cmd: Box::new(Command::MkdirWithMode {
                    path: format!("/data/s{seq}"),
                    parents: false,
                    mode: 0o700,
                }),
            },
            t + 110,
        );
    }
    s
}

#[test]
fn every_format_with_a_golden_file_decodes_to_the_state() {
    let want = rich_state();
    want.validate().expect("valid");
    if std::env::var_os("SHALE_WRITE_GOLDEN").is_some() {
        let bytes = snapshot::encode(&want).expect("encode");
        let path = golden(snapshot::FORMAT_VERSION);
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write golden");
    }
    for version in [8, snapshot::FORMAT_VERSION] {
        let bytes = std::fs::read(golden(version)).expect("golden file present");
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), version);
        let got = snapshot::decode(&bytes).expect("decodes");
        assert!(got == want, "format {version} decoded to another state");
    }
}

#[test]
fn every_format_written_round_trips_on_any_number_of_threads() {
    let want = rich_state();
    for version in [8, snapshot::FORMAT_VERSION] {
        let bytes = snapshot::encode_format(&want, version).expect("encode");
        for threads in [1, 2, 5, 64] {
            let got = snapshot::decode_trusted_with(&bytes, threads).expect("decode");
            assert!(got == want, "format {version}, {threads} threads");
        }
        let again = snapshot::encode_format(&snapshot::decode(&bytes).expect("decode"), version);
        assert_eq!(again.expect("again").len(), bytes.len());
    }
    assert!(snapshot::encode_format(&want, 7).is_err());
}

/// `bytes` with its body changed by `f` and the header's length and checksum made to fit.
fn forged(bytes: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = bytes[24..].to_vec();
    f(&mut body);
    let mut out = bytes[..24].to_vec();
    out[12..16].copy_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A body that is well framed on the outside but wrong inside is refused: cut short, bytes
/// after the last part, a frame longer than what is left. Every byte changed in turn
/// (checksum fixed) gives an error or a state, never a panic (a changed mode bit or time is
/// a state like any other).
#[test]
fn a_forged_body_is_refused() {
    let want = rich_state();
    let bytes = snapshot::encode(&want).expect("encode");
    let body_len = bytes.len() - 24;
    let cut = forged(&bytes, |b| b.truncate(b.len() - 3));
    assert!(snapshot::decode_trusted(&cut).is_err());
    let long = forged(&bytes, |b| b.push(0));
    assert!(snapshot::decode_trusted(&long).is_err());
    // The first frame's length (right after the head) made larger than the body.
    let head = postcard::to_allocvec(&want).expect("head").len();
    let huge = forged(&bytes, |b| {
        b[head..head + 8].copy_from_slice(&(body_len as u64).to_le_bytes())
    });
    assert!(snapshot::decode_trusted(&huge).is_err());
    let mut refused = 0;
    for at in 0..body_len {
        for x in [0x01u8, 0x80, 0xFF] {
            let b = forged(&bytes, |b| b[at] ^= x);
            refused += usize::from(snapshot::decode_trusted_with(&b, 2).is_err());
        }
    }
    assert!(
        refused > body_len,
        "{refused} of {} changes refused",
        3 * body_len
    );
}
