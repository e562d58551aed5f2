//! Reading downsampled series as Thanos's querier does (pkg/query/iter.go `chunkSeries`,
//! pkg/compact/downsample `ApplyCounterResetsSeriesIterator` and `AverageChunkIterator`): a
//! series whose chunks are raw or [`AggrChunk`]s becomes one run of float samples, made of one
//! aggregate, of the counter aggregate with its resets undone, or of sum / count.

use crate::block::{ChunkData, SeriesChunks};
use crate::chunkenc::{AggrChunk, AggrType, Encoding, XorIter};
use crate::{Error, Result};

/// What a reader makes of a series' chunks (the aggregates it asked a store for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggrView {
    /// One aggregate per window (raw chunks as they are); for [`AggrType::Counter`], with the
    /// counter resets undone across all chunks, raw ones included.
    One(AggrType),
    /// sum / count per window (raw chunks as they are): the average, for everything else.
    Average,
}

/// Thanos's `ApplyCounterResetsSeriesIterator`, fed one sample at a time across a series'
/// chunks: values become a monotonic total. A downsampled counter chunk starts with the first
/// raw value of its window and ends with the last raw value repeated at the previous sample's
/// time; that repeat only sets the value the next chunk's first sample is compared with, so a
/// reset between chunks is seen. NaN (staleness markers) is dropped, and so is a sample going
/// back in time.
#[derive(Clone, Debug, Default)]
pub struct CounterResets {
    started: bool,
    last_t: i64,
    last_v: f64,
    total: f64,
}

impl CounterResets {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last raw value seen (the trailing value of a downsampled counter chunk included):
    /// what the next value is compared with to find a reset.
    pub fn last_value(&self) -> f64 {
        self.last_v
    }

    /// The sample to emit for `(t, v)`, if any.
    pub fn push(&mut self, t: i64, v: f64) -> Option<(i64, f64)> {
        if v.is_nan() {
            return None;
        }
        if !self.started {
            self.started = true;
            (self.last_t, self.last_v, self.total) = (t, v, v);
            return Some((t, v));
        }
        if t > self.last_t {
            self.total += if v >= self.last_v { v - self.last_v } else { v };
            (self.last_t, self.last_v) = (t, v);
            return Some((t, self.total));
        }
        if t == self.last_t {
            self.last_v = v;
        }
        None
    }
}

/// Calls `f` with every sample of the XOR chunk `data`; `what` names it in errors.
fn for_each_xor(series: &SeriesChunks, what: &str, data: &[u8], mut f: impl FnMut(i64, f64)) -> Result<()> {
    let mut it = XorIter::new(data)?;
    for (t, v) in it.by_ref() {
        f(t, v);
    }
    match it.err() {
        Some(e) => Err(Error::CorruptChunk(format!("series {}: {what}: {e}", series.labels))),
        None => Ok(()),
    }
}

/// The float sub-chunk of `aggr` in `c`, or an error naming the series and chunk.
fn aggregate<'a>(series: &SeriesChunks, c: &ChunkData, chunk: &'a AggrChunk, aggr: AggrType) -> Result<&'a [u8]> {
    let missing = |why: &str| {
        Error::CorruptChunk(format!(
            "series {}: downsampled chunk [{}, {}]: {} aggregate {why}",
            series.labels,
            c.min_time,
            c.max_time,
            aggr.name()
        ))
    };
    let sub = chunk.get(aggr).ok_or_else(|| missing("not in the chunk (not sent by the store, or absent)"))?;
    if sub.encoding != Encoding::Xor {
        return Err(missing(&format!("is a {} chunk; only float (XOR) aggregates are read", sub.encoding)));
    }
    Ok(&sub.data)
}

