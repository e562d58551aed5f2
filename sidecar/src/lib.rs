//! `strata sidecar`: next to a Prometheus, its data served over the Thanos StoreAPI (read
//! through remote read, [`read`]), its blocks shipped to the bucket (`strata_shipper`), its
//! health followed ([`Sidecar::heartbeat`]), as Thanos's sidecar does it.
//!
//! The sidecar learns Prometheus's external labels from its configuration, re-read every
//! `--prometheus.get_config_interval`; they are the label set it serves and ships under. Without
//! them it is not ready, serves nothing and ships nothing, and says what to set.

pub mod error;
pub mod frame;
pub mod prom;
pub mod read;
pub mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use strata_shipper::{Bucket, Shipper, SyncStats, STATE_FILENAME};
use strata_store::bucket::TimeBound;
use strata_tsdb::labels::Labels;

pub use error::SidecarError;
use prom::PromClient;

/// How often the shipper looks for new blocks (Thanos's sidecar: every 30 s).
pub const SHIP_INTERVAL: Duration = Duration::from_secs(30);

/// What a sidecar is configured with.
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    /// `--prometheus.url`.
    pub prometheus_url: String,
    /// How long one request to Prometheus's API may take (Thanos's
    /// `--prometheus.get_config_timeout`, 30 s).
    pub request_timeout: Duration,
    /// `--tsdb.path`: Prometheus's data directory, whose blocks are shipped.
    pub tsdb_path: PathBuf,
    /// `--shipper.upload-compacted`.
    pub upload_compacted: bool,
    /// `--min-time`: nothing older is served.
    pub min_time: TimeBound,
}

/// What the sidecar knows about its Prometheus, shared by the heartbeat, the store and the
/// shipper.
pub struct Sidecar {
    options: SidecarOptions,
    prom: Arc<PromClient>,
    /// Prometheus's external labels as last read; empty until read (or when it has none).
    labels: Arc<RwLock<Labels>>,
    /// Oldest sample time Prometheus holds (ms), `i64::MIN` until known.
    lowest: AtomicI64,
    version: RwLock<String>,
    /// Why the sidecar is not ready, `None` when it is.
    not_ready: RwLock<Option<String>>,
    /// Whether Prometheus's block durations allow shipping; checked until they do.
    flags_checked: RwLock<bool>,
    bucket: Option<Bucket>,
    shipper: Mutex<Option<Arc<Shipper>>>,
    up: AtomicU64,
    /// Unix seconds of the last successful heartbeat, as f64 bits.
    last_heartbeat: AtomicU64,
}

impl Sidecar {
    /// A sidecar for the Prometheus of `options`, shipping to `bucket` when one is given.
    pub fn new(options: SidecarOptions, bucket: Option<Bucket>) -> Result<Arc<Sidecar>, SidecarError> {
        let prom = Arc::new(PromClient::new(&options.prometheus_url, options.request_timeout)?);
        Ok(Arc::new(Sidecar {
            options,
            prom,
            labels: Arc::default(),
            lowest: AtomicI64::new(i64::MIN),
            version: RwLock::default(),
            not_ready: RwLock::new(Some("not ready: Prometheus not contacted yet".to_owned())),
            flags_checked: RwLock::new(false),
            bucket,
            shipper: Mutex::new(None),
            up: AtomicU64::new(0),
            last_heartbeat: AtomicU64::new(0),
        }))
    }

    pub fn prometheus(&self) -> &Arc<PromClient> {
        &self.prom
    }

    /// Prometheus's external labels as last read.
    pub fn external_labels(&self) -> Labels {
        self.labels.read().clone()
    }

    /// Why the sidecar cannot serve or ship now; `None` when it can.
    pub fn not_ready_reason(&self) -> Option<String> {
        self.not_ready.read().clone()
    }

    /// Prometheus's version, once read.
    pub fn prometheus_version(&self) -> String {
        self.version.read().clone()
    }

    /// The oldest time served: Prometheus's oldest sample, not before `--min-time`.
    pub fn min_time(&self) -> i64 {
        self.lowest.load(Ordering::Relaxed).max(self.options.min_time.now())
    }

