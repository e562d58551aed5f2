//! Replay: the newest checkpoint, then every segment after it, repairing damage as Prometheus
//! does (keep everything before the first bad record, drop the rest).

use std::path::Path;
use std::time::Instant;

use crate::{Error, Result};

use super::reader::{Fault, SegmentReader};
use super::record;
use super::writer::truncate_file;
use super::{last_checkpoint, list_segments, segment_path, sync_dir, Record, SegmentFile};

/// What a replay read and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records handed to the callback (checkpoint included).
    pub records: u64,
    /// Series and samples in those records.
    pub series: u64,
    pub samples: u64,
    /// WAL segments read after the checkpoint.
    pub segments: u32,
    /// Damaged places cut off (at most one per replay: everything after it goes).
    pub corruptions_repaired: u32,
    /// Bytes removed by repairs, deleted later segments included.
    pub bytes_dropped: u64,
    /// The checkpoint replayed first, if there was one.
    pub checkpoint: Option<u32>,
    /// Records of types we do not model (exemplars, histograms, ...), skipped.
    pub unsupported_records: u64,
}

/// Damage found in a segment: where, why, and where the last good record ended.
struct Damage {
    offset: u64,
    reason: String,
    good_end: u64,
}

/// Replays the WAL in `dir`: the newest complete checkpoint, then the segments after it, calling
/// `f` with every record in order (records of unsupported types are skipped and counted).
///
/// A damaged last segment (torn or corrupt fragment, bad padding, garbage after the last record)
/// is truncated after its last good record with a warning. Damage in an earlier segment is
/// repaired the way Prometheus repairs it: that segment is truncated the same way and every later
/// segment is deleted, with an error-level log line, since records after a hole cannot be trusted
/// to make sense. A damaged checkpoint, a missing segment, an I/O error or an error from `f` stops
/// the replay with an error and changes nothing.
///
/// Run it before [`super::Wal::open`] on the same directory: a repair may delete segments, and
/// must not delete the one an open writer appends to.
pub fn replay(dir: &Path, f: impl FnMut(Record) -> Result<()>) -> Result<ReplayStats> {
    replay_with(dir, true, f)
}

/// Like [`replay`], but changes nothing on disk: damage ends the replay with a warning instead of
/// a repair. For tools that read the WAL of a TSDB that may be running, whose last record may
/// be half written at this moment.
pub fn replay_read_only(dir: &Path, f: impl FnMut(Record) -> Result<()>) -> Result<ReplayStats> {
    replay_with(dir, false, f)
}

fn replay_with(dir: &Path, repair_damage: bool, mut f: impl FnMut(Record) -> Result<()>) -> Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    let mut buf = Vec::new();
    let mut next: u64 = 0;
    let checkpoint = last_checkpoint(dir)?;
    if let Some((n, cp_dir)) = &checkpoint {
        let start = Instant::now();
        let before = stats.records;
        for seg in consecutive(list_segments(cp_dir)?, None, cp_dir)? {
            if let Some(d) = replay_segment(&seg, &mut f, &mut stats, &mut buf)? {
                return Err(Error::CorruptWal { segment: seg.path, offset: d.offset, reason: d.reason });
            }
        }
        tracing::info!(
            checkpoint = %cp_dir.display(), records = stats.records - before, elapsed = ?start.elapsed(),
            "WAL checkpoint loaded"
        );
        stats.checkpoint = Some(*n);
        next = u64::from(*n) + 1;
    }

    let segments: Vec<SegmentFile> = list_segments(dir)?.into_iter().filter(|s| u64::from(s.index) >= next).collect();
    let segments = consecutive(segments, checkpoint.as_ref().map(|_| next), dir)?;
    let max_segment = segments.last().map_or(0, |s| s.index);
    for (i, seg) in segments.iter().enumerate() {
        let start = Instant::now();
        let before = stats.records;
        stats.segments += 1;
        let damage = replay_segment(seg, &mut f, &mut stats, &mut buf)?;
        tracing::info!(
            segment = seg.index, max_segment, records = stats.records - before, elapsed = ?start.elapsed(),
            "WAL segment loaded"
        );
        if let Some(d) = damage {
            if repair_damage {
                repair(dir, seg, &segments[i + 1..], d, &mut stats)?;
            } else {
                tracing::warn!(
                    file = %seg.path.display(), offset = d.offset, reason = %d.reason,
                    "WAL is damaged (or still being written) here; read up to the last good record, changed nothing"
                );
            }
            break;
        }
    }
    Ok(stats)
}

