//! Where the frontend cuts requests: range queries at interval boundaries on their step grid
//! (Thanos's `splitQuery`), label and series requests at interval boundaries, and the parts of
//! a cached piece still to be fetched.

/// The pieces `[start, end]` of a range query from `start` to `end` at `step` (milliseconds),
/// each within one `interval`: a piece ends on the last step before the next interval
/// boundary and the next starts one step later, so every step is in exactly one piece.
pub fn split_range(start: i64, end: i64, step: i64, interval: i64) -> Vec<(i64, i64)> {
    if start >= end || interval <= 0 || step <= 0 {
        return vec![(start, end)];
    }
    let mut pieces = Vec::new();
    let mut s = start;
    while s <= end {
        let mut e = last_step_before_boundary(s, step, interval);
        // As Thanos: a last step alone past the boundary stays with the piece before it.
        if e.saturating_add(step) >= end {
            e = end;
        }
        pieces.push((s, e));
        s = match e.checked_add(step) {
            Some(next) => next,
            None => break,
        };
    }
    pieces
}

/// The last time on `t`'s step grid before the interval boundary after `t` (Thanos's
/// `nextIntervalBoundary`).
fn last_step_before_boundary(t: i64, step: i64, interval: i64) -> i64 {
    let next_boundary = (t.div_euclid(interval) + 1).saturating_mul(interval);
    let target = next_boundary - (next_boundary - t) % step;
    if target == next_boundary {
        target - step
    } else {
        target
    }
}

/// `start` and `end` moved down to multiples of `step` (`--query-range.align-range-with-step`).
pub fn align_to_step(start: i64, end: i64, step: i64) -> (i64, i64) {
    (start - start.rem_euclid(step), end - end.rem_euclid(step))
}

/// The pieces of a label or series request from `start` to `end` (milliseconds, inclusive)
/// cut at multiples of `interval`.
pub fn split_times(start: i64, end: i64, interval: i64) -> Vec<(i64, i64)> {
    if start >= end || interval <= 0 {
        return vec![(start, end)];
    }
    let mut pieces = Vec::new();
    let mut s = start;
    while s <= end {
        let boundary = (s.div_euclid(interval) + 1).saturating_mul(interval);
        let e = (boundary - 1).min(end);
        pieces.push((s, e));
        if e == end {
            break;
        }
        s = boundary;
    }
    pieces
}

/// The stretches of `[start, end]` (on the step grid) not covered by `cached` (extents on the
/// same grid, as `(start, end)`), oldest first.
pub fn missing(start: i64, end: i64, step: i64, cached: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut covered: Vec<(i64, i64)> = cached.iter().copied().filter(|&(s, e)| s <= end && e >= start).collect();
    covered.sort_unstable();
    let mut out = Vec::new();
    let mut cursor = start;
    for (s, e) in covered {
        if s > cursor {
            let gap_end = (s - step).min(end);
            if gap_end >= cursor {
                out.push((cursor, gap_end));
            }
        }
        cursor = cursor.max(e.saturating_add(step));
        if cursor > end {
            return out;
        }
    }
    if cursor <= end {
        out.push((cursor, end));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const D: i64 = 24 * H;

    #[test]
    fn range_pieces_cover_every_step_once_within_a_day() {
        for (start, end, step) in
            [(D - 7 * H, 3 * D + 5 * H, 300_000), (5, 2 * D + 5, 7_000), (0, D, 60_000), (17, 17, 1000)]
        {
            let pieces = split_range(start, end, step, D);
            let mut steps = Vec::new();
            for (i, &(s, e)) in pieces.iter().enumerate() {
                assert_eq!((s - start) % step, 0);
                assert!(s <= e);
                if i + 1 < pieces.len() {
                    assert_eq!(s.div_euclid(D), e.div_euclid(D), "{pieces:?}");
                }
                let mut t = s;
                while t <= e {
                    steps.push(t);
                    t += step;
                }
            }
            let want: Vec<i64> = (0..).map(|i| start + i * step).take_while(|&t| t <= end).collect();
            if (end - start) % step == 0 {
                assert_eq!(steps, want);
            }
            assert_eq!(pieces.last().unwrap().1, end);
        }
        assert_eq!(split_range(0, 2 * D, D, D), vec![(0, 0), (D, 2 * D)]);
        assert_eq!(split_range(0, 3 * D, D, D), vec![(0, 0), (D, D), (2 * D, 3 * D)]);
    }

    #[test]
    fn alignment() {
        assert_eq!(align_to_step(1_234_567, 9_999_999, 60_000), (1_200_000, 9_960_000));
        assert_eq!(align_to_step(-1, 0, 1000), (-1000, 0));
    }

    #[test]
    fn label_pieces() {
        assert_eq!(split_times(D - 5, D + 5, D), vec![(D - 5, D - 1), (D, D + 5)]);
        assert_eq!(split_times(0, D, D), vec![(0, D - 1), (D, D)]);
        assert_eq!(split_times(3, 3, D), vec![(3, 3)]);
    }

    #[test]
    fn missing_parts() {
        assert_eq!(missing(0, 100, 10, &[]), vec![(0, 100)]);
        assert_eq!(missing(0, 100, 10, &[(0, 100)]), vec![]);
        assert_eq!(missing(0, 100, 10, &[(0, 60)]), vec![(70, 100)]);
        assert_eq!(missing(0, 100, 10, &[(30, 60)]), vec![(0, 20), (70, 100)]);
        assert_eq!(missing(0, 100, 10, &[(80, 200), (-50, 10)]), vec![(20, 70)]);
        assert_eq!(missing(50, 100, 10, &[(0, 20)]), vec![(50, 100)]);
    }
}
