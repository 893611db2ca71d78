//! `shale mount` exercised by programs no one here wrote (issue: FUSE and S3 access): `cp`,
//! `cat`, `dd`, `tar`, `rsync`, `find`, `sha256sum`, `fio`, `mv`, `rm`, `df`, `chmod`, a shell's
//! redirections, against a real secured cluster with 1 MiB chunks, checksums compared with the
//! source tree; then the write-once rules (refused writes change nothing), what another client
//! sees, and an unmount on SIGTERM.
//!
//! Needs root (or fusermount3), /dev/fuse, and rsync and fio (`.ci/run` installs them).
mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `shale mount`; unmounted (SIGTERM, then a lazy umount) when dropped.
struct Mounted {
    child: Child,
    at: PathBuf,
}

impl Mounted {
    fn start(masters: &[String], at: &Path) -> Mounted {
        let mut child = shale_cmd()
            .args(["--masters", &masters.join(",")])
            .args(["mount", at.to_str().expect("utf-8"), "--cache-ms", "500"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn shale mount");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read the mount line");
        assert!(
            line.starts_with("mounted the cluster at"),
            "shale mount did not mount: {line:?} (exit {:?})",
            child.try_wait()
        );
        std::thread::spawn(move || for _ in out.lines() {});
        Mounted {
            child,
            at: at.to_path_buf(),
        }
    }

    fn is_mounted(&self) -> bool {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let at = self.at.to_str().unwrap_or_default();
        mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(at) && l.contains("fuse"))
    }

