//! `strata tools bench-blocks`: Prometheus blocks of synthetic node-exporter series, written
//! with `BlockWriter` and optionally shipped to a bucket, for the compaction benchmark
//! (scripts/bench-compact.sh).
//!
//! Every scrape target is a node exporter scraped the kube-prometheus way (8 target labels):
//! 100 series under 26 metric names, 64 of them `node_cpu_seconds_total`, with 9 to 12 labels
//! each; counters, gauges and constants. A value is a pure function of the series and the scrape
//! number, so consecutive blocks continue each other's counters. Each target is scraped every
//! scrape interval at its own offset, as Prometheus spreads its scrapes, and a series' samples
//! are cut into chunks of 120, as Prometheus's head cuts them.
//!
//! Memory stays small at any size: series are written in label order straight from (target,
//! slot) pairs; only the sorted pairs (8 bytes a series), the targets' labels and one series'
//! chunks are held.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use strata_loadgen::{mix, mix2, CLUSTERS, POD_ALPHABET};
use strata_tsdb::block::{BlockCompaction, BlockWriter, ChunkData};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::gotext::parse_duration;
use strata_tsdb::inspect::Ulid;
use strata_tsdb::Labels;
use tracing::info;

#[derive(Args)]
pub struct BenchBlocksArgs {
    /// Directory the blocks are written to (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Series in each block; 100 per scrape target.
    #[arg(long, default_value_t = 1_000_000)]
    series: usize,
    /// Start of the first block in Unix milliseconds; a multiple of the compaction ranges (8h)
    /// lines the blocks up with them.
    #[arg(long = "min-time")]
    min_time: i64,
    /// Time range of each block.
    #[arg(long = "block-duration", default_value = "2h", value_parser = parse_duration)]
    block_duration: Duration,
    /// Consecutive blocks to write, each starting where the previous one ends.
    #[arg(long, default_value_t = 1)]
    blocks: usize,
    /// Time between two scrapes of a target.
    #[arg(long = "scrape-interval", default_value = "15s", value_parser = parse_duration)]
    scrape_interval: Duration,
    /// Upload the blocks written to this bucket with the shipper, as a sidecar does (meta.json
    /// with its `thanos` section); needs --label.
    #[command(flatten)]
    objstore: crate::objstore::ObjstoreArgs,
    /// External label of the uploaded blocks, name="value" (repeatable).
    #[arg(long = "label", value_parser = crate::parse_label_flag)]
    labels: Vec<(String, String)>,
}

pub async fn run(a: BenchBlocksArgs) -> anyhow::Result<()> {
    let bucket = a.objstore.bucket()?;
    if bucket.is_some() && a.labels.is_empty() {
        bail!("uploading blocks needs at least one --label, e.g. --label 'cluster=\"bench\"'");
    }
    let plan = Plan::new(&a)?;
    let out = a.out.clone();
    // Block writing is CPU and file work: off the async workers.
    let ids = tokio::task::spawn_blocking(move || plan.write_all(&out)).await??;
    if let Some(bucket) = bucket {
        let started = Instant::now();
        let shipper = strata_shipper::Shipper::new(bucket, &a.out, a.labels.into_iter().collect(), "sidecar")
            .with_context(|| format!("shipper over {}", a.out.display()))?;
        let stats = shipper.sync().await.with_context(|| format!("ship the blocks of {}", a.out.display()))?;
        if stats.uploaded < ids.len() {
            bail!("{} of {} blocks written were uploaded", stats.uploaded, ids.len());
        }
        info!(blocks = stats.uploaded, duration_ms = started.elapsed().as_millis() as u64, "uploaded blocks");
    }
    for id in ids {
        println!("{id}");
    }
    Ok(())
}

/// How a series' value moves from scrape to scrape, in integer units turned into floats by
/// [`Unit`].
#[derive(Clone, Copy)]
enum Shape {
    /// Never decreasing: up by 1 to 2 × rate - 1 units a scrape, the rate drawn per series
    /// below `max_rate`.
    Counter { max_rate: u64, unit: Unit },
    /// Around a per-series level below `max_level`, up to `wobble` units either way.
    Gauge { max_level: u64, wobble: u64, unit: Unit },
    /// The same every scrape: `base` plus a per-series offset below `spread`.
    Constant { base: u64, spread: u64 },
}

