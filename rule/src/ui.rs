//! The Rules and Alerts pages (`/rules`, `/alerts`) as Prometheus's show them: every group
//! with its rules, their health, last error, last evaluation and evaluation time; every
//! alerting rule with its alerts' state, labels, active time, value and annotations. Plain
//! HTML rendered on the server in the query page's style, every value escaped.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::alert::{AlertState, LabelMap};
use crate::api::format_e;
use crate::notifier::rfc3339;
use crate::rulefmt::RuleKind;
use crate::ruler::{RuleState, Ruler};
use strata_tsdb::gotext::format_model_duration;

/// The same look as the query page (query/src/ui).
const STYLE: &str = r#"
  :root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: #f6f8fa; }
  header { background: #24292f; color: #fff; padding: 8px 16px; font-weight: 600; }
  header a { color: #fff; margin-left: 16px; font-weight: 400; }
  main { max-width: 1200px; margin: 16px auto; padding: 0 16px; }
  h2 { font-size: 16px; margin: 16px 0 8px; }
  table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); font: 13px/1.4 ui-monospace, monospace; margin-bottom: 16px; }
  th { text-align: left; padding: 4px 6px; color: var(--muted); font-weight: 600; }
  td { border-top: 1px solid var(--line); padding: 4px 6px; vertical-align: top; word-break: break-all; }
  pre { margin: 0; white-space: pre-wrap; }
  .ok, .inactive { color: var(--ok); } .err, .firing { color: var(--bad); } .unknown, .pending { color: var(--warn); }
  .muted { color: var(--muted); }
"#;

/// `s` with HTML's special characters as entities, safe in text and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Strata {title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header>Strata <a href=\"/alerts\">Alerts</a> <a href=\"/rules\">Rules</a></header>\n\
         <main>\n{body}</main>\n</body>\n</html>\n"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// `{a="1", b="2"}` as PromQL writes label sets, escaped.
fn labels_text(labels: &LabelMap) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={}", strata_tsdb::gotext::quote(v))).collect();
    escape(&format!("{{{}}}", pairs.join(", ")))
}

/// A rule as Prometheus's Rules page prints it: its YAML.
fn rule_yaml(r: &RuleState) -> String {
    let mut y = String::new();
    match &r.spec.kind {
        RuleKind::Record { name } => {
            let _ = writeln!(y, "record: {name}");
        }
        RuleKind::Alert { name, .. } => {
            let _ = writeln!(y, "alert: {name}");
        }
    }
    let _ = writeln!(y, "expr: {}", yaml_scalar(&r.spec.expr));
    if let RuleKind::Alert { for_, keep_firing_for, annotations, .. } = &r.spec.kind {
        if *for_ > 0 {
            let _ = writeln!(y, "for: {}", format_model_duration(*for_));
        }
        if *keep_firing_for > 0 {
            let _ = writeln!(y, "keep_firing_for: {}", format_model_duration(*keep_firing_for));
        }
        write_map(&mut y, "annotations", annotations);
    }
    write_map(&mut y, "labels", &r.spec.labels);
    escape(&y)
}

/// `s` as a YAML scalar: plain where YAML reads it back as the same string, else quoted.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.trim() == s
        && !s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c))
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !s.contains(|c: char| c.is_control())
        && !matches!(s, "true" | "false" | "null" | "~" | "yes" | "no" | "on" | "off")
        && s.parse::<f64>().is_err();
    if plain {
        s.to_owned()
    } else {
        strata_tsdb::gotext::quote(s)
    }
}

fn write_map(y: &mut String, name: &str, map: &LabelMap) {
    if map.is_empty() {
        return;
    }
    let _ = writeln!(y, "{name}:");
    for (k, v) in map {
        let _ = writeln!(y, "  {k}: {}", yaml_scalar(v));
    }
}

fn last_eval(ms: Option<i64>) -> String {
    ms.map_or_else(|| "never".to_owned(), rfc3339)
}

