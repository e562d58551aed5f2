//! Block merge: N blocks become one, as Prometheus's leveled compactor writes it. The compactor
//! plans which blocks to merge; this module does the merge.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ulid::Ulid;

use crate::block::meta::{BlockCompaction, BlockDesc, BlockMeta};
use crate::block::{Block, BlockSeries, BlockWriter, ChunkData};
use crate::querier::{merge_series_sets_with, ChunkMerge, SeriesIter};
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

/// How a rewrite changes one series: `None` drops it, otherwise the chunks it keeps (a series
/// left without chunks is dropped too).
pub type SeriesEdit<'a> = &'a dyn Fn(&crate::labels::Labels, Vec<ChunkData>) -> Option<Vec<ChunkData>>;

/// Writes `block` anew in `parent` with each series as `edit` leaves it (Thanos's `tools bucket
/// rewrite` deletions, and its `verify --repair`, which drops broken chunks); with `parent`
/// `None` only counts what would go (a dry run). The new block keeps the time range, level and
/// parents, and is its own only source (callers record the old sources as Thanos does); chunks
/// are copied verbatim and the symbol table holds only the labels of the series kept, so no
/// deleted label value stays behind. Returns the new meta (none in a dry run) and what was
/// dropped.
pub fn rewrite_block(
    parent: Option<&Path>,
    block: &Block,
    edit: SeriesEdit<'_>,
) -> Result<(Option<BlockMeta>, Dropped)> {
    let started = Instant::now();
    let mut dropped = Dropped::default();
    let mut symbols = std::collections::BTreeSet::new();
    // Chunk data is a view of the memory map: reading it to count samples costs no copy.
    for series in BlockSeries::new(block, &[], i64::MIN, i64::MAX, false)?.read_once() {
        let series = series?;
        let all = series.chunks.clone();
        match edit(&series.labels, series.chunks).filter(|kept| !kept.is_empty()) {
            None => {
                dropped.series += 1;
                dropped.count(&all, &[]);
            }
            Some(kept) => {
                dropped.count(&all, &kept);
                if parent.is_some() {
                    for (name, value) in series.labels.iter() {
                        symbols.insert(name.to_owned());
                        symbols.insert(value.to_owned());
                    }
                }
            }
        }
    }
    let Some(parent) = parent else {
        return Ok((None, dropped));
    };
    let ulid = Ulid::new();
    let meta = block.meta();
    let mut w = BlockWriter::new(parent, ulid)?;
    w.add_symbols(symbols.iter().map(String::as_str))?;
    drop(symbols);
    for series in BlockSeries::new(block, &[], i64::MIN, i64::MAX, false)?.read_once() {
        let series = series?;
        if let Some(kept) = edit(&series.labels, series.chunks).filter(|kept| !kept.is_empty()) {
            w.add_series(&series.labels, &kept)?;
        }
    }
    let compaction = BlockCompaction { sources: vec![ulid], ..meta.compaction.clone() };
    let written = w.finish(meta.min_time, meta.max_time, compaction)?;
    tracing::info!(
        from = %meta.ulid, ulid = %ulid, series = written.stats.num_series, dropped_series = dropped.series,
        dropped_chunks = dropped.chunks, dropped_samples = dropped.samples, duration = ?started.elapsed(),
        "rewrote block"
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
        let edit = |l: &Labels, c: Vec<ChunkData>| (!delete(l)).then_some(c);
        let (none, counted) = rewrite_block(None, &block, &edit).unwrap();
        assert!(none.is_none());
        assert_eq!(counted, Dropped { series: 1, chunks: 1, samples: 10 });
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a dry run writes nothing");

        let (meta, dropped) = rewrite_block(Some(dir.path()), &block, &edit).unwrap();
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
