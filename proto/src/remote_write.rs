//! Zero-copy decoding of remote-write requests, 1.0 (`prometheus.WriteRequest`) and 2.0
//! (`io.prometheus.write.v2.Request`), into flat arrays whose strings borrow from the request body.
//!
//! The decoder accepts exactly the bytes prost's generated decoder accepts: the same varint, field
//! key, wire type, length, UTF-8 and recursion-limit rules, unknown fields (groups included)
//! skipped, packed and unpacked repeated scalars, last value wins for a repeated scalar, a singular
//! message field seen twice merged. Swapping one for the other therefore never changes which
//! requests a receiver rejects. 2.0 requests must in addition have a usable symbol table: if there
//! are symbols the first is `""`, every reference is in range (reference 0 always means `""`, as
//! proto3 cannot tell an explicit 0 from an absent field) and label references come in pairs.
//!
//! Only what ingestion needs is kept: labels, float samples, counts of histograms and exemplars
//! (which are still checked to be well formed) and metadata.

use std::fmt;
use std::ops::Range;

/// One decoded remote-write request, v1 or v2, in flat arrays borrowing from the decompressed body.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriteBatch<'a> {
    /// One per TimeSeries, in request order.
    pub series: Vec<Series>,
    /// All label pairs; [`Series::labels`] is a range into this, in wire order (not sorted or
    /// validated here).
    pub labels: Vec<(&'a str, &'a str)>,
    /// All float samples; [`Series::samples`] is a range into this, in wire order.
    pub samples: Vec<Sample>,
    /// Number of native histogram samples seen (contents checked, then skipped).
    pub histograms: usize,
    /// Number of exemplars seen (contents checked, then skipped).
    pub exemplars: usize,
    /// v1: `WriteRequest.metadata`. v2: one per series whose Metadata has a known type or a
    /// non-empty help or unit, in series order, named after the series' first `__name__` label
    /// (`""` if it has none).
    pub metadata: Vec<Metadata<'a>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Range<u32>,
    pub samples: Range<u32>,
    pub histograms: u32,
    pub exemplars: u32,
    /// v2 legacy `TimeSeries.created_timestamp` (field 6, sent by Prometheus 2.54 to 3.7); 0 if unset.
    pub created_timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub timestamp: i64,
    /// Bit-exact as sent: the staleness NaN (0x7ff0000000000002) survives.
    pub value: f64,
    /// v2 `Sample.start_timestamp`; 0 if unset or v1.
    pub start_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metadata<'a> {
    pub metric_type: MetricType,
    /// 1.0: as sent. 2.0: the family of the series the metadata came with
    /// ([`MetricType::family_name`]).
    pub metric_family_name: &'a str,
    pub help: &'a str,
    pub unit: &'a str,
}

/// v1 and v2 share this numbering; v2's METRIC_TYPE_UNSPECIFIED (0) becomes `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    GaugeHistogram = 4,
    Summary = 5,
    Info = 6,
    StateSet = 7,
}

impl From<i32> for MetricType {
    /// Values outside the enum (from newer senders) map to `Unknown`.
    fn from(value: i32) -> Self {
        match value {
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::GaugeHistogram,
            5 => MetricType::Summary,
            6 => MetricType::Info,
            7 => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }
}

impl MetricType {
    /// The metric family that a series named `series_name` of this type belongs to. A 2.0
    /// request attaches metadata to each series, without the family name that 1.0 sends and
    /// that Prometheus's `/api/v1/metadata` lists, so the series' own suffix is taken off:
    /// `_bucket`/`_sum`/`_count` of a histogram (`_gsum`/`_gcount` of a gauge histogram),
    /// `_sum`/`_count` of a summary. Other types name their family with the series name, as
    /// Prometheus reports them.
    pub fn family_name(self, series_name: &str) -> &str {
        let suffixes: &[&str] = match self {
            MetricType::Histogram => &["_bucket", "_sum", "_count"],
            MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            MetricType::Summary => &["_sum", "_count"],
            _ => &[],
        };
        suffixes
            .iter()
            .find_map(|suffix| series_name.strip_suffix(suffix).filter(|family| !family.is_empty()))
            .unwrap_or(series_name)
    }
}

/// A protobuf field, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub message: &'static str,
    /// Empty for a field the schema does not know.
    pub name: &'static str,
    pub tag: u32,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "unknown field {} of {}", self.tag, self.message)
        } else {
            write!(f, "{}.{} (field {})", self.message, self.name, self.tag)
        }
    }
}

/// Why a request body could not be decoded. Offsets are bytes from the start of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("request of {len} bytes is larger than the 4 GiB the decoder can index")]
    TooLarge { len: usize },
    #[error("truncated varint at byte {offset} in {message}")]
    TruncatedVarint { message: &'static str, offset: usize },
    #[error("varint at byte {offset} in {message} is longer than 10 bytes or overflows 64 bits")]
    VarintOverflow { message: &'static str, offset: usize },
    #[error(
        "invalid field key {key} at byte {offset} in {message} (field number 0, wire type 6 or 7, or over 32 bits)"
    )]
    InvalidKey { message: &'static str, key: u64, offset: usize },
    #[error("{field} at byte {offset} has wire type {found}, expected {expected}")]
    WrongWireType { field: Field, found: &'static str, expected: &'static str, offset: usize },
    #[error("{field} at byte {offset} declares {len} bytes but only {available} remain in the enclosing message")]
    LengthOutOfBounds { field: Field, len: u64, available: usize, offset: usize },
    #[error("{field} at byte {offset} needs {needed} bytes but only {available} remain in the enclosing message")]
    Truncated { field: Field, needed: usize, available: usize, offset: usize },
    #[error("packed {field} at byte {offset} is {len} bytes long, not a whole number of 8-byte values")]
    PackedLength { field: Field, len: usize, offset: usize },
    #[error("{field} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { field: Field, offset: usize },
    #[error("group {field} starting at byte {offset} is not closed before the end of its message")]
    UnterminatedGroup { field: Field, offset: usize },
    #[error("end-group marker {field} at byte {offset} closes no open group of that field")]
    UnexpectedEndGroup { field: Field, offset: usize },
    #[error("{field} at byte {offset} is nested deeper than the limit of {limit}", limit = RECURSION_LIMIT)]
    TooDeep { field: Field, offset: usize },
    #[error("{field} at byte {offset} refers to symbol {reference} but the request has {symbols} symbols")]
    SymbolOutOfRange { field: Field, reference: u32, symbols: usize, offset: usize },
    #[error("{field} in the message at byte {offset} has an odd number ({count}) of label references")]
    OddLabelRefs { field: Field, count: usize, offset: usize },
    #[error("the first symbol, at byte {offset}, must be the empty string")]
    FirstSymbolNotEmpty { offset: usize },
}

