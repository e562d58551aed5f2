//! Byte-level encodings shared by the block files: big-endian integers, Go's uvarint/varint,
//! length-prefixed strings, and a bounds-checked reader over untrusted bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub(crate) fn put_be32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_be64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Zig-zag, then uvarint, as Go's `binary.PutVarint`.
pub(crate) fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

pub(crate) fn put_uvarint_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Why a read from untrusted bytes failed; callers add the file and what they were reading.
pub(crate) type DecodeResult<T> = std::result::Result<T, &'static str>;

/// A cursor over bytes read from disk. Every read is bounds-checked and fails instead of
/// panicking, so corrupt lengths and offsets turn into errors.
pub(crate) struct Decbuf<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decbuf<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Decbuf { buf, pos: 0 }
    }

    /// A cursor at `pos` of `buf`; fails if `pos` is past the end.
    pub(crate) fn at(buf: &'a [u8], pos: usize) -> DecodeResult<Self> {
        if pos > buf.len() {
            return Err("offset past the end of the data");
        }
        Ok(Decbuf { buf, pos })
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("unexpected end of data")?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    pub(crate) fn byte(&mut self) -> DecodeResult<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn be32(&mut self) -> DecodeResult<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn be64(&mut self) -> DecodeResult<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn uvarint(&mut self) -> DecodeResult<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            // The tenth byte may only hold the top bit of a u64.
            if shift == 63 && b > 1 {
                return Err("uvarint overflows 64 bits");
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("uvarint overflows 64 bits")
    }

    pub(crate) fn varint(&mut self) -> DecodeResult<i64> {
        let u = self.uvarint()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    /// A uvarint that must fit in 32 bits (symbol refs, counts, lengths).
    pub(crate) fn uvarint32(&mut self) -> DecodeResult<u32> {
        u32::try_from(self.uvarint()?).map_err(|_| "uvarint overflows 32 bits")
    }

    /// A uvarint length and that many bytes.
    pub(crate) fn uvarint_bytes(&mut self) -> DecodeResult<&'a [u8]> {
        let n = usize::try_from(self.uvarint()?).map_err(|_| "length overflows")?;
        self.bytes(n)
    }

    pub(crate) fn uvarint_str(&mut self) -> DecodeResult<&'a str> {
        std::str::from_utf8(self.uvarint_bytes()?).map_err(|_| "string is not valid UTF-8")
    }
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

/// A buffered file writer that knows its position, for sections that record their offsets.
pub(crate) struct FileWriter {
    out: BufWriter<File>,
    pos: u64,
    path: PathBuf,
}

impl FileWriter {
    /// Creates (or truncates) `path`.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let f = File::create(path).map_err(|e| Error::io("create", path, e))?;
        Ok(FileWriter { out: BufWriter::with_capacity(1 << 20, f), pos: 0, path: path.to_owned() })
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).map_err(|e| Error::io("write", &self.path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Zero bytes up to the next multiple of `align`.
    pub(crate) fn pad(&mut self, align: u64) -> Result<()> {
        const ZEROS: [u8; 16] = [0; 16];
        let n = (align - self.pos % align) % align;
        self.write(&ZEROS[..n as usize])
    }

    /// Flushes and fsyncs; the file is complete on disk when this returns.
    pub(crate) fn finish(self) -> Result<()> {
        let path = self.path;
        let f = self.out.into_inner().map_err(|e| Error::io("write", &path, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io("fsync", &path, e))
    }
}

/// Fsyncs a directory so that entries created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_like_go() {
        let cases: &[(i64, &[u8])] = &[(0, &[0]), (-1, &[1]), (1, &[2]), (-64, &[0x7f]), (64, &[0x80, 1])];
        for &(v, want) in cases {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b, want, "{v}");
            assert_eq!(Decbuf::new(&b).varint(), Ok(v));
        }
        for v in [0, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            let mut d = Decbuf::new(&b);
            assert_eq!(d.uvarint(), Ok(v));
            assert_eq!(d.remaining(), 0);
        }
        for v in [i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Decbuf::new(&b).varint(), Ok(v));
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Decbuf::new(&[0x80, 0x80]).uvarint().is_err());
        assert!(Decbuf::new(&[0xff; 10]).uvarint().is_err());
        assert!(Decbuf::new(&[0x80, 0x80, 0x80, 0x80, 0x10]).uvarint32().is_err());
        assert!(Decbuf::new(&[5, b'a']).uvarint_str().is_err());
        assert!(Decbuf::new(&[1, 0xff]).uvarint_str().is_err());
        assert!(Decbuf::new(&[1, 2, 3]).be32().is_err());
        assert!(Decbuf::at(&[1], 2).is_err());
        // A length near usize::MAX must not overflow the end computation.
        let mut d = Decbuf::at(&[0; 4], 2).unwrap();
        assert!(d.bytes(usize::MAX).is_err());
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
