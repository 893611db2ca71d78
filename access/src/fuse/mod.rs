//! `shale mount`: the cluster as a local directory tree, through FUSE.
//!
//! What a program sees (documented for users in README.md):
//! * directories, `stat`, listings, `mkdir`, `rmdir`, `unlink`, `rename` (atomic, replacing a
//!   file at the target; `RENAME_NOREPLACE` honoured), `statfs` (cluster capacity);
//! * reads at any offset, sequential ones with the client's read-ahead across chunks;
//! * files written once, front to back: `create`/`open(O_TRUNC)`, sequential writes, `close`;
//!   the file appears (or replaces the old one) atomically at `close`. Other writes fail with
//!   `EOPNOTSUPP`/`EPERM` and nothing is changed (see `handles.rs`);
//! * owners and modes are the cluster's, checked by the cluster for the mount's identity
//!   (see `attrs.rs` for how names become local ids).
//!
//! The session runs on its own thread; every request is served on the tokio runtime that
//! called [`mount`] (see `fs.rs`).
mod attrs;
mod fs;
mod handles;
mod inodes;

pub use attrs::Ids;
pub use fs::{ShaleFs, MAX_IO};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use shale_client::Client;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// How long the kernel may cache entries and attributes (changes made by other clients
    /// are seen after at most this long; this mount's own changes at once).
    pub ttl: Duration,
    /// Let other local users in (the `allow_other` option, with `default_permissions`: the
    /// kernel checks each local user against the modes and owners as the mount shows them,
    /// then the cluster checks every request as the mount's identity).
    pub allow_other: bool,
    /// Raise the kernel's read-ahead for the mount to this many KiB (0: leave it).
    pub read_ahead_kib: u32,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            ttl: Duration::from_secs(1),
            allow_other: false,
            read_ahead_kib: 8192,
        }
    }
}

/// Checks what a mount needs from this machine, with an error that says how to get it.
pub fn preflight(mountpoint: &Path) -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err(
            "/dev/fuse is missing: load the kernel's fuse module (`modprobe fuse`) or \
             give the container the device (`--device /dev/fuse`)"
                .into(),
        );
    }
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && !on_path("fusermount3") && !on_path("fusermount") {
        return Err(
            "mounting as a non-root user needs fusermount3, which is missing: install \
             it (Debian/Ubuntu: `apt-get install fuse3`), or mount as root"
                .into(),
        );
    }
    match std::fs::metadata(mountpoint) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{}: not a directory", mountpoint.display())),
        Err(e) => Err(format!(
            "{}: {e} (the mount point must be an existing directory)",
            mountpoint.display()
        )),
    }
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// A mounted file system; [`Mount::unmount`] ends it.
pub struct Mount {
    mountpoint: PathBuf,
    user: String,
    unmounter: SessionUnmounter,
    session: std::thread::JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

/// Mounts the cluster `client` reaches at `mountpoint`. Must be called on a multi-threaded
/// tokio runtime, which then serves the mount's requests.
pub async fn mount(client: Client, mountpoint: &Path, opts: MountOptions) -> Result<Mount, String> {
    preflight(mountpoint)?;
    let me = client
        .who_am_i()
        .await
        .map_err(|e| format!("cannot ask the cluster who this mount is: {e}"))?;
    let ids = Ids::local(&me.user);
    let user = me.user;
    let fs = ShaleFs::new(tokio::runtime::Handle::current(), client, ids, opts.ttl);
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("shale".into()),
        MountOption::Subtype("shale".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    if opts.allow_other {
        // Other local users act through the mount's identity: the kernel first checks each
        // of them against the modes and the owners as the mount shows them.
        config.acl = SessionACL::All;
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    let mp = mountpoint.to_path_buf();
    let mut session = tokio::task::spawn_blocking(move || Session::new(fs, &mp, &config))
        .await
        .map_err(|e| format!("mounting: {e}"))?
        .map_err(|e| format!("cannot mount {}: {e}", mountpoint.display()))?;
    let unmounter = session.unmount_callable();
    let session = std::thread::Builder::new()
        .name("shale-fuse".into())
        .spawn(move || session.run())
        .map_err(|e| format!("cannot start the FUSE session: {e}"))?;
    if opts.read_ahead_kib > 0 {
        let (mp, kib) = (mountpoint.to_path_buf(), opts.read_ahead_kib);
        // stat() of the mount point is served by the session: not on this thread's behalf
        // before it runs, and never blocking the runtime.
        tokio::task::spawn_blocking(move || raise_read_ahead(&mp, kib));
    }
    Ok(Mount {
        mountpoint: mountpoint.to_path_buf(),
        user,
        unmounter,
        session,
    })
}

/// Raises the kernel's read-ahead for the mount (FUSE mounts start at 128 KiB, which keeps
/// sequential reads far from what the cluster can serve). Best effort: needs root.
fn raise_read_ahead(mountpoint: &Path, kib: u32) {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = m.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&knob, kib.to_string()) {
        Ok(()) => tracing::info!("read-ahead of the mount raised to {kib} KiB"),
        Err(e) => tracing::info!("read-ahead left at the kernel's default ({knob}: {e})"),
    }
}

impl Mount {
    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The cluster identity the mount acts as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether the session has ended (someone ran `umount`/`fusermount3 -u`).
    pub fn is_finished(&self) -> bool {
        self.session.is_finished()
    }

    /// Unmounts (lazily if programs still use the mount) and waits for the session to end.
    pub fn unmount(mut self) -> Result<(), String> {
        if let Err(e) = self.unmounter.unmount() {
            tracing::warn!("unmount failed ({e}); detaching the mount instead");
            detach(&self.mountpoint)?;
        }
        match self.session.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the FUSE session ended with an error: {e}")),
            Err(_) => Err("the FUSE session panicked".into()),
        }
    }
}

/// `umount -l`: the mount leaves the tree now and goes when its last user does.
fn detach(mountpoint: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| "mount point holds a NUL byte".to_string())?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot unmount {}: {}",
            mountpoint.display(),
            std::io::Error::last_os_error()
        ))
    }
}
