//! Building a snapshot file without stopping the master: the state is frozen by `fork(2)` and
//! the child process encodes and writes it, while the master goes on applying, answering and
//! sending heartbeats. Only the `fork` itself (copying the page tables: a few ms per GiB of
//! state) runs under the state's read lock; the encoding and the disk write run in the child,
//! at a lower CPU priority, on the kernel's copy-on-write view of the state as it was at the
//! snapshot's index. (Before this, encoding ran under the read lock and every apply waited for
//! it: from about 1.3 M files the group stalled long enough for elections.)
//!
//! When to build is decided here too ([`due`]): after `every` changes (commands: an entry may
//! carry hundreds, a `Batch` a thousand, so entries would be a poor count), staggered by member
//! (member `id` waits `every × (id mod 3) / 3` more, so the three members of a group do not
//! build at the same index), and never more than a tenth of the time (a build that took `t`
//! is followed by at least `9 t` without one; after a restart, loading the snapshot counts as
//! the last build, its time as `t`; `t` is wall time, not the child's CPU, which is
//! 4–5 times less on a busy machine: spacing by CPU had all three members building at once,
//! all the time, in a bulk load), so on a large namespace the builders do not take a core
//! from the Raft cores (three masters on two cores at 1 M files: a quarter of the
//! time each cost half of the 64-client create rate) — unless the changes since the last
//! snapshot reach half the namespace's size (and at least ten times `every`): a restart
//! replays them all, and replaying more than that takes longer than loading the snapshot
//! (seen: 800 k changes left to replay after a bulk load, 65 s to serve again). That cap is
//! staggered by member too (member `id`: `(3 + id mod 3) / 6` of the size): in a bulk load
//! every member reached the same cap at once, and three builds of a 6 M-file state (≈ 25 s
//! each in the child) on two cores stalled the group into elections (`shale-bench meta
//! --load-files 10000000`).
//!
//! Invariants:
//! * the child touches only the frozen state, the allocator (glibc's `fork` leaves it usable
//!   in the child), and one temp file; it closes every descriptor it inherited (above stderr)
//!   first, so it never holds the master's port or files; it never returns into the parent's
//!   code: it leaves by `_exit`, with a panic caught;
//! * the child dies with the thread that forked it (`PR_SET_PDEATHSIG`), and that thread
//!   waits for it: a killed master leaves no writer behind;
//! * the temp file replaces `snapshot` only after the child exited 0 and the parent checked
//!   the file's checksum and that it describes the log id it asked for;
//! * where `fork` fails (no memory for the page tables), the state is encoded under the read
//!   lock as before, with a warning.
use super::store::{check_file, file_head, Inner};
use super::types::{Node, NodeId};
use crate::snapshot;
use openraft::SnapshotMeta;
use std::path::Path;
use std::time::{Duration, Instant};

/// Histogram of seconds a snapshot build took (from the decision to the file on disk).
pub const BUILD_SECONDS: &str = "shale_master_snapshot_build_seconds";
/// Histogram of seconds the state was frozen (read-locked) for a snapshot build.
pub const FROZEN_SECONDS: &str = "shale_master_snapshot_frozen_seconds";

/// Whether member `id` should build a snapshot now: `changes` commands applied since the
/// latest snapshot, `size` files and directories in the state, and the last build (if any)
/// having ended `since_end` ago after taking `took`.
pub fn due(
    id: NodeId,
    every: u64,
    changes: u64,
    size: u64,
    last: Option<(Duration, Duration)>,
) -> bool {
    let threshold = every.saturating_add(every * (id % 3) / 3);
    if changes < threshold.max(1) {
        return false;
    }
    let replay_cap = (every.saturating_mul(10)).max(size.saturating_mul(3 + id % 3) / 6);
    changes >= replay_cap || last.is_none_or(|(since_end, took)| since_end >= took * 9)
}

/// A snapshot built (its file written): its meta, the file's size, and timings.
pub struct Built {
    pub meta: SnapshotMeta<NodeId, Node>,
    pub bytes: u64,
    /// The state was read-locked this long.
    pub frozen: Duration,
    /// CPU the build cost: the child's (user and system), and the frozen time (logged).
    pub cpu: Duration,
    /// Whether a child process wrote it (`false`: encoded under the lock, fork failed).
    pub forked: bool,
}

