//! The operator's dashboard on a master's status port: `/` (HTML, [`render`]) and
//! `/api/dashboard` (the same figures as JSON), plus `/api/status` (this master's `Status`,
//! as `shale status --json` prints it).
//!
//! A sampler task asks every master for its `Status` once a second (this one, then every
//! member it lists, over channels it keeps), keeps the latest answers, and feeds the
//! cluster's counters (chunk bytes written and read per chunkserver, client requests per
//! master) and the leader's healing figures into a [`history::History`] of five minutes. A
//! page view only reads that memory (never an RPC), so it is cheap and cannot hang; the
//! figures are at most a second old.
//!
//! Invariants: one sampling round at a time, each call bounded by the status channel's
//! timeouts (1 s connect, 2 s answer); at most [`CHANNELS_MAX`] master channels are kept.
pub mod history;
pub mod render;

use history::{Counters, History};
use serde_json::{json, Value};
use shale_proto::metapb::master_service_client::MasterServiceClient;
use shale_proto::metapb::{Empty, MasterInfo, StatusReply};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

/// How often the sampler asks the masters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Channels to other masters kept at most (a group has a handful; beyond this, start over).
const CHANNELS_MAX: usize = 64;

#[derive(Default)]
struct Latest {
    own: Option<StatusReply>,
    masters: Vec<(MasterInfo, Option<StatusReply>)>,
    history: History,
}

impl Latest {
    /// The leader's status among the answers (its healing figures are the real ones).
    fn leader(&self) -> Option<&StatusReply> {
        self.own
            .iter()
            .chain(self.masters.iter().filter_map(|(_, s)| s.as_ref()))
            .find(|s| s.role == "leader")
    }
}

