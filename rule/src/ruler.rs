//! The ruler: rule files loaded (and reloaded), one task per group evaluating its rules every
//! interval at Prometheus's aligned times against the query APIs, results and alert series
//! written to the ruler's TSDB with staleness markers, alert state restored after a restart,
//! alerts handed to the notifier.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use strata_shipper::relabel::Relabel;

use parking_lot::{Mutex, RwLock};
use strata_query::frontend::merge::parse_instant;
use strata_query::value::Sample;
use strata_tsdb::chunkenc::{Encoding, XorIter};
use strata_tsdb::db::Db;
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::{MatchOp, Matcher};
use tokio::task::JoinHandle;

use crate::alert::{to_map, Alert, AlertingRule, LabelMap, Output, TemplateEnv};
use crate::discovery::Peers;
use crate::metrics::RuleMetrics;
use crate::notifier::Notifier;
use crate::rulefmt::{self, GroupSpec, PartialResponse, RuleKind, RuleSpec};
use crate::template::QuerySample;
use crate::Error;

/// Prometheus's staleness marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

#[derive(Clone, Debug)]
pub struct RulerOptions {
    /// `--rule-file` globs.
    pub rule_files: Vec<String>,
    /// Milliseconds; the interval of groups that name none.
    pub eval_interval: i64,
    pub external_labels: LabelMap,
    pub alert_label_drop: Vec<String>,
    /// `--alert.relabel-config`: applied to alerts before they are sent.
    pub alert_relabel: Relabel,
    /// `--alert.query-url`: the base of alerts' generator URLs.
    pub alert_query_url: String,
    pub resend_delay: i64,
    pub for_grace_period: i64,
    pub for_outage_tolerance: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// One rule's definition and what its evaluations left.
pub struct RuleState {
    pub spec: RuleSpec,
    pub alerting: Option<AlertingRule>,
    pub health: Health,
    pub last_error: String,
    /// Milliseconds; `None` before the first evaluation.
    pub last_eval: Option<i64>,
    pub eval_seconds: f64,
    /// Series written by the last successful evaluation (for staleness markers).
    series: BTreeSet<LabelMap>,
}

pub struct Group {
    pub file: String,
    pub spec: GroupSpec,
    /// Milliseconds.
    pub interval: i64,
    pub rules: Vec<Mutex<RuleState>>,
    /// Time and duration (seconds) of the last evaluation.
    pub last_eval: Mutex<Option<(i64, f64)>>,
}

impl Group {
    fn new(file: String, spec: GroupSpec, default_interval: i64) -> Group {
        let interval = spec.interval.filter(|i| *i > 0).unwrap_or(default_interval).max(1);
        let rules = spec
            .rules
            .iter()
            .map(|r| {
                let alerting = match &r.kind {
                    RuleKind::Alert { name, for_, keep_firing_for, annotations } => Some(AlertingRule {
                        name: name.clone(),
                        expr: r.expr.clone(),
                        hold: *for_,
                        keep_firing_for: *keep_firing_for,
                        labels: r.labels.clone(),
                        annotations: annotations.clone(),
                        active: BTreeMap::new(),
                        restored: false,
                    }),
                    RuleKind::Record { .. } => None,
                };
                Mutex::new(RuleState {
                    spec: r.clone(),
                    alerting,
                    health: Health::Unknown,
                    last_error: String::new(),
                    last_eval: None,
                    eval_seconds: 0.0,
                    series: BTreeSet::new(),
                })
            })
            .collect();
        Group { file, spec, interval, rules, last_eval: Mutex::new(None) }
    }

    /// `file;name`, the `rule_group` label of the metrics.
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.spec.name)
    }

    /// Prometheus's `EvalTimestamp`: the latest time at or before `now_ns` on the group's
    /// grid, which is offset by the hash of its name and file so that groups spread out.
    pub fn eval_timestamp(&self, now_ns: i128) -> i128 {
        let interval = i128::from(self.interval) * 1_000_000;
        let hash = Labels::from_pairs(&[("file", self.file.as_str()), ("name", self.spec.name.as_str())]).hash();
        let offset = i128::from(hash) % interval;
        let adj = now_ns - offset;
        adj - adj.rem_euclid(interval) + offset
    }
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

