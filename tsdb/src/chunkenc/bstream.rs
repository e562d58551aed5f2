//! Bit streams, most significant bit first, as Prometheus lays them out in chunks.

use crate::encoding::{unzigzag, uvarint_from};

/// A full bit-stream buffer grows by 1/`GROWTH` of its size, at least [`MIN_GROWTH`] bytes.
const GROWTH: usize = 16;

/// The smallest step a full bit-stream buffer grows by.
const MIN_GROWTH: usize = 16;

/// Appends the low `n` bits (1..=64) of `value` to the first `len` bytes of `buf`, most
/// significant first, and advances `len`. `free` is the number of still-unused low bits of byte
/// `len - 1` (0..=7) and is updated. Bytes of `buf` past `len` are spare capacity and must be
/// zero; they stay so. A full `buf` grows by a sixteenth (at least [`MIN_GROWTH`] bytes) rather
/// than doubling, so the spare capacity of the many small buffers a head holds stays small.
///
/// Unlike Prometheus before 3.0, no empty byte is kept open at the end: the stream is always
/// exactly as long as the bits in it need, which is what current Prometheus stores.
#[inline(always)]
pub(super) fn write_bits(buf: &mut Box<[u8]>, len: &mut usize, free: &mut u8, value: u64, n: u32) {
    debug_assert!((1..=64).contains(&n));
    if u32::from((8 - *free) & 7) + n > 64 {
        write_split(buf, len, free, value, n);
    } else {
        write_word(buf, len, free, value, n);
    }
}

/// Wide payloads after a partial byte do not fit one word with it: write them in two halves.
#[cold]
#[inline(never)]
fn write_split(buf: &mut Box<[u8]>, len: &mut usize, free: &mut u8, value: u64, n: u32) {
    write_word(buf, len, free, value >> 32, n - 32);
    write_word(buf, len, free, value, 32);
}

/// `write_bits` for fields that fit one word together with the partial last byte.
#[inline(always)]
fn write_word(buf: &mut Box<[u8]>, len: &mut usize, free: &mut u8, value: u64, n: u32) {
    let used = u32::from((8 - *free) & 7);
    debug_assert!(used + n <= 64);
    // Take the partial last byte back (a whole last byte leaves `start` at the zero spare
    // byte), put the new bits behind its used bits in one word, and store the whole word when
    // the buffer has room for it; its bytes past the bits are zero. Fixed-size copies are
    // cheaper than a variable-length one.
    let start = len.saturating_sub(usize::from(used > 0));
    let partial = buf.get(start).map_or(0, |&b| u64::from(b) << 56);
    let word = partial | ((value << (64 - n)) >> used);
    let nbits = used + n;
    let nbytes = nbits.div_ceil(8);
    match buf.get_mut(start..).and_then(|rest| rest.first_chunk_mut::<8>()) {
        Some(dst) => *dst = word.to_be_bytes(),
        None => write_tail(buf, start, word, nbytes as usize),
    }
    *len = start + nbytes as usize;
    *free = (nbytes * 8 - nbits) as u8;
}

/// Stores the first `nbytes` bytes of `word` at `start` of a buffer without room for a whole
/// word there, growing it if even those do not fit.
#[cold]
#[inline(never)]
fn write_tail(buf: &mut Box<[u8]>, start: usize, word: u64, nbytes: usize) {
    let need = start + nbytes;
    if buf.len() < need {
        reserve_total(buf, need.max(buf.len() + (buf.len() / GROWTH).max(MIN_GROWTH)));
    }
    if let Some(dst) = buf.get_mut(start..need) {
        dst.copy_from_slice(&word.to_be_bytes()[..nbytes]);
    }
}

/// Sizes the buffer of a chunk of `n` samples in `len` bytes, the first sample's taking the
/// first `first` bytes, for `samples` samples at the rate of those after the first, so that a
/// chunk which ends as expected has next to no spare capacity. Rounded up to malloc's size
/// step, which leaves a few bytes for samples that compress worse than the first ones; more
/// grow the buffer by small steps.
pub(super) fn reserve_for_rest(buf: &mut Box<[u8]>, len: usize, first: usize, n: u16, samples: u16) {
    if n < 2 {
        return;
    }
    let rest = len.saturating_sub(first) as u64;
    let more = u64::from(samples.saturating_sub(n));
    reserve_total(buf, len + (rest * more).div_ceil(u64::from(n) - 1) as usize);
}

