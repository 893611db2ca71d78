//! How every party configures a connection to a chunkserver (clients, chunkservers forwarding
//! to their peers): one place for the settings chunk streams need.

use std::time::Duration;
use tonic::transport::Endpoint;

/// `ep` set up for chunk streams, each call bounded by `timeout`.
pub fn chunk_endpoint(ep: Endpoint, timeout: Duration) -> Endpoint {
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
}
