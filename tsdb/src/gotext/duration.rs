//! Durations as Prometheus reads them (`model.ParseDuration`: `15d`, `1h30m`, `500ms`) and as
//! Go prints them (`time.Duration.String`: `1h0m0s`, `1.5s`, `250ms`).
//!
//! Prometheus's grammar is the one every duration Strata reads is written in: command-line
//! flags (`--tsdb.retention`, `--query.timeout`), PromQL (`[5m]`, `offset 1h`), the HTTP API's
//! `step` and `timeout` when not a number, and the objstore YAML (`idle_conn_timeout: 90s`,
//! `model.Duration` fields in Thanos's bucket configs).

use std::fmt::Write as _;
use std::time::Duration;

use super::quote::quote;

/// Nanoseconds per unit, largest first: a term's unit must come after the previous term's.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000_000_000),
    ("w", 7 * 24 * 3_600_000_000_000),
    ("d", 24 * 3_600_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
];

/// Why [`parse_duration`] refused a string; the messages are Prometheus's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration string")]
    Empty,
    #[error("not a valid duration string: {}", quote(.0))]
    Invalid(String),
    #[error("unknown unit {} in duration {}", quote(.unit), quote(.duration))]
    UnknownUnit { unit: String, duration: String },
    /// Longer than Go's `time.Duration` holds (about 292 years).
    #[error("duration out of range")]
    OutOfRange,
}

/// A `model.Duration` field of a YAML or JSON config, for `#[serde(deserialize_with)]`: an
/// empty string is no duration.
pub fn deserialize_model_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    // A visitor (rather than parsing a deserialized String) makes the parser attach the
    // value's own line and field path to the error.
    struct ModelDuration;
    impl serde::de::Visitor<'_> for ModelDuration {
        type Value = Option<Duration>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration such as \"1m30s\", \"2m\" or \"500ms\"")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            if s.is_empty() {
                return Ok(None);
            }
            parse_duration(s).map(Some).map_err(E::custom)
        }
    }
    d.deserialize_str(ModelDuration)
}

/// Prometheus's `model.ParseDuration`: one or more `<digits><unit>` terms with units `y` (365
/// days), `w`, `d`, `h`, `m`, `s`, `ms`, largest first and each at most once, e.g. `1h30m`;
/// `0` alone is zero. No sign, no fractions, no spaces. The total must fit Go's nanosecond
/// `time.Duration` (at most 2^63 - 1 ns).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    match s {
        "0" => return Ok(Duration::ZERO),
        "" => return Err(DurationError::Empty),
        _ => {}
    }
    let invalid = || DurationError::Invalid(s.to_owned());
    let mut rest = s;
    let mut total: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        // More than 20 digits overflow u64, which Go reports as an invalid string.
        let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        // The unit runs to the next digit; digits are ASCII, so both ends are char boundaries.
        let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        if unit_len == 0 {
            return Err(invalid());
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let index = UNITS
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(|| DurationError::UnknownUnit { unit: unit.to_owned(), duration: s.to_owned() })?;
        if index < next_unit {
            return Err(invalid());
        }
        next_unit = index + 1;
        let per_unit = UNITS[index].1;
        if value > (1 << 63) / per_unit {
            return Err(DurationError::OutOfRange);
        }
        // Both terms are at most 2^63, so the sum cannot wrap.
        total += value * per_unit;
        if total > i64::MAX as u64 {
            return Err(DurationError::OutOfRange);
        }
    }
    Ok(Duration::from_nanos(total))
}

/// Prometheus's `model.Duration.String` of `ms` milliseconds, as rule files and the rules
/// pages write durations: `0s`, else whole years and weeks only when nothing is left over,
/// then days, hours, minutes, seconds and milliseconds that are not zero (`1m`, `1h30m`,
/// `90d`, `1s500ms`). Negative spans are written as zero terms, as Go's code does.
pub fn format_model_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut left = ms;
    let mut out = String::new();
    for (unit, mult, exact) in [
        ("y", 365 * 24 * 3_600_000, true),
        ("w", 7 * 24 * 3_600_000, true),
        ("d", 24 * 3_600_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1_000, false),
        ("ms", 1, false),
    ] {
        if exact && left % mult != 0 {
            continue;
        }
        let v = left / mult;
        if v > 0 {
            let _ = write!(out, "{v}{unit}");
            left -= v * mult;
        }
    }
    out
}

/// Go's `time.Duration.String` of a span of `nanos` nanoseconds: `0s`; under a second in the
/// largest of `ns`, `µs`, `ms` with a fraction (`1.5ms`); otherwise hours and minutes only
/// when not zero and above, then seconds with up to nine fraction digits (`2h0m0.001s`,
/// `1m30s`, `1.5s`). Exact for every Go duration; longer spans (which overflow Go's int64)
/// go on counting hours.
pub fn format_duration(nanos: i128) -> String {
    let mut out = String::new();
    if nanos < 0 {
        out.push('-');
    }
    let mut u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (digits, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let fraction = split_fraction(&mut u, digits);
        let _ = write!(out, "{u}{fraction}{unit}");
        return out;
    }
    let fraction = split_fraction(&mut u, 9);
    let (hours, minutes, seconds) = (u / 3600, u / 60 % 60, u % 60);
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if u >= 60 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(out, "{seconds}{fraction}s");
    out
}

