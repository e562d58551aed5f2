//! The `strata` binary: one subcommand per component. Flag parsing and wiring only.

mod compact;
mod logging;
mod memory;
mod objstore;
mod query;
mod query_frontend;
mod rule;
mod sidecar;
mod store;
mod tools;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt as _;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use strata_query::api::{ApiState, QuerierOptions};
use strata_query::engine::EngineOptions;
use strata_receiver::http::ReadyCondition;
use strata_receiver::limits::{Limiter, LimitsSource};
use strata_receiver::{
    BuildInfo, Compression, ForwardOptions, Receiver, ReceiverConfig, RequestLimits, RoutingConfig, Shipping,
    TenantLabels,
};
use strata_ring::{RingOptions, RingSource};
use strata_store::bucket::{BucketStore, BucketStoreOptions};
use strata_store::proxy::{Proxy, ProxyOptions, StoreRef};
use strata_store::server::{SeriesLimits, ServerOptions};
use strata_store::Component;
use strata_tsdb::db::DbOptions;
use strata_tsdb::wal::WalOptions;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(name = "strata", version, about = "Long-term, highly available Prometheus storage")]
struct Cli {
    /// Log filter: error, warn, info, debug, or a tracing filter such as `strata_tsdb=debug`.
    /// Tools log at warn unless this is given.
    #[arg(long = "log.level", env = "STRATA_LOG_LEVEL", default_value = "info", global = true)]
    log_level: String,
    #[arg(long = "log.format", value_enum, default_value = "logfmt", global = true)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Accept Prometheus remote write into per-tenant TSDBs.
    Receive(ReceiveArgs),
    /// Everything in one process on one machine: the receiver with local defaults, the query
    /// API over its tenants and its bucket, the compactor over the bucket and the bucket page.
    Standalone(StandaloneArgs),
    /// PromQL over many StoreAPI endpoints, with HA deduplication (Thanos's querier).
    Query(query::QueryCmdArgs),
    /// Splits, retries and caches range queries in front of a query API (Thanos's
    /// query-frontend).
    QueryFrontend(query_frontend::QueryFrontendArgs),
    /// The store gateway: the blocks of an object storage bucket over the StoreAPI, read in
    /// place (Thanos's store).
    Store(store::StoreCmdArgs),
    /// Evaluates Prometheus recording and alerting rules against query APIs, sends alerts to
    /// Alertmanager and serves the recorded series over the StoreAPI (Thanos's ruler).
    Rule(rule::RuleArgs),
    /// Next to a Prometheus: its data over the StoreAPI through remote read, its blocks
    /// shipped to the bucket (Thanos's sidecar).
    Sidecar(sidecar::SidecarCmdArgs),
    /// The compactor: merges a bucket's blocks into 8h, 2d and 14d blocks, deduplicates
    /// replicas, applies retention and deletes marked blocks (Thanos's compact).
    Compact(compact::CompactArgs),
    /// Operator and benchmark utilities.
    Tools(tools::ToolsArgs),
}

/// Standalone's `--data-dir` default and its subdirectories: the receiver's TSDBs and the
/// local bucket (which the tools also use by default).
const DEFAULT_DATA_DIR: &str = "./data";
const RECEIVE_DIR: &str = "receive";
const BUCKET_DIR: &str = "bucket";
/// Standalone's store over its bucket keeps its index headers here.
const STORE_DIR: &str = "store";
/// Standalone's ruler (with `--rule-file`) keeps its TSDB here.
const RULE_DIR: &str = "rule";
/// Standalone's compactor downloads and merges blocks here.
const COMPACT_DIR: &str = "compact";
/// Where standalone serves the bucket page, apart from the query UI's paths.
const BUCKET_PAGE_PREFIX: &str = "/bucket";

/// Flags shared by `receive` and `standalone`.
#[derive(Args)]
struct ListenArgs {
    /// Address of the remote-write endpoint (path /api/v1/receive).
    #[arg(long = "remote-write.address", default_value = "0.0.0.0:19291")]
    remote_write_address: SocketAddr,
    /// Address for /metrics, /-/healthy, /-/ready and the HTTP API.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// Address of the gRPC StoreAPI (`thanos.Store`) and Info API over every tenant.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: SocketAddr,
    /// Most series one StoreAPI Series call may answer; more fails the call. 0 disables the limit.
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    store_request_series: u64,
    /// Most samples one StoreAPI Series call may answer (counted from the chunk headers, where
    /// Thanos counts 120 per chunk); more fails the call. 0 disables the limit.
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    store_request_samples: u64,
}

