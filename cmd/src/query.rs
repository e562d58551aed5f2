//! `strata query`: the Prometheus HTTP API over every StoreAPI endpoint it is given, with HA
//! deduplication, and the union of those endpoints served again as a StoreAPI, so that queriers
//! stack. Flags are Thanos's querier's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_query::api::{ApiState, QuerierOptions};
use strata_query::engine::DedupFunc;
use strata_receiver::metrics::Metrics;
use strata_storage::NoMetadata;
use strata_store::endpoints::{EndpointOptions, EndpointSet};
use strata_store::proxy::{Proxy, ProxyOptions};
use strata_store::remote::RemoteOptions;
use strata_store::server::{ServerOptions, StoreApi};
use strata_store::{CancellationToken, Component};

use crate::{
    bind_flag, build_info, ops_routes, parse_duration_flag, query_setup, serve_http, shutdown_signal, QueryArgs,
};

#[derive(Args)]
pub struct QueryCmdArgs {
    /// Address of the HTTP API, the query page, /metrics and the probes.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// Address of the StoreAPI (`thanos.Store`, `thanos.info.Info`) over all endpoints.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: SocketAddr,
    /// A StoreAPI endpoint: `host:port`, `dns+host:port` (every A/AAAA record) or
    /// `dnssrv+_service._proto.name` (SRV records). Repeatable.
    #[arg(long = "endpoint")]
    endpoints: Vec<String>,
    /// Files of endpoints in Prometheus's file service discovery format (YAML or JSON), read
    /// again when they change. Repeatable.
    #[arg(long = "endpoint.sd-files")]
    sd_files: Vec<PathBuf>,
    /// Longest an endpoint's Info call may take.
    #[arg(long = "endpoint.info-timeout", default_value = "5s", value_parser = parse_duration_flag)]
    info_timeout: i64,
    /// Longest to wait for a store's next series before it counts as failed (partial response
    /// then decides); 0 waits for as long as the query may run.
    #[arg(long = "store.response-timeout", default_value = "0ms", value_parser = parse_duration_flag)]
    response_timeout: i64,
    #[command(flatten)]
    querier: QuerierFlags,
    #[command(flatten)]
    query: QueryArgs,
}

/// Deduplication, partial response, downsampling and tenancy of the query API (Thanos's querier
/// flags), for `query` and `standalone`.
#[derive(Args)]
pub(crate) struct QuerierFlags {
    /// A label that tells replicas of the same series apart; series equal without these labels
    /// are merged into one. Repeatable.
    #[arg(long = "query.replica-label")]
    replica_labels: Vec<String>,
    /// How replicas are merged: `penalty` (Thanos's default: stays on one replica, switches
    /// after a gap) or `chain` (every timestamp of any replica once).
    #[arg(long = "deduplication.func", default_value = "penalty", value_parser = parse_dedup_func)]
    dedup_func: DedupFunc,
    /// Answer from the stores that answered, with a warning naming the others, unless a request
    /// says `partial_response=false`.
    #[arg(long = "query.partial-response", default_value_t = true, action = clap::ArgAction::Set)]
    partial_response: bool,
    /// Range queries without `max_source_resolution` accept data downsampled to a fifth of
    /// their step.
    #[arg(long = "query.auto-downsampling")]
    auto_downsampling: bool,
    /// HTTP header naming the tenant of a request.
    #[arg(id = "query_tenant_header", long = "query.tenant-header", default_value = strata_query::api::DEFAULT_TENANT_HEADER)]
    tenant_header: String,
    /// Tenant of requests without the tenant header.
    #[arg(id = "query_default_tenant", long = "query.default-tenant-id", default_value = strata_query::api::DEFAULT_TENANT)]
    default_tenant: String,
    /// Label that holds a series' tenant.
    #[arg(id = "query_tenant_label", long = "query.tenant-label-name", default_value = strata_query::api::DEFAULT_TENANT_LABEL)]
    tenant_label: String,
    /// Limit every read of a request to its tenant's series.
    #[arg(long = "query.enforce-tenancy")]
    enforce_tenancy: bool,
}

