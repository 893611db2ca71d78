//! Directory quotas in the state machine: limits enforced at mkdir, create, chunk allocation
//! and rename with a clear error that changes nothing; usage accounted exactly (recomputed from
//! the tree by `validate` after every step of a random run, with files under construction,
//! abandons, expiries, renames, deletes and trash in the mix); quotas survive snapshots.
use shale_meta::sm::{Command, MetaError, MetaState, Reply, Who};
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

fn quota(p: &str, bytes: Option<u64>, names: Option<u64>) -> Command {
    Command::SetQuota {
        path: p.into(),
        max_bytes: bytes,
        max_names: names,
    }
}

fn mkdir(p: &str) -> Command {
    Command::Mkdir {
        path: p.into(),
        parents: true,
    }
}

fn used(s: &MetaState, p: &str) -> (u64, u64) {
    let q = s
        .quota_as(p, &Who::root())
        .expect("quota")
        .expect("has one");
    (q.used.names, q.used.bytes)
}

/// Moves the log time to `now` and changes nothing else (so a state can be compared with
/// itself before a refused command at that time).
fn tick(s: &mut MetaState, now: u64) {
    assert_eq!(
        s.apply(&Command::ForgetGarbage { chunks: vec![] }, now),
        Reply::Done
    );
}

/// Applies `cmd`, expects QUOTA_EXCEEDED naming `dir`, and no change at all.
fn refused(s: &mut MetaState, now: u64, cmd: &Command, dir: &str) {
    tick(s, now);
    let before = s.clone();
    match s.apply(cmd, now) {
        Reply::Err(MetaError::QuotaExceeded(m)) => {
            assert!(m.contains(&format!("quota of {dir} exceeded")), "{m}")
        }
        other => panic!("{cmd:?} should exceed the quota of {dir}: {other:?}"),
    }
    assert_eq!(*s, before, "a refused {cmd:?} changed the state");
}

/// Starts a file and allocates `chunks` chunks; (file, reply of the last step).
fn start(s: &mut MetaState, now: u64, p: &str, overwrite: bool, chunks: u32) -> (u64, Reply) {
    let r = s.apply(
        &Command::Create {
            path: p.into(),
            overwrite,
            replication: None,
            chunk_size_bytes: Some(CS),
            holder: 7,
            lease_ms: 1000,
        },
        now,
    );
    let Reply::Created { file, .. } = r else {
        return (0, r);
    };
    for index in 0..chunks {
        let r = s.apply(&alloc(file.get(), index), now);
        if !matches!(r, Reply::Chunk { .. }) {
            return (file.get(), r);
        }
    }
    (file.get(), Reply::Done)
}

fn alloc(file: u64, index: u32) -> Command {
    Command::AllocateChunk {
        file: shale_proto::InodeId(file),
        holder: 7,
        index,
        pipeline: vec![NodeId(1)],
    }
}

fn complete(file: u64, length: u64) -> Command {
    Command::Complete {
        file: shale_proto::InodeId(file),
        holder: 7,
        length,
    }
}

