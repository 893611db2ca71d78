//! Typed ids. Each is a `Copy` newtype over `u64` with `Display`, so a chunk id can never be
//! passed where a version is expected.
//!
//! Invariant: on the wire, `0` means "field missing"; valid ids and versions are `>= 1`
//! (checked in [`crate::convert`]).
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<$name> for u64 {
            fn from(v: $name) -> u64 {
                v.0
            }
        }
    };
}

id_type!(
    /// A chunk, assigned by the master. Displayed as 16 hex digits (also its file name on disk).
    ChunkId,
    "chunk#"
);
id_type!(
    /// A chunk's version, bumped by the master on every write lease or pipeline change.
    ChunkVersion,
    "v"
);
id_type!(
    /// A server (master or chunkserver) in the cluster.
    NodeId,
    "node#"
);
id_type!(
    /// A file or directory in the namespace.
    InodeId,
    "inode#"
);

impl ChunkId {
    /// The file-name stem of this chunk on disk: 16 lowercase hex digits.
    pub fn file_stem(self) -> String {
        format!("{:016x}", self.0)
    }

    /// Parses a [`ChunkId::file_stem`]; `None` for anything else.
    pub fn from_file_stem(stem: &str) -> Option<Self> {
        if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(stem, 16).ok().map(ChunkId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_stem_roundtrip() {
        let id = ChunkId(0xabc);
        assert_eq!(id.to_string(), "chunk#2748");
        assert_eq!(id.file_stem(), "0000000000000abc");
        assert_eq!(ChunkId::from_file_stem(&id.file_stem()), Some(id));
        assert_eq!(ChunkId::from_file_stem("abc"), None);
        assert_eq!(ChunkId::from_file_stem("000000000000zabc"), None);
        assert_eq!(ChunkVersion(3).to_string(), "v3");
    }
}
