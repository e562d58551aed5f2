//! The proxy: one [`Store`] over many, remote or in process, with the semantics of Thanos's
//! `ProxyStore` (pkg/store/proxy.go, proxy_merge.go).
//!
//! A read goes to the stores that may answer it: those whose time range overlaps the request's,
//! whose external label sets do not contradict its matchers (Thanos's `labelSetsMatch`) and that
//! the request's store matchers (`storeMatch[]`) select. They are read concurrently, each on a
//! thread of its own that reads ahead into a bounded channel, and their sorted answers are merged
//! by [`merge_series_sets`] into one strictly sorted answer: series with equal labels from several
//! stores become one, identical chunks are kept once and overlapping different ones merged.
//!
//! A store that fails, or sends nothing for the response timeout, is cut off (its read is
//! cancelled). Under [`PartialResponse::Warn`] the answer goes on with the other stores and
//! carries a warning naming the store and the error; under [`PartialResponse::Abort`] the read
//! fails with that error. The query deadline ([`Proxy::with_deadline`]) fails the read under
//! either strategy.

use std::collections::BTreeSet;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_storage::{
    LabelsAnswer, LabelsRequest, PartialResponse, ReadScope, SelectRequest, SeriesChunks, SeriesSet, Storage,
    StorageError, Warnings,
};
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::Matcher;
use strata_tsdb::querier::{merge_series_sets, SeriesIter};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{Component, Store, StoreInfo, TsdbInfo};

/// Series a store's reader may hold before the merge takes them: enough to keep a store busy
/// while the merge waits on another, few enough to bound the memory of a slow reader.
const READ_AHEAD: usize = 64;

/// The warning of a read that no store may answer (Thanos's words).
pub const NO_STORES_MATCHED: &str = "No StoreAPIs matched for this query";

/// The label `storeMatch[]` matchers see a remote store's address under.
pub const ADDRESS_LABEL: &str = "__address__";

/// A store as a fan-out knows it.
#[derive(Clone)]
pub struct StoreRef {
    /// How warnings and errors name the store (a remote store's address).
    pub name: String,
    /// The gRPC address of a remote store, which `storeMatch[]` matches as `__address__`;
    /// `None` for a store in process.
    pub address: Option<String>,
    pub store: Arc<dyn Store>,
}

impl StoreRef {
    /// A store in the same process, named `name`.
    pub fn local(name: impl Into<String>, store: Arc<dyn Store>) -> Self {
        StoreRef { name: name.into(), address: None, store }
    }

    /// A store reached at `address`, named by it.
    pub fn remote(address: impl Into<String>, store: Arc<dyn Store>) -> Self {
        let address = address.into();
        StoreRef { name: address.clone(), address: Some(address), store }
    }

    /// Whether the store may hold series matching `matchers` in `[min_time, max_time]`, and is
    /// one of those `scope` asks for.
    fn may_answer(&self, info: &StoreInfo, min_time: i64, max_time: i64, matchers: &[Matcher], scope: &ReadScope) -> bool {
        min_time <= info.max_time
            && max_time >= info.min_time
            && label_sets_match(matchers, &info.label_sets)
            && self.store_matches(&scope.store_matchers, &info.label_sets)
    }

    /// Whether one of the matcher sets of `storeMatch[]` matches one of the store's label sets
    /// with `__address__` added (a store without labels has the address alone; one in process
    /// has no address). A label the store lacks is empty, as in a series selector.
    fn store_matches(&self, store_matchers: &[Vec<Matcher>], label_sets: &[Labels]) -> bool {
        if store_matchers.is_empty() {
            return true;
        }
        let with_address = |set: &Labels| {
            let mut pairs: Vec<(&str, &str)> = set.iter().filter(|(n, _)| *n != ADDRESS_LABEL).collect();
            if let Some(address) = &self.address {
                pairs.push((ADDRESS_LABEL, address));
            }
            Labels::from_pairs(&pairs)
        };
        let sets: Vec<Labels> = if label_sets.is_empty() {
            vec![with_address(&Labels::empty())]
        } else {
            label_sets.iter().map(with_address).collect()
        };
        store_matchers
            .iter()
            .any(|ms| sets.iter().any(|set| ms.iter().all(|m| m.matches(set.get(&m.name).unwrap_or("")))))
    }
}

/// Thanos's `labelSetsMatch`: whether a store with these external label sets may hold series
/// matching `matchers`. True when it has no label sets, or when in one of them no label that the
/// set has (with a value) contradicts a matcher on it.
pub fn label_sets_match(matchers: &[Matcher], sets: &[Labels]) -> bool {
    sets.is_empty()
        || sets
            .iter()
            .any(|set| matchers.iter().all(|m| set.get(&m.name).is_none_or(|v| v.is_empty() || m.matches(v))))
}

