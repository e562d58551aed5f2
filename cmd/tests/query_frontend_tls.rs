//! `strata query-frontend` in front of a real Prometheus 3.x that speaks HTTPS only and requires
//! a client certificate from a test CA (its `--web.config.file`), reached through
//! `--query-frontend.downstream-tripper-config(-file)`'s `tls_config` with the other fields of
//! Thanos's config set: instant and range queries get Prometheus's answers. A frontend trusting
//! another CA answers every query with an error naming the certificate; a malformed or
//! unhonourable tripper config, or one naming a missing file, stops the frontend at start,
//! naming the file and the field.

mod common;

use std::ffi::OsString;
use std::process::Command;

use common::tls::Pki;
use common::{output_within, strata_bin};
use strata_testkit::http::get_json;
use strata_testkit::{http, url_encode, Fleet, Node};

/// The tripper config trusting CA `ca`, with the client certificate and every other field.
fn tripper(pki: &Pki, ca: &str) -> String {
    format!(
        "idle_conn_timeout: 1m\nresponse_header_timeout: 30s\ntls_handshake_timeout: 5s\nexpect_continue_timeout: 0s\n\
         max_idle_conns: 10\nmax_idle_conns_per_host: 10\nmax_conns_per_host: 4\ntls_config:\n  ca_file: {}\n  \
         cert_file: {}\n  key_file: {}\n",
        pki.path(&format!("{ca}-ca.pem")),
        pki.path("client.pem"),
        pki.path("client.key")
    )
}

fn frontend_args(slot: &strata_testkit::Slot, downstream: &str, extra: Vec<OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "query-frontend".into(),
        format!("--http-address={}", slot.http).into(),
        format!("--query-frontend.downstream-url=https://{downstream}").into(),
        "--query-range.max-retries-per-request=1".into(),
    ];
    args.extend(extra);
    args
}

#[test]
fn frontend_reaches_an_https_downstream_with_its_tripper_config() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let mut fleet = Fleet::new(work.path());
    let prometheus = pki.start_prometheus(&mut fleet);
    let prom_slot = &prometheus.slot;

    let config = work.path().join("tripper.yml");
    std::fs::write(&config, tripper(&pki, "test")).unwrap();
    let slot = fleet.slot("frontend");
    let extra = vec![format!("--query-frontend.downstream-tripper-config-file={}", config.display()).into()];
    let frontend = Node::start(strata_bin(), &slot, frontend_args(&slot, &prom_slot.http, extra));
    let instant =
        get_json(frontend.http(), &format!("/api/v1/query?query={}&time=1700000000", url_encode("vector(42)")))
            .unwrap();
    assert_eq!(instant["status"], "success", "{instant}");
    assert_eq!(instant["data"]["result"][0]["value"][1], "42", "{instant}");
    // A range split into pieces (the default 24h split), each over TLS.
    let path =
        format!("/api/v1/query_range?query={}&start=1699898400&end=1700100000&step=3600", url_encode("vector(7)"));
    let range = get_json(frontend.http(), &path).unwrap();
    let theirs = pki.get(&prom_slot.http, &path).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(&theirs).unwrap();
    assert_eq!(range["data"], theirs["data"], "the frontend's answer is Prometheus's");

    // The inline form, trusting another CA: queries fail naming the certificate.
    let slot = fleet.slot("frontend-other-ca");
    let extra = vec![format!("--query-frontend.downstream-tripper-config={}", tripper(&pki, "other")).into()];
    let wrong = Node::start(strata_bin(), &slot, frontend_args(&slot, &prom_slot.http, extra));
    let (status, body) = http::get(wrong.http(), &format!("/api/v1/query?query={}", url_encode("vector(1)"))).unwrap();
    assert!(status >= 500, "{status}: {body}");
    let lower = body.to_lowercase();
    assert!(lower.contains("certificate") && lower.contains(&prom_slot.http), "{body}");
}

#[test]
fn bad_tripper_configs_stop_the_frontend_at_start() {
    // A refused config stops the frontend at once; one accepted by mistake would start it.
    const REFUSAL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
    let frontend = || {
        let mut cmd = Command::new(strata_bin());
        cmd.args([
            "query-frontend",
            "--http-address=127.0.0.1:0",
            "--query-frontend.downstream-url=https://127.0.0.1:1",
        ]);
        cmd
    };
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let file = |name: &str, text: &str| {
        let path = work.path().join(name);
        std::fs::write(&path, text).unwrap();
        format!("--query-frontend.downstream-tripper-config-file={}", path.display())
    };
    let missing_ca = format!("tls_config:\n  ca_file: {}\n", work.path().join("nope.pem").display());
    let half_client = format!("tls_config:\n  cert_file: {}\n", pki.path("client.pem"));
    for (flag, want) in [
        (file("garbage.yml", "idle_conn_timeout: [\n"), "garbage.yml"),
        (file("unknown.yml", "proxy_url: http://127.0.0.1:3128\n"), "proxy_url"),
        (file("duration.yml", "response_header_timeout: soon\n"), "response_header_timeout"),
        (file("expect.yml", "expect_continue_timeout: 1s\n"), "expect_continue_timeout"),
        (file("ca.yml", &missing_ca), "ca_file"),
        (file("client.yml", &half_client), "without key_file"),
        (
            format!("--query-frontend.downstream-tripper-config-file={}", work.path().join("none.yml").display()),
            "none.yml",
        ),
        ("--query-frontend.downstream-tripper-config=max_conns_per_host: lots".to_owned(), "max_conns_per_host"),
    ] {
        let mut cmd = frontend();
        cmd.arg(&flag);
        let out = output_within(&mut cmd, REFUSAL_DEADLINE);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}: started");
        assert!(stderr.contains(want), "{flag}: error does not name {want:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
    }
    // The downstream's proxy comes from the environment, as Thanos's transport takes it.
    for (var, value) in
        [("HTTPS_PROXY", "socks5://127.0.0.1:1080"), ("http_proxy", "https://user:secret@127.0.0.1:3128")]
    {
        let mut cmd = frontend();
        cmd.env(var, value);
        let out = output_within(&mut cmd, REFUSAL_DEADLINE);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(&var.to_uppercase()), "{var}: {stderr}");
        assert!(!stderr.contains("secret"), "{var}: the proxy's password shown: {stderr}");
    }
}
