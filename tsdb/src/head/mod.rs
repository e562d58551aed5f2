//! The head: the in-memory part of a TSDB that takes appends.
//!
//! Series are found by label hash (for appends) and by ref (for WAL replay); both maps are
//! striped so concurrent appenders rarely contend. Each series keeps its closed chunks and one
//! open XOR chunk behind its own mutex.
//!
//! Invariants:
//! - a series' samples are strictly increasing in time; the head refuses, as Prometheus does,
//!   out-of-order samples, a second value for the same timestamp, and samples older than half a
//!   chunk range before the head's newest sample (out of bounds);
//! - the series record of a series is written to the WAL no later than the first samples record
//!   that refers to it (every appender logs the record of each series it touches that is not
//!   known to be logged yet; duplicates are harmless on replay);
//! - a chunk never crosses a `chunk_range`-aligned boundary.

mod appender;
mod postings;
mod query;
mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::block::ChunkData;
use crate::chunkenc::{Encoding, XorAppender, XorIter};
use crate::labels::Labels;
use crate::wal::SeriesRef;

pub use appender::{AppendOutcome, HeadAppender, Rejections};
pub use postings::MemPostings;
pub use status::{HeadStatus, HeadStatusStat};

/// Two hours in milliseconds: the default chunk range and block duration.
pub const DEFAULT_CHUNK_RANGE: i64 = 2 * 3600 * 1000;

/// Tuning of the head.
#[derive(Debug, Clone)]
pub struct HeadOptions {
    /// Chunks never cross a multiple of this many milliseconds.
    pub chunk_range: i64,
    /// The sample count a chunk aims for; a chunk is cut at twice this at the latest.
    pub samples_per_chunk: u16,
    /// Number of lock stripes for the series maps (a power of two).
    pub stripes: usize,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions { chunk_range: DEFAULT_CHUNK_RANGE, samples_per_chunk: 120, stripes: 1024 }
    }
}

/// Counters for `/metrics`, under Prometheus's names in the receiver.
#[derive(Default, Debug)]
pub struct HeadStats {
    pub series: AtomicU64,
    pub series_created: AtomicU64,
    pub series_removed: AtomicU64,
    pub samples_appended: AtomicU64,
    pub out_of_order: AtomicU64,
    pub duplicate: AtomicU64,
    pub out_of_bounds: AtomicU64,
    pub chunks: AtomicU64,
    pub chunks_created: AtomicU64,
}

/// What [`Head::truncate`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TruncateStats {
    pub series_removed: u64,
    pub chunks_removed: u64,
}

/// A completed chunk of a head series.
pub struct ClosedChunk {
    pub min_time: i64,
    pub max_time: i64,
    pub data: Box<[u8]>,
}

/// The mutable part of a series.
struct SeriesState {
    closed: Vec<ClosedChunk>,
    open: Option<XorAppender>,
    /// The open chunk is cut before a sample at or after this time.
    next_at: i64,
}

/// One series in the head.
pub struct MemSeries {
    pub series_ref: SeriesRef,
    pub labels: Labels,
    wal_logged: AtomicBool,
    /// Appenders holding this series for a commit; garbage collection leaves it alone while > 0.
    pending: AtomicU32,
    state: Mutex<SeriesState>,
}

/// What `MemSeries::append` did with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendResult {
    Appended {
        chunk_created: bool,
    },
    /// Same timestamp and the same value bits as the newest sample: nothing to do.
    Duplicate,
    OutOfOrder,
    /// Same timestamp as the newest sample with a different value.
    DuplicateTimestamp,
    /// Older than the head's floor: that time range is already in a block.
    OutOfBounds,
}

impl MemSeries {
    fn new(series_ref: SeriesRef, labels: Labels, wal_logged: bool) -> Self {
        MemSeries {
            series_ref,
            labels,
            wal_logged: AtomicBool::new(wal_logged),
            pending: AtomicU32::new(0),
            state: Mutex::new(SeriesState { closed: Vec::new(), open: None, next_at: i64::MIN }),
        }
    }

    /// The newest sample's time and value bits.
    pub fn last_sample(&self) -> Option<(i64, u64)> {
        let st = self.state.lock();
        last_of(&st)
    }

