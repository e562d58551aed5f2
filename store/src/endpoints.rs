//! The endpoint set of `strata query`, as Thanos's querier keeps it (pkg/query/endpointset.go):
//! which StoreAPI endpoints there are, which of them answer, and what each holds.
//!
//! Endpoints come from `--endpoint` values and from `--endpoint.sd-files`, each value one of:
//! - `host:port`, dialled as given;
//! - `dns+host:port`: every A/AAAA address of `host`, with `port`;
//! - `dnssrv+_service._proto.name`: the SRV records of the name, each target's A/AAAA addresses
//!   with the record's port (`dnssrvnoa+` takes the targets as they are).
//!
//! SD files are Prometheus's file-SD format (a list of `{targets: [...], labels: {...}}`, YAML
//! for `.yml`/`.yaml`, JSON for `.json`); they are looked at every second and read again when
//! they change and every SD interval; a file that cannot be read keeps its last targets. DNS
//! names are resolved again every DNS interval; a failed lookup keeps the last addresses.
//!
//! Every info interval (5s) each endpoint's Info is called (within the info timeout). An
//! endpoint that answers is in the active set, which the [`Proxy`](crate::proxy::Proxy) reads
//! from through [`StoreSource`]; one that fails is dropped from it until it answers again. Each
//! change is logged, and the gauge `thanos_store_nodes_grpc_connections{external_labels,
//! store_type}` counts the active endpoints. [`EndpointSet::statuses`] tells each endpoint's
//! state for the `/api/v1/stores` page.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use parking_lot::{Mutex, RwLock};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::proxy::{StoreRef, StoreSource};
use crate::remote::{RemoteOptions, RemoteStore};
use crate::StoreInfo;

/// How often SD files are looked at for changes.
const SD_FILE_CHECK: Duration = Duration::from_secs(1);

/// How the endpoint set finds and checks its endpoints.
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    /// `--endpoint` values.
    pub endpoints: Vec<String>,
    /// `--endpoint.sd-files`.
    pub sd_files: Vec<PathBuf>,
    /// How often SD files are read even when they seem unchanged (Thanos's `--store.sd-interval`, 5m).
    pub sd_interval: Duration,
    /// How often `dns+` and `dnssrv+` names are resolved (Thanos's `--store.sd-dns-interval`, 30s).
    pub dns_interval: Duration,
    /// How often every endpoint's Info is called (5s, as Thanos).
    pub info_interval: Duration,
    /// Connection and Info timeouts (`--endpoint.info-timeout`, 5s) of each endpoint.
    pub remote: RemoteOptions,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        EndpointOptions {
            endpoints: Vec::new(),
            sd_files: Vec::new(),
            sd_interval: Duration::from_secs(300),
            dns_interval: Duration::from_secs(30),
            info_interval: Duration::from_secs(5),
            remote: RemoteOptions::default(),
        }
    }
}

/// An endpoint value, as `--endpoint` and SD files give it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EndpointSpec {
    /// `host:port`, dialled as it is.
    Static(String),
    /// `dns+host:port`.
    Dns { host: String, port: u16 },
    /// `dnssrv+name` (`resolve_targets`) or `dnssrvnoa+name`.
    Srv { name: String, resolve_targets: bool },
}

/// Why an endpoint value or an SD file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint {0:?}: expected host:port after dns+")]
    DnsWithoutPort(String),
    #[error("endpoint {0:?}: empty")]
    Empty(String),
    #[error("SD file {path}: {message}")]
    SdFile { path: String, message: String },
}

impl EndpointSpec {
    pub fn parse(value: &str) -> Result<Self, EndpointError> {
        let value = value.trim();
        let nonempty = |rest: &str| {
            if rest.is_empty() {
                Err(EndpointError::Empty(value.to_owned()))
            } else {
                Ok(rest.to_owned())
            }
        };
        if let Some(rest) = value.strip_prefix("dns+") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| EndpointError::DnsWithoutPort(value.to_owned()))?;
            let port = port.parse().map_err(|_| EndpointError::DnsWithoutPort(value.to_owned()))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            return Ok(EndpointSpec::Dns { host: nonempty(host)?, port });
        }
        if let Some(rest) = value.strip_prefix("dnssrv+") {
            return Ok(EndpointSpec::Srv { name: nonempty(rest)?, resolve_targets: true });
        }
        if let Some(rest) = value.strip_prefix("dnssrvnoa+") {
            return Ok(EndpointSpec::Srv { name: nonempty(rest)?, resolve_targets: false });
        }
        Ok(EndpointSpec::Static(nonempty(value)?))
    }
}

