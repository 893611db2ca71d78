//! The byte format of the log: segment headers and records. Pure: no I/O.
//!
//! Segment file (`<seq:020>.seg`), format version 1, integers little-endian:
//!
//! | offset | size | field                                  |
//! |--------|------|----------------------------------------|
//! | 0      | 8    | magic `SHALELOG`                       |
//! | 8      | 2    | format version (1)                     |
//! | 10     | 2    | reserved, 0                            |
//! | 12     | 4    | crc32c of bytes 0..12 and 16..24       |
//! | 16     | 8    | segment sequence number                |
//!
//! then records, each starting on an 8-byte boundary:
//!
//! | offset | size | field                                            |
//! |--------|------|--------------------------------------------------|
//! | 0      | 4    | body length `n`                                  |
//! | 4      | 4    | crc32c of (body length ++ body)                  |
//! | 8      | 1    | record format version (1)                        |
//! | 9      | 1    | kind (see [`Kind`])                              |
//! | 10     | 6    | reserved, 0                                      |
//! | 16     | 8    | index (meaning depends on kind)                  |
//! | 24     | n-16 | payload                                          |
//! |        | 0..7 | zero padding to the next 8-byte boundary         |
//!
//! The flusher writes records in batches; each batch starts with a [`Kind::Batch`] record whose
//! payload is [`BATCH_MAGIC`] and the batch sequence number. Recovery uses them to tell a torn
//! tail (damage in the last, unsynced batch: nothing valid follows) from corruption (a later
//! batch exists, so the damaged one had been synced).
use std::fmt;

pub const SEGMENT_MAGIC: &[u8; 8] = b"SHALELOG";
pub const FORMAT_VERSION: u16 = 1;
pub const RECORD_VERSION: u8 = 1;
pub const SEGMENT_HEADER_BYTES: usize = 24;
/// Fixed part of a record before the payload.
pub const RECORD_HEADER_BYTES: usize = 24;
pub const BATCH_MAGIC: &[u8; 8] = b"SHLBATCH";
/// Largest payload a record may carry (one Raft entry).
pub const PAYLOAD_MAX_BYTES: usize = 64 << 20;
/// Where the batch magic sits inside a batch record.
pub const BATCH_MAGIC_OFFSET: usize = RECORD_HEADER_BYTES;
/// Size of a whole batch record.
pub const BATCH_RECORD_BYTES: usize = RECORD_HEADER_BYTES + 16;

/// What a record says.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Starts a batch; index = batch sequence number; payload = magic ++ batch bytes (u64).
    Batch = 1,
    /// A log entry at `index`; payload = the serialized entry.
    Append = 2,
    /// The vote; payload = serialized vote.
    Vote = 3,
    /// The committed log id; payload = serialized `Option<LogId>`.
    Committed = 4,
    /// Entries at `index` and after are gone.
    Truncate = 5,
    /// Entries at `index` and before are gone; payload = serialized last purged log id.
    Purge = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Batch,
            2 => Kind::Append,
            3 => Kind::Vote,
            4 => Kind::Committed,
            5 => Kind::Truncate,
            6 => Kind::Purge,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Kind::Batch => "batch",
            Kind::Append => "append",
            Kind::Vote => "vote",
            Kind::Committed => "committed",
            Kind::Truncate => "truncate",
            Kind::Purge => "purge",
        };
        f.pad(s)
    }
}

/// A decoded record, borrowing its payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub index: u64,
    pub payload: &'a [u8],
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record header cut short ({0} bytes left)")]
    Short(usize),
    #[error("record length {0} is impossible")]
    Length(u32),
    #[error("record runs past the end of the segment")]
    PastEnd,
    #[error("record checksum mismatch")]
    Crc,
    #[error("unsupported record version {0}")]
    Version(u8),
    #[error("unknown record kind {0}")]
    Kind(u8),
}

/// Rounds up to the record alignment.
pub fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Size on disk of a record with `payload_len` payload bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    align8(RECORD_HEADER_BYTES + payload_len)
}

/// Appends one record to `out` (which must be 8-byte aligned in the segment).
pub fn encode(out: &mut Vec<u8>, kind: Kind, index: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= PAYLOAD_MAX_BYTES, "payload over the limit");
    let start = out.len();
    let body_len = (RECORD_HEADER_BYTES - 8 + payload.len()) as u32;
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.push(RECORD_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&[0u8; 6]);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&body_len.to_le_bytes()), &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + align8(out.len() - start), 0);
}

