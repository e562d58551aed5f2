//! `strata rule`: Thanos's ruler. Rule files evaluated against query APIs, alerts sent to
//! Alertmanagers, results in a local TSDB served over the StoreAPI and shipped when a bucket
//! is configured. Flags are Thanos's. `strata standalone --rule-file` runs the same ruler
//! ([`start`]) against its own query engine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use strata_receiver::metrics::Metrics;
use strata_rule::config::{alertmanager_sources, query_sources, sd_files_source, Access};
use strata_rule::discovery::{flag_sources, Peers};
use strata_rule::metrics::RuleMetrics;
use strata_rule::notifier::{AlertLabels, Notifier};
use strata_rule::ruler::{Queriers, Ruler, RulerOptions};
use strata_shipper::relabel::Relabel;
use strata_shipper::{Bucket, Shipper};
use strata_store::local::LocalStore;
use strata_store::server::{ServerOptions, StoreApi};
use strata_store::Component;
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::head::HeadOptions;
use strata_tsdb::labels::Labels;

use crate::{
    bind_flag, build_info, file_or_inline, parse_duration_flag, parse_label_flag, serve_http, shutdown_signal,
};

#[derive(Args)]
pub struct RuleArgs {
    /// Rule files to evaluate (globs; repeatable), in Prometheus's format with Thanos's
    /// `partial_response_strategy` per group.
    #[arg(long = "rule-file")]
    rule_files: Vec<String>,
    /// Query API to evaluate rules against (`host:port`, `http://host:port[/prefix]`,
    /// `dns+host:port` or `dnssrv+name`; repeatable, asked in turn until one answers).
    #[arg(long = "query")]
    queries: Vec<String>,
    /// File-SD files (Prometheus's format; globs; repeatable) listing more query APIs, read
    /// again when they change and every `--query.sd-interval`.
    #[arg(long = "query.sd-files")]
    query_sd_files: Vec<String>,
    /// How often the `--query.sd-files` are read even when they seem unchanged.
    #[arg(long = "query.sd-interval", default_value = "5m", value_parser = parse_duration_flag)]
    query_sd_interval: i64,
    /// Thanos's query config YAML file (a list of `static_configs`, `file_sd_configs`,
    /// `scheme`, `path_prefix`, `http_config`), instead of `--query`.
    #[arg(long = "query.config-file", conflicts_with = "query_config")]
    query_config_file: Option<PathBuf>,
    /// The query config YAML itself.
    #[arg(long = "query.config")]
    query_config: Option<String>,
    /// Evaluation interval of groups that set none.
    #[arg(long = "eval-interval", default_value = "1m", value_parser = parse_duration_flag)]
    eval_interval: i64,
    /// Alertmanager to send alerts to (`http://host[:port][/prefix]`, port 9093 by default, or
    /// with `dns+` / `dnssrv+` before it; repeatable, each gets every alert).
    #[arg(long = "alertmanagers.url")]
    alertmanagers: Vec<String>,
    /// Thanos's alerting config YAML file (`alertmanagers:` with the query config's fields
    /// plus `timeout` and `api_version`), instead of `--alertmanagers.url`.
    #[arg(long = "alertmanagers.config-file", conflicts_with = "alertmanagers_config")]
    alertmanagers_config_file: Option<PathBuf>,
    /// The alerting config YAML itself.
    #[arg(long = "alertmanagers.config")]
    alertmanagers_config: Option<String>,
    /// Longest a send to one `--alertmanagers.url` may take.
    #[arg(long = "alertmanagers.send-timeout", default_value = "10s", value_parser = parse_duration_flag)]
    alertmanagers_send_timeout: i64,
    /// Label removed from alerts before they are sent (repeatable), e.g. the replica label
    /// of HA rulers so that Alertmanager deduplicates them.
    #[arg(long = "alert.label-drop")]
    alert_label_drop: Vec<String>,
    /// Prometheus relabel configs (YAML file) applied to alerts before they are sent, after
    /// the external labels are set and `--alert.label-drop` applied; an alert dropped is not sent.
    #[arg(long = "alert.relabel-config-file", conflicts_with = "alert_relabel_config")]
    alert_relabel_config_file: Option<PathBuf>,
    /// The alert relabel configs YAML itself.
    #[arg(long = "alert.relabel-config")]
    alert_relabel_config: Option<String>,
    /// Base of the alerts' generator URLs (a query page).
    #[arg(long = "alert.query-url", default_value = "")]
    alert_query_url: String,
    /// External label of the ruler's series and blocks, as `name="value"` (repeatable).
    #[arg(long = "label", value_parser = parse_label_flag)]
    labels: Vec<(String, String)>,
    /// Directory of the ruler's TSDB (recorded series, ALERTS, ALERTS_FOR_STATE).
    #[arg(long = "data-dir", default_value = "data/")]
    data_dir: PathBuf,
    /// How long blocks are kept locally; 0 keeps everything.
    #[arg(long = "tsdb.retention", default_value = "48h", value_parser = parse_duration_flag)]
    retention: i64,
    /// Span of the ruler's blocks (Thanos's hidden flag, for tests).
    #[arg(long = "tsdb.block-duration", default_value = "2h", value_parser = parse_duration_flag, hide = true)]
    block_duration: i64,
    #[command(flatten)]
    objstore: crate::objstore::ObjstoreArgs,
    /// Address of the StoreAPI over the ruler's TSDB.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: SocketAddr,
    /// Address of the rules and alerts API and pages, /metrics, /-/reload and the probes.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// Least time between two sends of a firing alert to Alertmanager.
    #[arg(long = "resend-delay", default_value = "1m", value_parser = parse_duration_flag)]
    resend_delay: i64,
    /// Least time an alert whose state was restored after a restart waits before it fires
    /// again (rules whose `for` is shorter are not restored).
    #[arg(long = "for-grace-period", default_value = "10m", value_parser = parse_duration_flag)]
    for_grace_period: i64,
    /// Longest the ruler may have been down for alert state to be restored.
    #[arg(long = "for-outage-tolerance", default_value = "1h", value_parser = parse_duration_flag)]
    for_outage_tolerance: i64,
}

