//! Prometheus with a sidecar beside it: its configuration and command line, and the sidecar's.

use std::ffi::OsString;

use strata_testkit::Slot;

/// Prometheus's configuration: scrape `targets` (job `targets`) every `scrape_interval`, with
/// `external` labels.
pub fn prometheus_config(scrape_interval: &str, targets: &[&str], external: &[(&str, &str)]) -> String {
    let mut config =
        format!("global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\n");
    if !external.is_empty() {
        config.push_str("  external_labels:\n");
        for (n, v) in external {
            config.push_str(&format!("    {n}: {v}\n"));
        }
    }
    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    config.push_str(&format!(
        "scrape_configs:\n  - job_name: targets\n    static_configs:\n      - targets: [{}]\n",
        list.join(", ")
    ));
    config
}

/// Prometheus on `slot` with `config`, cutting blocks of `block_duration` and never compacting
/// them further (min and max block duration equal, as a sidecar requires).
pub fn prometheus_args(slot: &Slot, config: &str, block_duration: &str) -> Vec<OsString> {
    let mut args = slot.prometheus_args(config);
    args.push(format!("--storage.tsdb.min-block-duration={block_duration}").into());
    args.push(format!("--storage.tsdb.max-block-duration={block_duration}").into());
    args
}

/// `strata sidecar` on `slot` beside the Prometheus on `prometheus`, re-reading its
/// configuration every second, shipping to `objstore` (YAML) if given.
pub fn sidecar_args(slot: &Slot, prometheus: &Slot, objstore: Option<&str>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "sidecar".into(),
        format!("--prometheus.url=http://{}", prometheus.http).into(),
        "--prometheus.get_config_interval=1s".into(),
        "--tsdb.path".into(),
        prometheus.data_dir.clone().into(),
        format!("--http-address={}", slot.http).into(),
        format!("--grpc-address={}", slot.grpc).into(),
    ];
    if let Some(yaml) = objstore {
        args.push(format!("--objstore.config={yaml}").into());
    }
    args
}