/// Gives `buf` room for at least `cap` bytes: as many as the allocation malloc hands out for
/// them holds anyway (16-byte steps after an 8-byte header), so none of it is wasted.
fn reserve_total(buf: &mut Box<[u8]>, cap: usize) {
    resize(buf, (cap + 8).next_multiple_of(16) - 8);
}

/// Makes `buf` exactly `cap` bytes long, keeping its first bytes and zeroing new ones: one
/// reallocation.
pub(super) fn resize(buf: &mut Box<[u8]>, cap: usize) {
    let mut v = std::mem::take(buf).into_vec();
    if cap > v.len() {
        v.reserve_exact(cap - v.len());
    }
    v.resize(cap, 0);
    *buf = v.into_boxed_slice();
}

/// Reads bits from a byte slice through a 64-bit buffer refilled a word at a time.
///
/// Invariant: the top `avail` bits of `buf` are the next bits of the stream; the bits below them
/// are either zero or the correct bits that follow, so a later refill may OR the same bits in again.
#[derive(Clone, Debug)]
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    /// The first byte not yet (fully) counted in `avail`.
    pos: usize,
    buf: u64,
    avail: u32,
}

/// The largest read [`BitReader::read`] can serve from one refill.
const MAX_FAST_READ: u32 = 56;

