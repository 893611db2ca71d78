//! Model test: random operation sequences applied to `MetaState` and to a simple path-keyed
//! reference model agree on every success/failure and on the whole visible namespace; the
//! invariants hold at every step; snapshot → restore gives an equal state.
use shale_meta::sm::{Command, MetaState, Reply};
use shale_meta::snapshot;
use shale_proto::NodeId;
use std::collections::BTreeMap;

const CS: u64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

/// The reference: a map from path to node.
#[derive(Default)]
struct Model {
    nodes: BTreeMap<String, Node>,
}

fn parent_of(p: &str) -> String {
    match p.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => p[..i].into(),
        None => "/".into(),
    }
}

fn under(p: &str, root: &str) -> bool {
    p == root || p.starts_with(&format!("{root}/"))
}

impl Model {
    fn new() -> Self {
        let mut m = Model::default();
        m.nodes.insert("/".into(), Node::Dir);
        m
    }
    fn is_dir(&self, p: &str) -> bool {
        self.nodes.get(p) == Some(&Node::Dir)
    }
    fn mkdir(&mut self, p: &str, parents: bool) -> bool {
        if p == "/" {
            return parents;
        }
        let comps: Vec<&str> = p[1..].split('/').collect();
        let mut cur = String::new();
        let mut missing = Vec::new();
        for (i, c) in comps.iter().enumerate() {
            cur = format!("{cur}/{c}");
            match self.nodes.get(&cur) {
                Some(Node::File(_)) => return false,
                Some(Node::Dir) if missing.is_empty() => {
                    if i + 1 == comps.len() {
                        return parents;
                    }
                }
                Some(Node::Dir) => unreachable!("a dir below a missing dir"),
                None => {
                    if i + 1 < comps.len() && !parents {
                        return false;
                    }
                    missing.push(cur.clone());
                }
            }
        }
        for m in missing {
            self.nodes.insert(m, Node::Dir);
        }
        true
    }
    fn put(&mut self, p: &str, overwrite: bool, len: u64) -> bool {
        if p == "/" || !self.is_dir(&parent_of(p)) {
            return false;
        }
        match self.nodes.get(p) {
            Some(Node::Dir) => false,
            Some(Node::File(_)) if !overwrite => false,
            _ => {
                self.nodes.insert(p.into(), Node::File(len));
                true
            }
        }
    }
    fn rename(&mut self, src: &str, dst: &str) -> bool {
        if src == "/" || dst == "/" || !self.nodes.contains_key(src) {
            return false;
        }
        if !self.is_dir(&parent_of(dst)) {
            return false;
        }
        if src == dst {
            return true;
        }
        let src_dir = self.is_dir(src);
        if src_dir && under(dst, src) {
            return false;
        }
        match self.nodes.get(dst) {
            Some(Node::Dir) => return false,
            Some(Node::File(_)) if src_dir => return false,
            _ => {}
        }
        let moved: Vec<(String, Node)> = self
            .nodes
            .iter()
            .filter(|(k, _)| under(k, src))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, _) in &moved {
            self.nodes.remove(k);
        }
        for (k, v) in moved {
            self.nodes.insert(format!("{dst}{}", &k[src.len()..]), v);
        }
        true
    }
    fn delete(&mut self, p: &str, recursive: bool) -> bool {
        if p == "/" || !self.nodes.contains_key(p) {
            return false;
        }
        let children = self.nodes.keys().any(|k| k != p && under(k, p));
        if children && !recursive {
            return false;
        }
        self.nodes.retain(|k, _| !under(k, p));
        true
    }
}

/// The visible namespace of the real state, as the model sees it.
fn snapshot_paths(s: &MetaState) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    out.insert("/".to_string(), Node::Dir);
    let mut stack = vec!["/".to_string()];
    while let Some(dir) = stack.pop() {
        let (entries, more) = s.list(&dir, None, 10_000).expect("list");
        assert!(!more);
        for (name, st) in entries {
            let p = if dir == "/" {
                format!("/{name}")
            } else {
                format!("{dir}/{name}")
            };
            if st.is_dir {
                out.insert(p.clone(), Node::Dir);
                stack.push(p);
            } else {
                out.insert(p, Node::File(st.length));
            }
        }
    }
    out
}

fn ok(r: &Reply) -> bool {
    !matches!(r, Reply::Err(_))
}

fn random_path(rng: &mut fastrand::Rng) -> String {
    let names = ["a", "b", "c"];
    let depth = rng.usize(1..=3);
    (0..depth)
        .map(|_| format!("/{}", names[rng.usize(..names.len())]))
        .collect()
}