/// A query engine in the same process (`strata standalone`'s), asked without an HTTP hop.
pub trait LocalQuery: Send + Sync {
    /// An instant query at `t` (ms) with Thanos's deduplication and partial responses allowed
    /// or not, as `/api/v1/query` would answer it: the samples (a scalar as one sample without
    /// labels) and warnings, or the API's error message. It may block (it evaluates).
    fn instant(&self, expr: &str, t: i64, partial_response: bool) -> Result<(Vec<Sample>, Vec<String>), String>;
}

/// What rules are evaluated against.
pub enum Queriers {
    /// The query APIs of `--query` / `--query.config`, asked in turn until one answers.
    Remote(Box<Peers>),
    Local(Arc<dyn LocalQuery>),
}

impl Queriers {
    /// An instant query at `t` (ms) with Thanos's deduplication and the group's partial
    /// response strategy; the samples and the answer's warnings.
    pub async fn instant(
        &self,
        expr: &str,
        t: i64,
        strategy: PartialResponse,
    ) -> Result<(Vec<Sample>, Vec<String>), String> {
        let partial = strategy == PartialResponse::Warn;
        let apis = match self {
            Queriers::Remote(apis) => apis,
            Queriers::Local(engine) => {
                let (engine, expr) = (Arc::clone(engine), expr.to_owned());
                return tokio::task::spawn_blocking(move || engine.instant(&expr, t, partial))
                    .await
                    .unwrap_or_else(|e| Err(format!("query task failed: {e}")));
            }
        };
        let time = format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000));
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", expr)
            .append_pair("time", &time)
            .append_pair("dedup", "true")
            .append_pair("partial_response", if partial { "true" } else { "false" })
            .finish();
        let path = format!("/api/v1/query?{query}");
        let mut last = "no query API found (--query, --query.config)".to_owned();
        for api in apis.current() {
            match api.get(&path).await {
                Ok(a) if a.status.is_success() => {
                    return parse_instant(&a.body)
                        .map(|(s, notes)| (s, notes.warnings))
                        .map_err(|e| format!("query API {}: {e}", api.url()));
                }
                Ok(a) => {
                    let body = String::from_utf8_lossy(&a.body);
                    let msg = serde_json::from_slice::<serde_json::Value>(&a.body)
                        .ok()
                        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                        .unwrap_or_else(|| body.chars().take(512).collect());
                    // A bad query fails the same everywhere: no point asking the others.
                    if a.status.is_client_error() {
                        return Err(msg);
                    }
                    last = format!("query API {} answered {}: {msg}", api.url(), a.status);
                }
                Err(e) => last = format!("query API {}: {e}", api.url()),
            }
        }
        Err(last)
    }
}

