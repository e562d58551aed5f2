//! Parser for Prometheus's promqltest script format (`load`, `clear`, `eval …` with expected
//! results and `expect` lines).

use regex::Regex;
use strata_tsdb::labels::Labels;

/// The bit pattern of a staleness marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeqValue {
    Omitted,
    Float(f64),
    /// A native histogram sample; its content does not matter here.
    Histogram,
}

#[derive(Debug)]
pub enum Command {
    Load { interval: i64, with_nhcb: bool, series: Vec<(Labels, Vec<SeqValue>)> },
    Clear,
    Eval(Box<Eval>),
}

#[derive(Debug, Clone)]
pub enum Matcher {
    Any,
    Exact(String),
    Regex(String),
}

impl Matcher {
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Exact(m) => m == s,
            Matcher::Regex(r) => Regex::new(r).is_ok_and(|re| re.is_match(s)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Instant { at: i64 },
    Range { start: i64, end: i64, step: i64 },
}

#[derive(Debug)]
pub enum Expected {
    Nothing,
    Scalar(f64),
    Series(Vec<(Labels, Vec<SeqValue>)>),
    String(String),
}

#[derive(Debug)]
pub struct Eval {
    /// 1-based line of the `eval` command.
    pub line: usize,
    pub expr: String,
    pub kind: Kind,
    pub fail: Option<Matcher>,
    pub ordered: bool,
    /// `eval_warn` / `eval_info`: at least one annotation of the kind.
    pub any_warn: bool,
    pub any_info: bool,
    pub warn: Vec<Matcher>,
    pub info: Vec<Matcher>,
    pub no_warn: bool,
    pub no_info: bool,
    /// `expect range vector from … to … step …` for an instant query.
    pub range_vector: Option<(i64, i64, i64)>,
    pub expected: Expected,
}

/// Parses a Prometheus duration (`1h30m`, `10s`, `500ms`, `0`) into milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    strata_tsdb::gotext::parse_duration(s).ok().map(|d| d.as_millis() as i64)
}

/// Lines with comments blanked, as the reference harness sees them.
fn lines(input: &str) -> Vec<String> {
    input
        .split('\n')
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_string()
            }
        })
        .collect()
}

pub fn parse_file(input: &str) -> Result<Vec<(usize, Command)>, String> {
    let lines = lines(input);
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l.split_whitespace().next().unwrap_or("").to_lowercase();
        let line_no = i + 1;
        if word == "clear" {
            cmds.push((line_no, Command::Clear));
            i += 1;
        } else if word.starts_with("load") {
            let (next, cmd) = parse_load(&lines, i)?;
            cmds.push((line_no, cmd));
            i = next;
        } else if word.starts_with("eval") {
            let (next, cmd) = parse_eval(&lines, i)?;
            cmds.push((line_no, Command::Eval(Box::new(cmd))));
            i = next;
        } else {
            return Err(format!("line {line_no}: invalid command {l:?}"));
        }
    }
    Ok(cmds)
}

fn parse_load(lines: &[String], i: usize) -> Result<(usize, Command), String> {
    let mut words = lines[i].split_whitespace();
    let head = words.next().unwrap_or("");
    let with_nhcb = head == "load_with_nhcb";
    let interval = words.next().and_then(parse_duration).ok_or_else(|| format!("line {}: bad load interval", i + 1))?;
    let mut series = Vec::new();
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let err = |e: String| format!("line {}: {e}", j + 1);
        let (labels, rest) = parse_labels(&lines[j]).map_err(err)?;
        match rest.strip_prefix("@st") {
            // The storage keeps no start timestamps: they are checked, not loaded.
            Some(start_times) => check_start_times(start_times).map_err(err)?,
            None => series.push((labels, parse_values(rest).map_err(err)?)),
        }
        j += 1;
    }
    Ok((j, Command::Load { interval, with_nhcb, series }))
}

