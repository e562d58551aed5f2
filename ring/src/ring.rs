//! The rings of one configuration, placing series as Thanos v0.42 places them
//! (`pkg/receive/hashring.go`):
//!
//! - hashmod: endpoints sorted by address; replica `n` of a series with hash `h` is endpoint
//!   `(h + n) mod len`.
//! - ketama: [`SECTIONS_PER_NODE`] sections per endpoint at XXH64(`address:i`), sorted; a series
//!   goes to the first section at or after its hash (wrapping), whose replica list was walked
//!   clockwise at build time: distinct endpoints and, with several zones, no zone taking a second
//!   replica before every zone has one.
//! - shuffle sharding (ketama only): per tenant and zone, Go's `math/rand` seeded from the
//!   tenant's MD5 draws ring positions, each taking the next endpoint not yet taken; a ketama
//!   ring over the chosen endpoints (cached, LRU) places the tenant's series.
//! - several hashrings: the first whose tenants match (exact, or Go `filepath.Match` globs; no
//!   tenants matches all) takes the tenant.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use md5::{Digest, Md5};
use parking_lot::{Mutex, RwLock};

use crate::config::{Endpoint, HashringConfig, ShuffleShardingConfig};
use crate::gorand::GoRand;
use crate::hash::{section_hash, series_hash};
use crate::metrics::{CacheMetrics, RingMetrics};
use crate::{glob, Error};

/// Ketama sections per endpoint (Thanos's `SectionsPerNode`).
pub const SECTIONS_PER_NODE: usize = 1000;

/// The most endpoints one hashring may have. Thanos sets no limit; a ketama ring holds a thousand
/// sections per endpoint, so this bounds a build to ten million sections.
pub const MAX_ENDPOINTS_PER_HASHRING: usize = 10_000;

/// Tenants whose hashring is remembered; past this the memo starts over (matching is only
/// repeated, never different).
const MAX_CACHED_TENANTS: usize = 100_000;

/// Subrings a shuffle-sharded hashring keeps when its `cache_size` is zero or less.
const DEFAULT_SUBRING_CACHE_SIZE: usize = 100;

/// How a hashring places series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Thanos's flag default.
    #[default]
    Hashmod,
    Ketama,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Hashmod => "hashmod",
            Algorithm::Ketama => "ketama",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `--receive.hashrings-algorithm` flag: only the two names.
impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "hashmod" => Ok(Algorithm::Hashmod),
            "ketama" => Ok(Algorithm::Ketama),
            other => Err(Error::UnknownAlgorithm(other.to_owned())),
        }
    }
}

/// What the flags add to a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingOptions {
    /// For hashrings without `algorithm` (`--receive.hashrings-algorithm`).
    pub algorithm: Algorithm,
    /// `--receive.replication-factor`.
    pub replication_factor: u64,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions { algorithm: Algorithm::Hashmod, replication_factor: 1 }
    }
}

/// The ring of a configuration: its hashrings in order, or the single local endpoint.
pub struct Ring {
    hashrings: Vec<Hashring>,
    single: Option<Endpoint>,
    replication_factor: u64,
    /// Tenant → index in `hashrings`, so that glob patterns are tried once per tenant.
    tenant_cache: RwLock<HashMap<String, usize>>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Ring")
            .field("hashrings", &self.hashrings.iter().map(|h| &h.config.hashring).collect::<Vec<_>>())
            .field("single", &self.single)
            .field("replication_factor", &self.replication_factor)
            .finish()
    }
}

