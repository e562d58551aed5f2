//! The remote-write receiver: the HTTP endpoint Prometheus pushes to, tenancy, request limits
//! and one TSDB per tenant. See README.md for what this crate owns.

pub mod error;
pub mod handler;
pub mod http;
pub mod metadata;
pub mod metrics;
mod process_metrics;
pub mod store;
pub mod tenants;
mod wal_metrics;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use strata_store::server::{ServerOptions, StoreApi};
use strata_tsdb::db::DbOptions;

pub use error::ReceiveError;
use metadata::MetadataStore;
pub use metrics::BuildInfo;
use metrics::Metrics;
use tenants::MultiTsdb;
pub use tenants::{Shipping, TenantLabels};

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
    pub limits: RequestLimits,
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
    ready: AtomicBool,
}

impl Receiver {
    /// A receiver that is not ready until [`Receiver::start`] has replayed the WALs.
    pub fn new(config: ReceiverConfig) -> Arc<Self> {
        let tenants = Arc::new(MultiTsdb::new(
            &config.tsdb_path,
            config.db.clone(),
            config.labels.clone(),
            config.shipping.clone(),
        ));
        Arc::new(Receiver {
            metrics: Metrics::new(tenants.clone(), &config.build),
            tenants,
            metadata: Arc::default(),
            config,
            ready: AtomicBool::new(false),
        })
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
        let rx = self.clone();
        tokio::task::spawn_blocking(move || rx.tenants.open_existing(&rx.config.default_tenant))
            .await
            .map_err(|e| ReceiveError::Internal(format!("WAL replay task failed: {e}")))??;
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

    /// The remote-write listener's routes.
    pub fn remote_write_router(self: &Arc<Self>) -> Router {
        Router::new().route("/api/v1/receive", post(handler::receive)).with_state(self.clone())
    }

    /// The HTTP listener's routes: metrics, probes and TSDB status.
    pub fn http_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/metrics", get(http::metrics))
            .route("/-/healthy", get(http::healthy))
            .route("/-/ready", get(http::ready))
            .route("/api/v1/status/tsdb", get(http::tsdb_status))
            .with_state(self.clone())
    }
}
