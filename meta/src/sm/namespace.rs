//! The namespace: directories, rename, delete, replication settings.
//!
//! Every walk here is iterative (explicit stacks or parent links): a tree may be arbitrarily
//! deep (renames nest trees deeper than any one path can name), and a committed entry must never
//! be able to overflow the stack of `apply`.
use super::*;

impl MetaState {
    pub(super) fn mkdir(
        &mut self,
        p: &str,
        parents: bool,
        mode: u16,
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        let comps = path::components(p)?;
        self.check_new_attrs(who, mode)?;
        let mut cur = ROOT;
        let mut k = 0;
        while k < comps.len() {
            let Some(entries) = self.entries(cur) else {
                return Err(MetaError::NotADirectory(format!(
                    "/{}",
                    comps[..k].join("/")
                )));
            };
            self.require(cur, who, perms::EXEC, || {
                format!("/{}", comps[..k].join("/"))
            })?;
            if comps[k] == snaps::SNAPSHOT_DIR && self.snaps.roots.contains_key(&cur) {
                return Err(MetaError::BadArgument(format!(
                    "/{}: snapshots are read-only",
                    comps[..=k].join("/")
                )));
            }
            match entries.get(comps[k]) {
                Some(id) => cur = *id,
                None => break,
            }
            k += 1;
        }
        if k == comps.len() {
            return match (parents, self.is_dir(cur)) {
                (true, true) => Ok(Reply::Inode(cur)),
                (_, false) => Err(MetaError::NotADirectory(p.to_string())),
                (false, true) => Err(MetaError::AlreadyExists(p.to_string())),
            };
        }
        if !self.is_dir(cur) {
            return Err(MetaError::NotADirectory(format!(
                "/{}",
                comps[..k].join("/")
            )));
        }
        if k + 1 < comps.len() && !parents {
            return Err(MetaError::NotFound(format!("/{}", comps[..=k].join("/"))));
        }
        self.require(cur, who, perms::WRITE | perms::EXEC, || {
            format!("/{}", comps[..k].join("/"))
        })?;
        for name in &comps[k..] {
            self.check_new_name(p, name)?;
        }
        let made = Usage::new((comps.len() - k) as u64, 0);
        self.check_room(cur, made, Usage::default(), &[])?;
        self.charge(cur, made, false);
        let last = comps.len() - 1;
        for (j, name) in comps.iter().enumerate().skip(k) {
            let id = self.alloc_inode();
            // Parents made on the way stay usable by their maker (as `mkdir -p`).
            let m = if j == last { mode } else { mode | 0o300 };
            let attrs = self.new_attrs(who, cur, m);
            self.inodes.insert(
                id,
                Inode {
                    parent: cur,
                    mtime_ms: now_ms,
                    kind: InodeKind::Dir(Box::default()),
                    attrs,
                    dir_replication: 0,
                    replication: 0,
                    chunk_size_log2: 0,
                },
            );
            self.dirs += 1;
            self.born_dir(id);
            if let Some(e) = self.entries_mut(cur) {
                e.insert((*name).into(), id);
            }
            self.touch(cur, now_ms);
            cur = id;
        }
        Ok(Reply::Inode(cur))
    }

    /// Unlinks one inode (a file, or an empty or recursive directory) from the live tree:
    /// its usage leaves the quotas above, and it drops its live reference (`drop_ref`: freed,
    /// chunks to garbage, unless a snapshot still shows it). The caller removes the entry;
    /// files under construction in the tree must be dropped first (`remove_tree`).
    pub(super) fn remove_inode(&mut self, id: InodeId) {
        let Some(parent) = self.inodes.get(&id).map(|i| i.parent) else {
            return;
        };
        if !self.pending.contains_key(&id) {
            // The entry is about to go: snapshots that see the directory keep it.
            self.cow_dir(parent);
        }
        if !self.quota_chain(parent).is_empty() {
            let u = self.tree_usage(id);
            self.charge(parent, u, true);
        }
        self.drop_ref(id, true);
    }

