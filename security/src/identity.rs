//! Who sent a request, and the checks every service makes with it.
//!
//! Invariants: a request's identity comes only from its connection's TLS handshake (the
//! [`Peer`] extension the transport attaches), never from anything the request says;
//! [`authenticate`] refuses anonymous and unrecognised callers before any handler runs; in
//! plaintext mode (an explicit opt-out) every caller has every right.
use crate::principal::{Principal, Role};
use tonic::{Request, Status};

/// Who is on the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The server runs without TLS: no one is authenticated and everyone may do everything.
    Plaintext,
    /// A TLS client that presented no certificate.
    Anonymous,
    /// A certificate from the cluster CA that names no principal (why).
    Unrecognized(String),
    /// An authenticated principal.
    Principal(Principal),
}

/// One connection's far end: its address and identity.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The remote address.
    pub remote: Option<std::net::SocketAddr>,
    /// Who it is.
    pub identity: Identity,
}

/// The caller of a request, once authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller<'a> {
    /// Plaintext mode: trusted with everything.
    Trusted,
    /// An authenticated principal.
    Is(&'a Principal),
}

impl Caller<'_> {
    /// The principal, if authenticated.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::Trusted => None,
            Caller::Is(p) => Some(p),
        }
    }

    /// Ok if the caller has one of `roles` (or everything is trusted); else PERMISSION_DENIED
    /// naming `what` was refused.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), Status> {
        match self {
            Caller::Trusted => Ok(()),
            Caller::Is(p) if roles.contains(&p.role) => Ok(()),
            Caller::Is(p) => Err(Status::permission_denied(format!(
                "{p} may not {what} (needs {})",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))),
        }
    }

    /// Ok for admins (or trusted callers).
    pub fn require_admin(&self, what: &str) -> Result<(), Status> {
        self.require(&[Role::Admin], what)
    }
}

fn from_peer<'a>(peer: Option<&'a Peer>) -> Result<Caller<'a>, Status> {
    match peer.map(|p| &p.identity) {
        Some(Identity::Plaintext) => Ok(Caller::Trusted),
        Some(Identity::Principal(p)) => Ok(Caller::Is(p)),
        Some(Identity::Anonymous) => Err(Status::unauthenticated(
            "this cluster requires a client certificate from its CA (see `shale admin issue`)",
        )),
        Some(Identity::Unrecognized(why)) => Err(Status::unauthenticated(format!(
            "the client certificate names no Shale principal: {why}"
        ))),
        None => Err(Status::unauthenticated("the connection has no identity")),
    }
}

/// The authenticated caller of `req`, or UNAUTHENTICATED.
pub fn caller<T>(req: &Request<T>) -> Result<Caller<'_>, Status> {
    from_peer(req.extensions().get::<Peer>())
}

/// A tonic interceptor: refuses every request from a caller that is not authenticated.
pub fn authenticate(req: Request<()>) -> Result<Request<()>, Status> {
    caller(&req)?;
    Ok(req)
}

/// Whom a TLS client without a certificate is taken for by services where each call carries
/// its own proof (chunk tokens): a user with a name no certificate can have.
pub fn anonymous() -> &'static Principal {
    static ANON: std::sync::OnceLock<Principal> = std::sync::OnceLock::new();
    ANON.get_or_init(|| Principal {
        role: Role::User,
        name: ANONYMOUS_NAME.into(),
    })
}

/// The name of [`anonymous`] (not a valid principal name: no certificate can claim it).
pub const ANONYMOUS_NAME: &str = "(anonymous)";

/// [`caller`] for services where each call carries its own proof: a TLS client without a
/// certificate is [`anonymous`] instead of refused.
pub fn caller_or_anonymous<T>(req: &Request<T>) -> Result<Caller<'_>, Status> {
    peer_or_anonymous(req.extensions().get::<Peer>())
}

/// [`caller_or_anonymous`] for a connection served outside gRPC (the chunkservers' data
/// port), from its [`Peer`].
pub fn peer_or_anonymous(peer: Option<&Peer>) -> Result<Caller<'_>, Status> {
    match peer.map(|p| &p.identity) {
        Some(Identity::Anonymous) => Ok(Caller::Is(anonymous())),
        _ => from_peer(peer),
    }
}

/// A tonic interceptor for such services: refuses strangers (certificates naming no
/// principal, connections without an identity) but lets TLS clients without a certificate in.
pub fn authenticate_or_anonymous(req: Request<()>) -> Result<Request<()>, Status> {
    caller_or_anonymous(&req)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(identity: Identity) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut().insert(Peer {
            remote: None,
            identity,
        });
        r
    }

    #[test]
    fn only_authenticated_callers_pass() {
        let alice = Principal::new(Role::User, "alice").unwrap();
        let admin = Principal::new(Role::Admin, "root").unwrap();
        assert!(authenticate(req(Identity::Plaintext)).is_ok());
        assert!(authenticate(req(Identity::Principal(alice.clone()))).is_ok());
        for bad in [Identity::Anonymous, Identity::Unrecognized("x".into())] {
            let e = authenticate(req(bad)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
        }
        assert_eq!(
            authenticate(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let r = req(Identity::Principal(alice));
        let e = caller(&r).unwrap().require_admin("drain").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("user alice may not drain"), "{e}");
        let r = req(Identity::Principal(admin));
        assert!(caller(&r).unwrap().require_admin("drain").is_ok());
        let r = req(Identity::Plaintext);
        assert!(caller(&r).unwrap().require_admin("drain").is_ok());
    }
}
