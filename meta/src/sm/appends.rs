//! Record append (GFS's record append, made exactly-once): files that many clients append
//! records to concurrently, readable while they grow, sealed when done.
//!
//! How a record lands (the client library drives it; see `client/src/append.rs`):
//! 1. the client appends the record's bytes to the file's *tail chunk* through its primary
//!    chunkserver, which picks the offset (the chunk's length), stores them durably and
//!    forwards them at that offset to the other replicas of the tail's pipeline;
//! 2. the client commits the record here (`CommitRecord`, a session request: its request id is
//!    the record id). Apply places it at the end of the file as an *extent* (file offset,
//!    chunk index, offset in the chunk, length). A retry of the same request id is answered
//!    with the first reply — the original offset — so a record is in the file exactly once
//!    however often its append or commit is retried; bytes of an append that was never
//!    committed (or committed under an earlier try) stay in the chunk unreferenced.
//!
//! So the file is the concatenation of its extents in commit order: no padding, no duplicates,
//! whole records only (a commit is one apply). Readers map file offsets through the extents.
//!
//! Invariants (checked by `validate`):
//! * an append file is a linked file with an entry in `appends`; `chunks` parallels the file's
//!   chunk list (each with its pipeline, the committed end, and whether it is fenced);
//! * extents are contiguous from 0 in file offsets and sum to the file's length; each lies
//!   within its chunk's committed end and the chunk size;
//! * a record is committed only if every replica of its chunk's pipeline stored it (the
//!   `on` list names exactly the pipeline), and never into a fenced chunk. The healer fences a
//!   chunk before it copies it, so a copy checked against the committed end holds every
//!   record that will ever be committed in that chunk;
//! * snapshots: a commit after a snapshot first records the length the snapshot saw
//!   (`views`, keyed by epoch like directory shadows); extents only grow, so a snapshot's view
//!   is a prefix.
use super::*;

/// Largest record (bytes).
pub const RECORD_MAX_BYTES: u64 = 1 << 20;
/// Most extents one append file keeps (consecutive records of one chunk merge into one).
pub const EXTENTS_MAX: usize = 1 << 20;

/// `len` bytes at `chunk_off` of the file's chunk `index`, at file offset `at`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    pub at: u64,
    pub index: u32,
    pub chunk_off: u64,
    pub len: u64,
}

/// One chunk of an append file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendChunk {
    /// The replicas appends go to (primary first), chosen when the chunk was started.
    pub pipeline: Vec<NodeId>,
    /// The end of the last committed byte in the chunk.
    pub end: u64,
    /// No more commits (the healer is copying it, or it failed, or the file is sealed).
    pub fenced: bool,
}

/// The append state of one append file (snapshot format 8).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendLog {
    pub extents: Vec<Extent>,
    pub chunks: Vec<AppendChunk>,
    pub sealed: bool,
    /// Lengths snapshots saw: snapshot E sees the smallest key ≥ E, else the live length.
    pub views: BTreeMap<u64, u64>,
    /// The snapshot epoch `views` covers.
    pub epoch: u64,
}

impl AppendLog {
    /// The length snapshot `epoch` sees, if it is not the live one.
    pub fn view_len(&self, epoch: Option<u64>) -> Option<u64> {
        let e = epoch?;
        self.views.range(e..).next().map(|(_, l)| *l)
    }

    /// The extents overlapping `[offset, offset + len)` of the first `length` bytes (a
    /// snapshot's view: the last one cut at `length`, as a record merged into it later is not
    /// in the view).
    pub fn extents_in(
        &self,
        length: u64,
        offset: u64,
        len: u64,
    ) -> impl Iterator<Item = Extent> + '_ {
        let end = offset.saturating_add(len).min(length);
        let first = self.extents.partition_point(|e| e.at + e.len <= offset);
        let last = self.extents.partition_point(|e| e.at < end).max(first);
        self.extents[first..last].iter().map(move |e| Extent {
            len: e.len.min(length - e.at),
            ..*e
        })
    }
}

/// Writes the append logs after the rest of the snapshot body (format 8).
pub fn encode_section(state: &MetaState, body: Vec<u8>) -> postcard::Result<Vec<u8>> {
    postcard::to_extend(&state.appends, body)
}

