//! An opened block: its meta, memory-mapped index and chunks, and tombstones.

use std::collections::BTreeSet;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use super::meta::BlockMeta;
use super::tombstones::{read_tombstones, Tombstone};
use super::{ChunkData, ChunkReader, SeriesChunks, CHUNKS_DIR};
use crate::index::{ChunkMeta, IndexReader, INDEX_FILENAME};
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

    /// Releases the pages of the index and chunk segments read so far from the process's
    /// resident memory ([`crate::fileutil::release_pages`]).
    pub fn release_pages(&self) {
        self.index.release_pages();
        self.chunks.release_pages();
    }

    /// The series matching every matcher (an empty list matches all) that have at least one
    /// chunk overlapping `[mint, maxt]` (inclusive), sorted by labels, with those chunks.
    /// Tombstones are not applied. See [`BlockSeries`] for reading them one at a time.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<SeriesChunks>> {
        BlockSeries::new(self, matchers, mint, maxt, false)?.collect()
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

/// Paces the release of a block's pages in a scan that reads the whole block once
/// (compaction, downsampling, verification): without it, every page read stays mapped and the
/// process's resident memory grows to the size of the blocks it reads, though each page is
/// needed once. A release every few thousand series bounds that to a few megabytes per block.
#[derive(Debug, Default)]
pub struct ScanPages {
    since_release: u32,
}

impl ScanPages {
    /// Series read between two releases.
    const SERIES_PER_RELEASE: u32 = 4096;

    /// Counts a series read; true when the pages read so far are to be released.
    pub fn series_read(&mut self) -> bool {
        self.since_release += 1;
        if self.since_release < Self::SERIES_PER_RELEASE {
            return false;
        }
        self.since_release = 0;
        true
    }
}

/// The series of a block that match a selection, read from the index one at a time, in label
/// order, when the iterator is advanced: only the postings are read up front. `B` is how the
/// block is held (`&Block`, or `Arc<Block>` for an iterator that outlives the caller). Chunk
/// data is a view of the block's memory map. After an error the iterator ends.
pub struct BlockSeries<B> {
    block: B,
    /// Series refs left to read; they ascend in file order, which is label order.
    refs: std::vec::IntoIter<u64>,
    mint: i64,
    maxt: i64,
    skip_chunks: bool,
    metas: Vec<ChunkMeta>,
    /// Set for a scan that reads the block once.
    scan: Option<ScanPages>,
}

impl<B: Deref<Target = Block>> BlockSeries<B> {
    /// The series matching every matcher with at least one chunk overlapping `[mint, maxt]`;
    /// with `skip_chunks` their chunk lists are left empty (and no chunk is read).
    pub fn new(block: B, matchers: &[Matcher], mint: i64, maxt: i64, skip_chunks: bool) -> Result<Self> {
        let refs = postings_for_matchers(&block.index, matchers)?.into_iter();
        Ok(BlockSeries { block, refs, mint, maxt, skip_chunks, metas: Vec::new(), scan: None })
    }

    /// Marks this as the one read of the block (compaction, downsampling): the pages read are
    /// released from memory as it goes ([`ScanPages`]). The chunks already returned stay
    /// valid; their pages are read again if they are used after a release.
    pub fn read_once(mut self) -> Self {
        self.scan = Some(ScanPages::default());
        self
    }

    /// The series at `r` if it has a chunk in range.
    fn read(&mut self, r: u64) -> Result<Option<SeriesChunks>> {
        let labels = self.block.index.series(r, &mut self.metas)?;
        let (mint, maxt) = (self.mint, self.maxt);
        let mut in_range = self.metas.iter().filter(|m| m.min_time <= maxt && m.max_time >= mint).peekable();
        if in_range.peek().is_none() {
            return Ok(None);
        }
        if self.skip_chunks {
            return Ok(Some(SeriesChunks { labels, chunks: Vec::new() }));
        }
        let mut chunks = Vec::new();
        for m in in_range {
            let (encoding, data) = self.block.chunks.chunk(m.chunk_ref)?;
            chunks.push(ChunkData { min_time: m.min_time, max_time: m.max_time, encoding, data });
        }
        Ok(Some(SeriesChunks { labels, chunks }))
    }
}

impl<B: Deref<Target = Block>> Iterator for BlockSeries<B> {
    type Item = Result<SeriesChunks>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(r) = self.refs.next() {
            if self.scan.as_mut().is_some_and(ScanPages::series_read) {
                self.block.release_pages();
            }
            match self.read(r) {
                Ok(Some(s)) => return Some(Ok(s)),
                Ok(None) => {}
                Err(e) => {
                    self.refs = Vec::new().into_iter();
                    return Some(Err(e));
                }
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.refs.len()))
    }
}
