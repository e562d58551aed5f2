//! The StoreAPI server over an in-memory store, through a real tonic client on 127.0.0.1.

mod mem;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use mem::{chunk, labels, MemStorage};
use prometheus_client::registry::Registry;
use strata_proto::thanos as pb;
use strata_proto::thanos::info::info_client::InfoClient;
use strata_proto::thanos::info::InfoRequest;
use strata_proto::thanos::store_client::StoreClient;
use strata_storage::{LabelsAnswer, LabelsRequest, SelectRequest, SeriesChunks, SeriesSet, Storage, StorageError};
use strata_store::convert::{labels_from_proto, series_labels, TENANT_METADATA_KEY};
use strata_store::local::LocalStore;
use strata_store::server::{SeriesLimits, ServerMetrics, ServerOptions, StoreApi};
use strata_store::{Component, Store};
use strata_testkit::{wait_for_async, within};
use strata_tsdb::labels::Labels;
use tonic::transport::Channel;
use tonic::Code;
use tower::{Service, ServiceExt};

/// A running server; stopped when dropped.
struct Server {
    addr: SocketAddr,
    registry: Registry,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start(store: Arc<dyn Store>, options: ServerOptions) -> Server {
        let mut registry = Registry::default();
        let api = StoreApi::new(store, options, ServerMetrics::new(&mut registry));
        Server::serve(api, registry).await
    }

    async fn serve(api: StoreApi, registry: Registry) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(api.serve(listener, async move {
            let _ = stopped.await;
        }));
        Server { addr, registry, _stop: stop }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.unwrap()
    }

    async fn client(&self) -> StoreClient<Channel> {
        StoreClient::new(self.channel().await).max_decoding_message_size(usize::MAX)
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }
}

const EXTERNAL: &[(&str, &str)] = &[("receive", "r1"), ("tenant_id", "t1")];

/// 100 `up` series with three 120-sample chunks each, with the receiver's external labels.
fn up_series() -> Vec<SeriesChunks> {
    (0..100)
        .map(|i| SeriesChunks {
            labels: labels(&[("__name__", "up"), ("instance", &format!("host-{i:03}")), ("job", "node")]),
            chunks: vec![chunk(0, 120), chunk(200_000, 120), chunk(400_000, 120)],
        })
        .collect()
}

fn local_store(mem: Arc<MemStorage>) -> Arc<dyn Store> {
    Arc::new(LocalStore::new(mem, Box::new(|| (0, 600_000)), labels(EXTERNAL), Component::Receive))
}

async fn up_server(options: ServerOptions) -> (Server, Arc<MemStorage>) {
    let mem = Arc::new(MemStorage::new(up_series()).with_warnings(&["a store said hello"]));
    (Server::start(local_store(mem.clone()), options).await, mem)
}

