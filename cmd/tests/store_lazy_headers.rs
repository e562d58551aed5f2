//! `strata store --store.enable-index-header-lazy-reader` with a one-second idle timeout, over
//! a FILESYSTEM bucket of two blocks, read through `strata query`: the store is ready without
//! opening a header, a query opens them (`thanos_bucket_store_indexheader_lazy_load_total`),
//! the idle ones are closed (`…_lazy_unload_total`), and the next query opens them again and
//! answers the same.

mod common;

use std::time::Duration;

use common::blocks::{fs_bucket, ship, write_block, FsBucket, Series};
use common::corpus;
use strata_testkit::metrics::metric_sum;
use strata_testkit::{wait_for, Fleet, Node};
use strata_tsdb::Labels;

const MINUTE: i64 = 60_000;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const LOADS: &str = "thanos_bucket_store_indexheader_lazy_load_total";
const UNLOADS: &str = "thanos_bucket_store_indexheader_lazy_unload_total";

/// Two hours of one sample a minute for `n` series of `lazy_metric`, from `start`.
fn series(n: usize, start: i64) -> Vec<Series> {
    (0..n)
        .map(|i| {
            let labels = Labels::from_pairs(&[("__name__", "lazy_metric"), ("instance", &format!("i{i}"))]);
            (labels, (0..120).map(|m| (start + m * MINUTE, (i as i64 * 1000 + m) as f64)).collect())
        })
        .collect()
}

fn metric(node: &Node, name: &str) -> f64 {
    let (_, body) = strata_testkit::http::get(node.http(), "/metrics").unwrap_or_else(|e| panic!("metrics: {e}"));
    metric_sum(&body, name).unwrap_or_else(|| panic!("{name} not exported"))
}

#[test]
fn lazy_headers_are_loaded_by_queries_and_unloaded_when_idle() {
    let FsBucket { work, config_file, bucket, rt, .. } = fs_bucket();
    for (i, start) in [T0, T0 + 120 * MINUTE].into_iter().enumerate() {
        let dir = work.path().join(format!("blocks-{i}"));
        std::fs::create_dir_all(&dir).expect("blocks dir");
        write_block(&dir, &series(5, start)).expect("write block");
        ship(&rt, &bucket, &dir, &[("cluster", "lazy")]).expect("ship");
    }

    let mut fleet = Fleet::new(work.path());
    let store_slot = fleet.slot("strata-store");
    let mut args = vec!["store".to_owned(), format!("--objstore.config-file={}", config_file.display())];
    args.extend([
        format!("--data-dir={}", store_slot.data_dir.display()),
        format!("--http-address={}", store_slot.http),
        format!("--grpc-address={}", store_slot.grpc),
        "--store.enable-index-header-lazy-reader".to_owned(),
        "--store.index-header-lazy-reader-idle-timeout=1s".to_owned(),
    ]);
    let mut store = Node::spawn(common::strata_bin(), &store_slot, args);
    store.wait_ready();
    assert_eq!(metric(&store, LOADS), 0.0, "no header opened by the sync");
    let query_slot = fleet.slot("strata-query");
    let mut query = Node::spawn(common::strata_bin(), &query_slot, query_slot.query_args(&[&store_slot.grpc]));
    query.wait_ready();

    let path = corpus::Eval::Range { start: T0, end: T0 + 239 * MINUTE, step: 5 * MINUTE }.path("sum(lazy_metric)");
    let first = wait_for("the querier to answer from both blocks", Duration::from_secs(60), || {
        match corpus::ask(query.http(), &path) {
            Ok(corpus::Answer::Data { series, kind }) if series.len() == 1 && series[0].1.len() == 48 => {
                Ok(corpus::Answer::Data { series, kind })
            }
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metric(&store, LOADS), 2.0, "both headers opened by the query");

    wait_for("both headers to be unloaded", Duration::from_secs(30), || match metric(&store, UNLOADS) {
        n if n >= 2.0 => Ok(()),
        n => Err(format!("{n} unloaded")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let again = corpus::ask(query.http(), &path).expect("answer after the unload");
    assert!(corpus::compare(&again, &first, false, ("after unload", "before")).is_none(), "{again:?} vs {first:?}");
    assert_eq!(metric(&store, LOADS), 4.0, "both headers opened again");
    assert_eq!(metric(&store, "thanos_bucket_store_indexheader_lazy_load_failed_total"), 0.0);
    assert!(metric(&store, "thanos_bucket_store_indexheader_lazy_load_duration_seconds_count") >= 4.0);
}
