//! Engine throughput: 1h range queries at a 15s step over 1k and 10k series held in memory as
//! pre-encoded XOR chunks (so the numbers are the engine's: selection, decoding, evaluation).
//!
//! `cargo bench -p strata-query --bench engine`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use strata_query::engine::{Engine, EngineOptions};
use strata_storage::{ChunkData, LabelsRequest, SelectRequest, SeriesChunks, SeriesSet, Storage, StorageError};
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

    fn label_names(&self, _: &LabelsRequest) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    fn label_values(&self, _: &str, _: &LabelsRequest) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

/// A counter series from time 0 to `END`, in 120-sample chunks.
fn counter(labels: Labels, seed: u64) -> SeriesChunks {
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
        a.append(t, v);
        last = t;
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
        series
            .push(counter(Labels::from_pairs(&[("__name__", "x"), ("job", &job), ("instance", &instance)]), i as u64));
    }
    for i in 0..n {
        let instance = format!("host{}", i / BUCKETS.len());
        let le = BUCKETS[i % BUCKETS.len()];
        let labels = Labels::from_pairs(&[("__name__", "x_bucket"), ("instance", &instance), ("le", le)]);
        series.push(counter(labels, (i / BUCKETS.len()) as u64));
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
                b.iter(|| engine.range_query(s, q, START, END, STEP).expect("query"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