impl fmt::Display for EndpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointSpec::Static(a) => f.write_str(a),
            EndpointSpec::Dns { host, port } if host.contains(':') => write!(f, "dns+[{host}]:{port}"),
            EndpointSpec::Dns { host, port } => write!(f, "dns+{host}:{port}"),
            EndpointSpec::Srv { name, resolve_targets: true } => write!(f, "dnssrv+{name}"),
            EndpointSpec::Srv { name, resolve_targets: false } => write!(f, "dnssrvnoa+{name}"),
        }
    }
}

/// One target group of a Prometheus file-SD file; labels are read and not used (an endpoint
/// has its labels from Info).
#[derive(Debug, Deserialize)]
struct TargetGroup {
    #[serde(default)]
    targets: Vec<String>,
}

/// The targets of an SD file's text, in the format its extension names.
pub fn parse_sd_file(path: &Path, text: &str) -> Result<Vec<String>, EndpointError> {
    let error = |message: String| EndpointError::SdFile { path: path.display().to_string(), message };
    let groups: Vec<TargetGroup> = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(text).map_err(|e| error(e.to_string()))?,
        Some("yml" | "yaml") => {
            if text.trim().is_empty() {
                Vec::new()
            } else {
                serde_norway::from_str(text).map_err(|e| error(e.to_string()))?
            }
        }
        _ => return Err(error("the extension must be .json, .yml or .yaml".into())),
    };
    Ok(groups.into_iter().flat_map(|g| g.targets).collect())
}

/// What the `/api/v1/stores` page tells of an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStatus {
    pub address: String,
    /// Whether its last Info call answered (it is in the active set).
    pub healthy: bool,
    pub last_error: Option<String>,
    /// When its Info was last called; `None` before the first call ends.
    pub last_check: Option<SystemTime>,
    /// Its last Info answer: component, external label sets, time range, TSDBs.
    pub info: Option<StoreInfo>,
}

/// A Prometheus file-SD file and what was last read from it; the querier's `--endpoint.sd-files`
/// and the ruler's `file_sd_configs` keep their files with it.
pub struct SdFile {
    path: PathBuf,
    /// Modification time and length at the last read.
    stamp: Option<(SystemTime, u64)>,
    read_at: Option<Instant>,
    targets: Vec<String>,
}

