//! Binary operators: arithmetic, comparisons (with and without `bool`), `atan2`, and the set
//! operators `and`, `or`, `unless`, with `on`/`ignoring`, `group_left`/`group_right` and fill
//! modifiers.
//!
//! Vector matching is decided per step, as in Prometheus (duplicates only matter when they
//! coexist at a step), but signatures and result label sets are computed once per series.

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD, T_MUL, T_NEQ, T_POW,
    T_SUB,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use strata_tsdb::labels::{Labels, METRIC_NAME};

use super::eval::Evaluator;
use super::types::{keep_labels, pairs, remove_labels, signature_on, signature_without, Grid, Point, StepSeries, Val};
use super::{QueryError, DUPLICATE_LABELSET};

type TokenId = u16;

pub(crate) fn eval(ev: &mut Evaluator, b: &BinaryExpr, g: Grid) -> Result<Val, QueryError> {
    let op = b.op.id();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, g)?;
    let rhs = ev.eval(&b.rhs, g)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let v = l.iter().zip(&r).map(|(&a, &b)| scalar_binop(op, a, b)).collect::<Result<_, _>>()?;
            Ok(Val::Scalar(v))
        }
        (Val::Vector(l), Val::Scalar(r)) => Ok(Val::Vector(vector_scalar(op, l, &r, false, return_bool, g)?)),
        (Val::Scalar(l), Val::Vector(r)) => Ok(Val::Vector(vector_scalar(op, r, &l, true, return_bool, g)?)),
        (Val::Vector(l), Val::Vector(r)) => {
            let m = Matching::from_expr(b);
            if matches!(op, T_LAND | T_LOR | T_LUNLESS) {
                Ok(Val::Vector(set_op(ev, op, l, r, &m, g)?))
            } else {
                Ok(Val::Vector(vector_vector(ev, op, l, r, &m, return_bool, g)?))
            }
        }
        (l, r) => Err(QueryError::Execution(format!(
            "binary operator not allowed between {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic operators change what a series measures, so they drop the metric name.
fn changes_metric_schema(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD | T_ATAN2)
}

fn b2f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn scalar_binop(op: TokenId, l: f64, r: f64) -> Result<f64, QueryError> {
    Ok(match op {
        T_ADD => l + r,
        T_SUB => l - r,
        T_MUL => l * r,
        T_DIV => l / r,
        T_POW => l.powf(r),
        T_MOD => l % r,
        T_ATAN2 => l.atan2(r),
        T_EQLC => b2f(l == r),
        T_NEQ => b2f(l != r),
        T_GTR => b2f(l > r),
        T_LSS => b2f(l < r),
        T_GTE => b2f(l >= r),
        T_LTE => b2f(l <= r),
        _ => return Err(QueryError::Execution("operator not allowed for scalar operations".into())),
    })
}

/// The value of `l op r` and whether a comparison holds (always true for arithmetic).
fn elem_binop(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (scalar_binop(op, l, r)?, true),
    })
}

/// `vector op scalar`, or `scalar op vector` when `swap`.
fn vector_scalar(
    op: TokenId,
    series: Vec<StepSeries>,
    scalar: &[f64],
    swap: bool,
    return_bool: bool,
    g: Grid,
) -> Result<Vec<StepSeries>, QueryError> {
    let cmp = is_comparison(op);
    let mut out = Vec::with_capacity(series.len());
    for mut s in series {
        let mut points = Vec::with_capacity(s.points.len());
        for p in &s.points {
            let sv = scalar[g.index(p.t)];
            let (l, r) = if swap { (sv, p.v) } else { (p.v, sv) };
            let (mut v, mut keep) = elem_binop(op, l, r)?;
            // A comparison always yields the vector's value, whichever side it is on.
            if cmp && swap {
                v = r;
            }
            if return_bool {
                v = b2f(keep);
                keep = true;
            }
            if keep {
                points.push(Point { t: p.t, v });
            }
        }
        if !points.is_empty() {
            if changes_metric_schema(op) || return_bool {
                s.drop_name = true;
            }
            s.points = points;
            out.push(s);
        }
    }
    Ok(out)
}

