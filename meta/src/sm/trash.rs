//! The trash: `rm` moves a tree to its user's trash, where it stays restorable until it
//! expires (HDFS's trash, kept by the masters instead of the client).
//!
//! * Layout: `/.Trash` (root's, mode 1777, made on first use), then `/.Trash/USER` (the user's,
//!   0700), then one checkpoint directory per second of deletion, named by its log time in UTC
//!   (`2026-11-29T12:34:56Z`, so names sort by time), then the deleted path mirrored below it:
//!   `rm /a/b/c` by alice at that second moves `c` to `/.Trash/alice/2026-11-29T12:34:56Z/a/b/c`.
//!   Directories made on the way belong to the user, mode 0700.
//! * [`Command::Trash`] is one atomic move, checked like `Delete` (unlink permission, and
//!   read, write and execute on every directory of a tree, since expiry removes it all) and
//!   charged to quotas like `Rename`. If the mirrored place is taken (the same path deleted
//!   twice in one second) the next free checkpoint `STAMP.1`, `STAMP.2`, … is used. Refused
//!   for paths already in the trash (delete those for good), for `/` and for paths whose
//!   mirror would be longer than 4096 bytes.
//! * Each moved tree is remembered (inode → user, original path, deletion time) so `trash ls`
//!   can list what was deleted and `restore` can put it back wherever it was moved inside the
//!   trash. An item moved or removed by hand is forgotten.
//! * [`Command::ExpireTrash`] (the leader proposes it when something is due) removes, in every
//!   user's trash, the checkpoints whose time plus the retention is past the log time, oldest
//!   first, at most [`EXPIRE_MAX`] per command. Names that are not checkpoints are left alone.
use super::*;

/// The trash's directory under `/`.
pub const TRASH_DIR: &str = ".Trash";
/// Most checkpoints one `ExpireTrash` removes.
pub const EXPIRE_MAX: usize = 1000;
/// Most `STAMP.N` checkpoints tried for one deletion.
const SUFFIX_MAX: u32 = 100;

/// One tree in the trash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrashItem {
    /// Whose trash it is in (a name id).
    pub user: u32,
    /// The path it was deleted from.
    pub original: Box<str>,
    /// Where it went (unless moved inside the trash since).
    pub at: Box<str>,
    pub deleted_ms: u64,
}

/// What `trash ls` shows of one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrashEntry {
    pub original: String,
    /// Where it is now.
    pub path: String,
    pub deleted_ms: u64,
    pub stat: Stat,
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time in ms (civil calendar, proleptic Gregorian).
pub fn stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-from-civil, inverted.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The Unix time in ms a checkpoint name stands for (`STAMP` or `STAMP.N`), if it is one.
pub fn parse_stamp(name: &str) -> Option<u64> {
    let s = name.get(..20)?;
    let rest = &name[20..];
    if !(rest.is_empty()
        || rest
            .strip_prefix('.')
            .is_some_and(|n| n.parse::<u32>().is_ok()))
    {
        return None;
    }
    let b = s.as_bytes();
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let (y, m, d) = (y as i64 - i64::from(m <= 2), m as i64, d as i64);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400 + hh * 3600 + mm * 60 + ss;
    let ms = secs * 1000;
    (stamp(ms) == s).then_some(ms)
}

/// Where a deletion goes: the directories to make and the entry to move in.
struct Plan {
    /// The deepest existing directory on the way, and the names to make below it.
    attach: InodeId,
    make: Vec<Name>,
    /// Whether `make` starts with `/.Trash` itself (root's, 1777).
    make_root: bool,
    name: Name,
    path: String,
}

impl MetaState {
    /// Whether `dir` is `root` or below it (walks parent links).
    pub(super) fn is_under(&self, dir: InodeId, root: InodeId) -> bool {
        self.ancestors(dir).any(|a| a == root)
    }

