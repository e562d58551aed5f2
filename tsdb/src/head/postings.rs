//! In-memory postings: for every label pair, the sorted refs of the head series that carry it.

use std::collections::HashMap;

use crate::wal::SeriesRef;

/// Label name → label value → sorted series refs. The empty pair `("", "")` is not stored; all
/// series are enumerated from the series maps instead.
#[derive(Default)]
pub struct MemPostings {
    by_name: HashMap<Box<str>, HashMap<Box<str>, PostingsList>>,
}

/// The sorted refs of the series with one label pair. Refs are kept as 4-byte offsets from the
/// list's first ref while they fit (a head hands out refs in order, so a list spans at most the
/// refs given out while its oldest series lives), halving the postings' share of the head.
pub struct PostingsList(Refs);

enum Refs {
    Narrow { base: SeriesRef, offsets: Vec<u32> },
    Wide(Vec<SeriesRef>),
}

impl PostingsList {
    fn new(series_ref: SeriesRef) -> Self {
        PostingsList(Refs::Narrow { base: series_ref, offsets: vec![0] })
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Refs::Narrow { offsets, .. } => offsets.len(),
            Refs::Wide(refs) => refs.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The refs, ascending.
    pub fn iter(&self) -> impl Iterator<Item = SeriesRef> + '_ {
        let (narrow, wide) = match &self.0 {
            Refs::Narrow { base, offsets } => (Some(offsets.iter().map(move |&o| base + u64::from(o))), None),
            Refs::Wide(refs) => (None, Some(refs.iter().copied())),
        };
        narrow.into_iter().flatten().chain(wide.into_iter().flatten())
    }

    /// Adds `r`, keeping the list sorted. Refs arrive in increasing order but may come slightly
    /// out of order from concurrent appenders, so this is almost always an append at the end.
    fn insert(&mut self, r: SeriesRef) {
        if let Refs::Narrow { base, offsets } = &mut self.0 {
            let top = u64::from(offsets.last().copied().unwrap_or(0));
            if r >= *base {
                if let Ok(o) = u32::try_from(r - *base) {
                    insert_sorted(offsets, o);
                    return;
                }
            } else if let Ok(shift) = u32::try_from(*base - r) {
                if top + u64::from(shift) <= u64::from(u32::MAX) {
                    offsets.iter_mut().for_each(|o| *o += shift);
                    offsets.insert(0, 0);
                    *base = r;
                    return;
                }
            }
            let wide: Vec<SeriesRef> = self.iter().collect();
            self.0 = Refs::Wide(wide);
        }
        if let Refs::Wide(refs) = &mut self.0 {
            insert_sorted(refs, r);
        }
    }

    fn remove(&mut self, r: SeriesRef) {
        match &mut self.0 {
            Refs::Narrow { base, offsets } => {
                let Some(o) = r.checked_sub(*base).and_then(|o| u32::try_from(o).ok()) else { return };
                if let Ok(at) = offsets.binary_search(&o) {
                    offsets.remove(at);
                }
            }
            Refs::Wide(refs) => {
                if let Ok(at) = refs.binary_search(&r) {
                    refs.remove(at);
                }
            }
        }
    }

    /// Heap bytes held, for memory accounting.
    fn heap_bytes(&self) -> usize {
        match &self.0 {
            Refs::Narrow { offsets, .. } => offsets.capacity() * 4,
            Refs::Wide(refs) => refs.capacity() * 8,
        }
    }
}

fn insert_sorted<T: Ord + Copy>(list: &mut Vec<T>, v: T) {
    match list.last() {
        Some(&last) if last > v => {
            let at = list.partition_point(|&x| x < v);
            list.insert(at, v);
        }
        _ => list.push(v),
    }
}

impl MemPostings {
    /// Adds `series_ref` to the list of every pair.
    pub fn add<'a>(&mut self, series_ref: SeriesRef, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
        for (name, value) in pairs {
            let values = match self.by_name.get_mut(name) {
                Some(v) => v,
                None => self.by_name.entry(name.into()).or_default(),
            };
            match values.get_mut(value) {
                Some(list) => list.insert(series_ref),
                None => {
                    values.insert(value.into(), PostingsList::new(series_ref));
                }
            }
        }
    }

    /// Removes `series_ref` from the list of every pair, dropping lists and names left empty.
    pub fn remove<'a>(&mut self, series_ref: SeriesRef, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
        for (name, value) in pairs {
            let Some(values) = self.by_name.get_mut(name) else { continue };
            if let Some(list) = values.get_mut(value) {
                list.remove(series_ref);
                if list.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    /// The refs of series with `name="value"`, sorted.
    pub fn get(&self, name: &str, value: &str) -> Vec<SeriesRef> {
        self.by_name.get(name).and_then(|v| v.get(value)).map(|l| l.iter().collect()).unwrap_or_default()
    }

    /// Every value of `name` with its postings.
    pub fn values(&self, name: &str) -> impl Iterator<Item = (&str, &PostingsList)> {
        self.by_name.get(name).into_iter().flat_map(|m| m.iter().map(|(v, l)| (&**v, l)))
    }

    /// Every label name with its values.
    pub fn names(&self) -> impl Iterator<Item = (&str, &HashMap<Box<str>, PostingsList>)> {
        self.by_name.iter().map(|(n, m)| (&**n, m))
    }

    /// Number of distinct label pairs.
    pub fn num_pairs(&self) -> usize {
        self.by_name.values().map(HashMap::len).sum()
    }

    /// Approximate heap bytes held, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.by_name
            .iter()
            .map(|(n, m)| n.len() + 48 + m.iter().map(|(v, l)| v.len() + 64 + l.heap_bytes()).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lists_sorted() {
        let mut p = MemPostings::default();
        p.add(3, [("a", "1")].into_iter());
        p.add(1, [("a", "1"), ("b", "2")].into_iter());
        p.add(2, [("a", "1")].into_iter());
        assert_eq!(p.get("a", "1"), &[1, 2, 3]);
        assert_eq!(p.get("b", "2"), &[1]);
        assert!(p.get("b", "3").is_empty());
        assert_eq!(p.num_pairs(), 2);
        p.remove(1, [("a", "1"), ("b", "2")].into_iter());
        assert_eq!(p.get("a", "1"), &[2, 3]);
        assert_eq!(p.num_pairs(), 1);
        assert!(p.values("b").next().is_none());
    }

    #[test]
    fn refs_far_apart_and_before_the_first() {
        let far = 1 << 40;
        let mut p = PostingsList::new(10);
        for r in [12, 5, 11, 7] {
            p.insert(r);
        }
        assert_eq!(p.iter().collect::<Vec<_>>(), [5, 7, 10, 11, 12]);
        assert!(matches!(p.0, Refs::Narrow { base: 5, .. }));
        p.insert(far);
        p.insert(3);
        assert_eq!(p.iter().collect::<Vec<_>>(), [3, 5, 7, 10, 11, 12, far]);
        p.remove(far);
        p.remove(5);
        p.remove(4);
        assert_eq!(p.iter().collect::<Vec<_>>(), [3, 7, 10, 11, 12]);

        // A ref so far below the first that the last no longer fits.
        let mut p = PostingsList::new(far);
        p.insert(far + u64::from(u32::MAX));
        p.insert(far - 1);
        assert_eq!(p.iter().collect::<Vec<_>>(), [far - 1, far, far + u64::from(u32::MAX)]);
        assert!(matches!(p.0, Refs::Wide(_)));
    }
}
