//! Go's text conventions that only PromQL needs, on top of [`strata_tsdb::gotext`] (quoting,
//! durations, numbers, floats): `%#U`, reading PromQL strings, number tokens and durations in
//! seconds.

use strata_tsdb::gotext::{self, is_print};
pub(crate) use strata_tsdb::gotext::{format_percent_f, quote, quote_bytes, quote_rune};

/// `%#U`: `U+0063 'c'`, without the character when it does not print.
pub(crate) fn unicode_name(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// The bytes a string token stands for. The lexer has checked its escapes; `\x` and octal
/// escapes give single bytes, so the result need not be UTF-8.
pub(crate) fn unquote(token: &str) -> Vec<u8> {
    let body = token.get(1..token.len().saturating_sub(1)).unwrap_or("");
    if token.starts_with('`') {
        return body.as_bytes().to_vec();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some(e) = chars.next() else { break };
        let simple = match e {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' | '\'' | '"' => Some(e as u8),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let (count, radix, byte) = match e {
            '0'..='7' => (2, 8, true),
            'x' => (2, 16, true),
            'u' => (4, 16, false),
            _ => (8, 16, false),
        };
        let mut value = if e.is_ascii_digit() { e.to_digit(8).unwrap_or(0) } else { 0 };
        for _ in 0..count {
            value = value * radix + chars.next().and_then(|d| d.to_digit(radix)).unwrap_or(0);
        }
        if byte {
            out.push(value as u8);
        } else {
            let mut buf = [0; 4];
            let c = char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER);
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

/// How Prometheus reads a number token: `strconv.ParseInt(s, 0, 64)` (decimal, octal with a
/// leading 0, hex), else `strconv.ParseFloat`, whose error is reported.
pub(crate) fn parse_number(s: &str) -> Result<f64, String> {
    if let Ok(v) = gotext::parse_int(s) {
        return Ok(v as f64);
    }
    gotext::parse_float(s).map_err(|e| e.to_string())
}

/// A PromQL duration in seconds: `model.ParseDuration`, then `time.Duration.Seconds`.
pub(crate) fn parse_duration(s: &str) -> Result<f64, String> {
    let d = gotext::parse_duration(s).map_err(|e| e.to_string())?;
    Ok(d.as_secs() as f64 + f64::from(d.subsec_nanos()) / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c\n\u{7f}\u{200b}é☺\u{10ffff}"), "\"a\\\"b\\\\c\\n\\x7f\\u200bé☺\\U0010ffff\"");
        assert_eq!(quote_rune('\''), "'\\''");
        assert_eq!(quote_rune('"'), "'\"'");
        assert_eq!(unicode_name('c'), "U+0063 'c'");
        assert_eq!(unicode_name('\n'), "U+000A");
        assert_eq!(format_percent_f(9_223_372_036_854_775_808.0), "9223372036854775808.000000");
        assert_eq!(format_percent_f(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn unquoting() {
        assert_eq!(unquote(r#""a\tb\x41\101\u00e9\U0001F600\"""#), "a\tbAAé😀\"".as_bytes());
        assert_eq!(unquote(r"'\xff'"), [0xff]);
        assert_eq!(unquote(r"`a\d`"), b"a\\d");
    }

    #[test]
    fn numbers() {
        for (s, v) in [
            ("0755", 493.0),
            ("0x1F", 31.0),
            ("1_000", 1000.0),
            ("08", 8.0),
            ("5.", 5.0),
            (".5", 0.5),
            ("1e3", 1000.0),
            ("0", 0.0),
            ("0x_1f", 31.0),
        ] {
            assert_eq!(parse_number(s), Ok(v), "{s}");
        }
        assert!(parse_number("Inf").unwrap().is_infinite());
        assert_eq!(parse_number("1e400"), Err("strconv.ParseFloat: parsing \"1e400\": value out of range".into()));
        assert_eq!(parse_number("0x"), Err("strconv.ParseFloat: parsing \"0x\": invalid syntax".into()));
        assert_eq!(
            parse_number("0xFFFFFFFFFFFFFFFFFF"),
            Err("strconv.ParseFloat: parsing \"0xFFFFFFFFFFFFFFFFFF\": invalid syntax".into())
        );
    }

    #[test]
    fn durations() {
        for (s, v) in [("5m", 300.0), ("1h30m", 5400.0), ("1m30ms", 60.03), ("0", 0.0), ("1y", 31_536_000.0)] {
            assert_eq!(parse_duration(s), Ok(v), "{s}");
        }
        for (s, e) in [
            ("5y1hs", "unknown unit \"hs\" in duration \"5y1hs\""),
            ("1.5h", "unknown unit \".\" in duration \"1.5h\""),
            ("5m1h", "not a valid duration string: \"5m1h\""),
            ("1d1d", "not a valid duration string: \"1d1d\""),
            ("99999999999999999999s", "not a valid duration string: \"99999999999999999999s\""),
            ("300y", "duration out of range"),
            ("", "empty duration string"),
        ] {
            assert_eq!(parse_duration(s), Err(e.into()), "{s}");
        }
    }
}
