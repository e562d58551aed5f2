//! The reference the hand-written decoders are held to: prost's generated decoder, its result
//! turned into `WriteBatch` form (remote write) or compared field by field (`thanos.Series`).
//! Shared by the property tests and the fuzz targets.

use prost::Message;
use strata_proto::prometheus::WriteRequest;
use strata_proto::remote_write::{Metadata, MetricType, Sample, Series, WriteBatch};
use strata_proto::thanos;
use strata_proto::write_v2::Request;

/// A v1 request as the hand-written decoder should see it.
pub fn from_v1(req: &WriteRequest) -> WriteBatch<'_> {
    let mut batch = WriteBatch::default();
    for ts in &req.timeseries {
        let labels_start = batch.labels.len() as u32;
        let samples_start = batch.samples.len() as u32;
        batch.labels.extend(ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        batch.samples.extend(ts.samples.iter().map(|s| Sample {
            timestamp: s.timestamp,
            value: s.value,
            start_timestamp: 0,
        }));
        batch.histograms += ts.histograms.len();
        batch.exemplars += ts.exemplars.len();
        batch.series.push(Series {
            labels: labels_start..batch.labels.len() as u32,
            samples: samples_start..batch.samples.len() as u32,
            histograms: ts.histograms.len() as u32,
            exemplars: ts.exemplars.len() as u32,
            created_timestamp: 0,
        });
    }
    batch.metadata.extend(req.metadata.iter().map(|m| Metadata {
        metric_type: MetricType::from(m.r#type),
        metric_family_name: &m.metric_family_name,
        help: &m.help,
        unit: &m.unit,
    }));
    batch
}

/// A v2 request as the hand-written decoder should see it, or `None` if it breaks a symbol-table
/// rule the decoder enforces (first symbol not empty, reference out of range, odd label refs).
pub fn from_v2(req: &Request) -> Option<WriteBatch<'_>> {
    if req.symbols.first().is_some_and(|s| !s.is_empty()) {
        return None;
    }
    let sym = |r: u32| match req.symbols.get(r as usize) {
        Some(s) => Some(s.as_str()),
        None if r == 0 => Some(""),
        None => None,
    };
    let mut batch = WriteBatch::default();
    for ts in &req.timeseries {
        if ts.labels_refs.len() % 2 == 1 {
            return None;
        }
        for e in &ts.exemplars {
            if e.labels_refs.len() % 2 == 1 || e.labels_refs.iter().any(|&r| sym(r).is_none()) {
                return None;
            }
        }
        let labels_start = batch.labels.len() as u32;
        let samples_start = batch.samples.len() as u32;
        for pair in ts.labels_refs.chunks(2) {
            batch.labels.push((sym(pair[0])?, sym(pair[1])?));
        }
        batch.samples.extend(ts.samples.iter().map(|s| Sample {
            timestamp: s.timestamp,
            value: s.value,
            start_timestamp: s.start_timestamp,
        }));
        let md = ts.metadata.unwrap_or_default();
        let (help, unit) = (sym(md.help_ref)?, sym(md.unit_ref)?);
        let metric_type = MetricType::from(md.r#type);
        if metric_type != MetricType::Unknown || !help.is_empty() || !unit.is_empty() {
            let labels = &batch.labels[labels_start as usize..];
            let series_name = labels.iter().find(|l| l.0 == "__name__").map_or("", |l| l.1);
            let metric_family_name = metric_type.family_name(series_name);
            batch.metadata.push(Metadata { metric_type, metric_family_name, help, unit });
        }
        batch.histograms += ts.histograms.len();
        batch.exemplars += ts.exemplars.len();
        batch.series.push(Series {
            labels: labels_start..batch.labels.len() as u32,
            samples: samples_start..batch.samples.len() as u32,
            histograms: ts.histograms.len() as u32,
            exemplars: ts.exemplars.len() as u32,
            created_timestamp: ts.created_timestamp,
        });
    }
    Some(batch)
}

/// Equal content, with sample values compared by bits so NaNs (the staleness marker among them)
/// must match exactly.
pub fn same(a: &WriteBatch, b: &WriteBatch) -> bool {
    let bits = |s: &[Sample]| s.iter().map(|s| (s.timestamp, s.value.to_bits(), s.start_timestamp)).collect::<Vec<_>>();
    a.series == b.series
        && a.labels == b.labels
        && bits(&a.samples) == bits(&b.samples)
        && a.histograms == b.histograms
        && a.exemplars == b.exemplars
        && a.metadata == b.metadata
}

/// Decodes `bytes` as v1 with both decoders; panics if they disagree on success or content.
/// Returns whether it decoded.
pub fn check_v1(bytes: &[u8]) -> bool {
    let ours = WriteBatch::decode_v1(bytes);
    let theirs = WriteRequest::decode(bytes);
    match (&ours, &theirs) {
        (Ok(a), Ok(req)) => {
            let expected = from_v1(req);
            assert!(same(a, &expected), "v1 content differs for {bytes:02x?}:\nours {a:?}\nprost {expected:?}");
            true
        }
        (Err(_), Err(_)) => false,
        _ => panic!("v1 decoders disagree on {bytes:02x?}:\nours {ours:?}\nprost {theirs:?}"),
    }
}

/// Decodes `bytes` as v2 with both decoders (prost's result checked against the symbol-table
/// rules); panics if they disagree on success or content. Returns whether it decoded.
pub fn check_v2(bytes: &[u8]) -> bool {
    let ours = WriteBatch::decode_v2(bytes);
    let theirs = Request::decode(bytes);
    let expected = theirs.as_ref().ok().and_then(from_v2);
    match (&ours, &expected) {
        (Ok(a), Some(e)) => {
            assert!(same(a, e), "v2 content differs for {bytes:02x?}:\nours {a:?}\nprost {e:?}");
            true
        }
        (Err(_), None) => false,
        _ => panic!("v2 decoders disagree on {bytes:02x?}:\nours {ours:?}\nprost {theirs:?}"),
    }
}

/// `thanos.Series` as prost generates it: the reference for the hand-written `thanos::Series`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GeneratedSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<thanos::Label>,
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<thanos::AggrChunk>,
}

