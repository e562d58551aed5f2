//! Rule files in Prometheus's format (`groups: [{name, interval, query_offset, limit, labels,
//! rules}]`) plus Thanos's `partial_response_strategy`, read strictly and checked as
//! `promtool check rules` checks them (Prometheus's `rulefmt.Parse` and `Validate`), each error
//! worded and placed as promtool prints it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use strata_tsdb::gotext::parse_duration;

use crate::template::Template;
use crate::Error;

/// What a group does when a store fails during one of its queries (Thanos's
/// `partial_response_strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PartialResponse {
    /// The query fails, and so does the rule's evaluation.
    #[default]
    Abort,
    /// The query answers from the stores that answered, with a warning.
    Warn,
}

impl PartialResponse {
    pub fn as_str(self) -> &'static str {
        match self {
            PartialResponse::Abort => "ABORT",
            PartialResponse::Warn => "WARN",
        }
    }
}

/// One file's groups, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleFile {
    pub groups: Vec<GroupSpec>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    /// Milliseconds; `None` when the file does not say (the ruler's `--eval-interval`).
    pub interval: Option<i64>,
    /// Milliseconds subtracted from the evaluation time of every query.
    pub query_offset: Option<i64>,
    /// Most series (alerts) one rule may produce; 0 is no limit.
    pub limit: i64,
    pub labels: BTreeMap<String, String>,
    pub partial_response: PartialResponse,
    pub rules: Vec<RuleSpec>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    pub kind: RuleKind,
    pub expr: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RuleKind {
    Record {
        name: String,
    },
    Alert {
        name: String,
        /// Milliseconds.
        for_: i64,
        keep_firing_for: i64,
        annotations: BTreeMap<String, String>,
    },
}

impl RuleSpec {
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Record { name } | RuleKind::Alert { name, .. } => name,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    groups: Vec<GroupDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDoc {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    query_offset: Option<String>,
    #[serde(default)]
    limit: i64,
    #[serde(default)]
    rules: Vec<RuleDoc>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    partial_response_strategy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    #[serde(default)]
    record: String,
    #[serde(default)]
    alert: String,
    #[serde(default)]
    expr: String,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Reads and checks the rule file at `path`; the error lists every problem as promtool does,
/// each line starting with the file name.
pub fn parse_file(path: &Path) -> Result<RuleFile, Error> {
    let name = path.display().to_string();
    let content = std::fs::read_to_string(path)
        .map_err(|e| Error::RuleFile { file: name.clone(), errors: vec![format!("{name}: {e}")] })?;
    parse(&content, &name)
}

/// Checks `content`, read from `file` (named in every error).
pub fn parse(content: &str, file: &str) -> Result<RuleFile, Error> {
    parse_inner(content).map_err(|errs| Error::RuleFile {
        file: file.to_owned(),
        errors: errs.into_iter().map(|e| format!("{file}: {e}")).collect(),
    })
}

fn duration(field: &Option<String>, errs: &mut Vec<String>) -> i64 {
    match field.as_deref() {
        None | Some("") => 0,
        Some(s) => match parse_duration(s) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => {
                errs.push(e.to_string());
                0
            }
        },
    }
}

fn parse_inner(content: &str) -> Result<RuleFile, Vec<String>> {
    // An empty document (or one of only comments) is a file without groups, as in Go.
    let doc: FileDoc = if content.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
        FileDoc { groups: Vec::new() }
    } else {
        serde_norway::from_str(content).map_err(|e| vec![yaml_error(&e)])?
    };
    let mut decode_errs = Vec::new();
    let mut groups = Vec::with_capacity(doc.groups.len());
    for g in &doc.groups {
        let interval = g.interval.as_ref().map(|_| duration(&g.interval, &mut decode_errs));
        let query_offset = g.query_offset.as_ref().map(|_| duration(&g.query_offset, &mut decode_errs));
        let partial_response = match g.partial_response_strategy.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("abort") => PartialResponse::Abort,
            Some("warn") => PartialResponse::Warn,
            Some(other) => {
                decode_errs.push(format!("unknown partial_response_strategy {other:?}: use warn or abort"));
                PartialResponse::Abort
            }
        };
        let mut rules = Vec::with_capacity(g.rules.len());
        for r in &g.rules {
            let for_ = duration(&r.for_, &mut decode_errs);
            let keep_firing_for = duration(&r.keep_firing_for, &mut decode_errs);
            let kind = if r.alert.is_empty() {
                RuleKind::Record { name: r.record.clone() }
            } else {
                RuleKind::Alert { name: r.alert.clone(), for_, keep_firing_for, annotations: r.annotations.clone() }
            };
            rules.push(RuleSpec { kind, expr: r.expr.clone(), labels: r.labels.clone() });
        }
        groups.push(GroupSpec {
            name: g.name.clone(),
            interval,
            query_offset,
            limit: g.limit,
            labels: g.labels.clone(),
            partial_response,
            rules,
        });
    }
    if !decode_errs.is_empty() {
        return Err(decode_errs);
    }
    let errs = validate(&doc, &positions(content));
    if errs.is_empty() {
        Ok(RuleFile { groups })
    } else {
        Err(errs)
    }
}

