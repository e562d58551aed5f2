//! Syntax errors of Go's `regexp/syntax` (with Prometheus's flags: Perl syntax, `.` matching
//! newlines), worded as Go words them, e.g. ``error parsing regexp: missing closing ): `(` ``.
//!
//! Only errors are found; nothing is compiled. The parse stack keeps what Go's parser needs to
//! decide them: open groups, alternation bars, and for each operand how many copies its nested
//! counted repetitions make (Go refuses more than 1000).

/// The error Go gives when compiling `pattern`, if any.
pub(crate) fn check(pattern: &str) -> Result<(), String> {
    Parser { whole: pattern, stack: Vec::new() }
        .parse()
        .map_err(|(code, expr)| format!("error parsing regexp: {code}: `{expr}`"))
}

type Failure<'a> = (&'static str, &'a str);

const INVALID_CHAR_RANGE: &str = "invalid character class range";
const INVALID_ESCAPE: &str = "invalid escape sequence";
const MISSING_BRACKET: &str = "missing closing ]";
const MISSING_REPEAT_ARGUMENT: &str = "missing argument to repetition operator";
const INVALID_REPEAT_SIZE: &str = "invalid repeat count";
const MAX_REPEAT: u64 = 1000;

#[derive(Clone, Copy, PartialEq)]
enum Item {
    Paren,
    Bar,
    /// A parsed expression; `copies` is the least repeat budget under which Go's nested
    /// repetition check accepts it.
    Operand {
        copies: u64,
    },
}

struct Parser<'a> {
    whole: &'a str,
    stack: Vec<Item>,
}

