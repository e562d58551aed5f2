//! Block size: bytes per sample of strata's blocks against blocks Prometheus's promtool makes
//! from the same samples.
//!
//! Generates an OpenMetrics file of realistic series (10 % counters, 10 % gauges, 80 %
//! classic-histogram series; 15 s scrape interval with a few ms of jitter), turns it into
//! blocks with `promtool tsdb create-blocks-from openmetrics`, reads every series and chunk
//! back, decodes each chunk and re-encodes its samples with strata's XOR encoder into a strata
//! block with the same chunk boundaries (promtool cuts chunks as the head does: at most 120
//! samples, never across a 2 h boundary), checks that the strata block holds exactly the same
//! samples, and prints both blocks' index and chunk bytes per sample.
//!
//! ```sh
//! cargo run --release -p strata-tsdb --example block_size -- [--series 2000] [--hours 2] [--seed 1] [--keep DIR]
//! ```
//!
//! `--keep DIR` leaves the input file and both sets of blocks in DIR (which must not exist)
//! for a closer look, e.g. with `strata tools tsdb analyze`. Needs promtool on PATH (Debian: `apt-get install prometheus`).

use std::collections::BTreeSet;
use std::error::Error;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_tsdb::block::{open_blocks, Block, BlockCompaction, BlockWriter, ChunkData, SeriesChunks, CHUNKS_DIR};
use strata_tsdb::chunkenc::{Encoding, XorAppender, XorIter};
use strata_tsdb::index::INDEX_FILENAME;
use ulid::Ulid;

type AnyResult<T> = Result<T, Box<dyn Error>>;

const SCRAPE_INTERVAL_MS: i64 = 15_000;
/// 2023-11-14T22:00:00Z, on a 2 h block boundary, so that 2 h of data is one block.
const START_MS: i64 = 1_699_999_200_000;
/// Bucket bounds of the histograms, as client libraries' defaults.
const BUCKETS: [&str; 12] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];

struct Options {
    series: usize,
    hours: i64,
    seed: u64,
    keep: Option<std::path::PathBuf>,
}

fn parse_args() -> AnyResult<Options> {
    let mut o = Options { series: 2000, hours: 2, seed: 1, keep: None };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--series" => o.series = value.parse()?,
            "--hours" => o.hours = value.parse()?,
            "--seed" => o.seed = value.parse()?,
            "--keep" => o.keep = Some(value.into()),
            _ => return Err(format!("unknown flag {flag}; use --series N, --hours H, --seed S, --keep DIR").into()),
        }
    }
    Ok(o)
}

/// One series of the generated file: its OpenMetrics name and labels, and how its value moves.
struct Series {
    name: String,
    labels: String,
    kind: Kind,
}

enum Kind {
    /// Requests counted one by one: integer increments.
    Counter,
    /// Seconds of CPU: float increments at 10 ms resolution.
    CpuCounter,
    /// Bytes in use: a random walk in 4 KiB pages.
    MemoryGauge,
    /// A small integer level that changes now and then (goroutines, queue length).
    LevelGauge,
    /// Cumulative count of observations at or below a bucket bound: a share of the requests.
    Bucket(usize),
    /// Sum of observed durations: float increments.
    HistogramSum,
    /// Count of observations: integer increments.
    HistogramCount,
}

/// `n` series shaped like node_exporter and instrumented-service output, 6 to 9 labels each.
fn series_set(n: usize) -> Vec<(String, Vec<Series>)> {
    let target = |i: usize| {
        format!(
            "cluster=\"eu-west-1\",instance=\"10.1.{}.{}:8080\",job=\"api\",namespace=\"shop\",pod=\"api-7d9f8c6b5-{:05}\"",
            i / 250,
            i % 250,
            i * 7919 % 100_000
        )
    };
    let mut counters = Vec::new();
    let mut gauges = Vec::new();
    let mut histograms = Vec::new();
    let (n_counters, n_gauges) = (n / 10, n / 10);
    for i in 0..n_counters {
        counters.push(if i % 2 == 0 {
            let (method, code) = (["GET", "POST"][i / 2 % 2], ["200", "404", "500"][i / 4 % 3]);
            Series {
                name: "http_requests_total".into(),
                labels: format!("code=\"{code}\",{},method=\"{method}\"", target(i)),
                kind: Kind::Counter,
            }
        } else {
            let mode = ["user", "system", "idle", "iowait"][i / 2 % 4];
            Series {
                name: "node_cpu_seconds_total".into(),
                labels: format!("{},cpu=\"{}\",mode=\"{mode}\"", target(i), i / 8 % 4),
                kind: Kind::CpuCounter,
            }
        });
    }
    for i in 0..n_gauges {
        let (name, kind) = if i % 2 == 0 {
            ("process_resident_memory_bytes", Kind::MemoryGauge)
        } else {
            ("go_goroutines", Kind::LevelGauge)
        };
        gauges.push(Series { name: name.into(), labels: target(i), kind });
    }
    // The rest: histograms of 12 buckets plus _sum and _count, 14 series each.
    let per_histogram = BUCKETS.len() + 2;
    let mut left = n.saturating_sub(n_counters + n_gauges);
    let mut h = 0;
    while left > 0 {
        let labels = format!("{},handler=\"/api/v{}/items\",method=\"GET\"", target(h), h % 3 + 1);
        for (b, le) in BUCKETS.iter().enumerate().take(left) {
            histograms.push(Series {
                name: "http_request_duration_seconds_bucket".into(),
                labels: format!("{labels},le=\"{le}\""),
                kind: Kind::Bucket(b),
            });
        }
        if left > BUCKETS.len() {
            histograms.push(Series {
                name: "http_request_duration_seconds_sum".into(),
                labels: labels.clone(),
                kind: Kind::HistogramSum,
            });
        }
        if left > BUCKETS.len() + 1 {
            histograms.push(Series {
                name: "http_request_duration_seconds_count".into(),
                labels,
                kind: Kind::HistogramCount,
            });
        }
        left = left.saturating_sub(per_histogram);
        h += 1;
    }
    vec![("counter".into(), counters), ("gauge".into(), gauges), ("histogram".into(), histograms)]
}

