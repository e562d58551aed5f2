//! A [`Store`] over a `thanos.Store` gRPC endpoint (a Thanos or strata receiver, store, sidecar,
//! ruler or querier), as Thanos's querier reads one.
//!
//! The connection is made lazily and kept. [`Storage::select`] sends the `SeriesRequest` (the
//! tenant as `thanos-tenant` metadata, `response_batch_size` 64) and returns at once a set that
//! yields series as frames arrive: a task on the runtime reads the stream into a bounded channel
//! the set reads from, and dropping the set (or cancelling the read) cancels the call. Each
//! series is checked: strictly after the one before, chunks in time order (overlapping ones from
//! a peer that sends them are merged, as the read interface wants them apart). Warning frames
//! become the set's warnings, named after the store (or an error under `Abort`, as Thanos's
//! proxy does); hints are read and left.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use strata_proto::thanos as pb;
use strata_proto::thanos::info::info_client::InfoClient;
use strata_proto::thanos::info::InfoRequest;
use strata_proto::thanos::store_client::StoreClient;
use strata_storage::{
    LabelsAnswer, LabelsRequest, PartialResponse, SelectRequest, SeriesChunks, SeriesSet, Storage, StorageError,
    Warnings,
};
use strata_tsdb::labels::Labels;
use strata_tsdb::querier::merge_chunks;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::convert::{
    error_from_status, info_from_proto, label_names_request_to_proto, label_values_request_to_proto,
    select_request_to_proto, series_from_proto, TENANT_METADATA_KEY,
};
use crate::{Component, Store, StoreInfo};

/// Series per `SeriesResponse` asked of the store, as Thanos's querier asks.
pub const RESPONSE_BATCH_SIZE: i64 = 64;

/// Responses read ahead of the reader.
const READ_AHEAD: usize = 4;

/// How a remote store connects and calls.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long an Info call may take (Thanos's `--endpoint.info-timeout`).
    pub info_timeout: Duration,
    /// The largest message accepted from the store (Thanos's querier takes up to 2^31-1 bytes).
    pub max_message_size: usize,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            connect_timeout: Duration::from_secs(5),
            info_timeout: Duration::from_secs(5),
            max_message_size: i32::MAX.unsigned_abs() as usize,
        }
    }
}

/// Why a remote store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("endpoint {address:?}: {message}")]
    InvalidAddress { address: String, message: String },
    #[error("a remote store must be made inside a tokio runtime, which runs its calls")]
    NoRuntime,
}

/// A `thanos.Store` endpoint as a [`Store`]. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RemoteStore {
    inner: Arc<Inner>,
    /// Trips every call made through this handle (see [`Store::with_cancel`]).
    cancel: Option<CancellationToken>,
}

struct Inner {
    address: String,
    store: StoreClient<Channel>,
    info: InfoClient<Channel>,
    runtime: Handle,
    options: RemoteOptions,
    last_info: RwLock<Option<StoreInfo>>,
}

/// What a series-reading task sends: the checked series of one response (sent together, so
/// that a reader wakes once per response rather than once per series) or an error, then `None`
/// at the clean end of the stream (a channel closed without it means the task died).
type Frame = Option<Result<Vec<SeriesChunks>, StorageError>>;

