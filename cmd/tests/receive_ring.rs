//! The receive ring end to end: three `strata receive` router-ingestors with one
//! hashrings.json (tenant `team-k` on a ketama hashring, every other tenant on a hashmod one,
//! the same three endpoints), replication factor 3, each with its own
//! `--label receive_replica="N"`. The corpus (tests/common/corpus.rs) is remote-written, ten
//! minutes at a time, for both tenants, always to one receiver:
//! - every series lands on all three;
//! - with one receiver SIGKILLed, writes still answer 200 (quorum is 2 of 3);
//! - with two down, 503 (retryable), as Thanos answers;
//! - after both restart on their data and the refused window is sent again (as Prometheus
//!   retries it, until 200, or 409 once a quorum of replicas holds it),
//!   `strata query --query.replica-label=receive_replica --deduplication.func=chain` over the
//!   three answers every series, and every sample once.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use common::{corpus, remote_write_body, strata_bin, REMOTE_WRITE_V1};
use strata_proto::prometheus as v1;
use strata_testkit::{http, wait_for, Fleet, Node, Slot};

const TENANTS: [&str; 2] = ["default-tenant", "team-k"];

/// One hashring per algorithm over the same endpoints: `team-k` on ketama, the rest on hashmod.
fn hashrings(slots: &[Slot]) -> String {
    let endpoints: Vec<String> = slots.iter().map(|s| format!("{:?}", s.grpc)).collect();
    let endpoints = endpoints.join(",");
    format!(
        r#"[{{"hashring":"ketama","tenants":["team-k"],"algorithm":"ketama","endpoints":[{endpoints}]}},
            {{"hashring":"hashmod","endpoints":[{endpoints}]}}]"#
    )
}

fn receive_args(slot: &Slot, ring: &Path, replica: usize) -> Vec<OsString> {
    let mut args = slot.receive_args();
    args.extend([
        format!("--receive.hashrings-file={}", ring.display()).into(),
        format!("--receive.local-endpoint={}", slot.grpc).into(),
        "--receive.replication-factor=3".into(),
        format!("--label=receive_replica=\"{replica}\"").into(),
    ]);
    args
}

/// Remote-writes `req` as `tenant`; the status and body of the answer.
fn write(addr: &str, tenant: &str, req: &v1::WriteRequest) -> (u16, String) {
    let mut headers = REMOTE_WRITE_V1.to_vec();
    headers.push(("THANOS-TENANT", tenant));
    http::post(addr, "/api/v1/receive", &headers, &remote_write_body(req)).unwrap_or_else(|e| panic!("{e}"))
}

/// Series in `tenant`'s head on the receiver at `http_addr` (0 before its first write).
fn head_series(http_addr: &str, tenant: &str) -> u64 {
    let (status, body) = http::request(http_addr, "GET", "/api/v1/status/tsdb", &[("THANOS-TENANT", tenant)], b"")
        .unwrap_or_else(|e| panic!("{e}"));
    match status {
        200 => {
            let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            json["data"]["headStats"]["numSeries"].as_u64().unwrap_or_else(|| panic!("{json}"))
        }
        404 => 0,
        _ => panic!("TSDB status of {tenant} at {http_addr}: {status} {body}"),
    }
}

/// The single value of an instant query at `t`.
fn scalar(addr: &str, query: &str, t: i64) -> Result<f64, String> {
    match corpus::ask(addr, &corpus::Eval::Instant { time: t }.path(query))? {
        corpus::Answer::Data { series, .. } if series.len() == 1 => Ok(series[0].1[0].1),
        other => Err(format!("{query}: {other:?}")),
    }
}

