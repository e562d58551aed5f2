//! Checkpoints: the previous checkpoint plus a range of segments, rewritten without what the head
//! no longer needs, so those segments can be deleted.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::{Error, Result};

use super::reader::SegmentReader;
use super::record::{self, decode};
use super::writer::{Wal, WalOptions};
use super::{
    checkpoint_path, last_checkpoint, list_checkpoints, list_segments, sync_dir, Record, RefMetadata, SeriesRef,
};

/// Records are written to the checkpoint in batches of about this many bytes.
const BATCH_BYTES: usize = 1 << 20;

/// What a checkpoint kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The new checkpoint's number (the last segment folded in).
    pub checkpoint: u32,
    /// The first segment read (after the previous checkpoint, whatever `from` asked for).
    pub from: u32,
    pub records_read: u64,
    pub records_written: u64,
    pub series_kept: u64,
    pub series_dropped: u64,
    pub samples_kept: u64,
    pub samples_dropped: u64,
    pub tombstones_kept: u64,
    pub tombstones_dropped: u64,
    /// Series with metadata written (the latest entry of each kept series).
    pub metadata_kept: u64,
    /// Records of types we do not model; they cannot be filtered, so they are not carried over.
    pub unsupported_dropped: u64,
    pub checkpoints_deleted: u32,
    pub checkpoint_deletions_failed: u32,
    /// Size of the new checkpoint on disk.
    pub size_bytes: u64,
}

/// Builds `dir/checkpoint.<to>` from the newest existing checkpoint and segments `from..=to`:
/// series for which `keep` is true, samples with `t >= mint`, tombstones of kept series that
/// reach `mint`, and the latest metadata of each kept series. It is written as
/// `checkpoint.<to>.tmp`, fsynced and renamed into place; older checkpoints are then deleted.
/// The segments themselves are left for [`Wal::truncate`]. Records are snappy-compressed.
pub fn checkpoint(
    dir: &Path,
    from: u32,
    to: u32,
    keep: impl Fn(SeriesRef) -> bool,
    mint: i64,
) -> Result<CheckpointStats> {
    checkpoint_with(dir, from, to, keep, mint, true)
}

pub(crate) fn checkpoint_with(
    dir: &Path,
    from: u32,
    to: u32,
    keep: impl Fn(SeriesRef) -> bool,
    mint: i64,
    compress: bool,
) -> Result<CheckpointStats> {
    let start = Instant::now();
    let invalid =
        |msg: String| Error::io("create WAL checkpoint", dir, std::io::Error::new(ErrorKind::InvalidInput, msg));
    let mut inputs: Vec<PathBuf> = Vec::new();
    let mut first = u64::from(from);
    if let Some((n, cp_dir)) = last_checkpoint(dir)? {
        if n > to {
            return Err(invalid(format!("checkpoint.{n:08} is newer than the requested checkpoint.{to:08}")));
        }
        if u64::from(from) > u64::from(n) + 1 {
            return Err(invalid(format!("segments between checkpoint.{n:08} and segment {from} would be lost")));
        }
        // Segments the previous checkpoint already covers are not read again.
        first = u64::from(n) + 1;
        inputs.extend(list_segments(&cp_dir)?.into_iter().map(|s| s.path));
    }
    let segments: Vec<_> =
        list_segments(dir)?.into_iter().filter(|s| u64::from(s.index) >= first && s.index <= to).collect();
    for (i, seg) in segments.iter().enumerate() {
        if u64::from(seg.index) != first + i as u64 {
            return Err(invalid(format!("segment {} is missing", first + i as u64)));
        }
    }
    if first <= u64::from(to) && segments.last().map(|s| s.index) != Some(to) {
        return Err(invalid(format!("segment {to} does not exist")));
    }
    inputs.extend(segments.into_iter().map(|s| s.path));

    let final_dir = checkpoint_path(dir, to);
    let mut tmp_name = final_dir.clone().into_os_string();
    tmp_name.push(".tmp");
    let tmp_dir = PathBuf::from(tmp_name);
    remove_dir_if_exists(&tmp_dir)?;

    let mut stats =
        CheckpointStats { checkpoint: to, from: u32::try_from(first).unwrap_or(u32::MAX), ..Default::default() };
    let written = write_checkpoint(&tmp_dir, &inputs, &keep, mint, compress, &mut stats);
    if let Err(e) = written {
        // Best effort: the half-built directory is removed again by the next attempt anyway.
        let _ = std::fs::remove_dir_all(&tmp_dir);
        return Err(e);
    }
    remove_dir_if_exists(&final_dir)?;
    std::fs::rename(&tmp_dir, &final_dir).map_err(|e| Error::io("rename WAL checkpoint", &tmp_dir, e))?;
    sync_dir(dir)?;
    stats.size_bytes = super::dir_size(&final_dir);

    for (n, path) in list_checkpoints(dir)? {
        if n >= to {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => stats.checkpoints_deleted += 1,
            Err(e) => {
                stats.checkpoint_deletions_failed += 1;
                tracing::warn!(checkpoint = %path.display(), error = %e, "could not delete old WAL checkpoint");
            }
        }
    }
    tracing::info!(
        checkpoint = %final_dir.display(), from = stats.from, to, series_kept = stats.series_kept,
        series_dropped = stats.series_dropped, samples_kept = stats.samples_kept, samples_dropped = stats.samples_dropped,
        size_bytes = stats.size_bytes, elapsed = ?start.elapsed(), "WAL checkpoint created"
    );
    Ok(stats)
}

