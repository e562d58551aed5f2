//! `strata sidecar` beside a real Prometheus (3.x from interop/, and Debian's 2.42), each with
//! external labels `cluster` and `prometheus_replica`, scraping itself and the sidecar:
//! - `strata query` over the sidecar (deduplicating on `prometheus_replica`), `thanos query` over
//!   it, and `strata query` over `thanos sidecar` beside the same Prometheus answer instant and
//!   range queries as Prometheus itself does (the external labels aside);
//! - a block made by `promtool tsdb create-blocks-from openmetrics` in Prometheus's data
//!   directory before it starts (the test-only way to have a block at once) is shipped to an S3
//!   bucket (moto) with the Thanos section and recorded in `thanos.shipper.json`; `thanos tools
//!   bucket verify` passes on the bucket;
//! - without external labels the sidecar is not ready and says what to set, serves and ships
//!   nothing; with Prometheus down it is not ready with the reason, and recovers by itself.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::sidecar::{prometheus_args, prometheus_config, sidecar_args};
use common::strata_bin;
use serde_json::Value;
use strata_testkit::http::{get, get_json, url_encode};
use strata_testkit::promtool::{create_blocks, om_timestamp};
use strata_testkit::{peer, tool, wait_for, Fleet, Moto, Node};

const BUCKET: &str = "sidecar";
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// One hour of a counter, one sample a minute, in a block made by promtool in `data_dir`,
/// ending an hour ago: Prometheus loads it at start.
fn seed_block(data_dir: &Path, end: i64) -> PathBuf {
    let start = end - HOUR;
    let mut om = String::from("# TYPE sidecar_seeded counter\n");
    for (i, t) in (start..end).step_by(MINUTE as usize).enumerate() {
        om.push_str(&format!("sidecar_seeded_total{{kind=\"seed\"}} {} {}\n", i * 3, om_timestamp(t)));
    }
    om.push_str("# EOF\n");
    let blocks = create_blocks(&om, data_dir);
    assert_eq!(blocks.len(), 1, "one block expected: {blocks:?}");
    blocks[0].clone()
}

/// A query answer with the external labels removed from every series, sorted, values as text.
fn answer(addr: &str, path: &str) -> Result<BTreeMap<String, Vec<(i64, String)>>, String> {
    let json = get_json(addr, path)?;
    if json["status"] != "success" {
        return Err(format!("{addr}{path}: {json}"));
    }
    let mut out = BTreeMap::new();
    for series in json["data"]["result"].as_array().ok_or_else(|| format!("no result: {json}"))? {
        let mut metric: BTreeMap<String, String> = series["metric"]
            .as_object()
            .ok_or_else(|| format!("no metric in {series}"))?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        metric.remove("cluster");
        metric.remove("prometheus_replica");
        let points: Vec<&Value> = match (series.get("values"), series.get("value")) {
            (Some(Value::Array(v)), _) => v.iter().collect(),
            (_, Some(v)) => vec![v],
            _ => return Err(format!("no values in {series}")),
        };
        let points = points
            .iter()
            .map(|p| {
                ((p[0].as_f64().unwrap_or(f64::NAN) * 1000.0).round() as i64, p[1].as_str().unwrap_or("").to_owned())
            })
            .collect();
        if out.insert(format!("{metric:?}"), points).is_some() {
            return Err(format!("{addr}{path}: a series answered twice: {series}"));
        }
    }
    Ok(out)
}

/// Whether two answers hold the same series and points (values equal to 1e-9 relative).
fn same(a: &BTreeMap<String, Vec<(i64, String)>>, b: &BTreeMap<String, Vec<(i64, String)>>) -> Result<(), String> {
    if a.keys().ne(b.keys()) {
        return Err(format!("series differ: {:?} vs {:?}", a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>()));
    }
    for (k, pa) in a {
        let pb = &b[k];
        let close = pa.len() == pb.len()
            && pa.iter().zip(pb).all(|((ta, va), (tb, vb))| {
                ta == tb
                    && (va == vb
                        || matches!((va.parse::<f64>(), vb.parse::<f64>()), (Ok(x), Ok(y)) if (x - y).abs() <= 1e-9 * x.abs().max(y.abs())))
            });
        if !close {
            return Err(format!("{k}: {pa:?} vs {pb:?}"));
        }
    }
    Ok(())
}

