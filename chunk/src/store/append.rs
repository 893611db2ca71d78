//! Record append to a sealed chunk (`ChunkStore::append`), the chunk half of exactly-once
//! record append (the masters order and commit records; see `meta/src/sm/appends.rs`).
//!
//! Protocol, per chunk, under the chunk's append lock (appends and deletes of one chunk are
//! serialized):
//! 1. the bytes are written at the chunk's sealed length in `<id>.chunk` and fdatasynced;
//! 2. a sidecar with the new length and crcs (the last block's crc continued with
//!    `crc32c_append`, nothing re-read) goes to `<id>.crc.tmp`, fdatasync, renamed over
//!    `<id>.crc`, directory sync — **the commit point**;
//! 3. the inventory's sidecar is swapped: reads from then on see the new length.
//!
//! A crash before 2 leaves the data file longer than its sidecar: recovery serves the
//! sidecar's length (the extra bytes are never served and the next append overwrites them).
//! Nothing before the old length is ever written, so readers of the old length are never
//! disturbed.
use super::engine::{sidecar_bytes, Store};
use super::ChunkStore;
use crate::backend::Backend;
use crate::error::{ChunkError, Result};
use crate::format::{CrcAccumulator, Sidecar};
use crate::{durable, metrics as m, names};
use bytes::Bytes;
use shale_proto::ChunkRef;
use std::sync::Arc;
use std::time::Instant;

impl<B: Backend> Store<B> {
    /// The sealed sidecar of `c` (creating the chunk empty if allowed and absent).
    async fn append_target(&self, c: ChunkRef, create: bool) -> Result<Arc<Sidecar>> {
        let found = {
            let st = self.lock();
            match st.sealed.get(&c.id) {
                Some(s) if s.version == c.version => Some(s.sidecar.clone()),
                Some(s) if s.version > c.version || !create => {
                    return Err(ChunkError::WrongVersion {
                        chunk: c.id,
                        have: s.version,
                        want: c.version,
                    })
                }
                _ => None,
            }
        };
        if let Some(sc) = found {
            return Ok(sc);
        }
        if !create {
            return Err(ChunkError::NotFound(c.id));
        }
        self.create(c).await?;
        self.seal(c).await?;
        let st = self.lock();
        match st.sealed.get(&c.id) {
            Some(s) if s.version == c.version => Ok(s.sidecar.clone()),
            _ => Err(ChunkError::NotFound(c.id)),
        }
    }

    pub(super) async fn append_sealed(
        &self,
        c: ChunkRef,
        offset: u64,
        data: Bytes,
        create: bool,
    ) -> Result<u64> {
        let started = Instant::now();
        let lock = self.lock().append_locks.entry(c.id).or_default().clone();
        let _serial = lock.lock().await;
        let sc = self.append_target(c, create).await?;
        if offset != sc.length {
            return Err(ChunkError::BadOffset {
                chunk: c.id,
                expected: sc.length,
                got: offset,
            });
        }
        let len = data.len() as u64;
        let size = sc.length.saturating_add(len);
        if size > self.config.chunk_size_max_bytes {
            return Err(ChunkError::TooLarge {
                chunk: c.id,
                size_bytes: size,
                max_bytes: self.config.chunk_size_max_bytes,
            });
        }
        if len == 0 {
            return Ok(size);
        }
        let grow = len + sidecar_bytes(size) - sidecar_bytes(sc.length);
        let free = self.free_space();
        if grow > free {
            return Err(ChunkError::NoSpace {
                need_bytes: grow,
                free_bytes: free,
            });
        }
        let mut crc = CrcAccumulator::resume(sc.block_size, &sc.block_crcs, sc.length);
        crc.update(&data);
        let name = names::data(c.id);
        let b = &*self.backend;
        let fh = b
            .open_existing(&name)
            .await
            .map_err(|e| ChunkError::io("open", name.clone(), e))?;
        let wrote = async {
            b.write_at(fh, offset, vec![data]).await?;
            b.sync_data(fh).await
        }
        .await;
        let _ = b.close(fh).await;
        wrote.map_err(|e| ChunkError::io("append", name.clone(), e))?;
        let next = Sidecar {
            block_size: sc.block_size,
            chunk: c.id,
            version: c.version,
            length: size,
            block_crcs: crc.finish(),
        };
        let (tmp, side) = (names::sidecar_tmp(c.id), names::sidecar(c.id));
        durable::write_synced_temp(b, &tmp, Bytes::from(next.encode()))
            .await
            .map_err(|e| ChunkError::io("write sidecar", tmp.clone(), e))?;
        durable::commit(b, &[(&tmp, &side)])
            .await
            .map_err(|e| ChunkError::io("commit sidecar", side.clone(), e))?;
        let swapped = {
            let mut st = self.lock();
            match st.sealed.get_mut(&c.id) {
                Some(s) if s.version == c.version && Arc::ptr_eq(&s.sidecar, &sc) => {
                    s.sidecar = Arc::new(next);
                    st.sealed_bytes += grow;
                    true
                }
                _ => false,
            }
        };
        if !swapped {
            // Quarantined while we appended: the sidecar just committed describes a replica
            // that is no longer served; take it away again.
            let _ = b.remove(&side).await;
            let _ = b.sync_dir().await;
            return Err(ChunkError::NotFound(c.id));
        }
        m::wrote(b.kind(), len, started.elapsed());
        Ok(size)
    }
}