impl QuerierFlags {
    pub(crate) fn options(&self) -> QuerierOptions {
        QuerierOptions {
            replica_labels: self.replica_labels.clone(),
            dedup_func: self.dedup_func,
            partial_response: self.partial_response,
            auto_downsampling: self.auto_downsampling,
            tenant_header: self.tenant_header.clone(),
            default_tenant: self.default_tenant.clone(),
            tenant_label: self.tenant_label.clone(),
            enforce_tenancy: self.enforce_tenancy,
        }
    }
}

fn parse_dedup_func(s: &str) -> Result<DedupFunc, String> {
    DedupFunc::from_name(s).ok_or_else(|| format!("unknown deduplication function {s:?}: use penalty or chain"))
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Runs the querier until SIGTERM or Ctrl-C.
pub async fn run(a: QueryCmdArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let build = build_info();
    let mut metrics = Metrics::for_process(&build);
    let endpoint_options = EndpointOptions {
        endpoints: a.endpoints.clone(),
        sd_files: a.sd_files.clone(),
        remote: RemoteOptions { info_timeout: millis(a.info_timeout), ..RemoteOptions::default() },
        ..EndpointOptions::default()
    };
    let endpoints = EndpointSet::new(endpoint_options, metrics.registry_mut()).context("endpoints")?;
    let metrics = Arc::new(metrics);
    let stop_endpoints = CancellationToken::new();
    let endpoint_loop = endpoints.spawn(stop_endpoints.clone());
    let response_timeout = (a.response_timeout > 0).then(|| millis(a.response_timeout));
    let proxy = Arc::new(Proxy::new(endpoints.clone(), ProxyOptions { component: Component::Query, response_timeout }));

    let http = bind_flag("--http-address", a.http_address).await?;
    let grpc = bind_flag("--grpc-address", a.grpc_address).await?;
    tracing::info!(
        http = %http.local_addr().context("HTTP listener address")?,
        grpc = %grpc.local_addr().context("gRPC listener address")?,
        endpoints = ?a.endpoints,
        replica_labels = ?a.querier.replica_labels,
        "starting querier"
    );

    let setup = query_setup(&a.query, &a.querier, matches, "query");
    let mut state = ApiState::new(proxy.clone(), Arc::new(NoMetadata), setup.engine);
    let until = proxy.clone();
    state.storage_until = Some(Arc::new(move |deadline| Arc::new(until.with_deadline(deadline))));
    state.querier = setup.querier;
    state.flags = setup.flags;
    state.build_revision = build.revision.clone();
    state.build_branch = build.branch.clone();
    let statuses = endpoints.clone();
    state.stores = Some(Arc::new(move || statuses.statuses()));
    let observed = metrics.clone();
    state.observe = Some(Arc::new(move |handler, method, code, elapsed| {
        observed.observe_request(handler, method.as_str(), code, elapsed)
    }));
    let router = strata_query::api::router(state).merge(ops_routes(metrics.clone(), || None));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = serve_http(http, router, stop_rx.clone(), "http");
    let mut grpc_stop = stop_rx.clone();
    let store_api = StoreApi::new(proxy, ServerOptions::default(), metrics.grpc.clone());
    let grpc_task = tokio::spawn(store_api.serve(grpc, async move {
        let _ = grpc_stop.wait_for(|s| *s).await;
    }));

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    stop_endpoints.cancel();
    let (_, grpc, _) = tokio::join!(http_task, grpc_task, endpoint_loop);
    match grpc {
        Ok(Err(e)) => tracing::error!(error = %e, server = "grpc", "server failed"),
        Err(e) => tracing::error!(error = %e, server = "grpc", "server task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("shutdown complete");
    Ok(())
}
