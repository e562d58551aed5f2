//! External labels: the labels a store adds to every series it serves (a receiver's tenant and
//! `--label`s), with Thanos's semantics:
//! - an external label replaces a series label of the same name;
//! - a matcher on an external label name is checked against the external value: if it does not
//!   match, the answer is empty without reading anything; if it does, it is dropped from the
//!   read (the series' own value of that label does not matter, it is replaced);
//! - `without_replica_labels` leaves those labels out, external or not;
//! - label names and values include the external labels and leave out the replica labels.
//!
//! Series stay strictly sorted while streaming. Adding labels can reorder series, but only
//! locally. Let M be the greatest external label name kept. For two series A < B of the inner
//! order (with none of the external names):
//! - if A is not a prefix of B, the external labels keep A first (they interleave identically up
//!   to the first difference, where A's label sorts first by name or value);
//! - if A is a proper prefix of B, A comes after B exactly when B's label right after the prefix
//!   is named below M (B then has that label where A has an external label named above it).
//!
//! So a series whose every label name is below M is held back on a stack until the next inner
//! series does not extend it with a next label named below M; the extensions of a series are
//! contiguous and sorted by that next name, so once one does not qualify none later does.
//!
//! Series that carry a label whose value is replaced (named like an external label) or removed
//! (a replica label) would reorder arbitrarily. The read is therefore split by the values of
//! those labels (found with label-values lookups, "absent" being one value), and the parts are
//! merged (which also joins series that end up with the same labels). In the common case no
//! series carries any of them and there is one part. Inside a part every series carries the
//! same such pairs, so the inner order is that of the remaining labels with a constant set
//! added, and the rule above holds with M compared to the greatest name of that set: as long as
//! it is not above M (the part's pairs are external labels that stay), the stack suffices. When
//! a part carries a removed label named above M (`without_replica_labels` removes a label the
//! series hold), prefixes the inner order put after their extensions must come first: that part
//! alone is read whole and sorted, as Thanos sorts every answer in that case.

use std::collections::VecDeque;
use std::sync::Arc;

use strata_storage::{LabelsAnswer, LabelsRequest, SelectRequest, SeriesChunks, SeriesSet, Storage, StorageError};
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::{MatchOp, Matcher};

use crate::{merge_sorted_sets, no_matchers_error};

/// A storage whose series all carry `labels` (see the module documentation).
pub struct ExternalLabels {
    inner: Arc<dyn Storage>,
    labels: Labels,
}

