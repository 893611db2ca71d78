//! Real-process harness: start `shale master` processes on 127.0.0.1:0, talk to them over
//! gRPC, kill/stop/restart them. Every child is killed when its handle drops.
#![allow(dead_code)]
use shale_proto::metapb::master_service_client::MasterServiceClient;
use shale_proto::metapb::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub const WAIT: Duration = Duration::from_secs(30);

/// The test process's TLS folder: one cluster CA per test binary, certificates made on demand
/// (every cluster in the tests runs with mutual TLS unless a test asks for `--insecure`).
pub fn tls_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tls tmp"))
        .path()
}

/// Makes sure `role name` has a certificate in [`tls_dir`]; its files.
pub fn ensure_cert(role: shale_security::Role, name: &str) -> shale_security::TlsFiles {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let p = shale_security::Principal::new(role, name).expect("principal");
    shale_security::certs::provision(
        tls_dir(),
        std::slice::from_ref(&p),
        &["127.0.0.1", "localhost"],
    )
    .expect("provision certificates");
    shale_security::TlsFiles::of(tls_dir(), &p)
}

/// Mutual TLS as `role name`.
pub fn transport_as(role: shale_security::Role, name: &str) -> shale_security::Transport {
    shale_security::Transport::tls(
        shale_security::Tls::load(ensure_cert(role, name)).expect("load tls"),
    )
}

/// The tests' admin identity (what the CLI of `shale up` uses).
pub fn admin() -> shale_security::Transport {
    static T: std::sync::OnceLock<shale_security::Transport> = std::sync::OnceLock::new();
    T.get_or_init(|| transport_as(shale_security::Role::Admin, "admin"))
        .clone()
}

/// A client configuration for the test clusters (TLS as the admin).
pub fn client_config() -> shale_client::ClientConfig {
    shale_client::ClientConfig {
        transport: admin(),
        ..Default::default()
    }
}

/// The `shale` binary, set up to reach the test clusters as the admin.
pub fn shale_cmd() -> Command {
    ensure_cert(shale_security::Role::Admin, "admin");
    let mut c = Command::new(env!("CARGO_BIN_EXE_shale"));
    c.env("SHALE_TLS_DIR", tls_dir()).env("SHALE_USER", "admin");
    c
}

/// Runs `cmd` with `input` on its standard input (fed from a thread, so a child that writes
/// much before it reads cannot block on a full pipe) and collects its output.
pub fn output_with_input(mut cmd: Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shale");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = feeder.join();
    out
}

