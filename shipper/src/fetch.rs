//! Reading blocks from the bucket: which blocks are there (with their meta.json), downloading a
//! whole block, reading a byte range of one of its files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use strata_tsdb::block::meta::{BlockMeta, META_FILENAME};
use strata_tsdb::fileutil::{sync_dir, write_atomic};
use tracing::{debug, info, warn};
use ulid::Ulid;

use crate::bucket::Bucket;
use crate::markers::{DeletionMark, DELETION_MARK_FILENAME, NO_COMPACT_MARK_FILENAME, NO_DOWNSAMPLE_MARK_FILENAME};
use crate::{Error, Result};

/// Sources whose blocks are complete when they appear, so the consistency delay does not apply
/// (Thanos's `ConsistencyDelayMetaFilter`).
const DELAY_EXEMPT_SOURCES: [&str; 3] = ["compactor", "compactor.repair", "bucket.repair"];

/// States of `thanos_blocks_meta_synced`, as Thanos's fetcher names them.
pub const SYNCED_STATES: [&str; 10] = [
    "corrupted-meta-json",
    "duplicate",
    "failed",
    "label-excluded",
    "loaded",
    "marked-for-deletion",
    "marked-for-no-compact",
    "no-meta-json",
    "time-excluded",
    "too-fresh",
];

/// A time (ms): absolute, or relative to the moment it is used (Thanos's
/// `TimeOrDurationValue`: `-2w` means two weeks before now, and moves with it). The bound of
/// a time-partitioned block filter: the store gateway's and `tools bucket web`'s `--min-time`
/// and `--max-time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    Absolute(i64),
    /// Milliseconds added to the current time.
    Relative(i64),
}

impl TimeBound {
    /// The time this stands for now.
    pub fn now(self) -> i64 {
        match self {
            TimeBound::Absolute(t) => t,
            TimeBound::Relative(d) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                now.saturating_add(d)
            }
        }
    }
}

/// Whether `meta` overlaps `[min, max]` (both inclusive; Thanos's `TimePartitionMetaFilter`).
pub fn overlaps_range(meta: &BlockMeta, min: i64, max: i64) -> bool {
    meta.max_time >= min && meta.min_time <= max
}

type StateLabel = [(&'static str, &'static str); 1];

/// Thanos's metrics of a meta sync (`thanos_blocks_meta_*`), the store gateway's and the
/// compactor's.
#[derive(Clone)]
pub struct FetcherMetrics {
    pub syncs: Counter,
    pub sync_failures: Counter,
    pub sync_duration: Histogram,
    synced: Family<StateLabel, Gauge>,
}

impl FetcherMetrics {
    /// Registers the metrics, every state of `thanos_blocks_meta_synced` at zero.
    pub fn new(registry: &mut Registry) -> FetcherMetrics {
        let m = FetcherMetrics {
            syncs: Counter::default(),
            sync_failures: Counter::default(),
            sync_duration: Histogram::new([0.01, 1., 10., 100., 300., 600., 1000.]),
            synced: Family::default(),
        };
        registry.register(
            "thanos_blocks_meta_syncs",
            "Total blocks metadata synchronization attempts",
            m.syncs.clone(),
        );
        registry.register(
            "thanos_blocks_meta_sync_failures",
            "Total blocks metadata synchronization failures",
            m.sync_failures.clone(),
        );
        registry.register(
            "thanos_blocks_meta_sync_duration_seconds",
            "Duration of the blocks metadata synchronization in seconds",
            m.sync_duration.clone(),
        );
        registry.register("thanos_blocks_meta_synced", "Number of block metadata synced", m.synced.clone());
        for state in SYNCED_STATES {
            m.synced.get_or_create(&[("state", state)]).set(0);
        }
        m
    }