#[derive(Clone, Copy)]
enum Unit {
    One,
    /// Hundredths, as CPU seconds and load averages come (decimal fractions compress worse
    /// than integers, as real ones do).
    Centi,
    Milli,
    /// 4 KiB pages, as memory and filesystem sizes come.
    Page,
}

impl Unit {
    fn value(self, x: u64) -> f64 {
        match self {
            Unit::One => x as f64,
            Unit::Centi => x as f64 / 100.0,
            Unit::Milli => x as f64 / 1000.0,
            Unit::Page => (x * 4096) as f64,
        }
    }
}

impl Shape {
    fn value(self, series: u64, scrape: u64) -> f64 {
        match self {
            Shape::Counter { max_rate, unit } => {
                let rate = 1 + mix(series) % max_rate;
                let base = mix2(series, 1) % (1000 * max_rate);
                // The jitter stays below the rate, so consecutive values never decrease.
                unit.value(base + scrape * rate + mix2(series, scrape) % rate)
            }
            Shape::Gauge { max_level, wobble, unit } => {
                let level = wobble + mix(series) % max_level;
                unit.value(level + mix2(series, scrape) % (2 * wobble + 1) - wobble)
            }
            Shape::Constant { base, spread } => (base + mix(series) % spread) as f64,
        }
    }
}

/// One series of every target: its metric name and own labels (sorted by name).
struct Slot {
    name: &'static str,
    labels: Vec<(&'static str, &'static str)>,
    shape: Shape,
}

const CPU_MODES: [(&str, u64); 8] = [
    ("idle", 1400),
    ("iowait", 5),
    ("irq", 2),
    ("nice", 1),
    ("softirq", 5),
    ("steal", 1),
    ("system", 40),
    ("user", 80),
];
const CPUS: [&str; 8] = ["0", "1", "2", "3", "4", "5", "6", "7"];
const DISKS: [&str; 2] = ["nvme0n1", "nvme1n1"];
const FILESYSTEMS: [[(&str, &str); 3]; 3] = [
    [("device", "/dev/nvme0n1p1"), ("fstype", "ext4"), ("mountpoint", "/")],
    [("device", "/dev/nvme1n1"), ("fstype", "xfs"), ("mountpoint", "/var/lib/kubelet")],
    [("device", "tmpfs"), ("fstype", "tmpfs"), ("mountpoint", "/run")],
];
const NETWORK_DEVICES: [&str; 2] = ["eth0", "lo"];
const SLOTS_PER_TARGET: usize = 100;

/// The 100 series of a node exporter.
fn node_exporter() -> Vec<Slot> {
    use Shape::{Constant, Counter, Gauge};
    let slot = |name, labels: &[(&'static str, &'static str)], shape| Slot { name, labels: labels.to_vec(), shape };
    let mut slots = Vec::with_capacity(SLOTS_PER_TARGET);
    for cpu in CPUS {
        for (mode, max_rate) in CPU_MODES {
            let shape = Counter { max_rate, unit: Unit::Centi };
            slots.push(slot("node_cpu_seconds_total", &[("cpu", cpu), ("mode", mode)], shape));
        }
    }
    for device in DISKS {
        let labels = [("device", device)];
        slots.push(slot("node_disk_io_time_seconds_total", &labels, Counter { max_rate: 2000, unit: Unit::Milli }));
        slots.push(slot("node_disk_read_bytes_total", &labels, Counter { max_rate: 5_000_000, unit: Unit::One }));
        slots.push(slot("node_disk_written_bytes_total", &labels, Counter { max_rate: 5_000_000, unit: Unit::One }));
    }
    for fs in &FILESYSTEMS {
        let avail = Gauge { max_level: 50_000_000, wobble: 2000, unit: Unit::Page };
        slots.push(slot("node_filesystem_avail_bytes", fs, avail));
        slots.push(slot("node_filesystem_size_bytes", fs, Constant { base: 1 << 30, spread: 1 << 40 }));
    }
    for name in ["node_load1", "node_load5", "node_load15"] {
        slots.push(slot(name, &[], Gauge { max_level: 800, wobble: 50, unit: Unit::Centi }));
    }
    for name in [
        "node_memory_Buffers_bytes",
        "node_memory_Cached_bytes",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemFree_bytes",
    ] {
        slots.push(slot(name, &[], Gauge { max_level: 8_000_000, wobble: 5000, unit: Unit::Page }));
    }
    slots.push(slot("node_memory_MemTotal_bytes", &[], Constant { base: 1 << 32, spread: 1 << 36 }));
    for device in NETWORK_DEVICES {
        let labels = [("device", device)];
        for name in ["node_network_receive_bytes_total", "node_network_transmit_bytes_total"] {
            slots.push(slot(name, &labels, Counter { max_rate: 20_000_000, unit: Unit::One }));
        }
        for name in ["node_network_receive_packets_total", "node_network_transmit_packets_total"] {
            slots.push(slot(name, &labels, Counter { max_rate: 20_000, unit: Unit::One }));
        }
    }
    for name in ["node_context_switches_total", "node_forks_total", "node_intr_total"] {
        slots.push(slot(name, &[], Counter { max_rate: 100_000, unit: Unit::One }));
    }
    slots.push(slot("node_procs_blocked", &[], Gauge { max_level: 3, wobble: 1, unit: Unit::One }));
    slots.push(slot("node_procs_running", &[], Gauge { max_level: 20, wobble: 3, unit: Unit::One }));
    slots.push(slot("node_entropy_available_bits", &[], Gauge { max_level: 3000, wobble: 500, unit: Unit::One }));
    slots.push(slot("node_boot_time_seconds", &[], Constant { base: 1_700_000_000, spread: 30_000_000 }));
    slots.push(slot("up", &[], Constant { base: 1, spread: 1 }));
    slots
}

