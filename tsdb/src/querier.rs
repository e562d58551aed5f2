//! Merging series from several sources (blocks and the head): one series per label set, its
//! chunks in time order, overlapping chunks merged. Block compaction uses the same merge.

use std::cmp::Ordering;

use crate::block::{ChunkData, SeriesChunks};
use crate::chunkenc::{Encoding, XorAppender, XorIter};
use crate::{Error, Result};

/// Most samples in a chunk that a merge re-encodes (Prometheus's `seriesToChunkEncoderSplit`).
pub const MERGED_CHUNK_SAMPLES: usize = 120;

/// Merges the chunks of one series, given in any order. Chunks that overlap no other are kept
/// byte for byte, and so is a chunk whose identical copies (same time range and bytes) are all
/// that overlaps it: the copies are dropped. Each other group of overlapping chunks is decoded, merged (one sample per timestamp:
/// the first source in `chunks` order wins, as in Prometheus's chained merge) and re-encoded into
/// chunks of at most [`MERGED_CHUNK_SAMPLES`] samples.
pub fn merge_chunks(mut chunks: Vec<ChunkData>) -> Result<Vec<ChunkData>> {
    if chunks.len() < 2 {
        return Ok(chunks);
    }
    // Stable: among chunks starting at the same time, earlier sources stay first.
    let order: Vec<usize> = {
        let mut idx: Vec<usize> = (0..chunks.len()).collect();
        idx.sort_by_key(|&i| chunks[i].min_time);
        idx
    };
    let mut taken: Vec<Option<ChunkData>> = chunks.drain(..).map(Some).collect();
    let mut sorted: Vec<(usize, ChunkData)> = Vec::with_capacity(taken.len());
    for i in order {
        if let Some(c) = taken[i].take() {
            sorted.push((i, c));
        }
    }
    let mut out = Vec::with_capacity(sorted.len());
    let mut group: Vec<(usize, ChunkData)> = Vec::new();
    let mut group_max = i64::MIN;
    for (src, c) in sorted {
        if !group.is_empty() && c.min_time > group_max {
            flush_group(std::mem::take(&mut group), &mut out)?;
        }
        group_max = if group.is_empty() { c.max_time } else { group_max.max(c.max_time) };
        group.push((src, c));
    }
    flush_group(group, &mut out)?;
    Ok(out)
}

fn flush_group(group: Vec<(usize, ChunkData)>, out: &mut Vec<ChunkData>) -> Result<()> {
    // Identical duplicates (the same chunk from two replicas, two stores or overlapping blocks:
    // same time range and bytes) are dropped before anything is decoded; what is left alone needs
    // no re-encoding.
    let mut distinct: Vec<(usize, ChunkData)> = Vec::with_capacity(group.len());
    for (src, c) in group {
        if !distinct.iter().any(|(_, d)| *d == c) {
            distinct.push((src, c));
        }
    }
    let group = distinct;
    if group.len() == 1 {
        out.extend(group.into_iter().map(|(_, c)| c));
        return Ok(());
    }
    if group.iter().any(|(_, c)| c.encoding == Encoding::Aggr) {
        // Downsampled chunks hold aggregates per window, which do not merge sample by sample
        // (nor with raw samples): of overlapping chunks the one starting first is kept and
        // those overlapping a kept one are dropped, as Thanos's querier skips samples that go
        // back in time.
        let mut end = i64::MIN;
        for (_, c) in group {
            if c.min_time > end {
                end = c.max_time;
                out.push(c);
            }
        }
        return Ok(());
    }
    let mut samples: Vec<(i64, usize, f64)> = Vec::new();
    for (src, c) in &group {
        if c.encoding != Encoding::Xor {
            return Err(Error::CorruptChunk(format!("cannot merge chunks with encoding {}", c.encoding)));
        }
        let mut it = XorIter::new(&c.data)?;
        samples.extend(it.by_ref().map(|(t, v)| (t, *src, v)));
        if let Some(e) = it.err() {
            return Err(Error::CorruptChunk(format!("merging chunk [{}, {}]: {e}", c.min_time, c.max_time)));
        }
    }
    samples.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    samples.dedup_by_key(|s| s.0);
    let samples: Vec<(i64, f64)> = samples.into_iter().map(|(t, _, v)| (t, v)).collect();
    encode_merged(&samples, out);
    Ok(())
}

