//! The crate's error type.

use std::path::PathBuf;

/// Everything that can fail in strata-shipper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The objstore YAML is unreadable, names an unknown type or field, or has a bad value.
    #[error("objstore config {source_name}: {message}")]
    Config { source_name: String, message: String },
    /// A bucket operation failed.
    #[error("bucket {op} {key}: {source}")]
    Bucket {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tsdb(#[from] strata_tsdb::Error),
    /// Refused before any work: the shipper needs external labels to name the block's stream.
    #[error("{0}")]
    InvalidShipper(String),
    /// Some blocks were not uploaded in a sync; the rest were, and are recorded as uploaded.
    #[error("shipper sync: {failed} block(s) failed to upload ({uploaded} uploaded); first error: {first_error}")]
    SyncIncomplete { uploaded: usize, failed: usize, first_error: String },
    /// An object in the bucket is not what the Thanos layout says it must be.
    #[error("bucket object {key}: {reason}")]
    BadObject { key: String, reason: String },
    #[error("block {0} not found in the bucket (no meta.json)")]
    BlockNotFound(ulid::Ulid),
    /// A cloud bucket without credentials: none in the config or the environment, and the
    /// instance metadata endpoint, asked last, gave none either.
    #[error(
        "no {store} credentials found. Looked in {searched}, and asked the instance metadata endpoint \
         {endpoint}, which gave none ({cause}).{note}"
    )]
    NoCredentials { store: &'static str, searched: &'static str, endpoint: String, cause: String, note: &'static str },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    pub(crate) fn bucket(op: &'static str, key: impl ToString, source: object_store::Error) -> Self {
        Error::Bucket { op, key: key.to_string(), source }
    }

    pub(crate) fn config(source_name: &str, message: impl Into<String>) -> Self {
        Error::Config { source_name: source_name.to_owned(), message: message.into() }
    }

    /// Whether trying the same bucket operation again may succeed: network trouble and server
    /// errors (object_store reports those as `Generic`), as opposed to missing objects, refused
    /// permissions, invalid requests or local file errors.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Bucket { source: object_store::Error::Generic { .. }, .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
