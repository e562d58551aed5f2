//! One block of the bucket, read where it lies: a small local index header (symbol table,
//! postings offset table, TOC) answers label lookups and locates everything else; postings
//! lists, series and chunks are fetched with ranged GETs, neighbouring ranges merged by the
//! gap rule ([`partition`](super::partition)).
//!
//! Reads are synchronous, as the read interface is: they block the calling thread on the
//! runtime whose handle the block holds, so they must not be called from inside that runtime's
//! async tasks (the StoreAPI server reads on blocking threads).
//!
//! The header is opened at load, or with [`BlockShared::lazy`] only at its first use and closed
//! again after a while unused ([`BucketBlock::unload_if_idle`]), as Thanos's
//! `LazyBinaryReader` (pkg/block/indexheader/lazy_binary_reader.go): a store of many blocks
//! then maps only the headers queries need.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use parking_lot::{RwLock, RwLockUpgradableReadGuard};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use strata_shipper::Bucket;
use strata_storage::{
    LabelsAnswer, LabelsRequest, Limit, SelectRequest, SeriesChunks, SeriesSet, Storage, StorageError,
};
use strata_tsdb::block::meta::{BlockMeta, META_FILENAME};
use strata_tsdb::block::{chunk_record_len, decode_chunk, segment_name, ChunkData};
use strata_tsdb::chunkenc::Encoding;
use strata_tsdb::index::{build_header_file, ChunkMeta, IndexHeader, Toc, INDEX_FILENAME, TOC_LEN};
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::Matcher;
use strata_tsdb::postings::{overlaps, postings_for_matchers, postings_keys, PostingsSource};
use tokio::runtime::Handle;
use tracing::{debug, warn};
use ulid::Ulid;

use super::cache::{CacheKey, IndexCache};
use super::partition::{partition, MAX_GAP};

/// Name of the index header file in `<data-dir>/<ULID>/`.
pub const HEADER_FILENAME: &str = "index-header";
/// Bytes fetched for a series entry or a chunk whose end is not known from a neighbour's start;
/// a longer one is fetched again whole.
const ESTIMATED_ENTRY_SIZE: u64 = 4096;
/// Series decoded (and their chunks fetched) per round of a read; bounds a read's memory.
const SERIES_BATCH: usize = 1024;
/// Ranged GETs of one round in flight at once.
const FETCH_CONCURRENCY: usize = 16;

type OpLabel = [(&'static str, &'static str); 1];
const GET_RANGE: OpLabel = [("operation", "get_range")];

/// Counters of what reads fetched from the bucket, shared by every block of a store, under
/// Thanos's objstore metric names.
#[derive(Debug, Default)]
pub struct FetchStats {
    requests: Family<OpLabel, Counter>,
    bytes: Family<OpLabel, Counter>,
}

impl FetchStats {
    /// Ranged GETs so far.
    pub fn requests(&self) -> u64 {
        self.requests.get_or_create(&GET_RANGE).get()
    }

    /// Bytes asked for by those GETs.
    pub fn bytes(&self) -> u64 {
        self.bytes.get_or_create(&GET_RANGE).get()
    }

    fn record(&self, len: u64) {
        self.requests.get_or_create(&GET_RANGE).inc();
        self.bytes.get_or_create(&GET_RANGE).inc_by(len);
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        // At zero from the start.
        self.requests.get_or_create(&GET_RANGE).inc_by(0);
        self.bytes.get_or_create(&GET_RANGE).inc_by(0);
        registry.register(
            "thanos_objstore_bucket_operations",
            "Total number of all attempted operations against a bucket",
            self.requests.clone(),
        );
        registry.register(
            "thanos_objstore_bucket_operation_fetched_bytes",
            "Total number of bytes fetched from bucket, per operation",
            self.bytes.clone(),
        );
    }
}

/// Thanos's counters of lazy index-header loads and unloads (`thanos_bucket_store_indexheader_*`),
/// shared by every block of a store.
#[derive(Debug)]
pub struct HeaderMetrics {
    loads: Counter,
    load_failures: Counter,
    unloads: Counter,
    /// Registered for Thanos's dashboards; dropping a mapping reports no failure, so it stays 0.
    unload_failures: Counter,
    load_duration: Histogram,
}

