//! The master process: Raft node + MasterService + RaftService on one gRPC port.
//!
//! Writes go through Raft on the leader (followers answer UNAVAILABLE with the leader's address
//! in the `shale-leader` metadata). Reads are linearizable by default (a shared ReadIndex round,
//! [`reads`]); a request may ask for a follower read instead. Chunkserver heartbeats land on
//! every master and feed the soft state ([`soft`]).
use crate::raft::network::{Network, RaftServer, RAFT_MESSAGE_MAX_BYTES};
use crate::raft::store::SmStore;
use crate::raft::types::{MasterRaft, Node};
use crate::sm::{Command, MetaError, Reply};
use openraft::error::RaftError;
use shale_proto::metapb::master_service_server::MasterServiceServer;
use shale_proto::metapb::raft_service_server::RaftServiceServer;
use shale_proto::ChunkId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::Status;

pub mod background;
mod batch;
mod gate;
pub mod heal;
pub mod metrics;
mod perms;
pub use gate::NODE_ID_METADATA;
mod appends;
pub mod integrity;
mod propose;
pub mod reads;
pub mod reports;
pub mod retire;
mod service;
pub mod soft;
mod space;
pub mod tokens;
pub mod watch;

/// Largest MasterService message (a heartbeat's full chunk report can be large).
pub const MESSAGE_MAX_BYTES: usize = 64 << 20;
/// Most chunks one heartbeat may report (held + removed + corrupt): 4 M chunks of 64 MiB are
/// 256 TiB on one chunkserver.
pub const REPORT_CHUNKS_MAX: usize = 4 << 20;
/// Heartbeats processed at once; more wait (their senders retry on the next beat anyway).
pub const HEARTBEATS_AT_ONCE_MAX: usize = 4;

#[derive(Clone, Debug)]
pub struct MasterConfig {
    pub id: u64,
    /// The address other masters and clients reach this one at (host:port).
    pub advertise: String,
    pub data_dir: PathBuf,
    /// Initial voting masters (id → address); empty: wait to be bootstrapped or added.
    pub peers: BTreeMap<u64, String>,
    pub chunk_size_bytes: u64,
    pub replication: u8,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and compact the log) every this many applied entries.
    pub snapshot_every: u64,
    pub timeouts: soft::Timeouts,
    /// How often the leader looks for chunks to heal.
    pub heal_interval: Duration,
    /// A new leader deletes nothing until it has led this long (and heard every chunkserver).
    pub safe_mode: Duration,
    /// Replicas of chunks the master does not know are deleted after being reported this long.
    pub orphan_grace: Duration,
    /// Re-replication throttle: copies one chunkserver takes part in at once.
    pub copies_per_server: usize,
    /// The leader forgets a chunkserver silent this long (registered, not heard from since it
    /// became leader or since) unless it may hold the only replica of something.
    pub forget_after: Duration,
    /// TEST ONLY, a planted bug: a master that believes it leads serves reads without
    /// confirming it still does (a deposed leader answers from stale state). The torture
    /// harness must catch it (`ops/tests/torture.rs`); never set otherwise.
    pub test_unsafe_reads: bool,
    /// How this master accepts and makes connections (mutual TLS as itself, or plaintext).
    pub transport: shale_security::Transport,
    /// How long the chunk access tokens it signs are valid.
    pub token_lifetime: Duration,
    /// How long deleted trees stay in the trash (as leader, this master removes older ones).
    pub trash_retention: Duration,
    /// Check every invariant of the state snapshot loaded at start (O(N); off: checksum and
    /// structure only).
    pub verify_state: bool,
    /// The snapshot format this master writes (`snapshot::FORMAT_VERSION`; 8 during a rolling
    /// upgrade from a release that reads no later one).
    pub snapshot_format: u16,
    /// Ask the other voters before campaigning, soon after the leader lease runs out
    /// (`raft/prevote.rs`); off: only openraft's own timer starts campaigns.
    pub pre_vote: bool,
    /// Serve linearizable reads on the leader lease (a majority acknowledged this leader within
    /// half the lease: `raft/lease.rs`); off: every batch of reads waits for a heartbeat round.
    pub lease_reads: bool,
    /// openraft's own election timer armed. TEST ONLY when off: only the pre-vote starts
    /// campaigns (proves it elects alone).
    pub raft_timer: bool,
}

