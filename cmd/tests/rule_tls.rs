//! `strata rule` reaching its peers over TLS, as Thanos's `http_config.tls_config` configures
//! it: a real Prometheus 3.x as the query API and a real Alertmanager (Debian's), both serving
//! HTTPS only and requiring a client certificate signed by a test CA (their `--web.config.file`).
//! The ruler's recording rule answers through Prometheus and its alert reaches Alertmanager;
//! a ruler trusting another CA, or without a client certificate, gets nothing through and
//! says so in its rule health and notification metrics; a tls_config naming a missing file
//! stops the ruler at start.

mod common;

use std::time::Duration;

use common::rule::{notification_errors, rule, start_alertmanager, start_ruler};
use common::strata_bin;
use common::tls::Pki;
use strata_testkit::{wait_for, Fleet};

#[test]
fn ruler_reaches_prometheus_and_alertmanager_over_tls_with_client_certificates() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let web_config = pki.web_config();
    let mut fleet = Fleet::new(work.path());

    let prometheus = pki.start_prometheus(&mut fleet);
    let prom_slot = prometheus.slot.clone();
    let (mut am, am_addr) = start_alertmanager(work.path(), Some(&web_config));
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
