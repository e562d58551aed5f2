//! `strata tools bucket verify|mark|cleanup|retention|downsample|replicate|rewrite|web`, with the
//! flags of Thanos's `tools bucket`; the work is strata-compact's (`strata_compact::tools` and
//! the compactor's own passes).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use strata_compact::tools::{self as ct, ReplicateFilter, RewriteOptions};
use strata_compact::{CompactorOptions, ReplicateMetrics};
use strata_shipper::markers::MARKER_FILENAMES;
use strata_shipper::relabel::Relabel;
use strata_tsdb::inspect::Ulid;
use strata_tsdb::matchers::Matcher;

use super::{print_stdout, tool_bucket};
use crate::compact::{prefix_header_flag, spawn_global_view, RetentionFlags};
use crate::objstore::ObjstoreArgs;
use crate::store::{parse_time_or_duration, selector_flag};
use crate::{
    bind_flag, build_info, file_or_inline, millis, ops_routes, parse_duration_flag, serve_http, shutdown_signal,
};
use strata_compact::web::{normalize_prefix, BlocksView, GlobalFilter, WebOptions};
use strata_receiver::metrics::Metrics;
use strata_shipper::fetch::TimeBound;

#[derive(Subcommand)]
pub(super) enum BucketTools {
    /// Check blocks for Thanos's verifier issues (index_known_issues, overlapped_blocks,
    /// duplicated_compaction); one line per problem, and a failure exit status when there is any.
    Verify(VerifyArgs),
    /// Put a marker (deletion, no-compact, no-downsample) on blocks, or remove it.
    Mark(MarkArgs),
    /// Delete blocks marked for deletion longer than --delete-delay ago, and uploads abandoned
    /// for two days (the compactor's cleanup, once).
    Cleanup(CleanupArgs),
    /// Mark blocks past their resolution's retention for deletion (the compactor's retention,
    /// once).
    Retention(RetentionArgs),
    /// Downsample what is due: raw blocks of 40h and more to 5m, 5m blocks of 10 days and more
    /// to 1h (the compactor's downsampling, once).
    Downsample(DownsampleArgs),
    /// Copy blocks to another bucket (meta.json last), those it lacks.
    Replicate(ReplicateArgs),
    /// Write blocks anew with the series relabelled by --rewrite.to-relabel-config and without
    /// those of --rewrite.to-delete-config.
    Rewrite(RewriteArgs),
    /// Serve the bucket page: the blocks on a time line by external labels and resolution,
    /// each block's meta, and Thanos's /api/v1/blocks.
    Web(Box<WebArgs>),
}

#[derive(Args)]
pub(super) struct WebArgs {
    #[command(flatten)]
    objstore: ObjstoreArgs,
    /// Address of the page, /api/v1/blocks, /metrics, /-/healthy and /-/ready.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: std::net::SocketAddr,
    /// Path under which the page and the API are served; defaults to --web.external-prefix.
    #[arg(long = "web.route-prefix", default_value = "")]
    route_prefix: String,
    /// Path under which a reverse proxy serves the page: the prefix of the page's links, and
    /// the default of --web.route-prefix.
    #[arg(long = "web.external-prefix", default_value = "")]
    external_prefix: String,
    /// Request header whose value is the prefix of the page's links, for a reverse proxy that
    /// strips a path (`X-Forwarded-Prefix`); ignored with --web.external-prefix. Set it only
    /// behind a proxy that sets or removes the header.
    #[arg(long = "web.prefix-header", default_value = "")]
    prefix_header: String,
    /// Serve only blocks ending at or after this time: RFC 3339, or a duration relative to now
    /// (`-2w`).
    #[arg(long = "min-time", default_value = "0000-01-01T00:00:00Z", value_parser = parse_time_or_duration)]
    min_time: TimeBound,
    /// Serve only blocks starting at or before this time: RFC 3339, or a duration relative to
    /// now.
    #[arg(long = "max-time", default_value = "9999-12-31T23:59:59Z", value_parser = parse_time_or_duration)]
    max_time: TimeBound,
    /// Refuse POST /api/v1/blocks/mark (marking blocks for deletion, no-compaction or
    /// no-downsampling).
    #[arg(long = "disable-admin-operations")]
    disable_admin_operations: bool,
    /// How often the block metas are fetched again.
    #[arg(long = "refresh", default_value = "30m", value_parser = parse_duration_flag)]
    refresh: i64,
    /// Longest one fetch of the block metas may take.
    #[arg(long = "timeout", default_value = "5m", value_parser = parse_duration_flag)]
    timeout: i64,
    /// External label whose value titles each label set's rows on the page.
    #[arg(long = "label", default_value = "")]
    label: String,
    /// Relabel configs selecting the blocks shown by their external labels and `__block_id`.
    #[arg(long = "selector.relabel-config-file", conflicts_with = "selector_relabel_config")]
    selector_relabel_config_file: Option<PathBuf>,
    /// The relabel configs themselves, instead of a file.
    #[arg(long = "selector.relabel-config")]
    selector_relabel_config: Option<String>,
}

