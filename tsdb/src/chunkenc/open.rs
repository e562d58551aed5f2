//! The head's open chunk: samples appended one at a time, read and closed as XOR chunk bytes.
//!
//! Most series carry integer values: counters, byte and object counts, histogram buckets. XOR
//! stores each such value as the changed bits of its float, three to five bytes a sample for a
//! counter that moves by a varying amount. While every value of a chunk is an integer, the chunk
//! keeps the delta-of-deltas of its values instead, one or two bytes a sample; the XOR bytes are
//! made when the chunk is read or closed. XOR encoding is a function of the samples alone, so
//! they are the bytes an XOR appender fed the same samples holds. The first value that is not
//! an integer turns the chunk into an XOR chunk for the rest of its samples.
//!
//! The integer layout is only ever in memory: a 2-byte big-endian sample count, then a bit
//! stream. Sample 0 is `varint(t)` and `varint(v)`; every later sample is the delta-of-delta of
//! its timestamp, then of its value, each in a bucket: `0`, `10`+7, `110`+10, `1110`+14,
//! `11110`+32, `11111`+64 bits (two's complement payloads). A counter's increments vary by
//! tens to hundreds between scrapes, which the 7- and 10-bit buckets hold.

use std::borrow::Cow;

use super::bstream::{reserve_for_rest, write_bits, BitReader};
use super::xor::{signed, XorAppender};
use crate::encoding::{uvarint_bytes, zigzag};
use crate::Error;

/// Bytes a new chunk starts with: about its first quarter (see [`OpenChunk::reserve_for`]).
const INITIAL_CAPACITY: usize = 32;

/// An appendable chunk, integer or XOR.
#[derive(Clone, Debug)]
pub enum OpenChunk {
    Int(IntChunk),
    Xor(XorAppender),
}

impl Default for OpenChunk {
    fn default() -> Self {
        Self::new()
    }
}

/// `v` as an integer, when converting back gives exactly its bits (not NaN, infinite, -0.0 or
/// fractional).
#[inline]
fn int_value(v: f64) -> Option<i64> {
    let i = v as i64;
    ((i as f64).to_bits() == v.to_bits()).then_some(i)
}

impl OpenChunk {
    /// An empty chunk.
    pub fn new() -> Self {
        OpenChunk::Int(IntChunk::new())
    }

    /// Continues the XOR chunk `chunk` (the data after the encoding byte), as a head restored
    /// from a snapshot continues its open chunks. It stays XOR until it is cut: turning it
    /// into integers would add a decoding and an encoding per series to every restart.
    /// Fails as [`XorAppender::resume`] does.
    pub fn resume(chunk: &[u8]) -> Result<Self, Error> {
        XorAppender::resume(chunk).map(OpenChunk::Xor)
    }

    /// Appends a sample (see [`XorAppender::append`]: timestamps are meant to increase, and a
    /// chunk holds at most `u16::MAX` samples).
    #[inline]
    pub fn append(&mut self, t: i64, v: f64) {
        match self {
            OpenChunk::Int(c) => {
                if int_value(v).is_some_and(|i| c.append(t, i)) {
                    return;
                }
                // It stays open: sized as it is, to grow by small steps.
                let mut xor = c.to_xor(2 + 3 * c.len());
                xor.append(t, v);
                *self = OpenChunk::Xor(xor);
            }
            OpenChunk::Xor(c) => c.append(t, v),
        }
    }

    /// Samples appended so far.
    pub fn num_samples(&self) -> u16 {
        match self {
            OpenChunk::Int(c) => c.num_samples(),
            OpenChunk::Xor(c) => c.num_samples(),
        }
    }

    /// Timestamp of the first sample.
    pub fn first_time(&self) -> Option<i64> {
        match self {
            OpenChunk::Int(c) => c.first_time(),
            OpenChunk::Xor(c) => c.first_time(),
        }
    }

    /// Timestamp of the last sample.
    pub fn last_time(&self) -> Option<i64> {
        match self {
            OpenChunk::Int(c) => (c.num_samples() > 0).then_some(c.t),
            OpenChunk::Xor(c) => c.last_time(),
        }
    }

