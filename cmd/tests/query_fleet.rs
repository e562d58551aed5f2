//! The global view end to end, on the differential corpus (tests/common/corpus.rs), with real
//! peers only:
//! - HA: two `strata receive` replicas (`--label replica="a"` / `"b"`) get the same remote
//!   write, each killed for a different ten-minute window of the data and restarted on its own
//!   data; `strata query --query.replica-label=replica --deduplication.func=chain` over both
//!   answers every corpus query exactly as one Prometheus 3.x that got every sample.
//! - Reading Thanos: `strata query` over the real `thanos receive`, fed the same data, answers
//!   exactly as Prometheus too.
//! - Read by Thanos: the real `thanos query` (penalty deduplication, experimental functions on)
//!   over the same two replicas answers every corpus query as `strata query
//!   --deduplication.func=penalty` does, but for the queries listed, with the Thanos behaviour
//!   that explains each, in promql_diff/thanos_query_differences.md; each listed difference is
//!   checked to look like its reason.
//!
//! Prometheus's series get the label every receiver's series carry, `tenant_id="default-tenant"`
//! (the tenant's external label), so that the series are the same everywhere.

mod common;

use std::time::Duration;

use common::{corpus, remote_write, spawn_reference_prometheus, strata_bin, with_labels};
use strata_testkit::{http, peer, wait_for, Fleet, Node};

/// The data windows (ten minutes each, see `corpus::write_requests`) during which replica a and
/// replica b are down.
const A_DOWN: usize = 3;
const B_DOWN: usize = 8;

/// How the corpus comparison names `strata query` with penalty deduplication.
const PENALTY: &str = "strata query (penalty dedup over two replicas with gaps)";

/// The reasons of promql_diff/thanos_query_differences.md, each with what its differences look
/// like.
const THANOS_QUERY_REASONS: [corpus::ReasonCheck; 2] = [
    ("Thanos rebases counters for rate, increase, irate and resets", |query, difference| {
        let counter_function = ["rate(", "increase(", "resets("].iter().any(|f| query.contains(f));
        // Neither side fails; Thanos never sees a reset.
        let both_answer = !difference.starts_with("only ");
        let no_resets = !query.starts_with("resets(") || difference.ends_with(" vs thanos query 0");
        counter_function && both_answer && no_resets
    }),
    ("Thanos has no delayed name removal", |_, difference| {
        difference.starts_with(&format!("only {PENALTY} fails"))
            && difference.ends_with("vector cannot contain metrics with the same labelset")
    }),
];

