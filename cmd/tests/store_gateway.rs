//! The store gateway end to end, against a real S3 server (moto) and the real Thanos:
//! - the bucket holds the corpus (tests/common/corpus.rs) in blocks shipped by the strata
//!   shipper (written with `BlockWriter`, external label `source="strata"`) and blocks made by
//!   `promtool tsdb create-blocks-from openmetrics`, shipped with a Thanos meta section
//!   (`source="promtool"`); series with NaN samples (stale markers among them, which
//!   OpenMetrics cannot carry) are in strata's blocks, the others alternate;
//! - `thanos store` and `strata store` serve the same bucket; `thanos query` over each answers
//!   a slice of the corpus the same, and so does `strata query` over each (reading across:
//!   Thanos's querier over strata's store, strata's querier over Thanos's store);
//! - a block shipped, blocks deleted and a block marked for deletion while everything runs are
//!   picked up by both stores at their next sync, without a restart.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use common::blocks::{cross_read_fleet, ship, write_block, CrossReadFleet, Series};
use common::corpus;
use strata_testkit::metrics::metric_sum;
use strata_testkit::promtool::{create_blocks, om_timestamp};
use strata_testkit::{peer, wait_for, CacheServer, Fleet, Moto};
use strata_tsdb::Labels;

const BUCKET: &str = "gateway";
/// Every this many corpus queries is asked (a slice keeps the test short).
const EVERY_NTH_QUERY: usize = 8;

