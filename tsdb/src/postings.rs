//! Postings lists and how matchers select them.
//!
//! A postings list is the sorted series refs of the series with one label pair. Selecting
//! series for a set of matchers combines such lists with [`intersect`], [`merge`] and
//! [`without`], following Prometheus's `PostingsForMatchers`.

use crate::matchers::{MatchOp, Matcher};
use crate::Result;

/// Anything that can hand out postings lists: a block index, a head.
pub trait PostingsSource {
    /// Sorted refs of the series with `name="value"`; empty if there are none.
    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>>;
    /// Sorted refs of every series.
    fn all_postings(&self) -> Result<Vec<u64>>;
    /// Every value of the label `name`, sorted.
    fn label_values(&self, name: &str) -> Result<Vec<String>>;

    /// The refs of `postings(name, value)` that are also in sorted `within`. A source that
    /// keeps lists encoded can search them in place, so that narrowing a few refs by a long
    /// list (every series of a metric, say) does not decode the whole list.
    fn postings_within(&self, name: &str, value: &str, within: &[u64]) -> Result<Vec<u64>> {
        Ok(intersect(&[self.postings(name, value)?, within.to_vec()]))
    }

    /// About how many refs `postings(name, value)` has, for choosing which list to read
    /// first. Need not be checked: the list itself is read afterwards.
    fn postings_len_hint(&self, name: &str, value: &str) -> Result<usize> {
        Ok(self.postings(name, value)?.len())
    }
}

/// Refs present in every list; empty for no lists.
pub fn intersect(lists: &[Vec<u64>]) -> Vec<u64> {
    let mut by_len: Vec<&[u64]> = lists.iter().map(Vec::as_slice).collect();
    by_len.sort_by_key(|l| l.len());
    let Some((first, rest)) = by_len.split_first() else {
        return Vec::new();
    };
    let mut acc = first.to_vec();
    for list in rest {
        if acc.is_empty() {
            break;
        }
        let mut rest: &[u64] = list;
        acc.retain(|&r| {
            rest = gallop(rest, r);
            rest.first() == Some(&r)
        });
    }
    acc
}

