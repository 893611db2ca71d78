//! The master's metrics (the `metrics` crate; `shale master` exports them as Prometheus text
//! on its status port): the group (leader, term, indexes), the namespace and chunk health, the
//! chunkservers by state and their space, and every MasterService RPC counted and timed (a
//! histogram of seconds per method). Gauges are refreshed once a second from O(1) counts and
//! the soft state (O(chunkservers)); every family is described (HELP) and present from start.
//!
//! RPC labels are bounded: a method outside [`METHODS`] (a hostile client can send any path)
//! is counted as `other`.
use super::soft::Liveness;
use super::Master;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const RPCS: &str = "shale_master_rpcs_total";
pub const RPC_SECONDS: &str = "shale_master_rpc_seconds";
pub const IS_LEADER: &str = "shale_master_is_leader";
pub const TERM: &str = "shale_master_term";
pub const APPLIED: &str = "shale_master_applied_index";
pub const FILES: &str = "shale_master_files";
pub const DIRS: &str = "shale_master_directories";
pub const CHUNKS: &str = "shale_master_chunks";
pub const UNDER_CONSTRUCTION: &str = "shale_master_files_under_construction";
pub const GARBAGE: &str = "shale_master_garbage_chunks";
/// AppendEntries that outlived their timeout (openraft retries them; logged as WARN).
pub const REPLICATION_TIMEOUTS: &str = "shale_master_raft_replication_timeouts_total";
pub const UNDER_REPLICATED: &str = "shale_master_under_replicated_chunks";
pub const MISSING: &str = "shale_master_missing_chunks";
pub const BAD_REPLICAS: &str = "shale_master_bad_replicas";
pub const COPYING: &str = "shale_master_copies_running";
pub const CHUNKSERVERS: &str = "shale_master_chunkservers";
pub const CAPACITY: &str = "shale_master_capacity_bytes";
pub const FREE: &str = "shale_master_free_bytes";
pub const USED: &str = "shale_master_used_bytes";

/// Every MasterService method (a test checks this against `meta.proto`).
pub const METHODS: [&str; 41] = [
    "Mkdir",
    "Stat",
    "List",
    "Rename",
    "Delete",
    "SetReplication",
    "Create",
    "RenewLease",
    "AllocateChunk",
    "AbandonChunk",
    "Complete",
    "Abandon",
    "GetChunkLocations",
    "ReportBadReplica",
    "RegisterChunkserver",
    "Heartbeat",
    "Status",
    "Leader",
    "AddMaster",
    "RemoveMaster",
    "Bootstrap",
    "Drain",
    "RemoveChunkserver",
    "SetAttributes",
    "SetGroupMember",
    "ListGroups",
    "WhoAmI",
    "IssueUserToken",
    "RevokeUserTokens",
    "SetQuota",
    "GetQuota",
    "ListQuotas",
    "Trash",
    "ListTrash",
    "CreateSnapshot",
    "DeleteSnapshot",
    "ListSnapshots",
    "Batch",
    "AppendTail",
    "CommitRecord",
    "SealAppend",
];

const STATES: [&str; 4] = ["alive", "stale", "dead", "unknown"];

/// Describes every family and sets each to 0 (present from start).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(RPCS, "MasterService calls, by method and outcome");
    describe_histogram!(
        RPC_SECONDS,
        Unit::Seconds,
        "MasterService call latency (to the response head), by method"
    );
    describe_histogram!(
        crate::raft::checkpoint::BUILD_SECONDS,
        Unit::Seconds,
        "time to build a snapshot of the master state and make it durable"
    );
    describe_histogram!(
        crate::raft::checkpoint::FROZEN_SECONDS,
        Unit::Seconds,
        "time the master state was locked for a snapshot build (the fork)"
    );
    describe_histogram!(
        crate::raft::network::CALL_SECONDS,
        Unit::Seconds,
        "round trip of a Raft message to another master (heartbeat, append, vote, snapshot)"
    );
    describe_histogram!(
        crate::raft::network::HANDLE_SECONDS,
        Unit::Seconds,
        "time to handle a Raft message from another master (an append: its log fsync included)"
    );
    describe_gauge!(IS_LEADER, "1 if this master leads the group (confirmed)");
    describe_gauge!(TERM, "the Raft term this master is in");
    describe_gauge!(APPLIED, "the last log index applied to this master's state");
    describe_gauge!(FILES, "complete files in the namespace");
    describe_gauge!(DIRS, "directories in the namespace");
    describe_gauge!(
        CHUNKS,
        "live chunks (of complete files and files being written)"
    );
    describe_gauge!(UNDER_CONSTRUCTION, "files being written");
    describe_gauge!(
        GARBAGE,
        "chunks of deleted files whose replicas are not all gone yet"
    );
    describe_gauge!(
        UNDER_REPLICATED,
        "chunks below their replication with at least one live replica (leader's view)"
    );
    describe_gauge!(MISSING, "chunks with no live replica (leader's view)");
    describe_gauge!(BAD_REPLICAS, "replicas proven bad and not yet deleted");
    describe_gauge!(COPYING, "re-replication copies running (leader)");
    describe_gauge!(
        CHUNKSERVERS,
        "registered chunkservers by state (alive, stale, dead, unknown: not reported yet)"
    );
    describe_gauge!(CAPACITY, Unit::Bytes, "capacity of live chunkservers");
    describe_gauge!(FREE, Unit::Bytes, "free space of live chunkservers");
    describe_gauge!(USED, Unit::Bytes, "space used on live chunkservers");
    describe_counter!(
        REPLICATION_TIMEOUTS,
        "Raft AppendEntries calls that outlived their timeout and were retried"
    );
    metrics::counter!(REPLICATION_TIMEOUTS).absolute(0);
    for m in METHODS {
        for outcome in ["ok", "error"] {
            metrics::counter!(RPCS, "method" => m, "outcome" => outcome).absolute(0);
        }
    }
    for s in STATES {
        metrics::gauge!(CHUNKSERVERS, "state" => s).set(0.0);
    }
}

