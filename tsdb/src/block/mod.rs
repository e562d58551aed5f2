//! Persistent blocks: chunk segments, meta.json, tombstones, and reading blocks back.
pub mod meta;
