//! Streams an index file: symbols, then series as they come, then postings at the end.

use std::collections::HashMap;
use std::path::Path;

use super::{ChunkMeta, Toc, FORMAT_V2, MAGIC};
use crate::encoding::{put_be32, put_uvarint, put_uvarint_str, put_varint};
use crate::fileutil::FileWriter;
use crate::labels::Labels;
use crate::{Error, Result};

/// Series refs are 32-bit offset/16, so the series must end below 64 GiB.
const MAX_SERIES_OFFSET: u64 = (u32::MAX as u64) * 16;

/// Writes one index file. Call [`add_symbols`](Self::add_symbols) with every string the series
/// will use, then [`add_series`](Self::add_series) in label order, then
/// [`finish`](Self::finish). Input that breaks the format's rules is an error, and the file is
/// then unusable.
pub struct IndexWriter {
    out: FileWriter,
    /// Collected until the first series, then written sorted and deduplicated.
    pending_symbols: Vec<String>,
    /// The written table: each string and its position, its symbol ref. Hashed rather than
    /// searched: a series' labels are looked up by string for every series written.
    symbols: Option<HashMap<Box<str>, u32>>,
    series_start: u64,
    last_series: Option<Labels>,
    last_chunk_ref: u64,
    /// Every series ref, in order: the all-postings list.
    all: Vec<u32>,
    /// `(name ref << 32 | value ref, series ref)` for every label of every series. Symbol refs
    /// sort as their strings do, so sorting these orders postings by name, value, series.
    pairs: Vec<(u64, u32)>,
    buf: Vec<u8>,
}

impl IndexWriter {
    /// Creates the index file at `path` and writes its header.
    pub fn create(path: &Path) -> Result<Self> {
        let mut out = FileWriter::create(path)?;
        let mut header = MAGIC.to_be_bytes().to_vec();
        header.push(FORMAT_V2);
        out.write(&header)?;
        Ok(IndexWriter {
            out,
            pending_symbols: Vec::new(),
            symbols: None,
            series_start: 0,
            last_series: None,
            last_chunk_ref: 0,
            all: Vec::new(),
            pairs: Vec::new(),
            buf: Vec::with_capacity(256),
        })
    }

