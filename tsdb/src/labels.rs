//! Label sets.
//!
//! A [`Labels`] value is one heap allocation holding every name and value, sorted by name, each
//! string prefixed by its uvarint length (the same idea as Prometheus's `stringlabels` build). The
//! head keeps one per series, so its size is most of the per-series memory; a `Vec<(String,
//! String)>` would cost two allocations and 48 bytes of headers per pair.

use std::cmp::Ordering;
use std::fmt;
use std::hash::Hasher;

use twox_hash::XxHash64;

use crate::encoding::{put_uvarint_str, uvarint};
use crate::gotext::quote;

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Separator Prometheus puts between names and values when hashing a label set.
const HASH_SEP: u8 = 0xff;

/// Why a label set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelsError {
    #[error("label set is empty")]
    Empty,
    #[error("label name is empty")]
    EmptyName,
    #[error("duplicate label name {0:?}")]
    DuplicateName(String),
    #[error("labels are not sorted by name: {0:?} comes after {1:?}")]
    Unsorted(String, String),
}

/// An immutable, sorted set of label pairs.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Labels {
    data: Box<[u8]>,
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a label set from pairs that the caller has already sorted by name and checked.
    /// Pairs with an empty value are dropped: in Prometheus an empty value means "no label".
    pub fn from_sorted_unchecked<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str), IntoIter: Clone>) -> Self {
        let pairs = pairs.into_iter();
        // Sized exactly first: the buffer is kept as it is, so growing it would cost a copy and
        // leave slack (or a second copy to shrink it).
        let len = pairs.clone().filter(|(_, v)| !v.is_empty()).map(|(n, v)| str_len(n) + str_len(v)).sum();
        let mut data = Vec::with_capacity(len);
        for (name, value) in pairs {
            if value.is_empty() {
                continue;
            }
            put_uvarint_str(&mut data, name);
            put_uvarint_str(&mut data, value);
        }
        Labels { data: data.into_boxed_slice() }
    }

    /// Builds a label set from pairs as a remote-write sender must send them: sorted by name,
    /// no empty or repeated names. Empty values are dropped (Prometheus semantics); a set left
    /// with no labels is refused.
    pub fn from_sorted(pairs: &[(&str, &str)]) -> Result<Self, LabelsError> {
        Self::validate_pairs(pairs)?;
        Ok(Self::from_sorted_unchecked(pairs.iter().copied()))
    }

    /// Builds a label set from pairs in any order (for tests, tools and generated data).
    /// Later duplicates of a name replace earlier ones.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Self {
        let mut v: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        let mut dedup: Vec<(&str, &str)> = Vec::with_capacity(v.len());
        for p in v {
            match dedup.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => dedup.push(p),
            }
        }
        Self::from_sorted_unchecked(dedup)
    }

    /// Checks pairs as a remote-write sender must send them: sorted by name, no empty or
    /// repeated names, at least one non-empty value. Empty values are allowed and mean "absent".
    pub fn validate_pairs(pairs: &[(&str, &str)]) -> Result<(), LabelsError> {
        let mut prev: Option<&str> = None;
        let mut any = false;
        for &(name, value) in pairs {
            if name.is_empty() {
                return Err(LabelsError::EmptyName);
            }
            if let Some(p) = prev {
                match p.cmp(name) {
                    Ordering::Less => {}
                    Ordering::Equal => return Err(LabelsError::DuplicateName(name.to_owned())),
                    Ordering::Greater => return Err(LabelsError::Unsorted(name.to_owned(), p.to_owned())),
                }
            }
            prev = Some(name);
            any |= !value.is_empty();
        }
        if any {
            Ok(())
        } else {
            Err(LabelsError::Empty)
        }
    }

    /// [`Labels::hash`] of the set that `from_sorted_unchecked(pairs)` would build, without
    /// building it: the append path looks series up by borrowed pairs.
    pub fn hash_pairs(pairs: &[(&str, &str)]) -> u64 {
        hash_of(pairs.iter().copied().filter(|(_, v)| !v.is_empty()))
    }

    /// Whether this set equals the one `from_sorted_unchecked(pairs)` would build.
    pub fn eq_pairs(&self, pairs: &[(&str, &str)]) -> bool {
        let mut mine = self.iter();
        for &(n, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            match mine.next() {
                Some((mn, mv)) if mn == n && mv == v => {}
                _ => return false,
            }
        }
        mine.next().is_none()
    }

    /// Iterates over `(name, value)` pairs in name order.
    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter { rest: &self.data }
    }

    /// The value of `name`, if the set has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The metric name, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes of heap memory this label set holds.
    pub fn heap_bytes(&self) -> usize {
        self.data.len()
    }

    /// XXH64 over `name 0xff value 0xff …`, the hash Prometheus's `labels.Hash` computes.
    pub fn hash(&self) -> u64 {
        hash_of(self.iter())
    }

    /// [`Labels::hash`] over only the labels whose name `keep` accepts (Prometheus's
    /// `HashForLabels` and `HashWithoutLabels` are this with a name list).
    pub fn hash_matching(&self, keep: impl Fn(&str) -> bool) -> u64 {
        hash_of(self.iter().filter(|(n, _)| keep(n)))
    }
}

