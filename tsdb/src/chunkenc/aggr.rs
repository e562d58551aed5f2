//! Thanos's downsampled chunk (`AggrChunk`, chunk encoding 0xFF, thanos
//! pkg/compact/downsample/aggr.go): five aggregates of the windows of a series, each an optional
//! chunk of its own, in a fixed order: count, sum, min, max, counter.
//!
//! Layout, per aggregate in that order: `uvarint L`; `L == 0` means the aggregate is absent and
//! nothing else follows for it; otherwise one byte of sub-chunk encoding (1 = XOR for float
//! series; 3 = float histogram for the sum and counter of histogram series) and `L` bytes of
//! sub-chunk data. There is no inner checksum: the chunk record's CRC covers it all.
//!
//! Thanos's own reader (`AggrChunk.Get`) wants one byte more than an absent last aggregate
//! holds and ignores bytes after the fifth; this reader takes a zero length as absent wherever
//! it is and ignores trailing bytes too.

use bytes::Bytes;

use super::Encoding;
use crate::encoding::{put_uvarint, uvarint, VarintError};
use crate::Error;

/// One of the five aggregates, with Thanos's numbering (`AggrType`), which is also its place in
/// the chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum AggrType {
    Count = 0,
    Sum = 1,
    Min = 2,
    Max = 3,
    Counter = 4,
}

impl AggrType {
    /// Every aggregate, in chunk order.
    pub const ALL: [AggrType; 5] = [AggrType::Count, AggrType::Sum, AggrType::Min, AggrType::Max, AggrType::Counter];

    /// Thanos's name for it.
    pub fn name(self) -> &'static str {
        match self {
            AggrType::Count => "count",
            AggrType::Sum => "sum",
            AggrType::Min => "min",
            AggrType::Max => "max",
            AggrType::Counter => "counter",
        }
    }
}

/// One aggregate's chunk: its encoding and the data after the encoding byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubChunk {
    pub encoding: Encoding,
    pub data: Bytes,
}

/// A downsampled chunk: up to five aggregate chunks. Decoded chunks share the bytes they were
/// read from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AggrChunk {
    parts: [Option<SubChunk>; 5],
}

impl AggrChunk {
    /// The chunk holding `parts`, indexed by [`AggrType`] order.
    pub fn from_parts(parts: [Option<SubChunk>; 5]) -> Self {
        AggrChunk { parts }
    }

    /// The aggregate's chunk, if the chunk holds it.
    pub fn get(&self, t: AggrType) -> Option<&SubChunk> {
        self.parts[t as usize].as_ref()
    }

    /// Sets (or with `None`, removes) the aggregate's chunk.
    pub fn set(&mut self, t: AggrType, c: Option<SubChunk>) {
        self.parts[t as usize] = c;
    }

