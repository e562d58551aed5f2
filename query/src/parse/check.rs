//! The error locator: a recursive-descent reading of Prometheus 3.x's grammar
//! (`promql/parser/generated_parser.y`) with the checks of its parser (`parse.go`), which finds
//! the error Prometheus reports for a query: the first one its parser records.
//!
//! No syntax tree is built. A parsed sub-expression is summed up by what later checks need
//! (its type, position, which modifiers it has) and by the first error Prometheus's type check
//! (`checkAST`) would find in it, which only counts when the whole query parses. Of a query
//! that parses, the locator keeps what promql-parser's tree cannot hold ([`Outline`]).
//! Experimental syntax is read as Prometheus reads it with its experimental features on: the
//! engine evaluates duration expressions and the `anchored` and `smoothed` modifiers.
//!
//! Syntax errors name the context of the innermost grammar rule with an `error` production
//! that is open where the parser stops, as yacc's error recovery does: "in aggregation",
//! "in grouping opts", "in label matching", "in offset", "in @", "in subquery …".

use strata_tsdb::matchers::{MatchOp, Matcher};

use super::durations::{DurationExpr, DurationOp, DurationUse};
use super::functions::{self, Function};
use super::golang::{format_percent_f, parse_duration, parse_number, quote, quote_bytes, unquote};
use super::lex::{is_space, Aggregator, Kind, Lexer, Token};
use super::{goregex, too_deep, Located, MAX_DEPTH};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl Type {
    /// The name in type errors (`DocumentedType`).
    fn documented(self) -> &'static str {
        match self {
            Type::Scalar => "scalar",
            Type::Vector => "instant vector",
            Type::Matrix => "range vector",
            Type::String => "string",
        }
    }

    /// The plain name, which the subquery error uses.
    fn name(self) -> &'static str {
        match self {
            Type::Scalar => "scalar",
            Type::Vector => "vector",
            Type::Matrix => "matrix",
            Type::String => "string",
        }
    }
}

/// One matcher of a series selector, its value unquoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMatcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

impl LabelMatcher {
    pub(crate) fn matches_empty(&self) -> bool {
        match self.op {
            MatchOp::Equal => self.value.is_empty(),
            MatchOp::NotEqual => !self.value.is_empty(),
            // A pattern our regex engine refuses counts as not matching, so that no error is
            // made up from it.
            MatchOp::Regex | MatchOp::NotRegex => {
                Matcher::new(self.op, &self.name, &self.value).is_ok_and(|m| m.matches_empty())
            }
        }
    }
}

/// Whether an offset or `@` has been set on a selector or subquery.
#[derive(Clone, Copy, Default)]
struct Modifiers {
    offset: bool,
    at: bool,
}

#[derive(Clone, Copy)]
enum NodeKind {
    Number(f64),
    /// A vector selector; `index` is its place in [`Outline::selectors`].
    Selector {
        named: bool,
        mods: Modifiers,
        index: usize,
    },
    /// A range selector, with the modifiers of its vector selector and that selector's index.
    Matrix(Modifiers, usize),
    Subquery(Modifiers),
    Other,
}

/// What a query holds beyond promql-parser's syntax tree, found while it is read: duration
/// expressions, the `anchored` and `smoothed` modifiers, and `info()`'s label selectors,
/// which promql-parser does not parse.
#[derive(Debug, Default)]
pub(crate) struct Outline {
    /// Duration expressions other than plain literals, in source order.
    pub durations: Vec<DurationSlot>,
    /// Every vector selector (also those of range selectors), in source order.
    pub selectors: Vec<SelectorOutline>,
    /// Byte ranges of the `anchored` and `smoothed` keywords.
    pub keywords: Vec<(usize, usize)>,
}

/// A duration expression and the bytes it takes in the query.
#[derive(Debug)]
pub(crate) struct DurationSlot {
    pub start: usize,
    pub end: usize,
    pub expr: DurationExpr,
    pub usage: DurationUse,
}

/// A vector selector as written.
#[derive(Debug)]
pub(crate) struct SelectorOutline {
    /// Bytes of its metric name and matchers, without modifiers.
    pub start: usize,
    pub end: usize,
    pub matchers: Vec<LabelMatcher>,
    pub anchored: bool,
    pub smoothed: bool,
    /// It is the label selector of an `info()` call.
    pub info_labels: bool,
}

impl SelectorOutline {
    /// Whether every matcher matches the empty string (which promql-parser refuses, even
    /// where `info()` allows it).
    pub fn matches_empty(&self) -> bool {
        self.matchers.iter().all(LabelMatcher::matches_empty)
    }
}

/// A parsed duration expression and where it stands.
struct Dur {
    start: usize,
    end: usize,
    expr: DurationExpr,
}

struct Node {
    start: usize,
    /// End of the last token.
    end: usize,
    typ: Type,
    kind: NodeKind,
    /// The first error of the type check in this sub-expression.
    check: Option<Located>,
}

enum Fail<'a> {
    /// A token the grammar does not allow here; the innermost enclosing rule with an error
    /// production words the message.
    Unexpected(Token<'a>),
    Error(Located),
}

type Parsed<'a, T> = Result<T, Fail<'a>>;

fn error<'a>(pos: usize, message: impl Into<String>) -> Fail<'a> {
    Fail::Error(Located { pos, message: message.into() })
}

/// Prometheus's "unexpected …" message.
fn unexpected(t: Token<'_>, context: &str, expected: &str) -> Located {
    let mut message = format!("unexpected {}", t.describe());
    if !context.is_empty() {
        message.push_str(" in ");
        message.push_str(context);
    }
    if !expected.is_empty() {
        message.push_str(", expected ");
        message.push_str(expected);
    }
    Located { pos: t.pos, message }
}

