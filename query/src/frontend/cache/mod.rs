//! The results cache: Thanos's cache configuration (`IN-MEMORY`, `MEMCACHED`, `REDIS`), the
//! backends, and the encoding of cached extents. A cache that fails is logged and counts as a
//! miss: it never fails a query.

mod memcached;
mod pool;
mod redis;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;
use strata_tsdb::labels::Labels;

pub use memcached::MemcachedClient;
pub use redis::RedisClient;

use crate::value::Series;

/// A results cache as configured.
pub enum ResultsCache {
    InMemory(MemoryCache),
    Memcached(MemcachedClient),
    Redis(RedisClient),
}

impl ResultsCache {
    /// Builds the cache a configuration YAML (Thanos's format) describes; `source` names where
    /// the YAML came from, for errors.
    pub fn from_yaml(yaml: &str, source: &str) -> Result<ResultsCache, String> {
        let file: ConfigFile =
            serde_norway::from_str(yaml).map_err(|e| format!("{source}: invalid cache configuration: {e}"))?;
        let config = file.config.unwrap_or(serde_norway::Value::Mapping(Default::default()));
        let field_error = |e: serde_norway::Error| format!("{source}: invalid {} cache config: {e}", file.kind);
        match file.kind.to_ascii_uppercase().as_str() {
            "IN-MEMORY" | "INMEMORY" => {
                let c: InMemoryConfig = serde_norway::from_value(config).map_err(field_error)?;
                let max_bytes = match &c.max_size {
                    Some(s) => parse_bytes(s).map_err(|e| format!("{source}: config.max_size: {e}"))?,
                    None => DEFAULT_MAX_BYTES,
                };
                let validity = duration_field(source, "validity", c.validity.as_deref())?;
                Ok(ResultsCache::InMemory(MemoryCache::new(max_bytes, c.max_size_items, validity)))
            }
            "MEMCACHED" => {
                let c: MemcachedConfig = serde_norway::from_value(config).map_err(field_error)?;
                if c.addresses.is_empty() {
                    return Err(format!("{source}: MEMCACHED cache config: no addresses given"));
                }
                let timeout =
                    duration_field(source, "timeout", c.timeout.as_deref())?.unwrap_or(Duration::from_millis(500));
                let expiration =
                    duration_field(source, "expiration", c.expiration.as_deref())?.unwrap_or(DEFAULT_EXPIRATION);
                let max_item = match &c.max_item_size {
                    Some(s) => parse_bytes(s).map_err(|e| format!("{source}: config.max_item_size: {e}"))?,
                    None => 1 << 20,
                };
                Ok(ResultsCache::Memcached(MemcachedClient::new(
                    c.addresses,
                    timeout,
                    c.max_idle_connections.unwrap_or(100),
                    expiration,
                    usize::try_from(max_item).unwrap_or(usize::MAX),
                    c.max_get_multi_batch_size.filter(|&n| n > 0).unwrap_or(100),
                )))
            }
            "REDIS" => {
                let c: RedisConfig = serde_norway::from_value(config).map_err(field_error)?;
                if c.addr.is_empty() {
                    return Err(format!("{source}: REDIS cache config: no addr given"));
                }
                let read = duration_field(source, "read_timeout", c.read_timeout.as_deref())?;
                let write = duration_field(source, "write_timeout", c.write_timeout.as_deref())?;
                let dial = duration_field(source, "dial_timeout", c.dial_timeout.as_deref())?;
                // One deadline covers dialling, writing and reading an exchange.
                let timeout = [read, write, dial].into_iter().flatten().max().unwrap_or(Duration::from_secs(5));
                let expiration =
                    duration_field(source, "expiration", c.expiration.as_deref())?.unwrap_or(DEFAULT_EXPIRATION);
                Ok(ResultsCache::Redis(RedisClient::new(
                    c.addr,
                    c.username,
                    c.password,
                    c.db,
                    timeout,
                    c.pool_size.unwrap_or(100),
                    expiration,
                )))
            }
            other => Err(format!("{source}: unknown cache type {other:?}: use IN-MEMORY, MEMCACHED or REDIS")),
        }
    }

