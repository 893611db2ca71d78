//! The HTTP status port of every server: `/metrics` (Prometheus text from the `metrics`
//! recorder), a status page at `/` (a master's is the operator's dashboard, and it also
//! answers `/api/status`: the JSON of `shale status --json` as that master sees it, and
//! `/api/dashboard`: the dashboard's JSON), and health for probes: `/healthz` (200 while the
//! process serves) and `/readyz` (200 when the server is ready for work, else 503 saying why:
//! a master in a group with a leader and caught up, a chunkserver registered with its store
//! open). Served by hyper's HTTP/1.1 server, over TLS (HTTPS) when the server runs TLS.
//!
//! Invariants (a status port must never take its server down, whatever reaches it):
//! * at most [`CONNECTIONS_MAX`] connections are served at once; a connection beyond that is
//!   answered `503` and closed at once (no task, no buffer), so file descriptors stay bounded
//!   and a legitimate client always gets a prompt answer;
//! * a connection must send its request head within [`HEADER_READ_TIMEOUT`] and is closed after
//!   [`CONNECTION_LIFE_MAX`] whatever it does (slow readers included); one request per
//!   connection, heads larger than [`HEAD_MAX_BYTES`] are refused by hyper;
//! * an `accept` error (e.g. the process is out of file descriptors) backs off
//!   [`ACCEPT_BACKOFF`] instead of spinning.
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub const CONNECTIONS_MAX: usize = 256;
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECTION_LIFE_MAX: Duration = Duration::from_secs(30);
pub const HEAD_MAX_BYTES: usize = 16 * 1024;
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\nretry-after: 1\r\n\r\nbusy\n";

/// Renders the status page body (HTML).
pub type Page = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// The JSON API under `/api/`: given the rest of the path, None when there is no such
/// endpoint (404), else the JSON (None: unavailable now, answered 503).
pub type Api =
    Arc<dyn Fn(&str) -> Option<Pin<Box<dyn Future<Output = Option<String>> + Send>>> + Send + Sync>;

/// Whether the server is ready for work: `Ok(what it is)` or `Err(why not)`.
pub type Ready =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// Bucket bounds of every `*_seconds` histogram (100 µs to 10 s), every `*_bytes` one (1 KiB to
/// 64 MiB) and every other one (counts, 1 to 512): all rendered as Prometheus histograms
/// (aggregatable across servers), none as summaries.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const BYTES_BUCKETS: [f64; 9] = [
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];
const COUNT_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the global Prometheus recorder (once per process), with the build-info and
/// process families every server exports.
pub fn recorder() -> Result<PrometheusHandle, String> {
    use metrics_exporter_prometheus::Matcher;
    let bad = |e: metrics_exporter_prometheus::BuildError| format!("metrics recorder: {e}");
    let h = PrometheusBuilder::new()
        .set_buckets(&COUNT_BUCKETS)
        .map_err(bad)?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .map_err(bad)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), &BYTES_BUCKETS)
        .map_err(bad)?
        .install_recorder()
        .map_err(|e| format!("metrics recorder: {e}"))?;
    metrics::describe_gauge!(
        "shale_build_info",
        "1, labelled with the version of this server"
    );
    metrics::gauge!("shale_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    process::describe();
    process::start_time();
    process::refresh();
    Ok(h)
}

/// Process metrics from `/proc/self` (the names Prometheus client libraries use), refreshed
/// at every scrape.
mod process {
    use metrics::{describe_counter, describe_gauge, Unit};

    pub fn describe() {
        describe_counter!(
            "process_cpu_seconds_total",
            Unit::Seconds,
            "user and system CPU time of this process"
        );
        describe_gauge!(
            "process_resident_memory_bytes",
            Unit::Bytes,
            "resident set size"
        );
        describe_gauge!(
            "process_virtual_memory_bytes",
            Unit::Bytes,
            "virtual memory size"
        );
        describe_gauge!("process_open_fds", "open file descriptors");
        describe_gauge!("process_threads", "threads of this process");
        describe_gauge!(
            "process_start_time_seconds",
            Unit::Seconds,
            "start time of the process since the Unix epoch"
        );
    }

