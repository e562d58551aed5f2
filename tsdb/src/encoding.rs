//! The byte encodings of every TSDB file and record, as Prometheus's `tsdb/encoding` writes them:
//! Go's `binary.PutUvarint` / `PutVarint` (zig-zag) varints, big-endian integers, uvarint-prefixed
//! strings, and a bounds-checked reader over untrusted bytes. The index, chunk segments, WAL
//! records, tombstones, the XOR chunk's first timestamps and label sets all use these.

/// The longest varint of a 64-bit value.
pub(crate) const MAX_VARINT_LEN: usize = 10;

/// Go's `binary.PutUvarint`: seven bits a byte, least significant first.
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, v: u64) {
    uvarint_bytes(v, |b| buf.push(b));
}

/// Hands the bytes of Go's `binary.PutUvarint` encoding of `v` to `put`, in order (a bit
/// stream writes them where a `Vec` cannot).
#[inline]
pub(crate) fn uvarint_bytes(mut v: u64, mut put: impl FnMut(u8)) {
    while v >= 0x80 {
        put(v as u8 | 0x80);
        v >>= 7;
    }
    put(v as u8);
}

/// Go's `binary.PutVarint`: zig-zag, then uvarint.
pub(crate) fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, zigzag(v));
}

/// The zig-zag step of [`put_varint`]: small magnitudes of either sign become small numbers.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// A uvarint byte length, then the string.
pub(crate) fn put_uvarint_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_be32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_be64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// Why a varint did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The bytes ended inside it.
    Truncated,
    /// More than 64 bits: an 11th byte, or a 10th above 1.
    Overflow,
}

/// Go's `binary.Uvarint` over bytes taken one at a time from `next` (a slice, or a bit stream
/// that is byte-aligned at this point), reading no further than the varint's last byte.
#[inline]
pub(crate) fn uvarint_from(mut next: impl FnMut() -> Option<u8>) -> Result<u64, VarintError> {
    let mut v = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let b = next().ok_or(VarintError::Truncated)?;
        if b < 0x80 {
            if i == MAX_VARINT_LEN - 1 && b > 1 {
                return Err(VarintError::Overflow);
            }
            return Ok(v | u64::from(b) << (7 * i));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
    }
    Err(VarintError::Overflow)
}

/// Go's `binary.Uvarint` at the start of `b`: the value and how many bytes it took.
#[inline]
pub(crate) fn uvarint(b: &[u8]) -> Result<(u64, usize), VarintError> {
    // One byte is the common case: every label string and most lengths are under 128 bytes.
    if let Some(&first) = b.first() {
        if first < 0x80 {
            return Ok((u64::from(first), 1));
        }
    }
    let mut n = 0;
    let v = uvarint_from(|| {
        let byte = b.get(n).copied();
        n += 1;
        byte
    })?;
    Ok((v, n))
}

/// Undoes the zig-zag step of [`put_varint`].
#[inline]
pub(crate) fn unzigzag(u: u64) -> i64 {
    (u >> 1) as i64 ^ -((u & 1) as i64)
}

/// Why a read from untrusted bytes failed; callers add the file and what they were reading.
pub(crate) type DecodeResult<T> = std::result::Result<T, &'static str>;

