//! `thanos.WriteRequest` by hand, so that a forwarded write is never taken apart into strings.
//!
//! The generated message would hold `Vec<TimeSeries>`: two `String`s per label and a `Vec` per
//! series, allocated by every decode on an ingestor and built by every forward on a router.
//! Here the series stay as their wire bytes: a router appends them straight from the request it
//! decoded, and an ingestor hands them to [`WriteBatch::decode_v1`], the zero-copy decoder of
//! the HTTP path. `thanos.WriteRequest.timeseries` is field 1 of `prometheus.TimeSeries`
//! messages, as `prometheus.WriteRequest.timeseries` is, so the series bytes alone are a remote
//! write 1.0 request and are checked by the same decoder, with the same rules.

use bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::prometheus::TimeSeries;
use crate::remote_write::{Sample, WriteBatch};

const TIMESERIES_TAG: u32 = 1;
const TENANT_TAG: u32 = 2;
const REPLICA_TAG: u32 = 3;

/// A write forwarded between receivers.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct WriteRequest {
    /// Each series as an encoded `timeseries` field (key, length, `TimeSeries` message), not
    /// checked until [`WriteRequest::batch`] decodes them.
    timeseries: Vec<u8>,
    pub tenant: String,
    /// 1-based; 0 for a write not yet replicated.
    pub replica: i64,
}

impl WriteRequest {
    /// An empty request for `tenant`'s series, as replica `replica`.
    pub fn new(tenant: String, replica: i64) -> Self {
        WriteRequest { timeseries: Vec::new(), tenant, replica }
    }

    /// Appends a series of float samples.
    pub fn push_series(&mut self, labels: &[(&str, &str)], samples: &[Sample]) {
        let label_len = |&(name, value): &(&str, &str)| string_field_len(name) + string_field_len(value);
        let series_len: usize = labels.iter().map(|l| field_len(label_len(l))).sum::<usize>()
            + samples.iter().map(|s| field_len(sample_len(s))).sum::<usize>();
        let out = &mut self.timeseries;
        out.reserve(field_len(series_len));
        encoding::encode_key(TIMESERIES_TAG, WireType::LengthDelimited, out);
        encoding::encode_varint(series_len as u64, out);
        for label in labels {
            encoding::encode_key(1, WireType::LengthDelimited, out);
            encoding::encode_varint(label_len(label) as u64, out);
            put_string_field(1, label.0, out);
            put_string_field(2, label.1, out);
        }
        for s in samples {
            encoding::encode_key(2, WireType::LengthDelimited, out);
            encoding::encode_varint(sample_len(s) as u64, out);
            // Zero values are left out, as prost and gogo-protobuf do (-0.0 is zero to them too).
            if s.value != 0.0 {
                encoding::double::encode(1, &s.value, out);
            }
            if s.timestamp != 0 {
                encoding::int64::encode(2, &s.timestamp, out);
            }
        }
    }

    /// Whether the request holds no series.
    pub fn is_empty(&self) -> bool {
        self.timeseries.is_empty()
    }

    /// The series, decoded as a remote write 1.0 request is (borrowing from this request).
    pub fn batch(&self) -> Result<WriteBatch<'_>, crate::remote_write::DecodeError> {
        WriteBatch::decode_v1(&self.timeseries)
    }
}

/// The bytes of a length-delimited field (key of a tag below 16, length, message).
fn field_len(message_len: usize) -> usize {
    1 + encoding::encoded_len_varint(message_len as u64) + message_len
}

/// The bytes of a string field, left out when empty.
fn string_field_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        field_len(s.len())
    }
}

/// The bytes of a `Sample` message: a double and an int64, each left out when zero.
fn sample_len(s: &Sample) -> usize {
    let value = if s.value == 0.0 { 0 } else { 9 };
    let timestamp = if s.timestamp == 0 { 0 } else { 1 + encoding::encoded_len_varint(s.timestamp as u64) };
    value + timestamp
}

fn put_string_field(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(s.len() as u64, buf);
        buf.put_slice(s.as_bytes());
    }
}

