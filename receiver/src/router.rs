//! Routing writes over the hashring, as Thanos v0.42's receive handler does (`handler.go`
//! `handleRequest`, `fanoutForward`, `distributeTimeseriesToReplicas`): each series goes to the
//! endpoint of each of its replicas, batched per (endpoint, replica); the local part is written
//! straight into the TSDB, the rest forwarded over `thanos.WriteableStore/RemoteWrite` with the
//! 1-based `replica` field set, so the receiving end writes it without replicating it again.
//! A replica another receiver placed here is stored here, with no second placement.
//! A request succeeds when every series reached the write quorum; otherwise its status comes
//! from the causes of the failed series, as Thanos decides it (see [`Tally`]).
//!
//! Forwards run as tasks: once quorum is reached the answer goes out and the other replicas'
//! writes finish in the background, each bounded by the forward timeout. Every peer takes at
//! most `workers` forwards at a time; a peer that answered `Unavailable` is skipped, its
//! replicas failing at once, for an exponential backoff. A request holds one ring for its
//! whole life; when a forward fails after the ring changed, the series of that forward are
//! placed again on the new ring and written to their new owners, once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_proto::remote_write::WriteBatch;
use strata_proto::thanos as pb;
use strata_proto::thanos::writeable_store_client::WriteableStoreClient;
use strata_ring::{series_hash, Ring, RingHandle, RingOptions, RingSource, RingWatcher};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::error::ReceiveError;
use crate::snappy_grpc::SnappyChannel;
use crate::writer::{write_local, Tenants};
use crate::Receiver;

/// How a receiver takes part in the ring (Thanos's `determineMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A hashring and a local endpoint: routes every write and stores its own share.
    RouterIngestor,
    /// A hashring without a local endpoint: routes every write, stores nothing.
    RouterOnly,
    /// No hashring: stores whatever it is sent.
    IngestorOnly,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::RouterIngestor => "RouterIngestor",
            Mode::RouterOnly => "RouterOnly",
            Mode::IngestorOnly => "IngestorOnly",
        }
    }
}

/// Compression of forwarded writes (`--receive.grpc-compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Snappy,
    None,
}

/// How writes are forwarded to other receivers.
#[derive(Debug, Clone)]
pub struct ForwardOptions {
    /// `--receive-forward-timeout`: the longest a request waits for its replicas.
    pub timeout: Duration,
    /// `--receive-forward-max-backoff`: the longest an unavailable peer is skipped.
    pub max_backoff: Duration,
    /// `--receive.forward.async-workers`: forwards in flight per peer.
    pub workers: usize,
    pub compression: Compression,
    /// Largest forwarded answer read back (answers are empty; this bounds a misbehaving peer).
    pub max_message_bytes: usize,
}

impl Default for ForwardOptions {
    /// Thanos's defaults: 5s timeout, 5s maximum backoff, 5 workers per peer, snappy.
    fn default() -> Self {
        ForwardOptions {
            timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            workers: 5,
            compression: Compression::Snappy,
            max_message_bytes: 4 << 20,
        }
    }
}

/// What routing needs from the command line.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub source: RingSource,
    pub options: RingOptions,
    /// `--receive.local-endpoint`: this receiver's address in the ring; `None` routes only.
    pub local_endpoint: Option<String>,
    pub forward: ForwardOptions,
}

/// Thanos's minimum backoff of an unavailable peer, doubled per failed attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Routes writes over the ring (see the module documentation).
pub struct Router {
    ring: RingHandle,
    local: Option<String>,
    replication_factor: u64,
    forward: ForwardOptions,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    /// Per tenant: this receiver's share of its series on a ring, for head series limits.
    shares: Mutex<HashMap<String, (Arc<Ring>, f64)>>,
    metrics: RouterMetrics,
}

/// Tenants whose share is remembered; more start the cache over.
const MAX_CACHED_SHARES: usize = 10_000;

