//! Bad input over gRPC against a running `strata receive`: every malformed or hostile request
//! gets the status store/README.md documents, and nothing else changes: afterwards the Series,
//! LabelNames and Info answers are exactly what they were before.
//! - Frames that do not decode (a body shorter than its announced length, a header cut short,
//!   garbage bytes, the compressed flag without an encoding): `Internal`, as grpc-go answers.
//! - Messages over the 32 MiB request limit: `OutOfRange`; gzip-compressed ones that exceed it
//!   once decompressed: `ResourceExhausted`.
//! - Invalid matchers and regexes, unknown enum values (matcher type, aggregate, partial-response
//!   strategy), an inverted time range, a shard out of range, no matchers or only external-label
//!   matchers, a label-values call without a name: `InvalidArgument`.
//! - Huge or negative `limit` and a huge `response_batch_size`: answered in full.
//! - A connection that speaks no HTTP/2, and one that leaves in the middle of a request: dropped
//!   by the server alone.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{remote_write, strata_bin};
use http_body_util::BodyExt;
use strata_proto::prometheus as v1;
use strata_proto::thanos as pb;
use strata_proto::thanos::info::info_client::InfoClient;
use strata_proto::thanos::info::InfoRequest;
use strata_proto::thanos::store_client::StoreClient;
use strata_testkit::{http, Fleet, Node};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic::Code;
use tower::{Service, ServiceExt};

/// The server's request limit (`ServerOptions::max_request_bytes`).
const MAX_REQUEST: usize = 32 << 20;
const SERIES: usize = 20;

fn eq(name: &str, value: &str) -> pb::LabelMatcher {
    matcher(pb::label_matcher::Type::Eq, name, value)
}

fn matcher(t: pb::label_matcher::Type, name: &str, value: &str) -> pb::LabelMatcher {
    pb::LabelMatcher { r#type: t as i32, name: name.into(), value: value.into() }
}

fn series_request(matchers: Vec<pb::LabelMatcher>) -> pb::SeriesRequest {
    pb::SeriesRequest { min_time: 0, max_time: i64::MAX, matchers, ..pb::SeriesRequest::default() }
}

/// The series of a Series call, in order, with their chunks.
async fn series(client: &mut StoreClient<Channel>, req: pb::SeriesRequest) -> Result<Vec<pb::Series>, tonic::Status> {
    let mut stream = client.series(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(resp) = stream.message().await? {
        match resp.result {
            Some(pb::series_response::Result::Series(s)) => out.push(s),
            Some(pb::series_response::Result::Batch(b)) => out.extend(b.series),
            Some(pb::series_response::Result::Warning(w)) => panic!("warning {w}"),
            other => panic!("unexpected response {other:?}"),
        }
    }
    Ok(out)
}

/// A gRPC frame: the compressed flag, `len` announced, `body` sent.
fn frame(compressed: bool, len: u32, body: &[u8]) -> Vec<u8> {
    let mut f = vec![u8::from(compressed)];
    f.extend(len.to_be_bytes());
    f.extend(body);
    f
}

/// Sends `body` as the whole request body of a gRPC call to `path`; the status answered.
async fn raw_call(channel: &mut Channel, path: &str, body: Vec<u8>) -> (Code, String) {
    let req = tonic::codegen::http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(body))))
        .expect("request");
    let resp = channel.ready().await.expect("channel").call(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let status = match tonic::Status::from_header_map(&parts.headers) {
        Some(s) => s,
        None => {
            let trailers = body.collect().await.expect("body").trailers().cloned().expect("trailers");
            tonic::Status::from_header_map(&trailers).expect("grpc-status")
        }
    };
    (status.code(), status.message().to_owned())
}

