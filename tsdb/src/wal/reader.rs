//! Reads the logical records of one segment file, page by page, checking every fragment.
//!
//! The checks are stricter than strictly needed to read Prometheus's output (fragments must not
//! cross pages, reserved flag bits must be clear, padding must be zero up to the page end) so that
//! garbage after the last record is recognised as damage rather than misread as data.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::Error;

use super::{
    FLAG_SNAPPY, FLAG_ZSTD, FRAGMENT_HEADER_SIZE, FRAG_FIRST, FRAG_FULL, FRAG_LAST, FRAG_MIDDLE, FRAG_PAGE_TERM,
    FRAG_TYPE_MASK, PAGE_SIZE,
};

/// Why reading stopped before the end of the segment.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The operating system failed us; nothing is known about the data.
    Io(Error),
    /// The bytes at `offset` are not a valid continuation of the log.
    Corrupt { offset: u64, reason: String },
    /// A valid record we cannot read (zstd compression). Not damage, so never repaired away.
    Unsupported { offset: u64, reason: String },
}

impl Fault {
    /// The fault as an error, for callers that do not repair.
    pub(crate) fn into_error(self, path: &Path) -> Error {
        match self {
            Fault::Io(e) => e,
            Fault::Corrupt { offset, reason } | Fault::Unsupported { offset, reason } => {
                Error::CorruptWal { segment: path.to_path_buf(), offset, reason }
            }
        }
    }
}

/// Where a record lay in the file: from its first fragment header to the end of its last fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u64,
    pub end: u64,
}

pub(crate) struct SegmentReader {
    file: File,
    path: PathBuf,
    page: Box<[u8]>,
    /// Valid bytes in `page`: `PAGE_SIZE` except for a short last page.
    page_len: usize,
    /// Next unread byte in `page`.
    pos: usize,
    /// File offset of `page[0]`.
    page_offset: u64,
    /// Compressed bytes of the record being assembled.
    compressed: Vec<u8>,
}

