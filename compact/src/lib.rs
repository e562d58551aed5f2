//! The compactor (`strata compact`), Thanos's compactor over a bucket: blocks grouped by
//! external labels and resolution, planned into 8h, 2d and 14d blocks, merged (vertically,
//! across replicas, when replica labels are given), uploaded with the `thanos` section, their
//! inputs marked for deletion; retention per resolution; deletion of marked blocks after the
//! delete delay and of abandoned partial uploads; raw blocks downsampled to 5m and 5m blocks to
//! 1h, as Thanos's compactor does after compacting; the bucket page (`web`).

pub mod clean;
pub mod compactor;
mod downsample;
pub mod error;
pub mod group;
pub mod metrics;
pub mod planner;
pub mod tools;
pub mod verify;
pub mod web;

pub use clean::Retention;
pub use compactor::{Compactor, CompactorOptions, CORRUPT_BLOCK_REASON};
pub use error::{Error, Result};
pub use metrics::{CompactMetrics, ReplicateMetrics};

/// A meta with a time range and no Thanos section, for unit tests.
#[cfg(test)]
pub(crate) fn test_meta(id: u128, min_time: i64, max_time: i64) -> strata_tsdb::block::meta::BlockMeta {
    use strata_tsdb::block::meta::{BlockCompaction, BlockMeta, BlockStats, META_VERSION};
    BlockMeta {
        ulid: ulid::Ulid(id),
        min_time,
        max_time,
        stats: BlockStats::default(),
        compaction: BlockCompaction { level: 1, sources: vec![ulid::Ulid(id)], ..BlockCompaction::default() },
        version: META_VERSION,
        thanos: None,
    }
}
