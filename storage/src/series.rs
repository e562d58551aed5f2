//! Streams of series: what [`Storage::select`](crate::Storage::select) returns.

use std::sync::Arc;

use parking_lot::Mutex;
use strata_tsdb::block::SeriesChunks;
use strata_tsdb::labels::Labels;

use crate::{SelectRequest, StorageError};

/// Series in strictly increasing label order, each with its chunks in time order and not
/// overlapping, the chunk bytes as the source holds them (never re-encoded on the way).
///
/// The set owns what it reads from (`'static`) and is `Send`, so that a server can move it into
/// a blocking task and stream it from there, and a reader can drop it half-way to stop the
/// work. After an error (or the end) it yields nothing more.
///
/// A set may carry warnings: what went wrong without failing the read (a store of a fan-out
/// that did not answer). They can be added while the set is read, so a reader looks at
/// [`SeriesSet::warnings`] after the last series.
pub struct SeriesSet {
    series: Box<dyn Iterator<Item = Result<SeriesChunks, StorageError>> + Send>,
    ended: bool,
    warnings: Warnings,
}

/// The warnings of a [`SeriesSet`], shared between the set and whatever produces its series.
#[derive(Debug, Clone, Default)]
pub struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    /// Adds `warning` unless it is there already.
    pub fn add(&self, warning: String) {
        let mut all = self.0.lock();
        if !all.contains(&warning) {
            all.push(warning);
        }
    }

    /// The warnings added so far, in order.
    pub fn get(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

impl SeriesSet {
    /// A set of the series `series` yields, which must keep the contract above.
    pub fn new(series: impl Iterator<Item = Result<SeriesChunks, StorageError>> + Send + 'static) -> Self {
        SeriesSet::with_warnings(series, Warnings::default())
    }

    /// A set of the series `series` yields, with `warnings` that its producer may add to.
    pub fn with_warnings(
        series: impl Iterator<Item = Result<SeriesChunks, StorageError>> + Send + 'static,
        warnings: Warnings,
    ) -> Self {
        SeriesSet { series: Box::new(series), ended: false, warnings }
    }

    /// The warnings added so far; complete once the set has ended.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.get()
    }

    /// The handle warnings are added through (to carry them over to a set built from this one).
    pub fn warnings_handle(&self) -> Warnings {
        self.warnings.clone()
    }

    /// No series.
    pub fn empty() -> Self {
        SeriesSet::new(std::iter::empty())
    }

    /// The answer to `req` from a local read that has applied its matchers and time range (and
    /// may have applied `skip_chunks`): applies the shard, `skip_chunks` and the series limit.
    pub fn from_local(
        series: impl Iterator<Item = strata_tsdb::Result<SeriesChunks>> + Send + 'static,
        req: &SelectRequest,
    ) -> Self {
        Self::from_read(series.map(|s| s.map_err(StorageError::from)), req)
    }

    /// [`from_local`](Self::from_local) for a read that fails with the interface's errors (a
    /// limit, say) besides the TSDB's.
    pub fn from_read(
        series: impl Iterator<Item = Result<SeriesChunks, StorageError>> + Send + 'static,
        req: &SelectRequest,
    ) -> Self {
        let shard = req.shard.clone().filter(|s| s.total_shards > 0);
        let skip_chunks = req.skip_chunks;
        let limit = if req.limit == 0 { usize::MAX } else { req.limit };
        SeriesSet::new(
            series
                .filter(move |s| match (s, &shard) {
                    (Ok(s), Some(shard)) => shard.matches(&s.labels),
                    _ => true,
                })
                .map(move |s| {
                    s.map(|mut s| {
                        if skip_chunks {
                            s.chunks.clear();
                        }
                        s
                    })
                })
                .take(limit),
        )
    }

    /// This set, with an error in place of the first series that breaks the contract: labels
    /// not strictly greater than the previous series', a chunk ending before it starts, or a
    /// chunk starting at or before the end of the previous one.
    pub fn checked(self) -> Self {
        let mut prev: Option<Labels> = None;
        let warnings = self.warnings_handle();
        SeriesSet::with_warnings(
            self.map(move |s| {
                s.and_then(|s| {
                    if let Some(p) = &prev {
                        if *p >= s.labels {
                            return Err(StorageError::Contract(format!(
                                "series {} after {p}: not in label order",
                                s.labels
                            )));
                        }
                    }
                    if let Some(c) = s.chunks.iter().find(|c| c.min_time > c.max_time) {
                        return Err(StorageError::Contract(format!(
                            "series {}: chunk [{}, {}] ends before it starts",
                            s.labels, c.min_time, c.max_time
                        )));
                    }
                    if let Some(w) = s.chunks.windows(2).find(|w| w[1].min_time <= w[0].max_time) {
                        return Err(StorageError::Contract(format!(
                            "series {}: chunk [{}, {}] overlaps or precedes [{}, {}]",
                            s.labels, w[1].min_time, w[1].max_time, w[0].min_time, w[0].max_time
                        )));
                    }
                    prev = Some(s.labels.clone());
                    Ok(s)
                })
            }),
            warnings,
        )
    }
}

