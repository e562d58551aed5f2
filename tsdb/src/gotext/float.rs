//! Floats printed exactly as Go prints them: `%g` (promtool's dump, PromQL messages),
//! `strconv.FormatFloat(v, 'f', -1, 64)` (the HTTP API's sample values) and `%f`.

use std::fmt::Write as _;

/// The shortest decimal digits that parse back to a finite, non-zero float, and the decimal
/// exponent of the first digit. When two shortest candidates are equally close to the value, Go
/// picks the one with the even last digit; Rust's formatter may pick the other, so ties are
/// settled here from the exact value.
struct Digits {
    buf: [u8; 17],
    len: usize,
    exp: i32,
}

impl Digits {
    fn of(v: f64) -> Digits {
        let v = v.abs();
        // The shortest round-trip digits (Żmij's, the same as Ryū's), at most 17, as `123.45`,
        // `1e+21` or `1.5e-7`.
        let mut buf = zmij::Buffer::new();
        let text = buf.format_finite(v).as_bytes();
        let (mantissa, exp) = match text.iter().position(|&c| c == b'e') {
            Some(e) => (&text[..e], std::str::from_utf8(&text[e + 1..]).ok().and_then(|x| x.parse().ok()).unwrap_or(0)),
            None => (text, 0),
        };
        let mut d = Digits { buf: [0; 17], len: 0, exp: 0 };
        // The decimal exponent of the first digit: digits before the point, less one, or less
        // the leading zeros after it.
        let point = mantissa.iter().position(|&c| c == b'.').unwrap_or(mantissa.len()) as i32;
        let mut first = None;
        for (i, &c) in mantissa.iter().enumerate() {
            if !c.is_ascii_digit() || (first.is_none() && c == b'0') {
                continue;
            }
            first.get_or_insert(i as i32);
            if d.len < d.buf.len() {
                d.buf[d.len] = c;
                d.len += 1;
            }
        }
        // Trailing zeros of an integer (`100.0`) are not significant.
        while d.len > 1 && d.buf[d.len - 1] == b'0' {
            d.len -= 1;
        }
        let first = first.unwrap_or(0);
        d.exp = exp + if first < point { point - first - 1 } else { point - first };
        // A tie needs two n-digit neighbours that both round-trip, which only happens when the
        // value's spacing is coarse relative to n digits: at 16 or 17 digits.
        if d.len >= 16 {
            if let Some(even) = d.tie_to_even(v) {
                return even;
            }
        }
        d
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("0")
    }

    /// If `v` lies exactly halfway between two `len`-digit decimals, the one with the even last
    /// digit (when it still round-trips to `v`).
    fn tie_to_even(&self, v: f64) -> Option<Digits> {
        let exact = exact_decimal(v)?;
        // Halfway means the exact value has one digit more than the shortest form, a 5.
        if exact % 10 != 5 || decimal_len(exact) != self.len + 1 {
            return None;
        }
        let mut head = exact / 10;
        if head % 2 == 1 {
            head += 1;
            if decimal_len(head) != self.len {
                return None; // all nines: the exponent would change; keep Rust's choice
            }
        }
        let mut d = Digits { buf: [0; 17], len: self.len, exp: self.exp };
        let mut rest = head;
        for slot in d.buf[..d.len].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let mut back = StackStr::default();
        let _ = write!(back, "{}e{}", d.as_str(), d.exp - d.len as i32 + 1);
        let back: f64 = back.as_str().parse().ok()?;
        (back == v).then_some(d)
    }
}

/// The significant digits of a finite, positive float's exact decimal value (trailing zeros
/// removed), or `None` when they do not fit in a u64 — then there are more than 19 of them,
/// too many for a tie (a tie has one digit more than the at most 17 of the shortest form).
fn exact_decimal(v: f64) -> Option<u64> {
    let bits = v.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mut m, mut e) = if biased == 0 { (fraction, -1074) } else { (fraction | 1 << 52, biased - 1075) };
    if m == 0 {
        return None;
    }
    let tz = m.trailing_zeros();
    m >>= tz;
    e += tz as i32;
    if e < 0 {
        // m / 2^k = m·5^k / 10^k, and m·5^k is odd: no trailing zero to remove.
        POW5.get(e.unsigned_abs() as usize)?.checked_mul(m)
    } else {
        // m·2^e: each factor 5 of m pairs with a factor 2 into a trailing zero.
        let (mut m5, mut twos) = (m, e as u32);
        while twos > 0 && m5 % 5 == 0 {
            m5 /= 5;
            twos -= 1;
        }
        (twos <= m5.leading_zeros()).then(|| m5 << twos)
    }
}

/// 5^k for every k with 5^k in a u64 (a table: this runs for every formatted sample).
const POW5: [u64; 28] = {
    let mut t = [1u64; 28];
    let mut k = 1;
    while k < t.len() {
        t[k] = t[k - 1] * 5;
        k += 1;
    }
    t
};

