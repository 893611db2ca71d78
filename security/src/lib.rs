//! Shale's security plumbing, shared by servers and clients (DESIGN.md §3 "Security"):
//! the cluster CA and certificates ([`certs`]), end-to-end digests ([`digest`]), principals named by certificates
//! ([`principal`]), rustls configurations that reload when their files change ([`tls`]),
//! connections for tonic in both directions ([`transport`]), the identity checks every
//! service makes ([`identity`]), chunk access tokens ([`token`]) and user tokens for clients
//! without certificates ([`bearer`]).
#![deny(missing_docs)]

pub mod bearer;
pub mod certs;
mod coalesce;
pub mod digest;
pub mod identity;
pub mod limits;
pub mod principal;
pub mod tls;
pub mod token;
pub mod transport;

pub use identity::{
    authenticate, authenticate_or_anonymous, caller, caller_or_anonymous, peer_or_anonymous,
    Caller, Identity, Peer,
};
pub use principal::{Principal, Role};
pub use tls::{Tls, TlsFiles};
pub use transport::Transport;

use std::path::{Path, PathBuf};

/// What can go wrong loading or making TLS material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A file holds something unusable.
    #[error("{0}: {1}")]
    Bad(PathBuf, String),
    /// A file that would be overwritten exists.
    #[error("{0} exists (refusing to overwrite it)")]
    Exists(PathBuf),
    /// Making a certificate failed.
    #[error("certificate: {0}")]
    Cert(String),
    /// rustls refused a configuration.
    #[error("TLS: {0}")]
    Tls(String),
}

impl Error {
    fn io(p: &Path, e: std::io::Error) -> Error {
        Error::Io(p.to_path_buf(), e)
    }
    fn cert(e: rcgen::Error) -> Error {
        Error::Cert(e.to_string())
    }
    fn tls(e: rustls::Error) -> Error {
        Error::Tls(e.to_string())
    }
}
