//! Record append over gRPC (`AppendTail`, `CommitRecord`, `SealAppend`); the rules live in
//! `sm::appends`. The leader places a new tail chunk like any chunk (placement from soft state,
//! the pipeline carried in the command) and hands out write tokens for it.
use super::perms::who;
use super::service::{unexpected, Svc};
use crate::placement;
use crate::sm::{Command, Reply};
use shale_proto::metapb::*;
use shale_proto::{ChunkId, InodeId, NodeId};
use tonic::{Request, Response, Status};

type R<T> = Result<Response<T>, Status>;

impl Svc {
    pub(super) async fn append_tail_as(
        &self,
        req: Request<AppendTailRequest>,
    ) -> R<AppendTailReply> {
        let who = who(&req)?;
        let r = req.into_inner();
        if !self.0.is_leader() {
            return Err(self.0.not_leader());
        }
        if r.create {
            let replication = match r.replication {
                0 => None,
                n => Some(u8::try_from(n).map_err(|_| {
                    Status::invalid_argument(format!("replication {n} is out of range"))
                })?),
            };
            let mode = match r.mode {
                0 => crate::sm::perms::FILE_MODE_DEFAULT,
                m => u16::try_from(m)
                    .map_err(|_| Status::invalid_argument(format!("mode {m:o} is out of range")))?,
            };
            // Idempotent: finds the file if it is an append file already (not a session
            // request: the request id names the AppendTail below).
            self.write(
                &who,
                None,
                Command::CreateAppend {
                    path: r.path.clone(),
                    replication,
                    chunk_size_bytes: (r.chunk_size > 0).then_some(r.chunk_size),
                    mode,
                },
            )
            .await?;
        }
        // What the file needs (its replication and chunk size), from the applied state.
        self.0.read_ready(false).await?;
        let st = self
            .0
            .sm
            .read()
            .state
            .stat_as(&r.path, &who)
            .map_err(|e| super::status_of(&e))?;
        let client_host = (!r.client_host.is_empty()).then_some(r.client_host.as_str());
        let candidates = self.candidates();
        let exclude: Vec<NodeId> = r.exclude.iter().map(|n| NodeId(*n)).collect();
        let pipeline = placement::place(
            &candidates,
            usize::from(st.replication),
            &exclude,
            st.chunk_size_bytes,
            client_host,
        )
        .map_err(|e| self.unplaced(e, candidates.is_empty()))?;
        let reply = self
            .write(
                &who,
                r.request_id,
                Command::AppendTail {
                    path: r.path.clone(),
                    after: (r.after_chunk != 0).then_some(ChunkId(r.after_chunk)),
                    fence: r.fence,
                    pipeline,
                },
            )
            .await?;
        let Reply::Chunk {
            id,
            version,
            pipeline,
        } = reply
        else {
            return Err(unexpected(reply));
        };
        let (pipeline, token) = self.grant(id, version, pipeline)?;
        Ok(Response::new(AppendTailReply {
            file: st.inode.get(),
            chunk_size: st.chunk_size_bytes,
            chunk_id: id.get(),
            version: version.get(),
            pipeline,
            token,
        }))
    }

    pub(super) async fn commit_record_as(
        &self,
        req: Request<CommitRecordRequest>,
    ) -> R<CommitRecordReply> {
        let who = who(&req)?;
        let r = req.into_inner();
        if r.request_id.is_none() {
            return Err(Status::invalid_argument(
                "a record needs a request id (its record id: retries are answered once)",
            ));
        }
        let reply = self
            .write(
                &who,
                r.request_id,
                Command::CommitRecord {
                    path: r.path,
                    file: InodeId(r.file),
                    chunk: ChunkId(r.chunk_id),
                    chunk_off: r.chunk_offset,
                    len: r.length,
                    on: r.durable_on.into_iter().map(NodeId).collect(),
                },
            )
            .await?;
        match reply {
            Reply::Record { offset, length } => {
                Ok(Response::new(CommitRecordReply { offset, length }))
            }
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn seal_append_as(&self, req: Request<SealAppendRequest>) -> R<Empty> {
        let who = who(&req)?;
        let r = req.into_inner();
        self.write(&who, r.request_id, Command::SealAppend { path: r.path })
            .await?;
        Ok(Response::new(Empty {}))
    }
}
