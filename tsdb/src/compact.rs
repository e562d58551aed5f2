//! Block merge: N blocks become one, as Prometheus's leveled compactor writes it. The compactor
//! plans which blocks to merge; this module does the merge.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ulid::Ulid;

use crate::block::meta::{BlockCompaction, BlockDesc, BlockMeta};
use crate::block::{Block, BlockSeries, BlockWriter, ChunkData};
use crate::labels::Labels;
use crate::querier::{merge_chunks, merge_series_sets_with, ChunkMerge, SeriesIter};
use crate::{Error, Result};

/// Writes the merge of `blocks` as a new block in `parent`. Series with equal labels become one;
/// chunks that overlap nothing are copied verbatim, overlapping ones are merged by `merge` (one
/// sample per timestamp with [`crate::querier::merge_chunks`], Thanos's penalty deduplication
/// with [`crate::dedup::penalty_merge_chunks`]) and re-encoded at 120 samples. The result covers `[min of mins, max of maxes)`, its
/// level is the highest input level plus one, its sources the sorted union of the inputs'
/// sources, its parents the inputs (Prometheus's `CompactBlockMetas`).
pub fn merge_blocks(parent: &Path, blocks: &[Arc<Block>], merge: ChunkMerge) -> Result<BlockMeta> {
    let started = Instant::now();
    let (Some(min_time), Some(max_time)) =
        (blocks.iter().map(|b| b.meta().min_time).min(), blocks.iter().map(|b| b.meta().max_time).max())
    else {
        return Err(Error::io("merge blocks into", parent, std::io::Error::other("no blocks to merge")));
    };
    let ulid = Ulid::new();
    let mut sources: Vec<Ulid> = blocks.iter().flat_map(|b| b.meta().compaction.sources.iter().copied()).collect();
    sources.sort();
    sources.dedup();
    let compaction = BlockCompaction {
        level: blocks.iter().map(|b| b.meta().compaction.level).max().unwrap_or(0) + 1,
        sources,
        parents: blocks
            .iter()
            .map(|b| BlockDesc { ulid: b.meta().ulid, min_time: b.meta().min_time, max_time: b.meta().max_time })
            .collect(),
        ..BlockCompaction::default()
    };
    let mut w = BlockWriter::new(parent, ulid)?;
    let mut symbols = Vec::new();
    for b in blocks {
        symbols.extend(b.index().symbols()?);
    }
    w.add_symbols(symbols.iter().map(String::as_str))?;
    drop(symbols);
    let mut sets: Vec<SeriesIter> = Vec::with_capacity(blocks.len());
    for b in blocks {
        sets.push(Box::new(BlockSeries::new(Arc::clone(b), &[], i64::MIN, i64::MAX, false)?.read_once()));
    }
    // Streamed: one series of each input is in memory at a time.
    for series in merge_series_sets_with(sets, merge) {
        let series = series?;
        w.add_series(&series.labels, &series.chunks)?;
    }
    let meta = w.finish(min_time, max_time, compaction)?;
    tracing::info!(
        ulid = %ulid, inputs = blocks.len(), min_time, max_time, series = meta.stats.num_series,
        samples = meta.stats.num_samples, duration = ?started.elapsed(), "merged blocks"
    );
    Ok(meta)
}

/// What a rewrite leaves out of a block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
    /// Series whose labels the relabelling changed (kept, possibly merged with others).
    pub relabelled: u64,
}

fn samples(chunks: &[ChunkData]) -> u64 {
    chunks.iter().map(|c| u64::from(c.encoding.num_samples(&c.data).unwrap_or(0))).sum()
}

impl Dropped {
    /// Counts what a series lost going from `all` to `kept`: the chunks not kept as they were
    /// (removed or re-encoded) and the samples less.
    fn count(&mut self, all: &[ChunkData], kept: &[ChunkData]) {
        self.chunks += all.iter().filter(|c| !kept.contains(c)).count() as u64;
        self.samples += samples(all).saturating_sub(samples(kept));
    }
}

/// How a rewrite changes one series: the chunks it keeps (`None`, or none left, drops the
/// series) and, for the change log, the time ranges deleted from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edited {
    pub kept: Option<Vec<ChunkData>>,
    /// Inclusive `[mint, maxt]` ranges, merged as Prometheus's `tombstones.Intervals.Add`
    /// merges them ([`add_interval`]).
    pub deleted: Vec<(i64, i64)>,
}

impl Edited {
    /// The series as it is.
    pub fn keep(chunks: Vec<ChunkData>) -> Edited {
        Edited { kept: Some(chunks), deleted: Vec::new() }
    }
}

