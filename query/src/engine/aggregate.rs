//! Aggregation operators. Series are assigned to groups once; each step then folds the values
//! present at that step into their groups.

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMITK, T_LIMIT_RATIO, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};
use strata_tsdb::gotext::{format_f, format_g, quote};
use strata_tsdb::labels::{Labels, METRIC_NAME};

use super::eval::Evaluator;
use super::functions;
use super::types::{
    keep_labels, remove_labels, set_label, signature_on, signature_without, Grid, Point, StepSeries, Val,
};
use super::QueryError;

/// Largest float that converts to an int64 without overflow, and the smallest.
const MAX_INT64: f64 = 9_223_372_036_854_774_784.0;
const MIN_INT64: f64 = -9_223_372_036_854_775_808.0;

pub(crate) fn eval(ev: &mut Evaluator, a: &AggregateExpr, g: Grid) -> Result<Val, QueryError> {
    let op = a.op.id();
    let (without, mut grouping) = match &a.modifier {
        Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
        None => (false, Vec::new()),
    };
    grouping.sort();
    grouping.dedup();

    if op == T_COUNT_VALUES {
        let label = match a.param.as_deref().map(strip_parens) {
            Some(Expr::StringLiteral(s)) => s.val.clone(),
            _ => return Err(QueryError::BadData("count_values needs a string parameter".into())),
        };
        if label.is_empty() {
            return Err(QueryError::Execution(format!("invalid label name {}", quote(&label))));
        }
        let input = vector_of(ev.eval(&a.expr, g)?)?;
        return Ok(Val::Vector(count_values(ev, &input, &label, without, grouping, g)?));
    }

    let params = match &a.param {
        Some(p) => match ev.eval(p, g)? {
            Val::Scalar(v) => Some(v),
            other => {
                return Err(QueryError::Execution(format!(
                    "expected scalar parameter for aggregation, got {}",
                    other.type_name()
                )))
            }
        },
        None => None,
    };
    if matches!(op, T_SUM | T_AVG | T_COUNT | T_MIN | T_MAX | T_GROUP | T_STDDEV | T_STDVAR) && streamable(&a.expr) {
        return Ok(Val::Vector(fold_in_parts(ev, op, &a.expr, Groups::new(without, &grouping), g)?));
    }
    let param_pos = ev.positions().aggregation(a).and_then(|p| p.args.first().copied());
    if matches!(op, T_TOPK | T_BOTTOMK) && !g.is_instant() && streamable(&a.expr) {
        let params = params.unwrap_or_default();
        if !check_k_params(ev, op, &params, param_pos)? {
            return Ok(Val::Vector(Vec::new()));
        }
        return Ok(Val::Vector(select_k_in_parts(ev, op, &a.expr, Groups::new(without, &grouping), &params, g)?));
    }
    let input = vector_of(ev.eval(&a.expr, g)?)?;
    let mut groups = Groups::new(without, &grouping);
    input.iter().for_each(|s| {
        groups.add(&s.labels);
    });

    match op {
        T_TOPK | T_BOTTOMK | T_LIMITK | T_LIMIT_RATIO => {
            let params = params.unwrap_or_default();
            if !check_k_params(ev, op, &params, param_pos)? {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(select_k(ev, op, &input, &groups, &params, g)?))
        }
        _ => {
            let q = params.unwrap_or_default();
            if op == T_QUANTILE {
                let (min, max) = min_max(&q);
                if q.iter().any(|p| p.is_nan()) {
                    ev.warn(&quantile_warning(f64::NAN), param_pos);
                }
                if max > 1.0 {
                    ev.warn(&quantile_warning(max), param_pos);
                }
                if min < 0.0 {
                    ev.warn(&quantile_warning(min), param_pos);
                }
            }
            Ok(Val::Vector(fold(ev, op, &input, &groups, &q, g)?))
        }
    }
}

