//! Blocks for the bucket tests: written with `BlockWriter` and shipped with the strata shipper.

use std::path::Path;

use strata_tsdb::block::{BlockCompaction, BlockWriter, ChunkData};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::Labels;

/// A series with its samples at absolute times.
pub type Series = (Labels, Vec<(i64, f64)>);

/// Writes `series` as one level-1 block under `dir` with `BlockWriter`, in chunks of 120
/// samples; returns the block's ULID.
pub fn write_block(dir: &Path, series: &[Series]) -> strata_tsdb::Result<ulid::Ulid> {
    let mut sorted: Vec<&Series> = series.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let id = ulid::Ulid::new();
    let mut w = BlockWriter::new(dir, id)?;
    let mut symbols: Vec<&str> = sorted.iter().flat_map(|(l, _)| l.iter().flat_map(|(n, v)| [n, v])).collect();
    symbols.sort_unstable();
    symbols.dedup();
    w.add_symbols(symbols)?;
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for (labels, samples) in sorted {
        let chunks: Vec<ChunkData> = samples
            .chunks(120)
            .map(|part| {
                let mut app = XorAppender::new();
                for &(t, v) in part {
                    app.append(t, v);
                }
                ChunkData {
                    min_time: part[0].0,
                    max_time: part[part.len() - 1].0,
                    encoding: Encoding::Xor,
                    data: bytes::Bytes::from(app.into_bytes()),
                }
            })
            .collect();
        min = min.min(samples[0].0);
        max = max.max(samples[samples.len() - 1].0);
        w.add_series(labels, &chunks)?;
    }
    w.finish(min, max + 1, BlockCompaction { level: 1, sources: vec![id], ..BlockCompaction::default() })?;
    Ok(id)
}

/// Uploads the blocks in `dir` to the bucket with the strata shipper, as `labels`' stream; fails
/// when nothing was uploaded.
pub fn ship(
    rt: &tokio::runtime::Runtime,
    bucket: &strata_shipper::Bucket,
    dir: &Path,
    labels: &[(&str, &str)],
) -> Result<(), String> {
    let labels = labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let shipper = strata_shipper::Shipper::new(bucket.clone(), dir, labels, "receive")
        .map_err(|e| format!("shipper over {}: {e}", dir.display()))?;
    let stats = rt.block_on(shipper.sync()).map_err(|e| format!("ship blocks of {}: {e}", dir.display()))?;
    if stats.uploaded == 0 {
        return Err(format!("nothing shipped from {}", dir.display()));
    }
    Ok(())
}
