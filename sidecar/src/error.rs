//! The crate's error type.

use strata_storage::StorageError;

/// What talking to Prometheus, reading its answers or shipping its blocks can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// `--prometheus.url` is not an `http://host:port[/prefix]` URL.
    #[error("--prometheus.url {url:?}: {message}")]
    InvalidUrl { url: String, message: String },
    /// Prometheus could not be reached or the connection broke.
    #[error("Prometheus at {url} unreachable ({what}): {message}")]
    Unreachable { url: String, what: String, message: String },
    /// Prometheus answered with a status other than 2xx.
    #[error("Prometheus at {url} answered {what} with {status}: {body}")]
    Status { url: String, what: String, status: u16, body: String },
    /// An answer of Prometheus that cannot be read as the API documents it.
    #[error("Prometheus at {url}: cannot read its answer to {what}: {message}")]
    BadAnswer { url: String, what: String, message: String },
    /// A frame of a streamed remote-read answer that breaks the framing.
    #[error("remote read frame: {0}")]
    Frame(#[from] crate::frame::FrameError),
    /// Prometheus runs with settings the sidecar cannot work with; the message says what to set.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Shipper(#[from] strata_shipper::Error),
}

/// Prometheus's refusals of a request's content (a bad matcher, a bad time) are the caller's
/// mistake; everything else means the data cannot be read now.
impl From<SidecarError> for StorageError {
    fn from(e: SidecarError) -> Self {
        match &e {
            SidecarError::Status { status: 400 | 422, .. } => StorageError::InvalidArgument(e.to_string()),
            _ => StorageError::Unavailable(e.to_string()),
        }
    }
}