/// What a client can see of the store: every series, the label names, the Info.
async fn snapshot(channel: &Channel) -> (Vec<pb::Series>, Vec<String>, strata_proto::thanos::info::InfoResponse) {
    let mut store = StoreClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
    let all = series(&mut store, series_request(vec![matcher(pb::label_matcher::Type::Re, "__name__", ".+")]))
        .await
        .expect("series");
    let names = store.label_names(pb::LabelNamesRequest::default()).await.expect("label names").into_inner().names;
    let info = InfoClient::new(channel.clone()).info(InfoRequest {}).await.expect("info").into_inner();
    (all, names, info)
}

#[test]
fn bad_grpc_input_gets_its_status_and_changes_nothing() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let slot = fleet.slot("receive");
    let mut args = slot.receive_args();
    args.push("--label=replica=\"r0\"".into());
    let receive = Node::start(strata_bin(), &slot, args);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    let timeseries = (0..SERIES)
        .map(|i| v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: "input_up".into() },
                v1::Label { name: "instance".into(), value: format!("i{i:02}") },
            ],
            samples: (0..10).map(|k| v1::Sample { value: k as f64, timestamp: now - 60_000 + k * 5_000 }).collect(),
            ..Default::default()
        })
        .collect();
    remote_write(&slot.remote_write, "/api/v1/receive", &v1::WriteRequest { timeseries, metadata: Vec::new() });

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let channel =
            Channel::from_shared(format!("http://{}", slot.grpc)).expect("uri").connect().await.expect("dial");
        let before = snapshot(&channel).await;
        assert_eq!(before.0.len(), SERIES);
        let mut store = StoreClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
        let up = || series_request(vec![eq("__name__", "input_up")]);

        // Frames that do not decode, and messages over the limit.
        let mut raw = channel.clone();
        let huge = frame(false, MAX_REQUEST as u32 + 1, &vec![0; MAX_REQUEST + 1]);
        for (name, body, want) in [
            ("body shorter than announced", frame(false, 100, &[1, 2, 3]), Code::Internal),
            ("header cut short", vec![0, 0, 0], Code::Internal),
            ("garbage message", frame(false, 3, &[0xff, 0xff, 0xff]), Code::Internal),
            ("compressed flag without an encoding", frame(true, 3, &[1, 2, 3]), Code::Internal),
            ("oversized message", huge, Code::OutOfRange),
        ] {
            for path in [
                "/thanos.Store/Series",
                "/thanos.Store/LabelNames",
                "/thanos.Store/LabelValues",
                "/thanos.info.Info/Info",
            ] {
                let (code, message) = raw_call(&mut raw, path, body.clone()).await;
                assert_eq!(code, want, "{name} to {path}: {message}");
            }
        }
        // Over the limit once decompressed (40 MiB of one matcher value, gzip-compressed):
        // tonic's decompression answers ResourceExhausted.
        let mut gzip = StoreClient::new(channel.clone()).send_compressed(CompressionEncoding::Gzip);
        let bomb = series_request(vec![eq("__name__", "input_up"), eq("job", &"x".repeat(40 << 20))]);
        let status = series(&mut gzip, bomb).await.expect_err("over the limit");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        // A compressed request within the limit is answered.
        assert_eq!(series(&mut gzip, up()).await.expect("gzip request").len(), SERIES);

        // Requests that decode but make no sense.
        let re = |v: &str| matcher(pb::label_matcher::Type::Re, "instance", v);
        let nre = |v: &str| matcher(pb::label_matcher::Type::Nre, "instance", v);
        let with = |m: pb::LabelMatcher| series_request(vec![eq("__name__", "input_up"), m]);
        let cases = [
            ("unclosed group", with(re("(i0")), None),
            ("bad repetition", with(nre("*")), None),
            ("bad escape", with(re(r"\k")), None),
            ("unknown matcher type", with(pb::LabelMatcher { r#type: 7, name: "a".into(), value: "b".into() }), None),
            ("unknown aggregate", pb::SeriesRequest { aggregates: vec![9], ..up() }, None),
            ("unknown strategy", pb::SeriesRequest { partial_response_strategy: 5, ..up() }, None),
            ("inverted range", pb::SeriesRequest { min_time: 10, max_time: 1, ..up() }, None),
            (
                "shard out of range",
                pb::SeriesRequest {
                    shard_info: Some(pb::ShardInfo { shard_index: 5, total_shards: 2, ..Default::default() }),
                    ..up()
                },
                None,
            ),
            ("no matchers", series_request(vec![]), Some("no matchers specified (excluding external labels)")),
            (
                "only external matchers",
                series_request(vec![eq("replica", "r0"), eq("tenant_id", "default-tenant")]),
                Some("no matchers specified (excluding external labels)"),
            ),
        ];
        for (name, req, message) in cases {
            let status = series(&mut store, req).await.expect_err(name);
            assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
            if let Some(m) = message {
                assert_eq!(status.message(), m, "{name}");
            }
        }
        let bad_names = pb::LabelNamesRequest { matchers: vec![re("[")], ..Default::default() };
        assert_eq!(store.label_names(bad_names).await.expect_err("bad regex").code(), Code::InvalidArgument);
        let no_name = store.label_values(pb::LabelValuesRequest::default()).await.expect_err("no label name");
        assert_eq!(
            (no_name.code(), no_name.message()),
            (Code::InvalidArgument, "label name parameter cannot be empty")
        );
        let bad_values =
            pb::LabelValuesRequest { label: "instance".into(), matchers: vec![nre("(")], ..Default::default() };
        assert_eq!(store.label_values(bad_values).await.expect_err("bad regex").code(), Code::InvalidArgument);

        // Huge and negative limits mean no limit; a huge batch size is answered in batches.
        for limit in [i64::MAX, -1, i64::MIN] {
            let got = series(&mut store, pb::SeriesRequest { limit, ..up() }).await.expect("huge limit");
            assert_eq!(got.len(), SERIES, "limit {limit}");
            let names = pb::LabelValuesRequest { label: "instance".into(), limit, ..Default::default() };
            assert_eq!(store.label_values(names).await.expect("label values").into_inner().values.len(), SERIES);
        }
        assert_eq!(series(&mut store, pb::SeriesRequest { limit: 3, ..up() }).await.expect("limit 3").len(), 3);
        let batched = pb::SeriesRequest { response_batch_size: i64::MAX, ..up() };
        assert_eq!(series(&mut store, batched).await.expect("huge batch").len(), SERIES);

        // A connection that is not HTTP/2, and one that leaves in the middle of a request.
        let mut junk = TcpStream::connect(&slot.grpc).expect("connect");
        let _ = junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\x00\xff");
        drop(junk);
        let mut cut = StoreClient::new(channel.clone());
        let half = cut.series(series_request(vec![eq("__name__", "input_up"), eq("job", &"y".repeat(8 << 20))]));
        // Dropped after the request started going out.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(20), half).await;

        // Nothing changed: the same answers as before, on the same connection and a new one.
        assert_eq!(snapshot(&channel).await, before);
        let fresh = Channel::from_shared(format!("http://{}", slot.grpc)).expect("uri").connect().await.expect("dial");
        assert_eq!(snapshot(&fresh).await, before);
    });

    // The server counted the requests it refused under their code (tonic refuses the frames
    // that do not decode before a handler runs: those are not counted).
    let (status, metrics) = http::get(receive.http(), "/metrics").expect("metrics");
    assert_eq!(status, 200);
    for method in ["Series", "LabelNames", "LabelValues"] {
        let labels = format!(r#"grpc_code="InvalidArgument",grpc_method="{method}""#);
        let line = metrics
            .lines()
            .find(|l| l.starts_with("grpc_server_handled_total{") && l.contains(&labels))
            .unwrap_or_else(|| panic!("no {labels} count in\n{metrics}"));
        let n: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        assert!(n >= 1.0, "{line}");
    }
}
