//! A real TSDB with a small fixed data set behind the API router, and request helpers that go
//! through the router as a server would. Query strings are encoded with strata-testkit's
//! `url_encode`.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use strata_query::api::{router, ApiState};
use strata_query::engine::EngineOptions;
use strata_storage::{MetadataSource, MetricMetadata, Storage};
use strata_tsdb::db::{Db, DbOptions};
use tempfile::TempDir;
use tower::ServiceExt;

/// Sample times of the fixed series: every 15 s from 0 s to 600 s (milliseconds).
pub const STEP_MS: i64 = 15_000;
pub const LAST_MS: i64 = 600_000;

/// A series of the data set: label pairs (sorted by name) and its value at a time in seconds.
pub type SeriesDef = (Vec<(&'static str, &'static str)>, fn(f64) -> f64);

pub fn fixture() -> Vec<SeriesDef> {
    vec![
        (vec![("__name__", "up"), ("instance", "a"), ("job", "api")], |_| 1.0),
        (vec![("__name__", "up"), ("instance", "b"), ("job", "api")], |_| 0.0),
        (vec![("__name__", "up"), ("instance", "c"), ("job", "db")], |_| 1.0),
        (vec![("__name__", "http_requests_total"), ("code", "200"), ("job", "api")], |t| 2.0 * t),
        (vec![("__name__", "http_requests_total"), ("code", "500"), ("job", "api")], |t| (t / 60.0).floor()),
        (vec![("__name__", "tiny"), ("service.name", "x<y")], |_| 1e-7),
        (vec![("__name__", "huge")], |_| 1e21),
    ]
}

pub struct TestApi {
    pub router: Router,
    _dir: TempDir,
}

/// Fixed metadata for `/api/v1/metadata`.
pub struct FixedMetadata;

impl MetadataSource for FixedMetadata {
    fn metadata(&self, metric: Option<&str>) -> Vec<(String, Vec<MetricMetadata>)> {
        let md = |t: &str, help: &str, unit: &str| MetricMetadata {
            metric_type: t.into(),
            help: help.into(),
            unit: unit.into(),
        };
        let all = vec![
            ("http_requests_total".to_owned(), vec![md("counter", "Requests served.", "")]),
            ("up".to_owned(), vec![md("gauge", "Target is up.", ""), md("gauge", "Whether the target is up.", "")]),
        ];
        all.into_iter().filter(|(n, _)| metric.is_none_or(|m| m == n)).collect()
    }
}

pub fn api() -> TestApi {
    api_with(EngineOptions::default(), |_| {})
}

/// The fixture in a fresh TSDB; `adjust` may change the state before the router is built.
pub fn api_with(engine: EngineOptions, adjust: impl FnOnce(&mut ApiState)) -> TestApi {
    api_over(&fixture(), |db| Arc::new(db), engine, adjust)
}

/// `series` (sampled as the fixture is) in a fresh TSDB, which `storage` may wrap; `adjust`
/// may change the state before the router is built.
pub fn api_over(
    series: &[SeriesDef],
    storage: impl FnOnce(Db) -> Arc<dyn Storage>,
    engine: EngineOptions,
    adjust: impl FnOnce(&mut ApiState),
) -> TestApi {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(dir.path(), DbOptions::default()).expect("open TSDB");
    let mut app = db.appender();
    for (labels, value) in series {
        let samples = (0..=LAST_MS / STEP_MS).map(|i| (i * STEP_MS, value((i * STEP_MS) as f64 / 1000.0)));
        app.append(labels, samples).expect("append");
    }
    app.commit().expect("commit");
    let mut state = ApiState::new(storage(db), Arc::new(FixedMetadata), engine);
    adjust(&mut state);
    TestApi { router: router(state), _dir: dir }
}

pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts Prometheus's error envelope with this status, type and message.
    pub fn assert_error(&self, status: u16, error_type: &str, message: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        let j = self.json();
        assert_eq!(j["status"], "error", "{}", self.body);
        assert_eq!(j["errorType"], error_type, "{}", self.body);
        assert_eq!(j["error"], message, "{}", self.body);
    }

    /// The `data` of a success envelope.
    pub fn data(&self) -> serde_json::Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert_eq!(self.content_type, "application/json");
        let j = self.json();
        assert_eq!(j["status"], "success", "{}", self.body);
        j["data"].clone()
    }
}

impl TestApi {
    pub async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.router.clone().oneshot(req).await.expect("router is infallible");
        let status = resp.status();
        let content_type =
            resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("read body");
        Answer { status, content_type, body: String::from_utf8(bytes.to_vec()).expect("UTF-8 body") }
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.get_with(uri, &[]).await
    }

    /// A GET with these headers.
    pub async fn get_with(&self, uri: &str, headers: &[(&str, &str)]) -> Answer {
        let req = headers.iter().fold(Request::get(uri), |r, (k, v)| r.header(*k, *v));
        self.send(req.body(Body::empty()).expect("request")).await
    }

    /// A form-encoded POST, as Grafana and promtool send.
    pub async fn post_form(&self, uri: &str, form: &str) -> Answer {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .expect("request");
        self.send(req).await
    }
}
