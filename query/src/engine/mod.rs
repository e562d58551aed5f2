//! The PromQL engine: Prometheus 3.x semantics on float samples.
//!
//! A query is parsed for its step and range ([`crate::parse::parse_query`]: promql-parser's tree,
//! and per selector the `anchored`/`smoothed` modifiers and `info()` label matchers the tree
//! cannot hold) and evaluated node by node. Each node is evaluated once
//! over the whole evaluation grid (one step for instant queries), producing series-major values
//! (see `types`); each selector reads its series from the storage once for the whole time range
//! it needs. The metric name is removed lazily, as Prometheus does with delayed name removal:
//! operators and functions mark series, and the names go when the query finishes.
//!
//! Native histograms are not evaluated: selecting a series whose chunks in range hold histogram
//! samples fails with [`QueryError::Unsupported`].
//!
//! A query reads as its [`QueryOptions`] say: every selection carries their read scope,
//! resolution and enforced matchers, and with replica labels the series of a selection that
//! differ only in them are merged into one (`dedup`, as Thanos's querier does).

mod aggregate;
mod binary;
mod dedup;
mod eval;
mod extended;
mod functions;
mod positions;
mod types;

use std::time::{Duration, Instant};

use promql_parser::parser::value::ValueType;
use strata_tsdb::labels::Labels;

use crate::parse::Parsed;
use crate::value::{Sample, Series, Value};
pub use dedup::DedupFunc;
pub(crate) use eval::par_parts;
use eval::Evaluator;
use strata_storage::{ReadScope, Storage};
use strata_tsdb::matchers::Matcher;
pub(crate) use types::remove_labels;
use types::{drop_metric_name, Grid, StepSeries, Val};

/// Settings of an [`Engine`].
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample, in milliseconds (default 5m; zero or
    /// less means the default).
    pub lookback_delta: i64,
    /// Most samples a query may load or hold at once (default 50,000,000).
    pub max_samples: usize,
    /// Longest a query may run (default 2m).
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { lookback_delta: 5 * 60 * 1000, max_samples: 50_000_000, timeout: Duration::from_secs(120) }
    }
}

/// How one query reads (the Thanos querier's per-request options).
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Labels that tell replicas of a series apart (Thanos's `--query.replica-label`): the
    /// series of a selection that are equal without them are merged into one, without them.
    /// Empty: no deduplication.
    pub replica_labels: Vec<String>,
    /// How replicas are merged.
    pub dedup_func: DedupFunc,
    /// Tenant, partial-response strategy and store matchers of every read.
    pub scope: ReadScope,
    /// The coarsest downsampling resolution every read accepts, in milliseconds; 0 for raw data.
    pub max_resolution_window: i64,
    /// Matchers every read carries in place of any the query has for the same label (tenancy
    /// enforcement: `tenant_id="<tenant>"`).
    pub enforced_matchers: Vec<Matcher>,
}

impl QueryOptions {
    /// `matchers` with the enforced matchers in place of any on the same labels, as Thanos's
    /// tenancy enforcement (prom-label-proxy) rewrites selectors: whatever a query says about an
    /// enforced label, the read is for the enforced value.
    pub fn enforce(&self, mut matchers: Vec<Matcher>) -> Vec<Matcher> {
        if !self.enforced_matchers.is_empty() {
            matchers.retain(|m| !self.enforced_matchers.iter().any(|e| e.name == m.name));
            matchers.extend(self.enforced_matchers.iter().cloned());
        }
        matchers
    }
}

/// What a query returned.
#[derive(Debug)]
pub struct QueryResult {
    pub value: Value,
    pub stats: QueryStats,
    /// Prometheus's warning annotations (`PromQL warning: …`) and the storage's warnings (a
    /// store that did not answer), in the order they arose.
    pub warnings: Vec<String>,
    /// Prometheus's info annotations (`PromQL info: …`).
    pub infos: Vec<String>,
}

/// Sample counts of a query, as Prometheus reports them with `stats=all`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueryStats {
    /// Samples read by selectors, counted once per evaluation step that used them.
    pub total_queryable_samples: u64,
    /// Most samples held in memory at once.
    pub peak_samples: u64,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse.
    #[error("{message}")]
    Parse { message: String },
    /// The query parses but its arguments are invalid.
    #[error("{0}")]
    BadData(String),
    #[error("query timed out in expression evaluation")]
    Timeout,
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// Evaluation failed the way Prometheus fails it (duplicate label sets, many-to-many
    /// matching, …).
    #[error("{0}")]
    Execution(String),
    /// The query needs something this engine does not do (native histograms, some
    /// experimental syntax).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Storage(String),
}