impl Ord for Labels {
    /// Prometheus's `labels.Compare`: pair by pair, name first, then value; a prefix sorts first.
    ///
    /// Sorting series compares label sets that mostly share their first pairs, so the shared
    /// bytes are skipped first and only the string where the two first differ is compared.
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&*self.data, &*other.data);
        let common = common_prefix(a, b);
        // Strings alternate name, value, name, …; every one that ends within the shared bytes
        // (its length prefix included) is equal in both sets.
        let mut pos = 0;
        let mut rest = a;
        while !rest.is_empty() {
            let before = rest.len();
            take_str(&mut rest);
            let end = pos + (before - rest.len());
            if end > common {
                break;
            }
            pos = end;
        }
        let (mut ra, mut rb) = (&a[pos..], &b[pos..]);
        match (ra.is_empty(), rb.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            // The first string that differs, at the same place in both: both names, or both
            // values of equal names.
            (false, false) => take_str(&mut ra).cmp(take_str(&mut rb)),
        }
    }
}

/// How many bytes `a` and `b` start with in common.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let len = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= len {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or_default());
        let y = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < len && a[i] == b[i] {
        i += 1;
    }
    i
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Prometheus's `Labels.String()` form: `{__name__="up", job="x"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_pairs(f, self.iter())
    }
}

/// A label set as Prometheus prints it: `{a="1", b="2"}`.
pub(crate) fn fmt_pairs<'a>(
    f: &mut fmt::Formatter<'_>,
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> fmt::Result {
    f.write_str("{")?;
    for (i, (n, v)) in pairs.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{n}={}", quote(v))?;
    }
    f.write_str("}")
}

/// Prometheus's `labels.Compare` over two label sets' pairs: pair by pair, name first, then
/// value; a prefix sorts first.
pub(crate) fn cmp_pairs<'a, 'b>(
    mut a: impl Iterator<Item = (&'a str, &'a str)>,
    mut b: impl Iterator<Item = (&'b str, &'b str)>,
) -> Ordering {
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => match p.0.cmp(q.0).then_with(|| p.1.cmp(q.1)) {
                Ordering::Equal => {}
                o => return o,
            },
        }
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Iterator over the pairs of a [`Labels`].
#[derive(Clone)]
pub struct LabelsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let name = take_str(&mut self.rest);
        let value = take_str(&mut self.rest);
        Some((name, value))
    }
}

pub(crate) fn hash_of<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = LabelHasher::new();
    for (n, v) in pairs {
        h.write_pair(n, v);
    }
    h.finish()
}

/// Bytes of a label set hashed in one pass; longer sets are rare and streamed.
const HASH_BUF: usize = 512;

/// XXH64 (seed 0) of bytes written in pieces, as Prometheus hashes label sets: the pieces are
/// gathered on the stack and hashed in one pass, several times faster than feeding each label
/// to a streaming hasher (which copies every small write into its own buffer first). Bytes
/// beyond the buffer continue in a streaming hasher; the hash is the same either way.
pub struct LabelHasher {
    buf: [u8; HASH_BUF],
    len: usize,
    stream: Option<XxHash64>,
}

impl Default for LabelHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl LabelHasher {
    pub fn new() -> Self {
        LabelHasher { buf: [0; HASH_BUF], len: 0, stream: None }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() <= self.buf.len() {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
            return;
        }
        let stream = self.stream.get_or_insert_with(|| XxHash64::with_seed(0));
        stream.write(&self.buf[..self.len]);
        self.len = 0;
        stream.write(bytes);
    }

    /// Writes `name 0xff value 0xff`.
    pub fn write_pair(&mut self, name: &str, value: &str) {
        let (n, v) = (name.as_bytes(), value.as_bytes());
        let end = self.len + n.len() + v.len() + 2;
        if end > self.buf.len() {
            self.write(n);
            self.write(&[HASH_SEP]);
            self.write(v);
            self.write(&[HASH_SEP]);
            return;
        }
        // One bounds check for the pair instead of one per piece: this is the append path's
        // per-series cost.
        let at = self.len;
        self.buf[at..at + n.len()].copy_from_slice(n);
        self.buf[at + n.len()] = HASH_SEP;
        self.buf[at + n.len() + 1..end - 1].copy_from_slice(v);
        self.buf[end - 1] = HASH_SEP;
        self.len = end;
    }

    pub fn finish(self) -> u64 {
        match self.stream {
            None => XxHash64::oneshot(0, &self.buf[..self.len]),
            Some(mut stream) => {
                stream.write(&self.buf[..self.len]);
                stream.finish()
            }
        }
    }
}

/// The bytes `put_uvarint_str` writes for `s`.
fn str_len(s: &str) -> usize {
    let mut len = s.len();
    let mut prefix = 1;
    while len >= 0x80 {
        len >>= 7;
        prefix += 1;
    }
    prefix + s.len()
}

