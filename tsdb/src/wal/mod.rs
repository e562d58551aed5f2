//! The write-ahead log, in Prometheus's on-disk format (`tsdb/wlog` and `tsdb/record`), so that
//! Prometheus and `promtool` can replay a WAL we wrote and we can replay one they wrote.
//!
//! Layout: `wal/%08d` segment files made of 32 KiB pages. Each logical record (optionally snappy
//! compressed as a whole) is cut into fragments that never cross a page; each fragment has a
//! 7-byte header (type, BE16 length, BE32 CRC32C of the data). A page that cannot hold another
//! header is zero-padded. Records never cross segments. `wal/checkpoint.%08d/` holds a compacted
//! copy of everything up to and including that segment, itself a segmented log.
//!
//! - [`Wal`] appends records (encoded with [`record`]), rotates, truncates and checkpoints.
//! - [`replay`] reads the newest checkpoint and the segments after it, repairing a damaged tail.
//! - [`checkpoint()`] folds segments into a new checkpoint, dropping what the head no longer needs.
//!
//! Start-up order: [`replay`] first, then [`Wal::open`] (which starts a fresh segment). A repair
//! during replay may delete segments, which must not include one a writer has open.

mod checkpoint;
mod reader;
pub mod record;
mod replay;
mod writer;

use std::path::{Path, PathBuf};

use crate::fileutil::sync_dir;
use crate::labels::Labels;
use crate::{Error, Result};

pub use checkpoint::{checkpoint, CheckpointStats};
pub use replay::{replay, replay_read_only, ReplayStats};
pub use writer::{Wal, WalOptions, WalStats};

/// A series reference as the head hands it out (Prometheus `chunks.HeadSeriesRef`).
pub type SeriesRef = u64;

/// One series creation: the head's reference and the label set it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefSeries {
    pub series_ref: SeriesRef,
    pub labels: Labels,
}

/// One float sample. `v` is stored as raw bits, so staleness markers survive exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    pub series_ref: SeriesRef,
    pub t: i64,
    pub v: f64,
}

/// Metadata of a series: Prometheus metric type code (0 unknown, 1 counter, 2 gauge,
/// 3 histogram, 4 gauge histogram, 5 summary, 6 info, 7 stateset), unit and help text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefMetadata {
    pub series_ref: SeriesRef,
    pub metric_type: u8,
    pub unit: String,
    pub help: String,
}

/// A deleted time range `[mint, maxt]` of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefTombstone {
    pub series_ref: SeriesRef,
    pub mint: i64,
    pub maxt: i64,
}

/// A decoded logical record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series(Vec<RefSeries>),
    Samples(Vec<RefSample>),
    Tombstones(Vec<RefTombstone>),
    Metadata(Vec<RefMetadata>),
    /// A record type this crate does not model (exemplars, histograms, mmap markers, anything
    /// newer), with its type byte. Replay skips and counts these.
    Unsupported(u8),
}

/// Page size of segment files; every fragment lies within one page.
pub const PAGE_SIZE: usize = 32 * 1024;
/// Fragment header: type byte, BE16 length, BE32 CRC32C.
pub const FRAGMENT_HEADER_SIZE: usize = 7;
/// Prometheus's default segment size.
pub const DEFAULT_SEGMENT_SIZE: usize = 128 * 1024 * 1024;

/// Fragment types (low three bits of the header's first byte).
const FRAG_PAGE_TERM: u8 = 0;
const FRAG_FULL: u8 = 1;
const FRAG_FIRST: u8 = 2;
const FRAG_MIDDLE: u8 = 3;
const FRAG_LAST: u8 = 4;
const FRAG_TYPE_MASK: u8 = 0x07;
/// Header flags: the record is snappy (block format) or zstd compressed.
const FLAG_SNAPPY: u8 = 0x08;
const FLAG_ZSTD: u8 = 0x10;

const CHECKPOINT_PREFIX: &str = "checkpoint.";

/// The file name of segment `n`.
pub fn segment_name(n: u32) -> String {
    format!("{n:08}")
}

/// The path of segment `n` in `dir`.
pub fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(segment_name(n))
}

/// The directory of the checkpoint that covers segments up to and including `n`.
pub fn checkpoint_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{CHECKPOINT_PREFIX}{n:08}"))
}

/// Parses a name made only of ASCII digits, as Prometheus's segment and checkpoint names are.
fn parse_index(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A segment file found on disk.
#[derive(Debug, Clone)]
struct SegmentFile {
    index: u32,
    path: PathBuf,
    len: u64,
}

/// Segment files of `dir`, ascending by number. A missing directory has none.
fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list WAL directory", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list WAL directory", dir, e))?;
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(parse_index) else {
            continue;
        };
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| Error::io("stat WAL segment", &path, e))?;
        if meta.is_file() {
            out.push(SegmentFile { index, path, len: meta.len() });
        }
    }
    out.sort_by_key(|s| s.index);
    Ok(out)
}

/// Complete checkpoints of `dir` (not `.tmp` ones), ascending by number.
fn list_checkpoints(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list WAL directory", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list WAL directory", dir, e))?;
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(|n| n.strip_prefix(CHECKPOINT_PREFIX)).and_then(parse_index) else {
            continue;
        };
        if entry.file_type().map_err(|e| Error::io("stat checkpoint", entry.path(), e))?.is_dir() {
            out.push((index, entry.path()));
        }
    }
    out.sort_by_key(|c| c.0);
    Ok(out)
}

/// The newest complete checkpoint of `dir`, if any.
pub fn last_checkpoint(dir: &Path) -> Result<Option<(u32, PathBuf)>> {
    Ok(list_checkpoints(dir)?.pop())
}

/// Where the WAL in `dir` ends: its newest segment and that segment's size (Prometheus's
/// `LastSegmentAndOffset`). None without segments.
pub fn end(dir: &Path) -> Result<Option<(u32, u64)>> {
    Ok(list_segments(dir)?.last().map(|s| (s.index, s.len)))
}

/// Hands every record of the segmented log in `dir` (not a WAL being written: a checkpoint, a
/// head snapshot) to `f`, in order. Segments must be consecutive; any damage is an error.
pub(crate) fn read_log(dir: &Path, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut buf = Vec::new();
    let segments = list_segments(dir)?;
    let first = segments.first().map(|s| u64::from(s.index));
    for seg in replay::consecutive(segments, first, dir)? {
        let mut reader = reader::SegmentReader::open(&seg.path)?;
        while reader.next_record(&mut buf).map_err(|fault| fault.into_error(&seg.path))?.is_some() {
            f(&buf)?;
        }
    }
    Ok(())
}

/// Total size of the files under `dir`, as Prometheus reports for the WAL's storage size.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
