//! Who may read and store chunks on this server (issue: security, chunk access tokens).
//!
//! * Plaintext servers (an explicit development opt-out) check nothing.
//! * Users and admins need a token the masters signed: write access naming this server for a
//!   write (and naming every downstream peer, at the address the request gives: the server
//!   never connects to a peer the master did not name), read access naming this server for a
//!   read; a server-side copy needs write access to the new chunk here and read access to the
//!   source chunk naming the source.
//! * Masters need none (healing is theirs to order); chunkservers read from each other with
//!   their own identities (re-replication) but store chunks only with a token like anyone.
//!
//! The keys come from the masters in heartbeat replies ([`TokenKeys::update`]).
use super::service::ChunkServer;
use shale_proto::pb;
use shale_security::token::{self, Claims, TokenError};
use shale_security::{Caller, Role};
use std::sync::RwLock;
use tonic::Status;

/// The token keys this server knows (id, secret), oldest first; at most [`KEYS_MAX`].
#[derive(Default)]
pub struct TokenKeys(RwLock<Vec<(u64, Vec<u8>)>>);

/// Keys kept (the masters keep 3; a few more cover masters that lag).
pub const KEYS_MAX: usize = 8;
/// How long a request with a token signed by a key this server has not seen yet waits for
/// the key to arrive.
pub const KEY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl TokenKeys {
    /// Merges the keys a master sent.
    pub fn update(&self, keys: &[shale_proto::metapb::TokenKey]) {
        let mut k = self.0.write().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if key.secret.len() == 32 && !k.iter().any(|(id, _)| *id == key.id) {
                k.push((key.id, key.secret.to_vec()));
            }
        }
        k.sort_by_key(|(id, _)| *id);
        let extra = k.len().saturating_sub(KEYS_MAX);
        k.drain(..extra);
    }

    fn get(&self, id: u64) -> Option<Vec<u8>> {
        let k = self.0.read().unwrap_or_else(|p| p.into_inner());
        k.iter().find(|(i, _)| *i == id).map(|(_, s)| s.clone())
    }

    fn newest(&self) -> Option<u64> {
        let k = self.0.read().unwrap_or_else(|p| p.into_inner());
        k.last().map(|(id, _)| *id)
    }
}

fn refused(e: TokenError) -> Status {
    Status::permission_denied(e.to_string())
}

impl ChunkServer {
    /// Waits (at most [`KEY_WAIT`]) for key `id`, newer than any this server has, asking the
    /// masters at once (a heartbeat brings the keys).
    async fn fetch_key(&self, id: u64) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + KEY_WAIT;
        while self.keys.get(id).is_none() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::unavailable(format!(
                    "this chunkserver has not received token key {id} from the masters yet"
                )));
            }
            self.report_now.notify_one();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Verifies `token` for `chunk` (id, version) with `mode`; the verified claims.
    async fn verify_claims(
        &self,
        token: Option<&pb::ChunkToken>,
        chunk: (u64, u64),
        mode: u32,
    ) -> Result<Claims, Status> {
        let t = token.ok_or_else(|| refused(TokenError::Missing))?;
        // (A caller without a certificate and without a token was refused before this.)
        let (claims, mac) = shale_proto::convert::token_claims(t)?;
        let newer = self.keys.newest().is_none_or(|n| claims.key_id > n);
        if newer && self.keys.get(claims.key_id).is_none() {
            // Bounded: ids beyond the next few are not worth waiting for.
            if self.keys.newest().is_none_or(|n| claims.key_id <= n + 2) {
                self.fetch_key(claims.key_id).await?;
            }
        }
        token::verify(
            |id| self.keys.get(id),
            &claims,
            mac,
            chunk,
            mode,
            token::now_ms(),
        )
        .map_err(refused)?;
        Ok(claims)
    }

    /// [`ChunkServer::verify_claims`], and that the token names this server.
    async fn verify_token(
        &self,
        token: Option<&pb::ChunkToken>,
        chunk: (u64, u64),
        mode: u32,
    ) -> Result<Claims, Status> {
        let claims = self.verify_claims(token, chunk, mode).await?;
        claims.has_target(self.me(), None).map_err(refused)?;
        Ok(claims)
    }

    /// May `caller` store `chunk` here, forwarding to `downstream` (node, address)?
    pub(crate) async fn may_write(
        &self,
        caller: &Caller<'_>,
        token: Option<&pb::ChunkToken>,
        chunk: (u64, u64),
        downstream: &[(u64, &str)],
    ) -> Result<(), Status> {
        if *caller == Caller::Trusted {
            return Ok(());
        }
        anonymous_needs_token(caller, token)?;
        let claims = self.verify_token(token, chunk, token::WRITE).await?;
        for (node, addr) in downstream {
            claims.has_target(*node, Some(addr)).map_err(refused)?;
        }
        Ok(())
    }

    /// May `caller` read `chunk` here?
    pub(crate) async fn may_read(
        &self,
        caller: &Caller<'_>,
        token: Option<&pb::ChunkToken>,
        chunk: (u64, u64),
    ) -> Result<(), Status> {
        anonymous_needs_token(caller, token)?;
        match caller {
            Caller::Trusted => Ok(()),
            Caller::Is(p) if matches!(p.role, Role::Master | Role::Chunkserver) => Ok(()),
            Caller::Is(_) => self
                .verify_token(token, chunk, token::READ)
                .await
                .map(|_| ()),
        }
    }

    /// May `caller` have this server pull `from` (`None`: `chunk` itself) from `source` into
    /// `chunk`?
    pub(crate) async fn may_replicate(
        &self,
        caller: &Caller<'_>,
        r: &pb::ReplicateChunkRequest,
        chunk: (u64, u64),
        source: (u64, &str),
    ) -> Result<(), Status> {
        anonymous_needs_token(caller, r.token.as_ref())?;
        match caller {
            Caller::Trusted => return Ok(()),
            Caller::Is(p) if p.role == Role::Master => return Ok(()),
            Caller::Is(p) if p.role == Role::Chunkserver => {
                return Err(Status::permission_denied(format!(
                    "{p} may not order copies (masters and clients with tokens may)"
                )))
            }
            Caller::Is(_) => {}
        }
        self.verify_token(r.token.as_ref(), chunk, token::WRITE)
            .await?;
        let from = r.from.as_ref().ok_or_else(|| {
            Status::permission_denied("a client may only order a copy of another chunk (`from`)")
        })?;
        let want = (from.chunk_id, from.version);
        let claims = self
            .verify_claims(r.from_token.as_ref(), want, token::READ)
            .await?;
        claims.has_target(source.0, Some(source.1)).map_err(refused)
    }
}

/// A TLS client without a certificate is let in only to show a chunk token: without one it is
/// UNAUTHENTICATED (as at every other port).
fn anonymous_needs_token(
    caller: &Caller<'_>,
    token: Option<&pb::ChunkToken>,
) -> Result<(), Status> {
    match (caller, token) {
        (Caller::Is(p), None) if p.name == shale_security::identity::ANONYMOUS_NAME => {
            Err(Status::unauthenticated(
                "this cluster requires a client certificate from its CA, or a chunk token from \
                 the masters",
            ))
        }
        _ => Ok(()),
    }
}
