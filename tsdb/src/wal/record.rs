//! Logical WAL records, encoded byte for byte as Prometheus's `tsdb/record` package does, so a
//! Prometheus server or `promtool` can replay a WAL we wrote and we can replay theirs.
//!
//! Every record starts with a type byte. Integers are big-endian fixed width or Go varints
//! (unsigned LEB128; signed ones zig-zag encoded first). Deltas in samples and tombstones are
//! signed varints even though Prometheus's format document draws them as unsigned.

use crate::encoding::{put_be64, put_uvarint, put_uvarint_str, put_varint, Decbuf, DecodeResult};
use crate::labels::Labels;
use crate::Error;

use super::{Record, RefMetadata, RefSample, RefSeries, RefTombstone};

/// Record type bytes (Prometheus `record.Type`).
pub const SERIES: u8 = 1;
pub const SAMPLES: u8 = 2;
pub const TOMBSTONES: u8 = 3;
pub const EXEMPLARS: u8 = 4;
pub const MMAP_MARKERS: u8 = 5;
pub const METADATA: u8 = 6;
pub const HISTOGRAM_SAMPLES: u8 = 7;
pub const FLOAT_HISTOGRAM_SAMPLES: u8 = 8;

/// Metadata field names Prometheus writes (and the only ones it reads back).
const UNIT_FIELD: &str = "UNIT";
const HELP_FIELD: &str = "HELP";

/// Appends a Series record: per series `BE64 ref`, `uvarint #labels`, then name/value strings.
pub fn encode_series(series: &[RefSeries], buf: &mut Vec<u8>) {
    buf.push(SERIES);
    for s in series {
        put_be64(buf, s.series_ref);
        put_labels(buf, s.labels.iter());
    }
}

/// Appends a label set as Prometheus's `record.EncodeLabels` does: `uvarint #labels`, then the
/// name and value strings.
pub(crate) fn put_labels<'a>(buf: &mut Vec<u8>, labels: impl Iterator<Item = (&'a str, &'a str)> + Clone) {
    put_uvarint(buf, labels.clone().count() as u64);
    for (name, value) in labels {
        put_uvarint_str(buf, name);
        put_uvarint_str(buf, value);
    }
}

/// Appends a Samples (v1) record. The first sample's ref and timestamp are the base; every
/// sample, the first included, is written as signed deltas from it plus the raw float bits.
pub fn encode_samples(samples: &[RefSample], buf: &mut Vec<u8>) {
    buf.push(SAMPLES);
    let Some(first) = samples.first() else {
        return;
    };
    put_be64(buf, first.series_ref);
    put_be64(buf, first.t as u64);
    for s in samples {
        // Go computes int64(ref) - int64(base) with wrap-around; so do we.
        put_varint(buf, (s.series_ref as i64).wrapping_sub(first.series_ref as i64));
        put_varint(buf, s.t.wrapping_sub(first.t));
        put_be64(buf, s.v.to_bits());
    }
}

/// Appends a Tombstones record: per interval `BE64 ref`, `varint mint`, `varint maxt`.
pub fn encode_tombstones(tombstones: &[RefTombstone], buf: &mut Vec<u8>) {
    buf.push(TOMBSTONES);
    for t in tombstones {
        put_be64(buf, t.series_ref);
        put_varint(buf, t.mint);
        put_varint(buf, t.maxt);
    }
}

/// Appends a Metadata record: per series `uvarint ref`, `u8 type`, `uvarint 2`, then the
/// UNIT and HELP fields as name/value strings.
pub fn encode_metadata(metadata: &[RefMetadata], buf: &mut Vec<u8>) {
    buf.push(METADATA);
    for m in metadata {
        put_uvarint(buf, m.series_ref);
        buf.push(m.metric_type);
        put_uvarint(buf, 2);
        put_uvarint_str(buf, UNIT_FIELD);
        put_uvarint_str(buf, &m.unit);
        put_uvarint_str(buf, HELP_FIELD);
        put_uvarint_str(buf, &m.help);
    }
}

