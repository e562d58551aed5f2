//! Reading the head: postings for matchers, series selection, label names and values.

use std::sync::Arc;

use crate::block::SeriesChunks;
use crate::matchers::Matcher;
use crate::postings::{postings_for_matchers, PostingsSource};
use crate::Result;

use super::reads::ReadGuard;
use super::{ChunkFiles, Head, MemSeries};

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

/// The head's part of a select, read series by series; see [`Head::select`].
pub struct HeadSeries {
    series: std::vec::IntoIter<Arc<MemSeries>>,
    files: Option<Arc<ChunkFiles>>,
    mint: i64,
    maxt: i64,
    skip_chunks: bool,
    /// Released at the end, so truncation need not wait for the iterator to be dropped.
    read: Option<ReadGuard>,
}

impl Iterator for HeadSeries {
    type Item = SeriesChunks;

    fn next(&mut self) -> Option<SeriesChunks> {
        let (mint, maxt) = (self.mint, self.maxt);
        for s in self.series.by_ref() {
            let chunks = if self.skip_chunks {
                if !s.has_chunk_in(mint, maxt) {
                    continue;
                }
                Vec::new()
            } else {
                let chunks = s.chunks_in(self.files.as_deref(), mint, maxt);
                if chunks.is_empty() {
                    continue;
                }
                chunks
            };
            return Some(SeriesChunks { labels: s.labels.to_labels(), chunks });
        }
        self.read = None;
        None
    }
}

impl Head {
    /// Series matching every matcher with chunks overlapping `[mint, maxt]`, sorted by labels;
    /// with `skip_chunks` their chunk lists are empty. The series are those matching at the
    /// call; each one's chunks are read when the iterator reaches it (closed chunks shared with
    /// the chunk files' maps, the open one copied), so samples appended meanwhile may show.
    /// Until the iterator ends or is dropped, truncation keeps what it reads (see
    /// [`Head::truncate`]).
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64, skip_chunks: bool) -> Result<HeadSeries> {
        // Registered before the postings are read: a truncation that starts later leaves the
        // chunks of these series alone until the read ends.
        let read = self.reads.start(mint);
        let mut series: Vec<Arc<MemSeries>> =
            postings_for_matchers(self, matchers)?.into_iter().filter_map(|r| self.series_by_ref(r)).collect();
        // Label sets are unique in the head, so an unstable sort gives the one order.
        series.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        Ok(HeadSeries {
            series: series.into_iter(),
            files: self.chunk_files.clone(),
            mint,
            maxt,
            skip_chunks,
            read: Some(read),
        })
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
        let select = |ms: &[Matcher], mint, maxt, skip| head.select(ms, mint, maxt, skip).unwrap().collect::<Vec<_>>();
        let got = select(&[m(MatchOp::Equal, "__name__", "up")], 0, 2000, false);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|s| s.chunks.len() == 1));
        let labels_only = select(&[m(MatchOp::Equal, "__name__", "up")], 0, 2000, true);
        assert_eq!(
            labels_only.iter().map(|s| (&s.labels, s.chunks.len())).collect::<Vec<_>>(),
            [(&got[0].labels, 0), (&got[1].labels, 0)]
        );
        assert!(got[0].labels < got[1].labels);
        let got = select(&[m(MatchOp::Regex, "job", "a"), m(MatchOp::NotEqual, "__name__", "up")], 0, 2000, false);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels.metric_name(), Some("down"));
        assert!(select(&[m(MatchOp::Equal, "job", "a")], 2000, 3000, true).is_empty(), "outside the time range");
        assert_eq!(head.label_names(&[]).unwrap(), ["__name__", "job"]);
        assert_eq!(head.label_values_matching("job", &[m(MatchOp::Equal, "__name__", "down")]).unwrap(), ["a"]);
    }
}
