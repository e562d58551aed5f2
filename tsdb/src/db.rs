//! One TSDB directory: persisted blocks, plus a head rebuilt from, and appended through, a
//! write-ahead log. When the head spans more than 1.5 chunk ranges, its oldest chunk range is
//! cut into a block, the head is truncated and the WAL checkpointed, as in Prometheus.
//!
//! Layout (as Prometheus): `<dir>/<ULID>/` blocks, `<dir>/wal/` WAL segments and checkpoints,
//! `<dir>/chunks_head/` the head's closed chunks.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use ulid::Ulid;

use crate::block::meta::{BlockCompaction, BlockMeta};
use crate::block::{open_blocks, remove_tmp_dirs, Block, BlockSeries, BlockWriter};
use crate::gotext::format_g;
use crate::head::{
    chunk_files, snapshot, AppendOutcome, AppendResult, ChunkFiles, Head, HeadAppender, HeadOptions, LoadedChunk,
    MemSeries,
};
use crate::labels::LabelsError;
use crate::matchers::Matcher;
use crate::querier::{for_each_sample, merge_series_sets, SeriesIter};
use crate::wal::{self, Record, ReplayStats, SeriesRef, Wal, WalOptions};
use crate::{Error, Result};

/// Options for a TSDB directory.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub head: HeadOptions,
    pub wal: WalOptions,
    /// Blocks whose end is more than this many milliseconds before the newest block's end are
    /// deleted (Prometheus's time retention). `None` keeps everything.
    pub retention: Option<i64>,
    /// Write a head snapshot at [`Db::close`], so the next open restores the head from it
    /// instead of replaying the WAL (see [`snapshot`]).
    pub snapshot_on_shutdown: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            head: HeadOptions::default(),
            wal: WalOptions::default(),
            retention: None,
            snapshot_on_shutdown: true,
        }
    }
}

/// Decides whether retention may delete a block (e.g. only once it is shipped).
pub type DeletableFn = Arc<dyn Fn(&BlockMeta) -> bool + Send + Sync>;

/// An open TSDB.
pub struct Db {
    dir: PathBuf,
    opts: DbOptions,
    head: Head,
    wal: Wal,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Held while a block is cut; `close` takes it so it never races a cut.
    cut_lock: Mutex<()>,
    /// Read-held by a commit from its WAL write until its samples are in the head; `close`
    /// write-holds it, so the head it snapshots has everything the WAL has.
    commits: RwLock<()>,
    cutting: AtomicBool,
    closed: AtomicBool,
    deletable: RwLock<Option<DeletableFn>>,
    on_block: RwLock<Option<BlockHook>>,
    replayed: HeadReplay,
}

/// Called after each new block is written (the receiver wakes its shipper with it).
pub type BlockHook = Arc<dyn Fn(&BlockMeta) + Send + Sync>;

/// What replaying a WAL into a head found.
#[derive(Debug, Default, Clone)]
pub struct HeadReplay {
    pub wal: ReplayStats,
    /// Samples that refer to a series no series record introduced.
    pub unknown_refs: u64,
    /// Samples older than the end of the newest block, skipped because a block holds them:
    /// expected after a block cut, since the WAL segments after the checkpoint keep them.
    pub in_blocks: u64,
    /// Samples the head refused (out of order, or a second value at a timestamp).
    pub refused: u64,
    /// Closed chunks read from the head chunk files instead of being rebuilt from the WAL.
    pub mapped_chunks: u64,
    /// Samples skipped because the head chunk files hold them.
    pub mapped_samples: u64,
    /// Series restored from a head snapshot; when not zero, the WAL was not replayed.
    pub snapshot_series: u64,
}

/// Hashes a series ref by one multiplication (Fibonacci hashing): refs are small, dense
/// integers, not attacker-chosen keys.
#[derive(Default)]
struct RefHasher(u64);

impl Hasher for RefHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type RefHash = BuildHasherDefault<RefHasher>;

/// Rebuilds a head from the WAL in `wal_dir`, giving each series the chunks of `mapped` (the
/// head chunk files' chunks, in file order) that are its. Samples before the head's floor are
/// counted as already in blocks, not as refused; samples the chunk files hold are skipped.
fn replay_into(head: &Head, wal_dir: &Path, repair: bool, mapped: Vec<LoadedChunk>) -> Result<HeadReplay> {
    let mut out = HeadReplay::default();
    let mut by_series: HashMap<SeriesRef, Vec<LoadedChunk>> = HashMap::new();
    for c in mapped {
        head.reserve_refs(c.series_ref);
        by_series.entry(c.series_ref).or_default().push(c);
    }
    // Per ref seen in a samples record: the series and the newest time its chunk files hold.
    // Samples records of a receiver hold one sample of each of thousands of series, so the
    // lookup and the skip are per sample and must be cheap: no lock, a multiplicative hash.
    let mut seen: HashMap<SeriesRef, Option<(Arc<MemSeries>, i64)>, RefHash> = HashMap::default();
    let floor = head.floor();
    let apply = |rec: Record| -> Result<()> {
        match rec {
            Record::Series(series) => {
                for s in series {
                    let chunks = by_series.remove(&s.series_ref).unwrap_or_default();
                    out.mapped_chunks += head.replay_series(s.series_ref, s.labels, chunks);
                    // A ref looked up before its series record was unknown then.
                    seen.remove(&s.series_ref);
                }
            }
            Record::Samples(samples) => {
                for s in samples {
                    let entry = seen.entry(s.series_ref).or_insert_with(|| {
                        let series = head.series_by_ref(s.series_ref)?;
                        let until = head.mapped_until(&series).unwrap_or(i64::MIN);
                        Some((series, until))
                    });
                    let Some((series, until)) = entry else {
                        out.unknown_refs += 1;
                        continue;
                    };
                    // WAL samples of a series are in time order: once one is past the chunk
                    // files' end, so are the rest.
                    if s.t >= floor && s.t <= *until {
                        out.mapped_samples += 1;
                        continue;
                    }
                    match head.replay_sample(series, s.t, s.v) {
                        // A repeated identical sample is a no-op, as when it is appended.
                        AppendResult::Appended { .. } | AppendResult::Duplicate => {}
                        AppendResult::OutOfBounds => out.in_blocks += 1,
                        AppendResult::OutOfOrder | AppendResult::DuplicateTimestamp => out.refused += 1,
                    }
                }
            }
            Record::Tombstones(_) | Record::Metadata(_) | Record::Unsupported(_) => {}
        }
        Ok(())
    };
    out.wal = if repair { wal::replay(wal_dir, apply)? } else { wal::replay_read_only(wal_dir, apply)? };
    Ok(out)
}

