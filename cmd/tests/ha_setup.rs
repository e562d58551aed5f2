//! The pull-based HA setup of Thanos's guides, with real components only: two Prometheus
//! replicas (3.x; in the second test Debian's 2.42) with external labels `cluster` and
//! `prometheus_replica`, scraping the same targets every 5 s; a `strata sidecar` beside each,
//! shipping to S3 (moto); `strata store` over the bucket; `strata compact` deduplicating the
//! replicas vertically (`--deduplication.replica-label=prometheus_replica`, penalty function);
//! and `strata query` deduplicating on `prometheus_replica`.
//!
//! Prometheus's test-only block duration flags are set to 2m (`--storage.tsdb.min-block-duration`
//! and `--storage.tsdb.max-block-duration`, equal as a sidecar requires) so that blocks are cut,
//! shipped and compacted while the test runs; everything else is as a user runs it.
//!
//! Replica `b` is stopped for ten minutes and started again. Its sidecar is not ready, saying
//! why, while it is down, and ready again after. Then, through a querier over both sidecars,
//! one over all three stores, and one over the store alone for the part shipped to the bucket
//! (once the compactor has merged the replicas' blocks there), every target has:
//! - no gap: `count_over_time(up[1m])` at 30 s steps is never 0 (one replica alone has ten
//!   minutes without a sample; a range query with Prometheus's 5 minute lookback shows a gap
//!   after five);
//! - no doubled samples: that count is never above 16 (12 scrapes a minute; both replicas' would
//!   be 24), and over the whole period the count is within 5% of one sample per scrape interval.
//!
//! Not exactly 12 a minute: where replica `b` stops, the penalty merge (Thanos's, which strata's
//! follows) takes the other replica's samples only a penalty of twice the last interval later,
//! and may skip a few more when the querier's overlap split has put that replica's next chunk
//! in the run the penalty holds back: up to about 45 s without a sample.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::corpus::{self, Answer};
use common::sidecar::{prometheus_args, prometheus_config, sidecar_args};
use common::strata_bin;
use strata_shipper::MetaFetcher;
use strata_testkit::http::get;
use strata_testkit::{peer, tool, wait_for, Fleet, Moto, Node};
use strata_tsdb::block::meta::BlockMeta;

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
/// The step of the range queries checked.
const STEP: i64 = 30 * SECOND;
/// Samples per target a minute may hold: 12 scrapes at 5 s, never none, never doubled (see the
/// module's comment).
const PER_MINUTE: std::ops::RangeInclusive<f64> = 1.0..=16.0;
const SCRAPE: i64 = 5 * SECOND;
const OUTAGE: Duration = Duration::from_secs(600);
const TARGETS: usize = 3;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The bucket's blocks, deletion-marked ones left out.
fn live_blocks(rt: &tokio::runtime::Runtime, bucket: &strata_shipper::Bucket) -> Result<Vec<BlockMeta>, String> {
    let fetched = rt.block_on(MetaFetcher::new(bucket.clone()).fetch()).map_err(|e| e.to_string())?;
    Ok(fetched.metas.into_values().filter(|m| !fetched.deletion_marks.contains_key(&m.ulid)).collect())
}

fn replica_of(m: &BlockMeta) -> Option<&str> {
    m.thanos.as_ref().and_then(|t| t.labels.get("prometheus_replica")).map(String::as_str)
}

/// Checks that `count_over_time(up[1m])` over `[from, to]` at 30 s steps, as `query` answers
/// it, has every target at every step with [`PER_MINUTE`] samples.
fn no_gaps_no_doubles(query: &Node, from: i64, to: i64) -> Result<(), String> {
    let (from, to) = (from.div_euclid(STEP) * STEP + STEP, to.div_euclid(STEP) * STEP);
    let path =
        corpus::Eval::Range { start: from, end: to, step: STEP }.path("count_over_time(up{job=\"targets\"}[1m])");
    let series = match corpus::ask(query.http(), &path)? {
        Answer::Data { series, .. } => series,
        Answer::Error { kind, message } => return Err(format!("{path}: {kind}: {message}")),
    };
    if series.len() != TARGETS {
        let names: Vec<&String> = series.iter().map(|(l, _)| l).collect();
        return Err(format!("{path}: {} series, {TARGETS} targets: {names:?}", series.len()));
    }
    let steps = ((to - from) / STEP + 1) as usize;
    for (labels, points) in &series {
        if labels.contains("prometheus_replica") {
            return Err(format!("{labels}: not deduplicated"));
        }
        if points.len() != steps {
            let times: Vec<i64> = points.iter().map(|(t, _)| *t as i64).collect();
            let missing: Vec<i64> =
                (0..steps as i64).map(|k| (from + k * STEP) / SECOND).filter(|t| !times.contains(t)).collect();
            return Err(format!("{labels}: {} of {steps} steps; missing (unix s) {missing:?}", points.len()));
        }
        if let Some((t, n)) = points.iter().find(|(_, n)| !PER_MINUTE.contains(n)) {
            return Err(format!(
                "{labels}: {n} samples in the minute before {t} (12 scrapes); each replica's samples in it: {}",
                raw_samples(query, labels, *t as i64 * SECOND)
            ));
        }
    }
    let period = to - from + MINUTE;
    let path = corpus::Eval::Instant { time: to }
        .path(&format!("count_over_time(up{{job=\"targets\"}}[{}s])", period / SECOND));
    let Answer::Data { series, .. } = corpus::ask(query.http(), &path)? else { return Err(format!("{path}: error")) };
    let expected = (period / SCRAPE) as f64;
    for (labels, points) in &series {
        let n = points.first().map_or(0.0, |p| p.1);
        if (n - expected).abs() > expected * 0.05 {
            return Err(format!("{labels}: {n} samples in {} s, {expected} scrapes", period / SECOND));
        }
    }
    Ok(())
}

