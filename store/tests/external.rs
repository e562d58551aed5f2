//! External labels against their definition: the answer of [`ExternalLabels`] must equal "add the
//! labels, then sort" (series ending up with equal labels joined), for random label sets that
//! make many series prefixes of others, with several external labels, series carrying labels
//! named like external ones, and replica labels left out.

mod mem;

use std::collections::BTreeMap;
use std::sync::Arc;

use mem::{chunk, collect, labels, MemStorage};
use proptest::prelude::*;
use strata_storage::{LabelsRequest, SelectRequest, SeriesChunks, ShardInfo, Storage, StorageError};
use strata_store::external::ExternalLabels;
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::{MatchOp, Matcher};

/// Few names and values, so that prefixes and shared labels are common.
const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

fn label_set() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((0..NAMES.len(), 0u8..3), 0..5)
}

fn to_labels(pairs: &[(usize, u8)], value_prefix: &str) -> Labels {
    let pairs: Vec<(&str, String)> = pairs.iter().map(|&(n, v)| (NAMES[n], format!("{value_prefix}{v}"))).collect();
    Labels::from_pairs(&pairs)
}

/// Every series matches it (and it is on no external label).
fn all() -> Matcher {
    Matcher::new(MatchOp::Regex, "__name__", ".*").unwrap()
}

/// What the answer must be: each series with `without` and the external names removed and the
/// kept external labels added, sorted, equal label sets joined (chunks in time order).
fn expected(series: &[SeriesChunks], ext: &Labels, without: &[String]) -> Vec<SeriesChunks> {
    let mut out: BTreeMap<Labels, Vec<_>> = BTreeMap::new();
    for s in series {
        let mut pairs: Vec<(&str, &str)> =
            s.labels.iter().filter(|(n, _)| ext.get(n).is_none() && !without.iter().any(|w| w == n)).collect();
        pairs.extend(ext.iter().filter(|(n, _)| !without.iter().any(|w| w == n)));
        out.entry(Labels::from_pairs(&pairs)).or_default().extend(s.chunks.iter().cloned());
    }
    out.into_iter()
        .map(|(labels, mut chunks)| {
            chunks.sort_by_key(|c| c.min_time);
            SeriesChunks { labels, chunks }
        })
        .collect()
}

fn store(series: Vec<SeriesChunks>, ext: Labels) -> (Vec<SeriesChunks>, ExternalLabels) {
    let mem = MemStorage::new(series);
    let held = mem.series().to_vec();
    (held, ExternalLabels::new(Arc::new(mem), ext))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn series_are_labelled_and_sorted_as_if_sorted_after(
        sets in prop::collection::vec(label_set(), 0..40),
        ext in prop::collection::vec((0..NAMES.len(), 0u8..2), 1..4),
        without in prop::collection::vec(0..NAMES.len(), 0..3),
    ) {
        // Distinct, non-overlapping chunks, so that joined series keep every chunk unchanged.
        let series: Vec<SeriesChunks> = sets
            .iter()
            .enumerate()
            .map(|(i, pairs)| SeriesChunks { labels: to_labels(pairs, "v"), chunks: vec![chunk(i as i64 * 10_000, 3)] })
            .filter(|s| !s.labels.is_empty())
            .collect();
        let ext = to_labels(&ext, "x");
        let without: Vec<String> = without.iter().map(|&n| NAMES[n].to_owned()).collect();
        let (held, store) = store(series, ext.clone());
        let want = expected(&held, &ext, &without);
        let req = SelectRequest {
            without_replica_labels: without.clone(),
            ..SelectRequest::new(vec![all()], i64::MIN, i64::MAX)
        };
        let got = collect(store.select(&req).unwrap());
        prop_assert_eq!(&got, &want);

        // Label names and values are those of the series served.
        let labels_req = LabelsRequest {
            without_replica_labels: without.clone(),
            ..LabelsRequest::new(vec![all()], i64::MIN, i64::MAX)
        };
        let mut names: Vec<String> = want.iter().flat_map(|s| s.labels.iter().map(|(n, _)| n.to_owned())).collect();
        names.sort();
        names.dedup();
        prop_assert_eq!(store.label_names(&labels_req).unwrap().values, names);
        for name in NAMES {
            let mut values: Vec<String> = want.iter().filter_map(|s| s.labels.get(name).map(str::to_owned)).collect();
            values.sort();
            values.dedup();
            prop_assert_eq!(store.label_values(name, &labels_req).unwrap().values, values, "values of {}", name);
        }

        // A matcher on an external label: checked against its value, not the series'.
        if let Some((name, value)) = ext.iter().next() {
            let on = |v: &str| SelectRequest {
                without_replica_labels: without.clone(),
                ..SelectRequest::new(vec![all(), Matcher::new(MatchOp::Equal, name, v).unwrap()], i64::MIN, i64::MAX)
            };
            prop_assert_eq!(collect(store.select(&on(value)).unwrap()), want);
            prop_assert!(collect(store.select(&on("other")).unwrap()).is_empty());
        }
    }
}

