//! The compactor's pass over a bucket (Thanos's `BucketCompactor` and `compactMainFn`): sync
//! the block metas, mark blocks other blocks have superseded, compact every group until
//! nothing more is planned, then apply retention and delete what has been marked long enough.
//!
//! Crash safety: a merged block is uploaded completely (chunks, index, meta.json last) before
//! any of its inputs is marked for deletion, and blocks are deleted only `--delete-delay` after
//! their mark. Killed at any point, the bucket holds every sample at least once; a compacted
//! block beside its unmarked inputs is recognised by its sources (the duplicate filter) and the
//! inputs are marked on the next pass.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use strata_shipper::markers::{
    mark_for_deletion, mark_no_compact, DeletionMark, DELETION_MARK_FILENAME, NO_COMPACT_MARK_FILENAME,
    OUT_OF_ORDER_CHUNKS_REASON,
};
use strata_shipper::relabel::Relabel;
use strata_shipper::{deduplicate, download_block, upload_block, Bucket, MetaFetcher, RetryPolicy};
use strata_tsdb::block::meta::{BlockMeta, ThanosMeta, META_FILENAME};
use strata_tsdb::block::Block;
use strata_tsdb::compact::merge_blocks;
use strata_tsdb::index::{IndexReader, INDEX_FILENAME};
use strata_tsdb::querier::{merge_chunks, ChunkMerge};
use tracing::{debug, error, info, warn};
use ulid::Ulid;

use crate::clean::{self, Retention};
use crate::group::{group_blocks, remove_replica_labels, Group};
use crate::metrics::CompactMetrics;
use crate::planner::{self, DEFAULT_RANGES};
use crate::verify::{verify_block, ChunkCheck, Issue};
use crate::web::{BlocksView, Snapshot};
use crate::{Error, Result};

/// The no-compact reason for an input block that cannot be read or breaks the index format.
pub const CORRUPT_BLOCK_REASON: &str = "corrupted-block";

/// Deletion-mark details of the inputs of a compacted block, as Thanos writes them.
const SOURCE_DETAILS: &str = "source of compacted block";

/// What a compactor does (Thanos's `compact` flags).
#[derive(Debug, Clone)]
pub struct CompactorOptions {
    /// Where blocks are downloaded and merged (`--data-dir`); only scratch space.
    pub data_dir: PathBuf,
    /// Blocks uploaded less than this long ago are left alone (`--consistency-delay`).
    pub consistency_delay: Duration,
    /// How long a deletion-marked block stays before it is deleted (`--delete-delay`).
    pub delete_delay: Duration,
    pub retention: Retention,
    /// Merge overlapping blocks of a group instead of halting
    /// (`--compact.enable-vertical-compaction`, implied by replica labels).
    pub vertical_compaction: bool,
    /// External labels removed before grouping (`--deduplication.replica-label`).
    pub replica_labels: Vec<String>,
    /// How overlapping chunks of a series merge (`--deduplication.func`: empty for Prometheus's
    /// chained merge, `penalty` for Thanos's penalty deduplication of replicas).
    pub chunk_merge: ChunkMerge,
    /// Groups compacted at once (`--compact.concurrency`).
    pub concurrency: usize,
    /// Blocks of a plan downloaded at once (`--compact.blocks-fetch-concurrency`).
    pub blocks_fetch_concurrency: usize,
    /// Files of a block downloaded at once (`--block-files-concurrency`).
    pub block_files_concurrency: usize,
    /// Which blocks this compactor owns (`--selector.relabel-config`).
    pub selector: Relabel,
    /// Mark blocks with out-of-order chunks no-compact instead of halting
    /// (`--compact.skip-block-with-out-of-order-chunks`).
    pub skip_out_of_order_chunks: bool,
    /// Block ranges of the levels; the first is the uploaded blocks' range.
    pub ranges: Vec<i64>,
    /// Downsample raw and 5m blocks after compacting (not `--downsampling.disable`).
    pub downsampling: bool,
    /// Blocks downsampled at once (`--downsample.concurrency`).
    pub downsample_concurrency: usize,
}

