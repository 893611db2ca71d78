//! `shale mount MOUNTPOINT`: the cluster as a local directory tree (FUSE, `shale-access`),
//! until SIGINT/SIGTERM or an outside `umount`.
use shale_access::fuse::{self, MountOptions};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// An existing, empty directory to mount the cluster on.
    mountpoint: PathBuf,
    /// How long the kernel caches names and attributes, in milliseconds (changes by other
    /// clients show after at most this long; this mount's own at once).
    #[arg(long, default_value_t = 1000)]
    cache_ms: u64,
    /// Let other local users use the mount (the kernel checks each against the modes and
    /// owners as the mount shows them; the cluster checks every request as this mount's
    /// identity).
    #[arg(long)]
    allow_other: bool,
    /// The kernel's read-ahead for the mount, in KiB (0: the kernel's default).
    #[arg(long, default_value_t = 8192)]
    read_ahead_kib: u32,
}

pub async fn run(
    a: Args,
    masters: &[String],
    tls: &crate::tls::TlsArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    // Say what is missing before reaching for the cluster.
    fuse::preflight(&a.mountpoint)?;
    let client = crate::cli::connect(masters, tls).await?;
    let opts = MountOptions {
        ttl: Duration::from_millis(a.cache_ms),
        allow_other: a.allow_other,
        read_ahead_kib: a.read_ahead_kib,
    };
    let m = fuse::mount(client, &a.mountpoint, opts).await?;
    println!(
        "mounted the cluster at {} as {}; Ctrl-C (or `umount {}`) unmounts",
        a.mountpoint.display(),
        m.user(),
        a.mountpoint.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tick.tick() => if m.is_finished() {
                eprintln!("{} was unmounted", a.mountpoint.display());
                break;
            }
        }
    }
    tokio::task::spawn_blocking(move || m.unmount()).await??;
    Ok(())
}
