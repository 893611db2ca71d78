//! Limits every gRPC server applies, so that a slow or malicious client cannot exhaust a
//! server's memory, descriptors or tasks (issue: security, item 5). Servers start from
//! [`server`]; the accept loop ([`crate::Transport::incoming`]) caps connections at
//! [`CONNECTIONS_MAX`] and handshakes at [`crate::transport::HANDSHAKES_MAX`]; each service
//! bounds its own message sizes and in-flight work (heartbeats, write streams).
use std::time::Duration;

/// Connections one server holds at once; more wait in the listen backlog.
pub const CONNECTIONS_MAX: usize = 4096;
/// Concurrent HTTP/2 streams (calls) per connection.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 256;
/// Largest request header block (metadata) accepted.
pub const HEADER_LIST_MAX_BYTES: u32 = 64 << 10;
/// Streams a client may open and reset before the server answers (HTTP/2 rapid reset).
pub const PENDING_RESETS_MAX: usize = 64;
/// A connection that answers no HTTP/2 ping for this long after one is sent is closed (a
/// vanished peer frees its resources).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A tonic server builder with the limits above.
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX)
        .http2_max_header_list_size(HEADER_LIST_MAX_BYTES)
        .http2_max_pending_accept_reset_streams(Some(PENDING_RESETS_MAX))
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
}
