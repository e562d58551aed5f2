//! Go-compatible float formatting, which the query API runs once per returned sample: rates
//! (16–17 significant digits), counters (integers) and small gauges.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_tsdb::gotext::write_f;

const VALUES: usize = 4096;

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let sets: [(&str, Vec<f64>); 3] = [
        ("rate", (0..VALUES).map(|_| rng.gen_range(0u32..100_000) as f64 / 57.0).collect()),
        ("counter", (0..VALUES).map(|_| rng.gen_range(0u64..10_000_000_000) as f64).collect()),
        ("gauge", (0..VALUES).map(|_| rng.gen_range(0u32..1000) as f64 / 8.0).collect()),
    ];
    let mut g = c.benchmark_group("write_f");
    g.throughput(Throughput::Elements(VALUES as u64));
    for (name, values) in &sets {
        g.bench_function(*name, |b| {
            let mut out = String::with_capacity(VALUES * 24);
            b.iter(|| {
                out.clear();
                for &v in values {
                    write_f(&mut out, black_box(v));
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
