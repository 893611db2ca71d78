//! Record append, exactly once: many clients append records to one file at once; each record
//! lands whole, once, at an offset the cluster picks, and a retry returns the original offset.
//!
//! One record: (1) the bytes go to the file's tail chunk through its primary, which picks the
//! offset and stores them durably on every replica of the tail's pipeline (`AppendChunk`);
//! (2) the record is committed at the masters (`CommitRecord`) under its [`RecordId`], which
//! places it at the end of the file. A failed append (a replica down, a chunk full) moves to a
//! new tail and appends again; a commit the masters refuse because of where the bytes are
//! (the chunk was fenced meanwhile) does the same; a commit whose answer was lost is retried
//! with the same id, and the masters answer with the first reply. Bytes appended but never
//! committed stay in the chunk, unreferenced: readers never see them.
use crate::error::{ClientError, Result};
use crate::Client;
use bytes::Bytes;
use shale_proto::metapb::*;
use shale_proto::pb::{AppendChunkRequest, ChunkToken, PipelineTarget};
use std::time::Duration;
use tonic::Code;

/// Largest record.
pub const RECORD_MAX_BYTES: usize = 1 << 20;
/// The first pause before a new tail is tried (doubling up to a second).
const BACKOFF_FIRST: Duration = Duration::from_millis(20);
/// How long one append to a chunk may take.
const APPEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Names a record: a retry with the same id is the same record (the masters keep the replies
/// of each client's latest 256 ids, for 15 minutes of inactivity). [`Client::record_id`] gives
/// fresh ones; an application that must survive its own restart can keep ids itself, with a
/// `client` of its own (random, not 0) and `seq` counting from 1.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordId {
    /// The id's namespace: one per writer (≥ 1).
    pub client: u64,
    /// The record's number in it (≥ 1).
    pub seq: u64,
}

/// Where a record landed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The record's offset in the file.
    pub offset: u64,
    /// The file's length just after it was committed.
    pub length: u64,
}

/// How to create an append file on the first append (the cluster's defaults where 0).
#[derive(Clone, Debug, Default)]
pub struct AppendOptions {
    /// Replicas of each chunk.
    pub replication: u32,
    /// Chunk size (a power of two, 1 MiB..=1 GiB).
    pub chunk_size: u64,
    /// Mode bits of a new file (0: 0644).
    pub mode: u32,
}

/// A connection to a chunkserver.
pub(crate) type Conn =
    shale_proto::pb::chunk_service_client::ChunkServiceClient<tonic::transport::Channel>;

/// A file's tail chunk, as the masters named it.
#[derive(Clone, Debug)]
pub(crate) struct Tail {
    file: u64,
    chunk_size: u64,
    chunk: u64,
    version: u64,
    pipeline: Vec<Replica>,
    token: Option<ChunkToken>,
}

/// Why an append to a chunk failed.
enum ChunkFail {
    /// The chunk has no room: move on to a new tail.
    Full,
    /// A replica failed (or the replicas diverged): fence this tail and start another,
    /// without the replica named (if one was).
    Failed(String, Option<u64>),
}

impl Client {
    /// A fresh record id (this client's session, the next number).
    pub fn record_id(&self) -> RecordId {
        let r = self.masters.request_id().unwrap_or_default();
        RecordId {
            client: r.client_id,
            seq: r.seq,
        }
    }

    /// Appends `record` to the append file at `path` (created on the first append) exactly
    /// once; returns where it landed.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let at = c.append_record("/logs/events", b"{\"event\":\"login\"}\n").await?;
    /// println!("record at byte {}", at.offset);
    /// # Ok(()) }
    /// ```
    pub async fn append_record(&self, path: &str, record: &[u8]) -> Result<Appended> {
        let id = self.record_id();
        self.append_record_as(path, id, record, &AppendOptions::default())
            .await
    }

