//! The read interface every data holder implements and every reader consumes: matchers, a time
//! range and hints in; series of encoded chunks out, sorted by labels, streamed. The local TSDB
//! implements it here; the receiver (all tenants) and, later, StoreAPI servers, proxies,
//! sidecars and rulers implement or consume it without depending on each other.
//!
//! The contract of every [`SeriesSet`]:
//! - series come in strictly increasing label order (one series per label set);
//! - a series' chunks are in time order and do not overlap; they may hold samples outside the
//!   requested range;
//! - chunk bytes are passed through as the source holds them, never decoded and re-encoded on
//!   the way.

mod db;
mod error;
mod request;
mod series;

pub use error::{Limit, StorageError};
pub use request::{Aggr, Grouping, LabelsRequest, PartialResponse, ReadScope, SelectHints, SelectRequest, ShardInfo};
pub use series::{SeriesSet, Warnings};
pub use strata_tsdb::block::{ChunkData, SeriesChunks};

/// A source of series.
pub trait Storage: Send + Sync {
    /// The series matching every matcher of `req` with samples in its time range, in its shard,
    /// at most `req.limit` of them (see [`SelectRequest`]). Errors found before the first series
    /// (a bad matcher, an unreadable index) come here; later ones end the set.
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError>;
    /// Label names of the matching series (of all series without matchers), sorted.
    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError>;
    /// Values of label `name` among the matching series, sorted.
    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError>;
}

/// Sorted label names or values, and what went wrong on the way without failing the read
/// (a store that did not answer under [`PartialResponse::Warn`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelsAnswer {
    pub values: Vec<String>,
    pub warnings: Vec<String>,
}

impl From<Vec<String>> for LabelsAnswer {
    fn from(values: Vec<String>) -> Self {
        LabelsAnswer { values, warnings: Vec::new() }
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

/// No metadata: for a process that holds none (a querier, until it asks its stores).
pub struct NoMetadata;

impl MetadataSource for NoMetadata {
    fn metadata(&self, _metric: Option<&str>) -> Vec<(String, Vec<MetricMetadata>)> {
        Vec::new()
    }
}

/// A source of metric metadata. It lives here, beside [`Storage`], so that the query API can
/// read what the receiver (or later a remote store) keeps without depending on it.
pub trait MetadataSource: Send + Sync {
    /// Distinct metadata by metric family name, sorted by name; only `metric` when given.
    fn metadata(&self, metric: Option<&str>) -> Vec<(String, Vec<MetricMetadata>)>;
}
