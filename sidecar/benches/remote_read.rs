//! The sidecar's read of a streamed remote-read answer: 10,000 series, one a frame as
//! Prometheus sends them (Prometheus's external labels added, 25 XOR chunks of 120 samples
//! each), arriving in pieces of 16 KiB, split into frames and decoded into series.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use strata_proto::prometheus as pb;
use strata_sidecar::frame::{encode_frame, FrameDecoder, DEFAULT_FRAME_LIMIT};
use strata_sidecar::read::decode_frame;
use strata_tsdb::chunkenc::XorAppender;
use strata_tsdb::labels::Labels;

const SERIES: usize = 10_000;
const CHUNKS: i64 = 25;
const PIECE: usize = 16 << 10;

fn stream() -> Vec<Bytes> {
    let chunk = |start: i64| {
        let mut app = XorAppender::new();
        for i in 0..120 {
            app.append(start + i * 15_000, (i * 3) as f64);
        }
        pb::Chunk {
            min_time_ms: start,
            max_time_ms: start + 119 * 15_000,
            r#type: pb::chunk::Encoding::Xor as i32,
            data: Bytes::copy_from_slice(app.bytes()),
        }
    };
    let chunks: Vec<pb::Chunk> = (0..CHUNKS).map(|i| chunk(i * 1_800_000)).collect();
    let mut bytes = Vec::new();
    for i in 0..SERIES {
        let (instance, status) = (format!("10.0.{}.{}:9100", i / 250, i % 250), format!("{}", 200 + i % 5));
        let labels = [
            ("__name__", "bench_http_requests_total"),
            ("cluster", "bench"),
            ("instance", instance.as_str()),
            ("job", "kubernetes-pods"),
            ("method", ["GET", "POST"][i % 2]),
            ("prometheus_replica", "r0"),
            ("status", status.as_str()),
        ];
        let series = pb::ChunkedSeries::new(labels, chunks.clone());
        let frame = pb::ChunkedReadResponse { chunked_series: vec![series], query_index: 0 };
        bytes.extend(encode_frame(&frame.encode_to_vec()));
    }
    bytes.chunks(PIECE).map(Bytes::copy_from_slice).collect()
}

fn read(pieces: &[Bytes], external: &Labels) -> usize {
    let mut decoder = FrameDecoder::new(DEFAULT_FRAME_LIMIT);
    let mut series = 0;
    for piece in pieces {
        decoder.push(piece.clone());
        while let Some(message) = decoder.next_frame().unwrap() {
            series += decode_frame(message, external).unwrap().len();
        }
    }
    decoder.finish().unwrap();
    series
}

fn bench(c: &mut Criterion) {
    let pieces = stream();
    let external = Labels::from_pairs(&[("cluster", "bench"), ("prometheus_replica", "r0")]);
    assert_eq!(read(&pieces, &external), SERIES);
    let mut g = c.benchmark_group("remote_read_10k");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("frames_to_series", |b| b.iter(|| read(&pieces, &external)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
