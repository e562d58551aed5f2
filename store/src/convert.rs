//! Between the StoreAPI's wire messages and the read interface. Everything that comes from the
//! network is checked here: a request that cannot be served as sent is an
//! [`StorageError::InvalidArgument`] naming the field, never a panic.

use bytes::Bytes;
use strata_proto::thanos as pb;
use strata_proto::thanos::info as infopb;
use strata_storage::{
    Aggr, Grouping, LabelsRequest, PartialResponse, ReadScope, SelectHints, SelectRequest, SeriesChunks, ShardInfo,
    StorageError,
};
use strata_tsdb::block::ChunkData;
use strata_tsdb::chunkenc::{AggrChunk, AggrType, Encoding, SubChunk};
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::{MatchOp, Matcher};
use twox_hash::XxHash64;

use crate::{Component, StoreInfo, TsdbInfo};

/// The gRPC metadata key that carries the tenant of a read (Thanos's `tenancy.DefaultTenantHeader`,
/// lower-cased as gRPC requires).
pub const TENANT_METADATA_KEY: &str = "thanos-tenant";

pub fn labels_to_proto(labels: &Labels) -> Vec<pb::Label> {
    labels.iter().map(|(name, value)| pb::Label { name: name.to_owned(), value: value.to_owned() }).collect()
}