/// Calls `f` with the samples `view` makes of `series`' chunks, in chunk order (the chunks must
/// be in time order). Raw chunks must be XOR; downsampled ones must hold the aggregates the
/// view needs.
pub fn for_each_sample(series: &SeriesChunks, view: AggrView, mut f: impl FnMut(i64, f64)) -> Result<()> {
    let mut resets = CounterResets::new();
    for c in &series.chunks {
        let what = format!("chunk [{}, {}]", c.min_time, c.max_time);
        match (c.encoding, view) {
            (Encoding::Xor, AggrView::One(AggrType::Counter)) => {
                for_each_xor(series, &what, &c.data, |t, v| resets.push(t, v).into_iter().for_each(|(t, v)| f(t, v)))?
            }
            (Encoding::Xor, _) => for_each_xor(series, &what, &c.data, &mut f)?,
            (Encoding::Aggr, _) => {
                let chunk = AggrChunk::decode(&c.data)
                    .map_err(|e| Error::CorruptChunk(format!("series {}: {what}: {e}", series.labels)))?;
                match view {
                    AggrView::One(AggrType::Counter) => {
                        let data = aggregate(series, c, &chunk, AggrType::Counter)?;
                        for_each_xor(series, &what, data, |t, v| {
                            resets.push(t, v).into_iter().for_each(|(t, v)| f(t, v))
                        })?
                    }
                    AggrView::One(aggr) => for_each_xor(series, &what, aggregate(series, c, &chunk, aggr)?, &mut f)?,
                    AggrView::Average => {
                        let (mut counts, mut sums) = (Vec::new(), Vec::new());
                        for_each_xor(series, &what, aggregate(series, c, &chunk, AggrType::Count)?, |t, v| {
                            counts.push((t, v))
                        })?;
                        for_each_xor(series, &what, aggregate(series, c, &chunk, AggrType::Sum)?, |t, v| {
                            sums.push((t, v))
                        })?;
                        if counts.len() != sums.len() {
                            return Err(Error::CorruptChunk(format!(
                                "series {}: {what}: sum and count aggregates not aligned ({} and {} samples)",
                                series.labels,
                                sums.len(),
                                counts.len()
                            )));
                        }
                        for (&(ct, count), &(st, sum)) in counts.iter().zip(&sums) {
                            if ct != st {
                                return Err(Error::CorruptChunk(format!(
                                    "series {}: {what}: sum and count timestamps not aligned ({st} and {ct})",
                                    series.labels
                                )));
                            }
                            f(ct, sum / count);
                        }
                    }
                }
            }
            (other, _) => {
                return Err(Error::CorruptChunk(format!(
                    "series {}: {what}: unsupported chunk encoding {other}",
                    series.labels
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::chunkenc::{SubChunk, XorAppender};
    use crate::Labels;

    fn xor_bytes(samples: &[(i64, f64)]) -> Bytes {
        let mut app = XorAppender::new();
        for &(t, v) in samples {
            app.append(t, v);
        }
        Bytes::from(app.into_bytes())
    }

    fn raw(samples: &[(i64, f64)]) -> ChunkData {
        ChunkData {
            min_time: samples[0].0,
            max_time: samples[samples.len() - 1].0,
            encoding: Encoding::Xor,
            data: xor_bytes(samples),
        }
    }

    /// A downsampled chunk with the given aggregates.
    fn aggr(parts: &[(AggrType, &[(i64, f64)])]) -> ChunkData {
        let mut c = AggrChunk::default();
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for &(t, samples) in parts {
            c.set(t, Some(SubChunk { encoding: Encoding::Xor, data: xor_bytes(samples) }));
            min = min.min(samples[0].0);
            max = max.max(samples[samples.len() - 1].0);
        }
        ChunkData { min_time: min, max_time: max, encoding: Encoding::Aggr, data: Bytes::from(c.encode()) }
    }

    fn samples(chunks: Vec<ChunkData>, view: AggrView) -> Result<Vec<(i64, f64)>> {
        let series = SeriesChunks { labels: Labels::from_pairs(&[("__name__", "x")]), chunks };
        let mut out = Vec::new();
        for_each_sample(&series, view, |t, v| out.push((t, v)))?;
        Ok(out)
    }

    /// Thanos's rules, worked by hand: resets inside and between chunks (the trailing raw value
    /// of a downsampled chunk decides the latter), raw and downsampled chunks mixed, a chunk
    /// going back in time.
    #[test]
    fn counter_resets_as_thanos() {
        let chunks = vec![
            aggr(&[(AggrType::Counter, &[(100, 10.0), (200, 20.0), (300, 10.0), (400, 20.0), (400, 5.0)])]),
            raw(&[(500, 40.0), (600, 0.0)]),
            aggr(&[(AggrType::Counter, &[(700, 40.0), (800, 50.0), (800, 50.0)])]),
            // Goes back in time: skipped.
            raw(&[(750, 1000.0), (900, 5.0)]),
        ];
        let got = samples(chunks, AggrView::One(AggrType::Counter)).unwrap();
        assert_eq!(
            got,
            [
                (100, 10.0),
                (200, 20.0),
                (300, 30.0),
                (400, 40.0),
                (500, 75.0),
                (600, 75.0),
                (700, 115.0),
                (800, 125.0),
                (900, 130.0)
            ]
        );
        // Staleness markers are dropped.
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let got = samples(vec![raw(&[(1, 1.0), (2, stale), (3, 2.0)])], AggrView::One(AggrType::Counter)).unwrap();
        assert_eq!(got, [(1, 1.0), (3, 2.0)]);
    }

    #[test]
    fn one_aggregate_and_average() {
        let window =
            [(AggrType::Count, &[(299, 2.0), (599, 4.0)][..]), (AggrType::Sum, &[(299, 10.0), (599, 6.0)][..])];
        let mut parts = window.to_vec();
        parts.push((AggrType::Min, &[(299, 1.0), (599, 0.5)]));
        let chunks = vec![aggr(&parts), raw(&[(700, 9.0)])];
        assert_eq!(
            samples(chunks.clone(), AggrView::One(AggrType::Min)).unwrap(),
            [(299, 1.0), (599, 0.5), (700, 9.0)]
        );
        assert_eq!(
            samples(chunks.clone(), AggrView::One(AggrType::Count)).unwrap(),
            [(299, 2.0), (599, 4.0), (700, 9.0)]
        );
        assert_eq!(samples(chunks.clone(), AggrView::Average).unwrap(), [(299, 5.0), (599, 1.5), (700, 9.0)]);
        let err = samples(chunks, AggrView::One(AggrType::Max)).unwrap_err().to_string();
        assert!(err.contains("max aggregate not in the chunk"), "{err}");
    }

    #[test]
    fn misaligned_or_corrupt_aggregates_fail() {
        let c = aggr(&[(AggrType::Count, &[(299, 2.0)]), (AggrType::Sum, &[(299, 10.0), (599, 6.0)])]);
        let err = samples(vec![c], AggrView::Average).unwrap_err().to_string();
        assert!(err.contains("not aligned"), "{err}");
        let c = aggr(&[(AggrType::Count, &[(299, 2.0)]), (AggrType::Sum, &[(300, 10.0)])]);
        let err = samples(vec![c], AggrView::Average).unwrap_err().to_string();
        assert!(err.contains("timestamps not aligned"), "{err}");
        let mut c = aggr(&[(AggrType::Count, &[(299, 2.0)])]);
        c.data = c.data.slice(..3);
        let err = samples(vec![c], AggrView::One(AggrType::Count)).unwrap_err().to_string();
        assert!(err.contains("aggregate chunk: count aggregate"), "{err}");
    }
}
