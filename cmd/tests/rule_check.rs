//! Rule files checked by `strata tools rules-check` and by promtool 3.x (`check rules`): the
//! same files are accepted and refused, for the same reasons, placed at the same lines and
//! columns. One file per kind of error promtool reports.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::strata_bin;
use strata_testkit::peer;

const CORPUS: &[(&str, &str)] = &[
    (
        "good",
        r#"groups:
  - name: api
    interval: 30s
    limit: 10
    query_offset: 1m
    rules:
      - record: job:http_requests:rate5m
        expr: sum by (job) (rate(http_requests_total[5m]))
        labels:
          team: api
      - alert: HighErrorRate
        expr: |
          sum by (job) (rate(errors_total[5m])) > 0.5
        for: 10m
        keep_firing_for: 5m
        labels:
          severity: "{{ if gt $value 1.0 }}page{{ else }}ticket{{ end }}"
        annotations:
          summary: "{{ $labels.job }} at {{ $value | humanizePercentage }}"
          description: '{{ range query "up" }}{{ .Labels.instance }} {{ end }}{{ printf "%.2f" $value }}'
  - name: other
    rules:
      - alert: Down
        expr: up == 0
"#,
    ),
    ("empty", "groups: []\n"),
    ("bad_expr", "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: sum(foo\n"),
    ("bad_expr_block", "groups:\n- name: g\n  rules:\n  - alert: a\n    expr: |\n      rate(x[5m]\n"),
    ("braces", "groups:\n  - name: g\n    rules:\n      - record: \"job:foo{x}\"\n        expr: up\n"),
    ("record_and_alert", "groups:\n- name: g\n  rules:\n  - record: r\n    alert: a\n    expr: up\n"),
    ("neither", "groups:\n- name: g\n  rules:\n  - expr: up\n"),
    ("no_expr", "groups:\n- name: g\n  rules:\n  - record: r\n"),
    (
        "record_fields",
        "groups:\n- name: g\n  rules:\n  - record: r\n    expr: up\n    for: 1m\n    keep_firing_for: 2m\n    annotations:\n      a: b\n",
    ),
    ("label_names", "groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    labels:\n      __name__: x\n"),
    ("unclosed_action", "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    labels:\n      sev: \"{{ $labels.x \"\n"),
    ("unknown_function", "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations:\n      s: \"{{ .Foo | nofunc }}\"\n"),
    ("missing_if_value", "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations:\n      s: \"{{ if }}x{{ end }}\"\n"),
    ("unexpected_eof", "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations:\n      s: \"{{ if 1 }}x\"\n"),
    ("undefined_variable", "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations:\n      s: \"{{ $nope }}\"\n"),
    ("duplicate_group", "groups:\n- name: g\n  rules: []\n- name: g\n  rules: []\n"),
    ("empty_group_name", "groups:\n- name: \"\"\n  rules: []\n"),
    ("unknown_group_field", "groups:\n- name: x\n  foo: 1\n  rules: []\n"),
    ("unknown_rule_field", "groups:\n- name: x\n  rules:\n  - record: r\n    expr: up\n    bar: 2\n"),
    ("unknown_top_field", "groups: []\nextra: 1\n"),
    ("bad_duration", "groups:\n- name: x\n  interval: 1x\n  rules: []\n"),
    ("bad_for", "groups:\n- name: x\n  rules:\n  - alert: a\n    expr: up\n    for: soon\n"),
    (
        "many_errors",
        "groups:\n  - name: g\n    rules:\n      - record: \"a{b}\"\n        expr: sum(x\n      - alert: A\n        expr: up == 0\n        labels:\n          sev: \"{{ $labels.x \"\n      - record: r\n        alert: b\n        expr: up\n  - name: g\n    rules: []\n",
    ),
];

/// Whether the check passed, and the error lines (those naming the file, and the continuation
/// lines of a YAML error), as a set: Go reports label and annotation errors in map order.
fn check(program: &Path, args: &[&str], file: &str) -> (bool, BTreeSet<String>) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{file}:")) || l.starts_with("  line "))
        .map(str::to_owned)
        .collect();
    (out.status.success(), lines)
}

#[test]
fn rule_files_are_checked_as_promtool_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let promtool = peer("promtool");
    let mut differences = Vec::new();
    for (name, content) in CORPUS {
        let path = dir.path().join(format!("{name}.yml"));
        std::fs::write(&path, content).unwrap();
        let file = path.to_str().unwrap();
        let want = check(&promtool, &["check", "rules", file], file);
        let got = check(strata_bin(), &["tools", "rules-check", "--rules", file], file);
        assert_eq!(want.0, *name == "good" || *name == "empty", "{name}: promtool's verdict is the corpus's");
        if want != got {
            differences.push(format!("{name}:\n  promtool {want:?}\n  strata   {got:?}"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
