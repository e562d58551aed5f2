//! Source positions of function calls and aggregations, for annotations, and the vector
//! selectors' extended-range modifiers and `info()` label matchers.
//!
//! Prometheus ends each annotation with the position of the node it is about, e.g.
//! `(1:6)`. The promql-parser AST carries no positions, so they are recovered from the text it
//! read: calls and aggregations appear in the text in the same order as in a source-order walk
//! of the AST, so the k-th call token belongs to the k-th call node. Vector selectors appear in
//! the order the parser recorded what the tree cannot hold about them, so the k-th selector
//! node gets the k-th record.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Call, Expr, VectorSelector};

use crate::parse::lex::{Kind, Lexer};
use crate::parse::{Parsed, SelectorExtras};

/// Where a call or aggregation starts and where each of its arguments starts (byte offsets in
/// the query).
#[derive(Debug, Clone)]
pub(crate) struct NodePos {
    pub start: usize,
    pub args: Vec<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct Positions {
    calls: HashMap<usize, NodePos>,
    aggregations: HashMap<usize, NodePos>,
}

impl Positions {
    pub fn new(parsed: &Parsed) -> Positions {
        let mut nodes = Nodes::default();
        walk(&parsed.expr, &mut nodes);
        let (call_pos, agg_pos) = scan(parsed.text());
        let to_query = |mut n: NodePos| {
            n.start = parsed.query_position(n.start);
            n.args.iter_mut().for_each(|a| *a = parsed.query_position(*a));
            n
        };
        let mut p = Positions::default();
        if call_pos.len() == nodes.calls.len() {
            p.calls = nodes.calls.into_iter().zip(call_pos.into_iter().map(to_query)).collect();
        }
        if agg_pos.len() == nodes.aggregations.len() {
            p.aggregations = nodes.aggregations.into_iter().zip(agg_pos.into_iter().map(to_query)).collect();
        }
        p
    }

    pub fn call(&self, c: &Call) -> Option<&NodePos> {
        self.calls.get(&(c as *const Call as usize))
    }

