//! `meta.json`: Prometheus's `BlockMeta` plus the optional `thanos` section, read and written
//! with the field names, omissions and tab indentation both projects use.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::{Error, Result};

/// The only meta.json format version Prometheus and Thanos accept.
pub const META_VERSION: u32 = 1;
/// Name of the file in a block directory.
pub const META_FILENAME: &str = "meta.json";

/// A block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    #[serde(with = "ulid_text")]
    pub ulid: Ulid,
    /// First sample time, inclusive (ms).
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// End of the block, exclusive (ms): every sample has `min_time <= t < max_time`.
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    pub compaction: BlockCompaction,
    pub version: u32,
    /// The Thanos section; absent in blocks Prometheus wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Counts over the block; every field is omitted when zero, as in Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    #[serde(rename = "numFloatSamples", default, skip_serializing_if = "is_zero")]
    pub num_float_samples: u64,
    #[serde(rename = "numHistogramSamples", default, skip_serializing_if = "is_zero")]
    pub num_histogram_samples: u64,
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

/// A direct input of a compacted block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDesc {
    #[serde(with = "ulid_text")]
    pub ulid: Ulid,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

/// How the block came to be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCompaction {
    /// 1 for a block cut from a head; max(input levels) + 1 for a compacted block.
    pub level: u32,
    /// Sorted ULIDs of the level-1 blocks this block's data came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "ulid_vec")]
    pub sources: Vec<Ulid>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// The `thanos` section of meta.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    /// Absent means 1; anything else is refused on read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// External labels: the block's stream identity.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub downsample: ThanosDownsample,
    /// `sidecar`, `receive`, `compactor`, `ruler`, `bucket.upload`, …
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ThanosFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_stats: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrites: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Value>,
    /// RFC 3339 time of the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_time: Option<String>,
}

/// Resolution of the samples in the block: 0 (raw), 300000 (5m) or 3600000 (1h).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosDownsample {
    pub resolution: i64,
}

/// One file of the block as uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosFile {
    pub rel_path: String,
    /// Omitted for meta.json itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<serde_json::Value>,
}

impl BlockMeta {
    /// Parses meta.json text; `what` names the file in errors.
    pub fn parse(text: &[u8], what: &Path) -> Result<BlockMeta> {
        let meta: BlockMeta = serde_json::from_slice(text)
            .map_err(|e| Error::BadMeta { path: what.to_owned(), reason: e.to_string() })?;
        if meta.version != META_VERSION {
            return Err(Error::BadMeta {
                path: what.to_owned(),
                reason: format!("unsupported meta.json version {} (only {META_VERSION} exists)", meta.version),
            });
        }
        if let Some(v) = meta.thanos.as_ref().and_then(|t| t.version).filter(|&v| v != 1) {
            return Err(Error::BadMeta {
                path: what.to_owned(),
                reason: format!("unsupported thanos section version {v}"),
            });
        }
        Ok(meta)
    }

    /// Reads `<block_dir>/meta.json`.
    pub fn read(block_dir: &Path) -> Result<BlockMeta> {
        let path = block_dir.join(META_FILENAME);
        let text = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        Self::parse(&text, &path)
    }

    /// meta.json text as Prometheus writes it (tab-indented).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serialising plain structs of strings and numbers into a Vec cannot fail.
        let _ = self.serialize(&mut ser);
        out
    }

    /// Writes `<block_dir>/meta.json` atomically (through `meta.json.tmp`).
    pub fn write(&self, block_dir: &Path) -> Result<()> {
        crate::fileutil::write_atomic(&block_dir.join(META_FILENAME), &self.to_json())
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

mod ulid_vec {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(v: &[Ulid], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for u in v {
            seq.serialize_element(&u.to_string())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ulid>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| Ulid::from_string(s).map_err(|e| serde::de::Error::custom(format!("invalid ULID {s:?}: {e}"))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_META: &str = r#"{
	"ulid": "01DRBP4RNVZ94135ZA6B10EMRR",
	"minTime": 1570766415000,
	"maxTime": 1570939215001,
	"stats": {
		"numSamples": 115210000,
		"numSeries": 10000,
		"numChunks": 990000
	},
	"compaction": {
		"level": 1,
		"sources": [
			"01DRBP4RNVZ94135ZA6B10EMRR"
		]
	},
	"version": 1
}"#;

    #[test]
    fn round_trips_prometheus_text_exactly() {
        let m = BlockMeta::parse(PROMETHEUS_META.as_bytes(), Path::new("meta.json")).unwrap();
        assert_eq!(m.stats.num_series, 10000);
        assert_eq!(m.compaction.sources, vec![m.ulid]);
        assert!(m.thanos.is_none());
        assert_eq!(String::from_utf8(m.to_json()).unwrap(), PROMETHEUS_META);
    }

    #[test]
    fn thanos_section() {
        let text = r#"{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR","minTime":0,"maxTime":7200000,"stats":{},
            "compaction":{"level":2,"parents":[{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR","minTime":0,"maxTime":1}]},
            "version":1,"thanos":{"labels":{"replica":"a"},"downsample":{"resolution":300000},"source":"compactor",
            "files":[{"rel_path":"index","size_bytes":10},{"rel_path":"meta.json"}],"future_field":1}}"#;
        let m = BlockMeta::parse(text.as_bytes(), Path::new("x")).unwrap();
        let t = m.thanos.as_ref().unwrap();
        assert_eq!(t.labels["replica"], "a");
        assert_eq!(t.downsample.resolution, 300_000);
        assert_eq!(t.files[1].size_bytes, None);
        let again = BlockMeta::parse(&m.to_json(), Path::new("x")).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn refuses_bad_input_with_the_path() {
        for bad in [
            r#"{"ulid":"nope","minTime":0,"maxTime":1,"compaction":{"level":1},"version":1}"#,
            r#"{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR","minTime":0,"maxTime":1,"compaction":{"level":1},"version":2}"#,
            r#"{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR","minTime":0,"maxTime":1,"compaction":{"level":1},"version":1,"thanos":{"version":3}}"#,
            r#"{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR""#,
            "",
        ] {
            let err = BlockMeta::parse(bad.as_bytes(), Path::new("blocks/x/meta.json")).unwrap_err().to_string();
            assert!(err.contains("blocks/x/meta.json"), "{err}");
        }
    }
}
