//! Replica deduplication as Thanos's querier does it (`pkg/dedup`): the series of a selection
//! whose labels are equal once the replica labels are removed are replicas of one series, and
//! their samples are merged into one series.
//!
//! - `penalty` (Thanos's `dedupSeriesIterator`, the default): Thanos's querier asks its stores
//!   to leave the replica labels out, so it never sees the replicas themselves: it gets their
//!   chunks pooled, identical ones kept once, and splits the pool into runs of chunks that do
//!   not overlap ([`overlap_split`]). The runs are what it merges, and so are they here. Two
//!   runs are read side by side; each step takes the earlier of their next samples (the first
//!   run's on a tie) and holds the other one back by twice the distance from the previous
//!   sample taken (5 s before the first), so the merge stays on one run and switches only
//!   across a gap of more than about two scrape intervals. N runs merge pairwise:
//!   `((r0, r1), r2)…`. For counters (the selection's function is `rate`, `increase`, `irate`
//!   or `resets`) a run switched to that is behind the last value taken is raised by the
//!   difference, from then on, so that a switch does not look like a counter reset (Thanos's
//!   `counterErrAdjustSeriesIterator`).
//! - `chain` (Prometheus's `ChainSampleIterator`): the union of the replicas' samples, one per
//!   timestamp; on equal timestamps the first replica's sample.
//!
//! Each run is read only within the selection's time range, as Thanos bounds its series
//! iterators. A penalty merge reads a run only when its next sample could be taken: while the
//! other run is ahead of it, its seek target is only remembered, and chunks that end before the
//! target are skipped undecoded. Replicas fed the same remote write hold identical chunks, which
//! make one run: read as one series, without a merge.

use strata_storage::{ChunkData, SeriesChunks};
use strata_tsdb::chunkenc::{Encoding, XorIter};
use strata_tsdb::querier::for_each_sample as for_each_series_sample;
use strata_tsdb::{Error, Result};

/// Penalty before the first sample is taken: timestamps are milliseconds and scrape intervals
/// some seconds (Thanos's `initialPenalty`).
const INITIAL_PENALTY: i64 = 5000;

/// How replicas are merged (Thanos's `--deduplication.func`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DedupFunc {
    #[default]
    Penalty,
    Chain,
}

impl DedupFunc {
    /// The name the flag takes.
    pub fn name(self) -> &'static str {
        match self {
            DedupFunc::Penalty => "penalty",
            DedupFunc::Chain => "chain",
        }
    }

    /// The function the flag value `name` names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "penalty" => Some(DedupFunc::Penalty),
            "chain" => Some(DedupFunc::Chain),
            _ => None,
        }
    }
}

/// How the replicas of a selection's series become one series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Merge {
    pub func: DedupFunc,
    /// The selection feeds a counter function: penalty switches adjust for counter values.
    pub counter: bool,
}

impl Merge {
    /// The merge for a selection whose select hints name `function` (Thanos's `isCounter`).
    pub fn new(func: DedupFunc, function: Option<&str>) -> Self {
        Merge { func, counter: matches!(function, Some("increase" | "rate" | "irate" | "resets")) }
    }
}

/// Calls `f` with the samples in `[mint, maxt]` of the series merged from `replicas`, oldest
/// first, staleness markers included; one replica's samples as they are. Each replica's chunks
/// must be in time order without overlaps. A sample repeated at a chunk boundary may come
/// twice from a single replica, never from a merge.
pub(crate) fn for_each_sample(
    replicas: &[SeriesChunks],
    mint: i64,
    maxt: i64,
    merge: Merge,
    f: impl FnMut(i64, f64),
) -> Result<()> {
    match (replicas, merge.func) {
        ([one], _) => for_each_series_sample(one, mint, maxt, f),
        (_, DedupFunc::Penalty) => match overlap_split(replicas).as_slice() {
            [one] => for_each_series_sample(one, mint, maxt, f),
            runs => penalty(runs, mint, maxt, merge.counter, f),
        },
        (_, DedupFunc::Chain) => chain(replicas, mint, maxt, f),
    }
}

/// The replicas of a series as Thanos's querier hands them to its penalty merge. It asks its
/// stores to leave the replica labels out, so the replicas reach it as one series: its proxy
/// pools their chunks, keeps one of identical ones and sorts them (by min time, max time,
/// encoding, then greater bytes first, `AggrChunk.Compare`); the querier then splits the pool
/// into runs without overlaps, each chunk joining the first run whose last chunk ends before it
/// starts, or starting a run (`dedup.NewOverlapSplit`). The runs are the merge's replicas.
fn overlap_split(replicas: &[SeriesChunks]) -> Vec<SeriesChunks> {
    let mut pool: Vec<&ChunkData> = replicas.iter().flat_map(|r| &r.chunks).collect();
    pool.sort_by(|x, y| {
        (x.min_time, x.max_time, x.encoding as u8)
            .cmp(&(y.min_time, y.max_time, y.encoding as u8))
            .then_with(|| y.data.cmp(&x.data))
    });
    // Identical chunks hold the same samples, so they sort next to each other.
    pool.dedup_by(|x, y| x.data == y.data);
    let mut runs: Vec<Vec<ChunkData>> = Vec::new();
    for c in pool {
        match runs.iter_mut().find(|run| run.last().is_some_and(|last| last.max_time < c.min_time)) {
            Some(run) => run.push(c.clone()),
            None => runs.push(vec![c.clone()]),
        }
    }
    let labels = replicas.first().map(|r| r.labels.clone()).unwrap_or_default();
    runs.into_iter().map(|chunks| SeriesChunks { labels: labels.clone(), chunks }).collect()
}

fn chain(replicas: &[SeriesChunks], mint: i64, maxt: i64, mut f: impl FnMut(i64, f64)) -> Result<()> {
    let mut decoded = Vec::with_capacity(replicas.len());
    for r in replicas {
        let (mut t, mut v) = (Vec::new(), Vec::new());
        for_each_series_sample(r, mint, maxt, |ts, val| {
            if t.last().is_none_or(|&last| ts > last) {
                t.push(ts);
                v.push(val);
            }
        })?;
        decoded.push((t, v));
    }
    let mut next = vec![0usize; decoded.len()];
    loop {
        // The earliest next sample; the first replica holding it on a tie.
        let mut pick: Option<(usize, i64)> = None;
        for (r, (t, _)) in decoded.iter().enumerate() {
            if let Some(&ts) = t.get(next[r]) {
                if pick.is_none_or(|(_, best)| ts < best) {
                    pick = Some((r, ts));
                }
            }
        }
        let Some((r, ts)) = pick else { return Ok(()) };
        f(ts, decoded[r].1[next[r]]);
        for (i, (t, _)) in decoded.iter().enumerate() {
            if t.get(next[i]) == Some(&ts) {
                next[i] += 1;
            }
        }
    }
}

fn penalty(replicas: &[SeriesChunks], mint: i64, maxt: i64, counter: bool, mut f: impl FnMut(i64, f64)) -> Result<()> {
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
mod tests;