impl Default for HeaderMetrics {
    fn default() -> Self {
        HeaderMetrics {
            loads: Counter::default(),
            load_failures: Counter::default(),
            unloads: Counter::default(),
            unload_failures: Counter::default(),
            // Thanos's buckets.
            load_duration: Histogram::new([
                0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1., 2., 5., 15., 30., 60., 90., 120., 300.,
            ]),
        }
    }
}

impl HeaderMetrics {
    /// Lazy loads so far.
    pub fn loads(&self) -> u64 {
        self.loads.get()
    }

    /// Lazy loads that failed.
    pub fn load_failures(&self) -> u64 {
        self.load_failures.get()
    }

    /// Headers unloaded for being idle.
    pub fn unloads(&self) -> u64 {
        self.unloads.get()
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "thanos_bucket_store_indexheader_lazy_load",
            "Total number of index-header lazy load operations.",
            self.loads.clone(),
        );
        registry.register(
            "thanos_bucket_store_indexheader_lazy_load_failed",
            "Total number of failed index-header lazy load operations.",
            self.load_failures.clone(),
        );
        registry.register(
            "thanos_bucket_store_indexheader_lazy_unload",
            "Total number of index-header lazy unload operations.",
            self.unloads.clone(),
        );
        registry.register(
            "thanos_bucket_store_indexheader_lazy_unload_failed",
            "Total number of failed index-header lazy unload operations.",
            self.unload_failures.clone(),
        );
        registry.register(
            "thanos_bucket_store_indexheader_lazy_load_duration_seconds",
            "Duration of the index-header lazy loading in seconds.",
            self.load_duration.clone(),
        );
    }
}

/// What every block of a store shares: the runtime reads block on, the fetch counters, the
/// index cache, the chunk pool, and how headers are loaded.
#[derive(Clone)]
pub(crate) struct BlockShared {
    pub handle: Handle,
    pub stats: Arc<FetchStats>,
    pub cache: Arc<IndexCache>,
    pub pool: Arc<ChunkPool>,
    pub headers: Arc<HeaderMetrics>,
    /// Open headers at first use instead of at load (`--store.enable-index-header-lazy-reader`).
    pub lazy: bool,
}

/// A block in the bucket, with its index header kept in `<data-dir>/<ULID>/index-header` and
/// open (memory-mapped) while loaded.
pub struct BucketBlock {
    meta: BlockMeta,
    labels: Labels,
    fetcher: Fetcher,
    index_len: u64,
    header_path: PathBuf,
    header: RwLock<Option<Arc<IndexHeader>>>,
    /// When the header was last asked for, in ms after `created`.
    used_at: AtomicU64,
    created: Instant,
    /// Size of each chunk segment object, by segment index (`chunks/000001` is 0).
    segments: HashMap<u32, u64>,
    shared: BlockShared,
}

/// The bytes of chunk data all reads of a store may hold at once (Thanos's `--chunk-pool-size`):
/// a chunk read reserves its bytes before it fetches them and gives them back when the last
/// chunk cut from them is dropped (sent to the client, or the read abandoned).
#[derive(Debug)]
pub struct ChunkPool {
    max: u64,
    used: AtomicU64,
}

impl ChunkPool {
    pub fn new(max: u64) -> Self {
        ChunkPool { max, used: AtomicU64::new(0) }
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    fn reserve(self: &Arc<Self>, n: u64) -> Result<Reservation, StorageError> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.max)
            })
            .map_err(|_| StorageError::LimitExceeded { limit: Limit::ChunkPool, max: self.max })?;
        Ok(Reservation { pool: self.clone(), n })
    }
}

