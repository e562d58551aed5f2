//! The Prometheus HTTP API v1 over a [`Storage`]: instant and range queries, series, label
//! names and values, metadata, exemplars (none yet), `format_query`, the status endpoints, and
//! rules, alerts and targets (none: nothing is evaluated or scraped), with Prometheus's
//! envelope, error types, status codes and number formatting; plus the query page at `/`.
//! Queries, series, labels and label values also take the Thanos querier's parameters and
//! tenant header ([`QuerierOptions`]).
//!
//! Queries and storage reads are synchronous CPU and disk work and run on tokio's blocking
//! pool, never on the async workers.

pub(crate) mod error;
pub mod json;
pub(crate) mod params;
mod querier;
pub mod query;
mod rules;
mod series;
mod status;
mod stores;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use strata_storage::{MetadataSource, Storage};

use error::ApiError;
pub use querier::{QuerierOptions, DEFAULT_TENANT, DEFAULT_TENANT_HEADER, DEFAULT_TENANT_LABEL};
pub use stores::StoresSource;

use crate::engine::EngineOptions;

/// What the API serves from, and what it reports about the process.
pub struct ApiState {
    pub storage: Arc<dyn Storage>,
    /// The storage for the reads of one query that must end by a deadline (its timeout): a
    /// proxy that cuts off a store still owing an answer then. Without it a query reads
    /// `storage`, and a read waiting on a silent store outlives the query's answer.
    pub storage_until: Option<DeadlineStorage>,
    pub metadata: Arc<dyn MetadataSource>,
    /// Query settings; a request's `timeout` can only shorten `timeout`.
    pub engine: EngineOptions,
    /// Deduplication, partial response, downsampling and tenancy, as Thanos's querier flags
    /// set them (Thanos's defaults unless changed).
    pub querier: QuerierOptions,
    /// Command-line flags by long name, for `/api/v1/status/flags`.
    pub flags: BTreeMap<String, String>,
    /// How long data is kept, as the flag spells it (`runtimeinfo`'s `storageRetention`).
    pub storage_retention: String,
    pub start_time: SystemTime,
    /// Until this says yes (e.g. while WALs replay) every API endpoint answers 503, as
    /// Prometheus does before it is ready.
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Told of every API request, for the process's request metrics.
    pub observe: Option<RequestObserver>,
    /// The commit and branch the binary was built from, for `/api/v1/status/buildinfo`.
    pub build_revision: String,
    pub build_branch: String,
    /// The querier's StoreAPI endpoints, for `/api/v1/stores` and the Stores page; `None`
    /// where there are none to show.
    pub stores: Option<StoresSource>,
}

/// See [`ApiState::storage_until`].
pub type DeadlineStorage = Arc<dyn Fn(Instant) -> Arc<dyn Storage> + Send + Sync>;

/// Called after each API request with the endpoint's name as Thanos names its query API's
/// handlers (`query`, `query_range`, `label_values`, …), the method, the status and the time
/// until the answer started (a streamed answer may go on after that).
pub type RequestObserver = Arc<dyn Fn(&str, &Method, StatusCode, Duration) + Send + Sync>;

impl ApiState {
    /// A state that is always ready, with no flags to report.
    pub fn new(storage: Arc<dyn Storage>, metadata: Arc<dyn MetadataSource>, engine: EngineOptions) -> Self {
        ApiState {
            storage,
            storage_until: None,
            metadata,
            engine,
            querier: QuerierOptions::default(),
            flags: BTreeMap::new(),
            storage_retention: String::new(),
            start_time: SystemTime::now(),
            ready: Arc::new(|| true),
            observe: None,
            build_revision: String::new(),
            build_branch: String::new(),
            stores: None,
        }
    }
}

/// All routes: `/api/v1/…`, the query page, and Prometheus's plain-text 404 and 405 answers.
pub fn router(state: ApiState) -> Router {
    shared_router(Arc::new(state), true)
}

/// [`router`] over a state the caller keeps too (to ask [`query::instant_samples`]);
/// without `rules`, `/api/v1/rules` and `/api/v1/alerts` are left to a ruler in the same
/// process.
pub fn shared_router(state: Arc<ApiState>, rules: bool) -> Router {
    let endpoint = |name, methods| api_route(&state, name, methods);
    let api = Router::new()
        .route("/api/v1/query", endpoint("query", get(query::instant).post(query::instant)))
        .route("/api/v1/query_range", endpoint("query_range", get(query::range).post(query::range)))
        .route("/api/v1/query_exemplars", endpoint("exemplars", get(query::exemplars).post(query::exemplars)))
        .route("/api/v1/series", endpoint("series", get(series::series).post(series::series)))
        .route("/api/v1/labels", endpoint("label_names", get(series::label_names).post(series::label_names)))
        .route("/api/v1/label/{name}/values", endpoint("label_values", get(series::label_values)))
        .route("/api/v1/metadata", endpoint("metadata", get(series::metadata)))
        .route("/api/v1/format_query", endpoint("format_query", get(query::format_query).post(query::format_query)))
        .route("/api/v1/targets", endpoint("targets", get(rules::targets)))
        .route("/api/v1/stores", endpoint("stores", get(stores::stores)))
        .route("/api/v1/status/buildinfo", endpoint("status_build", get(status::buildinfo)))
        .route("/api/v1/status/config", endpoint("status_config", get(status::config)))
        .route("/api/v1/status/flags", endpoint("status_flags", get(status::flags)))
        .route("/api/v1/status/runtimeinfo", endpoint("status_runtime", get(status::runtimeinfo)))
        .with_state(Arc::clone(&state));
    let api = if rules {
        api.merge(
            Router::new()
                .route("/api/v1/rules", endpoint("rules", get(rules::rules)))
                .route("/api/v1/alerts", endpoint("alerts", get(rules::alerts)))
                .with_state(Arc::clone(&state)),
        )
    } else {
        api
    };
    api.merge(crate::ui::router()).fallback(not_found).method_not_allowed_fallback(method_not_allowed)
}

/// An API endpoint named `name` (as Thanos names its query API's handlers, for the request
/// metrics): 503 until the state says ready, and every answer reported to the observer.
fn api_route(
    st: &Arc<ApiState>,
    name: &'static str,
    methods: MethodRouter<Arc<ApiState>>,
) -> MethodRouter<Arc<ApiState>> {
    methods.route_layer(middleware::from_fn_with_state((Arc::clone(st), name), serve))
}

async fn serve(State((st, name)): State<(Arc<ApiState>, &'static str)>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let started = Instant::now();
    let resp =
        if (st.ready)() { next.run(req).await } else { plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable") };
    if let Some(observe) = &st.observe {
        observe(name, &method, resp.status(), started.elapsed());
    }
    resp
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
