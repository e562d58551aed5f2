//! Reads an index file through a memory map. Every offset and length taken from the file is
//! checked before use, so a corrupt file gives an error naming it, never a panic. The decoding
//! is [`IndexHeader`]'s, which a reader over ranged reads shares.

use std::path::Path;

use bytes::Bytes;

use super::header::{IndexHeader, OpenError};
use super::{ChunkMeta, Toc, FORMAT_V2, MAGIC, TOC_LEN};
use crate::block::ScanPages;
use crate::encoding::Decbuf;
use crate::fileutil::FileMap;
use crate::labels::Labels;
use crate::postings::{seek, PostingsSource};
use crate::{Error, Result};

/// A memory-mapped index file.
///
/// Opening checks the magic, the version, and the CRCs of the table of contents, the symbol
/// table and the postings offset table; series entries and postings lists are CRC-checked when
/// read.
pub struct IndexReader {
    /// The file's content before the TOC.
    map: Bytes,
    file: FileMap,
    header: IndexHeader,
}

impl IndexReader {
    /// Opens and maps the index file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        if len < (5 + TOC_LEN) as u64 {
            return Err(Error::CorruptFile {
                path: path.to_owned(),
                reason: format!("{len} bytes is too short for an index"),
            });
        }
        let file = FileMap::map(&file, path)?;
        Self::from_map(path, file).map_err(|e| e.into_error(path))
    }

    /// Releases the pages of the file read so far from the process's resident memory
    /// ([`crate::fileutil::release_pages`]), for scans that read the whole index once.
    pub fn release_pages(&self) {
        self.file.release_pages();
    }

    /// Thanos's `index_stats` of this index, as its compactor and downsampler record them in
    /// meta.json (from `GatherIndexHealthStats`): the largest distance between consecutive
    /// series entries, and between a chunk and the next of the same series in the same segment
    /// (the last two chunks of a series not counted); each omitted when there is none.
    pub fn thanos_index_stats(&self) -> Result<Option<serde_json::Value>> {
        let (mut series_max, mut chunk_max) = (None::<u64>, None::<u64>);
        let mut metas = Vec::new();
        let mut prev = None;
        let mut scan = ScanPages::default();
        for r in self.all_postings()? {
            if scan.series_read() {
                self.release_pages();
            }
            if let Some(p) = prev {
                // Series references are offsets / 16 in index format 2.
                series_max = series_max.max(Some((r - p) * 16));
            }
            prev = Some(r);
            self.series(r, &mut metas)?;
            for pair in metas.windows(2).take(metas.len().saturating_sub(2)) {
                let (a, b) = (pair[0].chunk_ref, pair[1].chunk_ref);
                if a >> 32 == b >> 32 {
                    chunk_max = chunk_max.max(Some((b & 0xffff_ffff).wrapping_sub(a & 0xffff_ffff)));
                }
            }
        }
        let mut stats = serde_json::Map::new();
        if let Some(n) = series_max.filter(|&n| n > 0) {
            stats.insert("series_max_size".to_owned(), n.into());
        }
        if let Some(n) = chunk_max.filter(|&n| n > 0) {
            stats.insert("chunk_max_size".to_owned(), n.into());
        }
        Ok((!stats.is_empty()).then_some(serde_json::Value::Object(stats)))
    }

    fn from_map(path: &Path, file: FileMap) -> std::result::Result<Self, OpenError> {
        let map = file.bytes();
        let mut d = Decbuf::new(&map);
        let magic = d.be32().map_err(OpenError::at("header"))?;
        if magic != MAGIC {
            return Err(OpenError::Corrupt(format!("bad magic {magic:#010x}, not an index file")));
        }
        match d.byte().map_err(OpenError::at("header"))? {
            // Prometheus reads 3 (reserved for an upcoming format) as 2; so do we.
            FORMAT_V2 | 3 => {}
            1 => {
                return Err(OpenError::Unsupported(
                    "index format version 1 (from early Prometheus 2 releases); only version 2 is readable".into(),
                ))
            }
            v => return Err(OpenError::Unsupported(format!("index format version {v}"))),
        }
        let content_end = map.len() - TOC_LEN;
        let toc = Toc::decode(&map[content_end..]).map_err(OpenError::at("table of contents"))?;
        let map = map.slice(..content_end);
        let header = IndexHeader::from_index(path, map.clone(), &toc)?;
        Ok(IndexReader { map, file, header })
    }

    /// The file this reader maps.
    pub fn path(&self) -> &Path {
        self.header.path()
    }

    /// The decoded symbol and postings offset tables.
    pub fn header(&self) -> &IndexHeader {
        &self.header
    }

    /// Every label name of every series, sorted.
    pub fn label_names(&self) -> Result<Vec<String>> {
        Ok(self.header.label_names())
    }

    /// The whole symbol table, in order.
    pub fn symbols(&self) -> Result<Vec<String>> {
        self.header.symbols()
    }

    /// The labels of the series at `series_ref`; its chunk metas replace the contents of `chunks`.
    pub fn series(&self, series_ref: u64, chunks: &mut Vec<ChunkMeta>) -> Result<Labels> {
        let offset = self.header.series_offset(series_ref)? as usize;
        self.header.decode_series(series_ref, &self.map[offset..], chunks)
    }

    /// The refs of the postings list of `name="value"` as BE32 bytes and the list's offset,
    /// CRC- and length-checked; `None` if there is no such list.
    fn postings_bytes(&self, name: &str, value: &str) -> Result<Option<(&[u8], u64)>> {
        let Some(range) = self.header.postings_range(name, value)? else { return Ok(None) };
        let b = self.list_at(range.start, name, value)?;
        Ok(Some((self.header.postings_bytes(b, range.start, name, value)?, range.start)))
    }

    fn list_at(&self, start: u64, name: &str, value: &str) -> Result<&[u8]> {
        usize::try_from(start)
            .ok()
            .and_then(|s| self.map.get(s..))
            .ok_or_else(|| self.header.bad_postings(start, name, value, "offset past the end of the file"))
    }
}