#[derive(Args)]
struct ReceiverArgs {
    /// HTTP header naming the tenant of a write.
    #[arg(long = "receive.tenant-header", default_value = "THANOS-TENANT")]
    tenant_header: String,
    /// Tenant of writes without the tenant header.
    #[arg(long = "receive.default-tenant-id", default_value = "default-tenant")]
    default_tenant: String,
    /// HTTP header carrying the 1-based replica of a write another receiver already replicated.
    #[arg(long = "receive.replica-header", default_value = "THANOS-REPLICA")]
    replica_header: String,
    /// Largest accepted request body (compressed), in bytes; 0 disables the limit.
    #[arg(long = "receive.max-request-bytes", default_value_t = RequestLimits::default().max_body_bytes)]
    max_request_bytes: u64,
    /// Largest accepted request after snappy decompression, in bytes; 0 disables the limit.
    #[arg(long = "receive.max-request-decompressed-bytes", default_value_t = RequestLimits::default().max_decompressed_bytes)]
    max_request_decompressed_bytes: u64,
    /// Most series in one request; 0 disables the limit.
    #[arg(long = "receive.max-request-series", default_value_t = RequestLimits::default().max_series)]
    max_request_series: u64,
    /// Most samples in one request; 0 disables the limit.
    #[arg(long = "receive.max-request-samples", default_value_t = RequestLimits::default().max_samples)]
    max_request_samples: u64,
    /// How long blocks are kept: blocks ending this long before the newest block's end are
    /// deleted. Prometheus duration syntax; 0 keeps everything.
    #[arg(long = "tsdb.retention", default_value = "15d", value_parser = parse_duration_flag)]
    retention: i64,
    /// External label of this receiver's blocks, as `name="value"` (repeatable). Shipping
    /// needs at least one.
    #[arg(long = "label", value_parser = parse_label_flag)]
    labels: Vec<(String, String)>,
    /// Label added to each tenant's external labels with the tenant as its value.
    #[arg(long = "receive.tenant-label-name", default_value = "tenant_id")]
    tenant_label_name: String,
    /// Label naming the tenant of each series (it wins over the tenant header; the series is
    /// stored without it).
    #[arg(long = "receive.split-tenant-label-name")]
    split_tenant_label: Option<String>,
    /// Thanos's write limits YAML (write gate, per-tenant request and head series limits),
    /// re-read every `--receive.limits-config-reload-timer` and applied when it changed.
    #[arg(long = "receive.limits-config-file", conflicts_with = "limits_config")]
    limits_config_file: Option<PathBuf>,
    /// The write limits YAML itself.
    #[arg(long = "receive.limits-config")]
    limits_config: Option<String>,
    /// How often the limits file is re-read.
    #[arg(long = "receive.limits-config-reload-timer", default_value = "1s", value_parser = parse_duration_flag)]
    limits_reload: i64,
    #[command(flatten)]
    objstore: objstore::ObjstoreArgs,
    /// Snappy-compress WAL records (as Prometheus does by default).
    #[arg(long = "tsdb.wal-compression", default_value_t = true, action = clap::ArgAction::Set)]
    wal_compression: bool,
}

/// The hashring and forwarding (Thanos's flags). With a hashring and a local endpoint the
/// receiver routes and stores its share; with a hashring alone it only routes; without one it
/// stores whatever it is sent.
#[derive(Args)]
struct RingArgs {
    /// Path of the hashrings.json, re-read when it changes and every refresh interval.
    #[arg(long = "receive.hashrings-file", conflicts_with = "hashrings")]
    hashrings_file: Option<PathBuf>,
    /// The hashrings.json content itself.
    #[arg(long = "receive.hashrings")]
    hashrings: Option<String>,
    /// How often the hashrings file is re-read even when it has not changed.
    #[arg(long = "receive.hashrings-file-refresh-interval", default_value = "5m", value_parser = parse_duration_flag)]
    hashrings_refresh: i64,
    /// Algorithm of hashrings that do not name one: hashmod or ketama.
    #[arg(long = "receive.hashrings-algorithm", default_value = "hashmod")]
    algorithm: strata_ring::Algorithm,
    /// This receiver's address in the hashrings (its gRPC address as the file lists it).
    #[arg(long = "receive.local-endpoint")]
    local_endpoint: Option<String>,
    /// Replicas of each series.
    #[arg(long = "receive.replication-factor", default_value_t = 1)]
    replication_factor: u64,
    /// Longest a write waits for its replicas.
    #[arg(long = "receive-forward-timeout", default_value = "5s", value_parser = parse_duration_flag)]
    forward_timeout: i64,
    /// Longest an unavailable receiver is skipped.
    #[arg(long = "receive-forward-max-backoff", default_value = "5s", value_parser = parse_duration_flag)]
    forward_max_backoff: i64,
    /// Forwards in flight to each receiver.
    #[arg(long = "receive.forward.async-workers", default_value_t = 5)]
    forward_workers: usize,
    /// Compression of forwarded writes: snappy or none.
    #[arg(long = "receive.grpc-compression", default_value = "snappy", value_parser = ["snappy", "none"])]
    grpc_compression: String,
}