    pub(super) fn rename(
        &mut self,
        src: &str,
        dst: &str,
        replace: bool,
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        let sc = path::components(src)?;
        let dc = path::components(dst)?;
        if sc.is_empty() || dc.is_empty() {
            return Err(MetaError::Root);
        }
        let id = self.resolve(&sc, who)?;
        let (src_dir, src_name) = self.parent_dir(src, who)?;
        let (dst_dir, dst_name) = self.parent_dir(dst, who)?;
        self.check_new_name(dst, dst_name)?;
        if self.is_dir(id) {
            let mut cur = dst_dir;
            loop {
                if cur == id {
                    return Err(MetaError::IntoOwnSubtree {
                        src: src.to_string(),
                        dst: dst.to_string(),
                    });
                }
                if cur == ROOT {
                    break;
                }
                cur = self.inodes.get(&cur).map_or(ROOT, |i| i.parent);
            }
        }
        let replaced = match self.entries(dst_dir).and_then(|e| e.get(dst_name)).copied() {
            Some(same) if same == id => return Ok(Reply::Done),
            Some(t) if !replace || self.is_dir(t) || self.is_dir(id) => {
                return Err(MetaError::AlreadyExists(dst.to_string()));
            }
            other => other,
        };
        self.require_unlink(src_dir, id, who, src)?;
        self.require(dst_dir, who, perms::WRITE | perms::EXEC, || {
            format!("{dst} (its directory)")
        })?;
        if let Some(old) = replaced {
            self.require_unlink(dst_dir, old, who, dst)?;
            self.require(old, who, perms::WRITE, || dst.to_string())?;
        }
        // Quotas: the tree's usage moves when the quota directories above differ; those it
        // enters must have room (less the file it replaces).
        let from = self.quota_chain(src_dir);
        let moved = (from != self.quota_chain(dst_dir)).then(|| self.tree_usage(id));
        if let Some(u) = moved {
            let credit = replaced.map_or(Usage::default(), |old| self.tree_usage(old));
            self.check_room(dst_dir, u, credit, &from)?;
        }
        if let Some(old) = replaced {
            self.remove_inode(old);
        }
        self.trash.remove(&id);
        self.pin(id, src_dir);
        if let Some(e) = self.entries_mut(src_dir) {
            e.remove(src_name);
        }
        if let Some(e) = self.entries_mut(dst_dir) {
            e.insert(dst_name.into(), id);
        }
        if let Some(i) = self.inodes.get_mut(&id) {
            i.parent = dst_dir;
        }
        if let Some(u) = moved {
            self.charge(src_dir, u, true);
            self.charge(dst_dir, u, false);
        }
        self.touch(src_dir, now_ms);
        self.touch(dst_dir, now_ms);
        Ok(Reply::Done)
    }

    pub(super) fn delete(
        &mut self,
        p: &str,
        recursive: bool,
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        let (id, dir, name) = self.removable(p, recursive, who)?;
        // Files being written inside the tree go with it.
        self.remove_tree(id);
        if let Some(e) = self.entries_mut(dir) {
            e.remove(name);
        }
        self.touch(dir, now_ms);
        Ok(Reply::Done)
    }

    /// Sets a file's replication, or a directory's default for new files below it.
    pub(super) fn set_replication(&mut self, p: &str, replication: u8, who: &Actor) -> Res<Reply> {
        let r = check_replication(replication)?;
        let id = self.resolve(&path::components(p)?, who)?;
        self.require(id, who, perms::WRITE, || p.to_string())?;
        match self.inodes.get_mut(&id) {
            Some(Inode {
                kind: InodeKind::File(_),
                replication,
                ..
            }) => *replication = r,
            Some(dir) => dir.dir_replication = r,
            None => return Err(MetaError::NotFound(p.to_string())),
        }
        Ok(Reply::Done)
    }

    /// The replication a new file in `dir` gets: the nearest directory default up to the root,
    /// else the cluster's (walks parent links: as deep as the tree, no deeper).
    pub(super) fn inherited_replication(&self, dir: InodeId) -> u8 {
        self.ancestors(dir)
            .filter_map(|a| self.inodes.get(&a))
            .map(|i| i.dir_replication)
            .find(|r| *r != 0)
            .unwrap_or(self.replication)
    }
}

/// Snapshot format 5's section: the directories with a replication default, as (inode,
/// replication) pairs (sparse: most directories inherit).
pub fn encode_dir_replication(state: &MetaState, body: Vec<u8>) -> postcard::Result<Vec<u8>> {
    let set: Vec<(InodeId, u8)> = state
        .inodes
        .iter()
        .filter(|(_, i)| i.dir_replication != 0)
        .map(|(id, i)| (*id, i.dir_replication))
        .collect();
    postcard::to_extend(&set, body)
}

/// Reads the section [`encode_dir_replication`] wrote into `state`; the bytes after it.
pub fn decode_dir_replication<'b>(
    state: &mut MetaState,
    bytes: &'b [u8],
) -> postcard::Result<&'b [u8]> {
    let (set, rest): (Vec<(InodeId, u8)>, _) = postcard::take_from_bytes(bytes)?;
    for (id, r) in set {
        if let Some(i) = state.inodes.get_mut(&id) {
            i.dir_replication = r;
        }
    }
    Ok(rest)
}
