//! `strata compact`: the compactor over a bucket, with Thanos's `compact` flags. One pass, or
//! with `--wait` one pass every `--wait-interval` until stopped; `/metrics`, `/-/healthy` and
//! `/-/ready` on `--http-address` meanwhile, and the bucket page with `/api/v1/blocks` (the
//! loaded view: the last sync; with `--wait` also the global view of the whole bucket).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use strata_compact::web::{BlocksView, GlobalFilter, WebOptions};
use strata_compact::{CompactMetrics, Compactor, CompactorOptions, Retention};
use strata_receiver::metrics::Metrics;
use strata_shipper::FetcherMetrics;
use strata_tsdb::dedup::penalty_merge_chunks;
use strata_tsdb::querier::{merge_chunks, ChunkMerge};

use crate::store::selector_flag;
use crate::{bind_flag, build_info, millis, objstore, ops_routes, parse_duration_flag, serve_http, shutdown_signal};

#[derive(Args)]
pub struct CompactArgs {
    #[command(flatten)]
    objstore: objstore::ObjstoreArgs,
    /// Scratch space: blocks are downloaded and merged here, and removed afterwards.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    /// Address for /metrics, /-/healthy and /-/ready.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// Keep running, one pass every --wait-interval; without it one pass, then exit.
    #[arg(long = "wait")]
    wait: bool,
    #[command(flatten)]
    pass: PassFlags,
    /// Blocks downsampled at once.
    #[arg(long = "downsample.concurrency", default_value_t = 1)]
    downsample_concurrency: usize,
    /// Merge overlapping blocks of a group (vertical compaction) instead of halting.
    #[arg(long = "compact.enable-vertical-compaction")]
    vertical_compaction: bool,
    /// External label naming a replica (repeatable): removed from the blocks' labels before
    /// grouping, so replicas are merged into one block; implies vertical compaction.
    #[arg(long = "deduplication.replica-label")]
    replica_labels: Vec<String>,
    /// How overlapping samples are merged: empty for the 1:1 chain merge (one sample per
    /// timestamp), `penalty` for Thanos's penalty deduplication of HA replicas (which keeps
    /// one replica's samples and switches only across gaps; needs a replica label).
    #[arg(long = "deduplication.func", default_value = "")]
    dedup_func: String,
    /// Groups compacted at once.
    #[arg(long = "compact.concurrency", default_value_t = 1)]
    concurrency: usize,
    /// Blocks of one compaction downloaded at once.
    #[arg(long = "compact.blocks-fetch-concurrency", default_value_t = 1)]
    blocks_fetch_concurrency: usize,
    /// Files of one block downloaded at once.
    #[arg(long = "block-files-concurrency", default_value_t = 1)]
    block_files_concurrency: usize,
    /// Mark blocks whose index has out-of-order chunks no-compact instead of halting.
    #[arg(long = "compact.skip-block-with-out-of-order-chunks")]
    skip_out_of_order_chunks: bool,
    /// Relabel configs (Prometheus's `relabel_configs` YAML) selecting the blocks this
    /// compactor owns by their external labels and `__block_id`.
    #[arg(long = "selector.relabel-config-file", conflicts_with = "selector_relabel_config")]
    selector_relabel_config_file: Option<PathBuf>,
    /// The relabel configs themselves, instead of a file.
    #[arg(long = "selector.relabel-config")]
    selector_relabel_config: Option<String>,
    #[command(flatten)]
    web: CompactWebArgs,
}

/// The bucket page on --http-address (Thanos's compactor flags for it).
#[derive(Args)]
struct CompactWebArgs {
    /// Path under which the bucket page and /api/v1/blocks are served; defaults to
    /// --web.external-prefix.
    #[arg(long = "web.route-prefix", default_value = "")]
    route_prefix: String,
    /// Path under which a reverse proxy serves the page: the prefix of the page's links, and
    /// the default of --web.route-prefix.
    #[arg(long = "web.external-prefix", default_value = "")]
    external_prefix: String,
    /// Request header whose value is the prefix of the page's links, for a reverse proxy that
    /// strips a path (`X-Forwarded-Prefix`); ignored with --web.external-prefix.
    #[arg(long = "web.prefix-header", default_value = "")]
    prefix_header: String,
    /// Refuse POST /api/v1/blocks/mark (marking blocks for deletion, no-compaction or
    /// no-downsampling).
    #[arg(long = "disable-admin-operations")]
    disable_admin_operations: bool,
    /// External label whose value titles each label set's rows on the bucket page.
    #[arg(long = "bucket-web-label", default_value = "")]
    label: String,
    /// How often the page's global view (the whole bucket) is fetched, with --wait.
    #[arg(long = "block-viewer.global.sync-block-interval", default_value = "1m", value_parser = parse_duration_flag)]
    global_interval: i64,
    /// Longest one fetch of the global view may take.
    #[arg(long = "block-viewer.global.sync-block-timeout", default_value = "5m", value_parser = parse_duration_flag)]
    global_timeout: i64,
}

