//! Partial reads checked end to end (`shale_security::digest`): for part of a chunk, the
//! reader gets the chaining values of the chunk's 64 KiB blocks from the replica, checks that
//! they merge into the writer's digest (from the masters), widens the read to whole blocks and
//! checks each block against its value. A replica whose values or bytes do not match is
//! reported and the next one is tried, as for whole chunks. Values that matched are kept
//! (bounded) and reused for any replica: they are the writer's, whoever sent them.
use crate::read::Frames;
use crate::Client;
use bytes::{Bytes, BytesMut};
use shale_proto::metapb::{ChunkLocation, Replica};
use shale_proto::pb::{ChunkDigestsRequest, ChunkRef};
use shale_security::digest::{self, Cv, BLOCK_BYTES};
use std::sync::Arc;
use std::time::Duration;

/// Chunks whose checked chaining values are kept.
const CACHED_MAX: usize = 64;

/// Checked chaining values by (chunk id, version), oldest first out.
pub(crate) type CvCache =
    shale_proto::fifo::FifoCache<(u64, u64), Arc<tokio::sync::OnceCell<Arc<Vec<Cv>>>>>;

/// A new cache for a client.
pub(crate) fn cache() -> Arc<CvCache> {
    Arc::new(CvCache::new(CACHED_MAX))
}

/// Why a replica's part of a chunk was not returned.
pub(crate) enum PartError {
    /// It could not be read (try another replica).
    Failed(String),
    /// It does not match the writer's digest (report it, try another replica).
    Forged(String),
}

/// `[from, from + len)` of the concatenation of `frames` (which starts at byte 0), without
/// copying.
fn slice(frames: &[Bytes], from: u64, len: u64) -> Frames {
    let (mut at, end) = (0u64, from + len);
    let mut out = Vec::new();
    for f in frames {
        let (a, b) = (at, at + f.len() as u64);
        at = b;
        if b <= from || a >= end {
            continue;
        }
        let s = from.max(a) - a;
        let e = end.min(b) - a;
        out.push(f.slice(s as usize..e as usize));
    }
    out
}

/// Checks that `frames` (blocks from `first`, concatenated) match `cvs`; the index of the first
/// block that does not.
fn check_blocks(frames: &[Bytes], first: u64, cvs: &[Cv]) -> Result<(), u64> {
    let mut index = first;
    let mut pending = BytesMut::new();
    let block = BLOCK_BYTES as usize;
    let check = |b: &[u8], index: &mut u64| -> Result<(), u64> {
        let want = cvs.get(*index as usize).ok_or(*index)?;
        if digest::block_cv(b, *index) != *want {
            return Err(*index);
        }
        *index += 1;
        Ok(())
    };
    for f in frames {
        let mut rest = &f[..];
        // A block cut across frames is gathered; whole blocks inside a frame are hashed in place.
        if !pending.is_empty() {
            let take = (block - pending.len()).min(rest.len());
            pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if pending.len() == block {
                check(&pending, &mut index)?;
                pending.clear();
            }
        }
        while rest.len() >= block {
            check(&rest[..block], &mut index)?;
            rest = &rest[block..];
        }
        pending.extend_from_slice(rest);
    }
    if !pending.is_empty() {
        check(&pending, &mut index)?;
    }
    Ok(())
}

impl Client {
    /// The writer-checked chaining values of `c`'s blocks, from replica `r` unless known.
    /// Windows of one chunk asking at once share one request.
    async fn cvs(&self, r: &Replica, c: &ChunkLocation) -> Result<Arc<Vec<Cv>>, PartError> {
        let key = (c.chunk_id, c.version);
        let cell = self.cvs.get_or_insert_with(key, Default::default);
        cell.get_or_try_init(|| self.fetch_cvs(r, c)).await.cloned()
    }

