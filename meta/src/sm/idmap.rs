//! Maps keyed by ids the master assigns itself (inode and chunk numbers), cut into
//! [`SHARDS`] hash maps so that growing one never rehashes more than a 256th of it at once.
//!
//! A single `HashMap` of 10 M entries doubles by moving every entry in one go, ≈ 1 s, under
//! whatever lock guards it: the soft state's replica map did this while taking in the full
//! reports of 1,000 chunkservers and its leader went silent for 1.6 s (`shale-bench
//! sim-cluster`: runtime stalls and an election); the state's maps do it under the lock
//! `apply` holds. A shard is picked from the top 16 bits of the id times one odd constant,
//! and the map inside hashes with another constant (its tag bits do not repeat the shard's).
//!
//! **Shards are unequal on purpose.** With equal shares every shard would double at the same
//! moment: sequential ids times a constant are a low-discrepancy sequence, so 256 equal shards
//! of a million ids differ by at most 7 entries, and all 256 doubled within the same 2,000
//! inserts — the whole map rehashed inside one `apply` (and its memory doubled at once) on
//! every master at the same log index (a 10 M-file load: +0.9 GB on each master within a
//! second at ≈ 5 M files, then elections). Shard `i` takes a share proportional to
//! `2^(i / SHARDS)` (the largest twice the smallest), so for every doubling of the whole map
//! each shard doubles once, at a total spread evenly (in log scale) over that doubling:
//! at most a few shards, never more than ≈ 1/128 of the entries, move at once.
//!
//! [`IdMap`] hashes with a one-multiply hasher instead of SipHash. Its keys are never chosen
//! by a client or a chunkserver (they come from the state's own counters), so hash flooding
//! is not a concern; SipHash was the top symbol of a master holding 1 M files (its O(N)
//! passes and every lookup). A multiply by an odd constant is a bijection modulo every power
//! of two, so sequential ids fill a table's buckets evenly. Maps with keys others choose use
//! a seeded hasher ([`Sharded`] with `foldhash`).
//!
//! Serialized as one map (the bytes a `HashMap` of the same entries gives, up to order), or
//! in **parts** that load in parallel: part `p` of `n` holds the shards [`part_shards`]`(p, n)`
//! as one sequence ([`Sharded::encode_shards`]); each part decodes into its own shards
//! ([`Sharded::decode_shards`], which refuses an entry of another part and a repeated id) and
//! [`Sharded::from_shards`] puts them together without moving an entry.
use serde::de::{DeserializeOwned, DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::marker::PhantomData;
use std::ops::Range;

/// Number of shards (a power of two).
pub const SHARDS: usize = 256;

/// Entries reserved at most from a decoded length (a forged length must not allocate much
/// before the entries themselves run out).
const DECODE_RESERVE_MAX: usize = 1 << 22;

/// A map keyed by master-assigned ids.
pub type IdMap<K, V> = Sharded<K, V, IdBuild>;

/// The hasher builder of [`IdMap`] (its shards are `HashMap<K, V, IdBuild>`).
pub type IdBuild = BuildHasherDefault<IdHasher>;

/// A hash map cut into [`SHARDS`] maps by key (see the module doc).
#[derive(Clone)]
pub struct Sharded<K, V, S> {
    maps: Box<[HashMap<K, V, S>]>,
}

/// The hasher of [`IdMap`] (for integer keys; other bytes are folded in 8 at a time).
#[derive(Clone, Copy, Default, Debug)]
pub struct IdHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;
/// The shard multiplier: another odd constant, so a shard's keys do not share tag bits.
const K_SHARD: u64 = 0xD6E8_FEB8_6659_FD93;

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

/// Bits of the scrambled id that pick a shard (through [`shard_table`]).
const SLOT_BITS: u32 = 16;

/// Slot → shard: shard `i` owns a run of slots proportional to `2^(i / SHARDS)` (see the
/// module doc), at least one.
fn shard_table() -> &'static [u8; 1 << SLOT_BITS] {
    static TABLE: std::sync::OnceLock<Box<[u8; 1 << SLOT_BITS]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let w: Vec<f64> = (0..SHARDS)
            .map(|i| (i as f64 / SHARDS as f64).exp2())
            .collect();
        let total: f64 = w.iter().sum();
        let slots = (1usize << SLOT_BITS) as f64;
        let mut t = Box::new([0u8; 1 << SLOT_BITS]);
        let (mut i, mut upto) = (0usize, w[0] / total * slots);
        for (s, x) in t.iter_mut().enumerate() {
            while s as f64 + 0.5 >= upto && i + 1 < SHARDS {
                i += 1;
                upto += w[i] / total * slots;
            }
            *x = i as u8;
        }
        t
    })
}

