//! The functions of a Prometheus template: text/template's builtins and Prometheus's own
//! (`humanize*`, `query` and its helpers, string and regexp helpers), with Go's `fmt` verbs
//! for `printf`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use strata_tsdb::gotext::{format_g, format_g_prec, parse_float, quote};

use super::exec::{Exec, Val};

const FUNCS: &[&str] = &[
    // text/template's builtins.
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "js",
    "urlquery",
    "slice",
    "call",
    // Prometheus's.
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "reReplaceAll",
    "safeHtml",
    "match",
    "title",
    "toUpper",
    "toLower",
    "graphLink",
    "tableLink",
    "sortByLabel",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "toDuration",
    "pathPrefix",
    "externalURL",
    "parseDuration",
    "stripPort",
    "stripDomain",
    "now",
];

pub fn is_func(name: &str) -> bool {
    FUNCS.contains(&name)
}

fn arity(ex: &Exec<'_, '_>, name: &str, args: &[Val], want: usize) -> Result<(), String> {
    if args.len() != want {
        return Err(ex.fail(format!("wrong number of args for {name}: want {want} got {}", args.len())));
    }
    Ok(())
}

fn string<'v>(ex: &Exec<'_, '_>, name: &str, v: &'v Val) -> Result<&'v str, String> {
    match v {
        Val::Str(s) => Ok(s),
        other => Err(
            ex.fail(format!("error calling {name}: wrong type for value; expected string; got {}", other.type_name()))
        ),
    }
}

/// Prometheus's `convertToFloat`: floats, integers and strings that parse as floats.
fn float(ex: &Exec<'_, '_>, name: &str, v: &Val) -> Result<f64, String> {
    match v {
        Val::Float(f) => Ok(*f),
        Val::Int(i) => Ok(*i as f64),
        Val::Str(s) => parse_float(s).map_err(|e| ex.fail(format!("error calling {name}: {e}"))),
        other => Err(ex.fail(format!("error calling {name}: can't convert {} to float", other.type_name()))),
    }
}

fn sample<'v>(ex: &Exec<'_, '_>, name: &str, v: &'v Val) -> Result<&'v BTreeMap<&'static str, Val>, String> {
    match v {
        Val::Struct("*template.sample", f) => Ok(f),
        other => Err(ex.fail(format!(
            "error calling {name}: wrong type for value; expected *template.sample; got {}",
            other.type_name()
        ))),
    }
}

fn samples(ex: &Exec<'_, '_>, name: &str, v: &Val) -> Result<Rc<Vec<Val>>, String> {
    match v {
        Val::List(l) => Ok(l.clone()),
        other => Err(ex.fail(format!(
            "error calling {name}: wrong type for value; expected template.queryResult; got {}",
            other.type_name()
        ))),
    }
}

fn regex(ex: &Exec<'_, '_>, name: &str, pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| ex.fail(format!("error calling {name}: {e}")))
}

