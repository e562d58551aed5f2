//! Thanos's cache configurations (`type: IN-MEMORY | MEMCACHED | REDIS`) and the caches they
//! describe: settings for an in-process [`Lru`], or a [`RemoteCache`] over memcached or Redis.
//! A remote cache that fails is logged and counts as a miss: it never fails its caller.

mod lru;
mod memcached;
mod pool;
mod redis;

use std::time::Duration;

use serde::Deserialize;

pub use lru::Lru;
pub use memcached::MemcachedClient;
pub use redis::RedisClient;

/// A cache configuration that cannot be used; `origin` names where it came from (a file or a
/// flag).
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct Error {
    pub origin: String,
    pub message: String,
}

/// A cache as configured.
pub enum CacheConfig {
    InMemory(InMemorySettings),
    Remote(RemoteCache),
}

/// The `IN-MEMORY` settings, each `None` when not given (the defaults are the user's: Thanos's
/// index cache and results cache have different ones).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InMemorySettings {
    pub max_bytes: Option<u64>,
    /// 0: no bound on items.
    pub max_items: usize,
    pub max_item_bytes: Option<u64>,
    pub validity: Option<Duration>,
}

/// The configuration file, with the fields of Thanos's index cache configuration around the
/// backend's (`enabled_items`, `ttl`).
pub struct ParsedConfig {
    pub cache: CacheConfig,
    /// Item types to cache; empty: all.
    pub enabled_items: Vec<String>,
    pub ttl: Option<Duration>,
}

impl CacheConfig {
    /// Parses Thanos's cache YAML; `source` names where it came from, for errors.
    pub fn from_yaml(yaml: &str, source: &str) -> Result<ParsedConfig, Error> {
        let err = |message: String| Error { origin: source.to_owned(), message };
        let file: ConfigFile =
            serde_norway::from_str(yaml).map_err(|e| err(format!("invalid cache configuration: {e}")))?;
        let config = file.config.unwrap_or(serde_norway::Value::Mapping(Default::default()));
        let field_error = |e: serde_norway::Error| err(format!("invalid {} cache config: {e}", file.kind));
        let duration = |name: &str, value: Option<&str>| duration_field(name, value).map_err(err);
        let bytes = |name: &str, value: Option<&str>| {
            value.map(parse_bytes).transpose().map_err(|e| err(format!("config.{name}: {e}")))
        };
        let ttl = duration("ttl", file.ttl.as_deref())?;
        let cache = match file.kind.to_ascii_uppercase().as_str() {
            "IN-MEMORY" | "INMEMORY" => {
                let c: InMemoryConfig = serde_norway::from_value(config).map_err(field_error)?;
                CacheConfig::InMemory(InMemorySettings {
                    max_bytes: bytes("max_size", c.max_size.as_deref())?,
                    max_items: c.max_size_items,
                    max_item_bytes: bytes("max_item_size", c.max_item_size.as_deref())?,
                    validity: duration("validity", c.validity.as_deref())?,
                })
            }
            "MEMCACHED" => {
                let c: MemcachedConfig =
                    serde_norway::from_value(without(config, MEMCACHED_UNUSED)).map_err(field_error)?;
                if c.addresses.is_empty() {
                    return Err(err("MEMCACHED cache config: no addresses given".into()));
                }
                let timeout = duration("timeout", c.timeout.as_deref())?.unwrap_or(Duration::from_millis(500));
                let expiration = duration("expiration", c.expiration.as_deref())?.unwrap_or(DEFAULT_EXPIRATION);
                let max_item = bytes("max_item_size", c.max_item_size.as_deref())?.unwrap_or(1 << 20);
                CacheConfig::Remote(RemoteCache::new(Client::Memcached(MemcachedClient::new(
                    c.addresses,
                    timeout,
                    c.max_idle_connections.unwrap_or(100),
                    expiration,
                    usize::try_from(max_item).unwrap_or(usize::MAX),
                    c.max_get_multi_batch_size.filter(|&n| n > 0).unwrap_or(100),
                ))))
            }
            "REDIS" => {
                let c: RedisConfig = serde_norway::from_value(without(config, REDIS_UNUSED)).map_err(field_error)?;
                if c.addr.is_empty() {
                    return Err(err("REDIS cache config: no addr given".into()));
                }
                let read = duration("read_timeout", c.read_timeout.as_deref())?;
                let write = duration("write_timeout", c.write_timeout.as_deref())?;
                let dial = duration("dial_timeout", c.dial_timeout.as_deref())?;
                // One deadline covers dialling, writing and reading an exchange.
                let timeout = [read, write, dial].into_iter().flatten().max().unwrap_or(Duration::from_secs(5));
                let expiration = duration("expiration", c.expiration.as_deref())?.unwrap_or(DEFAULT_EXPIRATION);
                CacheConfig::Remote(RemoteCache::new(Client::Redis(RedisClient::new(
                    c.addr,
                    c.username,
                    c.password,
                    c.db,
                    timeout,
                    c.pool_size.unwrap_or(100),
                    expiration,
                ))))
            }
            other => return Err(err(format!("unknown cache type {other:?}: use IN-MEMORY, MEMCACHED or REDIS"))),
        };
        Ok(ParsedConfig { cache, enabled_items: file.enabled_items, ttl })
    }

