//! The evaluator: walks the AST, reads selectors from the storage and holds the query's limits,
//! statistics and annotations.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as ParserOp;
use promql_parser::parser::{AggregateExpr, AtModifier, Expr, LabelModifier, Offset, VectorSelector};
use strata_storage::{Aggr, ChunkData, Grouping, SelectHints, SelectRequest, SeriesChunks, Storage, StorageError};
use strata_tsdb::chunkenc::{Encoding, XorAppender, XorIter};
use strata_tsdb::downsample::{self, AggrView};
use strata_tsdb::labels::{Labels, METRIC_NAME};
use strata_tsdb::matchers::{MatchOp, Matcher};
use strata_tsdb::querier::MERGED_CHUNK_SAMPLES;

use super::dedup::{self, Merge};
use super::extended::{extend_floats, smoothed_points};
use super::positions::Positions;
use super::types::{is_stale, remove_labels, Grid, Point, StepSeries, Val};
use super::{aggregate, binary, functions, QueryError, QueryOptions, QueryResult, QueryStats};
use crate::parse::{Parsed, SelectorExtras};
use crate::value::Value;

/// Subquery step when the query gives none, as Prometheus's default evaluation interval.
const DEFAULT_SUBQUERY_STEP: i64 = 60_000;

/// Work (samples decoded plus steps evaluated, some nanoseconds each) that a part must have
/// to be handed to another thread: waking one costs tens to hundreds of microseconds on a
/// virtual machine, and below this a second thread did not make queries faster.
const PARALLEL_MIN_WORK: usize = 1 << 16;

pub(crate) struct Limits {
    pub lookback: i64,
    pub max_samples: usize,
    pub deadline: Instant,
}

/// A range vector's source: a range selector's series or a subquery's points, and where its
/// windows sit relative to the evaluation times.
pub(crate) struct RangeInput {
    pub source: RangeSource,
    pub range: i64,
    pub offset: i64,
    /// A fixed evaluation time from an `@` modifier.
    pub at: Option<i64>,
    /// The selector's `anchored` or `smoothed` modifier.
    pub extended: Option<Extended>,
    /// How far before (and, smoothed, after) a window an extended selector reads.
    pub lookback: i64,
}

/// The extended-range modifiers: windows also see the last sample within the lookback delta
/// before their start (`anchored`), and the first one after their end (`smoothed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extended {
    Anchored,
    Smoothed,
}

/// The samples read for a window `(start, end]` of a selector with `extended`.
fn read_bounds(extended: Option<Extended>, lookback: i64, start: i64, end: i64) -> (i64, i64) {
    match extended {
        None => (start, end),
        Some(Extended::Anchored) => (start.saturating_sub(lookback), end),
        Some(Extended::Smoothed) => (start.saturating_sub(lookback), end.saturating_add(lookback)),
    }
}

impl Extended {
    pub fn name(self) -> &'static str {
        match self {
            Extended::Anchored => "anchored",
            Extended::Smoothed => "smoothed",
        }
    }
}

pub(crate) enum RangeSource {
    /// A range selector's series, decoded one at a time where they are used (staleness markers
    /// dropped), so that decoding and evaluating a series happen together.
    Selected(Selected),
    /// A subquery's points.
    Points(Vec<RangeSeries>),
}

impl RangeInput {
    /// End (inclusive) of the window evaluated at time `ts`; the start is `end - range`
    /// (exclusive).
    pub fn window_end(&self, ts: i64) -> i64 {
        self.at.unwrap_or(ts).saturating_sub(self.offset)
    }

    /// The samples read for the window `(start, end]`: more around it for an extended selector.
    pub fn read_bounds(&self, start: i64, end: i64) -> (i64, i64) {
        read_bounds(self.extended, self.lookback, start, end)
    }

    pub fn labels(&self, i: usize) -> &Labels {
        match &self.source {
            RangeSource::Selected(s) => s.labels(i),
            RangeSource::Points(p) => &p[i].labels,
        }
    }

    pub fn drop_name(&self, i: usize) -> bool {
        match &self.source {
            RangeSource::Selected(_) => false,
            RangeSource::Points(p) => p[i].drop_name,
        }
    }

    /// Calls `f` with every series' sample times and values, on all cores when there is enough
    /// work (`steps` is how many evaluation times `f` handles per series); results in series
    /// order. Samples decoded here count as held by the query.
    pub fn map_series<R: Send>(
        &self,
        ev: &mut Evaluator,
        steps: usize,
        f: impl Fn(&[i64], &[f64]) -> R + Sync,
    ) -> Result<Vec<R>, QueryError> {
        let deadline = ev.limits.deadline;
        let out: Vec<Result<(R, usize), QueryError>> = match &self.source {
            RangeSource::Selected(sel) => sel.map_decoded(steps, true, deadline, f),
            RangeSource::Points(p) => par_map(
                p,
                |s| s.t.len() + steps,
                PARALLEL_MIN_WORK,
                |s| {
                    if Instant::now() > deadline {
                        return Err(QueryError::Timeout);
                    }
                    // Subquery points are already accounted for.
                    Ok((f(&s.t, &s.v), 0))
                },
            ),
        };
        let mut results = Vec::with_capacity(out.len());
        let mut decoded = 0;
        for r in out {
            let (r, n) = r?;
            results.push(r);
            decoded += n;
        }
        ev.hold(decoded)?;
        Ok(results)
    }
}

