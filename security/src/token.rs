//! Chunk access tokens (like HDFS block access tokens): the master signs, for one chunk at one
//! version, the modes it grants (read, write), an expiry, and the chunkservers it is good at;
//! a chunkserver serves or stores the chunk only for a token it can verify with a key it got
//! from the masters. HMAC-SHA256 over a canonical byte string ([`Claims::canonical`]).
//!
//! Invariants: [`verify`] accepts exactly the claims [`sign`] signed with a key it is given
//! (any changed field, including a target's address, fails the MAC, compared in constant
//! time); an expired token, one for another chunk or version, one without the mode asked
//! for, or one that does not name the verifying server is refused with a reason.
use ring::hmac;

/// Read the chunk.
pub const READ: u32 = 1;
/// Write (create) the chunk.
pub const WRITE: u32 = 2;

/// A chunkserver accepts a token this long past its expiry (the servers' clocks differ a
/// little; they are expected to run NTP).
pub const CLOCK_SKEW_MS: u64 = 5_000;
/// The longest validity a chunkserver accepts (a token claiming more is refused).
pub const LIFETIME_MAX_MS: u64 = 24 * 3600 * 1000;

/// What a token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The signing key's id.
    pub key_id: u64,
    /// The chunk.
    pub chunk_id: u64,
    /// Its version.
    pub version: u64,
    /// [`READ`] and/or [`WRITE`].
    pub modes: u32,
    /// Unix time (ms) it expires at.
    pub expires_ms: u64,
    /// The chunkservers it is good at: (node id, address).
    pub targets: Vec<(u64, String)>,
}

impl Claims {
    /// The bytes signed: a domain tag, then every field in order, lengths before strings.
    pub fn canonical(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + 32 * self.targets.len());
        b.extend_from_slice(b"shale chunk token v1\0");
        for v in [self.key_id, self.chunk_id, self.version] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.modes.to_le_bytes());
        b.extend_from_slice(&self.expires_ms.to_le_bytes());
        b.extend_from_slice(&(self.targets.len() as u64).to_le_bytes());
        for (id, addr) in &self.targets {
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&(addr.len() as u64).to_le_bytes());
            b.extend_from_slice(addr.as_bytes());
        }
        b
    }
}

/// Now, as token expiries count it: Unix time in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A new random key secret (32 bytes).
pub fn new_secret() -> Result<Vec<u8>, String> {
    use ring::rand::SecureRandom;
    let mut s = vec![0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut s)
        .map_err(|_| "no secure random numbers".to_string())?;
    Ok(s)
}

/// The MAC of `claims` under `secret`.
pub fn sign(secret: &[u8], claims: &Claims) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::sign(&key, &claims.canonical()).as_ref().to_vec()
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token came with a request that needs one.
    #[error("this request needs a chunk access token from the masters")]
    Missing,
    /// Signed with a key this server does not have (yet, or any more).
    #[error("chunk token signed with unknown key {0}")]
    UnknownKey(u64),
    /// The MAC does not match the claims.
    #[error("chunk token signature does not match (forged or altered)")]
    BadMac,
    /// Past its expiry.
    #[error("chunk token expired at {expires_ms} (now {now_ms})")]
    Expired {
        /// When it expired.
        expires_ms: u64,
        /// Now, by this server's clock.
        now_ms: u64,
    },
    /// Valid for longer than any token the masters issue.
    #[error("chunk token claims a lifetime beyond {LIFETIME_MAX_MS} ms")]
    TooLong,
    /// For another chunk or version.
    #[error("chunk token is for chunk {got}, not {want}")]
    WrongChunk {
        /// What the token names.
        got: String,
        /// What the request names.
        want: String,
    },
    /// Lacks the mode asked for.
    #[error("chunk token does not grant {0}")]
    WrongMode(&'static str),
    /// Does not name this server (or a peer the request names).
    #[error("chunk token is not good at {0}")]
    NotATarget(String),
}

