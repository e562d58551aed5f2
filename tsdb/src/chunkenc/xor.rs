//! The XOR chunk: Prometheus's float encoding (Gorilla timestamps and values, millisecond
//! timestamp buckets).
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream. Sample 0 is `varint(t)` and the
//! 64 raw value bits; sample 1 is `uvarint(t1 - t0)` and a value XOR; every later sample is a
//! delta-of-delta bucket (`0`, `10`+14, `110`+17, `1110`+20, `1111`+64 bits) and a value XOR
//! (`0` same value, `10` reuse the previous leading/trailing-zero window, `11` + 5 bits leading
//! zeros + 6 bits significant-bit count (64 stored as 0) + the significant bits). The last byte
//! is zero-padded.
//!
//! Prometheus before 3.0 stored one more, always-zero byte in some chunks: its bit writer
//! appended a fresh empty byte after every whole byte it wrote, and nothing consumed it if the
//! chunk ended there. That happens exactly when the final field of the last sample is a
//! multiple of 8 bits long and starts on a byte boundary: always for a 1-sample chunk (the
//! 64 value bits), and for a longer chunk when its last value XOR carries 8, 16, …, 64
//! significant bits and ends byte-aligned. Readers stop after the sample count, so both forms
//! decode the same; this encoder writes the shorter form, as Prometheus 3 does.

use std::iter::FusedIterator;

use super::bstream::{reserve_for_rest, resize, write_bits, BitReader};
use crate::encoding::{uvarint_bytes, zigzag};
use crate::Error;

/// `leading` value meaning "no leading/trailing-zero window yet".
const NO_WINDOW: u8 = 0xff;

/// Bytes a new chunk starts with: a typical chunk's first quarter fits (after which the head
/// sizes it for the rest, see [`XorAppender::reserve_for`]).
const INITIAL_CAPACITY: usize = 64;

/// An appendable XOR chunk: the encoded bytes plus what the encoder must remember between samples.
///
/// 48 bytes: the head keeps one per series. The buffer is a boxed slice with a 32-bit length
/// rather than a `Vec`, and grows in small steps rather than doubling.
#[derive(Clone, Debug)]
pub struct XorAppender {
    /// The 2-byte sample count, then the bit stream written so far; the bytes past `len` are
    /// spare capacity and zero.
    buf: Box<[u8]>,
    t: i64,
    /// Bits of the last value.
    v: u64,
    t_delta: u64,
    /// Bytes of `buf` in use. A chunk holds at most 65535 samples of at most 19 bytes.
    len: u32,
    leading: u8,
    trailing: u8,
    /// Unused low bits of the last byte in use (0..=7).
    free: u8,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl XorAppender {
    /// An empty chunk.
    pub fn new() -> Self {
        XorAppender {
            buf: vec![0; INITIAL_CAPACITY].into_boxed_slice(),
            t: 0,
            v: 0,
            t_delta: 0,
            len: 2,
            leading: NO_WINDOW,
            trailing: 0,
            free: 0,
        }
    }

    /// An empty chunk with room for `bytes` bytes before it first grows: for a chunk written
    /// whole whose size can be told roughly beforehand, which then skips the small steps a
    /// head chunk grows by.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut app = Self::new();
        if bytes > app.buf.len() {
            app.buf = vec![0; bytes].into_boxed_slice();
        }
        app
    }

    /// Continues the chunk `chunk` (the data after the encoding byte), as a head restored from a
    /// snapshot continues its open chunks: the bytes are kept and the encoder's state is what
    /// decoding them ends in. Fails on a chunk that does not decode, or that holds anything but
    /// zero bits after its last sample (appending would run into them).
    pub fn resume(chunk: &[u8]) -> Result<Self, Error> {
        let mut samples = XorIter::new(chunk)?;
        for _ in samples.by_ref() {}
        if let Some(e) = samples.err() {
            return Err(Error::CorruptChunk(e.to_string()));
        }
        let bits = (chunk.len() - 2) * 8;
        let free = bits - samples.r.consumed_bits().min(bits);
        let last = chunk.last().copied().unwrap_or(0);
        let free = match u8::try_from(free) {
            Ok(free) if free < 8 && (free == 0 || last & ((1 << free) - 1) == 0) => free,
            _ => return Err(Error::CorruptChunk(format!("XOR chunk has {free} bits after its last sample"))),
        };
        let len = u32::try_from(chunk.len())
            .map_err(|_| Error::CorruptChunk(format!("XOR chunk of {} bytes is too long", chunk.len())))?;
        Ok(XorAppender {
            // Exactly the bytes: the next sample grows the buffer by a small step.
            buf: chunk.into(),
            t: samples.t,
            v: samples.v,
            t_delta: samples.t_delta,
            len,
            leading: if samples.window { samples.leading } else { NO_WINDOW },
            trailing: samples.trailing,
            free,
        })
    }