/// `series` in OpenMetrics text, each family's samples together.
fn openmetrics(series: &[Series]) -> String {
    let mut families: BTreeMap<String, Vec<&Series>> = BTreeMap::new();
    for s in series {
        families.entry(s.0.get("__name__").unwrap_or_default().to_owned()).or_default().push(s);
    }
    let mut out = String::new();
    for (name, members) in families {
        for (labels, samples) in members {
            let pairs: Vec<String> = labels
                .iter()
                .filter(|(n, _)| *n != "__name__")
                .map(|(n, v)| format!("{n}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
                .collect();
            let set = if pairs.is_empty() { String::new() } else { format!("{{{}}}", pairs.join(",")) };
            for &(t, v) in samples {
                let value = match v {
                    v if v.is_nan() => "NaN".to_owned(),
                    f64::INFINITY => "+Inf".to_owned(),
                    f64::NEG_INFINITY => "-Inf".to_owned(),
                    v => format!("{v:?}"),
                };
                writeln!(out, "{name}{set} {value} {}", om_timestamp(t)).expect("write to a string");
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Waits until the querier at `addr` answers `query` at `t` with the single value `n` (or with
/// no series for 0).
fn wait_for_value(addr: &str, query: &str, t: i64, n: f64) {
    let path = corpus::Eval::Instant { time: t }.path(query);
    wait_for(&format!("{addr} to answer {query} = {n}"), Duration::from_secs(60), || match corpus::ask(addr, &path) {
        Ok(corpus::Answer::Data { series, .. }) if series.len() == 1 && series[0].1[0].1 == n => Ok(()),
        Ok(corpus::Answer::Data { series, .. }) if series.is_empty() && n == 0.0 => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn strata_store_and_thanos_store_answer_the_same() {
    let (sections, _) = corpus::load("known_differences.md");
    let sections: Vec<corpus::Section> = sections
        .into_iter()
        .map(|s| corpus::Section {
            queries: s.queries.into_iter().step_by(EVERY_NTH_QUERY).collect(),
            name: s.name,
            on_grid: s.on_grid,
        })
        .collect();
    let work = tempfile::tempdir().expect("temp dir");
    let moto = Moto::start(work.path());
    let yaml = moto.new_bucket(BUCKET);
    let config_file = work.path().join("objstore.yml");
    std::fs::write(&config_file, &yaml).expect("write objstore config");
    let bucket = strata_shipper::parse_objstore_config(&yaml, "objstore.yml").expect("config").build().expect("bucket");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");

    // The corpus, split between strata's blocks and promtool's.
    let t0 = corpus::data_start();
    let data = corpus::generate();
    let (mut ours, mut promtools) = (Vec::new(), Vec::new());
    for (i, (labels, samples)) in data.iter().enumerate() {
        let series = (Labels::from_pairs(labels), samples.iter().map(|&(t, v)| (t0 + t, v)).collect::<Vec<_>>());
        if samples.iter().any(|s| s.1.is_nan()) || i % 2 == 0 {
            ours.push(series);
        } else {
            promtools.push(series);
        }
    }
    let strata_dir = work.path().join("strata-blocks");
    std::fs::create_dir_all(&strata_dir).expect("blocks dir");
    write_block(&strata_dir, &ours).expect("write block");
    ship(&rt, &bucket, &strata_dir, &[("source", "strata")]).expect("ship");
    let promtool_dir = work.path().join("promtool-blocks");
    create_blocks(&openmetrics(&promtools), &promtool_dir);
    ship(&rt, &bucket, &promtool_dir, &[("source", "promtool")]).expect("ship");

    let mut fleet = Fleet::new(work.path());
    let thanos = peer("thanos");
    // Both stores keep their index caches in one memcached, from the same Thanos YAML.
    let memcached = CacheServer::memcached(work.path());
    let index_cache = format!("--index-cache.config=type: MEMCACHED\nconfig:\n  addresses: [\"{}\"]\n", memcached.addr);
    let CrossReadFleet { stores, queriers } = cross_read_fleet(
        &mut fleet,
        &thanos,
        &config_file,
        &["--sync-block-duration=2s", "--ignore-deletion-marks-delay=0s", &index_cache],
        &["--enable-feature=promql-experimental-functions"],
    );
    let everything = r#"count(last_over_time({__name__=~"diff_.+"}[3h]))"#;
    for (_, node) in &queriers {
        wait_for_value(node.http(), everything, t0 + corpus::SPAN + corpus::MINUTE, data.len() as f64);
    }

    let samples: usize = data.iter().map(|s| s.1.len()).sum();
    let addr = |i: usize| queriers[i].1.http();
    let thanos_names = (queriers[1].0, queriers[0].0);
    let strata_names = (queriers[2].0, queriers[3].0);
    let [thanos_run, strata_run] = std::thread::scope(|s| {
        [
            s.spawn(|| corpus::run(&sections, t0, addr(1), addr(0), thanos_names)),
            s.spawn(|| corpus::run(&sections, t0, addr(2), addr(3), strata_names)),
        ]
        .map(|h| h.join().expect("corpus run"))
    });
    let none = BTreeMap::new();
    corpus::report(thanos_names, &sections, &none, &thanos_run, data.len(), samples, t0);
    corpus::report(strata_names, &sections, &none, &strata_run, data.len(), samples, t0);
    let (_, metrics) = strata_testkit::http::get(stores[0].http(), "/metrics").expect("strata store metrics");
    let hits = metric_sum(&metrics, "thanos_store_index_cache_hits_total").unwrap_or(0.0);
    assert!(hits > 0.0, "the corpus's repeated selections got no index cache hit from memcached");

    // A block shipped while running appears; deleted blocks disappear.
    let at = t0 + corpus::SPAN / 2;
    let added_dir = work.path().join("added-blocks");
    std::fs::create_dir_all(&added_dir).expect("blocks dir");
    let added = Labels::from_pairs(&[("__name__", "gateway_added"), ("instance", "x")]);
    write_block(&added_dir, &[(added, (0..60).map(|i| (at - i * 15_000, i as f64)).rev().collect())])
        .expect("write block");
    ship(&rt, &bucket, &added_dir, &[("source", "added")]).expect("ship");
    // A selection by external labels alone is refused (Thanos's stores want a matcher on the
    // series' own labels).
    let promtool_count = r#"count(last_over_time({__name__=~"diff_.+", source="promtool"}[3h]))"#;
    for (_, node) in &queriers {
        wait_for_value(node.http(), "count(gateway_added)", at, 1.0);
        wait_for_value(node.http(), promtool_count, t0 + corpus::SPAN + corpus::MINUTE, promtools.len() as f64);
    }
    for dir in strata_testkit::promtool::block_dirs(&promtool_dir) {
        let id = dir.file_name().and_then(|n| n.to_str()).expect("block name").to_owned();
        rt.block_on(async {
            // meta.json first, as Thanos's compactor deletes: the block is then a partial
            // upload, which no store loads.
            bucket.delete(&format!("{id}/meta.json")).await.expect("delete meta.json");
            for o in bucket.list_recursive(&id).await.expect("list block") {
                bucket.delete(o.location.as_ref()).await.expect("delete object");
            }
        });
    }
    for (_, node) in &queriers {
        wait_for_value(node.http(), promtool_count, t0 + corpus::SPAN + corpus::MINUTE, 0.0);
        wait_for_value(node.http(), "count(gateway_added)", at, 1.0);
    }
    // Marked for deletion (both stores run with --ignore-deletion-marks-delay=0s): dropped.
    let added_id = strata_testkit::promtool::block_dirs(&added_dir)
        .first()
        .and_then(|d| d.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .expect("the added block");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let mark = format!(r#"{{"id":"{added_id}","version":1,"deletion_time":{now}}}"#);
    rt.block_on(bucket.put_bytes(&format!("{added_id}/deletion-mark.json"), mark.into())).expect("mark");
    for (_, node) in &queriers {
        wait_for_value(node.http(), "count(gateway_added)", at, 0.0);
    }
    drop(queriers);
    drop(moto);
}
