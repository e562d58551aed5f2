//! Partial response and deadlines end to end: `strata query` over two `strata receive` stores,
//! the second reached through testkit's `FaultProxy`, each store's series told apart by its
//! `store` label.
//! - A store killed during a query: with `partial_response=true` the answer comes from the other
//!   store with a warning naming the failed one; a store cut off during a query with
//!   `partial_response=false`: an error naming it.
//! - A hung store (the proxy holds every byte, the connection stays open): with
//!   `--store.response-timeout` it is cut off at that timeout (a warning, or the error under
//!   `partial_response=false`, for queries and label names); without it, at the query's timeout
//!   (the `timeout` parameter, else `--query.timeout`), answered as a timeout. Either way the
//!   querier's read of the store ends then (no reader thread is left waiting on it).
//! - Nothing crashes: once the store answers again, both queriers answer from both stores.

mod common;

use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{remote_write, strata_bin};
use serde_json::Value;
use strata_proto::prometheus as v1;
use strata_testkit::{http, send_signal, url_encode, wait_for, FaultProxy, Fleet, Node, Signal, Slot};

/// The metric both stores hold (one series each, told apart by the `store` external label).
const METRIC: &str = "partial_up";
/// `--query.timeout` of the querier without a response timeout.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// `--store.response-timeout` of the other querier.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Client bytes after which the proxy trips: more than the Info calls of both queriers send in
/// the moment before a query, less than a query's Series request, which a long matcher pads.
const TRIP_BYTES: u64 = 1500;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

fn receive_args(slot: &Slot, store: &str) -> Vec<std::ffi::OsString> {
    let mut args = slot.receive_args();
    args.push(format!("--label=store=\"{store}\"").into());
    args
}

/// One sample of `METRIC` a little before now.
fn write_sample(store: &Node) {
    let req = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: METRIC.into() },
                v1::Label { name: "instance".into(), value: "i0".into() },
            ],
            samples: vec![v1::Sample { value: 1.0, timestamp: now_ms() - 1000 }],
            ..Default::default()
        }],
        metadata: Vec::new(),
    };
    remote_write(&store.slot.remote_write, "/api/v1/receive", &req);
}

/// An answer of the query API: HTTP status, the JSON body, and how long it took.
struct Reply {
    status: u16,
    json: Value,
    took: Duration,
}

impl Reply {
    fn warnings(&self) -> Vec<String> {
        self.json["warnings"]
            .as_array()
            .map_or_else(Vec::new, |w| w.iter().map(|w| w.as_str().unwrap_or_default().to_owned()).collect())
    }

