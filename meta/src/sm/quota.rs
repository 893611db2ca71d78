//! Directory quotas: limits on the bytes and on the names (files and directories) below a
//! directory, enforced by `apply` and accounted exactly.
//!
//! * A quota directory keeps its usage: every file and directory strictly below it counts one
//!   name (files under construction too); a complete file counts its length in bytes, a file
//!   under construction its allocated chunks at full chunk size (a reservation, as HDFS does:
//!   `Complete` then charges the real length). Bytes are logical, not multiplied by replication
//!   (as CephFS and MooseFS's `length` quotas).
//! * Usage is changed where the tree changes, by [`MetaState::charge`], which walks the parent
//!   links from the changed inode's directory to the root and adjusts every quota directory on
//!   the way: O(depth), and nothing at all when no quota is set.
//! * Limits are checked before anything changes (a refused command changes nothing): `mkdir`
//!   and `create` need room for their names, `AllocateChunk` of a new chunk for a full chunk,
//!   `Rename` for the moved tree in every quota directory it enters. Replacing a file (create
//!   with overwrite of an existing file) adds no name when it completes, so it is not refused
//!   for names. A limit set below the usage refuses growth, never removes anything.
//! * A rename between directories under different quotas moves the tree's usage: computed by
//!   one walk of the tree (its files under construction found through their directories), or
//!   read from the tree's root when that is a quota directory itself.
//! * [`MetaState::validate`] recomputes every quota directory's usage from the tree.
use super::*;

/// Limits and usage of one quota directory.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Most bytes below (None: no limit).
    pub max_bytes: Option<u64>,
    /// Most names (files and directories) below (None: no limit).
    pub max_names: Option<u64>,
    pub used: Usage,
}

/// What a tree is charged: names (files and directories, counted once each) and bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub names: u64,
    pub bytes: u64,
}

impl Usage {
    pub fn new(names: u64, bytes: u64) -> Usage {
        Usage { names, bytes }
    }

    fn add(&mut self, o: Usage) {
        self.names = self.names.saturating_add(o.names);
        self.bytes = self.bytes.saturating_add(o.bytes);
    }

    fn sub(&mut self, o: Usage) {
        self.names = self.names.saturating_sub(o.names);
        self.bytes = self.bytes.saturating_sub(o.bytes);
    }
}

/// What `quota get` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaView {
    pub path: String,
    pub quota: Quota,
}

fn exceeded(path: &str, what: &str, max: u64, used: u64, more: u64) -> MetaError {
    MetaError::QuotaExceeded(format!(
        "quota of {path} exceeded: at most {max} {what}, {used} used, {more} more needed"
    ))
}

impl MetaState {
    /// The bytes inode `i` (numbered `id`) is charged if a file (see the module doc); 0 for
    /// a directory.
    pub(super) fn file_bytes(&self, id: InodeId, i: &Inode) -> u64 {
        match &i.kind {
            InodeKind::File(f) if self.pending.contains_key(&id) => {
                (f.chunks.len() as u64) << i.chunk_size_log2
            }
            InodeKind::File(f) => f.length,
            InodeKind::Dir(_) => 0,
        }
    }

    /// The quota directories from `dir` up to the root, nearest first (empty, and no walk,
    /// when no quota is set). Bounded by the number of inodes (parent links have no cycles).
    pub(super) fn quota_chain(&self, dir: InodeId) -> Vec<InodeId> {
        if self.quotas.is_empty() {
            return Vec::new();
        }
        self.ancestors(dir)
            .filter(|a| self.quotas.contains_key(a))
            .collect()
    }

    /// Adds `add` to (or, with `remove`, takes it from) every quota directory from `dir` up.
    pub(super) fn charge(&mut self, dir: InodeId, u: Usage, remove: bool) {
        for q in self.quota_chain(dir) {
            if let Some(q) = self.quotas.get_mut(&q) {
                if remove {
                    q.used.sub(u);
                } else {
                    q.used.add(u);
                }
            }
        }
    }

    /// QUOTA_EXCEEDED unless every quota directory from `dir` up, other than those in
    /// `except`, has room for `add` once `credit` is freed.
    pub(super) fn check_room(
        &self,
        dir: InodeId,
        add: Usage,
        credit: Usage,
        except: &[InodeId],
    ) -> Res<()> {
        if self.quotas.is_empty() || (add.names == 0 && add.bytes == 0) {
            return Ok(());
        }
        for id in self.quota_chain(dir) {
            if except.contains(&id) {
                continue;
            }
            let Some(q) = self.quotas.get(&id) else {
                continue;
            };
            let mut used = q.used;
            used.sub(credit);
            if let Some(max) = q.max_names {
                if add.names > 0 && used.names.saturating_add(add.names) > max {
                    let p = self.path_of(id);
                    return Err(exceeded(&p, "names", max, q.used.names, add.names));
                }
            }
            if let Some(max) = q.max_bytes {
                if add.bytes > 0 && used.bytes.saturating_add(add.bytes) > max {
                    let p = self.path_of(id);
                    return Err(exceeded(&p, "bytes", max, q.used.bytes, add.bytes));
                }
            }
        }
        Ok(())
    }

