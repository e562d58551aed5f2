//! What the store server tests share: an in-memory storage with the read interface's semantics.

#![allow(dead_code)]

use std::collections::BTreeSet;

use parking_lot::Mutex;
use strata_storage::{
    LabelsAnswer, LabelsRequest, ReadScope, SelectRequest, SeriesChunks, SeriesSet, Storage, StorageError,
};
use strata_tsdb::block::ChunkData;
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::Matcher;

/// An XOR chunk of `n` samples one second apart from `t0`, valued `t0`.
pub fn chunk(t0: i64, n: i64) -> ChunkData {
    let mut app = XorAppender::new();
    for i in 0..n {
        app.append(t0 + i * 1000, t0 as f64);
    }
    ChunkData { min_time: t0, max_time: t0 + (n - 1) * 1000, encoding: Encoding::Xor, data: app.into_bytes().into() }
}

/// Series held in memory, sorted; reads filter them as a TSDB does (a missing label matches as
/// ""), and remember the scope of the last read.
#[derive(Default)]
pub struct MemStorage {
    series: Vec<SeriesChunks>,
    warnings: Vec<String>,
    pub last_scope: Mutex<Option<ReadScope>>,
}

impl MemStorage {
    pub fn new(mut series: Vec<SeriesChunks>) -> Self {
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        series.dedup_by(|a, b| a.labels == b.labels);
        MemStorage { series, ..MemStorage::default() }
    }

    /// Every select answers with these warnings too.
    pub fn with_warnings(self, warnings: &[&str]) -> Self {
        MemStorage { warnings: warnings.iter().map(|w| w.to_string()).collect(), ..self }
    }

    pub fn series(&self) -> &[SeriesChunks] {
        &self.series
    }

    fn matching<'a>(
        &'a self,
        matchers: &'a [Matcher],
        mint: i64,
        maxt: i64,
        scope: &ReadScope,
    ) -> impl Iterator<Item = &'a SeriesChunks> + 'a {
        *self.last_scope.lock() = Some(scope.clone());
        self.series.iter().filter(move |s| {
            matchers.iter().all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
                && (s.chunks.is_empty() || s.chunks.iter().any(|c| c.max_time >= mint && c.min_time <= maxt))
        })
    }
}

impl Storage for MemStorage {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        let found: Vec<SeriesChunks> =
            self.matching(&req.matchers, req.min_time, req.max_time, &req.scope).cloned().collect();
        let set = SeriesSet::from_local(found.into_iter().map(Ok), req);
        let warnings = set.warnings_handle();
        for w in &self.warnings {
            warnings.add(w.clone());
        }
        Ok(set)
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let names: BTreeSet<String> = self
            .matching(&req.matchers, req.min_time, req.max_time, &req.scope)
            .flat_map(|s| s.labels.iter().map(|(n, _)| n.to_owned()).collect::<Vec<_>>())
            .collect();
        let mut names: Vec<String> = names.into_iter().collect();
        req.truncate(&mut names);
        Ok(names.into())
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let values: BTreeSet<String> = self
            .matching(&req.matchers, req.min_time, req.max_time, &req.scope)
            .filter_map(|s| s.labels.get(name).map(str::to_owned))
            .collect();
        let mut values: Vec<String> = values.into_iter().collect();
        req.truncate(&mut values);
        Ok(values.into())
    }
}

/// A set's series, failing the test on an error or a breach of the set contract.
pub fn collect(set: SeriesSet) -> Vec<SeriesChunks> {
    set.checked().collect::<Result<_, _>>().expect("a valid series set")
}

/// The label set of `pairs`.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}
