//! `hashrings.json` as Thanos v0.42 reads it (`pkg/receive/config.go`): an array of hashrings,
//! each with an optional name, tenants and tenant matcher type, algorithm, external labels and
//! shuffle-sharding config, and its endpoints as address strings or objects with `address`,
//! `capnproto_address` and `az`. Decoding follows Go's `encoding/json` (see [`crate::gojson`]),
//! so a file Thanos accepts is accepted with the same meaning and one it refuses is refused.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::gojson::{decode_fields, decode_struct, decode_top, GoDecode, GoStruct, Into};
use crate::Error;

/// Port of the Cap'n Proto replication server that an endpoint without `capnproto_address` gets.
pub const DEFAULT_CAPNPROTO_PORT: &str = "19391";

/// The largest hashrings file read. Thanos reads any size; a real one is a few kilobytes, and this
/// bounds what a wrong path (a log, a dump) can make the process allocate.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// One receiver in a hashring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    /// The gRPC address (`host:port`); the only part that places series.
    pub address: String,
    /// The Cap'n Proto replication address; `<host of address>:19391` when not given.
    pub capnproto_address: String,
    /// Availability zone; empty when not given.
    pub az: String,
}

impl Endpoint {
    /// An endpoint as the string form of hashrings.json gives it.
    pub fn from_address(address: &str) -> Self {
        let mut e = Endpoint { address: address.to_owned(), ..Endpoint::default() };
        e.default_capnproto_address();
        e
    }

    /// Thanos takes the part of the address before the first colon as the host (so an IPv6
    /// literal `[::1]:10901` gives `[:19391`; kept, since peers derive the same).
    fn default_capnproto_address(&mut self) {
        if self.capnproto_address.is_empty() {
            let host = self.address.split(':').next().unwrap_or_default();
            self.capnproto_address = format!("{host}:{DEFAULT_CAPNPROTO_PORT}");
        }
    }
}

/// One hashring of hashrings.json, as written (matcher type and algorithm are kept as strings,
/// as Thanos keeps them; [`crate::Ring`] interprets them).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HashringConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hashring: String,
    /// Empty: the ring takes every tenant that no earlier ring took.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// `exact` (also when empty) or `glob`; any other value matches no tenant.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tenant_matcher_type: String,
    pub endpoints: Vec<Endpoint>,
    /// `hashmod` or `ketama`; empty: the `--receive.hashrings-algorithm` flag; anything else is
    /// hashmod, as in Thanos.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub algorithm: String,
    /// Labels added to the blocks of the tenants listed (by exact name) in `tenants`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub external_labels: BTreeMap<String, String>,
    /// Shuffle sharding is on when `shard_size` is above zero.
    pub shuffle_sharding_config: ShuffleShardingConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShuffleShardingConfig {
    pub shard_size: i64,
    /// Subrings kept; zero or less means 100.
    pub cache_size: i64,
    /// Take the shard from all endpoints as one zone instead of evenly from each zone.
    pub zone_awareness_disabled: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<ShuffleShardingOverride>,
}

/// A shard size for some tenants. Unlike hashrings, an override's matcher type must be given:
/// Thanos matches only `exact` and `glob` here, so an override without one applies to nobody.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShuffleShardingOverride {
    pub shard_size: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tenant_matcher_type: String,
}

/// Parses hashrings.json content. `None` is a JSON `null`, which Thanos treats as no hashring
/// (an inline `--receive.hashrings=null` gives the single-node ring); `Some(vec![])` is `[]`.
/// Invalid UTF-8 inside strings becomes U+FFFD, as in Go.
pub fn parse(content: &[u8]) -> Result<Option<Vec<HashringConfig>>, Error> {
    let text = String::from_utf8_lossy(content);
    let mut de = serde_json::Deserializer::from_str(&text);
    let parsed = decode_top::<_, HashringConfig>(&mut de).and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| Error::Parse(e.to_string()))
}

