//! The query frontend (`strata query-frontend`, Thanos's `query-frontend`): in front of any
//! Prometheus-compatible query API, it splits range queries at interval boundaries, runs the
//! pieces in parallel with retries, keeps their answers in a results cache (extents reused and
//! extended), splits label and series requests likewise, and passes everything else through
//! untouched. Merged answers are written by the query API's JSON writer, so they read as the
//! downstream's answer to the whole request would.

pub mod cache;
pub mod downstream;
pub mod merge;
pub mod proxy;
pub mod split;
pub mod tls;
pub mod tripper;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, MethodRouter};
use axum::Router;
use futures::StreamExt as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::api::error::ApiError;
use crate::api::json::write_time;
use crate::api::params::{parse_time, Params};
use crate::api::query::range_bounds;
use crate::api::RequestObserver;
use crate::value::Series;
use cache::{decode_extents, encode_extents, Extent, ResultsCache};
use downstream::{piece_headers, Answer, Downstream};
use merge::Notes;

/// Go's `net/http` reads at most this much of a form body; so does the frontend.
const MAX_FORM_BYTES: usize = 10 << 20;

/// Label and series requests over more intervals than this go downstream whole: a request
/// for all time would otherwise become millions of pieces.
const MAX_LABEL_PIECES: usize = 1000;

/// How the frontend works (the flags of `strata query-frontend`).
pub struct FrontendOptions {
    /// `--query-range.split-interval` in milliseconds; 0 does not split.
    pub split_interval: i64,
    /// `--labels.split-interval` in milliseconds; 0 does not split.
    pub labels_split_interval: i64,
    pub max_query_parallelism: usize,
    pub align_range_with_step: bool,
    /// Nothing newer than this before now is cached.
    pub max_freshness: Duration,
    /// Headers naming the tenant, first found wins (cache keys are per tenant).
    pub tenant_headers: Vec<String>,
}

/// The frontend's counters, under Thanos's and Cortex's names.
#[derive(Clone, Default)]
pub struct FrontendMetrics {
    split_queries: Counter,
    cache_fetched_keys: Family<Vec<(String, String)>, Counter>,
    cache_hits: Family<Vec<(String, String)>, Counter>,
    cache_stored_keys: Family<Vec<(String, String)>, Counter>,
}

impl FrontendMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "thanos_frontend_split_queries",
            "Total number of underlying query requests after the split by interval is applied",
            self.split_queries.clone(),
        );
        registry.register(
            "cortex_cache_fetched_keys",
            "Total count of keys requested from cache.",
            self.cache_fetched_keys.clone(),
        );
        registry.register("cortex_cache_hits", "Total count of keys found in cache.", self.cache_hits.clone());
        registry.register(
            "thanos_frontend_cache_stored_keys",
            "Total count of keys written to the results cache.",
            self.cache_stored_keys.clone(),
        );
    }
}

pub struct Frontend {
    options: FrontendOptions,
    downstream: Downstream,
    cache: Option<ResultsCache>,
    metrics: FrontendMetrics,
    observe: Option<RequestObserver>,
}

impl Frontend {
    pub fn new(
        options: FrontendOptions,
        downstream: Downstream,
        cache: Option<ResultsCache>,
        metrics: FrontendMetrics,
        observe: Option<RequestObserver>,
    ) -> Frontend {
        Frontend { options, downstream, cache, metrics, observe }
    }

    fn cache_label(&self) -> Vec<(String, String)> {
        vec![("name".into(), format!("frontend-{}", self.cache.as_ref().map_or("none", ResultsCache::kind)))]
    }

    /// The tenant of a request, for cache keys.
    fn tenant(&self, headers: &HeaderMap) -> String {
        self.options
            .tenant_headers
            .iter()
            .find_map(|h| headers.get(h.as_str()).and_then(|v| v.to_str().ok()))
            .unwrap_or("anonymous")
            .to_owned()
    }
}

/// The frontend's routes: range queries, label names and values and series split; every
/// other path passed through.
pub fn router(frontend: Frontend) -> Router {
    let fe = Arc::new(frontend);
    let route = |name: &'static str, methods: MethodRouter<Arc<Frontend>>| {
        methods.layer(middleware::from_fn_with_state((Arc::clone(&fe), name), observe))
    };
    Router::new()
        .route("/api/v1/query_range", route("query_range", any(query_range)))
        .route("/api/v1/labels", route("label_names", any(labels)))
        .route("/api/v1/label/{name}/values", route("label_values", any(labels)))
        .route("/api/v1/series", route("series", any(labels)))
        .fallback(pass_through)
        .with_state(fe)
}

