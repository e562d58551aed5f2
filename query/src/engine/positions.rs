//! Source positions of function calls and aggregations, for annotations.
//!
//! Prometheus ends each annotation with the position of the node it is about, e.g.
//! `(1:6)`. The promql-parser AST carries no positions, so they are recovered from the query
//! text: calls and aggregations appear in the text in the same order as in a source-order walk
//! of the AST, so the k-th call token belongs to the k-th call node.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Call, Expr};

/// Where a call or aggregation starts and where each of its arguments starts (byte offsets).
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

const AGGREGATORS: &[&str] = &[
    "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk", "count_values", "quantile",
    "limitk", "limit_ratio",
];

const KEYWORDS: &[&str] =
    &["and", "or", "unless", "atan2", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"];

impl Positions {
    pub fn new(query: &str, root: &Expr) -> Positions {
        let mut calls = Vec::new();
        let mut aggregations = Vec::new();
        walk(root, &mut calls, &mut aggregations);
        let (call_pos, agg_pos) = scan(query);
        let mut p = Positions::default();
        if call_pos.len() == calls.len() {
            p.calls = calls.into_iter().zip(call_pos).collect();
        }
        if agg_pos.len() == aggregations.len() {
            p.aggregations = aggregations.into_iter().zip(agg_pos).collect();
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

/// Collects call and aggregation nodes in source order.
fn walk(e: &Expr, calls: &mut Vec<usize>, aggs: &mut Vec<usize>) {
    match e {
        Expr::Aggregate(a) => {
            aggs.push(a as *const AggregateExpr as usize);
            if let Some(p) = &a.param {
                walk(p, calls, aggs);
            }
            walk(&a.expr, calls, aggs);
        }
        Expr::Unary(u) => walk(&u.expr, calls, aggs),
        Expr::Binary(b) => {
            walk(&b.lhs, calls, aggs);
            walk(&b.rhs, calls, aggs);
        }
        Expr::Paren(p) => walk(&p.expr, calls, aggs),
        Expr::Subquery(s) => walk(&s.expr, calls, aggs),
        Expr::Call(c) => {
            calls.push(c as *const Call as usize);
            for a in &c.args.args {
                walk(a, calls, aggs);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'q> {
    Ident(&'q str),
    /// `(`, which starts call arguments; other brackets only nest.
    Paren,
    Open,
    Close,
    Comma,
    At,
    Other,
}

fn tokens(q: &str) -> Vec<(usize, Tok<'_>)> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' | b'`' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push((start, Tok::Other));
            }
            b'(' => {
                out.push((i, Tok::Paren));
                i += 1;
            }
            b'{' | b'[' => {
                out.push((i, Tok::Open));
                i += 1;
            }
            b')' | b'}' | b']' => {
                out.push((i, Tok::Close));
                i += 1;
            }
            b',' => {
                out.push((i, Tok::Comma));
                i += 1;
            }
            b'@' => {
                out.push((i, Tok::At));
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                out.push((start, Tok::Ident(&q[start..i])));
            }
            _ => {
                let start = i;
                i += q[i..].chars().next().map_or(1, char::len_utf8);
                out.push((start, Tok::Other));
            }
        }
    }
    out
}

/// Positions of call tokens and of aggregation tokens, in text order.
fn scan(q: &str) -> (Vec<NodePos>, Vec<NodePos>) {
    let toks = tokens(q);
    let mut calls = Vec::new();
    let mut aggs = Vec::new();
    for (k, &(pos, tok)) in toks.iter().enumerate() {
        let Tok::Ident(name) = tok else { continue };
        let lower = name.to_ascii_lowercase();
        let next = toks.get(k + 1).map(|t| t.1);
        let after_at = k > 0 && toks[k - 1].1 == Tok::At;
        if AGGREGATORS.contains(&lower.as_str()) {
            let mut j = k + 1;
            // `sum by (a) (x)`: skip the grouping clause to reach the arguments.
            if let Some(Tok::Ident(kw)) = toks.get(j).map(|t| t.1) {
                if matches!(kw.to_ascii_lowercase().as_str(), "by" | "without") {
                    j = skip_group(&toks, j + 1);
                }
            }
            if toks.get(j).map(|t| t.1) == Some(Tok::Paren) {
                aggs.push(NodePos { start: pos, args: arg_starts(&toks, j) });
            }
        } else if next == Some(Tok::Paren) && !after_at && !KEYWORDS.contains(&lower.as_str()) {
            calls.push(NodePos { start: pos, args: arg_starts(&toks, k + 1) });
        }
    }
    (calls, aggs)
}

/// Index after the parenthesised group starting at `open`.
fn skip_group(toks: &[(usize, Tok<'_>)], open: usize) -> usize {
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
fn arg_starts(toks: &[(usize, Tok<'_>)], open: usize) -> Vec<usize> {
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
        let q = "sum(sort(x))";
        let e = promql_parser::parser::parse(q).unwrap();
        let p = Positions::new(q, &e);
        let Expr::Aggregate(a) = &e else { panic!() };
        let Expr::Call(c) = a.expr.as_ref() else { panic!() };
        assert_eq!(p.call(c).unwrap().start, 4);
        assert_eq!(p.aggregation(a).unwrap().args, vec![4]);
    }
}