/// Reads and parses a hashrings file: an array of at least one hashring, and the value of
/// `thanos_receive_config_hash` for its content.
pub fn load_file(path: &Path) -> Result<(Vec<HashringConfig>, f64), Error> {
    let content = read_file(path)?;
    match parse(&content)? {
        Some(config) if !config.is_empty() => Ok((config, config_hash(&content))),
        _ => Err(Error::Empty { path: path.to_owned() }),
    }
}

/// The file's bytes, refusing one larger than [`MAX_CONFIG_BYTES`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    let read_error = |source| Error::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut content = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut content).map_err(read_error)?;
    if content.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::TooLarge { path: path.to_owned(), limit: MAX_CONFIG_BYTES });
    }
    Ok(content)
}

/// Thanos's `thanos_receive_config_hash`: the first 48 bits of the content's SHA-256, read
/// little-endian, so that the value is exact in a float.
pub fn config_hash(content: &[u8]) -> f64 {
    let sum = Sha256::digest(content);
    let mut bytes = [0u8; 8];
    bytes[..6].copy_from_slice(&sum[..6]);
    u64::from_le_bytes(bytes) as f64
}

impl GoStruct for HashringConfig {
    const NAME: &'static str = "HashringConfig";
    const FIELDS: &'static [&'static str] = &[
        "hashring",
        "tenants",
        "tenant_matcher_type",
        "endpoints",
        "algorithm",
        "external_labels",
        "shuffle_sharding_config",
    ];
    fn decode_field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => map.next_value_seed(Into(&mut self.hashring)),
            1 => map.next_value_seed(Into(&mut self.tenants)),
            2 => map.next_value_seed(Into(&mut self.tenant_matcher_type)),
            3 => map.next_value_seed(Into(&mut self.endpoints)),
            4 => map.next_value_seed(Into(&mut self.algorithm)),
            5 => map.next_value_seed(Into(&mut self.external_labels)),
            _ => map.next_value_seed(Into(&mut self.shuffle_sharding_config)),
        }
    }
}

impl GoDecode for HashringConfig {
    fn decode<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        decode_struct(self, d)
    }
}

impl GoStruct for ShuffleShardingConfig {
    const NAME: &'static str = "ShuffleShardingConfig";
    const FIELDS: &'static [&'static str] = &["shard_size", "cache_size", "zone_awareness_disabled", "overrides"];
    fn decode_field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => map.next_value_seed(Into(&mut self.shard_size)),
            1 => map.next_value_seed(Into(&mut self.cache_size)),
            2 => map.next_value_seed(Into(&mut self.zone_awareness_disabled)),
            _ => map.next_value_seed(Into(&mut self.overrides)),
        }
    }
}

impl GoDecode for ShuffleShardingConfig {
    fn decode<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        decode_struct(self, d)
    }
}

impl GoStruct for ShuffleShardingOverride {
    const NAME: &'static str = "ShuffleShardingOverrideConfig";
    const FIELDS: &'static [&'static str] = &["shard_size", "tenants", "tenant_matcher_type"];
    fn decode_field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => map.next_value_seed(Into(&mut self.shard_size)),
            1 => map.next_value_seed(Into(&mut self.tenants)),
            _ => map.next_value_seed(Into(&mut self.tenant_matcher_type)),
        }
    }
}

impl GoDecode for ShuffleShardingOverride {
    fn decode<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        decode_struct(self, d)
    }
}

impl GoStruct for Endpoint {
    const NAME: &'static str = "Endpoint";
    const FIELDS: &'static [&'static str] = &["address", "capnproto_address", "az"];
    fn decode_field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => map.next_value_seed(Into(&mut self.address)),
            1 => map.next_value_seed(Into(&mut self.capnproto_address)),
            _ => map.next_value_seed(Into(&mut self.az)),
        }
    }
}

