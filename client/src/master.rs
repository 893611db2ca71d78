//! Talking to the master group: any master can be asked; a follower names the leader in the
//! `shale-leader` metadata and the client goes there, even when that master is not in the list it
//! was given (any subset of the group is enough to find it; at most [`LEARNED_MAX`] addresses are
//! learned this way). Transient failures (no leader yet, a dead or stopped master, timeouts) are
//! retried with backoff until a deadline; masters also name every member (`shale-masters`
//! metadata, `Leader` replies), so a client given one master can reach the others when that
//! one is cut off; giving up reports the most telling failure seen (a
//! master's own error or a connection failure), never a mere "not the leader" redirect.
use crate::error::{ClientError, Result};
use shale_proto::metapb::master_service_client::MasterServiceClient;
use shale_proto::metapb::{Empty, RequestId};
use shale_security::bearer::Attach;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A master's service as this client calls it (with its user token, when it has one).
pub type MasterSvc = MasterServiceClient<InterceptedService<Channel, Attach>>;

#[derive(Debug)]
pub struct Masters {
    /// This client's session id (random, never 0): the holder of its writer leases and the
    /// first half of every request id.
    pub client_id: u64,
    next_seq: AtomicU64,
    book: Mutex<Book>,
    channels: Mutex<HashMap<String, Channel>>,
    pub call_timeout: Duration,
    pub retry_for: Duration,
    transport: shale_security::Transport,
    /// Adds the user token (if any) to every request.
    attach: Attach,
    /// Background clean-ups (abandoning files whose writers were dropped) not yet known done.
    cleanups: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A call to the leader slower than this makes the client ask the other masters who leads.
const WATCH_AFTER: Duration = Duration::from_millis(300);
/// How often, then, and how long each answer may take.
const WATCH_EVERY: Duration = Duration::from_millis(200);
const ASK_TIMEOUT: Duration = Duration::from_millis(300);

/// At most this many master addresses are learned from leader hints beyond the given ones.
pub const LEARNED_MAX: usize = 16;

/// Which masters this client knows and which one it believes leads.
#[derive(Debug)]
struct Book {
    addrs: Vec<String>,
    given: usize,
    leader: usize,
}

impl Book {
    /// The index of `addr`, learning it if it is new (bounded).
    fn index_of(&mut self, addr: &str) -> Option<usize> {
        if let Some(i) = self.addrs.iter().position(|a| a == addr) {
            return Some(i);
        }
        if self.addrs.len() >= self.given + LEARNED_MAX || !addr.contains(':') {
            return None;
        }
        self.addrs.push(addr.to_string());
        Some(self.addrs.len() - 1)
    }
}

/// Whether a failed call may still have taken effect: its master said so
/// (`shale_proto::OUTCOME_HEADER`), or no answer came in time.
pub(crate) fn outcome_unknown(s: &Status) -> bool {
    matches!(s.code(), Code::DeadlineExceeded | Code::Cancelled)
        || s.metadata()
            .get(shale_proto::OUTCOME_HEADER)
            .is_some_and(|v| v.as_bytes() == shale_proto::OUTCOME_UNKNOWN.as_bytes())
}

fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

impl Masters {
    pub fn new(
        addrs: Vec<String>,
        call_timeout: Duration,
        retry_for: Duration,
        transport: shale_security::Transport,
    ) -> Result<Masters> {
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
        let attach = Attach::new(transport.bearer()).map_err(ClientError::InvalidArgument)?;
        Ok(Masters {
            attach,
            client_id: fastrand::u64(1..),
            next_seq: AtomicU64::new(1),
            book: Mutex::new(Book {
                given: addrs.len(),
                addrs,
                leader: 0,
            }),
            channels: Mutex::new(HashMap::new()),
            call_timeout,
            retry_for,
            transport,
            cleanups: Mutex::new(Vec::new()),
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

    fn svc(&self, addr: &str) -> Result<MasterSvc> {
        let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let client = |c: Channel| {
            MasterServiceClient::with_interceptor(c, self.attach.clone())
                .max_decoding_message_size(64 << 20)
        };
        if let Some(c) = ch.get(addr) {
            return Ok(client(c.clone()));
        }
        let c = self
            .transport
            .channel(addr, |ep| {
                ep.connect_timeout(Duration::from_millis(500))
                    .timeout(self.call_timeout)
                    .http2_keep_alive_interval(Duration::from_secs(1))
                    .keep_alive_timeout(Duration::from_secs(2))
                    .tcp_nodelay(true)
            })
            .map_err(ClientError::InvalidArgument)?;
        ch.insert(addr.to_string(), c.clone());
        Ok(client(c))
    }

    /// Runs `fut` in the background (on the current runtime, if any), remembered so that
    /// [`Masters::settle`] can wait for it.
    pub fn cleanup(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut c = self.cleanups.lock().unwrap_or_else(|p| p.into_inner());
        c.retain(|h| !h.is_finished());
        c.push(rt.spawn(fut));
    }

    /// Waits (at most `within`) for the background clean-ups started so far; whether all ended.
    /// Clean-ups that a clean-up starts (a dropped writer's task, ending, abandons its file)
    /// are waited for too.
    pub async fn settle(&self, within: Duration) -> bool {
        let all = async {
            loop {
                let handles: Vec<_> =
                    std::mem::take(&mut *self.cleanups.lock().unwrap_or_else(|p| p.into_inner()));
                if handles.is_empty() {
                    return;
                }
                futures_util::future::join_all(handles).await;
            }
        };
        tokio::time::timeout(within, all).await.is_ok()
    }

    /// Resolves, once a call to `addr` has been waiting for [`WATCH_AFTER`], with the address
    /// of another master that some master names as the leader (a failover happened while the
    /// call waited on a stopped or cut-off old leader). Never resolves while every master that
    /// answers names `addr`.
    async fn another_leader(&self, addr: &str) -> String {
        tokio::time::sleep(WATCH_AFTER).await;
        loop {
            // Every known master, `addr` too: one cut off from the others still answers, and
            // names the members the client may not know.
            let others: Vec<String> = {
                let b = self.book.lock().unwrap_or_else(|p| p.into_inner());
                b.addrs.clone()
            };
            let asks = others.iter().map(|o| async move {
                let mut svc = self.svc(o).ok()?;
                let r = tokio::time::timeout(ASK_TIMEOUT, svc.leader(Empty {}))
                    .await
                    .ok()?
                    .ok()?
                    .into_inner();
                Some(r)
            });
            let mut found = None;
            for r in futures_util::future::join_all(asks)
                .await
                .into_iter()
                .flatten()
            {
                self.learn(&r.members);
                if !r.leader_address.is_empty() && r.leader_address != addr && found.is_none() {
                    found = Some(r.leader_address);
                }
            }
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    }

    /// Adds the masters' addresses a master told of (bounded, see [`LEARNED_MAX`]).
    fn learn(&self, members: &[String]) {
        let mut b = self.book.lock().unwrap_or_else(|p| p.into_inner());
        for m in members {
            let _ = b.index_of(m);
        }
    }

    /// Runs `op` on the leader (or, for follower-served calls, on whichever master answers),
    /// retrying transient failures for the configured time.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(MasterSvc) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        self.call_for(self.retry_for, op).await
    }

    /// [`Masters::call`], retrying for `retry_for` instead.
    pub async fn call_for<T, F, Fut>(&self, retry_for: Duration, op: F) -> Result<T>
    where
        F: Fn(MasterSvc) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + retry_for;
        let mut backoff = Duration::from_millis(20);
        // The most telling failure so far: a redirect only counts when nothing else was seen.
        let mut last: Option<String> = None;
        loop {
            let (i, addr) = {
                let b = self.book.lock().unwrap_or_else(|p| p.into_inner());
                let i = b.leader % b.addrs.len();
                (i, b.addrs[i].clone())
            };
            // The call, unless another master is named leader meanwhile: then it is sent there
            // (with the same request id, so it takes effect at most once).
            let outcome = tokio::select! {
                r = op(self.svc(&addr)?) => r,
                moved = self.another_leader(&addr) => {
                    let mut b = self.book.lock().unwrap_or_else(|p| p.into_inner());
                    b.leader = b.index_of(&moved).unwrap_or(i + 1);
                    last = Some(format!("{addr}: no answer ({moved} leads now)"));
                    drop(b);
                    if Instant::now() >= deadline {
                        return Err(ClientError::Unavailable(format!(
                            "{} (gave up after {:.0?})",
                            last.unwrap_or_default(),
                            retry_for
                        )));
                    }
                    continue;
                }
            };
            match outcome {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable(&s) => {
                    if let Some(m) = s
                        .metadata()
                        .get("shale-masters")
                        .and_then(|v| v.to_str().ok())
                    {
                        let members: Vec<String> = m.split(',').map(str::to_string).collect();
                        self.learn(&members);
                    }
                    let hint = s
                        .metadata()
                        .get("shale-leader")
                        .and_then(|v| v.to_str().ok())
                        .filter(|h| *h != addr)
                        .map(str::to_string);
                    if hint.is_none() || last.is_none() {
                        last = Some(format!("{addr}: {}", s.message()));
                    }
                    let next = {
                        let mut b = self.book.lock().unwrap_or_else(|p| p.into_inner());
                        let next = hint.as_deref().and_then(|h| b.index_of(h));
                        b.leader = next.unwrap_or(i + 1);
                        next
                    };
                    if Instant::now() >= deadline {
                        return Err(ClientError::Unavailable(format!(
                            "{} (gave up after {:.0?})",
                            last.unwrap_or_default(),
                            retry_for
                        )));
                    }
                    if next.is_none() {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                }
                Err(s) => return Err(s.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_in_doubt_when_its_master_says_so_or_no_answer_came() {
        let mut marked = Status::unavailable("remove 1: lost its leadership");
        marked.metadata_mut().insert(
            shale_proto::OUTCOME_HEADER,
            tonic::metadata::MetadataValue::from_static(shale_proto::OUTCOME_UNKNOWN),
        );
        assert!(outcome_unknown(&marked));
        assert!(outcome_unknown(&Status::deadline_exceeded("timeout")));
        assert!(outcome_unknown(&Status::cancelled("dropped")));
        // A redirect, or a refusal, took no effect.
        assert!(!outcome_unknown(&Status::unavailable(
            "master 2 is not the leader"
        )));
        assert!(!outcome_unknown(&Status::not_found(
            "master 7 is not a voter"
        )));
    }

    #[test]
    fn learned_addresses_are_bounded_and_checked() {
        let mut b = Book {
            addrs: vec!["a:1".into()],
            given: 1,
            leader: 0,
        };
        assert_eq!(b.index_of("a:1"), Some(0));
        assert_eq!(b.index_of("no-port"), None);
        for i in 0..LEARNED_MAX {
            assert_eq!(b.index_of(&format!("h:{i}")), Some(i + 1));
        }
        assert_eq!(b.index_of("h:0"), Some(1));
        assert_eq!(b.index_of("one-more:1"), None);
        assert_eq!(b.addrs.len(), 1 + LEARNED_MAX);
    }
}
