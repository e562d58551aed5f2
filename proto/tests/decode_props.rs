//! Property tests: the hand-written decoder against prost's generated one, on generated requests,
//! on mutations of their encodings, on arbitrary bytes and on random field soups.

mod common;

use common::{
    check_thanos_series, check_thanos_write, check_v1, check_v2, from_v1, from_v2, same, GeneratedSeries,
    GeneratedWriteRequest,
};
use proptest::prelude::*;
use prost::Message;
use strata_proto::prometheus as v1;
use strata_proto::remote_write::WriteBatch;
use strata_proto::thanos;
use strata_proto::write_v2 as v2;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![any::<f64>(), any::<u64>().prop_map(f64::from_bits), Just(f64::from_bits(STALE_NAN)), Just(0.0),]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-z_]{0,12}", 1 => any::<String>(), 1 => Just("__name__".to_string())]
}

fn enum_value() -> impl Strategy<Value = i32> {
    prop_oneof![8 => 0..8i32, 1 => any::<i32>()]
}

fn v1_label() -> impl Strategy<Value = v1::Label> {
    (text(), text()).prop_map(|(name, value)| v1::Label { name, value })
}

fn v1_span() -> impl Strategy<Value = v1::BucketSpan> {
    (any::<i32>(), any::<u32>()).prop_map(|(offset, length)| v1::BucketSpan { offset, length })
}

fn v1_histogram() -> impl Strategy<Value = v1::Histogram> {
    use v1::histogram::{Count, ZeroCount};
    let count = prop_oneof![
        Just(None),
        any::<u64>().prop_map(|c| Some(Count::CountInt(c))),
        float().prop_map(|c| Some(Count::CountFloat(c)))
    ];
    let zero = prop_oneof![
        Just(None),
        any::<u64>().prop_map(|c| Some(ZeroCount::ZeroCountInt(c))),
        float().prop_map(|c| Some(ZeroCount::ZeroCountFloat(c)))
    ];
    let spans = || prop::collection::vec(v1_span(), 0..3);
    let deltas = || prop::collection::vec(any::<i64>(), 0..4);
    let counts = || prop::collection::vec(float(), 0..4);
    (
        (count, zero, float(), any::<i32>(), float()),
        (spans(), deltas(), counts(), spans(), deltas(), counts()),
        (enum_value(), any::<i64>(), counts()),
    )
        .prop_map(
            |(
                (count, zero_count, sum, schema, zero_threshold),
                (ns, nd, nc, ps, pd, pc),
                (reset_hint, timestamp, custom_values),
            )| {
                v1::Histogram {
                    count,
                    zero_count,
                    sum,
                    schema,
                    zero_threshold,
                    negative_spans: ns,
                    negative_deltas: nd,
                    negative_counts: nc,
                    positive_spans: ps,
                    positive_deltas: pd,
                    positive_counts: pc,
                    reset_hint,
                    timestamp,
                    custom_values,
                }
            },
        )
}