/// The blocks of the TSDB in `dir` (oldest first) and a head rebuilt from its head chunk files
/// and either the head snapshot of its last clean shutdown (when the WAL ends where it was
/// taken) or its WAL; the head's floor is the end of the newest block. With `repair`, a damaged
/// WAL tail is cut off, damaged chunk files are removed, the head writes the chunks it closes to
/// new ones and the snapshot is removed once used; without, both are read up to the damage and
/// nothing on disk changes.
pub(crate) fn load(dir: &Path, head: HeadOptions, repair: bool) -> Result<(Vec<Arc<Block>>, Head, HeadReplay)> {
    let blocks: Vec<Arc<Block>> = open_blocks(dir)?.into_iter().map(Arc::new).collect();
    let floor = blocks.iter().map(|b| b.meta().max_time).max();
    let new_head = |files: ChunkFiles| {
        let head = Head::with_chunk_files(head.clone(), files);
        if let Some(end) = floor {
            head.raise_floor(end);
        }
        head
    };
    let chunks_dir = dir.join(chunk_files::DIR_NAME);
    let wal_dir = dir.join("wal");
    // Both paths need the chunk files; reading them overlaps reading the snapshot.
    let (snap, opened) = std::thread::scope(|scope| {
        let opening = scope.spawn(|| ChunkFiles::open(&chunks_dir, repair));
        let snap = wal::end(&wal_dir).and_then(|end| snapshot::read_matching(dir, end));
        (snap, opening.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    let (files, mut mapped) = opened?;
    let mut head = new_head(files);
    let mut restored = None;
    if let Some(snap) = snap? {
        let series = snap.series.len() as u64;
        match head.restore(snap, std::mem::take(&mut mapped)) {
            Ok(mapped_chunks) => {
                restored = Some(HeadReplay { snapshot_series: series, mapped_chunks, ..HeadReplay::default() })
            }
            Err(error) => {
                tracing::warn!(%error, "head snapshot does not fit the head chunk files; replaying the WAL");
                // The head holds part of the snapshot: start again from the files and the WAL.
                let (files, again) = ChunkFiles::open(&chunks_dir, repair)?;
                head = new_head(files);
                mapped = again;
            }
        }
    }
    let replay = match restored {
        Some(restored) => restored,
        None => replay_into(&head, &wal_dir, repair, mapped)?,
    };
    if repair {
        // Appends follow; a crash after them must not find a snapshot of an older head.
        snapshot::remove_all(dir)?;
    }
    Ok((blocks, head, replay))
}

impl Db {
    /// Opens (or creates) the TSDB in `dir`: removes what interrupted block writes left, opens
    /// the blocks, and replays the WAL into a new head whose floor is the end of the newest
    /// block. A torn or corrupt WAL tail is cut off (and logged); the rest is replayed.
    pub fn open(dir: &Path, opts: DbOptions) -> Result<Db> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create TSDB directory", dir, e))?;
        remove_tmp_dirs(dir)?;
        let started = Instant::now();
        let (blocks, head, replay) = load(dir, opts.head.clone(), true)?;
        tracing::info!(
            dir = %dir.display(),
            blocks = blocks.len(),
            segments = replay.wal.segments,
            series = head.num_series(),
            samples = replay.wal.samples,
            samples_already_in_blocks = replay.in_blocks,
            unknown_series_refs = replay.unknown_refs,
            refused_samples = replay.refused,
            chunks_from_chunk_files = replay.mapped_chunks,
            samples_in_chunk_files = replay.mapped_samples,
            corruptions_repaired = replay.wal.corruptions_repaired,
            series_from_snapshot = replay.snapshot_series,
            duration = ?started.elapsed(),
            "WAL replay completed"
        );
        // The load replayed the WAL with repair, or restored a snapshot taken where a clean
        // close left it: either way its tail is sound.
        let wal = Wal::open_replayed(&dir.join("wal"), opts.wal)?;
        wal.stats().corruptions_total.fetch_add(u64::from(replay.wal.corruptions_repaired), Ordering::Relaxed);
        Ok(Db {
            dir: dir.to_owned(),
            opts,
            head,
            wal,
            blocks: RwLock::new(blocks),
            cut_lock: Mutex::new(()),
            commits: RwLock::new(()),
            cutting: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            deletable: RwLock::new(None),
            on_block: RwLock::new(None),
            replayed: replay,
        })
    }

    /// What the WAL replay at open found.
    pub fn wal_replay(&self) -> &HeadReplay {
        &self.replayed
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The persisted blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().clone()
    }

    /// Restricts retention to blocks `f` accepts (the receiver passes "already shipped").
    pub fn set_deletable(&self, f: DeletableFn) {
        *self.deletable.write() = Some(f);
    }

    /// Calls `f` after every block this TSDB cuts.
    pub fn set_on_block(&self, f: BlockHook) {
        *self.on_block.write() = Some(f);
    }

    /// Starts a batch of appends; see [`DbAppender::commit`].
    pub fn appender(&self) -> DbAppender<'_> {
        DbAppender { db: self, inner: self.head.appender() }
    }

    /// Series matching `matchers` with data in `[mint, maxt]`, from blocks and head, merged, in
    /// label order; with `skip_chunks` their chunk lists are empty. Everything is read as the
    /// iterator advances, nothing gathered up front: blocks from those open at the call (their
    /// files stay mapped, so retention deleting one meanwhile does not matter), the head from
    /// the series matching at the call ([`Head::select`]; a block cut meanwhile waits for the
    /// iterator before it truncates the head under it).
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64, skip_chunks: bool) -> Result<SeriesIter> {
        select_from(|| self.blocks(), &self.head, matchers, mint, maxt, skip_chunks)
    }

    /// Label names of series matching `matchers` in blocks overlapping `[mint, maxt]` and the
    /// head, sorted and deduplicated.
    pub fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut all = std::collections::BTreeSet::new();
        for b in self.blocks().iter().filter(|b| b.meta().min_time <= maxt && b.meta().max_time > mint) {
            all.extend(b.label_names(matchers)?);
        }
        if self.head_overlaps(mint, maxt) {
            all.extend(self.head.label_names(matchers)?);
        }
        Ok(all.into_iter().collect())
    }

    /// Values of label `name` among series matching `matchers`, blocks and head, sorted.
    pub fn label_values(&self, name: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut all = std::collections::BTreeSet::new();
        for b in self.blocks().iter().filter(|b| b.meta().min_time <= maxt && b.meta().max_time > mint) {
            all.extend(b.label_values(name, matchers)?);
        }
        if self.head_overlaps(mint, maxt) {
            all.extend(self.head.label_values_matching(name, matchers)?);
        }
        Ok(all.into_iter().collect())
    }

    /// Whether the head holds data in `[mint, maxt]`. Label names and values of the head are
    /// answered for the head as a whole, as in Prometheus, when its range overlaps the query's.
    fn head_overlaps(&self, mint: i64, maxt: i64) -> bool {
        let (min, max) = (self.head.min_time(), self.head.max_time());
        min != i64::MAX && min <= maxt && max >= mint
    }

    /// Whether the head spans more than 1.5 chunk ranges, so its oldest range can be cut.
    pub fn compactable(&self) -> bool {
        let (min, max) = (self.head.min_time(), self.head.max_time());
        min != i64::MAX && max != i64::MIN && max.saturating_sub(min) > self.opts.head.chunk_range / 2 * 3
    }

    /// Cuts blocks in a background thread while the head is compactable; at most one runs.
    pub fn maybe_cut(self: &Arc<Self>) {
        if !self.compactable() || self.closed.load(Ordering::Acquire) || self.cutting.swap(true, Ordering::AcqRel) {
            return;
        }
        let db = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("block-cut".into()).spawn(move || {
            lower_thread_priority();
            while db.compactable() && !db.closed.load(Ordering::Acquire) {
                if let Err(error) = db.cut_block() {
                    tracing::error!(dir = %db.dir.display(), %error, "cutting a block from the head failed; will retry after the next append");
                    break;
                }
            }
            db.cutting.store(false, Ordering::Release);
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the block-cut thread");
            self.cutting.store(false, Ordering::Release);
        }
    }

    /// Writes the head's oldest chunk range `[min_time, next boundary)` as a level-1 block (none
    /// if the range holds no samples), then truncates the head, checkpoints the WAL and applies
    /// retention. Appends go on meanwhile; those older than the range's end are refused from the
    /// start of the cut. Returns whether the head was compactable (and so moved forward).
    pub fn cut_block(&self) -> Result<bool> {
        let _cut = self.cut_lock.lock();
        if !self.compactable() || self.closed.load(Ordering::Acquire) {
            return Ok(false);
        }
        let started = Instant::now();
        let mint = self.head.min_time();
        let range = self.opts.head.chunk_range;
        let maxt = (mint.div_euclid(range) + 1) * range;
        self.head.raise_floor(maxt);
        let ulid = Ulid::new();
        // The writer is created at the first series with data in range: a range with no data
        // (a gap in ingestion) yields no block, as in Prometheus.
        let mut writer: Option<BlockWriter> = None;
        for series in self.head.series_sorted() {
            let chunks = self.head.chunks_in(&series, mint, maxt - 1);
            if chunks.is_empty() {
                continue;
            }
            let w = match writer.as_mut() {
                Some(w) => w,
                None => writer.insert(self.new_block_writer(ulid)?),
            };
            w.add_series(&series.labels.to_labels(), &chunks)?;
        }
        let meta = match writer {
            Some(w) => {
                let compaction = BlockCompaction { level: 1, sources: vec![ulid], ..BlockCompaction::default() };
                let meta = w.finish(mint, maxt, compaction)?;
                let block = Block::open(&self.dir.join(ulid.to_string()))?;
                let mut blocks = self.blocks.write();
                blocks.push(Arc::new(block));
                blocks.sort_by_key(|b| (b.meta().min_time, b.meta().ulid));
                Some(meta)
            }
            None => None,
        };
        let written = started.elapsed();
        let truncated = self.head.truncate(maxt);
        self.truncate_wal(maxt)?;
        self.apply_retention()?;
        if let (Some(meta), Some(hook)) = (&meta, self.on_block.read().clone()) {
            hook(meta);
        }
        match &meta {
            Some(meta) => tracing::info!(
                dir = %self.dir.display(), ulid = %ulid, min_time = mint, max_time = maxt,
                series = meta.stats.num_series, samples = meta.stats.num_samples, chunks = meta.stats.num_chunks,
                write_duration = ?written, head_series_removed = truncated.series_removed,
                head_chunks_removed = truncated.chunks_removed, duration = ?started.elapsed(),
                "cut block from head"
            ),
            None => {
                tracing::info!(dir = %self.dir.display(), min_time = mint, max_time = maxt, "no samples in range; no block cut")
            }
        }
        Ok(true)
    }

    /// A block writer in this directory with every label name and value of the head as symbols.
    fn new_block_writer(&self, ulid: Ulid) -> Result<BlockWriter> {
        let mut w = BlockWriter::new(&self.dir, ulid)?;
        let symbols: Vec<Box<str>> = {
            let p = self.head.postings();
            p.names().flat_map(|(n, values)| std::iter::once(n.into()).chain(values.keys().cloned())).collect()
        };
        w.add_symbols(symbols.iter().map(|s| &**s))?;
        Ok(w)
    }

    /// Checkpoints the older two thirds of the WAL segments (never the one being written)
    /// keeping series still in the head and samples from `mint` on, then deletes those segments
    /// (Prometheus's `truncateWAL`).
    fn truncate_wal(&self, mint: i64) -> Result<()> {
        let (first, last) = self.wal.segment_range();
        self.wal.next_segment()?;
        let Some(last) = last.checked_sub(1) else { return Ok(()) };
        let last = first + (last.saturating_sub(first)) * 2 / 3;
        if last <= first {
            return Ok(());
        }
        let stats = self.wal.checkpoint(first, last, |r| self.head.series_by_ref(r).is_some(), mint)?;
        self.wal.truncate(last + 1)?;
        tracing::info!(dir = %self.dir.display(), from = first, to = last, ?stats, "WAL checkpoint created");
        Ok(())
    }

    /// Deletes blocks past the retention that the deletable filter (if any) allows.
    fn apply_retention(&self) -> Result<()> {
        let Some(retention) = self.opts.retention else { return Ok(()) };
        let deletable = self.deletable.read().clone();
        let doomed: Vec<Arc<Block>> = {
            let blocks = self.blocks.read();
            let Some(newest) = blocks.iter().map(|b| b.meta().max_time).max() else { return Ok(()) };
            blocks
                .iter()
                .filter(|b| newest - b.meta().max_time > retention)
                .filter(|b| deletable.as_ref().is_none_or(|f| f(b.meta())))
                .cloned()
                .collect()
        };
        for b in doomed {
            self.blocks.write().retain(|x| x.meta().ulid != b.meta().ulid);
            // Renamed first so that a crash mid-delete leaves a tmp dir, removed on open.
            let tmp = self.dir.join(format!("{}.tmp-for-deletion", b.meta().ulid));
            std::fs::rename(b.dir(), &tmp).map_err(|e| Error::io("rename block for deletion", b.dir(), e))?;
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("delete block", &tmp, e))?;
            tracing::info!(dir = %self.dir.display(), ulid = %b.meta().ulid, max_time = b.meta().max_time, "deleted block past retention");
        }
        Ok(())
    }

    /// Waits for a running cut and the commits in flight, then flushes and fsyncs the chunk
    /// files and the WAL and, if configured, writes the head snapshot. Later appends fail.
    /// Nothing is cut early: the WAL covers the head.
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        let _cut = self.cut_lock.lock();
        let _commits = self.commits.write();
        if let Some(files) = self.head.chunk_files() {
            files.sync()?;
        }
        self.wal.close()?;
        if self.opts.snapshot_on_shutdown && self.head.chunk_files().is_some_and(ChunkFiles::writable) {
            let start = Instant::now();
            let Some(wal_end) = wal::end(self.wal.dir())? else {
                return Ok(());
            };
            // Without it the next start replays the WAL, which has everything: a failure costs
            // time, not data.
            match snapshot::write(&self.head, &self.dir, wal_end) {
                Ok(stats) => tracing::info!(
                    dir = %stats.dir.display(), series = stats.series, bytes = stats.bytes,
                    elapsed = ?start.elapsed(), "head snapshot written"
                ),
                Err(error) => tracing::warn!(%error, "cannot write the head snapshot; the next start replays the WAL"),
            }
        }
        Ok(())
    }
}