/// Checks the parameter of topk, bottomk, limitk or limit_ratio as Prometheus does (errors and
/// warnings); false when no step can select anything.
fn check_k_params(ev: &mut Evaluator, op: u16, params: &[f64], param_pos: Option<usize>) -> Result<bool, QueryError> {
    let (min, max) = min_max(params);
    if op == T_LIMIT_RATIO {
        if (max == 0.0 && min == 0.0) || params.is_empty() {
            return Ok(false);
        }
        if params.iter().any(|p| p.is_nan()) {
            return Err(QueryError::Execution("Ratio value is NaN".into()));
        }
        if max > 1.0 {
            ev.warn(&ratio_warning(max, 1.0), param_pos);
        }
        if min < -1.0 {
            ev.warn(&ratio_warning(min, -1.0), param_pos);
        }
    } else {
        if max < 1.0 || params.is_empty() {
            return Ok(false);
        }
        if params.iter().any(|p| p.is_nan()) {
            return Err(QueryError::Execution("Parameter value is NaN".into()));
        }
        if min <= MIN_INT64 {
            return Err(QueryError::Execution(format!("Scalar value {} underflows int64", format_g(min))));
        }
        if max >= MAX_INT64 {
            return Err(QueryError::Execution(format!("Scalar value {} overflows int64", format_g(max))));
        }
    }
    Ok(true)
}

pub(crate) fn quantile_warning(q: f64) -> String {
    format!("quantile value should be between 0 and 1, got {}", format_g(q))
}

fn ratio_warning(r: f64, cap: f64) -> String {
    format!("ratio value should be between -1 and 1, got {}, capping to {}", format_g(r), format_g(cap))
}

fn strip_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip_parens(&p.expr),
        e => e,
    }
}

fn vector_of(v: Val) -> Result<Vec<StepSeries>, QueryError> {
    match v {
        Val::Vector(s) => Ok(s),
        other => {
            Err(QueryError::Execution(format!("expected instant vector for aggregation, got {}", other.type_name())))
        }
    }
}

/// Smallest and largest parameter over the steps; a NaN anywhere makes both NaN, as Go's
/// `math.Min`/`math.Max` do in Prometheus's parameter checks.
fn min_max(p: &[f64]) -> (f64, f64) {
    if p.iter().any(|v| v.is_nan()) {
        return (f64::NAN, f64::NAN);
    }
    p.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// The assignment of input series to output groups, in order of first appearance.
struct Groups {
    without: bool,
    grouping: Vec<String>,
    /// Labels a `without` group drops: the grouping labels and the metric name.
    without_names: Vec<String>,
    ids: HashMap<Vec<u8>, usize>,
    /// The group of each series added, in order.
    of_series: Vec<usize>,
    labels: Vec<Labels>,
    buf: Vec<u8>,
}

impl Groups {
    fn new(without: bool, grouping: &[String]) -> Groups {
        let mut without_names = grouping.to_vec();
        without_names.push(METRIC_NAME.into());
        Groups {
            without,
            grouping: grouping.to_vec(),
            without_names,
            ids: HashMap::new(),
            of_series: Vec::new(),
            labels: Vec::new(),
            buf: Vec::new(),
        }
    }

    fn signature(&self, labels: &Labels, out: &mut Vec<u8>) {
        if self.without {
            signature_without(labels, &self.grouping, out);
        } else {
            signature_on(labels, &self.grouping, out);
        }
    }

    /// Adds the next series and returns its group.
    fn add(&mut self, labels: &Labels) -> usize {
        let mut sig = std::mem::take(&mut self.buf);
        self.signature(labels, &mut sig);
        let next = self.ids.len();
        let id = match self.ids.get(&sig) {
            Some(&id) => id,
            None => {
                self.ids.insert(sig.clone(), next);
                self.labels.push(if self.without {
                    remove_labels(labels, &self.without_names)
                } else {
                    keep_labels(labels, &self.grouping)
                });
                next
            }
        };
        self.buf = sig;
        self.of_series.push(id);
        id
    }

    /// How many groups there would be with `more` series added too.
    fn count_with<'l>(&self, more: impl Iterator<Item = &'l Labels>) -> usize {
        let mut extra = std::collections::HashSet::new();
        let mut sig = Vec::new();
        for l in more {
            self.signature(l, &mut sig);
            if !self.ids.contains_key(&sig) && !extra.contains(&sig) {
                extra.insert(sig.clone());
            }
        }
        self.ids.len() + extra.len()
    }
}

