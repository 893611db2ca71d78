//! Quotas, the trash and snapshots over gRPC (`SetQuota`, `GetQuota`, `ListQuotas`, `Trash`,
//! `ListTrash`, `CreateSnapshot`, `DeleteSnapshot`, `ListSnapshots`), and the leader's trash
//! expiry. The rules live in `sm::quota`, `sm::trash` and `sm::snaps`.
use super::perms::who;
use super::service::{file_stat, Svc};
use super::{status_of, Master};
use crate::sm::quota::Quota;
use crate::sm::{Command, Reply};
use shale_proto::metapb::*;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

type R<T> = Result<Response<T>, Status>;

/// Most items one `ListTrash` returns.
const TRASH_LIST_MAX: usize = 10_000;
/// Most quotas one `ListQuotas` returns.
const QUOTA_LIST_MAX: usize = 100_000;
/// How often the leader looks for expired trash.
const TRASH_CHECK_EVERY: Duration = Duration::from_secs(5);

fn quota_reply(path: &str, q: Option<Quota>) -> QuotaReply {
    match q {
        None => QuotaReply {
            path: path.to_string(),
            ..QuotaReply::default()
        },
        Some(q) => QuotaReply {
            path: path.to_string(),
            has_quota: true,
            max_bytes: q.max_bytes,
            max_names: q.max_names,
            used_bytes: q.used.bytes,
            used_names: q.used.names,
        },
    }
}

impl Svc {
    pub(super) async fn set_quota_as(&self, req: Request<SetQuotaRequest>) -> R<QuotaReply> {
        shale_security::caller(&req)?.require_admin("set a quota")?;
        let who = who(&req)?;
        let r = req.into_inner();
        let cmd = Command::SetQuota {
            path: r.path.clone(),
            max_bytes: r.max_bytes,
            max_names: r.max_names,
        };
        self.write(&who, r.request_id, cmd).await?;
        // What the quota is now (a concurrent change may have followed: it is still an answer
        // the caller could have seen).
        Ok(Response::new(self.quota_now(&r.path, &who)?))
    }

    fn quota_now(&self, path: &str, who: &crate::sm::Who) -> Result<QuotaReply, Status> {
        let q = self
            .0
            .sm
            .read()
            .state
            .quota_as(path, who)
            .map_err(|e| status_of(&e))?;
        Ok(quota_reply(path, q))
    }

    pub(super) async fn get_quota_as(&self, req: Request<PathRequest>) -> R<QuotaReply> {
        let who = who(&req)?;
        let r = req.into_inner();
        self.0.read_ready(r.follower_read).await?;
        Ok(Response::new(self.quota_now(&r.path, &who)?))
    }

    pub(super) async fn list_quotas_as(&self, req: Request<Empty>) -> R<QuotaList> {
        shale_security::caller(&req)?.require_admin("list every quota")?;
        self.0.read_ready(false).await?;
        let quotas = self
            .0
            .sm
            .read()
            .state
            .quotas(QUOTA_LIST_MAX)
            .into_iter()
            .map(|v| quota_reply(&v.path, Some(v.quota)))
            .collect();
        Ok(Response::new(QuotaList { quotas }))
    }

    pub(super) async fn trash_as(&self, req: Request<DeleteRequest>) -> R<TrashReply> {
        let who = who(&req)?;
        let r = req.into_inner();
        match self.write(&who, r.request_id, Self::trash_cmd(&r)).await? {
            Reply::Trashed(path) => Ok(Response::new(TrashReply { path })),
            other => Err(Status::internal(format!("unexpected reply {other:?}"))),
        }
    }

    pub(super) async fn list_trash_as(&self, req: Request<ListTrashRequest>) -> R<TrashList> {
        let who = who(&req)?;
        let r = req.into_inner();
        self.0.read_ready(false).await?;
        let user = if r.user.is_empty() {
            who.user.clone()
        } else {
            r.user
        };
        let limit = match r.limit {
            0 => 1000,
            n => (n as usize).min(TRASH_LIST_MAX),
        };
        let items = self
            .0
            .sm
            .read()
            .state
            .trash_list(&user, limit, &who)
            .map_err(|e| status_of(&e))?
            .into_iter()
            .map(|t| TrashItem {
                stat: Some(file_stat(t.path.rsplit('/').next().unwrap_or(""), &t.stat)),
                original: t.original,
                path: t.path,
                deleted_ms: t.deleted_ms,
            })
            .collect();
        Ok(Response::new(TrashList { items }))
    }
}

/// On the leader, removes trash checkpoints older than the retention (by log time), looking
/// every few seconds and proposing only when something is due.
pub(super) async fn expire_trash(master: Arc<Master>) {
    let retention_ms = u64::try_from(master.config.trash_retention.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(TRASH_CHECK_EVERY);
    loop {
        tick.tick().await;
        if !master.is_leader() {
            continue;
        }
        let now = super::propose::now_ms();
        let due = master.sm.read().state.trash_due(now, retention_ms);
        if due {
            match master.write(Command::ExpireTrash { retention_ms }).await {
                Ok(Reply::Expired(n)) => tracing::info!(checkpoints = n, "expired trash removed"),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "trash expiry round failed"),
            }
        }
    }
}

fn snapshot_info(v: crate::sm::snaps::SnapView) -> SnapshotInfo {
    SnapshotInfo {
        stat: Some(file_stat(&v.name, &v.stat)),
        name: v.name,
        created_ms: v.created_ms,
    }
}

impl Svc {
    pub(super) async fn create_snapshot_as(
        &self,
        req: Request<SnapshotRequest>,
    ) -> R<SnapshotInfo> {
        let who = who(&req)?;
        let r = req.into_inner();
        let cmd = Command::CreateSnapshot {
            path: r.path.clone(),
            name: r.name.clone(),
        };
        self.write(&who, r.request_id, cmd).await?;
        let views = self
            .0
            .sm
            .read()
            .state
            .snapshots_of(&r.path, &who)
            .map_err(|e| status_of(&e))?;
        // A concurrent delete may have removed it again: the creation still happened.
        Ok(Response::new(
            views
                .into_iter()
                .find(|v| v.name == r.name)
                .map(snapshot_info)
                .unwrap_or(SnapshotInfo {
                    name: r.name,
                    ..SnapshotInfo::default()
                }),
        ))
    }

    pub(super) async fn delete_snapshot_as(&self, req: Request<SnapshotRequest>) -> R<Empty> {
        let who = who(&req)?;
        let r = req.into_inner();
        let cmd = Command::DeleteSnapshot {
            path: r.path,
            name: r.name,
        };
        self.write(&who, r.request_id, cmd).await?;
        Ok(Response::new(Empty {}))
    }

    pub(super) async fn list_snapshots_as(&self, req: Request<PathRequest>) -> R<SnapshotList> {
        let who = who(&req)?;
        let r = req.into_inner();
        self.0.read_ready(r.follower_read).await?;
        let views = self
            .0
            .sm
            .read()
            .state
            .snapshots_of(&r.path, &who)
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(SnapshotList {
            snapshots: views.into_iter().map(snapshot_info).collect(),
        }))
    }
}
