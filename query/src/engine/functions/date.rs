//! Calendar functions (UTC): `year()`, `month()`, `day_of_month()`, …

use promql_parser::parser::Expr;
use strata_tsdb::labels::Labels;

use super::vector_arg;
use crate::engine::eval::Evaluator;
use crate::engine::types::{Grid, Point, StepSeries, Val};
use crate::engine::QueryError;

#[derive(Clone, Copy)]
pub(crate) enum DateFn {
    DaysInMonth,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    Hour,
    Minute,
    Month,
    Year,
}

pub(crate) fn function(name: &str) -> Option<DateFn> {
    Some(match name {
        "days_in_month" => DateFn::DaysInMonth,
        "day_of_month" => DateFn::DayOfMonth,
        "day_of_week" => DateFn::DayOfWeek,
        "day_of_year" => DateFn::DayOfYear,
        "hour" => DateFn::Hour,
        "minute" => DateFn::Minute,
        "month" => DateFn::Month,
        "year" => DateFn::Year,
        _ => return None,
    })
}

/// Without an argument the function reads the evaluation time; with one, each sample's value as
/// Unix seconds.
pub(crate) fn eval(ev: &mut Evaluator, f: DateFn, arg: Option<&Expr>, g: Grid) -> Result<Val, QueryError> {
    match arg {
        None => {
            // Go's integer division truncates toward zero.
            let points = (0..g.len()).map(|i| Point { t: g.ts(i), v: apply(f, g.ts(i) / 1000) }).collect();
            Ok(Val::Vector(vec![StepSeries { labels: Labels::empty(), drop_name: false, points }]))
        }
        Some(a) => {
            let mut input = vector_arg(ev, Some(&a), g)?;
            for s in &mut input {
                s.drop_name = true;
                s.points.iter_mut().for_each(|p| p.v = apply(f, go_float_to_int(p.v)));
            }
            Ok(Val::Vector(input))
        }
    }
}

/// Go's float64 → int64 conversion on amd64: out-of-range values and NaN become the minimum.
fn go_float_to_int(v: f64) -> i64 {
    if v.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

/// Seconds from Go's absolute zero time (a Monday in year -292277022399) to the Unix epoch.
const UNIX_TO_ABSOLUTE: u64 = 9_223_372_028_715_321_600;
const ABSOLUTE_ZERO_YEAR: i64 = -292_277_022_399;
const DAYS_PER_400_YEARS: u64 = 365 * 400 + 97;
const DAYS_PER_100_YEARS: u64 = 365 * 100 + 24;
const DAYS_PER_4_YEARS: u64 = 365 * 4 + 1;
/// Days before each month in a non-leap year.
const DAYS_BEFORE: [u64; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];

/// A calendar field of Unix second `secs`, computed as Go's `time` package does it (which
/// Prometheus uses): on unsigned seconds since Go's absolute zero, so values beyond Go's time
/// range wrap around exactly as they do in Prometheus (e.g. `year(vector(NaN))`).
fn apply(f: DateFn, secs: i64) -> f64 {
    let abs = (secs as u64).wrapping_add(UNIX_TO_ABSOLUTE);
    let mut d = abs / 86_400;
    let mut n = d / DAYS_PER_400_YEARS;
    let mut y = 400 * n;
    d -= DAYS_PER_400_YEARS * n;
    n = d / DAYS_PER_100_YEARS;
    n -= n >> 2;
    y += 100 * n;
    d -= DAYS_PER_100_YEARS * n;
    n = d / DAYS_PER_4_YEARS;
    y += 4 * n;
    d -= DAYS_PER_4_YEARS * n;
    n = d / 365;
    n -= n >> 2;
    y += n;
    d -= 365 * n;
    let year = (y as i64).wrapping_add(ABSOLUTE_ZERO_YEAR);
    let yday = d;
    let (month, day) = month_day(year, yday);
    let second_of_day = abs % 86_400;
    (match f {
        DateFn::DaysInMonth => days_in_month(year, month),
        DateFn::DayOfMonth => day,
        // The absolute zero day is a Monday (weekday 1, Sunday being 0).
        DateFn::DayOfWeek => ((abs + 86_400) % 604_800 / 86_400) as i64,
        DateFn::DayOfYear => yday as i64 + 1,
        DateFn::Hour => (second_of_day / 3600) as i64,
        DateFn::Minute => (second_of_day % 3600 / 60) as i64,
        DateFn::Month => month,
        DateFn::Year => year,
    }) as f64
}

/// Month (1-12) and day of month of the 0-based day of the year.
fn month_day(year: i64, yday: u64) -> (i64, i64) {
    let mut day = yday;
    if is_leap(year) {
        if day == 31 + 29 - 1 {
            return (2, 29);
        }
        if day > 31 + 29 - 1 {
            day -= 1;
        }
    }
    // Guess assuming 31-day months; the guess is low by at most one.
    let mut month = (day / 31) as usize;
    let begin = if day >= DAYS_BEFORE[month + 1] {
        month += 1;
        DAYS_BEFORE[month]
    } else {
        DAYS_BEFORE[month]
    };
    (month as i64 + 1, (day - begin + 1) as i64)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        // 2024-02-29T13:45:00Z
        let t = 1_709_214_300;
        assert_eq!(apply(DateFn::Year, t), 2024.0);
        assert_eq!(apply(DateFn::Month, t), 2.0);
        assert_eq!(apply(DateFn::DayOfMonth, t), 29.0);
        assert_eq!(apply(DateFn::DaysInMonth, t), 29.0);
        assert_eq!(apply(DateFn::DayOfYear, t), 60.0);
        assert_eq!(apply(DateFn::DayOfWeek, t), 4.0);
        assert_eq!(apply(DateFn::Hour, t), 13.0);
        assert_eq!(apply(DateFn::Minute, t), 45.0);
        assert_eq!(apply(DateFn::Year, -1), 1969.0);
        assert_eq!(apply(DateFn::DayOfWeek, 0), 4.0);
        assert_eq!(apply(DateFn::DayOfYear, 0), 1.0);
        assert_eq!(apply(DateFn::DayOfMonth, 951_782_400), 29.0); // 2000-02-29
        assert_eq!(apply(DateFn::Month, 951_868_800), 3.0); // 2000-03-01
    }

    #[test]
    fn wraps_like_go_beyond_its_time_range() {
        // Go's time.Unix(math.MinInt64, 0) is 292277026596-12-04T15:30:08Z.
        let t = go_float_to_int(f64::NAN);
        assert_eq!(apply(DateFn::Year, t), 292_277_026_596.0);
        assert_eq!(apply(DateFn::Month, t), 12.0);
        assert_eq!(apply(DateFn::DayOfMonth, t), 4.0);
        assert_eq!(apply(DateFn::Hour, t), 15.0);
        assert_eq!(apply(DateFn::Minute, t), 30.0);
    }
}
