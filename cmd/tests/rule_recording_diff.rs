//! Recording rules evaluated by `strata rule` (against `strata standalone`) and by Prometheus
//! 3.x (over the same data, remote-written to it) from the same rule file: both record the same
//! series, and every point either recorded equals, to 1e-9 relative, what the other system's
//! PromQL gives for the rule's expression at that point's time (the two schedules are offset
//! differently, so points are compared at the times each evaluated).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{range_samples, remote_write, strata_bin, with_labels, LabelSet, PROMQL_FEATURES, STANDALONE_LABELS};
use strata_proto::prometheus as v1;
use strata_testkit::http::get_json;
use strata_testkit::{peer, url_encode, wait_for, Fleet, Node};

/// A recording rule: its name, expression and static labels.
type Rule = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

const RULES: &[Rule] = &[
    ("rd:requests:rate5m", "sum by (job) (rate(rd_requests_total[5m]))", &[]),
    ("rd:temp:avg", "avg without (instance) (rd_temp)", &[("source", "rule")]),
    ("rd:requests:scaled", "rd_requests_total * 1.5 + on (instance) group_left rd_temp", &[]),
    ("rd:temp:count", "count(rd_temp)", &[]),
];

fn rule_file() -> String {
    let mut out = String::from("groups:\n  - name: diff\n    interval: 1s\n    rules:\n");
    for (record, expr, labels) in RULES {
        out.push_str(&format!("      - record: {record}\n        expr: {expr}\n"));
        if !labels.is_empty() {
            out.push_str("        labels:\n");
            for (k, v) in *labels {
                out.push_str(&format!("          {k}: {v}\n"));
            }
        }
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Ten minutes of two counters and two gauges with fractional values, ending now.
fn data(end: i64) -> v1::WriteRequest {
    let label = |n: &str, v: &str| v1::Label { name: n.into(), value: v.into() };
    let mut timeseries = Vec::new();
    for (i, instance) in ["a", "b"].iter().enumerate() {
        let f = i as f64 + 1.0;
        let points = 40;
        let at = |k: i64| end - (points - k) * 15_000 + 123;
        timeseries.push(v1::TimeSeries {
            labels: vec![label("__name__", "rd_requests_total"), label("instance", instance), label("job", "api")],
            samples: (0..points).map(|k| v1::Sample { value: k as f64 * 3.7 * f + 0.1, timestamp: at(k) }).collect(),
            ..Default::default()
        });
        timeseries.push(v1::TimeSeries {
            labels: vec![label("__name__", "rd_temp"), label("instance", instance), label("job", "api")],
            samples: (0..points)
                .map(|k| v1::Sample { value: 20.0 + (k as f64 / 7.0).sin() * f, timestamp: at(k) })
                .collect(),
            ..Default::default()
        });
    }
    v1::WriteRequest { timeseries, ..Default::default() }
}

/// The label set a rule records for a result sample of its expression.
fn recorded_labels(result_labels: &serde_json::Value, record: &str, statics: &[(&str, &str)]) -> LabelSet {
    let mut m: BTreeMap<String, String> = result_labels
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default();
    m.insert("__name__".into(), record.into());
    for (k, v) in statics {
        m.insert((*k).into(), (*v).into());
    }
    m.into_iter().collect()
}

/// What the query API at `addr` gives for `expr` at `t`, as the rule would record it.
fn expected(addr: &str, record: &str, expr: &str, statics: &[(&str, &str)], t: i64) -> BTreeMap<LabelSet, f64> {
    let time = format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000));
    let v = get_json(addr, &format!("/api/v1/query?query={}&time={time}", url_encode(expr))).unwrap();
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    result
        .iter()
        .map(|s| {
            (recorded_labels(&s["metric"], record, statics), s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn recording_rules_match_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, rule_file()).unwrap();
    let mut fleet = Fleet::new(dir.path());
    let store = fleet.slot("standalone");
    let mut standalone = Node::spawn(strata_bin(), &store, store.standalone_args());
    let pslot = fleet.slot("prometheus");
    let config =
        format!("global:\n  scrape_interval: 1h\n  evaluation_interval: 1s\nrule_files:\n  - {}\n", rules.display());
    let mut args = pslot.prometheus_args(&config);
    args.push("--web.enable-remote-write-receiver".into());
    args.push(format!("--enable-feature={}", PROMQL_FEATURES.join(",")).into());
    let mut prometheus = Node::spawn(&peer("prometheus"), &pslot, args);
    standalone.wait_ready();
    prometheus.wait_ready();

    let req = data(now_ms());
    remote_write(&store.remote_write, "/api/v1/receive", &req);
    remote_write(prometheus.http(), "/api/v1/write", &with_labels(&req, &STANDALONE_LABELS));

    let rslot = fleet.slot("rule");
    let ruler = Node::start(
        strata_bin(),
        &rslot,
        [
            "rule".to_owned(),
            format!("--rule-file={}", rules.display()),
            format!("--query=http://{}", standalone.http()),
            format!("--data-dir={}", rslot.data_dir.display()),
            format!("--http-address={}", rslot.http),
            format!("--grpc-address={}", rslot.grpc),
        ],
    );
    let qslot = fleet.slot("query");
    let querier = Node::start(strata_bin(), &qslot, qslot.query_args(&[&rslot.grpc]));

    // Both have recorded at least five evaluations of every rule.
    let selector = r#"{__name__=~"rd:.+"}[1m]"#;
    let enough = |addr: &str| -> Result<BTreeMap<LabelSet, Vec<(i64, f64)>>, String> {
        let got = range_samples(addr, selector, now_ms())?;
        let names: std::collections::BTreeSet<String> =
            got.keys().filter_map(|l| l.iter().find(|(k, _)| k == "__name__").map(|(_, v)| v.clone())).collect();
        if names.len() == RULES.len() && got.values().all(|p| p.len() >= 5) {
            Ok(got)
        } else {
            Err(format!("not yet: {got:?}"))
        }
    };
    let theirs =
        wait_for("Prometheus's recorded series", Duration::from_secs(60), || enough(prometheus.http())).unwrap();
    let ours = wait_for("strata rule's recorded series", Duration::from_secs(60), || enough(querier.http())).unwrap();
    let our_sets: Vec<&LabelSet> = ours.keys().collect();
    let their_sets: Vec<&LabelSet> = theirs.keys().collect();
    assert_eq!(our_sets, their_sets, "the same series are recorded");

    let mut differences = Vec::new();
    let mut compared = 0;
    for (recorded, other, what) in
        [(&ours, prometheus.http(), "strata rule vs Prometheus"), (&theirs, standalone.http(), "Prometheus vs strata")]
    {
        for (labels, points) in recorded {
            let name = &labels.iter().find(|(k, _)| k == "__name__").unwrap().1;
            let (record, expr, statics) = RULES.iter().find(|(r, _, _)| r == name).unwrap();
            for &(t, v) in points.iter().take(5) {
                let want = expected(other, record, expr, statics, t);
                compared += 1;
                match want.get(labels) {
                    Some(&w) if close(v, w) => {}
                    w => differences.push(format!("{what}: {labels:?} at {t}: recorded {v}, the other gives {w:?}")),
                }
            }
        }
    }
    assert!(compared >= 2 * 5 * RULES.len(), "compared {compared} points");
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    drop(ruler);
}