/// The ruler's flags of `strata standalone`.
#[derive(Args)]
pub(crate) struct StandaloneRuleArgs {
    /// Rule files to evaluate against the standalone's own data (globs; repeatable); none
    /// runs no ruler.
    #[arg(long = "rule-file")]
    pub(crate) rule_files: Vec<String>,
    /// Alertmanager to send alerts to (as `strata rule`'s flag).
    #[arg(long = "alertmanagers.url")]
    pub(crate) alertmanagers: Vec<String>,
    /// Evaluation interval of groups that set none.
    #[arg(long = "eval-interval", default_value = "1m", value_parser = parse_duration_flag)]
    pub(crate) eval_interval: i64,
}

/// How often blocks are shipped besides after shutdown.
const SHIP_INTERVAL: Duration = Duration::from_secs(30);
/// How often `dns+` and `dnssrv+` names are looked up again (Thanos's 30s).
const DNS_INTERVAL: Duration = Duration::from_secs(30);
/// How often SD files are looked at for changes.
const SD_CHECK: Duration = Duration::from_secs(1);
/// Alertmanager's port, for addresses that give none.
const ALERTMANAGER_PORT: u16 = 9093;

/// The query APIs of `--query` or `--query.config*` (Thanos refuses both at once).
fn query_peers(a: &RuleArgs) -> anyhow::Result<Peers> {
    let config = file_or_inline(
        a.query_config_file.as_deref(),
        "--query.config-file",
        a.query_config.as_deref(),
        "--query.config",
    )?
    .filter(|(text, _)| !text.trim().is_empty());
    let flags_given = !a.queries.is_empty() || !a.query_sd_files.is_empty();
    match config {
        Some(_) if flags_given => {
            anyhow::bail!("--query/--query.sd-files and --query.config* parameters cannot be defined at the same time")
        }
        Some((text, source)) => Ok(Peers::new(&source, query_sources(&text, &source)?)?),
        None if !flags_given => {
            anyhow::bail!(
                "no --query parameter was given: the ruler needs a query API (--query, --query.sd-files or \
                 --query.config*) to evaluate rules against"
            )
        }
        None => {
            let mut sources = flag_sources("--query", &a.queries, None, &Access::default())?;
            if !a.query_sd_files.is_empty() {
                if a.query_sd_interval <= 0 {
                    anyhow::bail!("--query.sd-interval must be above 0");
                }
                let refresh = crate::millis(a.query_sd_interval);
                sources.push(sd_files_source("--query.sd-files", &a.query_sd_files, refresh)?);
            }
            Ok(Peers::new("--query", sources)?)
        }
    }
}

