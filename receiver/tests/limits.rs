//! The limits configuration through the remote-write endpoint: each request limit of a tenant
//! (its own or the default) is 413, a tenant at its head series limit 429, and a refused
//! request changes nothing stored; a new file applies on reload.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use strata_proto::prometheus as v1;
use strata_proto::protocol::{Version, CONTENT_ENCODING_HEADER, SNAPPY_ENCODING, V1_CONTENT_TYPE, VERSION_HEADER};
use strata_receiver::limits::{Limiter, LimitsSource};
use strata_receiver::{Receiver, ReceiverConfig};
use tower::ServiceExt;

use common::v1_body;

const NOW: i64 = 1_700_000_000_000;

const LIMITS: &str = "
write:
  default:
    request:
      series_limit: 3
      samples_limit: 6
    head_series_limit: 5
  tenants:
    big:
      request:
        series_limit: 0
        samples_limit: 0
      head_series_limit: 0
    small:
      request:
        size_bytes_limit: 60
";

fn series(n: usize, from: usize, samples: usize) -> Vec<v1::TimeSeries> {
    (from..from + n)
        .map(|i| v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: "up".into() },
                v1::Label { name: "instance".into(), value: format!("i{i:03}") },
            ],
            samples: (0..samples as i64).map(|k| v1::Sample { value: 1.0, timestamp: NOW + k }).collect(),
            ..Default::default()
        })
        .collect()
}

async fn post(rx: &Arc<Receiver>, tenant: &str, body: Vec<u8>) -> (StatusCode, String) {
    let req = Request::post("/api/v1/receive")
        .header(CONTENT_ENCODING_HEADER, SNAPPY_ENCODING)
        .header("Content-Type", V1_CONTENT_TYPE)
        .header(VERSION_HEADER, Version::V1.header_value())
        .header("THANOS-TENANT", tenant)
        .body(Body::from(body))
        .unwrap();
    let resp = rx.remote_write_router().oneshot(req).await.unwrap();
    let status = resp.status();
    (status, String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned())
}

fn head_series(rx: &Receiver, tenant: &str) -> u64 {
    rx.tenants.get(tenant).map_or(0, |db| db.head().num_series())
}

#[tokio::test]
async fn each_limit_is_answered_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.yaml");
    std::fs::write(&file, LIMITS).unwrap();
    let limiter =
        Limiter::load(LimitsSource::File { path: file.clone(), reload_interval: Duration::from_secs(3600) }).unwrap();
    let rx =
        Receiver::new(ReceiverConfig { limiter: Arc::new(limiter), ..ReceiverConfig::new(dir.path().join("tsdb")) });
    rx.start().await.unwrap();

    // The default: three series, six samples per request.
    assert_eq!(post(&rx, "a", v1_body(series(3, 0, 2))).await.0, StatusCode::OK);
    for (body, why) in [(series(4, 10, 1), "series"), (series(3, 10, 3), "samples")] {
        let (status, text) = post(&rx, "a", v1_body(body)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{why}: {text}");
        assert!(text.contains(why), "{text}");
    }
    assert_eq!(head_series(&rx, "a"), 3, "refused requests store nothing");

    // Head series: 3 then 5 stored; at 5 the tenant is refused whatever it sends.
    assert_eq!(post(&rx, "a", v1_body(series(2, 3, 1))).await.0, StatusCode::OK);
    let (status, text) = post(&rx, "a", v1_body(series(1, 100, 1))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert!(text.contains("tenant is above active series limit"), "{text}");
    assert_eq!(head_series(&rx, "a"), 5);
    // Other tenants are not held back by it.
    assert_eq!(post(&rx, "b", v1_body(series(3, 0, 1))).await.0, StatusCode::OK);

    // A tenant without limits; one with only a size limit (the rest inherited).
    assert_eq!(post(&rx, "big", v1_body(series(50, 0, 10))).await.0, StatusCode::OK);
    assert_eq!(head_series(&rx, "big"), 50);
    let (status, text) = post(&rx, "small", v1_body(series(3, 0, 2))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(head_series(&rx, "small"), 0);

    // A new file applies on reload: the default head series limit lifted.
    std::fs::write(&file, LIMITS.replace("head_series_limit: 5", "head_series_limit: 0")).unwrap();
    rx.config.limiter.reload();
    assert_eq!(post(&rx, "a", v1_body(series(1, 100, 1))).await.0, StatusCode::OK);
    assert_eq!(head_series(&rx, "a"), 6);
}
