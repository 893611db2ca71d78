//! S3 access keys, kept in the cluster: `/.shale/s3/keys/<ACCESS-KEY>` holds `USER SECRET`,
//! mode 0600, owned by the superuser that made it. The gateway reads a key on first use and
//! keeps it for [`KEY_TTL`], so a deleted key stops working within that time.
use super::names::{is_access_key, key_file, new_key_pair, parse_key_file, KEYS_DIR, UPLOADS_DIR};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};
use shale_client::{Client, ClientError, CreateOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the gateway trusts a key it read.
pub const KEY_TTL: Duration = Duration::from_secs(30);

/// Makes the gateway's directories if missing: the key folder (0700) and the upload staging
/// folder (1777).
pub async fn ensure_dirs(c: &Client) -> Result<(), ClientError> {
    for (dir, mode) in [("/.shale", 0o755), ("/.shale/s3", 0o755), (KEYS_DIR, 0o700)] {
        match c.mkdir_mode(dir, false, Some(mode)).await {
            Ok(_) | Err(ClientError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    match c.mkdir_mode(UPLOADS_DIR, false, Some(0o1777)).await {
        Ok(_) => {
            // The mode given at mkdir is masked like any other; make sure of the sticky bit.
            c.chmod(UPLOADS_DIR, 0o1777).await?;
        }
        Err(ClientError::AlreadyExists(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Makes a new key pair for `user` in the cluster (superusers only); returns (key, secret).
pub async fn create_key(c: &Client, user: &str) -> Result<(String, String), ClientError> {
    if user.is_empty() || user.chars().any(char::is_whitespace) {
        return Err(ClientError::InvalidArgument(format!(
            "{user:?} is not a user name"
        )));
    }
    ensure_dirs(c).await?;
    let (key, secret) = new_key_pair().map_err(ClientError::Io)?;
    let mut w = c
        .create(
            &format!("{KEYS_DIR}/{key}"),
            CreateOptions::default().mode(0o600),
        )
        .await?;
    w.write_all(key_file(user, &secret).as_bytes()).await?;
    w.close().await?;
    Ok((key, secret))
}

/// access key → (user, secret, when read).
type Cache = HashMap<String, (String, String, Instant)>;

/// The keys as the gateway knows them (shared by its clones).
#[derive(Clone)]
pub struct Keys {
    client: Client,
    cache: Arc<Mutex<Cache>>,
}

impl Keys {
    pub fn new(client: Client) -> Keys {
        Keys {
            client,
            cache: Default::default(),
        }
    }

    /// (user, secret) of access key `key`, or None if there is no such key.
    pub async fn lookup(&self, key: &str) -> Result<Option<(String, String)>, ClientError> {
        if !is_access_key(key) {
            return Ok(None);
        }
        if let Some((u, s, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            if at.elapsed() < KEY_TTL {
                return Ok(Some((u.clone(), s.clone())));
            }
        }
        let mut r = match self.client.open(&format!("{KEYS_DIR}/{key}")).await {
            Ok(r) => r,
            Err(ClientError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if r.len() > 4096 {
            return Ok(None);
        }
        let mut text = String::new();
        r.read_to_string(&mut text).await?;
        let Some((user, secret)) = parse_key_file(&text) else {
            tracing::warn!(key, "malformed key file");
            return Ok(None);
        };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            key.to_string(),
            (user.clone(), secret.clone(), Instant::now()),
        );
        Ok(Some((user, secret)))
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.lookup(access_key).await {
            Ok(Some((_, secret))) => Ok(SecretKey::from(secret)),
            Ok(None) => Err(s3_error!(InvalidAccessKeyId)),
            Err(e) => {
                tracing::warn!("reading access key {access_key}: {e}");
                Err(s3_error!(
                    ServiceUnavailable,
                    "cannot read the access keys now"
                ))
            }
        }
    }
}
