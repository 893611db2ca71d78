//! The CLI's data-safety bugs (issue: the CLI and client library, items 1–3), against a real
//! cluster: concurrent gets into names that share a stem each get their own bytes; a get into a
//! symbolic link writes through it (the link stays); a get into a device writes into it; Ctrl-C
//! during a put releases the path at once, and during a get leaves no partial file.
mod common;

use common::*;
use shale_client::Client;
use std::os::unix::fs::FileTypeExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn shale(masters: &[String], args: &[&str]) -> std::process::Child {
    common::shale_cmd()
        .args(["--masters", &masters.join(",")])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shale")
}

fn succeeds(child: std::process::Child, what: &str) {
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Multi-process tests run one at a time (2 cores).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_are_safe() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, 1).await;
    let masters = cluster.master_addrs();
    let c = Client::connect(&masters, common::client_config())
        .await
        .expect("connect");
    let a: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = (0..1_200_000u32).map(|i| (i % 241) as u8).collect();
    c.put("/a", &a[..], true, &|_| {}).await.expect("put a");
    c.put("/b", &b[..], true, &|_| {}).await.expect("put b");
    let dir = tempfile::tempdir().expect("tmp");
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();

    // Names that share a stem (`with_extension` used to give both the same temp file).
    for round in 0..3 {
        let (x, y) = (p(&format!("c{round}.1")), p(&format!("c{round}.2")));
        let g1 = shale(&masters, &["get", "/a", &x]);
        let g2 = shale(&masters, &["get", "/b", &y]);
        succeeds(g1, "get /a");
        succeeds(g2, "get /b");
        assert!(
            std::fs::read(&x).expect("c.1") == a,
            "round {round}: c.1 is not /a"
        );
        assert!(
            std::fs::read(&y).expect("c.2") == b,
            "round {round}: c.2 is not /b"
        );
    }
    let (x, y) = (p("x.tar.gz"), p("x.tar.bz2"));
    let g1 = shale(&masters, &["get", "/a", &x]);
    let g2 = shale(&masters, &["get", "/b", &y]);
    succeeds(g1, "get /a");
    succeeds(g2, "get /b");
    assert!(std::fs::read(&x).expect("gz") == a && std::fs::read(&y).expect("bz2") == b);

    // Through a symbolic link: the link stays a link, its target gets the bytes.
    let target = p("target");
    std::fs::write(&target, b"old").expect("target");
    let link = p("link");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    succeeds(shale(&masters, &["get", "/b", &link]), "get into a link");
    assert!(std::fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());
    assert!(std::fs::read(&target).expect("target") == b);

    // Into a device: written in place, never replaced.
    succeeds(
        shale(&masters, &["get", "/a", "/dev/null"]),
        "get into /dev/null",
    );
    assert!(std::fs::metadata("/dev/null")
        .expect("null")
        .file_type()
        .is_char_device());

    // No temp file is left behind.
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("shale-partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Waits (bounded) for `child` to exit; its exit code and standard error.
fn exit_within(child: std::process::Child, within: Duration) -> (Option<i32>, String) {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(Ok(out)) => (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        _ => {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("shale did not exit within {within:?} of SIGINT");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_put_releases_the_path() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, 1).await;
    let masters = cluster.master_addrs();
    let c = Client::connect(&masters, common::client_config())
        .await
        .expect("connect");
    let before = c.status().await.expect("status").chunks;
    let mut put = common::shale_cmd()
        .args(["--masters", &masters.join(","), "put", "-", "/interrupted"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shale put");
    // Three 1 MiB chunks, and the pipe kept open: the put is in the middle of the file.
    let mut stdin = put.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, &vec![5u8; 3 << 20]).expect("feed");
    let t0 = Instant::now();
    while c.status().await.expect("status").chunks < before + 2 {
        assert!(t0.elapsed() < WAIT, "the put never wrote its chunks");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(put.id() as i32, libc::SIGINT) };
    let (code, err) = exit_within(put, Duration::from_secs(8));
    drop(stdin);
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    // The path is free at once (not after the 60 s lease), and nothing was published.
    assert!(matches!(
        c.stat("/interrupted").await,
        Err(shale_client::ClientError::NotFound(_))
    ));
    c.put("/interrupted", &b"next writer"[..], false, &|_| {})
        .await
        .expect("the path is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_get_leaves_no_partial_file() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, 1).await;
    let masters = cluster.master_addrs();
    let c = Client::connect(&masters, common::client_config())
        .await
        .expect("connect");
    c.put("/g", &vec![9u8; 3 << 20][..], true, &|_| {})
        .await
        .expect("put");
    // Stopped chunkservers accept connections and never answer: the get hangs mid-file.
    let pids: Vec<i32> = cluster
        .chunkservers
        .iter()
        .filter_map(|cs| cs.child.as_ref().map(|ch| ch.id() as i32))
        .collect();
    for p in &pids {
        // SAFETY: kill(2) on our own children.
        unsafe { libc::kill(*p, libc::SIGSTOP) };
    }
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out");
    let get = common::shale_cmd()
        .args(["--masters", &masters.join(","), "get", "/g"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shale get");
    let partials = || {
        std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("shale-partial"))
            .count()
    };
    let t0 = Instant::now();
    while partials() == 0 {
        assert!(t0.elapsed() < WAIT, "the get never started its file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(get.id() as i32, libc::SIGINT) };
    let (code, err) = exit_within(get, Duration::from_secs(8));
    for p in &pids {
        // SAFETY: kill(2) on our own children.
        unsafe { libc::kill(*p, libc::SIGCONT) };
    }
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(partials(), 0, "a partial file was left behind");
    assert!(!out.exists());
}
