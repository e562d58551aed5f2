//! Bit streams, most significant bit first, as Prometheus lays them out in chunks.

/// Appends the low `n` bits (1..=64) of `value` to `buf`, most significant first. `free` is the
/// number of still-unused low bits of the last byte of `buf` (0..=7) and is updated.
///
/// Unlike Prometheus before 3.0, no empty byte is kept open at the end: the buffer is always
/// exactly as long as the bits in it need, which is what current Prometheus stores.
#[inline]
pub(super) fn write_bits(buf: &mut Vec<u8>, free: &mut u8, value: u64, n: u32) {
    debug_assert!((1..=64).contains(&n));
    let value = if n < 64 {
        value & ((1u64 << n) - 1)
    } else {
        value
    };
    let mut left = n;
    if let (f @ 1.., Some(last)) = (u32::from(*free), buf.last_mut()) {
        if left <= f {
            *last |= (value << (f - left)) as u8;
            *free = (f - left) as u8;
            return;
        }
        left -= f;
        *last |= (value >> left) as u8;
        *free = 0;
    }
    // Byte-aligned from here: the remaining bits go to the top of a word, and as many of its
    // bytes as they touch are appended in one copy.
    let word = value << (64 - left);
    let nbytes = left.div_ceil(8);
    buf.extend_from_slice(&word.to_be_bytes()[..nbytes as usize]);
    *free = (nbytes * 8 - left) as u8;
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
        BitReader {
            data,
            pos: 0,
            buf: 0,
            avail: 0,
        }
    }

    /// Tops the buffer up to at least 57 bits, or to the end of the data.
    #[inline]
    fn refill(&mut self) {
        if let Some(word) = self
            .data
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<8>())
        {
            self.buf |= u64::from_be_bytes(*word) >> self.avail;
            let take = (64 - self.avail) / 8;
            self.pos += take as usize;
            self.avail += take * 8;
        } else {
            // The last few bytes, one at a time; only the final refill of a chunk comes here.
            while self.avail <= MAX_FAST_READ {
                let Some(&b) = self.data.get(self.pos) else {
                    break;
                };
                self.buf |= u64::from(b) << (MAX_FAST_READ - self.avail);
                self.pos += 1;
                self.avail += 8;
            }
        }
    }

    /// Reads `n` bits, 1..=56; `None` if the stream ends first.
    #[inline(always)]
    pub(super) fn read(&mut self, n: u32) -> Option<u64> {
        debug_assert!((1..=MAX_FAST_READ).contains(&n));
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return None;
            }
        }
        let v = self.buf >> (64 - n);
        self.buf <<= n;
        self.avail -= n;
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

    /// Reads a run of up to `max` one-bits and the zero that ends it (no zero is read after
    /// `max` ones) and returns the number of ones; `None` if the stream ends first.
    #[inline(always)]
    pub(super) fn read_unary(&mut self, max: u32) -> Option<u32> {
        if self.avail < max + 1 {
            self.refill();
        }
        // Bits past the end of the data are zero, so the count cannot run past `avail` unnoticed.
        let ones = (!self.buf).leading_zeros().min(max);
        let used = if ones < max { ones + 1 } else { max };
        if used > self.avail {
            return None;
        }
        self.buf <<= used;
        self.avail -= used;
        Some(ones)
    }

    /// Reads a Go `binary.Uvarint` (at most 10 bytes, the last at most 1) as whole bytes.
    pub(super) fn read_uvarint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        for i in 0..10 {
            let b = self.read(8)?;
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return None;
                }
                return Some(x | (b << (7 * i)));
            }
            x |= (b & 0x7f) << (7 * i);
        }
        None
    }

    /// Reads a Go `binary.Varint`: a zig-zag encoded uvarint.
    pub(super) fn read_varint(&mut self) -> Option<i64> {
        let u = self.read_uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

/// Writes `x` as a Go `binary.PutUvarint` into `out`, returning the number of bytes used.
pub(super) fn put_uvarint(out: &mut [u8; 10], mut x: u64) -> usize {
    let mut i = 0;
    while x >= 0x80 {
        out[i] = (x as u8) | 0x80;
        x >>= 7;
        i += 1;
    }
    out[i] = x as u8;
    i + 1
}

/// Writes `x` as a Go `binary.PutVarint` (zig-zag, then uvarint).
pub(super) fn put_varint(out: &mut [u8; 10], x: i64) -> usize {
    put_uvarint(out, ((x << 1) ^ (x >> 63)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_msb_first_across_byte_boundaries() {
        let (mut buf, mut free) = (Vec::new(), 0u8);
        write_bits(&mut buf, &mut free, 0b101, 3);
        assert_eq!((buf.as_slice(), free), (&[0b1010_0000][..], 5));
        write_bits(&mut buf, &mut free, 0x1ff, 9);
        assert_eq!((buf.as_slice(), free), (&[0b1011_1111, 0b1111_0000][..], 4));
        write_bits(&mut buf, &mut free, 0xf, 4);
        assert_eq!((buf.as_slice(), free), (&[0b1011_1111, 0xff][..], 0));
        write_bits(&mut buf, &mut free, u64::MAX, 64);
        assert_eq!(buf.len(), 10);
        assert_eq!(free, 0);
        // Bits above `n` are ignored.
        write_bits(&mut buf, &mut free, 0xff, 1);
        assert_eq!((buf.last(), free), (Some(&0x80), 7));
    }

    #[test]
    fn reads_what_was_written() {
        let widths: Vec<u32> = (1..=64)
            .chain((1..=64).rev())
            .chain([7, 13, 64, 1, 56, 57])
            .collect();
        let value = |i: usize, n: u32| 0x9e37_79b9_7f4a_7c15u64.rotate_left(i as u32) >> (64 - n);
        let (mut buf, mut free) = (Vec::new(), 0u8);
        for (i, &n) in widths.iter().enumerate() {
            write_bits(&mut buf, &mut free, value(i, n), n);
        }
        let mut r = BitReader::new(&buf);
        for (i, &n) in widths.iter().enumerate() {
            assert_eq!(r.read_wide(n), Some(value(i, n)), "field {i} of {n} bits");
        }
        // Only the zero padding of the last byte is left.
        assert_eq!(r.read(u32::from(free) + 1), None);
    }

    #[test]
    fn unary_prefixes() {
        // 0 | 10 | 110 | 1110 | 1111 | 1111, then six zero bits
        let bits = [0b0101_1011, 0b1011_1111, 0b1100_0000];
        let mut r = BitReader::new(&bits);
        let got: Vec<_> = std::iter::from_fn(|| r.read_unary(4)).collect();
        assert_eq!(got, [0, 1, 2, 3, 4, 4, 0, 0, 0, 0, 0, 0]);
        // A run of ones cut short by the end of the data is not a prefix.
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.read_unary(4), Some(4));
        assert_eq!(r.read(1), Some(1));
        assert_eq!(r.read_unary(4), None);
    }

    #[test]
    fn varints_match_go() {
        let mut out = [0u8; 10];
        let min = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        for (x, want) in [
            (0i64, &[0u8][..]),
            (-1, &[1]),
            (1, &[2]),
            (-65, &[0x81, 0x01]),
            (i64::MIN, &min),
        ] {
            let n = put_varint(&mut out, x);
            assert_eq!(&out[..n], want);
            assert_eq!(BitReader::new(&out[..n]).read_varint(), Some(x));
        }
        let n = put_uvarint(&mut out, u64::MAX);
        assert_eq!(n, 10);
        assert_eq!(BitReader::new(&out[..n]).read_uvarint(), Some(u64::MAX));
        // Go rejects an 11th byte and a 10th byte above 1 as overflow.
        assert_eq!(BitReader::new(&[0xff; 11]).read_uvarint(), None);
        let mut big = [0xffu8; 10];
        big[9] = 0x02;
        assert_eq!(BitReader::new(&big).read_uvarint(), None);
        assert_eq!(BitReader::new(&[0x80]).read_uvarint(), None);
    }
}