async fn observe(State((fe, name)): State<(Arc<Frontend>, &'static str)>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let started = Instant::now();
    let resp = next.run(req).await;
    if let Some(observe) = &fe.observe {
        observe(name, &method, resp.status(), started.elapsed());
    }
    resp
}

/// Everything the frontend does not split, reported as handler `passthrough`.
async fn pass_through(State(fe): State<Arc<Frontend>>, req: Request) -> Response {
    let method = req.method().clone();
    let started = Instant::now();
    let resp = fe.downstream.forward(req).await;
    if let Some(observe) = &fe.observe {
        observe("passthrough", &method, resp.status(), started.elapsed());
    }
    resp
}

/// A request read whole: its parts, body and parameters (query string and form body).
struct ReadRequest {
    parts: axum::http::request::Parts,
    body: Bytes,
    params: Params,
}

impl ReadRequest {
    async fn read(req: Request) -> Result<ReadRequest, Response> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|e| {
            ApiError::bad_data(format!("cannot read the request body (at most {MAX_FORM_BYTES} bytes): {e}"))
                .into_response()
        })?;
        let mut params = Params::default();
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) && is_form {
            params.extend_from(&body);
        }
        if let Some(q) = parts.uri.query() {
            params.extend_from(q.as_bytes());
        }
        Ok(ReadRequest { parts, body, params })
    }

    /// The request as it came, for passing through.
    fn into_request(self) -> Request {
        Request::from_parts(self.parts, Body::from(self.body))
    }

    /// The path with every parameter but `replaced`, then `extra`, as a query string.
    fn target(&self, replaced: &[&str], extra: &[(&str, String)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.params.pairs() {
            if !replaced.contains(&k) {
                q.append_pair(k, v);
            }
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        format!("{}?{}", self.parts.uri.path(), q.finish())
    }
}

fn seconds(ms: i64) -> String {
    let mut s = String::new();
    write_time(&mut s, ms);
    s
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether a query's value at a step depends on the query's range, so that its pieces would
/// not answer as the whole (`@ start()`, `@ end()`, timestamps after `@`, `range()`).
fn depends_on_range(query: &str) -> bool {
    query.contains('@') || query.contains("range(")
}

/// One range query being answered.
struct RangeQuery<'a> {
    fe: &'a Frontend,
    req: &'a ReadRequest,
    headers: HeaderMap,
    step: i64,
    /// Cache key without the interval number: tenant, query, step, off the zero grid the
    /// grid's offset (extents of two grids never mix), and the other parameters.
    key_prefix: String,
}

/// A piece's series and notes, and the cache entry (key, value) to write once the whole query
/// has succeeded.
struct PieceAnswer {
    series: Vec<Series>,
    notes: Notes,
    to_store: Option<(String, Vec<u8>)>,
}

/// What the downstream answered for a stretch of a range query.
struct Fetched {
    series: Vec<Series>,
    notes: Notes,
    cacheable: bool,
}

async fn query_range(State(fe): State<Arc<Frontend>>, req: Request) -> Response {
    let req = match ReadRequest::read(req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let p = &req.params;
    // Answers that depend on the whole range, or carry per-request extras, go through whole.
    if depends_on_range(p.get("query")) || !p.get("stats").is_empty() || !p.get("limit").is_empty() {
        return fe.downstream.forward(req.into_request()).await;
    }
    let (mut start, mut end, step_ns) = match range_bounds(p) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if step_ns % 1_000_000 != 0 {
        // Steps in fractions of a millisecond: the downstream decides.
        return fe.downstream.forward(req.into_request()).await;
    }
    let step = step_ns / 1_000_000;
    if fe.options.align_range_with_step {
        (start, end) = split::align_to_step(start, end, step);
    }
    let pieces = if fe.options.split_interval > 0 {
        split::split_range(start, end, step, fe.options.split_interval)
    } else {
        vec![(start, end)]
    };
    fe.metrics.split_queries.inc_by(pieces.len() as u64);
    let offset = start.rem_euclid(step);
    let grid = if offset == 0 { String::new() } else { format!(":{offset}") };
    // Parameters that change the answer (dedup, partial_response, replicaLabels[], …) are part
    // of the key; the range and the timeout are not.
    let mut others: Vec<String> = p
        .pairs()
        .filter(|(k, _)| !["query", "start", "end", "step", "timeout"].contains(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    others.sort_unstable();
    let others = if others.is_empty() { String::new() } else { format!(":{}", others.join("&")) };
    let q = RangeQuery {
        fe: &fe,
        req: &req,
        headers: piece_headers(&req.parts.headers),
        step,
        key_prefix: format!("{}:{}:{}{grid}{others}", fe.tenant(&req.parts.headers), p.get("query"), step),
    };
    let answers: Vec<Result<PieceAnswer, Response>> =
        futures::stream::iter(pieces.iter().copied().map(|(s, e)| q.piece(s, e)))
            .buffered(fe.options.max_query_parallelism.max(1))
            .collect()
            .await;
    let mut parts = Vec::with_capacity(answers.len());
    let mut notes = Vec::with_capacity(answers.len());
    let mut to_store = Vec::new();
    for answer in answers {
        // The first piece that failed answers for the whole query, as the downstream said it,
        // and nothing of a failed query is cached.
        let answer = match answer {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        parts.push(answer.series);
        notes.push(answer.notes);
        to_store.extend(answer.to_store);
    }
    if let Some(cache) = &fe.cache {
        let label = fe.cache_label();
        for (key, value) in to_store {
            cache.store(&key, value).await;
            fe.metrics.cache_stored_keys.get_or_create(&label).inc();
        }
    }
    let notes = merge::merge_notes(notes);
    match tokio::task::spawn_blocking(move || merge::matrix_response(merge::merge_series(parts), &notes)).await {
        Ok(resp) => resp,
        Err(e) => ApiError::internal(format!("merging the answers failed: {e}")).into_response(),
    }
}

impl RangeQuery<'_> {
    /// The downstream's answer for `[start, end]` on the query's grid.
    async fn fetch(&self, start: i64, end: i64) -> Result<Fetched, Response> {
        let target = self.req.target(
            &["start", "end", "step"],
            &[("start", seconds(start)), ("end", seconds(end)), ("step", seconds(self.step))],
        );
        let answer: Answer =
            self.fe.downstream.get(&target, &self.headers).await.map_err(IntoResponse::into_response)?;
        if answer.status != axum::http::StatusCode::OK {
            return Err(answer.into_response());
        }
        let no_store = answer.no_store();
        let body = answer.body;
        let parsed = tokio::task::spawn_blocking(move || merge::parse_matrix(&body))
            .await
            .map_err(|e| ApiError::internal(format!("reading the downstream's answer failed: {e}")).into_response())?;
        let (series, notes) = parsed.map_err(|e| {
            ApiError::internal(format!("the downstream's answer to {target} cannot be read: {e}")).into_response()
        })?;
        let cacheable = !no_store && notes.is_empty();
        Ok(Fetched { series, notes, cacheable })
    }

    /// One piece: from the cache where it holds the piece's extents, the rest from the
    /// downstream, and what was fetched added to the cache.
    async fn piece(&self, start: i64, end: i64) -> Result<PieceAnswer, Response> {
        let fe = self.fe;
        let newest_cacheable = now_ms() - i64::try_from(fe.options.max_freshness.as_millis()).unwrap_or(i64::MAX);
        let cache = match &fe.cache {
            Some(c) if start <= newest_cacheable && fe.options.split_interval > 0 => c,
            _ => {
                let f = self.fetch(start, end).await?;
                return Ok(PieceAnswer { series: f.series, notes: f.notes, to_store: None });
            }
        };
        let key = format!("{}:{}", self.key_prefix, start.div_euclid(fe.options.split_interval));
        let label = fe.cache_label();
        fe.metrics.cache_fetched_keys.get_or_create(&label).inc();
        let cached = cache.fetch(std::slice::from_ref(&key)).await.pop().flatten();
        let extents = match cached.map(|bytes| decode_extents(&key, &bytes)) {
            Some(Ok(extents)) => {
                fe.metrics.cache_hits.get_or_create(&label).inc();
                extents
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, key, "cached value unreadable; treated as a miss");
                Vec::new()
            }
            None => Vec::new(),
        };
        let spans: Vec<(i64, i64)> = extents.iter().map(|e| (e.start, e.end)).collect();
        let missing = split::missing(start, end, self.step, &spans);
        let mut parts: Vec<Vec<Series>> = extents.iter().map(|e| merge::extract(&e.series, start, end)).collect();
        let mut notes = Notes::default();
        let mut new_extents = Vec::new();
        for (s, e) in missing {
            let f = self.fetch(s, e).await?;
            if f.cacheable {
                // Only what is old enough to be final is kept: the last step at or before it.
                let last = e.min(s + (newest_cacheable - s).div_euclid(self.step) * self.step);
                if last >= s {
                    new_extents.push(Extent { start: s, end: last, series: merge::extract(&f.series, s, last) });
                }
            }
            notes.absorb(f.notes);
            parts.push(f.series);
        }
        let to_store = (!new_extents.is_empty()).then(|| {
            let all = coalesce(extents.into_iter().chain(new_extents).collect(), self.step);
            let value = encode_extents(&key, &all);
            (key, value)
        });
        Ok(PieceAnswer { series: merge::merge_series(parts), notes, to_store })
    }
}

/// Extents that touch or overlap (less than a step apart) joined into one.
fn coalesce(mut extents: Vec<Extent>, step: i64) -> Vec<Extent> {
    extents.sort_by_key(|e| (e.start, e.end));
    let mut out: Vec<Extent> = Vec::with_capacity(extents.len());
    for e in extents {
        match out.last_mut() {
            Some(last) if e.start <= last.end.saturating_add(step) => {
                last.end = last.end.max(e.end);
                let series = std::mem::take(&mut last.series);
                last.series = merge::merge_series([series, e.series]);
            }
            _ => out.push(e),
        }
    }
    out
}

/// What a label or series request asks for.
#[derive(Clone, Copy, PartialEq)]
enum LabelsKind {
    Strings,
    Series,
}

/// `/api/v1/labels`, `/api/v1/label/<name>/values` and `/api/v1/series`: split at
/// `--labels.split-interval` when both `start` and `end` are given, the pieces' answers
/// merged (sorted, each once).
async fn labels(State(fe): State<Arc<Frontend>>, req: Request) -> Response {
    let req = match ReadRequest::read(req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let kind = if req.parts.uri.path().ends_with("/series") { LabelsKind::Series } else { LabelsKind::Strings };
    let p = &req.params;
    let bounds = match (parse_time(p.get("start")), parse_time(p.get("end"))) {
        (Ok(s), Ok(e)) if !p.get("limit").is_empty() || fe.options.labels_split_interval <= 0 || s >= e => None,
        (Ok(s), Ok(e)) => Some((s, e)),
        _ => None,
    };
    let pieces = bounds.map(|(s, e)| split::split_times(s, e, fe.options.labels_split_interval));
    let Some(pieces) = pieces.filter(|p| (2..=MAX_LABEL_PIECES).contains(&p.len())) else {
        // Unbounded, unsplittable or bad requests: the downstream answers (and words errors).
        return fe.downstream.forward(req.into_request()).await;
    };
    fe.metrics.split_queries.inc_by(pieces.len() as u64);
    let headers = piece_headers(&req.parts.headers);
    let ask = |(s, e): (i64, i64)| {
        let target = req.target(&["start", "end"], &[("start", seconds(s)), ("end", seconds(e))]);
        let headers = &headers;
        let fe = &fe;
        async move {
            let answer = fe.downstream.get(&target, headers).await.map_err(IntoResponse::into_response)?;
            if answer.status != axum::http::StatusCode::OK {
                return Err(answer.into_response());
            }
            Ok((target, answer.body))
        }
    };
    let answers: Vec<Result<(String, Bytes), Response>> = futures::stream::iter(pieces.into_iter().map(ask))
        .buffered(fe.options.max_query_parallelism.max(1))
        .collect()
        .await;
    let unreadable = |target: &str, e: String| {
        ApiError::internal(format!("the downstream's answer to {target} cannot be read: {e}")).into_response()
    };
    let mut notes = Vec::new();
    let (mut strings, mut sets) = (BTreeSet::new(), BTreeSet::new());
    for answer in answers {
        let (target, body) = match answer {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        match kind {
            LabelsKind::Strings => match merge::parse_strings(&body) {
                Ok((s, n)) => {
                    strings.extend(s);
                    notes.push(n);
                }
                Err(e) => return unreadable(&target, e),
            },
            LabelsKind::Series => match merge::parse_label_sets(&body) {
                Ok((s, n)) => {
                    sets.extend(s);
                    notes.push(n);
                }
                Err(e) => return unreadable(&target, e),
            },
        }
    }
    let notes = merge::merge_notes(notes);
    match kind {
        LabelsKind::Strings => merge::strings_response(strings, &notes),
        LabelsKind::Series => merge::label_sets_response(sets, &notes),
    }
}
