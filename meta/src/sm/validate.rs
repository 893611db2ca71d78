//! Invariants of the master state, checked after every apply in debug builds and by tests.
use super::{InodeKind, MetaState, ROOT};
use shale_proto::InodeId;
use std::collections::HashSet;

impl MetaState {
    /// Every invariant, or the first one broken.
    pub fn validate(&self) -> Result<(), String> {
        // Security: bindings only for registered servers; keys bounded, ids increasing.
        if let Some(n) = self
            .security
            .server_principals
            .keys()
            .find(|n| !self.servers.contains_key(n))
        {
            return Err(format!(
                "chunkserver {n} is bound to a principal but not registered"
            ));
        }
        let keys = &self.security.token_keys;
        if keys.len() > super::security::TOKEN_KEYS_MAX
            || keys.windows(2).any(|w| w[0].id >= w[1].id)
            || keys
                .iter()
                .any(|k| k.secret.len() != super::security::TOKEN_KEY_BYTES)
        {
            return Err("token keys out of order, too many, or of the wrong size".into());
        }
        if let Some(c) = self
            .security
            .digests
            .keys()
            .find(|c| !self.chunks.contains_key(c))
        {
            return Err(format!("chunk {c} has a digest but is not live"));
        }
        let root = self.inodes.get(&ROOT).ok_or("no root")?;
        if root.parent != ROOT || !matches!(root.kind, InodeKind::Dir(_)) {
            return Err("root must be a directory that is its own parent".into());
        }
        // Every linked inode is reached exactly once from the root, with the right parent.
        let mut seen: HashSet<InodeId> = HashSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(dir) = stack.pop() {
            let Some(InodeKind::Dir(entries)) = self.inodes.get(&dir).map(|i| &i.kind) else {
                continue;
            };
            for (name, child) in entries.iter() {
                let c = self
                    .inodes
                    .get(child)
                    .ok_or_else(|| format!("entry {name} of {dir} points to missing {child}"))?;
                if c.parent != dir {
                    return Err(format!(
                        "{child} ({name}) has parent {} not {dir}",
                        c.parent
                    ));
                }
                if !seen.insert(*child) {
                    return Err(format!("{child} is linked twice"));
                }
                if matches!(c.kind, InodeKind::Dir(_)) {
                    stack.push(*child);
                }
                if self.pending.contains_key(child) {
                    return Err(format!("{child} is linked but under construction"));
                }
            }
        }
        for (f, p) in &self.pending {
            let Some(InodeKind::File(_)) = self.inodes.get(f).map(|i| &i.kind) else {
                return Err(format!("pending {f} is not a file inode"));
            };
            if !matches!(
                self.inodes.get(&p.parent).map(|i| &i.kind),
                Some(InodeKind::Dir(_))
            ) {
                return Err(format!("pending {f} has no directory {}", p.parent));
            }
            if self.pending_names.get(&(p.parent, p.name.clone())) != Some(f) {
                return Err(format!("pending {f} missing from the name index"));
            }
        }
        if self.pending_names.len() != self.pending.len() {
            return Err("pending name index out of step".into());
        }
        // Beyond the live tree: unlinked inodes snapshots keep. Nothing else.
        let live = seen;
        self.check_refs(&live)?;
        self.check_appends()?;
        // Chunks: each live chunk belongs to exactly the file and index that list it.
        let mut listed = 0usize;
        for (id, inode) in &self.inodes {
            let InodeKind::File(f) = &inode.kind else {
                continue;
            };
            for (k, c) in f.chunks.iter().enumerate() {
                let m = self
                    .chunks
                    .get(c)
                    .ok_or_else(|| format!("{id} lists missing {c}"))?;
                if m.file != *id || m.index as usize != k {
                    return Err(format!(
                        "{c} says {}#{} but {id}#{k} lists it",
                        m.file, m.index
                    ));
                }
                if self.garbage.contains_key(c) {
                    return Err(format!("live {c} is also garbage"));
                }
                if c.get() >= self.next_chunk {
                    return Err(format!("{c} is not below next_chunk"));
                }
            }
            listed += f.chunks.len();
            if !self.pending.contains_key(id) && !self.appends.contains_key(id) {
                let n = f.chunks.len() as u64;
                let cs = inode.chunk_size_bytes();
                let ok = (n == 0 && f.length == 0)
                    || (n > 0 && f.length > (n - 1) * cs && f.length <= n * cs);
                if !ok {
                    return Err(format!("{id}: length {} does not fit {n} chunks", f.length));
                }
            }
            if id.get() >= self.next_inode {
                return Err(format!("{id} is not below next_inode"));
            }
        }
        if listed != self.chunks.len() {
            return Err(format!(
                "{} chunks, {listed} listed by files",
                self.chunks.len()
            ));
        }
        self.sessions.check_invariants()?;
        let dirs = self
            .inodes
            .values()
            .filter(|i| matches!(i.kind, InodeKind::Dir(_)))
            .count() as u64;
        if dirs != self.dirs {
            return Err(format!(
                "{dirs} directories, but the count says {}",
                self.dirs
            ));
        }
        self.check_quotas(&live)?;
        if let Some((id, _)) = self
            .trash
            .iter()
            .find(|(id, t)| !self.inodes.contains_key(id) || t.user as usize >= self.perms.len())
        {
            return Err(format!(
                "trash item {id} is not a live inode of a known user"
            ));
        }
        // Permissions: names known, modes in range.
        self.perms.validate()?;
        let names = self.perms.len() as u32;
        if let Some((id, _)) = self.inodes.iter().find(|(_, i)| {
            i.dir_replication > super::REPLICATION_MAX
                || (i.dir_replication != 0 && !matches!(i.kind, InodeKind::Dir(_)))
        }) {
            return Err(format!("{id} has a bad directory replication"));
        }
        if let Some((id, i)) = self.inodes.iter().find(|(_, i)| {
            i.attrs.owner >= names
                || i.attrs.group >= names
                || i.attrs.mode > super::perms::MODE_MAX
        }) {
            return Err(format!("{id} has bad attributes {:?}", i.attrs));
        }
        Ok(())
    }
}
