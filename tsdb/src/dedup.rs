//! Thanos's penalty deduplication (`pkg/dedup`): the samples of several replicas of one series
//! merged into one series without gaps. Two replicas are read side by side; each step takes the
//! earlier of their next samples (the first replica's on a tie) and holds the other one back by
//! twice the distance from the previous sample taken (5 s before the first), so the merge stays
//! on one replica and switches only across a gap of more than about two scrape intervals. The
//! querier merges replicas' runs with it (strata-query's `dedup`), the compactor overlapping
//! chunks (`--deduplication.func=penalty`, [`penalty_merge_chunks`]).
//!
//! A replica is read only when its next sample could be taken: while the other one is ahead of
//! it, its seek target is only remembered, and chunks that end before the target are skipped
//! undecoded.

use crate::block::{ChunkData, SeriesChunks};
use crate::chunkenc::{Encoding, XorIter};
use crate::labels::Labels;
use crate::querier::encode_merged;
use crate::{Error, Result};

/// Penalty before the first sample is taken: timestamps are milliseconds and scrape intervals
/// some seconds (Thanos's `initialPenalty`).
pub const INITIAL_PENALTY: i64 = 5000;

/// Merges the chunks of one series from several replicas, given in any order, as Thanos's
/// compactor does with `--deduplication.func=penalty` (`dedup.NewChunkSeriesMerger`): in order of
/// (min time, max time), a chunk and all chunks overlapping it or each other are one group; a
/// chunk equal to the one before it in the group (same time range and bytes) is dropped; a group
/// left with one chunk is kept byte for byte, any other is penalty-merged (the first chunk, then
/// the others in order, pairwise) and re-encoded into chunks of at most 120 samples. Overlapping
/// downsampled chunks keep the one starting first, as the chained merge does.
pub fn penalty_merge_chunks(mut chunks: Vec<ChunkData>) -> Result<Vec<ChunkData>> {
    if chunks.len() < 2 {
        return Ok(chunks);
    }
    chunks.sort_by_key(|c| (c.min_time, c.max_time));
    let mut out = Vec::with_capacity(chunks.len());
    let mut rest = chunks.into_iter().peekable();
    while let Some(base) = rest.next() {
        let mut group_max = base.max_time;
        let mut group = vec![base];
        while let Some(next) = rest.next_if(|c| c.min_time <= group_max) {
            if group.last() != Some(&next) {
                group_max = group_max.max(next.max_time);
                group.push(next);
            }
        }
        if group.len() == 1 {
            out.append(&mut group);
        } else if group.iter().any(|c| c.encoding == Encoding::Aggr) {
            let mut end = i64::MIN;
            for c in group {
                if c.min_time > end {
                    end = c.max_time;
                    out.push(c);
                }
            }
        } else {
            let replicas: Vec<SeriesChunks> =
                group.into_iter().map(|c| SeriesChunks { labels: Labels::empty(), chunks: vec![c] }).collect();
            let mut samples = Vec::new();
            penalty_merge(&replicas, i64::MIN, i64::MAX, false, |t, v| samples.push((t, v)))?;
            encode_merged(&samples, &mut out);
        }
    }
    Ok(out)
}

/// Calls `f` with the samples in `[mint, maxt]` of the penalty merge of `replicas` (Thanos's
/// `dedupSeriesIterator`), oldest first: pairwise, `((r0, r1), r2)…`. Each replica's chunks must
/// be in time order without overlaps. `counter`: a replica switched to that is behind the last
/// value taken is raised by the difference (Thanos's `counterErrAdjustSeriesIterator`).
pub fn penalty_merge(
    replicas: &[SeriesChunks],
    mint: i64,
    maxt: i64,
    counter: bool,
    mut f: impl FnMut(i64, f64),
) -> Result<()> {
    let mut leaves = replicas.iter().map(|r| Source::Leaf(Leaf::new(r, mint, maxt, counter)));
    let (Some(first), Some(second)) = (leaves.next(), leaves.next()) else { return Ok(()) };
    let mut merged = Pair::new(first, second)?;
    for leaf in leaves {
        merged = Pair::new(Source::Pair(Box::new(merged)), leaf)?;
    }
    while merged.next()? {
        f(merged.at_t(), merged.at());
    }
    Ok(())
}

