//! The crate's error type.

use std::path::PathBuf;

use ulid::Ulid;

/// Everything that can fail in strata-compact.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bucket operation (list, download, upload, mark, delete) failed; the next iteration
    /// tries again.
    #[error(transparent)]
    Bucket(#[from] strata_shipper::Error),
    /// Reading or writing a block on the local disk failed.
    #[error(transparent)]
    Tsdb(#[from] strata_tsdb::Error),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Something the compactor must not work around: blocks of one group overlap without
    /// vertical compaction, or a block it wrote fails verification. Compaction stops
    /// (`thanos_compact_halted` = 1) until an operator has looked; nothing is deleted.
    #[error("halting compaction of group {group}: {reason}")]
    Halt { group: String, reason: String },
    /// A block's index breaks an invariant of the format.
    #[error("block {block}: index not healthy: {reason}")]
    Index { block: Ulid, reason: String },
    /// A `tools bucket` request that cannot be carried out as given (a block not in the
    /// bucket, an unknown marker); nothing was changed.
    #[error("{0}")]
    Tool(String),
    /// A configuration file or flag value that does not parse.
    #[error("{file}: {reason}")]
    Config { file: String, reason: String },
    /// A blocking task (merge, verification) did not finish.
    #[error("{0} task failed: {1}")]
    Task(&'static str, String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    /// Whether this error halts the compactor.
    pub fn is_halt(&self) -> bool {
        matches!(self, Error::Halt { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
