//! Checked conversions from wire messages to domain types.
//!
//! Every `TryFrom` here rejects a missing message field, a zero id or version, and an
//! out-of-range length with a [`WireError`] naming the field, so servers never act on a
//! half-filled request. Conversions back to the wire are infallible `From`s.
use crate::ids::{ChunkId, ChunkVersion, NodeId};
use crate::pb;

/// Largest range one ReadChunk request may ask for (one chunk is at most 1 GiB).
pub const READ_LEN_MAX_BYTES: u64 = 1 << 30;

/// A wire message that cannot be turned into a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` is {value}: {why}")]
    OutOfRange {
        field: &'static str,
        value: u64,
        why: &'static str,
    },
    #[error("field `{field}` is invalid: {why}")]
    Invalid { field: &'static str, why: String },
}

/// The header of a write of `length` bytes through the pipeline the master allocated:
/// `downstream = pipeline[1..]`, `node_id = pipeline[0]` (empty pipeline: node 0, refused by
/// the receiver).
pub fn pipeline_header(alloc: &crate::metapb::AllocateChunkReply, length: u64) -> pb::WriteHeader {
    pb::WriteHeader {
        chunk: Some(pb::ChunkRef {
            chunk_id: alloc.chunk_id,
            version: alloc.version,
        }),
        downstream: alloc
            .pipeline
            .iter()
            .skip(1)
            .map(|r| pb::PipelineTarget {
                node_id: r.node_id,
                address: r.address.clone(),
                data_address: r.data_address.clone(),
            })
            .collect(),
        length,
        node_id: alloc.pipeline.first().map_or(0, |r| r.node_id),
        token: alloc.token.clone(),
    }
}

/// Most chunkservers one token may name.
pub const TOKEN_TARGETS_MAX: usize = 64;

/// The claims and MAC of a wire token (checked for shape only; the MAC is the verifier's).
pub fn token_claims(
    t: &pb::ChunkToken,
) -> Result<(shale_security::token::Claims, &[u8]), WireError> {
    let chunk = t.chunk.as_ref().ok_or(WireError::Missing("token.chunk"))?;
    if t.targets.len() > TOKEN_TARGETS_MAX {
        return Err(WireError::Invalid {
            field: "token.targets",
            why: format!("more than {TOKEN_TARGETS_MAX}"),
        });
    }
    let claims = shale_security::token::Claims {
        key_id: t.key_id,
        chunk_id: chunk.chunk_id,
        version: chunk.version,
        modes: t.modes,
        expires_ms: t.expires_ms,
        targets: t
            .targets
            .iter()
            .map(|p| (p.node_id, p.address.clone()))
            .collect(),
    };
    Ok((claims, &t.mac[..]))
}

/// A signed token on the wire.
pub fn token_to_wire(c: &shale_security::token::Claims, mac: Vec<u8>) -> pb::ChunkToken {
    pb::ChunkToken {
        key_id: c.key_id,
        chunk: Some(pb::ChunkRef {
            chunk_id: c.chunk_id,
            version: c.version,
        }),
        modes: c.modes,
        expires_ms: c.expires_ms,
        targets: c
            .targets
            .iter()
            .map(|(n, a)| pb::PipelineTarget {
                node_id: *n,
                address: a.clone(),
                data_address: String::new(),
            })
            .collect(),
        mac: mac.into(),
    }
}

