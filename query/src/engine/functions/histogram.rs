//! `histogram_quantile` and `histogram_fraction` over classic histograms (series with an `le`
//! label per bucket).

use std::collections::HashMap;

use promql_parser::parser::{Call, Expr};
use strata_tsdb::gotext::{format_g, parse_float};
use strata_tsdb::labels::{Labels, METRIC_NAME};

use super::{scalar_arg, string_arg, vector_arg};
use crate::engine::aggregate::quantile_warning;
use crate::engine::eval::Evaluator;
use crate::engine::types::{set_label, Grid, Point, StepSeries, Val};
use crate::engine::QueryError;

const BUCKET_LABEL: &str = "le";

#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// Buckets of the same histogram (same labels but `le`), gathered per step.
struct Histograms {
    /// Per input series: its histogram and upper bound, or `None` if its `le` is unusable.
    of_series: Vec<Option<(usize, f64)>>,
    labels: Vec<Labels>,
    names: Vec<String>,
}

impl Histograms {
    fn new(ev: &mut Evaluator, input: &[StepSeries], pos: Option<usize>) -> Histograms {
        let mut ids: HashMap<Labels, usize> = HashMap::new();
        let mut labels = Vec::new();
        let mut names = Vec::new();
        let mut of_series = Vec::with_capacity(input.len());
        for s in input {
            let le = s.labels.get(BUCKET_LABEL).unwrap_or("");
            let name = s.labels.get(METRIC_NAME).unwrap_or("");
            let Ok(upper) = parse_float(le) else {
                ev.warn(
                    &format!(
                        "bucket label \"le\" is missing or has a malformed value of \"{le}\" for metric name \"{name}\""
                    ),
                    pos,
                );
                of_series.push(None);
                continue;
            };
            // Buckets belong together when all labels but `le` agree (the metric name included).
            let key = Labels::from_sorted_unchecked(s.labels.iter().filter(|(n, _)| *n != BUCKET_LABEL));
            let next = ids.len();
            let id = *ids.entry(key).or_insert(next);
            if id == next {
                labels.push(Labels::from_sorted_unchecked(
                    s.labels.iter().filter(|(n, _)| *n != BUCKET_LABEL && *n != METRIC_NAME),
                ));
                names.push(name.to_string());
            }
            of_series.push(Some((id, upper)));
        }
        Histograms { of_series, labels, names }
    }

    /// Calls `f` with each histogram's buckets at each step; collects the results.
    fn per_step(
        &self,
        input: &[StepSeries],
        g: Grid,
        mut f: impl FnMut(usize, usize, &mut Vec<Bucket>) -> Option<f64>,
    ) -> Vec<StepSeries> {
        let mut buckets: Vec<Vec<Bucket>> = vec![Vec::new(); self.labels.len()];
        let mut out: Vec<Vec<Point>> = vec![Vec::new(); self.labels.len()];
        let mut cursor = vec![0usize; input.len()];
        for i in 0..g.len() {
            let ts = g.ts(i);
            for (si, s) in input.iter().enumerate() {
                let Some(p) = s.points.get(cursor[si]) else { continue };
                if p.t != ts {
                    continue;
                }
                cursor[si] += 1;
                if let Some((h, upper)) = self.of_series[si] {
                    buckets[h].push(Bucket { upper, count: p.v });
                }
            }
            for (h, b) in buckets.iter_mut().enumerate() {
                if b.is_empty() {
                    continue;
                }
                if let Some(v) = f(h, i, b) {
                    out[h].push(Point { t: ts, v });
                }
                b.clear();
            }
        }
        self.labels
            .iter()
            .zip(out)
            .filter(|(_, p)| !p.is_empty())
            .map(|(l, points)| StepSeries { labels: l.clone(), drop_name: true, points })
            .collect()
    }
}

pub(crate) fn histogram_quantile(ev: &mut Evaluator, call: &Call, args: &[&Expr], g: Grid) -> Result<Val, QueryError> {
    let q = scalar_arg(ev, args.first(), g)?;
    let input = vector_arg(ev, args.get(1), g)?;
    let (q_pos, v_pos) = {
        let p = ev.positions().call(call);
        (p.and_then(|p| p.args.first().copied()), p.and_then(|p| p.args.get(1).copied()))
    };
    for &x in &q {
        if x.is_nan() || !(0.0..=1.0).contains(&x) {
            ev.warn(&quantile_warning(x), q_pos);
        }
    }
    let hist = Histograms::new(ev, &input, v_pos);
    let mut forced: Vec<usize> = Vec::new();
    let out = hist.per_step(&input, g, |h, i, b| {
        let (v, was_forced) = bucket_quantile(q[i], b);
        if was_forced && !forced.contains(&h) {
            forced.push(h);
        }
        Some(v)
    });
    report_forced(ev, &hist, forced, v_pos);
    Ok(Val::Vector(out))
}

