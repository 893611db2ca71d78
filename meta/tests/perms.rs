//! Permissions in the state machine: owners, groups, mode bits, the sticky bit, superusers;
//! every refusal changes nothing; attributes survive snapshots (and older snapshots decode
//! with root's attributes).
use shale_meta::sm::{perms, Command, MetaError, MetaState, Reply, Who};
use shale_meta::snapshot;
use shale_proto::NodeId;

const CS: u64 = 1 << 20;

fn state() -> MetaState {
    let mut s = MetaState::new(CS, 1).expect("state");
    let r = s.apply(
        &Command::RegisterChunkserver {
            uuid: "cs-1".into(),
            address: "127.0.0.1:1".into(),
            host: "h1".into(),
            rack: None,
            capacity_bytes: 1 << 40,
        },
        10,
    );
    assert_eq!(r, Reply::Server(NodeId(1)));
    s
}

fn user(name: &str) -> Who {
    Who::user(name)
}

fn admin() -> Who {
    Who {
        user: "admin".into(),
        superuser: true,
    }
}

fn run(s: &mut MetaState, who: &Who, cmd: Command) -> Reply {
    s.apply(
        &Command::As {
            who: who.clone(),
            cmd: Box::new(cmd),
        },
        10,
    )
}

fn ok(s: &mut MetaState, who: &Who, cmd: Command) {
    let r = run(s, who, cmd.clone());
    assert!(!matches!(r, Reply::Err(_)), "{who:?} {cmd:?}: {r:?}");
}

/// Applies `cmd` as `who`, expects PERMISSION_DENIED and no change at all.
fn denied(s: &mut MetaState, who: &Who, cmd: Command) {
    let before = s.clone();
    let r = run(s, who, cmd.clone());
    assert!(
        matches!(r, Reply::Err(MetaError::Denied(_))),
        "{who:?} {cmd:?} should be denied: {r:?}"
    );
    assert_eq!(*s, before, "a refused {cmd:?} changed the state");
}

fn mkdir(p: &str, mode: u16) -> Command {
    Command::MkdirWithMode {
        path: p.into(),
        parents: false,
        mode,
    }
}

fn attrs(p: &str, mode: Option<u16>, owner: Option<&str>, group: Option<&str>) -> Command {
    Command::SetAttrs {
        path: p.into(),
        mode,
        owner: owner.map(Into::into),
        group: group.map(Into::into),
    }
}

/// Writes a one-chunk file as `who`.
fn write(s: &mut MetaState, who: &Who, p: &str, mode: u16, overwrite: bool) -> Reply {
    let holder = 7;
    let file = match run(
        s,
        who,
        Command::CreateWithMode {
            path: p.into(),
            overwrite,
            replication: None,
            chunk_size_bytes: None,
            holder,
            lease_ms: 1000,
            mode,
        },
    ) {
        Reply::Created { file, .. } => file,
        other => return other,
    };
    let alloc = Command::AllocateChunk {
        file,
        holder,
        index: 0,
        pipeline: vec![NodeId(1)],
    };
    assert!(matches!(run(s, who, alloc), Reply::Chunk { .. }));
    run(
        s,
        who,
        Command::Complete {
            file,
            holder,
            length: 5,
        },
    )
}

/// / (root 0755) → /home (0755) → /home/alice (alice, 0700), /home/bob (bob, 0755).
fn homes() -> MetaState {
    let mut s = state();
    let a = admin();
    ok(&mut s, &a, mkdir("/home", 0o755));
    for (u, m) in [("alice", 0o700), ("bob", 0o755)] {
        let home = format!("/home/{u}");
        ok(&mut s, &a, mkdir(&home, m));
        ok(&mut s, &a, attrs(&home, None, Some(u), Some(u)));
    }
    s
}

