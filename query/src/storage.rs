//! What the engine reads from: matchers and a time range in, series of chunks out, sorted by
//! labels. The local TSDB implements it here; remote StoreAPI endpoints will implement it too.

use strata_tsdb::block::SeriesChunks;
use strata_tsdb::db::Db;
use strata_tsdb::matchers::Matcher;

/// Why the storage could not answer.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

impl From<strata_tsdb::Error> for StorageError {
    fn from(e: strata_tsdb::Error) -> Self {
        StorageError(e.to_string())
    }
}

/// Extra facts about a selection that a storage may use (e.g. to pick a downsampled
/// resolution); all times in milliseconds.
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
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64, hints: SelectHints) -> Result<Vec<SeriesChunks>, StorageError>;
    /// Label names of the matching series (all series without matchers), sorted.
    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>, StorageError>;
    /// Values of `name` among the matching series, sorted.
    fn label_values(&self, name: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>, StorageError>;
}

impl Storage for Db {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64, _hints: SelectHints) -> Result<Vec<SeriesChunks>, StorageError> {
        Ok(Db::select(self, matchers, mint, maxt)?)
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>, StorageError> {
        Ok(Db::label_names(self, matchers, mint, maxt)?)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>, StorageError> {
        Ok(Db::label_values(self, name, matchers, mint, maxt)?)
    }
}
