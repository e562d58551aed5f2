//! Differential test of parse errors: malformed queries are sent to `strata standalone` and to
//! Prometheus 3.x (built by interop/, with the PromQL features strata always has) through
//! `/api/v1/query` (GET and POST) and `/api/v1/query_range`, and malformed selectors through
//! `/api/v1/series` and `/api/v1/labels`; status code, `errorType` and `error` must be the same.
//!
//! Cases whose answers differ for a reason are listed in parse_errors/known_differences.md under
//! that reason. The test fails on a difference that is not listed, and on a listed case that no
//! longer differs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::StrataAndPrometheus;
use strata_testkit::http::{self, Answer};
use strata_testkit::url_encode;

/// Malformed queries: lexer errors, syntax errors in each grammar context, and the parser's
/// semantic and type checks.
const QUERIES: &[&str] = &[
    "",
    "sum(",
    "1 +",
    "sum(\n  github_stars\n) +",
    "(1))",
    "((1)",
    "*1",
    "x § y",
    "sum by (a) (foo) by (b)",
    "foo @ bar",
    "rate(foo)",
    "nonexistent_fn()",
    "1 == 1",
    "1 and 1",
    r#"-"string""#,
    "a[5m] + b[5m]",
    "1 offset 1d",
    "foo offset 1s offset 2s",
    "a - on(b) ignoring(c) d",
    "foo + group_left(baz) bar",
    "foo and on(bar) group_left(baz) bar",
    "foo + bool bar",
    "foo @ +Inf",
    "rate(some_metric[5m]) @ 1234",
    "{",
    "}",
    "some_metric{a=b}",
    r#"some_metric{a:b="b"}"#,
    "foo{gibberish}",
    "foo{1}",
    "{}",
    r#"{x=~".*"}"#,
    r#"foo{__name__="bar"}"#,
    "foo{,}",
    r#"foo{__name__="bar" lol}"#,
    r#"github_stars{repo=~"("}"#,
    r#"x{a="b}"#,
    r#""\c""#,
    "foo[5x]",
    "foo[5mm]",
    "foo[5m1h]",
    "foo[5y1hs]",
    "foo[1.5h]",
    "foo[0m]",
    "foo[]",
    "foo[5m:1m:1m]",
    "some_metric[5m] OFFSET",
    "some_metric OFFSET 1m[5m]",
    "some_metric @ 1234 [5m]",
    "(foo + bar)[5m]",
    "test[5d] OFFSET 10s [10m:5s]",
    "sum without(==)(some_metric)",
    "sum some_metric by (test)",
    "sum (some_metric) by test",
    "sum by (a b) (y)",
    "sum by (a) y",
    "sum(foo bar)",
    "sum () by (test)",
    "topk(some_metric)",
    "topk(some_metric, other_metric)",
    "count_values(5, other_metric)",
    "floor(some_metric, other_metric)",
    "hour(some_metric, some_metric, some_metric)",
    "histogram_quantile(0.9)",
    "rate(x[5m],)",
    // Numbers and durations out of range: promql-parser accepts these or panics on them.
    "rate(foo[300y])",
    "foo offset 1000000000y",
    "vector(1)[300y:1m]",
    "foo[1e30]",
    "foo offset 1e400",
    "1e400",
];

/// Malformed `match[]` selectors.
const SELECTORS: &[&str] = &["up(", "1+1", "up{", r#"up{a=~"("}"#, r#"{a=""}"#, "up offset 5m", "rate(x[5m])"];

/// Status, `errorType` and `error` of an answer, or what else it was.
fn outcome(answer: Answer) -> String {
    let (status, body) = match answer {
        Ok(a) => a,
        Err(e) => return format!("no answer: {e}"),
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
        return format!("{status} non-JSON body: {body}");
    };
    match (json["errorType"].as_str(), json["error"].as_str()) {
        (Some(typ), Some(error)) => format!("{status} {typ}: {error}"),
        _ => format!("{status} {}", json["status"]),
    }
}

/// Reads the listed cases: each `##` heading is a reason, each list item a case in a code span
/// (`\n` standing for a newline), or "the empty query".
fn read_known(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut reason = None;
    let mut known = BTreeMap::new();
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("## ") {
            reason = Some(head.trim().to_string());
            continue;
        }
        let case = if line.starts_with("- the empty query") {
            String::new()
        } else if let Some(item) = line.strip_prefix("- `") {
            let (case, _) = item.split_once('`').unwrap_or_else(|| panic!("unclosed code span: {line}"));
            case.replace("\\n", "\n")
        } else {
            continue;
        };
        let reason = reason.clone().unwrap_or_else(|| panic!("listed case before any reason: {line}"));
        assert!(known.insert(case.clone(), reason).is_none(), "listed twice: {case:?}");
    }
    known
}