#[test]
fn private_files_stay_private() {
    let mut s = homes();
    let (alice, bob) = (user("alice"), user("bob"));
    assert!(matches!(
        write(&mut s, &alice, "/home/alice/secret", 0o600, false),
        Reply::Completed { .. }
    ));
    let st = s.stat("/home/alice/secret").unwrap();
    assert_eq!(
        (st.owner.as_str(), st.group.as_str(), st.mode),
        ("alice", "alice", 0o600)
    );
    assert!(s.file_chunks_as("/home/alice/secret", &alice).is_ok());
    // Bob can neither pass through alice's home, nor read, list, replace, move or remove.
    for r in [
        s.file_chunks_as("/home/alice/secret", &bob).map(|_| ()),
        s.stat_as("/home/alice/secret", &bob).map(|_| ()),
        s.list_as("/home/alice", None, 10, &bob).map(|_| ()),
    ] {
        assert!(matches!(r, Err(MetaError::Denied(_))), "{r:?}");
    }
    denied(
        &mut s,
        &bob,
        Command::Delete {
            path: "/home/alice/secret".into(),
            recursive: false,
        },
    );
    denied(
        &mut s,
        &bob,
        Command::Delete {
            path: "/home/alice".into(),
            recursive: true,
        },
    );
    denied(
        &mut s,
        &bob,
        Command::Rename {
            src: "/home/alice/secret".into(),
            dst: "/home/bob/mine".into(),
        },
    );
    denied(
        &mut s,
        &bob,
        attrs("/home/alice/secret", Some(0o644), None, None),
    );
    let before = s.clone();
    assert!(matches!(
        write(&mut s, &bob, "/home/alice/secret", 0o644, true),
        Reply::Err(MetaError::Denied(_))
    ));
    assert_eq!(s, before);
    // Opening the directory lets bob pass, but the 0600 file stays unreadable to him.
    ok(
        &mut s,
        &alice,
        attrs("/home/alice", Some(0o755), None, None),
    );
    assert!(s.stat_as("/home/alice/secret", &bob).is_ok());
    assert!(matches!(
        s.file_chunks_as("/home/alice/secret", &bob),
        Err(MetaError::Denied(_))
    ));
    // The superuser passes every check.
    assert!(s.file_chunks_as("/home/alice/secret", &admin()).is_ok());
}

#[test]
fn owners_change_only_by_superusers_and_groups_by_members() {
    let mut s = homes();
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    write(&mut s, &alice, "/home/alice/report", 0o640, false);
    // Alice may not give her file away, nor move it into a group she is not in.
    denied(
        &mut s,
        &alice,
        attrs("/home/alice/report", None, Some("bob"), None),
    );
    denied(
        &mut s,
        &alice,
        attrs("/home/alice/report", None, None, Some("staff")),
    );
    // Only superusers manage groups.
    denied(
        &mut s,
        &alice,
        Command::SetMember {
            group: "staff".into(),
            user: "alice".into(),
            member: true,
        },
    );
    for u in ["alice", "bob"] {
        ok(
            &mut s,
            &admin(),
            Command::SetMember {
                group: "staff".into(),
                user: u.into(),
                member: true,
            },
        );
    }
    assert_eq!(
        s.groups()["staff"],
        vec!["alice".to_string(), "bob".to_string()]
    );
    ok(
        &mut s,
        &alice,
        attrs("/home/alice/report", None, None, Some("staff")),
    );
    ok(
        &mut s,
        &alice,
        attrs("/home/alice", Some(0o711), None, None),
    );
    // Bob reads through the group bits; carol gets the others' bits (none).
    assert!(s.file_chunks_as("/home/alice/report", &bob).is_ok());
    assert!(matches!(
        s.file_chunks_as("/home/alice/report", &carol),
        Err(MetaError::Denied(_))
    ));
    // An all-or-nothing change: a mode alice may set with an owner she may not.
    denied(
        &mut s,
        &alice,
        attrs("/home/alice/report", Some(0o600), Some("bob"), None),
    );
    ok(
        &mut s,
        &admin(),
        attrs("/home/alice/report", None, Some("carol"), None),
    );
    assert!(s.file_chunks_as("/home/alice/report", &carol).is_ok());
    // Leaving the group takes the right away.
    ok(
        &mut s,
        &admin(),
        Command::SetMember {
            group: "staff".into(),
            user: "bob".into(),
            member: false,
        },
    );
    assert!(matches!(
        s.file_chunks_as("/home/alice/report", &bob),
        Err(MetaError::Denied(_))
    ));
    // Bad modes and names are refused as bad arguments.
    for bad in [
        attrs("/home/alice/report", Some(0o7777), None, None),
        attrs("/home/alice/report", None, Some("no/slash"), None),
    ] {
        let r = run(&mut s, &admin(), bad);
        assert!(matches!(r, Reply::Err(MetaError::BadArgument(_))), "{r:?}");
    }
}

