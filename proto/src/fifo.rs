//! A small bounded cache shared by threads: at most `capacity` entries, the oldest inserted
//! goes first. For values that never go stale under their key (e.g. anything about a sealed
//! chunk at one version), so no invalidation is needed.
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

/// Entries by key, oldest first out.
#[derive(Debug)]
pub struct FifoCache<K, V> {
    capacity: usize,
    inner: Mutex<(HashMap<K, V>, VecDeque<K>)>,
}

impl<K: Hash + Eq + Clone, V: Clone> FifoCache<K, V> {
    /// An empty cache of at most `capacity` (≥ 1) entries.
    pub fn new(capacity: usize) -> Self {
        FifoCache {
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.get(key).cloned()
    }

    pub fn put(&self, key: K, value: V) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.insert(key.clone(), value).is_none() {
            g.1.push_back(key);
        }
        while g.1.len() > self.capacity {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
    }

    /// The value under `key`, inserting `make()` first if there is none (atomically: callers
    /// racing on one key all get the same value, e.g. one `OnceCell` that a single one fills).
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = g.0.get(&key) {
            return v.clone();
        }
        let v = make();
        g.0.insert(key.clone(), v.clone());
        g.1.push_back(key);
        while g.1.len() > self.capacity {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
        v
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_out_first_and_bounded() {
        let c = FifoCache::new(3);
        for i in 0..5u32 {
            c.put(i, i * 10);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&1), None);
        assert_eq!(c.get(&4), Some(40));
        c.put(4, 41);
        assert_eq!((c.len(), c.get(&4)), (3, Some(41)));
        assert_eq!(c.get_or_insert_with(4, || 99), 41);
        assert_eq!(c.get_or_insert_with(7, || 70), 70);
        assert_eq!((c.len(), c.get(&7), c.get(&2)), (3, Some(70), None));
    }
}