fn parse_eval(lines: &[String], i: usize) -> Result<(usize, Eval), String> {
    let l = &lines[i];
    let err = |m: &str| format!("line {}: {m}", i + 1);
    let (head, rest) = l.split_once(char::is_whitespace).ok_or_else(|| err("bad eval"))?;
    let modifier = head.strip_prefix("eval").unwrap_or("").trim_start_matches('_');
    let rest = rest.trim_start();
    let (kind, expr) = if let Some(r) = rest.strip_prefix("instant") {
        let r = r.trim_start();
        let r = r.strip_prefix("at").ok_or_else(|| err("missing 'at'"))?.trim_start();
        let (t, expr) = r.split_once(char::is_whitespace).ok_or_else(|| err("missing expression"))?;
        (Kind::Instant { at: parse_duration(t).ok_or_else(|| err("bad time"))? }, expr.trim().to_string())
    } else if let Some(r) = rest.strip_prefix("range") {
        let re = Regex::new(r"^\s*from\s+(\S+)\s+to\s+(\S+)\s+step\s+(\S+)\s+(.+)$").map_err(|e| e.to_string())?;
        let c = re.captures(r).ok_or_else(|| err("bad range eval"))?;
        let d = |k: usize| parse_duration(&c[k]).ok_or_else(|| err("bad duration"));
        (Kind::Range { start: d(1)?, end: d(2)?, step: d(3)? }, c[4].trim().to_string())
    } else {
        return Err(err("bad eval kind"));
    };
    let mut ev = Eval {
        line: i + 1,
        expr,
        kind,
        fail: None,
        ordered: modifier == "ordered",
        any_warn: modifier == "warn",
        any_info: modifier == "info",
        warn: Vec::new(),
        info: Vec::new(),
        no_warn: false,
        no_info: false,
        range_vector: None,
        expected: Expected::Nothing,
    };
    if modifier == "fail" {
        ev.fail = Some(Matcher::Any);
    }
    let expect_re = Regex::new(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
        .map_err(|e| e.to_string())?;
    let range_re =
        Regex::new(r"^expect range vector\s+from\s+(\S+)\s+to\s+(\S+)\s+step\s+(\S+)$").map_err(|e| e.to_string())?;
    let mut series = Vec::new();
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let d = &lines[j];
        j += 1;
        if ev.fail.is_some() {
            if let Some(m) = d.strip_prefix("expected_fail_message") {
                ev.fail = Some(Matcher::Exact(m.trim().to_string()));
                break;
            }
            if let Some(m) = d.strip_prefix("expected_fail_regexp") {
                ev.fail = Some(Matcher::Regex(m.trim().to_string()));
                break;
            }
        }
        if let Some(c) = range_re.captures(d) {
            let p = |k: usize| parse_duration(&c[k]).ok_or_else(|| err("bad range vector"));
            ev.range_vector = Some((p(1)?, p(2)?, p(3)?));
            continue;
        }
        if let Some(s) = d.strip_prefix("expect string") {
            ev.expected = Expected::String(unquote(s.trim()).ok_or_else(|| err("bad expected string"))?);
            continue;
        }
        if d.split(' ').next() == Some("expect") {
            let c = expect_re.captures(d).ok_or_else(|| err("bad expect line"))?;
            let m = match c.get(2).map(|m| m.as_str()) {
                Some("msg") => Matcher::Exact(c[3].trim().to_string()),
                Some(_) => Matcher::Regex(c[3].trim().to_string()),
                None => Matcher::Any,
            };
            match &c[1] {
                "ordered" => ev.ordered = true,
                "fail" => ev.fail = Some(m),
                "warn" => ev.warn.push(m),
                "info" => ev.info.push(m),
                "no_warn" => ev.no_warn = true,
                _ => ev.no_info = true,
            }
            continue;
        }
        if let Some(f) = parse_number(d) {
            ev.expected = Expected::Scalar(f);
            break;
        }
        series.push(parse_series(d).map_err(|e| format!("line {j}: {e}"))?);
    }
    if !series.is_empty() {
        ev.expected = Expected::Series(series);
    }
    Ok((j, ev))
}

