//! `shale debug ...`: human-readable views of on-disk state.
use shale_chunk::{open_disk_store, BackendChoice, StoreConfig, VerifyAtOpen};
use std::path::Path;

pub async fn chunk_store(dir: &Path, full_verify: bool) -> Result<(), Box<dyn std::error::Error>> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()).into());
    }
    // Refused while a chunkserver runs on this store (it holds the lock).
    let _lock = shale_proto::dirlock::lock_dir(dir)?;
    let config = StoreConfig {
        chunk_size_max_bytes: 1 << 30,
        verify_at_open: if full_verify {
            VerifyAtOpen::Full
        } else {
            VerifyAtOpen::Tail
        },
        ..StoreConfig::default()
    };
    let (store, report) = open_disk_store(dir, config, BackendChoice::Auto).await?;
    println!("store {} (backend {})", dir.display(), store.backend_kind());
    println!("recovery: {report}");
    let u = store.usage();
    println!(
        "usage: {} used, {} free of {} ({} sealed chunks)",
        crate::human::size(u.used_bytes),
        crate::human::size(u.free_bytes),
        crate::human::size(u.capacity_bytes),
        u.sealed_chunks
    );
    for c in store.list() {
        println!(
            "  {:016x} {} {:>12} bytes",
            c.id.get(),
            c.version,
            c.length_bytes
        );
    }
    Ok(())
}

pub fn raftlog(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()).into());
    }
    print!("{}", shale_meta::raftlog::dump::dump(dir, None)?);
    Ok(())
}
