//! Write limits from Thanos's limits configuration (`--receive.limits-config-file`,
//! `pkg/receive/limiter_config.go`), reloaded when the file changes:
//!
//! ```yaml
//! write:
//!   global:
//!     max_concurrency: 30          # writes in flight; more wait
//!   default:
//!     request: {size_bytes_limit: 1024, series_limit: 1000, samples_limit: 10}
//!     head_series_limit: 1000
//!   tenants:
//!     acme: {request: {series_limit: 0}, head_series_limit: 2000}
//! ```
//!
//! 0 (or less) is no limit; a tenant's unset fields are the default's. Requests over a request
//! limit get 413, a tenant at or over its head series limit 429, as in Thanos. Thanos learns a
//! tenant's head series from a meta-monitoring Prometheus and lets everything through when it
//! cannot ask; here each receiver counts from its own heads (see [`crate::Receiver`]), so the
//! limit holds without one. The meta-monitoring settings are read and ignored.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ReceiveError;

/// Largest limits file read.
const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RootConfig {
    #[serde(default)]
    write: WriteConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteConfig {
    #[serde(default)]
    global: GlobalConfig,
    #[serde(default)]
    default: DefaultConfig,
    #[serde(default)]
    tenants: BTreeMap<String, Option<TenantConfig>>,
}

#[derive(Debug, Default, Deserialize)]
struct GlobalConfig {
    #[serde(default)]
    max_concurrency: i64,
    /// The meta-monitoring settings, which Thanos's files may have; head series are counted
    /// locally instead.
    #[serde(flatten)]
    other: BTreeMap<String, serde_norway::Value>,
}

/// The keys of `write.global` besides `max_concurrency`.
const META_MONITORING_KEYS: [&str; 3] =
    ["meta_monitoring_url", "meta_monitoring_http_client", "meta_monitoring_limit_query"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultConfig {
    #[serde(default)]
    request: RequestConfig,
    #[serde(default)]
    head_series_limit: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantConfig {
    request: Option<RequestConfig>,
    head_series_limit: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestConfig {
    size_bytes_limit: Option<i64>,
    series_limit: Option<i64>,
    samples_limit: Option<i64>,
}

/// One tenant's limits; 0 is none.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    pub size_bytes: u64,
    pub series: u64,
    pub samples: u64,
    pub head_series: u64,
}

/// A limits configuration, each tenant's limits resolved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Writes in flight at once; 0 is no limit.
    pub max_concurrency: usize,
    pub default: TenantLimits,
    pub tenants: HashMap<String, TenantLimits>,
}

impl LimitsConfig {
    /// Parses Thanos's YAML: unknown fields are errors, as Thanos reads it strictly.
    pub fn parse(content: &str) -> Result<LimitsConfig, ReceiveError> {
        let root: RootConfig = if content.trim().is_empty() {
            RootConfig::default()
        } else {
            serde_norway::from_str(content)
                .map_err(|e| ReceiveError::Config(format!("parsing limits config YAML: {e}")))?
        };
        let w = root.write;
        if let Some(key) = w.global.other.keys().find(|k| !META_MONITORING_KEYS.contains(&k.as_str())) {
            return Err(ReceiveError::Config(format!(
                "parsing limits config YAML: write.global: unknown field `{key}`"
            )));
        }
        if !w.global.other.is_empty() {
            tracing::info!("limits config: meta-monitoring settings ignored; head series are counted by each receiver");
        }
        let positive = |v: Option<i64>| v.map_or(0, |v| u64::try_from(v).unwrap_or(0));
        let d = w.default.request;
        let default = TenantLimits {
            size_bytes: positive(d.size_bytes_limit),
            series: positive(d.series_limit),
            samples: positive(d.samples_limit),
            head_series: w.default.head_series_limit,
        };
        let tenants = w
            .tenants
            .into_iter()
            .map(|(tenant, c)| {
                let c = c.unwrap_or_default();
                let r = c.request.unwrap_or_default();
                let or = |v: Option<i64>, dflt: u64| v.map_or(dflt, |v| positive(Some(v)));
                let limits = TenantLimits {
                    size_bytes: or(r.size_bytes_limit, default.size_bytes),
                    series: or(r.series_limit, default.series),
                    samples: or(r.samples_limit, default.samples),
                    head_series: c.head_series_limit.unwrap_or(default.head_series),
                };
                (tenant, limits)
            })
            .collect();
        let max_concurrency = usize::try_from(w.global.max_concurrency).unwrap_or(0);
        Ok(LimitsConfig { max_concurrency, default, tenants })
    }

    pub fn of(&self, tenant: &str) -> TenantLimits {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
}

/// Where the limits come from.
#[derive(Debug, Clone)]
pub enum LimitsSource {
    /// `--receive.limits-config-file`, read again every `reload_interval` and applied when
    /// its content changed.
    File { path: PathBuf, reload_interval: Duration },
    /// `--receive.limits-config`.
    Inline(String),
}

/// The limits in force, and the write gate of `max_concurrency`.
pub struct Limiter {
    source: Option<LimitsSource>,
    /// The configuration, its gate and the content it was read from.
    state: RwLock<(Arc<LimitsConfig>, Option<Arc<Semaphore>>, String)>,
    metrics: LimitsMetrics,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("source", &self.source).field("config", &self.state.read().0).finish()
    }
}

impl Default for Limiter {
    /// No limits.
    fn default() -> Self {
        Limiter {
            source: None,
            state: RwLock::new((Arc::default(), None, String::new())),
            metrics: LimitsMetrics::default(),
        }
    }
}

impl Limiter {
    /// The limits of `source`; a configuration that cannot be read is a startup error, as in
    /// Thanos.
    pub fn load(source: LimitsSource) -> Result<Limiter, ReceiveError> {
        let limiter = Limiter { source: Some(source), ..Limiter::default() };
        let content = limiter.read()?;
        limiter.apply(LimitsConfig::parse(&content)?, content);
        Ok(limiter)
    }

    /// Registers the limits metrics (`thanos_receive_limits_config_reload{,_err}_total`,
    /// `thanos_receive_write_limits`) in the receiver's registry.
    pub fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    fn read(&self) -> Result<String, ReceiveError> {
        match &self.source {
            None => Ok(String::new()),
            Some(LimitsSource::Inline(content)) => Ok(content.clone()),
            Some(LimitsSource::File { path, .. }) => {
                use std::io::Read as _;
                let file = std::fs::File::open(path)
                    .map_err(|e| ReceiveError::Config(format!("reading limits config {}: {e}", path.display())))?;
                let mut content = String::new();
                file.take(MAX_FILE_BYTES)
                    .read_to_string(&mut content)
                    .map_err(|e| ReceiveError::Config(format!("reading limits config {}: {e}", path.display())))?;
                Ok(content)
            }
        }
    }

    fn apply(&self, config: LimitsConfig, content: String) {
        let gate = (config.max_concurrency > 0).then(|| Arc::new(Semaphore::new(config.max_concurrency)));
        self.metrics.show(&config);
        *self.state.write() = (Arc::new(config), gate, content);
    }

    /// Reads the file again and applies it if it changed; a file that cannot be read or
    /// parsed keeps the limits in force (and is logged and counted).
    pub fn reload(&self) {
        let changed = self.read().and_then(|content| {
            if self.state.read().2 == content {
                return Ok(false);
            }
            self.apply(LimitsConfig::parse(&content)?, content);
            Ok(true)
        });
        match changed {
            Ok(true) => {
                self.metrics.reloads.inc();
                tracing::info!("limits configuration reloaded");
            }
            Ok(false) => {}
            Err(e) => {
                self.metrics.reload_errors.inc();
                tracing::error!(err = %e, "reloading the limits configuration failed; keeping the limits in force");
            }
        }
    }

    /// Reloads the file every reload interval until `shutdown` (an inline configuration never
    /// changes).
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let Some(LimitsSource::File { reload_interval, .. }) = self.source.clone() else {
            return;
        };
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(reload_interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let limiter = self.clone();
            if tokio::task::spawn_blocking(move || limiter.reload()).await.is_err() {
                return;
            }
        }
    }

    /// The limits in force.
    pub fn config(&self) -> Arc<LimitsConfig> {
        self.state.read().0.clone()
    }

    /// Waits for a place among the writes in flight (Thanos's write gate).
    pub async fn enter(&self) -> Option<OwnedSemaphorePermit> {
        let gate = self.state.read().1.clone()?;
        gate.acquire_owned().await.ok()
    }
}

type LimitLabels = Vec<(&'static str, String)>;

#[derive(Default)]
struct LimitsMetrics {
    reloads: Counter,
    reload_errors: Counter,
    configured: Family<LimitLabels, Gauge>,
}

impl LimitsMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "thanos_receive_limits_config_reload",
            "How many times the limit configuration was reloaded",
            self.reloads.clone(),
        );
        registry.register(
            "thanos_receive_limits_config_reload_err",
            "How many times the limit configuration failed to reload",
            self.reload_errors.clone(),
        );
        registry.register("thanos_receive_write_limits", "The configured write limits", self.configured.clone());
    }

    /// `thanos_receive_write_limits{tenant,limit}` of a configuration (tenant "" for the default).
    fn show(&self, config: &LimitsConfig) {
        self.configured.clear();
        let tenants = std::iter::once(("", config.default)).chain(config.tenants.iter().map(|(t, l)| (t.as_str(), *l)));
        for (tenant, l) in tenants {
            for (limit, v) in [("body_size", l.size_bytes), ("series", l.series), ("samples", l.samples)] {
                let labels = vec![("tenant", tenant.to_owned()), ("limit", limit.to_owned())];
                self.configured.get_or_create(&labels).set(i64::try_from(v).unwrap_or(i64::MAX));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_inherit_what_they_do_not_set() {
        let config = LimitsConfig::parse(
            "write:
  global:
    max_concurrency: 30
    meta_monitoring_url: http://prom:9090
  default:
    request:
      size_bytes_limit: 1024
      series_limit: 1000
      samples_limit: 10
    head_series_limit: 1000
  tenants:
    acme:
      request:
        size_bytes_limit: 0
        series_limit: -1
      head_series_limit: 2000
    ajax:
      request:
        samples_limit: 5
    bare:
",
        )
        .unwrap();
        assert_eq!(config.max_concurrency, 30);
        let default = TenantLimits { size_bytes: 1024, series: 1000, samples: 10, head_series: 1000 };
        assert_eq!(config.of("other"), default);
        assert_eq!(config.of("acme"), TenantLimits { size_bytes: 0, series: 0, samples: 10, head_series: 2000 });
        assert_eq!(config.of("ajax"), TenantLimits { samples: 5, ..default });
        assert_eq!(config.of("bare"), default);
    }

    #[test]
    fn empty_and_strict() {
        assert_eq!(LimitsConfig::parse("").unwrap(), LimitsConfig::default());
        assert_eq!(LimitsConfig::parse("write: {}").unwrap(), LimitsConfig::default());
        let thanos = "write: {global: {meta_monitoring_url: 'http://p:9090', meta_monitoring_limit_query: 'sum(up)'}}";
        assert_eq!(LimitsConfig::parse(thanos).unwrap(), LimitsConfig::default());
        for bad in [
            "write: {default: {request: {series: 1}}}",
            "writes: {}",
            "write: {global: {max_concurrency: x}}",
            "write: {global: {max_concurency: 3}}",
        ] {
            assert!(LimitsConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_file_that_breaks_keeps_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.yaml");
        std::fs::write(&path, "write: {default: {request: {series_limit: 5}}}").unwrap();
        let source = LimitsSource::File { path: path.clone(), reload_interval: Duration::from_secs(1) };
        let limiter = Limiter::load(source).unwrap();
        assert_eq!(limiter.config().default.series, 5);
        std::fs::write(&path, "write: {default: {request: {series_limit: 7}}, global: {max_concurrency: 1}}").unwrap();
        limiter.reload();
        assert_eq!(limiter.config().default.series, 7);
        let permit = limiter.enter().await;
        assert!(permit.is_some());
        assert!(tokio::time::timeout(Duration::from_millis(50), limiter.enter()).await.is_err(), "the gate holds one");
        drop(permit);
        std::fs::write(&path, "write: [").unwrap();
        limiter.reload();
        assert_eq!(limiter.config().default.series, 7);
    }
}
