//! `strata compact`: the compactor over a bucket, with Thanos's `compact` flags. One pass, or
//! with `--wait` one pass every `--wait-interval` until stopped; `/metrics`, `/-/healthy` and
//! `/-/ready` on `--http-address` meanwhile.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use strata_compact::{CompactMetrics, Compactor, CompactorOptions, Retention};
use strata_receiver::metrics::Metrics;
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
    /// Time between passes with --wait.
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
    let options = CompactorOptions {
        data_dir: a.data_dir.clone(),
        consistency_delay: millis(a.consistency_delay),
        delete_delay: millis(a.delete_delay),
        retention: a.retention.retention(),
        vertical_compaction: a.vertical_compaction,
        replica_labels: a.replica_labels.clone(),
        chunk_merge,
        concurrency: a.concurrency,
        blocks_fetch_concurrency: a.blocks_fetch_concurrency,
        block_files_concurrency: a.block_files_concurrency,
        selector,
        skip_out_of_order_chunks: a.skip_out_of_order_chunks,
        downsampling: !a.downsampling_disable,
        downsample_concurrency: a.downsample_concurrency,
        ..CompactorOptions::default()
    };
    let build = build_info();
    let mut metrics = Metrics::for_process(&build);
    let compactor = Arc::new(Compactor::new(bucket, options, CompactMetrics::new(metrics.registry_mut())));
    let metrics = Arc::new(metrics);

    let http = bind_flag("--http-address", a.http_address).await?;
    tracing::info!(
        http = %http.local_addr().context("HTTP listener address")?,
        data_dir = %a.data_dir.display(),
        wait = a.wait,
        replica_labels = %a.replica_labels.join(","),
        "starting compactor"
    );
    let router = ops_routes(metrics.clone(), || None);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = serve_http(http, router, stop_rx, "http");

    let result = if a.wait {
        run_waiting(&compactor, millis(a.wait_interval)).await
    } else {
        compactor.run_once().await.map_err(Into::into)
    };
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    result
}

/// A pass every `interval` until SIGTERM or Ctrl-C. After a halt no pass runs again, but the
/// process keeps serving its metrics (`thanos_compact_halted` = 1) for an operator to see, as
/// Thanos's compactor does; other errors are logged and the next pass tries again.
async fn run_waiting(compactor: &Compactor, interval: std::time::Duration) -> anyhow::Result<()> {
    let interval = interval.max(std::time::Duration::from_secs(1));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
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
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return Ok(());
            }
        }
    }
}
