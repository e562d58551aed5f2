//! Real Prometheus remote-writes its own metrics into strata; every sample Prometheus has had
//! acknowledged must survive a SIGKILL of strata and be in its TSDB. Two senders: Debian's
//! Prometheus 2.42 with remote write 1.0 into `strata receive`, and Prometheus 3.x (built by
//! interop/) with remote write 2.0 and metric metadata into `strata standalone`, whose
//! `/api/v1/metadata` must then report what Prometheus reports for the same metrics.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{parse_dump_line, raw_samples, strata_bin, LabelSet};
use strata_testkit::http::{self, get_json};
use strata_testkit::metrics::metric_sum;
use strata_testkit::{peer, tool, wait_for, Fleet, Node, Proc, Slot};

/// Scrapes (one per second) that must have been sent before the samples are checked.
const SCRAPES: u64 = 10;

fn highest_sent(metrics: &str) -> f64 {
    metric_sum(metrics, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds").unwrap_or(0.0)
}

fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// A real Prometheus sending remote write, and the strata component it sends to.
struct Sender {
    prometheus: std::path::PathBuf,
    /// Remote write 2.0 (`io.prometheus.write.v2.Request`) with metadata from the WAL, rather
    /// than 1.0.
    v2: bool,
    /// `strata standalone` (which also answers the query API) rather than `strata receive`.
    standalone: bool,
}

impl Sender {
    fn strata_args(&self, slot: &Slot) -> Vec<std::ffi::OsString> {
        if self.standalone {
            slot.standalone_args()
        } else {
            slot.receive_args()
        }
    }

    /// The default tenant's TSDB directory under the strata slot's data dir.
    fn tenant_tsdb(&self, slot: &Slot) -> std::path::PathBuf {
        let base = if self.standalone { slot.data_dir.join("receive") } else { slot.data_dir.clone() };
        base.join("default-tenant")
    }
}

#[test]
fn prometheus_2_42_remote_write_1_0_survives_receiver_kill() {
    remote_write_survives_kill(Sender { prometheus: tool("prometheus"), v2: false, standalone: false });
}

#[test]
fn prometheus_3_remote_write_2_0_with_metadata_survives_kill() {
    remote_write_survives_kill(Sender { prometheus: peer("prometheus"), v2: true, standalone: true });
}

/// (type, help, unit) of a metric family, as `/api/v1/metadata` reports each variant.
type MetadataEntry = (String, String, String);

/// Metadata by metric family as `/api/v1/metadata` reports it, variants sorted.
fn metadata(addr: &str) -> Result<BTreeMap<String, Vec<MetadataEntry>>, String> {
    let json = get_json(addr, "/api/v1/metadata")?;
    let data = json["data"].as_object().ok_or_else(|| format!("no metadata object in {json}"))?;
    let mut out = BTreeMap::new();
    for (family, entries) in data {
        let mut list: Vec<MetadataEntry> = entries
            .as_array()
            .ok_or_else(|| format!("metadata of {family} is not a list: {entries}"))?
            .iter()
            .map(|e| {
                let field = |name: &str| e[name].as_str().unwrap_or_default().to_string();
                (field("type"), field("help"), field("unit"))
            })
            .collect();
        list.sort();
        out.insert(family.clone(), list);
    }
    Ok(out)
}

/// The families whose metadata strata and Prometheus report differently, among those of
/// `families` (strata only knows what was sent, so families Prometheus never sent a series of
/// are not asked).
fn metadata_differences(strata: &str, prometheus: &str, families: &[String]) -> Result<Vec<String>, String> {
    let ours = metadata(strata)?;
    let theirs = metadata(prometheus)?;
    Ok(families
        .iter()
        .filter_map(|family| {
            let want = theirs.get(family)?;
            match ours.get(family) {
                Some(got) if got == want => None,
                got => Some(format!("{family}: Prometheus {want:?}, strata {got:?}")),
            }
        })
        .collect())
}

fn remote_write_survives_kill(sender: Sender) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(dir.path());
    let strata_slot = fleet.slot("strata");
    let strata = Node::start(strata_bin(), &strata_slot, sender.strata_args(&strata_slot));

    let prom_slot = fleet.slot("prometheus");
    let prom_addr = &prom_slot.http;
    // One shard sends samples in WAL order, so "highest sent timestamp >= T" implies that every
    // sample older than T has been acknowledged by strata.
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['{prom_addr}']\n\
         remote_write:\n  - url: http://{}/api/v1/receive\n    queue_config:\n      \
         batch_send_deadline: 1s\n      min_backoff: 10ms\n      max_backoff: 100ms\n      \
         min_shards: 1\n      max_shards: 1\n{}",
        strata_slot.remote_write,
        if sender.v2 { "    protobuf_message: io.prometheus.write.v2.Request\n" } else { "" }
    );
    let mut args = prom_slot.prometheus_args(&config);
    // Bounds shutdown if strata stops answering (the default waits a minute).
    args.extend(["--storage.remote.flush-deadline".into(), "10s".into()]);
    if sender.v2 {
        // Remote write 2.0 sends the metadata that the WAL holds, which it holds only with this.
        args.push("--enable-feature=metadata-wal-records".into());
    }
    let prometheus = Node::start(&sender.prometheus, &prom_slot, args);

    // T: SCRAPES seconds after the first sample Prometheus sent, so the check covers about
    // SCRAPES scrapes however slowly Prometheus starts. 2.42 reports the highest sent
    // timestamp in whole seconds.
    let first_sent = wait_for("Prometheus to send its first samples", Duration::from_secs(60), || {
        let (_, metrics) = http::get(prom_addr, "/metrics")?;
        match highest_sent(&metrics) {
            h if h > 0.0 => Ok(h as i64),
            _ => Err("no sample sent yet".to_string()),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let t_secs = first_sent + SCRAPES as i64;
    let sent = wait_for("Prometheus to have sent samples up to T", Duration::from_secs(SCRAPES + 60), || {
        let (_, metrics) = http::get(prom_addr, "/metrics")?;
        let failed = metric_sum(&metrics, "prometheus_remote_storage_samples_failed_total");
        if failed.is_some_and(|f| f > 0.0) {
            // Not retryable; stop polling right away.
            return Ok(Err(format!("Prometheus reports {failed:?} failed samples")));
        }
        let highest = highest_sent(&metrics);
        let total = metric_sum(&metrics, "prometheus_remote_storage_samples_total").unwrap_or(0.0);
        if highest >= t_secs as f64 {
            Ok(Ok((total, failed)))
        } else {
            Err(format!("highest sent {highest}, T {t_secs}, samples sent {total}"))
        }
    });
    let (samples_total, failed) = match sent {
        Ok(Ok(v)) => v,
        Ok(Err(e)) | Err(e) => panic!("{e}"),
    };
    assert_eq!(failed, Some(0.0), "prometheus_remote_storage_samples_failed_total must exist and be 0");

    // Strictly before T: samples at T itself may be split over a sent and an unsent request.
    let acked = raw_samples(prom_addr, t_secs * 1000 - 1).unwrap_or_else(|e| panic!("{e}"));
    let acked_samples: usize = acked.values().map(Vec::len).sum();
    let most_per_series = acked.values().map(Vec::len).max().unwrap_or(0);
    assert!(
        most_per_series >= (SCRAPES / 2) as usize,
        "expected at least {} scrapes before T, found at most {most_per_series} samples per series",
        SCRAPES / 2
    );
    assert!(
        samples_total >= acked_samples as f64,
        "Prometheus says it sent {samples_total} samples but holds {acked_samples} acknowledged ones"
    );

    // Metadata travels with the series in 2.0; strata keeps it in memory, so it is checked
    // before the crash and again once Prometheus has sent again after the restart.
    // A series name is its family's, or the family's plus a histogram or summary suffix.
    let families: Vec<String> = acked
        .keys()
        .filter_map(|labels| labels.iter().find(|(n, _)| n == "__name__").map(|(_, v)| v.as_str()))
        .flat_map(|name| {
            let stripped = ["_bucket", "_sum", "_count"].into_iter().filter_map(|s| name.strip_suffix(s));
            std::iter::once(name).chain(stripped).map(str::to_string).collect::<Vec<_>>()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let metadata_agrees = |strata_http: &str, when: &str| {
        wait_for(&format!("strata's metadata to match Prometheus's {when}"), Duration::from_secs(60), || {
            match metadata_differences(strata_http, prom_addr, &families)? {
                d if d.is_empty() => Ok(()),
                d => Err(format!("{} families differ:\n{}", d.len(), d.join("\n"))),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    };
    if sender.v2 {
        metadata_agrees(strata.http(), "before the kill");
    }

    // A crash must lose nothing that was acknowledged.
    strata.proc.kill();
    let strata = Node::start(strata_bin(), &strata_slot, sender.strata_args(&strata_slot));
    let status = get_json(strata.http(), "/api/v1/status/tsdb").unwrap_or_else(|e| panic!("{e}"));
    let num_series = status["data"]["headStats"]["numSeries"]
        .as_u64()
        .unwrap_or_else(|| panic!("no headStats.numSeries in {status}"));
    assert!(
        num_series >= acked.len() as u64,
        "after restart strata holds {num_series} series; Prometheus had {} acknowledged",
        acked.len()
    );
    if sender.v2 {
        metadata_agrees(strata.http(), "after the restart");
    }
    // Prometheus first: on shutdown it flushes its queue to strata, which must still be there.
    prometheus.proc.terminate(Duration::from_secs(30));
    let exit = strata.proc.terminate(Duration::from_secs(30));
    assert!(exit.success(), "strata exited with {exit} after SIGTERM");

    let dump_out = dir.path().join("dump.txt");
    let mut cmd = Command::new(strata_bin());
    cmd.args(["tools", "tsdb", "dump", "--tsdb.path"]).arg(sender.tenant_tsdb(&strata_slot));
    let out_file = std::fs::File::create(&dump_out).expect("create dump output");
    let dump_log = dir.path().join("dump.log");
    let dump = Proc::spawn_with_stdout("strata tools tsdb dump", cmd, out_file, &dump_log);
    let dump_exit = dump.wait(Duration::from_secs(120));
    let dump_text = std::fs::read_to_string(&dump_out).expect("read dump output");
    assert!(
        dump_exit.success(),
        "tsdb dump exited with {dump_exit}: {}",
        std::fs::read_to_string(&dump_log).unwrap_or_default()
    );

    let mut stored: BTreeMap<LabelSet, BTreeMap<i64, f64>> = BTreeMap::new();
    for line in dump_text.lines() {
        let (labels, value, ts) = parse_dump_line(line).unwrap_or_else(|e| panic!("{e}"));
        stored.entry(labels).or_default().insert(ts, value);
    }
    let mut missing = Vec::new();
    for (labels, samples) in &acked {
        for &(ts, value) in samples {
            match stored.get(labels).and_then(|s| s.get(&ts)) {
                Some(&v) if same_value(v, value) => {}
                Some(&v) => missing.push(format!("{labels:?} @{ts}: Prometheus {value}, strata {v}")),
                None => missing.push(format!("{labels:?} @{ts}: Prometheus {value}, strata none")),
            }
        }
    }
    eprintln!(
        "checked {acked_samples} acknowledged samples of {} series against {} stored series",
        acked.len(),
        stored.len()
    );
    assert!(
        missing.is_empty(),
        "{} of {acked_samples} acknowledged samples ({} series) are missing or differ after the \
         restart; first ones:\n{}",
        missing.len(),
        acked.len(),
        missing.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}