/// `histogram_quantiles(v, label, q…)`: one output series per histogram and quantile, told
/// apart by `label`.
pub(crate) fn histogram_quantiles(ev: &mut Evaluator, call: &Call, args: &[&Expr], g: Grid) -> Result<Val, QueryError> {
    let input = vector_arg(ev, args.first(), g)?;
    let label = match args.get(1) {
        Some(a) => string_arg(a)?,
        None => return Err(QueryError::Execution("histogram_quantiles needs a label name".into())),
    };
    let positions: Vec<usize> = ev.positions().call(call).map(|p| p.args.clone()).unwrap_or_default();
    let mut qs = Vec::new();
    for (i, a) in args.iter().enumerate().skip(2) {
        let q = scalar_arg(ev, Some(a), g)?;
        for &x in &q {
            if x.is_nan() || !(0.0..=1.0).contains(&x) {
                ev.warn(&quantile_warning(x), positions.get(i).copied());
            }
        }
        qs.push(q);
    }
    let v_pos = positions.first().copied();
    let hist = Histograms::new(ev, &input, v_pos);
    let mut forced: Vec<usize> = Vec::new();
    let mut out: Vec<StepSeries> = Vec::new();
    for q in &qs {
        let per_hist = hist.per_step(&input, g, |h, i, b| {
            let (v, was_forced) = bucket_quantile(q[i], b);
            if was_forced && !forced.contains(&h) {
                forced.push(h);
            }
            Some(v)
        });
        // Each series' quantile label comes from its step values (constant per argument).
        for mut s in per_hist {
            let qv = s.points.first().map(|p| q[g.index(p.t)]).unwrap_or(f64::NAN);
            s.labels = set_label(&s.labels, &label, &format_open_metrics_float(qv));
            out.push(s);
        }
    }
    report_forced(ev, &hist, forced, v_pos);
    Ok(Val::Vector(out))
}

/// A float as OpenMetrics writes it: Go's shortest form, with `.0` added to whole numbers.
fn format_open_metrics_float(f: f64) -> String {
    let s = format_g(f);
    if f.is_finite() && !s.contains(['.', 'e']) {
        s + ".0"
    } else {
        s
    }
}

fn report_forced(ev: &mut Evaluator, hist: &Histograms, forced: Vec<usize>, pos: Option<usize>) {
    for h in forced {
        let msg = format!(
            "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name \"{}\"",
            hist.names[h]
        );
        ev.info(&msg, pos);
    }
}

pub(crate) fn histogram_fraction(ev: &mut Evaluator, call: &Call, args: &[&Expr], g: Grid) -> Result<Val, QueryError> {
    let lower = scalar_arg(ev, args.first(), g)?;
    let upper = scalar_arg(ev, args.get(1), g)?;
    let input = vector_arg(ev, args.get(2), g)?;
    let v_pos = ev.positions().call(call).and_then(|p| p.args.get(2).copied());
    let hist = Histograms::new(ev, &input, v_pos);
    Ok(Val::Vector(hist.per_step(&input, g, |_, i, b| Some(bucket_fraction(lower[i], upper[i], b)))))
}

fn sort_by_upper(b: &mut [Bucket]) {
    b.sort_by(|x, y| x.upper.partial_cmp(&y.upper).unwrap_or(std::cmp::Ordering::Equal));
}

/// Merges buckets with the same upper bound (the input is sorted).
fn coalesce(b: &mut Vec<Bucket>) {
    b.dedup_by(|next, prev| {
        if next.upper == prev.upper {
            prev.count += next.count;
            true
        } else {
            false
        }
    });
}

/// Makes cumulative counts non-decreasing; whether anything had to change.
fn ensure_monotonic(b: &mut [Bucket]) -> bool {
    let mut forced = false;
    let mut max = b[0].count;
    for x in b.iter_mut().skip(1) {
        if x.count > max {
            max = x.count;
        } else if x.count < max {
            x.count = max;
            forced = true;
        }
    }
    forced
}