impl RemoteStore {
    /// A store at `address` (`host:port`, or a URI with its scheme). Nothing is dialled until the
    /// first call; must be called inside a tokio runtime, which then runs every call.
    pub fn connect_lazy(address: &str, options: RemoteOptions) -> Result<Self, ConnectError> {
        let runtime = Handle::try_current().map_err(|_| ConnectError::NoRuntime)?;
        let uri = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| ConnectError::InvalidAddress { address: address.to_owned(), message: e.to_string() })?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true);
        let channel = {
            let _entered = runtime.enter();
            endpoint.connect_lazy()
        };
        let store = StoreClient::new(channel.clone()).max_decoding_message_size(options.max_message_size);
        let info = InfoClient::new(channel).max_decoding_message_size(options.max_message_size);
        let inner = Inner { address: address.to_owned(), store, info, runtime, options, last_info: RwLock::new(None) };
        Ok(RemoteStore { inner: Arc::new(inner), cancel: None })
    }

    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// Asks the store's Info (within the info timeout), keeps the answer for [`Store::info`]
    /// and returns it. An endpoint that answers without a StoreAPI section is an error: it has
    /// nothing to read.
    pub async fn refresh_info(&self) -> Result<StoreInfo, StorageError> {
        let address = &self.inner.address;
        let mut client = self.inner.info.clone();
        let timeout = self.inner.options.info_timeout;
        let answer = match tokio::time::timeout(timeout, client.info(InfoRequest {})).await {
            Err(_) => return Err(StorageError::Unavailable(format!("store {address}: no Info answer in {timeout:?}"))),
            Ok(Err(status)) => return Err(error_from_status(address, &status)),
            Ok(Ok(answer)) => answer.into_inner(),
        };
        let Some(info) = info_from_proto(&answer) else {
            return Err(StorageError::Unavailable(format!(
                "store {address}: its Info has no StoreAPI (component {:?})",
                answer.component_type
            )));
        };
        *self.inner.last_info.write() = Some(info.clone());
        Ok(info)
    }

    /// The last Info answer, if any.
    pub fn last_info(&self) -> Option<StoreInfo> {
        self.inner.last_info.read().clone()
    }

    /// A token for one call: tripped when the call's handle is, or when its guard is dropped.
    fn call_token(&self) -> CancellationToken {
        self.cancel.as_ref().map_or_else(CancellationToken::new, CancellationToken::child_token)
    }

    /// `message` as a request for the store: the tenant, if any, in its metadata.
    fn request<T>(&self, message: T, tenant: Option<&str>) -> Result<tonic::Request<T>, StorageError> {
        let mut request = tonic::Request::new(message);
        if let Some(tenant) = tenant {
            let value = MetadataValue::try_from(tenant).map_err(|_| {
                StorageError::InvalidArgument(format!("tenant {tenant:?} cannot be sent as gRPC metadata"))
            })?;
            request.metadata_mut().insert(TENANT_METADATA_KEY, value);
        }
        Ok(request)
    }

    /// Runs one unary call on the runtime and waits for it on this thread, unless cancelled.
    fn call<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, StorageError>> + Send + 'static,
    ) -> Result<T, StorageError> {
        let cancel = self.call_token();
        let _guard = cancel.clone().drop_guard();
        let address = self.inner.address.clone();
        let (tx, rx) = oneshot::channel();
        self.inner.runtime.spawn(async move {
            let result = tokio::select! {
                () = cancel.cancelled() => Err(cancelled(&address)),
                result = call => result,
            };
            let _ = tx.send(result);
        });
        // Not tokio's blocking_recv: that one panics when a caller blocks inside the runtime.
        futures::executor::block_on(rx).unwrap_or_else(|_| Err(stopped(&self.inner.address)))
    }

    /// The label answer of a call: sorted, without duplicates, its warnings named after the store.
    fn labels_answer(&self, mut values: Vec<String>, warnings: Vec<String>) -> LabelsAnswer {
        values.sort_unstable();
        values.dedup();
        let address = &self.inner.address;
        LabelsAnswer { values, warnings: warnings.into_iter().map(|w| format!("store {address}: {w}")).collect() }
    }
}

fn cancelled(address: &str) -> StorageError {
    StorageError::Unavailable(format!("store {address}: read cancelled"))
}

fn stopped(address: &str) -> StorageError {
    StorageError::Unavailable(format!("store {address}: the stream stopped before its end"))
}

impl Storage for RemoteStore {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        let request = self.request(select_request_to_proto(req, RESPONSE_BATCH_SIZE), req.scope.tenant.as_deref())?;
        let cancel = self.call_token();
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let warnings = Warnings::default();
        let reader = SeriesReader {
            address: self.inner.address.clone(),
            partial: req.scope.partial_response,
            warnings: warnings.clone(),
            prev: None,
        };
        let client = self.inner.store.clone();
        let token = cancel.clone();
        self.inner.runtime.spawn(async move {
            let address = reader.address.clone();
            tokio::select! {
                () = token.cancelled() => {
                    // The reader may be gone or its buffer full: then the channel's closing
                    // without an end tells it.
                    let _ = tx.try_send(Some(Err(cancelled(&address))));
                }
                () = reader.read(client, request, &tx) => {}
            }
        });
        let address = self.inner.address.clone();
        let series =
            RemoteSeries { rx, address, buffered: Vec::new().into_iter(), done: false, _cancel: cancel.drop_guard() };
        Ok(SeriesSet::with_warnings(series, warnings))
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let request = self.request(label_names_request_to_proto(req), req.scope.tenant.as_deref())?;
        let (mut client, address) = (self.inner.store.clone(), self.inner.address.clone());
        let answer = self.call(async move {
            client.label_names(request).await.map(|a| a.into_inner()).map_err(|s| error_from_status(&address, &s))
        })?;
        let mut answer = self.labels_answer(answer.names, answer.warnings);
        req.truncate(&mut answer.values);
        Ok(answer)
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let request = self.request(label_values_request_to_proto(name, req), req.scope.tenant.as_deref())?;
        let (mut client, address) = (self.inner.store.clone(), self.inner.address.clone());
        let answer = self.call(async move {
            client.label_values(request).await.map(|a| a.into_inner()).map_err(|s| error_from_status(&address, &s))
        })?;
        let mut answer = self.labels_answer(answer.values, answer.warnings);
        req.truncate(&mut answer.values);
        Ok(answer)
    }
}

