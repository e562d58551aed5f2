//! Chunk segment files (`chunks/000001`, …): an 8-byte header, then chunks back to back, each
//! `uvarint len | encoding | data | BE32 CRC32C(encoding, data)`. A chunk ref is
//! `segment index (0-based) << 32 | offset of the chunk in that segment`.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::chunkenc::Encoding;
use crate::encoding::{put_be32, put_uvarint, Decbuf, DecodeResult};
use crate::fileutil::{sync_dir, FileMap, FileWriter};
use crate::{Error, Result};

/// Segment header: magic `85 BD 40 DD`, format version 1, three bytes of padding.
const SEGMENT_HEADER: [u8; 8] = [0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0];
/// Segment size at which Prometheus starts a new file.
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 << 20;
/// Prometheus reads at most this many bytes of a chunk's length field.
const MAX_LEN_FIELD: usize = 5;

/// Writes chunks into numbered segment files in a directory.
pub struct ChunkWriter {
    dir: PathBuf,
    segment_size: u64,
    /// The open segment and its 0-based index; none before the first chunk.
    current: Option<(FileWriter, u32)>,
    next_index: u32,
    buf: Vec<u8>,
}

impl ChunkWriter {
    /// Creates `dir` (if needed) and writes 512 MiB segments into it.
    pub fn create(dir: &Path) -> Result<Self> {
        Self::with_segment_size(dir, DEFAULT_SEGMENT_SIZE)
    }

