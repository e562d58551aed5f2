//! Duration expressions (`foo[5m + step()]`, `offset (1h / 2)`): the parser keeps them as
//! trees, and they are evaluated once the query's step and range are known, as Prometheus's
//! `durationVisitor` (`promql/durations.go`) does when it prepares a query.

/// An arithmetic operator of a duration expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DurationOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

/// A duration expression; values are seconds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum DurationExpr {
    /// A number or duration literal, with its sign.
    Literal(f64),
    /// `step()`: the query's step, 0 for an instant query.
    Step,
    /// `range()`: the query's end minus its start.
    Range,
    Paren(Box<DurationExpr>),
    Neg(Box<DurationExpr>),
    Binary(DurationOp, Box<DurationExpr>, Box<DurationExpr>),
    Min(Box<DurationExpr>, Box<DurationExpr>),
    Max(Box<DurationExpr>, Box<DurationExpr>),
}

/// Where a duration expression stands, which decides whether it may be zero or negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DurationUse {
    /// A range selector's range, or a subquery's range or step.
    Positive,
    Offset,
}

impl DurationExpr {
    /// The value in seconds for a query with `step` and `range` (seconds).
    fn eval(&self, step: f64, range: f64) -> Result<f64, &'static str> {
        Ok(match self {
            DurationExpr::Literal(v) => *v,
            DurationExpr::Step => step,
            DurationExpr::Range => range,
            DurationExpr::Paren(e) => e.eval(step, range)?,
            DurationExpr::Neg(e) => -e.eval(step, range)?,
            DurationExpr::Min(a, b) => go_min(a.eval(step, range)?, b.eval(step, range)?),
            DurationExpr::Max(a, b) => go_max(a.eval(step, range)?, b.eval(step, range)?),
            DurationExpr::Binary(op, a, b) => {
                let (a, b) = (a.eval(step, range)?, b.eval(step, range)?);
                match op {
                    DurationOp::Add => a + b,
                    DurationOp::Sub => a - b,
                    DurationOp::Mul => a * b,
                    DurationOp::Div if b == 0.0 => return Err("division by zero"),
                    DurationOp::Div => a / b,
                    DurationOp::Mod if b == 0.0 => return Err("modulo by zero"),
                    // Go's math.Mod: the result has the sign of the dividend, as Rust's `%`.
                    DurationOp::Mod => a % b,
                    DurationOp::Pow => a.powf(b),
                }
            }
        })
    }

    /// The duration in whole milliseconds (truncated, as Prometheus converts it) for a query
    /// with `step` and `range` (milliseconds).
    pub fn millis(&self, usage: DurationUse, step: i64, range: i64) -> Result<i64, &'static str> {
        let seconds = self.eval(step as f64 / 1000.0, range as f64 / 1000.0)?;
        if usage == DurationUse::Positive && seconds <= 0.0 {
            return Err("duration must be greater than 0");
        }
        // Beyond Go's time.Duration (about 292 years) the value does not fit; NaN neither.
        if seconds.is_nan() || seconds.abs() > 9_223_372_036.854_775 {
            return Err("duration is out of range");
        }
        Ok((seconds * 1000.0) as i64)
    }
}

/// Go's `math.Min`: NaN wins.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Go's `math.Max`: NaN wins.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

#[cfg(test)]
mod tests {
    use super::DurationExpr::*;
    use super::*;

    fn b(e: DurationExpr) -> Box<DurationExpr> {
        Box::new(e)
    }

    #[test]
    fn evaluates_with_the_query_step_and_range() {
        let e = Binary(DurationOp::Add, b(Step), b(Literal(0.001)));
        assert_eq!(e.millis(DurationUse::Positive, 10_000, 0), Ok(10_001));
        assert_eq!(Min(b(Range), b(Literal(8.0))).millis(DurationUse::Offset, 5_000, 10_000), Ok(8_000));
        assert_eq!(Neg(b(Step)).millis(DurationUse::Offset, 5_000, 0), Ok(-5_000));
        let pow = Neg(b(Binary(DurationOp::Pow, b(Literal(2.0)), b(Literal(2.0)))));
        assert_eq!(pow.millis(DurationUse::Offset, 0, 0), Ok(-4_000));
        assert_eq!(
            Binary(DurationOp::Mod, b(Literal(5400.0)), b(Literal(3600.0))).millis(DurationUse::Offset, 0, 0),
            Ok(1_800_000)
        );
    }

    #[test]
    fn refuses_what_prometheus_refuses() {
        assert_eq!(Step.millis(DurationUse::Positive, 0, 0), Err("duration must be greater than 0"));
        assert_eq!(Step.millis(DurationUse::Offset, 0, 0), Ok(0));
        let div = Binary(DurationOp::Div, b(Literal(1.0)), b(Step));
        assert_eq!(div.millis(DurationUse::Offset, 0, 0), Err("division by zero"));
        let huge = Binary(DurationOp::Mul, b(Literal(1e9)), b(Literal(1e9)));
        assert_eq!(huge.millis(DurationUse::Positive, 0, 0), Err("duration is out of range"));
    }
}