/// Writes the snapshot of the state in `g` (read-locked by the caller, released by `release`
/// right after the fork) to `tmp` in snapshot format `format`, and returns it. Runs on a
/// thread of its own: it waits for the child.
pub fn build(
    g: std::sync::RwLockReadGuard<'_, Inner>,
    meta: SnapshotMeta<NodeId, Node>,
    tmp: &Path,
    format: u16,
) -> Result<Built, String> {
    let t = Instant::now();
    let parent = std::process::id();
    // SAFETY: the child runs only `child`, which reads the frozen state (consistent: we hold
    // its read lock, so no writer is half-way), allocates (glibc's fork makes malloc usable in
    // the child), writes one file and `_exit`s without returning or unwinding.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child(&g.state, &meta, tmp, parent, format);
    }
    if pid < 0 {
        let err = std::io::Error::last_os_error();
        tracing::warn!("snapshot: fork failed ({err}); encoding under the state lock instead");
        let data = snapshot::encode_format(&g.state, format).map_err(|e| e.to_string())?;
        drop(g);
        let frozen = t.elapsed();
        let head = file_head(&meta, &data).map_err(|e| e.to_string())?;
        write_synced(tmp, &head, &data).map_err(|e| format!("{}: {e}", tmp.display()))?;
        return Ok(Built {
            meta,
            bytes: (head.len() + data.len()) as u64,
            frozen,
            cpu: t.elapsed(),
            forked: false,
        });
    }
    drop(g);
    let frozen = t.elapsed();
    let (status, child_cpu) = wait(pid)?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let _ = std::fs::remove_file(tmp);
        return Err(format!(
            "snapshot writer process failed (wait status {status:#x})"
        ));
    }
    // Checked in pieces: the file is hundreds of MB at 10 M files, and the parent need not
    // hold it (followers get it read from disk).
    let (written, bytes) = check_file(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    if written.last_log_id != meta.last_log_id {
        return Err(format!(
            "{}: written for {:?}, asked for {:?}",
            tmp.display(),
            written.last_log_id,
            meta.last_log_id
        ));
    }
    Ok(Built {
        meta,
        bytes,
        frozen,
        cpu: child_cpu + frozen,
        forked: true,
    })
}

/// Waits for child `pid`: its wait status and the CPU time it used (user and system).
fn wait(pid: libc::pid_t) -> Result<(i32, Duration), String> {
    let mut status = 0;
    loop {
        // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall on our own child, with valid pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            let t = |v: libc::timeval| {
                Duration::from_secs(v.tv_sec.max(0) as u64)
                    + Duration::from_micros(v.tv_usec.max(0) as u64)
            };
            return Ok((status, t(ru.ru_utime) + t(ru.ru_stime)));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waiting for the snapshot writer: {err}"));
        }
    }
}

/// Bytes written between two writeback starts (see [`write_synced`]).
const WRITEBACK_STEP: usize = 8 << 20;

/// Writes `head` then `data` to a new file at `path` and fsyncs it, starting the writeback of
/// every [`WRITEBACK_STEP`] as it is written and waiting for the one before (as RocksDB's
/// `bytes_per_sync`): dirty pages never pile up, so the final fsync is short and the Raft
/// log's own fsyncs on the same disk do not queue behind hundreds of MB at once.
fn write_synced(path: &Path, head: &[u8], data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::create(path)?;
    f.write_all(head)?;
    let mut at = head.len();
    let mut started = 0usize;
    for piece in data.chunks(WRITEBACK_STEP) {
        f.write_all(piece)?;
        at += piece.len();
        // SAFETY: plain syscalls on a file this function owns; ranges within what it wrote.
        unsafe {
            if started > 0 {
                // Wait for the previous step's writeback before starting this one.
                libc::sync_file_range(
                    f.as_raw_fd(),
                    0,
                    started as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
            }
            libc::sync_file_range(
                f.as_raw_fd(),
                started as libc::off64_t,
                (at - started) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        started = at;
    }
    f.sync_all()
}

/// Closes every file descriptor above stderr in a forked child: the parent's listening
/// socket, connections, Raft log segments and snapshot files. The child writes only a file it
/// opens itself. Kept open, they outlived a master `kill -9`ed during a build: the child,
/// waiting in the kernel on its writeback until SIGKILL could land, still held the listening
/// socket, and the restarted master failed with "Address already in use" (`shale-bench meta
/// --load-files 10000000`, restart phase), while peers' connections sat in its backlog.
fn close_inherited() {
    // SAFETY: plain syscalls on this process's own descriptor table (the child's copy).
    unsafe {
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur.min(1 << 20) as i32
            } else {
                1 << 16
            };
            for fd in 3..top {
                libc::close(fd);
            }
        }
    }
}

/// The child: encode, write, fsync, `_exit` (0 on success).
fn child(
    state: &crate::sm::MetaState,
    meta: &SnapshotMeta<NodeId, Node>,
    tmp: &Path,
    parent: u32,
    format: u16,
) -> ! {
    // SAFETY: plain syscalls; if the parent is gone already, stop at once.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() as u32 != parent {
            libc::_exit(3);
        }
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
    close_inherited();
    let run = std::panic::AssertUnwindSafe(|| -> Result<(), String> {
        let data = snapshot::encode_format(state, format).map_err(|e| e.to_string())?;
        let head = file_head(meta, &data).map_err(|e| e.to_string())?;
        write_synced(tmp, &head, &data).map_err(|e| e.to_string())
    });
    let code = match std::panic::catch_unwind(run) {
        Ok(Ok(())) => 0,
        Ok(Err(_)) => 1,
        Err(_) => 2,
    };
    // SAFETY: leaves the child without running any of the parent's destructors.
    unsafe { libc::_exit(code) }
}

