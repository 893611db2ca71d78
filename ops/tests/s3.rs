//! `shale s3` exercised by boto3 (issue: FUSE and S3 access): every operation of the gateway,
//! multipart and ranged reads included, S3's error codes, SigV4 refusals, and requests running
//! as the key's user (`tests/s3/boto3_suite.py`), on a real secured cluster with 4 MiB chunks.
//! Then the objects are where the mapping says, seen through the native client.
//!
//! boto3 comes from PyPI into a venv under the target directory (made on first run).
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BOTO3: &str = "boto3==1.44.8";

/// A Python with boto3: `$SHALE_TEST_PYTHON`, else a venv made (once) in the target dir.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SHALE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("s3-venv");
    let py = venv.join("bin/python");
    let has_boto3 = |py: &Path| {
        Command::new(py)
            .args(["-c", "import boto3"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_boto3(&py) {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "python3 -m venv {} failed (install python3-venv)",
            venv.display()
        );
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", BOTO3])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pip install {BOTO3} failed (PyPI unreachable?)");
    }
    assert!(
        has_boto3(&py),
        "boto3 is not importable from {}",
        py.display()
    );
    py
}

/// `shale s3 keys create USER` → (key, secret).
fn make_key(masters: &[String], user: &str) -> (String, String) {
    let out = shale_cmd()
        .args([
            "--masters",
            &masters.join(","),
            "s3",
            "keys",
            "create",
            user,
        ])
        .output()
        .expect("run shale s3 keys create");
    assert!(
        out.status.success(),
        "shale s3 keys create {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut f = text.split_whitespace();
    let (k, s) = (f.next().expect("key"), f.next().expect("secret"));
    (k.to_string(), s.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_every_operation_of_the_gateway() {
    let py = python();
    let c = Cluster::start(3, 4).await;
    let masters = c.master_addrs();
    let (ak, sk) = make_key(&masters, "admin");
    let (alice_k, alice_s) = make_key(&masters, "alice");
    assert_ne!(ak, alice_k);

    // A bucket alice may not read: the suite checks she is refused.
    let client = shale_client::Client::connect(&masters, client_config())
        .await
        .expect("client");
    client.mkdir("/private", false).await.expect("mkdir");
    let mut w = client
        .create("/private/secret.txt", Default::default())
        .await
        .expect("create");
    tokio::io::AsyncWriteExt::write_all(&mut w, b"secret")
        .await
        .expect("write");
    w.close().await.expect("close");
    client.chmod("/private", 0o700).await.expect("chmod");

    let mut cmd = shale_cmd();
    cmd.args([
        "--masters",
        &masters.join(","),
        "s3",
        "--listen",
        "127.0.0.1:0",
    ]);
    let (mut gateway, endpoint) = spawn_server(cmd);
    assert!(endpoint.starts_with("http://"), "{endpoint}");

    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/boto3_suite.py");
    let work = tempfile::tempdir().expect("tmp");
    let out = Command::new("timeout")
        .arg("300")
        .arg(&py)
        .arg(&suite)
        .args([&endpoint, &ak, &sk, &alice_k, &alice_s])
        .env("TMPDIR", work.path())
        .output()
        .expect("run the boto3 suite");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "boto3 suite failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // The objects are files where the mapping puts them.
    let st = client.stat("/photos/big/video.bin").await.expect("stat");
    assert_eq!(st.length, 6 << 20);
    assert!(st.chunks >= 2, "the multipart object spans chunks");
    assert_eq!(
        client
            .stat("/photos/managed/upload.bin")
            .await
            .expect("stat")
            .length,
        12 << 20
    );
    // Staged parts are gone once completed or aborted.
    let staged = client
        .list(shale_access::s3::UPLOADS_DIR)
        .await
        .expect("ls");
    assert!(staged.is_empty(), "uploads left staged: {staged:?}");

    let _ = gateway.kill();
    let _ = gateway.wait();
    drop(c);
}