impl SegmentReader {
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        let file = File::open(path).map_err(|e| Error::io("open WAL segment", path, e))?;
        Ok(SegmentReader {
            file,
            path: path.to_path_buf(),
            page: vec![0u8; PAGE_SIZE].into_boxed_slice(),
            page_len: 0,
            pos: 0,
            page_offset: 0,
            compressed: Vec::new(),
        })
    }

    /// How far into the file reading has got.
    pub(crate) fn offset(&self) -> u64 {
        self.page_offset + self.pos as u64
    }

    /// Reads the next record into `out` (replacing its contents). `Ok(None)` at a clean end of
    /// the file, that is, one that falls between records.
    pub(crate) fn next_record(&mut self, out: &mut Vec<u8>) -> Result<Option<Span>, Fault> {
        out.clear();
        self.compressed.clear();
        // Set by the first fragment of a record: its offset and its compression flags.
        let mut started: Option<(u64, u8)> = None;
        loop {
            if self.pos >= self.page_len {
                self.load_page()?;
                if self.page_len == 0 {
                    return match started {
                        None => Ok(None),
                        Some((start, _)) => Err(Fault::Corrupt {
                            offset: start,
                            reason: "last record is torn: end of file before its last fragment".into(),
                        }),
                    };
                }
            }
            let offset = self.offset();
            let header = self.page[self.pos];
            if header == FRAG_PAGE_TERM {
                self.skip_padding(offset)?;
                continue;
            }
            let kind = header & FRAG_TYPE_MASK;
            let flags = header & !FRAG_TYPE_MASK;
            if flags & !(FLAG_SNAPPY | FLAG_ZSTD) != 0 || flags == FLAG_SNAPPY | FLAG_ZSTD {
                return Err(corrupt(offset, format!("invalid fragment header byte {header:#04x}")));
            }
            let room = self.page_len - self.pos;
            if room < FRAGMENT_HEADER_SIZE {
                return Err(corrupt(offset, self.short("fragment header")));
            }
            let h = &self.page[self.pos..self.pos + FRAGMENT_HEADER_SIZE];
            let len = usize::from(u16::from_be_bytes([h[1], h[2]]));
            let crc = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
            let data_start = self.pos + FRAGMENT_HEADER_SIZE;
            if data_start + len > PAGE_SIZE {
                return Err(corrupt(offset, format!("fragment of {len} bytes crosses the page boundary")));
            }
            if data_start + len > self.page_len {
                return Err(corrupt(offset, self.short("fragment")));
            }
            let data = &self.page[data_start..data_start + len];
            let actual = crc32c::crc32c(data);
            if actual != crc {
                return Err(corrupt(offset, format!("checksum mismatch: stored {crc:#010x}, computed {actual:#010x}")));
            }
            match (kind, started) {
                (FRAG_FULL | FRAG_FIRST, None) => started = Some((offset, flags)),
                (FRAG_MIDDLE | FRAG_LAST, Some((_, first_flags))) if first_flags == flags => {}
                (FRAG_MIDDLE | FRAG_LAST, Some(_)) => {
                    return Err(corrupt(offset, "compression flag differs between fragments of one record".into()));
                }
                (FRAG_FULL | FRAG_FIRST, Some(_)) => {
                    return Err(corrupt(offset, format!("fragment type {kind} inside an unfinished record")));
                }
                (FRAG_MIDDLE | FRAG_LAST, None) => {
                    return Err(corrupt(offset, format!("fragment type {kind} without a first fragment")));
                }
                _ => return Err(corrupt(offset, format!("unknown fragment type {kind}"))),
            }
            if flags == 0 {
                out.extend_from_slice(data);
            } else {
                self.compressed.extend_from_slice(data);
            }
            self.pos = data_start + len;
            if kind == FRAG_FULL || kind == FRAG_LAST {
                let start = started.map_or(offset, |s| s.0);
                self.finish(flags, start, out)?;
                return Ok(Some(Span { start, end: self.offset() }));
            }
        }
    }

    /// Decompresses a finished record into `out` if its fragments were compressed.
    fn finish(&mut self, flags: u8, start: u64, out: &mut Vec<u8>) -> Result<(), Fault> {
        if flags & FLAG_ZSTD != 0 {
            return Err(Fault::Unsupported {
                offset: start,
                reason: "zstd-compressed WAL records are not supported; restart Prometheus with snappy or no WAL compression".into(),
            });
        }
        // Prometheus compresses only non-empty records, and reads an empty flagged one as empty.
        if flags & FLAG_SNAPPY == 0 || self.compressed.is_empty() {
            return Ok(());
        }
        let bad = |e: snap::Error| corrupt(start, format!("snappy: {e}"));
        let len = snap::raw::decompress_len(&self.compressed).map_err(bad)?;
        // No snappy element expands more than 64 bytes from 2 input bytes; a larger claim is
        // damage, refused before allocating for it.
        if len > self.compressed.len().saturating_mul(32) + 64 {
            return Err(corrupt(
                start,
                format!("snappy length {len} impossible for {} input bytes", self.compressed.len()),
            ));
        }
        out.resize(len, 0);
        let n = snap::raw::Decoder::new().decompress(&self.compressed, out).map_err(bad)?;
        out.truncate(n);
        Ok(())
    }

    /// A zero type byte: the rest of the page must be zeros, all the way to the page boundary.
    fn skip_padding(&mut self, offset: u64) -> Result<(), Fault> {
        if let Some(i) = self.page[self.pos..self.page_len].iter().position(|&b| b != 0) {
            return Err(corrupt(offset + i as u64, "non-zero byte in page padding".into()));
        }
        if self.page_len < PAGE_SIZE {
            return Err(corrupt(offset, "page padding cut short by the end of the file".into()));
        }
        self.pos = self.page_len;
        Ok(())
    }

    /// Why a header or fragment does not fit in what is left of the page.
    fn short(&self, what: &str) -> String {
        if self.page_len < PAGE_SIZE {
            format!("{what} cut short by the end of the file")
        } else {
            format!("{what} crosses the page boundary")
        }
    }

    /// Reads the next page, or what is left of the file if that is less.
    fn load_page(&mut self) -> Result<(), Fault> {
        self.page_offset += self.page_len as u64;
        self.pos = 0;
        let mut n = 0;
        while n < PAGE_SIZE {
            match self.file.read(&mut self.page[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Io(Error::io("read WAL segment", &self.path, e))),
            }
        }
        self.page_len = n;
        Ok(())
    }
}

fn corrupt(offset: u64, reason: String) -> Fault {
    Fault::Corrupt { offset, reason }
}