impl Message for WriteRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.timeseries);
        if !self.tenant.is_empty() {
            encoding::string::encode(TENANT_TAG, &self.tenant, buf);
        }
        if self.replica != 0 {
            encoding::int64::encode(REPLICA_TAG, &self.replica, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            TIMESERIES_TAG => {
                if wire_type == WireType::LengthDelimited {
                    if let Some((header, message)) = crate::contiguous_message(buf) {
                        let used = header + message.len();
                        encoding::encode_key(TIMESERIES_TAG, WireType::LengthDelimited, &mut self.timeseries);
                        encoding::encode_varint(message.len() as u64, &mut self.timeseries);
                        self.timeseries.extend_from_slice(message);
                        buf.advance(used);
                        return Ok(());
                    }
                }
                // Anything else (a wrong wire type, a message past the end or split across
                // buffers) is left to prost, which decodes it or says what is wrong.
                let mut series = TimeSeries::default();
                encoding::message::merge(wire_type, &mut series, buf, ctx)?;
                encoding::message::encode(TIMESERIES_TAG, &series, &mut self.timeseries);
                Ok(())
            }
            TENANT_TAG => encoding::string::merge(wire_type, &mut self.tenant, buf, ctx),
            REPLICA_TAG => encoding::int64::merge(wire_type, &mut self.replica, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.timeseries.len()
            + if self.tenant.is_empty() { 0 } else { encoding::string::encoded_len(TENANT_TAG, &self.tenant) }
            + if self.replica == 0 { 0 } else { encoding::int64::encoded_len(REPLICA_TAG, &self.replica) }
    }

    fn clear(&mut self) {
        self.timeseries.clear();
        self.tenant.clear();
        self.replica = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::{Label, Sample as WireSample, TimeSeries};

    /// The message prost would generate for `thanos.WriteRequest`, to compare with.
    #[derive(Clone, PartialEq, prost::Message)]
    struct GeneratedWriteRequest {
        #[prost(message, repeated, tag = "1")]
        timeseries: Vec<TimeSeries>,
        #[prost(string, tag = "2")]
        tenant: String,
        #[prost(int64, tag = "3")]
        replica: i64,
    }

    /// A series' labels and samples.
    type SeriesCase<'a> = (&'a [(&'a str, &'a str)], Vec<Sample>);

    fn sample(timestamp: i64, value: f64) -> Sample {
        Sample { timestamp, value, start_timestamp: 0 }
    }

    #[test]
    fn encodes_as_the_generated_message() {
        let long = "v".repeat(300);
        let series: [SeriesCase; 3] = [
            (&[("__name__", "up"), ("job", "a")], vec![sample(1000, 1.0), sample(0, 0.0), sample(-5, f64::NAN)]),
            (&[("__name__", "empty"), ("", "x"), ("y", "")], vec![]),
            (&[("long", long.as_str())], vec![sample(i64::MAX, -0.0)]),
        ];
        let mut ours = WriteRequest::new("tenant-a".into(), 2);
        let mut generated = GeneratedWriteRequest { tenant: "tenant-a".into(), replica: 2, ..Default::default() };
        for (labels, samples) in &series {
            ours.push_series(labels, samples);
            generated.timeseries.push(TimeSeries {
                labels: labels.iter().map(|(n, v)| Label { name: (*n).into(), value: (*v).into() }).collect(),
                samples: samples.iter().map(|s| WireSample { value: s.value, timestamp: s.timestamp }).collect(),
                ..Default::default()
            });
        }
        assert_eq!(ours.encode_to_vec(), generated.encode_to_vec());
        assert_eq!(ours.encoded_len(), generated.encoded_len());
        let back = WriteRequest::decode(&generated.encode_to_vec()[..]).unwrap();
        assert_eq!(back, ours);
        let batch = back.batch().unwrap();
        assert_eq!(batch.series.len(), 3);
        assert_eq!(batch.series_labels(&batch.series[0]), series[0].0);
        let got: Vec<(i64, u64)> =
            batch.series_samples(&batch.series[0]).iter().map(|s| (s.timestamp, s.value.to_bits())).collect();
        let want: Vec<(i64, u64)> = series[0].1.iter().map(|s| (s.timestamp, s.value.to_bits())).collect();
        assert_eq!(got, want, "values bit for bit");
    }

    #[test]
    fn refuses_what_prost_refuses() {
        let mut bad_series = Vec::new();
        encoding::bytes::encode(1, &vec![0x0a, 0x05, 0x0a], &mut bad_series);
        for wire in [vec![0x0a, 0x05, 0x0a], vec![0x08, 0x01], vec![0x12, 0x02, 0xff, 0xfe], bad_series] {
            let ours = WriteRequest::decode(&wire[..]).ok().and_then(|r| r.batch().ok().map(|_| ()));
            assert!(GeneratedWriteRequest::decode(&wire[..]).is_err(), "{wire:02x?}");
            assert_eq!(ours, None, "{wire:02x?}");
        }
    }
}