/// The series a selector matched in `[mint, maxt]`, still encoded, as output series: each is
/// a group of replicas (one, unless deduplicating), side by side in label order.
pub(crate) struct Selected {
    series: Vec<SeriesChunks>,
    /// Each output series' replicas in `series`.
    groups: Vec<Range<usize>>,
    pub mint: i64,
    pub maxt: i64,
    /// How a group of several replicas becomes one series.
    merge: Merge,
}

impl Selected {
    /// `series` as read (sorted by labels), grouped: without `replica_labels` each series is its
    /// own group, unchanged; with them, the labels lose the replica labels, the series are
    /// sorted again (stably, so replicas keep their order) and equal labels form a group.
    fn new(mut series: Vec<SeriesChunks>, replica_labels: &[String], mint: i64, maxt: i64, merge: Merge) -> Self {
        let mut stripped = false;
        for s in &mut series {
            if replica_labels.iter().any(|r| s.labels.get(r).is_some()) {
                s.labels = remove_labels(&s.labels, replica_labels);
                stripped = true;
            }
        }
        if stripped {
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        let mut groups = Vec::with_capacity(series.len());
        let mut start = 0;
        for i in 1..=series.len() {
            if i == series.len() || !stripped || series[i].labels != series[start].labels {
                groups.push(start..i);
                start = i;
            }
        }
        Selected { series, groups, mint, maxt, merge }
    }

    /// How many output series there are.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn labels(&self, i: usize) -> &Labels {
        &self.series[self.groups[i].start].labels
    }

    /// The output series' labels, moved out.
    pub fn into_labels(mut self) -> impl Iterator<Item = Labels> {
        let groups = std::mem::take(&mut self.groups);
        groups.into_iter().map(move |g| std::mem::take(&mut self.series[g.start].labels))
    }

    /// The samples of output series `i` (see [`decode`]).
    pub fn decode(&self, i: usize, drop_stale: bool) -> Result<(Vec<i64>, Vec<f64>), QueryError> {
        self.decode_group(&self.groups[i], drop_stale)
    }

    fn decode_group(&self, g: &Range<usize>, drop_stale: bool) -> Result<(Vec<i64>, Vec<f64>), QueryError> {
        decode(&self.series[g.clone()], self.mint, self.maxt, self.merge, drop_stale)
    }

    /// Decodes every output series and calls `f` with its sample times and values, on all cores
    /// when there is enough work (`steps` is how many evaluation times `f` handles per series);
    /// results in series order, each with the number of samples decoded.
    pub fn map_decoded<R: Send>(
        &self,
        steps: usize,
        drop_stale: bool,
        deadline: Instant,
        f: impl Fn(&[i64], &[f64]) -> R + Sync,
    ) -> Vec<Result<(R, usize), QueryError>> {
        par_map(
            &self.groups,
            |g| self.series[g.clone()].iter().map(chunk_samples).sum::<usize>() + steps,
            PARALLEL_MIN_WORK,
            |g| {
                if Instant::now() > deadline {
                    return Err(QueryError::Timeout);
                }
                let (t, v) = self.decode_group(g, drop_stale)?;
                Ok((f(&t, &v), t.len()))
            },
        )
    }

    /// Output series `from` up to `from + size`, moved out into a selection of their own.
    fn take_part(&mut self, from: usize, size: usize) -> Selected {
        let groups = &self.groups[from.min(self.groups.len())..(from.saturating_add(size)).min(self.groups.len())];
        let (Some(first), Some(last)) = (groups.first(), groups.last()) else {
            return Selected { series: Vec::new(), groups: Vec::new(), ..*self };
        };
        let base = first.start;
        let series = self.series[base..last.end]
            .iter_mut()
            .map(|s| SeriesChunks { labels: std::mem::take(&mut s.labels), chunks: std::mem::take(&mut s.chunks) })
            .collect();
        let groups = groups.iter().map(|g| g.start - base..g.end - base).collect();
        Selected { series, groups, ..*self }
    }
}

/// One series of points, oldest first.
pub(crate) struct RangeSeries {
    pub labels: Labels,
    pub drop_name: bool,
    pub t: Vec<i64>,
    pub v: Vec<f64>,
}

