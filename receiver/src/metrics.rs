//! `/metrics`, the process's one registry: HTTP request counters and durations (the receiver's
//! and, in standalone, the query API's), the StoreAPI server's `grpc_server_*`, the per-tenant
//! TSDB metrics under Prometheus's names, the shipper's under Thanos's, `process_*` and
//! `strata_build_info`.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use strata_store::server::ServerMetrics;
use strata_tsdb::head::AppendOutcome;

use crate::tenants::MultiTsdb;

type RequestLabels = Vec<(&'static str, String)>;

/// Thanos's default buckets for `http_request_duration_seconds`, in seconds.
const DURATION_BUCKETS: [f64; 17] =
    [0.001, 0.01, 0.1, 0.3, 0.6, 1., 3., 6., 9., 20., 30., 60., 90., 120., 240., 360., 720.];

/// What the binary was built from, for `strata_build_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: String,
    /// The source's commit, or "unknown".
    pub revision: String,
    pub branch: String,
    pub rust_version: String,
}

impl Default for BuildInfo {
    fn default() -> Self {
        let unknown = || "unknown".to_owned();
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            revision: unknown(),
            branch: unknown(),
            rust_version: unknown(),
        }
    }
}

/// The process's metrics registry. Help texts of registered metrics have no final period: the
/// registry adds one.
pub struct Metrics {
    registry: Registry,
    /// The StoreAPI server's `grpc_server_*` metrics.
    pub grpc: ServerMetrics,
    http_requests: Family<RequestLabels, Counter>,
    http_request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    refused_samples: Family<RequestLabels, Counter>,
    write_timeseries: Family<RequestLabels, Histogram, fn() -> Histogram>,
    write_samples: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

/// Thanos's buckets for `thanos_receive_write_{timeseries,samples}`.
const WRITE_SIZE_BUCKETS: [f64; 7] = [10., 50., 100., 500., 1000., 5000., 10000.];

impl Metrics {
    /// A receiver's metrics: the process's, and the head and WAL counters of every tenant.
    pub fn new(tenants: Arc<MultiTsdb>, build: &BuildInfo) -> Self {
        let mut metrics = Metrics::for_process(build);
        metrics.registry.register_collector(Box::new(TsdbCollector { tenants }));
        metrics
    }