    /// The usage of the tree at `id`, the root itself included (one name), with the files
    /// under construction in it. Iterative.
    pub(super) fn tree_usage(&self, id: InodeId) -> Usage {
        if let Some(q) = self.quotas.get(&id) {
            return Usage::new(q.used.names.saturating_add(1), q.used.bytes);
        }
        let mut u = Usage::default();
        let mut dirs = std::collections::HashSet::new();
        let mut stack = vec![id];
        while let Some(cur) = stack.pop() {
            let Some(i) = self.inodes.get(&cur) else {
                continue;
            };
            u.names += 1;
            match &i.kind {
                InodeKind::File(_) => u.bytes = u.bytes.saturating_add(self.file_bytes(cur, i)),
                InodeKind::Dir(e) => {
                    dirs.insert(cur);
                    stack.extend(e.values().copied());
                }
            }
        }
        for (f, p) in &self.pending {
            if dirs.contains(&p.parent) {
                if let Some(
                    i @ Inode {
                        kind: InodeKind::File(_),
                        ..
                    },
                ) = self.inodes.get(f)
                {
                    u.add(Usage::new(1, self.file_bytes(*f, i)));
                }
            }
        }
        u
    }

    /// An inode's path, for messages (scans each parent's entries for its name).
    pub(super) fn path_of(&self, id: InodeId) -> String {
        let mut names = Vec::new();
        let mut cur = id;
        for _ in 0..=self.inodes.len() {
            if cur == ROOT {
                break;
            }
            let Some(parent) = self.inodes.get(&cur).map(|i| i.parent) else {
                break;
            };
            let name = self
                .entries(parent)
                .and_then(|e| {
                    e.iter()
                        .find(|(_, c)| **c == cur)
                        .map(|(n, _)| n.to_string())
                })
                .unwrap_or_else(|| format!("<inode {cur}>"));
            names.push(name);
            cur = parent;
        }
        names.reverse();
        format!("/{}", names.join("/"))
    }

    /// Sets (or, with neither limit, clears) the quota of directory `p`. Superusers only;
    /// walks the tree once to learn its usage.
    pub(super) fn set_quota(
        &mut self,
        p: &str,
        max_bytes: Option<u64>,
        max_names: Option<u64>,
        who: &Actor,
    ) -> Res<Reply> {
        if !who.superuser {
            return Err(MetaError::Denied(format!(
                "user={} may not set quotas (superusers only)",
                who.name
            )));
        }
        let id = self.resolve(&path::components(p)?, who)?;
        if !self.is_dir(id) {
            return Err(MetaError::NotADirectory(p.to_string()));
        }
        if max_bytes.is_none() && max_names.is_none() {
            self.quotas.remove(&id);
            return Ok(Reply::Done);
        }
        let used = match self.quotas.get(&id) {
            Some(q) => q.used,
            None => {
                let mut u = self.tree_usage(id);
                u.names -= 1;
                u
            }
        };
        self.quotas.insert(
            id,
            Quota {
                max_bytes,
                max_names,
                used,
            },
        );
        Ok(Reply::Done)
    }

    /// The quota of directory `p` (None: it has none), as anyone who may stat it.
    pub fn quota_as(&self, p: &str, who: &Who) -> Result<Option<Quota>, MetaError> {
        let actor = self.actor(who);
        let id = self.resolve(&path::components(p)?, &actor)?;
        if !self.is_dir(id) {
            return Err(MetaError::NotADirectory(p.to_string()));
        }
        Ok(self.quotas.get(&id).copied())
    }

    /// Every quota directory with its path (for `quota ls`), at most `limit`.
    pub fn quotas(&self, limit: usize) -> Vec<QuotaView> {
        let mut v: Vec<QuotaView> = self
            .quotas
            .iter()
            .take(limit)
            .map(|(id, q)| QuotaView {
                path: self.path_of(*id),
                quota: *q,
            })
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// Recomputes every quota directory's usage from the tree (for `validate`): one pass over
    /// the inodes, each charged to the quota directories above it.
    pub(super) fn check_quotas(
        &self,
        live: &std::collections::HashSet<InodeId>,
    ) -> Result<(), String> {
        if self.quotas.is_empty() {
            return Ok(());
        }
        let mut got: HashMap<InodeId, Usage> = HashMap::new();
        for (id, i) in &self.inodes {
            if *id == ROOT || !(live.contains(id) || self.pending.contains_key(id)) {
                continue;
            }
            let u = match &i.kind {
                InodeKind::File(_) => Usage::new(1, self.file_bytes(*id, i)),
                InodeKind::Dir(_) => Usage::new(1, 0),
            };
            for q in self.quota_chain(i.parent) {
                got.entry(q).or_default().add(u);
            }
        }
        for (id, q) in &self.quotas {
            if !self.is_dir(*id) || !live.contains(id) {
                return Err(format!("quota on {id}, which is not a live directory"));
            }
            let want = got.get(id).copied().unwrap_or_default();
            if want != q.used {
                return Err(format!(
                    "quota of {id} says {:?} used, the tree holds {want:?}",
                    q.used
                ));
            }
        }
        Ok(())
    }
}

/// Snapshot format 6's quota part: (directory, quota) pairs.
pub fn encode_section(state: &MetaState, body: Vec<u8>) -> postcard::Result<Vec<u8>> {
    let v: Vec<(InodeId, Quota)> = state.quotas.iter().map(|(i, q)| (*i, *q)).collect();
    postcard::to_extend(&v, body)
}

/// Reads the part [`encode_section`] wrote; the bytes after it.
pub fn decode_section<'b>(state: &mut MetaState, bytes: &'b [u8]) -> postcard::Result<&'b [u8]> {
    let (v, rest): (Vec<(InodeId, Quota)>, _) = postcard::take_from_bytes(bytes)?;
    state.quotas = v.into_iter().collect();
    Ok(rest)
}
