//! The FUSE file system: each kernel request becomes calls of the public client API.
//!
//! Invariants:
//! * The session thread never waits on the cluster: every request that needs it is handed to
//!   the tokio runtime with its reply object, so slow calls overlap and one stuck call does not
//!   stop the others. Every request gets exactly one reply (fuser answers `EIO` for a reply
//!   dropped unanswered, e.g. by a task that panicked).
//! * The cluster decides every permission (for the identity the mount runs as); the kernel
//!   caches entries and attributes for the configured TTL, and this mount's own changes are
//!   seen at once (the kernel updates what it cached for them).
//! * Shared tables (`inodes`, `handles`, `pending`) are behind short `std` locks never held
//!   across an `.await`.
use super::attrs::{attr_of, errno_of, pending_attr, Ids};
use super::handles::{DirEntry, Handle, ReadHandle, WriteSlot};
use super::inodes::{Inodes, PENDING_BASE, ROOT};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};
use shale_client::{Client, ClientError, CreateOptions, FileStat};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// The largest read or write the kernel sends in one request.
pub const MAX_IO: u32 = 1 << 20;

/// The mount's shared state.
pub struct Shared {
    client: Client,
    ids: Ids,
    ttl: Duration,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Handle>>,
    /// Files being written through the mount, by inode number.
    pending: Mutex<HashMap<u64, Arc<WriteSlot>>>,
    next_fh: AtomicU64,
    next_pending: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

impl Shared {
    fn path(&self, ino: INodeNo) -> Result<String, i32> {
        lock(&self.inodes)
            .path(ino.0)
            .map(str::to_string)
            .ok_or(libc::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<String, i32> {
        lock(&self.inodes).child(parent.0, name)
    }

    fn handle(&self, fh: FileHandle) -> Result<Handle, i32> {
        lock(&self.handles).get(&fh.0).cloned().ok_or(libc::EBADF)
    }

    fn add_handle(&self, h: Handle) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, h);
        FileHandle(fh)
    }

    fn pending_at(&self, path: &str) -> Option<Arc<WriteSlot>> {
        lock(&self.pending)
            .values()
            .find(|s| s.path == path)
            .cloned()
    }

    /// `st`, the stat of `path`, remembered as one kernel lookup; its attributes.
    fn learn(&self, path: &str, st: &FileStat) -> FileAttr {
        let ino = if path == "/" { ROOT } else { st.inode };
        lock(&self.inodes).remember(ino, path);
        attr_of(st, ino, &self.ids)
    }

    /// The attributes of `path`, remembered as one lookup (for `lookup`).
    async fn entry(&self, path: &str) -> Result<FileAttr, i32> {
        match self.client.stat(path).await {
            Ok(st) => Ok(self.learn(path, &st)),
            Err(e) => {
                // A file this mount is writing is visible to it before it is complete.
                if let Some(s) = self.pending_at(path) {
                    lock(&self.inodes).remember(s.ino, path);
                    return Ok(pending_attr(s.ino, s.size(), s.mode(), &self.ids, s.since));
                }
                Err(errno_of(&e))
            }
        }
    }

    async fn getattr(&self, ino: INodeNo) -> Result<FileAttr, i32> {
        if let Some(s) = lock(&self.pending).get(&ino.0).cloned() {
            return Ok(pending_attr(ino.0, s.size(), s.mode(), &self.ids, s.since));
        }
        let path = self.path(ino)?;
        let st = self.client.stat(&path).await.map_err(|e| errno_of(&e))?;
        Ok(attr_of(&st, ino.0, &self.ids))
    }

    /// Starts writing `path` (replacing what is there when it completes) as inode `ino`.
    async fn start_write(
        &self,
        ino: Option<u64>,
        path: &str,
        mode: u32,
        exclusive: bool,
    ) -> Result<(Arc<WriteSlot>, FileHandle), i32> {
        let opts = CreateOptions::default()
            .overwrite(!exclusive)
            .mode(mode & 0o1777);
        let w = self
            .client
            .create(path, opts)
            .await
            .map_err(|e| errno_of(&e))?;
        let ino = ino.unwrap_or_else(|| self.next_pending.fetch_add(1, Ordering::Relaxed));
        let slot = Arc::new(WriteSlot::new(ino, path.to_string(), mode & 0o1777, w));
        lock(&self.pending).insert(ino, slot.clone());
        let fh = self.add_handle(Handle::Write(slot.clone()));
        Ok((slot, fh))
    }