    /// What every strata process exports: HTTP requests, build info, process resources and the
    /// StoreAPI server's gRPC metrics. Components add theirs through [`Metrics::registry_mut`].
    pub fn for_process(build: &BuildInfo) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "Tracks the number of HTTP requests", http_requests.clone());
        let http_request_duration: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        registry.register(
            "http_request_duration_seconds",
            "Tracks the latencies for HTTP requests",
            http_request_duration.clone(),
        );
        let refused_samples = Family::<RequestLabels, Counter>::default();
        registry.register(
            "strata_receive_refused_samples",
            "Samples refused by the TSDB head, by tenant and reason",
            refused_samples.clone(),
        );
        let write_timeseries: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(WRITE_SIZE_BUCKETS));
        registry.register(
            "thanos_receive_write_timeseries",
            "The number of timeseries received in the incoming write requests",
            write_timeseries.clone(),
        );
        let write_samples: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(WRITE_SIZE_BUCKETS));
        registry.register(
            "thanos_receive_write_samples",
            "The number of sampled received in the incoming write requests",
            write_samples.clone(),
        );
        let build_info = Family::<RequestLabels, Gauge>::default();
        build_info
            .get_or_create(&vec![
                ("version", build.version.clone()),
                ("revision", build.revision.clone()),
                ("branch", build.branch.clone()),
                ("rustversion", build.rust_version.clone()),
            ])
            .set(1);
        registry.register(
            "strata_build_info",
            "A metric with a constant '1' value labeled by version, revision, branch, and rustversion from which \
             strata was built",
            build_info,
        );
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        let grpc = ServerMetrics::new(&mut registry);
        Metrics {
            registry,
            grpc,
            http_requests,
            http_request_duration,
            refused_samples,
            write_timeseries,
            write_samples,
        }
    }

    /// Counts a request and its duration under Thanos's names and labels: `handler` is the
    /// endpoint's name (`receive`, `query`, `label_values`, …), the method is lower-cased as
    /// Go's promhttp does.
    pub fn observe_request(&self, handler: &str, method: &str, code: StatusCode, elapsed: Duration) {
        let labels = vec![
            ("code", code.as_u16().to_string()),
            ("handler", handler.to_owned()),
            ("method", method.to_ascii_lowercase()),
        ];
        self.http_requests.get_or_create(&labels).inc();
        self.http_request_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    pub fn observe_write(&self, tenant: &str, outcome: &AppendOutcome) {
        let r = &outcome.rejected;
        for (reason, n) in [
            ("out_of_order", r.out_of_order),
            ("duplicate_timestamp", r.duplicate_timestamp),
            ("out_of_bounds", r.out_of_bounds),
        ] {
            if n > 0 {
                self.refused_samples
                    .get_or_create(&vec![("reason", reason.to_owned()), ("tenant", tenant.to_owned())])
                    .inc_by(n);
            }
        }
    }

    /// The size of a remote-write request that reached the write path, by its status and tenant
    /// (Thanos's `thanos_receive_write_{timeseries,samples}`).
    pub fn observe_write_request(&self, code: StatusCode, tenant: &str, series: usize, samples: usize) {
        let labels = vec![("code", code.as_u16().to_string()), ("tenant", tenant.to_owned())];
        self.write_timeseries.get_or_create(&labels).observe(series as f64);
        self.write_samples.get_or_create(&labels).observe(samples as f64);
    }

    /// The registry, for a component's own metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The registry in the text exposition format.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Reads head and WAL counters of every tenant at scrape time.
struct TsdbCollector {
    tenants: Arc<MultiTsdb>,
}

impl fmt::Debug for TsdbCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TsdbCollector")
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Gauge,
    Counter,
}

/// One metric family with one value per tenant (plus `extra` labels).
pub(crate) fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: Kind,
    extra: &[(&str, &str)],
    values: &[(String, f64)],
) -> fmt::Result {
    let metric_type = match kind {
        Kind::Gauge => prometheus_client::metrics::MetricType::Gauge,
        Kind::Counter => prometheus_client::metrics::MetricType::Counter,
    };
    let mut m = enc.encode_descriptor(name, help, None, metric_type)?;
    for (tenant, v) in values {
        let mut labels: Vec<(&str, &str)> = extra.to_vec();
        labels.push(("tenant", tenant));
        let e = m.encode_family(&labels)?;
        match kind {
            Kind::Gauge => ConstGauge::new(*v).encode(e)?,
            Kind::Counter => ConstCounter::new(*v).encode(e)?,
        }
    }
    Ok(())
}

