//! Snapshot formats 1 to 8: one postcard body, the inodes and chunks inline in the state's
//! fields, then the sections each later format appended (see the module above). Decoded for
//! snapshots written before format 9; format 8 is still written on request
//! ([`super::encode_format`]), for tests and for a master of an older release.
use super::SnapshotError;
use crate::sm::idmap::IdMap;
use crate::sm::name::Name;
use crate::sm::{ChunkMeta, Inode, MetaState, Pending, ServerInfo};
use serde::{Deserialize, Serialize};
use shale_proto::{ChunkId, ChunkVersion, InodeId, NodeId};
use std::collections::{BTreeMap, HashMap};

/// The state's fields in the order formats 1 to 8 wrote them: borrowed to write format 8,
/// owned ([`Owned`]) to read.
#[derive(Serialize, Deserialize)]
struct Fields<I, C, P, N, G, S> {
    log_time_ms: u64,
    next_inode: u64,
    next_chunk: u64,
    next_server: u64,
    chunk_size_log2: u8,
    replication: u8,
    inodes: I,
    chunks: C,
    pending: P,
    pending_names: N,
    garbage: G,
    servers: S,
}

type Owned = Fields<
    IdMap<InodeId, Inode>,
    IdMap<ChunkId, ChunkMeta>,
    IdMap<InodeId, Pending>,
    HashMap<(InodeId, Name), InodeId>,
    BTreeMap<ChunkId, ChunkVersion>,
    BTreeMap<NodeId, ServerInfo>,
>;

impl From<Owned> for MetaState {
    fn from(o: Owned) -> Self {
        MetaState {
            log_time_ms: o.log_time_ms,
            next_inode: o.next_inode,
            next_chunk: o.next_chunk,
            next_server: o.next_server,
            chunk_size_log2: o.chunk_size_log2,
            replication: o.replication,
            inodes: o.inodes,
            chunks: o.chunks,
            pending: o.pending,
            pending_names: o.pending_names,
            garbage: o.garbage,
            servers: o.servers,
            sessions: Default::default(),
            security: Default::default(),
            perms: Default::default(),
            dirs: 0,
            quotas: BTreeMap::new(),
            trash: BTreeMap::new(),
            snaps: Default::default(),
            appends: BTreeMap::new(),
        }
    }
}

/// Appends the body of format 8 to `out`.
pub(super) fn encode_body(s: &MetaState, out: Vec<u8>) -> postcard::Result<Vec<u8>> {
    let fields = Fields {
        log_time_ms: s.log_time_ms,
        next_inode: s.next_inode,
        next_chunk: s.next_chunk,
        next_server: s.next_server,
        chunk_size_log2: s.chunk_size_log2,
        replication: s.replication,
        inodes: &s.inodes,
        chunks: &s.chunks,
        pending: &s.pending,
        pending_names: &s.pending_names,
        garbage: &s.garbage,
        servers: &s.servers,
    };
    let mut body = postcard::to_extend(&fields, out)?;
    body = postcard::to_extend(&s.sessions, body)?;
    body = postcard::to_extend(&s.security, body)?;
    body = crate::sm::perms::encode_section(s, body)?;
    super::encode_later_sections(s, body)
}

/// The state in a body of format `version` (1 to 8).
pub(super) fn decode_body(version: u16, body: &[u8]) -> Result<MetaState, SnapshotError> {
    let bad = |e: postcard::Error| SnapshotError::Body(e.to_string());
    let (owned, mut rest): (Owned, &[u8]) = postcard::take_from_bytes(body).map_err(bad)?;
    let mut state = MetaState::from(owned);
    if version >= 2 {
        let (sessions, r) = postcard::take_from_bytes(rest).map_err(bad)?;
        state.sessions = sessions;
        rest = r;
    }
    if version >= 3 {
        let (security, r) = postcard::take_from_bytes(rest).map_err(bad)?;
        state.security = security;
        rest = r;
    }
    if version >= 4 {
        rest = crate::sm::perms::decode_section(&mut state, rest).map_err(bad)?;
    } else {
        crate::sm::perms::legacy_attrs(&mut state);
    }
    let rest = super::decode_later_sections(&mut state, version, rest).map_err(bad)?;
    if !rest.is_empty() {
        return Err(SnapshotError::Body(format!(
            "{} bytes after the body",
            rest.len()
        )));
    }
    Ok(state)
}
