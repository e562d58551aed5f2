//! `strata rule` against `strata standalone` and a real Alertmanager (Debian's): an alerting
//! rule goes pending, fires, reaches Alertmanager with its templated annotations and the
//! ruler's external labels, keeps firing with the same active time across a restart of the
//! ruler (state restored from ALERTS_FOR_STATE), and resolves when the data changes. A
//! recording rule's series is written to the ruler's TSDB and served over its StoreAPI to
//! `strata query`; a bad rule file sent by `POST /-/reload` keeps the rules in use.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{remote_write, strata_bin};
use serde_json::Value;
use strata_proto::prometheus as v1;
use strata_testkit::http::{get_json, post};
use strata_testkit::metrics::metric_sum;
use strata_testkit::{url_encode, wait_for, Fleet, Node, Signal};

const RULES: &str = r#"groups:
  - name: test
    rules:
      - alert: TestAlert
        expr: test_metric > 0
        for: 3s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.job }} is {{ $value }} in {{ $externalLabels.cluster }}"
      - record: job:test_metric:sum
        expr: sum by (job) (test_metric)
"#;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn write(addr: &str, value: f64) {
    let labels = [("__name__", "test_metric"), ("job", "api")]
        .iter()
        .map(|(n, v)| v1::Label { name: (*n).into(), value: (*v).into() })
        .collect();
    let ts = v1::TimeSeries { labels, samples: vec![v1::Sample { value, timestamp: now_ms() }], ..Default::default() };
    remote_write(addr, "/api/v1/receive", &v1::WriteRequest { timeseries: vec![ts], ..Default::default() });
}

/// The ruler's alerts (`/api/v1/alerts`).
fn alerts(ruler: &str) -> Result<Vec<Value>, String> {
    let v = get_json(ruler, "/api/v1/alerts")?;
    Ok(v["data"]["alerts"].as_array().cloned().unwrap_or_default())
}

fn alert_in_state(ruler: &str, state: &str) -> Result<Value, String> {
    let all = alerts(ruler)?;
    all.iter().find(|a| a["state"] == state).cloned().ok_or_else(|| format!("no {state} alert in {all:?}"))
}

fn ruler_args(slot: &strata_testkit::Slot, query: &str, am: &str, rules: &str) -> Vec<String> {
    vec![
        "rule".into(),
        format!("--rule-file={rules}"),
        format!("--query={query}"),
        // A name looked up as Thanos looks up `dns+` Alertmanagers.
        format!("--alertmanagers.url=dns+http://localhost:{}", am.rsplit_once(':').unwrap().1),
        "--eval-interval=1s".into(),
        "--for-grace-period=1s".into(),
        "--resend-delay=1s".into(),
        "--label=cluster=\"eu\"".into(),
        "--label=replica=\"0\"".into(),
        "--alert.label-drop=replica".into(),
        "--alert.query-url=http://query.example".into(),
        format!("--data-dir={}", slot.data_dir.display()),
        format!("--http-address={}", slot.http),
        format!("--grpc-address={}", slot.grpc),
    ]
}