    /// [`Client::append_record`] under a record id the caller keeps: calling again with the same
    /// id (after an error, or after a restart with the same id) returns the first offset and
    /// adds nothing.
    pub async fn append_record_as(
        &self,
        path: &str,
        id: RecordId,
        record: &[u8],
        opts: &AppendOptions,
    ) -> Result<Appended> {
        if record.is_empty() || record.len() > RECORD_MAX_BYTES {
            return Err(ClientError::InvalidArgument(format!(
                "a record is 1..={RECORD_MAX_BYTES} bytes, not {}",
                record.len()
            )));
        }
        if id.client == 0 || id.seq == 0 {
            return Err(ClientError::InvalidArgument(
                "a record id needs a client and a seq, both ≥ 1".into(),
            ));
        }
        let data = Bytes::copy_from_slice(record);
        let mut tail = match self.cached_tail(path) {
            Some(t) => t,
            None => self.tail(path, 0, false, &[], opts).await?,
        };
        // Failed replicas are left out of new tails (the masters notice a dead server only
        // after a few seconds); tries go on, with a growing pause, for `retry_for`.
        let (mut exclude, mut why) = (Vec::new(), Vec::new());
        let deadline = std::time::Instant::now() + self.config.retry_for;
        let mut pause = BACKOFF_FIRST;
        loop {
            let fence = match self.append_to(&tail, data.clone()).await {
                Ok((chunk_off, on)) => {
                    match self
                        .commit(path, &tail, id, (chunk_off, data.len() as u64), on)
                        .await
                    {
                        Ok(a) => return Ok(a),
                        Err(ClientError::Aborted(e)) => {
                            why.push(e);
                            true
                        }
                        Err(e) => {
                            self.forget_tail(path);
                            return Err(e);
                        }
                    }
                }
                Err(ChunkFail::Full) => false,
                Err(ChunkFail::Failed(e, node)) => {
                    tracing::warn!(path, chunk = tail.chunk, error = %e, "append failed; moving to a new tail");
                    why.push(e);
                    exclude.extend(node);
                    true
                }
            };
            if fence {
                if std::time::Instant::now() >= deadline {
                    self.forget_tail(path);
                    why.dedup();
                    return Err(ClientError::Unavailable(format!(
                        "{path}: record not appended within {:?}: {}",
                        self.config.retry_for,
                        why.join("; ")
                    )));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            tail = match self.tail(path, tail.chunk, fence, &exclude, opts).await {
                Ok(t) => t,
                // Too many left out for the file's replication: try them all again.
                Err(ClientError::ResourceExhausted(_)) if !exclude.is_empty() => {
                    exclude.clear();
                    self.tail(path, tail.chunk, fence, &exclude, opts).await?
                }
                Err(e) => return Err(e),
            };
        }
    }

    /// Seals the append file at `path`: it takes no more records (sealing twice is fine).
    pub async fn seal_append(&self, path: &str) -> Result<()> {
        let p = path.to_string();
        let rid = self.masters.request_id();
        self.masters
            .call(|mut m| {
                let path = p.clone();
                async move {
                    m.seal_append(SealAppendRequest {
                        path,
                        request_id: rid,
                    })
                    .await
                }
            })
            .await?;
        self.forget_tail(path);
        Ok(())
    }

    fn cached_tail(&self, path: &str) -> Option<Tail> {
        self.tails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
    }

    fn forget_tail(&self, path: &str) {
        self.tails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(path);
    }

    /// The tail to append to (a new one if `after` is still the tail), remembered for the next
    /// record.
    async fn tail(
        &self,
        path: &str,
        after: u64,
        fence: bool,
        exclude: &[u64],
        o: &AppendOptions,
    ) -> Result<Tail> {
        let p = path.to_string();
        let rid = self.masters.request_id();
        let host = self.config.host.clone();
        let r = self
            .masters
            .call(|mut m| {
                let (path, client_host, exclude) = (p.clone(), host.clone(), exclude.to_vec());
                async move {
                    m.append_tail(AppendTailRequest {
                        exclude,
                        path,
                        create: true,
                        replication: o.replication,
                        chunk_size: o.chunk_size,
                        mode: o.mode,
                        after_chunk: after,
                        fence,
                        client_host,
                        request_id: rid,
                    })
                    .await
                }
            })
            .await?;
        if r.pipeline.is_empty() {
            return Err(ClientError::Other(format!(
                "{path}: the tail has no replicas"
            )));
        }
        let t = Tail {
            file: r.file,
            chunk_size: r.chunk_size,
            chunk: r.chunk_id,
            version: r.version,
            pipeline: r.pipeline,
            token: r.token,
        };
        let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        if tails.len() >= 1024 {
            tails.clear();
        }
        tails.insert(path.to_string(), t.clone());
        Ok(t)
    }

    /// A kept connection to the primary at `addr` (one append is a small call: a connection,
    /// TLS handshake included, per record would cost more than the record).
    fn append_conn(&self, addr: &str) -> std::result::Result<Conn, String> {
        let mut conns = self.append_conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = conns.get(addr) {
            return Ok(c.clone());
        }
        let c = crate::chunkserver::connect(&self.config.transport, addr, APPEND_TIMEOUT)?;
        if conns.len() >= 256 {
            conns.clear();
        }
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Appends `data` to the tail through its primary: (offset in the chunk, replicas).
    async fn append_to(
        &self,
        t: &Tail,
        data: Bytes,
    ) -> std::result::Result<(u64, Vec<u64>), ChunkFail> {
        let primary = &t.pipeline[0];
        let mut c = self
            .append_conn(&primary.address)
            .map_err(|e| ChunkFail::Failed(e, Some(primary.node_id)))?;
        let req = AppendChunkRequest {
            chunk: Some(shale_proto::pb::ChunkRef {
                chunk_id: t.chunk,
                version: t.version,
            }),
            data,
            offset: None,
            downstream: t.pipeline[1..]
                .iter()
                .map(|r| PipelineTarget {
                    node_id: r.node_id,
                    address: r.address.clone(),
                    data_address: String::new(),
                })
                .collect(),
            node_id: primary.node_id,
            token: t.token.clone(),
            chunk_size: t.chunk_size,
        };
        match c.append_chunk(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let want: Vec<u64> = t.pipeline.iter().map(|p| p.node_id).collect();
                if r.durable_on != want {
                    return Err(ChunkFail::Failed(
                        format!("stored on {:?}, the pipeline is {want:?}", r.durable_on),
                        None,
                    ));
                }
                Ok((r.offset, r.durable_on))
            }
            Err(s) if s.code() == Code::OutOfRange => Err(ChunkFail::Full),
            Err(s) => {
                // The replica the pipeline blames, else the primary itself (not reached).
                let blamed = s
                    .metadata()
                    .get("shale-failed-node")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .or_else(|| {
                        matches!(s.code(), Code::Unavailable | Code::Unknown)
                            .then_some(primary.node_id)
                    });
                Err(ChunkFail::Failed(
                    format!(
                        "chunkserver {} at {}: {:?} {}",
                        primary.node_id,
                        primary.address,
                        s.code(),
                        s.message()
                    ),
                    blamed,
                ))
            }
        }
    }

    /// Commits the record stored at `(chunk_off, len)` of the tail under `id`.
    async fn commit(
        &self,
        path: &str,
        t: &Tail,
        id: RecordId,
        (chunk_off, len): (u64, u64),
        on: Vec<u64>,
    ) -> Result<Appended> {
        let p = path.to_string();
        let rid = Some(RequestId {
            client_id: id.client,
            seq: id.seq,
        });
        let r = self
            .masters
            .call(|mut m| {
                let (path, durable_on) = (p.clone(), on.clone());
                async move {
                    m.commit_record(CommitRecordRequest {
                        path,
                        file: t.file,
                        chunk_id: t.chunk,
                        chunk_offset: chunk_off,
                        length: len,
                        durable_on,
                        request_id: rid,
                    })
                    .await
                }
            })
            .await?;
        Ok(Appended {
            offset: r.offset,
            length: r.length,
        })
    }
}