impl Router {
    /// Loads the ring (a startup error if it cannot be built) and registers the routing
    /// metrics; the watcher, which keeps the ring current, is for the caller to run.
    pub fn new(config: RoutingConfig, registry: &mut Registry) -> Result<(Router, RingWatcher), ReceiveError> {
        let local = config.local_endpoint.clone().unwrap_or_default();
        let watcher = RingWatcher::new(config.source, config.options, &local, registry)?;
        let metrics = RouterMetrics::register(registry);
        metrics.replication_factor.set(i64::try_from(config.options.replication_factor).unwrap_or(i64::MAX));
        let router = Router {
            ring: watcher.handle(),
            local: config.local_endpoint,
            replication_factor: config.options.replication_factor,
            forward: config.forward,
            peers: Mutex::default(),
            shares: Mutex::default(),
            metrics,
        };
        Ok((router, watcher))
    }

    pub fn mode(&self) -> Mode {
        if self.local.is_some() {
            Mode::RouterIngestor
        } else {
            Mode::RouterOnly
        }
    }

    /// Follows ring changes: logs what moved, drops the connections of endpoints that left
    /// and forgets every backoff (as Thanos's handler does on a new hashring).
    pub async fn follow_ring(self: Arc<Self>) {
        let mut handle = self.ring.clone();
        let mut old = handle.current();
        while handle.changed().await {
            let new = handle.current();
            log_moves(&old, &new);
            let keep: BTreeSet<&str> = new.endpoints().into_iter().map(|e| e.address.as_str()).collect();
            self.peers.lock().retain(|address, peer| {
                peer.reset();
                keep.contains(address.as_str())
            });
            old = new;
        }
    }

    /// The series of `tenant` over all replicas, estimated from the `local` series this
    /// receiver holds and its share of the tenant's series (its shard, with shuffle sharding).
    pub fn scale_local_series(&self, tenant: &str, local: u64) -> Option<u64> {
        let ring = self.ring.current();
        let mut shares = self.shares.lock();
        let share = match shares.get(tenant) {
            Some((r, share)) if Arc::ptr_eq(r, &ring) => *share,
            _ => {
                let placement = ring.tenant(tenant).ok()?;
                let share = placement.shares().iter().find(|s| self.is_local(&s.endpoint)).map_or(0.0, |s| s.replicas);
                if shares.len() >= MAX_CACHED_SHARES {
                    shares.clear();
                }
                shares.insert(tenant.to_owned(), (ring.clone(), share));
                share
            }
        };
        // The shares of all endpoints add up to the replication factor.
        (share > 0.0).then(|| (local as f64 * self.replication_factor as f64 / share).round() as u64)
    }

    fn is_local(&self, endpoint: &strata_ring::Endpoint) -> bool {
        self.local.as_deref().is_some_and(|l| endpoint.address == l || endpoint.capnproto_address == l)
    }