/// Whether every series of `e` comes from one series of its only selector, with that series'
/// labels (bar the metric name), so that `e` can be evaluated a part of its series at a time:
/// a selector under per-series functions and operations with constants.
fn streamable(e: &Expr) -> bool {
    match e {
        Expr::VectorSelector(_) => true,
        Expr::Paren(p) => streamable(&p.expr),
        Expr::Unary(u) => streamable(&u.expr),
        Expr::Binary(b) => (streamable(&b.lhs) && is_constant(&b.rhs)) || (is_constant(&b.lhs) && streamable(&b.rhs)),
        Expr::Call(c) if functions::is_per_series(c.func.name) => {
            let (inputs, constants): (Vec<&Expr>, Vec<&Expr>) = c
                .args
                .args
                .iter()
                .map(|a| &**a)
                .partition(|a| matches!(strip_parens(a), Expr::MatrixSelector(_)) || streamable(a));
            inputs.len() == 1 && constants.iter().all(|a| is_constant(a))
        }
        _ => false,
    }
}

fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
        Expr::Paren(p) => is_constant(&p.expr),
        Expr::Unary(u) => is_constant(&u.expr),
        _ => false,
    }
}

/// Neumaier-compensated summation step, as Prometheus's `kahanSumInc`.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Running state of one group at one step.
#[derive(Clone, Copy, Default)]
struct Acc {
    seen: bool,
    incremental: bool,
    drop_name: bool,
    value: f64,
    mean: f64,
    comp: f64,
    count: f64,
}

impl Acc {
    fn first(op: u16, f: f64, drop_name: bool) -> Acc {
        let value = match op {
            T_STDDEV | T_STDVAR if f.is_nan() || f.is_infinite() => f64::NAN,
            T_STDDEV | T_STDVAR => 0.0,
            T_GROUP => 1.0,
            _ => f,
        };
        Acc { seen: true, incremental: false, drop_name, value, mean: f, comp: 0.0, count: 1.0 }
    }

    fn add(&mut self, op: u16, f: f64, drop_name: bool) {
        self.drop_name |= drop_name;
        match op {
            T_SUM => (self.value, self.comp) = kahan_inc(f, self.value, self.comp),
            T_AVG => {
                self.count += 1.0;
                if !self.incremental {
                    let (v, c) = kahan_inc(f, self.value, self.comp);
                    if !v.is_infinite() {
                        (self.value, self.comp) = (v, c);
                        return;
                    }
                    // The plain sum would overflow: continue with an incremental mean.
                    self.incremental = true;
                    self.mean = self.value / (self.count - 1.0);
                    self.comp /= self.count - 1.0;
                }
                let k = (self.count - 1.0) / self.count;
                (self.mean, self.comp) = kahan_inc(f / self.count, k * self.mean, k * self.comp);
            }
            T_MAX if self.value < f || self.value.is_nan() => self.value = f,
            T_MIN if self.value > f || self.value.is_nan() => self.value = f,
            T_COUNT | T_QUANTILE => self.count += 1.0,
            T_STDDEV | T_STDVAR => {
                self.count += 1.0;
                let delta = f - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (f - self.mean);
            }
            _ => {}
        }
    }

    fn result(&self, op: u16) -> f64 {
        match op {
            T_AVG if self.incremental => self.mean + self.comp,
            T_AVG => self.value / self.count + self.comp / self.count,
            T_SUM => self.value + self.comp,
            T_COUNT => self.count,
            T_STDVAR => self.value / self.count,
            T_STDDEV => (self.value / self.count).sqrt(),
            _ => self.value,
        }
    }
}

/// Most accumulators (groups × steps) the series-at-a-time fold allocates.
const DENSE_ACCUMULATORS: usize = 1 << 20;

/// Points of an aggregation's argument evaluated at once when it is evaluated in parts.
const PART_POINTS: usize = 1 << 18;

/// Fewest series in such a part, however long the range: enough to keep the cores busy.
const MIN_PART_SERIES: usize = 256;

/// sum … stdvar folded into a groups × steps table one series at a time: each group still folds
/// its values in input order at every step, and each series' points are read in one sweep.
struct Table {
    op: u16,
    g: Grid,
    accs: Vec<Acc>,
}

impl Table {
    fn new(op: u16, g: Grid) -> Table {
        Table { op, g, accs: Vec::new() }
    }