/// Appends `samples` (merged, in time order) to `out` as XOR chunks of at most
/// [`MERGED_CHUNK_SAMPLES`] samples, as Prometheus's `NewSeriesToChunkEncoder` cuts them.
pub(crate) fn encode_merged(samples: &[(i64, f64)], out: &mut Vec<ChunkData>) {
    for part in samples.chunks(MERGED_CHUNK_SAMPLES) {
        let mut app = XorAppender::new();
        for &(t, v) in part {
            app.append(t, v);
        }
        let (Some(min_time), Some(max_time)) = (app.first_time(), app.last_time()) else { continue };
        out.push(ChunkData { min_time, max_time, encoding: Encoding::Xor, data: app.into_bytes().into() });
    }
}

/// Series in label order, owned by the iterator, so that it can be handed to another thread or
/// outlive the reader that made it. After an error it ends. `E` is the error of whoever reads:
/// the TSDB's own for blocks and the head, the read interface's for a fan-out over stores.
pub type SeriesIter<E = Error> = Box<dyn Iterator<Item = std::result::Result<SeriesChunks, E>> + Send>;

/// Merges series sets, each sorted by labels, into one sorted set: series with equal labels
/// become one series whose chunks are merged with [`merge_chunks`] (earlier sets win ties;
/// identical chunks are kept once). Lazy: it holds one series of each set at a time. The first
/// error of any set (or of a merge) ends the merged set. The one merge of the workspace: a TSDB's
/// blocks and head, compaction, a receiver's tenants and the StoreAPI proxy's stores all use it.
pub fn merge_series_sets<E>(sets: Vec<SeriesIter<E>>) -> SeriesIter<E>
where
    E: From<Error> + Send + 'static,
{
    merge_series_sets_with(sets, merge_chunks)
}

/// How the chunks of series with equal labels become one series' chunks: [`merge_chunks`]
/// (Prometheus's chained merge) or [`crate::dedup::penalty_merge_chunks`] (Thanos's compactor
/// with `--deduplication.func=penalty`).
pub type ChunkMerge = fn(Vec<ChunkData>) -> Result<Vec<ChunkData>>;

/// [`merge_series_sets`] with the chunks of equal series merged by `merge`.
pub fn merge_series_sets_with<E>(mut sets: Vec<SeriesIter<E>>, merge: ChunkMerge) -> SeriesIter<E>
where
    E: From<Error> + Send + 'static,
{
    if sets.len() == 1 {
        if let Some(only) = sets.pop() {
            return only;
        }
    }
    Box::new(MergeSeries { heads: Vec::new(), sets, merge, started: false, done: false })
}

/// See [`merge_series_sets`].
struct MergeSeries<E> {
    sets: Vec<SeriesIter<E>>,
    /// The current series of each set; filled at the first call to `next`.
    heads: Vec<Option<SeriesChunks>>,
    merge: ChunkMerge,
    started: bool,
    done: bool,
}

impl<E: From<Error>> MergeSeries<E> {
    /// Moves set `i` to its next series.
    fn advance(&mut self, i: usize) -> std::result::Result<(), E> {
        self.heads[i] = self.sets[i].next().transpose()?;
        Ok(())
    }