    /// SIGTERM; waits (bounded) for a clean exit. Returns the exit code.
    fn stop(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.stop();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.is_mounted() {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs a bash script (bounded by `timeout`) with `$M` the mount and `$S` the source tree.
fn bash(script: &str, m: &Path, s: &Path) -> Ran {
    let out = Command::new("timeout")
        .args(["120", "bash", "-c", script])
        .env("M", m)
        .env("S", s)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and requires success; its standard output.
fn ok(script: &str, m: &Path, s: &Path) -> String {
    let r = bash(script, m, s);
    assert_eq!(
        r.code, 0,
        "{script}\nexit {}\nstdout: {}\nstderr: {}",
        r.code, r.stdout, r.stderr
    );
    r.stdout
}

/// Every file's checksum under `$1`, by relative path.
const SUMS: &str =
    "sums() { (cd \"$1\" && find . -type f | LC_ALL=C sort | xargs -r -d '\\n' sha256sum); }";

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is missing: install it (Debian: apt-get install {tool}); .ci/run does"
    );
}

fn source_tree(dir: &Path) {
    let mut seed = 7u64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let files: [(&str, usize); 8] = [
        ("empty", 0),
        ("one", 1),
        ("page", 4095),
        ("a/crossing.bin", (1 << 20) + 17),
        ("a/b/big.bin", (7 << 20) / 2),
        ("a/b/c/deep.txt", 333),
        ("names with spaces/x y.txt", 12),
        ("ünï/ç.txt", 5),
    ];
    for (p, n) in files {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(&f, bytes(n)).expect("write");
    }
    std::fs::create_dir_all(dir.join("emptydir")).expect("mkdir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_programs_work_on_the_mount() {
    for tool in ["rsync", "fio", "tar", "sha256sum"] {
        need(tool);
    }
    let c = Cluster::start(3, 1).await;
    let masters = c.master_addrs();
    let work = tempfile::tempdir().expect("tmp");
    let (m, s) = (work.path().join("mnt"), work.path().join("src"));
    std::fs::create_dir_all(&m).expect("mkdir");
    source_tree(&s);
    let mut mounted = Mounted::start(&masters, &m);
    assert!(mounted.is_mounted(), "not in /proc/mounts");

    // Copies in, by three programs, each checked byte for byte.
    ok("cp -r \"$S\" \"$M/cp\"", &m, &s);
    ok(
        "tar -C \"$S\" -cf - . | (mkdir \"$M/tar\" && tar -C \"$M/tar\" -xf -)",
        &m,
        &s,
    );
    ok("rsync -a \"$S/\" \"$M/rs/\"", &m, &s);
    ok("rsync -a \"$S/\" \"$M/rs/\"", &m, &s); // nothing to do the second time
    for dir in ["cp", "tar", "rs"] {
        let same = bash(
            &format!("{SUMS}; diff <(sums \"$S\") <(sums \"$M/{dir}\")"),
            &m,
            &s,
        );
        assert_eq!(
            same.code, 0,
            "{dir} differs:\n{}{}",
            same.stdout, same.stderr
        );
    }
    assert!(ok("test -d \"$M/rs/emptydir\" && echo yes", &m, &s).contains("yes"));
    let listed = ok("find \"$M/cp\" | wc -l", &m, &s);
    let local = ok("find \"$S\" | wc -l", &m, &s);
    assert_eq!(listed, local, "find sees another tree");

    // Reads: whole (cat), pieces at odd offsets (dd), random (fio).
    ok(
        "cmp <(cat \"$M/cp/a/b/big.bin\") \"$S/a/b/big.bin\"",
        &m,
        &s,
    );
    for (skip, count) in [
        (0u64, 10u64),
        (1048570, 20),
        (3_000_001, 65_537),
        (3_670_000, 100),
    ] {
        ok(
            &format!(
                "cmp <(dd if=\"$M/cp/a/b/big.bin\" bs=4096 iflag=skip_bytes,count_bytes \
                 skip={skip} count={count} status=none) \
                 <(dd if=\"$S/a/b/big.bin\" bs=4096 iflag=skip_bytes,count_bytes \
                 skip={skip} count={count} status=none)"
            ),
            &m,
            &s,
        );
    }
    let fio = ok(
        "fio --name=rr --filename=\"$M/cp/a/b/big.bin\" --rw=randread --bs=4k --size=3M \
         --readonly --ioengine=psync --runtime=2 --time_based --output-format=terse",
        &m,
        &s,
    );
    let fields: Vec<&str> = fio.trim().split(';').collect();
    assert_eq!(fields.get(4), Some(&"0"), "fio reported an error: {fio}");

    // The native client sees what the mount wrote, and the mount what the client writes.
    let client = shale_client::Client::connect(&masters, client_config())
        .await
        .expect("client");
    let st = client.stat("/cp/a/b/big.bin").await.expect("stat");
    assert_eq!(st.length, (7 << 20) / 2);
    let mut w = client
        .create("/from-client.txt", Default::default())
        .await
        .expect("create");
    tokio::io::AsyncWriteExt::write_all(&mut w, b"hello from the client\n")
        .await
        .expect("write");
    w.close().await.expect("close");
    let deadline = Instant::now() + WAIT;
    while !m.join("from-client.txt").exists() {
        assert!(
            Instant::now() < deadline,
            "the mount never saw the new file"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::read(m.join("from-client.txt")).expect("read"),
        b"hello from the client\n"
    );

    // Shell redirections (open, dup2, close, then write), replacing, renaming, removing.
    ok("echo one > \"$M/r.txt\" && echo two > \"$M/r.txt\"", &m, &s);
    assert_eq!(ok("cat \"$M/r.txt\"", &m, &s), "two\n");
    ok(
        "mv \"$M/r.txt\" \"$M/cp/r2.txt\" && test ! -e \"$M/r.txt\"",
        &m,
        &s,
    );
    assert_eq!(ok("cat \"$M/cp/r2.txt\"", &m, &s), "two\n");
    ok(
        "echo new > \"$M/n.txt\" && mv \"$M/n.txt\" \"$M/cp/r2.txt\"",
        &m,
        &s,
    );
    assert_eq!(ok("cat \"$M/cp/r2.txt\"", &m, &s), "new\n");
    ok(
        "mkdir -p \"$M/x/y/z\" && rmdir \"$M/x/y/z\" && test ! -e \"$M/x/y/z\"",
        &m,
        &s,
    );
    let r = bash("rmdir \"$M/cp/a\"", &m, &s);
    assert!(
        r.code != 0 && r.stderr.contains("not empty"),
        "{}",
        r.stderr
    );
    ok("rm \"$M/cp/one\" && test ! -e \"$M/cp/one\"", &m, &s);
    ok("rm -r \"$M/tar\" && test ! -e \"$M/tar\"", &m, &s);
    assert!(!client.exists("/tar").await.expect("exists"));
    ok("chmod 600 \"$M/cp/page\"", &m, &s);
    assert_eq!(ok("stat -c %a \"$M/cp/page\"", &m, &s).trim(), "600");
    assert_eq!(client.stat("/cp/page").await.expect("stat").mode, 0o600);
    ok(
        "dd if=/dev/zero of=\"$M/synced\" bs=64k count=20 conv=fsync status=none",
        &m,
        &s,
    );
    assert_eq!(client.stat("/synced").await.expect("stat").length, 20 << 16);

    // Write-once: writes that are not front to back are refused and change nothing.
    let before = ok("sha256sum < \"$M/cp/a/crossing.bin\"", &m, &s);
    let r = bash("echo more >> \"$M/cp/a/crossing.bin\"", &m, &s);
    assert_ne!(r.code, 0, "an append to a written file succeeded");
    let r = bash(
        "dd if=/dev/zero of=\"$M/cp/a/crossing.bin\" bs=1 seek=100 count=1 conv=notrunc status=none",
        &m,
        &s,
    );
    assert_ne!(r.code, 0, "an overwrite in place succeeded");
    assert_eq!(ok("sha256sum < \"$M/cp/a/crossing.bin\"", &m, &s), before);
    let r = bash(
        "dd if=/dev/zero of=\"$M/holey\" bs=1 seek=100 count=1 status=none",
        &m,
        &s,
    );
    assert_ne!(r.code, 0, "a write past the end of a new file succeeded");
    assert!(
        !client.exists("/holey").await.expect("exists"),
        "a holey file appeared"
    );

    // df shows the cluster's capacity.
    let size: u64 = ok("df -B1 --output=size \"$M\" | tail -1", &m, &s)
        .trim()
        .parse()
        .expect("df size");
    assert!(size > 0, "df shows no capacity");

    // SIGTERM unmounts and exits cleanly.
    assert_eq!(mounted.stop(), Some(0), "shale mount did not exit cleanly");
    assert!(!mounted.is_mounted(), "still mounted after SIGTERM");
    drop(c);
}
