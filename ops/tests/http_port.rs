//! The HTTP status port under hostile connections (issue: hardening, item 5): thousands of
//! half-sent requests and a process out of file descriptors must neither pin the server's
//! descriptors and CPU nor kill the port.
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The tests of this file start servers: one at a time (2 cores).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a lone master (no group needed for its status port), optionally with a descriptor
/// limit; returns it and its HTTP address.
fn master(dir: &std::path::Path, nofile: Option<u64>) -> (Killed, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shale"));
    // Plaintext: these tests drive the HTTP layer itself with raw sockets (the same limits hold
    // over TLS, where the handshake counts against the header timeout).
    cmd.args([
        "--insecure",
        "master",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--data",
    ])
    .arg(dir)
    .env("RUST_LOG", "warn");
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe; it only limits the child being started.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let (child, _, line) = spawn_server_line(cmd);
    let http = http_addr(&line).unwrap_or_else(|| panic!("no http address in {line:?}"));
    (Killed(child), http)
}

/// One GET; the status code, or None when no answer came within `within`.
fn get(addr: &str, path: &str, within: Duration) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, within).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.set_write_timeout(Some(within)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let head = String::from_utf8_lossy(&out);
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Waits (bounded) until the master has finished starting: its page shows its own status,
/// which it reads over its gRPC port, served only once its Raft log and state are open. (The
/// status port answers earlier; a flood that began meanwhile made it fail to open its log for
/// want of descriptors and exit — the "did not recover" failures of this file.)
fn wait_ready(addr: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = (|| {
            let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, WAIT).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
            s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            Some(String::from_utf8_lossy(&out).into_owned())
        })();
        if page.is_some_and(|p| p.contains("applied index")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the master never finished starting"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// User + system CPU of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// Opens `n` connections that each send half a request head and then nothing.
fn half_open(addr: &str, n: usize) -> Vec<TcpStream> {
    let sa = addr.parse().expect("addr");
    let mut held = Vec::new();
    for _ in 0..n {
        if let Ok(mut s) = TcpStream::connect_timeout(&sa, Duration::from_millis(200)) {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHo");
            held.push(s);
        }
    }
    held
}

/// Whether the server closed (or answered and closed) a held connection.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn status_port_survives_two_thousand_half_open_connections() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let (m, http) = master(dir.path(), None);
    let pid = m.0.id();
    assert_eq!(get(&http, "/metrics", WAIT), Some(200));
    wait_ready(&http);
    let base = fds(pid);

    let mut held = half_open(&http, 2000);
    assert!(held.len() >= 1900, "only {} connections opened", held.len());
    // While all of them are held open by the client: the server's descriptors stay bounded and
    // a new request gets an answer at once (the page, or 503 while the slots are full).
    let during = get(&http, "/", Duration::from_secs(3));
    assert!(
        matches!(during, Some(200) | Some(503)),
        "no prompt answer during the flood: {during:?}"
    );
    let peak = fds(pid);
    assert!(
        peak <= base + 256 + 64,
        "server holds {peak} descriptors (baseline {base}) for half-open connections"
    );

    // The server closes every half-sent request itself (header timeout 5 s), although the
    // client never closes them; then the page is served normally again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        held.retain_mut(|s| !closed_by_server(s));
        if held.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} half-open connections still held by the server after 20 s",
            held.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&http, "/", Duration::from_secs(5)), Some(200));
    assert!(fds(pid) <= base + 8, "descriptors not released");
}

#[test]
fn status_port_backs_off_when_out_of_descriptors() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    // Far fewer descriptors than the connection limit: accept fails with EMFILE.
    let (m, http) = master(dir.path(), Some(160));
    let pid = m.0.id();
    assert_eq!(get(&http, "/metrics", WAIT), Some(200));
    wait_ready(&http);
    let held = half_open(&http, 600);
    // At most ≈ 145 can be accepted (160 descriptors, ≈ 15 in use) and the listen backlog is
    // 128, so ≈ 270 is all the kernel lets complete (more only by luck of timing: this asked
    // for 300 and failed when it followed the 2000-connection test). 200 is well past the
    // descriptor limit: accept fails with EMFILE while connections wait.
    assert!(held.len() >= 200, "only {} connections opened", held.len());
    // Out of descriptors, with connections waiting in the backlog: no spinning.
    std::thread::sleep(Duration::from_millis(500));
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - t0;
    // 2 s = 200 ticks; a spinning accept loop uses ~200.
    assert!(used < 60, "the master used {used} ticks of CPU in 2 s");
    drop(held);
    // The port recovers once the connections are gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&http, "/", Duration::from_secs(2)) != Some(200) {
        assert!(Instant::now() < deadline, "status port did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A master with TLS serves its status port as HTTPS (any client of the cluster CA may read
/// it; a client certificate is optional) and refuses plain HTTP.
#[test]
fn status_port_is_https_on_a_tls_master() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(https_status_port());
}

