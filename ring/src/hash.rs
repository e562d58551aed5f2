//! The hashes that place series and ring sections, as Thanos computes them.

use std::fmt::Write as _;
use strata_tsdb::labels::LabelHasher;
use twox_hash::XxHash64;

const SEP: u8 = 0xff;

/// Thanos's `labelpb.HashWithPrefix(tenant, labels)`: XXH64 (seed 0) over `tenant 0xff` then
/// `name 0xff value 0xff` for each label in the order given. Remote-write senders order labels
/// by name; the hash takes them as they come, as Thanos does.
pub fn series_hash<'a>(tenant: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = LabelHasher::new();
    h.write(tenant.as_bytes());
    h.write(&[SEP]);
    for (name, value) in labels {
        h.write_pair(name, value);
    }
    h.finish()
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
