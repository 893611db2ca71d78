//! `shale`: the one binary: `shale master` (a master process) and the inspection tools
//! (`shale debug ...`); the chunkserver, `shale up` and the file commands arrive with their
//! issues.
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod debug;
mod master;

#[derive(Parser)]
#[command(name = "shale", version, about = "Shale: a distributed file system")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one master (a member of the Raft group that keeps the namespace and chunk map).
    Master(master::Args),
    /// Inspect on-disk state.
    #[command(subcommand)]
    Debug(DebugCmd),
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,openraft=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async {
        match cli.cmd {
            Cmd::Master(a) => master::run(a).await,
            Cmd::Debug(DebugCmd::ChunkStore { dir, full_verify }) => {
                debug::chunk_store(&dir, full_verify).await
            }
            Cmd::Debug(DebugCmd::Raftlog { dir }) => debug::raftlog(&dir),
        }
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
