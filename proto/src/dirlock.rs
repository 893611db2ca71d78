//! An exclusive lock on a data directory for the life of a process (`flock` on the directory
//! itself): two servers on one directory, or a debug tool on a live server's store, are refused
//! instead of corrupting each other. Released when the returned handle drops or the process
//! dies (the kernel drops `flock` locks with the last descriptor).
use std::fs::{File, TryLockError};
use std::io;
use std::path::Path;

/// Holds the lock while alive.
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] File);

/// Locks `dir` (which must exist) or says who holds it.
pub fn lock_dir(dir: &Path) -> io::Result<DirLock> {
    let f =
        File::open(dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    match f.try_lock() {
        Ok(()) => Ok(DirLock(f)),
        Err(TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "{} is in use by another process (a server or tool already holds its lock)",
                dir.display()
            ),
        )),
        Err(TryLockError::Error(e)) => Err(io::Error::new(
            e.kind(),
            format!("locking {}: {e}", dir.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_drops() {
        let d = tempfile::tempdir().expect("tmp");
        let first = lock_dir(d.path()).expect("first");
        let e = lock_dir(d.path()).expect_err("second");
        assert!(e.to_string().contains("in use"), "{e}");
        drop(first);
        lock_dir(d.path()).expect("free again");
    }
}