fn decimal_len(x: u64) -> usize {
    x.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// A small string on the stack, for formatting without allocation.
#[derive(Default)]
struct StackStr {
    buf: [u8; 32],
    len: usize,
}

impl StackStr {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl std::fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Go's `%g` (`strconv.FormatFloat(v, 'g', -1, 64)`): shortest digits, exponent form when the
/// decimal exponent is below -4 or at least 6 (Go decides with precision 6 when printing the
/// shortest form). `NaN`, `+Inf`, `-Inf`.
pub fn format_g(v: f64) -> String {
    let mut out = String::new();
    write_g(&mut out, v);
    out
}

/// [`format_g`] appended to `out`.
pub fn write_g(out: &mut String, v: f64) {
    if write_special(out, v) {
        return;
    }
    let d = Digits::of(v);
    if v.is_sign_negative() {
        out.push('-');
    }
    if !(-4..6).contains(&d.exp) {
        let digits = d.as_str();
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let esign = if d.exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{esign}{:02}", d.exp.unsigned_abs());
    } else {
        place_point(out, &d);
    }
}

/// Go's `%.Ng` (`strconv.FormatFloat(v, 'g', N, 64)`, infinities signed): `prec` significant
/// digits (rounded half to even on the exact value, as Rust's formatter does), trailing zeros
/// dropped, exponent form when the decimal exponent is below -4 or at least the precision.
pub fn format_g_prec(v: f64, prec: usize) -> String {
    let mut out = String::new();
    if write_special(&mut out, v) {
        return out;
    }
    let prec = prec.clamp(1, 767);
    let text = format!("{:.*e}", prec - 1, v.abs());
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let (nd, dp) = (digits.len() as i32, exp + 1);
    // strconv's choice: a precision above the digits of an integer counts only those digits.
    let mut eprec = prec as i32;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if v.is_sign_negative() {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    } else if dp <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', dp.unsigned_abs() as usize));
        out.push_str(digits);
    } else if dp >= nd {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (dp - nd) as usize));
    } else {
        out.push_str(&digits[..dp as usize]);
        out.push('.');
        out.push_str(&digits[dp as usize..]);
    }
    out
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an exponent.
pub fn format_f(v: f64) -> String {
    let mut out = String::new();
    write_f(&mut out, v);
    out
}

/// Go's `%f` (`strconv.FormatFloat(v, 'f', 6, 64)`, infinities signed): six decimals, rounded
/// half to even on the exact value as Rust's formatter does too.
pub fn format_percent_f(v: f64) -> String {
    if v.is_finite() {
        return format!("{v:.6}");
    }
    let mut out = String::new();
    write_special(&mut out, v);
    out
}

/// [`format_f`] appended to `out`.
pub fn write_f(out: &mut String, v: f64) {
    if write_special(out, v) {
        return;
    }
    // Żmij writes plain decimals when the shortest decimal is from 1e-5 up to (not including)
    // 1e16, exactly for the floats in that range since both ends are floats' shortest forms;
    // they have Go's digits unless the value is a tie, and only the `.0` after integers differs.
    if (1e-5..1e16).contains(&v.abs()) && !may_be_tie(v) {
        let mut buf = zmij::Buffer::new();
        let text = buf.format_finite(v);
        out.push_str(text.strip_suffix(".0").unwrap_or(text));
        return;
    }
    write_f_from_digits(out, v);
}

fn write_f_from_digits(out: &mut String, v: f64) {
    if v.is_sign_negative() {
        out.push('-');
    }
    place_point(out, &Digits::of(v));
}

/// Cheap necessary condition for a tie: the exact value has 17 to 19 significant digits (one
/// more than a shortest form of 16 or 17), the last one a 5.
fn may_be_tie(v: f64) -> bool {
    exact_decimal(v.abs()).is_some_and(|d| d % 10 == 5 && d >= 10u64.pow(16))
}

/// Writes NaN, infinities and zeros; false for any other value.
fn write_special(out: &mut String, v: f64) -> bool {
    let s = if v.is_nan() {
        "NaN"
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        }
    } else if v == 0.0 {
        if v.is_sign_negative() {
            "-0"
        } else {
            "0"
        }
    } else {
        return false;
    };
    out.push_str(s);
    true
}

