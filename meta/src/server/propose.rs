//! Proposal batching: concurrent commands are gathered into one Raft entry.
//!
//! openraft 0.9 flushes each appended entry before it takes the next client write, so one
//! command per entry caps the group at one fsync per command. The proposer takes the first
//! waiting command plus every command already queued (up to [`BATCH_MAX`]), proposes them as one
//! entry, and hands each caller its own reply. Commands arriving while an entry is in flight
//! form the next batch. One entry in flight measured best (`shale-bench meta`, 64 clients:
//! 11.3k creates/s with 1, 8.9k with 4, 6.7k with 8): the larger the batch, the fewer fsyncs
//! and replication rounds per command.
//!
//! A `Batch` RPC's commands ([`Proposer::propose_many`]) always go into one entry together
//! (applied in order, one after the other). Batches wait in a queue of their own, and an entry
//! takes every single command waiting but at most one batch: a bulk load (8 loaders sending
//! 1,000-command batches) no longer makes a lone `create` wait behind all of them (p99 1.46 s
//! at 1 M files before, `shale-bench meta` scale phase).
use crate::raft::types::{MasterRaft, Request};
use crate::sm::{Command, Reply};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

pub const BATCH_MAX: usize = 512;
pub const INFLIGHT_MAX: usize = 1;
const QUEUE_MAX: usize = 4096;
/// `Batch`es waiting at most (more callers wait to queue).
const BATCHES_QUEUED_MAX: usize = 64;

/// Why a proposal did not produce a reply.
#[derive(Debug)]
pub enum ProposeError {
    NotLeader,
    Failed(String),
}

type Waiter = oneshot::Sender<Result<Reply, ProposeError>>;
type ManyWaiter = oneshot::Sender<Result<Vec<Reply>, ProposeError>>;

/// What waits for a proposal: one command, or several that share an entry.
enum Job {
    One(Command, Waiter),
    Many(Vec<Command>, ManyWaiter),
}

impl Job {
    /// The caller has gone (its RPC was cancelled or timed out, and the handler dropped): no
    /// one can be told the outcome, so the job is not proposed. Nothing was acknowledged; a
    /// retry of the call proposes it afresh.
    fn abandoned(&self) -> bool {
        match self {
            Job::One(_, w) => w.is_closed(),
            Job::Many(_, w) => w.is_closed(),
        }
    }
}

/// The commands of one entry and who gets their replies, gathered job by job.
#[derive(Default)]
struct Gather {
    cmds: Vec<Command>,
    waiters: Vec<Wait>,
    has_batch: bool,
}

impl Gather {
    /// Adds `job`, unless its caller has gone.
    fn take(&mut self, job: Job) {
        if job.abandoned() {
            return;
        }
        match job {
            Job::One(c, w) => {
                self.cmds.push(c);
                self.waiters.push(Wait::One(w));
            }
            Job::Many(cs, w) => {
                self.waiters.push(Wait::Many(cs.len(), w));
                self.cmds.extend(cs);
                self.has_batch = true;
            }
        }
    }
}

/// Who gets the replies of a job's commands.
enum Wait {
    One(Waiter),
    Many(usize, ManyWaiter),
}

impl Wait {
    fn fail(self, e: impl Fn() -> ProposeError) {
        match self {
            Wait::One(w) => {
                let _ = w.send(Err(e()));
            }
            Wait::Many(_, w) => {
                let _ = w.send(Err(e()));
            }
        }
    }
}

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Job>,
    batches: mpsc::Sender<Job>,
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Proposer {
    pub fn start(raft: MasterRaft) -> Proposer {
        Proposer::with_writer(move |req| {
            let raft = raft.clone();
            async move {
                let leadership = raft.server_metrics();
                let written = async {
                    match raft.client_write(req).await {
                        Ok(resp) => Ok(resp.data.0),
                        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                            Err(ProposeError::NotLeader)
                        }
                        Err(e) => Err(ProposeError::Failed(e.to_string())),
                    }
                };
                while_leading(written, leadership, leading_term)
                    .await
                    .unwrap_or_else(|lost| {
                        Err(ProposeError::Failed(format!(
                            "{lost}: retry with the same request id"
                        )))
                    })
            }
        })
    }

    /// A proposer over `write`, which commits one entry and returns its replies in order.
    fn with_writer<W, F>(write: W) -> Proposer
    where
        W: Fn(Request) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = Result<Vec<Reply>, ProposeError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let (batches, batch_rx) = mpsc::channel(BATCHES_QUEUED_MAX);
        tokio::spawn(run(write, rx, batch_rx));
        Proposer { tx, batches }
    }

    pub async fn propose(&self, cmd: Command) -> Result<Reply, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::One(cmd, tx))
            .await
            .map_err(|_| ProposeError::Failed("proposer stopped".into()))?;
        rx.await
            .map_err(|_| ProposeError::Failed("proposal dropped".into()))?
    }

    /// Proposes `cmds` in one entry; their replies in order.
    pub async fn propose_many(&self, cmds: Vec<Command>) -> Result<Vec<Reply>, ProposeError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        self.batches
            .send(Job::Many(cmds, tx))
            .await
            .map_err(|_| ProposeError::Failed("proposer stopped".into()))?;
        rx.await
            .map_err(|_| ProposeError::Failed("proposal dropped".into()))?
    }
}