/// Where a proxy finds its stores, asked at every read: a fixed list, or the active endpoints
/// of an [`EndpointSet`](crate::endpoints::EndpointSet).
pub trait StoreSource: Send + Sync {
    fn stores(&self) -> Vec<StoreRef>;
}

impl StoreSource for Vec<StoreRef> {
    fn stores(&self) -> Vec<StoreRef> {
        self.clone()
    }
}

/// How a [`Proxy`] reads.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// What the proxy says it is in its Info (`query` for a querier).
    pub component: Component,
    /// How long to wait for a store's next series, or its label answer, before cutting it off
    /// (Thanos's `--store.response-timeout`); `None` waits as long as the store takes.
    pub response_timeout: Option<Duration>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions { component: Component::Query, response_timeout: None }
    }
}

/// One [`Store`] over the stores of a [`StoreSource`]. Cheap to clone: clones share the source.
#[derive(Clone)]
pub struct Proxy {
    source: Arc<dyn StoreSource>,
    options: Arc<ProxyOptions>,
    /// When reads of this handle must have ended; past it they fail.
    deadline: Option<Instant>,
    /// Trips every read of this handle (a proxy read through an outer fan-out).
    cancel: Option<CancellationToken>,
}

impl Proxy {
    pub fn new(source: Arc<dyn StoreSource>, options: ProxyOptions) -> Self {
        Proxy { source, options: Arc::new(options), deadline: None, cancel: None }
    }

    /// This proxy for the reads of one query that must end by `deadline` (its `--query.timeout`):
    /// a store still owing an answer then is cut off and the read fails.
    pub fn with_deadline(&self, deadline: Instant) -> Self {
        Proxy { deadline: Some(deadline), ..self.clone() }
    }

    /// The stores, with their Info, that may answer a read of `[min_time, max_time]` with
    /// `matchers` in `scope`.
    fn stores_for(&self, min_time: i64, max_time: i64, matchers: &[Matcher], scope: &ReadScope) -> Vec<StoreRef> {
        self.source
            .stores()
            .into_iter()
            .filter(|s| {
                let info = s.store.info();
                let ok = s.may_answer(&info, min_time, max_time, matchers, scope);
                if !ok {
                    tracing::debug!(store = %s.name, min_time, max_time, "store left out of the read");
                }
                ok
            })
            .collect()
    }

    /// A token for one read: tripped when the read ends, or with this handle's own.
    fn read_token(&self) -> CancellationToken {
        self.cancel.as_ref().map_or_else(CancellationToken::new, CancellationToken::child_token)
    }

    /// How long to wait now, and whether the wait ends at the deadline rather than at the
    /// response timeout; `None` to wait without end.
    fn wait(&self, since: Instant) -> Option<(Duration, bool)> {
        let now = Instant::now();
        let timeout = self.options.response_timeout.map(|t| (since + t).saturating_duration_since(now));
        let deadline = self.deadline.map(|d| d.saturating_duration_since(now));
        match (timeout, deadline) {
            (None, None) => None,
            (Some(t), None) => Some((t, false)),
            (None, Some(d)) => Some((d, true)),
            (Some(t), Some(d)) => Some(if d <= t { (d, true) } else { (t, false) }),
        }
    }