/// The `i`th ref of a postings list's BE32 bytes; `i` must be below `refs.len() / 4`.
fn ref_at(refs: &[u8], i: usize) -> u64 {
    u64::from(u32::from_be_bytes([refs[4 * i], refs[4 * i + 1], refs[4 * i + 2], refs[4 * i + 3]]))
}

impl PostingsSource for IndexReader {
    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>> {
        let Some(range) = self.header.postings_range(name, value)? else {
            return Ok(Vec::new());
        };
        self.header.decode_postings(self.list_at(range.start, name, value)?, range.start, name, value)
    }

    /// Binary-searches the mapped list instead of decoding it. The list's CRC is still
    /// checked; its order is not (a list failing that check is corrupt beyond what the CRC
    /// catches, and searching it gives wrong refs, not a crash).
    fn postings_within(&self, name: &str, value: &str, within: &[u64]) -> Result<Vec<u64>> {
        let Some((refs, _)) = self.postings_bytes(name, value)? else {
            return Ok(Vec::new());
        };
        let len = refs.len() / 4;
        let mut out = Vec::new();
        let mut at = 0;
        for &r in within {
            at += seek(len - at, r, |i| ref_at(refs, at + i));
            if at == len {
                break;
            }
            if ref_at(refs, at) == r {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The list's entry count, read without checking the CRC: only an estimate.
    fn postings_len_hint(&self, name: &str, value: &str) -> Result<usize> {
        let Some(range) = self.header.postings_range(name, value)? else {
            return Ok(0);
        };
        let mut d = Decbuf::new(self.list_at(range.start, name, value)?);
        let n = d.be32().and_then(|_| d.be32()).map_err(|e| self.header.bad_postings(range.start, name, value, e))?;
        Ok(n as usize)
    }

    fn all_postings(&self) -> Result<Vec<u64>> {
        self.postings("", "")
    }

    fn label_values(&self, name: &str) -> Result<Vec<String>> {
        self.header.label_values(name)
    }
}