impl MasterConfig {
    pub fn new(id: u64, advertise: String, data_dir: PathBuf) -> Self {
        MasterConfig {
            id,
            advertise,
            data_dir,
            peers: BTreeMap::new(),
            chunk_size_bytes: 64 << 20,
            replication: 3,
            heartbeat_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            snapshot_every: 10_000,
            timeouts: soft::Timeouts::default(),
            heal_interval: Duration::from_secs(1),
            safe_mode: Duration::from_secs(10),
            orphan_grace: Duration::from_secs(3600),
            copies_per_server: heal::COPIES_PER_SERVER_DEFAULT,
            forget_after: Duration::from_secs(3600),
            test_unsafe_reads: false,
            transport: shale_security::Transport::plaintext(),
            token_lifetime: tokens::TOKEN_LIFETIME,
            trash_retention: Duration::from_secs(86_400),
            verify_state: false,
            snapshot_format: crate::snapshot::FORMAT_VERSION,
            pre_vote: true,
            lease_reads: true,
            raft_timer: true,
        }
    }
}

/// One running master.
pub struct Master {
    pub id: u64,
    pub raft: MasterRaft,
    pub sm: SmStore,
    pub soft: Mutex<soft::Soft>,
    pub reads: reads::ReadBarrier,
    /// When a majority last acknowledged this leader (lease reads).
    pub lease: Arc<crate::raft::lease::Lease>,
    proposer: propose::Proposer,
    pub config: MasterConfig,
    /// Out of safe mode: this leader may order deletions.
    pub safe: std::sync::atomic::AtomicBool,
    /// Chunks below their replication target with at least one live replica (last round).
    pub under_replicated: std::sync::atomic::AtomicU64,
    /// Copies in progress.
    pub copying: std::sync::atomic::AtomicU64,
    /// Chunks with no live replica (last healing round; 0 while reports are pending).
    pub missing: std::sync::atomic::AtomicU64,
    /// The most endangered chunks of the last healing round, fewest live replicas first
    /// (at most [`heal::AT_RISK_MAX`]): (chunk, live replicas, target).
    pub at_risk: Mutex<Vec<(ChunkId, u32, u32)>>,
    /// Client requests answered (see `gate`): the dashboard's operations rate.
    pub client_requests: std::sync::atomic::AtomicU64,
    /// The Raft log (for its committed index, shown by `Status`).
    pub log: crate::raftlog::LogStore<crate::raft::types::TypeConfig>,
    /// Bounds the heartbeats being processed at once.
    pub heartbeat_slots: tokio::sync::Semaphore,
    /// The thread large chunk reports are taken in on (off the async runtime).
    pub background: background::Background,
    /// Woken after every heartbeat (a `Complete` waits for its chunks' replica reports).
    pub reports: tokio::sync::Notify,
    /// Bounds the bad-replica reports being checked at once.
    pub integrity_checks: tokio::sync::Semaphore,
    /// When each other master last answered this one's Raft messages.
    pub peers: crate::raft::network::PeerClock,
    /// When this master process started (see [`Master::unreported`]).
    pub started: std::time::Instant,
    /// Channels to chunkservers the healer keeps (by address).
    pub chunk_channels: Mutex<std::collections::HashMap<String, tonic::transport::Channel>>,
}

