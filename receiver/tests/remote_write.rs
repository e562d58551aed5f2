//! The remote-write endpoint end to end through its router: every kind of bad input gets the
//! status code Thanos receive gives, and changes nothing else.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use prost::Message;
use strata_proto::protocol::{
    Version, CONTENT_ENCODING_HEADER, EXEMPLARS_WRITTEN_HEADER, HISTOGRAMS_WRITTEN_HEADER, SAMPLES_WRITTEN_HEADER,
    SNAPPY_ENCODING, V1_CONTENT_TYPE, V2_CONTENT_TYPE, VERSION_HEADER,
};
use strata_proto::{prometheus as v1, write_v2 as v2};
use strata_receiver::{Receiver, ReceiverConfig, RequestLimits};
use strata_tsdb::db;
use tower::ServiceExt;

use common::{snappy, v1_body};

const NOW: i64 = 1_700_000_000_000;

struct Fixture {
    rx: Arc<Receiver>,
    dir: tempfile::TempDir,
}

async fn fixture_with(limits: RequestLimits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::new(ReceiverConfig { limits, ..ReceiverConfig::new(dir.path()) });
    rx.start().await.unwrap();
    Fixture { rx, dir }
}

async fn fixture() -> Fixture {
    fixture_with(RequestLimits::default()).await
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels.iter().map(|(n, v)| v1::Label { name: n.to_string(), value: v.to_string() }).collect(),
        samples: samples.iter().map(|&(timestamp, value)| v1::Sample { value, timestamp }).collect(),
        ..Default::default()
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn post(f: &Fixture, body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::post("/api/v1/receive");
    let defaults = [
        (CONTENT_ENCODING_HEADER, SNAPPY_ENCODING),
        ("Content-Type", V1_CONTENT_TYPE),
        (VERSION_HEADER, Version::V1.header_value()),
    ];
    for (k, v) in
        defaults.iter().filter(|(k, _)| !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k))).chain(headers)
    {
        req = req.header(*k, *v);
    }
    let resp = f.rx.remote_write_router().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Reply { status, headers, body }
}

/// Every sample of a tenant as `promtool tsdb dump` prints it, read from the WAL on disk.
fn dump(f: &Fixture, tenant: &str) -> Vec<String> {
    let mut out = Vec::new();
    db::dump(&f.dir.path().join(tenant), i64::MIN, i64::MAX, &mut out).unwrap();
    String::from_utf8(out).unwrap().lines().map(str::to_owned).collect()
}

fn up(instance: &str) -> Vec<(&'static str, String)> {
    vec![("__name__", "up".into()), ("instance", instance.into()), ("job", "node".into())]
}

