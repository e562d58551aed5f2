//! The parts of an index that locate everything else: the symbol table and the postings offset
//! table. [`IndexHeader`] decodes them once and answers symbol lookups, label names and values,
//! and where each postings list lies; it also decodes series entries and postings lists handed
//! to it as bytes. The memory-mapped [`IndexReader`](super::IndexReader) keeps one over the
//! whole file; a reader that fetches byte ranges from object storage keeps one over a small
//! local file holding only those sections ([`build_header_file`]) and fetches series and
//! postings by the offsets it gives.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{ChunkMeta, Toc, TOC_LEN};
use crate::encoding::{put_be32, put_be64, Decbuf, DecodeResult};
use crate::labels::Labels;
use crate::{Error, Result};

/// One postings offset table entry in every this many of a label name's values is kept in
/// memory (plus the first); lookups binary-search those and scan at most this many entries.
const SAMPLE_EVERY: usize = 32;

/// First bytes of a header file ("STRH"), then its format version.
const HEADER_MAGIC: u32 = 0x5354_5248;
const HEADER_VERSION: u8 = 1;
/// A header loaded from a header file keeps the offset of one symbol in this many (as
/// Prometheus's and Thanos's readers do) and finds the others by scanning from it: a block's
/// symbols can number millions, and a store holds thousands of headers.
const HEADER_SYMBOL_STRIDE: usize = 32;
const _: () = assert!(HEADER_SYMBOL_STRIDE.is_power_of_two(), "symbol lookups shift by the stride");
/// Header file layout before the sections: magic, version, the index's TOC, the index's length.
const HEADER_PREFIX: usize = 4 + 1 + TOC_LEN + 8;

/// A label name's run of entries in the postings offset table.
struct NameEntries {
    name: Box<str>,
    /// Offsets in the header's bytes of every `SAMPLE_EVERY`th entry of this name, starting
    /// with the first.
    samples: Vec<usize>,
    /// Offset just past this name's last entry.
    end: usize,
}

/// Where a postings list lies in the index file: `start` is exact; `end` is where the next list
/// starts (or the postings section ends), so the range may hold padding after the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostingsRange {
    pub start: u64,
    pub end: u64,
}

/// The decoded symbol table and postings offset table of one index.
pub struct IndexHeader {
    /// The index file (or object) this describes; errors name it.
    path: PathBuf,
    /// Bytes holding both sections (the index itself, or a header file).
    buf: Bytes,
    /// Offset in `buf` of the first symbol entry (after the table's length and count).
    symbols_at: usize,
    /// Offset relative to `symbols_at` of every `symbol_stride`th symbol, from the first. The
    /// stride is a power of two, so that a lookup divides by shifting.
    symbol_offsets: Vec<u32>,
    symbol_stride_log2: u32,
    symbol_count: u32,
    /// Sorted by name; the first is `""` (the all-postings key).
    names: Vec<NameEntries>,
    /// Offset in `buf` just past the last offset table entry.
    table_end: usize,
    /// Offset in the index file where the last postings list ends at the latest.
    postings_end: u64,
    /// Length of the index file's content before its TOC: series and lists lie below it.
    content_end: u64,
}

/// Why a header did not load: corrupt, or a format this reader does not read.
pub(crate) enum OpenError {
    Corrupt(String),
    Unsupported(String),
}

impl OpenError {
    pub(crate) fn at(what: &'static str) -> impl Fn(&'static str) -> OpenError {
        move |e| OpenError::Corrupt(format!("{what}: {e}"))
    }

    pub(crate) fn into_error(self, path: &Path) -> Error {
        match self {
            OpenError::Corrupt(reason) => Error::CorruptFile { path: path.to_owned(), reason },
            OpenError::Unsupported(what) => Error::Unsupported { path: path.to_owned(), what },
        }
    }
}