/// Bytes reserved from a [`ChunkPool`], given back when dropped.
struct Reservation {
    pool: Arc<ChunkPool>,
    n: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// Fetched bytes that hold their reservation for as long as any slice of them lives.
struct Pooled {
    bytes: Bytes,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Ranged reads of a bucket, counted.
struct Fetcher {
    bucket: Bucket,
    stats: Arc<FetchStats>,
}

impl Fetcher {
    async fn get(&self, key: &str, range: Range<u64>) -> strata_tsdb::Result<Bytes> {
        let len = range.end - range.start;
        let b = self.bucket.get_range(key, range).await.map_err(|e| bucket_error("get range", key, e))?;
        self.stats.record(len);
        Ok(b)
    }

    /// A `BE32 len | body | CRC` section at `start`, fetched up to `end` and again whole if
    /// its length says it runs on.
    async fn section(&self, key: &str, start: u64, end: u64) -> strata_tsdb::Result<Bytes> {
        let b = self.get(key, start..end.max(start + 8)).await?;
        let whole = IndexHeader::postings_entry_len(&b).map_or(0, |n| n as u64);
        if whole > b.len() as u64 {
            return self.get(key, start..start + whole).await;
        }
        Ok(b)
    }

    /// The header file's bytes, from three ranged reads of the index: the TOC, the symbol
    /// table (up to the series, which follow it) and the postings offset table (up to the
    /// TOC).
    async fn build_header(&self, key: &str, index_len: u64) -> strata_tsdb::Result<Vec<u8>> {
        let path = Path::new(key);
        if index_len < (5 + TOC_LEN) as u64 {
            return Err(strata_tsdb::Error::CorruptFile {
                path: path.to_owned(),
                reason: format!("{index_len} bytes is too short for an index"),
            });
        }
        let content_end = index_len - TOC_LEN as u64;
        let toc_bytes = self.get(key, content_end..index_len).await?;
        let toc = Toc::read(path, &toc_bytes)?;
        let bad = |what: &str| strata_tsdb::Error::CorruptFile {
            path: path.to_owned(),
            reason: format!("{what} offset outside the file"),
        };
        if toc.symbols == 0 || toc.symbols >= content_end {
            return Err(bad("symbol table"));
        }
        if toc.postings_table == 0 || toc.postings_table >= content_end {
            return Err(bad("postings offset table"));
        }
        let symbols_end = if toc.series > toc.symbols { toc.series } else { content_end };
        let symbols = self.section(key, toc.symbols, symbols_end).await?;
        let table = self.section(key, toc.postings_table, content_end).await?;
        build_header_file(path, index_len, &toc_bytes, &symbols, &table)
    }
}

impl Fetcher {
    /// Builds the header file of the index at `key` and writes it to `path` atomically,
    /// checked first.
    async fn keep_header(&self, key: &str, index_len: u64, path: &Path) -> strata_tsdb::Result<()> {
        let bytes = Bytes::from(self.build_header(key, index_len).await?);
        IndexHeader::from_header_file(Path::new(key), bytes.clone())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| strata_tsdb::Error::io("create dir", dir, e))?;
        }
        strata_tsdb::fileutil::write_atomic(path, &bytes)?;
        debug!(index = key, bytes = bytes.len(), "built index header");
        Ok(())
    }
}

/// The header file at `path` opened, if it is there, readable and made for an index of
/// `index_len` bytes; the reason it is not is logged.
fn open_kept_header(index_key: &str, index_len: u64, path: &Path) -> Option<IndexHeader> {
    match IndexHeader::open_header_file(Path::new(index_key), path) {
        Ok(h) if h.index_len() == index_len => Some(h),
        Ok(h) => {
            warn!(
                index = index_key,
                built_for = h.index_len(),
                index_len,
                "index header is for another index; rebuilding it"
            );
            None
        }
        Err(strata_tsdb::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            warn!(index = index_key, error = %e, "index header unreadable; rebuilding it");
            None
        }
    }
}

fn bucket_error(op: &'static str, key: &str, e: strata_shipper::Error) -> strata_tsdb::Error {
    strata_tsdb::Error::io(op, key, std::io::Error::other(e.to_string()))
}

