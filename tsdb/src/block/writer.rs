//! Writing a block: chunks into segment files, series into the index, then tombstones and
//! meta.json, all in a temporary directory that is renamed into place when complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ulid::Ulid;

use super::chunks::{ChunkWriter, DEFAULT_SEGMENT_SIZE};
use super::meta::{BlockCompaction, BlockMeta, BlockStats, META_VERSION};
use super::tombstones::write_empty_tombstones;
use super::{ChunkData, CHUNKS_DIR, TMP_FOR_CREATION};
use crate::chunkenc::Encoding;
use crate::fileutil::sync_dir;
use crate::index::{ChunkMeta, IndexWriter, INDEX_FILENAME};
use crate::labels::Labels;
use crate::{Error, Result};

/// Writes one block. Call [`add_symbols`](Self::add_symbols) with every label name and value,
/// [`add_series`](Self::add_series) for each series in label order, then
/// [`finish`](Self::finish). Until `finish` succeeds everything is in
/// `<parent>/<ulid>.tmp-for-creation`, which [`super::remove_tmp_dirs`] cleans up after a crash.
pub struct BlockWriter {
    parent: PathBuf,
    ulid: Ulid,
    tmp: PathBuf,
    chunks: ChunkWriter,
    index: IndexWriter,
    stats: BlockStats,
    /// Earliest and latest sample time over all chunks written.
    time_range: Option<(i64, i64)>,
    metas: Vec<ChunkMeta>,
    started: Instant,
}

impl BlockWriter {
    /// Starts a block in `<parent>/<ulid>.tmp-for-creation/` with 512 MiB chunk segments.
    pub fn new(parent: &Path, ulid: Ulid) -> Result<Self> {
        Self::with_segment_size(parent, ulid, DEFAULT_SEGMENT_SIZE)
    }

    /// As [`new`](Self::new) with another chunk segment size (tests use small ones to get
    /// several segment files).
    pub fn with_segment_size(parent: &Path, ulid: Ulid, segment_size: u64) -> Result<Self> {
        let tmp = parent.join(format!("{ulid}{TMP_FOR_CREATION}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io("create directory", &tmp, e))?;
        let chunks = ChunkWriter::with_segment_size(&tmp.join(CHUNKS_DIR), segment_size)?;
        let index = IndexWriter::create(&tmp.join(INDEX_FILENAME))?;
        Ok(BlockWriter {
            parent: parent.to_owned(),
            ulid,
            tmp,
            chunks,
            index,
            stats: BlockStats::default(),
            time_range: None,
            metas: Vec::new(),
            started: Instant::now(),
        })
    }

    /// Every label name and value of the series to come; see [`IndexWriter::add_symbols`].
    pub fn add_symbols<'a>(&mut self, symbols: impl IntoIterator<Item = &'a str>) -> Result<()> {
        self.index.add_symbols(symbols)
    }

    /// Writes a series' chunks to the segment files and the series to the index. Series must
    /// come in label order; a series with no chunks is skipped.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkData]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut samples = Vec::with_capacity(chunks.len());
        for c in chunks {
            let Some(n) = c.encoding.num_samples(&c.data) else {
                return Err(Error::InvalidBlockInput(format!(
                    "series {labels}: {} chunk of {} bytes has no sample count",
                    c.encoding,
                    c.data.len()
                )));
            };
            samples.push(u64::from(n));
        }
        // Check before writing any chunk, so a refused series leaves no orphan chunks behind.
        let mut metas = std::mem::take(&mut self.metas);
        metas.clear();
        metas.extend(chunks.iter().map(|c| ChunkMeta { min_time: c.min_time, max_time: c.max_time, chunk_ref: 0 }));
        self.index.check_series(labels, &metas, false)?;
        for (meta, c) in metas.iter_mut().zip(chunks) {
            meta.chunk_ref = self.chunks.write_chunk(c.encoding, &c.data)?;
        }
        self.index.add_series(labels, &metas)?;
        self.metas = metas;

        for (c, n) in chunks.iter().zip(samples) {
            self.stats.num_samples += n;
            match c.encoding {
                // Thanos counts a downsampled chunk's windows as float samples.
                Encoding::Xor | Encoding::Aggr => self.stats.num_float_samples += n,
                Encoding::Histogram | Encoding::FloatHistogram => self.stats.num_histogram_samples += n,
                Encoding::None => {}
            }
            self.time_range = Some(match self.time_range {
                None => (c.min_time, c.max_time),
                Some((lo, hi)) => (lo.min(c.min_time), hi.max(c.max_time)),
            });
        }
        self.stats.num_chunks += chunks.len() as u64;
        self.stats.num_series += 1;
        Ok(())
    }

