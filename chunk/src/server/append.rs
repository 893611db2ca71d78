//! `AppendChunk`: record append at a chunkserver (the chunk half of exactly-once record append;
//! the masters order and commit records, see `meta/src/sm/appends.rs`).
//!
//! The primary (the first replica of a tail's pipeline; the client sends no offset) serializes
//! appends per chunk: under the chunk's lock it takes the chunk's length as the offset, refuses
//! with OUT_OF_RANGE if the bytes would not fit the file's chunk size ("chunk full": the client
//! moves to a new tail), stores the bytes durably (`ChunkStore::append`) while it forwards them
//! at that offset down the pipeline, and answers once every replica holds them durable. A
//! forwarded append stores at exactly the given offset or fails (`BadOffset`): replicas that
//! diverged (one missed an append, or kept one the others lost) fail every later append
//! instead of storing records at different offsets, and the client starts a new tail. Only an
//! append at offset 0 creates the chunk (so a replica that lost it is never re-created short).
use super::service::ChunkServer;
use super::status::{blame, status_of};
use shale_proto::pb::{AppendChunkRequest, AppendChunkResponse};
use shale_proto::ChunkRef as DomainRef;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Largest append (one record, or several concatenated).
pub const APPEND_MAX_BYTES: usize = 1 << 20;
/// How long a downstream replica may take to store an append.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

impl ChunkServer {
    pub(super) async fn append_chunk_rpc(
        &self,
        req: Request<AppendChunkRequest>,
    ) -> Result<Response<AppendChunkResponse>, Status> {
        let principal = shale_security::caller_or_anonymous(&req)?
            .principal()
            .cloned();
        let mut r = req.into_inner();
        let chunk = DomainRef::try_from(r.chunk.as_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let me = self.node.load(Ordering::Relaxed);
        if me == 0 {
            return Err(Status::unavailable(
                "this chunkserver is not registered yet",
            ));
        }
        if r.node_id != me {
            return Err(Status::failed_precondition(format!(
                "this is chunkserver {me}, not {} as the request says: wrong address for that node",
                r.node_id
            )));
        }
        if r.data.is_empty() || r.data.len() > APPEND_MAX_BYTES {
            return Err(Status::invalid_argument(format!(
                "an append is 1..={APPEND_MAX_BYTES} bytes, not {}",
                r.data.len()
            )));
        }
        if r.chunk_size == 0 || r.chunk_size > self.chunk_size_max_bytes {
            return Err(Status::invalid_argument(format!(
                "chunk size {} must be 1..={}",
                r.chunk_size, self.chunk_size_max_bytes
            )));
        }
        if r.downstream
            .iter()
            .any(|d| d.node_id == 0 || d.address.is_empty())
        {
            return Err(Status::invalid_argument(
                "a downstream replica needs a node id and an address",
            ));
        }
        let downstream: Vec<(u64, &str)> = r
            .downstream
            .iter()
            .map(|d| (d.node_id, d.address.as_str()))
            .collect();
        self.may_write(
            &principal
                .as_ref()
                .map_or(shale_security::Caller::Trusted, shale_security::Caller::Is),
            r.token.as_ref(),
            (chunk.id.get(), chunk.version.get()),
            &downstream,
        )
        .await?;
        self.inflight.fetch_add(1, Ordering::Relaxed);
        let _inflight = scopeguard(&self.inflight);
        // The primary picks the offset, one append per chunk at a time.
        let lock = {
            let mut locks = self.append_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(chunk.id.get()).or_default().clone()
        };
        let serial = lock.lock().await;
        let offset = match r.offset {
            Some(o) => o,
            None => self.store.stat(chunk.id).map_or(0, |i| i.length_bytes),
        };
        let len = r.data.len() as u64;
        if offset.saturating_add(len) > r.chunk_size {
            return Err(Status::out_of_range(format!(
                "chunk full: {offset} + {len} bytes exceed the {}-byte chunk",
                r.chunk_size
            )));
        }
        let data = std::mem::take(&mut r.data);
        let local = async {
            self.store
                .append(chunk, offset, data.clone(), offset == 0)
                .await
                .map_err(|e| blame(status_of(&e), me))
        };
        let forward = async {
            let Some(next) = r.downstream.first() else {
                return Ok(Vec::new());
            };
            let mut client = self
                .peer(&next.address)
                .map_err(|e| blame(e, next.node_id))?;
            let req = AppendChunkRequest {
                chunk: Some(chunk.into()),
                data: data.clone(),
                offset: Some(offset),
                downstream: r.downstream[1..].to_vec(),
                node_id: next.node_id,
                token: r.token.clone(),
                chunk_size: r.chunk_size,
            };
            let want: Vec<u64> = r.downstream.iter().map(|d| d.node_id).collect();
            match tokio::time::timeout(FORWARD_TIMEOUT, client.append_chunk(req)).await {
                Err(_) => Err(blame(
                    Status::unavailable(format!(
                        "downstream replica {} did not store the append within {} s",
                        next.node_id,
                        FORWARD_TIMEOUT.as_secs()
                    )),
                    next.node_id,
                )),
                Ok(Err(s)) => Err(blame(s, next.node_id)),
                Ok(Ok(resp)) if resp.get_ref().durable_on == want => Ok(want),
                Ok(Ok(resp)) => Err(blame(
                    Status::internal(format!(
                        "downstream acknowledged {:?}, the pipeline was {want:?}",
                        resp.get_ref().durable_on
                    )),
                    next.node_id,
                )),
            }
        };
        let (l, f) = tokio::join!(local, forward);
        drop(serial);
        {
            let mut locks = self.append_locks.lock().unwrap_or_else(|p| p.into_inner());
            if Arc::strong_count(&lock) <= 2 {
                locks.remove(&chunk.id.get());
            }
        }
        // A downstream failure explains more than our own (it is further down).
        let rest = f?;
        l?;
        self.report_now.notify_one();
        let mut durable_on = vec![me];
        durable_on.extend(rest);
        Ok(Response::new(AppendChunkResponse { offset, durable_on }))
    }
}

/// Decrements an in-flight counter when dropped.
struct Dec<'a>(&'a std::sync::atomic::AtomicU32);

fn scopeguard(c: &std::sync::atomic::AtomicU32) -> Dec<'_> {
    Dec(c)
}

impl Drop for Dec<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