impl Ring {
    /// Builds the rings of a configuration, refusing what Thanos refuses (hashmod with zones or
    /// shuffle sharding, fewer ketama endpoints than replicas, a shard larger than its ring) and
    /// what Thanos cannot build (zones that cannot take the replicas evenly, where its build never
    /// ends). `[]` is a ring that matches no tenant, as in Thanos.
    pub fn new(configs: &[HashringConfig], options: RingOptions, metrics: &RingMetrics) -> Result<Ring, Error> {
        if options.replication_factor == 0 {
            return Err(Error::ZeroReplicationFactor);
        }
        let hashrings =
            configs.iter().map(|config| Hashring::new(config, options, metrics)).collect::<Result<Vec<_>, _>>()?;
        Ok(Ring {
            hashrings,
            single: None,
            replication_factor: options.replication_factor,
            tenant_cache: RwLock::new(HashMap::new()),
        })
    }

    /// Thanos's `SingleNodeHashring`: every series to `address`, which has no other replica.
    pub fn single_node(address: &str) -> Ring {
        Ring {
            hashrings: Vec::new(),
            single: Some(Endpoint {
                address: address.to_owned(),
                capnproto_address: address.to_owned(),
                az: String::new(),
            }),
            replication_factor: 1,
            tenant_cache: RwLock::new(HashMap::new()),
        }
    }

    pub fn hashrings(&self) -> &[Hashring] {
        &self.hashrings
    }

    /// The endpoint of a single-node ring.
    pub fn single_node_endpoint(&self) -> Option<&Endpoint> {
        self.single.as_ref()
    }

    pub fn replication_factor(&self) -> u64 {
        self.replication_factor
    }

    /// Every endpoint of every hashring, sorted by address, each once.
    pub fn endpoints(&self) -> Vec<&Endpoint> {
        let mut all: Vec<&Endpoint> =
            self.single.iter().chain(self.hashrings.iter().flat_map(|h| h.config.endpoints.iter())).collect();
        all.sort();
        all.dedup();
        all
    }

    /// Where the tenant's series go: its hashring (the first that matches) and, with shuffle
    /// sharding, its shard. Resolve once per request, then place each series.
    pub fn tenant(&self, tenant: &str) -> Result<TenantRing<'_>, Error> {
        if let Some(endpoint) = &self.single {
            return Ok(TenantRing { placement: Resolved::Single(endpoint) });
        }
        let index = self.hashring_index(tenant)?;
        self.hashrings[index].resolve(tenant)
    }

    /// Replica `n` of one series: [`Ring::tenant`] and [`TenantRing::get_n`] in one call, for
    /// one-off questions (the hot path resolves the tenant once).
    pub fn get_n<'a>(
        &self,
        tenant: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        n: u64,
    ) -> Result<Endpoint, Error> {
        self.tenant(tenant)?.get_n(series_hash(tenant, labels), n).cloned()
    }

    /// The hashring that takes `tenant`, or `None` when none matches.
    pub fn hashring_of(&self, tenant: &str) -> Result<Option<&Hashring>, Error> {
        match self.hashring_index(tenant) {
            Ok(i) => Ok(Some(&self.hashrings[i])),
            Err(Error::NoMatchingHashring) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The external labels for the blocks of `tenant`: those of the first hashring that lists
    /// it by name in `tenants` (whatever its matcher), as Thanos's MultiTSDB takes them.
    pub fn external_labels(&self, tenant: &str) -> Option<&BTreeMap<String, String>> {
        self.hashrings.iter().find(|h| h.config.tenants.iter().any(|t| t == tenant)).map(|h| &h.config.external_labels)
    }

    fn hashring_index(&self, tenant: &str) -> Result<usize, Error> {
        if let Some(&i) = self.tenant_cache.read().get(tenant) {
            return Ok(i);
        }
        for (i, hashring) in self.hashrings.iter().enumerate() {
            if hashring.tenants.matches(tenant)? {
                let mut cache = self.tenant_cache.write();
                if cache.len() >= MAX_CACHED_TENANTS {
                    cache.clear();
                }
                cache.insert(tenant.to_owned(), i);
                return Ok(i);
            }
        }
        Err(Error::NoMatchingHashring)
    }
}

/// One tenant's placement: replica `n` of a series by its [`series_hash`].
pub struct TenantRing<'a> {
    placement: Resolved<'a>,
}

