//! The trash in the state machine: `Trash` moves a tree into its user's trash, mirrored under a
//! checkpoint named by the deletion time, checked like a delete; `trash_list` shows each item
//! with its original path; a rename puts it back; `ExpireTrash` removes checkpoints past the
//! retention and their chunks become garbage; hostile layouts are refused; all of it survives
//! snapshots.
use shale_meta::sm::trash::stamp;
use shale_meta::sm::{Command, MetaError, MetaState, Reply, Who};
use shale_meta::snapshot;
use shale_proto::{InodeId, NodeId};

const CS: u64 = 1 << 20;
/// 2026-11-29T12:00:00Z.
const T0: u64 = 1_796_040_000_000;

fn as_(who: &str, cmd: Command) -> Command {
    Command::As {
        who: Who::user(who),
        cmd: Box::new(cmd),
    }
}

fn state() -> MetaState {
    let mut s = MetaState::new(CS, 1).expect("state");
    s.apply(
        &Command::RegisterChunkserver {
            uuid: "cs-1".into(),
            address: "127.0.0.1:1".into(),
            host: "h1".into(),
            rack: None,
            capacity_bytes: 1 << 40,
        },
        T0,
    );
    // /home/alice owned by alice.
    for d in ["/home", "/home/alice"] {
        s.apply(
            &Command::Mkdir {
                path: d.into(),
                parents: false,
            },
            T0,
        );
    }
    let r = s.apply(
        &Command::SetAttrs {
            path: "/home/alice".into(),
            mode: None,
            owner: Some("alice".into()),
            group: Some("alice".into()),
        },
        T0,
    );
    assert_eq!(r, Reply::Done);
    s
}

/// Writes a one-chunk file of `len` bytes as `who`.
fn write(s: &mut MetaState, who: &str, p: &str, len: u64, now: u64) -> InodeId {
    let r = s.apply(
        &as_(
            who,
            Command::Create {
                path: p.into(),
                overwrite: false,
                replication: None,
                chunk_size_bytes: None,
                holder: 9,
                lease_ms: 60_000,
            },
        ),
        now,
    );
    let Reply::Created { file, .. } = r else {
        panic!("create {p}: {r:?}");
    };
    let alloc = Command::AllocateChunk {
        file,
        holder: 9,
        index: 0,
        pipeline: vec![NodeId(1)],
    };
    assert!(matches!(
        s.apply(&as_(who, alloc), now),
        Reply::Chunk { .. }
    ));
    let done = Command::Complete {
        file,
        holder: 9,
        length: len,
    };
    assert!(matches!(
        s.apply(&as_(who, done), now),
        Reply::Completed { .. }
    ));
    file
}

fn trash(p: &str, recursive: bool) -> Command {
    Command::Trash {
        path: p.into(),
        recursive,
    }
}

#[test]
fn deleted_trees_wait_in_the_trash_and_come_back() {
    let mut s = state();
    s.apply(
        &as_(
            "alice",
            Command::Mkdir {
                path: "/home/alice/d/e".into(),
                parents: true,
            },
        ),
        T0,
    );
    let f = write(&mut s, "alice", "/home/alice/d/e/f", 10, T0);
    let g = write(&mut s, "alice", "/home/alice/g", 20, T0);
    // Not empty, not recursive: refused, nothing changes.
    let before = s.clone();
    assert!(matches!(
        s.apply(&as_("alice", trash("/home/alice/d", false)), T0),
        Reply::Err(MetaError::NotEmpty(_))
    ));
    assert_eq!(s, before);
    let at = stamp(T0 + 5000);
    let r = s.apply(&as_("alice", trash("/home/alice/d", true)), T0 + 5000);
    let want = format!("/.Trash/alice/{at}/home/alice/d");
    assert_eq!(r, Reply::Trashed(want.clone()));
    assert!(s.stat("/home/alice/d").is_err());
    assert_eq!(s.stat(&format!("{want}/e/f")).expect("moved").inode, f);
    // The layout: /.Trash root's and sticky, the user's own directory private.
    let root = s.stat("/.Trash").expect("trash root");
    assert_eq!((root.owner.as_str(), root.mode), ("root", 0o1777));
    let mine = s.stat("/.Trash/alice").expect("alice's trash");
    assert_eq!((mine.owner.as_str(), mine.mode), ("alice", 0o700));
    // The same path deleted again in the same second goes to the next checkpoint.
    s.apply(
        &as_(
            "alice",
            Command::Mkdir {
                path: "/home/alice/d".into(),
                parents: false,
            },
        ),
        T0 + 5000,
    );
    let r = s.apply(&as_("alice", trash("/home/alice/d", false)), T0 + 5000);
    assert_eq!(
        r,
        Reply::Trashed(format!("/.Trash/alice/{at}.1/home/alice/d"))
    );
    let r = s.apply(&as_("alice", trash("/home/alice/g", false)), T0 + 9000);
    assert!(matches!(r, Reply::Trashed(_)), "{r:?}");
    let items = s
        .trash_list("alice", 100, &Who::user("alice"))
        .expect("list");
    let originals: Vec<&str> = items.iter().map(|i| i.original.as_str()).collect();
    assert_eq!(
        originals,
        ["/home/alice/g", "/home/alice/d", "/home/alice/d"],
        "newest first"
    );
    assert_eq!(items[0].stat.inode, g);
    assert_eq!(items[2].path, want);
    // Only alice and superusers see alice's trash.
    assert!(matches!(
        s.trash_list("alice", 100, &Who::user("bob")),
        Err(MetaError::Denied(_))
    ));
    assert_eq!(
        s.trash_list("alice", 100, &Who::root())
            .expect("root")
            .len(),
        3
    );
    // In the trash already: refused (delete it for good instead).
    assert!(matches!(
        s.apply(&as_("alice", trash(&want, true)), T0 + 9000),
        Reply::Err(MetaError::BadArgument(_))
    ));
    // Restore = rename back; the item is then forgotten.
    let r = s.apply(
        &as_(
            "alice",
            Command::RenameNoReplace {
                src: items[0].path.clone(),
                dst: "/home/alice/g".into(),
            },
        ),
        T0 + 9000,
    );
    assert_eq!(r, Reply::Done);
    assert_eq!(s.stat("/home/alice/g").expect("back").inode, g);
    assert_eq!(
        s.trash_list("alice", 100, &Who::user("alice"))
            .expect("list")
            .len(),
        2
    );
    let back = snapshot::decode(&snapshot::encode(&s).expect("encode")).expect("decode");
    assert_eq!(back, s, "the trash survives a snapshot");
}

