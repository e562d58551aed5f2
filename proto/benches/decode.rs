//! Remote-write decode throughput, hand-written zero-copy decoder against prost's generated code,
//! on requests shaped like a node_exporter scrape: 5-10 labels and one sample per series.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prost::Message;
use strata_proto::prometheus as v1;
use strata_proto::remote_write::WriteBatch;
use strata_proto::write_v2 as v2;

const METRICS: &[&str] = &[
    "node_cpu_seconds_total",
    "node_disk_read_bytes_total",
    "node_disk_io_time_seconds_total",
    "node_filesystem_avail_bytes",
    "node_network_receive_bytes_total",
    "node_memory_MemAvailable_bytes",
    "node_softnet_processed_total",
    "node_interrupts_total",
];

const MODES: &[&str] = &["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"];

fn label(name: &str, value: &str) -> v1::Label {
    v1::Label { name: name.into(), value: value.into() }
}

/// `n` series from a fleet of hosts, each with its labels sorted by name as Prometheus sends them.
fn v1_request(n: usize) -> v1::WriteRequest {
    let timeseries = (0..n)
        .map(|i| {
            let metric = METRICS[i % METRICS.len()];
            let host = i / 256;
            let mut labels = vec![
                label("__name__", metric),
                label("instance", &format!("10.0.{}.{}:9100", host / 250, host % 250)),
                label("job", "node"),
                label("datacenter", "eu-west-1a"),
                label("env", "production"),
            ];
            match metric {
                "node_cpu_seconds_total" => {
                    labels.push(label("cpu", &(i % 64).to_string()));
                    labels.push(label("mode", MODES[i % MODES.len()]));
                }
                "node_filesystem_avail_bytes" => {
                    labels.push(label("device", "/dev/nvme0n1p2"));
                    labels.push(label("fstype", "ext4"));
                    labels.push(label("mountpoint", &format!("/var/lib/data{}", i % 7)));
                    labels.push(label("team", "storage"));
                    labels.push(label("region", "eu-west-1"));
                }
                "node_disk_read_bytes_total" | "node_disk_io_time_seconds_total" => {
                    labels.push(label("device", &format!("nvme{}n1", i % 4)));
                }
                "node_network_receive_bytes_total" => labels.push(label("device", &format!("eth{}", i % 2))),
                _ => {}
            }
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            let sample = v1::Sample { value: i as f64 * 1234.567, timestamp: 1_700_000_000_000 + (i % 15_000) as i64 };
            v1::TimeSeries { labels, samples: vec![sample], ..Default::default() }
        })
        .collect();
    v1::WriteRequest { timeseries, metadata: vec![] }
}

/// The same series as a 2.0 request with an interned symbol table.
fn v2_request(req: &v1::WriteRequest) -> v2::Request {
    let mut symbols = vec![String::new()];
    let mut index: HashMap<String, u32> = HashMap::from([(String::new(), 0)]);
    let mut intern = |s: &str| {
        *index.entry(s.to_string()).or_insert_with(|| {
            symbols.push(s.to_string());
            symbols.len() as u32 - 1
        })
    };
    let timeseries = req
        .timeseries
        .iter()
        .map(|ts| v2::TimeSeries {
            labels_refs: ts.labels.iter().flat_map(|l| [intern(&l.name), intern(&l.value)]).collect(),
            samples: ts
                .samples
                .iter()
                .map(|s| v2::Sample { value: s.value, timestamp: s.timestamp, start_timestamp: 0 })
                .collect(),
            metadata: Some(v2::Metadata { r#type: 1, help_ref: 0, unit_ref: 0 }),
            ..Default::default()
        })
        .collect();
    v2::Request { symbols, timeseries }
}

fn decode(c: &mut Criterion) {
    for n in [2_000, 10_000] {
        let req = v1_request(n);
        let v1_bytes = req.encode_to_vec();
        let v2_bytes = v2_request(&req).encode_to_vec();

        let mut group = c.benchmark_group("decode_v1");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("handwritten", n), &v1_bytes, |b, bytes| {
            b.iter(|| WriteBatch::decode_v1(black_box(bytes)).map(|batch| batch.samples.len()))
        });
        group.bench_with_input(BenchmarkId::new("prost", n), &v1_bytes, |b, bytes| {
            b.iter(|| v1::WriteRequest::decode(black_box(bytes.as_slice())).map(|r| r.timeseries.len()))
        });
        group.finish();

        let mut group = c.benchmark_group("decode_v2");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("handwritten", n), &v2_bytes, |b, bytes| {
            b.iter(|| WriteBatch::decode_v2(black_box(bytes)).map(|batch| batch.samples.len()))
        });
        group.bench_with_input(BenchmarkId::new("prost", n), &v2_bytes, |b, bytes| {
            b.iter(|| v2::Request::decode(black_box(bytes.as_slice())).map(|r| r.timeseries.len()))
        });
        group.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