impl<'a> WriteBatch<'a> {
    /// Decodes a remote write 1.0 `prometheus.WriteRequest`.
    pub fn decode_v1(buf: &'a [u8]) -> Result<Self, DecodeError> {
        Self::read_v1(buf).map_err(|e| *e)
    }

    /// Decodes a remote write 2.0 `io.prometheus.write.v2.Request`, resolving symbol references.
    pub fn decode_v2(buf: &'a [u8]) -> Result<Self, DecodeError> {
        Self::read_v2(buf).map_err(|e| *e)
    }

    fn read_v1(buf: &'a [u8]) -> Res<Self> {
        check_size(buf)?;
        let mut batch = Self::default();
        let mut r = Reader::new(buf, &V1_WRITE_REQUEST);
        while !r.at_end() {
            let k = r.key()?;
            match k.tag {
                1 => {
                    let ts = r.message(k, &V1_TIME_SERIES)?;
                    batch.v1_series(ts)?;
                }
                3 => {
                    let md = r.message(k, &V1_METRIC_METADATA)?;
                    batch.metadata.push(v1_metadata(md)?);
                }
                _ => r.skip(k)?,
            }
        }
        Ok(batch)
    }

    fn read_v2(buf: &'a [u8]) -> Res<Self> {
        check_size(buf)?;
        // Nothing obliges a sender to put the symbols before the series that use them, so the
        // table is collected in a first pass and the series are decoded in a second.
        let mut symbols: Vec<&'a str> = Vec::new();
        let mut first_symbol_at = 0;
        let mut first_series_at = None;
        let mut hint = SizeHint::default();
        let mut r = Reader::new(buf, &V2_REQUEST);
        while !r.at_end() {
            let k = r.key()?;
            match k.tag {
                4 => {
                    if symbols.is_empty() {
                        first_symbol_at = k.at;
                    }
                    symbols.push(r.string(k)?);
                }
                5 => {
                    first_series_at.get_or_insert(k.at);
                    hint.add(r.message(k, &V2_TIME_SERIES)?);
                }
                _ => r.skip(k)?,
            }
        }
        if symbols.first().is_some_and(|s| !s.is_empty()) {
            return fail(DecodeError::FirstSymbolNotEmpty { offset: first_symbol_at });
        }

        let mut batch = Self::default();
        batch.series.reserve_exact(hint.series);
        batch.samples.reserve(hint.series);
        batch.labels.reserve(hint.label_refs / 2);
        batch.metadata.reserve(hint.metadata);
        let Some(start) = first_series_at else {
            return Ok(batch);
        };
        let mut r = Reader::new(buf, &V2_REQUEST);
        r.pos = start;
        while !r.at_end() {
            let k = r.key()?;
            if k.tag == 5 {
                let ts = r.message(k, &V2_TIME_SERIES)?;
                batch.v2_series(ts, &symbols)?;
            } else {
                r.skip(k)?;
            }
        }
        Ok(batch)
    }

    /// The label pairs of `s`, a series of this batch.
    pub fn series_labels(&self, s: &Series) -> &[(&'a str, &'a str)] {
        self.labels.get(s.labels.start as usize..s.labels.end as usize).unwrap_or_default()
    }

    /// The float samples of `s`, a series of this batch.
    pub fn series_samples(&self, s: &Series) -> &[Sample] {
        self.samples.get(s.samples.start as usize..s.samples.end as usize).unwrap_or_default()
    }

    fn v1_series(&mut self, mut r: Reader<'a>) -> Res<()> {
        let labels_start = self.labels.len();
        let samples_start = self.samples.len();
        let (mut histograms, mut exemplars) = (0u32, 0u32);
        while !r.at_end() {
            let k = r.key()?;
            match k.tag {
                1 => {
                    let label = r.message(k, &V1_LABEL)?;
                    self.labels.push(v1_label(label)?);
                }
                2 => {
                    let sample = r.message(k, &V1_SAMPLE)?;
                    self.samples.push(v1_sample(sample)?);
                }
                3 => {
                    r.check_field(k)?;
                    exemplars += 1;
                }
                4 => {
                    r.check_field(k)?;
                    histograms += 1;
                }
                _ => r.skip(k)?,
            }
        }
        self.push_series(labels_start, samples_start, histograms, exemplars, 0);
        Ok(())
    }

    fn v2_series(&mut self, mut r: Reader<'a>, symbols: &[&'a str]) -> Res<()> {
        let labels_start = self.labels.len();
        let samples_start = self.samples.len();
        let (mut histograms, mut exemplars, mut created_timestamp) = (0u32, 0u32, 0i64);
        let mut meta = V2Metadata::default();
        let mut pending_name: Option<&'a str> = None;
        while !r.at_end() {
            let k = r.key()?;
            match k.tag {
                1 => {
                    let labels = &mut self.labels;
                    r.repeated_varint(k, |reference, offset| {
                        // uint32 on the wire: prost keeps the low 32 bits.
                        let s = resolve(symbols, reference as u32, offset, &V2_TIME_SERIES, 1)?;
                        match pending_name.take() {
                            None => pending_name = Some(s),
                            Some(name) => labels.push((name, s)),
                        }
                        Ok(())
                    })?;
                }
                2 => {
                    let sample = r.message(k, &V2_SAMPLE)?;
                    self.samples.push(v2_sample(sample)?);
                }
                3 => {
                    r.check_field(k)?;
                    histograms += 1;
                }
                4 => {
                    let exemplar = r.message(k, &V2_EXEMPLAR)?;
                    check_v2_exemplar(exemplar, symbols)?;
                    exemplars += 1;
                }
                5 => {
                    let m = r.message(k, &V2_METADATA)?;
                    meta.merge(m)?;
                }
                6 => created_timestamp = r.varint_field(k)? as i64,
                _ => r.skip(k)?,
            }
        }
        if pending_name.is_some() {
            return fail(DecodeError::OddLabelRefs {
                field: r.field(1),
                count: (self.labels.len() - labels_start) * 2 + 1,
                offset: r.base,
            });
        }
        let help = resolve(symbols, meta.help_ref.0, meta.help_ref.1, &V2_METADATA, 3)?;
        let unit = resolve(symbols, meta.unit_ref.0, meta.unit_ref.1, &V2_METADATA, 4)?;
        let metric_type = MetricType::from(meta.metric_type);
        if metric_type != MetricType::Unknown || !help.is_empty() || !unit.is_empty() {
            let series_labels = self.labels.get(labels_start..).unwrap_or_default();
            let series_name = series_labels.iter().find(|(n, _)| *n == "__name__").map_or("", |(_, v)| *v);
            let metric_family_name = metric_type.family_name(series_name);
            self.metadata.push(Metadata { metric_type, metric_family_name, help, unit });
        }
        self.push_series(labels_start, samples_start, histograms, exemplars, created_timestamp);
        Ok(())
    }

    fn push_series(&mut self, labels_start: usize, samples_start: usize, histograms: u32, exemplars: u32, ct: i64) {
        self.histograms += histograms as usize;
        self.exemplars += exemplars as usize;
        // check_size bounds the body to u32::MAX bytes and every label or sample takes at least
        // two of them, so these casts cannot truncate.
        self.series.push(Series {
            labels: labels_start as u32..self.labels.len() as u32,
            samples: samples_start as u32..self.samples.len() as u32,
            histograms,
            exemplars,
            created_timestamp: ct,
        });
    }
}

