//! Go's text conventions, which Prometheus's parse errors are written in: `strconv` quoting
//! (`%q`, `%#U`, `%f`), reading PromQL strings, numbers (`strconv.ParseInt`/`ParseFloat`) and
//! durations (`model.ParseDuration`).

use std::fmt::Write as _;

/// Go's `unicode.IsPrint`, closely: letters, marks, numbers, punctuation, symbols and the
/// ASCII space. Unassigned code points count as printable here, which Go would escape.
pub(crate) fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    // Format characters, non-characters and private use areas.
    !matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFDD0..=0xFDEF | 0xFEFF
        | 0xFFF9..=0xFFFB | 0xFFFE..=0xFFFF | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

fn push_escaped(out: &mut String, c: char, quote: char) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if is_print(c) {
        out.push(c);
        return;
    }
    let _ = match c {
        '\x07' => write!(out, "\\a"),
        '\x08' => write!(out, "\\b"),
        '\x0c' => write!(out, "\\f"),
        '\n' => write!(out, "\\n"),
        '\r' => write!(out, "\\r"),
        '\t' => write!(out, "\\t"),
        '\x0b' => write!(out, "\\v"),
        c if (c as u32) < 0x20 || c == '\x7f' => write!(out, "\\x{:02x}", c as u32),
        c if (c as u32) < 0x10000 => write!(out, "\\u{:04x}", c as u32),
        c => write!(out, "\\U{:08x}", c as u32),
    };
}

/// `%q` of a string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// `%q` of a rune.
pub(crate) fn quote_rune(c: char) -> String {
    let mut out = String::from('\'');
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

/// `%#U`: `U+0063 'c'`, without the character when it does not print.
pub(crate) fn unicode_name(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// `%f`.
pub(crate) fn format_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v:.6}")
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

/// Go's `underscoreOK`: `_` only between digits, or between a base prefix and a digit.
fn underscores_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let mut saw = b'^';
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    for &c in &b[i..] {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else if saw == b'_' {
            return false;
        } else {
            saw = b'!';
        }
    }
    saw != b'_'
}

/// `strconv.ParseInt(s, 0, 64)` for unsigned number tokens.
fn parse_int(s: &str) -> Option<i64> {
    let lower = s.to_ascii_lowercase();
    let (digits, radix) = if let Some(hex) = lower.strip_prefix("0x").filter(|_| s.len() >= 3) {
        (hex, 16)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (&lower[1..], 8)
    } else {
        (lower.as_str(), 10)
    };
    if digits.contains('_') && !underscores_ok(s) {
        return None;
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() && radix != 8 {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    i64::from_str_radix(&digits, radix).ok()
}

/// How Prometheus reads a number token: as an integer (decimal, octal with a leading 0, or
/// hex), else as a float. The error is `strconv.ParseFloat`'s.
pub(crate) fn parse_number(s: &str) -> Result<f64, String> {
    if let Some(v) = parse_int(s) {
        return Ok(v as f64);
    }
    let fail = |why: &str| format!("strconv.ParseFloat: parsing {}: {why}", quote(s));
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "infinity" => return Ok(f64::INFINITY),
        "nan" => return Ok(f64::NAN),
        _ => {}
    }
    // Hex floats need a `p` exponent, which the lexer never lets through.
    if lower.starts_with("0x") || (s.contains('_') && !underscores_ok(s)) {
        return Err(fail("invalid syntax"));
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    match plain.parse::<f64>() {
        Ok(v) if v.is_infinite() => Err(fail("value out of range")),
        Ok(v) => Ok(v),
        Err(_) => Err(fail("invalid syntax")),
    }
}

/// `model.ParseDuration` (Prometheus 3.x): terms like `1h30m`, largest unit first, each unit
/// once; `0` alone is zero. Returns seconds.
pub(crate) fn parse_duration(s: &str) -> Result<f64, String> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3_600_000_000_000),
        ("w", 7 * 24 * 3_600_000_000_000),
        ("d", 24 * 3_600_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ];
    match s {
        "0" => return Ok(0.0),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let invalid = || format!("not a valid duration string: {}", quote(s));
    let mut rest = s;
    let mut total: u64 = 0;
    let mut last_unit = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        if unit_len == 0 {
            return Err(invalid());
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(index) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("unknown unit {} in duration {}", quote(unit), quote(s)));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(invalid());
        }
        last_unit = Some(index);
        let mult = UNITS[index].1;
        if value > (1u64 << 63) / mult {
            return Err("duration out of range".into());
        }
        total += value * mult;
        if total > i64::MAX as u64 {
            return Err("duration out of range".into());
        }
    }
    Ok((total / 1_000_000_000) as f64 + (total % 1_000_000_000) as f64 / 1e9)
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
        assert_eq!(format_f(9_223_372_036_854_775_808.0), "9223372036854775808.000000");
        assert_eq!(format_f(f64::NEG_INFINITY), "-Inf");
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
