//! Differential PromQL test: the same generated data is remote-written to `strata standalone` and
//! to Prometheus 3.x (built by interop/, with the PromQL features strata always has: see
//! `common::PROMQL_FEATURES`), every query of the corpus (promql_diff/queries.txt) is asked of
//! both as instant queries at several times and as a range query, and the answers must agree:
//! the same series, the same timestamps, values within 1e-6 relative (NaN equals NaN).
//!
//! A query whose answers differ for a reason is listed in promql_diff/known_differences.md under
//! that reason. The test fails on a difference that is not listed, and on a listed query that no
//! longer differs (so the list stays true).
//!
//! Most samples sit off whole seconds and queries are evaluated at whole seconds; the
//! "on-sample" corpus section uses series sampled on whole seconds at evaluation times that hit
//! sample timestamps exactly, where the left-open range and lookback windows of Prometheus 3
//! decide which samples count.

mod common;

use common::{corpus, StrataAndPrometheus};

#[test]
fn promql_answers_match_prometheus() {
    let (sections, known) = corpus::load("known_differences.md");
    let work = tempfile::tempdir().expect("temp dir");
    let servers = StrataAndPrometheus::start(work.path());
    let t0 = corpus::data_start();
    let data = corpus::generate();
    let samples: usize = data.iter().map(|s| s.1.len()).sum();
    for req in corpus::write_requests(t0, &data) {
        servers.write_both(&req);
    }
    for addr in [servers.strata.http(), servers.prometheus.http()] {
        corpus::assert_holds_all(addr, t0, data.len());
    }
    let names = ("strata", "Prometheus");
    let run = corpus::run(&sections, t0, servers.strata.http(), servers.prometheus.http(), names);
    corpus::report(names, &sections, &known, &run, data.len(), samples, t0);
}
