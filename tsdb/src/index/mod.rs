//! The block index file, format v2, as Prometheus (≥ 3.7) writes it and Prometheus and Thanos
//! read it.
//!
//! Layout: magic `BA AA D7 00`, version byte 2, the symbol table (every label name and value,
//! sorted; series refer to them by position), the series (each 16-byte aligned, so a series ref
//! is its offset / 16), the postings lists (the all-series list under the key `("", "")` first,
//! then by name and value), the postings offset table mapping each `(name, value)` to its list,
//! and a 52-byte table of contents. Every section carries a CRC32C. Legacy label-index sections
//! (written by Prometheus before 3.7) are neither written nor read.

mod header;
mod reader;
mod writer;

pub use header::{build_header_file, IndexHeader, PostingsRange};
pub use reader::IndexReader;
pub use writer::IndexWriter;

use crate::encoding::{put_be32, put_be64, Decbuf, DecodeResult};

/// First four bytes of an index file.
pub const MAGIC: u32 = 0xBAAA_D700;
/// The format version written; 3 is read as 2, as Prometheus does.
pub const FORMAT_V2: u8 = 2;
/// Size of the table of contents at the end of the file: six BE64 offsets and a CRC.
pub const TOC_LEN: usize = 6 * 8 + 4;
/// Name of the index file in a block directory.
pub const INDEX_FILENAME: &str = "index";

/// Where one chunk of a series lives and which samples it holds (both ends inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    /// `segment index << 32 | byte offset` in the block's chunk segment files.
    pub chunk_ref: u64,
}

/// The table of contents: absolute offsets of the sections (0 = absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_indices_table: u64,
    pub postings: u64,
    pub postings_table: u64,
}