/// Checks that segment numbers have no holes (and start at `first` if given): a missing segment
/// means lost records that no repair can bring back.
pub(super) fn consecutive(segments: Vec<SegmentFile>, first: Option<u64>, dir: &Path) -> Result<Vec<SegmentFile>> {
    let mut expected = first.or_else(|| segments.first().map(|s| u64::from(s.index)));
    for seg in &segments {
        if let Some(want) = expected {
            if u64::from(seg.index) != want {
                let missing = u32::try_from(want).unwrap_or(u32::MAX);
                return Err(Error::CorruptWal {
                    segment: segment_path(dir, missing),
                    offset: 0,
                    reason: format!(
                        "segment is missing but segment {} exists; WAL segments must be consecutive",
                        seg.index
                    ),
                });
            }
        }
        expected = Some(u64::from(seg.index) + 1);
    }
    Ok(segments)
}

/// Reads one segment through, handing records to `f`. Returns the damage that stopped it, if any.
fn replay_segment(
    seg: &SegmentFile,
    f: &mut impl FnMut(Record) -> Result<()>,
    stats: &mut ReplayStats,
    buf: &mut Vec<u8>,
) -> Result<Option<Damage>> {
    let mut reader = SegmentReader::open(&seg.path)?;
    let mut good_end = 0;
    loop {
        let span = match reader.next_record(buf) {
            Ok(Some(span)) => span,
            Ok(None) => return Ok(None),
            Err(Fault::Corrupt { offset, reason }) => return Ok(Some(Damage { offset, reason, good_end })),
            Err(fault) => return Err(fault.into_error(&seg.path)),
        };
        // A record whose framing and checksum are fine but whose content does not decode is
        // treated as damage too, as Prometheus does.
        let rec = match record::decode(buf) {
            Ok(rec) => rec,
            Err(e) => return Ok(Some(Damage { offset: span.start, reason: e.to_string(), good_end })),
        };
        match &rec {
            Record::Unsupported(_) => stats.unsupported_records += 1,
            Record::Series(s) => stats.series += s.len() as u64,
            Record::Samples(s) => stats.samples += s.len() as u64,
            Record::Tombstones(_) | Record::Metadata(_) => {}
        }
        if !matches!(rec, Record::Unsupported(_)) {
            stats.records += 1;
            f(rec)?;
        }
        good_end = span.end;
    }
}

/// Cuts `seg` after its last good record; if any later segment holds data, deletes them all.
fn repair(dir: &Path, seg: &SegmentFile, later: &[SegmentFile], d: Damage, stats: &mut ReplayStats) -> Result<()> {
    truncate_file(&seg.path, d.good_end)?;
    let mut dropped = seg.len.saturating_sub(d.good_end);
    // Empty segments after the damaged one are what restarts leave behind; the damage is still
    // at the tail of the log, and removing them would gain nothing.
    if later.iter().all(|s| s.len == 0) {
        tracing::warn!(
            file = %seg.path.display(), offset = d.offset, reason = %d.reason, kept_bytes = d.good_end,
            bytes_dropped = dropped, "WAL tail is damaged; truncated it after the last good record"
        );
    } else {
        let later_bytes: u64 = later.iter().map(|s| s.len).sum();
        tracing::error!(
            file = %seg.path.display(), offset = d.offset, reason = %d.reason, kept_bytes = d.good_end,
            segment_bytes_dropped = dropped, later_segments_deleted = later.len(), later_bytes_dropped = later_bytes,
            "WAL is corrupt before its last segment; truncating this segment after its last good record and \
             deleting every later segment, whose records are lost"
        );
        for s in later {
            std::fs::remove_file(&s.path).map_err(|e| Error::io("remove WAL segment", &s.path, e))?;
        }
        sync_dir(dir)?;
        dropped += later_bytes;
    }
    stats.corruptions_repaired += 1;
    stats.bytes_dropped += dropped;
    Ok(())
}
