//! Runs Prometheus's PromQL test scripts (promqltest format) against the engine.
//!
//! The scripts are the `promql/promqltest/testdata/*.test` files of the Prometheus Go module at
//! the version `interop/go.mod` pins, read from the Go module cache (`bash interop/build.sh`
//! puts the module there when it builds Prometheus; see [`prometheus_scripts`]). Every one of
//! them runs, then this crate's own scripts in `tests/promqltest/` (float cases the Prometheus
//! files cover only together with native histograms, and features newer than that release).
//! Every eval must pass unless `promqltest_exceptions.md` lists it (file, line, reason); a
//! listed case that passes fails the test too, so the list only shrinks. The file's cases per
//! reason must match its header.
//!
//! Checks follow the reference harness: results compared with a relative tolerance of 1e-6,
//! annotation expectations, ordering for `expect ordered`, and each instant eval repeated in
//! range mode (the middle step of a 3-step query must agree) and with `@` pinned to the
//! evaluation time at several other evaluation times (see [`at_modifier_variants`]).
//!
//! `cargo test -p strata-query --test promqltest -- --nocapture` shows the Prometheus version
//! and the per-file counts; `PROMQLTEST_VERBOSE=1` also prints every failing case, listed or not.

#[path = "promqltest/parse.rs"]
mod parse;
#[path = "promqltest/storage.rs"]
mod storage;

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parse::{Command, Eval, Expected, Kind, Matcher, SeqValue};
use promql_parser::parser::{AtModifier, Expr};
use regex::Regex;
use storage::{MemStorage, Sample};
use strata_query::engine::{Engine, EngineOptions, QueryError, QueryOptions, QueryResult};
use strata_query::parse::SelectorExtras;
use strata_query::value::Value;
use strata_tsdb::labels::{Labels, METRIC_NAME};

/// Functions whose result depends on the evaluation time even with `@` on every selector.
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
    "start",
    "end",
    "range",
    "step",
];

/// Relative tolerance of the reference harness.
const EPSILON: f64 = 1e-6;

/// The Go module whose promqltest files are the gating set.
const PROMETHEUS_MODULE: &str = "github.com/prometheus/prometheus";

/// The Prometheus module's test scripts: where they are and which release they belong to.
struct PrometheusScripts {
    /// The module version `interop/go.mod` pins (`v0.309.1`).
    module_version: String,
    dir: PathBuf,
}

impl PrometheusScripts {
    /// Prometheus publishes release 3.Y.Z as module version v0.3YY.Z.
    fn release(&self) -> String {
        let v = self.module_version.trim_start_matches('v');
        let mut parts = v.splitn(3, '.');
        match (parts.next(), parts.next().and_then(|m| m.parse::<u32>().ok()), parts.next()) {
            (Some("0"), Some(minor), Some(patch)) if minor >= 300 => format!("{}.{}.{patch}", minor / 100, minor % 100),
            _ => v.to_string(),
        }
    }
}

/// Finds the Prometheus module of `interop/go.mod` in the Go module cache. `go mod download`
/// resolves the version from that go.mod and only fetches the module if the cache lacks it.
fn prometheus_scripts() -> PrometheusScripts {
    let interop = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop");
    let help = "the PromQL test scripts come from the Prometheus Go module that interop/go.mod pins; \
                `bash interop/build.sh` installs it into the Go module cache (it needs Go on PATH)";
    let out = std::process::Command::new("go")
        .args(["mod", "download", "-json", PROMETHEUS_MODULE])
        .current_dir(&interop)
        .output()
        .unwrap_or_else(|e| panic!("running `go mod download` in interop/ (is Go on PATH?): {e}; {help}"));
    // On failure `go mod download -json` still prints the module's JSON, with an `Error` field.
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let field = |name: &str| info.get(name).and_then(|v| v.as_str()).map(str::to_string);
    if !out.status.success() || field("Error").is_some() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error = field("Error").unwrap_or_default();
        let causes: Vec<&str> = [error.as_str(), stderr.trim()].into_iter().filter(|c| !c.is_empty()).collect();
        panic!("`go mod download {PROMETHEUS_MODULE}` in interop/ failed: {}; {help}", causes.join("; "));
    }
    let (Some(module_version), Some(dir)) = (field("Version"), field("Dir")) else {
        panic!("`go mod download -json {PROMETHEUS_MODULE}` named no version or directory; {help}");
    };
    let dir = PathBuf::from(dir).join("promql/promqltest/testdata");
    assert!(dir.is_dir(), "{PROMETHEUS_MODULE} {module_version} has no promql/promqltest/testdata; {help}");
    PrometheusScripts { module_version, dir }
}

