//! Downsampling a raw block of 1k series × 2 days at a 15 s interval (11.5M samples) to 5m, as
//! the compactor does it. After criterion's wall times, the CPU time of a few runs is printed
//! (from `/proc/self/schedstat`, so a busy machine does not inflate it). With `THANOS_BIN` set
//! to a Thanos binary, the same block is also put in a FILESYSTEM bucket and downsampled by one
//! `thanos compact` run under `/usr/bin/time -v`, whose CPU time and peak memory are printed
//! next to strata's.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_tsdb::block::meta::ThanosMeta;
use strata_tsdb::block::{Block, BlockCompaction, BlockWriter, ChunkData};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::downsample::{downsample_block, RES_5M};
use strata_tsdb::Labels;
use ulid::Ulid;

const SERIES: usize = 1000;
const INTERVAL: i64 = 15_000;
const SPAN: i64 = 48 * 3_600_000;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

fn labels(i: usize) -> Labels {
    Labels::from_pairs(&[
        ("__name__", format!("bench_requests_total_{:02}", i / 100)),
        ("instance", format!("10.0.{}.{}:9100", i / 256, i % 256)),
        ("job", "api".to_owned()),
    ])
}

/// The raw block: counters (a reset now and then) in chunks of 120 samples, in `dir`, with
/// a Thanos section as a shipper uploads it.
fn build_raw_block(dir: &Path) -> Block {
    let ulid = Ulid::new();
    let mut series: Vec<Labels> = (0..SERIES).map(labels).collect();
    series.sort();
    let symbols: Vec<String> =
        series.iter().flat_map(|l| l.iter().flat_map(|(n, v)| [n.to_owned(), v.to_owned()])).collect();
    let mut symbols: Vec<&str> = symbols.iter().map(String::as_str).collect();
    symbols.sort_unstable();
    symbols.dedup();
    let mut w = BlockWriter::new(dir, ulid).unwrap();
    w.add_symbols(symbols).unwrap();
    let samples = SPAN / INTERVAL;
    for (i, l) in series.iter().enumerate() {
        let mut chunks = Vec::new();
        let mut v = 0.0;
        for start in (0..samples).step_by(120) {
            let mut app = XorAppender::new();
            let end = (start + 120).min(samples);
            for s in start..end {
                v = if (s + i as i64) % 5000 == 0 { 0.0 } else { v + ((s * 7 + i as i64) % 13) as f64 };
                app.append(T0 + s * INTERVAL, v);
            }
            chunks.push(ChunkData {
                min_time: T0 + start * INTERVAL,
                max_time: T0 + (end - 1) * INTERVAL,
                encoding: Encoding::Xor,
                data: app.into_bytes().into(),
            });
        }
        w.add_series(l, &chunks).unwrap();
    }
    w.finish_with(T0, T0 + SPAN, BlockCompaction { level: 1, ..Default::default() }, |_, meta| {
        let mut thanos = ThanosMeta { source: "bucket.upload".to_owned(), ..ThanosMeta::default() };
        thanos.labels.insert("bench".to_owned(), "downsample".to_owned());
        meta.thanos = Some(thanos);
        Ok(())
    })
    .unwrap();
    Block::open(&dir.join(ulid.to_string())).unwrap()
}

/// One `thanos compact` run over a FILESYSTEM bucket holding a copy of `block`, under
/// `/usr/bin/time -v`; prints its CPU time and peak RSS.
fn thanos_downsample(thanos: &str, block: &Block, work: &Path) {
    let bucket = work.join("bucket");
    let copy = bucket.join(block.meta().ulid.to_string());
    std::fs::create_dir_all(copy.join("chunks")).unwrap();
    for f in ["meta.json", "index", "chunks/000001"] {
        std::fs::copy(block.dir().join(f), copy.join(f)).unwrap();
    }
    let config = work.join("objstore.yml");
    std::fs::write(&config, format!("type: FILESYSTEM\nconfig:\n  directory: {}\n", bucket.display())).unwrap();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(thanos)
        .arg("compact")
        .arg(format!("--objstore.config-file={}", config.display()))
        .arg(format!("--data-dir={}", work.join("compact").display()))
        .args(["--consistency-delay=0s", "--delete-delay=0s", "--http-address=127.0.0.1:0", "--log.level=warn"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "thanos compact failed:\n{report}");
    let field =
        |name: &str| report.lines().find_map(|l| l.trim().strip_prefix(name)).map(str::trim).unwrap_or("?").to_owned();
    let blocks = std::fs::read_dir(&bucket).unwrap().count();
    println!(
        "thanos compact (raw to 5m, {blocks} blocks after): user {} s, system {} s, wall {}, max RSS {} KiB",
        field("User time (seconds):"),
        field("System time (seconds):"),
        field("Elapsed (wall clock) time (h:mm:ss or m:ss):"),
        field("Maximum resident set size (kbytes):")
    );
}

/// CPU time this thread has run, in ns (the first field of `/proc/self/schedstat`).
fn cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/schedstat").unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

fn bench_downsample(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let block = build_raw_block(dir.path());
    println!("built a raw block of {} samples in {:.1?}", block.meta().stats.num_samples, started.elapsed());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();

    let mut g = c.benchmark_group("downsample");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(block.meta().stats.num_samples));
    g.bench_function("raw_to_5m_1k_series_2d_15s", |b| {
        b.iter(|| {
            let meta = downsample_block(&block, RES_5M, &out).unwrap();
            std::fs::remove_dir_all(out.join(meta.ulid.to_string())).unwrap();
            black_box(meta)
        })
    });
    g.finish();

    const RUNS: u32 = 5;
    let cpu_before = cpu_ns();
    for _ in 0..RUNS {
        let meta = downsample_block(&block, RES_5M, &out).unwrap();
        std::fs::remove_dir_all(out.join(meta.ulid.to_string())).unwrap();
    }
    println!(
        "strata downsample_block (raw to 5m): {:.3} s of CPU per run",
        (cpu_ns() - cpu_before) as f64 / 1e9 / f64::from(RUNS)
    );

    if let Ok(thanos) = std::env::var("THANOS_BIN") {
        thanos_downsample(&thanos, &block, &dir.path().join("thanos"));
    }
}

criterion_group!(benches, bench_downsample);
criterion_main!(benches);
