//! TLS material loaded from files and turned into rustls configurations, reloadable while
//! running (certificate rotation without downtime: new connections use the new files, open
//! ones keep theirs).
//!
//! Invariants:
//! * only TLS 1.3, AES-128-GCM preferred (AES-NI), ALPN `h2` (gRPC over HTTP/2);
//! * a server asks every client for a certificate and verifies any it gets against the
//!   cluster CA (wrong CA, expired: the handshake fails); a client that sends none is let in
//!   *anonymous* and every call it makes is refused as unauthenticated (a clear gRPC status
//!   rather than a bare TLS alert);
//! * a client verifies the server's certificate against the cluster CA and the address it
//!   dialled (IP or DNS name in the certificate);
//! * a failed reload keeps the configuration in use.
use crate::principal::Principal;
use crate::Error;
use rustls::client::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often [`Tls::watch`] looks at the files.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The files one party loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate(s): trust anchors (several during a CA rotation).
    pub ca: PathBuf,
    /// This party's certificate chain (`None`: an anonymous client).
    pub cert: Option<PathBuf>,
    /// This party's private key.
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// The files of `principal` in `dir` (as [`crate::certs::issue`] writes them).
    pub fn of(dir: &Path, principal: &Principal) -> TlsFiles {
        let (cert, key) = crate::certs::files_of(dir, principal);
        TlsFiles::named(dir, cert, key)
    }

    /// `dir/<stem>.pem` and `dir/<stem>.key`, with `dir/ca.pem`.
    pub fn stem(dir: &Path, stem: &str) -> TlsFiles {
        TlsFiles::named(
            dir,
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        )
    }

    fn named(dir: &Path, cert: PathBuf, key: PathBuf) -> TlsFiles {
        TlsFiles {
            ca: dir.join(crate::certs::CA_CERT),
            cert: Some(cert),
            key: Some(key),
        }
    }

    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.ca)
            .chain(self.cert.as_ref())
            .chain(self.key.as_ref())
    }
}

/// What the files were when loaded (modification time and length of each).
type Stamp = Vec<Option<(SystemTime, u64)>>;

struct Loaded {
    server: Option<Arc<ServerConfig>>,
    client: Arc<ClientConfig>,
    principal: Option<Principal>,
    stamp: Stamp,
}

/// One party's TLS: its identity and the configurations built from its files.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("principal", &self.principal())
            .finish()
    }
}

impl Tls {
    /// Loads `files`; errors name the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, Error> {
        let loaded = load(&files)?;
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(Arc::new(loaded)),
        }))
    }

    fn now(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The principal this party's certificate names (`None` for an anonymous client).
    pub fn principal(&self) -> Option<Principal> {
        self.now().principal.clone()
    }

    /// The files this was loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration for accepting connections (`None` for an anonymous client).
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        self.now().server.clone()
    }

    /// The configuration for making connections.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.now().client.clone()
    }

    /// Reloads the files if any changed; whether it did. On error the old configuration stays.
    pub fn reload_if_changed(&self) -> Result<bool, Error> {
        if stamp(&self.files) == self.now().stamp {
            return Ok(false);
        }
        self.reload()?;
        Ok(true)
    }

    /// Reloads the files.
    pub fn reload(&self) -> Result<(), Error> {
        let loaded = load(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// Reloads on SIGHUP and whenever the files change (checked every [`WATCH_INTERVAL`]),
    /// logging what happened, until the runtime stops.
    pub fn watch(self: &Arc<Self>) {
        let tls = Arc::downgrade(self);
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = signal(SignalKind::hangup()).ok();
            loop {
                let hupped = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let forced = tokio::select! {
                    _ = tokio::time::sleep(WATCH_INTERVAL) => false,
                    _ = hupped => true,
                };
                let Some(tls) = tls.upgrade() else { return };
                let r = if forced {
                    tls.reload().map(|_| true)
                } else {
                    tls.reload_if_changed()
                };
                match r {
                    Ok(true) => tracing::info!(
                        "TLS certificates reloaded from {}",
                        tls.files.ca.parent().unwrap_or(Path::new("")).display()
                    ),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!("TLS reload failed, keeping the old certificates: {e}")
                    }
                }
            }
        });
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    files
        .paths()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// The certificates in PEM `bytes` (read from `path`, for errors).
pub fn certs_from_pem(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Bad(path.to_path_buf(), e.to_string()))?;
    if certs.is_empty() {
        return Err(Error::Bad(
            path.to_path_buf(),
            "no certificate in it".into(),
        ));
    }
    Ok(certs)
}

/// The crypto this crate uses: ring, TLS 1.3 suites with AES-128-GCM first.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

fn load(files: &TlsFiles) -> Result<Loaded, Error> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p, e));
    let stamp_before = stamp(files);
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(&read(&files.ca)?, &files.ca)? {
        roots
            .add(c)
            .map_err(|e| Error::Bad(files.ca.clone(), e.to_string()))?;
    }
    let roots = Arc::new(roots);
    let provider = provider();
    let versions = &[&rustls::version::TLS13];
    let alpn = vec![b"h2".to_vec()];
    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(Error::tls)?
        .with_root_certificates(roots.clone());
    let (Some(cert_path), Some(key_path)) = (&files.cert, &files.key) else {
        let mut client = client.with_no_client_auth();
        client.alpn_protocols = alpn;
        return Ok(Loaded {
            server: None,
            client: Arc::new(client),
            principal: None,
            stamp: stamp_before,
        });
    };
    let chain = certs_from_pem(&read(cert_path)?, cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(&read(key_path)?)
        .map_err(|e| Error::Bad(key_path.clone(), e.to_string()))?;
    let principal = Principal::from_der(&chain[0]).map_err(|e| Error::Bad(cert_path.clone(), e))?;
    let mut client = client
        .with_client_auth_cert(chain.clone(), key.clone_key())
        .map_err(|e| Error::Bad(cert_path.clone(), e.to_string()))?;
    client.alpn_protocols = alpn.clone();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::Bad(files.ca.clone(), e.to_string()))?;
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(Error::tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| Error::Bad(cert_path.clone(), e.to_string()))?;
    server.alpn_protocols = alpn;
    Ok(Loaded {
        server: Some(Arc::new(server)),
        client: Arc::new(client),
        principal: Some(principal),
        stamp: stamp_before,
    })
}
