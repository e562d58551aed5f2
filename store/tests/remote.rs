//! The remote store against a real tonic `thanos.Store` server: streaming, batches, warnings,
//! tenancy, and peers that misbehave (die mid-stream, send garbage, send unsorted series, hang).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{garbage_server, up_series, Behaviour, Server, TestStore};
use strata_storage::{LabelsRequest, PartialResponse, SelectRequest, SeriesChunks, Storage, StorageError};
use strata_store::proxy::{Proxy, ProxyOptions, StoreRef};
use strata_store::remote::{RemoteOptions, RemoteStore};
use strata_store::{Component, Store};
use strata_testkit::{wait_for, FaultProxy};
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::{MatchOp, Matcher};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn request(partial: PartialResponse, tenant: Option<&str>) -> SelectRequest {
    let mut req = SelectRequest::new(vec![Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()], 0, 10_000);
    req.scope.partial_response = partial;
    req.scope.tenant = tenant.map(str::to_owned);
    req
}

fn remote(rt: &tokio::runtime::Runtime, addr: &str) -> RemoteStore {
    let _entered = rt.enter();
    RemoteStore::connect_lazy(addr, RemoteOptions::default()).unwrap()
}

/// Waits until the server saw one call cancelled.
fn cancelled_once(seen: &parking_lot::Mutex<common::Seen>) {
    wait_for("the server to see the call cancelled", Duration::from_secs(5), || match seen.lock().cancelled {
        1 => Ok(()),
        n => Err(format!("{n} cancelled")),
    })
    .unwrap();
}

fn read_all(store: &dyn Storage, req: &SelectRequest) -> (Vec<Result<SeriesChunks, StorageError>>, Vec<String>) {
    let mut set = store.select(req).unwrap();
    let got = set.by_ref().collect();
    (got, set.warnings())
}

#[test]
fn series_stream_in_batches_with_the_tenant() {
    let rt = runtime();
    let series = up_series(150);
    let store = TestStore::new(series.clone(), Behaviour::Answer, &[("replica", "a")]);
    let seen = store.seen.clone();
    let server = rt.block_on(Server::start(store, "127.0.0.1:0"));
    let remote = remote(&rt, &server.addr);

    let (got, warnings) = read_all(&remote, &request(PartialResponse::Abort, Some("team-a")));
    let got: Vec<SeriesChunks> = got.into_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, series, "every series, chunks passed through");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(seen.lock().batch_size, 64);
    assert_eq!(seen.lock().tenant.as_deref(), Some("team-a"));

    let names = remote.label_names(&LabelsRequest::new(Vec::new(), 0, 10_000)).unwrap();
    assert_eq!(names.values, ["__name__", "instance"]);
    assert_eq!(names.warnings, [format!("store {}: partial", server.addr)]);
    assert_eq!(seen.lock().tenant, None, "no tenant, no metadata");
    let values =
        remote.label_values("instance", &LabelsRequest { limit: 2, ..LabelsRequest::new(Vec::new(), 0, 10_000) });
    assert_eq!(values.unwrap().values, ["host-000", "host-001"]);
}

#[test]
fn info_is_what_the_endpoint_last_said() {
    let rt = runtime();
    let server =
        rt.block_on(Server::start(TestStore::new(Vec::new(), Behaviour::Answer, &[("replica", "a")]), "127.0.0.1:0"));
    let remote = remote(&rt, &server.addr);
    let before = remote.info();
    assert_eq!((before.min_time, before.max_time), (i64::MIN, i64::MAX), "unknown: prunes nothing");
    let info = rt.block_on(remote.refresh_info()).unwrap();
    assert_eq!(info.component, Component::Receive);
    assert_eq!(info.label_sets, [Labels::from_pairs(&[("replica", "a")])]);
    assert_eq!((info.min_time, info.max_time), (0, 10_000));
    assert_eq!(remote.info(), info);
}

#[test]
fn warning_frames_are_warnings_or_errors() {
    let rt = runtime();
    let server = rt.block_on(Server::start(TestStore::new(up_series(3), Behaviour::WarnFirst, &[]), "127.0.0.1:0"));
    let remote = remote(&rt, &server.addr);

    let (got, warnings) = read_all(&remote, &request(PartialResponse::Warn, None));
    assert_eq!(got.iter().filter(|s| s.is_ok()).count(), 3);
    assert_eq!(warnings, [format!("store {}: careful", server.addr)]);

    let (got, _) = read_all(&remote, &request(PartialResponse::Abort, None));
    assert!(matches!(&got[..], [Err(e)] if e.to_string() == format!("store {}: careful", server.addr)), "{got:?}");
}

#[test]
fn unsorted_series_end_the_set_with_an_error() {
    let rt = runtime();
    let server = rt.block_on(Server::start(TestStore::new(up_series(5), Behaviour::Unsorted, &[]), "127.0.0.1:0"));
    let remote = remote(&rt, &server.addr);
    let (got, _) = read_all(&remote, &request(PartialResponse::Abort, None));
    assert_eq!(got.len(), 2, "{got:?}");
    let Err(e) = &got[1] else { panic!("{got:?}") };
    assert!(e.to_string().contains("not in label order"), "{e}");
}

