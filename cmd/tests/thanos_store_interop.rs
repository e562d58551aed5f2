//! Wire compatibility of the StoreAPI with the real Thanos: `thanos query` (v0.42, built by
//! interop/) with `--endpoint` on the gRPC address of `strata receive` (`--label replica="a"`),
//! fed by remote write for two tenants. Through thanos query's HTTP API, series, label names and
//! values, instant and range queries must give exactly the series and samples written, each with
//! its `tenant_id` and `replica`; `/api/v1/stores` must list the receiver with its label sets
//! and time range.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{remote_write_body, strata_bin, LabelSet, REMOTE_WRITE_V1};
use serde_json::Value;
use strata_proto::prometheus as v1;
use strata_testkit::http::{get_json, post};
use strata_testkit::{peer, url_encode, wait_for, Fleet, Node};

const STEP_MS: i64 = 15_000;
/// 30 minutes of samples per series.
const POINTS: i64 = 120;

/// Series and samples as written, with the labels the receiver adds.
type Written = BTreeMap<LabelSet, Vec<(i64, f64)>>;

fn label_set(pairs: &[(&str, &str)]) -> LabelSet {
    let mut set: LabelSet = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    set.sort();
    set
}

/// The series of each tenant: (labels, value of sample i). The same `interop_requests_total`
/// series goes to both tenants, which only `tenant_id` tells apart.
#[allow(clippy::type_complexity)]
fn tenant_series(tenant: &str) -> Vec<(LabelSet, Box<dyn Fn(i64) -> f64>)> {
    let counter = |code: &str, per_second: f64| -> (LabelSet, Box<dyn Fn(i64) -> f64>) {
        let labels =
            label_set(&[("__name__", "interop_requests_total"), ("code", code), ("instance", "a"), ("job", "api")]);
        (labels, Box::new(move |i| 1000.0 + (i * STEP_MS / 1000) as f64 * per_second))
    };
    let gauge = |room: &str, base: f64| -> (LabelSet, Box<dyn Fn(i64) -> f64>) {
        (
            label_set(&[("__name__", "interop_temperature"), ("room", room)]),
            Box::new(move |i| base + (i % 7) as f64 * 0.5),
        )
    };
    match tenant {
        "team-a" => vec![counter("200", 2.0), counter("500", 0.1), gauge("hall", 19.25)],
        _ => vec![counter("200", 3.0), gauge("kitchen", 21.5)],
    }
}

/// Writes every tenant's series (samples `t0 + i * STEP_MS`) and returns what a reader must see.
fn write(addr: &str, t0: i64) -> Written {
    let mut written = Written::new();
    for tenant in ["team-a", "team-b"] {
        let mut timeseries = Vec::new();
        for (labels, value) in tenant_series(tenant) {
            let samples: Vec<(i64, f64)> = (0..POINTS).map(|i| (t0 + i * STEP_MS, value(i))).collect();
            timeseries.push(v1::TimeSeries {
                labels: labels
                    .iter()
                    .map(|(name, value)| v1::Label { name: name.clone(), value: value.clone() })
                    .collect(),
                samples: samples.iter().map(|&(timestamp, value)| v1::Sample { value, timestamp }).collect(),
                ..Default::default()
            });
            let mut served = labels.clone();
            served.extend([("replica".to_owned(), "a".to_owned()), ("tenant_id".to_owned(), tenant.to_owned())]);
            served.sort();
            written.insert(served, samples);
        }
        let body = remote_write_body(&v1::WriteRequest { timeseries, metadata: Vec::new() });
        let mut headers = REMOTE_WRITE_V1.to_vec();
        headers.push(("THANOS-TENANT", tenant));
        let (status, text) = post(addr, "/api/v1/receive", &headers, &body).unwrap();
        assert!((200..300).contains(&status), "remote write for {tenant}: {status} {text}");
    }
    written
}

