//! `Name`: a directory entry's name in one pointer (8 bytes where `Box<str>` takes 16).
//!
//! Directory maps hold one name per file, in B-tree nodes of 11 slots that ascending inserts
//! leave about half full, so every byte of the key costs about two in the master's memory.
//! The bytes live in one heap block: a length header (one byte below 255; else the byte 255
//! and the length as 4 little-endian bytes) and the UTF-8 bytes.
//!
//! Invariants: the block was allocated by [`Name::new`] with [`layout`] of its header and
//! length, holds valid UTF-8 after the header, and is never written after construction (so
//! `Name` is `Send + Sync` like `Box<str>`). Ordering, equality and hashing are the `str`'s, so
//! a map keyed by `Name` is looked up with a `&str` (`Borrow<str>`).
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::alloc::{self, Layout};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::ptr::NonNull;

pub struct Name(NonNull<u8>);

// SAFETY: the block is owned by this `Name` alone and immutable after `new`.
unsafe impl Send for Name {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for Name {}

/// Bytes of the header for a name of `len` bytes.
fn header_len(len: usize) -> usize {
    if len < 255 {
        1
    } else {
        5
    }
}

fn layout(total: usize) -> Layout {
    // Alignment 1 and at most 5 + u32::MAX bytes (`new` checks): cannot fail on 64 bits.
    Layout::from_size_align(total, 1).expect("a name's block fits a layout")
}

impl Name {
    /// Panics on a name of 4 GiB or more (names come from checked paths: at most 255 bytes,
    /// or a few more for trash names; decoding refuses longer ones).
    pub fn new(s: &str) -> Name {
        let len = s.len();
        assert!(u32::try_from(len).is_ok(), "a name over 4 GiB");
        let head = header_len(len);
        let total = head + len;
        let lay = layout(total);
        // SAFETY: `total` ≥ 1, so the layout has a nonzero size.
        let p = unsafe { alloc::alloc(lay) };
        let Some(p) = NonNull::new(p) else {
            alloc::handle_alloc_error(lay)
        };
        // SAFETY: the block is `total` bytes: the header, then `len` bytes copied from `s`.
        unsafe {
            if head == 1 {
                p.as_ptr().write(len as u8);
            } else {
                p.as_ptr().write(255);
                let l = (len as u32).to_le_bytes();
                std::ptr::copy_nonoverlapping(l.as_ptr(), p.as_ptr().add(1), 4);
            }
            std::ptr::copy_nonoverlapping(s.as_ptr(), p.as_ptr().add(head), len);
        }
        Name(p)
    }

    /// (header bytes, name bytes).
    fn parts(&self) -> (usize, usize) {
        // SAFETY: the header was written by `new`: one byte, or 255 and 4 more.
        unsafe {
            let b = *self.0.as_ptr();
            if b < 255 {
                (1, b as usize)
            } else {
                let mut l = [0u8; 4];
                std::ptr::copy_nonoverlapping(self.0.as_ptr().add(1), l.as_mut_ptr(), 4);
                (5, u32::from_le_bytes(l) as usize)
            }
        }
    }

    pub fn as_str(&self) -> &str {
        let (head, len) = self.parts();
        // SAFETY: `new` copied `len` bytes of a `str` after the header; they are never
        // changed and live as long as `self`.
        unsafe {
            let bytes = std::slice::from_raw_parts(self.0.as_ptr().add(head), len);
            std::str::from_utf8_unchecked(bytes)
        }
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let (head, len) = self.parts();
        // SAFETY: allocated by `new` with this layout.
        unsafe { alloc::dealloc(self.0.as_ptr(), layout(head + len)) }
    }
}

impl Clone for Name {
    fn clone(&self) -> Name {
        Name::new(self.as_str())
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name::new(s)
    }
}

impl PartialEq for Name {
    fn eq(&self, o: &Name) -> bool {
        self.as_str() == o.as_str()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, o: &Name) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Name {
    fn cmp(&self, o: &Name) -> Ordering {
        self.as_str().cmp(o.as_str())
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

/// Serialized as the string it is (the bytes of the `Box<str>` it replaced).
impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Name;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name, E> {
                if u32::try_from(v.len()).is_err() {
                    return Err(E::custom("a name over 4 GiB"));
                }
                Ok(Name::new(v))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn one_pointer_any_length() {
        assert_eq!(std::mem::size_of::<Name>(), 8);
        assert_eq!(std::mem::size_of::<Option<Name>>(), 8);
        for len in [0, 1, 12, 254, 255, 256, 1000, 70_000] {
            let s: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let n = Name::new(&s);
            assert_eq!(n.as_str(), s, "{len}");
            assert_eq!(n.clone(), n);
            let b = postcard::to_allocvec(&n).expect("encode");
            assert_eq!(
                b,
                postcard::to_allocvec(&s.clone().into_boxed_str()).expect("box")
            );
            let back: Name = postcard::from_bytes(&b).expect("decode");
            assert_eq!(back, n);
        }
        assert_eq!(Name::new("é✓").as_str(), "é✓");
    }

    #[test]
    fn a_map_orders_and_finds_by_str() {
        let mut m: BTreeMap<Name, u32> = BTreeMap::new();
        for (i, k) in ["b", "a", "ab", "", "z"].iter().enumerate() {
            m.insert(Name::new(k), i as u32);
        }
        let keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["", "a", "ab", "b", "z"]);
        assert_eq!(m.get("ab"), Some(&2));
        let from = (std::ops::Bound::Excluded("aa"), std::ops::Bound::Unbounded);
        let next = m.range::<str, _>(from).next().map(|(k, _)| k.as_str());
        assert_eq!(next, Some("ab"));
    }
}
