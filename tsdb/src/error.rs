//! The crate's error type.

use std::path::PathBuf;

use crate::labels::LabelsError;

/// Everything that can fail in strata-tsdb.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Labels(#[from] LabelsError),
    #[error("corrupt chunk: {0}")]
    CorruptChunk(String),
    #[error("invalid matcher: {0}")]
    InvalidMatcher(String),
    #[error("corrupt WAL record: {0}")]
    CorruptRecord(String),
    #[error("invalid block metadata {path}: {reason}")]
    BadMeta { path: PathBuf, reason: String },
    #[error("corrupt WAL in {segment}: {reason} at offset {offset}")]
    CorruptWal { segment: PathBuf, offset: u64, reason: String },
    /// A block file (index, chunk segment, tombstones) that does not parse; the path names the block.
    #[error("corrupt {path}: {reason}")]
    CorruptFile { path: PathBuf, reason: String },
    #[error("{path}: unsupported {what}")]
    Unsupported { path: PathBuf, what: String },
    /// Series, chunks or symbols handed to a block or index writer that break the format's rules.
    #[error("invalid block input: {0}")]
    InvalidBlockInput(String),
    /// A directory that does not hold what was asked for (it is not a TSDB directory, the
    /// block is not there, there are no blocks yet), with what it holds instead.
    #[error("{path}: {message}")]
    NotFound { path: PathBuf, message: String },
}

impl Error {
    /// Wraps an I/O error with what was being done and to which file.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