    /// Label names or values from every store that may answer, merged: the sorted union, cut to
    /// the limit, with the stores' warnings and those of the stores that failed (or the error).
    fn fan_out_labels(
        &self,
        req: &LabelsRequest,
        ask: impl Fn(&dyn Store) -> Result<LabelsAnswer, StorageError> + Send + Sync + 'static,
    ) -> Result<LabelsAnswer, StorageError> {
        let stores = self.stores_for(req.min_time, req.max_time, &req.matchers, &req.scope);
        let cancel = self.read_token();
        let _guard = cancel.clone().drop_guard();
        let ask = Arc::new(ask);
        let (tx, rx) = mpsc::channel();
        for (i, s) in stores.iter().enumerate() {
            let store = s.store.with_cancel(cancel.clone()).unwrap_or_else(|| s.store.clone());
            let spawned = std::thread::Builder::new().name("strata-proxy".into()).spawn({
                let (tx, ask) = (tx.clone(), ask.clone());
                move || {
                    let _ = tx.send((i, ask(store.as_ref())));
                }
            });
            if let Err(e) = spawned {
                let _ = tx.send((i, Err(StorageError::Unavailable(format!("cannot start a reader thread: {e}")))));
            }
        }
        drop(tx);

        let start = Instant::now();
        let mut answers: Vec<Option<Result<LabelsAnswer, StorageError>>> = stores.iter().map(|_| None).collect();
        let mut pending = stores.len();
        let mut cut_off: Option<(Duration, bool)> = None;
        while pending > 0 {
            let received = match self.wait(start) {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some((wait, _)) => rx.recv_timeout(wait),
            };
            match received {
                Ok((i, answer)) => {
                    if let Some(slot) = answers.get_mut(i) {
                        *slot = Some(answer);
                    }
                    pending -= 1;
                }
                Err(RecvTimeoutError::Timeout) => {
                    cut_off = self.wait(start);
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }

        let mut values = Vec::new();
        let mut warnings = Vec::new();
        for (store, answer) in stores.iter().zip(answers) {
            let failure = match answer {
                Some(Ok(a)) => {
                    values.extend(a.values);
                    warnings.extend(a.warnings);
                    continue;
                }
                Some(Err(e)) => e,
                None => match cut_off {
                    Some((_, true)) => return Err(deadline_exceeded(&store.name)),
                    Some(_) => no_answer(&store.name, self.options.response_timeout),
                    None => stopped(&store.name),
                },
            };
            let failure = named(&store.name, failure);
            match req.scope.partial_response {
                PartialResponse::Abort => return Err(failure),
                PartialResponse::Warn => warnings.push(failure.to_string()),
            }
        }
        values.sort_unstable();
        values.dedup();
        req.truncate(&mut values);
        let mut seen = BTreeSet::new();
        warnings.retain(|w| seen.insert(w.clone()));
        Ok(LabelsAnswer { values, warnings })
    }
}

fn deadline_exceeded(store: &str) -> StorageError {
    StorageError::Unavailable(format!("query deadline exceeded while waiting for store {store}"))
}

fn no_answer(store: &str, timeout: Option<Duration>) -> StorageError {
    let timeout = timeout.unwrap_or_default();
    StorageError::Unavailable(format!("store {store}: no data received in {timeout:?}"))
}

fn stopped(store: &str) -> StorageError {
    StorageError::Unavailable(format!("store {store}: the read stopped without an answer"))
}

/// `e` with the store it came from named in front, unless it names it already (a remote
/// store's errors do).
fn named(store: &str, e: StorageError) -> StorageError {
    let prefix = format!("store {store}");
    if e.to_string().contains(&prefix) {
        return e;
    }
    match e {
        StorageError::InvalidArgument(m) => StorageError::InvalidArgument(format!("{prefix}: {m}")),
        StorageError::Contract(m) => StorageError::Contract(format!("{prefix}: {m}")),
        StorageError::LimitExceeded { .. } => e,
        e => StorageError::Unavailable(format!("{prefix}: {e}")),
    }
}

/// What a store's reader thread sends: a series or an error, then `None` once the store's set
/// ended cleanly (a closed channel without it means the reader died).
type Frame = Option<Result<SeriesChunks, StorageError>>;

/// One store's part of a fan-out: its series as its reader thread receives them, waited for at
/// most the response timeout (and until the deadline) each.
struct StoreStream {
    name: String,
    rx: Receiver<Frame>,
    cancel: CancellationToken,
    proxy: Proxy,
    partial: PartialResponse,
    warnings: Warnings,
    done: bool,
}

impl StoreStream {
    fn start(proxy: &Proxy, store: &StoreRef, req: &SelectRequest, cancel: CancellationToken, warnings: &Warnings) -> Self {
        let (tx, rx) = mpsc::sync_channel(READ_AHEAD);
        let target = store.store.with_cancel(cancel.clone()).unwrap_or_else(|| store.store.clone());
        let spawned = std::thread::Builder::new().name("strata-proxy".into()).spawn({
            let (req, tx, warnings) = (req.clone(), tx.clone(), warnings.clone());
            move || read_store(target.as_ref(), &req, &tx, &warnings)
        });
        if let Err(e) = spawned {
            let _ = tx.try_send(Some(Err(StorageError::Unavailable(format!("cannot start a reader thread: {e}")))));
        }
        StoreStream {
            name: store.name.clone(),
            rx,
            cancel,
            proxy: proxy.clone(),
            partial: req.scope.partial_response,
            warnings: warnings.clone(),
            done: false,
        }
    }

    /// The store is out of the read: its read is cancelled; under `Warn` the failure becomes a
    /// warning and the stream ends, under `Abort` it is the stream's last item.
    fn fail(&mut self, e: StorageError) -> Option<Result<SeriesChunks, StorageError>> {
        self.done = true;
        self.cancel.cancel();
        let e = named(&self.name, e);
        match self.partial {
            PartialResponse::Warn => {
                tracing::debug!(store = %self.name, error = %e, "store left out of a partial answer");
                self.warnings.add(e.to_string());
                None
            }
            PartialResponse::Abort => Some(Err(e)),
        }
    }
}

/// Reads `store`'s answer to `req` into `tx` until it ends or the reader goes away.
fn read_store(store: &dyn Store, req: &SelectRequest, tx: &SyncSender<Frame>, warnings: &Warnings) {
    let set = match store.select(req) {
        Ok(set) => set,
        Err(e) => {
            let _ = tx.send(Some(Err(e)));
            return;
        }
    };
    let store_warnings = set.warnings_handle();
    for series in set {
        if tx.send(Some(series)).is_err() {
            return;
        }
    }
    // Before the end is sent, so that the merged set has them all when it ends.
    for w in store_warnings.get() {
        warnings.add(w);
    }
    let _ = tx.send(None);
}

impl Iterator for StoreStream {
    type Item = Result<SeriesChunks, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        // Each series gets the whole response timeout: Thanos's is a timeout between frames.
        let wait = self.proxy.wait(Instant::now());
        let received = match wait {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some((wait, _)) => self.rx.recv_timeout(wait),
        };
        match received {
            Ok(Some(Ok(series))) => Some(Ok(series)),
            Ok(None) => {
                self.done = true;
                None
            }
            Ok(Some(Err(e))) => self.fail(e),
            Err(RecvTimeoutError::Timeout) if wait.is_some_and(|(_, deadline)| deadline) => {
                self.done = true;
                self.cancel.cancel();
                Some(Err(deadline_exceeded(&self.name)))
            }
            Err(RecvTimeoutError::Timeout) => self.fail(no_answer(&self.name, self.proxy.options.response_timeout)),
            Err(RecvTimeoutError::Disconnected) => self.fail(stopped(&self.name)),
        }
    }
}

impl Drop for StoreStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The merged answer: at most `left` more series; dropping it cancels every store's read.
struct Fanout {
    merged: SeriesIter<StorageError>,
    left: usize,
    _cancel: DropGuard,
}

impl Iterator for Fanout {
    type Item = Result<SeriesChunks, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let next = self.merged.next();
        if matches!(next, Some(Ok(_))) {
            self.left -= 1;
        }
        next
    }
}

