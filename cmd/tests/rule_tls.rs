//! `strata rule` reaching its peers over TLS, as Thanos's `http_config.tls_config` configures
//! it: a real Prometheus 3.x as the query API and a real Alertmanager (Debian's), both serving
//! HTTPS only and requiring a client certificate signed by a test CA (their `--web.config.file`).
//! The ruler's recording rule answers through Prometheus and its alert reaches Alertmanager;
//! a ruler trusting another CA, or without a client certificate, gets nothing through and
//! says so in its rule health and notification metrics; a tls_config naming a missing file
//! stops the ruler at start.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::strata_bin;
use common::tls::Pki;
use strata_testkit::http::get_json;
use strata_testkit::{peer, tool, wait_for, Fleet, Node, Proc};

const RULES: &str = r#"groups:
  - name: tls
    interval: 1s
    rules:
      - record: tls:answer
        expr: vector(42)
      - alert: OverTls
        expr: vector(1) > 0
"#;

fn start_alertmanager(dir: &Path, web_config: &str) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", strata_testkit::free_port());
    let am_dir = dir.join("alertmanager");
    std::fs::create_dir_all(&am_dir).unwrap();
    let config = am_dir.join("alertmanager.yml");
    std::fs::write(&config, "route:\n  receiver: none\nreceivers:\n  - name: none\n").unwrap();
    let mut cmd = Command::new(tool("prometheus-alertmanager"));
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", am_dir.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--web.config.file={web_config}"))
        .arg("--cluster.listen-address=");
    (Proc::spawn("alertmanager", cmd, &am_dir.join("log")), addr)
}

/// Starts `strata rule` on a new slot of `fleet` with the given peer configs.
fn start_ruler(fleet: &mut Fleet, dir: &Path, name: &str, query_config: &str, am_config: &str) -> Node {
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let slot = fleet.slot(name);
    let args = vec![
        "rule".to_owned(),
        format!("--rule-file={}", rules.display()),
        format!("--query.config={query_config}"),
        format!("--alertmanagers.config={am_config}"),
        "--eval-interval=1s".to_owned(),
        format!("--label=ruler=\"{name}\""),
        format!("--data-dir={}", slot.data_dir.display()),
        format!("--http-address={}", slot.http),
        format!("--grpc-address={}", slot.grpc),
    ];
    Node::start(strata_bin(), &slot, &args)
}

/// The ruler's rule `name` as `/api/v1/rules` lists it.
fn rule(ruler: &Node, name: &str) -> Result<serde_json::Value, String> {
    let v = get_json(ruler.http(), "/api/v1/rules")?;
    v["data"]["groups"][0]["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["name"] == name).cloned())
        .ok_or_else(|| format!("no rule {name}: {v}"))
}

/// `prometheus_notifications_errors_total` summed over the ruler's Alertmanagers.
fn notification_errors(ruler: &Node) -> f64 {
    let (_, text) = strata_testkit::http::get(ruler.http(), "/metrics").unwrap();
    text.lines()
        .filter(|l| l.starts_with("prometheus_notifications_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn ruler_reaches_prometheus_and_alertmanager_over_tls_with_client_certificates() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let web_config = pki.web_config();
    let mut fleet = Fleet::new(work.path());

    let prom_slot = fleet.slot("prometheus");
    let mut prom_args = prom_slot.prometheus_args("global:\n  scrape_interval: 15s\n");
    prom_args.push(format!("--web.config.file={web_config}").into());
    let mut prometheus = Node::spawn(&peer("prometheus"), &prom_slot, prom_args);
    pki.wait_ready("prometheus", &mut prometheus.proc, &prom_slot.http);
    let (mut am, am_addr) = start_alertmanager(work.path(), &web_config);
    pki.wait_ready("alertmanager", &mut am, &am_addr);

    let query_config = |ca: &str, client_cert: bool| {
        format!("- static_configs: ['{}']\n  scheme: https\n{}", prom_slot.http, pki.http_config(ca, client_cert, None))
    };
    // The certificate names localhost and 127.0.0.1; server_name picks the name checked.
    let am_config = |ca: &str, client_cert: bool| {
        format!(
            "alertmanagers:\n- static_configs: ['{am_addr}']\n  scheme: https\n  api_version: v2\n  timeout: 5s\n{}",
            pki.http_config(ca, client_cert, Some("localhost"))
        )
    };

    let good = start_ruler(&mut fleet, work.path(), "good", &query_config("test", true), &am_config("test", true));
    wait_for("the recording rule evaluated through Prometheus over TLS", Duration::from_secs(60), || {
        let r = rule(&good, "tls:answer")?;
        (r["health"] == "ok").then_some(()).ok_or_else(|| r.to_string())
    })
    .unwrap();
    wait_for("the alert in Alertmanager, sent over TLS", Duration::from_secs(60), || {
        let alerts = pki.get(&am_addr, "/api/v2/alerts")?;
        let v: serde_json::Value = serde_json::from_str(&alerts).map_err(|e| e.to_string())?;
        v.as_array()
            .and_then(|a| a.iter().find(|a| a["labels"]["alertname"] == "OverTls" && a["labels"]["ruler"] == "good"))
            .map(|_| ())
            .ok_or_else(|| format!("not yet: {v}"))
    })
    .unwrap();
    assert_eq!(notification_errors(&good), 0.0);

    // Trusting another CA: the query fails on Prometheus's certificate. Without a client
    // certificate: Alertmanager refuses the handshake.
    let bad = start_ruler(&mut fleet, work.path(), "bad", &query_config("other", true), &am_config("test", false));
    wait_for("the untrusted query API reported in the rule's health", Duration::from_secs(60), || {
        let r = rule(&bad, "tls:answer")?;
        let error = r["lastError"].as_str().unwrap_or_default().to_lowercase();
        (r["health"] == "err" && error.contains("certificate")).then_some(()).ok_or_else(|| r.to_string())
    })
    .unwrap();
    drop(bad);

    // The alert needs a query answer first, so the refused client certificate is tried by a
    // ruler whose queries get through.
    let no_client_cert =
        start_ruler(&mut fleet, work.path(), "anonymous", &query_config("test", true), &am_config("test", false));
    wait_for("alerts refused without a client certificate counted", Duration::from_secs(60), || {
        let n = notification_errors(&no_client_cert);
        (n > 0.0).then_some(()).ok_or_else(|| format!("{n} errors"))
    })
    .unwrap();
    let alerts = pki.get(&am_addr, "/api/v2/alerts").unwrap();
    assert!(!alerts.contains("\"anonymous\""), "an alert got through without a client certificate: {alerts}");

    // A tls_config naming a missing file stops the ruler at start, naming the field and file.
    let missing = work.path().join("missing-ca.pem");
    let out = strata_testkit::tools::run(
        strata_bin(),
        &[
            "rule".to_owned(),
            format!("--rule-file={}", work.path().join("rules.yml").display()),
            format!(
                "--query.config=- static_configs: ['{}']\n  scheme: https\n  http_config:\n    tls_config:\n      ca_file: {}\n",
                prom_slot.http,
                missing.display()
            ),
            format!("--data-dir={}", work.path().join("refused").display()),
            "--http-address=127.0.0.1:0".to_owned(),
            "--grpc-address=127.0.0.1:0".to_owned(),
        ],
    );
    assert!(!out.status.success(), "started with a missing ca_file");
    assert!(
        out.stderr.contains("ca_file") && out.stderr.contains("missing-ca.pem"),
        "stderr lacks the field and file:\n{}",
        out.stderr
    );
    drop(prometheus);
}
