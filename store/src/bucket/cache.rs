//! The index cache (Thanos's `--index-cache-size` / `--index-cache.config`): postings lists and
//! series entries as fetched from blocks' indexes, kept in memory up to a byte budget (least
//! recently used evicted first) or in memcached or Redis, so that repeated queries skip those
//! round trips.

use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_cache::{CacheConfig, Lru, RemoteCache};
use tokio::runtime::Handle;
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

    /// The key in a remote cache (hashed there, and checked against the stored value).
    fn remote_key(&self) -> String {
        match self {
            CacheKey::Postings(id, name, value) => format!("P:{id}:{}:{name}{value}", name.len()),
            CacheKey::Series(id, r) => format!("S:{id}:{r}"),
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

const ITEM_TYPES: [&str; 2] = ["Postings", "Series"];

/// Where index items are cached and which.
#[derive(Clone)]
pub struct IndexCacheConfig {
    pub backend: IndexCacheBackend,
    /// Item types cached (Thanos's `enabled_items`); empty: all.
    pub enabled_items: Vec<String>,
}

#[derive(Clone)]
pub enum IndexCacheBackend {
    /// `max_bytes` 0 caches nothing; an item above `max_item_bytes` is not cached.
    InMemory {
        max_bytes: u64,
        max_item_bytes: u64,
    },
    Remote(Arc<RemoteCache>),
}

impl std::fmt::Debug for IndexCacheConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.backend {
            IndexCacheBackend::InMemory { max_bytes, max_item_bytes } => {
                format!("in-memory {max_bytes} bytes, items up to {max_item_bytes}")
            }
            IndexCacheBackend::Remote(r) => r.kind().to_owned(),
        };
        f.debug_struct("IndexCacheConfig")
            .field("backend", &backend)
            .field("enabled_items", &self.enabled_items)
            .finish()
    }
}

/// Thanos's in-memory index cache defaults: `max_size` 250MB, `max_item_size` 125MB.
const DEFAULT_MAX_BYTES: u64 = 250 << 20;
const DEFAULT_MAX_ITEM_BYTES: u64 = 125 << 20;

impl IndexCacheConfig {
    /// `--index-cache-size` alone: in memory.
    pub fn in_memory(max_bytes: u64) -> IndexCacheConfig {
        let backend = IndexCacheBackend::InMemory { max_bytes, max_item_bytes: max_bytes.min(DEFAULT_MAX_ITEM_BYTES) };
        IndexCacheConfig { backend, enabled_items: Vec::new() }
    }

    /// `--index-cache.config(-file)`, Thanos's index cache YAML; `source` names where it came
    /// from.
    pub fn from_yaml(yaml: &str, source: &str) -> Result<IndexCacheConfig, strata_cache::Error> {
        let parsed = CacheConfig::from_yaml(yaml, source)?;
        if let Some(bad) = parsed.enabled_items.iter().find(|i| !ITEM_TYPES.contains(&i.as_str())) {
            return Err(strata_cache::Error {
                origin: source.to_owned(),
                message: format!("enabled_items: unsupported item type {bad:?}; use Postings or Series"),
            });
        }
        let backend = match parsed.cache {
            CacheConfig::InMemory(s) => {
                let max_bytes = s.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
                IndexCacheBackend::InMemory {
                    max_bytes,
                    max_item_bytes: s.max_item_bytes.unwrap_or(DEFAULT_MAX_ITEM_BYTES).min(max_bytes),
                }
            }
            CacheConfig::Remote(r) => IndexCacheBackend::Remote(Arc::new(r.with_namespace("index"))),
        };
        Ok(IndexCacheConfig { backend, enabled_items: parsed.enabled_items })
    }

    fn caches(&self, item_type: &str) -> bool {
        self.enabled_items.is_empty() || self.enabled_items.iter().any(|i| i == item_type)
    }
}

enum Backend {
    InMemory {
        lru: Lru<CacheKey, Bytes>,
        max_item_bytes: u64,
        metrics: MemoryMetrics,
    },
    /// Reads wait on the runtime (they run on blocking threads); writes are sent in the
    /// background, as Thanos's asynchronous sets.
    Remote {
        cache: Arc<RemoteCache>,
        handle: Handle,
    },
}

