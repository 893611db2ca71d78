//! The snapshot format of the master state: a small versioned header, a crc32c of the body,
//! and the body (postcard, compact and not self-describing: the header version says how to
//! read it).
//!
//! | offset | size | field                       |
//! |--------|------|-----------------------------|
//! | 0      | 8    | magic `SHALESNP`            |
//! | 8      | 2    | format version (1..=9)      |
//! | 10     | 2    | reserved, 0                 |
//! | 12     | 4    | crc32c of the body          |
//! | 16     | 8    | body length                 |
//! | 24     | n    | body                        |
//!
//! Body, format 9 (`parts`): the state cut into parts that load on several threads at once
//! (the inode and chunk maps in 16 parts each, the client sessions apart), each part framed
//! by its length.
//!
//! Body, formats 1 to 8 (`legacy`, still read; format 8 still written on request): `MetaState`
//! (postcard, inodes and chunks inline), then the client sessions, then the security state
//! (chunkserver principals, token keys, chunk digests), then the permissions (owner and group
//! names, memberships, and every inode's owner, group and mode: `sm::perms`), then the
//! directories' replication defaults (`sm::namespace`), then the quotas (`sm::quota`) and the
//! trash items (`sm::trash`), then the directory snapshots (`sm::snaps`), then the append
//! files' logs (`sm::appends`, format 8). Format 7 (no append files), 6 (no
//! directory snapshots), 5 (no quotas or trash items either), 4 (no directory defaults),
//! 3 (no permissions either: everything root's), 2 (no security state either) and 1 (no
//! sessions either) decode with those parts empty.
use crate::sm::MetaState;

mod legacy;
mod parts;

pub const MAGIC: &[u8; 8] = b"SHALESNP";
pub const FORMAT_VERSION: u16 = 9;
const HEADER_BYTES: usize = 24;

/// The formats this release writes ([`encode_format`]): the current one, and 8 for a master
/// of an older release.
pub const WRITTEN: [u16; 2] = [8, FORMAT_VERSION];

/// Appends the sections formats 5 to 8 added after the permissions, in order (format 9
/// writes them the same way): directory replication defaults, quotas, trash items,
/// directory snapshots, append files.
fn encode_later_sections(s: &MetaState, b: Vec<u8>) -> postcard::Result<Vec<u8>> {
    let mut b = crate::sm::namespace::encode_dir_replication(s, b)?;
    b = crate::sm::quota::encode_section(s, b)?;
    b = crate::sm::trash::encode_section(s, b)?;
    b = crate::sm::snaps::encode_section(s, b)?;
    crate::sm::appends::encode_section(s, b)
}

/// Reads into `state` those of [`encode_later_sections`] that format `version` has; the
/// bytes after them.
fn decode_later_sections<'b>(
    state: &mut MetaState,
    version: u16,
    mut rest: &'b [u8],
) -> postcard::Result<&'b [u8]> {
    if version >= 5 {
        rest = crate::sm::namespace::decode_dir_replication(state, rest)?;
    }
    if version >= 6 {
        rest = crate::sm::quota::decode_section(state, rest)?;
        rest = crate::sm::trash::decode_section(state, rest)?;
    }
    if version >= 7 {
        rest = crate::sm::snaps::decode_section(state, rest)?;
    }
    if version >= 8 {
        rest = crate::sm::appends::decode_section(state, rest)?;
    }
    Ok(rest)
}

/// Threads a master loads a snapshot with: every core, up to 8.
pub fn load_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

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
    encode_format(state, FORMAT_VERSION)
}

/// `state` as a snapshot of format `version`: 9 (the current one) or 8 (what a master of an
/// older release reads; also how tests make older files).
pub fn encode_format(state: &MetaState, version: u16) -> Result<Vec<u8>, SnapshotError> {
    // The header first with zeros for the checksum and length, filled in once the body is
    // there (no second copy of a body of hundreds of MB).
    let mut out = Vec::with_capacity(HEADER_BYTES + 4096);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&[0; HEADER_BYTES - 10]);
    let out = match version {
        9 => parts::encode_body(state, out),
        8 => legacy::encode_body(state, out),
        v => return Err(SnapshotError::Version(v)),
    };
    let mut out = out.map_err(|e| SnapshotError::Body(e.to_string()))?;
    let body = &out[HEADER_BYTES..];
    let (crc, len) = (crc32c::crc32c(body), body.len() as u64);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out[16..24].copy_from_slice(&len.to_le_bytes());
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
    decode_trusted_with(b, load_threads())
}

/// [`decode_trusted`] on up to `threads` threads (format 9; older formats load in one).
pub fn decode_trusted_with(b: &[u8], threads: usize) -> Result<MetaState, SnapshotError> {
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
    let mut state = if version >= 9 {
        parts::decode_body(body, threads)?
    } else {
        legacy::decode_body(version, body)?
    };
    state.recount();
    if !state.root_is_dir() {
        return Err(SnapshotError::Body("the root is not a directory".into()));
    }
    Ok(state)
}
