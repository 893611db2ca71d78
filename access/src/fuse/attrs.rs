//! What the kernel sees of a cluster entry: attributes, owner ids, and errno for each error.
//!
//! Owners in the cluster are names, not numbers. The mount shows the cluster identity it runs
//! as (the user of its certificate or token) as the local user who mounted it, like sshfs's
//! `idmap=user`; any other name as the local account of that name in `/etc/passwd` and
//! `/etc/group`, read once at mount time; names with no local account as `nobody` (65534). A
//! `chown` maps back the same way, and a number with no name is refused (`EINVAL`).
use fuser::{FileAttr, FileType, INodeNo};
use shale_client::{ClientError, FileStat};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The id shown for a name with no local account.
pub const NOBODY: u32 = 65534;

/// The I/O size `stat` suggests: programs such as `cp` size their buffers by it.
pub const BLKSIZE: u32 = 1 << 20;

/// Names ↔ local numeric ids.
#[derive(Debug, Default, Clone)]
pub struct Ids {
    /// The cluster identity the mount acts as, and the local ids shown for it.
    pub me: String,
    pub my_uid: u32,
    pub my_gid: u32,
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

impl Ids {
    /// The mapping for identity `me` shown as `my_uid`/`my_gid`, with the local accounts in
    /// `passwd` and `group` (the text of `/etc/passwd` and `/etc/group`).
    pub fn new(me: &str, my_uid: u32, my_gid: u32, passwd: &str, group: &str) -> Ids {
        Ids {
            me: me.to_string(),
            my_uid,
            my_gid,
            users: parse_ids(passwd),
            groups: parse_ids(group),
        }
    }

    /// [`Ids::new`] with this machine's account files.
    pub fn local(me: &str) -> Ids {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        // SAFETY: getuid and getgid cannot fail and touch no memory of ours.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Ids::new(me, uid, gid, &read("/etc/passwd"), &read("/etc/group"))
    }

    pub fn uid_of(&self, owner: &str) -> u32 {
        if owner == self.me {
            return self.my_uid;
        }
        self.users.get(owner).copied().unwrap_or(NOBODY)
    }

    pub fn gid_of(&self, group: &str) -> u32 {
        if group == self.me {
            return self.my_gid;
        }
        self.groups.get(group).copied().unwrap_or(NOBODY)
    }

    /// The cluster name for local user id `uid`.
    pub fn user_named(&self, uid: u32) -> Option<String> {
        if uid == self.my_uid {
            return Some(self.me.clone());
        }
        self.users
            .iter()
            .find(|(_, &id)| id == uid)
            .map(|(n, _)| n.clone())
    }

    /// The cluster name for local group id `gid`.
    pub fn group_named(&self, gid: u32) -> Option<String> {
        if gid == self.my_gid {
            return Some(self.me.clone());
        }
        self.groups
            .iter()
            .find(|(_, &id)| id == gid)
            .map(|(n, _)| n.clone())
    }
}

/// `name:x:id:...` lines → name → id (malformed lines skipped).
fn parse_ids(text: &str) -> HashMap<String, u32> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?.trim();
            let id = f.nth(1)?.trim().parse().ok()?;
            (!name.is_empty() && !name.starts_with('#')).then(|| (name.to_string(), id))
        })
        .collect()
}