enum Resolved<'a> {
    Single(&'a Endpoint),
    Hashmod(&'a Hashmod),
    Ketama(&'a Ketama),
    Shard(Arc<Ketama>),
}

impl TenantRing<'_> {
    /// The endpoint of replica `n` (0-based) of the series whose [`series_hash`] is `hash`.
    pub fn get_n(&self, hash: u64, n: u64) -> Result<&Endpoint, Error> {
        match &self.placement {
            Resolved::Single(endpoint) if n == 0 => Ok(endpoint),
            Resolved::Single(_) => Err(Error::InsufficientNodes { have: 1, want: n.saturating_add(1) }),
            Resolved::Hashmod(h) => h.get_n(hash, n),
            Resolved::Ketama(k) => k.get_n(hash, n),
            Resolved::Shard(k) => k.get_n(hash, n),
        }
    }

    /// The endpoints the tenant's series may go to (its shard, with shuffle sharding), in ring
    /// order.
    pub fn endpoints(&self) -> &[Endpoint] {
        match &self.placement {
            Resolved::Single(endpoint) => std::slice::from_ref(*endpoint),
            Resolved::Hashmod(h) => &h.endpoints,
            Resolved::Ketama(k) => &k.endpoints,
            Resolved::Shard(k) => &k.endpoints,
        }
    }

    /// Each endpoint's share of the hash space, as the first replica and over all replicas.
    pub fn shares(&self) -> Vec<EndpointShare> {
        match &self.placement {
            Resolved::Single(endpoint) => {
                vec![EndpointShare { endpoint: (*endpoint).clone(), sections: 0, primary: 1.0, replicas: 1.0 }]
            }
            Resolved::Hashmod(h) => h.shares(),
            Resolved::Ketama(k) => k.shares(),
            Resolved::Shard(k) => k.shares(),
        }
    }
}

/// How much of the hash space an endpoint holds.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointShare {
    pub endpoint: Endpoint,
    /// Ketama sections of the endpoint (0 for hashmod).
    pub sections: usize,
    /// Fraction of series whose first replica it holds (the shares add up to 1).
    pub primary: f64,
    /// Fraction of series of which it holds any replica (the shares add up to the replication
    /// factor).
    pub replicas: f64,
}

/// One hashring of the configuration.
pub struct Hashring {
    config: HashringConfig,
    algorithm: Algorithm,
    tenants: TenantSet,
    placement: Placement,
}

enum Placement {
    Hashmod(Hashmod),
    Ketama(Ketama),
    Shuffle(Shuffle),
}

impl Hashring {
    fn new(config: &HashringConfig, options: RingOptions, metrics: &RingMetrics) -> Result<Hashring, Error> {
        let name = &config.hashring;
        if config.endpoints.len() > MAX_ENDPOINTS_PER_HASHRING {
            return Err(Error::TooManyEndpoints {
                hashring: name.clone(),
                count: config.endpoints.len(),
                limit: MAX_ENDPOINTS_PER_HASHRING,
            });
        }
        warn_duplicates(config);
        let shard_size = config.shuffle_sharding_config.shard_size;
        let algorithm = match config.algorithm.as_str() {
            "" => options.algorithm,
            "hashmod" => Algorithm::Hashmod,
            "ketama" => Algorithm::Ketama,
            other => {
                tracing::warn!(hashring = %name, algorithm = other, "unknown hashring algorithm; using hashmod, as Thanos does");
                // Thanos checks shuffle sharding before zones on this path.
                if shard_size > 0 {
                    return Err(Error::HashmodShuffleSharding);
                }
                Algorithm::Hashmod
            }
        };
        let placement = match algorithm {
            Algorithm::Hashmod => {
                if config.endpoints.iter().any(|e| !e.az.is_empty()) {
                    return Err(Error::HashmodAz);
                }
                if shard_size > 0 {
                    return Err(Error::HashmodShuffleSharding);
                }
                Placement::Hashmod(Hashmod::new(config.endpoints.clone(), options.replication_factor))
            }
            Algorithm::Ketama => {
                let ketama = Ketama::new(config.endpoints.clone(), SECTIONS_PER_NODE, options.replication_factor)?;
                if shard_size > 0 {
                    if shard_size > config.endpoints.len() as i64 {
                        return Err(Error::ShardSizeTooLarge {
                            shard_size,
                            hashring: name.clone(),
                            nodes: config.endpoints.len(),
                        });
                    }
                    Placement::Shuffle(Shuffle::new(ketama, name, &config.shuffle_sharding_config, options, metrics))
                } else {
                    Placement::Ketama(ketama)
                }
            }
        };
        Ok(Hashring { config: config.clone(), algorithm, tenants: TenantSet::new(config), placement })
    }

