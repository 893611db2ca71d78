//! End-to-end integrity on the master side: a client that read a replica whose bytes do not
//! match the digest the writer committed reports it; the leader reads that replica itself,
//! hashes it and, if the report is true, stops using the replica (soft state: it is left out
//! of locations and healing counts it as missing), has its chunkserver delete it, and so heals
//! the chunk from a good replica. A false report changes nothing, so no client can get good
//! replicas deleted by lying.
//!
//! Invariant: at most [`CHECKS_AT_ONCE`] replicas are read for checks at once; a replica is
//! only ever marked bad after the leader itself saw its bytes disagree with the digest.
use super::Master;
use shale_proto::pb::chunk_service_client::ChunkServiceClient;
use shale_proto::pb::{ChunkRef, ReadChunkRequest};
use shale_proto::{ChunkId, ChunkVersion, NodeId};
use std::time::Duration;
use tonic::Status;

/// Replica checks running at once.
pub const CHECKS_AT_ONCE: usize = 2;
/// How long reading one replica for a check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Checks a report that `node`'s replica of `chunk`@`version` is bad: (confirmed, detail).
pub async fn check_report(
    m: &Master,
    chunk: ChunkId,
    version: ChunkVersion,
    node: NodeId,
) -> Result<(bool, String), Status> {
    let (digest, addr) = {
        let g = m.sm.read();
        if g.state.chunk_version(chunk) != Some(version) {
            return Err(Status::failed_precondition(format!(
                "{chunk}@{version} is not a current chunk"
            )));
        }
        let digest = *g.state.chunk_digest(chunk).ok_or_else(|| {
            Status::failed_precondition(format!("{chunk} has no digest to check against"))
        })?;
        let addr = g
            .state
            .server(node)
            .map(|s| s.address.clone())
            .ok_or_else(|| Status::not_found(format!("chunkserver {node} is not registered")))?;
        (digest, addr)
    };
    let Ok(_slot) = m.integrity_checks.try_acquire() else {
        return Err(Status::unavailable(
            "the leader is busy checking other reports; retry shortly",
        ));
    };
    let read = async {
        let channel = m
            .config
            .transport
            .channel(&addr, |e| e.connect_timeout(Duration::from_secs(2)))
            .map_err(Status::invalid_argument)?;
        let mut c = ChunkServiceClient::new(channel).max_decoding_message_size(8 << 20);
        let mut s = c
            .read_chunk(ReadChunkRequest {
                chunk: Some(ChunkRef {
                    chunk_id: chunk.get(),
                    version: version.get(),
                }),
                offset: 0,
                length: 0,
                to_end: true,
                token: None,
            })
            .await?
            .into_inner();
        let mut h = shale_security::digest::ChunkHasher::default();
        while let Some(frame) = s.message().await? {
            h.update(&frame.data);
        }
        Ok::<_, Status>(h.finish())
    };
    let got = match tokio::time::timeout(CHECK_TIMEOUT, read).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            return Ok((
                false,
                format!("could not read the replica to check it: {}", e.message()),
            ))
        }
        Err(_) => return Ok((false, "reading the replica to check it timed out".into())),
    };
    if got == digest {
        return Ok((false, "the replica matches the writer's digest".into()));
    }
    tracing::error!(%chunk, %version, %node, "replica's bytes do not match the writer's digest: dropped, to be deleted and healed");
    m.soft
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .mark_bad(node, chunk, version);
    Ok((
        true,
        format!("chunkserver {node}'s replica of {chunk} does not match its digest; healing"),
    ))
}