/// Counts that differ from their predecessor only by float noise are set equal to it.
fn correct_precision_errors(b: &mut [Bucket], tolerance: f64) {
    let mut prev = b[0].count;
    for x in b.iter_mut().skip(1) {
        let delta = (x.count - prev).abs();
        if delta == 0.0 {
            continue;
        }
        if delta / x.count <= tolerance {
            x.count = prev;
        } else {
            prev = x.count;
        }
    }
}

/// The φ-quantile of a classic histogram, interpolating linearly within the bucket; whether
/// bucket counts had to be made monotonic.
pub(crate) fn bucket_quantile(q: f64, b: &mut Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    sort_by_upper(b);
    if b.last().is_none_or(|x| x.upper != f64::INFINITY) {
        return (f64::NAN, false);
    }
    coalesce(b);
    correct_precision_errors(b, 1e-12);
    let forced = ensure_monotonic(b);
    if b.len() < 2 {
        return (f64::NAN, false);
    }
    let observations = b[b.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, false);
    }
    let mut rank = q * observations;
    let i = b[..b.len() - 1].partition_point(|x| x.count < rank);
    if i == b.len() - 1 {
        return (b[b.len() - 2].upper, forced);
    }
    if i == 0 && b[0].upper <= 0.0 {
        return (b[0].upper, forced);
    }
    let (mut start, end, mut count) = (0.0, b[i].upper, b[i].count);
    if i > 0 {
        start = b[i - 1].upper;
        count -= b[i - 1].count;
        rank -= b[i - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

/// The fraction of observations between `lower` and `upper` in a classic histogram. The lowest
/// bucket starts at 0 if its upper bound is positive (else at -Inf); observations of the
/// unbounded buckets sit at their infinite end, so a bound inside them interpolates nothing.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, b: &mut Vec<Bucket>) -> f64 {
    sort_by_upper(b);
    if b.last().is_none_or(|x| x.upper != f64::INFINITY) {
        return f64::NAN;
    }
    coalesce(b);
    ensure_monotonic(b);
    let total = b[b.len() - 1].count;
    if total == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    // Rank (observations at or below) of a bound.
    let rank_of = |x: f64| -> f64 {
        let mut below = 0.0;
        for (i, bk) in b.iter().enumerate() {
            let lo = if i == 0 {
                if bk.upper > 0.0 {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            } else {
                b[i - 1].upper
            };
            let count = bk.count - below;
            if x <= lo {
                return below;
            }
            if x < bk.upper {
                return if lo == f64::NEG_INFINITY {
                    below + count
                } else if bk.upper == f64::INFINITY {
                    below
                } else {
                    below + count * (x - lo) / (bk.upper - lo)
                };
            }
            below = bk.count;
        }
        total
    };
    (rank_of(upper).min(total) - rank_of(lower).min(total)) / total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(v: &[(f64, f64)]) -> Vec<Bucket> {
        v.iter().map(|&(upper, count)| Bucket { upper, count }).collect()
    }

    #[test]
    fn quantile_interpolates() {
        let mut b = buckets(&[(0.0, 0.0), (2.0, 10.0), (4.0, 20.0), (6.0, 30.0), (f64::INFINITY, 30.0)]);
        assert_eq!(bucket_quantile(0.5, &mut b).0, 3.0);
    }

    #[test]
    fn fraction_cases() {
        let pos = [(1.0, 1.0), (2.0, 3.0), (3.0, 6.0), (f64::INFINITY, 100.0)];
        let neg = [(-3.0, 10.0), (-2.0, 12.0), (-1.0, 15.0), (f64::INFINITY, 100.0)];
        assert!((bucket_fraction(0.0, 1.5, &mut buckets(&pos)) - 0.02).abs() < 1e-12);
        assert!((bucket_fraction(-4.0, -2.0, &mut buckets(&neg)) - 0.02).abs() < 1e-12);
        assert!((bucket_fraction(f64::NEG_INFINITY, -1.5, &mut buckets(&neg)) - 0.135).abs() < 1e-12);
        assert!((bucket_fraction(400.0, f64::INFINITY, &mut buckets(&pos)) - 0.94).abs() < 1e-12);
        assert!((bucket_fraction(2.0, 5.0, &mut buckets(&pos)) - 0.03).abs() < 1e-12);
        assert_eq!(bucket_fraction(4.0, 5.0, &mut buckets(&pos)), 0.0);
        assert_eq!(bucket_fraction(0.0, 1.0, &mut buckets(&neg)), 0.0);
    }
}
