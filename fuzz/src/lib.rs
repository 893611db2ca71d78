//! The fuzz harnesses: one function per decoder that reads untrusted bytes (from the network,
//! from disk, from a peer). Each must return normally on every input: no panic, no unbounded
//! allocation, no hang. Where a decoder has an encoder, what decodes must re-encode to
//! something that decodes to the same value.
//!
//! Driven by libFuzzer (`fuzz/libfuzzer/`, `cargo +nightly fuzz`), and replayed on stable over
//! the saved corpora and every past crash (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) by `tests/replay.rs`.
use prost::Message;

/// A harness: the name of its corpus directory and the function.
pub type Target = (&'static str, fn(&[u8]));

/// Every harness.
pub const TARGETS: &[Target] = &[
    ("sidecar", sidecar),
    ("raft_record", raft_record),
    ("raft_segment", raft_segment),
    ("snapshot", snapshot),
    ("commands", commands),
    ("raft_messages", raft_messages),
    ("chunk_requests", chunk_requests),
    ("master_requests", master_requests),
    ("path", path),
    ("certificate", certificate),
    ("user_token", user_token),
    ("block_digests", block_digests),
];

/// A chunk's checksum sidecar (read from disk at open and recovery).
pub fn sidecar(data: &[u8]) {
    use shale_chunk::format::Sidecar;
    if let Ok(s) = Sidecar::decode(data) {
        let again = Sidecar::decode(&s.encode()).expect("a re-encoded sidecar decodes");
        assert_eq!(again, s);
        // Verifying blocks against arbitrary data must not panic.
        let _ = s.verify_blocks(0, &data[..data.len().min(1 << 16)]);
        let _ = s.block_span(u64::MAX / 2, u64::MAX);
    }
}

/// One Raft log record and a segment header (read from disk at open).
pub fn raft_record(data: &[u8]) {
    use shale_raftlog::record;
    let mut at = 0;
    while at < data.len() {
        match record::decode(&data[at..]) {
            Ok((r, n)) => {
                assert!(n > 0, "a record of no bytes");
                let _ = record::batch_bytes(&r);
                at += n;
            }
            Err(_) => break,
        }
    }
    let _ = record::decode_segment_header(data);
    let _ = record::find_later_batch(data, 0);
}

/// A whole log directory holding one segment of these bytes: opening it (replay, torn-tail
/// repair) must fail cleanly or succeed.
pub fn raft_segment(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let p = shale_raftlog::segment::path(dir.path(), 1);
    if std::fs::write(&p, data).is_err() {
        return;
    }
    let _ = shale_raftlog::RaftLog::open(dir.path(), shale_raftlog::LogConfig::default());
}

/// A master snapshot (installed from a peer, or read from disk at start).
pub fn snapshot(data: &[u8]) {
    if let Ok(s) = shale_meta::snapshot::decode(data) {
        let bytes = shale_meta::snapshot::encode(&s).expect("encode");
        let again = shale_meta::snapshot::decode(&bytes).expect("a re-encoded snapshot decodes");
        assert!(again == s, "snapshot round trip changed the state");
    }
}

/// Committed Raft entries: any sequence of commands applied to a state must keep it valid
/// (a committed entry can never crash or corrupt a master).
pub fn commands(data: &[u8]) {
    use shale_meta::sm::{Command, MetaState};
    let Ok(mut s) = MetaState::new(1 << 20, 3) else {
        return;
    };
    let mut rest = data;
    let mut t = 0u64;
    for _ in 0..64 {
        let Ok((cmd, r)) = postcard::take_from_bytes::<Command>(rest) else {
            break;
        };
        rest = r;
        t += 1000;
        let _ = s.apply(&cmd, t);
        if let Err(e) = s.validate() {
            panic!("state invalid after {cmd:?}: {e}");
        }
    }
}

/// The Raft messages a peer can send (postcard, as `RaftService` receives them).
pub fn raft_messages(data: &[u8]) {
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
    use shale_meta::raft::{prevote, TypeConfig};
    let _ = postcard::from_bytes::<AppendEntriesRequest<TypeConfig>>(data);
    let _ = postcard::from_bytes::<VoteRequest<u64>>(data);
    let _ = postcard::from_bytes::<InstallSnapshotRequest<TypeConfig>>(data);
    if let Ok(r) = postcard::from_bytes::<prevote::PreVoteRequest>(data) {
        // Answered by the pure rule, whatever the numbers.
        let me = prevote::Me {
            id: 2,
            leading: false,
            voter: true,
            campaigns: true,
            silence: std::time::Duration::from_secs(1),
            term: u64::MAX,
            last_log_id: r.last_log_id,
        };
        let _ = prevote::answer(&me, &r, &prevote::Timing::new(150, 300, 37));
    }
}

/// The chunkserver's requests, decoded and converted to domain values.
pub fn chunk_requests(data: &[u8]) {
    use shale_proto::pb;
    if let Ok(m) = pb::WriteChunkRequest::decode(data) {
        if let Some(pb::write_chunk_request::Kind::Header(h)) = &m.kind {
            let _ = shale_proto::WriteHeader::from_wire(h, 1 << 30);
            if let Some(t) = &h.token {
                let _ = shale_proto::convert::token_claims(t);
            }
        }
    }
    if let Ok(m) = pb::ReadChunkRequest::decode(data) {
        let _ = shale_proto::ReadRange::try_from(&m);
        if let Some(t) = &m.token {
            if let Ok((c, mac)) = shale_proto::convert::token_claims(t) {
                let key = |_| Some(vec![7u8; 32]);
                let _ = shale_security::token::verify(key, &c, mac, (1, 1), 1, 0);
            }
        }
    }
    if let Ok(m) = pb::ReplicateChunkRequest::decode(data) {
        let _ = shale_proto::ChunkRef::try_from(m.chunk.as_ref());
    }
    if let Ok(m) = pb::DeleteChunksRequest::decode(data) {
        for c in &m.chunks {
            let _ = shale_proto::ChunkRef::try_from(c);
        }
    }
}

/// The master's requests that carry structure (heartbeats, registrations, paths).
pub fn master_requests(data: &[u8]) {
    use shale_proto::metapb;
    if let Ok(m) = metapb::HeartbeatRequest::decode(data) {
        let _ = m.chunks.len() + m.removed.len();
    }
    if let Ok(m) = metapb::RegisterRequest::decode(data) {
        let _ = shale_meta::sm::registry::check_address(&m.address);
        let _ = shale_meta::sm::registry::check_label("host", &m.host);
    }
    if let Ok(m) = metapb::RenameRequest::decode(data) {
        let _ = shale_meta::path::split(&m.src);
        let _ = shale_meta::path::components(&m.dst);
    }
}

/// Paths as clients send them.
pub fn path(data: &[u8]) {
    let Ok(p) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = shale_meta::path::components(p) {
        assert!(c.iter().all(|x| !x.is_empty() && !x.contains('/')), "{c:?}");
    }
    let _ = shale_meta::path::split(p);
}

/// A peer's certificate (after the TLS layer verified its signature chain, the principal is
/// read from it).
pub fn certificate(data: &[u8]) {
    let _ = shale_security::Principal::from_der(data);
}

/// A user token as a client without a certificate sends it (`authorization: Bearer …`).
pub fn user_token(data: &[u8]) {
    use shale_security::bearer;
    let Ok(t) = std::str::from_utf8(data) else {
        return;
    };
    let _ = bearer::key_id(t);
    if let Ok(c) = bearer::verify(&[7u8; 32], t, 1) {
        // Only what the key signed verifies: it must sign back to the same token.
        assert_eq!(bearer::sign(&[7u8; 32], &c).as_deref(), Ok(t));
    }
}

/// A chunkserver's block digests as a reader receives them (checked against a digest).
pub fn block_digests(data: &[u8]) {
    use shale_security::digest;
    if let Ok(r) = shale_proto::pb::ChunkDigestsReply::decode(data) {
        if let Ok(cvs) = digest::cvs_from_bytes(&r.cvs) {
            let _ = digest::root_of_cvs(&cvs, r.length);
        }
    }
    // Raw values against a length the bytes give.
    if data.len() >= 8 {
        let mut l = [0u8; 8];
        l.copy_from_slice(&data[..8]);
        let len = u64::from_le_bytes(l) % (1 << 31);
        let rest = &data[8..];
        if let Ok(cvs) = digest::cvs_from_bytes(&rest[..rest.len() / 32 * 32]) {
            let _ = digest::root_of_cvs(&cvs, len);
        }
    }
}