/// The gauges and counters only an in-memory cache has.
#[derive(Default)]
struct MemoryMetrics {
    added: Family<ItemLabel, Counter>,
    evicted: Family<ItemLabel, Counter>,
    size: Family<ItemLabel, Gauge>,
    items: Family<ItemLabel, Gauge>,
}

/// The index cache shared by a store's blocks.
pub struct IndexCache {
    backend: Backend,
    config: IndexCacheConfig,
    requests: Family<ItemLabel, Counter>,
    hits: Family<ItemLabel, Counter>,
}

impl IndexCache {
    /// The cache `config` describes, its metrics registered under Thanos's names; a remote
    /// cache's requests run on `handle`'s runtime.
    pub fn new(config: IndexCacheConfig, handle: Handle, registry: &mut Registry) -> Self {
        let backend = match &config.backend {
            IndexCacheBackend::InMemory { max_bytes, max_item_bytes } => {
                let metrics = MemoryMetrics::default();
                for item in ITEM_TYPES {
                    let l = [("item_type", item)];
                    metrics.added.get_or_create(&l).inc_by(0);
                    metrics.evicted.get_or_create(&l).inc_by(0);
                    metrics.size.get_or_create(&l).set(0);
                    metrics.items.get_or_create(&l).set(0);
                }
                registry.register(
                    "thanos_store_index_cache_items_added",
                    "Total number of items that were added to the index cache",
                    metrics.added.clone(),
                );
                registry.register(
                    "thanos_store_index_cache_items_evicted",
                    "Total number of items that were evicted from the index cache",
                    metrics.evicted.clone(),
                );
                registry.register(
                    "thanos_store_index_cache_items_size_bytes",
                    "Current byte size of items in the index cache",
                    metrics.size.clone(),
                );
                registry.register(
                    "thanos_store_index_cache_items",
                    "Current number of items in the index cache",
                    metrics.items.clone(),
                );
                Backend::InMemory { lru: Lru::new(*max_bytes, 0, None), max_item_bytes: *max_item_bytes, metrics }
            }
            IndexCacheBackend::Remote(cache) => Backend::Remote { cache: cache.clone(), handle },
        };
        let cache = IndexCache { backend, config, requests: Family::default(), hits: Family::default() };
        for item in ITEM_TYPES {
            let l = [("item_type", item)];
            cache.requests.get_or_create(&l).inc_by(0);
            cache.hits.get_or_create(&l).inc_by(0);
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
        cache
    }

    /// The cached values of `keys`, each a hit becoming the most recently used. Blocks on the
    /// runtime for a remote cache: call it from a blocking thread.
    pub fn get_multi(&self, keys: &[CacheKey]) -> Vec<Option<Bytes>> {
        let asked: Vec<usize> = (0..keys.len()).filter(|&i| self.config.caches(keys[i].item_type())).collect();
        let mut out = vec![None; keys.len()];
        let found: Vec<Option<Bytes>> = match &self.backend {
            Backend::InMemory { lru, .. } => asked.iter().map(|&i| lru.get(&keys[i])).collect(),
            Backend::Remote { cache, handle } => {
                let names: Vec<String> = asked.iter().map(|&i| keys[i].remote_key()).collect();
                handle.block_on(cache.fetch(&names)).into_iter().map(|v| v.map(Bytes::from)).collect()
            }
        };
        for (i, value) in asked.into_iter().zip(found) {
            let l = [("item_type", keys[i].item_type())];
            self.requests.get_or_create(&l).inc();
            if value.is_some() {
                self.hits.get_or_create(&l).inc();
            }
            out[i] = value;
        }
        out
    }

    /// Keeps `value` under `key`. The bytes are copied, so a value cut from a larger fetched
    /// range does not keep it alive.
    pub fn put(&self, key: CacheKey, value: &[u8]) {
        if !self.config.caches(key.item_type()) {
            return;
        }
        match &self.backend {
            Backend::InMemory { lru, max_item_bytes, metrics } => {
                let cost = (value.len() + key.size()) as u64;
                if cost > *max_item_bytes || lru.contains(&key) {
                    return;
                }
                let l = [("item_type", key.item_type())];
                for (gone, freed) in lru.put(key, Bytes::copy_from_slice(value), cost) {
                    let gl = [("item_type", gone.item_type())];
                    metrics.evicted.get_or_create(&gl).inc();
                    metrics.size.get_or_create(&gl).dec_by(freed as i64);
                    metrics.items.get_or_create(&gl).dec();
                }
                metrics.added.get_or_create(&l).inc();
                metrics.size.get_or_create(&l).inc_by(cost as i64);
                metrics.items.get_or_create(&l).inc();
            }
            Backend::Remote { cache, handle } => {
                let (cache, name, value) = (cache.clone(), key.remote_key(), value.to_vec());
                handle.spawn(async move { cache.store(&name, &value).await });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use strata_testkit::{wait_for, CacheServer};

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
    }

    fn get(cache: &IndexCache, key: &CacheKey) -> Option<Bytes> {
        cache.get_multi(std::slice::from_ref(key)).pop().flatten()
    }

    #[test]
    fn least_recently_used_goes_first() {
        let rt = runtime();
        let cache =
            IndexCache::new(IndexCacheConfig::in_memory(3 * (100 + 24)), rt.handle().clone(), &mut Registry::default());
        let id = Ulid::nil();
        let key = |r| CacheKey::Series(id, r);
        for r in 0..3 {
            cache.put(key(r), &[r as u8; 100]);
        }
        assert!(get(&cache, &key(0)).is_some());
        cache.put(key(3), &[3; 100]);
        assert!(get(&cache, &key(1)).is_none(), "the least recently used is evicted");
        for r in [0, 2, 3] {
            assert_eq!(get(&cache, &key(r)).as_deref(), Some(&[r as u8; 100][..]));
        }
        // Too large for the budget: not cached, nothing evicted.
        cache.put(key(9), &[9; 400]);
        assert!(get(&cache, &key(9)).is_none() && get(&cache, &key(0)).is_some());
        let none = IndexCache::new(IndexCacheConfig::in_memory(0), rt.handle().clone(), &mut Registry::default());
        none.put(key(0), &[1]);
        assert!(get(&none, &key(0)).is_none());
    }

    #[test]
    fn enabled_items_choose_what_is_cached() {
        let rt = runtime();
        let config = IndexCacheConfig::from_yaml(
            "type: IN-MEMORY\nconfig:\n  max_size: 1MB\nenabled_items: [Postings]\n",
            "index-cache.yaml",
        )
        .unwrap();
        let cache = IndexCache::new(config, rt.handle().clone(), &mut Registry::default());
        let (postings, series) =
            (CacheKey::Postings(Ulid::nil(), "a".into(), "b".into()), CacheKey::Series(Ulid::nil(), 8));
        cache.put(postings.clone(), b"p");
        cache.put(series.clone(), b"s");
        assert_eq!(cache.get_multi(&[postings, series]), vec![Some(Bytes::from_static(b"p")), None]);
        let e = IndexCacheConfig::from_yaml("type: IN-MEMORY\nenabled_items: [Chunks]\n", "f").err().unwrap();
        assert!(e.to_string().contains("\"Chunks\""), "{e}");
    }

    /// A real memcached: what one block puts, a read gets back; label pairs that would run
    /// together in a key stay apart; a stopped server is a miss, never an error.
    #[test]
    fn memcached_index_cache() {
        let dir = tempfile::tempdir().unwrap();
        let server = CacheServer::memcached(dir.path());
        let rt = runtime();
        let yaml = format!("type: MEMCACHED\nconfig:\n  addresses: [\"{}\"]\n", server.addr);
        let config = IndexCacheConfig::from_yaml(&yaml, "index-cache.yaml").unwrap();
        let cache = IndexCache::new(config, rt.handle().clone(), &mut Registry::default());
        let id = Ulid::new();
        let keys = [
            CacheKey::Postings(id, "ab".into(), "c".into()),
            CacheKey::Postings(id, "a".into(), "bc".into()),
            CacheKey::Series(id, 16),
        ];
        for (i, k) in keys.iter().enumerate() {
            cache.put(k.clone(), &[i as u8; 3]);
        }
        wait_for("the background sets", Duration::from_secs(10), || {
            let got = cache.get_multi(&keys);
            let want: Vec<Option<Bytes>> = (0..3).map(|i| Some(Bytes::from(vec![i as u8; 3]))).collect();
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        })
        .unwrap();
        assert_eq!(get(&cache, &CacheKey::Series(Ulid::new(), 16)), None);
        server.proc.kill();
        assert_eq!(cache.get_multi(&keys), vec![None, None, None]);
    }
}
