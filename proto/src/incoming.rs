//! Accepting gRPC connections without spinning: tonic's accept loop retries a failed `accept`
//! at once, so a process out of file descriptors (EMFILE), with connections waiting, burned a
//! whole core until descriptors came back. [`incoming`] waits [`ACCEPT_BACKOFF`] after a failed
//! accept instead (the status ports do the same).
use std::time::Duration;
use tonic::transport::server::TcpIncoming;

/// The pause after a failed accept.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connections `listener` accepts (TCP_NODELAY set), pausing after each failed accept.
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    let inc = TcpIncoming::from(listener).with_nodelay(Some(true));
    futures_util::stream::unfold(inc, |mut inc| async move {
        use futures_util::StreamExt;
        loop {
            match inc.next().await {
                Some(Ok(s)) => return Some((Ok(s), inc)),
                Some(Err(e)) => {
                    tracing::warn!("accept: {e}; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                None => return None,
            }
        }
    })
}