impl SdFile {
    /// A file not read yet: [`due`](Self::due) at once.
    pub fn new(path: PathBuf) -> SdFile {
        SdFile { path, stamp: None, read_at: None, targets: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The targets of the last successful read.
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    fn current_stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// Whether the file changed (modification time or length) or was last read `interval` ago.
    pub fn due(&self, interval: Duration) -> bool {
        self.read_at.is_none_or(|t| t.elapsed() >= interval) || self.current_stamp() != self.stamp
    }

    /// Reads the file again; on failure its last targets stay.
    pub fn reload(&mut self) {
        self.read_at = Some(Instant::now());
        let stamp = self.current_stamp();
        let read = std::fs::read_to_string(&self.path)
            .map_err(|e| EndpointError::SdFile { path: self.path.display().to_string(), message: e.to_string() })
            .and_then(|text| parse_sd_file(&self.path, &text));
        match read {
            Ok(targets) => {
                if targets != self.targets {
                    tracing::info!(file = %self.path.display(), targets = targets.len(), "endpoint SD file read");
                }
                self.targets = targets;
                self.stamp = stamp;
            }
            Err(e) => tracing::warn!(error = %e, "keeping the last targets of the endpoint SD file"),
        }
    }
}

/// The addresses a DNS name had at its last lookup.
struct Resolved {
    addresses: Vec<String>,
    at: Instant,
}

struct Endpoint {
    /// `None` when the address cannot be dialled at all (the error is in the status).
    store: Option<RemoteStore>,
    status: EndpointStatus,
}

#[derive(Default)]
struct State {
    sd_files: Vec<SdFile>,
    resolved: HashMap<EndpointSpec, Resolved>,
    endpoints: BTreeMap<String, Endpoint>,
}

/// The endpoints of a querier and their health. See the module documentation.
pub struct EndpointSet {
    options: EndpointOptions,
    specs: Vec<EndpointSpec>,
    state: Mutex<State>,
    /// The endpoints whose last Info answered, by address.
    active: RwLock<Vec<StoreRef>>,
    /// One update at a time.
    round: tokio::sync::Mutex<()>,
    resolver: Resolver,
    connections: Arc<ConnectionsGauge>,
}

impl EndpointSet {
    /// The endpoint set of `options`, its gauge registered in `registry`. Nothing is called
    /// until [`update`](Self::update) or [`spawn`](Self::spawn).
    pub fn new(options: EndpointOptions, registry: &mut Registry) -> Result<Arc<Self>, EndpointError> {
        let specs = options.endpoints.iter().map(|e| EndpointSpec::parse(e)).collect::<Result<Vec<_>, _>>()?;
        let sd_files = options.sd_files.iter().map(|path| SdFile::new(path.clone())).collect();
        let connections = Arc::new(ConnectionsGauge::default());
        registry.register_collector(Box::new(connections.clone()));
        Ok(Arc::new(EndpointSet {
            options,
            specs,
            state: Mutex::new(State { sd_files, ..State::default() }),
            active: RwLock::new(Vec::new()),
            round: tokio::sync::Mutex::new(()),
            resolver: Resolver::default(),
            connections,
        }))
    }

    /// Keeps the set up to date until `shutdown`: an update every info interval, and at once
    /// when an SD file changes.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let set = self.clone();
        tokio::spawn(async move {
            let mut last: Option<Instant> = None;
            loop {
                let due = last.is_none_or(|t| t.elapsed() >= set.options.info_interval);
                if due || set.sd_files_due() {
                    last = Some(Instant::now());
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = set.update() => {}
                    }
                }
                let pause = SD_FILE_CHECK.min(set.options.info_interval);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        })
    }

    fn sd_files_due(&self) -> bool {
        self.state.lock().sd_files.iter().any(|f| f.due(self.options.sd_interval))
    }

    /// One round: SD files read if they changed, names resolved if due, every endpoint's Info
    /// called, the active set, the gauge and the statuses updated.
    pub async fn update(&self) {
        let _round = self.round.lock().await;
        let specs = {
            let mut state = self.state.lock();
            let mut specs = self.specs.clone();
            for file in &mut state.sd_files {
                if file.due(self.options.sd_interval) {
                    file.reload();
                }
                for target in &file.targets {
                    match EndpointSpec::parse(target) {
                        Ok(spec) => specs.push(spec),
                        Err(e) => tracing::warn!(error = %e, file = %file.path.display(), "endpoint target left out"),
                    }
                }
            }
            specs
        };
        let addresses = self.resolve(specs).await;
        let stores = self.reconcile(&addresses);
        let checks = stores.into_iter().map(|(address, store)| async move {
            let answer = store.refresh_info().await;
            (address, answer)
        });
        let answers = futures::future::join_all(checks).await;
        self.apply(answers);
    }

    /// The addresses of `specs`, without duplicates, in order.
    async fn resolve(&self, specs: Vec<EndpointSpec>) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut addresses = Vec::new();
        for spec in specs {
            let found = match &spec {
                EndpointSpec::Static(address) => vec![address.clone()],
                _ => self.resolve_name(&spec).await,
            };
            for a in found {
                if seen.insert(a.clone()) {
                    addresses.push(a);
                }
            }
        }
        addresses
    }

    /// The addresses of a `dns+` or `dnssrv+` spec: looked up when the last lookup is older than
    /// the DNS interval, the last ones when a lookup fails.
    async fn resolve_name(&self, spec: &EndpointSpec) -> Vec<String> {
        {
            let state = self.state.lock();
            if let Some(r) = state.resolved.get(spec) {
                if r.at.elapsed() < self.options.dns_interval {
                    return r.addresses.clone();
                }
            }
        }
        let looked_up = self.resolver.resolve(spec).await;
        let mut state = self.state.lock();
        match looked_up {
            Ok(addresses) => {
                state.resolved.insert(spec.clone(), Resolved { addresses: addresses.clone(), at: Instant::now() });
                addresses
            }
            Err(e) => {
                tracing::warn!(endpoint = %spec, error = %e, "DNS lookup of an endpoint failed; keeping its last addresses");
                state.resolved.get(spec).map(|r| r.addresses.clone()).unwrap_or_default()
            }
        }
    }