fn own_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/promqltest")
}

fn test_files(dir: &PathBuf) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    files
}

fn exceptions_text() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/promqltest_exceptions.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn exceptions() -> HashMap<(String, usize), String> {
    let text = exceptions_text();
    let mut out = HashMap::new();
    for l in text.lines() {
        let cells: Vec<&str> = l.split('|').map(str::trim).collect();
        if cells.len() >= 5 && cells[1].ends_with(".test") {
            if let Ok(line) = cells[2].parse::<usize>() {
                out.insert((cells[1].to_string(), line), cells[3].to_string());
            }
        }
    }
    out
}

fn engine() -> Engine {
    Engine::new(EngineOptions::default())
}

/// The exceptions file names each reason with its number of cases (`- Native histograms (12
/// cases): …`); every listed case's reason starts with one of those names, and the numbers add
/// up.
#[test]
fn exception_reasons_match_their_counts() {
    let text = exceptions_text();
    let heading = Regex::new(r"(?m)^- (.+?) \((\d+) cases?\):").expect("valid regex");
    let mut reasons: Vec<(String, usize, usize)> =
        heading.captures_iter(&text).map(|c| (c[1].to_lowercase(), c[2].parse().unwrap_or(usize::MAX), 0)).collect();
    assert!(!reasons.is_empty(), "no reasons with counts in promqltest_exceptions.md");
    for ((file, line), reason) in exceptions() {
        let reason = reason.to_lowercase();
        let Some(r) = reasons.iter_mut().find(|(name, _, _)| reason.starts_with(&format!("{name}:"))) else {
            panic!("{file}:{line}: the reason names none of the file's reasons: {reason}");
        };
        r.2 += 1;
    }
    for (name, said, listed) in reasons {
        assert_eq!(said, listed, "{name}: the header says {said} cases, the table lists {listed}");
    }
}

#[test]
fn promql_test_files() {
    let prometheus = prometheus_scripts();
    let upstream = test_files(&prometheus.dir);
    let own = test_files(&own_dir());
    println!(
        "Prometheus {} ({PROMETHEUS_MODULE} {}): {} test files; this crate's own: {} files",
        prometheus.release(),
        prometheus.module_version,
        upstream.len(),
        own.len()
    );
    let listed = exceptions();
    let verbose = std::env::var_os("PROMQLTEST_VERBOSE").is_some();
    let mut problems = Vec::new();
    let mut seen_listed = HashSet::new();
    let engine = engine();
    for path in upstream.iter().chain(&own) {
        let is_own = own.contains(path);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let file = if is_own { format!("own/{name}") } else { name };
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let outcomes = run_file(&engine, &text);
        let (mut passed, mut failed, mut skipped) = (0, 0, 0);
        for (line, expr, result) in &outcomes {
            let key = (file.clone(), *line);
            let is_listed = listed.contains_key(&key);
            if is_listed {
                seen_listed.insert(key.clone());
            }
            match result {
                Ok(()) if is_listed => {
                    problems.push(format!("{file}:{line}: listed in promqltest_exceptions.md but passes: {expr}"));
                    passed += 1;
                }
                Ok(()) => passed += 1,
                Err(e) if is_listed => {
                    skipped += 1;
                    if verbose {
                        println!("  skip {file}:{line}: {expr}\n       {e}");
                    }
                }
                Err(e) => {
                    failed += 1;
                    problems.push(format!("{file}:{line}: {expr}\n    {e}"));
                }
            }
        }
        println!("{file:<40} passed {passed:>4}  failed {failed:>4}  skipped {skipped:>4}");
    }
    for key in listed.keys() {
        if !seen_listed.contains(key) {
            problems
                .push(format!("{}:{}: listed in promqltest_exceptions.md but there is no eval there", key.0, key.1));
        }
    }
    if !problems.is_empty() {
        panic!("{} problem(s):\n{}", problems.len(), problems.join("\n"));
    }
}

