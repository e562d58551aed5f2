//! The hashes that place series and ring sections, as Thanos computes them.

use std::fmt::Write as _;
use std::hash::Hasher as _;

use twox_hash::XxHash64;

const SEP: u8 = 0xff;

/// Thanos's `labelpb.HashWithPrefix(tenant, labels)`: XXH64 (seed 0) over `tenant 0xff` then
/// `name 0xff value 0xff` for each label in the order given. Remote-write senders order labels
/// by name; the hash takes them as they come, as Thanos does.
pub fn series_hash<'a>(tenant: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = SeriesHasher::new();
    h.write(tenant.as_bytes());
    h.write(&[SEP]);
    for (name, value) in labels {
        h.write(name.as_bytes());
        h.write(&[SEP]);
        h.write(value.as_bytes());
        h.write(&[SEP]);
    }
    h.finish()
}

/// Gathers a series' bytes on the stack and hashes them in one pass, which is several times
/// faster than feeding each label to a streaming hasher; a series longer than the buffer
/// continues in a streaming hasher (same result).
struct SeriesHasher {
    buf: [u8; 1024],
    len: usize,
    stream: Option<XxHash64>,
}

impl SeriesHasher {
    fn new() -> Self {
        SeriesHasher { buf: [0; 1024], len: 0, stream: None }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() <= self.buf.len() {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
            return;
        }
        let stream = self.stream.get_or_insert_with(|| XxHash64::with_seed(0));
        stream.write(&self.buf[..self.len]);
        self.len = 0;
        stream.write(bytes);
    }

    fn finish(self) -> u64 {
        match self.stream {
            None => XxHash64::oneshot(0, &self.buf[..self.len]),
            Some(mut stream) => {
                stream.write(&self.buf[..self.len]);
                stream.finish()
            }
        }
    }
}

/// The ketama position of section `i` (1-based) of an endpoint: XXH64 of `address:i`.
pub(crate) fn section_hash(buf: &mut String, address: &str, i: usize) -> u64 {
    buf.clear();
    // Writing to a String cannot fail.
    let _ = write!(buf, "{address}:{i}");
    XxHash64::oneshot(0, buf.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_hash_is_xxh64_of_the_joined_bytes() {
        let labels = [("__name__", "up"), ("job", "a")];
        let joined = b"tenant\xff__name__\xffup\xffjob\xffa\xff";
        assert_eq!(series_hash("tenant", labels), XxHash64::oneshot(0, joined));
        assert_eq!(series_hash("", []), XxHash64::oneshot(0, b"\xff"));
    }

    #[test]
    fn long_series_hash_the_same_as_short_ones() {
        let long = "v".repeat(3000);
        let labels = [("a", "1"), ("b", long.as_str()), ("c", "3")];
        let mut joined = b"t\xffa\xff1\xffb\xff".to_vec();
        joined.extend_from_slice(long.as_bytes());
        joined.extend_from_slice(b"\xffc\xff3\xff");
        assert_eq!(series_hash("t", labels), XxHash64::oneshot(0, &joined));
    }
}