fn in_context<'a, T>(result: Parsed<'a, T>, context: &str, expected: &str) -> Parsed<'a, T> {
    result.map_err(|f| match f {
        Fail::Unexpected(t) => Fail::Error(unexpected(t, context, expected)),
        done => done,
    })
}

fn type_error(node: &Node, want: Type, context: &str) -> Option<Located> {
    (node.typ != want).then(|| Located {
        pos: node.start,
        message: format!("expected type {} in {context}, got {}", want.documented(), node.typ.documented()),
    })
}

/// Beyond ±2^63 ns a duration does not fit Go's `time.Duration` (NaN passes, as in Go).
fn duration_out_of_range(seconds: f64) -> bool {
    seconds.abs() > 9_223_372_036.854_776
}

#[derive(Clone, Copy, PartialEq)]
enum BinOp {
    Or,
    And,
    Unless,
    Eqlc,
    Neq,
    Lss,
    Lte,
    Gtr,
    Gte,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Atan2,
    Pow,
}

const PREC_POW: u8 = 6;

impl BinOp {
    fn of(kind: Kind) -> Option<BinOp> {
        Some(match kind {
            Kind::Lor => BinOp::Or,
            Kind::Land => BinOp::And,
            Kind::Lunless => BinOp::Unless,
            Kind::Eqlc => BinOp::Eqlc,
            Kind::Neq => BinOp::Neq,
            Kind::Lss => BinOp::Lss,
            Kind::Lte => BinOp::Lte,
            Kind::Gtr => BinOp::Gtr,
            Kind::Gte => BinOp::Gte,
            Kind::Add => BinOp::Add,
            Kind::Sub => BinOp::Sub,
            Kind::Mul => BinOp::Mul,
            Kind::Div => BinOp::Div,
            Kind::Mod => BinOp::Mod,
            Kind::Atan2 => BinOp::Atan2,
            Kind::Pow => BinOp::Pow,
            _ => return None,
        })
    }

    fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eqlc | BinOp::Neq | BinOp::Lss | BinOp::Lte | BinOp::Gtr | BinOp::Gte => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Atan2 => 5,
            BinOp::Pow => PREC_POW,
        }
    }

    fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    fn set_name(self) -> Option<&'static str> {
        match self {
            BinOp::And => Some("and"),
            BinOp::Or => Some("or"),
            BinOp::Unless => Some("unless"),
            _ => None,
        }
    }
}

