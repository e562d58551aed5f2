//! Completed head chunks on disk, in Prometheus's `chunks_head/` format, read through memory
//! maps: a closed chunk costs the head a 16-byte reference instead of its bytes on the heap, and
//! WAL replay skips the samples these files already hold.
//!
//! File `%06d`: `BE32 magic 0x0130BC91 | u8 version 1 | 3 zero bytes`, then per chunk
//! `BE64 series ref | BE64 min time | BE64 max time | u8 encoding | uvarint len | data |
//! BE32 CRC32C of everything before it`. A chunk's ref is `file number << 32 | offset`. Files
//! are cut at 128 MiB, and a new one is started at every open, as Prometheus does.
//!
//! The files are a cache of the WAL, never the only copy: a chunk is written after its samples
//! are in the WAL, and the WAL keeps every sample of the head until a block holds it. So
//! nothing here is fsynced for durability, and damage is repaired as Prometheus repairs it:
//! a last file too short for its magic number (or with a zero one) is deleted, and a file with a
//! torn or corrupt chunk is deleted with every file after it; replay then takes those samples
//! from the WAL.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use crate::chunkenc::Encoding;
use crate::encoding::{put_be32, put_be64, put_uvarint, Decbuf, DecodeResult};
use crate::fileutil::{release_pages, FileMap};
use crate::wal::SeriesRef;
use crate::{Error, Result};

/// The directory below the TSDB directory, as Prometheus names it.
pub const DIR_NAME: &str = "chunks_head";

const MAGIC: u32 = 0x0130_BC91;
const VERSION: u8 = 1;
const HEADER_LEN: usize = 8;
const CRC_LEN: usize = 4;
/// Prometheus's `MaxHeadChunkFileSize`.
const MAX_FILE_SIZE: u64 = 128 << 20;

/// Where a chunk is in the files: file number << 32 | offset of its record.
pub type ChunkRef = u64;

/// The number of the file a chunk ref points into.
pub fn chunk_file(r: ChunkRef) -> u32 {
    (r >> 32) as u32
}

/// A chunk found in the files at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedChunk {
    pub series_ref: SeriesRef,
    pub min_time: i64,
    pub max_time: i64,
    pub chunk_ref: ChunkRef,
}

/// The file being appended to.
struct Writer {
    /// Number of the open file, or of the newest file when none is open.
    seq: u32,
    file: Option<File>,
    /// Bytes in the open file.
    size: u64,
    /// Record scratch space, reused.
    buf: Vec<u8>,
}

/// The head chunk files of one TSDB directory.
pub struct ChunkFiles {
    dir: PathBuf,
    /// Every readable file by number. The open file is mapped at the maximum file size, past
    /// its end: only offsets already written are ever read.
    maps: RwLock<BTreeMap<u32, MappedFile>>,
    /// None when opened read-only: closed chunks then stay on the heap.
    writer: Option<Mutex<Writer>>,
}

/// One file's map, and the map as shared bytes that chunks handed to readers are cut from.
struct MappedFile {
    map: FileMap,
    bytes: Bytes,
}

impl MappedFile {
    fn new(map: Mmap) -> Self {
        let map = FileMap::from_map(map);
        MappedFile { bytes: map.bytes(), map }
    }
}

/// The files' maps, held for reading chunks.
pub struct Maps<'a>(RwLockReadGuard<'a, BTreeMap<u32, MappedFile>>);

impl Maps<'_> {
    /// The XOR data of the chunk at `r`; None if `r` does not name a chunk record.
    pub fn get(&self, r: ChunkRef) -> Option<&[u8]> {
        let file = self.0.get(&chunk_file(r))?;
        Some(parse_record(&file.bytes, (r & 0xffff_ffff) as usize).ok()?.data)
    }

    /// [`Maps::get`] as bytes sharing the file's map (no copy); they stay valid after the
    /// file is deleted.
    pub fn get_shared(&self, r: ChunkRef) -> Option<Bytes> {
        let file = self.0.get(&chunk_file(r))?;
        let data = parse_record(&file.bytes, (r & 0xffff_ffff) as usize).ok()?.data;
        Some(file.bytes.slice_ref(data))
    }
}

