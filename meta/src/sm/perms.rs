//! Owners, groups and mode bits on every file and directory, checked by `apply` and by the
//! read-only queries (POSIX semantics, as HDFS has them).
//!
//! * Every command runs as someone: [`Command::As`] names the caller (the leader stamps it from
//!   the caller's certificate; the log is written only by leaders, so the state machine trusts
//!   it); an unwrapped command (internal work, or an entry written before permissions) runs as
//!   the superuser [`ROOT_USER`].
//! * A superuser (an `admin` certificate, a master, or everyone on a plaintext cluster) passes
//!   every check. Anyone else gets the owner's bits if they own the inode, else the group's bits
//!   if they are in its group, else the others' bits.
//! * A user's groups: the group named like the user (user private groups) and the groups a
//!   superuser added them to ([`Command::SetMember`]).
//! * Walking a path needs execute on every directory passed through; reading a file needs read;
//!   listing a directory needs read and execute; making, removing or renaming an entry needs
//!   write and execute on its directory; with the sticky bit on that directory, only the
//!   entry's owner, the directory's owner or a superuser may remove or rename the entry.
//!   Replacing a file (overwrite, rename over) also needs write on the file replaced. Removing a
//!   tree needs read, write and execute on every directory in it.
//! * Only the owner or a superuser may chmod; only a superuser may change an owner; the owner may
//!   change the group to one they belong to.
//! * A new inode is owned by its creator, in its directory's group (BSD and HDFS rule), with the
//!   mode asked for (default 0644 files, 0755 directories).
//!
//! User tokens (for clients without certificates, `shale_security::bearer`) are signed with
//! one key kept here ([`Command::SetUserKey`]: a new key revokes every older token).
//!
//! Names are interned: an inode keeps two `u32` ids into [`PermState::names`] (id 0 is
//! [`ROOT_USER`], which only superusers act as). The table only grows, to at most
//! [`NAMES_MAX`] names. In snapshot format 4 the table, the memberships and every inode's
//! attributes follow the security state; older snapshots decode with everything owned by root
//! (0755 directories, 0644 files).
use super::*;
use std::collections::BTreeSet;

pub const READ: u16 = 4;
pub const WRITE: u16 = 2;
pub const EXEC: u16 = 1;
/// Restricted deletion on a directory.
pub const STICKY: u16 = 0o1000;
/// Every mode bit Shale keeps (no setuid/setgid: nothing executes).
pub const MODE_MAX: u16 = 0o1777;
pub const DIR_MODE_DEFAULT: u16 = 0o755;
pub const FILE_MODE_DEFAULT: u16 = 0o644;
/// The owner of `/` and of everything made before permissions; only superusers act as it.
pub const ROOT_USER: &str = "root";
/// Most distinct owner and group names.
pub const NAMES_MAX: usize = 1 << 20;
/// Most supplementary groups per user.
pub const GROUPS_PER_USER_MAX: usize = 64;
/// Most users with supplementary groups.
pub const MEMBERS_MAX: usize = 100_000;

/// An inode's owner, group (ids into [`PermState::names`]) and mode bits.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    pub owner: u32,
    pub group: u32,
    pub mode: u16,
}

impl Attrs {
    /// What everything made before permissions has: root's, 0755 or 0644.
    pub fn legacy(is_dir: bool) -> Attrs {
        Attrs {
            owner: 0,
            group: 0,
            mode: if is_dir {
                DIR_MODE_DEFAULT
            } else {
                FILE_MODE_DEFAULT
            },
        }
    }
}

/// Who a command runs as: the caller's principal name and whether it is a superuser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    pub user: String,
    pub superuser: bool,
}

impl Who {
    /// The superuser (internal commands, plaintext clusters).
    pub fn root() -> Who {
        Who {
            user: ROOT_USER.into(),
            superuser: true,
        }
    }

    pub fn user(name: &str) -> Who {
        Who {
            user: name.into(),
            superuser: false,
        }
    }
}

/// A caller resolved against the name table: the ids it acts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    /// Its name's id, if the name is known (a name never seen owns nothing).
    pub uid: Option<u32>,
    pub gids: Vec<u32>,
    pub superuser: bool,
}

impl Actor {
    pub fn root() -> Actor {
        Actor {
            name: ROOT_USER.into(),
            uid: Some(0),
            gids: vec![0],
            superuser: true,
        }
    }

    fn owns(&self, a: Attrs) -> bool {
        self.uid == Some(a.owner)
    }
}