impl<'a> BitReader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0, buf: 0, avail: 0 }
    }

    /// Tops the buffer up to at least 57 bits, or to the end of the data.
    #[inline]
    fn refill(&mut self) {
        if let Some(word) = self.data.get(self.pos..).and_then(|rest| rest.first_chunk::<8>()) {
            self.buf |= u64::from_be_bytes(*word) >> self.avail;
            let take = (64 - self.avail) / 8;
            self.pos += take as usize;
            self.avail += take * 8;
        } else {
            self.refill_tail();
        }
    }

    /// The last few bytes, one at a time; only the final refill of a chunk comes here.
    #[cold]
    fn refill_tail(&mut self) {
        while self.avail <= MAX_FAST_READ {
            let Some(&b) = self.data.get(self.pos) else {
                break;
            };
            self.buf |= u64::from(b) << (MAX_FAST_READ - self.avail);
            self.pos += 1;
            self.avail += 8;
        }
    }

    /// Bits consumed so far.
    pub(super) fn consumed_bits(&self) -> usize {
        self.pos * 8 - self.avail as usize
    }

    /// Makes at least `n` bits (at most 56) available to [`peek`](Self::peek), unless the data
    /// ends first.
    #[inline(always)]
    pub(super) fn fill(&mut self, n: u32) {
        if self.avail < n {
            self.refill();
        }
    }

    /// The next 64 bits, left-aligned, without consuming them. Only the first
    /// [`available`](Self::available) of them are stream bits; past the end of the data the
    /// rest are zero.
    #[inline(always)]
    pub(super) fn peek(&self) -> u64 {
        self.buf
    }

    /// Consumes `n` bits (at most 56) that [`peek`](Self::peek) showed; `None` if fewer are left.
    #[inline(always)]
    pub(super) fn skip(&mut self, n: u32) -> Option<()> {
        debug_assert!(n <= MAX_FAST_READ);
        if n > self.avail {
            return None;
        }
        self.buf <<= n;
        self.avail -= n;
        Some(())
    }

    /// Reads `n` bits, 1..=56; `None` if the stream ends first.
    #[inline(always)]
    pub(super) fn read(&mut self, n: u32) -> Option<u64> {
        debug_assert!((1..=MAX_FAST_READ).contains(&n));
        self.fill(n);
        let v = self.buf >> (64 - n);
        self.skip(n)?;
        Some(v)
    }

    /// Reads `n` bits, 1..=64.
    #[inline]
    pub(super) fn read_wide(&mut self, n: u32) -> Option<u64> {
        if n <= MAX_FAST_READ {
            return self.read(n);
        }
        let hi = self.read(n - 32)?;
        let lo = self.read(32)?;
        Some((hi << 32) | lo)
    }

    /// Reads a Go `binary.Uvarint`, eight bits a byte.
    pub(super) fn read_uvarint(&mut self) -> Option<u64> {
        uvarint_from(|| self.read(8).map(|b| b as u8)).ok()
    }

    /// Reads a Go `binary.Varint`: a zig-zag encoded uvarint.
    pub(super) fn read_varint(&mut self) -> Option<i64> {
        self.read_uvarint().map(unzigzag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_msb_first_across_byte_boundaries() {
        let (mut buf, mut len, mut free) = (Box::default(), 0, 0u8);
        write_bits(&mut buf, &mut len, &mut free, 0b101, 3);
        assert_eq!((&buf[..len], free), (&[0b1010_0000][..], 5));
        write_bits(&mut buf, &mut len, &mut free, 0x1ff, 9);
        assert_eq!((&buf[..len], free), (&[0b1011_1111, 0b1111_0000][..], 4));
        write_bits(&mut buf, &mut len, &mut free, 0xf, 4);
        assert_eq!((&buf[..len], free), (&[0b1011_1111, 0xff][..], 0));
        write_bits(&mut buf, &mut len, &mut free, u64::MAX, 64);
        assert_eq!(len, 10);
        assert_eq!(free, 0);
        // Bits above `n` are ignored.
        write_bits(&mut buf, &mut len, &mut free, 0xff, 1);
        assert_eq!((buf[..len].last(), free), (Some(&0x80), 7));
        assert!(buf[len..].iter().all(|&b| b == 0), "spare bytes stay zero");
    }

    #[test]
    fn reads_what_was_written() {
        let widths: Vec<u32> = (1..=64).chain((1..=64).rev()).chain([7, 13, 64, 1, 56, 57]).collect();
        let value = |i: usize, n: u32| 0x9e37_79b9_7f4a_7c15u64.rotate_left(i as u32) >> (64 - n);
        let (mut buf, mut len, mut free) = (Box::default(), 0, 0u8);
        for (i, &n) in widths.iter().enumerate() {
            write_bits(&mut buf, &mut len, &mut free, value(i, n), n);
        }
        // Grown in small steps: never more than a step and malloc's rounding too big.
        assert!(buf.len() <= len + (len / GROWTH).max(MIN_GROWTH) + 16, "{} bytes for {len}", buf.len());
        let mut r = BitReader::new(&buf[..len]);
        for (i, &n) in widths.iter().enumerate() {
            assert_eq!(r.read_wide(n), Some(value(i, n)), "field {i} of {n} bits");
        }
        // Only the zero padding of the last byte is left.
        assert_eq!(r.read(u32::from(free) + 1), None);
    }

    #[test]
    fn peek_and_skip() {
        let mut r = BitReader::new(&[0b1011_0000, 0xff]);
        r.fill(56);
        assert_eq!(r.peek() >> 48, 0b1011_0000_1111_1111);
        assert_eq!(r.skip(3), Some(()));
        assert_eq!(r.peek() >> 51, 0b1_0000_1111_1111);
        // Bits past the end of the data read as zero and cannot be consumed.
        assert_eq!(r.peek() << 13, 0);
        assert_eq!(r.skip(14), None);
        assert_eq!(r.skip(13), Some(()));
        assert_eq!(r.read(1), None);
    }

    #[test]
    fn varints_read_like_go() {
        // Encodings from Go's encoding/binary; the rules are tested in `encoding`.
        let min = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        for (x, bytes) in [(0i64, &[0u8][..]), (-1, &[1]), (1, &[2]), (-65, &[0x81, 0x01]), (i64::MIN, &min)] {
            let mut r = BitReader::new(bytes);
            assert_eq!(r.read_varint(), Some(x));
            assert_eq!(r.read(1), None, "reads only the varint's bytes");
        }
        let mut max = Vec::new();
        crate::encoding::put_uvarint(&mut max, u64::MAX);
        assert_eq!(BitReader::new(&max).read_uvarint(), Some(u64::MAX));
        assert_eq!(BitReader::new(&[0xff; 11]).read_uvarint(), None);
        let mut big = [0xffu8; 10];
        big[9] = 0x02;
        assert_eq!(BitReader::new(&big).read_uvarint(), None);
        assert_eq!(BitReader::new(&[0x80]).read_uvarint(), None);
    }
}
