//! `shale up`: a whole local cluster — 3 masters and 3 chunkservers on 127.0.0.1, data in one
//! folder — as child processes of this one. Ctrl-C (or SIGTERM) stops them all cleanly; a rerun
//! reuses the data. A server that exits is reported and restarted after a back-off (1 s,
//! doubling while it keeps exiting within 10 s of starting, at most 32 s) while the rest keep
//! running, so failures and healing can be watched; one that fails five times in a row right at
//! start (a port in use, a bad data folder) stops the cluster with its error.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder for all the cluster's data.
    #[arg(long, default_value = "./shale-data")]
    pub data: PathBuf,
    /// Masters listen on this port and the next two.
    #[arg(long, default_value_t = 7101)]
    pub master_port: u16,
    /// Chunkservers listen on this port and the next two.
    #[arg(long, default_value_t = 7201)]
    pub chunkserver_port: u16,
    /// Default chunk size of new files, MiB.
    #[arg(long, default_value_t = 64)]
    pub chunk_size_mib: u64,
}

/// The masters a plain `shale up` starts: what every command talks to by default.
pub const DEFAULT_MASTERS: &str = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";

/// One server of the local cluster: how to start it, and the running process if any.
struct Kid {
    name: String,
    args: Vec<std::ffi::OsString>,
    child: Option<Child>,
    started: Instant,
    /// Exits in a row within [`SHORT_RUN`] of starting.
    quick_exits: u32,
    /// Whether it ever ran for [`SHORT_RUN`].
    ever_ran: bool,
    restart_at: Option<Instant>,
}

/// A run shorter than this counts as a quick exit (doubling the back-off).
const SHORT_RUN: Duration = Duration::from_secs(10);
/// A server that exits this many times in a row at start, never having run, stops `up`.
const START_FAILURES_MAX: u32 = 5;

impl Kid {
    fn spawn(
        exe: &std::path::Path,
        name: String,
        args: Vec<std::ffi::OsString>,
    ) -> std::io::Result<Kid> {
        let mut k = Kid {
            name,
            args,
            child: None,
            started: Instant::now(),
            quick_exits: 0,
            ever_ran: false,
            restart_at: None,
        };
        k.start(exe)?;
        Ok(k)
    }

    fn start(&mut self, exe: &std::path::Path) -> std::io::Result<()> {
        let child = Command::new(exe)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        self.started = Instant::now();
        self.restart_at = None;
        Ok(())
    }

    /// The back-off before restarting after `quick_exits` quick exits in a row.
    fn backoff(quick_exits: u32) -> Duration {
        Duration::from_secs(1 << quick_exits.min(5))
    }

    /// Notices an exit (scheduling a restart) or a due restart. An error stops the cluster.
    fn supervise(&mut self, exe: &std::path::Path) -> Result<(), String> {
        if let Some(c) = &mut self.child {
            let Ok(Some(status)) = c.try_wait() else {
                if !self.ever_ran && self.started.elapsed() >= SHORT_RUN {
                    self.ever_ran = true;
                }
                return Ok(());
            };
            self.child = None;
            let ran = self.started.elapsed();
            if ran < SHORT_RUN {
                self.quick_exits += 1;
            } else {
                self.ever_ran = true;
                self.quick_exits = 0;
            }
            if !self.ever_ran && self.quick_exits >= START_FAILURES_MAX {
                return Err(format!(
                    "{} exited {} times in a row right after starting ({status}; see its \
                     messages above); stopping the cluster",
                    self.name, self.quick_exits
                ));
            }
            let wait = Kid::backoff(self.quick_exits.saturating_sub(1));
            eprintln!(
                "{} exited ({status}) after {:.1?}; restarting it in {wait:?} (the cluster \
                 keeps running: see `shale status`)",
                self.name, ran
            );
            self.restart_at = Some(Instant::now() + wait);
            return Ok(());
        }
        if self.restart_at.is_some_and(|t| Instant::now() >= t) {
            match self.start(exe) {
                Ok(()) => eprintln!("{} restarted", self.name),
                Err(e) => {
                    eprintln!("{}: cannot restart it: {e}", self.name);
                    self.restart_at = Some(Instant::now() + Kid::backoff(5));
                }
            }
        }
        Ok(())
    }
}