impl IndexHeader {
    /// Decodes the sections of an index whose bytes (without the TOC) are `content`, read at
    /// the TOC's offsets.
    pub(crate) fn from_index(path: &Path, content: Bytes, toc: &Toc) -> std::result::Result<Self, OpenError> {
        let content_end = content.len() as u64;
        let offset = |o: u64, what: &'static str| -> std::result::Result<usize, OpenError> {
            usize::try_from(o)
                .ok()
                .filter(|&o| o > 0 && (o as u64) < content_end)
                .ok_or_else(|| OpenError::Corrupt(format!("{what} offset {o} is outside the file")))
        };
        let symbols_pos = offset(toc.symbols, "symbol table")?;
        let table_pos = offset(toc.postings_table, "postings offset table")?;
        // Every symbol's offset: series decoding in a local read finds each symbol directly.
        Self::parse(path, content, symbols_pos, table_pos, toc.postings_table, content_end, 1)
    }

    /// Decodes a header file written by [`build_header_file`] for the index at `index_path`.
    /// Any damage (a torn write, a bit flip) is an error, after which the file should be built
    /// again.
    pub fn from_header_file(index_path: &Path, file: Bytes) -> Result<Self> {
        let corrupt = |reason: String| Error::CorruptFile { path: index_path.to_owned(), reason };
        let body_len = file.len().checked_sub(4).ok_or_else(|| corrupt("index header file is truncated".into()))?;
        let mut d = Decbuf::at(&file, body_len).map_err(|e| corrupt(format!("index header file: {e}")))?;
        let crc = d.be32().map_err(|e| corrupt(format!("index header file: {e}")))?;
        if crc != crc32c::crc32c(&file[..body_len]) {
            return Err(corrupt("index header file: CRC32C mismatch".into()));
        }
        let mut d = Decbuf::new(&file[..body_len]);
        let bad = |e: &str| corrupt(format!("index header file: {e}"));
        if d.be32().map_err(bad)? != HEADER_MAGIC || d.byte().map_err(bad)? != HEADER_VERSION {
            return Err(bad("not an index header file of this version"));
        }
        let toc = Toc::decode(d.bytes(TOC_LEN).map_err(bad)?).map_err(bad)?;
        let index_len = d.be64().map_err(bad)?;
        let content_end = index_len.checked_sub(TOC_LEN as u64).ok_or_else(|| bad("index length too short"))?;
        let symbols_pos = d.pos();
        let symbols_len = Decbuf::at(&file, symbols_pos).and_then(|mut d| d.be32()).map_err(bad)? as usize;
        let table_pos = symbols_pos.checked_add(symbols_len + 8).ok_or_else(|| bad("symbol table too long"))?;
        let body = file.slice(..body_len);
        Self::parse(index_path, body, symbols_pos, table_pos, toc.postings_table, content_end, HEADER_SYMBOL_STRIDE)
            .map_err(|e| e.into_error(index_path))
    }

    /// Maps the header file at `file` and decodes it as
    /// [`from_header_file`](Self::from_header_file) does. The pages are the page cache's, not
    /// the process's heap, as Thanos maps its binary index headers.
    pub fn open_header_file(index_path: &Path, file: &Path) -> Result<Self> {
        let f = std::fs::File::open(file).map_err(|e| Error::io("open", file, e))?;
        // SAFETY: mapping a file is unsound only if it changes while mapped. Header files are
        // written under a temporary name and renamed into place (a rebuilt one replaces the old
        // by rename, which leaves this mapping on the old file); nothing writes to or truncates
        // them in place.
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io("mmap", file, e))?;
        Self::from_header_file(index_path, Bytes::from_owner(map))
    }

    fn parse(
        path: &Path,
        buf: Bytes,
        symbols_pos: usize,
        table_pos: usize,
        postings_end: u64,
        content_end: u64,
        symbol_stride: usize,
    ) -> std::result::Result<Self, OpenError> {
        debug_assert!(symbol_stride.is_power_of_two());
        let symbols = crc_section(&buf, symbols_pos).map_err(OpenError::at("symbol table"))?;
        let (symbol_offsets, symbol_count) =
            read_symbol_offsets(symbols, symbol_stride).map_err(OpenError::at("symbol table"))?;
        let table = crc_section(&buf, table_pos).map_err(OpenError::at("postings offset table"))?;
        let (names, table_end) =
            read_postings_table(table, table_pos + 4).map_err(OpenError::at("postings offset table"))?;
        Ok(IndexHeader {
            path: path.to_owned(),
            buf,
            symbols_at: symbols_pos + 8,
            symbol_offsets,
            symbol_stride_log2: symbol_stride.trailing_zeros(),
            symbol_count,
            names,
            table_end,
            postings_end,
            content_end,
        })
    }

    pub(crate) fn corrupt(&self, reason: String) -> Error {
        Error::CorruptFile { path: self.path.clone(), reason }
    }

    /// The index this header describes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes this header takes: its sections (mapped or in memory) and lookup tables.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
            + self.symbol_offsets.len() * 4
            + self.names.iter().map(|n| n.name.len() + n.samples.len() * 8 + 48).sum::<usize>()
    }

    /// The length of the index file: a header file built for another version of the object
    /// (re-uploaded under the same ULID) is told apart by it.
    pub fn index_len(&self) -> u64 {
        self.content_end + TOC_LEN as u64
    }

    /// Whether some series has label `name`.
    pub fn has_label(&self, name: &str) -> bool {
        !name.is_empty() && self.names.binary_search_by(|n| (*n.name).cmp(name)).is_ok()
    }

    /// Every label name of every series, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.names.iter().filter(|n| !n.name.is_empty()).map(|n| n.name.to_string()).collect()
    }

    /// The whole symbol table, in order.
    pub fn symbols(&self) -> Result<Vec<String>> {
        (0..self.symbol_count).map(|i| self.symbol(i).map(str::to_owned)).collect()
    }

    fn symbol(&self, sym_ref: u32) -> Result<&str> {
        let i = sym_ref as usize;
        let off = self
            .symbol_offsets
            .get(i >> self.symbol_stride_log2)
            .filter(|_| sym_ref < self.symbol_count)
            .ok_or_else(|| self.corrupt(format!("symbol ref {sym_ref} is past the end of the symbol table")))?;
        // The table was walked when loaded, so these entries are in bounds and valid UTF-8.
        Decbuf::at(&self.buf, self.symbols_at + *off as usize)
            .and_then(|mut d| {
                for _ in 0..i & ((1 << self.symbol_stride_log2) - 1) {
                    d.uvarint_bytes()?;
                }
                d.uvarint_str()
            })
            .map_err(|e| self.corrupt(format!("symbol {sym_ref}: {e}")))
    }

    /// Every value of label `name`, sorted; none for `""` (the all-postings key, no label).
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
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
                read_entry(&self.buf, pos).map_err(|e| self.corrupt(format!("postings offset table: {e}")))?;
            // Names and values were checked to be UTF-8 when loaded.
            values.push(String::from_utf8_lossy(v).into_owned());
            pos = next;
        }
        Ok(values)
    }

    /// Where the postings list of `name="value"` lies, if there is one (`("", "")` is the list
    /// of all series).
    pub fn postings_range(&self, name: &str, value: &str) -> Result<Option<PostingsRange>> {
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
            let (v, _, _) = read_entry(&self.buf, entries.samples[mid]).map_err(bad)?;
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
            let (v, offset, next) = read_entry(&self.buf, pos).map_err(bad)?;
            if v == value.as_bytes() {
                // Lists are laid out in table order: this one ends where the next begins.
                let end = if next < self.table_end {
                    read_entry(&self.buf, next).map_err(bad)?.1 as u64
                } else {
                    self.postings_end
                };
                let start = offset as u64;
                if end < start {
                    return Err(bad("postings lists not in table order"));
                }
                return Ok(Some(PostingsRange { start, end }));
            }
            if v > value.as_bytes() {
                break;
            }
            pos = next;
        }
        Ok(None)
    }

    /// The file offset of series `series_ref` (its ref times 16), checked to lie in the file.
    pub fn series_offset(&self, series_ref: u64) -> Result<u64> {
        series_ref
            .checked_mul(16)
            .filter(|&o| o > 0 && o < self.content_end)
            .ok_or_else(|| self.corrupt(format!("series {series_ref}: offset outside the file")))
    }

    /// The length of the series entry whose bytes start `b` (`uvarint len | body | CRC`), if
    /// `b` holds the length field; reading a series from a range that proves too short fetches
    /// this many bytes.
    pub fn series_entry_len(b: &[u8]) -> Option<usize> {
        let mut d = Decbuf::new(b);
        let len = d.uvarint32().ok()? as usize;
        Some(d.pos() + len + 4)
    }

    /// Decodes the series entry at the start of `b` (which may run on past it): its labels,
    /// and its chunk metas into `chunks` (replacing its contents).
    pub fn decode_series(&self, series_ref: u64, b: &[u8], chunks: &mut Vec<ChunkMeta>) -> Result<Labels> {
        chunks.clear();
        let body = series_body(b, 0).map_err(|e| self.corrupt(format!("series {series_ref}: {e}")))?;
        self.decode_series_body(body, chunks).map_err(|e| match e {
            SeriesError::Decode(e) => self.corrupt(format!("series {series_ref}: {e}")),
            SeriesError::Other(e) => e,
        })
    }

    fn decode_series_body(&self, body: &[u8], chunks: &mut Vec<ChunkMeta>) -> std::result::Result<Labels, SeriesError> {
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

    /// The refs of the postings list at the start of `b` (which may run on past it) as BE32
    /// bytes, CRC- and length-checked. `start` is its file offset, for the error.
    pub(crate) fn postings_bytes<'b>(&self, b: &'b [u8], start: u64, name: &str, value: &str) -> Result<&'b [u8]> {
        let body = crc_section(b, 0).map_err(|e| self.bad_postings(start, name, value, e))?;
        match body.split_first_chunk::<4>() {
            Some((n, refs)) if refs.len() == (u32::from_be_bytes(*n) as usize).saturating_mul(4) => Ok(refs),
            _ => Err(self.bad_postings(start, name, value, "length does not match the number of entries")),
        }
    }

    /// Decodes the postings list at the start of `b`, checking CRC, length and order.
    pub fn decode_postings(&self, b: &[u8], start: u64, name: &str, value: &str) -> Result<Vec<u64>> {
        let refs: Vec<u64> = self
            .postings_bytes(b, start, name, value)?
            .chunks_exact(4)
            .map(|r| u64::from(u32::from_be_bytes([r[0], r[1], r[2], r[3]])))
            .collect();
        if refs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(self.bad_postings(start, name, value, "series refs not ascending"));
        }
        Ok(refs)
    }

    /// The byte length of the postings list whose first bytes `b` holds, if it holds its
    /// length field: what to fetch when a range proves too short.
    pub fn postings_entry_len(b: &[u8]) -> Option<usize> {
        Decbuf::new(b).be32().ok().map(|n| n as usize + 8)
    }

    pub(crate) fn bad_postings(&self, offset: u64, name: &str, value: &str, e: &str) -> Error {
        self.corrupt(format!("postings list {name:?}={value:?} at offset {offset}: {e}"))
    }
}