    /// One look at Prometheus: ready, its version (once), oldest sample, external labels and,
    /// when shipping, its block durations (until they pass). Readiness and the
    /// `thanos_sidecar_*` metrics follow the outcome; the error says what is wrong.
    pub async fn heartbeat(&self) -> Result<(), SidecarError> {
        let result = self.look().await;
        match &result {
            Ok(()) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
                self.last_heartbeat.store(now.to_bits(), Ordering::Relaxed);
                if self.not_ready.write().take().is_some() {
                    tracing::info!(prometheus = %self.prom.url(), external_labels = %self.external_labels(), version = %self.prometheus_version(), "Prometheus ready; serving and shipping");
                }
            }
            Err(e) => {
                let reason = format!("not ready: {e}");
                let mut current = self.not_ready.write();
                if current.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(error = %e, "heartbeat failed; not ready");
                    *current = Some(reason);
                }
            }
        }
        result
    }

    async fn look(&self) -> Result<(), SidecarError> {
        let reachable = self.prom.ready().await;
        self.up.store(u64::from(reachable.is_ok()), Ordering::Relaxed);
        reachable?;
        if self.version.read().is_empty() {
            let version = self.prom.version().await?;
            *self.version.write() = version;
        }
        let lowest = self.prom.lowest_timestamp().await?;
        self.lowest.store(lowest, Ordering::Relaxed);
        let labels = self.prom.external_labels().await?;
        let changed = *self.labels.read() != labels;
        if changed {
            tracing::info!(external_labels = %labels, "external labels of Prometheus read");
            *self.labels.write() = labels.clone();
        }
        if labels.is_empty() {
            return Err(SidecarError::Config(format!(
                "Prometheus at {} has no external labels: set global.external_labels in prometheus.yml (for \
                 example cluster and prometheus_replica) so that its series can be told apart from other \
                 Prometheus servers'; until then the sidecar serves and ships nothing",
                self.prom.url()
            )));
        }
        if self.bucket.is_some() && !*self.flags_checked.read() {
            self.prom.flags().await?.check_for_shipping(&self.options.tsdb_path.join(STATE_FILENAME))?;
            *self.flags_checked.write() = true;
        }
        Ok(())
    }

    /// One shipper pass when shipping is on and the sidecar is ready: uploads the blocks of
    /// `--tsdb.path` not yet in the bucket, under the current external labels. `None` when
    /// nothing was tried.
    pub async fn ship(&self) -> Option<Result<SyncStats, SidecarError>> {
        let bucket = self.bucket.as_ref()?;
        if let Some(reason) = self.not_ready_reason() {
            tracing::info!(reason, "not shipping");
            return None;
        }
        let labels: BTreeMap<String, String> =
            self.external_labels().iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
        let shipper = {
            let mut slot = self.shipper.lock();
            match slot.as_ref() {
                Some(s) => {
                    s.set_external_labels(labels);
                    s.clone()
                }
                None => {
                    let created = Shipper::new(bucket.clone(), &self.options.tsdb_path, labels, "sidecar")
                        .map(|s| Arc::new(s.with_upload_compacted(self.options.upload_compacted)));
                    match created {
                        Ok(s) => slot.insert(s).clone(),
                        Err(e) => return Some(Err(e.into())),
                    }
                }
            }
        };
        Some(shipper.sync().await.map_err(SidecarError::from))
    }

    /// Registers `thanos_sidecar_prometheus_up`, `thanos_sidecar_last_heartbeat_success_time_seconds`
    /// and the shipper's `thanos_shipper_*` in `registry`.
    pub fn register_metrics(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(SidecarCollector(self.clone())));
    }
}

#[derive(Debug)]
struct SidecarCollector(Arc<Sidecar>);

impl fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sidecar").field("prometheus", &self.prom.url()).finish_non_exhaustive()
    }
}

fn encode(enc: &mut DescriptorEncoder, name: &str, help: &str, kind: MetricType, v: f64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => ConstCounter::new(v).encode(m),
        _ => ConstGauge::new(v).encode(m),
    }
}

impl Collector for SidecarCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        encode(
            &mut enc,
            "thanos_sidecar_prometheus_up",
            "Boolean indicator whether the sidecar can reach its Prometheus peer.",
            MetricType::Gauge,
            s.up.load(Ordering::Relaxed) as f64,
        )?;
        encode(
            &mut enc,
            "thanos_sidecar_last_heartbeat_success_time_seconds",
            "Timestamp of the last successful heartbeat in seconds.",
            MetricType::Gauge,
            f64::from_bits(s.last_heartbeat.load(Ordering::Relaxed)),
        )?;
        if s.bucket.is_none() {
            return Ok(());
        }
        let metrics = s.shipper.lock().as_ref().map(|s| s.metrics());
        let load = |f: &dyn Fn(&strata_shipper::ShipperMetrics) -> &AtomicU64| {
            metrics.as_ref().map_or(0.0, |m| f(m).load(Ordering::Relaxed) as f64)
        };
        // Counter names omit `_total`: the encoder appends it.
        let counters: [(&str, &str, f64); 4] = [
            ("thanos_shipper_uploads", "Total number of uploaded blocks.", load(&|m| &m.uploads_total)),
            (
                "thanos_shipper_upload_failures",
                "Total number of block upload failures.",
                load(&|m| &m.upload_failures_total),
            ),
            ("thanos_shipper_dir_syncs", "Total number of dir syncs.", load(&|m| &m.dir_syncs_total)),
            (
                "thanos_shipper_dir_sync_failures",
                "Total number of failed dir syncs.",
                load(&|m| &m.dir_sync_failures_total),
            ),
        ];
        for (name, help, v) in counters {
            encode(&mut enc, name, help, MetricType::Counter, v)?;
        }
        Ok(())
    }
}