    /// Sizes the buffer for a chunk expected to end at `samples` samples, from the bytes the
    /// samples after the first took so far, so that a chunk which ends as expected has next to
    /// no spare capacity. Meant to be called once, when a quarter or so of the chunk is
    /// written; a chunk that turns out longer grows in small steps.
    pub fn reserve_for(&mut self, samples: u16) {
        let len = self.len as usize;
        // The first sample (header, varint time, raw value) costs more than the others.
        let mut r = BitReader::new(self.buf.get(2..len).unwrap_or(&[]));
        let first = r.read_varint().map_or(len, |_| 2 + r.consumed_bits() / 8 + 8);
        let n = self.num_samples();
        reserve_for_rest(&mut self.buf, len, first, n, samples);
    }

    /// Appends a sample. Timestamps are meant to increase (the head checks that); any sequence
    /// still round-trips, since all timestamp arithmetic wraps exactly as the decoder's does.
    /// The value's bits are stored as they are, NaN payloads included.
    ///
    /// A chunk holds at most `u16::MAX` samples; callers cut a new chunk long before that (see
    /// [`is_full`](Self::is_full)). A sample appended to a full chunk is not stored.
    pub fn append(&mut self, t: i64, v: f64) {
        let n = self.num_samples();
        if n == u16::MAX {
            debug_assert!(false, "append to a full XOR chunk");
            return;
        }
        let v = v.to_bits();
        match n {
            0 => {
                self.write_uvarint(zigzag(t));
                self.write(v, 64);
            }
            1 => {
                let delta = t.wrapping_sub(self.t) as u64;
                // Sample 0 was whole bytes, so this varint is byte-aligned too.
                debug_assert_eq!(self.free, 0);
                self.write_uvarint(delta);
                self.write_value(v);
                self.t_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.t) as u64;
                let dod = delta.wrapping_sub(self.t_delta) as i64;
                // Bucket prefix and payload go out as one field; the payload is the dod's low
                // bits in two's complement.
                match dod {
                    0 => self.write(0, 1),
                    -8191..=8192 => self.write((0b10 << 14) | (dod as u64 & 0x3fff), 16),
                    -65535..=65536 => self.write((0b110 << 17) | (dod as u64 & 0x1_ffff), 20),
                    -524287..=524288 => self.write((0b1110 << 20) | (dod as u64 & 0xf_ffff), 24),
                    _ => {
                        self.write(0b1111, 4);
                        self.write(dod as u64, 64);
                    }
                }
                self.write_value(v);
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v = v;
        if let Some(header) = self.buf.first_chunk_mut::<2>() {
            *header = (n + 1).to_be_bytes();
        }
    }

    #[inline]
    fn write(&mut self, value: u64, n: u32) {
        let mut len = self.len as usize;
        write_bits(&mut self.buf, &mut len, &mut self.free, value, n);
        self.len = len as u32;
    }

    /// Go's `binary.PutUvarint` into the (byte-aligned) stream, a byte at a time.
    fn write_uvarint(&mut self, x: u64) {
        uvarint_bytes(x, |b| self.write(u64::from(b), 8));
    }

    #[inline]
    fn write_value(&mut self, v: u64) {
        let delta = v ^ self.v;
        if delta == 0 {
            self.write(0, 1);
            return;
        }
        // At most 31 leading zeros fit the 5-bit field; any more are sent as significant bits.
        let lz = delta.leading_zeros().min(31);
        let tz = delta.trailing_zeros();
        let (leading, trailing) = (u32::from(self.leading), u32::from(self.trailing));
        if self.leading != NO_WINDOW && lz >= leading && tz >= trailing {
            let sig = 64 - leading - trailing;
            let payload = delta >> trailing;
            if sig <= 62 {
                self.write((0b10 << sig) | payload, sig + 2);
            } else {
                self.write(0b10, 2);
                self.write(payload, sig);
            }
        } else {
            self.leading = lz as u8;
            self.trailing = tz as u8;
            let sig = 64 - lz - tz;
            // `11`, 5 bits of leading zeros, 6 bits of significant-bit count (64 wraps to 0).
            let head = (0b11 << 11) | (u64::from(lz) << 6) | u64::from(sig & 63);
            let payload = delta >> tz;
            if sig <= 51 {
                self.write((head << sig) | payload, 13 + sig);
            } else {
                self.write(head, 13);
                self.write(payload, sig);
            }
        }
    }

    /// Samples appended so far.
    pub fn num_samples(&self) -> u16 {
        match self.buf.first_chunk::<2>() {
            Some(h) => u16::from_be_bytes(*h),
            None => 0,
        }
    }

    /// Whether the chunk has reached the 65535 samples its header can count.
    pub fn is_full(&self) -> bool {
        self.num_samples() == u16::MAX
    }

    /// The chunk bytes as Prometheus 3 stores them (without the encoding byte).
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len as usize).unwrap_or(&[])
    }

    /// Timestamp of the first sample.
    pub fn first_time(&self) -> Option<i64> {
        if self.num_samples() == 0 {
            return None;
        }
        BitReader::new(self.buf.get(2..self.len as usize)?).read_varint()
    }

    /// Timestamp of the last sample.
    pub fn last_time(&self) -> Option<i64> {
        (self.num_samples() > 0).then_some(self.t)
    }

    /// Value of the last sample.
    pub fn last_value(&self) -> Option<f64> {
        (self.num_samples() > 0).then_some(f64::from_bits(self.v))
    }

    /// The finished chunk, without spare capacity.
    pub fn into_bytes(self) -> Box<[u8]> {
        let mut buf = self.buf;
        let len = self.len as usize;
        if buf.len() != len {
            resize(&mut buf, len);
        }
        buf
    }

    /// The chunk bytes in a `Vec` that keeps the spare capacity: for a chunk handed out and
    /// soon dropped, where shrinking would cost a copy.
    pub fn into_vec(self) -> Vec<u8> {
        let mut v = self.buf.into_vec();
        v.truncate(self.len as usize);
        v
    }

    /// Reads the samples appended so far.
    pub fn iter(&self) -> XorIter<'_> {
        match self.bytes().split_first_chunk::<2>() {
            Some((header, data)) => XorIter::from_parts(u16::from_be_bytes(*header), data),
            None => XorIter::from_parts(0, &[]),
        }
    }
}

