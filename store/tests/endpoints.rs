//! The endpoint set against real tonic servers: static and DNS endpoints, SD files that change,
//! an endpoint that goes down and comes back, the active set the proxy reads and the gauge.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{up_series, Behaviour, Server, TestStore};
use prometheus_client::registry::Registry;
use strata_storage::{PartialResponse, SelectRequest, Storage};
use strata_store::endpoints::{EndpointOptions, EndpointSet};
use strata_store::proxy::{Proxy, ProxyOptions, StoreSource};
use strata_store::{CancellationToken, Store};
use strata_testkit::{free_port, wait_for};
use strata_tsdb::matchers::{MatchOp, Matcher};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn store(replica: &str) -> TestStore {
    TestStore::new(up_series(2), Behaviour::Answer, &[("replica", replica)])
}

fn active(set: &EndpointSet) -> Vec<String> {
    set.stores().into_iter().map(|s| s.name).collect()
}

fn metrics(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

/// Waits until the active set is `want`.
fn wait_active(set: &EndpointSet, want: &str) {
    wait_for("the active endpoints", Duration::from_secs(10), || {
        let now = active(set);
        if now == [want] {
            Ok(())
        } else {
            Err(format!("{now:?}, statuses {:?}", set.statuses()))
        }
    })
    .unwrap();
}

#[test]
fn static_endpoints_that_answer_are_active() {
    let rt = runtime();
    let a = rt.block_on(Server::start(store("a"), "127.0.0.1:0"));
    let down = format!("127.0.0.1:{}", free_port());
    let mut registry = Registry::default();
    let options = EndpointOptions { endpoints: vec![a.addr.clone(), down.clone()], ..EndpointOptions::default() };
    let set = EndpointSet::new(options, &mut registry).unwrap();
    rt.block_on(set.update());

    assert_eq!(active(&set), [a.addr.as_str()]);
    let statuses = set.statuses();
    assert_eq!(statuses.len(), 2);
    let up = statuses.iter().find(|s| s.address == a.addr).unwrap();
    assert!(up.healthy && up.last_error.is_none() && up.last_check.is_some());
    let info = up.info.as_ref().unwrap();
    assert_eq!(info.component.as_str(), "receive");
    assert_eq!((info.min_time, info.max_time), (0, 10_000));
    let gone = statuses.iter().find(|s| s.address == down).unwrap();
    assert!(!gone.healthy);
    assert!(gone.last_error.as_deref().is_some_and(|e| e.contains(&down)), "{gone:?}");

    let text = metrics(&registry);
    assert!(
        text.contains(
            r#"thanos_store_nodes_grpc_connections{external_labels="{replica=\"a\"}",store_type="receive"} 1"#
        ),
        "{text}"
    );

    // The proxy reads what the set has.
    let proxy = Proxy::new(set.clone(), ProxyOptions::default());
    let req = SelectRequest::new(vec![Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()], 0, 10_000);
    let got: Vec<_> = proxy.select(&req).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, up_series(2));
    assert_eq!(proxy.info().label_sets.len(), 1);
}

#[test]
fn dns_endpoints_resolve_to_addresses() {
    let rt = runtime();
    let a = rt.block_on(Server::start(store("a"), "127.0.0.1:0"));
    let port = a.addr.rsplit_once(':').unwrap().1;
    let mut registry = Registry::default();
    let options = EndpointOptions { endpoints: vec![format!("dns+localhost:{port}")], ..EndpointOptions::default() };
    let set = EndpointSet::new(options, &mut registry).unwrap();
    rt.block_on(set.update());
    assert!(active(&set).contains(&format!("127.0.0.1:{port}")), "{:?}", set.statuses());
}

#[test]
fn sd_file_changes_are_picked_up() {
    let rt = runtime();
    let a = rt.block_on(Server::start(store("a"), "127.0.0.1:0"));
    let b = rt.block_on(Server::start(store("b"), "127.0.0.1:0"));
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("targets.yml");
    let json = dir.path().join("more.json");
    std::fs::write(&yaml, format!("- targets: ['{}']\n  labels:\n    team: x\n", a.addr)).unwrap();
    std::fs::write(&json, "[]").unwrap();
    let mut registry = Registry::default();
    let options = EndpointOptions {
        sd_files: vec![yaml.clone(), json.clone()],
        info_interval: Duration::from_millis(200),
        ..EndpointOptions::default()
    };
    let set = EndpointSet::new(options, &mut registry).unwrap();
    let shutdown = CancellationToken::new();
    let task = {
        let _entered = rt.enter();
        set.spawn(shutdown.clone())
    };
    wait_active(&set, &a.addr);

    std::fs::write(&yaml, "").unwrap();
    std::fs::write(&json, format!(r#"[{{"targets": ["{}"], "labels": {{}}}}]"#, b.addr)).unwrap();
    wait_active(&set, &b.addr);
    assert_eq!(set.statuses().len(), 1, "the endpoint no longer listed is gone");

    shutdown.cancel();
    rt.block_on(task).unwrap();

    // A file that cannot be read keeps its last targets.
    std::fs::write(&json, "{ not json").unwrap();
    rt.block_on(set.update());
    assert_eq!(active(&set), [b.addr.as_str()]);
}

#[test]
fn an_endpoint_that_goes_down_is_dropped_and_comes_back() {
    let rt = runtime();
    let a = rt.block_on(Server::start(store("a"), "127.0.0.1:0"));
    let addr = a.addr.clone();
    let mut registry = Registry::default();
    let options = EndpointOptions {
        endpoints: vec![addr.clone()],
        remote: strata_store::remote::RemoteOptions {
            info_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        ..EndpointOptions::default()
    };
    let set = EndpointSet::new(options, &mut registry).unwrap();
    let gauge = r#"thanos_store_nodes_grpc_connections{external_labels="{replica=\"a\"}",store_type="receive"} 1"#;
    rt.block_on(set.update());
    assert_eq!(active(&set), [addr.as_str()]);
    assert!(metrics(&registry).contains(gauge));

    rt.block_on(a.stop());
    rt.block_on(set.update());
    assert!(active(&set).is_empty());
    let status = &set.statuses()[0];
    assert!(!status.healthy && status.last_error.is_some(), "{status:?}");
    assert!(status.info.is_some(), "the last Info is kept for the status page");
    assert!(!metrics(&registry).contains(gauge));

    let _back = rt.block_on(Server::start(store("a"), &addr));
    rt.block_on(set.update());
    assert_eq!(active(&set), [addr.as_str()]);
    assert!(set.statuses()[0].last_error.is_none());
    assert!(metrics(&registry).contains(gauge));

    // A read through the proxy reaches it again on the same connection handle.
    let proxy = Proxy::new(Arc::new(set.stores()), ProxyOptions::default());
    let mut req = SelectRequest::new(vec![Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()], 0, 10_000);
    req.scope.partial_response = PartialResponse::Abort;
    assert_eq!(proxy.select(&req).unwrap().count(), 2);
}
