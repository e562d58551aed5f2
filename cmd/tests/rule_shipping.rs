//! `strata rule --objstore.config`: with a short `--tsdb.block-duration` the ruler cuts blocks
//! of its recorded series and ships them to S3 (moto); `thanos tools bucket verify` finds no
//! issue, and a real `thanos store` over the bucket with `strata query` in front returns the
//! recorded series with the ruler's external labels.

mod common;

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{remote_write, strata_bin};
use serde_json::Value;
use strata_proto::prometheus as v1;
use strata_testkit::http::get_json;
use strata_testkit::{peer, url_encode, wait_for, Fleet, Moto, Node};

const BUCKET: &str = "ruler";

const RULES: &str = r#"groups:
  - name: shipped
    rules:
      - record: job:test_metric:sum
        expr: sum by (job) (test_metric)
"#;

/// The metas of the blocks in the bucket, as `thanos tools bucket ls` prints them.
fn bucket_metas(objstore: &str) -> Vec<Value> {
    let ls = Command::new(peer("thanos"))
        .args(["tools", "bucket", "ls", "-o", "json", &format!("--objstore.config={objstore}")])
        .output()
        .unwrap();
    serde_json::Deserializer::from_slice(&ls.stdout).into_iter::<Value>().filter_map(Result::ok).collect()
}

#[test]
fn ruler_blocks_are_shipped_and_read_by_thanos_store() {
    let work = tempfile::tempdir().unwrap();
    let moto = Moto::start(work.path());
    let objstore = moto.new_bucket(BUCKET);
    let mut fleet = Fleet::new(work.path());

    let source = fleet.slot("standalone");
    let standalone = Node::start(strata_bin(), &source, source.standalone_args());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let labels = [("__name__", "test_metric"), ("job", "api")]
        .iter()
        .map(|(n, v)| v1::Label { name: (*n).into(), value: (*v).into() })
        .collect();
    let ts = v1::TimeSeries { labels, samples: vec![v1::Sample { value: 3.0, timestamp: now }], ..Default::default() };
    remote_write(
        &source.remote_write,
        "/api/v1/receive",
        &v1::WriteRequest { timeseries: vec![ts], ..Default::default() },
    );

    let rules = work.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let slot = fleet.slot("rule");
    let args = vec![
        "rule".to_owned(),
        format!("--rule-file={}", rules.display()),
        format!("--query={}", standalone.http()),
        "--eval-interval=1s".to_owned(),
        "--tsdb.block-duration=2s".to_owned(),
        "--label=ruler=\"shipping\"".to_owned(),
        format!("--objstore.config={objstore}"),
        format!("--data-dir={}", slot.data_dir.display()),
        format!("--http-address={}", slot.http),
        format!("--grpc-address={}", slot.grpc),
    ];
    let _ruler = Node::start(strata_bin(), &slot, &args);

    let meta = wait_for("a ruler block in the bucket", Duration::from_secs(120), || {
        bucket_metas(&objstore)
            .into_iter()
            .find(|m| m["thanos"]["source"] == "ruler")
            .ok_or_else(|| "no block yet".to_owned())
    })
    .unwrap();
    assert_eq!(meta["thanos"]["labels"]["ruler"], "shipping", "{meta}");
    assert!(meta["stats"]["numSamples"].as_u64().unwrap_or(0) >= 1, "{meta}");

    let verify = Command::new(peer("thanos"))
        .args(["tools", "bucket", "verify", &format!("--objstore.config={objstore}")])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success(), "thanos tools bucket verify failed:\n{text}");
    assert!(!text.contains("level=warn") && !text.contains("level=error"), "thanos tools bucket verify:\n{text}");

    // A real thanos store over the bucket, strata query in front of it.
    let store = fleet.slot("thanos-store");
    let mut store_args: Vec<OsString> = vec!["store".into(), format!("--objstore.config={objstore}").into()];
    store_args.extend(["--data-dir".into(), store.data_dir.clone().into_os_string()]);
    store_args.extend(["--http-address", &store.http, "--grpc-address", &store.grpc].map(OsString::from));
    let _store = Node::start(&peer("thanos"), &store, store_args);
    let query = fleet.slot("query");
    let querier = Node::start(strata_bin(), &query, query.query_args(&[&store.grpc]));
    let max_time = meta["maxTime"].as_i64().unwrap();
    let at = format!("{}.{:03}", (max_time - 1) / 1000, (max_time - 1) % 1000);
    let path = format!("/api/v1/query?query={}&time={at}", url_encode("job:test_metric:sum"));
    let series = wait_for("the recorded series through thanos store", Duration::from_secs(60), || {
        let v = get_json(querier.http(), &path)?;
        v["data"]["result"][0].as_object().cloned().ok_or_else(|| format!("not yet: {v}"))
    })
    .unwrap();
    assert_eq!(series["metric"]["__name__"], "job:test_metric:sum");
    assert_eq!(series["metric"]["job"], "api");
    assert_eq!(series["metric"]["ruler"], "shipping");
    assert_eq!(series["value"][1], "3");
}