    pub fn aggregation(&self, a: &AggregateExpr) -> Option<&NodePos> {
        self.aggregations.get(&(a as *const AggregateExpr as usize))
    }
}

/// The vector selectors of `parsed` that have more than promql-parser's tree holds, by node
/// address; `None` if the tree's selectors do not line up with the parser's records.
pub(crate) fn selector_extras(parsed: &Parsed) -> Option<HashMap<usize, &SelectorExtras>> {
    let mut nodes = Nodes::default();
    walk(&parsed.expr, &mut nodes);
    if nodes.selectors.len() != parsed.selectors.len() {
        return None;
    }
    let plain = SelectorExtras::default();
    Some(nodes.selectors.into_iter().zip(&parsed.selectors).filter(|(_, x)| **x != plain).collect())
}

/// Node addresses in source order.
#[derive(Default)]
struct Nodes {
    calls: Vec<usize>,
    aggregations: Vec<usize>,
    selectors: Vec<usize>,
}

fn walk(e: &Expr, nodes: &mut Nodes) {
    match e {
        Expr::Aggregate(a) => {
            nodes.aggregations.push(a as *const AggregateExpr as usize);
            if let Some(p) = &a.param {
                walk(p, nodes);
            }
            walk(&a.expr, nodes);
        }
        Expr::Unary(u) => walk(&u.expr, nodes),
        Expr::Binary(b) => {
            walk(&b.lhs, nodes);
            walk(&b.rhs, nodes);
        }
        Expr::Paren(p) => walk(&p.expr, nodes),
        Expr::Subquery(s) => walk(&s.expr, nodes),
        Expr::Call(c) => {
            nodes.calls.push(c as *const Call as usize);
            for a in &c.args.args {
                walk(a, nodes);
            }
        }
        Expr::VectorSelector(vs) => nodes.selectors.push(vs as *const VectorSelector as usize),
        Expr::MatrixSelector(ms) => nodes.selectors.push(&ms.vs as *const VectorSelector as usize),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    /// An identifier: a function name when `(` follows.
    Name,
    Aggregator,
    /// `by` or `without`.
    Grouping,
    /// `(`, which starts call arguments; other brackets only nest.
    Paren,
    Open,
    Close,
    Comma,
    Other,
}

/// The query's tokens, as far as it lexes.
fn tokens(q: &str) -> Vec<(usize, Tok)> {
    let mut lexer = Lexer::new(q);
    let mut out = Vec::new();
    while let Ok(t) = lexer.next_token() {
        let tok = match t.kind {
            Kind::Eof => break,
            Kind::Identifier => Tok::Name,
            Kind::Aggregator(_) => Tok::Aggregator,
            Kind::By | Kind::Without => Tok::Grouping,
            Kind::LeftParen => Tok::Paren,
            Kind::LeftBrace | Kind::LeftBracket => Tok::Open,
            Kind::RightParen | Kind::RightBrace | Kind::RightBracket => Tok::Close,
            Kind::Comma => Tok::Comma,
            _ => Tok::Other,
        };
        out.push((t.pos, tok));
    }
    out
}

/// Positions of call tokens and of aggregation tokens, in text order.
fn scan(q: &str) -> (Vec<NodePos>, Vec<NodePos>) {
    let toks = tokens(q);
    let mut calls = Vec::new();
    let mut aggs = Vec::new();
    for (k, &(pos, tok)) in toks.iter().enumerate() {
        let next = toks.get(k + 1).map(|t| t.1);
        match tok {
            Tok::Aggregator => {
                // `sum by (a) (x)`: skip the grouping clause to reach the arguments.
                let j = if next == Some(Tok::Grouping) { skip_group(&toks, k + 2) } else { k + 1 };
                if toks.get(j).map(|t| t.1) == Some(Tok::Paren) {
                    aggs.push(NodePos { start: pos, args: arg_starts(&toks, j) });
                }
            }
            Tok::Name if next == Some(Tok::Paren) => calls.push(NodePos { start: pos, args: arg_starts(&toks, k + 1) }),
            _ => {}
        }
    }
    (calls, aggs)
}

/// Index after the parenthesised group starting at `open`.
fn skip_group(toks: &[(usize, Tok)], open: usize) -> usize {
    let mut depth = 0;
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t.1 {
            Tok::Open | Tok::Paren => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// Start offsets of the comma-separated arguments in the group opening at `open`.
fn arg_starts(toks: &[(usize, Tok)], open: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut expect_arg = false;
    for t in toks.iter().skip(open) {
        if expect_arg && t.1 != Tok::Close {
            out.push(t.0);
            expect_arg = false;
        }
        match t.1 {
            Tok::Open | Tok::Paren => {
                depth += 1;
                if depth == 1 {
                    expect_arg = true;
                }
            }
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Tok::Comma if depth == 1 => expect_arg = true,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_calls_and_arguments() {
        let q = "sum by (job) (rate(x[5m])) + histogram_quantile(0.9, foo)";
        let (calls, aggs) = scan(q);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].start, q.find("rate").unwrap());
        assert_eq!(calls[0].args, vec![q.find("x[").unwrap()]);
        assert_eq!(calls[1].args, vec![q.find("0.9").unwrap(), q.find("foo").unwrap()]);
        assert_eq!(aggs.len(), 1);
        assert_eq!(aggs[0].args, vec![q.find("rate").unwrap()]);
    }

    #[test]
    fn ignores_at_modifiers_and_operators() {
        let (calls, _) = scan("x @ start() and (y)");
        assert!(calls.is_empty());
    }

    #[test]
    fn maps_nodes() {
        let parsed = crate::parse::parse_query("sum(sort(x))", 0, 0).unwrap();
        let p = Positions::new(&parsed);
        let Expr::Aggregate(a) = &parsed.expr else { panic!() };
        let Expr::Call(c) = a.expr.as_ref() else { panic!() };
        assert_eq!(p.call(c).unwrap().start, 4);
        assert_eq!(p.aggregation(a).unwrap().args, vec![4]);
    }

    #[test]
    fn maps_positions_around_rewritten_text() {
        // The duration expression and the modifier are rewritten before promql-parser reads
        // the query; positions still point into the query as written.
        let q = "rate(x[1m+1m] smoothed) + clamp_min(rate(y[step()]), 1)";
        let parsed = crate::parse::parse_query(q, 60_000, 0).unwrap();
        let p = Positions::new(&parsed);
        let Expr::Binary(b) = &parsed.expr else { panic!() };
        let Expr::Call(rhs) = b.rhs.as_ref() else { panic!() };
        assert_eq!(p.call(rhs).unwrap().start, q.find("clamp_min").unwrap());
        assert_eq!(p.call(rhs).unwrap().args, vec![q.find("rate(y").unwrap(), q.rfind('1').unwrap()]);
        let extras = selector_extras(&parsed).unwrap();
        assert_eq!(extras.len(), 1);
        assert!(extras.values().all(|x| x.smoothed));
    }
}