impl<'a> Parser<'a> {
    fn parse(mut self) -> Result<(), Failure<'a>> {
        let mut t = self.whole;
        let mut last_repeat: &str = "";
        while let Some(c) = t.chars().next() {
            let mut repeat = "";
            match c {
                '(' if t[1..].starts_with('?') => t = self.perl_flags(t)?,
                '(' => {
                    self.stack.push(Item::Paren);
                    t = &t[1..];
                }
                '|' => {
                    self.alternative();
                    self.stack.push(Item::Bar);
                    t = &t[1..];
                }
                ')' => {
                    self.alternative();
                    let inner = self.stack.pop();
                    if self.stack.pop() != Some(Item::Paren) {
                        return Err(("unexpected )", self.whole));
                    }
                    self.stack.extend(inner);
                    t = &t[1..];
                }
                '[' => t = self.class(t)?,
                '*' | '+' | '?' => {
                    let after = self.repeat(t, &t[1..], None, last_repeat)?;
                    repeat = t;
                    t = after;
                }
                '{' => match repeat_counts(t) {
                    Some((min, max, after)) => {
                        let text = &t[..t.len() - after.len()];
                        if min.is_none_or(|m| m > MAX_REPEAT)
                            || max.is_some_and(|m| m > MAX_REPEAT)
                            || matches!((min, max), (Some(lo), Some(hi)) if lo > hi)
                        {
                            return Err((INVALID_REPEAT_SIZE, text));
                        }
                        let count = max.or(min).unwrap_or(0);
                        let after = self.repeat(
                            t,
                            after,
                            Some((count, min.unwrap_or(0) >= 2 || max.is_some_and(|m| m >= 2))),
                            last_repeat,
                        )?;
                        repeat = t;
                        t = after;
                    }
                    None => {
                        self.operand(0);
                        t = &t[1..];
                    }
                },
                '\\' => t = self.escape_outside_class(t)?,
                c => {
                    self.operand(0);
                    t = &t[c.len_utf8()..];
                }
            }
            last_repeat = repeat;
        }
        self.alternative();
        if self.stack.len() != 1 {
            return Err(("missing closing )", self.whole));
        }
        Ok(())
    }

    fn operand(&mut self, copies: u64) {
        self.stack.push(Item::Operand { copies });
    }

    /// Joins the operands above the innermost `(` or `|` into one, and that with the
    /// alternatives before a `|` below it.
    fn alternative(&mut self) {
        let mut copies = 0;
        while let Some(Item::Operand { copies: c }) = self.stack.last().copied() {
            self.stack.pop();
            copies = copies.max(c);
        }
        if self.stack.last() == Some(&Item::Bar) {
            self.stack.pop();
            if let Some(Item::Operand { copies: c }) = self.stack.pop() {
                copies = copies.max(c);
            }
        }
        self.operand(copies);
    }

    /// A repetition operator at the start of `before`, whose text ends where `after` starts.
    /// `counted` is `{n,m}`'s copy count and whether Go checks the nesting for it.
    fn repeat(
        &mut self,
        before: &'a str,
        mut after: &'a str,
        counted: Option<(u64, bool)>,
        last_repeat: &'a str,
    ) -> Result<&'a str, Failure<'a>> {
        if let Some(rest) = after.strip_prefix('?') {
            after = rest;
        }
        if !last_repeat.is_empty() {
            return Err(("invalid nested repetition operator", &last_repeat[..last_repeat.len() - after.len()]));
        }
        let text = &before[..before.len() - after.len()];
        let Some(Item::Operand { copies }) = self.stack.pop() else {
            return Err((MISSING_REPEAT_ARGUMENT, text));
        };
        let copies = match counted {
            None => copies,
            Some((0, _)) => 0,
            Some((n, check)) => {
                let needed = n.max(n.saturating_mul(copies));
                if check && needed > MAX_REPEAT {
                    return Err((INVALID_REPEAT_SIZE, text));
                }
                needed
            }
        };
        self.operand(copies);
        Ok(after)
    }

    /// `(?flags)`, `(?flags:…`, `(?P<name>…` and `(?<name>…`.
    fn perl_flags(&mut self, s: &'a str) -> Result<&'a str, Failure<'a>> {
        let named = if s.len() > 4 && s[2..].starts_with("P<") {
            Some(4)
        } else if s.len() > 3 && s[2..].starts_with('<') {
            Some(3)
        } else {
            None
        };
        if let Some(name_start) = named {
            let Some(end) = s.find('>') else {
                return Err(("invalid named capture", s));
            };
            let name = &s[name_start..end];
            if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
                return Err(("invalid named capture", &s[..=end]));
            }
            self.stack.push(Item::Paren);
            return Ok(&s[end + 1..]);
        }
        let mut t = &s[2..];
        let mut negated = false;
        let mut saw_flag = false;
        while let Some(c) = t.chars().next() {
            t = &t[c.len_utf8()..];
            match c {
                'i' | 'm' | 's' | 'U' => saw_flag = true,
                '-' if !negated => {
                    negated = true;
                    saw_flag = false;
                }
                ':' | ')' if !negated || saw_flag => {
                    if c == ':' {
                        self.stack.push(Item::Paren);
                    }
                    return Ok(t);
                }
                _ => break,
            }
        }
        Err(("invalid or unsupported Perl syntax", &s[..s.len() - t.len()]))
    }

    fn escape_outside_class(&mut self, t: &'a str) -> Result<&'a str, Failure<'a>> {
        match t.as_bytes().get(1) {
            Some(b'A' | b'b' | b'B' | b'z') => {
                self.operand(0);
                return Ok(&t[2..]);
            }
            Some(b'C') => return Err((INVALID_ESCAPE, &t[..2])),
            Some(b'Q') => {
                let lit = &t[2..];
                let (quoted, rest) = lit.split_once("\\E").unwrap_or((lit, ""));
                for _ in quoted.chars() {
                    self.operand(0);
                }
                return Ok(rest);
            }
            _ => {}
        }
        if let Some(rest) = unicode_class(t)? {
            self.operand(0);
            return Ok(rest);
        }
        if let Some(rest) = perl_class(t) {
            self.operand(0);
            return Ok(rest);
        }
        let (_, rest) = escape(t)?;
        self.operand(0);
        Ok(rest)
    }

    /// A bracketed class starting at `s`.
    fn class(&mut self, s: &'a str) -> Result<&'a str, Failure<'a>> {
        let mut t = &s[1..];
        if let Some(rest) = t.strip_prefix('^') {
            t = rest;
        }
        let mut first = true;
        while !t.starts_with(']') || first {
            first = false;
            if t.starts_with("[:") {
                if let Some(end) = t[2..].find(":]") {
                    let name = &t[..end + 4];
                    let bare = name[2..name.len() - 2].trim_start_matches('^');
                    if !POSIX_CLASSES.contains(&bare) || name[2..].starts_with("^^") {
                        return Err((INVALID_CHAR_RANGE, name));
                    }
                    t = &t[end + 4..];
                    continue;
                }
            }
            if let Some(rest) = unicode_class(t)? {
                t = rest;
                continue;
            }
            if let Some(rest) = perl_class(t) {
                t = rest;
                continue;
            }
            let range = t;
            let (lo, rest) = class_char(t, s)?;
            t = rest;
            if t.len() >= 2 && t.starts_with('-') && !t[1..].starts_with(']') {
                let (hi, rest) = class_char(&t[1..], s)?;
                t = rest;
                if hi < lo {
                    return Err((INVALID_CHAR_RANGE, &range[..range.len() - t.len()]));
                }
            }
        }
        self.operand(0);
        Ok(&t[1..])
    }
}

