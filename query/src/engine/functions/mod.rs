//! PromQL functions on floats.

mod date;
mod histogram;
mod info;
mod labels;
mod range;

use std::cmp::Ordering;

use promql_parser::parser::{Call, Expr};
use strata_tsdb::labels::{Labels, METRIC_NAME};

use super::eval::Evaluator;
use super::types::{Grid, Point, StepSeries, Val};
use super::QueryError;

use range::RangeFn;

pub(crate) fn eval_call(ev: &mut Evaluator, call: &Call, g: Grid) -> Result<Val, QueryError> {
    let name = call.func.name;
    // Prometheus ignores parentheses around function arguments.
    let args: Vec<&Expr> = call.args.args.iter().map(|a| strip_parens(a)).collect();
    if let Some(f) = RangeFn::from_name(name) {
        return range::eval(ev, call, f, &args, g);
    }
    match name {
        "time" => Ok(Val::Scalar((0..g.len()).map(|i| g.ts(i) as f64 / 1000.0).collect())),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; g.len()])),
        // The query's own bounds and step, in seconds.
        "start" | "end" | "range" | "step" => {
            let (start, end, step) = ev.query_bounds();
            let v = match name {
                "start" => start,
                "end" => end,
                "range" => end - start,
                _ => step,
            };
            Ok(Val::Scalar(vec![v as f64 / 1000.0; g.len()]))
        }
        "min_of" | "max_of" => {
            let a = scalar_arg(ev, args.first(), g)?;
            let b = scalar_arg(ev, args.get(1), g)?;
            let f = if name == "min_of" { go_min } else { go_max };
            Ok(Val::Scalar(a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect()))
        }
        "vector" => {
            let v = scalar_arg(ev, args.first(), g)?;
            let points = v.iter().enumerate().map(|(i, &v)| Point { t: g.ts(i), v }).collect();
            Ok(Val::Vector(vec![StepSeries { labels: Labels::empty(), drop_name: false, points }]))
        }
        "scalar" => {
            let input = vector_arg(ev, args.first(), g)?;
            let mut count = vec![0u32; g.len()];
            let mut value = vec![f64::NAN; g.len()];
            for p in input.iter().flat_map(|s| &s.points) {
                let i = g.index(p.t);
                count[i] += 1;
                value[i] = p.v;
            }
            Ok(Val::Scalar(count.iter().zip(value).map(|(&c, v)| if c == 1 { v } else { f64::NAN }).collect()))
        }
        "absent" => {
            let input = vector_arg(ev, args.first(), g)?;
            let mut present = vec![false; g.len()];
            for p in input.iter().flat_map(|s| &s.points) {
                present[g.index(p.t)] = true;
            }
            let points: Vec<Point> =
                (0..g.len()).filter(|&i| !present[i]).map(|i| Point { t: g.ts(i), v: 1.0 }).collect();
            if points.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            let labels = args.first().map_or_else(Labels::empty, |a| absent_labels(a));
            Ok(Val::Vector(vec![StepSeries { labels, drop_name: false, points }]))
        }
        "timestamp" => {
            let mut out = match args.first() {
                Some(Expr::VectorSelector(vs)) => ev.eval_vector_selector(vs, g, true)?,
                _ => {
                    let mut input = vector_arg(ev, args.first(), g)?;
                    for s in &mut input {
                        s.points.iter_mut().for_each(|p| p.v = p.t as f64 / 1000.0);
                    }
                    input
                }
            };
            out.iter_mut().for_each(|s| s.drop_name = true);
            Ok(Val::Vector(out))
        }
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
            let mut input = vector_arg(ev, args.first(), g)?;
            if ev.range_query {
                let pos = ev.positions().call(call).map(|p| p.start);
                ev.warn("sort is ineffective for range queries since results are always ordered by labels", pos);
            }
            if g.is_instant() {
                match name {
                    "sort" => input.sort_by(|a, b| value_order(first_value(a), first_value(b), false)),
                    "sort_desc" => input.sort_by(|a, b| value_order(first_value(a), first_value(b), true)),
                    _ => {
                        let names = args.iter().skip(1).map(|a| string_arg(a)).collect::<Result<Vec<_>, _>>()?;
                        let desc = name == "sort_by_label_desc";
                        input.sort_by(|a, b| {
                            let o = label_order(&a.labels, &b.labels, &names);
                            if desc {
                                o.reverse()
                            } else {
                                o
                            }
                        });
                    }
                }
            }
            Ok(Val::Vector(input))
        }
        "info" => info::info(ev, call, &args, g),
        "label_replace" => labels::label_replace(ev, &args, g),
        "label_join" => labels::label_join(ev, &args, g),
        "histogram_quantile" => histogram::histogram_quantile(ev, call, &args, g),
        "histogram_quantiles" => histogram::histogram_quantiles(ev, call, &args, g),
        "histogram_fraction" => histogram::histogram_fraction(ev, call, &args, g),
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev" | "histogram_stdvar" => {
            // These read native histogram samples only and skip floats; native histograms are
            // rejected when selected, so what reaches here yields nothing, as in Prometheus.
            vector_arg(ev, args.first(), g)?;
            Ok(Val::Vector(Vec::new()))
        }
        "round" => {
            let input = vector_arg(ev, args.first(), g)?;
            let to_nearest = match args.get(1) {
                Some(a) => scalar_arg(ev, Some(a), g)?,
                None => vec![1.0; g.len()],
            };
            Ok(Val::Vector(map_points(input, |p| {
                // Rounding via the inverse is what Prometheus does (fewer float surprises).
                let inv = 1.0 / to_nearest[g.index(p.t)];
                Some((p.v * inv + 0.5).floor() / inv)
            })))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let input = vector_arg(ev, args.first(), g)?;
            let a = scalar_arg(ev, args.get(1), g)?;
            let (lo, hi) = match name {
                "clamp" => (a, scalar_arg(ev, args.get(2), g)?),
                "clamp_min" => (a, vec![f64::INFINITY; g.len()]),
                _ => (vec![f64::NEG_INFINITY; g.len()], a),
            };
            Ok(Val::Vector(map_points(input, |p| {
                let i = g.index(p.t);
                if hi[i] < lo[i] {
                    None
                } else {
                    Some(go_max(lo[i], go_min(hi[i], p.v)))
                }
            })))
        }
        _ => {
            if let Some(f) = math_function(name) {
                let input = vector_arg(ev, args.first(), g)?;
                return Ok(Val::Vector(map_points(input, |p| Some(f(p.v)))));
            }
            if let Some(f) = date::function(name) {
                return date::eval(ev, f, args.first().copied(), g);
            }
            Err(QueryError::Unsupported(format!("function \"{name}\" is not supported")))
        }
    }
}

