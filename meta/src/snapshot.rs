//! The snapshot format of the master state: a small versioned header, a crc32c of the body,
//! and the body (postcard, compact and not self-describing: the header version says how to
//! read it).
//!
//! | offset | size | field                       |
//! |--------|------|-----------------------------|
//! | 0      | 8    | magic `SHALESNP`            |
//! | 8      | 2    | format version (1..=8)      |
//! | 10     | 2    | reserved, 0                 |
//! | 12     | 4    | crc32c of the body          |
//! | 16     | 8    | body length                 |
//! | 24     | n    | body                        |
//!
//! Body, format 6: `MetaState` (postcard), then the client sessions, then the security state
//! (chunkserver principals, token keys, chunk digests), then the permissions (owner and group
//! names, memberships, and every inode's owner, group and mode: `sm::perms`), then the
//! directories' replication defaults (`sm::namespace`), then the quotas (`sm::quota`) and the
//! trash items (`sm::trash`), then the directory snapshots (`sm::snaps`), then the append
//! files' logs (`sm::appends`, format 8). Format 7 (no append files), 6 (no
//! directory snapshots), 5 (no quotas or trash items either), 4 (no directory defaults),
//! 3 (no permissions either: everything root's), 2 (no security state either) and 1 (no
//! sessions either) still decode, with those parts empty.
use crate::sm::MetaState;

pub const MAGIC: &[u8; 8] = b"SHALESNP";
pub const FORMAT_VERSION: u16 = 8;
const HEADER_BYTES: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot header cut short")]
    Short,
    #[error("not a Shale snapshot (bad magic)")]
    Magic,
    #[error("unsupported snapshot format version {0}")]
    Version(u16),
    #[error("snapshot body is {got} bytes, header says {want}")]
    Length { got: usize, want: u64 },
    #[error("snapshot checksum mismatch")]
    Crc,
    #[error("snapshot body does not decode: {0}")]
    Body(String),
}

pub fn encode(state: &MetaState) -> Result<Vec<u8>, SnapshotError> {
    let mut body = postcard::to_allocvec(state).map_err(|e| SnapshotError::Body(e.to_string()))?;
    body = postcard::to_extend(&state.sessions, body)
        .map_err(|e| SnapshotError::Body(e.to_string()))?;
    body = postcard::to_extend(&state.security, body)
        .map_err(|e| SnapshotError::Body(e.to_string()))?;
    body = crate::sm::perms::encode_section(state, body)
        .map_err(|e| SnapshotError::Body(e.to_string()))?;
    body = crate::sm::namespace::encode_dir_replication(state, body)
        .map_err(|e| SnapshotError::Body(e.to_string()))?;
    body = crate::sm::quota::encode_section(state, body)
        .map_err(|e| SnapshotError::Body(e.to_string()))?;
    body = crate::sm::trash::encode_section(state, body)
        .map_err(|e| SnapshotError::Body(e.to_string()))?;
    body = crate::sm::snaps::encode_section(state, body)
        .map_err(|e| SnapshotError::Body(e.to_string()))?;
    body = crate::sm::appends::encode_section(state, body)
        .map_err(|e| SnapshotError::Body(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a snapshot and checks every invariant of the state (`MetaState::validate`, O(N)
/// and about 60 % of the load time): for snapshots from elsewhere (a leader's
/// `InstallSnapshot`) and for a master started with `--verify-state`.
pub fn decode(b: &[u8]) -> Result<MetaState, SnapshotError> {
    let state = decode_trusted(b)?;
    state.validate().map_err(SnapshotError::Body)?;
    Ok(state)
}

/// Decodes a snapshot this master wrote itself (crc-checked, structure decoded, counts
/// derived) without the full invariant check: what a restart loads. The state was valid when
/// it was written (debug builds check after every apply; the model tests after every step).
pub fn decode_trusted(b: &[u8]) -> Result<MetaState, SnapshotError> {
    if b.len() < HEADER_BYTES {
        return Err(SnapshotError::Short);
    }
    if &b[..8] != MAGIC {
        return Err(SnapshotError::Magic);
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(SnapshotError::Version(version));
    }
    let crc = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&b[16..24]);
    let want = u64::from_le_bytes(len);
    let body = &b[HEADER_BYTES..];
    if body.len() as u64 != want {
        return Err(SnapshotError::Length {
            got: body.len(),
            want,
        });
    }
    if crc32c::crc32c(body) != crc {
        return Err(SnapshotError::Crc);
    }
    let bad = |e: postcard::Error| SnapshotError::Body(e.to_string());
    let (mut state, rest): (MetaState, &[u8]) = postcard::take_from_bytes(body).map_err(bad)?;
    let mut rest = rest;
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
    if version >= 5 {
        rest = crate::sm::namespace::decode_dir_replication(&mut state, rest).map_err(bad)?;
    }
    if version >= 6 {
        rest = crate::sm::quota::decode_section(&mut state, rest).map_err(bad)?;
        rest = crate::sm::trash::decode_section(&mut state, rest).map_err(bad)?;
    }
    if version >= 7 {
        rest = crate::sm::snaps::decode_section(&mut state, rest).map_err(bad)?;
    }
    if version >= 8 {
        rest = crate::sm::appends::decode_section(&mut state, rest).map_err(bad)?;
    }
    state.recount();
    if !rest.is_empty() {
        return Err(SnapshotError::Body(format!(
            "{} bytes after the body",
            rest.len()
        )));
    }
    if !state.root_is_dir() {
        return Err(SnapshotError::Body("the root is not a directory".into()));
    }
    Ok(state)
}
