//! An in-memory [`Storage`] for the test scripts: float samples become XOR chunks; native
//! histogram samples become histogram-encoded chunks without content, which the engine rejects
//! when it selects them.

use std::collections::BTreeMap;

use strata_storage::{
    ChunkData, LabelsAnswer, LabelsRequest, SelectRequest, SeriesChunks, SeriesSet, Storage, StorageError,
};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::Matcher;

/// Samples per XOR chunk, as Prometheus cuts them.
const CHUNK_SAMPLES: usize = 120;

#[derive(Clone, Copy, Debug)]
pub enum Sample {
    Float(f64),
    Histogram,
}

#[derive(Default)]
pub struct MemStorage {
    series: BTreeMap<Labels, BTreeMap<i64, Sample>>,
}

impl MemStorage {
    pub fn add(&mut self, labels: Labels, t: i64, s: Sample) {
        self.series.entry(labels).or_default().insert(t, s);
    }

    pub fn clear(&mut self) {
        self.series.clear();
    }

    fn matching<'a>(
        &'a self,
        matchers: &'a [Matcher],
    ) -> impl Iterator<Item = (&'a Labels, &'a BTreeMap<i64, Sample>)> {
        self.series.iter().filter(move |(l, _)| matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
    }
}

fn chunks_of(samples: &BTreeMap<i64, Sample>, mint: i64, maxt: i64) -> Vec<ChunkData> {
    let mut out = Vec::new();
    let mut floats: Vec<(i64, f64)> = Vec::new();
    let mut hist: Vec<i64> = Vec::new();
    let flush_floats = |floats: &mut Vec<(i64, f64)>, out: &mut Vec<ChunkData>| {
        for part in floats.chunks(CHUNK_SAMPLES) {
            let mut a = XorAppender::new();
            for &(t, v) in part {
                a.append(t, v);
            }
            out.push(ChunkData {
                min_time: part[0].0,
                max_time: part[part.len() - 1].0,
                encoding: Encoding::Xor,
                data: a.bytes().to_vec().into(),
            });
        }
        floats.clear();
    };
    let flush_hist = |hist: &mut Vec<i64>, out: &mut Vec<ChunkData>| {
        if let (Some(&first), Some(&last)) = (hist.first(), hist.last()) {
            out.push(ChunkData {
                min_time: first,
                max_time: last,
                encoding: Encoding::FloatHistogram,
                data: Default::default(),
            });
        }
        hist.clear();
    };
    for (&t, s) in samples.range(mint..=maxt) {
        match s {
            Sample::Float(v) => {
                flush_hist(&mut hist, &mut out);
                floats.push((t, *v));
            }
            Sample::Histogram => {
                flush_floats(&mut floats, &mut out);
                hist.push(t);
            }
        }
    }
    flush_floats(&mut floats, &mut out);
    flush_hist(&mut hist, &mut out);
    out
}

impl Storage for MemStorage {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        let found: Vec<SeriesChunks> = self
            .matching(&req.matchers)
            .map(|(l, s)| SeriesChunks { labels: l.clone(), chunks: chunks_of(s, req.min_time, req.max_time) })
            .filter(|s| !s.chunks.is_empty())
            .collect();
        Ok(SeriesSet::from_local(found.into_iter().map(Ok), req))
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let mut names: Vec<String> = self
            .matching(&req.matchers)
            .flat_map(|(l, _)| l.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        req.truncate(&mut names);
        Ok(names.into())
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let mut values: Vec<String> =
            self.matching(&req.matchers).filter_map(|(l, _)| l.get(name).map(str::to_string)).collect();
        values.sort();
        values.dedup();
        req.truncate(&mut values);
        Ok(values.into())
    }
}
