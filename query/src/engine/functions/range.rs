//! Functions over range vectors (`rate`, `*_over_time`, …).
//!
//! Each series is walked once across the grid with a sliding window; the function runs once per
//! step on the window's samples. Series are spread over cores when there are many.

use std::borrow::Cow;
use std::sync::Mutex;

use promql_parser::parser::{Call, Expr};
use strata_tsdb::gotext::{format_percent_f, quote};
use strata_tsdb::labels::METRIC_NAME;

use super::{absent_labels, scalar_arg};
use crate::engine::aggregate::{kahan_inc, quantile, quantile_warning};
use crate::engine::eval::{Evaluator, Extended, RangeInput};
use crate::engine::extended::{extend_floats, extended_rate};
use crate::engine::types::{Grid, Point, StepSeries, Val};
use crate::engine::QueryError;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RangeFn {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Deriv,
    PredictLinear,
    Changes,
    Resets,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    LastOverTime,
    FirstOverTime,
    PresentOverTime,
    AbsentOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
    MadOverTime,
    TsOfMinOverTime,
    TsOfMaxOverTime,
    TsOfFirstOverTime,
    TsOfLastOverTime,
    DoubleExponentialSmoothing,
}

impl RangeFn {
    pub fn from_name(name: &str) -> Option<RangeFn> {
        use RangeFn::*;
        Some(match name {
            "rate" => Rate,
            "increase" => Increase,
            "delta" => Delta,
            "irate" => Irate,
            "idelta" => Idelta,
            "deriv" => Deriv,
            "predict_linear" => PredictLinear,
            "changes" => Changes,
            "resets" => Resets,
            "avg_over_time" => AvgOverTime,
            "sum_over_time" => SumOverTime,
            "count_over_time" => CountOverTime,
            "min_over_time" => MinOverTime,
            "max_over_time" => MaxOverTime,
            "last_over_time" => LastOverTime,
            "first_over_time" => FirstOverTime,
            "present_over_time" => PresentOverTime,
            "absent_over_time" => AbsentOverTime,
            "stddev_over_time" => StddevOverTime,
            "stdvar_over_time" => StdvarOverTime,
            "quantile_over_time" => QuantileOverTime,
            "mad_over_time" => MadOverTime,
            "ts_of_min_over_time" => TsOfMinOverTime,
            "ts_of_max_over_time" => TsOfMaxOverTime,
            "ts_of_first_over_time" => TsOfFirstOverTime,
            "ts_of_last_over_time" => TsOfLastOverTime,
            "double_exponential_smoothing" => DoubleExponentialSmoothing,
            _ => return None,
        })
    }

    /// Position of the range-vector argument.
    fn matrix_arg(self) -> usize {
        if self == RangeFn::QuantileOverTime {
            1
        } else {
            0
        }
    }

    /// `last_over_time` and `first_over_time` act like an offset and keep the metric name.
    fn drops_name(self) -> bool {
        !matches!(self, RangeFn::LastOverTime | RangeFn::FirstOverTime)
    }
}

/// The samples of one series that one window reads, and the evaluation context.
pub(crate) struct Window<'w> {
    /// The samples in the window; for an extended selector also those read around it.
    pub t: &'w [i64],
    pub v: &'w [f64],
    /// Evaluation time of the step.
    pub ts: i64,
    /// The window is `(start, end]`.
    pub start: i64,
    pub end: i64,
    pub range: i64,
    /// Scalar arguments at this step.
    pub args: [f64; 2],
    /// How many of the samples are lower than their predecessor (counter resets).
    pub resets: usize,
}

