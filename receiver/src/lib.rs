//! The remote-write receiver: the HTTP endpoint Prometheus pushes to, tenancy, request limits
//! and one TSDB per tenant. See README.md for what this crate owns.

pub mod error;
pub mod grpc;
pub mod handler;
pub mod http;
pub mod limits;
pub mod metadata;
pub mod metrics;
mod process_metrics;
pub mod router;
pub mod snappy_grpc;
pub mod store;
pub mod tenants;
mod wal_metrics;
pub mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use strata_proto::remote_write::WriteBatch;
use strata_proto::thanos::writeable_store_server::WriteableStoreServer;
use strata_ring::RingWatcher;
use strata_store::server::{ServerOptions, StoreApi};
use strata_tsdb::db::DbOptions;
use tokio::net::TcpListener;

pub use error::ReceiveError;
use metadata::MetadataStore;
pub use metrics::BuildInfo;
use metrics::Metrics;
use router::Mode;
pub use router::{Compression, ForwardOptions, RoutingConfig};
use tenants::MultiTsdb;
pub use tenants::{Shipping, TenantLabels};
pub use writer::Tenants;

/// How often tenants' blocks are shipped even without a cut (Thanos: 30s).
const SHIP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Per-request limits; 0 disables a limit. Requests over a limit get 413.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Compressed body size.
    pub max_body_bytes: u64,
    /// Size after snappy decompression (read from the snappy header before decompressing).
    pub max_decompressed_bytes: u64,
    pub max_series: u64,
    pub max_samples: u64,
}

impl Default for RequestLimits {
    /// Generous for Prometheus senders (2.42 sends at most 500 samples per request by default,
    /// newer versions 2,000), small enough that one request cannot exhaust memory.
    fn default() -> Self {
        RequestLimits {
            max_body_bytes: 32 << 20,
            max_decompressed_bytes: 256 << 20,
            max_series: 1_000_000,
            max_samples: 5_000_000,
        }
    }
}

/// Receiver settings, from the command line.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    pub tsdb_path: PathBuf,
    pub tenant_header: String,
    pub default_tenant: String,
    /// `--receive.replica-header`: the 1-based replica of a write another receiver already
    /// replicated (Thanos's `THANOS-REPLICA`).
    pub replica_header: String,
    /// `--receive.split-tenant-label-name`: a series with this label belongs to the tenant it
    /// names (and is stored without it).
    pub split_tenant_label: Option<String>,
    pub limits: RequestLimits,
    /// Per-tenant limits and the write gate (`--receive.limits-config-file`); none by default.
    pub limiter: Arc<limits::Limiter>,
    pub db: DbOptions,
    /// The `--label`s and the tenant label: the external labels of each tenant's blocks and
    /// StoreAPI series.
    pub labels: TenantLabels,
    /// Ship blocks to object storage; `None` keeps them local only.
    pub shipping: Option<Shipping>,
    /// What the binary was built from, for `strata_build_info`.
    pub build: BuildInfo,
}

impl ReceiverConfig {
    /// Thanos's defaults (tenant header `THANOS-TENANT`, tenant `default-tenant`), default
    /// limits and TSDB options, no shipping.
    pub fn new(tsdb_path: impl Into<PathBuf>) -> Self {
        ReceiverConfig {
            tsdb_path: tsdb_path.into(),
            tenant_header: "THANOS-TENANT".into(),
            default_tenant: "default-tenant".into(),
            replica_header: "THANOS-REPLICA".into(),
            split_tenant_label: None,
            limiter: Arc::default(),
            limits: RequestLimits::default(),
            db: DbOptions::default(),
            labels: TenantLabels::default(),
            shipping: None,
            build: BuildInfo::default(),
        }
    }
}

/// A running receiver: tenants' TSDBs, readiness and metrics.
pub struct Receiver {
    pub config: ReceiverConfig,
    pub tenants: Arc<MultiTsdb>,
    /// Metric metadata from remote write, all tenants.
    pub metadata: Arc<MetadataStore>,
    pub metrics: Metrics,
    /// Routes writes over the hashring; `None` for an ingestor-only receiver.
    router: Option<Arc<router::Router>>,
    ready: AtomicBool,
}

impl Receiver {
    /// An ingestor-only receiver (every write stored here), not ready until
    /// [`Receiver::start`] has replayed the WALs.
    pub fn new(config: ReceiverConfig) -> Arc<Self> {
        let (tenants, metrics) = Self::parts(&config);
        Self::assemble(config, tenants, metrics, None)
    }