/// How two vectors are matched.
pub(crate) struct Matching {
    card: Card,
    /// `on(...)` rather than `ignoring(...)`.
    on: bool,
    names: Vec<String>,
    /// `group_left(...)`/`group_right(...)` labels copied from the "one" side.
    include: Vec<String>,
    fill_lhs: Option<f64>,
    fill_rhs: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

impl Matching {
    fn from_expr(b: &BinaryExpr) -> Matching {
        let mut m = Matching {
            card: Card::OneToOne,
            on: false,
            names: Vec::new(),
            include: Vec::new(),
            fill_lhs: None,
            fill_rhs: None,
        };
        if let Some(modifier) = &b.modifier {
            match &modifier.card {
                VectorMatchCardinality::ManyToOne(l) => {
                    m.card = Card::ManyToOne;
                    m.include = l.labels.clone();
                }
                VectorMatchCardinality::OneToMany(l) => {
                    m.card = Card::OneToMany;
                    m.include = l.labels.clone();
                }
                VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany => {}
            }
            match &modifier.matching {
                Some(LabelModifier::Include(l)) => {
                    m.on = true;
                    m.names = l.labels.clone();
                }
                Some(LabelModifier::Exclude(l)) => m.names = l.labels.clone(),
                None => {}
            }
            m.fill_lhs = modifier.fill_values.lhs;
            m.fill_rhs = modifier.fill_values.rhs;
        }
        m.names.sort();
        m
    }

    fn signature(&self, labels: &Labels, buf: &mut Vec<u8>) {
        if self.on {
            signature_on(labels, &self.names, buf)
        } else {
            signature_without(labels, &self.names, buf)
        }
    }

    /// The labels a fill value stands in with: those the matching looks at.
    fn match_labels(&self, labels: &Labels) -> Labels {
        if self.on {
            keep_labels(labels, &self.names)
        } else {
            let mut names = self.names.clone();
            names.push(METRIC_NAME.to_string());
            remove_labels(labels, &names)
        }
    }

    /// Result labels of a match: the "many" side's labels, without the metric name for
    /// arithmetic, reduced to the matching labels for one-to-one, plus the included labels of
    /// the "one" side.
    fn result_labels(&self, op: TokenId, many: &Labels, one: &Labels) -> Labels {
        let mut p: Vec<(&str, &str)> = pairs(many);
        if changes_metric_schema(op) {
            p.retain(|(n, _)| !matches!(*n, METRIC_NAME | "__type__" | "__unit__"));
        }
        if self.card == Card::OneToOne {
            if self.on {
                p.retain(|(n, _)| self.names.iter().any(|k| k == n));
            } else {
                p.retain(|(n, _)| !self.names.iter().any(|k| k == n));
            }
        }
        for name in &self.include {
            p.retain(|(n, _)| n != name);
            if let Some(v) = one.get(name) {
                p.push((name.as_str(), v));
            }
        }
        p.sort_by(|a, b| a.0.cmp(b.0));
        Labels::from_sorted_unchecked(p)
    }
}

/// Signature ordinals of both sides' series: equal ordinals match.
fn signature_ordinals(m: &Matching, lhs: &[StepSeries], rhs: &[StepSeries]) -> (Vec<usize>, Vec<usize>, usize) {
    let mut ids: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut buf = Vec::new();
    let mut ordinals = |side: &[StepSeries]| -> Vec<usize> {
        side.iter()
            .map(|s| {
                m.signature(&s.labels, &mut buf);
                let next = ids.len();
                *ids.entry(buf.clone()).or_insert(next)
            })
            .collect()
    };
    let l = ordinals(lhs);
    let r = ordinals(rhs);
    let n = ids.len();
    (l, r, n)
}

/// Walks the grid and hands, per step, the indices and values of the series present.
struct StepCursor {
    pos: Vec<usize>,
}

impl StepCursor {
    fn new(n: usize) -> Self {
        StepCursor { pos: vec![0; n] }
    }