pub struct Ruler {
    pub opts: RulerOptions,
    pub queriers: Queriers,
    pub notifier: Arc<Notifier>,
    pub db: Arc<Db>,
    pub metrics: RuleMetrics,
    groups: RwLock<Vec<Arc<Group>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The rule files the globs name, in order, each once.
pub fn rule_files(patterns: &[String]) -> Result<Vec<PathBuf>, Error> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in patterns {
        let paths = glob::glob(p).map_err(|e| Error::Glob { pattern: p.clone(), message: e.to_string() })?;
        for path in paths {
            let path = path.map_err(|e| Error::Glob { pattern: p.clone(), message: e.to_string() })?;
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// Every group of the files the globs name, checked; the first file's errors otherwise.
pub fn load_groups(patterns: &[String]) -> Result<Vec<(String, GroupSpec)>, Error> {
    let mut groups = Vec::new();
    for path in rule_files(patterns)? {
        let file = rulefmt::parse_file(&path)?;
        let name = path.display().to_string();
        groups.extend(file.groups.into_iter().map(|g| (name.clone(), g)));
    }
    Ok(groups)
}

impl Ruler {
    pub fn new(
        opts: RulerOptions,
        queriers: Queriers,
        notifier: Arc<Notifier>,
        db: Arc<Db>,
        metrics: RuleMetrics,
    ) -> Self {
        Ruler { opts, queriers, notifier, db, metrics, groups: RwLock::new(Vec::new()), tasks: Mutex::new(Vec::new()) }
    }

    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.groups.read().clone()
    }

    /// Loads the rule files and (re)starts the groups; a file that fails its checks leaves
    /// the rules in use as they were. State of alerting rules carries over to the new groups
    /// where the group (file and name) and the rule (name and expression) are the same.
    pub fn reload(self: &Arc<Self>) -> Result<(), Error> {
        let started = Instant::now();
        let specs = load_groups(&self.opts.rule_files).inspect_err(|_| self.metrics.config_reload(false))?;
        let old: BTreeMap<String, Arc<Group>> = self.groups().into_iter().map(|g| (g.key(), g)).collect();
        let mut groups = Vec::with_capacity(specs.len());
        for (file, spec) in specs {
            let g = Group::new(file, spec, self.opts.eval_interval);
            if let Some(prev) = old.get(&g.key()) {
                for r in &g.rules {
                    let mut r = r.lock();
                    let same = prev.rules.iter().find(|p| {
                        let p = p.lock();
                        p.spec.name() == r.spec.name() && p.spec.expr == r.spec.expr
                    });
                    if let Some(p) = same {
                        let p = p.lock();
                        if let (Some(new), Some(old)) = (r.alerting.as_mut(), p.alerting.as_ref()) {
                            new.active = old.active.clone();
                            new.restored = old.restored;
                        }
                        r.series = p.series.clone();
                    }
                }
            }
            groups.push(Arc::new(g));
        }
        let mut tasks = self.tasks.lock();
        for t in tasks.drain(..) {
            t.abort();
        }
        self.metrics.set_groups(&groups);
        for g in &groups {
            let fresh = !old.contains_key(&g.key());
            tasks.push(tokio::spawn(Arc::clone(self).run_group(Arc::clone(g), fresh)));
        }
        let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
        *self.groups.write() = groups;
        self.metrics.config_reload(true);
        tracing::info!(groups = tasks.len(), rules, duration = ?started.elapsed(), "rules loaded");
        Ok(())
    }

    /// Stops every group.
    pub fn stop(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    async fn run_group(self: Arc<Self>, g: Arc<Group>, restore: bool) {
        let interval_ns = i128::from(g.interval) * 1_000_000;
        let mut next = g.eval_timestamp(now_ns()) + interval_ns;
        let mut restore = restore;
        loop {
            let wait = next - now_ns();
            if wait > 0 {
                tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
            }
            let ts = (next / 1_000_000) as i64;
            self.eval_group(&g, ts).await;
            if restore {
                self.restore(&g, (now_ns() / 1_000_000) as i64);
                restore = false;
            }
            next += interval_ns;
            let now = now_ns();
            if next <= now {
                let missed = (now - next) / interval_ns + 1;
                self.metrics.missed(&g, missed as u64);
                next += missed * interval_ns;
            }
        }
    }

    /// One evaluation of every rule of `g` at `ts` (ms), in order.
    pub async fn eval_group(&self, g: &Group, ts: i64) {
        let started = Instant::now();
        let offset = g.spec.query_offset.unwrap_or(0);
        let strategy = g.spec.partial_response;
        let mut to_send: Vec<(String, Vec<Alert>)> = Vec::new();
        for rule in &g.rules {
            let rule_started = Instant::now();
            let expr = rule.lock().spec.expr.clone();
            let answer = self.queriers.instant(&expr, ts - offset, strategy).await;
            let handle = tokio::runtime::Handle::current();
            let query_fn = |q: &str| -> Result<Vec<QuerySample>, String> {
                let res =
                    tokio::task::block_in_place(|| handle.block_on(self.queriers.instant(q, ts - offset, strategy)));
                res.map(|(samples, _)| {
                    samples.into_iter().map(|s| QuerySample { labels: to_map(&s.labels), value: s.v }).collect()
                })
            };
            let mut r = rule.lock();
            let result = answer.and_then(|(samples, warnings)| {
                for w in &warnings {
                    tracing::warn!(group = %g.spec.name, rule = %r.spec.name(), warning = %w, "query warning");
                }
                match r.alerting.as_mut() {
                    Some(a) => {
                        let env = TemplateEnv {
                            external_labels: &self.opts.external_labels,
                            external_url: &self.opts.alert_query_url,
                            query: &query_fn,
                        };
                        a.eval(ts, offset, samples, &env, g.spec.limit)
                    }
                    None => record(&r.spec, samples, g.spec.limit),
                }
            });
            self.metrics.evaluated(g, result.is_err());
            match result {
                Ok(out) => {
                    let now: BTreeSet<LabelMap> = out.iter().map(|o| o.labels.clone()).collect();
                    let stale: Vec<Output> = r
                        .series
                        .difference(&now)
                        .map(|l| Output { labels: l.clone(), t: ts - offset, v: f64::from_bits(STALE_NAN) })
                        .collect();
                    self.write(&out, &stale);
                    r.series = now;
                    r.health = Health::Ok;
                    r.last_error.clear();
                }
                Err(e) => {
                    tracing::warn!(group = %g.spec.name, file = %g.file, rule = %r.spec.name(), error = %e, "rule evaluation failed");
                    r.health = Health::Err;
                    r.last_error = e;
                }
            }
            r.last_eval = Some(ts);
            r.eval_seconds = rule_started.elapsed().as_secs_f64();
            let resend = self.opts.resend_delay;
            if let Some(a) = r.alerting.as_mut() {
                let alerts = a.to_send(ts, resend, g.interval);
                if !alerts.is_empty() {
                    to_send.push((a.expr.clone(), alerts));
                }
            }
        }
        for (expr, alerts) in to_send {
            self.notifier.send(&expr, alerts);
        }
        let took = started.elapsed().as_secs_f64();
        *g.last_eval.lock() = Some((ts, took));
        self.metrics.group_done(g, took, ts);
    }

    fn write(&self, out: &[Output], stale: &[Output]) {
        if out.is_empty() && stale.is_empty() {
            return;
        }
        let mut app = self.db.appender();
        for o in out.iter().chain(stale) {
            let pairs: Vec<(&str, &str)> = o.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if let Err(e) = app.append(&pairs, [(o.t, o.v)]) {
                tracing::warn!(labels = ?o.labels, error = %e, "rule result not written");
            }
        }
        match app.commit() {
            // Blocks are cut in the background once the head spans enough time.
            Ok(_) => self.db.maybe_cut(),
            Err(e) => tracing::error!(error = %e, "writing rule results to the TSDB failed"),
        }
    }

    /// Prometheus's `RestoreForState`: alerts active at the first evaluation after a start
    /// get back the active time their `ALERTS_FOR_STATE` series held, if it was written within
    /// `--for-outage-tolerance`; rules whose `for` is below `--for-grace-period` are not
    /// restored.
    fn restore(&self, g: &Group, now: i64) {
        for rule in &g.rules {
            let mut r = rule.lock();
            let Some(a) = r.alerting.as_mut() else { continue };
            if a.hold < self.opts.for_grace_period || a.active.is_empty() {
                a.restored = true;
                continue;
            }
            let mint = now - self.opts.for_outage_tolerance;
            let series = match (
                Matcher::new(MatchOp::Equal, "__name__", "ALERTS_FOR_STATE"),
                Matcher::new(MatchOp::Equal, "alertname", a.name.as_str()),
            ) {
                (Ok(m1), Ok(m2)) => self.db.select(&[m1, m2], mint, now, false),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            let series = match series {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(alert = %a.name, error = %e, "reading ALERTS_FOR_STATE to restore alert state failed");
                    a.restored = true;
                    continue;
                }
            };
            let mut last_by_labels: BTreeMap<LabelMap, (i64, f64)> = BTreeMap::new();
            for s in series.flatten() {
                let mut labels = to_map(&s.labels);
                labels.remove("__name__");
                let mut last = None;
                for c in s.chunks.iter().filter(|c| c.encoding == Encoding::Xor) {
                    if let Ok(it) = XorIter::new(&c.data) {
                        for (t, v) in it.filter(|(t, _)| *t >= mint && *t <= now) {
                            last = Some((t, v));
                        }
                    }
                }
                if let Some(l) = last {
                    last_by_labels.insert(labels, l);
                }
            }
            let grace = self.opts.for_grace_period;
            let mut restored = Vec::new();
            for labels in a.active.keys() {
                let Some(&(t, v)) = last_by_labels.get(labels) else { continue };
                if v.to_bits() == STALE_NAN {
                    continue;
                }
                restored.push((labels.clone(), a.restored_active_at((t, v), now, grace)));
            }
            for (labels, active_at) in restored {
                if let Some(alert) = a.active.get_mut(&labels) {
                    tracing::info!(alert = %a.name, labels = ?labels, active_at, "alert state restored");
                    alert.active_at = active_at;
                }
            }
            a.restored = true;
        }
    }
}

/// A recording rule's output: the query's samples renamed, with the rule's labels.
fn record(spec: &RuleSpec, samples: Vec<Sample>, limit: i64) -> Result<Vec<Output>, String> {
    let RuleKind::Record { name } = &spec.kind else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(samples.len());
    let mut seen = BTreeSet::new();
    for s in samples {
        let mut labels = to_map(&s.labels);
        labels.insert("__name__".to_owned(), name.clone());
        for (k, v) in &spec.labels {
            labels.insert(k.clone(), v.clone());
        }
        if !seen.insert(labels.clone()) {
            return Err("vector contains metrics with the same labelset after applying rule labels".to_owned());
        }
        out.push(Output { labels, t: s.t, v: s.v });
    }
    if limit > 0 && out.len() as i64 > limit {
        return Err(format!("exceeded limit of {limit} with {} series", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_renames_and_refuses_duplicates() {
        let spec = RuleSpec {
            kind: RuleKind::Record { name: "job:up:sum".into() },
            expr: "sum by (job) (up)".into(),
            labels: [("team".to_string(), "a".to_string())].into_iter().collect(),
        };
        let s = |pairs: &[(&str, &str)]| Sample { labels: Labels::from_pairs(pairs), t: 5, v: 1.0 };
        let out = record(&spec, vec![s(&[("__name__", "up"), ("job", "x")])], 0).unwrap();
        assert_eq!(out[0].labels.get("__name__").map(String::as_str), Some("job:up:sum"));
        assert_eq!(out[0].labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(out[0].t, 5);
        let dup = vec![s(&[("__name__", "a"), ("job", "x")]), s(&[("__name__", "b"), ("job", "x")])];
        assert!(record(&spec, dup, 0).unwrap_err().contains("same labelset"));
        let two = vec![s(&[("job", "x")]), s(&[("job", "y")])];
        assert_eq!(record(&spec, two, 1).unwrap_err(), "exceeded limit of 1 with 2 series");
    }

    #[test]
    fn evaluation_times_are_on_the_groups_grid() {
        let spec = GroupSpec {
            name: "g".into(),
            interval: Some(60_000),
            query_offset: None,
            limit: 0,
            labels: BTreeMap::new(),
            partial_response: PartialResponse::Abort,
            rules: Vec::new(),
        };
        let g = Group::new("f.yml".into(), spec, 60_000);
        let interval = 60_000_000_000i128;
        let t = g.eval_timestamp(1_700_000_000_123_456_789);
        assert!(t <= 1_700_000_000_123_456_789 && 1_700_000_000_123_456_789 - t < interval);
        assert_eq!(g.eval_timestamp(t + interval), t + interval);
        assert_eq!(g.eval_timestamp(t + interval - 1), t);
    }
}
