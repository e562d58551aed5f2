//! `/api/v1/query`, `/api/v1/query_range` and `/api/v1/query_exemplars`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use promql_parser::parser::Expr;
use strata_storage::Storage;

use super::error::{ApiError, ErrorType};
use super::json::{self, JsonWriter};
use super::params::{
    duration_param, limit_param, parse_duration, required_time_param, time_param, Params, MAX_TIME, MIN_TIME,
};
use super::querier::{max_source_resolution, read_options};
use super::ApiState;
use crate::engine::{Engine, EngineOptions, QueryError, QueryOptions, QueryResult};
use crate::value::Value;

/// Prometheus refuses range queries with more points per series than this.
const MAX_POINTS_PER_SERIES: i128 = 11_000;

const TRUNCATED: &str = "results truncated due to limit";

/// Deadlines are capped here so that a huge `--query.timeout` cannot overflow `Instant`.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 86_400);

pub async fn instant(State(st): State<Arc<ApiState>>, headers: HeaderMap, p: Params) -> Response {
    respond(instant_query(&st, &headers, &p).await)
}

pub async fn range(State(st): State<Arc<ApiState>>, headers: HeaderMap, p: Params) -> Response {
    respond(range_query(&st, &headers, &p).await)
}

pub async fn exemplars(p: Params) -> Response {
    respond(exemplar_query(&p))
}

/// `/api/v1/format_query`: the query as Prometheus's `format_query` prints it. Parsing and
/// printing recurse over the expression, so they run on the blocking pool as queries do.
pub async fn format_query(p: Params) -> Response {
    let query = p.get("query").to_owned();
    respond(super::blocking(move || format(&query)).await.map(|pretty| {
        let mut w = JsonWriter::success();
        w.string(&pretty);
        json::success(w, &[], &[])
    }))
}

/// A query prettified by promql-parser's port of Prometheus's prettifier, or Prometheus's
/// error for a query that does not parse.
pub(crate) fn format(query: &str) -> Result<String, ApiError> {
    let expr = crate::parse::parse(query).map_err(|e| ApiError::invalid_param("query", e))?;
    Ok(expr.prettify())
}

