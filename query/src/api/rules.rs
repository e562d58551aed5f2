//! `/api/v1/rules`, `/api/v1/alerts` and `/api/v1/targets`: Strata evaluates no rules and
//! scrapes nothing, so these answer as Prometheus 3.x does with no rule files and no scrape
//! configs. Grafana asks for rules and alerts when it lists a Prometheus data source's alerts.

use axum::response::Response;

use super::json::{self, JsonWriter};

pub async fn rules() -> Response {
    empty(r#"{"groups":[]}"#)
}

pub async fn alerts() -> Response {
    empty(r#"{"alerts":[]}"#)
}

pub async fn targets() -> Response {
    empty(r#"{"activeTargets":[],"droppedTargets":[],"droppedTargetCounts":{}}"#)
}

fn empty(data: &str) -> Response {
    let mut w = JsonWriter::success();
    w.raw(data);
    json::success(w, &[], &[])
}