/// A PromQL engine. It holds no per-query state and can be shared across threads.
#[derive(Debug, Clone)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    /// Evaluates `query` at time `t` (milliseconds).
    pub fn instant_query(
        &self,
        storage: &dyn Storage,
        query: &str,
        t: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        let parsed = parse(query, 0, 0)?;
        let grid = Grid { start: t, end: t, step: 1 };
        let mut ev = self.evaluator(storage, opts, query, &parsed, grid, false)?;
        let val = ev.eval(&parsed.expr, grid)?;
        let value = match val {
            Val::Scalar(v) => Value::Scalar { t, v: v.first().copied().unwrap_or(f64::NAN) },
            Val::String(s) => Value::String { t, v: s },
            Val::Vector(series) => Value::Vector(finish_vector(series, t)?),
            Val::Matrix(series) => Value::Matrix(finish_matrix(series)?),
        };
        Ok(ev.finish(value))
    }

    /// Evaluates `query` at `start`, `start + step`, … ≤ `end` (milliseconds). The result is
    /// always a matrix.
    pub fn range_query(
        &self,
        storage: &dyn Storage,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        if step <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(QueryError::BadData("end timestamp must not be before start time".into()));
        }
        let Some(range) = end.checked_sub(start) else {
            return Err(QueryError::BadData("query time range is too large".into()));
        };
        let parsed = parse(query, step, range)?;
        match parsed.expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            other => {
                return Err(QueryError::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    documented_type(other)
                )))
            }
        }
        let grid = Grid { start, end, step };
        let mut ev = self.evaluator(storage, opts, query, &parsed, grid, true)?;
        let val = ev.eval(&parsed.expr, grid)?;
        let series = match val {
            Val::Scalar(v) => vec![StepSeries {
                labels: Labels::empty(),
                drop_name: false,
                points: v.iter().enumerate().map(|(i, &v)| types::Point { t: grid.ts(i), v }).collect(),
            }],
            Val::Vector(s) => s,
            other => {
                return Err(QueryError::Execution(format!(
                    "invalid expression type \"{}\" for range query",
                    other.type_name()
                )))
            }
        };
        let value = Value::Matrix(finish_matrix(series)?);
        Ok(ev.finish(value))
    }

    fn evaluator<'a>(
        &self,
        storage: &'a dyn Storage,
        opts: &'a QueryOptions,
        query: &'a str,
        parsed: &'a Parsed,
        grid: Grid,
        range: bool,
    ) -> Result<Evaluator<'a>, QueryError> {
        let selectors = positions::selector_extras(parsed)
            .ok_or_else(|| QueryError::Execution("the parsed query's selectors do not match its text".into()))?;
        Ok(Evaluator::new(
            storage,
            opts,
            query,
            parsed,
            selectors,
            eval::Limits {
                // As in Prometheus, a non-positive lookback delta means the default.
                lookback: if self.opts.lookback_delta > 0 {
                    self.opts.lookback_delta
                } else {
                    EngineOptions::default().lookback_delta
                },
                max_samples: self.opts.max_samples,
                deadline: Instant::now() + self.opts.timeout,
            },
            grid,
            range,
        ))
    }
}

/// Parses `query` for a query with `step` over `range` (milliseconds; 0 for an instant query).
fn parse(query: &str, step: i64, range: i64) -> Result<Parsed, QueryError> {
    crate::parse::parse_query(query, step, range).map_err(|e| QueryError::Parse { message: e.to_string() })
}

/// Prometheus's names of value types in messages.
fn documented_type(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
    }
}

const DUPLICATE_LABELSET: &str = "vector cannot contain metrics with the same labelset";

/// An instant-query vector: names removed where marked, then no two samples may share labels.
fn finish_vector(series: Vec<StepSeries>, t: i64) -> Result<Vec<Sample>, QueryError> {
    let mut out: Vec<Sample> = Vec::with_capacity(series.len());
    for s in series {
        let Some(p) = s.points.first() else { continue };
        let labels = if s.drop_name { drop_metric_name(&s.labels) } else { s.labels };
        out.push(Sample { labels, t, v: p.v });
    }
    let mut seen: std::collections::HashSet<&Labels> = std::collections::HashSet::with_capacity(out.len());
    if !out.iter().all(|s| seen.insert(&s.labels)) {
        return Err(QueryError::Execution(DUPLICATE_LABELSET.into()));
    }
    Ok(out)
}