/// Waits until the querier at `addr` answers `query` with `n` as the single value.
fn wait_for_count(addr: &str, query: &str, t: i64, n: usize) {
    let path = corpus::Eval::Instant { time: t }.path(query);
    let answered =
        wait_for(&format!("{addr} to answer {query} = {n}"), Duration::from_secs(60), || {
            match corpus::ask(addr, &path) {
                Ok(corpus::Answer::Data { series, .. }) if series.len() == 1 && series[0].1[0].1 == n as f64 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    answered.unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_global_view_answers_as_one_prometheus() {
    let (sections, known) = corpus::load("known_differences.md");
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let thanos = peer("thanos");
    let mut prometheus = spawn_reference_prometheus(&mut fleet);
    let replica_slots = fleet.slots("receive", 2);
    let replica_args = |i: usize| {
        let mut args = replica_slots[i].receive_args();
        args.push(format!("--label=replica=\"{}\"", ["a", "b"][i]).into());
        args
    };
    let mut replicas: Vec<Option<Node>> =
        (0..2).map(|i| Some(Node::spawn(strata_bin(), &replica_slots[i], replica_args(i)))).collect();
    let thanos_slot = fleet.slot("thanos-receive");
    let mut thanos_args = thanos_slot.thanos_receive_args();
    thanos_args.push("--label=replica=\"t\"".into());
    let mut thanos_receive = Node::spawn(&thanos, &thanos_slot, thanos_args);
    prometheus.wait_ready();
    replicas.iter_mut().flatten().for_each(Node::wait_ready);
    thanos_receive.wait_ready();

    let t0 = corpus::data_start();
    let data = corpus::generate();
    let samples: usize = data.iter().map(|s| s.1.len()).sum();
    for (w, req) in corpus::write_requests(t0, &data).iter().enumerate() {
        for (i, down) in [A_DOWN, B_DOWN].into_iter().enumerate() {
            if w == down {
                // Killed for this window: it misses every sample of it.
                if let Some(node) = replicas[i].take() {
                    node.proc.kill();
                }
            } else if replicas[i].is_none() {
                replicas[i] = Some(Node::start(strata_bin(), &replica_slots[i], replica_args(i)));
            }
            if let Some(node) = &replicas[i] {
                remote_write(&node.slot.remote_write, "/api/v1/receive", req);
            }
        }
        remote_write(&thanos_slot.remote_write, "/api/v1/receive", req);
        remote_write(prometheus.http(), "/api/v1/write", &with_labels(req, &[("tenant_id", "default-tenant")]));
    }
    corpus::assert_holds_all(prometheus.http(), t0, data.len());

    let endpoints: Vec<&str> = replica_slots.iter().map(|s| s.grpc.as_str()).collect();
    let dedup_args = |func: &str| -> Vec<std::ffi::OsString> {
        vec!["--query.replica-label=replica".into(), format!("--deduplication.func={func}").into()]
    };
    let query_slot = fleet.slot("query-chain");
    let mut args = query_slot.query_args(&endpoints);
    args.extend(dedup_args("chain"));
    let mut chain = Node::spawn(strata_bin(), &query_slot, args);
    let penalty_slot = fleet.slot("query-penalty");
    let mut args = penalty_slot.query_args(&endpoints);
    args.extend(dedup_args("penalty"));
    let mut penalty = Node::spawn(strata_bin(), &penalty_slot, args);
    let thanos_query_slot = fleet.slot("thanos-query");
    let mut args = thanos_query_slot.thanos_query_args(&endpoints);
    args.extend(dedup_args("penalty"));
    args.push("--enable-feature=promql-experimental-functions".into());
    let mut thanos_query = Node::spawn(&thanos, &thanos_query_slot, args);
    let over_thanos_slot = fleet.slot("query-over-thanos");
    let mut args = over_thanos_slot.query_args(&[thanos_slot.grpc.as_str()]);
    args.push("--query.replica-label=replica".into());
    let mut over_thanos = Node::spawn(strata_bin(), &over_thanos_slot, args);
    let everything = r#"count(last_over_time({__name__=~"diff_.+"}[3h]))"#;
    for node in [&mut chain, &mut penalty, &mut thanos_query, &mut over_thanos] {
        node.wait_ready();
        wait_for_count(node.http(), everything, t0 + corpus::SPAN + corpus::MINUTE, data.len());
    }

    // The three comparisons ask different processes: run at once, they share the wait.
    let thanos_known = corpus::load("thanos_query_differences.md").1;
    let chain_names = ("strata query (chain dedup over two replicas with gaps)", "Prometheus");
    let over_thanos_names = ("strata query over thanos receive", "Prometheus");
    let names = (PENALTY, "thanos query");
    let [chain_run, over_thanos_run, run] = std::thread::scope(|s| {
        [
            s.spawn(|| corpus::run(&sections, t0, chain.http(), prometheus.http(), chain_names)),
            s.spawn(|| corpus::run(&sections, t0, over_thanos.http(), prometheus.http(), over_thanos_names)),
            s.spawn(|| corpus::run(&sections, t0, penalty.http(), thanos_query.http(), names)),
        ]
        .map(|h| h.join().expect("corpus run"))
    });
    corpus::report(chain_names, &sections, &known, &chain_run, data.len(), samples, t0);
    corpus::report(over_thanos_names, &sections, &known, &over_thanos_run, data.len(), samples, t0);
    corpus::check_reasons(&thanos_known, &run, &THANOS_QUERY_REASONS);
    corpus::report(names, &sections, &thanos_known, &run, data.len(), samples, t0);

    // The stores page lists both replicas, healthy, with their external labels.
    let stores = http::get_json(chain.http(), "/api/v1/stores").expect("stores");
    let listed = stores.to_string();
    for (slot, replica) in replica_slots.iter().zip(["a", "b"]) {
        assert!(listed.contains(&slot.grpc) && listed.contains(&format!("\"{replica}\"")), "{stores}");
    }
}