    fn gather(&mut self, series: &[StepSeries], ts: i64, out: &mut Vec<(usize, f64)>) {
        out.clear();
        for (i, s) in series.iter().enumerate() {
            let c = &mut self.pos[i];
            if let Some(p) = s.points.get(*c) {
                if p.t == ts {
                    out.push((i, p.v));
                    *c += 1;
                }
            }
        }
    }
}

fn set_op(
    ev: &mut Evaluator,
    op: TokenId,
    lhs: Vec<StepSeries>,
    rhs: Vec<StepSeries>,
    m: &Matching,
    g: Grid,
) -> Result<Vec<StepSeries>, QueryError> {
    let (lsig, rsig, nsig) = signature_ordinals(m, &lhs, &rhs);
    let mut lout: Vec<Vec<Point>> = vec![Vec::new(); lhs.len()];
    let mut rout: Vec<Vec<Point>> = vec![Vec::new(); rhs.len()];
    // Step number (+1) at which a signature was last seen, so nothing is cleared per step.
    let mut seen_at = vec![0usize; nsig];
    let (mut lc, mut rc) = (StepCursor::new(lhs.len()), StepCursor::new(rhs.len()));
    let (mut lv, mut rv) = (Vec::new(), Vec::new());
    for i in 0..g.len() {
        if i % 1024 == 0 {
            ev.check_deadline()?;
        }
        let ts = g.ts(i);
        lc.gather(&lhs, ts, &mut lv);
        rc.gather(&rhs, ts, &mut rv);
        let mark = i + 1;
        match op {
            T_LAND | T_LUNLESS => {
                for &(j, _) in &rv {
                    seen_at[rsig[j]] = mark;
                }
                let want = op == T_LAND;
                for &(j, v) in &lv {
                    if (seen_at[lsig[j]] == mark) == want {
                        lout[j].push(Point { t: ts, v });
                    }
                }
            }
            _ => {
                for &(j, v) in &lv {
                    seen_at[lsig[j]] = mark;
                    lout[j].push(Point { t: ts, v });
                }
                for &(j, v) in &rv {
                    if seen_at[rsig[j]] != mark {
                        rout[j].push(Point { t: ts, v });
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(lhs.len() + rhs.len());
    for (s, points) in lhs.into_iter().zip(lout).chain(rhs.into_iter().zip(rout)) {
        if !points.is_empty() {
            out.push(StepSeries { labels: s.labels, drop_name: s.drop_name, points });
        }
    }
    Ok(out)
}

/// Collects result points by result labels, rejecting two points with the same labels at one
/// step.
struct Output {
    index: HashMap<Labels, usize>,
    series: Vec<StepSeries>,
}

impl Output {
    fn new() -> Self {
        Output { index: HashMap::new(), series: Vec::new() }
    }

    fn push_to(&mut self, idx: usize, t: i64, v: f64) -> Result<(), QueryError> {
        let points = &mut self.series[idx].points;
        if points.last().is_some_and(|p| p.t == t) {
            return Err(QueryError::Execution(DUPLICATE_LABELSET.into()));
        }
        points.push(Point { t, v });
        Ok(())
    }

    fn slot(&mut self, labels: Labels, drop_name: bool) -> usize {
        let next = self.series.len();
        let idx = *self.index.entry(labels.clone()).or_insert(next);
        if idx == next {
            self.series.push(StepSeries { labels, drop_name, points: Vec::new() });
        }
        idx
    }
}

/// State of a vector-to-vector operation across steps.
struct Join<'m> {
    op: TokenId,
    m: &'m Matching,
    return_bool: bool,
    /// One-to-many, evaluated with the sides swapped so that the left is always "many".
    swapped: bool,
    out: Output,
    /// Per signature: the step stamp when it was last matched.
    matched_at: Vec<usize>,
    /// Per signature (many-to-one): result slots already produced at that step.
    used_slots: Vec<Vec<usize>>,
}

impl Join<'_> {
    /// Combines a "many" and a "one" value matched on `sig` at step `mark` into `slot`.
    fn apply(
        &mut self,
        sig: usize,
        mark: usize,
        slot: usize,
        many_v: f64,
        one_v: f64,
        ts: i64,
    ) -> Result<(), QueryError> {
        let (l, r) = if self.swapped { (one_v, many_v) } else { (many_v, one_v) };
        let (mut v, keep) = elem_binop(self.op, l, r)?;
        if self.return_bool {
            v = b2f(keep);
        }
        if self.m.card == Card::OneToOne {
            if self.matched_at[sig] == mark {
                return Err(QueryError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .into(),
                ));
            }
        } else {
            if self.matched_at[sig] != mark {
                self.used_slots[sig].clear();
            }
            if self.used_slots[sig].contains(&slot) {
                return Err(QueryError::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches".into(),
                ));
            }
            self.used_slots[sig].push(slot);
        }
        self.matched_at[sig] = mark;
        if keep || self.return_bool {
            self.out.push_to(slot, ts, v)?;
        }
        Ok(())
    }

    fn slot(&mut self, many: &Labels, one: &Labels) -> usize {
        let labels = self.m.result_labels(self.op, many, one);
        self.out.slot(labels, self.return_bool)
    }
}

fn vector_vector(
    ev: &mut Evaluator,
    op: TokenId,
    lhs: Vec<StepSeries>,
    rhs: Vec<StepSeries>,
    m: &Matching,
    return_bool: bool,
    g: Grid,
) -> Result<Vec<StepSeries>, QueryError> {
    let (lsig, rsig, nsig) = signature_ordinals(m, &lhs, &rhs);
    let swapped = m.card == Card::OneToMany;
    let (many, one, many_sig, one_sig) = if swapped { (&rhs, &lhs, &rsig, &lsig) } else { (&lhs, &rhs, &lsig, &rsig) };
    // As in Prometheus, the fill sides do not follow the swap: the right fill stands in for a
    // missing "one" sample, the left fill for a missing "many" sample.
    let (fill_many, fill_one) = (m.fill_lhs, m.fill_rhs);

    let mut join = Join {
        op,
        m,
        return_bool,
        swapped,
        out: Output::new(),
        matched_at: vec![0; nsig],
        used_slots: vec![Vec::new(); nsig],
    };
    // Result slot per (many series, one series) pair; computed once.
    let mut pair_slot: HashMap<(usize, usize), usize> = HashMap::new();
    // Per signature: the "one" side's sample at this step, stamped with the step.
    let mut one_at: Vec<(usize, usize, f64)> = vec![(0, 0, 0.0); nsig];
    let (mut mc, mut oc) = (StepCursor::new(many.len()), StepCursor::new(one.len()));
    let (mut mv, mut ov) = (Vec::new(), Vec::new());

    for i in 0..g.len() {
        if i % 1024 == 0 {
            ev.check_deadline()?;
        }
        let ts = g.ts(i);
        mc.gather(many, ts, &mut mv);
        oc.gather(one, ts, &mut ov);
        if (mv.is_empty() && ov.is_empty())
            || ((mv.is_empty() || ov.is_empty()) && fill_many.is_none() && fill_one.is_none())
        {
            continue;
        }
        let mark = i + 1;
        for &(j, v) in &ov {
            let sig = one_sig[j];
            if one_at[sig].0 == mark {
                return Err(duplicate_error(m, swapped, &one[j].labels, &one[one_at[sig].1].labels));
            }
            one_at[sig] = (mark, j, v);
        }
        for &(j, v) in &mv {
            let sig = many_sig[j];
            let slot = if one_at[sig].0 == mark {
                let o = one_at[sig].1;
                match pair_slot.get(&(j, o)) {
                    Some(&s) => s,
                    None => {
                        let s = join.slot(&many[j].labels, &one[o].labels);
                        pair_slot.insert((j, o), s);
                        s
                    }
                }
            } else if fill_one.is_some() {
                join.slot(&many[j].labels, &m.match_labels(&many[j].labels))
            } else {
                continue;
            };
            let one_v = if one_at[sig].0 == mark { one_at[sig].2 } else { fill_one.unwrap_or(f64::NAN) };
            join.apply(sig, mark, slot, v, one_v, ts)?;
        }
        if let Some(f) = fill_many {
            for &(j, v) in &ov {
                let sig = one_sig[j];
                if join.matched_at[sig] == mark {
                    continue;
                }
                let slot = join.slot(&m.match_labels(&one[j].labels), &one[j].labels);
                join.apply(sig, mark, slot, f, v, ts)?;
            }
        }
    }
    Ok(join.out.series.into_iter().filter(|s| !s.points.is_empty()).collect())
}

fn duplicate_error(m: &Matching, swapped: bool, a: &Labels, b: &Labels) -> QueryError {
    let side = if swapped { "left" } else { "right" };
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    QueryError::Execution(format!(
        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{first}, {second}];many-to-many matching not allowed: matching labels must be unique on one side",
        m.match_labels(a)
    ))
}