    /// Value of the last sample.
    pub fn last_value(&self) -> Option<f64> {
        match self {
            OpenChunk::Int(c) => (c.num_samples() > 0).then_some(c.v as f64),
            OpenChunk::Xor(c) => c.last_value(),
        }
    }

    /// Sizes the buffer for a chunk expected to end at `samples` samples (see
    /// [`XorAppender::reserve_for`]).
    pub fn reserve_for(&mut self, samples: u16) {
        match self {
            OpenChunk::Int(c) => c.reserve_for(samples),
            OpenChunk::Xor(c) => c.reserve_for(samples),
        }
    }

    /// The chunk as XOR bytes (without the encoding byte).
    pub fn xor_bytes(&self) -> Cow<'_, [u8]> {
        match self {
            OpenChunk::Int(c) => Cow::Owned(c.to_xor(c.xor_capacity()).into_vec()),
            OpenChunk::Xor(c) => Cow::Borrowed(c.bytes()),
        }
    }

    /// The chunk as an XOR chunk.
    pub fn into_xor(self) -> XorAppender {
        match self {
            OpenChunk::Int(c) => c.to_xor(c.xor_capacity()),
            OpenChunk::Xor(c) => c,
        }
    }
}

/// A chunk of integer values: the bit stream of the module's layout and what the encoder must
/// remember between samples.
///
/// 48 bytes, as an [`XorAppender`], so that an `Option<OpenChunk>` takes 56: the timestamp
/// delta is 32 bits (a sample more than 24 days after the previous one makes the chunk XOR)
/// and the stream's length is counted in bits.
#[derive(Clone, Debug)]
pub struct IntChunk {
    /// The 2-byte sample count, then the bit stream; bytes past the bits in use are zero.
    buf: Box<[u8]>,
    t: i64,
    v: i64,
    v_delta: i64,
    t_delta: i32,
    /// Bits of `buf` in use.
    bits: u32,
}

impl IntChunk {
    fn new() -> Self {
        IntChunk { buf: vec![0; INITIAL_CAPACITY].into_boxed_slice(), t: 0, v: 0, v_delta: 0, t_delta: 0, bits: 16 }
    }

    fn num_samples(&self) -> u16 {
        self.buf.first_chunk::<2>().map_or(0, |h| u16::from_be_bytes(*h))
    }

    fn first_time(&self) -> Option<i64> {
        if self.num_samples() == 0 {
            return None;
        }
        BitReader::new(self.buf.get(2..self.len())?).read_varint()
    }

    /// Bytes of `buf` in use.
    fn len(&self) -> usize {
        (self.bits as usize).div_ceil(8)
    }

    /// Appends a sample, or returns false when its timestamp is too far from the previous one's
    /// for the 32-bit delta.
    #[inline]
    fn append(&mut self, t: i64, v: i64) -> bool {
        let n = self.num_samples();
        if n == u16::MAX {
            debug_assert!(false, "append to a full chunk");
            return true;
        }
        if n == 0 {
            uvarint_bytes(zigzag(t), |b| self.write(u64::from(b), 8));
            uvarint_bytes(zigzag(v), |b| self.write(u64::from(b), 8));
        } else {
            let Ok(t_delta) = i32::try_from(t.wrapping_sub(self.t)) else { return false };
            let v_delta = v.wrapping_sub(self.v);
            self.write_dod(i64::from(t_delta) - i64::from(self.t_delta));
            self.write_dod(v_delta.wrapping_sub(self.v_delta));
            self.t_delta = t_delta;
            self.v_delta = v_delta;
        }
        self.t = t;
        self.v = v;
        if let Some(header) = self.buf.first_chunk_mut::<2>() {
            *header = (n + 1).to_be_bytes();
        }
        true
    }

    #[inline]
    fn write_dod(&mut self, dod: i64) {
        let bits = dod as u64;
        match dod {
            0 => self.write(0, 1),
            -63..=64 => self.write((0b10 << 7) | (bits & 0x7f), 9),
            -511..=512 => self.write((0b110 << 10) | (bits & 0x3ff), 13),
            -8191..=8192 => self.write((0b1110 << 14) | (bits & 0x3fff), 18),
            -2_147_483_647..=2_147_483_648 => self.write((0b11110 << 32) | (bits & 0xffff_ffff), 37),
            _ => {
                self.write(0b11111, 5);
                self.write(bits, 64);
            }
        }
    }

