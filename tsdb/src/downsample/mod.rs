//! Thanos's downsampled data, both ways: [`read`] makes series of raw and [`AggrChunk`] chunks
//! into samples as Thanos's querier does; [`write`] turns a raw block into a 5m block, or a 5m
//! block into a 1h block, as Thanos's compactor does, chunk for chunk and byte for byte.
//!
//! [`AggrChunk`]: crate::chunkenc::AggrChunk

pub mod read;
pub mod write;

pub use read::{for_each_sample, AggrView, CounterResets};
pub use write::{downsample_block, RAW_DOWNSAMPLE_RANGE, RES_1H, RES_5M, RES_5M_DOWNSAMPLE_RANGE, RES_RAW};
