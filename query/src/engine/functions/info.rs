//! `info(v, {selector})`: adds to each series of `v` the data labels of the info series
//! (`target_info` unless the selector names others) that share its identifying labels
//! (`instance`, `job`), as Prometheus's `promql/info.go` does.

use std::collections::HashMap;

use promql_parser::parser::{Call, Expr, VectorSelector};
use strata_tsdb::labels::{Labels, METRIC_NAME};
use strata_tsdb::matchers::{MatchOp, Matcher};

use super::vector_arg;
use crate::engine::eval::{offset_ms, Evaluator};
use crate::engine::types::{is_stale, Grid, Point, StepSeries, Val};
use crate::engine::{QueryError, DUPLICATE_LABELSET};

const TARGET_INFO: &str = "target_info";

/// The labels that tie a series to its info series; hard-coded, as in Prometheus.
const IDENTIFYING: [&str; 2] = ["instance", "job"];

pub(crate) fn info(ev: &mut Evaluator, call: &Call, args: &[&Expr], g: Grid) -> Result<Val, QueryError> {
    let base = vector_arg(ev, args.first(), g)?;
    let selector = match args.get(1) {
        None => None,
        Some(Expr::VectorSelector(vs)) => {
            let written = ev.selector_extras(vs).and_then(|x| x.info_labels.as_ref());
            let Some(written) = written else {
                return Err(QueryError::Execution(format!("no label selector recorded for {}", call.func.name)));
            };
            let matchers = written
                .iter()
                .map(|m| Matcher::new(m.op, m.name.as_str(), m.value.as_str()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| QueryError::BadData(e.to_string()))?;
            Some(matchers)
        }
        Some(_) => return Err(QueryError::Execution("expected label selectors only".into())),
    };
    let (names, data): (Vec<Matcher>, Vec<Matcher>) =
        selector.unwrap_or_default().into_iter().partition(|m| m.name == METRIC_NAME);
    let names = info_names(names)?;
    // Base series that are info series themselves pass through.
    let ignored: Vec<bool> = base
        .iter()
        .map(|s| {
            let name = s.labels.get(METRIC_NAME).unwrap_or("");
            names.iter().all(|m| m.matches(name))
        })
        .collect();

    // When the info series are read for each step: as the first argument reads its samples.
    let reference: Vec<i64> = (0..g.len()).map(|i| reference_time(ev, args[0], g.ts(i))).collect();
    let infos = select_info_series(ev, &base, &ignored, names, &data, &reference, g)?;
    let info_names: Vec<&str> = {
        let mut n: Vec<&str> = infos.iter().filter_map(|s| s.labels.get(METRIC_NAME)).collect();
        n.sort_unstable();
        n.dedup();
        n
    };
    let data_names: Vec<&str> = data.iter().map(|m| m.name.as_str()).collect();
    // Without an info series, a series stays only if every data label matcher allows no label.
    let keep_unmatched = data.iter().all(Matcher::matches_empty);

    let lookback = ev.limits.lookback;
    let mut out: Vec<StepSeries> = Vec::new();
    let mut out_index: HashMap<Labels, usize> = HashMap::new();
    let mut cursors = vec![0usize; base.len()];
    for (i, &r) in reference.iter().enumerate() {
        ev.check_deadline()?;
        let ts = g.ts(i);
        // The newest info sample per info metric and identifying labels.
        let mut current: HashMap<InfoKey, (usize, i64)> = HashMap::new();
        for (k, s) in infos.iter().enumerate() {
            let Some(t) = s.sample_time_at(r, lookback) else { continue };
            let key = info_key(s.labels.get(METRIC_NAME).unwrap_or(""), &s.labels);
            match current.get(&key) {
                Some(&(other, ot)) if ot == t => {
                    return Err(QueryError::Execution(format!(
                        "found duplicate series for info metric: existing {} @ {ot}, new {} @ {t}",
                        infos[other].labels, s.labels
                    )))
                }
                Some(&(_, ot)) if ot > t => {}
                _ => {
                    current.insert(key, (k, t));
                }
            }
        }
        for (b, s) in base.iter().enumerate() {
            let Some(p) = s.points.get(cursors[b]).filter(|p| p.t == ts) else { continue };
            cursors[b] += 1;
            let labels = if ignored[b] {
                s.labels.clone()
            } else {
                let mut added: Vec<(&str, &str)> = Vec::new();
                let mut matched = false;
                for &name in &info_names {
                    let Some(&(k, _)) = current.get(&info_key(name, &s.labels)) else { continue };
                    matched = true;
                    for (n, v) in infos[k].labels.iter() {
                        if n == METRIC_NAME || !data_names.is_empty() && !data_names.contains(&n) {
                            continue;
                        }
                        if let Some((_, prev)) = added.iter().find(|(a, _)| *a == n) {
                            if *prev != v {
                                return Err(QueryError::Execution(format!("conflicting label: {n}")));
                            }
                            continue;
                        }
                        if s.labels.get(n).is_none() {
                            added.push((n, v));
                        }
                    }
                }
                if !matched && !keep_unmatched {
                    continue;
                }
                if added.is_empty() {
                    s.labels.clone()
                } else {
                    added.extend(s.labels.iter());
                    Labels::from_pairs(&added)
                }
            };
            let at = *out_index.entry(labels.clone()).or_insert_with(|| {
                out.push(StepSeries { labels, drop_name: s.drop_name, points: Vec::new() });
                out.len() - 1
            });
            if out[at].points.last().is_some_and(|q| q.t == ts) {
                return Err(QueryError::Execution(DUPLICATE_LABELSET.into()));
            }
            out[at].points.push(Point { t: ts, v: p.v });
        }
    }
    Ok(Val::Vector(out))
}

/// An info series' samples.
struct InfoSeries {
    labels: Labels,
    t: Vec<i64>,
    v: Vec<f64>,
}

impl InfoSeries {
    /// The time of the sample an instant selector takes at `r`: the newest no newer than `r`
    /// and within the lookback delta, unless it is a staleness marker.
    fn sample_time_at(&self, r: i64, lookback: i64) -> Option<i64> {
        let i = self.t.partition_point(|&t| t <= r).checked_sub(1)?;
        (self.t[i] > r.saturating_sub(lookback) && !is_stale(self.v[i])).then_some(self.t[i])
    }
}

/// Which metrics are info metrics: the selector's name matchers if one of them is positive;
/// with negative ones only, those among the `_info` metrics; without any, `target_info`.
fn info_names(mut names: Vec<Matcher>) -> Result<Vec<Matcher>, QueryError> {
    let matcher = |op, value| Matcher::new(op, METRIC_NAME, value).map_err(|e| QueryError::BadData(e.to_string()));
    if names.is_empty() {
        return Ok(vec![matcher(MatchOp::Equal, TARGET_INFO)?]);
    }
    if !names.iter().any(|m| matches!(m.op, MatchOp::Equal | MatchOp::Regex)) {
        names.insert(0, matcher(MatchOp::Regex, ".+_info")?);
    }
    Ok(names)
}

/// An info metric name and the identifying label values that tie series to its series.
type InfoKey<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

fn info_key<'a>(name: &'a str, labels: &'a Labels) -> InfoKey<'a> {
    (name, identifying(labels, IDENTIFYING[0]), identifying(labels, IDENTIFYING[1]))
}

/// The value of identifying label `name`, if set.
fn identifying<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels.get(name).filter(|v| !v.is_empty())
}