    /// Writes each series of `batch` (of its tenant in `tenants`) to the replicas the ring gives
    /// it. `replica` is the request's (1-based; 0 for a write not yet replicated), which a
    /// router-only receiver ignores, as in Thanos.
    pub async fn route(
        self: &Arc<Self>,
        rx: &Arc<Receiver>,
        tenants: &Tenants<'_>,
        replica: u64,
        batch: &WriteBatch<'_>,
    ) -> Result<(), ReceiveError> {
        let replica = if self.mode() == Mode::RouterOnly { 0 } else { replica };
        if replica > self.replication_factor {
            return Err(ReceiveError::BadReplica { replica, replication_factor: self.replication_factor });
        }
        let replicated = replica > 0;
        let replicas: Vec<u64> = if replicated { vec![replica - 1] } else { (0..self.replication_factor).collect() };
        let success_threshold = if replicated { 1 } else { write_quorum(self.replication_factor) };
        let mut tally = Tally::new(batch.series.len(), replicas.len() as u32, success_threshold);
        let deadline = Instant::now() + self.forward.timeout;

        let ring = self.ring.current();
        let mut hashes = Vec::new();
        let all: Vec<usize> = (0..batch.series.len()).collect();
        let mut groups: Vec<Group> = Vec::new();
        match (&self.local, replicated) {
            // A replica another receiver placed here is stored here: placing it again on this
            // receiver's ring (as Thanos does) sends it back and forth between two receivers
            // that have not both seen a ring change yet, until the forward timeout.
            (Some(local), true) => {
                groups.extend(tenants.group(&all).into_iter().map(|(tenant, series)| Group {
                    tenant: tenant.to_owned(),
                    address: local.clone(),
                    n: replicas[0],
                    local: true,
                    series,
                }));
            }
            _ => {
                hashes = (batch.series.iter().enumerate())
                    .map(|(i, s)| series_hash(tenants.of(i), batch.series_labels(s).iter().copied()))
                    .collect();
                for &n in &replicas {
                    groups.extend(self.distribute(&ring, tenants, &hashes, &all, n)?);
                }
            }
        }
        let (tx, mut responses) = mpsc::unbounded_channel();
        // Forwards in flight, by group.
        let mut outstanding = BTreeSet::new();
        let mut retried = vec![false; groups.len()];
        // Forwards first, so they are in flight while the local part is written.
        for (i, group) in groups.iter().enumerate() {
            if !group.local {
                self.spawn_forward(batch, group, i, deadline, &tx);
                outstanding.insert(i);
            }
        }
        for group in groups.iter().filter(|g| g.local) {
            tally.record(&group.series, &self.write_local(rx, batch, group));
        }
        while !outstanding.is_empty() && !tally.decided() {
            let (i, result): (usize, Result<(), Failure>) =
                match tokio::time::timeout_at(deadline, responses.recv()).await {
                    Ok(Some(response)) => response,
                    // The sender is held here, so the channel never closes while forwards run.
                    Ok(None) => break,
                    Err(_) => {
                        // Replicas that did not answer in time failed for a reason that may
                        // clear (Thanos answers its context error, a 500, here).
                        for &i in &outstanding {
                            tally.record(&groups[i].series, &Err(Failure::timeout(&groups[i].address)));
                        }
                        break;
                    }
                };
            outstanding.remove(&i);
            if let Err(failure) = &result {
                let current = self.ring.current();
                if !failure.kinds.conflict && !retried[i] && !Arc::ptr_eq(&ring, &current) {
                    // The ring changed under this request: place the series again and write
                    // them to their new owners; those whose owner did not change keep the
                    // failure.
                    let failed = &groups[i];
                    let moved = self.distribute(&current, tenants, &hashes, &failed.series, failed.n)?;
                    tracing::debug!(endpoint = %failed.address, replica = failed.n, "forward failed after a ring change; writing to the new owners");
                    for group in moved {
                        if group.address == groups[i].address {
                            tally.record(&group.series, &result);
                            continue;
                        }
                        let j = groups.len();
                        retried.push(true);
                        if group.local {
                            tally.record(&group.series, &self.write_local(rx, batch, &group));
                        } else {
                            self.spawn_forward(batch, &group, j, deadline, &tx);
                            outstanding.insert(j);
                        }
                        groups.push(group);
                    }
                    continue;
                }
            }
            tally.record(&groups[i].series, &result);
        }
        tally.outcome()
    }

    /// The series `ids` (whose [`series_hash`]es are `hashes`) grouped by tenant and by the
    /// endpoint of their replica `n` on `ring`, in that order: one write each, as a
    /// `WriteRequest` carries one tenant.
    fn distribute(
        &self,
        ring: &Ring,
        tenants: &Tenants<'_>,
        hashes: &[u64],
        ids: &[usize],
        n: u64,
    ) -> Result<Vec<Group>, ReceiveError> {
        let mut groups = Vec::new();
        for (tenant, ids) in tenants.group(ids) {
            let placement = ring.tenant(tenant)?;
            let mut by_endpoint: BTreeMap<&str, (bool, Vec<usize>)> = BTreeMap::new();
            for id in ids {
                let endpoint = placement.get_n(hashes[id], n)?;
                let entry = by_endpoint
                    .entry(endpoint.address.as_str())
                    .or_insert_with(|| (self.is_local(endpoint), Vec::new()));
                entry.1.push(id);
            }
            groups.extend(by_endpoint.into_iter().map(|(address, (local, series))| Group {
                tenant: tenant.to_owned(),
                address: address.to_owned(),
                n,
                local,
                series,
            }));
        }
        Ok(groups)
    }