#[test]
fn an_error_status_mid_stream_ends_the_set_with_it() {
    let rt = runtime();
    let server = rt.block_on(Server::start(TestStore::new(up_series(5), Behaviour::FailAfter(2), &[]), "127.0.0.1:0"));
    let remote = remote(&rt, &server.addr);
    let (got, _) = read_all(&remote, &request(PartialResponse::Abort, None));
    assert_eq!(got.len(), 3, "{got:?}");
    let Err(e) = &got[2] else { panic!("{got:?}") };
    assert!(e.to_string().contains("the disk is on fire"), "{e}");
    assert!(e.to_string().contains(&server.addr), "{e}");
}

#[test]
fn a_server_dying_mid_stream_is_an_error() {
    let rt = runtime();
    let server = rt.block_on(Server::start(TestStore::new(up_series(5), Behaviour::HangAfter(2), &[]), "127.0.0.1:0"));
    let port: u16 = server.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let proxy = FaultProxy::start(port);
    let addr = format!("127.0.0.1:{}", proxy.port);
    let remote = remote(&rt, &addr);
    let mut set = remote.select(&request(PartialResponse::Abort, None)).unwrap();
    assert!(set.next().is_some_and(|s| s.is_ok()));
    assert!(set.next().is_some_and(|s| s.is_ok()));
    let mut die = proxy.outage_switch();
    die();
    let start = Instant::now();
    let next = set.next();
    assert!(matches!(&next, Some(Err(StorageError::Unavailable(m))) if m.contains(&addr)), "{next:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(set.next().is_none());
}

#[test]
fn garbage_frames_are_an_error() {
    let rt = runtime();
    let addr = rt.block_on(garbage_server());
    let remote = remote(&rt, &addr);
    let (got, _) = read_all(&remote, &request(PartialResponse::Abort, None));
    assert!(matches!(&got[..], [Err(StorageError::Unavailable(m))] if m.contains(&addr)), "{got:?}");
    assert!(remote.label_names(&LabelsRequest::new(Vec::new(), 0, 1)).is_err());
    assert!(rt.block_on(remote.refresh_info()).is_err());
}

#[test]
fn an_unreachable_store_is_an_error() {
    let rt = runtime();
    // A port that was free a moment ago.
    let addr = rt.block_on(async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap() });
    let remote = remote(&rt, &addr.to_string());
    let (got, _) = read_all(&remote, &request(PartialResponse::Abort, None));
    assert!(matches!(&got[..], [Err(StorageError::Unavailable(_))]), "{got:?}");
    assert!(remote.label_names(&LabelsRequest::new(Vec::new(), 0, 1)).is_err());
}

#[test]
fn dropping_the_set_cancels_the_call() {
    let rt = runtime();
    let store = TestStore::new(up_series(5), Behaviour::HangAfter(1), &[]);
    let seen = store.seen.clone();
    let server = rt.block_on(Server::start(store, "127.0.0.1:0"));
    let remote = remote(&rt, &server.addr);
    let mut set = remote.select(&request(PartialResponse::Abort, None)).unwrap();
    assert!(set.next().is_some_and(|s| s.is_ok()));
    drop(set);
    cancelled_once(&seen);
}

/// The proxy over two remote stores, one of which hangs: the answer of the other with a warning,
/// and the hung call cancelled at the server.
#[test]
fn a_proxy_cuts_off_a_hung_remote_store() {
    let rt = runtime();
    let good =
        rt.block_on(Server::start(TestStore::new(up_series(3), Behaviour::Answer, &[("replica", "a")]), "127.0.0.1:0"));
    let hung_store = TestStore::new(up_series(3), Behaviour::HangAfter(1), &[("replica", "b")]);
    let seen = hung_store.seen.clone();
    let hung = rt.block_on(Server::start(hung_store, "127.0.0.1:0"));
    let stores = vec![
        StoreRef::remote(good.addr.clone(), Arc::new(remote(&rt, &good.addr))),
        StoreRef::remote(hung.addr.clone(), Arc::new(remote(&rt, &hung.addr))),
    ];
    let proxy = Proxy::new(
        Arc::new(stores),
        ProxyOptions { component: Component::Query, response_timeout: Some(Duration::from_secs(2)) },
    );
    let start = Instant::now();
    let (got, warnings) = read_all(&proxy, &request(PartialResponse::Warn, None));
    assert!(start.elapsed() < Duration::from_secs(10));
    let got: Vec<SeriesChunks> = got.into_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, up_series(3), "the same series from both stores, merged");
    assert_eq!(warnings, [format!("store {}: no data received in 2s", hung.addr)]);
    cancelled_once(&seen);
}