#[derive(Args)]
pub(super) struct VerifyArgs {
    #[command(flatten)]
    objstore: ObjstoreArgs,
    /// Issues to verify (repeatable): index_known_issues, overlapped_blocks (the default), and
    /// duplicated_compaction (not with --id).
    #[arg(short = 'i', long = "issues", default_values = ct::ISSUES)]
    issues: Vec<String>,
    /// Blocks to verify (repeatable); all when none is given.
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Repair the issues that can be: a block with an index issue is written anew without the
    /// chunks that cannot be kept, a duplicated block removed; each broken or duplicated block
    /// is copied to the backup bucket first.
    #[arg(short = 'r', long = "repair")]
    repair: bool,
    /// Path to the objstore YAML of the bucket broken blocks are copied to before removal
    /// (required with --repair).
    #[arg(long = "objstore-backup.config-file", conflicts_with = "objstore_backup_config")]
    objstore_backup_config_file: Option<PathBuf>,
    /// The backup bucket's objstore YAML, instead of a file.
    #[arg(long = "objstore-backup.config")]
    objstore_backup_config: Option<String>,
    /// How long a repaired block's broken original stays, marked for deletion; 0s deletes it at
    /// once.
    #[arg(long = "delete-delay", default_value = "0s", value_parser = parse_duration_flag)]
    delete_delay: i64,
}

#[derive(Args)]
pub(super) struct MarkArgs {
    #[command(flatten)]
    objstore: ObjstoreArgs,
    /// Blocks to mark (repeatable).
    #[arg(long = "id", required = true)]
    ids: Vec<String>,
    /// Marker to put: deletion-mark.json, no-compact-mark.json or no-downsample-mark.json.
    #[arg(long = "marker", required = true)]
    marker: String,
    /// Human-readable details put into the marker (required unless --remove).
    #[arg(long = "details")]
    details: Option<String>,
    /// Remove the marker instead.
    #[arg(long = "remove")]
    remove: bool,
}

#[derive(Args)]
pub(super) struct CleanupArgs {
    #[command(flatten)]
    objstore: ObjstoreArgs,
    /// Time before a block marked for deletion is deleted from the bucket.
    #[arg(long = "delete-delay", default_value = "48h", value_parser = parse_duration_flag)]
    delete_delay: i64,
    /// Blocks uploaded less than this long ago are left alone.
    #[arg(long = "consistency-delay", default_value = "30m", value_parser = parse_duration_flag)]
    consistency_delay: i64,
    /// Relabel configs selecting the blocks to act on by their external labels.
    #[arg(long = "selector.relabel-config-file", conflicts_with = "selector_relabel_config")]
    selector_relabel_config_file: Option<PathBuf>,
    /// The relabel configs themselves, instead of a file.
    #[arg(long = "selector.relabel-config")]
    selector_relabel_config: Option<String>,
}

#[derive(Args)]
pub(super) struct RetentionArgs {
    #[command(flatten)]
    cleanup: CleanupArgs,
    #[command(flatten)]
    retention: RetentionFlags,
}