    fn write_local(&self, rx: &Receiver, batch: &WriteBatch<'_>, group: &Group) -> Result<(), Failure> {
        write_local(rx, &group.tenant, batch, group.series.iter().map(|&i| &batch.series[i]))
            .map(|_| ())
            .map_err(|(e, _)| Failure::local(&e))
    }

    fn spawn_forward(
        self: &Arc<Self>,
        batch: &WriteBatch<'_>,
        group: &Group,
        index: usize,
        deadline: Instant,
        tx: &mpsc::UnboundedSender<(usize, Result<(), Failure>)>,
    ) {
        // 1-based on the wire; 0 would mean not yet replicated.
        let mut request = pb::WriteRequest::new(group.tenant.clone(), i64::try_from(group.n + 1).unwrap_or(i64::MAX));
        for &i in &group.series {
            // Float samples only: native histograms and exemplars are not stored here.
            let s = &batch.series[i];
            request.push_series(batch.series_labels(s), batch.series_samples(s));
        }
        let (router, address, tx) = (Arc::clone(self), group.address.clone(), tx.clone());
        tokio::spawn(async move {
            let result = router.forward(&address, request, deadline).await;
            if let Err(f) = &result {
                tracing::debug!(endpoint = %address, err = %f.message, "forward failed");
            }
            // The request may have answered already; the result is then not needed.
            let _ = tx.send((index, result));
        });
    }

    fn peer(&self, address: &str) -> Result<Arc<Peer>, Failure> {
        if let Some(peer) = self.peers.lock().get(address) {
            return Ok(peer.clone());
        }
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| Failure::unavailable(format!("failed to dial peer {address}: {e}: target not available")))?
            .connect_timeout(self.forward.timeout)
            .tcp_nodelay(true);
        let channel = SnappyChannel::new(
            endpoint.connect_lazy(),
            self.forward.max_message_bytes,
            self.forward.compression == Compression::Snappy,
        );
        let peer = Arc::new(Peer {
            client: WriteableStoreClient::new(channel),
            permits: Semaphore::new(self.forward.workers.max(1)),
            backoff: Mutex::new(None),
            max_backoff: self.forward.max_backoff,
        });
        Ok(self.peers.lock().entry(address.to_owned()).or_insert(peer).clone())
    }

    /// One forward to `address`: Thanos's error texts, its metrics and backoff.
    async fn forward(&self, address: &str, request: pb::WriteRequest, deadline: Instant) -> Result<(), Failure> {
        let peer = self.peer(address)?;
        if !peer.is_up() {
            return Err(Failure::unavailable(format!(
                "backing off forward request for endpoint {address}: target not available"
            )));
        }
        let Ok(_permit) = tokio::time::timeout_at(deadline, peer.permits.acquire()).await else {
            self.metrics.count(false);
            return Err(Failure::unavailable(format!(
                "scheduling forward request for endpoint {address}: context deadline exceeded"
            )));
        };
        let mut call = tonic::Request::new(request);
        call.set_timeout(deadline.saturating_duration_since(Instant::now()));
        let mut client = peer.client.clone();
        let outcome = tokio::time::timeout_at(deadline, client.remote_write(call)).await;
        match outcome {
            Ok(Ok(_)) => {
                self.metrics.count(true);
                peer.mark_available();
                Ok(())
            }
            // The call's own grpc-timeout (the same deadline) can fire before the timer above;
            // either way the deadline ran out, which Thanos reports as such.
            Ok(Err(status))
                if matches!(status.code(), tonic::Code::Cancelled | tonic::Code::DeadlineExceeded)
                    && Instant::now() >= deadline =>
            {
                self.metrics.count(false);
                Err(Failure::timeout(address))
            }
            Ok(Err(status)) => {
                // Conflicts are the sender's data, not a failure of the peer.
                if status.code() != tonic::Code::AlreadyExists {
                    self.metrics.count(false);
                }
                if status.code() == tonic::Code::Unavailable {
                    peer.mark_unavailable();
                }
                Err(Failure::status(address, &status))
            }
            Err(_) => {
                self.metrics.count(false);
                Err(Failure::timeout(address))
            }
        }
    }
}

