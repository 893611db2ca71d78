//! User tokens, for clients that cannot hold a certificate (like HDFS delegation tokens): an
//! admin has the masters sign "this is user NAME (role) until T"; the client connects over
//! TLS without a certificate (it still verifies the servers against the cluster CA) and sends
//! the token as `authorization: Bearer …` with every master request. Chunkservers need no
//! user token: the chunk tokens the masters hand out are what they check.
//!
//! A token is `shale1.` + base64url(payload) + `.` + base64url(HMAC-SHA256(payload)). The
//! payload is canonical bytes: a domain tag, the key id, issue and expiry times, the role and
//! the name (length first). The key is the masters' user-token key (in the Raft state;
//! replacing it revokes every token signed with the old one).
//!
//! Invariants: [`verify`] accepts exactly what [`sign`] signed with a key it is given (MAC
//! compared in constant time, before anything in the payload is believed); an expired token,
//! one claiming a lifetime over [`LIFETIME_MAX_MS`], a server role, or a name that is not a
//! principal name is refused with a reason; decoding is bounded ([`TOKEN_MAX_BYTES`]).
use crate::principal::{Principal, Role};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

/// The longest lifetime a user token may have.
pub const LIFETIME_MAX_MS: u64 = 90 * 24 * 3600 * 1000;
/// The longest token accepted (longer ones are refused unread).
pub const TOKEN_MAX_BYTES: usize = 512;
const PREFIX: &str = "shale1.";
const TAG: &[u8] = b"shale user token v1\0";

/// What a user token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserClaims {
    /// The signing key's id.
    pub key_id: u64,
    /// Unix time (ms) it was issued at.
    pub issued_ms: u64,
    /// Unix time (ms) it expires at.
    pub expires_ms: u64,
    /// Who it names: a user or an admin (never a server).
    pub principal: Principal,
}

fn payload(c: &UserClaims) -> Vec<u8> {
    let name = c.principal.name.as_bytes();
    let mut b = Vec::with_capacity(TAG.len() + 26 + name.len());
    b.extend_from_slice(TAG);
    for v in [c.key_id, c.issued_ms, c.expires_ms] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.push(match c.principal.role {
        Role::Admin => 1,
        _ => 0,
    });
    b.push(name.len() as u8);
    b.extend_from_slice(name);
    b
}

fn parse(b: &[u8]) -> Result<UserClaims, String> {
    let rest = b.strip_prefix(TAG).ok_or("not a Shale user token")?;
    if rest.len() < 26 {
        return Err("the token is cut short".into());
    }
    let u64_at = |i: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&rest[i..i + 8]);
        u64::from_le_bytes(x)
    };
    let role = match rest[24] {
        0 => Role::User,
        1 => Role::Admin,
        r => return Err(format!("unknown role {r}")),
    };
    let n = usize::from(rest[25]);
    let name = rest.get(26..26 + n).ok_or("the token is cut short")?;
    if rest.len() != 26 + n {
        return Err("bytes after the token's name".into());
    }
    let name = std::str::from_utf8(name).map_err(|_| "the name is not UTF-8")?;
    Ok(UserClaims {
        key_id: u64_at(0),
        issued_ms: u64_at(8),
        expires_ms: u64_at(16),
        principal: Principal::new(role, name)?,
    })
}

/// The token for `claims`, signed with `secret`.
pub fn sign(secret: &[u8], claims: &UserClaims) -> Result<String, String> {
    if !matches!(claims.principal.role, Role::User | Role::Admin) {
        return Err("user tokens name users or admins only".into());
    }
    let p = payload(claims);
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &p);
    Ok(format!(
        "{PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(&p),
        URL_SAFE_NO_PAD.encode(mac.as_ref())
    ))
}

/// The key id a token claims to be signed with (unverified: only to pick the key).
pub fn key_id(token: &str) -> Result<u64, String> {
    let (p, _) = split(token)?;
    parse(&p).map(|c| c.key_id)
}

fn split(token: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    if token.len() > TOKEN_MAX_BYTES {
        return Err(format!("a user token is at most {TOKEN_MAX_BYTES} bytes"));
    }
    let body = token
        .strip_prefix(PREFIX)
        .ok_or("not a Shale user token (shale1.…)")?;
    let (p, mac) = body.split_once('.').ok_or("a user token has two parts")?;
    let dec = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| format!("bad token encoding: {e}"))
    };
    Ok((dec(p)?, dec(mac)?))
}

/// The claims of `token` if `secret` signed it and it is valid at `now_ms`.
pub fn verify(secret: &[u8], token: &str, now_ms: u64) -> Result<UserClaims, String> {
    let (p, mac) = split(token)?;
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret), &p, &mac)
        .map_err(|_| "the user token's signature is not valid (forged, or revoked)")?;
    let c = parse(&p)?;
    if c.expires_ms <= now_ms {
        return Err(format!(
            "the user token expired {} s ago",
            (now_ms - c.expires_ms) / 1000
        ));
    }
    if c.expires_ms.saturating_sub(c.issued_ms) > LIFETIME_MAX_MS {
        return Err("the user token claims too long a lifetime".into());
    }
    Ok(c)
}

/// The metadata key a user token travels in.
pub const HEADER: &str = "authorization";