#[test]
fn expired_checkpoints_become_garbage() {
    let mut s = state();
    write(&mut s, "alice", "/home/alice/old", 10, T0);
    write(&mut s, "alice", "/home/alice/new", 10, T0);
    assert!(matches!(
        s.apply(&as_("alice", trash("/home/alice/old", false)), T0),
        Reply::Trashed(_)
    ));
    assert!(matches!(
        s.apply(&as_("alice", trash("/home/alice/new", false)), T0 + 60_000),
        Reply::Trashed(_)
    ));
    let day = 86_400_000;
    assert!(!s.trash_due(T0 + day - 1, day));
    assert!(s.trash_due(T0 + day, day));
    assert_eq!(
        s.apply(&Command::ExpireTrash { retention_ms: day }, T0 + day),
        Reply::Expired(1)
    );
    assert_eq!(
        s.counts().garbage_chunks,
        1,
        "the old file's chunk is garbage"
    );
    let left = s.trash_list("alice", 10, &Who::root()).expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].original, "/home/alice/new");
    // Names that are not checkpoints are never expired.
    s.apply(
        &as_(
            "alice",
            Command::Mkdir {
                path: "/.Trash/alice/keep".into(),
                parents: false,
            },
        ),
        T0 + day,
    );
    assert_eq!(
        s.apply(&Command::ExpireTrash { retention_ms: day }, T0 + 10 * day),
        Reply::Expired(1)
    );
    assert!(s.stat("/.Trash/alice/keep").is_ok());
    assert!(s
        .trash_list("alice", 10, &Who::root())
        .expect("list")
        .is_empty());
    s.validate().expect("valid");
}

#[test]
fn hostile_layouts_and_permissions_are_refused() {
    let mut s = state();
    write(&mut s, "alice", "/home/alice/f", 10, T0);
    // bob may not trash what he may not delete.
    let before = s.clone();
    assert!(matches!(
        s.apply(&as_("bob", trash("/home/alice/f", false)), T0),
        Reply::Err(MetaError::Denied(_))
    ));
    assert_eq!(s, before);
    // bob squats /.Trash/alice (made after /.Trash exists, which is sticky and open).
    s.apply(
        &Command::Mkdir {
            path: "/tmp".into(),
            parents: false,
        },
        T0,
    );
    s.apply(
        &Command::SetAttrs {
            path: "/tmp".into(),
            mode: Some(0o1777),
            owner: None,
            group: None,
        },
        T0,
    );
    write(&mut s, "bob", "/tmp/b", 1, T0);
    assert!(matches!(
        s.apply(&as_("bob", trash("/tmp/b", false)), T0),
        Reply::Trashed(_)
    ));
    let squat = Command::Mkdir {
        path: "/.Trash/alice".into(),
        parents: false,
    };
    assert!(matches!(s.apply(&as_("bob", squat), T0), Reply::Inode(_)));
    let before = s.clone();
    match s.apply(&as_("alice", trash("/home/alice/f", false)), T0) {
        Reply::Err(MetaError::Denied(m)) => {
            assert!(m.contains("not a directory owned by alice"), "{m}")
        }
        other => panic!("squatted trash must be refused: {other:?}"),
    }
    assert_eq!(s, before);
    // The root cannot be trashed.
    assert!(matches!(
        s.apply(&trash("/", true), T0),
        Reply::Err(MetaError::Root)
    ));
    // A path whose mirror would be too long is refused with advice.
    let mut long: String = (0..16u8)
        .map(|i| format!("/{}", char::from(b'a' + i).to_string().repeat(250)))
        .collect();
    long.push_str(&format!("/{}", "z".repeat(60)));
    assert!(long.len() <= 4096);
    s.apply(
        &Command::Mkdir {
            path: long.clone(),
            parents: true,
        },
        T0,
    );
    match s.apply(&trash(&long, true), T0) {
        Reply::Err(MetaError::BadArgument(m)) => assert!(m.contains("--skip-trash"), "{m}"),
        other => panic!("{other:?}"),
    }
    s.validate().expect("valid");
}