/// `ms` as the API's seconds.
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// GETs `path` from thanos query; the `data` of a successful answer without warnings (a store
/// error under partial response would only be a warning).
fn api(addr: &str, path: &str) -> Value {
    let json = get_json(addr, path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["status"], "success", "{path}: {json}");
    assert!(json.get("warnings").is_none_or(|w| w.as_array().is_some_and(|w| w.is_empty())), "{path}: {json}");
    json["data"].clone()
}

fn metric(v: &Value) -> LabelSet {
    let mut set: LabelSet = v
        .as_object()
        .unwrap_or_else(|| panic!("not a label set: {v}"))
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    set.sort();
    set
}

fn point(p: &Value) -> (i64, f64) {
    let t = p[0].as_f64().unwrap_or_else(|| panic!("bad point {p}"));
    let v = p[1].as_str().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad point {p}"));
    ((t * 1000.0).round() as i64, v)
}

/// A matrix or vector result by series.
fn by_series(data: &Value) -> Written {
    let mut out = Written::new();
    for s in data["result"].as_array().unwrap_or_else(|| panic!("no result in {data}")) {
        let points = match s.get("values") {
            Some(values) => values.as_array().unwrap().iter().map(point).collect(),
            None => vec![point(&s["value"])],
        };
        assert!(out.insert(metric(&s["metric"]), points).is_none(), "a series twice in {data}");
    }
    out
}

fn query(addr: &str, q: &str, at: i64) -> Value {
    api(addr, &format!("/api/v1/query?query={}&time={}", url_encode(q), seconds(at)))
}

