//! The `tools bucket` operations of Thanos's bucket tool beyond `ls` and `inspect`: `verify`
//! (Thanos's verifier: index health per block, overlaps per compaction group), `mark`,
//! `replicate` (Thanos's replicator) and `rewrite` (series deleted from blocks). `cleanup`,
//! `retention` and `downsample` run the compactor's own passes once ([`compactor`] builds one).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Deserialize;
use strata_shipper::markers::{
    mark_for_deletion, mark_no_compact, mark_no_downsample, remove_mark, DELETION_MARK_FILENAME, MANUAL_REASON,
    NO_COMPACT_MARK_FILENAME, NO_DOWNSAMPLE_MARK_FILENAME,
};
use strata_shipper::relabel::Relabel;
use strata_shipper::{download_block, resolution, upload_block, Bucket, MetaFetcher, RetryPolicy};
use strata_tsdb::block::meta::{BlockMeta, META_FILENAME};
use strata_tsdb::block::{Block, ChunkData};
use strata_tsdb::chunkenc::{Encoding, XorAppender, XorIter};
use strata_tsdb::compact::{add_interval, chunks_range, rewrite_block, Change, Dropped, Edited, SeriesRelabel};
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::{MatchOp, Matcher};
use tracing::{info, warn};
use ulid::Ulid;

use crate::compactor::remove_dir;
use crate::group::group_blocks;
use crate::verify::{verify_block, ChunkCheck};
use crate::{planner, CompactMetrics, Compactor, CompactorOptions, Error, Result};

/// Thanos's verifier issue: the index checks of [`verify_block`], per block.
pub const INDEX_KNOWN_ISSUES: &str = "index_known_issues";
/// Thanos's verifier issue: blocks of one compaction group whose time ranges overlap.
pub const OVERLAPPED_BLOCKS: &str = "overlapped_blocks";
/// Thanos's verifier issue: blocks of one group with the same time range, level, sources and
/// stats (what a compactor that did not see its own output wrote again); `--repair` removes
/// all but the oldest of them.
pub const DUPLICATED_COMPACTION: &str = "duplicated_compaction";
/// The issues `verify` checks by default, Thanos's default set.
pub const ISSUES: [&str; 2] = [INDEX_KNOWN_ISSUES, OVERLAPPED_BLOCKS];
/// Every issue `verify` knows.
pub const ALL_ISSUES: [&str; 3] = [INDEX_KNOWN_ISSUES, OVERLAPPED_BLOCKS, DUPLICATED_COMPACTION];

/// A compactor for one of the compactor passes the tools run, with metrics nobody scrapes.
pub fn compactor(bucket: Bucket, options: CompactorOptions) -> Compactor {
    let mut registry = prometheus_client::registry::Registry::default();
    Compactor::new(bucket, options, CompactMetrics::new(&mut registry))
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// One of [`ISSUES`].
    pub issue: &'static str,
    pub blocks: Vec<Ulid>,
    pub detail: String,
    /// The block that stands in place of the broken one after `--repair`: the block written
    /// anew, or the one a duplicate duplicates.
    pub repaired: Option<Ulid>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.blocks.iter().map(Ulid::to_string).collect();
        write!(f, "issue={} block={} {}", self.issue, ids.join(","), self.detail)?;
        match self.repaired {
            Some(id) => write!(f, " (repaired as {id})"),
            None => Ok(()),
        }
    }
}

/// What `verify --repair` does with a block it repaired: the broken block is copied to
/// `backup`, then deleted at once (`delete_delay` zero) or marked for deletion.
pub struct Repair {
    pub backup: Bucket,
    pub delete_delay: Duration,
}

