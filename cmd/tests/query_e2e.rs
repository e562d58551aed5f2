//! The HTTP query API of `strata standalone` next to real Prometheus 2.42: the same remote-written
//! data goes to both, then promtool (a client_golang client) and raw HTTP ask both the same
//! questions and the answers must agree. Also Grafana's data-source check.
//!
//! Prometheus 3 made range selectors and the lookback window left-open where 2.42 has them
//! closed; samples here sit 250 ms off the whole seconds that queries are evaluated at, so the
//! two semantics select the same samples.

mod common;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use common::StrataAndPrometheus;
use serde_json::Value;
use strata_proto::prometheus as v1;
use strata_testkit::promtool::{promtool, query_args};
use strata_testkit::{http, url_encode};

const STEP_MS: i64 = 15_000;
/// 30 minutes of samples.
const POINTS: i64 = 120;

fn label(name: &str, value: &str) -> v1::Label {
    v1::Label { name: name.into(), value: value.into() }
}

/// The data set: counters and gauges with fractional and extreme values, samples 250 ms off
/// whole seconds, and metadata for two families.
fn write_request(t0: i64) -> v1::WriteRequest {
    let mut timeseries = Vec::new();
    let mut series = |labels: Vec<v1::Label>, value: &dyn Fn(i64) -> f64| {
        let samples = (0..POINTS).map(|i| v1::Sample { value: value(i), timestamp: t0 + i * STEP_MS + 250 }).collect();
        timeseries.push(v1::TimeSeries { labels, samples, ..Default::default() });
    };
    for (instance, rate) in [("a", 1.0), ("b", 2.5)] {
        for (code, share) in [("200", 0.9), ("500", 0.1)] {
            series(
                vec![
                    label("__name__", "e2e_requests_total"),
                    label("code", code),
                    label("instance", instance),
                    label("job", "api"),
                ],
                &|i| (i as f64 * 15.0 * rate * share).floor(),
            );
        }
    }
    for (room, base) in [("hall", 19.25), ("kitchen", 21.5)] {
        series(vec![label("__name__", "e2e_temperature"), label("room", room)], &|i| base + (i % 7) as f64 * 0.1);
    }
    series(vec![label("__name__", "e2e_tiny"), label("kind", "small")], &|i| 1e-7 * (i + 1) as f64);
    series(vec![label("__name__", "e2e_tiny"), label("kind", "large")], &|i| 1e21 * (i + 1) as f64);
    let metadata = vec![
        v1::MetricMetadata {
            r#type: 1,
            metric_family_name: "e2e_requests_total".into(),
            help: "Requests served.".into(),
            unit: String::new(),
        },
        v1::MetricMetadata {
            r#type: 2,
            metric_family_name: "e2e_temperature".into(),
            help: "Room temperature.".into(),
            unit: "celsius".into(),
        },
    ];
    v1::WriteRequest { timeseries, metadata }
}

/// The output of `promtool query <args[0]> http://addr <args[1..]>`.
fn promtool_query(addr: &str, args: &[&str]) -> String {
    promtool(&query_args(&format!("http://{addr}"), args))
}

/// A result's series (or the scalar) as label set → points (seconds, value), for comparing
/// answers independent of series order.
type Points = BTreeMap<String, Vec<(f64, f64)>>;

fn value_of(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad sample value {v}"))
}

fn points(result_type: &str, result: &Value) -> Points {
    let pair = |p: &Value| (p[0].as_f64().unwrap_or_else(|| panic!("bad time in {p}")), value_of(&p[1]));
    let mut out = Points::new();
    match result_type {
        "scalar" | "string" => {
            out.insert(String::new(), vec![(result[0].as_f64().unwrap_or(f64::NAN), value_of(&result[1]))]);
        }
        _ => {
            for s in result.as_array().unwrap_or_else(|| panic!("no series in {result}")) {
                let key = s["metric"].to_string();
                let pts = match (s.get("value"), s.get("values")) {
                    (Some(v), _) => vec![pair(v)],
                    (_, Some(vs)) => vs.as_array().map(|a| a.iter().map(pair).collect()).unwrap_or_default(),
                    _ => panic!("no value in {s}"),
                };
                assert!(out.insert(key, pts).is_none(), "duplicate series in {result}");
            }
        }
    }
    out
}