/// Thanos's `writeQuorum`: RF 2 needs one replica (a pair of Prometheus servers' guarantee),
/// otherwise a majority.
pub fn write_quorum(replication_factor: u64) -> u32 {
    if replication_factor == 2 {
        return 1;
    }
    u32::try_from(replication_factor / 2 + 1).unwrap_or(u32::MAX)
}

/// The series of one tenant written to one endpoint for one replica.
#[derive(Debug)]
struct Group {
    tenant: String,
    address: String,
    n: u64,
    local: bool,
    series: Vec<usize>,
}

struct Peer {
    client: WriteableStoreClient<SnappyChannel<Channel>>,
    permits: Semaphore,
    /// Failed attempts in a row and when the peer may be tried again.
    backoff: Mutex<Option<(u32, std::time::Instant)>>,
    max_backoff: Duration,
}

impl Peer {
    fn is_up(&self) -> bool {
        self.backoff.lock().is_none_or(|(_, until)| std::time::Instant::now() >= until)
    }

    fn mark_available(&self) {
        *self.backoff.lock() = None;
    }

    /// Backs off for 100ms × 2^attempt, at most the maximum, with jitter in the upper half as
    /// Thanos's backoff has it.
    fn mark_unavailable(&self) {
        let mut state = self.backoff.lock();
        let attempt = state.map_or(0, |(a, _)| a.saturating_add(1));
        let full = MIN_BACKOFF.saturating_mul(1u32 << attempt.min(20)).min(self.max_backoff);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let jitter = (full.saturating_sub(MIN_BACKOFF)).mul_f64(f64::from(nanos % 1000) / 1000.0);
        let wait = MIN_BACKOFF.min(full) + jitter;
        *state = Some((attempt, std::time::Instant::now() + wait));
    }

    fn reset(&self) {
        self.mark_available();
    }
}

/// The kinds Thanos tells failures apart by (`isConflict`, `isNotReady`, `isUnavailable`); a
/// peer's `Unavailable` answer is both of the last two there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds {
    pub conflict: bool,
    pub not_ready: bool,
    pub unavailable: bool,
}

/// Why one write of some series failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kinds: Kinds,
    pub message: String,
}

impl Failure {
    fn local(e: &ReceiveError) -> Failure {
        let kinds = match e {
            ReceiveError::Conflict(_) | ReceiveError::InvalidLabels(_) => Kinds { conflict: true, ..Kinds::default() },
            ReceiveError::NotReady(_) => Kinds { not_ready: true, ..Kinds::default() },
            ReceiveError::Unavailable(_) => Kinds { unavailable: true, ..Kinds::default() },
            _ => Kinds::default(),
        };
        Failure { kinds, message: format!("writing locally: {e}") }
    }

    fn status(address: &str, status: &tonic::Status) -> Failure {
        let kinds = match status.code() {
            tonic::Code::AlreadyExists => Kinds { conflict: true, ..Kinds::default() },
            tonic::Code::Unavailable => Kinds { not_ready: true, unavailable: true, ..Kinds::default() },
            // The peer did not answer in time, as when the request's own deadline passes.
            tonic::Code::DeadlineExceeded => Kinds { unavailable: true, ..Kinds::default() },
            _ => Kinds::default(),
        };
        let message = format!(
            "forwarding request to endpoint {address}: rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        );
        Failure { kinds, message }
    }

    fn unavailable(message: String) -> Failure {
        Failure { kinds: Kinds { unavailable: true, ..Kinds::default() }, message }
    }

    /// A replica that did not answer before the forward timeout.
    fn timeout(address: &str) -> Failure {
        Failure::unavailable(format!("forwarding request to endpoint {address}: context deadline exceeded"))
    }
}

/// The cause a failed series or request is answered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Conflict,
    NotReady,
    Unavailable,
}

