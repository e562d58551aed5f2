//! `label_replace` and `label_join`: they change series labels, not values.

use promql_parser::parser::Expr;
use regex::Regex;
use strata_tsdb::labels::{Labels, METRIC_NAME};

use super::{string_arg, vector_arg};
use crate::engine::eval::Evaluator;
use crate::engine::types::{set_label, Grid, StepSeries, Val};
use crate::engine::{QueryError, DUPLICATE_LABELSET};

pub(crate) fn label_replace(ev: &mut Evaluator, args: &[&Expr], g: Grid) -> Result<Val, QueryError> {
    let [v, dst, repl, src, re] = args else {
        return Err(QueryError::Execution("label_replace needs 5 arguments".into()));
    };
    let (dst, repl, src, re) = (string_arg(dst)?, string_arg(repl)?, string_arg(src)?, string_arg(re)?);
    // Fully anchored, and `.` matches newlines, as Prometheus 3 compiles it.
    let regex = Regex::new(&format!("^(?s:{re})$"))
        .map_err(|_| QueryError::BadData(format!("invalid regular expression in label_replace(): {re}")))?;
    if dst.is_empty() {
        return Err(QueryError::BadData(format!("invalid destination label name in label_replace(): {dst}")));
    }
    let mut input = vector_arg(ev, Some(v), g)?;
    for s in &mut input {
        let value = s.labels.get(&src).unwrap_or("");
        if let Some(caps) = regex.captures(value) {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            s.labels = set_label(&s.labels, &dst, &res);
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
        }
    }
    Ok(Val::Vector(merge_same_labels(input)?))
}

pub(crate) fn label_join(ev: &mut Evaluator, args: &[&Expr], g: Grid) -> Result<Val, QueryError> {
    let [v, dst, sep, srcs @ ..] = args else {
        return Err(QueryError::Execution("label_join needs at least 3 arguments".into()));
    };
    let (dst, sep) = (string_arg(dst)?, string_arg(sep)?);
    let srcs = srcs.iter().map(|a| string_arg(a)).collect::<Result<Vec<_>, _>>()?;
    if let Some(bad) = srcs.iter().find(|s| s.is_empty()) {
        return Err(QueryError::BadData(format!("invalid source label name in label_join(): {bad}")));
    }
    if dst.is_empty() {
        return Err(QueryError::BadData(format!("invalid destination label name in label_join(): {dst}")));
    }
    let mut input = vector_arg(ev, Some(v), g)?;
    for s in &mut input {
        let joined = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect::<Vec<_>>().join(&sep);
        s.labels = set_label(&s.labels, &dst, &joined);
        if dst == METRIC_NAME {
            s.drop_name = false;
        }
    }
    Ok(Val::Vector(merge_same_labels(input)?))
}

/// Series that now share labels become one, unless they have values at the same step.
fn merge_same_labels(input: Vec<StepSeries>) -> Result<Vec<StepSeries>, QueryError> {
    let mut index: std::collections::HashMap<Labels, usize> = std::collections::HashMap::new();
    let mut out: Vec<StepSeries> = Vec::with_capacity(input.len());
    for s in input {
        match index.get(&s.labels) {
            Some(&i) => {
                let target = &mut out[i];
                target.points.extend(s.points);
                target.points.sort_by_key(|p| p.t);
                if target.points.windows(2).any(|w| w[0].t == w[1].t) {
                    return Err(QueryError::Execution(DUPLICATE_LABELSET.into()));
                }
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}