/// The OpenMetrics family a sample name belongs to: the name without its type's suffix.
fn family(name: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name)
}

/// Writes the OpenMetrics file; returns the number of samples in it.
fn write_openmetrics(path: &Path, o: &Options) -> AnyResult<u64> {
    let mut rng = StdRng::seed_from_u64(o.seed);
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    let scrapes = o.hours * 3_600_000 / SCRAPE_INTERVAL_MS;
    let mut samples = 0u64;
    let mut typed = BTreeSet::new();
    for (kind, mut series) in series_set(o.series) {
        // A family's lines must be together; the stable sort keeps each histogram's series
        // (which share one family) in their order.
        series.sort_by(|a, b| family(&a.name).cmp(family(&b.name)));
        for s in &series {
            if typed.insert(family(&s.name).to_owned()) {
                writeln!(out, "# TYPE {} {kind}", family(&s.name))?;
            }
            // Requests per scrape at this series' target.
            let rate: f64 = rng.gen_range(1.0..200.0);
            let share = |b: usize| ((b + 1) as f64 / BUCKETS.len() as f64).powf(0.3);
            let mut v: f64 = match s.kind {
                Kind::MemoryGauge => f64::from(rng.gen_range(10_000u32..100_000)) * 4096.0,
                Kind::LevelGauge => f64::from(rng.gen_range(10u32..300)),
                _ => f64::from(rng.gen_range(0u32..1_000_000)),
            };
            for i in 0..scrapes {
                let t = START_MS + i * SCRAPE_INTERVAL_MS + rng.gen_range(0..5);
                let requests = (rate * rng.gen_range(0.5..1.5)).round();
                v += match s.kind {
                    Kind::Counter | Kind::HistogramCount => requests,
                    Kind::Bucket(b) => (requests * share(b)).round(),
                    Kind::CpuCounter => (rng.gen_range(0.0..15.0f64) * 100.0).round() / 100.0,
                    Kind::HistogramSum => requests * rng.gen_range(0.01..0.3),
                    Kind::MemoryGauge => f64::from(rng.gen_range(-64i32..=64)) * 4096.0,
                    Kind::LevelGauge if rng.gen_bool(0.2) => f64::from(rng.gen_range(-3i32..=3)),
                    Kind::LevelGauge => 0.0,
                };
                writeln!(out, "{}{{{}}} {v} {}.{:03}", s.name, s.labels, t / 1000, t % 1000)?;
                samples += 1;
            }
        }
    }
    writeln!(out, "# EOF")?;
    out.flush()?;
    Ok(samples)
}

/// Bytes of the index file and of the chunk segment files of a block.
fn sizes(block: &Path) -> AnyResult<(u64, u64)> {
    let index = std::fs::metadata(block.join(INDEX_FILENAME))?.len();
    let mut chunks = 0;
    for entry in std::fs::read_dir(block.join(CHUNKS_DIR))? {
        chunks += entry?.metadata()?.len();
    }
    Ok((index, chunks))
}

/// Decodes a chunk's samples, failing on anything but a whole XOR chunk.
fn decode(series: &SeriesChunks, c: &ChunkData) -> AnyResult<Vec<(i64, u64)>> {
    if c.encoding != Encoding::Xor {
        return Err(format!("{}: {} chunk; only XOR chunks are expected", series.labels, c.encoding).into());
    }
    let mut it = XorIter::new(&c.data)?;
    let samples: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
    if let Some(e) = it.err() {
        return Err(format!("{}: {e}", series.labels).into());
    }
    Ok(samples)
}

