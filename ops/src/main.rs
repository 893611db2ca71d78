//! `shale`: the one binary — servers (`master`, `chunkserver`), a local cluster (`up`), the file
//! commands, and inspection tools (`debug`).
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod chunkserver;
mod cli;
mod config;
mod dashboard;
mod debug;
mod docs;
mod fsck;
mod http;
mod human;
mod logs;
mod master;
mod mount;
mod s3;
mod tls;
mod up;

#[derive(Parser)]
#[command(name = "shale", version, about = "Shale: a distributed file system")]
struct Cli {
    /// Master addresses (host:port, comma-separated). Default: the cluster `shale up` starts.
    #[arg(long, global = true, env = "SHALE_MASTERS", default_value = up::DEFAULT_MASTERS)]
    masters: String,
    #[command(flatten)]
    tls: tls::TlsArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a local cluster: 3 masters + 3 chunkservers on 127.0.0.1 (Ctrl-C stops it).
    Up(up::Args),
    /// Run one master (a member of the Raft group that keeps the namespace and chunk map).
    Master(master::Args),
    /// Run one chunkserver.
    Chunkserver(chunkserver::Args),
    #[command(flatten)]
    Files(cli::FileCmd),
    /// Mount the cluster as a local directory (FUSE) until Ctrl-C, SIGTERM or `umount`.
    Mount(mount::Args),
    /// Serve the S3 API (buckets are top-level directories) until Ctrl-C or SIGTERM; or make
    /// access keys (`shale s3 keys create USER`).
    S3(s3::Args),
    /// Print a shell completion script (e.g. `shale completions bash > /etc/bash_completion.d/shale`).
    Completions { shell: clap_complete::Shell },
    /// Inspect on-disk state.
    #[command(subcommand)]
    Debug(DebugCmd),
    /// Configuration files (see `shale master --config`).
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print a commented configuration file for a master, a chunkserver or the CLI (every
    /// key, with its help, default and environment variable).
    Example {
        #[arg(value_parser = ["master", "chunkserver", "client"])]
        what: String,
    },
}

#[derive(Subcommand)]
enum DebugCmd {
    /// Open a chunk store directory (creating it if missing), run its recovery scan, and print
    /// what it holds. Repairs what recovery repairs: removes temp files, quarantines damage.
    ChunkStore {
        /// The store directory.
        dir: PathBuf,
        /// Verify every block of every chunk, not just the tails.
        #[arg(long)]
        full_verify: bool,
    },
    /// Print every segment and record of a raft log directory (read-only).
    Raftlog {
        /// The log directory.
        dir: PathBuf,
    },
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let masters: Vec<String> = cli
        .masters
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    match cli.cmd {
        Cmd::Up(a) => up::run(a, &cli.tls).await?,
        Cmd::Master(a) => master::run(a, &cli.tls).await?,
        Cmd::Chunkserver(a) => chunkserver::run(a, masters, &cli.tls).await?,
        Cmd::Debug(DebugCmd::ChunkStore { dir, full_verify }) => {
            debug::chunk_store(&dir, full_verify).await?
        }
        Cmd::Debug(DebugCmd::Raftlog { dir }) => debug::raftlog(&dir)?,
        Cmd::Files(f) => return cli::run(&masters, &cli.tls, f).await,
        Cmd::Mount(a) => mount::run(a, &masters, &cli.tls).await?,
        Cmd::S3(a) => s3::run(a, &masters, &cli.tls).await?,
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "shale", &mut std::io::stdout());
        }
        Cmd::Config(ConfigCmd::Example { what }) => {
            print!("{}", config::example_file(Cli::command(), &what)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Log lines of one server, each prefixed with its name (`master 1: …`): servers started by
/// `shale up`, or by hand in one terminal, share a stderr. One write per line (the event is
/// buffered, then written whole), so lines of concurrent events never mix.
struct Prefixed(std::sync::Arc<str>);

struct PrefixedLine {
    prefix: std::sync::Arc<str>,
    buf: Vec<u8>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Prefixed {
    type Writer = PrefixedLine;

    fn make_writer(&'a self) -> PrefixedLine {
        PrefixedLine {
            prefix: self.0.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

impl std::io::Write for PrefixedLine {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PrefixedLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut line = Vec::with_capacity(self.prefix.len() + self.buf.len());
        line.extend_from_slice(self.prefix.as_bytes());
        line.extend_from_slice(&self.buf);
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), &line);
    }
}

/// What a server calls itself in its log lines (empty for the CLI).
fn log_prefix(cmd: &Cmd) -> String {
    match cmd {
        Cmd::Master(a) => format!("master {}: ", a.id),
        Cmd::Chunkserver(a) => format!(
            "chunkserver {}: ",
            a.host.clone().unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default()
            })
        ),
        Cmd::Up(_) => "up: ".into(),
        Cmd::S3(_) => "s3: ".into(),
        Cmd::Mount(_) => "mount: ".into(),
        _ => String::new(),
    }
}

fn main() -> ExitCode {
    // Configuration files and environment variables become the flags' defaults (flag >
    // environment > file > default).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = match config::prepare(Cli::command(), &argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cli = match Cli::from_arg_matches(&command.get_matches_from(argv)) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "error".into());
        let show_warn = filter
            .max_level_hint()
            .is_none_or(|l| l >= tracing::level_filters::LevelFilter::WARN);
        let prefix: std::sync::Arc<str> = log_prefix(&cli.cmd).into();
        let demote = logs::DemoteReplicationTimeouts {
            show: show_warn,
            prefix: prefix.clone(),
        };
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(Prefixed(prefix))
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .with(demote)
            .init();
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    // Everything the command does has finished (its clean-ups included); what may still run is
    // a blocking read nobody waits for (`put -` interrupted while stdin stays open), which must
    // not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