/// The bytes of a header file for an index of `index_len` bytes, from the index's last
/// [`TOC_LEN`] bytes, its symbol table section and its postings offset table section (each
/// `BE32 len | body | CRC`, possibly followed by other bytes, which are cut off). Their CRCs
/// are checked here, their contents when the file is loaded with
/// [`IndexHeader::from_header_file`].
pub fn build_header_file(
    index_path: &Path,
    index_len: u64,
    toc: &[u8],
    symbols: &[u8],
    table: &[u8],
) -> Result<Vec<u8>> {
    let corrupt = |reason: String| Error::CorruptFile { path: index_path.to_owned(), reason };
    let toc_fields = Toc::decode(toc).map_err(|e| corrupt(format!("table of contents: {e}")))?;
    let symbols = crc_section(symbols, 0).map_err(|e| corrupt(format!("symbol table: {e}")))?;
    let table = crc_section(table, 0).map_err(|e| corrupt(format!("postings offset table: {e}")))?;
    let mut b = Vec::with_capacity(HEADER_PREFIX + symbols.len() + table.len() + 20);
    put_be32(&mut b, HEADER_MAGIC);
    b.push(HEADER_VERSION);
    b.extend_from_slice(&toc_fields.encode());
    put_be64(&mut b, index_len);
    for section in [symbols, table] {
        put_be32(&mut b, section.len() as u32);
        b.extend_from_slice(section);
        put_be32(&mut b, crc32c::crc32c(section));
    }
    let crc = crc32c::crc32c(&b);
    put_be32(&mut b, crc);
    Ok(b)
}