    /// Completes a file being written (it stops being pending either way), then applies the
    /// mode and owner asked for meanwhile.
    async fn finish(&self, slot: &WriteSlot) -> Result<u64, i32> {
        let r = slot.finish().await;
        {
            let mut p = lock(&self.pending);
            if p.get(&slot.ino).is_some_and(|s| std::ptr::eq(&**s, slot)) {
                p.remove(&slot.ino);
            }
        }
        let n = r?;
        let later = slot.take_changes();
        if let Some(m) = later.mode {
            self.client
                .chmod(&slot.path, m)
                .await
                .map_err(|e| errno_of(&e))?;
        }
        // Giving a file to its maker changes nothing (and needs no superuser).
        let owner = later.owner.filter(|o| *o != self.ids.me);
        if owner.is_some() || later.group.is_some() {
            self.client
                .chown(&slot.path, owner.as_deref(), later.group.as_deref())
                .await
                .map_err(|e| errno_of(&e))?;
        }
        Ok(n)
    }

    async fn open(&self, ino: INodeNo, flags: OpenFlags) -> Result<(FileHandle, FopenFlags), i32> {
        let path = self.path(ino)?;
        if flags.acc_mode() == OpenAccMode::O_RDONLY {
            if let Some(slot) = self.pending_at(&path) {
                // Written through this mount: readable once complete. Its last descriptor
                // may just have been closed, with the release still under way.
                if !slot.released() {
                    return Err(libc::EBUSY);
                }
                self.finish(&slot).await?;
            }
            let r = self.client.open(&path).await.map_err(|e| errno_of(&e))?;
            let h = ReadHandle::start(&tokio::runtime::Handle::current(), r);
            let fh = self.add_handle(Handle::Read(Arc::new(h)));
            return Ok((fh, FopenFlags::empty()));
        }
        // Writing: the file is replaced as a whole, so only a truncating open (or one of an
        // empty file, which is the same) can write it.
        let st = self.client.stat(&path).await.map_err(|e| errno_of(&e))?;
        if st.is_dir {
            return Err(libc::EISDIR);
        }
        if flags.0 & libc::O_TRUNC == 0 && st.length > 0 {
            tracing::info!(
                path,
                "refused: files are write-once; open with O_TRUNC to replace one"
            );
            return Err(libc::EPERM);
        }
        let mode = if st.mode == 0 { 0o644 } else { st.mode };
        let (_, fh) = self.start_write(Some(ino.0), &path, mode, false).await?;
        Ok((fh, FopenFlags::empty()))
    }

    async fn setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
    ) -> Result<FileAttr, i32> {
        let pending = lock(&self.pending).get(&ino.0).cloned();
        if let Some(s) = pending {
            // A file being written: no truncation but to where it ends; mode and owner
            // changes are applied when it completes.
            if size.is_some_and(|n| n != s.size()) {
                return Err(libc::EPERM);
            }
            let (owner, group) = self.names(uid, gid)?;
            s.change(mode.map(|m| m & 0o1777), owner, group);
            return Ok(pending_attr(ino.0, s.size(), s.mode(), &self.ids, s.since));
        }
        let path = self.path(ino)?;
        let fail = |e: ClientError| errno_of(&e);
        // Each change answers with the attributes after it: the last one is the reply.
        let mut st = self.client.stat(&path).await.map_err(fail)?;
        if let Some(n) = size {
            if st.is_dir {
                return Err(libc::EISDIR);
            }
            if n != st.length {
                if n != 0 {
                    return Err(libc::EPERM);
                }
                // Truncating to zero replaces the file with an empty one.
                let mode = if st.mode == 0 { 0o644 } else { st.mode };
                let w = self
                    .client
                    .create(&path, CreateOptions::default().overwrite(true).mode(mode))
                    .await
                    .map_err(fail)?;
                w.close().await.map_err(fail)?;
                st = self.client.stat(&path).await.map_err(fail)?;
            }
        }
        if let Some(m) = mode {
            st = self.client.chmod(&path, m & 0o1777).await.map_err(fail)?;
        }
        if uid.is_some() || gid.is_some() {
            let (owner, group) = self.names(uid, gid)?;
            // Only what changes is asked for: `chown` to the owner a file already has is
            // allowed to anyone who may write it, as in POSIX.
            let owner = owner.filter(|o| *o != st.owner);
            let group = group.filter(|g| *g != st.group);
            if owner.is_some() || group.is_some() {
                st = self
                    .client
                    .chown(&path, owner.as_deref(), group.as_deref())
                    .await
                    .map_err(fail)?;
            }
        }
        Ok(attr_of(&st, ino.0, &self.ids))
    }

