//! The HTTP status port of every server: `/metrics` (Prometheus text from the `metrics`
//! recorder) and a small status page at `/`. A deliberately tiny HTTP/1.1 responder: one
//! request per connection, bounded request size, GET only.
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUEST_MAX_BYTES: usize = 8 * 1024;

/// Renders the status page body (HTML).
pub type Page = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// Installs the global Prometheus recorder (once per process).
pub fn recorder() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("metrics recorder: {e}"))
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Serves until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: PrometheusHandle, page: Page) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, page) = (metrics.clone(), page.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; REQUEST_MAX_BYTES];
            let mut n = 0;
            while n < buf.len() {
                match sock.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let req = String::from_utf8_lossy(&buf[..n]);
            let mut parts = req.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (code, ctype, body) = match (method, path) {
                ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
                ("GET", "/") => ("200 OK", "text/html; charset=utf-8", page().await),
                ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
                _ => (
                    "405 Method Not Allowed",
                    "text/plain",
                    "GET only\n".to_string(),
                ),
            };
            let head = format!(
                "HTTP/1.1 {code}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        });
    }
}

/// Binds `addr`, prints where the status port is, and serves it in the background.
pub async fn start(addr: &str, page: Page) -> Result<String, Box<dyn std::error::Error>> {
    let metrics = recorder()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("http status port {addr}: {e}"))?;
    let bound = listener.local_addr()?.to_string();
    tokio::spawn(serve(listener, metrics, page));
    Ok(bound)
}
