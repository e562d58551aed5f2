//! A local TSDB (or any storage that can tell its time range) with external labels, as a store.

use std::sync::Arc;

use strata_storage::{LabelsAnswer, LabelsRequest, SelectRequest, SeriesSet, Storage, StorageError};
use strata_tsdb::db::Db;
use strata_tsdb::labels::Labels;

use crate::external::ExternalLabels;
use crate::{Component, Store, StoreInfo, TsdbInfo};

/// The oldest and newest sample time (ms) a storage may hold.
pub type TimeRange = Box<dyn Fn() -> (i64, i64) + Send + Sync>;

/// A storage with external labels, describing itself as one TSDB: its label set, its time range
/// (asked anew on every call) and one `tsdb_infos` entry.
pub struct LocalStore {
    storage: ExternalLabels,
    time_range: TimeRange,
    component: Component,
}

impl LocalStore {
    pub fn new(
        storage: Arc<dyn Storage>,
        time_range: TimeRange,
        external_labels: Labels,
        component: Component,
    ) -> Self {
        LocalStore { storage: ExternalLabels::new(storage, external_labels), time_range, component }
    }

    /// A TSDB as a store; see [`db_time_range`].
    pub fn for_db(db: Arc<Db>, external_labels: Labels, component: Component) -> Self {
        let of = db.clone();
        LocalStore::new(db, Box::new(move || db_time_range(&of)), external_labels, component)
    }

    pub fn external_labels(&self) -> &Labels {
        self.storage.labels()
    }
}

/// A TSDB's time range as Thanos's TSDB store reports it: from its oldest block's start (or the
/// head's oldest sample; `i64::MAX` while empty) to `i64::MAX`. The end is open because the TSDB
/// takes writes: a querier caches the range between Info calls and prunes stores by it, so a
/// bound at the newest sample would hide samples written since.
pub fn db_time_range(db: &Db) -> (i64, i64) {
    let head = db.head().min_time();
    let blocks = db.blocks().first().map_or(i64::MAX, |b| b.meta().min_time);
    (blocks.min(head), i64::MAX)
}

impl Storage for LocalStore {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        self.storage.select(req)
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        self.storage.label_names(req)
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        self.storage.label_values(name, req)
    }
}

impl Store for LocalStore {
    fn info(&self) -> StoreInfo {
        let (min_time, max_time) = (self.time_range)();
        let labels = self.storage.labels().clone();
        // As Thanos: a store without external labels announces no label set and no TSDB.
        let (label_sets, tsdb_infos) = if labels.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            (vec![labels.clone()], vec![TsdbInfo { labels, min_time, max_time }])
        };
        StoreInfo { component: self.component, label_sets, min_time, max_time, tsdb_infos }
    }
}

#[cfg(test)]
mod tests {
    use strata_tsdb::db::DbOptions;
    use strata_tsdb::head::HeadOptions;
    use strata_tsdb::matchers::{MatchOp, Matcher};

    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn info_follows_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let opts =
            DbOptions { head: HeadOptions { chunk_range: HOUR, ..HeadOptions::default() }, ..DbOptions::default() };
        let db = Arc::new(Db::open(dir.path(), opts).unwrap());
        let ext = Labels::from_pairs(&[("tenant_id", "a")]);
        let store = LocalStore::for_db(db.clone(), ext.clone(), Component::Receive);
        let empty = store.info();
        assert_eq!((empty.min_time, empty.max_time), (i64::MAX, i64::MAX));
        assert_eq!(empty.label_sets, std::slice::from_ref(&ext));
        assert_eq!(empty.component, Component::Receive);

        for t in (HOUR..5 * HOUR).step_by(60_000) {
            let mut app = db.appender();
            app.append(&[("__name__", "up")], [(t, 1.0)]).unwrap();
            app.commit().unwrap();
        }
        let info = store.info();
        assert_eq!((info.min_time, info.max_time), (HOUR, i64::MAX));
        assert_eq!(info.tsdb_infos, [TsdbInfo { labels: ext.clone(), min_time: HOUR, max_time: i64::MAX }]);
        while db.cut_block().unwrap() {}
        assert!(!db.blocks().is_empty());
        assert_eq!(store.info().min_time, HOUR, "from the oldest block");

        let up = vec![Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()];
        let got: Vec<_> =
            store.select(&SelectRequest::new(up, 0, 5 * HOUR)).unwrap().checked().collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels, Labels::from_pairs(&[("__name__", "up"), ("tenant_id", "a")]));
    }

    #[test]
    fn no_external_labels_no_label_sets() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path(), DbOptions::default()).unwrap());
        let info = LocalStore::for_db(db, Labels::empty(), Component::Sidecar).info();
        assert!(info.label_sets.is_empty() && info.tsdb_infos.is_empty());
    }
}