/// Checks the bucket's blocks (those in `ids`, or all) for `issues`, and with `repair` repairs
/// the index issues Thanos repairs. Blocks are downloaded one at a time into
/// `<scratch>/<ULID>` and removed after their check.
pub async fn verify(
    bucket: &Bucket,
    issues: &[&str],
    ids: &[Ulid],
    scratch: &Path,
    repair: Option<&Repair>,
) -> Result<Vec<Problem>> {
    if issues.contains(&DUPLICATED_COMPACTION) && !ids.is_empty() {
        return Err(Error::Tool(format!(
            "--id is not supported by issue {DUPLICATED_COMPACTION} (it looks at whole groups)"
        )));
    }
    let fetched = MetaFetcher::new(bucket.clone()).fetch().await?;
    let selected = |id: &Ulid| ids.is_empty() || ids.contains(id);
    if let Some(id) = ids.iter().find(|id| !fetched.metas.contains_key(id)) {
        return Err(Error::Tool(format!(
            "block {id} is not in bucket {bucket} (or has no meta.json, or is marked for deletion)"
        )));
    }
    let mut problems = Vec::new();
    if issues.contains(&OVERLAPPED_BLOCKS) {
        for g in group_blocks(fetched.metas.values().cloned().collect()) {
            let metas: Vec<&BlockMeta> = g.metas.iter().collect();
            for run in planner::overlaps(&metas) {
                if !run.iter().any(|m| selected(&m.ulid)) {
                    continue;
                }
                let described: Vec<String> =
                    run.iter().map(|m| format!("[id: {} mint: {} maxt: {}]", m.ulid, m.min_time, m.max_time)).collect();
                problems.push(Problem {
                    issue: OVERLAPPED_BLOCKS,
                    blocks: run.iter().map(|m| m.ulid).collect(),
                    detail: format!("group {}: overlapping blocks {}", g.key, described.join(",")),
                    repaired: None,
                });
            }
        }
    }
    if issues.contains(&DUPLICATED_COMPACTION) {
        for g in group_blocks(fetched.metas.values().cloned().collect()) {
            let metas: Vec<&BlockMeta> = g.metas.iter().collect();
            for run in planner::overlaps(&metas) {
                for (kept, duplicate) in duplicates(&run) {
                    let detail = format!(
                        "group {}: duplicate of {} (same time range [{}, {}), level, sources and stats)",
                        g.key, kept.ulid, kept.min_time, kept.max_time
                    );
                    warn!(block = %duplicate.ulid, duplicate_of = %kept.ulid, "found duplicated block");
                    let mut problem =
                        Problem { issue: DUPLICATED_COMPACTION, blocks: vec![duplicate.ulid], detail, repaired: None };
                    if let Some(r) = repair {
                        match remove_duplicate(bucket, duplicate, r, scratch).await {
                            Ok(()) => problem.repaired = Some(kept.ulid),
                            Err(e) => problem.detail.push_str(&format!("; not removed: {e}")),
                        }
                    }
                    problems.push(problem);
                }
            }
        }
    }
    if issues.contains(&INDEX_KNOWN_ISSUES) {
        for id in fetched.metas.keys().filter(|id| selected(id)) {
            info!(block = %id, "verifying block index");
            let Some(mut detail) = index_issue(bucket, *id, scratch).await? else { continue };
            warn!(block = %id, issue = %detail, "detected issue");
            let mut repaired = None;
            if let Some(r) = repair {
                match repair_block(bucket, &fetched.metas[id], r, scratch).await {
                    Ok(new_id) => {
                        info!(block = %id, repaired = %new_id, "repaired block");
                        repaired = Some(new_id);
                    }
                    Err(e) => {
                        warn!(block = %id, error = %e, "could not repair block");
                        detail.push_str(&format!("; not repaired: {e}"));
                    }
                }
            }
            problems.push(Problem { issue: INDEX_KNOWN_ISSUES, blocks: vec![*id], detail, repaired });
        }
    }
    Ok(problems)
}

/// Downloads and checks one block; the problem found, if any. A block that cannot be
/// downloaded whole (a file missing or of the wrong size) is a problem of the block.
async fn index_issue(bucket: &Bucket, id: Ulid, scratch: &Path) -> Result<Option<String>> {
    std::fs::create_dir_all(scratch).map_err(|e| Error::io("create dir", scratch, e))?;
    let dir = match download_block(bucket, id, scratch, 2).await {
        Ok(dir) => dir,
        Err(e @ (strata_shipper::Error::BadObject { .. } | strata_shipper::Error::BlockNotFound(_))) => {
            return Ok(Some(format!("download: {e}")))
        }
        Err(e) => return Err(e.into()),
    };
    let path = dir.clone();
    let verified = tokio::task::spawn_blocking(move || verify_block(&path, ChunkCheck::Read))
        .await
        .map_err(|e| Error::Task("verify", e.to_string()))?;
    remove_dir(&dir)?;
    Ok(verified.err().map(|issue| issue.to_string()))
}

/// Thanos's `block.Repair` for a block's index issues: the block is written anew without the
/// chunks that cannot be kept (outside the block's time range, or starting before the previous
/// chunk of their series ends: duplicates and overlaps), series left without chunks dropped;
/// the result must pass verification. It is uploaded (source `bucket.repair`), the broken block
/// copied to the backup bucket, then deleted or marked for deletion. Downsampled blocks are not
/// repaired, as in Thanos.
async fn repair_block(bucket: &Bucket, meta: &BlockMeta, r: &Repair, scratch: &Path) -> Result<Ulid> {
    let id = meta.ulid;
    if resolution(meta) != 0 {
        return Err(Error::Tool("cannot repair a downsampled block".into()));
    }
    let dir = scratch.join(format!("repair-{id}"));
    remove_dir(&dir)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create dir", &dir, e))?;
    let result = async {
        let src = download_block(bucket, id, &dir, 2).await?;
        let (out, from) = (dir.clone(), src.clone());
        let (min_time, max_time) = (meta.min_time, meta.max_time);
        let (written, dropped) = tokio::task::spawn_blocking(move || -> Result<(Option<BlockMeta>, Dropped)> {
            let block = Block::open(&from)?;
            let edit = |_: &Labels, chunks: Vec<strata_tsdb::block::ChunkData>| {
                let mut kept: Vec<strata_tsdb::block::ChunkData> = Vec::with_capacity(chunks.len());
                for c in chunks {
                    let inside = c.min_time >= min_time && c.max_time <= max_time && c.min_time <= c.max_time;
                    if inside && kept.last().is_none_or(|p| c.min_time > p.max_time) {
                        kept.push(c);
                    }
                }
                Edited::keep(kept)
            };
            Ok(rewrite_block(Some(&out), &block, Ulid::new(), &edit, None, &mut |_| {})?)
        })
        .await
        .map_err(|e| Error::Task("repair", e.to_string()))??;
        let Some(mut new_meta) = written else { return Err(Error::Task("repair", "no block written".into())) };
        let new_dir = dir.join(new_meta.ulid.to_string());
        let check = new_dir.clone();
        let verified = tokio::task::spawn_blocking(move || verify_block(&check, ChunkCheck::Refs))
            .await
            .map_err(|e| Error::Task("verify", e.to_string()))?;
        if let Err(issue) = verified {
            return Err(Error::Tool(format!("the repaired block still fails verification: {issue}")));
        }
        info!(block = %id, repaired = %new_meta.ulid, chunks_dropped = dropped.chunks, series_dropped = dropped.series,
              "wrote repaired block");
        let mut thanos = meta.thanos.clone().unwrap_or_default();
        thanos.source = "bucket.repair".to_owned();
        thanos.index_stats = None;
        new_meta.thanos = Some(thanos);
        let new_id = new_meta.ulid;
        upload_block(bucket, &RetryPolicy::default(), &new_dir, new_meta).await?;
        back_up_and_remove(bucket, meta, &src, r, "repaired block").await?;
        Ok(new_id)
    }
    .await;
    remove_dir(&dir)?;
    result
}