/// Whether `who` may do `want` (a mask of [`READ`], [`WRITE`], [`EXEC`]) to an inode with `a`.
pub fn permits(a: Attrs, who: &Actor, want: u16) -> bool {
    if who.superuser {
        return true;
    }
    let bits = if who.owns(a) {
        a.mode >> 6
    } else if who.gids.contains(&a.group) {
        a.mode >> 3
    } else {
        a.mode
    };
    bits & 7 & want == want
}

/// Whether the sticky bit of directory `dir` lets `who` remove or rename its entry `entry`.
pub fn sticky_allows(dir: Attrs, entry: Attrs, who: &Actor) -> bool {
    who.superuser || dir.mode & STICKY == 0 || who.owns(dir) || who.owns(entry)
}

/// `drwxr-x--T`-style mode string.
pub fn mode_string(is_dir: bool, mode: u16) -> String {
    let mut s = String::with_capacity(10);
    s.push(if is_dir { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let b = (mode >> shift) & 7;
        s.push(if b & READ != 0 { 'r' } else { '-' });
        s.push(if b & WRITE != 0 { 'w' } else { '-' });
        let x = b & EXEC != 0;
        s.push(match (shift, mode & STICKY != 0, x) {
            (0, true, true) => 't',
            (0, true, false) => 'T',
            (_, _, true) => 'x',
            _ => '-',
        });
    }
    s
}

fn access_name(want: u16) -> &'static str {
    match want {
        READ => "READ",
        WRITE => "WRITE",
        EXEC => "EXECUTE",
        x if x == READ | EXEC => "READ_EXECUTE",
        x if x == WRITE | EXEC => "WRITE_EXECUTE",
        _ => "ALL",
    }
}

/// The name table and group memberships.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermState {
    /// Id → name; `names[0]` is [`ROOT_USER`].
    names: Vec<Box<str>>,
    /// Name → id (derived from `names`).
    #[serde(skip)]
    ids: HashMap<Box<str>, u32>,
    /// User id → the ids of its supplementary groups.
    members: BTreeMap<u32, BTreeSet<u32>>,
    /// The key user tokens are signed with.
    user_key: Option<super::security::TokenKey>,
}

impl Default for PermState {
    fn default() -> Self {
        let mut p = PermState {
            names: vec![ROOT_USER.into()],
            ids: HashMap::new(),
            members: BTreeMap::new(),
            user_key: None,
        };
        p.reindex();
        p
    }
}

impl PermState {
    /// Rebuilds the name → id map (after decoding).
    pub fn reindex(&mut self) {
        self.ids = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("?", |n| n)
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Invariants: root first, names unique and valid, memberships among known names.
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.names.first().map(|n| &**n) != Some(ROOT_USER) {
            return Err("the first name must be root".into());
        }
        if self.ids.len() != self.names.len() || self.names.len() > NAMES_MAX {
            return Err("names are not unique or too many".into());
        }
        let n = self.names.len() as u32;
        if self.members.len() > MEMBERS_MAX {
            return Err("too many users with groups".into());
        }
        if self
            .user_key
            .as_ref()
            .is_some_and(|k| k.secret.len() != super::security::TOKEN_KEY_BYTES)
        {
            return Err("the user token key has the wrong size".into());
        }
        for (u, gs) in &self.members {
            if *u >= n
                || gs.is_empty()
                || gs.len() > GROUPS_PER_USER_MAX
                || gs.iter().any(|g| *g >= n)
            {
                return Err(format!("bad memberships of name {u}"));
            }
        }
        Ok(())
    }
}

/// Checks a user or group name given to chown or a membership change.
fn check_name(name: &str) -> Res<()> {
    shale_security::principal::check_name(name).map_err(MetaError::BadArgument)
}

/// Checks mode bits given by a caller.
pub(super) fn check_mode(mode: u16) -> Res<u16> {
    if mode > MODE_MAX {
        return Err(MetaError::BadArgument(format!(
            "mode {mode:o} has bits outside {MODE_MAX:o}"
        )));
    }
    Ok(mode)
}

impl MetaState {
    /// Resolves who a command or query runs as.
    pub fn actor(&self, who: &Who) -> Actor {
        if who.superuser {
            return Actor {
                name: who.user.clone(),
                uid: self.perms.id(&who.user),
                gids: vec![0],
                superuser: true,
            };
        }
        // Root's id is never anyone else's: a user certificate named root owns nothing.
        let uid = self.perms.id(&who.user).filter(|u| *u != 0);
        let mut gids: Vec<u32> = uid.into_iter().collect();
        if let Some(gs) = uid.and_then(|u| self.perms.members.get(&u)) {
            gids.extend(gs.iter().copied());
        }
        Actor {
            name: who.user.clone(),
            uid,
            gids,
            superuser: false,
        }
    }

