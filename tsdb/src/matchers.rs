//! Label matchers, with Prometheus 3 semantics.
//!
//! A label a series does not have matches as the empty string. Regular expressions are fully
//! anchored and `.` also matches a newline: the pattern `re` is compiled as `^(?s:re)$`. Patterns
//! Prometheus short-cuts are matched without the regex engine: a plain alternation of literals
//! (`a|b|c`, also inside one group) is a set lookup whose values [`Matcher::set_matches`] hands
//! to postings lookups, and `.*`, `.+`, `lit.*`, `.*lit`, `.*lit.*`, `lit.+`, `.+lit` become
//! string tests.
//!
//! Patterns use the syntax of the `regex` crate, which agrees with Go's RE2 syntax except that
//! the Perl classes (`\d`, `\w`, `\s`, `\b`) are Unicode-aware rather than ASCII-only.

use std::fmt;
use std::hash::{Hash, Hasher};

use regex::Regex;

use crate::gotext::quote;
use crate::Error;

/// How a matcher compares a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

/// A condition on one label, e.g. `job=~"api|web"`.
///
/// The fields are public to read; build matchers with [`Matcher::new`], which prepares the
/// regular expression.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// For the regex ops: how the pattern is matched.
    re: Option<FastRegex>,
}

impl Matcher {
    /// A matcher; for the regex ops `value` must be a valid pattern.
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Matcher, Error> {
        let (name, value) = (name.into(), value.into());
        let re = match op {
            MatchOp::Equal | MatchOp::NotEqual => None,
            MatchOp::Regex | MatchOp::NotRegex => Some(
                FastRegex::new(&value)
                    .map_err(|e| Error::InvalidMatcher(format!("{}{op}{}: {e}", quote_name(&name), quote(&value))))?,
            ),
        };
        Ok(Matcher { name, op, value, re })
    }

    /// Whether a label value (the empty string for a missing label) satisfies the matcher.
    #[inline]
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            // `new` always prepares the pattern for the regex ops.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }

    /// Whether series without this label match.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For a regex that is a plain alternation of literals (`a|b|c`): the literals, sorted and
    /// without duplicates. A `=~` matcher accepts exactly these values; a `!~` matcher exactly
    /// the others.
    pub fn set_matches(&self) -> Option<&[String]> {
        match &self.re {
            Some(FastRegex::Set(values)) => Some(values),
            _ => None,
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (self.op, &self.name, &self.value) == (other.op, &other.name, &other.value)
    }
}

impl Eq for Matcher {}

impl Hash for Matcher {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.op, &self.name, &self.value).hash(state);
    }
}

impl fmt::Display for Matcher {
    /// PromQL form: `name="value"`, with the name quoted too when it is not a plain identifier.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", quote_name(&self.name), self.op, quote(&self.value))
    }
}

/// Sets up to this size are scanned; larger ones are binary-searched.
const LINEAR_SET_MAX: usize = 16;

/// A prepared `=~` pattern.
#[derive(Clone, Debug)]
enum FastRegex {
    /// `.*`
    Any,
    /// `.+`
    NonEmpty,
    /// `a|b|c`: sorted, deduplicated.
    Set(Vec<String>),
    /// `lit.*` (`min_rest` 0) or `lit.+` (1).
    Prefix {
        lit: String,
        min_rest: usize,
    },
    /// `.*lit` or `.+lit`.
    Suffix {
        lit: String,
        min_rest: usize,
    },
    /// `.*lit.*`
    Contains(String),
    Regex(Regex),
}

impl FastRegex {
    fn new(pattern: &str) -> Result<Self, regex::Error> {
        if let Some(fast) = shortcut(pattern) {
            return Ok(fast);
        }
        Regex::new(&format!("^(?s:{pattern})$")).map(FastRegex::Regex)
    }

