//! Blocks cut from remote-written data are a valid Prometheus TSDB: the Debian `promtool`
//! lists, analyzes and dumps the receiver's tenant directory, and its dump (blocks plus the
//! head replayed from our WAL) is exactly the samples that were written.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use strata_proto::prometheus as v1;
use strata_proto::protocol::{CONTENT_ENCODING_HEADER, SNAPPY_ENCODING};
use strata_receiver::{Receiver, ReceiverConfig};
use strata_testkit::promtool::promtool;
use strata_testkit::wait_for_async;
use strata_tsdb::gotext::format_g;
use tower::ServiceExt;

use common::v1_body;

const SERIES: usize = 60;
const STEP_MS: i64 = 30_000;
/// 6.5h of samples: blocks for [first sample, 2h) and [2h, 4h) are cut; the last 2.5h stay in
/// the head (it is cut only when it spans more than 3h).
const STEPS: i64 = 6 * 120 + 60;

fn value(step: i64, i: usize) -> f64 {
    match i % 3 {
        0 => (step * (i as i64 + 1)) as f64,        // counter
        1 => ((step as f64) * 0.37).sin() * 100.0,  // gauge
        _ => f64::from_bits(0x7ff0_0000_0000_0002), // staleness markers survive too
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_reads_what_the_receiver_cut() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::new(ReceiverConfig::new(dir.path()));
    rx.start().await.unwrap();
    let router = rx.remote_write_router();
    let t0 = 1_700_000_000_000 - 1_700_000_000_000 % 7_200_000 + 90_000;
    let mut want = Vec::new();
    for step in 0..STEPS {
        let t = t0 + step * STEP_MS;
        let timeseries = (0..SERIES)
            .map(|i| v1::TimeSeries {
                labels: vec![
                    v1::Label { name: "__name__".into(), value: format!("metric_{}", i % 3) },
                    v1::Label { name: "instance".into(), value: format!("host-{i}:9100") },
                ],
                samples: vec![v1::Sample { value: value(step, i), timestamp: t }],
                ..Default::default()
            })
            .collect();
        let req = Request::post("/api/v1/receive")
            .header(CONTENT_ENCODING_HEADER, SNAPPY_ENCODING)
            .body(Body::from(v1_body(timeseries)))
            .unwrap();
        assert_eq!(router.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
    }
    for i in 0..SERIES {
        for step in 0..STEPS {
            let labels = format!(r#"{{__name__="metric_{}", instance="host-{i}:9100"}}"#, i % 3);
            want.push(format!("{labels} {} {}", format_g(value(step, i)), t0 + step * STEP_MS));
        }
    }
    want.sort();

    // Cuts run in the background after appends; wait for them with a deadline.
    let db = rx.tenants.get("default-tenant").unwrap();
    wait_for_async("blocks to be cut", Duration::from_secs(60), || {
        if db.compactable() || db.blocks().len() < 2 {
            Err(format!("{} blocks", db.blocks().len()))
        } else {
            Ok(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let blocks = db.blocks();
    assert_eq!(blocks.len(), 2);
    let ulids: Vec<String> = blocks.iter().map(|b| b.meta().ulid.to_string()).collect();
    drop((blocks, db));
    rx.shutdown().await.unwrap();
    let tenant_dir = dir.path().join("default-tenant");
    let tenant = tenant_dir.to_str().unwrap();

    let list = promtool(&["tsdb", "list", tenant]);
    for u in &ulids {
        let line =
            list.lines().find(|l| l.starts_with(u.as_str())).unwrap_or_else(|| panic!("{u} missing from\n{list}"));
        assert!(line.split_whitespace().any(|f| f == SERIES.to_string()), "series count in {line}");
    }
    for u in &ulids {
        let analyze = promtool(&["tsdb", "analyze", tenant, u]);
        assert!(analyze.contains(&format!("Series: {SERIES}")), "{analyze}");
        assert!(analyze.contains("Label names: 2"), "{analyze}");
    }
    let mut dumped: Vec<String> = promtool(&["tsdb", "dump", tenant]).lines().map(str::to_owned).collect();
    dumped.sort();
    assert_eq!(dumped.len(), want.len(), "promtool dump has a different number of samples");
    assert_eq!(dumped, want);

    // And our own dump agrees.
    let mut ours = Vec::new();
    strata_tsdb::db::dump(&tenant_dir, i64::MIN, i64::MAX, &mut ours).unwrap();
    let mut ours: Vec<String> = String::from_utf8(ours).unwrap().lines().map(str::to_owned).collect();
    ours.sort();
    assert_eq!(ours, want);
}
