//! Replica deduplication as Thanos's querier does it (`pkg/dedup`): the series of a selection
//! whose labels are equal once the replica labels are removed are replicas of one series, and
//! their samples are merged into one series.
//!
//! - `penalty` (Thanos's `dedupSeriesIterator`, the default): Thanos's querier asks its stores
//!   to leave the replica labels out, so it never sees the replicas themselves: it gets their
//!   chunks pooled, identical ones kept once, and splits the pool into runs of chunks that do
//!   not overlap ([`overlap_split`]). The runs are what it merges, and so are they here, with
//!   [`strata_tsdb::dedup::penalty_merge`]; for counters (the selection's function is `rate`,
//!   `increase`, `irate` or `resets`) with Thanos's counter adjustment.
//! - `chain` (Prometheus's `ChainSampleIterator`): the union of the replicas' samples, one per
//!   timestamp; on equal timestamps the first replica's sample.
//!
//! Each run is read only within the selection's time range, as Thanos bounds its series
//! iterators. Replicas fed the same remote write hold identical chunks, which make one run:
//! read as one series, without a merge.

use strata_storage::{ChunkData, SeriesChunks};
use strata_tsdb::dedup::penalty_merge;
use strata_tsdb::querier::for_each_sample as for_each_series_sample;
use strata_tsdb::Result;

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
            runs => penalty_merge(runs, mint, maxt, merge.counter, f),
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

#[cfg(test)]
mod tests;
