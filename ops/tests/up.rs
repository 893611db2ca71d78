//! `shale up` as a user runs it: a whole local cluster from one command; a server that dies is
//! reported and restarted while the rest keep serving; SIGTERM stops everything.
mod common;

use common::WAIT;
use shale_client::Client;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A base port whose +0..+2 and +10..+12 are free now (below the usual ephemeral range, so
/// no port picked for `127.0.0.1:0` lands there meanwhile).
fn free_base(avoid: u16) -> u16 {
    for _ in 0..200 {
        let base = fastrand::u16(20_000..32_000);
        if base.abs_diff(avoid) < 20 {
            continue;
        }
        let ports = [0, 1, 2, 10, 11, 12].map(|d| base + d);
        if ports
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            return base;
        }
    }
    panic!("no free ports");
}

/// `shale up` with `extra` flags, its data in `data`, masters on `mp`.. and chunkservers on
/// `cp`..; stdin closed.
fn up_command(data: &std::path::Path, mp: u16, cp: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shale"));
    cmd.arg("up")
        .args(extra)
        .arg("--data")
        .arg(data)
        .args(["--master-port", &mp.to_string()])
        .args(["--chunkserver-port", &cp.to_string()])
        .stdin(Stdio::null());
    cmd
}

/// The pids of `pid`'s children (over all its threads).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Whether the cluster reports its three chunkservers alive.
async fn three_alive(c: &Client) -> bool {
    c.status()
        .await
        .is_ok_and(|s| s.chunkservers.iter().filter(|c| c.state == "alive").count() == 3)
}

