//! A connection to one chunkserver, set up the same way for writes, reads and copies.
use shale_proto::pb::chunk_service_client::ChunkServiceClient;
use std::time::Duration;
use tonic::transport::Channel;

/// The largest message exchanged with a chunkserver (frames are at most 4 MiB).
const MESSAGE_MAX_BYTES: usize = 8 << 20;

/// A lazily connected client of the chunkserver at `addr`, calls bounded by `timeout`.
pub(crate) fn connect(
    transport: &shale_security::Transport,
    addr: &str,
    timeout: Duration,
) -> Result<ChunkServiceClient<Channel>, String> {
    let channel = transport.channel(addr, |ep| {
        shale_proto::channels::chunk_endpoint(ep, timeout)
    })?;
    Ok(ChunkServiceClient::new(channel)
        .max_encoding_message_size(MESSAGE_MAX_BYTES)
        .max_decoding_message_size(MESSAGE_MAX_BYTES))
}