pub(crate) fn eval(ev: &mut Evaluator, call: &Call, f: RangeFn, args: &[&Expr], g: Grid) -> Result<Val, QueryError> {
    use RangeFn::*;
    let m = f.matrix_arg();
    let mut scalars: Vec<Vec<f64>> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != m {
            scalars.push(scalar_arg(ev, Some(a), g)?);
        }
    }
    let Some(matrix) = args.get(m) else {
        return Err(QueryError::Execution("missing range vector argument".into()));
    };
    let wanted = match f {
        QuantileOverTime | PredictLinear => 1,
        DoubleExponentialSmoothing => 2,
        _ => 0,
    };
    if scalars.len() != wanted {
        return Err(QueryError::Execution(format!("wrong number of arguments to {}", call.func.name)));
    }
    let extended = match matrix {
        Expr::MatrixSelector(ms) => ev.extended(&ms.vs),
        _ => None,
    };
    if let Some(e) = extended {
        let allowed: &[&str] = match e {
            Extended::Anchored => &["changes", "delta", "increase", "rate", "resets"],
            Extended::Smoothed => &["delta", "increase", "rate"],
        };
        if !allowed.contains(&call.func.name) {
            return Err(QueryError::Execution(format!(
                "{} modifier can only be used with: {} - not with {}",
                e.name(),
                allowed.join(", "),
                call.func.name
            )));
        }
    }
    let input = ev.range_input(matrix, g)?;
    // The first invalid smoothing parameter met on a non-empty window (Prometheus fails then).
    let bad_factor: Mutex<Option<String>> = Mutex::new(None);

    let results = match f {
        Rate => run(ev, &input, &scalars, g, |w| change_rate(w, extended, true, true))?,
        Increase => run(ev, &input, &scalars, g, |w| change_rate(w, extended, true, false))?,
        Delta => run(ev, &input, &scalars, g, |w| change_rate(w, extended, false, false))?,
        Irate => run(ev, &input, &scalars, g, |w| instant_value(w, true))?,
        Idelta => run(ev, &input, &scalars, g, |w| instant_value(w, false))?,
        Deriv => run(ev, &input, &scalars, g, |w| (w.t.len() >= 2).then(|| linear_regression(w, w.t[0]).0))?,
        PredictLinear => run(ev, &input, &scalars, g, |w| {
            (w.t.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(w, w.ts);
                slope * w.args[0] + intercept
            })
        })?,
        Changes => run(ev, &input, &scalars, g, |w| {
            let v = counted_values(w, extended)?;
            let n = v.windows(2).filter(|p| p[0] != p[1] && !(p[0].is_nan() && p[1].is_nan())).count();
            Some(n as f64)
        })?,
        Resets => run(ev, &input, &scalars, g, |w| match extended {
            None => Some(w.resets as f64),
            Some(_) => Some(counted_values(w, extended)?.windows(2).filter(|p| p[1] < p[0]).count() as f64),
        })?,
        AvgOverTime => run(ev, &input, &scalars, g, |w| Some(avg(w.v)))?,
        SumOverTime => run(ev, &input, &scalars, g, |w| {
            let (mut sum, mut c) = (0.0, 0.0);
            for &v in w.v {
                (sum, c) = kahan_inc(v, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        })?,
        CountOverTime => run(ev, &input, &scalars, g, |w| Some(w.v.len() as f64))?,
        MinOverTime => run(ev, &input, &scalars, g, |w| Some(extreme(w, |cur, best| cur < best).1))?,
        MaxOverTime => run(ev, &input, &scalars, g, |w| Some(extreme(w, |cur, best| cur > best).1))?,
        TsOfMinOverTime => run(ev, &input, &scalars, g, |w| Some(extreme(w, |cur, best| cur <= best).0))?,
        TsOfMaxOverTime => run(ev, &input, &scalars, g, |w| Some(extreme(w, |cur, best| cur >= best).0))?,
        LastOverTime => run(ev, &input, &scalars, g, |w| w.v.last().copied())?,
        FirstOverTime => run(ev, &input, &scalars, g, |w| w.v.first().copied())?,
        TsOfFirstOverTime => run(ev, &input, &scalars, g, |w| w.t.first().map(|&t| t as f64 / 1000.0))?,
        TsOfLastOverTime => run(ev, &input, &scalars, g, |w| w.t.last().map(|&t| t as f64 / 1000.0))?,
        PresentOverTime | AbsentOverTime => run(ev, &input, &scalars, g, |_| Some(1.0))?,
        StddevOverTime => run(ev, &input, &scalars, g, |w| Some(variance(w.v).sqrt()))?,
        StdvarOverTime => run(ev, &input, &scalars, g, |w| Some(variance(w.v)))?,
        QuantileOverTime => run(ev, &input, &scalars, g, |w| Some(quantile(w.args[0], &mut w.v.to_vec())))?,
        MadOverTime => run(ev, &input, &scalars, g, |w| {
            // A NaN sample makes the result NaN rather than being sorted aside.
            if w.v.iter().any(|v| v.is_nan()) {
                return Some(f64::NAN);
            }
            let mut values = w.v.to_vec();
            let median = quantile(0.5, &mut values);
            let mut dev: Vec<f64> = w.v.iter().map(|v| (v - median).abs()).collect();
            Some(quantile(0.5, &mut dev))
        })?,
        DoubleExponentialSmoothing => run(ev, &input, &scalars, g, |w| {
            let (sf, tf) = (w.args[0], w.args[1]);
            let msg = if !(sf > 0.0 && sf < 1.0) {
                format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {}", format_percent_f(sf))
            } else if !(tf > 0.0 && tf < 1.0) {
                format!("invalid trend factor. Expected: 0 < tf < 1, got: {}", format_percent_f(tf))
            } else {
                return smooth(w.v, sf, tf);
            };
            if let Ok(mut bad) = bad_factor.lock() {
                bad.get_or_insert(msg);
            }
            None
        })?,
    };
    if let Some(msg) = bad_factor.into_inner().ok().flatten() {
        return Err(QueryError::BadData(msg));
    }
    if f == QuantileOverTime {
        // Prometheus warns at steps where the function ran, i.e. where some window had samples.
        let pos = ev.positions().call(call).and_then(|p| p.args.first().copied());
        let mut ran = vec![false; g.len()];
        for p in results.iter().flat_map(|r| &r.0) {
            ran[g.index(p.t)] = true;
        }
        for (i, &q) in scalars[0].iter().enumerate() {
            if ran[i] && (q.is_nan() || !(0.0..=1.0).contains(&q)) {
                ev.warn(&quantile_warning(q), pos);
            }
        }
    }

    let samples: usize = results.iter().map(|r| r.1).sum();
    ev.count_queryable(samples);

    if f == AbsentOverTime {
        let mut present = vec![false; g.len()];
        for p in results.iter().flat_map(|r| &r.0) {
            present[g.index(p.t)] = true;
        }
        let points: Vec<Point> = (0..g.len()).filter(|&i| !present[i]).map(|i| Point { t: g.ts(i), v: 1.0 }).collect();
        if points.is_empty() {
            return Ok(Val::Vector(Vec::new()));
        }
        return Ok(Val::Vector(vec![StepSeries { labels: absent_labels(matrix), drop_name: true, points }]));
    }

    if matches!(f, Rate | Increase) {
        let pos = ev.positions().call(call).and_then(|p| p.args.first().copied());
        for (i, r) in results.iter().enumerate() {
            let name = input.labels(i).get(METRIC_NAME).unwrap_or("");
            if !name.is_empty()
                && !r.0.is_empty()
                && !["_total", "_sum", "_count", "_bucket"].iter().any(|suffix| name.ends_with(suffix))
            {
                ev.info(
                    &format!(
                        "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {}",
                        quote(name)
                    ),
                    pos,
                );
            }
        }
    }

    let out = results
        .into_iter()
        .enumerate()
        .filter(|(_, r)| !r.0.is_empty())
        .map(|(i, (points, _))| StepSeries {
            labels: input.labels(i).clone(),
            drop_name: input.drop_name(i) || f.drops_name(),
            points,
        })
        .collect();
    Ok(Val::Vector(out))
}

