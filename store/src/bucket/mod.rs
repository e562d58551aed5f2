//! The store gateway: the blocks of an object storage bucket as a store (Thanos's
//! `BucketStore`, pkg/store/bucket.go). [`BucketStore::sync`] brings the view in line with the
//! bucket (new blocks loaded, vanished or hidden ones dropped); reads go to the loaded blocks
//! overlapping the request, each read in place ([`block`]), with the block's external labels,
//! merged.

pub mod block;
pub mod cache;
pub mod partition;

pub use strata_shipper::fetch::TimeBound;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_shipper::fetch::overlaps_range;
use strata_shipper::relabel::Relabel;
use strata_shipper::{deduplicate, resolution, Bucket, FetchedMetas, FetcherMetrics, MetaFetcher};
use strata_storage::{LabelsAnswer, LabelsRequest, SelectRequest, SeriesSet, Storage, StorageError};
use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::labels::Labels;
use tokio::runtime::Handle;
use tracing::{info, warn};
use ulid::Ulid;

use self::block::{BlockShared, BlockStorage, BucketBlock, ChunkPool, FetchStats, HeaderMetrics};
use self::cache::IndexCache;
pub use self::cache::{IndexCacheBackend, IndexCacheConfig};
use crate::external::ExternalLabels;
use crate::{merge_limited, merged_labels, Component, Store, StoreInfo, TsdbInfo};

/// Blocks whose first reads run at once in one select.
const BLOCK_READ_CONCURRENCY: usize = 8;

/// How a [`BucketStore`] finds and filters blocks (Thanos's `store` flags).
#[derive(Debug, Clone)]
pub struct BucketStoreOptions {
    /// Where index headers are kept, one directory per block (`--data-dir`).
    pub data_dir: PathBuf,
    /// Blocks loaded at once during a sync (`--block-sync-concurrency`).
    pub block_sync_concurrency: usize,
    /// Blocks younger than this are not loaded yet (`--consistency-delay`).
    pub consistency_delay: Duration,
    /// A deletion-marked block is dropped once its mark is this old
    /// (`--ignore-deletion-marks-delay`).
    pub ignore_deletion_marks_delay: Duration,
    /// Only blocks overlapping `[min_time, max_time]` are served (`--min-time`, `--max-time`);
    /// Info and reads are clamped to it.
    pub min_time: TimeBound,
    pub max_time: TimeBound,
    /// Where postings lists and series entries are cached (`--index-cache-size`,
    /// `--index-cache.config`).
    pub index_cache: IndexCacheConfig,
    /// Bytes of chunk data the reads may hold at once (`--chunk-pool-size`); a read that would
    /// need more fails with the limit's name.
    pub chunk_pool_size: u64,
    /// Which blocks this store serves, by their external labels and `__block_id`
    /// (`--selector.relabel-config`); no rules serve every block.
    pub selector: Relabel,
    /// Open each block's index header at its first read instead of at load
    /// (`--store.enable-index-header-lazy-reader`; off by default, as in Thanos v0.42).
    pub lazy_index_header: bool,
    /// With lazy headers, a header unused this long is closed by
    /// [`BucketStore::unload_idle_headers`] (`--store.index-header-lazy-reader-idle-timeout`);
    /// zero keeps them open.
    pub index_header_idle_timeout: Duration,
}

