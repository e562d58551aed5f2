//! Block markers in the bucket (`<ULID>/deletion-mark.json`, ...), as Thanos writes them.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

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
}