    /// A receiver that routes writes over the hashring of `routing` (router-ingestor with a
    /// local endpoint, router-only without), and the watcher that keeps its ring current, for
    /// the caller to run. A ring that cannot be loaded is an error, as at Thanos's start.
    pub fn with_routing(
        config: ReceiverConfig,
        routing: RoutingConfig,
    ) -> Result<(Arc<Self>, RingWatcher), ReceiveError> {
        let (tenants, mut metrics) = Self::parts(&config);
        let (router, watcher) = router::Router::new(routing, metrics.registry_mut())?;
        Ok((Self::assemble(config, tenants, metrics, Some(Arc::new(router))), watcher))
    }

    fn parts(config: &ReceiverConfig) -> (Arc<MultiTsdb>, Metrics) {
        let tenants = Arc::new(MultiTsdb::new(
            &config.tsdb_path,
            config.db.clone(),
            config.labels.clone(),
            config.shipping.clone(),
        ));
        let mut metrics = Metrics::new(tenants.clone(), &config.build);
        config.limiter.register(metrics.registry_mut());
        (tenants, metrics)
    }

    fn assemble(
        config: ReceiverConfig,
        tenants: Arc<MultiTsdb>,
        metrics: Metrics,
        router: Option<Arc<router::Router>>,
    ) -> Arc<Self> {
        Arc::new(Receiver { metrics, tenants, metadata: Arc::default(), config, router, ready: AtomicBool::new(false) })
    }

    /// How this receiver takes part in the ring.
    pub fn mode(&self) -> Mode {
        self.router.as_ref().map_or(Mode::IngestorOnly, |r| r.mode())
    }

    /// `tenant`'s head series over all its replicas as far as this receiver can tell without
    /// asking anyone (what Thanos asks a meta-monitoring Prometheus for): its own head's
    /// series, scaled by its share of the tenant's series in the ring. `None` when it holds no
    /// share (a router only).
    pub fn tenant_head_series(&self, tenant: &str) -> Option<u64> {
        let local = self.tenants.get(tenant).map_or(0, |db| db.head().num_series());
        match &self.router {
            None => Some(local),
            Some(router) => router.scale_local_series(tenant, local),
        }
    }

