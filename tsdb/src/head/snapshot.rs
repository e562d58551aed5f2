//! The head snapshot written at a clean shutdown, in the format of Prometheus's
//! `memory-snapshot-on-shutdown`: a directory `chunk_snapshot.<segment>.<offset>` beside `wal/`,
//! named after where the WAL ended, holding a segmented log (the WAL's framing) of one record per
//! series: `u8 1 | BE64 ref | labels | BE64 next cut time | uvarint 0`, or `uvarint 1 | BE64 min
//! time | BE64 max time | u8 encoding | uvarint len | open chunk | 3 × (BE64 0 | BE64 0) | BE64 0 |
//! BE64 last value`. The field after the labels held Prometheus's chunk range once and is
//! ignored by it now; it carries the time at which the open chunk is cut, so that a restored
//! head cuts its chunks where the running one would have. Beside the log, the file
//! `last_series_ref` holds the highest series ref the head handed out, so a restored head never
//! gives a new series the ref of one that is gone but still named in the WAL.
//!
//! A restart takes the head from the snapshot and the chunk files instead of replaying the WAL,
//! but only when nothing has happened since: the WAL must end exactly where the name says, and
//! the chunk files must hold every closed chunk the head had (their count is in the snapshot
//! too). Otherwise the WAL, which still holds every head sample, is replayed as always. A
//! snapshot is removed once a head is open, so a crash later never restores a stale one.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::chunkenc::{Encoding, OpenChunk};
use crate::encoding::{put_be64, put_uvarint};
use crate::fileutil::sync_dir;
use crate::labels::Labels;
use crate::wal::record::{put_labels, Decoder};
use crate::wal::{self, SeriesRef, Wal, WalOptions};
use crate::{Error, Result};

use super::Head;

const PREFIX: &str = "chunk_snapshot.";
/// Record types of the snapshot log (Prometheus's `chunkSnapshotRecordType*`).
const RECORD_SERIES: u8 = 1;
const RECORD_TOMBSTONES: u8 = 2;
const RECORD_EXEMPLARS: u8 = 3;
/// Beside the log: `<highest series ref> <closed chunks>`, decimal, one line.
const STATE_FILE: &str = "last_series_ref";
/// Records are logged in batches of about this many bytes (as Prometheus does).
const BATCH_BYTES: usize = 10 << 20;

/// One series of a snapshot.
pub struct SnapshotSeries {
    pub series_ref: SeriesRef,
    pub labels: Labels,
    pub open: Option<SnapshotChunk>,
}

/// The open chunk of a snapshot series, ready to take appends.
pub struct SnapshotChunk {
    pub chunk: OpenChunk,
    pub min_time: i64,
    pub max_time: i64,
    /// The open chunk is cut before a sample at or after this time.
    pub next_at: i64,
}

/// A snapshot read back: every series, the highest ref handed out and how many closed chunks
/// the chunk files must give back.
pub struct Snapshot {
    pub dir: PathBuf,
    pub series: Vec<SnapshotSeries>,
    pub last_ref: SeriesRef,
    pub closed_chunks: u64,
}

/// What writing a snapshot did.
#[derive(Debug, Clone)]
pub struct SnapshotStats {
    pub dir: PathBuf,
    pub series: u64,
    pub bytes: u64,
}

fn dir_name(segment: u32, offset: u64) -> String {
    format!("{PREFIX}{segment:06}.{offset:010}")
}

/// The snapshots in `dir` as (segment, offset, path), oldest first; names that do not parse are
/// not snapshots (Prometheus skips them too).
fn list(dir: &Path) -> Result<Vec<(u32, u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list TSDB directory", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list TSDB directory", dir, e))?;
        let name = entry.file_name();
        let Some((segment, offset)) =
            name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|n| n.split_once('.'))
        else {
            continue;
        };
        let (Ok(segment), Ok(offset)) = (segment.parse::<u32>(), offset.parse::<u64>()) else {
            continue;
        };
        out.push((segment, offset, entry.path()));
    }
    out.sort_by_key(|&(s, o, _)| (s, o));
    Ok(out)
}

/// Removes every snapshot in the TSDB directory `dir`, half-written ones included.
pub fn remove_all(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list TSDB directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list TSDB directory", dir, e))?;
        if entry.file_name().to_str().is_some_and(|n| n.starts_with(PREFIX)) {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove head snapshot", &path, e))?;
        }
    }
    Ok(())
}