impl BucketBlock {
    /// Loads the block `meta` describes, whose objects (paths relative to the block's directory,
    /// with their sizes) are `objects`: makes sure its index header is
    /// in `<data_dir>/<ULID>/index-header`, building that file from ranged reads of the index
    /// when it is missing (and, when not lazy, when it is unreadable or made for another index),
    /// and opens it unless headers are opened lazily.
    pub(crate) async fn load(
        bucket: &Bucket,
        meta: BlockMeta,
        objects: &HashMap<String, u64>,
        data_dir: &Path,
        shared: BlockShared,
    ) -> strata_tsdb::Result<BucketBlock> {
        let id = meta.ulid;
        let mut index_len = None;
        let mut segments = HashMap::new();
        for (rel, &size) in objects {
            if rel == INDEX_FILENAME {
                index_len = Some(size);
            } else if let Some(n) = rel.strip_prefix("chunks/").and_then(|n| n.parse::<u32>().ok()) {
                if let Some(index) = n.checked_sub(1) {
                    segments.insert(index, size);
                }
            }
        }
        // A meta.json that lists the files with sizes vouches for them: a file missing or of
        // another size (a truncated upload) makes the block unusable.
        for f in meta.thanos.iter().flat_map(|t| &t.files).filter(|f| f.rel_path != META_FILENAME) {
            let found = objects.get(f.rel_path.as_str()).copied();
            if found.is_none() || f.size_bytes.is_some_and(|want| Some(want) != found) {
                return Err(strata_tsdb::Error::CorruptFile {
                    path: PathBuf::from(format!("{id}/{}", f.rel_path)),
                    reason: match found {
                        None => "listed in meta.json, missing from the bucket".into(),
                        Some(have) => format!("{have} bytes, meta.json says {}", f.size_bytes.unwrap_or_default()),
                    },
                });
            }
        }
        let index_key = format!("{id}/{INDEX_FILENAME}");
        let index_len = index_len.ok_or_else(|| strata_tsdb::Error::NotFound {
            path: PathBuf::from(&index_key),
            message: "the block has no index".into(),
        })?;
        let header_path = data_dir.join(id.to_string()).join(HEADER_FILENAME);
        let fetcher = Fetcher { bucket: bucket.clone(), stats: shared.stats.clone() };
        let header = if shared.lazy {
            // As Thanos: a header file that exists is trusted until its first use, which
            // rebuilds it if it turns out unreadable.
            if !header_path.exists() {
                fetcher.keep_header(&index_key, index_len, &header_path).await?;
            }
            None
        } else {
            match open_kept_header(&index_key, index_len, &header_path) {
                Some(h) => Some(Arc::new(h)),
                None => {
                    fetcher.keep_header(&index_key, index_len, &header_path).await?;
                    Some(Arc::new(IndexHeader::open_header_file(Path::new(&index_key), &header_path)?))
                }
            }
        };
        let labels: Vec<(&str, &str)> = meta
            .thanos
            .as_ref()
            .map(|t| t.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect())
            .unwrap_or_default();
        Ok(BucketBlock {
            labels: Labels::from_pairs(&labels),
            meta,
            fetcher,
            index_len,
            header_path,
            header: RwLock::new(header),
            used_at: AtomicU64::new(0),
            created: Instant::now(),
            segments,
            shared,
        })
    }

    /// The block's index header, opened now if it is not (counted as a lazy load; one load at
    /// a time, the others wait for it). A header file that is missing, unreadable or made for
    /// another index is built again from the bucket.
    pub fn header(&self) -> Result<Arc<IndexHeader>, StorageError> {
        self.used_at.store(self.created.elapsed().as_millis() as u64, Ordering::Release);
        if let Some(h) = self.header.read().as_ref() {
            return Ok(h.clone());
        }
        let slot = self.header.upgradable_read();
        if let Some(h) = slot.as_ref() {
            return Ok(h.clone());
        }
        let started = Instant::now();
        self.shared.headers.loads.inc();
        debug!(block = %self.id(), "lazy loading index header");
        let index_key = self.index_key();
        let opened = match open_kept_header(&index_key, self.index_len, &self.header_path) {
            Some(h) => Ok(h),
            None => self
                .shared
                .handle
                .block_on(self.fetcher.keep_header(&index_key, self.index_len, &self.header_path))
                .and_then(|()| IndexHeader::open_header_file(Path::new(&index_key), &self.header_path)),
        };
        let header = match opened {
            Ok(h) => Arc::new(h),
            Err(e) => {
                self.shared.headers.load_failures.inc();
                warn!(block = %self.id(), error = %e, "lazy loading the index header failed");
                return Err(e.into());
            }
        };
        *RwLockUpgradableReadGuard::upgrade(slot) = Some(header.clone());
        self.shared.headers.load_duration.observe(started.elapsed().as_secs_f64());
        Ok(header)
    }