/// Divides `v` by 10^digits and returns the remainder as Go's `fmtFrac` writes it: `.` and the
/// digits without trailing zeros, or nothing when the remainder is zero.
fn split_fraction(v: &mut u128, digits: u32) -> String {
    let scale = 10u128.pow(digits);
    let fraction = *v % scale;
    *v /= scale;
    if fraction == 0 {
        return String::new();
    }
    let text = format!(".{fraction:0width$}", width = digits as usize);
    text.trim_end_matches('0').to_owned()
}

#[cfg(test)]
mod tests {

    #[test]
    fn model_durations_as_prometheus_prints_them() {
        for (ms, want) in [
            (0, "0s"),
            (60_000, "1m"),
            (5_400_000, "1h30m"),
            (90 * 86_400_000, "90d"),
            (14 * 86_400_000, "2w"),
            (365 * 86_400_000, "1y"),
            (1_500, "1s500ms"),
            (8 * 86_400_000, "8d"),
        ] {
            assert_eq!(format_model_duration(ms), want, "{ms}");
        }
    }

    use super::*;

    /// Expected values are what `model.ParseDuration` of prometheus/common v0.74 returns.
    #[test]
    fn parses_like_prometheus() {
        for (s, nanos) in [
            ("0", 0),
            ("0s", 0),
            ("15d", 1_296_000_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1m30s", 90_000_000_000),
            ("500ms", 500_000_000),
            ("1m1s1ms", 61_001_000_000),
            ("2w", 1_209_600_000_000_000),
            ("1y", 31_536_000_000_000_000),
            ("292y", 9_208_512_000_000_000_000),
            ("106751d", 9_223_286_400_000_000_000),
            ("9223372036854ms", 9_223_372_036_854_000_000),
            ("2562047h47m16s854ms", 9_223_372_036_854_000_000),
        ] {
            assert_eq!(parse_duration(s), Ok(Duration::from_nanos(nanos)), "{s}");
        }
    }

    #[test]
    fn refuses_like_prometheus() {
        for (s, message) in [
            ("", "empty duration string"),
            ("1", "not a valid duration string: \"1\""),
            ("h", "not a valid duration string: \"h\""),
            ("00", "not a valid duration string: \"00\""),
            ("-1h", "not a valid duration string: \"-1h\""),
            ("5m1h", "not a valid duration string: \"5m1h\""),
            ("1d1d", "not a valid duration string: \"1d1d\""),
            ("99999999999999999999s", "not a valid duration string: \"99999999999999999999s\""),
            ("1x", "unknown unit \"x\" in duration \"1x\""),
            ("5y1hs", "unknown unit \"hs\" in duration \"5y1hs\""),
            ("1.5h", "unknown unit \".\" in duration \"1.5h\""),
            ("1µs", "unknown unit \"µs\" in duration \"1µs\""),
            ("1m\u{e9}", "unknown unit \"m\u{e9}\" in duration \"1m\u{e9}\""),
            ("1m\n", "unknown unit \"m\\n\" in duration \"1m\\n\""),
            ("300y", "duration out of range"),
            ("106752d", "duration out of range"),
            ("9223372036855ms", "duration out of range"),
            ("2562047h47m16s855ms", "duration out of range"),
        ] {
            assert_eq!(parse_duration(s).map_err(|e| e.to_string()), Err(message.to_owned()), "{s:?}");
        }
    }

    /// Expected values are what Go's `time.Duration.String` prints.
    #[test]
    fn formats_like_go() {
        for (nanos, want) in [
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_000, "1µs"),
            (1_100, "1.1µs"),
            (1_000_000, "1ms"),
            (1_500_000, "1.5ms"),
            (15_000_000, "15ms"),
            (999_000_000, "999ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (61_000_000_000, "1m1s"),
            (90_500_000_000, "1m30.5s"),
            (300_000_000_000, "5m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (7_200_000_000_000, "2h0m0s"),
            (7_200_001_000_000, "2h0m0.001s"),
            (6_390_001_000_000, "1h46m30.001s"),
            (4_380_010_000_000, "1h13m0.01s"),
            (360_000_000_000_001, "100h0m0.000000001s"),
            (-1_500_000_000, "-1.5s"),
            (-5_000_000, "-5ms"),
            (i128::from(i64::MAX), "2562047h47m16.854775807s"),
            (i128::from(i64::MIN), "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(format_duration(nanos), want, "{nanos}");
        }
        // Past Go's range the hours go on.
        assert_eq!(format_duration(i128::from(i64::MAX) * 2), "5124095h34m33.709551614s");
    }
}
