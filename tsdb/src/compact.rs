//! Block merge: N blocks become one, as Prometheus's leveled compactor writes it. The compactor
//! plans which blocks to merge; this module does the merge.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ulid::Ulid;

use crate::block::meta::{BlockCompaction, BlockDesc, BlockMeta};
use crate::block::{Block, BlockSeries, BlockWriter};
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
        sets.push(Box::new(BlockSeries::new(Arc::clone(b), &[], i64::MIN, i64::MAX, false)?));
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