#[test]
fn names_are_limited_and_freed() {
    let mut s = state();
    assert_eq!(
        s.apply(&mkdir("/q"), 10),
        Reply::Inode(shale_proto::InodeId(2))
    );
    assert_eq!(s.apply(&quota("/q", None, Some(3)), 10), Reply::Done);
    assert_eq!(used(&s, "/q"), (0, 0));
    assert!(matches!(s.apply(&mkdir("/q/a"), 11), Reply::Inode(_)));
    let (f, r) = start(&mut s, 12, "/q/b", false, 0);
    assert_eq!(r, Reply::Done);
    assert_eq!(used(&s, "/q"), (2, 0), "a file under construction counts");
    // Two names at once do not fit in the one left.
    refused(&mut s, 13, &mkdir("/q/a/x/y"), "/q");
    assert!(matches!(
        s.apply(&complete(f, 0), 13),
        Reply::Completed { .. }
    ));
    assert!(matches!(s.apply(&mkdir("/q/a/x"), 14), Reply::Inode(_)));
    assert_eq!(used(&s, "/q"), (3, 0));
    let create = Command::Create {
        path: "/q/c".into(),
        overwrite: false,
        replication: None,
        chunk_size_bytes: None,
        holder: 7,
        lease_ms: 1000,
    };
    refused(&mut s, 15, &create, "/q");
    // Replacing a file adds no name: allowed at the limit.
    let (f2, r) = start(&mut s, 16, "/q/b", true, 1);
    assert_eq!(r, Reply::Done);
    assert!(matches!(
        s.apply(&complete(f2, 10), 16),
        Reply::Completed { .. }
    ));
    assert_eq!(used(&s, "/q"), (3, 10));
    // Deleting frees names; the quota outside does not count.
    assert!(matches!(
        s.apply(&mkdir("/elsewhere/deep"), 17),
        Reply::Inode(_)
    ));
    assert_eq!(
        s.apply(
            &Command::Delete {
                path: "/q/a".into(),
                recursive: true
            },
            18
        ),
        Reply::Done
    );
    assert_eq!(used(&s, "/q"), (1, 10));
    assert!(matches!(s.apply(&create, 19), Reply::Created { .. }));
    s.validate().expect("valid");
}

#[test]
fn bytes_are_reserved_per_chunk_and_settled_at_complete() {
    let mut s = state();
    s.apply(&mkdir("/q/sub"), 10);
    s.apply(&quota("/q", Some(2 * CS + 100), None), 10);
    s.apply(&quota("/q/sub", Some(CS), None), 10);
    let (f, r) = start(&mut s, 11, "/q/sub/a", false, 1);
    assert_eq!(r, Reply::Done);
    assert_eq!(used(&s, "/q/sub"), (1, CS));
    // The nearer quota refuses a second chunk.
    refused(&mut s, 12, &alloc(f, 1), "/q/sub");
    // Re-allocating the same chunk (a pipeline retry) costs nothing more.
    assert!(matches!(s.apply(&alloc(f, 0), 12), Reply::Chunk { .. }));
    assert!(matches!(
        s.apply(&complete(f, 100), 13),
        Reply::Completed { .. }
    ));
    assert_eq!(used(&s, "/q/sub"), (1, 100));
    assert_eq!(used(&s, "/q"), (2, 100));
    let (g, r) = start(&mut s, 14, "/q/b", false, 2);
    assert_eq!(r, Reply::Done);
    assert_eq!(used(&s, "/q"), (3, 100 + 2 * CS));
    refused(&mut s, 15, &alloc(g, 2), "/q");
    // Abandoning the last chunk frees its reservation; an abandoned file frees everything.
    assert_eq!(
        s.apply(
            &Command::AbandonChunk {
                file: shale_proto::InodeId(g),
                holder: 7,
                index: 1
            },
            15
        ),
        Reply::Done
    );
    assert_eq!(used(&s, "/q"), (3, 100 + CS));
    assert_eq!(
        s.apply(
            &Command::Abandon {
                file: shale_proto::InodeId(g),
                holder: 7
            },
            16
        ),
        Reply::Done
    );
    assert_eq!(used(&s, "/q"), (2, 100));
    // An expired lease frees its file's charge too.
    let (_, r) = start(&mut s, 17, "/q/c", false, 1);
    assert_eq!(r, Reply::Done);
    assert_eq!(s.apply(&Command::ExpireLeases, 5000), Reply::Expired(1));
    assert_eq!(used(&s, "/q"), (2, 100));
    s.validate().expect("valid");
}