    pub(crate) fn attrs(&self, id: InodeId) -> Attrs {
        self.inodes
            .get(&id)
            .map_or_else(Attrs::default, |i| i.attrs)
    }

    /// PERMISSION_DENIED unless `who` may do `want` to inode `id` (at `path`).
    pub(crate) fn require(
        &self,
        id: InodeId,
        who: &Actor,
        want: u16,
        path: impl FnOnce() -> String,
    ) -> Res<()> {
        let a = self.attrs(id);
        if permits(a, who, want) {
            return Ok(());
        }
        Err(MetaError::Denied(format!(
            "user={}, access={}, inode=\"{}\":{}:{}:{}",
            who.name,
            access_name(want),
            path(),
            self.perms.name(a.owner),
            self.perms.name(a.group),
            mode_string(self.is_dir(id), a.mode)
        )))
    }

    /// PERMISSION_DENIED unless `who` may remove or rename entry `entry` (at `path`) of `dir`:
    /// write and execute on `dir`, and its sticky bit allows it.
    pub(crate) fn require_unlink(
        &self,
        dir: InodeId,
        entry: InodeId,
        who: &Actor,
        path: &str,
    ) -> Res<()> {
        self.require(dir, who, WRITE | EXEC, || parent_of(path))?;
        if !sticky_allows(self.attrs(dir), self.attrs(entry), who) {
            return Err(MetaError::Denied(format!(
                "user={} may not remove or rename {path}: its directory is sticky and owned by \
                 {}, the entry by {}",
                who.name,
                self.perms.name(self.attrs(dir).owner),
                self.perms.name(self.attrs(entry).owner),
            )));
        }
        Ok(())
    }

    /// PERMISSION_DENIED unless `who` has read, write and execute on every directory of the
    /// tree at `id` (iterative: the tree may be deeper than any stack).
    pub(crate) fn require_tree(&self, id: InodeId, who: &Actor, path: &str) -> Res<()> {
        if who.superuser {
            return Ok(());
        }
        let mut stack = vec![id];
        while let Some(d) = stack.pop() {
            if let Some(entries) = self.entries(d) {
                if entries.is_empty() {
                    continue;
                }
                self.require(d, who, READ | WRITE | EXEC, || {
                    format!("{path} (a directory in it, inode {d})")
                })?;
                stack.extend(entries.values().filter(|c| self.is_dir(**c)));
            }
        }
        Ok(())
    }

    /// Whether a name can be interned (known, or room for it).
    fn can_intern(&self, name: &str) -> Res<()> {
        if self.perms.id(name).is_some() || self.perms.names.len() < NAMES_MAX {
            return Ok(());
        }
        Err(MetaError::BadArgument(format!(
            "{NAMES_MAX} owner and group names are known; {name} is one too many"
        )))
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.perms.id(name) {
            return id;
        }
        let id = self.perms.names.len() as u32;
        self.perms.names.push(name.into());
        self.perms.ids.insert(name.into(), id);
        id
    }

    /// Checks that a new inode under `dir` can be given attributes (see [`Self::new_attrs`]).
    pub(crate) fn check_new_attrs(&self, who: &Actor, mode: u16) -> Res<()> {
        check_mode(mode)?;
        self.can_intern(&who.name)
    }

    /// The attributes of a new inode `who` makes in `dir` (mode checked by
    /// [`Self::check_new_attrs`]).
    pub(crate) fn new_attrs(&mut self, who: &Actor, dir: InodeId, mode: u16) -> Attrs {
        let owner = self.intern(&who.name);
        Attrs {
            owner,
            group: self.attrs(dir).group,
            mode: mode & MODE_MAX,
        }
    }

