//! Persistent blocks: chunk segments, the index, tombstones and meta.json, written and read in
//! the layout Prometheus and Thanos use.
//!
//! A block directory is named by its ULID and holds `meta.json`, `index`, `tombstones` and
//! `chunks/000001…`. Blocks are built in `<ulid>.tmp-for-creation` and renamed into place, so
//! a directory with a ULID name is always complete; its files never change afterwards, which is
//! what makes reading them through memory maps safe.

mod chunks;
pub mod meta;
mod reader;
mod tombstones;
mod writer;

use std::path::Path;

use bytes::Bytes;
use ulid::Ulid;

pub use chunks::{chunk_record_len, decode_chunk, segment_name, ChunkReader, ChunkWriter, DEFAULT_SEGMENT_SIZE};
pub use meta::{BlockCompaction, BlockMeta};
pub use reader::{Block, BlockSeries, ScanPages};
pub use tombstones::{read_tombstones, write_empty_tombstones, Tombstone, TOMBSTONES_FILENAME};
pub use writer::BlockWriter;

use crate::chunkenc::Encoding;
use crate::labels::Labels;
use crate::{Error, Result};

/// Name of the chunk segment directory in a block.
pub const CHUNKS_DIR: &str = "chunks";
/// Suffix of a block directory still being written.
const TMP_FOR_CREATION: &str = ".tmp-for-creation";
/// Suffixes of directories an interrupted write or delete leaves behind.
const TMP_SUFFIXES: [&str; 3] = [TMP_FOR_CREATION, ".tmp-for-deletion", ".tmp"];

/// One chunk with the time range of its samples (both ends inclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkData {
    pub min_time: i64,
    pub max_time: i64,
    pub encoding: Encoding,
    /// The chunk bytes after the encoding byte. Chunks read from a block share the segment's
    /// memory map instead of copying it.
    pub data: Bytes,
}

/// A series and some of its chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesChunks {
    pub labels: Labels,
    pub chunks: Vec<ChunkData>,
}

/// Removes the `<ulid>.tmp-for-creation`, `<ulid>.tmp-for-deletion` and `<ulid>.tmp`
/// directories that interrupted block writes and deletions leave in a TSDB directory, logging
/// each; returns how many. As in Prometheus, only names whose stem is a ULID are touched.
pub fn remove_tmp_dirs(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_tmp = TMP_SUFFIXES
            .iter()
            .any(|suffix| name.strip_suffix(suffix).is_some_and(|stem| Ulid::from_string(stem).is_ok()));
        if !is_tmp || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        tracing::info!(dir = %path.display(), "removing leftover temporary block directory");
        std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))?;
        removed += 1;
    }
    Ok(removed)
}

/// Opens every block (ULID-named directory) in `dir`, sorted by min time. A block that fails
/// to open is logged with its ULID and skipped.
pub fn open_blocks(dir: &Path) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(ulid) = name.to_str().and_then(|n| Ulid::from_string(n).ok()) else { continue };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match Block::open(&entry.path()) {
            Ok(b) => blocks.push(b),
            Err(error) => tracing::error!(block = %ulid, %error, "skipping a block that cannot be opened"),
        }
    }
    blocks.sort_by_key(|b| (b.meta().min_time, b.meta().ulid));
    Ok(blocks)
}
