//! The WAL writer: pages, fragments, segment rotation, truncation.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use parking_lot::Mutex;

use crate::{Error, Result};

use super::checkpoint::{checkpoint_with, CheckpointStats};
use super::reader::{Fault, SegmentReader};
use super::{
    dir_size, last_checkpoint, list_segments, segment_path, sync_dir, SeriesRef, DEFAULT_SEGMENT_SIZE, FLAG_SNAPPY,
    FRAGMENT_HEADER_SIZE, FRAG_FIRST, FRAG_FULL, FRAG_LAST, FRAG_MIDDLE, PAGE_SIZE,
};

/// Largest compression buffer kept between records.
const MAX_KEPT_BUFFER: usize = 8 << 20;

/// How the WAL is written.
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// Maximum segment size; a multiple of the 32 KiB page size. A record larger than a whole
    /// segment still goes into one (oversized) segment, as in Prometheus.
    pub segment_size: usize,
    /// Snappy-compress records that get smaller by it (Prometheus's default since 2.20).
    pub compress: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_size: DEFAULT_SEGMENT_SIZE, compress: true }
    }
}

/// Counters behind Prometheus's `prometheus_tsdb_wal_*` and `prometheus_tsdb_checkpoint_*`
/// metrics. The owner of the [`Wal`] exports them under those names.
#[derive(Debug, Default)]
pub struct WalStats {
    /// `prometheus_tsdb_wal_fsync_duration_seconds` sum (in nanoseconds) and count.
    pub fsync_duration_nanos_sum: AtomicU64,
    pub fsync_count: AtomicU64,
    pub page_flushes_total: AtomicU64,
    pub completed_pages_total: AtomicU64,
    pub truncations_total: AtomicU64,
    pub truncations_failed_total: AtomicU64,
    pub writes_failed_total: AtomicU64,
    /// Damaged tails repaired by [`Wal::open`]; the owner adds [`super::ReplayStats::corruptions_repaired`].
    pub corruptions_total: AtomicU64,
    pub segment_current: AtomicU64,
    pub storage_size_bytes: AtomicU64,
    /// `prometheus_tsdb_wal_record_part_writes_total`: fragments written.
    pub record_part_writes_total: AtomicU64,
    /// `prometheus_tsdb_wal_record_parts_bytes_written_total`: fragment bytes, headers included.
    pub record_parts_bytes_written_total: AtomicU64,
    /// `prometheus_tsdb_wal_record_bytes_saved_total`: bytes compression saved.
    pub record_bytes_saved_total: AtomicU64,
    pub checkpoint_creations_total: AtomicU64,
    pub checkpoint_creations_failed_total: AtomicU64,
    pub checkpoint_deletions_total: AtomicU64,
    pub checkpoint_deletions_failed_total: AtomicU64,
}

/// An open write-ahead log. All methods take `&self`; appends are serialised by a mutex.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    stats: WalStats,
    inner: Mutex<Inner>,
}

struct Inner {
    /// The segment being written; `None` once closed.
    file: Option<File>,
    segment: u32,
    first_segment: u32,
    /// The page being filled. Bytes past `alloc` are always zero, which makes padding free.
    page: Box<[u8]>,
    /// Bytes of `page` in use.
    alloc: usize,
    /// Bytes of `page` already handed to the OS.
    flushed: usize,
    /// Pages of the current segment written completely.
    done_pages: usize,
    /// Offset in the current segment up to which whole records have been handed to the OS.
    record_end: u64,
    /// A write failed: the segment may hold part of a record past `record_end`.
    failed: bool,
    snappy: snap::raw::Encoder,
    compressed: Vec<u8>,
    /// Test hook: bytes that may still be written before writes start failing.
    #[cfg(test)]
    write_budget: Option<usize>,
}

