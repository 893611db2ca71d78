//! Reading whole files and byte ranges ([`FileReader`](crate::FileReader) streams with seeks).
//! Chunk locations come from the masters, then each chunk from the first replica that
//! serves it whole and verified (the chunkserver checks every crc before sending, and the client
//! checks each frame's crc32c on arrival); on an error, a checksum mismatch (`DATA_LOSS` or a
//! damaged frame) or a timeout the next replica is tried. Chunks are fetched
//! in parallel (bounded) and written out in order.
use crate::error::{ClientError, Result};
use crate::Client;
use bytes::{Bytes, BytesMut};
use shale_proto::metapb::*;
use shale_proto::pb::{ChunkRef, ReadChunkRequest};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Replicas within this many reads and writes in flight of the least loaded one count as
/// equally loaded.
const LOAD_SLACK: u32 = 2;

/// The order to try `c`'s replicas in: the masters' (alive first, nearest, least loaded) —
/// except that unless the first is on this client's `host`, the alive replicas about as loaded
/// as the least loaded one go first, those with the fewest of this process's reads in flight
/// (`busy`, by node id) first and, among equally busy ones, taking turns by chunk index; so
/// that parallel fetches — of consecutive chunks, or by several clients of one process —
/// spread over the servers instead of all going to one.
pub(crate) fn read_order<'a>(
    c: &'a ChunkLocation,
    host: &str,
    busy: impl Fn(u64) -> u32,
) -> Vec<&'a Replica> {
    let all: Vec<&Replica> = c.replicas.iter().collect();
    if all.is_empty() || (!host.is_empty() && all[0].host == host && all[0].alive) {
        return all;
    }
    let Some(min) = all.iter().filter(|r| r.alive).map(|r| r.load).min() else {
        return all;
    };
    let (mut turn, rest): (Vec<&Replica>, Vec<&Replica>) = all
        .into_iter()
        .partition(|r| r.alive && r.load <= min.saturating_add(LOAD_SLACK));
    let n = turn.len();
    turn.rotate_left(c.index as usize % n);
    turn.sort_by_key(|r| busy(r.node_id));
    turn.extend(rest);
    turn
}

/// This process's reads in flight, by chunkserver node id (what `read_order` spreads by).
fn in_flight() -> &'static std::sync::Mutex<std::collections::HashMap<u64, u32>> {
    static IN_FLIGHT: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<u64, u32>>> =
        std::sync::OnceLock::new();
    IN_FLIGHT.get_or_init(Default::default)
}

/// How many of this process's reads are in flight to `node`.
fn busy(node: u64) -> u32 {
    let map = in_flight().lock().unwrap_or_else(|p| p.into_inner());
    map.get(&node).copied().unwrap_or(0)
}

/// One read in flight to a node, counted in [`in_flight`] while it lives.
struct Reading(u64);

impl Reading {
    fn start(node: u64) -> Reading {
        let mut map = in_flight().lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(node).or_insert(0) += 1;
        Reading(node)
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        let mut map = in_flight().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.0);
            }
        }
    }
}

/// MiB of chunk bytes one process holds for reads at once, over all its clients: as many as
/// its frame pool keeps (`dataport::FRAMES_KEPT` buffers of 1 MiB). Reads then run on reused
/// memory — four clients in one process reading four chunks each took fresh (zeroed,
/// faulted-in) pages for three quarters of their frames — and a process serving many readers
/// (a mount, the S3 gateway) holds at most this much, not a chunk per reader. A range fetch
/// ([`Client::fetch`]) holds its share until its bytes are received and checked; `get` holds
/// each chunk's share until the chunk is written out.
const READ_BUDGET_MIB: u32 = crate::dataport::FRAMES_KEPT as u32;

/// The process's budget of [`READ_BUDGET_MIB`]: a fair semaphore. Nobody waits for a share
/// while holding one (a `get` with chunks in hand only *tries* for the next; it waits only
/// with nothing in hand), so every holder finishes and nobody waits forever.
fn read_budget() -> &'static std::sync::Arc<tokio::sync::Semaphore> {
    static BUDGET: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> =
        std::sync::OnceLock::new();
    BUDGET
        .get_or_init(|| std::sync::Arc::new(tokio::sync::Semaphore::new(READ_BUDGET_MIB as usize)))
}