/// A cursor over bytes read from disk. Every read is bounds-checked and fails instead of
/// panicking, so corrupt lengths and offsets turn into errors.
pub(crate) struct Decbuf<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decbuf<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Decbuf { buf, pos: 0 }
    }

    /// A cursor at `pos` of `buf`; fails if `pos` is past the end.
    pub(crate) fn at(buf: &'a [u8], pos: usize) -> DecodeResult<Self> {
        if pos > buf.len() {
            return Err("offset past the end of the data");
        }
        Ok(Decbuf { buf, pos })
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("unexpected end of data")?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    pub(crate) fn byte(&mut self) -> DecodeResult<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn be32(&mut self) -> DecodeResult<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn be64(&mut self) -> DecodeResult<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn uvarint(&mut self) -> DecodeResult<u64> {
        let (v, n) = uvarint(&self.buf[self.pos..]).map_err(|e| match e {
            VarintError::Truncated => "unexpected end of data",
            VarintError::Overflow => "uvarint overflows 64 bits",
        })?;
        self.pos += n;
        Ok(v)
    }

    pub(crate) fn varint(&mut self) -> DecodeResult<i64> {
        self.uvarint().map(unzigzag)
    }

    /// A uvarint that must fit in 32 bits (symbol refs, counts, lengths).
    pub(crate) fn uvarint32(&mut self) -> DecodeResult<u32> {
        u32::try_from(self.uvarint()?).map_err(|_| "uvarint overflows 32 bits")
    }

    /// A uvarint length and that many bytes.
    pub(crate) fn uvarint_bytes(&mut self) -> DecodeResult<&'a [u8]> {
        let n = usize::try_from(self.uvarint()?).map_err(|_| "length overflows")?;
        self.bytes(n)
    }

    pub(crate) fn uvarint_str(&mut self) -> DecodeResult<&'a str> {
        std::str::from_utf8(self.uvarint_bytes()?).map_err(|_| "string is not valid UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values and encodings from Go's encoding/binary `PutVarint` / `PutUvarint`.
    #[test]
    fn varints_match_go() {
        let max = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let min = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let cases: &[(i64, &[u8])] = &[
            (0, &[0]),
            (-1, &[1]),
            (1, &[2]),
            (-64, &[0x7f]),
            (64, &[0x80, 1]),
            (-65, &[0x81, 0x01]),
            (i64::MAX, &max),
            (i64::MIN, &min),
        ];
        for &(v, want) in cases {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b, want, "{v}");
            let mut d = Decbuf::new(&b);
            assert_eq!(d.varint(), Ok(v));
            assert_eq!(d.remaining(), 0);
        }
        for v in [0, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(uvarint(&b), Ok((v, b.len())));
            let mut d = Decbuf::new(&b);
            assert_eq!(d.uvarint(), Ok(v));
            assert_eq!(d.remaining(), 0);
        }
        let mut b = Vec::new();
        put_uvarint(&mut b, u64::MAX);
        assert_eq!(b.len(), MAX_VARINT_LEN);
    }

    #[test]
    fn bad_varints_are_errors_as_in_go() {
        assert_eq!(uvarint(&[]), Err(VarintError::Truncated));
        assert_eq!(uvarint(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(uvarint(&[0x80, 0x80]), Err(VarintError::Truncated));
        // An 11th byte, and a 10th byte above 1, overflow 64 bits.
        assert_eq!(uvarint(&[0xff; 11]), Err(VarintError::Overflow));
        let mut big = [0xffu8; 10];
        big[9] = 0x02;
        assert_eq!(uvarint(&big), Err(VarintError::Overflow));
        // Only the varint's own bytes are read.
        assert_eq!(uvarint(&[0x05, 0xff]), Ok((5, 1)));
        let mut rest = [0x81u8, 0x01, 0x80].into_iter();
        assert_eq!(uvarint_from(|| rest.next()), Ok(129));
        assert_eq!(rest.next(), Some(0x80));
    }

    #[test]
    fn strings_and_big_endian() {
        let mut b = Vec::new();
        put_uvarint_str(&mut b, "héllo");
        put_be32(&mut b, 0x0102_0304);
        put_be64(&mut b, 0x0506_0708_090a_0b0c);
        assert_eq!(&b[..7], b"\x06h\xc3\xa9llo");
        assert_eq!(&b[7..], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let mut d = Decbuf::new(&b);
        assert_eq!(d.uvarint_str(), Ok("héllo"));
        assert_eq!(d.be32(), Ok(0x0102_0304));
        assert_eq!(d.be64(), Ok(0x0506_0708_090a_0b0c));
        assert_eq!(d.remaining(), 0);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Decbuf::new(&[0x80, 0x80]).uvarint().is_err());
        assert!(Decbuf::new(&[0xff; 10]).uvarint().is_err());
        assert!(Decbuf::new(&[0x80, 0x80, 0x80, 0x80, 0x10]).uvarint32().is_err());
        assert!(Decbuf::new(&[5, b'a']).uvarint_str().is_err());
        assert!(Decbuf::new(&[1, 0xff]).uvarint_str().is_err());
        assert!(Decbuf::new(&[1, 2, 3]).be32().is_err());
        assert!(Decbuf::at(&[1], 2).is_err());
        // A length near usize::MAX must not overflow the end computation.
        let mut d = Decbuf::at(&[0; 4], 2).unwrap();
        assert!(d.bytes(usize::MAX).is_err());
    }
}