    /// The trash root and `who`'s trash directory, if they exist (checked: directories, the
    /// user's own).
    fn user_trash(&self, who: &Actor) -> Res<(Option<InodeId>, Option<InodeId>)> {
        let Some(root) = self.entries(ROOT).and_then(|e| e.get(TRASH_DIR)).copied() else {
            return Ok((None, None));
        };
        let Some(e) = self.entries(root) else {
            return Err(MetaError::NotADirectory(format!("/{TRASH_DIR}")));
        };
        let Some(mine) = e.get(who.name.as_str()).copied() else {
            return Ok((Some(root), None));
        };
        let owner = self.attrs(mine).owner;
        if !self.is_dir(mine) || Some(owner) != who.uid {
            return Err(MetaError::Denied(format!(
                "/{TRASH_DIR}/{} is not a directory owned by {}: a superuser must remove it \
                 (or delete with --skip-trash)",
                who.name, who.name
            )));
        }
        Ok((Some(root), Some(mine)))
    }

    /// Where `comps` (deleted by `who` at `now_ms`) goes in the trash.
    fn plan(&self, comps: &[&str], who: &Actor, now_ms: u64) -> Res<Plan> {
        let (root, mine) = self.user_trash(who)?;
        let base = stamp(now_ms);
        let name: Name = comps[comps.len() - 1].into();
        let parents = &comps[..comps.len() - 1];
        for k in 0..SUFFIX_MAX {
            let ckpt = if k == 0 {
                base.clone()
            } else {
                format!("{base}.{k}")
            };
            let path = format!("/{TRASH_DIR}/{}/{ckpt}/{}", who.name, comps.join("/"));
            if path.len() > path::PATH_MAX_BYTES {
                return Err(MetaError::BadArgument(format!(
                    "/{} would be {} bytes in the trash (4096 at most): delete it with \
                     --skip-trash",
                    comps.join("/"),
                    path.len()
                )));
            }
            let mut wanted: Vec<&str> = vec![TRASH_DIR, &who.name, &ckpt];
            wanted.extend_from_slice(parents);
            // Walk what exists; every existing step past the user's directory must be a
            // directory of the user's that is not itself a trashed item.
            let mut cur = ROOT;
            let mut k_exist = 0;
            let mut usable = true;
            for (j, c) in wanted.iter().enumerate() {
                let next = match j {
                    0 => root,
                    1 => mine,
                    _ => self.entries(cur).and_then(|e| e.get(*c)).copied(),
                };
                let Some(next) = next else {
                    break;
                };
                if j >= 2
                    && (!self.is_dir(next)
                        || Some(self.attrs(next).owner) != who.uid
                        || self.trash.contains_key(&next))
                {
                    usable = false;
                    break;
                }
                cur = next;
                k_exist = j + 1;
            }
            if !usable {
                continue;
            }
            let taken = k_exist == wanted.len()
                && self.entries(cur).is_some_and(|e| e.contains_key(&*name));
            if taken {
                continue;
            }
            return Ok(Plan {
                attach: cur,
                make: wanted[k_exist..].iter().map(|s| (*s).into()).collect(),
                make_root: k_exist == 0,
                name,
                path,
            });
        }
        Err(MetaError::AlreadyExists(format!(
            "/{}: {SUFFIX_MAX} copies deleted this second; retry",
            comps.join("/")
        )))
    }

