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
        ep.connect_timeout(Duration::from_secs(1))
            .timeout(timeout)
            // A stopped or cut-off server answers no HTTP/2 ping: found in ≈ 3 s, whatever the
            // buffers hide.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true)
            // The 64 KiB defaults throttled chunk streams.
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(32 << 20)
    })?;
    Ok(ChunkServiceClient::new(channel)
        .max_encoding_message_size(MESSAGE_MAX_BYTES)
        .max_decoding_message_size(MESSAGE_MAX_BYTES))
}
