//! TLS for the `shale` binary: where every command finds its certificates, the local
//! commands that make them (`shale admin init-ca`, `shale admin issue`), and what `shale up`
//! provisions on first start.
//!
//! Secure by default: a server or CLI command with no TLS material and no `--insecure` refuses
//! to run and says where it looked.
use shale_security::certs::{self, IssueOptions};
use shale_security::{Principal, Role, Tls, TlsFiles, Transport};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The TLS folder inside a `shale up` data folder.
pub const UP_TLS_DIR: &str = "tls";
/// The user `shale up` issues a certificate for (an admin).
pub const UP_ADMIN: &str = "admin";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Folder with the cluster CA certificate (`ca.pem`) and this party's certificate and key.
    /// Default: `./shale-data/tls` (what `shale up` makes), then `~/.config/shale/tls`.
    #[arg(long, global = true, env = "SHALE_TLS_DIR", value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// The CLI's identity: the certificate NAME.pem / NAME.key in the TLS folder. Default: the
    /// only user certificate there, else `admin`.
    #[arg(long, global = true, env = "SHALE_USER", value_name = "NAME")]
    pub user: Option<String>,
    /// Act as the user a token names (`shale admin token issue`), without a certificate: only
    /// the CA certificate (`ca.pem` in the TLS folder) is needed.
    #[arg(
        long,
        global = true,
        env = "SHALE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Plaintext: no encryption and no authentication, so anyone who reaches a port can do
    /// anything. For development on a trusted machine only.
    #[arg(long, global = true)]
    pub insecure: bool,
}

impl TlsArgs {
    /// The TLS folder: the one given, else the first default that has a CA certificate.
    pub fn dir(&self) -> Result<PathBuf, String> {
        if let Some(d) = &self.tls_dir {
            return Ok(d.clone());
        }
        let mut tried = vec![PathBuf::from("./shale-data").join(UP_TLS_DIR)];
        if let Some(home) = std::env::var_os("HOME") {
            tried.push(PathBuf::from(home).join(".config/shale/tls"));
        }
        tried
            .iter()
            .find(|d| d.join(certs::CA_CERT).exists())
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no TLS certificates found (looked in {}). Run from the folder where \
                     `shale up` runs, give --tls-dir DIR (see `shale admin init-ca` and \
                     `shale admin issue`), or --insecure for a plaintext development cluster",
                    tried
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// How the CLI connects.
    pub fn client(&self) -> Result<Transport, String> {
        if self.insecure {
            return Ok(Transport::plaintext());
        }
        let dir = self.dir()?;
        if let Some(token) = &self.token {
            let tls = Tls::load(TlsFiles {
                ca: dir.join(certs::CA_CERT),
                cert: None,
                key: None,
            })
            .map_err(|e| e.to_string())?;
            return Ok(Transport::tls_with_token(tls, token.trim()));
        }
        let stem = match &self.user {
            Some(u) => u.clone(),
            None => default_user(&dir),
        };
        let files = TlsFiles::stem(&dir, &stem);
        let tls = Tls::load(files).map_err(|e| {
            format!(
                "{e} (choose the certificate with --user NAME for NAME.pem in {})",
                dir.display()
            )
        })?;
        Ok(Transport::tls(tls))
    }

    /// How a server runs: as `principal`, with its certificate reloaded when the files change
    /// or on SIGHUP.
    pub fn server(&self, principal: &Principal) -> Result<Transport, String> {
        if self.insecure {
            tracing::warn!("running WITHOUT TLS: no encryption, no authentication (--insecure)");
            return Ok(Transport::plaintext());
        }
        let dir = self.dir()?;
        let files = TlsFiles::of(&dir, principal);
        let tls = Tls::load(files).map_err(|e| {
            format!(
                "{e}. Issue this server's certificate with `shale admin issue {} {} --host ...` \
                 (or run with --insecure for plaintext)",
                principal.role, principal.name
            )
        })?;
        tls.watch();
        Ok(Transport::tls(tls))
    }
}

/// The only user certificate in `dir`, else `admin`.
fn default_user(dir: &Path) -> String {
    let users: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let stem = name.strip_suffix(".pem")?.to_string();
            let server = stem.starts_with("master-") || stem.starts_with("chunkserver-");
            (!server && stem != "ca" && dir.join(format!("{stem}.key")).exists()).then_some(stem)
        })
        .collect();
    match users.as_slice() {
        [one] => one.clone(),
        _ => UP_ADMIN.to_string(),
    }
}

/// `shale admin init-ca`.
pub fn init_ca(dir: &Path) -> Result<(), String> {
    certs::init_ca(dir).map_err(|e| e.to_string())?;
    println!(
        "made a cluster CA in {}: ca.pem (give it to every server and client), ca.key (keep it \
         safe: it issues certificates)",
        dir.display()
    );
    Ok(())
}

/// `shale admin issue`.
pub fn issue(
    ca_dir: &Path,
    out: Option<&Path>,
    role: Role,
    name: &str,
    hosts: Vec<String>,
    days: u64,
    replace: bool,
) -> Result<(), String> {
    let p = Principal::new(role, name)?;
    if role.is_server() && hosts.is_empty() {
        return Err(format!(
            "a {role} certificate needs the names or addresses it serves under: --host IP_OR_NAME"
        ));
    }
    let opts = IssueOptions {
        hosts,
        not_after: SystemTime::now() + Duration::from_secs(days.max(1) * 86_400),
        replace,
        ..IssueOptions::default()
    };
    let out = out.unwrap_or(ca_dir);
    let (cert, key) = certs::issue(ca_dir, out, &p, &opts).map_err(|e| e.to_string())?;
    println!(
        "issued {p}: {} and {} (valid {days} days)",
        cert.display(),
        key.display()
    );
    Ok(())
}

/// What `shale up` needs under `data`: a CA, a certificate per server and one for the admin
/// user; what exists is kept. The TLS folder.
pub fn provision_local(
    data: &Path,
    masters: &[u64],
    chunkservers: &[String],
) -> Result<PathBuf, String> {
    let dir = data.join(UP_TLS_DIR);
    let mut principals = vec![Principal::new(Role::Admin, UP_ADMIN)?];
    for id in masters {
        principals.push(Principal::new(Role::Master, &id.to_string())?);
    }
    for name in chunkservers {
        principals.push(Principal::new(Role::Chunkserver, name)?);
    }
    certs::provision(&dir, &principals, &["127.0.0.1", "localhost"]).map_err(|e| e.to_string())?;
    Ok(dir)
}
