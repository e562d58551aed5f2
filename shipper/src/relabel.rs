//! Prometheus relabelling (`relabel_configs`) for the block selector of the store gateway and
//! the compactor (`--selector.relabel-config`): each block's external labels plus `__block_id`
//! (its ULID) go through the rules; a block is used when any label is left, as Thanos's
//! `LabelShardedMetaFilter` decides. Actions and defaults are Prometheus 3.x's
//! (model/relabel/relabel.go): `replace`, `keep`, `drop`, `keepequal`, `dropequal`, `hashmod`,
//! `labelmap`, `labeldrop`, `labelkeep`, `lowercase`, `uppercase`.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

/// The label that carries a block's ULID through the selector.
pub const BLOCK_ID_LABEL: &str = "__block_id";

/// A relabel config that does not parse or is not valid.
#[derive(Debug, thiserror::Error)]
#[error("relabel config: {0}")]
pub struct RelabelError(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    source_labels: Vec<String>,
    separator: Option<String>,
    regex: Option<String>,
    modulus: Option<u64>,
    target_label: Option<String>,
    replacement: Option<String>,
    action: Option<Action>,
}

/// One rule, checked and with its regex compiled (anchored, as Prometheus anchors it).
#[derive(Debug, Clone)]
struct Rule {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    /// The regex as written (unanchored), for [`Relabel::to_json`].
    regex_text: String,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
}