    /// Checks `t`/`v` against the newest sample without appending.
    pub fn check(last: Option<(i64, u64)>, t: i64, v: f64) -> Option<AppendResult> {
        match last {
            Some((lt, _)) if t < lt => Some(AppendResult::OutOfOrder),
            Some((lt, bits)) if t == lt => {
                Some(if bits == v.to_bits() { AppendResult::Duplicate } else { AppendResult::DuplicateTimestamp })
            }
            _ => None,
        }
    }

    /// Appends one sample, cutting chunks as Prometheus's head does. `floor` is read under the
    /// series lock, so a sample is either refused or visible to a block cut that raised it.
    pub fn append(&self, t: i64, v: f64, opts: &HeadOptions, floor: &AtomicI64) -> AppendResult {
        let mut st = self.state.lock();
        if t < floor.load(Ordering::Acquire) {
            return AppendResult::OutOfBounds;
        }
        if let Some(r) = Self::check(last_of(&st), t, v) {
            return r;
        }
        let spc = opts.samples_per_chunk;
        let mut chunk_created = false;
        let need_cut = match &st.open {
            None => true,
            Some(c) => {
                let n = c.num_samples();
                if n == spc / 4 {
                    if let (Some(first), Some(last)) = (c.first_time(), c.last_time()) {
                        st.next_at = compute_chunk_end_time(first, last, st.next_at);
                    }
                }
                t >= st.next_at || n >= spc.saturating_mul(2)
            }
        };
        if need_cut {
            if let Some(done) = st.open.take() {
                if let (Some(min_time), Some(max_time)) = (done.first_time(), done.last_time()) {
                    st.closed.push(ClosedChunk { min_time, max_time, data: done.into_bytes() });
                }
            }
            st.open = Some(XorAppender::new());
            st.next_at = range_for_timestamp(t, opts.chunk_range);
            chunk_created = true;
        }
        if let Some(c) = st.open.as_mut() {
            c.append(t, v);
        }
        AppendResult::Appended { chunk_created }
    }

    /// Calls `f` with every sample in `[mint, maxt]`, oldest first.
    pub fn for_each_sample(&self, mint: i64, maxt: i64, mut f: impl FnMut(i64, f64)) -> crate::Result<()> {
        self.with_chunks_in(mint, maxt, |chunks| {
            for (_, _, data) in chunks {
                let mut it = XorIter::new(data)?;
                for (t, v) in it.by_ref() {
                    if t >= mint && t <= maxt {
                        f(t, v);
                    }
                }
                if let Some(e) = it.err() {
                    return Err(crate::Error::CorruptChunk(format!("series {}: {e}", self.labels)));
                }
            }
            Ok(())
        })
    }

    /// Number of chunks, open one included.
    pub fn num_chunks(&self) -> usize {
        let st = self.state.lock();
        st.closed.len() + usize::from(st.open.is_some())
    }

    /// Copies of the chunks (open one included) overlapping `[mint, maxt]`, oldest first.
    pub fn chunks_in(&self, mint: i64, maxt: i64) -> Vec<ChunkData> {
        self.with_chunks_in(mint, maxt, |chunks| {
            chunks
                .map(|(min_time, max_time, data)| ChunkData {
                    min_time,
                    max_time,
                    encoding: Encoding::Xor,
                    data: Bytes::copy_from_slice(data),
                })
                .collect()
        })
    }

    /// Whether a chunk (open one included) overlaps `[mint, maxt]`.
    pub fn has_chunk_in(&self, mint: i64, maxt: i64) -> bool {
        self.with_chunks_in(mint, maxt, |chunks| chunks.next().is_some())
    }

    /// Calls `f`, under the series lock, with the time range and bytes of each chunk (the open
    /// one last) overlapping `[mint, maxt]`, oldest first.
    fn with_chunks_in<R>(
        &self,
        mint: i64,
        maxt: i64,
        f: impl FnOnce(&mut dyn Iterator<Item = (i64, i64, &[u8])>) -> R,
    ) -> R {
        let st = self.state.lock();
        let closed = st.closed.iter().map(|c| (c.min_time, c.max_time, &*c.data));
        let open = st.open.iter().filter_map(|c| Some((c.first_time()?, c.last_time()?, c.bytes())));
        f(&mut closed.chain(open).filter(|&(cmin, cmax, _)| cmax >= mint && cmin <= maxt))
    }