/// Reads one string that [`put_uvarint_str`] wrote. The buffer was built from `&str`s by this
/// module, so the length prefix and the UTF-8 are valid by construction.
fn take_str<'a>(rest: &mut &'a [u8]) -> &'a str {
    // Cannot fail on a buffer this module built; should it, the rest reads as empty.
    let (len, n) = uvarint(rest).unwrap_or((0, rest.len()));
    let (s, tail) = rest[n..].split_at(len as usize);
    *rest = tail;
    // SAFETY: the bytes were copied from a `&str` by `put_uvarint_str` and the buffer is immutable.
    unsafe { std::str::from_utf8_unchecked(s) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let l = Labels::from_pairs(&[("job", "a"), (METRIC_NAME, "up"), ("instance", "x:1")]);
        let pairs: Vec<_> = l.iter().collect();
        assert_eq!(pairs, vec![(METRIC_NAME, "up"), ("instance", "x:1"), ("job", "a")]);
        assert_eq!(l.get("job"), Some("a"));
        assert_eq!(l.metric_name(), Some("up"));
        assert_eq!(l.to_string(), r#"{__name__="up", instance="x:1", job="a"}"#);
    }

    #[test]
    fn long_strings_survive() {
        let v = "x".repeat(100_000);
        let l = Labels::from_pairs(&[("a", v.as_str())]);
        assert_eq!(l.get("a"), Some(v.as_str()));
    }

    #[test]
    fn validation() {
        assert_eq!(Labels::from_sorted(&[("", "x")]), Err(LabelsError::EmptyName));
        assert_eq!(Labels::from_sorted(&[("a", "1"), ("a", "2")]), Err(LabelsError::DuplicateName("a".into())));
        assert!(matches!(Labels::from_sorted(&[("b", "1"), ("a", "2")]), Err(LabelsError::Unsorted(..))));
        assert_eq!(Labels::from_sorted(&[("a", "")]), Err(LabelsError::Empty));
        assert_eq!(Labels::from_sorted(&[("a", ""), ("b", "1")]).unwrap().len(), 1);
    }

    #[test]
    fn hash_matches_prometheus() {
        // labels.FromStrings("__name__", "up", "job", "prometheus").Hash() in Prometheus 2.42.
        let l = Labels::from_pairs(&[(METRIC_NAME, "up"), ("job", "prometheus")]);
        let mut h = XxHash64::with_seed(0);
        h.write(b"__name__\xffup\xffjob\xffprometheus\xff");
        assert_eq!(l.hash(), h.finish());
        assert_eq!(l.hash_matching(|_| true), l.hash());
        let mut h = XxHash64::with_seed(0);
        h.write(b"job\xffprometheus\xff");
        assert_eq!(l.hash_matching(|n| n == "job"), h.finish());
    }

    #[test]
    fn hash_of_sets_longer_than_the_one_shot_buffer() {
        for value_len in [HASH_BUF - 20, HASH_BUF - 6, HASH_BUF - 5, HASH_BUF, 3 * HASH_BUF] {
            let v = "v".repeat(value_len);
            let l = Labels::from_pairs(&[("a", "1"), ("b", v.as_str())]);
            let mut bytes = b"a\xff1\xffb\xff".to_vec();
            bytes.extend_from_slice(v.as_bytes());
            bytes.push(HASH_SEP);
            assert_eq!(l.hash(), XxHash64::oneshot(0, &bytes), "value of {value_len} bytes");
            assert_eq!(Labels::hash_pairs(&[("a", "1"), ("b", v.as_str())]), l.hash());
        }
    }

    #[test]
    fn compare() {
        let a = Labels::from_pairs(&[("a", "1")]);
        let b = Labels::from_pairs(&[("a", "1"), ("b", "1")]);
        let c = Labels::from_pairs(&[("a", "2")]);
        assert!(a < b && b < c);
    }

    /// Prometheus's `labels.Compare`, pair by pair: the definition `Ord` must keep.
    fn compare_pairwise(a: &Labels, b: &Labels) -> std::cmp::Ordering {
        cmp_pairs(a.iter(), b.iter())
    }

    proptest::proptest! {
        #[test]
        fn ordering_is_prometheus_compare(
            // Few distinct names and values, lengths around the one-byte varint limit, so
            // that sets share prefixes and differ by length as often as by content.
            a in proptest::collection::btree_map("[ab]{1,3}", "(x{0,3}|y{126,130})", 0..5),
            b in proptest::collection::btree_map("[ab]{1,3}", "(x{0,3}|y{126,130})", 0..5),
        ) {
            let set = |m: &std::collections::BTreeMap<String, String>| {
                Labels::from_sorted_unchecked(m.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            };
            let (a, b) = (set(&a), set(&b));
            proptest::prop_assert_eq!(a.cmp(&b), compare_pairwise(&a, &b));
            proptest::prop_assert_eq!(b.cmp(&a), compare_pairwise(&b, &a));
            proptest::prop_assert_eq!(a.cmp(&a), std::cmp::Ordering::Equal);
        }
    }
}