pub(crate) struct Evaluator<'a> {
    storage: &'a dyn Storage,
    /// How the query reads: deduplication, scope, resolution, enforced matchers.
    opts: &'a QueryOptions,
    /// The query as written, where annotations point.
    query: &'a str,
    parsed: &'a Parsed,
    /// What selectors have beyond promql-parser's tree, by node address.
    selectors: HashMap<usize, &'a SelectorExtras>,
    pub limits: Limits,
    /// The query's own grid: what `@ start()` and `@ end()` refer to.
    query_grid: Grid,
    pub range_query: bool,
    current: usize,
    stats: QueryStats,
    warnings: Vec<String>,
    infos: Vec<String>,
    positions: Option<Positions>,
    /// Set while an expression is evaluated a part of its series at a time.
    shards: Option<Shards>,
    /// What encloses the node being evaluated, for the select hints of its selectors.
    enclosing: Enclosing,
    /// Whether a subquery encloses the node being evaluated (its grid's step is then the
    /// subquery's, a hint even in an instant query).
    in_subquery: bool,
}

/// The function or aggregation nearest above a node (none past a binary operation) and the
/// grouping of an aggregation directly above it: what Prometheus's engine passes as `Func`,
/// `By` and `Grouping` in the select hints of a selector.
#[derive(Debug, Clone, Default)]
struct Enclosing {
    func: Option<String>,
    grouping: Option<Grouping>,
}

impl Enclosing {
    fn aggregation(a: &AggregateExpr) -> Self {
        let grouping = match &a.modifier {
            Some(LabelModifier::Include(l)) => Grouping { by: true, labels: l.labels.clone() },
            Some(LabelModifier::Exclude(l)) => Grouping { by: false, labels: l.labels.clone() },
            None => Grouping { by: true, labels: Vec::new() },
        };
        Enclosing { func: Some(a.op.to_string()), grouping: Some(grouping) }
    }

    /// What a node that is not itself a function, aggregation or binary operation passes to its
    /// operand: the function, but not the grouping (which is only for direct operands).
    fn below(&self) -> Self {
        Enclosing { func: self.func.clone(), grouping: None }
    }
}

/// The series of the one selector of an expression evaluated in parts (see
/// [`Evaluator::eval_in_parts`]): all of them are selected on the first evaluation, and each
/// evaluation takes the next `size` output series.
struct Shards {
    size: usize,
    /// The selection, and the first of its output series not handed out yet.
    pending: Option<(Selected, usize)>,
}

