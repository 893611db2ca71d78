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
    fn len(&self) -> usize {
        match self {
            Job::One(..) => 1,
            Job::Many(c, _) => c.len(),
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
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let (batches, batch_rx) = mpsc::channel(BATCHES_QUEUED_MAX);
        tokio::spawn(run(raft, rx, batch_rx));
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

async fn run(raft: MasterRaft, mut rx: mpsc::Receiver<Job>, mut batches: mpsc::Receiver<Job>) {
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
        let has_batch = matches!(first, Job::Many(..));
        let mut n = first.len();
        let mut batch = vec![first];
        // Every single command waiting (up to the cap), then at most one batch.
        while n < BATCH_MAX {
            match rx.try_recv() {
                Ok(x) => {
                    n += x.len();
                    batch.push(x);
                }
                Err(_) => break,
            }
        }
        if !has_batch {
            if let Ok(x) = batches.try_recv() {
                n += x.len();
                batch.push(x);
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let mut cmds = Vec::with_capacity(n);
            let mut waiters = Vec::with_capacity(batch.len());
            for job in batch {
                match job {
                    Job::One(c, w) => {
                        cmds.push(c);
                        waiters.push(Wait::One(w));
                    }
                    Job::Many(cs, w) => {
                        waiters.push(Wait::Many(cs.len(), w));
                        cmds.extend(cs);
                    }
                }
            }
            let req = Request {
                cmds,
                time_ms: now_ms(),
            };
            match raft.client_write(req).await {
                Ok(resp) => {
                    let mut replies = resp.data.0.into_iter();
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
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    for w in waiters {
                        w.fail(|| ProposeError::NotLeader);
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for w in waiters {
                        w.fail(|| ProposeError::Failed(msg.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}
