//! Persistent blocks: chunk segments, meta.json, tombstones, and reading blocks back.
pub mod meta;

use crate::chunkenc::Encoding;
use crate::labels::Labels;

/// One encoded chunk with the time range of its samples (both ends inclusive).
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkData {
    pub min_time: i64,
    pub max_time: i64,
    pub encoding: Encoding,
    pub data: Vec<u8>,
}

/// A series with its chunks, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesChunks {
    pub labels: Labels,
    pub chunks: Vec<ChunkData>,
}