/// Checks `mac` over `claims` with the key `key(claims.key_id)`, and the claims against the
/// chunk, mode and time asked for. Target checks are the caller's ([`Claims::has_target`]).
pub fn verify(
    key: impl Fn(u64) -> Option<Vec<u8>>,
    claims: &Claims,
    mac: &[u8],
    chunk: (u64, u64),
    mode: u32,
    now_ms: u64,
) -> Result<(), TokenError> {
    let secret = key(claims.key_id).ok_or(TokenError::UnknownKey(claims.key_id))?;
    let k = hmac::Key::new(hmac::HMAC_SHA256, &secret);
    hmac::verify(&k, &claims.canonical(), mac).map_err(|_| TokenError::BadMac)?;
    if now_ms > claims.expires_ms.saturating_add(CLOCK_SKEW_MS) {
        return Err(TokenError::Expired {
            expires_ms: claims.expires_ms,
            now_ms,
        });
    }
    if claims.expires_ms > now_ms.saturating_add(LIFETIME_MAX_MS + CLOCK_SKEW_MS) {
        return Err(TokenError::TooLong);
    }
    if (claims.chunk_id, claims.version) != chunk {
        return Err(TokenError::WrongChunk {
            got: format!("{}@{}", claims.chunk_id, claims.version),
            want: format!("{}@{}", chunk.0, chunk.1),
        });
    }
    if claims.modes & mode != mode {
        return Err(TokenError::WrongMode(if mode & WRITE != 0 {
            "write"
        } else {
            "read"
        }));
    }
    Ok(())
}

impl Claims {
    /// Ok if the token names the server `node` (at `addr`, when given).
    pub fn has_target(&self, node: u64, addr: Option<&str>) -> Result<(), TokenError> {
        let named = self
            .targets
            .iter()
            .any(|(n, a)| *n == node && addr.is_none_or(|x| x == a));
        if named {
            Ok(())
        } else {
            Err(TokenError::NotATarget(match addr {
                Some(a) => format!("chunkserver {node} at {a}"),
                None => format!("chunkserver {node}"),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            key_id: 7,
            chunk_id: 42,
            version: 3,
            modes: WRITE,
            expires_ms: 1_000_000,
            targets: vec![(1, "10.0.0.1:7201".into()), (2, "10.0.0.2:7201".into())],
        }
    }

    #[test]
    fn only_what_was_signed_verifies() {
        let secret = [5u8; 32];
        let key = |id| (id == 7).then(|| secret.to_vec());
        let c = claims();
        let mac = sign(&secret, &c);
        let now = 900_000;
        assert_eq!(verify(key, &c, &mac, (42, 3), WRITE, now), Ok(()));
        assert_eq!(c.has_target(2, Some("10.0.0.2:7201")), Ok(()));
        assert!(c.has_target(2, Some("10.9.9.9:22")).is_err());
        assert!(c.has_target(3, None).is_err());
        // Any altered field breaks the MAC.
        let mut altered = vec![];
        let mut x = c.clone();
        x.chunk_id = 43;
        altered.push(x);
        let mut x = c.clone();
        x.modes = READ | WRITE;
        altered.push(x);
        let mut x = c.clone();
        x.expires_ms += 1;
        altered.push(x);
        let mut x = c.clone();
        x.targets[1].1 = "evil:1".into();
        altered.push(x);
        let mut x = c.clone();
        x.targets.push((9, "evil:1".into()));
        altered.push(x);
        for x in &altered {
            assert_eq!(
                verify(key, x, &mac, (x.chunk_id, 3), WRITE, now),
                Err(TokenError::BadMac),
                "{x:?}"
            );
        }
        let mut bad = mac.clone();
        bad[0] ^= 1;
        assert_eq!(
            verify(key, &c, &bad, (42, 3), WRITE, now),
            Err(TokenError::BadMac)
        );
        // Well signed, but not for this.
        assert!(matches!(
            verify(key, &c, &mac, (42, 4), WRITE, now),
            Err(TokenError::WrongChunk { .. })
        ));
        assert_eq!(
            verify(key, &c, &mac, (42, 3), READ, now),
            Err(TokenError::WrongMode("read"))
        );
        assert!(matches!(
            verify(key, &c, &mac, (42, 3), WRITE, 2_000_000),
            Err(TokenError::Expired { .. })
        ));
        assert_eq!(
            verify(|_| None, &c, &mac, (42, 3), WRITE, now),
            Err(TokenError::UnknownKey(7))
        );
        let mut forever = c.clone();
        forever.expires_ms = u64::MAX;
        let m = sign(&secret, &forever);
        assert_eq!(
            verify(key, &forever, &m, (42, 3), WRITE, now),
            Err(TokenError::TooLong)
        );
    }
}