/// Equal up to float noise from a different summation order (Prometheus 2.42 and 3.x differ).
fn assert_same_points(what: &str, ours: &Points, theirs: &Points) {
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "{what}: different series");
    for (key, a) in ours {
        let b = &theirs[key];
        assert_eq!(a.len(), b.len(), "{what}: {key}: {a:?} vs {b:?}");
        for ((ta, va), (tb, vb)) in a.iter().zip(b) {
            let close = va == vb || (va.is_nan() && vb.is_nan()) || (va - vb).abs() <= 1e-9 * va.abs().max(vb.abs());
            assert!(ta == tb && close, "{what}: {key}: ours ({ta}, {va}) vs Prometheus ({tb}, {vb})");
        }
    }
}

fn json_of(what: &str, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

/// promtool `-o json` prints the result as client_golang parsed it: `[t,"v"]` for a scalar, an
/// array of series for a vector.
fn promtool_points(json: &Value) -> Points {
    if json[0].is_number() {
        points("scalar", json)
    } else {
        points("vector", json)
    }
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort_unstable();
    v
}

#[test]
fn query_api_matches_prometheus() {
    let work = tempfile::tempdir().expect("temp dir");
    let servers = StrataAndPrometheus::start(work.path());
    let (strata, prometheus) = (servers.strata.http(), servers.prometheus.http());
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    // Whole minutes, so that every evaluation time below is a whole second.
    let t0 = (now_ms - 40 * 60_000) / 60_000 * 60_000;
    let req = write_request(t0);
    servers.write_both(&req);
    let secs = |ms: i64| (ms / 1000).to_string();
    let at = secs(t0 + 20 * 60_000);
    let (start, end) = (secs(t0 + 5 * 60_000), secs(t0 + 25 * 60_000));
    // Both have all eight series, so that agreeing answers are not merely empty ones.
    for addr in [strata, prometheus] {
        let data = get_data(addr, &format!("/api/v1/query?query={}&time={at}", url_encode(r#"{__name__=~"e2e_.*"}"#)));
        assert_eq!(data["result"].as_array().map(Vec::len), Some(8), "{addr}: {data}");
    }

    // Instant queries: promtool's text output (sorted), its JSON, and our raw JSON, compared.
    // `exact`: no float arithmetic whose rounding may differ (3.x sums with Kahan compensation
    // where 2.42 does not), so even the printed digits must agree.
    for (q, exact) in [
        ("e2e_requests_total", true),
        (r#"e2e_requests_total{code="500"}"#, true),
        ("rate(e2e_requests_total[5m])", false),
        ("increase(e2e_requests_total[10m])", false),
        ("sum by (job, code) (rate(e2e_requests_total[5m]))", false),
        ("count(e2e_requests_total)", true),
        ("topk(2, e2e_requests_total)", true),
        ("e2e_requests_total offset 5m", true),
        ("e2e_temperature * 2 + 1", true),
        ("e2e_temperature > 20", true),
        ("avg_over_time(e2e_temperature[10m])", false),
        ("max(e2e_temperature)", true),
        (r#"label_replace(e2e_temperature, "r", "$1", "room", "(.*)")"#, true),
        ("e2e_tiny", true),
        ("absent(e2e_nonexistent)", true),
        ("1+1", true),
        ("time()", true),
    ] {
        if exact {
            let ours = promtool_query(strata, &["instant", "--time", &at, q]);
            let theirs = promtool_query(prometheus, &["instant", "--time", &at, q]);
            assert_eq!(sorted_lines(&ours), sorted_lines(&theirs), "promtool query instant {q}");
        }
        let ours = promtool_query(strata, &["instant", "-o", "json", "--time", &at, q]);
        let theirs = promtool_query(prometheus, &["instant", "-o", "json", "--time", &at, q]);
        assert_same_points(q, &promtool_points(&json_of(q, &ours)), &promtool_points(&json_of(q, &theirs)));
        let path = format!("/api/v1/query?query={}&time={at}", url_encode(q));
        let (ours, theirs) = (get_data(strata, &path), get_data(prometheus, &path));
        assert_eq!(ours["resultType"], theirs["resultType"], "{q}");
        let kind = ours["resultType"].as_str().unwrap_or_default().to_owned();
        assert_same_points(q, &points(&kind, &ours["result"]), &points(&kind, &theirs["result"]));
    }

    // Byte-identical answers where order and arithmetic cannot differ.
    for q in [
        r#"e2e_requests_total{instance="a",code="200"}"#,
        r#"e2e_tiny{kind="small"}"#,
        r#"e2e_tiny{kind="large"}"#,
        "1+1",
    ] {
        let path = format!("/api/v1/query?query={}&time={at}.5", url_encode(q));
        assert_eq!(http::get(strata, &path), http::get(prometheus, &path), "{q}");
        let path = format!("/api/v1/query_range?query={}&start={start}&end={end}&step=45", url_encode(q));
        assert_eq!(http::get(strata, &path), http::get(prometheus, &path), "{q}");
    }

    // Range queries.
    for (q, exact) in [
        ("e2e_temperature", true),
        ("rate(e2e_requests_total[2m])", false),
        ("sum(e2e_requests_total)", true),
        ("1", true),
        ("e2e_tiny", true),
    ] {
        let args = ["range", "-o", "json", "--start", &start, "--end", &end, "--step", "30s", q];
        let (ours, theirs) = (promtool_query(strata, &args), promtool_query(prometheus, &args));
        let (ours, theirs) = (json_of(q, &ours), json_of(q, &theirs));
        assert_same_points(q, &points("matrix", &ours), &points("matrix", &theirs));
        let text = ["range", "--start", &start, "--end", &end, "--step", "30s", q];
        if exact {
            assert_eq!(promtool_query(strata, &text), promtool_query(prometheus, &text), "promtool query range {q}");
        }
    }

    // Series and label values.
    for matchers in
        [vec!["e2e_requests_total"], vec![r#"{room="hall"}"#, r#"e2e_tiny{kind=~"s.*"}"#], vec!["e2e_nonexistent"]]
    {
        let mut args = vec!["series", "--start", &start, "--end", &end];
        for m in &matchers {
            args.extend(["--match", m]);
        }
        let (ours, theirs) = (promtool_query(strata, &args), promtool_query(prometheus, &args));
        assert_eq!(sorted_lines(&ours), sorted_lines(&theirs), "promtool query series {matchers:?}");
        assert_eq!(ours.is_empty(), matchers == ["e2e_nonexistent"], "{matchers:?}: {ours}");
    }
    for name in ["__name__", "job", "room", "code", "nonexistent"] {
        let (ours, theirs) = (promtool_query(strata, &["labels", name]), promtool_query(prometheus, &["labels", name]));
        assert_eq!(ours, theirs, "promtool query labels {name}");
    }
    let labels = "/api/v1/labels";
    assert_eq!(get_data(strata, labels), get_data(prometheus, labels));

    // Grafana's data-source check: the exact answer Prometheus gives, then build info.
    for addr in [strata, prometheus] {
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let (status, body) = http::post(addr, "/api/v1/query", &form, b"query=1%2B1&time=4").expect("Grafana check");
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#),
            "{addr}"
        );
        assert_eq!(http::get(addr, "/api/v1/status/buildinfo").map(|(status, _)| status), Ok(200), "{addr}");
    }

    // Metadata from remote write (Prometheus 2.42 only reports its scrape targets' metadata).
    let md = get_data(strata, "/api/v1/metadata");
    assert_eq!(
        md["e2e_requests_total"],
        serde_json::json!([{"type": "counter", "help": "Requests served.", "unit": ""}]),
        "{md}"
    );
    assert_eq!(
        md["e2e_temperature"],
        serde_json::json!([{"type": "gauge", "help": "Room temperature.", "unit": "celsius"}]),
        "{md}"
    );
}

fn get_data(addr: &str, path: &str) -> Value {
    let (status, body) = http::get(addr, path).unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"));
    assert_eq!(status, 200, "GET {addr}{path}: {body}");
    let json = json_of(path, &body);
    assert_eq!(json["status"], "success", "GET {addr}{path}: {body}");
    json["data"].clone()
}