/// The Alertmanagers of `--alertmanagers.url` or `--alertmanagers.config*`.
fn alertmanager_peers(a: &RuleArgs) -> anyhow::Result<Peers> {
    let config = file_or_inline(
        a.alertmanagers_config_file.as_deref(),
        "--alertmanagers.config-file",
        a.alertmanagers_config.as_deref(),
        "--alertmanagers.config",
    )?
    .filter(|(text, _)| !text.trim().is_empty());
    match config {
        Some(_) if !a.alertmanagers.is_empty() => {
            anyhow::bail!(
                "--alertmanagers.url and --alertmanagers.config* parameters cannot be defined at the same time"
            )
        }
        Some((text, source)) => Ok(Peers::new(&source, alertmanager_sources(&text, &source)?)?),
        None => {
            let access = Access { timeout: Some(crate::millis(a.alertmanagers_send_timeout)), ..Access::default() };
            Ok(Peers::parse("--alertmanagers.url", &a.alertmanagers, Some(ALERTMANAGER_PORT), &access)?)
        }
    }
}

/// Alertmanagers of standalone's `--alertmanagers.url` (Thanos's 10s send timeout).
pub(crate) fn standalone_alertmanagers(values: &[String]) -> anyhow::Result<Peers> {
    let access = Access { timeout: Some(Duration::from_secs(10)), ..Access::default() };
    Ok(Peers::parse("--alertmanagers.url", values, Some(ALERTMANAGER_PORT), &access)?)
}

/// A ruler to start: what it evaluates against, where it sends alerts, where it keeps and
/// ships its results.
pub(crate) struct RulerSetup {
    pub(crate) options: RulerOptions,
    pub(crate) queriers: Queriers,
    pub(crate) alertmanagers: Peers,
    /// The TSDB's directory (see [`open_db`]), where the shipper keeps its state too.
    pub(crate) data_dir: PathBuf,
    pub(crate) db: Arc<Db>,
    pub(crate) bucket: Option<Bucket>,
    /// Registered by the caller while its registry is still its own.
    pub(crate) metrics: RuleMetrics,
}

/// Opens the ruler's TSDB in `dir`.
pub(crate) async fn open_db(dir: &std::path::Path, options: DbOptions) -> anyhow::Result<Arc<Db>> {
    let path = dir.to_path_buf();
    let db = tokio::task::spawn_blocking(move || Db::open(&path, options))
        .await
        .context("TSDB open task")?
        .with_context(|| format!("open the ruler's TSDB in {}", dir.display()))?;
    Ok(Arc::new(db))
}

/// The StoreAPI's view of the ruler's TSDB, with its external labels.
pub(crate) fn ruler_store(db: &Arc<Db>, external: &BTreeMap<String, String>) -> LocalStore {
    let pairs: Vec<(&str, &str)> = external.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    LocalStore::for_db(Arc::clone(db), Labels::from_pairs(&pairs), Component::Rule)
}