    /// As [`create`](Self::create) with another segment size, which must fit a chunk offset
    /// (32 bits). A chunk never straddles two files, so a chunk larger than the segment size
    /// gets a file of its own.
    pub fn with_segment_size(dir: &Path, segment_size: u64) -> Result<Self> {
        if !(SEGMENT_HEADER.len() as u64 + 1..=u64::from(u32::MAX)).contains(&segment_size) {
            return Err(Error::InvalidBlockInput(format!("chunk segment size {segment_size} out of range")));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        Ok(ChunkWriter { dir: dir.to_owned(), segment_size, current: None, next_index: 0, buf: Vec::new() })
    }

    /// Appends a chunk and returns its ref.
    pub fn write_chunk(&mut self, encoding: Encoding, data: &[u8]) -> Result<u64> {
        if encoding == Encoding::None {
            return Err(Error::InvalidBlockInput("chunk with encoding none".into()));
        }
        let len = u32::try_from(data.len())
            .map_err(|_| Error::InvalidBlockInput(format!("chunk of {} bytes is too large", data.len())))?;
        let b = &mut self.buf;
        b.clear();
        put_uvarint(b, u64::from(len));
        b.push(encoding as u8);
        b.extend_from_slice(data);
        let crc = crc32c::crc32c(&b[b.len() - data.len() - 1..]);
        put_be32(b, crc);

        let cut = match &self.current {
            None => true,
            Some((f, _)) => f.pos() > SEGMENT_HEADER.len() as u64 && f.pos() + b.len() as u64 > self.segment_size,
        };
        if cut {
            self.cut()?;
        }
        let Some((f, index)) = self.current.as_mut() else {
            return Err(Error::InvalidBlockInput("no open chunk segment".into()));
        };
        let offset = f.pos();
        f.write(&self.buf)?;
        Ok((u64::from(*index) << 32) | offset)
    }

    /// Finishes the current segment and opens the next one.
    fn cut(&mut self) -> Result<()> {
        if let Some((f, _)) = self.current.take() {
            f.finish()?;
        }
        let index = self.next_index;
        self.next_index =
            index.checked_add(1).ok_or_else(|| Error::InvalidBlockInput("too many chunk segments".into()))?;
        let path = self.dir.join(segment_name(index));
        let mut f = FileWriter::create(&path)?;
        f.write(&SEGMENT_HEADER)?;
        self.current = Some((f, index));
        Ok(())
    }

    /// Flushes and fsyncs the last segment and the directory.
    pub fn finish(self) -> Result<()> {
        if let Some((f, _)) = self.current {
            f.finish()?;
        }
        sync_dir(&self.dir)
    }
}

/// The `encoding | data` bytes and the stored CRC of the chunk record at `offset`.
fn read_record(map: &[u8], offset: usize) -> DecodeResult<(&[u8], u32)> {
    let mut d = Decbuf::at(map, offset)?;
    let len = d.uvarint32()? as usize;
    if d.pos() - offset > MAX_LEN_FIELD {
        return Err("chunk length field longer than 5 bytes");
    }
    let body = d.bytes(len.checked_add(1).ok_or("chunk length overflows")?)?;
    Ok((body, d.be32()?))
}

/// Decodes the chunk record at the start of `b` (which may run on past it), CRC-checked: its
/// encoding and data, a view of `b`. `path` and `offset` (of the record in its segment) name it
/// in errors.
pub fn decode_chunk(b: &Bytes, path: &Path, offset: u64) -> Result<(Encoding, Bytes)> {
    let corrupt = |reason: String| Error::CorruptFile {
        path: path.to_owned(),
        reason: format!("chunk at offset {offset}: {reason}"),
    };
    let (body, crc) = read_record(b, 0).map_err(|e| corrupt(e.to_owned()))?;
    if crc32c::crc32c(body) != crc {
        return Err(corrupt("CRC32C mismatch".into()));
    }
    let (&enc, data) = body.split_first().ok_or_else(|| corrupt("empty".into()))?;
    match Encoding::try_from(enc) {
        Ok(Encoding::None) | Err(_) => Err(corrupt(format!("unknown encoding {enc}"))),
        Ok(enc) => Ok((enc, b.slice_ref(data))),
    }
}

/// The whole length of the chunk record whose first bytes `b` holds, if `b` holds its length
/// field: what to read when a range proves too short for it.
pub fn chunk_record_len(b: &[u8]) -> Option<usize> {
    let mut d = Decbuf::new(b);
    let len = d.uvarint32().ok()? as usize;
    (d.pos() <= MAX_LEN_FIELD).then(|| d.pos() + len + 1 + 4)
}

/// `000001` for the segment with index 0.
pub fn segment_name(index: u32) -> String {
    format!("{:06}", u64::from(index) + 1)
}

/// The memory-mapped segment files of a block.
pub struct ChunkReader {
    dir: PathBuf,
    /// Path, bytes and map of each segment, in name order; a ref's segment index indexes this.
    /// The bytes are shared with the chunks read from them, so they stay valid after the block
    /// is closed.
    segments: Vec<(PathBuf, Bytes, FileMap)>,
}

impl ChunkReader {
    /// Maps every file in `dir` whose name is a number, in name order, checking headers.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
            let entry = entry.map_err(|e| Error::io("list", dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                if !name.is_empty() && name.bytes().all(|c| c.is_ascii_digit()) {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        let mut segments = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(name);
            let file = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
            let len = file.metadata().map_err(|e| Error::io("stat", &path, e))?.len();
            if len < SEGMENT_HEADER.len() as u64 {
                return Err(Error::CorruptFile {
                    path,
                    reason: format!("{len} bytes is too short for a chunk segment"),
                });
            }
            let file = FileMap::map(&file, &path)?;
            let map = file.bytes();
            if map[..4] != SEGMENT_HEADER[..4] {
                return Err(Error::CorruptFile { path, reason: "bad magic, not a chunk segment".into() });
            }
            if map[4] != 1 {
                return Err(Error::Unsupported { path, what: format!("chunk segment format version {}", map[4]) });
            }
            segments.push((path, map, file));
        }
        Ok(ChunkReader { dir: dir.to_owned(), segments })
    }

    /// The encoding and data of the chunk at `chunk_ref`, CRC-checked; the data is a view of
    /// the segment's map, not a copy.
    pub fn chunk(&self, chunk_ref: u64) -> Result<(Encoding, Bytes)> {
        let (path, map, offset) = self.locate(chunk_ref)?;
        decode_chunk(&map.slice(offset..), path, offset as u64)
    }

    /// Checks that `chunk_ref` names a segment and an offset among its chunks, without reading
    /// the chunk: for chunks this process has just written.
    pub fn check_ref(&self, chunk_ref: u64) -> Result<()> {
        self.locate(chunk_ref).map(|_| ())
    }

    /// The segment `chunk_ref` names and the offset in it, checked to lie after the header.
    fn locate(&self, chunk_ref: u64) -> Result<(&Path, &Bytes, usize)> {
        let index = (chunk_ref >> 32) as usize;
        let offset = (chunk_ref & 0xffff_ffff) as usize;
        let Some((path, map, _)) = self.segments.get(index) else {
            return Err(Error::CorruptFile {
                path: self.dir.clone(),
                reason: format!(
                    "chunk ref {chunk_ref:#x} names segment {index}, but there are {}",
                    self.segments.len()
                ),
            });
        };
        if offset < SEGMENT_HEADER.len() || offset >= map.len() {
            return Err(Error::CorruptFile {
                path: path.clone(),
                reason: format!("chunk ref {chunk_ref:#x} points outside the segment's chunks"),
            });
        }
        Ok((path, map, offset))
    }

    /// Releases the pages of the segments read so far from the process's resident memory
    /// ([`crate::fileutil::release_pages`]), for scans that read every chunk once.
    pub fn release_pages(&self) {
        self.segments.iter().for_each(|(_, _, file)| file.release_pages());
    }

    /// Number of segment files.
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }
}
