//! What the end-to-end tests need beyond strata-testkit: the `strata` binary, remote-write
//! requests (strata_proto types), reading `tsdb dump` lines, and `strata standalone` next to
//! Prometheus.

#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

pub mod blocks;
pub mod corpus;
pub mod crash;
pub mod rule;
pub mod sidecar;
pub mod tls;

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use strata_proto::protocol;
use strata_testkit::http::get_json;
use strata_testkit::{http, peer, url_encode, Fleet, Node};

/// `cmd.output()` for a command expected to stop by itself (a server refusing its flags, say):
/// one still running after `limit` is killed and the test fails with what it printed, rather
/// than the suite hanging on a server that started after all.
pub fn output_within(cmd: &mut std::process::Command, limit: std::time::Duration) -> std::process::Output {
    use std::process::Stdio;
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                // What was read before an error is still worth showing.
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the command");
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the command") {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().expect("stdout reader"), stderr.join().expect("stderr reader"));
    match status {
        Some(status) => std::process::Output { status, stdout, stderr },
        None => panic!(
            "{cmd:?} still ran after {limit:?} (it was expected to stop) and was killed; its stderr: {}",
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// The `strata` binary Cargo built for these tests.
pub fn strata_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_strata"))
}

/// The headers of a remote-write 1.0 request.
pub const REMOTE_WRITE_V1: [(&str, &str); 3] = [
    (protocol::CONTENT_ENCODING_HEADER, protocol::SNAPPY_ENCODING),
    ("Content-Type", protocol::Version::V1.content_type()),
    (protocol::VERSION_HEADER, protocol::Version::V1.header_value()),
];

/// `req` as a remote-write 1.0 body: protobuf, snappy-compressed.
pub fn remote_write_body(req: &strata_proto::prometheus::WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy compresses any input")
}

/// Sends `req` as a remote-write 1.0 request; fails the test unless it gets a 2xx.
pub fn remote_write(addr: &str, path: &str, req: &strata_proto::prometheus::WriteRequest) {
    let (status, text) = http::post(addr, path, &REMOTE_WRITE_V1, &remote_write_body(req))
        .unwrap_or_else(|e| panic!("remote write to {addr}{path}: {e}"));
    assert!((200..300).contains(&status), "remote write to {addr}{path}: {status} {text}");
}

/// `req` with `labels` added to every series (kept sorted): what a store adds as external labels.
pub fn with_labels(
    req: &strata_proto::prometheus::WriteRequest,
    labels: &[(&str, &str)],
) -> strata_proto::prometheus::WriteRequest {
    let mut req = req.clone();
    for ts in &mut req.timeseries {
        ts.labels.extend(
            labels
                .iter()
                .map(|(name, value)| strata_proto::prometheus::Label { name: (*name).into(), value: (*value).into() }),
        );
        ts.labels.sort_by(|a, b| a.name.cmp(&b.name));
    }
    req
}

/// The external labels every series of a `strata standalone` carries by default: the tenant's
/// label and the default `--label` of its blocks.
pub const STANDALONE_LABELS: [(&str, &str); 2] = [("receive", "standalone"), ("tenant_id", "default-tenant")];

/// A label set, sorted by name.
pub type LabelSet = Vec<(String, String)>;

/// Parses `{a="b", c="d"}` as printed by Prometheus's `labels.String()` (Go-quoted values),
/// returning the labels and the rest of the input.
pub fn parse_labels(s: &str) -> Result<(LabelSet, &str), String> {
    let mut rest = s.strip_prefix('{').ok_or_else(|| format!("no '{{' in {s:?}"))?;
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('}') {
        return Ok((labels, after));
    }
    loop {
        let (name, after) = rest.split_once("=\"").ok_or_else(|| format!("no label value in {s:?}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("dangling escape in {s:?}")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {s:?}")),
            }
        };
        labels.push((name.to_string(), value));
        rest = &after[end + 1..];
        if let Some(r) = rest.strip_prefix(", ") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('}') {
            labels.sort();
            return Ok((labels, r));
        } else {
            return Err(format!("expected ', ' or '}}' in {s:?}"));
        }
    }
}

/// Parses a `tsdb dump` line: `{labels} value timestamp_ms`.
pub fn parse_dump_line(line: &str) -> Result<(LabelSet, f64, i64), String> {
    let (labels, rest) = parse_labels(line)?;
    let mut fields = rest.split_whitespace();
    let value =
        fields.next().and_then(|v| v.parse::<f64>().ok()).ok_or_else(|| format!("no value in dump line {line:?}"))?;
    let ts = fields
        .next()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| format!("no timestamp in dump line {line:?}"))?;
    Ok((labels, value, ts))
}