/// serde_norway's message in the words of Go's yaml.v3 where they differ: an unknown field is
/// named with the Go type it is not in.
fn yaml_error(e: &serde_norway::Error) -> String {
    let msg = e.to_string();
    let line = e.location().map_or(0, |l| l.line());
    if let Some(rest) = msg.split("unknown field `").nth(1) {
        let field = rest.split('`').next().unwrap_or_default();
        let path = msg.split(": unknown field").next().unwrap_or_default();
        let ty = if path.contains(".rules[") {
            "rulefmt.Rule"
        } else if path.starts_with("groups[") {
            "rulefmt.RuleGroup"
        } else {
            "rulefmt.RuleGroups"
        };
        return format!("yaml: unmarshal errors:\n  line {line}: field {field} not found in type {ty}");
    }
    format!("yaml: {msg}")
}

fn validate(doc: &FileDoc, pos: &[Vec<RulePos>]) -> Vec<String> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (j, g) in doc.groups.iter().enumerate() {
        // Prometheus places group errors at a node it never fills in: always 0:0.
        if g.name.is_empty() {
            errs.push("0:0: Groupname must not be empty".to_owned());
        }
        if !seen.insert(g.name.as_str()) {
            errs.push(format!("0:0: groupname: \"{}\" is repeated in the same file", g.name));
        }
        for k in g.labels.keys() {
            if k.is_empty() || k == "__name__" {
                errs.push(format!("invalid label name: {k}"));
            }
        }
        for (i, r) in g.rules.iter().enumerate() {
            let p = pos.get(j).and_then(|g| g.get(i)).cloned().unwrap_or_default();
            let name = if r.alert.is_empty() { &r.record } else { &r.alert };
            let prefix = format!("group {}, rule {}, {}", go_quote(&g.name), i + 1, go_quote(name));
            for (place, msg) in validate_rule(r, &p) {
                match place {
                    Some(place) => errs.push(format!("{place}: {prefix}: {msg}")),
                    None => errs.push(format!("{prefix}: {msg}")),
                }
            }
        }
    }
    errs
}

fn go_quote(s: &str) -> String {
    strata_tsdb::gotext::quote(s)
}

fn at(p: Option<(usize, usize)>) -> String {
    let (l, c) = p.unwrap_or((0, 0));
    format!("{l}:{c}")
}