    /// The cluster names for local ids (`EINVAL` for an id with no name).
    fn names(
        &self,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(Option<String>, Option<String>), i32> {
        let owner = match uid {
            Some(u) => Some(self.ids.user_named(u).ok_or(libc::EINVAL)?),
            None => None,
        };
        let group = match gid {
            Some(g) => Some(self.ids.group_named(g).ok_or(libc::EINVAL)?),
            None => None,
        };
        Ok((owner, group))
    }

    async fn list(&self, ino: INodeNo) -> Result<Vec<DirEntry>, i32> {
        let path = self.path(ino)?;
        let listed = self.client.list(&path).await.map_err(|e| errno_of(&e))?;
        let mut out = Vec::with_capacity(listed.len() + 2);
        out.push(DirEntry {
            ino: ino.0,
            kind: FileType::Directory,
            name: ".".into(),
        });
        out.push(DirEntry {
            ino: ROOT,
            kind: FileType::Directory,
            name: "..".into(),
        });
        for st in listed {
            out.push(DirEntry {
                ino: st.inode,
                kind: if st.is_dir {
                    FileType::Directory
                } else {
                    FileType::RegularFile
                },
                name: st.name,
            });
        }
        Ok(out)
    }

    async fn statfs(&self) -> Result<[u64; 4], i32> {
        let s = self.client.status().await.map_err(|e| errno_of(&e))?;
        let alive = s.chunkservers.iter().filter(|c| c.state == "alive");
        let (cap, free) = alive.fold((0u64, 0u64), |(c, f), cs| {
            (
                c.saturating_add(cs.capacity_bytes),
                f.saturating_add(cs.free_bytes),
            )
        });
        Ok([
            cap,
            free,
            s.files.saturating_add(s.dirs),
            u64::from(u32::MAX),
        ])
    }
}

/// The file system the session serves.
pub struct ShaleFs {
    rt: tokio::runtime::Handle,
    shared: Arc<Shared>,
}

impl ShaleFs {
    /// A file system over `client`, acting as identity `ids.me`, with the kernel caching
    /// entries and attributes for `ttl`.
    pub fn new(rt: tokio::runtime::Handle, client: Client, ids: Ids, ttl: Duration) -> Self {
        ShaleFs {
            rt,
            shared: Arc::new(Shared {
                client,
                ids,
                ttl,
                inodes: Mutex::new(Inodes::new()),
                handles: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                next_fh: AtomicU64::new(1),
                next_pending: AtomicU64::new(PENDING_BASE),
            }),
        }
    }

    /// Runs `f` on the runtime.
    fn spawn<F, Fut>(&self, f: F)
    where
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(f(self.shared.clone()));
    }
}