    fn next_merged(&mut self) -> std::result::Result<Option<SeriesChunks>, E> {
        if !self.started {
            self.started = true;
            self.heads = (0..self.sets.len()).map(|_| None).collect();
            for i in 0..self.sets.len() {
                self.advance(i)?;
            }
        }
        // The smallest label set among the sets' current series (few sets: a linear scan is fine);
        // the first set wins ties, so equal series in earlier sets cannot exist.
        let mut min: Option<usize> = None;
        for (i, h) in self.heads.iter().enumerate() {
            let Some(h) = h else { continue };
            match min {
                Some(m) if self.heads[m].as_ref().is_some_and(|cur| cur.labels.cmp(&h.labels) != Ordering::Greater) => {
                }
                _ => min = Some(i),
            }
        }
        let Some(m) = min else { return Ok(None) };
        let Some(first) = self.heads[m].take() else { return Ok(None) };
        self.advance(m)?;
        let labels = first.labels;
        let mut chunks = first.chunks;
        let mut merged = false;
        for i in m + 1..self.heads.len() {
            if self.heads[i].as_ref().is_some_and(|h| h.labels == labels) {
                if let Some(same) = self.heads[i].take() {
                    chunks.extend(same.chunks);
                    merged = true;
                }
                self.advance(i)?;
            }
        }
        let chunks = if merged { (self.merge)(chunks)? } else { chunks };
        Ok(Some(SeriesChunks { labels, chunks }))
    }
}

impl<E: From<Error>> Iterator for MergeSeries<E> {
    type Item = std::result::Result<SeriesChunks, E>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_merged().transpose();
        self.done = !matches!(next, Some(Ok(_)));
        next
    }
}

