//! `shale s3`: an S3-compatible endpoint (the `s3s` crate) in front of the cluster.
//!
//! The mapping (documented for users in README.md):
//! * a bucket is a top-level directory; an object is the file at `/<bucket>/<key>`, with the
//!   key's `/`-separated parts as directories (made on the way, removed again when a delete
//!   leaves them empty); keys no file system can hold (`a//b`, `..`) are refused;
//! * a PUT is a write-once file: visible whole, atomically, when its body ends (a failed
//!   upload leaves nothing); CopyObject is the cluster's server-side copy; multipart parts are
//!   staged under `/.shale/s3/uploads/<id>/` and concatenated into one new file at completion;
//! * ETags come from the file's content digest (see `names.rs`), not MD5; object metadata
//!   (Content-Type, `x-amz-meta-*`) is not stored;
//! * requests are signed (SigV4) with keys kept in the cluster under `/.shale/s3/keys` (one file
//!   per key, superusers only); each request runs as the key's user, through a client showing
//!   a user token the gateway obtains for it, so the cluster's owners and modes apply.
//!
//! The gateway is a client: it uses the public `shale-client` API only.
mod keys;
mod list;
mod names;
mod ops;

pub use keys::{create_key, ensure_dirs, Keys};
pub use names::{is_access_key, KEYS_DIR, UPLOADS_DIR};

use hyper_util::rt::{TokioExecutor, TokioIo};
use shale_client::{Client, ClientConfig, Tls, TlsFiles, Transport};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a user token the gateway obtains for a user lives, and when it is renewed.
const USER_TOKEN_MS: u64 = 24 * 3600 * 1000;
const USER_CLIENT_RENEW: Duration = Duration::from_secs(12 * 3600);

/// The gateway: its own client (a superuser: it reads the key files and obtains user tokens)
/// and one client per user it acts for.
pub struct Gateway {
    admin: Client,
    me: String,
    masters: Vec<String>,
    keys: Keys,
    users: Mutex<HashMap<String, (Client, Instant)>>,
}

impl Gateway {
    /// A gateway over `admin`, a client of the cluster at `masters` whose identity is a
    /// superuser (on a plaintext cluster everyone is).
    pub async fn new(admin: Client, masters: Vec<String>) -> Result<Arc<Gateway>, String> {
        let who = admin
            .who_am_i()
            .await
            .map_err(|e| format!("cannot ask the cluster who the gateway is: {e}"))?;
        if !who.superuser {
            return Err(format!(
                "the gateway runs as {:?}, which is not a superuser: it must read the key files \
                 and act for other users (run it with an admin certificate or token)",
                who.user
            ));
        }
        ensure_dirs(&admin).await.map_err(|e| e.to_string())?;
        Ok(Arc::new(Gateway {
            keys: Keys::new(admin.clone()),
            admin,
            me: who.user,
            masters,
            users: Mutex::new(HashMap::new()),
        }))
    }

    /// The cluster identity the gateway runs as.
    pub fn user(&self) -> &str {
        &self.me
    }

    /// The access keys (for SigV4).
    pub fn keys(&self) -> Keys {
        self.keys.clone()
    }

    /// A client acting as `user`.
    async fn client_for(&self, user: &str) -> Result<Client, shale_client::ClientError> {
        let transport = self.admin.config().transport.clone();
        if user == self.me || !transport.is_tls() {
            return Ok(self.admin.clone());
        }
        if let Some((c, at)) = self
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
        {
            if at.elapsed() < USER_CLIENT_RENEW {
                return Ok(c.clone());
            }
        }
        let token = self
            .admin
            .issue_user_token(user, false, USER_TOKEN_MS)
            .await?
            .token;
        let ca = transport
            .tls_config()
            .map(|t| t.files().ca.clone())
            .ok_or_else(|| shale_client::ClientError::Other("no TLS".into()))?;
        let tls = Tls::load(TlsFiles {
            ca,
            cert: None,
            key: None,
        })
        .map_err(|e| shale_client::ClientError::Other(format!("loading the cluster CA: {e}")))?;
        let config = ClientConfig {
            transport: Transport::tls_with_token(tls, &token),
            ..self.admin.config().clone()
        };
        let c = Client::connect(&self.masters, config).await?;
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.to_string(), (c.clone(), Instant::now()));
        Ok(c)
    }
}

/// Serves the S3 API on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    stop: impl std::future::Future<Output = ()>,
) {
    let service = {
        let mut b = s3s::service::S3ServiceBuilder::new(ops::S3Gateway(gateway.clone()));
        b.set_auth(gateway.keys());
        b.build()
    };
    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(stop);
    loop {
        let socket = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => return,
        };
        let _ = socket.set_nodelay(true);
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("S3 connection: {e}");
            }
        });
    }
}
