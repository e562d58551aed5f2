//! Downsampled data against the real Thanos: a FILESYSTEM bucket with one raw block of 10.5
//! days (counters with resets, gauges; one sample a minute) is compacted and downsampled by the
//! real `thanos compact` (interop/bin/thanos) into 5m and 1h blocks; then a raw block of the 6
//! hours after it is added, which reads of 5m and 1h data fill their gap with. `strata query` over
//! `strata store`, and across (`thanos query` over `strata store`, `strata query` over
//! `thanos store`), must answer range queries (plain selectors, rate, increase, irate, resets,
//! the *_over_time functions, sum by) with `max_source_resolution=5m`, `1h` and `auto` (a fifth
//! of the step) as `thanos query` over `thanos store` on that bucket does. Its answers must
//! differ from its raw ones somewhere (else no downsampled data was read).

mod common;

use std::time::Duration;

use common::blocks::{
    cross_read_fleet, fs_bucket, resolutions, ship, thanos_compact_once, write_block, CrossReadFleet, FsBucket, Rng,
    Series,
};
use common::corpus;
use strata_testkit::{peer, wait_for, Fleet};
use strata_tsdb::Labels;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// 2026-01-01T00:00:00Z: aligned to every resolution's windows.
const T0: i64 = 1_767_225_600_000;
/// Long enough for Thanos to downsample raw data (40h) and 5m data (10 days).
const SPAN: i64 = 252 * HOUR;
/// Raw data after the downsampled span, shipped after the compactor ran: a read of 5m or 1h
/// data fills this gap with raw blocks.
const TAIL: i64 = 6 * HOUR;

const QUERIES: [&str; 15] = [
    "ds_requests_total",
    "ds_temperature",
    "rate(ds_requests_total[2h])",
    "rate(ds_requests_total[30m])",
    "increase(ds_requests_total[3h])",
    "irate(ds_requests_total[3h])",
    "resets(ds_requests_total[6h])",
    "sum by (job) (rate(ds_requests_total[2h]))",
    "sum by (job) (ds_requests_total)",
    "max_over_time(ds_temperature[3h])",
    "min_over_time(ds_temperature[3h])",
    "sum_over_time(ds_temperature[3h])",
    "count_over_time(ds_temperature[3h])",
    "avg_over_time(ds_temperature[3h])",
    "delta(ds_temperature[4h])",
];

/// Three counters (with resets at irregular times) and two gauges, one sample a minute, over
/// the span and its tail.
fn data() -> Vec<Series> {
    let mut rng = Rng(0x5eed_d0d0_cafe_f00d);
    let minutes = (SPAN + TAIL) / MINUTE;
    let mut out = Vec::new();
    for (job, instance) in [("api", "a"), ("api", "b"), ("web", "c")] {
        let labels = Labels::from_pairs(&[("__name__", "ds_requests_total"), ("instance", instance), ("job", job)]);
        let mut v = 0.0;
        let samples = (0..minutes)
            .map(|i| {
                if rng.next().is_multiple_of(2000) {
                    v = 0.0;
                }
                v += (rng.next() % 100) as f64;
                (T0 + i * MINUTE, v)
            })
            .collect();
        out.push((labels, samples));
    }
    for (room, base) in [("hall", 19.25), ("lab", 21.5)] {
        let labels = Labels::from_pairs(&[("__name__", "ds_temperature"), ("room", room)]);
        let samples = (0..minutes)
            .map(|i| {
                let noise = (rng.next() % 1000) as f64 / 250.0;
                (T0 + i * MINUTE, base + 3.0 * ((i as f64) / 240.0).sin() + noise)
            })
            .collect();
        out.push((labels, samples));
    }
    out
}

/// Splits every series' samples at `t`: those before, those at or after.
fn split_at(series: Vec<Series>, t: i64) -> (Vec<Series>, Vec<Series>) {
    series
        .into_iter()
        .map(|(labels, samples)| {
            let (before, after) = samples.into_iter().partition(|s| s.0 < t);
            ((labels.clone(), before), (labels, after))
        })
        .unzip()
}

#[test]
fn strata_and_thanos_answer_downsampled_queries_the_same() {
    let FsBucket { work, root, config_file, bucket, rt } = fs_bucket();

    let (span, tail) = split_at(data(), T0 + SPAN);
    let raw_dir = work.path().join("raw-blocks");
    std::fs::create_dir_all(&raw_dir).expect("blocks dir");
    write_block(&raw_dir, &span).expect("write block");
    ship(&rt, &bucket, &raw_dir, &[("cluster", "ds")]).expect("ship");

    // One compactor run downsamples raw to 5m, then 5m to 1h.
    let thanos = peer("thanos");
    let log = thanos_compact_once(work.path(), &config_file, &[]);
    assert_eq!(resolutions(&root).unwrap(), [0, 300_000, 3_600_000], "blocks after thanos compact\n{log}");
    let tail_dir = work.path().join("tail-blocks");
    std::fs::create_dir_all(&tail_dir).expect("blocks dir");
    write_block(&tail_dir, &tail).expect("write block");
    ship(&rt, &bucket, &tail_dir, &[("cluster", "ds")]).expect("ship");

    let mut fleet = Fleet::new(work.path());
    let CrossReadFleet { stores: _stores, queriers } = cross_read_fleet(&mut fleet, &thanos, &config_file, &[], &[]);

    // Range queries over the whole span and the tail, a step of 1h off the window edges.
    let eval = corpus::Eval::Range { start: T0 + 3 * HOUR + 7 * MINUTE, end: T0 + SPAN + TAIL, step: HOUR };
    let count = "count(ds_temperature)";
    for (_, node) in &queriers {
        let path = corpus::Eval::Instant { time: T0 + SPAN + TAIL / 2 }.path(count);
        wait_for(&format!("{} to see the blocks", node.http()), Duration::from_secs(60), || {
            match corpus::ask(node.http(), &path) {
                Ok(corpus::Answer::Data { series, .. }) if series.len() == 1 && series[0].1[0].1 == 2.0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }

    let (reference_name, reference) = (queriers[0].0, queriers[0].1.http());
    let mut failures = Vec::new();
    let mut downsampled_differs = [false; 3];
    for query in QUERIES {
        let raw_path = format!("{}&max_source_resolution=0s", eval.path(query));
        let raw = corpus::ask(reference, &raw_path).expect("thanos raw answer");
        // `auto` is a fifth of the step: 12m, so 5m data.
        for (r, resolution) in ["5m", "1h", "auto"].into_iter().enumerate() {
            let path = format!("{}&max_source_resolution={resolution}", eval.path(query));
            let theirs = corpus::ask(reference, &path).expect("thanos answer");
            match &theirs {
                corpus::Answer::Data { series, .. } if !series.is_empty() => {}
                other => panic!("{query} at {resolution}: thanos answered nothing: {other:?}"),
            }
            if corpus::compare(&theirs, &raw, false, (reference_name, "raw")).is_some() {
                downsampled_differs[r] = true;
            }
            for (name, node) in &queriers[1..] {
                let ours = corpus::ask(node.http(), &path).unwrap_or_else(|e| panic!("{name}: {e}"));
                if let Some(diff) = corpus::compare(&ours, &theirs, false, (name, reference_name)) {
                    failures.push(format!("{query} at max_source_resolution={resolution}: {diff}"));
                }
            }
        }
    }
    let asked = 3 * QUERIES.len() * (queriers.len() - 1);
    assert!(failures.is_empty(), "{} of {asked} answers differ:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(downsampled_differs, [true; 3], "5m, 1h and auto answers must come from downsampled blocks");
}
