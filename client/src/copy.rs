//! Server-side copy: [`Client::copy`] makes a new file with the bytes of another without the
//! data passing through the client. Each chunk of the new file is allocated as for a write, and
//! every replica of its pipeline pulls the source chunk from a live source replica (preferring
//! one on its own host) and stores it under the new chunk's id, verified frame by frame. A
//! chunk whose copy fails on some replica is allocated again, excluding that replica (as a
//! write is). The copy appears atomically at the end, like any file; dropped or failed, it is
//! abandoned.
use crate::error::{ClientError, Result};
use crate::write::CreateOptions;
use crate::Client;
use futures_util::future::join_all;
use shale_proto::metapb::{AllocateChunkReply, ChunkLocation};
use shale_proto::pb::{ChunkRef, PipelineTarget, ReplicateChunkRequest};
use std::time::Duration;

/// Asks `target` to copy `from` (read at `source`) into the new chunk; the bytes it stored.
async fn copy_to(
    transport: &shale_security::Transport,
    target: &str,
    source: &shale_proto::metapb::Replica,
    from: &ChunkLocation,
    to: &AllocateChunkReply,
) -> std::result::Result<u64, String> {
    let mut c = crate::chunkserver::connect(transport, target, Duration::from_secs(300))?;
    let r = c
        .replicate_chunk(ReplicateChunkRequest {
            chunk: Some(ChunkRef {
                chunk_id: to.chunk_id,
                version: to.version,
            }),
            source: Some(PipelineTarget {
                node_id: source.node_id,
                address: source.address.clone(),
                data_address: String::new(),
            }),
            from: Some(ChunkRef {
                chunk_id: from.chunk_id,
                version: from.version,
            }),
            token: to.token.clone(),
            from_token: from.token.clone(),
            // Servers pull a client's copy over gRPC (only masters name data ports).
            source_data_address: String::new(),
        })
        .await
        .map_err(|s| format!("{target}: {:?} {}", s.code(), s.message()))?;
    Ok(r.into_inner().length)
}

impl Client {
    /// Copies the file at `src` to `dst` inside the cluster (the chunkservers move the bytes);
    /// returns the length. `opts` says whether to replace an existing `dst`, and may set the
    /// copy's replication (0: the source's) and nothing else (the chunk size is the source's).
    ///
    /// ```no_run
    /// # async fn f(c: shale_client::Client) -> shale_client::Result<()> {
    /// let n = c.copy("/data/in/sample.bin", "/backup/sample.bin", &Default::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn copy(&self, src: &str, dst: &str, opts: &CreateOptions) -> Result<u64> {
        let st = self.stat(src).await?;
        if st.is_dir {
            return Err(ClientError::FailedPrecondition(format!(
                "{src}: is a directory"
            )));
        }
        let locs = self.locations(src, 0, 0).await?;
        if locs.append {
            // An append file's chunks hold records in commit order plus bytes never committed:
            // its bytes are read through its extents and written as a regular file.
            let opts = CreateOptions {
                replication: if opts.replication == 0 {
                    st.replication
                } else {
                    opts.replication
                },
                ..opts.clone()
            };
            let r = self.open(src).await?;
            return self.put_with(dst, r, &opts, &|_| {}).await;
        }
        let opts = CreateOptions {
            replication: if opts.replication == 0 {
                st.replication
            } else {
                opts.replication
            },
            chunk_size: locs.chunk_size,
            ..opts.clone()
        };
        let (reply, mut building) = self.begin(dst, &opts).await?;
        let need = self.replicas_needed(reply.replication);
        let copied = async {
            for c in &locs.chunks {
                let len = (locs.length - u64::from(c.index) * locs.chunk_size).min(locs.chunk_size);
                self.copy_chunk(dst, reply.file, c, len, need).await?;
            }
            Ok(())
        }
        .await;
        building.abandon_on_err(copied).await?;
        // The copy has the source's bytes: its digests (when the source has them all).
        let digests: Vec<_> = locs.chunks.iter().map(|c| c.digest.clone()).collect();
        let digests = if digests.iter().all(|d| d.len() == 32) {
            digests
        } else {
            Vec::new()
        };
        building.finish(locs.length, digests).await?;
        Ok(locs.length)
    }

    /// Copies one chunk, retrying on fresh allocations that exclude failed replicas.
    async fn copy_chunk(
        &self,
        dst: &str,
        file: u64,
        from: &ChunkLocation,
        len: u64,
        need: usize,
    ) -> Result<()> {
        let sources: Vec<_> = from.replicas.iter().filter(|r| r.alive).collect();
        if sources.is_empty() {
            return Err(ClientError::ChunkRead {
                path: dst.to_string(),
                index: from.index,
                why: "no live replica of the source chunk".into(),
            });
        }
        let mut exclude = Vec::new();
        let mut last = String::new();
        for attempt in 0..self.config.chunk_attempts {
            let alloc = self.allocate(file, from.index, &exclude).await?;
            if alloc.pipeline.len() < need {
                last = crate::write::short_pipeline(alloc.pipeline.len(), need);
                exclude.clear();
                tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt + 1))).await;
                continue;
            }
            let copies = alloc.pipeline.iter().enumerate().map(|(i, t)| {
                // A source on the target itself if there is one, else spread over the sources.
                let s = sources
                    .iter()
                    .find(|s| s.node_id == t.node_id)
                    .copied()
                    .unwrap_or(sources[(i + attempt as usize) % sources.len()]);
                let (alloc, transport) = (&alloc, &self.config.transport);
                async move {
                    (
                        t.node_id,
                        copy_to(transport, &t.address, s, from, alloc).await,
                    )
                }
            });
            let mut failed = false;
            for (node, r) in join_all(copies).await {
                match r {
                    Ok(n) if n == len => {}
                    Ok(n) => {
                        failed = true;
                        last = format!("node {node} stored {n} of {len} bytes");
                        exclude.push(node);
                    }
                    Err(e) => {
                        failed = true;
                        tracing::warn!(dst, index = from.index, node, error = %e, "chunk copy failed; retrying this chunk");
                        last = e;
                        exclude.push(node);
                    }
                }
            }
            if !failed {
                return Ok(());
            }
        }
        Err(ClientError::ChunkWrite {
            path: dst.to_string(),
            index: from.index,
            attempts: self.config.chunk_attempts,
            last,
        })
    }
}