/// The budget's share for `len` bytes of chunk `c` (whole MiB; never more than the budget).
fn share_of(c: &ChunkLocation, len: u64) -> u32 {
    len.min(c.length)
        .div_ceil(1 << 20)
        .clamp(1, READ_BUDGET_MIB as u64) as u32
}

/// Waits for a share of the read budget.
async fn take_share(mib: u32) -> Result<tokio::sync::OwnedSemaphorePermit> {
    read_budget()
        .clone()
        .acquire_many_owned(mib)
        .await
        .map_err(|e| ClientError::Other(format!("read budget: {e}")))
}

/// The frames of one chunk range, as received (no copy into one buffer).
pub(crate) type Frames = Vec<Bytes>;

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a run of a file's bytes is: file bytes `[start, start + len)` are bytes
/// `[chunk_off, chunk_off + len)` of chunk `loc`. A regular file has one piece per chunk; an
/// append file one per extent (records committed in a row into one chunk share one).
#[derive(Clone, Debug)]
pub(crate) struct Piece {
    pub start: u64,
    pub len: u64,
    pub chunk_off: u64,
    pub loc: ChunkLocation,
}

impl Piece {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// The pieces of a locations reply in file order, cut at `length`.
pub(crate) fn pieces(locs: &LocationsReply, length: u64) -> Vec<Piece> {
    locs.chunks
        .iter()
        .filter_map(|c| {
            let (start, chunk_off, len) = if locs.append {
                (c.file_offset, c.chunk_offset, c.length)
            } else {
                let s = u64::from(c.index) * locs.chunk_size;
                (s, 0, locs.chunk_size.min(length.saturating_sub(s)))
            };
            let len = len.min(length.saturating_sub(start));
            (len > 0).then(|| Piece {
                start,
                len,
                chunk_off,
                loc: c.clone(),
            })
        })
        .collect()
}

/// Whether a frame's bytes match the crc32c the server computed for them (else the crc of what
/// arrived).
fn intact(frame: &shale_proto::pb::ReadChunkResponse) -> std::result::Result<(), u32> {
    let crc = crc32c::crc32c(&frame.data);
    if crc == frame.crc32c {
        Ok(())
    } else {
        Err(crc)
    }
}

/// The request for bytes `[offset, offset + len)` of `c` (gRPC `ReadChunk` and the data port
/// take the same one).
pub(crate) fn read_request(c: &ChunkLocation, offset: u64, len: u64) -> ReadChunkRequest {
    ReadChunkRequest {
        chunk: Some(ChunkRef {
            chunk_id: c.chunk_id,
            version: c.version,
        }),
        offset,
        length: len,
        to_end: false,
        token: c.token.clone(),
    }
}

/// Bytes `[offset, offset + len)` of `c` from the chunkserver at `addr` over gRPC.
pub(crate) async fn read_replica_grpc(
    transport: &shale_security::Transport,
    addr: &str,
    c: &ChunkLocation,
    offset: u64,
    len: u64,
) -> std::result::Result<Frames, String> {
    let mut client = crate::chunkserver::connect(transport, addr, Duration::from_secs(60))?;
    let mut stream = client
        .read_chunk(read_request(c, offset, len))
        .await
        .map_err(|s| format!("{addr}: {:?} {}", s.code(), s.message()))?
        .into_inner();
    let mut frames = Vec::new();
    let mut got = 0u64;
    while let Some(frame) = stream
        .message()
        .await
        .map_err(|s| format!("{addr}: {:?} {}", s.code(), s.message()))?
    {
        if let Err(crc) = intact(&frame) {
            return Err(format!(
                "{addr}: frame at byte {} of chunk {} arrived damaged (crc32c {crc:08x}, the server sent {:08x})",
                offset + got,
                c.chunk_id,
                frame.crc32c
            ));
        }
        got += frame.data.len() as u64;
        frames.push(frame.data);
    }
    if got != len {
        return Err(format!("{addr}: got {got} of {len} bytes"));
    }
    Ok(frames)
}

impl Client {
    /// Bytes `[offset, offset + len)` of `c` from replica `r`: over its data port when it has
    /// one (and [`ClientConfig::data_port`](crate::ClientConfig) allows), else over gRPC.
    pub(crate) async fn read_replica(
        &self,
        r: &Replica,
        c: &ChunkLocation,
        offset: u64,
        len: u64,
    ) -> std::result::Result<Frames, String> {
        let t = &self.config.transport;
        if self.config.data_port && !r.data_address.is_empty() {
            use crate::dataport::PortError;
            match crate::dataport::read(
                t,
                (&self.data, &self.frames),
                &r.data_address,
                c,
                offset,
                len,
            )
            .await
            {
                Ok(frames) => return Ok(frames),
                Err(PortError::Failed(e)) => return Err(e),
                // Not reachable (e.g. a firewall lets only the gRPC port through): the same
                // read over gRPC.
                Err(PortError::Unreachable(e)) => {
                    tracing::debug!(error = %e, "data port unreachable; reading over gRPC")
                }
            }
        }
        read_replica_grpc(t, &r.address, c, offset, len).await
    }