/// Internal results box the error: it is large, and errors are rare, so the hot path passes a
/// pointer-sized error in registers instead of writing a big enum through memory.
type Res<T> = Result<T, Box<DecodeError>>;

fn fail<T>(e: DecodeError) -> Res<T> {
    Err(Box::new(e))
}

fn check_size(buf: &[u8]) -> Res<()> {
    if u32::try_from(buf.len()).is_err() {
        return fail(DecodeError::TooLarge { len: buf.len() });
    }
    Ok(())
}

/// Upper bounds on what a v2 request's series will produce, gathered in the first pass so the
/// output vectors are allocated once. Growing them step by step was measured to make glibc's
/// allocator hand pages back and fault them in again on every request, costing 3-4x.
#[derive(Default)]
struct SizeHint {
    series: usize,
    /// Label references, or for packed ones their bytes (at least one per reference).
    label_refs: usize,
    metadata: usize,
}

impl SizeHint {
    /// Walks the series' fields; malformed contents end the walk early, as the second pass
    /// reports them.
    fn add(&mut self, mut r: Reader<'_>) {
        self.series += 1;
        let mut has_metadata = false;
        while !r.at_end() {
            let Ok(k) = r.key() else { break };
            let step = match (k.tag, k.wire) {
                (1, Wire::Len) => r.len_prefixed(k, true).map(|(refs, _)| self.label_refs += refs.len()),
                (1, Wire::Varint) => r.varint().map(|_| self.label_refs += 1),
                (5, _) => {
                    has_metadata = true;
                    r.skip(k)
                }
                _ => r.skip(k),
            };
            if step.is_err() {
                break;
            }
        }
        self.metadata += usize::from(has_metadata);
    }
}

fn v1_label<'a>(mut r: Reader<'a>) -> Res<(&'a str, &'a str)> {
    let (mut name, mut value) = ("", "");
    while !r.at_end() {
        let k = r.key()?;
        match k.tag {
            1 => name = r.string(k)?,
            2 => value = r.string(k)?,
            _ => r.skip(k)?,
        }
    }
    Ok((name, value))
}

fn v1_sample(mut r: Reader<'_>) -> Res<Sample> {
    let mut sample = Sample { timestamp: 0, value: 0.0, start_timestamp: 0 };
    while !r.at_end() {
        let k = r.key()?;
        match k.tag {
            1 => sample.value = f64::from_bits(r.fixed64(k)?),
            2 => sample.timestamp = r.varint_field(k)? as i64,
            _ => r.skip(k)?,
        }
    }
    Ok(sample)
}

fn v2_sample(mut r: Reader<'_>) -> Res<Sample> {
    let mut sample = Sample { timestamp: 0, value: 0.0, start_timestamp: 0 };
    while !r.at_end() {
        let k = r.key()?;
        match k.tag {
            1 => sample.value = f64::from_bits(r.fixed64(k)?),
            2 => sample.timestamp = r.varint_field(k)? as i64,
            3 => sample.start_timestamp = r.varint_field(k)? as i64,
            _ => r.skip(k)?,
        }
    }
    Ok(sample)
}

fn v1_metadata<'a>(mut r: Reader<'a>) -> Res<Metadata<'a>> {
    let mut md = Metadata { metric_type: MetricType::Unknown, metric_family_name: "", help: "", unit: "" };
    while !r.at_end() {
        let k = r.key()?;
        match k.tag {
            // Enums are int32 on the wire: prost keeps the low 32 bits of the varint.
            1 => md.metric_type = MetricType::from(r.varint_field(k)? as i32),
            2 => md.metric_family_name = r.string(k)?,
            4 => md.help = r.string(k)?,
            5 => md.unit = r.string(k)?,
            _ => r.skip(k)?,
        }
    }
    Ok(md)
}

fn check_v2_exemplar(mut r: Reader<'_>, symbols: &[&str]) -> Res<()> {
    let mut refs = 0usize;
    let start = r.base;
    while !r.at_end() {
        let k = r.key()?;
        match k.tag {
            1 => {
                r.repeated_varint(k, |reference, offset| {
                    resolve(symbols, reference as u32, offset, &V2_EXEMPLAR, 1)?;
                    refs += 1;
                    Ok(())
                })?;
            }
            _ => r.check_field(k)?,
        }
    }
    if refs % 2 == 1 {
        return fail(DecodeError::OddLabelRefs { field: V2_EXEMPLAR.field(1), count: refs, offset: start });
    }
    Ok(())
}

/// The fields of a v2 Metadata, kept across occurrences because a singular message field seen
/// twice is merged; each reference remembers where it was read for error messages.
#[derive(Default)]
struct V2Metadata {
    metric_type: i32,
    help_ref: (u32, usize),
    unit_ref: (u32, usize),
}

impl V2Metadata {
    fn merge(&mut self, mut r: Reader<'_>) -> Res<()> {
        while !r.at_end() {
            let k = r.key()?;
            match k.tag {
                1 => self.metric_type = r.varint_field(k)? as i32,
                3 => self.help_ref = (r.varint_field(k)? as u32, k.at),
                4 => self.unit_ref = (r.varint_field(k)? as u32, k.at),
                _ => r.skip(k)?,
            }
        }
        Ok(())
    }
}

/// `str::from_utf8` with a fast path for ASCII, which nearly every label is. On short label
/// strings the generic validator cost about a third of v1 decoding time; skipping it for ASCII
/// made v1 decoding 1.5x faster (benches/decode.rs, 2,000 node_exporter-like series), which is
/// what justifies the `unsafe`.
#[inline(always)]
fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes)
    }
}

/// Looks up a v2 symbol reference read at `offset` from field `tag` of `schema`; 0 is `""` even
/// with an empty table.
fn resolve<'a>(symbols: &[&'a str], reference: u32, offset: usize, schema: &'static Schema, tag: u32) -> Res<&'a str> {
    match symbols.get(reference as usize) {
        Some(s) => Ok(*s),
        None if reference == 0 => Ok(""),
        None => {
            fail(DecodeError::SymbolOutOfRange { field: schema.field(tag), reference, symbols: symbols.len(), offset })
        }
    }
}

/// prost's recursion limit (the same as protobuf C++'s). Matching it makes deeply nested unknown
/// groups succeed or fail exactly as with the generated decoder.
const RECURSION_LIMIT: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Varint,
    Fixed64,
    Len,
    StartGroup,
    EndGroup,
    Fixed32,
}