impl Storage for Proxy {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        if req.matchers.is_empty() {
            return Err(StorageError::InvalidArgument("no matchers specified".into()));
        }
        let warnings = Warnings::default();
        let stores = self.stores_for(req.min_time, req.max_time, &req.matchers, &req.scope);
        if stores.is_empty() {
            warnings.add(NO_STORES_MATCHED.into());
            return Ok(SeriesSet::with_warnings(std::iter::empty(), warnings));
        }
        let cancel = self.read_token();
        let streams: Vec<SeriesIter<StorageError>> = stores
            .iter()
            .map(|s| {
                Box::new(StoreStream::start(self, s, req, cancel.child_token(), &warnings)) as SeriesIter<StorageError>
            })
            .collect();
        let fanout = Fanout {
            merged: merge_series_sets(streams),
            left: if req.limit == 0 { usize::MAX } else { req.limit },
            _cancel: cancel.drop_guard(),
        };
        Ok(SeriesSet::with_warnings(fanout, warnings))
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let r = req.clone();
        self.fan_out_labels(req, move |s| s.label_names(&r))
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let (r, name) = (req.clone(), name.to_owned());
        self.fan_out_labels(req, move |s| s.label_values(&name, &r))
    }
}

impl Store for Proxy {
    /// The union of the stores' label sets and TSDBs, and the span of their time ranges
    /// (`i64::MAX`/`i64::MIN` without stores: nothing to read).
    fn info(&self) -> StoreInfo {
        merge_infos(self.options.component, self.source.stores().iter().map(|s| s.store.info()))
    }

    fn with_cancel(&self, cancel: CancellationToken) -> Option<Arc<dyn Store>> {
        Some(Arc::new(Proxy { cancel: Some(cancel), ..self.clone() }))
    }
}

/// One Info for many stores, as a component of kind `component` serving them all.
pub fn merge_infos(component: Component, infos: impl IntoIterator<Item = StoreInfo>) -> StoreInfo {
    let mut label_sets = BTreeSet::new();
    let mut tsdb_infos: Vec<TsdbInfo> = Vec::new();
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    for info in infos {
        label_sets.extend(info.label_sets);
        min_time = min_time.min(info.min_time);
        max_time = max_time.max(info.max_time);
        for t in info.tsdb_infos {
            if !tsdb_infos.contains(&t) {
                tsdb_infos.push(t);
            }
        }
    }
    StoreInfo { component, label_sets: label_sets.into_iter().collect(), min_time, max_time, tsdb_infos }
}
