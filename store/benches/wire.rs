//! The StoreAPI's per-series work, both ends: a server turning 10,000 series (label sets shaped
//! like a histogram's buckets, three XOR chunks of 120 samples each) into `SeriesBatch`
//! responses of 64 and encoding them; a client decoding those responses back into checked
//! series; and sorting the label sets, as a head's select does.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use strata_proto::thanos as pb;
use strata_store::convert::{series_from_proto, series_to_proto};
use strata_tsdb::block::{ChunkData, SeriesChunks};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::labels::Labels;

const SERIES: usize = 10_000;
const BATCH: usize = 64;

fn series() -> Vec<SeriesChunks> {
    let chunk = |start: i64| {
        let mut app = XorAppender::new();
        for i in 0..120 {
            app.append(start + i * 15_000, (i * 3) as f64);
        }
        let data = app.bytes().to_vec().into();
        ChunkData { min_time: start, max_time: start + 119 * 15_000, encoding: Encoding::Xor, data }
    };
    let chunks: Vec<ChunkData> = (0..3).map(|i| chunk(i * 1_800_000)).collect();
    (0..SERIES)
        .map(|i| {
            let instance = format!("10.0.{}.{}:9100", i / 250, i % 250);
            let le = format!("{}", (i % 12) as f64 * 0.25);
            let pod = format!("api-{:05}", i / 12);
            let labels = Labels::from_pairs(&[
                ("__name__", "http_request_duration_seconds_bucket"),
                ("cluster", "eu-west-1"),
                ("instance", instance.as_str()),
                ("job", "kubernetes-pods"),
                ("le", le.as_str()),
                ("namespace", "monitoring"),
                ("pod", pod.as_str()),
                ("replica", "a"),
            ]);
            SeriesChunks { labels, chunks: chunks.clone() }
        })
        .collect()
}

fn responses(series: Vec<SeriesChunks>) -> Vec<Vec<u8>> {
    let mut series = series.into_iter().peekable();
    let mut out = Vec::new();
    while series.peek().is_some() {
        let batch = series.by_ref().take(BATCH).map(|s| series_to_proto(s, &[]).expect("raw chunks")).collect();
        let result = pb::series_response::Result::Batch(pb::SeriesBatch { series: batch });
        out.push(pb::SeriesResponse { result: Some(result) }.encode_to_vec());
    }
    out
}

fn decode(wire: &[Vec<u8>]) -> Vec<SeriesChunks> {
    let mut out = Vec::with_capacity(SERIES);
    for frame in wire {
        let response = pb::SeriesResponse::decode(&frame[..]).unwrap();
        let Some(pb::series_response::Result::Batch(batch)) = response.result else { panic!("not a batch") };
        out.extend(batch.series.into_iter().map(|s| series_from_proto(s, "bench").unwrap()));
    }
    out
}

fn bench(c: &mut Criterion) {
    let all = series();
    let mut g = c.benchmark_group("storeapi_series_10k");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("encode", |b| b.iter_batched(|| all.clone(), responses, BatchSize::LargeInput));
    let wire = responses(all.clone());
    g.bench_function("decode", |b| b.iter(|| decode(&wire)));
    // In hash order: a head's series come in ref order, not label order.
    let mut shuffled: Vec<Labels> = all.iter().map(|s| s.labels.clone()).collect();
    shuffled.sort_by_key(Labels::hash);
    g.bench_function("sort_labels", |b| {
        b.iter_batched(|| shuffled.clone(), |mut l| l.sort_unstable(), BatchSize::LargeInput)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
