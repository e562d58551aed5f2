//! A downsampled block (meta.json `thanos.downsample.resolution` 300000, chunks in Thanos's
//! aggregate encoding 0xFF) opens and reads back exactly, and its chunks read as Thanos's
//! querier reads them.

use bytes::Bytes;
use strata_tsdb::block::meta::{BlockMeta, ThanosDownsample, ThanosMeta};
use strata_tsdb::block::{Block, BlockCompaction, BlockWriter, ChunkData};
use strata_tsdb::chunkenc::{AggrChunk, AggrType, Encoding, SubChunk, XorAppender};
use strata_tsdb::downsample::{for_each_sample, AggrView};
use strata_tsdb::matchers::{MatchOp, Matcher};
use strata_tsdb::Labels;
use ulid::Ulid;

const RES: i64 = 300_000;

fn xor(samples: impl IntoIterator<Item = (i64, f64)>) -> SubChunk {
    let mut app = XorAppender::new();
    for (t, v) in samples {
        app.append(t, v);
    }
    SubChunk { encoding: Encoding::Xor, data: Bytes::from(app.into_bytes()) }
}

/// A 5m chunk of `windows` windows from `start` (window ends `start + k*RES - 1`), of a counter
/// growing by one per raw minute sample: count 5, sum, min, max, counter with the first and last
/// raw values as Thanos writes them.
fn chunk(start: i64, windows: i64) -> ChunkData {
    let ends: Vec<i64> = (1..=windows).map(|k| start + k * RES - 1).collect();
    let raw_at = |t: i64| (t / 60_000) as f64;
    let last_raw = start + windows * RES - 60_000;
    let mut c = AggrChunk::default();
    c.set(AggrType::Count, Some(xor(ends.iter().map(|&e| (e, 5.0)))));
    c.set(AggrType::Sum, Some(xor(ends.iter().map(|&e| (e, (0..5).map(|i| raw_at(e + 1 - RES + i * 60_000)).sum())))));
    c.set(AggrType::Min, Some(xor(ends.iter().map(|&e| (e, raw_at(e + 1 - RES))))));
    c.set(AggrType::Max, Some(xor(ends.iter().map(|&e| (e, raw_at(e + 1 - 60_000))))));
    let counter = std::iter::once((start, raw_at(start)))
        .chain(ends.iter().map(|&e| (e.min(last_raw), raw_at(e + 1 - 60_000))))
        .chain(std::iter::once((ends[ends.len() - 1].min(last_raw), raw_at(last_raw))));
    c.set(AggrType::Counter, Some(xor(counter)));
    ChunkData {
        min_time: start,
        max_time: ends[ends.len() - 1],
        encoding: Encoding::Aggr,
        data: Bytes::from(c.encode()),
    }
}

#[test]
fn downsampled_block_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let id = Ulid::new();
    let labels = Labels::from_pairs(&[("__name__", "requests_total"), ("job", "api")]);
    let chunks = vec![chunk(0, 12), chunk(12 * RES, 12)];
    let mut w = BlockWriter::new(dir.path(), id).unwrap();
    w.add_symbols(["__name__", "api", "job", "requests_total"]).unwrap();
    w.add_series(&labels, &chunks).unwrap();
    let meta =
        w.finish(0, 24 * RES, BlockCompaction { level: 1, sources: vec![id], ..BlockCompaction::default() }).unwrap();
    assert_eq!(meta.stats.num_samples, 24, "a downsampled chunk counts its windows");
    let block_dir = dir.path().join(id.to_string());
    let mut meta = BlockMeta::read(&block_dir).unwrap();
    meta.thanos = Some(ThanosMeta {
        downsample: ThanosDownsample { resolution: RES },
        source: "compactor".into(),
        ..ThanosMeta::default()
    });
    meta.write(&block_dir).unwrap();

    let block = Block::open(&block_dir).unwrap();
    assert_eq!(block.meta().thanos.as_ref().unwrap().downsample.resolution, RES);
    let m = Matcher::new(MatchOp::Equal, "job", "api").unwrap();
    let got = block.select(&[m], 0, i64::MAX).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels, labels);
    assert_eq!(got[0].chunks, chunks, "chunks come back byte for byte, encoding 0xFF");

    // The counter reads back as the raw counter at the window ends, continuous across chunks.
    let mut counter = Vec::new();
    for_each_sample(&got[0], AggrView::One(AggrType::Counter), |t, v| counter.push((t, v))).unwrap();
    assert_eq!(counter.first(), Some(&(0, 0.0)));
    assert!(counter.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{counter:?}");
    assert_eq!(counter.last(), Some(&(24 * RES - 60_000, 119.0)));
    let mut avg = Vec::new();
    for_each_sample(&got[0], AggrView::Average, |t, v| avg.push((t, v))).unwrap();
    assert_eq!(avg[0], (RES - 1, 2.0));
    assert_eq!(avg.len(), 24);
}
