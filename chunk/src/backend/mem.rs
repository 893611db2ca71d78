//! An in-memory file system with a crash model and fault injection, for tests.
//!
//! Crash model (stricter than ext4): file data survives a crash only as of its last
//! `sync_data`; directory entries (creates, renames, removes) only as of the last `sync_dir`.
//! [`MemBackend::crash`] throws away everything else, as a power cut would. Clones share one
//! file system, so a test can "reopen" a store on the state a crash left behind.
//!
//! Faults ([`Fault`]) fire once each on the next matching call.
use super::{Backend, FileHandle, FsSpace};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// A fault to inject into the next matching operation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next `write_at` stores only the first half of its bytes, then fails with EIO.
    TornWrite,
    /// The next `sync_data` reports success without making anything durable.
    LostFsync,
    /// The next `write_at` fails with ENOSPC and stores nothing.
    NoSpace,
}

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Default)]
struct MemFs {
    inodes: HashMap<u64, Inode>,
    dir: BTreeMap<String, u64>,
    durable_dir: BTreeMap<String, u64>,
    handles: HashMap<u64, u64>,
    next_id: u64,
    capacity_bytes: u64,
    faults: Vec<Fault>,
    /// Mutating operations left before the simulated machine dies (every later call fails
    /// with EIO and changes nothing, until [`MemBackend::crash`]).
    ops_left: Option<u64>,
}