/// A label set from the wire. Senders sort their labels, but a set is sorted here in any case and
/// empty values dropped, so that a careless peer cannot break the order of a merge.
pub fn labels_from_proto(labels: &[pb::Label]) -> Labels {
    labels_from_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// The label set of a series from the wire, as [`labels_from_proto`] makes it.
pub fn series_labels(s: &pb::Series) -> Labels {
    labels_from_pairs(s.labels())
}

fn labels_from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Labels {
    let mut names = pairs.clone().map(|(name, _)| name);
    let sorted = names.next().is_none_or(|mut prev| {
        names.all(|name| {
            let ordered = prev < name;
            prev = name;
            ordered
        })
    });
    if sorted {
        Labels::from_sorted_unchecked(pairs)
    } else {
        let pairs: Vec<(&str, &str)> = pairs.collect();
        Labels::from_pairs(&pairs)
    }
}

pub fn matcher_to_proto(m: &Matcher) -> pb::LabelMatcher {
    let r#type = match m.op {
        MatchOp::Equal => pb::label_matcher::Type::Eq,
        MatchOp::NotEqual => pb::label_matcher::Type::Neq,
        MatchOp::Regex => pb::label_matcher::Type::Re,
        MatchOp::NotRegex => pb::label_matcher::Type::Nre,
    };
    pb::LabelMatcher { r#type: r#type as i32, name: m.name.clone(), value: m.value.clone() }
}

pub fn matcher_from_proto(m: &pb::LabelMatcher) -> Result<Matcher, StorageError> {
    let op = match pb::label_matcher::Type::try_from(m.r#type) {
        Ok(pb::label_matcher::Type::Eq) => MatchOp::Equal,
        Ok(pb::label_matcher::Type::Neq) => MatchOp::NotEqual,
        Ok(pb::label_matcher::Type::Re) => MatchOp::Regex,
        Ok(pb::label_matcher::Type::Nre) => MatchOp::NotRegex,
        Err(_) => {
            return Err(StorageError::InvalidArgument(format!(
                "matcher on label {:?}: unknown matcher type {}",
                m.name, m.r#type
            )))
        }
    };
    Ok(Matcher::new(op, m.name.clone(), m.value.clone())?)
}

fn matchers_from_proto(ms: &[pb::LabelMatcher]) -> Result<Vec<Matcher>, StorageError> {
    ms.iter().map(matcher_from_proto).collect()
}

fn partial_response(strategy: i32, disabled: bool) -> Result<PartialResponse, StorageError> {
    match pb::PartialResponseStrategy::try_from(strategy) {
        _ if disabled => Ok(PartialResponse::Abort),
        Ok(pb::PartialResponseStrategy::Warn) => Ok(PartialResponse::Warn),
        Ok(pb::PartialResponseStrategy::Abort) => Ok(PartialResponse::Abort),
        Err(_) => Err(StorageError::InvalidArgument(format!("unknown partial_response_strategy {strategy}"))),
    }
}

fn partial_response_to_proto(p: PartialResponse) -> i32 {
    match p {
        PartialResponse::Warn => pb::PartialResponseStrategy::Warn as i32,
        PartialResponse::Abort => pb::PartialResponseStrategy::Abort as i32,
    }
}

/// A limit field: zero or less means none (as Thanos reads it).
fn limit_from_proto(limit: i64) -> usize {
    usize::try_from(limit).unwrap_or(0)
}

fn aggr_from_proto(a: i32) -> Result<Aggr, StorageError> {
    Ok(match pb::Aggr::try_from(a) {
        Ok(pb::Aggr::Raw) => Aggr::Raw,
        Ok(pb::Aggr::Count) => Aggr::Count,
        Ok(pb::Aggr::Sum) => Aggr::Sum,
        Ok(pb::Aggr::Min) => Aggr::Min,
        Ok(pb::Aggr::Max) => Aggr::Max,
        Ok(pb::Aggr::Counter) => Aggr::Counter,
        Err(_) => return Err(StorageError::InvalidArgument(format!("unknown aggregate {a}"))),
    })
}

fn aggr_to_proto(a: Aggr) -> i32 {
    (match a {
        Aggr::Raw => pb::Aggr::Raw,
        Aggr::Count => pb::Aggr::Count,
        Aggr::Sum => pb::Aggr::Sum,
        Aggr::Min => pb::Aggr::Min,
        Aggr::Max => pb::Aggr::Max,
        Aggr::Counter => pb::Aggr::Counter,
    }) as i32
}

fn shard_from_proto(s: &pb::ShardInfo) -> Result<Option<ShardInfo>, StorageError> {
    if s.total_shards <= 0 {
        return Ok(None);
    }
    if s.shard_index < 0 || s.shard_index >= s.total_shards {
        return Err(StorageError::InvalidArgument(format!(
            "shard_info: shard_index {} is not in [0, {})",
            s.shard_index, s.total_shards
        )));
    }
    // Both are positive and fit: checked above.
    Ok(Some(ShardInfo {
        shard_index: s.shard_index.unsigned_abs(),
        total_shards: s.total_shards.unsigned_abs(),
        by: s.by,
        labels: s.labels.clone(),
    }))
}

/// A `SeriesRequest` as the read interface takes it; `tenant` comes from the call's metadata.
pub fn select_request_from_proto(r: &pb::SeriesRequest, tenant: Option<String>) -> Result<SelectRequest, StorageError> {
    if r.min_time > r.max_time {
        return Err(StorageError::InvalidArgument(format!("min_time {} is after max_time {}", r.min_time, r.max_time)));
    }
    let hints = match &r.query_hints {
        Some(h) => SelectHints {
            step: h.step_millis,
            range: h.range.as_ref().map_or(0, |r| r.millis),
            func: h.func.as_ref().map(|f| f.name.clone()).filter(|f| !f.is_empty()),
            grouping: h.grouping.as_ref().map(|g| Grouping { by: g.by, labels: g.labels.clone() }),
        },
        None => SelectHints { step: r.step, range: r.range, func: None, grouping: None },
    };
    Ok(SelectRequest {
        min_time: r.min_time,
        max_time: r.max_time,
        matchers: matchers_from_proto(&r.matchers)?,
        hints,
        shard: r.shard_info.as_ref().map(shard_from_proto).transpose()?.flatten(),
        max_resolution_window: r.max_resolution_window.max(0),
        aggregates: r.aggregates.iter().map(|&a| aggr_from_proto(a)).collect::<Result<_, _>>()?,
        skip_chunks: r.skip_chunks,
        limit: limit_from_proto(r.limit),
        without_replica_labels: r.without_replica_labels.clone(),
        scope: ReadScope {
            tenant,
            partial_response: partial_response(r.partial_response_strategy, r.partial_response_disabled)?,
            store_matchers: Vec::new(),
        },
    })
}

/// The `SeriesRequest` a client sends for `r` (store matchers and the tenant travel elsewhere:
/// the former prune stores before any request, the latter goes in metadata).
pub fn select_request_to_proto(r: &SelectRequest, response_batch_size: i64) -> pb::SeriesRequest {
    let h = &r.hints;
    pb::SeriesRequest {
        min_time: r.min_time,
        max_time: r.max_time,
        matchers: r.matchers.iter().map(matcher_to_proto).collect(),
        max_resolution_window: r.max_resolution_window,
        aggregates: r.aggregates.iter().map(|&a| aggr_to_proto(a)).collect(),
        partial_response_disabled: false,
        partial_response_strategy: partial_response_to_proto(r.scope.partial_response),
        skip_chunks: r.skip_chunks,
        hints: None,
        step: h.step,
        range: h.range,
        query_hints: Some(pb::QueryHints {
            step_millis: h.step,
            func: h.func.as_ref().map(|name| pb::Func { name: name.clone() }),
            grouping: h.grouping.as_ref().map(|g| pb::Grouping { by: g.by, labels: g.labels.clone() }),
            range: Some(pb::Range { millis: h.range }),
            projection_labels: Vec::new(),
            projection_include: false,
        }),
        shard_info: r.shard.as_ref().map(|s| pb::ShardInfo {
            shard_index: i64::try_from(s.shard_index).unwrap_or(i64::MAX),
            total_shards: i64::try_from(s.total_shards).unwrap_or(i64::MAX),
            by: s.by,
            labels: s.labels.clone(),
        }),
        without_replica_labels: r.without_replica_labels.clone(),
        limit: i64::try_from(r.limit).unwrap_or(i64::MAX),
        response_batch_size,
    }
}

/// Which of `LabelNames` or `LabelValues` a labels request came from; they differ only in
/// field numbers.
pub struct LabelsFields<'a> {
    pub start: i64,
    pub end: i64,
    pub matchers: &'a [pb::LabelMatcher],
    pub without_replica_labels: &'a [String],
    pub limit: i64,
    pub partial_response_strategy: i32,
    pub partial_response_disabled: bool,
}

