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

/// Batches a store's reader may hold before the merge takes them: enough to keep a store busy
/// while the merge waits on another, few enough to bound the memory of a slow reader.
const READ_AHEAD: usize = 4;

/// Series a reader passes on at once, so that the merge wakes once per batch, not per series.
const BATCH: usize = 64;

/// A reader holds series for a batch only while it passed on its last batch this recently: a
/// slow store's series go on one by one, as they come, so waits between them (which the
/// response timeout measures) are seen as they are, give or take this.
const BATCH_WINDOW: Duration = Duration::from_millis(5);

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
    fn may_answer(
        &self,
        info: &StoreInfo,
        min_time: i64,
        max_time: i64,
        matchers: &[Matcher],
        scope: &ReadScope,
    ) -> bool {
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
        || sets.iter().any(|set| matchers.iter().all(|m| set.get(&m.name).is_none_or(|v| v.is_empty() || m.matches(v))))
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

/// What a store's reader thread sends: series (in order, a batch at a time) or an error, then
/// `None` once the store's set ended cleanly (a closed channel without it means the reader died).
type Frame = Option<Result<Vec<SeriesChunks>, StorageError>>;

/// One store's part of a fan-out: its series as its reader thread receives them, waited for at
/// most the response timeout (and until the deadline) each.
struct StoreStream {
    name: String,
    rx: Receiver<Frame>,
    /// The rest of the last batch.
    buffered: std::vec::IntoIter<SeriesChunks>,
    cancel: CancellationToken,
    proxy: Proxy,
    partial: PartialResponse,
    warnings: Warnings,
    done: bool,
}

impl StoreStream {
    fn start(
        proxy: &Proxy,
        store: &StoreRef,
        req: &SelectRequest,
        cancel: CancellationToken,
        warnings: &Warnings,
    ) -> Self {
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
            buffered: Vec::new().into_iter(),
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
    let mut batch = Vec::new();
    let mut sent_at: Option<Instant> = None;
    for series in set {
        let series = match series {
            Ok(series) => series,
            Err(e) => {
                if !batch.is_empty() {
                    let _ = tx.send(Some(Ok(batch)));
                }
                let _ = tx.send(Some(Err(e)));
                return;
            }
        };
        batch.push(series);
        let now = Instant::now();
        if batch.len() >= BATCH || sent_at.is_none_or(|at| now.duration_since(at) >= BATCH_WINDOW) {
            if tx.send(Some(Ok(std::mem::take(&mut batch)))).is_err() {
                return;
            }
            sent_at = Some(now);
        }
    }
    if !batch.is_empty() && tx.send(Some(Ok(batch))).is_err() {
        return;
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
        if let Some(series) = self.buffered.next() {
            return Some(Ok(series));
        }
        if self.done {
            return None;
        }
        // Each batch gets the whole response timeout: Thanos's is a timeout between frames.
        let wait = self.proxy.wait(Instant::now());
        let received = match wait {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some((wait, _)) => self.rx.recv_timeout(wait),
        };
        match received {
            Ok(Some(Ok(batch))) => {
                self.buffered = batch.into_iter();
                self.buffered.next().map(Ok).or_else(|| self.next())
            }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use strata_storage::ChunkData;
    use strata_tsdb::chunkenc::{Encoding, XorAppender};
    use strata_tsdb::matchers::MatchOp;
    use strata_tsdb::querier::for_each_sample;

    use super::*;

    fn chunk(samples: &[(i64, f64)]) -> ChunkData {
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

    fn series(pairs: &[(&str, &str)], chunks: Vec<ChunkData>) -> SeriesChunks {
        SeriesChunks { labels: Labels::from_pairs(pairs), chunks }
    }

    fn up(instance: &str, chunks: Vec<ChunkData>) -> SeriesChunks {
        series(&[("__name__", "up"), ("instance", instance)], chunks)
    }

    fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value).unwrap()
    }

    fn info(label_sets: &[&[(&str, &str)]], min_time: i64, max_time: i64) -> StoreInfo {
        StoreInfo {
            component: Component::Receive,
            label_sets: label_sets.iter().map(|s| Labels::from_pairs(s)).collect(),
            min_time,
            max_time,
            tsdb_infos: Vec::new(),
        }
    }

    /// How an in-memory store answers.
    #[derive(Clone)]
    enum Behaviour {
        Answer,
        /// Fails the call.
        Refuse,
        /// Yields this many series, then an error.
        FailAfter(usize),
        /// Yields this many series, then waits until its read is cancelled.
        HangAfter(usize),
    }

    /// A store of series in memory that counts its reads.
    struct MemStore {
        info: StoreInfo,
        series: Vec<SeriesChunks>,
        behaviour: Behaviour,
        reads: Arc<AtomicUsize>,
        /// The token its reads were cancelled through, once one was.
        cancel: Option<CancellationToken>,
        seen_cancel: Arc<parking_lot::Mutex<Vec<CancellationToken>>>,
    }

    impl MemStore {
        fn new(info: StoreInfo, series: Vec<SeriesChunks>, behaviour: Behaviour) -> Arc<MemStore> {
            Arc::new(MemStore {
                info,
                series,
                behaviour,
                reads: Arc::default(),
                cancel: None,
                seen_cancel: Arc::default(),
            })
        }

        fn matching(&self, matchers: &[Matcher], min_time: i64, max_time: i64) -> Vec<SeriesChunks> {
            self.series
                .iter()
                .filter(|s| matchers.iter().all(|m| m.matches(s.labels.get(&m.name).unwrap_or(""))))
                .filter(|s| {
                    s.chunks.is_empty() || s.chunks.iter().any(|c| c.max_time >= min_time && c.min_time <= max_time)
                })
                .cloned()
                .collect()
        }
    }

    impl Storage for MemStore {
        fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let found = self.matching(&req.matchers, req.min_time, req.max_time);
            let (n, then): (usize, Option<Behaviour>) = match &self.behaviour {
                Behaviour::Answer => (found.len(), None),
                Behaviour::Refuse => return Err(StorageError::Unavailable("refused".into())),
                Behaviour::FailAfter(n) | Behaviour::HangAfter(n) => (*n, Some(self.behaviour.clone())),
            };
            let cancel = self.cancel.clone();
            let tail = std::iter::once(()).filter_map(move |()| match then {
                Some(Behaviour::FailAfter(_)) => Some(Err(strata_tsdb::Error::CorruptChunk("disk on fire".into()))),
                Some(Behaviour::HangAfter(_)) => {
                    let cancel = cancel.clone()?;
                    futures::executor::block_on(cancel.cancelled());
                    Some(Err(strata_tsdb::Error::CorruptChunk("cancelled".into())))
                }
                _ => None,
            });
            Ok(SeriesSet::from_local(found.into_iter().take(n).map(Ok).chain(tail), req))
        }

        fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
            if let Behaviour::Refuse = self.behaviour {
                return Err(StorageError::Unavailable("refused".into()));
            }
            let mut names: Vec<String> = self
                .matching(&req.matchers, req.min_time, req.max_time)
                .iter()
                .flat_map(|s| s.labels.iter().map(|(n, _)| n.to_owned()).collect::<Vec<_>>())
                .collect();
            names.sort();
            names.dedup();
            Ok(names.into())
        }

        fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
            if let Behaviour::Refuse = self.behaviour {
                return Err(StorageError::Unavailable("refused".into()));
            }
            let mut values: Vec<String> = self
                .matching(&req.matchers, req.min_time, req.max_time)
                .iter()
                .filter_map(|s| s.labels.get(name).map(str::to_owned))
                .collect();
            values.sort();
            values.dedup();
            Ok(values.into())
        }
    }

    impl Store for MemStore {
        fn info(&self) -> StoreInfo {
            self.info.clone()
        }

        fn with_cancel(&self, cancel: CancellationToken) -> Option<Arc<dyn Store>> {
            self.seen_cancel.lock().push(cancel.clone());
            Some(Arc::new(MemStore {
                info: self.info.clone(),
                series: self.series.clone(),
                behaviour: self.behaviour.clone(),
                reads: self.reads.clone(),
                cancel: Some(cancel),
                seen_cancel: self.seen_cancel.clone(),
            }))
        }
    }

    fn proxy(stores: Vec<StoreRef>, response_timeout: Option<Duration>) -> Proxy {
        Proxy::new(Arc::new(stores), ProxyOptions { component: Component::Query, response_timeout })
    }

    fn select_req(matchers: Vec<Matcher>, partial: PartialResponse) -> SelectRequest {
        let mut req = SelectRequest::new(matchers, 0, 10_000);
        req.scope.partial_response = partial;
        req
    }

    fn all_up() -> Vec<Matcher> {
        vec![m(MatchOp::Equal, "__name__", "up")]
    }

    fn read(p: &Proxy, req: &SelectRequest) -> (Result<Vec<SeriesChunks>, StorageError>, Vec<String>) {
        let mut set = p.select(req).unwrap().checked();
        let got = set.by_ref().collect();
        (got, set.warnings())
    }

    fn instances(got: &[SeriesChunks]) -> Vec<&str> {
        got.iter().map(|s| s.labels.get("instance").unwrap_or("")).collect()
    }

    fn samples(s: &SeriesChunks) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for_each_sample(s, i64::MIN, i64::MAX, |t, v| out.push((t, v))).unwrap();
        out
    }

    #[test]
    fn merges_stores_in_label_order_and_duplicates_into_one() {
        let shared = chunk(&[(0, 1.0), (10, 2.0)]);
        let later = chunk(&[(20, 3.0)]);
        let a = MemStore::new(
            info(&[], 0, 100),
            vec![up("a", vec![chunk(&[(0, 1.0)])]), up("c", vec![shared.clone()]), up("e", vec![chunk(&[(5, 5.0)])])],
            Behaviour::Answer,
        );
        let b = MemStore::new(
            info(&[], 0, 100),
            vec![up("b", vec![chunk(&[(0, 1.0)])]), up("c", vec![shared.clone(), later.clone()]), up("d", vec![])],
            Behaviour::Answer,
        );
        let p = proxy(vec![StoreRef::local("a", a), StoreRef::local("b", b)], None);
        let (got, warnings) = read(&p, &select_req(all_up(), PartialResponse::Abort));
        let got = got.unwrap();
        assert_eq!(instances(&got), ["a", "b", "c", "d", "e"]);
        assert!(warnings.is_empty(), "{warnings:?}");
        // The chunk both stores hold is kept once, byte for byte, beside the one only b has.
        assert_eq!(got[2].chunks, vec![shared, later]);
    }

    #[test]
    fn many_stores_merge_into_the_sorted_union() {
        // Store i holds the series whose number is a multiple of i + 2, each with the same chunk
        // in every store that has it.
        let the_chunk = |n: usize| chunk(&[(n as i64, n as f64)]);
        let stores: Vec<StoreRef> = (0..6)
            .map(|i| {
                let held = (0..300).filter(|n| n % (i + 2) == 0).map(|n| up(&format!("{n:03}"), vec![the_chunk(n)]));
                StoreRef::local(format!("s{i}"), MemStore::new(info(&[], 0, 1000), held.collect(), Behaviour::Answer))
            })
            .collect();
        let p = proxy(stores, Some(Duration::from_secs(10)));
        let got = read(&p, &select_req(all_up(), PartialResponse::Abort)).0.unwrap();
        let want: Vec<usize> = (0..300).filter(|n| (2..8).any(|d| n % d == 0)).collect();
        assert_eq!(instances(&got), want.iter().map(|n| format!("{n:03}")).collect::<Vec<_>>());
        assert!(got.iter().zip(&want).all(|(s, &n)| s.chunks == [the_chunk(n)]));
    }

    #[test]
    fn overlapping_chunks_from_two_stores_merge() {
        let a = MemStore::new(info(&[], 0, 100), vec![up("x", vec![chunk(&[(0, 1.0), (20, 3.0)])])], Behaviour::Answer);
        let b =
            MemStore::new(info(&[], 0, 100), vec![up("x", vec![chunk(&[(10, 2.0), (30, 4.0)])])], Behaviour::Answer);
        let p = proxy(vec![StoreRef::local("a", a), StoreRef::local("b", b)], None);
        let got = read(&p, &select_req(all_up(), PartialResponse::Abort)).0.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(samples(&got[0]), [(0, 1.0), (10, 2.0), (20, 3.0), (30, 4.0)]);
    }

    #[test]
    fn limit_applies_to_the_merged_answer() {
        let a = MemStore::new(info(&[], 0, 100), vec![up("a", vec![]), up("c", vec![])], Behaviour::Answer);
        let b = MemStore::new(info(&[], 0, 100), vec![up("b", vec![]), up("d", vec![])], Behaviour::Answer);
        let p = proxy(vec![StoreRef::local("a", a), StoreRef::local("b", b)], None);
        let req = SelectRequest { limit: 3, ..select_req(all_up(), PartialResponse::Abort) };
        assert_eq!(instances(&read(&p, &req).0.unwrap()), ["a", "b", "c"]);
    }

    #[test]
    fn stores_are_pruned_by_time_external_labels_and_store_matchers() {
        let one = || vec![up("x", vec![chunk(&[(50, 1.0)])])];
        let old = MemStore::new(info(&[&[("cluster", "a")]], 0, 100), one(), Behaviour::Answer);
        let new = MemStore::new(info(&[&[("cluster", "b")]], 1000, 2000), one(), Behaviour::Answer);
        let other = MemStore::new(info(&[&[("cluster", "c")], &[("cluster", "d")]], 0, 2000), one(), Behaviour::Answer);
        let local = MemStore::new(info(&[], 0, 2000), one(), Behaviour::Answer);
        let p = proxy(
            vec![
                StoreRef::remote("10.0.0.1:10901", old.clone()),
                StoreRef::remote("10.0.0.2:10901", new.clone()),
                StoreRef::remote("10.0.0.3:10901", other.clone()),
                StoreRef::local("local", local.clone()),
            ],
            None,
        );
        let reads = || [&old, &new, &other, &local].map(|s| s.reads.swap(0, Ordering::SeqCst));

        // Time: [0, 500] is not the second store's.
        read(&p, &SelectRequest::new(all_up(), 0, 500)).0.unwrap();
        assert_eq!(reads(), [1, 0, 1, 1]);

        // External labels against matchers: a store without the label, or with a set that
        // matches, is asked.
        let by_cluster = |op, v| {
            let mut ms = all_up();
            ms.push(m(op, "cluster", v));
            SelectRequest::new(ms, 0, 2000)
        };
        read(&p, &by_cluster(MatchOp::Equal, "a")).0.unwrap();
        assert_eq!(reads(), [1, 0, 0, 1]);
        read(&p, &by_cluster(MatchOp::Regex, "b|d")).0.unwrap();
        assert_eq!(reads(), [0, 1, 1, 1]);
        read(&p, &by_cluster(MatchOp::NotEqual, "c")).0.unwrap();
        assert_eq!(reads(), [1, 1, 1, 1], "the store with sets c and d has d");

        // storeMatch[]: the address, or the external labels; a store in process has no address.
        let scoped = |sets: Vec<Vec<Matcher>>| {
            let mut req = SelectRequest::new(all_up(), 0, 2000);
            req.scope.store_matchers = sets;
            req
        };
        read(&p, &scoped(vec![vec![m(MatchOp::Equal, "__address__", "10.0.0.2:10901")]])).0.unwrap();
        assert_eq!(reads(), [0, 1, 0, 0]);
        read(
            &p,
            &scoped(vec![
                vec![m(MatchOp::Regex, "__address__", "10.0.0.[13]:.*"), m(MatchOp::Equal, "cluster", "d")],
                vec![m(MatchOp::Equal, "cluster", "a")],
            ]),
        )
        .0
        .unwrap();
        assert_eq!(reads(), [1, 0, 1, 0]);

        // Nothing left to ask: an empty answer that says so.
        let (got, warnings) = read(&p, &SelectRequest::new(all_up(), 5000, 6000));
        assert!(got.unwrap().is_empty());
        assert_eq!(warnings, [NO_STORES_MATCHED]);
    }

    #[test]
    fn a_failed_store_is_a_warning_or_an_error() {
        let good = MemStore::new(info(&[], 0, 100), vec![up("a", vec![]), up("b", vec![])], Behaviour::Answer);
        let bad = MemStore::new(info(&[], 0, 100), vec![up("c", vec![])], Behaviour::Refuse);
        let p = proxy(vec![StoreRef::local("good", good), StoreRef::remote("10.1.1.1:10901", bad)], None);

        let (got, warnings) = read(&p, &select_req(all_up(), PartialResponse::Warn));
        assert_eq!(instances(&got.unwrap()), ["a", "b"]);
        assert_eq!(warnings, ["store 10.1.1.1:10901: refused"]);

        let (got, _) = read(&p, &select_req(all_up(), PartialResponse::Abort));
        let e = got.unwrap_err();
        assert_eq!(e.to_string(), "store 10.1.1.1:10901: refused");
    }

    #[test]
    fn a_store_failing_mid_stream_keeps_what_it_sent_under_warn() {
        let good = MemStore::new(info(&[], 0, 100), vec![up("b", vec![]), up("e", vec![])], Behaviour::Answer);
        let flaky = MemStore::new(
            info(&[], 0, 100),
            vec![up("a", vec![]), up("c", vec![]), up("d", vec![])],
            Behaviour::FailAfter(2),
        );
        let p = proxy(vec![StoreRef::local("good", good), StoreRef::local("flaky", flaky)], None);

        let (got, warnings) = read(&p, &select_req(all_up(), PartialResponse::Warn));
        assert_eq!(instances(&got.unwrap()), ["a", "b", "c", "e"]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("store flaky: "), "{warnings:?}");

        let mut set = p.select(&select_req(all_up(), PartialResponse::Abort)).unwrap();
        let got: Vec<_> = set.by_ref().collect();
        assert!(matches!(got.last(), Some(Err(e)) if e.to_string().starts_with("store flaky: ")), "{got:?}");
        assert!(set.next().is_none());
    }

    #[test]
    fn a_hung_store_is_cut_off_at_the_response_timeout_and_its_read_cancelled() {
        let good = MemStore::new(info(&[], 0, 100), vec![up("a", vec![]), up("c", vec![])], Behaviour::Answer);
        let hung = MemStore::new(info(&[], 0, 100), vec![up("b", vec![]), up("d", vec![])], Behaviour::HangAfter(1));
        let p = proxy(
            vec![StoreRef::local("good", good), StoreRef::remote("10.9.9.9:10901", hung.clone())],
            Some(Duration::from_millis(500)),
        );
        let start = Instant::now();
        let (got, warnings) = read(&p, &select_req(all_up(), PartialResponse::Warn));
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        assert_eq!(instances(&got.unwrap()), ["a", "b", "c"]);
        assert_eq!(warnings, ["store 10.9.9.9:10901: no data received in 500ms"]);
        assert!(hung.seen_cancel.lock().iter().all(CancellationToken::is_cancelled), "the hung read was cancelled");

        let (got, _) = read(&p, &select_req(all_up(), PartialResponse::Abort));
        assert_eq!(got.unwrap_err().to_string(), "store 10.9.9.9:10901: no data received in 500ms");
    }

    #[test]
    fn the_query_deadline_fails_the_read_under_either_strategy() {
        let hung = MemStore::new(info(&[], 0, 100), vec![up("b", vec![])], Behaviour::HangAfter(0));
        let p = proxy(vec![StoreRef::local("hung", hung)], None);
        for partial in [PartialResponse::Warn, PartialResponse::Abort] {
            let p = p.with_deadline(Instant::now() + Duration::from_millis(150));
            let (got, _) = read(&p, &select_req(all_up(), partial));
            let e = got.unwrap_err();
            assert!(e.to_string().contains("deadline exceeded while waiting for store hung"), "{e}");
        }
    }

    #[test]
    fn dropping_the_answer_cancels_every_read() {
        let slow = MemStore::new(info(&[], 0, 100), vec![up("a", vec![])], Behaviour::HangAfter(1));
        let p = proxy(vec![StoreRef::local("slow", slow.clone())], None);
        let mut set = p.select(&select_req(all_up(), PartialResponse::Abort)).unwrap();
        assert!(set.next().is_some_and(|s| s.is_ok()));
        drop(set);
        let tokens = slow.seen_cancel.lock().clone();
        assert_eq!(tokens.len(), 1);
        assert!(tokens[0].is_cancelled());
    }

    #[test]
    fn requests_without_matchers_are_refused() {
        let p = proxy(Vec::new(), None);
        assert!(matches!(p.select(&SelectRequest::new(Vec::new(), 0, 1)), Err(StorageError::InvalidArgument(_))));
    }

    #[test]
    fn label_names_and_values_are_merged() {
        let a = MemStore::new(
            info(&[], 0, 100),
            vec![
                series(&[("__name__", "up"), ("job", "a")], vec![]),
                series(&[("__name__", "x"), ("zone", "1")], vec![]),
            ],
            Behaviour::Answer,
        );
        let b = MemStore::new(
            info(&[], 0, 100),
            vec![series(&[("__name__", "down"), ("job", "b")], vec![])],
            Behaviour::Answer,
        );
        let bad = MemStore::new(info(&[], 0, 100), Vec::new(), Behaviour::Refuse);
        let p = proxy(
            vec![StoreRef::local("a", a.clone()), StoreRef::local("b", b.clone()), StoreRef::local("bad", bad)],
            None,
        );
        let mut req = LabelsRequest::new(Vec::new(), 0, 100);
        req.scope.partial_response = PartialResponse::Warn;
        let names = p.label_names(&req).unwrap();
        assert_eq!(names.values, ["__name__", "job", "zone"]);
        assert_eq!(names.warnings, ["store bad: refused"]);
        let values = p.label_values("__name__", &LabelsRequest { limit: 2, ..req.clone() }).unwrap();
        assert_eq!(values.values, ["down", "up"]);

        req.scope.partial_response = PartialResponse::Abort;
        assert_eq!(p.label_names(&req).unwrap_err().to_string(), "store bad: refused");

        // Stores are pruned for labels too.
        let p = proxy(vec![StoreRef::local("a", a), StoreRef::local("b", b)], None);
        let late = LabelsRequest::new(Vec::new(), 500, 600);
        assert!(p.label_names(&late).unwrap().values.is_empty());
    }

    #[test]
    fn info_is_the_union_of_the_stores() {
        let a = MemStore::new(info(&[&[("replica", "a")]], 10, 100), Vec::new(), Behaviour::Answer);
        let b =
            MemStore::new(info(&[&[("replica", "b")], &[("replica", "a")]], 50, 300), Vec::new(), Behaviour::Answer);
        let p = proxy(vec![StoreRef::local("a", a), StoreRef::local("b", b)], None);
        let i = p.info();
        assert_eq!(i.component, Component::Query);
        assert_eq!(i.label_sets, [Labels::from_pairs(&[("replica", "a")]), Labels::from_pairs(&[("replica", "b")])]);
        assert_eq!((i.min_time, i.max_time), (10, 300));
        let empty = proxy(Vec::new(), None).info();
        assert_eq!((empty.min_time, empty.max_time), (i64::MAX, i64::MIN));
    }
}