impl<'a> Evaluator<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        storage: &'a dyn Storage,
        opts: &'a QueryOptions,
        query: &'a str,
        parsed: &'a Parsed,
        selectors: HashMap<usize, &'a SelectorExtras>,
        limits: Limits,
        query_grid: Grid,
        range_query: bool,
    ) -> Self {
        Evaluator {
            storage,
            opts,
            query,
            parsed,
            selectors,
            limits,
            query_grid,
            range_query,
            current: 0,
            stats: QueryStats::default(),
            warnings: Vec::new(),
            infos: Vec::new(),
            positions: None,
            shards: None,
            enclosing: Enclosing::default(),
            in_subquery: false,
        }
    }

    pub fn finish(self, value: Value) -> QueryResult {
        QueryResult { value, stats: self.stats, warnings: self.warnings, infos: self.infos }
    }

    pub fn check_deadline(&self) -> Result<(), QueryError> {
        if Instant::now() > self.limits.deadline {
            Err(QueryError::Timeout)
        } else {
            Ok(())
        }
    }

    /// Accounts for `n` more samples held in memory.
    pub fn hold(&mut self, n: usize) -> Result<(), QueryError> {
        self.current += n;
        self.stats.peak_samples = self.stats.peak_samples.max(self.current as u64);
        if self.current > self.limits.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    pub fn count_queryable(&mut self, n: usize) {
        self.stats.total_queryable_samples += n as u64;
    }

    /// Adds a warning annotation; `pos` is the byte offset of the node it is about.
    pub fn warn(&mut self, msg: &str, pos: Option<usize>) {
        let text = format!("PromQL warning: {msg}{}", self.position_suffix(pos));
        if !self.warnings.contains(&text) {
            self.warnings.push(text);
        }
    }

    /// Adds an info annotation; `pos` is the byte offset of the node it is about.
    pub fn info(&mut self, msg: &str, pos: Option<usize>) {
        let text = format!("PromQL info: {msg}{}", self.position_suffix(pos));
        if !self.infos.contains(&text) {
            self.infos.push(text);
        }
    }

    fn position_suffix(&self, pos: Option<usize>) -> String {
        match pos {
            Some(p) if p <= self.query.len() => {
                let (line, column) = crate::parse::line_column(self.query, p);
                format!(" ({line}:{column})")
            }
            _ => String::new(),
        }
    }

    /// Source positions of the query's nodes, computed on first use (only annotations need them).
    pub fn positions(&mut self) -> &Positions {
        let parsed = self.parsed;
        self.positions.get_or_insert_with(|| Positions::new(parsed))
    }

    /// What `vs` has beyond promql-parser's tree, if anything.
    pub fn selector_extras(&self, vs: &VectorSelector) -> Option<&'a SelectorExtras> {
        self.selectors.get(&(vs as *const VectorSelector as usize)).copied()
    }

    /// The extended-range modifier of `vs`, if any.
    pub fn extended(&self, vs: &VectorSelector) -> Option<Extended> {
        let x = self.selector_extras(vs)?;
        if x.anchored {
            Some(Extended::Anchored)
        } else if x.smoothed {
            Some(Extended::Smoothed)
        } else {
            None
        }
    }

    /// Evaluates `expr` over `size` of its series at a time and hands each part's value to
    /// `each`, so that only one part is in memory at once. `expr` must contain exactly one
    /// selector and only per-series work above it, so that each part's result series come from
    /// that part's selected series alone, in the same order as a whole evaluation would give.
    pub fn eval_in_parts(
        &mut self,
        expr: &Expr,
        g: Grid,
        size: usize,
        mut each: impl FnMut(&mut Self, Val) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        debug_assert!(self.shards.is_none(), "parts do not nest");
        self.shards = Some(Shards { size: size.max(1), pending: None });
        let held = self.current;
        let result = loop {
            let val = match self.eval(expr, g) {
                Ok(v) => v,
                Err(e) => break Err(e),
            };
            if let Err(e) = each(self, val) {
                break Err(e);
            }
            // The part's points are gone once `each` has used them.
            self.current = held;
            // Done when the selector has handed out every series (or was never reached).
            if self.shards.as_ref().and_then(|s| s.pending.as_ref()).is_none_or(|(sel, next)| *next >= sel.len()) {
                break Ok(());
            }
        };
        self.shards = None;
        result
    }

    /// Labels of the series an evaluation in parts has selected but not handed out yet.
    pub fn pending_part_labels(&self) -> impl Iterator<Item = &Labels> {
        self.shards
            .iter()
            .flat_map(|s| s.pending.iter())
            .flat_map(|(sel, next)| (*next..sel.len()).map(|i| sel.labels(i)))
    }

    /// Evaluates `expr` at every step of `g`.
    pub fn eval(&mut self, expr: &Expr, g: Grid) -> Result<Val, QueryError> {
        self.check_deadline()?;
        // Every step of a grid can hold a sample, and scalars are held per step: a grid longer
        // than the sample limit cannot be evaluated within it.
        if g.len() > self.limits.max_samples {
            return Err(QueryError::TooManySamples);
        }
        let before = self.current;
        let val = self.eval_node(expr, g)?;
        // The node's inputs are gone now; only its output stays in memory.
        self.current = before;
        self.hold(val.num_points())?;
        Ok(val)
    }

    fn eval_node(&mut self, expr: &Expr, g: Grid) -> Result<Val, QueryError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; g.len()])),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.within(self.enclosing.below(), |ev| ev.eval(&p.expr, g)),
            Expr::Unary(u) => match self.within(self.enclosing.below(), |ev| ev.eval(&u.expr, g))? {
                Val::Scalar(mut v) => {
                    v.iter_mut().for_each(|x| *x = -*x);
                    Ok(Val::Scalar(v))
                }
                Val::Vector(mut series) => {
                    for s in &mut series {
                        s.drop_name = true;
                        s.points.iter_mut().for_each(|p| p.v = -p.v);
                    }
                    Ok(Val::Vector(series))
                }
                other => Err(QueryError::Execution(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::Binary(b) => self.within(Enclosing::default(), |ev| binary::eval(ev, b, g)),
            Expr::Aggregate(a) => self.within(Enclosing::aggregation(a), |ev| aggregate::eval(ev, a, g)),
            Expr::Call(c) => {
                let enclosing = Enclosing { func: Some(c.func.name.to_owned()), grouping: None };
                self.within(enclosing, |ev| functions::eval_call(ev, c, g))
            }
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.eval_vector_selector(vs, g, false)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if !g.is_instant() {
                    return Err(QueryError::Execution(
                        "a range vector can only be the result of an instant query".into(),
                    ));
                }
                let input = self.range_input(expr, g)?;
                let end = input.window_end(g.start);
                let start = end.saturating_sub(input.range);
                let (read_start, read_end) = input.read_bounds(start, end);
                let extended = input.extended;
                let windows = input.map_series(self, 1, |t, v| {
                    let lo = t.partition_point(|&x| x <= read_start);
                    let hi = t.partition_point(|&x| x <= read_end);
                    match extended {
                        None => (lo..hi).map(|i| Point { t: t[i], v: v[i] }).collect::<Vec<_>>(),
                        Some(e) => extend_floats(&t[lo..hi], &v[lo..hi], start, end, e == Extended::Smoothed),
                    }
                })?;
                let mut out = Vec::with_capacity(windows.len());
                let mut n = 0;
                for (i, points) in windows.into_iter().enumerate() {
                    if !points.is_empty() {
                        n += points.len();
                        out.push(StepSeries { labels: input.labels(i).clone(), drop_name: input.drop_name(i), points });
                    }
                }
                self.count_queryable(n);
                Ok(Val::Matrix(out))
            }
            Expr::Extension(_) => Err(QueryError::Unsupported("extension expressions are not supported".into())),
        }
    }

    /// Runs `f` with `enclosing` as what encloses the nodes it evaluates.
    fn within<R>(&mut self, enclosing: Enclosing, f: impl FnOnce(&mut Self) -> R) -> R {
        let outer = std::mem::replace(&mut self.enclosing, enclosing);
        let r = f(self);
        self.enclosing = outer;
        r
    }

    /// The select hints of a selector evaluated over `g` with `range` (0 for an instant selector).
    /// The step is the query's or the enclosing subquery's, 0 in an instant query outside
    /// subqueries, as in Prometheus.
    pub(crate) fn hints(&self, g: Grid, range: i64) -> SelectHints {
        SelectHints {
            step: if self.range_query || self.in_subquery { g.step } else { 0 },
            range,
            func: self.enclosing.func.clone(),
            grouping: self.enclosing.grouping.clone(),
        }
    }

    /// Evaluates an instant vector selector. With `sample_times`, each point's value is the
    /// time of the sample it came from (in seconds), for `timestamp()`.
    pub fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
        g: Grid,
        sample_times: bool,
    ) -> Result<Vec<StepSeries>, QueryError> {
        let offset = offset_ms(&vs.offset);
        let at = self.resolve_at(&vs.at);
        let (first, last) = match at {
            Some(t) => (t, t),
            None => (g.start, g.end),
        };
        let lookback = self.limits.lookback;
        // A smoothed selector interpolates between the samples around each step, and reads up
        // to the lookback delta after it.
        let smoothed = self.extended(vs) == Some(Extended::Smoothed);
        // Left-open lookback window: a sample exactly `lookback` old is out.
        let mint = first.saturating_sub(offset).saturating_sub(lookback) + 1;
        let maxt = last.saturating_sub(offset).saturating_add(if smoothed { lookback } else { 0 });
        let sel = self.select(vs, mint, maxt, self.hints(g, 0))?;
        // Interpolation passes over staleness markers, as over gaps.
        let points = sel.map_decoded(g.len(), smoothed, self.limits.deadline, |t, v| {
            if smoothed {
                smoothed_points(t, v, g, offset, at, lookback, sample_times)
            } else {
                instant_points(t, v, g, offset, at, lookback, sample_times)
            }
        });
        let mut out = Vec::with_capacity(sel.len());
        let mut n = 0;
        let mut decoded = 0;
        for (labels, points) in sel.into_labels().zip(points) {
            let (points, d) = points?;
            decoded += d;
            if !points.is_empty() {
                n += points.len();
                out.push(StepSeries { labels, drop_name: false, points });
            }
        }
        self.hold(decoded)?;
        self.count_queryable(n);
        Ok(out)
    }

    /// The series of a range selector (stale markers dropped) or the points of a subquery.
    pub fn range_input(&mut self, expr: &Expr, g: Grid) -> Result<RangeInput, QueryError> {
        match expr {
            Expr::Paren(p) => self.range_input(&p.expr, g),
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let range = duration_ms(ms.range);
                let offset = offset_ms(&vs.offset);
                let at = self.resolve_at(&vs.at);
                let (first, last) = match at {
                    Some(t) => (t, t),
                    None => (g.start, g.end),
                };
                let extended = self.extended(vs);
                let lookback = self.limits.lookback;
                let first_start = first.saturating_sub(offset).saturating_sub(range);
                let (before, maxt) = read_bounds(extended, lookback, first_start, last.saturating_sub(offset));
                let sel = self.select(vs, before + 1, maxt, self.hints(g, range))?;
                Ok(RangeInput { source: RangeSource::Selected(sel), range, offset, at, extended, lookback })
            }
            Expr::Subquery(sq) => {
                let range = duration_ms(sq.range);
                let offset = offset_ms(&sq.offset);
                let at = self.resolve_at(&sq.at);
                let step = sq.step.map_or(DEFAULT_SUBQUERY_STEP, duration_ms);
                if step <= 0 {
                    return Err(QueryError::BadData("zero or negative subquery step".into()));
                }
                let (first, last) = match at {
                    Some(t) => (t, t),
                    None => (g.start, g.end),
                };
                // Subquery steps sit at absolute multiples of the step, the first one after the
                // start of the earliest window.
                let base = first.saturating_sub(offset).saturating_sub(range);
                let inner = Grid {
                    start: base.div_euclid(step).saturating_add(1).saturating_mul(step),
                    end: last.saturating_sub(offset),
                    step,
                };
                let in_subquery = std::mem::replace(&mut self.in_subquery, true);
                let points = self.within(self.enclosing.below(), |ev| ev.eval(&sq.expr, inner));
                self.in_subquery = in_subquery;
                let points = match points? {
                    Val::Vector(series) => series
                        .into_iter()
                        .map(|s| {
                            let (t, v) = s.points.iter().filter(|p| !is_stale(p.v)).map(|p| (p.t, p.v)).unzip();
                            RangeSeries { labels: s.labels, drop_name: s.drop_name, t, v }
                        })
                        .collect(),
                    Val::Scalar(v) => {
                        let (t, v) = v.iter().enumerate().map(|(i, &v)| (inner.ts(i), v)).unzip();
                        vec![RangeSeries { labels: Labels::empty(), drop_name: false, t, v }]
                    }
                    other => {
                        return Err(QueryError::Execution(format!(
                            "subquery is only allowed on instant vector, got {}",
                            other.type_name()
                        )))
                    }
                };
                Ok(RangeInput {
                    source: RangeSource::Points(points),
                    range,
                    offset,
                    at,
                    extended: None,
                    lookback: self.limits.lookback,
                })
            }
            _ => Err(QueryError::Execution("expected a range vector".into())),
        }
    }

    /// The query's start, end and step (0 for an instant query), in milliseconds.
    pub fn query_bounds(&self) -> (i64, i64, i64) {
        let g = self.query_grid;
        (g.start, g.end, if self.range_query { g.step } else { 0 })
    }

    pub fn resolve_at(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_grid.start),
            Some(AtModifier::End) => Some(self.query_grid.end),
            Some(AtModifier::At(t)) => Some(system_time_ms(*t)),
        }
    }

    /// Reads the series `vs` selects with samples in `[mint, maxt]`, still encoded; during an
    /// evaluation in parts, the next part of them.
    fn select(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        hints: SelectHints,
    ) -> Result<Selected, QueryError> {
        if self.shards.as_ref().is_some_and(|s| s.pending.is_none()) {
            let all = self.select_all(vs, mint, maxt, &hints)?;
            if let Some(s) = &mut self.shards {
                s.pending = Some((all, 0));
            }
        }
        if let Some(Shards { size, pending: Some((all, next)) }) = &mut self.shards {
            let part = all.take_part(*next, *size);
            *next += part.len();
            return Ok(part);
        }
        self.select_all(vs, mint, maxt, &hints)
    }

    /// Reads all the series `vs` selects with samples in `[mint, maxt]`, still encoded.
    fn select_all(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Selected, QueryError> {
        let groups = matcher_groups(vs)?;
        self.select_matching(&groups, mint, maxt, hints)
    }

    /// Reads the series that match any of the matcher sets `groups` with samples in
    /// `[mint, maxt]`, still encoded, grouped into output series (replicas merged when the
    /// query deduplicates); the storage's warnings become the query's.
    pub fn select_matching(
        &mut self,
        groups: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Selected, QueryError> {
        self.check_deadline()?;
        let alternatives = groups.len();
        let mut series: Vec<SeriesChunks> = Vec::new();
        let aggregates = aggregates(hints.func.as_deref());
        let max_resolution_window = max_resolution(self.opts.max_resolution_window, hints);
        // A read that allows downsampled data reads counters as Thanos's querier does, raw ones
        // too; a raw read keeps Prometheus's semantics (`resets` sees resets).
        let thanos_counters = max_resolution_window > 0 && aggregates == [Aggr::Counter];
        for matchers in groups {
            let req = SelectRequest {
                hints: hints.clone(),
                max_resolution_window,
                aggregates: aggregates.clone(),
                scope: self.opts.scope.clone(),
                ..SelectRequest::new(self.opts.enforce(matchers.clone()), mint, maxt)
            };
            let mut set = self.storage.select(&req).map_err(storage_error)?;
            for s in set.by_ref() {
                series.push(s.map_err(storage_error)?);
            }
            for w in set.warnings() {
                if !self.warnings.contains(&w) {
                    self.warnings.push(w);
                }
            }
        }
        if alternatives > 1 {
            // Alternatives (`{a="1" or b="2"}`) may select the same series twice.
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            series.dedup_by(|a, b| a.labels == b.labels);
        }
        for s in &mut series {
            s.chunks.retain(|c| c.max_time >= mint && c.min_time <= maxt);
            let downsampled = s.chunks.iter().any(|c| c.encoding == Encoding::Aggr);
            // (Histogram chunks are left for the check below to refuse.)
            if downsampled || (thanos_counters && s.chunks.iter().all(|c| c.encoding == Encoding::Xor)) {
                read_downsampled(s, &aggregates)?;
            }
            if let Some(c) = s.chunks.iter().find(|c| c.encoding != Encoding::Xor) {
                return Err(match c.encoding {
                    Encoding::Histogram | Encoding::FloatHistogram => QueryError::Unsupported(format!(
                        "native histograms are not supported: series {} has histogram samples",
                        s.labels
                    )),
                    other => QueryError::Storage(format!("series {}: unexpected chunk encoding {other}", s.labels)),
                });
            }
        }
        series.retain(|s| !s.chunks.is_empty());
        let merge = Merge::new(self.opts.dedup_func, hints.func.as_deref());
        Ok(Selected::new(series, &self.opts.replica_labels, mint, maxt, merge))
    }
}

/// The coarsest resolution a selection may read: the query's, at most half the range for the
/// functions that need two samples in it (Thanos's `maxResolutionFromSelectHints`).
fn max_resolution(query_max: i64, hints: &SelectHints) -> i64 {
    const NEED_TWO_SAMPLES: [&str; 9] = [
        "rate",
        "irate",
        "increase",
        "delta",
        "idelta",
        "deriv",
        "predict_linear",
        "holt_winters",
        "double_exponential_smoothing",
    ];
    match hints.func.as_deref() {
        Some(f) if hints.range > 0 && NEED_TWO_SAMPLES.contains(&f) => query_max.min(hints.range / 2),
        _ => query_max,
    }
}

/// Replaces the chunks of a series holding downsampled chunks with XOR chunks of the samples
/// Thanos's querier reads from them for `aggregates` (`chunkSeries.Iterator`: one aggregate,
/// the counter with resets undone across every chunk, or sum / count), so that the rest of the
/// engine reads plain float samples. Raw chunks of the series are read along (for the counter,
/// through the reset correction too, as Thanos does; a series of raw chunks only is read so as
/// well when the read allows downsampled data).
fn read_downsampled(s: &mut SeriesChunks, aggregates: &[Aggr]) -> Result<(), QueryError> {
    let view = match aggregates {
        [one] => match one.aggr_type() {
            Some(t) => AggrView::One(t),
            None => AggrView::Average,
        },
        _ => AggrView::Average,
    };
    let mut samples: Vec<(i64, f64)> = Vec::new();
    downsample::for_each_sample(s, view, |t, v| {
        // Chunks the merge left in time order may still repeat a boundary sample.
        if samples.last().is_none_or(|&(last, _)| t > last) {
            samples.push((t, v));
        }
    })
    .map_err(|e| QueryError::Storage(e.to_string()))?;
    s.chunks = samples
        .chunks(MERGED_CHUNK_SAMPLES)
        .map(|part| {
            let mut app = XorAppender::new();
            for &(t, v) in part {
                app.append(t, v);
            }
            ChunkData {
                min_time: part[0].0,
                max_time: part[part.len() - 1].0,
                encoding: Encoding::Xor,
                data: app.into_bytes().into(),
            }
        })
        .collect();
    Ok(())
}

/// The aggregates of downsampled data a selection feeding `func` needs, as Thanos's querier
/// asks for them (`aggrsFromFunc`).
fn aggregates(func: Option<&str>) -> Vec<Aggr> {
    let f = func.unwrap_or("");
    let has = |name: &str| f == name || f.strip_prefix(name).is_some_and(|rest| rest.starts_with('_'));
    if has("min") {
        vec![Aggr::Min]
    } else if has("max") {
        vec![Aggr::Max]
    } else if has("count") {
        vec![Aggr::Count]
    } else if f.starts_with("sum_") {
        // `sum` itself wants the samples: count and sum, below.
        vec![Aggr::Sum]
    } else if matches!(f, "increase" | "rate" | "irate" | "resets" | "xincrease" | "xrate") {
        vec![Aggr::Counter]
    } else {
        vec![Aggr::Count, Aggr::Sum]
    }
}

/// The matcher sets a selector stands for: one, or one per `or` alternative.
fn matcher_groups(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let convert = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, QueryError> {
        let mut out = Vec::with_capacity(ms.len() + 1);
        if let Some(name) = &vs.name {
            out.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name.as_str()).map_err(bad_matcher)?);
        }
        for m in ms {
            let op = match m.op {
                ParserOp::Equal => MatchOp::Equal,
                ParserOp::NotEqual => MatchOp::NotEqual,
                ParserOp::Re(_) => MatchOp::Regex,
                ParserOp::NotRe(_) => MatchOp::NotRegex,
            };
            out.push(Matcher::new(op, m.name.as_str(), m.value.as_str()).map_err(bad_matcher)?);
        }
        Ok(out)
    };
    if vs.matchers.or_matchers.is_empty() {
        Ok(vec![convert(&vs.matchers.matchers)?])
    } else {
        vs.matchers.or_matchers.iter().map(|g| convert(g)).collect()
    }
}