fn validate_rule(r: &RuleDoc, p: &RulePos) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let both = format!("{}: {}", at(p.record), at(p.alert));
    if !r.record.is_empty() && !r.alert.is_empty() {
        out.push((Some(both.clone()), "only one of 'record' and 'alert' must be set".to_owned()));
    }
    if r.record.is_empty() && r.alert.is_empty() {
        out.push((Some(both), "one of 'record' or 'alert' must be set".to_owned()));
    }
    if r.expr.is_empty() {
        out.push((Some(at(p.expr)), "field 'expr' must be set in rule".to_owned()));
    } else if let Err(e) = strata_query::parse::parse(&r.expr) {
        out.push((Some(at(p.expr)), format!("could not parse expression: {e}")));
    }
    if !r.record.is_empty() {
        let rec = Some(at(p.record));
        if !r.annotations.is_empty() {
            out.push((rec.clone(), "invalid field 'annotations' in recording rule".to_owned()));
        }
        if r.for_.as_deref().is_some_and(nonzero) {
            out.push((rec.clone(), "invalid field 'for' in recording rule".to_owned()));
        }
        if r.keep_firing_for.as_deref().is_some_and(nonzero) {
            out.push((rec.clone(), "invalid field 'keep_firing_for' in recording rule".to_owned()));
        }
        if r.record.contains(['{', '}']) {
            out.push((rec, format!("braces present in the recording rule name; should it be in expr?: {}", r.record)));
        }
    }
    for k in r.labels.keys() {
        if k.is_empty() || k == "__name__" {
            out.push((None, format!("invalid label name: {k}")));
        }
    }
    for k in r.annotations.keys() {
        if k.is_empty() {
            out.push((None, format!("invalid annotation name: {k}")));
        }
    }
    if !r.alert.is_empty() {
        let name = format!("__alert_{}", r.alert);
        for (what, map) in [("label", &r.labels), ("annotation", &r.annotations)] {
            for (k, v) in map {
                if let Err(e) = Template::parse(&name, v) {
                    out.push((None, format!("{what} {}: {e}", go_quote(k))));
                }
            }
        }
    }
    out
}

fn nonzero(s: &str) -> bool {
    parse_duration(s).is_ok_and(|d| !d.is_zero())
}

/// Where yaml.v3 places a rule's `record`, `alert` and `expr` values (1-based line and column).
#[derive(Clone, Debug, Default, PartialEq)]
struct RulePos {
    record: Option<(usize, usize)>,
    alert: Option<(usize, usize)>,
    expr: Option<(usize, usize)>,
}