/// How much the block-cut thread's nice value is raised.
#[cfg(target_os = "linux")]
const CUT_THREAD_NICE: libc::c_int = 10;
/// The highest (least favoured) nice value.
#[cfg(target_os = "linux")]
const MAX_NICE: libc::c_int = 19;

/// Lowers the calling thread's CPU priority, so that a block cut runs on the CPU time appends
/// leave over instead of competing with them for it: on a busy machine remote-write latency
/// stays as it was and the cut takes longer (the next one is due two hours of samples later).
#[cfg(target_os = "linux")]
fn lower_thread_priority() {
    // On Linux the nice value is per thread and `who` 0 is the calling thread; raising one's
    // own nice value needs no privilege. Relative to the current value, so that a process
    // started with a higher one keeps it. getpriority cannot fail for the calling thread.
    // SAFETY: getpriority and setpriority only read their integer arguments.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let lowered = (nice + CUT_THREAD_NICE).min(MAX_NICE);
    // SAFETY: as above, integer arguments only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, lowered) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the block-cut thread's priority");
    }
}

/// Elsewhere the nice value belongs to the whole process, so the thread keeps its priority.
#[cfg(not(target_os = "linux"))]
fn lower_thread_priority() {}

/// Series from blocks overlapping `[mint, maxt]` and the head, merged by labels. `blocks` is
/// called after the head's read has started, so that a block cut from the head meanwhile is
/// either in the list or still in the head (see [`Head::truncate`]).
fn select_from(
    blocks: impl FnOnce() -> Vec<Arc<Block>>,
    head: &Head,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    skip_chunks: bool,
) -> Result<SeriesIter> {
    let head_series = head.select(matchers, mint, maxt, skip_chunks)?;
    let mut sets: Vec<SeriesIter> = Vec::new();
    for b in blocks().iter().filter(|b| b.meta().min_time <= maxt && b.meta().max_time > mint) {
        sets.push(Box::new(BlockSeries::new(Arc::clone(b), matchers, mint, maxt, skip_chunks)?));
    }
    sets.push(Box::new(head_series.map(Ok)));
    Ok(merge_series_sets(sets))
}