/// A client-side tonic interceptor: adds `authorization: Bearer TOKEN` to every request when
/// there is a token.
#[derive(Clone, Debug, Default)]
pub struct Attach(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Attach {
    /// An interceptor showing `token` (None: adds nothing). A token that cannot be a header
    /// value is refused here rather than at every call.
    pub fn new(token: Option<&str>) -> Result<Attach, String> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| "a user token must be printable ASCII".to_string())
            })
            .transpose()
            .map(Attach)
    }
}

impl tonic::service::Interceptor for Attach {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(HEADER, v.clone());
        }
        Ok(req)
    }
}

/// The server side: a TLS caller without a certificate that shows a valid user token becomes
/// the principal the token names; `secret_of(key id)` gives the masters' key. A caller with a
/// certificate is who its certificate says (any token it sends is ignored). Then the request
/// must be authenticated ([`crate::authenticate`]): a missing, forged, expired or revoked
/// token is UNAUTHENTICATED, with the reason.
pub fn admit(
    mut req: tonic::Request<()>,
    secret_of: impl Fn(u64) -> Option<Vec<u8>>,
    now_ms: u64,
) -> Result<tonic::Request<()>, tonic::Status> {
    use crate::identity::{Identity, Peer};
    let anonymous = matches!(
        req.extensions().get::<Peer>().map(|p| &p.identity),
        Some(Identity::Anonymous)
    );
    if anonymous {
        if let Some(v) = req.metadata().get(HEADER) {
            let bad = |why: String| tonic::Status::unauthenticated(format!("user token: {why}"));
            let t = v
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| bad("expected `authorization: Bearer TOKEN`".into()))?;
            let id = key_id(t).map_err(bad)?;
            let secret = secret_of(id).ok_or_else(|| {
                bad("signed with a key the masters no longer have (revoked)".into())
            })?;
            let claims = verify(&secret, t, now_ms).map_err(bad)?;
            if let Some(p) = req.extensions_mut().get_mut::<Peer>() {
                p.identity = Identity::Principal(claims.principal);
            }
        }
    }
    crate::authenticate(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Role, name: &str) -> UserClaims {
        UserClaims {
            key_id: 7,
            issued_ms: 1_000,
            expires_ms: 100_000,
            principal: Principal::new(role, name).unwrap(),
        }
    }

    #[test]
    fn signed_tokens_verify_and_nothing_else_does() {
        let k = b"0123456789abcdef0123456789abcdef";
        let c = claims(Role::User, "alice");
        let t = sign(k, &c).unwrap();
        assert_eq!(verify(k, &t, 50_000), Ok(c.clone()));
        assert_eq!(key_id(&t), Ok(7));
        assert!(verify(b"another key", &t, 50_000).is_err());
        assert!(verify(k, &t, 100_000).unwrap_err().contains("expired"));
        // Any change to the payload breaks the MAC: swap in another user's payload.
        let bob = sign(b"x", &claims(Role::User, "bob")).unwrap();
        let forged = format!(
            "{}.{}",
            bob.rsplit_once('.').unwrap().0,
            t.rsplit_once('.').unwrap().1
        );
        assert!(verify(k, &forged, 50_000).is_err());
        let admin = sign(k, &claims(Role::Admin, "root")).unwrap();
        assert_eq!(verify(k, &admin, 1).unwrap().principal.role, Role::Admin);
        assert!(sign(k, &claims(Role::Master, "1")).is_err());
        let long = UserClaims {
            expires_ms: LIFETIME_MAX_MS + 10_000,
            ..c
        };
        let t = sign(k, &long).unwrap();
        assert!(verify(k, &t, 50_000).unwrap_err().contains("lifetime"));
        for junk in [
            "",
            "shale1.",
            "shale1.a.b",
            "shale1.!!.??",
            &"x".repeat(600),
        ] {
            assert!(verify(k, junk, 1).is_err(), "{junk}");
        }
    }

    fn anonymous_request(token: Option<&str>) -> tonic::Request<()> {
        use crate::identity::{Identity, Peer};
        let mut r = tonic::Request::new(());
        r.extensions_mut().insert(Peer {
            remote: None,
            identity: Identity::Anonymous,
        });
        let mut attach = Attach::new(token).unwrap();
        tonic::service::Interceptor::call(&mut attach, r).unwrap()
    }

    #[test]
    fn admit_turns_a_valid_token_into_its_principal() {
        let k = b"0123456789abcdef0123456789abcdef".to_vec();
        let keys = |id: u64| (id == 7).then(|| k.clone());
        let t = sign(&k, &claims(Role::User, "alice")).unwrap();
        let r = admit(anonymous_request(Some(&t)), keys, 50_000).expect("admitted");
        let who = crate::caller(&r).unwrap().principal().cloned().unwrap();
        assert_eq!(who.name, "alice");
        // No token, a revoked key, an expired token: UNAUTHENTICATED.
        let e = admit(anonymous_request(None), keys, 50_000).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let e = admit(anonymous_request(Some(&t)), |_| None, 50_000).unwrap_err();
        assert!(e.message().contains("revoked"), "{e:?}");
        let e = admit(anonymous_request(Some(&t)), keys, 200_000).unwrap_err();
        assert!(e.message().contains("expired"), "{e:?}");
    }
}
