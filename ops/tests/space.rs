//! Quotas and the trash on a real cluster, through the CLI: a put over a directory's byte or
//! name limit fails with a clear error and leaves nothing behind; `rm` moves to the user's
//! trash (quota freed), `trash ls` and `trash restore` bring it back byte for byte, expired
//! trash is removed for good; quotas and the trash survive every master being killed and
//! restarted; another user cannot see or set them.
mod common;

use common::*;
use std::time::{Duration, Instant};

struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `shale --masters M ARGS` as `user` (None: the admin), with `stdin`.
fn sh_as(user: Option<&str>, m: &[String], args: &[&str], stdin: &[u8]) -> Out {
    let mut cmd = shale_cmd();
    if let Some(u) = user {
        ensure_cert(shale_security::Role::User, u);
        cmd.env("SHALE_USER", u);
    }
    cmd.args(["--masters", &m.join(",")]).args(args);
    let out = output_with_input(cmd, stdin);
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(m: &[String], args: &[&str]) -> Out {
    let o = sh_as(None, m, args, b"");
    assert_eq!(o.code, 0, "shale {args:?}: {}", o.stderr);
    o
}

fn fails_with(o: Out, args: &[&str], want: &str) {
    assert_ne!(o.code, 0, "shale {args:?} should fail");
    assert!(o.stderr.contains(want), "shale {args:?}: {:?}", o.stderr);
}

fn json(o: &Out) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn data(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
        .collect()
}

fn quota(m: &[String], p: &str) -> serde_json::Value {
    json(&ok(m, &["quota", "get", "--json", p]))[0].clone()
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_and_trash_on_a_cluster() {
    let mut cluster = Cluster::start_with(
        3,
        1,
        &["--trash-retention-ms", "3000", "--snapshot-every", "20"],
        &[],
    )
    .await;
    let m = cluster.master_addrs();
    let m = &m[..];
    ok(m, &["mkdir", "/proj"]);
    let o = ok(
        m,
        &["quota", "set", "/proj", "--bytes", "3M", "--names", "3"],
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("/proj"));

    // Bytes: a 2 MiB file fits; a second one does not, and leaves nothing behind.
    let two = data(2 << 20, 1);
    let o = sh_as(None, m, &["put", "-", "/proj/a"], &two);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let args = ["put", "-", "/proj/b"];
    fails_with(
        sh_as(None, m, &args, &two),
        &args,
        "quota of /proj exceeded",
    );
    let q = quota(m, "/proj");
    assert_eq!(
        (q["used_bytes"].as_u64(), q["used_names"].as_u64()),
        (Some(2 << 20), Some(1))
    );
    assert_ne!(sh_as(None, m, &["test", "-e", "/proj/b"], b"").code, 0);
    // Names: two more fit, a third does not.
    ok(m, &["mkdir", "/proj/d"]);
    ok(m, &["touchz", "/proj/d/e"]);
    let args = ["mkdir", "/proj/f"];
    fails_with(sh_as(None, m, &args, b""), &args, "at most 3 names");
    // Nobody but an admin sets quotas; anyone may read them.
    let args = ["quota", "set", "/proj", "--names", "100"];
    fails_with(sh_as(Some("alice"), m, &args, b""), &args, "admin");
    let o = sh_as(Some("alice"), m, &["quota", "get", "--json", "/proj"], b"");
    assert_eq!(o.code, 0, "{}", o.stderr);

    // rm moves to the trash and frees the quota; restore brings the same bytes back.
    let o = ok(m, &["rm", "/proj/a"]);
    assert!(o.stderr.contains("moved to the trash"), "{}", o.stderr);
    assert_eq!(quota(m, "/proj")["used_bytes"].as_u64(), Some(0));
    let items = json(&ok(m, &["trash", "ls", "--json"]));
    assert_eq!(items[0]["original"], "/proj/a");
    assert_eq!(items[0]["length"].as_u64(), Some(2 << 20));
    assert!(items[0]["path"]
        .as_str()
        .is_some_and(|p| p.starts_with("/.Trash/admin/")));
    // Only its owner (or an admin) sees someone's trash.
    let args = ["trash", "ls", "admin"];
    fails_with(sh_as(Some("alice"), m, &args, b""), &args, "may not list");
    ok(m, &["trash", "restore", "/proj/a"]);
    assert!(ok(m, &["cat", "/proj/a"]).stdout == two);
    assert_eq!(quota(m, "/proj")["used_bytes"].as_u64(), Some(2 << 20));
    assert!(json(&ok(m, &["trash", "ls", "--json"]))
        .as_array()
        .is_some_and(|a| a.is_empty()));

    // Everything survives every master being killed and restarted (log and snapshots).
    ok(m, &["rm", "-r", "/proj/d"]);
    for mp in &mut cluster.masters {
        mp.kill9();
    }
    for mp in &mut cluster.masters {
        mp.restart();
    }
    let m = cluster.master_addrs();
    let m = &m[..];
    leader(&cluster.master_addrs()).await;
    let q = quota(m, "/proj");
    assert_eq!(
        (
            q["max_names"].as_u64(),
            q["used_names"].as_u64(),
            q["used_bytes"].as_u64()
        ),
        (Some(3), Some(1), Some(2 << 20))
    );
    let items = json(&ok(m, &["trash", "ls", "--json"]));
    assert_eq!(items[0]["original"], "/proj/d");

    // --skip-trash deletes for good; trash expires on its own, and its chunks are reclaimed.
    ok(m, &["rm", "--skip-trash", "/proj/a"]);
    assert!(json(&ok(m, &["trash", "ls", "--json"]))
        .as_array()
        .is_some_and(|a| a.len() == 1));
    let o = sh_as(None, m, &["put", "-", "/tmp-file"], &data(1000, 2));
    assert_eq!(o.code, 0, "{}", o.stderr);
    ok(m, &["rm", "/tmp-file"]);
    until("the trash expires", || {
        json(&ok(m, &["trash", "ls", "--json"]))
            .as_array()
            .is_some_and(|a| a.is_empty())
    })
    .await;
    ok(m, &["quota", "clear", "/proj"]);
    let q = quota(m, "/proj");
    assert_eq!(q["has_quota"], false);
    let o = ok(m, &["trash", "empty"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("removed from the trash"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_on_a_cluster() {
    let mut cluster = Cluster::start_with(3, 1, &["--snapshot-every", "20"], &[]).await;
    let m = cluster.master_addrs();
    let m = &m[..];
    let (a, b_old, b_new) = (data(2 << 20, 3), data(5000, 4), data(7000, 5));
    ok(m, &["mkdir", "-p", "/data/sub"]);
    for (p, d) in [("/data/a", &a), ("/data/sub/b", &b_old)] {
        let o = sh_as(None, m, &["put", "-", p], d);
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
    let o = ok(m, &["snapshot", "create", "/data", "s1"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("/data/.snapshot/s1"));
    // Later changes do not reach the snapshot.
    ok(m, &["rm", "--skip-trash", "/data/a"]);
    for (p, d) in [("/data/sub/b", &b_new), ("/data/new", &b_new)] {
        let o = sh_as(None, m, &["put", "-f", "-", p], d);
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
    let check = |m: &[String]| {
        assert!(ok(m, &["cat", "/data/.snapshot/s1/a"]).stdout == a);
        assert!(ok(m, &["cat", "/data/.snapshot/s1/sub/b"]).stdout == b_old);
        let ls = String::from_utf8_lossy(&ok(m, &["ls", "/data/.snapshot/s1"]).stdout).to_string();
        assert!(ls.contains('a') && !ls.contains("new"), "{ls}");
    };
    check(m);
    let args = ["put", "-", "/data/.snapshot/s1/x"];
    fails_with(sh_as(None, m, &args, b"x"), &args, "read-only");
    let args = ["rm", "-r", "/data"];
    fails_with(sh_as(None, m, &args, b""), &args, "has snapshots");
    // Another user may not take snapshots of a directory that is not theirs.
    let args = ["snapshot", "create", "/data", "s2"];
    fails_with(sh_as(Some("alice"), m, &args, b""), &args, "does not own");

    // Every master killed and restarted: the snapshot is still whole, and the deleted file's
    // chunks were not reclaimed (healing keeps running meanwhile).
    for mp in &mut cluster.masters {
        mp.kill9();
    }
    for mp in &mut cluster.masters {
        mp.restart();
    }
    leader(&cluster.master_addrs()).await;
    let m = cluster.master_addrs();
    let m = &m[..];
    // The restarted masters ask the chunkservers for full reports at their first heartbeat.
    until("the snapshot's chunks are located again", || {
        sh_as(None, m, &["fsck", "/data/.snapshot/s1"], b"").code == 0
    })
    .await;
    check(m);

    // Restore: a and the old b come back; the new b and new go to the trash.
    let o = ok(m, &["snapshot", "restore", "/data", "s1"]);
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        said.contains("2 files copied") && said.contains("2 moved to the trash"),
        "{said}"
    );
    assert!(ok(m, &["cat", "/data/a"]).stdout == a);
    assert!(ok(m, &["cat", "/data/sub/b"]).stdout == b_old);
    assert_ne!(sh_as(None, m, &["test", "-e", "/data/new"], b"").code, 0);
    let trash = json(&ok(m, &["trash", "ls", "--json"]));
    assert!(trash
        .as_array()
        .is_some_and(|t| t.iter().any(|i| i["original"] == "/data/new")));
    // Into a new directory too.
    ok(m, &["snapshot", "restore", "/data", "s1", "--to", "/copy"]);
    assert!(ok(m, &["cat", "/copy/sub/b"]).stdout == b_old);

    let l = json(&ok(m, &["snapshot", "ls", "--json", "/data"]));
    assert_eq!(l[0]["name"], "s1");
    ok(m, &["snapshot", "delete", "/data", "s1"]);
    assert_ne!(
        sh_as(None, m, &["test", "-e", "/data/.snapshot/s1"], b"").code,
        0
    );
    ok(m, &["rm", "-r", "--skip-trash", "/data"]);
}