/// Runs `k` on every non-empty window of every series: per series, the output points and how
/// many samples its windows held.
fn run<K>(
    ev: &mut Evaluator,
    input: &RangeInput,
    scalars: &[Vec<f64>],
    g: Grid,
    k: K,
) -> Result<Vec<(Vec<Point>, usize)>, QueryError>
where
    K: Fn(&Window) -> Option<f64> + Sync,
{
    ev.check_deadline()?;
    input.map_series(ev, g.len(), |t, v| run_series(t, v, input, scalars, g, &k))
}

fn run_series<K>(t: &[i64], v: &[f64], input: &RangeInput, scalars: &[Vec<f64>], g: Grid, k: &K) -> (Vec<Point>, usize)
where
    K: Fn(&Window) -> Option<f64>,
{
    let mut points = Vec::new();
    let mut samples = 0;
    // resets_upto[i]: decreases among samples 1..=i, so each window's count is one subtraction.
    let mut resets_upto = Vec::with_capacity(v.len());
    let mut n = 0usize;
    for (i, &x) in v.iter().enumerate() {
        if i > 0 && x < v[i - 1] {
            n += 1;
        }
        resets_upto.push(n);
    }
    let (mut lo, mut hi) = (0usize, 0usize);
    for i in 0..g.len() {
        let ts = g.ts(i);
        let end = input.window_end(ts);
        let start = end.saturating_sub(input.range);
        // The samples the window reads, which an extended selector's window reaches beyond.
        let (read_start, read_end) = input.read_bounds(start, end);
        // Window ends only move forward along the grid (or stay, with `@`).
        while hi < t.len() && t[hi] <= read_end {
            hi += 1;
        }
        while lo < hi && t[lo] <= read_start {
            lo += 1;
        }
        if lo == hi {
            continue;
        }
        samples += hi - lo;
        let w = Window {
            t: &t[lo..hi],
            v: &v[lo..hi],
            ts,
            start,
            end,
            range: input.range,
            args: [scalars.first().map_or(f64::NAN, |a| a[i]), scalars.get(1).map_or(f64::NAN, |a| a[i])],
            resets: resets_upto[hi - 1] - resets_upto[lo],
        };
        if let Some(v) = k(&w) {
            points.push(Point { t: ts, v });
        }
    }
    (points, samples)
}

