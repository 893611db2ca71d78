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
use tonic::transport::{Channel, Endpoint};

/// Largest Raft message accepted (snapshot chunks are 3 MiB; entries batches are bounded).
pub const RAFT_MESSAGE_MAX_BYTES: usize = 64 << 20;

pub struct Network;

pub struct Conn {
    target: NodeId,
    addr: String,
    client: Option<RaftServiceClient<Channel>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Conn {
        Conn {
            target,
            addr: node.addr.clone(),
            client: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WireErr(String);

impl Conn {
    fn client(&mut self) -> Result<RaftServiceClient<Channel>, Unreachable> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| Unreachable::new(&WireErr(e.to_string())))?
            .connect_timeout(std::time::Duration::from_millis(500))
            .tcp_nodelay(true);
        let c = RaftServiceClient::new(ep.connect_lazy())
            .max_decoding_message_size(RAFT_MESSAGE_MAX_BYTES)
            .max_encoding_message_size(RAFT_MESSAGE_MAX_BYTES);
        self.client = Some(c.clone());
        Ok(c)
    }

    async fn call<Req, Resp, E>(
        &mut self,
        kind: RaftKind,
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
        let reply = match client.raft(request).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                self.client = None;
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
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(RaftKind::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RaftKind::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(RaftKind::Vote, &rpc, &option).await
    }
}

/// The receiving side: hands each message to the local Raft.
pub struct RaftServer {
    pub raft: MasterRaft,
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
        let req = request.into_inner();
        match RaftKind::try_from(req.kind) {
            Ok(RaftKind::AppendEntries) => {
                let r: AppendEntriesRequest<TypeConfig> = decode(&req.payload)?;
                encode(&self.raft.append_entries(r).await)
            }
            Ok(RaftKind::Vote) => {
                let r: VoteRequest<NodeId> = decode(&req.payload)?;
                if let Some(why) = self.not_a_voter(&r) {
                    return Err(tonic::Status::permission_denied(why));
                }
                encode(&self.raft.vote(r).await)
            }
            Ok(RaftKind::InstallSnapshot) => {
                let r: InstallSnapshotRequest<TypeConfig> = decode(&req.payload)?;
                encode(&self.raft.install_snapshot(r).await)
            }
            _ => Err(tonic::Status::invalid_argument(format!(
                "unknown raft message kind {}",
                req.kind
            ))),
        }
    }
}
