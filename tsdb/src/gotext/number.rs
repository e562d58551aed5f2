//! Numbers as Go's `strconv` reads them: `ParseFloat(s, 64)` (the HTTP API's times and
//! durations, `le` and quantile label values, PromQL number literals) and `ParseInt(s, 0, 64)`
//! (PromQL integer literals), with Go's syntax, underscores, special values and range errors.

use std::fmt;

use super::quote::quote;

/// Why a number did not parse; the message is Go's `*strconv.NumError` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("strconv.{func}: parsing {}: {kind}", quote(.input))]
pub struct NumError {
    /// `ParseFloat` or `ParseInt`.
    pub func: &'static str,
    pub input: String,
    pub kind: NumErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumErrorKind {
    Syntax,
    /// The value does not fit (Go also returns ±Inf or the clamped integer).
    Range,
}

impl fmt::Display for NumErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NumErrorKind::Syntax => "invalid syntax",
            NumErrorKind::Range => "value out of range",
        })
    }
}

/// Go's `strconv.ParseFloat(s, 64)`: an optional sign, then decimal digits with an optional
/// point and `e` exponent, or hexadecimal digits (`0x`) with a mandatory `p` exponent;
/// underscores only between digits (Go's `underscoreOK`); `inf`, `infinity` (signed or not)
/// and `nan` in any case. Correctly rounded; a finite number too large for a float is a range
/// error, one too small is zero.
pub fn parse_float(s: &str) -> Result<f64, NumError> {
    let err = |kind| NumError { func: "ParseFloat", input: s.to_owned(), kind };
    if let Some(v) = special(s) {
        return Ok(v);
    }
    let parts = read_float(s).ok_or(err(NumErrorKind::Syntax))?;
    let v = if parts.hex {
        hex_float(parts.mantissa, parts.exp, parts.neg, parts.trunc)
    } else {
        // The syntax is checked, and Rust's parser reads every decimal Go does (once the
        // underscores are gone), rounding correctly as Go does.
        s.replace('_', "").parse::<f64>().map_err(|_| err(NumErrorKind::Syntax))?
    };
    if v.is_infinite() {
        return Err(err(NumErrorKind::Range));
    }
    Ok(v)
}

/// Go's `strconv.ParseInt(s, 0, 64)`: an optional sign, then decimal digits, `0b`, `0o` or `0x`
/// and digits of that base, or a leading `0` for octal; underscores only between digits.
pub fn parse_int(s: &str) -> Result<i64, NumError> {
    let err = |kind| NumError { func: "ParseInt", input: s.to_owned(), kind };
    let (neg, unsigned) = match s.as_bytes().first() {
        None => return Err(err(NumErrorKind::Syntax)),
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        Some(_) => (false, s),
    };
    let magnitude = parse_uint_base0(unsigned).map_err(err)?;
    const LIMIT: u64 = 1 << 63;
    if magnitude > LIMIT || (magnitude == LIMIT && !neg) {
        return Err(err(NumErrorKind::Range));
    }
    // -(2^63) wraps to itself, which is i64::MIN.
    Ok(if neg { (magnitude as i64).wrapping_neg() } else { magnitude as i64 })
}

/// Go's `ParseUint(s, 0, 64)` without the sign.
fn parse_uint_base0(s: &str) -> Result<u64, NumErrorKind> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(NumErrorKind::Syntax);
    }
    let (base, digits) = match (b[0], b.get(1).map(u8::to_ascii_lowercase)) {
        (b'0', Some(b'b')) if b.len() >= 3 => (2, &b[2..]),
        (b'0', Some(b'o')) if b.len() >= 3 => (8, &b[2..]),
        (b'0', Some(b'x')) if b.len() >= 3 => (16, &b[2..]),
        (b'0', _) => (8, &b[1..]),
        _ => (10, b),
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    for &c in digits {
        let d = match c {
            b'_' => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => c - b'0',
            c if c.is_ascii_alphabetic() => c.to_ascii_lowercase() - b'a' + 10,
            _ => return Err(NumErrorKind::Syntax),
        };
        if u64::from(d) >= base {
            return Err(NumErrorKind::Syntax);
        }
        n = n.checked_mul(base).and_then(|n| n.checked_add(u64::from(d))).ok_or(NumErrorKind::Range)?;
    }
    if underscores && !underscore_ok(s) {
        return Err(NumErrorKind::Syntax);
    }
    Ok(n)
}

/// Go's `underscoreOK`: underscores only between digits, or between a base prefix and a digit.
fn underscore_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let Some((b'+' | b'-', rest)) = b.split_first() {
        b = rest;
    }
    // What was seen last: ^ start, 0 digit or base prefix, _ underscore, ! anything else.
    let mut saw = b'^';
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        hex = b[1].eq_ignore_ascii_case(&b'x');
        saw = b'0';
        b = &b[2..];
    }
    for &c in b {
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

/// `inf`, `infinity` with an optional sign, or unsigned `nan`, in any case: the whole string.
fn special(s: &str) -> Option<f64> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    if rest.eq_ignore_ascii_case("inf") || rest.eq_ignore_ascii_case("infinity") {
        return Some(sign * f64::INFINITY);
    }
    (rest.len() == s.len() && rest.eq_ignore_ascii_case("nan")).then_some(f64::NAN)
}

