//! Child server processes of a benchmark: this binary re-executed with a hidden subcommand.
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A free local port below the kernel's ephemeral range (`ip_local_port_range`: from 32768
/// here), for a server the benchmark restarts on its address. A port handed out for `:0` lies in
/// that range: while its server was down, a connection to it could get the same port as its own
/// local end (TCP connects to itself when nothing listens) or another connection could take it,
/// and the restarted server failed with "Address already in use" (`shale-bench meta`, after a
/// failover trial; peers keep dialling a killed master).
pub fn stable_port() -> Result<u16, BoxError> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (low.saturating_sub(12_000).max(1024), low.saturating_sub(1));
    for _ in 0..1000 {
        let p = fastrand::u16(from..to);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return Ok(p);
        }
    }
    Err(format!("no free port in {from}..{to}").into())
}

/// A child process, killed when dropped.
pub struct Kid(pub Option<Child>);

impl Kid {
    /// SIGTERM, then waits up to `within` for the exit (then `kill -9`); whether it exited
    /// by itself.
    pub fn stop(&mut self, within: std::time::Duration) -> bool {
        let Some(c) = self.0.as_mut() else {
            return true;
        };
        // SAFETY: plain syscall on our own child's pid.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                self.0 = None;
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill9();
        false
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Re-executes this binary with `args`; the child's first stdout line must be
/// `listening on ADDR`. Returns the child and ADDR; keeps draining the child's stdout. Its
/// stderr is dropped unless `SHALE_BENCH_STDERR` is set.
pub fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<(Kid, String), BoxError> {
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // `SHALE_BENCH_STDERR=1` shows the servers' logs (for looking into a slow run).
        .stderr(if std::env::var_os("SHALE_BENCH_STDERR").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    std::thread::spawn(move || for _ in out.lines() {});
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("child said {line:?}"))?
        .to_string();
    Ok((Kid(Some(child)), addr))
}