    /// Whether the index header is open now.
    pub fn header_loaded(&self) -> bool {
        self.header.read().is_some()
    }

    /// Closes a lazily opened header unused for `idle` or longer that no read holds; says
    /// whether it did. The next read opens it again.
    pub fn unload_if_idle(&self, idle: Duration) -> bool {
        if !self.shared.lazy {
            return false;
        }
        let mut slot = self.header.write();
        let Some(h) = slot.as_ref() else { return false };
        let unused = self.created.elapsed().saturating_sub(Duration::from_millis(self.used_at.load(Ordering::Acquire)));
        // A read that holds the header keeps it (and its mapping) alive anyway.
        if unused < idle || Arc::strong_count(h) > 1 {
            return false;
        }
        *slot = None;
        self.shared.headers.unloads.inc();
        debug!(block = %self.id(), "unloaded idle index header");
        true
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn id(&self) -> Ulid {
        self.meta.ulid
    }

    /// The block's external labels (its meta.json's Thanos labels).
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Whether the block holds samples in `[mint, maxt]` (meta.json's max time is exclusive).
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time > mint
    }

    /// The bytes of each of `ranges` (sorted by start) of object `key`, merged into few reads.
    /// `entry_len` tells from an element's first bytes how long it really is; an element
    /// longer than its range is fetched again whole (up to `limit`, the object's end).
    /// With `pool`, the bytes are reserved from it before each read and held until every
    /// slice of them is dropped; a read it has no room for fails.
    fn fetch(
        &self,
        key: &str,
        ranges: &[Range<u64>],
        limit: u64,
        entry_len: fn(&[u8]) -> Option<usize>,
        pool: Option<&Arc<ChunkPool>>,
    ) -> Result<Vec<Bytes>, StorageError> {
        let parts = partition(ranges, MAX_GAP);
        let fetched: Vec<Bytes> = self.shared.handle.block_on(
            futures::stream::iter(parts.iter().map(|p| self.read(key, p.range.clone(), pool)))
                .buffered(FETCH_CONCURRENCY)
                .try_collect(),
        )?;
        let mut out = Vec::with_capacity(ranges.len());
        let mut short = Vec::new();
        for (part, bytes) in parts.iter().zip(fetched) {
            for i in part.elements.clone() {
                let r = &ranges[i];
                let from = ((r.start - part.range.start) as usize).min(bytes.len());
                let to = ((r.end - part.range.start) as usize).clamp(from, bytes.len());
                let b = bytes.slice(from..to);
                if let Some(n) = entry_len(&b).filter(|&n| n > b.len()) {
                    short.push((i, r.start..(r.start + n as u64).min(limit)));
                }
                out.push(b);
            }
        }
        if !short.is_empty() {
            let again: Vec<Bytes> = self.shared.handle.block_on(
                futures::stream::iter(short.iter().map(|(_, r)| self.read(key, r.clone(), pool)))
                    .buffered(FETCH_CONCURRENCY)
                    .try_collect(),
            )?;
            for ((i, _), b) in short.into_iter().zip(again) {
                out[i] = b;
            }
        }
        Ok(out)
    }

    async fn read(&self, key: &str, range: Range<u64>, pool: Option<&Arc<ChunkPool>>) -> Result<Bytes, StorageError> {
        let reserved = pool.map(|p| p.reserve(range.end - range.start)).transpose()?;
        let bytes = self.fetcher.get(key, range).await?;
        Ok(match reserved {
            Some(reservation) => Bytes::from_owner(Pooled { bytes, _reservation: reservation }),
            None => bytes,
        })
    }

    /// Ranges starting at each of `starts` (sorted, distinct), each up to the next start or
    /// [`ESTIMATED_ENTRY_SIZE`] bytes, whichever is nearer, and never past `limit`.
    fn entry_ranges(starts: &[u64], limit: u64) -> Vec<Range<u64>> {
        starts
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let next = starts.get(i + 1).copied().unwrap_or(u64::MAX);
                s..s.saturating_add(ESTIMATED_ENTRY_SIZE).min(next).min(limit).max(s)
            })
            .collect()
    }

    fn index_key(&self) -> String {
        format!("{}/{INDEX_FILENAME}", self.meta.ulid)
    }

    /// The postings lists of `keys`, from the cache or fetched together.
    fn fetch_postings(&self, keys: Vec<(String, String)>) -> Result<HashMap<(String, String), Vec<u64>>, StorageError> {
        let id = self.meta.ulid;
        let header = self.header()?;
        let mut out = HashMap::with_capacity(keys.len());
        let mut wanted = Vec::with_capacity(keys.len());
        let mut cache_keys = Vec::with_capacity(keys.len());
        for (name, value) in keys {
            let Some(r) = header.postings_range(&name, &value)? else { continue };
            wanted.push(r);
            cache_keys.push(CacheKey::Postings(id, name, value));
        }
        let cached = self.shared.cache.get_multi(&cache_keys);
        let mut located = Vec::with_capacity(cache_keys.len());
        for ((r, key), hit) in wanted.into_iter().zip(cache_keys).zip(cached) {
            match hit {
                Some(b) => {
                    let CacheKey::Postings(_, name, value) = key else { continue };
                    let refs = header.decode_postings(&b, r.start, &name, &value)?;
                    out.insert((name, value), refs);
                }
                None => located.push((r.start..r.end.max(r.start + 8), key)),
            }
        }
        located.sort_by_key(|l| l.0.start);
        let ranges: Vec<Range<u64>> = located.iter().map(|l| l.0.clone()).collect();
        let limit = header.index_len() - TOC_LEN as u64;
        let lists = self.fetch(&self.index_key(), &ranges, limit, IndexHeader::postings_entry_len, None)?;
        for ((r, key), b) in located.into_iter().zip(lists) {
            let CacheKey::Postings(_, name, value) = &key else { continue };
            let refs = header.decode_postings(&b, r.start, name, value)?;
            let len = IndexHeader::postings_entry_len(&b).unwrap_or(b.len()).min(b.len());
            self.shared.cache.put(key.clone(), &b[..len]);
            if let CacheKey::Postings(_, name, value) = key {
                out.insert((name, value), refs);
            }
        }
        Ok(out)
    }

    /// The refs of the series matching `matchers`, with the lists they need fetched at once.
    fn select_refs(&self, matchers: &[Matcher]) -> Result<Vec<u64>, StorageError> {
        let header = self.header()?;
        let keys = postings_keys(&HeaderValues(&header), matchers)?;
        // A matcher that rejects "" selects nothing when none of its values has a list: the
        // answer is empty and nothing needs fetching.
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let mut found = false;
            for (n, v) in keys.iter().filter(|(n, v)| *n == m.name && m.matches(v)) {
                if header.postings_range(n, v)?.is_some() {
                    found = true;
                    break;
                }
            }
            if !found {
                return Ok(Vec::new());
            }
        }
        let lists = self.fetch_postings(keys)?;
        Ok(postings_for_matchers(&Fetched { header: &header, lists }, matchers)?)
    }

    /// The series entries of `refs` (ascending), from the cache or fetched, each decoded by
    /// `each` in order.
    fn read_series(
        &self,
        refs: &[u64],
        mut each: impl FnMut(u64, Labels, &[ChunkMeta]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let id = self.meta.ulid;
        let header = self.header()?;
        let keys: Vec<CacheKey> = refs.iter().map(|&r| CacheKey::Series(id, r)).collect();
        let mut entries = self.shared.cache.get_multi(&keys);
        let missing: Vec<usize> = (0..refs.len()).filter(|&i| entries[i].is_none()).collect();
        if !missing.is_empty() {
            let starts =
                missing.iter().map(|&i| header.series_offset(refs[i])).collect::<strata_tsdb::Result<Vec<u64>>>()?;
            let limit = header.index_len() - TOC_LEN as u64;
            let ranges = Self::entry_ranges(&starts, limit);
            let fetched = self.fetch(&self.index_key(), &ranges, limit, IndexHeader::series_entry_len, None)?;
            for (i, b) in missing.into_iter().zip(fetched) {
                let len = IndexHeader::series_entry_len(&b).unwrap_or(b.len()).min(b.len());
                self.shared.cache.put(CacheKey::Series(id, refs[i]), &b[..len]);
                entries[i] = Some(b);
            }
        }
        let mut metas = Vec::new();
        for (&r, b) in refs.iter().zip(entries) {
            let labels = header.decode_series(r, &b.unwrap_or_default(), &mut metas)?;
            each(r, labels, &metas)?;
        }
        Ok(())
    }

    /// The chunks at `refs`, fetched per segment.
    fn read_chunks(&self, mut refs: Vec<u64>) -> Result<HashMap<u64, (Encoding, Bytes)>, StorageError> {
        refs.sort_unstable();
        refs.dedup();
        let mut out = HashMap::with_capacity(refs.len());
        for group in refs.chunk_by(|a, b| a >> 32 == b >> 32) {
            let segment = (group[0] >> 32) as u32;
            let key = format!("{}/chunks/{}", self.meta.ulid, segment_name(segment));
            let Some(&size) = self.segments.get(&segment) else {
                return Err(StorageError::Tsdb(strata_tsdb::Error::CorruptFile {
                    path: PathBuf::from(&key),
                    reason: format!("chunk ref {:#x} names a segment the block does not have", group[0]),
                }));
            };
            let starts: Vec<u64> = group.iter().map(|r| r & 0xffff_ffff).collect();
            let ranges = Self::entry_ranges(&starts, size);
            let records = self.fetch(&key, &ranges, size, chunk_record_len, Some(&self.shared.pool))?;
            for ((&r, &offset), b) in group.iter().zip(&starts).zip(records) {
                out.insert(r, decode_chunk(&b, Path::new(&key), offset)?);
            }
        }
        Ok(out)
    }
}