/// Decodes an XOR chunk. Corrupt or truncated input ends the iteration early and leaves an
/// error in [`err`](Self::err); no input makes it panic.
#[derive(Debug)]
pub struct XorIter<'a> {
    r: BitReader<'a>,
    /// Sample count from the header.
    total: u16,
    read: u16,
    /// Where iteration stops: `total`, or the failing sample after an error.
    end: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    /// Whether a sample has set the leading/trailing-zero window (the encoder's state differs).
    window: bool,
    /// Boxed: iterators are embedded in merge trees, and the error is rare and large.
    err: Option<Box<Error>>,
}

impl<'a> XorIter<'a> {
    /// Starts reading `chunk` (the data after the encoding byte). Fails only if it is too short
    /// for the 2-byte sample count; anything wrong further in shows up while iterating.
    pub fn new(chunk: &'a [u8]) -> Result<Self, Error> {
        match chunk.split_first_chunk::<2>() {
            Some((header, data)) => Ok(Self::from_parts(u16::from_be_bytes(*header), data)),
            None => Err(Error::CorruptChunk(format!(
                "XOR chunk of {} bytes is shorter than its 2-byte header",
                chunk.len()
            ))),
        }
    }

    fn from_parts(total: u16, data: &'a [u8]) -> Self {
        XorIter {
            r: BitReader::new(data),
            total,
            read: 0,
            end: total,
            t: 0,
            v: 0,
            t_delta: 0,
            // A window of 0/0 (64 significant bits) is what Prometheus's reader starts with, so a
            // chunk whose first changed value reuses the window still decodes as Prometheus does.
            leading: 0,
            trailing: 0,
            window: false,
            err: None,
        }
    }

