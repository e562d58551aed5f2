//! Batched appends: check every sample, write the batch to the WAL, then apply it to memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{AppendResult, Head, MemSeries};
use crate::labels::{Labels, LabelsError};
use crate::wal::{record, RefSample, RefSeries, Wal};

/// Samples refused by an append, by reason, with the first refusal described.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejections {
    pub out_of_order: u64,
    pub duplicate_timestamp: u64,
    pub out_of_bounds: u64,
    /// The first refused sample, described for the error message sent back to the client.
    pub first: Option<String>,
}

impl Rejections {
    pub fn total(&self) -> u64 {
        self.out_of_order + self.duplicate_timestamp + self.out_of_bounds
    }

    fn note(&mut self, why: &str, labels: &dyn std::fmt::Display, t: i64) {
        if self.first.is_none() {
            self.first = Some(format!("{why} for series {labels} at timestamp {t}"));
        }
    }
}

/// What a commit did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    pub appended: u64,
    pub series_created: u64,
    pub rejected: Rejections,
}

/// A batch of appends to one head. Nothing is visible or durable until [`HeadAppender::commit`].
pub struct HeadAppender<'h> {
    head: &'h Head,
    min_valid_time: i64,
    /// Series touched by this batch with the range of `samples` that belongs to each.
    series: Vec<(Arc<MemSeries>, usize, usize)>,
    samples: Vec<RefSample>,
    series_created: u64,
    rejected: Rejections,
}

impl<'h> HeadAppender<'h> {
    pub(super) fn new(head: &'h Head) -> Self {
        HeadAppender {
            head,
            min_valid_time: head.min_valid_time(),
            series: Vec::new(),
            samples: Vec::new(),
            series_created: 0,
            rejected: Rejections::default(),
        }
    }

    /// Adds the samples of one series, given as its label pairs in wire order. The pairs are
    /// validated (sorted, no empty or repeated names); an invalid set is refused whole and
    /// nothing of it is appended. Samples the head would refuse are counted in the outcome.
    pub fn append(
        &mut self,
        pairs: &[(&str, &str)],
        samples: impl IntoIterator<Item = (i64, f64)>,
    ) -> Result<(), LabelsError> {
        Labels::validate_pairs(pairs)?;
        let (series, created) = self.head.get_or_create(pairs);
        self.series_created += u64::from(created);
        let mut last = self.head.last_sample(&series);
        let start = self.samples.len();
        for (t, v) in samples {
            if t < self.min_valid_time {
                self.rejected.out_of_bounds += 1;
                self.rejected.note("out of bounds", &series.labels, t);
                continue;
            }
            match MemSeries::check(last, t, v) {
                None => {
                    self.samples.push(RefSample { series_ref: series.series_ref, t, v });
                    last = Some((t, v.to_bits()));
                }
                Some(AppendResult::Duplicate) => {}
                Some(AppendResult::OutOfOrder) => {
                    self.rejected.out_of_order += 1;
                    self.rejected.note("out of order sample", &series.labels, t);
                }
                Some(_) => {
                    self.rejected.duplicate_timestamp += 1;
                    self.rejected.note("duplicate sample for timestamp", &series.labels, t);
                }
            }
        }
        let end = self.samples.len();
        // Every series is kept, samples or not: `release` must undo the pending mark.
        self.series.push((series, start, end));
        Ok(())
    }

    /// Writes the batch to the WAL (when given) and then applies it to the head. Returns after
    /// the WAL write, so a caller that acknowledges after `commit` acknowledges durable data.
    pub fn commit(mut self, wal: Option<&Wal>) -> crate::Result<AppendOutcome> {
        if let Some(wal) = wal {
            self.log(wal)?;
        }
        let head = self.head;
        let mut results = Vec::with_capacity(self.samples.len());
        for (series, start, end) in &self.series {
            for s in &self.samples[*start..*end] {
                let r = series.append(s.t, s.v, head);
                // A concurrent batch may have appended newer samples to the same series since
                // `append` checked, or a block cut may have raised the floor; those refusals are
                // reported like any other.
                match r {
                    AppendResult::OutOfBounds => {
                        self.rejected.out_of_bounds += 1;
                        self.rejected.note("out of bounds", &series.labels, s.t);
                    }
                    AppendResult::OutOfOrder => {
                        self.rejected.out_of_order += 1;
                        self.rejected.note("out of order sample", &series.labels, s.t);
                    }
                    AppendResult::DuplicateTimestamp => {
                        self.rejected.duplicate_timestamp += 1;
                        self.rejected.note("duplicate sample for timestamp", &series.labels, s.t);
                    }
                    _ => {}
                }
                results.push((r, s.t));
            }
        }
        head.account(&results);
        let r = &self.rejected;
        head.stats.out_of_bounds.fetch_add(r.out_of_bounds, Ordering::Relaxed);
        head.stats.out_of_order.fetch_add(r.out_of_order, Ordering::Relaxed);
        head.stats.duplicate.fetch_add(r.duplicate_timestamp, Ordering::Relaxed);
        let appended = results.iter().filter(|(r, _)| matches!(r, AppendResult::Appended { .. })).count() as u64;
        Ok(AppendOutcome {
            appended,
            series_created: self.series_created,
            rejected: std::mem::take(&mut self.rejected),
        })
    }

    fn log(&mut self, wal: &Wal) -> crate::Result<()> {
        // Series without samples need no record: they are released untouched (and collected
        // by the next truncation if nothing else writes to them).
        let new_series: Vec<RefSeries> = self
            .series
            .iter()
            .filter(|(s, start, end)| end > start && !s.wal_logged.load(Ordering::Acquire))
            .map(|(s, _, _)| RefSeries { series_ref: s.series_ref, labels: s.labels.to_labels() })
            .collect();
        if new_series.is_empty() && self.samples.is_empty() {
            return Ok(());
        }
        let mut series_rec = Vec::new();
        let mut samples_rec = Vec::new();
        let mut recs: Vec<&[u8]> = Vec::with_capacity(2);
        if !new_series.is_empty() {
            record::encode_series(&new_series, &mut series_rec);
            recs.push(&series_rec);
        }
        if !self.samples.is_empty() {
            record::encode_samples(&self.samples, &mut samples_rec);
            recs.push(&samples_rec);
        }
        wal.log(&recs)?;
        for (s, start, end) in &self.series {
            if end > start {
                s.wal_logged.store(true, Ordering::Release);
            }
        }
        Ok(())
    }
}

impl Drop for HeadAppender<'_> {
    /// Releases the series this batch held, committed or not.
    fn drop(&mut self) {
        for (s, _, _) in &self.series {
            s.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