const POSIX_CLASSES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct", "space", "upper", "word",
    "xdigit",
];

/// One character of a class, at the start of `s`; `class` is the whole class for the error.
fn class_char<'a>(s: &'a str, class: &'a str) -> Result<(char, &'a str), Failure<'a>> {
    match s.chars().next() {
        None => Err((MISSING_BRACKET, class)),
        Some('\\') => escape(s),
        Some(c) => Ok((c, &s[c.len_utf8()..])),
    }
}

/// `\d`, `\s`, `\w` and their negations.
fn perl_class(t: &str) -> Option<&str> {
    let b = t.as_bytes();
    (b.len() >= 2 && b[0] == b'\\' && matches!(b[1], b'd' | b'D' | b's' | b'S' | b'w' | b'W')).then(|| &t[2..])
}

/// `\pL`, `\p{Greek}`, `\P{^Lu}`: the rest after it, or `None` when `t` is no such class.
fn unicode_class(t: &str) -> Result<Option<&str>, Failure<'_>> {
    let b = t.as_bytes();
    if b.len() < 2 || b[0] != b'\\' || (b[1] != b'p' && b[1] != b'P') {
        return Ok(None);
    }
    let Some(c) = t[2..].chars().next() else {
        return Err((INVALID_CHAR_RANGE, t));
    };
    let (seq, name) = if c == '{' {
        let Some(end) = t.find('}') else {
            return Err((INVALID_CHAR_RANGE, t));
        };
        (&t[..=end], &t[3..end])
    } else {
        let seq = &t[..2 + c.len_utf8()];
        (seq, &seq[2..])
    };
    let name = name.strip_prefix('^').unwrap_or(name);
    if !unicode_table_exists(name) {
        return Err((INVALID_CHAR_RANGE, seq));
    }
    Ok(Some(&t[seq.len()..]))
}

/// Whether Go knows the Unicode category or script `name`. Categories are listed; script
/// names are checked against the regex crate's tables, which know the same scripts (Go spells
/// them in title case with underscores, e.g. `Old_Italic`).
fn unicode_table_exists(name: &str) -> bool {
    const CATEGORIES: [&str; 38] = [
        "Any", "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N", "Nd", "Nl",
        "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So", "Z", "Zl", "Zp", "Zs", "LC",
    ];
    if CATEGORIES.contains(&name) {
        return true;
    }
    let title_case = name.split('_').all(|w| w.chars().next().is_some_and(|c| c.is_ascii_uppercase()));
    title_case
        && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        && regex::Regex::new(&format!(r"\p{{Script={name}}}")).is_ok()
}

/// An escape sequence at the start of `s` (which starts with `\`): the character and the rest.
fn escape(s: &str) -> Result<(char, &str), Failure<'_>> {
    let t = &s[1..];
    let Some(c) = t.chars().next() else {
        return Err(("trailing backslash at end of expression", ""));
    };
    let mut t = &t[c.len_utf8()..];
    let invalid = |rest: &str| -> Failure<'_> { (INVALID_ESCAPE, &s[..s.len() - rest.len()]) };
    match c {
        '1'..='7' if !t.starts_with(|d: char| ('0'..='7').contains(&d)) => Err(invalid(t)),
        '0'..='7' => {
            let mut v = c as u32 - '0' as u32;
            for _ in 1..3 {
                match t.chars().next() {
                    Some(d @ '0'..='7') => {
                        v = v * 8 + (d as u32 - '0' as u32);
                        t = &t[1..];
                    }
                    _ => break,
                }
            }
            Ok((char::from_u32(v).unwrap_or_default(), t))
        }
        'x' => {
            let Some(c) = t.chars().next() else { return Err(invalid(t)) };
            t = &t[c.len_utf8()..];
            if c == '{' {
                let mut v: u32 = 0;
                let mut digits = 0;
                loop {
                    let Some(d) = t.chars().next() else { return Err(invalid(t)) };
                    t = &t[d.len_utf8()..];
                    if d == '}' {
                        break;
                    }
                    match d.to_digit(16) {
                        Some(x) if v * 16 + x <= 0x10FFFF => v = v * 16 + x,
                        _ => return Err(invalid(t)),
                    }
                    digits += 1;
                }
                if digits == 0 {
                    return Err(invalid(t));
                }
                return Ok((char::from_u32(v).unwrap_or_default(), t));
            }
            let y = t.chars().next();
            if let Some(y) = y {
                t = &t[y.len_utf8()..];
            }
            match (c.to_digit(16), y.and_then(|y| y.to_digit(16))) {
                (Some(hi), Some(lo)) => Ok((char::from_u32(hi * 16 + lo).unwrap_or_default(), t)),
                _ => Err(invalid(t)),
            }
        }
        'a' => Ok(('\x07', t)),
        'f' => Ok(('\x0c', t)),
        'n' => Ok(('\n', t)),
        'r' => Ok(('\r', t)),
        't' => Ok(('\t', t)),
        'v' => Ok(('\x0b', t)),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((c, t)),
        _ => Err(invalid(t)),
    }
}