/// A ruler running, with its TSDB and the tasks that keep it going.
pub(crate) struct RunningRuler {
    pub(crate) ruler: Arc<Ruler>,
    pub(crate) db: Arc<Db>,
    shipper: Option<Arc<Shipper>>,
    ship_task: Option<tokio::task::JoinHandle<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Finds the ruler's peers, loads the rule files and starts evaluating; blocks are shipped
/// until `stop` turns true.
pub(crate) async fn start(s: RulerSetup, stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<RunningRuler> {
    let rule_metrics = s.metrics;
    let db = s.db;
    let shipper = match s.bucket {
        Some(bucket) => {
            let shipper = Shipper::new(bucket, &s.data_dir, s.options.external_labels.clone(), "ruler")
                .context("ship the ruler's blocks")?;
            let shipper = Arc::new(shipper);
            let shipped = Arc::clone(&shipper);
            db.set_deletable(Arc::new(move |meta| shipped.is_uploaded(meta.ulid)));
            Some(shipper)
        }
        None => None,
    };
    let alert_labels = AlertLabels {
        external: s.options.external_labels.clone(),
        drop: s.options.alert_label_drop.clone(),
        relabel: s.options.alert_relabel.clone(),
    };
    let notifier =
        Arc::new(Notifier::new(s.alertmanagers, alert_labels, s.options.alert_query_url.clone(), rule_metrics.clone()));
    let ruler = Arc::new(Ruler::new(s.options, s.queriers, notifier, Arc::clone(&db), rule_metrics));
    let query_peers = match &ruler.queriers {
        Queriers::Remote(p) => Some(p.as_ref()),
        Queriers::Local(_) => None,
    };
    let dynamic = query_peers.is_some_and(Peers::is_dynamic) || ruler.notifier.peers().is_dynamic();
    // Names and SD files are read before the first evaluation.
    if dynamic {
        if let Some(p) = query_peers {
            p.refresh(true).await;
        }
        ruler.notifier.refresh(true).await;
    }
    let mut background = Vec::new();
    if dynamic {
        let r = Arc::clone(&ruler);
        background.push(tokio::spawn(async move {
            let mut looked_up = Instant::now();
            loop {
                tokio::time::sleep(SD_CHECK).await;
                let lookup = looked_up.elapsed() >= DNS_INTERVAL;
                if lookup {
                    looked_up = Instant::now();
                }
                if let Queriers::Remote(p) = &r.queriers {
                    if lookup || p.sd_due() {
                        p.refresh(lookup).await;
                    }
                }
                if lookup || r.notifier.peers().sd_due() {
                    r.notifier.refresh(lookup).await;
                }
            }
        }));
    }
    ruler.reload().context("load the rule files")?;
    let reloader = Arc::clone(&ruler);
    background.push(tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::error!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("received SIGHUP, reloading rules");
            if let Err(e) = reloader.reload() {
                tracing::error!(error = %e, "reloading rules failed; the rules in use stay");
            }
        }
    }));
    let ship_task = shipper.clone().map(|s| {
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = s.sync().await {
                    tracing::error!(error = %e, "shipping the ruler's blocks failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(SHIP_INTERVAL) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    });
    Ok(RunningRuler { ruler, db, shipper, ship_task, background })
}

impl RunningRuler {
    /// The rules and alerts API and pages, `POST /-/reload`.
    pub(crate) fn router(&self) -> axum::Router {
        strata_rule::api::router(Arc::clone(&self.ruler)).merge(strata_rule::ui::router(Arc::clone(&self.ruler)))
    }

    /// Stops evaluating, closes the TSDB (which cuts no block) and ships what is left. The
    /// ship task must have been told to stop.
    pub(crate) async fn shutdown(self) -> anyhow::Result<()> {
        self.ruler.stop();
        for t in self.background {
            t.abort();
        }
        if let Some(t) = self.ship_task {
            let _ = t.await;
        }
        let closing = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || closing.close())
            .await
            .context("TSDB close task")?
            .context("close the ruler's TSDB")?;
        if let Some(s) = self.shipper {
            s.sync().await.context("ship the ruler's blocks at shutdown")?;
        }
        Ok(())
    }
}

/// Runs the ruler until SIGTERM or Ctrl-C; SIGHUP reloads the rule files.
pub async fn run(a: RuleArgs) -> anyhow::Result<()> {
    if a.eval_interval <= 0 {
        anyhow::bail!("--eval-interval must be above 0");
    }
    if a.block_duration <= 0 {
        anyhow::bail!("--tsdb.block-duration must be above 0");
    }
    let queriers = Queriers::Remote(Box::new(query_peers(&a)?));
    let alertmanagers = alertmanager_peers(&a)?;
    let external: BTreeMap<String, String> = a.labels.iter().cloned().collect();
    let alert_relabel = match file_or_inline(
        a.alert_relabel_config_file.as_deref(),
        "--alert.relabel-config-file",
        a.alert_relabel_config.as_deref(),
        "--alert.relabel-config",
    )? {
        Some((text, source)) => Relabel::parse(&text).with_context(|| source)?,
        None => Relabel::default(),
    };
    let mut metrics = Metrics::for_process(&build_info());
    let rule_metrics = RuleMetrics::default();
    rule_metrics.register(metrics.registry_mut());
    let bucket = a.objstore.bucket()?;
    let db_options = DbOptions {
        retention: (a.retention > 0).then_some(a.retention),
        head: HeadOptions { chunk_range: a.block_duration, ..HeadOptions::default() },
        ..DbOptions::default()
    };
    let db = open_db(&a.data_dir, db_options).await?;
    let setup = RulerSetup {
        options: RulerOptions {
            rule_files: a.rule_files.clone(),
            eval_interval: a.eval_interval,
            external_labels: external,
            alert_label_drop: a.alert_label_drop.clone(),
            alert_relabel,
            alert_query_url: a.alert_query_url.clone(),
            resend_delay: a.resend_delay,
            for_grace_period: a.for_grace_period,
            for_outage_tolerance: a.for_outage_tolerance,
        },
        queriers,
        alertmanagers,
        data_dir: a.data_dir.clone(),
        db,
        bucket,
        metrics: rule_metrics,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = start(setup, stop_rx.clone()).await?;

    let http = bind_flag("--http-address", a.http_address).await?;
    let grpc = bind_flag("--grpc-address", a.grpc_address).await?;
    tracing::info!(
        http = %http.local_addr().context("HTTP listener address")?,
        grpc = %grpc.local_addr().context("gRPC listener address")?,
        data_dir = %a.data_dir.display(),
        "starting ruler"
    );
    let store = ruler_store(&running.db, &running.ruler.opts.external_labels);
    let store_api = StoreApi::new(Arc::new(store), ServerOptions::default(), metrics.grpc.clone());
    let metrics = Arc::new(metrics);
    let router = running.router().merge(crate::ops_routes(metrics, || None));
    let http_task = serve_http(http, router, stop_rx.clone(), "http");
    let mut grpc_stop = stop_rx.clone();
    let grpc_task = tokio::spawn(store_api.serve(grpc, async move {
        let _ = grpc_stop.wait_for(|s| *s).await;
    }));

    shutdown_signal().await;
    tracing::info!("shutting down: stopping rule evaluation, then closing the TSDB");
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    match grpc_task.await {
        Ok(Err(e)) => tracing::error!(error = %e, server = "grpc", "server failed"),
        Err(e) => tracing::error!(error = %e, server = "grpc", "server task failed"),
        Ok(Ok(())) => {}
    }
    running.shutdown().await?;
    tracing::info!("shutdown complete");
    Ok(())
}