#[test]
fn renames_move_usage_and_need_room() {
    let mut s = state();
    for d in ["/q1", "/q2", "/free"] {
        s.apply(&mkdir(d), 10);
    }
    s.apply(&quota("/q1", None, Some(10)), 10);
    s.apply(&quota("/q2", Some(CS), Some(2)), 10);
    s.apply(&mkdir("/free/t/u"), 10);
    let (f, _) = start(&mut s, 11, "/free/t/u/f", false, 1);
    s.apply(&complete(f, 500), 11);
    // A file still being written inside the tree moves with it.
    let (pending, _) = start(&mut s, 11, "/free/t/p", false, 1);
    let mv = |src: &str, dst: &str| Command::Rename {
        src: src.into(),
        dst: dst.into(),
    };
    // t, u, f and p: four names, CS + 500 bytes.
    refused(&mut s, 12, &mv("/free/t", "/q2/t"), "/q2");
    assert_eq!(s.apply(&mv("/free/t", "/q1/t"), 12), Reply::Done);
    assert_eq!(used(&s, "/q1"), (4, CS + 500));
    assert!(matches!(
        s.apply(&complete(pending, 1), 12),
        Reply::Completed { .. }
    ));
    assert_eq!(used(&s, "/q1"), (4, 501));
    // Within one quota: nothing changes; out of it: freed.
    assert_eq!(s.apply(&mv("/q1/t/u", "/q1/u"), 13), Reply::Done);
    assert_eq!(used(&s, "/q1"), (4, 501));
    assert_eq!(s.apply(&mv("/q1/u", "/q2/u"), 13), Reply::Done);
    assert_eq!((used(&s, "/q1"), used(&s, "/q2")), ((2, 1), (2, 500)));
    // A quota directory moves whole, its own quota with it.
    assert_eq!(s.apply(&mv("/q2", "/q1/q2"), 14), Reply::Done);
    assert_eq!(used(&s, "/q1"), (5, 501));
    assert_eq!(used(&s, "/q1/q2"), (2, 500));
    // Replacing a file across quotas is credited with the file replaced.
    s.apply(&quota("/q1", None, Some(5)), 15);
    let (g, _) = start(&mut s, 15, "/free/g", false, 1);
    s.apply(&complete(g, 7), 15);
    assert_eq!(s.apply(&mv("/free/g", "/q1/t/p"), 16), Reply::Done);
    assert_eq!(used(&s, "/q1"), (5, 7 + 500));
    s.validate().expect("valid");
    let back = snapshot::decode(&snapshot::encode(&s).expect("encode")).expect("decode");
    assert_eq!(back, s, "quotas survive a snapshot");
}

#[test]
fn only_superusers_set_quotas_and_anyone_may_read_them() {
    let mut s = state();
    s.apply(&mkdir("/q"), 10);
    let as_bob = |cmd: Command| Command::As {
        who: Who::user("bob"),
        cmd: Box::new(cmd),
    };
    tick(&mut s, 11);
    let before = s.clone();
    assert!(matches!(
        s.apply(&as_bob(quota("/q", Some(1), None)), 11),
        Reply::Err(MetaError::Denied(_))
    ));
    assert_eq!(s, before);
    assert_eq!(s.quota_as("/q", &Who::user("bob")).expect("ok"), None);
    assert!(matches!(
        s.apply(&quota("/nope", Some(1), None), 11),
        Reply::Err(MetaError::NotFound(_))
    ));
    s.apply(&mkdir("/q/f"), 11);
    s.apply(&quota("/q", Some(5), Some(5)), 11);
    // A limit below the usage refuses growth and removes nothing; clearing lifts it.
    s.apply(&quota("/q", None, Some(0)), 12);
    assert_eq!(used(&s, "/q"), (1, 0));
    refused(&mut s, 12, &mkdir("/q/g"), "/q");
    assert_eq!(s.apply(&quota("/q", None, None), 13), Reply::Done);
    assert_eq!(s.quota_as("/q", &Who::root()).expect("ok"), None);
    assert!(matches!(s.apply(&mkdir("/q/g"), 13), Reply::Inode(_)));
}

