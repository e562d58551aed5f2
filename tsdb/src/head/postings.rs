//! In-memory postings: for every label pair, the sorted refs of the head series that carry it.

use std::collections::HashMap;

use crate::wal::SeriesRef;

/// Label name → label value → sorted series refs. The empty pair `("", "")` is not stored; all
/// series are enumerated from the series maps instead.
#[derive(Default)]
pub struct MemPostings {
    by_name: HashMap<Box<str>, HashMap<Box<str>, Vec<SeriesRef>>>,
}

impl MemPostings {
    /// Adds `series_ref` to the list of every pair. Refs are allocated in increasing order but
    /// may arrive slightly out of order from concurrent appenders, so insertion keeps the list
    /// sorted (almost always an append at the end).
    pub fn add<'a>(&mut self, series_ref: SeriesRef, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
        for (name, value) in pairs {
            let values = match self.by_name.get_mut(name) {
                Some(v) => v,
                None => self.by_name.entry(name.into()).or_default(),
            };
            let list = match values.get_mut(value) {
                Some(l) => l,
                None => values.entry(value.into()).or_default(),
            };
            match list.last() {
                Some(&last) if last > series_ref => {
                    let at = list.partition_point(|&r| r < series_ref);
                    list.insert(at, series_ref);
                }
                _ => list.push(series_ref),
            }
        }
    }

    /// Removes `series_ref` from the list of every pair, dropping lists and names left empty.
    pub fn remove<'a>(&mut self, series_ref: SeriesRef, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
        for (name, value) in pairs {
            let Some(values) = self.by_name.get_mut(name) else { continue };
            if let Some(list) = values.get_mut(value) {
                if let Ok(at) = list.binary_search(&series_ref) {
                    list.remove(at);
                }
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
    pub fn get(&self, name: &str, value: &str) -> &[SeriesRef] {
        self.by_name.get(name).and_then(|v| v.get(value)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every value of `name` with its postings.
    pub fn values(&self, name: &str) -> impl Iterator<Item = (&str, &[SeriesRef])> {
        self.by_name.get(name).into_iter().flat_map(|m| m.iter().map(|(v, l)| (&**v, l.as_slice())))
    }

    /// Every label name with its values.
    pub fn names(&self) -> impl Iterator<Item = (&str, &HashMap<Box<str>, Vec<SeriesRef>>)> {
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
            .map(|(n, m)| n.len() + 48 + m.iter().map(|(v, l)| v.len() + 48 + l.capacity() * 8).sum::<usize>())
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
        assert_eq!(p.get("b", "3"), &[] as &[u64]);
        assert_eq!(p.num_pairs(), 2);
        p.remove(1, [("a", "1"), ("b", "2")].into_iter());
        assert_eq!(p.get("a", "1"), &[2, 3]);
        assert_eq!(p.num_pairs(), 1);
        assert!(p.values("b").next().is_none());
    }
}