/// Copies the block of `meta`, downloaded to `local`, to the backup bucket, then deletes it
/// from `bucket` at once or marks it for deletion, as `r` says.
async fn back_up_and_remove(bucket: &Bucket, meta: &BlockMeta, local: &Path, r: &Repair, why: &str) -> Result<()> {
    upload_block(&r.backup, &RetryPolicy::default(), local, meta.clone()).await?;
    if r.delete_delay.is_zero() {
        crate::clean::delete_block(bucket, meta.ulid).await
    } else {
        mark_for_deletion(bucket, meta.ulid, why, now_secs()).await?;
        Ok(())
    }
}

/// Of overlapping blocks, the exact duplicates as Thanos's verifier finds them (same time
/// range, compaction level, sources in the same order and stats): each with the block it
/// duplicates, the oldest of its set.
fn duplicates<'a>(run: &[&'a BlockMeta]) -> Vec<(&'a BlockMeta, &'a BlockMeta)> {
    let mut sets: Vec<Vec<&BlockMeta>> = Vec::new();
    let mut blocks = run.to_vec();
    blocks.sort_by_key(|m| m.ulid);
    for b in blocks {
        let same = |d: &&BlockMeta| {
            d.min_time == b.min_time
                && d.max_time == b.max_time
                && d.compaction.level == b.compaction.level
                && d.compaction.sources == b.compaction.sources
                && d.stats == b.stats
        };
        match sets.iter_mut().find(|set| same(&set[0])) {
            Some(set) => set.push(b),
            None => sets.push(vec![b]),
        }
    }
    sets.iter().flat_map(|set| set[1..].iter().map(|d| (set[0], *d))).collect()
}

/// Backs up and removes a duplicated block (Thanos's `BackupAndDelete`).
async fn remove_duplicate(bucket: &Bucket, meta: &BlockMeta, r: &Repair, scratch: &Path) -> Result<()> {
    let dir = scratch.join(format!("duplicate-{}", meta.ulid));
    remove_dir(&dir)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create dir", &dir, e))?;
    let result = async {
        let local = download_block(bucket, meta.ulid, &dir, 2).await?;
        back_up_and_remove(bucket, meta, &local, r, "duplicated compaction").await
    }
    .await;
    remove_dir(&dir)?;
    result?;
    info!(block = %meta.ulid, "removed duplicated block");
    Ok(())
}

