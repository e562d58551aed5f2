//! `/api/v1/status/buildinfo`, `/flags`, `/runtimeinfo` and `/config`, shaped like
//! Prometheus's.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};

use super::json::{self, JsonWriter};
use super::ApiState;

/// Prometheus's field names; the Go-specific ones stay empty. Grafana reads this to tell
/// Prometheus from Mimir: without a `features` object it treats the server as Prometheus.
pub async fn buildinfo(State(st): State<Arc<ApiState>>) -> Response {
    let mut w = JsonWriter::success();
    w.raw(r#"{"version":"#);
    w.string(env!("CARGO_PKG_VERSION"));
    w.raw(r#","revision":"#);
    w.string(&st.build_revision);
    w.raw(r#","branch":"#);
    w.string(&st.build_branch);
    w.raw(r#","buildUser":"","buildDate":"","goVersion":""}"#);
    json::success(w, &[], &[])
}

/// The running configuration as YAML. Strata reads no configuration file: its configuration
/// is its command line, so this is the flags of `/api/v1/status/flags`, each value quoted.
pub async fn config(State(st): State<Arc<ApiState>>) -> Response {
    let mut w = JsonWriter::success();
    w.raw(r#"{"yaml":"#);
    w.string(&config_yaml(&st.flags));
    w.raw("}");
    json::success(w, &[], &[])
}

/// `flags:` and one `name: "value"` line per flag. A JSON string is a YAML double-quoted
/// scalar, so any value comes out as valid YAML; flag names need no quoting.
fn config_yaml(flags: &std::collections::BTreeMap<String, String>) -> String {
    if flags.is_empty() {
        return "flags: {}\n".into();
    }
    let mut yaml = String::from("flags:\n");
    for (name, value) in flags {
        // Serializing a string cannot fail.
        let quoted = serde_json::to_string(value).unwrap_or_default();
        yaml.push_str(&format!("  {name}: {quoted}\n"));
    }
    yaml
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_yaml_quotes_every_value() {
        let flags = [("data-dir", "./data"), ("label", "a=\"b\"\n"), ("objstore.config", "")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(
            config_yaml(&flags),
            "flags:\n  data-dir: \"./data\"\n  label: \"a=\\\"b\\\"\\n\"\n  objstore.config: \"\"\n"
        );
        assert_eq!(config_yaml(&Default::default()), "flags: {}\n");
    }
}
