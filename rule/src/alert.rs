//! Prometheus's alerting rule state machine (rules/alerting.go): inactive → pending → firing
//! after `for`, `keep_firing_for`, resolved alerts kept 15 minutes, the `ALERTS` and
//! `ALERTS_FOR_STATE` series, `needsSending` for Alertmanager.

use std::collections::BTreeMap;

use strata_query::value::Sample;

use crate::template::{expand_alert_text, Data, QueryFn};

/// A label set by name, in Prometheus's label order (byte order).
pub type LabelMap = BTreeMap<String, String>;

/// How long a resolved alert is still sent (and listed), so that Alertmanager hears of the
/// resolution even across a few failed sends.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule; times in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub state: AlertState,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub valid_until: i64,
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    /// Prometheus's `needsSending`: firing or resolved alerts, again after `resend_delay` or
    /// when resolved since the last send.
    pub fn needs_sending(&self, ts: i64, resend_delay: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        if self.resolved_at.is_some_and(|r| self.last_sent_at.is_none_or(|s| r > s)) {
            return true;
        }
        self.last_sent_at.is_none_or(|s| s + resend_delay < ts)
    }
}

/// The definition and state of one alerting rule.
#[derive(Clone, Debug)]
pub struct AlertingRule {
    pub name: String,
    pub expr: String,
    pub hold: i64,
    pub keep_firing_for: i64,
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub active: BTreeMap<LabelMap, Alert>,
    /// Whether state was restored (or there was nothing to restore): until then no series
    /// are written, as in Prometheus.
    pub restored: bool,
}

/// One sample a rule writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub labels: LabelMap,
    pub t: i64,
    pub v: f64,
}

/// What alert templates need besides the alert.
pub struct TemplateEnv<'a> {
    pub external_labels: &'a LabelMap,
    pub external_url: &'a str,
    pub query: QueryFn<'a>,
}

