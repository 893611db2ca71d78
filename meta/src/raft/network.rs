//! Raft traffic between masters: one small tonic service carrying openraft's messages
//! serialized with postcard as `bytes` (DESIGN.md §4). Snapshots travel as openraft's chunked
//! `InstallSnapshot` messages (3 MiB chunks by default).
#![allow(clippy::result_large_err)]
use super::types::{MasterRaft, Node, NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shale_proto::metapb::raft_service_client::RaftServiceClient;
use shale_proto::metapb::raft_service_server::RaftService;
use shale_proto::metapb::{RaftKind, RaftReply, RaftRequest};
use tonic::transport::Channel;

/// Largest Raft message accepted (snapshot chunks are 3 MiB; entries batches are bounded).
pub const RAFT_MESSAGE_MAX_BYTES: usize = 64 << 20;

/// Bytes of log entries one AppendEntries carries at most (at least one entry, whatever its
/// size). openraft 0.9 bounds a payload only by count (300 entries) and times each
/// AppendEntries out after the heartbeat interval: entries carrying `Batch`es of 1,000
/// commands made 300-entry payloads of tens of MB that never arrived in time, so a restarted
/// group stayed unable to commit for a minute (`shale-bench meta`, scale phase). A payload is
/// cut to this size and openraft told so (`PartialSuccess`): the next one carries the rest.
pub const APPEND_BYTES_MAX: usize = 128 << 10;

/// Cuts `rpc`'s entries to the longest prefix within `max` encoded bytes (at least one
/// entry); the last log id sent if it cut.
pub fn limit_append(
    rpc: &mut AppendEntriesRequest<TypeConfig>,
    max: usize,
) -> Option<super::types::LogId> {
    let mut size = 0usize;
    let mut keep = 0usize;
    for e in &rpc.entries {
        size =
            size.saturating_add(postcard::experimental::serialized_size(e).unwrap_or(usize::MAX));
        if keep > 0 && size > max {
            break;
        }
        keep += 1;
    }
    if keep >= rpc.entries.len() {
        return None;
    }
    rpc.entries.truncate(keep);
    rpc.entries.last().map(|e| e.log_id)
}

/// Histogram: seconds from sending a Raft message to another master to its reply (the
/// leader's view of a replication round trip), by kind.
pub const CALL_SECONDS: &str = "shale_master_raft_call_seconds";
/// Histogram: seconds this master took to handle a Raft message (a follower's append: decode,
/// log append and its fsync, reply), by kind.
pub const HANDLE_SECONDS: &str = "shale_master_raft_handle_seconds";

/// The metric label of a message: heartbeats (appends without entries) apart from appends.
fn kind_label(kind: RaftKind, entries: usize) -> &'static str {
    match kind {
        RaftKind::AppendEntries if entries == 0 => "heartbeat",
        RaftKind::AppendEntries => "append",
        RaftKind::Vote => "vote",
        RaftKind::InstallSnapshot => "snapshot",
        RaftKind::PreVote => "prevote",
        _ => "other",
    }
}

/// Highest Raft term accepted from a peer. Terms grow by one per election: 2⁴⁸ is millions
/// of years of elections. openraft panics on a term it cannot increment (a forged 2⁶⁴−1
/// killed every master for good), so no message above this reaches it.
pub const TERM_MAX: u64 = 1 << 48;

/// When this master last had an answer from each other master (any Raft reply: a leader hears
/// from every follower at each heartbeat). Shown by `Status`, so a paused or cut-off follower
/// does not pass for a healthy one.
#[derive(Clone, Default)]
pub struct PeerClock(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<NodeId, std::time::Instant>>>,
);

impl PeerClock {
    fn heard(&self, peer: NodeId) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, std::time::Instant::now());
    }

    /// How long ago `peer` last answered (None: never, since this master started).
    pub fn since(&self, peer: NodeId) -> Option<std::time::Duration> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .map(std::time::Instant::elapsed)
    }
}

/// Connections to other masters, one per address, shared by every replication stream, vote
/// and snapshot transfer to it (HTTP/2 multiplexes them; a broken one reconnects on its next
/// call). openraft asks for a new network client at every election and replication restart:
/// each used to open its own TCP and TLS connection (≈ 4 % of the masters' CPU in handshakes
/// under load, `shale-bench meta`).
#[derive(Clone, Default)]
pub struct Channels(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Channel>>>);

/// Whether a call failed below gRPC (connecting, TLS, a reset connection), not in the peer.
fn is_transport(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Unknown
        && (s.message() == "transport error"
            || std::error::Error::source(s)
                .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some()))
}