/// What a penalty merge reads from: one replica, or the merge of earlier ones.
enum Source<'a> {
    Leaf(Leaf<'a>),
    Pair(Box<Pair<'a>>),
}

impl Source<'_> {
    /// Moves to the first sample at or after `t` (never back); false when there is none.
    fn seek(&mut self, t: i64) -> Result<bool> {
        match self {
            Source::Leaf(l) => l.seek(t),
            Source::Pair(p) => p.seek(t),
        }
    }

    fn at_t(&self) -> i64 {
        match self {
            Source::Leaf(l) => l.t,
            Source::Pair(p) => p.at_t(),
        }
    }

    fn at(&self) -> f64 {
        match self {
            Source::Leaf(l) => l.at(),
            Source::Pair(p) => p.at(),
        }
    }

    /// The time of the current sample, if there is one.
    fn position(&self) -> Option<i64> {
        match self {
            Source::Leaf(l) => l.positioned.then_some(l.t),
            Source::Pair(p) => Some(p.at_t()),
        }
    }

    /// Thanos's `adjustAtValue`: `last` is the value taken before switching here.
    fn adjust(&mut self, last: f64) -> Result<()> {
        match self {
            Source::Leaf(l) => {
                l.adjust(last);
                Ok(())
            }
            Source::Pair(p) => p.adjust(last),
        }
    }
}

/// One replica's samples in `[mint, maxt]`.
struct Leaf<'a> {
    series: &'a SeriesChunks,
    /// The chunks not started yet.
    chunks: std::slice::Iter<'a, ChunkData>,
    /// The chunk being read, and its last sample's time.
    chunk: Option<(XorIter<'a>, i64)>,
    mint: i64,
    maxt: i64,
    /// The current sample, once positioned.
    t: i64,
    v: f64,
    positioned: bool,
    done: bool,
    counter: bool,
    /// Added to every value from a counter switch on (Thanos's `errAdjust`).
    offset: f64,
}

impl<'a> Leaf<'a> {
    fn new(series: &'a SeriesChunks, mint: i64, maxt: i64, counter: bool) -> Self {
        Leaf {
            series,
            chunks: series.chunks.iter(),
            chunk: None,
            mint,
            maxt,
            t: i64::MIN,
            v: 0.0,
            positioned: false,
            done: false,
            counter,
            offset: 0.0,
        }
    }

    fn seek(&mut self, target: i64) -> Result<bool> {
        let target = target.max(self.mint);
        if self.positioned && self.t >= target {
            return Ok(true);
        }
        if self.done || target > self.maxt {
            return Ok(self.end());
        }
        loop {
            if let Some((it, end)) = &mut self.chunk {
                // The rest of a chunk that ends before `target` is skipped unread. `target` is
                // past the current sample: one repeated at a chunk boundary is passed over.
                if *end >= target {
                    for (t, v) in it.by_ref() {
                        if t > self.maxt {
                            return Ok(self.end());
                        }
                        if t >= target {
                            (self.t, self.v, self.positioned) = (t, v, true);
                            return Ok(true);
                        }
                    }
                    if let Some(e) = it.err() {
                        return Err(Error::CorruptChunk(format!("series {}: {e}", self.series.labels)));
                    }
                }
                self.chunk = None;
            }
            let Some(c) = self.chunks.next() else { return Ok(self.end()) };
            // Chunks that end before the target are skipped without decoding.
            if c.max_time < target {
                continue;
            }
            if c.min_time > self.maxt {
                return Ok(self.end());
            }
            if c.encoding != Encoding::Xor {
                return Err(Error::CorruptChunk(format!(
                    "series {}: unsupported chunk encoding {}",
                    self.series.labels, c.encoding
                )));
            }
            self.chunk = Some((XorIter::new(&c.data)?, c.max_time));
        }
    }