    #[inline]
    fn write(&mut self, value: u64, n: u32) {
        let mut len = self.len();
        let mut free = (len * 8 - self.bits as usize) as u8;
        write_bits(&mut self.buf, &mut len, &mut free, value, n);
        self.bits = (len * 8 - usize::from(free)) as u32;
    }

    fn reserve_for(&mut self, samples: u16) {
        let len = self.len();
        let mut r = BitReader::new(self.buf.get(2..len).unwrap_or(&[]));
        let first = match (r.read_varint(), r.read_varint()) {
            (Some(_), Some(_)) => 2 + r.consumed_bits() / 8,
            _ => len,
        };
        let n = self.num_samples();
        reserve_for_rest(&mut self.buf, len, first, n, samples);
    }

    fn iter(&self) -> IntIter<'_> {
        let data = self.buf.get(2..self.len()).unwrap_or(&[]);
        IntIter { r: BitReader::new(data), left: self.num_samples(), first: true, t: 0, v: 0, t_delta: 0, v_delta: 0 }
    }

    /// Room for this chunk as XOR in all but rare cases, for one that is handed out or
    /// written and then dropped: growing by small steps would reallocate it a dozen times.
    fn xor_capacity(&self) -> usize {
        16 + 6 * usize::from(self.num_samples())
    }

    /// The same samples as an XOR chunk, in a buffer of `capacity` bytes to start with.
    fn to_xor(&self, capacity: usize) -> XorAppender {
        let mut xor = XorAppender::with_capacity(capacity);
        for (t, v) in self.iter() {
            xor.append(t, v as f64);
        }
        xor
    }
}

/// Reads an [`IntChunk`]; the chunk was written by this process, so it always decodes.
struct IntIter<'a> {
    r: BitReader<'a>,
    left: u16,
    first: bool,
    t: i64,
    v: i64,
    t_delta: i64,
    v_delta: i64,
}

impl IntIter<'_> {
    fn read_dod(&mut self) -> Option<i64> {
        let r = &mut self.r;
        r.fill(37);
        let top = r.peek();
        match (!top).leading_zeros() {
            0 => r.skip(1).map(|()| 0),
            1 => r.skip(9).map(|()| signed((top >> 55) & 0x7f, 7)),
            2 => r.skip(13).map(|()| signed((top >> 51) & 0x3ff, 10)),
            3 => r.skip(18).map(|()| signed((top >> 46) & 0x3fff, 14)),
            4 => r.skip(37).map(|()| signed((top >> 27) & 0xffff_ffff, 32)),
            _ => r.skip(5).and_then(|()| r.read_wide(64)).map(|d| d as i64),
        }
    }
}