/// The compactor `strata standalone` runs over its bucket: on unless `--compact.disable`,
/// with Thanos's defaults (2h blocks compacted to 8h, 2d and 14d, then downsampled; no
/// retention unless a `--retention.resolution-*` flag gives one).
#[derive(Args)]
pub struct StandaloneCompactArgs {
    /// Do not compact, downsample, apply retention or delete marked blocks in the bucket.
    #[arg(long = "compact.disable")]
    disable: bool,
    #[command(flatten)]
    pass: PassFlags,
}

/// The flags of the compactor's passes that `strata compact` and `strata standalone` share,
/// with Thanos's names and defaults.
#[derive(Args)]
struct PassFlags {
    /// Time between passes (`strata compact` with --wait).
    #[arg(long = "wait-interval", default_value = "5m", value_parser = parse_duration_flag)]
    wait_interval: i64,
    /// Blocks uploaded less than this long ago are left alone (except compactor output).
    #[arg(long = "consistency-delay", default_value = "30m", value_parser = parse_duration_flag)]
    consistency_delay: i64,
    /// How long a block marked for deletion stays before it is deleted; readers stop using it
    /// meanwhile.
    #[arg(long = "delete-delay", default_value = "48h", value_parser = parse_duration_flag)]
    delete_delay: i64,
    #[command(flatten)]
    retention: RetentionFlags,
    /// Do not downsample: raw blocks of 40h and more are otherwise downsampled to 5m, 5m blocks
    /// of 10 days and more to 1h.
    #[arg(long = "downsampling.disable")]
    downsampling_disable: bool,
}

impl PassFlags {
    /// `options` with these flags' settings.
    fn apply(&self, options: CompactorOptions) -> CompactorOptions {
        CompactorOptions {
            consistency_delay: millis(self.consistency_delay),
            delete_delay: millis(self.delete_delay),
            retention: self.retention.retention(),
            downsampling: !self.downsampling_disable,
            ..options
        }
    }
}

/// Standalone's compactor, ready to run: its metrics are registered when it is made.
pub(crate) struct StandaloneCompactor {
    compactor: Arc<Compactor>,
    interval: std::time::Duration,
}

impl StandaloneCompactArgs {
    /// The compactor over `bucket` with its scratch space in `data_dir`, its metrics in
    /// `metrics` (except the meta-sync ones, which standalone's store exports under the same
    /// names for the same bucket), its syncs shown in `view`; `None` with `--compact.disable`.
    pub(crate) fn compactor(
        &self,
        bucket: strata_shipper::Bucket,
        data_dir: PathBuf,
        metrics: &mut Metrics,
        view: Arc<BlocksView>,
    ) -> anyhow::Result<Option<StandaloneCompactor>> {
        if self.disable {
            return Ok(None);
        }
        std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
        let options = self.pass.apply(CompactorOptions { data_dir, ..CompactorOptions::default() });
        let metrics = CompactMetrics::with_meta(metrics.registry_mut(), FetcherMetrics::new(&mut Default::default()));
        let compactor = Arc::new(Compactor::new(bucket, options, metrics).with_view(view));
        Ok(Some(StandaloneCompactor { compactor, interval: millis(self.pass.wait_interval) }))
    }
}

impl StandaloneCompactor {
    /// Runs a pass every wait interval until `stop` turns true. The passes run on a blocking
    /// thread driving the runtime: a pass's future is not provably `Send` (its concurrent
    /// group compactions borrow the compactor), so `tokio::spawn` cannot take it.
    pub(crate) fn spawn(self, mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            tracing::info!(interval = ?self.interval, "starting the compactor over the bucket");
            runtime.block_on(run_waiting(&self.compactor, self.interval, async move {
                let _ = stop.wait_for(|s| *s).await;
            }))
        })
    }
}

/// Thanos's retention flags, for `strata compact` and `strata tools bucket retention`.
#[derive(Args)]
pub struct RetentionFlags {
    /// How long raw blocks are kept; 0d keeps them forever.
    #[arg(long = "retention.resolution-raw", default_value = "0d", value_parser = parse_duration_flag)]
    raw: i64,
    /// How long 5m-downsampled blocks are kept; 0d keeps them forever.
    #[arg(long = "retention.resolution-5m", default_value = "0d", value_parser = parse_duration_flag)]
    five_minutes: i64,
    /// How long 1h-downsampled blocks are kept; 0d keeps them forever.
    #[arg(long = "retention.resolution-1h", default_value = "0d", value_parser = parse_duration_flag)]
    one_hour: i64,
}

impl RetentionFlags {
    pub fn retention(&self) -> Retention {
        Retention { raw: millis(self.raw), five_minutes: millis(self.five_minutes), one_hour: millis(self.one_hour) }
    }
}