/// The labels Prometheus adds to every series of one target, sorted by name.
const TARGET_LABEL_NAMES: [&str; 8] =
    ["cluster", "container", "endpoint", "instance", "job", "namespace", "pod", "service"];

/// Everything the blocks are written from.
struct Plan {
    slots: Vec<Slot>,
    /// Per target, the values of [`TARGET_LABEL_NAMES`].
    targets: Vec<[String; 8]>,
    /// Every series as (target, slot), in label order.
    order: Vec<(u32, u32)>,
    min_time: i64,
    block_ms: i64,
    blocks: usize,
    interval_ms: i64,
}

impl Plan {
    fn new(a: &BenchBlocksArgs) -> anyhow::Result<Plan> {
        let block_ms = i64::try_from(a.block_duration.as_millis()).context("block duration too long")?;
        let interval_ms = i64::try_from(a.scrape_interval.as_millis()).context("scrape interval too long")?;
        if a.series == 0 || a.blocks == 0 || block_ms == 0 || interval_ms == 0 {
            bail!("--series, --blocks, --block-duration and --scrape-interval must be above zero");
        }
        if a.min_time < 0 {
            bail!("--min-time must not be negative (Unix milliseconds), got {}", a.min_time);
        }
        let slots = node_exporter();
        let n_targets = a.series.div_ceil(slots.len());
        let n_targets32 = u32::try_from(n_targets).context("--series too large")?;
        let targets: Vec<[String; 8]> = (0..n_targets as u64).map(target_labels).collect();
        let mut plan = Plan {
            slots,
            targets,
            order: Vec::with_capacity(a.series),
            min_time: a.min_time,
            block_ms,
            blocks: a.blocks,
            interval_ms,
        };
        let per_target = plan.slots.len();
        let mut order: Vec<(u32, u32)> =
            (0..n_targets32).flat_map(|t| (0..per_target as u32).map(move |s| (t, s))).take(a.series).collect();
        order.sort_unstable_by(|&a, &b| plan.cmp_series(a, b));
        plan.order = order;
        Ok(plan)
    }

    /// The labels of one series, sorted by name (`__name__` first: every other name starts
    /// with a lower-case letter).
    fn labels(&self, (t, s): (u32, u32)) -> impl Iterator<Item = (&str, &str)> + Clone {
        let slot = &self.slots[s as usize];
        let target = TARGET_LABEL_NAMES.iter().copied().zip(self.targets[t as usize].iter().map(String::as_str));
        let own = slot.labels.iter().copied();
        std::iter::once(("__name__", slot.name)).chain(MergeByName { a: target.peekable(), b: own.peekable() })
    }

    fn cmp_series(&self, a: (u32, u32), b: (u32, u32)) -> Ordering {
        self.labels(a).cmp(self.labels(b))
    }