/// Every raw sample the query API at `addr` (Prometheus or strata) holds with a timestamp of at
/// most `at_ms` and at most ten minutes old, by series.
pub fn raw_samples(addr: &str, at_ms: i64) -> Result<BTreeMap<LabelSet, Vec<(i64, f64)>>, String> {
    range_samples(addr, r#"{__name__=~".+"}[10m]"#, at_ms)
}

/// The raw samples of the range selector `selector` (`m[2h]`) evaluated at `at_ms` by the query
/// API at `addr`, by series; a series answered twice is an error.
pub fn range_samples(addr: &str, selector: &str, at_ms: i64) -> Result<BTreeMap<LabelSet, Vec<(i64, f64)>>, String> {
    let query = url_encode(selector);
    let time = format!("{}.{:03}", at_ms.div_euclid(1000), at_ms.rem_euclid(1000));
    let json = get_json(addr, &format!("/api/v1/query?query={query}&time={time}"))?;
    let result = json["data"]["result"].as_array().ok_or_else(|| format!("no matrix in query answer: {json}"))?;
    let mut out = BTreeMap::new();
    for series in result {
        let mut labels: LabelSet = series["metric"]
            .as_object()
            .ok_or_else(|| format!("no metric in {series}"))?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        labels.sort();
        let mut samples = Vec::new();
        for point in series["values"].as_array().ok_or_else(|| format!("no values in {series}"))? {
            let ts = point[0].as_f64().ok_or_else(|| format!("bad timestamp in {point}"))?;
            let value =
                point[1].as_str().and_then(|v| v.parse::<f64>().ok()).ok_or_else(|| format!("bad value in {point}"))?;
            samples.push(((ts * 1000.0).round() as i64, value));
        }
        if out.insert(labels, samples).is_some() {
            return Err(format!("a series answered twice: {series}"));
        }
    }
    Ok(out)
}

/// Prometheus 3.x feature flags for PromQL that strata implements unconditionally: experimental
/// functions (`sort_by_label`, `info`, `limitk`, …), duration expressions, `anchored` and
/// `smoothed` range selectors, and metric names removed at the end of the query rather than by
/// each function (which changes what `by (__name__)` sees).
pub const PROMQL_FEATURES: [&str; 4] = [
    "promql-experimental-functions",
    "promql-duration-expr",
    "promql-extended-range-selectors",
    "promql-delayed-name-removal",
];

/// Starts Prometheus 3.x (interop/) as the reference of the differential tests, without waiting
/// for it: remote-write receiver on (path /api/v1/write), nothing scraped, and the PromQL
/// features that strata always has switched on (see [`PROMQL_FEATURES`]); fails clearly when the
/// peer is missing.
pub fn spawn_reference_prometheus(fleet: &mut Fleet) -> Node {
    let slot = fleet.slot("prometheus");
    let mut args = slot.prometheus_args("global:\n  scrape_interval: 1h\n");
    args.push("--web.enable-remote-write-receiver".into());
    args.push(format!("--enable-feature={}", PROMQL_FEATURES.join(",")).into());
    Node::spawn(&peer("prometheus"), &slot, args)
}

/// `strata standalone` and Prometheus (remote-write receiver on, nothing scraped), both ready,
/// for asking both the same questions about the same data.
pub struct StrataAndPrometheus {
    pub strata: Node,
    pub prometheus: Node,
}

impl StrataAndPrometheus {
    /// Starts both with data and logs under `work` (Prometheus as [`spawn_reference_prometheus`]
    /// starts it).
    pub fn start(work: &Path) -> StrataAndPrometheus {
        let mut fleet = Fleet::new(work);
        let strata = fleet.slot("strata");
        // Both start at once; then both must become ready.
        let mut both = StrataAndPrometheus {
            strata: Node::spawn(strata_bin(), &strata, strata.standalone_args()),
            prometheus: spawn_reference_prometheus(&mut fleet),
        };
        both.strata.wait_ready();
        both.prometheus.wait_ready();
        both
    }

    /// Remote-writes `req` to both; Prometheus's copy carries the labels strata adds
    /// ([`STANDALONE_LABELS`]), so that both hold the same series.
    pub fn write_both(&self, req: &strata_proto::prometheus::WriteRequest) {
        remote_write(&self.strata.slot.remote_write, "/api/v1/receive", req);
        remote_write(self.prometheus.http(), "/api/v1/write", &with_labels(req, &STANDALONE_LABELS));
    }
}

/// A real Alertmanager (Debian's) on a free port of 127.0.0.1 with a receiver that sends
/// nowhere, its data and log under `dir`; ready when returned, with its `host:port`.
pub fn start_alertmanager(dir: &Path) -> (strata_testkit::Proc, String) {
    let addr = format!("127.0.0.1:{}", strata_testkit::free_port());
    let am_dir = dir.join("alertmanager");
    std::fs::create_dir_all(&am_dir).unwrap();
    let config = am_dir.join("alertmanager.yml");
    std::fs::write(&config, "route:\n  receiver: none\nreceivers:\n  - name: none\n").unwrap();
    let mut cmd = std::process::Command::new(strata_testkit::tool("prometheus-alertmanager"));
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", am_dir.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=");
    let mut am = strata_testkit::Proc::spawn("alertmanager", cmd, &am_dir.join("log"));
    am.wait_http_ok(&addr, "/-/ready", std::time::Duration::from_secs(60));
    (am, addr)
}

/// The alert named `name` as Alertmanager lists it (`/api/v2/alerts`), once it is there.
pub fn alert_in_alertmanager(am: &str, name: &str) -> serde_json::Value {
    strata_testkit::wait_for(&format!("alert {name} in Alertmanager"), std::time::Duration::from_secs(60), || {
        let v = get_json(am, "/api/v2/alerts")?;
        v.as_array()
            .and_then(|a| a.iter().find(|a| a["labels"]["alertname"] == name).cloned())
            .ok_or_else(|| format!("not yet: {v}"))
    })
    .unwrap()
}
