//! Routing cost per series: the series hash and the endpoints of its three replicas, on a ring of
//! seven endpoints, for hashmod, ketama, zone-aware ketama and a shuffle-sharded ring (its
//! tenant's subring cached, as in steady state). Series look like node_exporter's.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata_ring::{series_hash, Algorithm, HashringConfig, Ring, RingMetrics, RingOptions};

const SERIES: usize = 10_000;
const RF: u64 = 3;
const TENANT: &str = "team-a";

fn series() -> Vec<Vec<(String, String)>> {
    let modes = ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"];
    (0..SERIES)
        .map(|i| {
            vec![
                ("__name__".to_owned(), "node_cpu_seconds_total".to_owned()),
                ("cpu".to_owned(), (i % 64).to_string()),
                ("instance".to_owned(), format!("node-{}.example.org:9100", i / 512)),
                ("job".to_owned(), "node".to_owned()),
                ("mode".to_owned(), modes[i % modes.len()].to_owned()),
            ]
        })
        .collect()
}

fn ring(algorithm: &str, zones: bool, shard_size: i64) -> Ring {
    let json = serde_json::json!([{
        "algorithm": algorithm,
        "endpoints": (0..7).map(|i| if zones {
            serde_json::json!({"address": format!("receive-{i}:10901"), "az": format!("az-{}", i % 3)})
        } else {
            serde_json::json!(format!("receive-{i}:10901"))
        }).collect::<Vec<_>>(),
        "shuffle_sharding_config": {"shard_size": shard_size},
    }]);
    let configs: Vec<HashringConfig> = strata_ring::config::parse(json.to_string().as_bytes()).unwrap().unwrap();
    let options = RingOptions { algorithm: Algorithm::Hashmod, replication_factor: RF };
    Ring::new(&configs, options, &RingMetrics::default()).unwrap()
}

fn routing(c: &mut Criterion) {
    let series = series();
    let mut group = c.benchmark_group("route_series_rf3");
    group.throughput(Throughput::Elements(SERIES as u64));
    let rings = [
        ("hashmod", ring("hashmod", false, 0)),
        ("ketama", ring("ketama", false, 0)),
        ("ketama_3az", ring("ketama", true, 0)),
        ("shuffle_3az_shard3", ring("ketama", true, 3)),
    ];
    for (name, ring) in &rings {
        group.bench_with_input(BenchmarkId::from_parameter(name), ring, |b, ring| {
            b.iter(|| {
                let tenant = ring.tenant(TENANT).unwrap();
                let mut sum = 0usize;
                for labels in &series {
                    let hash = series_hash(TENANT, labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
                    for n in 0..RF {
                        sum += tenant.get_n(hash, n).unwrap().address.len();
                    }
                }
                black_box(sum)
            });
        });
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build_ring");
    group.sample_size(10);
    for (name, algorithm, zones) in [("ketama_7", "ketama", false), ("ketama_7_3az", "ketama", true)] {
        group.bench_function(name, |b| b.iter(|| black_box(ring(algorithm, zones, 0))));
    }
    group.finish();
}

criterion_group!(benches, routing, build);
criterion_main!(benches);