/// Label values from the header alone, for [`postings_keys`].
struct HeaderValues<'a>(&'a IndexHeader);

impl PostingsSource for HeaderValues<'_> {
    fn postings(&self, _: &str, _: &str) -> strata_tsdb::Result<Vec<u64>> {
        Ok(Vec::new())
    }
    fn all_postings(&self) -> strata_tsdb::Result<Vec<u64>> {
        Ok(Vec::new())
    }
    fn label_values(&self, name: &str) -> strata_tsdb::Result<Vec<String>> {
        self.0.label_values(name)
    }
}

/// Postings lists fetched ahead by [`postings_keys`]; a list the header has no entry for is
/// empty.
struct Fetched<'a> {
    header: &'a IndexHeader,
    lists: HashMap<(String, String), Vec<u64>>,
}

impl PostingsSource for Fetched<'_> {
    fn postings(&self, name: &str, value: &str) -> strata_tsdb::Result<Vec<u64>> {
        Ok(self.lists.get(&(name.to_owned(), value.to_owned())).cloned().unwrap_or_default())
    }
    fn all_postings(&self) -> strata_tsdb::Result<Vec<u64>> {
        self.postings("", "")
    }
    fn label_values(&self, name: &str) -> strata_tsdb::Result<Vec<String>> {
        self.header.label_values(name)
    }
    fn postings_len_hint(&self, name: &str, value: &str) -> strata_tsdb::Result<usize> {
        Ok(self.lists.get(&(name.to_owned(), value.to_owned())).map_or(0, Vec::len))
    }
}

