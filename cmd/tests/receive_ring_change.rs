//! Ring changes under steady load: four `strata receive` router-ingestors with replication
//! factor 3 and one hashrings.json (tenant `team-k` on a ketama hashring, the rest on a hashmod
//! one), the ring first holding three of them. One writer sends a request every few
//! milliseconds, in turn to each receiver in the ring and to both tenants, while a prober asks
//! every receiver's `/-/ready`. The fourth receiver is added to both hashrings, then the first
//! removed and, once every receiver has the new ring, SIGKILLed. Every write answers 200,
//! `/-/ready` never fails, and `strata query` over the three left (chain deduplication over
//! `receive_replica`) holds every sample written.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{corpus, remote_write_body, strata_bin, REMOTE_WRITE_V1};
use strata_proto::prometheus as v1;
use strata_testkit::{http, wait_for, Fleet, Node, Slot};

const TENANTS: [&str; 2] = ["default-tenant", "team-k"];
/// Series per request.
const SERIES: usize = 20;
/// How long the watchers take to see a new file: they poll every second.
const PROPAGATION: Duration = Duration::from_millis(2500);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// Writes the hashrings of `members` to `path` in one rename, so a watcher never reads half a file.
fn write_ring(path: &Path, members: &[&Slot]) {
    let endpoints: Vec<String> = members.iter().map(|s| format!("{:?}", s.grpc)).collect();
    let endpoints = endpoints.join(",");
    let content = format!(
        r#"[{{"hashring":"ketama","tenants":["team-k"],"algorithm":"ketama","endpoints":[{endpoints}]}},
            {{"hashring":"hashmod","endpoints":[{endpoints}]}}]"#
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write hashrings");
    std::fs::rename(&tmp, path).expect("rename hashrings");
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

/// Request `i`: every series of the load with one sample at `t0 + i` ms.
fn request(i: i64, t0: i64) -> v1::WriteRequest {
    let timeseries = (0..SERIES)
        .map(|s| v1::TimeSeries {
            labels: [("__name__", "ring_load"), ("series", &format!("s{s:02}"))]
                .iter()
                .map(|(n, v)| v1::Label { name: (*n).into(), value: (*v).into() })
                .collect(),
            samples: vec![v1::Sample { value: i as f64, timestamp: t0 + i }],
            ..Default::default()
        })
        .collect();
    v1::WriteRequest { timeseries, metadata: Vec::new() }
}

#[test]
fn ring_changes_cost_no_write_and_no_readiness() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let slots = fleet.slots("receive", 4);
    let ring = work.path().join("hashrings.json");
    write_ring(&ring, &[&slots[0], &slots[1], &slots[2]]);
    let mut nodes: Vec<Option<Node>> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| Node::spawn(strata_bin(), s, receive_args(s, &ring, i)))
        .map(Some)
        .collect();
    nodes.iter_mut().flatten().for_each(Node::wait_ready);

    let stop = Arc::new(AtomicBool::new(false));
    // The receivers written to, and those probed.
    let routers = Arc::new(Mutex::new(vec![
        slots[0].remote_write.clone(),
        slots[1].remote_write.clone(),
        slots[2].remote_write.clone(),
    ]));
    let probed = Arc::new(Mutex::new(slots.iter().map(|s| s.http.clone()).collect::<Vec<_>>()));
    let t0 = now_ms();
    let writer = {
        let (stop, routers) = (stop.clone(), routers.clone());
        thread::spawn(move || {
            let mut failures = Vec::new();
            let mut written = [0usize; 2];
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let router = {
                    let r = routers.lock().expect("routers");
                    r[i as usize % r.len()].clone()
                };
                let tenant = TENANTS[i as usize % 2];
                let mut headers = REMOTE_WRITE_V1.to_vec();
                headers.push(("THANOS-TENANT", tenant));
                match http::post(&router, "/api/v1/receive", &headers, &remote_write_body(&request(i, t0))) {
                    Ok((200, _)) => written[i as usize % 2] += SERIES,
                    other => failures.push(format!("request {i} to {router} for {tenant}: {other:?}")),
                }
                i += 1;
                thread::sleep(Duration::from_millis(2));
            }
            (written, failures)
        })
    };
    let prober = {
        let (stop, probed) = (stop.clone(), probed.clone());
        thread::spawn(move || {
            let mut failures = Vec::new();
            let mut probes = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let addrs = probed.lock().expect("probed").clone();
                for addr in addrs {
                    probes += 1;
                    match http::get(&addr, "/-/ready") {
                        Ok((200, _)) => {}
                        other => failures.push(format!("{addr}: {other:?}")),
                    }
                }
                thread::sleep(Duration::from_millis(10));
            }
            (probes, failures)
        })
    };

    thread::sleep(Duration::from_secs(1));
    // A fourth receiver joins both hashrings, and takes writes once everyone knows it.
    write_ring(&ring, &[&slots[0], &slots[1], &slots[2], &slots[3]]);
    thread::sleep(PROPAGATION);
    routers.lock().expect("routers").push(slots[3].remote_write.clone());
    thread::sleep(Duration::from_secs(1));
    // The first leaves; once every receiver has the new ring it gets no writes and dies.
    write_ring(&ring, &[&slots[1], &slots[2], &slots[3]]);
    thread::sleep(PROPAGATION);
    routers.lock().expect("routers").retain(|r| *r != slots[0].remote_write);
    probed.lock().expect("probed").retain(|a| *a != slots[0].http);
    thread::sleep(Duration::from_millis(200));
    if let Some(node) = nodes[0].take() {
        node.proc.kill();
    }
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (written, write_failures) = writer.join().expect("writer");
    let (probes, ready_failures) = prober.join().expect("prober");
    assert!(write_failures.is_empty(), "{} failed writes: {:#?}", write_failures.len(), write_failures);
    assert!(ready_failures.is_empty(), "/-/ready failed: {ready_failures:#?}");
    assert!(written.iter().all(|&n| n > 100 * SERIES), "too little load: {written:?}");
    assert!(probes > 500, "too few probes: {probes}");
    for node in nodes.iter().flatten() {
        let log = std::fs::read_to_string(&node.slot.log).expect("log");
        assert!(log.contains("hashring changed"), "no ring change logged by {}", node.slot.name);
    }

    // Every sample is on at least one of the three receivers left.
    let query_slot = fleet.slot("query");
    let endpoints: Vec<&str> = slots[1..].iter().map(|s| s.grpc.as_str()).collect();
    let mut args = query_slot.query_args(&endpoints);
    args.extend(["--query.replica-label=receive_replica".into(), "--deduplication.func=chain".into()]);
    let query = Node::start(strata_bin(), &query_slot, args);
    let at = now_ms() + 60_000;
    for (tenant, want) in TENANTS.iter().zip(written) {
        let q = format!(r#"sum(count_over_time(ring_load{{tenant_id="{tenant}"}}[1h]))"#);
        wait_for(&format!("{q} = {want}"), Duration::from_secs(30), || {
            match corpus::ask(query.http(), &corpus::Eval::Instant { time: at }.path(&q))? {
                corpus::Answer::Data { series, .. } if series.len() == 1 && series[0].1[0].1 == want as f64 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
