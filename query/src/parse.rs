//! PromQL parsing with Prometheus's error messages and positions.
//!
//! An error locator of ours reads every query first, the way Prometheus 3.x does ([`lex`]
//! mirrors `promql/parser/lex.go`, `check` its grammar and parser checks), and reports what
//! Prometheus reports: `1:5: parse error: unclosed left parenthesis`. promql-parser then builds
//! the syntax tree; its errors carry no position and are often just "invalid promql query",
//! and it accepts some queries Prometheus refuses. Prometheus's parser collects every error
//! but reports only the first (`ParseErrors.Error()`); the locator stops at that one. It builds
//! no tree.
//!
//! promql-parser does not parse duration expressions (`foo[5m + step()]`), the `anchored` and
//! `smoothed` modifiers, or an `info()` label selector whose matchers all match the empty
//! string. The locator keeps what the tree cannot hold (`check::Outline`); when the query's
//! step and range are known, duration expressions are evaluated and written into the text as
//! literals, the modifiers are cut from it (the engine reads them from [`Parsed::selectors`]),
//! and such a label selector is replaced by one promql-parser accepts (the engine reads its
//! matchers from there too). promql-parser then reads that text.
//!
//! Series selectors (`match[]`) follow Prometheus's selector grammar, which is not the
//! expression grammar, and are read by the locator alone.

mod check;
mod durations;
mod functions;
mod golang;
mod goregex;
pub(crate) mod lex;
#[cfg(test)]
mod tests;

use std::fmt;

use promql_parser::parser::Expr;

pub use check::LabelMatcher;

/// Deepest nesting accepted, counted in nested brackets plus operators and modifiers in a
/// chain. promql-parser and the evaluator recurse once per level; on a 2 MiB thread stack (a
/// Tokio blocking thread's) an optimized build gets through 1000 levels of `sum(…)` but not
/// 1500. Prometheus has no such limit.
pub const MAX_DEPTH: usize = 500;

/// A parse error as Prometheus reports it: `L:C: parse error: MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the query.
    pub position: usize,
    pub message: String,
    place: Place,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Place {
    LineColumn(usize, usize),
    /// Prometheus gives no position in an empty query.
    Unknown,
    Invalid,
    /// A duration expression that fails when the query is prepared: Prometheus names its byte
    /// range, and the error is not a parse error.
    Bytes(usize, usize),
}

impl ParseError {
    fn new(query: &str, located: Located) -> ParseError {
        let pos = located.pos;
        let place = if query.is_empty() {
            Place::Unknown
        } else if pos > query.len() {
            Place::Invalid
        } else {
            let (line, column) = line_column(query, pos);
            Place::LineColumn(line, column)
        };
        ParseError { position: pos, message: located.message, place }
    }

    fn bytes(start: usize, end: usize, message: &str) -> ParseError {
        ParseError { position: start, message: message.to_string(), place: Place::Bytes(start, end) }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.place {
            Place::LineColumn(line, column) => write!(f, "{line}:{column}")?,
            Place::Unknown => f.write_str("unknown position")?,
            Place::Invalid => f.write_str("invalid position")?,
            Place::Bytes(start, end) => return write!(f, "{start}:{end}: {}", self.message),
        }
        write!(f, ": parse error: {}", self.message)
    }
}

impl std::error::Error for ParseError {}

/// The 1-based line and column of byte offset `pos` (at most `query.len()`), both counting
/// bytes, as Prometheus places errors and annotations.
pub(crate) fn line_column(query: &str, pos: usize) -> (usize, usize) {
    let before = &query.as_bytes()[..pos];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = before.iter().rposition(|&b| b == b'\n').map_or(pos + 1, |nl| pos - nl);
    (line, column)
}

/// An error at a byte offset, before it is placed in lines and columns.
#[derive(Clone, Debug, PartialEq)]
struct Located {
    pos: usize,
    message: String,
}

fn too_deep(pos: usize) -> Located {
    Located { pos, message: format!("expression nests too deeply: more than {MAX_DEPTH} levels") }
}

/// Parses a PromQL expression as an instant query evaluates it (`step()` and `range()` are 0).
pub fn parse(query: &str) -> Result<Expr, ParseError> {
    parse_query(query, 0, 0).map(|p| p.expr)
}

