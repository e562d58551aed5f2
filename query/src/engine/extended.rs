//! The `anchored` and `smoothed` modifiers (Prometheus's extended range selectors).
//!
//! An anchored range `(start, end]` also sees the last sample at or before `start` within the
//! lookback delta and takes it as the value at `start`; a smoothed one also sees the first
//! sample after `end` and interpolates linearly at both ends. `rate`, `increase` and `delta`
//! then take the difference of the values at the two ends, without extrapolation. A smoothed
//! instant selector interpolates between the samples around each evaluation time.

use super::types::{Grid, Point};

/// Linear interpolation at `t` between `(t1, y1)` and `(t2, y2)`; for a counter that went
/// down in between, from zero (the counter restarted).
fn interpolate((t1, y1): (i64, f64), (t2, y2): (i64, f64), t: i64, is_counter: bool) -> f64 {
    let y1 = if is_counter && y2 < y1 { 0.0 } else { y1 };
    y1 + (y2 - y1) * (t - t1) as f64 / (t2 - t1) as f64
}

/// The samples an extended window's ends come from: the last one at or before `start` (or
/// the first one), and the last one (smoothed: the first one at or after `end`, or the last).
/// `None` if no sample is after `start`.
fn ends(t: &[i64], start: i64, end: i64, smoothed: bool) -> Option<(usize, usize)> {
    let mut last = t.len().checked_sub(1)?;
    let first = t[..last].partition_point(|&x| x <= start).saturating_sub(1);
    if smoothed {
        last = t[..last].partition_point(|&x| x < end);
    }
    (t[last] > start).then_some((first, last))
}

/// The values at `start` and `end` of an extended window whose ends are samples `first` and
/// `last`.
fn end_values(
    t: &[i64],
    v: &[f64],
    (first, last): (usize, usize),
    start: i64,
    end: i64,
    smoothed: bool,
    is_counter: bool,
) -> (f64, f64) {
    let left = if smoothed && t[first] < start {
        interpolate((t[first], v[first]), (t[first + 1], v[first + 1]), start, is_counter)
    } else {
        v[first]
    };
    let right = if smoothed && last > 0 && t[last] > end {
        interpolate((t[last - 1], v[last - 1]), (t[last], v[last]), end, is_counter)
    } else {
        v[last]
    };
    (left, right)
}

/// The samples strictly inside `(start, end)` between the two ends.
fn inner(t: &[i64], (first, last): (usize, usize), start: i64, end: i64) -> std::ops::Range<usize> {
    let from = if t[first] <= start { first + 1 } else { first };
    let to = if t[last] >= end { last } else { last + 1 };
    from..to.max(from)
}

/// An extended window `(start, end]` as points: the values at `start` and `end` with the
/// samples between them, from the samples read around it (`t`, `v`). Empty if no sample is
/// after `start`.
pub(crate) fn extend_floats(t: &[i64], v: &[f64], start: i64, end: i64, smoothed: bool) -> Vec<Point> {
    let Some(ends) = ends(t, start, end, smoothed) else { return Vec::new() };
    // Whether the series is a counter is not known here.
    let (left, right) = end_values(t, v, ends, start, end, smoothed, false);
    let between = inner(t, ends, start, end);
    let mut out = Vec::with_capacity(between.len() + 2);
    out.push(Point { t: start, v: left });
    out.extend(between.map(|i| Point { t: t[i], v: v[i] }));
    out.push(Point { t: end, v: right });
    out
}

/// `rate`, `increase` and `delta` over an extended window `(start, end]` of `range`
/// milliseconds: the difference of the values at its ends, corrected for counter resets.
pub(crate) fn extended_rate(
    t: &[i64],
    v: &[f64],
    (start, end, range): (i64, i64, i64),
    smoothed: bool,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let ends = ends(t, start, end, smoothed)?;
    // Smoothed, the window needs a sample before its end as well.
    if smoothed && t[ends.0] > end {
        return None;
    }
    let (left, right) = end_values(t, v, ends, start, end, smoothed, is_counter);
    let mut result = right - left;
    if is_counter {
        // Resets at the ends are in the interpolated values already.
        let mut prev = left;
        for &x in &v[inner(t, ends, start, end)] {
            if x < prev {
                result += prev;
            }
            prev = x;
        }
        if right < prev {
            result += prev;
        }
    }
    if is_rate {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

/// A smoothed instant selector over one series (staleness markers dropped): at every step the
/// value interpolated between the samples before and after its reference time, within the
/// lookback delta either side; after the last sample, that sample's value. With
/// `sample_times`, the step's time (in seconds), which is the time of such a value.
pub(crate) fn smoothed_points(
    t: &[i64],
    v: &[f64],
    g: Grid,
    offset: i64,
    at: Option<i64>,
    lookback: i64,
    sample_times: bool,
) -> Vec<Point> {
    let mut out = Vec::new();
    for i in 0..g.len() {
        let ts = g.ts(i);
        let reference = at.unwrap_or(ts).saturating_sub(offset);
        let lo = t.partition_point(|&x| x <= reference.saturating_sub(lookback));
        let hi = t.partition_point(|&x| x <= reference.saturating_add(lookback));
        let next = lo + t[lo..hi].partition_point(|&x| x < reference);
        let value = if next < hi && t[next] == reference {
            v[next]
        } else if next > lo && next < hi {
            interpolate((t[next - 1], v[next - 1]), (t[next], v[next]), reference, false)
        } else if next > lo {
            v[next - 1]
        } else {
            continue;
        };
        out.push(Point { t: ts, v: if sample_times { ts as f64 / 1000.0 } else { value } });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(p: &[Point]) -> Vec<(i64, f64)> {
        p.iter().map(|p| (p.t, p.v)).collect()
    }

    #[test]
    fn anchored_windows_start_at_the_last_earlier_sample() {
        // 1 at 0s, 2 at 15s, … 5 at 60s; window (20s, 80s].
        let t: Vec<i64> = (0..5).map(|i| i * 15_000).collect();
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        let w = extend_floats(&t, &v, 20_000, 80_000, false);
        assert_eq!(points(&w), vec![(20_000, 2.0), (30_000, 3.0), (45_000, 4.0), (60_000, 5.0), (80_000, 5.0)]);
        assert_eq!(extended_rate(&t, &v, (20_000, 80_000, 60_000), false, true, false), Some(3.0));
        // Nothing after the window's start: no value.
        assert!(extend_floats(&t, &v, 60_000, 70_000, false).is_empty());
    }

    #[test]
    fn smoothed_windows_interpolate_their_ends() {
        // A counter reset between 100 at 0s and 10 at 15s; window (2s, 12s].
        let (t, v) = ([0, 15_000], [100.0, 10.0]);
        let rate = extended_rate(&t, &v, (2_000, 12_000, 10_000), true, true, true).unwrap();
        assert!((rate - 2.0 / 3.0).abs() < 1e-12, "{rate}");
        let g = Grid { start: 5_000, end: 20_000, step: 5_000 };
        let s = smoothed_points(&[0, 10_000], &[1.0, 2.0], g, 0, None, 300_000, false);
        assert_eq!(points(&s), vec![(5_000, 1.5), (10_000, 2.0), (15_000, 2.0), (20_000, 2.0)]);
    }
}
