//! `AppendChunk`: record append at a chunkserver (the chunk half of exactly-once record append;
//! the masters order and commit records, see `meta/src/sm/appends.rs`).
//!
//! The primary (the first replica of a tail's pipeline; the client sends no offset) serializes
//! appends per chunk, writing those that queued up meanwhile as one (group commit; each gets
//! its own offset): it takes the chunk's length as the offset, refuses
//! with OUT_OF_RANGE if the bytes would not fit the file's chunk size ("chunk full": the client
//! moves to a new tail), stores the bytes durably (`ChunkStore::append`) while it forwards them
//! at that offset down the pipeline, and answers once every replica holds them durable. A
//! forwarded append stores at exactly the given offset or fails (`BadOffset`): replicas that
//! diverged (one missed an append, or kept one the others lost) fail every later append
//! instead of storing records at different offsets, and the client starts a new tail. Only an
//! append at offset 0 creates the chunk (so a replica that lost it is never re-created short).
use super::service::{ChunkServer, Inflight};
use super::status::{blame, status_of};
use bytes::{Bytes, BytesMut};
use shale_proto::pb::{AppendChunkRequest, AppendChunkResponse, ChunkToken, PipelineTarget};
use shale_proto::ChunkRef as DomainRef;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// Largest append (one record, or several concatenated).
pub const APPEND_MAX_BYTES: usize = 1 << 20;
/// Most bytes a primary writes as one append (within a chunkserver message).
const BATCH_MAX_BYTES: usize = 4 << 20;
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
        let _inflight = Inflight(&self.inflight);
        let route = Route {
            chunk,
            downstream: std::mem::take(&mut r.downstream),
            chunk_size: r.chunk_size,
        };
        let data = std::mem::take(&mut r.data);
        let token = r.token.take();
        let durable_on = match r.offset {
            // A forwarded append: at exactly that offset (the store refuses any other).
            Some(offset) => {
                self.store_and_forward(&route, token, offset, data).await?;
                let mut on = vec![me];
                on.extend(route.downstream.iter().map(|d| d.node_id));
                return Ok(Response::new(AppendChunkResponse {
                    offset,
                    durable_on: on,
                }));
            }
            None => self.primary_append(route, token, data).await?,
        };
        Ok(Response::new(durable_on))
    }

    /// At the primary: queues the append; the first to find the chunk idle writes everything
    /// queued (with the same route) as one append, again and again until the queue is empty
    /// (group commit: one round of fdatasyncs for many records).
    async fn primary_append(
        &self,
        route: Route,
        token: Option<ChunkToken>,
        data: Bytes,
    ) -> Result<AppendChunkResponse, Status> {
        let id = route.chunk.id.get();
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut qs = self.append_queues.lock().unwrap_or_else(|p| p.into_inner());
            let q = qs.entry(id).or_default();
            q.items.push(Item {
                route,
                token,
                data,
                done: tx,
            });
            !std::mem::replace(&mut q.busy, true)
        };
        if lead {
            let mut guard = Leading(self, id, false);
            while let Some(batch) = self.next_batch(id) {
                self.write_batch(batch).await;
            }
            // `next_batch` left the chunk idle.
            guard.2 = true;
        }
        rx.await.unwrap_or_else(|_| {
            Err(Status::unavailable(
                "the append's batch was abandoned (its writer went away); retry",
            ))
        })
    }

    /// The next appends to write together: the oldest one and the others queued with its
    /// route, in order, up to [`BATCH_MAX_BYTES`]; `None` (and the chunk idle) when none wait.
    fn next_batch(&self, id: u64) -> Option<Vec<Item>> {
        let mut qs = self.append_queues.lock().unwrap_or_else(|p| p.into_inner());
        let q = qs.get_mut(&id)?;
        if q.items.is_empty() {
            qs.remove(&id);
            return None;
        }
        let route = q.items[0].route.clone();
        let (mut batch, mut rest, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        for it in q.items.drain(..) {
            if it.route == route && (batch.is_empty() || bytes + it.data.len() <= BATCH_MAX_BYTES) {
                bytes += it.data.len();
                batch.push(it);
            } else {
                rest.push(it);
            }
        }
        q.items = rest;
        Some(batch)
    }

    /// Writes a batch at the chunk's end and answers each append with its own offset; those
    /// past the chunk size get OUT_OF_RANGE ("chunk full").
    async fn write_batch(&self, mut batch: Vec<Item>) {
        let me = self.node.load(Ordering::Relaxed);
        let route = batch[0].route.clone();
        let token = batch[0].token.take();
        let base = self
            .store
            .stat(route.chunk.id)
            .map_or(0, |i| i.length_bytes);
        let mut end = base;
        let mut fit = Vec::new();
        for it in batch {
            let len = it.data.len() as u64;
            if end.saturating_add(len) > route.chunk_size {
                let _ = it.done.send(Err(Status::out_of_range(format!(
                    "chunk full: {end} + {len} bytes exceed the {}-byte chunk",
                    route.chunk_size
                ))));
            } else {
                end += len;
                fit.push(it);
            }
        }
        if fit.is_empty() {
            return;
        }
        let data = if fit.len() == 1 {
            fit[0].data.clone()
        } else {
            let mut b = BytesMut::with_capacity((end - base) as usize);
            for it in &fit {
                b.extend_from_slice(&it.data);
            }
            b.freeze()
        };
        let r = self.store_and_forward(&route, token, base, data).await;
        let mut on = vec![me];
        on.extend(route.downstream.iter().map(|d| d.node_id));
        let mut at = base;
        for it in fit {
            let len = it.data.len() as u64;
            let _ = it.done.send(r.clone().map(|()| AppendChunkResponse {
                offset: at,
                durable_on: on.clone(),
            }));
            at += len;
        }
    }

    /// Stores `data` at `offset` here (durable) while forwarding it down the route's pipeline;
    /// Ok once every replica holds it durable.
    async fn store_and_forward(
        &self,
        route: &Route,
        token: Option<ChunkToken>,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Status> {
        let me = self.node.load(Ordering::Relaxed);
        let chunk = route.chunk;
        let len = data.len() as u64;
        if offset.saturating_add(len) > route.chunk_size {
            return Err(Status::out_of_range(format!(
                "chunk full: {offset} + {len} bytes exceed the {}-byte chunk",
                route.chunk_size
            )));
        }
        let local = async {
            self.store
                .append(chunk, offset, data.clone(), offset == 0)
                .await
                .map(|_| ())
                .map_err(|e| blame(status_of(&e), me))
        };
        let forward = async {
            let Some(next) = route.downstream.first() else {
                return Ok(());
            };
            let mut client = self
                .peer(&next.address)
                .map_err(|e| blame(e, next.node_id))?;
            let req = AppendChunkRequest {
                chunk: Some(chunk.into()),
                data: data.clone(),
                offset: Some(offset),
                downstream: route.downstream[1..].to_vec(),
                node_id: next.node_id,
                token,
                chunk_size: route.chunk_size,
            };
            let want: Vec<u64> = route.downstream.iter().map(|d| d.node_id).collect();
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
                Ok(Ok(resp)) if resp.get_ref().durable_on == want => Ok(()),
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
        // A downstream failure explains more than our own (it is further down).
        f?;
        l?;
        if offset == 0 {
            // A new chunk here: reported at once (the masters learn of later appends' bytes
            // through commits, not reports).
            self.report_now.notify_one();
        }
        Ok(())
    }
}

/// Where an append goes (appends batch only with equal ones; each was authorized on its own).
#[derive(Clone, PartialEq, Eq)]
struct Route {
    chunk: DomainRef,
    downstream: Vec<PipelineTarget>,
    chunk_size: u64,
}

/// An append waiting at its primary.
struct Item {
    route: Route,
    token: Option<ChunkToken>,
    data: Bytes,
    done: oneshot::Sender<Result<AppendChunkResponse, Status>>,
}

/// The appends queued at a primary for one chunk, and whether one of them is writing.
#[derive(Default)]
pub(crate) struct Queue {
    items: Vec<Item>,
    busy: bool,
}

/// Marks the chunk's queue idle if the writing append goes away (its caller cancelled): the
/// appends still queued fail (their callers retry) instead of waiting for nobody.
struct Leading<'a>(&'a ChunkServer, u64, bool);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if !self.2 {
            let mut qs = self
                .0
                .append_queues
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            qs.remove(&self.1);
        }
    }
}
