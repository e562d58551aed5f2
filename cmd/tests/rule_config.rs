//! `strata rule` configured only through Thanos's config files: `--query.config-file` with a
//! static query API and a file-SD file rewritten during the test to point at a second one, and
//! `--alertmanagers.config-file` delivering alerts to a real Alertmanager (Debian's) over the
//! v1 API Thanos defaults to; the ruler's port serves the Rules and Alerts pages. Bad configs
//! and conflicting flags stop the ruler at start with a message naming the file and the field.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{remote_write, strata_bin};
use strata_proto::prometheus as v1;
use strata_testkit::http::get_json;
use strata_testkit::{url_encode, wait_for, Fleet, Node};

const RULES: &str = r#"groups:
  - name: config
    rules:
      - record: answer:sum
        expr: sum(answer)
      - alert: AnswerPresent
        expr: answer > 0
        labels:
          severity: page
"#;

fn write(addr: &str, value: f64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let labels = [("__name__", "answer"), ("job", "api")]
        .iter()
        .map(|(n, v)| v1::Label { name: (*n).into(), value: (*v).into() })
        .collect();
    let ts = v1::TimeSeries { labels, samples: vec![v1::Sample { value, timestamp: now }], ..Default::default() };
    remote_write(addr, "/api/v1/receive", &v1::WriteRequest { timeseries: vec![ts], ..Default::default() });
}

/// Waits until the latest value of the recorded `answer:sum`, read through `querier` over
/// the ruler's StoreAPI, is `want`: the answer of the query API named by `source`.
fn wait_recorded(querier: &Node, want: &str, source: &str) {
    wait_for(&format!("{source}'s answer recorded"), Duration::from_secs(60), || {
        let v = get_json(querier.http(), &format!("/api/v1/query?query={}", url_encode("answer:sum")))?;
        let value = v["data"]["result"][0]["value"][1].as_str().ok_or_else(|| format!("not yet: {v}"))?;
        (value == want).then_some(()).ok_or_else(|| value.to_owned())
    })
    .unwrap();
}

/// `strata rule` on a new slot of `fleet` evaluating `rules` every second, asking its peers
/// as `flags` say, with external label `ruler=<name>`; and a querier over its StoreAPI.
fn start_ruler(fleet: &mut Fleet, rules: &std::path::Path, name: &str, flags: &[String]) -> (Node, Node) {
    let slot = fleet.slot("rule");
    let mut args = vec!["rule".to_owned(), format!("--rule-file={}", rules.display())];
    args.extend(flags.iter().cloned());
    args.extend([
        "--eval-interval=1s".to_owned(),
        format!("--label=ruler=\"{name}\""),
        format!("--data-dir={}", slot.data_dir.display()),
        format!("--http-address={}", slot.http),
        format!("--grpc-address={}", slot.grpc),
    ]);
    let ruler = Node::start(strata_bin(), &slot, &args);
    let qslot = fleet.slot("query");
    let querier = Node::start(strata_bin(), &qslot, qslot.query_args(&[&slot.grpc]));
    (ruler, querier)
}

/// What a ruler under test asks: two query APIs with different data (1 and 2 as `answer`, so
/// the recorded value shows which one the ruler asked) and a real Alertmanager.
struct Peers {
    api_a: Node,
    api_b: Node,
    am: strata_testkit::Proc,
    am_addr: String,
}

fn start_peers(fleet: &mut Fleet, dir: &std::path::Path) -> Peers {
    let a = fleet.slot("standalone-a");
    let b = fleet.slot("standalone-b");
    let api_a = Node::start(strata_bin(), &a, a.standalone_args());
    let api_b = Node::start(strata_bin(), &b, b.standalone_args());
    write(&a.remote_write, 1.0);
    write(&b.remote_write, 2.0);
    let (am, am_addr) = common::start_alertmanager(dir);
    Peers { api_a, api_b, am, am_addr }
}

