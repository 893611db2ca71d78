//! The cluster CA and the certificates it issues, as files in one folder:
//! `ca.pem` (the trust anchor every party loads), `ca.key` (kept by the operator; only
//! `issue` needs it) and `<stem>.pem` + `<stem>.key` per principal (see [`file_stem`]).
//!
//! Invariants: a private key is written with mode 0600 and is never overwritten by accident
//! (an existing file is refused unless `replace` is asked for); every file is written
//! through a temp name, synced and renamed, so a reloading server never reads half a file.
//! Server certificates (masters, chunkservers) carry both the server and client auth usages
//! (they call each other); user certificates only client auth, so no user can pose as a server.
use crate::principal::{Principal, Role};
use crate::Error;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The CA certificate (trust anchor) file name.
pub const CA_CERT: &str = "ca.pem";
/// The CA private key file name.
pub const CA_KEY: &str = "ca.key";
/// How long a new CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How long a certificate is valid unless asked otherwise.
pub const CERT_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
/// Certificates are valid from this long before they were issued (clocks differ).
const BACKDATE: Duration = Duration::from_secs(3600);

/// The file name (without extension) of a principal's certificate and key: the name for users
/// and admins, `master-ID` and `chunkserver-NAME` for servers.
pub fn file_stem(p: &Principal) -> String {
    match p.role {
        Role::User | Role::Admin => p.name.clone(),
        Role::Master | Role::Chunkserver => format!("{}-{}", p.role, p.name),
    }
}

/// The certificate and key files of `p` in `dir`.
pub fn files_of(dir: &Path, p: &Principal) -> (PathBuf, PathBuf) {
    let stem = file_stem(p);
    (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    )
}

/// Makes a new cluster CA in `dir` (created if missing). Refuses if `dir` already has one.
pub fn init_ca(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(Error::Exists(p.clone()));
        }
    }
    let mut params = CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::OrganizationName,
        crate::principal::ORGANISATION,
    );
    dn.push(rcgen::DnType::CommonName, "shale cluster CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + CA_VALIDITY).into();
    let key = KeyPair::generate().map_err(Error::cert)?;
    let cert = params.self_signed(&key).map_err(Error::cert)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true, false)?;
    write_file(&cert_path, cert.pem().as_bytes(), false, false)?;
    Ok(())
}

/// What a certificate is issued for besides its principal.
#[derive(Clone, Debug)]
pub struct IssueOptions {
    /// DNS names and IP addresses the holder serves under (servers; ignored for users).
    pub hosts: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Overwrite existing certificate and key files (certificate rotation).
    pub replace: bool,
}

impl Default for IssueOptions {
    fn default() -> Self {
        let now = SystemTime::now();
        IssueOptions {
            hosts: Vec::new(),
            not_before: now - BACKDATE,
            not_after: now + CERT_VALIDITY,
            replace: false,
        }
    }
}

/// Issues a certificate for `principal`, signed by the CA in `ca_dir`, written to `out_dir`
/// as `<stem>.pem` and `<stem>.key`. Returns the two paths.
pub fn issue(
    ca_dir: &Path,
    out_dir: &Path,
    principal: &Principal,
    opts: &IssueOptions,
) -> Result<(PathBuf, PathBuf), Error> {
    let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e));
    let ca_key = KeyPair::from_pem(&read(ca_dir.join(CA_KEY))?).map_err(Error::cert)?;
    let issuer =
        Issuer::from_ca_cert_pem(&read(ca_dir.join(CA_CERT))?, ca_key).map_err(Error::cert)?;
    let hosts = if principal.role.is_server() {
        opts.hosts.clone()
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(hosts).map_err(Error::cert)?;
    params.distinguished_name = principal.subject();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if principal.role.is_server() {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    params.use_authority_key_identifier_extension = true;
    params.not_before = opts.not_before.into();
    params.not_after = opts.not_after.into();
    let mut serial = [0u8; 16];
    ring_fill(&mut serial)?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let key = KeyPair::generate().map_err(Error::cert)?;
    let cert = params.signed_by(&key, &issuer).map_err(Error::cert)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let (cert_path, key_path) = files_of(out_dir, principal);
    if !opts.replace {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(Error::Exists(p.clone()));
            }
        }
    }
    // Key first: a server reloading between the two writes sees a mismatched pair, fails to
    // load it and keeps its old one until the next try.
    write_file(
        &key_path,
        key.serialize_pem().as_bytes(),
        true,
        opts.replace,
    )?;
    write_file(&cert_path, cert.pem().as_bytes(), false, opts.replace)?;
    Ok((cert_path, key_path))
}