#[test]
fn sticky_directories_protect_other_users_entries() {
    let mut s = state();
    ok(&mut s, &admin(), mkdir("/tmp", 0o1777));
    let (alice, bob) = (user("alice"), user("bob"));
    write(&mut s, &alice, "/tmp/a", 0o666, false);
    assert!(matches!(
        write(&mut s, &bob, "/tmp/b", 0o644, false),
        Reply::Completed { .. }
    ));
    denied(
        &mut s,
        &bob,
        Command::Delete {
            path: "/tmp/a".into(),
            recursive: false,
        },
    );
    denied(
        &mut s,
        &bob,
        Command::Rename {
            src: "/tmp/a".into(),
            dst: "/tmp/c".into(),
        },
    );
    // Replacing alice's file by renaming over it is removing it too.
    denied(
        &mut s,
        &bob,
        Command::Rename {
            src: "/tmp/b".into(),
            dst: "/tmp/a".into(),
        },
    );
    ok(
        &mut s,
        &alice,
        Command::Delete {
            path: "/tmp/a".into(),
            recursive: false,
        },
    );
    ok(
        &mut s,
        &bob,
        Command::Rename {
            src: "/tmp/b".into(),
            dst: "/tmp/c".into(),
        },
    );
}

#[test]
fn making_and_removing_need_write_on_the_directory() {
    let mut s = homes();
    let bob = user("bob");
    // / is root's 0755: users cannot make top-level entries.
    denied(&mut s, &bob, mkdir("/mine", 0o755));
    let before = s.clone();
    assert!(matches!(
        write(&mut s, &bob, "/f", 0o644, false),
        Reply::Err(MetaError::Denied(_))
    ));
    assert_eq!(s, before);
    // In his home he can, and mkdir -p makes usable parents.
    ok(
        &mut s,
        &bob,
        Command::MkdirWithMode {
            path: "/home/bob/x/y/z".into(),
            parents: true,
            mode: 0o500,
        },
    );
    assert_eq!(s.stat("/home/bob/x").unwrap().mode, 0o700);
    assert_eq!(s.stat("/home/bob/x/y/z").unwrap().mode, 0o500);
    assert_eq!(s.stat("/home/bob/x").unwrap().owner, "bob");
    // New entries take their directory's group.
    assert_eq!(s.stat("/home/bob/x").unwrap().group, "bob");
    // A tree with a directory bob may not write into cannot be removed by him.
    write(&mut s, &bob, "/home/bob/x/y/z2", 0o644, false);
    ok(
        &mut s,
        &bob,
        attrs("/home/bob/x/y", Some(0o555), None, None),
    );
    denied(
        &mut s,
        &bob,
        Command::Delete {
            path: "/home/bob/x".into(),
            recursive: true,
        },
    );
    ok(
        &mut s,
        &bob,
        attrs("/home/bob/x/y", Some(0o755), None, None),
    );
    ok(
        &mut s,
        &bob,
        Command::Delete {
            path: "/home/bob/x".into(),
            recursive: true,
        },
    );
    // Overwriting needs write on the file replaced.
    write(&mut s, &bob, "/home/bob/ro", 0o444, false);
    let before = s.clone();
    assert!(matches!(
        write(&mut s, &bob, "/home/bob/ro", 0o644, true),
        Reply::Err(MetaError::Denied(_))
    ));
    assert_eq!(s, before);
}

