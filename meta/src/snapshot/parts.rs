//! Snapshot format 9: the state in parts that load on several threads at once.
//!
//! A restart loads the whole namespace before the master serves; in one thread that was
//! ≈ 0.5 µs per file (≈ 5 s at 10 M files), two thirds of it the inode map and a fifth the
//! client sessions. The body is:
//!
//! | part | what |
//! |------|------|
//! | head | postcard `MetaState`: counters, files under construction, garbage, servers |
//! | frame | the client sessions |
//! | frame | the security state, owner and group names, directory replication defaults, quotas, trash items, directory snapshots, append files (the sections of formats 3 to 8) |
//! | varint `P`, `P` frames | inode part `p`: a sequence of (id, inode, owner/group/mode) for the shards `idmap::part_shards(p, P)` |
//! | varint `P`, `P` frames | chunk part `p`: a sequence of (id, chunk) likewise |
//!
//! A frame is a u64 little-endian byte length and that many bytes. The sessions and every
//! part decode on their own (a thread each, as many at once as the loader has threads), each
//! part straight into its own shards of the map (no entry moves afterwards); the small
//! frame is read last, by the calling thread, as it refers to inodes. Invariants: a part
//! holds only entries of its shards, an id at most once, and nothing after its sequence;
//! every frame lies inside the body and nothing follows the last.
use super::SnapshotError;
use crate::sm::idmap::{part_shards, IdMap, SHARDS};
use crate::sm::perms::Attrs;
use crate::sm::sessions::Sessions;
use crate::sm::{ChunkMeta, Inode, MetaState};
use shale_proto::{ChunkId, InodeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Parts each map is written in: more than the threads a loader uses, so that they finish
/// close together.
const PARTS: usize = 16;

type Shards<K, V> = Vec<HashMap<K, V, crate::sm::idmap::IdBuild>>;

/// Appends the body of format 9 to `out`.
pub(super) fn encode_body(s: &MetaState, out: Vec<u8>) -> postcard::Result<Vec<u8>> {
    let mut body = postcard::to_extend(s, out)?;
    body = frame(body, |b| postcard::to_extend(&s.sessions, b))?;
    body = frame(body, |b| {
        let b = postcard::to_extend(&s.security, b)?;
        let b = crate::sm::perms::encode_names(s, b)?;
        super::encode_later_sections(s, b)
    })?;
    body = postcard::to_extend(&(PARTS as u32), body)?;
    for p in 0..PARTS {
        body = frame(body, |b| {
            s.inodes
                .encode_shards(part_shards(p, PARTS), b, |id, i| (*id, i, i.attrs))
        })?;
    }
    body = postcard::to_extend(&(PARTS as u32), body)?;
    for p in 0..PARTS {
        body = frame(body, |b| {
            s.chunks
                .encode_shards(part_shards(p, PARTS), b, |id, c| (*id, c))
        })?;
    }
    Ok(body)
}

/// Appends a frame of what `write` appends.
fn frame(
    mut out: Vec<u8>,
    write: impl FnOnce(Vec<u8>) -> postcard::Result<Vec<u8>>,
) -> postcard::Result<Vec<u8>> {
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    let mut out = write(out)?;
    let len = (out.len() - at - 8) as u64;
    out[at..at + 8].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

fn bad(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Body(e.to_string())
}

/// The next frame of `b` and the bytes after it.
fn take_frame(b: &[u8]) -> Result<(&[u8], &[u8]), SnapshotError> {
    let (len, rest) = b
        .split_first_chunk::<8>()
        .ok_or_else(|| bad("a frame cut short"))?;
    let len = u64::from_le_bytes(*len);
    if len > rest.len() as u64 {
        return Err(bad(format!(
            "a frame of {len} bytes where {} are left",
            rest.len()
        )));
    }
    Ok(rest.split_at(len as usize))
}

/// A part count and that many frames.
fn take_parts(b: &[u8]) -> Result<(Vec<&[u8]>, &[u8]), SnapshotError> {
    let (n, mut rest): (u32, &[u8]) = postcard::take_from_bytes(b).map_err(bad)?;
    let n = n as usize;
    if n == 0 || n > SHARDS {
        return Err(bad(format!("{n} parts (1 to {SHARDS})")));
    }
    let mut parts = Vec::with_capacity(n);
    for _ in 0..n {
        let (f, r) = take_frame(rest)?;
        parts.push(f);
        rest = r;
    }
    Ok((parts, rest))
}

/// What one thread decodes at a time.
enum Work<'b> {
    Sessions(&'b [u8]),
    Inodes {
        part: usize,
        of: usize,
        bytes: &'b [u8],
    },
    Chunks {
        part: usize,
        of: usize,
        bytes: &'b [u8],
    },
}

impl Work<'_> {
    fn len(&self) -> usize {
        match self {
            Work::Sessions(b) | Work::Inodes { bytes: b, .. } | Work::Chunks { bytes: b, .. } => {
                b.len()
            }
        }
    }
}

/// What a piece of work decoded (a part with its number).
enum Done {
    Sessions(Sessions),
    Inodes(usize, Shards<InodeId, Inode>),
    Chunks(usize, Shards<ChunkId, ChunkMeta>),
}

fn run(w: &Work<'_>) -> Result<Done, String> {
    match *w {
        Work::Sessions(b) => postcard::from_bytes(b)
            .map(Done::Sessions)
            .map_err(|e| e.to_string()),
        Work::Inodes { part, of, bytes } => IdMap::<InodeId, Inode>::decode_shards(
            part_shards(part, of),
            bytes,
            |(id, mut i, a): (InodeId, Inode, Attrs)| {
                i.attrs = a;
                (id, i)
            },
        )
        .map(|m| Done::Inodes(part, m)),
        Work::Chunks { part, of, bytes } => IdMap::<ChunkId, ChunkMeta>::decode_shards(
            part_shards(part, of),
            bytes,
            |(id, c): (ChunkId, ChunkMeta)| (id, c),
        )
        .map(|m| Done::Chunks(part, m)),
    }
}

/// Runs every piece of work on up to `threads` threads (the caller's among them); a result
/// for each.
fn run_all(work: &[Work<'_>], threads: usize) -> Vec<Result<Done, String>> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Result<Done, String>>>> =
        work.iter().map(|_| Mutex::new(None)).collect();
    let drain = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(w) = work.get(i) else { break };
        let r = run(w);
        if let Ok(mut slot) = slots[i].lock() {
            *slot = Some(r);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads.clamp(1, work.len().max(1)) {
            // A thread that cannot be made leaves its share to the others.
            let _ = std::thread::Builder::new()
                .name("snapshot-load".into())
                .spawn_scoped(s, drain);
        }
        drain();
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err("not decoded".into()))
        })
        .collect()
}