impl Store for RemoteStore {
    /// The last Info answer; before the first, one that prunes nothing.
    fn info(&self) -> StoreInfo {
        self.last_info().unwrap_or(StoreInfo {
            component: Component::Store,
            label_sets: Vec::new(),
            min_time: i64::MIN,
            max_time: i64::MAX,
            tsdb_infos: Vec::new(),
        })
    }

    fn with_cancel(&self, cancel: CancellationToken) -> Option<Arc<dyn Store>> {
        Some(Arc::new(RemoteStore { inner: self.inner.clone(), cancel: Some(cancel) }))
    }
}

/// Turns the frames of one `Series` stream into checked series.
struct SeriesReader {
    address: String,
    partial: PartialResponse,
    warnings: Warnings,
    /// The labels of the last series, which the next must follow.
    prev: Option<Labels>,
}

impl SeriesReader {
    async fn read(
        mut self,
        mut client: StoreClient<Channel>,
        request: tonic::Request<pb::SeriesRequest>,
        tx: &mpsc::Sender<Frame>,
    ) {
        let mut stream = match client.series(request).await {
            Ok(answer) => answer.into_inner(),
            Err(status) => {
                let _ = tx.send(Some(Err(error_from_status(&self.address, &status)))).await;
                return;
            }
        };
        loop {
            let frame = match stream.message().await {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    let _ = tx.send(None).await;
                    return;
                }
                Err(status) => {
                    let _ = tx.send(Some(Err(error_from_status(&self.address, &status)))).await;
                    return;
                }
            };
            let series = match frame.result {
                Some(pb::series_response::Result::Series(s)) => vec![s],
                Some(pb::series_response::Result::Batch(b)) => b.series,
                Some(pb::series_response::Result::Warning(w)) => {
                    let w = format!("store {}: {w}", self.address);
                    if self.partial == PartialResponse::Abort {
                        let _ = tx.send(Some(Err(StorageError::Unavailable(w)))).await;
                        return;
                    }
                    self.warnings.add(w);
                    continue;
                }
                // Hints (which blocks a store read) are for tracing only; an empty frame carries
                // nothing.
                Some(pb::series_response::Result::Hints(_)) | None => continue,
            };
            let mut checked = Vec::with_capacity(series.len());
            let mut failed = None;
            for s in series {
                match self.check(s, checked.last().map(|s: &SeriesChunks| &s.labels).or(self.prev.as_ref())) {
                    Ok(s) => checked.push(s),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(last) = checked.last() {
                self.prev = Some(last.labels.clone());
                if tx.send(Some(Ok(checked))).await.is_err() {
                    return;
                }
            }
            if let Some(e) = failed {
                let _ = tx.send(Some(Err(e))).await;
                return;
            }
        }
    }

    /// A series from the wire, if it follows `prev`; its chunks sorted, identical copies
    /// dropped and overlapping ones merged when the store sent them otherwise.
    fn check(&self, s: pb::Series, prev: Option<&Labels>) -> Result<SeriesChunks, StorageError> {
        let address = &self.address;
        let mut series = series_from_proto(s, address)?;
        if let Some(prev) = prev {
            if *prev >= series.labels {
                return Err(StorageError::Unavailable(format!(
                    "store {address}: series {} after {prev}: not in label order",
                    series.labels
                )));
            }
        }
        if let Some(c) = series.chunks.iter().find(|c| c.min_time > c.max_time) {
            return Err(StorageError::Unavailable(format!(
                "store {address}: series {}: chunk [{}, {}] ends before it starts",
                series.labels, c.min_time, c.max_time
            )));
        }
        if series.chunks.windows(2).any(|w| w[1].min_time <= w[0].max_time) {
            series.chunks = merge_chunks(std::mem::take(&mut series.chunks))
                .map_err(|e| StorageError::Unavailable(format!("store {address}: series {}: {e}", series.labels)))?;
        }
        Ok(series)
    }
}

/// The series of a remote read, as its task receives them.
struct RemoteSeries {
    rx: mpsc::Receiver<Frame>,
    address: String,
    /// The rest of the last response.
    buffered: std::vec::IntoIter<SeriesChunks>,
    done: bool,
    _cancel: DropGuard,
}

impl Iterator for RemoteSeries {
    type Item = Result<SeriesChunks, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(series) = self.buffered.next() {
                return Some(Ok(series));
            }
            if self.done {
                return None;
            }
            // Not tokio's blocking_recv: that one panics when a caller blocks inside the runtime.
            match futures::executor::block_on(self.rx.recv()) {
                Some(Some(Ok(batch))) => self.buffered = batch.into_iter(),
                Some(Some(Err(e))) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(None) => self.done = true,
                None => {
                    self.done = true;
                    return Some(Err(stopped(&self.address)));
                }
            }
        }
    }
}