/// A chunk record as read from a file (CRC not checked).
struct Record<'a> {
    series_ref: SeriesRef,
    min_time: i64,
    max_time: i64,
    encoding: u8,
    data: &'a [u8],
    /// Offset just past the record's CRC.
    end: usize,
}

fn parse_record(map: &[u8], pos: usize) -> DecodeResult<Record<'_>> {
    let mut d = Decbuf::at(map, pos)?;
    let series_ref = d.be64()?;
    let min_time = d.be64()? as i64;
    let max_time = d.be64()? as i64;
    let encoding = d.byte()?;
    let len = d.uvarint32()? as usize;
    let data = d.bytes(len)?;
    Ok(Record { series_ref, min_time, max_time, encoding, data, end: d.pos() + CRC_LEN })
}

fn file_name(seq: u32) -> String {
    format!("{seq:06}")
}

/// Numbers of the files in `dir`, ascending; none if `dir` does not exist.
fn list(dir: &Path) -> Result<Vec<u32>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut seqs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        if let Some(seq) = entry.file_name().to_str().filter(|n| n.len() == 6).and_then(|n| n.parse().ok()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Every chunk of one file, checked: header, bounds, encoding and CRC. A zero tail ends the file
/// (space never written); anything else that does not parse is corruption.
fn scan(map: &[u8], seq: u32, out: &mut Vec<LoadedChunk>) -> std::result::Result<(), String> {
    if map.len() < HEADER_LEN {
        return Err(format!("{} bytes is too short for the file header", map.len()));
    }
    if map[..4] != MAGIC.to_be_bytes() {
        return Err("bad magic number".into());
    }
    if map[4] != VERSION {
        return Err(format!("unsupported format version {}", map[4]));
    }
    let mut pos = HEADER_LEN;
    while pos < map.len() {
        if map[pos..].iter().all(|&b| b == 0) {
            break;
        }
        let Record { series_ref, min_time, max_time, encoding: enc, data, end } =
            parse_record(map, pos).map_err(|e| format!("chunk at offset {pos}: {e}"))?;
        let crc = map.get(end - CRC_LEN..end).ok_or_else(|| format!("chunk at offset {pos}: no CRC"))?;
        if crc32c::crc32c(&map[pos..end - CRC_LEN]).to_be_bytes() != crc {
            return Err(format!("chunk at offset {pos}: CRC32C mismatch"));
        }
        if enc != Encoding::Xor as u8 {
            return Err(format!("chunk at offset {pos}: unsupported encoding {enc}"));
        }
        if data.len() < 2 || min_time > max_time {
            return Err(format!("chunk at offset {pos}: not a chunk of samples"));
        }
        out.push(LoadedChunk { series_ref, min_time, max_time, chunk_ref: u64::from(seq) << 32 | pos as u64 });
        pos = end;
    }
    Ok(())
}

impl ChunkFiles {
    /// Opens the files in `dir` and returns every chunk in them, oldest file first. `writable`
    /// creates `dir` if needed, repairs damage (see the module doc) and lets closed chunks be
    /// written; read-only, nothing on disk changes and reading stops at the first damaged file.
    pub fn open(dir: &Path, writable: bool) -> Result<(ChunkFiles, Vec<LoadedChunk>)> {
        if writable {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        let mut seqs = list(dir)?;
        if writable {
            if let Some(&last) = seqs.last() {
                let path = dir.join(file_name(last));
                let mut head = Vec::with_capacity(4);
                File::open(&path)
                    .and_then(|f| f.take(4).read_to_end(&mut head))
                    .map_err(|e| Error::io("read", &path, e))?;
                // As Prometheus's `repairLastChunkFile`: a crash between creating the file and
                // writing its header leaves it short or zero.
                if head.len() < 4 || head == [0; 4] {
                    tracing::warn!(file = %path.display(), "removing a head chunk file without a header");
                    std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                    seqs.pop();
                }
            }
        }
        let mut maps = BTreeMap::new();
        let mut chunks = Vec::new();
        for (i, &seq) in seqs.iter().enumerate() {
            let path = dir.join(file_name(seq));
            let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
            // SAFETY: a file is only appended to while it is the open file of a writer, and
            // never truncated while mapped; only written offsets are read.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mmap", &path, e))?;
            let before = chunks.len();
            if let Err(reason) = scan(&map, seq, &mut chunks) {
                chunks.truncate(before);
                tracing::warn!(
                    file = %path.display(), %reason, removed = writable,
                    "corrupt head chunk file; it and the files after it are dropped, the WAL holds their samples"
                );
                if writable {
                    for &later in &seqs[i..] {
                        let p = dir.join(file_name(later));
                        std::fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
                    }
                }
                break;
            }
            release_pages(&map);
            maps.insert(seq, MappedFile::new(map));
        }
        let last = maps.keys().next_back().copied().unwrap_or(0);
        let writer = writable.then(|| Mutex::new(Writer { seq: last, file: None, size: 0, buf: Vec::new() }));
        Ok((ChunkFiles { dir: dir.to_owned(), maps: RwLock::new(maps), writer }, chunks))
    }

    /// Whether closed chunks can be written (opened writable).
    pub fn writable(&self) -> bool {
        self.writer.is_some()
    }

    /// The maps, for reading chunks. Hold briefly: deleting files waits for it.
    pub fn maps(&self) -> Maps<'_> {
        Maps(self.maps.read())
    }

    /// Appends a closed XOR chunk of `series_ref` and returns its ref. On a failed write the
    /// torn record is cut off again, or the file abandoned, so later chunks stay readable.
    pub fn write(&self, series_ref: SeriesRef, min_time: i64, max_time: i64, data: &[u8]) -> Result<ChunkRef> {
        let Some(writer) = &self.writer else {
            return Err(Error::io("write head chunk to", &self.dir, std::io::ErrorKind::ReadOnlyFilesystem.into()));
        };
        let mut w = writer.lock();
        let w = &mut *w;
        w.buf.clear();
        put_be64(&mut w.buf, series_ref);
        put_be64(&mut w.buf, min_time as u64);
        put_be64(&mut w.buf, max_time as u64);
        w.buf.push(Encoding::Xor as u8);
        put_uvarint(&mut w.buf, data.len() as u64);
        w.buf.extend_from_slice(data);
        let crc = crc32c::crc32c(&w.buf);
        put_be32(&mut w.buf, crc);
        if w.file.is_none() || w.size + w.buf.len() as u64 > MAX_FILE_SIZE {
            self.cut_file(w)?;
        }
        let path = |seq| self.dir.join(file_name(seq));
        let Some(file) = w.file.as_mut() else {
            return Err(Error::io("write head chunk to", path(w.seq), std::io::ErrorKind::NotFound.into()));
        };
        if let Err(e) = file.write_all(&w.buf) {
            if file.set_len(w.size).is_err() {
                w.file = None;
            }
            return Err(Error::io("write head chunk to", path(w.seq), e));
        }
        let r = u64::from(w.seq) << 32 | w.size;
        w.size += w.buf.len() as u64;
        Ok(r)
    }

    /// Finishes the open file (if any) and starts the next one.
    fn cut_file(&self, w: &mut Writer) -> Result<()> {
        if let Some(done) = w.file.take() {
            // As Prometheus: a finished file is synced, so that after a machine crash it is
            // either whole or repaired, not silently short.
            done.sync_data().map_err(|e| Error::io("sync", self.dir.join(file_name(w.seq)), e))?;
        }
        let seq = w.seq + 1;
        let path = self.dir.join(file_name(seq));
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        put_be32(&mut header, MAGIC);
        header.extend_from_slice(&[VERSION, 0, 0, 0]);
        file.write_all(&header).map_err(|e| Error::io("write", &path, e))?;
        // SAFETY: see `open`; mapped past the end so the file can grow under the map.
        let map = unsafe { MmapOptions::new().len(MAX_FILE_SIZE as usize).map(&file) }
            .map_err(|e| Error::io("mmap", &path, e))?;
        self.maps.write().insert(seq, MappedFile::new(map));
        w.seq = seq;
        w.size = HEADER_LEN as u64;
        w.file = Some(file);
        Ok(())
    }

    /// Makes the next write start a new file, so that the current one can be deleted once no
    /// chunk in it is needed, and returns the number below which files take no more writes.
    pub fn rotate(&self) -> u32 {
        match &self.writer {
            Some(writer) => {
                let mut w = writer.lock();
                if w.file.as_ref().is_some() && w.size > HEADER_LEN as u64 {
                    if let Some(done) = w.file.take() {
                        if let Err(error) = done.sync_data() {
                            tracing::warn!(dir = %self.dir.display(), %error, "cannot sync a head chunk file");
                        }
                    }
                }
                w.seq + u32::from(w.file.is_none())
            }
            None => u32::MAX,
        }
    }

    /// Deletes the files numbered below `keep_from` (none of whose chunks the head uses), and
    /// takes the pages a block cut just read of the others out of the process's memory.
    /// Opened read-only, deletes nothing.
    pub fn delete_before(&self, keep_from: u32) -> Result<usize> {
        if !self.writable() {
            return Ok(0);
        }
        let doomed: Vec<u32> = {
            let mut maps = self.maps.write();
            let doomed: Vec<u32> = maps.range(..keep_from).map(|(&s, _)| s).collect();
            for s in &doomed {
                maps.remove(s);
            }
            maps.values().for_each(|f| f.map.release_pages());
            doomed
        };
        for &seq in &doomed {
            let path = self.dir.join(file_name(seq));
            std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        }
        Ok(doomed.len())
    }

    /// Syncs the open file.
    pub fn sync(&self) -> Result<()> {
        if let Some(writer) = &self.writer {
            let w = writer.lock();
            if let Some(f) = &w.file {
                f.sync_data().map_err(|e| Error::io("sync", self.dir.join(file_name(w.seq)), e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8) -> Vec<u8> {
        let mut a = crate::chunkenc::XorAppender::new();
        for i in 0..i64::from(n) {
            a.append(i * 15_000, i as f64);
        }
        a.bytes().to_vec()
    }

    #[test]
    fn written_chunks_read_back_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (files, loaded) = ChunkFiles::open(dir.path(), true).unwrap();
        assert!(loaded.is_empty());
        let a = files.write(7, 0, 100, &chunk(3)).unwrap();
        let b = files.write(9, 5, 200, &chunk(5)).unwrap();
        assert_eq!((chunk_file(a), a & 0xffff_ffff), (1, HEADER_LEN as u64));
        assert_eq!(files.maps().get(a), Some(&chunk(3)[..]));
        assert_eq!(files.maps().get(b), Some(&chunk(5)[..]));
        drop(files);
        let (files, loaded) = ChunkFiles::open(dir.path(), true).unwrap();
        assert_eq!(
            loaded,
            vec![
                LoadedChunk { series_ref: 7, min_time: 0, max_time: 100, chunk_ref: a },
                LoadedChunk { series_ref: 9, min_time: 5, max_time: 200, chunk_ref: b },
            ]
        );
        assert_eq!(files.maps().get(b), Some(&chunk(5)[..]));
        // Every open writes to a new file.
        let c = files.write(7, 101, 300, &chunk(2)).unwrap();
        assert_eq!(chunk_file(c), 2);
    }

    #[test]
    fn shared_chunks_outlive_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = ChunkFiles::open(dir.path(), true).unwrap();
        let a = files.write(1, 0, 10, &chunk(4)).unwrap();
        let shared = files.maps().get_shared(a).unwrap();
        assert_eq!(shared, chunk(4));
        // The bytes are the map's, not a copy.
        assert_eq!(shared.as_ptr(), files.maps().get(a).unwrap().as_ptr());
        assert_eq!(files.rotate(), 2);
        files.write(1, 11, 20, &chunk(3)).unwrap();
        assert_eq!(files.delete_before(2).unwrap(), 1);
        assert_eq!(list(dir.path()).unwrap(), vec![2]);
        assert_eq!(files.maps().get_shared(a), None);
        assert_eq!(shared, chunk(4), "still readable after the file is gone");
    }

    #[test]
    fn a_torn_file_is_removed_with_the_files_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = ChunkFiles::open(dir.path(), true).unwrap();
        let a = files.write(1, 0, 10, &chunk(4)).unwrap();
        assert_eq!(files.rotate(), 2);
        let b = files.write(1, 11, 20, &chunk(4)).unwrap();
        files.write(1, 21, 30, &chunk(4)).unwrap();
        assert_eq!(files.rotate(), 3);
        files.write(2, 0, 10, &chunk(4)).unwrap();
        drop(files);
        // Tear the last chunk of file 2: a crash in the middle of a write.
        let second = dir.path().join("000002");
        let len = std::fs::metadata(&second).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&second).unwrap().set_len(len - 3).unwrap();

        // Read-only: stops at the damage, changes nothing.
        let (_, loaded) = ChunkFiles::open(dir.path(), false).unwrap();
        assert_eq!(loaded.iter().map(|c| c.chunk_ref).collect::<Vec<_>>(), vec![a]);
        assert_eq!(list(dir.path()).unwrap(), vec![1, 2, 3]);

        let (files, loaded) = ChunkFiles::open(dir.path(), true).unwrap();
        assert_eq!(loaded.iter().map(|c| c.chunk_ref).collect::<Vec<_>>(), vec![a]);
        assert_eq!(list(dir.path()).unwrap(), vec![1]);
        assert_eq!(files.maps().get(b), None);
        assert_eq!(chunk_file(files.write(3, 0, 1, &chunk(2)).unwrap()), 2);
    }

    #[test]
    fn zero_tail_ends_a_file_and_a_headerless_last_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = ChunkFiles::open(dir.path(), true).unwrap();
        let a = files.write(1, 0, 10, &chunk(4)).unwrap();
        drop(files);
        let first = dir.path().join("000001");
        let len = std::fs::metadata(&first).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&first).unwrap().set_len(len + 4096).unwrap();
        std::fs::write(dir.path().join("000002"), [0, 0]).unwrap();
        let (_, loaded) = ChunkFiles::open(dir.path(), true).unwrap();
        assert_eq!(loaded.iter().map(|c| c.chunk_ref).collect::<Vec<_>>(), vec![a]);
        assert_eq!(list(dir.path()).unwrap(), vec![1]);
    }

    #[test]
    fn a_corrupt_chunk_fails_its_crc() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = ChunkFiles::open(dir.path(), true).unwrap();
        files.write(1, 0, 10, &chunk(4)).unwrap();
        drop(files);
        let first = dir.path().join("000001");
        let mut bytes = std::fs::read(&first).unwrap();
        // A bit of the chunk data, past the series ref, times, encoding and length.
        bytes[HEADER_LEN + 8 + 8 + 8 + 1 + 1 + 3] ^= 1;
        std::fs::write(&first, bytes).unwrap();
        let (_, loaded) = ChunkFiles::open(dir.path(), true).unwrap();
        assert!(loaded.is_empty());
        assert!(list(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn delete_before_spares_newer_files() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = ChunkFiles::open(dir.path(), true).unwrap();
        files.write(1, 0, 10, &chunk(4)).unwrap();
        let keep = files.rotate();
        let b = files.write(1, 11, 20, &chunk(4)).unwrap();
        assert_eq!(files.delete_before(keep).unwrap(), 1);
        assert_eq!(list(dir.path()).unwrap(), vec![2]);
        assert_eq!(files.maps().get(b), Some(&chunk(4)[..]));
        drop(files);
        let (files, _) = ChunkFiles::open(dir.path(), false).unwrap();
        assert_eq!(files.rotate(), u32::MAX);
        assert_eq!(files.delete_before(u32::MAX).unwrap(), 0, "read-only deletes nothing");
        assert_eq!(list(dir.path()).unwrap(), vec![2]);
    }
}