    /// Makes the endpoints those at `addresses`: new ones get a (lazy) connection, those no
    /// longer listed go. Returns the endpoints to check.
    fn reconcile(&self, addresses: &[String]) -> Vec<(String, RemoteStore)> {
        let mut state = self.state.lock();
        let wanted: BTreeSet<&String> = addresses.iter().collect();
        state.endpoints.retain(|address, _| {
            let keep = wanted.contains(address);
            if !keep {
                tracing::info!(%address, "endpoint no longer configured: removing it");
            }
            keep
        });
        for address in addresses {
            if state.endpoints.contains_key(address) {
                continue;
            }
            let (store, last_error) = match RemoteStore::connect_lazy(address, self.options.remote.clone()) {
                Ok(store) => (Some(store), None),
                Err(e) => {
                    tracing::warn!(%address, error = %e, "endpoint cannot be dialled");
                    (None, Some(e.to_string()))
                }
            };
            let status =
                EndpointStatus { address: address.clone(), healthy: false, last_error, last_check: None, info: None };
            state.endpoints.insert(address.clone(), Endpoint { store, status });
        }
        state.endpoints.iter().filter_map(|(a, e)| Some((a.clone(), e.store.clone()?))).collect()
    }

    /// Takes in the Info answers of a round.
    fn apply(&self, answers: Vec<(String, Result<StoreInfo, strata_storage::StorageError>)>) {
        let mut state = self.state.lock();
        let now = SystemTime::now();
        for (address, answer) in answers {
            // Removed while its Info was being called.
            let Some(endpoint) = state.endpoints.get_mut(&address) else { continue };
            let status = &mut endpoint.status;
            let was_healthy = status.healthy;
            status.last_check = Some(now);
            match answer {
                Ok(info) => {
                    if !was_healthy {
                        tracing::info!(
                            %address,
                            component = info.component.as_str(),
                            external_labels = %label_sets_string(&info),
                            "adding endpoint to the active set"
                        );
                    }
                    status.healthy = true;
                    status.last_error = None;
                    status.info = Some(info);
                }
                Err(e) => {
                    let first_failure = was_healthy || status.last_error.is_none();
                    if first_failure {
                        tracing::warn!(%address, error = %e, "removing endpoint because it's unhealthy or does not exist");
                    }
                    status.healthy = false;
                    status.last_error = Some(e.to_string());
                }
            }
        }
        let active: Vec<StoreRef> = state
            .endpoints
            .iter()
            .filter(|(_, e)| e.status.healthy)
            .filter_map(|(address, e)| {
                let store = e.store.clone()?;
                Some(StoreRef::remote(address.clone(), Arc::new(store)))
            })
            .collect();
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        for e in state.endpoints.values().filter(|e| e.status.healthy) {
            if let Some(info) = &e.status.info {
                *counts.entry((label_sets_string(info), info.component.as_str().to_owned())).or_default() += 1;
            }
        }
        self.connections.set(counts);
        *self.active.write() = active;
    }

    /// Each endpoint's status, by address.
    pub fn statuses(&self) -> Vec<EndpointStatus> {
        self.state.lock().endpoints.values().map(|e| e.status.clone()).collect()
    }
}

impl StoreSource for EndpointSet {
    fn stores(&self) -> Vec<StoreRef> {
        self.active.read().clone()
    }
}

/// Every A/AAAA address of `host`, with `port`.
/// Turns endpoint specs into addresses: a static address as it is, `dns+` through the
/// system's resolver, `dnssrv+` through SRV records (the SRV resolver is built at the first
/// such lookup). Queriers' endpoints and the ruler's query APIs and Alertmanagers use it.
#[derive(Default)]
pub struct Resolver {
    srv: OnceCell<Result<TokioResolver, String>>,
}

impl Resolver {
    /// The addresses `spec` names now (`host:port` each).
    pub async fn resolve(&self, spec: &EndpointSpec) -> Result<Vec<String>, String> {
        match spec {
            EndpointSpec::Static(a) => Ok(vec![a.clone()]),
            EndpointSpec::Dns { host, port } => lookup_host(host, *port).await,
            EndpointSpec::Srv { name, resolve_targets } => self.lookup_srv(name, *resolve_targets).await,
        }
    }

