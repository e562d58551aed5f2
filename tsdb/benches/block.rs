//! Block write throughput (100k series × 120 samples, as a 2-hour head cut at a 60 s scrape
//! interval writes them) and select latency on a block of 1M series, for selectors matching 1,
//! 100 and 10k series.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_tsdb::block::{Block, BlockCompaction, BlockWriter, ChunkData};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::matchers::{MatchOp, Matcher};
use strata_tsdb::Labels;
use ulid::Ulid;

const WRITE_SERIES: usize = 100_000;
const SAMPLES_PER_CHUNK: i64 = 120;
const SELECT_GROUPS: usize = 10_000;
/// Series per group; the 1M-series block has SELECT_GROUPS × GROUP_SIZE series.
const GROUP_SIZE: usize = 100;

/// Series `i` of the write benchmark: realistic label sets sorted by construction.
fn write_labels(i: usize) -> Labels {
    Labels::from_pairs(&[
        ("__name__", format!("http_requests_total_{:02}", i / 10_000)),
        ("instance", format!("10.{}.{}.{}:9100", i / 65_536, (i / 256) % 256, i % 256)),
        ("job", "api".to_owned()),
        ("pod", format!("api-{:06}", i)),
    ])
}

/// One 120-sample chunk of counter-like samples at a 60 s interval.
fn chunk(seed: usize) -> ChunkData {
    let mut app = XorAppender::new();
    let mut v = (seed % 1000) as f64;
    for s in 0..SAMPLES_PER_CHUNK {
        v += ((seed as i64 * 7 + s * 13) % 50) as f64;
        app.append(s * 60_000, v);
    }
    ChunkData {
        min_time: 0,
        max_time: (SAMPLES_PER_CHUNK - 1) * 60_000,
        encoding: Encoding::Xor,
        data: app.bytes().to_vec().into(),
    }
}

fn bench_write(c: &mut Criterion) {
    let mut series: Vec<(Labels, Vec<ChunkData>)> =
        (0..WRITE_SERIES).map(|i| (write_labels(i), vec![chunk(i)])).collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let symbols: Vec<String> =
        series.iter().flat_map(|(l, _)| l.iter().flat_map(|(n, v)| [n.to_owned(), v.to_owned()])).collect();

    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("block_write");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(WRITE_SERIES as u64 * SAMPLES_PER_CHUNK as u64));
    g.bench_function("100k_series_x120_samples", |b| {
        b.iter(|| {
            let ulid = Ulid::new();
            let mut w = BlockWriter::new(dir.path(), ulid).unwrap();
            w.add_symbols(symbols.iter().map(String::as_str)).unwrap();
            for (labels, chunks) in &series {
                w.add_series(labels, chunks).unwrap();
            }
            let meta =
                w.finish(0, SAMPLES_PER_CHUNK * 60_000, BlockCompaction { level: 1, ..Default::default() }).unwrap();
            std::fs::remove_dir_all(dir.path().join(ulid.to_string())).unwrap();
            meta
        })
    });
    g.finish();
}

/// Writes the 1M-series block: group g has GROUP_SIZE series, `shard` repeats every
/// GROUP_SIZE series (so each shard value has SELECT_GROUPS series), `instance` is unique.
fn build_large_block(dir: &std::path::Path) -> Block {
    let ulid = Ulid::new();
    let mut w = BlockWriter::new(dir, ulid).unwrap();
    let groups: Vec<String> = (0..SELECT_GROUPS).map(|g| format!("g{g:05}")).collect();
    let shards: Vec<String> = (0..GROUP_SIZE).map(|s| format!("s{s:02}")).collect();
    let instances: Vec<String> = (0..SELECT_GROUPS * GROUP_SIZE).map(|i| format!("i{i:07}")).collect();
    w.add_symbols(
        ["__name__", "bench_metric", "group", "instance", "shard"]
            .into_iter()
            .chain(groups.iter().map(String::as_str))
            .chain(shards.iter().map(String::as_str))
            .chain(instances.iter().map(String::as_str)),
    )
    .unwrap();
    let c = chunk(1);
    // Names sort __name__ < group < instance < shard, so this loop is in label order.
    for (g, group) in groups.iter().enumerate() {
        for (s, shard) in shards.iter().enumerate() {
            let labels = Labels::from_sorted_unchecked([
                ("__name__", "bench_metric"),
                ("group", group.as_str()),
                ("instance", instances[g * GROUP_SIZE + s].as_str()),
                ("shard", shard.as_str()),
            ]);
            w.add_series(&labels, std::slice::from_ref(&c)).unwrap();
        }
    }
    w.finish(0, SAMPLES_PER_CHUNK * 60_000, BlockCompaction { level: 1, ..Default::default() }).unwrap();
    Block::open(&dir.join(ulid.to_string())).unwrap()
}

fn bench_select(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let block = build_large_block(dir.path());
    println!("built a block of {} series in {:.1?}", block.meta().stats.num_series, started.elapsed());
    let m = |op, name: &str, value: &str| Matcher::new(op, name, value).unwrap();
    let name = m(MatchOp::Equal, "__name__", "bench_metric");
    let cases = [
        ("1_series", vec![name.clone(), m(MatchOp::Equal, "instance", "i0123456")], 1),
        ("100_series", vec![name.clone(), m(MatchOp::Equal, "group", "g04242")], GROUP_SIZE),
        ("10k_series", vec![name.clone(), m(MatchOp::Equal, "shard", "s42")], SELECT_GROUPS),
        // A regex that must scan all 10k group values: 10 groups.
        ("1k_series_regex_scan", vec![name.clone(), m(MatchOp::Regex, "group", "g0042[0-9]")], 10 * GROUP_SIZE),
    ];
    let mut g = c.benchmark_group("block_select_1m_series");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for (id, matchers, want) in &cases {
        assert_eq!(block.select(matchers, 0, i64::MAX).unwrap().len(), *want, "{id}");
        g.bench_function(*id, |b| b.iter(|| black_box(block.select(matchers, 0, i64::MAX).unwrap())));
    }
    g.bench_function("open", |b| b.iter(|| black_box(Block::open(block.dir()).unwrap())));
    g.finish();
}

criterion_group!(benches, bench_write, bench_select);
criterion_main!(benches);