#[derive(Args)]
pub(super) struct DownsampleArgs {
    #[command(flatten)]
    objstore: ObjstoreArgs,
    /// Scratch space: blocks are downloaded and downsampled here, and removed afterwards.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    /// Blocks downsampled at once.
    #[arg(long = "downsample.concurrency", default_value_t = 1)]
    downsample_concurrency: usize,
    /// Files of one block downloaded at once.
    #[arg(long = "block-files-concurrency", default_value_t = 1)]
    block_files_concurrency: usize,
}

#[derive(Args)]
pub(super) struct ReplicateArgs {
    #[command(flatten)]
    objstore: ObjstoreArgs,
    /// Path to the objstore YAML of the bucket to copy to.
    #[arg(long = "objstore-to.config-file", conflicts_with = "objstore_to_config")]
    objstore_to_config_file: Option<PathBuf>,
    /// The objstore YAML of the bucket to copy to, instead of a file.
    #[arg(long = "objstore-to.config")]
    objstore_to_config: Option<String>,
    /// Only blocks of these resolutions (repeatable).
    #[arg(long = "resolution", default_values = ["0s", "5m", "1h"], value_parser = parse_duration_flag)]
    resolutions: Vec<i64>,
    /// Only blocks of at least this compaction level.
    #[arg(long = "compaction-min", default_value_t = 1)]
    compaction_min: u32,
    /// Only blocks of at most this compaction level.
    #[arg(long = "compaction-max", default_value_t = 4)]
    compaction_max: u32,
    /// Only blocks of these compaction levels (repeatable); overrides --compaction-min/-max.
    #[arg(long = "compaction")]
    compactions: Vec<u32>,
    /// Only blocks whose external labels match (repeatable; `key="value"`, `key=~"re"`, ... or
    /// a `{...}` selector).
    #[arg(long = "matcher")]
    matchers: Vec<String>,
    /// Only these blocks (repeatable), whatever the other conditions; implies one run.
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Run once, then exit; otherwise again every minute until stopped, serving /metrics
    /// (`thanos_replicate_*`), /-/healthy and /-/ready on --http-address.
    #[arg(long = "single-run")]
    single_run: bool,
    /// Address for /metrics, /-/healthy and /-/ready when not a single run.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: std::net::SocketAddr,
}

#[derive(Args)]
pub(super) struct RewriteArgs {
    #[command(flatten)]
    objstore: ObjstoreArgs,
    /// Blocks to rewrite (repeatable).
    #[arg(long = "id", required = true)]
    ids: Vec<String>,
    /// Path to the YAML list of deletion requests (`- matchers: '{__name__="x"}'`).
    #[arg(long = "rewrite.to-delete-config-file", conflicts_with = "to_delete_config")]
    to_delete_config_file: Option<PathBuf>,
    /// The deletion requests themselves, instead of a file.
    #[arg(long = "rewrite.to-delete-config")]
    to_delete_config: Option<String>,
    /// Path to Prometheus relabel configs applied to each series' labels before the deletions:
    /// a dropped series goes, a changed label set is written instead, series that end up with
    /// equal labels become one.
    #[arg(long = "rewrite.to-relabel-config-file", conflicts_with = "to_relabel_config")]
    to_relabel_config_file: Option<PathBuf>,
    /// The relabel configs themselves, instead of a file.
    #[arg(long = "rewrite.to-relabel-config")]
    to_relabel_config: Option<String>,
    /// Log every change (`Deleted ...`, `Relabelled ...`) to `<--tmp.dir>/<new ULID>/change.log`,
    /// as Thanos does (the default; also in a dry run).
    #[arg(long = "rewrite.add-change-log", overrides_with = "no_change_log")]
    change_log: bool,
    /// Write no change log.
    #[arg(long = "no-rewrite.add-change-log", overrides_with = "change_log")]
    no_change_log: bool,
    /// Print what would be deleted instead of doing it (the default).
    #[arg(long = "dry-run", overrides_with = "no_dry_run")]
    dry_run: bool,
    /// Rewrite for real.
    #[arg(long = "no-dry-run", overrides_with = "dry_run")]
    no_dry_run: bool,
    /// Mark each source block for deletion once its rewrite is uploaded (not in a dry run).
    #[arg(long = "delete-blocks")]
    delete_blocks: bool,
    /// Working directory for the downloaded and written blocks (in a subdirectory of this run,
    /// removed at the end).
    #[arg(long = "tmp.dir", default_value_os_t = std::env::temp_dir())]
    tmp_dir: PathBuf,
}