/// Refs present in any list, sorted and without duplicates.
pub fn merge(lists: &[Vec<u64>]) -> Vec<u64> {
    match lists {
        [] => Vec::new(),
        [one] => one.clone(),
        _ => {
            let mut all: Vec<u64> = lists.concat();
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

/// Refs of `a` that are not in `b`.
pub fn without(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut rest = b;
    a.iter()
        .copied()
        .filter(|&r| {
            rest = gallop(rest, r);
            rest.first() != Some(&r)
        })
        .collect()
}

/// Whether sorted `a` and `b` share a ref.
pub fn overlaps(a: &[u64], b: &[u64]) -> bool {
    let (short, mut long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.iter().any(|&r| {
        long = gallop(long, r);
        long.first() == Some(&r)
    })
}

/// The suffix of sorted `list` starting at the first element `>= target`.
fn gallop(list: &[u64], target: u64) -> &[u64] {
    &list[seek(list.len(), target, |i| list[i])..]
}

/// Index of the first of `len` ascending values (`get(i)`, `i < len`) that is `>= target`, or
/// `len`. Exponential then binary search: finding position k costs O(log k), so walking one
/// list through a longer one costs O(short · log(long / short)).
pub(crate) fn seek(len: usize, target: u64, get: impl Fn(usize) -> u64) -> usize {
    let mut step = 1;
    while step < len && get(step - 1) < target {
        step *= 2;
    }
    // Everything before step / 2 is below the target; the answer is at most step - 1 or len.
    let (mut lo, mut hi) = (step / 2, step.min(len));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if get(mid) < target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The sorted refs of the series that satisfy every matcher, with Prometheus's semantics: a
/// series without a label has it as the empty string, so a matcher that accepts `""` also
/// selects series lacking the label.
///
/// Matchers that reject `""` require the label; each yields the union of the postings of the
/// values it accepts, and those unions are intersected. Matchers that accept `""` can only
/// exclude series, namely those whose value they reject; that union is subtracted. If no
/// matcher requires a label, the subtraction starts from all series, as it does for an empty
/// matcher list (which therefore selects everything).
///
/// Where the accepted (or rejected) values are known literally (`=`, `!=`, and `=~`/`!~` with
/// a plain alternation, see [`Matcher::set_matches`]) they are looked up directly; otherwise
/// the label's values are scanned. Literal lookups go from the shortest list to the longest,
/// and everything after the first list is only searched for the refs still selected.
pub fn postings_for_matchers(src: &impl PostingsSource, matchers: &[Matcher]) -> Result<Vec<u64>> {
    let mut scanned: Vec<Vec<u64>> = Vec::new();
    let mut lookups: Vec<(usize, &Matcher, Vec<&str>)> = Vec::new();
    let mut excluding: Vec<&Matcher> = Vec::new();
    for m in matchers {
        if m.matches_empty() {
            excluding.push(m);
            continue;
        }
        match literal_values(m, true) {
            Some(values) => {
                let mut len = 0usize;
                for v in &values {
                    len = len.saturating_add(src.postings_len_hint(&m.name, v)?);
                }
                lookups.push((len, m, values));
            }
            None => {
                let list = union(scan(src, m, true, None)?);
                // Nothing can satisfy this matcher, so nothing can satisfy them all.
                if list.is_empty() {
                    return Ok(Vec::new());
                }
                scanned.push(list);
            }
        }
    }
    lookups.sort_by_key(|l| l.0);

    let mut result: Option<Vec<u64>> = match scanned.len() {
        0 => None,
        1 => scanned.pop(),
        _ => Some(intersect(&scanned)),
    };
    for (_, m, values) in lookups {
        let lists = values
            .iter()
            .map(|v| match &result {
                None => src.postings(&m.name, v),
                Some(within) => src.postings_within(&m.name, v, within),
            })
            .collect::<Result<Vec<_>>>()?;
        let list = union(lists);
        if list.is_empty() {
            return Ok(Vec::new());
        }
        result = Some(list);
    }
    let mut result = match result {
        Some(r) => r,
        None => src.all_postings()?,
    };

    for m in excluding {
        if result.is_empty() {
            break;
        }
        let failing = match literal_values(m, false) {
            Some(values) => {
                values.iter().map(|v| src.postings_within(&m.name, v, &result)).collect::<Result<Vec<_>>>()?
            }
            None => scan(src, m, false, Some(&result))?,
        };
        result = without(&result, &union(failing));
    }
    Ok(result)
}

/// The `(name, value)` keys of every postings list [`postings_for_matchers`] may read for
/// `matchers` (`("", "")` standing for all series), found from label values alone: a source
/// that fetches lists from far away reads them all at once with this before it selects.
pub fn postings_keys(src: &impl PostingsSource, matchers: &[Matcher]) -> Result<Vec<(String, String)>> {
    let mut keys = Vec::new();
    for m in matchers {
        // Matchers that reject "" read the values they accept; the others those they reject.
        let accept = !m.matches_empty();
        match literal_values(m, accept) {
            Some(values) => keys.extend(values.into_iter().map(|v| (m.name.clone(), v.to_owned()))),
            None => keys.extend(
                src.label_values(&m.name)?.into_iter().filter(|v| m.matches(v) == accept).map(|v| (m.name.clone(), v)),
            ),
        }
    }
    if matchers.iter().all(Matcher::matches_empty) {
        keys.push((String::new(), String::new()));
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The values of `m.name` for which `m.matches(value) == accept`, when the matcher names them
/// literally. Callers only ask for sets that exclude `""` (accepted values of a matcher that
/// rejects it, rejected values of one that accepts it), so `""` is never among them.
fn literal_values(m: &Matcher, accept: bool) -> Option<Vec<&str>> {
    match (m.op, accept) {
        (MatchOp::Equal, true) | (MatchOp::NotEqual, false) => Some(vec![m.value.as_str()]),
        (MatchOp::Regex, true) | (MatchOp::NotRegex, false) => {
            m.set_matches().map(|set| set.iter().map(String::as_str).collect())
        }
        _ => None,
    }
}

/// The postings (limited to `within`, if given) of every value of `m.name` for which
/// `m.matches(value) == accept`.
fn scan(src: &impl PostingsSource, m: &Matcher, accept: bool, within: Option<&[u64]>) -> Result<Vec<Vec<u64>>> {
    src.label_values(&m.name)?
        .iter()
        .filter(|v| m.matches(v) == accept)
        .map(|v| match within {
            None => src.postings(&m.name, v),
            Some(within) => src.postings_within(&m.name, v, within),
        })
        .collect()
}

/// [`merge`], but a single list (the common case of one value) is returned as it is: lists
/// can be millions of refs long.
fn union(mut lists: Vec<Vec<u64>>) -> Vec<u64> {
    match lists.len() {
        1 => lists.swap_remove(0),
        _ => merge(&lists),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn set_operations() {
        assert_eq!(intersect(&[vec![1, 3, 5, 7], vec![3, 4, 5], vec![0, 3, 5, 9]]), vec![3, 5]);
        assert_eq!(intersect(&[vec![1, 2], vec![]]), Vec::<u64>::new());
        assert_eq!(intersect(&[]), Vec::<u64>::new());
        assert_eq!(merge(&[vec![1, 4], vec![2, 4, 9], vec![]]), vec![1, 2, 4, 9]);
        assert_eq!(merge(&[]), Vec::<u64>::new());
        assert_eq!(without(&[1, 2, 3, 4], &[0, 2, 4, 8]), vec![1, 3]);
        assert_eq!(without(&[1, 2], &[]), vec![1, 2]);
        assert!(overlaps(&[1, 5, 9], &[2, 3, 4, 9]));
        assert!(!overlaps(&[1, 5], &[2, 3, 4, 9]));
        assert!(!overlaps(&[], &[1]));
    }

    proptest! {
        #[test]
        fn set_operations_agree_with_btreesets(
            lists in prop::collection::vec(prop::collection::btree_set(0u64..200, 0..60), 0..5),
        ) {
            let vecs: Vec<Vec<u64>> = lists.iter().map(|s| s.iter().copied().collect()).collect();
            let mut inter = lists.first().cloned().unwrap_or_default();
            let mut union = std::collections::BTreeSet::new();
            for s in &lists {
                inter = inter.intersection(s).copied().collect();
                union.extend(s.iter().copied());
            }
            prop_assert_eq!(intersect(&vecs), inter.into_iter().collect::<Vec<_>>());
            prop_assert_eq!(merge(&vecs), union.into_iter().collect::<Vec<_>>());
            if let [a, b, ..] = vecs.as_slice() {
                let want: Vec<u64> = a.iter().copied().filter(|x| !b.contains(x)).collect();
                prop_assert_eq!(without(a, b), want);
            }
        }
    }

    /// A source over a fixed list of series (ref = position), counting value scans.
    struct Series {
        series: Vec<Vec<(&'static str, &'static str)>>,
        scans: std::cell::Cell<usize>,
    }

    impl PostingsSource for Series {
        fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>> {
            Ok((0..self.series.len() as u64)
                .filter(|&i| self.series[i as usize].iter().any(|&(n, v)| n == name && v == value))
                .collect())
        }
        fn all_postings(&self) -> Result<Vec<u64>> {
            Ok((0..self.series.len() as u64).collect())
        }
        fn label_values(&self, name: &str) -> Result<Vec<String>> {
            self.scans.set(self.scans.get() + 1);
            let mut vals: BTreeMap<&str, ()> = BTreeMap::new();
            for s in &self.series {
                for &(n, v) in s {
                    if n == name {
                        vals.insert(v, ());
                    }
                }
            }
            Ok(vals.keys().map(|v| v.to_string()).collect())
        }
    }

    /// A source that serves only the lists `postings_keys` named, failing on any other.
    struct Prefetched<'a> {
        inner: &'a Series,
        keys: Vec<(String, String)>,
    }

    impl PostingsSource for Prefetched<'_> {
        fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>> {
            if !self.keys.contains(&(name.to_owned(), value.to_owned())) {
                return Err(crate::Error::InvalidMatcher(format!("{name}={value} not prefetched")));
            }
            self.inner.postings(name, value)
        }
        fn all_postings(&self) -> Result<Vec<u64>> {
            if !self.keys.contains(&(String::new(), String::new())) {
                return Err(crate::Error::InvalidMatcher("all postings not prefetched".into()));
            }
            self.inner.all_postings()
        }
        fn label_values(&self, name: &str) -> Result<Vec<String>> {
            self.inner.label_values(name)
        }
    }

    #[test]
    fn matcher_semantics() {
        let src = Series {
            series: vec![
                vec![("a", "1"), ("b", "x")],
                vec![("a", "2")],
                vec![("b", "y")],
                vec![("a", "1"), ("b", "y")],
            ],
            scans: Default::default(),
        };
        let sel = |ms: &[(&str, MatchOp, &str)]| {
            let ms: Vec<Matcher> = ms.iter().map(|&(n, op, v)| Matcher::new(op, n, v).unwrap()).collect();
            let got = postings_for_matchers(&src, &ms).unwrap();
            let prefetched = Prefetched { inner: &src, keys: postings_keys(&src, &ms).unwrap() };
            assert_eq!(postings_for_matchers(&prefetched, &ms).unwrap(), got, "{ms:?} with prefetched lists");
            got
        };
        use MatchOp::*;
        assert_eq!(sel(&[("a", Equal, "1")]), vec![0, 3]);
        assert_eq!(sel(&[("a", NotEqual, "1")]), vec![1, 2]);
        assert_eq!(sel(&[("a", Equal, "")]), vec![2]);
        assert_eq!(sel(&[("a", NotEqual, "")]), vec![0, 1, 3]);
        assert_eq!(sel(&[("a", Regex, "1|")]), vec![0, 2, 3]);
        assert_eq!(sel(&[("a", NotRegex, "1|2")]), vec![2]);
        assert_eq!(sel(&[("a", Equal, "1"), ("b", NotEqual, "y")]), vec![0]);
        assert_eq!(sel(&[("b", Regex, ".*"), ("a", NotRegex, "2")]), vec![0, 2, 3]);
        assert_eq!(sel(&[("zzz", Equal, "q")]), Vec::<u64>::new());
        assert_eq!(sel(&[]), vec![0, 1, 2, 3]);
        // Literal sets and equality are looked up, not scanned.
        src.scans.set(0);
        let literal: Vec<Matcher> = [("a", Regex, "1|2"), ("b", NotRegex, "x|q"), ("a", NotEqual, "7")]
            .iter()
            .map(|&(n, op, v)| Matcher::new(op, n, v).unwrap())
            .collect();
        postings_for_matchers(&src, &literal).unwrap();
        postings_keys(&src, &literal).unwrap();
        assert_eq!(src.scans.get(), 0);
        postings_for_matchers(&src, &[Matcher::new(Regex, "a", "1.*").unwrap()]).unwrap();
        assert_eq!(src.scans.get(), 1);
    }
}