    #[inline]
    fn is_match(&self, v: &str) -> bool {
        match self {
            FastRegex::Any => true,
            FastRegex::NonEmpty => !v.is_empty(),
            FastRegex::Set(set) if set.len() <= LINEAR_SET_MAX => set.iter().any(|s| s == v),
            FastRegex::Set(set) => set.binary_search_by(|s| s.as_str().cmp(v)).is_ok(),
            // The rest after (or before) a matching literal starts on a char boundary, so any
            // extra byte means at least one extra char, which is what `.+` needs.
            FastRegex::Prefix { lit, min_rest } => v.starts_with(lit.as_str()) && v.len() >= lit.len() + min_rest,
            FastRegex::Suffix { lit, min_rest } => v.ends_with(lit.as_str()) && v.len() >= lit.len() + min_rest,
            FastRegex::Contains(lit) => v.contains(lit.as_str()),
            FastRegex::Regex(re) => re.is_match(v),
        }
    }
}

/// Recognises the patterns that need no regex engine; `None` for everything else.
fn shortcut(pattern: &str) -> Option<FastRegex> {
    match pattern {
        ".*" => return Some(FastRegex::Any),
        ".+" => return Some(FastRegex::NonEmpty),
        _ => {}
    }
    if let Some(alternatives) = literal_alternation(strip_group(pattern)) {
        let mut set = alternatives;
        set.sort_unstable();
        set.dedup();
        return Some(FastRegex::Set(set));
    }
    let wild = |s: &str| match s {
        ".*" => Some(0),
        ".+" => Some(1),
        _ => None,
    };
    let head = pattern.get(..2).and_then(wild);
    let tail = pattern.len().checked_sub(2).and_then(|i| pattern.get(i..)).and_then(wild);
    let (start, end) =
        (if head.is_some() { 2 } else { 0 }, if tail.is_some() { pattern.len() - 2 } else { pattern.len() });
    let lit = literal(pattern.get(start..end)?)?;
    if lit.is_empty() {
        return None;
    }
    match (head, tail) {
        (None, Some(min_rest)) => Some(FastRegex::Prefix { lit, min_rest }),
        (Some(min_rest), None) => Some(FastRegex::Suffix { lit, min_rest }),
        (Some(0), Some(0)) => Some(FastRegex::Contains(lit)),
        _ => None,
    }
}

/// `(x)` or `(?:x)` → `x`, when `x` has no groups of its own.
fn strip_group(pattern: &str) -> &str {
    let inner = pattern.strip_prefix("(?:").or_else(|| pattern.strip_prefix('(')).and_then(|p| p.strip_suffix(')'));
    match inner {
        // A `\` before the closing paren would have escaped it.
        Some(inner) if !inner.contains(['(', ')']) && !ends_with_escape(inner) => inner,
        _ => pattern,
    }
}