fn matcher(t: pb::label_matcher::Type, name: &str, value: &str) -> pb::LabelMatcher {
    pb::LabelMatcher { r#type: t as i32, name: name.into(), value: value.into() }
}

fn eq(name: &str, value: &str) -> pb::LabelMatcher {
    matcher(pb::label_matcher::Type::Eq, name, value)
}

fn series_request(matchers: Vec<pb::LabelMatcher>) -> pb::SeriesRequest {
    pb::SeriesRequest { min_time: 0, max_time: 600_000, matchers, ..pb::SeriesRequest::default() }
}

/// What a Series call streamed: each response as it came.
#[derive(Debug, Default)]
struct Answer {
    series: Vec<pb::Series>,
    /// Series per response that carried series.
    per_response: Vec<usize>,
    warnings: Vec<String>,
    /// Whether a warning came before a series.
    warning_before_series: bool,
}

async fn series(
    client: &mut StoreClient<Channel>,
    req: impl tonic::IntoRequest<pb::SeriesRequest>,
) -> Result<Answer, tonic::Status> {
    let mut stream = client.series(req).await?.into_inner();
    let mut answer = Answer::default();
    while let Some(resp) = stream.message().await? {
        match resp.result {
            Some(pb::series_response::Result::Series(s)) => {
                answer.warning_before_series |= !answer.warnings.is_empty();
                answer.per_response.push(1);
                answer.series.push(s);
            }
            Some(pb::series_response::Result::Batch(b)) => {
                answer.warning_before_series |= !answer.warnings.is_empty();
                answer.per_response.push(b.series.len());
                answer.series.extend(b.series);
            }
            Some(pb::series_response::Result::Warning(w)) => answer.warnings.push(w),
            other => panic!("unexpected response {other:?}"),
        }
    }
    Ok(answer)
}

fn label_sets(series: &[pb::Series]) -> Vec<Labels> {
    series.iter().map(series_labels).collect()
}

/// The series sorted strictly, each with the external labels, in the store's order.
fn check_sorted_and_labelled(series: &[pb::Series]) {
    let sets = label_sets(series);
    assert!(sets.windows(2).all(|w| w[0] < w[1]), "strictly sorted");
    assert!(
        series.iter().all(|s| s.labels().zip(s.labels().skip(1)).all(|(a, b)| a.0 < b.0)),
        "labels sorted on the wire"
    );
    for l in &sets {
        assert_eq!((l.get("receive"), l.get("tenant_id")), (Some("r1"), Some("t1")), "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_stream_sorted_with_chunks_passed_through() {
    let (server, mem) = up_server(ServerOptions::default()).await;
    let mut client = server.client().await;
    let answer = series(&mut client, series_request(vec![eq("__name__", "up")])).await.unwrap();
    assert_eq!(answer.series.len(), 100);
    check_sorted_and_labelled(&answer.series);
    assert_eq!(answer.per_response, vec![1; 100], "no batch size: one series per response");
    assert_eq!(answer.warnings, ["a store said hello"]);
    assert!(!answer.warning_before_series);
    // Chunk bytes and hashes as the store holds them.
    for (got, want) in answer.series.iter().zip(mem.series()) {
        assert_eq!(got.chunks.len(), 3);
        for (c, w) in got.chunks.iter().zip(&want.chunks) {
            let raw = c.raw.as_ref().unwrap();
            assert_eq!((c.min_time, c.max_time, &raw.data), (w.min_time, w.max_time, &w.data));
            assert_eq!(raw.hash, strata_store::convert::chunk_hash(&w.data));
            assert_eq!(raw.r#type, pb::chunk::Encoding::Xor as i32);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_the_asked_size() {
    let (server, _) = up_server(ServerOptions::default()).await;
    let mut client = server.client().await;
    for (size, want) in [
        (0, vec![1; 100]),
        (1, vec![1; 100]),
        (-3, vec![1; 100]),
        (64, vec![64, 36]),
        (30, vec![30, 30, 30, 10]),
        (i64::MAX, vec![100]),
    ] {
        let req = pb::SeriesRequest { response_batch_size: size, ..series_request(vec![eq("__name__", "up")]) };
        let answer = series(&mut client, req).await.unwrap();
        assert_eq!(answer.per_response, want, "batch size {size}");
        check_sorted_and_labelled(&answer.series);
        assert_eq!(answer.warnings, ["a store said hello"], "batch size {size}");
        assert!(!answer.warning_before_series, "batch size {size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_end_the_answer_with_resource_exhausted() {
    // Each series: 3 chunks of 120 samples.
    let bytes_per_series: u64 = up_series()[0].chunks.iter().map(|c| c.data.len() as u64).sum();
    for (limits, message) in [
        (SeriesLimits { series: 10, ..SeriesLimits::default() }, "series limit of 10 exceeded"),
        (SeriesLimits { samples: 3600, ..SeriesLimits::default() }, "samples limit of 3600 exceeded"),
        (
            SeriesLimits { chunk_bytes: bytes_per_series * 10, ..SeriesLimits::default() },
            &format!("chunk bytes limit of {} exceeded", bytes_per_series * 10),
        ),
    ] {
        let (server, _) = up_server(ServerOptions { limits, ..ServerOptions::default() }).await;
        let mut client = server.client().await;
        let req = series_request(vec![eq("__name__", "up")]);
        let status = series(&mut client, req.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(status.message(), message);
        // Within the limits the same server answers.
        let job = pb::SeriesRequest { matchers: vec![eq("instance", "host-001")], ..req };
        assert_eq!(series(&mut client, job).await.unwrap().series.len(), 1);
        let handled = server.metrics();
        assert!(
            handled.contains(
                "grpc_server_handled_total{grpc_code=\"ResourceExhausted\",grpc_method=\"Series\",grpc_service=\"thanos.Store\",grpc_type=\"server_stream\"} 1"
            ),
            "{handled}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_comes_from_metadata() {
    let (server, mem) = up_server(ServerOptions::default()).await;
    let mut client = server.client().await;
    let mut req = tonic::Request::new(series_request(vec![eq("__name__", "up")]));
    req.metadata_mut().insert(TENANT_METADATA_KEY, "team-a".parse().unwrap());
    series(&mut client, req).await.unwrap();
    assert_eq!(mem.last_scope.lock().as_ref().unwrap().tenant.as_deref(), Some("team-a"));

    let mut req =
        tonic::Request::new(pb::LabelNamesRequest { matchers: vec![eq("__name__", "up")], ..Default::default() });
    req.metadata_mut().insert(TENANT_METADATA_KEY, "team-b".parse().unwrap());
    client.label_names(req).await.unwrap();
    assert_eq!(mem.last_scope.lock().as_ref().unwrap().tenant.as_deref(), Some("team-b"));

    series(&mut client, series_request(vec![eq("__name__", "up")])).await.unwrap();
    assert_eq!(mem.last_scope.lock().as_ref().unwrap().tenant, None, "no metadata, no tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_chunks_shards_and_replica_labels() {
    let (server, _) = up_server(ServerOptions::default()).await;
    let mut client = server.client().await;
    let base = series_request(vec![eq("__name__", "up")]);
    let all = series(&mut client, base.clone()).await.unwrap().series;

    let labels_only = series(&mut client, pb::SeriesRequest { skip_chunks: true, ..base.clone() }).await.unwrap();
    assert_eq!(label_sets(&labels_only.series), label_sets(&all));
    assert!(labels_only.series.iter().all(|s| s.chunks.is_empty()));

    let mut union = Vec::new();
    for shard_index in 0..3 {
        let shard = pb::ShardInfo { shard_index, total_shards: 3, by: true, labels: vec!["instance".into()] };
        let req = pb::SeriesRequest { shard_info: Some(shard), ..base.clone() };
        let part = series(&mut client, req).await.unwrap().series;
        assert!(!part.is_empty() && part.len() < all.len());
        check_sorted_and_labelled(&part);
        union.extend(label_sets(&part));
    }
    union.sort();
    assert_eq!(union, label_sets(&all), "the shards partition the answer");

    let req = pb::SeriesRequest { without_replica_labels: vec!["receive".into(), "job".into()], ..base.clone() };
    let dedup = series(&mut client, req).await.unwrap().series;
    let sets = label_sets(&dedup);
    assert_eq!(sets.len(), 100);
    assert!(sets.windows(2).all(|w| w[0] < w[1]));
    assert!(sets
        .iter()
        .all(|l| l.get("receive").is_none() && l.get("job").is_none() && l.get("tenant_id") == Some("t1")));

    let limited = series(&mut client, pb::SeriesRequest { limit: 7, ..base.clone() }).await.unwrap().series;
    assert_eq!(label_sets(&limited), label_sets(&all[..7]));
    let huge = series(&mut client, pb::SeriesRequest { limit: i64::MAX, ..base }).await.unwrap().series;
    assert_eq!(huge.len(), 100, "a huge limit is no limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_and_info() {
    let (server, _) = up_server(ServerOptions::default()).await;
    let mut client = server.client().await;
    let names = client.label_names(pb::LabelNamesRequest::default()).await.unwrap().into_inner();
    assert_eq!(names.names, ["__name__", "instance", "job", "receive", "tenant_id"]);
    let req = pb::LabelNamesRequest { without_replica_labels: vec!["receive".into()], limit: 3, ..Default::default() };
    assert_eq!(client.label_names(req).await.unwrap().into_inner().names, ["__name__", "instance", "job"]);
    let values = |label: &str, matchers: Vec<pb::LabelMatcher>| pb::LabelValuesRequest {
        label: label.into(),
        matchers,
        limit: 2,
        ..Default::default()
    };
    let got = client.label_values(values("instance", vec![eq("job", "node")])).await.unwrap().into_inner();
    assert_eq!(got.values, ["host-000", "host-001"]);
    let got = client.label_values(values("tenant_id", vec![eq("job", "node")])).await.unwrap().into_inner();
    assert_eq!(got.values, ["t1"]);
    let got = client.label_values(values("tenant_id", vec![eq("tenant_id", "t2")])).await.unwrap().into_inner();
    assert!(got.values.is_empty());

    let mut info = InfoClient::new(server.channel().await);
    let info = info.info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.component_type, "receive");
    let store = info.store.unwrap();
    assert!(store.supports_sharding && store.supports_without_replica_labels);
    assert_eq!((store.min_time, store.max_time), (0, 600_000));
    assert_eq!(info.label_sets.len(), 1);
    assert_eq!(labels_from_proto(&info.label_sets[0].labels), labels(EXTERNAL));
    assert_eq!(store.tsdb_infos.len(), 1);
    assert_eq!(labels_from_proto(&store.tsdb_infos[0].labels.as_ref().unwrap().labels), labels(EXTERNAL));
    let metrics = server.metrics();
    for line in [
        "grpc_server_started_total{grpc_method=\"Info\",grpc_service=\"thanos.info.Info\",grpc_type=\"unary\"} 1",
        "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"LabelValues\",grpc_service=\"thanos.Store\",grpc_type=\"unary\"} 3",
        "grpc_server_handled_total{grpc_code=\"Unavailable\",grpc_method=\"Series\",grpc_service=\"thanos.Store\",grpc_type=\"server_stream\"} 0",
        "grpc_server_msg_received_total{grpc_method=\"LabelNames\",grpc_service=\"thanos.Store\",grpc_type=\"unary\"} 2",
        "grpc_server_handling_seconds_count{grpc_method=\"Info\",grpc_service=\"thanos.info.Info\",grpc_type=\"unary\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_invalid_argument() {
    let (server, _) = up_server(ServerOptions::default()).await;
    let mut client = server.client().await;
    let base = series_request(vec![eq("__name__", "up")]);
    let cases = [
        (
            "no matchers",
            pb::SeriesRequest { matchers: vec![], ..base.clone() },
            Some("no matchers specified (excluding external labels)"),
        ),
        (
            "only external matchers",
            pb::SeriesRequest { matchers: vec![eq("tenant_id", "t1")], ..base.clone() },
            Some("no matchers specified (excluding external labels)"),
        ),
        (
            "bad regex",
            pb::SeriesRequest { matchers: vec![matcher(pb::label_matcher::Type::Re, "job", "(")], ..base.clone() },
            None,
        ),
        (
            "unknown matcher type",
            pb::SeriesRequest {
                matchers: vec![pb::LabelMatcher { r#type: 7, name: "a".into(), value: "b".into() }],
                ..base.clone()
            },
            None,
        ),
        ("inverted range", pb::SeriesRequest { min_time: 10, max_time: 1, ..base.clone() }, None),
        (
            "shard out of range",
            pb::SeriesRequest {
                shard_info: Some(pb::ShardInfo { shard_index: 5, total_shards: 2, ..Default::default() }),
                ..base.clone()
            },
            None,
        ),
    ];
    for (name, req, message) in cases {
        let status = series(&mut client, req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        if let Some(m) = message {
            assert_eq!(status.message(), m, "{name}");
        }
    }
    let status = client.label_values(pb::LabelValuesRequest::default()).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "label name parameter cannot be empty"));
    let bad = pb::LabelNamesRequest {
        matchers: vec![matcher(pb::label_matcher::Type::Nre, "job", "[")],
        ..Default::default()
    };
    assert_eq!(client.label_names(bad).await.unwrap_err().code(), Code::InvalidArgument);
    // Matching no external value: an empty answer.
    let other = pb::SeriesRequest { matchers: vec![eq("__name__", "up"), eq("tenant_id", "t2")], ..base };
    assert!(series(&mut client, other).await.unwrap().series.is_empty());
}

/// Sends `frame` as the whole body of a gRPC call to `path`; the status the server answers.
async fn raw_call(channel: &mut Channel, path: &str, frame: Vec<u8>) -> (Code, String) {
    let req = tonic::codegen::http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(frame))))
        .unwrap();
    let resp = channel.ready().await.unwrap().call(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let status = match tonic::Status::from_header_map(&parts.headers) {
        Some(s) => s,
        None => {
            let trailers = body.collect().await.unwrap().trailers().cloned().unwrap();
            tonic::Status::from_header_map(&trailers).unwrap()
        }
    };
    (status.code(), status.message().to_owned())
}

/// A gRPC frame: uncompressed, `len` announced, `body` sent.
fn frame(len: u32, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0];
    f.extend(len.to_be_bytes());
    f.extend(body);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_leave_the_server_serving() {
    let options = ServerOptions { max_request_bytes: 64 << 10, ..ServerOptions::default() };
    let (server, _) = up_server(options).await;
    let mut channel = server.channel().await;
    let valid = prost::Message::encode_to_vec(&pb::LabelNamesRequest::default());
    // tonic's answers: Internal for what does not decode (as grpc-go), OutOfRange for a
    // message over the limit.
    for (name, f, want) in [
        ("truncated frame", frame(100, &[1, 2, 3]), Code::Internal),
        ("truncated header", vec![0, 0, 0], Code::Internal),
        ("garbage message", frame(3, &[0xff, 0xff, 0xff]), Code::Internal),
        ("oversized message", frame(1 << 20, &vec![0; 1 << 20]), Code::OutOfRange),
    ] {
        for path in ["/thanos.Store/LabelNames", "/thanos.Store/Series", "/thanos.info.Info/Info"] {
            let (code, message) = raw_call(&mut channel, path, f.clone()).await;
            assert_eq!(code, want, "{name} to {path}: {message}");
        }
    }
    assert_eq!(raw_call(&mut channel, "/thanos.Store/LabelNames", frame(valid.len() as u32, &valid)).await.0, Code::Ok);
    // A huge matcher through a real client: refused by size, and the server goes on.
    let mut client = server.client().await;
    let huge = pb::LabelNamesRequest { matchers: vec![eq("job", &"x".repeat(100 << 10))], ..Default::default() };
    let status = client.label_names(huge).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let names = client.label_names(pb::LabelNamesRequest::default()).await.unwrap().into_inner().names;
    assert!(!names.is_empty());
}

/// Series without end, each counted as it is produced; `dropped` once the read is dropped.
struct Endless {
    produced: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

struct EndlessSet {
    i: u64,
    produced: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl Iterator for EndlessSet {
    type Item = Result<SeriesChunks, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.i += 1;
        self.produced.fetch_add(1, Ordering::SeqCst);
        Some(Ok(SeriesChunks {
            labels: labels(&[("__name__", "m"), ("i", &format!("{:012}", self.i))]),
            chunks: vec![chunk(0, 120)],
        }))
    }
}

impl Drop for EndlessSet {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl Storage for Endless {
    fn select(&self, _: &SelectRequest) -> Result<SeriesSet, StorageError> {
        Ok(SeriesSet::new(EndlessSet { i: 0, produced: self.produced.clone(), dropped: self.dropped.clone() }))
    }

    fn label_names(&self, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        Ok(LabelsAnswer::default())
    }

    fn label_values(&self, _: &str, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        Ok(LabelsAnswer::default())
    }
}

/// A server over an [`Endless`] store, with its counters of series produced and whether the
/// read was dropped.
async fn endless_server(options: ServerOptions) -> (Server, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let (produced, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let endless = Endless { produced: produced.clone(), dropped: dropped.clone() };
    let store = Arc::new(LocalStore::new(Arc::new(endless), Box::new(|| (0, 1)), Labels::empty(), Component::Store));
    (Server::start(store, options).await, produced, dropped)
}

/// Waits until the Series() read was dropped and the call is counted with `code`.
async fn wait_read_ended(server: &Server, produced: &AtomicUsize, dropped: &AtomicBool, code: &str) {
    wait_for_async("the read to stop", Duration::from_secs(10), || {
        if dropped.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(format!("{} series produced", produced.load(Ordering::SeqCst)))
        }
    })
    .await
    .unwrap();
    let counted = format!(
        "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"Series\",grpc_service=\"thanos.Store\",grpc_type=\"server_stream\"}} 1"
    );
    wait_for_async("the call counted", Duration::from_secs(10), || {
        let metrics = server.metrics();
        if metrics.contains(&counted) {
            Ok(())
        } else {
            Err(metrics)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{counted}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_the_read() {
    let (server, produced, dropped) = endless_server(ServerOptions::default()).await;
    let mut client = server.client().await;
    let mut stream = client.series(series_request(vec![eq("__name__", "m")])).await.unwrap().into_inner();
    for _ in 0..3 {
        within(10, "a series", stream.message()).await.unwrap().unwrap();
    }
    drop(stream);
    drop(client);
    wait_read_ended(&server, &produced, &dropped, "Canceled").await;
    // Bounded by the channel, not by the store.
    assert!(produced.load(Ordering::SeqCst) < 1000, "{}", produced.load(Ordering::SeqCst));
}

/// A client that keeps its stream open but stops reading it does not hold the read (and so a
/// head's truncation) for ever: once no response has been taken for the timeout, the stream
/// ends with DeadlineExceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off() {
    let options = ServerOptions { stalled_client_timeout: Duration::from_millis(300), ..ServerOptions::default() };
    let (server, produced, dropped) = endless_server(options).await;
    let mut client = server.client().await;
    let mut stream = client.series(series_request(vec![eq("__name__", "m")])).await.unwrap().into_inner();
    for _ in 0..3 {
        within(10, "a series", stream.message()).await.unwrap().unwrap();
    }
    // Still open, no longer read: the transport's windows and the channel fill, then the wait.
    wait_read_ended(&server, &produced, &dropped, "DeadlineExceeded").await;
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_is_unavailable() {
    let mem = Arc::new(MemStorage::new(up_series()));
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    let mut registry = Registry::default();
    let api = StoreApi::new(local_store(mem), ServerOptions::default(), ServerMetrics::new(&mut registry))
        .with_readiness(Arc::new(move || flag.load(Ordering::SeqCst)));
    let server = Server::serve(api, registry).await;
    let mut client = server.client().await;
    let req = series_request(vec![eq("__name__", "up")]);
    assert_eq!(series(&mut client, req.clone()).await.unwrap_err().code(), Code::Unavailable);
    let mut info = InfoClient::new(server.channel().await);
    assert_eq!(info.info(InfoRequest {}).await.unwrap_err().code(), Code::Unavailable);
    ready.store(true, Ordering::SeqCst);
    assert_eq!(series(&mut client, req).await.unwrap().series.len(), 100);
    assert!(info.info(InfoRequest {}).await.is_ok());
}
