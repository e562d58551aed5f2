//! Reads an index file through a memory map. Every offset and length taken from the file is
//! checked before use, so a corrupt file gives an error naming it, never a panic.

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{ChunkMeta, Toc, FORMAT_V2, MAGIC, TOC_LEN};
use crate::encoding::{Decbuf, DecodeResult};
use crate::labels::Labels;
use crate::postings::{seek, PostingsSource};
use crate::{Error, Result};

/// One postings offset table entry in every this many of a label name's values is kept in
/// memory (plus the first); lookups binary-search those and scan at most this many entries.
const SAMPLE_EVERY: usize = 32;

/// A label name's run of entries in the postings offset table.
struct NameEntries {
    name: Box<str>,
    /// File offsets of every `SAMPLE_EVERY`th entry of this name, starting with the first.
    samples: Vec<usize>,
    /// File offset just past this name's last entry.
    end: usize,
}

/// A memory-mapped index file.
///
/// Opening checks the magic, the version, and the CRCs of the table of contents, the symbol
/// table and the postings offset table; series entries and postings lists are CRC-checked when
/// read.
pub struct IndexReader {
    path: PathBuf,
    map: Mmap,
    /// Offset of the first symbol entry (after the table's length and count).
    symbols_at: usize,
    /// Offset of each symbol relative to `symbols_at`; a series' symbol ref indexes this.
    symbol_offsets: Vec<u32>,
    /// Sorted by name; the first is `""` (the all-postings key).
    names: Vec<NameEntries>,
}