    fn end(&mut self) -> bool {
        self.done = true;
        self.positioned = false;
        false
    }

    fn at(&self) -> f64 {
        // Adding nothing keeps the value's bits (a staleness marker stays one).
        if self.offset == 0.0 || self.v.is_nan() {
            self.v
        } else {
            self.v + self.offset
        }
    }

    fn adjust(&mut self, last: f64) {
        if !self.counter {
            return;
        }
        // This replica missed the counter's latest value: a counter does not go down.
        let v = self.at();
        if last > v {
            self.offset += last - v;
        }
    }
}

/// One side of a [`Pair`]: its source, whether it may have samples left, and a seek not made
/// yet.
struct Side<'a> {
    src: Source<'a>,
    /// False once a seek found no sample (Thanos: its value type is `ValNone`).
    alive: bool,
    pending: Option<i64>,
}

impl<'a> Side<'a> {
    /// A side as Thanos's constructor leaves it: advanced to its first sample. A replica is not
    /// read for that until it is needed.
    fn start(mut src: Source<'a>) -> Result<Self> {
        match &mut src {
            Source::Leaf(_) => Ok(Side { src, alive: true, pending: Some(i64::MIN) }),
            Source::Pair(p) => {
                let alive = p.next()?;
                Ok(Side { src, alive, pending: None })
            }
        }
    }

    /// Records a seek to `t`; it is made when the side's sample is needed. Seeks never move
    /// back, so the furthest one is where the side ends up.
    fn want(&mut self, t: i64) {
        if self.alive {
            self.pending = Some(self.pending.map_or(t, |p| p.max(t)));
        }
    }

    fn resolve(&mut self) -> Result<()> {
        if let Some(t) = self.pending.take() {
            if self.alive {
                self.alive = self.src.seek(t)?;
            }
        }
        Ok(())
    }

    /// No sample of this side comes before this time (known without reading).
    fn lower_bound(&self) -> i64 {
        let at = self.src.position().unwrap_or(i64::MIN);
        self.pending.map_or(at, |p| p.max(at))
    }
}

/// Thanos's `dedupSeriesIterator` over two sources.
struct Pair<'a> {
    a: Side<'a>,
    b: Side<'a>,
    last_t: i64,
    pen_a: i64,
    pen_b: i64,
    use_a: bool,
}

impl<'a> Pair<'a> {
    fn new(a: Source<'a>, b: Source<'a>) -> Result<Self> {
        Ok(Pair { a: Side::start(a)?, b: Side::start(b)?, last_t: i64::MIN, pen_a: 0, pen_b: 0, use_a: true })
    }