/// Per-series quorum accounting of one request (Thanos's `fanoutForward`).
#[derive(Debug)]
pub struct Tally {
    success_threshold: u32,
    /// Failures after which a series can no longer reach the success threshold.
    failure_threshold: u32,
    successes: Vec<u32>,
    failures: Vec<u32>,
    /// Per series: how many failures were conflicts, not-ready and unavailable.
    kinds: Vec<[u32; 3]>,
    /// Per series: indexes into `reasons` of its failures.
    failed_by: Vec<Vec<u32>>,
    reasons: Vec<String>,
}

impl Tally {
    pub fn new(series: usize, replicas: u32, success_threshold: u32) -> Tally {
        Tally {
            success_threshold,
            failure_threshold: (replicas + 1).saturating_sub(success_threshold),
            successes: vec![0; series],
            failures: vec![0; series],
            kinds: vec![[0; 3]; series],
            failed_by: vec![Vec::new(); series],
            reasons: Vec::new(),
        }
    }

    /// Counts one write's result for its series.
    pub fn record(&mut self, series: &[usize], result: &Result<(), Failure>) {
        match result {
            Ok(()) => series.iter().for_each(|&i| self.successes[i] += 1),
            Err(f) => {
                let reason = self.reasons.len() as u32;
                self.reasons.push(f.message.clone());
                for &i in series {
                    self.failures[i] += 1;
                    let k = &mut self.kinds[i];
                    k[0] += u32::from(f.kinds.conflict);
                    k[1] += u32::from(f.kinds.not_ready);
                    k[2] += u32::from(f.kinds.unavailable);
                    self.failed_by[i].push(reason);
                }
            }
        }
    }

    /// Thanos's `canReturnEarly`: every series reached quorum or has so many conflicts that it
    /// never will. Other failures wait for every replica, to tell 409 from 503.
    pub fn decided(&self) -> bool {
        (0..self.successes.len())
            .all(|i| self.successes[i] >= self.success_threshold || self.kinds[i][0] >= self.failure_threshold)
    }

    /// The cause of a failed series (Thanos's `replicationErrors.Cause`): the most frequent
    /// kind if it failed at least quorum times (conflict first on a tie, then not-ready), else
    /// unavailable if there were quorum failures at all, else none Thanos names.
    fn series_cause(&self, i: usize) -> Option<Cause> {
        let k = self.kinds[i];
        let mut best = (Cause::Conflict, k[0]);
        for (cause, count) in [(Cause::NotReady, k[1]), (Cause::Unavailable, k[2])] {
            if count > best.1 {
                best = (cause, count);
            }
        }
        if best.1 >= self.success_threshold {
            return Some(best.0);
        }
        (self.failures[i] >= self.success_threshold).then_some(Cause::Unavailable)
    }

    /// The request's answer: the series that failed at least the failure threshold times
    /// decide it, preferring what a retry may fix (Thanos's `writeErrors.Cause`: unavailable,
    /// then not-ready, then conflict); failed series without such a cause are a 500.
    pub fn outcome(&self) -> Result<(), ReceiveError> {
        let mut causes = BTreeSet::new();
        let mut reasons = BTreeSet::new();
        let mut unknown = false;
        for i in 0..self.failures.len() {
            if self.failures[i] < self.failure_threshold {
                continue;
            }
            match self.series_cause(i) {
                Some(c) => {
                    causes.insert(c as u8);
                }
                None => unknown = true,
            }
            reasons.extend(self.failed_by[i].iter().map(|&r| self.reasons[r as usize].as_str()));
        }
        if causes.is_empty() && !unknown {
            return Ok(());
        }
        let mut message = String::new();
        if reasons.len() > 1 {
            message = format!("{} errors: ", reasons.len());
        }
        message.push_str(&reasons.into_iter().collect::<Vec<_>>().join("; "));
        let has = |c: Cause| causes.contains(&(c as u8));
        Err(if has(Cause::Unavailable) || has(Cause::NotReady) {
            ReceiveError::Unavailable(message)
        } else if has(Cause::Conflict) {
            ReceiveError::Conflict(message)
        } else {
            ReceiveError::Replication(message)
        })
    }
}