#[test]
fn ruler_configured_by_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(dir.path());
    let Peers { api_a, api_b, am: _am, am_addr } = start_peers(&mut fleet, dir.path());

    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    // The SD file lists nothing yet: the static query API answers.
    let sd = dir.path().join("queries.yml");
    std::fs::write(&sd, "[]\n").unwrap();
    let query_config = dir.path().join("query.yml");
    std::fs::write(
        &query_config,
        format!(
            "- file_sd_configs:\n    - files: ['{}']\n      refresh_interval: 5m\n  http_config:\n    bearer_token: secret\n\
             - static_configs: ['{}']\n  scheme: http\n  path_prefix: /\n",
            sd.display(),
            api_a.http()
        ),
    )
    .unwrap();
    let am_config = dir.path().join("alertmanagers.yml");
    std::fs::write(&am_config, format!("alertmanagers:\n  - static_configs: ['{am_addr}']\n    timeout: 5s\n"))
        .unwrap();
    let flags = [
        format!("--query.config-file={}", query_config.display()),
        format!("--alertmanagers.config-file={}", am_config.display()),
    ];
    let (ruler, querier) = start_ruler(&mut fleet, &rules, "files", &flags);
    wait_recorded(&querier, "1", "the static query API");
    // Alertmanager has the alert (sent through the v1 API, Thanos's default), with the
    // ruler's external labels.
    let in_am = common::alert_in_alertmanager(&am_addr, "AnswerPresent");
    assert_eq!(in_am["labels"]["ruler"], "files", "{in_am}");
    assert_eq!(in_am["labels"]["severity"], "page", "{in_am}");

    // The SD file now names the second query API, listed first: the ruler asks it.
    std::fs::write(&sd, format!("- targets: ['{}']\n", api_b.http())).unwrap();
    wait_recorded(&querier, "2", "the SD file's query API");
    let rules_api = get_json(ruler.http(), "/api/v1/rules").unwrap();
    assert_eq!(rules_api["data"]["groups"][0]["rules"][0]["health"], "ok", "{rules_api}");
    // The Rules and Alerts pages on the ruler's port.
    let (status, rules_page) = strata_testkit::http::get(ruler.http(), "/rules").unwrap();
    assert!(status == 200 && rules_page.contains("record: answer:sum"), "{status} {rules_page}");
    let (status, alerts_page) = strata_testkit::http::get(ruler.http(), "/alerts").unwrap();
    assert!(
        status == 200 && alerts_page.contains("AnswerPresent") && alerts_page.contains(">firing<"),
        "{alerts_page}"
    );
    drop(api_a);
}

/// `--query.sd-files` (no static `--query`) and `--alert.relabel-config`: the SD file names the
/// query API and is followed when rewritten; relabelling drops the debug alert and adds a label
/// to the other, after the external labels are set.
#[test]
fn ruler_with_query_sd_files_and_alert_relabelling() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(dir.path());
    let Peers { api_a, api_b, am: _am, am_addr } = start_peers(&mut fleet, dir.path());

    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        format!(
            "{RULES}      - alert: AnswerDebug\n        expr: answer > 0\n        labels:\n          severity: debug\n"
        ),
    )
    .unwrap();
    let sd = dir.path().join("queries.json");
    std::fs::write(&sd, format!("[{{\"targets\": [\"{}\"]}}]\n", api_a.http())).unwrap();
    let relabel = "- source_labels: [severity]\n  regex: debug\n  action: drop\n\
                   - source_labels: [ruler]\n  target_label: team\n  replacement: team-$1\n";
    let flags = [
        format!("--query.sd-files={}", dir.path().join("queries*.json").display()),
        format!("--alertmanagers.url=http://{am_addr}"),
        format!("--alert.relabel-config={relabel}"),
    ];
    let (ruler, querier) = start_ruler(&mut fleet, &rules, "sd", &flags);
    wait_recorded(&querier, "1", "the SD file's query API");
    let in_am = common::alert_in_alertmanager(&am_addr, "AnswerPresent");
    assert_eq!(in_am["labels"]["team"], "team-sd", "{in_am}");
    // Both alerts fire in the ruler; the debug one, evaluated in the same pass and sent
    // before the other, never reached Alertmanager.
    let firing = get_json(ruler.http(), "/api/v1/alerts").unwrap();
    assert!(firing.to_string().contains("AnswerDebug"), "{firing}");
    let all = get_json(&am_addr, "/api/v2/alerts").unwrap();
    assert!(!all.to_string().contains("AnswerDebug"), "a dropped alert reached Alertmanager: {all}");

    std::fs::write(&sd, format!("[{{\"targets\": [\"{}\"]}}]\n", api_b.http())).unwrap();
    wait_recorded(&querier, "2", "the rewritten SD file's query API");
}