#[test]
fn parse_errors_match_prometheus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parse_errors");
    let known = read_known(&dir.join("known_differences.md"));
    let selector_case = |s: &str| format!("match[]={s}");
    let cases: BTreeSet<String> =
        QUERIES.iter().map(|q| q.to_string()).chain(SELECTORS.iter().map(|s| selector_case(s))).collect();
    assert_eq!(cases.len(), QUERIES.len() + SELECTORS.len(), "a case is there twice");
    for case in known.keys() {
        assert!(cases.contains(case), "known_differences.md lists a case the test does not send: {case:?}");
    }

    let work = tempfile::tempdir().expect("temp dir");
    let servers = StrataAndPrometheus::start(work.path());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let (start, end) = (now - 3600, now);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];

    // Per case: the requests that got different answers, with both answers.
    let mut differences: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut compare = |case: &str, what: &str, ask: &dyn Fn(&str) -> Answer| {
        let (ours, theirs) = (outcome(ask(servers.strata.http())), outcome(ask(servers.prometheus.http())));
        assert!(ours.starts_with("400 "), "{what} {case:?}: strata should refuse it, answered {ours}");
        let entry = differences.entry(case.to_string()).or_default();
        if ours != theirs {
            entry.push(format!("{what}\n      strata:     {ours}\n      Prometheus: {theirs}"));
        }
    };
    for q in QUERIES {
        let query = url_encode(q);
        let instant = format!("query={query}&time={now}");
        compare(q, "GET /api/v1/query", &|addr| http::get(addr, &format!("/api/v1/query?{instant}")));
        compare(q, "POST /api/v1/query", &|addr| http::post(addr, "/api/v1/query", &form, instant.as_bytes()));
        let range = format!("/api/v1/query_range?query={query}&start={start}&end={end}&step=60");
        compare(q, "GET /api/v1/query_range", &|addr| http::get(addr, &range));
    }
    for s in SELECTORS {
        let params = format!("match[]={}&start={start}&end={end}", url_encode(s));
        compare(&selector_case(s), "GET /api/v1/series", &|addr| http::get(addr, &format!("/api/v1/series?{params}")));
        compare(&selector_case(s), "GET /api/v1/labels", &|addr| http::get(addr, &format!("/api/v1/labels?{params}")));
    }

    let mut unexpected = 0;
    let mut stale = Vec::new();
    for (case, diffs) in &differences {
        match (diffs.is_empty(), known.get(case)) {
            (true, Some(_)) => stale.push(case),
            (false, None) => {
                unexpected += 1;
                println!("UNEXPECTED DIFFERENCE {case:?}");
                for d in diffs {
                    println!("    {d}");
                }
            }
            (false, Some(reason)) => {
                println!("listed difference {case:?} ({reason})");
                for d in diffs {
                    println!("    {d}");
                }
            }
            (true, None) => {}
        }
    }
    for case in &stale {
        println!("LISTED BUT AGREES (remove from known_differences.md): {case:?}");
    }
    let agree = differences.values().filter(|d| d.is_empty()).count();
    println!("{} cases: {agree} agree, {} differ as listed", differences.len(), differences.len() - agree - unexpected);
    assert!(
        unexpected == 0 && stale.is_empty(),
        "{unexpected} cases differ from Prometheus without being listed in known_differences.md and {} listed cases agree; see the output above",
        stale.len()
    );
}