impl Wire {
    fn name(self) -> &'static str {
        match self {
            Wire::Varint => "varint",
            Wire::Fixed64 => "64-bit",
            Wire::Len => "length-delimited",
            Wire::StartGroup => "start-group",
            Wire::EndGroup => "end-group",
            Wire::Fixed32 => "32-bit",
        }
    }
}

/// A field key as read from the wire, with the offset of its first byte.
#[derive(Clone, Copy)]
struct Key {
    tag: u32,
    wire: Wire,
    at: usize,
}

/// What a field holds; drives validation of the messages whose contents are only checked.
#[derive(Clone, Copy)]
enum Kind {
    Varint,
    Fixed64,
    Str,
    Message(&'static Schema),
    RepeatedVarint,
    RepeatedFixed64,
}

/// The known fields of one message type.
struct Schema {
    name: &'static str,
    fields: &'static [(u32, &'static str, Kind)],
}

impl Schema {
    fn lookup(&self, tag: u32) -> Option<(&'static str, Kind)> {
        self.fields.iter().find(|f| f.0 == tag).map(|f| (f.1, f.2))
    }

    fn field(&self, tag: u32) -> Field {
        Field { message: self.name, name: self.lookup(tag).map_or("", |f| f.0), tag }
    }
}

/// The Histogram fields, identical in v1 and v2 but for the bucket span type and v2's additions.
macro_rules! histogram_fields {
    ($span:expr; $($extra:tt)*) => {
        &[
            (1, "count_int", Kind::Varint),
            (2, "count_float", Kind::Fixed64),
            (3, "sum", Kind::Fixed64),
            (4, "schema", Kind::Varint),
            (5, "zero_threshold", Kind::Fixed64),
            (6, "zero_count_int", Kind::Varint),
            (7, "zero_count_float", Kind::Fixed64),
            (8, "negative_spans", Kind::Message($span)),
            (9, "negative_deltas", Kind::RepeatedVarint),
            (10, "negative_counts", Kind::RepeatedFixed64),
            (11, "positive_spans", Kind::Message($span)),
            (12, "positive_deltas", Kind::RepeatedVarint),
            (13, "positive_counts", Kind::RepeatedFixed64),
            (14, "reset_hint", Kind::Varint),
            (15, "timestamp", Kind::Varint),
            (16, "custom_values", Kind::RepeatedFixed64),
            $($extra)*
        ]
    };
}

static V1_WRITE_REQUEST: Schema = Schema {
    name: "WriteRequest",
    fields: &[(1, "timeseries", Kind::Message(&V1_TIME_SERIES)), (3, "metadata", Kind::Message(&V1_METRIC_METADATA))],
};
static V1_TIME_SERIES: Schema = Schema {
    name: "TimeSeries",
    fields: &[
        (1, "labels", Kind::Message(&V1_LABEL)),
        (2, "samples", Kind::Message(&V1_SAMPLE)),
        (3, "exemplars", Kind::Message(&V1_EXEMPLAR)),
        (4, "histograms", Kind::Message(&V1_HISTOGRAM)),
    ],
};
static V1_LABEL: Schema = Schema { name: "Label", fields: &[(1, "name", Kind::Str), (2, "value", Kind::Str)] };
static V1_SAMPLE: Schema =
    Schema { name: "Sample", fields: &[(1, "value", Kind::Fixed64), (2, "timestamp", Kind::Varint)] };
static V1_EXEMPLAR: Schema = Schema {
    name: "Exemplar",
    fields: &[(1, "labels", Kind::Message(&V1_LABEL)), (2, "value", Kind::Fixed64), (3, "timestamp", Kind::Varint)],
};
static V1_METRIC_METADATA: Schema = Schema {
    name: "MetricMetadata",
    fields: &[
        (1, "type", Kind::Varint),
        (2, "metric_family_name", Kind::Str),
        (4, "help", Kind::Str),
        (5, "unit", Kind::Str),
    ],
};
static V1_HISTOGRAM: Schema = Schema { name: "Histogram", fields: histogram_fields!(&V1_BUCKET_SPAN;) };
static V1_BUCKET_SPAN: Schema = Schema { name: "BucketSpan", fields: BUCKET_SPAN_FIELDS };

static V2_REQUEST: Schema = Schema {
    name: "v2.Request",
    fields: &[(4, "symbols", Kind::Str), (5, "timeseries", Kind::Message(&V2_TIME_SERIES))],
};
static V2_TIME_SERIES: Schema = Schema {
    name: "v2.TimeSeries",
    fields: &[
        (1, "labels_refs", Kind::RepeatedVarint),
        (2, "samples", Kind::Message(&V2_SAMPLE)),
        (3, "histograms", Kind::Message(&V2_HISTOGRAM)),
        (4, "exemplars", Kind::Message(&V2_EXEMPLAR)),
        (5, "metadata", Kind::Message(&V2_METADATA)),
        (6, "created_timestamp", Kind::Varint),
    ],
};
static V2_SAMPLE: Schema = Schema {
    name: "v2.Sample",
    fields: &[(1, "value", Kind::Fixed64), (2, "timestamp", Kind::Varint), (3, "start_timestamp", Kind::Varint)],
};
static V2_EXEMPLAR: Schema = Schema {
    name: "v2.Exemplar",
    fields: &[(1, "labels_refs", Kind::RepeatedVarint), (2, "value", Kind::Fixed64), (3, "timestamp", Kind::Varint)],
};
static V2_METADATA: Schema = Schema {
    name: "v2.Metadata",
    fields: &[(1, "type", Kind::Varint), (3, "help_ref", Kind::Varint), (4, "unit_ref", Kind::Varint)],
};
static V2_HISTOGRAM: Schema =
    Schema { name: "v2.Histogram", fields: histogram_fields!(&V2_BUCKET_SPAN; (17, "start_timestamp", Kind::Varint)) };
static V2_BUCKET_SPAN: Schema = Schema { name: "v2.BucketSpan", fields: BUCKET_SPAN_FIELDS };

static BUCKET_SPAN_FIELDS: &[(u32, &str, Kind)] = &[(1, "offset", Kind::Varint), (2, "length", Kind::Varint)];