impl RingArgs {
    /// The routing configuration, `None` without a hashring (ingestor only).
    fn routing(&self) -> Option<RoutingConfig> {
        let source = match (&self.hashrings_file, &self.hashrings) {
            (Some(path), _) => {
                RingSource::File { path: path.clone(), refresh_interval: millis(self.hashrings_refresh) }
            }
            (None, Some(content)) if !content.is_empty() => RingSource::Inline(content.clone()),
            _ => return None,
        };
        Some(RoutingConfig {
            source,
            options: RingOptions { algorithm: self.algorithm, replication_factor: self.replication_factor },
            local_endpoint: self.local_endpoint.clone().filter(|e| !e.is_empty()),
            forward: ForwardOptions {
                timeout: millis(self.forward_timeout),
                max_backoff: millis(self.forward_max_backoff),
                workers: self.forward_workers,
                compression: if self.grpc_compression == "none" { Compression::None } else { Compression::Snappy },
                ..ForwardOptions::default()
            },
        })
    }
}

/// A duration flag's milliseconds as a `Duration` (negative as zero).
pub(crate) fn millis(ms: i64) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[derive(Args)]
struct ReceiveArgs {
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    receiver: ReceiverArgs,
    #[command(flatten)]
    ring: RingArgs,
    /// Directory of the per-tenant TSDBs (`<path>/<tenant>/`). Blocks are shipped when an
    /// objstore flag is given.
    #[arg(long = "tsdb.path", default_value = "./data")]
    tsdb_path: PathBuf,
}

#[derive(Args)]
struct StandaloneArgs {
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    receiver: ReceiverArgs,
    /// Directory for all data: the receiver's TSDBs in `<data-dir>/receive/`, and, unless an
    /// objstore flag is given, the bucket in `<data-dir>/bucket/` (blocks get the external label
    /// receive="standalone" unless `--label` is given). The store over the bucket keeps its
    /// index headers in `<data-dir>/store/`, the ruler (with `--rule-file`) its TSDB in
    /// `<data-dir>/rule/`, the compactor its scratch space in `<data-dir>/compact/`.
    #[arg(long = "data-dir", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// How often the store over the bucket lists it for new and removed blocks (as
    /// `strata store`'s flag).
    #[arg(long = "sync-block-duration", default_value = "15m", value_parser = parse_duration_flag)]
    sync_block_duration: i64,
    #[command(flatten)]
    query: QueryArgs,
    #[command(flatten)]
    querier: query::QuerierFlags,
    #[command(flatten)]
    rule: rule::StandaloneRuleArgs,
    #[command(flatten)]
    compact: compact::StandaloneCompactArgs,
}

/// PromQL settings (Thanos `query` flag names).
#[derive(Args)]
pub(crate) struct QueryArgs {
    /// Longest a query may run; a request's `timeout` parameter can only shorten it.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = parse_duration_flag)]
    timeout: i64,
    /// How far back an instant selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = parse_duration_flag)]
    lookback_delta: i64,
    /// Most samples a query may load or hold at once.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    max_samples: usize,
}

/// What standalone runs beside its receiver: the query API over the receiver's TSDBs and a
/// store over the bucket the receiver ships to, so queries reach blocks local retention deleted.
struct StandaloneSetup {
    query: QuerySetup,
    /// The store's data dir (index headers).
    store_dir: PathBuf,
    sync_interval: std::time::Duration,
    rule: rule::StandaloneRuleArgs,
    /// The ruler's TSDB.
    rule_dir: PathBuf,
    compact: compact::StandaloneCompactArgs,
    /// The compactor's scratch space.
    compact_dir: PathBuf,
}

/// What the query API needs besides its storage.
pub(crate) struct QuerySetup {
    pub(crate) engine: EngineOptions,
    pub(crate) querier: QuerierOptions,
    pub(crate) flags: BTreeMap<String, String>,
    pub(crate) retention: String,
}

/// The query API's settings for `subcommand`, and its command line for /api/v1/status/flags.
pub(crate) fn query_setup(
    q: &QueryArgs,
    querier: &query::QuerierFlags,
    matches: &clap::ArgMatches,
    subcommand: &str,
) -> QuerySetup {
    let cli = Cli::command();
    let flags = match (cli.find_subcommand(subcommand), matches.subcommand_matches(subcommand)) {
        (Some(sub), Some(m)) => flag_values(&cli, sub, m),
        _ => BTreeMap::new(),
    };
    QuerySetup {
        engine: EngineOptions {
            lookback_delta: q.lookback_delta,
            max_samples: q.max_samples,
            timeout: std::time::Duration::from_millis(u64::try_from(q.timeout).unwrap_or(0)),
        },
        querier: querier.options(),
        retention: flags.get("tsdb.retention").cloned().unwrap_or_default(),
        flags,
    }
}

