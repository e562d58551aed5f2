//! `/api/v1/status/buildinfo`, `/flags` and `/runtimeinfo`, shaped like Prometheus's.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};

use super::json::{self, JsonWriter};
use super::ApiState;

/// Prometheus's field names; the Go-specific ones stay empty. Grafana reads this to tell
/// Prometheus from Mimir: without a `features` object it treats the server as Prometheus.
pub async fn buildinfo() -> Response {
    let mut w = JsonWriter::success();
    w.raw(r#"{"version":"#);
    w.string(env!("CARGO_PKG_VERSION"));
    w.raw(r#","revision":"","branch":"","buildUser":"","buildDate":"","goVersion":""}"#);
    json::success(w, &[], &[])
}

/// Every flag's value as a string, by long name.
pub async fn flags(State(st): State<Arc<ApiState>>) -> Response {
    let mut w = JsonWriter::success();
    w.raw("{");
    for (i, (name, value)) in st.flags.iter().enumerate() {
        if i > 0 {
            w.raw(",");
        }
        w.string(name);
        w.raw(":");
        w.string(value);
    }
    w.raw("}");
    json::success(w, &[], &[])
}

/// Prometheus's runtime information; the Go runtime's fields get their nearest equivalents
/// (tokio's alive tasks and worker threads) or stay empty.
pub async fn runtimeinfo(State(st): State<Arc<ApiState>>) -> Response {
    let started = DateTime::<Utc>::from(st.start_time).to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    let rt = tokio::runtime::Handle::current().metrics();
    let mut w = JsonWriter::success();
    w.raw(r#"{"startTime":"#);
    w.string(&started);
    w.raw(r#","CWD":"#);
    w.string(&cwd);
    w.raw(r#","reloadConfigSuccess":true,"lastConfigTime":"#);
    w.string(&started);
    w.raw(&format!(
        r#","corruptionCount":0,"goroutineCount":{},"GOMAXPROCS":{},"GOGC":"","GODEBUG":"","storageRetention":"#,
        rt.num_alive_tasks(),
        rt.num_workers()
    ));
    w.string(&st.storage_retention);
    w.raw("}");
    json::success(w, &[], &[])
}