impl Default for CompactorOptions {
    /// Thanos's defaults.
    fn default() -> Self {
        CompactorOptions {
            data_dir: PathBuf::from("./data"),
            consistency_delay: Duration::from_secs(30 * 60),
            delete_delay: Duration::from_secs(48 * 3600),
            retention: Retention::default(),
            vertical_compaction: false,
            replica_labels: Vec::new(),
            chunk_merge: merge_chunks,
            concurrency: 1,
            blocks_fetch_concurrency: 1,
            block_files_concurrency: 1,
            selector: Relabel::default(),
            skip_out_of_order_chunks: false,
            ranges: DEFAULT_RANGES.to_vec(),
            downsampling: true,
            downsample_concurrency: 1,
        }
    }
}

/// The bucket's blocks as the compactor sees them.
pub(crate) struct Synced {
    /// Selected, replica labels removed, superseded blocks dropped.
    pub(crate) metas: Vec<BlockMeta>,
    /// Blocks whose sources another block holds.
    duplicates: Vec<Ulid>,
    no_compact: HashSet<Ulid>,
    /// Blocks the downsampling passes leave out.
    pub(crate) no_downsample: HashSet<Ulid>,
    partial: Vec<Ulid>,
    deletion_marks: BTreeMap<Ulid, DeletionMark>,
}