/// Writes (or with `remove` deletes) the marker `marker` (one of
/// `strata_shipper::markers::MARKER_FILENAMES`) on every block of `ids`, as Thanos's `tools
/// bucket mark`. Every block is checked to exist before any marker changes. Returns per block
/// whether something changed (a block keeps an existing mark, as in Thanos).
pub async fn mark(
    bucket: &Bucket,
    ids: &[Ulid],
    marker: &str,
    details: &str,
    remove: bool,
) -> Result<Vec<(Ulid, bool)>> {
    if ![DELETION_MARK_FILENAME, NO_COMPACT_MARK_FILENAME, NO_DOWNSAMPLE_MARK_FILENAME].contains(&marker) {
        return Err(Error::Tool(format!(
            "unknown marker {marker:?}: one of {DELETION_MARK_FILENAME}, {NO_COMPACT_MARK_FILENAME}, \
             {NO_DOWNSAMPLE_MARK_FILENAME}"
        )));
    }
    for id in ids {
        if !remove && !bucket.exists(&format!("{id}/{META_FILENAME}")).await? {
            return Err(Error::Tool(format!(
                "block {id} is not in bucket {bucket} (no {id}/{META_FILENAME}); nothing marked"
            )));
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let changed = if remove {
            remove_mark(bucket, id, marker).await?
        } else {
            match marker {
                DELETION_MARK_FILENAME => mark_for_deletion(bucket, id, details, now_secs()).await?,
                NO_COMPACT_MARK_FILENAME => mark_no_compact(bucket, id, MANUAL_REASON, details, now_secs()).await?,
                _ => mark_no_downsample(bucket, id, MANUAL_REASON, details, now_secs()).await?,
            }
        };
        out.push((id, changed));
    }
    Ok(out)
}

/// Which blocks `replicate` copies (Thanos's replicator `BlockFilter`).
#[derive(Debug, Clone, Default)]
pub struct ReplicateFilter {
    /// Resolutions in ms (Thanos's default: 0, 5m, 1h).
    pub resolutions: Vec<i64>,
    /// Compaction levels (Thanos's default: 1 to 4).
    pub levels: Vec<u32>,
    /// Matchers on the blocks' external labels, all of which must match.
    pub matchers: Vec<Matcher>,
    /// When set, exactly these blocks, whatever the other conditions.
    pub ids: Vec<Ulid>,
}

impl ReplicateFilter {
    fn selects(&self, m: &BlockMeta) -> bool {
        let Some(labels) = m.thanos.as_ref().map(|t| &t.labels).filter(|l| !l.is_empty()) else {
            warn!(block = %m.ulid, "not replicating a block without external labels");
            return false;
        };
        if !self.ids.is_empty() {
            return self.ids.contains(&m.ulid);
        }
        self.matchers.iter().all(|mt| mt.matches(labels.get(&mt.name).map_or("", String::as_str)))
            && self.resolutions.contains(&resolution(m))
            && self.levels.contains(&m.compaction.level)
    }
}

/// What one `replicate` run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replicated {
    /// Blocks copied (their meta.json written last).
    pub copied: Vec<Ulid>,
    /// Selected blocks the target already had with the same meta.json.
    pub already: Vec<Ulid>,
    /// Objects copied, meta.json included.
    pub objects: usize,
}

/// Copies the blocks of `from` that `filter` selects and `to` lacks, as Thanos's replicator:
/// chunk segments and index first (objects the target has are skipped), meta.json last, so a
/// reader of the target never sees a partial block as complete. Partial uploads and blocks
/// marked for deletion are not copied. Each object is held in memory while copied (a chunk
/// segment is at most 512 MiB).
pub async fn replicate(from: &Bucket, to: &Bucket, filter: &ReplicateFilter) -> Result<Replicated> {
    let fetched = MetaFetcher::new(from.clone()).fetch().await?;
    for id in &fetched.partial {
        info!(block = %id, "block meta not uploaded yet; not replicating it");
    }
    for id in &fetched.marked_for_deletion {
        info!(block = %id, "block marked for deletion; not replicating it");
    }
    // Touch the target first, so that a missing target bucket fails before anything is read.
    to.list_top_level().await?;
    let mut out = Replicated::default();
    let retry = RetryPolicy::default();
    for m in fetched.metas.values().filter(|m| filter.selects(m)) {
        let id = m.ulid;
        let meta_key = format!("{id}/{META_FILENAME}");
        let Some(origin_meta) = from.get_opt(&meta_key).await? else { continue };
        if to.get_opt(&meta_key).await?.is_some_and(|t| t == origin_meta) {
            out.already.push(id);
            continue;
        }
        let mut keys: Vec<String> = from
            .list_recursive(&format!("{id}/chunks"))
            .await?
            .into_iter()
            .map(|o| o.location.as_ref().to_owned())
            .collect();
        keys.sort();
        keys.push(format!("{id}/index"));
        for key in keys {
            if to.exists(&key).await? {
                continue;
            }
            let data = from.get_opt(&key).await?.ok_or_else(|| {
                Error::Bucket(strata_shipper::Error::BadObject {
                    key: key.clone(),
                    reason: "vanished while copying".into(),
                })
            })?;
            retry.run("copy object", || to.put_bytes(&key, data.clone())).await?;
            out.objects += 1;
        }
        let meta: Bytes = origin_meta;
        retry.run("copy meta.json", || to.put_bytes(&meta_key, meta.clone())).await?;
        out.objects += 1;
        info!(block = %id, "replicated block");
        out.copied.push(id);
    }
    Ok(out)
}

/// One deletion request of `--rewrite.to-delete-config` (Thanos's `metadata.DeletionRequest`):
/// the samples of series matching every matcher are deleted, all of them or those inside
/// `intervals`.
#[derive(Debug, Clone)]
pub struct Deletion {
    /// The selector as written.
    pub text: String,
    pub matchers: Vec<Matcher>,
    /// Inclusive `[mint, maxt]` ranges in ms (Prometheus's tombstone intervals); empty: the
    /// whole series.
    pub intervals: Vec<(i64, i64)>,
}

/// `tombstones.Interval` as Thanos's YAML has it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterval {
    mint: i64,
    maxt: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeletion {
    matchers: String,
    #[serde(default)]
    intervals: Vec<RawInterval>,
    /// Thanos's request id, recorded nowhere.
    #[serde(default, rename = "request_id")]
    _request_id: Option<String>,
}

