//! Directory snapshots: instant, read-only, copy-on-write views of a directory tree as it was
//! (HDFS's snapshots), reached at `DIR/.snapshot/NAME/...`.
//!
//! * Taking one is O(1): it records (directory, name, epoch) where the epoch is a counter
//!   bumped by every snapshot. Nothing is copied.
//! * Copy on write, per directory: before a directory's entries change for the first time
//!   after a snapshot that may see it, the entries are copied into a *shadow* keyed by the
//!   current epoch (`cow` remembers the epoch a directory's shadows cover; a new directory
//!   starts at the current epoch: no older snapshot can see it). A snapshot of epoch E sees a
//!   directory through its smallest shadow keyed ≥ E, or its live entries if it has none (then
//!   it has not changed since E). Files are write-once, so a file inode is shared as it is.
//! * Which snapshots may see a directory: those rooted at it or above it (parent links), and,
//!   for a tree moved or trashed out from under a snapshot, a *pin* on the moved inode with the
//!   newest epoch that could see it there. Conservative: a copy too many costs memory, never
//!   correctness.
//! * References: an inode is referenced by every entry naming it, live or in a shadow (of a
//!   live or an unlinked directory). `refs` keeps the references beyond the first, sparsely. An
//!   unlinked tree releases one reference; an inode whose last one goes is freed (its entries
//!   and shadows release theirs; a file's chunks become garbage). So deleting a file a snapshot
//!   still shows keeps its chunks, and deleting the snapshot frees them.
//! * Deleting a snapshot drops the shadows no remaining snapshot reads (a shadow keyed L
//!   serves the epochs between the directory's previous shadow key and L).
//! * Snapshots are read-only; `.snapshot` is reserved for new names. A directory with snapshots
//!   (or a tree holding one) cannot be deleted or trashed until they are deleted; it can be
//!   renamed. The owner of a directory (or a superuser) takes and deletes its snapshots.
//! * Quotas count the live tree only: data kept only by snapshots is not charged.
use super::*;
use std::collections::HashSet;

/// The virtual directory under which a directory's snapshots appear.
pub const SNAPSHOT_DIR: &str = ".snapshot";
/// Most snapshots of one directory.
pub const SNAPSHOTS_PER_DIR_MAX: usize = 1024;
/// Most snapshots in all.
pub const SNAPSHOTS_MAX: usize = 65_536;

/// One snapshot.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snap {
    pub epoch: u64,
    pub created_ms: u64,
}

/// Everything snapshots add to the state (snapshot format 7).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapState {
    /// The newest epoch (0: no snapshot was ever taken).
    pub(crate) epoch: u64,
    /// Snapshots by directory, then name.
    pub(crate) roots: BTreeMap<InodeId, BTreeMap<Box<str>, Snap>>,
    /// Old entries of directories, by the epoch they were copied at.
    pub(crate) shadows: HashMap<InodeId, BTreeMap<u64, Entries>>,
    /// The epoch a directory's shadows cover (absent: 0).
    pub(crate) cow: HashMap<InodeId, u64>,
    /// The newest epoch that may see a moved inode where it was.
    pub(crate) pins: HashMap<InodeId, u64>,
    /// References beyond the first (absent: one).
    pub(crate) refs: HashMap<InodeId, u32>,
}

/// What a read path names.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An inode, live (None) or as snapshot epoch E saw it.
    At(InodeId, Option<u64>),
    /// `DIR/.snapshot`: the snapshots of DIR.
    Snapshots(InodeId),
}

/// One snapshot as `snapshot ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapView {
    pub name: String,
    pub created_ms: u64,
    pub stat: Stat,
}

fn check_name(name: &str) -> Res<()> {
    if name.is_empty()
        || name.len() > path::NAME_MAX_BYTES
        || name.contains('/')
        || name.contains('\0')
        || name == "."
        || name == ".."
    {
        return Err(MetaError::BadArgument(format!(
            "bad snapshot name {name:?}: 1 to 255 bytes, no `/`, not `.` or `..`"
        )));
    }
    Ok(())
}

