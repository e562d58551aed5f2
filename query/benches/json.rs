//! Encoding query results as Prometheus's JSON: a range query's matrix of rate-like values (17
//! significant digits, the costly case for float formatting) at a 15 s step over one hour.
//!
//! `cargo bench -p strata-query --bench json`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata_query::api::json::JsonWriter;
use strata_query::value::{Series, Value};
use strata_tsdb::labels::Labels;

const START: i64 = 1_763_726_400_000;
const STEPS: i64 = 241;
const STEP: i64 = 15_000;

fn matrix(series: usize) -> Value {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    Value::Matrix(
        (0..series)
            .map(|i| {
                let instance = format!("10.0.{}.{}:8080", i / 250, i % 250);
                let labels = Labels::from_pairs(&[("instance", instance.as_str()), ("job", "kubernetes-pods")]);
                let points = (0..STEPS)
                    .map(|s| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (START + s * STEP, (x % 1_000_000) as f64 / 900.0)
                    })
                    .collect();
                Series { labels, points }
            })
            .collect(),
    )
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("matrix_json");
    for n in [50, 500] {
        let value = matrix(n);
        group.throughput(Throughput::Elements(n as u64 * STEPS as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &value, |b, v| {
            b.iter(|| {
                let mut w = JsonWriter::default();
                w.query_data_open(v);
                w
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