    /// The configuration the ring was built from.
    pub fn config(&self) -> &HashringConfig {
        &self.config
    }

    /// The algorithm in effect (the ring's own, or the flag's).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn is_shuffle_sharded(&self) -> bool {
        matches!(self.placement, Placement::Shuffle(_))
    }

    /// The tenant's shard size, with overrides applied (for shuffle-sharded rings).
    pub fn shard_size(&self, tenant: &str) -> Option<i64> {
        match &self.placement {
            Placement::Shuffle(s) => Some(s.shard_size(tenant)),
            _ => None,
        }
    }

    /// Each endpoint's share of the whole ring (before shuffle sharding), in ring order.
    pub fn shares(&self) -> Vec<EndpointShare> {
        match &self.placement {
            Placement::Hashmod(h) => h.shares(),
            Placement::Ketama(k) => k.shares(),
            Placement::Shuffle(s) => s.base.shares(),
        }
    }

    fn resolve(&self, tenant: &str) -> Result<TenantRing<'_>, Error> {
        let placement = match &self.placement {
            Placement::Hashmod(h) => Resolved::Hashmod(h),
            Placement::Ketama(k) => Resolved::Ketama(k),
            Placement::Shuffle(s) => Resolved::Shard(s.subring(tenant)?),
        };
        Ok(TenantRing { placement })
    }
}

/// Thanos places a repeated address as two endpoints (two replicas can land on one receiver);
/// that is kept for identical routing, and said.
fn warn_duplicates(config: &HashringConfig) {
    let mut seen = HashSet::new();
    for e in &config.endpoints {
        if !seen.insert(e.address.as_str()) {
            tracing::warn!(hashring = %config.hashring, address = %e.address, "endpoint listed more than once; Thanos and strata count it once per listing");
        }
    }
}

/// Which tenants a hashring takes.
enum TenantSet {
    All,
    Exact(HashSet<String>),
    Glob(Vec<String>),
    /// An unknown matcher type matches nothing in Thanos.
    Nothing,
}

impl TenantSet {
    fn new(config: &HashringConfig) -> TenantSet {
        if config.tenants.is_empty() {
            return TenantSet::All;
        }
        match config.tenant_matcher_type.as_str() {
            "" | "exact" => TenantSet::Exact(config.tenants.iter().cloned().collect()),
            "glob" => TenantSet::Glob(config.tenants.clone()),
            other => {
                tracing::warn!(hashring = %config.hashring, tenant_matcher_type = other, "unknown tenant matcher type: this hashring takes no tenant, as in Thanos");
                TenantSet::Nothing
            }
        }
    }