/// What Go's `readFloat` takes from a syntactically valid number; only the hexadecimal form
/// needs the mantissa and exponent here.
struct FloatParts {
    /// Up to 16 hexadecimal digits of the mantissa.
    mantissa: u64,
    /// Binary exponent of the mantissa's last digit.
    exp: i64,
    neg: bool,
    /// A non-zero digit did not fit in the mantissa.
    trunc: bool,
    hex: bool,
}

/// Go's `readFloat`, requiring the whole string to be the number.
fn read_float(s: &str) -> Option<FloatParts> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut neg = false;
    match b.first()? {
        b'+' => i += 1,
        b'-' => {
            neg = true;
            i += 1;
        }
        _ => {}
    }
    let (base, max_digits, exp_char) = if i + 2 < b.len() && b[i] == b'0' && b[i + 1].eq_ignore_ascii_case(&b'x') {
        (16, 16, b'p')
    } else {
        (10, 19, b'e')
    };
    if base == 16 {
        i += 2;
    }
    let (mut mantissa, mut trunc, mut underscores) = (0u64, false, false);
    let (mut saw_dot, mut saw_digits) = (false, false);
    // Digits seen (leading zeros excepted), digits kept in the mantissa, and the position of
    // the point in digits.
    let (mut nd, mut nd_mant, mut dp) = (0i64, 0i64, 0i64);
    while let Some(&c) = b.get(i) {
        let digit = match c {
            b'_' => {
                underscores = true;
                i += 1;
                continue;
            }
            b'.' if !saw_dot => {
                saw_dot = true;
                dp = nd;
                i += 1;
                continue;
            }
            b'0'..=b'9' => c - b'0',
            c if base == 16 && c.is_ascii_hexdigit() => c.to_ascii_lowercase() - b'a' + 10,
            _ => break,
        };
        saw_digits = true;
        i += 1;
        if digit == 0 && nd == 0 {
            dp -= 1;
            continue;
        }
        nd += 1;
        if nd_mant < max_digits {
            mantissa = mantissa * base + u64::from(digit);
            nd_mant += 1;
        } else if digit != 0 {
            trunc = true;
        }
    }
    if !saw_digits {
        return None;
    }
    if !saw_dot {
        dp = nd;
    }
    if base == 16 {
        dp *= 4;
        nd_mant *= 4;
    }
    if b.get(i).is_some_and(|c| c.eq_ignore_ascii_case(&exp_char)) {
        i += 1;
        let mut sign = 1;
        match b.get(i) {
            Some(b'+') => i += 1,
            Some(b'-') => {
                sign = -1;
                i += 1;
            }
            _ => {}
        }
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let mut e = 0i64;
        while let Some(&c) = b.get(i) {
            match c {
                b'_' => underscores = true,
                b'0'..=b'9' if e < 10_000 => e = e * 10 + i64::from(c - b'0'),
                b'0'..=b'9' => {}
                _ => break,
            }
            i += 1;
        }
        dp += e * sign;
    } else if base == 16 {
        return None;
    }
    if i != b.len() || (underscores && !underscore_ok(s)) {
        return None;
    }
    let exp = if mantissa != 0 { dp - nd_mant } else { 0 };
    Some(FloatParts { mantissa, exp, neg, trunc, hex: base == 16 })
}