/// A scalar result line: an integer (Go's base prefixes allowed) or a float.
fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let int = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else {
        body.parse::<i64>().ok()
    };
    if let Some(n) = int {
        return Some(if neg { -(n as f64) } else { n as f64 });
    }
    parse_float(t)
}

/// A float as Go's `strconv.ParseFloat` accepts the forms used in test files.
fn parse_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        "nan" | "+nan" | "-nan" => return Some(f64::NAN),
        _ => {}
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) {
        return None;
    }
    s.parse().ok()
}

/// Unquotes a Go string literal (`"…"` with escapes, `'…'` or `` `…` ``).
pub fn unquote(s: &str) -> Option<String> {
    let q = s.chars().next()?;
    if !matches!(q, '"' | '\'' | '`') || s.len() < 2 || !s.ends_with(q) {
        return None;
    }
    let body = &s[1..s.len() - 1];
    if q == '`' {
        return Some(body.to_string());
    }
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'x' => {
                let h: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&h, 16).ok()?));
            }
            'u' => {
                let h: String = chars.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            'U' => {
                let h: String = chars.by_ref().take(8).collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Parses `metric{a="b"} 1 2+3x4 _ stale {{…}}` into labels and values.
pub fn parse_series(line: &str) -> Result<(Labels, Vec<SeqValue>), String> {
    let (labels, rest) = parse_labels(line)?;
    Ok((labels, parse_values(rest)?))
}

/// Parses the series descriptor at the start of `s`; returns the labels and the remainder.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    if i > 0 {
        pairs.push(("__name__".into(), s[..i].to_string()));
    }
    if b.get(i) == Some(&b'{') {
        i += 1;
        loop {
            while i < b.len() && (b[i] == b' ' || b[i] == b',' || b[i] == b'\t') {
                i += 1;
            }
            if i >= b.len() {
                return Err("unterminated label set".into());
            }
            if b[i] == b'}' {
                i += 1;
                break;
            }
            let (name, next) = if b[i] == b'"' {
                let end = quoted_end(s, i)?;
                (unquote(&s[i..end]).ok_or("bad quoted label name")?, end)
            } else {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                (s[start..i].to_string(), i)
            };
            i = next;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if b.get(i) != Some(&b'=') {
                // A lone quoted string inside braces is the metric name.
                pairs.push(("__name__".into(), name));
                continue;
            }
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let end = quoted_end(s, i)?;
            let value = unquote(&s[i..end]).ok_or("bad label value")?;
            i = end;
            pairs.push((name, value));
        }
    }
    if pairs.is_empty() && !s.starts_with("{}") {
        return Err(format!("no series descriptor in {s:?}"));
    }
    Ok((Labels::from_pairs(&pairs), &s[i..]))
}

/// End (exclusive) of the quoted string starting at `start`.
fn quoted_end(s: &str, start: usize) -> Result<usize, String> {
    let b = s.as_bytes();
    let q = *b.get(start).ok_or("expected a quoted string")?;
    if !matches!(q, b'"' | b'\'' | b'`') {
        return Err(format!("expected a quoted string at {start} in {s:?}"));
    }
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && q != b'`' {
            i += 2;
            continue;
        }
        if b[i] == q {
            return Ok(i + 1);
        }
        i += 1;
    }
    Err("unterminated string".into())
}

/// Checks the values of a start-timestamp line (`series@st -1m-1mx2 _ …`): durations relative
/// to each sample's time, in the value notation (`a+bxN`, `_xN`).
fn check_start_times(s: &str) -> Result<(), String> {
    let signed = |d: &str| {
        let unsigned = d.strip_prefix(['+', '-']).unwrap_or(d);
        parse_duration(unsigned).ok_or_else(|| format!("bad start time {d:?}"))
    };
    for item in value_items(s) {
        let body = match item.rfind('x') {
            Some(p) if p > 0 && p + 1 < item.len() && item[p + 1..].bytes().all(|c| c.is_ascii_digit()) => &item[..p],
            _ => item.as_str(),
        };
        if body == "_" {
            continue;
        }
        let (start, delta) = split_increment(body);
        signed(start)?;
        if let Some(d) = delta {
            signed(d)?;
        }
    }
    Ok(())
}