/// Maps a refused command to a gRPC status (one place for all of them).
pub fn status_of(e: &MetaError) -> Status {
    let msg = e.to_string();
    match e {
        MetaError::InvalidPath { .. }
        | MetaError::BadArgument(_)
        | MetaError::Length { .. }
        | MetaError::ChunkIndex { .. } => Status::invalid_argument(msg),
        MetaError::NotFound(_) | MetaError::UnknownFile(_) | MetaError::UnknownServer(_) => {
            Status::not_found(msg)
        }
        MetaError::Full(_) | MetaError::QuotaExceeded(_) => Status::resource_exhausted(msg),
        MetaError::Denied(_) => Status::permission_denied(msg),
        MetaError::AlreadyExists(_) => Status::already_exists(msg),
        MetaError::NotADirectory(_)
        | MetaError::IsADirectory(_)
        | MetaError::NotEmpty(_)
        | MetaError::IntoOwnSubtree { .. }
        | MetaError::Root
        | MetaError::Lease { .. }
        | MetaError::Sealed(_)
        | MetaError::StaleRequest { .. } => Status::failed_precondition(msg),
        // The client appends the record again on a fresh tail.
        MetaError::StaleChunk(_) => Status::aborted(msg),
    }
}

impl Master {
    /// Whether this master does not know yet what chunkserver `node` holds: no full report
    /// from it since this master started, while it may still send one (it was heard from, or
    /// this master is younger than the dead timeout). HDFS's safe mode waits for the same.
    pub fn unreported(
        &self,
        soft: &soft::Soft,
        node: shale_proto::NodeId,
        now: std::time::Instant,
    ) -> bool {
        !soft.fully_reported(node)
            && (soft.servers.contains_key(&node)
                || now.saturating_duration_since(self.started) < self.config.timeouts.dead_after)
    }

    /// The current leader, if known: (id, address).
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        if id == self.id {
            // A leader no majority has acknowledged within the lease may be deposed already:
            // it does not name itself (clients look elsewhere).
            if self.unconfirmed().is_some() {
                return None;
            }
            return Some((id, self.config.advertise.clone()));
        }
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    /// UNAVAILABLE naming the leader (in the message and the `shale-leader` metadata).
    /// For a leader whose last acknowledgement by a majority is older than the leadership lease
    /// (twice the longest election timeout: a new leader may exist after one; the margin keeps
    /// a slow but healthy leader from doubting itself): how old, in ms. Such a leader may have been replaced
    /// (cut off from the others, or paused): it keeps the role until it hears a newer term,
    /// but must not claim it.
    pub fn unconfirmed(&self) -> Option<u64> {
        let w = self.raft.metrics();
        let m = w.borrow();
        if m.current_leader != Some(self.id) {
            return None;
        }
        if m.membership_config.membership().voter_ids().count() <= 1 {
            return None;
        }
        m.millis_since_quorum_ack
            .filter(|ms| *ms > 2 * self.config.election_timeout_max_ms)
    }

    /// Every member's address (for clients that were given only some of them).
    pub fn member_addresses(&self) -> Vec<String> {
        let w = self.raft.metrics();
        let m = w.borrow();
        m.membership_config
            .membership()
            .nodes()
            .map(|(_, n)| n.addr.clone())
            .collect()
    }

    /// `s` with the members' addresses in the `shale-masters` metadata.
    fn with_members(&self, mut s: Status) -> Status {
        if let Ok(v) = self.member_addresses().join(",").parse() {
            s.metadata_mut().insert("shale-masters", v);
        }
        s
    }

    pub fn not_leader(&self) -> Status {
        if let Some(ms) = self.unconfirmed() {
            return self.with_members(Status::unavailable(format!(
                "master {} cannot reach a majority of the group (no acknowledgement for {ms} ms): \
                 another master may lead now",
                self.id
            )));
        }
        let s = match self.leader() {
            Some((id, addr)) if id != self.id => {
                let mut s = Status::unavailable(format!(
                    "master {} is not the leader; the leader is master {id} at {addr}",
                    self.id
                ));
                if let Ok(v) = addr.parse() {
                    s.metadata_mut().insert("shale-leader", v);
                }
                s
            }
            _ => Status::unavailable(format!(
                "master {} is not the leader and no leader is known yet; retry",
                self.id
            )),
        };
        self.with_members(s)
    }

    /// Proposes a command through Raft (batched with concurrent ones); returns its reply once
    /// committed and applied.
    pub async fn write(&self, cmd: Command) -> Result<Reply, Status> {
        // A leader cut off from the majority fails at once rather than when the call times out.
        if self.unconfirmed().is_some() {
            return Err(self.not_leader());
        }
        match self.proposer.propose(cmd).await {
            Ok(Reply::Err(e)) => Err(status_of(&e)),
            Ok(ok) => Ok(ok),
            Err(propose::ProposeError::NotLeader) => Err(self.not_leader()),
            Err(propose::ProposeError::Failed(e)) => {
                Err(Status::unavailable(format!("write failed: {e}")))
            }
        }
    }

