//! State machine behaviour: bad input changes nothing; overwrite is atomic; leases expire by log
//! time and abandon the file; versions bump on re-allocation; paged listing; registry.
use shale_meta::sm::{Command, MetaError, MetaState, Reply};
use shale_proto::{ChunkId, ChunkVersion, InodeId, NodeId};

const CS: u64 = 1 << 20;

fn state() -> MetaState {
    let mut s = MetaState::new(CS, 3).expect("state");
    for i in 1..=3 {
        let r = s.apply(
            &Command::RegisterChunkserver {
                uuid: format!("cs-{i}"),
                address: format!("127.0.0.1:{i}"),
                host: format!("h{i}"),
                rack: None,
                capacity_bytes: 1 << 40,
            },
            1,
        );
        assert_eq!(r, Reply::Server(NodeId(i)));
    }
    s
}

fn create(s: &mut MetaState, p: &str, overwrite: bool, holder: u64, now: u64) -> InodeId {
    match s.apply(
        &Command::Create {
            path: p.into(),
            overwrite,
            replication: None,
            chunk_size_bytes: None,
            holder,
            lease_ms: 1000,
        },
        now,
    ) {
        Reply::Created { file, .. } => file,
        other => panic!("create {p}: {other:?}"),
    }
}

fn alloc(
    s: &mut MetaState,
    file: InodeId,
    holder: u64,
    index: u32,
    now: u64,
) -> (ChunkId, ChunkVersion) {
    match s.apply(
        &Command::AllocateChunk {
            file,
            holder,
            index,
            pipeline: vec![NodeId(1), NodeId(2), NodeId(3)],
        },
        now,
    ) {
        Reply::Chunk { id, version, .. } => (id, version),
        other => panic!("allocate: {other:?}"),
    }
}

fn put(s: &mut MetaState, p: &str, len: u64, now: u64) -> InodeId {
    let f = create(s, p, true, 1, now);
    for i in 0..len.div_ceil(CS) as u32 {
        alloc(s, f, 1, i, now);
    }
    assert!(matches!(
        s.apply(
            &Command::Complete {
                file: f,
                holder: 1,
                length: len
            },
            now
        ),
        Reply::Completed { .. }
    ));
    f
}

