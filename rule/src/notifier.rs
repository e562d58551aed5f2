//! Alerts to Alertmanager's v2 API (`POST /api/v2/alerts`; v1 where a config asks for it) as
//! Thanos's ruler sends them: labels as [`AlertLabels`] makes them, `startsAt` the firing
//! time, `endsAt` the resolution or the validity, the generator URL a table link under
//! `--alert.query-url`. Every Alertmanager gets every batch.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue};
use chrono::{SecondsFormat, TimeZone, Utc};
use serde_json::{json, Value};

use crate::discovery::Peers;

use strata_shipper::relabel::Relabel;

use crate::alert::{Alert, LabelMap};
use crate::metrics::RuleMetrics;

/// Most alerts in flight to Alertmanagers; more are dropped (and counted), as when
/// Prometheus's queue is full.
const MAX_QUEUED: i64 = 10_000;

/// How an alert's labels become those Alertmanager gets, in the order of Thanos's alert queue:
/// the `drop` labels (`--alert.label-drop`) removed, the external labels (but the dropped ones)
/// set, overriding the alert's own, then `relabel` (`--alert.relabel-config`) applied; an alert
/// it drops is not sent.
#[derive(Clone, Debug, Default)]
pub struct AlertLabels {
    pub external: LabelMap,
    pub drop: Vec<String>,
    pub relabel: Relabel,
}

impl AlertLabels {
    /// The labels to send for an alert with `labels`; `None` when relabelling drops it.
    pub fn apply(&self, labels: &LabelMap) -> Option<LabelMap> {
        let kept = |name: &String| !self.drop.contains(name);
        let mut out: LabelMap = labels.iter().filter(|(k, _)| kept(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in self.external.iter().filter(|(k, _)| kept(k)) {
            out.insert(k.clone(), v.clone());
        }
        if self.relabel.is_empty() {
            return Some(out);
        }
        self.relabel.process(&out)
    }
}

pub struct Notifier {
    alertmanagers: Peers,
    labels: AlertLabels,
    query_url: String,
    metrics: RuleMetrics,
}

/// Go's RFC 3339 with nanoseconds, as `time.Time` marshals to JSON.
pub fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().map_or_else(String::new, |t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

impl Notifier {
    pub fn new(alertmanagers: Peers, labels: AlertLabels, query_url: String, metrics: RuleMetrics) -> Notifier {
        metrics.alertmanagers.set(alertmanagers.current().len() as i64);
        Notifier { alertmanagers, labels, query_url: query_url.trim_end_matches('/').to_owned(), metrics }
    }

    /// The JSON Alertmanager gets for `alerts` of the rule with expression `expr`: one item
    /// per alert relabelling keeps.
    pub fn payload(&self, expr: &str, alerts: &[Alert]) -> Vec<Value> {
        let link: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let generator = format!("{}/graph?g0.expr={link}&g0.tab=1", self.query_url);
        alerts
            .iter()
            .filter_map(|a| {
                let labels = self.labels.apply(&a.labels)?;
                let ends = a.resolved_at.unwrap_or(a.valid_until);
                Some(json!({
                    "labels": labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.fired_at.unwrap_or(a.active_at)),
                    "endsAt": rfc3339(ends),
                    "generatorURL": generator,
                }))
            })
            .collect()
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
        let ams = self.alertmanagers.current();
        self.metrics.alertmanagers.set(ams.len() as i64);
        if ams.is_empty() {
            return;
        }
        let items = self.payload(expr, &alerts);
        let n = items.len() as u64;
        if n == 0 {
            return;
        }
        if self.metrics.queue_length.get() + n as i64 > MAX_QUEUED {
            self.metrics.dropped.inc_by(n);
            tracing::warn!(alerts = n, "alert queue full, dropping alerts");
            return;
        }
        let body = Bytes::from(Value::Array(items).to_string());
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
        let labels = AlertLabels {
            external: [
                ("cluster".to_string(), "eu".to_string()),
                ("replica".to_string(), "0".to_string()),
                ("job".to_string(), "x".to_string()),
            ]
            .into_iter()
            .collect(),
            drop: vec!["replica".to_string()],
            relabel: Relabel::default(),
        };
        let n = Notifier::new(
            Peers::parse("--alertmanagers.url", &[], None, &Default::default()).unwrap(),
            labels,
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
            Value::Array(p),
            json!([{
                // The external job label overrides the alert's, as in Thanos's alert queue.
                "labels": {"alertname": "A", "cluster": "eu", "job": "x"},
                "annotations": {"summary": "s"},
                "startsAt": "1970-01-01T00:01:01.500Z",
                "endsAt": "1970-01-01T00:05:01.500Z",
                "generatorURL": "http://q:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
            }])
        );
    }

    #[test]
    fn alert_relabelling_rewrites_and_drops_after_the_external_labels() {
        let relabel = Relabel::parse(
            "- source_labels: [severity]\n  regex: debug\n  action: drop\n\
             - source_labels: [cluster]\n  target_label: team\n  replacement: team-$1\n",
        )
        .unwrap();
        let labels = AlertLabels {
            external: [("cluster".to_string(), "eu".to_string())].into_iter().collect(),
            drop: Vec::new(),
            relabel,
        };
        let alert = |severity: &str| -> LabelMap {
            [("alertname".to_string(), "A".to_string()), ("severity".to_string(), severity.to_string())]
                .into_iter()
                .collect()
        };
        assert_eq!(labels.apply(&alert("debug")), None);
        let sent = labels.apply(&alert("page")).unwrap();
        assert_eq!(sent.get("team").map(String::as_str), Some("team-eu"), "{sent:?}");
        assert_eq!(sent.get("cluster").map(String::as_str), Some("eu"));
    }
}