    /// Waits until a read may be served here: linearizable (leader, ReadIndex) unless a
    /// follower read was asked for.
    pub async fn read_ready(&self, follower_read: bool) -> Result<(), Status> {
        if follower_read
            || (self.config.test_unsafe_reads && self.is_leader())
            || (self.config.lease_reads && self.holds_lease())
        {
            return Ok(());
        }
        self.reads
            .wait(&self.raft)
            .await
            .map_err(|_| self.not_leader())
    }

    /// Returns once every entry acknowledged to any client before the call is in this
    /// leader's applied state (what a handler judging a file by its chunk list needs). At once
    /// when this master leads and has applied an entry of its own term: its first entry is its
    /// own blank one, applied after every earlier entry, and an entry it acknowledged since was
    /// applied before the acknowledgement. Otherwise (a new leader catching up) through the
    /// read barrier, which costs a heartbeat round to a quorum (≈ 0.4 ms of a 1.2 ms `Complete`
    /// with one client).
    pub async fn applied_acknowledged(&self) -> Result<(), Status> {
        let (leads, own_term) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let term = m.last_applied.map(|l| l.leader_id.term);
            (
                m.current_leader == Some(self.id),
                term == Some(m.current_term),
            )
        };
        match (leads, own_term) {
            (false, _) => Err(self.not_leader()),
            (true, true) => Ok(()),
            (true, false) => self.read_ready(false).await,
        }
    }

    /// Whether this master leads, has applied an entry of its own term, and a majority
    /// acknowledged it within half a lease: then its state holds every acknowledged write and
    /// no other master can lead yet (`raft/lease.rs`).
    fn holds_lease(&self) -> bool {
        let (term, configs) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let own_applied = m
                .last_applied
                .is_some_and(|l| l.leader_id.term == m.current_term);
            // A leader's vote is its own, committed, in its term.
            if !(m.state == openraft::ServerState::Leader && own_applied) {
                return false;
            }
            (
                m.vote.leader_id().term,
                m.membership_config.membership().get_joint_config().clone(),
            )
        };
        self.lease.holds(term, self.id, &configs)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Forms the group from `members` if this master's log is empty; otherwise does nothing.
    pub async fn bootstrap(&self, members: &BTreeMap<u64, String>) -> Result<(), Status> {
        let nodes: BTreeMap<u64, Node> = members
            .iter()
            .map(|(id, addr)| (*id, Node::new(addr.clone())))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Status::failed_precondition(format!("bootstrap: {e}"))),
        }
    }

    /// Adds a master: first as a learner (it catches up), then as a voter. For a member already
    /// in the group, sets its address instead (a master that moved: the change is a membership
    /// entry, so every master learns it), or does nothing if it is already a voter there.
    pub async fn add_master(&self, id: u64, addr: String) -> Result<(), Status> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let known = {
            let m = self.raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            membership
                .get_node(&id)
                .map(|n| (n.addr.clone(), membership.voter_ids().any(|v| v == id)))
        };
        match known {
            Some((old, true)) if old == addr => return Ok(()),
            Some((old, _)) if old != addr => {
                let nodes = BTreeMap::from([(id, Node::new(addr.clone()))]);
                let change = openraft::ChangeMembers::SetNodes(nodes);
                self.membership(
                    &format!("set master {id}'s address"),
                    self.raft.change_membership(change, false),
                )
                .await?;
                tracing::warn!(master = id, from = %old, to = %addr, "master address changed");
            }
            Some(_) => {}
            None => {
                self.membership(
                    &format!("add learner {id}"),
                    self.raft.add_learner(id, Node::new(addr), true),
                )
                .await?;
            }
        }
        let mut voters = self.voters();
        voters.insert(id);
        self.membership(
            &format!("add voter {id}"),
            self.raft.change_membership(voters, false),
        )
        .await?;
        Ok(())
    }

    pub async fn remove_master(&self, id: u64) -> Result<(), Status> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let mut voters = self.voters();
        if !voters.remove(&id) {
            return Err(Status::not_found(format!("master {id} is not a voter")));
        }
        if voters.is_empty() {
            return Err(Status::failed_precondition("cannot remove the last master"));
        }
        self.membership(
            &format!("remove {id}"),
            self.raft.change_membership(voters, false),
        )
        .await?;
        Ok(())
    }

    /// Waits for a membership change handed to openraft, only while this master leads
    /// (`propose::while_leading`: openraft 0.9 can lose a deposed leader's caller, and the
    /// admin's call would hang until its timeout). Every failure is UNAVAILABLE and marked with
    /// `shale_proto::OUTCOME_HEADER`: the change may have taken effect (the client library
    /// then takes a retry that finds it done as the first call's success).
    async fn membership<T, E: std::fmt::Display>(
        &self,
        what: &str,
        change: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, Status> {
        let why =
            match propose::while_leading(change, self.raft.server_metrics(), propose::leading_term)
                .await
            {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e.to_string(),
                Err(lost) => lost.to_string(),
            };
        let mut s = Status::unavailable(format!("{what}: {why}"));
        s.metadata_mut().insert(
            shale_proto::OUTCOME_HEADER,
            tonic::metadata::MetadataValue::from_static(shale_proto::OUTCOME_UNKNOWN),
        );
        Err(s)
    }

    pub fn voters(&self) -> BTreeSet<u64> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config.membership().voter_ids().collect()
    }
}