impl Wal {
    /// Opens (creating) `dir`, repairs a damaged tail of the newest non-empty segment, and starts
    /// a new segment after every existing one and after the newest checkpoint.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<Wal> {
        Self::open_with(dir, opts, true)
    }

    /// [`Wal::open`] for a WAL the caller has just replayed with [`super::replay`] (which
    /// repaired its tail), or whose end it knows is where a clean close left it: the newest
    /// segment, up to 128 MiB, is not read through again.
    pub fn open_replayed(dir: &Path, opts: WalOptions) -> Result<Wal> {
        Self::open_with(dir, opts, false)
    }

    fn open_with(dir: &Path, opts: WalOptions, check_tail: bool) -> Result<Wal> {
        if opts.segment_size == 0 || !opts.segment_size.is_multiple_of(PAGE_SIZE) {
            let msg = format!("segment size {} is not a positive multiple of {PAGE_SIZE}", opts.segment_size);
            return Err(Error::io("open WAL", dir, std::io::Error::new(ErrorKind::InvalidInput, msg)));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create WAL directory", dir, e))?;
        let stats = WalStats::default();
        let segments = list_segments(dir)?;
        if let Some(tail) = segments.iter().rev().find(|s| check_tail && s.len > 0) {
            if repair_tail(&tail.path, tail.len)?.is_some() {
                stats.corruptions_total.fetch_add(1, Relaxed);
            }
        }
        let after_segments = segments.last().map(|s| u64::from(s.index) + 1).unwrap_or(0);
        let after_checkpoint = last_checkpoint(dir)?.map(|(n, _)| u64::from(n) + 1).unwrap_or(0);
        let next = u32::try_from(after_segments.max(after_checkpoint)).map_err(|_| {
            Error::io("open WAL", dir, std::io::Error::new(ErrorKind::InvalidData, "segment numbers exhausted"))
        })?;
        let file = create_segment(dir, next)?;
        stats.segment_current.store(u64::from(next), Relaxed);
        stats.storage_size_bytes.store(dir_size(dir), Relaxed);
        let first_segment = segments.first().map_or(next, |s| s.index);
        tracing::debug!(dir = %dir.display(), segment = next, "WAL opened");
        Ok(Wal {
            dir: dir.to_path_buf(),
            opts,
            stats,
            inner: Mutex::new(Inner {
                file: Some(file),
                segment: next,
                first_segment,
                page: vec![0u8; PAGE_SIZE].into_boxed_slice(),
                alloc: 0,
                flushed: 0,
                done_pages: 0,
                record_end: 0,
                failed: false,
                snappy: snap::raw::Encoder::new(),
                compressed: Vec::new(),
                #[cfg(test)]
                write_budget: None,
            }),
        })
    }

    /// Appends `records` (each encoded by a `record::encode_*` function) and hands them to the
    /// OS with write(2) before returning, so they survive the process being killed. Not
    /// fsynced: that happens when a segment completes and on [`Wal::sync`] / [`Wal::close`].
    /// An empty record is refused (and nothing of the batch written).
    pub fn log(&self, records: &[&[u8]]) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner.file.is_none() {
            return Err(self.closed_error());
        }
        // Every record starts with its type byte; an empty one would read back as damage.
        if records.iter().any(|r| r.is_empty()) {
            let e = std::io::Error::new(ErrorKind::InvalidInput, "empty WAL record");
            return Err(Error::io("append to WAL", segment_path(&self.dir, inner.segment), e));
        }
        self.writing(&mut inner, |w, inner| w.log_locked(inner, records))
    }

    /// Runs a write operation so that a failure cannot leave a torn record in the middle of the
    /// log: after one, the next operation first cuts the segment back to its last whole record.
    /// (Otherwise records appended after the torn one would read as damage before the tail,
    /// and replay would drop them.)
    fn writing<T>(&self, inner: &mut Inner, op: impl FnOnce(&Self, &mut Inner) -> Result<T>) -> Result<T> {
        if inner.failed {
            self.recover(inner).inspect_err(|_| {
                self.stats.writes_failed_total.fetch_add(1, Relaxed);
            })?;
        }
        match op(self, inner) {
            Ok(v) => {
                inner.record_end = (inner.done_pages * PAGE_SIZE + inner.alloc) as u64;
                Ok(v)
            }
            Err(e) => {
                inner.failed = true;
                self.stats.writes_failed_total.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    /// Truncates the current segment to `record_end` and reloads its partial last page.
    fn recover(&self, inner: &mut Inner) -> Result<()> {
        let path = segment_path(&self.dir, inner.segment);
        let Some(file) = inner.file.as_mut() else {
            return Err(self.closed_error());
        };
        let end = inner.record_end;
        let page_start = end - end % PAGE_SIZE as u64;
        let in_page = (end - page_start) as usize;
        inner.page.fill(0);
        file.set_len(end)
            .and_then(|()| file.seek(SeekFrom::Start(page_start)))
            .and_then(|_| file.read_exact(&mut inner.page[..in_page]))
            .map_err(|e| Error::io("cut WAL segment back after a failed write", &path, e))?;
        inner.alloc = in_page;
        inner.flushed = in_page;
        inner.done_pages = (page_start / PAGE_SIZE as u64) as usize;
        inner.failed = false;
        self.stats.storage_size_bytes.store(dir_size(&self.dir), Relaxed);
        tracing::warn!(file = %path.display(), offset = end, "cut WAL segment back to its last whole record after a failed write");
        Ok(())
    }

    fn log_locked(&self, inner: &mut Inner, records: &[&[u8]]) -> Result<()> {
        for rec in records {
            self.log_one(inner, rec)?;
        }
        if inner.alloc > inner.flushed {
            self.flush_page(inner, false)?;
        }
        Ok(())
    }

    fn log_one(&self, inner: &mut Inner, rec: &[u8]) -> Result<()> {
        // A page whose last flush failed can still be full; it must go out before reuse.
        if PAGE_SIZE - inner.alloc < FRAGMENT_HEADER_SIZE {
            self.flush_page(inner, true)?;
        }
        // Compress first: the compressed size decides whether the record fits in this segment.
        let mut compressed = std::mem::take(&mut inner.compressed);
        let mut flag = 0u8;
        let mut data = rec;
        if self.opts.compress && !rec.is_empty() {
            // The buffer only grows: zeroing it again for every record would cost more than
            // compressing small ones.
            let max = snap::raw::max_compress_len(rec.len());
            if compressed.len() < max {
                compressed.resize(max, 0);
            }
            // Compressing into a buffer of max_compress_len bytes fails only for inputs over
            // 4 GiB; those are simply written uncompressed.
            if let Ok(n) = inner.snappy.compress(rec, &mut compressed) {
                if n < rec.len() {
                    data = &compressed[..n];
                    flag = FLAG_SNAPPY;
                    self.stats.record_bytes_saved_total.fetch_add((rec.len() - n) as u64, Relaxed);
                }
            }
        }
        let res = self.write_fragments(inner, data, flag);
        // Keep the buffer for the next record unless one huge record blew it up.
        if compressed.len() <= MAX_KEPT_BUFFER {
            inner.compressed = compressed;
        }
        res
    }

    /// Cuts `data` into fragments in the current page and the pages after it, starting a new
    /// segment first if the record would not fit in what is left of this one.
    fn write_fragments(&self, inner: &mut Inner, mut data: &[u8], flag: u8) -> Result<()> {
        let pages_per_segment = (self.opts.segment_size / PAGE_SIZE) as i64;
        let left_in_page = (PAGE_SIZE - inner.alloc - FRAGMENT_HEADER_SIZE) as i64;
        // Negative once an oversized record has run the segment past its size: then anything
        // goes to the next segment.
        let spare_pages = pages_per_segment - inner.done_pages as i64 - 1;
        let left = left_in_page + spare_pages * (PAGE_SIZE - FRAGMENT_HEADER_SIZE) as i64;
        // An empty segment takes the record whatever its size, rather than being left empty.
        if data.len() as i64 > left && (inner.done_pages > 0 || inner.alloc > 0) {
            self.next_segment_locked(inner)?;
        }
        let mut first = true;
        loop {
            let room = PAGE_SIZE - inner.alloc - FRAGMENT_HEADER_SIZE;
            let n = data.len().min(room);
            let last = n == data.len();
            let kind = match (first, last) {
                (true, true) => FRAG_FULL,
                (true, false) => FRAG_FIRST,
                (false, false) => FRAG_MIDDLE,
                (false, true) => FRAG_LAST,
            };
            let (part, rest) = data.split_at(n);
            let at = inner.alloc;
            let header = &mut inner.page[at..at + FRAGMENT_HEADER_SIZE];
            header[0] = kind | flag;
            // n <= PAGE_SIZE - 7, so it fits the 16-bit length field.
            header[1..3].copy_from_slice(&(n as u16).to_be_bytes());
            header[3..7].copy_from_slice(&crc32c::crc32c(part).to_be_bytes());
            inner.page[at + FRAGMENT_HEADER_SIZE..at + FRAGMENT_HEADER_SIZE + n].copy_from_slice(part);
            inner.alloc += FRAGMENT_HEADER_SIZE + n;
            self.stats.record_part_writes_total.fetch_add(1, Relaxed);
            self.stats.record_parts_bytes_written_total.fetch_add((FRAGMENT_HEADER_SIZE + n) as u64, Relaxed);
            if PAGE_SIZE - inner.alloc < FRAGMENT_HEADER_SIZE {
                self.flush_page(inner, true)?;
            }
            data = rest;
            first = false;
            if last {
                return Ok(());
            }
        }
    }

    /// Writes the unwritten part of the page. With `complete`, the page is finished: written
    /// out to its end (the zeros past `alloc` are the padding) and a fresh one started.
    fn flush_page(&self, inner: &mut Inner, complete: bool) -> Result<()> {
        self.stats.page_flushes_total.fetch_add(1, Relaxed);
        let complete = complete || PAGE_SIZE - inner.alloc < FRAGMENT_HEADER_SIZE;
        if complete {
            inner.alloc = PAGE_SIZE;
        }
        let Some(file) = inner.file.as_mut() else {
            return Err(self.closed_error());
        };
        let buf = &inner.page[inner.flushed..inner.alloc];
        #[cfg(test)]
        let (buf, injected) = match inner.write_budget.as_mut() {
            Some(budget) => {
                let n = buf.len().min(*budget);
                *budget -= n;
                (&buf[..n], n < buf.len())
            }
            None => (buf, false),
        };
        let mut written = 0;
        let mut result = Ok(());
        while written < buf.len() {
            match file.write(&buf[written..]) {
                Ok(0) => {
                    result = Err(std::io::Error::new(ErrorKind::WriteZero, "write returned 0"));
                    break;
                }
                Ok(k) => written += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        #[cfg(test)]
        if injected && result.is_ok() {
            result = Err(std::io::Error::other("injected write failure"));
        }
        // Keep what did get written accounted for, so a retry continues where this stopped.
        inner.flushed += written;
        self.stats.storage_size_bytes.fetch_add(written as u64, Relaxed);
        result.map_err(|e| Error::io("write WAL segment", segment_path(&self.dir, inner.segment), e))?;
        if complete {
            inner.page.fill(0);
            inner.alloc = 0;
            inner.flushed = 0;
            inner.done_pages += 1;
            self.stats.completed_pages_total.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    /// Starts the next segment and fsyncs the completed one, both under the lock: the record
    /// that did not fit is acknowledged only after the fsync.
    fn next_segment_locked(&self, inner: &mut Inner) -> Result<u32> {
        let (next, done, path) = self.rotate_locked(inner)?;
        self.fsync(&done, &path)?;
        Ok(next)
    }

    /// Pads the current segment to a page boundary and starts the next. Returns the new number
    /// and the completed segment's file and path; the caller fsyncs it.
    fn rotate_locked(&self, inner: &mut Inner) -> Result<(u32, File, PathBuf)> {
        if inner.file.is_none() {
            return Err(self.closed_error());
        }
        let old = segment_path(&self.dir, inner.segment);
        let next = inner.segment.checked_add(1).ok_or_else(|| {
            Error::io(
                "start WAL segment",
                &old,
                std::io::Error::new(ErrorKind::InvalidData, "segment numbers exhausted"),
            )
        })?;
        // A completed segment ends on a page boundary, as Prometheus leaves it.
        if inner.alloc > 0 {
            self.flush_page(inner, true)?;
        }
        let file = create_segment(&self.dir, next)?;
        let done = inner.file.replace(file).ok_or_else(|| self.closed_error())?;
        inner.segment = next;
        inner.done_pages = 0;
        inner.record_end = 0;
        self.stats.segment_current.store(u64::from(next), Relaxed);
        tracing::debug!(segment = next, "WAL segment started");
        Ok((next, done, old))
    }

    fn fsync(&self, file: &File, path: &Path) -> Result<()> {
        let start = Instant::now();
        file.sync_data().map_err(|e| Error::io("fsync WAL segment", path, e))?;
        self.stats.fsync_duration_nanos_sum.fetch_add(start.elapsed().as_nanos() as u64, Relaxed);
        self.stats.fsync_count.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Hands any unwritten bytes to the OS and fsyncs the current segment.
    pub fn sync(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        self.writing(&mut inner, Self::sync_locked)
    }

    fn sync_locked(&self, inner: &mut Inner) -> Result<()> {
        if inner.alloc > inner.flushed {
            self.flush_page(inner, false)?;
        }
        match inner.file.as_ref() {
            Some(file) => self.fsync(file, &segment_path(&self.dir, inner.segment)),
            None => Err(self.closed_error()),
        }
    }

    /// Pads the last page, fsyncs and closes the segment (as Prometheus leaves a closed one);
    /// later appends fail. Closing twice is fine.
    pub fn close(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner.file.is_none() {
            return Ok(());
        }
        self.writing(&mut inner, |w, inner| {
            if inner.alloc > 0 {
                w.flush_page(inner, true)?;
            }
            w.sync_locked(inner)
        })?;
        inner.file = None;
        Ok(())
    }

    /// The first and last segment numbers on disk; the last is the one being written.
    pub fn segment_range(&self) -> (u32, u32) {
        let inner = self.inner.lock();
        (inner.first_segment, inner.segment)
    }

    /// Completes the current segment (padded to a page boundary and fsynced) and starts the
    /// next; returns its number. Called before checkpointing so all earlier segments are final.
    /// The fsync runs after the lock is released, so appends go on into the new segment
    /// meanwhile instead of waiting for the disk (Prometheus fsyncs it in the background too).
    pub fn next_segment(&self) -> Result<u32> {
        let (next, done, path) = {
            let mut inner = self.inner.lock();
            if inner.file.is_none() {
                return Err(self.closed_error());
            }
            self.writing(&mut inner, Self::rotate_locked)?
        };
        self.fsync(&done, &path)?;
        Ok(next)
    }

    /// Deletes the segments numbered below `before`, never the one being written. Appends
    /// never touch those, so the files are removed without holding the lock: unlinking large
    /// segments takes tens of milliseconds each.
    pub fn truncate(&self, before: u32) -> Result<()> {
        self.stats.truncations_total.fetch_add(1, Relaxed);
        let before = before.min(self.inner.lock().segment);
        let res = (|| {
            for seg in list_segments(&self.dir)? {
                if seg.index >= before {
                    break;
                }
                std::fs::remove_file(&seg.path).map_err(|e| Error::io("remove WAL segment", &seg.path, e))?;
            }
            sync_dir(&self.dir)
        })();
        if res.is_err() {
            self.stats.truncations_failed_total.fetch_add(1, Relaxed);
        }
        // Whatever got deleted, the listing says what is left.
        if let Ok(segs) = list_segments(&self.dir) {
            let mut inner = self.inner.lock();
            inner.first_segment = segs.first().map_or(inner.segment, |s| s.index);
        }
        self.stats.storage_size_bytes.store(dir_size(&self.dir), Relaxed);
        res
    }

    /// Builds `checkpoint.<to>` from segments `from..=to` (see [`super::checkpoint()`]) with
    /// this WAL's compression setting, counting the outcome in [`WalStats`].
    pub fn checkpoint(
        &self,
        from: u32,
        to: u32,
        keep: impl Fn(SeriesRef) -> bool,
        mint: i64,
    ) -> Result<CheckpointStats> {
        let res = checkpoint_with(&self.dir, from, to, keep, mint, self.opts.compress);
        match &res {
            Ok(st) => {
                self.stats.checkpoint_creations_total.fetch_add(1, Relaxed);
                self.stats.checkpoint_deletions_total.fetch_add(u64::from(st.checkpoints_deleted), Relaxed);
                self.stats
                    .checkpoint_deletions_failed_total
                    .fetch_add(u64::from(st.checkpoint_deletions_failed), Relaxed);
            }
            Err(_) => {
                self.stats.checkpoint_creations_failed_total.fetch_add(1, Relaxed);
            }
        }
        self.stats.storage_size_bytes.store(dir_size(&self.dir), Relaxed);
        res
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> &WalStats {
        &self.stats
    }

    fn closed_error(&self) -> Error {
        Error::io("append to WAL", &self.dir, std::io::Error::other("the WAL is closed"))
    }
}

fn create_segment(dir: &Path, n: u32) -> Result<File> {
    let path = segment_path(dir, n);
    // Never reuse a file: the numbering guarantees it is new, and truncating one could lose data.
    // Readable too: after a failed write the partial last page is read back.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io("create WAL segment", &path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Outcome of cutting a damaged tail off a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TailRepair {
    /// Where the damage was found.
    pub offset: u64,
    pub reason: String,
    /// The file's new length: the end of its last good record.
    pub kept: u64,
    pub dropped: u64,
}

/// Reads `path` through and, if it is damaged, truncates it after its last good record.
/// `Ok(None)` means it was intact (or holds records we cannot read, which are left alone).
pub(crate) fn repair_tail(path: &Path, len: u64) -> Result<Option<TailRepair>> {
    let mut reader = SegmentReader::open(path)?;
    let mut buf = Vec::new();
    let mut good_end = 0;
    loop {
        match reader.next_record(&mut buf) {
            Ok(Some(span)) => good_end = span.end,
            Ok(None) | Err(Fault::Unsupported { .. }) => return Ok(None),
            Err(Fault::Io(e)) => return Err(e),
            Err(Fault::Corrupt { offset, reason }) => {
                truncate_file(path, good_end)?;
                let dropped = len.saturating_sub(good_end);
                tracing::warn!(
                    file = %path.display(), offset, reason = %reason, kept_bytes = good_end, bytes_dropped = dropped,
                    "WAL segment has a damaged tail; truncated it after the last good record"
                );
                return Ok(Some(TailRepair { offset, reason, kept: good_end, dropped }));
            }
        }
    }
}

/// Shortens a file to `len` bytes and makes that durable.
pub(crate) fn truncate_file(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new().write(true).open(path).map_err(|e| Error::io("open WAL segment for repair", path, e))?;
    f.set_len(len).map_err(|e| Error::io("truncate WAL segment", path, e))?;
    f.sync_all().map_err(|e| Error::io("fsync WAL segment", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{record, replay, Record, RefSample};

    fn samples(n: usize, t: i64) -> Vec<u8> {
        let s: Vec<RefSample> = (0..n).map(|i| RefSample { series_ref: i as u64, t, v: i as f64 }).collect();
        let mut buf = Vec::new();
        record::encode_samples(&s, &mut buf);
        buf
    }

    #[test]
    fn a_failed_write_never_leaves_a_torn_record_inside_the_log() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let w = Wal::open(&dir, WalOptions { segment_size: DEFAULT_SEGMENT_SIZE, compress: false }).expect("open");
        let a = samples(10, 1);
        let big = samples(10_000, 2); // about three pages
        let c = samples(10, 3);
        w.log(&[&a]).expect("log a");
        // The disk fills up part way through the second page of the big record.
        w.inner.lock().write_budget = Some(PAGE_SIZE + 100);
        assert!(w.log(&[&big]).is_err());
        assert!(w.log(&[&c]).is_err(), "still failing");
        w.inner.lock().write_budget = None;
        w.log(&[&c]).expect("log c once space is back");
        w.close().expect("close");
        assert_eq!(w.stats().writes_failed_total.load(Relaxed), 2);

        let mut got = Vec::new();
        let stats = replay(&dir, |r| {
            let Record::Samples(s) = r else { panic!("unexpected record") };
            got.push((s.len(), s[0].t));
            Ok(())
        })
        .expect("replay");
        assert_eq!(got, vec![(10, 1), (10, 3)]);
        assert_eq!(stats.corruptions_repaired, 0);
    }
}