/// Addresses kept at most (beyond that, the cache starts over).
const CHANNELS_MAX: usize = 64;

/// Connects to the other masters with this master's transport (mutual TLS as itself).
pub struct Network {
    pub transport: shale_security::Transport,
    pub clock: PeerClock,
    pub channels: Channels,
    /// Acknowledged AppendEntries, by sending time (lease reads).
    pub lease: std::sync::Arc<super::lease::Lease>,
}

pub struct Conn {
    target: NodeId,
    addr: String,
    transport: shale_security::Transport,
    client: Option<RaftServiceClient<Channel>>,
    clock: PeerClock,
    channels: Channels,
    lease: std::sync::Arc<super::lease::Lease>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Conn {
        Conn {
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
            client: None,
            clock: self.clock.clone(),
            channels: self.channels.clone(),
            lease: self.lease.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WireErr(String);

impl Channels {
    /// A client of the Raft service at `addr` on the shared connection to it.
    fn client(
        &self,
        transport: &shale_security::Transport,
        addr: &str,
    ) -> Result<RaftServiceClient<Channel>, String> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match map.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = transport.channel(addr, |ep| {
                    // Keepalives tear down a connection that stopped answering (a peer
                    // paused, or accepted but not serving yet while it loads its snapshot);
                    // the shared channel then reconnects.
                    ep.connect_timeout(std::time::Duration::from_millis(500))
                        .http2_keep_alive_interval(std::time::Duration::from_secs(1))
                        .keep_alive_timeout(std::time::Duration::from_secs(2))
                        .tcp_nodelay(true)
                })?;
                if map.len() >= CHANNELS_MAX {
                    map.clear();
                }
                map.insert(addr.to_string(), c.clone());
                c
            }
        };
        drop(map);
        Ok(RaftServiceClient::new(channel)
            .max_decoding_message_size(RAFT_MESSAGE_MAX_BYTES)
            .max_encoding_message_size(RAFT_MESSAGE_MAX_BYTES))
    }

    /// Forgets the connection to `addr` (broken: the next call opens a new one).
    fn evict(&self, addr: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }
}

/// How this master asks another for its pre-vote: over the shared connections, as itself.
pub fn pre_vote_asker(
    transport: shale_security::Transport,
    channels: Channels,
) -> super::prevote::Ask {
    std::sync::Arc::new(move |addr: String, req: super::prevote::PreVoteRequest| {
        let (transport, channels) = (transport.clone(), channels.clone());
        Box::pin(async move {
            let mut client = channels.client(&transport, &addr).ok()?;
            let payload = postcard::to_allocvec(&req).ok()?;
            match client
                .raft(RaftRequest {
                    kind: RaftKind::PreVote as i32,
                    payload: payload.into(),
                })
                .await
            {
                Ok(r) => postcard::from_bytes(&r.into_inner().payload).ok(),
                Err(s) => {
                    if s.code() == tonic::Code::Unavailable || is_transport(&s) {
                        channels.evict(&addr);
                    }
                    None
                }
            }
        })
    })
}

impl Conn {
    fn client(&mut self) -> Result<RaftServiceClient<Channel>, Unreachable> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = self
            .channels
            .client(&self.transport, &self.addr)
            .map_err(|e| Unreachable::new(&WireErr(e)))?;
        self.client = Some(c.clone());
        Ok(c)
    }

    async fn call<Req, Resp, E>(
        &mut self,
        kind: RaftKind,
        entries: usize,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = postcard::to_allocvec(req)
            .map_err(|e| RPCError::Network(NetworkError::new(&WireErr(e.to_string()))))?;
        let mut client = self.client().map_err(RPCError::Unreachable)?;
        let mut request = tonic::Request::new(RaftRequest {
            kind: kind as i32,
            payload: payload.into(),
        });
        request.set_timeout(option.hard_ttl());
        let sent = std::time::Instant::now();
        let reply = match client.raft(request).await {
            Ok(r) => {
                metrics::histogram!(CALL_SECONDS, "kind" => kind_label(kind, entries))
                    .record(sent.elapsed().as_secs_f64());
                self.clock.heard(self.target);
                r.into_inner()
            }
            Err(s) if s.code() == tonic::Code::Unavailable || is_transport(&s) => {
                // The connection is broken (the peer restarted, or was not up yet): the next
                // call opens a new one. A tonic channel whose connection failed kept failing
                // with "transport error" for a minute after every master restarted (seen in
                // `shale-bench meta`'s restart); a timeout keeps the connection (reconnecting
                // a slow peer only adds handshakes).
                self.client = None;
                self.channels.evict(&self.addr);
                return Err(RPCError::Unreachable(Unreachable::new(&WireErr(
                    s.to_string(),
                ))));
            }
            Err(s) => {
                return Err(RPCError::Network(NetworkError::new(&WireErr(
                    s.to_string(),
                ))))
            }
        };
        let res: Result<Resp, RaftError<NodeId, E>> = postcard::from_bytes(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&WireErr(e.to_string()))))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        // A follower commits only up to the entries it has from this leader (openraft caps
        // the leader's commit index at them), so sending a prefix is safe.
        let cut = limit_append(&mut rpc, APPEND_BYTES_MAX);
        let n = rpc.entries.len();
        let sent = std::time::Instant::now();
        let reply: AppendEntriesResponse<NodeId> =
            self.call(RaftKind::AppendEntries, n, &rpc, &option).await?;
        if !matches!(reply, AppendEntriesResponse::HigherVote(_)) {
            // The follower accepted this leader's vote: it refuses other candidates for a
            // lease from when it received this (lease.rs).
            self.lease
                .acked(rpc.vote.leader_id().term, self.target, sent);
        }
        Ok(match (reply, cut) {
            (AppendEntriesResponse::Success, Some(last)) => {
                AppendEntriesResponse::PartialSuccess(Some(last))
            }
            (reply, _) => reply,
        })
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RaftKind::InstallSnapshot, 1, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(RaftKind::Vote, 1, &rpc, &option).await
    }
}