impl Toc {
    /// Decodes the last [`TOC_LEN`] bytes of the index at `path`, checking the CRC.
    pub fn read(path: &std::path::Path, b: &[u8]) -> crate::Result<Toc> {
        Toc::decode(b)
            .map_err(|e| crate::Error::CorruptFile { path: path.to_owned(), reason: format!("table of contents: {e}") })
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(TOC_LEN);
        for v in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ] {
            put_be64(&mut b, v);
        }
        let crc = crc32c::crc32c(&b);
        put_be32(&mut b, crc);
        b
    }

    fn decode(b: &[u8]) -> DecodeResult<Toc> {
        let body = b.get(..TOC_LEN - 4).ok_or("table of contents is truncated")?;
        let mut d = Decbuf::new(b);
        let toc = Toc {
            symbols: d.be64()?,
            series: d.be64()?,
            label_indices: d.be64()?,
            label_indices_table: d.be64()?,
            postings: d.be64()?,
            postings_table: d.be64()?,
        };
        if d.be32()? != crc32c::crc32c(body) {
            return Err("table of contents CRC32C mismatch");
        }
        Ok(toc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postings::PostingsSource;
    use crate::Labels;

    fn chunk(min_time: i64, max_time: i64, chunk_ref: u64) -> ChunkMeta {
        ChunkMeta { min_time, max_time, chunk_ref }
    }

    /// Writes `{a="1", b="1"}` and `{a="2", b="1"}` (the shape of Prometheus's
    /// repair_index_version test index) and returns the file bytes.
    fn small_index(dir: &std::path::Path) -> Vec<u8> {
        let path = dir.join("index");
        let mut w = IndexWriter::create(&path).unwrap();
        w.add_symbols(["b", "a", "1", "2", "1"]).unwrap();
        w.add_series(&Labels::from_pairs(&[("a", "1"), ("b", "1")]), &[chunk(-5, 10, 8), chunk(11, 11, 40)]).unwrap();
        w.add_series(&Labels::from_pairs(&[("a", "2"), ("b", "1")]), &[chunk(0, 1, 60)]).unwrap();
        w.finish().unwrap();
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn layout_matches_prometheus() {
        let dir = tempfile::tempdir().unwrap();
        let b = small_index(dir.path());
        assert_eq!(b[..5], [0xBA, 0xAA, 0xD7, 0x00, 2]);
        // The same symbol table bytes Prometheus wrote for the same symbols.
        assert_eq!(b[5..25], [0, 0, 0, 0x0c, 0, 0, 0, 4, 1, b'1', 1, b'2', 1, b'a', 1, b'b', 0xb3, 0x72, 0x07, 0xb6]);
        let toc = Toc::decode(&b[b.len() - TOC_LEN..]).unwrap();
        assert_eq!((toc.symbols, toc.series), (5, 25));
        // First series 16-aligned after the symbols: ref 2, as in Prometheus's file.
        assert_eq!(b[25..32], [0; 7]);
        assert_eq!(toc.label_indices_table, toc.postings_table);
        assert!(toc.label_indices <= toc.postings && toc.postings <= toc.postings_table);
        // The second series' 17-byte entry ends at 49, so it starts at 64: ref 4.
        // The all-postings list comes first, 4-aligned: refs 2 and 4.
        let first = toc.postings.next_multiple_of(4) as usize;
        assert_eq!(b[first..first + 16], [0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 4]);
        // ("", ""), a=1, a=2, b=1: 4 lists of 1 or 2 refs laid end to end up to the table.
        assert_eq!(toc.postings_table as usize - first, 20 + 16 + 16 + 20);
    }

    #[test]
    fn reads_back_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        small_index(dir.path());
        let r = IndexReader::open(&dir.path().join("index")).unwrap();
        assert_eq!(r.symbols().unwrap(), ["1", "2", "a", "b"]);
        assert_eq!(r.label_names().unwrap(), ["a", "b"]);
        assert_eq!(r.label_values("a").unwrap(), ["1", "2"]);
        assert_eq!(r.label_values("").unwrap(), Vec::<String>::new());
        assert_eq!(r.label_values("zz").unwrap(), Vec::<String>::new());
        assert_eq!(r.all_postings().unwrap(), [2, 4]);
        assert_eq!(r.postings("a", "2").unwrap(), [4]);
        assert_eq!(r.postings("b", "1").unwrap(), [2, 4]);
        assert_eq!(r.postings("b", "0").unwrap(), Vec::<u64>::new());
        let mut chunks = Vec::new();
        let l = r.series(2, &mut chunks).unwrap();
        assert_eq!(l, Labels::from_pairs(&[("a", "1"), ("b", "1")]));
        assert_eq!(chunks, [chunk(-5, 10, 8), chunk(11, 11, 40)]);
        assert_eq!(r.series(4, &mut chunks).unwrap(), Labels::from_pairs(&[("a", "2"), ("b", "1")]));
        assert_eq!(chunks, [chunk(0, 1, 60)]);
        // Not a series start, past the series, past the file.
        for bad in [1, 3, 5, 1 << 20, u64::MAX] {
            assert!(r.series(bad, &mut chunks).is_err(), "ref {bad}");
        }
    }

    #[test]
    fn many_values_use_sampled_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let values: Vec<String> = (0..1000).map(|i| format!("{i:05}")).collect();
        let mut w = IndexWriter::create(&path).unwrap();
        w.add_symbols(values.iter().map(String::as_str).chain(["v", "w", "x"])).unwrap();
        for (i, v) in values.iter().enumerate() {
            let l = Labels::from_pairs(&[("v", v.as_str()), ("w", if i % 2 == 0 { "x" } else { "v" })]);
            w.add_series(&l, &[chunk(0, 1, i as u64)]).unwrap();
        }
        w.finish().unwrap();
        let r = IndexReader::open(&path).unwrap();
        assert_eq!(r.label_values("v").unwrap(), values);
        let all = r.all_postings().unwrap();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(r.postings("v", v).unwrap(), [all[i]], "{v}");
        }
        for absent in ["", "-", "00000x", "0099", "1", "99999"] {
            assert_eq!(r.postings("v", absent).unwrap(), Vec::<u64>::new(), "{absent}");
        }
        assert_eq!(r.postings("w", "x").unwrap().len(), 500);
    }

    #[test]
    fn writer_refuses_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let la = Labels::from_pairs(&[("a", "1")]);
        let lb = Labels::from_pairs(&[("a", "2")]);
        let new = || {
            let mut w = IndexWriter::create(&dir.path().join("index")).unwrap();
            w.add_symbols(["a", "1", "2"]).unwrap();
            w
        };
        type Case<'a> = Box<dyn Fn(&mut IndexWriter) -> crate::Result<()> + 'a>;
        let cases: Vec<(&str, Case)> = vec![
            ("no chunks", Box::new(|w| w.add_series(&la, &[]))),
            ("no labels", Box::new(|w| w.add_series(&Labels::empty(), &[chunk(0, 1, 8)]))),
            ("unknown symbol", Box::new(|w| w.add_series(&Labels::from_pairs(&[("a", "3")]), &[chunk(0, 1, 8)]))),
            ("reversed chunk", Box::new(|w| w.add_series(&la, &[chunk(2, 1, 8)]))),
            ("overlap", Box::new(|w| w.add_series(&la, &[chunk(0, 5, 8), chunk(5, 6, 9)]))),
            ("ref order in series", Box::new(|w| w.add_series(&la, &[chunk(0, 1, 9), chunk(2, 3, 8)]))),
            (
                "series order",
                Box::new(|w| {
                    w.add_series(&lb, &[chunk(0, 1, 8)])?;
                    w.add_series(&la, &[chunk(0, 1, 9)])
                }),
            ),
            (
                "duplicate series",
                Box::new(|w| {
                    w.add_series(&la, &[chunk(0, 1, 8)])?;
                    w.add_series(&la, &[chunk(2, 3, 9)])
                }),
            ),
            (
                "ref order across series",
                Box::new(|w| {
                    w.add_series(&la, &[chunk(0, 1, 9)])?;
                    w.add_series(&lb, &[chunk(0, 1, 8)])
                }),
            ),
            (
                "symbols after series",
                Box::new(|w| {
                    w.add_series(&la, &[chunk(0, 1, 8)])?;
                    w.add_symbols(["z"])
                }),
            ),
        ];
        for (what, case) in cases {
            let err = case(&mut new()).expect_err(what);
            assert!(matches!(err, crate::Error::InvalidBlockInput(_)), "{what}: {err}");
        }
    }

    #[test]
    fn versions() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = small_index(dir.path());
        let path = dir.path().join("index");
        b[4] = 3;
        std::fs::write(&path, &b).unwrap();
        assert!(IndexReader::open(&path).is_ok(), "version 3 reads as 2");
        b[4] = 1;
        std::fs::write(&path, &b).unwrap();
        let err = IndexReader::open(&path).err().unwrap();
        assert!(matches!(err, crate::Error::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("unsupported index format version 1"), "{err}");
    }

    #[test]
    fn any_truncation_or_bit_flip_in_checked_sections_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let good = small_index(dir.path());
        let path = dir.path().join("index");
        for n in 0..good.len() {
            std::fs::write(&path, &good[..n]).unwrap();
            assert!(IndexReader::open(&path).is_err(), "truncated to {n}");
        }
        // Every byte: open must fail or, if it succeeds, every read must return (not panic),
        // and at least the reads covering the flipped byte must fail.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x21;
            std::fs::write(&path, &bad).unwrap();
            let Ok(r) = IndexReader::open(&path) else { continue };
            let mut chunks = Vec::new();
            let results = [
                r.series(2, &mut chunks).map(drop),
                r.series(4, &mut chunks).map(drop),
                r.all_postings().map(drop),
                r.postings("a", "1").map(drop),
                r.postings("a", "2").map(drop),
                r.postings("b", "1").map(drop),
            ];
            // Padding bytes carry no data; everything else is under a CRC.
            let padding = bad[i] == 0x21;
            assert!(padding || results.iter().any(Result::is_err), "flip at {i} went unnoticed");
        }
    }
}