    /// Moves `p` to `who`'s trash (see the module doc).
    pub(super) fn trash(
        &mut self,
        p: &str,
        recursive: bool,
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        let comps = path::components(p)?;
        if comps.is_empty() {
            return Err(MetaError::Root);
        }
        if comps[0] == TRASH_DIR {
            return Err(MetaError::BadArgument(format!(
                "{p} is in the trash already: delete it for good (rm --skip-trash)"
            )));
        }
        let (id, dir, name) = self.removable(p, recursive, who)?;
        self.check_new_attrs(who, 0o700)?;
        let plan = self.plan(&comps, who, now_ms)?;
        let (from, to) = (self.quota_chain(dir), self.quota_chain(plan.attach));
        let made = Usage::new(plan.make.len() as u64, 0);
        self.check_room(plan.attach, made, Usage::default(), &[])?;
        let moved = (from != to).then(|| self.tree_usage(id));
        if let Some(u) = moved {
            let all = Usage::new(made.names + u.names, u.bytes);
            self.check_room(plan.attach, all, Usage::default(), &from)?;
        }
        // Checked: now change.
        let mut cur = plan.attach;
        for (j, n) in plan.make.iter().enumerate() {
            let attrs = if j == 0 && plan.make_root {
                perms::Attrs {
                    owner: 0,
                    group: 0,
                    mode: 0o1777,
                }
            } else {
                self.new_attrs(who, cur, 0o700)
            };
            cur = self.make_dir(cur, n, attrs, now_ms);
        }
        self.charge(plan.attach, made, false);
        self.pin(id, dir);
        if let Some(e) = self.entries_mut(dir) {
            e.remove(name);
        }
        if let Some(e) = self.entries_mut(cur) {
            e.insert(plan.name, id);
        }
        if let Some(i) = self.inodes.get_mut(&id) {
            i.parent = cur;
        }
        if let Some(u) = moved {
            self.charge(dir, u, true);
            self.charge(cur, u, false);
        }
        self.touch(dir, now_ms);
        self.touch(cur, now_ms);
        // The user's name is interned by now (it owns its trash directory).
        let user = self.perms.id(&who.name).unwrap_or(0);
        self.trash.insert(
            id,
            TrashItem {
                user,
                original: p.into(),
                at: plan.path.as_str().into(),
                deleted_ms: now_ms,
            },
        );
        Ok(Reply::Trashed(plan.path))
    }