#[test]
fn thanos_query_reads_strata_receive() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(dir.path());
    let (receive_slot, query_slot) = (fleet.slot("receive"), fleet.slot("thanos-query"));
    let mut args = receive_slot.receive_args();
    args.push("--label=replica=\"a\"".into());
    let receive = Node::start(strata_bin(), &receive_slot, args);

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let t0 = (now - 3_600_000) / STEP_MS * STEP_MS;
    let end = t0 + (POINTS - 1) * STEP_MS;
    let written = write(&receive.slot.remote_write, t0);

    let query_args = vec![
        "query".to_owned(),
        format!("--http-address={}", query_slot.http),
        format!("--grpc-address={}", query_slot.grpc),
        format!("--endpoint={}", receive_slot.grpc),
    ];
    let thanos = Node::start(&peer("thanos"), &query_slot, query_args);
    let addr = thanos.http().to_owned();

    // The endpoint, once thanos query has asked its Info: both tenants (and the default one,
    // opened at start), the receiver's time range.
    let stores = wait_for("thanos query to list strata receive", Duration::from_secs(60), || {
        let data = get_json(&addr, "/api/v1/stores")?;
        let receive = &data["data"]["receive"];
        match receive.as_array() {
            Some(list) if list.len() == 1 && list[0]["labelSets"].as_array().is_some_and(|s| s.len() == 3) => {
                Ok(list[0].clone())
            }
            _ => Err(data.to_string()),
        }
    })
    .unwrap();
    assert_eq!(stores["name"], receive_slot.grpc.as_str());
    assert!(stores["lastError"].is_null(), "{stores}");
    let sets: BTreeSet<LabelSet> = stores["labelSets"].as_array().unwrap().iter().map(metric).collect();
    let want: BTreeSet<LabelSet> = ["default-tenant", "team-a", "team-b"]
        .iter()
        .map(|t| label_set(&[("replica", "a"), ("tenant_id", t)]))
        .collect();
    assert_eq!(sets, want);
    assert_eq!(stores["minTime"].as_i64(), Some(t0), "{stores}");
    assert_eq!(stores["maxTime"].as_i64(), Some(i64::MAX), "{stores}");

    // Series, label names, label values.
    let range = format!("start={}&end={}", seconds(t0), seconds(end));
    let series = api(&addr, &format!("/api/v1/series?match[]={}&{range}", url_encode(r#"{__name__=~"interop_.+"}"#)));
    let got: BTreeSet<LabelSet> = series.as_array().unwrap().iter().map(metric).collect();
    assert_eq!(got, written.keys().cloned().collect::<BTreeSet<_>>());
    let names = api(&addr, &format!("/api/v1/labels?{range}"));
    assert_eq!(names, serde_json::json!(["__name__", "code", "instance", "job", "replica", "room", "tenant_id"]));
    let tenants = api(&addr, &format!("/api/v1/label/tenant_id/values?{range}"));
    assert_eq!(tenants, serde_json::json!(["team-a", "team-b"]));
    let rooms = api(
        &addr,
        &format!(
            "/api/v1/label/room/values?match[]={}&{range}",
            url_encode(r#"{__name__="interop_temperature",tenant_id="team-b"}"#)
        ),
    );
    assert_eq!(rooms, serde_json::json!(["kitchen"]));

    // Every sample, raw: a range selector over the whole span.
    let raw = by_series(&query(&addr, r#"{__name__=~"interop_.+"}[30m]"#, end));
    assert_eq!(raw, written);

    // The latest value of each series, and one tenant's only.
    let latest = by_series(&query(&addr, "interop_requests_total", end));
    let want_latest: Written = written
        .iter()
        .filter(|(l, _)| l.contains(&("__name__".to_owned(), "interop_requests_total".to_owned())))
        .map(|(l, s)| (l.clone(), vec![s[s.len() - 1]]))
        .collect();
    assert_eq!(latest, want_latest);
    let team_a = by_series(&query(&addr, r#"interop_requests_total{tenant_id="team-a"}"#, end));
    assert_eq!(team_a.len(), 2);
    assert!(team_a.keys().all(|l| l.contains(&("tenant_id".to_owned(), "team-a".to_owned()))));

    // A range query at the samples' own timestamps gives the samples.
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=15",
        url_encode("interop_temperature"),
        seconds(t0),
        seconds(end)
    );
    let temperatures = by_series(&api(&addr, &path));
    let want_temperatures: Written = written
        .iter()
        .filter(|(l, _)| l.contains(&("__name__".to_owned(), "interop_temperature".to_owned())))
        .map(|(l, s)| (l.clone(), s.clone()))
        .collect();
    assert_eq!(temperatures, want_temperatures);

    // Deduplication over the replica label: thanos query asks the store to leave it out
    // (`without_replica_labels`), and the samples stay the same.
    let path = format!(
        "/api/v1/query?query={}&time={}&dedup=true&replicaLabels[]=replica",
        url_encode(r#"{__name__=~"interop_.+"}[30m]"#),
        seconds(end)
    );
    let deduplicated = by_series(&api(&addr, &path));
    let without_replica: Written =
        written.iter().map(|(l, s)| (l.iter().filter(|(n, _)| n != "replica").cloned().collect(), s.clone())).collect();
    assert_eq!(deduplicated, without_replica);

    // rate() over the counters: their constant slopes, per tenant.
    let rates = by_series(&query(&addr, "sum by (tenant_id, code) (rate(interop_requests_total[5m]))", end));
    let want_rates = [(("200", "team-a"), 2.0), (("500", "team-a"), 0.1), (("200", "team-b"), 3.0)];
    assert_eq!(rates.len(), want_rates.len(), "{rates:?}");
    for ((code, tenant), rate) in want_rates {
        let got = rates[&label_set(&[("code", code), ("tenant_id", tenant)])][0].1;
        assert!((got - rate).abs() < 1e-9, "{code} {tenant}: {got} != {rate}");
    }

    // Thanos counted the calls it made.
    let (_, metrics) = strata_testkit::http::get(&receive.slot.http, "/metrics").unwrap();
    let series_ok = metrics
        .lines()
        .find(|l| l.starts_with(r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Series""#))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(series_ok.is_some_and(|n| n >= 6.0), "{series_ok:?}");
}