impl Collector for TsdbCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let tenants = self.tenants.all();
        let per = |f: &dyn Fn(&strata_tsdb::db::Db) -> f64| -> Vec<(String, f64)> {
            tenants.iter().map(|(t, db)| (t.clone(), f(db))).collect()
        };
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        // Counter names omit `_total`: the encoder appends it.
        family(
            &mut enc,
            "prometheus_tsdb_head_series",
            "Total number of series in the head block.",
            Kind::Gauge,
            &[],
            &per(&|db| load(&db.head().stats().series)),
        )?;
        family(
            &mut enc,
            "prometheus_tsdb_head_series_created",
            "Total number of series created in the head",
            Kind::Counter,
            &[],
            &per(&|db| load(&db.head().stats().series_created)),
        )?;
        family(
            &mut enc,
            "prometheus_tsdb_head_samples_appended",
            "Total number of appended samples.",
            Kind::Counter,
            &[("type", "float")],
            &per(&|db| load(&db.head().stats().samples_appended)),
        )?;
        family(
            &mut enc,
            "prometheus_tsdb_head_chunks",
            "Total number of chunks in the head block.",
            Kind::Gauge,
            &[],
            &per(&|db| load(&db.head().stats().chunks)),
        )?;
        family(
            &mut enc,
            "prometheus_tsdb_head_chunks_created",
            "Total number of chunks created in the head",
            Kind::Counter,
            &[],
            &per(&|db| load(&db.head().stats().chunks_created)),
        )?;
        family(
            &mut enc,
            "prometheus_tsdb_out_of_order_samples",
            "Total number of out of order samples ingestion failed attempts.",
            Kind::Counter,
            &[("type", "float")],
            &per(&|db| load(&db.head().stats().out_of_order)),
        )?;
        family(
            &mut enc,
            "prometheus_tsdb_out_of_bound_samples",
            "Total number of out of bound samples ingestion failed attempts.",
            Kind::Counter,
            &[("type", "float")],
            &per(&|db| load(&db.head().stats().out_of_bounds)),
        )?;
        family(
            &mut enc,
            "strata_tsdb_duplicate_timestamp_samples",
            "Total number of samples refused for a second value at an existing timestamp.",
            Kind::Counter,
            &[],
            &per(&|db| load(&db.head().stats().duplicate)),
        )?;
        let time_s = |t: i64| if t == i64::MAX || t == i64::MIN { f64::NAN } else { t as f64 / 1000.0 };
        family(
            &mut enc,
            "prometheus_tsdb_head_min_time_seconds",
            "Minimum time bound of the head block.",
            Kind::Gauge,
            &[],
            &per(&|db| time_s(db.head().min_time())),
        )?;
        family(
            &mut enc,
            "prometheus_tsdb_head_max_time_seconds",
            "Maximum timestamp of the head block.",
            Kind::Gauge,
            &[],
            &per(&|db| time_s(db.head().max_time())),
        )?;
        crate::wal_metrics::encode(&mut enc, &tenants)?;
        let shippers = self.tenants.shippers();
        let ship =
            |f: &dyn Fn(&strata_shipper::ShipperMetrics) -> &std::sync::atomic::AtomicU64| -> Vec<(String, f64)> {
                shippers.iter().map(|(t, s)| (t.clone(), load(f(&s.metrics())))).collect()
            };
        family(
            &mut enc,
            "thanos_shipper_uploads",
            "Total number of uploaded blocks.",
            Kind::Counter,
            &[],
            &ship(&|m| &m.uploads_total),
        )?;
        family(
            &mut enc,
            "thanos_shipper_upload_failures",
            "Total number of block upload failures.",
            Kind::Counter,
            &[],
            &ship(&|m| &m.upload_failures_total),
        )?;
        family(
            &mut enc,
            "thanos_shipper_dir_syncs",
            "Total number of dir syncs.",
            Kind::Counter,
            &[],
            &ship(&|m| &m.dir_syncs_total),
        )?;
        family(
            &mut enc,
            "thanos_shipper_dir_sync_failures",
            "Total number of failed dir syncs.",
            Kind::Counter,
            &[],
            &ship(&|m| &m.dir_sync_failures_total),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_process_and_build_are_exported() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = Arc::new(MultiTsdb::new(dir.path(), Default::default(), Default::default(), None));
        let build = BuildInfo {
            version: "1.2.3".into(),
            revision: "abc123".into(),
            branch: "main".into(),
            rust_version: "1.85.0".into(),
        };
        let m = Metrics::new(tenants, &build);
        m.observe_request("query", "GET", StatusCode::OK, Duration::from_millis(20));
        m.observe_request("query", "GET", StatusCode::OK, Duration::from_millis(200));
        let text = m.render().unwrap();
        let labels = r#"{code="200",handler="query",method="get"}"#;
        for want in [
            format!("http_requests_total{labels} 2\n"),
            format!("http_request_duration_seconds_count{labels} 2\n"),
            format!("http_request_duration_seconds_sum{labels} 0.22"),
            r#"strata_build_info{version="1.2.3",revision="abc123",branch="main",rustversion="1.85.0"} 1"#.into(),
        ] {
            assert!(text.contains(&want), "{want} in\n{text}");
        }
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
            "process_max_fds",
        ] {
            let value = text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')).map(str::parse::<f64>);
            assert!(matches!(value, Some(Ok(v)) if v >= 0.0), "{name} in\n{text}");
        }
    }
}