/// The matching series of one block, read a batch at a time as the iterator advances: series
/// entries of a batch in one round of ranged reads, then their chunks in another.
struct BlockSeries {
    block: Arc<BucketBlock>,
    refs: std::vec::IntoIter<u64>,
    mint: i64,
    maxt: i64,
    skip_chunks: bool,
    ready: VecDeque<SeriesChunks>,
}

impl BlockSeries {
    fn next_batch(&mut self) -> Result<(), StorageError> {
        let batch: Vec<u64> = self.refs.by_ref().take(SERIES_BATCH).collect();
        let (mint, maxt) = (self.mint, self.maxt);
        let mut found: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
        self.block.read_series(&batch, |_, labels, metas| {
            let in_range: Vec<ChunkMeta> =
                metas.iter().filter(|m| m.min_time <= maxt && m.max_time >= mint).copied().collect();
            if !in_range.is_empty() {
                found.push((labels, in_range));
            }
            Ok(())
        })?;
        if self.skip_chunks {
            self.ready.extend(found.into_iter().map(|(labels, _)| SeriesChunks { labels, chunks: Vec::new() }));
            return Ok(());
        }
        let chunks = self.block.read_chunks(found.iter().flat_map(|(_, m)| m.iter().map(|m| m.chunk_ref)).collect())?;
        for (labels, metas) in found {
            let mut out = Vec::with_capacity(metas.len());
            for m in metas {
                let Some((encoding, data)) = chunks.get(&m.chunk_ref).cloned() else { continue };
                out.push(ChunkData { min_time: m.min_time, max_time: m.max_time, encoding, data });
            }
            self.ready.push_back(SeriesChunks { labels, chunks: out });
        }
        Ok(())
    }
}