impl IndexReader {
    /// Opens and maps the index file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        let corrupt = |reason: String| Error::CorruptFile { path: path.to_owned(), reason };
        if len < (5 + TOC_LEN) as u64 {
            return Err(corrupt(format!("{len} bytes is too short for an index")));
        }
        // SAFETY: mapping a file is unsound only if it changes while mapped. Block files are
        // written under a temporary name and never modified once renamed into place, so the
        // mapping is effectively immutable. A file truncated underneath us by another process
        // would still raise SIGBUS on access; nothing in Strata does that.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mmap", path, e))?;
        Self::from_map(path, map).map_err(|reason| match reason {
            OpenError::Corrupt(r) => corrupt(r),
            OpenError::Unsupported(what) => Error::Unsupported { path: path.to_owned(), what },
        })
    }

    fn from_map(path: &Path, map: Mmap) -> std::result::Result<Self, OpenError> {
        let b: &[u8] = &map;
        let mut d = Decbuf::new(b);
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
        let toc = Toc::decode(&b[b.len() - TOC_LEN..]).map_err(OpenError::at("table of contents"))?;
        let content_end = b.len() - TOC_LEN;
        let offset = |o: u64, what: &'static str| -> std::result::Result<usize, OpenError> {
            usize::try_from(o)
                .ok()
                .filter(|&o| o > 0 && o < content_end)
                .ok_or_else(|| OpenError::Corrupt(format!("{what} offset {o} is outside the file")))
        };

        let symbols_pos = offset(toc.symbols, "symbol table")?;
        let symbols = crc_section(&b[..content_end], symbols_pos).map_err(OpenError::at("symbol table"))?;
        let symbol_offsets = read_symbol_offsets(symbols).map_err(OpenError::at("symbol table"))?;

        let table_pos = offset(toc.postings_table, "postings offset table")?;
        let table = crc_section(&b[..content_end], table_pos).map_err(OpenError::at("postings offset table"))?;
        let names = read_postings_table(table, table_pos + 4).map_err(OpenError::at("postings offset table"))?;

        Ok(IndexReader { path: path.to_owned(), symbols_at: symbols_pos + 8, symbol_offsets, names, map })
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::CorruptFile { path: self.path.clone(), reason }
    }

    /// The file this reader maps.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every label name of every series, sorted.
    pub fn label_names(&self) -> Result<Vec<String>> {
        Ok(self.names.iter().filter(|n| !n.name.is_empty()).map(|n| n.name.to_string()).collect())
    }

    /// The whole symbol table, in order.
    pub fn symbols(&self) -> Result<Vec<String>> {
        (0..self.symbol_offsets.len()).map(|i| self.symbol(i as u32).map(str::to_owned)).collect()
    }

    fn symbol(&self, sym_ref: u32) -> Result<&str> {
        let off = self
            .symbol_offsets
            .get(sym_ref as usize)
            .ok_or_else(|| self.corrupt(format!("symbol ref {sym_ref} is past the end of the symbol table")))?;
        // The table was walked at open, so this entry is in bounds and valid UTF-8.
        Decbuf::at(&self.map, self.symbols_at + *off as usize)
            .and_then(|mut d| d.uvarint_str())
            .map_err(|e| self.corrupt(format!("symbol {sym_ref}: {e}")))
    }

    /// The labels of the series at `series_ref`; its chunk metas replace the contents of `chunks`.
    pub fn series(&self, series_ref: u64, chunks: &mut Vec<ChunkMeta>) -> Result<Labels> {
        chunks.clear();
        let content_end = self.map.len() - TOC_LEN;
        let body = series_ref
            .checked_mul(16)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o > 0 && o < content_end)
            .ok_or("offset outside the file")
            .and_then(|o| series_body(&self.map[..content_end], o))
            .map_err(|e| self.corrupt(format!("series {series_ref}: {e}")))?;
        self.decode_series(body, chunks).map_err(|e| match e {
            SeriesError::Decode(e) => self.corrupt(format!("series {series_ref}: {e}")),
            SeriesError::Other(e) => e,
        })
    }

    fn decode_series(&self, body: &[u8], chunks: &mut Vec<ChunkMeta>) -> std::result::Result<Labels, SeriesError> {
        let mut d = Decbuf::new(body);
        let n = d.uvarint32()? as usize;
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let name = self.symbol(d.uvarint32()?).map_err(SeriesError::Other)?;
            let value = self.symbol(d.uvarint32()?).map_err(SeriesError::Other)?;
            if name.is_empty() || value.is_empty() {
                return Err(SeriesError::Decode("empty label name or value"));
            }
            if pairs.last().is_some_and(|&(prev, _)| prev >= name) {
                return Err(SeriesError::Decode("label names not sorted"));
            }
            pairs.push((name, value));
        }
        let n = d.uvarint32()? as usize;
        // Each chunk takes at least 3 bytes, which bounds the reservation.
        chunks.reserve(n.min(d.remaining() / 3));
        let mut prev: Option<ChunkMeta> = None;
        for _ in 0..n {
            let c = match prev {
                None => {
                    let min_time = d.varint()?;
                    let max_time = add_unsigned(min_time, d.uvarint()?)?;
                    ChunkMeta { min_time, max_time, chunk_ref: d.uvarint()? }
                }
                Some(p) => {
                    let min_time = add_unsigned(p.max_time, d.uvarint()?)?;
                    let max_time = add_unsigned(min_time, d.uvarint()?)?;
                    let chunk_ref = p.chunk_ref.checked_add_signed(d.varint()?).ok_or("chunk ref overflows")?;
                    ChunkMeta { min_time, max_time, chunk_ref }
                }
            };
            chunks.push(c);
            prev = Some(c);
        }
        if d.remaining() != 0 {
            return Err(SeriesError::Decode("trailing bytes after the chunks"));
        }
        Ok(Labels::from_sorted_unchecked(pairs))
    }

    /// File offset of the postings list for `name="value"`, if there is one.
    fn postings_offset(&self, name: &str, value: &str) -> Result<Option<usize>> {
        let Ok(i) = self.names.binary_search_by(|n| (*n.name).cmp(name)) else {
            return Ok(None);
        };
        let entries = &self.names[i];
        let bad = |e| self.corrupt(format!("postings offset table: {e}"));
        // The last sample whose value is <= `value`; the entry, if any, is in the run after it.
        let mut lo = 0;
        let mut hi = entries.samples.len();
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (v, _, _) = read_entry(&self.map, entries.samples[mid]).map_err(bad)?;
            if v <= value.as_bytes() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let Some(&start) = lo.checked_sub(1).and_then(|s| entries.samples.get(s)) else {
            return Ok(None);
        };
        let mut pos = start;
        while pos < entries.end {
            let (v, offset, next) = read_entry(&self.map, pos).map_err(bad)?;
            if v == value.as_bytes() {
                return Ok(Some(offset));
            }
            if v > value.as_bytes() {
                break;
            }
            pos = next;
        }
        Ok(None)
    }

    /// The refs of the postings list at `offset` as BE32 bytes, CRC- and length-checked.
    fn postings_bytes(&self, offset: usize, name: &str, value: &str) -> Result<&[u8]> {
        let content_end = self.map.len() - TOC_LEN;
        let body =
            crc_section(&self.map[..content_end], offset).map_err(|e| self.bad_postings(offset, name, value, e))?;
        match body.split_first_chunk::<4>() {
            Some((n, refs)) if refs.len() == (u32::from_be_bytes(*n) as usize).saturating_mul(4) => Ok(refs),
            _ => Err(self.bad_postings(offset, name, value, "length does not match the number of entries")),
        }
    }

    fn bad_postings(&self, offset: usize, name: &str, value: &str, e: &str) -> Error {
        self.corrupt(format!("postings list {name:?}={value:?} at offset {offset}: {e}"))
    }
}