/// Reads Thanos's deletion YAML, a list of `- matchers: '{__name__="x", job="y"}'`, each with
/// optional `intervals: [{mint: <ms>, maxt: <ms>}, ...]`. `parse` turns a selector into
/// matchers (PromQL's parser lives above this crate).
pub fn parse_deletions(
    yaml: &str,
    source: &str,
    parse: &dyn Fn(&str) -> std::result::Result<Vec<Matcher>, String>,
) -> Result<Vec<Deletion>> {
    let config = |reason: String| Error::Config { file: source.to_owned(), reason };
    let raw: Vec<RawDeletion> = serde_norway::from_str(yaml).map_err(|e| config(e.to_string()))?;
    if raw.is_empty() {
        return Err(config("no deletion requests: give a list of `- matchers: '{...}'`".into()));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        if let Some(bad) = r.intervals.iter().find(|iv| iv.mint > iv.maxt) {
            return Err(config(format!(
                "request {i} ({}): interval mint {} is after its maxt {}",
                r.matchers, bad.mint, bad.maxt
            )));
        }
        let matchers =
            parse(&r.matchers).map_err(|e| config(format!("request {i}: matchers {:?}: {e}", r.matchers)))?;
        if matchers.is_empty() || matchers.iter().all(Matcher::matches_empty) {
            return Err(config(format!(
                "request {i}: matchers {:?} match every series; give at least one matcher that does not match the \
                 empty value",
                r.matchers
            )));
        }
        let intervals = r.intervals.iter().map(|iv| (iv.mint, iv.maxt)).collect();
        out.push(Deletion { text: r.matchers, matchers, intervals });
    }
    Ok(out)
}

impl Deletion {
    fn selects(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
    }

    /// As Thanos records it in `rewrites.deletions_applied`: Prometheus's `labels.Matcher`
    /// marshalled by Go (`Type` 0–3 for `=`, `!=`, `=~`, `!~`).
    fn to_json(&self) -> serde_json::Value {
        let matchers: Vec<serde_json::Value> = self
            .matchers
            .iter()
            .map(|m| {
                let kind = match m.op {
                    MatchOp::Equal => 0,
                    MatchOp::NotEqual => 1,
                    MatchOp::Regex => 2,
                    MatchOp::NotRegex => 3,
                };
                serde_json::json!({"Type": kind, "Name": m.name, "Value": m.value})
            })
            .collect();
        if self.intervals.is_empty() {
            return serde_json::json!({ "matchers": matchers });
        }
        let intervals: Vec<serde_json::Value> =
            self.intervals.iter().map(|&(mint, maxt)| serde_json::json!({"Mint": mint, "Maxt": maxt})).collect();
        serde_json::json!({ "matchers": matchers, "intervals": intervals })
    }
}

/// A series with `labels` after `deletions`, as Thanos's `DeletionModifier` leaves it: all its
/// chunks when none selects it, none when one deletes it whole, else those with the samples
/// inside the deletions' intervals removed (a chunk inside one interval dropped, a chunk partly
/// inside re-encoded; a native histogram chunk partly inside is kept whole, with a warning, as
/// its samples cannot be re-encoded here). `deleted` is what Thanos logs: the whole series'
/// range, or per chunk the chunk's range or its overlap with the intervals.
fn apply_deletions(deletions: &[Deletion], labels: &Labels, chunks: Vec<ChunkData>) -> Edited {
    let selecting: Vec<&Deletion> = deletions.iter().filter(|d| d.selects(labels)).collect();
    if selecting.is_empty() {
        return Edited::keep(chunks);
    }
    if selecting.iter().any(|d| d.intervals.is_empty()) {
        return Edited { kept: None, deleted: chunks_range(&chunks) };
    }
    let mut intervals = Vec::new();
    for &iv in selecting.iter().flat_map(|d| d.intervals.iter()) {
        add_interval(&mut intervals, iv);
    }
    let is_deleted = |t: i64| intervals.iter().any(|&(a, b)| a <= t && t <= b);
    let mut kept = Vec::with_capacity(chunks.len());
    let mut deleted = Vec::new();
    for c in chunks {
        let overlapping: Vec<(i64, i64)> =
            intervals.iter().copied().filter(|&(a, b)| a <= c.max_time && c.min_time <= b).collect();
        if overlapping.is_empty() {
            kept.push(c);
            continue;
        }
        if overlapping.iter().any(|&(a, b)| a <= c.min_time && c.max_time <= b) {
            add_interval(&mut deleted, (c.min_time, c.max_time));
            continue;
        }
        for (a, b) in overlapping {
            add_interval(&mut deleted, (a.max(c.min_time), b.min(c.max_time)));
        }
        if c.encoding != Encoding::Xor {
            warn!(series = ?labels, min_time = c.min_time, max_time = c.max_time,
                  "a native histogram chunk partly inside a deletion interval is kept whole");
            kept.push(c);
            continue;
        }
        let samples = match XorIter::new(&c.data) {
            Ok(it) => it.filter(|&(t, _)| !is_deleted(t)).collect::<Vec<_>>(),
            Err(e) => {
                warn!(series = ?labels, error = %e, "chunk does not decode; kept as it is");
                kept.push(c);
                continue;
            }
        };
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else { continue };
        let mut app = XorAppender::new();
        samples.iter().for_each(|&(t, v)| app.append(t, v));
        kept.push(ChunkData {
            min_time: first.0,
            max_time: last.0,
            encoding: Encoding::Xor,
            data: Bytes::copy_from_slice(app.bytes()),
        });
    }
    Edited { kept: Some(kept), deleted }
}