fn ends_with_escape(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// `a|b|c` of plain literals → the unescaped literals.
fn literal_alternation(pattern: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in pattern.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '|' => {
                out.push(literal(&pattern[start..i])?);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(literal(&pattern[start..])?);
    Some(out)
}

/// Characters with a meaning in a regex; a `\` before one of them makes it literal.
const META: &[char] = &['\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$'];

/// The text a pattern matches if it is a plain literal (escaped metacharacters allowed).
fn literal(pattern: &str) -> Option<String> {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if META.contains(&e) => out.push(e),
                // Other escapes (\d, \n, \x41, \<, …) mean more than one character.
                _ => return None,
            },
            c if META.contains(&c) => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Whether a label name needs quotes in PromQL (Prometheus 3 accepts any UTF-8 name quoted).
fn quote_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name.char_indices().all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if plain {
        name.to_owned()
    } else {
        quote(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: MatchOp, value: &str) -> Matcher {
        Matcher::new(op, "l", value).expect("valid matcher")
    }

    /// Checks a matcher against values, each expected to match or not.
    #[track_caller]
    fn check(op: MatchOp, pattern: &str, cases: &[(&str, bool)]) {
        let matcher = m(op, pattern);
        for &(v, want) in cases {
            assert_eq!(matcher.matches(v), want, "{matcher} on {v:?}");
        }
    }

    #[test]
    fn equality() {
        check(MatchOp::Equal, "a", &[("a", true), ("", false), ("ab", false)]);
        check(MatchOp::NotEqual, "a", &[("a", false), ("", true), ("b", true)]);
        // `l=""` selects series without the label; `l!=""` those with it.
        check(MatchOp::Equal, "", &[("", true), ("x", false)]);
        check(MatchOp::NotEqual, "", &[("", false), ("x", true)]);
        assert!(m(MatchOp::Equal, "").matches_empty());
        assert!(!m(MatchOp::NotEqual, "").matches_empty());
        assert!(m(MatchOp::Equal, "a").set_matches().is_none());
    }

    #[test]
    fn regexes_are_anchored() {
        check(MatchOp::Regex, "foo", &[("foo", true), ("foobar", false), ("barfoo", false), ("", false)]);
        check(MatchOp::Regex, "fo+", &[("fooo", true), ("xfoo", false), ("foox", false)]);
        // Anchoring covers the whole alternation, not just its ends.
        check(MatchOp::Regex, "a|b.*", &[("a", true), ("ab", false), ("bxx", true), ("xb", false)]);
        check(MatchOp::Regex, "(a)|(b)c", &[("a", true), ("bc", true), ("ac", false), ("b", false)]);
    }

    #[test]
    fn dot_matches_newline() {
        check(MatchOp::Regex, "a.b", &[("a\nb", true), ("ab", false)]);
        check(MatchOp::Regex, ".*", &[("line\nbreak", true), ("", true)]);
        check(MatchOp::Regex, "x.*y", &[("x\n\ny", true)]);
        check(MatchOp::Regex, "foo.*", &[("foo\n", true)]);
    }

    #[test]
    fn empty_label_semantics() {
        // As in Prometheus: `=~""` and `=~".*"` select series without the label, `=~".+"` does not.
        assert!(m(MatchOp::Regex, "").matches_empty());
        assert!(m(MatchOp::Regex, ".*").matches_empty());
        assert!(!m(MatchOp::Regex, ".+").matches_empty());
        assert!(!m(MatchOp::NotRegex, "").matches_empty());
        assert!(!m(MatchOp::NotRegex, ".*").matches_empty());
        assert!(m(MatchOp::NotRegex, ".+").matches_empty());
        assert!(m(MatchOp::Regex, "a|").matches_empty());
        assert!(m(MatchOp::Regex, "a?").matches_empty());
        assert!(!m(MatchOp::Regex, "a").matches_empty());
        check(MatchOp::NotRegex, ".+", &[("", true), ("x", false), ("\n", false)]);
        check(MatchOp::NotRegex, "", &[("", false), ("x", true)]);
    }

    #[test]
    fn set_matches() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("a|b|c", Some(&["a", "b", "c"])),
            ("c|a|b|a", Some(&["a", "b", "c"])),
            ("foo", Some(&["foo"])),
            ("", Some(&[""])),
            ("a|", Some(&["", "a"])),
            ("(a|b)", Some(&["a", "b"])),
            ("(?:a|b)", Some(&["a", "b"])),
            (r"a\.b|c\|d", Some(&["a.b", "c|d"])),
            (r"x\\", Some(&[r"x\"])),
            ("ünï|cödé", Some(&["cödé", "ünï"])),
            ("a.b|c", None),
            ("a|b.*", None),
            ("(a|b)|c", None),
            ("(a)(b)", None),
            (r"\(a\)", Some(&["(a)"])),
            (r"\d|x", None),
            ("(?i)a|b", None),
            (".*", None),
            ("a{2}", None),
        ];
        for &(pattern, want) in cases {
            let got = m(MatchOp::Regex, pattern);
            let got: Option<Vec<&str>> = got.set_matches().map(|s| s.iter().map(String::as_str).collect());
            assert_eq!(got.as_deref(), want, "{pattern:?}");
        }
        // The set is just as valid for the negated op.
        assert_eq!(m(MatchOp::NotRegex, "x|y").set_matches().map(<[String]>::len), Some(2));
    }

    #[test]
    fn shortcuts_agree_with_the_regex_engine() {
        let big_set: String = (0..40).map(|i| format!("v{i}")).collect::<Vec<_>>().join("|");
        let patterns = [
            ".*",
            ".+",
            "",
            "a|b|c",
            "(a|bc)",
            "(?:ab|)",
            big_set.as_str(),
            "foo.*",
            "foo.+",
            ".*foo",
            ".+foo",
            ".*foo.*",
            ".*ö.*",
            r".*\..*",
            r"\(.*",
        ];
        let values = [
            "", "a", "b", "c", "bc", "ab", "foo", "foox", "xfoo", "xfoox", "fo", "f\no", "foo\n", "\nfoo", "ö", "xöx",
            ".", "..", "a.b", "v0", "v39", "v40", "v", "ü",
        ];
        for p in patterns {
            let fast = FastRegex::new(p).expect("valid");
            assert!(!matches!(fast, FastRegex::Regex(_)), "{p:?} should have a shortcut");
            let re = Regex::new(&format!("^(?s:{p})$")).expect("valid");
            for v in values {
                assert_eq!(fast.is_match(v), re.is_match(v), "{p:?} on {v:?}");
            }
        }
        // Forms deliberately left to the engine.
        for p in [".+foo.+", ".*.*", ".+.*", r"\.+.*", "foo.*bar", ".*foo.+", "(foo).*", r"a\d"] {
            assert!(matches!(FastRegex::new(p), Ok(FastRegex::Regex(_))), "{p:?}");
        }
    }

    proptest::proptest! {
        /// Whatever shortcut a pattern gets, it must answer as the anchored regex does.
        #[test]
        fn prepared_patterns_agree_with_the_regex_engine(
            parts in proptest::collection::vec(
                proptest::sample::select(&["a", "b", "ö", ".", ".*", ".+", "|", r"\.", r"\|", "(", ")", "(?:", "?"][..]),
                0..7,
            ),
            values in proptest::collection::vec("[abö.|\n]{0,4}", 1..20),
        ) {
            let pattern = parts.concat();
            if let Ok(re) = Regex::new(&format!("^(?s:{pattern})$")) {
                let fast = FastRegex::new(&pattern).expect("compiles when the plain regex does");
                for v in &values {
                    proptest::prop_assert_eq!(fast.is_match(v), re.is_match(v), "{:?} on {:?}", pattern, v);
                }
            }
        }
    }

    #[test]
    fn invalid_regex_is_an_error() {
        let err = Matcher::new(MatchOp::Regex, "job", "a(b").expect_err("unbalanced group");
        assert!(matches!(&err, Error::InvalidMatcher(msg) if msg.starts_with("job=~\"a(b\":")), "{err}");
        assert!(Matcher::new(MatchOp::NotRegex, "job", "[").is_err());
        // The same text is fine as a literal.
        assert!(Matcher::new(MatchOp::Equal, "job", "a(b").is_ok());
    }

    #[test]
    fn display_is_promql() {
        let show = |op, name: &str, value: &str| Matcher::new(op, name, value).expect("valid").to_string();
        assert_eq!(show(MatchOp::Equal, "job", "api"), r#"job="api""#);
        assert_eq!(show(MatchOp::NotEqual, "job", ""), r#"job!="""#);
        assert_eq!(show(MatchOp::Regex, "path", r"/a\.b"), r#"path=~"/a\\.b""#);
        assert_eq!(show(MatchOp::NotRegex, "_x9", "a|b"), r#"_x9!~"a|b""#);
        assert_eq!(show(MatchOp::Equal, "msg", "say \"hi\"\n\ttab\u{1}\u{7f}"), r#"msg="say \"hi\"\n\ttab\x01\x7f""#);
        assert_eq!(
            show(MatchOp::Equal, "u", "grüße ✓ \u{a0}\u{200b}\u{10ffff}"),
            r#"u="grüße ✓ \u00a0\u200b\U0010ffff""#
        );
        // Names PromQL cannot take bare are quoted, as Prometheus 3 prints them.
        assert_eq!(show(MatchOp::Equal, "service.name", "x"), r#""service.name"="x""#);
        assert_eq!(show(MatchOp::Equal, "9lives", "x"), r#""9lives"="x""#);
    }

    #[test]
    fn equality_ignores_the_compiled_form() {
        let a = m(MatchOp::Regex, "a|b");
        assert_eq!(a, a.clone());
        assert_ne!(a, m(MatchOp::NotRegex, "a|b"));
        assert_ne!(a, m(MatchOp::Regex, "b|a"));
    }
}