pub fn call(ex: &mut Exec<'_, '_>, name: &str, args: Vec<Val>) -> Result<Val, String> {
    let s = |v: String| Ok(Val::Str(v));
    match name {
        "and" | "or" => {
            if args.is_empty() {
                return Err(ex.fail(format!("wrong number of args for {name}: want at least 1 got 0")));
            }
            let want = name == "or";
            let last = args.len() - 1;
            for (i, a) in args.into_iter().enumerate() {
                if a.truth() == want || i == last {
                    return Ok(a);
                }
            }
            Ok(Val::Nil)
        }
        "not" => {
            arity(ex, name, &args, 1)?;
            Ok(Val::Bool(!args[0].truth()))
        }
        "len" => {
            arity(ex, name, &args, 1)?;
            let n = match &args[0] {
                Val::Str(x) => x.len(),
                Val::Map(m) => m.len(),
                Val::Dict(m) => m.len(),
                Val::List(l) => l.len(),
                other => return Err(ex.fail(format!("error calling len: len of type {}", other.type_name()))),
            };
            Ok(Val::Int(n as i64))
        }
        "index" => {
            let mut it = args.into_iter();
            let mut v = it.next().ok_or_else(|| ex.fail("wrong number of args for index: want at least 1 got 0"))?;
            for key in it {
                v = match (&v, &key) {
                    (Val::Map(m), Val::Str(k)) => Val::Str(m.get(k).cloned().unwrap_or_default()),
                    (Val::Dict(m), Val::Str(k)) => m.get(k).cloned().unwrap_or(Val::Nil),
                    (Val::List(l), Val::Int(i)) => match usize::try_from(*i).ok().and_then(|i| l.get(i)) {
                        Some(x) => x.clone(),
                        None => return Err(ex.fail(format!("error calling index: index out of range: {i}"))),
                    },
                    (Val::Str(t), Val::Int(i)) => match usize::try_from(*i).ok().and_then(|i| t.as_bytes().get(i)) {
                        Some(b) => Val::Int(i64::from(*b)),
                        None => return Err(ex.fail(format!("error calling index: index out of range: {i}"))),
                    },
                    (Val::Nil, _) => return Err(ex.fail("error calling index: index of untyped nil")),
                    (c, k) => {
                        return Err(ex.fail(format!(
                            "error calling index: cannot index {} with {}",
                            c.type_name(),
                            k.type_name()
                        )))
                    }
                };
            }
            Ok(v)
        }
        "print" => s(sprint(&args)),
        "println" => {
            let parts: Vec<String> = args.iter().map(Val::to_text).collect();
            s(format!("{}\n", parts.join(" ")))
        }
        "printf" => {
            let mut it = args.into_iter();
            let f = it.next().ok_or_else(|| ex.fail("wrong number of args for printf: want at least 1 got 0"))?;
            let f = string(ex, name, &f)?.to_owned();
            s(sprintf(&f, &it.collect::<Vec<_>>()))
        }
        "eq" => {
            if args.len() < 2 {
                return Err(ex.fail("error calling eq: missing argument for comparison"));
            }
            for b in &args[1..] {
                if compare(ex, name, &args[0], b, true)? == std::cmp::Ordering::Equal {
                    return Ok(Val::Bool(true));
                }
            }
            Ok(Val::Bool(false))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(ex, name, &args, 2)?;
            let o = compare(ex, name, &args[0], &args[1], name == "ne")?;
            Ok(Val::Bool(match name {
                "ne" => o.is_ne(),
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            }))
        }
        "html" => s(sprint(&args)
            .replace('&', "&amp;")
            .replace('\'', "&#39;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;")),
        "js" => {
            let mut out = String::new();
            for c in sprint(&args).chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '"' => out.push_str("\\\""),
                    '<' => out.push_str("\\u003C"),
                    '>' => out.push_str("\\u003E"),
                    '&' => out.push_str("\\u0026"),
                    '=' => out.push_str("\\u003D"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(out, "\\u{:04X}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            s(out)
        }
        "urlquery" => s(form_urlencoded::byte_serialize(sprint(&args).as_bytes()).collect()),
        "slice" => {
            let mut it = args.iter();
            let v = it.next().ok_or_else(|| ex.fail("wrong number of args for slice: want at least 1 got 0"))?;
            let text = string(ex, name, v)?;
            let idx: Vec<i64> = it.map(|a| if let Val::Int(i) = a { *i } else { -1 }).collect();
            let (a, b) = match idx.as_slice() {
                [] => (0, text.len() as i64),
                [a] => (*a, text.len() as i64),
                [a, b] => (*a, *b),
                _ => return Err(ex.fail("error calling slice: too many slice indexes")),
            };
            match text.get(usize::try_from(a).unwrap_or(usize::MAX)..usize::try_from(b).unwrap_or(usize::MAX)) {
                Some(t) if a <= b => s(t.to_owned()),
                _ => Err(ex.fail(format!("error calling slice: index out of range: {a}:{b}"))),
            }
        }
        "call" => Err(ex.fail("error calling call: Prometheus templates have no function values")),
        "query" => {
            arity(ex, name, &args, 1)?;
            let q = string(ex, name, &args[0])?;
            let result = (ex.data.query)(q).map_err(|e| ex.fail(format!("error calling query: {e}")))?;
            Ok(Val::List(Rc::new(result.into_iter().map(|r| sample_val(r.labels, r.value)).collect())))
        }
        "first" => {
            arity(ex, name, &args, 1)?;
            let l = samples(ex, name, &args[0])?;
            l.first().cloned().ok_or_else(|| ex.fail("error calling first: first() called on vector with no elements"))
        }
        "label" => {
            arity(ex, name, &args, 2)?;
            let l = string(ex, name, &args[0])?.to_owned();
            let f = sample(ex, name, &args[1])?;
            Ok(match f.get("Labels") {
                Some(Val::Map(m)) => Val::Str(m.get(&l).cloned().unwrap_or_default()),
                _ => Val::Str(String::new()),
            })
        }
        "value" => {
            arity(ex, name, &args, 1)?;
            Ok(sample(ex, name, &args[0])?.get("Value").cloned().unwrap_or(Val::Float(0.0)))
        }
        "strvalue" => {
            arity(ex, name, &args, 1)?;
            Ok(match sample(ex, name, &args[0])?.get("Labels") {
                Some(Val::Map(m)) => Val::Str(m.get("__value__").cloned().unwrap_or_default()),
                _ => Val::Str(String::new()),
            })
        }
        "args" => Ok(Val::Dict(Rc::new(args.into_iter().enumerate().map(|(i, a)| (format!("arg{i}"), a)).collect()))),
        "reReplaceAll" => {
            arity(ex, name, &args, 3)?;
            let re = regex(ex, name, string(ex, name, &args[0])?)?;
            let repl = string(ex, name, &args[1])?;
            s(re.replace_all(string(ex, name, &args[2])?, repl).into_owned())
        }
        "match" => {
            arity(ex, name, &args, 2)?;
            let re = regex(ex, name, string(ex, name, &args[0])?)?;
            Ok(Val::Bool(re.is_match(string(ex, name, &args[1])?)))
        }
        "safeHtml" | "toUpper" | "toLower" | "title" | "stripPort" | "stripDomain" | "graphLink" | "tableLink" => {
            arity(ex, name, &args, 1)?;
            let t = string(ex, name, &args[0])?;
            s(match name {
                "toUpper" => t.to_uppercase(),
                "toLower" => t.to_lowercase(),
                "title" => title(t),
                "stripPort" => strip_port(t),
                "stripDomain" => strip_domain(t),
                "graphLink" => format!("/graph?g0.expr={}&g0.tab=0", query_escape(t)),
                "tableLink" => format!("/graph?g0.expr={}&g0.tab=1", query_escape(t)),
                _ => t.to_owned(),
            })
        }
        "sortByLabel" => {
            arity(ex, name, &args, 2)?;
            let l = string(ex, name, &args[0])?.to_owned();
            let mut v: Vec<Val> = samples(ex, name, &args[1])?.as_ref().clone();
            let key = |x: &Val| match x {
                Val::Struct(_, f) => match f.get("Labels") {
                    Some(Val::Map(m)) => m.get(&l).cloned().unwrap_or_default(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            v.sort_by_key(key);
            Ok(Val::List(Rc::new(v)))
        }
        "humanize" | "humanize1024" | "humanizeDuration" | "humanizePercentage" | "humanizeTimestamp" => {
            arity(ex, name, &args, 1)?;
            let v = float(ex, name, &args[0])?;
            s(match name {
                "humanize" => humanize(v),
                "humanize1024" => humanize1024(v),
                "humanizeDuration" => humanize_duration(v),
                "humanizePercentage" => format!("{}%", format_g_prec(v * 100.0, 4)),
                _ => humanize_timestamp(v).map_err(|e| ex.fail(format!("error calling {name}: {e}")))?,
            })
        }
        "toTime" => {
            arity(ex, name, &args, 1)?;
            let v = float(ex, name, &args[0])?;
            s(humanize_timestamp(v).map_err(|e| ex.fail(format!("error calling {name}: {e}")))?)
        }
        "toDuration" => {
            arity(ex, name, &args, 1)?;
            let v = float(ex, name, &args[0])?;
            s(strata_tsdb::gotext::format_duration((v * 1e9) as i128))
        }
        "parseDuration" => {
            arity(ex, name, &args, 1)?;
            let d = strata_tsdb::gotext::parse_duration(string(ex, name, &args[0])?)
                .map_err(|e| ex.fail(format!("error calling parseDuration: {e}")))?;
            Ok(Val::Float(d.as_secs_f64()))
        }
        "pathPrefix" => {
            let url = ex.data.external_url;
            let path = url.split_once("://").map_or(url, |(_, r)| r.find('/').map_or("", |i| &r[i..]));
            s(path.to_owned())
        }
        "externalURL" => s(ex.data.external_url.to_owned()),
        "now" => Ok(Val::Float(ex.data.now)),
        other => Err(ex.fail(format!("function {other:?} not defined"))),
    }
}

pub fn sample_val(labels: BTreeMap<String, String>, value: f64) -> Val {
    let mut f = BTreeMap::new();
    f.insert("Labels", Val::Map(Rc::new(labels)));
    f.insert("Value", Val::Float(value));
    Val::Struct("*template.sample", Rc::new(f))
}

fn query_escape(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)) {
            out.push(' ');
        }
        a.print(&mut out);
    }
    out
}

/// Go's comparison of basic kinds; `eq` allows any two values of one kind.
fn compare(ex: &Exec<'_, '_>, name: &str, a: &Val, b: &Val, equality: bool) -> Result<std::cmp::Ordering, String> {
    use std::cmp::Ordering;
    let bad = |m: &str| ex.fail(format!("error calling {name}: {m}"));
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Ok(x.cmp(y)),
        (Val::Float(x), Val::Float(y)) => Ok(x.partial_cmp(y).unwrap_or(Ordering::Less)),
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) if equality => Ok(if x == y { Ordering::Equal } else { Ordering::Less }),
        (Val::Bool(_), Val::Bool(_)) => Err(bad("invalid type for comparison")),
        (Val::Nil, _) | (_, Val::Nil) => Err(bad("invalid type for comparison")),
        (
            Val::Int(_) | Val::Float(_) | Val::Str(_) | Val::Bool(_),
            Val::Int(_) | Val::Float(_) | Val::Str(_) | Val::Bool(_),
        ) => Err(bad("incompatible types for comparison")),
        _ if equality => Err(bad("non-comparable types")),
        _ => Err(bad("invalid type for comparison")),
    }
}

fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format_g_prec(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", format_g_prec(v, 4))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return format_g_prec(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_g_prec(v, 4))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return format_g_prec(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", format_g_prec(v, 4));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let i = v as i64;
        let (seconds, minutes, hours, days) = (i % 60, (i / 60) % 60, (i / 3600) % 24, i / 86400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", format_g_prec(v, 4))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g_prec(v, 4))
}

/// Go's `time.Time.String()` of the millisecond `v` seconds after the epoch falls in, in UTC.
fn humanize_timestamp(v: f64) -> Result<String, String> {
    if !v.is_finite() {
        return Ok(format_g_prec(v, 4));
    }
    let nanos = v * 1e9;
    // 2^63 ns, the end of Go's int64 nanoseconds.
    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&nanos) {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            format_g(v)
        ));
    }
    let ms = (nanos as i64) / 1_000_000;
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else { return Ok(format_g_prec(v, 4)) };
    let mut out = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let frac = ms.rem_euclid(1000);
    if frac != 0 {
        let digits = format!("{frac:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    Ok(out)
}

/// Go's deprecated `strings.Title`: the first letter of every word upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !(c.is_alphanumeric()) && c.is_whitespace()
        };
    }
    out
}

fn strip_port(host_port: &str) -> String {
    if let Some(rest) = host_port.strip_prefix('[') {
        if let Some((host, port)) = rest.split_once("]:") {
            if !port.contains(':') {
                return host.to_owned();
            }
        }
        return host_port.to_owned();
    }
    match host_port.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host.to_owned(),
        _ => host_port.to_owned(),
    }
}