/// The `i`th ref of a postings list's BE32 bytes; `i` must be below `refs.len() / 4`.
fn ref_at(refs: &[u8], i: usize) -> u64 {
    u64::from(u32::from_be_bytes([refs[4 * i], refs[4 * i + 1], refs[4 * i + 2], refs[4 * i + 3]]))
}

impl PostingsSource for IndexReader {
    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>> {
        let Some(offset) = self.postings_offset(name, value)? else {
            return Ok(Vec::new());
        };
        let refs: Vec<u64> = self
            .postings_bytes(offset, name, value)?
            .chunks_exact(4)
            .map(|r| u64::from(u32::from_be_bytes([r[0], r[1], r[2], r[3]])))
            .collect();
        if refs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(self.bad_postings(offset, name, value, "series refs not ascending"));
        }
        Ok(refs)
    }

    /// Binary-searches the mapped list instead of decoding it. The list's CRC is still
    /// checked; its order is not (a list failing that check is corrupt beyond what the CRC
    /// catches, and searching it gives wrong refs, not a crash).
    fn postings_within(&self, name: &str, value: &str, within: &[u64]) -> Result<Vec<u64>> {
        let Some(offset) = self.postings_offset(name, value)? else {
            return Ok(Vec::new());
        };
        let refs = self.postings_bytes(offset, name, value)?;
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
        let Some(offset) = self.postings_offset(name, value)? else {
            return Ok(0);
        };
        let n = Decbuf::at(&self.map, offset)
            .and_then(|mut d| {
                d.be32()?;
                d.be32()
            })
            .map_err(|e| self.bad_postings(offset, name, value, e))?;
        Ok(n as usize)
    }

    fn all_postings(&self) -> Result<Vec<u64>> {
        self.postings("", "")
    }

    fn label_values(&self, name: &str) -> Result<Vec<String>> {
        // `""` names only the all-postings key, which is no label.
        if name.is_empty() {
            return Ok(Vec::new());
        }
        let Ok(i) = self.names.binary_search_by(|n| (*n.name).cmp(name)) else {
            return Ok(Vec::new());
        };
        let entries = &self.names[i];
        let mut values = Vec::new();
        let mut pos = entries.samples.first().copied().unwrap_or(entries.end);
        while pos < entries.end {
            let (v, _, next) =
                read_entry(&self.map, pos).map_err(|e| self.corrupt(format!("postings offset table: {e}")))?;
            // Names and values were checked to be UTF-8 at open.
            values.push(String::from_utf8_lossy(v).into_owned());
            pos = next;
        }
        Ok(values)
    }
}

enum OpenError {
    Corrupt(String),
    Unsupported(String),
}

impl OpenError {
    fn at(what: &'static str) -> impl Fn(&'static str) -> OpenError {
        move |e| OpenError::Corrupt(format!("{what}: {e}"))
    }
}

enum SeriesError {
    Decode(&'static str),
    /// Already names the file (a bad symbol ref).
    Other(Error),
}

impl From<&'static str> for SeriesError {
    fn from(e: &'static str) -> Self {
        SeriesError::Decode(e)
    }
}

fn add_unsigned(base: i64, delta: u64) -> DecodeResult<i64> {
    i64::try_from(delta).ok().and_then(|d| base.checked_add(d)).ok_or("chunk time overflows")
}

/// The body of the series entry at `offset`: `uvarint len | body | BE32 CRC32C(body)`.
fn series_body(b: &[u8], offset: usize) -> DecodeResult<&[u8]> {
    let mut d = Decbuf::at(b, offset)?;
    let len = d.uvarint32()? as usize;
    let body = d.bytes(len)?;
    if d.be32()? != crc32c::crc32c(body) {
        return Err("CRC32C mismatch");
    }
    Ok(body)
}