fn storage_error(e: StorageError) -> QueryError {
    QueryError::Storage(e.to_string())
}

fn bad_matcher(e: strata_tsdb::Error) -> QueryError {
    QueryError::BadData(e.to_string())
}

/// The samples in a series' chunks, from the chunk headers.
fn chunk_samples(s: &SeriesChunks) -> usize {
    s.chunks.iter().filter_map(|c| XorIter::new(&c.data).ok()).map(|it| it.num_samples() as usize).sum()
}

/// The samples in `[mint, maxt]` of the series that `replicas` are (merged by `merge` when
/// there are several), optionally without staleness markers.
fn decode(
    replicas: &[SeriesChunks],
    mint: i64,
    maxt: i64,
    merge: Merge,
    drop_stale: bool,
) -> Result<(Vec<i64>, Vec<f64>), QueryError> {
    let cap = replicas.first().map_or(0, chunk_samples);
    let mut t = Vec::with_capacity(cap);
    let mut v = Vec::with_capacity(cap);
    dedup::for_each_sample(replicas, mint, maxt, merge, |ts, val| {
        // Chunks do not overlap, but a sample repeated at a chunk boundary must not count twice.
        if t.last().is_none_or(|&last| ts > last) && !(drop_stale && is_stale(val)) {
            t.push(ts);
            v.push(val);
        }
    })
    .map_err(|e| QueryError::Storage(e.to_string()))?;
    Ok((t, v))
}