/// Thanos's `Endpoint.UnmarshalJSON`: a string sets the address alone (`null` sets nothing); an
/// object replaces all three fields. Then the address must be set, and a missing Cap'n Proto
/// address is derived from it.
impl GoDecode for Endpoint {
    fn decode<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        struct V<'a>(&'a mut Endpoint);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an endpoint address or an object with address, capnproto_address and az")
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
                v.clone_into(&mut self.0.address);
                Ok(())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
                let mut fresh = Endpoint::default();
                decode_fields(&mut fresh, map)?;
                *self.0 = fresh;
                Ok(())
            }
        }
        d.deserialize_any(V(self))?;
        if self.address.is_empty() {
            return Err(de::Error::custom("endpoint address must be set"));
        }
        self.default_capnproto_address();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Vec<HashringConfig> {
        parse(json.as_bytes()).unwrap().unwrap()
    }

    fn error(json: &str) -> String {
        parse(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn every_field_of_every_form() {
        let cfg = one(r#"[
              {"hashring": "a", "tenants": ["t1", "t*"], "tenant_matcher_type": "glob", "algorithm": "ketama",
               "external_labels": {"region": "eu", "env": "prod"},
               "endpoints": ["r1:10901", {"address": "r2:10901", "capnproto_address": "r2:7000", "az": "z1"},
                             {"address": "r3:10901", "az": "z2"}],
               "shuffle_sharding_config": {"shard_size": 2, "cache_size": 7, "zone_awareness_disabled": true,
                 "overrides": [{"shard_size": 3, "tenants": ["big-*"], "tenant_matcher_type": "glob"}]}},
              {"endpoints": ["r9"]}
            ]"#);
        assert_eq!(cfg.len(), 2);
        let a = &cfg[0];
        assert_eq!(a.hashring, "a");
        assert_eq!(a.tenants, ["t1", "t*"]);
        assert_eq!(a.tenant_matcher_type, "glob");
        assert_eq!(a.algorithm, "ketama");
        assert_eq!(
            a.external_labels.iter().collect::<Vec<_>>(),
            [(&"env".to_owned(), &"prod".to_owned()), (&"region".to_owned(), &"eu".to_owned())]
        );
        assert_eq!(
            a.endpoints,
            [
                Endpoint { address: "r1:10901".into(), capnproto_address: "r1:19391".into(), az: String::new() },
                Endpoint { address: "r2:10901".into(), capnproto_address: "r2:7000".into(), az: "z1".into() },
                Endpoint { address: "r3:10901".into(), capnproto_address: "r3:19391".into(), az: "z2".into() },
            ]
        );
        let ss = &a.shuffle_sharding_config;
        assert_eq!((ss.shard_size, ss.cache_size, ss.zone_awareness_disabled), (2, 7, true));
        assert_eq!(
            ss.overrides,
            [ShuffleShardingOverride {
                shard_size: 3,
                tenants: vec!["big-*".into()],
                tenant_matcher_type: "glob".into()
            }]
        );
        let b = &cfg[1];
        assert_eq!(b.endpoints, [Endpoint::from_address("r9")]);
        assert_eq!(b.endpoints[0].capnproto_address, "r9:19391");
        assert!(b.tenants.is_empty() && b.algorithm.is_empty() && b.hashring.is_empty());
        assert_eq!(b.shuffle_sharding_config, ShuffleShardingConfig::default());
    }

    /// Thanos's TestUnmarshalEndpointSlice, and the IPv6 quirk of the derived address.
    #[test]
    fn endpoint_forms() {
        let endpoints = |json: &str| one(&format!(r#"[{{"endpoints": {json}}}]"#)).remove(0).endpoints;
        assert_eq!(endpoints(r#"["node-1"]"#), [Endpoint::from_address("node-1")]);
        assert_eq!(endpoints(r#"["node-1:80"]"#)[0].capnproto_address, "node-1:19391");
        assert_eq!(
            endpoints(r#"[{"address": "node-1", "az": "az-1"}]"#),
            [Endpoint { address: "node-1".into(), capnproto_address: "node-1:19391".into(), az: "az-1".into() }]
        );
        assert_eq!(
            endpoints(r#"[{"address": "node-1", "capnproto_address": "node-1:81"}]"#)[0].capnproto_address,
            "node-1:81"
        );
        assert_eq!(endpoints(r#"["[::1]:10901"]"#)[0].capnproto_address, "[:19391");
        assert!(error(r#"[{"endpoints": [{"az": "az-1"}]}]"#).contains("endpoint address must be set"));
        assert!(error(r#"[{"endpoints": [""]}]"#).contains("endpoint address must be set"));
        assert!(error(r#"[{"endpoints": [null]}]"#).contains("endpoint address must be set"));
        assert!(error(r#"[{"endpoints": [5]}]"#).contains("invalid type: integer"));
        assert!(error(r#"[{"endpoints": [["a"]]}]"#).contains("invalid type: sequence"));
        assert!(error(r#"[{"endpoints": [{"address": 5}]}]"#).contains("invalid type: integer"));
    }

    /// Go's decoder: keys match case-insensitively, unknown keys are ignored, null changes
    /// nothing, a repeated key decodes into what is there.
    #[test]
    fn go_decoding_rules() {
        let cfg = one(
            r#"[{"Hashring": "x", "ENDPOINTS": ["a"], "ſhuffle_ſharding_config": {"Shard_Size": 1}, "extra": [1, {"b": null}]}]"#,
        );
        assert_eq!(cfg[0].hashring, "x");
        assert_eq!(cfg[0].endpoints[0].address, "a");
        assert_eq!(cfg[0].shuffle_sharding_config.shard_size, 1);

        // Every key naming a field, exactly or folded, sets it: the last one wins.
        let cfg = one(r#"[{"hashring": "exact", "endpoints": ["a"], "hashring": "later", "HASHRING": "folded"}]"#);
        assert_eq!(cfg[0].hashring, "folded");

        let cfg = one(
            r#"[{"hashring": null, "tenants": null, "endpoints": ["a"], "external_labels": null, "algorithm": null, "shuffle_sharding_config": null}]"#,
        );
        assert_eq!(
            cfg[0],
            HashringConfig { endpoints: vec![Endpoint::from_address("a")], ..HashringConfig::default() }
        );

        // A repeated object keeps the fields the second one leaves out.
        let cfg = one(
            r#"[{"endpoints": ["a"], "shuffle_sharding_config": {"shard_size": 2, "cache_size": 5}, "shuffle_sharding_config": {"cache_size": 9}}]"#,
        );
        let ss = &cfg[0].shuffle_sharding_config;
        assert_eq!((ss.shard_size, ss.cache_size), (2, 9));

        // A repeated array reuses its elements: a string sets only the address of an object
        // endpoint decoded before; a shorter array cuts the slice.
        let cfg = one(r#"[{"endpoints": [{"address": "a", "az": "z"}, "b"], "endpoints": ["c"]}]"#);
        assert_eq!(
            cfg[0].endpoints,
            [Endpoint { address: "c".into(), capnproto_address: "a:19391".into(), az: "z".into() }]
        );

        // External labels are decoded afresh; a null value is the empty string.
        let cfg = one(
            r#"[{"endpoints": ["a"], "external_labels": {"x": "1"}, "external_labels": {"y": null, "z": "2", "z": "3"}}]"#,
        );
        assert_eq!(cfg[0].external_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(), ["y=", "z=3"]);
    }

    #[test]
    fn integers_as_go_reads_an_int() {
        let shard = |v: &str| {
            parse(format!(r#"[{{"endpoints": ["a"], "shuffle_sharding_config": {{"shard_size": {v}}}}}]"#).as_bytes())
                .map(|c| c.unwrap()[0].shuffle_sharding_config.shard_size)
        };
        assert_eq!(shard("3").unwrap(), 3);
        assert_eq!(shard("-3").unwrap(), -3);
        assert_eq!(shard("-0").unwrap(), 0);
        assert_eq!(shard("9223372036854775807").unwrap(), i64::MAX);
        for bad in ["2.0", "1e3", "9223372036854775808", "\"2\"", "true", "[]"] {
            assert!(shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn top_level_null_empty_and_not_an_array() {
        assert_eq!(parse(b"null").unwrap(), None);
        assert_eq!(parse(b" [ ] ").unwrap(), Some(vec![]));
        for bad in ["", "{}", "\"x\"", "[1]", "[{}] x", "[{\"endpoints\": [\"a\"]},]", "\u{feff}[]"] {
            let e = parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("failed to parse configuration file: "), "{bad}: {e}");
            assert!(e.ends_with(": configuration file is not parsable"), "{bad}: {e}");
        }
    }

    #[test]
    fn hostile_input_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(deep.as_bytes()).is_err());
        let deep_object =
            format!(r#"[{{"endpoints": ["a"], "x": {}1{}}}]"#, "{\"a\":".repeat(50_000), "}".repeat(50_000));
        // An unknown key's value is skipped without recursion, however deep (Go refuses nesting
        // past 10000 levels; neither crashes).
        assert_eq!(parse(deep_object.as_bytes()).unwrap().unwrap()[0].endpoints[0].address, "a");
        assert!(parse(b"[{\"endpoints\": [\"a\"]").is_err());
        assert!(parse(b"[{\"endpoints\": [\"a\x00\"]}]").is_err());
        // A lone surrogate escape is refused (Go would read U+FFFD).
        assert!(parse(br#"[{"endpoints": ["a\ud800"]}]"#).is_err());
        // Invalid UTF-8 inside a string is replaced, as Go replaces it.
        let cfg = parse(b"[{\"endpoints\": [\"a\xff\"]}]").unwrap().unwrap();
        assert_eq!(cfg[0].endpoints[0].address, "a\u{fffd}");
    }

    #[test]
    fn files_empty_large_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hashrings.json");
        for empty in ["[]", "null"] {
            std::fs::write(&path, empty).unwrap();
            let e = load_file(&path).unwrap_err().to_string();
            assert_eq!(
                e,
                format!("failed to load configuration file, path: {}: configuration file is empty", path.display())
            );
        }
        std::fs::write(&path, "").unwrap();
        assert!(load_file(&path).unwrap_err().to_string().ends_with("configuration file is not parsable"));

        // A large but legal file (a long list of unknown keys) is read; one past the limit is not.
        let filler = format!(r#"[{{"endpoints": ["a"], "pad": "{}"}}]"#, "x".repeat(1 << 20));
        std::fs::write(&path, &filler).unwrap();
        assert_eq!(load_file(&path).unwrap().0[0].endpoints[0].address, "a");
        let huge = format!(r#"[{{"endpoints": ["a"], "pad": "{}"}}]"#, "x".repeat(MAX_CONFIG_BYTES as usize));
        std::fs::write(&path, &huge).unwrap();
        assert!(load_file(&path).unwrap_err().to_string().contains("larger than"));

        let e = load_file(&dir.path().join("missing.json")).unwrap_err().to_string();
        assert!(e.starts_with("failed to read configuration file"), "{e}");
    }

    #[test]
    fn config_hash_is_thanos_metric_value() {
        // SHA-256("") starts e3 b0 c4 42 98 fc: read little-endian, 0xfc9842c4b0e3.
        assert_eq!(config_hash(b""), 0xfc98_42c4_b0e3_u64 as f64);
        assert!(config_hash(b"[]") < (1u64 << 48) as f64);
        assert_ne!(config_hash(b"[]"), config_hash(b"[ ]"));
    }

    #[test]
    fn serializes_to_what_it_parses() {
        let cfg = one(
            r#"[{"hashring": "a", "tenants": ["t"], "endpoints": [{"address": "r1", "az": "z"}], "shuffle_sharding_config": {"shard_size": 1}}]"#,
        );
        let json = serde_json::to_vec(&cfg).unwrap();
        assert_eq!(parse(&json).unwrap().unwrap(), cfg);
    }
}
