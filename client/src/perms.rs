//! Permissions: chmod, chown, group memberships, and who the cluster takes this client for.
//! Every change carries one request id across its retries (a retried change that took effect
//! reports success).
use crate::error::Result;
use crate::Client;
use shale_proto::metapb::*;
use std::collections::BTreeMap;

impl Client {
    /// Sets the mode bits of a file or directory (its owner or a superuser only).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.chmod("/home/alice/secret", 0o600).await?;
    /// # Ok(()) }
    /// ```
    pub async fn chmod(&self, path: &str, mode: u32) -> Result<FileStat> {
        self.set_attributes(path, Some(mode), "", "").await
    }

    /// Changes the owner (superusers only) and/or the group (the owner, to a group they are in)
    /// of a file or directory; `None` leaves it as it is.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.chown("/home/alice", Some("alice"), Some("staff")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn chown(
        &self,
        path: &str,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> Result<FileStat> {
        self.set_attributes(path, None, owner.unwrap_or(""), group.unwrap_or(""))
            .await
    }

    async fn set_attributes(
        &self,
        path: &str,
        mode: Option<u32>,
        owner: &str,
        group: &str,
    ) -> Result<FileStat> {
        let (p, o, g) = (path.to_string(), owner.to_string(), group.to_string());
        let request_id = self.masters.request_id();
        self.masters
            .call(|mut m| {
                let (path, owner, group) = (p.clone(), o.clone(), g.clone());
                async move {
                    m.set_attributes(SetAttributesRequest {
                        path,
                        mode,
                        owner,
                        group,
                        request_id,
                    })
                    .await
                }
            })
            .await
    }

    /// Adds `user` to supplementary group `group`, or removes it (`member` false). Admins only.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// c.set_group_member("staff", "alice", true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_group_member(&self, group: &str, user: &str, member: bool) -> Result<()> {
        let (g, u) = (group.to_string(), user.to_string());
        let request_id = self.masters.request_id();
        self.masters
            .call(|mut m| {
                let (group, user) = (g.clone(), u.clone());
                async move {
                    m.set_group_member(GroupMemberRequest {
                        group,
                        user,
                        member,
                        request_id,
                    })
                    .await
                }
            })
            .await
            .map(|_| ())
    }

    /// Every supplementary group and its members.
    pub async fn groups(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let r = self
            .masters
            .call(|mut m| async move { m.list_groups(Empty {}).await })
            .await?;
        Ok(r.groups.into_iter().map(|g| (g.name, g.members)).collect())
    }

    /// Who the cluster takes this client for: its user name, role, and groups.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let me = c.who_am_i().await?;
    /// println!("{} ({})", me.user, me.role);
    /// # Ok(()) }
    /// ```
    pub async fn who_am_i(&self) -> Result<WhoAmIReply> {
        self.masters
            .call(|mut m| async move { m.who_am_i(Empty {}).await })
            .await
    }

    /// A user token naming `user` (an admin with `admin`), valid for `lifetime_ms` (0: 7
    /// days): a client without a certificate shows it instead
    /// ([`Transport::tls_with_token`](crate::Transport::tls_with_token)). Admins only.
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let t = c.issue_user_token("alice", false, 24 * 3600 * 1000).await?;
    /// println!("{}", t.token);
    /// # Ok(()) }
    /// ```
    pub async fn issue_user_token(
        &self,
        user: &str,
        admin: bool,
        lifetime_ms: u64,
    ) -> Result<IssueTokenReply> {
        let u = user.to_string();
        self.masters
            .call(|mut m| {
                let user = u.clone();
                async move {
                    m.issue_user_token(IssueTokenRequest {
                        user,
                        admin,
                        lifetime_ms,
                    })
                    .await
                }
            })
            .await
    }

    /// Revokes every user token issued so far. Admins only.
    pub async fn revoke_user_tokens(&self) -> Result<()> {
        self.masters
            .call(|mut m| async move { m.revoke_user_tokens(Empty {}).await })
            .await
            .map(|_| ())
    }
}