impl<'a> From<&'a pb::LabelNamesRequest> for LabelsFields<'a> {
    fn from(r: &'a pb::LabelNamesRequest) -> Self {
        LabelsFields {
            start: r.start,
            end: r.end,
            matchers: &r.matchers,
            without_replica_labels: &r.without_replica_labels,
            limit: r.limit,
            partial_response_strategy: r.partial_response_strategy,
            partial_response_disabled: r.partial_response_disabled,
        }
    }
}

impl<'a> From<&'a pb::LabelValuesRequest> for LabelsFields<'a> {
    fn from(r: &'a pb::LabelValuesRequest) -> Self {
        LabelsFields {
            start: r.start,
            end: r.end,
            matchers: &r.matchers,
            without_replica_labels: &r.without_replica_labels,
            limit: r.limit,
            partial_response_strategy: r.partial_response_strategy,
            partial_response_disabled: r.partial_response_disabled,
        }
    }
}

/// A `LabelNamesRequest` or `LabelValuesRequest` as the read interface takes it.
pub fn labels_request_from_proto(r: LabelsFields<'_>, tenant: Option<String>) -> Result<LabelsRequest, StorageError> {
    // Thanos's clients send 0 for "no start" and 0 or a far future for "no end".
    let (min_time, max_time) = (r.start, if r.end == 0 { i64::MAX } else { r.end });
    if min_time > max_time {
        return Err(StorageError::InvalidArgument(format!("start {min_time} is after end {max_time}")));
    }
    Ok(LabelsRequest {
        min_time,
        max_time,
        matchers: matchers_from_proto(r.matchers)?,
        limit: limit_from_proto(r.limit),
        without_replica_labels: r.without_replica_labels.to_vec(),
        scope: ReadScope {
            tenant,
            partial_response: partial_response(r.partial_response_strategy, r.partial_response_disabled)?,
            store_matchers: Vec::new(),
        },
    })
}