#[test]
fn alert_lifecycle_with_a_real_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(dir.path());
    let store = fleet.slot("standalone");
    let standalone = Node::start(strata_bin(), &store, store.standalone_args());

    let (am, am_addr) = common::start_alertmanager(dir.path());

    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let slot = fleet.slot("rule");
    let query = format!("http://{}", standalone.http());
    let args = ruler_args(&slot, &query, &am_addr, rules.to_str().unwrap());
    let ruler = Node::start(strata_bin(), &slot, &args);

    write(&store.remote_write, 1.0);
    let pending =
        wait_for("the alert to be pending", Duration::from_secs(30), || alert_in_state(ruler.http(), "pending"))
            .unwrap();
    assert_eq!(pending["labels"]["alertname"], "TestAlert");
    assert_eq!(pending["labels"]["severity"], "page");
    let firing =
        wait_for("the alert to fire", Duration::from_secs(30), || alert_in_state(ruler.http(), "firing")).unwrap();
    assert_eq!(firing["activeAt"], pending["activeAt"]);
    assert_eq!(firing["value"], "1e+00");
    assert_eq!(firing["annotations"]["summary"], "api is 1 in eu");

    let in_am = common::alert_in_alertmanager(&am_addr, "TestAlert");
    assert_eq!(in_am["labels"]["cluster"], "eu", "external labels are added: {in_am}");
    assert!(in_am["labels"].get("replica").is_none(), "--alert.label-drop drops: {in_am}");
    assert_eq!(in_am["labels"]["job"], "api");
    assert_eq!(in_am["annotations"]["summary"], "api is 1 in eu");
    assert_eq!(in_am["generatorURL"], "http://query.example/graph?g0.expr=test_metric+%3E+0&g0.tab=1");

    // The rules API in Prometheus's shape.
    let rules_api = get_json(ruler.http(), "/api/v1/rules").unwrap();
    let group = &rules_api["data"]["groups"][0];
    assert_eq!(group["name"], "test");
    assert_eq!(group["rules"][0]["type"], "alerting");
    assert_eq!(group["rules"][0]["state"], "firing");
    assert_eq!(group["rules"][0]["health"], "ok");
    assert_eq!(group["rules"][1]["type"], "recording");

    // The recorded series and ALERTS reach a querier over the ruler's StoreAPI, with the
    // ruler's external labels.
    let qslot = fleet.slot("query");
    let querier = Node::start(strata_bin(), &qslot, qslot.query_args(&[&slot.grpc]));
    let path = format!("/api/v1/query?query={}", url_encode("job:test_metric:sum"));
    let recorded = wait_for("the recorded series through strata query", Duration::from_secs(30), || {
        let v = get_json(querier.http(), &path)?;
        let r = v["data"]["result"].as_array().cloned().unwrap_or_default();
        r.first().cloned().ok_or_else(|| format!("not yet: {v}"))
    })
    .unwrap();
    assert_eq!(recorded["metric"]["job"], "api");
    assert_eq!(recorded["metric"]["cluster"], "eu");
    assert_eq!(recorded["value"][1], "1");
    let path = format!("/api/v1/query?query={}", url_encode("ALERTS{alertstate=\"firing\"}"));
    wait_for("ALERTS through strata query", Duration::from_secs(30), || {
        let v = get_json(querier.http(), &path)?;
        (v["data"]["result"].as_array().is_some_and(|r| r.len() == 1)).then_some(()).ok_or_else(|| v.to_string())
    })
    .unwrap();

    // A bad rule file on reload keeps the rules in use.
    std::fs::write(&rules, "groups:\n- name: test\n  rules:\n  - record: r\n    expr: sum(\n").unwrap();
    let (status, body) = post(ruler.http(), "/-/reload", &[], b"").unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("could not parse expression"), "{body}");
    assert!(alert_in_state(ruler.http(), "firing").is_ok());
    let groups = |ruler: &Node| -> Result<usize, String> {
        Ok(get_json(ruler.http(), "/api/v1/rules")?["data"]["groups"].as_array().map_or(0, Vec::len))
    };
    assert_eq!(groups(&ruler), Ok(1));
    // SIGHUP reloads a good file: a second group appears, the first keeps its state.
    let more = format!("{RULES}  - name: more\n    rules:\n      - record: two\n        expr: vector(2)\n");
    std::fs::write(&rules, more).unwrap();
    let mut ruler = ruler;
    ruler.proc.signal(Signal::Hup);
    wait_for("the reloaded rules", Duration::from_secs(30), || {
        (groups(&ruler)? == 2).then_some(()).ok_or_else(|| "one group".to_owned())
    })
    .unwrap();
    assert_eq!(alert_in_state(ruler.http(), "firing").unwrap()["activeAt"], firing["activeAt"]);
    let metrics = strata_testkit::http::get(ruler.http(), "/metrics").unwrap().1;
    for name in
        ["prometheus_rule_evaluations_total", "prometheus_rule_group_rules", "prometheus_notifications_sent_total"]
    {
        assert!(metric_sum(&metrics, name).is_some_and(|v| v >= 1.0), "{name} in\n{metrics}");
    }

    // A restart keeps the alert firing with the same active time (to the second, as
    // ALERTS_FOR_STATE holds it).
    drop(ruler);
    let ruler = Node::start(strata_bin(), &slot, &args);
    let active_at = firing["activeAt"].as_str().unwrap();
    let second = &active_at[..19];
    let restored = wait_for("the alert to fire again after the restart", Duration::from_secs(30), || {
        let a = alert_in_state(ruler.http(), "firing")?;
        a["activeAt"]
            .as_str()
            .is_some_and(|t| t.starts_with(second))
            .then_some(a.clone())
            .ok_or_else(|| format!("active since {} instead of {active_at}", a["activeAt"]))
    });
    restored.unwrap();

    // The condition clears: the alert resolves, in the ruler and in Alertmanager.
    write(&store.remote_write, 0.0);
    wait_for("the alert to resolve", Duration::from_secs(30), || {
        let all = alerts(ruler.http())?;
        all.is_empty().then_some(()).ok_or_else(|| format!("still {all:?}"))
    })
    .unwrap();
    // The ruler marks the vanished ALERTS series stale: queries stop seeing it at once, not
    // after the five-minute lookback.
    let path = format!("/api/v1/query?query={}", url_encode("ALERTS"));
    wait_for("ALERTS marked stale", Duration::from_secs(30), || {
        let v = get_json(querier.http(), &path)?;
        (v["data"]["result"].as_array().is_some_and(Vec::is_empty)).then_some(()).ok_or_else(|| v.to_string())
    })
    .unwrap();
    wait_for("the alert resolved in Alertmanager", Duration::from_secs(30), || {
        let v = get_json(&am_addr, "/api/v2/alerts?active=true")?;
        let live = v.as_array().is_some_and(|a| a.iter().any(|a| a["labels"]["alertname"] == "TestAlert"));
        (!live).then_some(()).ok_or_else(|| format!("still active: {v}"))
    })
    .unwrap();
    let sent = strata_testkit::metrics::metric_sum(
        &strata_testkit::http::get(ruler.http(), "/metrics").unwrap().1,
        "prometheus_notifications_sent_total",
    );
    assert!(sent.unwrap_or(0.0) >= 1.0, "notifications counted");
    drop(am);
}