    fn add(&mut self, group: usize, s: &StepSeries) {
        let n = self.g.len();
        if self.accs.len() < (group + 1) * n {
            self.accs.resize((group + 1) * n, Acc::default());
        }
        let row = &mut self.accs[group * n..][..n];
        for p in &s.points {
            let a = &mut row[self.g.index(p.t)];
            if a.seen {
                a.add(self.op, p.v, s.drop_name);
            } else {
                *a = Acc::first(self.op, p.v, s.drop_name);
            }
        }
    }

    fn finish(self, groups: &Groups) -> Vec<StepSeries> {
        let n = self.g.len();
        let mut out: Vec<Vec<Point>> = vec![Vec::new(); groups.labels.len()];
        let mut drop_name = vec![false; groups.labels.len()];
        for (gi, row) in self.accs.chunks(n.max(1)).enumerate().take(groups.labels.len()) {
            for (i, a) in row.iter().enumerate().filter(|(_, a)| a.seen) {
                out[gi].push(Point { t: self.g.ts(i), v: a.result(self.op) });
                drop_name[gi] = a.drop_name;
            }
        }
        group_series(groups, out, drop_name)
    }
}

/// The groups' output series, those with points.
fn group_series(groups: &Groups, points: Vec<Vec<Point>>, drop_name: Vec<bool>) -> Vec<StepSeries> {
    groups
        .labels
        .iter()
        .zip(points)
        .zip(drop_name)
        .filter(|((_, p), _)| !p.is_empty())
        .map(|((l, points), drop_name)| StepSeries { labels: l.clone(), drop_name, points })
        .collect()
}

/// Evaluates `expr` a part of its series at a time (see [`streamable`]) and hands each result
/// series with its group to `add`, so that the argument is never in memory whole; `None` then.
/// When a groups × steps table would be too large, the parts are collected instead and
/// returned, their groups added, for a step-by-step pass.
fn eval_grouped_in_parts(
    ev: &mut Evaluator,
    expr: &Expr,
    groups: &mut Groups,
    g: Grid,
    mut add: impl FnMut(usize, StepSeries),
) -> Result<Option<Vec<StepSeries>>, QueryError> {
    let n = g.len();
    let mut dense = None;
    let mut whole: Vec<StepSeries> = Vec::new();
    ev.eval_in_parts(expr, g, (PART_POINTS / n.max(1)).max(MIN_PART_SERIES), |ev, val| {
        let part = vector_of(val)?;
        // After the first part every series is selected: their groups size the table.
        let dense = *dense.get_or_insert_with(|| {
            let all = part.iter().map(|s| &s.labels).chain(ev.pending_part_labels());
            groups.count_with(all).saturating_mul(n) <= DENSE_ACCUMULATORS
        });
        if dense {
            for s in part {
                add(groups.add(&s.labels), s);
            }
        } else {
            whole.extend(part);
        }
        ev.check_deadline()
    })?;
    if dense == Some(false) {
        whole.iter().for_each(|s| {
            groups.add(&s.labels);
        });
        return Ok(Some(whole));
    }
    Ok(None)
}

/// sum … stdvar of `expr` evaluated a part of its series at a time.
fn fold_in_parts(
    ev: &mut Evaluator,
    op: u16,
    expr: &Expr,
    mut groups: Groups,
    g: Grid,
) -> Result<Vec<StepSeries>, QueryError> {
    let mut table = Table::new(op, g);
    match eval_grouped_in_parts(ev, expr, &mut groups, g, |group, s| table.add(group, &s))? {
        Some(whole) => fold(ev, op, &whole, &groups, &[], g),
        None => Ok(table.finish(&groups)),
    }
}