/// The places of every rule's values, per group, read from the file's block layout (the layout
/// of every rule file in practice; rules written in flow style get no places, 0:0).
fn positions(content: &str) -> Vec<Vec<RulePos>> {
    let lines: Vec<&str> = content.lines().collect();
    let mut groups: Vec<Vec<RulePos>> = Vec::new();
    let mut in_groups = false;
    // Column of the group items' dash, of the `rules:` key, of the rule items' dash and of
    // the current rule's keys.
    let mut group_dash: Option<usize> = None;
    let mut rules_key: Option<usize> = None;
    let mut rule_dash: Option<usize> = None;
    let mut rule_keys: Option<usize> = None;
    for (n, raw) in lines.iter().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let (dash, key_col, rest) = match trimmed.strip_prefix('-').filter(|r| r.is_empty() || r.starts_with(' ')) {
            Some(r) => {
                let after = r.trim_start();
                (true, indent + 1 + (r.len() - after.len()), after)
            }
            None => (false, indent, trimmed),
        };
        if indent == 0 && !dash {
            in_groups = rest.starts_with("groups:");
            (group_dash, rules_key, rule_dash, rule_keys) = (None, None, None, None);
            continue;
        }
        if !in_groups {
            continue;
        }
        if dash && group_dash.is_none_or(|g| g == indent) {
            group_dash = Some(indent);
            (rules_key, rule_dash, rule_keys) = (None, None, None);
            groups.push(Vec::new());
        } else if dash && rules_key.is_some_and(|r| indent >= r) && rule_dash.is_none_or(|d| d == indent) {
            rule_dash = Some(indent);
            rule_keys = Some(key_col);
            if let Some(g) = groups.last_mut() {
                g.push(RulePos::default());
            }
        } else if !dash && rules_key.is_some_and(|r| key_col <= r) {
            (rules_key, rule_dash, rule_keys) = (None, None, None);
        }
        let Some((key, value)) = rest.split_once(':') else { continue };
        let key = key.trim();
        if key == "rules" && rules_key.is_none() && group_dash.is_some() {
            rules_key = Some(key_col);
            continue;
        }
        if rule_keys != Some(key_col) || !matches!(key, "record" | "alert" | "expr") {
            continue;
        }
        let value_start = key_col + rest.len() - value.len();
        let place = if value.trim().is_empty() || value.trim_start().starts_with('#') {
            // The value starts on a later line.
            lines[n + 1..]
                .iter()
                .enumerate()
                .find(|(_, l)| !l.trim().is_empty())
                .map(|(k, l)| (n + 2 + k, l.len() - l.trim_start().len() + 1))
        } else {
            Some((n + 1, value_start + (value.len() - value.trim_start().len()) + 1))
        };
        if let Some(rule) = groups.last_mut().and_then(|g| g.last_mut()) {
            match key {
                "record" => rule.record = place,
                "alert" => rule.alert = place,
                _ => rule.expr = place,
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(content: &str) -> Vec<String> {
        match parse(content, "f.yml") {
            Ok(_) => Vec::new(),
            Err(Error::RuleFile { errors, .. }) => errors,
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn good_file() {
        let f = parse(
            "groups:\n- name: g\n  interval: 30s\n  partial_response_strategy: warn\n  rules:\n  - record: a:b\n    expr: sum(up)\n    labels:\n      x: \"1\"\n  - alert: Down\n    expr: up == 0\n    for: 5m\n    annotations:\n      summary: \"{{ $labels.job }} down\"\n",
            "f.yml",
        )
        .unwrap();
        let g = &f.groups[0];
        assert_eq!(g.interval, Some(30_000));
        assert_eq!(g.partial_response, PartialResponse::Warn);
        assert_eq!(g.rules[0].name(), "a:b");
        assert!(matches!(g.rules[1].kind, RuleKind::Alert { for_: 300_000, .. }));
    }

    #[test]
    fn errors_are_placed_as_promtool_places_them() {
        let content = "groups:\n  - name: g\n    rules:\n      - record: \"job:foo{x}\"\n        expr: sum(foo\n      - alert: A\n        expr: up == 0\n        labels:\n          sev: \"{{ $labels.x \"\n      - record: r\n        alert: b\n        expr: up\n  - name: g\n    rules: []\n";
        assert_eq!(
            errors(content),
            [
                "f.yml: 5:15: group \"g\", rule 1, \"job:foo{x}\": could not parse expression: 1:8: parse error: unclosed left parenthesis",
                "f.yml: 4:17: group \"g\", rule 1, \"job:foo{x}\": braces present in the recording rule name; should it be in expr?: job:foo{x}",
                "f.yml: group \"g\", rule 2, \"A\": label \"sev\": template: __alert_A:1: unclosed action",
                "f.yml: 10:17: 11:16: group \"g\", rule 3, \"b\": only one of 'record' and 'alert' must be set",
                "f.yml: 0:0: groupname: \"g\" is repeated in the same file",
            ]
        );
    }

    #[test]
    fn strict_fields_and_durations() {
        assert_eq!(
            errors("groups:\n- name: x\n  foo: 1\n  rules: []\n"),
            ["f.yml: yaml: unmarshal errors:\n  line 3: field foo not found in type rulefmt.RuleGroup"]
        );
        assert_eq!(errors("groups:\n- name: x\n  interval: 1x\n"), ["f.yml: unknown unit \"x\" in duration \"1x\""]);
        assert!(errors("").is_empty());
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        for bad in ["groups: [", "groups: 3", "\u{0}", "- a\n- b", "groups:\n- rules:\n  - {expr: \"(((\"}\n", "{{{{"] {
            assert!(!errors(bad).is_empty(), "{bad:?}");
        }
    }
}
