//! Prometheus's data as a [`Storage`]: series through remote read (`/api/v1/read`, streamed
//! XOR chunks), labels through its HTTP API, asked as Thanos's sidecar asks.
//!
//! A select sends one query (the matchers and time range, no hints, as Thanos v0.42 sends it)
//! and returns at once a set that yields series as frames arrive: a task on the runtime reads
//! the body piece by piece into a bounded channel the set reads from, in batches of series
//! (frames hold chunk bytes as slices of the pieces received, never copied); dropping the set
//! drops the channel, which ends the task and closes the connection. The set holds the batches
//! in the channel and one series, never the whole answer.
//!
//! Prometheus adds its external labels to every series it streams (keeping a series' own label
//! of the same name). They are taken off again here, so that the set holds the series as
//! Prometheus's TSDB holds them, in the order it streams them (its TSDB's); the store above adds
//! the external labels with Thanos's semantics (`strata_store::external`).
//! A series split over several frames (more chunks than fit one) becomes one series again;
//! chunks that overlap (out-of-order samples in the head) are merged.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use parking_lot::RwLock;
use prost::Message;
use strata_proto::prometheus as pb;
use strata_storage::{
    ChunkData, LabelsAnswer, LabelsRequest, SelectRequest, SeriesChunks, SeriesSet, Storage, StorageError,
};
use strata_tsdb::chunkenc::Encoding;
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::MatchOp;
use strata_tsdb::querier::merge_chunks;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::frame::{FrameDecoder, DEFAULT_FRAME_LIMIT};
use crate::prom::PromClient;

/// Batches of series read ahead of the reader.
const READ_AHEAD: usize = 4;

/// A batch of series is sent to the reader once it has this many series or frames of this many
/// bytes (a frame is at most Prometheus's frame size, 1 MiB by default).
const SEND_SERIES: usize = 64;
const SEND_BYTES: usize = 1 << 20;

/// What the reading task sends: a batch of series, or an error; `None` at the clean end of the
/// stream (a channel closed without it means the task stopped early).
type Frame = Option<Result<Vec<SeriesChunks>, StorageError>>;

/// The data of one Prometheus.
pub struct RemoteRead {
    prom: Arc<PromClient>,
    runtime: Handle,
    /// Prometheus's external labels as last read from its configuration.
    external: Arc<RwLock<Labels>>,
}

impl RemoteRead {
    /// Reads run on `runtime`; `external` holds Prometheus's current external labels.
    pub fn new(prom: Arc<PromClient>, runtime: Handle, external: Arc<RwLock<Labels>>) -> Self {
        RemoteRead { prom, runtime, external }
    }

    /// Runs `call` on the runtime and waits for it on this thread.
    fn call<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, StorageError>> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = oneshot::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(call.await);
        });
        // Not tokio's blocking_recv, which panics when called on a runtime thread.
        futures::executor::block_on(rx).unwrap_or_else(|_| {
            Err(StorageError::Unavailable(format!("Prometheus at {}: call stopped", self.prom.url())))
        })
    }
}

