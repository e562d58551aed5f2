//! The engine's intermediate values.
//!
//! Every expression node is evaluated once over the whole evaluation grid and yields series-major
//! data: a series carries its labels once and a point per step at which it has a value. Label work
//! (grouping keys, matching signatures, result labels) is therefore done once per series, and the
//! per-step loops only touch numbers.

use strata_tsdb::labels::{Labels, METRIC_NAME};

/// The bit pattern Prometheus writes as a staleness marker.
pub(crate) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub(crate) fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The evaluation times of a node: `start, start + step, … ≤ end` (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grid {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Grid {
    pub fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            // Wide arithmetic: the bounds may come from anywhere in the i64 range.
            let n = (self.end as i128 - self.start as i128) / self.step as i128 + 1;
            usize::try_from(n).unwrap_or(usize::MAX)
        }
    }

    pub fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    /// The step index of an evaluation time of this grid.
    pub fn index(&self, t: i64) -> usize {
        ((t - self.start) / self.step) as usize
    }

    pub fn is_instant(&self) -> bool {
        self.start == self.end
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    pub t: i64,
    pub v: f64,
}

/// One series of an instant-vector result over the grid, or of a range vector.
#[derive(Clone, Debug)]
pub(crate) struct StepSeries {
    pub labels: Labels,
    /// The metric name is to be removed when the query finishes (Prometheus's delayed name
    /// removal: functions and operators mark it, label functions can still read and keep it).
    pub drop_name: bool,
    pub points: Vec<Point>,
}

/// The value of an evaluated node.
pub(crate) enum Val {
    /// One value per grid step.
    Scalar(Vec<f64>),
    Vector(Vec<StepSeries>),
    /// A range vector (only as the result of an instant query): raw points with their own times.
    Matrix(Vec<StepSeries>),
    String(String),
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
            Val::String(_) => "string",
        }
    }

    pub fn num_points(&self) -> usize {
        match self {
            Val::Scalar(v) => v.len(),
            Val::Vector(s) | Val::Matrix(s) => s.iter().map(|s| s.points.len()).sum(),
            Val::String(_) => 0,
        }
    }
}

/// Label pairs of `labels` as borrowed strings, for building derived label sets.
pub(crate) fn pairs(labels: &Labels) -> Vec<(&str, &str)> {
    labels.iter().collect()
}

/// Labels that describe the metric rather than the series: dropped together with the name.
const METADATA_LABELS: [&str; 3] = [METRIC_NAME, "__type__", "__unit__"];

/// `labels` without the metric name (and the `__type__`/`__unit__` metadata labels, which
/// Prometheus drops with it).
pub(crate) fn drop_metric_name(labels: &Labels) -> Labels {
    if !labels.iter().any(|(n, _)| METADATA_LABELS.contains(&n)) {
        return labels.clone();
    }
    Labels::from_sorted_unchecked(labels.iter().filter(|(n, _)| !METADATA_LABELS.contains(n)))
}

/// Only the labels named in `names`.
pub(crate) fn keep_labels(labels: &Labels, names: &[String]) -> Labels {
    Labels::from_sorted_unchecked(labels.iter().filter(|(n, _)| names.iter().any(|k| k == n)))
}

/// Without the labels named in `names`.
pub(crate) fn remove_labels(labels: &Labels, names: &[String]) -> Labels {
    Labels::from_sorted_unchecked(labels.iter().filter(|(n, _)| !names.iter().any(|k| k == n)))
}

/// `labels` with `name` set to `value`; an empty value removes the label.
pub(crate) fn set_label(labels: &Labels, name: &str, value: &str) -> Labels {
    let mut p: Vec<(&str, &str)> = labels.iter().filter(|(n, _)| *n != name).collect();
    let at = p.partition_point(|(n, _)| *n < name);
    p.insert(at, (name, value));
    Labels::from_sorted_unchecked(p)
}

/// Matching key over the labels named in `names` (sorted), as Prometheus's `BytesWithLabels`.
pub(crate) fn signature_on(labels: &Labels, names: &[String], out: &mut Vec<u8>) {
    out.clear();
    for (n, v) in labels.iter() {
        if names.iter().any(|k| k == n) {
            push_pair(out, n, v);
        }
    }
}

/// Matching key over all labels except those in `names` and the metric name, as Prometheus's
/// `BytesWithoutLabels` with `__name__` added.
pub(crate) fn signature_without(labels: &Labels, names: &[String], out: &mut Vec<u8>) {
    out.clear();
    for (n, v) in labels.iter() {
        if n != METRIC_NAME && !names.iter().any(|k| k == n) {
            push_pair(out, n, v);
        }
    }
}

fn push_pair(out: &mut Vec<u8>, n: &str, v: &str) {
    out.extend_from_slice(n.as_bytes());
    out.push(0xff);
    out.extend_from_slice(v.as_bytes());
    out.push(0xff);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_helpers() {
        let l = Labels::from_pairs(&[("__name__", "m"), ("a", "1"), ("c", "3")]);
        assert_eq!(drop_metric_name(&l), Labels::from_pairs(&[("a", "1"), ("c", "3")]));
        assert_eq!(set_label(&l, "b", "2").get("b"), Some("2"));
        assert_eq!(set_label(&l, "a", "").get("a"), None);
        assert_eq!(keep_labels(&l, &["a".into()]), Labels::from_pairs(&[("a", "1")]));
    }
}