/// Logs what a ring change moved: endpoints that joined or left, and each endpoint's share of
/// the series (over all replicas) before and after, per hashring.
fn log_moves(old: &Ring, new: &Ring) {
    let addresses = |r: &Ring| -> BTreeSet<String> { r.endpoints().into_iter().map(|e| e.address.clone()).collect() };
    let (before, after) = (addresses(old), addresses(new));
    let joined: Vec<_> = after.difference(&before).collect();
    let left: Vec<_> = before.difference(&after).collect();
    tracing::info!(?joined, ?left, hashrings = new.hashrings().len(), "hashring changed");
    let shares = |r: &Ring| -> BTreeMap<(String, String), f64> {
        r.hashrings()
            .iter()
            .flat_map(|h| {
                let name = h.config().hashring.clone();
                h.shares().into_iter().map(move |s| ((name.clone(), s.endpoint.address), s.replicas))
            })
            .collect()
    };
    let (was, is) = (shares(old), shares(new));
    let keys: BTreeSet<_> = was.keys().chain(is.keys()).collect();
    for key in keys {
        let (a, b) = (was.get(key).copied().unwrap_or(0.0), is.get(key).copied().unwrap_or(0.0));
        if (a - b).abs() > 1e-9 {
            tracing::info!(
                hashring = %key.0,
                endpoint = %key.1,
                share_before = format!("{:.2}%", a * 100.0),
                share_after = format!("{:.2}%", b * 100.0),
                "hashring change moved series"
            );
        }
    }
}

type ResultLabels = Vec<(&'static str, &'static str)>;

/// Thanos's routing metrics.
#[derive(Clone)]
struct RouterMetrics {
    forward_requests: Family<ResultLabels, Counter>,
    replications: Family<ResultLabels, Counter>,
    replication_factor: Gauge,
}