/// The state in a body of format 9, its parts decoded on up to `threads` threads.
pub(super) fn decode_body(body: &[u8], threads: usize) -> Result<MetaState, SnapshotError> {
    let (mut state, rest): (MetaState, &[u8]) = postcard::take_from_bytes(body).map_err(bad)?;
    let (sessions, rest) = take_frame(rest)?;
    let (small, rest) = take_frame(rest)?;
    let (inodes, rest) = take_parts(rest)?;
    let (chunks, rest) = take_parts(rest)?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the body", rest.len())));
    }
    // The sessions first: one piece as large as several parts.
    let mut work = vec![Work::Sessions(sessions)];
    // Then the parts, the largest first, so that no thread starts a large one late (a
    // shard's share of the ids grows with its number: the last part is twice the first).
    let (n_inodes, n_chunks) = (inodes.len(), chunks.len());
    work.extend(
        inodes
            .into_iter()
            .enumerate()
            .map(|(part, bytes)| Work::Inodes {
                part,
                of: n_inodes,
                bytes,
            }),
    );
    work.extend(
        chunks
            .into_iter()
            .enumerate()
            .map(|(part, bytes)| Work::Chunks {
                part,
                of: n_chunks,
                bytes,
            }),
    );
    work[1..].sort_by_key(|w| std::cmp::Reverse(w.len()));
    let mut inode_parts: Vec<Shards<InodeId, Inode>> = vec![Vec::new(); n_inodes];
    let mut chunk_parts: Vec<Shards<ChunkId, ChunkMeta>> = vec![Vec::new(); n_chunks];
    for done in run_all(&work, threads) {
        match done.map_err(bad)? {
            Done::Sessions(s) => state.sessions = s,
            Done::Inodes(part, m) => inode_parts[part] = m,
            Done::Chunks(part, m) => chunk_parts[part] = m,
        }
    }
    let inode_shards = inode_parts.into_iter().flatten().collect();
    let chunk_shards = chunk_parts.into_iter().flatten().collect();
    state.inodes = IdMap::from_shards(inode_shards).map_err(bad)?;
    state.chunks = IdMap::from_shards(chunk_shards).map_err(bad)?;
    let (security, rest) = postcard::take_from_bytes(small).map_err(bad)?;
    state.security = security;
    let rest = crate::sm::perms::decode_names(&mut state, rest).map_err(bad)?;
    let rest = super::decode_later_sections(&mut state, 9, rest).map_err(bad)?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the sections", rest.len())));
    }
    Ok(state)
}