/// `{n}`, `{n,}` or `{n,m}` at the start of `s`: the counts (`None` for a number too big or an
/// open maximum) and the rest; `None` if `s` is no counted repetition, so `{` is a literal.
#[allow(clippy::type_complexity)]
fn repeat_counts(s: &str) -> Option<(Option<u64>, Option<u64>, &str)> {
    let s = s.strip_prefix('{')?;
    let (min, s) = repeat_int(s)?;
    let (max, s) = if let Some(s) = s.strip_prefix(',') {
        if s.starts_with('}') {
            (None, s)
        } else {
            let (max, s) = repeat_int(s)?;
            // A maximum too big makes the minimum invalid, as in Go.
            if max.is_none() {
                return Some((None, None, s.strip_prefix('}')?));
            }
            (max, s)
        }
    } else {
        (min, s)
    };
    Some((min, max, s.strip_prefix('}')?))
}

/// A decimal count without leading zeros; `None` inside when it does not fit (any count over
/// 1000 is refused anyway).
fn repeat_int(s: &str) -> Option<(Option<u64>, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (digits >= 2 && s.starts_with('0')) {
        return None;
    }
    Some((s[..digits].parse().ok(), &s[digits..]))
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn go_errors() {
        for (re, err) in [
            ("(", "missing closing ): `(`"),
            ("a)", "unexpected ): `a)`"),
            ("[a", "missing closing ]: `[a`"),
            ("x[b-a]", "invalid character class range: `b-a`"),
            ("\\q", "invalid escape sequence: `\\q`"),
            ("a\\", "trailing backslash at end of expression: ``"),
            ("*", "missing argument to repetition operator: `*`"),
            ("(|+)", "missing argument to repetition operator: `+`"),
            ("a**", "invalid nested repetition operator: `**`"),
            ("a*?+", "invalid nested repetition operator: `*?+`"),
            ("a{1001}", "invalid repeat count: `{1001}`"),
            ("a{2,1}", "invalid repeat count: `{2,1}`"),
            ("(a{100}){11}", "invalid repeat count: `{11}`"),
            ("(?x)", "invalid or unsupported Perl syntax: `(?x`"),
            ("(?i-)", "invalid or unsupported Perl syntax: `(?i-)`"),
            ("(?P<>a)", "invalid named capture: `(?P<>`"),
            ("(?P<a", "invalid named capture: `(?P<a`"),
            ("[[:foo:]]", "invalid character class range: `[:foo:]`"),
            ("\\p{Foo}", "invalid character class range: `\\p{Foo}`"),
            ("\\1", "invalid escape sequence: `\\1`"),
            ("\\C", "invalid escape sequence: `\\C`"),
            ("[\\b]", "invalid escape sequence: `\\b`"),
            ("a{2}{3}?", "invalid nested repetition operator: `{2}{3}?`"),
            ("\\p", "invalid character class range: `\\p`"),
        ] {
            assert_eq!(check(re), Err(format!("error parsing regexp: {err}")), "{re}");
        }
        for ok in [
            "",
            "a|b|",
            "()*",
            "^*",
            "a{,2}",
            "{",
            "x{2}{",
            "(?i)a",
            "(?i:a)",
            "(?P<n>a)",
            "(?<n>a)",
            "[]a]",
            "[a-]",
            "[[:^alpha:]]",
            "\\pL\\p{Greek}\\P{^Lu}",
            "\\Q*+\\E",
            "\\x{10FFFF}\\101\\0",
            ".*foo.*|bar{2,}",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }
}
