//! Directory operations and range reads (pread) shared by the two disk backends (std and uring).
//! Blocking calls; callers run them on tokio's blocking pool via [`blocking`].
use super::FsSpace;
use bytes::Bytes;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub(crate) const QUARANTINE_DIR: &str = "quarantine";

/// Runs a blocking closure on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking task failed: {e}")))?
}

/// Creates the store directory and its quarantine subdirectory.
pub(crate) fn prepare_dir(root: &Path) -> io::Result<()> {
    fs::create_dir_all(root.join(QUARANTINE_DIR))?;
    fsync_dir(root)
}

pub(crate) use shale_proto::durable::fsync_dir;

pub(crate) fn sync_dirs(root: &Path) -> io::Result<()> {
    fsync_dir(root)?;
    fsync_dir(&root.join(QUARANTINE_DIR))
}

pub(crate) fn list(root: &Path) -> io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, meta.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// Buffers reads of up to 1 MiB land in, reused (64 idle at most per process): a fresh
/// buffer per read made the kernel fault in and zero its pages on every frame served.
fn read_pool() -> &'static std::sync::Arc<shale_proto::bufpool::Pool> {
    static POOL: std::sync::OnceLock<std::sync::Arc<shale_proto::bufpool::Pool>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| shale_proto::bufpool::Pool::new(1 << 20, 64))
}

/// Bytes `[offset, offset + len)` of the file at `path`, read (pread) into a buffer of their
/// own (a pooled one up to 1 MiB). Not a memory map: a file truncated or deleted by someone else while a mapping of it is
/// read raises SIGBUS and kills the server (seen under the torture harness's disk faults); a
/// read returns a short count instead, which the caller treats as damage.
fn read_range(path: &Path, offset: u64, len: u64) -> io::Result<(Bytes, fs::File)> {
    let file = fs::File::open(path)?;
    let file_len = file.metadata()?.len();
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("read {offset}+{len} past the end of a {file_len}-byte file"),
        ));
    }
    let len_usize = usize::try_from(len).map_err(io::Error::other)?;
    if len_usize <= read_pool().buffer_bytes() {
        use std::os::unix::fs::FileExt;
        let mut buf = read_pool().take();
        file.read_exact_at(&mut buf.buf().spare_mut()[..len_usize], offset)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended before {offset}+{len} was read"),
                ),
                _ => e,
            })?;
        buf.buf().advance(len_usize);
        return Ok((buf.into_bytes(), file));
    }
    // Into uninitialized capacity: zeroing a buffer that pread is about to fill cost ≈ 5 % of
    // a chunkserver's CPU while serving reads.
    let mut buf = bytes::BytesMut::with_capacity(len_usize);
    while buf.len() < len_usize {
        let (have, at) = (buf.len(), offset + buf.len() as u64);
        let spare = buf.spare_capacity_mut();
        let want = spare.len().min(len_usize - have);
        let at = libc::off_t::try_from(at).map_err(io::Error::other)?;
        // SAFETY: `spare` is valid for writes of `want` bytes (its length or less); pread
        // writes at most that many and reports how many it wrote.
        let n = unsafe {
            libc::pread(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                spare.as_mut_ptr().cast(),
                want,
                at,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ended at {at} reading {offset}+{len}"),
            ));
        }
        let filled = buf.len() + n as usize;
        // SAFETY: pread initialized the `n` bytes after the current length.
        unsafe { buf.set_len(filled) };
    }
    Ok((buf.freeze(), file))
}

/// [`read_range`] on the blocking pool (the bytes may have to come from the disk), with the
/// file it read them from.
pub(crate) async fn map_async(
    path: PathBuf,
    offset: u64,
    len: u64,
) -> io::Result<(Bytes, Option<fs::File>)> {
    if len == 0 {
        return Ok((Bytes::new(), None));
    }
    blocking(move || read_range(&path, offset, len).map(|(b, f)| (b, Some(f)))).await
}

pub(crate) fn space(root: &Path) -> io::Result<FsSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(root.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(FsSpace {
        total_bytes: st.f_blocks as u64 * frsize,
        available_bytes: st.f_bavail as u64 * frsize,
    })
}

/// Whether an open with O_DIRECT failed because the file system does not do it (then buffered
/// writes are used instead).
pub(crate) fn direct_refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// Resolves a store-relative name, refusing anything that could leave the directory.
pub(crate) fn resolve(root: &Path, name: &str) -> io::Result<PathBuf> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !ok {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad store file name {name:?}"),
        ));
    }
    Ok(root.join(name))
}

/// The directory half of a disk backend (everything but data writes), shared by the std and
/// uring backends.
pub(crate) struct DiskDir {
    pub(crate) root: PathBuf,
}

impl DiskDir {
    pub(crate) fn new(root: PathBuf) -> io::Result<Self> {
        prepare_dir(&root)?;
        Ok(DiskDir { root })
    }

    pub(crate) fn path(&self, name: &str) -> io::Result<PathBuf> {
        resolve(&self.root, name)
    }

    pub(crate) async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (a, b) = (self.path(from)?, self.path(to)?);
        blocking(move || fs::rename(a, b)).await
    }

    pub(crate) async fn remove(&self, name: &str) -> io::Result<()> {
        let p = self.path(name)?;
        blocking(move || fs::remove_file(p)).await
    }

    pub(crate) async fn sync_dir(&self) -> io::Result<()> {
        let root = self.root.clone();
        blocking(move || sync_dirs(&root)).await
    }

    pub(crate) async fn list(&self) -> io::Result<Vec<(String, u64)>> {
        let root = self.root.clone();
        blocking(move || list(&root)).await
    }

    pub(crate) async fn read_all(&self, name: &str) -> io::Result<Vec<u8>> {
        let p = self.path(name)?;
        blocking(move || fs::read(p)).await
    }

    pub(crate) async fn map_file(
        &self,
        name: &str,
        offset: u64,
        len: u64,
    ) -> io::Result<(Bytes, Option<fs::File>)> {
        map_async(self.path(name)?, offset, len).await
    }

    pub(crate) fn space(&self) -> io::Result<FsSpace> {
        space(&self.root)
    }
}

/// Implements [`super::Backend`] for a disk backend: the given data methods, plus the directory
/// methods delegated to its `dir: DiskDir` field.
macro_rules! disk_backend_impl {
    ($ty:ty, { $($data_methods:tt)* }) => {
        #[async_trait::async_trait]
        impl super::Backend for $ty {
        $($data_methods)*
        async fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
            self.dir.rename(from, to).await
        }
        async fn remove(&self, name: &str) -> std::io::Result<()> {
            self.dir.remove(name).await
        }
        async fn sync_dir(&self) -> std::io::Result<()> {
            self.dir.sync_dir().await
        }
        async fn list(&self) -> std::io::Result<Vec<(String, u64)>> {
            self.dir.list().await
        }
        async fn read_all(&self, name: &str) -> std::io::Result<Vec<u8>> {
            self.dir.read_all(name).await
        }
        async fn map(&self, name: &str, offset: u64, len: u64) -> std::io::Result<bytes::Bytes> {
            Ok(self.dir.map_file(name, offset, len).await?.0)
        }
        async fn map_file(
            &self,
            name: &str,
            offset: u64,
            len: u64,
        ) -> std::io::Result<(bytes::Bytes, Option<std::fs::File>)> {
            self.dir.map_file(name, offset, len).await
        }
        fn space(&self) -> std::io::Result<super::FsSpace> {
            self.dir.space()
        }
        }
    };
}
pub(crate) use disk_backend_impl;