/// Decodes one whole logical record. Types this crate does not model (exemplars, histograms,
/// mmap markers, newer ones) come back as [`Record::Unsupported`] with their type byte. An empty
/// record has no type; Prometheus's replay calls it corrupt, and so do we.
pub fn decode(rec: &[u8]) -> Result<Record, Error> {
    let Some((&typ, body)) = rec.split_first() else {
        return Err(Error::CorruptRecord("empty record".into()));
    };
    let mut d = Decoder::new(body, "");
    match typ {
        SERIES => {
            d.what = "series";
            let mut out = Vec::new();
            while !d.at_end() {
                let series_ref = d.be64()?;
                let labels = d.labels()?;
                out.push(RefSeries { series_ref, labels });
            }
            Ok(Record::Series(out))
        }
        SAMPLES => {
            d.what = "samples";
            if d.at_end() {
                return Ok(Record::Samples(Vec::new()));
            }
            let base_ref = d.be64()?;
            let base_t = d.be64()? as i64;
            // Each sample takes at least 10 bytes; reserving from that bound cannot overshoot.
            let mut out = Vec::with_capacity(d.remaining() / 10);
            while !d.at_end() {
                let dref = d.varint()?;
                let dt = d.varint()?;
                let v = f64::from_bits(d.be64()?);
                out.push(RefSample {
                    series_ref: (base_ref as i64).wrapping_add(dref) as u64,
                    t: base_t.wrapping_add(dt),
                    v,
                });
            }
            Ok(Record::Samples(out))
        }
        TOMBSTONES => {
            d.what = "tombstones";
            let mut out = Vec::new();
            while !d.at_end() {
                let series_ref = d.be64()?;
                let mint = d.varint()?;
                let maxt = d.varint()?;
                out.push(RefTombstone { series_ref, mint, maxt });
            }
            Ok(Record::Tombstones(out))
        }
        METADATA => {
            d.what = "metadata";
            let mut out = Vec::new();
            while !d.at_end() {
                let series_ref = d.uvarint()?;
                let metric_type = d.byte()?;
                let fields = d.uvarint()?;
                let (mut unit, mut help) = (String::new(), String::new());
                // Unknown fields are skipped, as Prometheus does, but must still be parsed to
                // find where the next entry starts.
                for _ in 0..fields {
                    let name = d.str()?;
                    let value = d.str()?;
                    match name {
                        UNIT_FIELD => unit = value.to_owned(),
                        HELP_FIELD => help = value.to_owned(),
                        _ => {}
                    }
                }
                out.push(RefMetadata { series_ref, metric_type, unit, help });
            }
            Ok(Record::Metadata(out))
        }
        other => Ok(Record::Unsupported(other)),
    }
}

