//! Every CLI verb and convention against a real cluster (issue: the CLI and client library):
//! `-f` to replace, `-` for standard input and output, local checks before contacting the
//! cluster, several sources, trees, `mv` into directories, globs, `ls -l`/`-h`/`--json`,
//! `du`/`df`/`count`/`test`/`touchz`/`setrep`/`tail`/`stat`, server-side `cp`, completions,
//! quiet broken pipes,
//! and a fast, telling failure when no cluster answers.
mod common;

use common::*;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Runs `shale --masters M ARGS` with `stdin` as its standard input.
fn sh_in(masters: &[String], args: &[&str], stdin: &[u8]) -> Out {
    let mut cmd = common::shale_cmd();
    cmd.args(["--masters", &masters.join(",")]).args(args);
    let out = common::output_with_input(cmd, stdin);
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn sh(masters: &[String], args: &[&str]) -> Out {
    sh_in(masters, args, b"")
}

/// Runs and requires success.
fn ok(masters: &[String], args: &[&str]) -> Out {
    let o = sh(masters, args);
    assert_eq!(o.code, 0, "shale {args:?}: {}", o.stderr);
    o
}

/// Runs and requires failure with `want` in the error.
fn fails(masters: &[String], args: &[&str], want: &str) -> Out {
    let o = sh(masters, args);
    assert_ne!(o.code, 0, "shale {args:?} should fail: {}", o.text());
    assert!(o.stderr.contains(want), "shale {args:?}: {:?}", o.stderr);
    o
}

fn bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
        .collect()
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verb() {
    // Before any cluster: local checks come first, and a dead cluster fails fast and says so.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        vec![l.local_addr().expect("addr").to_string()]
    };
    let o = fails(
        &dead,
        &["put", "/no/such/local/file", "/x"],
        "/no/such/local/file",
    );
    assert!(!o.stderr.contains("cannot reach"), "{}", o.stderr);
    let t0 = Instant::now();
    let o = fails(&dead, &["ls", "/"], &dead[0]);
    assert!(o.stderr.contains("--masters"), "{}", o.stderr);
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );
    fails(&dead, &["ls", "/"], &dead[0]);
    let o = fails(&["http://".to_string() + &dead[0]], &["ls", "/"], &dead[0]);
    assert!(!o.stderr.contains("not host:port"), "{}", o.stderr);
    let o = ok(&dead, &["completions", "bash"]);
    assert!(o.text().contains("shale"), "completions");

    let cluster = Cluster::start(3, 1).await;
    let m = &cluster.master_addrs();
    let dir = tempfile::tempdir().expect("tmp");
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    let (a_data, b_data) = (bytes(100_000, 1), bytes(2_500_000, 2));
    std::fs::write(&a, &a_data).expect("a");
    std::fs::write(&b, &b_data).expect("b");

    // put: -f to replace; `-` is standard input; get/cat `-` to standard output.
    ok(m, &["put", &s(&a), "/a.txt"]);
    fails(m, &["put", &s(&b), "/a.txt"], "use -f");
    assert!(
        ok(m, &["cat", "/a.txt"]).stdout == a_data,
        "put without -f replaced /a.txt"
    );
    ok(m, &["put", "-f", &s(&b), "/a.txt"]);
    assert!(ok(m, &["get", "/a.txt", "-"]).stdout == b_data);
    let o = sh_in(m, &["put", "-", "/stdin.bin"], &a_data);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let cat = ok(m, &["cat", "/stdin.bin", "/a.txt"]).stdout;
    assert!(cat == [a_data.clone(), b_data.clone()].concat());
    fails(m, &["put", "-", &s(&a), "/x"], "only source");

    // Several sources go into a directory; not into anything else.
    ok(m, &["mkdir", "-p", "/dir", "/other"]);
    ok(m, &["put", &s(&a), &s(&b), "/dir"]);
    fails(m, &["put", &s(&a), &s(&b), "/a.txt"], "not a directory");
    fails(m, &["put", &s(dir.path()), "/d2"], "use -r");

    // Trees, both ways.
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("x/y")).expect("mkdir");
    std::fs::create_dir_all(tree.join("empty")).expect("mkdir");
    std::fs::write(tree.join("top"), b"top").expect("w");
    std::fs::write(tree.join("x/mid"), bytes(1_200_000, 3)).expect("w");
    std::fs::write(tree.join("x/y/leaf"), b"").expect("w");
    ok(m, &["put", "-r", &s(&tree), "/tree"]);
    let back = dir.path().join("back");
    ok(m, &["get", "-r", "/tree", &s(&back)]);
    for f in ["top", "x/mid", "x/y/leaf"] {
        assert!(
            std::fs::read(tree.join(f)).expect("src") == std::fs::read(back.join(f)).expect("back"),
            "{f} differs after put -r / get -r"
        );
    }
    assert!(back.join("empty").is_dir());
    let several = dir.path().join("several");
    std::fs::create_dir(&several).expect("mkdir");
    ok(m, &["get", "/dir/a.txt", "/dir/b.txt", &s(&several)]);
    assert!(std::fs::read(several.join("b.txt")).expect("b") == b_data);
    fails(
        m,
        &["get", "/dir/a.txt", "/dir/b.txt", &s(&a)],
        "not a directory",
    );
    fails(m, &["get", "/tree", &s(&several.join("t"))], "use -r");

    // mv: into a directory; never over a file without -f.
    fails(m, &["mv", "/a.txt", "/dir/b.txt"], "use -f");
    ok(m, &["mv", "/a.txt", "/other"]);
    assert_eq!(ok(m, &["test", "-f", "/other/a.txt"]).code, 0);
    ok(m, &["mv", "-f", "/other/a.txt", "/dir/b.txt"]);
    ok(m, &["mv", "/stdin.bin", "/other/"]);
    assert!(ok(m, &["cat", "/other/stdin.bin"]).stdout == a_data);
    fails(
        m,
        &["mv", "/other/stdin.bin", "/nodir/"],
        "not an existing directory",
    );

    // ls: exact bytes, times, -h, --json, globs.
    let plain = ok(m, &["ls", "/dir"]).text();
    assert_eq!(plain, "a.txt\nb.txt\n");
    let long = ok(m, &["ls", "-l", "/dir"]).text();
    assert!(
        long.contains(" 2500000 ") && long.contains(" 100000 "),
        "{long}"
    );
    let year = long
        .split_whitespace()
        .find(|w| w.starts_with("20") && w.len() == 10);
    assert!(year.is_some(), "no date in {long}");
    let human = ok(m, &["ls", "-l", "-h", "/dir"]).text();
    assert!(human.contains("2.4 MiB"), "{human}");
    let j = ok(m, &["ls", "--json", "/dir"]).json();
    assert_eq!(j[1]["path"], "/dir/b.txt");
    assert_eq!(j[1]["length"], 2_500_000);
    let globbed = ok(m, &["ls", "/*/*.txt"]).text();
    assert_eq!(globbed, "/dir/a.txt\n/dir/b.txt\n");
    fails(m, &["ls", "/dir/*.nothing"], "no match");

    // du, count, df, test, touchz, setrep, tail, stat.
    let du = ok(m, &["du", "-s", "/tree"]).text();
    let want = 3 + 1_200_000;
    assert!(du.starts_with(&format!("{want:>12}")), "{du}");
    assert!(du.contains(&format!("{}", want * 3)), "raw bytes in {du}");
    assert!(ok(m, &["du", "-s", "-h", "/tree"]).text().contains("MiB"));
    let per_entry = ok(m, &["du", "/tree"]).text();
    assert_eq!(per_entry.lines().count(), 3, "{per_entry}");
    let count = ok(m, &["count", "--json", "/tree"]).json();
    assert_eq!(
        (count[0]["directories"].as_u64(), count[0]["files"].as_u64()),
        (Some(4), Some(3))
    );
    let df = ok(m, &["df", "--json"]).json();
    assert_eq!(df["chunkservers"], 3);
    assert!(df["size_bytes"].as_u64() > Some(0));
    assert!(ok(m, &["df", "-h"]).text().contains("Use%"));
    assert_eq!(sh(m, &["test", "-d", "/tree"]).code, 0);
    assert_eq!(sh(m, &["test", "-f", "/tree"]).code, 1);
    assert_eq!(sh(m, &["test", "-e", "/nope"]).code, 1);
    assert_eq!(sh(m, &["test", "-s", "/tree/top"]).code, 0);
    assert_eq!(sh(m, &["test", "-z", "/tree/x/y/leaf"]).code, 0);
    ok(m, &["touchz", "/empty", "/empty2"]);
    ok(m, &["touchz", "/empty"]);
    fails(m, &["touchz", "/tree/top"], "not an empty file");
    ok(m, &["setrep", "2", "/dir"]);
    let st = ok(m, &["stat", "--json", "/dir/b.txt"]).json();
    assert_eq!(st["replication"], 2);
    // The directory's default: new files in it get 2 as well.
    let o = sh_in(m, &["put", "-", "/dir/new.bin"], b"fresh");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let st = ok(m, &["stat", "--json", "/dir/new.bin"]).json();
    assert_eq!(
        st["replication"], 2,
        "a new file inherits the directory's default"
    );
    let st = ok(m, &["stat", "--json", "/dir"]).json();
    assert_eq!(st["replication"], 2);
    ok(m, &["rm", "/dir/new.bin"]);
    assert!(st["modified"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.contains('T')));
    let stat = ok(m, &["stat", "/dir/b.txt"]).text();
    assert!(stat.contains("2500000 bytes"), "{stat}");
    assert!(ok(m, &["tail", "-c", "10", "/dir/b.txt"]).stdout == b_data[b_data.len() - 10..]);
    assert!(ok(m, &["tail", "/dir/b.txt"]).stdout == b_data[b_data.len() - 1024..]);
    let status = ok(m, &["status", "--json"]).json();
    assert_eq!(status["masters"].as_array().map(Vec::len), Some(3));
    // Whichever master is asked, the healing figures are the leader's.
    for one in m {
        let text = ok(std::slice::from_ref(one), &["status"]).text();
        assert!(
            text.contains("healing: ") && text.contains(" chunks under-replicated, "),
            "asked {one}: {text}"
        );
    }

    // cp: inside the cluster; keeps the replication; -f to replace; into directories; trees.
    ok(m, &["cp", "/dir/b.txt", "/copy.bin"]);
    assert!(ok(m, &["cat", "/copy.bin"]).stdout == b_data);
    let st = ok(m, &["stat", "--json", "/copy.bin"]).json();
    assert_eq!(
        (st["replication"].as_u64(), st["chunks"].as_u64()),
        (Some(2), Some(3))
    );
    fails(m, &["cp", "/dir/a.txt", "/copy.bin"], "use -f");
    ok(m, &["cp", "-f", "/dir/a.txt", "/copy.bin"]);
    assert!(ok(m, &["cat", "/copy.bin"]).stdout == a_data);
    ok(m, &["cp", "/dir/a.txt", "/dir/b.txt", "/other"]);
    assert!(ok(m, &["cat", "/other/b.txt"]).stdout == b_data);
    fails(m, &["cp", "/tree", "/tree2"], "use -r");
    fails(m, &["cp", "-r", "/tree", "/tree/x"], "into itself");
    ok(m, &["cp", "-r", "/tree", "/tree2"]);
    assert!(ok(m, &["cat", "/tree2/x/mid"]).stdout == bytes(1_200_000, 3));
    assert_eq!(sh(m, &["test", "-d", "/tree2/empty"]).code, 0);
    let fsck = ok(m, &["fsck", "/"]).text();
    assert!(fsck.contains("HEALTHY"), "{fsck}");

    // rm: several paths and globs; -f for missing ones.
    ok(m, &["rm", "/dir/*.txt", "/empty"]);
    assert_eq!(ok(m, &["ls", "/dir"]).text(), "");
    fails(m, &["rm", "/nope"], "/nope");
    ok(m, &["rm", "-f", "/nope", "/nope*"]);
    fails(m, &["rm", "/tree"], "");
    ok(m, &["rm", "-r", "/tree"]);

    // A closed pipe ends output quietly.
    ok(m, &["put", "-f", &s(&b), "/big"]);
    for args in [
        &["cat", "/big"][..],
        &["ls", "-l", "/"][..],
        &["get", "/big", "-"][..],
    ] {
        let mut child = common::shale_cmd()
            .args(["--masters", &m.join(",")])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.is_empty(),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}
