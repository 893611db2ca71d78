//! The only file that names openraft's traits: [`LogStore`] implements `RaftLogStorage` and
//! `RaftLogReader` over [`RaftLog`] for any type config, serializing entries, votes and log ids
//! with postcard (compact, not self-describing; the record format carries the version).
// openraft's own error type is large; these functions return it as openraft's traits require.
#![allow(clippy::result_large_err)]
use crate::log::RaftLog;
use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    LogId, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// openraft's view of a [`RaftLog`]. Cheap to clone (it is its own log reader).
pub struct LogStore<C> {
    log: Arc<RaftLog>,
    /// Bytes of entries one replication read returns at most (at least one entry).
    read_limit: usize,
    _c: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            log: self.log.clone(),
            read_limit: self.read_limit,
            _c: PhantomData,
        }
    }
}

impl<C> LogStore<C> {
    pub fn new(log: Arc<RaftLog>) -> Self {
        LogStore {
            log,
            read_limit: usize::MAX,
            _c: PhantomData,
        }
    }

    /// Replication reads (`limited_get_log_entries`) return at most `bytes` of entries (at
    /// least one). openraft 0.9 asks for up to `max_payload_entries` (300) at a time and
    /// the caller may send only a prefix of them: without a limit, each round read and
    /// decoded 300 entries of 1,000 commands to send one (a new leader catching a follower
    /// up ran both cores for tens of seconds).
    pub fn with_read_limit(mut self, bytes: usize) -> Self {
        self.read_limit = bytes.max(1);
        self
    }

    pub fn log(&self) -> &Arc<RaftLog> {
        &self.log
    }
}

impl<C: RaftTypeConfig> LogStore<C> {
    /// The index of the last committed id openraft recorded here (None: none recorded, or
    /// the record does not decode).
    pub fn committed_index(&self) -> Option<u64> {
        let b = self.log.committed()?;
        dec::<Option<LogId<C::NodeId>>>(&b).ok()?.map(|l| l.index)
    }
}

type StErr<C> = StorageError<<C as RaftTypeConfig>::NodeId>;

fn enc<T: Serialize>(v: &T) -> Result<Bytes, postcard::Error> {
    postcard::to_allocvec(v).map(Bytes::from)
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(b)
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> Option<(u64, u64)> {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => *e,
        Bound::Excluded(e) => e.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    Some((start, end))
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig,
{
    fn entries(&self, start: u64, end: u64) -> Result<Vec<C::Entry>, StErr<C>> {
        let raw = self
            .log
            .read(start, end)
            .map_err(|e| StorageIOError::read_logs(&e))?;
        Self::decode(&raw)
    }

    fn decode(raw: &[(u64, Bytes)]) -> Result<Vec<C::Entry>, StErr<C>> {
        raw.iter()
            .map(|(_, b)| dec::<C::Entry>(b).map_err(|e| StorageIOError::read_logs(&e).into()))
            .collect()
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StErr<C>> {
        match bounds(&range) {
            Some((s, e)) if s <= e => self.entries(s, e),
            _ => Ok(Vec::new()),
        }
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<C::Entry>, StErr<C>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let raw = self
            .log
            .read_limited(start, end - 1, self.read_limit)
            .map_err(|e| StorageIOError::read_logs(&e))?;
        Self::decode(&raw)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StErr<C>> {
        let last_purged_log_id = match self.log.purged() {
            Some((_, id)) => {
                Some(dec::<LogId<C::NodeId>>(&id).map_err(|e| StorageIOError::read_logs(&e))?)
            }
            None => None,
        };
        let last_log_id = match self.log.last_index() {
            Some(i) => self
                .entries(i, i)?
                .first()
                .map(|e| e.get_log_id().clone())
                .or_else(|| last_purged_log_id.clone()),
            None => last_purged_log_id.clone(),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StErr<C>> {
        let b = enc(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.log
            .save_vote(b)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StErr<C>> {
        match self.log.vote() {
            Some(b) => Ok(Some(dec(&b).map_err(|e| StorageIOError::read_vote(&e))?)),
            None => Ok(None),
        }
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StErr<C>> {
        let b = enc(&committed).map_err(|e| StorageIOError::write(&e))?;
        self.log
            .save_committed(b)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<C::NodeId>>, StErr<C>> {
        match self.log.committed() {
            Some(b) => Ok(dec(&b).map_err(|e| StorageIOError::read(&e))?),
            None => Ok(None),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StErr<C>>
    where
        I: IntoIterator<Item = C::Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = Vec::new();
        for e in entries {
            let index = e.get_log_id().index;
            batch.push((index, enc(&e).map_err(|e| StorageIOError::write_logs(&e))?));
        }
        self.log
            .append(batch, Box::new(move |r| callback.log_io_completed(r)))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StErr<C>> {
        self.log
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StErr<C>> {
        let id = enc(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        self.log
            .purge(log_id.index, id)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