/// A list of relabel rules.
#[derive(Debug, Clone, Default)]
pub struct Relabel {
    rules: Vec<Rule>,
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl Relabel {
    /// Parses a YAML list of relabel configs (empty text: no rules).
    pub fn parse(yaml: &str) -> Result<Relabel, RelabelError> {
        if yaml.trim().is_empty() {
            return Ok(Relabel::default());
        }
        let raw: Vec<RawRule> = serde_norway::from_str(yaml).map_err(|e| RelabelError(e.to_string()))?;
        let rules = raw.into_iter().map(Rule::new).collect::<Result<_, _>>()?;
        Ok(Relabel { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The labels after every rule; `None` when a rule drops them.
    pub fn process(&self, labels: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
        let mut labels = labels.clone();
        for rule in &self.rules {
            if !rule.apply(&mut labels) {
                return None;
            }
        }
        Some(labels)
    }

    /// The rules as Go marshals Prometheus's `[]*relabel.Config` to JSON, defaults filled in
    /// (what Thanos records in a rewritten block's `relabels_applied`).
    pub fn to_json(&self) -> serde_json::Value {
        let rules = self.rules.iter().map(|r| {
            let mut o = serde_json::Map::new();
            if !r.source_labels.is_empty() {
                o.insert("source_labels".into(), r.source_labels.clone().into());
            }
            if !r.separator.is_empty() {
                o.insert("separator".into(), r.separator.clone().into());
            }
            o.insert("regex".into(), r.regex_text.clone().into());
            if r.modulus != 0 {
                o.insert("modulus".into(), r.modulus.into());
            }
            if !r.target_label.is_empty() {
                o.insert("target_label".into(), r.target_label.clone().into());
            }
            if !r.replacement.is_empty() {
                o.insert("replacement".into(), r.replacement.clone().into());
            }
            o.insert("action".into(), r.action.name().into());
            serde_json::Value::Object(o)
        });
        serde_json::Value::Array(rules.collect())
    }

    /// Whether a block with these external labels and ULID is selected.
    pub fn selects(&self, external: &BTreeMap<String, String>, id: &str) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        let mut labels = external.clone();
        labels.insert(BLOCK_ID_LABEL.to_owned(), id.to_owned());
        self.process(&labels).is_some_and(|l| !l.is_empty())
    }
}

impl Action {
    /// Prometheus's name of the action.
    fn name(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

impl Rule {
    fn new(raw: RawRule) -> Result<Rule, RelabelError> {
        let action = raw.action.unwrap_or(Action::Replace);
        let regex_text = raw.regex.unwrap_or_else(|| "(.*)".to_owned());
        let regex = Regex::new(&format!("^(?s:{regex_text})$"))
            .map_err(|e| RelabelError(format!("invalid regex {regex_text:?}: {e}")))?;
        let target_label = raw.target_label.unwrap_or_default();
        let rule = Rule {
            source_labels: raw.source_labels,
            separator: raw.separator.unwrap_or_else(|| ";".to_owned()),
            regex,
            regex_text,
            modulus: raw.modulus.unwrap_or(0),
            replacement: raw.replacement.unwrap_or_else(|| "$1".to_owned()),
            action,
            target_label,
        };
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && rule.target_label.is_empty() {
            return Err(RelabelError(format!(
                "relabel configuration for {action:?} action requires 'target_label' value"
            )));
        }
        if matches!(
            action,
            Action::HashMod | Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual
        ) && !valid_label_name(&rule.target_label)
        {
            return Err(RelabelError(format!(
                "{:?} is invalid 'target_label' for {action:?} action",
                rule.target_label
            )));
        }
        if action == Action::HashMod && rule.modulus == 0 {
            return Err(RelabelError("relabel configuration for hashmod requires non-zero modulus".into()));
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (!rule.source_labels.is_empty() || !rule.target_label.is_empty())
        {
            return Err(RelabelError(format!("{action:?} action requires only 'regex', and no other fields")));
        }
        Ok(rule)
    }

    /// Applies the rule; false when it drops the labels.
    fn apply(&self, labels: &mut BTreeMap<String, String>) -> bool {
        let value: String = self
            .source_labels
            .iter()
            .map(|n| labels.get(n).map_or("", String::as_str))
            .collect::<Vec<_>>()
            .join(&self.separator);
        match self.action {
            Action::Keep => return self.regex.is_match(&value),
            Action::Drop => return !self.regex.is_match(&value),
            Action::KeepEqual => return labels.get(&self.target_label).map_or("", String::as_str) == value,
            Action::DropEqual => return labels.get(&self.target_label).map_or("", String::as_str) != value,
            Action::Replace => {
                let Some(caps) = self.regex.captures(&value) else { return true };
                let mut target = String::new();
                caps.expand(&self.target_label, &mut target);
                if !valid_label_name(&target) {
                    return true;
                }
                let mut res = String::new();
                caps.expand(&self.replacement, &mut res);
                if res.is_empty() {
                    labels.remove(&target);
                } else {
                    labels.insert(target, res);
                }
            }
            Action::Lowercase => {
                labels.insert(self.target_label.clone(), value.to_lowercase());
            }
            Action::Uppercase => {
                labels.insert(self.target_label.clone(), value.to_uppercase());
            }
            Action::HashMod => {
                let hash = Md5::digest(value.as_bytes());
                // The last 8 bytes, as Prometheus has always used.
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&hash[8..]);
                let m = u64::from_be_bytes(tail) % self.modulus;
                labels.insert(self.target_label.clone(), m.to_string());
            }
            Action::LabelMap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter(|(n, _)| self.regex.is_match(n))
                    .map(|(n, v)| (self.regex.replace_all(n, self.replacement.as_str()).into_owned(), v.clone()))
                    .collect();
                labels.extend(mapped);
            }
            Action::LabelDrop => labels.retain(|n, _| !self.regex.is_match(n)),
            Action::LabelKeep => labels.retain(|n, _| self.regex.is_match(n)),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn keep_drop_and_replace() {
        let r = Relabel::parse(
            r#"
- action: keep
  source_labels: [cluster]
  regex: eu-.*
- action: drop
  source_labels: [env, cluster]
  separator: "/"
  regex: dev/.*
- source_labels: [cluster]
  regex: "(\\w+)-(\\w+)"
  target_label: region
  replacement: "${2}_$1"
"#,
        )
        .unwrap();
        assert!(r.process(&labels(&[("cluster", "us-1")])).is_none());
        assert!(r.process(&labels(&[("cluster", "eu-1"), ("env", "dev")])).is_none());
        assert_eq!(
            r.process(&labels(&[("cluster", "eu-west"), ("env", "prod")])),
            Some(labels(&[("cluster", "eu-west"), ("env", "prod"), ("region", "west_eu")]))
        );
        // Anchored: "xeu-1" is not kept.
        assert!(r.process(&labels(&[("cluster", "xeu-1")])).is_none());
    }

    /// Prometheus's TestRelabel hashmod case: "baz" modulo 1000 is 976.
    #[test]
    fn hashmod_as_prometheus() {
        let r =
            Relabel::parse("- source_labels: [c]\n  target_label: d\n  modulus: 1000\n  action: hashmod\n").unwrap();
        assert_eq!(r.process(&labels(&[("c", "baz")])), Some(labels(&[("c", "baz"), ("d", "976")])));
    }

    #[test]
    fn selector_shards_blocks() {
        let shard = |i: u64| {
            Relabel::parse(&format!(
                "- action: hashmod\n  source_labels: [\"__block_id\"]\n  target_label: shard\n  modulus: 3\n\
                 - action: keep\n  source_labels: [shard]\n  regex: \"{i}\"\n"
            ))
            .unwrap()
        };
        let ids: Vec<String> = (0..30).map(|_| ulid::Ulid::new().to_string()).collect();
        let ext = labels(&[("replica", "a")]);
        for id in &ids {
            let n = (0..3).filter(|&i| shard(i).selects(&ext, id)).count();
            assert_eq!(n, 1, "{id} is in exactly one shard");
        }
        assert!(Relabel::parse("").unwrap().selects(&ext, &ids[0]));
        let drop_all = Relabel::parse("- action: labeldrop\n  regex: .*\n").unwrap();
        assert!(!drop_all.selects(&ext, &ids[0]), "no label left: not selected");
    }

    #[test]
    fn bad_configs() {
        for bad in [
            "- action: hashmod\n  target_label: x\n",
            "- action: replace\n  regex: a\n",
            "- action: keep\n  regex: \"(\"\n",
            "- action: explode\n",
            "- action: labeldrop\n  regex: a\n  target_label: b\n",
            "- unknown_field: 1\n",
            "not: a list\n",
        ] {
            assert!(Relabel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn configs_marshal_as_go_marshals_them() {
        let r = Relabel::parse("- source_labels: [a, b]\n  target_label: c\n- action: hashmod\n  source_labels: [a]\n  target_label: h\n  modulus: 3\n  separator: ''\n- action: labeldrop\n  regex: tmp_.*\n").unwrap();
        assert_eq!(
            r.to_json(),
            serde_json::json!([
                {"source_labels": ["a", "b"], "separator": ";", "regex": "(.*)", "target_label": "c", "replacement": "$1", "action": "replace"},
                {"source_labels": ["a"], "regex": "(.*)", "modulus": 3, "target_label": "h", "replacement": "$1", "action": "hashmod"},
                {"separator": ";", "regex": "tmp_.*", "replacement": "$1", "action": "labeldrop"},
            ])
        );
        assert_eq!(Relabel::default().to_json(), serde_json::json!([]));
    }
}