/// Every value-taking flag of the command line (global ones included) with its given or default
/// value, by long name, for /api/v1/status/flags. An inline objstore config may hold
/// credentials and is not shown.
fn flag_values(cli: &clap::Command, sub: &clap::Command, m: &clap::ArgMatches) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for arg in cli.get_arguments().chain(sub.get_arguments()) {
        let Some(long) = arg.get_long().filter(|_| arg.get_action().takes_values()) else { continue };
        let values = m.try_get_raw(arg.get_id().as_str()).ok().flatten();
        let value = values.map(|v| v.map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(",")).unwrap_or_default();
        let shown = if long == "objstore.config" && !value.is_empty() { "<hidden>".to_owned() } else { value };
        out.insert(long.to_owned(), shown);
    }
    out
}

/// Receiver settings from the flags. `default_bucket` is used when no objstore flag is given
/// (standalone keeps its blocks in a local-directory bucket by default).
fn receiver_config(
    tsdb_path: PathBuf,
    t: &ReceiverArgs,
    default_bucket: Option<(PathBuf, (String, String))>,
) -> anyhow::Result<ReceiverConfig> {
    let mut external: BTreeMap<String, String> = t.labels.iter().cloned().collect();
    let bucket = match (t.objstore.bucket()?, default_bucket) {
        (Some(b), _) => Some(b),
        (None, Some((dir, label))) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create bucket directory {}", dir.display()))?;
            if external.is_empty() {
                external.insert(label.0, label.1);
            }
            Some(objstore::filesystem_bucket(&dir, "the default local bucket")?)
        }
        (None, None) => None,
    };
    Ok(ReceiverConfig {
        tsdb_path,
        tenant_header: t.tenant_header.clone(),
        default_tenant: t.default_tenant.clone(),
        replica_header: t.replica_header.clone(),
        split_tenant_label: t.split_tenant_label.clone().filter(|l| !l.is_empty()),
        limiter: Arc::new(match (&t.limits_config_file, &t.limits_config) {
            (Some(path), _) => {
                Limiter::load(LimitsSource::File { path: path.clone(), reload_interval: millis(t.limits_reload) })
                    .context("load the limits configuration")?
            }
            (None, Some(content)) => {
                Limiter::load(LimitsSource::Inline(content.clone())).context("load the limits configuration")?
            }
            (None, None) => Limiter::default(),
        }),
        limits: RequestLimits {
            max_body_bytes: t.max_request_bytes,
            max_decompressed_bytes: t.max_request_decompressed_bytes,
            max_series: t.max_request_series,
            max_samples: t.max_request_samples,
        },
        build: build_info(),
        db: DbOptions {
            wal: WalOptions { compress: t.wal_compression, ..WalOptions::default() },
            retention: (t.retention > 0).then_some(t.retention),
            ..DbOptions::default()
        },
        labels: TenantLabels { external, tenant_label_name: t.tenant_label_name.clone() },
        shipping: bucket.map(|bucket| Shipping { bucket, wake: Arc::default() }),
    })
}

/// Parses a Thanos `--label` value: `name="value"` with a Go-quoted value.
fn parse_label_flag(s: &str) -> Result<(String, String), String> {
    let bad = || format!("invalid label {s:?}: expected name=\"value\", e.g. replica=\"0\"");
    let (name, value) = s.split_once('=').ok_or_else(bad)?;
    let valid_name =
        name.chars().enumerate().all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if name.is_empty() || !valid_name {
        return Err(bad());
    }
    let inner = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).ok_or_else(bad)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c @ ('\\' | '"')) => out.push(c),
                _ => return Err(bad()),
            },
            '"' => return Err(bad()),
            c => out.push(c),
        }
    }
    Ok((name.to_owned(), out))
}

/// A Prometheus duration flag (`15d`, `1h30m`), in milliseconds.
pub(crate) fn parse_duration_flag(s: &str) -> Result<i64, strata_tsdb::gotext::DurationError> {
    // At most 2^63 - 1 ns, so the milliseconds fit.
    strata_tsdb::gotext::parse_duration(s).map(|d| d.as_millis() as i64)
}

/// What this binary was built from (see build.rs).
pub(crate) fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        revision: env!("STRATA_REVISION").to_owned(),
        branch: env!("STRATA_BRANCH").to_owned(),
        rust_version: env!("STRATA_RUST_VERSION").to_owned(),
    }
}

/// The log filter: `--log.level` (or STRATA_LOG_LEVEL), whose default is `info`, except that
/// tools, like promtool, print their output alone: warnings and errors only, unless asked.
fn log_filter<'a>(cli: &'a Cli, matches: &clap::ArgMatches) -> &'a str {
    let defaulted = matches.value_source("log_level") == Some(ValueSource::DefaultValue);
    if defaulted && matches!(cli.command, Command::Tools(_)) {
        "warn"
    } else {
        &cli.log_level
    }
}

