//! The ruler's HTTP API: `/api/v1/rules` and `/api/v1/alerts` in Prometheus's shapes (with
//! Thanos's `partialResponseStrategy` per group) and `POST /-/reload`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::alert::{Alert, AlertingRule};
use crate::notifier::rfc3339;
use crate::ruler::{RuleState, Ruler};

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, as the API writes alert values.
pub fn format_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs())
}

fn alert_json(a: &Alert) -> Value {
    let mut v = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339(a.active_at),
        "value": format_e(a.value),
    });
    if let (Some(since), Some(obj)) = (a.keep_firing_since, v.as_object_mut()) {
        obj.insert("keepFiringSince".to_owned(), json!(rfc3339(since)));
    }
    v
}

fn listed(rule: &AlertingRule) -> impl Iterator<Item = &Alert> {
    rule.active.values().filter(|a| a.state != crate::alert::AlertState::Inactive)
}

fn rule_json(r: &RuleState) -> Value {
    let last = r.last_eval.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), rfc3339);
    let mut v = match &r.alerting {
        Some(a) => json!({
            "state": a.state().as_str(),
            "name": a.name,
            "query": r.spec.expr,
            "duration": a.hold as f64 / 1000.0,
            "keepFiringFor": a.keep_firing_for as f64 / 1000.0,
            "labels": a.labels,
            "annotations": a.annotations,
            "alerts": listed(a).map(alert_json).collect::<Vec<_>>(),
            "health": r.health.as_str(),
            "evaluationTime": r.eval_seconds,
            "lastEvaluation": last,
            "type": "alerting",
        }),
        None => json!({
            "name": r.spec.name(),
            "query": r.spec.expr,
            "labels": r.spec.labels,
            "health": r.health.as_str(),
            "evaluationTime": r.eval_seconds,
            "lastEvaluation": last,
            "type": "recording",
        }),
    };
    if !r.last_error.is_empty() {
        if let Some(obj) = v.as_object_mut() {
            obj.insert("lastError".to_owned(), json!(r.last_error));
        }
    }
    v
}

#[derive(Deserialize)]
struct RulesParams {
    #[serde(rename = "type")]
    kind: Option<String>,
}

async fn rules(State(ruler): State<Arc<Ruler>>, Query(p): Query<RulesParams>) -> Response {
    let kind = p.kind.unwrap_or_default().to_ascii_lowercase();
    if !matches!(kind.as_str(), "" | "alert" | "record") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "error", "errorType": "bad_data", "error": format!("unsupported rule type {kind:?}: use alert or record")})),
        )
            .into_response();
    }
    let groups: Vec<Value> = ruler
        .groups()
        .iter()
        .map(|g| {
            let rules: Vec<Value> = g
                .rules
                .iter()
                .filter_map(|r| {
                    let r = r.lock();
                    let alerting = r.alerting.is_some();
                    let keep = kind.is_empty() || (kind == "alert") == alerting;
                    keep.then(|| rule_json(&r))
                })
                .collect();
            let (last, took) = (*g.last_eval.lock()).unwrap_or((i64::MIN, 0.0));
            json!({
                "name": g.spec.name,
                "file": g.file,
                "rules": rules,
                "interval": g.interval as f64 / 1000.0,
                "limit": g.spec.limit,
                "evaluationTime": took,
                "lastEvaluation": if last == i64::MIN { "0001-01-01T00:00:00Z".to_owned() } else { rfc3339(last) },
                "partialResponseStrategy": g.spec.partial_response.as_str(),
            })
        })
        .collect();
    Json(json!({"status": "success", "data": {"groups": groups}})).into_response()
}

async fn alerts(State(ruler): State<Arc<Ruler>>) -> Response {
    let mut out = Vec::new();
    for g in ruler.groups() {
        for r in &g.rules {
            if let Some(a) = &r.lock().alerting {
                out.extend(listed(a).map(alert_json));
            }
        }
    }
    Json(json!({"status": "success", "data": {"alerts": out}})).into_response()
}

