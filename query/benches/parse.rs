//! Parsing PromQL: `strata_query::parse::parse` (the error locator, then promql-parser's tree)
//! against promql-parser alone, on queries as dashboards send them.
//!
//! `cargo bench -p strata-query --bench parse`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const QUERIES: &[(&str, &str)] = &[
    ("selector", r#"up{job="prometheus"}"#),
    ("rate", "sum by (job) (rate(http_requests_total[5m]))"),
    (
        "histogram_quantile",
        r#"histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket{job=~"api|web", code!~"5.."}[5m])))"#,
    ),
    (
        "binary",
        r#"(sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m])) / on (instance) group_left count by (instance) (node_cpu_seconds_total{mode="idle"})) * 100 > bool 80"#,
    ),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, query) in QUERIES {
        group.bench_with_input(BenchmarkId::new("strata", name), query, |b, q| {
            b.iter(|| strata_query::parse::parse(q).expect("valid query"))
        });
        group.bench_with_input(BenchmarkId::new("promql-parser", name), query, |b, q| {
            b.iter(|| promql_parser::parser::parse(q).expect("valid query"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
