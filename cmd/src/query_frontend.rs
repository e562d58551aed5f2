//! `strata query-frontend`: Thanos's query frontend in front of any Prometheus-compatible query
//! API. Flags are Thanos's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_query::frontend::cache::ResultsCache;
use strata_query::frontend::downstream::{Downstream, DEFAULT_MAX_ANSWER_BYTES};
use strata_query::frontend::proxy::Proxy;
use strata_query::frontend::tls::Tls;
use strata_query::frontend::tripper::parse_tripper_config;
use strata_query::frontend::{Frontend, FrontendMetrics, FrontendOptions};
use strata_receiver::metrics::Metrics;

use crate::{bind_flag, build_info, file_or_inline, ops_routes, parse_duration_flag, serve_http, shutdown_signal};

#[derive(Args)]
pub struct QueryFrontendArgs {
    /// Address of the frontend's HTTP API, /metrics and the probes.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// URL of the query API answering behind the frontend (`strata query`, `thanos query`,
    /// Prometheus).
    #[arg(long = "query-frontend.downstream-url", default_value = "http://localhost:9090")]
    downstream_url: String,
    /// Range queries are split into pieces of at most this much time, cut at multiples of it;
    /// 0 does not split (and then nothing is cached).
    #[arg(long = "query-range.split-interval", default_value = "24h", value_parser = parse_duration_flag)]
    split_interval: i64,
    /// Pieces of one query asked of the downstream at once.
    #[arg(long = "query-range.max-query-parallelism", default_value_t = 14)]
    max_query_parallelism: usize,
    /// Moves a range query's start and end down to multiples of its step, so that its pieces
    /// are cached on one grid.
    #[arg(long = "query-range.align-range-with-step", default_value_t = true, action = clap::ArgAction::Set)]
    align_range_with_step: bool,
    /// Times a piece is tried when the downstream fails to answer or answers 5xx.
    #[arg(long = "query-range.max-retries-per-request", default_value_t = 5)]
    max_retries: usize,
    /// File with the results cache configuration (Thanos's format: `type: IN-MEMORY`,
    /// `MEMCACHED` or `REDIS` with its `config`). Without it nothing is cached.
    #[arg(long = "query-range.response-cache-config-file", conflicts_with = "response_cache_config")]
    response_cache_config_file: Option<PathBuf>,
    /// The results cache configuration itself, instead of a file.
    #[arg(long = "query-range.response-cache-config")]
    response_cache_config: Option<String>,
    /// Results newer than this before now are not cached (they may still change).
    #[arg(long = "query-range.response-cache-max-freshness", default_value = "1m", value_parser = parse_duration_flag)]
    max_freshness: i64,
    /// Label names, values and series requests are split into pieces of at most this much
    /// time; 0 does not split.
    #[arg(long = "labels.split-interval", default_value = "24h", value_parser = parse_duration_flag)]
    labels_split_interval: i64,
    /// Request headers naming the tenant (cache entries are per tenant), first found wins;
    /// `THANOS-TENANT` is looked at after these. Repeatable.
    #[arg(long = "query-frontend.org-id-header")]
    org_id_headers: Vec<String>,
    /// Longest wait for the downstream to accept a connection.
    #[arg(long = "query-frontend.downstream-dial-timeout", default_value = "10s", value_parser = parse_duration_flag)]
    dial_timeout: i64,
    /// File with the downstream client's settings (Thanos's downstream tripper config:
    /// `idle_conn_timeout`, `response_header_timeout`, `tls_handshake_timeout`,
    /// `expect_continue_timeout`, `max_idle_conns`, `max_idle_conns_per_host`,
    /// `max_conns_per_host`, `tls_config` for an https downstream).
    #[arg(long = "query-frontend.downstream-tripper-config-file", conflicts_with = "tripper_config")]
    tripper_config_file: Option<PathBuf>,
    /// The downstream tripper configuration itself, instead of a file.
    #[arg(long = "query-frontend.downstream-tripper-config")]
    tripper_config: Option<String>,
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Runs the frontend until SIGTERM or Ctrl-C.
pub async fn run(a: QueryFrontendArgs) -> anyhow::Result<()> {
    let build = build_info();
    let mut metrics = Metrics::for_process(&build);
    let frontend_metrics = FrontendMetrics::default();
    frontend_metrics.register(metrics.registry_mut());
    let metrics = Arc::new(metrics);

    let cache = file_or_inline(
        a.response_cache_config_file.as_deref(),
        "--query-range.response-cache-config-file",
        a.response_cache_config.as_deref(),
        "--query-range.response-cache-config",
    )?
    .map(|(yaml, source)| ResultsCache::from_yaml(&yaml, &source))
    .transpose()?;
    if cache.is_some() && a.split_interval <= 0 {
        anyhow::bail!("--query-range.split-interval must be above 0 when a results cache is configured");
    }
    let tripper = match file_or_inline(
        a.tripper_config_file.as_deref(),
        "--query-frontend.downstream-tripper-config-file",
        a.tripper_config.as_deref(),
        "--query-frontend.downstream-tripper-config",
    )? {
        Some((yaml, source)) => parse_tripper_config(&yaml, &source, millis(a.dial_timeout)),
        None => parse_tripper_config("", "", millis(a.dial_timeout)),
    }
    .map_err(anyhow::Error::msg)?;
    let mut tripper = tripper;
    // Thanos's downstream transport takes its proxy from the environment (Go's
    // http.ProxyFromEnvironment); its tripper config has no proxy fields.
    tripper.transport.proxy =
        Proxy::from_environment().map_err(|e| anyhow::anyhow!("the downstream's proxy from the environment: {e}"))?;
    let tls = tripper
        .tls
        .as_ref()
        .map(Tls::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("downstream tripper config: tls_config: {e}"))?;
    let downstream = Downstream::new(
        "--query-frontend.downstream-url",
        &a.downstream_url,
        a.max_retries,
        DEFAULT_MAX_ANSWER_BYTES,
        &tripper.transport,
        tls.as_ref(),
    )
    .map_err(anyhow::Error::msg)?;
    let mut tenant_headers = a.org_id_headers.clone();
    tenant_headers.push(strata_query::api::DEFAULT_TENANT_HEADER.to_owned());
    let options = FrontendOptions {
        split_interval: a.split_interval,
        labels_split_interval: a.labels_split_interval,
        max_query_parallelism: a.max_query_parallelism,
        align_range_with_step: a.align_range_with_step,
        max_freshness: millis(a.max_freshness),
        tenant_headers,
    };

    let http = bind_flag("--http-address", a.http_address).await?;
    tracing::info!(
        http = %http.local_addr().context("HTTP listener address")?,
        downstream = %a.downstream_url,
        cache = cache.as_ref().map_or("none", ResultsCache::kind),
        "starting query frontend"
    );
    let observed = metrics.clone();
    let observe: strata_query::api::RequestObserver = Arc::new(move |handler, method, code, elapsed| {
        observed.observe_request(handler, method.as_str(), code, elapsed)
    });
    let frontend = Frontend::new(options, downstream, cache, frontend_metrics, Some(observe));
    let router = strata_query::frontend::router(frontend).merge(ops_routes(metrics.clone(), || None));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = serve_http(http, router, stop_rx, "http");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    tracing::info!("shutdown complete");
    Ok(())
}