    async fn fetch_cvs(&self, r: &Replica, c: &ChunkLocation) -> Result<Arc<Vec<Cv>>, PartError> {
        let addr = &r.address;
        let mut client =
            crate::chunkserver::connect(&self.config.transport, addr, Duration::from_secs(60))
                .map_err(PartError::Failed)?;
        let reply = client
            .chunk_digests(ChunkDigestsRequest {
                chunk: Some(ChunkRef {
                    chunk_id: c.chunk_id,
                    version: c.version,
                }),
                token: c.token.clone(),
            })
            .await
            .map_err(|s| PartError::Failed(format!("{addr}: {:?} {}", s.code(), s.message())))?
            .into_inner();
        let forged = |why: String| PartError::Forged(format!("{addr}: {why}"));
        if reply.length != c.length || reply.block_bytes != BLOCK_BYTES {
            return Err(forged(format!(
                "says the chunk is {} bytes in blocks of {} (the masters say {} in {BLOCK_BYTES})",
                reply.length, reply.block_bytes, c.length
            )));
        }
        let cvs = digest::cvs_from_bytes(&reply.cvs).map_err(forged)?;
        let root = digest::root_of_cvs(&cvs, c.length).map_err(forged)?;
        if root[..] != c.digest[..] {
            return Err(forged(
                "its block digests do not merge into the writer's digest".into(),
            ));
        }
        Ok(Arc::new(cvs))
    }

    /// `[offset, offset + len)` of chunk `c` (which has a writer's digest) from replica `r`,
    /// checked against the digest.
    pub(crate) async fn read_part_checked(
        &self,
        r: &Replica,
        c: &ChunkLocation,
        offset: u64,
        len: u64,
    ) -> Result<Frames, PartError> {
        let one = ChunkLocation {
            replicas: vec![r.clone()],
            ..c.clone()
        };
        if c.length <= BLOCK_BYTES {
            // One block: read it whole and check it whole.
            let frames = self
                .read_replica(r, &one, 0, c.length)
                .await
                .map_err(PartError::Failed)?;
            if !crate::integrity::matches(c, &frames) {
                return Err(PartError::Forged(format!(
                    "{}: bytes do not match the writer's digest",
                    r.address
                )));
            }
            return Ok(slice(&frames, offset, len));
        }
        let cvs = self.cvs(r, c).await?;
        let first = offset / BLOCK_BYTES;
        let a = first * BLOCK_BYTES;
        let b = (offset + len).div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        let b = b.min(c.length);
        let frames = self
            .read_replica(r, &one, a, b - a)
            .await
            .map_err(PartError::Failed)?;
        check_blocks(&frames, first, &cvs).map_err(|i| {
            PartError::Forged(format!(
                "{}: block {i} does not match the writer's digest",
                r.address
            ))
        })?;
        Ok(slice(&frames, offset - a, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_checked_across_any_framing() {
        let b = BLOCK_BYTES as usize;
        let data: Vec<u8> = (0..(5 * b + 300) as u32).map(|i| (i % 251) as u8).collect();
        let cvs = digest::block_cvs(&data);
        // Blocks 1.. as frames cut at odd places.
        let part = Bytes::copy_from_slice(&data[b..]);
        for cut in [1usize, 4096, b, b + 17, 3 * b] {
            let mut frames = Vec::new();
            let mut at = 0;
            while at < part.len() {
                let e = (at + cut).min(part.len());
                frames.push(part.slice(at..e));
                at = e;
            }
            assert_eq!(check_blocks(&frames, 1, &cvs), Ok(()), "cut {cut}");
            let s: Vec<u8> = slice(&frames, 10, 2 * b as u64).concat();
            assert_eq!(s, &data[b + 10..3 * b + 10]);
        }
        let mut bad = data[b..].to_vec();
        bad[2 * b + 5] ^= 1;
        assert_eq!(check_blocks(&[Bytes::from(bad)], 1, &cvs), Err(3));
        // Bytes past the last block known are refused, not ignored.
        assert_eq!(check_blocks(std::slice::from_ref(&part), 2, &cvs), Err(2));
    }
}