fn shard(id: u64) -> usize {
    shard_table()[(id.wrapping_mul(K_SHARD) >> (64 - SLOT_BITS)) as usize] as usize
}

/// Each shard's share of the ids (of every 2^16): its slots in [`shard_table`].
fn shares() -> &'static [usize; SHARDS] {
    static SHARES: std::sync::OnceLock<[usize; SHARDS]> = std::sync::OnceLock::new();
    SHARES.get_or_init(|| {
        let mut n = [0usize; SHARDS];
        for &x in shard_table().iter() {
            n[x as usize] += 1;
        }
        n
    })
}

/// The shards part `p` of `parts` holds (`1 ≤ parts ≤ SHARDS`): consecutive runs that
/// together cover every shard once.
pub fn part_shards(p: usize, parts: usize) -> Range<usize> {
    p * SHARDS / parts..(p + 1) * SHARDS / parts
}

impl<K, V, S: Default> Default for Sharded<K, V, S> {
    fn default() -> Self {
        Sharded {
            maps: (0..SHARDS).map(|_| HashMap::default()).collect(),
        }
    }
}

impl<K, V, S> Sharded<K, V, S>
where
    K: Copy + Into<u64> + Hash + Eq,
    S: BuildHasher,
{
    fn of(&self, k: K) -> &HashMap<K, V, S> {
        &self.maps[shard(k.into())]
    }

    fn of_mut(&mut self, k: K) -> &mut HashMap<K, V, S> {
        &mut self.maps[shard(k.into())]
    }

    /// Room for `n` entries in all, without growing (a master about to take in the reports
    /// of every chunk it knows).
    pub fn reserve(&mut self, n: usize) {
        // A shard gets its share of n, give or take a few standard deviations.
        for (m, &share) in self.maps.iter_mut().zip(shares()) {
            let per = ((n as u128 * share as u128) >> SLOT_BITS) as usize;
            let per = per + per / 16 + 64;
            m.reserve(per.saturating_sub(m.len()));
        }
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.of(*k).get(k)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.of_mut(*k).get_mut(k)
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.of(*k).contains_key(k)
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.of_mut(k).insert(k, v)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.of_mut(*k).remove(k)
    }

    /// `k`'s value, made with `V::default()` if absent.
    pub fn entry_or_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        self.of_mut(k).entry(k).or_default()
    }
}

impl<K, V, S> Sharded<K, V, S> {
    pub fn len(&self) -> usize {
        self.maps.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.maps.iter().all(HashMap::is_empty)
    }

    /// Every entry (an exact-size iterator: serde writes its length first).
    pub fn iter(&self) -> Iter<'_, K, V, S> {
        Iter {
            shards: self.maps.iter(),
            cur: None,
            left: self.len(),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.maps.iter().flat_map(|m| m.keys())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.maps.iter().flat_map(|m| m.values())
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.maps.iter_mut().flat_map(|m| m.values_mut())
    }
}