/// `rate`, `increase` and `delta`: extrapolated, or from the values at the ends of an extended
/// window.
fn change_rate(w: &Window, extended: Option<Extended>, is_counter: bool, is_rate: bool) -> Option<f64> {
    match extended {
        None => extrapolated_rate(w, is_counter, is_rate),
        Some(e) => extended_rate(w.t, w.v, (w.start, w.end, w.range), e == Extended::Smoothed, is_counter, is_rate),
    }
}

/// The values `changes` and `resets` count over: the window's, or an anchored window's with the
/// value at its start first; `None` if an anchored window has no sample after its start.
fn counted_values<'w>(w: &Window<'w>, extended: Option<Extended>) -> Option<Cow<'w, [f64]>> {
    if extended.is_none() {
        return Some(Cow::Borrowed(w.v));
    }
    let points = extend_floats(w.t, w.v, w.start, w.end, false);
    (!points.is_empty()).then(|| Cow::Owned(points.iter().map(|p| p.v).collect()))
}

/// `rate`, `increase` and `delta`: the change over the window, corrected for counter resets
/// and extrapolated towards the window's edges as Prometheus does.
fn extrapolated_rate(w: &Window, is_counter: bool, is_rate: bool) -> Option<f64> {
    let n = w.v.len();
    if n < 2 {
        return None;
    }
    let (first_t, last_t) = (w.t[0], w.t[n - 1]);
    let mut result = w.v[n - 1] - w.v[0];
    if is_counter && w.resets > 0 {
        for p in w.v.windows(2) {
            if p[1] < p[0] {
                result += p[0];
            }
        }
    }
    let mut to_start = first_t.saturating_sub(w.start) as f64 / 1000.0;
    let mut to_end = w.end.saturating_sub(last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let average_gap = sampled / (n - 1) as f64;
    // Extrapolate to an edge only if a sample was due there; otherwise assume the series starts
    // or ends half a gap beyond its first or last sample.
    let threshold = average_gap * 1.1;
    if to_start >= threshold {
        to_start = average_gap / 2.0;
    }
    if is_counter && result > 0.0 && w.v[0] >= 0.0 {
        // A counter does not go below zero: do not extrapolate past where it would reach it.
        let to_zero = sampled * (w.v[0] / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = average_gap / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= w.range as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` and `idelta`: from the last two samples.
fn instant_value(w: &Window, is_rate: bool) -> Option<f64> {
    let n = w.v.len();
    if n < 2 {
        return None;
    }
    let (t0, t1, v0, v1) = (w.t[n - 2], w.t[n - 1], w.v[n - 2], w.v[n - 1]);
    let interval = t1 - t0;
    if interval == 0 {
        return None;
    }
    let mut result = v1;
    if !is_rate || v1 >= v0 || v1.is_nan() || v0.is_nan() {
        result = v1 - v0;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares slope and the intercept at `intercept_time`.
fn linear_regression(w: &Window, intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = w.v[0];
    let mut const_y = true;
    for (i, (&t, &y)) in w.t.iter().zip(w.v).enumerate() {
        if const_y && i > 0 && y != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(y, sy, cy);
        (sxy, cxy) = kahan_inc(x * y, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// Mean with compensated summation, switching to an incremental mean if the sum overflows.
fn avg(v: &[f64]) -> f64 {
    let (mut sum, mut count, mut mean, mut c) = (v[0], 1.0, 0.0, 0.0);
    let mut incremental = false;
    for &f in &v[1..] {
        count += 1.0;
        if !incremental {
            let (s, nc) = kahan_inc(f, sum, c);
            if !s.is_infinite() {
                (sum, c) = (s, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(f / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// Population variance (Welford with compensated sums).
fn variance(v: &[f64]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &f in v {
        count += 1.0;
        let delta = f - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (f - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// The time (seconds) and value of the sample `better` prefers; a NaN is always replaced.
fn extreme(w: &Window, better: impl Fn(f64, f64) -> bool) -> (f64, f64) {
    let (mut best, mut at) = (w.v[0], w.t[0]);
    for (&t, &v) in w.t.iter().zip(w.v) {
        if better(v, best) || best.is_nan() {
            best = v;
            at = t;
        }
    }
    (at as f64 / 1000.0, best)
}

/// Holt's double exponential smoothing with smoothing factor `sf` and trend factor `tf`.
fn smooth(v: &[f64], sf: f64, tf: f64) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let (mut s0, mut s1, mut b) = (0.0, v[0], v[1] - v[0]);
    for (i, &x) in v.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * x + (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, next);
    }
    Some(s1)
}
