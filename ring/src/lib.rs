//! The receive hashring, routing exactly as Thanos v0.42 does, so that a fleet mixing Thanos and
//! strata receivers agrees on where every series lives.
//!
//! - [`config`]: `hashrings.json` as Thanos reads it.
//! - [`Ring`]: the hashrings of one configuration (hashmod, ketama, shuffle sharding) and the
//!   tenant matching between them; [`Ring::tenant`] resolves a tenant once, then
//!   [`TenantRing::get_n`] places each series by its [`series_hash`].
//! - [`RingWatcher`]: loads the configuration from a file (re-read on change) or a string and
//!   swaps the ring atomically; an invalid file keeps the ring in use.

pub mod config;
mod glob;
mod gojson;
mod gorand;
mod hash;
mod metrics;
mod ring;
mod watcher;

use std::path::PathBuf;

pub use config::{Endpoint, HashringConfig, ShuffleShardingConfig, ShuffleShardingOverride};
pub use hash::series_hash;
pub use metrics::RingMetrics;
pub use ring::{
    shuffle_shard_seed, Algorithm, EndpointShare, Hashring, Ring, RingOptions, TenantRing, MAX_ENDPOINTS_PER_HASHRING,
    SECTIONS_PER_NODE,
};
pub use watcher::{RingHandle, RingSource, RingWatcher};

/// What can go wrong reading a configuration, building a ring or routing a series. The messages
/// of the errors Thanos has are Thanos's, word for word: a router's answer names the same cause
/// whichever implementation gave it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read configuration file {}: larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("failed to parse configuration file: {0}: configuration file is not parsable")]
    Parse(String),
    #[error("failed to load configuration file, path: {}: configuration file is empty", path.display())]
    Empty { path: PathBuf },
    #[error("unknown hashring algorithm {0:?}: must be one of hashmod, ketama")]
    UnknownAlgorithm(String),
    #[error("the replication factor must be at least 1")]
    ZeroReplicationFactor,
    #[error("hashring {hashring:?} has {count} endpoints; at most {limit} are supported")]
    TooManyEndpoints { hashring: String, count: usize, limit: usize },
    #[error(
        "Hashmod algorithm does not support AZ aware hashring configuration. Either use Ketama or remove AZ configuration."
    )]
    HashmodAz,
    #[error(
        "hashmod algorithm does not support shuffle sharding. Either use Ketama or remove shuffle sharding configuration"
    )]
    HashmodShuffleSharding,
    #[error("ketama: amount of endpoints needs to be larger than replication factor")]
    KetamaTooFewEndpoints,
    /// Thanos never finishes building such a ring: its placement loop spins forever.
    #[error(
        "ketama: {replication_factor} replicas cannot be spread evenly over the availability zones of the endpoints \
         (add endpoints to the smaller zones or lower the replication factor)"
    )]
    ReplicasUnplaceable { replication_factor: u64 },
    #[error("shard size {shard_size} is larger than number of nodes in hashring {hashring} ({nodes})")]
    ShardSizeTooLarge { shard_size: i64, hashring: String, nodes: usize },
    #[error("shard size {shard_size} is larger than number of nodes in AZ {az} ({nodes})")]
    ShardSizeExceedsAz { shard_size: i64, az: String, nodes: usize },
    #[error("insufficient nodes; have {have}, want {want}")]
    InsufficientNodes { have: u64, want: u64 },
    /// Thanos indexes past the replica list here and panics.
    #[error("replica {n} is beyond the replication factor {replication_factor}")]
    ReplicaBeyondFactor { n: u64, replication_factor: u64 },
    #[error("no matching hashring to handle tenant")]
    NoMatchingHashring,
    #[error("error matching tenant pattern {pattern} (tenant {tenant}): syntax error in pattern")]
    BadTenantPattern { pattern: String, tenant: String },
}