fn respond(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn instant_query(st: &ApiState, headers: &HeaderMap, p: &Params) -> Result<Response, ApiError> {
    let limit = limit_param(p)?;
    let t = time_param(p, "time", now_ms())?;
    let timeout = timeout_param(st, p)?;
    // Thanos's instant queries read raw data unless told otherwise.
    let read = read_options(&st.querier, headers, p)?;
    let read = QueryOptions { max_resolution_window: max_source_resolution(&st.querier, p, 0)?, ..read };
    let engine = engine_options(st, p, read.max_resolution_window)?;
    let query = p.get("query").to_owned();
    execute(st, engine, timeout, limit, wants_stats(p), move |engine, storage| {
        engine.instant_query(storage, &query, t, &read)
    })
    .await
}

/// An instant query asked in process, as `/api/v1/query` answers `query` at `t` (ms) with
/// `dedup=true` and `partial_response` (the ruler of `strata standalone` asks this way, without
/// an HTTP hop): the samples (a scalar as one sample without labels) and warnings, or the
/// API's error message. It evaluates on the calling thread.
pub fn instant_samples(
    st: &ApiState,
    query: &str,
    t: i64,
    partial_response: bool,
) -> Result<(Vec<crate::value::Sample>, Vec<String>), String> {
    let p =
        Params::from_pairs(&[("dedup", "true"), ("partial_response", if partial_response { "true" } else { "false" })]);
    let read = read_options(&st.querier, &HeaderMap::new(), &p).map_err(|e| e.msg)?;
    let read =
        QueryOptions { max_resolution_window: max_source_resolution(&st.querier, &p, 0).map_err(|e| e.msg)?, ..read };
    let opts = engine_options(st, &p, read.max_resolution_window).map_err(|e| e.msg)?;
    let deadline = Instant::now() + st.engine.timeout.min(FOREVER);
    let storage = st.storage_until.as_ref().map_or_else(|| st.storage.clone(), |until| until(deadline));
    let result =
        Engine::new(opts).instant_query(&*storage, query, t, &read).map_err(|e| ApiError::from_query(e).msg)?;
    let samples = match result.value {
        Value::Vector(v) => v,
        Value::Scalar { t, v } => vec![crate::value::Sample { labels: strata_tsdb::labels::Labels::empty(), t, v }],
        other => return Err(format!("result type {:?} where a vector or scalar was expected", other.type_name())),
    };
    Ok((samples, result.warnings))
}

async fn range_query(st: &ApiState, headers: &HeaderMap, p: &Params) -> Result<Response, ApiError> {
    let limit = limit_param(p)?;
    let (start, end, step) = range_bounds(p)?;
    // The engine steps in whole milliseconds.
    let step_ms = step / 1_000_000;
    if step_ms == 0 {
        return Err(ApiError::invalid_param(
            "step",
            "query resolution step widths below one millisecond are not accepted",
        ));
    }
    let timeout = timeout_param(st, p)?;
    // `auto`: at least five samples per step.
    let read = read_options(&st.querier, headers, p)?;
    let read = QueryOptions { max_resolution_window: max_source_resolution(&st.querier, p, step_ms / 5)?, ..read };
    let engine = engine_options(st, p, read.max_resolution_window)?;
    let query = p.get("query").to_owned();
    execute(st, engine, timeout, limit, wants_stats(p), move |engine, storage| {
        engine.range_query(storage, &query, start, end, step_ms, &read)
    })
    .await
}

/// A range query's `start` and `end` (milliseconds) and `step` (nanoseconds), checked as
/// Prometheus checks them, with its messages; the query frontend checks them the same way.
pub(crate) fn range_bounds(p: &Params) -> Result<(i64, i64, i64), ApiError> {
    let start = required_time_param(p, "start")?;
    let end = required_time_param(p, "end")?;
    if end < start {
        return Err(ApiError::invalid_param("end", "end timestamp must not be before start time"));
    }
    let step = parse_duration(p.get("step")).map_err(|e| ApiError::invalid_param("step", e))?;
    if step <= 0 {
        return Err(ApiError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // Compared in nanoseconds, as Prometheus divides Go durations.
    if (i128::from(end) - i128::from(start)) * 1_000_000 / i128::from(step) > MAX_POINTS_PER_SERIES {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    Ok((start, end, step))
}

/// The request's `timeout`, which can shorten but not lengthen `--query.timeout`.
fn timeout_param(st: &ApiState, p: &Params) -> Result<Duration, ApiError> {
    Ok(match duration_param(p, "timeout")? {
        None => st.engine.timeout,
        Some(ns) => Duration::from_nanos(u64::try_from(ns).unwrap_or(0)).min(st.engine.timeout),
    })
}

/// Engine settings for this request: the lookback delta grown for the resolution it may read
/// (see [`lookback_for_resolution`]); Prometheus 3 lets a request set its own instead.
fn engine_options(st: &ApiState, p: &Params, max_resolution: i64) -> Result<EngineOptions, ApiError> {
    let mut opts = st.engine.clone();
    opts.lookback_delta = lookback_for_resolution(opts.lookback_delta, max_resolution);
    if let Some(ns) = duration_param(p, "lookback_delta")? {
        let ms = ns / 1_000_000;
        if ms > 0 {
            opts.lookback_delta = ms;
        }
    }
    Ok(opts)
}

/// The lookback delta (ms) of a query that may read data of up to `max_resolution` (ms), as
/// Thanos's querier picks it (`LookbackDeltaFactory` with its dynamic lookback, on by default):
/// at least a resolution's width once the query may read coarser data than that resolution's
/// finer neighbour (or than the configured delta), so that a plain selector over 1h data
/// still finds the previous window's sample.
pub(crate) fn lookback_for_resolution(lookback: i64, max_resolution: i64) -> i64 {
    const RESOLUTIONS: [i64; 3] = [0, 300_000, 3_600_000];
    let mut grown = [lookback; 3];
    let mut current = lookback;
    for (i, &r) in RESOLUTIONS.iter().enumerate() {
        if lookback < r {
            current = r;
        }
        grown[i] = current;
    }
    for i in (1..RESOLUTIONS.len()).rev() {
        if RESOLUTIONS[i - 1].max(lookback) < max_resolution {
            return grown[i];
        }
    }
    grown[0]
}

/// Prometheus adds stats for any non-empty `stats` (`stats=all` is what clients send).
fn wants_stats(p: &Params) -> bool {
    !p.get("stats").is_empty()
}

/// Runs a query on the blocking pool with a deadline, then encodes its answer there too (large
/// results take real CPU to encode): whole when it is small, else streamed into the response
/// body as it is encoded.
async fn execute<F>(
    st: &ApiState,
    opts: EngineOptions,
    timeout: Duration,
    limit: Option<usize>,
    stats: bool,
    run: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(&Engine, &dyn Storage) -> Result<QueryResult, QueryError> + Send + 'static,
{
    let queue_timeout = || ApiError::new(ErrorType::Timeout, "query timed out in query queue");
    if timeout.is_zero() {
        return Err(queue_timeout());
    }
    let started = Instant::now();
    let deadline = started + timeout.min(FOREVER);
    let storage = st.storage_until.as_ref().map_or_else(|| st.storage.clone(), |until| until(deadline));
    let (answer_tx, answer) = tokio::sync::oneshot::channel::<Result<Body, ApiError>>();
    let task = tokio::task::spawn_blocking(move || {
        let queued = started.elapsed();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = answer_tx.send(Err(queue_timeout()));
            return;
        }
        let engine = Engine::new(EngineOptions { timeout: left, ..opts });
        let eval_started = Instant::now();
        match run(&engine, &*storage) {
            // A read cut off at the deadline fails the query because time ran out.
            Err(_) if Instant::now() >= deadline => {
                let _ = answer_tx.send(Err(ApiError::from_query(QueryError::Timeout)));
            }
            Err(e) => {
                let _ = answer_tx.send(Err(ApiError::from_query(e)));
            }
            Ok(result) => {
                let timings = Timings { queued, eval: eval_started.elapsed() };
                // Once the request has timed out nobody takes the body: encoding stops there.
                let w = JsonWriter::success_answering(move |body| answer_tx.send(Ok(body)).is_ok());
                encode(w, result, limit, stats.then_some(timings));
            }
        }
    });
    // The engine stops itself at the same deadline; this answers in time even if it is late.
    match tokio::time::timeout_at(deadline.into(), answer).await {
        Err(_) => Err(ApiError::from_query(QueryError::Timeout)),
        Ok(Ok(Ok(body))) => Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err(match task.await {
            Err(e) => ApiError::internal(format!("query task failed: {e}")),
            Ok(()) => ApiError::internal("query task ended without an answer"),
        }),
    }
}

struct Timings {
    queued: Duration,
    eval: Duration,
}

fn encode(mut w: JsonWriter, mut result: QueryResult, limit: Option<usize>, timings: Option<Timings>) {
    if let Some(limit) = limit {
        let truncated = match &mut result.value {
            Value::Vector(v) if v.len() > limit => {
                v.truncate(limit);
                true
            }
            Value::Matrix(m) if m.len() > limit => {
                m.truncate(limit);
                true
            }
            _ => false,
        };
        if truncated {
            result.warnings.push(TRUNCATED.into());
        }
    }
    w.query_data_open(&result.value);
    if let Some(t) = timings {
        // Prometheus's stats object; this engine has no separate preparation or sort phase.
        let eval = t.eval.as_secs_f64();
        w.raw(r#","stats":{"timings":{"evalTotalTime":"#);
        w.go_float(eval);
        w.raw(r#","resultSortTime":0,"queryPreparationTime":0,"innerEvalTime":"#);
        w.go_float(eval);
        w.raw(r#","execQueueTime":"#);
        w.go_float(t.queued.as_secs_f64());
        w.raw(r#","execTotalTime":"#);
        w.go_float((t.queued + t.eval).as_secs_f64());
        w.raw(&format!(
            r#"}},"samples":{{"totalQueryableSamples":{},"peakSamples":{}}}}}"#,
            result.stats.total_queryable_samples, result.stats.peak_samples
        ));
    }
    w.raw("}");
    json::answer(w, &result.warnings, &result.infos);
}

/// No exemplars are stored yet: every valid request gets an empty list, or no content when
/// the query selects nothing (as Prometheus answers).
fn exemplar_query(p: &Params) -> Result<Response, ApiError> {
    let start = time_param(p, "start", MIN_TIME)?;
    let end = time_param(p, "end", MAX_TIME)?;
    if end < start {
        return Err(ApiError::bad_data("end timestamp must not be before start timestamp"));
    }
    let expr = crate::parse::parse(p.get("query")).map_err(|e| ApiError::bad_data(e.to_string()))?;
    if !has_selector(&expr) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut w = JsonWriter::success();
    w.raw("[]");
    Ok(json::success(w, &[], &[]))
}

fn has_selector(e: &Expr) -> bool {
    match e {
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => true,
        Expr::Aggregate(a) => has_selector(&a.expr) || a.param.as_deref().is_some_and(has_selector),
        Expr::Unary(u) => has_selector(&u.expr),
        Expr::Binary(b) => has_selector(&b.lhs) || has_selector(&b.rhs),
        Expr::Paren(p) => has_selector(&p.expr),
        Expr::Subquery(s) => has_selector(&s.expr),
        Expr::Call(c) => c.args.args.iter().any(|a| has_selector(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => false,
    }
}

#[cfg(test)]
mod format_tests {
    /// Queries and what Prometheus's `format_query` answers (3.9.1, the peer `interop/` builds;
    /// 2.42 answers the same but for the number literals below): multi-line layout past 100
    /// characters, normalised grouping, quoting, durations, matchers sorted in the long form,
    /// `@` with milliseconds, numbers in plain decimal.
    const AS_PROMETHEUS: &[(&str, &str)] = &[
    ("sum(rate(x[5m]))by(job)", "sum by (job) (rate(x[5m]))"),
    (r#"foo{a="b",c=~"d"}"#, r#"foo{a="b",c=~"d"}"#),
    ("a+on(b)group_left(c)d", "a + on (b) group_left (c) d"),
    (r#"histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[5m])))"#, r#"histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[5m])))"#),
    ("rate(http_requests_total[5m] offset 1h)", "rate(http_requests_total[5m] offset 1h)"),
    ("up == 1", "up == 1"),
    (r#"topk(5, sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[1m])))"#, r#"topk(5, sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[1m])))"#),
    ("-x", "-x"),
    ("1 + 2 * 3", "1 + 2 * 3"),
    ("(a + b) * c", "(a + b) * c"),
    ("avg_over_time(x[10m:1m])", "avg_over_time(x[10m:1m])"),
    ("x @ 1609746000", "x @ 1609746000.000"),
    (r#"count_values("v", x)"#, r#"count_values("v", x)"#),
    (r#"label_replace(up, "foo", "$1", "job", "(.*)")"#, r#"label_replace(up, "foo", "$1", "job", "(.*)")"#),
    (r#"sum by (job, instance) (rate(http_requests_total{job="api-server", code=~"5.."}[5m])) / sum by (job, instance) (rate(http_requests_total{job="api-server"}[5m])) > 0.05"#, "    sum by (job, instance) (rate(http_requests_total{code=~\"5..\",job=\"api-server\"}[5m]))\n  /\n    sum by (job, instance) (rate(http_requests_total{job=\"api-server\"}[5m]))\n>\n  0.05"),
    ("1e3", "1000"),
    ("0x10", "16"),
    (r#""string""#, r#""string""#),
    ("x offset -5m", "x offset -5m"),
    ("a or b unless c", "a or b unless c"),
    ("sum without (job) (x)", "sum without (job) (x)"),
    ("x > bool 1", "x > bool 1"),
    (r#"{__name__="x"}"#, r#"{__name__="x"}"#),
    ("rate(x[90s])", "rate(x[1m30s])"),
    ("x{a='b'}", r#"x{a="b"}"#),
    ("x{a=\"b\\\"c\"}", "x{a=\"b\\\"c\"}"),
    ("sum(x) by (a) / ignoring(b) sum(y)", "sum by (a) (x) / ignoring (b) sum(y)"),
    ("max_over_time(rate(x[5m])[1h:])", "max_over_time(rate(x[5m])[1h:])"),
    ("1.5", "1.5"),
    (r#"rate(http_requests_total{job="api-server", handler="/api/v1/query", instance="host-1:9090", code="200"}[5m])"#, "rate(\n  http_requests_total{code=\"200\",handler=\"/api/v1/query\",instance=\"host-1:9090\",job=\"api-server\"}[5m]\n)"),
    ("-Inf", "-Inf"),
    ("NaN", "NaN"),
    ("x @ start()", "x @ start()"),
    ("rate(x[5m] @ end())", "rate(x[5m] @ end())"),
    ("\"a\\nb\"", "\"a\\nb\""),
    ("sum by () (x)", "sum(x)"),
    ("count without () (x)", "count without () (x)"),
    ("-(a + b)", "-(a + b)"),
    ("a ^ b ^ c", "a ^ b ^ c"),
    ("a > bool on () b", "a > bool on () b"),
    ("x offset 1h @ 100", "x @ 100.000 offset 1h"),
    (r#"{__name__=~"a|b",job="x"}"#, r#"{__name__=~"a|b",job="x"}"#),
    (r#"rate({__name__="x"}[5m])"#, r#"rate({__name__="x"}[5m])"#),
    ("topk by (a) (3, x)", "topk by (a) (3, x)"),
    ("quantile_over_time(0.9, x[5m])", "quantile_over_time(0.9, x[5m])"),
    ("x[5m:1m] offset 1m", "x[5m:1m] offset 1m"),
    ("time()", "time()"),
    ("vector(1)", "vector(1)"),
    (r#"absent(nonexistent{job="myjob"})"#, r#"absent(nonexistent{job="myjob"})"#),
    (r#"sum(rate(container_cpu_usage_seconds_total{namespace="production", container!="", pod=~"api-.*"}[5m])) by (pod, namespace) / sum(kube_pod_container_resource_limits{namespace="production", resource="cpu"}) by (pod, namespace)"#, "  sum by (pod, namespace) (\n    rate(container_cpu_usage_seconds_total{container!=\"\",namespace=\"production\",pod=~\"api-.*\"}[5m])\n  )\n/\n  sum by (pod, namespace) (kube_pod_container_resource_limits{namespace=\"production\",resource=\"cpu\"})"),
    ("(a)", "(a)"),
    ("((a + b))", "((a + b))"),
    ("1 + -2", "1 + -2"),
    ("x unless on (a) y", "x unless on (a) y"),
    ("max_over_time(deriv(rate(distance_covered_total[5s])[30s:5s])[10m:])", "max_over_time(deriv(rate(distance_covered_total[5s])[30s:5s])[10m:])"),
    (r#"label_join(up{job="api-server",src1="a",src2="b",src3="c"}, "foo", ",", "src1", "src2", "src3")"#, r#"label_join(up{job="api-server",src1="a",src2="b",src3="c"}, "foo", ",", "src1", "src2", "src3")"#),
    ("round(x, 5)", "round(x, 5)"),
    ("1e-7", "0.0000001"),
    ("1e21", "1000000000000000000000"),
    ];

    /// Where promql-parser's printer differs from Prometheus 3.9.1's: positive infinity, which
    /// Prometheus prints with its sign. Query, ours, Prometheus's.
    const DIFFERENT: &[(&str, &str, &str)] = &[("Inf", "Inf", "+Inf")];

    #[test]
    fn format_query_prints_as_prometheus_but_number_literals() {
        for &(query, want) in AS_PROMETHEUS {
            assert_eq!(super::format(query).as_deref(), Ok(want), "{query}");
        }
        for &(query, ours, prometheus) in DIFFERENT {
            let got = super::format(query);
            assert_eq!(got.as_deref(), Ok(ours), "{query}");
            assert_ne!(ours, prometheus);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lookback_for_resolution;

    /// Thanos's `LookbackDeltaFactory` with dynamic lookback: the 5m default grows to 1h only
    /// when 1h data may be read (the 3m cases are those of Thanos's `TestLookbackDeltaFactory`).
    #[test]
    fn lookback_grows_with_the_resolution() {
        const M5: i64 = 300_000;
        const H1: i64 = 3_600_000;
        for (lookback, max_resolution, want) in [
            (M5, 0, M5),
            (M5, M5, M5),
            (M5, M5 + 1, H1),
            (M5, H1, H1),
            (M5, i64::MAX, H1),
            (180_000, 120_000, 180_000),
            (180_000, 180_000, 180_000),
            (180_000, 240_000, M5),
            (180_000, M5, M5),
            (180_000, 360_000, H1),
            (180_000, H1, H1),
            (180_000, 2 * H1, H1),
            (2 * H1, H1, 2 * H1),
            (2 * H1, 3 * H1, 2 * H1),
        ] {
            assert_eq!(lookback_for_resolution(lookback, max_resolution), want, "{lookback} {max_resolution}");
        }
    }
}
