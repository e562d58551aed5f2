//! Reading the head: postings for matchers, series selection, label names and values.

use crate::block::SeriesChunks;
use crate::matchers::Matcher;
use crate::postings::{postings_for_matchers, PostingsSource};
use crate::Result;

use super::Head;

impl PostingsSource for Head {
    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>> {
        Ok(self.postings().get(name, value))
    }

    fn all_postings(&self) -> Result<Vec<u64>> {
        let mut refs: Vec<u64> =
            self.ref_stripes.iter().flat_map(|s| s.read().keys().copied().collect::<Vec<_>>()).collect();
        refs.sort_unstable();
        Ok(refs)
    }

    fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let mut v: Vec<String> = self.postings().values(name).map(|(v, _)| v.to_owned()).collect();
        v.sort_unstable();
        Ok(v)
    }
}

impl Head {
    /// Series matching every matcher with chunks overlapping `[mint, maxt]`, sorted by labels,
    /// with copies of those chunks (none with `skip_chunks`). A snapshot: appends and
    /// truncations after the call do not change it.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64, skip_chunks: bool) -> Result<Vec<SeriesChunks>> {
        let refs = postings_for_matchers(self, matchers)?;
        let mut out: Vec<SeriesChunks> = refs
            .into_iter()
            .filter_map(|r| self.series_by_ref(r))
            .filter_map(|s| {
                let chunks = if skip_chunks {
                    self.has_chunk_in(&s, mint, maxt).then(Vec::new)?
                } else {
                    Some(self.chunks_in(&s, mint, maxt)).filter(|c| !c.is_empty())?
                };
                Some(SeriesChunks { labels: s.labels.to_labels(), chunks })
            })
            .collect();
        // Label sets are unique in the head, so an unstable sort gives the one order.
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Label names of the series matching `matchers` (all names when there are none), sorted.
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        let mut names: Vec<String> = if matchers.is_empty() {
            self.postings().names().map(|(n, _)| n.to_owned()).collect()
        } else {
            let mut set = std::collections::BTreeSet::new();
            for r in postings_for_matchers(self, matchers)? {
                if let Some(s) = self.series_by_ref(r) {
                    set.extend(s.labels.iter().map(|(n, _)| n.to_owned()));
                }
            }
            set.into_iter().collect()
        };
        names.sort_unstable();
        Ok(names)
    }

    /// Values of label `name` among the series matching `matchers`, sorted.
    pub fn label_values_matching(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        if matchers.is_empty() {
            return PostingsSource::label_values(self, name);
        }
        let mut set = std::collections::BTreeSet::new();
        for r in postings_for_matchers(self, matchers)? {
            if let Some(v) = self.series_by_ref(r).and_then(|s| s.labels.get(name).map(str::to_owned)) {
                set.insert(v);
            }
        }
        Ok(set.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::head::{Head, HeadOptions};
    use crate::matchers::{MatchOp, Matcher};

    #[test]
    fn select_by_matchers() {
        let head = Head::new(HeadOptions::default());
        let mut app = head.appender();
        for (name, job) in [("up", "a"), ("up", "b"), ("down", "a")] {
            app.append(&[("__name__", name), ("job", job)], [(1000, 1.0)]).unwrap();
        }
        app.commit(None).unwrap();
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
        let got = head.select(&[m(MatchOp::Equal, "__name__", "up")], 0, 2000, false).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|s| s.chunks.len() == 1));
        let labels_only = head.select(&[m(MatchOp::Equal, "__name__", "up")], 0, 2000, true).unwrap();
        assert_eq!(
            labels_only.iter().map(|s| (&s.labels, s.chunks.len())).collect::<Vec<_>>(),
            [(&got[0].labels, 0), (&got[1].labels, 0)]
        );
        assert!(got[0].labels < got[1].labels);
        let got = head
            .select(&[m(MatchOp::Regex, "job", "a"), m(MatchOp::NotEqual, "__name__", "up")], 0, 2000, false)
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels.metric_name(), Some("down"));
        assert!(
            head.select(&[m(MatchOp::Equal, "job", "a")], 2000, 3000, true).unwrap().is_empty(),
            "outside the time range"
        );
        assert_eq!(head.label_names(&[]).unwrap(), ["__name__", "job"]);
        assert_eq!(head.label_values_matching("job", &[m(MatchOp::Equal, "__name__", "down")]).unwrap(), ["a"]);
    }
}
