//! TLS for the benchmarks' local clusters: a CA and certificates in the run's folder, so the
//! same run can measure the cluster with mutual TLS and in plaintext (`tls: true/false`).
use shale_client::{Principal, Role, Tls, TlsFiles, Transport};
use std::path::{Path, PathBuf};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The TLS folder under `dir`, with a CA and certificates for 3 masters, the chunkservers
/// `hosts` and a `bench` admin.
pub fn provision(dir: &Path, chunkservers: &[String]) -> Result<PathBuf, BoxError> {
    let tls = dir.join("tls");
    let mut ps = vec![Principal::new(Role::Admin, "bench")?];
    for id in 1..=3 {
        ps.push(Principal::new(Role::Master, &id.to_string())?);
    }
    for h in chunkservers {
        ps.push(Principal::new(Role::Chunkserver, h)?);
    }
    shale_security::certs::provision(&tls, &ps, &["127.0.0.1", "localhost"])?;
    Ok(tls)
}

/// A server's transport: TLS as `role name` from `dir`, or plaintext without one.
pub fn server(dir: Option<&Path>, role: Role, name: &str) -> Result<Transport, BoxError> {
    let Some(dir) = dir else {
        return Ok(Transport::plaintext());
    };
    let p = Principal::new(role, name)?;
    Ok(Transport::tls(Tls::load(TlsFiles::of(dir, &p))?))
}

/// The benchmark client's transport: TLS as the `bench` admin, or plaintext.
pub fn client(dir: Option<&Path>) -> Result<Transport, BoxError> {
    server(dir, Role::Admin, "bench")
}