impl From<WireError> for tonic::Status {
    fn from(e: WireError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

fn nonzero(field: &'static str, value: u64) -> Result<u64, WireError> {
    if value == 0 {
        Err(WireError::OutOfRange {
            field,
            value,
            why: "must be at least 1",
        })
    } else {
        Ok(value)
    }
}

/// A chunk replica named with the version it must have.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub version: ChunkVersion,
}

impl TryFrom<&pb::ChunkRef> for ChunkRef {
    type Error = WireError;
    fn try_from(m: &pb::ChunkRef) -> Result<Self, WireError> {
        Ok(ChunkRef {
            id: ChunkId(nonzero("chunk.chunk_id", m.chunk_id)?),
            version: ChunkVersion(nonzero("chunk.version", m.version)?),
        })
    }
}

impl TryFrom<Option<&pb::ChunkRef>> for ChunkRef {
    type Error = WireError;
    fn try_from(m: Option<&pb::ChunkRef>) -> Result<Self, WireError> {
        m.ok_or(WireError::Missing("chunk"))?.try_into()
    }
}

impl From<ChunkRef> for pb::ChunkRef {
    fn from(c: ChunkRef) -> Self {
        pb::ChunkRef {
            chunk_id: c.id.get(),
            version: c.version.get(),
        }
    }
}

/// A downstream replica in a write pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineTarget {
    pub node: NodeId,
    pub address: String,
    /// Its data port, if one was named on the host of `address` (one elsewhere is ignored:
    /// the chunk token vouches only for `address`).
    pub data_address: Option<String>,
}

impl TryFrom<&pb::PipelineTarget> for PipelineTarget {
    type Error = WireError;
    fn try_from(m: &pb::PipelineTarget) -> Result<Self, WireError> {
        let node = NodeId(nonzero("node_id", m.node_id)?);
        if m.address.is_empty() || m.address.len() > 256 || !m.address.contains(':') {
            return Err(WireError::Invalid {
                field: "address",
                why: format!("{:?} is not host:port", m.address),
            });
        }
        let data = &m.data_address;
        let data_address = (!data.is_empty()
            && data.len() <= 256
            && host_of(data).is_some()
            && host_of(data) == host_of(&m.address))
        .then(|| data.clone());
        Ok(PipelineTarget {
            node,
            address: m.address.clone(),
            data_address,
        })
    }
}

/// The host of `host:port` (`[v6]:port`), if it has that shape.
pub fn host_of(addr: &str) -> Option<&str> {
    let (host, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    Some(host.trim_start_matches('[').trim_end_matches(']'))
}

/// The header of a WriteChunk stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteHeader {
    pub chunk: ChunkRef,
    /// The node the receiver must be.
    pub node: NodeId,
    pub downstream: Vec<PipelineTarget>,
    pub length: u64,
}

/// Longest pipeline a header may name after the receiver (replication factor is at most 16).
pub const DOWNSTREAM_MAX: usize = 15;

impl WriteHeader {
    /// Converts a wire header, also checking `length <= chunk_size_bytes`.
    pub fn from_wire(m: &pb::WriteHeader, chunk_size_bytes: u64) -> Result<Self, WireError> {
        let chunk = ChunkRef::try_from(m.chunk.as_ref())?;
        if m.downstream.len() > DOWNSTREAM_MAX {
            return Err(WireError::OutOfRange {
                field: "downstream",
                value: m.downstream.len() as u64,
                why: "pipeline longer than 15 replicas",
            });
        }
        if m.length > chunk_size_bytes {
            return Err(WireError::OutOfRange {
                field: "length",
                value: m.length,
                why: "larger than the chunk size",
            });
        }
        let downstream = m
            .downstream
            .iter()
            .map(PipelineTarget::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let node = NodeId(nonzero("node_id", m.node_id)?);
        Ok(WriteHeader {
            chunk,
            node,
            downstream,
            length: m.length,
        })
    }
}

/// A range of one chunk to read.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReadRange {
    pub chunk: ChunkRef,
    pub offset: u64,
    /// `None`: to the end of the chunk.
    pub length: Option<u64>,
}