async fn reload(State(ruler): State<Arc<Ruler>>) -> Response {
    match ruler.reload() {
        Ok(()) => (StatusCode::OK, "").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reloading rules failed; the rules in use stay");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("failed to reload config: {e}\n")).into_response()
        }
    }
}

/// The API over `ruler`.
pub fn router(ruler: Arc<Ruler>) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/-/reload", post(reload))
        .with_state(ruler)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RuleMetrics;
    use crate::notifier::Notifier;
    use crate::ruler::{Queriers, RulerOptions};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(router: &Router, path: &str) -> (StatusCode, Value) {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn rules_and_alerts_in_prometheus_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.yml");
        // An hour's interval: nothing is evaluated while the test runs.
        std::fs::write(
            &file,
            "groups:\n- name: g\n  interval: 1h\n  partial_response_strategy: warn\n  rules:\n  - record: r\n    expr: up\n  - alert: A\n    expr: up == 0\n    for: 5m\n",
        )
        .unwrap();
        let db = Arc::new(strata_tsdb::db::Db::open(&dir.path().join("db"), Default::default()).unwrap());
        let metrics = RuleMetrics::default();
        let none = crate::discovery::Peers::parse("--alertmanagers.url", &[], None, &Default::default()).unwrap();
        let notifier = Arc::new(Notifier::new(none, Default::default(), String::new(), metrics.clone()));
        let opts = RulerOptions {
            rule_files: vec![file.display().to_string()],
            eval_interval: 60_000,
            external_labels: Default::default(),
            alert_label_drop: Vec::new(),
            alert_relabel: Default::default(),
            alert_query_url: String::new(),
            resend_delay: 60_000,
            for_grace_period: 600_000,
            for_outage_tolerance: 3_600_000,
        };
        let ruler = Arc::new(Ruler::new(
            opts,
            Queriers::Remote(Box::new(
                crate::discovery::Peers::parse("--query", &[], None, &Default::default()).unwrap(),
            )),
            notifier,
            db,
            metrics,
        ));
        ruler.reload().unwrap();
        let router = router(Arc::clone(&ruler));
        let (status, v) = get(&router, "/api/v1/rules").await;
        assert_eq!(status, StatusCode::OK);
        let g = &v["data"]["groups"][0];
        assert_eq!(g["name"], "g");
        assert_eq!(g["interval"], 3600.0);
        assert_eq!(g["partialResponseStrategy"], "WARN");
        assert_eq!(g["lastEvaluation"], "0001-01-01T00:00:00Z");
        assert_eq!(g["rules"][0]["type"], "recording");
        assert_eq!(g["rules"][0]["health"], "unknown");
        assert!(g["rules"][0].get("lastError").is_none());
        assert_eq!(g["rules"][1]["type"], "alerting");
        assert_eq!(g["rules"][1]["state"], "inactive");
        assert_eq!(g["rules"][1]["duration"], 300.0);
        let (_, v) = get(&router, "/api/v1/rules?type=alert").await;
        assert_eq!(v["data"]["groups"][0]["rules"].as_array().unwrap().len(), 1);
        for bad in ["/api/v1/rules?type=bogus", "/api/v1/rules?type=%ff%fe"] {
            assert_eq!(get(&router, bad).await.0, StatusCode::BAD_REQUEST, "{bad}");
        }
        let (status, v) = get(&router, "/api/v1/alerts").await;
        assert_eq!((status, v["data"]["alerts"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
        // A broken file keeps the rules in use.
        std::fs::write(&file, "groups:\n- name: g\n  rules:\n  - record: r\n").unwrap();
        assert!(ruler.reload().is_err());
        assert_eq!(ruler.groups().len(), 1);
        ruler.stop();
    }

    #[test]
    fn values_as_go_formats_them() {
        assert_eq!(format_e(1.0), "1e+00");
        assert_eq!(format_e(1234.5), "1.2345e+03");
        assert_eq!(format_e(0.001), "1e-03");
        assert_eq!(format_e(-2.5e100), "-2.5e+100");
        assert_eq!(format_e(f64::NAN), "NaN");
    }
}