pub fn to_map(labels: &strata_tsdb::labels::Labels) -> LabelMap {
    labels.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

impl AlertingRule {
    pub fn state(&self) -> AlertState {
        self.active.values().map(|a| a.state).max().unwrap_or(AlertState::Inactive)
    }

    /// Evaluates the query's result at `ts` (the group's evaluation time); `query_offset` is
    /// what the query time lags behind. Gives the `ALERTS` and `ALERTS_FOR_STATE` samples.
    pub fn eval(
        &mut self,
        ts: i64,
        query_offset: i64,
        result: Vec<Sample>,
        env: &TemplateEnv<'_>,
        limit: i64,
    ) -> Result<Vec<Output>, String> {
        let mut current: BTreeMap<LabelMap, Alert> = BTreeMap::new();
        for s in result {
            let sample_labels = to_map(&s.labels);
            let data = Data {
                labels: &sample_labels,
                external_labels: env.external_labels,
                external_url: env.external_url,
                value: s.v,
                now: ts as f64 / 1000.0,
                query: env.query,
            };
            let mut labels = sample_labels.clone();
            labels.remove("__name__");
            for (k, v) in &self.labels {
                labels.insert(k.clone(), expand_alert_text(&self.name, v, &data));
            }
            labels.insert("alertname".to_owned(), self.name.clone());
            let annotations: LabelMap =
                self.annotations.iter().map(|(k, v)| (k.clone(), expand_alert_text(&self.name, v, &data))).collect();
            if current.contains_key(&labels) {
                return Err("vector contains metrics with the same labelset after applying alert labels".to_owned());
            }
            let alert = Alert {
                labels: labels.clone(),
                annotations,
                state: AlertState::Pending,
                value: s.v,
                active_at: ts,
                fired_at: None,
                resolved_at: None,
                last_sent_at: None,
                valid_until: 0,
                keep_firing_since: None,
            };
            current.insert(labels, alert);
        }
        for (labels, a) in &current {
            match self.active.get_mut(labels) {
                Some(existing) if existing.state != AlertState::Inactive => {
                    existing.value = a.value;
                    existing.annotations = a.annotations.clone();
                }
                _ => {
                    self.active.insert(labels.clone(), a.clone());
                }
            }
        }
        let mut out = Vec::new();
        let mut active_pending = 0i64;
        let mut drop = Vec::new();
        let at = ts - query_offset;
        for (labels, a) in self.active.iter_mut() {
            if !current.contains_key(labels) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts - since < self.keep_firing_for;
                }
                if a.state == AlertState::Pending || a.resolved_at.is_some_and(|r| ts - r > RESOLVED_RETENTION_MS) {
                    drop.push(labels.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            active_pending += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= self.hold {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            if self.restored {
                let mut l = a.labels.clone();
                l.insert("__name__".to_owned(), "ALERTS".to_owned());
                l.insert("alertstate".to_owned(), a.state.as_str().to_owned());
                out.push(Output { labels: l, t: at, v: 1.0 });
                let mut l = a.labels.clone();
                l.insert("__name__".to_owned(), "ALERTS_FOR_STATE".to_owned());
                out.push(Output { labels: l, t: at, v: (a.active_at.div_euclid(1000)) as f64 });
            }
        }
        for l in drop {
            self.active.remove(&l);
        }
        if limit > 0 && active_pending > limit {
            self.active.clear();
            return Err(format!("exceeded limit of {limit} with {active_pending} alerts"));
        }
        Ok(out)
    }

    /// The alerts to send at `ts`, marked sent: firing ones every `resend_delay`, resolved
    /// ones until they are sent once after resolving. `valid_until` allows two missed
    /// evaluations or sends.
    pub fn to_send(&mut self, ts: i64, resend_delay: i64, interval: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if a.needs_sending(ts, resend_delay) {
                a.last_sent_at = Some(ts);
                a.valid_until = ts + 4 * resend_delay.max(interval);
                out.push(a.clone());
            }
        }
        out
    }

    /// Prometheus's `RestoreForState` for one alert: `last` is the newest `ALERTS_FOR_STATE`
    /// sample (time in ms, value the active time in seconds) found within the outage
    /// tolerance, `now` the restore time.
    pub fn restored_active_at(&self, last: (i64, f64), now: i64, grace: i64) -> i64 {
        let down_at = last.0.div_euclid(1000) * 1000;
        let restored = (last.1 as i64).saturating_mul(1000);
        let remaining = self.hold - (down_at - restored);
        if remaining <= 0 {
            restored
        } else if remaining < grace {
            now - self.hold + grace
        } else {
            restored + (now - down_at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tsdb::labels::Labels;

    fn rule(hold: i64, keep: i64) -> AlertingRule {
        AlertingRule {
            name: "HighLoad".into(),
            expr: "load > 1".into(),
            hold,
            keep_firing_for: keep,
            labels: [("severity".to_string(), "page".to_string())].into_iter().collect(),
            annotations: [("summary".to_string(), "{{ $labels.instance }} at {{ $value }}".to_string())]
                .into_iter()
                .collect(),
            active: BTreeMap::new(),
            restored: true,
        }
    }

    fn sample(v: f64) -> Vec<Sample> {
        vec![Sample { labels: Labels::from_pairs(&[("__name__", "load"), ("instance", "a")]), t: 0, v }]
    }

    fn eval(r: &mut AlertingRule, ts: i64, res: Vec<Sample>) -> Vec<Output> {
        let ext = LabelMap::new();
        let q = |_: &str| Ok(Vec::new());
        let env = TemplateEnv { external_labels: &ext, external_url: "", query: &q };
        r.eval(ts, 0, res, &env, 0).unwrap()
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let mut r = rule(10_000, 0);
        let out = eval(&mut r, 1_000, sample(2.0));
        assert_eq!(r.state(), AlertState::Pending);
        assert_eq!(out[0].labels.get("alertstate").map(String::as_str), Some("pending"));
        assert_eq!(out[1].labels.get("__name__").map(String::as_str), Some("ALERTS_FOR_STATE"));
        assert_eq!(out[1].v, 1.0);
        let a = r.active.values().next().unwrap();
        assert_eq!(a.annotations["summary"], "a at 2");
        assert_eq!(a.labels.get("alertname").map(String::as_str), Some("HighLoad"));
        assert!(!a.labels.contains_key("__name__"));
        assert!(r.to_send(1_000, 60_000, 1_000).is_empty(), "pending alerts are not sent");
        eval(&mut r, 11_000, sample(3.0));
        assert_eq!(r.state(), AlertState::Firing);
        assert_eq!(r.to_send(11_000, 60_000, 1_000).len(), 1);
        assert!(r.to_send(12_000, 60_000, 1_000).is_empty(), "resent only after the resend delay");
        let out = eval(&mut r, 13_000, Vec::new());
        assert!(out.is_empty());
        assert_eq!(r.state(), AlertState::Inactive);
        let sent = r.to_send(13_000, 60_000, 1_000);
        assert_eq!(sent[0].resolved_at, Some(13_000));
        // Kept for 15 minutes, then dropped.
        eval(&mut r, 13_000 + RESOLVED_RETENTION_MS, Vec::new());
        assert_eq!(r.active.len(), 1);
        eval(&mut r, 14_000 + RESOLVED_RETENTION_MS, Vec::new());
        assert!(r.active.is_empty());
    }

    #[test]
    fn pending_alert_that_clears_is_dropped_and_keep_firing_for_holds() {
        let mut r = rule(10_000, 5_000);
        eval(&mut r, 0, sample(2.0));
        eval(&mut r, 1_000, Vec::new());
        assert!(r.active.is_empty());
        eval(&mut r, 0, sample(2.0));
        eval(&mut r, 10_000, sample(2.0));
        assert_eq!(r.state(), AlertState::Firing);
        eval(&mut r, 11_000, Vec::new());
        assert_eq!(r.state(), AlertState::Firing, "kept firing");
        eval(&mut r, 16_000, Vec::new());
        assert_eq!(r.state(), AlertState::Inactive);
    }

    #[test]
    fn duplicate_label_sets_and_limits_fail() {
        let mut r = rule(0, 0);
        let two = vec![
            Sample { labels: Labels::from_pairs(&[("__name__", "a"), ("instance", "a")]), t: 0, v: 1.0 },
            Sample { labels: Labels::from_pairs(&[("__name__", "b"), ("instance", "a")]), t: 0, v: 1.0 },
        ];
        let ext = LabelMap::new();
        let q = |_: &str| Ok(Vec::new());
        let env = TemplateEnv { external_labels: &ext, external_url: "", query: &q };
        assert!(r.eval(0, 0, two, &env, 0).unwrap_err().contains("same labelset"));
        let two = vec![
            Sample { labels: Labels::from_pairs(&[("instance", "a")]), t: 0, v: 1.0 },
            Sample { labels: Labels::from_pairs(&[("instance", "b")]), t: 0, v: 1.0 },
        ];
        assert_eq!(r.eval(0, 0, two, &env, 1).unwrap_err(), "exceeded limit of 1 with 2 alerts");
    }

    #[test]
    fn restore_keeps_fired_alerts_and_extends_pending_ones() {
        let r = rule(600_000, 0);
        // Fired long before going down: the original active time.
        assert_eq!(r.restored_active_at((2_000_000, 1_000.0), 2_100_000, 600_000), 1_000_000);
        // Pending for 100s of 600s, down 50s, grace 600s: remaining 500s < grace.
        assert_eq!(r.restored_active_at((1_100_000, 1_000.0), 1_150_000, 600_000), 1_150_000);
        // Grace 60s: the downtime is added.
        assert_eq!(r.restored_active_at((1_100_000, 1_000.0), 1_150_000, 60_000), 1_050_000);
    }
}