/// Block ids of `--id` flags; the first bad one is the error.
fn ulids(ids: &[String]) -> anyhow::Result<Vec<Ulid>> {
    ids.iter()
        .map(|s| match Ulid::from_string(s) {
            // A text above 7ZZZZZZZZZZZZZZZZZZZZZZZZZ overflows 128 bits; Go's ulid.Parse
            // refuses it, and so does this.
            Ok(id) if id.to_string().eq_ignore_ascii_case(s) => Ok(id),
            Ok(_) => Err(anyhow::anyhow!("--id {s:?} is not a block ULID: larger than 128 bits")),
            Err(e) => Err(anyhow::anyhow!("--id {s:?} is not a block ULID: {e}")),
        })
        .collect()
}

/// A `--matcher` value: one matcher (`key="value"`) or a selector (`{a="b", c=~"d"}`).
fn parse_matchers(s: &str) -> Result<Vec<Matcher>, String> {
    let selector = if s.trim_start().starts_with('{') { s.to_owned() } else { format!("{{{s}}}") };
    let parsed = strata_query::parse::parse_selector(&selector).map_err(|e| e.to_string())?;
    if parsed.is_empty() {
        return Err("no matcher given".into());
    }
    parsed.into_iter().map(|m| Matcher::new(m.op, m.name, m.value).map_err(|e| e.to_string())).collect()
}

fn selector_options(a: &CleanupArgs) -> anyhow::Result<CompactorOptions> {
    Ok(CompactorOptions {
        consistency_delay: millis(a.consistency_delay),
        delete_delay: millis(a.delete_delay),
        selector: selector_flag(a.selector_relabel_config_file.as_deref(), a.selector_relabel_config.as_deref())?,
        ..CompactorOptions::default()
    })
}

pub(super) async fn run(command: BucketTools) -> anyhow::Result<()> {
    match command {
        BucketTools::Verify(a) => verify(a).await,
        BucketTools::Mark(a) => mark(a).await,
        BucketTools::Cleanup(a) => {
            let options = selector_options(&a)?;
            let bucket = tool_bucket(&a.objstore)?;
            ct::compactor(bucket, options).clean().await?;
            eprintln!("cleanup done");
            Ok(())
        }
        BucketTools::Retention(a) => {
            let options = CompactorOptions { retention: a.retention.retention(), ..selector_options(&a.cleanup)? };
            let bucket = tool_bucket(&a.cleanup.objstore)?;
            ct::compactor(bucket, options).apply_retention().await?;
            eprintln!("retention done");
            Ok(())
        }
        BucketTools::Downsample(a) => {
            let bucket = tool_bucket(&a.objstore)?;
            std::fs::create_dir_all(&a.data_dir)
                .with_context(|| format!("create --data-dir {}", a.data_dir.display()))?;
            let options = CompactorOptions {
                data_dir: a.data_dir,
                consistency_delay: std::time::Duration::ZERO,
                downsample_concurrency: a.downsample_concurrency,
                block_files_concurrency: a.block_files_concurrency,
                ..CompactorOptions::default()
            };
            ct::compactor(bucket, options).downsample_all().await?;
            eprintln!("downsampling done");
            Ok(())
        }
        BucketTools::Replicate(a) => replicate(a).await,
        BucketTools::Rewrite(a) => rewrite(a).await,
        BucketTools::Web(a) => web(*a).await,
    }
}