/// A rewrite's edit of one series' chunks, given its (relabelled) labels.
pub type SeriesEdit<'a> = &'a dyn Fn(&Labels, Vec<ChunkData>) -> Edited;

/// A rewrite's relabelling of one series: its new labels, `None` to drop it.
pub type SeriesRelabel<'a> = &'a dyn Fn(&Labels) -> Option<Labels>;

/// A line of Thanos's rewrite change log (`change.log`, compactv2's `changeLog`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change<'a> {
    /// `Deleted {labels} [{mint maxt} ...]`: samples of these ranges (all, for a series
    /// dropped whole) are gone.
    Deleted(&'a Labels, &'a [(i64, i64)]),
    /// `Relabelled {old} {new}`.
    Relabelled(&'a Labels, &'a Labels),
}

impl fmt::Display for Change<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Deleted(labels, intervals) => {
                // Go's %v of a []tombstones.Interval.
                let list: Vec<String> = intervals.iter().map(|(a, b)| format!("{{{a} {b}}}")).collect();
                write!(f, "Deleted {labels} [{}]", list.join(" "))
            }
            Change::Relabelled(old, new) => write!(f, "Relabelled {old} {new}"),
        }
    }
}

/// Adds `n` to sorted, disjoint `list` as Prometheus's `tombstones.Intervals.Add`: intervals
/// overlapping or adjacent to it (one millisecond apart) are merged with it.
pub fn add_interval(list: &mut Vec<(i64, i64)>, n: (i64, i64)) {
    let (mint, maxt) = n;
    let lo = if mint == i64::MIN { 0 } else { list.partition_point(|&(_, b)| b < mint - 1) };
    if lo == list.len() {
        list.push(n);
        return;
    }
    let hi = if maxt == i64::MAX { list.len() } else { list.partition_point(|&(a, _)| a <= maxt + 1) };
    if hi == 0 {
        list.insert(0, n);
        return;
    }
    let merged = (mint.min(list[lo].0), list[hi - 1].1.max(maxt));
    list.splice(lo..hi, [merged]);
}

/// The time range of `chunks` (Thanos's log of a series dropped whole); empty without chunks.
pub fn chunks_range(chunks: &[ChunkData]) -> Vec<(i64, i64)> {
    match (chunks.iter().map(|c| c.min_time).min(), chunks.iter().map(|c| c.max_time).max()) {
        (Some(a), Some(b)) => vec![(a, b)],
        _ => Vec::new(),
    }
}