    /// Links a new directory `name` with `attrs` into `parent`; its id.
    fn make_dir(
        &mut self,
        parent: InodeId,
        name: &str,
        attrs: perms::Attrs,
        now_ms: u64,
    ) -> InodeId {
        let id = self.alloc_inode();
        self.inodes.insert(
            id,
            Inode {
                parent,
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
        if let Some(e) = self.entries_mut(parent) {
            e.insert(name.into(), id);
        }
        id
    }

    /// The checkpoints due for removal at `now_ms` with `retention_ms`: (user directory,
    /// name, inode), oldest first per user, at most `max`.
    fn due(&self, now_ms: u64, retention_ms: u64, max: usize) -> Vec<(InodeId, Name, InodeId)> {
        let mut out = Vec::new();
        let Some(root) = self.entries(ROOT).and_then(|e| e.get(TRASH_DIR)) else {
            return out;
        };
        let Some(users) = self.entries(*root) else {
            return out;
        };
        for user in users.values() {
            let Some(ckpts) = self.entries(*user) else {
                continue;
            };
            for (name, id) in ckpts {
                let Some(t) = parse_stamp(name) else {
                    continue;
                };
                if t.saturating_add(retention_ms) > now_ms {
                    break;
                }
                if out.len() == max {
                    return out;
                }
                out.push((*user, name.clone(), *id));
            }
        }
        out
    }

    /// Whether some checkpoint is due at `now_ms` (the leader asks before proposing).
    pub fn trash_due(&self, now_ms: u64, retention_ms: u64) -> bool {
        !self.due(now_ms, retention_ms, 1).is_empty()
    }

    /// Removes the checkpoints due by log time (see the module doc); how many.
    pub(super) fn expire_trash(&mut self, retention_ms: u64, now_ms: u64) -> Reply {
        let due = self.due(now_ms, retention_ms, EXPIRE_MAX);
        for (user, name, id) in &due {
            self.remove_tree(*id);
            if let Some(e) = self.entries_mut(*user) {
                e.remove(&**name);
            }
            self.touch(*user, now_ms);
        }
        Reply::Expired(due.len() as u32)
    }

    /// What is in `user`'s trash, newest first, at most `limit` items (as `who`: users see
    /// their own, superusers anyone's).
    pub fn trash_list(&self, user: &str, limit: usize, who: &Who) -> Res<Vec<TrashEntry>> {
        let actor = self.actor(who);
        if !actor.superuser && actor.name != user {
            return Err(MetaError::Denied(format!(
                "user={} may not list the trash of {user}",
                actor.name
            )));
        }
        let Some(uid) = self.perms.id(user) else {
            return Ok(Vec::new());
        };
        let Some(mine) = self
            .entries(ROOT)
            .and_then(|e| e.get(TRASH_DIR))
            .and_then(|r| self.entries(*r))
            .and_then(|e| e.get(user))
            .copied()
        else {
            return Ok(Vec::new());
        };
        let mut items: Vec<(&InodeId, &TrashItem)> = self
            .trash
            .iter()
            .filter(|(id, t)| t.user == uid && self.is_under(**id, mine))
            .collect();
        items.sort_by(|a, b| (b.1.deleted_ms, b.0).cmp(&(a.1.deleted_ms, a.0)));
        Ok(items
            .into_iter()
            .take(limit)
            .filter_map(|(id, t)| {
                let here = path::components(&t.at)
                    .ok()
                    .and_then(|c| self.resolve(&c, &Actor::root()).ok());
                Some(TrashEntry {
                    original: t.original.to_string(),
                    path: if here == Some(*id) {
                        t.at.to_string()
                    } else {
                        self.path_of(*id)
                    },
                    deleted_ms: t.deleted_ms,
                    stat: self.stat_inode(*id)?,
                })
            })
            .collect())
    }

    /// Removes the linked tree at `id` and the files under construction in it (first, so
    /// their quota charges leave through their directories). Does not touch `id`'s entry.
    pub(super) fn remove_tree(&mut self, id: InodeId) {
        if self.is_dir(id) && !self.pending.is_empty() {
            let doomed: Vec<InodeId> = self
                .pending
                .iter()
                .filter(|(_, p)| self.is_under(p.parent, id))
                .map(|(f, _)| *f)
                .collect();
            for f in doomed {
                self.drop_pending(f);
            }
        }
        self.remove_inode(id);
    }
}

/// Snapshot format 6's trash part: (inode, item) pairs.
pub fn encode_section(state: &MetaState, body: Vec<u8>) -> postcard::Result<Vec<u8>> {
    let v: Vec<(&InodeId, &TrashItem)> = state.trash.iter().collect();
    postcard::to_extend(&v, body)
}

/// Reads the part [`encode_section`] wrote; the bytes after it.
pub fn decode_section<'b>(state: &mut MetaState, bytes: &'b [u8]) -> postcard::Result<&'b [u8]> {
    let (v, rest): (Vec<(InodeId, TrashItem)>, _) = postcard::take_from_bytes(bytes)?;
    state.trash = v.into_iter().collect();
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_sort_by_time() {
        assert_eq!(stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(stamp(1_796_041_296_000), "2026-11-30T12:21:36Z");
        assert_eq!(stamp(951_782_400_000), "2000-02-29T00:00:00Z");
        for ms in [0u64, 951_782_400_000, 1_796_041_296_000, 4_102_444_799_000] {
            let s = stamp(ms);
            assert_eq!(parse_stamp(&s), Some(ms), "{s}");
            assert_eq!(parse_stamp(&format!("{s}.3")), Some(ms));
        }
        assert!(stamp(1_000_000_000_000) < stamp(1_000_000_001_000));
        for bad in [
            "",
            "x",
            "2026-11-30T12:21:36",
            "2026-13-30T12:21:36Z",
            "2026-02-30T00:00:00Z",
            "2026-11-30T12:21:36Z.",
            "2026-11-30T12:21:36Z.x",
            "2026-11-30 12:21:36Z",
        ] {
            assert_eq!(parse_stamp(bad), None, "{bad}");
        }
    }
}
