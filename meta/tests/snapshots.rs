//! Directory snapshots in the state machine. Random runs of namespace changes, snapshot
//! creations and deletions: every snapshot keeps showing exactly the tree it was taken of
//! (names, kinds, lengths, inodes), every file a snapshot shows keeps its chunks (none become
//! garbage), the invariants (references, no orphans) hold at every step, snapshots survive a
//! snapshot of the state; deleting every snapshot and file frees every chunk. Plus the rules:
//! read-only views, reserved name, owners only, no deleting a directory with snapshots.
use shale_meta::sm::{Command, MetaError, MetaState, Reply, Who};
use shale_meta::snapshot;
use shale_proto::{InodeId, NodeId};
use std::collections::BTreeMap;

const CS: u64 = 1 << 20;

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
        1,
    );
    s
}

fn put(s: &mut MetaState, now: u64, p: &str, overwrite: bool, len: u64) -> bool {
    let r = s.apply(
        &Command::Create {
            path: p.into(),
            overwrite,
            replication: None,
            chunk_size_bytes: Some(CS),
            holder: 7,
            lease_ms: 60_000,
        },
        now,
    );
    let Reply::Created { file, .. } = r else {
        return false;
    };
    for index in 0..len.div_ceil(CS) as u32 {
        let r = s.apply(
            &Command::AllocateChunk {
                file,
                holder: 7,
                index,
                pipeline: vec![NodeId(1)],
            },
            now,
        );
        assert!(matches!(r, Reply::Chunk { .. }), "{r:?}");
    }
    let r = s.apply(
        &Command::Complete {
            file,
            holder: 7,
            length: len,
        },
        now,
    );
    matches!(r, Reply::Completed { .. })
}

/// Relative paths → (is_dir, length, inode).
type Tree = BTreeMap<String, (bool, u64, InodeId)>;