fn v1_request() -> impl Strategy<Value = v1::WriteRequest> {
    let sample = (float(), any::<i64>()).prop_map(|(value, timestamp)| v1::Sample { value, timestamp });
    let exemplar = (prop::collection::vec(v1_label(), 0..3), float(), any::<i64>())
        .prop_map(|(labels, value, timestamp)| v1::Exemplar { labels, value, timestamp });
    let series = (
        prop::collection::vec(v1_label(), 0..6),
        prop::collection::vec(sample, 0..4),
        prop::collection::vec(exemplar, 0..2),
        prop::collection::vec(v1_histogram(), 0..2),
    )
        .prop_map(|(labels, samples, exemplars, histograms)| v1::TimeSeries {
            labels,
            samples,
            exemplars,
            histograms,
        });
    let metadata = (enum_value(), text(), text(), text()).prop_map(|(r#type, metric_family_name, help, unit)| {
        v1::MetricMetadata { r#type, metric_family_name, help, unit }
    });
    (prop::collection::vec(series, 0..8), prop::collection::vec(metadata, 0..3))
        .prop_map(|(timeseries, metadata)| v1::WriteRequest { timeseries, metadata })
}

fn v2_histogram() -> impl Strategy<Value = v2::Histogram> {
    (v1_histogram(), any::<i64>()).prop_map(|(h, start_timestamp)| {
        // The v1 and v2 histograms share fields 1-16, so re-encoding one as the other is exact.
        let mut v2h = v2::Histogram::decode(h.encode_to_vec().as_slice()).unwrap_or_default();
        v2h.start_timestamp = start_timestamp;
        v2h
    })
}

/// Symbol references, nearly always in range for a table of `n` symbols.
fn refs(n: usize, len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u32>> {
    let one = prop_oneof![60 => 0..(n.max(1) as u32), 1 => any::<u32>()];
    prop::collection::vec(one, len)
}

fn v2_request() -> impl Strategy<Value = v2::Request> {
    let symbols = (prop::collection::vec(text(), 0..10), prop_oneof![20 => Just(true), 1 => Just(false)]).prop_map(
        |(mut symbols, empty_first)| {
            if empty_first && !symbols.is_empty() {
                symbols[0].clear();
            }
            symbols
        },
    );
    symbols.prop_flat_map(|symbols| {
        let n = symbols.len();
        let even = |v: Vec<u32>, keep_odd: bool| {
            let mut v = v;
            if v.len() % 2 == 1 && !keep_odd {
                v.pop();
            }
            v
        };
        let odd = prop_oneof![30 => Just(false), 1 => Just(true)];
        let sample = (float(), any::<i64>(), prop_oneof![Just(0i64), any::<i64>()])
            .prop_map(|(value, timestamp, start_timestamp)| v2::Sample { value, timestamp, start_timestamp });
        let exemplar = (refs(n, 0..4), odd.clone(), float(), any::<i64>())
            .prop_map(move |(r, o, value, timestamp)| v2::Exemplar { labels_refs: even(r, o), value, timestamp });
        let metadata = prop::option::of((enum_value(), refs(n, 2..3)).prop_map(|(r#type, r)| v2::Metadata {
            r#type,
            help_ref: r[0],
            unit_ref: r[1],
        }));
        let series = (
            (refs(n, 0..12), odd),
            prop::collection::vec(sample, 0..4),
            prop::collection::vec(v2_histogram(), 0..2),
            prop::collection::vec(exemplar, 0..2),
            metadata,
            prop_oneof![Just(0i64), any::<i64>()],
        )
            .prop_map(move |((r, o), samples, histograms, exemplars, metadata, created_timestamp)| {
                v2::TimeSeries { labels_refs: even(r, o), samples, histograms, exemplars, metadata, created_timestamp }
            });
        prop::collection::vec(series, 0..6)
            .prop_map(move |timeseries| v2::Request { symbols: symbols.clone(), timeseries })
    })
}

fn thanos_series() -> impl Strategy<Value = GeneratedSeries> {
    let label = (text(), text()).prop_map(|(name, value)| thanos::Label { name, value });
    let chunk = (any::<i64>(), any::<i64>(), prop::collection::vec(any::<u8>(), 0..16), any::<u64>()).prop_map(
        |(min_time, max_time, data, hash)| thanos::AggrChunk {
            min_time,
            max_time,
            raw: Some(thanos::Chunk { r#type: 1, data: data.into(), hash }),
            ..thanos::AggrChunk::default()
        },
    );
    (prop::collection::vec(label, 0..6), prop::collection::vec(chunk, 0..3))
        .prop_map(|(labels, chunks)| GeneratedSeries { labels, chunks })
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let m = prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..4)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1..8usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ];
    prop::collection::vec(m, 1..4)
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match m {
            Mutation::Truncate(i) => bytes.truncate(at(*i, bytes.len() + 1)),
            Mutation::Flip(i, x) if !bytes.is_empty() => {
                let i = at(*i, bytes.len());
                bytes[i] ^= x;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, b) => {
                let i = at(*i, bytes.len() + 1);
                bytes.splice(i..i, b.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let i = at(*i, bytes.len() + 1);
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
        }
    }
    bytes
}

/// A protobuf field at the wire level, with whatever tag and wire type the generator picked.
#[derive(Debug, Clone)]
enum Node {
    Varint(u32, u64),
    Fixed64(u32, u64),
    Fixed32(u32, u32),
    Bytes(u32, Vec<u8>),
    Message(u32, Vec<Node>),
    Group(u32, Vec<Node>),
    Raw(Vec<u8>),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, tag: u32, wire: u64) {
    put_varint(out, (u64::from(tag) << 3) | wire);
}

fn encode_nodes(nodes: &[Node], out: &mut Vec<u8>) {
    for node in nodes {
        match node {
            Node::Varint(tag, v) => {
                put_key(out, *tag, 0);
                put_varint(out, *v);
            }
            Node::Fixed64(tag, v) => {
                put_key(out, *tag, 1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Node::Fixed32(tag, v) => {
                put_key(out, *tag, 5);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Node::Bytes(tag, b) => {
                put_key(out, *tag, 2);
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
            Node::Message(tag, children) => {
                let mut inner = Vec::new();
                encode_nodes(children, &mut inner);
                put_key(out, *tag, 2);
                put_varint(out, inner.len() as u64);
                out.extend_from_slice(&inner);
            }
            Node::Group(tag, children) => {
                put_key(out, *tag, 3);
                encode_nodes(children, out);
                put_key(out, *tag, 4);
            }
            Node::Raw(b) => out.extend_from_slice(b),
        }
    }
}

fn soup() -> impl Strategy<Value = Vec<Node>> {
    let tag = prop_oneof![10 => 1..=6u32, 1 => 7..=17u32, 1 => Just(1000u32), 1 => Just((1 << 29) - 1)];
    let payload = prop_oneof![
        "[a-z_]{0,8}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u64>(), 0..4).prop_map(|vs| {
            let mut out = Vec::new();
            vs.into_iter().for_each(|v| put_varint(&mut out, v % 300));
            out
        }),
        prop::collection::vec(any::<u8>(), 0..10),
        prop::collection::vec(any::<u8>(), 0..3).prop_map(|b| b.repeat(8)),
    ];
    let leaf = prop_oneof![
        4 => (tag.clone(), prop_oneof![0..300u64, any::<u64>()]).prop_map(|(t, v)| Node::Varint(t, v)),
        2 => (tag.clone(), any::<u64>()).prop_map(|(t, v)| Node::Fixed64(t, v)),
        1 => (tag.clone(), any::<u32>()).prop_map(|(t, v)| Node::Fixed32(t, v)),
        4 => (tag.clone(), payload).prop_map(|(t, b)| Node::Bytes(t, b)),
        1 => prop::collection::vec(any::<u8>(), 1..3).prop_map(Node::Raw),
    ];
    let nodes = leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            4 => (tag.clone(), prop::collection::vec(inner.clone(), 0..6)).prop_map(|(t, c)| Node::Message(t, c)),
            1 => (tag.clone(), prop::collection::vec(inner, 0..3)).prop_map(|(t, c)| Node::Group(t, c)),
        ]
    });
    prop::collection::vec(nodes, 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn v1_generated_requests_decode_like_prost(req in v1_request()) {
        let bytes = req.encode_to_vec();
        // Compared with prost's decode rather than `req`: prost's encoder omits -0.0 (it equals
        // the default 0.0), as Go's does, so receivers see 0.0.
        let decoded = v1::WriteRequest::decode(bytes.as_slice()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let ours = WriteBatch::decode_v1(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(same(&ours, &from_v1(&decoded)), "ours {:?}\nexpected {:?}", ours, from_v1(&decoded));
        prop_assert!(check_v1(&bytes));
        // A v1 body read as v2 hits only the reserved fields 1-3, so it decodes as empty.
        prop_assert_eq!(WriteBatch::decode_v2(&bytes), Ok(WriteBatch::default()));
    }

    #[test]
    fn v2_generated_requests_decode_like_prost(req in v2_request()) {
        let bytes = req.encode_to_vec();
        let decoded = v2::Request::decode(bytes.as_slice()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match from_v2(&decoded) {
            Some(expected) => {
                let ours = WriteBatch::decode_v2(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(same(&ours, &expected), "ours {:?}\nexpected {:?}", ours, expected);
            }
            None => prop_assert!(WriteBatch::decode_v2(&bytes).is_err()),
        }
        check_v2(&bytes);
        check_v1(&bytes);
    }

    #[test]
    fn mutated_v1_requests_agree_with_prost(req in v1_request(), m in mutations()) {
        let bytes = mutate(req.encode_to_vec(), &m);
        check_v1(&bytes);
        check_v2(&bytes);
    }

    #[test]
    fn mutated_v2_requests_agree_with_prost(req in v2_request(), m in mutations()) {
        let bytes = mutate(req.encode_to_vec(), &m);
        check_v2(&bytes);
        check_v1(&bytes);
    }

    #[test]
    fn arbitrary_bytes_agree_with_prost(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        check_v1(&bytes);
        check_v2(&bytes);
        check_thanos_series(&bytes);
        check_thanos_write(&bytes);
    }

    #[test]
    fn field_soups_agree_with_prost(nodes in soup()) {
        let mut bytes = Vec::new();
        encode_nodes(&nodes, &mut bytes);
        check_v1(&bytes);
        check_v2(&bytes);
        check_thanos_series(&bytes);
        check_thanos_write(&bytes);
    }

    #[test]
    fn thanos_write_requests_decode_like_prost(req in v1_request(), tenant in text(), replica in any::<i64>(), m in mutations()) {
        let generated = GeneratedWriteRequest { timeseries: req.timeseries, tenant, replica };
        let bytes = generated.encode_to_vec();
        prop_assert!(check_thanos_write(&bytes));
        check_thanos_write(&mutate(bytes, &m));
    }

    #[test]
    fn thanos_series_decode_like_prost(series in thanos_series(), m in mutations()) {
        let bytes = series.encode_to_vec();
        prop_assert!(check_thanos_series(&bytes));
        check_thanos_series(&mutate(bytes, &m));
    }
}