    /// Thanos tries the patterns in map order, so with a malformed pattern beside a matching one
    /// it may answer either; here a match wins, and a malformed pattern is an error only when
    /// nothing matched.
    fn matches(&self, tenant: &str) -> Result<bool, Error> {
        match self {
            TenantSet::All => Ok(true),
            TenantSet::Exact(set) => Ok(set.contains(tenant)),
            TenantSet::Nothing => Ok(false),
            TenantSet::Glob(patterns) => {
                let mut bad = None;
                for pattern in patterns {
                    match glob::matches(pattern, tenant) {
                        Ok(true) => return Ok(true),
                        Ok(false) => {}
                        Err(glob::BadPattern) => {
                            bad.get_or_insert(pattern);
                        }
                    }
                }
                match bad {
                    Some(pattern) => {
                        Err(Error::BadTenantPattern { pattern: pattern.clone(), tenant: tenant.to_owned() })
                    }
                    None => Ok(false),
                }
            }
        }
    }
}

struct Hashmod {
    /// Sorted by address.
    endpoints: Vec<Endpoint>,
    /// Only for [`Hashmod::shares`]: hashmod places any replica that has an endpoint.
    replication_factor: u64,
}

impl Hashmod {
    fn new(mut endpoints: Vec<Endpoint>, replication_factor: u64) -> Hashmod {
        endpoints.sort_by(|a, b| a.address.cmp(&b.address));
        Hashmod { endpoints, replication_factor }
    }

    fn get_n(&self, hash: u64, n: u64) -> Result<&Endpoint, Error> {
        let len = self.endpoints.len() as u64;
        if n >= len {
            return Err(Error::InsufficientNodes { have: len, want: n.saturating_add(1) });
        }
        // In range: the remainder is below len.
        Ok(&self.endpoints[(hash.wrapping_add(n) % len) as usize])
    }

    fn shares(&self) -> Vec<EndpointShare> {
        let len = self.endpoints.len() as f64;
        // Each endpoint holds one of the replicas of every series whose replicas reach it.
        let replicas = (self.replication_factor as f64).min(len) / len;
        self.endpoints
            .iter()
            .map(|e| EndpointShare { endpoint: e.clone(), sections: 0, primary: 1.0 / len, replicas })
            .collect()
    }
}

/// A ketama ring: sections sorted by hash, each with its replica list.
pub(crate) struct Ketama {
    endpoints: Vec<Endpoint>,
    hashes: Vec<u64>,
    /// `replication_factor` endpoint indexes per section, the first being the section's own.
    replicas: Vec<u32>,
    replication_factor: usize,
}

impl Ketama {
    pub(crate) fn new(
        endpoints: Vec<Endpoint>,
        sections_per_node: usize,
        replication_factor: u64,
    ) -> Result<Ketama, Error> {
        if (endpoints.len() as u64) < replication_factor {
            return Err(Error::KetamaTooFewEndpoints);
        }
        // At most endpoints.len(), which is bounded by MAX_ENDPOINTS_PER_HASHRING.
        let rf = replication_factor as usize;
        let mut sections: Vec<(u64, u32)> = Vec::with_capacity(endpoints.len() * sections_per_node);
        let mut buf = String::new();
        for (index, endpoint) in endpoints.iter().enumerate() {
            for i in 1..=sections_per_node {
                sections.push((section_hash(&mut buf, &endpoint.address, i), index as u32));
            }
        }
        // Equal hashes only come from a repeated address; its listings are interchangeable.
        sections.sort_unstable();
        let hashes = sections.iter().map(|s| s.0).collect();
        let owners: Vec<u32> = sections.iter().map(|s| s.1).collect();
        let replicas = place_replicas(&endpoints, &owners, rf)?;
        Ok(Ketama { endpoints, hashes, replicas, replication_factor: rf })
    }

    fn get_n(&self, hash: u64, n: u64) -> Result<&Endpoint, Error> {
        let count = self.endpoints.len() as u64;
        if n >= count {
            return Err(Error::InsufficientNodes { have: count, want: n.saturating_add(1) });
        }
        if n >= self.replication_factor as u64 {
            return Err(Error::ReplicaBeyondFactor { n, replication_factor: self.replication_factor as u64 });
        }
        let mut i = self.hashes.partition_point(|&h| h < hash);
        if i == self.hashes.len() {
            i = 0;
        }
        Ok(&self.endpoints[self.replicas[i * self.replication_factor + n as usize] as usize])
    }