/// Splits the value part into items, keeping `{{…}}` histogram literals whole.
fn value_items(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth -= 1;
                cur.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn parse_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    for item in value_items(s) {
        // `…xN` repeats: N more values (N blanks for `_xN`).
        let (body, times) = match item.rfind('x') {
            Some(p) if p > 0 && p + 1 < item.len() && item[p + 1..].bytes().all(|c| c.is_ascii_digit()) => {
                (&item[..p], Some(item[p + 1..].parse::<usize>().map_err(|e| e.to_string())?))
            }
            _ => (item.as_str(), None),
        };
        if body == "_" {
            out.extend(std::iter::repeat_n(SeqValue::Omitted, times.unwrap_or(1)));
            continue;
        }
        if body.starts_with("{{") {
            let n = times.map_or(1, |t| t + 1);
            out.extend(std::iter::repeat_n(SeqValue::Histogram, n));
            continue;
        }
        if body == "stale" {
            out.extend(std::iter::repeat_n(SeqValue::Float(f64::from_bits(STALE_NAN)), times.map_or(1, |t| t + 1)));
            continue;
        }
        let (start, delta) = split_increment(body);
        let start = parse_float(start).ok_or_else(|| format!("bad value {item:?}"))?;
        let delta = match delta {
            Some(d) => Some(parse_float(d).ok_or_else(|| format!("bad increment in {item:?}"))?),
            None => None,
        };
        match (times, delta) {
            (None, None) => out.push(SeqValue::Float(start)),
            (None, Some(_)) => return Err(format!("increment without repetition in {item:?}")),
            (Some(n), d) => {
                let mut v = start;
                out.push(SeqValue::Float(v));
                for _ in 0..n {
                    // Repeated addition, as the reference parser accumulates.
                    v += d.unwrap_or(0.0);
                    out.push(SeqValue::Float(v));
                }
            }
        }
    }
    Ok(out)
}

/// `a+b` / `a-b` → (`a`, `+b`/`-b`); signs after an exponent marker stay with the number.
fn split_increment(s: &str) -> (&str, Option<&str>) {
    let b = s.as_bytes();
    for i in 1..b.len() {
        if (b[i] == b'+' || b[i] == b'-') && !matches!(b[i - 1], b'e' | b'E') {
            return (&s[..i], Some(&s[i..]));
        }
    }
    (s, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_notation() {
        let (l, v) = parse_series(r#"m{a="b"} 1+2x2 _x2 stale -1-1x1 {{schema:0 sum:1}}x1"#).unwrap();
        assert_eq!(l.get("a"), Some("b"));
        assert_eq!(l.get("__name__"), Some("m"));
        assert_eq!(v.len(), 3 + 2 + 1 + 2 + 2);
        assert_eq!(v[2], SeqValue::Float(5.0));
        assert_eq!(v[3], SeqValue::Omitted);
        assert_eq!(v[7], SeqValue::Float(-2.0));
        assert_eq!(v[8], SeqValue::Histogram);
    }

    #[test]
    fn start_time_lines_are_checked_and_skipped() {
        let cmds =
            parse_file("load 1m\n  m{a=\"b\"}@st _ -30s-1mx2 0-1mx1 -59999msx2 +1m -0ms\n  m{a=\"b\"} _ 1 2 3\n")
                .unwrap();
        let Command::Load { series, .. } = &cmds[0].1 else { panic!("not a load") };
        assert_eq!(series.len(), 1);
        assert!(parse_file("load 1m\n  m@st 1q\n").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("10s53ms"), Some(10_053));
        assert_eq!(parse_duration("0"), Some(0));
    }
}
