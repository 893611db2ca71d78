//! Maps keyed by ids the master assigns itself (inode and chunk numbers), hashed with a
//! one-multiply hasher instead of SipHash. The keys are never chosen by a client or a
//! chunkserver (they come from the state's own counters), so hash flooding is not a concern;
//! SipHash was the top symbol of a master holding 1 M files (its O(N) passes and every
//! lookup). A multiply by an odd constant is a bijection modulo every power of two, so
//! sequential ids fill a table's buckets evenly; its high bits (hashbrown's tag) are mixed by
//! the multiply too.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by master-assigned ids.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`] (for integer keys; other bytes are folded in 8 at a time).
#[derive(Clone, Copy, Default, Debug)]
pub struct IdHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        let b = BuildHasherDefault::<IdHasher>::default();
        let mut seen = std::collections::HashSet::new();
        for id in 0u64..4096 {
            seen.insert(b.hash_one(id) & 4095);
        }
        assert_eq!(seen.len(), 4096);
        let mut m: IdMap<u64, u64> = IdMap::default();
        for i in 0..10_000 {
            m.insert(i * 7, i);
        }
        assert!((0..10_000).all(|i| m.get(&(i * 7)) == Some(&i)));
    }
}
