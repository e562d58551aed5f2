//! Interoperability with real Prometheus tools (Debian's `prometheus` package):
//! - `promtool tsdb dump` replays a WAL (segments and a checkpoint) that we wrote, and prints
//!   every sample we wrote, minus those our tombstones delete;
//! - a real Prometheus server scrapes itself into a WAL, and our replay reads all of it.
//!
//! These tests fail (never skip) when the binaries are not on PATH.

mod wal_common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_testkit::promtool::{path_arg, promtool_output};
use strata_testkit::{http, tool, wait_for, Fleet, Node};

use strata_tsdb::wal::{self, record, Record, RefSample, RefSeries, WalOptions, PAGE_SIZE};
use strata_tsdb::Labels;
use wal_common::*;

/// Prometheus's `labels.String()` for plain ASCII values (no escaping needed in this test).
fn prom_string(l: &Labels) -> String {
    let inner: Vec<String> = l.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[test]
fn promtool_dump_reads_our_wal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wal_dir = tmp.path().join("wal");
    let w = wal::Wal::open(&wal_dir, WalOptions { segment_size: PAGE_SIZE, compress: true }).expect("open");

    let base: i64 = 1_700_000_000_000;
    let step: i64 = 15_000;
    // Random letters: even compressed, this label value fills more than a page.
    let long_value: String = noise(80_000, 42).iter().map(|b| char::from(b'a' + b % 26)).collect();
    let mut series: Vec<RefSeries> = (1..=40u64)
        .map(|r| RefSeries {
            series_ref: r,
            labels: Labels::from_pairs(&[
                ("__name__", if r % 3 == 0 { "strata_wal_gauge" } else { "strata_wal_total" }),
                ("instance", &format!("host-{r}")),
                ("job", "interop"),
            ]),
        })
        .collect();
    // A label set larger than a page: its series record spans several fragments.
    series.push(RefSeries {
        series_ref: 41,
        labels: Labels::from_pairs(&[("__name__", "strata_wal_long"), ("v", &long_value)]),
    });
    let value = |r: u64, i: i64| -> f64 {
        match r % 5 {
            0 => (i as f64) * 0.25,
            1 => -(r as f64) * 1e10,
            2 => 1.5e-7 * i as f64,
            3 => (r * 1000 + i as u64) as f64,
            _ => 123456.0 + i as f64,
        }
    };
    let mut written: Vec<(String, i64, f64)> = Vec::new();
    let by_ref: HashMap<u64, String> = series.iter().map(|s| (s.series_ref, prom_string(&s.labels))).collect();
    let mut buf = Vec::new();

    // First half: series 1..=20 and 41, samples, then a checkpoint folds it in.
    let first: Vec<RefSeries> = series.iter().filter(|s| s.series_ref <= 20 || s.series_ref == 41).cloned().collect();
    record::encode_series(&first, &mut buf);
    w.log(&[&buf]).expect("log series");
    let mut md = Vec::new();
    record::encode_metadata(
        &[wal::RefMetadata { series_ref: 1, metric_type: 1, unit: "bytes".into(), help: "Bytes.".into() }],
        &mut md,
    );
    w.log(&[&md]).expect("log metadata");
    let log_samples = |refs: &[u64], range: std::ops::Range<i64>, written: &mut Vec<(String, i64, f64)>| {
        for i in range {
            let samples: Vec<RefSample> =
                refs.iter().map(|&r| RefSample { series_ref: r, t: base + i * step, v: value(r, i) }).collect();
            let mut b = Vec::new();
            record::encode_samples(&samples, &mut b);
            w.log(&[&b]).expect("log samples");
            written.extend(samples.iter().map(|s| (by_ref[&s.series_ref].clone(), s.t, s.v)));
        }
    };
    let refs_a: Vec<u64> = (1..=20).chain([41]).collect();
    log_samples(&refs_a, 0..60, &mut written);
    let last = w.next_segment().expect("next segment");
    assert!(last >= 2, "the checkpointed part spans several segments");
    w.checkpoint(0, last - 1, |_| true, i64::MIN).expect("checkpoint");
    w.truncate(last).expect("truncate");
    let cp_segment =
        std::fs::read(wal_dir.join(format!("checkpoint.{:08}/00000000", last - 1))).expect("checkpoint segment");
    let frags = fragments(&cp_segment);
    assert!(frags.iter().any(|f| f.kind == 2 && f.compressed), "the checkpoint holds a compressed multi-page record");

    // Second half: the other series appear, everybody gets more samples.
    buf.clear();
    let second: Vec<RefSeries> = series.iter().filter(|s| s.series_ref > 20 && s.series_ref != 41).cloned().collect();
    record::encode_series(&second, &mut buf);
    w.log(&[&buf]).expect("log series");
    let refs_all: Vec<u64> = (1..=41).collect();
    log_samples(&refs_all, 60..120, &mut written);
    // A staleness marker ends series 2.
    let stale = RefSample { series_ref: 2, t: base + 120 * step, v: f64::from_bits(0x7ff0_0000_0000_0002) };
    buf.clear();
    record::encode_samples(&[stale], &mut buf);
    w.log(&[&buf]).expect("log stale marker");
    written.push((by_ref[&2].clone(), stale.t, stale.v));
    // Delete samples 0..=9 of series 3 (they sit in the checkpoint).
    buf.clear();
    record::encode_tombstones(&[wal::RefTombstone { series_ref: 3, mint: base, maxt: base + 9 * step }], &mut buf);
    w.log(&[&buf]).expect("log tombstone");
    w.close().expect("close");
    assert!(wal_dir.join(format!("checkpoint.{:08}", last - 1)).is_dir());
    let deleted = |l: &str, t: i64| *l == by_ref[&3] && t <= base + 9 * step;
    let want: BTreeSet<(String, i64, u64)> = written
        .iter()
        .filter(|(l, t, _)| !deleted(l, *t))
        .map(|(l, t, v)| (l.clone(), *t, if v.is_nan() { u64::MAX } else { v.to_bits() }))
        .collect();

    let out = promtool_output(&["tsdb", "dump", path_arg(tmp.path())]);
    let (stdout, stderr) = (out.stdout, out.stderr);
    assert!(out.status.success(), "promtool failed: {}\n{stderr}", out.status);
    let mut got = BTreeSet::new();
    let mut lines = 0;
    for line in stdout.lines() {
        // `{labels} value timestamp`: the label set may contain spaces, the last two fields do not.
        let mut parts = line.rsplitn(3, ' ');
        let (Some(ts), Some(v), Some(labels)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("unexpected promtool line {line:?}");
        };
        let t: i64 = ts.parse().unwrap_or_else(|e| panic!("timestamp in {line:?}: {e}"));
        let v: f64 = v.parse().unwrap_or_else(|e| panic!("value in {line:?}: {e}"));
        got.insert((labels.to_string(), t, if v.is_nan() { u64::MAX } else { v.to_bits() }));
        lines += 1;
    }
    assert_eq!(lines, got.len(), "promtool printed a sample twice");
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}\nunexpected {extra:?}\nstderr: {stderr}");
    assert_eq!(got.len(), 21 * 60 + 41 * 60 + 1 - 10);
}

