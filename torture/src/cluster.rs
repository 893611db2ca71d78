//! The cluster under test: 3 masters and `chunkservers` chunkservers from the real `shale`
//! binary, each on its own host (see [`net`](crate::net)), with its data in the run's folder and
//! its standard error appended to `logs/NAME.log` across restarts.
//!
//! Invariant: a server's process is either running or was stopped by the harness (`kill`);
//! [`Cluster::crashed`] reports any other exit (a crash the nemesis did not cause), and
//! [`Cluster::panics`] every panic or abort written to a log.
use crate::net::Net;
use shale_security::{Principal, Role as SecRole};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// What a server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master(u64),
    Chunkserver(usize),
}

/// One server.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    pub role: Role,
    pub host: usize,
    /// Its gRPC address.
    pub addr: String,
    pub data: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// SIGSTOPped by the harness.
    pub stopped: bool,
}

/// The servers and their hosts. Dropping it kills every server, then removes the hosts.
pub struct Cluster {
    pub servers: Vec<Server>,
    pub net: Net,
    shale: PathBuf,
    pub dir: PathBuf,
    /// Chunkservers whose data lives on a small file system of its own (a tmpfs the harness
    /// mounted), so that the nemesis can fill it: (server index, mount point).
    pub small_disks: Vec<(usize, PathBuf)>,
    /// The cluster's TLS folder (its own CA; every server runs mutual TLS).
    pub tls: PathBuf,
}

/// The admin user the harness's clients run as.
pub const ADMIN: &str = "torture";

/// Size of the small file system one chunkserver gets (namespaces mode: root can mount).
const SMALL_DISK: &str = "size=192m";

