//! `shale`: the one binary — servers (`master`, `chunkserver`), a local cluster (`up`), the file
//! commands, and inspection tools (`debug`).
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod chunkserver;
mod debug;
mod files;
mod fsck;
mod http;
mod human;
mod master;
mod up;

#[derive(Parser)]
#[command(name = "shale", version, about = "Shale: a distributed file system")]
struct Cli {
    /// Master addresses (host:port, comma-separated). Default: the cluster `shale up` starts.
    #[arg(long, global = true, env = "SHALE_MASTERS", default_value = up::DEFAULT_MASTERS)]
    masters: String,
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
    /// Store a local file.
    Put {
        local: PathBuf,
        remote: String,
        /// Fail if the remote file exists (default: replace it atomically).
        #[arg(long)]
        no_overwrite: bool,
    },
    /// Fetch a file to a local path.
    Get { remote: String, local: PathBuf },
    /// Print a file to standard output.
    Cat { remote: String },
    /// List a directory.
    Ls {
        #[arg(default_value = "/")]
        path: String,
        /// Long format: type, size, replication, chunks.
        #[arg(short = 'l')]
        long: bool,
    },
    /// Show a file's or directory's attributes.
    Stat { path: String },
    /// Make a directory.
    Mkdir {
        path: String,
        /// Make parents as needed; no error if it exists.
        #[arg(short = 'p')]
        parents: bool,
    },
    /// Rename (move) a file or directory atomically.
    Mv { src: String, dst: String },
    /// Delete a file (or, with -r, a directory and everything in it).
    Rm {
        path: String,
        #[arg(short = 'r')]
        recursive: bool,
    },
    /// Masters with roles; chunkservers with state, space and chunk counts; healing progress.
    Status,
    /// Administration.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Check files for missing or under-replicated chunks (non-zero exit when data is at risk).
    Fsck {
        #[arg(default_value = "/")]
        path: String,
    },
    /// Inspect on-disk state.
    #[command(subcommand)]
    Debug(DebugCmd),
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Move every replica off a chunkserver (by node id, see `shale status`); then it can be
    /// removed with nothing lost.
    Drain {
        node: u64,
        /// Put the server back in service instead.
        #[arg(long)]
        undo: bool,
        /// Wait until the server holds no replicas.
        #[arg(long)]
        wait: bool,
    },
    /// Forget a dead chunkserver (by node id). Refused while it is alive or may hold the only
    /// replica of a chunk; its disk is untouched (it registers again if started).
    RemoveChunkserver { node: u64 },
    /// Add a master to the group (start it first with an empty --data and no --peers).
    AddMaster { id: u64, address: String },
    /// Remove a master from the group.
    RemoveMaster { id: u64 },
    /// Tell the group that master ID now listens at ADDRESS (restart it there first; a majority
    /// of the group must be up).
    SetMasterAddress { id: u64, address: String },
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

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let masters: Vec<String> = cli
        .masters
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    match cli.cmd {
        Cmd::Up(a) => up::run(a).await,
        Cmd::Master(a) => master::run(a).await,
        Cmd::Chunkserver(a) => chunkserver::run(a, masters).await,
        Cmd::Debug(DebugCmd::ChunkStore { dir, full_verify }) => {
            debug::chunk_store(&dir, full_verify).await
        }
        Cmd::Debug(DebugCmd::Raftlog { dir }) => debug::raftlog(&dir),
        cmd => {
            let c = files::connect(&masters).await?;
            match cmd {
                Cmd::Put {
                    local,
                    remote,
                    no_overwrite,
                } => files::put(&c, &local, &remote, no_overwrite).await,
                Cmd::Get { remote, local } => files::get(&c, &remote, &local).await,
                Cmd::Cat { remote } => files::cat(&c, &remote).await,
                Cmd::Ls { path, long } => files::ls(&c, &path, long).await,
                Cmd::Stat { path } => files::stat(&c, &path).await,
                Cmd::Mkdir { path, parents } => {
                    c.mkdir(&path, parents).await?;
                    Ok(())
                }
                Cmd::Mv { src, dst } => Ok(c.rename(&src, &dst).await?),
                Cmd::Rm { path, recursive } => Ok(c.delete(&path, recursive).await?),
                Cmd::Status => files::status(&c).await,
                Cmd::Admin(AdminCmd::Drain { node, undo, wait }) => {
                    files::drain(&c, node, !undo, wait).await
                }
                Cmd::Admin(AdminCmd::AddMaster { id, address })
                | Cmd::Admin(AdminCmd::SetMasterAddress { id, address }) => {
                    let s = c.add_master(id, &address).await?;
                    files::print_masters(&s);
                    Ok(())
                }
                Cmd::Admin(AdminCmd::RemoveMaster { id }) => {
                    let s = c.remove_master(id).await?;
                    files::print_masters(&s);
                    Ok(())
                }
                Cmd::Admin(AdminCmd::RemoveChunkserver { node }) => {
                    c.remove_chunkserver(node).await?;
                    println!("chunkserver {node} removed");
                    Ok(())
                }
                Cmd::Fsck { path } => {
                    if fsck::run(&c, &path).await? {
                        Ok(())
                    } else {
                        Err("data at risk (see above)".into())
                    }
                }
                _ => Ok(()),
            }
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
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
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