impl<K, V, S> Sharded<K, V, S>
where
    K: Copy + Into<u64> + Hash + Eq,
    S: BuildHasher + Default,
{
    /// Appends the entries of `shards` to `out` as one postcard sequence of `item(k, v)`.
    pub fn encode_shards<'a, T: Serialize>(
        &'a self,
        shards: Range<usize>,
        out: Vec<u8>,
        item: impl Fn(&'a K, &'a V) -> T,
    ) -> postcard::Result<Vec<u8>> {
        let maps = self
            .maps
            .get(shards)
            .ok_or(postcard::Error::SerdeSerCustom)?;
        postcard::to_extend(&Items { maps, item }, out)
    }

    /// The maps of `shards`, decoded from all of `bytes` as [`Self::encode_shards`] wrote
    /// them (`entry` turns an item back into its key and value). Errors on an entry whose id
    /// belongs to another shard, on an id seen twice, and on bytes left over.
    pub fn decode_shards<T: DeserializeOwned>(
        shards: Range<usize>,
        bytes: &[u8],
        entry: impl Fn(T) -> (K, V),
    ) -> Result<Vec<HashMap<K, V, S>>, String> {
        if shards.start > shards.end || shards.end > SHARDS {
            return Err(format!("no shards {shards:?}"));
        }
        let mut maps: Vec<HashMap<K, V, S>> = shards.clone().map(|_| HashMap::default()).collect();
        let mut de = postcard::Deserializer::from_bytes(bytes);
        Fill {
            maps: &mut maps,
            // Every entry takes a byte at least: a forged count reserves no more than that.
            room: bytes.len().min(DECODE_RESERVE_MAX),
            shards,
            entry,
            _t: PhantomData,
        }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
        match de.finalize() {
            Ok([]) => Ok(maps),
            Ok(rest) => Err(format!("{} bytes after the entries", rest.len())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The map of every shard's map, in shard order (what the parts decoded).
    pub fn from_shards(maps: Vec<HashMap<K, V, S>>) -> Result<Self, String> {
        if maps.len() != SHARDS {
            return Err(format!("{} shards, not {SHARDS}", maps.len()));
        }
        Ok(Sharded {
            maps: maps.into_boxed_slice(),
        })
    }
}

/// Serializes shards' entries as one sequence of `item(k, v)` (length first, as postcard
/// needs).
struct Items<'a, K, V, S, F> {
    maps: &'a [HashMap<K, V, S>],
    item: F,
}

impl<'a, K, V, S, T, F> Serialize for Items<'a, K, V, S, F>
where
    T: Serialize,
    F: Fn(&'a K, &'a V) -> T,
{
    fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        let n = self.maps.iter().map(HashMap::len).sum();
        let mut seq = z.serialize_seq(Some(n))?;
        for (k, v) in self.maps.iter().flatten() {
            seq.serialize_element(&(self.item)(k, v))?;
        }
        seq.end()
    }
}

/// Decodes a sequence of items into the maps of `shards` (see `decode_shards`).
struct Fill<'m, K, V, S, T, F> {
    maps: &'m mut [HashMap<K, V, S>],
    /// Entries to reserve room for at most.
    room: usize,
    shards: Range<usize>,
    entry: F,
    _t: PhantomData<T>,
}

impl<'de, K, V, S, T, F> DeserializeSeed<'de> for Fill<'_, K, V, S, T, F>
where
    K: Copy + Into<u64> + Hash + Eq,
    S: BuildHasher,
    T: Deserialize<'de>,
    F: Fn(T) -> (K, V),
{
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, K, V, S, T, F> Visitor<'de> for Fill<'_, K, V, S, T, F>
where
    K: Copy + Into<u64> + Hash + Eq,
    S: BuildHasher,
    T: Deserialize<'de>,
    F: Fn(T) -> (K, V),
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        // Room for the announced entries (a forged count reserves at most `room`), shared
        // among the shards by their shares of the ids.
        let n = a.size_hint().unwrap_or(0).min(self.room) as u128;
        let shares = shares();
        let ours: u128 = shares[self.shards.clone()].iter().map(|&x| x as u128).sum();
        for (m, &share) in self.maps.iter_mut().zip(&shares[self.shards.clone()]) {
            let per = (n * share as u128 / ours.max(1)) as usize;
            m.reserve(per + per / 16);
        }
        while let Some(t) = a.next_element::<T>()? {
            let (k, v) = (self.entry)(t);
            let at = shard(k.into());
            if !self.shards.contains(&at) {
                return Err(A::Error::custom(format!(
                    "an entry of shard {at} in the part of shards {:?}",
                    self.shards
                )));
            }
            if self.maps[at - self.shards.start].insert(k, v).is_some() {
                return Err(A::Error::custom(format!("id {} twice", k.into())));
            }
        }
        Ok(())
    }
}

