//! Test peers of the remote store and the endpoint set: a minimal `thanos.Store` + `thanos.info.Info`
//! server over series in memory (with ways to misbehave) and a server of undecodable frames.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_proto::thanos as pb;
use strata_proto::thanos::info as infopb;
use strata_proto::thanos::info::info_server::{Info, InfoServer};
use strata_proto::thanos::store_server::{Store, StoreServer};
use strata_storage::{ChunkData, SeriesChunks};
use strata_store::convert::{labels_to_proto, series_to_proto, TENANT_METADATA_KEY};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::labels::Labels;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

pub fn chunk(samples: &[(i64, f64)]) -> ChunkData {
    let mut a = XorAppender::new();
    for &(t, v) in samples {
        a.append(t, v);
    }
    ChunkData {
        min_time: samples[0].0,
        max_time: samples[samples.len() - 1].0,
        encoding: Encoding::Xor,
        data: a.into_bytes().into(),
    }
}

/// `n` series `up{instance="host-NNN"}` with one chunk each.
pub fn up_series(n: usize) -> Vec<SeriesChunks> {
    (0..n)
        .map(|i| SeriesChunks {
            labels: Labels::from_pairs(&[("__name__", "up"), ("instance", &format!("host-{i:03}"))]),
            chunks: vec![chunk(&[(1000, i as f64), (2000, i as f64 + 1.0)])],
        })
        .collect()
}

/// How the test server answers `Series`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Everything, batched as asked, with a hints frame at the end.
    Answer,
    /// A warning frame first, then everything.
    WarnFirst,
    /// The series in reverse order.
    Unsorted,
    /// This many series, then nothing until the call is cancelled.
    HangAfter(usize),
    /// This many series, then an Unavailable status.
    FailAfter(usize),
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub tenant: Option<String>,
    pub batch_size: i64,
    pub calls: usize,
    /// Series calls the client cancelled.
    pub cancelled: usize,
}

#[derive(Clone)]
pub struct TestStore {
    pub series: Arc<Vec<SeriesChunks>>,
    pub behaviour: Behaviour,
    pub info: infopb::InfoResponse,
    pub seen: Arc<Mutex<Seen>>,
}

impl TestStore {
    pub fn new(series: Vec<SeriesChunks>, behaviour: Behaviour, external: &[(&str, &str)]) -> Self {
        let info = infopb::InfoResponse {
            label_sets: vec![pb::ZLabelSet { labels: labels_to_proto(&Labels::from_pairs(external)) }],
            component_type: "receive".into(),
            store: Some(infopb::StoreInfo { min_time: 0, max_time: 10_000, ..Default::default() }),
            ..Default::default()
        };
        TestStore { series: Arc::new(series), behaviour, info, seen: Arc::default() }
    }

    fn record(&self, metadata: &tonic::metadata::MetadataMap) {
        let mut seen = self.seen.lock();
        seen.calls += 1;
        seen.tenant = metadata.get(TENANT_METADATA_KEY).and_then(|v| v.to_str().ok()).map(str::to_owned);
    }
}

fn series_frame(s: &SeriesChunks) -> pb::SeriesResponse {
    pb::SeriesResponse {
        result: Some(pb::series_response::Result::Series(series_to_proto(s.clone(), &[]).expect("raw chunks"))),
    }
}

#[tonic::async_trait]
impl Store for TestStore {
    type SeriesStream = ReceiverStream<Result<pb::SeriesResponse, Status>>;