/// Runs one script; returns each eval's line, expression and outcome.
fn run_file(engine: &Engine, text: &str) -> Vec<(usize, String, Result<(), String>)> {
    let cmds = match parse::parse_file(text) {
        Ok(c) => c,
        Err(e) => return vec![(0, String::new(), Err(format!("script does not parse: {e}")))],
    };
    let mut store = MemStorage::default();
    let mut out = Vec::new();
    for (_, cmd) in cmds {
        match cmd {
            Command::Clear => store.clear(),
            Command::Load { interval, with_nhcb, series } => load(&mut store, interval, with_nhcb, series),
            Command::Eval(ev) => {
                let result = catch_unwind(AssertUnwindSafe(|| check_eval(engine, &store, &ev)))
                    .unwrap_or_else(|p| Err(format!("panic: {}", panic_message(&p))));
                out.push((ev.line, ev.expr.clone(), result));
            }
        }
    }
    out
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

fn load(store: &mut MemStorage, interval: i64, with_nhcb: bool, series: Vec<(Labels, Vec<SeqValue>)>) {
    for (labels, values) in series {
        let mut times = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let t = i as i64 * interval;
            match v {
                SeqValue::Omitted => continue,
                SeqValue::Float(f) => store.add(labels.clone(), t, Sample::Float(*f)),
                SeqValue::Histogram => store.add(labels.clone(), t, Sample::Histogram),
            }
            if matches!(v, SeqValue::Float(_)) {
                times.push(t);
            }
        }
        if with_nhcb {
            // The reference loader also converts classic histograms into native histograms with
            // custom buckets, stored under the base metric name.
            if let Some(base) = nhcb_base(&labels) {
                for t in times {
                    store.add(base.clone(), t, Sample::Histogram);
                }
            }
        }
    }
}

fn nhcb_base(labels: &Labels) -> Option<Labels> {
    let name = labels.get(METRIC_NAME)?;
    let base = if let Some(b) = name.strip_suffix("_bucket") {
        let le = labels.get("le")?;
        if le.parse::<f64>().is_err() && !le.eq_ignore_ascii_case("+inf") {
            return None;
        }
        b
    } else {
        name.strip_suffix("_count").or_else(|| name.strip_suffix("_sum"))?
    };
    let pairs: Vec<(&str, &str)> = labels
        .iter()
        .filter(|(n, _)| *n != "le")
        .map(|(n, v)| if n == METRIC_NAME { (n, base) } else { (n, v) })
        .collect();
    Some(Labels::from_pairs(&pairs))
}

fn check_eval(engine: &Engine, store: &MemStorage, ev: &Eval) -> Result<(), String> {
    match ev.kind {
        Kind::Range { start, end, step } => {
            let res = engine.range_query(store, &ev.expr, start, end, step, &QueryOptions::default());
            let Some(r) = check_outcome(ev, res)? else { return Ok(()) };
            check_annotations(ev, &r, true)?;
            compare(ev, &r.value, (start, end, step))
        }
        Kind::Instant { at } => {
            check_instant(engine, store, ev, &ev.expr, at, true)?;
            for (q, t) in at_modifier_variants(&ev.expr, at)? {
                check_instant(engine, store, ev, &q, t, false)
                    .map_err(|e| format!("with @ pinned, at {t}ms: {q}\n    {e}"))?;
            }
            Ok(())
        }
    }
}

/// `None` when the eval expected (and got) an error.
fn check_outcome(ev: &Eval, res: Result<QueryResult, QueryError>) -> Result<Option<QueryResult>, String> {
    match (res, &ev.fail) {
        // An engine limitation is not the failure the script expects.
        (Err(e @ QueryError::Unsupported(_)), Some(m)) if !m.matches(&e.to_string()) || matches!(m, Matcher::Any) => {
            Err(format!("unsupported: {e}"))
        }
        (Err(e), Some(m)) => {
            if m.matches(&e.to_string()) {
                Ok(None)
            } else {
                Err(format!("expected error matching {m:?}, got: {e}"))
            }
        }
        (Err(e), None) => Err(format!("unexpected error: {e}")),
        (Ok(_), Some(_)) => Err("expected an error, got none".into()),
        (Ok(r), None) => Ok(Some(r)),
    }
}