pub fn label_names_request_to_proto(r: &LabelsRequest) -> pb::LabelNamesRequest {
    pb::LabelNamesRequest {
        partial_response_disabled: false,
        partial_response_strategy: partial_response_to_proto(r.scope.partial_response),
        start: r.min_time,
        end: r.max_time,
        hints: None,
        matchers: r.matchers.iter().map(matcher_to_proto).collect(),
        without_replica_labels: r.without_replica_labels.clone(),
        limit: i64::try_from(r.limit).unwrap_or(i64::MAX),
    }
}

pub fn label_values_request_to_proto(name: &str, r: &LabelsRequest) -> pb::LabelValuesRequest {
    pb::LabelValuesRequest {
        label: name.to_owned(),
        partial_response_disabled: false,
        partial_response_strategy: partial_response_to_proto(r.scope.partial_response),
        start: r.min_time,
        end: r.max_time,
        hints: None,
        matchers: r.matchers.iter().map(matcher_to_proto).collect(),
        without_replica_labels: r.without_replica_labels.clone(),
        limit: i64::try_from(r.limit).unwrap_or(i64::MAX),
    }
}

/// The wire encoding of a chunk's samples: Prometheus's number minus one. A downsampled chunk
/// has none: its aggregates travel in fields of their own.
fn encoding_to_proto(e: Encoding) -> Option<pb::chunk::Encoding> {
    match e {
        Encoding::Xor => Some(pb::chunk::Encoding::Xor),
        Encoding::Histogram => Some(pb::chunk::Encoding::Histogram),
        Encoding::FloatHistogram => Some(pb::chunk::Encoding::FloatHistogram),
        Encoding::None | Encoding::Aggr => None,
    }
}

fn encoding_from_proto(e: i32) -> Option<Encoding> {
    match pb::chunk::Encoding::try_from(e).ok()? {
        pb::chunk::Encoding::Xor => Some(Encoding::Xor),
        pb::chunk::Encoding::Histogram => Some(Encoding::Histogram),
        pb::chunk::Encoding::FloatHistogram => Some(Encoding::FloatHistogram),
    }
}

/// XXH64 of a chunk's bytes, the `hash` Thanos's stores send and its proxy compares.
pub fn chunk_hash(data: &[u8]) -> u64 {
    XxHash64::oneshot(0, data)
}

/// The field of `storepb.AggrChunk` that carries aggregate `t`.
fn aggr_field(c: &mut pb::AggrChunk, t: AggrType) -> &mut Option<pb::Chunk> {
    match t {
        AggrType::Count => &mut c.count,
        AggrType::Sum => &mut c.sum,
        AggrType::Min => &mut c.min,
        AggrType::Max => &mut c.max,
        AggrType::Counter => &mut c.counter,
    }
}

