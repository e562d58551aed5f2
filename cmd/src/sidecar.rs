//! `strata sidecar`: next to a Prometheus, its data over the StoreAPI and its blocks shipped to
//! the bucket. Flags are Thanos's `sidecar` flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use strata_receiver::metrics::Metrics;
use strata_sidecar::store::SidecarStore;
use strata_sidecar::{Sidecar, SidecarOptions, SHIP_INTERVAL};
use strata_store::bucket::TimeBound;
use strata_store::server::{ServerOptions, StoreApi};

use crate::store::parse_time_or_duration;
use crate::{bind_flag, build_info, millis, objstore, ops_routes, parse_duration_flag, serve_http, shutdown_signal};

#[derive(Args)]
pub struct SidecarCmdArgs {
    /// URL of the Prometheus beside the sidecar.
    #[arg(long = "prometheus.url", default_value = "http://localhost:9090")]
    prometheus_url: String,
    /// With a bucket: how long to wait for Prometheus's external labels before giving up.
    #[arg(long = "prometheus.ready_timeout", default_value = "10m", value_parser = parse_duration_flag)]
    ready_timeout: i64,
    /// How often Prometheus's configuration (external labels) is read; also the heartbeat.
    #[arg(long = "prometheus.get_config_interval", default_value = "30s", value_parser = parse_duration_flag)]
    get_config_interval: i64,
    /// How long one request to Prometheus's API may take.
    #[arg(long = "prometheus.get_config_timeout", default_value = "30s", value_parser = parse_duration_flag)]
    get_config_timeout: i64,
    /// Prometheus's data directory, whose blocks are shipped.
    #[arg(long = "tsdb.path", default_value = "./data")]
    tsdb_path: PathBuf,
    #[command(flatten)]
    objstore: objstore::ObjstoreArgs,
    /// Ship compacted blocks too, not only level-1 ones (for a Prometheus that compacted blocks
    /// before the sidecar ran; mind overlaps with blocks already in the bucket).
    #[arg(long = "shipper.upload-compacted")]
    upload_compacted: bool,
    /// Serve only data from this time on: RFC 3339, or a duration relative to now (`-2h`).
    #[arg(long = "min-time", default_value = "0000-01-01T00:00:00Z", value_parser = parse_time_or_duration)]
    min_time: TimeBound,
    /// Address of the StoreAPI (`thanos.Store`, `thanos.info.Info`).
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: SocketAddr,
    /// Address for /metrics, /-/healthy and /-/ready.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
}

/// Runs the sidecar until SIGTERM or Ctrl-C: the heartbeat every
/// `--prometheus.get_config_interval`, shipping every 30 s when a bucket is configured.
pub async fn run(a: SidecarCmdArgs) -> anyhow::Result<()> {
    let bucket = a.objstore.bucket()?;
    if bucket.is_none() {
        tracing::info!("no bucket configured (--objstore.config-file, --objstore.config): uploads are disabled");
    }
    let shipping = bucket.is_some();
    let options = SidecarOptions {
        prometheus_url: a.prometheus_url.clone(),
        request_timeout: millis(a.get_config_timeout),
        tsdb_path: a.tsdb_path.clone(),
        upload_compacted: a.upload_compacted,
        min_time: a.min_time,
    };
    let sidecar = Sidecar::new(options, bucket).context("--prometheus.url")?;
    let build = build_info();
    let mut metrics = Metrics::for_process(&build);
    sidecar.register_metrics(metrics.registry_mut());
    let metrics = Arc::new(metrics);

    let http = bind_flag("--http-address", a.http_address).await?;
    let grpc = bind_flag("--grpc-address", a.grpc_address).await?;
    tracing::info!(
        http = %http.local_addr().context("HTTP listener address")?,
        grpc = %grpc.local_addr().context("gRPC listener address")?,
        prometheus = %a.prometheus_url,
        tsdb_path = %a.tsdb_path.display(),
        shipping,
        "starting sidecar"
    );

    let ready = sidecar.clone();
    let router = ops_routes(metrics.clone(), move || ready.not_ready_reason());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = serve_http(http, router, stop_rx.clone(), "http");
    let store = Arc::new(SidecarStore::new(sidecar.clone(), tokio::runtime::Handle::current()));
    let reason = sidecar.clone();
    let store_api = StoreApi::new(store, ServerOptions::default(), metrics.grpc.clone())
        .with_not_ready_reason(Arc::new(move || reason.not_ready_reason()));
    let mut grpc_stop = stop_rx.clone();
    let grpc_task = tokio::spawn(store_api.serve(grpc, async move {
        let _ = grpc_stop.wait_for(|s| *s).await;
    }));

    let interval = millis(a.get_config_interval).max(Duration::from_millis(100));
    let beat = sidecar.clone();
    let mut beat_stop = stop_rx.clone();
    let heartbeat_task = tokio::spawn(async move {
        loop {
            let _ = beat.heartbeat().await;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = beat_stop.wait_for(|s| *s) => return,
            }
        }
    });

    let ship = sidecar.clone();
    let ready_timeout = millis(a.ready_timeout);
    let mut ship_stop = stop_rx.clone();
    let ship_task = tokio::spawn(async move {
        if !shipping {
            return Ok(());
        }
        // As Thanos: shipping waits for external labels, up to --prometheus.ready_timeout.
        let started = Instant::now();
        while ship.external_labels().is_empty() {
            if started.elapsed() > ready_timeout {
                anyhow::bail!(
                    "no external labels from Prometheus after --prometheus.ready_timeout {ready_timeout:?}: {}",
                    ship.not_ready_reason().unwrap_or_default()
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = ship_stop.wait_for(|s| *s) => return Ok(()),
            }
        }
        loop {
            match ship.ship().await {
                Some(Ok(stats)) if stats.uploaded > 0 => {
                    tracing::info!(uploaded = stats.uploaded, bytes = stats.bytes, "shipped blocks")
                }
                Some(Err(e)) => tracing::warn!(error = %e, "shipping failed; retrying on the next pass"),
                _ => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(SHIP_INTERVAL) => {}
                _ = ship_stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    });

    // Without a bucket the shipper task ends at once; only a failing one stops the sidecar.
    let failed = tokio::select! {
        () = shutdown_signal() => None,
        result = ship_task, if shipping => Some(result),
    };
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    let (_, grpc, _) = tokio::join!(http_task, grpc_task, heartbeat_task);
    match grpc {
        Ok(Err(e)) => tracing::error!(error = %e, server = "grpc", "server failed"),
        Err(e) => tracing::error!(error = %e, server = "grpc", "server task failed"),
        Ok(Ok(())) => {}
    }
    match failed {
        Some(Ok(Err(e))) => return Err(e),
        Some(Err(e)) => return Err(e).context("shipper task"),
        _ => {}
    }
    tracing::info!("shutdown complete");
    Ok(())
}
