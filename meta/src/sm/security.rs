//! The replicated security state: which principal each chunkserver registered as (so that no
//! other chunkserver can speak for its node id), the keys that sign chunk access tokens, and
//! the end-to-end digest of every chunk a writer committed (BLAKE3 of its bytes, computed by
//! the writing client: no chunkserver's word goes into it).
//!
//! Invariants: a node bound to a principal stays bound to it until its registration is
//! removed; at most [`TOKEN_KEYS_MAX`] keys are kept, newest last, with increasing ids; a
//! key's secret is [`TOKEN_KEY_BYTES`] long; a digest exists only for a live chunk of a
//! complete file, and a file has digests for all of its chunks or none. Serialized after the sessions in snapshot format
//! 3 (older snapshots decode with an empty security state).
use super::*;
use serde::{Deserialize, Serialize};

/// Token keys kept: the current one and the ones before it (tokens signed with a rotated-out
/// key stay valid until they expire).
pub const TOKEN_KEYS_MAX: usize = 3;
/// The length of a token key's secret.
pub const TOKEN_KEY_BYTES: usize = 32;

/// One chunk-token signing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKey {
    pub id: u64,
    pub secret: Vec<u8>,
    /// Log time it was added.
    pub created_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityState {
    /// Chunkserver node → the principal name it registered as (TLS clusters only).
    pub server_principals: BTreeMap<NodeId, String>,
    /// Chunk token keys, oldest first.
    pub token_keys: Vec<TokenKey>,
    /// The writer's digest of each chunk (BLAKE3 of its bytes).
    pub digests: HashMap<ChunkId, Digest>,
}

pub use shale_security::digest::Digest;

impl MetaState {
    /// The principal `node` registered as, if any.
    pub fn server_principal(&self, node: NodeId) -> Option<&str> {
        self.security
            .server_principals
            .get(&node)
            .map(String::as_str)
    }

    /// The chunk-token keys, oldest first.
    pub fn token_keys(&self) -> &[TokenKey] {
        &self.security.token_keys
    }

    /// Registers (as [`MetaState::register`]) a chunkserver that authenticated as `principal`:
    /// refused if its uuid is registered under another principal.
    pub(super) fn register_as(
        &mut self,
        reg: (&str, &str, &str, &Option<String>, u64),
        principal: &str,
        now_ms: u64,
    ) -> Res<Reply> {
        let (uuid, address, host, rack, capacity_bytes) = reg;
        if principal.is_empty() || principal.len() > 64 {
            return Err(MetaError::BadArgument(
                "chunkserver principal must be 1..=64 bytes".into(),
            ));
        }
        let existing = self
            .servers
            .iter()
            .find(|(_, s)| s.uuid == uuid)
            .map(|(n, _)| *n);
        if let Some(bound) = existing.and_then(|n| self.server_principal(n)) {
            if bound != principal {
                return Err(MetaError::Denied(format!(
                    "chunkserver {uuid} is registered as chunkserver {bound}, not {principal}"
                )));
            }
        }
        let r = self.register(uuid, address, host, rack, capacity_bytes, now_ms)?;
        if let Reply::Server(n) = r {
            self.security
                .server_principals
                .insert(n, principal.to_string());
        }
        Ok(r)
    }

    /// The digest the writer committed for `chunk`, if any.
    pub fn chunk_digest(&self, chunk: ChunkId) -> Option<&Digest> {
        self.security.digests.get(&chunk)
    }

    /// The root of file `id` over its chunk digests, if every chunk has one.
    pub fn file_root_of(&self, id: InodeId) -> Option<Digest> {
        let InodeKind::File(f) = &self.inodes.get(&id)?.kind else {
            return None;
        };
        let ds = f
            .chunks
            .iter()
            .map(|c| self.security.digests.get(c))
            .collect::<Option<Vec<_>>>()?;
        Some(shale_security::digest::file_root(ds.iter().map(|d| &d[..])))
    }

    /// `Complete`, recording the writer's digest of each chunk (one per chunk, in order).
    pub(super) fn complete_with_digests(
        &mut self,
        file: InodeId,
        holder: Holder,
        length: u64,
        digests: &[Vec<u8>],
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        let chunks = self.file_mut(file)?.chunks.clone();
        if digests.len() != chunks.len() || digests.iter().any(|d| d.len() != 32) {
            return Err(MetaError::BadArgument(format!(
                "{} chunk digests of 32 bytes are needed, {} were given",
                chunks.len(),
                digests.len()
            )));
        }
        let r = self.complete(file, holder, length, now_ms, who)?;
        for (c, d) in chunks.iter().zip(digests) {
            let mut x = [0u8; 32];
            x.copy_from_slice(d);
            self.security.digests.insert(*c, x);
        }
        Ok(r)
    }

    /// Adds a token key (the leader makes the secret; the state only keeps it).
    pub(super) fn add_token_key(&mut self, id: u64, secret: &[u8], now_ms: u64) -> Res<Reply> {
        if secret.len() != TOKEN_KEY_BYTES {
            return Err(MetaError::BadArgument(format!(
                "a token key is {TOKEN_KEY_BYTES} bytes, not {}",
                secret.len()
            )));
        }
        let keys = &mut self.security.token_keys;
        if keys.last().is_some_and(|k| k.id >= id) {
            // A retried or stale rotation: the newer key stays.
            return Ok(Reply::Done);
        }
        keys.push(TokenKey {
            id,
            secret: secret.to_vec(),
            created_ms: now_ms,
        });
        if keys.len() > TOKEN_KEYS_MAX {
            let extra = keys.len() - TOKEN_KEYS_MAX;
            keys.drain(..extra);
        }
        Ok(Reply::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg<'a>(
        uuid: &'a str,
        rack: &'a Option<String>,
    ) -> (&'a str, &'a str, &'a str, &'a Option<String>, u64) {
        (uuid, "127.0.0.1:7000", "h1", rack, 1 << 30)
    }

    #[test]
    fn a_node_stays_bound_to_its_principal() {
        let mut s = MetaState::new(64 << 20, 3).unwrap();
        let none = None;
        let Ok(Reply::Server(n)) = s.register_as(reg("u1", &none), "cs1", 1) else {
            panic!("register");
        };
        assert_eq!(s.server_principal(n), Some("cs1"));
        // The same server again: the same node.
        assert_eq!(
            s.register_as(reg("u1", &none), "cs1", 2),
            Ok(Reply::Server(n))
        );
        // Another principal claiming its uuid: refused, nothing changed.
        let before = s.clone();
        assert!(matches!(
            s.register_as(reg("u1", &none), "cs2", 3),
            Err(MetaError::Denied(_))
        ));
        assert_eq!(s, before);
        // Removal forgets the binding.
        s.remove_server(n).unwrap();
        assert_eq!(s.server_principal(n), None);
    }

    #[test]
    fn token_keys_rotate() {
        let mut s = MetaState::new(64 << 20, 3).unwrap();
        assert!(s.add_token_key(1, &[0; 5], 1).is_err());
        for id in 1..=5 {
            s.add_token_key(id, &[id as u8; TOKEN_KEY_BYTES], id)
                .unwrap();
        }
        let ids: Vec<u64> = s.token_keys().iter().map(|k| k.id).collect();
        assert_eq!(ids, vec![3, 4, 5]);
        // An old id is ignored.
        s.add_token_key(4, &[9; TOKEN_KEY_BYTES], 9).unwrap();
        assert_eq!(
            s.token_keys().last().unwrap().secret,
            vec![5; TOKEN_KEY_BYTES]
        );
    }
}
