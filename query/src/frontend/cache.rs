//! The results cache: Thanos's cache configuration (strata-cache) holding the extents of
//! answers already given, and their encoding. A cache that fails counts as a miss: it never
//! fails a query.

use strata_cache::{CacheConfig, Lru, RemoteCache};
use strata_tsdb::labels::Labels;

use crate::value::Series;

/// The results cache as configured.
pub enum ResultsCache {
    InMemory(Lru<String, Vec<u8>>),
    Remote(RemoteCache),
}

/// Thanos's query frontend's in-memory default budget.
const DEFAULT_MAX_BYTES: u64 = 1 << 30;

impl ResultsCache {
    /// Builds the cache a configuration YAML (Thanos's format) describes; `source` names where
    /// the YAML came from, for errors.
    pub fn from_yaml(yaml: &str, source: &str) -> Result<ResultsCache, strata_cache::Error> {
        Ok(match CacheConfig::from_yaml(yaml, source)?.cache {
            CacheConfig::InMemory(s) => {
                ResultsCache::InMemory(Lru::new(s.max_bytes.unwrap_or(DEFAULT_MAX_BYTES), s.max_items, s.validity))
            }
            CacheConfig::Remote(r) => ResultsCache::Remote(r.with_namespace("frontend")),
        })
    }

    /// The cache's kind, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ResultsCache::InMemory(_) => "inmemory",
            ResultsCache::Remote(r) => r.kind(),
        }
    }

    /// The stored values of `keys` (`None` for misses and failures).
    pub async fn fetch(&self, keys: &[String]) -> Vec<Option<Vec<u8>>> {
        match self {
            ResultsCache::InMemory(c) => keys.iter().map(|k| c.get(k)).collect(),
            ResultsCache::Remote(c) => c.fetch(keys).await,
        }
    }

    pub async fn store(&self, key: &str, value: Vec<u8>) {
        match self {
            ResultsCache::InMemory(c) => {
                let cost = (key.len() + value.len()) as u64;
                c.put(key.to_owned(), value, cost);
            }
            ResultsCache::Remote(c) => c.store(key, &value).await,
        }
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