/// The queries compared, at `t` (ms): instant and range (the last minute, 5 s steps; the seeded
/// block's hour, 1 min steps).
fn queries(t: i64, block_end: i64) -> Vec<String> {
    let mut out = Vec::new();
    for q in [
        "up",
        "rate(prometheus_http_requests_total[1m])",
        "sum by (job) (scrape_samples_scraped)",
        "sidecar_seeded_total",
    ] {
        let at = if q.starts_with("sidecar_seeded") { block_end - 10 * MINUTE } else { t };
        out.push(format!("/api/v1/query?query={}&time={}", url_encode(q), om_timestamp(at)));
    }
    for q in ["up", "rate(prometheus_http_requests_total[1m])", "prometheus_tsdb_head_series"] {
        out.push(format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=5",
            url_encode(q),
            om_timestamp(t - MINUTE),
            om_timestamp(t)
        ));
    }
    out.push(format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        url_encode("rate(sidecar_seeded_total[5m])"),
        om_timestamp(block_end - HOUR),
        om_timestamp(block_end)
    ));
    out
}

fn run_shipping_and_serving(prometheus_bin: &Path, name: &str) {
    let work = tempfile::tempdir().unwrap();
    let moto = Moto::start(work.path());
    let objstore = moto.new_bucket(BUCKET);
    let mut fleet = Fleet::new(work.path());
    let prom_slot = fleet.slot("prometheus");
    let sidecar_slot = fleet.slot("sidecar");
    let thanos_sidecar_slot = fleet.slot("thanos-sidecar");
    let query_slot = fleet.slot("query");
    let thanos_query_slot = fleet.slot("thanos-query");
    let cross_query_slot = fleet.slot("query-over-thanos");

    let block_end = (now_ms() - HOUR) / HOUR * HOUR;
    let block = seed_block(&prom_slot.data_dir, block_end);
    let block_id = block.file_name().unwrap().to_str().unwrap().to_owned();

    let config = prometheus_config(
        "1s",
        &[&prom_slot.http, &sidecar_slot.http],
        &[("cluster", "test"), ("prometheus_replica", "r0")],
    );
    let _prometheus = Node::start(prometheus_bin, &prom_slot, prometheus_args(&prom_slot, &config, "2h"));
    let sidecar = Node::start(strata_bin(), &sidecar_slot, sidecar_args(&sidecar_slot, &prom_slot, Some(&objstore)));
    // Without a bucket nothing is shipped and the sidecar serves on.
    let bucketless_slot = fleet.slot("sidecar-without-bucket");
    let mut bucketless = Node::start(strata_bin(), &bucketless_slot, sidecar_args(&bucketless_slot, &prom_slot, None));
    let thanos = peer("thanos");
    let mut thanos_sidecar_args: Vec<OsString> = vec![
        "sidecar".into(),
        format!("--prometheus.url=http://{}", prom_slot.http).into(),
        format!("--http-address={}", thanos_sidecar_slot.http).into(),
        format!("--grpc-address={}", thanos_sidecar_slot.grpc).into(),
    ];
    thanos_sidecar_args.push("--tsdb.path".into());
    thanos_sidecar_args.push(prom_slot.data_dir.clone().into());
    let _thanos_sidecar = Node::start(&thanos, &thanos_sidecar_slot, thanos_sidecar_args);
    let replica = "--query.replica-label=prometheus_replica";
    let mut q = query_slot.query_args(&[&sidecar_slot.grpc]);
    q.push(replica.into());
    let query = Node::start(strata_bin(), &query_slot, q);
    let mut tq = thanos_query_slot.thanos_query_args(&[&sidecar_slot.grpc]);
    tq.push(replica.into());
    let thanos_query = Node::start(&thanos, &thanos_query_slot, tq);
    let mut cq = cross_query_slot.query_args(&[&thanos_sidecar_slot.grpc]);
    cq.push(replica.into());
    let cross_query = Node::start(strata_bin(), &cross_query_slot, cq);

    // Enough scrapes for a rate over a minute, and every querier sees its store.
    let prom = prom_slot.http.as_str();
    wait_for("a minute of scrapes", Duration::from_secs(120), || {
        let count = answer(prom, &format!("/api/v1/query?query={}", url_encode("count_over_time(up[2m])")))?;
        match count.values().next().and_then(|p| p.first()).and_then(|(_, v)| v.parse::<f64>().ok()) {
            Some(n) if n >= 65.0 => Ok(()),
            other => Err(format!("{other:?} samples")),
        }
    })
    .unwrap();
    let t = now_ms() - 5_000;
    for (who, addr) in [
        ("strata query over strata sidecar", query.http()),
        ("thanos query over strata sidecar", thanos_query.http()),
        ("strata query over thanos sidecar", cross_query.http()),
    ] {
        for path in queries(t, block_end) {
            let theirs = answer(prom, &path).unwrap();
            assert!(!theirs.is_empty(), "{name}: Prometheus has no answer to {path}");
            // A querier learns its stores' ranges a moment after it starts: poll until it agrees.
            wait_for(&format!("{name}: {who} answers {path} as Prometheus"), Duration::from_secs(30), || {
                same(&answer(addr, &path)?, &theirs)
            })
            .unwrap();
        }
    }
    // External labels are on the series the sidecar serves (without dedup), replica included.
    let raw = get_json(query.http(), &format!("/api/v1/query?query=up&dedup=false&time={}", om_timestamp(t))).unwrap();
    let metric = &raw["data"]["result"][0]["metric"];
    assert_eq!(
        (metric["cluster"].as_str(), metric["prometheus_replica"].as_str()),
        (Some("test"), Some("r0")),
        "{raw}"
    );

    // The seeded block reaches the bucket with the Thanos section and the state file lists it.
    let state_file = prom_slot.data_dir.join("thanos.shipper.json");
    wait_for("the seeded block shipped", Duration::from_secs(90), || {
        let text = std::fs::read_to_string(&state_file).map_err(|e| e.to_string())?;
        let state: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let uploaded = state["uploaded"].as_array().cloned().unwrap_or_default();
        uploaded.iter().any(|u| u == block_id.as_str()).then_some(()).ok_or(text)
    })
    .unwrap();
    let ls = Command::new(&thanos)
        .args(["tools", "bucket", "ls", "-o", "json", &format!("--objstore.config={objstore}")])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&ls.stdout);
    // One pretty-printed meta.json after the other.
    let meta: Value = serde_json::Deserializer::from_str(&listing)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .find(|m| m["ulid"] == block_id.as_str())
        .unwrap_or_else(|| {
            panic!("{name}: block {block_id} not listed: {listing} {}", String::from_utf8_lossy(&ls.stderr))
        });
    assert_eq!(meta["thanos"]["source"], "sidecar", "{meta}");
    assert_eq!(meta["thanos"]["labels"]["cluster"], "test", "{meta}");
    assert_eq!(meta["thanos"]["labels"]["prometheus_replica"], "r0", "{meta}");
    let verify = Command::new(&thanos)
        .args(["tools", "bucket", "verify", &format!("--objstore.config={objstore}")])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{name}: thanos tools bucket verify: {}", String::from_utf8_lossy(&verify.stderr));

    bucketless.proc.assert_running();
    assert_eq!(ready(&bucketless).0, 200, "{name}: the sidecar without a bucket is ready");
    let metrics = get(sidecar.http(), "/metrics").unwrap().1;
    for line in ["thanos_sidecar_prometheus_up 1", "thanos_shipper_uploads_total 1", "grpc_server_handled_total"] {
        assert!(metrics.contains(line), "{name}: no {line:?} in the sidecar's metrics:\n{metrics}");
    }
}

