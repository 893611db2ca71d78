//! Talking to the master group: any master can be asked; a follower names the leader in the
//! `shale-leader` metadata and the client goes there. Transient failures (no leader yet, a dead
//! or stopped master, timeouts) are retried with backoff until a deadline.
use crate::error::{ClientError, Result};
use shale_proto::metapb::master_service_client::MasterServiceClient;
use shale_proto::metapb::RequestId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

pub struct Masters {
    /// This client's session id (random, never 0): the holder of its writer leases and the
    /// first half of every request id.
    pub client_id: u64,
    next_seq: AtomicU64,
    addrs: Vec<String>,
    leader: Mutex<usize>,
    channels: Mutex<HashMap<String, Channel>>,
    pub call_timeout: Duration,
    pub retry_for: Duration,
}

fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

impl Masters {
    pub fn new(addrs: Vec<String>, call_timeout: Duration, retry_for: Duration) -> Result<Masters> {
        if addrs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no master addresses given".into(),
            ));
        }
        for a in &addrs {
            if !a.contains(':') {
                return Err(ClientError::InvalidArgument(format!(
                    "master address {a:?} is not host:port"
                )));
            }
        }
        Ok(Masters {
            client_id: fastrand::u64(1..),
            next_seq: AtomicU64::new(1),
            addrs,
            leader: Mutex::new(0),
            channels: Mutex::new(HashMap::new()),
            call_timeout,
            retry_for,
        })
    }

    /// A fresh request id: every attempt of one call carries the same one, so the masters
    /// apply it at most once and answer a retry with the first reply.
    pub fn request_id(&self) -> Option<RequestId> {
        Some(RequestId {
            client_id: self.client_id,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        })
    }

    fn svc(&self, addr: &str) -> Result<MasterServiceClient<Channel>> {
        let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = ch.get(addr) {
            return Ok(MasterServiceClient::new(c.clone()).max_decoding_message_size(64 << 20));
        }
        let c = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| ClientError::InvalidArgument(format!("bad master address {addr}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .timeout(self.call_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        ch.insert(addr.to_string(), c.clone());
        Ok(MasterServiceClient::new(c).max_decoding_message_size(64 << 20))
    }

    /// Runs `op` on the leader (or, for follower-served calls, on whichever master answers).
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(MasterServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(20);
        loop {
            let i = *self.leader.lock().unwrap_or_else(|p| p.into_inner());
            let addr = &self.addrs[i % self.addrs.len()];
            match op(self.svc(addr)?).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable(&s) => {
                    let last = format!("{addr}: {}", s.message());
                    let hint = s
                        .metadata()
                        .get("shale-leader")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|h| self.addrs.iter().position(|a| a == h));
                    *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = hint.unwrap_or(i + 1);
                    if Instant::now() >= deadline {
                        return Err(ClientError::Unavailable(last));
                    }
                    if hint.is_none() {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                }
                Err(s) => return Err(s.into()),
            }
        }
    }
}