/// Random runs: usage is recomputed from the tree after every step (`validate`, in debug
/// builds inside `apply` too); no successful step takes a quota it grows past its limit,
/// except the names of a replacing create; every refusal changes nothing.
#[test]
fn random_operations_keep_quotas_exact() {
    let seed = fastrand::u64(..);
    println!("quota model seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let names = ["a", "b", "c"];
    let path = |rng: &mut fastrand::Rng| -> String {
        (0..rng.usize(1..=3))
            .map(|_| format!("/{}", names[rng.usize(..3)]))
            .collect()
    };
    let (mut refusals, mut steps) = (0, 0);
    for _run in 0..30 {
        let mut s = state();
        let mut now = 100;
        let mut open: Vec<(u64, u32)> = Vec::new();
        for step in 0..200 {
            now += 1;
            let p = path(&mut rng);
            tick(&mut s, now);
            let before = s.clone();
            let mut replacing = false;
            let cmd = match rng.u8(..10) {
                0 => quota(
                    &p,
                    rng.bool().then(|| rng.u64(0..4 * CS)),
                    rng.bool().then(|| rng.u64(0..6)),
                ),
                1 => mkdir(&p),
                2 | 3 => {
                    let overwrite = rng.bool();
                    replacing = overwrite && s.stat(&p).is_ok();
                    Command::Create {
                        path: p.clone(),
                        overwrite,
                        replication: None,
                        chunk_size_bytes: Some(CS),
                        holder: 7,
                        lease_ms: 50,
                    }
                }
                4 if !open.is_empty() => {
                    let (f, n) = open[rng.usize(..open.len())];
                    alloc(f, n)
                }
                5 if !open.is_empty() => {
                    let (f, n) = open.swap_remove(rng.usize(..open.len()));
                    complete(
                        f,
                        if n == 0 {
                            0
                        } else {
                            (u64::from(n) - 1) * CS + 1
                        },
                    )
                }
                6 => Command::Rename {
                    src: p.clone(),
                    dst: path(&mut rng),
                },
                7 => Command::Delete {
                    path: p.clone(),
                    recursive: rng.bool(),
                },
                8 => Command::Trash {
                    path: p.clone(),
                    recursive: rng.bool(),
                },
                _ => Command::ExpireLeases,
            };
            let r = s.apply(&cmd, now);
            steps += 1;
            match &r {
                Reply::Created { file, .. } => open.push((file.get(), 0)),
                Reply::Chunk { .. } => {
                    if let Command::AllocateChunk { file, index, .. } = &cmd {
                        for o in &mut open {
                            if o.0 == file.get() && o.1 == *index {
                                o.1 += 1;
                            }
                        }
                    }
                }
                Reply::Err(MetaError::QuotaExceeded(_)) => {
                    refusals += 1;
                    assert_eq!(
                        s, before,
                        "seed {seed} step {step}: refused {cmd:?} changed"
                    );
                }
                _ => {}
            }
            s.validate()
                .unwrap_or_else(|e| panic!("seed {seed} step {step} {cmd:?}: {e}"));
            if !matches!(cmd, Command::SetQuota { .. }) {
                for q in s.quotas(1000) {
                    let Ok(Some(old)) = before.quota_as(&q.path, &Who::root()) else {
                        continue;
                    };
                    let (u, l) = (q.quota.used, q.quota);
                    if u.names > old.used.names && !replacing {
                        assert!(
                            u.names <= l.max_names.unwrap_or(u64::MAX),
                            "seed {seed} step {step}: {cmd:?} took {} past its name limit",
                            q.path
                        );
                    }
                    if u.bytes > old.used.bytes {
                        assert!(
                            u.bytes <= l.max_bytes.unwrap_or(u64::MAX),
                            "seed {seed} step {step}: {cmd:?} took {} past its byte limit",
                            q.path
                        );
                    }
                }
            }
            open.retain(|(f, _)| s.pending_file(shale_proto::InodeId(*f)).is_some());
        }
        let back = snapshot::decode(&snapshot::encode(&s).expect("encode")).expect("decode");
        assert_eq!(back, s, "seed {seed}: snapshot roundtrip");
    }
    println!("{refusals} quota refusals in {steps} steps");
    assert!(refusals > 0, "the generator must hit limits");
}