#[test]
fn replicated_writes_survive_receivers_going_down() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let slots = fleet.slots("receive", 3);
    let ring = work.path().join("hashrings.json");
    std::fs::write(&ring, hashrings(&slots)).expect("write hashrings.json");
    let mut nodes: Vec<Option<Node>> = Node::start_all(strata_bin(), &slots, |s| {
        let i = slots.iter().position(|x| x.name == s.name).expect("own slot");
        receive_args(s, &ring, i)
    })
    .into_iter()
    .map(Some)
    .collect();

    let t0 = corpus::data_start();
    let data = corpus::generate();
    let requests = corpus::write_requests(t0, &data);
    assert!(requests.len() >= 8, "{} windows", requests.len());
    let router = slots[0].remote_write.clone();

    // All three up: every series lands on every receiver.
    for req in &requests[..3] {
        for tenant in TENANTS {
            assert_eq!(write(&router, tenant, req).0, 200, "{tenant}");
        }
    }
    let written: std::collections::BTreeSet<String> =
        requests[..3].iter().flat_map(|r| r.timeseries.iter().map(|ts| format!("{:?}", ts.labels))).collect();
    for slot in &slots {
        for tenant in TENANTS {
            // The third replica may land just after the answer (quorum is two).
            wait_for(&format!("{tenant}'s series on {}", slot.name), Duration::from_secs(10), || {
                match head_series(&slot.http, tenant) {
                    n if n == written.len() as u64 => Ok(()),
                    n => Err(format!("{n} of {} series", written.len())),
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    // One receiver down: quorum holds, through either surviving router.
    if let Some(node) = nodes[2].take() {
        node.proc.kill();
    }
    for (w, req) in requests.iter().enumerate().take(5).skip(3) {
        let router = &slots[w % 2].remote_write;
        for tenant in TENANTS {
            let (status, body) = write(router, tenant, req);
            assert_eq!(status, 200, "window {w} of {tenant} with one receiver down: {body}");
        }
    }

    // Two down: no series can reach quorum; the answer is retryable.
    if let Some(node) = nodes[1].take() {
        node.proc.kill();
    }
    for tenant in TENANTS {
        let (status, body) = write(&router, tenant, &requests[5]);
        assert_eq!(status, 503, "window 5 of {tenant} with two receivers down: {body}");
    }

    // Both back on their data; the refused window is sent again, then the rest.
    for i in [1, 2] {
        nodes[i] = Some(Node::spawn(strata_bin(), &slots[i], receive_args(&slots[i], &ring, i)));
    }
    nodes.iter_mut().flatten().for_each(Node::wait_ready);
    for (w, req) in requests.iter().enumerate().skip(5) {
        for tenant in TENANTS {
            // A restarted peer may still be backed off for a moment: retry on 503 as Prometheus
            // does. A retry may find the window on a quorum of replicas already (written by
            // the attempts before, or the refused one): that is 409, which Prometheus takes as
            // final; the check at the end shows nothing is missing.
            wait_for(&format!("window {w} of {tenant} written"), Duration::from_secs(15), || {
                match write(&router, tenant, req) {
                    (200 | 409, _) => Ok(()),
                    (status, body) => Err(format!("{status} {body}")),
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let metrics = http::get(&slots[0].http, "/metrics").unwrap_or_else(|e| panic!("{e}")).1;
    for line in [
        "thanos_receive_forward_requests_total{result=\"success\"}",
        "thanos_receive_forward_requests_total{result=\"error\"}",
        "thanos_receive_replications_total{result=\"success\"}",
        "thanos_receive_replication_factor 3",
        "thanos_receive_write_timeseries_count{code=\"503\",tenant=\"team-k\"}",
        "thanos_receive_hashrings_file_changes_total 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Deduplicated over the replica label, every series is there and every sample once.
    let query_slot = fleet.slot("query");
    let endpoints: Vec<&str> = slots.iter().map(|s| s.grpc.as_str()).collect();
    let mut args = query_slot.query_args(&endpoints);
    // Chain deduplication merges the replicas' samples; penalty deduplication may skip samples
    // where it switches between replicas with gaps.
    args.extend(["--query.replica-label=receive_replica".into(), "--deduplication.func=chain".into()]);
    let query = Node::start(strata_bin(), &query_slot, args);
    let samples =
        data.iter().flat_map(|(_, samples)| samples.iter()).filter(|(_, v)| v.to_bits() != corpus::STALE_NAN).count();
    let at = t0 + corpus::SPAN + corpus::MINUTE;
    for tenant in TENANTS {
        let selector = format!(r#"{{__name__=~"diff_.+",tenant_id="{tenant}"}}[3h]"#);
        let want = [
            (format!("count(last_over_time({selector}))"), data.len()),
            (format!("sum(count_over_time({selector}))"), samples),
        ];
        for (q, n) in want {
            wait_for(&format!("{q} = {n}"), Duration::from_secs(30), || match scalar(query.http(), &q, at) {
                Ok(v) if v == n as f64 => Ok(()),
                other => Err(format!("{other:?}")),
            })
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