/// Serves the bucket page until SIGTERM or Ctrl-C, the metas fetched every --refresh; ready
/// once the first fetch has finished.
async fn web(a: WebArgs) -> anyhow::Result<()> {
    let bucket = tool_bucket(&a.objstore)?;
    let selector = selector_flag(a.selector_relabel_config_file.as_deref(), a.selector_relabel_config.as_deref())?;
    let filter = GlobalFilter { selector, min_time: a.min_time, max_time: a.max_time };
    let prefix_header = prefix_header_flag(&a.prefix_header)?;
    let route_prefix = if a.route_prefix.is_empty() { a.external_prefix.clone() } else { a.route_prefix.clone() };
    if normalize_prefix(&route_prefix) != normalize_prefix(&a.external_prefix) {
        tracing::warn!("--web.route-prefix and --web.external-prefix differ; the page works only behind a proxy");
    }
    let (refresh, timeout) = (millis(a.refresh), millis(a.timeout));
    if refresh < std::time::Duration::from_secs(300) {
        tracing::warn!("refreshing more often than every 5m can transfer a lot of data");
    }
    if refresh < timeout * 2 {
        tracing::warn!("--refresh should be at least twice --timeout");
    }
    let view = Arc::new(BlocksView::new(&a.label));
    let metrics = Arc::new(Metrics::for_process(&build_info()));
    let ready = Arc::clone(&view);
    let mut router =
        ops_routes(metrics, move || (!ready.refreshed()).then(|| "first fetch of the block metas".to_owned())).merge(
            strata_compact::web::router(
                Arc::clone(&view),
                WebOptions {
                    route_prefix: route_prefix.clone(),
                    external_prefix: a.external_prefix.clone(),
                    prefix_header,
                    admin: (!a.disable_admin_operations).then(|| bucket.clone()),
                },
            ),
        );
    let prefix = normalize_prefix(&route_prefix);
    if !prefix.is_empty() {
        let target = format!("{prefix}/");
        router =
            router.route("/", axum::routing::get(move || std::future::ready(axum::response::Redirect::to(&target))));
    }
    let http = bind_flag("--http-address", a.http_address).await?;
    let addr = http.local_addr().context("HTTP listener address")?;
    tracing::info!(http = %addr, prefix = %prefix, "serving the bucket page");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let refresher = spawn_global_view(bucket, filter, view, refresh, timeout, stop_rx.clone());
    let http_task = serve_http(http, router, stop_rx, "http");
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(http_task, refresher);
    Ok(())
}

async fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let issues: Vec<&str> = a
        .issues
        .iter()
        .map(|i| {
            ct::ALL_ISSUES.iter().copied().find(|k| k == i).ok_or_else(|| {
                anyhow::anyhow!("--issues {i:?}: unknown issue; the issues are {}", ct::ALL_ISSUES.join(", "))
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let ids = ulids(&a.ids)?;
    let backup = file_or_inline(
        a.objstore_backup_config_file.as_deref(),
        "--objstore-backup.config-file",
        a.objstore_backup_config.as_deref(),
        "--objstore-backup.config",
    )?;
    let repair = match (a.repair, backup) {
        (false, _) => None,
        (true, None) => bail!(
            "--repair needs a backup bucket for the broken blocks: give --objstore-backup.config-file or \
             --objstore-backup.config"
        ),
        (true, Some((yaml, source))) => Some(ct::Repair {
            backup: strata_shipper::parse_objstore_config(&yaml, &source)?.build()?,
            delete_delay: millis(a.delete_delay),
        }),
    };
    let bucket = tool_bucket(&a.objstore)?;
    let scratch = std::env::temp_dir().join(format!("strata-verify-{}", std::process::id()));
    let problems = ct::verify(&bucket, &issues, &ids, &scratch, repair.as_ref()).await;
    if let Err(e) = std::fs::remove_dir_all(&scratch) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("removing {} failed: {e}", scratch.display());
        }
    }
    let problems = problems?;
    let text: String = problems.iter().map(|p| format!("{p}\n")).collect();
    print_stdout(text.as_bytes())?;
    let left = problems.iter().filter(|p| p.repaired.is_none()).count();
    if left > 0 {
        bail!("{} problem(s) found in bucket {bucket}, {left} not repaired", problems.len());
    }
    if !problems.is_empty() {
        eprintln!("{} problem(s) found and repaired", problems.len());
        return Ok(());
    }
    eprintln!("verified {}: no problems found", issues.join(", "));
    Ok(())
}

async fn mark(a: MarkArgs) -> anyhow::Result<()> {
    if !MARKER_FILENAMES.contains(&a.marker.as_str()) {
        bail!("--marker {:?}: unknown marker; the markers are {}", a.marker, MARKER_FILENAMES.join(", "));
    }
    let details = match (&a.details, a.remove) {
        (Some(d), _) => d.clone(),
        (None, true) => String::new(),
        (None, false) => bail!("--details is required to put a marker (only --remove goes without it)"),
    };
    let ids = ulids(&a.ids)?;
    let bucket = tool_bucket(&a.objstore)?;
    let mut text = String::new();
    for (id, changed) in ct::mark(&bucket, &ids, &a.marker, &details, a.remove).await? {
        let what = match (a.remove, changed) {
            (false, true) => "marked",
            (false, false) => "already marked",
            (true, true) => "marker removed",
            (true, false) => "had no marker",
        };
        text.push_str(&format!("{id} {}: {what}\n", a.marker));
    }
    print_stdout(text.as_bytes())
}

async fn replicate(a: ReplicateArgs) -> anyhow::Result<()> {
    let mut matchers = Vec::new();
    for m in &a.matchers {
        matchers.extend(parse_matchers(m).map_err(|e| anyhow::anyhow!("--matcher {m:?}: {e}"))?);
    }
    let levels =
        if a.compactions.is_empty() { (a.compaction_min..=a.compaction_max).collect() } else { a.compactions.clone() };
    let filter = ReplicateFilter { resolutions: a.resolutions.clone(), levels, matchers, ids: ulids(&a.ids)? };
    let from = tool_bucket(&a.objstore)?;
    let (yaml, source) = file_or_inline(
        a.objstore_to_config_file.as_deref(),
        "--objstore-to.config-file",
        a.objstore_to_config.as_deref(),
        "--objstore-to.config",
    )?
    .context("no bucket to copy to: give --objstore-to.config-file or --objstore-to.config")?;
    let to = strata_shipper::parse_objstore_config(&yaml, &source)?.build()?;
    if a.single_run || !filter.ids.is_empty() {
        return replicate_once(&from, &to, &filter, None).await;
    }
    let mut metrics = strata_receiver::metrics::Metrics::for_process(&crate::build_info());
    let replicate_metrics = ReplicateMetrics::new(metrics.registry_mut());
    let http = crate::bind_flag("--http-address", a.http_address).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = crate::serve_http(http, crate::ops_routes(Arc::new(metrics), || None), stop_rx, "http");
    let shutdown = crate::shutdown_signal();
    tokio::pin!(shutdown);
    let result = loop {
        // A failed run is logged and tried again, as Thanos's replicator does.
        if let Err(e) = replicate_once(&from, &to, &filter, Some(&replicate_metrics)).await {
            tracing::error!(error = %e, "replication run failed; trying again in a minute");
        }
        tokio::select! {
            _ = tokio::time::sleep(ct::REPLICATE_INTERVAL) => {}
            _ = &mut shutdown => break Ok(()),
        }
    };
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    result
}

/// One replication run: the blocks copied on stdout, a summary on stderr.
async fn replicate_once(
    from: &strata_shipper::Bucket,
    to: &strata_shipper::Bucket,
    filter: &ReplicateFilter,
    metrics: Option<&ReplicateMetrics>,
) -> anyhow::Result<()> {
    let run = ct::replicate(from, to, filter).await;
    if let Some(m) = metrics {
        m.observe(&run);
    }
    let done = run?;
    let text: String = done.copied.iter().map(|id| format!("{id} replicated\n")).collect();
    print_stdout(text.as_bytes())?;
    eprintln!(
        "replicated {} blocks ({} objects); {} already there",
        done.copied.len(),
        done.objects,
        done.already.len()
    );
    Ok(())
}

async fn rewrite(a: RewriteArgs) -> anyhow::Result<()> {
    let ids = ulids(&a.ids)?;
    let to_delete = file_or_inline(
        a.to_delete_config_file.as_deref(),
        "--rewrite.to-delete-config-file",
        a.to_delete_config.as_deref(),
        "--rewrite.to-delete-config",
    )?;
    let to_relabel = file_or_inline(
        a.to_relabel_config_file.as_deref(),
        "--rewrite.to-relabel-config-file",
        a.to_relabel_config.as_deref(),
        "--rewrite.to-relabel-config",
    )?;
    if to_delete.is_none() && to_relabel.is_none() {
        bail!("nothing to rewrite: give --rewrite.to-delete-config(-file) and/or --rewrite.to-relabel-config(-file)");
    }
    let deletions = match to_delete {
        Some((yaml, source)) => ct::parse_deletions(&yaml, &source, &parse_matchers)?,
        None => Vec::new(),
    };
    let relabel = match to_relabel {
        Some((yaml, source)) => {
            let relabel = Relabel::parse(&yaml).with_context(|| source.clone())?;
            if relabel.is_empty() {
                bail!("{source}: no relabel configs: give a list of `- action: ...`");
            }
            relabel
        }
        None => Relabel::default(),
    };
    let dry_run = a.dry_run || !a.no_dry_run;
    if dry_run && a.delete_blocks {
        bail!("--delete-blocks needs --no-dry-run: a dry run changes nothing");
    }
    let bucket = tool_bucket(&a.objstore)?;
    // A directory of this run's own: only it is emptied and removed, whatever --tmp.dir names.
    let tmp_dir = a.tmp_dir.join(format!("strata-rewrite-{}", std::process::id()));
    let change_log_dir = (a.change_log || !a.no_change_log).then(|| a.tmp_dir.clone());
    let relabelling = !relabel.is_empty();
    let options =
        RewriteOptions { ids, deletions, relabel, change_log_dir, dry_run, delete_blocks: a.delete_blocks, tmp_dir };
    let done = ct::rewrite(&bucket, &options).await;
    if let Err(e) = std::fs::remove_dir_all(&options.tmp_dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("removing {} failed: {e}", options.tmp_dir.display());
        }
    }
    let mut text = String::new();
    for r in done? {
        let d = r.dropped;
        let relabelled = if relabelling { format!(", relabelled {} series", d.relabelled) } else { String::new() };
        match r.to {
            Some(to) => text.push_str(&format!(
                "{} rewritten as {to}: deleted {} series, {} chunks, {} samples{relabelled}\n",
                r.from, d.series, d.chunks, d.samples
            )),
            None => text.push_str(&format!(
                "{} (dry run): would delete {} series, {} chunks, {} samples{relabelled}\n",
                r.from, d.series, d.chunks, d.samples
            )),
        }
        if let Some(log) = &r.change_log {
            eprintln!("{}: changes logged to {}", r.from, log.display());
        }
    }
    print_stdout(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_flags_as_thanos_takes_them() {
        let one = parse_matchers(r#"cluster="eu""#).unwrap();
        assert_eq!((one[0].name.as_str(), one[0].value.as_str()), ("cluster", "eu"));
        let set = parse_matchers(r#"{cluster=~"eu|us", env!="dev"}"#).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set[0].matches("us") && !set[1].matches("dev"));
        let long = format!("a=\"{}\"", "x".repeat(100_000));
        assert_eq!(parse_matchers(&long).unwrap()[0].value.len(), 100_000);
        for bad in ["", "cluster", r#"cluster=~"(""#, r#"{a="b""#, r#"a="b"}"#, "}{", "\u{0}=\"x\"", r#"a="\q""#, "a=b"]
        {
            assert!(parse_matchers(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn block_ids_must_be_ulids() {
        let id = Ulid::new().to_string();
        assert_eq!(ulids(std::slice::from_ref(&id)).unwrap()[0].to_string(), id);
        for bad in
            ["", "nope", "01ARZ3NDEKTSV4RRFFQ69G5FA", "01ARZ3NDEKTSV4RRFFQ69G5FAVV", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "ü"]
        {
            let err = ulids(&[id.clone(), bad.to_owned()]).unwrap_err().to_string();
            assert!(err.contains("--id") && err.contains("not a block ULID"), "{bad:?}: {err}");
        }
    }
}