impl RouterMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = RouterMetrics {
            forward_requests: Family::default(),
            replications: Family::default(),
            replication_factor: Gauge::default(),
        };
        registry.register(
            "thanos_receive_forward_requests",
            "The number of forward requests",
            m.forward_requests.clone(),
        );
        registry.register(
            "thanos_receive_replications",
            "The number of replication operations done by the receiver. The success of replication is fulfilled \
             when a quorum is met",
            m.replications.clone(),
        );
        registry.register(
            "thanos_receive_replication_factor",
            "The number of times to replicate incoming write requests",
            m.replication_factor.clone(),
        );
        m
    }

    /// Counts a forward. Thanos counts a replication for each forward of a write not
    /// replicated before; a replica sent here is stored here, never forwarded, so every
    /// forward is one.
    fn count(&self, ok: bool) {
        let labels = vec![("result", if ok { "success" } else { "error" })];
        self.forward_requests.get_or_create(&labels).inc();
        self.replications.get_or_create(&labels).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict() -> Result<(), Failure> {
        Err(Failure { kinds: Kinds { conflict: true, ..Kinds::default() }, message: "conflict".into() })
    }

    /// A peer's `Unavailable` answer.
    fn down() -> Result<(), Failure> {
        Err(Failure { kinds: Kinds { not_ready: true, unavailable: true, conflict: false }, message: "down".into() })
    }

    /// A peer skipped while backed off.
    fn backoff() -> Result<(), Failure> {
        Err(Failure::unavailable("backoff".into()))
    }

    type Case = (u64, Vec<Result<(), Failure>>, u16);

    fn internal() -> Result<(), Failure> {
        Err(Failure { kinds: Kinds::default(), message: "internal".into() })
    }

    fn status(rf: u64, results: &[Result<(), Failure>]) -> u16 {
        let mut tally = Tally::new(1, rf as u32, write_quorum(rf));
        for r in results {
            tally.record(&[0], r);
        }
        match tally.outcome() {
            Ok(()) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn quorum_is_thanos_write_quorum() {
        assert_eq!([1, 2, 3, 4, 5, 6, 7].map(write_quorum), [1, 1, 2, 3, 3, 4, 4]);
    }

    /// The status of a one-series request by its replicas' results, as Thanos v0.42's
    /// `fanoutForward` and `receiveHTTP` give it (handler.go; reference §1.6-1.8).
    #[test]
    fn status_by_replica_results() {
        let ok = || Ok(());
        let cases: Vec<Case> = vec![
            // RF=1: the one replica decides.
            (1, vec![ok()], 200),
            (1, vec![conflict()], 409),
            (1, vec![down()], 503),
            (1, vec![backoff()], 503),
            // Any failure of quorum size without a majority cause is "unavailable" there.
            (1, vec![internal()], 503),
            // RF=2: one replica is enough.
            (2, vec![ok(), down()], 200),
            (2, vec![conflict(), ok()], 200),
            (2, vec![conflict(), conflict()], 409),
            // Quorum 1: one conflict is a majority cause of its own, and conflict wins the tie.
            (2, vec![down(), conflict()], 409),
            // RF=3: quorum 2.
            (3, vec![ok(), ok(), down()], 200),
            (3, vec![ok(), conflict(), ok()], 200),
            (3, vec![down(), down(), ok()], 503),
            (3, vec![backoff(), down(), ok()], 503),
            (3, vec![conflict(), conflict(), ok()], 409),
            // Mixed causes without a majority: retryable.
            (3, vec![conflict(), down(), ok()], 503),
            (3, vec![conflict(), internal(), ok()], 503),
            (3, vec![internal(), internal(), ok()], 503),
            (3, vec![internal(), internal(), internal()], 503),
            // RF=4: quorum 3, two failures lose it; two failures of different kinds are fewer
            // than quorum and name no cause: 500.
            (4, vec![conflict(), down(), ok(), ok()], 500),
            (4, vec![conflict(), conflict(), conflict(), ok()], 409),
            (4, vec![down(), down(), down(), ok()], 503),
            // RF=5: quorum 3.
            (5, vec![conflict(), conflict(), ok(), ok(), ok()], 200),
            (5, vec![conflict(), conflict(), conflict(), ok(), ok()], 409),
            (5, vec![conflict(), conflict(), down(), ok(), ok()], 503),
        ];
        for (rf, results, want) in cases {
            let kinds: Vec<_> = results.iter().map(|r| r.as_ref().err().map(|f| f.message.clone())).collect();
            assert_eq!(status(rf, &results), want, "RF={rf} {kinds:?}");
        }
    }

    #[test]
    fn request_status_prefers_what_a_retry_fixes() {
        // Series 0 conflicts on two replicas, series 1 is down on two: 503 for the request.
        let mut tally = Tally::new(2, 3, 2);
        tally.record(&[0], &conflict());
        tally.record(&[0], &conflict());
        tally.record(&[1], &down());
        tally.record(&[1], &down());
        tally.record(&[0, 1], &Ok(()));
        let e = tally.outcome().unwrap_err();
        assert_eq!(e.status().as_u16(), 503);
        assert_eq!(e.to_string(), "2 errors: conflict; down");
    }

    #[test]
    fn early_return_on_success_or_conflicts_only() {
        let mut tally = Tally::new(2, 3, 2);
        tally.record(&[0, 1], &Ok(()));
        assert!(!tally.decided());
        tally.record(&[0], &Ok(()));
        tally.record(&[1], &down());
        assert!(!tally.decided(), "a failure that is not a conflict waits for every replica");
        tally.record(&[1], &Ok(()));
        assert!(tally.decided());
        assert!(tally.outcome().is_ok());

        let mut tally = Tally::new(1, 3, 2);
        tally.record(&[0], &conflict());
        tally.record(&[0], &conflict());
        assert!(tally.decided(), "two conflicts of three replicas can never make quorum");
        assert_eq!(tally.outcome().unwrap_err().status().as_u16(), 409);
    }

    #[test]
    fn replicated_writes_need_one_success() {
        // A write already replicated by another receiver carries one replica.
        let mut tally = Tally::new(1, 1, 1);
        tally.record(&[0], &Ok(()));
        assert!(tally.decided() && tally.outcome().is_ok());
        let mut tally = Tally::new(1, 1, 1);
        tally.record(&[0], &conflict());
        assert_eq!(tally.outcome().unwrap_err().status().as_u16(), 409);
    }
}
