//! Prometheus duration strings (`15d`, `1h30m`, `500ms`), as flags and configs spell them.

/// Parses a Prometheus duration (`model.ParseDuration`): one or more `<number><unit>` terms
/// with units `y` (365d), `w`, `d`, `h`, `m`, `s`, `ms`, largest first, each at most once; `0`
/// alone is zero. Returns milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if s == "0" {
        return Ok(0);
    }
    let bad = || format!("invalid duration {s:?}: expected terms like 15d, 2h, 1h30m, 500ms");
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total: i64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (i, unit, ms) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _))| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))
            .map(|(i, &(u, ms))| (i, u, ms))
            .next()
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
        next_unit = i + 1;
        total =
            n.checked_mul(ms).and_then(|v| total.checked_add(v)).ok_or_else(|| format!("duration {s:?} overflows"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn parses_prometheus_durations() {
        for (s, ms) in [
            ("0", 0),
            ("15d", 15 * 86_400_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("1m1s1ms", 61_001),
            ("2w", 14 * 86_400_000),
            ("1y", 365 * 86_400_000),
        ] {
            assert_eq!(parse_duration(s), Ok(ms), "{s}");
        }
        for bad in ["", "1", "h", "1x", "1m1h", "1h1h", "-1h", "1.5h", "99999999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