impl Iterator for IntIter<'_> {
    type Item = (i64, i64);

    fn next(&mut self) -> Option<(i64, i64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        if std::mem::take(&mut self.first) {
            self.t = self.r.read_varint()?;
            self.v = self.r.read_varint()?;
        } else {
            self.t_delta = self.t_delta.wrapping_add(self.read_dod()?);
            self.v_delta = self.v_delta.wrapping_add(self.read_dod()?);
            self.t = self.t.wrapping_add(self.t_delta);
            self.v = self.v.wrapping_add(self.v_delta);
        }
        Some((self.t, self.v))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::chunkenc::XorIter;

    fn decode(xor: &[u8]) -> Vec<(i64, u64)> {
        XorIter::new(xor).unwrap().map(|(t, v)| (t, v.to_bits())).collect()
    }

    /// Both the open chunk and a plain XOR appender fed `samples`: the XOR bytes must agree.
    fn check(samples: &[(i64, f64)]) -> OpenChunk {
        let mut open = OpenChunk::new();
        let mut xor = XorAppender::new();
        for (i, &(t, v)) in samples.iter().enumerate() {
            open.append(t, v);
            xor.append(t, v);
            assert_eq!(open.num_samples(), xor.num_samples());
            assert_eq!(open.last_time(), xor.last_time());
            assert_eq!(open.last_value().map(f64::to_bits), xor.last_value().map(f64::to_bits));
            assert_eq!(open.first_time(), xor.first_time());
            if i == samples.len() / 4 {
                open.reserve_for(120);
            }
        }
        assert_eq!(&*open.xor_bytes(), xor.bytes());
        assert_eq!(open.clone().into_xor().bytes(), xor.bytes());
        assert_eq!(decode(&open.xor_bytes()), samples.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>());
        open
    }

    #[test]
    fn an_open_chunk_takes_what_an_xor_appender_took_and_eight_bytes() {
        assert_eq!(std::mem::size_of::<IntChunk>(), std::mem::size_of::<XorAppender>());
        assert_eq!(std::mem::size_of::<Option<OpenChunk>>(), std::mem::size_of::<XorAppender>() + 8);
    }

    #[test]
    fn integer_counters_stay_integer_and_take_less_than_xor() {
        // A byte counter scraped every 15 s that grows by 20000 to 20099 a scrape.
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, (123_456_789_000 + i * 20_000 + (i * i * 7) % 100) as f64))
            .collect();
        let open = check(&samples);
        let OpenChunk::Int(int) = &open else { panic!("an integer chunk became {open:?}") };
        let xor = open.xor_bytes().len();
        assert!(int.len() * 3 < xor * 2, "{} vs {xor} bytes", int.len());
    }

    #[test]
    fn a_fractional_value_turns_the_chunk_into_xor() {
        let mut samples: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, i as f64)).collect();
        samples.push((10_000, 10.5));
        samples.extend((11..20).map(|i| (i * 1000, i as f64)));
        assert!(matches!(check(&samples), OpenChunk::Xor(_)));
    }

    #[test]
    fn values_that_do_not_round_trip_as_integers_are_xor() {
        for v in [-0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.1, 1e300, -9.3e18] {
            let samples = [(1, 1.0), (2, v), (3, 2.0)];
            check(&samples);
            check(&[(1, v), (2, 2.0)]);
        }
        // Integral floats beyond i64 saturate; they must not come back as i64::MAX.
        assert_eq!(int_value(1e19), None);
        assert_eq!(int_value(-0.0), None);
        assert_eq!(int_value(-3.0), Some(-3));
    }

    #[test]
    fn extremes_wrap_as_the_decoder_does() {
        check(&[(i64::MIN, i64::MIN as f64), (i64::MAX, 4.0e18), (0, -4.0e18), (1, 0.0), (i64::MAX, 1.0)]);
        check(&[(0, 0.0)]);
        check(&[]);
    }

    #[test]
    fn a_resumed_chunk_continues_as_xor() {
        let mut xor = XorAppender::new();
        (0..50).for_each(|i| xor.append(i * 15_000, (i * 7) as f64));
        let mut resumed = OpenChunk::resume(xor.bytes()).unwrap();
        assert!(matches!(resumed, OpenChunk::Xor(_)));
        resumed.append(50 * 15_000, 351.0);
        xor.append(50 * 15_000, 351.0);
        assert_eq!(&*resumed.xor_bytes(), xor.bytes());
        assert!(OpenChunk::resume(&[0, 3, 1]).is_err());
    }

    fn sample_values() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
            2 => any::<i64>().prop_map(|i| i as f64),
            1 => any::<u64>().prop_map(f64::from_bits),
            1 => Just(0.5),
        ]
    }

    proptest! {
        #[test]
        fn xor_bytes_equal_an_xor_appenders(
            start in any::<i64>(),
            steps in proptest::collection::vec(prop_oneof![8 => Just(15_000i64), 2 => 0i64..2_000_000, 1 => any::<i64>()], 0..300),
            values in proptest::collection::vec(sample_values(), 300),
        ) {
            let mut t = start;
            let samples: Vec<(i64, f64)> = steps.iter().zip(&values).map(|(&step, &v)| { t = t.wrapping_add(step); (t, v) }).collect();
            check(&samples);
        }
    }
}
