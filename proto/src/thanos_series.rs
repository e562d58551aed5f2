//! `thanos.Series` by hand, so that its labels cost no allocation per label; and
//! `prometheus.ChunkedSeries`, the same message with remote read's chunks, which a sidecar reads
//! for every series it serves.
//!
//! The generated message would hold `Vec<Label>`: two `String`s per label, allocated by every
//! decode and by every conversion before an encode, on the path every series of a StoreAPI read
//! takes. Here the labels stay in their wire form, one buffer per series: a server appends them
//! straight from its own label sets and a client reads them back as `&str` pairs. The wire
//! format is unchanged (prost-build is told, with `extern_path`, that these types are
//! `thanos.Series` and `prometheus.ChunkedSeries`), and decoding accepts exactly what prost
//! accepts.

use std::fmt;

use bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::prometheus::Chunk;
use crate::thanos::{AggrChunk, Label};

const LABELS_TAG: u32 = 1;
const CHUNKS_TAG: u32 = 2;
/// The key of a length-delimited field 1 (`Label.name`, `Series.labels`) and of field 2
/// (`Label.value`).
const KEY_1: u8 = 0x0a;
const KEY_2: u8 = 0x12;

/// A series of a StoreAPI answer (`thanos.Series`).
pub type Series = WireSeries<AggrChunk>;

/// A series of a streamed remote-read answer (`prometheus.ChunkedSeries`).
pub type ChunkedSeries = WireSeries<Chunk>;

/// A series: its labels (sorted by name, as the sender keeps them) and its chunks `C`.
#[derive(Clone, PartialEq, Default)]
pub struct WireSeries<C> {
    /// Each label as an encoded `labels` field (key, length, `Label` message with its non-empty
    /// fields in order), in the order received or pushed.
    labels: Vec<u8>,
    pub chunks: Vec<C>,
}

impl<C> WireSeries<C> {
    /// A series of these labels (in this order) and chunks.
    pub fn new<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str), IntoIter: Clone>, chunks: Vec<C>) -> Self {
        let labels = labels.into_iter();
        let len = labels.clone().map(|(name, value)| label_field_len(name, value)).sum();
        let mut series = WireSeries { labels: Vec::with_capacity(len), chunks };
        for (name, value) in labels {
            series.push_label(name, value);
        }
        series
    }

    /// Appends a label.
    pub fn push_label(&mut self, name: &str, value: &str) {
        self.labels.reserve(label_field_len(name, value));
        let message_len = label_message_len(name, value);
        self.labels.put_u8(KEY_1);
        encoding::encode_varint(message_len as u64, &mut self.labels);
        for (key, s) in [(KEY_1, name), (KEY_2, value)] {
            if !s.is_empty() {
                self.labels.put_u8(key);
                encoding::encode_varint(s.len() as u64, &mut self.labels);
                self.labels.put_slice(s.as_bytes());
            }
        }
    }

    /// The labels, as `(name, value)` pairs.
    pub fn labels(&self) -> SeriesLabels<'_> {
        SeriesLabels { rest: &self.labels }
    }
}

/// The bytes of a `Label` message: its non-empty fields.
fn label_message_len(name: &str, value: &str) -> usize {
    let field_len = |s: &str| if s.is_empty() { 0 } else { 1 + encoding::encoded_len_varint(s.len() as u64) + s.len() };
    field_len(name) + field_len(value)
}

/// The bytes of a `labels` field: key, length and message.
fn label_field_len(name: &str, value: &str) -> usize {
    let message_len = label_message_len(name, value);
    1 + encoding::encoded_len_varint(message_len as u64) + message_len
}

/// The name and value of a `Label` message holding at most a name then a value, valid UTF-8.
fn canonical_label(message: &[u8]) -> Option<(&str, &str)> {
    let (name, value) = label_fields(message)?;
    Some((std::str::from_utf8(name).ok()?, std::str::from_utf8(value).ok()?))
}