pub async fn run(a: CompactArgs) -> anyhow::Result<()> {
    let bucket = a.objstore.bucket()?.context("no bucket: give --objstore.config-file or --objstore.config")?;
    let chunk_merge: ChunkMerge = match a.dedup_func.as_str() {
        "" => merge_chunks,
        "penalty" if a.replica_labels.is_empty() => anyhow::bail!(
            "--deduplication.func=penalty: penalty deduplication merges replicas, so it needs at least one \
             --deduplication.replica-label"
        ),
        "penalty" => penalty_merge_chunks,
        other => anyhow::bail!("--deduplication.func={other:?}: unknown; the choices are \"\" and \"penalty\""),
    };
    if a.replica_labels.iter().any(String::is_empty) {
        anyhow::bail!("--deduplication.replica-label: a replica label name must not be empty");
    }
    let selector = selector_flag(a.selector_relabel_config_file.as_deref(), a.selector_relabel_config.as_deref())?;
    std::fs::create_dir_all(&a.data_dir).with_context(|| format!("create --data-dir {}", a.data_dir.display()))?;
    let options = a.pass.apply(CompactorOptions {
        data_dir: a.data_dir.clone(),
        vertical_compaction: a.vertical_compaction,
        replica_labels: a.replica_labels.clone(),
        chunk_merge,
        concurrency: a.concurrency,
        blocks_fetch_concurrency: a.blocks_fetch_concurrency,
        block_files_concurrency: a.block_files_concurrency,
        selector: selector.clone(),
        skip_out_of_order_chunks: a.skip_out_of_order_chunks,
        downsample_concurrency: a.downsample_concurrency,
        ..CompactorOptions::default()
    });
    let build = build_info();
    let mut metrics = Metrics::for_process(&build);
    let view = Arc::new(BlocksView::new(&a.web.label));
    let compactor = Arc::new(
        Compactor::new(bucket.clone(), options, CompactMetrics::new(metrics.registry_mut()))
            .with_view(Arc::clone(&view)),
    );
    let metrics = Arc::new(metrics);

    let http = bind_flag("--http-address", a.http_address).await?;
    tracing::info!(
        http = %http.local_addr().context("HTTP listener address")?,
        data_dir = %a.data_dir.display(),
        wait = a.wait,
        replica_labels = %a.replica_labels.join(","),
        "starting compactor"
    );
    let route_prefix = if a.web.route_prefix.is_empty() { &a.web.external_prefix } else { &a.web.route_prefix };
    let web = WebOptions {
        route_prefix: route_prefix.clone(),
        external_prefix: a.web.external_prefix.clone(),
        prefix_header: prefix_header_flag(&a.web.prefix_header)?,
        admin: (!a.web.disable_admin_operations).then(|| bucket.clone()),
    };
    let router = ops_routes(metrics.clone(), || None).merge(strata_compact::web::router(Arc::clone(&view), web));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // As Thanos's compactor: the whole bucket is fetched for the page only when it keeps running.
    let global = a.wait.then(|| {
        let (interval, timeout) = (millis(a.web.global_interval), millis(a.web.global_timeout));
        spawn_global_view(
            bucket,
            GlobalFilter::selecting(selector),
            Arc::clone(&view),
            interval,
            timeout,
            stop_rx.clone(),
        )
    });
    let http_task = serve_http(http, router, stop_rx, "http");

    let result = if a.wait {
        run_waiting(&compactor, millis(a.pass.wait_interval), shutdown_signal()).await;
        tracing::info!("shutting down");
        Ok(())
    } else {
        compactor.run_once().await.map_err(Into::into)
    };
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    if let Some(global) = global {
        let _ = global.await;
    }
    result
}

/// A pass every `interval` until `stop` completes. After a halt no pass runs again, but the
/// process keeps serving its metrics (`thanos_compact_halted` = 1) for an operator to see, as
/// Thanos's compactor does; other errors are logged and the next pass tries again.
pub(crate) async fn run_waiting(
    compactor: &Compactor,
    interval: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let interval = interval.max(std::time::Duration::from_secs(1));
    tokio::pin!(stop);
    let mut halted = false;
    loop {
        if !halted {
            match compactor.run_once().await {
                Ok(()) => {}
                Err(e) if e.is_halt() => {
                    tracing::error!(error = %e, "critical error detected; halting compaction (metrics stay served)");
                    halted = true;
                }
                Err(e) => tracing::error!(error = %e, "compaction pass failed; trying again after the wait interval"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut stop => return,
        }
    }
}

/// `--web.prefix-header`: empty for none, else a valid HTTP header name.
pub(crate) fn prefix_header_flag(name: &str) -> anyhow::Result<Option<axum::http::HeaderName>> {
    if name.is_empty() {
        return Ok(None);
    }
    axum::http::HeaderName::from_bytes(name.as_bytes())
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--web.prefix-header {name:?}: not an HTTP header name: {e}"))
}

/// Keeps `view`'s global view (the whole bucket, marked blocks included unless a compacted
/// block supersedes them) fresh until `stop`
/// turns true: `strata tools bucket web`, `strata compact` and `strata standalone`'s bucket page.
pub(crate) fn spawn_global_view(
    bucket: strata_shipper::Bucket,
    filter: GlobalFilter,
    view: Arc<BlocksView>,
    interval: std::time::Duration,
    timeout: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let fetcher = strata_compact::web::global_fetcher(bucket);
    tokio::spawn(strata_compact::web::refresh_global(fetcher, filter, view, interval, timeout, async move {
        let _ = stop.wait_for(|s| *s).await;
    }))
}