/// Reads the part [`encode_section`] wrote; the bytes after it.
pub fn decode_section<'b>(state: &mut MetaState, bytes: &'b [u8]) -> postcard::Result<&'b [u8]> {
    let (a, rest): (BTreeMap<InodeId, AppendLog>, _) = postcard::take_from_bytes(bytes)?;
    state.appends = a;
    Ok(rest)
}

fn stale(why: String) -> MetaError {
    MetaError::StaleChunk(why)
}

impl MetaState {
    /// The append log of the file at `p` (resolved as `who`), checked writable.
    fn append_file(&self, p: &str, who: &Actor) -> Res<(InodeId, &AppendLog)> {
        let id = self.resolve(&path::components(p)?, who)?;
        let log = self.appends.get(&id).ok_or_else(|| {
            if self.is_dir(id) {
                MetaError::IsADirectory(p.to_string())
            } else {
                MetaError::BadArgument(format!(
                    "{p} is not an append file (create it with `shale append`)"
                ))
            }
        })?;
        self.require(id, who, perms::WRITE, || p.to_string())?;
        if log.sealed {
            return Err(MetaError::Sealed(p.to_string()));
        }
        Ok((id, log))
    }

    /// Creates append file `p` (linked at once, empty), or finds it if it is one already.
    pub(super) fn create_append(
        &mut self,
        p: &str,
        layout: (Option<u8>, Option<u64>),
        mode: u16,
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        let (dir, name) = self.parent_dir(p, who)?;
        if let Some(id) = self.entries(dir).and_then(|e| e.get(name)).copied() {
            if self.appends.contains_key(&id) {
                self.require(id, who, perms::WRITE, || p.to_string())?;
                return Ok(Reply::Inode(id));
            }
            if self.is_dir(id) {
                return Err(MetaError::IsADirectory(p.to_string()));
            }
            return Err(MetaError::AlreadyExists(format!(
                "{p} (a regular file: records are appended only to files created for it)"
            )));
        }
        let chunk_size_log2 = match layout.1 {
            Some(b) => check_chunk_size(b)?,
            None => self.chunk_size_log2,
        };
        self.check_new_attrs(who, mode)?;
        self.check_new_name(p, name)?;
        let replication = check_replication(match layout.0 {
            Some(r) => r,
            None => self.inherited_replication(dir),
        })?;
        self.require(dir, who, perms::WRITE | perms::EXEC, || {
            format!("{p} (its directory)")
        })?;
        if self.pending_names.contains_key(&(dir, name.into())) {
            return Err(MetaError::Lease {
                file: InodeId(0),
                why: format!("{p} is being written by another client"),
            });
        }
        self.check_room(dir, Usage::new(1, 0), Usage::default(), &[])?;
        let id = self.new_file_inode(dir, who, mode, (replication, chunk_size_log2), now_ms);
        let epoch = self.snaps.epoch;
        self.appends.insert(
            id,
            AppendLog {
                epoch,
                ..AppendLog::default()
            },
        );
        if let Some(e) = self.entries_mut(dir) {
            e.insert(name.into(), id);
        }
        self.charge(dir, Usage::new(1, 0), false);
        self.touch(dir, now_ms);
        Ok(Reply::Inode(id))
    }