/// Decodes `bytes` as a `thanos.Series` with both decoders; panics if they disagree on success,
/// labels, chunks or the re-encoding. Returns whether it decoded.
pub fn check_thanos_series(bytes: &[u8]) -> bool {
    let ours = thanos::Series::decode(bytes);
    let theirs = GeneratedSeries::decode(bytes);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => {
            let expected: Vec<(&str, &str)> = b.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
            assert_eq!(a.labels().collect::<Vec<_>>(), expected, "labels differ for {bytes:02x?}");
            assert_eq!(a.chunks, b.chunks, "chunks differ for {bytes:02x?}");
            assert_eq!(a.encode_to_vec(), b.encode_to_vec(), "re-encodings differ for {bytes:02x?}");
            true
        }
        (Err(_), Err(_)) => false,
        _ => panic!("thanos.Series decoders disagree on {bytes:02x?}:\nours {ours:?}\nprost {theirs:?}"),
    }
}

/// `thanos.WriteRequest` as prost generates it: the reference for the hand-written
/// `thanos::WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GeneratedWriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<strata_proto::prometheus::TimeSeries>,
    #[prost(string, tag = "2")]
    pub tenant: String,
    #[prost(int64, tag = "3")]
    pub replica: i64,
}

/// Decodes `bytes` as a `thanos.WriteRequest` with both decoders (ours then its series through
/// `WriteBatch::decode_v1`); panics if they disagree on success or content. Returns whether it
/// decoded.
pub fn check_thanos_write(bytes: &[u8]) -> bool {
    let ours = thanos::WriteRequest::decode(bytes);
    let theirs = GeneratedWriteRequest::decode(bytes);
    let batch = ours.as_ref().ok().map(|r| r.batch());
    match (&ours, &batch, &theirs) {
        (Ok(a), Some(Ok(batch)), Ok(b)) => {
            let req = WriteRequest { timeseries: b.timeseries.clone(), ..Default::default() };
            let expected = from_v1(&req);
            assert!(same(batch, &expected), "content differs for {bytes:02x?}:\nours {batch:?}\nprost {expected:?}");
            assert_eq!((&a.tenant, a.replica), (&b.tenant, b.replica), "tenant or replica differ for {bytes:02x?}");
            true
        }
        (Err(_), _, Err(_)) | (_, Some(Err(_)), Err(_)) => false,
        _ => {
            panic!("thanos.WriteRequest decoders disagree on {bytes:02x?}:\nours {ours:?} {batch:?}\nprost {theirs:?}")
        }
    }
}