fn strip_domain(host_port: &str) -> String {
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && !h.starts_with('[') => (h, Some(p)),
        _ => (host_port, None),
    };
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return host_port.to_owned();
    }
    let short = host.split('.').next().unwrap_or(host);
    match port {
        Some(p) => format!("{short}:{p}"),
        None => short.to_owned(),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %f %F %e %E %g %G %q %x %X %t %c
/// %%`, with flags `-+ 0`, width and precision; a verb that does not fit its operand, a missing
/// operand and extra operands print as Go prints them (`%!d(string=x)`).
pub fn sprintf(f: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&fc) = chars.peek() {
            match fc {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width: Option<usize> = None;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = Some(width.unwrap_or(0).saturating_mul(10).saturating_add(d as usize).min(1 << 16));
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                p = p.saturating_mul(10).saturating_add(d as usize).min(1 << 10);
                chars.next();
            }
            prec = Some(p);
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let bad = || {
            let mut s = format!("%!{verb}({}=", arg.type_name());
            arg.print(&mut s);
            s.push(')');
            s
        };
        let sign = |s: String, neg: bool| {
            if neg || s.starts_with('-') {
                s
            } else if plus {
                format!("+{s}")
            } else if space {
                format!(" {s}")
            } else {
                s
            }
        };
        let body = match (verb, arg) {
            ('v', Val::Float(v)) | ('g', Val::Float(v)) => {
                sign(prec.map_or_else(|| format_g(*v), |p| format_g_prec(*v, p.max(1))), false)
            }
            ('G', Val::Float(v)) => {
                sign(prec.map_or_else(|| format_g(*v), |p| format_g_prec(*v, p.max(1))).to_uppercase(), false)
            }
            ('f' | 'F', Val::Float(v)) => sign(fixed(*v, prec.unwrap_or(6)), false),
            ('e' | 'E', Val::Float(v)) => {
                let s = sign(exponent(*v, prec.unwrap_or(6)), false);
                if verb == 'E' {
                    s.to_uppercase()
                } else {
                    s
                }
            }
            ('d' | 'v', Val::Int(i)) => sign(i.to_string(), false),
            ('x', Val::Int(i)) => format!("{i:x}"),
            ('X', Val::Int(i)) => format!("{i:X}"),
            ('c', Val::Int(i)) => u32::try_from(*i).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}').to_string(),
            ('q', Val::Int(i)) => {
                strata_tsdb::gotext::quote_rune(u32::try_from(*i).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}'))
            }
            ('s' | 'v', Val::Str(s)) => match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            ('q', Val::Str(s)) => quote(s),
            ('x', Val::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('X', Val::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
            ('t' | 'v', Val::Bool(b)) => b.to_string(),
            ('v', other) => other.to_text(),
            ('s', Val::Map(_) | Val::Dict(_) | Val::List(_) | Val::Struct(..)) => arg.to_text(),
            _ => bad(),
        };
        let len = body.chars().count();
        match width {
            Some(w) if w > len => {
                let pad = w - len;
                if minus {
                    out.push_str(&body);
                    out.extend(std::iter::repeat_n(' ', pad));
                } else if zero && matches!(arg, Val::Int(_) | Val::Float(_)) && !body.contains(['I', 'N']) {
                    let (s, digits) = match body.strip_prefix(['-', '+', ' ']) {
                        Some(d) => (&body[..1], d),
                        None => ("", body.as_str()),
                    };
                    out.push_str(s);
                    out.extend(std::iter::repeat_n('0', pad));
                    out.push_str(digits);
                } else {
                    out.extend(std::iter::repeat_n(' ', pad));
                    out.push_str(&body);
                }
            }
            _ => out.push_str(&body),
        }
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[next..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}=", a.type_name());
            a.print(&mut out);
        }
        out.push(')');
    }
    out
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".to_owned())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned())
    } else {
        None
    }
}

/// `%.Nf`; Rust rounds the exact value half to even, as Go does.
fn fixed(v: f64, prec: usize) -> String {
    special(v).unwrap_or_else(|| format!("{v:.prec$}"))
}

/// `%.Ne`: Go writes the exponent with a sign and at least two digits.
fn exponent(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let s = format!("{v:.prec$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs())
}