    fn current(&self) -> &Side<'a> {
        if self.use_a {
            &self.a
        } else {
            &self.b
        }
    }

    fn at_t(&self) -> i64 {
        self.current().src.at_t()
    }

    fn at(&self) -> f64 {
        self.current().src.at()
    }

    /// Takes the sample at `t` of side A (`use_a`) or B and holds the other side back.
    fn take(&mut self, use_a: bool, t: i64) {
        let penalty =
            if self.last_t == i64::MIN { INITIAL_PENALTY } else { t.saturating_sub(self.last_t).saturating_mul(2) };
        if use_a {
            (self.pen_a, self.pen_b) = (0, penalty);
        } else {
            (self.pen_a, self.pen_b) = (penalty, 0);
        }
        self.last_t = t;
        self.use_a = use_a;
    }

    /// The next merged sample; false at the end.
    fn next(&mut self) -> Result<bool> {
        let was_a = self.use_a;
        // The value taken last, for the counter adjustment of a switch.
        let last = {
            let side = if was_a { &mut self.a } else { &mut self.b };
            side.resolve()?;
            side.alive.then(|| side.src.at())
        };
        self.a.want(self.last_t.saturating_add(1).saturating_add(self.pen_a));
        self.b.want(self.last_t.saturating_add(1).saturating_add(self.pen_b));

        // The side taken last is read first. The other side is read only if its next sample
        // could come first: when it cannot, the step is Thanos's whatever that sample is (or
        // if there is none, the other side's penalty no longer matters).
        let (cur, other) = if was_a { (&mut self.a, &self.b) } else { (&mut self.b, &self.a) };
        cur.resolve()?;
        if cur.alive && other.alive {
            let t = cur.src.at_t();
            // Ties go to A.
            let stays = if was_a { t <= other.lower_bound() } else { t < other.lower_bound() };
            if stays {
                self.take(was_a, t);
                return Ok(true);
            }
        }

        self.a.resolve()?;
        self.b.resolve()?;
        match (self.a.alive, self.b.alive) {
            (false, b_alive) => {
                self.use_a = false;
                if b_alive {
                    self.last_t = self.b.src.at_t();
                    self.pen_b = 0;
                }
            }
            (true, false) => {
                self.use_a = true;
                self.last_t = self.a.src.at_t();
                self.pen_a = 0;
            }
            (true, true) => {
                let (ta, tb) = (self.a.src.at_t(), self.b.src.at_t());
                self.take(ta <= tb, ta.min(tb));
            }
        }
        if self.use_a != was_a {
            if let Some(v) = last {
                self.adjust(v)?;
            }
        }
        Ok(self.a.alive || self.b.alive)
    }

    /// Thanos's `Seek` of a merge: steps (never skips) until a sample at or after `t`.
    fn seek(&mut self, t: i64) -> Result<bool> {
        loop {
            if self.at_t() >= t {
                return Ok(true);
            }
            if !self.next()? {
                return Ok(false);
            }
        }
    }

    fn adjust(&mut self, last: f64) -> Result<()> {
        for side in [&mut self.a, &mut self.b] {
            side.resolve()?;
            if side.alive {
                side.src.adjust(last)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::querier::tests::chunk;

    fn samples_of(chunks: &[ChunkData]) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for c in chunks {
            out.extend(XorIter::new(&c.data).unwrap());
        }
        out
    }

    #[test]
    fn disjoint_chunks_and_identical_copies_are_kept_verbatim() {
        let a = chunk(&[(1, 1.0), (2, 2.0)]);
        let b = chunk(&[(10, 3.0), (11, 4.0)]);
        assert_eq!(penalty_merge_chunks(vec![b.clone(), a.clone(), b.clone(), a.clone()]).unwrap(), vec![a, b]);
    }

    #[test]
    fn replicas_merge_on_one_replica_and_switch_across_a_gap() {
        // a every 15 s with a gap of a minute; b 5 s later, without the gap.
        let a: Vec<(i64, f64)> =
            (0..40).map(|k| (k * 15_000, 1.0)).filter(|(t, _)| !(300_000..360_000).contains(t)).collect();
        let b: Vec<(i64, f64)> = (0..40).map(|k| (k * 15_000 + 5_000, 2.0)).collect();
        let merged = samples_of(&penalty_merge_chunks(vec![chunk(&a), chunk(&b)]).unwrap());
        // a until its gap, b across it, and b from then on: the merge stays where it is.
        let first_b = merged.iter().position(|&(_, v)| v == 2.0).unwrap();
        assert_eq!(&merged[..first_b], &a[..first_b]);
        assert!(merged[first_b].0 > 285_000 && merged[first_b].0 < 360_000, "{merged:?}");
        assert!(merged[first_b..].iter().all(|&(_, v)| v == 2.0), "{merged:?}");
        assert!(merged.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(merged.last().unwrap().0, b.last().unwrap().0);
    }

    #[test]
    fn merged_chunks_are_cut_at_120_samples() {
        let a: Vec<(i64, f64)> = (0..300).map(|k| (k * 10, 1.0)).collect();
        let b: Vec<(i64, f64)> = (0..300).map(|k| (k * 10 + 3, 2.0)).collect();
        let merged = penalty_merge_chunks(vec![chunk(&a), chunk(&b)]).unwrap();
        assert_eq!(
            merged.iter().map(|c| samples_of(std::slice::from_ref(c)).len()).collect::<Vec<_>>(),
            [120, 120, 60]
        );
    }
}