/// What `rewrite` does.
#[derive(Debug, Clone)]
pub struct RewriteOptions {
    pub ids: Vec<Ulid>,
    pub deletions: Vec<Deletion>,
    /// Prometheus relabel configs applied to each series first (`--rewrite.to-relabel-config`);
    /// empty: none.
    pub relabel: Relabel,
    /// Where each rewrite's `<new ULID>/change.log` goes (`--rewrite.add-change-log`, in
    /// `--tmp.dir` as Thanos puts it); none: no change log.
    pub change_log_dir: Option<PathBuf>,
    /// Only count what would be deleted (Thanos's default).
    pub dry_run: bool,
    /// Mark each source block for deletion once its rewrite is uploaded.
    pub delete_blocks: bool,
    /// Scratch directory of this run; emptied first.
    pub tmp_dir: PathBuf,
}

/// One block's rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub from: Ulid,
    /// The new block; none in a dry run.
    pub to: Option<Ulid>,
    pub dropped: Dropped,
    /// The change log written, if any.
    pub change_log: Option<PathBuf>,
}

/// Rewrites each block as Thanos's `tools bucket rewrite`: each series relabelled first (see
/// [`rewrite_block`]), then without what the deletions select; a new block (same range, level
/// and labels; source `bucket.rewrite`; its own only source, the old sources, the deletions and
/// the relabel configs in `thanos.rewrites`) uploaded meta.json last, the source marked for
/// deletion only with `delete_blocks`. With `change_log_dir` every change is logged to
/// `<dir>/<new ULID>/change.log` (in a dry run too), which stays there. Every block is checked
/// to exist before any is rewritten.
pub async fn rewrite(bucket: &Bucket, o: &RewriteOptions) -> Result<Vec<Rewritten>> {
    let mut metas = Vec::with_capacity(o.ids.len());
    for id in &o.ids {
        let key = format!("{id}/{META_FILENAME}");
        let text = bucket.get_opt(&key).await?.ok_or_else(|| {
            Error::Tool(format!("block {id} is not in bucket {bucket} (no {key}); nothing rewritten"))
        })?;
        metas.push(BlockMeta::parse(&text, Path::new(&key))?);
    }
    remove_dir(&o.tmp_dir)?;
    std::fs::create_dir_all(&o.tmp_dir).map_err(|e| Error::io("create dir", &o.tmp_dir, e))?;
    let deletions = Arc::new(o.deletions.clone());
    let relabel = Arc::new(o.relabel.clone());
    let mut out = Vec::with_capacity(metas.len());
    for meta in metas {
        let id = meta.ulid;
        let new_id = Ulid::new();
        info!(block = %id, "downloading block");
        let src = download_block(bucket, id, &o.tmp_dir, 2).await?;
        let change_log = match &o.change_log_dir {
            Some(dir) => {
                let log_dir = dir.join(new_id.to_string());
                std::fs::create_dir_all(&log_dir).map_err(|e| Error::io("create dir", &log_dir, e))?;
                let path = log_dir.join("change.log");
                info!(file = %path.display(), "the change log will be available");
                Some(path)
            }
            None => None,
        };
        let (dir, dry_run, d, r, log_path) =
            (o.tmp_dir.clone(), o.dry_run, Arc::clone(&deletions), Arc::clone(&relabel), change_log.clone());
        let (written, dropped) = tokio::task::spawn_blocking(move || -> Result<(Option<BlockMeta>, Dropped)> {
            let block = Block::open(&src)?;
            let edit = |l: &Labels, chunks| apply_deletions(&d, l, chunks);
            let relabel_series = |l: &Labels| relabel_labels(&r, l);
            let relabel: Option<SeriesRelabel<'_>> = (!r.is_empty()).then_some(&relabel_series);
            let mut log = ChangeLog::open(log_path.as_deref())?;
            let result = rewrite_block((!dry_run).then_some(dir.as_path()), &block, new_id, &edit, relabel, &mut |c| {
                log.write(c)
            });
            log.finish()?;
            Ok(result?)
        })
        .await
        .map_err(|e| Error::Task("rewrite", e.to_string()))??;
        let Some(mut new_meta) = written else {
            out.push(Rewritten { from: id, to: None, dropped, change_log });
            continue;
        };
        let mut thanos = meta.thanos.clone().unwrap_or_default();
        let mut rewrites = match thanos.rewrites.take() {
            Some(serde_json::Value::Array(list)) => list,
            _ => Vec::new(),
        };
        // Go's omitempty: an empty list is left out.
        let mut rewrite = serde_json::Map::new();
        rewrite
            .insert("sources".into(), meta.compaction.sources.iter().map(Ulid::to_string).collect::<Vec<_>>().into());
        if !deletions.is_empty() {
            rewrite
                .insert("deletions_applied".into(), deletions.iter().map(Deletion::to_json).collect::<Vec<_>>().into());
        }
        if !relabel.is_empty() {
            rewrite.insert("relabels_applied".into(), relabel.to_json());
        }
        rewrites.push(serde_json::Value::Object(rewrite));
        thanos.rewrites = Some(serde_json::Value::Array(rewrites));
        thanos.source = "bucket.rewrite".to_owned();
        thanos.index_stats = None;
        new_meta.thanos = Some(thanos);
        let sent = upload_block(bucket, &RetryPolicy::default(), &o.tmp_dir.join(new_id.to_string()), new_meta).await?;
        info!(from = %id, block = %new_id, bytes = sent, series_deleted = dropped.series,
              series_relabelled = dropped.relabelled, "uploaded rewritten block");
        if o.delete_blocks && mark_for_deletion(bucket, id, "block rewritten", now_secs()).await? {
            info!(block = %id, "marked source block for deletion");
        }
        remove_dir(&o.tmp_dir.join(new_id.to_string()))?;
        remove_dir(&o.tmp_dir.join(id.to_string()))?;
        out.push(Rewritten { from: id, to: Some(new_id), dropped, change_log });
    }
    Ok(out)
}