fn main() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    logging::init(log_filter(&cli, &matches), cli.log_format)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Receive(a) => {
                let config = receiver_config(a.tsdb_path, &a.receiver, None)?;
                run_receiver(config, a.ring.routing(), &a.listen, None).await
            }
            Command::Standalone(a) => {
                let default_bucket = (a.data_dir.join(BUCKET_DIR), ("receive".to_owned(), "standalone".to_owned()));
                let config = receiver_config(a.data_dir.join(RECEIVE_DIR), &a.receiver, Some(default_bucket))?;
                let standalone = StandaloneSetup {
                    query: query_setup(&a.query, &a.querier, &matches, "standalone"),
                    store_dir: a.data_dir.join(STORE_DIR),
                    sync_interval: millis(a.sync_block_duration),
                    rule: a.rule,
                    rule_dir: a.data_dir.join(RULE_DIR),
                    compact: a.compact,
                    compact_dir: a.data_dir.join(COMPACT_DIR),
                };
                run_receiver(config, None, &a.listen, Some(standalone)).await
            }
            Command::Query(a) => query::run(a, &matches).await,
            Command::QueryFrontend(a) => query_frontend::run(a).await,
            Command::Store(a) => store::run(a).await,
            Command::Rule(a) => rule::run(a).await,
            Command::Sidecar(a) => sidecar::run(a).await,
            Command::Compact(a) => compact::run(a).await,
            Command::Tools(a) => tools::run(a).await,
        }
    })
}

/// The HTTP endpoints every component serves: `/metrics` (`metrics` in the OpenMetrics
/// format), `/-/healthy`, and `/-/ready`, answering 503 with the reason `not_ready` gives while
/// it gives one.
pub(crate) fn ops_routes(
    metrics: Arc<strata_receiver::metrics::Metrics>,
    not_ready: impl Fn() -> Option<String> + Clone + Send + Sync + 'static,
) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    axum::Router::new()
        .route("/metrics", get(move || std::future::ready(strata_receiver::http::metrics_response(&metrics))))
        .route("/-/healthy", get(|| std::future::ready("OK\n")))
        .route(
            "/-/ready",
            get(move || {
                std::future::ready(match not_ready() {
                    None => (StatusCode::OK, "OK\n".to_owned()),
                    Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
                })
            }),
        )
}

/// The text of a configuration given as a file (flag `file_flag`) or inline (flag
/// `inline_flag`), with where it came from (the file's path or the inline flag) for the
/// parser's errors; `None` when neither is given.
pub(crate) fn file_or_inline(
    file: Option<&Path>,
    file_flag: &str,
    inline: Option<&str>,
    inline_flag: &str,
) -> anyhow::Result<Option<(String, String)>> {
    Ok(match (file, inline) {
        (Some(path), _) => Some((
            std::fs::read_to_string(path).with_context(|| format!("read {file_flag} {}", path.display()))?,
            path.display().to_string(),
        )),
        (None, Some(text)) => Some((text.to_owned(), inline_flag.to_owned())),
        (None, None) => None,
    })
}

/// Binds the address of flag `flag`; the error names both.
pub(crate) async fn bind_flag(flag: &str, address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| format!("listen on {flag} {address}"))
}