/// Writes the samples of promtool's block into a strata block in `out` with the same time
/// range and chunk boundaries; returns the strata block's directory.
fn rewrite(block: &Block, out: &Path) -> AnyResult<std::path::PathBuf> {
    let series = block.select(&[], i64::MIN, i64::MAX)?;
    let mut w = BlockWriter::new(out, Ulid::new())?;
    let symbols: BTreeSet<&str> = series.iter().flat_map(|s| s.labels.iter().flat_map(|(n, v)| [n, v])).collect();
    w.add_symbols(symbols)?;
    for s in &series {
        let mut chunks = Vec::with_capacity(s.chunks.len());
        for c in &s.chunks {
            let mut app = XorAppender::new();
            for (t, v) in decode(s, c)? {
                app.append(t, f64::from_bits(v));
            }
            chunks.push(ChunkData {
                min_time: c.min_time,
                max_time: c.max_time,
                encoding: Encoding::Xor,
                data: app.into_bytes().into(),
            });
        }
        w.add_series(&s.labels, &chunks)?;
    }
    let meta = block.meta();
    let written = w.finish(meta.min_time, meta.max_time, BlockCompaction { level: 1, ..Default::default() })?;
    Ok(out.join(written.ulid.to_string()))
}

/// Fails unless both blocks hold the same series with the same samples in the same chunks.
fn check_same(a: &Block, b: &Block) -> AnyResult<()> {
    let (sa, sb) = (a.select(&[], i64::MIN, i64::MAX)?, b.select(&[], i64::MIN, i64::MAX)?);
    if sa.len() != sb.len() {
        return Err(format!("{} series in promtool's block, {} in ours", sa.len(), sb.len()).into());
    }
    for (x, y) in sa.iter().zip(&sb) {
        let same_chunks = x.chunks.len() == y.chunks.len()
            && x.chunks.iter().zip(&y.chunks).all(|(p, q)| (p.min_time, p.max_time) == (q.min_time, q.max_time));
        if x.labels != y.labels || !same_chunks {
            return Err(format!("series {} differs from {}", x.labels, y.labels).into());
        }
        for (p, q) in x.chunks.iter().zip(&y.chunks) {
            if decode(x, p)? != decode(y, q)? {
                return Err(format!("{}: samples of chunk [{}, {}] differ", x.labels, p.min_time, p.max_time).into());
            }
        }
    }
    Ok(())
}

struct Totals {
    samples: u64,
    chunks: u64,
    index: u64,
    chunk_bytes: u64,
}

impl Totals {
    fn add(&mut self, block: &Block) -> AnyResult<()> {
        let (index, chunk_bytes) = sizes(block.dir())?;
        let s = &block.meta().stats;
        self.samples += s.num_samples;
        self.chunks += s.num_chunks;
        self.index += index;
        self.chunk_bytes += chunk_bytes;
        Ok(())
    }

    fn row(&self, who: &str) -> String {
        let per = |bytes: u64| bytes as f64 / self.samples as f64;
        format!(
            "| {who} | {} | {} | {} | {} | {} | {:.3} | {:.3} |",
            self.samples,
            self.chunks,
            self.index,
            self.chunk_bytes,
            self.index + self.chunk_bytes,
            per(self.index + self.chunk_bytes),
            per(self.chunk_bytes)
        )
    }
}

fn main() -> AnyResult<()> {
    let o = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let work = match &o.keep {
        Some(dir) => {
            std::fs::create_dir(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            dir.as_path()
        }
        None => tmp.path(),
    };
    let input = work.join("input.om");
    let samples = write_openmetrics(&input, &o)?;
    let promtool_dir = work.join("promtool");
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(&input)
        .arg(&promtool_dir)
        .status()
        .map_err(|e| format!("run promtool (is it on PATH? Debian: apt-get install prometheus): {e}"))?;
    if !status.success() {
        return Err(format!("promtool create-blocks-from openmetrics failed: {status}").into());
    }

    let strata_dir = work.join("strata");
    std::fs::create_dir_all(&strata_dir)?;
    let zero = || Totals { samples: 0, chunks: 0, index: 0, chunk_bytes: 0 };
    let (mut theirs, mut ours) = (zero(), zero());
    for block in open_blocks(&promtool_dir)? {
        let ours_dir = rewrite(&block, &strata_dir)?;
        let our_block = Block::open(&ours_dir)?;
        check_same(&block, &our_block)?;
        theirs.add(&block)?;
        ours.add(&our_block)?;
    }
    if theirs.samples != samples {
        return Err(format!("the file has {samples} samples, promtool's blocks {}", theirs.samples).into());
    }
    println!(
        "{} series x {} h at {} s ({} samples, seed {})\n",
        o.series,
        o.hours,
        SCRAPE_INTERVAL_MS / 1000,
        samples,
        o.seed
    );
    println!("| blocks by | samples | chunks | index bytes | chunk bytes | index + chunks | bytes/sample | chunk bytes/sample |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!("{}", theirs.row("promtool 2.42"));
    println!("{}", ours.row("strata"));
    let ratio = (ours.index + ours.chunk_bytes) as f64 / (theirs.index + theirs.chunk_bytes) as f64;
    println!("\nstrata / promtool, index + chunks: {ratio:.4}");
    println!("strata / promtool, chunks: {:.4}", ours.chunk_bytes as f64 / theirs.chunk_bytes as f64);
    println!("strata / promtool, index: {:.4}", ours.index as f64 / theirs.index as f64);
    Ok(())
}