impl MemFs {
    fn ino(&self, name: &str) -> io::Result<u64> {
        self.dir
            .get(name)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file")))
    }
    fn handle(&self, fh: FileHandle) -> io::Result<u64> {
        self.handles
            .get(&fh.0)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown file handle"))
    }
    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.data.len() as u64).sum()
    }
    fn take_fault(&mut self, f: Fault) -> bool {
        match self.faults.iter().position(|x| *x == f) {
            Some(i) => {
                self.faults.remove(i);
                true
            }
            None => false,
        }
    }
    /// Counts one mutating operation; fails once the simulated machine is dead.
    fn step(&mut self) -> io::Result<()> {
        match &mut self.ops_left {
            Some(0) => Err(io::Error::from_raw_os_error(libc::EIO)),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn gc(&mut self) {
        let live: std::collections::HashSet<u64> = self
            .dir
            .values()
            .chain(self.durable_dir.values())
            .chain(self.handles.values())
            .copied()
            .collect();
        self.inodes.retain(|ino, _| live.contains(ino));
    }
}

/// The in-memory backend. Cheap to clone; clones share one file system.
#[derive(Clone)]
pub struct MemBackend {
    fs: Arc<Mutex<MemFs>>,
}

impl MemBackend {
    pub fn new(capacity_bytes: u64) -> Self {
        let fs = MemFs {
            capacity_bytes,
            next_id: 1,
            ..Default::default()
        };
        MemBackend {
            fs: Arc::new(Mutex::new(fs)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemFs> {
        // A panic while holding this lock is a test failure already; keep the state usable.
        self.fs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms a fault for the next matching operation.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// The machine dies after `n` more mutating operations (create, write, sync, rename,
    /// remove): each later one fails with EIO and changes nothing. Pair with [`Self::crash`] to
    /// sweep every crash point of a protocol.
    pub fn die_after_ops(&self, n: u64) {
        self.lock().ops_left = Some(n);
    }

    /// Simulates a power cut: unsynced data and directory changes are lost, handles closed,
    /// and the machine comes back up.
    pub fn crash(&self) {
        let mut fs = self.lock();
        fs.ops_left = None;
        fs.dir = fs.durable_dir.clone();
        fs.handles.clear();
        for inode in fs.inodes.values_mut() {
            inode.data = inode.synced.clone();
        }
        fs.gc();
    }

    /// Flips one bit of a file at rest (both its current and durable contents).
    pub fn flip_bit(&self, name: &str, offset: usize) -> io::Result<()> {
        let mut fs = self.lock();
        let ino = fs.ino(name)?;
        let inode = fs
            .inodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::other("lost inode"))?;
        for buf in [&mut inode.data, &mut inode.synced] {
            if let Some(b) = buf.get_mut(offset) {
                *b ^= 0x01;
            }
        }
        Ok(())
    }

    /// Replaces a file's contents durably (plants garbage or truncates).
    pub fn put_file(&self, name: &str, data: &[u8]) {
        let mut fs = self.lock();
        let id = fs.next_id;
        fs.next_id += 1;
        fs.inodes.insert(
            id,
            Inode {
                data: data.to_vec(),
                synced: data.to_vec(),
            },
        );
        fs.dir.insert(name.to_string(), id);
        fs.durable_dir.insert(name.to_string(), id);
        fs.gc();
    }

    /// Removes a file durably, as someone else would (a deleted chunk file).
    pub fn delete_file(&self, name: &str) {
        let mut fs = self.lock();
        fs.dir.remove(name);
        fs.durable_dir.remove(name);
        fs.gc();
    }

    /// A file's current contents.
    pub fn file(&self, name: &str) -> Option<Vec<u8>> {
        let fs = self.lock();
        let ino = fs.dir.get(name)?;
        fs.inodes.get(ino).map(|i| i.data.clone())
    }

    fn write_one(&self, fh: FileHandle, offset: u64, data: Bytes) -> io::Result<()> {
        let mut fs = self.lock();
        fs.step()?;
        let ino = fs.handle(fh)?;
        if fs.take_fault(Fault::NoSpace) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let torn = fs.take_fault(Fault::TornWrite);
        let off = usize::try_from(offset).map_err(io::Error::other)?;
        let cur_len = fs.inodes.get(&ino).map_or(0, |i| i.data.len());
        let grow = (off + data.len()).saturating_sub(cur_len) as u64;
        if fs.used_bytes() + grow > fs.capacity_bytes {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let keep = if torn { data.len() / 2 } else { data.len() };
        let inode = fs
            .inodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::other("lost inode"))?;
        if inode.data.len() < off + keep {
            inode.data.resize(off + keep, 0);
        }
        inode.data[off..off + keep].copy_from_slice(&data[..keep]);
        if torn {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    /// Every name in the directory, including `quarantine/...`.
    pub fn names(&self) -> Vec<String> {
        self.lock().dir.keys().cloned().collect()
    }
}

#[async_trait]
impl Backend for MemBackend {
    fn kind(&self) -> &'static str {
        "mem"
    }

    async fn create(&self, name: &str) -> io::Result<FileHandle> {
        let mut fs = self.lock();
        fs.step()?;
        let id = fs.next_id;
        fs.next_id += 1;
        fs.inodes.insert(id, Inode::default());
        fs.dir.insert(name.to_string(), id);
        fs.handles.insert(id, id);
        fs.gc();
        Ok(FileHandle(id))
    }

    async fn open_existing(&self, name: &str) -> io::Result<FileHandle> {
        let mut fs = self.lock();
        fs.step()?;
        let ino = fs.ino(name)?;
        let id = fs.next_id;
        fs.next_id += 1;
        fs.handles.insert(id, ino);
        Ok(FileHandle(id))
    }

    async fn write_at(&self, fh: FileHandle, offset: u64, bufs: Vec<Bytes>) -> io::Result<()> {
        let mut at = offset;
        for b in bufs {
            let n = b.len() as u64;
            self.write_one(fh, at, b)?;
            at += n;
        }
        Ok(())
    }

    async fn sync_data(&self, fh: FileHandle) -> io::Result<()> {
        let mut fs = self.lock();
        fs.step()?;
        let ino = fs.handle(fh)?;
        if fs.take_fault(Fault::LostFsync) {
            return Ok(());
        }
        if let Some(inode) = fs.inodes.get_mut(&ino) {
            inode.synced = inode.data.clone();
        }
        Ok(())
    }

    async fn close(&self, fh: FileHandle) -> io::Result<()> {
        let mut fs = self.lock();
        fs.handles.remove(&fh.0);
        fs.gc();
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut fs = self.lock();
        fs.step()?;
        let ino = fs.ino(from)?;
        fs.dir.remove(from);
        fs.dir.insert(to.to_string(), ino);
        fs.gc();
        Ok(())
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        let mut fs = self.lock();
        fs.step()?;
        fs.ino(name)?;
        fs.dir.remove(name);
        fs.gc();
        Ok(())
    }

    async fn sync_dir(&self) -> io::Result<()> {
        let mut fs = self.lock();
        fs.step()?;
        fs.durable_dir = fs.dir.clone();
        fs.gc();
        Ok(())
    }

    async fn list(&self) -> io::Result<Vec<(String, u64)>> {
        let fs = self.lock();
        Ok(fs
            .dir
            .iter()
            .filter(|(name, _)| !name.contains('/'))
            .map(|(name, ino)| {
                let len = fs.inodes.get(ino).map_or(0, |i| i.data.len() as u64);
                (name.clone(), len)
            })
            .collect())
    }

    async fn read_all(&self, name: &str) -> io::Result<Vec<u8>> {
        let fs = self.lock();
        let ino = fs.ino(name)?;
        Ok(fs
            .inodes
            .get(&ino)
            .map(|i| i.data.clone())
            .unwrap_or_default())
    }

    async fn map(&self, name: &str, offset: u64, len: u64) -> io::Result<Bytes> {
        let fs = self.lock();
        let ino = fs.ino(name)?;
        let data = fs.inodes.get(&ino).map(|i| &i.data[..]).unwrap_or_default();
        let (a, b) = (offset as usize, offset.saturating_add(len) as usize);
        if b > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "map {offset}+{len} past the end of a {}-byte file",
                    data.len()
                ),
            ));
        }
        Ok(Bytes::copy_from_slice(&data[a..b]))
    }

    fn space(&self) -> io::Result<FsSpace> {
        let fs = self.lock();
        Ok(FsSpace {
            total_bytes: fs.capacity_bytes,
            available_bytes: fs.capacity_bytes.saturating_sub(fs.used_bytes()),
        })
    }
}
