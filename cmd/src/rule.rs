//! `strata rule`: Thanos's ruler. Rule files evaluated against query APIs, alerts sent to
//! Alertmanagers, results in a local TSDB served over the StoreAPI and shipped when a bucket
//! is configured. Flags are Thanos's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use clap::Args;
use strata_receiver::metrics::Metrics;
use strata_rule::discovery::Peers;
use strata_rule::metrics::RuleMetrics;
use strata_rule::notifier::Notifier;
use strata_rule::ruler::{Queriers, Ruler, RulerOptions};
use strata_store::local::LocalStore;
use strata_store::server::{ServerOptions, StoreApi};
use strata_store::Component;
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::labels::Labels;

use crate::{bind_flag, build_info, parse_duration_flag, parse_label_flag, serve_http, shutdown_signal};

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
    /// Evaluation interval of groups that set none.
    #[arg(long = "eval-interval", default_value = "1m", value_parser = parse_duration_flag)]
    eval_interval: i64,
    /// Alertmanager to send alerts to (`http://host[:port][/prefix]`, port 9093 by default, or
    /// with `dns+` / `dnssrv+` before it; repeatable, each gets every alert).
    #[arg(long = "alertmanagers.url")]
    alertmanagers: Vec<String>,
    /// Label removed from alerts before they are sent (repeatable), e.g. the replica label
    /// of HA rulers so that Alertmanager deduplicates them.
    #[arg(long = "alert.label-drop")]
    alert_label_drop: Vec<String>,
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
    #[command(flatten)]
    objstore: crate::objstore::ObjstoreArgs,
    /// Address of the StoreAPI over the ruler's TSDB.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: SocketAddr,
    /// Address of the rules and alerts API, /metrics, /-/reload and the probes.
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

/// How often blocks are shipped besides after shutdown.
const SHIP_INTERVAL: Duration = Duration::from_secs(30);
/// How often `dns+` and `dnssrv+` names are looked up again (Thanos's 30s).
const DNS_INTERVAL: Duration = Duration::from_secs(30);
/// Alertmanager's port, for addresses that give none.
const ALERTMANAGER_PORT: u16 = 9093;

/// Runs the ruler until SIGTERM or Ctrl-C; SIGHUP reloads the rule files.
pub async fn run(a: RuleArgs) -> anyhow::Result<()> {
    if a.queries.is_empty() {
        anyhow::bail!("no --query given: the ruler needs a query API to evaluate rules against");
    }
    if a.eval_interval <= 0 {
        anyhow::bail!("--eval-interval must be above 0");
    }
    let external: std::collections::BTreeMap<String, String> = a.labels.iter().cloned().collect();
    let mut metrics = Metrics::for_process(&build_info());
    let rule_metrics = RuleMetrics::default();
    rule_metrics.register(metrics.registry_mut());
    let queriers = Queriers { apis: Peers::parse("--query", &a.queries, None)? };
    let alertmanagers = Peers::parse("--alertmanagers.url", &a.alertmanagers, Some(ALERTMANAGER_PORT))?;
    let names = queriers.apis.has_names() || alertmanagers.has_names();
    let notifier = Arc::new(Notifier::new(
        alertmanagers,
        external.clone(),
        a.alert_label_drop.clone(),
        a.alert_query_url.clone(),
        rule_metrics.clone(),
    ));

    let dir = a.data_dir.clone();
    let retention = (a.retention > 0).then_some(a.retention);
    let db = tokio::task::spawn_blocking(move || Db::open(&dir, DbOptions { retention, ..DbOptions::default() }))
        .await
        .context("TSDB open task")?
        .with_context(|| format!("open the ruler's TSDB in {}", a.data_dir.display()))?;
    let db = Arc::new(db);
    let shipper = match a.objstore.bucket()? {
        Some(bucket) => {
            let s = Arc::new(
                strata_shipper::Shipper::new(bucket, &a.data_dir, external.clone(), "ruler")
                    .context("ship the ruler's blocks")?,
            );
            let shipped = Arc::clone(&s);
            db.set_deletable(Arc::new(move |meta| shipped.is_uploaded(meta.ulid)));
            Some(s)
        }
        None => None,
    };

    let options = RulerOptions {
        rule_files: a.rule_files.clone(),
        eval_interval: a.eval_interval,
        external_labels: external.clone(),
        alert_label_drop: a.alert_label_drop.clone(),
        alert_query_url: a.alert_query_url.clone(),
        resend_delay: a.resend_delay,
        for_grace_period: a.for_grace_period,
        for_outage_tolerance: a.for_outage_tolerance,
    };
    let ruler = Arc::new(Ruler::new(options, queriers, notifier, Arc::clone(&db), rule_metrics));
    // Names are looked up before the first evaluation, then every DNS interval.
    if names {
        ruler.queriers.apis.refresh().await;
        ruler.notifier.refresh().await;
    }
    let dns_task = names.then(|| {
        let r = Arc::clone(&ruler);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(DNS_INTERVAL).await;
                r.queriers.apis.refresh().await;
                r.notifier.refresh().await;
            }
        })
    });
    ruler.reload().context("load the rule files")?;

    let http = bind_flag("--http-address", a.http_address).await?;
    let grpc = bind_flag("--grpc-address", a.grpc_address).await?;
    tracing::info!(
        http = %http.local_addr().context("HTTP listener address")?,
        grpc = %grpc.local_addr().context("gRPC listener address")?,
        data_dir = %a.data_dir.display(),
        "starting ruler"
    );
    let pairs: Vec<(&str, &str)> = external.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let store = LocalStore::for_db(Arc::clone(&db), Labels::from_pairs(&pairs), Component::Rule);
    let store_api = StoreApi::new(Arc::new(store), ServerOptions::default(), metrics.grpc.clone());
    let metrics = Arc::new(metrics);
    let scraped = Arc::clone(&metrics);
    let router = strata_rule::api::router(Arc::clone(&ruler))
        .route("/metrics", get(move || std::future::ready(strata_receiver::http::metrics_response(&scraped))));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = serve_http(http, router, stop_rx.clone(), "http");
    let mut grpc_stop = stop_rx.clone();
    let grpc_task = tokio::spawn(store_api.serve(grpc, async move {
        let _ = grpc_stop.wait_for(|s| *s).await;
    }));
    let ship_task = shipper.clone().map(|s| {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = s.sync().await {
                    tracing::error!(error = %e, "shipping blocks failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(SHIP_INTERVAL) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    });
    let reloader = Arc::clone(&ruler);
    let hup_task = tokio::spawn(async move {
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
    });

    shutdown_signal().await;
    tracing::info!("shutting down: stopping rule evaluation, then closing the TSDB");
    ruler.stop();
    hup_task.abort();
    if let Some(t) = dns_task {
        t.abort();
    }
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    match grpc_task.await {
        Ok(Err(e)) => tracing::error!(error = %e, server = "grpc", "server failed"),
        Err(e) => tracing::error!(error = %e, server = "grpc", "server task failed"),
        Ok(Ok(())) => {}
    }
    if let Some(t) = ship_task {
        let _ = t.await;
    }
    let closing = Arc::clone(&db);
    tokio::task::spawn_blocking(move || closing.close()).await.context("TSDB close task")?.context("close the TSDB")?;
    if let Some(s) = shipper {
        s.sync().await.context("ship blocks at shutdown")?;
    }
    tracing::info!("shutdown complete");
    Ok(())
}