/// sum, avg, count, min, max, group, stddev, stdvar, quantile.
fn fold(
    ev: &mut Evaluator,
    op: u16,
    input: &[StepSeries],
    groups: &Groups,
    q: &[f64],
    g: Grid,
) -> Result<Vec<StepSeries>, QueryError> {
    let (ng, n) = (groups.labels.len(), g.len());
    if op != T_QUANTILE && ng.saturating_mul(n) <= DENSE_ACCUMULATORS {
        let mut table = Table::new(op, g);
        for (si, s) in input.iter().enumerate() {
            if si % 1024 == 0 {
                ev.check_deadline()?;
            }
            table.add(groups.of_series[si], s);
        }
        return Ok(table.finish(groups));
    }
    let mut out: Vec<Vec<Point>> = vec![Vec::new(); ng];
    let mut drop_name = vec![false; ng];
    let mut accs = vec![Acc::default(); ng];
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); if op == T_QUANTILE { ng } else { 0 }];
    let mut cursor = vec![0usize; input.len()];
    for i in 0..n {
        if i % 256 == 0 {
            ev.check_deadline()?;
        }
        let ts = g.ts(i);
        accs.iter_mut().for_each(|a| a.seen = false);
        for (si, s) in input.iter().enumerate() {
            let Some(p) = s.points.get(cursor[si]) else { continue };
            if p.t != ts {
                continue;
            }
            cursor[si] += 1;
            let gi = groups.of_series[si];
            let a = &mut accs[gi];
            if a.seen {
                a.add(op, p.v, s.drop_name);
            } else {
                *a = Acc::first(op, p.v, s.drop_name);
                if let Some(v) = values.get_mut(gi) {
                    v.clear();
                }
            }
            if let Some(v) = values.get_mut(gi) {
                v.push(p.v);
            }
        }
        for (gi, a) in accs.iter().enumerate().filter(|(_, a)| a.seen) {
            let v = match values.get_mut(gi) {
                Some(vals) => quantile(q.get(i).copied().unwrap_or(f64::NAN), vals),
                None => a.result(op),
            };
            out[gi].push(Point { t: ts, v });
            drop_name[gi] = a.drop_name;
        }
    }
    Ok(group_series(groups, out, drop_name))
}

/// The φ-quantile of `values` (sorted in place), interpolating between neighbours, as
/// Prometheus's `quantile`.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaNs sort first, as Prometheus's value heap orders them.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// One input sample held by topk/bottomk/limitk/limit_ratio.
#[derive(Clone, Copy)]
struct Held {
    series: usize,
    v: f64,
}

/// Go's `container/heap` on a slice ordered by `less`, so that which of several equal values a
/// heap keeps matches Prometheus.
struct GoHeap<F: Fn(f64, f64) -> bool> {
    items: Vec<Held>,
    less: F,
}

impl<F: Fn(f64, f64) -> bool> GoHeap<F> {
    fn lt(&self, i: usize, j: usize) -> bool {
        (self.less)(self.items[i].v, self.items[j].v)
    }

    fn push(&mut self, h: Held) {
        self.items.push(h);
        self.up(self.items.len() - 1);
    }

    fn up(&mut self, mut j: usize) {
        while j > 0 {
            let i = (j - 1) / 2;
            if !self.lt(j, i) {
                break;
            }
            self.items.swap(i, j);
            j = i;
        }
    }

    fn down(&mut self, i0: usize) -> bool {
        let n = self.items.len();
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            if j1 + 1 < n && self.lt(j1 + 1, j1) {
                j = j1 + 1;
            }
            if !self.lt(j, i) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
        i > i0
    }

    fn fix(&mut self, i: usize) {
        if !self.down(i) {
            self.up(i);
        }
    }
}

type ValueOrder = fn(f64, f64) -> bool;

/// Prometheus's value order: NaN is smallest.
fn by_value(a: f64, b: f64) -> bool {
    a.is_nan() || a < b
}

/// Prometheus's reverse value order; NaN still sorts first.
fn by_reverse_value(a: f64, b: f64) -> bool {
    a.is_nan() || a > b
}

/// The hash-based sampling decision of `limit_ratio`.
fn ratio_keeps(ratio: f64, labels: &Labels) -> bool {
    let offset = labels.hash() as f64 / u64::MAX as f64;
    (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio)
}

/// Offers a sample to a topk or bottomk heap that keeps `k`: Prometheus replaces the heap's
/// weakest candidate when the sample beats it (a number beats NaN).
fn offer_k(heap: &mut GoHeap<ValueOrder>, op: u16, k: usize, h: Held) {
    if heap.items.len() < k {
        heap.push(h);
        return;
    }
    let top = heap.items[0].v;
    let beats = if op == T_TOPK { top < h.v } else { top > h.v };
    if beats || (top.is_nan() && !h.v.is_nan()) {
        heap.items[0] = h;
        if k > 1 {
            heap.fix(0);
        }
    }
}

