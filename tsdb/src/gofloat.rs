//! Floats printed exactly as Go prints them, since Prometheus's tools and API output are
//! compared byte for byte: `%g` (promtool's dump) and `strconv.FormatFloat(v, 'f', -1, 64)`
//! (the HTTP API's sample values).

/// The shortest decimal digits that parse back to `v` (finite, non-zero) and the decimal
/// exponent of the first digit. When two shortest candidates are equally close to `v`, Go picks
/// the one with the even last digit; Rust's formatter may pick the other, so ties are settled
/// here from the exact decimal expansion.
fn shortest_digits(v: f64) -> (String, i32) {
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // A tie needs two n-digit neighbours that both round-trip, which only happens when the
    // value's spacing is coarse relative to n digits: in practice at 16 or 17 digits.
    if digits.len() >= 16 && may_be_tie(v.abs(), digits.len()) {
        if let Some(even) = tie_to_even(v.abs(), &digits, exp) {
            return even;
        }
    }
    (digits, exp)
}

/// Cheap necessary condition for a tie: rounded to one digit more than the shortest form, the
/// value ends in 5. Only then is the exact (slow) expansion worth computing.
fn may_be_tie(v: f64, n: usize) -> bool {
    let s = format!("{v:.n$e}");
    s.split_once('e').is_some_and(|(m, _)| m.ends_with('5'))
}

/// If `v` lies exactly halfway between two `digits.len()`-digit decimals, the one with the even
/// last digit (when it still round-trips to `v`).
fn tie_to_even(v: f64, digits: &str, exp: i32) -> Option<(String, i32)> {
    // f64 values have at most 767 significant decimal digits; this prints them all exactly.
    let exact = format!("{v:.767e}");
    let (mantissa, exact_exp) = exact.split_once('e')?;
    if exact_exp.parse::<i32>().ok()? != exp {
        return None;
    }
    let all: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let n = digits.len();
    let (head, tail) = all.split_at(n.min(all.len()));
    if tail.first() != Some(&b'5') || tail[1..].iter().any(|&d| d != b'0') {
        return None;
    }
    // Halfway: the candidates are `head` and `head + 1`; Go keeps the even one.
    let mut cand = head.to_vec();
    if cand.last().is_some_and(|d| (d - b'0') % 2 == 1) {
        let mut i = cand.len();
        loop {
            if i == 0 {
                return None; // all nines: the exponent would change; keep Rust's choice
            }
            i -= 1;
            if cand[i] == b'9' {
                cand[i] = b'0';
            } else {
                cand[i] += 1;
                break;
            }
        }
    }
    let s = String::from_utf8(cand).ok()?;
    let back: f64 = format!("{}.{}e{exp}", &s[..1], &s[1..]).parse().ok()?;
    (back == v).then_some((s, exp))
}

/// Go's `%g` (`strconv.FormatFloat(v, 'g', -1, 64)`): shortest digits, exponent form when the
/// decimal exponent is below -4 or at least 6 (Go decides with precision 6 when printing the
/// shortest form). `NaN`, `+Inf`, `-Inf`.
pub fn format_g(v: f64) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let (digits, exp) = shortest_digits(v);
    let sign = if v.is_sign_negative() { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let mantissa = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{esign}{:02}", exp.abs())
    } else {
        format!("{sign}{}", place_point(&digits, exp))
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an exponent.
pub fn format_f(v: f64) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let (digits, exp) = shortest_digits(v);
    let sign = if v.is_sign_negative() { "-" } else { "" };
    format!("{sign}{}", place_point(&digits, exp))
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf".into() } else { "-Inf".into() })
    } else if v == 0.0 {
        Some(if v.is_sign_negative() { "-0".into() } else { "0".into() })
    } else {
        None
    }
}

/// `digits` (first digit at 10^exp) as a plain decimal.
fn place_point(digits: &str, exp: i32) -> String {
    let n = digits.len() as i32;
    if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else if exp + 1 >= n {
        format!("{digits}{}", "0".repeat((exp + 1 - n) as usize))
    } else {
        let cut = (exp + 1) as usize;
        format!("{}.{}", &digits[..cut], &digits[cut..])
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn shortest_round_trips() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                assert_eq!(format_g(v).parse::<f64>().unwrap().to_bits(), v.to_bits(), "{v:e}");
                assert_eq!(format_f(v).parse::<f64>().unwrap().to_bits(), v.to_bits(), "{v:e}");
            }
        }
    }
}