/// Encodes a batch header for a batch of `batch_bytes` bytes of records after it.
pub fn encode_batch(out: &mut Vec<u8>, batch_seq: u64, batch_bytes: u64) {
    let mut payload = [0u8; 16];
    payload[..8].copy_from_slice(BATCH_MAGIC);
    payload[8..].copy_from_slice(&batch_bytes.to_le_bytes());
    encode(out, Kind::Batch, batch_seq, &payload);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes the record at the start of `b`; returns it and its aligned size.
pub fn decode(b: &[u8]) -> Result<(Record<'_>, usize), RecordError> {
    if b.len() < RECORD_HEADER_BYTES {
        return Err(RecordError::Short(b.len()));
    }
    let body_len = u32_at(b, 0);
    let body = body_len as usize;
    if !(RECORD_HEADER_BYTES - 8..=RECORD_HEADER_BYTES - 8 + PAYLOAD_MAX_BYTES).contains(&body) {
        return Err(RecordError::Length(body_len));
    }
    if 8 + body > b.len() {
        return Err(RecordError::PastEnd);
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[0..4]), &b[8..8 + body]);
    if crc != u32_at(b, 4) {
        return Err(RecordError::Crc);
    }
    if b[8] != RECORD_VERSION {
        return Err(RecordError::Version(b[8]));
    }
    let kind = Kind::from_u8(b[9]).ok_or(RecordError::Kind(b[9]))?;
    let rec = Record {
        kind,
        index: u64_at(b, 16),
        payload: &b[RECORD_HEADER_BYTES..8 + body],
    };
    Ok((rec, align8(8 + body).min(b.len())))
}

/// The byte length a batch record announces, if `r` is a well-formed batch record.
pub fn batch_bytes(r: &Record<'_>) -> Option<u64> {
    if r.kind != Kind::Batch || r.payload.len() != 16 || &r.payload[..8] != BATCH_MAGIC {
        return None;
    }
    Some(u64_at(r.payload, 8))
}

/// Encodes a segment header.
pub fn encode_segment_header(seq: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..12]), &h[16..24]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a segment header; returns its sequence number.
pub fn decode_segment_header(b: &[u8]) -> Result<u64, String> {
    if b.len() < SEGMENT_HEADER_BYTES {
        return Err(format!("segment header cut short ({} bytes)", b.len()));
    }
    if &b[..8] != SEGMENT_MAGIC {
        return Err("bad segment magic (not a Shale raft log segment)".into());
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported segment format version {version}"));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..12]), &b[16..24]);
    if crc != u32_at(b, 12) {
        return Err("segment header checksum mismatch".into());
    }
    Ok(u64_at(b, 16))
}

/// Finds a valid batch record starting at an 8-aligned offset in `b` (offsets relative to `b`,
/// which must start 8-aligned) whose batch sequence number is greater than `after_seq`.
pub fn find_later_batch(b: &[u8], after_seq: u64) -> Option<usize> {
    let mut at = 0;
    while at + BATCH_RECORD_BYTES <= b.len() {
        if &b[at + BATCH_MAGIC_OFFSET..at + BATCH_MAGIC_OFFSET + 8] == BATCH_MAGIC {
            if let Ok((r, _)) = decode(&b[at..]) {
                if batch_bytes(&r).is_some() && r.index > after_seq {
                    return Some(at);
                }
            }
        }
        at += 8;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_alignment_and_every_corruption_is_caught() {
        let mut out = Vec::new();
        encode(&mut out, Kind::Append, 42, b"hello raft");
        assert_eq!(out.len() % 8, 0);
        assert_eq!(out.len(), encoded_len(10));
        let (r, n) = decode(&out).expect("decode");
        assert_eq!(
            r,
            Record {
                kind: Kind::Append,
                index: 42,
                payload: b"hello raft"
            }
        );
        assert_eq!(n, out.len());
        for i in 0..RECORD_HEADER_BYTES + 10 {
            let mut bad = out.clone();
            bad[i] ^= 0x04;
            assert!(decode(&bad).is_err(), "flip at {i} undetected");
        }
        for cut in 0..RECORD_HEADER_BYTES + 10 {
            assert!(decode(&out[..cut]).is_err(), "cut at {cut} undetected");
        }
    }

    #[test]
    fn batch_records_are_found_by_scanning() {
        let mut out = Vec::new();
        encode(&mut out, Kind::Vote, 0, b"v");
        let at = out.len();
        encode_batch(&mut out, 9, 123);
        let (r, _) = decode(&out[at..]).expect("batch");
        assert_eq!(batch_bytes(&r), Some(123));
        assert_eq!(find_later_batch(&out, 8), Some(at));
        assert_eq!(find_later_batch(&out, 9), None);
    }

    #[test]
    fn segment_header_roundtrip() {
        let h = encode_segment_header(77);
        assert_eq!(decode_segment_header(&h), Ok(77));
        let mut bad = h;
        bad[20] ^= 1;
        assert!(decode_segment_header(&bad).is_err());
    }
}