    /// Drops chunks that end before `mint` (they are in a block now). Returns how many were
    /// dropped and the first sample time left, if any.
    fn truncate_before(&self, mint: i64) -> (usize, Option<i64>) {
        let mut st = self.state.lock();
        let before = st.closed.len();
        st.closed.retain(|c| c.max_time >= mint);
        let mut dropped = before - st.closed.len();
        if st.open.as_ref().and_then(XorAppender::last_time).is_some_and(|t| t < mint) {
            st.open = None;
            dropped += 1;
        }
        let first =
            st.closed.first().map(|c| c.min_time).or_else(|| st.open.as_ref().and_then(XorAppender::first_time));
        (dropped, first)
    }
}

fn last_of(st: &SeriesState) -> Option<(i64, u64)> {
    let c = st.open.as_ref()?;
    Some((c.last_time()?, c.last_value()?.to_bits()))
}

/// The end of the chunk-range window `t` falls in (Prometheus's `rangeForTimestamp`).
fn range_for_timestamp(t: i64, width: i64) -> i64 {
    (t / width) * width + width
}

/// Spreads the rest of the chunk range evenly over chunks of the size reached so far, given a
/// chunk from `start` to `cur` that is a quarter full (Prometheus's `computeChunkEndTime`).
fn compute_chunk_end_time(start: i64, cur: i64, max: i64) -> i64 {
    let n = (max - start) / ((cur - start + 1) * 4);
    if n <= 1 {
        max
    } else {
        start + (max - start) / n
    }
}

/// Series sharing a label hash: the first in `by_hash`, any others (hash collisions) in
/// `collisions`, so the common case costs one map entry.
#[derive(Default)]
struct HashStripe {
    by_hash: HashMap<u64, Arc<MemSeries>>,
    collisions: HashMap<u64, Vec<Arc<MemSeries>>>,
}

impl HashStripe {
    fn find(&self, hash: u64, is: impl Fn(&MemSeries) -> bool) -> Option<&Arc<MemSeries>> {
        match self.by_hash.get(&hash) {
            Some(s) if is(s) => Some(s),
            Some(_) => self.collisions.get(&hash)?.iter().find(|s| is(s)),
            None => None,
        }
    }

    fn remove(&mut self, hash: u64, series_ref: SeriesRef) {
        if self.by_hash.get(&hash).is_some_and(|s| s.series_ref == series_ref) {
            self.by_hash.remove(&hash);
            // Promote a colliding series, if any, to the primary map.
            if let Some(list) = self.collisions.get_mut(&hash) {
                if let Some(next) = list.pop() {
                    self.by_hash.insert(hash, next);
                }
                if list.is_empty() {
                    self.collisions.remove(&hash);
                }
            }
        } else if let Some(list) = self.collisions.get_mut(&hash) {
            list.retain(|s| s.series_ref != series_ref);
            if list.is_empty() {
                self.collisions.remove(&hash);
            }
        }
    }

    fn insert(&mut self, hash: u64, s: Arc<MemSeries>) {
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(s);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.collisions.entry(hash).or_default().push(s),
        }
    }
}

/// Series by ref, for WAL replay.
type RefStripe = HashMap<SeriesRef, Arc<MemSeries>>;

/// The in-memory head of one TSDB.
pub struct Head {
    opts: HeadOptions,
    hash_stripes: Box<[RwLock<HashStripe>]>,
    ref_stripes: Box<[RwLock<RefStripe>]>,
    postings: RwLock<MemPostings>,
    last_ref: AtomicU64,
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// Samples before this time belong to persisted blocks and are refused as out of bounds.
    floor: AtomicI64,
    stats: HeadStats,
}

impl Head {
    pub fn new(opts: HeadOptions) -> Self {
        let stripes = opts.stripes.max(1).next_power_of_two();
        Head {
            hash_stripes: (0..stripes).map(|_| RwLock::default()).collect(),
            ref_stripes: (0..stripes).map(|_| RwLock::default()).collect(),
            postings: RwLock::default(),
            last_ref: AtomicU64::new(0),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            floor: AtomicI64::new(i64::MIN),
            stats: HeadStats::default(),
            opts,
        }
    }

    pub fn options(&self) -> &HeadOptions {
        &self.opts
    }

    pub fn stats(&self) -> &HeadStats {
        &self.stats
    }

    /// Oldest sample time in the head, `i64::MAX` when empty.
    pub fn min_time(&self) -> i64 {
        self.min_time.load(Ordering::Relaxed)
    }

    /// Newest sample time in the head, `i64::MIN` when empty.
    pub fn max_time(&self) -> i64 {
        self.max_time.load(Ordering::Relaxed)
    }