/// Runs Prometheus scraping itself into its data dir until at least 4 scrapes are in its head,
/// then stops it: SIGTERM (a clean shutdown) or SIGKILL (a crash). Returns its WAL directory
/// and its HTTP address.
fn run_prometheus(tmp: &Path, graceful: bool) -> (PathBuf, String) {
    let slot = Fleet::new(tmp).slot("prometheus");
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['{}']\n",
        slot.http
    );
    let prometheus = Node::start(&tool("prometheus"), &slot, slot.prometheus_args(&config));
    let scraped = wait_for("prometheus to scrape itself 4 times", Duration::from_secs(60), || {
        let (status, body) = http::get(&slot.http, "/api/v1/query?query=count_over_time(up%5B5m%5D)")?;
        let scrapes = body
            .split("\"value\":[")
            .nth(1)
            .and_then(|v| v.split('"').nth(1).and_then(|n| n.parse::<u32>().ok()))
            .unwrap_or_default();
        if status == 200 && scrapes >= 4 {
            Ok(())
        } else {
            Err(format!("status {status}: {body}"))
        }
    });
    if let Err(e) = scraped {
        panic!("{e}\n{}", prometheus.proc.log_tail());
    }
    if graceful {
        prometheus.proc.terminate(Duration::from_secs(30));
    } else {
        prometheus.proc.kill();
    }
    (slot.data_dir.join("wal"), slot.http)
}