/// The samples of `series` (a label set as JSON) of every replica in the minute before `t`, as
/// `query` answers without deduplication: what a failure is about.
fn raw_samples(query: &Node, series: &str, t: i64) -> String {
    let Ok(labels) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(series) else {
        return format!("(unreadable labels {series})");
    };
    let matchers: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let path =
        format!("{}&dedup=false", corpus::Eval::Instant { time: t }.path(&format!("up{{{}}}[1m]", matchers.join(","))));
    match strata_testkit::http::get_json(query.http(), &path) {
        Ok(json) => json["data"]["result"].to_string(),
        Err(e) => e,
    }
}

fn run(prometheus_bin: &Path, name: &str) {
    let work = tempfile::tempdir().unwrap();
    let moto = Moto::start(work.path());
    let objstore = moto.new_bucket("ha-pair");
    let bucket = strata_shipper::parse_objstore_config(&objstore, "objstore").unwrap().build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut fleet = Fleet::new(work.path());
    let objstore_flag = OsString::from(format!("--objstore.config={objstore}"));

    let store_slot = fleet.slot("store");
    let mut args: Vec<OsString> = vec!["store".into(), objstore_flag.clone(), "--data-dir".into()];
    args.push(store_slot.data_dir.clone().into());
    args.extend(["--http-address", &store_slot.http, "--grpc-address", &store_slot.grpc].map(OsString::from));
    args.extend(["--sync-block-duration=10s", "--ignore-deletion-marks-delay=0s"].map(OsString::from));
    let store = Node::start(strata_bin(), &store_slot, args);

    let compact_slot = fleet.slot("compact");
    let mut args: Vec<OsString> = vec!["compact".into(), objstore_flag.clone(), "--data-dir".into()];
    args.push(compact_slot.data_dir.clone().into());
    args.push(format!("--http-address={}", compact_slot.http).into());
    args.extend(
        [
            "--wait",
            "--wait-interval=15s",
            "--consistency-delay=0s",
            "--delete-delay=30s",
            "--deduplication.replica-label=prometheus_replica",
            "--deduplication.func=penalty",
        ]
        .map(OsString::from),
    );
    let compact = Node::start(strata_bin(), &compact_slot, args);

    let prom_slots = [fleet.slot("prometheus-a"), fleet.slot("prometheus-b")];
    let sidecar_slots = [fleet.slot("sidecar-a"), fleet.slot("sidecar-b")];
    let query = |fleet: &mut Fleet, slot: &str, endpoints: &[&str]| {
        let slot = fleet.slot(slot);
        let mut args = slot.query_args(endpoints);
        args.push("--query.replica-label=prometheus_replica".into());
        Node::start(strata_bin(), &slot, args)
    };
    let sidecars_query = query(&mut fleet, "query-sidecars", &[&sidecar_slots[0].grpc, &sidecar_slots[1].grpc]);
    let store_query = query(&mut fleet, "query-store", &[&store_slot.grpc]);
    let all_query = query(&mut fleet, "query-all", &[&sidecar_slots[0].grpc, &sidecar_slots[1].grpc, &store_slot.grpc]);

    // Both replicas scrape the same targets: three of the fleet's processes.
    let targets = [store.http(), compact.http(), all_query.http()];
    let config =
        |replica: &str| prometheus_config("5s", &targets, &[("cluster", "ha"), ("prometheus_replica", replica)]);
    let start_prometheus = |i: usize| {
        let replica = ["a", "b"][i];
        Node::start(prometheus_bin, &prom_slots[i], prometheus_args(&prom_slots[i], &config(replica), "2m"))
    };
    let mut prometheus: Vec<Option<Node>> = (0..2).map(|i| Some(start_prometheus(i))).collect();
    let sidecars: Vec<Node> = (0..2)
        .map(|i| {
            Node::start(
                strata_bin(),
                &sidecar_slots[i],
                sidecar_args(&sidecar_slots[i], &prom_slots[i], Some(&objstore)),
            )
        })
        .collect();
    let started = now_ms();

    // Both replicas cut and ship blocks before one of them goes away.
    wait_for(&format!("{name}: both replicas ship a block"), Duration::from_secs(420), || {
        let blocks = live_blocks(&rt, &bucket)?;
        let shipped = |r: &str| blocks.iter().any(|m| replica_of(m) == Some(r));
        (shipped("a") && shipped("b")).then_some(()).ok_or(format!("{} blocks", blocks.len()))
    })
    .unwrap();

    let outage = Instant::now();
    let stopped_at = now_ms();
    let b = prometheus[1].take().unwrap();
    assert!(b.proc.terminate(Duration::from_secs(60)).success(), "{name}: Prometheus b did not stop cleanly");
    // While b is down its sidecar says so and the view goes on through a.
    wait_for(&format!("{name}: sidecar b not ready"), Duration::from_secs(60), || {
        let (status, body) = get(sidecars[1].http(), "/-/ready")?;
        (status == 503 && body.to_lowercase().contains("prometheus")).then_some(()).ok_or(format!("{status} {body}"))
    })
    .unwrap();
    let now = corpus::Eval::Instant { time: now_ms() }.path("up{job=\"targets\"}");
    match corpus::ask(all_query.http(), &now) {
        Ok(Answer::Data { series, .. }) if series.len() == TARGETS => {}
        other => panic!("{name}: with b down, {now} answers {other:?}"),
    }
    // The outage itself: ten minutes of wall time, not a wait for something to happen.
    std::thread::sleep(OUTAGE.saturating_sub(outage.elapsed()));
    let restarted_at = now_ms();
    prometheus[1] = Some(start_prometheus(1));
    wait_for(&format!("{name}: sidecar b ready again"), Duration::from_secs(120), || {
        let (status, body) = get(sidecars[1].http(), "/-/ready")?;
        (status == 200).then_some(()).ok_or(format!("{status} {body}"))
    })
    .unwrap();

    // The bucket holds a's blocks past the outage, b's from before and after it, and blocks the
    // compactor merged from both replicas.
    let shipped_until =
        wait_for(&format!("{name}: blocks past the outage shipped and compacted"), Duration::from_secs(480), || {
            let blocks = live_blocks(&rt, &bucket)?;
            let until = |r: &str| blocks.iter().filter(|m| replica_of(m) == Some(r)).map(|m| m.max_time).max();
            let merged = blocks.iter().any(|m| {
                m.compaction.level >= 2
                    && replica_of(m).is_none()
                    && m.compaction.sources.len() >= 2
                    && m.min_time < stopped_at
            });
            let covered = blocks.iter().map(|m| m.max_time).max().unwrap_or(0);
            match (
                until("a").unwrap_or(0).max(covered) > restarted_at + MINUTE,
                until("b").unwrap_or(0) > restarted_at,
                merged,
            ) {
                (true, true, true) => Ok(covered),
                state => Err(format!("past the outage (a, b), merged: {state:?}; {} blocks", blocks.len())),
            }
        })
        .unwrap();
    // A minute of scrapes before the first step.
    let first = started + 2 * MINUTE;
    let last = now_ms() - 15 * SECOND;
    eprintln!(
        "{name}: scraping from {first}, b down {stopped_at}..{restarted_at}, bucket up to {shipped_until}, now {last}"
    );

    for (what, querier, to) in [
        ("over both sidecars", &sidecars_query, last),
        ("over the sidecars and the store", &all_query, last),
        ("over the store alone", &store_query, shipped_until - 5 * SECOND),
    ] {
        // A querier learns the stores' time ranges from their Info, polled every few seconds.
        wait_for(&format!("{name}: {what}: no gaps, no doubled samples"), Duration::from_secs(60), || {
            no_gaps_no_doubles(querier, first, to)
        })
        .unwrap();
    }
    for mut node in sidecars.into_iter().chain([compact, store]) {
        node.proc.assert_running();
    }
    let out = std::process::Command::new(peer("thanos"))
        .args(["tools", "bucket", "verify"])
        .arg(&objstore_flag)
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: thanos tools bucket verify: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn ha_pair_of_prometheus_3_with_a_ten_minute_outage() {
    run(&peer("prometheus"), "Prometheus 3.x");
}

#[test]
fn ha_pair_of_prometheus_2_42_with_a_ten_minute_outage() {
    run(&tool("prometheus"), "Prometheus 2.42");
}
