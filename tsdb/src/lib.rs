//! Local time-series storage in the Prometheus TSDB formats: labels and matchers, the XOR chunk
//! codec, the in-memory head, the write-ahead log it is rebuilt from, and the TSDB directory
//! that ties them together.

pub mod block;
pub mod chunkenc;
pub mod compact;
pub mod db;
pub mod dedup;
pub mod downsample;
pub(crate) mod encoding;
pub mod error;
pub mod fileutil;
pub mod gotext;
pub mod head;
pub mod index;
pub mod inspect;
pub mod labels;
pub mod matchers;
pub mod postings;
pub mod querier;
pub mod wal;

pub use error::{Error, Result};
pub use labels::{Labels, LabelsError};
