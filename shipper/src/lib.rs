//! Object storage for Strata: the Thanos objstore YAML mapped onto `object_store`, the shipper
//! that uploads finished TSDB blocks in the Thanos bucket layout, bucket reading for the store
//! gateway and compactor, and the `tools bucket` commands.

pub mod bucket;
pub mod config;
pub mod error;
pub mod fetch;
pub mod markers;
pub mod relabel;
pub mod shipper;
pub mod tools;

pub use bucket::{Bucket, RetryPolicy, UploadedFile};
pub use config::{parse_objstore_config, BucketConfig, Provider};
pub use error::{Error, Result};
pub use fetch::{
    deduplicate, download_block, read_block_range, resolution, FetchedMetas, FetcherMetrics, MetaFetcher, SYNCED_STATES,
};
pub use shipper::{upload_block, Shipper, ShipperMetrics, SyncStats, STATE_FILENAME};