/// A series' labels through `relabel` (Prometheus's `relabel.Process`): `None` when dropped.
fn relabel_labels(relabel: &Relabel, labels: &Labels) -> Option<Labels> {
    let map = labels.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
    let out = relabel.process(&map)?;
    let pairs: Vec<(&str, &str)> =
        out.iter().filter(|(_, v)| !v.is_empty()).map(|(n, v)| (n.as_str(), v.as_str())).collect();
    Some(Labels::from_pairs(&pairs))
}

/// Thanos's rewrite `change.log` (or nowhere): one line per change; the first write error is
/// kept and reported at the end, so a full disk does not stop the rewrite half way.
struct ChangeLog {
    out: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    failed: Option<std::io::Error>,
}

impl ChangeLog {
    fn open(path: Option<&Path>) -> Result<ChangeLog> {
        let out = match path {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|e| Error::io("create change log", p, e))?;
                Some((p.to_owned(), std::io::BufWriter::new(f)))
            }
            None => None,
        };
        Ok(ChangeLog { out, failed: None })
    }

    fn write(&mut self, change: Change<'_>) {
        use std::io::Write;
        if let (Some((_, w)), None) = (&mut self.out, &self.failed) {
            if let Err(e) = writeln!(w, "{change}") {
                self.failed = Some(e);
            }
        }
    }

    fn finish(self) -> Result<()> {
        use std::io::Write;
        let Some((path, mut w)) = self.out else { return Ok(()) };
        match self.failed {
            Some(e) => Err(Error::io("write change log", path, e)),
            None => w.flush().map_err(|e| Error::io("write change log", path, e)),
        }
    }
}