impl Filesystem for ShaleFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for cap in [InitFlags::FUSE_ATOMIC_O_TRUNC, InitFlags::FUSE_MAX_PAGES] {
            if let Err(missing) = config.add_capabilities(cap) {
                tracing::info!("the kernel lacks FUSE capability {missing:?}");
            }
        }
        let _ = config.set_max_write(MAX_IO);
        if let Err(max) = config.set_max_readahead(MAX_IO) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let path = match self.shared.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(errno(e)),
        };
        self.spawn(|s| async move {
            match s.entry(&path).await {
                Ok(a) => reply.entry(&s.ttl, &a, Generation(0)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.shared.inodes).forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.spawn(|s| async move {
            match s.getattr(ino).await {
                Ok(a) => reply.attr(&s.ttl, &a),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Times are the cluster's (set when a file completes): setting them is accepted and
        // changes nothing, as on file systems mounted `noatime` for access times.
        self.spawn(|s| async move {
            match s.setattr(ino, mode, uid, gid, size).await {
                Ok(a) => reply.attr(&s.ttl, &a),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let path = match self.shared.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(errno(e)),
        };
        self.spawn(|s| async move {
            let mode = mode & !umask & 0o1777;
            match s.client.mkdir_mode(&path, false, Some(mode)).await {
                Ok(st) => reply.entry(&s.ttl, &s.learn(&path, &st), Generation(0)),
                Err(e) => reply.error(errno(errno_of(&e))),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let paths = self
            .shared
            .child(parent, name)
            .and_then(|a| Ok((a, self.shared.child(newparent, newname)?)));
        let (from, to) = match paths {
            Ok(p) => p,
            Err(e) => return reply.error(errno(e)),
        };
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        self.spawn(|s| async move {
            let r = if no_replace {
                s.client.rename_no_replace(&from, &to).await
            } else {
                s.client.rename(&from, &to).await
            };
            match r {
                Ok(()) => {
                    lock(&s.inodes).renamed(&from, &to);
                    reply.ok()
                }
                Err(e) => reply.error(errno(errno_of(&e))),
            }
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(|s| async move {
            match s.open(ino, flags).await {
                Ok((fh, f)) => reply.opened(fh, f),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.shared.handle(fh) {
            Ok(Handle::Read(r)) => r.read(offset, size, reply),
            Ok(_) => reply.error(Errno::EBADF),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let w = match self.shared.handle(fh) {
            Ok(Handle::Write(w)) => w,
            Ok(_) => return reply.error(Errno::EBADF),
            Err(e) => return reply.error(errno(e)),
        };
        let data = data.to_vec();
        self.spawn(|_| async move {
            match w.write(offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Every close(2) of a descriptor flushes, dup'd ones included: a shell's `> file`
        // opens, dup2()s and closes the first descriptor before anything is written. A file
        // that has no bytes yet therefore completes at release (the last close), one with
        // bytes at the first close, where an error still reaches the program.
        if let Ok(Handle::Write(w)) = self.shared.handle(fh) {
            if w.size() == 0 {
                return reply.ok();
            }
        }
        self.complete(fh, reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Bytes of a file being written are durable only once the file is complete: fsync
        // completes it (and later writes to the handle fail) rather than report a durability
        // it does not have.
        self.complete(fh, reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let h = lock(&self.shared.handles).remove(&fh.0);
        match h {
            Some(Handle::Write(w)) => {
                w.mark_released();
                self.spawn(|s| async move {
                    let _ = s.finish(&w).await;
                    reply.ok()
                })
            }
            _ => reply.ok(),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(|s| async move {
            match s.list(ino).await {
                Ok(entries) => {
                    let fh = s.add_handle(Handle::Dir(Arc::new(entries)));
                    reply.opened(fh, FopenFlags::empty())
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.shared.handle(fh) {
            Ok(Handle::Dir(d)) => d,
            Ok(_) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(errno(e)),
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, e) in entries.iter().enumerate().skip(start) {
            if reply.add(INodeNo(e.ino), i as u64 + 1, e.kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.shared.handles).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Namespace changes are durable (in the Raft log of a majority) before they are
        // acknowledged.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.spawn(|s| async move {
            match s.statfs().await {
                Ok([cap, free, files, ffree]) => {
                    let b = 4096u64;
                    reply.statfs(
                        cap / b,
                        free / b,
                        free / b,
                        files,
                        ffree,
                        b as u32,
                        super::inodes::NAME_MAX as u32,
                        b as u32,
                    )
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let path = match self.shared.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(errno(e)),
        };
        self.spawn(|s| async move {
            let exclusive = flags & libc::O_EXCL != 0;
            match s.start_write(None, &path, mode & !umask, exclusive).await {
                Ok((slot, fh)) => {
                    lock(&s.inodes).remember(slot.ino, &path);
                    let a = pending_attr(slot.ino, 0, slot.mode(), &s.ids, slot.since);
                    reply.created(&s.ttl, &a, Generation(0), fh, FopenFlags::empty())
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }
}

impl ShaleFs {
    fn remove(&self, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let path = match self.shared.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(errno(e)),
        };
        self.spawn(|s| async move {
            match s.client.delete(&path, false).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(errno_of(&e))),
            }
        });
    }

    /// flush/fsync: a file being written is completed; anything else has nothing to do.
    fn complete(&self, fh: FileHandle, reply: ReplyEmpty) {
        match self.shared.handle(fh) {
            Ok(Handle::Write(w)) => self.spawn(|s| async move {
                match s.finish(&w).await {
                    Ok(_) => reply.ok(),
                    Err(e) => reply.error(errno(e)),
                }
            }),
            _ => reply.ok(),
        }
    }
}
