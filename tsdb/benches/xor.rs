//! XOR chunk encode and decode speed on scrape-like data: 120-sample chunks (what the head cuts),
//! a 15s interval with a few milliseconds of jitter, counter and gauge values.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_tsdb::chunkenc::{XorAppender, XorIter};

const SAMPLES: usize = 120;
/// Distinct chunks per measurement, so the branch predictor cannot learn one chunk by heart.
const CHUNKS: usize = 64;

type Series = Vec<(i64, f64)>;
type Generator = fn(&mut StdRng) -> Series;

fn timestamps(rng: &mut StdRng) -> Vec<i64> {
    let mut t = 1_700_000_000_000i64 + rng.gen_range(0..15_000);
    (0..SAMPLES)
        .map(|_| {
            t += 15_000 + rng.gen_range(-5..=5);
            t
        })
        .collect()
}

/// A request counter: integer increments, now and then idle.
fn counter(rng: &mut StdRng) -> Series {
    let mut v = f64::from(rng.gen_range(0u32..1_000_000));
    timestamps(rng)
        .into_iter()
        .map(|t| {
            if rng.gen_bool(0.8) {
                v += f64::from(rng.gen_range(1u32..200));
            }
            (t, v)
        })
        .collect()
}

/// A gauge such as CPU seconds rate or memory use: a random walk with full float precision.
fn gauge(rng: &mut StdRng) -> Series {
    let mut v: f64 = rng.gen_range(0.0..100.0);
    timestamps(rng)
        .into_iter()
        .map(|t| {
            v = (v + rng.gen_range(-1.0..1.0)).abs();
            (t, v)
        })
        .collect()
}

fn encode(series: &Series) -> Box<[u8]> {
    let mut app = XorAppender::new();
    for &(t, v) in series {
        app.append(t, v);
    }
    app.into_bytes()
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let kinds: [(&str, Generator); 2] = [("counter", counter), ("gauge", gauge)];
    let mut group = c.benchmark_group("xor");
    group.throughput(Throughput::Elements((SAMPLES * CHUNKS) as u64));
    for (name, make) in kinds {
        let data: Vec<Series> = (0..CHUNKS).map(|_| make(&mut rng)).collect();
        let chunks: Vec<Box<[u8]>> = data.iter().map(encode).collect();
        let bytes: usize = chunks.iter().map(|c| c.len()).sum();
        eprintln!("{name}: {:.2} bytes/sample", bytes as f64 / (SAMPLES * CHUNKS) as f64);

        group.bench_with_input(BenchmarkId::new("encode", name), &data, |b, data| {
            b.iter(|| {
                for series in data {
                    black_box(encode(black_box(series)));
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("decode", name), &chunks, |b, chunks| {
            b.iter(|| {
                let mut sum = 0.0;
                for chunk in chunks {
                    if let Ok(it) = XorIter::new(black_box(chunk)) {
                        for (t, v) in it {
                            sum += v + t as f64;
                        }
                    }
                }
                black_box(sum)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