impl MetaState {
    /// Refuses `.snapshot` as the name of a new entry.
    pub(super) fn check_new_name(&self, p: &str, name: &str) -> Res<()> {
        if name == SNAPSHOT_DIR {
            return Err(MetaError::InvalidPath {
                path: p.to_string(),
                why: format!("`{SNAPSHOT_DIR}` is reserved for snapshots"),
            });
        }
        Ok(())
    }

    /// The newest epoch of a snapshot that may see `dir` (0: none).
    fn visible_epoch(&self, dir: InodeId) -> u64 {
        let s = &self.snaps;
        if s.roots.is_empty() && s.pins.is_empty() {
            return 0;
        }
        self.ancestors(dir)
            .map(|a| {
                let rooted = s
                    .roots
                    .get(&a)
                    .and_then(|r| r.values().map(|x| x.epoch).max());
                rooted
                    .unwrap_or(0)
                    .max(s.pins.get(&a).copied().unwrap_or(0))
            })
            .max()
            .unwrap_or(0)
    }

    /// Copies `dir`'s entries into a shadow if a snapshot that may see it has not got them
    /// yet (called before every change of a directory's entries).
    pub(super) fn cow_dir(&mut self, dir: InodeId) {
        if self.snaps.epoch == 0 {
            return;
        }
        let covered = self.snaps.cow.get(&dir).copied().unwrap_or(0);
        if self.visible_epoch(dir) <= covered {
            return;
        }
        let Some(entries) = self.entries(dir).cloned() else {
            return;
        };
        for child in entries.values() {
            *self.snaps.refs.entry(*child).or_insert(0) += 1;
        }
        let epoch = self.snaps.epoch;
        self.snaps
            .shadows
            .entry(dir)
            .or_default()
            .insert(epoch, entries);
        self.snaps.cow.insert(dir, epoch);
    }

    /// Marks a new directory: no snapshot taken so far can see it.
    pub(super) fn born_dir(&mut self, dir: InodeId) {
        if self.snaps.epoch > 0 {
            self.snaps.cow.insert(dir, self.snaps.epoch);
        }
    }

    /// Pins `id`, moved out of `from`, with the newest epoch that may see it there.
    pub(super) fn pin(&mut self, id: InodeId, from: InodeId) {
        let v = self.visible_epoch(from);
        if v > 0 {
            let p = self.snaps.pins.entry(id).or_insert(0);
            *p = (*p).max(v);
        }
    }

