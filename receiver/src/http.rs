//! The HTTP address: `/metrics`, `/-/healthy`, `/-/ready` and `/api/v1/status/tsdb`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use strata_tsdb::head::{HeadStatus, HeadStatusStat};

use crate::Receiver;

pub async fn healthy() -> &'static str {
    "OK\n"
}

/// A condition readiness waits for besides the WAL replay (standalone: the bucket store's first
/// sync), with what `/-/ready` says while it does not hold.
#[derive(Clone)]
pub struct ReadyCondition {
    pub holds: Arc<dyn Fn() -> bool + Send + Sync>,
    pub waiting_for: &'static str,
}

pub fn ready(rx: &Receiver, also: Option<&ReadyCondition>) -> Response {
    if !rx.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: replaying the write-ahead log\n")
            .into_response();
    }
    match also {
        Some(c) if !(c.holds)() => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("Service Unavailable: {}\n", c.waiting_for)).into_response()
        }
        _ => (StatusCode::OK, "OK\n").into_response(),
    }
}

pub async fn metrics(State(rx): State<Arc<Receiver>>) -> Response {
    metrics_response(&rx.metrics)
}

/// `/metrics` of any strata process: `metrics` in the OpenMetrics text format.
pub fn metrics_response(metrics: &crate::metrics::Metrics) -> Response {
    match metrics.render() {
        Ok(body) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "failed to encode metrics\n").into_response(),
    }
}

#[derive(Deserialize)]
pub struct StatusParams {
    limit: Option<String>,
}

/// Prometheus's error envelope.
fn api_error(status: StatusCode, error_type: &str, msg: String) -> Response {
    (status, Json(json!({"status": "error", "errorType": error_type, "error": msg}))).into_response()
}

/// `GET /api/v1/status/tsdb` for the tenant named by the tenant header (Thanos's behaviour).
pub async fn tsdb_status(
    State(rx): State<Arc<Receiver>>,
    headers: HeaderMap,
    Query(p): Query<StatusParams>,
) -> Response {
    let limit = match p.limit.as_deref().map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if n > 0 => n,
        _ => return api_error(StatusCode::BAD_REQUEST, "bad_data", "limit must be a positive number".into()),
    };
    if !rx.is_ready() {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "receiver is replaying the write-ahead log".into(),
        );
    }
    let tenant = match headers.get(&rx.config.tenant_header).map(|v| v.to_str()) {
        None => rx.config.default_tenant.clone(),
        Some(Ok(t)) => t.to_owned(),
        Some(Err(_)) => {
            return api_error(StatusCode::BAD_REQUEST, "bad_data", "tenant header is not valid UTF-8".into())
        }
    };
    let Some(db) = rx.tenants.get(&tenant) else {
        return api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("unknown tenant {tenant:?}: it has not written anything"),
        );
    };
    Json(json!({"status": "success", "data": status_json(&db.head().status(limit))})).into_response()
}

fn stats_json(v: &[HeadStatusStat]) -> serde_json::Value {
    v.iter().map(|s| json!({"name": s.name, "value": s.value})).collect()
}

/// The `data` object of Prometheus's TSDB status response.
pub fn status_json(st: &HeadStatus) -> serde_json::Value {
    json!({
        "headStats": {
            "numSeries": st.num_series,
            "numLabelPairs": st.num_label_pairs,
            "chunkCount": st.chunk_count,
            "minTime": st.min_time,
            "maxTime": st.max_time,
        },
        "seriesCountByMetricName": stats_json(&st.series_count_by_metric_name),
        "labelValueCountByLabelName": stats_json(&st.label_value_count_by_label_name),
        "memoryInBytesByLabelName": stats_json(&st.memory_in_bytes_by_label_name),
        "seriesCountByLabelValuePair": stats_json(&st.series_count_by_label_value_pair),
    })
}
