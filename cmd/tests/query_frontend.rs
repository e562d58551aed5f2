//! `strata query-frontend` in front of `strata standalone` holding the differential corpus's data
//! on three consecutive days: every corpus query asked as a range query over the three days
//! gets, byte for byte, the downstream's own answer to the whole range, with the results cache
//! cold, warm, and partly warm (the range moved forward), with the IN-MEMORY cache, with a real
//! memcached and with a real Redis (Debian's). A warm cache asks the downstream nothing, a
//! range moved forward asks only for what is missing, and a query the downstream fails gets the
//! downstream's error and caches nothing.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::corpus::{self, MINUTE};
use common::{remote_write, strata_bin};
use strata_testkit::metrics::metric_sum;
use strata_testkit::{http, url_encode, CacheServer, Fleet, Node};

const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Copies of the corpus data, one per day.
const DAYS: i64 = 3;
const STEP: i64 = 5 * MINUTE;
/// How far the partly warm range is moved forward.
const MOVE: i64 = 30 * MINUTE;
/// Every how many corpus queries is asked through memcached and Redis (all go through the
/// in-memory cache), so that the test stays short.
const EXTERNAL_CACHE_SUBSET: usize = 6;

/// `/api/v1/query_range` for `query` from `start` to `end` (milliseconds) at [`STEP`].
fn range_path(query: &str, start: i64, end: i64) -> String {
    format!(
        "/api/v1/query_range?query={}&start={}&end={}&step={}",
        url_encode(query),
        start / 1000,
        end / 1000,
        STEP / 1000
    )
}

fn ask(addr: &str, path: &str) -> (u16, String) {
    http::get(addr, path).unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"))
}

/// The `query_range` requests the downstream has answered.
fn downstream_range_requests(addr: &str) -> f64 {
    let (_, text) = ask(addr, "/metrics");
    text.lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("handler=\"query_range\""))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn metric(addr: &str, name: &str) -> f64 {
    metric_sum(&ask(addr, "/metrics").1, name).unwrap_or(0.0)
}

/// Asks every query of `queries` of the downstream and of the frontend, cold, warm and moved
/// forward; returns the differences.
fn differences(downstream: &str, frontend: &str, queries: &[String], start: i64, end: i64) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let found = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..corpus::WORKERS {
            scope.spawn(|| loop {
                let Some(query) = queries.get(next.fetch_add(1, Ordering::Relaxed)) else { return };
                let whole = range_path(query, start, end);
                let moved = range_path(query, start + MOVE, end + MOVE);
                let want = ask(downstream, &whole);
                let want_moved = ask(downstream, &moved);
                for (pass, path, want) in
                    [("cold", &whole, &want), ("warm", &whole, &want), ("moved forward", &moved, &want_moved)]
                {
                    let got = ask(frontend, path);
                    if &got != want {
                        found.lock().unwrap().push(format!(
                            "{query} ({pass}): downstream {} {}\n  frontend {} {}",
                            want.0,
                            &want.1[..want.1.len().min(400)],
                            got.0,
                            &got.1[..got.1.len().min(400)]
                        ));
                    }
                }
            });
        }
    });
    found.into_inner().unwrap()
}

