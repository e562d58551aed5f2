//! Writing downsampled blocks as Thanos's compactor does (thanos v0.42
//! pkg/compact/downsample/downsample.go `Downsample`): the same windows, aggregates, chunk cuts
//! and sub-chunk bytes, so a block written here is read, re-downsampled and compacted by Thanos
//! as one of its own, and the other way round.
//!
//! Raw to 5m (or any coarser resolution): a series' samples (staleness markers and samples
//! going back in time inside a chunk dropped) are cut into batches of about the same number of
//! samples, each extended to the end of its last window; each batch is one [`AggrChunk`] with,
//! per window (stamped with the window's last millisecond, or the batch's last sample time if
//! sooner), count, sum, min, max and the reset-corrected counter, the counter framed by the
//! batch's first and last raw values (see [`super::read::CounterResets`]).
//!
//! 5m to 1h: whole input chunks are grouped (never split, so the raw first and last counter
//! values stay true) and each group's aggregates are re-aggregated: counts summed, sums summed,
//! min of mins, max of maxes, the counter re-read with its resets undone.
//!
//! Native histograms are refused: Thanos downsamples them into float-histogram aggregates,
//! which this crate does not encode.

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use ulid::Ulid;

use super::read::CounterResets;
use crate::block::meta::{BlockMeta, BlockStats};
use crate::block::{Block, BlockSeries, BlockWriter, ChunkData, SeriesChunks, CHUNKS_DIR};
use crate::chunkenc::{AggrChunk, AggrType, Encoding, SubChunk, XorAppender, XorIter};
use crate::index::{IndexReader, INDEX_FILENAME};
use crate::{Error, Result};

/// Raw data (Thanos `ResLevel0`).
pub const RES_RAW: i64 = 0;
/// 5-minute windows (Thanos `ResLevel1`), in ms.
pub const RES_5M: i64 = 5 * 60 * 1000;
/// 1-hour windows (Thanos `ResLevel2`), in ms.
pub const RES_1H: i64 = 60 * 60 * 1000;
/// Thanos downsamples a raw block to 5m only once it spans at least this (40h, ms).
pub const RAW_DOWNSAMPLE_RANGE: i64 = 40 * 60 * 60 * 1000;
/// Thanos downsamples a 5m block to 1h only once it spans at least this (10 days, ms).
pub const RES_5M_DOWNSAMPLE_RANGE: i64 = 10 * 24 * 60 * 60 * 1000;

/// Prometheus's staleness marker; other NaNs are values.
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// Thanos sizes raw batches as if raw data came one sample a minute.
const ASSUMED_RAW_INTERVAL: i64 = 60 * 1000;
/// Thanos cuts until output chunks average at most this many windows.
const MAX_WINDOWS_PER_CHUNK: i64 = 140;
/// `thanos.source` of a downsampled block.
const COMPACTOR_SOURCE: &str = "compactor";

