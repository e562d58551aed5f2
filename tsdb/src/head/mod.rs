//! The head: the in-memory part of a TSDB that takes appends.
//!
//! Series are found by label hash (for appends) and by ref (for WAL replay); both maps are
//! striped so concurrent appenders rarely contend. Each series keeps its closed chunks and one
//! open chunk ([`OpenChunk`]: integer delta-of-deltas while it can, else XOR; read as XOR)
//! behind its own mutex. A head over a TSDB directory writes each chunk it closes
//! to the head chunk files (`chunks_head/`, see [`chunk_files`]) and keeps only its time range
//! and file reference; a head without files (tests, read-only tools) keeps closed chunks on the
//! heap.
//!
//! Invariants:
//! - a series' samples are strictly increasing in time; the head refuses, as Prometheus does,
//!   out-of-order samples, a second value for the same timestamp, and samples older than half a
//!   chunk range before the head's newest sample (out of bounds);
//! - the series record of a series is written to the WAL no later than the first samples record
//!   that refers to it (every appender logs the record of each series it touches that is not
//!   known to be logged yet; duplicates are harmless on replay);
//! - a chunk never crosses a `chunk_range`-aligned boundary;
//! - a closed chunk is written to the chunk files only after its samples are in the WAL (it is
//!   closed while a committed batch is applied), so the WAL always holds every head sample and
//!   the files are a cache that replay may skip samples with and that damage may cost.

mod appender;
pub mod chunk_files;
mod postings;
mod query;
mod reads;
pub mod snapshot;
mod status;
mod symbols;

use std::borrow::{Borrow, Cow};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::block::ChunkData;
use crate::chunkenc::{Encoding, OpenChunk, XorAppender, XorIter};
use crate::labels::Labels;
use crate::wal::SeriesRef;

pub use appender::{AppendOutcome, HeadAppender, Rejections};
pub use chunk_files::{ChunkFiles, ChunkRef, LoadedChunk};
pub use postings::{MemPostings, PostingsList};
pub use query::HeadSeries;
pub use status::{HeadStatus, HeadStatusStat};
pub use symbols::{InternedLabels, Symbols};

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
    /// Head chunk files deleted: no chunk left in the head is in them.
    pub chunk_files_removed: usize,
}

/// A completed chunk of a head series: 24 bytes in the common case, a chunk in the chunk
/// files spanning less than 2^32 ms (a head chunk never spans more than the chunk range).
/// Anything else, rare, is described at full width behind a pointer.
enum ClosedChunk {
    Mapped(MappedChunk),
    Other(Box<WideChunk>),
}

/// A chunk in the chunk files: its start, span and file reference, packed to 20 bytes (so that
/// with [`ClosedChunk`]'s tag it takes 24). Fields are only ever read by value.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct MappedChunk {
    min_time: i64,
    /// `max_time - min_time`.
    span: u32,
    chunk_ref: ChunkRef,
}

/// A closed chunk at full width: on the heap, or in the chunk files with a span of 2^32 ms
/// or more.
struct WideChunk {
    min_time: i64,
    max_time: i64,
    data: ClosedData,
}

/// Where a closed chunk's bytes are.
enum ClosedData {
    /// In the head chunk files.
    Mapped(ChunkRef),
    /// On the heap: the head has no writable chunk files, or writing failed.
    Heap(Box<[u8]>),
}

impl ClosedChunk {
    fn new(min_time: i64, max_time: i64, data: ClosedData) -> Self {
        let span = u32::try_from(max_time.wrapping_sub(min_time)).ok().filter(|_| max_time >= min_time);
        match (data, span) {
            (ClosedData::Mapped(chunk_ref), Some(span)) => {
                ClosedChunk::Mapped(MappedChunk { min_time, span, chunk_ref })
            }
            (data, _) => ClosedChunk::Other(Box::new(WideChunk { min_time, max_time, data })),
        }
    }

    fn min_time(&self) -> i64 {
        match self {
            ClosedChunk::Mapped(m) => m.min_time,
            ClosedChunk::Other(w) => w.min_time,
        }
    }

    fn max_time(&self) -> i64 {
        match self {
            ClosedChunk::Mapped(m) => {
                let (min_time, span) = (m.min_time, m.span);
                min_time + i64::from(span)
            }
            ClosedChunk::Other(w) => w.max_time,
        }
    }

    /// Where the chunk is in the chunk files; None if it is on the heap.
    fn chunk_ref(&self) -> Option<ChunkRef> {
        match self {
            ClosedChunk::Mapped(m) => Some(m.chunk_ref),
            ClosedChunk::Other(w) => match w.data {
                ClosedData::Mapped(r) => Some(r),
                ClosedData::Heap(_) => None,
            },
        }
    }