/// Writes the snapshot of `head` into the TSDB directory `dir` for a WAL that ends at
/// `wal_end`, replacing older ones. The head must be quiet: no commit in flight, none to come.
/// Refused if a closed chunk is not in the chunk files (a failed write left it on the heap):
/// restoring would lose it, so the next start replays the WAL instead.
pub fn write(head: &Head, dir: &Path, wal_end: (u32, u64)) -> Result<SnapshotStats> {
    let final_dir = dir.join(dir_name(wal_end.0, wal_end.1));
    let mut tmp = final_dir.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    remove_all(dir)?;
    let written = write_log(head, &tmp);
    let (series, closed_chunks) = match written {
        Ok(counts) => counts,
        Err(e) => {
            // Best effort: the next start removes leftovers anyway.
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let state = tmp.join(STATE_FILE);
    let line = format!("{} {closed_chunks}\n", head.last_ref.load(std::sync::atomic::Ordering::Relaxed));
    std::fs::write(&state, line).map_err(|e| Error::io("write head snapshot", &state, e))?;
    std::fs::File::open(&state).and_then(|f| f.sync_all()).map_err(|e| Error::io("fsync head snapshot", &state, e))?;
    sync_dir(&tmp)?;
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io("rename head snapshot", &tmp, e))?;
    sync_dir(dir)?;
    Ok(SnapshotStats { bytes: wal::dir_size(&final_dir), dir: final_dir, series })
}

/// Logs one record per series into a new log in `tmp`; returns the series and closed chunks
/// written.
fn write_log(head: &Head, tmp: &Path) -> Result<(u64, u64)> {
    let log = Wal::open(tmp, WalOptions::default())?;
    let (mut series, mut closed_chunks) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(BATCH_BYTES + (1 << 16));
    let mut ends = Vec::new();
    let flush = |buf: &mut Vec<u8>, ends: &mut Vec<usize>| -> Result<()> {
        let mut start = 0;
        let recs: Vec<&[u8]> = ends
            .iter()
            .map(|&end| {
                let rec = &buf[start..end];
                start = end;
                rec
            })
            .collect();
        log.log(&recs)?;
        buf.clear();
        ends.clear();
        Ok(())
    };
    for stripe in head.ref_stripes.iter() {
        let stripe = stripe.read();
        for s in stripe.values() {
            // A series whose record never reached the WAL has no samples; restored, it would
            // count as logged and its samples would follow no series record.
            if !s.wal_logged.load(std::sync::atomic::Ordering::Acquire) {
                continue;
            }
            let st = s.state.lock();
            if st.closed.iter().any(|c| c.chunk_ref().is_none()) {
                return Err(Error::io(
                    "write head snapshot",
                    tmp,
                    std::io::Error::other(format!("series {} has closed chunks outside the chunk files", s.labels)),
                ));
            }
            closed_chunks += st.closed.len() as u64;
            series += 1;
            encode_series(&mut buf, s.series_ref, s.labels.iter(), st.next_at, st.open.as_ref());
            ends.push(buf.len());
            if buf.len() >= BATCH_BYTES {
                flush(&mut buf, &mut ends)?;
            }
        }
    }
    if !ends.is_empty() {
        flush(&mut buf, &mut ends)?;
    }
    log.close()?;
    Ok((series, closed_chunks))
}

/// The snapshot in the TSDB directory `dir` made for a WAL ending at `wal_end`, read and
/// checked whole; None if there is none for that end. A snapshot that does not read back is
/// logged and ignored: the WAL has everything it had.
pub fn read_matching(dir: &Path, wal_end: Option<(u32, u64)>) -> Result<Option<Snapshot>> {
    let Some((segment, offset, path)) = list(dir)?.pop() else {
        return Ok(None);
    };
    if wal_end != Some((segment, offset)) {
        tracing::info!(
            snapshot = %path.display(), ?wal_end,
            "the WAL does not end where the head snapshot was taken (the last shutdown was not clean, or the \
             WAL changed since); replaying the WAL"
        );
        return Ok(None);
    }
    let start = Instant::now();
    match read(&path) {
        Ok(snap) => {
            tracing::info!(snapshot = %path.display(), series = snap.series.len(), elapsed = ?start.elapsed(), "head snapshot read");
            Ok(Some(snap))
        }
        Err(error) => {
            tracing::warn!(snapshot = %path.display(), %error, "head snapshot is unreadable; replaying the WAL");
            Ok(None)
        }
    }
}

fn read(dir: &Path) -> Result<Snapshot> {
    let state_path = dir.join(STATE_FILE);
    let state = std::fs::read_to_string(&state_path).map_err(|e| Error::io("read head snapshot", &state_path, e))?;
    let corrupt = |reason: &str| Error::CorruptFile { path: state_path.clone(), reason: reason.to_string() };
    let (last_ref, closed_chunks) = state.trim_end().split_once(' ').ok_or_else(|| corrupt("not two numbers"))?;
    let last_ref: SeriesRef = last_ref.parse().map_err(|_| corrupt("bad series ref"))?;
    let closed_chunks: u64 = closed_chunks.parse().map_err(|_| corrupt("bad chunk count"))?;
    let mut series = Vec::new();
    wal::read_log(dir, |rec| {
        match rec.first() {
            Some(&RECORD_SERIES) => series.push(decode_series(rec)?),
            // Written by Prometheus; this head keeps neither.
            Some(&RECORD_TOMBSTONES | &RECORD_EXEMPLARS) => {}
            other => return Err(Error::CorruptRecord(format!("head snapshot: record type {other:?}"))),
        }
        Ok(())
    })?;
    Ok(Snapshot { dir: dir.to_path_buf(), series, last_ref, closed_chunks })
}

/// Appends the record of one series: its ref, labels, the time its open chunk is cut at and
/// the open chunk (an empty one counts as none).
pub fn encode_series<'a>(
    buf: &mut Vec<u8>,
    series_ref: SeriesRef,
    labels: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    next_at: i64,
    open: Option<&OpenChunk>,
) {
    buf.push(RECORD_SERIES);
    put_be64(buf, series_ref);
    put_labels(buf, labels);
    match open.and_then(|c| Some((c, c.first_time()?, c.last_time()?, c.last_value()?))) {
        None => {
            put_be64(buf, 0);
            put_uvarint(buf, 0);
        }
        Some((chunk, min_time, max_time, last_value)) => {
            put_be64(buf, next_at as u64);
            put_uvarint(buf, 1);
            put_be64(buf, min_time as u64);
            put_be64(buf, max_time as u64);
            buf.push(Encoding::Xor as u8);
            let bytes = chunk.xor_bytes();
            put_uvarint(buf, bytes.len() as u64);
            buf.extend_from_slice(&bytes);
            // Where Prometheus once kept its last four samples; it reads only the last value.
            buf.extend_from_slice(&[0; 7 * 8]);
            put_be64(buf, last_value.to_bits());
        }
    }
}

