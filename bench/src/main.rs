//! Shale benchmarks. Each subcommand measures its baseline in the same run and prints its
//! figures as one JSON object on its last stdout line (DESIGN.md §6).
use clap::{Parser, Subcommand};

mod access;
mod alloc;
mod append;
mod apply;
mod chunk_store;
mod e2e;
mod heal;
mod html;
mod meta;
mod procs;
mod raftlog;
mod report;
mod sim_cluster;
mod tls;
mod torture;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[derive(Parser)]
#[command(name = "shale-bench", about = "Shale benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Chunk store: io_uring store vs std::fs+fdatasync writes, mmap+verify vs read() reads,
    /// 64 KiB random-read latency.
    ChunkStore(chunk_store::Args),
    /// Raft log: durable appends/s with 1 and 64 proposers vs write+fdatasync per entry.
    Raftlog(raftlog::Args),
    /// Master group: creates/s with 1 and 64 clients, stats/s, failover time, memory per
    /// file and chunk (3 real master processes on loopback).
    Meta(meta::Args),
    /// Apply: CPU per command to apply (and so to replay at restart) the meta benchmark's
    /// loader commands to the master state, in one process, up to `--files` files.
    Apply(apply::Args),
    /// Access: the FUSE mount's write and read MiB/s next to the native client's, same run.
    Access(access::Args),
    /// End to end: 3 masters + 3 chunkservers; write/read MiB/s with 1 and 4 clients vs 3× disk
    /// writes and loopback TCP.
    E2e(e2e::Args),
    /// Record append: records/s and latency with 1 and 16 clients appending to one file, vs
    /// write+fdatasync rounds on the same disk.
    Append(append::Args),
    /// Cluster scale by simulation: the real master group with 1,000 simulated chunkservers
    /// holding 30 M replicas; heartbeat CPU, full reports, failover, elections.
    SimCluster(sim_cluster::Args),
    /// Healing: kill one of 4 chunkservers holding ≥ 1 GiB; time to full replication vs a
    /// single-client write.
    Heal(heal::Args),
    /// Faults: a cluster of hosts in network namespaces under a seeded nemesis, clients
    /// recording a history, then linearizability, healing and crash checks.
    Torture(torture::Args),
    /// An HTML page of saved results (files of benchmark output): every figure as bars per
    /// run with the median, series as lines, and a table.
    Report(html::Args),
    /// (Internal: the body of a chunkserver process started by `e2e`.)
    #[command(hide = true)]
    InternalChunkserver(e2e::ChunkserverArgs),
    /// (Internal: the body of a master process started by `meta`.)
    #[command(hide = true)]
    InternalMaster(meta::MasterArgs),
    /// (Internal: one snapshot load in a fresh process, for `apply`.)
    #[command(hide = true)]
    InternalLoad(apply::LoadArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,shale_client=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let res = match cli.cmd {
        Cmd::ChunkStore(a) => rt.block_on(chunk_store::run(a)),
        Cmd::Raftlog(a) => rt
            .block_on(raftlog::run(a))
            .map_err(|e| e as Box<dyn std::error::Error>),
        Cmd::Report(a) => html::run(a),
        Cmd::Apply(a) => apply::run(a),
        Cmd::InternalLoad(a) => apply::internal_load(a),
        Cmd::Meta(a) => rt
            .block_on(meta::run(a))
            .map_err(|e| e as Box<dyn std::error::Error>),
        Cmd::Append(a) => rt
            .block_on(append::run(a))
            .map_err(|e| e as Box<dyn std::error::Error>),
        Cmd::SimCluster(a) => rt
            .block_on(sim_cluster::run(a))
            .map_err(|e| e as Box<dyn std::error::Error>),
        Cmd::Heal(a) => rt
            .block_on(heal::run(a))
            .map_err(|e| e as Box<dyn std::error::Error>),
        Cmd::Torture(a) => rt.block_on(torture::run(a)),
        Cmd::Access(a) => rt
            .block_on(access::run(a))
            .map_err(|e| e as Box<dyn std::error::Error>),
        Cmd::E2e(a) => rt
            .block_on(e2e::run(a))
            .map_err(|e| e as Box<dyn std::error::Error>),
        Cmd::InternalChunkserver(a) => rt
            .block_on(e2e::internal_chunkserver(a))
            .map_err(|e| e as Box<dyn std::error::Error>),
        Cmd::InternalMaster(a) => rt
            .block_on(meta::internal_master(a))
            .map_err(|e| e as Box<dyn std::error::Error>),
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