impl ExternalLabels {
    pub fn new(inner: Arc<dyn Storage>, labels: Labels) -> Self {
        ExternalLabels { inner, labels }
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Whether the wrapper has nothing to do for a request leaving out `without`.
    fn transparent(&self, without: &[String]) -> bool {
        self.labels.is_empty() && without.is_empty()
    }

    /// The matchers the inner storage gets: those not on an external label. `None` when a
    /// matcher on an external label rejects its value, so nothing can match.
    fn inner_matchers(&self, matchers: &[Matcher]) -> Option<Vec<Matcher>> {
        let mut inner = Vec::with_capacity(matchers.len());
        for m in matchers {
            match self.labels.get(&m.name) {
                Some(value) if !m.matches(value) => return None,
                Some(_) => {}
                None => inner.push(m.clone()),
            }
        }
        Some(inner)
    }

    /// The external labels left after leaving out `without`.
    fn kept(&self, without: &[String]) -> Labels {
        Labels::from_sorted_unchecked(self.labels.iter().filter(|(n, _)| !without.iter().any(|w| w == n)))
    }

    /// The parts that split a read of `matchers` so that in each, every one of `names` has one
    /// value (or is absent) across all series.
    fn parts(&self, matchers: Vec<Matcher>, names: &[String], req: &SelectRequest) -> Result<Vec<Part>, StorageError> {
        let labels_req = |matchers: Vec<Matcher>| LabelsRequest {
            matchers,
            scope: req.scope.clone(),
            ..LabelsRequest::new(Vec::new(), req.min_time, req.max_time)
        };
        let mut parts = vec![Part { matchers, present: Vec::new() }];
        for name in names {
            // An index lookup first: usually no series has the label at all.
            let any = !self
                .inner
                .label_values(name, &LabelsRequest { limit: 1, ..labels_req(Vec::new()) })?
                .values
                .is_empty();
            let mut next = Vec::with_capacity(parts.len());
            for part in parts {
                let values = if any {
                    self.inner.label_values(name, &labels_req(part.matchers.clone()))?.values
                } else {
                    Vec::new()
                };
                for value in values.into_iter().chain(std::iter::once(String::new())) {
                    let mut split = part.clone();
                    if !value.is_empty() {
                        split.present.push(name.clone());
                    }
                    // `name=""` selects the series without the label; a series that gains it
                    // after the lookup is left out rather than breaking the order.
                    split.matchers.push(Matcher::new(MatchOp::Equal, name.clone(), value)?);
                    next.push(split);
                }
            }
            parts = next;
        }
        Ok(parts)
    }
}

impl Storage for ExternalLabels {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        if self.transparent(&req.without_replica_labels) {
            return self.inner.select(req);
        }
        let Some(matchers) = self.inner_matchers(&req.matchers) else { return Ok(SeriesSet::empty()) };
        if matchers.is_empty() {
            return Err(no_matchers_error());
        }
        let kept = self.kept(&req.without_replica_labels);
        // Labels whose series values are replaced or removed.
        let mut fixed: Vec<String> = self.labels.iter().map(|(n, _)| n.to_owned()).collect();
        fixed.extend(req.without_replica_labels.iter().cloned());
        fixed.sort();
        fixed.dedup();
        let max_kept = kept.iter().last().map(|(n, _)| n.to_owned());
        let mut sets = Vec::new();
        for part in self.parts(matchers, &fixed, req)? {
            let sort = part.present.iter().any(|n| max_kept.as_ref().is_none_or(|m| n > m));
            // Shard and limit apply to the labels served, so after the labels change.
            let inner_req = SelectRequest {
                matchers: part.matchers,
                shard: None,
                limit: 0,
                without_replica_labels: Vec::new(),
                ..req.clone()
            };
            let set = self.inner.select(&inner_req)?;
            let warnings = set.warnings_handle();
            let relabel = Relabel::new(set, fixed.clone(), kept.clone(), sort);
            sets.push(SeriesSet::with_warnings(relabel, warnings));
        }
        let merged = merge_sorted_sets(sets);
        let warnings = merged.warnings_handle();
        let shard = req.shard.clone().filter(|s| s.total_shards > 0);
        let limit = if req.limit == 0 { usize::MAX } else { req.limit };
        let series = merged
            .filter(move |s| match (s, &shard) {
                (Ok(s), Some(shard)) => shard.matches(&s.labels),
                _ => true,
            })
            .take(limit);
        Ok(SeriesSet::with_warnings(series, warnings))
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        if self.transparent(&req.without_replica_labels) {
            return self.inner.label_names(req);
        }
        let Some(matchers) = self.inner_matchers(&req.matchers) else { return Ok(LabelsAnswer::default()) };
        let inner = self.inner.label_names(&LabelsRequest {
            matchers,
            limit: 0,
            without_replica_labels: Vec::new(),
            ..req.clone()
        })?;
        let mut names = inner.values;
        // As Thanos: the external names only where the store has series.
        if !names.is_empty() {
            names.extend(self.labels.iter().map(|(n, _)| n.to_owned()));
        }
        names.retain(|n| !req.without_replica_labels.contains(n));
        names.sort();
        names.dedup();
        req.truncate(&mut names);
        Ok(LabelsAnswer { values: names, warnings: inner.warnings })
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        if self.transparent(&req.without_replica_labels) {
            return self.inner.label_values(name, req);
        }
        if req.without_replica_labels.iter().any(|w| w == name) {
            return Ok(LabelsAnswer::default());
        }
        let Some(matchers) = self.inner_matchers(&req.matchers) else { return Ok(LabelsAnswer::default()) };
        if let Some(value) = self.labels.get(name) {
            // The external value where the store has matching series. (Thanos answers it
            // without looking when no other matcher is given, even for a store without data,
            // such as a receiver's tenant that has not been written to or whose blocks
            // retention has deleted.)
            let names = self.inner.label_names(&LabelsRequest {
                matchers,
                limit: 1,
                without_replica_labels: Vec::new(),
                ..req.clone()
            })?;
            let values = if names.values.is_empty() { Vec::new() } else { vec![value.to_owned()] };
            return Ok(LabelsAnswer { values, warnings: names.warnings });
        }
        self.inner.label_values(name, &LabelsRequest { matchers, without_replica_labels: Vec::new(), ..req.clone() })
    }
}