#[test]
fn frontend_answers_as_its_downstream_with_each_cache() {
    let work = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(work.path());
    let standalone_slot = fleet.slot("standalone");
    let standalone = Node::start(strata_bin(), &standalone_slot, standalone_slot.standalone_args());
    let downstream = standalone.http().to_owned();

    // The corpus's two hours of data on each of three days, oldest first.
    let t0 = corpus::data_start();
    let data = corpus::generate();
    for day in (0..DAYS).rev() {
        for req in corpus::write_requests(t0 - day * DAY, &data) {
            remote_write(&standalone_slot.remote_write, "/api/v1/receive", &req);
        }
    }
    corpus::assert_holds_all(&downstream, t0, data.len());
    corpus::assert_holds_all(&downstream, t0 - (DAYS - 1) * DAY, data.len());

    let (memcached, redis) = (CacheServer::memcached(work.path()), CacheServer::redis(work.path()));
    let (memcached_addr, redis_addr) = (&memcached.addr, &redis.addr);
    let caches = [
        ("inmemory", "type: IN-MEMORY\nconfig:\n  max_size: 256MB\n".to_owned()),
        (
            "memcached",
            format!("type: MEMCACHED\nconfig:\n  addresses: [\"{memcached_addr}\"]\n  max_item_size: 16MB\n"),
        ),
        ("redis", format!("type: REDIS\nconfig:\n  addr: \"{redis_addr}\"\n")),
    ];
    let frontends: Vec<Node> = caches
        .iter()
        .map(|(name, config)| {
            let slot = fleet.slot(&format!("frontend-{name}"));
            let args: Vec<String> = vec![
                "query-frontend".into(),
                "--http-address".into(),
                slot.http.clone(),
                format!("--query-frontend.downstream-url=http://{downstream}"),
                format!("--query-range.response-cache-config={config}"),
            ];
            Node::start(strata_bin(), &slot, args)
        })
        .collect();
    // memcached refuses items over 1 MiB unless started with a larger -I; the test's values are
    // small, and larger ones would be skipped, not failed.

    let (start, end) = (t0 - (DAYS - 1) * DAY - HOUR, t0 + 2 * HOUR + 30 * MINUTE);

    // One clean query first, alone on the downstream: a cold cache asks for every piece, a warm
    // one for nothing, a range moved forward for the missing stretch only.
    // (From the data's start: a piece before it reaches no store, gets a warning saying so and
    // is not cached; the corpus below has such a piece.)
    let clean = "sum by (job) (rate(diff_http_requests_total[5m]))";
    let inmemory = frontends[0].http();
    let (start, end) = (start + HOUR, end);
    let before = downstream_range_requests(&downstream);
    let cold = ask(inmemory, &range_path(clean, start, end));
    let after_cold = downstream_range_requests(&downstream);
    assert_eq!(cold, ask(&downstream, &range_path(clean, start, end)));
    assert!(cold.1.contains("\"job\":\"api\""), "the clean query found no data: {}", cold.1);
    assert!(after_cold - before >= DAYS as f64, "a cold cache asked {} pieces", after_cold - before);
    let after_direct = downstream_range_requests(&downstream);
    assert_eq!(ask(inmemory, &range_path(clean, start, end)), cold);
    assert_eq!(downstream_range_requests(&downstream), after_direct, "a warm cache asked the downstream");
    let moved = ask(inmemory, &range_path(clean, start + MOVE, end + MOVE));
    assert_eq!(
        downstream_range_requests(&downstream),
        after_direct + 1.0,
        "a moved range asked more than the missing part"
    );
    assert_eq!(moved, ask(&downstream, &range_path(clean, start + MOVE, end + MOVE)));

    // The corpus, through each cache.
    let (start, end) = (start - HOUR, end);
    let (sections, _) = corpus::load("known_differences.md");
    let queries: Vec<String> = sections.iter().flat_map(|s| s.queries.iter()).map(|q| corpus::expand(q, t0)).collect();
    let subset: Vec<String> = queries.iter().step_by(EXTERNAL_CACHE_SUBSET).cloned().collect();
    let mut all = Vec::new();
    for (i, fe) in frontends.iter().enumerate() {
        let asked = if i == 0 { &queries } else { &subset };
        let found = differences(&downstream, fe.http(), asked, start, end);
        let hits = metric(fe.http(), "cortex_cache_hits_total");
        assert!(hits > 0.0, "{}: no cache hits", caches[i].0);
        all.extend(found.into_iter().map(|d| format!("[{}] {d}", caches[i].0)));
    }
    assert!(
        all.is_empty(),
        "{} answers differ from the downstream's:\n{}",
        all.len(),
        all[..all.len().min(10)].join("\n")
    );

    // Failures: the downstream's own error, and nothing cached.
    for fe in &frontends {
        for failing in ["sum(", r#"label_replace(diff_http_requests_total, "code", "x", "", "")"#] {
            let stored = metric(fe.http(), "thanos_frontend_cache_stored_keys_total");
            let path = range_path(failing, start - DAY, end - DAY);
            let want = ask(&downstream, &path);
            assert!(want.0 >= 400, "{failing} did not fail downstream: {want:?}");
            assert_eq!(ask(fe.http(), &path), want, "{failing}");
            assert_eq!(metric(fe.http(), "thanos_frontend_cache_stored_keys_total"), stored, "{failing} was cached");
        }
    }
    // Instant queries and other paths pass through.
    for path in [
        format!("/api/v1/query?query={}&time={}", url_encode("sum(diff_build_info)"), (t0 + HOUR) / 1000),
        "/api/v1/status/buildinfo".to_owned(),
        "/api/v1/nonexistent".to_owned(),
    ] {
        assert_eq!(ask(inmemory, &path), ask(&downstream, &path), "{path}");
    }
    let exposition = ask(inmemory, "/metrics").1;
    assert!(
        exposition.lines().any(|l| l.starts_with("http_requests_total{") && l.contains("handler=\"passthrough\"")),
        "passed-through requests are not counted: {exposition}"
    );
    // Label names, values and series over the three days, split by day.
    for path in [
        format!("/api/v1/labels?start={}&end={}", start / 1000, end / 1000),
        format!("/api/v1/label/instance/values?start={}&end={}", start / 1000, end / 1000),
        format!(
            "/api/v1/series?match[]={}&start={}&end={}",
            url_encode("diff_cpu_seconds_total"),
            start / 1000,
            end / 1000
        ),
    ] {
        let want = ask(&downstream, &path);
        assert_eq!(want.0, 200, "{path}: {want:?}");
        assert_eq!(ask(inmemory, &path), want, "{path}");
    }
    assert!(metric(inmemory, "thanos_frontend_split_queries_total") > queries.len() as f64);
}