pub struct Compactor {
    pub(crate) bucket: Bucket,
    fetcher: MetaFetcher,
    pub(crate) options: CompactorOptions,
    metrics: CompactMetrics,
    pub(crate) retry: RetryPolicy,
    /// Where each sync's result goes for the bucket page's loaded view.
    view: Option<Arc<BlocksView>>,
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Compactor {
    pub fn new(bucket: Bucket, mut options: CompactorOptions, metrics: CompactMetrics) -> Compactor {
        // Replicas only share a group once their labels are gone, and then they overlap.
        options.vertical_compaction |= !options.replica_labels.is_empty();
        // Marked blocks stay visible for half the delete delay (Thanos's compactor does the
        // same), so that a block marked by a compaction still counts as a duplicate of its
        // output rather than as a gap.
        let fetcher = MetaFetcher::new(bucket.clone())
            .with_recursive_listing()
            .with_consistency_delay(options.consistency_delay)
            .with_deletion_mark_delay(options.delete_delay / 2);
        Compactor { bucket, fetcher, options, metrics, retry: RetryPolicy::default(), view: None }
    }

    /// Every sync updates `view`'s loaded view (the bucket page of `strata compact`).
    pub fn with_view(mut self, view: Arc<BlocksView>) -> Compactor {
        self.view = Some(view);
        self
    }

    pub fn metrics(&self) -> &CompactMetrics {
        &self.metrics
    }

    /// One pass: compaction until nothing more is planned, downsampling, retention, cleanup. A halt error
    /// sets `thanos_compact_halted` and leaves retention and cleanup undone.
    pub async fn run_once(&self) -> Result<()> {
        let started = Instant::now();
        let scratch = self.options.data_dir.join("compact");
        remove_dir(&scratch)?;
        if let Err(e) = self.compact_all().await {
            if e.is_halt() {
                self.metrics.halted.set(1);
            }
            return Err(e);
        }
        if self.options.downsampling {
            self.downsample_all().await?;
        }
        self.apply_retention().await?;
        self.clean().await?;
        self.metrics.iterations.inc();
        info!(duration_ms = started.elapsed().as_millis() as u64, "compaction iteration finished");
        Ok(())
    }

    pub(crate) async fn sync(&self) -> Result<Synced> {
        let started = Instant::now();
        self.metrics.meta.syncs.inc();
        let mut fetched = match self.fetcher.fetch().await {
            Ok(f) => f,
            Err(e) => {
                self.metrics.meta.sync_failures.inc();
                if let Some(view) = &self.view {
                    view.set_loaded(Err(e.to_string()));
                }
                return Err(e.into());
            }
        };
        for (id, reason) in &fetched.corrupt {
            warn!(block = %id, reason, "block with an unreadable meta.json; left alone");
        }
        let no_labels = BTreeMap::new();
        let fetched_count = fetched.metas.len();
        let selected: Vec<BlockMeta> = std::mem::take(&mut fetched.metas)
            .into_values()
            .filter(|m| {
                let labels = m.thanos.as_ref().map_or(&no_labels, |t| &t.labels);
                self.options.selector.selects(labels, &m.ulid.to_string())
            })
            .map(|mut m| {
                remove_replica_labels(&mut m, &self.options.replica_labels);
                m
            })
            .collect();
        let (metas, duplicates) = deduplicate(selected);
        let no_compact: HashSet<Ulid> = fetched.no_compact_marked.iter().copied().collect();
        let no_downsample: HashSet<Ulid> = fetched.no_downsample_marked.iter().copied().collect();
        let label_excluded = fetched_count - metas.len() - duplicates.len();
        self.metrics.meta.set_synced(&[
            ("corrupted-meta-json", fetched.corrupt.len()),
            ("duplicate", duplicates.len()),
            ("label-excluded", label_excluded),
            ("loaded", metas.len()),
            ("marked-for-deletion", fetched.marked_for_deletion.len()),
            ("marked-for-no-compact", no_compact.len()),
            ("no-meta-json", fetched.partial.len()),
            ("too-fresh", fetched.too_fresh.len()),
        ]);
        self.metrics.meta.sync_duration.observe(started.elapsed().as_secs_f64());
        if let Some(view) = &self.view {
            view.set_loaded(Ok(Snapshot::new(metas.clone(), &fetched)));
        }
        debug!(
            blocks = metas.len(),
            duplicates = duplicates.len(),
            no_compact = no_compact.len(),
            partial = fetched.partial.len(),
            "synced block metas"
        );
        Ok(Synced {
            metas,
            duplicates,
            no_compact,
            no_downsample,
            partial: fetched.partial,
            deletion_marks: fetched.deletion_marks,
        })
    }

    /// Compacts every group, again and again on a fresh sync, until no group has a plan.
    async fn compact_all(&self) -> Result<()> {
        loop {
            let synced = self.sync().await?;
            self.mark_duplicates(&synced).await?;
            let groups = group_blocks(synced.metas);
            let todo: usize = groups.iter().map(|g| self.todo_compactions(g, &synced.no_compact)).sum();
            self.metrics.todo_compactions.set(todo as i64);
            let no_compact = &synced.no_compact;
            let results: Vec<(String, Result<bool>)> = futures::stream::iter(
                groups.iter().map(|g| async move { (g.key.clone(), self.compact_group(g, no_compact).await) }),
            )
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
            let (mut rerun, mut halt, mut failed) = (false, None, None);
            for (key, result) in results {
                match result {
                    Ok(compacted) => rerun |= compacted,
                    Err(e) => {
                        self.metrics.failures.get_or_create(&self.metrics.group(&key)).inc();
                        error!(group = %key, error = %e, "group compaction failed");
                        if e.is_halt() {
                            halt.get_or_insert(e);
                        } else {
                            failed.get_or_insert(e);
                        }
                    }
                }
            }
            if let Some(e) = halt.or(failed) {
                return Err(e);
            }
            if !rerun {
                self.metrics.todo_compactions.set(0);
                return Ok(());
            }
        }
    }

    /// Thanos's `GarbageCollect`: blocks whose sources a compacted block holds are marked for
    /// deletion (a compaction interrupted before its marks left them unmarked).
    async fn mark_duplicates(&self, synced: &Synced) -> Result<()> {
        for &id in synced.duplicates.iter().filter(|id| !synced.deletion_marks.contains_key(id)) {
            if mark_for_deletion(&self.bucket, id, "outdated block", now().as_secs() as i64).await? {
                self.metrics.marked(DELETION_MARK_FILENAME, "");
                info!(block = %id, "marked block for deletion: a compacted block holds all its sources");
            }
        }
        Ok(())
    }

    /// How many compactions the group's blocks still need, planned ahead with each plan's
    /// output standing in for its inputs (Thanos's `CompactionProgressCalculator`).
    fn todo_compactions(&self, g: &Group, no_compact: &HashSet<Ulid>) -> usize {
        let mut metas = g.metas.clone();
        let mut count = 0;
        // Each plan takes at least one block away or merges two into one; a single-block
        // (tombstone) plan's output has no tombstones and is not planned again.
        for _ in 0..=g.metas.len() {
            let planned: Vec<Ulid> =
                planner::plan(&self.options.ranges, &metas, no_compact).iter().map(|m| m.ulid).collect();
            let Some(&first) = planned.first() else { break };
            count += 1;
            let mut merged = metas.iter().find(|m| m.ulid == first).cloned().unwrap_or_else(|| g.metas[0].clone());
            let inputs: Vec<&BlockMeta> = metas.iter().filter(|m| planned.contains(&m.ulid)).collect();
            merged.min_time = inputs.iter().map(|m| m.min_time).min().unwrap_or(merged.min_time);
            merged.max_time = inputs.iter().map(|m| m.max_time).max().unwrap_or(merged.max_time);
            merged.ulid = Ulid::new();
            merged.stats = Default::default();
            metas.retain(|m| !planned.contains(&m.ulid));
            metas.push(merged);
            metas.sort_by(|a, b| a.min_time.cmp(&b.min_time).then(a.ulid.cmp(&b.ulid)));
        }
        count
    }

    /// One compaction of one group; true when the bucket changed (a block made or marked), so
    /// that the group is planned again.
    async fn compact_group(&self, g: &Group, no_compact: &HashSet<Ulid>) -> Result<bool> {
        let label = self.metrics.group(&g.key);
        self.metrics.runs_started.get_or_create(&label).inc();
        let dir = self.options.data_dir.join("compact").join(&g.key);
        let result = self.compact_group_in(g, no_compact, &dir).await;
        if let Err(e) = remove_dir(&dir) {
            warn!(group = %g.key, error = %e, "removing the group's scratch directory failed");
        }
        if result.is_ok() {
            self.metrics.runs_completed.get_or_create(&label).inc();
        }
        result
    }

    async fn compact_group_in(&self, g: &Group, no_compact: &HashSet<Ulid>, dir: &Path) -> Result<bool> {
        let candidates: Vec<&BlockMeta> = g.metas.iter().filter(|m| !no_compact.contains(&m.ulid)).collect();
        let overlaps = planner::overlaps(&candidates);
        if !overlaps.is_empty() && !self.options.vertical_compaction {
            let described: Vec<String> = overlaps.iter().map(|run| describe_overlap(run)).collect();
            let blocks: Vec<String> = overlaps.iter().flatten().map(|m| m.ulid.to_string()).collect();
            error!(group = %g.key, labels = ?g.labels, blocks = %blocks.join(","),
                   "overlapping blocks in a group without vertical compaction; halting compaction");
            return Err(Error::Halt {
                group: g.key.clone(),
                reason: format!(
                    "pre compaction overlap check: overlaps found while gathering blocks. {}; enable \
                     --compact.enable-vertical-compaction to merge them, or remove the wrong blocks",
                    described.join("; ")
                ),
            });
        }
        let plan = planner::plan(&self.options.ranges, &g.metas, no_compact);
        if plan.is_empty() {
            debug!(group = %g.key, blocks = g.metas.len(), "nothing to compact in group");
            return Ok(false);
        }
        let ids: Vec<String> = plan.iter().map(|m| m.ulid.to_string()).collect();
        let (mint, maxt) = (plan.iter().map(|m| m.min_time).min(), plan.iter().map(|m| m.max_time).max());
        info!(group = %g.key, blocks = plan.len(), ids = %ids.join(","), min_time = ?mint, max_time = ?maxt,
              "compaction planned");

        remove_dir(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create dir", dir, e))?;
        let started = Instant::now();
        let files = self.options.block_files_concurrency;
        let downloads: Vec<(Ulid, strata_shipper::Result<PathBuf>)> = futures::stream::iter(
            plan.iter().map(|m| async move { (m.ulid, download_block(&self.bucket, m.ulid, dir, files).await) }),
        )
        .buffer_unordered(self.options.blocks_fetch_concurrency.max(1))
        .collect()
        .await;
        let mut dirs = Vec::with_capacity(downloads.len());
        for (id, d) in downloads {
            dirs.push((id, d?));
        }
        let bytes: u64 = dirs.iter().map(|(_, d)| dir_size(d)).sum();
        info!(group = %g.key, blocks = dirs.len(), bytes, duration_ms = started.elapsed().as_millis() as u64,
              "downloaded blocks");

        let started = Instant::now();
        for (id, d) in &dirs {
            let path = d.clone();
            let verified = tokio::task::spawn_blocking(move || verify_block(&path, ChunkCheck::Read))
                .await
                .map_err(|e| Error::Task("verify", e.to_string()))?;
            if let Err(issue) = verified {
                return self.skip_bad_input(g, *id, issue).await;
            }
        }
        debug!(group = %g.key, duration_ms = started.elapsed().as_millis() as u64, "verified input blocks");

        let started = Instant::now();
        let (merge_dir, paths) = (dir.to_path_buf(), dirs.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>());
        let chunk_merge = self.options.chunk_merge;
        let merged = tokio::task::spawn_blocking(move || -> Result<BlockMeta> {
            let blocks = paths.iter().map(|p| Block::open(p).map(Arc::new)).collect::<strata_tsdb::Result<Vec<_>>>()?;
            Ok(merge_blocks(&merge_dir, &blocks, chunk_merge)?)
        })
        .await
        .map_err(|e| Error::Task("merge", e.to_string()))??;
        let out_dir = dir.join(merged.ulid.to_string());
        info!(group = %g.key, block = %merged.ulid, level = merged.compaction.level, series = merged.stats.num_series,
              samples = merged.stats.num_samples, bytes = dir_size(&out_dir), duration_ms = started.elapsed().as_millis() as u64,
              "merged blocks");

        if merged.stats.num_samples > 0 {
            let path = out_dir.clone();
            let verified = tokio::task::spawn_blocking(move || verify_block(&path, ChunkCheck::Refs))
                .await
                .map_err(|e| Error::Task("verify", e.to_string()))?;
            if let Err(issue) = verified {
                return Err(Error::Halt {
                    group: g.key.clone(),
                    reason: format!("compacted block {} fails index verification: {issue}", merged.ulid),
                });
            }
            let started = Instant::now();
            let mut meta = merged.clone();
            // Thanos's compactor writes a new section: no version, the index's health stats.
            let index_stats = IndexReader::open(&out_dir.join(INDEX_FILENAME))?.thanos_index_stats()?;
            let mut thanos = ThanosMeta {
                labels: g.labels.clone(),
                source: "compactor".to_owned(),
                index_stats,
                ..ThanosMeta::default()
            };
            thanos.downsample.resolution = g.resolution;
            meta.thanos = Some(thanos);
            let sent = upload_block(&self.bucket, &self.retry, &out_dir, meta).await?;
            info!(group = %g.key, block = %merged.ulid, bytes = sent, duration_ms = started.elapsed().as_millis() as u64,
                  "uploaded compacted block");
        } else {
            info!(group = %g.key, "compacted block is empty; marking its inputs for deletion without uploading it");
        }

        // Only now, with the output complete in the bucket, may the inputs go.
        for m in &plan {
            if mark_for_deletion(&self.bucket, m.ulid, SOURCE_DETAILS, now().as_secs() as i64).await? {
                self.metrics.marked(DELETION_MARK_FILENAME, "");
            }
        }
        info!(group = %g.key, blocks = plan.len(), ids = %ids.join(","), "marked source blocks for deletion");
        self.metrics.compactions.get_or_create(&self.metrics.group(&g.key)).inc();
        Ok(true)
    }

    /// An input block that fails verification is marked no-compact and the group goes on
    /// without it (out-of-order chunks halt unless skipping them is allowed, as in Thanos).
    async fn skip_bad_input(&self, g: &Group, id: Ulid, issue: Issue) -> Result<bool> {
        let reason = match &issue {
            Issue::OutOfOrderChunks(_) if !self.options.skip_out_of_order_chunks => {
                return Err(Error::Halt {
                    group: g.key.clone(),
                    reason: format!(
                        "block {id} has out-of-order chunks ({issue}); start with \
                         --compact.skip-block-with-out-of-order-chunks to skip such blocks"
                    ),
                })
            }
            Issue::OutOfOrderChunks(_) => OUT_OF_ORDER_CHUNKS_REASON,
            Issue::Corrupt(_) => CORRUPT_BLOCK_REASON,
        };
        warn!(group = %g.key, block = %id, reason, details = %issue,
              "input block fails verification; marking it no-compact, the group goes on without it");
        if mark_no_compact(&self.bucket, id, reason, &issue.to_string(), now().as_secs() as i64).await? {
            self.metrics.marked(NO_COMPACT_MARK_FILENAME, reason);
        }
        Ok(true)
    }

    /// Marks blocks past their resolution's retention for deletion (also `tools bucket
    /// retention`).
    pub async fn apply_retention(&self) -> Result<()> {
        let r = self.options.retention;
        if r == Retention::default() {
            return Ok(());
        }
        let synced = self.sync().await?;
        for id in clean::expired(&synced.metas, &r, ms(now()) as i64) {
            if mark_for_deletion(&self.bucket, id, "block exceeding retention period", now().as_secs() as i64).await? {
                self.metrics.marked(DELETION_MARK_FILENAME, "retention");
                info!(block = %id, "marked block for deletion: past retention");
            }
        }
        Ok(())
    }

    /// Deletes abandoned partial uploads and blocks marked longer than the delete delay ago
    /// (also `tools bucket cleanup`).
    pub async fn clean(&self) -> Result<()> {
        let synced = self.sync().await?;
        let now = now();
        let partial = clean::abandoned_partials(&synced.partial, ms(now));
        let mut marked = Vec::new();
        for id in clean::due_for_deletion(&synced.deletion_marks, self.options.delete_delay, ms(now) as i64) {
            if self.owns(id).await? {
                marked.push(id);
            }
        }
        for (id, what) in partial
            .iter()
            .map(|id| (id, "abandoned partial upload"))
            .chain(marked.iter().map(|id| (id, "block marked for deletion")))
        {
            match clean::delete_block(&self.bucket, *id).await {
                Ok(()) => {
                    self.metrics.blocks_cleaned.inc();
                    info!(block = %id, what, "deleted block");
                }
                Err(e) => {
                    self.metrics.cleanup_failures.inc();
                    warn!(block = %id, what, error = %e, "deleting block failed; trying again next pass");
                }
            }
        }
        Ok(())
    }
}

impl Compactor {
    /// Whether the selector gives this compactor the block (a compactor deletes only its own
    /// blocks); a block whose meta.json is gone or unreadable is a deletion to finish.
    async fn owns(&self, id: Ulid) -> Result<bool> {
        if self.options.selector.is_empty() {
            return Ok(true);
        }
        let key = format!("{id}/{META_FILENAME}");
        let Some(text) = self.bucket.get_opt(&key).await? else { return Ok(true) };
        let Ok(meta) = BlockMeta::parse(&text, Path::new(&key)) else { return Ok(true) };
        let labels = meta.thanos.map(|t| t.labels).unwrap_or_default();
        Ok(self.options.selector.selects(&labels, &id.to_string()))
    }
}

/// `[mint: …, maxt: …, range: …, blocks: n]: <ulid>, …` for a run of overlapping blocks.
fn describe_overlap(run: &[&BlockMeta]) -> String {
    let mint = run.iter().map(|m| m.min_time).min().unwrap_or(0);
    let maxt = run.iter().map(|m| m.max_time).max().unwrap_or(0);
    let ids: Vec<String> = run.iter().map(|m| m.ulid.to_string()).collect();
    format!(
        "[mint: {mint}, maxt: {maxt}, range: {}m, blocks: {}]: {}",
        (maxt - mint) / 60_000,
        run.len(),
        ids.join(", ")
    )
}

pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove dir", dir, e)),
    }
}

/// Bytes of the files in a block directory, for the logs.
fn dir_size(dir: &Path) -> u64 {
    let file = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let chunks = std::fs::read_dir(dir.join("chunks"))
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| file(e.path())).sum::<u64>())
        .unwrap_or(0);
    chunks + file(dir.join("index")) + file(dir.join("meta.json"))
}