/// Writes the downsampling of `src` to `resolution_ms` as a new block (new ULID) in `parent`,
/// as Thanos's `Downsample` does, and returns its meta.
///
/// `src` must be raw (no `thanos` section, or resolution 0) or already downsampled to a finer
/// resolution than `resolution_ms` (5m for 1h). Series are read, downsampled and written one
/// at a time: memory is bounded by the largest series. Series left with no samples are not
/// written; a block none are left in is still written, empty, as Thanos does.
///
/// The meta is the source's with Thanos's changes: the same `minTime`/`maxTime`, the same
/// `compaction` section (level, sources, parents), `thanos.downsample.resolution` set,
/// `thanos.source = "compactor"`, `thanos.segment_files` listing the new chunk files, and
/// `numSamples` (windows), `numChunks` and `numSeries` counted anew while the other stats are
/// carried over from the source. `thanos.index_stats` is measured on the new index as Thanos
/// does; `thanos.files` and `upload_time`, which describe the source's upload, are cleared:
/// the uploader fills them.
///
/// Fails, leaving nothing in `parent`, when the resolution is not coarser than the source's,
/// when a series has overlapping chunks, a native-histogram chunk or a corrupt chunk.
pub fn downsample_block(src: &Block, resolution_ms: i64, parent: &Path) -> Result<BlockMeta> {
    let started = Instant::now();
    let src_meta = src.meta();
    let from = src_meta.thanos.as_ref().map_or(RES_RAW, |t| t.downsample.resolution);
    if resolution_ms <= from {
        return Err(Error::InvalidBlockInput(format!(
            "downsample block {} to {resolution_ms} ms: the target resolution must be coarser than the block's \
             ({from} ms)",
            src_meta.ulid
        )));
    }
    let ulid = Ulid::new();
    let mut w = BlockWriter::new(parent, ulid)?;
    // Thanos keeps every symbol of the source, used or not.
    w.add_symbols(src.index().symbols()?.iter().map(String::as_str))?;
    let mut series_in = 0u64;
    let written = (|| {
        let (mut samples, mut out) = (Vec::new(), Vec::new());
        for series in BlockSeries::new(src, &[], i64::MIN, i64::MAX, false)?.read_once() {
            let series = series?;
            series_in += 1;
            out.clear();
            downsample_series(&series, from, resolution_ms, &mut samples, &mut out).map_err(|e| match e {
                Error::CorruptChunk(m) => Error::CorruptChunk(format!("block {}: {m}", src_meta.ulid)),
                Error::InvalidBlockInput(m) => Error::InvalidBlockInput(format!("block {}: {m}", src_meta.ulid)),
                other => other,
            })?;
            w.add_series(&series.labels, &out)?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        // Best effort: the error matters more than a failed cleanup, which remove_tmp_dirs
        // retries when the directory is next opened.
        let _ = w.abort();
        return Err(e);
    }
    let meta = w.finish_with(src_meta.min_time, src_meta.max_time, src_meta.compaction.clone(), |dir, meta| {
        meta.stats = BlockStats {
            num_samples: meta.stats.num_samples,
            num_series: meta.stats.num_series,
            num_chunks: meta.stats.num_chunks,
            ..src_meta.stats.clone()
        };
        let mut thanos = src_meta.thanos.clone().unwrap_or_default();
        thanos.downsample.resolution = resolution_ms;
        thanos.source = COMPACTOR_SOURCE.to_owned();
        thanos.segment_files = segment_files(&dir.join(CHUNKS_DIR))?;
        thanos.files.clear();
        thanos.upload_time = None;
        thanos.index_stats = IndexReader::open(&dir.join(INDEX_FILENAME))?.thanos_index_stats()?;
        meta.thanos = Some(thanos);
        Ok(())
    })?;
    tracing::info!(
        source = %src_meta.ulid, ulid = %meta.ulid, from, resolution = resolution_ms, series_in,
        series = meta.stats.num_series, chunks = meta.stats.num_chunks, duration = ?started.elapsed(),
        "downsampled block"
    );
    Ok(meta)
}

/// The sorted names of the files in a block's chunks directory (Thanos `GetSegmentFiles`).
fn segment_files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Appends to `out` the downsampled chunks of one series of a block at resolution `from`;
/// `samples` is scratch space.
fn downsample_series(
    series: &SeriesChunks,
    from: i64,
    resolution: i64,
    samples: &mut Vec<(i64, f64)>,
    out: &mut Vec<ChunkData>,
) -> Result<()> {
    let labels = &series.labels;
    for pair in series.chunks.windows(2) {
        if pair[0].max_time >= pair[1].min_time {
            return Err(Error::InvalidBlockInput(format!(
                "series {labels}: overlapping chunks [{}, {}] and [{}, {}]; chunks must be ordered and disjoint to \
                 downsample",
                pair[0].min_time, pair[0].max_time, pair[1].min_time, pair[1].max_time
            )));
        }
    }
    let chunk_err = |c: &ChunkData, e: Error| match e {
        Error::CorruptChunk(m) => {
            Error::CorruptChunk(format!("series {labels}: chunk [{}, {}]: {m}", c.min_time, c.max_time))
        }
        other => other,
    };
    let refuse = |c: &ChunkData, what: &str| {
        Error::InvalidBlockInput(format!(
            "series {labels}: chunk [{}, {}] is {what}; downsampling native histograms is not supported",
            c.min_time, c.max_time
        ))
    };
    samples.clear();
    if from == RES_RAW {
        for c in &series.chunks {
            match c.encoding {
                Encoding::Xor => expand_xor(&c.data, samples).map_err(|e| chunk_err(c, e))?,
                Encoding::Histogram | Encoding::FloatHistogram => return Err(refuse(c, "a native histogram chunk")),
                other => {
                    return Err(Error::InvalidBlockInput(format!(
                        "series {labels}: chunk [{}, {}] of a raw block has encoding {other}",
                        c.min_time, c.max_time
                    )))
                }
            }
        }
        downsample_raw(samples, resolution, out);
        return Ok(());
    }
    // Aggregated input; raw chunks in it (which older Thanos wrote by mistake) are downsampled
    // to 5m first, empty ones skipped, as Thanos does.
    let mut inputs: Vec<(i64, i64, AggrChunk)> = Vec::with_capacity(series.chunks.len());
    let mut fixed = Vec::new();
    for c in &series.chunks {
        match c.encoding {
            Encoding::Aggr => {
                let chunk = AggrChunk::decode(&c.data).map_err(|e| chunk_err(c, e))?;
                if chunk.get(AggrType::Counter).is_some_and(|s| s.encoding != Encoding::Xor) {
                    return Err(refuse(c, "a native histogram aggregate"));
                }
                inputs.push((c.min_time, c.max_time, chunk));
            }
            Encoding::Xor => {
                if Encoding::Xor.num_samples(&c.data).unwrap_or(0) == 0 {
                    tracing::warn!(series = %labels, "empty raw chunk in a downsampled block, skipped");
                    continue;
                }
                samples.clear();
                expand_xor(&c.data, samples).map_err(|e| chunk_err(c, e))?;
                fixed.clear();
                downsample_raw(samples, RES_5M, &mut fixed);
                for f in fixed.drain(..) {
                    let chunk = AggrChunk::decode(&f.data).map_err(|e| chunk_err(c, e))?;
                    inputs.push((f.min_time, f.max_time, chunk));
                }
            }
            Encoding::Histogram | Encoding::FloatHistogram => return Err(refuse(c, "a native histogram chunk")),
            Encoding::None => {
                return Err(Error::InvalidBlockInput(format!(
                    "series {labels}: chunk [{}, {}] has no encoding",
                    c.min_time, c.max_time
                )))
            }
        }
    }
    let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else { return Ok(()) };
    let (mint, maxt) = (first.0, last.1);
    let chunks: Vec<AggrChunk> = inputs.into_iter().map(|(_, _, c)| c).collect();
    downsample_aggr(&chunks, mint, maxt, from, resolution, samples, out).map_err(|e| match e {
        Error::CorruptChunk(m) => Error::CorruptChunk(format!("series {labels}: {m}")),
        Error::InvalidBlockInput(m) => Error::InvalidBlockInput(format!("series {labels}: {m}")),
        other => other,
    })
}

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The last millisecond of the window of `resolution` that `t` falls in (Thanos
/// `currentWindow`): windows are `[k·r, (k+1)·r)`, stamped `(k+1)·r - 1` so they stay inside
/// half-open block ranges.
fn current_window(t: i64, resolution: i64) -> i64 {
    t.wrapping_sub(t % resolution).wrapping_add(resolution - 1)
}

/// Go's `int(f)` on amd64: truncation, and the most negative integer for NaN and values out
/// of range.
fn go_int(f: f64) -> i64 {
    // 2^63, exactly representable.
    let limit = -(i64::MIN as f64);
    if (-limit..limit).contains(&f) {
        f as i64
    } else {
        i64::MIN
    }
}

/// How many chunks Thanos cuts a series into (`targetChunkCount`): the windows `count` input
/// samples of resolution `in_res` over `[mint, maxt]` would fill at `out_res`, split until
/// chunks average at most 140.
fn target_chunk_count(mint: i64, maxt: i64, in_res: i64, out_res: i64, count: usize) -> usize {
    let span = maxt.wrapping_sub(mint);
    let max_samples = (span / out_res) as f64;
    let fullness = count as f64 / (span as f64 / in_res as f64);
    // Not f64::min: a NaN fullness must stay NaN, as in Go.
    let fullness = if fullness > 1.0 { 1.0 } else { fullness };
    chunks_for(go_int(max_samples * fullness).wrapping_add(1))
}

/// Thanos counts x up from 1 while `expected / x > 140`: the first x with expected < 141·x.
fn chunks_for(expected: i64) -> usize {
    if expected <= MAX_WINDOWS_PER_CHUNK {
        1
    } else {
        (expected / (MAX_WINDOWS_PER_CHUNK + 1) + 1) as usize
    }
}

/// Thanos's `floatAggregator`: the current window's count, sum, min and max, and the counter
/// with its resets undone since the batch began.
#[derive(Clone, Copy, Default)]
struct Aggregator {
    total: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    counter: f64,
    last: f64,
}

impl Aggregator {
    fn reset(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::MAX;
        self.max = -f64::MAX;
    }

    fn add(&mut self, v: f64) {
        if self.total > 0 {
            self.counter += if v < self.last { v } else { v - self.last };
        } else {
            self.counter = v;
        }
        self.last = v;
        self.sum += v;
        self.count += 1;
        self.total += 1;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }
}

/// Thanos's `downsampleBatch`: aggregates `data` (not empty) window by window, calling `add`
/// with each window's stamp (its end, or the batch's last time if sooner) once the window is
/// complete; returns the last stamp.
fn downsample_batch(data: &[(i64, f64)], resolution: i64, mut add: impl FnMut(i64, &Aggregator)) -> i64 {
    // `add` gets copies: with its address never taken, `aggr` stays in registers rather
    // than going through memory at every sample, which its serial sums would wait on.
    let mut aggr = Aggregator::default();
    let mut next_t = -1i64;
    let last_t = data.last().map_or(-1, |s| s.0);
    for &(t, v) in data {
        if t > next_t {
            if next_t != -1 {
                add(next_t, &{ aggr });
            }
            aggr.reset();
            next_t = current_window(t, resolution).min(last_t);
        }
        aggr.add(v);
    }
    if aggr.total > 0 {
        add(next_t, &{ aggr });
    }
    next_t
}

/// One output chunk being built: an XOR appender per present aggregate and the time range of
/// the windows written.
struct Builder {
    min_time: i64,
    max_time: i64,
    parts: [Option<XorAppender>; 5],
    /// Bytes each aggregate's appender starts with.
    capacity: usize,
}

impl Builder {
    /// A chunk expected to hold `windows` windows (0 if unknown).
    fn new(windows: usize) -> Self {
        // Aggregates of full-precision values take about 5 bytes a window; the header and the
        // first sample 12.
        let capacity = 12 + windows.saturating_mul(6);
        Builder { min_time: i64::MAX, max_time: i64::MIN, parts: Default::default(), capacity }
    }

    fn app(&mut self, aggr: AggrType) -> &mut XorAppender {
        let capacity = self.capacity;
        self.parts[aggr as usize].get_or_insert_with(|| XorAppender::with_capacity(capacity))
    }

    /// One window of raw data: all five aggregates.
    fn add(&mut self, t: i64, a: &Aggregator) {
        self.min_time = self.min_time.min(t);
        self.max_time = self.max_time.max(t);
        self.app(AggrType::Sum).append(t, a.sum);
        self.app(AggrType::Min).append(t, a.min);
        self.app(AggrType::Max).append(t, a.max);
        self.app(AggrType::Count).append(t, a.count as f64);
        self.app(AggrType::Counter).append(t, a.counter);
    }

    fn encode(self) -> ChunkData {
        let parts =
            self.parts.map(|p| p.map(|a| SubChunk { encoding: Encoding::Xor, data: Bytes::from(a.into_bytes()) }));
        ChunkData {
            min_time: self.min_time,
            max_time: self.max_time,
            encoding: Encoding::Aggr,
            data: Bytes::from(AggrChunk::from_parts(parts).encode()),
        }
    }
}

/// Appends the samples of XOR chunk `data` to `out` as Thanos's `expandXorChunkIterator` does:
/// staleness markers dropped, and samples before the chunk's previous one (or before 0).
fn expand_xor(data: &[u8], out: &mut Vec<(i64, f64)>) -> Result<()> {
    let mut it = XorIter::new(data)?;
    let mut last_t = 0i64;
    for (t, v) in it.by_ref() {
        if is_stale(v) {
            continue;
        }
        if t >= last_t {
            out.push((t, v));
            last_t = t;
        }
    }
    match it.err() {
        Some(e) => Err(Error::CorruptChunk(e.to_string())),
        None => Ok(()),
    }
}

/// Thanos's `DownsampleRaw`: the raw samples of one series (in time order, staleness markers
/// already dropped) as aggregate chunks of `resolution`, appended to `out`.
fn downsample_raw(data: &[(i64, f64)], resolution: i64, out: &mut Vec<ChunkData>) {
    let (Some(first), Some(last)) = (data.first(), data.last()) else { return };
    let num_chunks = target_chunk_count(first.0, last.0, ASSUMED_RAW_INTERVAL, resolution, data.len());
    let batch_size = data.len() / num_chunks + 1;
    let mut rest = data;
    let mut batch = Vec::new();
    while !rest.is_empty() {
        let mut j = batch_size.min(rest.len());
        // Finish the window the batch ends in, so windows never straddle chunks.
        let window_end = current_window(rest[j - 1].0, resolution);
        while j < rest.len() && rest[j].0 <= window_end {
            j += 1;
        }
        batch.clear();
        batch.extend(rest[..j].iter().filter(|s| !s.1.is_nan()));
        rest = &rest[j..];
        if batch.is_empty() {
            continue;
        }
        out.push(downsample_raw_batch(&batch, resolution));
    }
}

/// One output chunk from a batch of raw samples (not empty, no NaN); the counter aggregate
/// starts with the first raw sample and ends with the last raw value at the last window's
/// stamp, for readers to see resets between chunks.
fn downsample_raw_batch(batch: &[(i64, f64)], resolution: i64) -> ChunkData {
    // Every window holds a sample, so the batch's length bounds them whatever its timestamps.
    let span = match (batch.first(), batch.last()) {
        (Some(first), Some(last)) => last.0.saturating_sub(first.0) / resolution.max(1),
        _ => 0,
    };
    let windows = usize::try_from(span).map_or(batch.len(), |w| w.saturating_add(2).min(batch.len()));
    let mut b = Builder::new(windows);
    if let (Some(&(t0, v0)), Some(&(_, v_last))) = (batch.first(), batch.last()) {
        b.app(AggrType::Counter).append(t0, v0);
        let last_t = downsample_batch(batch, resolution, |t, a| b.add(t, a));
        b.app(AggrType::Counter).append(last_t, v_last);
    }
    b.encode()
}

/// The XOR sub-chunk of `aggr` in `c`, if present; a histogram one is refused.
fn float_aggregate(c: &AggrChunk, aggr: AggrType) -> Result<Option<&SubChunk>> {
    match c.get(aggr) {
        Some(s) if s.encoding != Encoding::Xor => Err(Error::InvalidBlockInput(format!(
            "{} aggregate is a {} chunk; downsampling native histograms is not supported",
            aggr.name(),
            s.encoding
        ))),
        other => Ok(other),
    }
}

/// Thanos's `downsampleAggr`: aggregate chunks of resolution `in_res` spanning `[mint, maxt]`
/// re-aggregated to `out_res`, whole input chunks per output chunk; `buf` is scratch space.
fn downsample_aggr(
    chunks: &[AggrChunk],
    mint: i64,
    maxt: i64,
    in_res: i64,
    out_res: i64,
    buf: &mut Vec<(i64, f64)>,
    out: &mut Vec<ChunkData>,
) -> Result<()> {
    let num_samples: usize = chunks.iter().map(|c| usize::from(c.num_samples())).sum();
    let num_chunks = target_chunk_count(mint, maxt, in_res, out_res, num_samples);
    let batch_size = chunks.len() / num_chunks;
    if batch_size == 0 {
        // Thanos loops forever here; no input it writes gets this far.
        return Err(Error::InvalidBlockInput(format!(
            "{} aggregate chunks holding {num_samples} windows over [{mint}, {maxt}] would be cut into {num_chunks} \
             chunks: fewer windows per input chunk than downsampling expects",
            chunks.len()
        )));
    }
    for part in chunks.chunks(batch_size) {
        out.push(downsample_aggr_batch(part, buf, out_res)?);
    }
    Ok(())
}

/// Which value of a window's aggregator an output aggregate takes.
type Pick = fn(&Aggregator) -> f64;

/// Thanos's `genericAggregate`: the `aggr` sub-chunks of `chunks` re-aggregated, `pick`
/// choosing the value per window, into `b`; returns the window stamps' range, (0, 0) when
/// no chunk has the aggregate (which Thanos then folds into the chunk's range).
fn generic_aggregate(
    aggr: AggrType,
    chunks: &[AggrChunk],
    buf: &mut Vec<(i64, f64)>,
    b: &mut Builder,
    resolution: i64,
    pick: Pick,
) -> Result<(i64, i64)> {
    buf.clear();
    for c in chunks {
        if let Some(sub) = float_aggregate(c, aggr)? {
            expand_xor(&sub.data, buf).map_err(|e| Error::CorruptChunk(format!("{} aggregate: {e}", aggr.name())))?;
        }
    }
    if buf.is_empty() {
        return Ok((0, 0));
    }
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    let app = b.app(aggr);
    downsample_batch(buf, resolution, |t, a| {
        mint = mint.min(t);
        maxt = maxt.max(t);
        app.append(t, pick(a));
    });
    Ok((mint, maxt))
}

/// Thanos's `downsampleFloatAggrBatch`: one output chunk from a group of aggregate chunks.
fn downsample_aggr_batch(chunks: &[AggrChunk], buf: &mut Vec<(i64, f64)>, resolution: i64) -> Result<ChunkData> {
    let mut b = Builder::new(0);
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    // Counts are summed: each input window holds a count already.
    let generic: [(AggrType, Pick); 4] = [
        (AggrType::Count, |a| a.sum),
        (AggrType::Sum, |a| a.sum),
        (AggrType::Min, |a| a.min),
        (AggrType::Max, |a| a.max),
    ];
    for (aggr, pick) in generic {
        let (lo, hi) = generic_aggregate(aggr, chunks, buf, &mut b, resolution, pick)?;
        mint = mint.min(lo);
        maxt = maxt.max(hi);
    }

    // The counter is read back as a monotonic series (resets undone across the chunks, using
    // each chunk's trailing raw value) and aggregated again.
    buf.clear();
    let mut resets = CounterResets::new();
    let mut last_t = 0i64;
    for c in chunks {
        let Some(sub) = float_aggregate(c, AggrType::Counter)? else { continue };
        let mut it = XorIter::new(&sub.data)?;
        for (t, v) in it.by_ref() {
            if let Some((t, v)) = resets.push(t, v) {
                if t >= last_t {
                    buf.push((t, v));
                    last_t = t;
                }
            }
        }
        if let Some(e) = it.err() {
            return Err(Error::CorruptChunk(format!("counter aggregate: {e}")));
        }
    }
    if let Some(&(t0, v0)) = buf.first() {
        // The first raw value, the windows, then the last raw value at the last stamp.
        let mut app = XorAppender::new();
        app.append(t0, v0);
        let last = downsample_batch(buf, resolution, |t, a| {
            mint = mint.min(t);
            maxt = maxt.max(t);
            app.append(t, a.counter);
        });
        app.append(last, resets.last_value());
        b.parts[AggrType::Counter as usize] = Some(app);
    }
    b.min_time = mint;
    b.max_time = maxt;
    Ok(b.encode())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::downsample::read::{for_each_sample, AggrView};
    use crate::Labels;

    fn stale() -> f64 {
        f64::from_bits(STALE_NAN_BITS)
    }

    fn raw(samples: &[(i64, f64)], resolution: i64) -> Vec<ChunkData> {
        let mut out = Vec::new();
        downsample_raw(samples, resolution, &mut out);
        out
    }

    fn aggr(chunks: &[ChunkData], from: i64, to: i64) -> Result<Vec<ChunkData>> {
        let decoded: Vec<AggrChunk> = chunks.iter().map(|c| AggrChunk::decode(&c.data).unwrap()).collect();
        let (mint, maxt) = (chunks[0].min_time, chunks[chunks.len() - 1].max_time);
        let mut out = Vec::new();
        downsample_aggr(&decoded, mint, maxt, from, to, &mut Vec::new(), &mut out)?;
        Ok(out)
    }

    /// The samples of one aggregate of `chunks`, as a reader sees them.
    fn read(chunks: &[ChunkData], view: AggrView) -> Vec<(i64, f64)> {
        let series = SeriesChunks { labels: Labels::from_pairs(&[("__name__", "x")]), chunks: chunks.to_vec() };
        let mut out = Vec::new();
        for_each_sample(&series, view, |t, v| out.push((t, v))).unwrap();
        out
    }

    /// The raw samples of one aggregate sub-chunk of `c`.
    fn part(c: &ChunkData, aggr: AggrType) -> Vec<(i64, f64)> {
        let chunk = AggrChunk::decode(&c.data).unwrap();
        XorIter::new(&chunk.get(aggr).unwrap().data).unwrap().collect()
    }

    #[test]
    fn windows_end_at_their_last_millisecond() {
        assert_eq!(current_window(0, RES_5M), 299_999);
        assert_eq!(current_window(299_999, RES_5M), 299_999);
        assert_eq!(current_window(300_000, RES_5M), 599_999);
        assert_eq!(current_window(1_767_225_600_000 + 1, RES_1H), 1_767_225_600_000 + RES_1H - 1);
        // Each window is stamped with its end, the last one with the batch's last sample time.
        let chunks = raw(&[(1_000, 1.0), (299_999, 2.0), (300_000, 3.0), (400_000, 4.0)], RES_5M);
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].min_time, chunks[0].max_time), (299_999, 400_000));
        assert_eq!(part(&chunks[0], AggrType::Count), [(299_999, 2.0), (400_000, 2.0)]);
        assert_eq!(part(&chunks[0], AggrType::Sum), [(299_999, 3.0), (400_000, 7.0)]);
        assert_eq!(part(&chunks[0], AggrType::Min), [(299_999, 1.0), (400_000, 3.0)]);
        assert_eq!(part(&chunks[0], AggrType::Max), [(299_999, 2.0), (400_000, 4.0)]);
    }

    #[test]
    fn counter_resets_inside_a_chunk_are_undone_and_raw_ends_kept() {
        let samples = [(0, 10.0), (60_000, 20.0), (120_000, 5.0), (300_000, 15.0), (360_000, 2.0)];
        let chunks = raw(&samples, RES_5M);
        assert_eq!(chunks.len(), 1);
        // First raw value, cumulative counter per window (reset at 5 adds 5, at 2 adds 2), then
        // the last raw value at the last stamp.
        assert_eq!(part(&chunks[0], AggrType::Counter), [(0, 10.0), (299_999, 25.0), (360_000, 37.0), (360_000, 2.0)]);
        // Read back, the counter is monotonic and ends at the corrected total.
        assert_eq!(read(&chunks, AggrView::One(AggrType::Counter)), [(0, 10.0), (299_999, 25.0), (360_000, 37.0)]);
    }

    #[test]
    fn a_reset_between_chunks_is_seen_through_the_trailing_raw_value() {
        // 1000 samples at 1 m with a reset in the middle: several chunks.
        let samples: Vec<(i64, f64)> =
            (0..1000).map(|i| (i * 60_000, if i < 500 { i as f64 } else { (i - 500) as f64 })).collect();
        let chunks = raw(&samples, RES_5M);
        assert!(chunks.len() > 1, "{} chunks", chunks.len());
        let got = read(&chunks, AggrView::One(AggrType::Counter));
        // The corrected total at the last sample: 0..=499, then a reset to 0 and 499 more.
        assert_eq!(got.last(), Some(&(999 * 60_000, 499.0 + 499.0)));
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "not monotonic: {got:?}");
    }

    #[test]
    fn series_with_nothing_to_downsample_give_no_chunks() {
        assert!(raw(&[], RES_5M).is_empty());
        assert!(raw(&[(0, f64::NAN), (1, f64::NAN)], RES_5M).is_empty());
        // Staleness markers are dropped while reading the raw chunk.
        let mut app = XorAppender::new();
        app.append(5, stale());
        app.append(6, stale());
        let mut samples = Vec::new();
        expand_xor(&app.into_bytes(), &mut samples).unwrap();
        assert!(samples.is_empty());
    }

    #[test]
    fn a_single_sample_is_a_window_of_its_own() {
        let chunks = raw(&[(1_234_567, 8.5)], RES_5M);
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].min_time, chunks[0].max_time), (1_234_567, 1_234_567));
        for (aggr, v) in [(AggrType::Count, 1.0), (AggrType::Sum, 8.5), (AggrType::Min, 8.5), (AggrType::Max, 8.5)] {
            assert_eq!(part(&chunks[0], aggr), [(1_234_567, v)], "{}", aggr.name());
        }
        assert_eq!(part(&chunks[0], AggrType::Counter), [(1_234_567, 8.5); 3]);
        assert_eq!(AggrChunk::decode(&chunks[0].data).unwrap().num_samples(), 1);
    }

    #[test]
    fn nan_values_are_dropped_but_size_the_batches() {
        let chunks = raw(&[(0, 1.0), (60_000, f64::NAN), (120_000, 3.0)], RES_5M);
        assert_eq!(part(&chunks[0], AggrType::Count), [(120_000, 2.0)]);
        assert_eq!(part(&chunks[0], AggrType::Sum), [(120_000, 4.0)]);
        // Samples going back in time inside a chunk are skipped; so are staleness markers.
        let mut app = XorAppender::new();
        for (t, v) in [(10, 1.0), (20, 2.0), (15, 9.0), (30, stale()), (40, 4.0)] {
            app.append(t, v);
        }
        let mut samples = Vec::new();
        expand_xor(&app.into_bytes(), &mut samples).unwrap();
        assert_eq!(samples, [(10, 1.0), (20, 2.0), (40, 4.0)]);
    }

    #[test]
    fn chunk_counts_follow_thanos() {
        // Two days of 15 s samples: 576 windows of 5m, at most 140 a chunk.
        assert_eq!(target_chunk_count(0, 2 * 86_400_000, 60_000, RES_5M, 11_520), 5);
        // Sparse data lowers the expectation: 100 samples over two days.
        assert_eq!(target_chunk_count(0, 2 * 86_400_000, 60_000, RES_5M, 100), 1);
        // One sample (no span) and nothing at all are one chunk.
        assert_eq!(target_chunk_count(5, 5, 60_000, RES_5M, 1), 1);
        assert_eq!(target_chunk_count(0, 0, RES_5M, RES_1H, 0), 1);
        // The closed form is Thanos's loop.
        for expected in [i64::MIN, -5, 0, 1, 140, 141, 281, 282, 577, 10_000, 1_000_000] {
            let mut x = 1;
            while expected / x > 140 {
                x += 1;
            }
            assert_eq!(chunks_for(expected), x as usize, "{expected}");
        }
        let day: Vec<(i64, f64)> = (0..5760).map(|i| (i * 15_000, 1.0)).collect();
        let chunks = raw(&day, RES_5M);
        assert_eq!(chunks.len(), 3);
        // No window is split between chunks.
        for w in chunks.windows(2) {
            assert!(w[0].max_time / RES_5M < w[1].min_time / RES_5M, "{w:?}");
        }
    }

    #[test]
    fn aggregates_of_aggregates() {
        let samples: Vec<(i64, f64)> = (0..3000).map(|i| (i * 30_000, (i % 100) as f64)).collect();
        let five = raw(&samples, RES_5M);
        let hour = aggr(&five, RES_5M, RES_1H).unwrap();
        let counts = read(&hour, AggrView::One(AggrType::Count));
        assert_eq!(counts.iter().map(|s| s.1).sum::<f64>(), 3000.0);
        assert!(counts[..counts.len() - 1].iter().all(|&(t, c)| (t + 1) % RES_1H == 0 && c == 120.0), "{counts:?}");
        // Whole 5m chunks per 1h chunk: the 1h chunk boundaries are 5m chunk boundaries.
        assert!(hour.iter().all(|h| five.iter().any(|f| f.max_time == h.max_time)));
    }

    #[test]
    fn refused_and_corrupt_input() {
        let c = raw(&[(0, 1.0), (1, 2.0)], RES_5M);
        let mut chunk = AggrChunk::decode(&c[0].data).unwrap();
        let mut hist = chunk.get(AggrType::Counter).unwrap().clone();
        hist.encoding = Encoding::FloatHistogram;
        chunk.set(AggrType::Counter, Some(hist));
        let err =
            downsample_aggr(&[chunk], 0, 1, RES_5M, RES_1H, &mut Vec::new(), &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("native histograms is not supported"), "{err}");

        let mut chunk = AggrChunk::decode(&c[0].data).unwrap();
        let mut bad = chunk.get(AggrType::Sum).unwrap().clone();
        bad.data = bad.data.slice(..3);
        chunk.set(AggrType::Sum, Some(bad));
        let err =
            downsample_aggr(&[chunk], 0, 1, RES_5M, RES_1H, &mut Vec::new(), &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("sum aggregate"), "{err}");

        let series = |chunks: Vec<ChunkData>| SeriesChunks { labels: Labels::from_pairs(&[("a", "b")]), chunks };
        let xor = |ts: &[i64]| {
            let mut app = XorAppender::new();
            ts.iter().for_each(|&t| app.append(t, 1.0));
            ChunkData {
                min_time: ts[0],
                max_time: ts[ts.len() - 1],
                encoding: Encoding::Xor,
                data: Bytes::from(app.into_bytes()),
            }
        };
        let overlapping = series(vec![xor(&[1, 5]), xor(&[5, 9])]);
        let err =
            downsample_series(&overlapping, RES_RAW, RES_5M, &mut Vec::new(), &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("overlapping chunks [1, 5] and [5, 9]"), "{err}");
        let mut histogram = xor(&[1]);
        histogram.encoding = Encoding::Histogram;
        let err = downsample_series(&series(vec![histogram]), RES_RAW, RES_5M, &mut Vec::new(), &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("native histogram chunk"), "{err}");
        let mut truncated = xor(&[1, 2, 3]);
        truncated.data = truncated.data.slice(..4);
        let err = downsample_series(&series(vec![truncated]), RES_RAW, RES_5M, &mut Vec::new(), &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("series {a=\"b\"}: chunk [1, 3]"), "{err}");
    }

    /// A raw block in `dir` with the given series (one XOR chunk each), Thanos labels set.
    fn raw_block(dir: &Path, series: &[(&str, &[(i64, f64)])]) -> Block {
        let ulid = Ulid::new();
        let mut w = BlockWriter::new(dir, ulid).unwrap();
        let labels: Vec<Labels> = series.iter().map(|(n, _)| Labels::from_pairs(&[("__name__", n)])).collect();
        let mut symbols: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
        symbols.push("__name__");
        symbols.sort_unstable();
        w.add_symbols(symbols).unwrap();
        for (l, (_, samples)) in labels.iter().zip(series) {
            let mut app = XorAppender::new();
            samples.iter().for_each(|&(t, v)| app.append(t, v));
            let c = ChunkData {
                min_time: samples[0].0,
                max_time: samples[samples.len() - 1].0,
                encoding: Encoding::Xor,
                data: Bytes::from(app.into_bytes()),
            };
            w.add_series(l, &[c]).unwrap();
        }
        let compaction = crate::block::BlockCompaction { level: 3, sources: vec![ulid], ..Default::default() };
        w.finish_with(0, 10 * RES_1H, compaction, |_, m| {
            let mut thanos = crate::block::meta::ThanosMeta::default();
            thanos.labels.insert("cluster".to_owned(), "a".to_owned());
            thanos.source = "receive".to_owned();
            thanos.upload_time = Some("2026-01-01T00:00:00Z".to_owned());
            m.thanos = Some(thanos);
            Ok(())
        })
        .unwrap();
        Block::open(&dir.join(ulid.to_string())).unwrap()
    }

    #[test]
    fn block_meta_as_thanos_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<(i64, f64)> = (0..600).map(|i| (i * 60_000, i as f64)).collect();
        let src = raw_block(dir.path(), &[("a", &samples), ("gone", &[(5, stale())])]);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let meta = downsample_block(&src, RES_5M, &out).unwrap();
        assert_ne!(meta.ulid, src.meta().ulid);
        assert_eq!((meta.min_time, meta.max_time), (0, 10 * RES_1H));
        assert_eq!(meta.compaction, src.meta().compaction);
        let thanos = meta.thanos.as_ref().unwrap();
        assert_eq!(thanos.downsample.resolution, RES_5M);
        assert_eq!(thanos.source, "compactor");
        assert_eq!(thanos.labels, src.meta().thanos.as_ref().unwrap().labels);
        assert_eq!(thanos.segment_files, ["000001"]);
        assert_eq!(thanos.upload_time, None);
        // 120 windows in one series; the float sample count is the source's, as Thanos leaves it.
        assert_eq!((meta.stats.num_series, meta.stats.num_samples), (1, 120));
        assert_eq!(meta.stats.num_float_samples, 601);
        // One series of one chunk: no distance to measure, so no index_stats, as in Thanos.
        assert_eq!(thanos.index_stats, None);
        assert_eq!(Block::open(&out.join(meta.ulid.to_string())).unwrap().meta(), &meta);

        // Again, to 1h.
        let five = Block::open(&out.join(meta.ulid.to_string())).unwrap();
        let hour = downsample_block(&five, RES_1H, &out).unwrap();
        assert_eq!((hour.stats.num_series, hour.stats.num_samples), (1, 10));

        // Not coarser: refused, nothing written.
        for res in [RES_RAW, RES_5M] {
            let err = downsample_block(&five, res, &out).unwrap_err().to_string();
            assert!(err.contains("must be coarser than the block's (300000 ms)"), "{err}");
        }
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);
    }

    #[test]
    fn a_refused_series_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let ulid = Ulid::new();
        let mut w = BlockWriter::new(dir.path(), ulid).unwrap();
        w.add_symbols(["__name__", "a", "h"]).unwrap();
        let mut app = XorAppender::new();
        app.append(1, 1.0);
        let mut c =
            ChunkData { min_time: 1, max_time: 1, encoding: Encoding::Xor, data: Bytes::from(app.into_bytes()) };
        w.add_series(&Labels::from_pairs(&[("__name__", "a")]), std::slice::from_ref(&c)).unwrap();
        c.encoding = Encoding::Histogram;
        w.add_series(&Labels::from_pairs(&[("__name__", "h")]), &[c]).unwrap();
        w.finish(0, 10, crate::block::BlockCompaction { level: 1, ..Default::default() }).unwrap();
        let src = Block::open(&dir.path().join(ulid.to_string())).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let err = downsample_block(&src, RES_5M, &out).unwrap_err().to_string();
        assert!(err.contains(&format!("block {ulid}: series {{__name__=\"h\"}}")), "{err}");
        assert!(err.contains("native histogram chunk"), "{err}");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    }

    #[test]
    fn nothing_left_is_an_empty_block() {
        let dir = tempfile::tempdir().unwrap();
        let src = raw_block(dir.path(), &[("gone", &[(5, stale()), (6, stale())])]);
        let meta = downsample_block(&src, RES_5M, dir.path()).unwrap();
        assert_eq!((meta.stats.num_series, meta.stats.num_chunks, meta.stats.num_samples), (0, 0, 0));
        assert!(Block::open(&dir.path().join(meta.ulid.to_string()))
            .unwrap()
            .select(&[], 0, i64::MAX)
            .unwrap()
            .is_empty());
    }

    /// Per window of `resolution`: count, sum, min, max of the non-NaN samples, and the
    /// reset-corrected counter total at the window's last sample.
    fn naive(samples: &[(i64, f64)], resolution: i64) -> BTreeMap<i64, [f64; 5]> {
        let mut out: BTreeMap<i64, [f64; 5]> = BTreeMap::new();
        let (mut total, mut last) = (0.0, None::<f64>);
        for &(t, v) in samples.iter().filter(|s| !s.1.is_nan()) {
            total = match last {
                None => v,
                Some(l) if v < l => total + v,
                Some(l) => total + v - l,
            };
            last = Some(v);
            let w = out.entry(t / resolution).or_insert([0.0, 0.0, f64::MAX, -f64::MAX, 0.0]);
            w[0] += 1.0;
            w[1] += v;
            w[2] = w[2].min(v);
            w[3] = w[3].max(v);
            w[4] = total;
        }
        out
    }

    /// Each aggregate read back (one sample per window, stamped inside its window at or after
    /// its last sample) equals the naive one; the counter, read with resets undone, equals the
    /// naive total at every sample it gives.
    fn check(chunks: &[ChunkData], samples: &[(i64, f64)], resolution: i64) -> Result<(), TestCaseError> {
        let want = naive(samples, resolution);
        for (i, aggr) in [AggrType::Count, AggrType::Sum, AggrType::Min, AggrType::Max].into_iter().enumerate() {
            let got = read(chunks, AggrView::One(aggr));
            prop_assert_eq!(got.len(), want.len(), "{} windows", aggr.name());
            for (&(t, v), (&w, expected)) in got.iter().zip(&want) {
                prop_assert_eq!(t / resolution, w, "{} stamp {}", aggr.name(), t);
                prop_assert_eq!(v, expected[i], "{} at {}", aggr.name(), t);
            }
        }
        let real: Vec<(i64, f64)> = samples.iter().copied().filter(|s| !s.1.is_nan()).collect();
        for (t, v) in read(chunks, AggrView::One(AggrType::Counter)) {
            let at = real.partition_point(|s| s.0 <= t);
            prop_assert!(at > 0, "counter sample at {} before the first sample", t);
            let w = want[&(real[at - 1].0 / resolution)];
            // The window's total if t is its stamp, else the total at that raw sample.
            let expected = if real.get(at).is_none_or(|n| n.0 / resolution != t / resolution) {
                w[4]
            } else {
                naive(&real[..at], resolution)[&(t / resolution)][4]
            };
            prop_assert_eq!(v, expected, "counter at {}", t);
        }
        Ok(())
    }

    fn series() -> impl Strategy<Value = Vec<(i64, f64)>> {
        // Integer values keep every sum exact whatever the order of additions.
        let step = prop_oneof![Just(15_000i64), Just(60_000), 1i64..400_000];
        let value = prop_oneof![8 => (0u32..1000).prop_map(f64::from), 1 => Just(f64::NAN)];
        proptest::collection::vec((step, value), 1..3000).prop_map(|steps| {
            let mut t = 0;
            steps
                .into_iter()
                .map(|(d, v)| {
                    t += d;
                    (t, v)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn raw_aggregates_read_back_as_computed(samples in series()) {
            let chunks = raw(&samples, RES_5M);
            check(&chunks, &samples, RES_5M)?;
        }

        /// Hostile chunk bytes (raw or aggregate, with any time range) fail or downsample;
        /// nothing panics.
        #[test]
        fn arbitrary_chunks_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            aggregate in any::<bool>(),
            (min_time, max_time) in (any::<i64>(), any::<i64>()),
        ) {
            let encoding = if aggregate { Encoding::Aggr } else { Encoding::Xor };
            let from = if aggregate { RES_5M } else { RES_RAW };
            let chunk = ChunkData { min_time, max_time, encoding, data: Bytes::from(data) };
            let series = SeriesChunks { labels: Labels::from_pairs(&[("a", "b")]), chunks: vec![chunk] };
            let _ = downsample_series(&series, from, from + RES_1H, &mut Vec::new(), &mut Vec::new());
        }

        /// Aggregate chunks whose sub-chunks hold any samples at all (times out of order, at
        /// the ends of the i64 range, any float) downsample without panicking.
        #[test]
        fn hostile_aggregates_never_panic(
            parts in proptest::collection::vec(
                proptest::option::of(proptest::collection::vec((any::<i64>(), any::<f64>()), 1..20)),
                5,
            ),
        ) {
            let mut chunk = AggrChunk::default();
            for (aggr, samples) in AggrType::ALL.into_iter().zip(parts) {
                chunk.set(aggr, samples.map(|samples| {
                    let mut app = XorAppender::new();
                    samples.iter().for_each(|&(t, v)| app.append(t, v));
                    SubChunk { encoding: Encoding::Xor, data: Bytes::from(app.into_bytes()) }
                }));
            }
            let data = Bytes::from(chunk.encode());
            let chunk = ChunkData { min_time: i64::MIN, max_time: i64::MAX, encoding: Encoding::Aggr, data };
            let series = SeriesChunks { labels: Labels::from_pairs(&[("a", "b")]), chunks: vec![chunk] };
            let _ = downsample_series(&series, RES_5M, RES_1H, &mut Vec::new(), &mut Vec::new());
        }

        #[test]
        fn hourly_aggregates_read_back_as_computed(samples in series()) {
            let five = raw(&samples, RES_5M);
            prop_assume!(!five.is_empty());
            let hour = aggr(&five, RES_5M, RES_1H).unwrap();
            check(&hour, &samples, RES_1H)?;
        }
    }
}
