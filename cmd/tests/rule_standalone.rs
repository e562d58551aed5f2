//! `strata standalone --rule-file`: samples remote-written into the standalone are evaluated by
//! its in-process ruler; the recorded series comes back through the standalone's own
//! `/api/v1/query`, the alert reaches a real Alertmanager (Debian's), and the standalone's
//! HTTP port serves the ruler's `/api/v1/rules`, `/api/v1/alerts` and the Rules and Alerts
//! pages, with hostile label values (`<script>`, quotes) escaped.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{remote_write, strata_bin};
use serde_json::Value;
use strata_proto::prometheus as v1;
use strata_testkit::http::get_json;
use strata_testkit::{url_encode, wait_for, Fleet, Node};

const HOSTILE: &str = "<script>alert('x')</script>\"&";

const RULES: &str = r#"groups:
  - name: standalone
    rules:
      - record: job:test_metric:sum
        expr: sum by (job, evil) (test_metric)
      - alert: Hostile
        expr: test_metric > 0
        annotations:
          summary: "evil is {{ $labels.evil }}"
"#;

fn write(addr: &str, value: f64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let labels = [("__name__", "test_metric"), ("evil", HOSTILE), ("job", "api")]
        .iter()
        .map(|(n, v)| v1::Label { name: (*n).into(), value: (*v).into() })
        .collect();
    let ts = v1::TimeSeries { labels, samples: vec![v1::Sample { value, timestamp: now }], ..Default::default() };
    remote_write(addr, "/api/v1/receive", &v1::WriteRequest { timeseries: vec![ts], ..Default::default() });
}

fn page(addr: &str, path: &str) -> String {
    let (status, body) = strata_testkit::http::get(addr, path).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[test]
fn standalone_evaluates_rules_on_its_own_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(dir.path());
    let (_am, am_addr) = common::start_alertmanager(dir.path());
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let slot = fleet.slot("standalone");
    let mut args = slot.standalone_args();
    args.push(format!("--rule-file={}", rules.display()).into());
    args.push(format!("--alertmanagers.url=http://{am_addr}").into());
    args.push("--eval-interval=1s".into());
    let standalone = Node::start(strata_bin(), &slot, args);
    write(&slot.remote_write, 1.0);

    // The recorded series through the standalone's own query API, with the ruler's labels.
    let path = format!("/api/v1/query?query={}", url_encode("job:test_metric:sum"));
    let recorded = wait_for("the recorded series through the standalone's query API", Duration::from_secs(60), || {
        let v = get_json(standalone.http(), &path)?;
        v["data"]["result"][0].as_object().cloned().ok_or_else(|| format!("not yet: {v}"))
    })
    .unwrap();
    assert_eq!(recorded["metric"]["job"], "api");
    assert_eq!(recorded["metric"]["evil"], HOSTILE);
    assert_eq!(recorded["metric"]["rule"], "standalone");
    assert_eq!(recorded["value"][1], "1");

    let in_am = common::alert_in_alertmanager(&am_addr, "Hostile");
    assert_eq!(in_am["labels"]["evil"], HOSTILE, "{in_am}");
    assert_eq!(in_am["annotations"]["summary"], format!("evil is {HOSTILE}"), "{in_am}");

    // The ruler's API on the standalone's port (not the empty answers of a querier).
    let rules_api = get_json(standalone.http(), "/api/v1/rules").unwrap();
    let group = &rules_api["data"]["groups"][0];
    assert_eq!(group["name"], "standalone", "{rules_api}");
    assert_eq!(group["rules"][0]["health"], "ok", "{rules_api}");
    let alerts: Vec<Value> =
        get_json(standalone.http(), "/api/v1/alerts").unwrap()["data"]["alerts"].as_array().cloned().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["state"], "firing");

    // The pages: groups, rules, health, evaluation; alerts with state, labels, value,
    // annotations; hostile values escaped, never raw.
    let rules_page = page(standalone.http(), "/rules");
    for want in
        ["standalone", "record: job:test_metric:sum", "sum by (job, evil) (test_metric)", ">ok<", "Last evaluation"]
    {
        assert!(rules_page.contains(want), "/rules lacks {want:?}:\n{rules_page}");
    }
    let alerts_page = page(standalone.http(), "/alerts");
    for want in [
        "Hostile",
        ">firing<",
        "1e+00",
        "evil=&quot;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;\\&quot;&amp;&quot;",
        "<b>summary</b>: evil is &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;",
        "Active since",
    ] {
        assert!(alerts_page.contains(want), "/alerts lacks {want:?}:\n{alerts_page}");
    }
    for page in [&rules_page, &alerts_page] {
        assert!(!page.contains("<script>"), "raw <script> in\n{page}");
        assert!(!page.contains("alert('x')"), "raw quote in\n{page}");
    }
    // The query page is still there beside them.
    assert!(page(standalone.http(), "/").contains("<html"));
}