fn remove_dir_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io("remove directory", path, e)),
        _ => Ok(()),
    }
}

/// Filters every record of `inputs` into a new log in `tmp_dir`, closed and fsynced on success.
fn write_checkpoint(
    tmp_dir: &Path,
    inputs: &[PathBuf],
    keep: &impl Fn(SeriesRef) -> bool,
    mint: i64,
    compress: bool,
    stats: &mut CheckpointStats,
) -> Result<()> {
    let out = Wal::open(tmp_dir, WalOptions { compress, ..WalOptions::default() })?;
    let mut batch = Batch::default();
    let mut metadata: HashMap<SeriesRef, RefMetadata> = HashMap::new();
    let mut buf = Vec::new();
    for path in inputs {
        let mut reader = SegmentReader::open(path)?;
        // Input segments are complete and were replayed (and repaired) already: any damage here
        // is an error, not something to cut away.
        while let Some(span) = reader.next_record(&mut buf).map_err(|f| f.into_error(path))? {
            stats.records_read += 1;
            let rec = decode(&buf).map_err(|e| Error::CorruptWal {
                segment: path.clone(),
                offset: span.start,
                reason: e.to_string(),
            })?;
            match rec {
                Record::Series(mut series) => {
                    let n = series.len() as u64;
                    series.retain(|s| keep(s.series_ref));
                    stats.series_kept += series.len() as u64;
                    stats.series_dropped += n - series.len() as u64;
                    if !series.is_empty() {
                        record::encode_series(&series, batch.start());
                    }
                }
                Record::Samples(mut samples) => {
                    let n = samples.len() as u64;
                    samples.retain(|s| s.t >= mint);
                    stats.samples_kept += samples.len() as u64;
                    stats.samples_dropped += n - samples.len() as u64;
                    if !samples.is_empty() {
                        record::encode_samples(&samples, batch.start());
                    }
                }
                Record::Tombstones(mut tombstones) => {
                    let n = tombstones.len() as u64;
                    tombstones.retain(|t| keep(t.series_ref) && t.maxt >= mint);
                    stats.tombstones_kept += tombstones.len() as u64;
                    stats.tombstones_dropped += n - tombstones.len() as u64;
                    if !tombstones.is_empty() {
                        record::encode_tombstones(&tombstones, batch.start());
                    }
                }
                Record::Metadata(md) => {
                    for m in md.into_iter().filter(|m| keep(m.series_ref)) {
                        metadata.insert(m.series_ref, m);
                    }
                }
                Record::Unsupported(_) => stats.unsupported_dropped += 1,
            }
            if batch.bytes.len() >= BATCH_BYTES {
                stats.records_written += batch.flush(&out)?;
            }
        }
    }
    if !metadata.is_empty() {
        let mut md: Vec<RefMetadata> = metadata.into_values().collect();
        md.sort_unstable_by_key(|m| m.series_ref);
        stats.metadata_kept = md.len() as u64;
        record::encode_metadata(&md, batch.start());
    }
    stats.records_written += batch.flush(&out)?;
    out.close()?;
    sync_dir(tmp_dir)
}

/// Encoded records waiting to be written, back to back in one buffer.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    starts: Vec<usize>,
}

impl Batch {
    /// Begins a record; the caller appends its encoding to the returned buffer.
    fn start(&mut self) -> &mut Vec<u8> {
        self.starts.push(self.bytes.len());
        &mut self.bytes
    }

    /// Logs the pending records; returns how many.
    fn flush(&mut self, out: &Wal) -> Result<u64> {
        if self.starts.is_empty() {
            return Ok(0);
        }
        let ends = self.starts.iter().skip(1).copied().chain(std::iter::once(self.bytes.len()));
        let records: Vec<&[u8]> = self.starts.iter().zip(ends).map(|(&s, e)| &self.bytes[s..e]).collect();
        out.log(&records)?;
        let n = records.len() as u64;
        self.bytes.clear();
        self.starts.clear();
        Ok(n)
    }
}