    /// Gives the block up: removes its temporary directory. For a writer that fails before
    /// [`finish`](Self::finish).
    pub fn abort(self) -> Result<()> {
        std::fs::remove_dir_all(&self.tmp).map_err(|e| Error::io("remove", &self.tmp, e))
    }

    /// Completes the block covering `[min_time, max_time)` (every sample must lie inside) and
    /// renames it to `<parent>/<ulid>`. A fresh block (empty `compaction.sources`) is recorded
    /// as its own source. On error the temporary directory is removed.
    pub fn finish(self, min_time: i64, max_time: i64, compaction: BlockCompaction) -> Result<BlockMeta> {
        self.finish_with(min_time, max_time, compaction, |_, _| Ok(()))
    }

    /// As [`finish`](Self::finish), with `complete` editing the meta before it is written (a
    /// Thanos section, stats a writer such as the downsampler carries over); it gets the
    /// block's temporary directory, whose files are all written.
    pub fn finish_with(
        self,
        min_time: i64,
        max_time: i64,
        compaction: BlockCompaction,
        complete: impl FnOnce(&Path, &mut BlockMeta) -> Result<()>,
    ) -> Result<BlockMeta> {
        let tmp = self.tmp.clone();
        let result = self.finish_inner(min_time, max_time, compaction, complete);
        if result.is_err() {
            // Best effort: the error being returned matters more than a failed cleanup, which
            // remove_tmp_dirs retries on the next start.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    fn finish_inner(
        self,
        min_time: i64,
        max_time: i64,
        mut compaction: BlockCompaction,
        complete: impl FnOnce(&Path, &mut BlockMeta) -> Result<()>,
    ) -> Result<BlockMeta> {
        if min_time >= max_time {
            return Err(Error::InvalidBlockInput(format!("empty block range [{min_time}, {max_time})")));
        }
        if let Some((lo, hi)) = self.time_range {
            if lo < min_time || hi >= max_time {
                return Err(Error::InvalidBlockInput(format!(
                    "samples span [{lo}, {hi}], outside the block range [{min_time}, {max_time})"
                )));
            }
        }
        self.chunks.finish()?;
        self.index.finish()?;
        write_empty_tombstones(&self.tmp)?;
        if compaction.sources.is_empty() {
            compaction.sources.push(self.ulid);
        }
        let mut meta = BlockMeta {
            ulid: self.ulid,
            min_time,
            max_time,
            stats: self.stats,
            compaction,
            version: META_VERSION,
            thanos: None,
        };
        complete(&self.tmp, &mut meta)?;
        meta.write(&self.tmp)?;
        sync_dir(&self.tmp)?;
        let dir = self.parent.join(self.ulid.to_string());
        std::fs::rename(&self.tmp, &dir).map_err(|e| Error::io("rename", &self.tmp, e))?;
        sync_dir(&self.parent)?;
        tracing::info!(
            ulid = %self.ulid,
            min_time,
            max_time,
            series = meta.stats.num_series,
            samples = meta.stats.num_samples,
            duration = ?self.started.elapsed(),
            "wrote block"
        );
        Ok(meta)
    }
}