/// Applies `cmd`, expects a refusal matching `want`, and checks nothing changed.
fn refused(s: &mut MetaState, cmd: Command, now: u64, want: fn(&MetaError) -> bool) {
    // Every applied entry advances the log clock, refused or not: advance it first so the
    // comparison is about everything else.
    s.apply(&Command::ForgetGarbage { chunks: vec![] }, now);
    let before = s.clone();
    match s.apply(&cmd, now) {
        Reply::Err(e) => {
            assert!(want(&e), "{cmd:?}: unexpected error {e}");
            assert!(!e.to_string().is_empty());
        }
        other => panic!("{cmd:?} must be refused, got {other:?}"),
    }
    assert_eq!(*s, before, "a refused {cmd:?} changed the state");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let mut s = state();
    put(&mut s, "/f", 10, 2);
    s.apply(
        &Command::Mkdir {
            path: "/d/e".into(),
            parents: true,
        },
        2,
    );
    for bad in ["", "rel", "/a//b", "/a/../b", "/x/."] {
        refused(
            &mut s,
            Command::Mkdir {
                path: bad.into(),
                parents: true,
            },
            3,
            |e| matches!(e, MetaError::InvalidPath { .. }),
        );
    }
    refused(
        &mut s,
        Command::Mkdir {
            path: "/f/x".into(),
            parents: true,
        },
        3,
        |e| matches!(e, MetaError::NotADirectory(_)),
    );
    refused(
        &mut s,
        Command::Mkdir {
            path: "/q/r".into(),
            parents: false,
        },
        3,
        |e| matches!(e, MetaError::NotFound(_)),
    );
    let create = |path: &str, overwrite| Command::Create {
        path: path.into(),
        overwrite,
        replication: None,
        chunk_size_bytes: None,
        holder: 1,
        lease_ms: 1000,
    };
    refused(&mut s, create("/d", true), 3, |e| {
        matches!(e, MetaError::IsADirectory(_))
    });
    refused(&mut s, create("/f", false), 3, |e| {
        matches!(e, MetaError::AlreadyExists(_))
    });
    refused(&mut s, create("/nope/f", true), 3, |e| {
        matches!(e, MetaError::NotFound(_))
    });
    refused(&mut s, create("/", true), 3, |e| {
        matches!(e, MetaError::InvalidPath { .. })
    });
    refused(
        &mut s,
        Command::Create {
            path: "/g".into(),
            overwrite: false,
            replication: Some(0),
            chunk_size_bytes: None,
            holder: 1,
            lease_ms: 1000,
        },
        3,
        |e| matches!(e, MetaError::BadArgument(_)),
    );
    refused(
        &mut s,
        Command::Create {
            path: "/g".into(),
            overwrite: false,
            replication: None,
            chunk_size_bytes: Some(3 << 20),
            holder: 1,
            lease_ms: 1000,
        },
        3,
        |e| matches!(e, MetaError::BadArgument(_)),
    );
    refused(
        &mut s,
        Command::Rename {
            src: "/d".into(),
            dst: "/d/e/x".into(),
        },
        3,
        |e| matches!(e, MetaError::IntoOwnSubtree { .. }),
    );
    refused(
        &mut s,
        Command::Rename {
            src: "/d".into(),
            dst: "/f".into(),
        },
        3,
        |e| matches!(e, MetaError::AlreadyExists(_)),
    );
    put(&mut s, "/f2", 5, 3);
    refused(
        &mut s,
        Command::RenameNoReplace {
            src: "/f2".into(),
            dst: "/f".into(),
        },
        3,
        |e| matches!(e, MetaError::AlreadyExists(_)),
    );
    assert_eq!(
        s.apply(
            &Command::RenameNoReplace {
                src: "/f2".into(),
                dst: "/f3".into(),
            },
            3
        ),
        Reply::Done
    );
    refused(
        &mut s,
        Command::Rename {
            src: "/".into(),
            dst: "/z".into(),
        },
        3,
        |e| matches!(e, MetaError::Root),
    );
    refused(
        &mut s,
        Command::Delete {
            path: "/".into(),
            recursive: true,
        },
        3,
        |e| matches!(e, MetaError::Root),
    );
    refused(
        &mut s,
        Command::Delete {
            path: "/d".into(),
            recursive: false,
        },
        3,
        |e| matches!(e, MetaError::NotEmpty(_)),
    );
    // Unknown ids, the wrong lease holder, stale chunk indexes, impossible lengths.
    let unknown = InodeId(999);
    refused(
        &mut s,
        Command::Complete {
            file: unknown,
            holder: 1,
            length: 0,
        },
        3,
        |e| matches!(e, MetaError::UnknownFile(_)),
    );
    let f = create_file(&mut s, "/w", 5);
    alloc(&mut s, f, 5, 0, 4);
    alloc(&mut s, f, 5, 1, 4);
    refused(
        &mut s,
        Command::Complete {
            file: f,
            holder: 6,
            length: CS + 1,
        },
        4,
        |e| matches!(e, MetaError::Lease { .. }),
    );
    refused(
        &mut s,
        Command::AllocateChunk {
            file: f,
            holder: 5,
            index: 0,
            pipeline: vec![NodeId(1)],
        },
        4,
        |e| matches!(e, MetaError::ChunkIndex { .. }),
    );
    refused(
        &mut s,
        Command::AllocateChunk {
            file: f,
            holder: 5,
            index: 2,
            pipeline: vec![NodeId(1), NodeId(1)],
        },
        4,
        |e| matches!(e, MetaError::BadArgument(_)),
    );
    refused(
        &mut s,
        Command::AllocateChunk {
            file: f,
            holder: 5,
            index: 2,
            pipeline: vec![NodeId(42)],
        },
        4,
        |e| matches!(e, MetaError::BadArgument(_)),
    );
    for bad_len in [0, CS, 2 * CS + 1] {
        refused(
            &mut s,
            Command::Complete {
                file: f,
                holder: 5,
                length: bad_len,
            },
            4,
            |e| matches!(e, MetaError::Length { .. }),
        );
    }
    refused(
        &mut s,
        Command::AbandonChunk {
            file: f,
            holder: 5,
            index: 0,
        },
        4,
        |e| matches!(e, MetaError::ChunkIndex { .. }),
    );
    // After the lease expired (by log time), the writer can no longer complete.
    refused(
        &mut s,
        Command::Complete {
            file: f,
            holder: 5,
            length: CS + 1,
        },
        2000,
        |e| matches!(e, MetaError::Lease { .. }),
    );
}

