//! The durability recipe for small whole files (a chunkserver's identity, a master's snapshot,
//! `shale up`'s port record), written once for every crate: write to a temp name, fsync it,
//! rename over the final name, fsync the directory. A crash leaves either the old file or the
//! new one, never a torn one; a `NAME.tmp` left behind is overwritten by the next write.
//! (The chunk store and the Raft log have their own formats and recovery; they use
//! [`fsync_dir`] for their renames.)
use std::io::Write;
use std::path::Path;

/// Replaces `dir/name` with `bytes`, durably.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}

/// Makes the directory's entries (creations, renames, removals) durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_whole_files() {
        let d = tempfile::tempdir().expect("tmp");
        super::write_file(d.path(), "f", b"one").expect("write");
        super::write_file(d.path(), "f", b"two!").expect("rewrite");
        assert_eq!(std::fs::read(d.path().join("f")).expect("read"), b"two!");
        assert!(!d.path().join("f.tmp").exists());
    }
}