/// How often the hashrings file's modification time and size are checked.
const HASHRINGS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves the receiver (routing over the hashring of `routing`, if given; and for standalone,
/// the query API and page on the HTTP address, announced on stdout, over the TSDBs and a store
/// over the bucket) until SIGTERM or Ctrl-C, then closes every WAL.
async fn run_receiver(
    config: ReceiverConfig,
    routing: Option<RoutingConfig>,
    listen: &ListenArgs,
    standalone: Option<StandaloneSetup>,
) -> anyhow::Result<()> {
    let (mut rx, watcher) = match routing {
        Some(routing) => {
            let (rx, watcher) = Receiver::with_routing(config, routing).context("load the hashring")?;
            (rx, Some(watcher))
        }
        None => (Receiver::new(config), None),
    };
    let bucket_store = match &standalone {
        Some(s) => Some(standalone_bucket_store(&mut rx, &s.store_dir)?),
        None => None,
    };
    let mut ruler_parts = match &standalone {
        Some(s) if !s.rule.rule_files.is_empty() => Some(standalone_ruler_parts(&mut rx, s).await?),
        _ => None,
    };
    let bucket_view = Arc::new(strata_compact::web::BlocksView::new(""));
    let compactor = match &standalone {
        Some(s) => standalone_compactor(&mut rx, s, Arc::clone(&bucket_view))?,
        None => None,
    };
    memory::spawn_trimmer();
    let rw = bind_flag("--remote-write.address", listen.remote_write_address).await?;
    let http = bind_flag("--http-address", listen.http_address).await?;
    let grpc = bind_flag("--grpc-address", listen.grpc_address).await?;
    // The addresses bound, which differ from the flags' for port 0.
    let rw_addr = rw.local_addr().context("remote-write listener address")?;
    let http_addr = http.local_addr().context("HTTP listener address")?;
    let grpc_addr = grpc.local_addr().context("gRPC listener address")?;
    tracing::info!(
        tsdb_path = %rx.config.tsdb_path.display(),
        mode = rx.mode().as_str(),
        remote_write = %rw_addr,
        http = %http_addr,
        grpc = %grpc_addr,
        "starting receiver"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut limits_stop = stop_rx.clone();
    tokio::spawn(rx.config.limiter.clone().run(async move {
        let _ = limits_stop.wait_for(|s| *s).await;
    }));
    if let Some(watcher) = watcher {
        let mut stop = stop_rx.clone();
        tokio::spawn(watcher.run(HASHRINGS_POLL, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    let serve = |listener, router, what| serve_http(listener, router, stop_rx.clone(), what);
    // Listen before replaying: writes during replay get 503 and probes report not ready.
    let rw_task = serve(rw, rx.remote_write_router(), "remote-write");
    let is_standalone = standalone.is_some();
    let mut bucket_sync = None;
    let mut bucket_page = None;
    let compacting = compactor.map(|c| c.spawn(stop_rx.clone()));
    let mut running_ruler = None;
    let http_router = match (standalone, bucket_store) {
        (Some(s), Some(store)) => {
            bucket_sync = Some(store::spawn_sync(store.clone(), s.sync_interval, stop_rx.clone()));
            // Until the bucket is first listed, answers would silently miss the shipped blocks.
            let synced = store.clone();
            let bucket_synced = ReadyCondition {
                holds: Arc::new(move || synced.is_synced()),
                waiting_for: "first bucket sync in progress",
            };
            let ruler_store = ruler_parts.as_ref().map(|p| {
                Arc::new(rule::ruler_store(&p.db, &p.options.external_labels)) as Arc<dyn strata_store::Store>
            });
            let (query, state) = query_router(&rx, store, s.query, bucket_synced.clone(), ruler_store);
            let bucket = rx.config.shipping.as_ref().map(|shipping| shipping.bucket.clone());
            bucket_page = bucket.map(|bucket| {
                let (interval, timeout) = (s.sync_interval, std::time::Duration::from_secs(300));
                let (selector, view) = (Default::default(), Arc::clone(&bucket_view));
                compact::spawn_global_view(bucket, selector, view, interval, timeout, stop_rx.clone())
            });
            let mut router =
                rx.http_router_ready_when(Some(bucket_synced)).merge(query).merge(strata_compact::web::router(
                    Arc::clone(&bucket_view),
                    strata_compact::web::WebOptions::under(BUCKET_PAGE_PREFIX),
                ));
            if let Some(parts) = ruler_parts.take() {
                let running = rule::start(parts.into_setup(state), stop_rx.clone()).await?;
                router = router.merge(running.router());
                running_ruler = Some(running);
            }
            router
        }
        _ => rx.http_router(),
    };
    let http_task = serve(http, http_router, "http");
    let store_options = ServerOptions {
        limits: SeriesLimits {
            series: listen.store_request_series,
            samples: listen.store_request_samples,
            ..SeriesLimits::default()
        },
        ..ServerOptions::default()
    };
    let mut grpc_stop = stop_rx.clone();
    let grpc_rx = Arc::clone(&rx);
    let grpc_task = tokio::spawn(async move {
        grpc_rx
            .serve_grpc(grpc, store_options, async move {
                let _ = grpc_stop.wait_for(|s| *s).await;
            })
            .await
    });
    let started = Arc::clone(&rx);
    let start = tokio::spawn(async move { started.start().await });
    if is_standalone {
        print!("{}", standalone_banner(rw_addr, http_addr));
    }
    let signalled = tokio::select! {
        r = start => {
            r.context("receiver start task")?.context("open tenant TSDBs")?;
            false
        }
        _ = shutdown_signal() => true,
    };
    if !signalled {
        shutdown_signal().await;
    }
    tracing::info!("shutting down: finishing in-flight requests, then closing WALs");
    let _ = stop_tx.send(true);
    let (_, _, grpc) = tokio::join!(rw_task, http_task, grpc_task);
    for task in [bucket_sync, bucket_page, compacting].into_iter().flatten() {
        let _ = task.await;
    }
    match grpc {
        Ok(Err(e)) => tracing::error!(error = %e, server = "grpc", "server failed"),
        Err(e) => tracing::error!(error = %e, server = "grpc", "server task failed"),
        Ok(Ok(())) => {}
    }
    rx.shutdown().await.context("close WALs")?;
    if let Some(r) = running_ruler {
        r.shutdown().await?;
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Standalone's store over the bucket its receiver ships to, with its metrics in the receiver's
/// registry (so it must be built before `rx` is shared).
fn standalone_bucket_store(rx: &mut Arc<Receiver>, dir: &Path) -> anyhow::Result<Arc<BucketStore>> {
    let bucket = rx.config.shipping.as_ref().map(|shipping| shipping.bucket.clone());
    let bucket = bucket.context("standalone runs without a bucket: give --objstore.config-file")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create the bucket store's directory {}", dir.display()))?;
    let options = BucketStoreOptions { data_dir: dir.to_path_buf(), ..BucketStoreOptions::default() };
    let receiver =
        Arc::get_mut(rx).context("internal error: the receiver was shared before its metrics were complete")?;
    let registry = receiver.metrics.registry_mut();
    Ok(Arc::new(BucketStore::new(bucket, options, tokio::runtime::Handle::current(), registry)))
}

/// Standalone's compactor over the bucket its receiver ships to (unless `--compact.disable`),
/// its metrics in the receiver's registry (so it must be made before `rx` is shared).
fn standalone_compactor(
    rx: &mut Arc<Receiver>,
    s: &StandaloneSetup,
    view: Arc<strata_compact::web::BlocksView>,
) -> anyhow::Result<Option<compact::StandaloneCompactor>> {
    let Some(bucket) = rx.config.shipping.as_ref().map(|shipping| shipping.bucket.clone()) else { return Ok(None) };
    let receiver =
        Arc::get_mut(rx).context("internal error: the receiver was shared before its metrics were complete")?;
    s.compact.compactor(bucket, s.compact_dir.clone(), &mut receiver.metrics, view)
}

/// What standalone's ruler is made of before it starts: its TSDB (which the query API reads
/// through its fan-out) and its settings.
struct StandaloneRulerParts {
    db: Arc<strata_tsdb::db::Db>,
    options: strata_rule::ruler::RulerOptions,
    alertmanagers: strata_rule::discovery::Peers,
    data_dir: PathBuf,
    bucket: Option<strata_shipper::Bucket>,
    metrics: strata_rule::metrics::RuleMetrics,
}

impl StandaloneRulerParts {
    /// The ruler's setup, evaluating on `state`'s engine in process.
    fn into_setup(self, state: Arc<ApiState>) -> rule::RulerSetup {
        rule::RulerSetup {
            options: self.options,
            queriers: strata_rule::ruler::Queriers::Local(Arc::new(InProcessQuery(state))),
            alertmanagers: self.alertmanagers,
            data_dir: self.data_dir,
            db: self.db,
            bucket: self.bucket,
            metrics: self.metrics,
        }
    }
}

/// Standalone's query API, asked by its ruler without an HTTP hop.
struct InProcessQuery(Arc<ApiState>);

impl strata_rule::ruler::LocalQuery for InProcessQuery {
    fn instant(
        &self,
        expr: &str,
        t: i64,
        partial_response: bool,
    ) -> Result<(Vec<strata_query::value::Sample>, Vec<String>), String> {
        strata_query::api::query::instant_samples(&self.0, expr, t, partial_response)
    }
}

/// Opens standalone's ruler TSDB in `<data-dir>/rule/` and registers the ruler's metrics in
/// the receiver's registry (so it must run before `rx` is shared). The ruler's series and
/// blocks carry the standalone's external labels plus `rule="standalone"`, which keeps its
/// blocks in the bucket apart from the receiver's; they are shipped to the same bucket.
async fn standalone_ruler_parts(rx: &mut Arc<Receiver>, s: &StandaloneSetup) -> anyhow::Result<StandaloneRulerParts> {
    if s.rule.eval_interval <= 0 {
        anyhow::bail!("--eval-interval must be above 0");
    }
    let alertmanagers = rule::standalone_alertmanagers(&s.rule.alertmanagers)?;
    let mut external = rx.config.labels.external.clone();
    external.insert("rule".to_owned(), "standalone".to_owned());
    let options = strata_rule::ruler::RulerOptions {
        rule_files: s.rule.rule_files.clone(),
        eval_interval: s.rule.eval_interval,
        external_labels: external,
        alert_label_drop: Vec::new(),
        alert_relabel: Default::default(),
        alert_query_url: String::new(),
        resend_delay: 60_000,
        for_grace_period: 600_000,
        for_outage_tolerance: 3_600_000,
    };
    let db_options = DbOptions { retention: rx.config.db.retention, ..DbOptions::default() };
    let db = rule::open_db(&s.rule_dir, db_options).await?;
    let bucket = rx.config.shipping.as_ref().map(|shipping| shipping.bucket.clone());
    let metrics = strata_rule::metrics::RuleMetrics::default();
    let receiver =
        Arc::get_mut(rx).context("internal error: the receiver was shared before its metrics were complete")?;
    metrics.register(receiver.metrics.registry_mut());
    Ok(StandaloneRulerParts { db, options, alertmanagers, data_dir: s.rule_dir.clone(), bucket, metrics })
}

/// Serves `router` on `listener` until `stop` turns true, then lets requests in flight finish.
fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // As Go's net/http: replies go out without waiting on Nagle's algorithm.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        let r = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, server = what, "server failed");
        }
    })
}

/// The query API over all tenants, the blocks shipped to the bucket and the ruler's TSDB (when
/// a ruler runs), through the proxy as `strata query` reads (each tenant's series with its
/// tenant label and the `--label`s, which the shipped blocks carry too), not ready while the
/// receiver replays WALs or before the first bucket sync (`synced`), its requests counted in
/// the receiver's metrics. A block both local and shipped answers once: its chunks come byte
/// for byte the same from both stores and the proxy's merge keeps identical chunks once. With
/// a ruler, `/api/v1/rules` and `/api/v1/alerts` are the ruler's; the state is kept for it.
fn query_router(
    rx: &Arc<Receiver>,
    bucket: Arc<BucketStore>,
    q: QuerySetup,
    synced: ReadyCondition,
    ruler: Option<Arc<dyn strata_store::Store>>,
) -> (axum::Router, Arc<ApiState>) {
    let tenants = Arc::new(strata_receiver::store::ReceiverStore::new(rx.tenants.clone()));
    let mut stores = vec![StoreRef::local("receive", tenants), StoreRef::local("bucket", bucket)];
    let serves_rules = ruler.is_none();
    if let Some(r) = ruler {
        stores.push(StoreRef::local("rule", r));
    }
    let proxy = Proxy::new(Arc::new(stores), ProxyOptions { component: Component::Query, response_timeout: None });
    let mut state = ApiState::new(Arc::new(proxy), rx.metadata.clone(), q.engine);
    state.querier = q.querier;
    state.flags = q.flags;
    state.storage_retention = q.retention;
    state.build_revision = rx.config.build.revision.clone();
    state.build_branch = rx.config.build.branch.clone();
    let receiver = Arc::clone(rx);
    state.ready = Arc::new(move || receiver.is_ready() && (synced.holds)());
    let receiver = Arc::clone(rx);
    state.observe = Some(Arc::new(move |handler, method, code, elapsed| {
        receiver.metrics.observe_request(handler, method.as_str(), code, elapsed)
    }));
    let state = Arc::new(state);
    (strata_query::api::shared_router(Arc::clone(&state), serves_rules), state)
}

pub(crate) async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; use Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received interrupt"),
    }
}

/// What standalone prints when it starts: the remote-write snippet for prometheus.yml, the
/// query page, the bucket page and the URL of a Grafana data source, at the addresses it listens on.
fn standalone_banner(remote_write: SocketAddr, http: SocketAddr) -> String {
    let (rw, http) = (base_url(remote_write), base_url(http));
    format!(
        "\nstrata standalone is starting. Add this to prometheus.yml and reload Prometheus:\n\n\
         remote_write:\n  - url: {rw}/api/v1/receive\n\n\
         Query page: {http}/\n\
         Bucket page: {http}{BUCKET_PAGE_PREFIX}/\n\
         Grafana: add a data source of type Prometheus with the URL {http}\n\n"
    )
}

/// `http://host:port` for a listen address; a wildcard address becomes localhost, which a user
/// on the same machine can paste.
fn base_url(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_label_flag, standalone_banner};

    #[test]
    fn banner_gives_urls_to_paste() {
        let banner = standalone_banner("0.0.0.0:19291".parse().unwrap(), "127.0.0.1:10902".parse().unwrap());
        for line in [
            "  - url: http://localhost:19291/api/v1/receive\n",
            "Query page: http://127.0.0.1:10902/\n",
            "Bucket page: http://127.0.0.1:10902/bucket/\n",
            "Grafana: add a data source of type Prometheus with the URL http://127.0.0.1:10902\n",
        ] {
            assert!(banner.contains(line), "{line:?} in {banner}");
        }
        let banner = standalone_banner("[::]:19291".parse().unwrap(), "[::1]:10902".parse().unwrap());
        assert!(banner.contains("http://localhost:19291/api/v1/receive") && banner.contains("http://[::1]:10902/"));
    }

    /// clap checks a command line's definition (unique ids, valid defaults) only when it is
    /// used; this checks every subcommand's at once.
    #[test]
    fn command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn label_flags() {
        assert_eq!(parse_label_flag(r#"replica="0""#), Ok(("replica".into(), "0".into())));
        assert_eq!(parse_label_flag(r#"a_1="x \"y\"""#), Ok(("a_1".into(), r#"x "y""#.into())));
        for bad in ["replica=0", r#"="x""#, r#"1a="x""#, "replica", r#"a="x"y""#, r#"a-b="x""#] {
            assert!(parse_label_flag(bad).is_err(), "{bad}");
        }
    }
}