/// Largest first for topk, smallest first for bottomk; NaN last either way.
fn sort_candidates(heap: &mut GoHeap<ValueOrder>) {
    let less = heap.less;
    heap.items.sort_by(|a, b| {
        if less(b.v, a.v) {
            std::cmp::Ordering::Less
        } else if less(a.v, b.v) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
}

/// The k of a topk or bottomk step; 0 when the step selects nothing.
fn step_k(param: f64) -> usize {
    usize::try_from(param as i64).unwrap_or(0)
}

/// topk and bottomk of `expr` over a range, evaluated a part of its series at a time: every
/// group keeps its candidates per step across the parts, and of the input series only the
/// labels stay.
fn select_k_in_parts(
    ev: &mut Evaluator,
    op: u16,
    expr: &Expr,
    mut groups: Groups,
    params: &[f64],
    g: Grid,
) -> Result<Vec<StepSeries>, QueryError> {
    let n = g.len();
    let less: ValueOrder = if op == T_BOTTOMK { by_reverse_value } else { by_value };
    let ks: Vec<usize> = (0..n).map(|i| step_k(params.get(i).copied().unwrap_or(f64::NAN))).collect();
    // Group-major: the heap of group `gi` at step `i` is `heaps[gi * n + i]`.
    let mut heaps: Vec<GoHeap<ValueOrder>> = Vec::new();
    let mut inputs: Vec<(Labels, bool)> = Vec::new();
    let collected = eval_grouped_in_parts(ev, expr, &mut groups, g, |gi, s| {
        if heaps.len() < (gi + 1) * n {
            heaps.resize_with((gi + 1) * n, || GoHeap { items: Vec::new(), less });
        }
        let series = inputs.len();
        for p in &s.points {
            let i = g.index(p.t);
            if ks[i] > 0 {
                offer_k(&mut heaps[gi * n + i], op, ks[i], Held { series, v: p.v });
            }
        }
        inputs.push((s.labels, s.drop_name));
    })?;
    if let Some(whole) = collected {
        return select_k(ev, op, &whole, &groups, params, g);
    }
    let mut out: Vec<Vec<Point>> = vec![Vec::new(); inputs.len()];
    for i in 0..n {
        for gi in 0..groups.labels.len() {
            let heap = &mut heaps[gi * n + i];
            sort_candidates(heap);
            for h in &heap.items {
                out[h.series].push(Point { t: g.ts(i), v: h.v });
            }
        }
    }
    Ok(inputs
        .into_iter()
        .zip(out)
        .filter(|(_, points)| !points.is_empty())
        .map(|((labels, drop_name), points)| StepSeries { labels, drop_name, points })
        .collect())
}

/// topk, bottomk, limitk and limit_ratio: keep some input series per group and step.
fn select_k(
    ev: &mut Evaluator,
    op: u16,
    input: &[StepSeries],
    groups: &Groups,
    params: &[f64],
    g: Grid,
) -> Result<Vec<StepSeries>, QueryError> {
    let less: ValueOrder = if op == T_BOTTOMK { by_reverse_value } else { by_value };
    let mut heaps: Vec<GoHeap<ValueOrder>> =
        (0..groups.labels.len()).map(|_| GoHeap { items: Vec::new(), less }).collect();
    let mut seen = vec![false; groups.labels.len()];
    let mut cursor = vec![0usize; input.len()];
    let mut out: Vec<Vec<Point>> = vec![Vec::new(); input.len()];
    // For instant queries the output order is the groups' order and the heap order within.
    let mut order: Vec<usize> = Vec::new();
    for i in 0..g.len() {
        if i % 256 == 0 {
            ev.check_deadline()?;
        }
        let ts = g.ts(i);
        let param = params.get(i).copied().unwrap_or(f64::NAN);
        seen.iter_mut().for_each(|s| *s = false);
        heaps.iter_mut().for_each(|h| h.items.clear());
        let mut k = 0usize;
        let mut ratio = 0.0;
        match op {
            T_LIMIT_RATIO => {
                if param == 0.0 {
                    advance(&mut cursor, input, ts);
                    continue;
                }
                ratio = param.clamp(-1.0, 1.0);
            }
            _ => {
                let kk = (param as i64).min(input.len() as i64);
                if kk < 1 {
                    advance(&mut cursor, input, ts);
                    continue;
                }
                k = kk as usize;
            }
        }
        for (si, s) in input.iter().enumerate() {
            let Some(p) = s.points.get(cursor[si]) else { continue };
            if p.t != ts {
                continue;
            }
            cursor[si] += 1;
            let gi = groups.of_series[si];
            let h = Held { series: si, v: p.v };
            let heap = &mut heaps[gi];
            if !seen[gi] {
                seen[gi] = true;
                match op {
                    T_LIMIT_RATIO => {
                        if ratio_keeps(ratio, &s.labels) {
                            heap.push(h);
                        }
                    }
                    _ => heap.push(h),
                }
                continue;
            }
            match op {
                T_TOPK | T_BOTTOMK => offer_k(heap, op, k, h),
                T_LIMITK => {
                    if heap.items.len() < k {
                        heap.push(h);
                    }
                }
                _ => {
                    if ratio_keeps(ratio, &s.labels) {
                        heap.push(h);
                    }
                }
            }
        }
        for (gi, heap) in heaps.iter_mut().enumerate() {
            if !seen[gi] {
                continue;
            }
            if matches!(op, T_TOPK | T_BOTTOMK) {
                sort_candidates(heap);
            }
            for h in &heap.items {
                out[h.series].push(Point { t: ts, v: h.v });
                if g.is_instant() {
                    order.push(h.series);
                }
            }
        }
    }
    let mut series: Vec<Option<StepSeries>> = input
        .iter()
        .zip(out)
        .map(|(s, points)| Some(StepSeries { labels: s.labels.clone(), drop_name: s.drop_name, points }))
        .collect();
    if g.is_instant() {
        Ok(order.into_iter().filter_map(|i| series[i].take()).collect())
    } else {
        Ok(series.into_iter().flatten().filter(|s| !s.points.is_empty()).collect())
    }
}

/// Skips the points at `ts` of all series.
fn advance(cursor: &mut [usize], input: &[StepSeries], ts: i64) {
    for (c, s) in cursor.iter_mut().zip(input) {
        if s.points.get(*c).is_some_and(|p| p.t == ts) {
            *c += 1;
        }
    }
}

fn count_values(
    ev: &mut Evaluator,
    input: &[StepSeries],
    label: &str,
    without: bool,
    mut grouping: Vec<String>,
    g: Grid,
) -> Result<Vec<StepSeries>, QueryError> {
    if !without {
        grouping.push(label.to_string());
        grouping.sort();
    }
    let mut without_names = grouping.clone();
    without_names.push(METRIC_NAME.into());
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<StepSeries> = Vec::new();
    // Per output series: its count at the current step; `touched` lists those counted.
    let mut count: Vec<f64> = Vec::new();
    let mut touched: Vec<usize> = Vec::new();
    let mut cursor = vec![0usize; input.len()];
    for i in 0..g.len() {
        if i % 256 == 0 {
            ev.check_deadline()?;
        }
        let ts = g.ts(i);
        for (si, s) in input.iter().enumerate() {
            let Some(p) = s.points.get(cursor[si]) else { continue };
            if p.t != ts {
                continue;
            }
            cursor[si] += 1;
            let metric = set_label(&s.labels, label, &format_f(p.v));
            let group = if without { remove_labels(&metric, &without_names) } else { keep_labels(&metric, &grouping) };
            let next = out.len();
            let idx = *index.entry(group.clone()).or_insert(next);
            if idx == next {
                out.push(StepSeries { labels: group, drop_name: false, points: Vec::new() });
                count.push(0.0);
            }
            if count[idx] == 0.0 {
                touched.push(idx);
            }
            count[idx] += 1.0;
        }
        for idx in touched.drain(..) {
            out[idx].points.push(Point { t: ts, v: count[idx] });
            count[idx] = 0.0;
        }
    }
    Ok(out.into_iter().filter(|s| !s.points.is_empty()).collect())
}