async fn https_status_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    ensure_cert(shale_security::Role::Master, "1");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shale"));
    cmd.arg("--tls-dir")
        .arg(tls_dir())
        .args(["master", "--id", "1", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env("RUST_LOG", "warn");
    let (child, _, line) = spawn_server_line(cmd);
    let _m = Killed(child);
    let http = http_addr(&line).expect("http address");
    let port: u16 = http
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    // Plain HTTP gets no HTTP answer.
    assert_eq!(get(&http, "/metrics", Duration::from_secs(3)), None);
    // HTTPS as an anonymous client of the CA, then as the admin.
    let anon = shale_security::Transport::tls(
        shale_security::Tls::load(shale_security::TlsFiles {
            ca: tls_dir().join("ca.pem"),
            cert: None,
            key: None,
        })
        .expect("ca"),
    );
    for t in [anon, admin()] {
        let deadline = Instant::now() + WAIT;
        let answer = loop {
            let r = async {
                let mut s = t.dial("127.0.0.1", port, b"http/1.1").await?;
                s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
                    .await?;
                let mut out = Vec::new();
                s.read_to_end(&mut out).await?;
                Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
            };
            match tokio::time::timeout(Duration::from_secs(5), r).await {
                Ok(Ok(a)) => break a,
                _ => {
                    assert!(Instant::now() < deadline, "no HTTPS answer");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

/// Waits (bounded) until GET `path` answers `code`.
fn wait_for(addr: &str, path: &str, code: u16) {
    let deadline = Instant::now() + WAIT;
    while get(addr, path, Duration::from_secs(3)) != Some(code) {
        assert!(
            Instant::now() < deadline,
            "{path} at {addr} never answered {code}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plaintext server process of `args` (after `--insecure`); its gRPC and HTTP addresses.
fn server(args: &[&str]) -> (Killed, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shale"));
    cmd.arg("--insecure").args(args).env("RUST_LOG", "warn");
    let (child, addr, line) = spawn_server_line(cmd);
    let http = http_addr(&line).unwrap_or_else(|| panic!("no http address in {line:?}"));
    (Killed(child), addr, http)
}

/// `/healthz` answers while the process serves; `/readyz` only once a master is in a group
/// with a leader (caught up) and a chunkserver is registered, 503 before.
#[test]
fn health_and_readiness_endpoints() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let m1 = dir.path().join("m1");
    let (_m, grpc, http) = server(&[
        "master",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--data",
        m1.to_str().expect("utf-8"),
    ]);
    assert_eq!(get(&http, "/healthz", WAIT), Some(200));
    // Not bootstrapped: no group, no leader.
    wait_for(&http, "/readyz", 503);
    // A chunkserver whose masters have no group yet is alive but not ready.
    let cs = dir.path().join("cs1");
    let (_c, _, cs_http) = server(&[
        "--masters",
        &grpc,
        "chunkserver",
        "--listen",
        "127.0.0.1:0",
        "--data",
        cs.to_str().expect("utf-8"),
        "--host",
        "cs1",
    ]);
    assert_eq!(get(&cs_http, "/healthz", WAIT), Some(200));
    assert_eq!(get(&cs_http, "/readyz", WAIT), Some(503));
    // A group of one: the master leads, then the chunkserver registers.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = client_as(&shale_security::Transport::plaintext(), &grpc);
        c.bootstrap(shale_proto::metapb::BootstrapRequest {
            masters: vec![shale_proto::metapb::MasterInfo {
                id: 1,
                address: grpc.clone(),
                voter: true,
                ..Default::default()
            }],
        })
        .await
        .expect("bootstrap");
    });
    wait_for(&http, "/readyz", 200);
    wait_for(&cs_http, "/readyz", 200);

    // Metrics: the master's group, namespace, chunkservers and RPCs (latency histograms, not
    // summaries), build info and process metrics on both; every family has HELP.
    let deadline = Instant::now() + WAIT;
    let m = loop {
        let m = body(&http, "/metrics");
        if m.contains("shale_master_is_leader 1")
            && m.contains("shale_master_chunkservers{state=\"alive\"} 1")
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "master gauges never showed the group: {m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for want in [
        "shale_master_term 1",
        "shale_master_directories 1",
        "shale_master_missing_chunks 0",
        "shale_master_rpcs_total{method=\"Bootstrap\",outcome=\"ok\"} 1",
        "shale_master_rpcs_total{method=\"Mkdir\",outcome=\"error\"} 0",
        "shale_master_rpc_seconds_bucket{method=\"Heartbeat\",le=\"0.001\"}",
        "shale_build_info{version=",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "shale_raftlog_fsync_seconds_bucket",
    ] {
        assert!(m.contains(want), "master metrics lack {want}: {m}");
    }
    assert!(!m.contains("quantile="), "histograms, not summaries: {m}");
    let c = body(&cs_http, "/metrics");
    for want in ["shale_build_info{version=", "process_cpu_seconds_total "] {
        assert!(c.contains(want), "chunkserver metrics lack {want}: {c}");
    }
    // The master's JSON API: what `shale status --json` prints, as this master sees it.
    let api: serde_json::Value =
        serde_json::from_str(&body(&http, "/api/status")).expect("/api/status is JSON");
    assert_eq!(api["role"], "leader", "{api}");
    assert_eq!(api["masters"].as_array().map(Vec::len), Some(1), "{api}");
    assert_eq!(api["chunkservers"][0]["state"], "alive", "{api}");
    assert_eq!(get(&cs_http, "/api/status", WAIT), Some(404));
    for text in [&m, &c] {
        let helped: std::collections::HashSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# HELP "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for family in text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
        {
            assert!(helped.contains(family), "{family} has no HELP");
        }
    }
}

/// The body of one GET (empty if none came).
fn body(addr: &str, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
