//! Grouping as Thanos's `DefaultGrouper`: blocks of equal external labels and resolution form a
//! group and are compacted together; blocks of different groups never are. With
//! `--deduplication.replica-label` the replica labels are removed from the blocks' labels first
//! (Thanos's `ReplicaLabelRemover`), so the replicas of one stream land in one group and their
//! overlapping blocks are merged vertically.

use std::collections::BTreeMap;

use strata_shipper::resolution;
use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::labels::Labels;

/// The blocks of one stream at one resolution, sorted by min time (then ULID).
#[derive(Debug, Clone)]
pub struct Group {
    /// Thanos's group key, `<resolution>@<labels hash>`, used in logs and metric labels.
    pub key: String,
    pub labels: BTreeMap<String, String>,
    pub resolution: i64,
    pub metas: Vec<BlockMeta>,
}

/// Thanos's `DefaultGroupKey`: the resolution and Prometheus's `labels.Hash` of the external
/// labels.
pub fn group_key(resolution: i64, labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    format!("{resolution}@{}", Labels::hash_pairs(&pairs))
}

/// Removes the replica labels from a block's external labels. A block left without labels
/// gets the first replica label with the value `deduped`, as Thanos does, so that its stream
/// still has a name.
pub fn remove_replica_labels(meta: &mut BlockMeta, replica_labels: &[String]) {
    let Some(first) = replica_labels.first() else { return };
    let Some(thanos) = meta.thanos.as_mut() else { return };
    let before = thanos.labels.len();
    for l in replica_labels {
        thanos.labels.remove(l);
    }
    if thanos.labels.is_empty() && before > 0 {
        thanos.labels.insert(first.clone(), "deduped".to_owned());
    }
}

/// Sorts blocks into groups, in group-key order.
pub fn group_blocks(metas: Vec<BlockMeta>) -> Vec<Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for m in metas {
        let labels = m.thanos.as_ref().map(|t| t.labels.clone()).unwrap_or_default();
        let res = resolution(&m);
        let key = group_key(res, &labels);
        groups
            .entry(key.clone())
            .or_insert_with(|| Group { key, labels, resolution: res, metas: Vec::new() })
            .metas
            .push(m);
    }
    let mut out: Vec<Group> = groups.into_values().collect();
    for g in &mut out {
        g.metas.sort_by(|a, b| a.min_time.cmp(&b.min_time).then(a.ulid.cmp(&b.ulid)));
    }
    out
}

#[cfg(test)]
mod tests {
    use strata_tsdb::block::meta::ThanosMeta;

    use super::*;

    fn meta(id: u128, res: i64, labels: &[(&str, &str)]) -> BlockMeta {
        let mut thanos = ThanosMeta {
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ..ThanosMeta::default()
        };
        thanos.downsample.resolution = res;
        let mut m = crate::test_meta(id, id as i64 * 10, id as i64 * 10 + 10);
        m.thanos = Some(thanos);
        m
    }

    #[test]
    fn group_key_as_thanos() {
        // Prometheus's labels.Hash of {a="1"}: XXH64 over "a\xff1\xff".
        let key = group_key(0, &BTreeMap::from([("a".to_owned(), "1".to_owned())]));
        let want = Labels::from_pairs(&[("a", "1")]).hash();
        assert_eq!(key, format!("0@{want}"));
        assert_eq!(group_key(300_000, &BTreeMap::new()), format!("300000@{}", Labels::empty().hash()));
    }

    #[test]
    fn replicas_join_one_group_after_label_removal() {
        let replica = vec!["replica".to_owned()];
        let mut metas = vec![
            meta(1, 0, &[("cluster", "eu"), ("replica", "a")]),
            meta(2, 0, &[("cluster", "eu"), ("replica", "b")]),
            meta(3, 300_000, &[("cluster", "eu"), ("replica", "a")]),
            meta(4, 0, &[("cluster", "us"), ("replica", "a")]),
            meta(5, 0, &[("replica", "a")]),
        ];
        let without = group_blocks(metas.clone());
        assert_eq!(without.len(), 5);
        for m in &mut metas {
            remove_replica_labels(m, &replica);
        }
        let groups = group_blocks(metas);
        let sizes: BTreeMap<String, Vec<u128>> =
            groups.iter().map(|g| (g.key.clone(), g.metas.iter().map(|m| m.ulid.0).collect())).collect();
        let eu = BTreeMap::from([("cluster".to_owned(), "eu".to_owned())]);
        assert_eq!(sizes[&group_key(0, &eu)], vec![1, 2]);
        assert_eq!(sizes[&group_key(300_000, &eu)], vec![3]);
        let deduped = BTreeMap::from([("replica".to_owned(), "deduped".to_owned())]);
        assert_eq!(sizes[&group_key(0, &deduped)], vec![5]);
        assert_eq!(groups.len(), 4);
    }

    #[test]
    fn no_replica_labels_change_nothing() {
        let mut m = meta(1, 0, &[("replica", "a")]);
        remove_replica_labels(&mut m, &[]);
        assert_eq!(m.thanos.unwrap().labels.len(), 1);
    }
}