    /// Sets `process_start_time_seconds`, once (it does not change): the boot time from
    /// `/proc/stat` plus the start tick from `/proc/self/stat`.
    pub fn start_time() {
        let (Ok(stat), Ok(all)) = (
            std::fs::read_to_string("/proc/self/stat"),
            std::fs::read_to_string("/proc/stat"),
        ) else {
            return;
        };
        let start = stat
            .rsplit_once(") ")
            .and_then(|(_, r)| r.split_whitespace().nth(19))
            .and_then(|v| v.parse::<u64>().ok());
        let boot = all.lines().find_map(|l| {
            l.strip_prefix("btime ")
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64 };
        if let (Some(start), Some(boot)) = (start, boot) {
            metrics::gauge!("process_start_time_seconds").set(boot as f64 + start as f64 / tick);
        }
    }

    /// Reads `/proc/self/stat` (fields after the command name) and counts `/proc/self/fd`.
    pub fn refresh() {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return;
        };
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            return;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let (tick, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
                libc::sysconf(libc::_SC_PAGESIZE).max(1) as f64,
            )
        };
        // Fields (0-based after the name): 11 utime, 12 stime, 17 threads, 20 vsize, 21 rss
        // (pages).
        let cpu = (num(11) + num(12)) as f64 / tick;
        metrics::counter!("process_cpu_seconds_total").absolute(cpu as u64);
        metrics::gauge!("process_threads").set(num(17) as f64);
        metrics::gauge!("process_virtual_memory_bytes").set(num(20) as f64);
        metrics::gauge!("process_resident_memory_bytes").set(num(21) as f64 * page);
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            metrics::gauge!("process_open_fds").set(d.count() as f64);
        }
    }
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn reply(code: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

async fn route(
    req: Request<hyper::body::Incoming>,
    metrics: PrometheusHandle,
    page: Page,
    ready: Ready,
    api: Option<Api>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => match ready().await {
            Ok(what) => reply(StatusCode::OK, "text/plain", format!("ready: {what}\n")),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        (&Method::GET, "/metrics") => {
            process::refresh();
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics.render(),
            )
        }
        (&Method::GET, "/") => reply(StatusCode::OK, "text/html; charset=utf-8", page().await),
        (&Method::GET, p) if p.starts_with("/api/") => match api.and_then(|f| f(&p[5..])) {
            Some(f) => match f.await {
                Some(json) => reply(StatusCode::OK, "application/json", json + "\n"),
                None => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    "{\"error\":\"status unavailable\"}\n".into(),
                ),
            },
            None => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        },
        (&Method::GET, _) => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        _ => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ),
    })
}

/// Serves until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: PrometheusHandle,
    page: Page,
    ready: Ready,
    api: Option<Api>,
    transport: shale_security::Transport,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                tracing::warn!("http status port: accept: {e}; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Full: a best-effort non-blocking answer, then the socket is dropped (closed).
            let _ = sock.try_write(BUSY);
            continue;
        };
        let (metrics, page, ready, api, transport) = (
            metrics.clone(),
            page.clone(),
            ready.clone(),
            api.clone(),
            transport.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            // HTTPS when the server runs TLS (client certificates optional: the status page
            // and metrics are read-only); the handshake counts against the header timeout.
            let hs = transport.accept_alpn(sock, b"http/1.1");
            let Ok(Ok(sock)) = tokio::time::timeout(HEADER_READ_TIMEOUT, hs).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                route(
                    req,
                    metrics.clone(),
                    page.clone(),
                    ready.clone(),
                    api.clone(),
                )
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(HEAD_MAX_BYTES)
                .keep_alive(false)
                .serve_connection(TokioIo::new(sock), svc);
            let _ = tokio::time::timeout(CONNECTION_LIFE_MAX, conn).await;
        });
    }
}

/// Binds `addr`, prints where the status port is, and serves it in the background.
pub async fn start(
    addr: &str,
    page: Page,
    ready: Ready,
    api: Option<Api>,
    transport: &shale_security::Transport,
) -> Result<String, Box<dyn std::error::Error>> {
    let metrics = recorder()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("http status port {addr}: {e}"))?;
    let bound = listener.local_addr()?.to_string();
    tokio::spawn(serve(
        listener,
        metrics,
        page,
        ready,
        api,
        transport.clone(),
    ));
    Ok(bound)
}
