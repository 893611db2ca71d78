//! End-to-end integrity: the writing client hashes each chunk (BLAKE3 of its bytes) as it
//! sends it and commits the digests with `Complete`; readers check every whole chunk they read
//! against the digest the masters hand out with its locations, so no chunkserver can hand out
//! wrong bytes, even with matching checksums. [`Client::verify`] reads every replica of a file
//! and names the bad ones.
use crate::{Client, Result};
use bytes::Bytes;
use shale_proto::metapb::{BadReplicaRequest, ChunkLocation};

use shale_security::digest::{chunk_digest, file_root, hex};

/// The digest of a chunk's bytes, given as frames.
pub(crate) fn digest(frames: &[Bytes]) -> Bytes {
    Bytes::copy_from_slice(&chunk_digest(frames))
}

/// Whether `frames` are the bytes the writer committed for `c`.
pub(crate) fn matches(c: &ChunkLocation, frames: &[Bytes]) -> bool {
    chunk_digest(frames)[..] == c.digest[..]
}

/// One replica's verdict in a [`Verification`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaCheck {
    /// The chunk's index in the file.
    pub index: u32,
    /// The chunkserver.
    pub node_id: u64,
    /// Its address.
    pub address: String,
    /// `None`: the bytes match the digest; otherwise what is wrong.
    pub problem: Option<String>,
}

/// What [`Client::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// The file's root (hex), as its chunk digests give it; empty if it has none.
    pub root: String,
    /// Every replica checked.
    pub replicas: Vec<ReplicaCheck>,
    /// Chunks with no digest (written by a client that committed none): not checkable.
    pub unchecked_chunks: Vec<u32>,
}

impl Verification {
    /// Whether every replica of every chunk matched.
    pub fn is_ok(&self) -> bool {
        self.unchecked_chunks.is_empty() && self.replicas.iter().all(|r| r.problem.is_none())
    }
}

impl Client {
    /// Reads every replica of every chunk of `path` and checks its bytes against the digest
    /// the writer committed, trusting no single server; bad replicas are reported to the
    /// masters (which check and heal them).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let v = c.verify("/data/in/sample.bin").await?;
    /// for r in v.replicas.iter().filter(|r| r.problem.is_some()) {
    ///     eprintln!("chunk {} on chunkserver {}: {:?}", r.index, r.node_id, r.problem);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn verify(&self, path: &str) -> Result<Verification> {
        let locs = self.locations(path, 0, 0).await?;
        let mut out = Verification::default();
        let digests: Vec<&[u8]> = locs.chunks.iter().map(|c| &c.digest[..]).collect();
        if !digests.is_empty() && digests.iter().all(|d| d.len() == 32) {
            out.root = hex(&file_root(digests.iter().copied()));
        }
        for c in &locs.chunks {
            if c.digest.len() != 32 {
                out.unchecked_chunks.push(c.index);
                continue;
            }
            for r in &c.replicas {
                let one = ChunkLocation {
                    replicas: vec![r.clone()],
                    ..c.clone()
                };
                let problem = match self.read_replica(r, &one, 0, c.length).await {
                    Ok(frames) if matches(c, &frames) => None,
                    Ok(_) => {
                        self.report_bad(c, r.node_id);
                        Some("bytes do not match the writer's digest".to_string())
                    }
                    Err(e) => Some(format!("unreadable: {e}")),
                };
                out.replicas.push(ReplicaCheck {
                    index: c.index,
                    node_id: r.node_id,
                    address: r.address.clone(),
                    problem,
                });
            }
        }
        Ok(out)
    }

    /// Tells the masters (in the background) that `node`'s replica of `c` is bad.
    pub(crate) fn report_bad(&self, c: &ChunkLocation, node: u64) {
        let masters = self.masters.clone();
        let (chunk_id, version) = (c.chunk_id, c.version);
        self.masters.cleanup(async move {
            let r = masters
                .call(|mut m| async move {
                    m.report_bad_replica(BadReplicaRequest {
                        chunk_id,
                        version,
                        node_id: node,
                    })
                    .await
                })
                .await;
            match r {
                Ok(r) => tracing::warn!(chunk_id, node, confirmed = r.confirmed, detail = %r.detail, "bad replica reported"),
                Err(e) => tracing::warn!(chunk_id, node, error = %e, "could not report a bad replica"),
            }
        });
    }
}