/// `as_written`: `q` is the eval's query as the script writes it, not a reprinted variant.
fn check_instant(
    engine: &Engine,
    store: &MemStorage,
    ev: &Eval,
    q: &str,
    t: i64,
    as_written: bool,
) -> Result<(), String> {
    let res = engine.instant_query(store, q, t, &QueryOptions::default());
    let Some(r) = check_outcome(ev, res)? else { return Ok(()) };
    check_annotations(ev, &r, as_written)?;
    let timeline = ev.range_vector.unwrap_or((t, i64::MIN, 0));
    compare(ev, &r.value, timeline)?;
    if ev.range_vector.is_some() || matches!(ev.expected, Expected::String(_)) {
        return Ok(());
    }
    if Regex::new(r"(start|end|range|step)\(\)").is_ok_and(|re| re.is_match(q)) {
        return Ok(());
    }
    // The same query in range mode must give the same values at the middle step.
    let rr = engine
        .range_query(store, q, t - 60_000, t + 60_000, 60_000, &QueryOptions::default())
        .map_err(|e| format!("range mode: unexpected error: {e}"))?;
    if ev.ordered {
        return Ok(());
    }
    let Value::Matrix(m) = rr.value else { return Err("range mode: result is not a matrix".into()) };
    check_sorted(&m)?;
    let samples: Vec<strata_query::value::Sample> = m
        .iter()
        .filter_map(|s| {
            s.points.iter().find(|p| p.0 == t).map(|p| strata_query::value::Sample {
                labels: s.labels.clone(),
                t,
                v: p.1,
            })
        })
        .collect();
    let v = match r.value {
        Value::Scalar { .. } => Value::Scalar { t, v: samples.first().map_or(f64::NAN, |s| s.v) },
        _ => Value::Vector(samples),
    };
    compare(ev, &v, timeline).map_err(|e| format!("range mode: {e}"))
}

fn check_annotations(ev: &Eval, r: &QueryResult, as_written: bool) -> Result<(), String> {
    if ev.any_warn && r.warnings.is_empty() {
        return Err("expected warnings, got none".into());
    }
    if ev.any_info && r.infos.is_empty() {
        return Err("expected info annotations, got none".into());
    }
    check_expected_annotations("warn", &ev.warn, &r.warnings, as_written)?;
    check_expected_annotations("info", &ev.info, &r.infos, as_written)?;
    if ev.no_warn && !r.warnings.is_empty() {
        return Err(format!("unexpected warnings: {:?}", r.warnings));
    }
    if ev.no_info && !r.infos.is_empty() {
        return Err(format!("unexpected info annotations: {:?}", r.infos));
    }
    Ok(())
}

/// Each expected annotation must match an actual one and each actual one an expected one. The
/// engine ends a message with the ` (line:column)` of its node, as the HTTP API does; the
/// reference harness of the pinned release compares messages without it, so an expectation
/// matches the message with or without the position, and one that names a position checks it
/// for the query as written (`as_written`; a reprinted variant has other columns).
fn check_expected_annotations(
    kind: &str,
    expected: &[Matcher],
    actual: &[String],
    as_written: bool,
) -> Result<(), String> {
    if expected.is_empty() {
        return Ok(());
    }
    if actual.is_empty() {
        return Err(format!("expected {kind} annotations, got none"));
    }
    let position = Regex::new(r" \(\d+:\d+\)$").map_err(|e| e.to_string())?;
    let without_position = |a: &str| position.find(a).map(|p| a[..p.start()].to_string());
    let expected: Vec<Matcher> = expected
        .iter()
        .map(|e| match e {
            Matcher::Exact(m) if !as_written => without_position(m).map_or_else(|| e.clone(), Matcher::Exact),
            _ => e.clone(),
        })
        .collect();
    let matches = |e: &Matcher, a: &str| e.matches(a) || without_position(a).is_some_and(|a| e.matches(&a));
    for e in &expected {
        if !actual.iter().any(|a| matches(e, a)) {
            return Err(format!("expected {kind} annotation matching {e:?}, got {actual:?}"));
        }
    }
    for a in actual {
        if !expected.iter().any(|e| matches(e, a)) {
            return Err(format!("unexpected {kind} annotation {a:?}"));
        }
    }
    Ok(())
}

/// Go's `almost.Equal`: relative tolerance, NaN equal to NaN.
fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

fn check_sorted(m: &[strata_query::value::Series]) -> Result<(), String> {
    if m.windows(2).any(|w| w[0].labels > w[1].labels) {
        return Err("matrix is not sorted by labels".into());
    }
    Ok(())
}