fn ts(labels: &[(&'static str, String)], samples: &[(i64, f64)]) -> v1::TimeSeries {
    let l: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (*n, v.as_str())).collect();
    series(&l, samples)
}

#[tokio::test]
async fn valid_v1_write_is_durable_before_the_reply() {
    let f = fixture().await;
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let r = post(
        &f,
        v1_body(vec![ts(&up("a:1"), &[(NOW, 1.0), (NOW + 15_000, stale)]), ts(&up("b:1"), &[(NOW, 0.5)])]),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.headers.get(SAMPLES_WRITTEN_HEADER).is_none(), "1.0 replies carry no written headers");
    // The WAL on disk already has every sample: the reply is only sent after the WAL write.
    assert_eq!(
        dump(&f, "default-tenant"),
        vec![
            format!(r#"{{__name__="up", instance="a:1", job="node"}} 1 {NOW}"#),
            format!(r#"{{__name__="up", instance="a:1", job="node"}} NaN {}"#, NOW + 15_000),
            format!(r#"{{__name__="up", instance="b:1", job="node"}} 0.5 {NOW}"#),
        ]
    );
    let db = f.rx.tenants.get("default-tenant").unwrap();
    assert_eq!(db.head().num_series(), 2);
}

#[tokio::test]
async fn valid_v2_write_reports_written_counts() {
    let f = fixture().await;
    let req = v2::Request {
        symbols: vec!["".into(), "__name__".into(), "up".into(), "job".into(), "node".into()],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![
                v2::Sample { value: 1.0, timestamp: NOW, start_timestamp: 0 },
                v2::Sample { value: 2.0, timestamp: NOW + 1000, start_timestamp: 0 },
            ],
            ..Default::default()
        }],
    };
    let ct = V2_CONTENT_TYPE;
    let r =
        post(&f, snappy(&req.encode_to_vec()), &[("Content-Type", ct), (VERSION_HEADER, Version::V2.header_value())])
            .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(r.headers[SAMPLES_WRITTEN_HEADER], "2");
    assert_eq!(r.headers[HISTOGRAMS_WRITTEN_HEADER], "0");
    assert_eq!(r.headers[EXEMPLARS_WRITTEN_HEADER], "0");
    assert_eq!(dump(&f, "default-tenant").len(), 2);

    // A symbol reference past the table is undecodable: 400, and the written headers say 0.
    let mut bad = req.clone();
    bad.timeseries[0].labels_refs = vec![1, 2, 3, 99];
    let r = post(&f, snappy(&bad.encode_to_vec()), &[("Content-Type", ct)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.headers[SAMPLES_WRITTEN_HEADER], "0");
    assert_eq!(dump(&f, "default-tenant").len(), 2);
}

#[tokio::test]
async fn metadata_only_and_empty_requests_succeed() {
    let f = fixture().await;
    let md = v1::WriteRequest {
        metadata: vec![v1::MetricMetadata {
            r#type: 1,
            metric_family_name: "up".into(),
            help: "h".into(),
            unit: "".into(),
        }],
        ..Default::default()
    };
    assert_eq!(post(&f, snappy(&md.encode_to_vec()), &[]).await.status, StatusCode::OK);
    assert_eq!(post(&f, Vec::new(), &[]).await.status, StatusCode::OK);
    assert_eq!(f.rx.tenants.get("default-tenant").unwrap().head().num_series(), 0);
}

/// Writes one good sample, then checks that `bad` gets `want` and leaves the data as it was.
async fn assert_refused(f: &Fixture, body: Vec<u8>, headers: &[(&str, &str)], want: StatusCode) -> String {
    let r = post(f, body, headers).await;
    assert_eq!(r.status, want, "body: {}", r.body);
    assert!(!r.body.is_empty(), "a refusal explains itself");
    r.body
}

#[tokio::test]
async fn undecodable_bodies_are_400_and_change_nothing() {
    let f = fixture().await;
    assert_eq!(post(&f, v1_body(vec![ts(&up("a:1"), &[(NOW, 1.0)])]), &[]).await.status, StatusCode::OK);
    let before = dump(&f, "default-tenant");

    let msg = assert_refused(&f, b"\xff\xff\xff\xff\xff\xff not snappy".to_vec(), &[], StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("snappy"), "{msg}");
    // Valid snappy around an invalid protobuf (a field with wire type 7).
    let msg = assert_refused(&f, snappy(b"\x0f\x01\x02"), &[], StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("protobuf"), "{msg}");
    // Truncated protobuf: a series whose length runs past the end.
    let mut full =
        v1::WriteRequest { timeseries: vec![ts(&up("b:1"), &[(NOW, 1.0)])], ..Default::default() }.encode_to_vec();
    full.truncate(full.len() - 3);
    assert_refused(&f, snappy(&full), &[], StatusCode::BAD_REQUEST).await;
    // Truncated snappy.
    let good = v1_body(vec![ts(&up("c:1"), &[(NOW, 1.0)])]);
    assert_refused(&f, good[..good.len() / 2].to_vec(), &[], StatusCode::BAD_REQUEST).await;

    assert_eq!(dump(&f, "default-tenant"), before);
}

#[tokio::test]
async fn invalid_label_sets_are_400_and_only_valid_series_are_written() {
    let f = fixture().await;
    for bad in [
        vec![("", "x"), ("__name__", "m")],
        vec![("__name__", "m"), ("a", "1"), ("a", "2")],
        vec![("__name__", "m"), ("z", "1"), ("a", "2")],
        vec![("job", "")],
    ] {
        let body = v1_body(vec![series(&bad, &[(NOW, 1.0)]), ts(&up("ok:1"), &[(NOW, 1.0)])]);
        let msg = assert_refused(&f, body, &[], StatusCode::BAD_REQUEST).await;
        assert!(msg.contains("invalid labels"), "{msg}");
    }
    // Only the valid series of those requests is stored, once.
    assert_eq!(dump(&f, "default-tenant"), vec![format!(r#"{{__name__="up", instance="ok:1", job="node"}} 1 {NOW}"#)]);
}

#[tokio::test]
async fn conflicting_samples_are_409_and_the_rest_is_committed() {
    let f = fixture().await;
    assert_eq!(post(&f, v1_body(vec![ts(&up("a:1"), &[(NOW, 1.0)])]), &[]).await.status, StatusCode::OK);
    let cases: [(&[(i64, f64)], &str); 3] = [
        (&[(NOW - 1, 5.0)], "out of order"),
        (&[(NOW, 7.0)], "duplicate sample for timestamp"),
        // More than half a chunk range (1h) before the newest sample of the head.
        (&[(NOW - 3_600_001, 1.0)], "out of bounds"),
    ];
    for (i, (samples, why)) in cases.iter().enumerate() {
        let fresh = format!("fresh{i}:1");
        let body = v1_body(vec![ts(&up("a:1"), samples), ts(&up(&fresh), &[(NOW, 2.0)])]);
        let msg = assert_refused(&f, body, &[], StatusCode::CONFLICT).await;
        assert!(msg.contains(why), "{msg}");
    }
    // Same timestamp and same value is not a conflict.
    assert_eq!(post(&f, v1_body(vec![ts(&up("a:1"), &[(NOW, 1.0)])]), &[]).await.status, StatusCode::OK);
    let lines = dump(&f, "default-tenant");
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].ends_with(&format!(" 1 {NOW}")), "the refused samples left the old one alone: {lines:#?}");
    let head = f.rx.tenants.get("default-tenant").unwrap();
    let stats = head.head().stats();
    assert_eq!(stats.out_of_order.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.duplicate.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.out_of_bounds.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn requests_over_limits_are_413_and_change_nothing() {
    let limits = RequestLimits { max_body_bytes: 400, max_decompressed_bytes: 2_000, max_series: 3, max_samples: 5 };
    let f = fixture_with(limits).await;
    let many = |n: usize, per: usize| -> Vec<v1::TimeSeries> {
        (0..n)
            .map(|i| ts(&up(&format!("i{i}")), &(0..per).map(|j| (NOW + j as i64, 1.0)).collect::<Vec<_>>()))
            .collect()
    };
    assert_refused(&f, v1_body(many(4, 1)), &[], StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_refused(&f, v1_body(many(2, 3)), &[], StatusCode::PAYLOAD_TOO_LARGE).await;
    // Incompressible padding in a label pushes the compressed body over 400 bytes.
    let noise: String =
        (0..600u32).map(|i| char::from(b'a' + ((i.wrapping_mul(2_654_435_761) >> 13) % 26) as u8)).collect();
    let msg = assert_refused(
        &f,
        v1_body(vec![series(&[("__name__", "m"), ("x", &noise)], &[(NOW, 1.0)])]),
        &[],
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(msg.contains("over the limit"), "{msg}");
    // Highly compressible: small body, but over the decompressed limit.
    let long = "a".repeat(3_000);
    assert_refused(
        &f,
        v1_body(vec![series(&[("__name__", "m"), ("x", &long)], &[(NOW, 1.0)])]),
        &[],
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(f.rx.tenants.get("default-tenant").unwrap().head().num_series(), 0);
    // At the limits exactly, it is accepted.
    assert_eq!(post(&f, v1_body(many(1, 5)), &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unsupported_messages_and_encodings_are_415() {
    let f = fixture().await;
    let body = v1_body(vec![ts(&up("a:1"), &[(NOW, 1.0)])]);
    assert_refused(
        &f,
        body.clone(),
        &[("Content-Type", "application/x-protobuf;proto=foo.Bar")],
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert_refused(&f, body.clone(), &[("Content-Type", "application/json")], StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_refused(&f, body, &[(CONTENT_ENCODING_HEADER, "gzip")], StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(f.rx.tenants.get("default-tenant").unwrap().head().num_series(), 0);
}

#[tokio::test]
async fn tenants_are_separate_and_validated() {
    let f = fixture().await;
    let body = v1_body(vec![ts(&up("a:1"), &[(NOW, 1.0)])]);
    assert_eq!(post(&f, body.clone(), &[("THANOS-TENANT", "team-a")]).await.status, StatusCode::OK);
    assert!(f.dir.path().join("team-a/wal").is_dir());
    assert_eq!(f.rx.tenants.get("default-tenant").unwrap().head().num_series(), 0);
    assert_eq!(dump(&f, "team-a").len(), 1);
    for bad in ["../escape", "a/b", "..", "."] {
        assert_refused(&f, body.clone(), &[("THANOS-TENANT", bad)], StatusCode::BAD_REQUEST).await;
    }
    assert!(!f.dir.path().join("escape").exists() && !f.dir.path().parent().unwrap().join("escape").exists());

    // The TSDB status follows the tenant header.
    let status = |tenant: &'static str| {
        let rx = f.rx.clone();
        async move {
            let req = Request::get("/api/v1/status/tsdb").header("THANOS-TENANT", tenant).body(Body::empty()).unwrap();
            let resp = rx.http_router().oneshot(req).await.unwrap();
            let code = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (code, serde_json::from_slice::<serde_json::Value>(&body).unwrap())
        }
    };
    let (code, v) = status("team-a").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["data"]["headStats"]["numSeries"], 1);
    assert_eq!(v["data"]["seriesCountByMetricName"][0]["name"], "up");
    assert_eq!(v["data"]["headStats"]["minTime"], NOW);
    let (_, v) = status("default-tenant").await;
    assert_eq!(v["data"]["headStats"]["numSeries"], 0);
    let (code, _) = status("nobody").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn not_ready_is_503() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::new(ReceiverConfig::new(dir.path()));
    let req = Request::post("/api/v1/receive").body(Body::from(v1_body(vec![ts(&up("a:1"), &[(NOW, 1.0)])]))).unwrap();
    assert_eq!(rx.remote_write_router().oneshot(req).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    let req = Request::get("/-/ready").body(Body::empty()).unwrap();
    assert_eq!(rx.http_router().oneshot(req).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!dir.path().join("default-tenant").exists());
}

#[tokio::test]
async fn metrics_use_prometheus_names() {
    let f = fixture().await;
    post(&f, v1_body(vec![ts(&up("a:1"), &[(NOW, 1.0)])]), &[]).await;
    post(&f, b"junk".to_vec(), &[]).await;
    let resp = f.rx.http_router().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for want in [
        r#"prometheus_tsdb_head_series{tenant="default-tenant"} 1"#,
        r#"prometheus_tsdb_head_samples_appended_total{type="float",tenant="default-tenant"} 1"#,
        // Go's promhttp, which Thanos counts requests with, lower-cases the method.
        r#"http_requests_total{code="200",handler="receive",method="post"} 1"#,
        r#"http_requests_total{code="400",handler="receive",method="post"} 1"#,
        r#"http_request_duration_seconds_count{code="200",handler="receive",method="post"} 1"#,
        "# HELP http_requests Tracks the number of HTTP requests.\n",
        "prometheus_tsdb_wal_page_flushes_total",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
}

#[tokio::test]
async fn a_split_tenant_label_names_each_series_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let config = ReceiverConfig { split_tenant_label: Some("team".into()), ..ReceiverConfig::new(dir.path()) };
    let rx = Receiver::new(config);
    rx.start().await.unwrap();
    let f = Fixture { rx, dir };
    let mut a = up("a:1");
    a.push(("team", "red".into()));
    let body = v1_body(vec![ts(&a, &[(NOW, 1.0)]), ts(&up("b:1"), &[(NOW, 2.0)])]);
    let r = post(&f, body, &[("THANOS-TENANT", "blue")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(dump(&f, "red"), vec![format!(r#"{{__name__="up", instance="a:1", job="node"}} 1 {NOW}"#)]);
    assert_eq!(dump(&f, "blue"), vec![format!(r#"{{__name__="up", instance="b:1", job="node"}} 2 {NOW}"#)]);

    // A label that does not name a valid tenant refuses the request, which writes nothing.
    let mut bad = up("c:1");
    bad.push(("team", "..".into()));
    let r = post(&f, v1_body(vec![ts(&bad, &[(NOW, 1.0)]), ts(&up("d:1"), &[(NOW, 1.0)])]), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(f.rx.tenants.get("default-tenant").is_some_and(|db| db.head().status(1).num_series == 0));
}