/// A free TCP port on 127.0.0.1 (for the loopback fallback).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl Cluster {
    /// Starts the cluster and waits until each server printed its listening line.
    pub fn start(
        shale: &Path,
        dir: &Path,
        chunkservers: usize,
        seed: u64,
        master_extra: &[String],
    ) -> Result<Cluster, String> {
        let net = Net::new(3 + chunkservers, seed);
        let addr = |h: usize, port: u16| {
            if net.partitions() {
                format!("{}:{port}", net.hosts[h].ip)
            } else {
                format!("127.0.0.1:{}", free_port())
            }
        };
        let masters: Vec<String> = (0..3).map(|h| addr(h, 7100)).collect();
        let peers = masters
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Vec::new();
        for (i, a) in masters.iter().enumerate() {
            let data = dir.join(format!("m{}", i + 1));
            let args = [
                "master",
                "--id",
                &(i + 1).to_string(),
                "--listen",
                a,
                "--peers",
                &peers,
                "--chunk-size-mib",
                "1",
                "--election-timeout-ms",
                "300",
                "--stale-after-ms",
                "2000",
                "--dead-after-ms",
                "6000",
                "--safe-mode-ms",
                "3000",
                "--heal-interval-ms",
                "500",
                "--snapshot-every",
                "2000",
                "--data",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([data.to_string_lossy().into_owned()])
            .chain(master_extra.iter().cloned())
            .collect();
            servers.push(Server {
                name: format!("master{}", i + 1),
                role: Role::Master(i as u64 + 1),
                host: i,
                addr: a.clone(),
                data,
                args,
                child: None,
                stopped: false,
            });
        }
        for c in 0..chunkservers {
            let h = 3 + c;
            let a = addr(h, 7200);
            let data = dir.join(format!("cs{}", c + 1));
            let args = [
                "--masters",
                &masters.join(","),
                "chunkserver",
                "--listen",
                &a,
                "--host",
                &format!("cs{}", c + 1),
                "--heartbeat-ms",
                "300",
                "--scrub-every-s",
                "5",
                "--scrub-mib-per-s",
                "256",
                "--stream-idle-s",
                "10",
                "--data",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([data.to_string_lossy().into_owned()])
            .collect();
            servers.push(Server {
                name: format!("cs{}", c + 1),
                role: Role::Chunkserver(c),
                host: h,
                addr: a,
                data,
                args,
                child: None,
                stopped: false,
            });
        }
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
        // A CA and a certificate per server, valid for every address a server may have.
        let tls = dir.join("tls");
        let mut principals = vec![Principal::new(SecRole::Admin, ADMIN)?];
        for s in &servers {
            principals.push(match s.role {
                Role::Master(id) => Principal::new(SecRole::Master, &id.to_string())?,
                Role::Chunkserver(_) => Principal::new(SecRole::Chunkserver, &s.name)?,
            });
        }
        let mut hosts: Vec<&str> = vec!["127.0.0.1", "localhost"];
        hosts.extend(net.hosts.iter().map(|h| h.ip.as_str()));
        shale_security::certs::provision(&tls, &principals, &hosts).map_err(|e| e.to_string())?;
        for s in &mut servers {
            s.args.push("--tls-dir".into());
            s.args.push(tls.to_string_lossy().into_owned());
        }
        let mut small_disks = Vec::new();
        if net.partitions() {
            // The last chunkserver's data on a small tmpfs (a full disk is a fault to inject).
            if let Some(i) = servers
                .iter()
                .rposition(|s| matches!(s.role, Role::Chunkserver(_)))
            {
                let d = servers[i].data.clone();
                std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
                let ok = std::process::Command::new("mount")
                    .args(["-t", "tmpfs", "-o", SMALL_DISK, "tmpfs"])
                    .arg(&d)
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    small_disks.push((i, d));
                }
            }
        }
        let mut c = Cluster {
            servers,
            net,
            shale: shale.to_path_buf(),
            dir: dir.to_path_buf(),
            small_disks,
            tls,
        };
        for i in 0..c.servers.len() {
            c.spawn(i)?;
        }
        Ok(c)
    }

    /// How the harness's clients connect: mutual TLS as the cluster's admin.
    pub fn transport(&self) -> Result<shale_security::Transport, String> {
        let p = Principal::new(SecRole::Admin, ADMIN)?;
        let tls = shale_security::Tls::load(shale_security::TlsFiles::of(&self.tls, &p))
            .map_err(|e| e.to_string())?;
        Ok(shale_security::Transport::tls(tls))
    }

    /// The masters' addresses.
    pub fn masters(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter(|s| matches!(s.role, Role::Master(_)))
            .map(|s| s.addr.clone())
            .collect()
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{}.log", self.servers[i].name))
    }

    /// Starts server `i` and waits (≤ 20 s) for its listening line.
    pub fn spawn(&mut self, i: usize) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .map_err(|e| e.to_string())?;
        let s = &self.servers[i];
        let mut cmd = self.net.command(s.host, &self.shale);
        cmd.args(&s.args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", s.name))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let name = s.name.clone();
        self.servers[i].child = Some(child);
        self.servers[i].stopped = false;
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("listening on") => Ok(()),
            Ok(line) => Err(format!("{name}: unexpected first line {line:?}")),
            Err(_) => Err(format!(
                "{name} did not start (see {})",
                self.log(i).display()
            )),
        }
    }

    /// `kill -9` of server `i` (continued first if stopped, so it dies at once).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.servers[i].stopped = false;
    }

    /// Whether server `i` runs (possibly stopped).
    pub fn running(&self, i: usize) -> bool {
        self.servers[i].child.is_some()
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(c) = &self.servers[i].child {
            // SAFETY: kill(2) on a child of this process.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// SIGSTOP server `i`.
    pub fn stop(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.servers[i].stopped = true;
    }

    /// SIGCONT server `i`.
    pub fn cont(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.servers[i].stopped = false;
    }

    /// Servers that exited without the harness killing them: (name, status).
    pub fn crashed(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for s in &mut self.servers {
            if let Some(c) = &mut s.child {
                if let Ok(Some(status)) = c.try_wait() {
                    out.push((s.name.clone(), status.to_string()));
                    s.child = None;
                }
            }
        }
        out
    }

    /// Lines of the servers' logs that tell of a panic or an abort.
    pub fn panics(&self) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..self.servers.len() {
            let Ok(text) = std::fs::read_to_string(self.log(i)) else {
                continue;
            };
            for l in text.lines() {
                if l.contains("panicked at")
                    || l.contains("fatal runtime error")
                    || l.contains("SIGBUS")
                {
                    out.push(format!("{}: {l}", self.servers[i].name));
                }
            }
        }
        out
    }

    /// The address of server `i`'s host.
    pub fn ip(&self, i: usize) -> String {
        self.net.hosts[self.servers[i].host].ip.clone()
    }

    /// The addresses of the masters other than server `i`.
    pub fn other_masters(&self, i: usize) -> Vec<String> {
        (0..self.servers.len())
            .filter(|&o| o != i && matches!(self.servers[o].role, Role::Master(_)))
            .map(|o| self.ip(o))
            .collect()
    }

    /// The chunk store directory of server `i`.
    pub fn chunk_dir(&self, i: usize) -> PathBuf {
        self.servers[i].data.join("chunks")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            if self.servers[i].stopped {
                self.cont(i);
            }
            self.kill(i);
        }
        for (_, d) in &self.small_disks {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(d)
                .status();
        }
    }
}