    fn shares(&self) -> Vec<EndpointShare> {
        let mut shares: Vec<EndpointShare> = self
            .endpoints
            .iter()
            .map(|e| EndpointShare { endpoint: e.clone(), sections: 0, primary: 0.0, replicas: 0.0 })
            .collect();
        let scale = 2f64.powi(64);
        let last = self.hashes.last().copied().unwrap_or(0);
        let mut previous = last;
        for (i, &h) in self.hashes.iter().enumerate() {
            // Section i takes the hashes after the previous section's, up to its own; the
            // first also takes those past the last section (the subtraction wraps).
            let width = h.wrapping_sub(previous) as f64 / scale;
            previous = h;
            let replicas = &self.replicas[i * self.replication_factor..(i + 1) * self.replication_factor];
            let owner = replicas[0] as usize;
            shares[owner].sections += 1;
            shares[owner].primary += width;
            for &r in replicas {
                shares[r as usize].replicas += width;
            }
        }
        // One section alone spans the whole space, which the wrapping width counts as 0.
        if self.hashes.len() == 1 {
            shares[self.replicas[0] as usize].primary = 1.0;
            shares[self.replicas[0] as usize].replicas = 1.0;
        }
        shares
    }
}

/// Thanos's `calculateSectionReplicas`: from each section clockwise, take endpoints not yet
/// taken, skipping (with several zones) an endpoint whose zone already holds more replicas than
/// the least-used zone. Where no endpoint can be taken in a whole turn of the ring, Thanos loops
/// forever; here that is an error.
fn place_replicas(endpoints: &[Endpoint], owners: &[u32], rf: usize) -> Result<Vec<u32>, Error> {
    let mut zones: Vec<&str> = endpoints.iter().map(|e| e.az.as_str()).collect();
    zones.sort_unstable();
    zones.dedup();
    let zone_of: Vec<usize> =
        endpoints.iter().map(|e| zones.binary_search(&e.az.as_str()).unwrap_or_default()).collect();
    let zone_aware = zones.len() > 1;
    let n = owners.len();
    let mut replicas = Vec::with_capacity(n * rf);
    let mut chosen: Vec<u32> = Vec::with_capacity(rf);
    let mut spread = vec![0i64; zones.len()];
    for start in 0..n {
        chosen.clear();
        spread.fill(0);
        let mut j = start;
        let mut since_taken = 0;
        while chosen.len() < rf {
            let e = owners[j];
            j = if j + 1 == n { 0 } else { j + 1 };
            let zone = zone_of[e as usize];
            let skip = chosen.contains(&e)
                || (zone_aware && spread[zone] > 0 && spread[zone] > spread.iter().copied().min().unwrap_or(0));
            if skip {
                since_taken += 1;
                if since_taken > n {
                    return Err(Error::ReplicasUnplaceable { replication_factor: rf as u64 });
                }
                continue;
            }
            since_taken = 0;
            chosen.push(e);
            spread[zone] += 1;
        }
        replicas.extend_from_slice(&chosen);
    }
    Ok(replicas)
}

/// Cortex's `ShuffleShardSeed` as Thanos copies it: the first 8 bytes of MD5(`tenant`, or
/// `tenant 0x00 zone` when there is a zone), big-endian, as a signed integer.
pub fn shuffle_shard_seed(tenant: &str, zone: &str) -> i64 {
    let mut md5 = Md5::new();
    md5.update(tenant.as_bytes());
    if !zone.is_empty() {
        md5.update([0u8]);
        md5.update(zone.as_bytes());
    }
    let sum = md5.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&sum[..8]);
    i64::from_be_bytes(first)
}