/// Functions each of whose result series comes from one series of their one vector or range
/// argument, with its labels (bar the metric name).
pub(crate) fn is_per_series(name: &str) -> bool {
    matches!(name, "round" | "clamp" | "clamp_min" | "clamp_max" | "timestamp")
        || math_function(name).is_some()
        || date::function(name).is_some()
        || range::RangeFn::from_name(name).is_some_and(|f| !matches!(f, range::RangeFn::AbsentOverTime))
}

pub(crate) fn strip_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip_parens(&p.expr),
        e => e,
    }
}

pub(crate) fn scalar_arg(ev: &mut Evaluator, e: Option<&&Expr>, g: Grid) -> Result<Vec<f64>, QueryError> {
    match e {
        Some(e) => match ev.eval(e, g)? {
            Val::Scalar(v) => Ok(v),
            other => Err(QueryError::Execution(format!("expected scalar argument, got {}", other.type_name()))),
        },
        None => Err(QueryError::Execution("missing scalar argument".into())),
    }
}

pub(crate) fn vector_arg(ev: &mut Evaluator, e: Option<&&Expr>, g: Grid) -> Result<Vec<StepSeries>, QueryError> {
    match e {
        Some(e) => match ev.eval(e, g)? {
            Val::Vector(v) => Ok(v),
            other => Err(QueryError::Execution(format!("expected instant vector argument, got {}", other.type_name()))),
        },
        None => Err(QueryError::Execution("missing instant vector argument".into())),
    }
}

pub(crate) fn string_arg(e: &Expr) -> Result<String, QueryError> {
    match strip_parens(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => Err(QueryError::Execution("expected string argument".into())),
    }
}

/// Applies `f` to every point; the results drop the metric name. A `None` drops the point.
fn map_points(input: Vec<StepSeries>, f: impl Fn(&Point) -> Option<f64>) -> Vec<StepSeries> {
    input
        .into_iter()
        .filter_map(|mut s| {
            s.points = s.points.iter().filter_map(|p| f(p).map(|v| Point { t: p.t, v })).collect();
            s.drop_name = true;
            (!s.points.is_empty()).then_some(s)
        })
        .collect()
}

/// Go's `math.Max`: NaN wins.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn math_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

fn first_value(s: &StepSeries) -> f64 {
    s.points.first().map_or(f64::NAN, |p| p.v)
}

/// Ascending (or descending) by value, NaN last either way.
fn value_order(a: f64, b: f64, desc: bool) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// `sort_by_label` order: the named labels in natural order, then the whole label set.
fn label_order(a: &Labels, b: &Labels, names: &[String]) -> Ordering {
    for n in names {
        let (x, y) = (a.get(n).unwrap_or(""), b.get(n).unwrap_or(""));
        if x == y {
            continue;
        }
        return if natural_less(x, y) { Ordering::Less } else { Ordering::Greater };
    }
    a.cmp(b)
}

/// Splits into alternating runs of digits and non-digits.
fn chunks(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let b = s.as_bytes();
    for i in 1..=b.len() {
        if i == b.len() || b[i].is_ascii_digit() != b[i - 1].is_ascii_digit() {
            if start < i {
                out.push(&s[start..i]);
            }
            start = i;
        }
    }
    out
}

/// Natural ordering as the natsort package Prometheus uses: digit runs compare as numbers.
fn natural_less(a: &str, b: &str) -> bool {
    let (ca, cb) = (chunks(a), chunks(b));
    for (i, x) in ca.iter().enumerate() {
        let Some(y) = cb.get(i) else { return false };
        let last_a = i == ca.len() - 1;
        let last_b = i == cb.len() - 1;
        match (x.parse::<i64>(), y.parse::<i64>()) {
            (Ok(nx), Ok(ny)) if nx == ny => {}
            (Ok(nx), Ok(ny)) => return nx < ny,
            _ if x == y => {}
            _ => return x < y,
        }
        if last_a {
            return true;
        }
        if last_b {
            return false;
        }
    }
    false
}

/// The labels `absent()` reports: those a selector pins with a single equality matcher.
pub(crate) fn absent_labels(e: &Expr) -> Labels {
    let vs = match strip_parens(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut set: Vec<(String, String)> = Vec::new();
    let mut has: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == promql_parser::label::MatchOp::Equal && !has.contains(&m.name.as_str()) {
            set.retain(|(n, _)| n != &m.name);
            set.push((m.name.clone(), m.value.clone()));
            has.push(&m.name);
        } else {
            set.retain(|(n, _)| n != &m.name);
        }
    }
    Labels::from_pairs(&set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        assert!(natural_less("a2", "a10"));
        assert!(!natural_less("a10", "a2"));
        assert!(natural_less("abc", "abd"));
        assert!(natural_less("1", "1a"));
    }
}