/// One part of a read: its matchers, and the names among those split by that the part's series
/// carry.
#[derive(Clone)]
struct Part {
    matchers: Vec<Matcher>,
    present: Vec<String>,
}

/// One part of a read (see the module documentation): removes the `fixed` labels, adds `kept`,
/// and restores the order with a stack of held-back series, or by sorting the whole part.
struct Relabel {
    inner: SeriesSet,
    fixed: Vec<String>,
    kept: Labels,
    /// The greatest name in `kept`.
    max_name: Option<String>,
    /// Held-back series, each a prefix of the one above it: (its inner labels, the series as
    /// served).
    held: Vec<(Labels, SeriesChunks)>,
    ready: VecDeque<SeriesChunks>,
    /// Read the part whole and sort it.
    sort: bool,
    ended: bool,
}

impl Relabel {
    fn new(inner: SeriesSet, fixed: Vec<String>, kept: Labels, sort: bool) -> Self {
        let max_name = kept.iter().last().map(|(n, _)| n.to_owned());
        Relabel { inner, fixed, kept, max_name, held: Vec::new(), ready: VecDeque::new(), sort, ended: false }
    }

    /// Whether `b` extends `a` (a proper prefix) with a next label named below M.
    fn extends_below(&self, a: &Labels, b: &Labels) -> bool {
        let Some(max) = &self.max_name else { return false };
        let mut bi = b.iter();
        for pair in a.iter() {
            if bi.next() != Some(pair) {
                return false;
            }
        }
        bi.next().is_some_and(|(n, _)| n < max.as_str())
    }

    /// Whether a series with `labels` must wait for its extensions: all its names are below M.
    fn holds(&self, labels: &Labels) -> bool {
        let Some(max) = &self.max_name else { return false };
        labels.iter().last().is_none_or(|(n, _)| n < max.as_str())
    }

    fn take(&mut self, s: SeriesChunks) {
        let is_fixed = |n: &str| self.fixed.iter().any(|f| f == n);
        // Most series carry no label named like an external or removed one: theirs are kept.
        let inner = if s.labels.iter().any(|(n, _)| is_fixed(n)) {
            Labels::from_sorted_unchecked(s.labels.iter().filter(|(n, _)| !is_fixed(n)))
        } else {
            s.labels
        };
        if self.sort {
            self.ready.push_back(SeriesChunks { labels: merge_labels(&inner, &self.kept), chunks: s.chunks });
            return;
        }
        while let Some((top, _)) = self.held.last() {
            if self.extends_below(top, &inner) {
                break;
            }
            if let Some((_, served)) = self.held.pop() {
                self.ready.push_back(served);
            }
        }
        let served = SeriesChunks { labels: merge_labels(&inner, &self.kept), chunks: s.chunks };
        if self.holds(&inner) {
            self.held.push((inner, served));
        } else {
            self.ready.push_back(served);
        }
    }
}

impl Iterator for Relabel {
    type Item = Result<SeriesChunks, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.ended || !self.sort {
                if let Some(s) = self.ready.pop_front() {
                    return Some(Ok(s));
                }
            }
            if self.ended {
                return self.held.pop().map(|(_, s)| Ok(s));
            }
            match self.inner.next() {
                Some(Ok(s)) => self.take(s),
                Some(Err(e)) => {
                    self.ended = true;
                    self.held.clear();
                    self.ready.clear();
                    return Some(Err(e));
                }
                None => {
                    self.ended = true;
                    if self.sort {
                        self.ready.make_contiguous().sort_by(|a, b| a.labels.cmp(&b.labels));
                    }
                }
            }
        }
    }
}

/// The union of two label sets with distinct names, sorted.
fn merge_labels(a: &Labels, b: &Labels) -> Labels {
    let (mut ai, mut bi) = (a.iter().peekable(), b.iter().peekable());
    let merged = std::iter::from_fn(move || match (ai.peek(), bi.peek()) {
        (Some(x), Some(y)) if x.0 < y.0 => ai.next(),
        (Some(_), Some(_)) => bi.next(),
        (Some(_), None) => ai.next(),
        (None, _) => bi.next(),
    });
    Labels::from_sorted_unchecked(merged)
}