impl Iterator for BlockSeries {
    type Item = Result<SeriesChunks, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.ready.is_empty() {
            if self.refs.len() == 0 {
                return None;
            }
            if let Err(e) = self.next_batch() {
                self.refs = Vec::new().into_iter();
                return Some(Err(e));
            }
        }
        self.ready.pop_front().map(Ok)
    }
}

/// A block as a storage: raw series without its external labels (the store adds them).
pub struct BlockStorage(pub Arc<BucketBlock>);

impl Storage for BlockStorage {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        let block = &self.0;
        if !block.overlaps(req.min_time, req.max_time) {
            return Ok(SeriesSet::empty());
        }
        let refs = block.select_refs(&req.matchers)?;
        let mut series = BlockSeries {
            block: block.clone(),
            refs: refs.into_iter(),
            mint: req.min_time,
            maxt: req.max_time,
            skip_chunks: req.skip_chunks,
            ready: VecDeque::new(),
        };
        // The first batch now, so that a caller asking several blocks at once overlaps their
        // round trips.
        if series.refs.len() > 0 {
            series.next_batch()?;
        }
        Ok(SeriesSet::from_read(series, req))
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let block = &self.0;
        if !block.overlaps(req.min_time, req.max_time) {
            return Ok(LabelsAnswer::default());
        }
        let mut names = if req.matchers.is_empty() {
            block.header()?.label_names()
        } else {
            let refs = block.select_refs(&req.matchers)?;
            let mut names = BTreeSet::new();
            for batch in refs.chunks(SERIES_BATCH) {
                block.read_series(batch, |_, labels, _| {
                    for (n, _) in labels.iter() {
                        if !names.contains(n) {
                            names.insert(n.to_owned());
                        }
                    }
                    Ok(())
                })?;
            }
            names.into_iter().collect()
        };
        req.truncate(&mut names);
        Ok(names.into())
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let block = &self.0;
        if !block.overlaps(req.min_time, req.max_time) {
            return Ok(LabelsAnswer::default());
        }
        let header = block.header()?;
        if !header.has_label(name) {
            return Ok(LabelsAnswer::default());
        }
        let all = header.label_values(name)?;
        let mut values = if req.matchers.is_empty() {
            all
        } else {
            let selected = block.select_refs(&req.matchers)?;
            if selected.is_empty() {
                Vec::new()
            } else {
                let lists = block.fetch_postings(all.iter().map(|v| (name.to_owned(), v.clone())).collect())?;
                all.into_iter()
                    .filter(|v| lists.get(&(name.to_owned(), v.clone())).is_some_and(|l| overlaps(l, &selected)))
                    .collect()
            }
        };
        req.truncate(&mut values);
        Ok(values.into())
    }
}