/// The remote-read request Thanos's sidecar sends for a select.
pub fn read_request(req: &SelectRequest) -> pb::ReadRequest {
    let matchers = req
        .matchers
        .iter()
        .map(|m| pb::LabelMatcher {
            r#type: match m.op {
                MatchOp::Equal => pb::label_matcher::Type::Eq,
                MatchOp::NotEqual => pb::label_matcher::Type::Neq,
                MatchOp::Regex => pb::label_matcher::Type::Re,
                MatchOp::NotRegex => pb::label_matcher::Type::Nre,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect();
    let query = pb::Query { start_timestamp_ms: req.min_time, end_timestamp_ms: req.max_time, matchers, hints: None };
    pb::ReadRequest {
        queries: vec![query],
        accepted_response_types: vec![pb::read_request::ResponseType::StreamedXorChunks as i32],
    }
}

/// The series of one `ChunkedReadResponse` frame, with the pairs of `external` taken off their
/// labels.
pub fn decode_frame(message: Bytes, external: &Labels) -> Result<Vec<SeriesChunks>, StorageError> {
    let bad = |what: String| StorageError::Unavailable(format!("remote read answer from Prometheus: {what}"));
    let frame = pb::ChunkedReadResponse::decode(message).map_err(|e| bad(format!("undecodable frame: {e}")))?;
    if frame.query_index != 0 {
        return Err(bad(format!("a frame for query {} of a request of one query", frame.query_index)));
    }
    frame
        .chunked_series
        .into_iter()
        .map(|series| {
            let pairs: Vec<(&str, &str)> = series.labels().filter(|&(n, v)| external.get(n) != Some(v)).collect();
            let labels = if pairs.is_empty() {
                Labels::empty()
            } else {
                Labels::from_sorted(&pairs).map_err(|e| bad(format!("series labels {pairs:?}: {e}")))?
            };
            let chunks = series
                .chunks
                .into_iter()
                .map(|c| {
                    let encoding = match pb::chunk::Encoding::try_from(c.r#type) {
                        Ok(pb::chunk::Encoding::Xor) => Encoding::Xor,
                        Ok(pb::chunk::Encoding::Histogram) => Encoding::Histogram,
                        Ok(pb::chunk::Encoding::FloatHistogram) => Encoding::FloatHistogram,
                        _ => {
                            return Err(bad(format!(
                                "series {labels}: chunk encoding {} is not one the StoreAPI carries (XOR, histogram, float histogram)",
                                c.r#type
                            )))
                        }
                    };
                    if c.min_time_ms > c.max_time_ms {
                        return Err(bad(format!(
                            "series {labels}: chunk [{}, {}] ends before it starts",
                            c.min_time_ms, c.max_time_ms
                        )));
                    }
                    Ok(ChunkData { min_time: c.min_time_ms, max_time: c.max_time_ms, encoding, data: c.data })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(SeriesChunks { labels, chunks })
        })
        .collect()
}

impl Storage for RemoteRead {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        if req.min_time > req.max_time {
            return Ok(SeriesSet::empty());
        }
        if req.skip_chunks {
            // As Thanos: labels only come from the series API, cheaper than reading chunks.
            let (prom, matchers, min, max) = (self.prom.clone(), req.matchers.clone(), req.min_time, req.max_time);
            let mut series = self.call(async move { Ok(prom.series(&matchers, min, max).await?) })?;
            series.sort();
            series.dedup();
            return Ok(SeriesSet::from_read(
                series.into_iter().map(|labels| Ok(SeriesChunks { labels, chunks: Vec::new() })),
                req,
            ));
        }
        let request = read_request(req).encode_to_vec();
        let (tx, rx) = mpsc::channel::<Frame>(READ_AHEAD);
        let (prom, external) = (self.prom.clone(), self.external.clone());
        self.runtime.spawn(async move {
            if let Err(e) = stream(&prom, &request, &external, &tx).await {
                let _ = tx.send(Some(Err(e))).await;
            }
        });
        let series =
            Streamed { rx, url: self.prom.url().to_owned(), buffered: VecDeque::new(), pending: None, done: false };
        Ok(SeriesSet::from_read(series, req))
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let (prom, matchers, min, max, limit) =
            (self.prom.clone(), req.matchers.clone(), req.min_time, req.max_time, req.limit);
        let mut names = self.call(async move { Ok(prom.label_names(&matchers, min, max, limit).await?) })?;
        names.sort();
        names.dedup();
        req.truncate(&mut names);
        Ok(names.into())
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let (prom, name, matchers, min, max, limit) =
            (self.prom.clone(), name.to_owned(), req.matchers.clone(), req.min_time, req.max_time, req.limit);
        let mut values = self.call(async move { Ok(prom.label_values(&name, &matchers, min, max, limit).await?) })?;
        values.sort();
        values.dedup();
        req.truncate(&mut values);
        Ok(values.into())
    }
}

/// Reads one remote-read answer into `tx`, frame by frame, until its end or until the reader
/// goes away.
async fn stream(
    prom: &PromClient,
    request: &[u8],
    external: &RwLock<Labels>,
    tx: &mpsc::Sender<Frame>,
) -> Result<(), StorageError> {
    let mut body = prom.remote_read(request).await?;
    let mut decoder = FrameDecoder::new(DEFAULT_FRAME_LIMIT);
    let broken =
        |e: String| StorageError::Unavailable(format!("remote read answer from Prometheus at {}: {e}", prom.url()));
    let mut frames = 0u64;
    let (mut series, mut bytes) = (Vec::new(), 0);
    loop {
        let Some(piece) = body.frame().await else {
            decoder.finish().map_err(|e| broken(e.to_string()))?;
            tracing::debug!(frames, "remote read done");
            if !series.is_empty() {
                let _ = tx.send(Some(Ok(series))).await;
            }
            let _ = tx.send(None).await;
            return Ok(());
        };
        let piece = piece.map_err(|e| broken(format!("reading the stream: {e}")))?;
        let Ok(data) = piece.into_data() else { continue };
        decoder.push(data);
        while let Some(message) = decoder.next_frame().map_err(|e| broken(e.to_string()))? {
            frames += 1;
            bytes += message.len();
            series.extend(decode_frame(message, &external.read())?);
        }
        // Prometheus sends one series a frame, and usually a frame a piece: the series go to
        // the reader in batches, so that it is not woken per series.
        if series.len() >= SEND_SERIES || bytes >= SEND_BYTES {
            bytes = 0;
            if tx.send(Some(Ok(std::mem::take(&mut series)))).await.is_err() {
                // The reader is gone: dropping the body closes the connection.
                return Ok(());
            }
        }
    }
}

/// The series of a streamed answer as the read interface wants them: one per label set (a
/// series split over frames joined), in strictly increasing label order (checked), chunks in
/// time order without overlaps.
struct Streamed {
    rx: mpsc::Receiver<Frame>,
    url: String,
    buffered: VecDeque<SeriesChunks>,
    /// The series being put together: frames may carry more of its chunks.
    pending: Option<SeriesChunks>,
    done: bool,
}

impl Streamed {
    fn fail(&mut self, e: StorageError) -> Option<Result<SeriesChunks, StorageError>> {
        self.done = true;
        self.pending = None;
        self.buffered.clear();
        Some(Err(e))
    }
}

/// A series' chunks in time order, overlapping ones merged.
fn finish(mut s: SeriesChunks) -> Result<SeriesChunks, StorageError> {
    if s.chunks.windows(2).any(|w| w[1].min_time <= w[0].max_time) {
        s.chunks = merge_chunks(std::mem::take(&mut s.chunks))?;
    }
    Ok(s)
}

impl Iterator for Streamed {
    type Item = Result<SeriesChunks, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(s) = self.buffered.pop_front() {
                match &mut self.pending {
                    Some(p) if p.labels == s.labels => p.chunks.extend(s.chunks),
                    Some(p) if p.labels > s.labels => {
                        let e = StorageError::Unavailable(format!(
                            "Prometheus at {} streamed series {} after {}: not in label order",
                            self.url, s.labels, p.labels
                        ));
                        return self.fail(e);
                    }
                    _ => {
                        if let Some(done) = self.pending.replace(s) {
                            return Some(finish(done));
                        }
                    }
                }
                continue;
            }
            if self.done {
                return self.pending.take().map(finish);
            }
            match futures::executor::block_on(self.rx.recv()) {
                Some(Some(Ok(series))) => self.buffered.extend(series),
                Some(None) => self.done = true,
                Some(Some(Err(e))) => return self.fail(e),
                None => {
                    let e = StorageError::Unavailable(format!(
                        "Prometheus at {}: the remote read stopped before its end",
                        self.url
                    ));
                    return self.fail(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use strata_tsdb::matchers::Matcher;

    use super::*;

    fn chunk(min: i64, max: i64) -> pb::Chunk {
        pb::Chunk {
            min_time_ms: min,
            max_time_ms: max,
            r#type: pb::chunk::Encoding::Xor as i32,
            data: Bytes::from_static(b"\x00\x00"),
        }
    }

    fn series(pairs: &[(&str, &str)], chunks: Vec<pb::Chunk>) -> pb::ChunkedSeries {
        pb::ChunkedSeries::new(pairs.iter().copied(), chunks)
    }

    fn frame(series: Vec<pb::ChunkedSeries>) -> Bytes {
        Bytes::from(pb::ChunkedReadResponse { chunked_series: series, query_index: 0 }.encode_to_vec())
    }

    #[test]
    fn frames_lose_the_external_labels_prometheus_added() {
        let ext = Labels::from_pairs(&[("cluster", "eu"), ("replica", "a")]);
        let got = decode_frame(
            frame(vec![
                series(&[("__name__", "up"), ("cluster", "eu"), ("job", "p"), ("replica", "a")], vec![chunk(0, 10)]),
                // The series' own value of a label named like an external one stays.
                series(&[("__name__", "up"), ("cluster", "us"), ("replica", "a")], vec![]),
            ]),
            &ext,
        )
        .unwrap();
        assert_eq!(got[0].labels, Labels::from_pairs(&[("__name__", "up"), ("job", "p")]));
        assert_eq!(got[0].chunks[0].encoding, Encoding::Xor);
        assert_eq!(got[1].labels, Labels::from_pairs(&[("__name__", "up"), ("cluster", "us")]));
    }

    #[test]
    fn malformed_frames_are_errors() {
        let ext = Labels::empty();
        let bad_encoding = pb::Chunk { r#type: 0, ..chunk(0, 1) };
        let cases = [
            ("garbage", Bytes::from_static(b"\xff\xff\xff")),
            ("unsorted labels", frame(vec![series(&[("b", "1"), ("a", "2")], vec![])])),
            ("empty name", frame(vec![series(&[("", "1")], vec![])])),
            ("unknown chunk encoding", frame(vec![series(&[("a", "1")], vec![bad_encoding])])),
            ("inverted chunk", frame(vec![series(&[("a", "1")], vec![chunk(5, 1)])])),
            (
                "another query",
                Bytes::from(pb::ChunkedReadResponse { chunked_series: vec![], query_index: 3 }.encode_to_vec()),
            ),
        ];
        for (name, bytes) in cases {
            assert!(decode_frame(bytes, &ext).is_err(), "{name}");
        }
    }

    fn streamed(frames: Vec<Frame>, close: bool) -> Vec<Result<SeriesChunks, StorageError>> {
        let (tx, rx) = mpsc::channel(frames.len() + 1);
        for f in frames {
            tx.try_send(f).unwrap();
        }
        if !close {
            tx.try_send(None).unwrap();
        }
        drop(tx);
        Streamed { rx, url: "test".into(), buffered: VecDeque::new(), pending: None, done: false }.collect()
    }

    fn sc(name: &str, chunks: &[(i64, i64)]) -> SeriesChunks {
        SeriesChunks {
            labels: Labels::from_pairs(&[("__name__", name)]),
            chunks: chunks
                .iter()
                .map(|&(a, b)| ChunkData { min_time: a, max_time: b, encoding: Encoding::Xor, data: Bytes::new() })
                .collect(),
        }
    }

    #[test]
    fn series_split_over_frames_are_joined() {
        let got = streamed(
            vec![
                Some(Ok(vec![sc("a", &[(0, 1)]), sc("b", &[(0, 1)])])),
                Some(Ok(vec![sc("b", &[(2, 3)])])),
                Some(Ok(vec![sc("b", &[(4, 5)]), sc("c", &[])])),
            ],
            false,
        );
        let got: Vec<SeriesChunks> = got.into_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![sc("a", &[(0, 1)]), sc("b", &[(0, 1), (2, 3), (4, 5)]), sc("c", &[])]);
    }

    #[test]
    fn disorder_and_early_ends_are_errors() {
        let got = streamed(vec![Some(Ok(vec![sc("b", &[]), sc("a", &[])]))], false);
        assert!(matches!(got.last(), Some(Err(e)) if e.to_string().contains("not in label order")), "{got:?}");
        let got = streamed(vec![Some(Ok(vec![sc("a", &[])]))], true);
        assert!(matches!(got[..], [Err(_)]), "a stream without its end loses the held series: {got:?}");
        let got = streamed(vec![Some(Ok(vec![sc("a", &[])])), Some(Err(StorageError::Unavailable("x".into())))], false);
        assert!(matches!(got[..], [Err(_)]), "{got:?}");
    }

    #[test]
    fn requests_carry_matchers_and_range() {
        let req = SelectRequest::new(
            vec![
                Matcher::new(MatchOp::Equal, "__name__", "up").unwrap(),
                Matcher::new(MatchOp::NotRegex, "job", "x.*").unwrap(),
            ],
            10,
            20,
        );
        let r = read_request(&req);
        assert_eq!(r.accepted_response_types, [1]);
        let q = &r.queries[0];
        assert_eq!((q.start_timestamp_ms, q.end_timestamp_ms), (10, 20));
        assert_eq!(q.matchers[1], pb::LabelMatcher { r#type: 3, name: "job".into(), value: "x.*".into() });
        assert!(q.hints.is_none());
    }
}