    /// The chunk's bytes; empty if its file reference does not resolve (which decoding then
    /// reports as a corrupt chunk).
    fn bytes<'a>(&'a self, maps: Option<&'a chunk_files::Maps<'_>>) -> &'a [u8] {
        match self {
            ClosedChunk::Other(w) => match &w.data {
                ClosedData::Heap(b) => b,
                ClosedData::Mapped(r) => maps.and_then(|m| m.get(*r)).unwrap_or(&[]),
            },
            ClosedChunk::Mapped(m) => maps.and_then(|maps| maps.get(m.chunk_ref)).unwrap_or(&[]),
        }
    }

    /// The chunk's bytes to hand out: shared with the chunk files' map, or a copy.
    fn shared_bytes(&self, maps: Option<&chunk_files::Maps<'_>>) -> Bytes {
        match self {
            ClosedChunk::Other(w) => match &w.data {
                ClosedData::Heap(b) => Bytes::copy_from_slice(b),
                ClosedData::Mapped(r) => maps.and_then(|m| m.get_shared(*r)).unwrap_or_default(),
            },
            ClosedChunk::Mapped(m) => maps.and_then(|maps| maps.get_shared(m.chunk_ref)).unwrap_or_default(),
        }
    }
}

/// Appends `c` to a series' closed chunks, growing the slice by exactly one: a series closes a
/// chunk every two hours or so, and every series would pay a `Vec`'s capacity word and slack.
fn push_closed(closed: &mut Box<[ClosedChunk]>, c: ClosedChunk) {
    let mut v = std::mem::take(closed).into_vec();
    v.reserve_exact(1);
    v.push(c);
    *closed = v.into_boxed_slice();
}

/// The mutable part of a series.
struct SeriesState {
    /// Oldest first.
    closed: Box<[ClosedChunk]>,
    open: Option<OpenChunk>,
    /// The open chunk is cut before a sample at or after this time.
    next_at: i64,
}

impl SeriesState {
    /// With the open chunk a quarter of the target size: sets when it is to end (Prometheus's
    /// `computeChunkEndTime`), and sizes its buffer for the samples it holds by then at the rate
    /// so far (at most twice the target, where it is cut anyway), so that a whole chunk leaves
    /// little spare capacity behind in every series.
    fn plan_open_chunk(&mut self, samples_per_chunk: u16) {
        let Some(c) = self.open.as_mut() else {
            return;
        };
        let (Some(first), Some(last)) = (c.first_time(), c.last_time()) else {
            return;
        };
        self.next_at = compute_chunk_end_time(first, last, self.next_at);
        let n = i128::from(c.num_samples());
        if n > 1 && last > first {
            let span = i128::from(self.next_at) - 1 - i128::from(first);
            let expected = 1 + (n - 1) * span / (i128::from(last) - i128::from(first));
            let most = i128::from(samples_per_chunk.saturating_mul(2)).max(n);
            c.reserve_for(u16::try_from(expected.clamp(n, most)).unwrap_or(u16::MAX));
        }
    }
}

/// One series in the head.
pub struct MemSeries {
    pub series_ref: SeriesRef,
    pub labels: InternedLabels,
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
    fn new(series_ref: SeriesRef, labels: InternedLabels, wal_logged: bool) -> Self {
        MemSeries {
            series_ref,
            labels,
            wal_logged: AtomicBool::new(wal_logged),
            pending: AtomicU32::new(0),
            state: Mutex::new(SeriesState { closed: Box::default(), open: None, next_at: i64::MIN }),
        }
    }