    /// Writes the blocks into `dir`; returns their ULIDs.
    fn write_all(&self, dir: &Path) -> anyhow::Result<Vec<Ulid>> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let mut symbols: BTreeSet<&str> = BTreeSet::from(["__name__"]);
        for slot in &self.slots {
            symbols.insert(slot.name);
            symbols.extend(slot.labels.iter().flat_map(|(n, v)| [*n, *v]));
        }
        symbols.extend(TARGET_LABEL_NAMES);
        symbols.extend(self.targets.iter().flatten().map(String::as_str));
        let mut ids = Vec::with_capacity(self.blocks);
        for b in 0..self.blocks as i64 {
            let min = self.min_time + b * self.block_ms;
            // BlockWriter logs each block it finishes.
            ids.push(self.write_block(dir, &symbols, min, min + self.block_ms)?);
        }
        Ok(ids)
    }

    fn write_block(&self, dir: &Path, symbols: &BTreeSet<&str>, min: i64, max: i64) -> anyhow::Result<Ulid> {
        let id = Ulid::new();
        let mut w = BlockWriter::new(dir, id).with_context(|| format!("start block {id} in {}", dir.display()))?;
        w.add_symbols(symbols.iter().copied())?;
        let mut chunks: Vec<ChunkData> = Vec::new();
        for &(t, s) in &self.order {
            let series = u64::from(t) * SLOTS_PER_TARGET as u64 + u64::from(s);
            let shape = self.slots[s as usize].shape;
            // Prometheus spreads its targets' scrapes over the interval.
            let offset = (mix2(u64::from(t), 0x7363) % self.interval_ms as u64) as i64;
            let first = (min - offset + self.interval_ms - 1).div_euclid(self.interval_ms);
            chunks.clear();
            let mut app = XorAppender::new();
            let mut scrape = first;
            loop {
                let ts = scrape * self.interval_ms + offset;
                if ts >= max || app.num_samples() == 120 {
                    if let (Some(lo), Some(hi)) = (app.first_time(), app.last_time()) {
                        let data = bytes::Bytes::from(std::mem::take(&mut app).into_bytes());
                        chunks.push(ChunkData { min_time: lo, max_time: hi, encoding: Encoding::Xor, data });
                    }
                    if ts >= max {
                        break;
                    }
                }
                app.append(ts, shape.value(series, scrape as u64));
                scrape += 1;
            }
            w.add_series(&Labels::from_sorted_unchecked(self.labels((t, s))), &chunks)?;
        }
        let compaction = BlockCompaction { level: 1, sources: vec![id], ..BlockCompaction::default() };
        w.finish(min, max, compaction).with_context(|| format!("finish block {id} in {}", dir.display()))?;
        Ok(id)
    }
}

/// The values of [`TARGET_LABEL_NAMES`] for target `t`: one node of a cluster, its exporter
/// pod named as a DaemonSet names them.
fn target_labels(t: u64) -> [String; 8] {
    let h = mix2(t, 0x706f64);
    let suffix: String =
        (0..5).map(|k| POD_ALPHABET[((h >> (k * 8)) % POD_ALPHABET.len() as u64) as usize] as char).collect();
    [
        CLUSTERS[(t % CLUSTERS.len() as u64) as usize].to_string(),
        "node-exporter".to_string(),
        "https".to_string(),
        format!("10.{}.{}.{}:9100", (t >> 16) & 255, (t >> 8) & 255, t & 255),
        "node-exporter".to_string(),
        "monitoring".to_string(),
        format!("node-exporter-{suffix}"),
        "node-exporter".to_string(),
    ]
}

/// Two iterators of labels sorted by name, merged (their names are disjoint).
struct MergeByName<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

// Derived, it would not be Clone: `Peekable` needs the items to be.
impl<'a, A, B> Clone for MergeByName<A, B>
where
    A: Iterator<Item = (&'a str, &'a str)> + Clone,
    B: Iterator<Item = (&'a str, &'a str)> + Clone,
{
    fn clone(&self) -> Self {
        MergeByName { a: self.a.clone(), b: self.b.clone() }
    }
}