pub struct Dashboard {
    grpc: String,
    transport: shale_security::Transport,
    latest: Mutex<Latest>,
    channels: Mutex<HashMap<String, Channel>>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Dashboard {
    /// The dashboard of the master whose gRPC port is `grpc`, with its sampler running.
    pub fn start(grpc: String, transport: &shale_security::Transport) -> Arc<Dashboard> {
        let d = Arc::new(Dashboard {
            grpc,
            transport: transport.clone(),
            latest: Mutex::new(Latest::default()),
            channels: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&d);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(d) = weak.upgrade() else { return };
                d.sample().await;
            }
        });
        d
    }

    fn latest(&self) -> std::sync::MutexGuard<'_, Latest> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn channel(&self, addr: &str) -> Option<Channel> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Some(c.clone());
        }
        let c = crate::master::status_channel(&self.transport, addr).ok()?;
        if map.len() >= CHANNELS_MAX {
            map.clear();
        }
        map.insert(addr.to_string(), c.clone());
        Some(c)
    }

    async fn status_of(&self, addr: &str) -> Option<StatusReply> {
        let mut c = MasterServiceClient::new(self.channel(addr)?);
        c.status(Empty {}).await.ok().map(|r| r.into_inner())
    }

    /// One round: every master's status, then a history sample.
    async fn sample(self: &Arc<Self>) {
        let own = self.status_of(&self.grpc).await;
        let members: Vec<MasterInfo> = match &own {
            Some(s) => s.masters.clone(),
            None => self
                .latest()
                .masters
                .iter()
                .map(|(m, _)| m.clone())
                .collect(),
        };
        let mut asks = tokio::task::JoinSet::new();
        for (i, m) in members.iter().enumerate() {
            if own.as_ref().is_some_and(|s| s.id == m.id) {
                continue;
            }
            let (me, addr) = (self.clone(), m.address.clone());
            asks.spawn(async move { (i, me.status_of(&addr).await) });
        }
        let mut answers: Vec<Option<StatusReply>> = vec![None; members.len()];
        while let Some(r) = asks.join_next().await {
            if let Ok((i, s)) = r {
                answers[i] = s;
            }
        }
        let masters: Vec<(MasterInfo, Option<StatusReply>)> = members
            .into_iter()
            .zip(answers)
            .map(|(m, s)| match (&own, s) {
                (Some(o), _) if o.id == m.id => (m, Some(o.clone())),
                (_, s) => (m, s),
            })
            .collect();
        let mut latest = self.latest();
        latest.own = own;
        latest.masters = masters;
        let mut counters = Counters {
            at_ms: unix_ms(),
            ..Default::default()
        };
        let leader = latest.leader().cloned();
        if let Some(s) = leader.as_ref().or(latest.own.as_ref()) {
            for cs in &s.chunkservers {
                if cs.heard_ms_ago.is_some() {
                    counters
                        .chunkservers
                        .insert(cs.node_id, (cs.bytes_written, cs.bytes_read));
                }
            }
        }
        for s in latest.masters.iter().filter_map(|(_, s)| s.as_ref()) {
            counters.masters.insert(s.id, s.client_requests);
        }
        let health = leader.map(|l| (l.under_replicated, l.missing, l.copying));
        latest.history.record(counters, health);
    }

    /// The HTML page.
    pub fn page(&self) -> String {
        let latest = self.latest();
        render::page(&render::View {
            asked: &self.grpc,
            own: latest.own.as_ref(),
            leader: latest.leader(),
            masters: &latest.masters,
            history: &latest.history,
        })
    }

    /// `/api/dashboard`: everything the page shows.
    pub fn json(&self) -> Value {
        let latest = self.latest();
        let leader = latest.leader();
        let h = latest.history.healing();
        let masters: Vec<Value> = latest
            .masters
            .iter()
            .map(|(m, s)| {
                json!({
                    "id": m.id,
                    "address": m.address,
                    "voter": m.voter,
                    "answering": s.is_some(),
                    "role": s.as_ref().map(|s| s.role.clone()),
                    "term": s.as_ref().map(|s| s.term),
                    "last_log_index": s.as_ref().map(|s| s.last_log_index),
                    "committed_index": s.as_ref().map(|s| s.committed_index),
                    "applied_index": s.as_ref().map(|s| s.applied_index),
                    "snapshot_index": s.as_ref().map(|s| s.snapshot_index),
                    "heard_ms_ago": m.heard_ms_ago,
                })
            })
            .collect();
        let view = leader.or(latest.own.as_ref());
        json!({
            "asked": self.grpc,
            "id": latest.own.as_ref().map(|s| s.id),
            "role": latest.own.as_ref().map(|s| s.role.clone()),
            "leader": leader.map(|l| l.id),
            "term": leader.map(|l| l.term),
            "masters": masters,
            "chunkservers": view.map_or(Value::Null, |s| {
                crate::cli::admin::chunkservers_json(s)
            }),
            "files": view.map(|s| s.files),
            "chunks": view.map(|s| s.chunks),
            "health": leader.map(|l| json!({
                "healthy": l.chunks.saturating_sub(l.under_replicated).saturating_sub(l.missing),
                "under_replicated": l.under_replicated,
                "missing": l.missing,
                "corrupt_replicas": l.bad_replicas,
                "copying": l.copying,
                "safe_mode": l.safe_mode,
                "unreported": l.unreported,
                "healing": {
                    "remaining": h.remaining,
                    "peak": h.peak,
                    "percent_done": h.percent_done,
                    "chunks_per_s": h.chunks_per_s,
                    "eta_s": h.eta_s,
                },
            })),
            "at_risk": leader.map_or(Value::Null, |l| {
                crate::cli::admin::at_risk_json(l)
            }),
            "history": latest.history.samples().iter().map(|s| json!({
                "at_ms": s.at_ms,
                "span_ms": s.span_ms,
                "write_bytes_per_s": s.write_bytes_per_s,
                "read_bytes_per_s": s.read_bytes_per_s,
                "requests_per_s": s.requests_per_s,
                "under_replicated": s.under_replicated,
                "missing": s.missing,
                "copying": s.copying,
            })).collect::<Vec<_>>(),
        })
    }
}
