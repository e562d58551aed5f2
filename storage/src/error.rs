//! The crate's error type: what a reader needs to tell a caller's mistake, a limit and a fault
//! apart (a StoreAPI server maps them to InvalidArgument, ResourceExhausted and Internal).

use std::fmt;

/// Everything a [`Storage`](crate::Storage) call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The request cannot be served as asked: a matcher whose regex does not compile, a field
    /// out of range. The message says what, for the caller.
    #[error("{0}")]
    InvalidArgument(String),
    /// A limit of the storage's was reached; answering would have taken more than it allows.
    #[error("{limit} limit of {max} exceeded")]
    LimitExceeded { limit: Limit, max: u64 },
    /// A series set that breaks the interface's contract (see [`SeriesSet::checked`](crate::SeriesSet::checked)).
    #[error("series set breaks the storage contract: {0}")]
    Contract(String),
    /// A store of a fan-out failed, timed out or could not be reached; the message names it.
    #[error("{0}")]
    Unavailable(String),
    /// A failure of the local TSDB: I/O, a corrupt block or WAL.
    #[error(transparent)]
    Tsdb(strata_tsdb::Error),
}

/// Which limit [`StorageError::LimitExceeded`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Series in one answer.
    Series,
    /// Samples in one answer's chunks.
    Samples,
    /// Bytes of chunk data in one answer.
    ChunkBytes,
    /// Bytes of chunk data all reads of a process hold at once (a store gateway's
    /// `--chunk-pool-size`).
    ChunkPool,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Series => "series",
            Limit::Samples => "samples",
            Limit::ChunkBytes => "chunk bytes",
            Limit::ChunkPool => "chunk pool bytes",
        })
    }
}

/// A matcher that does not compile is the caller's mistake; everything else the TSDB reports is
/// a fault of the storage.
impl From<strata_tsdb::Error> for StorageError {
    fn from(e: strata_tsdb::Error) -> Self {
        match e {
            strata_tsdb::Error::InvalidMatcher(_) => StorageError::InvalidArgument(e.to_string()),
            e => StorageError::Tsdb(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use strata_tsdb::matchers::{MatchOp, Matcher};

    use super::*;

    #[test]
    fn bad_regex_is_an_invalid_argument() {
        let Err(e) = Matcher::new(MatchOp::Regex, "job", "(") else { panic!("regex compiled") };
        let e = StorageError::from(e);
        assert!(matches!(e, StorageError::InvalidArgument(_)), "{e:?}");
        assert!(e.to_string().contains("invalid matcher"), "{e}");
    }

    #[test]
    fn io_failure_is_a_tsdb_error() {
        let e = StorageError::from(strata_tsdb::Error::io("open", "index", std::io::Error::other("gone")));
        assert!(matches!(e, StorageError::Tsdb(_)), "{e:?}");
    }

    #[test]
    fn limit_names_itself() {
        let e = StorageError::LimitExceeded { limit: Limit::Series, max: 1000 };
        assert_eq!(e.to_string(), "series limit of 1000 exceeded");
    }
}
