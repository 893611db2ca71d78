//! The caller a namespace request runs as, and the permission RPCs (chmod/chown, group
//! memberships, who am I, user tokens). The checks themselves are the state machine's
//! (`sm::perms`).
//!
//! A caller's name comes only from its certificate: admins and masters are superusers, users
//! are themselves, chunkservers have no business in the namespace; on a plaintext cluster
//! everyone is the superuser root.
use super::service::Svc;
use crate::sm::{perms, Command, Who};
use shale_proto::metapb::*;
use shale_security::bearer::{self, UserClaims};
use shale_security::token::now_ms;
use shale_security::{Caller, Principal, Role};
use tonic::{Request, Response, Status};

/// Who a namespace request runs as.
pub fn who<T>(req: &Request<T>) -> Result<Who, Status> {
    match shale_security::caller(req)? {
        Caller::Trusted => Ok(Who::root()),
        Caller::Is(p) => match p.role {
            Role::Admin | Role::Master => Ok(Who {
                user: p.name.clone(),
                superuser: true,
            }),
            Role::User => Ok(Who::user(&p.name)),
            Role::Chunkserver => Err(Status::permission_denied(format!(
                "{p} may not use the namespace (chunkserver certificates are for chunkservers)"
            ))),
        },
    }
}

/// Mode bits from the wire.
pub fn mode_arg(m: u32) -> Result<u16, Status> {
    u16::try_from(m)
        .ok()
        .filter(|m| *m <= perms::MODE_MAX)
        .ok_or_else(|| {
            Status::invalid_argument(format!("mode {m:o} has bits outside {:o}", perms::MODE_MAX))
        })
}

/// The default lifetime of a user token.
pub const USER_TOKEN_LIFETIME_MS: u64 = 7 * 24 * 3600 * 1000;

fn name_arg(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl Svc {
    pub(super) async fn set_attributes_as(
        &self,
        req: Request<SetAttributesRequest>,
    ) -> Result<Response<FileStat>, Status> {
        let who = who(&req)?;
        let r = req.into_inner();
        let (owner, group) = (name_arg(r.owner), name_arg(r.group));
        if r.mode.is_none() && owner.is_none() && group.is_none() {
            return Err(Status::invalid_argument(
                "nothing to change: give a mode, an owner or a group",
            ));
        }
        let cmd = Command::SetAttrs {
            path: r.path.clone(),
            mode: r.mode.map(mode_arg).transpose()?,
            owner,
            group,
        };
        self.write(&who, r.request_id, cmd).await?;
        Ok(Response::new(self.stat_path(&r.path, &who)?))
    }

    pub(super) async fn set_group_member_as(
        &self,
        req: Request<GroupMemberRequest>,
    ) -> Result<Response<Empty>, Status> {
        shale_security::caller(&req)?.require_admin("change group memberships")?;
        let who = who(&req)?;
        let r = req.into_inner();
        let cmd = Command::SetMember {
            group: r.group,
            user: r.user,
            member: r.member,
        };
        self.write(&who, r.request_id, cmd).await?;
        Ok(Response::new(Empty {}))
    }

    pub(super) async fn list_groups_as(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<GroupsReply>, Status> {
        who(&req)?;
        self.0.read_ready(false).await?;
        let groups = self
            .0
            .sm
            .read()
            .state
            .groups()
            .into_iter()
            .map(|(name, members)| Group { name, members })
            .collect();
        Ok(Response::new(GroupsReply { groups }))
    }

    pub(super) fn who_am_i_as(&self, req: Request<Empty>) -> Result<Response<WhoAmIReply>, Status> {
        let role = match shale_security::caller(&req)? {
            Caller::Trusted => "plaintext".to_string(),
            Caller::Is(p) => p.role.as_str().to_string(),
        };
        let who = who(&req)?;
        let g = self.0.sm.read();
        let actor = g.state.actor(&who);
        let groups = actor
            .gids
            .iter()
            .filter(|_| !who.superuser)
            .map(|id| g.state.name_of(*id).to_string())
            .collect();
        Ok(Response::new(WhoAmIReply {
            user: who.user,
            role,
            superuser: who.superuser,
            groups,
        }))
    }

    pub(super) async fn issue_user_token_as(
        &self,
        req: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenReply>, Status> {
        shale_security::caller(&req)?.require_admin("issue user tokens")?;
        let r = req.into_inner();
        let role = if r.admin { Role::Admin } else { Role::User };
        let principal = Principal::new(role, &r.user).map_err(Status::invalid_argument)?;
        let lifetime = match r.lifetime_ms {
            0 => USER_TOKEN_LIFETIME_MS,
            l if l > bearer::LIFETIME_MAX_MS => {
                return Err(Status::invalid_argument(format!(
                    "a user token lives at most {} days",
                    bearer::LIFETIME_MAX_MS / 86_400_000
                )))
            }
            l => l,
        };
        if !self.0.is_leader() {
            return Err(self.0.not_leader());
        }
        self.0.read_ready(false).await?;
        let key = self.0.sm.read().state.user_key().cloned().ok_or_else(|| {
            Status::unavailable(
                "the masters have no user token key yet (the group just formed); retry",
            )
        })?;
        let issued_ms = now_ms();
        let claims = UserClaims {
            key_id: key.id,
            issued_ms,
            expires_ms: issued_ms + lifetime,
            principal,
        };
        let token = bearer::sign(&key.secret, &claims).map_err(Status::internal)?;
        tracing::info!(user = %claims.principal, expires_ms = claims.expires_ms, "user token issued");
        Ok(Response::new(IssueTokenReply {
            token,
            expires_ms: claims.expires_ms,
        }))
    }

    pub(super) async fn revoke_user_tokens_as(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        shale_security::caller(&req)?.require_admin("revoke user tokens")?;
        if !self.0.is_leader() {
            return Err(self.0.not_leader());
        }
        self.0.read_ready(false).await?;
        self.0.new_user_key().await?;
        tracing::info!("user tokens revoked: new user token key");
        Ok(Response::new(Empty {}))
    }
}
