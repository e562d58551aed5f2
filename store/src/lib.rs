//! The Thanos StoreAPI (`thanos.Store`, `thanos.info.Info`) over the read interface of
//! `strata-storage`: what a store is ([`StoreInfo`]), the conversions between the wire messages
//! and the read interface ([`convert`]), the gRPC server that serves any [`Store`], and the
//! proxy that fans a read out to many stores, local or remote, and merges their answers.

pub mod bucket;
pub mod convert;
pub mod endpoints;
pub mod external;
pub mod local;
pub mod proxy;
pub mod remote;
pub mod server;

use std::sync::Arc;

use parking_lot::Mutex;
use strata_storage::{LabelsAnswer, LabelsRequest, SelectRequest, SeriesSet, Storage, StorageError, Warnings};
use strata_tsdb::labels::Labels;
use strata_tsdb::querier::SeriesIter;
pub use tokio_util::sync::CancellationToken;

/// A source of series that can say what it holds: the Info API's view of it.
pub trait Store: Storage {
    /// What the store holds now; cheap enough to call for every Info request and every
    /// fan-out (time range and external labels prune stores from a read).
    fn info(&self) -> StoreInfo;

    /// This store for reads that `cancel` may stop before they end (a fan-out that gave up on
    /// the store, or whose reader went away): once it is cancelled, a call waiting on a peer
    /// returns an error at once, and so does a series set waiting for its next series. `None`
    /// (the default) for a store whose reads wait on nothing but local work, for which dropping
    /// its set is enough.
    fn with_cancel(&self, _cancel: CancellationToken) -> Option<Arc<dyn Store>> {
        None
    }
}

/// What a store tells about itself (Thanos's `InfoResponse` with its `StoreInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// Thanos's component name: `receive`, `query`, `store`, `sidecar`, `rule`.
    pub component: Component,
    /// The external label sets of the data; every series carries one of them.
    pub label_sets: Vec<Labels>,
    /// Oldest and newest sample time (ms) the store may hold; `i64::MAX`/`i64::MIN` when empty
    /// is not known, Thanos's convention for "nothing yet".
    pub min_time: i64,
    pub max_time: i64,
    /// One entry per TSDB the store holds (per tenant on a receiver).
    pub tsdb_infos: Vec<TsdbInfo>,
}

/// One TSDB of a store: its external labels and time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsdbInfo {
    pub labels: Labels,
    pub min_time: i64,
    pub max_time: i64,
}

/// The kinds of StoreAPI endpoint, as Thanos names them in `InfoResponse.ComponentType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    Query,
    Receive,
    Rule,
    Sidecar,
    Store,
}

impl Component {
    /// Thanos's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Query => "query",
            Component::Receive => "receive",
            Component::Rule => "rule",
            Component::Sidecar => "sidecar",
            Component::Store => "store",
        }
    }

    /// The component Thanos's name stands for.
    pub fn parse(name: &str) -> Option<Component> {
        Some(match name {
            "query" => Component::Query,
            "receive" => Component::Receive,
            "rule" => Component::Rule,
            "sidecar" => Component::Sidecar,
            "store" => Component::Store,
            _ => return None,
        })
    }
}

/// The answer Thanos's TSDB store gives a series request whose matchers are all on external
/// labels (or that has none): the TSDB would have to read every series.
pub fn no_matchers_error() -> StorageError {
    StorageError::InvalidArgument("no matchers specified (excluding external labels)".to_owned())
}

/// Merges sets of the read interface, each sorted, into one sorted set with
/// [`strata_tsdb::querier::merge_series_sets`]: series with equal labels become one (earlier sets
/// win samples at equal timestamps), and the warnings of every set are the merged set's once it
/// has ended. An error of any set ends the merged set with that error.
pub fn merge_sorted_sets(mut sets: Vec<SeriesSet>) -> SeriesSet {
    if sets.len() == 1 {
        if let Some(only) = sets.pop() {
            return only;
        }
    }
    // The tsdb merge carries tsdb errors: an input's own error waits here while a stand-in
    // travels through the merge, and takes its place again on the way out.
    let failed: Arc<Mutex<Option<StorageError>>> = Arc::default();
    let inputs: Vec<Warnings> = sets.iter().map(SeriesSet::warnings_handle).collect();
    let iters: Vec<SeriesIter> = sets
        .into_iter()
        .map(|set| {
            let failed = failed.clone();
            Box::new(set.map(move |s| {
                s.map_err(|e| {
                    let stand_in = strata_tsdb::Error::CorruptChunk(e.to_string());
                    *failed.lock() = Some(e);
                    stand_in
                })
            })) as SeriesIter
        })
        .collect();
    let merged = strata_tsdb::querier::merge_series_sets(iters);
    let warnings = Warnings::default();
    let out = warnings.clone();
    let mut ended = false;
    let series = merged
        .map(move |s| s.map_err(|e| failed.lock().take().unwrap_or_else(|| StorageError::from(e))))
        .chain(std::iter::from_fn(move || {
            if !ended {
                ended = true;
                for w in inputs.iter().flat_map(Warnings::get) {
                    out.add(w);
                }
            }
            None
        }));
    SeriesSet::with_warnings(series, warnings)
}

/// The series of every storage, merged (sorted, one series per label set), at most `req.limit`.
pub fn merged_select(
    stores: impl Iterator<Item = Arc<dyn Storage>>,
    req: &SelectRequest,
) -> Result<SeriesSet, StorageError> {
    let sets = stores.map(|s| s.select(req)).collect::<Result<Vec<_>, _>>()?;
    Ok(merge_limited(sets, req.limit))
}

/// The answers of several storages to one request, merged, at most `limit` (0 = all).
pub fn merge_limited(sets: Vec<SeriesSet>, limit: usize) -> SeriesSet {
    let merged = merge_sorted_sets(sets);
    if limit == 0 {
        return merged;
    }
    // Each set holds its first `limit` series, so the merge's first `limit` are among them.
    let warnings = merged.warnings_handle();
    SeriesSet::with_warnings(merged.take(limit), warnings)
}

/// The names or values `ask` finds in every storage: sorted, distinct, at most `req.limit`.
pub fn merged_labels(
    stores: impl Iterator<Item = Arc<dyn Storage>>,
    req: &LabelsRequest,
    ask: impl Fn(&dyn Storage) -> Result<LabelsAnswer, StorageError>,
) -> Result<LabelsAnswer, StorageError> {
    let mut values = std::collections::BTreeSet::new();
    let mut warnings = Vec::new();
    for store in stores {
        let answer = ask(store.as_ref())?;
        values.extend(answer.values);
        for w in answer.warnings {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
    let mut values = values.into_iter().collect();
    req.truncate(&mut values);
    Ok(LabelsAnswer { values, warnings })
}
