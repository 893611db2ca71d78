//! The mount's inode table: which cluster path each inode number the kernel holds stands for.
//!
//! Invariants:
//! * Inode numbers are the cluster's inode ids (the root is 1 in both), so a file replaced under
//!   a name gets a new number and the kernel drops what it cached for the old one. Files being
//!   written through this mount have no cluster id yet: they get numbers from [`PENDING_BASE`]
//!   up, which cluster ids never reach.
//! * An entry lives while the kernel holds lookups on it (`forget` drops them); the root is
//!   never forgotten. The table therefore holds at most what the kernel caches.
//! * A rename moves the paths of the entry and of every remembered entry below it; the work is
//!   one pass over the table (bounded by what the kernel caches), never a walk of the cluster.
use std::collections::HashMap;
use std::ffi::OsStr;

/// The root directory's inode number (FUSE's and the cluster's).
pub const ROOT: u64 = 1;

/// First inode number of files being written through the mount (no cluster id yet).
pub const PENDING_BASE: u64 = 1 << 62;

/// The longest name in a path component (as POSIX `NAME_MAX`).
pub const NAME_MAX: usize = 255;

#[derive(Debug)]
struct Node {
    path: String,
    lookups: u64,
}

/// Inode number → path, with the kernel's lookup counts.
#[derive(Debug)]
pub struct Inodes {
    nodes: HashMap<u64, Node>,
}

impl Default for Inodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Inodes {
    /// A table holding only the root.
    pub fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                path: "/".into(),
                lookups: 1,
            },
        );
        Inodes { nodes }
    }

    /// The path inode `ino` stands for.
    pub fn path(&self, ino: u64) -> Option<&str> {
        self.nodes.get(&ino).map(|n| n.path.as_str())
    }

    /// The path of `name` in directory `parent`, or why there is none (`ENOENT` for an unknown
    /// parent, `EINVAL` for a name that is not UTF-8 or holds a `/` or NUL, `ENAMETOOLONG`).
    pub fn child(&self, parent: u64, name: &OsStr) -> Result<String, i32> {
        let dir = self.path(parent).ok_or(libc::ENOENT)?;
        let name = name.to_str().ok_or(libc::EINVAL)?;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(libc::EINVAL);
        }
        if name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        Ok(join(dir, name))
    }

    /// Records one kernel lookup of `ino` at `path` (the path moves if it changed).
    pub fn remember(&mut self, ino: u64, path: &str) {
        let n = self.nodes.entry(ino).or_insert_with(|| Node {
            path: String::new(),
            lookups: 0,
        });
        if n.path != path {
            n.path = path.to_string();
        }
        n.lookups = n.lookups.saturating_add(1);
    }

    /// The kernel dropped `n` lookups of `ino`; the entry goes when none are left.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                self.nodes.remove(&ino);
            }
        }
    }

    /// `from` was renamed to `to`: every remembered entry at or below `from` moves.
    pub fn renamed(&mut self, from: &str, to: &str) {
        for n in self.nodes.values_mut() {
            if n.path == from {
                n.path = to.to_string();
            } else if let Some(rest) = n.path.strip_prefix(from) {
                if rest.starts_with('/') {
                    n.path = format!("{to}{rest}");
                }
            }
        }
    }

    /// How many entries the table holds (the root included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether only the root is left.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }
}

/// `dir` + `/` + `name`.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_joined_and_bad_names_refused() {
        let mut t = Inodes::new();
        assert_eq!(t.child(ROOT, OsStr::new("a")).unwrap(), "/a");
        t.remember(7, "/a");
        assert_eq!(t.child(7, OsStr::new("b")).unwrap(), "/a/b");
        assert_eq!(t.child(8, OsStr::new("b")), Err(libc::ENOENT));
        for bad in ["", ".", "..", "a/b"] {
            assert_eq!(t.child(ROOT, OsStr::new(bad)), Err(libc::EINVAL), "{bad:?}");
        }
        let long = "x".repeat(NAME_MAX + 1);
        assert_eq!(t.child(ROOT, OsStr::new(&long)), Err(libc::ENAMETOOLONG));
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(t.child(ROOT, OsStr::from_bytes(b"\xff")), Err(libc::EINVAL));
    }

    #[test]
    fn entries_live_while_the_kernel_holds_lookups() {
        let mut t = Inodes::new();
        t.remember(5, "/f");
        t.remember(5, "/f");
        t.forget(5, 1);
        assert_eq!(t.path(5), Some("/f"));
        t.forget(5, 1);
        assert_eq!(t.path(5), None);
        t.forget(ROOT, 100);
        assert_eq!(t.path(ROOT), Some("/"));
        assert!(t.is_empty());
    }

    #[test]
    fn a_rename_moves_the_subtree_and_nothing_else() {
        let mut t = Inodes::new();
        t.remember(2, "/a");
        t.remember(3, "/a/b");
        t.remember(4, "/a/b/c");
        t.remember(5, "/ab");
        t.renamed("/a", "/z/y");
        assert_eq!(t.path(2), Some("/z/y"));
        assert_eq!(t.path(3), Some("/z/y/b"));
        assert_eq!(t.path(4), Some("/z/y/b/c"));
        assert_eq!(t.path(5), Some("/ab"));
        // A path seen under a new name moves with the next lookup.
        t.remember(5, "/moved");
        assert_eq!(t.path(5), Some("/moved"));
        assert_eq!(t.len(), 5);
    }
}
