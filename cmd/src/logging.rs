//! Log output: logfmt by default (`ts=… level=info msg="…" key=value`, as Thanos logs), JSON
//! with `--log.format=json`.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Installs the global subscriber. `level` is a tracing filter (`info`, `debug`, `strata_tsdb=debug`).
pub fn init(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("invalid --log.level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Logfmt => builder.event_format(Logfmt).init(),
    }
    Ok(())
}

struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let meta = event.metadata();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut line = format!("ts={} level={}", rfc3339_millis(now), meta.level().as_str().to_ascii_lowercase());
        let _ = write!(line, " caller={}", meta.module_path().unwrap_or(meta.target()));
        let mut v = LogfmtVisitor { line: &mut line, msg: None };
        event.record(&mut v);
        if let Some(msg) = v.msg.take() {
            let _ = write!(line, " msg={}", quote(&msg));
        }
        writeln!(w, "{line}")
    }
}

struct LogfmtVisitor<'a> {
    line: &'a mut String,
    msg: Option<String>,
}

impl Visit for LogfmtVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl LogfmtVisitor<'_> {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.msg = Some(value);
        } else {
            let _ = write!(self.line, " {}={}", field.name(), quote(&value));
        }
    }
}

/// A logfmt value as go-logfmt writes it (Thanos logs through go-kit, which uses it). This is not
/// Go's `strconv.Quote`: it quotes only values with a byte up to the ASCII space, `=`, `"` or
/// U+FFFD, and escapes like JSON (`\u001b`, not `\x1b`), leaving DEL and non-ASCII as they are.
/// An empty value is written as nothing (`key=`).
fn quote(v: &str) -> String {
    if !v.chars().any(|c| c <= ' ' || c == '=' || c == '"' || c == char::REPLACEMENT_CHARACTER) {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' || c == char::REPLACEMENT_CHARACTER => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `2026-11-21T07:43:33.123Z` without pulling in a date crate.
fn rfc3339_millis(since_epoch: std::time::Duration) -> String {
    let secs = since_epoch.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_millis(std::time::Duration::from_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(std::time::Duration::from_millis(1_795_247_013_123)), "2026-11-21T07:43:33.123Z");
        assert_eq!(rfc3339_millis(std::time::Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    /// Expected values are what go-logfmt v0.6 writes.
    #[test]
    fn quoting() {
        for (value, want) in [
            ("abc", "abc"),
            ("a b", r#""a b""#),
            ("", ""),
            ("a=b", r#""a=b""#),
            ("a\"b", r#""a\"b""#),
            (r"a\b", r"a\b"),
            ("a\nb\tc\rd", r#""a\nb\tc\rd""#),
            ("\x01\x1b\x7f", "\"\\u0001\\u001b\x7f\""),
            ("é☺", "é☺"),
            ("\u{fffd}", r#""\ufffd""#),
            ("\u{a0}nbsp", "\u{a0}nbsp"),
        ] {
            assert_eq!(quote(value), want, "{value:?}");
        }
    }
}