/// Compares a result with the expectation; `(start, end, step)` places expected range values.
fn compare(ev: &Eval, value: &Value, (start, end, step): (i64, i64, i64)) -> Result<(), String> {
    let expected: &[(Labels, Vec<SeqValue>)] = match &ev.expected {
        Expected::Series(s) => s,
        _ => &[],
    };
    let find = |l: &Labels| expected.iter().position(|(el, _)| el == l);
    match value {
        Value::Matrix(m) => {
            if ev.ordered {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            if matches!(ev.expected, Expected::Scalar(_)) {
                return Err(format!("expected scalar, got matrix {m:?}"));
            }
            check_sorted(m)?;
            let mut seen = vec![false; expected.len()];
            for s in m {
                let i = find(&s.labels).ok_or_else(|| format!("unexpected series {} {:?}", s.labels, s.points))?;
                seen[i] = true;
                let mut want: Vec<(i64, f64)> = Vec::new();
                for (k, v) in expected[i].1.iter().enumerate() {
                    let ts = start + k as i64 * step;
                    if ts > end {
                        return Err(format!("more expected points for {} than the time range has", s.labels));
                    }
                    match v {
                        SeqValue::Float(f) => want.push((ts, *f)),
                        SeqValue::Histogram => {
                            return Err(format!("expected native histogram points for {}", s.labels))
                        }
                        SeqValue::Omitted => {}
                    }
                }
                if want.len() != s.points.len() {
                    return Err(format!("series {}: expected points {want:?}, got {:?}", s.labels, s.points));
                }
                for (w, p) in want.iter().zip(&s.points) {
                    if w.0 != p.0 || !almost_equal(w.1, p.1) {
                        return Err(format!("series {}: expected points {want:?}, got {:?}", s.labels, s.points));
                    }
                }
            }
            if let Some(i) = seen.iter().position(|s| !s) {
                return Err(format!("expected series {} not found", expected[i].0));
            }
            Ok(())
        }
        Value::Vector(v) => {
            if matches!(ev.expected, Expected::Scalar(_)) {
                return Err(format!("expected scalar, got vector {v:?}"));
            }
            let mut seen = vec![false; expected.len()];
            for (pos, s) in v.iter().enumerate() {
                let i = find(&s.labels).ok_or_else(|| format!("unexpected sample {} {}", s.labels, s.v))?;
                if ev.ordered && i != pos {
                    return Err(format!("expected {} at position {}, found at {}", s.labels, i + 1, pos + 1));
                }
                seen[i] = true;
                match expected[i].1.first() {
                    Some(SeqValue::Float(f)) if almost_equal(*f, s.v) => {}
                    Some(SeqValue::Float(f)) => return Err(format!("{}: expected {f}, got {}", s.labels, s.v)),
                    Some(SeqValue::Histogram) => return Err(format!("{}: expected a native histogram", s.labels)),
                    _ => return Err(format!("{}: no expected value", s.labels)),
                }
            }
            if let Some(i) = seen.iter().position(|s| !s) {
                return Err(format!("expected sample {} not found", expected[i].0));
            }
            Ok(())
        }
        Value::Scalar { v, .. } => match ev.expected {
            Expected::Scalar(f) if almost_equal(f, *v) => Ok(()),
            Expected::Scalar(f) => Err(format!("expected scalar {f}, got {v}")),
            _ => Err(format!("expected a vector or matrix, got scalar {v}")),
        },
        Value::String { v, .. } => match &ev.expected {
            Expected::String(s) if s == v => Ok(()),
            _ => Err(format!("unexpected string {v:?}")),
        },
    }
}

/// The reference harness's extra instant evaluations: every selector and subquery not inside a
/// pinned subquery gets `@ <eval time>`, then the query runs at other times and must still
/// return the expected result. Skipped when a function reads the evaluation time, and for
/// queries with the `anchored` or `smoothed` modifier or an `info()` label selector: the pinned
/// query is printed from promql-parser's tree, which holds neither (duration expressions are
/// in it as the durations they come to in an instant query).
fn at_modifier_variants(expr: &str, t: i64) -> Result<Vec<(String, i64)>, String> {
    let Ok(parsed) = strata_query::parse::parse_query(expr, 0, 0) else { return Ok(Vec::new()) };
    if parsed.selectors.iter().any(|s| *s != SelectorExtras::default()) {
        return Ok(Vec::new());
    }
    let mut e = parsed.expr;
    // The parser prints `@` times only from the epoch onwards, so pin to a marker time and put
    // the real (possibly negative) time into the text afterwards.
    let marker = UNIX_EPOCH + Duration::from_millis(987_654_321_123);
    let mut unsafe_call = false;
    pin(&mut e, &marker, false, &mut unsafe_call);
    if unsafe_call {
        return Ok(Vec::new());
    }
    let text = e.to_string().replace("@ 987654321.123", &format!("@ {}", format_seconds(t)));
    let times: Vec<i64> = if t == 0 { vec![-1000, 0, 1000] } else { vec![-10 * t, 0, t / 5, t, 10 * t] };
    Ok(times.into_iter().map(|et| (text.clone(), et)).collect())
}

fn format_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

fn pin(e: &mut Expr, at: &SystemTime, inside_pinned: bool, unsafe_call: &mut bool) {
    if inside_pinned {
        return;
    }
    match e {
        Expr::VectorSelector(vs) if vs.at.is_none() => vs.at = Some(AtModifier::At(*at)),
        Expr::MatrixSelector(ms) if ms.vs.at.is_none() => ms.vs.at = Some(AtModifier::At(*at)),
        Expr::Subquery(sq) => {
            if sq.at.is_none() {
                sq.at = Some(AtModifier::At(*at));
            }
            pin(&mut sq.expr, at, true, unsafe_call);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = a.param.as_mut() {
                pin(p, at, false, unsafe_call);
            }
            pin(&mut a.expr, at, false, unsafe_call);
        }
        Expr::Unary(u) => pin(&mut u.expr, at, false, unsafe_call),
        Expr::Binary(b) => {
            pin(&mut b.lhs, at, false, unsafe_call);
            pin(&mut b.rhs, at, false, unsafe_call);
        }
        Expr::Paren(p) => pin(&mut p.expr, at, false, unsafe_call),
        Expr::Call(c) => {
            if AT_UNSAFE.contains(&c.func.name) {
                *unsafe_call = true;
            }
            for a in c.args.args.iter_mut() {
                pin(a, at, false, unsafe_call);
            }
        }
        _ => {}
    }
}

/// Every expression the test files evaluate, run at pseudo-random times and ranges over the
/// files' data, must return a result or an error, never panic.
#[test]
fn no_panics_on_test_queries() {
    let prometheus = prometheus_scripts();
    let engine = Engine::new(EngineOptions { timeout: Duration::from_secs(10), ..EngineOptions::default() });
    // A fixed-seed xorshift keeps the run reproducible.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut entries = test_files(&prometheus.dir);
    entries.extend(test_files(&own_dir()));
    // `PROMQLTEST_FUZZ_ROUNDS` raises the number of random times per query for longer runs.
    let rounds: usize = std::env::var("PROMQLTEST_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut panics = Vec::new();
    let mut queries = 0;
    for path in &entries {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let Ok(cmds) = parse::parse_file(&text) else { continue };
        let mut store = MemStorage::default();
        for (_, cmd) in cmds {
            match cmd {
                Command::Clear => store.clear(),
                Command::Load { interval, with_nhcb, series } => load(&mut store, interval, with_nhcb, series),
                Command::Eval(ev) => {
                    // Queries that do not parse (with a step for `step()`) fail early anyway.
                    if strata_query::parse::parse_query(&ev.expr, 60_000, 60_000).is_err() {
                        continue;
                    }
                    for _ in 0..rounds {
                        let t = (next() % 7_200_000) as i64 - 600_000;
                        let step = (next() % 120_000) as i64 + 1;
                        let len = (next() % 200) as i64;
                        queries += 2;
                        let r = catch_unwind(AssertUnwindSafe(|| {
                            let _ = engine.instant_query(&store, &ev.expr, t, &QueryOptions::default());
                            let _ =
                                engine.range_query(&store, &ev.expr, t, t + len * step, step, &QueryOptions::default());
                        }));
                        if let Err(p) = r {
                            panics.push(format!(
                                "{}:{} {} at {t}: {}",
                                path.display(),
                                ev.line,
                                ev.expr,
                                panic_message(&p)
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(queries > 1000, "only {queries} queries ran");
    assert!(panics.is_empty(), "{} panic(s):\n{}", panics.len(), panics.join("\n"));
}