    /// The value of a one-sample instant vector.
    fn count(&self) -> Option<f64> {
        let result = self.json["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    fn error(&self) -> (&str, &str) {
        (self.json["errorType"].as_str().unwrap_or_default(), self.json["error"].as_str().unwrap_or_default())
    }
}

fn get(addr: &str, path: &str) -> Reply {
    let started = Instant::now();
    let (status, body) = http::get(addr, path).unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"));
    let took = started.elapsed();
    let json =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {addr}{path}: {status}, not JSON ({e}): {body}"));
    Reply { status, json, took }
}

/// `count(METRIC)` with the extra `params`, and a matcher that pads the Series request past
/// [`TRIP_BYTES`] without excluding anything.
fn count(addr: &str, params: &str) -> Reply {
    let query = format!("count({METRIC}{{pad!=\"{}\"}})", "x".repeat(2 * TRIP_BYTES as usize));
    get(addr, &format!("/api/v1/query?query={}{params}", url_encode(&query)))
}

/// Waits until the querier at `addr` answers from both stores, without warnings.
fn wait_for_both(addr: &str) {
    wait_for(&format!("{addr} to answer from both stores"), Duration::from_secs(30), || {
        let r = count(addr, "");
        match (r.count(), r.warnings().is_empty()) {
            (Some(2.0), true) => Ok(()),
            _ => Err(format!("{} {}", r.status, r.json)),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Threads of process `pid` named `name`.
fn threads_named(pid: u32, name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks.flatten().filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)).count()
}

/// Waits until no read of a store is left in the querier `node` (its proxy's reader threads are
/// named `strata-proxy`).
fn wait_reads_ended(node: &Node) {
    let pid = node.proc.pid();
    wait_for(&format!("{} to end its store reads", node.slot.name), Duration::from_secs(5), || {
        match threads_named(pid, "strata-proxy") {
            0 => Ok(()),
            n => Err(format!("{n} reader threads left")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn failed_and_hung_stores_give_partial_answers_or_errors() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let store_slots = fleet.slots("receive", 2);
    let mut stores: Vec<Node> = store_slots
        .iter()
        .enumerate()
        .map(|(i, slot)| Node::spawn(strata_bin(), slot, receive_args(slot, &format!("s{i}"))))
        .collect();
    let upstream = store_slots[1].grpc.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("gRPC port");
    let proxy = FaultProxy::start(upstream);
    let proxied = format!("127.0.0.1:{}", proxy.port);
    let endpoints = [store_slots[0].grpc.as_str(), proxied.as_str()];
    // A long Info timeout keeps a hung store in the active set while the test asks through it.
    let info_timeout = "--endpoint.info-timeout=60s".into();
    let plain_slot = fleet.slot("query");
    let mut args = plain_slot.query_args(&endpoints);
    args.extend([format!("--query.timeout={}s", QUERY_TIMEOUT.as_secs()).into(), info_timeout]);
    let mut plain = Node::spawn(strata_bin(), &plain_slot, args);
    let timeout_slot = fleet.slot("query-response-timeout");
    let mut args = timeout_slot.query_args(&endpoints);
    args.extend([
        format!("--store.response-timeout={}s", RESPONSE_TIMEOUT.as_secs()).into(),
        "--endpoint.info-timeout=60s".into(),
    ]);
    let mut with_timeout = Node::spawn(strata_bin(), &timeout_slot, args);
    for node in stores.iter_mut().chain([&mut plain, &mut with_timeout]) {
        node.wait_ready();
    }
    stores.iter().for_each(write_sample);
    wait_for_both(plain.http());
    wait_for_both(with_timeout.http());

    // Killed during a query, partial response on: the other store's answer and a warning.
    let pid = stores[1].proc.pid();
    proxy.trip_after(TRIP_BYTES, move || send_signal(pid, Signal::Kill));
    let r = count(plain.http(), "&partial_response=true");
    assert!(proxy.tripped(), "the query's request went through the proxy");
    assert_eq!((r.status, r.count()), (200, Some(1.0)), "{}", r.json);
    assert!(r.warnings().iter().any(|w| w.contains(&proxied)), "a warning names {proxied}: {}", r.json);
    // Restarted on its data, it answers again.
    let killed = stores.pop().expect("two stores");
    drop(killed);
    stores.push(Node::start(strata_bin(), &store_slots[1], receive_args(&store_slots[1], "s1")));
    wait_for_both(plain.http());

    // Cut off during a query, partial response off: an error naming the store.
    proxy.trip_after(TRIP_BYTES, proxy.outage_switch());
    let r = count(plain.http(), "&partial_response=false");
    assert!(proxy.tripped(), "the query's request went through the proxy");
    assert_eq!(r.json["status"], "error", "{}", r.json);
    assert!(r.error().1.contains(&proxied), "the error names {proxied}: {}", r.json);
    proxy.set_up();
    wait_for_both(plain.http());

    // Hung: cut off at the response timeout, or at the query's timeout; all asked at once.
    proxy.hold();
    let hung = thread::scope(|s| {
        let rt = with_timeout.http();
        let q = plain.http();
        let asks = [
            s.spawn(move || count(rt, "&partial_response=true")),
            s.spawn(move || count(rt, "&partial_response=false")),
            s.spawn(move || get(rt, "/api/v1/labels?partial_response=true")),
            s.spawn(move || count(q, "&timeout=1500ms")),
            s.spawn(move || count(q, "")),
        ];
        asks.map(|a| a.join().expect("query thread"))
    });
    let [warned, failed, labels, param_timeout, flag_timeout] = &hung;
    for r in [warned, failed, labels] {
        assert!(r.took >= RESPONSE_TIMEOUT && r.took < QUERY_TIMEOUT, "cut off at the response timeout: {:?}", r.took);
    }
    assert_eq!((warned.status, warned.count()), (200, Some(1.0)), "{}", warned.json);
    assert!(warned.warnings().iter().any(|w| w.contains(&proxied)), "a warning names {proxied}: {}", warned.json);
    assert_eq!(failed.json["status"], "error", "{}", failed.json);
    assert!(failed.error().1.contains(&proxied), "the error names {proxied}: {}", failed.json);
    let names = labels.json["data"].as_array().expect("label names");
    assert!(names.iter().any(|n| n == "store"), "{}", labels.json);
    assert!(labels.warnings().iter().any(|w| w.contains(&proxied)), "a warning names {proxied}: {}", labels.json);
    for (r, timeout) in [(param_timeout, Duration::from_millis(1500)), (flag_timeout, QUERY_TIMEOUT)] {
        assert_eq!((r.status, r.error().0), (503, "timeout"), "{}", r.json);
        assert!(r.took >= timeout && r.took < timeout + Duration::from_secs(2), "cut off at {timeout:?}: {:?}", r.took);
    }
    // The reads of the hung store ended with the answers, while it still hangs.
    wait_reads_ended(&plain);
    wait_reads_ended(&with_timeout);

    proxy.release();
    for node in [&mut plain, &mut with_timeout] {
        wait_for_both(node.http());
        node.proc.assert_running();
    }
    stores.iter_mut().for_each(|s| s.proc.assert_running());
}