impl Iterator for SeriesSet {
    type Item = Result<SeriesChunks, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let next = self.series.next();
        self.ended = !matches!(next, Some(Ok(_)));
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.ended {
            (0, Some(0))
        } else {
            self.series.size_hint()
        }
    }
}

impl std::fmt::Debug for SeriesSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesSet").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use strata_tsdb::block::ChunkData;
    use strata_tsdb::chunkenc::Encoding;

    use super::*;
    use crate::ShardInfo;

    fn series(name: &str, chunks: &[(i64, i64)]) -> SeriesChunks {
        SeriesChunks {
            labels: Labels::from_pairs(&[("__name__", name)]),
            chunks: chunks
                .iter()
                .map(|&(min_time, max_time)| ChunkData {
                    min_time,
                    max_time,
                    encoding: Encoding::Xor,
                    data: Default::default(),
                })
                .collect(),
        }
    }

    fn check(set: Vec<SeriesChunks>) -> Result<Vec<SeriesChunks>, StorageError> {
        SeriesSet::new(set.into_iter().map(Ok)).checked().collect()
    }

    #[test]
    fn checker_accepts_the_contract() {
        let set = vec![series("a", &[(0, 10), (11, 20)]), series("b", &[]), series("c", &[(5, 5)])];
        assert_eq!(check(set.clone()).unwrap(), set);
        assert!(check(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn checker_refuses_what_breaks_it() {
        let cases = [
            ("unsorted", vec![series("b", &[]), series("a", &[])]),
            ("duplicate", vec![series("a", &[]), series("a", &[])]),
            ("overlapping chunks", vec![series("a", &[(0, 10), (10, 20)])]),
            ("chunks out of order", vec![series("a", &[(20, 30), (0, 10)])]),
            ("inverted chunk", vec![series("a", &[(10, 0)])]),
        ];
        for (name, set) in cases {
            let mut it = SeriesSet::new(set.into_iter().map(Ok)).checked();
            let results: Vec<_> = it.by_ref().collect();
            assert!(matches!(results.last(), Some(Err(StorageError::Contract(_)))), "{name}: {results:?}");
            assert!(it.next().is_none(), "{name}: ends after the error");
        }
    }

    #[test]
    fn local_answers_apply_shard_skip_chunks_and_limit() {
        let all: Vec<SeriesChunks> = (0..50).map(|i| series(&format!("m{i:02}"), &[(0, 1)])).collect();
        let run = |req: &SelectRequest| -> Vec<SeriesChunks> {
            SeriesSet::from_local(all.clone().into_iter().map(Ok), req).collect::<Result<_, _>>().unwrap()
        };
        let plain = SelectRequest::new(Vec::new(), 0, 1);
        assert_eq!(run(&plain), all);

        let limited = SelectRequest { limit: 7, ..plain.clone() };
        assert_eq!(run(&limited), all[..7]);

        let labels_only = SelectRequest { skip_chunks: true, ..plain.clone() };
        assert!(run(&labels_only).iter().all(|s| s.chunks.is_empty()));
        assert_eq!(run(&labels_only).len(), all.len());

        let mut seen = Vec::new();
        for shard_index in 0..3 {
            let shard = ShardInfo { shard_index, total_shards: 3, by: false, labels: Vec::new() };
            let got = run(&SelectRequest { shard: Some(shard), ..plain.clone() });
            assert!(got.iter().all(|s| s.labels.hash() % 3 == shard_index));
            seen.extend(got);
        }
        seen.sort_by(|a, b| a.labels.cmp(&b.labels));
        assert_eq!(seen, all, "the shards partition the series");
    }

    #[test]
    fn warnings_added_while_reading_are_seen_after_it() {
        let warnings = Warnings::default();
        let producer = warnings.clone();
        let items = (0..3).map(move |i| {
            if i == 1 {
                producer.add("store b did not answer".into());
                producer.add("store b did not answer".into());
            }
            Ok(series(&format!("m{i}"), &[]))
        });
        let mut set = SeriesSet::with_warnings(items, warnings).checked();
        assert!(set.warnings().is_empty());
        assert_eq!(set.by_ref().count(), 3);
        assert_eq!(set.warnings(), ["store b did not answer"]);
    }

    #[test]
    fn local_errors_end_the_set() {
        let items =
            vec![Ok(series("a", &[])), Err(strata_tsdb::Error::CorruptChunk("bad".into())), Ok(series("b", &[]))];
        let got: Vec<_> = SeriesSet::from_local(items.into_iter(), &SelectRequest::default()).collect();
        assert!(matches!(got[..], [Ok(_), Err(StorageError::Tsdb(_))]), "{got:?}");
    }
}
