//! Cases of Prometheus's template/template_test.go (those without `define`, HTML mode or
//! time methods), with Go's outputs.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::exec::{execute_with_dot, Val};
use super::parse::Parser;
use super::{Data, QuerySample, Template};

fn query_result() -> Vec<QuerySample> {
    let s = |inst: &str, v: f64| QuerySample {
        labels: [("__name__", "metric"), ("instance", inst)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value: v,
    };
    vec![s("b", 21.0), s("a", 11.0)]
}

fn run(text: &str, dot: Option<Val>) -> Result<String, String> {
    let empty = BTreeMap::new();
    let query = |q: &str| -> Result<Vec<QuerySample>, String> {
        Ok(match q {
            "missing" => Vec::new(),
            "1.5" => vec![QuerySample { labels: BTreeMap::new(), value: 1.5 }],
            "metric{__value__='a'}" => vec![QuerySample {
                labels: [("__value__".to_string(), "a".to_string())].into_iter().collect(),
                value: 11.0,
            }],
            "metric{instance='a'}" => query_result().split_off(1),
            _ => query_result(),
        })
    };
    let data = Data {
        labels: &empty,
        external_labels: &empty,
        external_url: "http://testhost:9090/path/prefix",
        value: 0.0,
        now: 0.0,
        query: &query,
    };
    let nodes = Parser::parse("test", text)?;
    execute_with_dot("test", &nodes, &data, dot.unwrap_or(Val::Map(Rc::new(BTreeMap::new()))))
}

fn floats(v: &[f64]) -> Option<Val> {
    Some(Val::List(Rc::new(v.iter().map(|f| Val::Float(*f)).collect())))
}

fn ints(v: &[i64]) -> Option<Val> {
    Some(Val::List(Rc::new(v.iter().map(|f| Val::Int(*f)).collect())))
}

fn strs(v: &[&str]) -> Option<Val> {
    Some(Val::List(Rc::new(v.iter().map(|f| Val::Str(f.to_string())).collect())))
}

#[test]
fn prometheus_expansion_cases() {
    let cases: Vec<(&str, Option<Val>, &str)> = vec![
        ("plain text", None, "plain text"),
        ("{{ 1 }}", None, "1"),
        ("{{ \"<b>\" }}", None, "<b>"),
        ("{{ query \"1.5\" | first | value }}", None, "1.5"),
        ("{{ query \"metric{instance='a'}\" | first | value }}", None, "11"),
        ("{{ query \"metric{instance='a'}\" | first | label \"instance\" }}", None, "a"),
        ("{{ query \"metric{__value__='a'}\" | first | strvalue }}", None, "a"),
        ("{{ query \"metric{instance='a'}\" | first | label \"foo\" }}", None, ""),
        ("{{ $x := query \"metric\" | first }}{{ $x.Labels.foo }}", None, ""),
        ("{{ range query \"metric\" | sortByLabel \"instance\" }}{{.Labels.instance}}:{{.Value}}: {{end}}", None, "a:11: b:21: "),
        ("{{ \"foo.example.com\" | stripPort }}", None, "foo.example.com"),
        ("{{ \"foo.example.com:12345\" | stripPort }}", None, "foo.example.com"),
        ("{{ \"192.0.2.1\" | stripPort }}", None, "192.0.2.1"),
        ("{{ \"192.0.2.1:12345\" | stripPort }}", None, "192.0.2.1"),
        ("{{ \"2001:0DB8::1\" | stripPort }}", None, "2001:0DB8::1"),
        ("{{ \"[2001:0DB8::1]:12345\" | stripPort }}", None, "2001:0DB8::1"),
        ("{{ \"[2001:0DB8::1]::12345\" | stripPort }}", None, "[2001:0DB8::1]::12345"),
        ("{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }}", None, "xa"),
        ("{{ range . }}{{ humanize . }}:{{ end }}", floats(&[0.0, 1.0, 1234567.0, 0.12]), "0:1:1.235M:120m:"),
        ("{{ range . }}{{ humanize . }}:{{ end }}", strs(&["0.0", "1.0", "1234567.0", ".12"]), "0:1:1.235M:120m:"),
        ("{{ range . }}{{ humanize . }}:{{ end }}", ints(&[0, -1, 1, 1234567, i64::MAX]), "0:-1:1:1.235M:9.223E:"),
        ("{{ range . }}{{ humanize1024 . }}:{{ end }}", floats(&[0.0, 1.0, 1048576.0, 0.12]), "0:1:1Mi:0.12:"),
        ("{{ range . }}{{ humanize1024 . }}:{{ end }}", ints(&[0, -1, 1, 1234567, i64::MAX]), "0:-1:1:1.177Mi:8Ei:"),
        (
            "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
            floats(&[0.0, 1.0, 60.0, 3600.0, 86400.0, 86400.0 + 3600.0, -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0), 899.99]),
            "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:",
        ),
        (
            "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
            floats(&[0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]),
            "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:",
        ),
        ("{{ range . }}{{ humanizeDuration . }}:{{ end }}", ints(&[0, -1, 1, 1234567]), "0s:-1s:1s:14d 6h 56m 7s:"),
        (
            "{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}",
            floats(&[f64::INFINITY, f64::NEG_INFINITY, f64::NAN]),
            "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:",
        ),
        (
            "{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}",
            strs(&["+Inf", "-Inf", "NaN"]),
            "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:",
        ),
        (
            "{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}",
            None,
            "-22.22%:0%:12.35%:123.5%",
        ),
        ("{{ range . }}{{ humanizePercentage . }}:{{ end }}", ints(&[0, -1, 1, 1234567, i64::MAX]), "0%:-100%:100%:1.235e+08%:9.223e+20%:"),
        (
            "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
            ints(&[0, -1, 1, 1234567, 9223372036]),
            "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:",
        ),
        ("{{ 1435065584.128 | humanizeTimestamp }}", None, "2015-06-23 13:19:44.128 +0000 UTC"),
        ("{{ \"1435065584.128\" | humanizeTimestamp }}", None, "2015-06-23 13:19:44.128 +0000 UTC"),
        ("{{ \"aa bb CC\" | title }}", None, "Aa Bb CC"),
        ("{{ \"aa bb CC\" | toUpper }}", None, "AA BB CC"),
        ("{{ \"aA bB CC\" | toLower }}", None, "aa bb cc"),
        ("{{ match \"a+\" \"aa\" }} {{ match \"a+\" \"b\" }}", None, "true false"),
        ("{{ graphLink \"up\" }}", None, "/graph?g0.expr=up&g0.tab=0"),
        ("{{ tableLink \"up\" }}", None, "/graph?g0.expr=up&g0.tab=1"),
        ("{{ pathPrefix }}", None, "/path/prefix"),
        ("{{ externalURL }}", None, "http://testhost:9090/path/prefix"),
        ("{{ printf \"%0.2f\" (parseDuration \"1h2m10ms\") }}", None, "3720.01"),
        ("{{ \"foo.example.com\" | stripDomain }}", None, "foo"),
        ("{{ \"foo.example.com:12345\" | stripDomain }}", None, "foo:12345"),
        ("{{ \"192.0.2.1\" | stripDomain }}", None, "192.0.2.1"),
        ("{{ \"192.0.2.1:12345\" | stripDomain }}", None, "192.0.2.1:12345"),
        ("{{ \"2001:0DB8::1\" | stripDomain }}", None, "2001:0DB8::1"),
        ("{{ \"[2001:0DB8::1]:12345\" | stripDomain }}", None, "[2001:0DB8::1]:12345"),
        // text/template itself: control structures, comparisons, builtins.
        ("{{ if eq 1 1 }}a{{ else }}b{{ end }}", None, "a"),
        ("{{ if gt 1.5 2.0 }}a{{ else if lt 1.5 2.0 }}b{{ else }}c{{ end }}", None, "b"),
        ("{{ if and 1 0 }}a{{ else }}b{{ end }}{{ or 0 \"x\" }}{{ not true }}", None, "bxfalse"),
        ("{{- \"a\" -}}  \n {{ len \"abc\" }} {{ index . \"k\" }}", Some(Val::Map(Rc::new([("k".to_string(), "v".to_string())].into_iter().collect()))), "a3 v"),
        ("{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ else }}none{{ end }}", Some(Val::Map(Rc::new([("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())].into_iter().collect()))), "a=1;b=2;"),
        ("{{ range . }}x{{ else }}none{{ end }}", strs(&[]), "none"),
        ("{{ printf \"%s=%d %.3f %5.1f|%-4s|%q %v %x\" \"a\" 42 3.14159 2.25 \"b\" \"c\" 1e21 255 }}", None, "a=42 3.142   2.2|b   |\"c\" 1e+21 ff"),
        ("{{ printf \"%d %s\" \"x\" }}", None, "%!d(string=x) %!s(MISSING)"),
        ("{{ print 1 2 \"a\" 3 }}", None, "1 2a3"),
        ("{{/* a comment */}}ok", None, "ok"),
        ("{{ with .k }}{{ . }}{{ end }}{{ with .none }}x{{ else }}y{{ end }}", Some(Val::Map(Rc::new([("k".to_string(), "v".to_string())].into_iter().collect()))), "vy"),
    ];
    for (text, dot, want) in cases {
        assert_eq!(run(text, dot).as_deref(), Ok(want), "{text}");
    }
}

#[test]
fn prometheus_error_cases() {
    let cases: Vec<(&str, Option<Val>, &str)> = vec![
        ("{{\u{a0}}}", None, "template: test:1: unrecognized character in action: U+00A0"),
        ("{{", None, "template: test:1: unclosed action"),
        ("{{ query \"missing\" | first }}", None, "error calling first: first() called on vector with no elements"),
        ("{{ (query \"missing\").banana }}", None, "can't evaluate field banana in type template.queryResult"),
        ("{{ humanize \"one\" }}", None, "error calling humanize: strconv.ParseFloat: parsing \"one\": invalid syntax"),
        ("{{ \"one\" | humanizePercentage }}", None, "error calling humanizePercentage: strconv.ParseFloat: parsing \"one\": invalid syntax"),
        (
            "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
            ints(&[i64::MIN, i64::MAX]),
            "error calling humanizeTimestamp: -9.223372036854776e+18 cannot be represented as a nanoseconds timestamp since it overflows int64",
        ),
        ("{{ gt 1 1.5 }}", None, "error calling gt: incompatible types for comparison"),
        ("{{ nofunc }}", None, "template: test:1: function \"nofunc\" not defined"),
        ("{{ if }}{{ end }}", None, "template: test:1: missing value for if"),
        ("{{ if 1 }}", None, "template: test:1: unexpected EOF"),
        ("a\n{{ end }}", None, "template: test:2: unexpected {{end}}"),
        ("{{ $x }}", None, "template: test:1: undefined variable \"$x\""),
    ];
    for (text, dot, want) in cases {
        let got = run(text, dot);
        assert!(got.as_ref().is_err_and(|e| e.ends_with(want)), "{text}: {got:?}, want …{want}");
    }
}

#[test]
fn alert_templates_see_labels_value_and_external_labels() {
    let labels: BTreeMap<String, String> = [("job".to_string(), "api".to_string())].into_iter().collect();
    let external: BTreeMap<String, String> = [("cluster".to_string(), "eu".to_string())].into_iter().collect();
    let query = |_: &str| -> Result<Vec<QuerySample>, String> { Ok(Vec::new()) };
    let data = Data {
        labels: &labels,
        external_labels: &external,
        external_url: "http://x",
        value: 1234567.0,
        now: 0.0,
        query: &query,
    };
    let t = Template::parse("__alert_A", "{{ $labels.job }} {{ .Labels.job }} {{ $value }} {{ .Value | humanize }} {{ $externalLabels.cluster }} {{ $labels.missing }}.").unwrap();
    assert_eq!(t.expand(&data).unwrap(), "api api 1.234567e+06 1.235M eu .");
    assert_eq!(
        super::expand_alert_text("A", "{{ query \"x\" | first }}", &data),
        "<error expanding template: error executing template __alert_A: template: __alert_A:1: executing \"__alert_A\": error calling first: first() called on vector with no elements>"
    );
}

#[test]
fn hostile_templates_fail_cleanly() {
    for t in [
        "{{ (((( }}",
        "{{ \"unterminated }}",
        "{{ 'ab' }}",
        "{{ 1 | 2 }}",
        "{{ $x := }}",
        "{{ . | }}",
        "{{else}}",
        "{{ range }}",
        "{{ end }}{{",
        "{{ ) }}",
        "{{/* x",
    ] {
        assert!(run(t, None).is_err(), "{t}");
    }
    // Deep output is bounded.
    let many = strs(&["x"; 10]);
    assert!(run("{{ range . }}{{ range . }}{{ end }}{{ end }}", many).is_err());
}
