//! Child server processes of a benchmark: this binary re-executed with a hidden subcommand.
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A child process, killed when dropped.
pub struct Kid(pub Option<Child>);

impl Kid {
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
