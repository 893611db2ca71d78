//! The `Batch` RPC: many namespace operations (mkdir, create, complete, abandon, delete, trash,
//! rename) in one call and one Raft entry. Each item is the request message of its own RPC,
//! turned into the same command by the same code ([`Svc::mkdir_cmd`] and its siblings), so
//! it is checked exactly as that RPC would check it: argument checks here, everything else by
//! the state machine's apply. Items are applied in order; one failing does not stop the others,
//! and each gets its own result (the gRPC code its RPC would have failed with). Each item
//! carries its own request id, so a retried batch applies every item at most once and answers
//! as the first time.
use super::perms::who;
use super::service::Svc;
use super::{propose::ProposeError, status_of};
use crate::sm::{Command, Reply};
use shale_proto::metapb::batch_item::Op;
use shale_proto::metapb::*;
use shale_proto::InodeId;
use tonic::{Request, Response, Status};

/// Items one `Batch` may carry.
pub const BATCH_ITEMS_MAX: usize = 1000;

fn failed(s: &Status) -> BatchResult {
    BatchResult {
        code: s.code() as u32,
        message: s.message().to_string(),
        ..BatchResult::default()
    }
}

/// An item's result from its command's reply.
fn result_of(reply: Reply) -> BatchResult {
    match reply {
        Reply::Err(e) => failed(&status_of(&e)),
        Reply::Inode(id) => BatchResult {
            inode: id.get(),
            ..BatchResult::default()
        },
        Reply::Created {
            file,
            lease_expires_ms,
            chunk_size_bytes,
            replication,
        } => BatchResult {
            inode: file.get(),
            lease_expires_ms,
            chunk_size: chunk_size_bytes,
            replication: u32::from(replication),
            ..BatchResult::default()
        },
        Reply::Completed { file, length } => BatchResult {
            inode: file.get(),
            length,
            ..BatchResult::default()
        },
        Reply::Trashed(path) => BatchResult {
            path,
            ..BatchResult::default()
        },
        _ => BatchResult::default(),
    }
}

impl Svc {
    /// An item's command (wrapped for its caller and request id), or why it is refused
    /// before it reaches the log.
    async fn item_command(
        &self,
        who: &crate::sm::Who,
        op: Option<Op>,
        deadline: tokio::time::Instant,
    ) -> Result<Command, Status> {
        let (rid, cmd) = match op {
            None => return Err(Status::invalid_argument("batch item without an operation")),
            Some(Op::Mkdir(r)) => (r.request_id, Self::mkdir_cmd(&r)?),
            Some(Op::Create(r)) => (r.request_id, Self::create_cmd(&r)?),
            Some(Op::Complete(r)) => {
                self.durable_length_by(InodeId(r.file), r.length, deadline)
                    .await?;
                (r.request_id, Self::complete_cmd(&r))
            }
            Some(Op::Abandon(r)) => (r.request_id, Self::abandon_cmd(&r)),
            Some(Op::Delete(r)) => (r.request_id, Self::delete_cmd(&r)),
            Some(Op::Trash(r)) => (r.request_id, Self::trash_cmd(&r)),
            Some(Op::Rename(r)) => (r.request_id, Self::rename_cmd(&r)),
        };
        Self::wrap(who, rid, cmd)
    }

    pub(super) async fn batch_as(
        &self,
        req: Request<BatchRequest>,
    ) -> Result<Response<BatchReply>, Status> {
        let who = who(&req)?;
        let items = req.into_inner().items;
        if items.len() > BATCH_ITEMS_MAX {
            return Err(Status::invalid_argument(format!(
                "a batch carries at most {BATCH_ITEMS_MAX} items, not {}",
                items.len()
            )));
        }
        if items.iter().any(|i| matches!(i.op, Some(Op::Complete(_)))) {
            // Completes judge files by their chunk lists: as `complete` does, only on a
            // leader that has applied everything acknowledged (one wait for the batch).
            self.0.applied_acknowledged().await?;
        }
        // One wait for the replicas' reports, shared by every complete of the batch.
        let deadline = tokio::time::Instant::now() + super::service::COMPLETE_REPORT_WAIT;
        let mut results = vec![BatchResult::default(); items.len()];
        let (mut cmds, mut slots) = (Vec::new(), Vec::new());
        for (i, item) in items.into_iter().enumerate() {
            match self.item_command(&who, item.op, deadline).await {
                Ok(cmd) => {
                    cmds.push(cmd);
                    slots.push(i);
                }
                Err(s) => results[i] = failed(&s),
            }
        }
        if !cmds.is_empty() {
            if self.0.unconfirmed().is_some() {
                return Err(self.0.not_leader());
            }
            let replies = match self.0.proposer.propose_many(cmds).await {
                Ok(r) => r,
                Err(ProposeError::NotLeader) => return Err(self.0.not_leader()),
                Err(ProposeError::Failed(e)) => {
                    return Err(Status::unavailable(format!("write failed: {e}")))
                }
            };
            for (i, reply) in slots.into_iter().zip(replies) {
                results[i] = result_of(reply);
            }
        }
        Ok(Response::new(BatchReply { results }))
    }
}