    /// The cache's kind, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ResultsCache::InMemory(_) => "inmemory",
            ResultsCache::Memcached(_) => "memcached",
            ResultsCache::Redis(_) => "redis",
        }
    }

    /// The stored values of `keys` (`None` for misses and failures).
    pub async fn fetch(&self, keys: &[String]) -> Vec<Option<Vec<u8>>> {
        match self {
            ResultsCache::InMemory(c) => keys.iter().map(|k| c.get(k)).collect(),
            ResultsCache::Memcached(c) => c.get_multi(&keys.iter().map(|k| server_key(k)).collect::<Vec<_>>()).await,
            ResultsCache::Redis(c) => c.get_multi(&keys.iter().map(|k| server_key(k)).collect::<Vec<_>>()).await,
        }
    }

    pub async fn store(&self, key: &str, value: Vec<u8>) {
        match self {
            ResultsCache::InMemory(c) => c.put(key, value),
            ResultsCache::Memcached(c) => c.set(&server_key(key), &value).await,
            ResultsCache::Redis(c) => c.set(&server_key(key), &value).await,
        }
    }
}

/// memcached keys are at most 250 bytes without spaces or control characters, so servers get
/// a hash of the key; the full key is stored in the value and checked when it is read.
fn server_key(key: &str) -> String {
    format!("frontend:{:016x}", twox_hash::XxHash64::oneshot(0, key.as_bytes()))
}

const DEFAULT_MAX_BYTES: u64 = 1 << 30;
const DEFAULT_EXPIRATION: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(rename = "type")]
    kind: String,
    config: Option<serde_norway::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InMemoryConfig {
    max_size: Option<String>,
    #[serde(default)]
    max_size_items: usize,
    validity: Option<String>,
}

/// Thanos's memcached client settings; those this client has no use for are accepted and
/// ignored, so that a Thanos configuration works unchanged.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct MemcachedConfig {
    #[serde(default)]
    addresses: Vec<String>,
    timeout: Option<String>,
    max_idle_connections: Option<usize>,
    max_item_size: Option<String>,
    max_get_multi_batch_size: Option<usize>,
    expiration: Option<String>,
    max_async_concurrency: Option<serde_norway::Value>,
    max_async_buffer_size: Option<serde_norway::Value>,
    max_get_multi_concurrency: Option<serde_norway::Value>,
    dns_provider_update_interval: Option<serde_norway::Value>,
    auto_discovery: Option<serde_norway::Value>,
    set_async_circuit_breaker_config: Option<serde_norway::Value>,
}

/// Thanos's Redis client settings, unused ones accepted and ignored as for memcached.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
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
    min_idle_conns: Option<serde_norway::Value>,
    idle_timeout: Option<serde_norway::Value>,
    max_conn_age: Option<serde_norway::Value>,
    max_get_multi_concurrency: Option<serde_norway::Value>,
    get_multi_batch_size: Option<serde_norway::Value>,
    max_set_multi_concurrency: Option<serde_norway::Value>,
    set_multi_batch_size: Option<serde_norway::Value>,
    tls_enabled: Option<serde_norway::Value>,
    tls_config: Option<serde_norway::Value>,
    cache_size: Option<serde_norway::Value>,
    master_name: Option<serde_norway::Value>,
    max_async_buffer_size: Option<serde_norway::Value>,
    max_async_concurrency: Option<serde_norway::Value>,
}

fn duration_field(source: &str, name: &str, value: Option<&str>) -> Result<Option<Duration>, String> {
    match value {
        None => Ok(None),
        Some(s) => strata_tsdb::gotext::parse_duration(s)
            .map(|d| (!d.is_zero()).then_some(d))
            .map_err(|e| format!("{source}: config.{name}: {e}")),
    }
}

/// Sizes as Thanos writes them: bytes, or a number with `KB`/`MB`/`GB`/`TB` (powers of 1024,
/// as Go's `units.Base2Bytes`), also spelled `KiB`, `MiB`, …
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number.parse().map_err(|_| format!("invalid size {s:?}: expected a number of bytes like 512MB"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("invalid size {s:?}: unknown unit {unit:?} (use B, KB, MB, GB or TB)")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("size {s:?} is too large"))
}

