//! The CLI's data-safety bugs (issue: the CLI and client library, items 1–2), against a real
//! cluster: concurrent gets into names that share a stem each get their own bytes; a get into a
//! symbolic link writes through it (the link stays); a get into a device writes into it.
mod common;

use common::*;
use shale_client::{Client, ClientConfig};
use std::os::unix::fs::FileTypeExt;
use std::process::{Command, Stdio};

fn shale(masters: &[String], args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_shale"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_are_safe() {
    let cluster = Cluster::start(3, 1).await;
    let masters = cluster.master_addrs();
    let c = Client::connect(&masters, ClientConfig::default())
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