    /// The newest sample's time and value bits.
    fn last_sample(&self, files: Option<&ChunkFiles>) -> Option<(i64, u64)> {
        let st = self.state.lock();
        last_of(&st, files)
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

    /// Appends one sample, cutting chunks as Prometheus's head does; a closed chunk goes to
    /// `files` when they are writable. `floor` is read under the series lock, so a sample is
    /// either refused or visible to a block cut that raised it.
    fn append(&self, t: i64, v: f64, head: &Head) -> AppendResult {
        let opts = &head.opts;
        let mut st = self.state.lock();
        if t < head.floor.load(Ordering::Acquire) {
            return AppendResult::OutOfBounds;
        }
        // Without an open chunk (right after replay took the series' chunks from the files), a
        // sample after the newest closed chunk needs no check: reading that chunk would map
        // its page back in for nothing.
        let after_closed = st.open.is_none() && st.closed.last().is_none_or(|c| t > c.max_time());
        if !after_closed {
            if let Some(r) = Self::check(last_of(&st, head.chunk_files.as_deref()), t, v) {
                return r;
            }
        }
        let spc = opts.samples_per_chunk;
        let mut chunk_created = false;
        let need_cut = match st.open.as_ref().map(OpenChunk::num_samples) {
            None => true,
            Some(n) => {
                if n == spc / 4 {
                    st.plan_open_chunk(spc);
                }
                t >= st.next_at || n >= spc.saturating_mul(2)
            }
        };
        if need_cut {
            if let Some(done) = st.open.take() {
                if let (Some(min_time), Some(max_time)) = (done.first_time(), done.last_time()) {
                    let data = head.close_chunk(self.series_ref, min_time, max_time, done.into_xor());
                    push_closed(&mut st.closed, ClosedChunk::new(min_time, max_time, data));
                }
            }
            st.open = Some(OpenChunk::new());
            st.next_at = range_for_timestamp(t, opts.chunk_range);
            chunk_created = true;
        }
        if let Some(c) = st.open.as_mut() {
            c.append(t, v);
        }
        AppendResult::Appended { chunk_created }
    }

    /// Calls `f` with every sample in `[mint, maxt]`, oldest first.
    fn for_each_sample(
        &self,
        files: Option<&ChunkFiles>,
        mint: i64,
        maxt: i64,
        mut f: impl FnMut(i64, f64),
    ) -> crate::Result<()> {
        self.with_chunks_in(files, mint, maxt, |chunks| {
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

    /// The chunks (open one included) overlapping `[mint, maxt]`, oldest first: those in the
    /// chunk files shared with their maps, the others copied.
    fn chunks_in(&self, files: Option<&ChunkFiles>, mint: i64, maxt: i64) -> Vec<ChunkData> {
        let st = self.state.lock();
        let maps = files.map(ChunkFiles::maps);
        let overlaps = |cmin: i64, cmax: i64| cmax >= mint && cmin <= maxt;
        let closed = st
            .closed
            .iter()
            .filter(|c| overlaps(c.min_time(), c.max_time()))
            .map(|c| (c.min_time(), c.max_time(), c.shared_bytes(maps.as_ref())));
        let open = st
            .open
            .iter()
            .filter_map(|c| Some((c.first_time()?, c.last_time()?, c)))
            .filter(|&(cmin, cmax, _)| overlaps(cmin, cmax))
            .map(|(cmin, cmax, c)| {
                let data = match c.xor_bytes() {
                    Cow::Borrowed(b) => Bytes::copy_from_slice(b),
                    Cow::Owned(v) => Bytes::from(v),
                };
                (cmin, cmax, data)
            });
        closed
            .chain(open)
            .map(|(min_time, max_time, data)| ChunkData { min_time, max_time, encoding: Encoding::Xor, data })
            .collect()
    }

    /// Whether a chunk (open one included) overlaps `[mint, maxt]`.
    fn has_chunk_in(&self, mint: i64, maxt: i64) -> bool {
        let st = self.state.lock();
        let open = st.open.as_ref().and_then(|c| Some((c.first_time()?, c.last_time()?)));
        st.closed
            .iter()
            .map(|c| (c.min_time(), c.max_time()))
            .chain(open)
            .any(|(cmin, cmax)| cmax >= mint && cmin <= maxt)
    }

    /// Calls `f`, under the series lock, with the time range and bytes of each chunk (the open
    /// one last) overlapping `[mint, maxt]`, oldest first.
    fn with_chunks_in<R>(
        &self,
        files: Option<&ChunkFiles>,
        mint: i64,
        maxt: i64,
        f: impl FnOnce(&mut dyn Iterator<Item = (i64, i64, &[u8])>) -> R,
    ) -> R {
        let st = self.state.lock();
        let maps = files.map(ChunkFiles::maps);
        let closed = st.closed.iter().map(|c| (c.min_time(), c.max_time(), c.bytes(maps.as_ref())));
        let open = st.open.as_ref().and_then(|c| Some((c.first_time()?, c.last_time()?, c.xor_bytes())));
        let open = open.as_ref().map(|(cmin, cmax, data)| (*cmin, *cmax, &**data));
        f(&mut closed.chain(open).filter(|&(cmin, cmax, _)| cmax >= mint && cmin <= maxt))
    }

    /// Drops chunks that end before `mint` (they are in a block now). Returns how many were
    /// dropped, the first sample time left, if any, and the lowest chunk file still used.
    fn truncate_before(&self, mint: i64) -> (usize, Option<i64>, Option<u32>) {
        let mut st = self.state.lock();
        let before = st.closed.len();
        if st.closed.first().is_some_and(|c| c.max_time() < mint) {
            let mut kept = std::mem::take(&mut st.closed).into_vec();
            kept.retain(|c| c.max_time() >= mint);
            st.closed = kept.into_boxed_slice();
        }
        let mut dropped = before - st.closed.len();
        if st.open.as_ref().and_then(OpenChunk::last_time).is_some_and(|t| t < mint) {
            st.open = None;
            dropped += 1;
        }
        let first =
            st.closed.first().map(|c| c.min_time()).or_else(|| st.open.as_ref().and_then(OpenChunk::first_time));
        // Chunks are closed in order, so the first one in the files is in the lowest file.
        let file = st.closed.iter().find_map(|c| c.chunk_ref().map(chunk_files::chunk_file));
        (dropped, first, file)
    }

    /// Gives a series replayed from the WAL the chunks the chunk files hold for it (oldest
    /// first, those before the head's floor left out). Returns how many it took and their
    /// time span.
    fn attach(&self, chunks: Vec<LoadedChunk>, floor: i64) -> (u64, i64, i64) {
        let mut st = self.state.lock();
        let (mut n, mut mint, mut maxt) = (0, i64::MAX, i64::MIN);
        let mut closed = std::mem::take(&mut st.closed).into_vec();
        closed.reserve_exact(chunks.len());
        for c in chunks.into_iter().filter(|c| c.max_time >= floor) {
            // Files are read oldest first, so a series' chunks arrive in time order; one that
            // does not follow the last is left out rather than break the order.
            if closed.last().is_some_and(|last| c.min_time <= last.max_time()) {
                continue;
            }
            n += 1;
            mint = mint.min(c.min_time);
            maxt = maxt.max(c.max_time);
            closed.push(ClosedChunk::new(c.min_time, c.max_time, ClosedData::Mapped(c.chunk_ref)));
        }
        st.closed = closed.into_boxed_slice();
        (n, mint, maxt)
    }

    /// The end of the newest closed chunk, when there is no open one: WAL samples up to it are
    /// in the chunk files already.
    fn closed_until(&self) -> Option<i64> {
        let st = self.state.lock();
        if st.open.is_some() {
            return None;
        }
        st.closed.last().map(ClosedChunk::max_time)
    }
}

/// The newest sample's time and value bits: from the open chunk, or (right after a replay that
/// found every sample of the series in the chunk files) decoded from the newest closed one.
fn last_of(st: &SeriesState, files: Option<&ChunkFiles>) -> Option<(i64, u64)> {
    match st.open.as_ref() {
        Some(c) => Some((c.last_time()?, c.last_value()?.to_bits())),
        None => {
            let maps = files.map(ChunkFiles::maps);
            let last = st.closed.last()?;
            XorIter::new(last.bytes(maps.as_ref())).ok()?.last().map(|(t, v)| (t, v.to_bits()))
        }
    }
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

/// Series by label hash. The table holds only the series, 8 bytes an entry where a map from
/// hash to series takes 16: a lookup compares the label sets of the entries whose hash shares
/// the table's 7-bit tag with the one sought (hash collisions are entries like any other), and
/// a resize hashes each label set again.
#[derive(Default)]
struct HashStripe(hashbrown::HashTable<Arc<MemSeries>>);

impl HashStripe {
    fn find(&self, hash: u64, is: impl Fn(&MemSeries) -> bool) -> Option<&Arc<MemSeries>> {
        self.0.find(hash, |s| is(s))
    }

    fn remove(&mut self, hash: u64, series_ref: SeriesRef) {
        if let Ok(entry) = self.0.find_entry(hash, |s| s.series_ref == series_ref) {
            entry.remove();
        }
    }

    fn insert(&mut self, hash: u64, s: Arc<MemSeries>) {
        self.0.insert_unique(hash, s, |s| s.labels.hash());
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<MemSeries>> {
        self.0.iter()
    }
}

/// Series by ref, for WAL replay: a set of series keyed by the ref each holds, 8 bytes an
/// entry where a map from ref to series takes 16.
#[derive(Default)]
struct RefStripe(HashSet<ByRef>);

/// A series in a [`RefStripe`]: equal, hashed and looked up as its ref.
struct ByRef(Arc<MemSeries>);

impl PartialEq for ByRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.series_ref == other.0.series_ref
    }
}

impl Eq for ByRef {}

impl Hash for ByRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As the ref itself hashes, which `Borrow` requires.
        self.0.series_ref.hash(state);
    }
}

impl Borrow<SeriesRef> for ByRef {
    fn borrow(&self) -> &SeriesRef {
        &self.0.series_ref
    }
}

impl RefStripe {
    fn contains_key(&self, r: &SeriesRef) -> bool {
        self.0.contains(r)
    }

    fn get(&self, r: &SeriesRef) -> Option<&Arc<MemSeries>> {
        self.0.get(r).map(|s| &s.0)
    }

    /// Adds `s`, replacing a series with the same ref.
    fn insert(&mut self, s: Arc<MemSeries>) {
        self.0.replace(ByRef(s));
    }

    fn remove(&mut self, r: &SeriesRef) {
        self.0.remove(r);
    }

    fn keys(&self) -> impl Iterator<Item = &SeriesRef> {
        self.0.iter().map(|s| &s.0.series_ref)
    }

    fn values(&self) -> impl Iterator<Item = &Arc<MemSeries>> {
        self.0.iter().map(|s| &s.0)
    }
}

/// The in-memory head of one TSDB.
pub struct Head {
    opts: HeadOptions,
    hash_stripes: Box<[RwLock<HashStripe>]>,
    ref_stripes: Box<[RwLock<RefStripe>]>,
    postings: RwLock<MemPostings>,
    /// The label strings of every series.
    symbols: Arc<Symbols>,
    last_ref: AtomicU64,
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// Samples before this time belong to persisted blocks and are refused as out of bounds.
    floor: AtomicI64,
    stats: HeadStats,
    /// Where closed chunks go; None keeps them on the heap. Shared with selects reading it.
    chunk_files: Option<Arc<ChunkFiles>>,
    /// Selects still reading chunks, which truncation waits for.
    reads: Arc<reads::PendingReads>,
    /// Set while writing closed chunks fails, so the failure is logged once, not per chunk.
    chunk_write_failing: AtomicBool,
}

impl Head {
    /// A head that keeps closed chunks on the heap.
    pub fn new(opts: HeadOptions) -> Self {
        Self::build(opts, None)
    }

    /// A head that writes closed chunks to `files` (when writable) and reads them from there.
    pub fn with_chunk_files(opts: HeadOptions, files: ChunkFiles) -> Self {
        Self::build(opts, Some(Arc::new(files)))
    }

    fn build(opts: HeadOptions, chunk_files: Option<Arc<ChunkFiles>>) -> Self {
        let stripes = opts.stripes.max(1).next_power_of_two();
        Head {
            chunk_files,
            reads: Arc::default(),
            chunk_write_failing: AtomicBool::new(false),
            hash_stripes: (0..stripes).map(|_| RwLock::default()).collect(),
            ref_stripes: (0..stripes).map(|_| RwLock::default()).collect(),
            postings: RwLock::default(),
            symbols: Symbols::new(),
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

    /// The head chunk files, if the head has them.
    pub fn chunk_files(&self) -> Option<&ChunkFiles> {
        self.chunk_files.as_deref()
    }

    /// Where the bytes of a chunk just closed go: the chunk files when writable, else (or if
    /// the write fails, which is logged once per run of failures) the heap.
    fn close_chunk(&self, series_ref: SeriesRef, min_time: i64, max_time: i64, chunk: XorAppender) -> ClosedData {
        let Some(files) = self.chunk_files.as_deref().filter(|f| f.writable()) else {
            return ClosedData::Heap(chunk.into_bytes());
        };
        match files.write(series_ref, min_time, max_time, chunk.bytes()) {
            Ok(r) => {
                if self.chunk_write_failing.load(Ordering::Relaxed) {
                    self.chunk_write_failing.store(false, Ordering::Relaxed);
                    tracing::info!("writing head chunks to their files works again");
                }
                ClosedData::Mapped(r)
            }
            Err(error) => {
                if !self.chunk_write_failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(%error, "cannot write a head chunk to its file; closed chunks stay in memory meanwhile");
                }
                ClosedData::Heap(chunk.into_bytes())
            }
        }
    }

    /// Copies of the chunks of `s` (open one included) overlapping `[mint, maxt]`, oldest first.
    pub fn chunks_in(&self, s: &MemSeries, mint: i64, maxt: i64) -> Vec<ChunkData> {
        s.chunks_in(self.chunk_files.as_deref(), mint, maxt)
    }

    /// Whether `s` has a chunk (open one included) overlapping `[mint, maxt]`.
    pub fn has_chunk_in(&self, s: &MemSeries, mint: i64, maxt: i64) -> bool {
        s.has_chunk_in(mint, maxt)
    }

    /// Calls `f` with every sample of `s` in `[mint, maxt]`, oldest first.
    pub fn for_each_sample(&self, s: &MemSeries, mint: i64, maxt: i64, f: impl FnMut(i64, f64)) -> crate::Result<()> {
        s.for_each_sample(self.chunk_files.as_deref(), mint, maxt, f)
    }

    /// The newest sample of `s`: time and value bits.
    pub fn last_sample(&self, s: &MemSeries) -> Option<(i64, u64)> {
        s.last_sample(self.chunk_files.as_deref())
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
        let s = Arc::new(MemSeries::new(series_ref, self.symbols.intern(pairs.iter().copied()), false));
        s.pending.fetch_add(1, Ordering::AcqRel);
        w.insert(hash, s.clone());
        drop(w);
        self.index(&s);
        (s, true)
    }

    /// Re-creates a series from a WAL series record, with the chunks the chunk files hold for
    /// it. A ref seen before is kept as it is. Returns how many of those chunks it took.
    pub fn replay_series(&self, series_ref: SeriesRef, labels: Labels, mapped: Vec<LoadedChunk>) -> u64 {
        self.recreate(series_ref, labels, mapped).map_or(0, |(_, n)| n)
    }

    /// [`Head::replay_series`], returning the new series too (None for a ref or label set seen
    /// before).
    fn recreate(
        &self,
        series_ref: SeriesRef,
        labels: Labels,
        mapped: Vec<LoadedChunk>,
    ) -> Option<(Arc<MemSeries>, u64)> {
        if self.ref_stripe(series_ref).read().contains_key(&series_ref) {
            return None;
        }
        let hash = labels.hash();
        let mut w = self.hash_stripe(hash).write();
        if w.find(hash, |s| s.labels.eq_labels(&labels)).is_some() {
            // The same label set under another ref: Prometheus keeps the first; samples under
            // the second ref are dropped as unknown on replay, as they are there.
            return None;
        }
        self.last_ref.fetch_max(series_ref, Ordering::Relaxed);
        let s = Arc::new(MemSeries::new(series_ref, self.symbols.intern(labels.iter()), true));
        let (n, mint, maxt) = s.attach(mapped, self.floor());
        if n > 0 {
            self.min_time.fetch_min(mint, Ordering::Relaxed);
            self.max_time.fetch_max(maxt, Ordering::Relaxed);
            self.stats.chunks.fetch_add(n, Ordering::Relaxed);
        }
        w.insert(hash, s.clone());
        drop(w);
        self.index(&s);
        Some((s, n))
    }

    /// Restores the series of a head snapshot, each with the chunks of `mapped` (the chunk
    /// files' chunks, in file order) that are its and with its open chunk. Fails when the
    /// chunk files do not give back every closed chunk the snapshot's head had, or a series'
    /// chunks do not follow one another; the head is then to be dropped and the WAL replayed.
    /// Returns the closed chunks taken from the files.
    pub fn restore(&self, snapshot: snapshot::Snapshot, mapped: Vec<LoadedChunk>) -> crate::Result<u64> {
        let mismatch = |reason: String| crate::Error::CorruptFile { path: snapshot.dir.clone(), reason };
        let mut by_series: HashMap<SeriesRef, Vec<LoadedChunk>> = HashMap::new();
        for c in mapped {
            self.reserve_refs(c.series_ref);
            by_series.entry(c.series_ref).or_default().push(c);
        }
        self.reserve_refs(snapshot.last_ref);
        let floor = self.floor();
        let mut closed = 0;
        // In ref order, each ref goes to the end of its postings lists; in any other order
        // (the series maps' order, in which snapshots are written) every insertion into a long
        // list would move half of it.
        let mut series = snapshot.series;
        series.sort_unstable_by_key(|s| s.series_ref);
        for s in series {
            let chunks = by_series.remove(&s.series_ref).unwrap_or_default();
            let Some((series, n)) = self.recreate(s.series_ref, s.labels, chunks) else {
                return Err(mismatch(format!("series ref {} appears twice", s.series_ref)));
            };
            closed += n;
            let Some(open) = s.open.filter(|o| o.max_time >= floor) else {
                continue;
            };
            let mut st = series.state.lock();
            if st.closed.last().is_some_and(|c| c.max_time() >= open.min_time) {
                return Err(mismatch(format!("the open chunk of {} overlaps its closed chunks", series.labels)));
            }
            st.open = Some(open.chunk);
            st.next_at = open.next_at;
            drop(st);
            self.min_time.fetch_min(open.min_time, Ordering::Relaxed);
            self.max_time.fetch_max(open.max_time, Ordering::Relaxed);
            self.stats.chunks.fetch_add(1, Ordering::Relaxed);
        }
        if closed != snapshot.closed_chunks {
            return Err(mismatch(format!(
                "the chunk files hold {closed} of the {} closed chunks the head had",
                snapshot.closed_chunks
            )));
        }
        Ok(closed)
    }

    /// Raises the ref counter past refs the chunk files name, so that a series created after
    /// replay never takes the ref of chunks left there by a series that is gone.
    pub fn reserve_refs(&self, upto: SeriesRef) {
        self.last_ref.fetch_max(upto, Ordering::Relaxed);
    }

    fn index(&self, s: &Arc<MemSeries>) {
        self.ref_stripe(s.series_ref).write().insert(s.clone());
        self.postings.write().add(s.series_ref, s.labels.iter());
        self.stats.series.fetch_add(1, Ordering::Relaxed);
        self.stats.series_created.fetch_add(1, Ordering::Relaxed);
    }

    pub fn series_by_ref(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        self.ref_stripe(r).read().get(&r).cloned()
    }

    /// Appends one replayed sample; samples the head would refuse are dropped and counted.
    pub fn replay_sample(&self, s: &MemSeries, t: i64, v: f64) -> AppendResult {
        let r = s.append(t, v, self);
        self.account(&[(r, t)]);
        r
    }

    /// The newest time of the chunks `s` took from the chunk files, while it has no open chunk
    /// (as right after [`Head::replay_series`]): WAL samples up to it are in those files.
    pub fn mapped_until(&self, s: &MemSeries) -> Option<i64> {
        s.closed_until()
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
    /// series left without chunks that no appender holds. Raises the floor to `mint` first, then
    /// waits for the selects that started before and still read times before `mint` (their
    /// list of blocks may lack the block that now holds that data).
    pub fn truncate(&self, mint: i64) -> TruncateStats {
        self.raise_floor(mint);
        self.reads.wait_before(mint);
        // Chunks closed from here on go to files numbered `writes_from` or later.
        let writes_from = self.chunk_files.as_deref().map(ChunkFiles::rotate);
        let mut min_file = u32::MAX;
        let mut stats = TruncateStats::default();
        let mut new_min = i64::MAX;
        let mut removed: Vec<Arc<MemSeries>> = Vec::new();
        for stripe in self.hash_stripes.iter() {
            let mut w = stripe.write();
            let mut gone = Vec::new();
            for s in w.iter() {
                let (dropped, first, file) = s.truncate_before(mint);
                stats.chunks_removed += dropped as u64;
                min_file = min_file.min(file.unwrap_or(u32::MAX));
                match first {
                    Some(t) => new_min = new_min.min(t),
                    None if s.pending.load(Ordering::Acquire) == 0 => gone.push(s.clone()),
                    None => {}
                }
            }
            for s in gone {
                w.remove(s.labels.hash(), s.series_ref);
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
        if let (Some(files), Some(writes_from)) = (&self.chunk_files, writes_from) {
            match files.delete_before(min_file.min(writes_from)) {
                Ok(n) => stats.chunk_files_removed = n,
                Err(error) => tracing::warn!(%error, "cannot delete head chunk files no longer needed; will retry"),
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
            assert!(matches!(s.append(i * step, i as f64, &head), AppendResult::Appended { .. }));
        }
        let st = s.state.lock();
        let mut all: Vec<(i64, i64, u16)> = st
            .closed
            .iter()
            .map(|c| (c.min_time(), c.max_time(), XorIter::new(c.bytes(None)).unwrap().num_samples()))
            .collect();
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
            s.append(i, 1.0, &head);
        }
        let st = s.state.lock();
        assert!(st.closed.iter().all(|c| XorIter::new(c.bytes(None)).unwrap().num_samples() <= 240));
    }

    #[test]
    fn refuses_what_prometheus_refuses() {
        let head = Head::new(HeadOptions::default());
        let (s, _) = head.get_or_create(&pairs("m"));
        assert!(matches!(s.append(100, 1.0, &head), AppendResult::Appended { .. }));
        assert_eq!(s.append(100, 1.0, &head), AppendResult::Duplicate);
        assert_eq!(s.append(100, 2.0, &head), AppendResult::DuplicateTimestamp);
        assert_eq!(s.append(99, 2.0, &head), AppendResult::OutOfOrder);
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        assert!(matches!(s.append(200, stale, &head), AppendResult::Appended { .. }));
        // A NaN with other bits is a different value.
        assert_eq!(s.append(200, f64::NAN, &head), AppendResult::DuplicateTimestamp);
        let mut got = vec![];
        head.for_each_sample(&s, i64::MIN, i64::MAX, |t, v| got.push((t, v.to_bits()))).unwrap();
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
        let long = head.series_sorted().into_iter().find(|s| s.labels.get("__name__") == Some("long")).unwrap();
        assert!(head.chunks_in(&long, i64::MIN, 2 * h - 1).is_empty());
        assert_eq!(head.chunks_in(&long, 2 * h, i64::MAX).len(), 4);
        // Appends before the floor are out of bounds, even for a brand-new series.
        assert_eq!(long.append(2 * h - 1, 1.0, &head), AppendResult::OutOfBounds);
        let mut app = head.appender();
        app.append(&pairs("new"), [(2 * h - 1, 1.0), (4 * h, 1.0)]).unwrap();
        let out = app.commit(None).unwrap();
        assert_eq!((out.appended, out.rejected.out_of_bounds), (1, 1));
        drop(held);
        head.truncate(2 * h);
        assert_eq!(head.num_series(), 2, "the released empty series is collected");
    }

    #[test]
    fn a_series_replayed_from_chunk_files_alone_knows_its_newest_sample() {
        // What a machine crash can leave: a closed chunk in the files whose next sample the WAL
        // lost. The series' newest sample is then the chunk's last.
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = ChunkFiles::open(dir.path(), true).unwrap();
        let mut chunk = XorAppender::new();
        chunk.append(1000, 1.0);
        chunk.append(2000, 2.0);
        files.write(5, 1000, 2000, chunk.bytes()).unwrap();
        drop(files);
        let (files, loaded) = ChunkFiles::open(dir.path(), true).unwrap();
        let head = Head::with_chunk_files(HeadOptions::default(), files);
        assert_eq!(head.replay_series(5, Labels::from_sorted_unchecked(pairs("m")), loaded), 1);
        let s = head.series_by_ref(5).unwrap();
        assert_eq!(head.mapped_until(&s), Some(2000), "replay skips samples up to here");
        assert_eq!(head.last_sample(&s), Some((2000, 2.0f64.to_bits())));
        let mut app = head.appender();
        app.append(&pairs("m"), [(2000, 2.0), (2000, 3.0), (1500, 1.0), (3000, 3.0)]).unwrap();
        let out = app.commit(None).unwrap();
        assert_eq!((out.appended, out.rejected.duplicate_timestamp, out.rejected.out_of_order), (1, 1, 1));
        let mut got = vec![];
        head.for_each_sample(&s, i64::MIN, i64::MAX, |t, v| got.push((t, v))).unwrap();
        assert_eq!(got, vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)]);
    }

    #[test]
    fn hash_stripes_find_every_series_across_resizes_and_removals() {
        let symbols = Symbols::new();
        let mut stripe = HashStripe::default();
        let sets: Vec<Labels> =
            (0..5000).map(|i| Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())])).collect();
        for (i, l) in sets.iter().enumerate() {
            stripe.insert(l.hash(), Arc::new(MemSeries::new(i as u64 + 1, symbols.intern(l.iter()), false)));
        }
        let find =
            |stripe: &HashStripe, l: &Labels| stripe.find(l.hash(), |s| s.labels.eq_labels(l)).map(|s| s.series_ref);
        for (i, l) in sets.iter().enumerate() {
            assert_eq!(find(&stripe, l), Some(i as u64 + 1));
        }
        for (i, l) in sets.iter().enumerate().step_by(2) {
            stripe.remove(l.hash(), i as u64 + 1);
        }
        for (i, l) in sets.iter().enumerate() {
            assert_eq!(find(&stripe, l), (i % 2 == 1).then_some(i as u64 + 1));
        }
        assert_eq!(stripe.iter().count(), 2500);
    }

    #[test]
    fn per_series_structures_stay_small() {
        // Every series pays these; the bins glibc's malloc rounds to are 16 bytes apart.
        assert_eq!(std::mem::size_of::<ClosedChunk>(), 24);
        assert!(std::mem::size_of::<MemSeries>() <= 120);
    }

    #[test]
    fn closed_chunks_keep_their_time_range_at_any_width() {
        let spans = [0, 1, i64::from(u32::MAX), i64::from(u32::MAX) + 1, i64::MAX];
        for (min_time, span) in spans.iter().flat_map(|&s| [(0, s), (-5, s), (i64::MIN, s)]) {
            let max_time = min_time.wrapping_add(span);
            for data in [ClosedData::Mapped(7 << 32 | 8), ClosedData::Heap(Box::new([0, 0]))] {
                let mapped = matches!(data, ClosedData::Mapped(_));
                let c = ClosedChunk::new(min_time, max_time, data);
                assert_eq!((c.min_time(), c.max_time()), (min_time, max_time), "span {span}");
                assert_eq!(c.chunk_ref(), mapped.then_some(7 << 32 | 8));
                let compact = mapped && max_time >= min_time && span <= i64::from(u32::MAX);
                assert_eq!(matches!(c, ClosedChunk::Mapped(_)), compact, "span {span}");
            }
        }
        // Heap chunks read back their bytes; mapped ones without files read as empty.
        let heap = ClosedChunk::new(1, 2, ClosedData::Heap(Box::new([0, 1, 2])));
        assert_eq!(heap.bytes(None), &[0, 1, 2]);
        assert_eq!(heap.shared_bytes(None), Bytes::from_static(&[0, 1, 2]));
        assert!(ClosedChunk::new(1, 2, ClosedData::Mapped(0)).bytes(None).is_empty());
    }

    #[test]
    fn series_by_ref_are_found_listed_and_removed_by_ref() {
        let head = Head::new(HeadOptions::default());
        let (a, _) = head.get_or_create(&pairs("a"));
        let (b, _) = head.get_or_create(&pairs("b"));
        let mut stripe = RefStripe::default();
        stripe.insert(a.clone());
        stripe.insert(b.clone());
        stripe.insert(a.clone());
        assert!(stripe.contains_key(&a.series_ref) && !stripe.contains_key(&99));
        assert!(Arc::ptr_eq(stripe.get(&b.series_ref).unwrap(), &b));
        let mut keys: Vec<_> = stripe.keys().copied().collect();
        keys.sort_unstable();
        assert_eq!(keys, [a.series_ref, b.series_ref]);
        assert_eq!(stripe.values().count(), 2);
        stripe.remove(&a.series_ref);
        stripe.remove(&99);
        assert!(stripe.get(&a.series_ref).is_none());
        assert_eq!(stripe.keys().collect::<Vec<_>>(), [&b.series_ref]);
        assert!(Arc::ptr_eq(&head.series_by_ref(b.series_ref).unwrap(), &b));
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