/// The method label of a request path.
pub fn method(path: &str) -> &'static str {
    let name = path
        .strip_prefix("/shale.meta.v1.MasterService/")
        .unwrap_or("");
    METHODS
        .iter()
        .find(|m| **m == name)
        .copied()
        .unwrap_or("other")
}

/// Calls that are not a client's request: chunkservers' and probes'.
const NOT_CLIENT: [&str; 4] = ["Heartbeat", "RegisterChunkserver", "Status", "Leader"];

/// Whether `method` is a client's request (counted for the operations rate).
pub fn is_client_request(method: &str) -> bool {
    !NOT_CLIENT.contains(&method)
}

/// Counts and times one call.
pub fn rpc(method: &'static str, took: Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!(RPCS, "method" => method, "outcome" => outcome).increment(1);
    metrics::histogram!(RPC_SECONDS, "method" => method).record(took.as_secs_f64());
}

/// Refreshes the gauges once a second until the task is dropped.
pub async fn publish(master: Arc<Master>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        refresh(&master);
    }
}

fn refresh(m: &Master) {
    use metrics::gauge;
    let raft = m.raft.metrics().borrow().clone();
    let leader = m.is_leader() && m.unconfirmed().is_none();
    gauge!(IS_LEADER).set(if leader { 1.0 } else { 0.0 });
    gauge!(TERM).set(raft.current_term as f64);
    gauge!(APPLIED).set(raft.last_applied.map_or(0, |l| l.index) as f64);
    let now = Instant::now();
    let g = m.sm.read();
    let c = g.state.counts();
    gauge!(FILES).set(c.files as f64);
    gauge!(DIRS).set(c.dirs as f64);
    gauge!(CHUNKS).set(c.chunks as f64);
    gauge!(UNDER_CONSTRUCTION).set(c.under_construction as f64);
    gauge!(GARBAGE).set(c.garbage_chunks as f64);
    let (under, missing, copying) = if leader {
        (
            m.under_replicated.load(Ordering::Relaxed),
            m.missing.load(Ordering::Relaxed),
            m.copying.load(Ordering::Relaxed),
        )
    } else {
        (0, 0, 0)
    };
    gauge!(UNDER_REPLICATED).set(under as f64);
    gauge!(MISSING).set(missing as f64);
    gauge!(COPYING).set(copying as f64);
    let soft = m.soft.lock().unwrap_or_else(|p| p.into_inner());
    gauge!(BAD_REPLICAS).set(soft.bad_replicas().len() as f64);
    let mut by_state = [0u64; 4];
    let (mut capacity, mut free, mut used) = (0u64, 0u64, 0u64);
    for (id, s) in g.state.servers() {
        let state = match soft.liveness(*id, now, m.config.timeouts) {
            Liveness::Dead if m.unreported(&soft, *id, now) => 3,
            Liveness::Alive => 0,
            Liveness::Stale => 1,
            Liveness::Dead => 2,
        };
        by_state[state] += 1;
        if state == 0 {
            if let Some(l) = soft.servers.get(id) {
                capacity += s.capacity_bytes;
                free += l.free_bytes;
                used += l.used_bytes;
            }
        }
    }
    for (s, n) in STATES.iter().zip(by_state) {
        gauge!(CHUNKSERVERS, "state" => *s).set(n as f64);
    }
    gauge!(CAPACITY).set(capacity as f64);
    gauge!(FREE).set(free as f64);
    gauge!(USED).set(used as f64);
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_rpc_of_the_proto_is_labelled() {
        let proto = include_str!("../../../proto/proto/meta.proto");
        let service = proto
            .split("service MasterService {")
            .nth(1)
            .expect("MasterService in meta.proto");
        let rpcs: Vec<&str> = service
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .filter_map(|l| l.split('(').next())
            .collect();
        assert_eq!(rpcs, super::METHODS.to_vec());
        assert_eq!(super::method("/shale.meta.v1.MasterService/Stat"), "Stat");
        assert_eq!(super::method("/shale.meta.v1.MasterService/Nope"), "other");
        assert_eq!(super::method("/x"), "other");
    }
}
