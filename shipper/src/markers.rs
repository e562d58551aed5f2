//! Block markers in the bucket (`<ULID>/deletion-mark.json`, ...), as Thanos writes them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::bucket::Bucket;
use crate::Result;

/// Written by the compactor (or `tools bucket mark`) when a block is to be deleted after
/// `--delete-delay`; readers stop using the block.
pub const DELETION_MARK_FILENAME: &str = "deletion-mark.json";

/// `deletion-mark.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    #[serde(with = "ulid_text")]
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// Unix seconds.
    pub deletion_time: i64,
}

impl DeletionMark {
    /// Parses the marker; only version 1 exists.
    pub fn parse(text: &[u8]) -> Result<DeletionMark, String> {
        let mark: DeletionMark = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if mark.version != 1 {
            return Err(format!("unsupported deletion mark version {}", mark.version));
        }
        Ok(mark)
    }
}

/// Written by the compactor (or `tools bucket mark`) on a block no compaction may take as input;
/// the planner leaves it out without creating gaps.
pub const NO_COMPACT_MARK_FILENAME: &str = "no-compact-mark.json";

/// Thanos's reason for a block whose index has chunks out of order
/// (`--compact.skip-block-with-out-of-order-chunks`).
pub const OUT_OF_ORDER_CHUNKS_REASON: &str = "block-index-out-of-order-chunk";

/// `no-compact-mark.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCompactMark {
    #[serde(with = "ulid_text")]
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// Unix seconds.
    pub no_compact_time: i64,
    pub reason: String,
}

impl NoCompactMark {
    /// Parses the marker; only version 1 exists.
    pub fn parse(text: &[u8]) -> Result<NoCompactMark, String> {
        let mark: NoCompactMark = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if mark.version != 1 {
            return Err(format!("unsupported no-compact mark version {}", mark.version));
        }
        Ok(mark)
    }
}

/// Written by `tools bucket mark` on a block the compactor must not downsample; its
/// downsampling passes leave the block out.
pub const NO_DOWNSAMPLE_MARK_FILENAME: &str = "no-downsample-mark.json";

/// The reason Thanos's `tools bucket mark` writes into no-compact and no-downsample marks.
pub const MANUAL_REASON: &str = "manual";

/// `no-downsample-mark.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDownsampleMark {
    #[serde(with = "ulid_text")]
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// Unix seconds.
    pub no_downsample_time: i64,
    pub reason: String,
}

impl NoDownsampleMark {
    /// Parses the marker; only version 1 exists.
    pub fn parse(text: &[u8]) -> Result<NoDownsampleMark, String> {
        let mark: NoDownsampleMark = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if mark.version != 1 {
            return Err(format!("unsupported no-downsample mark version {}", mark.version));
        }
        Ok(mark)
    }
}

/// The marker file names `tools bucket mark` takes, as Thanos's `--marker` enum lists them.
pub const MARKER_FILENAMES: [&str; 3] = [DELETION_MARK_FILENAME, NO_COMPACT_MARK_FILENAME, NO_DOWNSAMPLE_MARK_FILENAME];

/// Writes `<id>/deletion-mark.json` unless the block has one already (an earlier mark keeps its
/// time, so the delete delay is never restarted). Returns whether a mark was written.
pub async fn mark_for_deletion(bucket: &Bucket, id: Ulid, details: &str, now_secs: i64) -> Result<bool> {
    let key = format!("{id}/{DELETION_MARK_FILENAME}");
    if bucket.exists(&key).await? {
        return Ok(false);
    }
    let mark = DeletionMark { id, version: 1, details: details.to_owned(), deletion_time: now_secs };
    bucket.put_bytes(&key, Bytes::from(to_json(&mark))).await?;
    Ok(true)
}

/// Writes `<id>/no-compact-mark.json` unless the block has one already. Returns whether a mark
/// was written.
pub async fn mark_no_compact(bucket: &Bucket, id: Ulid, reason: &str, details: &str, now_secs: i64) -> Result<bool> {
    let key = format!("{id}/{NO_COMPACT_MARK_FILENAME}");
    if bucket.exists(&key).await? {
        return Ok(false);
    }
    let mark = NoCompactMark {
        id,
        version: 1,
        details: details.to_owned(),
        no_compact_time: now_secs,
        reason: reason.to_owned(),
    };
    bucket.put_bytes(&key, Bytes::from(to_json(&mark))).await?;
    Ok(true)
}