/// Decodes the record of one series (type byte included), checking its open chunk whole.
pub fn decode_series(rec: &[u8]) -> Result<SnapshotSeries> {
    let Some((&RECORD_SERIES, body)) = rec.split_first() else {
        return Err(Error::CorruptRecord(format!("head snapshot: not a series record: {:?}", rec.first())));
    };
    let mut d = Decoder::new(body, "head snapshot series");
    let series_ref = d.be64()?;
    let labels = d.labels()?;
    if labels.is_empty() {
        return Err(d.err("empty label set"));
    }
    let next_at = d.be64()? as i64;
    let open = match d.uvarint()? {
        0 => None,
        1 => {
            let min_time = d.be64()? as i64;
            let max_time = d.be64()? as i64;
            let encoding = d.byte()?;
            if encoding != Encoding::Xor as u8 {
                return Err(d.err(&format!("open chunk of encoding {encoding}, not XOR")));
            }
            let chunk = OpenChunk::resume(d.uvarint_bytes()?)?;
            for _ in 0..8 {
                d.be64()?;
            }
            if chunk.first_time() != Some(min_time) || chunk.last_time() != Some(max_time) {
                return Err(d.err("open chunk does not span the times recorded for it"));
            }
            // Zero from Prometheus: cut at the next sample, as Prometheus does after a restore.
            let next_at = if next_at == 0 { max_time } else { next_at };
            Some(SnapshotChunk { chunk, min_time, max_time, next_at })
        }
        n => return Err(d.err(&format!("{n} open chunks"))),
    };
    if !d.at_end() {
        return Err(d.err("bytes after the record"));
    }
    Ok(SnapshotSeries { series_ref, labels, open })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(samples: &[(i64, f64)]) -> OpenChunk {
        let mut c = OpenChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        c
    }

    fn labels() -> Labels {
        Labels::from_pairs(&[("__name__", "up"), ("job", "node")])
    }

    #[test]
    fn a_series_record_round_trips_and_its_chunk_takes_appends() {
        let open = chunk(&[(1000, 1.0), (16_000, 2.5), (31_000, f64::NAN)]);
        let mut rec = Vec::new();
        encode_series(&mut rec, 42, labels().iter(), 7_200_000, Some(&open));
        let s = decode_series(&rec).unwrap();
        assert_eq!((s.series_ref, &s.labels), (42, &labels()));
        let mut restored = s.open.unwrap();
        assert_eq!((restored.min_time, restored.max_time, restored.next_at), (1000, 31_000, 7_200_000));
        assert_eq!(restored.chunk.xor_bytes(), open.xor_bytes());
        // The restored encoder continues exactly as the original would have.
        let mut original = open.clone();
        original.append(46_000, 3.0);
        restored.chunk.append(46_000, 3.0);
        assert_eq!(restored.chunk.xor_bytes(), original.xor_bytes());

        let mut rec = Vec::new();
        encode_series(&mut rec, 7, labels().iter(), 123, None);
        let s = decode_series(&rec).unwrap();
        assert!(s.open.is_none());
    }

    #[test]
    fn a_zero_cut_time_cuts_at_the_next_sample_as_prometheus_does() {
        let open = chunk(&[(1000, 1.0), (2000, 2.0)]);
        let mut rec = Vec::new();
        encode_series(&mut rec, 1, labels().iter(), 0, Some(&open));
        assert_eq!(decode_series(&rec).unwrap().open.unwrap().next_at, 2000);
    }

    #[test]
    fn truncated_or_altered_records_are_errors_never_panics() {
        let open = chunk(&[(1000, 1.0), (16_000, 2.5), (31_000, 4.0)]);
        let mut rec = Vec::new();
        encode_series(&mut rec, 42, labels().iter(), 7_200_000, Some(&open));
        for n in 0..rec.len() {
            assert!(decode_series(&rec[..n]).is_err(), "{n} bytes");
        }
        let mut longer = rec.clone();
        longer.push(0);
        assert!(decode_series(&longer).is_err());
        // Every single-byte change either fails or still decodes to a consistent record.
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x5a;
            if let Ok(s) = decode_series(&bad) {
                if let Some(o) = s.open {
                    assert_eq!((o.chunk.first_time(), o.chunk.last_time()), (Some(o.min_time), Some(o.max_time)));
                }
            }
        }
        // A huge claimed chunk length.
        let mut rec = Vec::new();
        rec.push(RECORD_SERIES);
        put_be64(&mut rec, 1);
        put_labels(&mut rec, labels().iter());
        put_be64(&mut rec, 0);
        put_uvarint(&mut rec, 1);
        put_be64(&mut rec, 0);
        put_be64(&mut rec, 0);
        rec.push(Encoding::Xor as u8);
        put_uvarint(&mut rec, u64::MAX);
        assert!(decode_series(&rec).is_err());
    }

    #[test]
    fn only_the_newest_snapshot_matching_the_wal_end_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let head = Head::new(super::super::HeadOptions::default());
        // Without chunk files a head may hold closed chunks on the heap: nothing to snapshot
        // then, but an empty head is fine.
        write(&head, dir.path(), (3, 65536)).unwrap();
        assert!(dir.path().join("chunk_snapshot.000003.0000065536").is_dir());
        assert!(read_matching(dir.path(), Some((3, 65535))).unwrap().is_none());
        assert!(read_matching(dir.path(), None).unwrap().is_none());
        let snap = read_matching(dir.path(), Some((3, 65536))).unwrap().unwrap();
        assert_eq!((snap.series.len(), snap.closed_chunks), (0, 0));
        // A later one replaces it.
        write(&head, dir.path(), (4, 0)).unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 1);
        // A damaged one is ignored.
        let seg = dir.path().join("chunk_snapshot.000004.0000000000").join("00000000");
        std::fs::write(&seg, b"garbage").unwrap();
        assert!(read_matching(dir.path(), Some((4, 0))).unwrap().is_none());
        remove_all(dir.path()).unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
    }
}
