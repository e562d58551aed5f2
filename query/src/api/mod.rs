//! The Prometheus HTTP API v1 over a [`Storage`]: instant and range queries, series, label
//! names and values, metadata, exemplars (none yet) and the status endpoints, with
//! Prometheus's envelope, error types, status codes and number formatting; plus the query
//! page at `/`.
//!
//! Queries and storage reads are synchronous CPU and disk work and run on tokio's blocking
//! pool, never on the async workers.

mod error;
pub mod json;
mod params;
mod query;
mod series;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use strata_storage::{MetadataSource, Storage};

use error::ApiError;

use crate::engine::EngineOptions;

/// What the API serves from, and what it reports about the process.
pub struct ApiState {
    pub storage: Arc<dyn Storage>,
    pub metadata: Arc<dyn MetadataSource>,
    /// Query settings; a request's `timeout` can only shorten `timeout`.
    pub engine: EngineOptions,
    /// Command-line flags by long name, for `/api/v1/status/flags`.
    pub flags: BTreeMap<String, String>,
    /// How long data is kept, as the flag spells it (`runtimeinfo`'s `storageRetention`).
    pub storage_retention: String,
    pub start_time: SystemTime,
    /// Until this says yes (e.g. while WALs replay) every API endpoint answers 503, as
    /// Prometheus does before it is ready.
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl ApiState {
    /// A state that is always ready, with no flags to report.
    pub fn new(storage: Arc<dyn Storage>, metadata: Arc<dyn MetadataSource>, engine: EngineOptions) -> Self {
        ApiState {
            storage,
            metadata,
            engine,
            flags: BTreeMap::new(),
            storage_retention: String::new(),
            start_time: SystemTime::now(),
            ready: Arc::new(|| true),
        }
    }
}

/// All routes: `/api/v1/…`, the query page, and Prometheus's plain-text 404 and 405 answers.
pub fn router(state: ApiState) -> Router {
    let state = Arc::new(state);
    let api = Router::new()
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route("/api/v1/query_exemplars", get(query::exemplars).post(query::exemplars))
        .route("/api/v1/series", get(series::series).post(series::series))
        .route("/api/v1/labels", get(series::label_names).post(series::label_names))
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .route("/api/v1/metadata", get(series::metadata))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route_layer(middleware::from_fn_with_state(state.clone(), ready_gate))
        .with_state(state);
    api.merge(crate::ui::router()).fallback(not_found).method_not_allowed_fallback(method_not_allowed)
}

async fn ready_gate(State(st): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    if (st.ready)() {
        next.run(req).await
    } else {
        plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Go's `http.NotFound`, which Prometheus answers unknown paths with.
async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "404 page not found\n")
}

async fn method_not_allowed() -> Response {
    plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

/// Runs storage or engine work on the blocking pool; a panic there becomes an internal error.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
}
