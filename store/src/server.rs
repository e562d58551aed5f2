//! The gRPC server of the StoreAPI (`thanos.Store`: Series, LabelNames, LabelValues) and of
//! `thanos.info.Info`, over any [`Store`].
//!
//! Series are streamed as they are read: the store's set runs on a blocking thread and feeds a
//! bounded channel that the response drains, so an answer is never held whole, a slow client
//! holds a channel rather than a runtime thread, and a client that goes away (the response is
//! dropped) stops the read at the next series. Chunk bytes go out as the store holds them.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use prost::Message;
use strata_proto::thanos as pb;
use strata_proto::thanos::info as infopb;
use strata_proto::thanos::info::info_server::{Info, InfoServer};
use strata_proto::thanos::store_server::{Store as StoreRpc, StoreServer};
use strata_storage::{Aggr, Limit, SeriesChunks, SeriesSet, StorageError};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use crate::convert::{
    info_to_proto, labels_request_from_proto, select_request_from_proto, series_to_proto, status_from_error,
    TENANT_METADATA_KEY,
};
use crate::{no_matchers_error, Store};

/// Responses of one Series call that may wait in the channel for a slow client.
const CHANNEL_RESPONSES: usize = 16;

/// Longer than a query's default timeout in Thanos (2m), so no query still being read is cut.
const STALLED_CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

/// A batch of series is sent once it is this large even if it has fewer series than the client
/// asked for, so that a huge `response_batch_size` cannot make the server hold a whole answer.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Thanos's buckets for `grpc_server_handling_seconds`.
const HANDLING_BUCKETS: [f64; 14] = [0.001, 0.01, 0.1, 0.3, 0.6, 1., 3., 6., 9., 20., 30., 60., 90., 120.];

/// Limits on one Series answer; 0 disables a limit. A read that would exceed one ends with
/// `ResourceExhausted` naming the limit and its value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesLimits {
    pub series: u64,
    /// Samples, counted from the chunk headers.
    pub samples: u64,
    /// Bytes of chunk data.
    pub chunk_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub limits: SeriesLimits,
    /// Largest request message accepted (after decompression); a larger one gets
    /// `OutOfRange` from tonic (`ResourceExhausted` when it is over only once decompressed)
    /// and the server goes on.
    pub max_request_bytes: usize,
    /// Series calls answered at once; more wait for one to finish (Thanos's
    /// `--store.grpc.series-max-concurrency`). 0 = no limit.
    pub max_concurrent_series: usize,
    /// How long a Series() stream may wait for its client to take a response before it is
    /// ended with `DeadlineExceeded`: a client that stops reading would otherwise hold the
    /// read, and a head's truncation waits for the reads of its range to end.
    pub stalled_client_timeout: Duration,
}

impl Default for ServerOptions {
    /// No answer limits; requests up to 32 MiB (long regex matchers fit; tonic's default of
    /// 4 MiB is below what Thanos accepts).
    fn default() -> Self {
        ServerOptions {
            limits: SeriesLimits::default(),
            max_request_bytes: 32 << 20,
            max_concurrent_series: 0,
            stalled_client_timeout: STALLED_CLIENT_TIMEOUT,
        }
    }
}

