//! The in-memory index cache (Thanos's `InMemoryIndexCache`, `--index-cache-size`): postings
//! lists and series entries as fetched from blocks' indexes, kept up to a byte budget and
//! evicted least recently used first, so that repeated queries skip those round trips.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use ulid::Ulid;

/// What is cached, per block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheKey {
    /// The postings list of a label pair.
    Postings(Ulid, String, String),
    /// The entry of a series ref.
    Series(Ulid, u64),
}

impl CacheKey {
    fn item_type(&self) -> &'static str {
        match self {
            CacheKey::Postings(..) => "Postings",
            CacheKey::Series(..) => "Series",
        }
    }

    fn size(&self) -> usize {
        match self {
            CacheKey::Postings(_, n, v) => 16 + n.len() + v.len(),
            CacheKey::Series(..) => 24,
        }
    }
}

type ItemLabel = [(&'static str, &'static str); 1];

struct Entry {
    value: Bytes,
    /// Position in the recency order.
    tick: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<CacheKey, Entry>,
    /// Keys by last use, oldest first.
    order: BTreeMap<u64, CacheKey>,
    next_tick: u64,
    bytes: usize,
}

/// A byte-bounded LRU cache of index items shared by a store's blocks.
pub struct IndexCache {
    max_bytes: usize,
    /// An item above this is not cached (Thanos's `max_item_size`, 125 MiB, at most the
    /// budget).
    max_item_bytes: usize,
    inner: Mutex<Inner>,
    requests: Family<ItemLabel, Counter>,
    hits: Family<ItemLabel, Counter>,
    added: Family<ItemLabel, Counter>,
    evicted: Family<ItemLabel, Counter>,
    size: Family<ItemLabel, Gauge>,
    items: Family<ItemLabel, Gauge>,
}

impl IndexCache {
    /// A cache of `max_bytes` (0 caches nothing), its metrics registered under Thanos's names.
    pub fn new(max_bytes: usize, registry: &mut Registry) -> Self {
        let cache = IndexCache {
            max_bytes,
            max_item_bytes: max_bytes.min(125 << 20),
            inner: Mutex::new(Inner::default()),
            requests: Family::default(),
            hits: Family::default(),
            added: Family::default(),
            evicted: Family::default(),
            size: Family::default(),
            items: Family::default(),
        };
        for item in ["Postings", "Series"] {
            let l = [("item_type", item)];
            cache.requests.get_or_create(&l).inc_by(0);
            cache.hits.get_or_create(&l).inc_by(0);
            cache.added.get_or_create(&l).inc_by(0);
            cache.evicted.get_or_create(&l).inc_by(0);
            cache.size.get_or_create(&l).set(0);
            cache.items.get_or_create(&l).set(0);
        }
        registry.register(
            "thanos_store_index_cache_requests",
            "Total number of requests to the cache",
            cache.requests.clone(),
        );
        registry.register(
            "thanos_store_index_cache_hits",
            "Total number of requests to the cache that were a hit",
            cache.hits.clone(),
        );
        registry.register(
            "thanos_store_index_cache_items_added",
            "Total number of items that were added to the index cache",
            cache.added.clone(),
        );
        registry.register(
            "thanos_store_index_cache_items_evicted",
            "Total number of items that were evicted from the index cache",
            cache.evicted.clone(),
        );
        registry.register(
            "thanos_store_index_cache_items_size_bytes",
            "Current byte size of items in the index cache",
            cache.size.clone(),
        );
        registry.register(
            "thanos_store_index_cache_items",
            "Current number of items in the index cache",
            cache.items.clone(),
        );
        cache
    }

    /// The cached value of `key`, which becomes the most recently used.
    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        let l = [("item_type", key.item_type())];
        self.requests.get_or_create(&l).inc();
        let mut inner = self.inner.lock();
        let tick = inner.next_tick;
        let entry = inner.entries.get_mut(key)?;
        let old = std::mem::replace(&mut entry.tick, tick);
        let value = entry.value.clone();
        inner.next_tick += 1;
        if let Some(k) = inner.order.remove(&old) {
            inner.order.insert(tick, k);
        }
        self.hits.get_or_create(&l).inc();
        Some(value)
    }

    /// Keeps `value` under `key`, evicting the least recently used items to make room. The
    /// bytes are copied, so a value cut from a larger fetched range does not keep it alive.
    pub fn put(&self, key: CacheKey, value: &[u8]) {
        let cost = value.len() + key.size();
        if cost > self.max_item_bytes {
            return;
        }
        let l = [("item_type", key.item_type())];
        let mut inner = self.inner.lock();
        if inner.entries.contains_key(&key) {
            return;
        }
        while inner.bytes + cost > self.max_bytes {
            let Some((_, oldest)) = inner.order.pop_first() else { break };
            if let Some(e) = inner.entries.remove(&oldest) {
                let freed = e.value.len() + oldest.size();
                inner.bytes -= freed;
                let ol = [("item_type", oldest.item_type())];
                self.evicted.get_or_create(&ol).inc();
                self.size.get_or_create(&ol).dec_by(freed as i64);
                self.items.get_or_create(&ol).dec();
            }
        }
        let tick = inner.next_tick;
        inner.next_tick += 1;
        inner.order.insert(tick, key.clone());
        inner.entries.insert(key, Entry { value: Bytes::copy_from_slice(value), tick });
        inner.bytes += cost;
        self.added.get_or_create(&l).inc();
        self.size.get_or_create(&l).inc_by(cost as i64);
        self.items.get_or_create(&l).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let cache = IndexCache::new(3 * (100 + 24), &mut Registry::default());
        let id = Ulid::nil();
        let key = |r| CacheKey::Series(id, r);
        for r in 0..3 {
            cache.put(key(r), &[r as u8; 100]);
        }
        assert!(cache.get(&key(0)).is_some());
        cache.put(key(3), &[3; 100]);
        assert!(cache.get(&key(1)).is_none(), "the least recently used is evicted");
        for r in [0, 2, 3] {
            assert_eq!(cache.get(&key(r)).as_deref(), Some(&[r as u8; 100][..]));
        }
        // Too large for the budget: not cached, nothing evicted.
        cache.put(key(9), &[9; 400]);
        assert!(cache.get(&key(9)).is_none() && cache.get(&key(0)).is_some());
        let none = IndexCache::new(0, &mut Registry::default());
        none.put(key(0), &[1]);
        assert!(none.get(&key(0)).is_none());
    }
}
