//! Blocks the receiver cuts are shipped to the bucket with Thanos metadata (external labels
//! plus the tenant label), and local retention deletes only shipped blocks.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use strata_proto::prometheus as v1;
use strata_receiver::{Receiver, ReceiverConfig, Shipping, TenantLabels};
use strata_testkit::wait_for_async;
use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::db::DbOptions;
use tower::ServiceExt;

use common::v1_body;

fn config(dir: &std::path::Path, bucket_dir: &std::path::Path, labels: &[(&str, &str)]) -> ReceiverConfig {
    let yaml = format!("type: FILESYSTEM\nconfig:\n  directory: {:?}\n", bucket_dir.display().to_string());
    ReceiverConfig {
        db: DbOptions { retention: Some(3_600_000), ..DbOptions::default() },
        labels: TenantLabels {
            external: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..TenantLabels::default()
        },
        shipping: Some(Shipping {
            bucket: strata_shipper::parse_objstore_config(&yaml, "test").unwrap().build().unwrap(),
            wake: Default::default(),
        }),
        ..ReceiverConfig::new(dir)
    }
}

fn shipped(bucket_dir: &std::path::Path) -> Vec<BlockMeta> {
    let mut v: Vec<BlockMeta> =
        std::fs::read_dir(bucket_dir).unwrap().filter_map(|e| BlockMeta::read(&e.ok()?.path()).ok()).collect();
    v.sort_by_key(|m| m.min_time);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_blocks_are_shipped_and_only_shipped_blocks_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let rx = Receiver::new(config(&dir.path().join("tsdb"), &bucket_dir, &[("receive_replica", "0")]));
    rx.start().await.unwrap();
    let router = rx.remote_write_router();
    // 8h of one series at 1m: blocks [0,2h) [2h,4h) [4h,6h) are cut.
    for step in 0..(8 * 60) {
        let ts = v1::TimeSeries {
            labels: vec![v1::Label { name: "__name__".into(), value: "m".into() }],
            samples: vec![v1::Sample { value: step as f64, timestamp: step * 60_000 }],
            ..Default::default()
        };
        let req = Request::post("/api/v1/receive")
            .header("THANOS-TENANT", "team-a")
            .body(Body::from(v1_body(vec![ts])))
            .unwrap();
        assert_eq!(router.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
    }
    wait_for_async("3 blocks to be shipped", Duration::from_secs(60), || match shipped(&bucket_dir) {
        metas if metas.len() >= 3 => Ok(()),
        metas => Err(format!("shipped: {metas:?}")),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let metas = shipped(&bucket_dir);
    let want: BTreeMap<String, String> = [("receive_replica", "0"), ("tenant_id", "team-a")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for m in &metas {
        let t = m.thanos.as_ref().expect("thanos section");
        assert_eq!(t.labels, want);
        assert_eq!(t.source, "receive");
        assert_eq!(t.downsample.resolution, 0);
        assert!(t.files.iter().any(|f| f.rel_path == "index" && f.size_bytes.is_some_and(|s| s > 0)));
    }
    // Retention is 1h: every block but the newest is past it, and all are shipped, so the local
    // copies of the older ones go at the next cut.
    let db = rx.tenants.get("team-a").unwrap();
    for step in (8 * 60)..(10 * 60) {
        let mut app = db.appender();
        app.append(&[("__name__", "m")], [(step * 60_000, 1.0)]).unwrap();
        app.commit().unwrap();
        while db.cut_block().unwrap() {}
    }
    let local: Vec<i64> = db.blocks().iter().map(|b| b.meta().min_time).collect();
    assert_eq!(local, vec![6 * 3_600_000], "only the newest block stays local");
    drop(db);
    rx.shutdown().await.unwrap();
    assert_eq!(shipped(&bucket_dir).len(), 4, "the last cut block is shipped at shutdown at the latest");
}

#[tokio::test]
async fn shipping_without_external_labels_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::new(config(&dir.path().join("tsdb"), dir.path(), &[]));
    let err = rx.start().await.unwrap_err().to_string();
    assert!(err.contains("--label"), "{err}");
}
