//! `strata rule` with a recording rule and an alert evaluated every second, and a Debian
//! Alertmanager for it to notify: what the ruler's end-to-end tests share.

use std::path::Path;
use std::process::Command;

use strata_testkit::http::get_json;
use strata_testkit::{tool, Fleet, Node, Proc};

use crate::common::strata_bin;

/// A recording rule (`tls:answer`, 42) and an alert (`OverTls`) that always fires.
pub const RULES: &str = r#"groups:
  - name: tls
    interval: 1s
    rules:
      - record: tls:answer
        expr: vector(42)
      - alert: OverTls
        expr: vector(1) > 0
"#;

/// A Debian Alertmanager on a free port of 127.0.0.1 (HTTPS only with `web_config`), and its
/// address.
pub fn start_alertmanager(dir: &Path, web_config: Option<&str>) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", strata_testkit::free_port());
    let am_dir = dir.join("alertmanager");
    std::fs::create_dir_all(&am_dir).unwrap();
    let config = am_dir.join("alertmanager.yml");
    std::fs::write(&config, "route:\n  receiver: none\nreceivers:\n  - name: none\n").unwrap();
    let mut cmd = Command::new(tool("prometheus-alertmanager"));
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", am_dir.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=");
    if let Some(web_config) = web_config {
        cmd.arg(format!("--web.config.file={web_config}"));
    }
    (Proc::spawn("alertmanager", cmd, &am_dir.join("log")), addr)
}

/// Starts `strata rule` on a new slot of `fleet` with the given peer configs.
pub fn start_ruler(fleet: &mut Fleet, dir: &Path, name: &str, query_config: &str, am_config: &str) -> Node {
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
pub fn rule(ruler: &Node, name: &str) -> Result<serde_json::Value, String> {
    let v = get_json(ruler.http(), "/api/v1/rules")?;
    v["data"]["groups"][0]["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["name"] == name).cloned())
        .ok_or_else(|| format!("no rule {name}: {v}"))
}

/// `prometheus_notifications_errors_total` summed over the ruler's Alertmanagers.
pub fn notification_errors(ruler: &Node) -> f64 {
    let (_, text) = strata_testkit::http::get(ruler.http(), "/metrics").unwrap();
    text.lines()
        .filter(|l| l.starts_with("prometheus_notifications_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
