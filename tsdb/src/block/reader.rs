//! An opened block: its meta, memory-mapped index and chunks, and tombstones.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::meta::BlockMeta;
use super::tombstones::{read_tombstones, Tombstone};
use super::{ChunkData, ChunkReader, SeriesChunks, CHUNKS_DIR};
use crate::index::{IndexReader, INDEX_FILENAME};
use crate::matchers::Matcher;
use crate::postings::{overlaps, postings_for_matchers, PostingsSource};
use crate::Result;

/// A block opened for reading. Every file path in its errors contains the block directory,
/// whose name is the ULID.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
    tombstones: Vec<Tombstone>,
}

impl Block {
    /// Reads meta.json, maps the index and the chunk segments, reads tombstones (a missing
    /// file means none).
    pub fn open(dir: &Path) -> Result<Block> {
        let meta = BlockMeta::read(dir)?;
        let index = IndexReader::open(&dir.join(INDEX_FILENAME))?;
        let chunks = ChunkReader::open(&dir.join(CHUNKS_DIR))?;
        let tombstones = read_tombstones(dir)?;
        Ok(Block { dir: dir.to_owned(), meta, index, chunks, tombstones })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    pub fn chunks(&self) -> &ChunkReader {
        &self.chunks
    }

    pub fn tombstones(&self) -> &[Tombstone] {
        &self.tombstones
    }

    /// The series matching every matcher (an empty list matches all) that have at least one
    /// chunk overlapping `[mint, maxt]` (inclusive), sorted by labels, with those chunks copied
    /// out. Tombstones are not applied.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<SeriesChunks>> {
        let refs = postings_for_matchers(&self.index, matchers)?;
        let mut out = Vec::new();
        let mut metas = Vec::new();
        for r in refs {
            // Refs ascend in file order, which is label order.
            let labels = self.index.series(r, &mut metas)?;
            let mut chunks = Vec::new();
            for m in metas.iter().filter(|m| m.min_time <= maxt && m.max_time >= mint) {
                let (encoding, data) = self.chunks.chunk(m.chunk_ref)?;
                chunks.push(ChunkData { min_time: m.min_time, max_time: m.max_time, encoding, data: data.to_vec() });
            }
            if !chunks.is_empty() {
                out.push(SeriesChunks { labels, chunks });
            }
        }
        Ok(out)
    }

    /// Sorted label names of the series matching the matchers; all names if there are none.
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        if matchers.is_empty() {
            return self.index.label_names();
        }
        let mut names = BTreeSet::new();
        let mut metas = Vec::new();
        for r in postings_for_matchers(&self.index, matchers)? {
            let labels = self.index.series(r, &mut metas)?;
            for (n, _) in labels.iter() {
                if !names.contains(n) {
                    names.insert(n.to_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Sorted values of label `name` among the series matching the matchers; all its values
    /// if there are none.
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        let values = self.index.label_values(name)?;
        if matchers.is_empty() {
            return Ok(values);
        }
        let selected = postings_for_matchers(&self.index, matchers)?;
        let mut out = Vec::new();
        if selected.is_empty() {
            return Ok(out);
        }
        for v in values {
            if overlaps(&self.index.postings(name, &v)?, &selected) {
                out.push(v);
            }
        }
        Ok(out)
    }
}