    async fn series(&self, request: Request<pb::SeriesRequest>) -> Result<Response<Self::SeriesStream>, Status> {
        self.record(request.metadata());
        let req = request.into_inner();
        self.seen.lock().batch_size = req.response_batch_size;
        let (tx, rx) = mpsc::channel(4);
        let (store, behaviour) = (self.clone(), self.behaviour);
        tokio::spawn(async move {
            let mut series: Vec<SeriesChunks> = store.series.to_vec();
            let send = |frame| {
                let tx = tx.clone();
                async move { tx.send(frame).await.is_ok() }
            };
            match behaviour {
                Behaviour::WarnFirst => {
                    if !send(Ok(pb::SeriesResponse {
                        result: Some(pb::series_response::Result::Warning("careful".into())),
                    }))
                    .await
                    {
                        return;
                    }
                }
                Behaviour::Unsorted => series.reverse(),
                Behaviour::HangAfter(n) | Behaviour::FailAfter(n) => {
                    for s in series.iter().take(n) {
                        if !send(Ok(series_frame(s))).await {
                            return;
                        }
                    }
                    if behaviour == Behaviour::FailAfter(n) {
                        let _ = tx.send(Err(Status::unavailable("the disk is on fire"))).await;
                    } else {
                        tx.closed().await;
                        store.seen.lock().cancelled += 1;
                    }
                    return;
                }
                Behaviour::Answer => {}
            }
            let batch = usize::try_from(req.response_batch_size).unwrap_or(1).max(1);
            for part in series.chunks(batch) {
                let frame = if part.len() == 1 {
                    series_frame(&part[0])
                } else {
                    pb::SeriesResponse {
                        result: Some(pb::series_response::Result::Batch(pb::SeriesBatch {
                            series: part.iter().map(|s| series_to_proto(s.clone(), &[]).expect("raw chunks")).collect(),
                        })),
                    }
                };
                if !send(Ok(frame)).await {
                    return;
                }
            }
            let hints = prost_types::Any {
                type_url: "type.googleapis.com/hintspb.SeriesResponseHints".into(),
                value: Vec::new(),
            };
            let _ = send(Ok(pb::SeriesResponse { result: Some(pb::series_response::Result::Hints(hints)) })).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn label_names(
        &self,
        request: Request<pb::LabelNamesRequest>,
    ) -> Result<Response<pb::LabelNamesResponse>, Status> {
        self.record(request.metadata());
        let mut names: Vec<String> =
            self.series.iter().flat_map(|s| s.labels.iter().map(|(n, _)| n.to_owned()).collect::<Vec<_>>()).collect();
        names.sort();
        names.dedup();
        Ok(Response::new(pb::LabelNamesResponse { names, warnings: vec!["partial".into()], hints: None }))
    }

    async fn label_values(
        &self,
        request: Request<pb::LabelValuesRequest>,
    ) -> Result<Response<pb::LabelValuesResponse>, Status> {
        self.record(request.metadata());
        let label = request.into_inner().label;
        let mut values: Vec<String> =
            self.series.iter().filter_map(|s| s.labels.get(&label).map(str::to_owned)).collect();
        values.sort();
        values.dedup();
        Ok(Response::new(pb::LabelValuesResponse { values, warnings: Vec::new(), hints: None }))
    }
}

#[tonic::async_trait]
impl Info for TestStore {
    async fn info(&self, _: Request<infopb::InfoRequest>) -> Result<Response<infopb::InfoResponse>, Status> {
        Ok(Response::new(self.info.clone()))
    }
}

/// A running test server; stops when dropped or stopped.
pub struct Server {
    pub addr: String,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Serves `store` on `addr` (`127.0.0.1:0` for any port).
    pub async fn start(store: TestStore, addr: &str) -> Server {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(StoreServer::new(store.clone()))
                .add_service(InfoServer::new(store))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await;
        });
        Server { addr, stop: Some(stop), done: Some(done) }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A gRPC server that answers every call with one frame that is no protobuf message.
pub async fn garbage_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(socket).await else { return };
                while let Some(Ok((_request, mut respond))) = conn.accept().await {
                    let response = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap();
                    let Ok(mut body) = respond.send_response(response, false) else { return };
                    let payload = [0xffu8; 12];
                    let mut frame = vec![0u8];
                    frame.extend((payload.len() as u32).to_be_bytes());
                    frame.extend(payload);
                    let _ = body.send_data(frame.into(), false);
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let _ = body.send_trailers(trailers);
                }
            });
        }
    });
    addr
}