/// A certificate made by [`provision`] is renewed when it has less than this left.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// When the (first) certificate in the PEM file at `path` stops being valid.
pub fn not_after(path: &Path) -> Result<SystemTime, Error> {
    let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let der = crate::tls::certs_from_pem(&pem, path)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der[0])
        .map_err(|e| Error::Bad(path.to_path_buf(), e.to_string()))?;
    let secs = cert.validity().not_after.timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// Makes sure `dir` has a CA and a certificate for each of `principals` (server ones valid for
/// `hosts`), making what is missing, renewing what expires within [`RENEW_BEFORE`] (running
/// servers pick the new files up) and keeping the rest: a local cluster's start (`shale up`,
/// tests, benchmarks).
pub fn provision(dir: &Path, principals: &[Principal], hosts: &[&str]) -> Result<(), Error> {
    if !dir.join(CA_CERT).exists() {
        init_ca(dir)?;
    }
    let mut opts = IssueOptions {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        ..IssueOptions::default()
    };
    let soon = SystemTime::now() + RENEW_BEFORE;
    for p in principals {
        let cert = files_of(dir, p).0;
        opts.replace = cert.exists();
        if !opts.replace || not_after(&cert).map_or(true, |t| t < soon) {
            issue(dir, dir, p, &opts)?;
        }
    }
    Ok(())
}

fn ring_fill(buf: &mut [u8]) -> Result<(), Error> {
    use rustls::crypto::ring::default_provider;
    default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| Error::Cert("no secure random numbers".into()))
}

/// Writes `bytes` to `path` durably (temp, sync, rename, sync dir); `secret` files get 0600.
fn write_file(path: &Path, bytes: &[u8], secret: bool, replace: bool) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    if !replace && path.exists() {
        return Err(Error::Exists(path.to_path_buf()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provision_renews_what_expires_soon() {
        let d = tempfile::tempdir().unwrap();
        let p = Principal::new(Role::Admin, "admin").unwrap();
        provision(d.path(), std::slice::from_ref(&p), &[]).unwrap();
        let (cert, _) = files_of(d.path(), &p);
        let first = std::fs::read(&cert).unwrap();
        // Kept while it has long to live.
        provision(d.path(), std::slice::from_ref(&p), &[]).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first);
        // One that expires in a day is renewed for a year.
        let now = SystemTime::now();
        let short = IssueOptions {
            not_after: now + Duration::from_secs(86_400),
            replace: true,
            ..IssueOptions::default()
        };
        issue(d.path(), d.path(), &p, &short).unwrap();
        assert!(not_after(&cert).unwrap() < now + Duration::from_secs(2 * 86_400));
        provision(d.path(), std::slice::from_ref(&p), &[]).unwrap();
        assert!(not_after(&cert).unwrap() > now + Duration::from_secs(300 * 86_400));
    }

    #[test]
    fn issued_certificates_name_their_principal() {
        let d = tempfile::tempdir().unwrap();
        init_ca(d.path()).unwrap();
        assert!(matches!(init_ca(d.path()), Err(Error::Exists(_))));
        for (role, name) in [
            (Role::User, "alice"),
            (Role::Admin, "admin"),
            (Role::Master, "2"),
            (Role::Chunkserver, "cs1"),
        ] {
            let p = Principal::new(role, name).unwrap();
            let opts = IssueOptions {
                hosts: vec!["127.0.0.1".into(), "localhost".into()],
                ..IssueOptions::default()
            };
            let (cert, key) = issue(d.path(), d.path(), &p, &opts).unwrap();
            let pem = std::fs::read(&cert).unwrap();
            let der = crate::tls::certs_from_pem(&pem, &cert).unwrap();
            assert_eq!(Principal::from_der(&der[0]).unwrap(), p);
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            // No accidental overwrite; an explicit one works.
            assert!(matches!(
                issue(d.path(), d.path(), &p, &opts),
                Err(Error::Exists(_))
            ));
            let again = IssueOptions {
                replace: true,
                ..opts
            };
            issue(d.path(), d.path(), &p, &again).unwrap();
        }
    }
}