    pub fn num_series(&self) -> u64 {
        self.stats.series.load(Ordering::Relaxed)
    }

    /// Samples older than this are out of bounds (Prometheus: the end of the newest block, or
    /// half a chunk range before the newest sample of the head, whichever is later).
    pub fn min_valid_time(&self) -> i64 {
        let max = self.max_time();
        let by_head = if max == i64::MIN { i64::MIN } else { max.saturating_sub(self.opts.chunk_range / 2) };
        by_head.max(self.floor())
    }

    /// Start of the time range the head still owns; everything before is in blocks.
    pub fn floor(&self) -> i64 {
        self.floor.load(Ordering::Acquire)
    }

    /// Raises the floor to `t` (never lowers it): appends before `t` are refused from now on.
    pub fn raise_floor(&self, t: i64) {
        self.floor.fetch_max(t, Ordering::AcqRel);
    }

    /// Starts a batch of appends.
    pub fn appender(&self) -> HeadAppender<'_> {
        HeadAppender::new(self)
    }

    fn hash_stripe(&self, hash: u64) -> &RwLock<HashStripe> {
        &self.hash_stripes[(hash as usize) & (self.hash_stripes.len() - 1)]
    }

    fn ref_stripe(&self, r: SeriesRef) -> &RwLock<RefStripe> {
        &self.ref_stripes[(r as usize) & (self.ref_stripes.len() - 1)]
    }

    /// Finds the series with exactly these (validated, sorted) pairs, creating it if needed,
    /// and marks it pending (see [`MemSeries::release`]) under the stripe lock, so garbage
    /// collection cannot remove it between lookup and commit. Returns whether it was created.
    pub fn get_or_create(&self, pairs: &[(&str, &str)]) -> (Arc<MemSeries>, bool) {
        let hash = Labels::hash_pairs(pairs);
        let stripe = self.hash_stripe(hash);
        if let Some(s) = stripe.read().find(hash, |s| s.labels.eq_pairs(pairs)) {
            s.pending.fetch_add(1, Ordering::AcqRel);
            return (s.clone(), false);
        }
        let mut w = stripe.write();
        if let Some(s) = w.find(hash, |s| s.labels.eq_pairs(pairs)) {
            s.pending.fetch_add(1, Ordering::AcqRel);
            return (s.clone(), false);
        }
        let series_ref = self.last_ref.fetch_add(1, Ordering::Relaxed) + 1;
        let s = Arc::new(MemSeries::new(series_ref, Labels::from_sorted_unchecked(pairs.iter().copied()), false));
        s.pending.fetch_add(1, Ordering::AcqRel);
        w.insert(hash, s.clone());
        drop(w);
        self.index(&s);
        (s, true)
    }

    /// Re-creates a series from a WAL series record. A ref seen before is kept as it is.
    pub fn replay_series(&self, series_ref: SeriesRef, labels: Labels) {
        if self.ref_stripe(series_ref).read().contains_key(&series_ref) {
            return;
        }
        let hash = labels.hash();
        let mut w = self.hash_stripe(hash).write();
        if w.find(hash, |s| s.labels == labels).is_some() {
            // The same label set under another ref: Prometheus keeps the first; samples under
            // the second ref are dropped as unknown on replay, as they are there.
            return;
        }
        self.last_ref.fetch_max(series_ref, Ordering::Relaxed);
        let s = Arc::new(MemSeries::new(series_ref, labels, true));
        w.insert(hash, s.clone());
        drop(w);
        self.index(&s);
    }

    fn index(&self, s: &Arc<MemSeries>) {
        self.ref_stripe(s.series_ref).write().insert(s.series_ref, s.clone());
        self.postings.write().add(s.series_ref, s.labels.iter());
        self.stats.series.fetch_add(1, Ordering::Relaxed);
        self.stats.series_created.fetch_add(1, Ordering::Relaxed);
    }

    pub fn series_by_ref(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        self.ref_stripe(r).read().get(&r).cloned()
    }

    /// Appends one replayed sample; samples the head would refuse are dropped and counted.
    pub fn replay_sample(&self, s: &MemSeries, t: i64, v: f64) -> AppendResult {
        let r = s.append(t, v, &self.opts, &self.floor);
        self.account(&[(r, t)]);
        r
    }

    /// Updates time bounds and append counters; refusals are counted by the caller.
    fn account(&self, results: &[(AppendResult, i64)]) {
        let mut appended = 0;
        let mut chunks = 0;
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        for &(r, t) in results {
            match r {
                AppendResult::Appended { chunk_created } => {
                    appended += 1;
                    chunks += u64::from(chunk_created);
                    mint = mint.min(t);
                    maxt = maxt.max(t);
                }
                AppendResult::Duplicate
                | AppendResult::OutOfOrder
                | AppendResult::DuplicateTimestamp
                | AppendResult::OutOfBounds => {}
            }
        }
        if appended > 0 {
            self.stats.samples_appended.fetch_add(appended, Ordering::Relaxed);
            self.min_time.fetch_min(mint, Ordering::Relaxed);
            self.max_time.fetch_max(maxt, Ordering::Relaxed);
        }
        if chunks > 0 {
            self.stats.chunks.fetch_add(chunks, Ordering::Relaxed);
            self.stats.chunks_created.fetch_add(chunks, Ordering::Relaxed);
        }
    }

    /// Drops everything before `mint` (now persisted in blocks): chunks ending before it, and
    /// series left without chunks that no appender holds. Raises the floor to `mint` first.
    pub fn truncate(&self, mint: i64) -> TruncateStats {
        self.raise_floor(mint);
        let mut stats = TruncateStats::default();
        let mut new_min = i64::MAX;
        let mut removed: Vec<Arc<MemSeries>> = Vec::new();
        for stripe in self.hash_stripes.iter() {
            let mut w = stripe.write();
            let mut gone = Vec::new();
            let all = w.by_hash.iter().chain(w.collisions.iter().flat_map(|(h, l)| l.iter().map(move |s| (h, s))));
            for (&hash, s) in all {
                let (dropped, first) = s.truncate_before(mint);
                stats.chunks_removed += dropped as u64;
                match first {
                    Some(t) => new_min = new_min.min(t),
                    None if s.pending.load(Ordering::Acquire) == 0 => gone.push((hash, s.clone())),
                    None => {}
                }
            }
            for (hash, s) in gone {
                w.remove(hash, s.series_ref);
                removed.push(s);
            }
        }
        if !removed.is_empty() {
            let mut postings = self.postings.write();
            for s in &removed {
                postings.remove(s.series_ref, s.labels.iter());
                self.ref_stripe(s.series_ref).write().remove(&s.series_ref);
            }
        }
        stats.series_removed = removed.len() as u64;
        self.stats.series.fetch_sub(stats.series_removed, Ordering::Relaxed);
        self.stats
            .chunks
            .fetch_sub(stats.chunks_removed.min(self.stats.chunks.load(Ordering::Relaxed)), Ordering::Relaxed);
        self.stats.series_removed.fetch_add(stats.series_removed, Ordering::Relaxed);
        // As Prometheus: the head now starts at `mint`, so the next block is range-aligned
        // (a gap before the first remaining sample just yields no block for that range).
        self.min_time.store(if new_min == i64::MAX { i64::MAX } else { mint }, Ordering::Relaxed);
        if new_min == i64::MAX {
            self.max_time.store(i64::MIN, Ordering::Relaxed);
        }
        stats
    }

    /// Every series, sorted by labels.
    pub fn series_sorted(&self) -> Vec<Arc<MemSeries>> {
        let mut all: Vec<Arc<MemSeries>> =
            self.ref_stripes.iter().flat_map(|s| s.read().values().cloned().collect::<Vec<_>>()).collect();
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        all
    }

    /// Read access to the postings index.
    pub fn postings(&self) -> parking_lot::RwLockReadGuard<'_, MemPostings> {
        self.postings.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(name: &str) -> Vec<(&str, &str)> {
        vec![("__name__", name), ("job", "j")]
    }

    #[test]
    fn chunk_cutting_follows_prometheus() {
        let head = Head::new(HeadOptions::default());
        let (s, created) = head.get_or_create(&pairs("m"));
        assert!(created);
        // 15s scrapes over 4h: chunks of ~120 samples that never cross a 2h boundary.
        let step = 15_000;
        for i in 0..960 {
            assert!(matches!(s.append(i * step, i as f64, &head.opts, &head.floor), AppendResult::Appended { .. }));
        }
        let st = s.state.lock();
        let mut all: Vec<(i64, i64, u16)> =
            st.closed.iter().map(|c| (c.min_time, c.max_time, XorIter::new(&c.data).unwrap().num_samples())).collect();
        let open = st.open.as_ref().unwrap();
        all.push((open.first_time().unwrap(), open.last_time().unwrap(), open.num_samples()));
        assert_eq!(all.len(), 8, "{all:?}");
        for (min, max, n) in &all {
            assert_eq!(min / DEFAULT_CHUNK_RANGE, max / DEFAULT_CHUNK_RANGE, "chunk crosses a 2h boundary");
            assert_eq!(*n, 120);
        }
    }

    #[test]
    fn cut_at_twice_the_target_when_rate_rises() {
        let head = Head::new(HeadOptions::default());
        let (s, _) = head.get_or_create(&pairs("m"));
        for i in 0..1000 {
            s.append(i, 1.0, &head.opts, &head.floor);
        }
        let st = s.state.lock();
        assert!(st.closed.iter().all(|c| XorIter::new(&c.data).unwrap().num_samples() <= 240));
    }

    #[test]
    fn refuses_what_prometheus_refuses() {
        let head = Head::new(HeadOptions::default());
        let (s, _) = head.get_or_create(&pairs("m"));
        assert!(matches!(s.append(100, 1.0, &head.opts, &head.floor), AppendResult::Appended { .. }));
        assert_eq!(s.append(100, 1.0, &head.opts, &head.floor), AppendResult::Duplicate);
        assert_eq!(s.append(100, 2.0, &head.opts, &head.floor), AppendResult::DuplicateTimestamp);
        assert_eq!(s.append(99, 2.0, &head.opts, &head.floor), AppendResult::OutOfOrder);
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        assert!(matches!(s.append(200, stale, &head.opts, &head.floor), AppendResult::Appended { .. }));
        // A NaN with other bits is a different value.
        assert_eq!(s.append(200, f64::NAN, &head.opts, &head.floor), AppendResult::DuplicateTimestamp);
        let mut got = vec![];
        s.for_each_sample(i64::MIN, i64::MAX, |t, v| got.push((t, v.to_bits()))).unwrap();
        assert_eq!(got, vec![(100, 1.0f64.to_bits()), (200, 0x7ff0_0000_0000_0002)]);
    }

    #[test]
    fn truncate_drops_persisted_chunks_and_empty_series() {
        let head = Head::new(HeadOptions::default());
        let h = 3_600_000;
        let mut app = head.appender();
        app.append(&pairs("long"), (0..4 * 240).map(|i| (i * 15_000, 1.0))).unwrap();
        app.append(&pairs("short"), (0..240).map(|i| (i * 15_000, 1.0))).unwrap();
        app.commit(None).unwrap();
        // A series an appender holds survives even without chunks in range.
        let mut held = head.appender();
        held.append(&pairs("held"), []).unwrap();

        let st = head.truncate(2 * h);
        assert_eq!(st.series_removed, 1, "only the short series goes");
        assert_eq!(head.num_series(), 2);
        assert_eq!(head.min_time(), 2 * h);
        assert!(head.postings().get("__name__", "short").is_empty());
        let long = head.series_sorted().into_iter().find(|s| s.labels.metric_name() == Some("long")).unwrap();
        assert!(long.chunks_in(i64::MIN, 2 * h - 1).is_empty());
        assert_eq!(long.chunks_in(2 * h, i64::MAX).len(), 4);
        // Appends before the floor are out of bounds, even for a brand-new series.
        assert_eq!(long.append(2 * h - 1, 1.0, &head.opts, &head.floor), AppendResult::OutOfBounds);
        let mut app = head.appender();
        app.append(&pairs("new"), [(2 * h - 1, 1.0), (4 * h, 1.0)]).unwrap();
        let out = app.commit(None).unwrap();
        assert_eq!((out.appended, out.rejected.out_of_bounds), (1, 1));
        drop(held);
        head.truncate(2 * h);
        assert_eq!(head.num_series(), 2, "the released empty series is collected");
    }

    #[test]
    fn same_labels_same_series() {
        let head = Head::new(HeadOptions::default());
        let (a, _) = head.get_or_create(&pairs("m"));
        let (b, created) = head.get_or_create(&[("__name__", "m"), ("empty", ""), ("job", "j")]);
        assert!(!created);
        assert_eq!(a.series_ref, b.series_ref);
        let (c, created) = head.get_or_create(&pairs("n"));
        assert!(created);
        assert_ne!(a.series_ref, c.series_ref);
        assert_eq!(head.num_series(), 2);
        assert_eq!(head.postings().get("job", "j"), &[1, 2]);
    }
}