async fn until<F: FnMut() -> bool>(what: &str, mut f: F) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_keeps_the_cluster_running_when_a_server_dies() {
    let dir = tempfile::tempdir().expect("tmp");
    let mp = free_base(0);
    let cp = free_base(mp);
    let mut up = up_command(&dir.path().join("data"), mp, cp, &["--chunk-size-mib", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shale up");
    let log = Arc::new(Mutex::new(String::new()));
    let mut err = up.stderr.take().expect("stderr");
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock().expect("log").push_str(&text);
        }
    });
    let masters: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", mp + i)).collect();
    // `shale up` is secure by default: it made a CA and an admin certificate in its folder.
    let tls_dir = dir.path().join("data").join("tls");
    let t0 = Instant::now();
    let c = loop {
        let Ok(tls) = shale_security::Tls::load(shale_security::TlsFiles::stem(&tls_dir, "admin"))
        else {
            assert!(
                t0.elapsed() < WAIT,
                "shale up made no certificates in {tls_dir:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let cfg = shale_client::ClientConfig {
            transport: shale_security::Transport::tls(tls),
            ..Default::default()
        };
        match Client::connect(&masters, cfg).await {
            Ok(c) if three_alive(&c).await => break c,
            _ => {
                assert!(
                    t0.elapsed() < WAIT,
                    "the cluster never came up: {}",
                    log.lock().expect("log")
                );
                assert!(up.try_wait().expect("wait").is_none(), "up exited");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let data = vec![3u8; 2_500_000];
    c.put("/f", &data[..], false, &|_| {}).await.expect("put");

    let up_pid = up.id();
    let victim = children(up_pid)
        .into_iter()
        .find(|p| cmdline(*p).contains(&format!("127.0.0.1:{cp} ")))
        .expect("chunkserver 1 among up's children");
    // SAFETY: kill(2) on a process this test started (through `up`).
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    until("the restart to be reported", || {
        let l = log.lock().expect("log");
        l.contains("chunkserver 1 exited") && l.contains("chunkserver 1 restarted")
    })
    .await;
    assert!(
        up.try_wait().expect("wait").is_none(),
        "up stopped: {}",
        log.lock().expect("log")
    );
    let mut back = Vec::new();
    c.get("/f", &mut back, &|_| {}).await.expect("get");
    assert!(back == data);
    let restarted = children(up_pid)
        .into_iter()
        .find(|p| cmdline(*p).contains(&format!("127.0.0.1:{cp} ")))
        .expect("chunkserver 1 is back");
    assert_ne!(restarted, victim);

    let servers = children(up_pid);
    assert_eq!(servers.len(), 6, "{servers:?}");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(up_pid as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = up.try_wait().expect("wait") {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "up did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}: {}", log.lock().expect("log"));
    for p in servers {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "server {p} outlived up"
        );
    }
}

#[test]
fn up_on_a_busy_port_names_it_and_the_flag_before_starting_anything() {
    let dir = tempfile::tempdir().expect("tmp");
    let mp = free_base(0);
    let cp = free_base(mp);
    // Something else holds the second chunkserver's status port.
    let _holder = std::net::TcpListener::bind(("127.0.0.1", cp + 11)).expect("bind");
    let t0 = Instant::now();
    let out = up_command(&dir.path().join("data"), mp, cp, &[])
        .output()
        .expect("shale up");
    assert!(!out.status.success(), "shale up started on a busy port");
    assert!(t0.elapsed() < WAIT, "shale up took too long to refuse");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("port {}", cp + 11)) && err.contains("--chunkserver-port"),
        "unhelpful error: {err}"
    );
    assert!(
        out.stdout.is_empty(),
        "a banner was printed before the refusal: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `shale up --insecure`: plaintext, where chunkservers send read frames with `sendfile` from
/// the chunk files once the bytes passed their checks. Clients read exactly what was written,
/// whole and in ranges; a replica damaged on disk is caught by its server before anything of
/// it is sent (it is quarantined, not just refused by the client's frame check), and the
/// servers keep serving. Many reads at once in one process share its read budget without
/// stalling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_cluster_sends_verified_bytes_from_the_chunk_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let mp = free_base(0);
    let cp = free_base(mp);
    let data_dir = dir.path().join("data");
    let mut up = up_command(&data_dir, mp, cp, &["--insecure", "--chunk-size-mib", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("shale up");
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            // SAFETY: kill(2) on our own child; `up` stops its servers on SIGTERM.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let t0 = Instant::now();
            while self.0.try_wait().ok().flatten().is_none() && t0.elapsed() < WAIT {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let started = up.try_wait().expect("wait").is_none();
    let _up = Stop(up);
    assert!(started, "up exited at once");
    let masters: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", mp + i)).collect();
    let config = shale_client::ClientConfig {
        transport: shale_security::Transport::plaintext(),
        ..Default::default()
    };
    let t0 = Instant::now();
    let c = loop {
        match Client::connect(&masters, config.clone()).await {
            Ok(c) if three_alive(&c).await => break c,
            _ => {
                assert!(t0.elapsed() < WAIT, "the cluster never came up");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let data: Vec<u8> = (0..(2u32 << 20) + 333_333)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    c.put("/f", &data[..], false, &|_| {}).await.expect("put");
    c.put("/g", &data[..100_000], false, &|_| {})
        .await
        .expect("put");
    let mut back = Vec::new();
    c.get("/f", &mut back, &|_| {}).await.expect("get");
    assert!(back == data, "a whole read differs");
    for (off, len) in [
        (0u64, 1u64),
        (65_530, 20),
        (1 << 20, 1 << 20),
        (2 << 20, 333_333),
    ] {
        let got = c.read_range("/f", off, len).await.expect("range");
        assert!(
            got[..] == data[off as usize..(off + len) as usize],
            "range {off}+{len} differs"
        );
    }

    // Damage the first chunk on every replica: no read of it succeeds, and each server that
    // was asked quarantined its copy (its own check caught it, before sending).
    let locs = c.chunk_locations("/f").await.expect("locations");
    let first = &locs.chunks[0];
    assert_eq!(first.replicas.len(), 3);
    let file_of = |host: &str| {
        data_dir
            .join(host)
            .join("chunks")
            .join(format!("{:016x}.chunk", first.chunk_id))
    };
    for r in &first.replicas {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(file_of(&r.host))
            .expect("open a replica");
        let mut b = [0u8; 1];
        std::fs::File::open(file_of(&r.host))
            .expect("open")
            .read_exact_at(&mut b, 300_000)
            .expect("read");
        f.write_all_at(&[b[0] ^ 0x40], 300_000).expect("damage");
    }
    let e = c.read_range("/f", 290_000, 20_000).await;
    assert!(e.is_err(), "damaged bytes were served");
    let t0 = Instant::now();
    loop {
        let quarantined = first
            .replicas
            .iter()
            .filter(|r| {
                std::fs::read_dir(data_dir.join(&r.host).join("chunks").join("quarantine"))
                    .map(|d| {
                        d.flatten().any(|e| {
                            e.file_name()
                                .to_string_lossy()
                                .starts_with(&format!("{:016x}", first.chunk_id))
                        })
                    })
                    .unwrap_or(false)
            })
            .count();
        if quarantined == 3 {
            break;
        }
        assert!(
            t0.elapsed() < WAIT,
            "{quarantined} of 3 damaged replicas quarantined"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The rest is served as before.
    let got = c.read_range("/f", 1 << 20, 1 << 20).await.expect("range");
    assert!(got[..] == data[1 << 20..2 << 20]);
    let mut back = Vec::new();
    c.get("/g", &mut back, &|_| {}).await.expect("get");
    assert!(back[..] == data[..100_000]);

    // Many reads at once in one process ask for more than its read budget (256 MiB; here
    // 80 × 4 chunks of 1 MiB): they take turns, and every one completes.
    let h: Vec<u8> = data.iter().rev().cycle().take(4 << 20).copied().collect();
    c.put("/h", &h[..], false, &|_| {}).await.expect("put");
    let gets: Vec<_> = (0..80)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut back = Vec::new();
                c.get("/h", &mut back, &|_| {}).await.map(|_| back)
            })
        })
        .collect();
    let all = tokio::time::timeout(WAIT, futures_util::future::join_all(gets))
        .await
        .expect("concurrent gets stalled");
    for got in all {
        let back = got.expect("task").expect("get");
        assert!(back == h);
    }
}