    /// The tail chunk appends should go to: the current one unless it is fenced or is `after`
    /// (the caller found it full, or failing: `fence`), else a new one on `pipeline`.
    pub(super) fn append_tail(
        &mut self,
        p: &str,
        after: Option<ChunkId>,
        fence: bool,
        pipeline: &[NodeId],
        who: &Actor,
    ) -> Res<Reply> {
        let (file, log) = self.append_file(p, who)?;
        let chunks = match self.inodes.get(&file).map(|i| &i.kind) {
            Some(InodeKind::File(f)) => f.chunks.clone(),
            _ => return Err(MetaError::UnknownFile(file)),
        };
        let tail = chunks.last().copied();
        let tail_fenced = log.chunks.last().is_none_or(|c| c.fenced);
        if let Some(t) = tail {
            if !tail_fenced && Some(t) != after {
                let pipeline = log.chunks.last().map(|c| c.pipeline.clone());
                return Ok(Reply::Chunk {
                    id: t,
                    version: self.chunks.get(&t).map_or(ChunkVersion(1), |m| m.version()),
                    pipeline: pipeline.unwrap_or_default(),
                });
            }
        }
        self.check_pipeline(pipeline)?;
        let index = chunks.len() as u32;
        let id = ChunkId(self.next_chunk);
        self.next_chunk += 1;
        let meta = ChunkMeta::new(file, index);
        self.chunks.insert(id, meta);
        self.file_mut(file)?.chunks.push(id);
        if let Some(log) = self.appends.get_mut(&file) {
            if let (true, Some(last)) = (fence && tail == after, log.chunks.last_mut()) {
                last.fenced = true;
            }
            log.chunks.push(AppendChunk {
                pipeline: pipeline.to_vec(),
                end: 0,
                fenced: false,
            });
        }
        Ok(Reply::Chunk {
            id,
            version: meta.version(),
            pipeline: pipeline.to_vec(),
        })
    }

    /// Checks a pipeline the leader chose: 1..=16 distinct registered chunkservers.
    pub(super) fn check_pipeline(&self, pipeline: &[NodeId]) -> Res<()> {
        let mut seen = pipeline.to_vec();
        seen.sort_unstable();
        seen.dedup();
        if pipeline.is_empty()
            || pipeline.len() > REPLICATION_MAX as usize
            || seen.len() != pipeline.len()
        {
            return Err(MetaError::BadArgument(format!(
                "pipeline {pipeline:?} must name 1..=16 distinct chunkservers"
            )));
        }
        if let Some(unknown) = pipeline.iter().find(|n| !self.servers.contains_key(n)) {
            return Err(MetaError::BadArgument(format!(
                "unknown chunkserver {unknown}"
            )));
        }
        Ok(())
    }