/// The value of an instant selector over a series at every step: the newest sample no newer
/// than the step (minus offset) and newer than the lookback window, unless that sample is a
/// staleness marker.
fn instant_points(
    t: &[i64],
    v: &[f64],
    g: Grid,
    offset: i64,
    at: Option<i64>,
    lookback: i64,
    sample_times: bool,
) -> Vec<Point> {
    let value_at = |reference: i64, cursor: &mut usize| -> Option<f64> {
        while *cursor < t.len() && t[*cursor] <= reference {
            *cursor += 1;
        }
        let i = cursor.checked_sub(1)?;
        if t[i] <= reference.saturating_sub(lookback) || is_stale(v[i]) {
            return None;
        }
        Some(if sample_times { t[i] as f64 / 1000.0 } else { v[i] })
    };
    let n = g.len();
    let mut cursor = 0;
    match at {
        Some(t) => match value_at(t.saturating_sub(offset), &mut cursor) {
            Some(v) => (0..n).map(|i| Point { t: g.ts(i), v }).collect(),
            None => Vec::new(),
        },
        None => {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let ts = g.ts(i);
                if let Some(v) = value_at(ts.saturating_sub(offset), &mut cursor) {
                    out.push(Point { t: ts, v });
                }
            }
            out
        }
    }
}