/// An in-process cache bounded by bytes and by items, evicting the least recently used.
pub struct MemoryCache {
    max_bytes: u64,
    max_items: usize,
    validity: Option<Duration>,
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    entries: HashMap<String, MemoryEntry>,
    /// Use stamp → key, oldest first.
    by_use: BTreeMap<u64, String>,
    next_stamp: u64,
    bytes: u64,
}

struct MemoryEntry {
    value: Vec<u8>,
    stamp: u64,
    stored: Instant,
}

impl MemoryCache {
    pub fn new(max_bytes: u64, max_items: usize, validity: Option<Duration>) -> MemoryCache {
        MemoryCache { max_bytes, max_items, validity, inner: Mutex::new(MemoryInner::default()) }
    }

    fn entry_bytes(key: &str, value: &[u8]) -> u64 {
        (key.len() + value.len()) as u64
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let entry = inner.entries.get_mut(key)?;
        if self.validity.is_some_and(|v| entry.stored.elapsed() > v) {
            let old = inner.entries.remove(key)?;
            inner.by_use.remove(&old.stamp);
            inner.bytes -= Self::entry_bytes(key, &old.value);
            return None;
        }
        inner.by_use.remove(&entry.stamp);
        entry.stamp = inner.next_stamp;
        inner.next_stamp += 1;
        inner.by_use.insert(entry.stamp, key.to_owned());
        Some(entry.value.clone())
    }