    /// chmod, chown and chgrp of `p` as `who`: each attribute given is changed, or none is.
    pub(super) fn set_attrs(
        &mut self,
        p: &str,
        mode: Option<u16>,
        owner: Option<&str>,
        group: Option<&str>,
        who: &Actor,
    ) -> Res<Reply> {
        if let Some(m) = mode {
            check_mode(m)?;
        }
        for n in owner.iter().chain(group.iter()) {
            check_name(n)?;
        }
        if self.perms.names.len() + 2 > NAMES_MAX {
            return Err(MetaError::BadArgument(
                "too many owner and group names are known".into(),
            ));
        }
        let id = self.resolve(&path::components(p)?, who)?;
        let a = self.attrs(id);
        if mode.is_some() && !who.superuser && !who.owns(a) {
            return Err(MetaError::Denied(format!(
                "user={} may not chmod {p}: it belongs to {}",
                who.name,
                self.perms.name(a.owner)
            )));
        }
        if !who.superuser {
            if let Some(o) = owner {
                if self.perms.id(o) != Some(a.owner) {
                    return Err(MetaError::Denied(format!(
                        "user={} may not give {p} to {o}: only a superuser changes owners",
                        who.name
                    )));
                }
            }
            if let Some(g) = group {
                let member = self.perms.id(g).is_some_and(|g| who.gids.contains(&g));
                if !who.owns(a) || !member {
                    return Err(MetaError::Denied(format!(
                        "user={} may not set the group of {p} to {g}: only its owner may, to a \
                         group they are in",
                        who.name
                    )));
                }
            }
        }
        let owner = owner.map(|o| self.intern(o));
        let group = group.map(|g| self.intern(g));
        if let Some(i) = self.inodes.get_mut(&id) {
            if let Some(m) = mode {
                i.attrs.mode = m;
            }
            if let Some(o) = owner {
                i.attrs.owner = o;
            }
            if let Some(g) = group {
                i.attrs.group = g;
            }
        }
        Ok(Reply::Done)
    }

    /// Adds `user` to (or removes it from) supplementary group `group`: superusers only.
    pub(super) fn set_member(
        &mut self,
        group: &str,
        user: &str,
        member: bool,
        who: &Actor,
    ) -> Res<Reply> {
        if !who.superuser {
            return Err(MetaError::Denied(format!(
                "user={} may not change group memberships (superusers only)",
                who.name
            )));
        }
        check_name(group)?;
        check_name(user)?;
        if !member {
            let (Some(u), Some(g)) = (self.perms.id(user), self.perms.id(group)) else {
                return Ok(Reply::Done);
            };
            if let Some(gs) = self.perms.members.get_mut(&u) {
                gs.remove(&g);
                if gs.is_empty() {
                    self.perms.members.remove(&u);
                }
            }
            return Ok(Reply::Done);
        }
        self.can_intern(group)?;
        self.can_intern(user)?;
        if self.perms.names.len() + 2 > NAMES_MAX {
            return Err(MetaError::BadArgument(
                "too many owner and group names".into(),
            ));
        }
        let known = self.perms.id(user);
        let count = known
            .and_then(|u| self.perms.members.get(&u))
            .map_or(0, BTreeSet::len);
        if count >= GROUPS_PER_USER_MAX {
            return Err(MetaError::BadArgument(format!(
                "{user} is in {GROUPS_PER_USER_MAX} groups already"
            )));
        }
        if count == 0 && self.perms.members.len() >= MEMBERS_MAX {
            return Err(MetaError::BadArgument(format!(
                "{MEMBERS_MAX} users have groups already"
            )));
        }
        let u = self.intern(user);
        let g = self.intern(group);
        self.perms.members.entry(u).or_default().insert(g);
        Ok(Reply::Done)
    }

    /// Replaces the user-token key (a retried or stale replacement, with an id not above the
    /// current key's, changes nothing).
    pub(super) fn set_user_key(&mut self, id: u64, secret: &[u8], now_ms: u64) -> Res<Reply> {
        use super::security::{TokenKey, TOKEN_KEY_BYTES};
        if secret.len() != TOKEN_KEY_BYTES {
            return Err(MetaError::BadArgument(format!(
                "a user token key is {TOKEN_KEY_BYTES} bytes, not {}",
                secret.len()
            )));
        }
        if self.perms.user_key.as_ref().is_some_and(|k| k.id >= id) {
            return Ok(Reply::Done);
        }
        self.perms.user_key = Some(TokenKey {
            id,
            secret: secret.to_vec(),
            created_ms: now_ms,
        });
        Ok(Reply::Done)
    }

    /// The user-token key.
    pub fn user_key(&self) -> Option<&super::security::TokenKey> {
        self.perms.user_key.as_ref()
    }

    /// Every supplementary group with its members, by group name.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (u, gs) in &self.perms.members {
            for g in gs {
                out.entry(self.perms.name(*g).to_string())
                    .or_default()
                    .push(self.perms.name(*u).to_string());
            }
        }
        for members in out.values_mut() {
            members.sort();
        }
        out
    }

    /// The name with id `id`.
    pub fn name_of(&self, id: u32) -> &str {
        self.perms.name(id)
    }

    /// (owner, group) names of an attribute set.
    pub fn names_of(&self, a: Attrs) -> (&str, &str) {
        (self.perms.name(a.owner), self.perms.name(a.group))
    }
}