/// Create + allocate + complete, as a client would.
fn put(s: &mut MetaState, now: &mut u64, p: &str, overwrite: bool, len: u64) -> bool {
    *now += 1;
    let r = s.apply(
        &Command::Create {
            path: p.into(),
            overwrite,
            replication: None,
            chunk_size_bytes: Some(CS),
            holder: 7,
            lease_ms: 60_000,
        },
        *now,
    );
    let Reply::Created { file, .. } = r else {
        return false;
    };
    for index in 0..len.div_ceil(CS) as u32 {
        *now += 1;
        let r = s.apply(
            &Command::AllocateChunk {
                file,
                holder: 7,
                index,
                pipeline: vec![NodeId(1)],
            },
            *now,
        );
        assert!(matches!(r, Reply::Chunk { .. }), "{r:?}");
    }
    *now += 1;
    let r = s.apply(
        &Command::Complete {
            file,
            holder: 7,
            length: len,
        },
        *now,
    );
    assert!(matches!(r, Reply::Completed { .. }), "{r:?}");
    true
}

#[test]
fn random_operations_agree_with_the_model() {
    let seed = fastrand::u64(..);
    println!("model test seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut tried, mut succeeded) = (0u32, 0u32);
    for _run in 0..40 {
        let mut s = MetaState::new(CS, 3).expect("state");
        let mut now = 1;
        let r = s.apply(
            &Command::RegisterChunkserver {
                uuid: "cs-1".into(),
                address: "127.0.0.1:1".into(),
                host: "h1".into(),
                rack: None,
                capacity_bytes: 1 << 40,
            },
            now,
        );
        assert_eq!(r, Reply::Server(NodeId(1)));
        let mut m = Model::new();
        for step in 0..150 {
            now += 1;
            let p = random_path(&mut rng);
            let (what, real, model) = match rng.u8(..5) {
                0 => {
                    let parents = rng.bool();
                    let r = s.apply(
                        &Command::Mkdir {
                            path: p.clone(),
                            parents,
                        },
                        now,
                    );
                    (format!("mkdir {p} {parents}"), ok(&r), m.mkdir(&p, parents))
                }
                1 | 2 => {
                    let overwrite = rng.bool();
                    let len = [0, 1, CS, CS + 1, 3 * CS - 5][rng.usize(..5)];
                    let real = put(&mut s, &mut now, &p, overwrite, len);
                    (
                        format!("put {p} {overwrite} {len}"),
                        real,
                        m.put(&p, overwrite, len),
                    )
                }
                3 => {
                    let dst = random_path(&mut rng);
                    let r = s.apply(
                        &Command::Rename {
                            src: p.clone(),
                            dst: dst.clone(),
                        },
                        now,
                    );
                    (format!("rename {p} {dst}"), ok(&r), m.rename(&p, &dst))
                }
                _ => {
                    let recursive = rng.bool();
                    let r = s.apply(
                        &Command::Delete {
                            path: p.clone(),
                            recursive,
                        },
                        now,
                    );
                    (
                        format!("delete {p} {recursive}"),
                        ok(&r),
                        m.delete(&p, recursive),
                    )
                }
            };
            assert_eq!(real, model, "seed {seed} step {step}: {what}");
            tried += 1;
            succeeded += u32::from(real);
            s.validate()
                .unwrap_or_else(|e| panic!("seed {seed} step {step} {what}: {e}"));
            assert_eq!(
                snapshot_paths(&s),
                m.nodes,
                "seed {seed} step {step}: {what}"
            );
        }
        let bytes = snapshot::encode(&s).expect("encode");
        let back = snapshot::decode(&bytes).expect("decode");
        assert_eq!(back, s, "snapshot roundtrip");
        let counts = s.counts();
        assert_eq!(counts.under_construction, 0);
        assert_eq!(
            counts.files + counts.dirs,
            m.nodes.len() as u64,
            "every inode is visible"
        );
    }
    println!("{succeeded} of {tried} operations succeeded");
    assert!(
        succeeded * 6 > tried,
        "the generator must exercise successes too"
    );
    assert!(succeeded * 10 < tried * 9, "and failures");
}

#[test]
fn a_damaged_snapshot_is_refused() {
    let mut s = MetaState::new(CS, 3).expect("state");
    s.apply(
        &Command::Mkdir {
            path: "/x/y".into(),
            parents: true,
        },
        5,
    );
    let b = snapshot::encode(&s).expect("encode");
    for i in [0usize, 9, 13, 20, b.len() - 1] {
        let mut bad = b.clone();
        bad[i] ^= 1;
        assert!(snapshot::decode(&bad).is_err(), "flip at {i}");
    }
    assert!(snapshot::decode(&b[..b.len() - 1]).is_err());
    assert_eq!(snapshot::decode(&b).expect("good"), s);
}
