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

fn apply(f: DateFn, secs: i64) -> f64 {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (match f {
        DateFn::DaysInMonth => days_in_month(y, m),
        DateFn::DayOfMonth => d,
        // 1970-01-01 was a Thursday (weekday 4, Sunday being 0).
        DateFn::DayOfWeek => (days + 4).rem_euclid(7),
        DateFn::DayOfYear => days - days_from_civil(y, 1, 1) + 1,
        DateFn::Hour => rem / 3600,
        DateFn::Minute => rem % 3600 / 60,
        DateFn::Month => m,
        DateFn::Year => y,
    }) as f64
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    }
}