/// `edit` of one series: the change it made logged, the series' losses counted; the chunks
/// kept, if any.
fn apply_edit(
    edit: SeriesEdit<'_>,
    log: &mut dyn FnMut(Change<'_>),
    labels: &Labels,
    all: Vec<ChunkData>,
    dropped: &mut Dropped,
) -> Option<Vec<ChunkData>> {
    let edited = edit(labels, all.clone());
    if !edited.deleted.is_empty() {
        log(Change::Deleted(labels, &edited.deleted));
    }
    match edited.kept.filter(|kept| !kept.is_empty()) {
        None => {
            dropped.series += 1;
            dropped.count(&all, &[]);
            None
        }
        Some(kept) => {
            dropped.count(&all, &kept);
            Some(kept)
        }
    }
}

/// Writes `block` anew in `parent` as block `ulid` with each series as `relabel` and `edit`
/// leave it (Thanos's `tools bucket rewrite` relabelling and deletions, and its `verify
/// --repair`, which drops broken chunks); with `parent` `None` only counts what would go (a dry
/// run). The new block keeps the time range, level and parents, and is its own only source
/// (callers record the old sources as Thanos does); the symbol table holds only the labels of
/// the series kept, so no deleted label value stays behind. `log` gets each change as Thanos's
/// change log has it. Returns the new meta (none in a dry run) and what was dropped.
///
/// Without `relabel` the block is streamed twice (symbols, then series) and kept chunks are
/// copied verbatim. With it, as Thanos's `RelabelModifier`: every series is relabelled first
/// (dropped when a rule drops it or no label is left; logged in the block's order), series
/// that end up with equal labels become one (their chunks merged one sample per timestamp,
/// [`merge_chunks`]), and `edit` sees the merged series under its new labels; the kept chunks
/// are held (as views of the block's memory map) until written in the new order.
pub fn rewrite_block(
    parent: Option<&Path>,
    block: &Block,
    ulid: Ulid,
    edit: SeriesEdit<'_>,
    relabel: Option<SeriesRelabel<'_>>,
    log: &mut dyn FnMut(Change<'_>),
) -> Result<(Option<BlockMeta>, Dropped)> {
    let started = Instant::now();
    let mut dropped = Dropped::default();
    let mut symbols = std::collections::BTreeSet::new();
    let mut add_symbols = |labels: &Labels| {
        for (name, value) in labels.iter() {
            symbols.insert(name.to_owned());
            symbols.insert(value.to_owned());
        }
    };
    // Relabelled series by their new labels, with the chunks of every source.
    let mut relabelled: Option<BTreeMap<Labels, Vec<ChunkData>>> = None;
    if let Some(relabel) = relabel {
        let mut by_labels: BTreeMap<Labels, Vec<ChunkData>> = BTreeMap::new();
        for series in BlockSeries::new(block, &[], i64::MIN, i64::MAX, false)?.read_once() {
            let series = series?;
            match relabel(&series.labels).filter(|l| !l.is_empty()) {
                None => {
                    log(Change::Deleted(&series.labels, &chunks_range(&series.chunks)));
                    dropped.series += 1;
                    dropped.count(&series.chunks, &[]);
                }
                Some(new) => {
                    if new != series.labels {
                        log(Change::Relabelled(&series.labels, &new));
                        dropped.relabelled += 1;
                    }
                    by_labels.entry(new).or_default().extend(series.chunks);
                }
            }
        }
        let mut kept_series = BTreeMap::new();
        for (labels, chunks) in by_labels {
            let merged = merge_chunks(chunks.clone())?;
            // Duplicates a merge removes count as dropped; the chunks re-encoded do not.
            dropped.samples += samples(&chunks).saturating_sub(samples(&merged));
            if let Some(kept) = apply_edit(edit, log, &labels, merged, &mut dropped) {
                add_symbols(&labels);
                kept_series.insert(labels, kept);
            }
        }
        relabelled = Some(kept_series);
    } else {
        for series in BlockSeries::new(block, &[], i64::MIN, i64::MAX, false)?.read_once() {
            let series = series?;
            if apply_edit(edit, log, &series.labels, series.chunks, &mut dropped).is_some() {
                add_symbols(&series.labels);
            }
        }
    }
    let Some(parent) = parent else {
        return Ok((None, dropped));
    };
    let meta = block.meta();
    let mut w = BlockWriter::new(parent, ulid)?;
    w.add_symbols(symbols.iter().map(String::as_str))?;
    drop(symbols);
    match relabelled {
        Some(series) => {
            for (labels, chunks) in &series {
                w.add_series(labels, chunks)?;
            }
        }
        None => {
            for series in BlockSeries::new(block, &[], i64::MIN, i64::MAX, false)?.read_once() {
                let series = series?;
                if let Some(kept) = edit(&series.labels, series.chunks).kept.filter(|kept| !kept.is_empty()) {
                    w.add_series(&series.labels, &kept)?;
                }
            }
        }
    }
    let compaction = BlockCompaction { sources: vec![ulid], ..meta.compaction.clone() };
    let written = w.finish(meta.min_time, meta.max_time, compaction)?;
    tracing::info!(
        from = %meta.ulid, ulid = %ulid, series = written.stats.num_series, dropped_series = dropped.series,
        dropped_chunks = dropped.chunks, dropped_samples = dropped.samples, relabelled = dropped.relabelled,
        duration = ?started.elapsed(), "rewrote block"
    );
    Ok((Some(written), dropped))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::block::ChunkData;
    use crate::chunkenc::{Encoding, XorAppender};
    use crate::labels::Labels;
    use crate::querier::for_each_sample;

    type Data = BTreeMap<String, BTreeMap<i64, u64>>;

    /// Writes `data` (series name → time → value bits) as a level-1 block.
    fn write_block(dir: &Path, data: &Data) -> Arc<Block> {
        let ulid = Ulid::new();
        let mut w = BlockWriter::new(dir, ulid).unwrap();
        let labels: Vec<Labels> =
            data.keys().map(|n| Labels::from_pairs(&[("__name__", n.as_str()), ("job", "x")])).collect();
        let syms: Vec<String> = data.keys().cloned().chain(["__name__".into(), "job".into(), "x".into()]).collect();
        w.add_symbols(syms.iter().map(String::as_str)).unwrap();
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for (l, samples) in labels.iter().zip(data.values()) {
            let v: Vec<(i64, u64)> = samples.iter().map(|(&t, &b)| (t, b)).collect();
            let chunks: Vec<ChunkData> = v
                .chunks(120)
                .map(|part| {
                    let mut a = XorAppender::new();
                    for &(t, b) in part {
                        a.append(t, f64::from_bits(b));
                    }
                    ChunkData {
                        min_time: part[0].0,
                        max_time: part[part.len() - 1].0,
                        encoding: Encoding::Xor,
                        data: a.into_bytes().into(),
                    }
                })
                .collect();
            min = min.min(v[0].0);
            max = max.max(v[v.len() - 1].0);
            w.add_series(l, &chunks).unwrap();
        }
        let meta =
            w.finish(min, max + 1, BlockCompaction { level: 1, sources: vec![ulid], ..Default::default() }).unwrap();
        Arc::new(Block::open(&dir.join(meta.ulid.to_string())).unwrap())
    }

    fn data_strategy() -> impl Strategy<Value = Data> {
        prop::collection::btree_map(
            "[a-d]{1,3}",
            prop::collection::btree_map(
                0i64..2_000,
                prop::sample::select(vec![0u64, 1.5f64.to_bits(), f64::NAN.to_bits(), 0x7ff0_0000_0000_0002]),
                1..300,
            ),
            1..6,
        )
    }

    #[test]
    fn rewrite_drops_selected_series_and_their_symbols() {
        let dir = tempfile::tempdir().unwrap();
        let data: Data = [("aa", 0..130), ("secret", 0..10), ("bb", 5..20)]
            .into_iter()
            .map(|(n, r)| (n.to_owned(), r.map(|t| (t as i64, (t as f64).to_bits())).collect()))
            .collect();
        let block = write_block(dir.path(), &data);
        let delete = |l: &Labels| l.get("__name__") == Some("secret");
        let edit = |l: &Labels, c: Vec<ChunkData>| Edited { kept: (!delete(l)).then_some(c), deleted: Vec::new() };
        let (none, counted) = rewrite_block(None, &block, Ulid::new(), &edit, None, &mut |_| {}).unwrap();
        assert!(none.is_none());
        assert_eq!(counted, Dropped { series: 1, chunks: 1, samples: 10, relabelled: 0 });
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a dry run writes nothing");

        let (meta, dropped) = rewrite_block(Some(dir.path()), &block, Ulid::new(), &edit, None, &mut |_| {}).unwrap();
        let meta = meta.unwrap();
        assert_eq!(dropped, counted);
        assert_eq!(meta.compaction.sources, vec![meta.ulid]);
        assert_eq!((meta.min_time, meta.max_time), (block.meta().min_time, block.meta().max_time));
        assert_eq!((meta.stats.num_series, meta.stats.num_samples), (2, 145));
        let out = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
        assert!(!out.index().symbols().unwrap().iter().any(|s| s == "secret"));
        let names: Vec<String> = out.label_values("__name__", &[]).unwrap();
        assert_eq!(names, ["aa", "bb"]);
        // Kept chunks are the same bytes.
        let before = block.select(&[], i64::MIN, i64::MAX).unwrap();
        let after = out.select(&[], i64::MIN, i64::MAX).unwrap();
        let kept: Vec<_> = before.iter().filter(|s| !delete(&s.labels)).collect();
        assert_eq!(kept.len(), after.len());
        for (b, a) in kept.iter().zip(&after) {
            assert_eq!(b.labels, a.labels);
            assert_eq!(
                b.chunks.iter().map(|c| c.data.clone()).collect::<Vec<_>>(),
                a.chunks.iter().map(|c| c.data.clone()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn relabelling_drops_renames_and_merges_series_in_label_order() {
        let dir = tempfile::tempdir().unwrap();
        let data: Data = [("aa", 0..130), ("ab", 100..200), ("drop_me", 0..10), ("zz", 5..20)]
            .into_iter()
            .map(|(n, r)| (n.to_owned(), r.map(|t| (t as i64, (t as f64).to_bits())).collect()))
            .collect();
        let block = write_block(dir.path(), &data);
        // aa and ab both become "a" (merged; 100..130 in both, one sample each kept);
        // zz becomes "b", sorting before... nothing: "a" < "b"; drop_me goes.
        let relabel = |l: &Labels| -> Option<Labels> {
            let name = l.get("__name__")?;
            let new = match name {
                "drop_me" => return None,
                "aa" | "ab" => "a",
                "zz" => "b",
                other => other,
            };
            Some(Labels::from_pairs(&[("__name__", new), ("job", "x")]))
        };
        let edit = |_: &Labels, c: Vec<ChunkData>| Edited::keep(c);
        let mut lines = Vec::new();
        let ulid = Ulid::new();
        let (meta, dropped) =
            rewrite_block(Some(dir.path()), &block, ulid, &edit, Some(&relabel), &mut |c| lines.push(c.to_string()))
                .unwrap();
        let meta = meta.unwrap();
        assert_eq!(meta.ulid, ulid);
        assert_eq!(
            lines,
            [
                r#"Relabelled {__name__="aa", job="x"} {__name__="a", job="x"}"#,
                r#"Relabelled {__name__="ab", job="x"} {__name__="a", job="x"}"#,
                r#"Deleted {__name__="drop_me", job="x"} [{0 9}]"#,
                r#"Relabelled {__name__="zz", job="x"} {__name__="b", job="x"}"#,
            ]
        );
        assert_eq!((dropped.series, dropped.relabelled, dropped.samples), (1, 3, 10 + 30));
        let out = Block::open(&dir.path().join(ulid.to_string())).unwrap();
        let series = out.select(&[], i64::MIN, i64::MAX).unwrap();
        let names: Vec<String> = series.iter().map(|s| s.labels.get("__name__").unwrap().to_owned()).collect();
        assert_eq!(names, ["a", "b"]);
        let mut times = Vec::new();
        for_each_sample(&series[0], i64::MIN, i64::MAX, |t, _| times.push(t)).unwrap();
        assert_eq!(times, (0..200).collect::<Vec<i64>>(), "merged, one sample per timestamp");
        assert!(!out.index().symbols().unwrap().iter().any(|s| s == "drop_me" || s == "aa"));
        assert_eq!(meta.stats.num_series, 2);

        // Everything dropped: an empty block, every series logged.
        let mut lines = Vec::new();
        let (meta, dropped) =
            rewrite_block(Some(dir.path()), &block, Ulid::new(), &edit, Some(&|_: &Labels| None), &mut |c| {
                lines.push(c.to_string())
            })
            .unwrap();
        assert_eq!((meta.unwrap().stats.num_series, dropped.series, lines.len()), (0, 4, 4));
    }

    #[test]
    fn intervals_merge_as_prometheus_adds_them() {
        let mut list = Vec::new();
        for n in [(10, 20), (30, 40), (21, 25), (0, 5), (50, 60), (6, 6), (45, 49), (i64::MIN, -1)] {
            add_interval(&mut list, n);
        }
        assert_eq!(list, [(i64::MIN, 6), (10, 25), (30, 40), (45, 60)]);
        add_interval(&mut list, (0, i64::MAX));
        assert_eq!(list, [(i64::MIN, i64::MAX)]);
        let l = Labels::from_pairs(&[("a", "b\"c")]);
        assert_eq!(Change::Deleted(&l, &[]).to_string(), r#"Deleted {a="b\"c"} []"#);
        assert_eq!(Change::Deleted(&l, &[(1, 2), (-3, 4)]).to_string(), r#"Deleted {a="b\"c"} [{1 2} {-3 4}]"#);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn merge_of_overlapping_blocks_equals_merged_input(inputs in prop::collection::vec(data_strategy(), 1..4)) {
            let dir = tempfile::tempdir().unwrap();
            let blocks: Vec<Arc<Block>> = inputs.iter().map(|d| write_block(dir.path(), d)).collect();
            // Expected: per series, per timestamp, the value of the first block that has it.
            let mut want: Data = BTreeMap::new();
            for d in &inputs {
                for (name, samples) in d {
                    let e = want.entry(name.clone()).or_default();
                    for (&t, &b) in samples {
                        e.entry(t).or_insert(b);
                    }
                }
            }
            let meta = merge_blocks(dir.path(), &blocks, crate::querier::merge_chunks).unwrap();
            prop_assert_eq!(meta.compaction.level, 2);
            prop_assert_eq!(meta.compaction.parents.len(), inputs.len());
            let mut sources: Vec<Ulid> = blocks.iter().map(|b| b.meta().ulid).collect();
            sources.sort();
            prop_assert_eq!(&meta.compaction.sources, &sources);
            let merged = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
            let mut got: Data = BTreeMap::new();
            for s in merged.select(&[], i64::MIN, i64::MAX).unwrap() {
                for w in s.chunks.windows(2) {
                    prop_assert!(w[0].max_time < w[1].min_time);
                }
                let e = got.entry(s.labels.metric_name().unwrap().to_owned()).or_default();
                for_each_sample(&s, i64::MIN, i64::MAX, |t, v| {
                    e.insert(t, v.to_bits());
                }).unwrap();
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(meta.stats.num_samples, merged.meta().stats.num_samples);
        }
    }
}