impl<'a, A, B> Iterator for MergeByName<A, B>
where
    A: Iterator<Item = (&'a str, &'a str)>,
    B: Iterator<Item = (&'a str, &'a str)>,
{
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y.0 < x.0 => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;
    use strata_tsdb::block::{Block, BlockSeries};
    use strata_tsdb::chunkenc::XorIter;

    fn args(extra: &[&str]) -> BenchBlocksArgs {
        let mut argv = vec!["bench-blocks", "--out", "unused", "--min-time", "28800000"];
        argv.extend(extra);
        let m = BenchBlocksArgs::augment_args(clap::Command::new("bench-blocks")).get_matches_from(argv);
        BenchBlocksArgs::from_arg_matches(&m).unwrap()
    }

    /// Every series of a block with its samples.
    fn read(dir: &Path) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let block = Block::open(dir).unwrap();
        BlockSeries::new(&block, &[], i64::MIN, i64::MAX, false)
            .unwrap()
            .map(|s| {
                let s = s.unwrap();
                let samples =
                    s.chunks.iter().flat_map(|c| XorIter::new(&c.data).unwrap().collect::<Vec<_>>()).collect();
                (s.labels, samples)
            })
            .collect()
    }

    #[test]
    fn blocks_hold_every_series_in_order_in_chunks_of_120() {
        let dir = tempfile::tempdir().unwrap();
        // 2.5 targets: the last one has half its series.
        let plan = Plan::new(&args(&["--series", "250", "--blocks", "2"])).unwrap();
        let ids = plan.write_all(dir.path()).unwrap();
        assert_eq!(ids.len(), 2);
        let mut last_values = std::collections::HashMap::new();
        for (b, id) in ids.iter().enumerate() {
            let path = dir.path().join(id.to_string());
            let block = Block::open(&path).unwrap();
            let meta = block.meta();
            let min = 28_800_000 + b as i64 * 7_200_000;
            assert_eq!((meta.min_time, meta.max_time), (min, min + 7_200_000));
            assert_eq!(meta.stats.num_series, 250);
            // 2h at 15 s: 480 samples a series, 4 chunks of 120.
            assert_eq!(meta.stats.num_samples, 250 * 480);
            assert_eq!(meta.stats.num_chunks, 250 * 4);
            let series = read(&path);
            assert!(series.windows(2).all(|w| w[0].0 < w[1].0), "series out of order");
            for (labels, samples) in series {
                assert!((9..=12).contains(&labels.len()), "{labels}");
                assert!(samples.windows(2).all(|w| w[1].0 - w[0].0 == 15_000), "{labels}: not 15 s apart");
                assert!(samples.iter().all(|&(t, _)| t >= min && t < min + 7_200_000));
                let name = labels.metric_name().unwrap().to_owned();
                let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
                // Counters go on across the block boundary.
                if let Some(prev) = last_values.insert(labels.clone(), values[values.len() - 1]) {
                    if name.ends_with("_total") {
                        assert!(values[0] > prev, "{labels}: {prev} then {}", values[0]);
                    }
                }
                if name.ends_with("_total") {
                    assert!(values.windows(2).all(|w| w[1] > w[0]), "{labels}: counter decreases");
                }
            }
        }
        assert_eq!(last_values.len(), 250);
    }

    #[test]
    fn series_are_shaped_like_a_node_exporter() {
        let plan = Plan::new(&args(&["--series", "300"])).unwrap();
        assert_eq!(plan.slots.len(), SLOTS_PER_TARGET);
        let cpu = plan.order.iter().filter(|&&(_, s)| plan.slots[s as usize].name == "node_cpu_seconds_total").count();
        assert_eq!(cpu, 3 * 64);
        let names: BTreeSet<&str> = plan.slots.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), 26);
        // Unique label sets.
        let all: BTreeSet<Labels> = plan.order.iter().map(|&p| Labels::from_sorted_unchecked(plan.labels(p))).collect();
        assert_eq!(all.len(), 300);
    }

    #[test]
    fn refuses_empty_and_negative_inputs() {
        for extra in
            [&["--series", "0"][..], &["--blocks", "0"], &["--scrape-interval", "0s"], &["--block-duration", "0s"]]
        {
            assert!(Plan::new(&args(extra)).is_err(), "{extra:?}");
        }
        let m = BenchBlocksArgs::augment_args(clap::Command::new("bench-blocks")).get_matches_from([
            "bench-blocks",
            "--out",
            "x",
            "--min-time=-1",
        ]);
        assert!(Plan::new(&BenchBlocksArgs::from_arg_matches(&m).unwrap()).is_err());
    }
}