/// The name and value bytes of a `Label` message holding at most a name then a value.
fn label_fields(mut message: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut fields: [&[u8]; 2] = [&[]; 2];
    for (i, key) in [KEY_1, KEY_2].into_iter().enumerate() {
        if message.first() == Some(&key) {
            message = &message[1..];
            let len = usize::try_from(encoding::decode_varint(&mut message).ok()?).ok()?;
            fields[i] = message.get(..len)?;
            message = &message[len..];
        }
    }
    message.is_empty().then_some((fields[0], fields[1]))
}

/// The labels of a [`Series`].
#[derive(Clone)]
pub struct SeriesLabels<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SeriesLabels<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        // The buffer holds only what `push_label` wrote, so this parse cannot fail; should it,
        // the labels end there. Its strings were checked when they were pushed.
        let rest = self.rest.get(1..)?;
        let mut after_len = rest;
        let len = usize::try_from(encoding::decode_varint(&mut after_len).ok()?).ok()?;
        let message = after_len.get(..len)?;
        self.rest = &after_len[len..];
        let (name, value) = label_fields(message)?;
        // SAFETY: the buffer holds only what `push_label` copied from `&str`s, so both fields
        // are whole, valid UTF-8 strings.
        unsafe { Some((std::str::from_utf8_unchecked(name), std::str::from_utf8_unchecked(value))) }
    }
}

impl<C: fmt::Debug> fmt::Debug for WireSeries<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series")
            .field("labels", &self.labels().collect::<Vec<_>>())
            .field("chunks", &self.chunks)
            .finish()
    }
}

