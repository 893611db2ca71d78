//! The on-disk sidecar format (`<id>.crc`) and block checksum math. Pure: no I/O.
//!
//! Sidecar, format version 1, all integers little-endian:
//!
//! | offset   | size | field                                   |
//! |----------|------|-----------------------------------------|
//! | 0        | 8    | magic `SHALECRC`                        |
//! | 8        | 2    | format version (1)                      |
//! | 10       | 2    | reserved, 0                             |
//! | 12       | 4    | block size in bytes (power of two)      |
//! | 16       | 8    | chunk id                                |
//! | 24       | 8    | chunk version                           |
//! | 32       | 8    | data length in bytes                    |
//! | 40       | 4    | block count n = ceil(length / block)    |
//! | 44       | 4·n  | crc32c of each block (last may be short)|
//! | 44 + 4·n | 4    | crc32c of every byte before it          |
//!
//! Invariants: `n == ceil(length / block_size)`; the file is exactly `48 + 4n` bytes; decoding
//! checks all of it and names what is wrong. Golden files in `tests/golden/` pin the bytes.
use shale_proto::{ChunkId, ChunkVersion};

pub const MAGIC: &[u8; 8] = b"SHALECRC";
pub const FORMAT_VERSION: u16 = 1;
/// Checksum granularity: one crc32c per 64 KiB block.
pub const BLOCK_SIZE_BYTES: u32 = 64 * 1024;
const HEADER_BYTES: usize = 44;
const BLOCK_SIZE_MIN: u32 = 512;
const BLOCK_SIZE_MAX: u32 = 16 << 20;
/// Largest chunk a sidecar may describe (1 GiB, the largest cluster chunk size).
pub const LENGTH_MAX_BYTES: u64 = 1 << 30;

/// The decoded sidecar of one sealed chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sidecar {
    pub block_size: u32,
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    pub length: u64,
    pub block_crcs: Vec<u32>,
}

/// Why a sidecar could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SidecarError {
    #[error("sidecar is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("bad magic (not a Shale sidecar)")]
    Magic,
    #[error("unsupported sidecar format version {0}")]
    Version(u16),
    #[error("bad block size {0}")]
    BlockSize(u32),
    #[error("data length {0} is over the 1 GiB limit")]
    Length(u64),
    #[error("block count {count} does not fit data length {length}")]
    BlockCount { count: u32, length: u64 },
    #[error("sidecar is {got} bytes, expected {want}")]
    Size { got: usize, want: usize },
    #[error("sidecar checksum mismatch (torn or corrupt sidecar)")]
    SelfCrc,
}