/// The receiving side: hands each message to the local Raft; answers pre-votes.
pub struct RaftServer {
    pub raft: MasterRaft,
    /// Stamped when a leader is heard (or a vote granted); answers pre-vote requests.
    pub prevote: std::sync::Arc<super::prevote::PreVote>,
    /// Refuses votes for a lease after this master started (lease.rs).
    pub lease: std::sync::Arc<super::lease::Lease>,
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, tonic::Status> {
    postcard::from_bytes(b)
        .map_err(|e| tonic::Status::invalid_argument(format!("bad raft message: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<tonic::Response<RaftReply>, tonic::Status> {
    let payload = postcard::to_allocvec(v)
        .map_err(|e| tonic::Status::internal(format!("encode raft reply: {e}")))?;
    Ok(tonic::Response::new(RaftReply {
        payload: payload.into(),
    }))
}

/// Why a Raft message claiming to come from `sender` with `term` must be refused: only a
/// master may send Raft messages, only as itself, and only with a term below [`TERM_MAX`].
fn refuse(
    caller: &shale_security::Caller<'_>,
    sender: Option<NodeId>,
    term: u64,
) -> Result<(), tonic::Status> {
    use shale_security::{Caller, Role};
    match caller {
        Caller::Trusted => {}
        Caller::Is(p) if p.role == Role::Master && sender.is_some() && p.master_id() == sender => {}
        Caller::Is(p) => {
            return Err(tonic::Status::permission_denied(format!(
                "{p} may not send raft messages as master {}",
                sender.map_or("?".to_string(), |s| s.to_string())
            )))
        }
    }
    if term >= TERM_MAX {
        return Err(tonic::Status::invalid_argument(format!(
            "raft term {term} is out of range (at most {TERM_MAX})"
        )));
    }
    Ok(())
}

impl RaftServer {
    /// Why a vote request must be refused before openraft sees it: its candidate is not a voter
    /// of the membership this master knows (a removed master that kept running, or a stranger).
    /// Raft itself would let such a candidate raise everyone's term at every election timeout
    /// and unseat each leader as it is elected. Refusing a vote is always safe; a master whose
    /// membership is still empty (before bootstrap reaches it) refuses nothing.
    fn not_a_voter(&self, r: &VoteRequest<NodeId>) -> Option<String> {
        let candidate = r.vote.leader_id().voted_for()?;
        let m = self.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        if membership.voter_ids().next().is_none() || membership.voter_ids().any(|v| v == candidate)
        {
            return None;
        }
        Some(format!(
            "master {candidate} is not a voter of this group; its vote request is refused"
        ))
    }
}

#[tonic::async_trait]
impl RaftService for RaftServer {
    async fn raft(
        &self,
        request: tonic::Request<RaftRequest>,
    ) -> Result<tonic::Response<RaftReply>, tonic::Status> {
        let caller = shale_security::caller(&request)?;
        let req = request.get_ref();
        match RaftKind::try_from(req.kind) {
            Ok(RaftKind::AppendEntries) => {
                let r: AppendEntriesRequest<TypeConfig> = decode(&req.payload)?;
                let leader = r.vote.leader_id();
                refuse(&caller, Some(leader.node_id), leader.term)?;
                let later = r
                    .prev_log_id
                    .iter()
                    .chain(r.entries.iter().map(|e| &e.log_id))
                    .any(|l| l.leader_id.term > leader.term);
                if later {
                    return Err(tonic::Status::invalid_argument(
                        "append entries carrying log ids from a later term than the leader's",
                    ));
                }
                let (t, label) = (
                    std::time::Instant::now(),
                    kind_label(RaftKind::AppendEntries, r.entries.len()),
                );
                // From the leader this master follows (or a newer one): heard, on arrival. openraft
                // may take long to handle it (its core busy applying a large entry); it counts the
                // time from when it does, and so must the pre-vote, or a busy follower would ask
                // for an election while its leader's messages wait in the queue.
                if r.vote.is_committed() && r.vote >= self.raft.metrics().borrow().vote {
                    self.prevote.contact.heard();
                }
                let reply = self.raft.append_entries(r).await;
                metrics::histogram!(HANDLE_SECONDS, "kind" => label)
                    .record(t.elapsed().as_secs_f64());
                if matches!(
                    reply,
                    Ok(AppendEntriesResponse::Success
                        | AppendEntriesResponse::PartialSuccess(_)
                        | AppendEntriesResponse::Conflict)
                ) {
                    self.prevote.contact.heard();
                }
                encode(&reply)
            }
            Ok(RaftKind::Vote) => {
                let r: VoteRequest<NodeId> = decode(&req.payload)?;
                let candidate = r.vote.leader_id();
                refuse(&caller, candidate.voted_for(), candidate.term)?;
                if r.last_log_id
                    .is_some_and(|l| l.leader_id.term > candidate.term)
                {
                    return Err(tonic::Status::invalid_argument(
                        "a vote request whose last log entry is from a later term than its own",
                    ));
                }
                if let Some(why) = self.not_a_voter(&r) {
                    return Err(tonic::Status::permission_denied(why));
                }
                if !self.lease.may_vote() {
                    // It may have acknowledged a leader just before it stopped, and that
                    // leader serves reads on the strength of it (lease.rs).
                    return Err(tonic::Status::unavailable(
                        "this master started less than a leader lease ago; it does not vote yet",
                    ));
                }
                let reply = self.raft.vote(r).await;
                if reply.as_ref().is_ok_and(|v| v.vote_granted) {
                    // Its candidate is about to lead: no pre-vote of this master's meanwhile.
                    self.prevote.contact.heard();
                }
                encode(&reply)
            }
            Ok(RaftKind::InstallSnapshot) => {
                let r: InstallSnapshotRequest<TypeConfig> = decode(&req.payload)?;
                let leader = r.vote.leader_id();
                refuse(&caller, Some(leader.node_id), leader.term)?;
                let sent = r.vote;
                let reply = self.raft.install_snapshot(r).await;
                if reply.as_ref().is_ok_and(|v| v.vote <= sent) {
                    self.prevote.contact.heard();
                }
                encode(&reply)
            }
            Ok(RaftKind::PreVote) => {
                let r: super::prevote::PreVoteRequest = decode(&req.payload)?;
                refuse(&caller, Some(r.candidate), r.term)?;
                encode(&self.prevote.answer(&self.raft, &r).await)
            }
            _ => Err(tonic::Status::invalid_argument(format!(
                "unknown raft message kind {}",
                req.kind
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{LogId, Request};
    use crate::sm::Command;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, Vote};

    fn req(sizes: &[usize]) -> AppendEntriesRequest<TypeConfig> {
        let entries = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
                payload: EntryPayload::Normal(Request {
                    cmds: vec![Command::Mkdir {
                        path: "x".repeat(*n),
                        parents: false,
                    }],
                    time_ms: 1,
                }),
            })
            .collect();
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries,
        }
    }

    #[test]
    fn payloads_are_cut_by_bytes_but_carry_at_least_one_entry() {
        let mut r = req(&[100, 100, 100]);
        assert_eq!(limit_append(&mut r, 10_000), None);
        assert_eq!(r.entries.len(), 3);
        let mut r = req(&[400, 400, 400, 400]);
        let last = limit_append(&mut r, 1000).map(|l| l.index);
        assert_eq!(last, Some(2));
        assert_eq!(r.entries.len(), 2);
        let mut r = req(&[5000, 10]);
        assert_eq!(limit_append(&mut r, 1000).map(|l| l.index), Some(1));
        assert_eq!(r.entries.len(), 1);
        let mut r = req(&[]);
        assert_eq!(limit_append(&mut r, 1000), None);
    }
}
