//! The read interface every queryable source offers: matchers and a time range in, series of
//! chunks out, sorted by labels. The local TSDB implements it here; the receiver (all tenants)
//! and, later, remote StoreAPI endpoints implement it too, and the PromQL engine reads through it.

use crate::block::SeriesChunks;
use crate::db::Db;
use crate::matchers::Matcher;
use crate::Result;

/// Extra facts about a selection that a storage may use (e.g. to pick a downsampled
/// resolution); milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelectHints {
    /// Evaluation step of the query (0 for instant queries).
    pub step: i64,
    /// Range of the range vector selector, 0 for instant vector selectors.
    pub range: i64,
}

/// A source of series.
pub trait Storage: Send + Sync {
    /// Series matching every matcher with samples in `[mint, maxt]`, sorted by labels, chunks in
    /// time order and not overlapping. Chunks may hold samples outside the range.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64, hints: SelectHints) -> Result<Vec<SeriesChunks>>;
    /// Label names of the matching series (of all series without matchers), sorted.
    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>>;
    /// Values of `name` among the matching series, sorted.
    fn label_values(&self, name: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>>;
}

impl Storage for Db {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64, _hints: SelectHints) -> Result<Vec<SeriesChunks>> {
        Db::select(self, matchers, mint, maxt)
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        Db::label_names(self, matchers, mint, maxt)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        Db::label_values(self, name, matchers, mint, maxt)
    }
}

/// What a sender said about a metric family (from remote-write metadata), as the Prometheus API
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricMetadata {
    /// Prometheus's spelling: `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`,
    /// `info`, `stateset` or `unknown`.
    pub metric_type: String,
    pub help: String,
    pub unit: String,
}

/// A source of metric metadata. It lives here, beside [`Storage`], so that the query API can
/// read what the receiver (or later a remote store) keeps without depending on it.
pub trait MetadataSource: Send + Sync {
    /// Distinct metadata by metric family name, sorted by name; only `metric` when given.
    fn metadata(&self, metric: Option<&str>) -> Vec<(String, Vec<MetricMetadata>)>;
}