    /// The tenant of each series of a request sent as `tenant` and, with
    /// `--receive.split-tenant-label-name`, the request without that label (Thanos's split).
    pub fn tenants_of<'a>(
        &self,
        tenant: &'a str,
        batch: &WriteBatch<'a>,
    ) -> Result<Option<(WriteBatch<'a>, Tenants<'a>)>, ReceiveError> {
        match &self.config.split_tenant_label {
            Some(label) => writer::split_tenants(batch, label, tenant).map(Some),
            None => Ok(None),
        }
    }

    /// Writes a request's series, each of its tenant: routed over the ring, or, ingestor-only,
    /// into the tenants' TSDBs. `replica` is the request's 1-based replica (0: not replicated
    /// yet). The samples written come back with the answer; a routed write reports the
    /// request's samples once quorum is reached. Native histograms are refused (400) once the
    /// floats are written.
    pub async fn write(
        self: &Arc<Self>,
        tenants: &Tenants<'_>,
        replica: u64,
        batch: &WriteBatch<'_>,
    ) -> Result<u64, (ReceiveError, u64)> {
        let written = match &self.router {
            Some(router) => {
                router.route(self, tenants, replica, batch).await.map_err(|e| (e, 0))?;
                batch.samples.len() as u64
            }
            None => {
                let all: Vec<usize> = (0..batch.series.len()).collect();
                let (mut written, mut first_error) = (0, None);
                for (tenant, ids) in tenants.group(&all) {
                    match writer::write_local(self, tenant, batch, ids.iter().map(|&i| &batch.series[i])) {
                        Ok(n) => written += n,
                        Err((e, n)) => {
                            written += n;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first_error {
                    return Err((e, written));
                }
                written
            }
        };
        if batch.histograms > 0 {
            return Err((
                ReceiveError::Unsupported(format!(
                    "{} native histogram samples refused: native histograms are not supported yet; float samples were written",
                    batch.histograms
                )),
                written,
            ));
        }
        Ok(written)
    }

    /// Opens existing tenant TSDBs (replaying their WALs) and then reports ready. Writes that
    /// arrive before then get 503, so senders retry them.
    pub async fn start(self: &Arc<Self>) -> Result<(), ReceiveError> {
        if self.config.shipping.is_some() && self.config.labels.external.is_empty() {
            return Err(ReceiveError::Config(
                "shipping blocks needs at least one external label to tell this receiver's blocks apart in the \
                 bucket; add one, e.g. --label 'receive_replica=\"0\"'"
                    .into(),
            ));
        }
        if let Some(router) = &self.router {
            tokio::spawn(Arc::clone(router).follow_ring());
        }
        // A router-only receiver stores nothing.
        if self.mode() != Mode::RouterOnly {
            let rx = self.clone();
            tokio::task::spawn_blocking(move || rx.tenants.open_existing(&rx.config.default_tenant))
                .await
                .map_err(|e| ReceiveError::Internal(format!("WAL replay task failed: {e}")))??;
        }
        self.ready.store(true, Ordering::Release);
        tracing::info!("receiver is ready");
        if let Some(shipping) = &self.config.shipping {
            let (tenants, wake) = (self.tenants.clone(), shipping.wake.clone());
            tokio::spawn(async move {
                loop {
                    tenants.ship().await;
                    tokio::select! {
                        _ = tokio::time::sleep(SHIP_INTERVAL) => {}
                        _ = wake.notified() => {}
                    }
                }
            });
        }
        Ok(())
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Stops taking writes, closes every WAL cleanly (cutting nothing early: the WAL covers the
    /// head) and ships any block not yet shipped.
    pub async fn shutdown(&self) -> Result<(), ReceiveError> {
        self.ready.store(false, Ordering::Release);
        let tenants = self.tenants.clone();
        tokio::task::spawn_blocking(move || tenants.close())
            .await
            .map_err(|e| ReceiveError::Internal(format!("closing TSDBs failed: {e}")))??;
        self.tenants.ship().await;
        Ok(())
    }

    /// The StoreAPI and Info over every tenant (component `receive`), answering `Unavailable`
    /// until the WALs are replayed, its calls counted in the receiver's metrics.
    pub fn store_api(self: &Arc<Self>, options: ServerOptions) -> StoreApi {
        let store = Arc::new(store::ReceiverStore::new(self.tenants.clone()));
        let rx = Arc::clone(self);
        StoreApi::new(store, options, self.metrics.grpc.clone()).with_readiness(Arc::new(move || rx.is_ready()))
    }

    /// Serves the StoreAPI, Info and `thanos.WriteableStore` on `listener` until `shutdown`
    /// completes, taking requests compressed with gzip, zstd or snappy (Thanos routers forward
    /// with snappy). Forwarded writes may be as large as a remote-write request decompressed.
    pub async fn serve_grpc(
        self: &Arc<Self>,
        listener: TcpListener,
        options: ServerOptions,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let max_write =
            usize::try_from(self.config.limits.max_decompressed_bytes).ok().filter(|&m| m > 0).unwrap_or(usize::MAX);
        let max_message = max_write.max(options.max_request_bytes);
        let write = WriteableStoreServer::new(grpc::WriteService::new(self.clone()))
            .max_decoding_message_size(max_write)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Zstd);
        let routes = self.store_api(options).routes().add_service(write);
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .layer(snappy_grpc::SnappyLayer { max_message_bytes: max_message })
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }

    /// The remote-write listener's routes.
    pub fn remote_write_router(self: &Arc<Self>) -> Router {
        Router::new().route("/api/v1/receive", post(handler::receive)).with_state(self.clone())
    }

    /// The HTTP listener's routes: metrics, probes and TSDB status.
    pub fn http_router(self: &Arc<Self>) -> Router {
        self.http_router_ready_when(None)
    }

    /// `http_router` whose `/-/ready` also waits for `also`.
    pub fn http_router_ready_when(self: &Arc<Self>, also: Option<http::ReadyCondition>) -> Router {
        let rx = Arc::clone(self);
        Router::new()
            .route("/metrics", get(http::metrics))
            .route("/-/healthy", get(http::healthy))
            .route("/-/ready", get(move || std::future::ready(http::ready(&rx, also.as_ref()))))
            .route("/api/v1/status/tsdb", get(http::tsdb_status))
            .with_state(self.clone())
    }
}