/// Number of blocks covering `length` bytes.
pub fn block_count(length: u64, block_size: u32) -> u64 {
    length.div_ceil(u64::from(block_size))
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Sidecar {
    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES + 4 * self.block_crcs.len() + 4
    }

    pub fn encode(&self) -> Vec<u8> {
        debug_assert_eq!(
            self.block_crcs.len() as u64,
            block_count(self.length, self.block_size),
            "sidecar block count must match its length"
        );
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.block_size.to_le_bytes());
        out.extend_from_slice(&self.chunk.get().to_le_bytes());
        out.extend_from_slice(&self.version.get().to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&(self.block_crcs.len() as u32).to_le_bytes());
        for c in &self.block_crcs {
            out.extend_from_slice(&c.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Result<Sidecar, SidecarError> {
        if b.len() < HEADER_BYTES + 4 {
            return Err(SidecarError::Short(b.len()));
        }
        if &b[0..8] != MAGIC {
            return Err(SidecarError::Magic);
        }
        let version = le_u16(b, 8);
        if version != FORMAT_VERSION {
            return Err(SidecarError::Version(version));
        }
        let block_size = le_u32(b, 12);
        if !block_size.is_power_of_two() || !(BLOCK_SIZE_MIN..=BLOCK_SIZE_MAX).contains(&block_size)
        {
            return Err(SidecarError::BlockSize(block_size));
        }
        let length = le_u64(b, 32);
        if length > LENGTH_MAX_BYTES {
            return Err(SidecarError::Length(length));
        }
        let count = le_u32(b, 40);
        if u64::from(count) != block_count(length, block_size) {
            return Err(SidecarError::BlockCount { count, length });
        }
        let want = HEADER_BYTES + 4 * count as usize + 4;
        if b.len() != want {
            return Err(SidecarError::Size { got: b.len(), want });
        }
        if crc32c::crc32c(&b[..want - 4]) != le_u32(b, want - 4) {
            return Err(SidecarError::SelfCrc);
        }
        let block_crcs = (0..count as usize)
            .map(|i| le_u32(b, HEADER_BYTES + 4 * i))
            .collect();
        Ok(Sidecar {
            block_size,
            chunk: ChunkId(le_u64(b, 16)),
            version: ChunkVersion(le_u64(b, 24)),
            length,
            block_crcs,
        })
    }

    /// Verifies the blocks of `data` (the chunk's bytes from `data_start`, which must be
    /// block-aligned) against the sidecar. Returns the first bad block index.
    pub fn verify_blocks(&self, data_start: u64, data: &[u8]) -> Result<(), u64> {
        let bs = u64::from(self.block_size.max(1));
        debug_assert_eq!(
            data_start % bs,
            0,
            "verification starts on a block boundary"
        );
        let first = data_start / bs;
        for (i, block) in data.chunks(bs as usize).enumerate() {
            let idx = first + i as u64;
            let want = self.block_crcs.get(idx as usize).copied();
            if want != Some(crc32c::crc32c(block)) {
                return Err(idx);
            }
        }
        Ok(())
    }

    /// The block-aligned span `[start, end)` of the chunk that covers `offset..offset+len`
    /// (clamped to the chunk; never overflows, whatever the arguments).
    /// The crc32c of bytes `[offset, offset + len)`, combined from the block checksums, if
    /// the range is made of whole blocks (the chunk's last, shorter block counts as whole):
    /// for bytes verified against those blocks, no second pass over them.
    pub fn range_crc(&self, offset: u64, len: u64) -> Option<u32> {
        let bs = u64::from(self.block_size.max(1));
        let end = offset.checked_add(len)?;
        if len == 0
            || !offset.is_multiple_of(bs)
            || end > self.length
            || (!end.is_multiple_of(bs) && end != self.length)
        {
            return None;
        }
        let (first, last) = (offset / bs, end.div_ceil(bs));
        let mut crc = *self.block_crcs.get(first as usize)?;
        let whole = shift_by(bs);
        for b in first + 1..last {
            let block_len = self.length.min((b + 1) * bs) - b * bs;
            let shift = if block_len == bs {
                whole
            } else {
                shift_by(block_len)
            };
            crc = combine(crc, *self.block_crcs.get(b as usize)?, shift);
        }
        Some(crc)
    }

    pub fn block_span(&self, offset: u64, len: u64) -> (u64, u64) {
        let bs = u64::from(self.block_size.max(1));
        let start = offset / bs * bs;
        let end = offset
            .saturating_add(len)
            .div_ceil(bs)
            .saturating_mul(bs)
            .min(self.length);
        (start, end)
    }
}

/// The crc32c polynomial, bit-reflected.
const CRC32C_POLY: u32 = 0x82F6_3B78;

/// a(x)·b(x) modulo the crc32c polynomial, bit-reflected (as zlib's `multmodp`).
fn multmodp(a: u32, mut b: u32) -> u32 {
    let mut m: u32 = 1 << 31;
    let mut p: u32 = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        if m == 0 {
            return p;
        }
        b = if b & 1 != 0 {
            (b >> 1) ^ CRC32C_POLY
        } else {
            b >> 1
        };
    }
}

/// x^(8·n) modulo the polynomial: what appending `n` bytes does to a crc (square and
/// multiply: a few dozen `multmodp`s, computed once per length).
fn shift_by(n: u64) -> u32 {
    let (mut result, mut base, mut n) = (1u32 << 31, 1u32 << 23, n);
    while n > 0 {
        if n & 1 == 1 {
            result = multmodp(base, result);
        }
        base = multmodp(base, base);
        n >>= 1;
    }
    result
}

/// The crc32c of A then B from crc(A), crc(B) and `shift_by(len(B))` (zlib's
/// `crc32_combine_op`; the `crc32c` crate's combine recomputes the shift at every call, about
/// as slow as hashing the bytes again).
fn combine(crc_a: u32, crc_b: u32, shift: u32) -> u32 {
    multmodp(shift, crc_a) ^ crc_b
}

/// Incremental per-block crc32c over appended data.
#[derive(Clone, Debug)]
pub struct CrcAccumulator {
    block_size: u32,
    crcs: Vec<u32>,
    cur: u32,
    cur_len: u32,
}

impl CrcAccumulator {
    pub fn new(block_size: u32) -> Self {
        CrcAccumulator {
            block_size,
            crcs: Vec::new(),
            cur: 0,
            cur_len: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (self.block_size - self.cur_len) as usize;
            let take = room.min(data.len());
            self.cur = crc32c::crc32c_append(self.cur, &data[..take]);
            self.cur_len += take as u32;
            data = &data[take..];
            if self.cur_len == self.block_size {
                self.crcs.push(self.cur);
                self.cur = 0;
                self.cur_len = 0;
            }
        }
    }

    /// Continues the crcs of `length` bytes whose blocks have `crcs` (the last possibly short).
    pub fn resume(block_size: u32, crcs: &[u32], length: u64) -> Self {
        let full = (length / u64::from(block_size)) as usize;
        let cur_len = (length % u64::from(block_size)) as u32;
        let cur = if cur_len > 0 {
            crcs.get(full).copied().unwrap_or(0)
        } else {
            0
        };
        CrcAccumulator {
            block_size,
            crcs: crcs[..full.min(crcs.len())].to_vec(),
            cur,
            cur_len,
        }
    }

    /// The crcs of all blocks, the last one possibly short.
    pub fn finish(mut self) -> Vec<u32> {
        if self.cur_len > 0 {
            self.crcs.push(self.cur);
        }
        self.crcs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar_of(data: &[u8], bs: u32) -> Sidecar {
        let mut acc = CrcAccumulator::new(bs);
        for piece in data.chunks(777) {
            acc.update(piece);
        }
        Sidecar {
            block_size: bs,
            chunk: ChunkId(9),
            version: ChunkVersion(2),
            length: data.len() as u64,
            block_crcs: acc.finish(),
        }
    }

    #[test]
    fn accumulator_matches_direct_crcs() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let s = sidecar_of(&data, 4096);
        let direct: Vec<u32> = data.chunks(4096).map(crc32c::crc32c).collect();
        assert_eq!(s.block_crcs, direct);
        assert_eq!(s.verify_blocks(0, &data), Ok(()));
        assert_eq!(s.verify_blocks(4096, &data[4096..]), Ok(()));
        let mut bad = data.clone();
        bad[5000] ^= 1;
        assert_eq!(s.verify_blocks(0, &bad), Err(1));
    }

    #[test]
    fn roundtrip_and_every_truncation_and_flip_is_caught() {
        let s = sidecar_of(&[1u8; 3000], 1024);
        let enc = s.encode();
        assert_eq!(enc.len(), s.encoded_len());
        assert_eq!(Sidecar::decode(&enc), Ok(s));
        for n in 0..enc.len() {
            assert!(Sidecar::decode(&enc[..n]).is_err(), "truncated to {n}");
        }
        for byte in 0..enc.len() {
            let mut b = enc.clone();
            b[byte] ^= 0x10;
            assert!(Sidecar::decode(&b).is_err(), "flip at {byte}");
        }
    }

    #[test]
    fn empty_chunk_has_no_blocks() {
        let s = sidecar_of(&[], 65536);
        assert!(s.block_crcs.is_empty());
        assert_eq!(Sidecar::decode(&s.encode()), Ok(s));
    }

    #[test]
    fn range_crcs_combine_the_blocks() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let s = sidecar_of(&data, 1024);
        for (off, len) in [
            (0, 1024),
            (0, 10_000),
            (1024, 3072),
            (9216, 784),
            (2048, 7952),
        ] {
            let want = crc32c::crc32c(&data[off..off + len]);
            assert_eq!(
                s.range_crc(off as u64, len as u64),
                Some(want),
                "{off}+{len}"
            );
        }
        for (a, b) in [
            (&data[..0], &data[..5]),
            (&data[..777], &data[777..]),
            (&data[..1], &data[1..2]),
        ] {
            let want = crc32c::crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len());
            let got = combine(
                crc32c::crc32c(a),
                crc32c::crc32c(b),
                shift_by(b.len() as u64),
            );
            assert_eq!(got, want);
        }
        // Not whole blocks: no answer (the caller computes it).
        for (off, len) in [(1, 1023), (0, 1000), (9216, 700), (0, 0), (0, 10_001)] {
            assert_eq!(s.range_crc(off, len), None, "{off}+{len}");
        }
    }

    #[test]
    fn block_span_covers_range() {
        let s = sidecar_of(&[0u8; 10_000], 4096);
        assert_eq!(s.block_span(0, 1), (0, 4096));
        assert_eq!(s.block_span(4095, 2), (0, 8192));
        assert_eq!(s.block_span(9000, 1000), (8192, 10_000));
    }
}