/// A cursor over one message's bytes.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data[0]` in the whole body, for error messages.
    base: usize,
    /// How many more levels of nesting are allowed below this message (prost's recursion budget).
    depth: u32,
    schema: &'static Schema,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], schema: &'static Schema) -> Self {
        Reader { data, pos: 0, base: 0, depth: RECURSION_LIMIT, schema }
    }

    #[inline(always)]
    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    #[inline(always)]
    fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    fn field(&self, tag: u32) -> Field {
        self.schema.field(tag)
    }

    fn unknown(&self, tag: u32) -> Field {
        Field { message: self.schema.name, name: "", tag }
    }

    /// Names a field for an error: by the schema if it is a known field being read, as unknown
    /// if it is being skipped (a skipped field may reuse a known number inside a group).
    fn name(&self, tag: u32, known: bool) -> Field {
        if known {
            self.field(tag)
        } else {
            self.unknown(tag)
        }
    }

    #[inline(always)]
    fn varint(&mut self) -> Res<u64> {
        if let Some(&b) = self.data.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_multi()
    }

    /// The multi-byte case, following prost: at most 10 bytes, and the 10th may only hold the
    /// top bit of the value.
    #[inline]
    fn varint_multi(&mut self) -> Res<u64> {
        let bytes = self.rest();
        let mut value = 0u64;
        for (i, &b) in bytes.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    break;
                }
                self.pos += i + 1;
                return Ok(value);
            }
        }
        let (message, offset) = (self.schema.name, self.base + self.pos);
        if bytes.len() >= 10 {
            fail(DecodeError::VarintOverflow { message, offset })
        } else {
            fail(DecodeError::TruncatedVarint { message, offset })
        }
    }

    #[inline(always)]
    fn key(&mut self) -> Res<Key> {
        let at = self.base + self.pos;
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint,
            1 => Wire::Fixed64,
            2 => Wire::Len,
            3 => Wire::StartGroup,
            4 => Wire::EndGroup,
            5 => Wire::Fixed32,
            _ => return fail(DecodeError::InvalidKey { message: self.schema.name, key, offset: at }),
        };
        match u32::try_from(key >> 3) {
            Ok(tag) if tag != 0 && key <= u64::from(u32::MAX) => Ok(Key { tag, wire, at }),
            _ => fail(DecodeError::InvalidKey { message: self.schema.name, key, offset: at }),
        }
    }

    #[inline(always)]
    fn expect(&self, k: Key, wire: Wire) -> Res<()> {
        if k.wire == wire {
            return Ok(());
        }
        fail(DecodeError::WrongWireType {
            field: self.field(k.tag),
            found: k.wire.name(),
            expected: wire.name(),
            offset: k.at,
        })
    }

    /// Reads a length prefix and returns the bytes it covers, with their offset in the body.
    #[inline(always)]
    fn len_prefixed(&mut self, k: Key, known: bool) -> Res<(&'a [u8], usize)> {
        let len = self.varint()?;
        let rest = self.rest();
        match usize::try_from(len).ok().and_then(|n| rest.get(..n)) {
            Some(bytes) => {
                let at = self.base + self.pos;
                self.pos += bytes.len();
                Ok((bytes, at))
            }
            None => fail(DecodeError::LengthOutOfBounds {
                field: self.name(k.tag, known),
                len,
                available: rest.len(),
                offset: k.at,
            }),
        }
    }

    #[inline(always)]
    fn message(&mut self, k: Key, schema: &'static Schema) -> Res<Reader<'a>> {
        self.expect(k, Wire::Len)?;
        if self.depth == 0 {
            return fail(DecodeError::TooDeep { field: self.field(k.tag), offset: k.at });
        }
        let (data, base) = self.len_prefixed(k, true)?;
        Ok(Reader { data, pos: 0, base, depth: self.depth - 1, schema })
    }

    #[inline(always)]
    fn string(&mut self, k: Key) -> Res<&'a str> {
        self.expect(k, Wire::Len)?;
        let (bytes, _) = self.len_prefixed(k, true)?;
        utf8(bytes).map_err(|_| Box::new(DecodeError::InvalidUtf8 { field: self.field(k.tag), offset: k.at }))
    }

    #[inline(always)]
    fn varint_field(&mut self, k: Key) -> Res<u64> {
        self.expect(k, Wire::Varint)?;
        self.varint()
    }

    #[inline(always)]
    fn fixed64(&mut self, k: Key) -> Res<u64> {
        self.expect(k, Wire::Fixed64)?;
        self.take::<8>(k, true).map(|bytes| u64::from_le_bytes(*bytes))
    }

    #[inline(always)]
    fn take<const N: usize>(&mut self, k: Key, known: bool) -> Res<&'a [u8; N]> {
        let rest = self.rest();
        match rest.first_chunk::<N>() {
            Some(bytes) => {
                self.pos += N;
                Ok(bytes)
            }
            None => fail(DecodeError::Truncated {
                field: self.name(k.tag, known),
                needed: N,
                available: rest.len(),
                offset: k.at,
            }),
        }
    }

    /// A repeated varint field, packed or not: calls `f` with each value and its offset.
    #[inline]
    fn repeated_varint(&mut self, k: Key, mut f: impl FnMut(u64, usize) -> Res<()>) -> Res<()> {
        if k.wire == Wire::Len {
            let (data, base) = self.len_prefixed(k, true)?;
            let mut packed = Reader { data, pos: 0, base, depth: self.depth, schema: self.schema };
            while !packed.at_end() {
                let at = packed.base + packed.pos;
                f(packed.varint()?, at)?;
            }
            Ok(())
        } else {
            self.expect(k, Wire::Varint)?;
            let at = self.base + self.pos;
            f(self.varint()?, at)
        }
    }

    /// Checks a field of a message whose contents are not kept: known fields must have the wire
    /// type and contents prost expects, unknown ones are skipped.
    fn check_field(&mut self, k: Key) -> Res<()> {
        let Some((_, kind)) = self.schema.lookup(k.tag) else {
            return self.skip(k);
        };
        match kind {
            Kind::Varint => self.varint_field(k).map(drop),
            Kind::Fixed64 => self.fixed64(k).map(drop),
            Kind::Str => self.string(k).map(drop),
            Kind::Message(schema) => {
                let mut m = self.message(k, schema)?;
                while !m.at_end() {
                    let k = m.key()?;
                    m.check_field(k)?;
                }
                Ok(())
            }
            Kind::RepeatedVarint => self.repeated_varint(k, |_, _| Ok(())),
            Kind::RepeatedFixed64 => {
                if k.wire == Wire::Len {
                    let (bytes, _) = self.len_prefixed(k, true)?;
                    if bytes.len() % 8 != 0 {
                        return fail(DecodeError::PackedLength {
                            field: self.field(k.tag),
                            len: bytes.len(),
                            offset: k.at,
                        });
                    }
                    Ok(())
                } else {
                    self.fixed64(k).map(drop)
                }
            }
        }
    }

    /// Skips an unknown field the way prost does, groups included, spending one level of the
    /// recursion budget per field (so even a scalar fails at the limit).
    fn skip(&mut self, k: Key) -> Res<()> {
        self.skip_at(k, self.depth)
    }

    fn skip_at(&mut self, k: Key, depth: u32) -> Res<()> {
        if depth == 0 {
            return fail(DecodeError::TooDeep { field: self.unknown(k.tag), offset: k.at });
        }
        match k.wire {
            Wire::Varint => self.varint().map(drop),
            Wire::Fixed64 => self.take::<8>(k, false).map(drop),
            Wire::Fixed32 => self.take::<4>(k, false).map(drop),
            Wire::Len => self.len_prefixed(k, false).map(drop),
            Wire::StartGroup => loop {
                if self.at_end() {
                    return fail(DecodeError::UnterminatedGroup { field: self.unknown(k.tag), offset: k.at });
                }
                let inner = self.key()?;
                if inner.wire == Wire::EndGroup {
                    if inner.tag != k.tag {
                        return fail(DecodeError::UnexpectedEndGroup {
                            field: self.unknown(inner.tag),
                            offset: inner.at,
                        });
                    }
                    return Ok(());
                }
                self.skip_at(inner, depth - 1)?;
            },
            Wire::EndGroup => fail(DecodeError::UnexpectedEndGroup { field: self.unknown(k.tag), offset: k.at }),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn family_names_drop_the_suffix_of_the_series_type() {
        let cases = [
            (MetricType::Histogram, "http_duration_seconds_bucket", "http_duration_seconds"),
            (MetricType::Histogram, "http_duration_seconds_sum", "http_duration_seconds"),
            (MetricType::Histogram, "http_duration_seconds_count", "http_duration_seconds"),
            (MetricType::Histogram, "http_duration_seconds", "http_duration_seconds"),
            (MetricType::GaugeHistogram, "queue_gcount", "queue"),
            (MetricType::GaugeHistogram, "queue_count", "queue_count"),
            (MetricType::Summary, "gc_seconds_sum", "gc_seconds"),
            (MetricType::Summary, "gc_seconds_bucket", "gc_seconds_bucket"),
            (MetricType::Counter, "requests_total", "requests_total"),
            (MetricType::Gauge, "temperature_count", "temperature_count"),
            (MetricType::Histogram, "_bucket", "_bucket"),
            (MetricType::Unknown, "", ""),
        ];
        for (t, series, family) in cases {
            assert_eq!(t.family_name(series), family, "{t:?} {series}");
        }
    }

    use super::*;
    use crate::prometheus as v1;
    use crate::write_v2 as v2;
    use prost::Message;

    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }

    fn key(tag: u32, wire: u8) -> Vec<u8> {
        varint(u64::from(tag) << 3 | u64::from(wire))
    }

    fn len_field(tag: u32, payload: &[u8]) -> Vec<u8> {
        [key(tag, 2), varint(payload.len() as u64), payload.to_vec()].concat()
    }

    /// Both decoders must reject `bytes` (as v1 and v2), and ours with the given error for v1.
    fn rejected_v1(bytes: &[u8]) -> DecodeError {
        assert!(v1::WriteRequest::decode(bytes).is_err(), "prost accepts {bytes:02x?}");
        WriteBatch::decode_v1(bytes).expect_err("decoded")
    }

    fn label(name: &str, value: &str) -> v1::Label {
        v1::Label { name: name.into(), value: value.into() }
    }

    fn node_request() -> v1::WriteRequest {
        v1::WriteRequest {
            timeseries: vec![
                v1::TimeSeries {
                    labels: vec![label("__name__", "up"), label("job", "node")],
                    samples: vec![
                        v1::Sample { value: 1.0, timestamp: 1_700_000_000_000 },
                        v1::Sample { value: f64::from_bits(STALE_NAN), timestamp: 1_700_000_015_000 },
                    ],
                    exemplars: vec![v1::Exemplar { labels: vec![label("trace_id", "abc")], value: 2.0, timestamp: 5 }],
                    histograms: vec![v1::Histogram::default()],
                },
                v1::TimeSeries { labels: vec![label("__name__", "other")], ..Default::default() },
            ],
            metadata: vec![v1::MetricMetadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "Whether the target is up.".into(),
                unit: "".into(),
            }],
        }
    }

    #[test]
    fn v1_request_decodes_into_flat_arrays() {
        let bytes = node_request().encode_to_vec();
        let batch = WriteBatch::decode_v1(&bytes).unwrap();
        assert_eq!(batch.series.len(), 2);
        let first = &batch.series[0];
        assert_eq!(batch.series_labels(first), &[("__name__", "up"), ("job", "node")]);
        let samples = batch.series_samples(first);
        assert_eq!((samples[0].timestamp, samples[0].value), (1_700_000_000_000, 1.0));
        assert_eq!(samples[1].value.to_bits(), STALE_NAN, "staleness marker must keep its bits");
        assert_eq!((first.histograms, first.exemplars, batch.histograms, batch.exemplars), (1, 1, 1, 1));
        assert_eq!(batch.series_labels(&batch.series[1]), &[("__name__", "other")]);
        assert!(batch.series_samples(&batch.series[1]).is_empty());
        assert_eq!(
            batch.metadata,
            vec![Metadata {
                metric_type: MetricType::Counter,
                metric_family_name: "up",
                help: "Whether the target is up.",
                unit: ""
            }]
        );
    }

    #[test]
    fn empty_bodies_decode_as_empty_batches() {
        assert_eq!(WriteBatch::decode_v1(&[]), Ok(WriteBatch::default()));
        assert_eq!(WriteBatch::decode_v2(&[]), Ok(WriteBatch::default()));
    }

    #[test]
    fn foreign_series_ranges_give_empty_slices() {
        let batch = WriteBatch::default();
        let s = Series { labels: 3..9, samples: 1..2, histograms: 0, exemplars: 0, created_timestamp: 0 };
        assert!(batch.series_labels(&s).is_empty());
        assert!(batch.series_samples(&s).is_empty());
    }

    #[test]
    fn v2_request_resolves_symbols_and_metadata() {
        let req = v2::Request {
            symbols: ["", "__name__", "http_requests_total", "job", "api", "Requests.", "seconds"]
                .map(String::from)
                .to_vec(),
            timeseries: vec![
                v2::TimeSeries {
                    labels_refs: vec![1, 2, 3, 4],
                    samples: vec![v2::Sample { value: f64::from_bits(STALE_NAN), timestamp: 10, start_timestamp: 7 }],
                    exemplars: vec![v2::Exemplar { labels_refs: vec![3, 4], value: 1.0, timestamp: 10 }],
                    metadata: Some(v2::Metadata { r#type: 1, help_ref: 5, unit_ref: 6 }),
                    created_timestamp: 3,
                    ..Default::default()
                },
                // No metadata worth reporting: unspecified type, empty help and unit.
                v2::TimeSeries {
                    labels_refs: vec![3, 4],
                    histograms: vec![v2::Histogram::default()],
                    metadata: Some(v2::Metadata::default()),
                    ..Default::default()
                },
            ],
        };
        let bytes = req.encode_to_vec();
        let batch = WriteBatch::decode_v2(&bytes).unwrap();
        let s = &batch.series[0];
        assert_eq!(batch.series_labels(s), &[("__name__", "http_requests_total"), ("job", "api")]);
        let sample = batch.series_samples(s)[0];
        assert_eq!((sample.timestamp, sample.value.to_bits(), sample.start_timestamp), (10, STALE_NAN, 7));
        assert_eq!((s.created_timestamp, s.exemplars, batch.histograms), (3, 1, 1));
        assert_eq!(
            batch.metadata,
            vec![Metadata {
                metric_type: MetricType::Counter,
                metric_family_name: "http_requests_total",
                help: "Requests.",
                unit: "seconds"
            }]
        );
    }

    #[test]
    fn v2_symbols_may_follow_the_series() {
        let series = v2::TimeSeries { labels_refs: vec![1, 2], ..Default::default() }.encode_to_vec();
        let bytes = [len_field(5, &series), len_field(4, b""), len_field(4, b"a"), len_field(4, b"b")].concat();
        let batch = WriteBatch::decode_v2(&bytes).unwrap();
        assert_eq!(batch.labels, vec![("a", "b")]);
    }

    #[test]
    fn v2_symbol_table_rules() {
        let encode = |symbols: &[&str], refs: Vec<u32>| {
            v2::Request {
                symbols: symbols.iter().map(|s| s.to_string()).collect(),
                timeseries: vec![v2::TimeSeries { labels_refs: refs, ..Default::default() }],
            }
            .encode_to_vec()
        };
        let err = WriteBatch::decode_v2(&encode(&["", "a"], vec![1, 2])).unwrap_err();
        assert!(matches!(err, DecodeError::SymbolOutOfRange { reference: 2, symbols: 2, .. }), "{err}");
        assert!(err.to_string().contains("v2.TimeSeries.labels_refs"), "{err}");

        let err = WriteBatch::decode_v2(&encode(&["", "a"], vec![1, 1, 1])).unwrap_err();
        assert!(matches!(err, DecodeError::OddLabelRefs { count: 3, .. }), "{err}");

        let err = WriteBatch::decode_v2(&encode(&["x", "a"], vec![1, 1])).unwrap_err();
        assert_eq!(err, DecodeError::FirstSymbolNotEmpty { offset: 0 });

        // Reference 0 is the empty string even without a table, as proto3 cannot tell it from unset.
        let bytes = encode(&[], vec![0, 0]);
        assert_eq!(WriteBatch::decode_v2(&bytes).unwrap().labels, vec![("", "")]);

        let exemplar = v2::Exemplar { labels_refs: vec![1, 9], ..Default::default() };
        let req = v2::Request {
            symbols: vec!["".into(), "a".into()],
            timeseries: vec![v2::TimeSeries { exemplars: vec![exemplar], ..Default::default() }],
        };
        let err = WriteBatch::decode_v2(&req.encode_to_vec()).unwrap_err();
        assert!(matches!(err, DecodeError::SymbolOutOfRange { reference: 9, .. }), "{err}");

        let md = v2::Metadata { r#type: 2, help_ref: 1, unit_ref: 5 };
        let req = v2::Request {
            symbols: vec!["".into(), "a".into()],
            timeseries: vec![v2::TimeSeries { metadata: Some(md), ..Default::default() }],
        };
        let err = WriteBatch::decode_v2(&req.encode_to_vec()).unwrap_err();
        assert!(err.to_string().contains("v2.Metadata.unit_ref"), "{err}");
    }

    #[test]
    fn v2_labels_refs_packed_and_unpacked_mix() {
        let mut series = key(1, 0);
        series.extend(varint(1));
        series.extend(len_field(1, &[2, 1]));
        series.extend(key(1, 0));
        series.extend(varint(2));
        let bytes = [len_field(4, b""), len_field(4, b"a"), len_field(4, b"b"), len_field(5, &series)].concat();
        let batch = WriteBatch::decode_v2(&bytes).unwrap();
        assert_eq!(batch.labels, vec![("a", "b"), ("a", "b")]);
    }

    #[test]
    fn v2_metadata_seen_twice_is_merged() {
        let first = v2::Metadata { r#type: 3, help_ref: 0, unit_ref: 0 }.encode_to_vec();
        let second = v2::Metadata { r#type: 0, help_ref: 1, unit_ref: 0 }.encode_to_vec();
        let series = [len_field(5, &first), len_field(5, &second)].concat();
        let bytes = [len_field(4, b""), len_field(4, b"help"), len_field(5, &series)].concat();
        let batch = WriteBatch::decode_v2(&bytes).unwrap();
        assert_eq!(batch.metadata[0].metric_type, MetricType::Histogram);
        assert_eq!(batch.metadata[0].help, "help");
    }

    #[test]
    fn last_scalar_wins_and_unknown_fields_are_skipped() {
        let mut sample = v1::Sample { value: 1.0, timestamp: 5 }.encode_to_vec();
        sample.extend(key(2, 0));
        sample.extend(varint(9));
        // Unknown fields of every wire type, a nested group among them.
        sample.extend(key(7, 5));
        sample.extend([1, 2, 3, 4]);
        sample.extend(key(8, 1));
        sample.extend([0; 8]);
        sample.extend(len_field(9, b"junk"));
        sample.extend([key(10, 3), key(11, 0), varint(1), key(12, 3), key(12, 4), key(10, 4)].concat());
        let series = len_field(2, &sample);
        let bytes = [len_field(1, &series), key(2, 0), varint(4)].concat();
        let batch = WriteBatch::decode_v1(&bytes).unwrap();
        assert_eq!((batch.samples[0].timestamp, batch.samples[0].value), (9, 1.0));
        assert!(v1::WriteRequest::decode(bytes.as_slice()).is_ok());
    }

    #[test]
    fn unknown_metric_types_map_to_unknown() {
        let md = v1::MetricMetadata { r#type: 42, ..Default::default() };
        let bytes = v1::WriteRequest { metadata: vec![md], ..Default::default() }.encode_to_vec();
        assert_eq!(WriteBatch::decode_v1(&bytes).unwrap().metadata[0].metric_type, MetricType::Unknown);
        // Enums keep the low 32 bits of the varint, as prost does: 2^32 + 2 is GAUGE.
        let md = [key(1, 0), varint((1 << 32) + 2)].concat();
        let bytes = len_field(3, &md);
        assert_eq!(WriteBatch::decode_v1(&bytes).unwrap().metadata[0].metric_type, MetricType::Gauge);
    }

    #[test]
    fn truncated_and_oversized_lengths_are_rejected() {
        let bytes = [key(1, 2), varint(1 << 63)].concat();
        assert!(matches!(rejected_v1(&bytes), DecodeError::LengthOutOfBounds { len, .. } if len == 1 << 63));
        let bytes = [key(1, 2), varint(u64::MAX)].concat();
        assert!(matches!(rejected_v1(&bytes), DecodeError::LengthOutOfBounds { .. }));
        // A nested length that fits the body but not its enclosing message.
        let series = len_field(1, b"\x0a\x05abc");
        let err = rejected_v1(&len_field(1, &series));
        assert!(matches!(err, DecodeError::LengthOutOfBounds { available: 3, .. }), "{err}");
        // Every proper prefix of a valid request that cuts a field short fails.
        let full = node_request().encode_to_vec();
        for end in 0..full.len() {
            let cut = &full[..end];
            assert_eq!(WriteBatch::decode_v1(cut).is_ok(), v1::WriteRequest::decode(cut).is_ok(), "prefix {end}");
        }
        let err = rejected_v1(&len_field(1, &len_field(2, &[0x09, 1, 2, 3])));
        assert!(matches!(err, DecodeError::Truncated { needed: 8, available: 3, .. }), "{err}");
    }

    #[test]
    fn bad_varints_and_keys_are_rejected() {
        assert!(matches!(rejected_v1(&[0x0a, 0x80]), DecodeError::TruncatedVarint { offset: 1, .. }));
        let ten_bytes_overflowing = [&[0x0a][..], &[0xff; 9], &[0x02]].concat();
        assert!(matches!(rejected_v1(&ten_bytes_overflowing), DecodeError::VarintOverflow { offset: 1, .. }));
        let eleven_bytes = [&[0x0a][..], &[0x80; 10], &[0x00]].concat();
        assert!(matches!(rejected_v1(&eleven_bytes), DecodeError::VarintOverflow { .. }));
        // Ten bytes ending in 0x01 are u64::MAX: a valid varint, here an impossible length.
        let ten_bytes_max = [&[0x0a][..], &[0xff; 9], &[0x01]].concat();
        assert!(matches!(rejected_v1(&ten_bytes_max), DecodeError::LengthOutOfBounds { len: u64::MAX, .. }));
        // Non-minimal encodings are fine.
        assert!(WriteBatch::decode_v1(&[0x10, 0x80, 0x80, 0x00]).is_ok());

        assert!(matches!(rejected_v1(&[0x00]), DecodeError::InvalidKey { key: 0, .. }));
        assert!(matches!(rejected_v1(&[0x0e]), DecodeError::InvalidKey { key: 14, .. }));
        assert!(matches!(rejected_v1(&[0x0f]), DecodeError::InvalidKey { .. }));
        assert!(matches!(rejected_v1(&varint(1 << 32)), DecodeError::InvalidKey { .. }));
    }

    #[test]
    fn wrong_wire_types_are_rejected() {
        let err = rejected_v1(&[key(1, 1), vec![0; 8]].concat());
        assert!(
            matches!(err, DecodeError::WrongWireType { field: Field { name: "timeseries", .. }, found: "64-bit", .. }),
            "{err}"
        );
        // In a histogram, whose contents are only checked.
        let hist = [key(3, 0), varint(1)].concat();
        let err = rejected_v1(&len_field(1, &len_field(4, &hist)));
        assert!(err.to_string().contains("Histogram.sum (field 3)"), "{err}");
        // A packed double whose length is not a multiple of 8.
        let err = rejected_v1(&len_field(1, &len_field(4, &len_field(10, &[0; 12]))));
        assert!(matches!(err, DecodeError::PackedLength { len: 12, .. }), "{err}");
        // A known field sent as a group.
        let err = rejected_v1(&len_field(1, &[key(1, 3), key(1, 4)].concat()));
        assert!(matches!(err, DecodeError::WrongWireType { found: "start-group", .. }), "{err}");
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let bad_label = [len_field(1, b"ok"), len_field(2, b"\xff\xfe")].concat();
        let err = rejected_v1(&len_field(1, &len_field(1, &bad_label)));
        assert!(matches!(err, DecodeError::InvalidUtf8 { field: Field { name: "value", .. }, offset: 8 }), "{err}");
        // Also in exemplar labels, which are otherwise skipped.
        let exemplar = len_field(1, &len_field(1, b"\xc0"));
        rejected_v1(&len_field(1, &len_field(3, &exemplar)));
        let err = WriteBatch::decode_v2(&len_field(4, b"\xe2\x82")).unwrap_err();
        assert!(matches!(err, DecodeError::InvalidUtf8 { .. }), "{err}");
    }

    #[test]
    fn broken_groups_are_rejected() {
        assert!(matches!(rejected_v1(&key(5, 4)), DecodeError::UnexpectedEndGroup { .. }));
        assert!(matches!(rejected_v1(&[key(5, 3), key(6, 4)].concat()), DecodeError::UnexpectedEndGroup { .. }));
        assert!(matches!(rejected_v1(&key(5, 3)), DecodeError::UnterminatedGroup { .. }));
        // A group may not run past the end of the message holding it.
        let series = [key(5, 3)].concat();
        let bytes = [len_field(1, &series), key(5, 4)].concat();
        assert!(matches!(rejected_v1(&bytes), DecodeError::UnterminatedGroup { .. }));
    }

    /// `depth` unknown groups nested inside each other, wrapped in `wrap` TimeSeries levels.
    fn nested_groups(depth: usize, wrap: usize) -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..depth).flat_map(|_| key(9, 3)).collect();
        bytes.extend((0..depth).flat_map(|_| key(9, 4)));
        (0..wrap).fold(bytes, |inner, _| len_field(1, &inner))
    }

    #[test]
    fn nesting_limit_matches_prost() {
        for wrap in 0..2 {
            for depth in 95..106 {
                let bytes = nested_groups(depth, wrap);
                let prost_ok = v1::WriteRequest::decode(bytes.as_slice()).is_ok();
                let ours = WriteBatch::decode_v1(&bytes);
                assert_eq!(ours.is_ok(), prost_ok, "depth {depth} wrap {wrap}: {ours:?}");
                assert_eq!(prost_ok, depth + wrap <= RECURSION_LIMIT as usize, "depth {depth} wrap {wrap}");
                if let Err(e) = ours {
                    assert!(matches!(e, DecodeError::TooDeep { .. }), "{e}");
                }
            }
        }
        // Far beyond the limit: an error, not a stack overflow.
        let bytes = nested_groups(100_000, 0);
        assert!(matches!(WriteBatch::decode_v1(&bytes), Err(DecodeError::TooDeep { .. })));
    }

    #[test]
    fn a_v1_body_read_as_v2_is_empty() {
        let bytes = node_request().encode_to_vec();
        assert_eq!(WriteBatch::decode_v2(&bytes), Ok(WriteBatch::default()));
    }

    #[test]
    fn errors_say_what_and_where() {
        let err = rejected_v1(&len_field(1, &[0x0a, 0x80]));
        assert_eq!(err.to_string(), "truncated varint at byte 3 in TimeSeries");
        let err = rejected_v1(&[key(1, 2), varint(10)].concat());
        assert_eq!(
            err.to_string(),
            "WriteRequest.timeseries (field 1) at byte 0 declares 10 bytes but only 0 remain in the enclosing message"
        );
    }
}