/// A series as the wire carries it; chunk bytes are shared, not copied. Raw chunks go in `raw`;
/// of a downsampled chunk, each aggregate `aggregates` asks for goes in its field, as Thanos's
/// bucket store sends them (`populateChunk`): one the chunk lacks is an error, as there, and so
/// is a chunk that does not decode. A chunk with no wire encoding (never produced by a valid
/// source) is left out.
pub fn series_to_proto(s: SeriesChunks, aggregates: &[Aggr]) -> Result<pb::Series, StorageError> {
    let mut chunks = Vec::with_capacity(s.chunks.len());
    for c in s.chunks {
        let mut out = pb::AggrChunk { min_time: c.min_time, max_time: c.max_time, ..pb::AggrChunk::default() };
        if c.encoding == Encoding::Aggr {
            let aggr = AggrChunk::decode(&c.data).map_err(|e| {
                StorageError::Tsdb(strata_tsdb::Error::CorruptChunk(format!(
                    "series {}: chunk [{}, {}]: {e}",
                    s.labels, c.min_time, c.max_time
                )))
            })?;
            for t in aggregates.iter().filter_map(|a| a.aggr_type()) {
                let Some(sub) = aggr.get(t) else {
                    return Err(StorageError::Tsdb(strata_tsdb::Error::CorruptChunk(format!(
                        "series {}: downsampled chunk [{}, {}]: aggregate {} does not exist",
                        s.labels,
                        c.min_time,
                        c.max_time,
                        t.name()
                    ))));
                };
                let Some(r#type) = encoding_to_proto(sub.encoding) else { continue };
                *aggr_field(&mut out, t) =
                    Some(pb::Chunk { r#type: r#type as i32, hash: chunk_hash(&sub.data), data: sub.data.clone() });
            }
        } else {
            let Some(r#type) = encoding_to_proto(c.encoding) else { continue };
            out.raw = Some(pb::Chunk { r#type: r#type as i32, hash: chunk_hash(&c.data), data: c.data });
        }
        chunks.push(out);
    }
    Ok(pb::Series::new(s.labels.iter(), chunks))
}

/// A series from the wire. `store` names the sender for errors. A chunk with `raw` data is that
/// chunk; one with aggregates only becomes a downsampled chunk (encoding 0xFF) holding the
/// aggregates sent.
pub fn series_from_proto(s: pb::Series, store: &str) -> Result<SeriesChunks, StorageError> {
    let labels = series_labels(&s);
    let mut chunks = Vec::with_capacity(s.chunks.len());
    for mut c in s.chunks {
        let bad_encoding =
            |t: i32| StorageError::Unavailable(format!("store {store}: series {labels}: unknown chunk encoding {t}"));
        let (encoding, data) = match c.raw.take() {
            Some(raw) => (encoding_from_proto(raw.r#type).ok_or_else(|| bad_encoding(raw.r#type))?, raw.data),
            None => {
                let mut aggr = AggrChunk::default();
                for t in AggrType::ALL {
                    if let Some(sub) = aggr_field(&mut c, t).take() {
                        let encoding = encoding_from_proto(sub.r#type).ok_or_else(|| bad_encoding(sub.r#type))?;
                        aggr.set(t, Some(SubChunk { encoding, data: sub.data }));
                    }
                }
                if aggr.is_empty() {
                    return Err(StorageError::Unavailable(format!(
                        "store {store}: series {labels}: chunk [{}, {}] has neither raw data nor aggregates",
                        c.min_time, c.max_time
                    )));
                }
                (Encoding::Aggr, Bytes::from(aggr.encode()))
            }
        };
        chunks.push(ChunkData { min_time: c.min_time, max_time: c.max_time, encoding, data });
    }
    Ok(SeriesChunks { labels, chunks })
}

/// How a failed read is told to a gRPC client.
pub fn status_from_error(e: &StorageError) -> tonic::Status {
    let message = e.to_string();
    match e {
        StorageError::InvalidArgument(_) => tonic::Status::invalid_argument(message),
        StorageError::LimitExceeded { .. } => tonic::Status::resource_exhausted(message),
        StorageError::Unavailable(_) => tonic::Status::unavailable(message),
        StorageError::Contract(_) | StorageError::Tsdb(_) => tonic::Status::internal(message),
    }
}

/// A gRPC error from the store at `store` as the read interface reports it.
pub fn error_from_status(store: &str, s: &tonic::Status) -> StorageError {
    let message = format!("store {store}: {}", s.message());
    match s.code() {
        tonic::Code::InvalidArgument => StorageError::InvalidArgument(message),
        _ => StorageError::Unavailable(format!("{message} ({:?})", s.code())),
    }
}

pub fn info_to_proto(info: &StoreInfo) -> infopb::InfoResponse {
    let zset = |l: &Labels| pb::ZLabelSet { labels: labels_to_proto(l) };
    infopb::InfoResponse {
        label_sets: info.label_sets.iter().map(zset).collect(),
        component_type: info.component.as_str().to_owned(),
        store: Some(infopb::StoreInfo {
            min_time: info.min_time,
            max_time: info.max_time,
            supports_sharding: true,
            supports_without_replica_labels: true,
            tsdb_infos: info
                .tsdb_infos
                .iter()
                .map(|t| infopb::TsdbInfo { labels: Some(zset(&t.labels)), min_time: t.min_time, max_time: t.max_time })
                .collect(),
        }),
        ..infopb::InfoResponse::default()
    }
}

/// What a remote endpoint's Info answer says about its StoreAPI; `None` when it serves none.
pub fn info_from_proto(r: &infopb::InfoResponse) -> Option<StoreInfo> {
    let store = r.store.as_ref()?;
    Some(StoreInfo {
        component: Component::parse(&r.component_type).unwrap_or(Component::Store),
        label_sets: r.label_sets.iter().map(|s| labels_from_proto(&s.labels)).collect(),
        min_time: store.min_time,
        max_time: store.max_time,
        tsdb_infos: store
            .tsdb_infos
            .iter()
            .map(|t| TsdbInfo {
                labels: t.labels.as_ref().map_or_else(Labels::empty, |l| labels_from_proto(&l.labels)),
                min_time: t.min_time,
                max_time: t.max_time,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn matcher(t: pb::label_matcher::Type, name: &str, value: &str) -> pb::LabelMatcher {
        pb::LabelMatcher { r#type: t as i32, name: name.into(), value: value.into() }
    }

    #[test]
    fn requests_round_trip() {
        let req = SelectRequest {
            min_time: 10,
            max_time: 20,
            matchers: vec![
                Matcher::new(MatchOp::Equal, "__name__", "up").unwrap(),
                Matcher::new(MatchOp::NotRegex, "job", "a|b").unwrap(),
            ],
            hints: SelectHints {
                step: 15_000,
                range: 300_000,
                func: Some("rate".into()),
                grouping: Some(Grouping { by: true, labels: vec!["job".into()] }),
            },
            shard: Some(ShardInfo { shard_index: 1, total_shards: 3, by: false, labels: vec!["instance".into()] }),
            max_resolution_window: 300_000,
            aggregates: vec![Aggr::Count, Aggr::Sum],
            skip_chunks: true,
            limit: 7,
            without_replica_labels: vec!["replica".into()],
            scope: ReadScope { tenant: None, partial_response: PartialResponse::Warn, store_matchers: Vec::new() },
        };
        let wire = select_request_to_proto(&req, 64).encode_to_vec();
        let decoded = pb::SeriesRequest::decode(wire.as_slice()).unwrap();
        assert_eq!(decoded.response_batch_size, 64);
        let back = select_request_from_proto(&decoded, Some("team-a".into())).unwrap();
        assert_eq!(back.hints, req.hints);
        assert_eq!(back.shard, req.shard);
        assert_eq!(back.aggregates, req.aggregates);
        assert_eq!((back.min_time, back.max_time, back.limit, back.skip_chunks), (10, 20, 7, true));
        assert_eq!(back.without_replica_labels, ["replica"]);
        assert_eq!(back.scope.partial_response, PartialResponse::Warn);
        assert_eq!(back.scope.tenant.as_deref(), Some("team-a"));
        let ms: Vec<String> = back.matchers.iter().map(|m| format!("{}{}{}", m.name, m.op, m.value)).collect();
        assert_eq!(ms, ["__name__=up", "job!~a|b"]);
    }

    #[test]
    fn bad_requests_are_invalid_arguments() {
        let base = pb::SeriesRequest { min_time: 0, max_time: 10, ..pb::SeriesRequest::default() };
        let cases = [
            ("inverted range", pb::SeriesRequest { min_time: 11, ..base.clone() }),
            (
                "bad regex",
                pb::SeriesRequest { matchers: vec![matcher(pb::label_matcher::Type::Re, "a", "(")], ..base.clone() },
            ),
            (
                "unknown matcher type",
                pb::SeriesRequest {
                    matchers: vec![pb::LabelMatcher { r#type: 9, name: "a".into(), value: "b".into() }],
                    ..base.clone()
                },
            ),
            ("unknown aggregate", pb::SeriesRequest { aggregates: vec![42], ..base.clone() }),
            ("unknown strategy", pb::SeriesRequest { partial_response_strategy: 5, ..base.clone() }),
            (
                "shard out of range",
                pb::SeriesRequest {
                    shard_info: Some(pb::ShardInfo { shard_index: 3, total_shards: 3, by: true, labels: vec![] }),
                    ..base.clone()
                },
            ),
            (
                "negative shard",
                pb::SeriesRequest {
                    shard_info: Some(pb::ShardInfo { shard_index: -1, total_shards: 3, by: true, labels: vec![] }),
                    ..base.clone()
                },
            ),
        ];
        for (name, req) in cases {
            let e = select_request_from_proto(&req, None).unwrap_err();
            assert!(matches!(e, StorageError::InvalidArgument(_)), "{name}: {e:?}");
            assert_eq!(status_from_error(&e).code(), tonic::Code::InvalidArgument, "{name}");
        }
        // Huge and negative limits are no error: negative means none, huge is a bound.
        for limit in [i64::MAX, -5] {
            assert!(select_request_from_proto(&pb::SeriesRequest { limit, ..base.clone() }, None).is_ok());
        }
    }

    #[test]
    fn series_round_trip_without_copying_chunks() {
        let data = bytes::Bytes::from_static(&[0, 1, 2, 3]);
        let s = SeriesChunks {
            labels: Labels::from_pairs(&[("__name__", "up"), ("job", "a")]),
            chunks: vec![ChunkData { min_time: 1, max_time: 2, encoding: Encoding::Xor, data: data.clone() }],
        };
        let wire = series_to_proto(s.clone(), &[Aggr::Count, Aggr::Sum]).unwrap();
        let raw = wire.chunks[0].raw.as_ref().unwrap();
        assert_eq!(raw.data.as_ptr(), data.as_ptr(), "shared, not copied");
        assert_eq!(raw.hash, chunk_hash(&data));
        assert_eq!(raw.r#type, pb::chunk::Encoding::Xor as i32);
        assert_eq!(series_from_proto(wire, "s").unwrap(), s);
    }

    /// A downsampled chunk travels as the aggregates asked for, each in its field with its
    /// hash (Thanos's `populateChunk`), and comes back as a downsampled chunk holding them.
    #[test]
    fn downsampled_chunks_send_the_asked_aggregates() {
        let sub = |b: &'static [u8]| Some(SubChunk { encoding: Encoding::Xor, data: Bytes::from_static(b) });
        let full =
            AggrChunk::from_parts([sub(&[0, 1, 10]), sub(&[0, 1, 11]), sub(&[0, 1, 12]), sub(&[0, 1, 13]), None]);
        let s = SeriesChunks {
            labels: Labels::from_pairs(&[("__name__", "up")]),
            chunks: vec![ChunkData { min_time: 1, max_time: 2, encoding: Encoding::Aggr, data: full.encode().into() }],
        };
        let wire = series_to_proto(s.clone(), &[Aggr::Sum, Aggr::Count]).unwrap();
        let c = &wire.chunks[0];
        assert!(c.raw.is_none() && c.min.is_none() && c.max.is_none() && c.counter.is_none());
        assert_eq!(&c.count.as_ref().unwrap().data[..], &[0, 1, 10]);
        assert_eq!(c.sum.as_ref().unwrap().hash, chunk_hash(&[0, 1, 11]));
        let back = series_from_proto(wire, "s").unwrap();
        let mut want = AggrChunk::default();
        want.set(AggrType::Count, full.get(AggrType::Count).cloned());
        want.set(AggrType::Sum, full.get(AggrType::Sum).cloned());
        assert_eq!(back.chunks[0].encoding, Encoding::Aggr);
        assert_eq!(AggrChunk::decode(&back.chunks[0].data).unwrap(), want);

        // An aggregate the chunk lacks is an error naming it; so is a chunk with nothing.
        let err = series_to_proto(s, &[Aggr::Counter]).unwrap_err().to_string();
        assert!(err.contains("aggregate counter does not exist"), "{err}");
        let empty = pb::Series::new(
            [("__name__", "up")],
            vec![pb::AggrChunk { min_time: 1, max_time: 2, ..pb::AggrChunk::default() }],
        );
        let err = series_from_proto(empty, "s").unwrap_err().to_string();
        assert!(err.contains("neither raw data nor aggregates"), "{err}");
    }

    #[test]
    fn unsorted_wire_labels_are_sorted() {
        let wire =
            [pb::Label { name: "z".into(), value: "1".into() }, pb::Label { name: "a".into(), value: "2".into() }];
        assert_eq!(labels_from_proto(&wire), Labels::from_pairs(&[("a", "2"), ("z", "1")]));
    }
}