    /// Every label name and value of the series to come (extra strings allowed), in any order
    /// and with repeats. May be called several times, but only before the first series.
    pub fn add_symbols<'a>(&mut self, symbols: impl IntoIterator<Item = &'a str>) -> Result<()> {
        if self.symbols.is_some() {
            return Err(Error::InvalidBlockInput(format!(
                "{}: symbols added after the first series",
                self.out.path().display()
            )));
        }
        self.pending_symbols.extend(symbols.into_iter().map(str::to_owned));
        Ok(())
    }

    /// The symbol table, written on first use.
    fn symbols(&mut self) -> Result<&HashMap<Box<str>, u32>> {
        if self.symbols.is_none() {
            let mut syms = std::mem::take(&mut self.pending_symbols);
            syms.sort_unstable();
            syms.dedup();
            let count = u32::try_from(syms.len()).map_err(|_| too_many("symbols"))?;
            let mut body = Vec::new();
            put_be32(&mut body, count);
            for s in &syms {
                put_uvarint_str(&mut body, s);
            }
            let len = u32::try_from(body.len()).map_err(|_| too_many("symbol table bytes (4 GiB)"))?;
            let mut head = Vec::with_capacity(4);
            put_be32(&mut head, len);
            self.out.write(&head)?;
            self.out.write(&body)?;
            self.out.write(&crc32c::crc32c(&body).to_be_bytes())?;
            self.series_start = self.out.pos();
            self.symbols = Some(syms.into_iter().map(String::into_boxed_str).zip(0..count).collect());
        }
        Ok(self.symbols.get_or_insert_default())
    }

    /// Adds a series. Series must come in strictly increasing label order, each with at least
    /// one chunk; chunks in time order without overlap, and chunk refs never decreasing across
    /// the whole file (series N+1's chunks follow series N's in the segment files).
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<()> {
        let refs = self.check_series(labels, chunks, true)?;

        self.out.pad(16)?;
        let offset = self.out.pos();
        if offset > MAX_SERIES_OFFSET {
            return Err(too_many("series bytes (64 GiB)"));
        }
        let series_ref = (offset / 16) as u32;

        let b = &mut self.buf;
        b.clear();
        put_uvarint(b, refs.len() as u64);
        for &(n, v) in &refs {
            put_uvarint(b, u64::from(n));
            put_uvarint(b, u64::from(v));
        }
        put_uvarint(b, chunks.len() as u64);
        let mut prev: Option<&ChunkMeta> = None;
        for c in chunks {
            match prev {
                None => {
                    put_varint(b, c.min_time);
                    put_uvarint(b, c.max_time.wrapping_sub(c.min_time) as u64);
                    put_uvarint(b, c.chunk_ref);
                }
                Some(p) => {
                    put_uvarint(b, c.min_time.wrapping_sub(p.max_time) as u64);
                    put_uvarint(b, c.max_time.wrapping_sub(c.min_time) as u64);
                    put_varint(b, c.chunk_ref.wrapping_sub(p.chunk_ref) as i64);
                }
            }
            prev = Some(c);
        }
        let mut entry = Vec::with_capacity(b.len() + 10);
        put_uvarint(&mut entry, b.len() as u64);
        entry.extend_from_slice(b);
        entry.extend_from_slice(&crc32c::crc32c(b).to_be_bytes());
        self.out.write(&entry)?;

        for (n, v) in refs {
            self.pairs.push(((u64::from(n) << 32) | u64::from(v), series_ref));
        }
        self.all.push(series_ref);
        if let Some(last) = chunks.last() {
            self.last_chunk_ref = last.chunk_ref;
        }
        self.last_series = Some(labels.clone());
        Ok(())
    }

    /// Checks that `add_series(labels, chunks)` would be accepted, chunk refs only if
    /// `check_refs` (a block writer checks before its chunks have refs). Writes nothing but the
    /// symbol table; returns the labels' symbol refs.
    pub(crate) fn check_series(
        &mut self,
        labels: &Labels,
        chunks: &[ChunkMeta],
        check_refs: bool,
    ) -> Result<Vec<(u32, u32)>> {
        let bad = |why: String| Err(Error::InvalidBlockInput(format!("series {labels}: {why}")));
        if labels.is_empty() {
            return bad("no labels".into());
        }
        if let Some(last) = &self.last_series {
            if labels <= last {
                return bad(format!("out of order: must sort after {last}"));
            }
        }
        if chunks.is_empty() {
            return bad("no chunks".into());
        }
        let mut prev_ref = self.last_chunk_ref;
        let mut prev_max: Option<i64> = None;
        for c in chunks {
            if c.max_time < c.min_time {
                return bad(format!("chunk ends ({}) before it starts ({})", c.max_time, c.min_time));
            }
            if let Some(pm) = prev_max {
                if c.min_time <= pm {
                    return bad(format!("chunk starting at {} overlaps the previous one ending at {pm}", c.min_time));
                }
            }
            if check_refs && c.chunk_ref < prev_ref {
                return bad(format!("chunk ref {:#x} is before the previous one, {prev_ref:#x}", c.chunk_ref));
            }
            prev_ref = c.chunk_ref;
            prev_max = Some(c.max_time);
        }
        let syms = self.symbols()?;
        labels.iter().map(|(n, v)| Ok((symbol_ref(syms, n, labels)?, symbol_ref(syms, v, labels)?))).collect()
    }

    /// Writes the postings lists, the postings offset table and the table of contents, and
    /// fsyncs the file.
    pub fn finish(mut self) -> Result<()> {
        self.symbols()?;
        let refs = self.symbols.take().unwrap_or_default();
        let mut syms = vec![""; refs.len()];
        for (s, &i) in &refs {
            syms[i as usize] = s;
        }
        let label_indices = self.out.pos();
        let postings = self.out.pos();
        self.out.pad(4)?;

        // Offset table entries: (name, value, offset of the list).
        let mut table: Vec<(&str, &str, u64)> = Vec::new();
        table.push(("", "", self.out.pos()));
        write_postings(&mut self.out, &self.all)?;

        self.pairs.sort_unstable();
        let mut list = Vec::new();
        let mut i = 0;
        while i < self.pairs.len() {
            let key = self.pairs[i].0;
            list.clear();
            while i < self.pairs.len() && self.pairs[i].0 == key {
                list.push(self.pairs[i].1);
                i += 1;
            }
            // Both refs were looked up in `syms`, so they are in range.
            let (name, value) = (syms[(key >> 32) as usize], syms[(key & 0xffff_ffff) as usize]);
            table.push((name, value, self.out.pos()));
            write_postings(&mut self.out, &list)?;
        }

        // The table follows the last list directly: Thanos computes each list's length from
        // the next entry's offset, and the last one's from this position.
        let postings_table = self.out.pos();
        let mut body = Vec::new();
        put_be32(&mut body, u32::try_from(table.len()).map_err(|_| too_many("postings lists"))?);
        for (name, value, offset) in &table {
            put_uvarint(&mut body, 2);
            put_uvarint_str(&mut body, name);
            put_uvarint_str(&mut body, value);
            put_uvarint(&mut body, *offset);
        }
        let len = u32::try_from(body.len()).map_err(|_| too_many("postings offset table bytes (4 GiB)"))?;
        self.out.write(&len.to_be_bytes())?;
        self.out.write(&body)?;
        self.out.write(&crc32c::crc32c(&body).to_be_bytes())?;

        // As Prometheus ≥ 3.7: no label indices, so their start is the end of the series and
        // their table shares the postings table's offset.
        let toc = Toc {
            symbols: 5,
            series: self.series_start,
            label_indices,
            label_indices_table: postings_table,
            postings,
            postings_table,
        };
        self.out.write(&toc.encode())?;
        self.out.finish()
    }
}

/// `BE32 len | BE32 n | n × BE32 ref | BE32 CRC32C(n, refs)`.
fn write_postings(out: &mut FileWriter, refs: &[u32]) -> Result<()> {
    let n = u32::try_from(refs.len()).map_err(|_| too_many("series in a postings list"))?;
    let mut b = Vec::with_capacity(12 + 4 * refs.len());
    put_be32(&mut b, n.checked_mul(4).and_then(|x| x.checked_add(4)).ok_or_else(|| too_many("postings bytes"))?);
    put_be32(&mut b, n);
    for &r in refs {
        put_be32(&mut b, r);
    }
    let crc = crc32c::crc32c(&b[4..]);
    put_be32(&mut b, crc);
    out.write(&b)
}

fn symbol_ref(syms: &HashMap<Box<str>, u32>, s: &str, labels: &Labels) -> Result<u32> {
    syms.get(s)
        .copied()
        .ok_or_else(|| Error::InvalidBlockInput(format!("series {labels}: {s:?} was not added with add_symbols")))
}

fn too_many(what: &str) -> Error {
    Error::InvalidBlockInput(format!("index too large: too many {what}"))
}
