//! `strata store`: the store gateway, serving the blocks of a bucket over the StoreAPI. Flags
//! are Thanos's `store` flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_cache::parse_bytes;
use strata_receiver::metrics::Metrics;
use strata_shipper::relabel::Relabel;
use strata_store::bucket::{BucketStore, BucketStoreOptions, IndexCacheConfig, TimeBound};
use strata_store::server::{SeriesLimits, ServerOptions, StoreApi};

use crate::{
    bind_flag, build_info, file_or_inline, millis, objstore, ops_routes, parse_duration_flag, serve_http,
    shutdown_signal,
};

#[derive(Args)]
pub struct StoreCmdArgs {
    #[command(flatten)]
    objstore: objstore::ObjstoreArgs,
    /// Directory for the blocks' index headers (rebuilt from the bucket when missing).
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    /// Address of the StoreAPI (`thanos.Store`, `thanos.info.Info`).
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: SocketAddr,
    /// Address for /metrics, /-/healthy and /-/ready.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// How often the bucket is listed for new and removed blocks.
    #[arg(long = "sync-block-duration", default_value = "15m", value_parser = parse_duration_flag)]
    sync_block_duration: i64,
    /// Blocks loaded at once during a sync.
    #[arg(long = "block-sync-concurrency", default_value_t = 20)]
    block_sync_concurrency: usize,
    /// Blocks uploaded less than this long ago are not loaded yet (except compactor output).
    #[arg(long = "consistency-delay", default_value = "0s", value_parser = parse_duration_flag)]
    consistency_delay: i64,
    /// A block marked for deletion is still served until its mark is this old.
    #[arg(long = "ignore-deletion-marks-delay", default_value = "24h", value_parser = parse_duration_flag)]
    ignore_deletion_marks_delay: i64,
    /// Serve only blocks ending after this time: RFC 3339, or a duration relative to now
    /// (`-2w`).
    #[arg(long = "min-time", default_value = "0000-01-01T00:00:00Z", value_parser = parse_time_or_duration)]
    min_time: TimeBound,
    /// Serve only blocks starting before this time: RFC 3339, or a duration relative to now.
    #[arg(long = "max-time", default_value = "9999-12-31T23:59:59Z", value_parser = parse_time_or_duration)]
    max_time: TimeBound,
    /// Most samples one Series call may answer (counted from the chunk headers); 0 = no limit.
    #[arg(long = "store.grpc.series-sample-limit", default_value_t = 0)]
    series_sample_limit: u64,
    /// Series calls answered at once; more wait.
    #[arg(long = "store.grpc.series-max-concurrency", default_value_t = 20)]
    series_max_concurrency: usize,
    /// Bytes of postings lists and series entries kept in memory (`250MB`, `1GiB`, …; units of
    /// 1024 as Thanos reads them).
    #[arg(long = "index-cache-size", default_value = "250MB", value_parser = parse_bytes)]
    index_cache_size: u64,
    /// Index cache configuration file in Thanos's YAML (`type: IN-MEMORY | MEMCACHED | REDIS`,
    /// `config: …`, `enabled_items`); replaces `--index-cache-size`.
    #[arg(long = "index-cache.config-file", conflicts_with = "index_cache_config")]
    index_cache_config_file: Option<PathBuf>,
    /// The index cache configuration itself, instead of a file.
    #[arg(long = "index-cache.config")]
    index_cache_config: Option<String>,
    /// Bytes of chunk data all Series calls may hold at once; a call that would need more fails
    /// naming the limit.
    #[arg(long = "chunk-pool-size", default_value = "2GB", value_parser = parse_bytes)]
    chunk_pool_size: u64,
    /// Relabel configs (Prometheus's `relabel_configs` YAML) selecting the blocks to serve by
    /// their external labels and `__block_id`, e.g. `hashmod` to shard blocks over stores.
    #[arg(long = "selector.relabel-config-file", conflicts_with = "selector_relabel_config")]
    selector_relabel_config_file: Option<PathBuf>,
    /// The relabel configs themselves, instead of a file.
    #[arg(long = "selector.relabel-config")]
    selector_relabel_config: Option<String>,
    /// Most series one Series call may answer; 0 = no limit.
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    request_series: u64,
    /// Most samples one Series call may answer; 0 = no limit.
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    request_samples: u64,
    /// Open (memory-map) a block's index header only when a query first needs it, instead of
    /// at load; off by default, as in Thanos.
    #[arg(long = "store.enable-index-header-lazy-reader", default_value_t = false)]
    lazy_index_header: bool,
    /// With the lazy reader, close an index header unused this long; 0s keeps them open.
    #[arg(long = "store.index-header-lazy-reader-idle-timeout", default_value = "5m", value_parser = parse_duration_flag)]
    index_header_idle_timeout: i64,
}