/// What our replay found in a Prometheus WAL.
struct Found {
    series: BTreeMap<u64, Labels>,
    samples: u64,
    up_values: Vec<f64>,
    stats: wal::ReplayStats,
}

/// Replays `wal_dir`, checking every sample refers to a series logged before it.
fn replay_prometheus_wal(wal_dir: &Path) -> Found {
    assert!(!segments(wal_dir).is_empty(), "prometheus wrote no WAL segment");
    let mut series: BTreeMap<u64, Labels> = BTreeMap::new();
    let mut samples = 0u64;
    let mut up_values = Vec::new();
    let stats = wal::replay(wal_dir, |r| {
        match r {
            Record::Series(s) => {
                for s in s {
                    assert!(s.labels.get("__name__").is_some(), "series without a name: {:?}", s.labels);
                    series.insert(s.series_ref, s.labels);
                }
            }
            Record::Samples(s) => {
                for x in s {
                    let l = series.get(&x.series_ref);
                    assert!(l.is_some(), "sample for unknown series ref {}", x.series_ref);
                    if l.and_then(|l| l.get("__name__")) == Some("up") {
                        up_values.push(x.v);
                    }
                    samples += 1;
                }
            }
            Record::Metadata(_) | Record::Tombstones(_) | Record::Unsupported(_) => {}
        }
        Ok(())
    })
    .expect("replay prometheus's WAL");
    Found { series, samples, up_values, stats }
}

#[test]
fn we_replay_a_wal_written_by_prometheus() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (wal_dir, instance) = run_prometheus(tmp.path(), true);
    let f = replay_prometheus_wal(&wal_dir);
    assert_eq!(f.stats.corruptions_repaired, 0, "{:?}", f.stats);
    assert!(f.series.len() > 100, "only {} series", f.series.len());
    assert!(f.samples >= 2 * f.series.len() as u64, "only {} samples for {} series", f.samples, f.series.len());
    assert!(f.up_values.len() >= 4 && f.up_values.iter().all(|&v| v == 1.0), "up: {:?}", f.up_values);
    assert!(f.series.values().any(|l| l.get("job") == Some("self") && l.get("instance") == Some(instance.as_str())));
    eprintln!(
        "prometheus WAL: {} segments, {} series, {} samples, {} unsupported records",
        f.stats.segments,
        f.series.len(),
        f.samples,
        f.stats.unsupported_records
    );
}

#[test]
fn we_replay_the_wal_of_a_killed_prometheus_and_can_append_to_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (wal_dir, _) = run_prometheus(tmp.path(), false);
    let f = replay_prometheus_wal(&wal_dir);
    assert!(f.series.len() > 100 && f.up_values.len() >= 3, "{} series, up: {:?}", f.series.len(), f.up_values);
    // Whatever the kill left, the WAL is whole again: appending and replaying finds no damage.
    let w = wal::Wal::open(&wal_dir, WalOptions::default()).expect("open");
    let mut buf = Vec::new();
    let up_ref = f.series.iter().find(|(_, l)| l.get("__name__") == Some("up")).map(|(r, _)| *r).expect("up series");
    record::encode_samples(&[RefSample { series_ref: up_ref, t: i64::MAX, v: 0.0 }], &mut buf);
    w.log(&[&buf]).expect("log");
    w.close().expect("close");
    let again = replay_prometheus_wal(&wal_dir);
    assert_eq!(again.stats.corruptions_repaired, 0);
    assert_eq!(again.samples, f.samples + 1);
}
