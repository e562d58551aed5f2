//! Merging byte ranges of one object into fewer, larger reads: Thanos's gap-based partitioner
//! (pkg/store/bucket.go), which joins ranges separated by less than a gap, since one request
//! for a few extra bytes is cheaper than another round trip.

use std::ops::Range;

/// Thanos's `PartitionerMaxGapSize`: ranges at most this far apart are read as one.
pub const MAX_GAP: u64 = 512 * 1024;

/// One read covering the elements `elements` of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub range: Range<u64>,
    pub elements: Range<usize>,
}

/// Partitions `ranges` (sorted by start; they may overlap) into reads: a range joins the
/// current read unless it starts more than `max_gap` after the read's end.
pub fn partition(ranges: &[Range<u64>], max_gap: u64) -> Vec<Part> {
    let mut parts: Vec<Part> = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        match parts.last_mut() {
            Some(p) if r.start <= p.range.end.saturating_add(max_gap) => {
                p.range.end = p.range.end.max(r.end);
                p.elements.end = i + 1;
            }
            _ => parts.push(Part { range: r.clone(), elements: i..i + 1 }),
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case = (Vec<Range<u64>>, Vec<(Range<u64>, Range<usize>)>);

    /// The gap rule with a gap of 10: a range joins when it starts at most 10 past the read's end.
    #[test]
    fn as_thanos_partitions() {
        let cases: Vec<Case> = vec![
            (std::iter::once(1..10).collect(), vec![(1..10, 0..1)]),
            (vec![1..2, 3..5, 7..10], vec![(1..10, 0..3)]),
            (vec![1..2, 3..5, 20..30, 30..40], vec![(1..5, 0..2), (20..40, 2..4)]),
            (vec![1..2, 3..5, 14..20, 30..40], vec![(1..40, 0..4)]),
            (vec![1..2, 3..5, 14..20, 31..40], vec![(1..20, 0..3), (31..40, 3..4)]),
            // Overlapping and contained ranges.
            (vec![1..30, 1..4, 3..28, 30..31, 35..40], vec![(1..40, 0..5)]),
            (vec![1..2, 3..5, 7..1000, 5..15, 9..11], vec![(1..1000, 0..5)]),
            (vec![0..0, 100..100], vec![(0..0, 0..1), (100..100, 1..2)]),
        ];
        for (input, want) in cases {
            let got: Vec<(Range<u64>, Range<usize>)> =
                partition(&input, 10).into_iter().map(|p| (p.range, p.elements)).collect();
            assert_eq!(got, want, "{input:?}");
        }
        assert!(partition(&[], 10).is_empty());
    }
}
