//! Chunk access tokens on the master side: the leader keeps a fresh signing key in the
//! replicated state (rotating it every [`KEY_ROTATE_EVERY`]), and every master signs tokens
//! with the newest key it has for the chunks it hands out (allocations: write; locations:
//! read). Chunkservers get the keys in heartbeat replies (over mutual TLS, to chunkservers
//! only) and verify.
//!
//! Invariant: a token never outlives its lifetime (at most [`TOKEN_LIFETIME`]), and keys live for at least
//! `TOKEN_KEYS_MAX - 1` rotations after their last use, so a token stays verifiable for its
//! whole life.
use super::Master;
use crate::sm::Command;
use shale_proto::pb;
use shale_security::token::{self, Claims};
use std::sync::Arc;
use std::time::Duration;

/// How long a token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How often the leader makes a new key.
pub const KEY_ROTATE_EVERY: Duration = Duration::from_secs(3600);
/// How often the leader checks (a new leader of a new cluster makes its first key at once).
const CHECK_EVERY: Duration = Duration::from_millis(250);

impl Master {
    /// A token for `chunk`@`version` granting `modes` at `targets` (node id, address), signed
    /// with the newest key; `None` before the first key exists.
    pub fn token(
        &self,
        chunk: u64,
        version: u64,
        modes: u32,
        targets: Vec<(u64, String)>,
    ) -> Option<pb::ChunkToken> {
        let g = self.sm.read();
        let key = g.state.token_keys().last()?;
        let claims = Claims {
            key_id: key.id,
            chunk_id: chunk,
            version,
            modes,
            expires_ms: token::now_ms() + self.config.token_lifetime.as_millis() as u64,
            targets,
        };
        let mac = token::sign(&key.secret, &claims);
        Some(shale_proto::convert::token_to_wire(&claims, mac))
    }

    /// [`Master::token`], or UNAVAILABLE on a TLS cluster that has no key yet (a new group's
    /// first key is moments away); a plaintext cluster hands out no tokens then.
    pub fn token_or_wait(
        &self,
        chunk: u64,
        version: u64,
        modes: u32,
        targets: Vec<(u64, String)>,
    ) -> Result<Option<pb::ChunkToken>, tonic::Status> {
        match self.token(chunk, version, modes, targets) {
            Some(t) => Ok(Some(t)),
            None if self.config.transport.is_tls() => Err(tonic::Status::unavailable(
                "the masters have no chunk token key yet (the group just formed); retry",
            )),
            None => Ok(None),
        }
    }

    /// The token keys, as heartbeat replies carry them.
    pub fn token_keys(&self) -> Vec<shale_proto::metapb::TokenKey> {
        self.sm
            .read()
            .state
            .token_keys()
            .iter()
            .map(|k| shale_proto::metapb::TokenKey {
                id: k.id,
                secret: k.secret.clone().into(),
            })
            .collect()
    }
}

impl Master {
    /// Replaces the user-token key with a fresh one (revoking every user token issued).
    pub async fn new_user_key(&self) -> Result<(), tonic::Status> {
        let secret = token::new_secret().map_err(tonic::Status::internal)?;
        let id = self.sm.read().state.user_key().map_or(1, |k| k.id + 1);
        self.write(Command::SetUserKey { id, secret }).await?;
        Ok(())
    }

    /// The secret of user-token key `id`, if it is the current one.
    pub fn user_key_secret(&self, id: u64) -> Option<Vec<u8>> {
        let g = self.sm.read();
        let k = g.state.user_key()?;
        (k.id == id).then(|| k.secret.clone())
    }
}

/// The leader's key rotation: a first chunk-token key as soon as it leads, then a new one every
/// [`KEY_ROTATE_EVERY`] (by the key's log time); and a first user-token key (never rotated
/// on its own: replacing it revokes user tokens).
pub async fn rotate(master: Arc<Master>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        if !master.is_leader() {
            continue;
        }
        if master.sm.read().state.user_key().is_none() {
            match master.new_user_key().await {
                Ok(()) => tracing::info!("first user token key"),
                Err(e) => tracing::debug!(error = %e, "user token key failed"),
            }
        }
        let newest = master
            .sm
            .read()
            .state
            .token_keys()
            .last()
            .map(|k| (k.id, k.created_ms));
        let due = match newest {
            None => true,
            Some((_, created)) => {
                token::now_ms().saturating_sub(created) >= KEY_ROTATE_EVERY.as_millis() as u64
            }
        };
        if !due {
            continue;
        }
        let secret = match token::new_secret() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot make a token key: {e}");
                continue;
            }
        };
        let id = newest.map_or(1, |(id, _)| id + 1);
        match master.write(Command::AddTokenKey { id, secret }).await {
            Ok(_) => tracing::info!(id, "new chunk token key"),
            Err(e) => tracing::debug!(error = %e, "token key rotation failed"),
        }
    }
}