/// How long a `replicate` without `--single-run` waits between runs.
pub const REPLICATE_INTERVAL: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    /// Enough of a selector parser for the tests: `{a="b", c="d"}`.
    fn parse(s: &str) -> std::result::Result<Vec<Matcher>, String> {
        let inner = s.trim().strip_prefix('{').and_then(|r| r.strip_suffix('}')).ok_or("not a selector")?;
        inner
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let (n, v) = p.split_once('=').ok_or("no =")?;
                Matcher::new(MatchOp::Equal, n.trim(), v.trim().trim_matches('"')).map_err(|e| e.to_string())
            })
            .collect()
    }

    #[test]
    fn deletions_as_thanos_writes_them() {
        let yaml = "- matchers: '{__name__=\"foo\", a=\"1\"}'\n- matchers: '{job=\"x\"}'\n  request_id: abc\n";
        let d = parse_deletions(yaml, "del.yml", &parse).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d[0].selects(&Labels::from_pairs(&[("__name__", "foo"), ("a", "1"), ("b", "2")])));
        assert!(!d[0].selects(&Labels::from_pairs(&[("__name__", "foo"), ("a", "2")])));
        assert_eq!(
            d[0].to_json(),
            serde_json::json!({"matchers": [{"Type": 0, "Name": "__name__", "Value": "foo"}, {"Type": 0, "Name": "a", "Value": "1"}]})
        );
        let d = parse_deletions("- matchers: '{job=\"x\"}'\n  intervals: [{mint: 10, maxt: 20}]\n", "del.yml", &parse)
            .unwrap();
        assert_eq!(d[0].intervals, [(10, 20)]);
        assert_eq!(
            d[0].to_json(),
            serde_json::json!({"matchers": [{"Type": 0, "Name": "job", "Value": "x"}], "intervals": [{"Mint": 10, "Maxt": 20}]})
        );
    }

    #[test]
    fn deletion_intervals_remove_only_the_samples_inside() {
        let chunk = |times: std::ops::RangeInclusive<i64>| {
            let mut app = XorAppender::new();
            times.clone().for_each(|t| app.append(t, t as f64));
            ChunkData {
                min_time: *times.start(),
                max_time: *times.end(),
                encoding: Encoding::Xor,
                data: Bytes::copy_from_slice(app.bytes()),
            }
        };
        let (a, b, c) = (chunk(0..=9), chunk(10..=19), chunk(20..=29));
        let deletion = |intervals: Vec<(i64, i64)>| Deletion {
            text: "{job=\"x\"}".into(),
            matchers: parse("{job=\"x\"}").unwrap(),
            intervals,
        };
        let x = Labels::from_pairs(&[("job", "x")]);
        let y = Labels::from_pairs(&[("job", "y")]);
        let all = vec![a.clone(), b.clone(), c.clone()];
        // Not selected: untouched. Selected without intervals: gone.
        assert_eq!(apply_deletions(&[deletion(vec![(5, 25)])], &y, all.clone()), Edited::keep(all.clone()));
        // Logged as Thanos logs a series deleted whole: its first chunk's start to its last's end.
        assert_eq!(
            apply_deletions(&[deletion(Vec::new())], &x, all.clone()),
            Edited { kept: None, deleted: vec![(0, 29)] }
        );
        // [5, 25]: a keeps 0..=4, b goes, c keeps 26..=29; two requests' intervals add up.
        let edited = apply_deletions(&[deletion(vec![(5, 12)]), deletion(vec![(10, 25)])], &x, all);
        // Per chunk its overlap with the intervals, merged: [5, 9] + [10, 19] + [20, 25].
        assert_eq!(edited.deleted, [(5, 25)]);
        let kept = edited.kept.unwrap();
        let samples: Vec<Vec<i64>> =
            kept.iter().map(|k| XorIter::new(&k.data).unwrap().map(|(t, _)| t).collect()).collect();
        assert_eq!(samples, [vec![0, 1, 2, 3, 4], vec![26, 27, 28, 29]]);
        assert_eq!((kept[0].min_time, kept[0].max_time, kept[1].min_time, kept[1].max_time), (0, 4, 26, 29));
    }

    #[test]
    fn malformed_and_hostile_deletions_are_refused() {
        let bomb = {
            // Anchors that expand exponentially if followed.
            let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x]\n");
            for i in 1..30 {
                y.push_str(&format!(
                    "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                    p = i - 1
                ));
            }
            y
        };
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "no deletion requests"),
            ("[]".into(), "no deletion requests"),
            ("- matchers: '{a=\"b\"'".into(), "not a selector"),
            ("- matcher: '{a=\"b\"}'".into(), "unknown field"),
            ("- {}".into(), "missing field"),
            ("matchers: '{a=\"b\"}'".into(), "sequence"),
            ("- matchers: '{}'".into(), "match every series"),
            ("- matchers: '{a=\"\"}'".into(), "match every series"),
            ("- matchers: '{a=\"b\"}'\n  intervals: [{mint: 3, maxt: 2}]".into(), "mint 3 is after its maxt 2"),
            ("- matchers: '{a=\"b\"}'\n  intervals: [{min: 1, maxt: 2}]".into(), "unknown field"),
            ("- matchers: '{a=\"b\"}'\n  intervals: [{mint: x, maxt: 2}]".into(), "invalid"),
            ("- matchers: [1, 2]".into(), "invalid type"),
            ("\u{0}\u{1}\u{2}".into(), ""),
            (bomb, ""),
            (deep, ""),
        ];
        for (yaml, want) in cases {
            match parse_deletions(&yaml, "del.yml", &parse) {
                Err(Error::Config { file, reason }) => {
                    assert_eq!(file, "del.yml");
                    assert!(reason.contains(want), "{yaml:.60}: {reason}");
                }
                other => panic!("{yaml:.60}: {other:?}"),
            }
        }
    }

    #[test]
    fn replicate_filter_as_thanos() {
        let mut m = crate::test_meta(1, 0, 10);
        let f = ReplicateFilter {
            resolutions: vec![0],
            levels: vec![1, 2],
            matchers: vec![Matcher::new(MatchOp::Equal, "cluster", "eu").unwrap()],
            ids: vec![],
        };
        assert!(!f.selects(&m), "a block without labels is never replicated");
        let mut t = strata_tsdb::block::meta::ThanosMeta::default();
        t.labels.insert("cluster".into(), "eu".into());
        m.thanos = Some(t);
        assert!(f.selects(&m));
        m.compaction.level = 3;
        assert!(!f.selects(&m));
        let by_id = ReplicateFilter { ids: vec![Ulid(1)], ..ReplicateFilter::default() };
        assert!(by_id.selects(&m), "ids override the other conditions");
        m.compaction.level = 1;
        if let Some(t) = m.thanos.as_mut() {
            t.labels.insert("cluster".into(), "us".into());
        }
        assert!(!f.selects(&m));
    }

    #[test]
    fn duplicates_are_the_exact_copies_of_the_oldest() {
        let meta = |id: u128, num_series: u64, sources: &[u128]| BlockMeta {
            ulid: Ulid(id),
            min_time: 0,
            max_time: 7_200_000,
            stats: strata_tsdb::block::meta::BlockStats { num_series, ..Default::default() },
            compaction: strata_tsdb::block::meta::BlockCompaction {
                level: 2,
                sources: sources.iter().map(|&s| Ulid(s)).collect(),
                ..Default::default()
            },
            version: 1,
            thanos: None,
        };
        let (a, b, c, d) = (meta(3, 10, &[1, 2]), meta(1, 10, &[1, 2]), meta(2, 11, &[1, 2]), meta(4, 10, &[2, 1]));
        let found: Vec<(u128, u128)> =
            duplicates(&[&a, &b, &c, &d]).iter().map(|(kept, dup)| (kept.ulid.0, dup.ulid.0)).collect();
        // c differs in its stats, d in the order of its sources: neither is a duplicate.
        assert_eq!(found, [(1, 3)]);
    }
}
