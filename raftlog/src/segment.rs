//! Segment files: naming, creation (temp → header → fsync → rename → dir fsync), listing, and the
//! recovery replay at open.
use crate::error::{LogError, Result};
use crate::index::{Loc, State};
use crate::record::{self, Kind, SEGMENT_HEADER_BYTES};
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const SEGMENT_EXT: &str = ".seg";
pub const TMP_EXT: &str = ".tmp";

pub fn name(seq: u64) -> String {
    format!("{seq:020}{SEGMENT_EXT}")
}

pub fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(name(seq))
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("fsync dir", dir.display(), e))
}

/// Creates segment `seq` durably and returns it open for appending after its header.
pub fn create(dir: &Path, seq: u64) -> Result<File> {
    let final_path = path(dir, seq);
    let tmp = dir.join(format!("{}{TMP_EXT}", name(seq)));
    let io = |op, e| LogError::io(op, tmp.display(), e);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    f.write_all(&record::encode_segment_header(seq))
        .map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("fsync", e))?;
    fs::rename(&tmp, &final_path).map_err(|e| io("rename", e))?;
    fsync_dir(dir)?;
    Ok(f)
}

/// What the replay at open found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    pub segments: usize,
    pub entries: usize,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// Bytes cut off the end of the last segment (a torn, never-acknowledged batch).
    pub torn_tail_bytes: u64,
    pub temp_removed: Vec<String>,
    pub unknown_files: Vec<String>,
}

impl std::fmt::Display for OpenReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} segments, {} entries ({:?}..={:?}), torn tail {} bytes, {} temp files removed",
            self.segments,
            self.entries,
            self.first_index,
            self.last_index,
            self.torn_tail_bytes,
            self.temp_removed.len()
        )
    }
}

/// Lists segment sequence numbers in order; removes temp files; notes unknown files.
pub fn list(dir: &Path, report: &mut OpenReport) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| LogError::io("list", dir.display(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list", dir.display(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(TMP_EXT) {
            fs::remove_file(entry.path()).map_err(|e| LogError::io("remove", &name, e))?;
            report.temp_removed.push(name);
        } else if let Some(seq) = name
            .strip_suffix(SEGMENT_EXT)
            .filter(|s| s.len() == 20)
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        } else {
            report.unknown_files.push(name);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Applies one replayed record to the state.
fn apply(st: &mut State, seg: u64, offset: u64, r: &record::Record<'_>) {
    match r.kind {
        Kind::Batch => {}
        Kind::Append => {
            if let Some(from) = st.check_next(r.index) {
                // Cannot happen from this log's own writes (an overwrite writes a Truncate
                // record first); accept it the same way the live log would.
                tracing::warn!(
                    segment = seg,
                    offset,
                    index = r.index,
                    "replay: implicit overwrite"
                );
                st.truncate(from);
            }
            let loc = Loc {
                segment: seg,
                offset,
                len: r.payload.len() as u32,
            };
            st.insert(r.index, None, Some(loc));
        }
        Kind::Vote => st.vote = Some(Bytes::copy_from_slice(r.payload)),
        Kind::Committed => st.committed = Some(Bytes::copy_from_slice(r.payload)),
        Kind::Truncate => st.truncate(r.index),
        Kind::Purge => st.purge(r.index, Bytes::copy_from_slice(r.payload)),
    }
}

/// Replays every segment into `st`. Returns the next batch sequence number and the active
/// segment's length. A damaged record in the last segment with no later batch after it is a
/// torn tail and is cut off; any other damage is [`LogError::Corrupt`].
pub fn replay(
    dir: &Path,
    seqs: &[u64],
    st: &mut State,
    report: &mut OpenReport,
) -> Result<(u64, u64)> {
    let mut batch_seq = 0u64;
    let mut active_len = 0u64;
    for (i, &seq) in seqs.iter().enumerate() {
        let last = i + 1 == seqs.len();
        let p = path(dir, seq);
        let buf = fs::read(&p).map_err(|e| LogError::io("read", p.display(), e))?;
        let hseq = record::decode_segment_header(&buf).map_err(|why| LogError::Corrupt {
            segment: seq,
            offset: 0,
            why,
        })?;
        if hseq != seq {
            return Err(LogError::Corrupt {
                segment: seq,
                offset: 0,
                why: format!("header names segment {hseq}"),
            });
        }
        st.active_segment = seq;
        st.segments.entry(seq).or_default();
        let mut pos = SEGMENT_HEADER_BYTES;
        while pos < buf.len() {
            match record::decode(&buf[pos..]) {
                Ok((r, n)) => {
                    if record::batch_bytes(&r).is_some() {
                        batch_seq = batch_seq.max(r.index);
                    }
                    apply(st, seq, pos as u64, &r);
                    pos += n;
                }
                Err(e) => {
                    let later = record::find_later_batch(&buf[pos..], batch_seq);
                    if !last || later.is_some() {
                        return Err(LogError::Corrupt {
                            segment: seq,
                            offset: pos as u64,
                            why: format!("{e}, and synced records follow"),
                        });
                    }
                    let cut = (buf.len() - pos) as u64;
                    tracing::warn!(segment = seq, offset = pos, bytes = cut, error = %e,
                        "raft log: cutting off a torn tail (a batch that was never synced)");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&p)
                        .map_err(|e| LogError::io("open", p.display(), e))?;
                    f.set_len(pos as u64)
                        .and_then(|()| f.sync_all())
                        .map_err(|e| LogError::io("truncate torn tail", p.display(), e))?;
                    report.torn_tail_bytes = cut;
                    break;
                }
            }
        }
        if last {
            active_len = pos as u64;
        }
    }
    report.segments = seqs.len();
    Ok((batch_seq + 1, active_len))
}
