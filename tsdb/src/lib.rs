//! Local time-series storage in the Prometheus TSDB formats: labels and matchers, the XOR chunk
//! codec, the in-memory head, and the write-ahead log it is rebuilt from.

pub mod chunkenc;
pub mod error;
pub mod labels;
pub mod matchers;
pub mod wal;

pub use error::{Error, Result};
pub use labels::{Labels, LabelsError};