/// Awaits `write` (an entry proposed through openraft, or a membership change) for as long as
/// this master keeps the leadership it has, or gains, while it waits: `leading` gives the term
/// it leads in, from the latest of `watch`. Once it led in a term and no longer leads in it,
/// the wait ends with [`Lost`].
///
/// openraft 0.9 can lose an entry's caller: a leader that proposed an entry and was deposed
/// before it committed, then caught up through a snapshot that covers the entry's index (its
/// own log shorter than the snapshot, so nothing is truncated), purges the entry without telling
/// the caller, whose `client_write` then never returns. With one entry in flight, that master's
/// proposer would hang every later write, and when it led again it accepted none (seen in
/// `ops/tests/masters.rs`). The outcome is unknown to this master (the entry may have reached a
/// follower and commit under the next leader): the error says so, and a retry with the same
/// request id gets the first answer.
pub(super) async fn while_leading<T, F>(
    write: F,
    mut watch: tokio::sync::watch::Receiver<T>,
    leading: impl Fn(&T) -> Option<u64>,
) -> Result<F::Output, Lost>
where
    F: std::future::Future,
{
    let mut led = leading(&watch.borrow_and_update());
    tokio::pin!(write);
    loop {
        tokio::select! {
            biased;
            r = &mut write => return Ok(r),
            changed = watch.changed() => {
                if changed.is_err() {
                    // Raft stopped: the write will not finish either.
                    return Ok(write.await);
                }
                let now = leading(&watch.borrow_and_update());
                match (led, now) {
                    (Some(term), now) if now != Some(term) => {
                        tracing::warn!(
                            term,
                            "lost the leadership with an entry in flight; its callers are told \
                             its outcome is unknown"
                        );
                        return Err(Lost { term });
                    }
                    (None, Some(t)) => led = Some(t),
                    _ => {}
                }
            }
        }
    }
}

/// The term this master leads in, if it leads (for [`while_leading`]).
pub(super) fn leading_term(
    m: &openraft::metrics::RaftServerMetrics<u64, crate::raft::types::Node>,
) -> Option<u64> {
    (m.state == ServerState::Leader && m.current_leader == Some(m.id))
        .then_some(m.vote.leader_id().term)
}

/// A master stopped leading while something it proposed was in flight: its outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lost {
    pub term: u64,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this master lost its leadership (term {}) while the entry was in flight; it may \
             still commit",
            self.term
        )
    }
}