    /// Whether no aggregate is present.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Option::is_none)
    }

    /// Reads the chunk data after the 0xFF encoding byte. Each present aggregate must have its
    /// encoding byte and all its bytes, with an encoding a sub-chunk may have (XOR or a
    /// histogram encoding).
    pub fn decode(b: &Bytes) -> Result<Self, Error> {
        let mut parts: [Option<SubChunk>; 5] = Default::default();
        let mut pos = 0usize;
        for t in AggrType::ALL {
            let corrupt = |what: String| {
                Error::CorruptChunk(format!("aggregate chunk: {} aggregate at byte {pos}: {what}", t.name()))
            };
            let (len, n) = uvarint(&b[pos..]).map_err(|e| {
                corrupt(match e {
                    VarintError::Truncated => "length truncated".to_owned(),
                    VarintError::Overflow => "length overflows 64 bits".to_owned(),
                })
            })?;
            if len == 0 {
                pos += n;
                continue;
            }
            let rest = b.len() - pos - n;
            let len = usize::try_from(len).ok().filter(|&l| l < rest).ok_or_else(|| {
                corrupt(format!("{len} bytes and the encoding byte announced, {rest} left (truncated chunk)"))
            })?;
            let enc = b[pos + n];
            let encoding = match Encoding::try_from(enc) {
                Ok(e @ (Encoding::Xor | Encoding::Histogram | Encoding::FloatHistogram)) => e,
                _ => return Err(corrupt(format!("sub-chunk encoding {enc} is not a sample encoding"))),
            };
            let start = pos + n + 1;
            parts[t as usize] = Some(SubChunk { encoding, data: b.slice(start..start + len) });
            pos = start + len;
        }
        Ok(AggrChunk { parts })
    }

    /// The chunk data after the 0xFF encoding byte, as Thanos's `EncodeAggrChunk` writes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.parts.iter().flatten().map(|c| c.data.len() + 11).sum::<usize>());
        for part in &self.parts {
            match part {
                None => put_uvarint(&mut out, 0),
                Some(c) => {
                    put_uvarint(&mut out, c.data.len() as u64);
                    out.push(c.encoding as u8);
                    out.extend_from_slice(&c.data);
                }
            }
        }
        out
    }

    /// The number of windows: the count aggregate's sample count (Thanos's `NumSamples`), 0
    /// without one.
    pub fn num_samples(&self) -> u16 {
        self.get(AggrType::Count).and_then(|c| c.data.first_chunk::<2>()).map_or(0, |h| u16::from_be_bytes(*h))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::chunkenc::XorAppender;

    fn xor(samples: &[(i64, f64)]) -> SubChunk {
        let mut app = XorAppender::new();
        for &(t, v) in samples {
            app.append(t, v);
        }
        SubChunk { encoding: Encoding::Xor, data: Bytes::from(app.into_bytes()) }
    }

    fn full() -> AggrChunk {
        AggrChunk::from_parts([
            Some(xor(&[(299_999, 300.0), (599_999, 300.0)])),
            Some(xor(&[(299_999, 450.0), (599_999, 1350.0)])),
            Some(xor(&[(299_999, 0.0), (599_999, 3.0)])),
            Some(xor(&[(299_999, 2.99), (599_999, 6.0)])),
            Some(xor(&[(0, 0.0), (299_999, 299.0), (599_999, 599.0), (599_999, 599.0)])),
        ])
    }

    /// Bytes as Thanos's `EncodeAggrChunk` lays them out, built by hand.
    #[test]
    fn encodes_as_thanos_does() {
        let c = full();
        let mut want = Vec::new();
        for t in AggrType::ALL {
            let s = c.get(t).unwrap();
            assert!(s.data.len() < 128, "one-byte length in this test");
            want.push(s.data.len() as u8);
            want.push(1);
            want.extend_from_slice(&s.data);
        }
        assert_eq!(c.encode(), want);
        assert_eq!(AggrChunk::decode(&Bytes::from(want)).unwrap(), c);
        assert_eq!(c.num_samples(), 2);

        // Absent aggregates are a zero length and nothing else, the last one included.
        let mut histogram_like = full();
        histogram_like.set(AggrType::Min, None);
        histogram_like.set(AggrType::Counter, None);
        let b = histogram_like.encode();
        assert_eq!(b.last(), Some(&0));
        assert_eq!(AggrChunk::decode(&Bytes::from(b)).unwrap(), histogram_like);
        assert_eq!(AggrChunk::default().encode(), [0, 0, 0, 0, 0]);
        assert!(AggrChunk::decode(&Bytes::from_static(&[0, 0, 0, 0, 0])).unwrap().is_empty());
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut b = full().encode();
        b.extend_from_slice(&[7, 7, 7]);
        assert_eq!(AggrChunk::decode(&Bytes::from(b)).unwrap(), full());
    }

    /// Every cut of a valid chunk short of its end fails with an error naming the aggregate;
    /// so do bad encodings and lengths. Nothing panics.
    #[test]
    fn malformed_and_truncated_chunks_fail() {
        let b = full().encode();
        for cut in 0..b.len() {
            let err = AggrChunk::decode(&Bytes::copy_from_slice(&b[..cut])).unwrap_err().to_string();
            assert!(err.contains("aggregate chunk:") && err.contains(" aggregate at byte "), "cut {cut}: {err}");
        }
        let bad: &[(&[u8], &str)] = &[
            (&[], "count aggregate at byte 0: length truncated"),
            (&[0x80], "count aggregate at byte 0: length truncated"),
            (&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], "length overflows 64 bits"),
            (&[0, 2, 0, 0, 0], "sum aggregate at byte 1: sub-chunk encoding 0 is not a sample encoding"),
            (&[0, 0, 2, 0xff, 0, 0], "min aggregate at byte 2: sub-chunk encoding 255"),
            (&[0, 0, 0, 5, 1, 0], "max aggregate at byte 3: 5 bytes and the encoding byte announced, 2 left"),
            (&[0, 0, 0, 0], "counter aggregate at byte 4: length truncated"),
            (&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], "announced"),
        ];
        for (input, want) in bad {
            let err = AggrChunk::decode(&Bytes::copy_from_slice(input)).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    fn sub_chunk() -> impl Strategy<Value = Option<SubChunk>> {
        let encoding = prop_oneof![Just(Encoding::Xor), Just(Encoding::Histogram), Just(Encoding::FloatHistogram)];
        proptest::option::of(
            (encoding, proptest::collection::vec(any::<u8>(), 1..300))
                .prop_map(|(encoding, data)| SubChunk { encoding, data: Bytes::from(data) }),
        )
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(parts in [sub_chunk(), sub_chunk(), sub_chunk(), sub_chunk(), sub_chunk()]) {
            let c = AggrChunk::from_parts(parts);
            let b = c.encode();
            prop_assert_eq!(AggrChunk::decode(&Bytes::from(b.clone())).unwrap(), c.clone());
            // The encoding holds nothing past the five entries, so every strict prefix is cut
            // inside one of them.
            for cut in 0..b.len() {
                prop_assert!(AggrChunk::decode(&Bytes::copy_from_slice(&b[..cut])).is_err(), "cut {}", cut);
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics_and_round_trips(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(c) = AggrChunk::decode(&Bytes::from(b.clone())) {
                // What decodes re-encodes to the bytes it used (a prefix of the input, up to
                // the length fields' own spelling).
                let again = AggrChunk::decode(&Bytes::from(c.encode())).unwrap();
                prop_assert_eq!(again, c);
            }
        }
    }
}