#[test]
fn serves_and_ships_prometheus_3() {
    run_shipping_and_serving(&peer("prometheus"), "Prometheus 3.x");
}

#[test]
fn serves_and_ships_prometheus_2_42() {
    run_shipping_and_serving(&tool("prometheus"), "Prometheus 2.42");
}

/// The sidecar's `/-/ready`: status and body.
fn ready(sidecar: &Node) -> (u16, String) {
    get(sidecar.http(), "/-/ready").unwrap_or((0, String::new()))
}

#[test]
fn readiness_follows_prometheus_and_its_external_labels() {
    let work = tempfile::tempdir().unwrap();
    let moto = Moto::start(work.path());
    let objstore = moto.new_bucket(BUCKET);
    let mut fleet = Fleet::new(work.path());
    let prom_slot = fleet.slot("prometheus");
    let sidecar_slot = fleet.slot("sidecar");
    let query_slot = fleet.slot("query");
    seed_block(&prom_slot.data_dir, (now_ms() - HOUR) / HOUR * HOUR);
    let prometheus = peer("prometheus");

    // No external labels: not ready, saying what to set; nothing served, nothing shipped.
    let unlabelled = prometheus_config("1s", &[&prom_slot.http], &[]);
    let prom = Node::start(&prometheus, &prom_slot, prometheus_args(&prom_slot, &unlabelled, "2h"));
    let sidecar = Node::spawn(strata_bin(), &sidecar_slot, sidecar_args(&sidecar_slot, &prom_slot, Some(&objstore)));
    let (status, body) = wait_for("the sidecar to answer", Duration::from_secs(30), || {
        let (status, body) = ready(&sidecar);
        (status == 503 && body.contains("external labels"))
            .then(|| (status, body.clone()))
            .ok_or(format!("{status} {body}"))
    })
    .unwrap();
    assert!(body.contains("global.external_labels") && body.contains("prometheus.yml"), "{status} {body}");
    let query = Node::start(strata_bin(), &query_slot, query_slot.query_args(&[&sidecar_slot.grpc]));
    let up = get_json(query.http(), &format!("/api/v1/query?query=up&time={}", om_timestamp(now_ms()))).unwrap();
    assert_eq!(up["data"]["result"].as_array().map(Vec::len), Some(0), "served without external labels: {up}");
    assert!(!prom_slot.data_dir.join("thanos.shipper.json").exists(), "shipped without external labels");
    let metrics = get(sidecar.http(), "/metrics").unwrap().1;
    assert!(metrics.contains("thanos_shipper_uploads_total 0"), "{metrics}");

    // Prometheus down: not ready, naming it unreachable.
    prom.proc.kill();
    wait_for("not ready while Prometheus is down", Duration::from_secs(30), || {
        let (status, body) = ready(&sidecar);
        (status == 503 && body.contains("unreachable")).then_some(()).ok_or(format!("{status} {body}"))
    })
    .unwrap();

    // Back with external labels: ready again by itself, serving with them.
    let labelled = prometheus_config("1s", &[&prom_slot.http], &[("cluster", "test"), ("prometheus_replica", "r1")]);
    let _prom = Node::start(&prometheus, &prom_slot, prometheus_args(&prom_slot, &labelled, "2h"));
    wait_for("ready once Prometheus is back", Duration::from_secs(60), || {
        let (status, body) = ready(&sidecar);
        (status == 200).then_some(()).ok_or(format!("{status} {body}"))
    })
    .unwrap();
    wait_for("served with external labels", Duration::from_secs(60), || {
        let up = get_json(query.http(), &format!("/api/v1/query?query=up&time={}", om_timestamp(now_ms())))?;
        let metric = &up["data"]["result"][0]["metric"];
        (metric["prometheus_replica"] == "r1").then_some(()).ok_or(up.to_string())
    })
    .unwrap();
}