    pub fn put(&self, key: &str, value: Vec<u8>) {
        let size = Self::entry_bytes(key, &value);
        if size > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        if let Some(old) = inner.entries.remove(key) {
            inner.by_use.remove(&old.stamp);
            inner.bytes -= Self::entry_bytes(key, &old.value);
        }
        while inner.bytes + size > self.max_bytes || (self.max_items > 0 && inner.entries.len() >= self.max_items) {
            let Some((_, oldest)) = inner.by_use.pop_first() else { break };
            if let Some(old) = inner.entries.remove(&oldest) {
                inner.bytes -= Self::entry_bytes(&oldest, &old.value);
            }
        }
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        inner.by_use.insert(stamp, key.to_owned());
        inner.bytes += size;
        inner.entries.insert(key.to_owned(), MemoryEntry { value, stamp, stored: Instant::now() });
    }

    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stretch of a query's answer kept in the cache: the result at every step from `start` to
/// `end` (milliseconds, both on the query's step grid).
#[derive(Debug, Clone, PartialEq)]
pub struct Extent {
    pub start: i64,
    pub end: i64,
    pub series: Vec<Series>,
}

const MAGIC: &[u8; 4] = b"SFE1";

/// The cached value of `key`: the key itself (checked on reading, against hash collisions)
/// and its extents.
pub fn encode_extents(key: &str, extents: &[Extent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    put_bytes(&mut out, key.as_bytes());
    out.extend_from_slice(&(extents.len() as u32).to_le_bytes());
    for e in extents {
        out.extend_from_slice(&e.start.to_le_bytes());
        out.extend_from_slice(&e.end.to_le_bytes());
        out.extend_from_slice(&(e.series.len() as u32).to_le_bytes());
        for s in &e.series {
            out.extend_from_slice(&(s.labels.len() as u32).to_le_bytes());
            for (name, value) in s.labels.iter() {
                put_bytes(&mut out, name.as_bytes());
                put_bytes(&mut out, value.as_bytes());
            }
            out.extend_from_slice(&(s.points.len() as u32).to_le_bytes());
            for &(t, v) in &s.points {
                out.extend_from_slice(&t.to_le_bytes());
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// The extents of a cached value, or why it cannot be read (another key's value under the
/// same hash, or damaged bytes).
pub fn decode_extents(key: &str, data: &[u8]) -> Result<Vec<Extent>, String> {
    let mut r = Reader(data);
    if r.take(4)? != MAGIC {
        return Err("not a cached frontend result".into());
    }
    if r.take_bytes()? != key.as_bytes() {
        return Err("cached value belongs to another key".into());
    }
    let n = r.u32()?;
    let mut extents = Vec::new();
    for _ in 0..n {
        let (start, end) = (r.u64()? as i64, r.u64()? as i64);
        let n_series = r.u32()?;
        let mut series = Vec::new();
        for _ in 0..n_series {
            let n_labels = r.u32()?;
            let mut pairs = Vec::new();
            for _ in 0..n_labels {
                let name = std::str::from_utf8(r.take_bytes()?).map_err(|_| "label name is not UTF-8")?;
                let value = std::str::from_utf8(r.take_bytes()?).map_err(|_| "label value is not UTF-8")?;
                pairs.push((name, value));
            }
            let n_points = r.u32()? as usize;
            if n_points > r.0.len() / 16 {
                return Err("cached value is truncated".into());
            }
            let mut points = Vec::with_capacity(n_points);
            for _ in 0..n_points {
                points.push((r.u64()? as i64, f64::from_bits(r.u64()?)));
            }
            series.push(Series { labels: Labels::from_pairs(&pairs), points });
        }
        extents.push(Extent { start, end, series });
    }
    if !r.0.is_empty() {
        return Err("cached value has trailing bytes".into());
    }
    Ok(extents)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("cached value is truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn take_bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_in_thanos_format() {
        let c =
            ResultsCache::from_yaml("type: IN-MEMORY\nconfig:\n  max_size: 10MB\n  max_size_items: 5\n", "f").unwrap();
        assert!(matches!(c, ResultsCache::InMemory(ref m) if m.max_bytes == 10 << 20 && m.max_items == 5));
        let c = ResultsCache::from_yaml(
            "type: MEMCACHED\nconfig:\n  addresses: [\"127.0.0.1:11211\"]\n  timeout: 500ms\n  max_async_concurrency: 10\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.kind(), "memcached");
        let c = ResultsCache::from_yaml("type: REDIS\nconfig:\n  addr: 127.0.0.1:6379\n  db: 2\n", "f").unwrap();
        assert_eq!(c.kind(), "redis");
        for (bad, want) in [
            ("type: FOO", "unknown cache type"),
            ("type: IN-MEMORY\nconfig:\n  max_size: ten", "config.max_size"),
            ("type: IN-MEMORY\nconfig:\n  max_sise: 1MB", "max_sise"),
            ("type: MEMCACHED\nconfig: {}", "no addresses"),
            ("type: REDIS\nconfig:\n  addr: a:1\n  expiration: soon", "config.expiration"),
            ("typ: REDIS", "typ"),
        ] {
            let e = ResultsCache::from_yaml(bad, "cache.yaml").err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.contains(want) && e.starts_with("cache.yaml"), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("1KB").unwrap(), 1024);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert!(parse_bytes("1XB").is_err());
        assert!(parse_bytes("99999999999TB").is_err());
    }

    #[test]
    fn memory_cache_evicts_least_recently_used() {
        let c = MemoryCache::new(1 << 20, 2, None);
        c.put("a", vec![1]);
        c.put("b", vec![2]);
        assert_eq!(c.get("a"), Some(vec![1]));
        c.put("c", vec![3]);
        assert_eq!(c.get("b"), None);
        assert_eq!(c.get("a"), Some(vec![1]));
        assert_eq!(c.get("c"), Some(vec![3]));
        let small = MemoryCache::new(10, 0, None);
        small.put("k", vec![0; 8]);
        small.put("j", vec![0; 8]);
        assert_eq!(small.len(), 1);
        small.put("huge", vec![0; 100]);
        assert_eq!(small.get("huge"), None);
    }

    #[test]
    fn extents_round_trip_and_damage_is_refused() {
        let extents = vec![Extent {
            start: 1000,
            end: 5000,
            series: vec![Series {
                labels: Labels::from_pairs(&[("__name__", "up"), ("job", "a")]),
                points: vec![(1000, 1.5), (2000, f64::NAN), (5000, f64::INFINITY)],
            }],
        }];
        let bytes = encode_extents("key", &extents);
        let back = decode_extents("key", &bytes).unwrap();
        assert_eq!(back[0].series[0].labels, extents[0].series[0].labels);
        assert_eq!(back[0].series[0].points[0], (1000, 1.5));
        assert!(back[0].series[0].points[1].1.is_nan());
        assert!(decode_extents("other", &bytes).is_err());
        for cut in 0..bytes.len() {
            assert!(decode_extents("key", &bytes[..cut]).is_err(), "{cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_extents("key", &long).is_err());
    }
}
