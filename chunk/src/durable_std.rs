//! The durability recipe for small files outside a chunk store, with std::fs: temp name, write,
//! fsync, rename, fsync the directory.
use std::io::Write;
use std::path::Path;

pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}