/// Precedence of an operator inside a duration expression.
fn duration_precedence(kind: Kind) -> Option<u8> {
    match kind {
        Kind::Add | Kind::Sub => Some(1),
        Kind::Mul | Kind::Div | Kind::Mod => Some(2),
        Kind::Pow => Some(3),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

/// `bool`, `on(…)`/`ignoring(…)`, `group_left(…)`/`group_right(…)` and `fill(…)` of a binary
/// operator.
struct Matching {
    returns_bool: bool,
    card: Card,
    on: bool,
    labels: Vec<String>,
    include: Vec<String>,
    fill: bool,
}

/// Tokens that may name a metric (`metric_identifier` in the grammar).
fn is_metric_name(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Aggregator(_)
            | Kind::By
            | Kind::Identifier
            | Kind::Land
            | Kind::Lor
            | Kind::Lunless
            | Kind::MetricIdentifier
            | Kind::Offset
            | Kind::Without
            | Kind::Start
            | Kind::End
            | Kind::Step
            | Kind::Range
            | Kind::Anchored
            | Kind::Smoothed
            | Kind::Fill
            | Kind::FillLeft
            | Kind::FillRight
    )
}

/// `min_of(…, …)` and `max_of(…, …)` of a duration expression (`min`, `max` before 3.9). Inside
/// brackets the lexer reads them as keywords, elsewhere as identifiers.
fn is_min_max(t: Token<'_>) -> bool {
    matches!(t.kind, Kind::Aggregator(Aggregator::Min | Aggregator::Max))
        || t.kind == Kind::Identifier && matches!(t.text.to_ascii_lowercase().as_str(), "min_of" | "max_of")
}

/// Tokens that may be a grouping label (`maybe_label`): `without` may not.
fn is_grouping_label(kind: Kind) -> bool {
    kind != Kind::Without && is_metric_name(kind)
        || matches!(kind, Kind::Bool | Kind::GroupLeft | Kind::GroupRight | Kind::Ignoring | Kind::On | Kind::Atan2)
}

/// The first error Prometheus reports for the expression `input`, or what the query holds
/// beyond promql-parser's tree.
pub(crate) fn check_expression(input: &str) -> Result<Outline, Located> {
    let mut p = Parser::new(input);
    match p.expression() {
        Ok(None) => Ok(p.outline),
        Ok(Some(check)) => Err(check),
        Err(Fail::Unexpected(t)) => Err(unexpected(t, "", "")),
        Err(Fail::Error(e)) => Err(e),
    }
}

/// The matchers of the series selector `input` (a metric name and/or `{…}`, as Prometheus's
/// `ParseMetricSelector` reads `match[]`), or the error Prometheus reports. The metric name,
/// if given outside the braces, comes last, as in Prometheus.
pub(crate) fn check_selector(input: &str) -> Result<Vec<LabelMatcher>, Located> {
    Parser::new(input).selector().map_err(|f| match f {
        Fail::Unexpected(t) => unexpected(t, "", ""),
        Fail::Error(e) => e,
    })
}

struct Parser<'a> {
    input: &'a str,
    lexer: Lexer<'a>,
    peeked: Option<Token<'a>>,
    last_end: usize,
    depth: usize,
    outline: Outline,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser { input, lexer: Lexer::new(input), peeked: None, last_end: 0, depth: 0, outline: Outline::default() }
    }

    /// The next token, lexed only when first needed, as Prometheus's parser asks for its
    /// lookahead: a lexer error counts from then.
    fn peek(&mut self) -> Parsed<'a, Token<'a>> {
        if let Some(t) = self.peeked {
            return Ok(t);
        }
        let t = self.lexer.next_token().map_err(|e| error(e.pos, e.message))?;
        self.peeked = Some(t);
        Ok(t)
    }

    fn next(&mut self) -> Parsed<'a, Token<'a>> {
        let t = self.peek()?;
        self.peeked = None;
        self.last_end = t.end();
        Ok(t)
    }

    fn expect(&mut self, kind: Kind) -> Parsed<'a, Token<'a>> {
        let t = self.peek()?;
        if t.kind == kind {
            self.next()
        } else {
            Err(Fail::Unexpected(t))
        }
    }

    /// Bounds the recursion; the query was measured before, so this only guards against a
    /// nesting the measure missed.
    fn descend(&mut self) -> Parsed<'a, ()> {
        self.depth += 1;
        if self.depth > 2 * MAX_DEPTH {
            let at = self.peeked.map_or(self.last_end, |t| t.pos);
            return Err(Fail::Error(too_deep(at)));
        }
        Ok(())
    }

    fn ascend(&mut self) {
        self.depth -= 1;
    }

    fn expression(&mut self) -> Parsed<'a, Option<Located>> {
        if self.peek()?.kind == Kind::Eof {
            return Err(error(0, "no expression found in input"));
        }
        let node = self.expr(0)?;
        let t = self.peek()?;
        if t.kind != Kind::Eof {
            return Err(Fail::Unexpected(t));
        }
        Ok(node.check)
    }

    fn selector(&mut self) -> Parsed<'a, Vec<LabelMatcher>> {
        let t = self.peek()?;
        let name = if is_metric_name(t.kind) {
            self.next()?;
            Some(t)
        } else if t.kind == Kind::LeftBrace {
            None
        } else {
            return Err(Fail::Unexpected(t));
        };
        let mut matchers = Vec::new();
        if self.peek()?.kind == Kind::LeftBrace {
            self.next()?;
            matchers = self.label_matchers()?;
        }
        if let Some(name) = name {
            matchers.push(LabelMatcher { name: "__name__".into(), op: MatchOp::Equal, value: name.text.into() });
        }
        let t = self.peek()?;
        if t.kind != Kind::Eof {
            return Err(Fail::Unexpected(t));
        }
        Ok(matchers)
    }

    /// Binary operators of at least `min_prec`, by precedence climbing.
    fn expr(&mut self, min_prec: u8) -> Parsed<'a, Node> {
        self.descend()?;
        let mut lhs = self.unary()?;
        loop {
            let t = self.peek()?;
            let Some(op) = BinOp::of(t.kind) else { break };
            if op.precedence() < min_prec {
                break;
            }
            self.next()?;
            let next_prec = if op == BinOp::Pow { PREC_POW } else { op.precedence() + 1 };
            let matching = self.bin_modifiers()?;
            let rhs = self.expr(next_prec)?;
            lhs = self.binary(lhs, op, &matching, rhs);
        }
        self.ascend();
        Ok(lhs)
    }

    fn binary(&self, lhs: Node, op: BinOp, m: &Matching, rhs: Node) -> Node {
        let typ = if lhs.typ == Type::Scalar && rhs.typ == Type::Scalar { Type::Scalar } else { Type::Vector };
        let check = lhs.check.clone().or_else(|| rhs.check.clone()).or_else(|| self.binary_check(&lhs, op, m, &rhs));
        Node { start: lhs.start, end: rhs.end, typ, kind: NodeKind::Other, check }
    }

    /// Prometheus's checks of a binary expression, in its order.
    fn binary_check(&self, lhs: &Node, op: BinOp, m: &Matching, rhs: &Node) -> Option<Located> {
        let at = |pos: usize, message: String| Some(Located { pos, message });
        // Errors about the operator point at it: the first non-space after the left operand.
        let op_pos = lhs.end + self.input[lhs.end..].chars().take_while(|&c| is_space(c)).count();
        if m.returns_bool && !op.is_comparison() {
            return at(op_pos, "bool modifier can only be used on comparison operators".into());
        }
        if op.is_comparison() && !m.returns_bool && lhs.typ == Type::Scalar && rhs.typ == Type::Scalar {
            return at(op_pos, "comparisons between scalars must use BOOL modifier".into());
        }
        if m.on {
            if let Some(l) = m.labels.iter().find(|l| m.include.contains(l)) {
                return at(op_pos, format!("label {} must not occur in ON and GROUP clause at once", quote(l)));
            }
        }
        let operand = |t: Type| matches!(t, Type::Scalar | Type::Vector);
        const OPERANDS: &str = "binary expression must contain only scalar and instant vector types";
        if !operand(lhs.typ) {
            return at(lhs.start, OPERANDS.into());
        }
        if !operand(rhs.typ) {
            return at(rhs.start, OPERANDS.into());
        }
        if lhs.typ != Type::Vector || rhs.typ != Type::Vector {
            if !m.labels.is_empty() {
                return at(lhs.start, "vector matching only allowed between instant vectors".into());
            }
            if m.fill {
                return at(lhs.start, "filling in missing series only allowed between instant vectors".into());
            }
        } else if let Some(name) = op.set_name() {
            if m.card != Card::OneToOne {
                return at(lhs.start, format!("no grouping allowed for {} operation", quote(name)));
            }
            if m.fill {
                return at(lhs.start, "filling in missing series not allowed for set operators".into());
            }
        }
        if let Some(name) = op.set_name() {
            if lhs.typ == Type::Scalar || rhs.typ == Type::Scalar {
                return at(lhs.start, format!("set operator {} not allowed in binary scalar expression", quote(name)));
            }
        }
        None
    }

    fn bin_modifiers(&mut self) -> Parsed<'a, Matching> {
        let mut m = Matching {
            returns_bool: false,
            card: Card::OneToOne,
            on: false,
            labels: Vec::new(),
            include: Vec::new(),
            fill: false,
        };
        if self.peek()?.kind == Kind::Bool {
            self.next()?;
            m.returns_bool = true;
        }
        let t = self.peek()?;
        if matches!(t.kind, Kind::On | Kind::Ignoring) {
            self.next()?;
            m.on = t.kind == Kind::On;
            m.labels = self.grouping_labels()?;
            let t = self.peek()?;
            if matches!(t.kind, Kind::GroupLeft | Kind::GroupRight) {
                self.next()?;
                m.card = if t.kind == Kind::GroupLeft { Card::ManyToOne } else { Card::OneToMany };
                if self.peek()?.kind == Kind::LeftParen {
                    m.include = self.grouping_labels()?;
                }
            }
        }
        // `fill(v)`, or `fill_left(v)` and/or `fill_right(v)` in either order.
        let (mut left, mut right) = (false, false);
        loop {
            let t = self.peek()?;
            match t.kind {
                Kind::Fill if !left && !right => (left, right) = (true, true),
                Kind::FillLeft if !left => left = true,
                Kind::FillRight if !right => right = true,
                _ => break,
            }
            self.next()?;
            self.fill_value()?;
            m.fill = true;
            if t.kind == Kind::Fill {
                break;
            }
        }
        Ok(m)
    }

    /// `(v)`, `(+v)` or `(-v)` after `fill`.
    fn fill_value(&mut self) -> Parsed<'a, ()> {
        self.expect(Kind::LeftParen)?;
        if matches!(self.peek()?.kind, Kind::Add | Kind::Sub) {
            self.next()?;
        }
        let n = self.expect(Kind::Number)?;
        self.literal(n)?;
        self.expect(Kind::RightParen)?;
        Ok(())
    }

    /// `(label, …)` after `by`, `without`, `on`, `ignoring`, `group_left` or `group_right`.
    fn grouping_labels(&mut self) -> Parsed<'a, Vec<String>> {
        const CONTEXT: &str = "grouping opts";
        let t = self.peek()?;
        if t.kind != Kind::LeftParen {
            return Err(Fail::Error(unexpected(t, CONTEXT, "\"(\"")));
        }
        self.next()?;
        let mut labels = Vec::new();
        if self.peek()?.kind == Kind::RightParen {
            self.next()?;
            return Ok(labels);
        }
        loop {
            let t = self.peek()?;
            if is_grouping_label(t.kind) {
                labels.push(t.text.to_string());
            } else if t.kind == Kind::String {
                let bytes = unquote(t.text);
                let Some(name) = std::str::from_utf8(&bytes).ok().filter(|n| !n.is_empty()) else {
                    return Err(error(t.pos, format!("invalid label name for grouping: {}", quote_bytes(&bytes))));
                };
                labels.push(name.to_owned());
            } else {
                return Err(Fail::Error(unexpected(t, CONTEXT, "label")));
            }
            self.next()?;
            let t = self.peek()?;
            match t.kind {
                Kind::Comma => {
                    self.next()?;
                    if self.peek()?.kind == Kind::RightParen {
                        self.next()?;
                        return Ok(labels);
                    }
                }
                Kind::RightParen => {
                    self.next()?;
                    return Ok(labels);
                }
                _ => return Err(Fail::Error(unexpected(t, CONTEXT, "\",\" or \")\""))),
            }
        }
    }

    /// A leading `+`/`-` binds looser than `^` and the postfix modifiers; on a number literal
    /// it becomes part of the number.
    fn unary(&mut self) -> Parsed<'a, Node> {
        let t = self.peek()?;
        if !matches!(t.kind, Kind::Add | Kind::Sub) {
            return self.postfix();
        }
        self.next()?;
        let operand = self.expr(PREC_POW)?;
        Ok(match operand.kind {
            NodeKind::Number(v) => {
                let v = if t.kind == Kind::Sub { -v } else { v };
                Node { start: t.pos, kind: NodeKind::Number(v), ..operand }
            }
            _ => {
                let check = operand.check.clone().or_else(|| {
                    (!matches!(operand.typ, Type::Scalar | Type::Vector)).then(|| Located {
                        pos: t.pos,
                        message: format!(
                            "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                            quote(operand.typ.documented())
                        ),
                    })
                });
                Node { start: t.pos, end: operand.end, typ: operand.typ, kind: NodeKind::Other, check }
            }
        })
    }

    /// A primary expression with its ranges, subqueries and modifiers.
    fn postfix(&mut self) -> Parsed<'a, Node> {
        let mut node = self.primary()?;
        loop {
            let t = self.peek()?;
            match t.kind {
                Kind::LeftBracket => node = self.range(node)?,
                Kind::Offset => {
                    self.next()?;
                    self.offset(&mut node)?;
                }
                Kind::At => {
                    self.next()?;
                    self.at(&mut node)?;
                }
                Kind::Anchored | Kind::Smoothed => {
                    self.next()?;
                    self.extended_range(&node, t)?;
                }
                _ => return Ok(node),
            }
        }
    }

    fn primary(&mut self) -> Parsed<'a, Node> {
        let t = self.peek()?;
        match t.kind {
            Kind::Number | Kind::Duration => {
                self.next()?;
                let v = self.literal(t)?;
                Ok(self.leaf(t, Type::Scalar, NodeKind::Number(v)))
            }
            Kind::String => {
                self.next()?;
                Ok(self.leaf(t, Type::String, NodeKind::Other))
            }
            Kind::LeftParen => {
                self.next()?;
                let inner = self.expr(0)?;
                self.expect(Kind::RightParen)?;
                Ok(Node { start: t.pos, end: self.last_end, typ: inner.typ, kind: NodeKind::Other, check: inner.check })
            }
            Kind::LeftBrace => self.vector_selector(None),
            Kind::Identifier => {
                self.next()?;
                if self.peek()?.kind == Kind::LeftParen {
                    self.call(t)
                } else {
                    self.vector_selector(Some(t))
                }
            }
            Kind::Aggregator(op) => {
                self.next()?;
                if matches!(self.peek()?.kind, Kind::LeftParen | Kind::By | Kind::Without) {
                    in_context(self.aggregate(t, op), "aggregation", "")
                } else {
                    self.vector_selector(Some(t))
                }
            }
            // Keywords that may also be called, or be metric names.
            Kind::Start | Kind::End | Kind::Step | Kind::Range => {
                self.next()?;
                if self.peek()?.kind == Kind::LeftParen {
                    self.call(t)
                } else {
                    self.vector_selector(Some(t))
                }
            }
            k if is_metric_name(k) => {
                self.next()?;
                self.vector_selector(Some(t))
            }
            _ => Err(Fail::Unexpected(t)),
        }
    }

    fn leaf(&self, t: Token<'_>, typ: Type, kind: NodeKind) -> Node {
        Node { start: t.pos, end: t.end(), typ, kind, check: None }
    }

    /// The value of a number or duration token, in seconds.
    fn literal(&self, t: Token<'a>) -> Parsed<'a, f64> {
        if t.kind == Kind::Duration {
            parse_duration(t.text).map_err(|e| error(t.pos, e))
        } else {
            parse_number(t.text).map_err(|e| error(t.pos, format!("error parsing number: {e}")))
        }
    }

    /// A vector selector: a metric name (already read) and/or `{…}`.
    fn vector_selector(&mut self, name: Option<Token<'a>>) -> Parsed<'a, Node> {
        let start = match name {
            Some(n) => n.pos,
            None => self.peek()?.pos,
        };
        let mut matchers = Vec::new();
        if name.is_none() || self.peek()?.kind == Kind::LeftBrace {
            self.next()?;
            matchers = self.label_matchers()?;
        }
        let check = match name {
            Some(n) => matchers.iter().find(|m| m.name == "__name__").map(|m| Located {
                pos: start,
                message: format!("metric name must not be set twice: {} or {}", quote(n.text), quote(&m.value)),
            }),
            None => matchers.iter().all(LabelMatcher::matches_empty).then(|| Located {
                pos: start,
                message: "vector selector must contain at least one non-empty matcher".into(),
            }),
        };
        let index = self.outline.selectors.len();
        self.outline.selectors.push(SelectorOutline {
            start,
            end: self.last_end,
            matchers,
            anchored: false,
            smoothed: false,
            info_labels: false,
        });
        let kind = NodeKind::Selector { named: name.is_some(), mods: Modifiers::default(), index };
        Ok(Node { start, end: self.last_end, typ: Type::Vector, kind, check })
    }

    /// The matchers after `{`, through `}`.
    fn label_matchers(&mut self) -> Parsed<'a, Vec<LabelMatcher>> {
        const CONTEXT: &str = "label matching";
        let mut out = Vec::new();
        if self.peek()?.kind == Kind::RightBrace {
            self.next()?;
            return Ok(out);
        }
        loop {
            let label = self.peek()?;
            let name = match label.kind {
                Kind::Identifier => label.text.to_string(),
                Kind::String => String::from_utf8_lossy(&unquote(label.text)).into_owned(),
                _ => return Err(Fail::Error(unexpected(label, CONTEXT, "identifier or \"}\""))),
            };
            self.next()?;
            let op_token = self.peek()?;
            let op = match op_token.kind {
                Kind::Eql => Some(MatchOp::Equal),
                Kind::Neq => Some(MatchOp::NotEqual),
                Kind::EqlRegex => Some(MatchOp::Regex),
                Kind::NeqRegex => Some(MatchOp::NotRegex),
                _ => None,
            };
            match op {
                Some(op) => {
                    self.next()?;
                    let v = self.peek()?;
                    if v.kind != Kind::String {
                        return Err(Fail::Error(unexpected(v, CONTEXT, "string")));
                    }
                    self.next()?;
                    let value = String::from_utf8_lossy(&unquote(v.text)).into_owned();
                    if matches!(op, MatchOp::Regex | MatchOp::NotRegex) {
                        goregex::check(&value).map_err(|e| error(label.pos, e))?;
                    }
                    out.push(LabelMatcher { name, op, value });
                }
                // A quoted name alone is the metric name.
                None if label.kind == Kind::String => {
                    out.push(LabelMatcher { name: "__name__".into(), op: MatchOp::Equal, value: name })
                }
                None => return Err(Fail::Error(unexpected(op_token, CONTEXT, "label matching operator"))),
            }
            let t = self.peek()?;
            match t.kind {
                Kind::Comma => {
                    self.next()?;
                    if self.peek()?.kind == Kind::RightBrace {
                        self.next()?;
                        return Ok(out);
                    }
                }
                Kind::RightBrace => {
                    self.next()?;
                    return Ok(out);
                }
                _ => return Err(Fail::Error(unexpected(t, CONTEXT, "\",\" or \"}\""))),
            }
        }
    }

    /// The arguments of a call or aggregation, `(` through `)`.
    fn call_args(&mut self) -> Parsed<'a, Vec<Node>> {
        self.expect(Kind::LeftParen)?;
        let mut args = Vec::new();
        if self.peek()?.kind == Kind::RightParen {
            self.next()?;
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            let t = self.peek()?;
            match t.kind {
                Kind::Comma => {
                    self.next()?;
                    if self.peek()?.kind == Kind::RightParen {
                        return Err(error(t.pos, "trailing commas not allowed in function call args"));
                    }
                }
                Kind::RightParen => {
                    self.next()?;
                    return Ok(args);
                }
                _ => return Err(Fail::Unexpected(t)),
            }
        }
    }

    fn call(&mut self, name: Token<'a>) -> Parsed<'a, Node> {
        let args = self.call_args()?;
        let called = match name.kind {
            Kind::Identifier => name.text.to_string(),
            _ => name.text.to_ascii_lowercase(),
        };
        let Some(func) = functions::lookup(&called) else {
            return Err(error(name.pos, format!("unknown function with name {}", quote(name.text))));
        };
        if func.name == "info" {
            if let Some(NodeKind::Selector { named: false, index, .. }) = args.get(1).map(|a| a.kind) {
                self.outline.selectors[index].info_labels = true;
            }
        }
        let check = call_check(func, args, name.pos);
        Ok(Node { start: name.pos, end: self.last_end, typ: func.returns, kind: NodeKind::Other, check })
    }

    fn aggregate(&mut self, op_token: Token<'a>, op: Aggregator) -> Parsed<'a, Node> {
        let modifier_first = matches!(self.peek()?.kind, Kind::By | Kind::Without);
        if modifier_first {
            self.next()?;
            self.grouping_labels()?;
        }
        let t = self.peek()?;
        if t.kind != Kind::LeftParen {
            return Err(Fail::Unexpected(t));
        }
        let mut args = self.call_args()?;
        // Without a leading modifier the parser looks at the next token for a trailing one
        // before it checks the arguments.
        if !modifier_first && matches!(self.peek()?.kind, Kind::By | Kind::Without) {
            self.next()?;
            self.grouping_labels()?;
        }
        if args.is_empty() {
            return Err(error(op_token.pos, "no arguments for aggregate expression provided"));
        }
        let wanted = if op.has_param() { 2 } else { 1 };
        if args.len() != wanted {
            return Err(error(
                op_token.pos,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {wanted}, got {}",
                    args.len()
                ),
            ));
        }
        let expr = args.pop();
        let param = args.pop();
        let mut check =
            expr.and_then(|e| e.check.clone().or_else(|| type_error(&e, Type::Vector, "aggregation expression")));
        if let Some(p) = param {
            let want = if op == Aggregator::CountValues { Type::String } else { Type::Scalar };
            check = check.or_else(|| p.check.clone().or_else(|| type_error(&p, want, "aggregation parameter")));
        }
        Ok(Node { start: op_token.pos, end: self.last_end, typ: Type::Vector, kind: NodeKind::Other, check })
    }

    /// `[range]` or `[range:step]` after `node`.
    fn range(&mut self, node: Node) -> Parsed<'a, Node> {
        let open = self.next()?;
        let range = self.positive_duration();
        let range = in_context(range, "subquery or range selector", "number, duration, step(), or range()")?;
        let t = self.peek()?;
        match t.kind {
            Kind::RightBracket => {
                self.next()?;
                let NodeKind::Selector { mods, index, .. } = node.kind else {
                    return Err(error(open.pos, "ranges only allowed for vector selectors"));
                };
                if mods.offset {
                    return Err(error(open.pos, "no offset modifiers allowed before range"));
                }
                if mods.at {
                    return Err(error(open.pos, "no @ modifiers allowed before range"));
                }
                self.duration_slot(range, DurationUse::Positive);
                let kind = NodeKind::Matrix(Modifiers::default(), index);
                Ok(Node { start: node.start, end: self.last_end, typ: Type::Matrix, kind, check: node.check })
            }
            Kind::Colon => {
                self.next()?;
                self.duration_slot(range, DurationUse::Positive);
                if self.peek()?.kind != Kind::RightBracket {
                    let step = self.positive_duration();
                    let step = in_context(step, "subquery selector", "number, duration, step(), range(), or \"]\"")?;
                    let t = self.peek()?;
                    if t.kind != Kind::RightBracket {
                        return Err(Fail::Error(unexpected(t, "subquery selector", "\"]\"")));
                    }
                    self.duration_slot(step, DurationUse::Positive);
                }
                self.next()?;
                let check = node.check.or_else(|| {
                    (node.typ != Type::Vector).then(|| Located {
                        pos: node.start,
                        message: format!("subquery is only allowed on instant vector, got {} instead", node.typ.name()),
                    })
                });
                let kind = NodeKind::Subquery(Modifiers::default());
                Ok(Node { start: node.start, end: self.last_end, typ: Type::Matrix, kind, check })
            }
            _ => Err(Fail::Error(unexpected(t, "subquery or range", "\":\" or \"]\""))),
        }
    }

    /// Keeps a duration expression for evaluation when the query is prepared. Literals stay in
    /// the text, which promql-parser reads, except a zero one (`offset 0s`), which it refuses.
    fn duration_slot(&mut self, d: Dur, usage: DurationUse) {
        if !matches!(d.expr, DurationExpr::Literal(v) if v != 0.0) {
            self.outline.durations.push(DurationSlot { start: d.start, end: d.end, expr: d.expr, usage });
        }
    }

    fn positive_duration(&mut self) -> Parsed<'a, Dur> {
        let d = self.duration_expr(0)?;
        match d.expr {
            DurationExpr::Literal(v) if v <= 0.0 => Err(error(d.start, "duration must be greater than 0")),
            _ => Ok(d),
        }
    }

    /// A duration expression, by precedence climbing. Division and modulo by a literal zero
    /// are refused here; everything else waits for the query's step and range.
    fn duration_expr(&mut self, min_prec: u8) -> Parsed<'a, Dur> {
        self.descend()?;
        let mut lhs = self.duration_unary()?;
        loop {
            let t = self.peek()?;
            let Some(prec) = duration_precedence(t.kind).filter(|p| *p >= min_prec) else { break };
            self.next()?;
            let rhs = self.duration_expr(if t.kind == Kind::Pow { prec } else { prec + 1 })?;
            let op = match t.kind {
                Kind::Add => DurationOp::Add,
                Kind::Sub => DurationOp::Sub,
                Kind::Mul => DurationOp::Mul,
                Kind::Div => DurationOp::Div,
                Kind::Mod => DurationOp::Mod,
                _ => DurationOp::Pow,
            };
            if rhs.expr == DurationExpr::Literal(0.0) {
                match op {
                    DurationOp::Div => return Err(error(t.pos, "division by zero")),
                    DurationOp::Mod => return Err(error(t.pos, "modulo by zero")),
                    _ => {}
                }
            }
            lhs = Dur {
                start: lhs.start,
                end: rhs.end,
                expr: DurationExpr::Binary(op, Box::new(lhs.expr), Box::new(rhs.expr)),
            };
        }
        self.ascend();
        Ok(lhs)
    }

    /// A leading `+`/`-` binds looser than `^`; on a literal it becomes part of the number.
    fn duration_unary(&mut self) -> Parsed<'a, Dur> {
        let t = self.peek()?;
        if !matches!(t.kind, Kind::Add | Kind::Sub) {
            return self.duration_primary();
        }
        self.next()?;
        let inner = self.duration_expr(3)?;
        let negate = t.kind == Kind::Sub;
        let expr = match inner.expr {
            DurationExpr::Literal(v) => {
                let v = if negate { -v } else { v };
                if duration_out_of_range(v) {
                    return Err(error(t.pos, "duration out of range"));
                }
                DurationExpr::Literal(v)
            }
            e if negate => DurationExpr::Neg(Box::new(e)),
            e => e,
        };
        Ok(Dur { start: t.pos, end: inner.end, expr })
    }

    fn duration_primary(&mut self) -> Parsed<'a, Dur> {
        let t = self.peek()?;
        match t.kind {
            Kind::Number | Kind::Duration => {
                self.next()?;
                let v = self.literal(t)?;
                if duration_out_of_range(v) {
                    return Err(error(t.pos, "duration out of range"));
                }
                Ok(Dur { start: t.pos, end: t.end(), expr: DurationExpr::Literal(v) })
            }
            Kind::Step | Kind::Range => {
                self.next()?;
                self.expect(Kind::LeftParen)?;
                self.expect(Kind::RightParen)?;
                let expr = if t.kind == Kind::Step { DurationExpr::Step } else { DurationExpr::Range };
                Ok(Dur { start: t.pos, end: self.last_end, expr })
            }
            _ if is_min_max(t) => {
                self.next()?;
                self.expect(Kind::LeftParen)?;
                let a = self.duration_expr(0)?;
                self.expect(Kind::Comma)?;
                let b = self.duration_expr(0)?;
                self.expect(Kind::RightParen)?;
                let (a, b) = (Box::new(a.expr), Box::new(b.expr));
                let is_min =
                    matches!(t.kind, Kind::Aggregator(Aggregator::Min)) || t.text.eq_ignore_ascii_case("min_of");
                let expr = if is_min { DurationExpr::Min(a, b) } else { DurationExpr::Max(a, b) };
                Ok(Dur { start: t.pos, end: self.last_end, expr })
            }
            Kind::LeftParen => {
                self.next()?;
                let inner = self.duration_expr(0)?;
                self.expect(Kind::RightParen)?;
                Ok(Dur { start: t.pos, end: self.last_end, expr: DurationExpr::Paren(Box::new(inner.expr)) })
            }
            _ => Err(Fail::Unexpected(t)),
        }
    }

    fn offset(&mut self, node: &mut Node) -> Parsed<'a, ()> {
        let d = in_context(self.offset_duration(), "offset", "number, duration, step(), or range()")?;
        // Whether the offset ends here takes the next token to decide.
        self.peek()?;
        let mods = match &mut node.kind {
            NodeKind::Selector { mods, .. } | NodeKind::Matrix(mods, _) | NodeKind::Subquery(mods) => mods,
            _ => return Err(error(
                node.start,
                "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
            )),
        };
        if mods.offset {
            return Err(error(node.start, "offset may not be set multiple times"));
        }
        // An offset of zero counts as none.
        mods.offset = match d.expr {
            DurationExpr::Literal(v) => (v * 1e9).round() != 0.0,
            _ => true,
        };
        node.end = self.last_end;
        self.duration_slot(d, DurationUse::Offset);
        Ok(())
    }

    /// The offset's duration: a signed literal, or a duration expression.
    fn offset_duration(&mut self) -> Parsed<'a, Dur> {
        let sign = self.peek()?;
        let signed = matches!(sign.kind, Kind::Add | Kind::Sub);
        if signed {
            self.next()?;
        }
        let t = self.peek()?;
        let d = match t.kind {
            Kind::Number | Kind::Duration => {
                self.next()?;
                let mut v = self.literal(t)?;
                if sign.kind == Kind::Sub {
                    v = -v;
                }
                let start = if signed { sign.pos } else { t.pos };
                if duration_out_of_range(v) {
                    return Err(error(start, "duration out of range"));
                }
                return Ok(Dur { start, end: t.end(), expr: DurationExpr::Literal(v) });
            }
            Kind::LeftParen if signed => {
                self.next()?;
                let inner = self.duration_expr(0)?;
                self.expect(Kind::RightParen)?;
                Dur { start: t.pos, end: self.last_end, expr: DurationExpr::Paren(Box::new(inner.expr)) }
            }
            Kind::Step | Kind::Range => self.duration_primary()?,
            _ if is_min_max(t) => self.duration_primary()?,
            Kind::LeftParen => return self.duration_expr(0),
            _ => return Err(Fail::Unexpected(t)),
        };
        if !signed {
            return Ok(d);
        }
        let expr = if sign.kind == Kind::Sub { DurationExpr::Neg(Box::new(d.expr)) } else { d.expr };
        Ok(Dur { start: sign.pos, end: d.end, expr })
    }

    /// `anchored` or `smoothed` (the keyword `t`, already read) after `node`.
    fn extended_range(&mut self, node: &Node, t: Token<'a>) -> Parsed<'a, ()> {
        let name = if t.kind == Kind::Anchored { "anchored" } else { "smoothed" };
        let index = match node.kind {
            NodeKind::Selector { index, .. } | NodeKind::Matrix(_, index) => index,
            NodeKind::Subquery(_) => {
                return Err(error(node.start, format!("{name} modifier is not supported for subqueries")))
            }
            _ => return Err(error(node.start, format!("{name} modifier not implemented"))),
        };
        let s = &mut self.outline.selectors[index];
        if t.kind == Kind::Anchored {
            s.anchored = true;
        } else {
            s.smoothed = true;
        }
        if s.anchored && s.smoothed {
            return Err(error(node.start, "anchored and smoothed modifiers cannot be used together"));
        }
        self.outline.keywords.push((t.pos, t.end()));
        Ok(())
    }

    fn at(&mut self, node: &mut Node) -> Parsed<'a, ()> {
        let timestamp = in_context(self.at_timestamp(), "@", "timestamp")?;
        if let Some(ts) = timestamp {
            if !ts.is_finite() || ts >= i64::MAX as f64 || ts <= i64::MIN as f64 {
                return Err(error(
                    node.start,
                    format!("timestamp out of bounds for @ modifier: {}", format_percent_f(ts)),
                ));
            }
        }
        let mods =
            match &mut node.kind {
                NodeKind::Selector { mods, .. } | NodeKind::Matrix(mods, _) | NodeKind::Subquery(mods) => mods,
                _ => return Err(error(
                    node.start,
                    "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                )),
            };
        if mods.at {
            return Err(error(node.start, "@ <timestamp> may not be set multiple times"));
        }
        mods.at = true;
        node.end = self.last_end;
        Ok(())
    }

    /// The `@` argument: a timestamp, or `None` for `start()`/`end()`.
    fn at_timestamp(&mut self) -> Parsed<'a, Option<f64>> {
        let t = self.peek()?;
        match t.kind {
            Kind::Number | Kind::Duration => {
                self.next()?;
                self.literal(t).map(Some)
            }
            Kind::Add | Kind::Sub => {
                self.next()?;
                let n = self.peek()?;
                if !matches!(n.kind, Kind::Number | Kind::Duration) {
                    return Err(Fail::Unexpected(n));
                }
                self.next()?;
                let v = self.literal(n)?;
                Ok(Some(if t.kind == Kind::Sub { -v } else { v }))
            }
            Kind::Start | Kind::End => {
                self.next()?;
                self.expect(Kind::LeftParen)?;
                self.expect(Kind::RightParen)?;
                Ok(None)
            }
            _ => Err(Fail::Unexpected(t)),
        }
    }
}