    /// Chunk locations; if some chunk has no known replica yet (a new leader before the
    /// chunkservers' first reports), asks again for a short while.
    pub(crate) async fn locations(
        &self,
        path: &str,
        offset: u64,
        length: u64,
    ) -> Result<LocationsReply> {
        let mut wait = std::time::Duration::from_millis(50);
        for _ in 0..6 {
            let l = self.locations_once(path, offset, length).await?;
            if l.chunks.iter().all(|c| !c.replicas.is_empty()) {
                return Ok(l);
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        self.locations_once(path, offset, length).await
    }

    /// The file's length and the pieces covering `[offset, offset + len)` of it (0: to the end;
    /// clipped to the length). An append file's extents come in pages: asked for until the
    /// range is covered, each cut to the length the first answer gave.
    pub(crate) async fn pieces_of(
        &self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<(u64, Vec<Piece>)> {
        let locs = self.locations(path, offset, len).await?;
        let length = locs.length;
        let end = if len == 0 {
            length
        } else {
            offset.saturating_add(len).min(length)
        };
        let mut out = pieces(&locs, length);
        if !locs.append {
            return Ok((length, out));
        }
        let mut covered = out.last().map_or(offset, Piece::end);
        while covered < end {
            let more = self.locations(path, covered, end - covered).await?;
            let before = covered;
            for mut p in pieces(&more, length) {
                // An extent that grew since the last page (records merged into it).
                if p.start < covered {
                    let d = covered - p.start;
                    if d >= p.len {
                        continue;
                    }
                    (p.start, p.chunk_off, p.len) = (covered, p.chunk_off + d, p.len - d);
                }
                if p.start != covered {
                    break;
                }
                covered = p.end();
                out.push(p);
            }
            if covered == before {
                return Err(ClientError::Other(format!(
                    "{path}: the masters listed no extent at byte {covered} of {length}"
                )));
            }
        }
        Ok((length, out))
    }

    /// Where each chunk of the file at `path` is (for fsck and tools).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// for chunk in c.chunk_locations("/data/in/sample.bin").await?.chunks {
    ///     let live = chunk.replicas.iter().filter(|r| r.alive).count();
    ///     println!("chunk {}: {live} live replicas", chunk.index);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn chunk_locations(&self, path: &str) -> Result<LocationsReply> {
        self.locations_once(path, 0, 0).await
    }

    async fn locations_once(&self, path: &str, offset: u64, length: u64) -> Result<LocationsReply> {
        let p = path.to_string();
        self.masters
            .call(|mut m| {
                let (path, host) = (p.clone(), self.config.host.clone());
                async move {
                    m.get_chunk_locations(LocationsRequest {
                        path,
                        offset,
                        length,
                        follower_read: false,
                        client_host: host,
                    })
                    .await
                }
            })
            .await
    }

    /// Bytes `[offset, offset + len)` of chunk `c`, checked, from the first replica that
    /// serves them; within the process's read budget while they are received.
    pub(crate) async fn fetch(
        &self,
        path: &str,
        c: &ChunkLocation,
        offset: u64,
        len: u64,
    ) -> Result<Frames> {
        let _share = take_share(share_of(c, len)).await?;
        self.fetch_in_budget(path, c, offset, len).await
    }

    /// [`Client::fetch`] for a caller that holds the budget's share already.
    async fn fetch_in_budget(
        &self,
        path: &str,
        c: &ChunkLocation,
        offset: u64,
        len: u64,
    ) -> Result<Frames> {
        let mut why = Vec::new();
        if c.replicas.is_empty() {
            why.push("no live replica is known".to_string());
        }
        // Bytes are checked against the writer's digest: a whole chunk at once, part of one
        // block by block (see `partial`). A replica whose bytes were replaced (even with
        // matching checksums) is skipped and reported.
        let digest = c.digest.len() == 32;
        let whole = offset == 0 && len >= c.length;
        for r in read_order(c, &self.config.host, busy) {
            let _reading = Reading::start(r.node_id);
            let got = if digest && !whole {
                match self.read_part_checked(r, c, offset, len).await {
                    Ok(b) => Ok(b),
                    Err(crate::partial::PartError::Failed(e)) => Err(e),
                    Err(crate::partial::PartError::Forged(e)) => {
                        tracing::error!(path, chunk = c.chunk_id, replica = r.node_id, error = %e, "replica does not match the writer's digest; reporting it and trying the next");
                        why.push(e);
                        self.report_bad(c, r.node_id);
                        continue;
                    }
                }
            } else {
                self.read_replica(r, c, offset, len).await
            };
            match got {
                Ok(b) if digest && whole && !crate::integrity::matches(c, &b) => {
                    tracing::error!(path, chunk = c.chunk_id, replica = r.node_id, "replica's bytes do not match the writer's digest; reporting it and trying the next");
                    why.push(format!(
                        "chunkserver {} at {}: bytes do not match the writer's digest",
                        r.node_id, r.address
                    ));
                    self.report_bad(c, r.node_id);
                }
                Ok(b) => return Ok(b),
                Err(e) => {
                    tracing::warn!(path, chunk = c.chunk_id, replica = r.node_id, error = %e, "replica failed; trying the next");
                    why.push(e);
                }
            }
        }
        Err(ClientError::ChunkRead {
            path: path.to_string(),
            index: c.index,
            why: why.join("; "),
        })
    }

    /// Writes the whole file at `path` to `dst`; returns its length. `progress` gets the bytes
    /// written so far after each chunk.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let mut out = tokio::fs::File::create("/tmp/sample.back").await?;
    /// let n = c.get("/data/in/sample.bin", &mut out, &|done| eprint!("\r{done} bytes")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get<W: AsyncWrite + Unpin>(
        &self,
        path: &str,
        dst: &mut W,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64> {
        let (length, pieces) = self.pieces_of(path, 0, 0).await?;
        // Each chunk is fetched (received, checked against its crc32c and the writer's digest)
        // on a task of its own, so several chunks are checked on several cores at once; at
        // most `read_parallelism` at a time, started in order, each with its share of the
        // process's read budget, held until the chunk is written out; aborted if this `get`
        // is dropped. With chunks in hand it only tries for the next share (and writes what
        // it has if there is none), so it never waits on the budget while holding some.
        let window = self.config.read_parallelism.max(1);
        let mut pieces = pieces.into_iter().peekable();
        let mut ahead = std::collections::VecDeque::new();
        let mut done = 0u64;
        loop {
            while ahead.len() < window {
                let Some(p) = pieces.peek() else { break };
                let mib = share_of(&p.loc, p.len);
                let share = if ahead.is_empty() {
                    take_share(mib).await?
                } else {
                    match read_budget().clone().try_acquire_many_owned(mib) {
                        Ok(s) => s,
                        Err(_) => break,
                    }
                };
                let Some(p) = pieces.next() else { break };
                let (c, path) = (self.clone(), path.to_string());
                let task = tokio::spawn(async move {
                    c.fetch_in_budget(&path, &p.loc, p.chunk_off, p.len).await
                });
                ahead.push_back((AbortOnDrop(task), share));
            }
            let Some((mut task, share)) = ahead.pop_front() else {
                break;
            };
            let frames = match (&mut task.0).await {
                Ok(r) => r?,
                Err(e) => return Err(ClientError::Other(format!("chunk fetch task: {e}"))),
            };
            for f in frames {
                dst.write_all(&f).await?;
                done += f.len() as u64;
            }
            drop(share);
            progress(done);
        }
        dst.flush().await?;
        if done != length {
            return Err(ClientError::Other(format!(
                "{path}: read {done} of {length} bytes"
            )));
        }
        Ok(done)
    }

    /// Bytes `[offset, offset + len)` of the file at `path` (clipped to its end).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let header = c.read_range("/data/in/sample.bin", 0, 512).await?;
    /// assert!(header.len() <= 512);
    /// # Ok(()) }
    /// ```
    pub async fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Bytes> {
        let (length, pieces) = self.pieces_of(path, offset, len.max(1)).await?;
        let end = offset.saturating_add(len).min(length);
        let mut out = BytesMut::new();
        for p in &pieces {
            let (a, b) = (offset.max(p.start), end.min(p.end()));
            if a >= b {
                continue;
            }
            for f in self
                .fetch(path, &p.loc, p.chunk_off + (a - p.start), b - a)
                .await?
            {
                out.extend_from_slice(&f);
            }
        }
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_frames_are_caught() {
        let data = Bytes::from_static(b"some chunk bytes");
        let mut f = shale_proto::pb::ReadChunkResponse {
            crc32c: crc32c::crc32c(&data),
            data,
        };
        assert_eq!(intact(&f), Ok(()));
        f.data = Bytes::from_static(b"some chunk bytez");
        assert!(intact(&f).is_err());
    }

    #[test]
    fn parallel_reads_spread_over_equally_loaded_replicas() {
        let rep = |n: u64, host: &str, alive: bool, load: u32| Replica {
            node_id: n,
            address: format!("10.0.0.{n}:1"),
            alive,
            host: host.into(),
            load,
            data_address: String::new(),
        };
        let chunk = |index: u32, replicas: Vec<Replica>| ChunkLocation {
            index,
            replicas,
            ..ChunkLocation::default()
        };
        let order = |c: &ChunkLocation, host: &str| -> Vec<u64> {
            read_order(c, host, |_| 0)
                .iter()
                .map(|r| r.node_id)
                .collect()
        };
        let three = vec![
            rep(1, "a", true, 0),
            rep(2, "b", true, 1),
            rep(3, "c", true, 9),
        ];
        // Consecutive chunks start at different replicas among the equally loaded ones; the
        // busy one stays last.
        assert_eq!(order(&chunk(0, three.clone()), "x"), vec![1, 2, 3]);
        assert_eq!(order(&chunk(1, three.clone()), "x"), vec![2, 1, 3]);
        assert_eq!(order(&chunk(2, three.clone()), "x"), vec![1, 2, 3]);
        // A replica on this host stays first.
        assert_eq!(order(&chunk(1, three.clone()), "a"), vec![1, 2, 3]);
        // Dead replicas never take a turn.
        let dead_first = vec![
            rep(1, "a", false, 0),
            rep(2, "b", true, 0),
            rep(3, "c", true, 0),
        ];
        assert_eq!(order(&chunk(0, dead_first.clone()), "x"), vec![2, 3, 1]);
        assert_eq!(order(&chunk(1, dead_first), "x"), vec![3, 2, 1]);
        assert!(order(&chunk(5, vec![]), "x").is_empty());
        // Replicas this process is reading from already go after idle ones, whatever the
        // turn; equally busy ones keep the turn.
        let busy = |n: u64| if n == 1 { 2 } else { 0 };
        let by_busy = |c: &ChunkLocation| -> Vec<u64> {
            read_order(c, "x", busy).iter().map(|r| r.node_id).collect()
        };
        assert_eq!(by_busy(&chunk(0, three.clone())), vec![2, 1, 3]);
        assert_eq!(by_busy(&chunk(1, three.clone())), vec![2, 1, 3]);
        let all_idle = vec![
            rep(1, "a", true, 0),
            rep(2, "b", true, 0),
            rep(3, "c", true, 0),
        ];
        assert_eq!(by_busy(&chunk(0, all_idle.clone())), vec![2, 3, 1]);
        assert_eq!(by_busy(&chunk(1, all_idle.clone())), vec![2, 3, 1]);
        assert_eq!(by_busy(&chunk(2, all_idle)), vec![3, 2, 1]);
    }
}