fn create_file(s: &mut MetaState, p: &str, holder: u64) -> InodeId {
    create(s, p, false, holder, 3)
}

#[test]
fn overwrite_replaces_atomically_at_complete() {
    let mut s = state();
    put(&mut s, "/f", 3 * CS, 2);
    let old = s.file_chunks("/f").expect("old");
    let f2 = create(&mut s, "/f", true, 2, 3);
    alloc(&mut s, f2, 2, 0, 3);
    // Until complete, readers see the old file.
    assert_eq!(s.stat("/f").expect("stat").length, 3 * CS);
    assert!(matches!(
        s.apply(
            &Command::Complete {
                file: f2,
                holder: 2,
                length: 10
            },
            4
        ),
        Reply::Completed { .. }
    ));
    let new = s.file_chunks("/f").expect("new");
    assert_eq!(new.length, 10);
    assert_eq!(new.file, f2);
    let garbage: Vec<ChunkId> = s.garbage().map(|(c, _)| *c).collect();
    for (c, _) in old.chunks {
        assert!(garbage.contains(&c), "old chunk {c} is garbage");
    }
    assert_eq!(s.counts().files, 1);
}

#[test]
fn an_expired_lease_abandons_the_file_and_keeps_the_overwritten_one() {
    let mut s = state();
    put(&mut s, "/f", 5, 2);
    let f2 = create(&mut s, "/f", true, 9, 10);
    let (c0, _) = alloc(&mut s, f2, 9, 0, 10);
    let (c1, _) = alloc(&mut s, f2, 9, 1, 10);
    // Another writer cannot take the path while the lease lives.
    match s.apply(
        &Command::Create {
            path: "/f".into(),
            overwrite: true,
            replication: None,
            chunk_size_bytes: None,
            holder: 10,
            lease_ms: 1000,
        },
        500,
    ) {
        Reply::Err(MetaError::Lease { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(s.apply(&Command::ExpireLeases, 1009), Reply::Expired(0));
    assert_eq!(s.apply(&Command::ExpireLeases, 1010), Reply::Expired(1));
    assert_eq!(
        s.stat("/f").expect("old file").length,
        5,
        "the old file stays"
    );
    let garbage: Vec<ChunkId> = s.garbage().map(|(c, _)| *c).collect();
    assert!(
        garbage.contains(&c0) && garbage.contains(&c1),
        "all its chunks, the last included"
    );
    assert_eq!(s.counts().under_construction, 0);
    // Renewing keeps a lease alive past its first expiry.
    let f3 = create(&mut s, "/g", false, 3, 2000);
    assert!(matches!(
        s.apply(
            &Command::RenewLease {
                file: f3,
                holder: 3,
                lease_ms: 5000
            },
            2900
        ),
        Reply::Lease { expires_ms: 7900 }
    ));
    assert_eq!(s.apply(&Command::ExpireLeases, 3500), Reply::Expired(0));
}

#[test]
fn reallocating_the_last_chunk_bumps_its_version() {
    let mut s = state();
    let f = create(&mut s, "/f", false, 1, 2);
    let (a, v1) = alloc(&mut s, f, 1, 0, 2);
    let (b, v2) = alloc(&mut s, f, 1, 0, 3);
    assert_eq!(a, b);
    assert_eq!((v1, v2), (ChunkVersion(1), ChunkVersion(2)));
    assert_eq!(s.chunk_version(a), Some(ChunkVersion(2)));
    let (c, _) = alloc(&mut s, f, 1, 1, 3);
    assert_ne!(c, a);
    assert_eq!(
        s.apply(
            &Command::AbandonChunk {
                file: f,
                holder: 1,
                index: 1
            },
            4
        ),
        Reply::Done
    );
    assert_eq!(s.garbage().next(), Some((&c, &ChunkVersion(1))));
}

#[test]
fn deleting_a_directory_abandons_files_being_written_inside() {
    let mut s = state();
    s.apply(
        &Command::Mkdir {
            path: "/d/e".into(),
            parents: true,
        },
        1,
    );
    let f = create(&mut s, "/d/e/f", false, 1, 2);
    alloc(&mut s, f, 1, 0, 2);
    assert_eq!(
        s.apply(
            &Command::Delete {
                path: "/d".into(),
                recursive: true
            },
            3
        ),
        Reply::Done
    );
    assert_eq!(s.counts().under_construction, 0);
    assert!(matches!(
        s.apply(
            &Command::Complete {
                file: f,
                holder: 1,
                length: 1
            },
            4
        ),
        Reply::Err(MetaError::UnknownFile(_))
    ));
}

#[test]
fn listing_is_paged_in_name_order() {
    let mut s = state();
    for i in 0..25 {
        s.apply(
            &Command::Mkdir {
                path: format!("/d/n{i:02}"),
                parents: true,
            },
            1,
        );
    }
    let (page, more) = s.list("/d", None, 10).expect("page 1");
    assert!(more);
    assert_eq!(page[0].0, "n00");
    let (page2, _) = s.list("/d", Some(&page[9].0), 10).expect("page 2");
    assert_eq!(page2[0].0, "n10");
    let (last, more) = s.list("/d", Some("n19"), 10).expect("page 3");
    assert_eq!(last.len(), 5);
    assert!(!more);
    assert!(matches!(
        s.list("/nope", None, 10),
        Err(MetaError::NotFound(_))
    ));
}

#[test]
fn registering_again_keeps_the_node_id() {
    let mut s = state();
    let r = s.apply(
        &Command::RegisterChunkserver {
            uuid: "cs-2".into(),
            address: "127.0.0.1:99".into(),
            host: "h2".into(),
            rack: Some("r1".into()),
            capacity_bytes: 5,
        },
        9,
    );
    assert_eq!(r, Reply::Server(NodeId(2)));
    let (_, info) = s.servers().find(|(n, _)| **n == NodeId(2)).expect("server");
    assert_eq!(info.address, "127.0.0.1:99");
    assert_eq!(s.counts().chunkservers, 3);
}

/// A tree far deeper than any one path (nested by renames) is deleted without recursion, and
/// files being written inside it are abandoned. Before the fix this overflowed the stack.
#[test]
fn deep_tree_delete_does_not_overflow() {
    // Run on a small stack, so a recursive walk of the tree fails loudly.
    let t = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| {
            let mut s = state();
            let level = "/a".repeat(2000);
            let mut now = 10;
            let depth = |i: usize| format!("/t{i}{level}");
            assert!(matches!(s.apply(&mkdir(&depth(0)), now), Reply::Inode(_)));
            for i in 1..25 {
                now += 1;
                assert!(matches!(s.apply(&mkdir(&depth(i)), now), Reply::Inode(_)));
                let r = s.apply(
                    &Command::Rename {
                        src: format!("/t{}", i - 1),
                        dst: format!("{}/t{}", depth(i), i - 1),
                    },
                    now,
                );
                assert_eq!(r, Reply::Done);
            }
            let f = create(&mut s, &format!("{}/t23/f", depth(24)), false, 9, now);
            let _ = f;
            let before = s.counts();
            assert!(before.dirs > 50_000, "{before:?}");
            let r = s.apply(
                &Command::Delete {
                    path: "/t24".into(),
                    recursive: true,
                },
                now + 1,
            );
            assert_eq!(r, Reply::Done);
            let after = s.counts();
            assert_eq!((after.dirs, after.under_construction), (1, 0));
            s.validate().expect("valid");
        })
        .expect("spawn");
    t.join().expect("deep delete must not crash");
}

fn mkdir(p: &str) -> Command {
    Command::Mkdir {
        path: p.into(),
        parents: true,
    }
}

fn session(client: u64, seq: u64, cmd: Command) -> Command {
    Command::Session {
        client,
        seq,
        cmd: Box::new(cmd),
    }
}

/// A retried request (same client and seq) gets its first reply and changes nothing: a
/// retried Create is not "being written by another client", a retried AllocateChunk does not
/// bump the version, a retried Complete succeeds.
#[test]
fn retried_requests_are_applied_once() {
    let mut s = state();
    let create = session(
        7,
        1,
        Command::Create {
            path: "/f".into(),
            overwrite: false,
            replication: None,
            chunk_size_bytes: None,
            holder: 7,
            lease_ms: 1000,
        },
    );
    let first = s.apply(&create, 10);
    let Reply::Created { file, .. } = first else {
        panic!("{first:?}");
    };
    assert_eq!(s.apply(&create, 11), first);
    let alloc = session(
        7,
        2,
        Command::AllocateChunk {
            file,
            holder: 7,
            index: 0,
            pipeline: vec![NodeId(1), NodeId(2), NodeId(3)],
        },
    );
    let a = s.apply(&alloc, 12);
    assert!(
        matches!(
            a,
            Reply::Chunk {
                version: ChunkVersion(1),
                ..
            }
        ),
        "{a:?}"
    );
    assert_eq!(s.apply(&alloc, 13), a, "a retry must not bump the version");
    let complete = session(
        7,
        3,
        Command::Complete {
            file,
            holder: 7,
            length: 5,
        },
    );
    let c = s.apply(&complete, 14);
    assert!(matches!(c, Reply::Completed { .. }), "{c:?}");
    assert_eq!(s.apply(&complete, 15), c, "a retried Complete succeeds");
    // Another client's identical request is a new request.
    let other = s.apply(
        &session(
            8,
            1,
            Command::Mkdir {
                path: "/d".into(),
                parents: false,
            },
        ),
        16,
    );
    assert!(matches!(other, Reply::Inode(_)));
    let again = s.apply(
        &session(
            9,
            1,
            Command::Mkdir {
                path: "/d".into(),
                parents: false,
            },
        ),
        16,
    );
    assert!(matches!(again, Reply::Err(MetaError::AlreadyExists(_))));
    // Sessions survive a snapshot.
    let snap = shale_meta::snapshot::encode(&s).expect("encode");
    let mut back = shale_meta::snapshot::decode(&snap).expect("decode");
    assert_eq!(back, s);
    assert_eq!(back.apply(&complete, 17), c);
    // Bad ids and nesting are refused.
    assert!(matches!(
        s.apply(&session(7, 0, Command::ExpireLeases), 18),
        Reply::Err(MetaError::BadArgument(_))
    ));
    assert!(matches!(
        s.apply(&session(7, 9, session(7, 10, Command::ExpireLeases)), 18),
        Reply::Err(MetaError::BadArgument(_))
    ));
}

/// `setrep` on a directory sets the replication its new files get (the nearest directory
/// default up the tree, else the cluster's); existing files keep theirs; an explicit
/// replication wins; the defaults survive snapshots, and a format-4 snapshot (before them)
/// decodes with none.
#[test]
fn directory_replication_defaults_are_inherited() {
    let mut s = state();
    let ok = |s: &mut MetaState, c: Command| {
        let r = s.apply(&c, 10);
        assert!(!matches!(r, Reply::Err(_)), "{c:?}: {r:?}");
    };
    ok(
        &mut s,
        Command::Mkdir {
            path: "/a/b/c".into(),
            parents: true,
        },
    );
    let old = create(&mut s, "/a/old", false, 1, 10);
    ok(
        &mut s,
        Command::Complete {
            file: old,
            holder: 1,
            length: 0,
        },
    );
    let setrep = |p: &str, r: u8| Command::SetReplication {
        path: p.into(),
        replication: r,
    };
    ok(&mut s, setrep("/a", 2));
    ok(&mut s, setrep("/a/b/c", 5));
    let rep_of = |s: &mut MetaState, p: &str, replication: Option<u8>| -> u8 {
        match s.apply(
            &Command::Create {
                path: p.into(),
                overwrite: false,
                replication,
                chunk_size_bytes: None,
                holder: 7,
                lease_ms: 1000,
            },
            10,
        ) {
            Reply::Created { replication, .. } => replication,
            other => panic!("create {p}: {other:?}"),
        }
    };
    assert_eq!(rep_of(&mut s, "/top", None), 3, "the cluster default");
    assert_eq!(rep_of(&mut s, "/a/f", None), 2);
    assert_eq!(rep_of(&mut s, "/a/b/f", None), 2, "inherited from /a");
    assert_eq!(rep_of(&mut s, "/a/b/c/f", None), 5, "the nearest default");
    assert_eq!(rep_of(&mut s, "/a/b/c/g", Some(1)), 1, "explicit wins");
    assert_eq!(
        s.stat("/a/old").unwrap().replication,
        3,
        "existing files keep theirs"
    );
    assert_eq!(
        s.stat("/a").unwrap().replication,
        2,
        "stat shows a directory's default"
    );
    assert_eq!(s.stat("/a/b").unwrap().replication, 0, "0: inherits");
    // Bad values are refused and change nothing.
    let before = s.clone();
    assert!(matches!(
        s.apply(&setrep("/a", 0), 10),
        Reply::Err(MetaError::BadArgument(_))
    ));
    assert!(matches!(
        s.apply(&setrep("/a", 17), 10),
        Reply::Err(MetaError::BadArgument(_))
    ));
    assert_eq!(s, before);
    // Snapshots keep the defaults; format 4 had none.
    assert_eq!(
        shale_meta::snapshot::decode(&shale_meta::snapshot::encode(&s).unwrap()).unwrap(),
        s
    );
    let v5 = shale_meta::snapshot::encode_format(&s, 8).unwrap();
    assert_eq!(shale_meta::snapshot::decode(&v5).unwrap(), s);
    let section = shale_meta::sm::namespace::encode_dir_replication(&s, Vec::new())
        .unwrap()
        .len()
        + shale_meta::sm::quota::encode_section(&s, Vec::new())
            .unwrap()
            .len()
        + shale_meta::sm::trash::encode_section(&s, Vec::new())
            .unwrap()
            .len()
        + shale_meta::sm::snaps::encode_section(&s, Vec::new())
            .unwrap()
            .len()
        + shale_meta::sm::appends::encode_section(&s, Vec::new())
            .unwrap()
            .len();
    let mut v4 = v5[..v5.len() - section].to_vec();
    v4[8..10].copy_from_slice(&4u16.to_le_bytes());
    let body_len = (v4.len() - 24) as u64;
    v4[16..24].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c(&v4[24..]);
    v4[12..16].copy_from_slice(&crc.to_le_bytes());
    let old = shale_meta::snapshot::decode(&v4).expect("format 4 decodes");
    assert_eq!(old.stat("/a").unwrap().replication, 0);
}