/// Walks the symbol table (`#symbols | strings`), checking every string, and returns each
/// one's offset relative to the first.
fn read_symbol_offsets(table: &[u8]) -> DecodeResult<Vec<u32>> {
    let mut d = Decbuf::new(table);
    let n = d.be32()? as usize;
    // Each symbol takes at least one byte, which bounds the reservation.
    let mut offsets = Vec::with_capacity(n.min(d.remaining()));
    let mut prev: Option<&str> = None;
    for _ in 0..n {
        // The table is under 4 GiB (its length is a BE32), so offsets fit.
        offsets.push((d.pos() - 4) as u32);
        let s = d.uvarint_str()?;
        if prev.is_some_and(|p| p >= s) {
            return Err("symbols not sorted");
        }
        prev = Some(s);
    }
    if d.remaining() != 0 {
        return Err("trailing bytes after the last symbol");
    }
    Ok(offsets)
}

/// Reads the postings offset table body (`#entries | entries`), which starts at file offset
/// `at`, checking that the keys are well-formed, UTF-8 and strictly ascending.
fn read_postings_table(table: &[u8], at: usize) -> DecodeResult<Vec<NameEntries>> {
    let mut d = Decbuf::new(table);
    let n = d.be32()? as usize;
    let mut names: Vec<NameEntries> = Vec::new();
    let mut in_name = 0;
    let mut prev_value: &[u8] = &[];
    for _ in 0..n {
        let pos = at + d.pos();
        if d.uvarint()? != 2 {
            return Err("entry key count is not 2");
        }
        let name = d.uvarint_str()?;
        let value = d.uvarint_str()?;
        d.uvarint()?;
        match names.last_mut() {
            Some(last) if *last.name == *name => {
                if value.as_bytes() <= prev_value {
                    return Err("values not sorted");
                }
                in_name += 1;
                if in_name % SAMPLE_EVERY == 0 {
                    last.samples.push(pos);
                }
            }
            last => {
                if let Some(last) = last {
                    if *last.name > *name {
                        return Err("names not sorted");
                    }
                    last.end = pos;
                }
                names.push(NameEntries { name: name.into(), samples: vec![pos], end: 0 });
                in_name = 0;
            }
        }
        prev_value = value.as_bytes();
    }
    if d.remaining() != 0 {
        return Err("trailing bytes after the last entry");
    }
    if let Some(last) = names.last_mut() {
        last.end = at + d.pos();
    }
    Ok(names)
}

/// The value, list offset and next entry's position of the offset table entry at `pos`.
fn read_entry(b: &[u8], pos: usize) -> DecodeResult<(&[u8], usize, usize)> {
    let mut d = Decbuf::at(b, pos)?;
    d.uvarint()?;
    d.uvarint_bytes()?;
    let value = d.uvarint_bytes()?;
    let offset = usize::try_from(d.uvarint()?).map_err(|_| "postings offset overflows")?;
    Ok((value, offset, d.pos()))
}

/// Reads a `BE32 len | len bytes | BE32 CRC32C` section at `pos` and returns the `len` bytes,
/// CRC-checked. This is how the symbol table, postings lists and offset tables are framed.
fn crc_section(buf: &[u8], pos: usize) -> DecodeResult<&[u8]> {
    let mut d = Decbuf::at(buf, pos)?;
    let len = d.be32()? as usize;
    let body = d.bytes(len).map_err(|_| "section length runs past the end of the file")?;
    let crc = d.be32().map_err(|_| "section CRC runs past the end of the file")?;
    if crc32c::crc32c(body) != crc {
        return Err("CRC32C mismatch");
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_sections() {
        // The symbol table of Prometheus's repair_index_version test block.
        let table = [0, 0, 0, 0x0c, 0, 0, 0, 4, 1, b'1', 1, b'2', 1, b'a', 1, b'b', 0xb3, 0x72, 0x07, 0xb6];
        assert_eq!(crc_section(&table, 0).map(<[u8]>::len), Ok(12));
        let mut bad = table;
        bad[9] = b'9';
        assert!(crc_section(&bad, 0).is_err());
        assert!(crc_section(&table[..19], 0).is_err());
        assert!(crc_section(&[0xff, 0xff, 0xff, 0xff, 0], 0).is_err());
    }
}