async fn rules(State(ruler): State<Arc<Ruler>>) -> Response {
    let mut b = String::new();
    let groups = ruler.groups();
    if groups.is_empty() {
        b.push_str("<p class=\"muted\">No rule groups are loaded.</p>\n");
    }
    for g in groups {
        let (last, took) = match *g.last_eval.lock() {
            Some((t, took)) => (rfc3339(t), format!("{took:.3}s")),
            None => ("never".to_owned(), String::new()),
        };
        let _ = writeln!(
            b,
            "<h2>{} <span class=\"muted\">{} · every {} · last evaluation {} {}</span></h2>",
            escape(&g.spec.name),
            escape(&g.file),
            format_model_duration(g.interval),
            escape(&last),
            escape(&took),
        );
        b.push_str(
            "<table>\n<tr><th>Rule</th><th>State</th><th>Error</th><th>Last evaluation</th><th>Evaluation time</th></tr>\n",
        );
        for r in &g.rules {
            let r = r.lock();
            let health = r.health.as_str();
            let _ = writeln!(
                b,
                "<tr><td><pre>{}</pre></td><td class=\"{health}\">{health}</td><td>{}</td><td>{}</td><td>{:.6}s</td></tr>",
                rule_yaml(&r),
                escape(&r.last_error),
                escape(&last_eval(r.last_eval)),
                r.eval_seconds,
            );
        }
        b.push_str("</table>\n");
    }
    page("rules", &b)
}

async fn alerts(State(ruler): State<Arc<Ruler>>) -> Response {
    let mut b = String::new();
    let mut any = false;
    for g in ruler.groups() {
        for r in &g.rules {
            let r = r.lock();
            let Some(a) = &r.alerting else { continue };
            any = true;
            let listed: Vec<_> = a.active.values().filter(|x| x.state != AlertState::Inactive).collect();
            let state = a.state().as_str();
            let _ = writeln!(
                b,
                "<h2><span class=\"{state}\">{}</span> <span class=\"muted\">({} active) · {} · {}</span></h2>",
                escape(&a.name),
                listed.len(),
                state,
                escape(&g.spec.name),
            );
            let _ = writeln!(b, "<table>\n<tr><td colspan=\"5\"><pre>{}</pre></td></tr>", rule_yaml(&r));
            if !listed.is_empty() {
                b.push_str(
                    "<tr><th>Labels</th><th>State</th><th>Active since</th><th>Value</th><th>Annotations</th></tr>\n",
                );
            }
            for alert in listed {
                let annotations: String = alert
                    .annotations
                    .iter()
                    .map(|(k, v)| format!("<div><b>{}</b>: {}</div>", escape(k), escape(v)))
                    .collect();
                let state = alert.state.as_str();
                let _ = writeln!(
                    b,
                    "<tr><td>{}</td><td class=\"{state}\">{state}</td><td>{}</td><td>{}</td><td>{annotations}</td></tr>",
                    labels_text(&alert.labels),
                    escape(&rfc3339(alert.active_at)),
                    escape(&format_e(alert.value)),
                );
            }
            b.push_str("</table>\n");
        }
    }
    if !any {
        b.push_str("<p class=\"muted\">No alerting rules are loaded.</p>\n");
    }
    page("alerts", &b)
}

/// `/rules` and `/alerts` over `ruler`.
pub fn router(ruler: Arc<Ruler>) -> Router {
    Router::new().route("/rules", get(rules)).route("/alerts", get(alerts)).with_state(ruler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_gives_meaning() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        let labels: LabelMap = [("a".to_string(), "\"><img src=x>".to_string())].into_iter().collect();
        assert_eq!(labels_text(&labels), "{a=&quot;\\&quot;&gt;&lt;img src=x&gt;&quot;}");
        assert_eq!(yaml_scalar("sum(rate(x[5m]))"), "sum(rate(x[5m]))");
        for quoted in ["", " a", "a: b", "#x", "'q'", "1.5", "true", "a\nb", "{a}"] {
            assert!(yaml_scalar(quoted).starts_with('"'), "{quoted:?}");
        }
    }
}