    /// The cache's kind, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            CacheConfig::InMemory(_) => "inmemory",
            CacheConfig::Remote(r) => r.kind(),
        }
    }
}

enum Client {
    Memcached(MemcachedClient),
    Redis(RedisClient),
}

/// A memcached or Redis cache. Keys of any length and content are hashed (with the cache's
/// namespace) into keys every server takes; each value is stored after its full key, which a
/// read checks, so a hash collision is a miss.
pub struct RemoteCache {
    client: Client,
    namespace: String,
}

impl RemoteCache {
    fn new(client: Client) -> RemoteCache {
        RemoteCache { client, namespace: String::new() }
    }

    /// The cache with its keys apart from those of other users of the same servers.
    pub fn with_namespace(mut self, namespace: &str) -> RemoteCache {
        self.namespace = namespace.to_owned();
        self
    }

    pub fn kind(&self) -> &'static str {
        match self.client {
            Client::Memcached(_) => "memcached",
            Client::Redis(_) => "redis",
        }
    }

    fn server_key(&self, key: &str) -> String {
        format!("{}:{:016x}", self.namespace, twox_hash::XxHash64::oneshot(0, key.as_bytes()))
    }

    /// The stored values of `keys` (`None` for misses, failures and collisions).
    pub async fn fetch(&self, keys: &[String]) -> Vec<Option<Vec<u8>>> {
        let server_keys: Vec<String> = keys.iter().map(|k| self.server_key(k)).collect();
        let values = match &self.client {
            Client::Memcached(c) => c.get_multi(&server_keys).await,
            Client::Redis(c) => c.get_multi(&server_keys).await,
        };
        values.into_iter().zip(keys).map(|(v, k)| v.and_then(|v| unwrap_value(k, v))).collect()
    }

    /// Stores `value` under `key`; a failure is logged.
    pub async fn store(&self, key: &str, value: &[u8]) {
        let mut wrapped = Vec::with_capacity(4 + key.len() + value.len());
        wrapped.extend_from_slice(&(key.len() as u32).to_le_bytes());
        wrapped.extend_from_slice(key.as_bytes());
        wrapped.extend_from_slice(value);
        let server_key = self.server_key(key);
        match &self.client {
            Client::Memcached(c) => c.set(&server_key, &wrapped).await,
            Client::Redis(c) => c.set(&server_key, &wrapped).await,
        }
    }
}

/// The value stored for `key`, or `None` when the bytes belong to another key or are damaged.
fn unwrap_value(key: &str, mut stored: Vec<u8>) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(stored.get(..4)?.try_into().ok()?) as usize;
    if stored.get(4..)?.get(..len)? != key.as_bytes() {
        return None;
    }
    stored.drain(..4 + len);
    Some(stored)
}

const DEFAULT_EXPIRATION: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(rename = "type")]
    kind: String,
    config: Option<serde_norway::Value>,
    #[serde(default)]
    enabled_items: Vec<String>,
    ttl: Option<String>,
}

/// The in-memory settings of Thanos's index cache (`max_size`, `max_item_size`) and results
/// cache (`max_size`, `max_size_items`, `validity`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InMemoryConfig {
    max_size: Option<String>,
    #[serde(default)]
    max_size_items: usize,
    max_item_size: Option<String>,
    validity: Option<String>,
}

/// Thanos's memcached client settings this client uses.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemcachedConfig {
    #[serde(default)]
    addresses: Vec<String>,
    timeout: Option<String>,
    max_idle_connections: Option<usize>,
    max_item_size: Option<String>,
    max_get_multi_batch_size: Option<usize>,
    expiration: Option<String>,
}

/// Thanos's memcached settings this client has no use for: accepted, so that a Thanos
/// configuration works unchanged, and not read.
const MEMCACHED_UNUSED: &[&str] = &[
    "max_async_concurrency",
    "max_async_buffer_size",
    "max_get_multi_concurrency",
    "dns_provider_update_interval",
    "auto_discovery",
    "set_async_circuit_breaker_config",
];