async fn run<W, F>(write: W, mut rx: mpsc::Receiver<Job>, mut batches: mpsc::Receiver<Job>)
where
    W: Fn(Request) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Result<Vec<Reply>, ProposeError>> + Send + 'static,
{
    let inflight = Arc::new(Semaphore::new(INFLIGHT_MAX));
    loop {
        let first = tokio::select! {
            biased;
            Some(j) = rx.recv() => j,
            Some(j) = batches.recv() => j,
            else => return,
        };
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        // Jobs whose callers gave up while they queued are dropped here, at the last moment
        // before proposing: under overload, a client that times out and retries would
        // otherwise have every attempt committed, one after the other, and the queue would
        // grow with the retries (a bulk load at 3 M files never recovered from one slow
        // round).
        let mut entry = Gather::default();
        entry.take(first);
        // Every single command waiting (up to the cap), then at most one live batch.
        while entry.cmds.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(x) => entry.take(x),
                Err(_) => break,
            }
        }
        while !entry.has_batch {
            match batches.try_recv() {
                Ok(x) => entry.take(x),
                Err(_) => break,
            }
        }
        let Gather { cmds, waiters, .. } = entry;
        if waiters.is_empty() {
            continue;
        }
        let written = write(Request {
            cmds,
            time_ms: now_ms(),
        });
        tokio::spawn(async move {
            match written.await {
                Ok(replies) => {
                    let mut replies = replies.into_iter();
                    for w in waiters {
                        match w {
                            Wait::One(w) => {
                                let r = replies
                                    .next()
                                    .ok_or_else(|| ProposeError::Failed("missing reply".into()));
                                let _ = w.send(r);
                            }
                            Wait::Many(k, w) => {
                                let got: Vec<Reply> = replies.by_ref().take(k).collect();
                                let r = if got.len() == k {
                                    Ok(got)
                                } else {
                                    Err(ProposeError::Failed("missing reply".into()))
                                };
                                let _ = w.send(r);
                            }
                        }
                    }
                }
                Err(ProposeError::NotLeader) => {
                    for w in waiters {
                        w.fail(|| ProposeError::NotLeader);
                    }
                }
                Err(ProposeError::Failed(msg)) => {
                    for w in waiters {
                        w.fail(|| ProposeError::Failed(msg.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::Poll;
    use std::time::Duration;

    fn mkdir(p: &str) -> Command {
        Command::Mkdir {
            path: p.into(),
            parents: false,
        }
    }

    /// Polls `f` once: enough for a proposal to reach the proposer's queue.
    async fn queue<F: Future>(mut f: Pin<&mut F>) {
        std::future::poll_fn(|cx| {
            let _ = f.as_mut().poll(cx);
            Poll::Ready(())
        })
        .await
    }

    fn paths(r: &Request) -> Vec<String> {
        r.cmds
            .iter()
            .map(|c| match c {
                Command::Mkdir { path, .. } => path.clone(),
                _ => String::new(),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_write_fails_once_its_master_stops_leading_and_not_before() {
        let bound = Duration::from_secs(10);
        let term = |t: &Option<u64>| *t;
        // A write that never finishes (openraft lost its caller): leading in term 3, then a
        // change that keeps it (say, membership), then deposed.
        let (tx, rx) = tokio::sync::watch::channel(Some(3));
        let stuck = std::future::pending::<Result<Vec<Reply>, ProposeError>>();
        let w = tokio::spawn(while_leading(stuck, rx, term));
        tokio::task::yield_now().await;
        tx.send_replace(Some(3));
        tokio::task::yield_now().await;
        assert!(!w.is_finished());
        tx.send_replace(None);
        let r = tokio::time::timeout(bound, w).await.unwrap().unwrap();
        assert_eq!(r.err(), Some(Lost { term: 3 }));
        // Re-elected in a later term: the entry of the earlier one is in doubt too.
        let (tx, rx) = tokio::sync::watch::channel(Some(3));
        let stuck = std::future::pending::<Result<Vec<Reply>, ProposeError>>();
        let w = tokio::spawn(while_leading(stuck, rx, term));
        tokio::task::yield_now().await;
        tx.send_replace(Some(4));
        let r = tokio::time::timeout(bound, w).await.unwrap().unwrap();
        assert_eq!(r.err(), Some(Lost { term: 3 }));
        // Not leading when proposed, leading by the time openraft took it: it waits for it.
        let (tx, rx) = tokio::sync::watch::channel(None);
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let write = async move {
            done_rx.await.map_err(|_| ProposeError::NotLeader)?;
            Ok::<_, ProposeError>(vec![Reply::Done])
        };
        let w = tokio::spawn(while_leading(write, rx, term));
        tokio::task::yield_now().await;
        tx.send_replace(Some(5));
        tokio::task::yield_now().await;
        assert!(!w.is_finished());
        done_tx.send(()).unwrap();
        let r = tokio::time::timeout(bound, w).await.unwrap().unwrap();
        assert!(matches!(r, Ok(Ok(ref v)) if v[..] == [Reply::Done]));
        // A write that finishes while its master leads keeps its result, whatever follows.
        let (tx, rx) = tokio::sync::watch::channel(Some(6));
        let r = while_leading(async { Ok::<_, ProposeError>(vec![Reply::Done]) }, rx, term).await;
        assert!(matches!(r, Ok(Ok(ref v)) if v[..] == [Reply::Done]));
        drop(tx);
    }

    #[tokio::test]
    async fn jobs_whose_callers_left_are_not_proposed() {
        let entries = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let gate = Arc::new(Semaphore::new(0));
        let (e, g) = (entries.clone(), gate.clone());
        let p = Proposer::with_writer(move |req| {
            e.lock().unwrap().push(paths(&req));
            let (g, n) = (g.clone(), req.cmds.len());
            async move {
                g.acquire()
                    .await
                    .map_err(|_| ProposeError::NotLeader)?
                    .forget();
                Ok(vec![Reply::Done; n])
            }
        });
        // The first entry is in flight and held there.
        let first = tokio::spawn({
            let p = p.clone();
            async move { p.propose(mkdir("/x")).await }
        });
        for _ in 0..1000 {
            if !entries.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(entries.lock().unwrap().len(), 1);
        // Four more queue behind it; the callers of two of them give up.
        let mut a = Box::pin(p.propose(mkdir("/a")));
        let mut b = Box::pin(p.propose(mkdir("/b")));
        let mut c = Box::pin(p.propose_many(vec![mkdir("/c1"), mkdir("/c2")]));
        let mut d = Box::pin(p.propose_many(vec![mkdir("/d1"), mkdir("/d2")]));
        queue(a.as_mut()).await;
        queue(b.as_mut()).await;
        queue(c.as_mut()).await;
        queue(d.as_mut()).await;
        drop((b, c));
        gate.add_permits(2);
        let bound = Duration::from_secs(10);
        assert!(matches!(
            tokio::time::timeout(bound, first).await,
            Ok(Ok(Ok(Reply::Done)))
        ));
        assert!(matches!(
            tokio::time::timeout(bound, a).await,
            Ok(Ok(Reply::Done))
        ));
        let got = tokio::time::timeout(bound, d).await.unwrap().unwrap();
        assert_eq!(got.len(), 2);
        let entries = entries.lock().unwrap().clone();
        assert_eq!(entries, vec![vec!["/x"], vec!["/a", "/d1", "/d2"]]);
    }
}