/// Starts a master on `listener` and serves until `shutdown` completes.
pub async fn serve(
    config: MasterConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let raft_config = openraft::Config {
        cluster_name: "shale".into(),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.election_timeout_min_ms,
        election_timeout_max: config.election_timeout_max_ms,
        // Snapshots are asked for by `checkpoint::trigger` (staggered, duty-limited).
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 1000.min(config.snapshot_every),
        ..Default::default()
    }
    .validate()?;
    std::fs::create_dir_all(&config.data_dir)?;
    // Held for the life of the master: one process per data directory.
    let _lock = shale_proto::dirlock::lock_dir(&config.data_dir)?;
    let (log, report) = crate::raftlog::RaftLog::open(
        &config.data_dir.join("raft"),
        crate::raftlog::LogConfig::default(),
    )?;
    tracing::info!("master {}: raft log {report}", config.id);
    // Replication reads what one AppendEntries carries (the network cuts at the same size).
    let log_store = crate::raftlog::LogStore::new(Arc::new(log))
        .with_read_limit(crate::raft::network::APPEND_BYTES_MAX);
    let sm = SmStore::open(
        &config.data_dir.join("state"),
        config.chunk_size_bytes,
        config.replication,
        config.verify_state,
    )?
    .with_snapshot_format(config.snapshot_format)?;
    let recorded = membership_addresses(&mut log_store.clone(), &mut sm.clone()).await?;
    // A master that moved must not lead or campaign until the group knows its new address: it
    // could win (it reaches the others, they cannot reach it back) and then name an address
    // nobody can use, or keep raising the term and unseat every leader the others elect.
    let moved = recorded
        .get(&config.id)
        .is_some_and(|old| *old != config.advertise);
    if moved {
        // openraft resumes leadership from a committed vote for itself: make that vote an
        // uncommitted one (this master stays a candidate of that term, which is always safe),
        // so it starts as a follower.
        demote_vote(&mut log_store.clone()).await?;
    }
    let peers = crate::raft::network::PeerClock::default();
    let channels = crate::raft::network::Channels::default();
    let lease = Arc::new(crate::raft::lease::Lease::new(Duration::from_millis(
        config.election_timeout_max_ms,
    )));
    let raft = MasterRaft::new(
        config.id,
        Arc::new(raft_config),
        Network {
            transport: config.transport.clone(),
            clock: peers.clone(),
            channels: channels.clone(),
            lease: lease.clone(),
        },
        log_store.clone(),
        sm.clone(),
    )
    .await?;
    // A master restarting into a group it belongs to stays quiet until it hears from the
    // leader (or a few election timeouts pass: the whole group may be restarting). openraft 0.9
    // has no pre-vote: a master that had spent seconds loading its snapshot timed out before
    // the leader's first AppendEntries reached it, campaigned with a higher term and unseated
    // a healthy leader (`shale-bench sim-cluster`: 2 elections per rejoin).
    let rejoins = !moved && !recorded.is_empty();
    let prevote = crate::raft::prevote::PreVote::new(
        config.id,
        crate::raft::prevote::Timing::new(
            config.election_timeout_min_ms,
            config.election_timeout_max_ms,
            config.heartbeat_ms,
        ),
        log_store.clone(),
        config.raft_timer,
    );
    prevote.allow(&raft, !(moved || rejoins));
    let known_chunks = sm.read().state.counts().chunks as usize;
    let master = Arc::new(Master {
        id: config.id,
        raft: raft.clone(),
        sm,
        soft: Mutex::new(soft::Soft::for_chunks(known_chunks)),
        started: std::time::Instant::now(),
        peers,
        reads: reads::ReadBarrier::default(),
        lease: lease.clone(),
        proposer: propose::Proposer::start(raft.clone()),
        config: config.clone(),
        safe: Default::default(),
        under_replicated: Default::default(),
        copying: Default::default(),
        missing: Default::default(),
        at_risk: Default::default(),
        client_requests: Default::default(),
        log: log_store,
        heartbeat_slots: tokio::sync::Semaphore::new(HEARTBEATS_AT_ONCE_MAX),
        background: background::Background::start(&format!("shale-master-{}-reports", config.id))?,
        integrity_checks: tokio::sync::Semaphore::new(integrity::CHECKS_AT_ONCE),
        chunk_channels: Mutex::new(std::collections::HashMap::new()),
        reports: tokio::sync::Notify::new(),
    });
    // A master whose log or snapshot records a membership was initialized already: asking
    // openraft again only makes it log an ERROR ("Can not initialize") on every restart.
    if !config.peers.is_empty() && recorded.is_empty() {
        master.bootstrap(&config.peers).await?;
    }
    if let Some(why) = address_mismatch(config.id, &config.advertise, &recorded, &config.peers) {
        tracing::error!("{why}");
    }
    let mover = moved.then(|| {
        tokio::spawn(elect_when_known(
            raft.clone(),
            prevote.clone(),
            config.clone(),
        ))
    });
    let rejoiner = rejoins.then(|| {
        let grace = Duration::from_millis(3 * config.election_timeout_max_ms);
        tokio::spawn(elect_after_rejoin(
            raft.clone(),
            prevote.clone(),
            grace,
            config.transport.clone(),
        ))
    });
    let pre_voter = config.pre_vote.then(|| {
        tokio::spawn(crate::raft::prevote::run(
            raft.clone(),
            prevote.clone(),
            crate::raft::network::pre_vote_asker(config.transport.clone(), channels.clone()),
        ))
    });
    let snapshots = tokio::spawn(crate::raft::checkpoint::trigger(
        raft.clone(),
        master.sm.clone(),
        config.id,
        config.snapshot_every,
    ));
    let ticker = tokio::spawn(expire_leases(master.clone()));
    let healer = tokio::spawn(heal::run(master.clone()));
    let rotator = tokio::spawn(tokens::rotate(master.clone()));
    let emptier = tokio::spawn(space::expire_trash(master.clone()));
    metrics::describe();
    let gauges = tokio::spawn(metrics::publish(master.clone()));
    let result = shale_security::limits::server()
        .add_service(InterceptedService::new(
            RaftServiceServer::new(RaftServer {
                raft: raft.clone(),
                prevote: prevote.clone(),
                lease: lease.clone(),
            })
            .max_decoding_message_size(RAFT_MESSAGE_MAX_BYTES)
            .max_encoding_message_size(RAFT_MESSAGE_MAX_BYTES),
            shale_security::authenticate,
        ))
        .add_service(InterceptedService::new(
            gate::HeartbeatGate {
                inner: MasterServiceServer::new(service::Svc(master.clone()))
                    .max_decoding_message_size(MESSAGE_MAX_BYTES)
                    .max_encoding_message_size(MESSAGE_MAX_BYTES),
                master: master.clone(),
            },
            {
                // Clients without certificates show user tokens.
                let m = master.clone();
                move |req| {
                    shale_security::bearer::admit(
                        req,
                        |id| m.user_key_secret(id),
                        shale_security::token::now_ms(),
                    )
                }
            },
        ))
        .serve_with_incoming_shutdown(config.transport.incoming(listener), shutdown)
        .await;
    ticker.abort();
    snapshots.abort();
    healer.abort();
    rotator.abort();
    emptier.abort();
    gauges.abort();
    for t in mover.into_iter().chain(rejoiner).chain(pre_voter) {
        t.abort();
    }
    let _ = raft.shutdown().await;
    // A clean stop saves what was applied since the last snapshot (if there is a build's
    // worth), so the next start loads it instead of replaying it.
    let (sm, every) = (master.sm.clone(), config.snapshot_every);
    let t = std::time::Instant::now();
    let built =
        tokio::task::spawn_blocking(move || sm.snapshot_at_stop(every).map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
    match built {
        Ok(Some(meta)) => tracing::info!(
            index = meta.last_log_id.map_or(0, |l| l.index),
            ms = t.elapsed().as_millis() as u64,
            "master {}: snapshot at stop",
            config.id
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!("master {}: snapshot at stop failed: {e}", config.id),
    }
    result.map_err(Into::into)
}

/// Every member's address in the newest membership this master's stores hold.
async fn membership_addresses(
    log: &mut crate::raftlog::LogStore<crate::raft::types::TypeConfig>,
    sm: &mut SmStore,
) -> Result<BTreeMap<u64, String>, Box<dyn std::error::Error + Send + Sync>> {
    let state = openraft::storage::StorageHelper::new(log, sm)
        .get_initial_state()
        .await?;
    Ok(state
        .membership_state
        .effective()
        .nodes()
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect())
}

/// Rewrites a committed vote as an uncommitted one for the same term and candidate.
async fn demote_vote(
    store: &mut crate::raftlog::LogStore<crate::raft::types::TypeConfig>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use openraft::storage::RaftLogStorage;
    if let Some(v) = store.read_vote().await? {
        if v.is_committed() {
            let demoted = openraft::Vote::new(
                v.leader_id().term,
                v.leader_id().voted_for().unwrap_or_default(),
            );
            store.save_vote(&demoted).await?;
        }
    }
    Ok(())
}

/// Re-enables elections on restarted master `me` once it hears from another master leading,
/// or after `grace`. (Its own old committed vote makes it think it leads at first.)
async fn elect_after_rejoin(
    raft: MasterRaft,
    prevote: Arc<crate::raft::prevote::PreVote>,
    grace: Duration,
    transport: shale_security::Transport,
) {
    let me = prevote.id;
    let mut metrics = raft.metrics();
    loop {
        let heard = async {
            loop {
                if metrics.borrow().current_leader.is_some_and(|l| l != me) {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(grace, heard).await.is_ok() {
            break;
        }
        // Not heard from a leader yet (a leader busy reconnecting, or none: the whole group
        // restarting). Campaign only if no peer follows a live leader: openraft 0.9 has no
        // pre-vote, and a campaign here would unseat that leader (`shale-bench sim-cluster`:
        // 2 elections at one rejoin, the leader's connection queued behind 1,000
        // chunkservers' handshakes to this master).
        let peers: Vec<String> = {
            let m = metrics.borrow();
            m.membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != me)
                .map(|(_, n)| n.addr.clone())
                .collect()
        };
        if !peer_has_leader(&transport, &peers, me).await {
            break;
        }
        tracing::info!("master {me}: a peer follows a live leader; not campaigning yet");
    }
    prevote.allow(&raft, true);
}

/// Whether one of the masters at `peers` leads, or names a leader other than `me`, in its
/// answer to `Leader` (each asked once, within a second).
async fn peer_has_leader(transport: &shale_security::Transport, peers: &[String], me: u64) -> bool {
    use shale_proto::metapb::master_service_client::MasterServiceClient;
    use shale_proto::metapb::Empty;
    for addr in peers {
        let Ok(ch) = transport.channel(addr, |ep| {
            ep.connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(1))
        }) else {
            continue;
        };
        let mut c = MasterServiceClient::new(ch);
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), c.leader(Empty {})).await {
            let r = r.into_inner();
            if r.role == "leader" || (r.role == "follower" && r.leader != 0 && r.leader != me) {
                return true;
            }
        }
    }
    false
}

/// Re-enables elections on a master that moved, once the membership names its new address.
async fn elect_when_known(
    raft: MasterRaft,
    prevote: Arc<crate::raft::prevote::PreVote>,
    config: MasterConfig,
) {
    let mut metrics = raft.metrics();
    loop {
        let known = metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(&config.id)
            .is_some_and(|n| n.addr == config.advertise);
        if known {
            prevote.allow(&raft, true);
            tracing::warn!(
                master = config.id,
                address = %config.advertise,
                "the group now knows this master's new address; it takes part in elections again"
            );
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Explains, when this master's recorded addresses disagree with how it was started, why the
/// group will not work and what to do: peers dial the addresses in the Raft membership, not
/// the ones on the command line.
pub fn address_mismatch(
    id: u64,
    advertise: &str,
    recorded: &BTreeMap<u64, String>,
    peers: &BTreeMap<u64, String>,
) -> Option<String> {
    if let Some(old) = recorded.get(&id) {
        if old != advertise {
            return Some(format!(
                "master {id}: the group's membership records this master at {old}, but it now \
                 advertises {advertise}; the other masters keep dialing {old}, so this master \
                 cannot take part. Either start it again at {old} (--listen/--advertise), or, \
                 while a majority of the group is up, run `shale admin set-master-address {id} \
                 {advertise}`. If every master moved at once, start them at their old addresses, \
                 then move them one at a time."
            ));
        }
    }
    if !recorded.is_empty() && !peers.is_empty() && recorded != peers {
        let list = |m: &BTreeMap<u64, String>| {
            m.iter()
                .map(|(i, a)| format!("{i}={a}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        return Some(format!(
            "master {id}: --peers {} is ignored: this data directory belongs to a group whose \
             membership is {}; change membership with `shale admin add-master`, \
             `remove-master` and `set-master-address`",
            list(peers),
            list(recorded)
        ));
    }
    None
}

/// On the leader, abandons files whose writer lease expired (by log time), once a second.
async fn expire_leases(master: Arc<Master>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let pending = master.sm.read().state.has_pending();
        if pending && master.is_leader() {
            if let Err(e) = master.write(Command::ExpireLeases).await {
                tracing::debug!(error = %e, "lease expiry round failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::address_mismatch;
    use std::collections::BTreeMap;

    #[test]
    fn moved_masters_are_explained() {
        let rec: BTreeMap<u64, String> =
            BTreeMap::from([(1, "h:7101".into()), (2, "h:7102".into())]);
        let none = BTreeMap::new();
        assert_eq!(address_mismatch(1, "h:7101", &rec, &none), None);
        assert_eq!(address_mismatch(1, "h:7101", &rec, &rec), None);
        // A fresh data directory: nothing recorded yet.
        assert_eq!(address_mismatch(1, "h:9", &none, &rec), None);
        let moved = address_mismatch(1, "h:7201", &rec, &none).expect("moved");
        assert!(moved.contains("records this master at h:7101"), "{moved}");
        assert!(moved.contains("set-master-address 1 h:7201"), "{moved}");
        let peers: BTreeMap<u64, String> =
            BTreeMap::from([(1, "h:7101".into()), (2, "h:7202".into())]);
        let ignored = address_mismatch(1, "h:7101", &rec, &peers).expect("peers differ");
        assert!(
            ignored.contains("--peers 1=h:7101,2=h:7202 is ignored"),
            "{ignored}"
        );
    }
}
