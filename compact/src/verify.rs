//! Index verification as Thanos's `block.VerifyIndex` (`GatherIndexHealthStats`): before a
//! block is merged, and before a merged block is uploaded, its index must be sound: postings
//! sorted and naming series that exist, series in strictly increasing label order with sorted,
//! distinct label names, every series with chunks, chunks in order without overlap and inside
//! the block's time range, every chunk readable.

use std::path::Path;

use strata_tsdb::block::Block;
use strata_tsdb::postings::PostingsSource;

/// What is wrong with a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    /// Chunks of a series out of order or overlapping (Thanos's `OutOfOrderChunksErr`); such a
    /// block can be skipped with `--compact.skip-block-with-out-of-order-chunks`.
    OutOfOrderChunks(String),
    /// Anything else: the block cannot be read or breaks the format.
    Corrupt(String),
}

impl Issue {
    pub fn reason(&self) -> &str {
        match self {
            Issue::OutOfOrderChunks(r) | Issue::Corrupt(r) => r,
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// What a sound block holds, for the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub series: u64,
    pub chunks: u64,
}

/// Opens the block in `dir` and checks its index and chunk references.
pub fn verify_block(dir: &Path) -> Result<IndexStats, Issue> {
    let block = Block::open(dir).map_err(|e| Issue::Corrupt(format!("open: {e}")))?;
    let (min_time, max_time) = (block.meta().min_time, block.meta().max_time);
    let index = block.index();
    let corrupt = |e: strata_tsdb::Error| Issue::Corrupt(e.to_string());

    let all = index.all_postings().map_err(corrupt)?;
    if let Some(w) = all.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Issue::Corrupt(format!("all-postings list not strictly increasing at series ref {}", w[1])));
    }
    for name in index.label_names().map_err(corrupt)? {
        for value in index.label_values(&name).map_err(corrupt)? {
            let list = index.postings(&name, &value).map_err(corrupt)?;
            if list.is_empty() {
                return Err(Issue::Corrupt(format!("postings list of {name}={value:?} is empty")));
            }
            if list.windows(2).any(|w| w[0] >= w[1]) {
                return Err(Issue::Corrupt(format!("postings list of {name}={value:?} not strictly increasing")));
            }
            if let Some(r) = list.iter().find(|r| all.binary_search(r).is_err()) {
                return Err(Issue::Corrupt(format!(
                    "postings list of {name}={value:?} names series ref {r}, which is not a series"
                )));
            }
        }
    }

    let mut stats = IndexStats::default();
    let mut previous = None;
    let mut metas = Vec::new();
    for &r in &all {
        let labels = index.series(r, &mut metas).map_err(corrupt)?;
        let mut last_name: Option<&str> = None;
        for (name, _) in labels.iter() {
            if last_name.is_some_and(|l| l >= name) {
                return Err(Issue::Corrupt(format!(
                    "series {labels:?}: label names not sorted or repeated at {name:?}"
                )));
            }
            last_name = Some(name);
        }
        if labels.is_empty() {
            return Err(Issue::Corrupt(format!("series ref {r} has no labels")));
        }
        if previous.as_ref().is_some_and(|p| p >= &labels) {
            return Err(Issue::Corrupt(format!("series {labels:?} out of order (after {previous:?})")));
        }
        if metas.is_empty() {
            return Err(Issue::Corrupt(format!("series {labels:?} has no chunks")));
        }
        for (i, c) in metas.iter().enumerate() {
            if c.min_time > c.max_time {
                return Err(Issue::Corrupt(format!(
                    "series {labels:?}: chunk with min time {} after max time {}",
                    c.min_time, c.max_time
                )));
            }
            // Thanos's bounds: a chunk may end at the block's (exclusive) max time.
            if c.min_time < min_time || c.max_time > max_time {
                return Err(Issue::Corrupt(format!(
                    "series {labels:?}: chunk [{}, {}] outside the block's range [{min_time}, {max_time})",
                    c.min_time, c.max_time
                )));
            }
            if i > 0 && c.min_time <= metas[i - 1].max_time {
                return Err(Issue::OutOfOrderChunks(format!(
                    "series {labels:?}: chunk [{}, {}] out of order or overlapping the previous one ending at {}",
                    c.min_time,
                    c.max_time,
                    metas[i - 1].max_time
                )));
            }
            block.chunks().chunk(c.chunk_ref).map_err(corrupt)?;
        }
        stats.series += 1;
        stats.chunks += metas.len() as u64;
        previous = Some(labels);
    }
    Ok(stats)
}