impl<C: Message + Default> Message for WireSeries<C> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.labels);
        for chunk in &self.chunks {
            encoding::message::encode(CHUNKS_TAG, chunk, buf);
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
            LABELS_TAG => {
                if wire_type == WireType::LengthDelimited {
                    if let Some((header, message)) = crate::contiguous_message(buf) {
                        if let Some((name, value)) = canonical_label(message) {
                            let used = header + message.len();
                            self.push_label(name, value);
                            buf.advance(used);
                            return Ok(());
                        }
                    }
                }
                // Anything else (unknown or repeated fields, bad UTF-8, a wrong wire type, a
                // message split across buffers or past the end) is left to prost: it accepts
                // what it accepts and its error is the error.
                let mut label = Label::default();
                encoding::message::merge(wire_type, &mut label, buf, ctx)?;
                self.push_label(&label.name, &label.value);
                Ok(())
            }
            CHUNKS_TAG => encoding::message::merge_repeated(wire_type, &mut self.chunks, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.labels.len() + encoding::message::encoded_len_repeated(CHUNKS_TAG, &self.chunks)
    }

    fn clear(&mut self) {
        self.labels.clear();
        self.chunks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thanos::{Chunk, SeriesBatch};

    /// The message prost would generate for `thanos.Series`, to compare with.
    #[derive(Clone, PartialEq, prost::Message)]
    struct GeneratedSeries {
        #[prost(message, repeated, tag = "1")]
        labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        chunks: Vec<AggrChunk>,
    }

    fn label(name: &str, value: &str) -> Label {
        Label { name: name.into(), value: value.into() }
    }

    fn chunk() -> AggrChunk {
        AggrChunk {
            min_time: 1,
            max_time: 2,
            raw: Some(Chunk { r#type: 1, data: vec![1, 2, 3].into(), hash: 7 }),
            ..AggrChunk::default()
        }
    }

    #[test]
    fn encodes_as_the_generated_message() {
        let labels = [("__name__", "up"), ("empty", ""), ("", "no name"), ("long", &"x".repeat(300))];
        let ours = Series::new(labels, vec![chunk()]);
        let generated =
            GeneratedSeries { labels: labels.iter().map(|(n, v)| label(n, v)).collect(), chunks: vec![chunk()] };
        assert_eq!(ours.encode_to_vec(), generated.encode_to_vec());
        assert_eq!(ours.encoded_len(), generated.encoded_len());
        let back = Series::decode(&generated.encode_to_vec()[..]).unwrap();
        assert_eq!(back, ours);
        assert_eq!(back.labels().collect::<Vec<_>>(), labels);
    }

    #[test]
    fn decodes_what_prost_decodes() {
        // A label with its value first, a repeated name (the last wins), an unknown field.
        let mut odd = Vec::new();
        encoding::string::encode(2, &"v".to_owned(), &mut odd);
        encoding::string::encode(1, &"first".to_owned(), &mut odd);
        encoding::string::encode(1, &"n".to_owned(), &mut odd);
        encoding::uint64::encode(9, &5, &mut odd);
        let mut wire = Vec::new();
        encoding::bytes::encode(1, &odd, &mut wire);
        GeneratedSeries { labels: vec![label("z", "1")], chunks: vec![chunk()] }.encode_raw(&mut wire);
        let ours = Series::decode(&wire[..]).unwrap();
        assert_eq!(ours.labels().collect::<Vec<_>>(), [("n", "v"), ("z", "1")]);
        assert_eq!(ours.chunks, vec![chunk()]);
    }

    #[test]
    fn refuses_what_prost_refuses() {
        let mut bad_utf8 = Vec::new();
        encoding::bytes::encode(1, &vec![0xff, 0xfe], &mut bad_utf8);
        let mut truncated = Vec::new();
        encoding::string::encode(1, &"name".to_owned(), &mut truncated);
        truncated.truncate(truncated.len() - 1);
        for label_message in [bad_utf8, truncated, vec![0x08]] {
            let mut wire = Vec::new();
            encoding::bytes::encode(1, &label_message, &mut wire);
            assert!(GeneratedSeries::decode(&wire[..]).is_err());
            assert!(Series::decode(&wire[..]).is_err(), "{label_message:?}");
        }
        // A labels field past the end, and one with the wrong wire type.
        for wire in [vec![KEY_1, 0x05, KEY_1], vec![0x08, 0x01]] {
            assert!(GeneratedSeries::decode(&wire[..]).is_err());
            assert!(Series::decode(&wire[..]).is_err(), "{wire:?}");
        }
    }

    /// The message prost would generate for `prometheus.ChunkedSeries`, to compare with.
    #[derive(Clone, PartialEq, prost::Message)]
    struct GeneratedChunkedSeries {
        #[prost(message, repeated, tag = "1")]
        labels: Vec<crate::prometheus::Label>,
        #[prost(message, repeated, tag = "2")]
        chunks: Vec<crate::prometheus::Chunk>,
    }

    #[test]
    fn remote_read_series_are_the_generated_message() {
        let chunk = crate::prometheus::Chunk { min_time_ms: 1, max_time_ms: 2, r#type: 1, data: vec![1, 2, 3].into() };
        let labels = [("__name__", "up"), ("job", "node")];
        let generated = GeneratedChunkedSeries {
            labels: labels.iter().map(|&(n, v)| crate::prometheus::Label { name: n.into(), value: v.into() }).collect(),
            chunks: vec![chunk.clone()],
        };
        let ours = ChunkedSeries::decode(&generated.encode_to_vec()[..]).unwrap();
        assert_eq!(ours.labels().collect::<Vec<_>>(), labels);
        assert_eq!(ours.chunks, vec![chunk]);
        assert_eq!(ours.encode_to_vec(), generated.encode_to_vec());
    }

    #[test]
    fn batches_hold_it() {
        let batch =
            SeriesBatch { series: vec![Series::new([("a", "1")], vec![]), Series::new([("b", "2")], vec![chunk()])] };
        let back = SeriesBatch::decode(&batch.encode_to_vec()[..]).unwrap();
        assert_eq!(back, batch);
    }
}