/// Everything under `p`, by listing (iterative).
fn tree(s: &MetaState, p: &str) -> Tree {
    let mut out = BTreeMap::new();
    let mut stack = vec![(p.to_string(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let (entries, more) = s.list(&abs, None, 10_000).expect("list");
        assert!(!more);
        for (name, st) in entries {
            let (a, r) = (
                format!("{}/{name}", abs.trim_end_matches('/')),
                format!("{rel}/{name}"),
            );
            out.insert(r.clone(), (st.is_dir, st.length, st.inode));
            if st.is_dir {
                stack.push((a, r));
            }
        }
    }
    out
}

fn snap(p: &str, name: &str) -> Command {
    Command::CreateSnapshot {
        path: p.into(),
        name: name.into(),
    }
}

fn unsnap(p: &str, name: &str) -> Command {
    Command::DeleteSnapshot {
        path: p.into(),
        name: name.into(),
    }
}

fn view(dir: &str, name: &str) -> String {
    format!("{}/.snapshot/{name}", dir.trim_end_matches('/'))
}

#[test]
fn snapshots_keep_what_they_saw() {
    let seed = fastrand::u64(..);
    println!("snapshot model seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let names = ["a", "b", "c"];
    let path = |rng: &mut fastrand::Rng| -> String {
        (0..rng.usize(1..=3))
            .map(|_| format!("/{}", names[rng.usize(..3)]))
            .collect()
    };
    let (mut taken, mut checked) = (0, 0);
    for _run in 0..25 {
        let mut s = state();
        let mut now = 10;
        // (dir, name) → what it showed when taken.
        let mut snaps: BTreeMap<(String, String), Tree> = BTreeMap::new();
        for step in 0..160 {
            now += 1;
            let p = path(&mut rng);
            let what = match rng.u8(..10) {
                0 => {
                    s.apply(
                        &Command::Mkdir {
                            path: p.clone(),
                            parents: true,
                        },
                        now,
                    );
                    format!("mkdir {p}")
                }
                1 | 2 => {
                    let len = [0, 1, CS, CS + 1, 2 * CS + 3][rng.usize(..5)];
                    put(&mut s, now, &p, rng.bool(), len);
                    format!("put {p} {len}")
                }
                3 => {
                    let dst = path(&mut rng);
                    s.apply(
                        &Command::Rename {
                            src: p.clone(),
                            dst: dst.clone(),
                        },
                        now,
                    );
                    format!("rename {p} {dst}")
                }
                4 => {
                    s.apply(
                        &Command::Delete {
                            path: p.clone(),
                            recursive: true,
                        },
                        now,
                    );
                    format!("delete {p}")
                }
                5 => {
                    s.apply(
                        &Command::Trash {
                            path: p.clone(),
                            recursive: true,
                        },
                        now,
                    );
                    format!("trash {p}")
                }
                6 | 7 => {
                    let dir = if rng.u8(..4) == 0 {
                        "/".to_string()
                    } else {
                        p.clone()
                    };
                    let name = format!("s{step}");
                    if s.apply(&snap(&dir, &name), now) == Reply::Done {
                        taken += 1;
                        snaps.insert((dir.clone(), name.clone()), tree(&s, &dir));
                    }
                    format!("snapshot {dir} {name}")
                }
                8 if !snaps.is_empty() => {
                    let k = snaps.keys().nth(rng.usize(..snaps.len())).cloned();
                    let (dir, name) = k.expect("a snapshot");
                    // Its directory may have been renamed: find it by the view's absence.
                    let r = s.apply(&unsnap(&dir, &name), now);
                    if r == Reply::Done {
                        snaps.remove(&(dir.clone(), name.clone()));
                    }
                    format!("unsnapshot {dir} {name}")
                }
                _ => {
                    s.apply(&Command::ExpireTrash { retention_ms: 20 }, now);
                    "expire trash".into()
                }
            };
            s.validate()
                .unwrap_or_else(|e| panic!("seed {seed} step {step} {what}: {e}"));
            // A snapshot whose directory moved is checked where it is now, or dropped from the
            // check when its directory left the paths this test tracks.
            snaps.retain(|(dir, name), _| s.stat(&view(dir, name)).is_ok());
            for ((dir, name), saw) in &snaps {
                let v = view(dir, name);
                let now_shows = tree(&s, &v);
                assert_eq!(
                    &now_shows, saw,
                    "seed {seed} step {step} {what}: {v} changed"
                );
                for (rel, (is_dir, _, _)) in saw {
                    if !is_dir {
                        let fc = s.file_chunks(&format!("{v}{rel}")).expect("file in view");
                        for (c, _) in &fc.chunks {
                            assert!(
                                !s.is_garbage(*c) && s.knows_chunk(*c),
                                "seed {seed} step {step} {what}: {v}{rel} lost {c}"
                            );
                        }
                    }
                }
                checked += 1;
            }
        }
        let back = snapshot::decode(&snapshot::encode(&s).expect("encode")).expect("decode");
        assert_eq!(back, s, "seed {seed}: snapshot roundtrip");
        // Delete every snapshot, then everything: no chunk is left.
        let roots: Vec<(String, String)> = snaps.keys().cloned().collect();
        for (dir, name) in roots {
            assert_eq!(s.apply(&unsnap(&dir, &name), now), Reply::Done);
        }
        // Snapshots of directories that moved out of sight: find them by walking.
        let mut stack = vec!["/".to_string()];
        while let Some(d) = stack.pop() {
            if let Ok((entries, _)) = s.list(
                &format!("{}/.snapshot", d.trim_end_matches('/')),
                None,
                10_000,
            ) {
                for (n, _) in entries {
                    assert_eq!(s.apply(&unsnap(&d, &n), now), Reply::Done);
                }
            }
            for (n, st) in s.list(&d, None, 10_000).expect("list").0 {
                if st.is_dir {
                    stack.push(format!("{}/{n}", d.trim_end_matches('/')));
                }
            }
        }
        for (n, _) in s.list("/", None, 10_000).expect("list").0 {
            let r = s.apply(
                &Command::Delete {
                    path: format!("/{n}"),
                    recursive: true,
                },
                now,
            );
            assert_eq!(r, Reply::Done, "seed {seed}: delete /{n}");
        }
        s.validate().expect("valid");
        assert_eq!(s.counts().chunks, 0, "seed {seed}: every chunk is garbage");
        assert_eq!(
            s.counts().files + s.counts().dirs,
            1,
            "seed {seed}: only / is left"
        );
    }
    println!("{taken} snapshots taken, {checked} views checked");
    assert!(
        taken > 20 && checked > 200,
        "the generator must exercise snapshots"
    );
}

#[test]
fn snapshot_rules() {
    let mut s = state();
    s.apply(
        &Command::Mkdir {
            path: "/home/alice/d".into(),
            parents: true,
        },
        10,
    );
    s.apply(
        &Command::SetAttrs {
            path: "/home/alice".into(),
            mode: None,
            owner: Some("alice".into()),
            group: None,
        },
        10,
    );
    assert!(put(&mut s, 10, "/home/alice/d/f", false, 5));
    let as_ = |who: &str, cmd: Command| Command::As {
        who: Who::user(who),
        cmd: Box::new(cmd),
    };
    // Owners (and superusers) only.
    assert!(matches!(
        s.apply(&as_("bob", snap("/home/alice", "s1")), 11),
        Reply::Err(MetaError::Denied(_))
    ));
    assert_eq!(
        s.apply(&as_("alice", snap("/home/alice", "s1")), 11),
        Reply::Done
    );
    assert!(matches!(
        s.apply(&as_("alice", snap("/home/alice", "s1")), 11),
        Reply::Err(MetaError::AlreadyExists(_))
    ));
    for bad in ["", "a/b", "..", "."] {
        assert!(matches!(
            s.apply(&snap("/home/alice", bad), 11),
            Reply::Err(MetaError::BadArgument(_))
        ));
    }
    // Read-only, and the name is reserved.
    let r = s.apply(
        &Command::Mkdir {
            path: "/home/alice/.snapshot/s1/x".into(),
            parents: false,
        },
        12,
    );
    assert!(
        matches!(r, Reply::Err(MetaError::BadArgument(ref m)) if m.contains("read-only")),
        "{r:?}"
    );
    let r = s.apply(
        &Command::Mkdir {
            path: "/home/.snapshot".into(),
            parents: false,
        },
        12,
    );
    assert!(
        matches!(r, Reply::Err(MetaError::InvalidPath { .. })),
        "{r:?}"
    );
    // No deleting or trashing a tree with snapshots; renaming is fine.
    for cmd in [
        Command::Delete {
            path: "/home".into(),
            recursive: true,
        },
        Command::Trash {
            path: "/home/alice".into(),
            recursive: true,
        },
    ] {
        let r = s.apply(&cmd, 13);
        assert!(
            matches!(r, Reply::Err(MetaError::NotEmpty(ref m)) if m.contains("has snapshots")),
            "{r:?}"
        );
    }
    assert_eq!(
        s.apply(
            &Command::Rename {
                src: "/home/alice".into(),
                dst: "/alice".into()
            },
            13
        ),
        Reply::Done
    );
    // The file lives on in the snapshot after it is deleted; its chunk is not garbage.
    assert_eq!(
        s.apply(
            &Command::Delete {
                path: "/alice/d".into(),
                recursive: true
            },
            14
        ),
        Reply::Done
    );
    assert_eq!(s.counts().garbage_chunks, 0);
    assert_eq!(s.stat("/alice/.snapshot/s1/d/f").expect("kept").length, 5);
    assert_eq!(s.stat("/alice/.snapshot").expect("listing").entries, 1);
    let views = s.snapshots_of("/alice", &Who::root()).expect("ls");
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].name, "s1");
    assert_eq!(
        s.apply(&as_("alice", unsnap("/alice", "s1")), 15),
        Reply::Done
    );
    assert_eq!(
        s.counts().garbage_chunks,
        1,
        "the last reference went: garbage"
    );
    assert!(s.stat("/alice/.snapshot/s1").is_err());
    s.validate().expect("valid");
}