/// Every inode's attributes, serialized as a sequence of (inode, attributes) without
/// collecting them first.
struct AllAttrs<'a>(&'a super::idmap::IdMap<InodeId, Inode>);

impl Serialize for AllAttrs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(id, i)| (*id, i.attrs)))
    }
}

/// Appends the snapshot section of formats 4 to 8 to `body`: the name table and memberships,
/// then every inode's attributes.
pub fn encode_section(state: &MetaState, body: Vec<u8>) -> postcard::Result<Vec<u8>> {
    let body = encode_names(state, body)?;
    postcard::to_extend(&AllAttrs(&state.inodes), body)
}

/// Appends the name table and memberships to `body` (format 9 keeps each inode's
/// attributes with the inode).
pub fn encode_names(state: &MetaState, body: Vec<u8>) -> postcard::Result<Vec<u8>> {
    postcard::to_extend(&state.perms, body)
}

/// Reads what [`encode_names`] wrote into `state`; returns the bytes after it.
pub(crate) fn decode_names<'b>(
    state: &mut MetaState,
    bytes: &'b [u8],
) -> postcard::Result<&'b [u8]> {
    let (mut perms, rest): (PermState, _) = postcard::take_from_bytes(bytes)?;
    perms.reindex();
    state.perms = perms;
    Ok(rest)
}

/// Reads the section [`encode_section`] wrote into `state`; returns the bytes after it.
pub(crate) fn decode_section<'b>(
    state: &mut MetaState,
    bytes: &'b [u8],
) -> postcard::Result<&'b [u8]> {
    let rest = decode_names(state, bytes)?;
    let (attrs, rest): (Vec<(InodeId, Attrs)>, _) = postcard::take_from_bytes(rest)?;
    for (id, a) in attrs {
        if let Some(i) = state.inodes.get_mut(&id) {
            i.attrs = a;
        }
    }
    Ok(rest)
}

/// Gives every inode of a snapshot from before permissions root's attributes.
pub(crate) fn legacy_attrs(state: &mut MetaState) {
    for i in state.inodes.values_mut() {
        i.attrs = Attrs::legacy(matches!(i.kind, InodeKind::Dir(_)));
    }
}

fn parent_of(p: &str) -> String {
    match p.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((d, _)) => d.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(uid: Option<u32>, gids: &[u32]) -> Actor {
        Actor {
            name: "u".into(),
            uid,
            gids: gids.to_vec(),
            superuser: false,
        }
    }

    #[test]
    fn owner_group_other_bits() {
        let a = Attrs {
            owner: 5,
            group: 7,
            mode: 0o640,
        };
        let owner = actor(Some(5), &[5]);
        let grouped = actor(Some(6), &[6, 7]);
        let other = actor(Some(8), &[8]);
        let stranger = actor(None, &[]);
        assert!(permits(a, &owner, READ | WRITE));
        assert!(!permits(a, &owner, EXEC));
        assert!(permits(a, &grouped, READ));
        assert!(!permits(a, &grouped, WRITE));
        assert!(!permits(a, &other, READ));
        assert!(!permits(a, &stranger, READ));
        assert!(permits(a, &Actor::root(), READ | WRITE | EXEC));
        // The owner gets the owner's bits only, even if "other" would allow more.
        let b = Attrs { mode: 0o047, ..a };
        assert!(!permits(b, &owner, READ));
        assert!(permits(b, &other, READ | WRITE | EXEC));
    }

    #[test]
    fn sticky_directories() {
        let dir = Attrs {
            owner: 1,
            group: 1,
            mode: 0o1777,
        };
        let entry = Attrs {
            owner: 2,
            group: 2,
            mode: 0o644,
        };
        assert!(sticky_allows(dir, entry, &actor(Some(2), &[2])));
        assert!(sticky_allows(dir, entry, &actor(Some(1), &[1])));
        assert!(!sticky_allows(dir, entry, &actor(Some(3), &[3])));
        let plain = Attrs { mode: 0o777, ..dir };
        assert!(sticky_allows(plain, entry, &actor(Some(3), &[3])));
    }

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(true, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(false, 0o600), "-rw-------");
        assert_eq!(mode_string(true, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(true, 0o1770), "drwxrwx--T");
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a"), "/");
    }
}
