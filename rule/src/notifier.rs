//! Alerts to Alertmanager's v2 API (`POST /api/v2/alerts`; v1 where a config asks for it) as
//! Prometheus's notifier sends them: external labels added where the alert lacks them, `--alert.label-drop` labels
//! removed, `startsAt` the firing time, `endsAt` the resolution or the validity, the
//! generator URL a table link under `--alert.query-url`. Every Alertmanager gets every batch.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue};
use chrono::{SecondsFormat, TimeZone, Utc};
use serde_json::{json, Value};

use crate::discovery::Peers;

use crate::alert::{Alert, LabelMap};
use crate::metrics::RuleMetrics;

/// Most alerts in flight to Alertmanagers; more are dropped (and counted), as when
/// Prometheus's queue is full.
const MAX_QUEUED: i64 = 10_000;

pub struct Notifier {
    alertmanagers: Peers,
    external_labels: LabelMap,
    label_drop: Vec<String>,
    query_url: String,
    metrics: RuleMetrics,
}

/// Go's RFC 3339 with nanoseconds, as `time.Time` marshals to JSON.
pub fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().map_or_else(String::new, |t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

impl Notifier {
    pub fn new(
        alertmanagers: Peers,
        external_labels: LabelMap,
        label_drop: Vec<String>,
        query_url: String,
        metrics: RuleMetrics,
    ) -> Notifier {
        metrics.alertmanagers.set(alertmanagers.current().len() as i64);
        Notifier {
            alertmanagers,
            external_labels,
            label_drop,
            query_url: query_url.trim_end_matches('/').to_owned(),
            metrics,
        }
    }

    /// The JSON Alertmanager gets for `alerts` of the rule with expression `expr`.
    pub fn payload(&self, expr: &str, alerts: &[Alert]) -> Value {
        let link: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let generator = format!("{}/graph?g0.expr={link}&g0.tab=1", self.query_url);
        let items: Vec<Value> = alerts
            .iter()
            .map(|a| {
                let mut labels = a.labels.clone();
                for (k, v) in &self.external_labels {
                    labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
                for d in &self.label_drop {
                    labels.remove(d);
                }
                let ends = a.resolved_at.unwrap_or(a.valid_until);
                json!({
                    "labels": labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.fired_at.unwrap_or(a.active_at)),
                    "endsAt": rfc3339(ends),
                    "generatorURL": generator,
                })
            })
            .collect();
        Value::Array(items)
    }

    /// Finds the Alertmanagers again (see [`Peers::refresh`]).
    pub async fn refresh(&self, lookup: bool) {
        self.alertmanagers.refresh(lookup).await;
        self.metrics.alertmanagers.set(self.alertmanagers.current().len() as i64);
    }

    pub fn peers(&self) -> &Peers {
        &self.alertmanagers
    }

    /// Sends `alerts` to every Alertmanager in the background.
    pub fn send(&self, expr: &str, alerts: Vec<Alert>) {
        let n = alerts.len() as u64;
        let ams = self.alertmanagers.current();
        self.metrics.alertmanagers.set(ams.len() as i64);
        if ams.is_empty() || n == 0 {
            return;
        }
        if self.metrics.queue_length.get() + n as i64 > MAX_QUEUED {
            self.metrics.dropped.inc_by(n);
            tracing::warn!(alerts = n, "alert queue full, dropping alerts");
            return;
        }
        let body = Bytes::from(self.payload(expr, &alerts).to_string());
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.metrics.queue_length.inc_by(n as i64);
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let mut delivered = false;
            for am in ams {
                // Alertmanager's v1 and v2 APIs take the same JSON list of alerts.
                let path = am.alerts_path();
                let label = vec![("alertmanager".to_owned(), format!("{}{path}", am.url()))];
                match am.post(path, &headers, body.clone()).await {
                    Ok(a) if a.status.is_success() => {
                        delivered = true;
                        metrics.sent.get_or_create(&label).inc_by(n);
                    }
                    Ok(a) => {
                        metrics.errors.get_or_create(&label).inc_by(n);
                        tracing::error!(alertmanager = am.url(), status = %a.status, body = %String::from_utf8_lossy(&a.body), "Alertmanager refused alerts");
                    }
                    Err(e) => {
                        metrics.errors.get_or_create(&label).inc_by(n);
                        tracing::error!(alertmanager = am.url(), error = %e, "sending alerts failed");
                    }
                }
            }
            if !delivered {
                metrics.dropped.inc_by(n);
            }
            metrics.queue_length.dec_by(n as i64);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertState;

    #[test]
    fn payload_is_prometheus_json() {
        let n = Notifier::new(
            Peers::parse("--alertmanagers.url", &[], None, &Default::default()).unwrap(),
            [
                ("cluster".to_string(), "eu".to_string()),
                ("replica".to_string(), "0".to_string()),
                ("job".to_string(), "x".to_string()),
            ]
            .into_iter()
            .collect(),
            vec!["replica".to_string()],
            "http://q:9090/".to_string(),
            RuleMetrics::default(),
        );
        let a = Alert {
            labels: [("alertname".to_string(), "A".to_string()), ("job".to_string(), "api".to_string())]
                .into_iter()
                .collect(),
            annotations: [("summary".to_string(), "s".to_string())].into_iter().collect(),
            state: AlertState::Firing,
            value: 1.0,
            active_at: 1_000,
            fired_at: Some(61_500),
            resolved_at: None,
            last_sent_at: Some(61_500),
            valid_until: 301_500,
            keep_firing_since: None,
        };
        let p = n.payload("up == 0", &[a]);
        assert_eq!(
            p,
            json!([{
                "labels": {"alertname": "A", "cluster": "eu", "job": "api"},
                "annotations": {"summary": "s"},
                "startsAt": "1970-01-01T00:01:01.500Z",
                "endsAt": "1970-01-01T00:05:01.500Z",
                "generatorURL": "http://q:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
            }])
        );
    }
}