/// A query ready for evaluation: promql-parser's tree and what the tree cannot hold.
#[derive(Debug)]
pub struct Parsed {
    pub expr: Expr,
    /// Per vector selector (also those of range selectors), in source order.
    pub selectors: Vec<SelectorExtras>,
    /// The text promql-parser read.
    text: String,
    /// Replaced byte ranges, in order: start and end in the query, then in `text`.
    edits: Vec<[usize; 4]>,
}

/// What a vector selector has beyond promql-parser's tree.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelectorExtras {
    pub anchored: bool,
    pub smoothed: bool,
    /// The matchers as written when the selector is an `info()` call's label selector.
    pub info_labels: Option<Vec<LabelMatcher>>,
}

impl Parsed {
    /// The text the tree was read from.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The byte offset in the query of byte offset `pos` of [`Parsed::text`]; inside a replaced
    /// range, that range's start.
    pub(crate) fn query_position(&self, pos: usize) -> usize {
        match self.edits.iter().rev().find(|e| e[2] <= pos) {
            None => pos,
            Some(&[start, _, _, new_end]) if pos < new_end => start,
            Some(&[_, end, _, new_end]) => end + (pos - new_end),
        }
    }
}

/// Parses a PromQL expression for a query with `step` and a time range of `range` (both
/// milliseconds; 0 for an instant query), which duration expressions may use.
pub fn parse_query(query: &str, step: i64, range: i64) -> Result<Parsed, ParseError> {
    let outline = outline(query)?;
    // What promql-parser cannot read, replaced by what it can; spaces keep the replacements
    // apart from the tokens around them.
    let mut replaced: Vec<(usize, usize, String)> = Vec::new();
    for d in &outline.durations {
        let ms = d.expr.millis(d.usage, step, range).map_err(|m| ParseError::bytes(d.start, d.end, m))?;
        // promql-parser refuses a zero duration but takes a zero number (no offset).
        let literal = if ms == 0 { "0".to_string() } else { format!("{ms}ms") };
        replaced.push((d.start, d.end, format!(" {literal} ")));
    }
    for &(start, end) in &outline.keywords {
        replaced.push((start, end, " ".into()));
    }
    for s in outline.selectors.iter().filter(|s| s.info_labels && s.matches_empty()) {
        replaced.push((s.start, s.end, r#" {__name__=~".+"} "#.into()));
    }
    replaced.sort_by_key(|r| r.0);
    let mut text = String::with_capacity(query.len());
    let mut edits = Vec::with_capacity(replaced.len());
    let mut copied = 0;
    for (start, end, with) in replaced {
        text.push_str(&query[copied..start]);
        edits.push([start, end, text.len(), text.len() + with.len()]);
        text.push_str(&with);
        copied = end;
    }
    text.push_str(&query[copied..]);
    let expr = match syntax_tree(&text) {
        Ok(expr) => expr,
        // promql-parser refuses something the locator accepts: its own words, at the end.
        Err(message) => return Err(ParseError::new(query, Located { pos: query.len(), message })),
    };
    let selectors = outline
        .selectors
        .into_iter()
        .map(|s| SelectorExtras {
            anchored: s.anchored,
            smoothed: s.smoothed,
            info_labels: s.info_labels.then_some(s.matchers),
        })
        .collect();
    Ok(Parsed { expr, selectors, text, edits })
}

/// The locator's reading of the query, or the first error Prometheus reports.
fn outline(query: &str) -> Result<check::Outline, ParseError> {
    let located = match measure(query) {
        Measure::TooDeep(pos) => too_deep(pos),
        Measure::Unlexable(lex_error) => locate(query, MAX_DEPTH).err().unwrap_or(lex_error),
        // The locator reads first: promql-parser accepts a few queries Prometheus refuses
        // (durations beyond Go's 292 years, `1e400`, `or` between matchers, …) and panics on
        // some of those (`foo[1e30]`).
        Measure::Shallow(depth) => match locate(query, depth) {
            Ok(outline) => return Ok(outline),
            Err(located) => located,
        },
    };
    Err(ParseError::new(query, located))
}

/// promql-parser's syntax tree. A panic in it becomes a parse error, so that no query text
/// can take down the thread that parses it.
fn syntax_tree(query: &str) -> Result<Expr, String> {
    std::panic::catch_unwind(|| promql_parser::parser::parse(query))
        .unwrap_or_else(|_| Err("the PromQL parser failed on this query".to_string()))
}

/// Runs the locator on a query nested `depth` levels deep (as [`measure`] estimates it). It
/// recurses once per level, with frames too large for small thread stacks in unoptimized
/// builds, so deep queries get a thread of their own; if no thread can be had it runs here,
/// where [`MAX_DEPTH`] bounds it.
fn locate(query: &str, depth: usize) -> Result<check::Outline, Located> {
    const INLINE_DEPTH: usize = 32;
    const STACK: usize = 64 << 20;
    let run = || check::check_expression(query);
    if depth <= INLINE_DEPTH {
        return run();
    }
    std::thread::scope(|scope| {
        match std::thread::Builder::new().name("promql-locate".into()).stack_size(STACK).spawn_scoped(scope, run) {
            Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => run(),
        }
    })
}

/// Parses a series selector as Prometheus reads `match[]`: a metric name and/or matchers.
pub fn parse_selector(query: &str) -> Result<Vec<LabelMatcher>, ParseError> {
    check::check_selector(query).map_err(|e| ParseError::new(query, e))
}

enum Measure {
    /// At most this deep.
    Shallow(usize),
    TooDeep(usize),
    /// The lexer stopped at this error, and what follows it might nest too deeply to hand
    /// the query to promql-parser; the locator stops at the error.
    Unlexable(Located),
}

/// Estimates the query's nesting from its tokens, from above: each bracket level adds one,
/// and within a level (or a comma-separated argument) every operator and modifier adds one.
fn measure(query: &str) -> Measure {
    use lex::Kind::*;
    #[derive(Default)]
    struct Level {
        ops: usize,
        widest_arg: usize,
        deepest_child: usize,
    }
    impl Level {
        fn depth(&self) -> usize {
            self.ops.max(self.widest_arg) + self.deepest_child + 1
        }
    }
    let mut levels = vec![Level::default()];
    // The sum of the open levels' depths, kept up to date as they change.
    let mut total = 1;
    let mut deepest = total;
    let mut lexer = lex::Lexer::new(query);
    loop {
        let tok = match lexer.next_token() {
            Ok(tok) => tok,
            Err(e) => {
                let rest = query[e.pos..].bytes().filter(|b| !b.is_ascii_whitespace()).count();
                return if total + rest > MAX_DEPTH {
                    Measure::Unlexable(Located { pos: e.pos, message: e.message })
                } else {
                    Measure::Shallow(deepest.max(total + rest))
                };
            }
        };
        let nested = levels.len() > 1;
        let Some(top) = levels.last_mut() else { return Measure::Shallow(deepest) };
        let before = top.depth();
        match tok.kind {
            Eof => return Measure::Shallow(deepest),
            LeftParen | LeftBrace | LeftBracket => {
                if tok.kind == LeftBracket {
                    top.ops += 1;
                }
                total = total - before + top.depth() + 1;
                levels.push(Level::default());
            }
            RightParen | RightBrace | RightBracket if nested => {
                let closed = levels.pop().map_or(0, |l| l.depth());
                total -= closed;
                if let Some(top) = levels.last_mut() {
                    let before = top.depth();
                    top.deepest_child = top.deepest_child.max(closed);
                    total = total - before + top.depth();
                }
            }
            Comma => {
                top.widest_arg = top.widest_arg.max(top.ops);
                top.ops = 0;
                total = total - before + top.depth();
            }
            Add | Sub | Mul | Div | Mod | Pow | Eqlc | Neq | Lss | Lte | Gtr | Gte | Land | Lor | Lunless | Atan2
            | Offset | At | Anchored | Smoothed => {
                top.ops += 1;
                total = total - before + top.depth();
            }
            _ => {}
        }
        if total > MAX_DEPTH {
            return Measure::TooDeep(tok.pos);
        }
        deepest = deepest.max(total);
    }
}