    /// Commits the record stored at `[chunk_off, chunk_off + len)` of `chunk` on the replicas
    /// `on` to the end of append file `p` (which must still be `file`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit_record(
        &mut self,
        p: &str,
        file: InodeId,
        chunk: ChunkId,
        (chunk_off, len): (u64, u64),
        on: &[NodeId],
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        let (id, log) = self.append_file(p, who)?;
        if id != file {
            return Err(stale(format!(
                "{p} is no longer file {file} (renamed or replaced)"
            )));
        }
        let (chunk_size, length, parent) = match self.inodes.get(&file) {
            Some(
                i @ Inode {
                    kind: InodeKind::File(f),
                    parent,
                    ..
                },
            ) => (i.chunk_size_bytes(), f.length, *parent),
            _ => return Err(MetaError::UnknownFile(file)),
        };
        let index = match self.chunks.get(&chunk) {
            Some(m) if m.file == file => m.index,
            _ => return Err(stale(format!("chunk {chunk} is not a chunk of {p}"))),
        };
        if len == 0 || len > RECORD_MAX_BYTES {
            return Err(MetaError::BadArgument(format!(
                "a record is 1..={RECORD_MAX_BYTES} bytes, not {len}"
            )));
        }
        if chunk_off.checked_add(len).is_none_or(|e| e > chunk_size) {
            return Err(MetaError::BadArgument(format!(
                "bytes {chunk_off}+{len} do not fit a {chunk_size}-byte chunk"
            )));
        }
        let c = log
            .chunks
            .get(index as usize)
            .ok_or(MetaError::UnknownFile(file))?;
        if c.fenced {
            return Err(stale(format!(
                "chunk {chunk} of {p} takes no more records; append to the new tail"
            )));
        }
        let (mut want, mut got) = (c.pipeline.clone(), on.to_vec());
        want.sort_unstable();
        got.sort_unstable();
        got.dedup();
        if want != got {
            return Err(stale(format!(
                "the record is stored on {got:?}, not on every replica of chunk {chunk} ({want:?})"
            )));
        }
        let merge = log
            .extents
            .last()
            .is_some_and(|e| e.index == index && e.chunk_off + e.len == chunk_off);
        if !merge && log.extents.len() >= EXTENTS_MAX {
            return Err(MetaError::Full(format!(
                "{p} holds {EXTENTS_MAX} separate extents; seal it and append to a new file"
            )));
        }
        self.check_room(parent, Usage::new(0, len), Usage::default(), &[])?;
        self.charge(parent, Usage::new(0, len), false);
        let epoch = self.snaps.epoch;
        let Some(log) = self.appends.get_mut(&file) else {
            return Err(MetaError::UnknownFile(file));
        };
        if epoch > log.epoch {
            log.views.insert(epoch, length);
            log.epoch = epoch;
        }
        match log.extents.last_mut() {
            Some(e) if merge => e.len += len,
            _ => log.extents.push(Extent {
                at: length,
                index,
                chunk_off,
                len,
            }),
        }
        if let Some(c) = log.chunks.get_mut(index as usize) {
            c.end = c.end.max(chunk_off + len);
        }
        self.file_mut(file)?.length = length + len;
        self.touch(file, now_ms);
        Ok(Reply::Record {
            offset: length,
            length: length + len,
        })
    }

    /// Stops commits into `chunk` (the healer's fence before it copies an append chunk).
    pub(super) fn fence_chunk(&mut self, chunk: ChunkId) -> Res<Reply> {
        let meta = self
            .chunks
            .get(&chunk)
            .copied()
            .ok_or_else(|| MetaError::BadArgument(format!("unknown chunk {chunk}")))?;
        if let Some(c) = self
            .appends
            .get_mut(&meta.file)
            .and_then(|l| l.chunks.get_mut(meta.index as usize))
        {
            c.fenced = true;
        }
        Ok(Reply::Done)
    }

    /// Seals append file `p`: no more records (idempotent).
    pub(super) fn seal_append(&mut self, p: &str, now_ms: u64, who: &Actor) -> Res<Reply> {
        let (id, _) = match self.append_file(p, who) {
            Err(MetaError::Sealed(_)) => return Ok(Reply::Done),
            r => r?,
        };
        if let Some(log) = self.appends.get_mut(&id) {
            log.sealed = true;
            for c in &mut log.chunks {
                c.fenced = true;
            }
        }
        self.touch(id, now_ms);
        Ok(Reply::Done)
    }

    /// An append chunk's committed end, if it is one, and whether it still takes commits.
    pub fn append_chunk_state(&self, chunk: ChunkId) -> Option<(u64, bool)> {
        let m = self.chunks.get(&chunk)?;
        let c = self.appends.get(&m.file)?.chunks.get(m.index as usize)?;
        Some((c.end, !c.fenced))
    }

    /// The append log of file `id` (None for other files).
    pub fn append_log(&self, id: InodeId) -> Option<&AppendLog> {
        self.appends.get(&id)
    }

    /// Checks the append logs (see the module's invariants).
    pub(super) fn check_appends(&self) -> Result<(), String> {
        for (id, log) in &self.appends {
            let Some((f, chunk_size, _)) = self.inodes.get(id).and_then(|i| i.file()) else {
                return Err(format!("append log of {id}, which is not a file"));
            };
            if self.pending.contains_key(id) {
                return Err(format!("append file {id} is under construction"));
            }
            if log.chunks.len() != f.chunks.len() {
                return Err(format!(
                    "append file {id}: chunk states do not match its chunks"
                ));
            }
            let mut at = 0u64;
            for e in &log.extents {
                let c = log.chunks.get(e.index as usize);
                if e.at != at
                    || e.len == 0
                    || c.is_none_or(|c| e.chunk_off + e.len > c.end)
                    || e.chunk_off + e.len > chunk_size
                {
                    return Err(format!("append file {id}: bad extent {e:?} at {at}"));
                }
                at += e.len;
            }
            if at != f.length {
                return Err(format!(
                    "append file {id}: extents hold {at} bytes, length is {}",
                    f.length
                ));
            }
            if log.epoch > self.snaps.epoch || log.views.values().any(|l| *l > f.length) {
                return Err(format!("append file {id}: views ahead of the file"));
            }
        }
        Ok(())
    }
}