/// The entries of a [`Sharded`], shard after shard.
pub struct Iter<'a, K, V, S> {
    shards: std::slice::Iter<'a, HashMap<K, V, S>>,
    cur: Option<std::collections::hash_map::Iter<'a, K, V>>,
    left: usize,
}

impl<'a, K, V, S> Iterator for Iter<'a, K, V, S> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.cur.as_mut().and_then(Iterator::next) {
                self.left -= 1;
                return Some(e);
            }
            self.cur = Some(self.shards.next()?.iter());
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<K, V, S> ExactSizeIterator for Iter<'_, K, V, S> {}

impl<'a, K, V, S> IntoIterator for &'a Sharded<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V, S>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K, V, S> PartialEq for Sharded<K, V, S>
where
    K: Copy + Into<u64> + Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    fn eq(&self, o: &Self) -> bool {
        self.len() == o.len() && self.iter().all(|(k, v)| o.get(k) == Some(v))
    }
}

impl<K, V, S> Eq for Sharded<K, V, S>
where
    K: Copy + Into<u64> + Hash + Eq,
    V: Eq,
    S: BuildHasher,
{
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for Sharded<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Serialize, V: Serialize, S> Serialize for Sharded<K, V, S> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de, K, V, S> Deserialize<'de> for Sharded<K, V, S>
where
    K: Deserialize<'de> + Copy + Into<u64> + Hash + Eq,
    V: Deserialize<'de>,
    S: BuildHasher + Default,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<K, V, S>(PhantomData<(K, V, S)>);
        impl<'de, K, V, S> Visitor<'de> for V2<K, V, S>
        where
            K: Deserialize<'de> + Copy + Into<u64> + Hash + Eq,
            V: Deserialize<'de>,
            S: BuildHasher + Default,
        {
            type Value = Sharded<K, V, S>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut m = Sharded::default();
                m.reserve(a.size_hint().unwrap_or(0).min(DECODE_RESERVE_MAX));
                while let Some((k, v)) = a.next_entry()? {
                    m.insert(k, v);
                }
                Ok(m)
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type M = IdMap<u64, u64>;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        let b = BuildHasherDefault::<IdHasher>::default();
        let mut seen = std::collections::HashSet::new();
        for id in 0u64..4096 {
            seen.insert(b.hash_one(id) & 4095);
        }
        assert_eq!(seen.len(), 4096);
        let mut m = M::default();
        for i in 0..10_000 {
            m.insert(i * 7, i);
        }
        assert!((0..10_000).all(|i| m.get(&(i * 7)) == Some(&i)));
        assert_eq!(m.len(), 10_000);
        assert_eq!(m.remove(&7), Some(1));
        assert!(!m.contains_key(&7) && m.contains_key(&14));
        *m.entry_or_default(7) += 5;
        assert_eq!(m.get(&7), Some(&5));
        *m.get_mut(&7).expect("there") = 1;
        assert_eq!(m.iter().count(), 10_000);
        assert_eq!(m.keys().count(), 10_000);
        assert_eq!(m.values().count(), 10_000);
        m.values_mut().for_each(|v| *v += 1);
        assert_eq!(m.get(&7), Some(&2));
        assert!(M::default().is_empty() && !m.is_empty());
    }

    #[test]
    fn shards_fill_by_their_shares_and_reserve_holds_them() {
        let n = 1_000_000usize;
        let mut counts = vec![0usize; SHARDS];
        for i in 1..=n as u64 {
            counts[shard(i)] += 1;
        }
        let shares = shares();
        assert_eq!(shares.iter().sum::<usize>(), 1 << SLOT_BITS);
        for (i, &c) in counts.iter().enumerate() {
            let want = (n * shares[i]) >> SLOT_BITS;
            assert!(
                c.abs_diff(want) < want / 16 + 16,
                "shard {i}: {c}, share {want}"
            );
        }
        let (lo, hi) = (counts[0], counts[SHARDS - 1]);
        assert!(hi > lo * 19 / 10 && hi < lo * 21 / 10, "shares {lo}..{hi}");
        let mut m = M::default();
        m.reserve(n);
        let caps: Vec<usize> = m.maps.iter().map(HashMap::capacity).collect();
        for i in 1..=n as u64 {
            m.insert(i, i);
        }
        let after: Vec<usize> = m.maps.iter().map(HashMap::capacity).collect();
        assert_eq!(caps, after, "a shard grew past its reservation");
    }

    /// The point of unequal shards: growing the map never rehashes many shards at once.
    #[test]
    fn shards_grow_at_different_times() {
        let n = 1u64 << 20;
        let mut m = IdMap::<u64, ()>::default();
        let mut caps: Vec<usize> = m.maps.iter().map(HashMap::capacity).collect();
        let mut grew = Vec::new();
        for id in 1..=n {
            let s = shard(id);
            m.insert(id, ());
            let c = m.maps[s].capacity();
            if c != caps[s] {
                caps[s] = c;
                grew.push(id);
            }
        }
        // Past 64 k entries every shard doubles once per doubling of the map, at a total
        // spread over that doubling: about SHARDS / 32 / ln 2 ≈ 12 of them within any
        // 1/32 more entries. With equal shares all 256 did so within 2,000 inserts.
        let late: Vec<u64> = grew.into_iter().filter(|&i| i > 1 << 16).collect();
        let worst = late
            .iter()
            .map(|&a| late.iter().filter(|&&b| b >= a && b < a + a / 32).count())
            .max()
            .unwrap_or(0);
        assert!(worst <= 24, "{worst} shards grew within 1/32 more entries");
        assert!(late.len() >= 3 * SHARDS, "{} growths", late.len());
    }

    #[test]
    fn serialized_as_one_map() {
        let mut m = M::default();
        let mut h: HashMap<u64, u64> = HashMap::new();
        for i in 0..1000 {
            m.insert(i, i * 3);
            h.insert(i, i * 3);
        }
        let b = postcard::to_allocvec(&m).expect("encode");
        let from_h: M = postcard::from_bytes(&postcard::to_allocvec(&h).expect("encode"))
            .expect("a HashMap's bytes decode");
        assert_eq!(from_h, m);
        let back: HashMap<u64, u64> = postcard::from_bytes(&b).expect("decodes as a HashMap");
        assert_eq!(back, h);
        // A forged length fails cleanly once the entries run out.
        let mut forged = vec![0xFF, 0xFF, 0xFF, 0xFF, 0x0F];
        forged.extend_from_slice(&[1, 2]);
        assert!(postcard::from_bytes::<M>(&forged).is_err());
    }

    #[test]
    fn parts_decode_into_their_own_shards() {
        let mut m = M::default();
        for i in 0..20_000 {
            m.insert(i * 3 + 1, i);
        }
        for parts in [1, 3, 16, SHARDS] {
            let mut maps = Vec::new();
            for p in 0..parts {
                let r = part_shards(p, parts);
                let b = m
                    .encode_shards(r.clone(), Vec::new(), |k, v| (*k, *v))
                    .expect("encode");
                maps.extend(M::decode_shards(r, &b, |(k, v): (u64, u64)| (k, v)).expect("decode"));
            }
            assert_eq!(M::from_shards(maps).expect("whole"), m, "{parts} parts");
        }
        let (a, b) = (part_shards(0, 2), part_shards(1, 2));
        let bytes = m
            .encode_shards(a.clone(), Vec::new(), |k, v| (*k, *v))
            .expect("encode");
        // Another part's entries, an id twice, bytes left over, a short map list: refused.
        assert!(M::decode_shards(b, &bytes, |(k, v): (u64, u64)| (k, v)).is_err());
        let k = *m
            .keys()
            .find(|&&k| a.contains(&shard(k)))
            .expect("a key of part 0");
        let twice = postcard::to_allocvec(&vec![(k, 1u64), (k, 2)]).expect("encode");
        assert!(M::decode_shards(a.clone(), &twice, |(k, v): (u64, u64)| (k, v)).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(M::decode_shards(a.clone(), &long, |(k, v): (u64, u64)| (k, v)).is_err());
        assert!(M::decode_shards(0..SHARDS + 1, &bytes, |(k, v): (u64, u64)| (k, v)).is_err());
        assert!(M::from_shards(Vec::new()).is_err());
    }
}