/// A matrix result: names removed where marked, series that now share labels merged (an error
/// if they have points at the same time), sorted by labels.
fn finish_matrix(series: Vec<StepSeries>) -> Result<Vec<Series>, QueryError> {
    let mut out: Vec<Series> = series
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .map(|s| Series {
            labels: if s.drop_name { drop_metric_name(&s.labels) } else { s.labels },
            points: s.points.into_iter().map(|p| (p.t, p.v)).collect(),
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut merged: Vec<Series> = Vec::with_capacity(out.len());
    for s in out {
        match merged.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.points.extend(s.points);
                last.points.sort_by_key(|p| p.0);
                if last.points.windows(2).any(|w| w[0].0 == w[1].0) {
                    return Err(QueryError::Execution(DUPLICATE_LABELSET.into()));
                }
            }
            _ => merged.push(s),
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use strata_storage::{
        ChunkData, Grouping, LabelsAnswer, LabelsRequest, SelectHints, SelectRequest, SeriesChunks, SeriesSet,
        StorageError,
    };
    use strata_tsdb::chunkenc::{Encoding, XorAppender};

    use super::*;

    /// Series kept as chunks of 120 samples; `hist` marks series whose chunks are native
    /// histogram ones.
    type MemSeries = (Labels, Vec<(i64, f64)>, bool);
    struct Mem(Vec<MemSeries>);

    impl Storage for Mem {
        fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
            let (m, mint, maxt) = (&req.matchers, req.min_time, req.max_time);
            let mut found: Vec<SeriesChunks> = self
                .0
                .iter()
                .filter(|(l, _, _)| m.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
                .filter(|(_, s, _)| s.iter().any(|&(t, _)| t >= mint && t <= maxt))
                .map(|(l, s, hist)| {
                    let chunks = s
                        .chunks(120)
                        .map(|part| {
                            let mut a = XorAppender::new();
                            part.iter().for_each(|&(t, v)| a.append(t, v));
                            ChunkData {
                                min_time: part[0].0,
                                max_time: part[part.len() - 1].0,
                                encoding: if *hist { Encoding::FloatHistogram } else { Encoding::Xor },
                                data: a.bytes().to_vec().into(),
                            }
                        })
                        .collect();
                    SeriesChunks { labels: l.clone(), chunks }
                })
                .collect();
            found.sort_by(|a, b| a.labels.cmp(&b.labels));
            Ok(SeriesSet::from_local(found.into_iter().map(Ok), req))
        }
        fn label_names(&self, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
            Ok(LabelsAnswer::default())
        }
        fn label_values(&self, _: &str, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
            Ok(LabelsAnswer::default())
        }
    }

    /// `x{i="0"}` … `x{i="n-1"}`, one sample per 15s over an hour, value = time in seconds.
    fn data(n: usize) -> Mem {
        Mem((0..n)
            .map(|i| {
                let labels = Labels::from_pairs(&[("__name__", "x"), ("i", i.to_string().as_str())]);
                (labels, (0..=240).map(|k| (k * 15_000, k as f64 * 15.0)).collect(), false)
            })
            .collect())
    }

    fn engine() -> Engine {
        Engine::new(EngineOptions::default())
    }

    /// A [`Mem`] that records every selection.
    struct Recording(Mem, std::sync::Mutex<Vec<SelectRequest>>);

    impl Recording {
        fn hints(&self) -> Vec<SelectHints> {
            self.1.lock().unwrap().iter().map(|r| r.hints.clone()).collect()
        }
    }

    impl Storage for Recording {
        fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
            self.1.lock().unwrap().push(req.clone());
            self.0.select(req)
        }
        fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
            self.0.label_names(req)
        }
        fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
            self.0.label_values(name, req)
        }
    }

    #[test]
    fn selections_carry_the_enclosing_function_and_grouping() {
        let hints = |step: i64, range: i64, func: Option<&str>, grouping: Option<(bool, &[&str])>| SelectHints {
            step,
            range,
            func: func.map(str::to_owned),
            grouping: grouping.map(|(by, l)| Grouping { by, labels: l.iter().map(|&l| l.to_owned()).collect() }),
        };
        let cases = [
            ("sum by (i) (x)", vec![hints(30_000, 0, Some("sum"), Some((true, &["i"])))]),
            ("count without (i) (x)", vec![hints(30_000, 0, Some("count"), Some((false, &["i"])))]),
            ("max(x)", vec![hints(30_000, 0, Some("max"), Some((true, &[])))]),
            // Grouping only for the aggregation's direct operand; the function walks up.
            ("sum by (i) (rate(x[5m]))", vec![hints(30_000, 300_000, Some("rate"), None)]),
            ("count((x))", vec![hints(30_000, 0, Some("count"), None)]),
            ("-x", vec![hints(30_000, 0, None, None)]),
            // A binary operation ends the walk.
            ("rate(x[1m]) * x", vec![hints(30_000, 60_000, Some("rate"), None), hints(30_000, 0, None, None)]),
            ("abs(x + x)", vec![hints(30_000, 0, None, None); 2]),
            // Inside a subquery the step is the subquery's.
            ("max_over_time(x[10m:1m])", vec![hints(60_000, 0, Some("max_over_time"), None)]),
        ];
        for (query, want) in cases {
            let storage = Recording(data(2), Default::default());
            engine().range_query(&storage, query, 600_000, 660_000, 30_000, &QueryOptions::default()).unwrap();
            assert_eq!(storage.hints(), want, "{query}");
        }
        // An instant query has no step, but a subquery in it has its own.
        for (query, want) in [
            ("rate(x[5m])", hints(0, 300_000, Some("rate"), None)),
            ("max_over_time(x[10m:1m])", hints(60_000, 0, Some("max_over_time"), None)),
        ] {
            let storage = Recording(data(2), Default::default());
            engine().instant_query(&storage, query, 600_000, &QueryOptions::default()).unwrap();
            assert_eq!(storage.hints(), [want], "{query}");
        }
    }

    #[test]
    fn range_query_is_a_sorted_matrix() {
        let r = engine().range_query(&data(3), "x * 2", 0, 60_000, 30_000, &QueryOptions::default()).unwrap();
        let Value::Matrix(m) = r.value else { panic!("not a matrix") };
        assert_eq!(m.len(), 3);
        assert!(m.windows(2).all(|w| w[0].labels < w[1].labels));
        assert_eq!(m[0].points, vec![(0, 0.0), (30_000, 60.0), (60_000, 120.0)]);
        assert!(m[0].labels.get("__name__").is_none());
        assert_eq!(r.stats.total_queryable_samples, 9);
        assert!(r.stats.peak_samples >= 9);
    }

    #[test]
    fn instant_rate_and_scalar() {
        let r = engine().instant_query(&data(1), "rate(x[5m])", 3_600_000, &QueryOptions::default()).unwrap();
        let Value::Vector(v) = r.value else { panic!("not a vector") };
        assert!((v[0].v - 1.0).abs() < 1e-9);
        assert_eq!(r.infos.len(), 1, "x does not look like a counter: {:?}", r.infos);
        let r = engine().instant_query(&data(1), "scalar(x) + 1", 60_000, &QueryOptions::default()).unwrap();
        assert_eq!(r.value, Value::Scalar { t: 60_000, v: 61.0 });
    }

    #[test]
    fn errors_have_the_expected_kinds() {
        let e = engine();
        let s = data(2);
        assert!(matches!(e.instant_query(&s, "sum(", 0, &QueryOptions::default()), Err(QueryError::Parse { .. })));
        assert!(matches!(e.range_query(&s, "x[5m]", 0, 10, 1, &QueryOptions::default()), Err(QueryError::BadData(_))));
        assert!(matches!(e.range_query(&s, "x", 0, 10, 0, &QueryOptions::default()), Err(QueryError::BadData(_))));
        assert!(matches!(
            e.range_query(&s, "x", i64::MIN, i64::MAX, 1, &QueryOptions::default()),
            Err(QueryError::BadData(_))
        ));
        let dup = e.instant_query(&s, "label_replace(x, \"i\", \"same\", \"i\", \".*\")", 0, &QueryOptions::default());
        assert!(matches!(dup, Err(QueryError::Execution(m)) if m == DUPLICATE_LABELSET));
        let bad_re = e.instant_query(&s, "label_replace(x, \"a\", \"b\", \"i\", \"(\")", 0, &QueryOptions::default());
        assert!(matches!(bad_re, Err(QueryError::BadData(_))));
        let many = e.instant_query(&s, "x + on() x", 0, &QueryOptions::default());
        assert!(matches!(many, Err(QueryError::Execution(m)) if m.contains("many-to-many")));
    }

    #[test]
    fn info_adds_the_data_labels_of_info_series() {
        let series = |pairs: &[(&str, &str)]| (Labels::from_pairs(pairs), vec![(0, 1.0), (60_000, 2.0)], false);
        let s = Mem(vec![
            series(&[("__name__", "m"), ("instance", "a"), ("job", "j")]),
            series(&[("__name__", "target_info"), ("instance", "a"), ("job", "j"), ("version", "1")]),
        ]);
        let want = Labels::from_pairs(&[("__name__", "m"), ("instance", "a"), ("job", "j"), ("version", "1")]);
        // promql-parser alone refuses the second label selector: every matcher matches empty.
        for q in ["info(m)", r#"info(m, {version=~".*"})"#] {
            let r = engine().instant_query(&s, q, 60_000, &QueryOptions::default()).unwrap();
            let Value::Vector(v) = r.value else { panic!("not a vector") };
            assert_eq!(v.iter().map(|s| (&s.labels, s.v)).collect::<Vec<_>>(), vec![(&want, 2.0)], "{q}");
        }
    }

    #[test]
    fn extended_range_modifiers_and_duration_expressions() {
        let s = data(1);
        // x is the time in seconds, a sample every 15s.
        let value = |q: &str, t: i64| match engine().instant_query(&s, q, t, &QueryOptions::default()).unwrap().value {
            Value::Vector(v) => v[0].v,
            other => panic!("{q}: {other:?}"),
        };
        assert_eq!(value("x smoothed", 607_500), 607.5);
        assert_eq!(value("increase(x[1m] anchored)", 607_500), 60.0);
        assert_eq!(value("increase(x[1m] smoothed)", 607_500), 60.0);
        assert_eq!(value("x offset (1m + 30s)", 600_000), 510.0);
        let e = engine().instant_query(&s, "deriv(x[1m] anchored)", 600_000, &QueryOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "anchored modifier can only be used with: changes, delta, increase, rate, resets - not with deriv"
        );
        // step() is the query's: 0 in an instant query, where a range cannot be 0.
        assert!(matches!(
            engine().instant_query(&s, "x[step()]", 0, &QueryOptions::default()),
            Err(QueryError::Parse { .. })
        ));
        let r = engine()
            .range_query(&s, "count_over_time(x[step()])", 600_000, 660_000, 30_000, &QueryOptions::default())
            .unwrap();
        let Value::Matrix(m) = r.value else { panic!("not a matrix") };
        assert_eq!(m[0].points, vec![(600_000, 2.0), (630_000, 2.0), (660_000, 2.0)]);
    }

    #[test]
    fn native_histograms_are_unsupported() {
        let mut s = data(1);
        s.0.push((Labels::from_pairs(&[("__name__", "h")]), vec![(0, 1.0)], true));
        assert!(matches!(
            engine().instant_query(&s, "h", 0, &QueryOptions::default()),
            Err(QueryError::Unsupported(_))
        ));
        assert!(engine().instant_query(&s, "x", 0, &QueryOptions::default()).is_ok());
    }

    #[test]
    fn limits_are_enforced() {
        let s = data(10);
        let small = Engine::new(EngineOptions { max_samples: 100, ..EngineOptions::default() });
        assert!(matches!(
            small.range_query(&s, "x", 0, 3_600_000, 15_000, &QueryOptions::default()),
            Err(QueryError::TooManySamples)
        ));
        assert!(small.instant_query(&s, "sum(x)", 0, &QueryOptions::default()).is_ok());
        let no_time = Engine::new(EngineOptions { timeout: Duration::ZERO, ..EngineOptions::default() });
        assert!(matches!(no_time.instant_query(&s, "x", 0, &QueryOptions::default()), Err(QueryError::Timeout)));
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let e = engine();
        let s = data(2);
        for q in [
            "x offset 100000y",
            "x offset -100000y",
            "rate(x[100000y])",
            "max_over_time(x[100000y:1ms])",
            "x @ 100000000000",
            "x @ -100000000000",
            "last_over_time(x[1h:1ms] offset 100000y)",
            "count_over_time(x[5m:] @ 0)",
        ] {
            for t in [i64::MIN, -1, 0, 1_000, i64::MAX] {
                let _ = e.instant_query(&s, q, t, &QueryOptions::default());
                let _ = e.range_query(&s, q, t.saturating_sub(60_000), t, 30_000, &QueryOptions::default());
            }
        }
    }

    #[test]
    fn aggregations_in_parts_match_whole_evaluation() {
        // Enough series for several parts at 241 steps, in 7 groups, with gaps and resets.
        let series = (0..2500)
            .map(|i| {
                let labels = Labels::from_pairs(&[
                    ("__name__", "x"),
                    ("g", (i % 7).to_string().as_str()),
                    ("i", i.to_string().as_str()),
                ]);
                let samples = (0..=240)
                    .filter(|k| (k + i) % 13 != 0)
                    .map(|k| (k * 15_000, ((k * (i % 5 + 1)) % 97) as f64 + i as f64 / 7.0))
                    .collect();
                (labels, samples, false)
            })
            .collect();
        let s = Mem(series);
        let e = engine();
        // label_replace is not per-series work (it can make duplicates), so its argument is
        // evaluated whole; this one changes nothing.
        for (streamed, whole, small_output) in [
            ("sum by (g) (rate(x[5m]))", "sum by (g) (label_replace(rate(x[5m]), \"z\", \"\", \"z\", \"\"))", true),
            ("avg without (i) (x * 2)", "avg without (i) (label_replace(x * 2, \"z\", \"\", \"z\", \"\"))", true),
            ("count(x > 50)", "count(label_replace(x > 50, \"z\", \"\", \"z\", \"\"))", true),
            ("max by (g) (-x)", "max by (g) (label_replace(-x, \"z\", \"\", \"z\", \"\"))", true),
            (
                "stddev by (g) (clamp_max(x, 40))",
                "stddev by (g) (label_replace(clamp_max(x, 40), \"z\", \"\", \"z\", \"\"))",
                true,
            ),
            (
                "group by (g) (max_over_time(x[1m]))",
                "group by (g) (label_replace(max_over_time(x[1m]), \"z\", \"\", \"z\", \"\"))",
                true,
            ),
            // One group per series: the output is as large as the input.
            ("sum by (i) (x)", "sum by (i) (label_replace(x, \"z\", \"\", \"z\", \"\"))", false),
            (
                "topk by (g) (3, rate(x[5m]))",
                "topk by (g) (3, label_replace(rate(x[5m]), \"z\", \"\", \"z\", \"\"))",
                true,
            ),
            ("bottomk(5, -x)", "bottomk(5, label_replace(-x, \"z\", \"\", \"z\", \"\"))", true),
            ("topk by (i) (1, x)", "topk by (i) (1, label_replace(x, \"z\", \"\", \"z\", \"\"))", false),
            (
                "min(quantile_over_time(0.5, x[2m]))",
                "min(label_replace(quantile_over_time(0.5, x[2m]), \"z\", \"\", \"z\", \"\"))",
                true,
            ),
        ] {
            // At a 3s step the one-group-per-series table would be too large: the parts are
            // collected and folded step by step.
            for step in [15_000, 3_000] {
                let a = e.range_query(&s, streamed, 0, 3_600_000, step, &QueryOptions::default()).unwrap();
                let b = e.range_query(&s, whole, 0, 3_600_000, step, &QueryOptions::default()).unwrap();
                assert_eq!(a.value, b.value, "{streamed} at step {step}");
                assert_eq!(a.stats.total_queryable_samples, b.stats.total_queryable_samples, "{streamed}");
                if step == 15_000 && small_output {
                    // Only one part of the argument is held at a time.
                    assert!(
                        a.stats.peak_samples * 2 < b.stats.peak_samples,
                        "{streamed}: {:?} vs {:?}",
                        a.stats,
                        b.stats
                    );
                }
            }
            let a = e.instant_query(&s, streamed, 1_800_000, &QueryOptions::default()).unwrap();
            let b = e.instant_query(&s, whole, 1_800_000, &QueryOptions::default()).unwrap();
            assert_eq!(a.value, b.value, "{streamed}");
        }
    }

    #[test]
    fn reads_a_real_tsdb() {
        let dir = tempfile::tempdir().unwrap();
        let db = strata_tsdb::db::Db::open(dir.path(), strata_tsdb::db::DbOptions::default()).unwrap();
        let mut app = db.appender();
        for job in ["a", "b"] {
            // 500 samples: several head chunks per series.
            let samples: Vec<(i64, f64)> = (0..500).map(|k| (k * 15_000, k as f64)).collect();
            app.append(&[("__name__", "c_total"), ("job", job)], samples).unwrap();
        }
        app.commit().unwrap();
        let r = engine()
            .range_query(&db, "sum(rate(c_total[1m]))", 600_000, 7_000_000, 60_000, &QueryOptions::default())
            .unwrap();
        let Value::Matrix(m) = r.value else { panic!("not a matrix") };
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].points.len(), 107);
        assert!(m[0].points.iter().all(|&(_, v)| (v - 2.0 / 15.0).abs() < 1e-9), "{:?}", &m[0].points[..3]);
    }

    const MINUTE: i64 = 60_000;
    const SCRAPE: i64 = 15_000;
    const END: i64 = 180 * MINUTE;
    /// Where replica a and replica b miss ten minutes of samples each.
    const GAP_A: std::ops::Range<i64> = 60 * MINUTE..70 * MINUTE;
    const GAP_B: std::ops::Range<i64> = 120 * MINUTE..130 * MINUTE;

    type Samples = Vec<(i64, f64)>;

    /// What one server that got every sample holds, over three hours at 15s: counters (`i1`
    /// resets at 90m, `r` resets during replica a's gap), gauges, a gauge that goes stale at
    /// 100m, and `only_a`, which only replica a has (so it has a's gap).
    fn complete() -> Vec<(Labels, Samples)> {
        let times = || (0..=END / SCRAPE).map(|k| k * SCRAPE);
        let mut out = Vec::new();
        for (i, instance) in ["i0", "i1", "i2", "r"].iter().enumerate() {
            let job = if i % 2 == 0 { "api" } else { "db" };
            let reset_at = match *instance {
                "i1" => 90 * MINUTE,
                "r" => 65 * MINUTE,
                _ => i64::MAX,
            };
            let mut v = 0.0;
            let samples = times()
                .map(|t| {
                    v = if t == reset_at { 1.0 } else { v + ((t / SCRAPE) as usize * (i + 3) % 7) as f64 };
                    (t, v)
                })
                .collect();
            out.push((Labels::from_pairs(&[("__name__", "c_total"), ("instance", instance), ("job", job)]), samples));
        }
        for (i, instance) in ["i0", "i1", "i2", "gone", "only_a"].iter().enumerate() {
            let samples: Samples = times()
                .map(|t| (t, ((t / SCRAPE) as usize * (37 + i) % 101) as f64 / 4.0))
                .filter(|&(t, _)| *instance != "only_a" || !GAP_A.contains(&t))
                .filter(|&(t, _)| *instance != "gone" || t <= 100 * MINUTE)
                .chain((*instance == "gone").then(|| (100 * MINUTE + SCRAPE, f64::from_bits(types::STALE_NAN_BITS))))
                .collect();
            let job = if i % 2 == 0 { "api" } else { "db" };
            out.push((Labels::from_pairs(&[("__name__", "g"), ("instance", instance), ("job", job)]), samples));
        }
        out
    }

    fn mem(series: Vec<(Labels, Samples)>) -> Mem {
        Mem(series.into_iter().map(|(l, s)| (l, s, false)).collect())
    }

    /// `complete` as two replicas, `replica="a"` and `"b"`, each without its gap.
    fn replicas(complete: &[(Labels, Samples)]) -> Mem {
        let mut out = Vec::new();
        for (labels, samples) in complete {
            for (replica, gap) in [("a", GAP_A), ("b", GAP_B)] {
                if labels.get("instance") == Some("only_a") && replica == "b" {
                    continue;
                }
                let mut pairs: Vec<(&str, &str)> = labels.iter().collect();
                pairs.push(("replica", replica));
                let kept = samples.iter().copied().filter(|(t, _)| !gap.contains(t)).collect();
                out.push((Labels::from_pairs(&pairs), kept));
            }
        }
        mem(out)
    }

    fn dedup(func: DedupFunc) -> QueryOptions {
        QueryOptions { replica_labels: vec!["replica".into()], dedup_func: func, ..QueryOptions::default() }
    }

    /// Queries of the kinds the query corpus has, over counters and gauges.
    const DEDUP_QUERIES: &[&str] = &[
        "c_total",
        "g",
        "timestamp(g)",
        "rate(c_total[5m])",
        "increase(c_total[10m])",
        "irate(c_total[1m])",
        "resets(c_total[30m])",
        "sum(rate(c_total[5m]))",
        "sum by (job) (increase(c_total[15m]))",
        "sum by (job) (g)",
        "avg(g)",
        "count(g)",
        "avg_over_time(g[10m])",
        "count_over_time(g[5m])",
        "max_over_time(g[3m])",
        "last_over_time(g[2m])",
        "changes(g[10m])",
        "delta(g[5m])",
        "rate(c_total[5m] offset 10m)",
        "max_over_time(rate(c_total[5m])[30m:1m])",
        "avg_over_time(g[20m:30s])",
    ];

    fn assert_same(a: &QueryResult, b: &QueryResult, what: &str) {
        assert_eq!(a.value, b.value, "{what}");
        assert_eq!((&a.warnings, &a.infos), (&b.warnings, &b.infos), "{what}");
    }

    /// Chain deduplication answers over the two replicas exactly what one complete series
    /// answers: gaps filled, no sample twice, counter resets (one of them while a is away) and
    /// the staleness marker as they were.
    #[test]
    fn chain_dedup_answers_as_one_complete_series() {
        let complete = complete();
        let (one, two) = (mem(complete.clone()), replicas(&complete));
        let e = engine();
        let opts = dedup(DedupFunc::Chain);
        let plain = QueryOptions::default();
        let ranges =
            [(10 * MINUTE, END, MINUTE), (55 * MINUTE, 80 * MINUTE, SCRAPE), (115 * MINUTE, 140 * MINUTE, SCRAPE)];
        let instants = [59, 60, 61, 65, 70, 71, 100, 101, 120, 125, 130, 175].map(|m| m * MINUTE + SCRAPE);
        for q in DEDUP_QUERIES {
            for (start, end, step) in ranges {
                let want = e.range_query(&one, q, start, end, step, &plain).unwrap();
                let got = e.range_query(&two, q, start, end, step, &opts).unwrap();
                assert_same(&got, &want, &format!("{q} from {start} to {end} by {step}"));
            }
            for t in instants {
                let want = e.instant_query(&one, q, t, &plain).unwrap();
                let got = e.instant_query(&two, q, t, &opts).unwrap();
                assert_same(&got, &want, &format!("{q} at {t}"));
            }
        }
        // Without deduplication both replicas come back, told apart by their label.
        let r = e.instant_query(&two, "count(g)", 30 * MINUTE, &plain).unwrap();
        assert_eq!(r.value, Value::Vector(vec![Sample { labels: Labels::empty(), t: 30 * MINUTE, v: 9.0 }]));
    }

    /// Penalty deduplication, as Thanos's querier, merges the runs of non-overlapping chunks
    /// that the replicas' pooled chunks (identical ones once) split into, stays on one run and
    /// switches only across a gap, holding the other run back by two scrape intervals. Here
    /// b's chunk that starts at a's gap comes first, so the first run is b's chunks, then the
    /// chunks both replicas share after b's gap: a's gap is filled at once. Across b's gap the
    /// merge switches to the run of a's chunks and back, and after each switch the first two
    /// samples of the run switched to are not taken. Its answers are exactly those of one series
    /// holding the samples it takes; with equal replicas a counter does not go down at a switch,
    /// so rates are not broken there.
    #[test]
    fn penalty_dedup_answers_as_the_series_it_takes() {
        // `r` resets while a is away: the counter adjustment at the switch hides that reset
        // (Thanos's behaviour, tested with the merge itself).
        let complete: Vec<(Labels, Samples)> =
            complete().into_iter().filter(|(l, _)| l.get("instance") != Some("r")).collect();
        let not_taken = [GAP_B.start, GAP_B.start + SCRAPE, GAP_B.end, GAP_B.end + SCRAPE];
        let taken: Vec<(Labels, Samples)> = complete
            .iter()
            .map(|(l, s)| {
                // `gone` ends before b's gap; `only_a` has no other replica.
                let merged = if matches!(l.get("instance"), Some("only_a" | "gone")) {
                    s.clone()
                } else {
                    s.iter().copied().filter(|(t, _)| !not_taken.contains(t)).collect()
                };
                (l.clone(), merged)
            })
            .collect();
        let (one, two) = (mem(taken), replicas(&complete));
        let e = engine();
        let opts = dedup(DedupFunc::Penalty);
        for q in DEDUP_QUERIES {
            // Every selection starts before the first gap, so the merge takes the same samples.
            for step in [MINUTE, SCRAPE] {
                let want = e.range_query(&one, q, 10 * MINUTE, END, step, &QueryOptions::default()).unwrap();
                let got = e.range_query(&two, q, 10 * MINUTE, END, step, &opts).unwrap();
                assert_same(&got, &want, &format!("{q} by {step}"));
            }
        }
    }

    #[test]
    fn dedup_changes_nothing_without_replicas() {
        let s = data(20);
        let e = engine();
        for q in ["x", "rate(x[5m])", "sum(x)", "max_over_time(x[10m:1m])"] {
            let want = e.range_query(&s, q, 600_000, 3_600_000, 30_000, &QueryOptions::default()).unwrap();
            for func in [DedupFunc::Penalty, DedupFunc::Chain] {
                let got = e.range_query(&s, q, 600_000, 3_600_000, 30_000, &dedup(func)).unwrap();
                assert_same(&got, &want, q);
            }
        }
    }

    #[test]
    fn dedup_in_parts_matches_whole_evaluation() {
        // Enough series for several parts, as two replicas with gaps.
        let complete: Vec<(Labels, Samples)> = (0..1500)
            .map(|i| {
                let labels = Labels::from_pairs(&[
                    ("__name__", "c_total"),
                    ("g", (i % 7).to_string().as_str()),
                    ("i", i.to_string().as_str()),
                ]);
                (labels, (0..=240).map(|k| (k * SCRAPE, (k * (i % 5 + 1)) as f64)).collect())
            })
            .collect();
        let (one, two) = (mem(complete.clone()), replicas(&complete));
        let e = engine();
        for (streamed, whole) in [
            ("sum by (g) (rate(c_total[5m]))", r#"sum by (g) (label_replace(rate(c_total[5m]), "z", "", "z", ""))"#),
            ("count(c_total > 50)", r#"count(label_replace(c_total > 50, "z", "", "z", ""))"#),
            ("topk by (g) (2, c_total)", r#"topk by (g) (2, label_replace(c_total, "z", "", "z", ""))"#),
        ] {
            let want = e.range_query(&one, streamed, 0, 60 * MINUTE, SCRAPE, &QueryOptions::default()).unwrap();
            let a = e.range_query(&two, streamed, 0, 60 * MINUTE, SCRAPE, &dedup(DedupFunc::Chain)).unwrap();
            let b = e.range_query(&two, whole, 0, 60 * MINUTE, SCRAPE, &dedup(DedupFunc::Chain)).unwrap();
            assert_eq!(a.value, b.value, "{streamed}");
            assert_eq!(a.value, want.value, "{streamed}");
            assert!(a.stats.peak_samples < b.stats.peak_samples, "{streamed}: {:?} vs {:?}", a.stats, b.stats);
        }
    }

    /// Every read carries the query's scope, resolution and enforced matchers (in place of the
    /// query's own on that label), and reads the replicas as they are.
    #[test]
    fn reads_carry_the_query_options() {
        let mut series = data(2).0;
        series.push((Labels::from_pairs(&[("__name__", "x"), ("i", "9"), ("tenant_id", "t2")]), vec![(0, 1.0)], false));
        let storage = Recording(Mem(series), Default::default());
        let tenant = |v: &str| Matcher::new(strata_tsdb::matchers::MatchOp::Equal, "tenant_id", v).unwrap();
        let opts = QueryOptions {
            replica_labels: vec!["replica".into()],
            scope: ReadScope {
                tenant: Some("t1".into()),
                partial_response: strata_storage::PartialResponse::Warn,
                store_matchers: vec![vec![tenant("t1")]],
            },
            max_resolution_window: 300_000,
            enforced_matchers: vec![tenant("t1")],
            ..QueryOptions::default()
        };
        let q = r#"rate(x{tenant_id="t2"}[5m]) + on() group_left count(x{tenant_id=~".+"})"#;
        let r = engine().instant_query(&storage, q, 600_000, &opts).unwrap();
        assert_eq!(r.value, Value::Vector(Vec::new()), "no series of t1");
        let reqs = storage.1.lock().unwrap();
        assert_eq!(reqs.len(), 2);
        // rate needs two samples in its 5m: at most 2m30s resolution (Thanos's rule).
        assert_eq!(reqs[0].max_resolution_window, 150_000);
        assert_eq!(reqs[1].max_resolution_window, 300_000);
        for req in reqs.iter() {
            assert_eq!(req.scope.tenant.as_deref(), Some("t1"));
            assert_eq!(req.scope.partial_response, strata_storage::PartialResponse::Warn);
            assert_eq!(req.scope.store_matchers.len(), 1);
            assert!(req.without_replica_labels.is_empty());
            let on_tenant: Vec<&Matcher> = req.matchers.iter().filter(|m| m.name == "tenant_id").collect();
            assert_eq!(on_tenant.len(), 1);
            assert_eq!(on_tenant[0].value, "t1");
        }
        assert_eq!(reqs[0].aggregates, [strata_storage::Aggr::Counter]);
        assert_eq!(reqs[1].aggregates, [strata_storage::Aggr::Count]);
    }

    /// Downsampled chunks read as Thanos's querier reads them: the counter aggregate with its
    /// resets undone (across chunks too) for rate, one aggregate for the *_over_time functions,
    /// sum / count otherwise; raw chunks of the same series along.
    #[test]
    fn downsampled_chunks_read_per_function() {
        use strata_tsdb::chunkenc::{AggrChunk, AggrType, SubChunk};
        const RES: i64 = 300_000;
        fn xor(samples: &[(i64, f64)]) -> SubChunk {
            let mut a = XorAppender::new();
            samples.iter().for_each(|&(t, v)| a.append(t, v));
            SubChunk { encoding: Encoding::Xor, data: a.bytes().to_vec().into() }
        }
        // Two chunks of two 5m windows each: one raw sample a minute, the counter going 0..9,
        // then reset to 0 at the start of the second chunk and going 0..9 again.
        let chunk = |start: i64| {
            let ends = [start + RES - 1, start + 2 * RES - 1];
            let last_raw = start + 2 * RES - 60_000;
            let mut c = AggrChunk::default();
            c.set(AggrType::Count, Some(xor(&[(ends[0], 5.0), (ends[1], 5.0)])));
            c.set(AggrType::Sum, Some(xor(&[(ends[0], 10.0), (ends[1], 35.0)])));
            c.set(AggrType::Min, Some(xor(&[(ends[0], 0.0), (ends[1], 5.0)])));
            c.set(AggrType::Max, Some(xor(&[(ends[0], 4.0), (ends[1], 9.0)])));
            c.set(AggrType::Counter, Some(xor(&[(start, 0.0), (ends[0], 4.0), (last_raw, 9.0), (last_raw, 9.0)])));
            ChunkData { min_time: start, max_time: ends[1], encoding: Encoding::Aggr, data: c.encode().into() }
        };
        struct Downsampled(Vec<ChunkData>);
        impl Storage for Downsampled {
            fn select(&self, _: &SelectRequest) -> Result<SeriesSet, StorageError> {
                let s = SeriesChunks { labels: Labels::from_pairs(&[("__name__", "x")]), chunks: self.0.clone() };
                Ok(SeriesSet::new(std::iter::once(Ok(s))))
            }
            fn label_names(&self, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
                Ok(LabelsAnswer::default())
            }
            fn label_values(&self, _: &str, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
                Ok(LabelsAnswer::default())
            }
        }
        let storage = Downsampled(vec![chunk(0), chunk(2 * RES)]);
        let opts = QueryOptions { max_resolution_window: 3_600_000, ..QueryOptions::default() };
        let at = 4 * RES - 1;
        let value = |q: &str| match engine().instant_query(&storage, q, at, &opts).unwrap().value {
            Value::Vector(v) => v.iter().map(|s| s.v).collect::<Vec<f64>>(),
            other => panic!("{q}: {other:?}"),
        };
        // The counter: 0 … 9 in the first chunk, then the reset to 0 is seen against the first
        // chunk's last raw value: 9 + 0 … 9 + 9 = 18 over the samples' 1140 s, extrapolated to
        // the end of the range (not before the first sample: a counter starting at 0).
        let increase = value("increase(x[1h])");
        assert!((increase[0] - 18.0 * (1199.999 / 1140.0)).abs() < 1e-9, "{increase:?}");
        assert_eq!(value("resets(x[1h])"), [0.0], "resets are hidden, as in Thanos");
        assert_eq!(value("max_over_time(x[1h])"), [9.0]);
        assert_eq!(value("min_over_time(x[1h])"), [0.0]);
        // The count aggregate's samples are counted, not summed (as Thanos answers).
        assert_eq!(value("count_over_time(x[1h])"), [4.0]);
        assert_eq!(value("sum_over_time(x[1h])"), [90.0]);
        assert_eq!(value("x"), [7.0], "the last window's average");
        assert_eq!(value("avg_over_time(x[1h])"), [4.5]);
    }

    /// A query allowing downsampled data reads counters of raw series as Thanos's querier does
    /// (resets undone); a raw query keeps Prometheus's semantics.
    #[test]
    fn raw_counters_read_as_thanos_when_downsampled_data_is_allowed() {
        let samples = vec![(0, 5.0), (60_000, 7.0), (120_000, 1.0), (180_000, 4.0)];
        let storage = Mem(vec![(Labels::from_pairs(&[("__name__", "c")]), samples, false)]);
        let resets = |max_resolution_window| {
            let opts = QueryOptions { max_resolution_window, ..QueryOptions::default() };
            match engine().instant_query(&storage, "resets(c[10m])", 200_000, &opts).unwrap().value {
                Value::Vector(v) => v.iter().map(|s| s.v).collect::<Vec<f64>>(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(resets(0), [1.0]);
        assert_eq!(resets(3_600_000), [0.0]);
    }

    /// What a fan-out reports while a set is read (a store that did not answer) ends up in the
    /// query's warnings, once.
    #[test]
    fn storage_warnings_become_query_warnings() {
        struct Warning(Mem);
        impl Storage for Warning {
            fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
                let inner = self.0.select(req)?;
                let warnings = inner.warnings_handle();
                let w = warnings.clone();
                let series = inner.inspect(move |_| w.add("store b did not answer".into()));
                Ok(SeriesSet::with_warnings(series, warnings))
            }
            fn label_names(&self, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
                Ok(LabelsAnswer::default())
            }
            fn label_values(&self, _: &str, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
                Ok(LabelsAnswer::default())
            }
        }
        let r = engine().instant_query(&Warning(data(3)), "x + x", 60_000, &QueryOptions::default()).unwrap();
        assert_eq!(r.warnings, ["store b did not answer"]);
    }
}