/// Whether the process can answer reads yet (a receiver replays its WALs first).
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// Why the process cannot answer reads now, `None` when it can (a sidecar whose Prometheus has
/// no external labels says what to set).
pub type NotReadyReason = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The StoreAPI and Info services over one store, ready to be served.
#[derive(Clone)]
pub struct StoreApi {
    store: Arc<dyn Store>,
    options: ServerOptions,
    metrics: ServerMetrics,
    ready: Option<NotReadyReason>,
    /// Permits for Series calls when their concurrency is limited.
    series_gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl StoreApi {
    pub fn new(store: Arc<dyn Store>, options: ServerOptions, metrics: ServerMetrics) -> Self {
        let series_gate = (options.max_concurrent_series > 0)
            .then(|| Arc::new(tokio::sync::Semaphore::new(options.max_concurrent_series)));
        StoreApi { store, options, metrics, ready: None, series_gate }
    }

    /// Answers every call with `Unavailable` while `ready` says no.
    pub fn with_readiness(self, ready: Readiness) -> Self {
        self.with_not_ready_reason(Arc::new(move || (!ready()).then(|| "not ready".to_owned())))
    }

    /// Answers every call with `Unavailable` and the reason while `reason` gives one.
    pub fn with_not_ready_reason(self, reason: NotReadyReason) -> Self {
        StoreApi { ready: Some(reason), ..self }
    }

    /// The `thanos.Store` and `thanos.info.Info` services, to serve alone or beside others.
    /// Requests compressed with gzip or zstd are accepted; answers go out uncompressed, as
    /// Thanos's servers send them unless the request was compressed.
    pub fn routes(&self) -> Routes {
        let max = self.options.max_request_bytes;
        let store = StoreServer::new(self.clone())
            .max_decoding_message_size(max)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        let info = InfoServer::new(self.clone()).max_decoding_message_size(max);
        Routes::new(store).add_service(info)
    }

    /// Serves on `listener` until `shutdown` completes, then lets calls in flight finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_routes(self.routes())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }

    fn check_ready(&self) -> Result<(), Status> {
        match self.ready.as_ref().and_then(|reason| reason()) {
            Some(reason) => Err(Status::unavailable(reason)),
            None => Ok(()),
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

/// The tenant of a call: Thanos's `thanos-tenant` metadata, when present and not empty.
fn tenant(metadata: &MetadataMap) -> Option<String> {
    metadata.get(TENANT_METADATA_KEY).and_then(|v| v.to_str().ok()).filter(|t| !t.is_empty()).map(str::to_owned)
}

/// Runs a store call on a blocking thread; storage reads may do I/O.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| status_from_error(&e)),
        Err(e) => Err(Status::internal(format!("store read task failed: {e}"))),
    }
}

#[tonic::async_trait]
impl StoreRpc for StoreApi {
    type SeriesStream = ReceiverStream<Result<pb::SeriesResponse, Status>>;

    async fn series(&self, request: Request<pb::SeriesRequest>) -> Result<Response<Self::SeriesStream>, Status> {
        let call = self.metrics.start(Method::Series);
        // Held until the answer is streamed; the gate is never closed, so acquiring only waits.
        let permit = match &self.series_gate {
            Some(gate) => gate.clone().acquire_owned().await.ok(),
            None => None,
        };
        let started = async {
            self.check_ready()?;
            let tenant = tenant(request.metadata());
            let r = request.into_inner();
            let req = select_request_from_proto(&r, tenant).map_err(|e| status_from_error(&e))?;
            if req.matchers.is_empty() {
                return Err(status_from_error(&no_matchers_error()));
            }
            let store = self.store();
            // Errors found before the first series (a bad matcher, a failed index read) are the
            // call's status rather than a failed stream.
            let aggregates = req.aggregates.clone();
            let set = blocking(move || store.select(&req)).await?;
            Ok((set, r.response_batch_size, aggregates))
        };
        let (set, batch, aggregates) = match started.await {
            Ok(v) => v,
            Err(status) => {
                call.finish(status.code());
                return Err(status);
            }
        };
        let (tx, rx) = mpsc::channel(CHANNEL_RESPONSES);
        let limits = self.options.limits;
        let sent = self.metrics.sent(Method::Series);
        let sender =
            Sender { tx, runtime: tokio::runtime::Handle::current(), stall: self.options.stalled_client_timeout };
        tokio::task::spawn_blocking(move || {
            let code = stream_series(set, &sender, batch, &aggregates, limits, &sent);
            drop(permit);
            call.finish(code);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn label_names(
        &self,
        request: Request<pb::LabelNamesRequest>,
    ) -> Result<Response<pb::LabelNamesResponse>, Status> {
        let call = self.metrics.start(Method::LabelNames);
        let answer = async {
            self.check_ready()?;
            let tenant = tenant(request.metadata());
            let r = request.into_inner();
            let req = labels_request_from_proto((&r).into(), tenant).map_err(|e| status_from_error(&e))?;
            let store = self.store();
            let answer = blocking(move || store.label_names(&req)).await?;
            Ok(Response::new(pb::LabelNamesResponse { names: answer.values, warnings: answer.warnings, hints: None }))
        }
        .await;
        call.finish_unary(answer)
    }

    async fn label_values(
        &self,
        request: Request<pb::LabelValuesRequest>,
    ) -> Result<Response<pb::LabelValuesResponse>, Status> {
        let call = self.metrics.start(Method::LabelValues);
        let answer = async {
            self.check_ready()?;
            let tenant = tenant(request.metadata());
            let r = request.into_inner();
            if r.label.is_empty() {
                return Err(Status::invalid_argument("label name parameter cannot be empty"));
            }
            let req = labels_request_from_proto((&r).into(), tenant).map_err(|e| status_from_error(&e))?;
            let store = self.store();
            let answer = blocking(move || store.label_values(&r.label, &req)).await?;
            Ok(Response::new(pb::LabelValuesResponse { values: answer.values, warnings: answer.warnings, hints: None }))
        }
        .await;
        call.finish_unary(answer)
    }
}

#[tonic::async_trait]
impl Info for StoreApi {
    async fn info(&self, _request: Request<infopb::InfoRequest>) -> Result<Response<infopb::InfoResponse>, Status> {
        let call = self.metrics.start(Method::Info);
        let answer = self.check_ready().map(|()| Response::new(info_to_proto(&self.store.info())));
        call.finish_unary(answer)
    }
}

/// What one Series answer has used of the limits so far.
#[derive(Default)]
struct Tally {
    series: u64,
    samples: u64,
    chunk_bytes: u64,
}

impl Tally {
    /// Counts `s`; an error if that exceeds a limit.
    fn add(&mut self, s: &SeriesChunks, limits: &SeriesLimits) -> Result<(), StorageError> {
        self.series += 1;
        for c in &s.chunks {
            // From the chunk header (a downsampled chunk: its windows).
            let samples = c.encoding.num_samples(&c.data).unwrap_or(0);
            self.samples += u64::from(samples);
            self.chunk_bytes += c.data.len() as u64;
        }
        for (limit, max, used) in [
            (Limit::Series, limits.series, self.series),
            (Limit::Samples, limits.samples, self.samples),
            (Limit::ChunkBytes, limits.chunk_bytes, self.chunk_bytes),
        ] {
            if max > 0 && used > max {
                return Err(StorageError::LimitExceeded { limit, max });
            }
        }
        Ok(())
    }
}

/// A Series() stream's responses, handed over from the blocking thread that reads them.
struct Sender {
    tx: mpsc::Sender<Result<pb::SeriesResponse, Status>>,
    runtime: tokio::runtime::Handle,
    /// See [`ServerOptions::stalled_client_timeout`].
    stall: Duration,
}

impl Sender {
    /// Waits for room for `item`; the status code that ends the call if it cannot be sent.
    fn send(&self, item: Result<pb::SeriesResponse, Status>) -> Result<(), Code> {
        match self.runtime.block_on(tokio::time::timeout(self.stall, self.tx.send(item))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Code::Cancelled),
            Err(_) => {
                tracing::warn!(waited = ?self.stall, "a Series() client took no response for too long; ending its \
                    stream, which releases the data it was reading");
                Err(Code::DeadlineExceeded)
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Sends the series of `set` (one per response, or batches of up to `batch_size`; of
/// downsampled chunks the `aggregates` asked for), then its warnings; returns the call's status
/// code. Stops when the client has gone or stopped reading.
fn stream_series(
    mut set: SeriesSet,
    tx: &Sender,
    batch_size: i64,
    aggregates: &[Aggr],
    limits: SeriesLimits,
    sent: &Counter,
) -> Code {
    let send = |result: pb::series_response::Result| {
        let delivered = tx.send(Ok(pb::SeriesResponse { result: Some(result) }));
        if delivered.is_ok() {
            sent.inc();
        }
        delivered
    };
    let fail = |status: Status| {
        let code = status.code();
        // The client may be gone already; the code is the same either way.
        let _ = tx.send(Err(status));
        code
    };
    let batch_size = usize::try_from(batch_size).unwrap_or(0);
    let mut batch: Vec<pb::Series> = Vec::new();
    let mut batch_bytes = 0;
    let mut tally = Tally::default();
    for s in set.by_ref() {
        if tx.is_closed() {
            return Code::Cancelled;
        }
        let s = match s {
            Ok(s) => s,
            Err(e) => return fail(status_from_error(&e)),
        };
        if let Err(e) = tally.add(&s, &limits) {
            return fail(status_from_error(&e));
        }
        let series = match series_to_proto(s, aggregates) {
            Ok(series) => series,
            Err(e) => return fail(status_from_error(&e)),
        };
        if batch_size <= 1 {
            if let Err(code) = send(pb::series_response::Result::Series(series)) {
                return code;
            }
            continue;
        }
        batch_bytes += series.encoded_len();
        batch.push(series);
        if batch.len() >= batch_size || batch_bytes >= MAX_BATCH_BYTES {
            batch_bytes = 0;
            if let Err(code) =
                send(pb::series_response::Result::Batch(pb::SeriesBatch { series: std::mem::take(&mut batch) }))
            {
                return code;
            }
        }
    }
    if !batch.is_empty() {
        if let Err(code) = send(pb::series_response::Result::Batch(pb::SeriesBatch { series: batch })) {
            return code;
        }
    }
    for warning in set.warnings() {
        if let Err(code) = send(pb::series_response::Result::Warning(warning)) {
            return code;
        }
    }
    Code::Ok
}

/// The RPCs served, for metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Series,
    LabelNames,
    LabelValues,
    Info,
}

impl Method {
    const ALL: [Method; 4] = [Method::Series, Method::LabelNames, Method::LabelValues, Method::Info];

    fn service(self) -> &'static str {
        match self {
            Method::Info => "thanos.info.Info",
            _ => "thanos.Store",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Method::Series => "Series",
            Method::LabelNames => "LabelNames",
            Method::LabelValues => "LabelValues",
            Method::Info => "Info",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Method::Series => "server_stream",
            _ => "unary",
        }
    }

    fn labels(self) -> MetricLabels {
        vec![
            ("grpc_method", self.name().to_owned()),
            ("grpc_service", self.service().to_owned()),
            ("grpc_type", self.kind().to_owned()),
        ]
    }

    fn labels_with_code(self, code: Code) -> MetricLabels {
        let mut labels = vec![("grpc_code", code_name(code).to_owned())];
        labels.extend(self.labels());
        labels
    }
}

/// Go's names of the status codes, as go-grpc-prometheus puts them in `grpc_code`.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

const ALL_CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

type MetricLabels = Vec<(&'static str, String)>;

/// The server metrics of go-grpc-prometheus under its names and labels, as Thanos exports them
/// (with the handling-time histogram). Every method and code starts at zero, as there.
#[derive(Clone)]
pub struct ServerMetrics {
    started: Family<MetricLabels, Counter>,
    handled: Family<MetricLabels, Counter>,
    received: Family<MetricLabels, Counter>,
    sent: Family<MetricLabels, Counter>,
    handling: Family<MetricLabels, Histogram, fn() -> Histogram>,
}

impl ServerMetrics {
    /// The metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = ServerMetrics {
            started: Family::default(),
            handled: Family::default(),
            received: Family::default(),
            sent: Family::default(),
            handling: Family::new_with_constructor(|| Histogram::new(HANDLING_BUCKETS)),
        };
        // Help texts without a final period: the registry adds one.
        registry.register("grpc_server_started", "Total number of RPCs started on the server", m.started.clone());
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            m.handled.clone(),
        );
        registry.register(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server",
            m.received.clone(),
        );
        registry.register(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server",
            m.sent.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server",
            m.handling.clone(),
        );
        for method in Method::ALL {
            let labels = method.labels();
            // Creating a series is what exports it.
            drop(m.started.get_or_create(&labels));
            drop(m.received.get_or_create(&labels));
            drop(m.sent.get_or_create(&labels));
            drop(m.handling.get_or_create(&labels));
            for code in ALL_CODES {
                drop(m.handled.get_or_create(&method.labels_with_code(code)));
            }
        }
        m
    }

    fn start(&self, method: Method) -> Call {
        let labels = method.labels();
        self.started.get_or_create(&labels).inc();
        // Every call of these services carries one request message.
        self.received.get_or_create(&labels).inc();
        Call { metrics: self.clone(), method, start: Instant::now(), finished: false }
    }

    fn sent(&self, method: Method) -> Counter {
        self.sent.get_or_create(&method.labels()).clone()
    }
}

/// One call being served: counted as handled with its code when it finishes, or as canceled if
/// it is dropped first (the client went away).
struct Call {
    metrics: ServerMetrics,
    method: Method,
    start: Instant,
    finished: bool,
}

impl Call {
    fn finish(mut self, code: Code) {
        self.record(code);
    }

    /// Finishes a unary call with its answer, counting the response message.
    fn finish_unary<T>(self, answer: Result<Response<T>, Status>) -> Result<Response<T>, Status> {
        match &answer {
            Ok(_) => {
                self.metrics.sent(self.method).inc();
                self.finish(Code::Ok);
            }
            Err(status) => self.finish(status.code()),
        }
        answer
    }

    fn record(&mut self, code: Code) {
        if self.finished {
            return;
        }
        self.finished = true;
        let m = &self.metrics;
        m.handled.get_or_create(&self.method.labels_with_code(code)).inc();
        m.handling.get_or_create(&self.method.labels()).observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.record(Code::Cancelled);
    }
}
