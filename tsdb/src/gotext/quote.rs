//! Go's `strconv.Quote` and `strconv.QuoteRune`: how Prometheus prints label values
//! (`Labels.String`), matchers and the strings in its error messages (`%q`).

use std::fmt::Write as _;
use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// Go's `strconv.Quote`: a double-quoted string in which `"` and `\` are backslashed, `\a \b
/// \f \n \r \t \v` are written so, other characters that do not print ([`is_print`]) become
/// `\xNN` (below U+0020 and U+007F), `\uNNNN` or `\UNNNNNNNN`, and printable ones stay as they
/// are.
pub fn quote(s: &str) -> String {
    quote_bytes(s.as_bytes())
}

/// [`quote`] of a Go string holding arbitrary bytes: each byte that is not part of valid UTF-8
/// becomes `\xNN`, as Go does for every byte it cannot decode.
pub fn quote_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 2);
    out.push('"');
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_escaped(&mut out, c, '"');
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.QuoteRune`: a single-quoted character with [`quote`]'s escapes, where `'` is
/// backslashed instead of `"`.
pub fn quote_rune(c: char) -> String {
    let mut out = String::with_capacity(4);
    out.push('\'');
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
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
        c if c < ' ' || c == '\x7f' => write!(out, "\\x{:02x}", u32::from(c)),
        c if u32::from(c) < 0x10000 => write!(out, "\\u{:04x}", u32::from(c)),
        c => write!(out, "\\U{:08x}", u32::from(c)),
    };
}

/// Go's `unicode.IsPrint` (and `strconv.IsPrint`): letters, marks, numbers, punctuation and
/// symbols, plus the ASCII space, as of Go's Unicode version (15.0.0). Everything else (controls,
/// format characters, private use, other spaces, unassigned code points) does not print.
pub fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    let ranges = print_ranges();
    let i = ranges.partition_point(|&(_, end)| end < c);
    ranges.get(i).is_some_and(|&(start, _)| start <= c)
}

/// The printable ranges, sorted, taken once from the Unicode tables regex-syntax carries
/// (restricted to the characters Unicode 15.0 had assigned, as Go's tables are).
fn print_ranges() -> &'static [(char, char)] {
    static RANGES: OnceLock<Vec<(char, char)>> = OnceLock::new();
    RANGES.get_or_init(|| {
        let class = regex_syntax::ParserBuilder::new()
            .build()
            .parse(r"[\p{L}\p{M}\p{N}\p{P}\p{S}&&\p{Age=15.0}]")
            .map(regex_syntax::hir::Hir::into_kind);
        match class {
            Ok(HirKind::Class(Class::Unicode(class))) => class.ranges().iter().map(|r| (r.start(), r.end())).collect(),
            // A fixed, valid pattern; the tests check the table is there.
            _ => Vec::new(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values are what Go 1.26's `strconv.Quote` prints.
    #[test]
    fn quote_matches_go() {
        for (input, want) in [
            ("", r#""""#),
            ("plain text", r#""plain text""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("'", r#""'""#),
            ("\x07\x08\x0c\n\r\t\x0b", r#""\a\b\f\n\r\t\v""#),
            ("\x00\x01\x1b\x1f\x7f", r#""\x00\x01\x1b\x1f\x7f""#),
            // C1 controls, no-break space, soft hyphen, line separator: \u escapes.
            ("\u{80}\u{9f}\u{a0}\u{ad}\u{2028}", r#""\u0080\u009f\u00a0\u00ad\u2028""#),
            // Format characters and private use.
            ("\u{200b}\u{feff}\u{e000}\u{f0000}", r#""\u200b\ufeff\ue000\U000f0000""#),
            // Unassigned and non-characters.
            ("\u{378}\u{fdd0}\u{10ffff}", r#""\u0378\ufdd0\U0010ffff""#),
            // Assigned only after Unicode 15.0 (Go's tables are 15.0).
            ("\u{1fae9}", r#""\U0001fae9""#),
            ("é☺😀日本\u{fffd}", "\"é☺😀日本\u{fffd}\""),
        ] {
            assert_eq!(quote(input), want, "{input:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_escaped_byte_by_byte() {
        assert_eq!(quote_bytes(b"\xff"), r#""\xff""#);
        assert_eq!(quote_bytes(b"a\xe2\x82b"), r#""a\xe2\x82b""#);
        // A UTF-16 surrogate encoded in UTF-8 is not valid UTF-8.
        assert_eq!(quote_bytes(b"\xed\xa0\x80"), r#""\xed\xa0\x80""#);
        assert_eq!(quote_bytes("ok \u{e9}".as_bytes()), "\"ok \u{e9}\"");
        assert_eq!(quote_bytes(b"\xc3"), r#""\xc3""#);
    }

    #[test]
    fn quote_rune_matches_go() {
        for (c, want) in [
            ('a', "'a'"),
            ('\'', r"'\''"),
            ('"', "'\"'"),
            ('\\', r"'\\'"),
            ('\n', r"'\n'"),
            ('\x7f', r"'\x7f'"),
            ('\u{feff}', r"'\ufeff'"),
            ('☺', "'☺'"),
            ('\u{10ffff}', r"'\U0010ffff'"),
        ] {
            assert_eq!(quote_rune(c), want, "{c:?}");
        }
    }

    /// Checked once against Go 1.26's `strconv.IsPrint` for every code point (same ranges).
    #[test]
    fn print_table() {
        assert!(!print_ranges().is_empty());
        for c in [' ', '~', '¡', 'é', '€', '日', '\u{fffd}', '😀', '\u{1f600}', '\u{e0100}'] {
            assert!(is_print(c), "{c:?}");
        }
        for c in ['\0', '\t', '\x7f', '\u{a0}', '\u{ad}', '\u{3000}', '\u{2029}', '\u{e0001}', '\u{fffe}'] {
            assert!(!is_print(c), "{c:?}");
        }
    }
}