/// Thanos's Redis client settings this client uses.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisConfig {
    #[serde(default)]
    addr: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    db: u32,
    dial_timeout: Option<String>,
    read_timeout: Option<String>,
    write_timeout: Option<String>,
    pool_size: Option<usize>,
    expiration: Option<String>,
}

/// Thanos's Redis settings this client has no use for, accepted as for memcached.
const REDIS_UNUSED: &[&str] = &[
    "min_idle_conns",
    "idle_timeout",
    "max_conn_age",
    "max_get_multi_concurrency",
    "get_multi_batch_size",
    "max_set_multi_concurrency",
    "set_multi_batch_size",
    "tls_enabled",
    "tls_config",
    "cache_size",
    "master_name",
    "max_async_buffer_size",
    "max_async_concurrency",
];

/// `config` without the settings named in `unused`.
fn without(mut config: serde_norway::Value, unused: &[&str]) -> serde_norway::Value {
    if let serde_norway::Value::Mapping(m) = &mut config {
        m.retain(|k, _| !k.as_str().is_some_and(|k| unused.contains(&k)));
    }
    config
}

fn duration_field(name: &str, value: Option<&str>) -> Result<Option<Duration>, String> {
    match value {
        None => Ok(None),
        Some(s) => strata_tsdb::gotext::parse_duration(s)
            .map(|d| (!d.is_zero()).then_some(d))
            .map_err(|e| format!("config.{name}: {e}")),
    }
}

/// A byte size as Thanos takes it (Go's `units.Base2Bytes`): a whole number with an optional
/// unit, `B`, `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`, `TB`/`TiB`, each 1024 times the previous.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a byte size like 250MB"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use B, KB, MB, GB or TB)")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_in_thanos_format() {
        let c =
            CacheConfig::from_yaml("type: IN-MEMORY\nconfig:\n  max_size: 10MB\n  max_size_items: 5\n", "f").unwrap();
        let want = InMemorySettings { max_bytes: Some(10 << 20), max_items: 5, ..InMemorySettings::default() };
        assert!(matches!(c.cache, CacheConfig::InMemory(ref m) if *m == want));
        let c = CacheConfig::from_yaml(
            "type: IN-MEMORY\nconfig:\n  max_size: 1GB\n  max_item_size: 1MB\nenabled_items: [Postings]\nttl: 1h\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.enabled_items, ["Postings"]);
        assert_eq!(c.ttl, Some(Duration::from_secs(3600)));
        let c = CacheConfig::from_yaml(
            "type: MEMCACHED\nconfig:\n  addresses: [\"127.0.0.1:11211\"]\n  timeout: 500ms\n  max_async_concurrency: 10\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.cache.kind(), "memcached");
        let c = CacheConfig::from_yaml(
            "type: REDIS\nconfig:\n  addr: 127.0.0.1:6379\n  db: 2\n  tls_enabled: false\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.cache.kind(), "redis");
        for (bad, want) in [
            ("type: FOO", "unknown cache type"),
            ("type: IN-MEMORY\nconfig:\n  max_size: ten", "config.max_size"),
            ("type: IN-MEMORY\nconfig:\n  max_sise: 1MB", "max_sise"),
            ("type: MEMCACHED\nconfig: {}", "no addresses"),
            ("type: MEMCACHED\nconfig:\n  addresses: [a:1]\n  adresses: [b:1]", "adresses"),
            ("type: REDIS\nconfig:\n  addr: a:1\n  expiration: soon", "config.expiration"),
            ("typ: REDIS", "typ"),
            ("type: REDIS\nconfig: [1, 2]", "invalid REDIS cache config"),
            ("- type", "invalid cache configuration"),
        ] {
            let e = CacheConfig::from_yaml(bad, "cache.yaml").err().unwrap_or_else(|| panic!("{bad} accepted"));
            let e = e.to_string();
            assert!(e.contains(want) && e.starts_with("cache.yaml: "), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("1KB").unwrap(), 1024);
        assert_eq!(parse_bytes("250MB").unwrap(), 250 << 20);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        for bad in ["1XB", "99999999999TB", "", "MB", "-1"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_values_carry_their_key() {
        let mut stored = (3u32).to_le_bytes().to_vec();
        stored.extend_from_slice(b"keyvalue");
        assert_eq!(unwrap_value("key", stored.clone()).as_deref(), Some(&b"value"[..]));
        assert_eq!(unwrap_value("kez", stored.clone()), None);
        for cut in 0..7 {
            assert_eq!(unwrap_value("key", stored[..cut].to_vec()), None, "{cut}");
        }
        assert_eq!(unwrap_value("key", vec![0xff; 8]), None);
    }
}