/// Calls `f` with every sample of `series` in `[mint, maxt]`, oldest first. The chunks must not
/// overlap (as [`merge_series_sets`] leaves them).
pub fn for_each_sample(series: &SeriesChunks, mint: i64, maxt: i64, mut f: impl FnMut(i64, f64)) -> Result<()> {
    for c in series.chunks.iter().filter(|c| c.max_time >= mint && c.min_time <= maxt) {
        if c.encoding != Encoding::Xor {
            return Err(Error::CorruptChunk(format!(
                "series {}: unsupported chunk encoding {}",
                series.labels, c.encoding
            )));
        }
        let mut it = XorIter::new(&c.data)?;
        for (t, v) in it.by_ref().filter(|&(t, _)| t >= mint && t <= maxt) {
            f(t, v);
        }
        if let Some(e) = it.err() {
            return Err(Error::CorruptChunk(format!("series {}: {e}", series.labels)));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::labels::Labels;
    use proptest::prelude::*;

    /// One XOR chunk of `samples`.
    pub(crate) fn chunk(samples: &[(i64, f64)]) -> ChunkData {
        let mut a = XorAppender::new();
        for &(t, v) in samples {
            a.append(t, v);
        }
        ChunkData {
            min_time: samples[0].0,
            max_time: samples[samples.len() - 1].0,
            encoding: Encoding::Xor,
            data: a.into_bytes().into(),
        }
    }

    fn samples_of(chunks: &[ChunkData]) -> Vec<(i64, u64)> {
        let s = SeriesChunks { labels: Labels::empty(), chunks: chunks.to_vec() };
        let mut out = Vec::new();
        for_each_sample(&s, i64::MIN, i64::MAX, |t, v| out.push((t, v.to_bits()))).unwrap();
        out
    }

    #[test]
    fn disjoint_chunks_are_kept_verbatim() {
        let a = chunk(&[(1, 1.0), (2, 2.0)]);
        let b = chunk(&[(3, 3.0)]);
        assert_eq!(merge_chunks(vec![b.clone(), a.clone()]).unwrap(), vec![a, b]);
    }

    #[test]
    fn overlapping_chunks_merge_and_first_source_wins() {
        let a = chunk(&[(1, 1.0), (3, 3.0), (5, 5.0)]);
        let b = chunk(&[(2, 20.0), (3, 30.0), (6, 60.0)]);
        let m = merge_chunks(vec![a, b]).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            samples_of(&m),
            [(1, 1.0), (2, 20.0), (3, 3.0), (5, 5.0), (6, 60.0)].map(|(t, v): (i64, f64)| (t, v.to_bits()))
        );
    }

    #[test]
    fn overlapping_downsampled_chunks_keep_the_first() {
        let aggr = |min_time, max_time, tag: u8| ChunkData {
            min_time,
            max_time,
            encoding: Encoding::Aggr,
            data: bytes::Bytes::from(vec![0, 0, 0, 0, tag]),
        };
        let raw = chunk(&[(150, 1.0), (400, 2.0)]);
        let merged = merge_chunks(vec![aggr(100, 299, 1), raw.clone(), aggr(200, 350, 2), aggr(300, 500, 3)]).unwrap();
        assert_eq!(merged, [aggr(100, 299, 1), aggr(300, 500, 3)]);
    }

    #[test]
    fn identical_chunks_are_kept_once() {
        let a = chunk(&[(1, 1.0), (3, 3.0)]);
        let b = chunk(&[(10, 1.0)]);
        // Two copies of each (two replicas): no re-encoding, one of each.
        let m = merge_chunks(vec![a.clone(), b.clone(), a.clone(), b.clone()]).unwrap();
        assert_eq!(m, vec![a.clone(), b]);
        // Beside a different chunk that overlaps them, the copies count once in the merge.
        let c = chunk(&[(2, 20.0), (3, 30.0)]);
        let m = merge_chunks(vec![a.clone(), c, a]).unwrap();
        assert_eq!(samples_of(&m), [(1, 1.0), (2, 20.0), (3, 3.0)].map(|(t, v): (i64, f64)| (t, v.to_bits())));
    }

    #[test]
    fn merged_chunks_are_split_at_120_samples() {
        let a: Vec<(i64, f64)> = (0..200).map(|i| (i * 2, 1.0)).collect();
        let b: Vec<(i64, f64)> = (0..200).map(|i| (i * 2 + 1, 2.0)).collect();
        let m = merge_chunks(vec![chunk(&a), chunk(&b)]).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(samples_of(&m).len(), 400);
    }

    #[test]
    fn series_sets_merge_by_labels() {
        let l = |n: &str| Labels::from_pairs(&[("__name__", n)]);
        let s = |n: &str, c: ChunkData| SeriesChunks { labels: l(n), chunks: vec![c] };
        let set1 = vec![s("a", chunk(&[(1, 1.0)])), s("c", chunk(&[(1, 1.0)]))];
        let set2 = vec![s("b", chunk(&[(1, 1.0)])), s("c", chunk(&[(2, 2.0)]))];
        let sets: Vec<SeriesIter> = vec![Box::new(set1.into_iter().map(Ok)), Box::new(set2.into_iter().map(Ok))];
        let m: Vec<SeriesChunks> = merge_series_sets(sets).collect::<Result<_>>().unwrap();
        let names: Vec<_> = m.iter().map(|s| s.labels.metric_name().unwrap().to_owned()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(m[2].chunks.len(), 2);
    }

    proptest! {
        #[test]
        fn merge_equals_deduplicated_union(
            parts in prop::collection::vec(prop::collection::btree_map(0i64..500, any::<u32>(), 1..150), 1..5)
        ) {
            let chunks: Vec<ChunkData> = parts
                .iter()
                .flat_map(|m| {
                    let v: Vec<(i64, f64)> = m.iter().map(|(&t, &x)| (t, f64::from(x))).collect();
                    v.chunks(MERGED_CHUNK_SAMPLES).map(chunk).collect::<Vec<_>>()
                })
                .collect();
            let mut want: std::collections::BTreeMap<i64, u64> = std::collections::BTreeMap::new();
            for m in &parts {
                for (&t, &x) in m {
                    want.entry(t).or_insert(f64::from(x).to_bits());
                }
            }
            let merged = merge_chunks(chunks).unwrap();
            for w in merged.windows(2) {
                prop_assert!(w[0].max_time < w[1].min_time, "chunks overlap after merge");
            }
            prop_assert!(merged.iter().all(|c| XorIter::new(&c.data).unwrap().num_samples() as usize <= MERGED_CHUNK_SAMPLES));
            prop_assert_eq!(samples_of(&merged), want.into_iter().collect::<Vec<_>>());
        }
    }
}