/// A ketama ring whose tenants each get a shard of its endpoints.
struct Shuffle {
    base: Ketama,
    shard_size: i64,
    overrides: Vec<(i64, OverrideMatch)>,
    zone_aware: bool,
    replication_factor: u64,
    /// The zones (one unnamed zone when zone awareness is off), by name.
    zones: Vec<ShardZone>,
    cache: Mutex<SubringCache>,
    metrics: CacheMetrics,
}

struct ShardZone {
    name: String,
    /// Distinct endpoints in the zone.
    nodes: usize,
    /// The base ring's sections of the zone's endpoints, in hash order: (hash, endpoint index).
    sections: Vec<(u64, u32)>,
}

enum OverrideMatch {
    Exact(Vec<String>),
    Glob(Vec<String>),
    /// Thanos applies an override only with matcher type `exact` or `glob`.
    Never,
}

impl Shuffle {
    fn new(
        base: Ketama,
        name: &str,
        config: &ShuffleShardingConfig,
        options: RingOptions,
        metrics: &RingMetrics,
    ) -> Shuffle {
        let zone_aware = !config.zone_awareness_disabled;
        let zone_key = |e: &Endpoint| if zone_aware { e.az.clone() } else { String::new() };
        let mut distinct: Vec<&Endpoint> = base.endpoints.iter().collect();
        distinct.sort();
        distinct.dedup();
        let mut zones: BTreeMap<String, ShardZone> = BTreeMap::new();
        for e in distinct {
            let key = zone_key(e);
            zones
                .entry(key.clone())
                .or_insert_with(|| ShardZone { name: key, nodes: 0, sections: Vec::new() })
                .nodes += 1;
        }
        for (i, &hash) in base.hashes.iter().enumerate() {
            let owner = base.replicas[i * base.replication_factor];
            if let Some(zone) = zones.get_mut(&zone_key(&base.endpoints[owner as usize])) {
                zone.sections.push((hash, owner));
            }
        }
        let overrides = config
            .overrides
            .iter()
            .map(|o| {
                let matcher = match o.tenant_matcher_type.as_str() {
                    "exact" => OverrideMatch::Exact(o.tenants.clone()),
                    "glob" => OverrideMatch::Glob(o.tenants.clone()),
                    other => {
                        tracing::warn!(hashring = name, tenant_matcher_type = other, tenants = ?o.tenants, "shard size override without tenant_matcher_type exact or glob applies to no tenant, as in Thanos");
                        OverrideMatch::Never
                    }
                };
                (o.shard_size, matcher)
            })
            .collect();
        let capacity = match usize::try_from(config.cache_size) {
            Ok(n) if n > 0 => n,
            _ => DEFAULT_SUBRING_CACHE_SIZE,
        };
        let metrics = metrics.cache(name);
        metrics.max_items.set(i64::try_from(capacity).unwrap_or(i64::MAX));
        let shuffle = Shuffle {
            base,
            shard_size: config.shard_size,
            overrides,
            zone_aware,
            replication_factor: options.replication_factor,
            zones: zones.into_values().collect(),
            cache: Mutex::new(SubringCache { capacity, tick: 0, entries: HashMap::new() }),
            metrics,
        };
        shuffle.warn_unsatisfiable(name, config);
        shuffle
    }

    /// Tenants whose shard size needs more endpoints per zone than a zone has fail every write
    /// (in Thanos too); say so when the ring is built rather than only on the first write.
    fn warn_unsatisfiable(&self, name: &str, config: &ShuffleShardingConfig) {
        let sizes = std::iter::once(config.shard_size).chain(config.overrides.iter().map(|o| o.shard_size));
        for size in sizes {
            let take = self.take(size);
            if let Some(zone) = self.zones.iter().find(|z| take > z.nodes as i64) {
                tracing::warn!(hashring = name, shard_size = size, az = %zone.name, nodes = zone.nodes, "shard size needs more endpoints than this zone has: writes of its tenants will fail");
            }
        }
    }

