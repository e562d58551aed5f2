//! Engine throughput: 1h range queries at a 15s step over 1k and 10k series held in memory as
//! pre-encoded XOR chunks (so the numbers are the engine's: selection, decoding, evaluation).
//! The `dedup` group compares `rate` over one copy of 10k series with the same over two
//! replicas of them, deduplicated (the target: at most 1.3 times one copy).
//!
//! `cargo bench -p strata-query --bench engine` (`-- dedup` for that group alone)

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::ops::Range;

use strata_query::engine::{DedupFunc, Engine, EngineOptions, QueryOptions};
use strata_storage::{
    ChunkData, LabelsAnswer, LabelsRequest, SelectRequest, SeriesChunks, SeriesSet, Storage, StorageError,
};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::labels::Labels;

const SCRAPE: i64 = 15_000;
const START: i64 = 2 * 3_600_000;
const END: i64 = START + 3_600_000;
const STEP: i64 = 15_000;
const BUCKETS: [&str; 10] = ["0.005", "0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "10", "+Inf"];

/// Series as a TSDB returns them, chunks encoded once up front.
struct Chunks(Vec<SeriesChunks>);

impl Storage for Chunks {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        let (mint, maxt) = (req.min_time, req.max_time);
        let found: Vec<SeriesChunks> = self
            .0
            .iter()
            .filter(|s| req.matchers.iter().all(|m| m.matches(s.labels.get(&m.name).unwrap_or(""))))
            .map(|s| SeriesChunks {
                labels: s.labels.clone(),
                chunks: s.chunks.iter().filter(|c| c.max_time >= mint && c.min_time <= maxt).cloned().collect(),
            })
            .collect();
        Ok(SeriesSet::from_local(found.into_iter().map(Ok), req))
    }

    fn label_names(&self, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        Ok(LabelsAnswer::default())
    }

    fn label_values(&self, _: &str, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        Ok(LabelsAnswer::default())
    }
}

/// A counter series from time 0 to `END`, in 120-sample chunks, without samples in `gap`.
fn counter(labels: Labels, seed: u64, gap: Range<i64>) -> SeriesChunks {
    let mut chunks = Vec::new();
    let mut a = XorAppender::new();
    let (mut first, mut last) = (0, 0);
    let mut v = 0.0;
    let mut t = 0;
    while t <= END {
        if a.num_samples() == 120 {
            chunks.push(ChunkData {
                min_time: first,
                max_time: last,
                encoding: Encoding::Xor,
                data: a.bytes().to_vec().into(),
            });
            a = XorAppender::new();
        }
        if a.num_samples() == 0 {
            first = t;
        }
        v += ((seed + t as u64 / SCRAPE as u64) % 7) as f64;
        if !gap.contains(&t) {
            a.append(t, v);
            last = t;
        }
        t += SCRAPE;
    }
    chunks.push(ChunkData {
        min_time: first,
        max_time: last,
        encoding: Encoding::Xor,
        data: a.bytes().to_vec().into(),
    });
    SeriesChunks { labels, chunks }
}

fn dataset(n: usize) -> Chunks {
    let mut series = Vec::with_capacity(2 * n);
    for i in 0..n {
        let job = format!("job{}", i % 10);
        let instance = format!("host{i}");
        let labels = Labels::from_pairs(&[("__name__", "x"), ("job", &job), ("instance", &instance)]);
        series.push(counter(labels, i as u64, 0..0));
    }
    for i in 0..n {
        let instance = format!("host{}", i / BUCKETS.len());
        let le = BUCKETS[i % BUCKETS.len()];
        let labels = Labels::from_pairs(&[("__name__", "x_bucket"), ("instance", &instance), ("le", le)]);
        series.push(counter(labels, (i / BUCKETS.len()) as u64, 0..0));
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Chunks(series)
}

fn bench(c: &mut Criterion) {
    let engine = Engine::new(EngineOptions::default());
    let queries = [
        "rate(x[5m])",
        "sum by (job) (rate(x[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
        "topk(10, x)",
    ];
    let mut group = c.benchmark_group("range_1h_15s");
    group.sample_size(10);
    for n in [1_000, 10_000] {
        let storage = dataset(n);
        for q in queries {
            group.bench_with_input(BenchmarkId::new(q, n), &storage, |b, s| {
                b.iter(|| engine.range_query(s, q, START, END, STEP, &QueryOptions::default()).expect("query"))
            });
        }
    }
    group.finish();
}

/// `n` counters `x`, as `replicas` copies told apart by a `replica` label; with `gaps`, each
/// copy misses 10 minutes of samples, at a different time.
fn replicated(n: usize, replicas: usize, gaps: bool) -> Chunks {
    let mut series = Vec::with_capacity(n * replicas);
    for i in 0..n {
        for r in 0..replicas {
            let (job, instance, replica) = (format!("job{}", i % 10), format!("host{i}"), format!("r{r}"));
            let mut pairs = vec![("__name__", "x"), ("job", job.as_str()), ("instance", instance.as_str())];
            if replicas > 1 {
                pairs.push(("replica", replica.as_str()));
            }
            let gap_start = START + 600_000 * (2 * r as i64 + 1);
            let gap = if gaps { gap_start..gap_start + 600_000 } else { 0..0 };
            series.push(counter(Labels::from_pairs(&pairs), i as u64, gap));
        }
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Chunks(series)
}

fn bench_dedup(c: &mut Criterion) {
    let engine = Engine::new(EngineOptions::default());
    let n = 10_000;
    let dedup =
        |func| QueryOptions { replica_labels: vec!["replica".into()], dedup_func: func, ..QueryOptions::default() };
    let cases = [
        ("one_copy", replicated(n, 1, false), QueryOptions::default()),
        ("two_replicas_penalty", replicated(n, 2, false), dedup(DedupFunc::Penalty)),
        ("two_replicas_gaps_penalty", replicated(n, 2, true), dedup(DedupFunc::Penalty)),
        ("two_replicas_chain", replicated(n, 2, false), dedup(DedupFunc::Chain)),
    ];
    let mut group = c.benchmark_group("dedup");
    group.sample_size(10);
    for (name, storage, opts) in &cases {
        group.bench_with_input(BenchmarkId::new(*name, n), storage, |b, s| {
            b.iter(|| engine.range_query(s, "rate(x[5m])", START, END, STEP, opts).expect("query"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_dedup);
criterion_main!(benches);
