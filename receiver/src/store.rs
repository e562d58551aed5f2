//! The receiver as a StoreAPI store: each tenant's TSDB with its external labels
//! (`<tenant label>="<tenant>"` and the `--label`s), merged.

use std::sync::Arc;

use strata_storage::{LabelsAnswer, LabelsRequest, SelectRequest, SeriesSet, Storage, StorageError};
use strata_store::local::LocalStore;
use strata_store::{merged_labels, merged_select, Component, Store, StoreInfo};
use strata_tsdb::labels::Labels;

use crate::tenants::MultiTsdb;

/// Every tenant of a receiver as one store (what Thanos receive serves over gRPC).
pub struct ReceiverStore {
    tenants: Arc<MultiTsdb>,
}

impl ReceiverStore {
    pub fn new(tenants: Arc<MultiTsdb>) -> Self {
        ReceiverStore { tenants }
    }

    /// Each open tenant's TSDB as a store with its external labels, sorted by tenant. Built per
    /// call: tenants appear with their first write.
    fn stores(&self) -> Vec<LocalStore> {
        let labels = self.tenants.labels();
        self.tenants
            .all()
            .into_iter()
            .map(|(tenant, db)| {
                let external: Vec<(String, String)> = labels.of(&tenant).into_iter().collect();
                LocalStore::for_db(db, Labels::from_pairs(&external), Component::Receive)
            })
            .collect()
    }

    fn storages(&self) -> impl Iterator<Item = Arc<dyn Storage>> {
        self.stores().into_iter().map(|s| Arc::new(s) as Arc<dyn Storage>)
    }
}

impl Storage for ReceiverStore {
    /// Tenants whose labels a matcher rejects are not read (see `ExternalLabels`).
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        merged_select(self.storages(), req)
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        merged_labels(self.storages(), req, |s| s.label_names(req))
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        merged_labels(self.storages(), req, |s| s.label_values(name, req))
    }
}

impl Store for ReceiverStore {
    /// Thanos receive's answer: each tenant's label set and TSDB, the time range spanning them
    /// (all of time while there is no tenant).
    fn info(&self) -> StoreInfo {
        let mut info = StoreInfo {
            component: Component::Receive,
            label_sets: Vec::new(),
            min_time: i64::MAX,
            max_time: i64::MIN,
            tsdb_infos: Vec::new(),
        };
        for store in self.stores() {
            let tenant = store.info();
            info.min_time = info.min_time.min(tenant.min_time);
            info.max_time = info.max_time.max(tenant.max_time);
            for set in tenant.label_sets {
                if !info.label_sets.contains(&set) {
                    info.label_sets.push(set);
                }
            }
            info.tsdb_infos.extend(tenant.tsdb_infos);
        }
        if info.min_time > info.max_time {
            (info.min_time, info.max_time) = (i64::MIN, i64::MAX);
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use strata_storage::ShardInfo;
    use strata_tsdb::db::DbOptions;
    use strata_tsdb::matchers::{MatchOp, Matcher};

    use super::*;
    use crate::tenants::TenantLabels;

    fn tenants() -> (tempfile::TempDir, Arc<MultiTsdb>) {
        let dir = tempfile::tempdir().unwrap();
        let labels = TenantLabels {
            external: BTreeMap::from([("replica".to_owned(), "a".to_owned())]),
            tenant_label_name: "tenant_id".into(),
        };
        let tsdbs = Arc::new(MultiTsdb::new(dir.path(), DbOptions::default(), labels, None));
        for (tenant, instances, t) in [("a", ["1", "3"], 1000), ("b", ["2", "3"], 2000)] {
            let db = tsdbs.get_or_open(tenant).unwrap();
            let mut app = db.appender();
            for i in instances {
                app.append(&[("__name__", "up"), ("instance", i)], [(t, 1.0)]).unwrap();
            }
            app.commit().unwrap();
        }
        (dir, tsdbs)
    }

    fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value).unwrap()
    }

    #[test]
    fn tenants_are_stores_with_their_labels() {
        let (_dir, tsdbs) = tenants();
        let store = ReceiverStore::new(tsdbs);
        let up = vec![m(MatchOp::Equal, "__name__", "up")];
        let select = |req: &SelectRequest| -> Vec<Labels> {
            let set = store.select(req).unwrap().checked();
            set.map(|s| s.unwrap().labels).collect()
        };
        let all = select(&SelectRequest::new(up.clone(), 0, 3000));
        let want: Vec<Labels> = [("1", "a"), ("2", "b"), ("3", "a"), ("3", "b")]
            .iter()
            .map(|(i, t)| {
                Labels::from_pairs(&[("__name__", "up"), ("instance", i), ("replica", "a"), ("tenant_id", t)])
            })
            .collect();
        assert_eq!(all, want);

        let only_b = [up.clone(), vec![m(MatchOp::Equal, "tenant_id", "b")]].concat();
        assert_eq!(
            select(&SelectRequest::new(only_b, 0, 3000)),
            want[1..2].iter().chain(&want[3..]).cloned().collect::<Vec<_>>()
        );
        let first = select(&SelectRequest { limit: 3, ..SelectRequest::new(up.clone(), 0, 3000) });
        assert_eq!(first, want[..3]);

        // Without the tenant label the same series of both tenants is one.
        let dedup = select(&SelectRequest {
            without_replica_labels: vec!["tenant_id".into()],
            ..SelectRequest::new(up.clone(), 0, 3000)
        });
        assert_eq!(dedup.len(), 3);

        let mut union = Vec::new();
        for shard_index in 0..2 {
            let shard = ShardInfo { shard_index, total_shards: 2, by: false, labels: Vec::new() };
            union.extend(select(&SelectRequest { shard: Some(shard), ..SelectRequest::new(up.clone(), 0, 3000) }));
        }
        union.sort();
        assert_eq!(union, want);

        let names = store.label_names(&LabelsRequest::new(Vec::new(), 0, 3000)).unwrap();
        assert_eq!(names.values, ["__name__", "instance", "replica", "tenant_id"]);
        let tenants = store.label_values("tenant_id", &LabelsRequest::new(up.clone(), 0, 3000)).unwrap();
        assert_eq!(tenants.values, ["a", "b"]);
        let in_a = store
            .label_values("instance", &LabelsRequest::new(vec![m(MatchOp::Equal, "tenant_id", "a")], 0, 3000))
            .unwrap();
        assert_eq!(in_a.values, ["1", "3"]);
    }

    #[test]
    fn info_lists_every_tenant() {
        let (_dir, tsdbs) = tenants();
        let store = ReceiverStore::new(tsdbs.clone());
        let info = store.info();
        assert_eq!(info.component, Component::Receive);
        let set = |t: &str| Labels::from_pairs(&[("replica", "a"), ("tenant_id", t)]);
        assert_eq!(info.label_sets, [set("a"), set("b")]);
        assert_eq!((info.min_time, info.max_time), (1000, i64::MAX));
        let tsdb: Vec<_> = info.tsdb_infos.iter().map(|t| (t.labels.clone(), t.min_time)).collect();
        assert_eq!(tsdb, [(set("a"), 1000), (set("b"), 2000)]);

        // A new tenant shows up with its first write.
        let db = tsdbs.get_or_open("c").unwrap();
        let mut app = db.appender();
        app.append(&[("__name__", "up")], [(500, 1.0)]).unwrap();
        app.commit().unwrap();
        let info = store.info();
        assert_eq!(info.label_sets.len(), 3);
        assert_eq!(info.min_time, 500);
    }
}