#[test]
fn a_file_under_construction_is_its_makers() {
    let mut s = homes();
    let (alice, bob) = (user("alice"), user("bob"));
    ok(
        &mut s,
        &alice,
        attrs("/home/alice", Some(0o777), None, None),
    );
    let Reply::Created { file, .. } = run(
        &mut s,
        &alice,
        Command::Create {
            path: "/home/alice/f".into(),
            overwrite: false,
            replication: None,
            chunk_size_bytes: None,
            holder: 9,
            lease_ms: 1000,
        },
    ) else {
        panic!("create");
    };
    // Bob knows the holder id: still not his file.
    let alloc = Command::AllocateChunk {
        file,
        holder: 9,
        index: 0,
        pipeline: vec![NodeId(1)],
    };
    denied(&mut s, &bob, alloc.clone());
    denied(&mut s, &bob, Command::Abandon { file, holder: 9 });
    ok(&mut s, &alice, alloc);
    assert_eq!(s.stat("/home/alice").unwrap().entries, 0);
}

#[test]
fn a_user_named_root_is_not_the_superuser() {
    let mut s = state();
    let fake = user("root");
    denied(&mut s, &fake, mkdir("/x", 0o755));
    denied(&mut s, &fake, attrs("/", Some(0o777), None, None));
}

#[test]
fn attributes_survive_snapshots_and_old_snapshots_are_roots() {
    let mut s = homes();
    let alice = user("alice");
    write(&mut s, &alice, "/home/alice/f", 0o600, false);
    ok(
        &mut s,
        &admin(),
        Command::SetMember {
            group: "g".into(),
            user: "alice".into(),
            member: true,
        },
    );
    let bytes = snapshot::encode(&s).unwrap();
    let back = snapshot::decode(&bytes).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.stat("/home/alice/f").unwrap().mode, 0o600);
    assert!(matches!(
        back.file_chunks_as("/home/alice/f", &user("bob")),
        Err(MetaError::Denied(_))
    ));

    // The same state as format 3 wrote it: no permissions section.
    let plain = {
        let mut p = state();
        ok(&mut p, &admin(), mkdir("/d", 0o700));
        p
    };
    let v4 = snapshot::encode_format(&plain, 8).unwrap();
    let cut = v4.len()
        - perms::encode_section(&plain, Vec::new()).unwrap().len()
        - shale_meta::sm::namespace::encode_dir_replication(&plain, Vec::new())
            .unwrap()
            .len()
        - shale_meta::sm::quota::encode_section(&plain, Vec::new())
            .unwrap()
            .len()
        - shale_meta::sm::trash::encode_section(&plain, Vec::new())
            .unwrap()
            .len()
        - shale_meta::sm::snaps::encode_section(&plain, Vec::new())
            .unwrap()
            .len()
        - shale_meta::sm::appends::encode_section(&plain, Vec::new())
            .unwrap()
            .len();
    let mut v3 = v4[..cut].to_vec();
    let body_len = (cut - 24) as u64;
    v3[8..10].copy_from_slice(&3u16.to_le_bytes());
    v3[16..24].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c(&v3[24..]);
    v3[12..16].copy_from_slice(&crc.to_le_bytes());
    let old = snapshot::decode(&v3).expect("format 3 decodes");
    let d = old.stat("/d").unwrap();
    assert_eq!(
        (d.owner.as_str(), d.group.as_str(), d.mode),
        ("root", "root", 0o755)
    );
}
