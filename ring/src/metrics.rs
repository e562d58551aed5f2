//! The ring's metrics under Thanos's names: the shuffle-sharding subring cache
//! (`thanos_shuffle_shard_cache_*{hashring}`) and the hashrings file watcher
//! (`thanos_receive_config_*`, `thanos_receive_hashrings_file_*`, `thanos_receive_hashring_*`).
//! Counters are registered without `_total`: the registry appends it.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type HashringLabel = Vec<(&'static str, String)>;

/// The subring cache metrics of every shuffle-sharded hashring, by hashring name. Rings built
/// from successive configurations share them, so counters keep counting across reloads.
/// `RingMetrics::default()` counts without being registered anywhere (for tools and tests).
#[derive(Clone, Debug, Default)]
pub struct RingMetrics {
    requests: Family<HashringLabel, Counter>,
    hits: Family<HashringLabel, Counter>,
    items: Family<HashringLabel, Gauge>,
    max_items: Family<HashringLabel, Gauge>,
    evicted: Family<HashringLabel, Counter>,
}

impl RingMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = RingMetrics::default();
        registry.register(
            "thanos_shuffle_shard_cache_requests",
            "Total number of cache requests for shuffle shard subrings",
            m.requests.clone(),
        );
        registry.register(
            "thanos_shuffle_shard_cache_hits",
            "Total number of cache hits for shuffle shard subrings",
            m.hits.clone(),
        );
        registry.register("thanos_shuffle_shard_cache_items", "Total number of cached items", m.items.clone());
        registry.register(
            "thanos_shuffle_shard_cache_max_items",
            "Maximum number of items that can be cached",
            m.max_items.clone(),
        );
        registry.register(
            "thanos_shuffle_shard_cache_evicted",
            "Total number of items evicted from the cache",
            m.evicted.clone(),
        );
        m
    }

    /// The cache metrics of the hashring named `hashring`.
    pub(crate) fn cache(&self, hashring: &str) -> CacheMetrics {
        let label = vec![("hashring", hashring.to_owned())];
        CacheMetrics {
            requests: self.requests.get_or_create(&label).clone(),
            hits: self.hits.get_or_create(&label).clone(),
            items: self.items.get_or_create(&label).clone(),
            max_items: self.max_items.get_or_create(&label).clone(),
            evicted: self.evicted.get_or_create(&label).clone(),
        }
    }
}

/// One hashring's subring cache metrics.
#[derive(Clone, Debug)]
pub(crate) struct CacheMetrics {
    pub requests: Counter,
    pub hits: Counter,
    pub items: Gauge,
    pub max_items: Gauge,
    pub evicted: Counter,
}

/// The hashrings file watcher's metrics (Thanos's `ConfigWatcher`).
#[derive(Clone, Debug, Default)]
pub(crate) struct WatcherMetrics {
    pub hash: Gauge<f64, AtomicU64>,
    pub last_reload_successful: Gauge,
    pub last_reload_success_timestamp: Gauge<f64, AtomicU64>,
    pub changes: Counter,
    pub errors: Counter,
    pub refreshes: Counter,
    pub hashring_nodes: Family<Vec<(&'static str, String)>, Gauge>,
    pub hashring_tenants: Family<Vec<(&'static str, String)>, Gauge>,
}

impl WatcherMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = WatcherMetrics::default();
        registry.register(
            "thanos_receive_config_hash",
            "Hash of the currently loaded hashring configuration file",
            m.hash.clone(),
        );
        registry.register(
            "thanos_receive_config_last_reload_successful",
            "Whether the last hashring configuration file reload attempt was successful",
            m.last_reload_successful.clone(),
        );
        registry.register(
            "thanos_receive_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful hashring configuration file reload",
            m.last_reload_success_timestamp.clone(),
        );
        registry.register(
            "thanos_receive_hashrings_file_changes",
            "The number of times the hashrings configuration file has changed",
            m.changes.clone(),
        );
        registry.register(
            "thanos_receive_hashrings_file_errors",
            "The number of errors watching the hashrings configuration file",
            m.errors.clone(),
        );
        registry.register(
            "thanos_receive_hashrings_file_refreshes",
            "The number of refreshes of the hashrings configuration file",
            m.refreshes.clone(),
        );
        registry.register(
            "thanos_receive_hashring_nodes",
            "The number of nodes per hashring",
            m.hashring_nodes.clone(),
        );
        registry.register(
            "thanos_receive_hashring_tenants",
            "The number of tenants per hashring",
            m.hashring_tenants.clone(),
        );
        m
    }
}