/// A chunkserver client as the admin.
pub fn chunk_client(
    addr: &str,
) -> shale_proto::pb::chunk_service_client::ChunkServiceClient<Channel> {
    let ch = admin()
        .channel(addr, |e| e.connect_timeout(Duration::from_secs(1)))
        .expect("uri");
    shale_proto::pb::chunk_service_client::ChunkServiceClient::new(ch)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// Spawns a server whose first stdout line says `... listening on ADDR ...`; returns the child
/// and that address, and keeps draining its stdout so it never blocks on a full pipe.
pub fn spawn_server(cmd: Command) -> (Child, String) {
    let (child, addr, _) = spawn_server_line(cmd);
    (child, addr)
}

/// [`spawn_server`], also returning the whole first line.
pub fn spawn_server_line(cmd: Command) -> (Child, String, String) {
    spawn_server_line_to(cmd, server_stderr(Stdio::null))
}

/// Where a server's stderr goes: this test's own with `SHALE_TEST_STDERR` set, else `or`.
fn server_stderr(or: impl FnOnce() -> Stdio) -> Stdio {
    if std::env::var_os("SHALE_TEST_STDERR").is_some() {
        Stdio::inherit()
    } else {
        or()
    }
}

/// [`spawn_server_line`] with the server's stderr going to `stderr`.
pub fn spawn_server_line_to(mut cmd: Command, stderr: Stdio) -> (Child, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn shale");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    out.read_line(&mut line).expect("read the listen line");
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    std::thread::spawn(move || for _ in out.lines() {});
    (child, addr, line)
}

/// The address after `http status on ` in a server's first line.
pub fn http_addr(line: &str) -> Option<String> {
    line.split("http status on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
}

/// GET `path` from a TLS server's status port (`http`: its address) as the admin:
/// (status code, body); None if it does not answer within 5 s.
pub async fn https_get(http: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port: u16 = http.rsplit(':').next()?.parse().ok()?;
    let r = async {
        let mut s = admin().dial("127.0.0.1", port, b"http/1.1").await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), r)
        .await
        .ok()?
        .ok()?;
    let code = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

/// Panics unless every one of `paths` is there, by a linearizable stat on the leader among
/// `addrs` (`after`: what happened, for the message).
pub async fn all_there(addrs: &[String], paths: &[String], after: &str) {
    for p in paths {
        on_leader(addrs, |mut c| {
            let p = p.clone();
            async move {
                c.stat(PathRequest {
                    path: p,
                    follower_read: false,
                })
                .await
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{p} lost after {after}: {e}"));
    }
}

/// Masters 1, 2 and 3 started with `extra` (data in `dir`/m1…m3), not yet bootstrapped.
pub fn three_masters(dir: &Path, extra: &[&str]) -> Vec<MasterProc> {
    (1..=3)
        .map(|id| MasterProc::start(id, "127.0.0.1:0", &dir.join(format!("m{id}")), extra))
        .collect()
}

/// Forms the group from `masters` through the first one.
pub async fn bootstrap(masters: &[MasterProc]) {
    let boot = BootstrapRequest {
        masters: masters
            .iter()
            .map(|m| MasterInfo {
                id: m.id,
                address: m.addr.clone(),
                voter: true,
                ..Default::default()
            })
            .collect(),
    };
    client(&masters[0].addr)
        .await
        .bootstrap(boot)
        .await
        .expect("bootstrap");
}

pub struct MasterProc {
    pub id: u64,
    pub addr: String,
    /// Its HTTP(S) status port.
    pub http: String,
    pub data: PathBuf,
    pub child: Option<Child>,
    extra: Vec<String>,
    /// Its stderr (every start appends), printed when a test panics with it alive.
    log: PathBuf,
}

/// A free local port below the kernel's ephemeral range (32768 and up here), for a master that
/// may be restarted: it keeps its address (the group knows it by it), and a port the kernel
/// handed out for `:0` could meanwhile go to another listener or to an outgoing connection's
/// local end (seen: a restarted master exiting at once, its port taken).
fn stable_port() -> u16 {
    for _ in 0..1000 {
        let p = fastrand::u16(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port in 20000..32000");
}

impl MasterProc {
    /// Starts a master; `listen` may be `127.0.0.1:0` (then a free port below the ephemeral
    /// range is chosen, so that a restart finds it free).
    pub fn start(id: u64, listen: &str, data: &Path, extra: &[&str]) -> MasterProc {
        let chosen;
        let listen = if listen == "127.0.0.1:0" {
            chosen = format!("127.0.0.1:{}", stable_port());
            chosen.as_str()
        } else {
            listen
        };
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shale"));
        if !extra.iter().any(|e| e == "--insecure") {
            ensure_cert(shale_security::Role::Master, &id.to_string());
            cmd.arg("--tls-dir").arg(tls_dir());
        }
        cmd.args([
            "master",
            "--id",
            &id.to_string(),
            "--listen",
            listen,
            "--data",
        ])
        .arg(data)
        .args(&extra)
        .env(
            "RUST_LOG",
            std::env::var("SHALE_TEST_MASTER_LOG").unwrap_or("warn".into()),
        );
        let log = data.with_extension("log");
        let stderr = server_stderr(|| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_or_else(|_| Stdio::null(), Stdio::from)
        });
        let (child, addr, line) = spawn_server_line_to(cmd, stderr);
        MasterProc {
            id,
            addr,
            http: http_addr(&line).unwrap_or_default(),
            data: data.to_path_buf(),
            child: Some(child),
            extra,
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Starts the same master again on the same address and data.
    pub fn restart(&mut self) {
        self.kill9();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut again = MasterProc::start(self.id, &self.addr.clone(), &self.data.clone(), &extra);
        self.child = again.child.take();
        self.http = std::mem::take(&mut again.http);
    }
}

impl Drop for MasterProc {
    fn drop(&mut self) {
        // A failing test shows what its masters logged (at `SHALE_TEST_MASTER_LOG`, warn).
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- master {} ({}): the last {} of {} log lines ---\n{}",
                self.id,
                self.addr,
                tail.len(),
                lines.len(),
                tail.join("\n")
            );
        }
        if let Some(c) = &self.child {
            // SAFETY: resume a stopped child so kill and wait work.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGCONT);
            }
        }
        self.kill9();
    }
}

pub async fn client(addr: &str) -> MasterServiceClient<Channel> {
    client_as(&admin(), addr)
}

/// A master client with `transport`'s identity.
pub fn client_as(
    transport: &shale_security::Transport,
    addr: &str,
) -> MasterServiceClient<Channel> {
    let ch = transport
        .channel(addr, |e| {
            e.connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(2))
        })
        .expect("uri");
    MasterServiceClient::new(ch)
}

/// The leader's address, asked of any master, waiting (bounded) for one to be elected.
pub async fn leader(addrs: &[String]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        for a in addrs {
            if let Ok(r) = client(a).await.status(Empty {}).await {
                let s = r.into_inner();
                if s.leader != 0 && addrs.contains(&s.leader_address) {
                    if let Ok(r2) = client(&s.leader_address).await.status(Empty {}).await {
                        if r2.into_inner().role == "leader" {
                            return s.leader_address;
                        }
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader elected in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The master that last answered a leader-only call (clients cache the leader).
static LAST_LEADER: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Runs `op` against the leader, following `shale-leader` hints and retrying (bounded) while
/// no leader is known. Returns the first non-UNAVAILABLE outcome.
pub async fn on_leader<T, F, Fut>(addrs: &[String], op: F) -> Result<T, tonic::Status>
where
    F: FnMut(MasterServiceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    on_leader_as(&admin(), addrs, op).await
}

/// [`on_leader`] with `transport`'s identity.
pub async fn on_leader_as<T, F, Fut>(
    transport: &shale_security::Transport,
    addrs: &[String],
    mut op: F,
) -> Result<T, tonic::Status>
where
    F: FnMut(MasterServiceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + WAIT;
    let cached = LAST_LEADER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .filter(|l| addrs.contains(l));
    let mut target = cached.unwrap_or_else(|| addrs[0].clone());
    let mut i = 0;
    loop {
        match op(client_as(transport, &target)).await {
            Ok(r) => {
                *LAST_LEADER.lock().unwrap_or_else(|p| p.into_inner()) = Some(target);
                return Ok(r.into_inner());
            }
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::Unknown
                        | tonic::Code::Cancelled
                        | tonic::Code::DeadlineExceeded
                ) =>
            {
                if Instant::now() > deadline {
                    return Err(s);
                }
                match s
                    .metadata()
                    .get("shale-leader")
                    .and_then(|v| v.to_str().ok())
                {
                    Some(l) if addrs.iter().any(|a| a == l) => target = l.to_string(),
                    _ => {
                        i += 1;
                        target = addrs[i % addrs.len()].clone();
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
            }
            Err(s) => return Err(s),
        }
    }
}

/// Creates and completes an empty file; returns once acknowledged.
pub async fn touch(addrs: &[String], path: &str) -> Result<(), tonic::Status> {
    let p = path.to_string();
    let c = on_leader(addrs, |mut c| {
        let p = p.clone();
        async move {
            c.create(CreateRequest {
                request_id: None,
                path: p,
                overwrite: true,
                replication: 0,
                chunk_size: 0,
                client_id: 42,
                lease_ms: 60_000,
                mode: None,
            })
            .await
        }
    })
    .await?;
    on_leader(addrs, |mut cl| async move {
        cl.complete(CompleteRequest {
            chunk_digests: vec![],
            request_id: None,
            file: c.file,
            client_id: 42,
            length: 0,
        })
        .await
    })
    .await?;
    Ok(())
}

pub async fn status(addr: &str) -> StatusReply {
    client(addr)
        .await
        .status(Empty {})
        .await
        .expect("status")
        .into_inner()
}

/// Waits (bounded) until `addr` has applied at least `index`.
pub async fn caught_up(addr: &str, index: u64) {
    let deadline = Instant::now() + WAIT;
    let mut last;
    loop {
        match client(addr).await.status(Empty {}).await {
            Ok(r) => {
                let r = r.into_inner();
                if r.applied_index >= index {
                    return;
                }
                // What it says, for a failure message that explains itself.
                last = format!(
                    "{} in term {}, applied {}, leader {} ({})",
                    r.role, r.term, r.applied_index, r.leader, r.leader_address
                );
            }
            Err(e) => last = format!("error {:?}: {}", e.code(), e.message()),
        }
        assert!(
            Instant::now() < deadline,
            "{addr} did not catch up to {index}; it last said: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stats `path` on one master without a leader round trip.
pub async fn follower_stat(addr: &str, path: &str) -> Result<FileStat, tonic::Status> {
    client(addr)
        .await
        .stat(PathRequest {
            path: path.into(),
            follower_read: true,
        })
        .await
        .map(|r| r.into_inner())
}

/// A chunkserver child process.
pub struct ChunkProc {
    pub addr: String,
    /// Its HTTP(S) status port.
    pub http: String,
    pub data: PathBuf,
    pub child: Option<Child>,
}

impl ChunkProc {
    pub fn start(masters: &[String], host: &str, data: &Path) -> ChunkProc {
        ChunkProc::start_with(masters, host, data, &[])
    }

    pub fn start_with(masters: &[String], host: &str, data: &Path, extra: &[&str]) -> ChunkProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shale"));
        if !extra.contains(&"--insecure") {
            ensure_cert(shale_security::Role::Chunkserver, host);
            cmd.arg("--tls-dir").arg(tls_dir());
        }
        cmd.args([
            "--masters",
            &masters.join(","),
            "chunkserver",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--host", host, "--heartbeat-ms", "200", "--data"])
        .arg(data)
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("SHALE_TEST_CS_LOG").unwrap_or("error".into()),
        );
        let (child, addr, line) = spawn_server_line(cmd);
        ChunkProc {
            addr,
            http: http_addr(&line).unwrap_or_default(),
            data: data.to_path_buf(),
            child: Some(child),
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChunkProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Three masters (bootstrapped) and `n` chunkservers, all on 127.0.0.1:0.
pub struct Cluster {
    pub masters: Vec<MasterProc>,
    pub chunkservers: Vec<ChunkProc>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(n: usize, chunk_size_mib: u64) -> Cluster {
        Cluster::start_with(n, chunk_size_mib, &[], &[]).await
    }

    /// Like [`Cluster::start`], with extra flags for the masters and the chunkservers.
    pub async fn start_with(
        n: usize,
        chunk_size_mib: u64,
        master_extra: &[&str],
        cs_extra: &[&str],
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tmp");
        let cs = chunk_size_mib.to_string();
        let mut extra = vec![
            "--election-timeout-ms",
            "150",
            "--chunk-size-mib",
            cs.as_str(),
        ];
        extra.extend_from_slice(master_extra);
        let masters = three_masters(dir.path(), &extra);
        let addrs: Vec<String> = masters.iter().map(|m| m.addr.clone()).collect();
        bootstrap(&masters).await;
        leader(&addrs).await;
        let chunkservers: Vec<ChunkProc> = (1..=n)
            .map(|i| {
                let data = dir.path().join(format!("cs{i}"));
                ChunkProc::start_with(&addrs, &format!("cs{i}"), &data, cs_extra)
            })
            .collect();
        let c = Cluster {
            masters,
            chunkservers,
            dir,
        };
        c.wait_chunkservers(n).await;
        c
    }

    pub fn master_addrs(&self) -> Vec<String> {
        self.masters.iter().map(|m| m.addr.clone()).collect()
    }

    /// Waits (bounded) until `n` chunkservers are registered and alive.
    pub async fn wait_chunkservers(&self, n: usize) {
        let addrs = self.master_addrs();
        let deadline = Instant::now() + WAIT;
        loop {
            let l = leader(&addrs).await;
            let s = status(&l).await;
            if s.chunkservers.iter().filter(|c| c.state == "alive").count() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chunkservers did not come up: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