/// Asks openraft for a snapshot whenever [`due`] says so (openraft's own policy is `Never`).
/// Looks every 200 ms, O(1); ends when the Raft core has stopped.
pub async fn trigger(raft: super::MasterRaft, sm: super::store::SmStore, id: NodeId, every: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (changes, size, last) = {
            let g = sm.read();
            let c = g.state.counts();
            (g.changes_since_snapshot(), c.files + c.dirs, g.last_build())
        };
        if due(id, every, changes, size, last) && raft.trigger().snapshot().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::due;
    use std::time::Duration;

    /// `wait` reports the CPU a child used (a build's cost, logged beside its wall time).
    #[test]
    fn wait_reports_the_childs_cpu_time() {
        // SAFETY: the child only makes syscalls and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // Spin until this process has used 60 ms of CPU.
            loop {
                // SAFETY: plain syscall with a valid pointer.
                let used = unsafe {
                    let mut ts: libc::timespec = std::mem::zeroed();
                    libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts);
                    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
                };
                if used >= 60 {
                    // SAFETY: leaves the child at once.
                    unsafe { libc::_exit(0) };
                }
            }
        }
        assert!(pid > 0, "fork");
        let (status, cpu) = super::wait(pid).expect("wait");
        assert!(libc::WIFEXITED(status));
        assert!(cpu >= Duration::from_millis(55), "{cpu:?}");
        assert!(cpu < Duration::from_secs(5), "{cpu:?}");
    }

    /// A forked child that calls `close_inherited` holds none of the parent's descriptors
    /// (a listening socket, a file) and keeps stderr; the parent's stay open.
    #[test]
    fn a_forked_writer_holds_none_of_the_parents_descriptors() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let file = tempfile::tempfile().expect("file");
        let fds = [listener.as_raw_fd(), file.as_raw_fd()];
        // SAFETY: the child only makes syscalls and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            super::close_inherited();
            // SAFETY: plain syscalls.
            unsafe {
                let closed = fds.iter().all(|fd| libc::fcntl(*fd, libc::F_GETFD) == -1);
                let stderr = libc::fcntl(2, libc::F_GETFD) != -1;
                libc::_exit(if closed && stderr { 0 } else { 1 });
            }
        }
        assert!(pid > 0, "fork");
        let (status, _) = super::wait(pid).expect("wait");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        // SAFETY: plain syscalls on descriptors this test owns.
        assert!(fds
            .iter()
            .all(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } != -1));
    }

    #[test]
    fn builds_after_enough_entries_staggered_by_member() {
        assert!(!due(3, 300, 299, 0, None));
        assert!(due(3, 300, 300, 0, None));
        assert!(!due(1, 300, 399, 0, None));
        assert!(due(1, 300, 400, 0, None));
        assert!(!due(2, 300, 499, 0, None));
        assert!(due(2, 300, 500, 0, None));
    }

    #[test]
    fn builds_at_most_a_tenth_of_the_time() {
        let s = Duration::from_secs;
        assert!(!due(3, 10, 99, 0, Some((s(17), s(2)))));
        assert!(due(3, 10, 99, 0, Some((s(18), s(2)))));
        assert!(due(3, 10, 99, 0, Some((s(0), s(0)))));
    }

    #[test]
    fn replay_stays_shorter_than_a_load() {
        let s = Duration::from_secs;
        let busy = Some((s(0), s(100)));
        // Below half the state's size (and ten times `every`): the duty limit holds.
        assert!(!due(3, 10, 499_999, 1_000_000, busy));
        assert!(due(3, 10, 500_000, 1_000_000, busy));
        assert!(!due(3, 10, 99, 10, busy));
        assert!(due(3, 10, 100, 10, busy));
        // Members reach their caps at different sizes of the backlog (a half, two thirds, five
        // sixths of the state), so a bulk load does not make all three build at once.
        assert!(!due(1, 10, 666_665, 1_000_002, busy));
        assert!(due(1, 10, 666_668, 1_000_002, busy));
        assert!(!due(2, 10, 833_334, 1_000_002, busy));
        assert!(due(2, 10, 833_335, 1_000_002, busy));
        assert!(due(3, 10, 500_001, 1_000_002, busy));
    }
}