/// A cursor over a record body whose every read reports truncation or malformed data as an
/// error naming the record kind and how many bytes were left.
pub(crate) struct Decoder<'a> {
    d: Decbuf<'a>,
    what: &'static str,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(body: &'a [u8], what: &'static str) -> Self {
        Decoder { d: Decbuf::new(body), what }
    }

    pub(crate) fn err(&self, msg: &str) -> Error {
        Error::CorruptRecord(format!("{} record: {msg} ({} bytes left)", self.what, self.remaining()))
    }

    fn check<T>(&self, read: DecodeResult<T>) -> Result<T, Error> {
        read.map_err(|msg| self.err(msg))
    }

    pub(crate) fn remaining(&self) -> usize {
        self.d.remaining()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn byte(&mut self) -> Result<u8, Error> {
        let read = self.d.byte();
        self.check(read)
    }

    pub(crate) fn be64(&mut self) -> Result<u64, Error> {
        let read = self.d.be64();
        self.check(read)
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, Error> {
        let read = self.d.uvarint();
        self.check(read)
    }

    fn varint(&mut self) -> Result<i64, Error> {
        let read = self.d.varint();
        self.check(read)
    }

    fn str(&mut self) -> Result<&'a str, Error> {
        let read = self.d.uvarint_str();
        self.check(read)
    }

    pub(crate) fn uvarint_bytes(&mut self) -> Result<&'a [u8], Error> {
        let read = self.d.uvarint_bytes();
        self.check(read)
    }

    /// A label set. Prometheus sorts decoded labels rather than trusting the writer, so we do
    /// too; a repeated or empty name is corruption. Empty values mean "no label" and are dropped,
    /// so a set of only those (never logged by Prometheus, but accepted by its decoder) is empty.
    pub(crate) fn labels(&mut self) -> Result<Labels, Error> {
        let n = self.uvarint()?;
        // Each pair takes at least two bytes, which bounds a lying count before allocating.
        if n > (self.remaining() / 2) as u64 {
            return Err(self.err("label count exceeds record size"));
        }
        let mut pairs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let name = self.str()?;
            let value = self.str()?;
            pairs.push((name, value));
        }
        if !pairs.is_sorted_by(|a, b| a.0 <= b.0) {
            pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        if let Some((_, value)) = pairs.iter().find(|p| p.0.is_empty()) {
            return Err(self.err(&format!("empty label name (value {value:?})")));
        }
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(self.err(&format!("duplicate label name {:?}", w[0].0)));
        }
        Ok(Labels::from_sorted_unchecked(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs)
    }

    #[test]
    fn bad_varints_name_the_record() {
        // The varint rules themselves are tested in `encoding`.
        let mut d = Decoder::new(&[0xff; 10], "samples");
        let err = d.uvarint().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("samples record: uvarint overflows 64 bits"), "{err}");
        let mut d = Decoder::new(&[0x80, 0x80], "series");
        let err = d.varint().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("series record: unexpected end of data"), "{err}");
    }

    #[test]
    fn samples_layout_is_prometheus() {
        let samples = [RefSample { series_ref: 10, t: 1000, v: 1.5 }, RefSample { series_ref: 9, t: 999, v: -2.0 }];
        let mut buf = Vec::new();
        encode_samples(&samples, &mut buf);
        let mut want = vec![SAMPLES];
        want.extend_from_slice(&10u64.to_be_bytes());
        want.extend_from_slice(&1000i64.to_be_bytes());
        want.extend_from_slice(&[0x00, 0x00]);
        want.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        want.extend_from_slice(&[0x01, 0x01]);
        want.extend_from_slice(&(-2.0f64).to_bits().to_be_bytes());
        assert_eq!(buf, want);
    }

    #[test]
    fn series_and_metadata_layout_is_prometheus() {
        let mut buf = Vec::new();
        encode_series(&[RefSeries { series_ref: 1, labels: labels(&[("a", "b")]) }], &mut buf);
        assert_eq!(buf, [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, b'a', 1, b'b']);

        let mut buf = Vec::new();
        let md = RefMetadata { series_ref: 300, metric_type: 1, unit: "s".into(), help: "h".into() };
        encode_metadata(&[md], &mut buf);
        assert_eq!(buf, [6, 0xac, 0x02, 1, 2, 4, b'U', b'N', b'I', b'T', 1, b's', 4, b'H', b'E', b'L', b'P', 1, b'h']);
    }

    #[test]
    fn round_trips_every_type() {
        let series = vec![
            RefSeries { series_ref: 1, labels: labels(&[("__name__", "up"), ("job", "x")]) },
            RefSeries { series_ref: u64::MAX, labels: labels(&[("a", "é")]) },
        ];
        let samples = vec![
            RefSample { series_ref: 5, t: i64::MAX, v: f64::from_bits(0x7ff0_0000_0000_0002) },
            RefSample { series_ref: u64::MAX, t: i64::MIN, v: -0.0 },
            RefSample { series_ref: 0, t: 0, v: f64::INFINITY },
        ];
        let tombstones = vec![RefTombstone { series_ref: 3, mint: i64::MIN, maxt: i64::MAX }];
        let metadata = vec![RefMetadata { series_ref: 7, metric_type: 2, unit: String::new(), help: "help me".into() }];

        let mut buf = Vec::new();
        encode_series(&series, &mut buf);
        assert_eq!(decode(&buf).expect("series"), Record::Series(series));
        buf.clear();
        encode_samples(&samples, &mut buf);
        match decode(&buf).expect("samples") {
            Record::Samples(got) => {
                assert_eq!(got.len(), samples.len());
                for (g, w) in got.iter().zip(&samples) {
                    assert_eq!((g.series_ref, g.t, g.v.to_bits()), (w.series_ref, w.t, w.v.to_bits()));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
        buf.clear();
        encode_samples(&[], &mut buf);
        assert_eq!(decode(&buf).expect("empty samples"), Record::Samples(vec![]));
        buf.clear();
        encode_tombstones(&tombstones, &mut buf);
        assert_eq!(decode(&buf).expect("tombstones"), Record::Tombstones(tombstones));
        buf.clear();
        encode_metadata(&metadata, &mut buf);
        assert_eq!(decode(&buf).expect("metadata"), Record::Metadata(metadata));
        assert_eq!(decode(&[EXEMPLARS, 1, 2, 3]).expect("exemplars"), Record::Unsupported(EXEMPLARS));
        assert!(matches!(decode(&[]), Err(Error::CorruptRecord(_))));
    }

    #[test]
    fn unsorted_labels_are_sorted_and_bad_ones_refused() {
        let rec = [1, 0, 0, 0, 0, 0, 0, 0, 9, 2, 1, b'b', 1, b'2', 1, b'a', 1, b'1'];
        match decode(&rec).expect("decodes") {
            Record::Series(s) => assert_eq!(s[0].labels, labels(&[("a", "1"), ("b", "2")])),
            other => panic!("unexpected {other:?}"),
        }
        let dup = [1, 0, 0, 0, 0, 0, 0, 0, 9, 2, 1, b'a', 1, b'2', 1, b'a', 1, b'1'];
        assert!(matches!(decode(&dup), Err(Error::CorruptRecord(_))));
    }

    #[test]
    fn truncations_are_errors_never_panics() {
        let mut recs = Vec::new();
        let mut b = Vec::new();
        encode_series(&[RefSeries { series_ref: 1, labels: labels(&[("__name__", "up"), ("job", "x")]) }], &mut b);
        recs.push(b.clone());
        b.clear();
        encode_samples(&[RefSample { series_ref: 1, t: 5, v: 1.0 }], &mut b);
        recs.push(b.clone());
        b.clear();
        encode_tombstones(&[RefTombstone { series_ref: 1, mint: 300, maxt: 400 }], &mut b);
        recs.push(b.clone());
        b.clear();
        encode_metadata(&[RefMetadata { series_ref: 1, metric_type: 1, unit: "u".into(), help: "h".into() }], &mut b);
        recs.push(b.clone());
        for rec in recs {
            for cut in 2..rec.len() {
                // A samples record holding only its base ref and time is a valid empty one.
                if rec[0] == SAMPLES && cut == 17 {
                    continue;
                }
                assert!(decode(&rec[..cut]).is_err(), "type {} cut at {cut} decoded", rec[0]);
            }
        }
    }
}