/// Prometheus's checks of a call, in its order: the argument count, `info`'s second argument,
/// then each argument's own errors and type.
fn call_check(func: &Function, mut args: Vec<Node>, start: usize) -> Option<Located> {
    let at = |pos: usize, message: String| Some(Located { pos, message });
    let name = quote(func.name);
    let declared = func.args.len();
    if func.variadic == 0 {
        if declared != args.len() {
            return at(start, format!("expected {declared} argument(s) in call to {name}, got {}", args.len()));
        }
    } else {
        let least = declared.saturating_sub(1);
        if least > args.len() {
            return at(start, format!("expected at least {least} argument(s) in call to {name}, got {}", args.len()));
        }
        let most = least + func.variadic.max(0) as usize;
        if func.variadic > 0 && most < args.len() {
            return at(start, format!("expected at most {most} argument(s) in call to {name}, got {}", args.len()));
        }
    }
    if func.name == "info" && args.len() > 1 {
        let labels = &mut args[1];
        if labels.typ != Type::Vector {
            return at(
                start,
                format!("expected type instant vector in call to function {name}, got {}", labels.typ.documented()),
            );
        }
        match labels.kind {
            NodeKind::Selector { named: true, .. } => {
                return at(labels.start, "expected label selectors only, got vector selector instead".into())
            }
            // Label selectors there may match empty values.
            NodeKind::Selector { named: false, .. } => labels.check = None,
            _ => return at(labels.start, "expected label selectors only".into()),
        }
    }
    for (i, arg) in args.iter().enumerate() {
        let Some(&want) = func.args.get(i).or_else(|| (func.variadic != 0).then(|| func.args.last()).flatten()) else {
            break;
        };
        if let Some(e) = arg.check.clone() {
            return Some(e);
        }
        if arg.typ != want {
            return at(
                arg.start,
                format!("expected type {} in call to function {name}, got {}", want.documented(), arg.typ.documented()),
            );
        }
    }
    None
}