/// Writes `<id>/no-downsample-mark.json` unless the block has one already. Returns whether a
/// mark was written.
pub async fn mark_no_downsample(bucket: &Bucket, id: Ulid, reason: &str, details: &str, now_secs: i64) -> Result<bool> {
    let key = format!("{id}/{NO_DOWNSAMPLE_MARK_FILENAME}");
    if bucket.exists(&key).await? {
        return Ok(false);
    }
    let mark = NoDownsampleMark {
        id,
        version: 1,
        details: details.to_owned(),
        no_downsample_time: now_secs,
        reason: reason.to_owned(),
    };
    bucket.put_bytes(&key, Bytes::from(to_json(&mark))).await?;
    Ok(true)
}

/// Deletes the marker `filename` (one of [`MARKER_FILENAMES`]) of a block, as Thanos's
/// `block.RemoveMark`. Returns whether there was one.
pub async fn remove_mark(bucket: &Bucket, id: Ulid, filename: &str) -> Result<bool> {
    let key = format!("{id}/{filename}");
    if !bucket.exists(&key).await? {
        return Ok(false);
    }
    bucket.delete(&key).await?;
    Ok(true)
}

/// The marker as Thanos writes it: indented JSON.
fn to_json<T: Serialize>(mark: &T) -> Vec<u8> {
    // Serialising a struct of strings and integers cannot fail.
    serde_json::to_vec_pretty(mark).unwrap_or_default()
}

mod ulid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(u: &Ulid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&u.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let s = String::deserialize(d)?;
        Ulid::from_string(&s).map_err(|e| serde::de::Error::custom(format!("invalid ULID {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thanos_deletion_mark() {
        let text =
            br#"{"id":"01DRBP4RNVZ94135ZA6B10EMRR","version":1,"details":"retention","deletion_time":1700000000}"#;
        let m = DeletionMark::parse(text).unwrap();
        assert_eq!(m.deletion_time, 1_700_000_000);
        assert_eq!(m.details, "retention");
        assert!(DeletionMark::parse(br#"{"id":"01DRBP4RNVZ94135ZA6B10EMRR","version":2,"deletion_time":1}"#).is_err());
        assert!(DeletionMark::parse(b"{").is_err());
    }

    #[test]
    fn parses_thanos_no_compact_mark() {
        let text = br#"{"id":"01DRBP4RNVZ94135ZA6B10EMRR","version":1,"details":"x","no_compact_time":1700000000,"reason":"manual"}"#;
        let m = NoCompactMark::parse(text).unwrap();
        assert_eq!((m.no_compact_time, m.reason.as_str()), (1_700_000_000, "manual"));
        let back = NoCompactMark::parse(&to_json(&m)).unwrap();
        assert_eq!(back, m);
        for bad in [
            &br#"{"id":"01DRBP4RNVZ94135ZA6B10EMRR","version":2,"no_compact_time":1,"reason":"manual"}"#[..],
            br#"{"id":"nope","version":1,"no_compact_time":1,"reason":"manual"}"#,
            br#"{"id":"01DRBP4RNVZ94135ZA6B10EMRR","version":1,"no_compact_time":1}"#,
            b"{\"id\":",
            b"",
        ] {
            assert!(NoCompactMark::parse(bad).is_err());
        }
    }

    #[test]
    fn parses_thanos_no_downsample_mark() {
        // As `thanos tools bucket mark --marker=no-downsample-mark.json` writes it.
        let text = br#"{"id":"01M92S0Q5MDNNFYQ3VMZV2YFF2","version":1,"details":"x y","no_downsample_time":1796463423,"reason":"manual"}"#;
        let m = NoDownsampleMark::parse(text).unwrap();
        assert_eq!(
            (m.no_downsample_time, m.reason.as_str(), m.details.as_str()),
            (1_796_463_423, MANUAL_REASON, "x y")
        );
        assert_eq!(NoDownsampleMark::parse(&to_json(&m)).unwrap(), m);
        for bad in [
            &br#"{"id":"01M92S0Q5MDNNFYQ3VMZV2YFF2","version":0,"no_downsample_time":1,"reason":"manual"}"#[..],
            br#"{"id":"01M92S0Q5MDNNFYQ3VMZV2YFF2","version":1,"no_downsample_time":"1","reason":"manual"}"#,
            br#"{"id":"","version":1,"no_downsample_time":1,"reason":"manual"}"#,
            b"[]",
            b"\xff\xfe",
        ] {
            assert!(NoDownsampleMark::parse(bad).is_err());
        }
    }
}
