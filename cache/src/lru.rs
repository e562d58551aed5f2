//! An in-process cache bounded by bytes and by items, evicting the least recently used, with
//! an optional validity after which an entry is gone.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct Lru<K, V> {
    max_bytes: u64,
    /// 0: no bound on items.
    max_items: usize,
    validity: Option<Duration>,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Use stamp → key, oldest first.
    by_use: BTreeMap<u64, K>,
    next_stamp: u64,
    bytes: u64,
}

struct Entry<V> {
    value: V,
    /// What the entry counts against the byte budget.
    cost: u64,
    stamp: u64,
    stored: Instant,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    pub fn new(max_bytes: u64, max_items: usize, validity: Option<Duration>) -> Lru<K, V> {
        let inner = Inner { entries: HashMap::new(), by_use: BTreeMap::new(), next_stamp: 0, bytes: 0 };
        Lru { max_bytes, max_items, validity, inner: Mutex::new(inner) }
    }

    /// The value of `key`, which becomes the most recently used; an entry past its validity is
    /// removed and missed.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let entry = inner.entries.get_mut(key)?;
        if self.validity.is_some_and(|v| entry.stored.elapsed() > v) {
            let old = inner.entries.remove(key)?;
            inner.by_use.remove(&old.stamp);
            inner.bytes -= old.cost;
            return None;
        }
        inner.by_use.remove(&entry.stamp);
        entry.stamp = inner.next_stamp;
        inner.next_stamp += 1;
        inner.by_use.insert(entry.stamp, key.clone());
        Some(entry.value.clone())
    }

    pub fn contains(&self, key: &K) -> bool {
        self.inner.lock().entries.contains_key(key)
    }

    /// Keeps `value` under `key` (replacing what was there) at `cost` bytes, evicting the least
    /// recently used entries to make room; returns the keys and costs of the entries that left.
    /// A value costing more than the whole budget is not kept.
    pub fn put(&self, key: K, value: V, cost: u64) -> Vec<(K, u64)> {
        if cost > self.max_bytes {
            return Vec::new();
        }
        let mut gone = Vec::new();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        if let Some(old) = inner.entries.remove(&key) {
            inner.by_use.remove(&old.stamp);
            inner.bytes -= old.cost;
            gone.push((key.clone(), old.cost));
        }
        while inner.bytes + cost > self.max_bytes || (self.max_items > 0 && inner.entries.len() >= self.max_items) {
            let Some((_, oldest)) = inner.by_use.pop_first() else { break };
            if let Some(old) = inner.entries.remove(&oldest) {
                inner.bytes -= old.cost;
                gone.push((oldest, old.cost));
            }
        }
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        inner.by_use.insert(stamp, key.clone());
        inner.bytes += cost;
        inner.entries.insert(key, Entry { value, cost, stamp, stored: Instant::now() });
        gone
    }

    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let c: Lru<&str, u8> = Lru::new(1 << 20, 2, None);
        c.put("a", 1, 1);
        c.put("b", 2, 1);
        assert_eq!(c.get(&"a"), Some(1));
        assert_eq!(c.put("c", 3, 1), vec![("b", 1)]);
        assert_eq!(c.get(&"b"), None);
        assert_eq!((c.get(&"a"), c.get(&"c")), (Some(1), Some(3)));
        // Replacing reports the old entry.
        assert_eq!(c.put("a", 9, 1), vec![("a", 1)]);
        assert_eq!(c.get(&"a"), Some(9));
    }

    #[test]
    fn bytes_bound_the_cache() {
        let c: Lru<u32, ()> = Lru::new(10, 0, None);
        c.put(1, (), 8);
        assert_eq!(c.put(2, (), 8), vec![(1, 8)]);
        assert_eq!(c.len(), 1);
        // More than the whole budget: not kept, nothing evicted.
        assert!(c.put(3, (), 100).is_empty());
        assert!(c.get(&3).is_none() && c.contains(&2));
        let none: Lru<u32, ()> = Lru::new(0, 0, None);
        none.put(1, (), 1);
        assert!(none.is_empty());
    }

    #[test]
    fn entries_expire_after_their_validity() {
        let c: Lru<u32, u32> = Lru::new(100, 0, Some(Duration::ZERO));
        c.put(1, 1, 1);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(c.get(&1), None);
        assert!(c.is_empty());
    }
}