pub(crate) enum SeriesError {
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

/// Walks the symbol table (`#symbols | strings`), checking every string, and returns the offset
/// relative to the first of every `stride`th one, from the first, and the number of symbols.
fn read_symbol_offsets(table: &[u8], stride: usize) -> DecodeResult<(Vec<u32>, u32)> {
    let mut d = Decbuf::new(table);
    let n = d.be32()?;
    // Each symbol takes at least one byte, which bounds the reservation.
    let mut offsets = Vec::with_capacity((n as usize).min(d.remaining()) / stride + 1);
    let mut prev: Option<&str> = None;
    for i in 0..n as usize {
        if i % stride == 0 {
            // The table is under 4 GiB (its length is a BE32), so offsets fit.
            offsets.push((d.pos() - 4) as u32);
        }
        let s = d.uvarint_str()?;
        if prev.is_some_and(|p| p >= s) {
            return Err("symbols not sorted");
        }
        prev = Some(s);
    }
    if d.remaining() != 0 {
        return Err("trailing bytes after the last symbol");
    }
    Ok((offsets, n))
}

/// Reads the postings offset table body (`#entries | entries`), which starts at offset `at` of
/// the header's bytes, checking that the keys are well-formed, UTF-8 and strictly ascending.
/// Returns the names and the offset just past the last entry.
fn read_postings_table(table: &[u8], at: usize) -> DecodeResult<(Vec<NameEntries>, usize)> {
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
    let end = at + d.pos();
    if let Some(last) = names.last_mut() {
        last.end = end;
    }
    Ok((names, end))
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
pub(crate) fn crc_section(buf: &[u8], pos: usize) -> DecodeResult<&[u8]> {
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
    use crate::index::{IndexReader, IndexWriter};
    use crate::postings::PostingsSource;

    /// A header file built from an index's sections (symbols found by scanning from every
    /// 32nd) answers as the memory-mapped reader over the whole index.
    #[test]
    fn header_file_answers_as_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let values: Vec<String> = (0..1000).map(|i| format!("{i:05}")).collect();
        let mut w = IndexWriter::create(&path).unwrap();
        w.add_symbols(values.iter().map(String::as_str).chain(["v", "w", "x"])).unwrap();
        for (i, v) in values.iter().enumerate() {
            let l = Labels::from_pairs(&[("v", v.as_str()), ("w", if i % 2 == 0 { "x" } else { "v" })]);
            let chunk = ChunkMeta { min_time: i as i64, max_time: i as i64 + 5, chunk_ref: 8 + i as u64 };
            w.add_series(&l, &[chunk]).unwrap();
        }
        w.finish().unwrap();
        let index = std::fs::read(&path).unwrap();
        let content_end = index.len() - TOC_LEN;
        let toc = Toc::decode(&index[content_end..]).unwrap();
        let file = build_header_file(
            &path,
            index.len() as u64,
            &index[content_end..],
            &index[toc.symbols as usize..toc.series as usize],
            &index[toc.postings_table as usize..content_end],
        )
        .unwrap();
        let header = IndexHeader::from_header_file(&path, Bytes::from(file)).unwrap();
        let reader = IndexReader::open(&path).unwrap();
        assert_eq!(header.symbols().unwrap(), reader.symbols().unwrap());
        assert_eq!(header.index_len(), index.len() as u64);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for r in reader.all_postings().unwrap() {
            let at = header.series_offset(r).unwrap() as usize;
            assert_eq!(header.decode_series(r, &index[at..], &mut a).unwrap(), reader.series(r, &mut b).unwrap());
            assert_eq!(a, b);
        }
        for (name, value) in [("v", "00999"), ("w", "x"), ("", "")] {
            let range = header.postings_range(name, value).unwrap().unwrap();
            let got =
                header.decode_postings(&index[range.start as usize..range.end as usize], range.start, name, value);
            assert_eq!(got.unwrap(), reader.postings(name, value).unwrap(), "{name}={value}");
        }
        assert!(header.symbol(1003).is_err() && header.symbol(u32::MAX).is_err());
    }

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