/// How soon a failed first sync is tried again.
const FIRST_SYNC_RETRY: Duration = Duration::from_secs(5);

/// Thanos's `TimeOrDurationValue`: an RFC 3339 time, or a Prometheus duration (negative with
/// a leading `-`) added to the time of use.
pub(crate) fn parse_time_or_duration(s: &str) -> Result<TimeBound, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(TimeBound::Absolute(t.timestamp_millis()));
    }
    let (minus, d) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let ms = parse_duration_flag(d).map_err(|e| format!("{s:?} is neither an RFC 3339 time nor a duration: {e}"))?;
    Ok(TimeBound::Relative(if minus { -ms } else { ms }))
}

/// The block selector of `--selector.relabel-config-file` or `--selector.relabel-config`
/// (store gateway and compactor); no flag selects every block.
pub(crate) fn selector_flag(file: Option<&std::path::Path>, text: Option<&str>) -> anyhow::Result<Relabel> {
    match file_or_inline(file, "--selector.relabel-config-file", text, "--selector.relabel-config")? {
        Some((text, source)) => Relabel::parse(&text).with_context(|| source),
        None => Ok(Relabel::default()),
    }
}

/// Syncs `store` with its bucket now and then every `interval` (at least 1 s) until `stop`
/// turns true; a failed first sync is retried sooner, since the store is not ready until one
/// has succeeded. Used by `strata store` and by `strata standalone`'s store over its bucket.
pub(crate) fn spawn_sync(
    store: Arc<BucketStore>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let interval = interval.max(Duration::from_secs(1));
    tokio::spawn(async move {
        loop {
            let next = match store.sync().await {
                Ok(()) => interval,
                Err(e) => {
                    tracing::error!(error = %e, "bucket sync failed");
                    if store.is_synced() {
                        interval
                    } else {
                        FIRST_SYNC_RETRY.min(interval)
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    })
}

/// Closes `store`'s idle lazy index headers every tenth of `idle_timeout` (as Thanos's reader
/// pool) until `stop` turns true.
fn spawn_header_unloader(
    store: Arc<BucketStore>,
    idle_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let every = (idle_timeout / 10).max(Duration::from_millis(100));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let unloaded = store.unload_idle_headers();
            if unloaded > 0 {
                tracing::debug!(unloaded, "closed idle index headers");
            }
        }
    })
}

/// Runs the store gateway until SIGTERM or Ctrl-C: the first sync, then one every
/// `--sync-block-duration`; not ready until the first sync has finished.
pub async fn run(a: StoreCmdArgs) -> anyhow::Result<()> {
    let bucket = a.objstore.bucket()?.context("no bucket: give --objstore.config-file or --objstore.config")?;
    std::fs::create_dir_all(&a.data_dir).with_context(|| format!("create --data-dir {}", a.data_dir.display()))?;
    let selector = selector_flag(a.selector_relabel_config_file.as_deref(), a.selector_relabel_config.as_deref())?;
    // Thanos: the YAML configuration, when given, replaces --index-cache-size.
    let index_cache = match file_or_inline(
        a.index_cache_config_file.as_deref(),
        "--index-cache.config-file",
        a.index_cache_config.as_deref(),
        "--index-cache.config",
    )? {
        Some((yaml, source)) => IndexCacheConfig::from_yaml(&yaml, &source)?,
        None => IndexCacheConfig::in_memory(a.index_cache_size),
    };
    tracing::info!(index_cache = ?index_cache, "index cache");
    let build = build_info();
    let mut metrics = Metrics::for_process(&build);
    let options = BucketStoreOptions {
        data_dir: a.data_dir.clone(),
        block_sync_concurrency: a.block_sync_concurrency,
        consistency_delay: millis(a.consistency_delay),
        ignore_deletion_marks_delay: millis(a.ignore_deletion_marks_delay),
        min_time: a.min_time,
        max_time: a.max_time,
        index_cache,
        chunk_pool_size: a.chunk_pool_size,
        selector,
        lazy_index_header: a.lazy_index_header,
        index_header_idle_timeout: millis(a.index_header_idle_timeout),
    };
    let store = Arc::new(BucketStore::new(bucket, options, tokio::runtime::Handle::current(), metrics.registry_mut()));
    let metrics = Arc::new(metrics);

    let http = bind_flag("--http-address", a.http_address).await?;
    let grpc = bind_flag("--grpc-address", a.grpc_address).await?;
    tracing::info!(
        http = %http.local_addr().context("HTTP listener address")?,
        grpc = %grpc.local_addr().context("gRPC listener address")?,
        data_dir = %a.data_dir.display(),
        "starting store gateway"
    );

    let ready = store.clone();
    let router = ops_routes(metrics.clone(), move || {
        (!ready.is_synced()).then(|| "not ready: first bucket sync in progress".to_owned())
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = serve_http(http, router, stop_rx.clone(), "http");
    let samples = [a.series_sample_limit, a.request_samples].into_iter().filter(|&l| l > 0).min().unwrap_or(0);
    let server_options = ServerOptions {
        limits: SeriesLimits { series: a.request_series, samples, ..SeriesLimits::default() },
        max_concurrent_series: a.series_max_concurrency,
        ..ServerOptions::default()
    };
    let synced = store.clone();
    let store_api = StoreApi::new(store.clone(), server_options, metrics.grpc.clone())
        .with_readiness(Arc::new(move || synced.is_synced()));
    let mut grpc_stop = stop_rx.clone();
    let grpc_task = tokio::spawn(store_api.serve(grpc, async move {
        let _ = grpc_stop.wait_for(|s| *s).await;
    }));

    let sync_task = spawn_sync(store.clone(), millis(a.sync_block_duration), stop_rx.clone());
    let unload_task = (a.lazy_index_header && a.index_header_idle_timeout > 0)
        .then(|| spawn_header_unloader(store.clone(), millis(a.index_header_idle_timeout), stop_rx.clone()));

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    let (_, grpc, _) = tokio::join!(http_task, grpc_task, sync_task);
    if let Some(t) = unload_task {
        let _ = t.await;
    }
    match grpc {
        Ok(Err(e)) => tracing::error!(error = %e, server = "grpc", "server failed"),
        Err(e) => tracing::error!(error = %e, server = "grpc", "server task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("shutdown complete");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time_or_duration("1970-01-01T00:00:00Z"), Ok(TimeBound::Absolute(0)));
        assert_eq!(parse_time_or_duration("2023-11-14T22:13:20.5Z"), Ok(TimeBound::Absolute(1_700_000_000_500)));
        assert_eq!(parse_time_or_duration("2023-11-15T00:13:20+02:00"), Ok(TimeBound::Absolute(1_700_000_000_000)));
        assert_eq!(parse_time_or_duration("0000-01-01T00:00:00Z"), Ok(TimeBound::Absolute(-62_167_219_200_000)));
        assert_eq!(parse_time_or_duration("9999-12-31T23:59:59Z"), Ok(TimeBound::Absolute(253_402_300_799_000)));
        assert_eq!(parse_time_or_duration("-2w"), Ok(TimeBound::Relative(-14 * 24 * 3_600_000)));
        assert_eq!(parse_time_or_duration("1h30m"), Ok(TimeBound::Relative(5_400_000)));
        for bad in ["", "-", "yesterday", "2023-13-01T00:00:00Z", "2023-11-14T22:13:20"] {
            assert!(parse_time_or_duration(bad).is_err(), "{bad}");
        }
    }
}
