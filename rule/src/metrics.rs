//! The ruler's metrics under Prometheus's names (`prometheus_rule_*`,
//! `prometheus_notifications_*`), labelled by `rule_group` (`file;group`) and `alertmanager`.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ruler::Group;

type Labels = Vec<(String, String)>;

#[derive(Clone, Default)]
pub struct RuleMetrics {
    evaluations: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    last_duration: Family<Labels, Gauge<f64, AtomicU64>>,
    last_evaluation: Family<Labels, Gauge<f64, AtomicU64>>,
    rules: Family<Labels, Gauge>,
    interval: Family<Labels, Gauge<f64, AtomicU64>>,
    iterations: Family<Labels, Counter>,
    missed: Family<Labels, Counter>,
    reload_success: Gauge,
    pub sent: Family<Labels, Counter>,
    pub errors: Family<Labels, Counter>,
    pub dropped: Counter,
    pub queue_length: Gauge,
    pub alertmanagers: Gauge,
}

fn group(g: &Group) -> Labels {
    vec![("rule_group".to_owned(), g.key())]
}

impl RuleMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register("prometheus_rule_evaluations", "The total number of rule evaluations.", self.evaluations.clone());
        r.register(
            "prometheus_rule_evaluation_failures",
            "The total number of rule evaluation failures.",
            self.failures.clone(),
        );
        r.register(
            "prometheus_rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation.",
            self.last_duration.clone(),
        );
        r.register(
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds.",
            self.last_evaluation.clone(),
        );
        r.register("prometheus_rule_group_rules", "The number of rules.", self.rules.clone());
        r.register("prometheus_rule_group_interval_seconds", "The interval of a rule group.", self.interval.clone());
        r.register(
            "prometheus_rule_group_iterations",
            "The total number of scheduled rule group evaluations, whether executed or missed.",
            self.iterations.clone(),
        );
        r.register(
            "prometheus_rule_group_iterations_missed",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            self.missed.clone(),
        );
        r.register(
            "prometheus_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            self.reload_success.clone(),
        );
        r.register("prometheus_notifications_sent", "Total number of alerts sent.", self.sent.clone());
        r.register(
            "prometheus_notifications_errors",
            "Total number of sent alerts affected by errors.",
            self.errors.clone(),
        );
        r.register(
            "prometheus_notifications_dropped",
            "Total number of alerts dropped due to errors when sending to Alertmanager.",
            self.dropped.clone(),
        );
        r.register(
            "prometheus_notifications_queue_length",
            "The number of alert notifications in the queue.",
            self.queue_length.clone(),
        );
        r.register(
            "prometheus_notifications_alertmanagers_discovered",
            "The number of alertmanagers discovered and active.",
            self.alertmanagers.clone(),
        );
    }

    pub fn set_groups(&self, groups: &[std::sync::Arc<Group>]) {
        self.rules.clear();
        self.interval.clear();
        for g in groups {
            self.rules.get_or_create(&group(g)).set(g.rules.len() as i64);
            self.interval.get_or_create(&group(g)).set(g.interval as f64 / 1000.0);
        }
    }

    pub fn evaluated(&self, g: &Group, failed: bool) {
        self.evaluations.get_or_create(&group(g)).inc();
        if failed {
            self.failures.get_or_create(&group(g)).inc();
        }
    }

    pub fn group_done(&self, g: &Group, seconds: f64, ts: i64) {
        self.iterations.get_or_create(&group(g)).inc();
        self.last_duration.get_or_create(&group(g)).set(seconds);
        self.last_evaluation.get_or_create(&group(g)).set(ts as f64 / 1000.0);
    }

    pub fn missed(&self, g: &Group, n: u64) {
        self.iterations.get_or_create(&group(g)).inc_by(n);
        self.missed.get_or_create(&group(g)).inc_by(n);
    }

    pub fn config_reload(&self, ok: bool) {
        self.reload_success.set(i64::from(ok));
    }
}