/// The servers; all stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
struct Kids(Vec<Kid>);

impl Drop for Kids {
    fn drop(&mut self) {
        for k in &self.0 {
            if let Some(c) = &k.child {
                // SAFETY: signalling our own children.
                unsafe {
                    libc::kill(c.id() as i32, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for k in &mut self.0 {
            let Some(c) = &mut k.child else { continue };
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        eprintln!("{} did not stop in time; killing it", k.name);
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
    }
}

/// The file in the data folder that records the masters' first port: their addresses are in
/// the group's Raft membership, so a rerun must use the same ones.
const PORTS_FILE: &str = "master-port";

/// Records the master port on first start; refuses, with what to do, a rerun on other ports.
fn check_master_port(data: &std::path::Path, port: u16) -> Result<(), String> {
    let file = data.join(PORTS_FILE);
    match std::fs::read_to_string(&file) {
        Ok(s) => match s.trim().parse::<u16>() {
            Ok(recorded) if recorded == port => Ok(()),
            Ok(recorded) => Err(format!(
                "{} holds a cluster whose masters listen on 127.0.0.1:{recorded}-{}; their \
                 addresses are part of the group's membership, so its masters cannot move all at \
                 once. Rerun with --master-port {recorded}, or use another --data folder. (To move \
                 the masters of a running group one at a time: `shale admin \
                 set-master-address`.)",
                data.display(),
                recorded + 2
            )),
            Err(_) => Err(format!(
                "{} is damaged (expected a port number); delete it if the masters of this folder \
                 listen on {port}",
                file.display()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            shale_proto::durable::write_file(data, PORTS_FILE, format!("{port}\n").as_bytes())
                .map_err(|e| format!("{}: {e}", file.display()))
        }
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

/// Fails, naming the port and the flags that choose others, if a port the cluster needs on
/// 127.0.0.1 is taken (checked before anything starts or is printed).
fn check_ports_free(master_port: u16, chunkserver_port: u16) -> Result<(), String> {
    let ports = (0..3u16).flat_map(|i| {
        [
            (master_port.checked_add(i), "--master-port", master_port),
            (
                master_port.checked_add(10 + i),
                "--master-port",
                master_port,
            ),
            (
                chunkserver_port.checked_add(i),
                "--chunkserver-port",
                chunkserver_port,
            ),
            (
                chunkserver_port.checked_add(10 + i),
                "--chunkserver-port",
                chunkserver_port,
            ),
        ]
    });
    for (port, flag, base) in ports {
        let Some(port) = port else {
            return Err(format!(
                "{flag} {base} leaves no room for the ports after it"
            ));
        };
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return Err(format!(
                "port {port} on 127.0.0.1 is not free ({e}): is another `shale up` running? \
                 Stop it, or choose other ports with {flag} (now {base}; it uses {base}-{} and \
                 {}-{})",
                base.saturating_add(2),
                base.saturating_add(10),
                base.saturating_add(12)
            ));
        }
    }
    Ok(())
}

pub async fn run(a: Args, tls: &crate::tls::TlsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    std::fs::create_dir_all(&a.data)?;
    check_master_port(&a.data, a.master_port)?;
    check_ports_free(a.master_port, a.chunkserver_port)?;
    let names: Vec<String> = (1..=3).map(|i| format!("cs{i}")).collect();
    // Secure by default: a CA and every certificate, made on first start and kept.
    let security: Vec<std::ffi::OsString> = if tls.insecure {
        vec!["--insecure".into()]
    } else {
        let dir = crate::tls::provision_local(&a.data, &[1, 2, 3], &names)?;
        vec!["--tls-dir".into(), dir.into()]
    };
    let masters: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", a.master_port + i))
        .collect();
    let peers: String = masters
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{}={m}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut kids = Kids(Vec::new());
    let os = |v: &[&str]| -> Vec<std::ffi::OsString> { v.iter().map(Into::into).collect() };
    for (i, addr) in masters.iter().enumerate() {
        let id = i + 1;
        let http = format!("127.0.0.1:{}", a.master_port + 10 + i as u16);
        let (id_s, cs) = (id.to_string(), a.chunk_size_mib.to_string());
        let mut args = os(&[
            "master",
            "--id",
            &id_s,
            "--listen",
            addr,
            "--peers",
            &peers,
            "--http",
            &http,
            "--chunk-size-mib",
            &cs,
            "--data",
        ]);
        args.push(a.data.join(format!("m{id}")).into());
        args.extend(security.iter().cloned());
        kids.0.push(Kid::spawn(&exe, format!("master {id}"), args)?);
    }
    let mut chunkservers = Vec::new();
    for i in 0..3u16 {
        let addr = format!("127.0.0.1:{}", a.chunkserver_port + i);
        let http = format!("127.0.0.1:{}", a.chunkserver_port + 10 + i);
        let host = names[usize::from(i)].clone();
        let mut args = os(&[
            "--masters",
            &masters.join(","),
            "chunkserver",
            "--listen",
            &addr,
            "--host",
            &host,
            "--http",
            &http,
            "--data",
        ]);
        args.push(a.data.join(format!("cs{}", i + 1)).into());
        args.extend(security.iter().cloned());
        kids.0
            .push(Kid::spawn(&exe, format!("chunkserver {}", i + 1), args)?);
        chunkservers.push(addr);
    }
    println!("shale cluster up (data in {})", a.data.display());
    println!("  masters:      {}", masters.join(" "));
    println!("  chunkservers: {}", chunkservers.join(" "));
    if tls.insecure {
        println!("  security:     NONE (--insecure): plaintext, anyone who reaches a port can do anything");
    } else {
        println!(
            "  security:     mutual TLS; CA and certificates in {} (commands run from this \
             folder find them; from elsewhere give --tls-dir)",
            a.data.join(crate::tls::UP_TLS_DIR).display(),
        );
    }
    println!(
        "  status pages: {}://127.0.0.1:{}/ (masters: ports {}-{}, chunkservers: {}-{}; /metrics on each)",
        if tls.insecure { "http" } else { "https" },
        a.master_port + 10,
        a.master_port + 10,
        a.master_port + 12,
        a.chunkserver_port + 10,
        a.chunkserver_port + 12
    );
    // An S3 key pair for the admin user, made once (for `shale s3` run from this folder).
    let transport = if tls.insecure {
        shale_client::Transport::plaintext()
    } else {
        let files = shale_client::TlsFiles::stem(
            &a.data.join(crate::tls::UP_TLS_DIR),
            crate::tls::UP_ADMIN,
        );
        shale_client::Transport::tls(shale_client::Tls::load(files)?)
    };
    println!(
        "  s3 keys:      {} (`shale s3` serves the S3 API on 127.0.0.1:7300)",
        a.data.join(crate::s3::CREDENTIALS_FILE).display()
    );
    tokio::spawn(crate::s3::provision_up_credentials(
        a.data.clone(),
        masters.clone(),
        transport,
    ));
    println!("try: shale status; shale put ./somefile /somefile; shale ls -l /");
    println!("Ctrl-C stops the cluster.");
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = crate::master::shutdown_signal() => break,
            _ = tick.tick() => {
                for k in &mut kids.0 {
                    k.supervise(&exe)?;
                }
            }
        }
    }
    println!("stopping the cluster…");
    drop(kids);
    println!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_master_port, Kid};

    #[test]
    fn restarts_back_off() {
        assert_eq!(Kid::backoff(0), std::time::Duration::from_secs(1));
        assert_eq!(Kid::backoff(3), std::time::Duration::from_secs(8));
        assert_eq!(Kid::backoff(40), std::time::Duration::from_secs(32));
    }

    #[test]
    fn a_rerun_on_other_master_ports_is_refused() {
        let d = tempfile::tempdir().expect("tmp");
        assert_eq!(check_master_port(d.path(), 7101), Ok(()));
        assert_eq!(check_master_port(d.path(), 7101), Ok(()));
        let e = check_master_port(d.path(), 7301).expect_err("moved");
        assert!(e.contains("--master-port 7101"), "{e}");
        std::fs::write(d.path().join(super::PORTS_FILE), "junk").expect("write");
        assert!(check_master_port(d.path(), 7101).is_err());
    }
}