    fn shard_size(&self, tenant: &str) -> i64 {
        for (size, matcher) in &self.overrides {
            let applies = match matcher {
                OverrideMatch::Exact(tenants) => tenants.iter().any(|t| t == tenant),
                OverrideMatch::Glob(patterns) => patterns.iter().any(|p| glob::matches(p, tenant) == Ok(true)),
                OverrideMatch::Never => false,
            };
            if applies {
                return *size;
            }
        }
        self.shard_size
    }

    /// Endpoints taken from each zone for a shard size: all from the one zone without zone
    /// awareness, else the size divided by the zones, rounded up (Cortex's
    /// `ShuffleShardExpectedInstancesPerZone`, in floating point as there).
    fn take(&self, shard_size: i64) -> i64 {
        if self.zone_aware {
            (shard_size as f64 / self.zones.len() as f64).ceil() as i64
        } else {
            shard_size
        }
    }

    fn subring(&self, tenant: &str) -> Result<Arc<Ketama>, Error> {
        self.metrics.requests.inc();
        if let Some(ring) = self.cache.lock().get(tenant) {
            self.metrics.hits.inc();
            return Ok(ring);
        }
        let ring = Arc::new(self.shard(tenant)?);
        let (added, evicted) = self.cache.lock().insert(tenant, Arc::clone(&ring));
        if added {
            self.metrics.items.inc();
        }
        if evicted {
            self.metrics.evicted.inc();
            self.metrics.items.dec();
        }
        Ok(ring)
    }

    /// Thanos's `getTenantShard`.
    fn shard(&self, tenant: &str) -> Result<Ketama, Error> {
        let shard_size = self.shard_size(tenant);
        let take = self.take(shard_size);
        let mut chosen = Vec::new();
        for zone in &self.zones {
            if take > zone.nodes as i64 {
                return Err(Error::ShardSizeExceedsAz { shard_size, az: zone.name.clone(), nodes: zone.nodes });
            }
            let sections = &zone.sections;
            let mut rng = GoRand::new(shuffle_shard_seed(tenant, &zone.name));
            let mut selected: Vec<u32> = Vec::new();
            for _ in 0..take {
                let position = rng.uint64();
                let mut start = sections.partition_point(|s| s.0 < position);
                if start == sections.len() {
                    start = 0;
                }
                let next = (0..sections.len())
                    .map(|j| sections[(start + j) % sections.len()].1)
                    .find(|e| !selected.contains(e));
                if let Some(e) = next {
                    selected.push(e);
                    chosen.push(self.base.endpoints[e as usize].clone());
                }
            }
        }
        Ketama::new(chosen, SECTIONS_PER_NODE, self.replication_factor)
    }
}

impl Drop for Shuffle {
    fn drop(&mut self) {
        let cached = self.cache.lock().entries.len();
        self.metrics.items.dec_by(i64::try_from(cached).unwrap_or(i64::MAX));
    }
}

/// The least recently used subrings, by tenant.
struct SubringCache {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (Arc<Ketama>, u64)>,
}

impl SubringCache {
    fn get(&mut self, tenant: &str) -> Option<Arc<Ketama>> {
        self.tick += 1;
        let entry = self.entries.get_mut(tenant)?;
        entry.1 = self.tick;
        Some(Arc::clone(&entry.0))
    }

    /// Whether the tenant was new, and whether an entry was evicted for it.
    fn insert(&mut self, tenant: &str, ring: Arc<Ketama>) -> (bool, bool) {
        self.tick += 1;
        if let Some(entry) = self.entries.get_mut(tenant) {
            *entry = (ring, self.tick);
            return (false, false);
        }
        let mut evicted = false;
        if self.entries.len() >= self.capacity {
            let oldest = self.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(t, _)| t.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
                evicted = true;
            }
        }
        self.entries.insert(tenant.to_owned(), (ring, self.tick));
        (true, evicted)
    }
}

#[cfg(test)]
mod tests;