fn sample_store() -> ExternalLabels {
    let series = (0..30)
        .map(|i| SeriesChunks {
            labels: labels(&[("__name__", "up"), ("instance", &format!("host-{i:02}")), ("job", "node")]),
            chunks: vec![chunk(i * 1000, 2)],
        })
        .collect();
    store(series, labels(&[("replica", "a"), ("tenant_id", "t1")])).1
}

fn up() -> Vec<Matcher> {
    vec![Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()]
}

#[test]
fn limit_and_shard_apply_to_the_labels_served() {
    let store = sample_store();
    let all = collect(store.select(&SelectRequest::new(up(), i64::MIN, i64::MAX)).unwrap());
    assert_eq!(all.len(), 30);
    assert!(all.iter().all(|s| s.labels.get("tenant_id") == Some("t1") && s.labels.get("replica") == Some("a")));
    let first =
        collect(store.select(&SelectRequest { limit: 5, ..SelectRequest::new(up(), i64::MIN, i64::MAX) }).unwrap());
    assert_eq!(first, all[..5]);
    let mut union = Vec::new();
    for shard_index in 0..3 {
        let shard = ShardInfo { shard_index, total_shards: 3, by: false, labels: Vec::new() };
        let part = collect(
            store
                .select(&SelectRequest { shard: Some(shard.clone()), ..SelectRequest::new(up(), i64::MIN, i64::MAX) })
                .unwrap(),
        );
        // By the served labels: the external ones are part of the hash.
        assert!(part.iter().all(|s| s.labels.hash() % 3 == shard_index));
        union.extend(part);
    }
    union.sort_by(|a, b| a.labels.cmp(&b.labels));
    assert_eq!(union, all);
}

#[test]
fn requests_only_on_external_labels_are_refused() {
    let store = sample_store();
    let on_tenant = vec![Matcher::new(MatchOp::Equal, "tenant_id", "t1").unwrap()];
    match store.select(&SelectRequest::new(on_tenant.clone(), 0, 1)) {
        Err(StorageError::InvalidArgument(m)) => assert_eq!(m, "no matchers specified (excluding external labels)"),
        other => panic!("{other:?}"),
    }
    // Not matching the external value is an empty answer, not an error.
    let other_tenant = vec![Matcher::new(MatchOp::Equal, "tenant_id", "t2").unwrap()];
    assert!(collect(store.select(&SelectRequest::new(other_tenant, 0, 1)).unwrap()).is_empty());
    // Label values of an external label: its value, with or without other matchers.
    let values = |matchers: Vec<Matcher>| {
        store.label_values("tenant_id", &LabelsRequest::new(matchers, i64::MIN, i64::MAX)).unwrap().values
    };
    assert_eq!(values(Vec::new()), ["t1"]);
    assert_eq!(values(on_tenant), ["t1"]);
    assert_eq!(values(up()), ["t1"]);
    assert!(values(vec![Matcher::new(MatchOp::Equal, "__name__", "down").unwrap()]).is_empty());
}