/// Go's `atofHex` for float64: `mantissa × 2^exp`, rounded to nearest even with `trunc` as a
/// sticky bit; infinite when too large.
fn hex_float(mut mantissa: u64, mut exp: i64, neg: bool, trunc: bool) -> f64 {
    const MANT_BITS: u32 = 52;
    const BIAS: i64 = -1023;
    const MAX_EXP: i64 = 1023;
    const MIN_EXP: i64 = -1022;
    exp += i64::from(MANT_BITS);
    // Normalise to a leading 1 and MANT_BITS more bits, plus two rounding bits whose lower one
    // is sticky.
    while mantissa != 0 && mantissa >> (MANT_BITS + 2) == 0 {
        mantissa <<= 1;
        exp -= 1;
    }
    if trunc {
        mantissa |= 1;
    }
    while mantissa >> (1 + MANT_BITS + 2) != 0 {
        mantissa = mantissa >> 1 | mantissa & 1;
        exp += 1;
    }
    // Too small: denormalise, hoping to become representable.
    while mantissa > 1 && exp < MIN_EXP - 2 {
        mantissa = mantissa >> 1 | mantissa & 1;
        exp += 1;
    }
    let mut round = mantissa & 3;
    mantissa >>= 2;
    round |= mantissa & 1;
    exp += 2;
    if round == 3 {
        mantissa += 1;
        if mantissa == 1 << (1 + MANT_BITS) {
            mantissa >>= 1;
            exp += 1;
        }
    }
    if mantissa >> MANT_BITS == 0 {
        exp = BIAS;
    }
    if exp > MAX_EXP {
        return if neg { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    let bits = (mantissa & ((1 << MANT_BITS) - 1)) | (((exp - BIAS) as u64) & 0x7ff) << MANT_BITS;
    f64::from_bits(bits | u64::from(neg) << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values are what Go 1.26's `strconv.ParseFloat(s, 64)` returns.
    #[test]
    fn parse_float_matches_go() {
        use NumErrorKind::{Range, Syntax};
        let ok = |s: &str, bits: u64| assert_eq!(parse_float(s).map(f64::to_bits), Ok(bits), "{s:?}");
        let bad = |s: &str, kind| assert_eq!(parse_float(s).map_err(|e| e.kind), Err(kind), "{s:?}");
        for (s, bits) in [
            ("1", 0x3ff0000000000000),
            ("-0", 0x8000000000000000),
            ("+.5", 0x3fe0000000000000),
            ("5.", 0x4014000000000000),
            ("1.e5", 0x40f86a0000000000),
            ("1_0", 0x4024000000000000),
            ("1_000.000_1", 0x408f4000346dc5d6),
            ("1e1_0", 0x4202a05f20000000),
            ("1e-400", 0),
            ("4.9e-324", 1),
            ("2.4703282292062328e-324", 1),
            ("2.4703282292062327e-324", 0),
            ("1.7976931348623157e308", 0x7fefffffffffffff),
            ("infinity", 0x7ff0000000000000),
            ("+Inf", 0x7ff0000000000000),
            ("-inf", 0xfff0000000000000),
            ("0x1p-2", 0x3fd0000000000000),
            ("0x1.8p1", 0x4008000000000000),
            ("0X1P+10", 0x4090000000000000),
            ("0x1p-1074", 1),
            ("0x1p-1075", 0),
            ("0x1.8p-1074", 2),
            ("0x1.fffffffffffff7p1023", 0x7fefffffffffffff),
            ("0x1_0p0", 0x4030000000000000),
            ("0x_1p0", 0x3ff0000000000000),
            ("0x.8p1", 0x3ff0000000000000),
            ("0x1.p0", 0x3ff0000000000000),
            ("0x123456789abcdef0123p0", 0x44723456789abcdf),
            ("0x1.0000000000000801p0", 0x3ff0000000000001),
            ("0x1.00000000000008p0", 0x3ff0000000000000),
            ("0x1.00000000000018p0", 0x3ff0000000000002),
            ("-0x1p-2", 0xbfd0000000000000),
            ("0x1p-1_0", 0x3f50000000000000),
            ("12345678901234567890123", 0x4484ea15b273b38a),
            ("0.1", 0x3fb999999999999a),
            ("1e23", 0x44b52d02c7e14af6),
            ("8.41e21", 0x447c7e83209e90b2),
        ] {
            ok(s, bits);
        }
        for s in ["nan", "NaN"] {
            assert!(parse_float(s).is_ok_and(f64::is_nan), "{s}");
        }
        for s in [
            "", ".", "1.2.3", "1e", "1e+", "1__0", "_1", "1_", "+NaN", "inf ", " 1", "Infinit", "infx", "0x10", "0x1p",
            "0x", "0x_p0", "0x1.8p",
        ] {
            bad(s, Syntax);
        }
        for s in ["1e400", "-1e400", "1.7976931348623159e308", "0x1p1024", "0x1.fffffffffffff8p1023"] {
            bad(s, Range);
        }
        assert_eq!(
            parse_float("1e400").map_err(|e| e.to_string()),
            Err("strconv.ParseFloat: parsing \"1e400\": value out of range".into())
        );
        assert_eq!(
            parse_float("a\u{1}").map_err(|e| e.to_string()),
            Err("strconv.ParseFloat: parsing \"a\\x01\": invalid syntax".into())
        );
    }

    /// Expected values are what Go 1.26's `strconv.ParseInt(s, 0, 64)` returns.
    #[test]
    fn parse_int_matches_go() {
        for (s, v) in [
            ("0", 0),
            ("-0", 0),
            ("+7", 7),
            ("0755", 493),
            ("0x1F", 31),
            ("0X_1f", 31),
            ("0b101", 5),
            ("0o17", 15),
            ("0O17", 15),
            ("0_7", 7),
            ("1_000", 1000),
            ("00", 0),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(parse_int(s), Ok(v), "{s:?}");
        }
        for s in ["08", "0x", "1__0", "", "-", "1e3", "0b", "0b2", "0x_", "_1"] {
            assert_eq!(parse_int(s).map_err(|e| e.kind), Err(NumErrorKind::Syntax), "{s:?}");
        }
        for s in ["9223372036854775808", "-9223372036854775809", "0xFFFFFFFFFFFFFFFFFF"] {
            assert_eq!(parse_int(s).map_err(|e| e.kind), Err(NumErrorKind::Range), "{s:?}");
        }
        assert_eq!(
            parse_int("08").map_err(|e| e.to_string()),
            Err("strconv.ParseInt: parsing \"08\": invalid syntax".into())
        );
    }
}