    /// Drops one reference to `id`: a live one (`live`: its entry in a live directory is
    /// going) or a shadow's. An inode that loses its last reference is freed (its entries and
    /// shadows drop theirs; a file's chunks become garbage). A directory that loses its live
    /// entry but is still in a shadow is *detached*: its entries are copied into a shadow of
    /// the current epoch if no shadow covers it yet, then its live entries are dropped as live
    /// references, so nothing outlives it that no snapshot shows. Iterative.
    pub(super) fn drop_ref(&mut self, id: InodeId, live: bool) {
        let mut lost_snapshots = false;
        let mut stack = vec![(id, live)];
        while let Some((id, live)) = stack.pop() {
            if let Some(n) = self.snaps.refs.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    self.snaps.refs.remove(&id);
                }
                if live {
                    self.detach(id, &mut stack);
                }
                continue;
            }
            let Some(inode) = self.inodes.remove(&id) else {
                continue;
            };
            self.trash.remove(&id);
            self.snaps.pins.remove(&id);
            self.appends.remove(&id);
            match inode.kind {
                InodeKind::File(f) => {
                    for c in f.chunks {
                        if let Some(meta) = self.chunks.remove(&c) {
                            self.garbage.insert(c, meta.version());
                            self.security.digests.remove(&c);
                        }
                    }
                }
                InodeKind::Dir(entries) => {
                    self.dirs = self.dirs.saturating_sub(1);
                    self.quotas.remove(&id);
                    self.snaps.cow.remove(&id);
                    lost_snapshots |= self.snaps.roots.remove(&id).is_some();
                    stack.extend(entries.into_values().map(|c| (c, true)));
                    if let Some(sh) = self.snaps.shadows.remove(&id) {
                        for e in sh.into_values() {
                            stack.extend(e.into_values().map(|c| (c, false)));
                        }
                    }
                }
            }
        }
        if lost_snapshots {
            self.gc_shadows();
        }
    }

    /// `id` left the live tree but a shadow still names it (see [`Self::drop_ref`]).
    fn detach(&mut self, id: InodeId, stack: &mut Vec<(InodeId, bool)>) {
        self.trash.remove(&id);
        self.quotas.remove(&id);
        let epoch = self.snaps.epoch;
        let covered = self.snaps.cow.get(&id).copied().unwrap_or(0);
        let Some(Inode {
            kind: InodeKind::Dir(entries),
            ..
        }) = self.inodes.get_mut(&id)
        else {
            return;
        };
        let live = std::mem::take(entries);
        if covered < epoch {
            for c in live.values() {
                *self.snaps.refs.entry(*c).or_insert(0) += 1;
            }
            self.snaps
                .shadows
                .entry(id)
                .or_default()
                .insert(epoch, (*live).clone());
            self.snaps.cow.insert(id, epoch);
        }
        stack.extend(live.into_values().map(|c| (c, true)));
    }

    /// Drops every shadow no remaining snapshot may read, releasing its entries. A shadow
    /// keyed L serves the epochs after the directory's previous key up to L; it is kept while
    /// one of those snapshots may see the directory: its root is on the directory's parent
    /// chain, or an inode on the chain is pinned at or after its epoch, or the chain is broken
    /// (an unlinked ancestor: kept, conservatively).
    fn gc_shadows(&mut self) {
        if self.snaps.roots.is_empty() {
            // Pins matter only to snapshots that exist: without any, changes stop walking up
            // the tree to look for them (`visible_epoch` returns at once).
            self.snaps.pins.clear();
        }
        let root_of: BTreeMap<u64, InodeId> = self
            .snaps
            .roots
            .iter()
            .flat_map(|(r, m)| m.values().map(move |s| (s.epoch, *r)))
            .collect();
        let mut dead: Vec<(InodeId, u64)> = Vec::new();
        for (dir, sh) in &self.snaps.shadows {
            let mut prev = 0;
            for key in sh.keys() {
                let keep = root_of
                    .range(prev + 1..=*key)
                    .any(|(e, r)| self.may_see(*dir, *e, *r));
                if !keep {
                    dead.push((*dir, *key));
                }
                prev = *key;
            }
        }
        let mut freed = Vec::new();
        for (dir, key) in dead {
            if let Some(sh) = self.snaps.shadows.get_mut(&dir) {
                if let Some(e) = sh.remove(&key) {
                    freed.extend(e.into_values());
                }
                if sh.is_empty() {
                    self.snaps.shadows.remove(&dir);
                }
            }
        }
        for id in freed {
            self.drop_ref(id, false);
        }
    }

    /// Whether snapshot `epoch` of `root` may see `dir` (conservative; see `gc_shadows`).
    fn may_see(&self, dir: InodeId, epoch: u64, root: InodeId) -> bool {
        let mut last = dir;
        for a in self.ancestors(dir) {
            if a == root || self.snaps.pins.get(&a).is_some_and(|p| *p >= epoch) {
                return true;
            }
            last = a;
        }
        // Reached the root: not seen. Broken off at an unlinked inode: kept, conservatively.
        last != ROOT
    }

    /// Where some snapshot root in the tree at `id` is, if any.
    pub(super) fn snapshots_under(&self, id: InodeId) -> Option<InodeId> {
        self.snaps
            .roots
            .keys()
            .find(|r| self.is_under(**r, id))
            .copied()
    }

    /// Refuses to remove a tree that holds snapshots.
    pub(super) fn check_no_snapshots(&self, id: InodeId, p: &str) -> Res<()> {
        match self.snapshots_under(id) {
            None => Ok(()),
            Some(r) => Err(MetaError::NotEmpty(format!(
                "{p}: {} has snapshots (delete them first: shale snapshot delete)",
                self.path_of(r)
            ))),
        }
    }

    /// The directory `p` for a snapshot command by `who` (its owner or a superuser).
    fn snapshot_dir(&self, p: &str, who: &Actor) -> Res<InodeId> {
        let id = self.resolve(&path::components(p)?, who)?;
        if !self.is_dir(id) {
            return Err(MetaError::NotADirectory(p.to_string()));
        }
        if !who.superuser && who.uid != Some(self.attrs(id).owner) {
            return Err(MetaError::Denied(format!(
                "user={} does not own {p}: only its owner or a superuser takes or deletes its \
                 snapshots",
                who.name
            )));
        }
        Ok(id)
    }

    pub(super) fn create_snapshot(
        &mut self,
        p: &str,
        name: &str,
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        check_name(name)?;
        let id = self.snapshot_dir(p, who)?;
        let total: usize = self.snaps.roots.values().map(BTreeMap::len).sum();
        let mine = self.snaps.roots.get(&id);
        if mine.is_some_and(|m| m.contains_key(name)) {
            return Err(MetaError::AlreadyExists(format!(
                "{p}/{SNAPSHOT_DIR}/{name}"
            )));
        }
        if mine.map_or(0, BTreeMap::len) >= SNAPSHOTS_PER_DIR_MAX || total >= SNAPSHOTS_MAX {
            return Err(MetaError::Full(format!(
                "{p} has {SNAPSHOTS_PER_DIR_MAX} snapshots, or the cluster {SNAPSHOTS_MAX}: \
                 delete some first"
            )));
        }
        self.snaps.epoch += 1;
        let snap = Snap {
            epoch: self.snaps.epoch,
            created_ms: now_ms,
        };
        self.snaps
            .roots
            .entry(id)
            .or_default()
            .insert(name.into(), snap);
        Ok(Reply::Done)
    }

    pub(super) fn delete_snapshot(&mut self, p: &str, name: &str, who: &Actor) -> Res<Reply> {
        let id = self.snapshot_dir(p, who)?;
        let gone = self
            .snaps
            .roots
            .get_mut(&id)
            .and_then(|m| m.remove(name))
            .is_some();
        if !gone {
            return Err(MetaError::NotFound(format!("{p}/{SNAPSHOT_DIR}/{name}")));
        }
        if self.snaps.roots.get(&id).is_some_and(BTreeMap::is_empty) {
            self.snaps.roots.remove(&id);
        }
        self.gc_shadows();
        Ok(Reply::Done)
    }

    /// A directory's entries as snapshot epoch `view` saw them (None: live).
    pub(crate) fn entries_at(&self, dir: InodeId, view: Option<u64>) -> Option<&Entries> {
        if let Some(e) = view {
            if let Some((_, old)) = self
                .snaps
                .shadows
                .get(&dir)
                .and_then(|s| s.range(e..).next())
            {
                return Some(old);
            }
        }
        self.entries(dir)
    }

    /// Resolves a read path as `who`: live, or through `DIR/.snapshot/NAME`.
    pub(crate) fn resolve_target(&self, comps: &[&str], who: &Actor) -> Res<Target> {
        let mut cur = ROOT;
        let mut view = None;
        let mut i = 0;
        while i < comps.len() {
            let c = comps[i];
            let here = || format!("/{}", comps[..i].join("/"));
            let Some(entries) = self.entries_at(cur, view) else {
                return Err(MetaError::NotADirectory(here()));
            };
            self.require(cur, who, perms::EXEC, here)?;
            if c == SNAPSHOT_DIR && view.is_none() {
                if let Some(snaps) = self.snaps.roots.get(&cur) {
                    let Some(name) = comps.get(i + 1) else {
                        return Ok(Target::Snapshots(cur));
                    };
                    let s = snaps.get(*name).ok_or_else(|| {
                        MetaError::NotFound(format!("/{}", comps[..=i + 1].join("/")))
                    })?;
                    view = Some(s.epoch);
                    i += 2;
                    continue;
                }
            }
            cur = *entries
                .get(c)
                .ok_or_else(|| MetaError::NotFound(format!("/{}", comps[..=i].join("/"))))?;
            i += 1;
        }
        Ok(Target::At(cur, view))
    }

    /// The snapshots of directory `p`, by name (as anyone who may stat it).
    pub fn snapshots_of(&self, p: &str, who: &Who) -> Res<Vec<SnapView>> {
        let actor = self.actor(who);
        let id = self.resolve(&path::components(p)?, &actor)?;
        if !self.is_dir(id) {
            return Err(MetaError::NotADirectory(p.to_string()));
        }
        Ok(self.snapshot_views(id))
    }

    pub(crate) fn snapshot_views(&self, id: InodeId) -> Vec<SnapView> {
        let Some(snaps) = self.snaps.roots.get(&id) else {
            return Vec::new();
        };
        snaps
            .iter()
            .filter_map(|(n, s)| {
                Some(SnapView {
                    name: n.to_string(),
                    created_ms: s.created_ms,
                    stat: self.stat_at(id, Some(s.epoch))?,
                })
            })
            .collect()
    }

    /// `stat_inode` with a directory's entry count as `view` saw it.
    pub(crate) fn stat_at(&self, id: InodeId, view: Option<u64>) -> Option<Stat> {
        let mut s = self.stat_inode(id)?;
        if let Some(l) = self.appends.get(&id).and_then(|a| a.view_len(view)) {
            s.length = l;
        }
        if s.is_dir && view.is_some() {
            s.entries = self.entries_at(id, view).map_or(0, |e| e.len() as u64);
        }
        Some(s)
    }

    /// Checks the reference counts against every entry of every directory and shadow, and
    /// that every inode is live, under construction, or referenced (by a snapshot's shadow, or
    /// a directory unlinked but kept for one).
    pub(super) fn check_refs(&self, live: &HashSet<InodeId>) -> Result<(), String> {
        let mut count: HashMap<InodeId, u32> = HashMap::new();
        for (id, i) in &self.inodes {
            if let InodeKind::Dir(e) = &i.kind {
                for c in e.values() {
                    *count.entry(*c).or_insert(0) += 1;
                }
            }
            if let Some(sh) = self.snaps.shadows.get(id) {
                for e in sh.values() {
                    for c in e.values() {
                        *count.entry(*c).or_insert(0) += 1;
                    }
                }
            }
        }
        for (id, n) in &count {
            let want = n.saturating_sub(1);
            let have = self.snaps.refs.get(id).copied().unwrap_or(0);
            if want != have {
                return Err(format!("{id} has {n} references but counts {}", have + 1));
            }
            if !self.inodes.contains_key(id) {
                return Err(format!("an entry names freed inode {id}"));
            }
        }
        if let Some(orphan) = self.inodes.keys().find(|i| {
            **i != ROOT
                && !live.contains(i)
                && !self.pending.contains_key(i)
                && !count.contains_key(i)
        }) {
            return Err(format!(
                "{orphan} is neither live, under construction, nor kept for a snapshot"
            ));
        }
        if let Some(id) = self.snaps.refs.keys().find(|i| !count.contains_key(i)) {
            return Err(format!("{id} has a reference count but no references"));
        }
        if let Some(d) = self.snaps.shadows.keys().find(|d| !self.is_dir(**d)) {
            return Err(format!("shadows of {d}, which is not a directory"));
        }
        if let Some(r) = self.snaps.roots.keys().find(|d| !self.is_dir(**d)) {
            return Err(format!("snapshots of {r}, which is not a directory"));
        }
        Ok(())
    }
}

/// Snapshot format 7's part: the snapshot state.
pub fn encode_section(state: &MetaState, body: Vec<u8>) -> postcard::Result<Vec<u8>> {
    postcard::to_extend(&state.snaps, body)
}

/// Reads the part [`encode_section`] wrote; the bytes after it.
pub fn decode_section<'b>(state: &mut MetaState, bytes: &'b [u8]) -> postcard::Result<&'b [u8]> {
    let (s, rest): (SnapState, _) = postcard::take_from_bytes(bytes)?;
    state.snaps = s;
    Ok(rest)
}
