//! Writes a seed corpus for every harness (valid encodings of each input kind) under the
//! directory given (default `fuzz/corpus`): `cargo run -p shale-fuzz --example seed`.
use prost::Message;
use std::path::{Path, PathBuf};

fn put(root: &Path, target: &str, name: &str, data: &[u8]) {
    let d = root.join(target);
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join(name), data).expect("write");
}

fn main() {
    let root: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    // sidecar
    use shale_chunk::format::{CrcAccumulator, Sidecar, BLOCK_SIZE_BYTES};
    let mut acc = CrcAccumulator::new(BLOCK_SIZE_BYTES);
    acc.update(&vec![7u8; 200_000]);
    let sc = Sidecar {
        block_size: BLOCK_SIZE_BYTES,
        chunk: shale_proto::ChunkId(5),
        version: shale_proto::ChunkVersion(2),
        length: 200_000,
        block_crcs: acc.finish(),
    };
    put(&root, "sidecar", "valid", &sc.encode());
    // raft records and a segment
    use shale_raftlog::record::{self, Kind};
    let mut seg = record::encode_segment_header(1).to_vec();
    let mut recs = Vec::new();
    record::encode_batch(&mut recs, 1, 0);
    record::encode(&mut recs, Kind::Append, 1, b"entry one");
    record::encode(&mut recs, Kind::Vote, 0, b"vote");
    put(&root, "raft_record", "records", &recs);
    seg.extend_from_slice(&recs);
    put(&root, "raft_segment", "segment", &seg);
    // snapshot and commands
    use shale_meta::sm::{Command, MetaState};
    let mut s = MetaState::new(1 << 20, 3).expect("state");
    let cmds = [
        Command::Mkdir {
            path: "/a/b".into(),
            parents: true,
        },
        Command::Create {
            path: "/a/f".into(),
            overwrite: false,
            replication: Some(2),
            chunk_size_bytes: None,
            holder: 9,
            lease_ms: 60_000,
        },
        Command::RegisterChunkserver {
            uuid: "u1".into(),
            address: "127.0.0.1:7201".into(),
            host: "h1".into(),
            rack: None,
            capacity_bytes: 1 << 30,
        },
        Command::AddTokenKey {
            id: 1,
            secret: vec![1; 32],
        },
        Command::Rename {
            src: "/a/b".into(),
            dst: "/c".into(),
        },
        Command::Delete {
            path: "/c".into(),
            recursive: true,
        },
        Command::MkdirWithMode {
            path: "/home".into(),
            parents: false,
            mode: 0o755,
        },
        Command::SetAttrs {
            path: "/home".into(),
            mode: Some(0o1777),
            owner: Some("alice".into()),
            group: Some("staff".into()),
        },
        Command::SetMember {
            group: "staff".into(),
            user: "bob".into(),
            member: true,
        },
        Command::As {
            who: shale_meta::sm::Who::user("bob"),
            cmd: Box::new(Command::CreateWithMode {
                path: "/home/g".into(),
                overwrite: false,
                replication: None,
                chunk_size_bytes: None,
                holder: 3,
                lease_ms: 1000,
                mode: 0o600,
            }),
        },
        Command::SetUserKey {
            id: 1,
            secret: vec![2; 32],
        },
        Command::SetReplication {
            path: "/home".into(),
            replication: 2,
        },
    ];
    let mut bytes = Vec::new();
    for (i, c) in cmds.iter().enumerate() {
        s.apply(c, 1000 * (i as u64 + 1));
        bytes.extend(postcard::to_allocvec(c).expect("encode"));
    }
    put(&root, "commands", "mixed", &bytes);
    put(
        &root,
        "snapshot",
        "state",
        &shale_meta::snapshot::encode(&s).expect("snapshot"),
    );
    // raft messages
    let v = openraft::raft::VoteRequest::<u64> {
        vote: openraft::Vote::new(3, 1),
        last_log_id: None,
    };
    put(
        &root,
        "raft_messages",
        "vote",
        &postcard::to_allocvec(&v).expect("vote"),
    );
    let a = openraft::raft::AppendEntriesRequest::<shale_meta::raft::TypeConfig> {
        vote: openraft::Vote::new_committed(3, 1),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    put(
        &root,
        "raft_messages",
        "append",
        &postcard::to_allocvec(&a).expect("append"),
    );
    // chunk requests
    use shale_proto::pb;
    let token = pb::ChunkToken {
        key_id: 1,
        chunk: Some(pb::ChunkRef {
            chunk_id: 1,
            version: 1,
        }),
        modes: 3,
        expires_ms: 10,
        targets: vec![pb::PipelineTarget {
            node_id: 1,
            address: "127.0.0.1:1".into(),
            data_address: String::new(),
        }],
        mac: vec![0u8; 32].into(),
    };
    let w = pb::WriteChunkRequest {
        kind: Some(pb::write_chunk_request::Kind::Header(pb::WriteHeader {
            chunk: Some(pb::ChunkRef {
                chunk_id: 1,
                version: 1,
            }),
            downstream: vec![],
            length: 100,
            node_id: 1,
            token: Some(token.clone()),
        })),
    };
    put(&root, "chunk_requests", "write_header", &w.encode_to_vec());
    let r = pb::ReadChunkRequest {
        chunk: Some(pb::ChunkRef {
            chunk_id: 1,
            version: 1,
        }),
        offset: 0,
        length: 10,
        to_end: false,
        token: Some(token),
    };
    put(&root, "chunk_requests", "read", &r.encode_to_vec());
    // master requests
    use shale_proto::metapb;
    let hb = metapb::HeartbeatRequest {
        node_id: 1,
        chunks: vec![metapb::ReportedChunk {
            chunk_id: 1,
            version: 1,
            length: 5,
        }],
        ..Default::default()
    };
    put(&root, "master_requests", "heartbeat", &hb.encode_to_vec());
    let reg = metapb::RegisterRequest {
        uuid: "u".into(),
        address: "127.0.0.1:7201".into(),
        host: "h".into(),
        ..Default::default()
    };
    put(&root, "master_requests", "register", &reg.encode_to_vec());
    // paths
    for (i, p) in ["/", "/a/b/c", "//a//b/", "/a/../b", "/x\u{0}y", "relative"]
        .iter()
        .enumerate()
    {
        put(&root, "path", &format!("p{i}"), p.as_bytes());
    }
    // certificate
    let d = tempfile::tempdir().expect("tmp");
    let p = shale_security::Principal::new(shale_security::Role::User, "alice").expect("p");
    shale_security::certs::provision(d.path(), std::slice::from_ref(&p), &[]).expect("cert");
    let pem = std::fs::read(d.path().join("alice.pem")).expect("pem");
    let der = shale_security::tls::certs_from_pem(&pem, d.path()).expect("der");
    put(&root, "certificate", "user", &der[0]);
    println!("seeds written under {}", root.display());
    // user tokens and block digests
    let claims = shale_security::bearer::UserClaims {
        key_id: 1,
        issued_ms: 0,
        expires_ms: 3_600_000,
        principal: shale_security::Principal::new(shale_security::Role::User, "alice")
            .expect("principal"),
    };
    let t = shale_security::bearer::sign(&[7u8; 32], &claims).expect("sign");
    put(&root, "user_token", "valid", t.as_bytes());
    let chunk: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let cvs: Vec<u8> = shale_security::digest::block_cvs(&chunk)
        .into_iter()
        .flatten()
        .collect();
    let reply = pb::ChunkDigestsReply {
        length: chunk.len() as u64,
        block_bytes: shale_security::digest::BLOCK_BYTES,
        cvs: cvs.clone().into(),
    };
    put(&root, "block_digests", "reply", &reply.encode_to_vec());
    let mut raw = (chunk.len() as u64).to_le_bytes().to_vec();
    raw.extend_from_slice(&cvs);
    put(&root, "block_digests", "raw", &raw);
}
