//! The framing of a streamed remote-read answer (`STREAMED_XOR_CHUNKS`, Prometheus's
//! `storage/remote/chunked.go`): each frame is the message length as a uvarint, the CRC-32
//! (Castagnoli) of the message as a big-endian u32, then the message, a
//! `prometheus.ChunkedReadResponse`.
//!
//! [`FrameDecoder`] takes the body in whatever pieces the connection delivers and hands out
//! whole messages as soon as they are complete, so an answer is never held whole.

use bytes::{Bytes, BytesMut};

/// The largest message accepted: Prometheus's and Thanos's `DefaultChunkedReadLimit`.
pub const DEFAULT_FRAME_LIMIT: u64 = 50_000_000;

/// Why a stream of frames cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length is not a valid uvarint (more than 10 bytes or over 64 bits)")]
    BadLength,
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("corrupted frame of {size} bytes: CRC32C {actual:#010x}, the frame says {expected:#010x}")]
    BadChecksum { size: usize, expected: u32, actual: u32 },
    #[error("the stream ended inside a frame ({0} bytes of it received)")]
    Truncated(usize),
}

/// Splits a byte stream into frames' messages.
///
/// A frame that arrives whole within one piece is handed out as a slice of that piece; only a
/// frame split across pieces is copied together.
#[derive(Debug)]
pub struct FrameDecoder {
    /// The start of a frame whose end has not arrived yet (empty between frames).
    partial: BytesMut,
    /// What is left of the last piece pushed.
    rest: Bytes,
    limit: u64,
}

/// The most bytes before a message: a 10-byte uvarint and the CRC.
const MAX_HEADER: usize = 14;

/// Split frames are copied together into blocks of at least this size, so that a stream of them
/// (Prometheus writes a frame of more than 2 KiB in two pieces) is not one allocation a frame.
const PARTIAL_BLOCK: usize = 256 << 10;

impl FrameDecoder {
    /// A decoder refusing messages longer than `limit` bytes.
    pub fn new(limit: u64) -> Self {
        FrameDecoder { partial: BytesMut::new(), rest: Bytes::new(), limit }
    }

    /// Appends the next piece of the stream; call [`next_frame`](Self::next_frame) until it
    /// returns `None` before pushing the next.
    pub fn push(&mut self, data: Bytes) {
        debug_assert!(self.rest.is_empty(), "a piece pushed before the last one was read");
        self.rest = data;
    }

    /// The next complete message, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        while !self.partial.is_empty() {
            let known = self.frame_len(&self.partial)?;
            if let Some((header, size, total)) = known {
                if self.partial.len() >= total {
                    return check(self.partial.split_to(total).freeze(), header, size).map(Some);
                }
            }
            if self.rest.is_empty() {
                return Ok(None);
            }
            // Only what the frame lacks is copied (a header's worth while its length is
            // unknown), so that the frames after it are read from the piece itself.
            let lacking = known.map_or(MAX_HEADER, |(_, _, total)| total - self.partial.len());
            let copied = self.rest.split_to(lacking.min(self.rest.len()));
            self.copy_in(&copied, lacking);
        }
        let known = self.frame_len(&self.rest)?;
        match known {
            Some((header, size, total)) if self.rest.len() >= total => {
                check(self.rest.split_to(total), header, size).map(Some)
            }
            _ => {
                let rest = std::mem::take(&mut self.rest);
                self.copy_in(&rest, known.map_or(MAX_HEADER, |(_, _, total)| total));
                Ok(None)
            }
        }
    }

    /// Appends `bytes` to the partial frame, which lacks `lacking` bytes: room for all of them
    /// at once rather than growing piece by piece, in blocks of [`PARTIAL_BLOCK`] or more.
    fn copy_in(&mut self, bytes: &[u8], lacking: usize) {
        let room = lacking.max(bytes.len());
        if self.partial.capacity() - self.partial.len() < room {
            self.partial.reserve(room.max(PARTIAL_BLOCK));
        }
        self.partial.extend_from_slice(bytes);
    }

    /// The header length, message length and frame length of the frame `buf` starts with;
    /// `None` while its length is incomplete.
    fn frame_len(&self, buf: &[u8]) -> Result<Option<(usize, usize, usize)>, FrameError> {
        let Some((size, uvarint)) = read_uvarint(buf)? else { return Ok(None) };
        if size > self.limit {
            return Err(FrameError::TooLarge { size, limit: self.limit });
        }
        // Within the limit, which fits a usize on every platform this runs on.
        let size = usize::try_from(size).map_err(|_| FrameError::TooLarge { size, limit: self.limit })?;
        let header = uvarint + 4;
        match header.checked_add(size) {
            Some(total) => Ok(Some((header, size, total))),
            None => Err(FrameError::TooLarge { size: size as u64, limit: self.limit }),
        }
    }

    /// Checks that the stream ended between frames.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.partial.len() + self.rest.len() {
            0 => Ok(()),
            held => Err(FrameError::Truncated(held)),
        }
    }
}