/// The digits (first digit at 10^exp) as a plain decimal.
fn place_point(out: &mut String, d: &Digits) {
    let digits = d.as_str();
    let n = digits.len() as i32;
    if d.exp < 0 {
        out.push_str("0.");
        (0..-d.exp - 1).for_each(|_| out.push('0'));
        out.push_str(digits);
    } else if d.exp + 1 >= n {
        out.push_str(digits);
        (0..d.exp + 1 - n).for_each(|_| out.push('0'));
    } else {
        let cut = (d.exp + 1) as usize;
        out.push_str(&digits[..cut]);
        out.push('.');
        out.push_str(&digits[cut..]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn format_g_prec_is_gos_percent_dot_n_g() {
        use super::format_g_prec;
        for (v, p, want) in [
            (1.0, 4, "1"),
            (1234567.0, 4, "1.235e+06"),
            (1234.0, 4, "1234"),
            (100.0, 4, "100"),
            (1e4, 4, "1e+04"),
            (0.12, 4, "0.12"),
            (0.000012345, 4, "1.234e-05"),
            (-22.222, 4, "-22.22"),
            (0.125, 2, "0.12"),
            (f64::INFINITY, 4, "+Inf"),
            (f64::NAN, 4, "NaN"),
            (0.0, 4, "0"),
        ] {
            assert_eq!(format_g_prec(v, p), want, "{v} {p}");
        }
    }

    use super::*;

    /// Exactly halfway between two 17-digit decimals (written out in full on purpose).
    #[allow(clippy::excessive_precision)]
    const TIE: f64 = 1665071963897249.25;

    #[test]
    fn go_g_format() {
        for (v, want) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (-0.0, "-0"),
            (100000.5, "100000.5"),
            // Go keeps the even last digit.
            (TIE, "1.6650719638972492e+15"),
        ] {
            assert_eq!(format_g(v), want, "{v}");
        }
    }

    #[test]
    fn go_f_format() {
        for (v, want) in [
            (1.0, "1"),
            (0.1, "0.1"),
            (1e21, "1000000000000000000000"),
            (1.5e-7, "0.00000015"),
            (-123.456, "-123.456"),
            (TIE, "1665071963897249.2"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(format_f(v), want, "{v}");
        }
    }

    /// Expected values are what Go's `fmt.Sprintf("%f", v)` prints.
    #[test]
    fn go_percent_f_format() {
        for (v, want) in [
            (0.0078125, "0.007812"),
            (0.25, "0.250000"),
            (1e21, "1000000000000000000000.000000"),
            (9_223_372_036_854_775_808.0, "9223372036854775808.000000"),
            (-0.0, "-0.000000"),
            (0.1234565, "0.123456"),
            (2f64.powi(-20), "0.000001"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_percent_f(v), want, "{v}");
        }
    }

    #[test]
    fn ties_keep_the_even_digit() {
        // From 2^50 to 2^51 floats are 0.25 apart, so n + 0.25 and n + 0.75 lie exactly halfway
        // between two 17-digit decimals.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (1u64 << 50) + x % (1 << 50);
            for (frac, digit) in [(0.25, 2), (0.75, 8)] {
                let v = n as f64 + frac;
                let want = format!("{n}.{digit}");
                assert_eq!(format_f(v), want, "{v:e}");
                assert_eq!(format_f(-v), format!("-{want}"));
            }
        }
        // Not ties: one digit more than the shortest form, but not ending in 5.
        assert_eq!(format_f(1125899906842624.5), "1125899906842624.5");
        assert_eq!(exact_decimal(0.5), Some(5));
        assert_eq!(exact_decimal(1e22), Some(1));
        assert_eq!(exact_decimal(f64::MAX), None);
        assert_eq!(exact_decimal(0.1), None);
        assert_eq!(exact_decimal(f64::from_bits(1)), None);
    }

    #[test]
    fn plain_decimals_take_the_short_way_unchanged() {
        let mut x: u64 = 0x5851_F42D_4C95_7F2D;
        for i in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let edges = [1e-5, 1e16].map(|e: f64| f64::from_bits(e.to_bits() - (i % 3) + 1));
            let values =
                [(x % 100_000) as f64 / 57.0, (x % 1_000_000_007) as f64, (i as f64) / 8.0, -((x % 977) as f64) / 1e3];
            for v in values.into_iter().chain(edges) {
                let (mut fast, mut slow) = (String::new(), String::new());
                write_f(&mut fast, v);
                if v != 0.0 {
                    write_f_from_digits(&mut slow, v);
                    assert_eq!(fast, slow, "{v:e}");
                }
            }
        }
    }

    #[test]
    fn shortest_round_trips() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                if v != 0.0 {
                    // As short as Rust's own shortest form, with the same first-digit exponent.
                    let sci = format!("{:e}", v.abs());
                    let (mantissa, exp) = sci.split_once('e').unwrap();
                    let d = Digits::of(v);
                    assert_eq!(d.len, mantissa.chars().filter(char::is_ascii_digit).count(), "{v:e}");
                    assert_eq!(d.exp, exp.parse::<i32>().unwrap(), "{v:e}");
                }
                assert_eq!(format_g(v).parse::<f64>().unwrap().to_bits(), v.to_bits(), "{v:e}");
                assert_eq!(format_f(v).parse::<f64>().unwrap().to_bits(), v.to_bits(), "{v:e}");
            }
        }
    }
}