/// A batch of appends to a [`Db`].
pub struct DbAppender<'a> {
    db: &'a Db,
    inner: HeadAppender<'a>,
}

impl DbAppender<'_> {
    /// See [`HeadAppender::append`].
    pub fn append(
        &mut self,
        pairs: &[(&str, &str)],
        samples: impl IntoIterator<Item = (i64, f64)>,
    ) -> std::result::Result<(), LabelsError> {
        self.inner.append(pairs, samples)
    }

    /// Writes the batch to the WAL, then applies it to the head. When this returns `Ok`, every
    /// sample counted as appended is in the WAL.
    pub fn commit(self) -> Result<AppendOutcome> {
        let _in_flight = self.db.commits.read();
        self.inner.commit(Some(self.db.wal()))
    }
}

/// Prints every sample of the TSDB in `dir` with time in `[mint, maxt]`, as `promtool tsdb dump`
/// does: one line per sample, `{labels} value timestamp`, series in label order, blocks and
/// head merged. Changes nothing on disk (the WAL is read without repair), so it is safe on the
/// directory of a running receiver.
pub fn dump(dir: &Path, mint: i64, maxt: i64, out: &mut dyn Write) -> Result<()> {
    if crate::inspect::check_tsdb_dir(dir)? == crate::inspect::Layout::Block {
        return Err(crate::inspect::block_not_tsdb(dir));
    }
    let (blocks, head, _) = load(dir, HeadOptions::default(), false)?;
    let io = |e| Error::io("write dump output", "-", e);
    for series in select_from(|| blocks, &head, &[], mint, maxt, false)? {
        let series = series?;
        let labels = &series.labels;
        let mut err = None;
        for_each_sample(&series, mint, maxt, |t, v| {
            if err.is_none() {
                if let Err(e) = writeln!(out, "{labels} {} {t}", format_g(v)) {
                    err = Some(e);
                }
            }
        })?;
        if let Some(e) = err {
            return Err(io(e));
        }
    }
    out.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(db: &Db, name: &str, samples: &[(i64, f64)]) -> AppendOutcome {
        let mut app = db.appender();
        app.append(&[("__name__", name), ("job", "j")], samples.iter().copied()).unwrap();
        app.commit().unwrap()
    }

    fn dump_lines(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        dump(dir, i64::MIN, i64::MAX, &mut out).unwrap();
        String::from_utf8(out).unwrap().lines().map(str::to_owned).collect()
    }

    #[test]
    fn reopen_replays_everything_committed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(write(&db, "a", &[(1000, 1.0), (2000, 2.0)]).appended, 2);
        assert_eq!(write(&db, "b", &[(1000, 3.5)]).appended, 1);
        // Dropped without close, as a killed process leaves it.
        drop(db);
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(db.head().num_series(), 2);
        assert_eq!((db.head().min_time(), db.head().max_time()), (1000, 2000));
        // The replayed head refuses what the original would have refused.
        let out = write(&db, "a", &[(2000, 9.0), (3000, 3.0)]);
        assert_eq!((out.appended, out.rejected.duplicate_timestamp), (1, 1));
        db.close().unwrap();
        assert_eq!(
            dump_lines(dir.path()),
            vec![
                r#"{__name__="a", job="j"} 1 1000"#,
                r#"{__name__="a", job="j"} 2 2000"#,
                r#"{__name__="a", job="j"} 3 3000"#,
                r#"{__name__="b", job="j"} 3.5 1000"#,
            ]
        );
    }

    /// Three series with 480 samples at 15 s: three closed chunks each in the chunk files and
    /// an open one, plus the dump of everything.
    fn full_head(dir: &Path) -> Vec<String> {
        let db = Db::open(dir, DbOptions::default()).unwrap();
        for step in 0..480 {
            for name in ["a", "b", "c"] {
                assert_eq!(write(&db, name, &[(step * 15_000, step as f64 * 1.5)]).appended, 1);
            }
        }
        assert_eq!(db.head().stats().chunks.load(Ordering::Relaxed), 12);
        let want = dump_lines(dir);
        assert_eq!(want.len(), 3 * 480);
        // Dropped without close, as a killed process leaves it.
        drop(db);
        want
    }

    #[test]
    fn replay_takes_closed_chunks_from_the_chunk_files() {
        let dir = tempfile::tempdir().unwrap();
        let want = full_head(dir.path());
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        let r = db.wal_replay();
        assert_eq!((r.mapped_chunks, r.mapped_samples, r.refused), (9, 9 * 120, 0), "{r:?}");
        assert_eq!(db.head().stats().chunks.load(Ordering::Relaxed), 12);
        assert_eq!((db.head().min_time(), db.head().max_time()), (0, 479 * 15_000));
        // The newest sample is known again, so the replayed head refuses what the original did.
        let out = write(&db, "a", &[(479 * 15_000, 1.0), (478 * 15_000, 1.0)]);
        assert_eq!((out.rejected.duplicate_timestamp, out.rejected.out_of_order), (1, 1));
        db.close().unwrap();
        assert_eq!(dump_lines(dir.path()), want);
    }

    #[test]
    fn a_torn_chunk_file_is_repaired_and_the_wal_fills_in() {
        let dir = tempfile::tempdir().unwrap();
        let want = full_head(dir.path());
        let file = dir.path().join(chunk_files::DIR_NAME).join("000001");
        let len = std::fs::metadata(&file).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len - 5).unwrap();
        // Reading the directory changes nothing and still finds every sample.
        assert_eq!(dump_lines(dir.path()), want);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), len - 5);
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        let r = db.wal_replay();
        assert_eq!((r.mapped_chunks, r.mapped_samples, r.refused), (0, 0, 0), "{r:?}");
        // The torn file was removed, as Prometheus removes it, and the chunks rebuilt from the
        // WAL written again under the next free number: its own.
        assert_eq!(std::fs::metadata(&file).unwrap().len(), len);
        db.close().unwrap();
        assert_eq!(dump_lines(dir.path()), want);
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(db.wal_replay().mapped_chunks, 9);
        drop(db);
        assert_eq!(dump_lines(dir.path()), want);
    }

    /// One sample per step (15 s apart) for series a, b and c.
    fn fill(db: &Db, steps: std::ops::Range<i64>) {
        for step in steps {
            for name in ["a", "b", "c"] {
                assert_eq!(write(db, name, &[(step * 15_000, step as f64 * 1.5)]).appended, 1);
            }
        }
    }

    fn snapshots(dir: &Path) -> Vec<String> {
        let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap());
        names.filter(|n| n.starts_with("chunk_snapshot.")).collect()
    }

    /// Every chunk of every head series: labels, time range and bytes.
    fn head_chunks(db: &Db) -> Vec<(String, Vec<crate::block::ChunkData>)> {
        let head = db.head();
        head.series_sorted().iter().map(|s| (s.labels.to_string(), head.chunks_in(s, i64::MIN, i64::MAX))).collect()
    }

    #[test]
    fn a_clean_shutdown_restores_the_head_from_its_snapshot_without_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        fill(&db, 0..480);
        let want = dump_lines(dir.path());
        db.close().unwrap();
        assert_eq!(snapshots(dir.path()).len(), 1);
        // Reading the directory uses the snapshot and leaves it.
        assert_eq!(dump_lines(dir.path()), want);
        assert_eq!(snapshots(dir.path()).len(), 1);

        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        let r = db.wal_replay();
        assert_eq!((r.snapshot_series, r.wal.samples, r.wal.records, r.mapped_chunks), (3, 0, 0, 9), "{r:?}");
        assert_eq!(db.head().stats().chunks.load(Ordering::Relaxed), 12);
        assert_eq!(db.head().num_series(), 3);
        assert_eq!((db.head().min_time(), db.head().max_time()), (0, 479 * 15_000));
        assert!(snapshots(dir.path()).is_empty(), "an open head leaves no snapshot to restore later");
        let out = write(&db, "a", &[(479 * 15_000, 1.0), (478 * 15_000, 1.0)]);
        assert_eq!((out.rejected.duplicate_timestamp, out.rejected.out_of_order), (1, 1));
        // A new series does not take a ref the restored ones have.
        assert_eq!(write(&db, "d", &[(479 * 15_000, 1.0)]).appended, 1);
        assert_eq!(db.head().num_series(), 4);
        drop(db);
        let mut want = want;
        want.push(r#"{__name__="d", job="j"} 1 7185000"#.to_string());
        assert!(dump_lines(dir.path()) == want, "the WAL replayed after the restored head differs");
    }

    #[test]
    fn a_head_restarted_cleanly_cuts_the_chunks_an_uninterrupted_one_cuts() {
        let straight = tempfile::tempdir().unwrap();
        let db = Db::open(straight.path(), DbOptions::default()).unwrap();
        fill(&db, 0..700);
        let want = head_chunks(&db);
        drop(db);

        let restarted = tempfile::tempdir().unwrap();
        // Restarts mid-chunk, before and after the chunk's cut time is known (a quarter full),
        // and across the two-hour boundary at step 480.
        for steps in [0..20, 20..200, 200..479, 479..481, 481..700] {
            let db = Db::open(restarted.path(), DbOptions::default()).unwrap();
            assert_eq!(db.wal_replay().snapshot_series, if steps.start == 0 { 0 } else { 3 });
            fill(&db, steps);
            db.close().unwrap();
        }
        let db = Db::open(restarted.path(), DbOptions::default()).unwrap();
        assert_eq!(head_chunks(&db), want);
    }

    #[test]
    fn after_a_crash_the_wal_is_replayed_and_a_stale_snapshot_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        fill(&db, 0..300);
        db.close().unwrap();
        let name = snapshots(dir.path()).pop().unwrap();
        let stale = tempfile::tempdir().unwrap();
        copy_dir(&dir.path().join(&name), stale.path());

        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        fill(&db, 300..400);
        let want = dump_lines(dir.path());
        // Killed: no new snapshot. The old one put back describes an older head.
        drop(db);
        copy_dir(stale.path(), &dir.path().join(&name));
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        let r = db.wal_replay();
        assert_eq!((r.snapshot_series, r.refused), (0, 0), "{r:?}");
        assert!(snapshots(dir.path()).is_empty());
        drop(db);
        assert_eq!(dump_lines(dir.path()), want);
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    #[test]
    fn a_snapshot_the_chunk_files_no_longer_back_gives_way_to_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        fill(&db, 0..480);
        let want = dump_lines(dir.path());
        db.close().unwrap();
        // A torn chunk file: the repair removes it and the closed chunks in it.
        let file = dir.path().join(chunk_files::DIR_NAME).join("000001");
        let len = std::fs::metadata(&file).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len - 5).unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        let r = db.wal_replay();
        assert_eq!((r.snapshot_series, r.wal.samples), (0, 3 * 480), "{r:?}");
        drop(db);
        assert_eq!(dump_lines(dir.path()), want);
    }

    #[test]
    fn close_waits_for_commits_in_flight_so_the_snapshot_has_every_acknowledged_sample() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        let acked: Vec<i64> = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..4)
                .map(|i| {
                    let db = &db;
                    scope.spawn(move || {
                        let name = format!("w{i}");
                        let mut acked = 0;
                        loop {
                            let mut app = db.appender();
                            app.append(&[("__name__", name.as_str())], [(acked * 1000, 1.0)]).unwrap();
                            match app.commit() {
                                Ok(out) if out.appended == 1 => acked += 1,
                                _ => return acked,
                            }
                        }
                    })
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_millis(200));
            db.close().unwrap();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(acked.iter().all(|&n| n > 0), "{acked:?}");
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(db.wal_replay().snapshot_series, 4);
        drop(db);
        let lines = dump_lines(dir.path());
        for (i, n) in acked.iter().enumerate() {
            let prefix = format!("{{__name__=\"w{i}\"}} ");
            assert_eq!(lines.iter().filter(|l| l.starts_with(&prefix)).count() as i64, *n, "w{i}");
        }
    }

    #[test]
    fn truncation_deletes_chunk_files_no_chunk_needs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        let files = dir.path().join(chunk_files::DIR_NAME);
        let count = || std::fs::read_dir(&files).unwrap().count();
        // 4h at 15 s: chunks of [0,2h) in file 1; the cut at 3h+ rotates to file 2.
        for step in 0..(4 * 240) {
            write(&db, "a", &[(step * 15_000, 1.0)]);
            while db.cut_block().unwrap() {}
        }
        assert_eq!(db.blocks().len(), 1);
        // File 1 still holds the [2h,3h) chunk written before the cut.
        assert_eq!(count(), 2);
        for step in (4 * 240)..(6 * 240) {
            write(&db, "a", &[(step * 15_000, 1.0)]);
            while db.cut_block().unwrap() {}
        }
        assert_eq!(db.blocks().len(), 2);
        assert!(!files.join("000001").exists(), "nothing in the head is in file 1 any more");
        assert!(count() <= 2, "{}", count());
        db.close().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(db.wal_replay().refused, 0);
    }

    #[test]
    fn cut_blocks_truncate_head_and_wal_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let opts =
            DbOptions { wal: WalOptions { segment_size: 32 * 1024, ..WalOptions::default() }, ..DbOptions::default() };
        let db = Db::open(dir.path(), opts.clone()).unwrap();
        let h = 3_600_000;
        let mut want = Vec::new();
        // Ten series over 7h at 15s, written in scrape-sized batches; blocks are cut on the way.
        for step in 0..(7 * 240) {
            let t = step * 15_000 + 1_000;
            let mut app = db.appender();
            for i in 0..10 {
                let inst = format!("i{i}");
                app.append(&[("__name__", "m"), ("instance", &inst)], [(t, (step * 10 + i) as f64)]).unwrap();
            }
            assert_eq!(app.commit().unwrap().appended, 10);
            while db.cut_block().unwrap() {}
        }
        for i in 0..10 {
            for step in 0..(7 * 240) {
                want.push(format!(r#"{{__name__="m", instance="i{i}"}} {} {}"#, step * 10 + i, step * 15_000 + 1_000));
            }
        }
        want.sort_by(|a, b| a.split(' ').next().cmp(&b.split(' ').next()).then(std::cmp::Ordering::Equal));
        let blocks = db.blocks();
        let ranges: Vec<(i64, i64)> = blocks.iter().map(|b| (b.meta().min_time, b.meta().max_time)).collect();
        // The first block starts at the first sample; the others are 2h-aligned.
        assert_eq!(ranges, vec![(1_000, 2 * h), (2 * h, 4 * h)]);
        assert!(blocks.iter().all(|b| b.meta().stats.num_series == 10 && b.meta().compaction.level == 1));
        assert_eq!(db.head().min_time(), 4 * h);
        assert!(!db.compactable());
        // The WAL was checkpointed and its old segments removed.
        assert!(db.wal().segment_range().0 > 0, "old segments deleted: {:?}", db.wal().segment_range());
        assert!(crate::wal::last_checkpoint(db.wal().dir()).unwrap().is_some());
        let lines = dump_lines(dir.path());
        assert_eq!(lines.len(), want.len());
        // Killed without close: blocks plus WAL give back every sample exactly once.
        drop(db);
        let db = Db::open(dir.path(), opts).unwrap();
        assert_eq!(db.blocks().len(), 2);
        assert_eq!(db.head().floor(), 4 * h);
        assert_eq!(dump_lines(dir.path()), lines);
        assert_eq!(db.select(&[], i64::MIN, i64::MAX, false).unwrap().count(), 10);
        assert_eq!(count_samples(db.select(&[], i64::MIN, i64::MAX, false).unwrap()), 10 * 7 * 240);
    }

    /// Ten series, a sample a minute for 4h: the first 2h can be cut.
    fn write_four_hours(db: &Db) {
        for step in 0..(4 * 60) {
            let mut app = db.appender();
            for i in 0..10 {
                let inst = format!("i{i}");
                app.append(&[("__name__", "m"), ("instance", &inst)], [(step * 60_000, 1.0)]).unwrap();
            }
            app.commit().unwrap();
        }
    }

    /// Every sample of a select, counted, checking each series' times increase.
    fn count_samples(set: SeriesIter) -> usize {
        let mut n = 0;
        for s in set {
            let mut prev = i64::MIN;
            for_each_sample(&s.unwrap(), i64::MIN, i64::MAX, |t, _| {
                assert!(t > prev, "sample at {t} after {prev}: doubled or out of order");
                prev = t;
                n += 1;
            })
            .unwrap();
        }
        n
    }

    #[test]
    fn a_select_open_across_a_block_cut_reads_every_sample_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        write_four_hours(&db);
        let all = 10 * 4 * 60;
        let open_before = db.select(&[], i64::MIN, i64::MAX, false).unwrap();
        let head_chunks = || db.head().stats().chunks.load(Ordering::Relaxed);
        let chunks_before = head_chunks();
        std::thread::scope(|scope| {
            let cut = scope.spawn(|| db.cut_block().unwrap());
            let secs = std::time::Duration::from_secs;
            strata_testkit::wait_for("the cut block to be listed", secs(30), || {
                if db.blocks().len() == 1 {
                    Ok(())
                } else {
                    Err(format!("{} blocks", db.blocks().len()))
                }
            })
            .unwrap();
            // Truncating the head under the open select must wait for it.
            let finished = strata_testkit::wait_for("the cut to finish", std::time::Duration::from_millis(500), || {
                if cut.is_finished() {
                    Ok(())
                } else {
                    Err("running".to_owned())
                }
            });
            assert!(finished.is_err(), "the cut truncated the head under an open select");
            assert_eq!(head_chunks(), chunks_before);
            let opened_meanwhile = db.select(&[], i64::MIN, i64::MAX, false).unwrap();
            assert_eq!(count_samples(open_before), all, "the select open before the cut");
            assert!(cut.join().unwrap());
            assert_eq!(count_samples(opened_meanwhile), all, "the select opened while the cut waited");
        });
        assert!(head_chunks() < chunks_before);
        assert_eq!(count_samples(db.select(&[], i64::MIN, i64::MAX, false).unwrap()), all, "after the cut");
    }

    #[test]
    fn replay_after_a_cut_counts_block_samples_as_skipped_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        // The first 2h become a block, and the WAL (too short to be checkpointed) keeps every
        // sample.
        write_four_hours(&db);
        assert!(db.cut_block().unwrap());
        drop(db);
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        let r = db.wal_replay();
        assert_eq!((r.refused, r.unknown_refs), (0, 0), "{r:?}");
        assert_eq!(r.in_blocks, 10 * 2 * 60, "the block's samples, skipped: {r:?}");
        assert_eq!(r.wal.samples, 10 * 4 * 60);
    }

    #[test]
    fn retention_deletes_only_old_deletable_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DbOptions { retention: Some(3 * 3_600_000), ..DbOptions::default() };
        let db = Db::open(dir.path(), opts).unwrap();
        let shipped_ok = Arc::new(AtomicBool::new(false));
        let flag = shipped_ok.clone();
        db.set_deletable(Arc::new(move |_| flag.load(Ordering::Relaxed)));
        for step in 0..(9 * 60) {
            write(&db, "a", &[(step * 60_000, 1.0)]);
            while db.cut_block().unwrap() {}
        }
        let n = db.blocks().len();
        assert_eq!(n, 3, "blocks [0,2h) [2h,4h) [4h,6h) kept while not deletable");
        shipped_ok.store(true, Ordering::Relaxed);
        for step in (9 * 60)..(11 * 60) {
            write(&db, "a", &[(step * 60_000, 1.0)]);
            while db.cut_block().unwrap() {}
        }
        let ranges: Vec<i64> = db.blocks().iter().map(|b| b.meta().min_time).collect();
        assert_eq!(ranges, vec![4 * 3_600_000, 6 * 3_600_000], "newest ends at 8h; blocks ending 3h+ before are gone");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4, "two blocks, the WAL and chunks_head");
    }

    #[test]
    fn label_names_and_values_respect_the_time_range() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        write(&db, "a", &[(1000, 1.0), (2000, 1.0)]);
        assert_eq!(db.label_values("__name__", &[], 0, 1500).unwrap(), ["a"]);
        assert!(db.label_values("__name__", &[], 3000, 4000).unwrap().is_empty());
        assert!(db.label_names(&[], 3000, 4000).unwrap().is_empty());
        assert_eq!(db.label_names(&[], 2000, 4000).unwrap(), ["__name__", "job"]);
    }

    #[test]
    fn dump_changes_nothing_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        write(&db, "a", &[(1000, 1.0)]);
        // A half-written record at the tail, as a running receiver may have at any moment.
        let seg = db.wal().dir().join(crate::wal::segment_name(db.wal().segment_range().1));
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        std::io::Write::write_all(&mut f, &[1, 0, 200, 0, 0, 0, 0, 42]).unwrap();
        let len = std::fs::metadata(&seg).unwrap().len();
        assert_eq!(dump_lines(dir.path()), vec![r#"{__name__="a", job="j"} 1 1000"#]);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), len, "dump must not repair");
        // Opening for writing does repair it, and keeps the good record.
        drop(db);
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(db.head().num_series(), 1);
        assert!(std::fs::metadata(&seg).unwrap().len() < len);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_the_cut_thread_gets_a_lower_priority() {
        // SAFETY: getpriority only reads its integer arguments.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = nice();
        let cut = std::thread::spawn(move || {
            lower_thread_priority();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(cut, (before + CUT_THREAD_NICE).min(MAX_NICE));
        assert_eq!(nice(), before, "other threads keep theirs");
    }

    #[test]
    fn dump_of_a_directory_without_wal_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = dump(dir.path(), 0, 1, &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("no blocks and no WAL segments"), "{err}");
    }
}