impl Default for BucketStoreOptions {
    /// Thanos's defaults.
    fn default() -> Self {
        BucketStoreOptions {
            data_dir: PathBuf::from("./data"),
            block_sync_concurrency: 20,
            consistency_delay: Duration::ZERO,
            ignore_deletion_marks_delay: Duration::from_secs(24 * 3600),
            min_time: TimeBound::Absolute(i64::MIN),
            max_time: TimeBound::Absolute(i64::MAX),
            index_cache: IndexCacheConfig::in_memory(250 << 20),
            chunk_pool_size: 2 << 30,
            selector: Relabel::default(),
            lazy_index_header: false,
            index_header_idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Errors of a sync; a block that fails to load is not one (it is logged, counted and retried
/// at the next sync).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("fetch block metas: {0}")]
    Fetch(#[from] strata_shipper::Error),
    #[error("list the objects of the blocks to load: {0}")]
    List(strata_shipper::Error),
}

/// Thanos's metric names for the meta sync (`thanos_blocks_meta_*`) and the bucket store
/// (`thanos_bucket_store_*`), plus the bucket reads.
#[derive(Clone)]
struct Metrics {
    meta: FetcherMetrics,
    blocks_loaded: Gauge,
    block_loads: Counter,
    block_load_failures: Counter,
    block_drops: Counter,
    block_drop_failures: Counter,
}

impl Metrics {
    fn new(registry: &mut Registry, fetch: &FetchStats, headers: &HeaderMetrics) -> Self {
        let m = Metrics {
            meta: FetcherMetrics::new(registry),
            blocks_loaded: Gauge::default(),
            block_loads: Counter::default(),
            block_load_failures: Counter::default(),
            block_drops: Counter::default(),
            block_drop_failures: Counter::default(),
        };
        registry.register(
            "thanos_bucket_store_blocks_loaded",
            "Number of currently loaded blocks",
            m.blocks_loaded.clone(),
        );
        registry.register(
            "thanos_bucket_store_block_loads",
            "Total number of remote block loading attempts",
            m.block_loads.clone(),
        );
        registry.register(
            "thanos_bucket_store_block_load_failures",
            "Total number of failed remote block loading attempts",
            m.block_load_failures.clone(),
        );
        registry.register(
            "thanos_bucket_store_block_drops",
            "Total number of local blocks that were dropped",
            m.block_drops.clone(),
        );
        registry.register(
            "thanos_bucket_store_block_drop_failures",
            "Total number of local blocks that failed to be dropped",
            m.block_drop_failures.clone(),
        );
        fetch.register(registry);
        headers.register(registry);
        m
    }
}

/// The blocks of a bucket as one store.
pub struct BucketStore {
    bucket: Bucket,
    fetcher: MetaFetcher,
    options: BucketStoreOptions,
    blocks: RwLock<BTreeMap<Ulid, Arc<BucketBlock>>>,
    shared: BlockShared,
    metrics: Metrics,
    synced: AtomicBool,
}

impl BucketStore {
    /// A store over `bucket` with no blocks loaded yet; its reads block on `handle`'s runtime.
    pub fn new(bucket: Bucket, options: BucketStoreOptions, handle: Handle, registry: &mut Registry) -> Self {
        let fetcher = MetaFetcher::new(bucket.clone())
            .with_consistency_delay(options.consistency_delay)
            .with_deletion_mark_delay(options.ignore_deletion_marks_delay);
        let stats = Arc::new(FetchStats::default());
        let headers = Arc::new(HeaderMetrics::default());
        let metrics = Metrics::new(registry, &stats, &headers);
        let cache = Arc::new(IndexCache::new(options.index_cache.clone(), handle.clone(), registry));
        let shared = BlockShared {
            pool: Arc::new(ChunkPool::new(options.chunk_pool_size)),
            handle,
            stats,
            cache,
            headers,
            lazy: options.lazy_index_header,
        };
        BucketStore {
            shared,
            bucket,
            fetcher,
            options,
            blocks: RwLock::new(BTreeMap::new()),
            metrics,
            synced: AtomicBool::new(false),
        }
    }

    /// Whether the first sync has finished (the store is ready).
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Bytes of chunk data reads hold now.
    pub fn chunk_pool_used(&self) -> u64 {
        self.shared.pool.used()
    }

    /// What the reads fetched from the bucket so far.
    pub fn fetch_stats(&self) -> &FetchStats {
        &self.shared.stats
    }

    /// The lazy index-header loads and unloads so far.
    pub fn header_metrics(&self) -> &HeaderMetrics {
        &self.shared.headers
    }

    /// Closes the lazily opened index headers unused for the idle timeout (Thanos's reader
    /// pool does this every tenth of it); returns how many. Nothing without lazy headers or
    /// with a zero timeout.
    pub fn unload_idle_headers(&self) -> usize {
        let idle = self.options.index_header_idle_timeout;
        if !self.options.lazy_index_header || idle.is_zero() {
            return 0;
        }
        self.blocks().iter().filter(|b| b.unload_if_idle(idle)).count()
    }

    /// The loaded blocks.
    pub fn blocks(&self) -> Vec<Arc<BucketBlock>> {
        self.blocks.read().values().cloned().collect()
    }

    /// Lists the bucket and loads the blocks to serve that are not loaded yet, drops those no
    /// longer to serve and removes their local files.
    pub async fn sync(&self) -> Result<(), SyncError> {
        let started = Instant::now();
        self.metrics.meta.syncs.inc();
        let fetched = match self.fetcher.fetch().await {
            Ok(f) => f,
            Err(e) => {
                self.metrics.meta.sync_failures.inc();
                return Err(e.into());
            }
        };
        let first = !self.is_synced();
        let (wanted, counts) = self.filter(fetched);
        self.metrics.meta.set_synced(&counts);
        self.metrics.meta.sync_duration.observe(started.elapsed().as_secs_f64());

        let loaded: HashSet<Ulid> = self.blocks.read().keys().copied().collect();
        let to_load: Vec<BlockMeta> = wanted.values().filter(|m| !loaded.contains(&m.ulid)).cloned().collect();
        if first {
            info!(blocks = wanted.len(), to_load = to_load.len(), "first sync: loading blocks");
        }
        let total = to_load.len();
        // One listing of the bucket for all the blocks to load, not one per block: a listing
        // can cost as much as the bucket is large (moto scans every key for any prefix).
        let mut objects: HashMap<Ulid, HashMap<String, u64>> = HashMap::new();
        if !to_load.is_empty() {
            let listed = match self.bucket.list_recursive("").await {
                Ok(l) => l,
                Err(e) => {
                    self.metrics.meta.sync_failures.inc();
                    return Err(SyncError::List(e));
                }
            };
            for o in listed {
                let Some((dir, rel)) = o.location.as_ref().split_once('/') else { continue };
                if let Ok(id) = Ulid::from_string(dir) {
                    objects.entry(id).or_default().insert(rel.to_owned(), o.size);
                }
            }
        }
        let mut loads = futures::stream::iter(to_load.into_iter().map(|meta| {
            let id = meta.ulid;
            let files = objects.remove(&id).unwrap_or_default();
            async move {
                let load = BucketBlock::load(&self.bucket, meta, &files, &self.options.data_dir, self.shared.clone());
                (id, load.await)
            }
        }))
        .buffer_unordered(self.options.block_sync_concurrency.max(1));
        let (mut ok, mut failed) = (0usize, 0usize);
        while let Some((id, result)) = loads.next().await {
            self.metrics.block_loads.inc();
            match result {
                Ok(block) => {
                    if !first {
                        info!(block = %id, "loaded new block");
                    }
                    self.blocks.write().insert(id, Arc::new(block));
                    ok += 1;
                }
                Err(e) => {
                    self.metrics.block_load_failures.inc();
                    warn!(block = %id, error = %e, "loading block failed; skipping it until the next sync");
                    failed += 1;
                }
            }
            if first && (ok + failed) % 100 == 0 {
                info!(loaded = ok, failed, of = total, "first sync: loading blocks");
            }
        }
        let dropped: Vec<Ulid> = self.blocks.read().keys().filter(|id| !wanted.contains_key(id)).copied().collect();
        for id in &dropped {
            self.blocks.write().remove(id);
            self.metrics.block_drops.inc();
            info!(block = %id, "dropped block");
        }
        self.remove_stale_dirs();
        self.metrics.blocks_loaded.set(self.blocks.read().len() as i64);
        if first {
            info!(loaded = ok, failed, elapsed = ?started.elapsed(), "first sync done");
        }
        self.synced.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes the local directories of blocks that are not loaded (dropped, or left by an
    /// earlier run).
    fn remove_stale_dirs(&self) {
        let Ok(entries) = std::fs::read_dir(&self.options.data_dir) else { return };
        let loaded = self.blocks.read();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| Ulid::from_string(n).ok()) else { continue };
            if loaded.contains_key(&id) {
                continue;
            }
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                self.metrics.block_drop_failures.inc();
                warn!(block = %id, error = %e, "removing the block's local files failed");
            }
        }
    }

    /// The blocks to serve among those fetched (Thanos's meta filters: time partition, the
    /// relabel selector, then deduplication of blocks whose sources another block holds), and
    /// the count per state.
    fn filter(&self, fetched: FetchedMetas) -> (BTreeMap<Ulid, BlockMeta>, Vec<(&'static str, usize)>) {
        let (min, max) = self.time_window();
        let before = fetched.metas.len();
        let in_time: Vec<BlockMeta> = fetched.metas.into_values().filter(|m| overlaps_range(m, min, max)).collect();
        let time_excluded = before - in_time.len();
        let no_labels = BTreeMap::new();
        let selected: Vec<BlockMeta> = in_time
            .into_iter()
            .filter(|m| {
                let labels = m.thanos.as_ref().map_or(&no_labels, |t| &t.labels);
                self.options.selector.selects(labels, &m.ulid.to_string())
            })
            .collect();
        let label_excluded = before - time_excluded - selected.len();
        let (kept, _) = deduplicate(selected);
        let duplicate = before - time_excluded - label_excluded - kept.len();
        // Thanos serves the three resolutions its compactor makes and refuses to load others.
        let (kept, odd): (Vec<BlockMeta>, Vec<BlockMeta>) =
            kept.into_iter().partition(|m| RESOLUTIONS.contains(&resolution(m)));
        for m in &odd {
            warn!(block = %m.ulid, resolution = resolution(m), "unsupported downsampling resolution; block not served");
        }
        let counts = vec![
            ("corrupted-meta-json", fetched.corrupt.len()),
            ("duplicate", duplicate),
            ("label-excluded", label_excluded),
            ("loaded", kept.len()),
            ("marked-for-deletion", fetched.marked_for_deletion.len()),
            ("no-meta-json", fetched.partial.len()),
            ("time-excluded", time_excluded),
            ("too-fresh", fetched.too_fresh.len()),
        ];
        (kept.into_iter().map(|m| (m.ulid, m)).collect(), counts)
    }

    /// `--min-time` and `--max-time` now.
    fn time_window(&self) -> (i64, i64) {
        (self.options.min_time.now(), self.options.max_time.now())
    }

    /// The loaded blocks overlapping `[mint, maxt]`, each as a storage with its external labels:
    /// all of them (`max_resolution` `None`), or per external label set those [`blocks_for`]
    /// picks for a read allowing `max_resolution` (ms).
    fn storages(&self, mint: i64, maxt: i64, max_resolution: Option<i64>) -> Vec<Arc<dyn Storage>> {
        let (min, max) = self.time_window();
        let (mint, maxt) = (mint.max(min), maxt.min(max));
        let blocks = self.blocks.read();
        let chosen: Vec<&Arc<BucketBlock>> = match max_resolution {
            None => blocks.values().filter(|b| b.overlaps(mint, maxt)).collect(),
            Some(max_resolution) => {
                let mut by_labels: BTreeMap<&Labels, Vec<&Arc<BucketBlock>>> = BTreeMap::new();
                for b in blocks.values() {
                    by_labels.entry(b.labels()).or_default().push(b);
                }
                by_labels
                    .into_values()
                    .flat_map(|set| {
                        let spans: Vec<BlockSpan> = set
                            .iter()
                            .map(|b| BlockSpan {
                                min_time: b.meta().min_time,
                                max_time: b.meta().max_time,
                                resolution: resolution(b.meta()),
                            })
                            .collect();
                        blocks_for(&spans, mint, maxt, max_resolution).into_iter().map(move |i| set[i])
                    })
                    .collect()
            }
        };
        chosen
            .into_iter()
            .map(|b| {
                let raw: Arc<dyn Storage> = Arc::new(BlockStorage(b.clone()));
                Arc::new(ExternalLabels::new(raw, b.labels().clone())) as Arc<dyn Storage>
            })
            .collect()
    }
}

/// The resolutions of blocks a store serves, coarsest first: 1h, 5m, raw (Thanos's
/// `bucketBlockSet.resolutions`).
const RESOLUTIONS: [i64; 3] = [3_600_000, 300_000, 0];

/// A block's downsampling resolution (ms); 0 for raw data.
/// A block's time range (`max_time` exclusive, as in meta.json) and resolution.
#[derive(Debug, Clone, Copy)]
struct BlockSpan {
    min_time: i64,
    max_time: i64,
    resolution: i64,
}

/// The blocks (indices into `spans`, the blocks of one external label set) a read of
/// `[mint, maxt]` allowing resolutions up to `max_resolution` gets, as Thanos's `getFor`: the
/// blocks of the coarsest allowed resolution, in time order, and in the gaps before, between
/// and after them the blocks `getFor` picks at the next finer resolution, recursively. A block
/// of a finer resolution reaching into several gaps is listed once.
fn blocks_for(spans: &[BlockSpan], mint: i64, maxt: i64, max_resolution: i64) -> Vec<usize> {
    fn fill(spans: &[BlockSpan], levels: &[Vec<usize>], mint: i64, maxt: i64, level: usize, out: &mut Vec<usize>) {
        if mint > maxt {
            return;
        }
        let finer = level + 1 < levels.len();
        let mut start = mint;
        for &i in &levels[level] {
            let b = spans[i];
            if b.max_time <= mint {
                continue;
            }
            if b.min_time > maxt {
                break;
            }
            if finer {
                fill(spans, levels, start, b.min_time - 1, level + 1, out);
            }
            out.push(i);
            start = b.max_time;
        }
        if finer {
            fill(spans, levels, start, maxt, level + 1, out);
        }
    }
    let first = RESOLUTIONS.iter().position(|&r| r <= max_resolution).unwrap_or(RESOLUTIONS.len() - 1);
    let levels: Vec<Vec<usize>> = RESOLUTIONS[first..]
        .iter()
        .map(|&r| {
            let mut level: Vec<usize> = (0..spans.len()).filter(|&i| spans[i].resolution == r).collect();
            level.sort_by_key(|&i| (spans[i].min_time, spans[i].max_time));
            level
        })
        .collect();
    let mut out = Vec::new();
    fill(spans, &levels, mint, maxt, 0, &mut out);
    let mut seen = HashSet::new();
    out.retain(|&i| seen.insert(i));
    out
}

impl Storage for BucketStore {
    /// The blocks are asked at once, a few threads at a time: each block's first round of
    /// reads happens in its `select`, so their round trips overlap.
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        let storages = self.storages(req.min_time, req.max_time, Some(req.max_resolution_window));
        let mut sets = Vec::with_capacity(storages.len());
        for group in storages.chunks(BLOCK_READ_CONCURRENCY) {
            let answers: Vec<Result<SeriesSet, StorageError>> = std::thread::scope(|scope| {
                let reads: Vec<_> = group.iter().map(|s| scope.spawn(move || s.select(req))).collect();
                reads
                    .into_iter()
                    .map(|r| r.join().unwrap_or_else(|_| Err(StorageError::Unavailable("block read panicked".into()))))
                    .collect()
            });
            for a in answers {
                sets.push(a?);
            }
        }
        Ok(merge_limited(sets, req.limit))
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        merged_labels(self.storages(req.min_time, req.max_time, None).into_iter(), req, |s| s.label_names(req))
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        merged_labels(self.storages(req.min_time, req.max_time, None).into_iter(), req, |s| s.label_values(name, req))
    }
}

impl Store for BucketStore {
    /// Thanos's answer: the distinct external label sets of the blocks, their time span clamped
    /// to `--min-time`/`--max-time` (`i64::MAX`/`i64::MIN` without blocks), and per label set
    /// the runs of blocks that touch or overlap as `tsdb_infos`.
    fn info(&self) -> StoreInfo {
        let blocks = self.blocks.read();
        let mut by_labels: BTreeMap<Labels, Vec<(i64, i64)>> = BTreeMap::new();
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        for b in blocks.values() {
            let m = b.meta();
            min_time = min_time.min(m.min_time);
            max_time = max_time.max(m.max_time);
            by_labels.entry(b.labels().clone()).or_default().push((m.min_time, m.max_time));
        }
        let mut tsdb_infos = Vec::new();
        for (labels, mut ranges) in by_labels.clone() {
            ranges.sort();
            let mut cur: Option<(i64, i64)> = None;
            for (lo, hi) in ranges {
                cur = match cur {
                    Some((clo, chi)) if lo <= chi => Some((clo, chi.max(hi))),
                    Some((clo, chi)) => {
                        tsdb_infos.push(TsdbInfo { labels: labels.clone(), min_time: clo, max_time: chi });
                        Some((lo, hi))
                    }
                    None => Some((lo, hi)),
                };
            }
            if let Some((lo, hi)) = cur {
                tsdb_infos.push(TsdbInfo { labels: labels.clone(), min_time: lo, max_time: hi });
            }
        }
        let (min, max) = self.time_window();
        StoreInfo {
            component: Component::Store,
            label_sets: by_labels.into_keys().filter(|l| !l.is_empty()).collect(),
            min_time: min_time.max(min),
            max_time: max_time.min(max),
            tsdb_infos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R0: i64 = 0;
    const R1: i64 = 300_000;
    const R2: i64 = 3_600_000;

    /// Thanos's `TestBucketBlockSet_addGet` (pkg/store/bucket_test.go): the same blocks, the
    /// same reads, the same answers.
    #[test]
    fn picks_resolutions_as_thanos_get_for() {
        let input = [
            (R0, 0, 100),
            (R0, 100, 200),
            (R0, 100, 200),
            (R0, 200, 299),
            (R0, 200, 300),
            (R0, 300, 400),
            (R0, 300, 600),
            (R0, 400, 500),
            (R1, 0, 100),
            (R1, 100, 200),
            (R1, 200, 300),
            (R1, 300, 400),
            (R2, 100, 200),
            (R2, 200, 300),
        ];
        let spans: Vec<BlockSpan> = input
            .iter()
            .map(|&(resolution, min_time, max_time)| BlockSpan { min_time, max_time, resolution })
            .collect();
        let picked = |mint, maxt, max_resolution| -> Vec<(i64, i64, i64)> {
            blocks_for(&spans, mint, maxt, max_resolution).into_iter().map(|i| input[i]).collect()
        };
        assert_eq!(
            picked(-100, 1000, 0),
            [
                (R0, 0, 100),
                (R0, 100, 200),
                (R0, 100, 200),
                (R0, 200, 299),
                (R0, 200, 300),
                (R0, 300, 400),
                (R0, 300, 600),
                (R0, 400, 500)
            ]
        );
        assert_eq!(
            picked(100, 400, R1 - 1),
            [
                (R0, 100, 200),
                (R0, 100, 200),
                (R0, 200, 299),
                (R0, 200, 300),
                (R0, 300, 400),
                (R0, 300, 600),
                (R0, 400, 500)
            ]
        );
        assert_eq!(
            picked(100, 500, R1),
            [(R1, 100, 200), (R1, 200, 300), (R1, 300, 400), (R0, 300, 600), (R0, 400, 500)]
        );
        assert_eq!(
            picked(0, 500, R2),
            [(R1, 0, 100), (R2, 100, 200), (R2, 200, 300), (R1, 300, 400), (R0, 300, 600), (R0, 400, 500)]
        );
        assert!(picked(10, 5, R2).is_empty());
        // A finer block reaching into two gaps of a coarser level is listed once (Thanos lists
        // it twice and its proxy drops the identical chunks).
        let spans = [
            BlockSpan { min_time: 0, max_time: 10, resolution: R1 },
            BlockSpan { min_time: 20, max_time: 30, resolution: R1 },
            BlockSpan { min_time: 0, max_time: 40, resolution: R0 },
        ];
        assert_eq!(blocks_for(&spans, 0, 40, R1), [0, 2, 1]);
    }
}