impl TryFrom<&pb::ReadChunkRequest> for ReadRange {
    type Error = WireError;
    fn try_from(m: &pb::ReadChunkRequest) -> Result<Self, WireError> {
        let chunk = ChunkRef::try_from(m.chunk.as_ref())?;
        if m.length > READ_LEN_MAX_BYTES {
            return Err(WireError::OutOfRange {
                field: "length",
                value: m.length,
                why: "larger than 1 GiB",
            });
        }
        if m.offset.checked_add(m.length).is_none() {
            return Err(WireError::OutOfRange {
                field: "offset",
                value: m.offset,
                why: "offset + length overflows",
            });
        }
        Ok(ReadRange {
            chunk,
            offset: m.offset,
            length: (!m.to_end && m.length != 0).then_some(m.length),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cref(id: u64, v: u64) -> Option<pb::ChunkRef> {
        Some(pb::ChunkRef {
            chunk_id: id,
            version: v,
        })
    }

    #[test]
    fn chunk_ref_rejects_missing_and_zero() {
        assert_eq!(
            ChunkRef::try_from(None::<&pb::ChunkRef>),
            Err(WireError::Missing("chunk"))
        );
        let e = ChunkRef::try_from(cref(0, 1).as_ref()).unwrap_err();
        assert!(e.to_string().contains("chunk.chunk_id"), "{e}");
        let e = ChunkRef::try_from(cref(1, 0).as_ref()).unwrap_err();
        assert!(e.to_string().contains("chunk.version"), "{e}");
        let ok = ChunkRef::try_from(cref(7, 2).as_ref()).unwrap();
        assert_eq!(pb::ChunkRef::from(ok), cref(7, 2).unwrap());
    }

    #[test]
    fn read_range_rejects_oversize_and_overflow() {
        let mut m = pb::ReadChunkRequest {
            chunk: cref(1, 1),
            offset: 0,
            length: READ_LEN_MAX_BYTES + 1,
            to_end: false,
            token: None,
        };
        assert!(ReadRange::try_from(&m).is_err());
        m.length = 10;
        m.offset = u64::MAX - 2;
        assert!(ReadRange::try_from(&m).is_err());
        m.offset = 5;
        assert_eq!(ReadRange::try_from(&m).unwrap().length, Some(10));
        m.to_end = true;
        assert_eq!(ReadRange::try_from(&m).unwrap().length, None);
        m.to_end = false;
        m.length = 0;
        assert_eq!(ReadRange::try_from(&m).unwrap().length, None);
    }

    #[test]
    fn write_header_checks_length_and_pipeline() {
        let target = |a: &str| pb::PipelineTarget {
            node_id: 2,
            address: a.into(),
            data_address: String::new(),
        };
        let mut m = pb::WriteHeader {
            chunk: cref(1, 1),
            downstream: vec![target("127.0.0.1:7001")],
            length: 100,
            node_id: 1,
            token: None,
        };
        assert_eq!(
            WriteHeader::from_wire(&m, 1024).unwrap().downstream.len(),
            1
        );
        assert!(WriteHeader::from_wire(&m, 99).is_err());
        m.node_id = 0;
        assert!(WriteHeader::from_wire(&m, 1024).is_err());
        m.node_id = 1;
        m.downstream = vec![target("nope")];
        assert!(WriteHeader::from_wire(&m, 1024).is_err());
        m.downstream = vec![target("127.0.0.1:1"); DOWNSTREAM_MAX + 1];
        assert!(WriteHeader::from_wire(&m, 1024).is_err());
        // A data port is used only on the host the (token-vouched) address names.
        let data = |d: &str| {
            let mut t = target("10.0.0.2:7001");
            t.data_address = d.into();
            let m = pb::WriteHeader {
                downstream: vec![t],
                ..m.clone()
            };
            WriteHeader::from_wire(&m, 1024).unwrap().downstream[0]
                .data_address
                .clone()
        };
        assert_eq!(data("10.0.0.2:7202").as_deref(), Some("10.0.0.2:7202"));
        assert_eq!(data("10.0.0.3:7202"), None);
        assert_eq!(data("10.0.0.2"), None);
        assert_eq!(data(""), None);
        assert_eq!(host_of("[::1]:80"), Some("::1"));
    }
}
