//! Files under construction: create, writer leases, chunk allocation, complete and abandon.
//!
//! Invariants: a file under construction is in `pending` and `pending_names`, never linked in a
//! directory; only the lease holder may change it, and only while the lease is live (by log
//! time); `Complete` links it atomically, replacing an overwritten file; an expired or abandoned
//! file's chunks all become garbage.
use super::*;
use thin_vec::ThinVec;

impl MetaState {
    /// Starts file `p` as `who`: `layout` is (replication, chunk size), `lease` is (holder,
    /// lease length).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn create(
        &mut self,
        p: &str,
        overwrite: bool,
        layout: (Option<u8>, Option<u64>),
        lease: (Holder, u64),
        mode: u16,
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        let ((replication, chunk_size), (holder, lease_ms)) = (layout, lease);
        if lease_ms == 0 || lease_ms > LEASE_MS_MAX {
            return Err(MetaError::BadArgument(format!(
                "lease of {lease_ms} ms must be 1..={LEASE_MS_MAX}"
            )));
        }
        let chunk_size_log2 = match chunk_size {
            Some(b) => check_chunk_size(b)?,
            None => self.chunk_size_log2,
        };
        self.check_new_attrs(who, mode)?;
        let (dir, name) = self.parent_dir(p, who)?;
        self.check_new_name(p, name)?;
        let replication = check_replication(match replication {
            Some(r) => r,
            None => self.inherited_replication(dir),
        })?;
        // One search of the directory (at 10 M files a search is a few dozen cache misses).
        let existing = self.entries(dir).and_then(|e| e.get(name)).copied();
        match existing {
            Some(id) if self.is_dir(id) => return Err(MetaError::IsADirectory(p.to_string())),
            Some(_) if !overwrite => return Err(MetaError::AlreadyExists(p.to_string())),
            Some(old) => {
                self.require_unlink(dir, old, who, p)?;
                self.require(old, who, perms::WRITE, || p.to_string())?;
            }
            None => self.require(dir, who, perms::WRITE | perms::EXEC, || {
                format!("{p} (its directory)")
            })?,
        }
        let replacing = existing.is_some();
        let key: (InodeId, Name) = (dir, name.into());
        let stale = self.pending_names.get(&key).copied();
        if let Some(other) = stale {
            let live = self
                .pending
                .get(&other)
                .is_some_and(|o| o.expires_ms > now_ms);
            if live {
                return Err(MetaError::Lease {
                    file: other,
                    why: format!("{p} is being written by another client"),
                });
            }
        }
        if !replacing {
            // An expired writer's file at the same name is dropped first: it frees its charge.
            let credit = match stale.and_then(|f| self.inodes.get(&f).map(|i| (f, i))) {
                Some((
                    f,
                    i @ Inode {
                        kind: InodeKind::File(_),
                        ..
                    },
                )) => Usage::new(1, self.file_bytes(f, i)),
                _ => Usage::default(),
            };
            self.check_room(dir, Usage::new(1, 0), credit, &[])?;
        }
        if let Some(other) = stale {
            self.drop_pending(other);
        }
        let id = self.new_file_inode(dir, who, mode, (replication, chunk_size_log2), now_ms);
        let expires_ms = now_ms.saturating_add(lease_ms);
        self.pending.insert(
            id,
            Pending {
                parent: dir,
                name: name.into(),
                holder,
                expires_ms,
                overwrite,
            },
        );
        self.pending_names.insert(key, id);
        self.charge(dir, Usage::new(1, 0), false);
        Ok(Reply::Created {
            file: id,
            lease_expires_ms: expires_ms,
            chunk_size_bytes: 1 << chunk_size_log2,
            replication,
        })
    }

    /// A new empty file inode in `dir` (linked nowhere yet), made by `who` with `mode`;
    /// `layout` is (replication, log2 of the chunk size).
    pub(super) fn new_file_inode(
        &mut self,
        dir: InodeId,
        who: &Actor,
        mode: u16,
        (replication, chunk_size_log2): (u8, u8),
        now_ms: u64,
    ) -> InodeId {
        let id = self.alloc_inode();
        let attrs = self.new_attrs(who, dir, mode);
        self.inodes.insert(
            id,
            Inode {
                parent: dir,
                mtime_ms: now_ms,
                attrs,
                dir_replication: 0,
                replication,
                chunk_size_log2,
                kind: InodeKind::File(FileMeta {
                    length: 0,
                    chunks: ThinVec::new(),
                }),
            },
        );
        id
    }

    /// Checks that `file` is under construction by `holder` (live lease or not), and that
    /// `who` made it (or is a superuser).
    fn held_by(&self, file: InodeId, holder: Holder, who: &Actor) -> Res<&Pending> {
        let p = self
            .pending
            .get(&file)
            .ok_or(MetaError::UnknownFile(file))?;
        if p.holder != holder {
            return Err(MetaError::Lease {
                file,
                why: "the writer lease is held by another client".into(),
            });
        }
        if !who.superuser && who.uid != Some(self.attrs(file).owner) {
            return Err(MetaError::Denied(format!(
                "user={} did not create file {file} under construction",
                who.name
            )));
        }
        Ok(p)
    }

    /// Checks that `holder` holds a live lease on `file` (made by `who`).
    pub(super) fn writer(
        &self,
        file: InodeId,
        holder: Holder,
        now_ms: u64,
        who: &Actor,
    ) -> Res<&Pending> {
        let p = self.held_by(file, holder, who)?;
        if p.expires_ms <= now_ms {
            return Err(MetaError::Lease {
                file,
                why: "the writer lease expired".into(),
            });
        }
        Ok(p)
    }

    /// A file's chunk size.
    pub(super) fn chunk_size_of(&self, file: InodeId) -> Res<u64> {
        match self.inodes.get(&file).and_then(|i| i.file()) {
            Some((_, cs, _)) => Ok(cs),
            None => Err(MetaError::UnknownFile(file)),
        }
    }

    pub(super) fn file_mut(&mut self, file: InodeId) -> Res<&mut FileMeta> {
        match self.inodes.get_mut(&file).map(|i| &mut i.kind) {
            Some(InodeKind::File(f)) => Ok(f),
            _ => Err(MetaError::UnknownFile(file)),
        }
    }

    pub(super) fn renew(
        &mut self,
        file: InodeId,
        holder: Holder,
        lease_ms: u64,
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        if lease_ms == 0 || lease_ms > LEASE_MS_MAX {
            return Err(MetaError::BadArgument(format!(
                "lease of {lease_ms} ms must be 1..={LEASE_MS_MAX}"
            )));
        }
        self.writer(file, holder, now_ms, who)?;
        let expires_ms = now_ms.saturating_add(lease_ms);
        if let Some(p) = self.pending.get_mut(&file) {
            p.expires_ms = expires_ms;
        }
        Ok(Reply::Lease { expires_ms })
    }

    pub(super) fn allocate_chunk(
        &mut self,
        file: InodeId,
        holder: Holder,
        index: u32,
        pipeline: &[NodeId],
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        let parent = self.writer(file, holder, now_ms, who)?.parent;
        self.check_pipeline(pipeline)?;
        let n = self.file_mut(file)?.chunks.len();
        let (id, version) = if index as usize == n {
            let cs = Usage::new(0, self.chunk_size_of(file)?);
            self.check_room(parent, cs, Usage::default(), &[])?;
            self.charge(parent, cs, false);
            let id = ChunkId(self.next_chunk);
            self.next_chunk += 1;
            self.file_mut(file)?.chunks.push(id);
            let meta = ChunkMeta::new(file, index);
            self.chunks.insert(id, meta);
            (id, meta.version())
        } else if index as usize + 1 == n {
            let id = self.file_mut(file)?.chunks[n - 1];
            let meta = self
                .chunks
                .get_mut(&id)
                .ok_or(MetaError::UnknownFile(file))?;
            if meta.bump() {
                (id, meta.version())
            } else {
                // This id has used up its versions: the index gets a new id (version 1) and
                // the old one, replicas and all, is garbage.
                let old = meta.version();
                self.chunks.remove(&id);
                self.garbage.insert(id, old);
                let fresh = ChunkId(self.next_chunk);
                self.next_chunk += 1;
                self.file_mut(file)?.chunks[n - 1] = fresh;
                let meta = ChunkMeta::new(file, index);
                self.chunks.insert(fresh, meta);
                (fresh, meta.version())
            }
        } else {
            return Err(MetaError::ChunkIndex {
                file,
                index,
                why: format!("the file has {n} chunks; chunks are written in order"),
            });
        };
        Ok(Reply::Chunk {
            id,
            version,
            pipeline: pipeline.to_vec(),
        })
    }

    pub(super) fn abandon_chunk(
        &mut self,
        file: InodeId,
        holder: Holder,
        index: u32,
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        let parent = self.writer(file, holder, now_ms, who)?.parent;
        let cs = Usage::new(0, self.chunk_size_of(file)?);
        let f = self.file_mut(file)?;
        if f.chunks.is_empty() || index as usize + 1 != f.chunks.len() {
            let n = f.chunks.len();
            return Err(MetaError::ChunkIndex {
                file,
                index,
                why: format!(
                    "only the last chunk ({}) can be abandoned",
                    n.saturating_sub(1)
                ),
            });
        }
        if let Some(id) = f.chunks.pop() {
            if let Some(meta) = self.chunks.remove(&id) {
                self.garbage.insert(id, meta.version());
                self.security.digests.remove(&id);
            }
        }
        self.charge(parent, cs, true);
        Ok(Reply::Done)
    }

    pub(super) fn complete(
        &mut self,
        file: InodeId,
        holder: Holder,
        length: u64,
        now_ms: u64,
        who: &Actor,
    ) -> Res<Reply> {
        let p = self.writer(file, holder, now_ms, who)?;
        let (parent, overwrite) = (p.parent, p.overwrite);
        let Some((f, cs, _)) = self.inodes.get(&file).and_then(|i| i.file()) else {
            return Err(MetaError::UnknownFile(file));
        };
        let n = f.chunks.len() as u64;
        let ok = if n == 0 {
            length == 0
        } else {
            length > (n - 1) * cs && length <= n * cs
        };
        if !ok {
            return Err(MetaError::Length {
                file,
                length,
                why: format!("{n} chunks of {cs} bytes cannot hold it"),
            });
        }
        let existing = self.entries(parent).and_then(|e| e.get(&p.name)).copied();
        let replaced = match existing {
            Some(id) if self.is_dir(id) => {
                return Err(MetaError::IsADirectory(p.name.to_string()));
            }
            Some(_) if !overwrite => return Err(MetaError::AlreadyExists(p.name.to_string())),
            other => other,
        };
        if let Some(old) = replaced {
            self.remove_inode(old);
        }
        // The reservation (whole chunks) becomes the length.
        self.charge(parent, Usage::new(0, n * cs - length), true);
        // The pending record's own name moves into the directory (no copy is made).
        let name = self.pending.remove(&file).map(|p| {
            let key = (parent, p.name);
            self.pending_names.remove(&key);
            key.1
        });
        if let Ok(f) = self.file_mut(file) {
            f.length = length;
            // Its chunks are fixed now: no growth slack kept for them.
            f.chunks.shrink_to_fit();
        }
        self.touch(file, now_ms);
        if let (Some(name), Some(e)) = (name, self.entries_mut(parent)) {
            e.insert(name, file);
        }
        self.touch(parent, now_ms);
        Ok(Reply::Completed { file, length })
    }

    pub(super) fn abandon(&mut self, file: InodeId, holder: Holder, who: &Actor) -> Res<Reply> {
        self.held_by(file, holder, who)?;
        self.drop_pending(file);
        Ok(Reply::Done)
    }

    /// Removes a file under construction and turns its chunks into garbage.
    pub(super) fn drop_pending(&mut self, file: InodeId) {
        // Removed while still pending: its charge is its reservation.
        self.remove_inode(file);
        if let Some(p) = self.pending.remove(&file) {
            self.pending_names.remove(&(p.parent, p.name));
        }
    }

    pub(super) fn expire_leases(&mut self, now_ms: u64) -> Reply {
        let expired: Vec<InodeId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.expires_ms <= now_ms)
            .map(|(f, _)| *f)
            .collect();
        for f in &expired {
            self.drop_pending(*f);
        }
        Reply::Expired(expired.len() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(s: &mut MetaState, file: InodeId, index: u32) -> (ChunkId, ChunkVersion) {
        let cmd = Command::AllocateChunk {
            file,
            holder: 1,
            index,
            pipeline: vec![NodeId(1)],
        };
        match s.apply(&cmd, 2) {
            Reply::Chunk { id, version, .. } => (id, version),
            other => panic!("allocate: {other:?}"),
        }
    }

    #[test]
    fn a_chunk_out_of_versions_gets_a_new_id() {
        let mut s = MetaState::new(1 << 20, 1).expect("state");
        let cmd = Command::RegisterChunkserver {
            uuid: "cs".into(),
            address: "127.0.0.1:1".into(),
            host: "h".into(),
            rack: None,
            capacity_bytes: 1 << 40,
        };
        assert_eq!(s.apply(&cmd, 1), Reply::Server(NodeId(1)));
        let cmd = Command::Create {
            path: "/f".into(),
            overwrite: false,
            replication: None,
            chunk_size_bytes: None,
            holder: 1,
            lease_ms: 1000,
        };
        let Reply::Created { file, .. } = s.apply(&cmd, 1) else {
            panic!("create");
        };
        let (a, _) = alloc(&mut s, file, 0);
        let m = s.chunks.get_mut(&a).expect("chunk");
        *m = m.with_version(u32::MAX - 1);
        assert_eq!(
            alloc(&mut s, file, 0),
            (a, ChunkVersion(u64::from(u32::MAX)))
        );
        let (b, v) = alloc(&mut s, file, 0);
        assert_ne!(a, b, "a new id");
        assert_eq!(v, ChunkVersion(1));
        assert_eq!(s.chunk_version(b), Some(ChunkVersion(1)));
        assert_eq!(s.chunk_version(a), None);
        let garbage: Vec<_> = s.garbage().map(|(c, v)| (*c, *v)).collect();
        assert_eq!(garbage, vec![(a, ChunkVersion(u64::from(u32::MAX)))]);
        let done = Command::Complete {
            file,
            holder: 1,
            length: 5,
        };
        assert!(matches!(s.apply(&done, 3), Reply::Completed { .. }));
        assert_eq!(
            s.file_chunks("/f").expect("chunks").chunks,
            vec![(b, ChunkVersion(1))]
        );
        s.validate().expect("a valid state");
        // The snapshot holds the version as it always did, and reads it back.
        let back =
            crate::snapshot::decode(&crate::snapshot::encode(&s).expect("encode")).expect("decode");
        assert_eq!(back, s);
    }
}