/// Milliseconds of a duration, saturating at the i64 range.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(*d),
        Some(Offset::Neg(d)) => -duration_ms(*d),
    }
}

fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(d),
        Err(e) => -duration_ms(e.duration()),
    }
}

/// Splits `items` into contiguous parts of about equal total `weight`, one per core but no
/// more than leave each at least `min_per_thread` of weight, and calls `f` on every part, the
/// parts in parallel on rayon's pool (whose threads outlive the call). Results are in part order.
pub(crate) fn par_parts<T: Sync, R: Send>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    min_per_thread: usize,
    f: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let total: usize = items.iter().map(&weight).sum();
    let threads = rayon::current_num_threads().min(total / min_per_thread.max(1)).min(items.len());
    if threads <= 1 {
        return vec![f(items)];
    }
    let share = total.div_ceil(threads);
    let mut parts = Vec::with_capacity(threads);
    let (mut begin, mut sum) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        sum += weight(item);
        if parts.len() + 1 < threads && sum >= share * (parts.len() + 1) {
            parts.push(&items[begin..=i]);
            begin = i + 1;
        }
    }
    if begin < items.len() {
        parts.push(&items[begin..]);
    }
    // This thread takes the first part while the pool's threads wake up for the others.
    let mut out: Vec<Option<R>> = parts.iter().map(|_| None).collect();
    let f = &f;
    rayon::in_place_scope(|scope| {
        let mut slots = out.iter_mut().zip(&parts);
        let first = slots.next();
        for (slot, &part) in slots {
            scope.spawn(move |_| *slot = Some(f(part)));
        }
        if let Some((slot, &part)) = first {
            *slot = Some(f(part));
        }
    });
    out.into_iter().flatten().collect()
}

/// Maps `f` over `items`, spread over the cores by [`par_parts`]; results keep the input order.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    min_per_thread: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let parts = par_parts(items, weight, min_per_thread, |part| part.iter().map(&f).collect::<Vec<R>>());
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    parts.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::{par_map, par_parts};

    #[test]
    fn parts_cover_the_items_in_order() {
        let items: Vec<usize> = (0..1000).collect();
        // Uneven weights: the heavy items at the end get parts of their own share.
        let weight = |&i: &usize| if i >= 990 { 10_000 } else { 1 };
        let parts = par_parts(&items, weight, 100, |part| part.to_vec());
        assert!(!parts.is_empty() && parts.len() <= rayon::current_num_threads().max(1));
        assert!(parts.iter().all(|p| !p.is_empty()));
        assert_eq!(parts.concat(), items);
        // Too little work for a second thread: one part, on the calling thread.
        assert_eq!(par_parts(&items, |_| 1, 1_000_000, |part| part.len()), vec![1000]);
        assert_eq!(par_parts(&items[..0], |_| 1, 1, |part| part.len()), vec![0]);
        assert_eq!(par_map(&items, |_| 1, 1, |&i| i * 2), items.iter().map(|i| i * 2).collect::<Vec<_>>());
    }
}