    async fn lookup_srv(&self, name: &str, resolve_targets: bool) -> Result<Vec<String>, String> {
        let resolver = self
            .srv
            .get_or_init(|| async {
                TokioResolver::builder_tokio().and_then(|b| b.build()).map_err(|e| format!("DNS resolver: {e}"))
            })
            .await
            .as_ref()
            .map_err(Clone::clone)?;
        let lookup = resolver.srv_lookup(name).await.map_err(|e| e.to_string())?;
        let mut addresses = Vec::new();
        for record in lookup.answers() {
            let RData::SRV(srv) = &record.data else { continue };
            let target = srv.target.to_utf8();
            let target = target.trim_end_matches('.');
            if resolve_targets {
                addresses.extend(lookup_host(target, srv.port).await?);
            } else {
                addresses.push(format!("{target}:{}", srv.port));
            }
        }
        Ok(addresses)
    }
}

async fn lookup_host(host: &str, port: u16) -> Result<Vec<String>, String> {
    let found = tokio::net::lookup_host((host, port)).await.map_err(|e| format!("lookup of {host}: {e}"))?;
    Ok(found.map(|a| a.to_string()).collect())
}

/// Thanos's `PromLabelSetsToString`: each label set as Prometheus prints it, sorted, joined by
/// commas.
fn label_sets_string(info: &StoreInfo) -> String {
    let mut sets: Vec<String> = info.label_sets.iter().map(ToString::to_string).collect();
    sets.sort();
    sets.join(",")
}

/// `thanos_store_nodes_grpc_connections`: replaced whole at each round, so a scrape never sees
/// half of one.
#[derive(Debug, Default)]
struct ConnectionsGauge {
    /// By external labels and store type.
    counts: Mutex<BTreeMap<(String, String), i64>>,
}

impl ConnectionsGauge {
    fn set(&self, counts: BTreeMap<(String, String), i64>) {
        *self.counts.lock() = counts;
    }
}

impl Collector for ConnectionsGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let counts = self.counts.lock();
        let mut family = encoder.encode_descriptor(
            "thanos_store_nodes_grpc_connections",
            "Number of gRPC connection to Store APIs. Opened connection means healthy store APIs available for Querier",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for ((external_labels, store_type), n) in counts.iter() {
            let labels = [("external_labels", external_labels.as_str()), ("store_type", store_type.as_str())];
            ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_values_as_thanos_reads_them() {
        let parse = |v: &str| EndpointSpec::parse(v).unwrap();
        assert_eq!(parse("receive-0:10901"), EndpointSpec::Static("receive-0:10901".into()));
        assert_eq!(parse("dns+receive.svc:10901"), EndpointSpec::Dns { host: "receive.svc".into(), port: 10901 });
        assert_eq!(parse("dns+[::1]:10901"), EndpointSpec::Dns { host: "::1".into(), port: 10901 });
        assert_eq!(
            parse("dnssrv+_grpc._tcp.receive.svc"),
            EndpointSpec::Srv { name: "_grpc._tcp.receive.svc".into(), resolve_targets: true }
        );
        assert_eq!(
            parse("dnssrvnoa+_grpc._tcp.receive.svc"),
            EndpointSpec::Srv { name: "_grpc._tcp.receive.svc".into(), resolve_targets: false }
        );
        for v in ["dns+receive.svc:10901", "dns+[::1]:10901", "dnssrv+_grpc._tcp.x", "dnssrvnoa+x", "host:1"] {
            assert_eq!(parse(v).to_string(), v);
        }
        for bad in ["dns+receive.svc", "dns+host:port", "dns+:10901", "dnssrv+", ""] {
            assert!(EndpointSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sd_files_in_prometheus_format() {
        let yaml = "- targets: ['a:1', 'b:2']\n  labels:\n    team: x\n- targets: ['dns+c:3']\n";
        assert_eq!(parse_sd_file(Path::new("t.yml"), yaml).unwrap(), ["a:1", "b:2", "dns+c:3"]);
        assert_eq!(parse_sd_file(Path::new("t.yaml"), "").unwrap(), Vec::<String>::new());
        let json = r#"[{"targets": ["a:1"], "labels": {"team": "x"}}, {"labels": {}}]"#;
        assert_eq!(parse_sd_file(Path::new("t.json"), json).unwrap(), ["a:1"]);
        assert!(parse_sd_file(Path::new("t.json"), "{").is_err());
        assert!(parse_sd_file(Path::new("t.yml"), "targets: a").is_err());
        assert!(parse_sd_file(Path::new("t.txt"), "[]").is_err());
    }
}