#[test]
fn bad_peer_configs_stop_the_ruler() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let bad_yaml = file("bad-yaml.yml", "- static_configs: [a:1\n");
    let unknown = file("unknown.yml", "- static_configs: ['a:1']\n  tls: {}\n");
    let scheme = file("scheme.yml", "- static_configs: ['a:1']\n  scheme: ftp\n");
    let am_version = file("am.yml", "alertmanagers:\n  - static_configs: ['a:1']\n    api_version: v9\n");
    let cases: Vec<(Vec<String>, String)> = vec![
        (vec![format!("--query.config-file={bad_yaml}")], format!("{bad_yaml}: parsing YAML")),
        (vec![format!("--query.config-file={unknown}")], "unknown field `tls`".to_owned()),
        (
            vec![format!("--query.config-file={scheme}")],
            format!("{scheme}: [0].scheme: \"ftp\" is not a supported scheme; use http"),
        ),
        (
            vec!["--query=a:1".to_owned(), "--query.config=- static_configs: ['b:1']".to_owned()],
            "--query/--query.sd-files and --query.config* parameters cannot be defined at the same time".to_owned(),
        ),
        (
            vec![
                "--query=a:1".to_owned(),
                "--alertmanagers.url=http://am".to_owned(),
                "--alertmanagers.config=alertmanagers: []".to_owned(),
            ],
            "--alertmanagers.url and --alertmanagers.config* parameters cannot be defined at the same time".to_owned(),
        ),
        (
            vec!["--query=a:1".to_owned(), format!("--alertmanagers.config-file={am_version}")],
            format!("{am_version}: alertmanagers[0].api_version: expected Alertmanager API version"),
        ),
        (vec!["--query.config-file=/nonexistent/q.yml".to_owned()], "read --query.config-file".to_owned()),
        (vec!["--query.config=".to_owned()], "no --query parameter was given".to_owned()),
        (
            vec!["--query.sd-files=queries.txt".to_owned()],
            "--query.sd-files: \"queries.txt\": the extension must be .json, .yml or .yaml".to_owned(),
        ),
        (
            vec!["--query.sd-files=q.yml".to_owned(), "--query.config=- static_configs: ['b:1']".to_owned()],
            "--query/--query.sd-files and --query.config* parameters cannot be defined at the same time".to_owned(),
        ),
        (
            vec!["--query=a:1".to_owned(), "--alert.relabel-config=- action: explode".to_owned()],
            "--alert.relabel-config".to_owned(),
        ),
    ];
    for (flags, want) in cases {
        let mut args = vec![
            "rule".to_owned(),
            format!("--rule-file={}", rules.display()),
            format!("--data-dir={}", dir.path().join("data").display()),
            "--http-address=127.0.0.1:0".to_owned(),
            "--grpc-address=127.0.0.1:0".to_owned(),
        ];
        args.extend(flags.iter().cloned());
        let out = strata_testkit::tools::run(strata_bin(), &args);
        assert!(!out.status.success(), "{flags:?} started");
        assert!(out.stderr.contains(&want), "{flags:?}: stderr lacks {want:?}:\n{}", out.stderr);
    }
}