    /// The sample count the chunk header claims.
    pub fn num_samples(&self) -> u16 {
        self.total
    }

    /// Why iteration stopped before `num_samples()` samples, if it did.
    pub fn err(&self) -> Option<&Error> {
        self.err.as_deref()
    }

    /// Decodes the next sample into `self.t` / `self.v`.
    #[inline]
    fn decode(&mut self) -> Result<(), &'static str> {
        const TRUNCATED: &str = "truncated";
        let r = &mut self.r;
        match self.read {
            0 => {
                self.t = r.read_varint().ok_or("bad first timestamp")?;
                self.v = r.read_wide(64).ok_or(TRUNCATED)?;
                return Ok(());
            }
            1 => self.t_delta = r.read_uvarint().ok_or("bad second timestamp")?,
            _ => {
                // Bucket prefix and payload together are at most 24 bits, so one refill serves
                // both; the 64-bit bucket reads its payload separately.
                r.fill(24);
                let top = r.peek();
                let dod = match (!top).leading_zeros() {
                    0 => r.skip(1).map(|()| 0),
                    1 => r.skip(16).map(|()| signed((top >> 48) & 0x3fff, 14)),
                    2 => r.skip(20).map(|()| signed((top >> 44) & 0x1_ffff, 17)),
                    3 => r.skip(24).map(|()| signed((top >> 40) & 0xf_ffff, 20)),
                    _ => r.skip(4).and_then(|()| r.read_wide(64)).map(|d| d as i64),
                }
                .ok_or(TRUNCATED)?;
                self.t_delta = self.t_delta.wrapping_add(dod as u64);
            }
        }
        self.t = self.t.wrapping_add(self.t_delta as i64);

        // Value control bits and window header: at most 13 bits.
        r.fill(13);
        let top = r.peek();
        if top >> 63 == 0 {
            r.skip(1).ok_or(TRUNCATED)?;
            return Ok(());
        }
        if top >> 62 == 0b11 {
            r.skip(13).ok_or(TRUNCATED)?;
            let leading = ((top >> 57) & 31) as u32;
            let sig = match ((top >> 51) & 63) as u32 {
                0 => 64,
                s => s,
            };
            if leading + sig > 64 {
                return Err("value window wider than 64 bits");
            }
            self.leading = leading as u8;
            self.trailing = (64 - leading - sig) as u8;
            self.window = true;
        } else {
            r.skip(2).ok_or(TRUNCATED)?;
        }
        let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
        self.v ^= r.read_wide(sig).ok_or(TRUNCATED)? << self.trailing;
        Ok(())
    }
}