/// The message of a whole `frame` (`header` bytes, then `size`), its CRC checked.
fn check(frame: Bytes, header: usize, size: usize) -> Result<Bytes, FrameError> {
    let expected = u32::from_be_bytes([frame[header - 4], frame[header - 3], frame[header - 2], frame[header - 1]]);
    let message = frame.slice(header..);
    let actual = crc32c::crc32c(&message);
    if actual != expected {
        return Err(FrameError::BadChecksum { size, expected, actual });
    }
    Ok(message)
}

/// Go's `binary.ReadUvarint` over the start of `buf`: the value and its length in bytes, or
/// `None` while the buffer ends inside it.
fn read_uvarint(buf: &[u8]) -> Result<Option<(u64, usize)>, FrameError> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().enumerate() {
        if i == 10 || (i == 9 && b > 1) {
            return Err(FrameError::BadLength);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 10 {
        return Err(FrameError::BadLength);
    }
    Ok(None)
}

/// One frame around `message`, as Prometheus writes it (for tests and the fuzz target).
pub fn encode_frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 14);
    let mut n = message.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(&crc32c::crc32c(message).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(stream: &[u8], piece: usize, limit: u64) -> Result<Vec<Bytes>, FrameError> {
        let mut d = FrameDecoder::new(limit);
        let mut out = Vec::new();
        for chunk in stream.chunks(piece.max(1)) {
            d.push(Bytes::copy_from_slice(chunk));
            while let Some(m) = d.next_frame()? {
                out.push(m);
            }
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn frames_in_any_pieces() {
        let messages: Vec<Vec<u8>> = vec![b"a".to_vec(), vec![7u8; 300], Vec::new(), vec![1u8; 20_000]];
        let stream: Vec<u8> = messages.iter().flat_map(|m| encode_frame(m)).collect();
        for piece in [1, 2, 3, 7, 64, 1000, stream.len()] {
            let got = decode_all(&stream, piece, DEFAULT_FRAME_LIMIT).unwrap();
            assert_eq!(got, messages, "pieces of {piece}");
        }
    }

    /// The 122-byte one-series frame Prometheus 2.42 sends starts with the uvarint 117.
    #[test]
    fn length_is_a_uvarint() {
        let frame = encode_frame(&[0u8; 117]);
        assert_eq!(frame.len(), 122);
        assert_eq!(frame[0], 117);
        assert_eq!(&encode_frame(&[0u8; 300])[..2], &[0xac, 0x02]);
    }

    #[test]
    fn bad_checksum_is_refused() {
        let mut frame = encode_frame(b"hello");
        let last = frame.len() - 1;
        frame[last] ^= 1;
        let err = decode_all(&frame, 100, DEFAULT_FRAME_LIMIT).unwrap_err();
        assert!(matches!(err, FrameError::BadChecksum { size: 5, .. }), "{err}");
        assert!(err.to_string().contains("corrupted frame"), "{err}");
    }

    #[test]
    fn truncated_streams_are_refused() {
        let frame = encode_frame(&[9u8; 200]);
        for cut in 1..frame.len() {
            let err = decode_all(&frame[..cut], 16, DEFAULT_FRAME_LIMIT).unwrap_err();
            assert_eq!(err, FrameError::Truncated(cut), "cut at {cut}");
        }
        assert!(decode_all(&[], 1, DEFAULT_FRAME_LIMIT).unwrap().is_empty());
    }

    #[test]
    fn oversized_and_malformed_lengths_are_refused() {
        let frame = encode_frame(&[0u8; 1000]);
        assert_eq!(decode_all(&frame, 1, 999).unwrap_err(), FrameError::TooLarge { size: 1000, limit: 999 });
        // A length of 2^63 announced in the first bytes is refused before anything is buffered.
        let mut d = FrameDecoder::new(DEFAULT_FRAME_LIMIT);
        d.push(Bytes::from_static(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]));
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
        for bad in [&[0xffu8; 10][..], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], &[0x80; 11]] {
            let mut d = FrameDecoder::new(u64::MAX);
            d.push(Bytes::copy_from_slice(bad));
            assert_eq!(d.next_frame(), Err(FrameError::BadLength), "{bad:?}");
        }
        // The largest length whose frame size overflows is refused, not wrapped.
        let mut d = FrameDecoder::new(u64::MAX);
        d.push(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode_all(&bytes, 5, 1 << 20);
        }
    }
}
