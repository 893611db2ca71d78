//! Decoding a directory's entries (`InodeKind::Dir`) by building the B-tree in one pass.
//!
//! Snapshots write each directory's entries in name order (the map's own order), and serde's
//! default decoder inserts them one by one: every insert searches the tree from the root,
//! comparing names (`memcmp`). Loading a 10 M-file snapshot spent 38 % of its time in those
//! inserts and comparisons. Here the entries are collected first and handed to
//! `BTreeMap::from_iter`, which sorts them (one pass over input already in order) and builds
//! the tree bottom-up without a search, with its leaves full (ascending inserts leave them
//! about half full, so a loaded directory also takes fewer nodes).
//!
//! Invariant: the map decoded is the one repeated inserts would give, for any input (in
//! order or not, with a name twice: the later entry wins, as with `insert`).
use super::name::Name;
use super::types::Entries;
use serde::de::{Deserializer, MapAccess, Visitor};
use shale_proto::InodeId;
use std::fmt;

/// Entries reserved at most before any is read (a forged length must not allocate much).
const RESERVE_MAX: usize = 4096;

/// `#[serde(deserialize_with)]` for `InodeKind::Dir`.
pub(crate) fn deserialize_dir<'de, D: Deserializer<'de>>(d: D) -> Result<Box<Entries>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Entries;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a directory's entries")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
            let hint = m.size_hint().unwrap_or(0).min(RESERVE_MAX);
            let mut all: Vec<(Name, InodeId)> = Vec::with_capacity(hint);
            while let Some(e) = m.next_entry::<Name, InodeId>()? {
                all.push(e);
            }
            Ok(all.into_iter().collect())
        }
    }
    d.deserialize_map(V).map(Box::new)
}

#[cfg(test)]
mod tests {
    use super::super::types::{Inode, InodeKind};
    use super::*;

    /// A directory inode (parent 1, mtime 0) whose entries are encoded as a map in the order
    /// given (a forged snapshot may give any order).
    fn dir(names: &[(&str, InodeId)]) -> Vec<u8> {
        #[derive(serde::Serialize)]
        enum Wire<'a> {
            Dir(#[serde(serialize_with = "in_order")] &'a [(&'a str, InodeId)]),
        }
        fn in_order<S: serde::Serializer>(e: &&[(&str, InodeId)], s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(e.iter().map(|(k, v)| (k, v)))
        }
        let mut b = vec![1, 0]; // parent, mtime
        b.extend(postcard::to_allocvec(&Wire::Dir(names)).expect("encode"));
        b
    }

    fn by_inserts(names: &[(&str, InodeId)]) -> Entries {
        let mut m = Entries::new();
        for (k, v) in names {
            m.insert(Name::new(k), *v);
        }
        m
    }

    #[test]
    fn decodes_as_inserts_would() {
        let sorted: Vec<(String, InodeId)> = (0..5000u64)
            .map(|i| (format!("f{i:05}"), InodeId(i + 1)))
            .collect();
        let sorted: Vec<(&str, InodeId)> = sorted.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let mut shuffled = sorted.clone();
        fastrand::Rng::with_seed(7).shuffle(&mut shuffled);
        let twice =
            [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)].map(|(k, v)| (k, InodeId(v)));
        for case in [&sorted[..], &shuffled[..], &twice[..], &[][..]] {
            let back: Inode = postcard::from_bytes(&dir(case)).expect("decode");
            let InodeKind::Dir(got) = back.kind else {
                panic!("not a directory")
            };
            assert_eq!(*got, by_inserts(case));
        }
        // The same bytes as the derived encoding of a real directory.
        let mut real: Inode = postcard::from_bytes(&dir(&[])).expect("decode");
        real.kind = InodeKind::Dir(Box::new(by_inserts(&sorted)));
        assert_eq!(postcard::to_allocvec(&real).expect("encode"), dir(&sorted));
    }

    #[test]
    fn a_forged_length_allocates_little() {
        // A map claiming u32::MAX entries, with one: refused (the bytes end), not reserved.
        let mut b = vec![1, 0, 0u8]; // parent, mtime, the variant: Dir
        b.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        b.extend([1, b'a', 7]);
        assert!(postcard::from_bytes::<Inode>(&b).is_err());
    }
}