/// Sign-extends an `n`-bit delta-of-delta. The buckets are asymmetric (+2^(n-1) is positive),
/// matching the encoder's ranges (the open chunk's buckets are too).
#[inline]
pub(super) fn signed(bits: u64, n: u32) -> i64 {
    let bits = bits as i64;
    if bits > 1 << (n - 1) {
        bits - (1 << n)
    } else {
        bits
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    // Inlined into the caller's loop, the decoder's state stays in registers instead of
    // making a round trip through memory per sample.
    #[inline(always)]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.read >= self.end {
            return None;
        }
        match self.decode() {
            Ok(()) => {
                self.read += 1;
                Some((self.t, f64::from_bits(self.v)))
            }
            Err(why) => {
                self.err = Some(Box::new(Error::CorruptChunk(format!(
                    "XOR sample {} of {}: {why}",
                    self.read + 1,
                    self.total
                ))));
                self.end = self.read;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Corrupt data may end the iteration early, so only the upper bound is known.
        (0, Some(usize::from(self.end - self.read)))
    }
}

impl FusedIterator for XorIter<'_> {}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encode(samples: &[(i64, u64)]) -> XorAppender {
        let mut app = XorAppender::new();
        for &(t, v) in samples {
            app.append(t, f64::from_bits(v));
        }
        app
    }

    fn decode(chunk: &[u8]) -> (Vec<(i64, u64)>, bool) {
        let mut it = XorIter::new(chunk).expect("header");
        let got = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        (got, it.err().is_some())
    }

    #[test]
    fn empty_chunk() {
        let app = XorAppender::new();
        assert_eq!(app.bytes(), &[0, 0]);
        assert_eq!((app.first_time(), app.last_time(), app.last_value()), (None, None, None));
        assert_eq!(app.iter().count(), 0);
    }

    #[test]
    fn one_sample_matches_prometheus_testdata() {
        // Prometheus's tsdb/testdata/index_format_v1 holds this chunk as 12 bytes: the same
        // plus the empty byte pre-3.0 writers left after a whole-byte write.
        let app = encode(&[(0, 0)]);
        assert_eq!(app.bytes(), &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn hand_encoded_chunk() {
        let one = 1.0f64.to_bits();
        let two = 2.0f64.to_bits();
        let three = 3.0f64.to_bits();
        let samples = [(1000, one), (2000, one), (3000, two), (4010, three)];
        let app = encode(&samples);
        #[rustfmt::skip]
        let want = [
            0x00, 0x04,                                     // 4 samples
            0xd0, 0x0f,                                     // varint(1000)
            0x3f, 0xf0, 0, 0, 0, 0, 0, 0,                   // 1.0
            0xe8, 0x07,                                     // uvarint(1000)
            // 0 (1.0 again) | 0 (dod 0) | 11 00001 001011 + 11 bits (2.0: lz 1, 11 sig bits)
            // | 10 + 14-bit dod 10 | 11 01100 000001 + 1 bit (3.0: new window, lz 12, 1 sig bit)
            0x30, 0x97, 0xff, 0xe0, 0x02, 0xb6, 0x03,
        ];
        assert_eq!(app.bytes(), &want);
        assert_eq!(decode(&want), (samples.to_vec(), false));
        assert_eq!(app.first_time(), Some(1000));
        assert_eq!(app.last_time(), Some(4010));
        assert_eq!(app.last_value(), Some(3.0));
        assert_eq!(app.num_samples(), 4);
    }

    #[test]
    fn dod_bucket_edges() {
        // Each bucket's extremes and one past them, around a steady 15s interval.
        let mut t = 0i64;
        let mut samples = vec![(t, 0u64)];
        t += 15_000;
        samples.push((t, 0));
        let edges = [
            0,
            1,
            -1,
            8192,
            8193,
            -8191,
            -8192,
            65536,
            65537,
            -65535,
            -65536,
            524288,
            524289,
            -524287,
            -524288,
            i64::from(i32::MAX),
            -i64::from(i32::MAX),
        ];
        let mut delta = 15_000i64;
        for dod in edges {
            // Come back to 15s after each jump so deltas stay positive.
            for d in [dod, -dod] {
                delta += d;
                t += delta;
                samples.push((t, 1));
            }
        }
        let app = encode(&samples);
        assert_eq!(decode(app.bytes()), (samples, false));
    }

    #[test]
    fn values_keep_their_bits() {
        let specials = [
            0.0f64.to_bits(),
            (-0.0f64).to_bits(),
            f64::NAN.to_bits(),
            0x7ff0_0000_0000_0002, // Prometheus's stale marker
            0x7ff8_0000_0000_0001, // Prometheus's normal NaN
            f64::INFINITY.to_bits(),
            f64::NEG_INFINITY.to_bits(),
            f64::MIN_POSITIVE.to_bits(),
            1, // smallest subnormal
            f64::MAX.to_bits(),
            u64::MAX,
            0x8000_0000_0000_0001,
        ];
        let samples: Vec<_> =
            specials.iter().chain(specials.iter().rev()).enumerate().map(|(i, &v)| (i as i64, v)).collect();
        let app = encode(&samples);
        assert_eq!(decode(app.bytes()), (samples, false));
    }

    #[test]
    fn reading_an_open_chunk_sees_every_append() {
        let mut app = XorAppender::new();
        for i in 0..300i64 {
            app.append(i * 15_000 + (i % 7), (i as f64).sin());
            assert_eq!(app.iter().count(), i as usize + 1);
            assert_eq!(app.iter().last(), Some((i * 15_000 + (i % 7), (i as f64).sin())));
        }
    }

    #[test]
    fn appender_stays_small() {
        // The head keeps one open appender per series.
        assert!(std::mem::size_of::<XorAppender>() <= 48);
        assert_eq!(std::mem::size_of::<Option<XorAppender>>(), std::mem::size_of::<XorAppender>());
    }

    #[test]
    fn into_bytes_drops_spare_capacity() {
        let app = encode(&[(1, 1), (2, 2)]);
        let len = app.bytes().len();
        let bytes = app.into_bytes();
        assert_eq!(bytes.len(), len);
    }

    #[test]
    fn a_chunk_given_its_capacity_holds_the_same_bytes() {
        let samples: Vec<(i64, f64)> = (0..500).map(|i| (i * 15_000, (i as f64 * 0.37).sin())).collect();
        let (mut small, mut sized, mut short) =
            (XorAppender::new(), XorAppender::with_capacity(4096), XorAppender::with_capacity(40));
        for &(t, v) in &samples {
            small.append(t, v);
            sized.append(t, v);
            short.append(t, v);
        }
        assert_eq!(sized.bytes(), small.bytes());
        assert_eq!(short.bytes(), small.bytes(), "a chunk outgrowing its capacity grows as any other");
        let len = sized.bytes().len();
        assert_eq!(sized.into_bytes().len(), len);
    }

    #[test]
    fn a_chunk_sized_at_a_quarter_ends_with_little_spare_capacity() {
        // Counters at different rates, sized for 120 samples after 30 as the head does. Those
        // starting near zero compress worse early on and end with more room than the others.
        let mut spare = 0;
        for i in 0..200i64 {
            let mut app = XorAppender::new();
            for round in 0..120i64 {
                if app.num_samples() == 30 {
                    app.reserve_for(120);
                }
                app.append(round * 15_000, (i * 31 + round * (1 + i % 50)) as f64);
            }
            let (len, cap) = (app.len as usize, app.buf.len());
            assert!(cap >= len && cap <= len + len / 4 + 16, "{cap} bytes for {len}");
            assert!(app.buf[len..].iter().all(|&b| b == 0));
            spare += cap - len;
            let whole = app.bytes().to_vec();
            assert_eq!(app.into_bytes()[..], whole[..]);
        }
        assert!(spare / 200 <= 12, "{} bytes spare on average", spare / 200);
    }

    #[test]
    fn reserve_for_shrinks_a_chunk_that_compresses_well() {
        let mut app = XorAppender::new();
        for i in 0..30 {
            app.append(i * 15_000, 1.0);
        }
        app.reserve_for(120);
        assert!(app.buf.len() < INITIAL_CAPACITY, "{} bytes", app.buf.len());
        for i in 30..240 {
            app.append(i * 15_000, 1.0);
        }
        let want: Vec<_> = (0..240).map(|i| (i * 15_000, 1.0f64.to_bits())).collect();
        assert_eq!(decode(app.bytes()), (want, false));
    }

    #[test]
    fn header_shorter_than_two_bytes_is_an_error() {
        assert!(XorIter::new(&[]).is_err());
        assert!(XorIter::new(&[1]).is_err());
        assert_eq!(XorIter::new(&[0, 0]).map(|it| it.count()).ok(), Some(0));
    }

    #[test]
    fn truncation_is_reported() {
        let samples: Vec<_> = (0..50).map(|i| (i * 15_000 + i % 3, (i as f64 * 1.37).to_bits())).collect();
        let app = encode(&samples);
        let full = app.bytes();
        for cut in 2..full.len() {
            let (got, failed) = decode(&full[..cut]);
            assert!(failed, "cut at {cut} of {} not noticed", full.len());
            assert_eq!(got[..], samples[..got.len()], "cut at {cut}");
        }
        // A header promising more samples than the data holds. The zero padding of the last
        // byte can pass for up to three unchanged samples (`0` dod, `0` value), but not for ten.
        let mut more = full.to_vec();
        more[1] += 10;
        let (got, failed) = decode(&more);
        assert!(failed);
        assert_eq!(got[..samples.len()], samples[..]);
        assert!(got.len() <= samples.len() + 3);
    }

    #[test]
    fn too_wide_window_is_reported() {
        // Sample 1 with a new window of 31 leading zeros and 40 significant bits.
        let mut chunk = vec![0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        // 1 | 11 | 11111 | 101000 | ...
        chunk.extend_from_slice(&[0b1111_1111, 0b1010_0000, 0, 0, 0, 0, 0, 0]);
        let mut it = XorIter::new(&chunk).expect("header");
        assert_eq!(it.next().map(|(t, _)| t), Some(0));
        assert_eq!(it.next(), None);
        assert!(matches!(it.err(), Some(Error::CorruptChunk(m)) if m.contains("wider")));
        assert_eq!(it.next(), None);
    }

    /// Timestamps as the head sees them: mostly steady with jitter, plus gaps, big jumps and
    /// runs of equal deltas, starting anywhere in the i64 range.
    fn timestamps() -> impl Strategy<Value = Vec<i64>> {
        let step = prop_oneof![
            4 => Just(15_000i64),
            4 => 14_990i64..15_010,
            1 => 0i64..1 << 20,
            1 => 0i64..1 << 40,
            1 => any::<u32>().prop_map(i64::from),
        ];
        (any::<i64>(), prop::collection::vec(step, 0..300)).prop_map(|(start, steps)| {
            let mut t = start / 2;
            steps
                .into_iter()
                .map(|s| {
                    t = t.saturating_add(s);
                    t
                })
                .collect()
        })
    }

    /// Values from arbitrary bit patterns and from series-like data (repeats, small changes).
    fn values(n: usize) -> impl Strategy<Value = Vec<u64>> {
        let v = prop_oneof![
            any::<u64>(),
            any::<f64>().prop_map(f64::to_bits),
            (0u32..1000).prop_map(|x| f64::from(x).to_bits()),
            Just(0x7ff0_0000_0000_0002u64),
        ];
        prop::collection::vec((v, 1usize..5), n)
            .prop_map(move |runs| runs.into_iter().flat_map(|(v, k)| std::iter::repeat_n(v, k)).take(n).collect())
    }

    proptest! {
        #[test]
        fn round_trips(samples in timestamps().prop_flat_map(|ts| {
            let n = ts.len();
            (Just(ts), values(n))
        })) {
            let samples: Vec<(i64, u64)> = samples.0.into_iter().zip(samples.1).collect();
            let app = encode(&samples);
            prop_assert_eq!(app.num_samples() as usize, samples.len());
            prop_assert_eq!(decode(app.bytes()), (samples.clone(), false));
            prop_assert_eq!(app.last_time(), samples.last().map(|s| s.0));
            prop_assert_eq!(app.first_time(), samples.first().map(|s| s.0));
        }

        #[test]
        fn a_resumed_chunk_appends_as_the_original(samples in prop::collection::vec((any::<i64>(), any::<u64>()), 0..200), split in 0usize..200) {
            let split = split.min(samples.len());
            let start = encode(&samples[..split]);
            let mut resumed = XorAppender::resume(start.bytes()).unwrap();
            for &(t, v) in &samples[split..] {
                resumed.append(t, f64::from_bits(v));
            }
            let whole = encode(&samples);
            prop_assert_eq!(resumed.bytes(), whole.bytes());
            prop_assert_eq!(resumed.last_time(), samples.last().map(|s| s.0));
        }

        #[test]
        fn any_timestamps_round_trip(samples in prop::collection::vec((any::<i64>(), any::<u64>()), 0..200)) {
            // Not just increasing ones: wrapping arithmetic makes every sequence exact.
            let app = encode(&samples);
            prop_assert_eq!(decode(app.bytes()), (samples, false));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(mut it) = XorIter::new(&bytes) {
                let total = it.num_samples() as usize;
                let got = it.by_ref().count();
                prop_assert!(got == total || it.err().is_some());
            }
            // A chunk that resumes takes one more sample and still decodes whole.
            if let Ok(mut app) = XorAppender::resume(&bytes) {
                let n = app.num_samples();
                if n < u16::MAX {
                    let t = app.last_time().unwrap_or(0).wrapping_add(1);
                    app.append(t, 1.5);
                    let (got, failed) = decode(app.bytes());
                    prop_assert!(!failed);
                    prop_assert_eq!(got.len(), usize::from(n) + 1);
                    prop_assert_eq!(got.last(), Some(&(t, 1.5f64.to_bits())));
                }
            }
        }

        #[test]
        fn truncated_chunks_never_panic(samples in prop::collection::vec((any::<i64>(), any::<u64>()), 1..100), cut in any::<prop::sample::Index>()) {
            let app = encode(&samples);
            let bytes = app.bytes();
            let bytes = &bytes[..cut.index(bytes.len() + 1)];
            if let Ok(mut it) = XorIter::new(bytes) {
                let got: Vec<_> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
                prop_assert_eq!(&got[..], &samples[..got.len()]);
                prop_assert!(got.len() == samples.len() || it.err().is_some());
            }
        }
    }
}