    /// Sets `thanos_blocks_meta_synced` for the states given (each one of [`SYNCED_STATES`]).
    pub fn set_synced(&self, counts: &[(&'static str, usize)]) {
        for &(state, n) in counts {
            self.synced.get_or_create(&[("state", state)]).set(n as i64);
        }
    }
}

/// The blocks of a bucket, sorted out.
#[derive(Debug, Clone, Default)]
pub struct FetchedMetas {
    /// Usable blocks.
    pub metas: BTreeMap<Ulid, BlockMeta>,
    /// Block directories without meta.json: uploads in progress or abandoned.
    pub partial: Vec<Ulid>,
    /// Blocks hidden by a deletion mark.
    pub marked_for_deletion: Vec<Ulid>,
    /// The deletion mark of every block that has one, hidden or not yet.
    pub deletion_marks: BTreeMap<Ulid, DeletionMark>,
    /// Usable blocks with a no-compact mark; found only by a fetcher that lists recursively
    /// ([`MetaFetcher::with_recursive_listing`]).
    pub no_compact_marked: Vec<Ulid>,
    /// Usable blocks with a no-downsample mark; found only by a fetcher that lists
    /// recursively.
    pub no_downsample_marked: Vec<Ulid>,
    /// Blocks younger than the consistency delay.
    pub too_fresh: Vec<Ulid>,
    /// Blocks whose meta.json does not parse.
    pub corrupt: Vec<(Ulid, String)>,
}

/// What one block's lookup found.
enum Found {
    Meta(Box<BlockMeta>),
    Partial,
    Corrupt(String),
}

/// Lists the bucket's blocks and loads their meta.json, a bounded number at a time, keeping the
/// metas it has seen (a meta.json never changes once uploaded).
pub struct MetaFetcher {
    bucket: Bucket,
    concurrency: usize,
    consistency_delay: Duration,
    deletion_mark_delay: Duration,
    recursive: bool,
    cache: Mutex<HashMap<Ulid, BlockMeta>>,
    /// Deletion marks read, used only when a listing shows the mark is still there.
    marks: Mutex<HashMap<Ulid, DeletionMark>>,
}

impl MetaFetcher {
    /// A fetcher with 32 concurrent reads, no consistency delay, and every deletion-marked block
    /// hidden.
    pub fn new(bucket: Bucket) -> MetaFetcher {
        MetaFetcher {
            bucket,
            concurrency: 32,
            consistency_delay: Duration::ZERO,
            deletion_mark_delay: Duration::ZERO,
            recursive: false,
            cache: Mutex::new(HashMap::new()),
            marks: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> MetaFetcher {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Hide blocks uploaded less than `delay` ago (by `thanos.upload_time`, else the ULID time),
    /// so readers never act on a block another writer may still be finishing.
    pub fn with_consistency_delay(mut self, delay: Duration) -> MetaFetcher {
        self.consistency_delay = delay;
        self
    }

    /// Hide a deletion-marked block only once its mark is this old (the store gateway's
    /// `--ignore-deletion-marks-delay`); zero hides it at once.
    pub fn with_deletion_mark_delay(mut self, delay: Duration) -> MetaFetcher {
        self.deletion_mark_delay = delay;
        self
    }

    /// Find blocks and their markers with one recursive listing of the bucket instead of a
    /// request per block (Thanos's recursive block discovery): a sync then costs one listing
    /// plus the meta.json and marks not read before. Also finds no-compact and no-downsample marks.
    pub fn with_recursive_listing(mut self) -> MetaFetcher {
        self.recursive = true;
        self
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Lists the bucket and sorts every block into usable, partial, marked, too fresh, corrupt.
    pub async fn fetch(&self) -> Result<FetchedMetas> {
        let listing = if self.recursive { Some(self.list_block_files().await?) } else { None };
        let ids: Vec<Ulid> = match &listing {
            Some(files) => files.keys().copied().collect(),
            None => {
                self.bucket.list_top_level().await?.iter().filter_map(|name| Ulid::from_string(name).ok()).collect()
            }
        };
        let has = |id: &Ulid, name: &str| listing.as_ref().map(|l| l.get(id).is_some_and(|f| f.contains(name)));
        let now = SystemTime::now();
        let mut lookups = futures::stream::iter(ids.into_iter().map(|id| async move {
            let found = match has(&id, META_FILENAME) {
                Some(false) => Ok(Found::Partial),
                _ => self.load_meta(id).await,
            };
            let mark = match (&found, has(&id, DELETION_MARK_FILENAME)) {
                (Ok(Found::Meta(_)), Some(false)) => Ok(None),
                (Ok(Found::Meta(_)), Some(true)) => self.cached_deletion_mark(id).await,
                (Ok(Found::Meta(_)), None) => self.deletion_mark(id).await,
                _ => Ok(None),
            };
            let no_compact = has(&id, NO_COMPACT_MARK_FILENAME) == Some(true);
            (id, found, mark, no_compact, has(&id, NO_DOWNSAMPLE_MARK_FILENAME) == Some(true))
        }))
        .buffer_unordered(self.concurrency);

        let mut out = FetchedMetas::default();
        while let Some((id, found, mark, no_compact, no_downsample)) = lookups.next().await {
            let meta = match found? {
                Found::Meta(m) => m,
                Found::Partial => {
                    out.partial.push(id);
                    continue;
                }
                Found::Corrupt(reason) => {
                    out.corrupt.push((id, reason));
                    continue;
                }
            };
            if let Some(mark) = mark? {
                let marked_at = UNIX_EPOCH + Duration::from_secs(mark.deletion_time.max(0) as u64);
                let hidden = now.duration_since(marked_at).unwrap_or_default() >= self.deletion_mark_delay;
                out.deletion_marks.insert(id, mark);
                if hidden {
                    out.marked_for_deletion.push(id);
                    continue;
                }
            }
            if self.too_fresh(&meta, now) {
                out.too_fresh.push(id);
                continue;
            }
            if no_compact {
                out.no_compact_marked.push(id);
            }
            if no_downsample {
                out.no_downsample_marked.push(id);
            }
            out.metas.insert(id, *meta);
        }
        out.no_compact_marked.sort();
        out.no_downsample_marked.sort();
        out.partial.sort();
        out.marked_for_deletion.sort();
        out.too_fresh.sort();
        out.corrupt.sort();
        debug!(
            bucket = %self.bucket, blocks = out.metas.len(), partial = out.partial.len(),
            marked = out.marked_for_deletion.len(), too_fresh = out.too_fresh.len(), corrupt = out.corrupt.len(),
            "fetched block metas"
        );
        Ok(out)
    }

    async fn load_meta(&self, id: Ulid) -> Result<Found> {
        if let Some(m) = self.cache.lock().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(Found::Meta(Box::new(m)));
        }
        let key = format!("{id}/{META_FILENAME}");
        let Some(text) = self.bucket.get_opt(&key).await? else { return Ok(Found::Partial) };
        match BlockMeta::parse(&text, Path::new(&key)) {
            Ok(m) if m.ulid == id => {
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(id, m.clone());
                }
                Ok(Found::Meta(Box::new(m)))
            }
            Ok(m) => Ok(Found::Corrupt(format!("meta.json names block {}", m.ulid))),
            Err(e) => Ok(Found::Corrupt(e.to_string())),
        }
    }

    /// Every block's file names (relative to the block), from one recursive listing.
    async fn list_block_files(&self) -> Result<HashMap<Ulid, HashSet<String>>> {
        let mut out: HashMap<Ulid, HashSet<String>> = HashMap::new();
        for o in self.bucket.list_recursive("").await? {
            let key = o.location.as_ref();
            let Some((dir, rel)) = key.split_once('/') else { continue };
            if let Ok(id) = Ulid::from_string(dir) {
                out.entry(id).or_default().insert(rel.to_owned());
            }
        }
        Ok(out)
    }

    /// A deletion mark the listing shows: read once, then kept (a mark is never rewritten).
    async fn cached_deletion_mark(&self, id: Ulid) -> Result<Option<DeletionMark>> {
        if let Some(m) = self.marks.lock().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(Some(m));
        }
        let mark = self.deletion_mark(id).await?;
        if let (Some(m), Ok(mut c)) = (&mark, self.marks.lock()) {
            c.insert(id, m.clone());
        }
        Ok(mark)
    }

    /// The block's deletion mark; an unreadable mark is ignored with a warning, as Thanos does
    /// (it is usually one being written).
    async fn deletion_mark(&self, id: Ulid) -> Result<Option<DeletionMark>> {
        let key = format!("{id}/{DELETION_MARK_FILENAME}");
        let Some(text) = self.bucket.get_opt(&key).await? else { return Ok(None) };
        match DeletionMark::parse(&text) {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                warn!(key, error = %e, "unreadable deletion mark; ignoring it");
                Ok(None)
            }
        }
    }

    fn too_fresh(&self, meta: &BlockMeta, now: SystemTime) -> bool {
        if self.consistency_delay.is_zero() {
            return false;
        }
        let thanos = meta.thanos.as_ref();
        if thanos.is_some_and(|t| DELAY_EXEMPT_SOURCES.contains(&t.source.as_str())) {
            return false;
        }
        let uploaded = thanos
            .and_then(|t| t.upload_time.as_deref())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(SystemTime::from)
            .unwrap_or_else(|| meta.ulid.datetime());
        now.duration_since(uploaded).unwrap_or_default() < self.consistency_delay
    }
}

/// Downloads a block into `<dst_dir>/<ULID>` (meta.json, index, chunks/*; markers and unknown
/// files stay behind) through a temporary directory renamed into place at the end. When
/// meta.json lists the files, each must be in the bucket with that size. Up to
/// `files_concurrency` files download at once (Thanos's `--block-files-concurrency`).
pub async fn download_block(bucket: &Bucket, id: Ulid, dst_dir: &Path, files_concurrency: usize) -> Result<PathBuf> {
    let meta_key = format!("{id}/{META_FILENAME}");
    let meta_text = bucket.get_opt(&meta_key).await?.ok_or(Error::BlockNotFound(id))?;
    let meta = BlockMeta::parse(&meta_text, Path::new(&meta_key))?;

    let objects = bucket.list_recursive(&id.to_string()).await?;
    let prefix = format!("{id}/");
    let mut files = BTreeMap::new();
    for o in &objects {
        let key = o.location.as_ref();
        let Some(rel) = key.strip_prefix(&prefix) else { continue };
        if rel == "index" || rel.strip_prefix("chunks/").is_some_and(|n| !n.is_empty() && !n.contains('/')) {
            files.insert(rel.to_owned(), o.size);
        }
    }
    if !files.contains_key("index") {
        return Err(Error::BadObject { key: format!("{id}/index"), reason: "missing".into() });
    }
    if let Some(t) = &meta.thanos {
        for f in t.files.iter().filter(|f| f.rel_path != META_FILENAME) {
            match (files.get(&f.rel_path), f.size_bytes) {
                (None, _) => {
                    return Err(Error::BadObject {
                        key: format!("{id}/{}", f.rel_path),
                        reason: "listed in meta.json, missing".into(),
                    })
                }
                (Some(&have), Some(want)) if have != want => {
                    return Err(Error::BadObject {
                        key: format!("{id}/{}", f.rel_path),
                        reason: format!("size {have}, meta.json says {want}"),
                    })
                }
                _ => {}
            }
        }
    }

    let final_dir = dst_dir.join(id.to_string());
    let tmp_dir = dst_dir.join(format!("{id}.tmp-for-download"));
    remove_dir_if_exists(&tmp_dir)?;
    let chunks_dir = tmp_dir.join("chunks");
    std::fs::create_dir_all(&chunks_dir).map_err(|e| Error::io("create dir", &chunks_dir, e))?;
    let mut total = 0u64;
    let mut downloads = futures::stream::iter(files.keys().map(|rel| {
        let (key, dst) = (format!("{id}/{rel}"), tmp_dir.join(rel));
        async move { bucket.download_file(&key, &dst).await }
    }))
    .buffer_unordered(files_concurrency.max(1));
    while let Some(size) = downloads.next().await {
        total += size?;
    }
    drop(downloads);
    // Every file is fsynced; the directories' entries are made durable before the rename
    // publishes the block (meta.json's atomic write syncs `tmp_dir`).
    sync_dir(&chunks_dir)?;
    write_atomic(&tmp_dir.join(META_FILENAME), &meta_text)?;
    remove_dir_if_exists(&final_dir)?;
    std::fs::rename(&tmp_dir, &final_dir).map_err(|e| Error::io("rename", &tmp_dir, e))?;
    sync_dir(dst_dir)?;
    info!(block = %id, files = files.len() + 1, bytes = total + meta_text.len() as u64, dir = %final_dir.display(), "downloaded block");
    Ok(final_dir)
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove dir", dir, e)),
    }
}

/// A block's downsampling resolution in ms (0 for raw data and for blocks without a Thanos
/// section).
pub fn resolution(m: &BlockMeta) -> i64 {
    m.thanos.as_ref().map_or(0, |t| t.downsample.resolution)
}

/// Drops blocks whose sources are all in another block of the same resolution (a compactor's
/// output beside its inputs), as Thanos's `DeduplicateFilter`: blocks with more sources first,
/// then by ULID; a block is kept unless a kept one holds all its sources. Returns the kept
/// blocks sorted by ULID and the ULIDs of the dropped ones.
pub fn deduplicate(mut metas: Vec<BlockMeta>) -> (Vec<BlockMeta>, Vec<Ulid>) {
    metas.sort_by(|a, b| b.compaction.sources.len().cmp(&a.compaction.sources.len()).then(a.ulid.cmp(&b.ulid)));
    let mut kept: Vec<(BlockMeta, HashSet<Ulid>)> = Vec::new();
    let mut dropped = Vec::new();
    for m in metas {
        let sources: HashSet<Ulid> = if m.compaction.sources.is_empty() {
            HashSet::from([m.ulid])
        } else {
            m.compaction.sources.iter().copied().collect()
        };
        let covered =
            kept.iter().any(|(k, ks)| resolution(k) == resolution(&m) && sources.iter().all(|s| ks.contains(s)));
        if covered {
            dropped.push(m.ulid);
        } else {
            kept.push((m, sources));
        }
    }
    let mut out: Vec<BlockMeta> = kept.into_iter().map(|(m, _)| m).collect();
    out.sort_by_key(|m| m.ulid);
    dropped.sort();
    (out, dropped)
}

/// Reads `range` of one of a block's files (`index`, `chunks/000001`, ...).
pub async fn read_block_range(bucket: &Bucket, id: Ulid, rel_path: &str, range: Range<u64>) -> Result<Bytes> {
    bucket.get_range(&format!("{id}/{rel_path}"), range).await
}