/// The kernel's view of `st` as inode `ino`.
pub fn attr_of(st: &FileStat, ino: u64, ids: &Ids) -> FileAttr {
    let t = UNIX_EPOCH + Duration::from_millis(st.mtime_ms);
    let (kind, default_mode, nlink) = if st.is_dir {
        (FileType::Directory, 0o755, 2)
    } else {
        (FileType::RegularFile, 0o644, 1)
    };
    let perm = if st.mode == 0 {
        default_mode
    } else {
        (st.mode & 0o7777) as u16
    };
    let size = if st.is_dir { 0 } else { st.length };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind,
        perm,
        nlink,
        uid: ids.uid_of(&st.owner),
        gid: ids.gid_of(&st.group),
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// A file being written through the mount: `size` bytes so far.
pub fn pending_attr(ino: u64, size: u64, mode: u32, ids: &Ids, since: SystemTime) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: since,
        mtime: since,
        ctime: since,
        crtime: since,
        kind: FileType::RegularFile,
        perm: (mode & 0o7777) as u16,
        nlink: 1,
        uid: ids.my_uid,
        gid: ids.my_gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The errno a failed call becomes.
pub fn errno_of(e: &ClientError) -> i32 {
    match e {
        ClientError::NotFound(_) => libc::ENOENT,
        ClientError::AlreadyExists(_) => libc::EEXIST,
        ClientError::InvalidArgument(m) if m.contains("too long") => libc::ENAMETOOLONG,
        ClientError::InvalidArgument(_) => libc::EINVAL,
        ClientError::PermissionDenied(_) | ClientError::Unauthenticated(_) => libc::EACCES,
        ClientError::ResourceExhausted(_) => libc::ENOSPC,
        ClientError::FailedPrecondition(m) => {
            if m.ends_with("not a directory") {
                libc::ENOTDIR
            } else if m.ends_with("is a directory") {
                libc::EISDIR
            } else if m.ends_with("directory not empty") {
                libc::ENOTEMPTY
            } else if m.contains("own subtree") {
                libc::EINVAL
            } else if m.contains("root directory") || m.contains("under construction") {
                libc::EBUSY
            } else {
                libc::EPERM
            }
        }
        ClientError::Unavailable(_) => libc::ETIMEDOUT,
        ClientError::Io(io) => io.raw_os_error().unwrap_or(libc::EIO),
        _ => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Ids {
        Ids::new(
            "admin",
            1000,
            1000,
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/sh\nbad line\n",
            "root:x:0:\nstaff:x:50:alice\n",
        )
    }

    #[test]
    fn names_map_to_local_ids_and_back() {
        let i = ids();
        assert_eq!(i.uid_of("admin"), 1000);
        assert_eq!(i.uid_of("alice"), 1001);
        assert_eq!(i.uid_of("root"), 0);
        assert_eq!(i.uid_of("mallory"), NOBODY);
        assert_eq!(i.gid_of("staff"), 50);
        assert_eq!(i.gid_of("admin"), 1000);
        assert_eq!(i.user_named(1001).as_deref(), Some("alice"));
        assert_eq!(i.user_named(1000).as_deref(), Some("admin"));
        assert_eq!(i.user_named(4242), None);
        assert_eq!(i.group_named(50).as_deref(), Some("staff"));
    }

    #[test]
    fn stats_become_attributes() {
        let i = ids();
        let f = FileStat {
            name: "f".into(),
            inode: 9,
            length: 1025,
            mtime_ms: 1_500,
            owner: "alice".into(),
            group: "staff".into(),
            mode: 0o640,
            ..Default::default()
        };
        let a = attr_of(&f, 9, &i);
        assert_eq!(
            (a.ino, a.size, a.blocks, a.perm),
            (INodeNo(9), 1025, 3, 0o640)
        );
        assert_eq!(
            (a.kind, a.uid, a.gid, a.nlink),
            (FileType::RegularFile, 1001, 50, 1)
        );
        assert_eq!(a.mtime, UNIX_EPOCH + Duration::from_millis(1500));
        let d = FileStat {
            is_dir: true,
            entries: 3,
            ..Default::default()
        };
        let a = attr_of(&d, 1, &i);
        assert_eq!((a.kind, a.perm, a.size), (FileType::Directory, 0o755, 0));
    }

    #[test]
    fn errors_become_errnos() {
        let fp = |m: &str| ClientError::FailedPrecondition(m.into());
        assert_eq!(errno_of(&ClientError::NotFound("x".into())), libc::ENOENT);
        assert_eq!(errno_of(&fp("/a: directory not empty")), libc::ENOTEMPTY);
        assert_eq!(errno_of(&fp("/a: not a directory")), libc::ENOTDIR);
        assert_eq!(errno_of(&fp("/a: is a directory")), libc::EISDIR);
        assert_eq!(
            errno_of(&ClientError::PermissionDenied("no".into())),
            libc::EACCES
        );
        assert_eq!(
            errno_of(&ClientError::ResourceExhausted("full".into())),
            libc::ENOSPC
        );
    }
}