/// The info series that may enrich `base`: those with the identifying label values of its
/// series (bar the ignored ones), the info metric `names` and the data label matchers, read
/// around the `reference` times.
fn select_info_series(
    ev: &mut Evaluator,
    base: &[StepSeries],
    ignored: &[bool],
    names: Vec<Matcher>,
    data: &[Matcher],
    reference: &[i64],
    g: Grid,
) -> Result<Vec<InfoSeries>, QueryError> {
    let mut matchers = Vec::new();
    for name in IDENTIFYING {
        let mut values: Vec<&str> =
            base.iter().zip(ignored).filter(|(_, &ig)| !ig).filter_map(|(s, _)| identifying(&s.labels, name)).collect();
        values.sort_unstable();
        values.dedup();
        if !values.is_empty() {
            let alternatives: Vec<String> = values.iter().map(|v| regex::escape(v)).collect();
            matchers.push(
                Matcher::new(MatchOp::Regex, name, alternatives.join("|"))
                    .map_err(|e| QueryError::BadData(e.to_string()))?,
            );
        }
    }
    // No series to enrich has an identifying label: nothing can match.
    let (Some(&first), Some(&last)) = (reference.iter().min(), reference.iter().max()) else { return Ok(Vec::new()) };
    if matchers.is_empty() {
        return Ok(Vec::new());
    }
    matchers.extend(names);
    matchers.extend(data.iter().cloned());
    let lookback = ev.limits.lookback;
    let mint = first.saturating_sub(lookback).saturating_add(1);
    let hints = ev.hints(g, 0);
    let sel = ev.select_matching(&[matchers], mint, last, &hints)?;
    let samples = (0..sel.len()).map(|i| sel.decode(i, false)).collect::<Result<Vec<_>, _>>()?;
    ev.hold(samples.iter().map(|(t, _)| t.len()).sum())?;
    Ok(sel.into_labels().zip(samples).map(|(labels, (t, v))| InfoSeries { labels, t, v }).collect())
}

/// The time the first vector selector of `e` reads at evaluation time `ts`, with its `@` and
/// offset and those of the subqueries around it; `ts` if `e` has no selector.
fn reference_time(ev: &Evaluator, e: &Expr, ts: i64) -> i64 {
    fn selector(ev: &Evaluator, vs: &VectorSelector, t: i64) -> Option<i64> {
        Some(ev.resolve_at(&vs.at).unwrap_or(t).saturating_sub(offset_ms(&vs.offset)))
    }
    fn walk(ev: &Evaluator, e: &Expr, t: i64) -> Option<i64> {
        match e {
            Expr::VectorSelector(vs) => selector(ev, vs, t),
            Expr::MatrixSelector(ms) => selector(ev, &ms.vs, t),
            Expr::Subquery(sq) => {
                walk(ev, &sq.expr, ev.resolve_at(&sq.at).unwrap_or(t).saturating_sub(offset_ms(&sq.offset)))
            }
            Expr::Paren(p) => walk(ev, &p.expr, t),
            Expr::Unary(u) => walk(ev, &u.expr, t),
            Expr::Binary(b) => walk(ev, &b.lhs, t).or_else(|| walk(ev, &b.rhs, t)),
            Expr::Aggregate(a) => a.param.as_deref().and_then(|p| walk(ev, p, t)).or_else(|| walk(ev, &a.expr, t)),
            Expr::Call(c) => c.args.args.iter().find_map(|a| walk(ev, a, t)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => None,
        }
    }
    walk(ev, e, ts).unwrap_or(ts)
}
