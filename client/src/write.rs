//! Writing a file: create → for each chunk: allocate → pipeline write (retried alone on a fresh
//! allocation excluding the failed replica) → complete. One chunk's frames are buffered (for
//! retries); the writer lease is renewed in the background while the file is written.
use crate::error::{ClientError, Result};
use crate::Client;
use bytes::Bytes;
use shale_proto::metapb::*;
use shale_proto::pb::chunk_service_client::ChunkServiceClient;
use shale_proto::pb::{write_chunk_request::Kind, WriteChunkRequest};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tonic::transport::Endpoint;

const FAILED_NODE: &str = "shale-failed-node";

/// Reads up to `chunk_bytes` from `src` as frames of `frame_bytes`.
async fn read_chunk<R: AsyncRead + Unpin>(
    src: &mut R,
    chunk_bytes: u64,
    frame_bytes: usize,
) -> Result<(Vec<Bytes>, u64)> {
    let mut frames = Vec::new();
    let mut total = 0u64;
    while total < chunk_bytes {
        let want = (chunk_bytes - total).min(frame_bytes as u64) as usize;
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            let n = src.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        total += filled as u64;
        let eof = filled < want;
        if filled > 0 {
            frames.push(Bytes::from(buf));
        }
        if eof {
            break;
        }
    }
    Ok((frames, total))
}

/// Writes one chunk through its pipeline; on failure names the replica to blame.
async fn send_chunk(
    reply: &AllocateChunkReply,
    frames: &[Bytes],
    length: u64,
) -> std::result::Result<(), (Option<u64>, String)> {
    let head = reply
        .pipeline
        .first()
        .ok_or((None, "empty pipeline".to_string()))?;
    let ep = Endpoint::from_shared(format!("http://{}", head.address))
        .map_err(|e| (Some(head.node_id), e.to_string()))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(120))
        .tcp_nodelay(true)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20);
    let mut client = ChunkServiceClient::new(ep.connect_lazy())
        .max_encoding_message_size(8 << 20)
        .max_decoding_message_size(8 << 20);
    let header = WriteChunkRequest {
        kind: Some(Kind::Header(shale_proto::convert::pipeline_header(
            reply, length,
        ))),
    };
    let msgs: Vec<WriteChunkRequest> = std::iter::once(header)
        .chain(frames.iter().map(|f| WriteChunkRequest {
            kind: Some(Kind::Data(f.clone())),
        }))
        .collect();
    match client.write_chunk(tokio_stream::iter(msgs)).await {
        Ok(r) => {
            let r = r.into_inner();
            let want: Vec<u64> = reply.pipeline.iter().map(|p| p.node_id).collect();
            if r.durable_on != want {
                return Err((
                    None,
                    format!(
                        "durable on {:?}, pipeline was {} replicas",
                        r.durable_on,
                        reply.pipeline.len()
                    ),
                ));
            }
            Ok(())
        }
        Err(s) => {
            let blamed = s
                .metadata()
                .get(FAILED_NODE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .or(Some(head.node_id));
            Err((blamed, format!("{:?}: {}", s.code(), s.message())))
        }
    }
}

impl Client {
    /// Stores `src` at `path` (replacing an existing file if `overwrite`). `progress` gets the
    /// bytes written so far after each chunk. Returns the file's length.
    pub async fn put<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        mut src: R,
        overwrite: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64> {
        let (p, id, lease_ms) = (path.to_string(), self.id, self.config.lease_ms);
        let request_id = self.masters.request_id();
        let created = self
            .masters
            .call(|mut m| {
                let path = p.clone();
                async move {
                    m.create(CreateRequest {
                        path,
                        overwrite,
                        replication: 0,
                        chunk_size: 0,
                        client_id: id,
                        lease_ms,
                        request_id,
                    })
                    .await
                }
            })
            .await?;
        let file = created.file;
        let renewer = {
            let m = self.masters.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(lease_ms / 3)).await;
                    let request_id = m.request_id();
                    let r = m
                        .call(|mut c| async move {
                            c.renew_lease(LeaseRequest {
                                file,
                                client_id: id,
                                lease_ms,
                                request_id,
                            })
                            .await
                        })
                        .await;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "lease renewal failed");
                    }
                }
            })
        };
        let result = self
            .write_chunks(path, file, created.chunk_size, &mut src, progress)
            .await;
        renewer.abort();
        match result {
            Ok(total) => {
                let request_id = self.masters.request_id();
                self.masters
                    .call(|mut m| async move {
                        m.complete(CompleteRequest {
                            file,
                            client_id: id,
                            length: total,
                            request_id,
                        })
                        .await
                    })
                    .await?;
                Ok(total)
            }
            Err(e) => {
                let request_id = self.masters.request_id();
                let _ = self
                    .masters
                    .call(|mut m| async move {
                        m.abandon(AbandonRequest {
                            file,
                            client_id: id,
                            request_id,
                        })
                        .await
                    })
                    .await;
                Err(e)
            }
        }
    }

    async fn write_chunks<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        file: u64,
        chunk_size: u64,
        src: &mut R,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64> {
        let mut total = 0u64;
        let mut index = 0u32;
        loop {
            let (frames, len) = read_chunk(src, chunk_size, self.config.frame_bytes).await?;
            if len == 0 {
                return Ok(total);
            }
            self.write_one_chunk(path, file, index, &frames, len)
                .await?;
            total += len;
            index += 1;
            progress(total);
            if len < chunk_size {
                return Ok(total);
            }
        }
    }

    async fn write_one_chunk(
        &self,
        path: &str,
        file: u64,
        index: u32,
        frames: &[Bytes],
        len: u64,
    ) -> Result<()> {
        let mut exclude: Vec<u64> = Vec::new();
        let mut last = String::new();
        let id = self.id;
        for attempt in 1..=self.config.chunk_attempts {
            let (ex, host) = (exclude.clone(), self.config.host.clone());
            let request_id = self.masters.request_id();
            let alloc = self
                .masters
                .call(|mut m| {
                    let (exclude, client_host) = (ex.clone(), host.clone());
                    async move {
                        m.allocate_chunk(AllocateChunkRequest {
                            file,
                            client_id: id,
                            index,
                            exclude,
                            client_host,
                            request_id,
                        })
                        .await
                    }
                })
                .await?;
            match send_chunk(&alloc, frames, len).await {
                Ok(()) => return Ok(()),
                Err((blamed, why)) => {
                    tracing::warn!(path, index, attempt, ?blamed, %why, "chunk write failed; retrying this chunk");
                    last = why;
                    if let Some(n) = blamed {
                        if !exclude.contains(&n) {
                            exclude.push(n);
                        }
                    }
                }
            }
        }
        Err(ClientError::ChunkWrite {
            path: path.to_string(),
            index,
            attempts: self.config.chunk_attempts,
            last,
        })
    }
}
