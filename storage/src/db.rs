//! The local TSDB as a [`Storage`]. Block series are read as the set is consumed; the head's
//! matching series are copied when `select` is called, so that a block cut during a long read
//! cannot move samples out of the snapshot's view (see `Db::select`). Raw data only: the
//! resolution and aggregate fields of a request do not apply.

use strata_tsdb::db::Db;

use crate::{LabelsAnswer, LabelsRequest, SelectRequest, SeriesSet, Storage, StorageError};

impl Storage for Db {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        let series = Db::select(self, &req.matchers, req.min_time, req.max_time, req.skip_chunks)?;
        Ok(SeriesSet::from_local(series, req))
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let mut names = Db::label_names(self, &req.matchers, req.min_time, req.max_time)?;
        req.truncate(&mut names);
        Ok(names.into())
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let mut values = Db::label_values(self, name, &req.matchers, req.min_time, req.max_time)?;
        req.truncate(&mut values);
        Ok(values.into())
    }
}

#[cfg(test)]
mod tests {
    use strata_tsdb::db::DbOptions;
    use strata_tsdb::head::HeadOptions;
    use strata_tsdb::labels::Labels;
    use strata_tsdb::matchers::{MatchOp, Matcher};

    use super::*;
    use crate::{SeriesChunks, ShardInfo};

    const HOUR: i64 = 3_600_000;

    /// A TSDB with 30 `up` series over 5 hours (blocks cut from the head, the rest in the
    /// head) and one `down` series.
    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let opts =
            DbOptions { head: HeadOptions { chunk_range: HOUR, ..HeadOptions::default() }, ..DbOptions::default() };
        let db = Db::open(dir.path(), opts).unwrap();
        for t in (0..5 * HOUR).step_by(60_000) {
            let mut app = db.appender();
            for i in 0..30 {
                app.append(&[("__name__", "up"), ("instance", &format!("host-{i:02}"))], [(t, i as f64)]).unwrap();
            }
            app.append(&[("__name__", "down"), ("instance", "host-00")], [(t, 0.0)]).unwrap();
            app.commit().unwrap();
            while db.cut_block().unwrap() {}
        }
        assert!(db.blocks().len() >= 2, "{} blocks", db.blocks().len());
        (dir, db)
    }

    fn up() -> Vec<Matcher> {
        vec![Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()]
    }

    fn select(db: &Db, req: &SelectRequest) -> Vec<SeriesChunks> {
        Storage::select(db, req).unwrap().checked().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn select_is_sorted_and_spans_blocks_and_head() {
        let (_dir, db) = db();
        let all = select(&db, &SelectRequest::new(up(), 0, 5 * HOUR));
        assert_eq!(all.len(), 30);
        for s in &all {
            assert!(s.chunks.first().is_some_and(|c| c.min_time == 0), "{}: from the first block", s.labels);
            assert!(s.chunks.last().is_some_and(|c| c.max_time == 5 * HOUR - 60_000), "{}: to the head", s.labels);
        }
        let everything = select(&db, &SelectRequest::new(Vec::new(), i64::MIN, i64::MAX));
        assert_eq!(everything.len(), 31);
    }

    #[test]
    fn limit_keeps_the_first_series() {
        let (_dir, db) = db();
        let all = select(&db, &SelectRequest::new(up(), 0, 5 * HOUR));
        let first = select(&db, &SelectRequest { limit: 4, ..SelectRequest::new(up(), 0, 5 * HOUR) });
        assert_eq!(first, all[..4]);
        let names =
            Storage::label_names(&db, &LabelsRequest { limit: 1, ..LabelsRequest::new(Vec::new(), 0, 5 * HOUR) });
        assert_eq!(names.unwrap().values, ["__name__"]);
        let values = Storage::label_values(
            &db,
            "instance",
            &LabelsRequest { limit: 2, ..LabelsRequest::new(up(), 0, 5 * HOUR) },
        );
        assert_eq!(values.unwrap().values, ["host-00", "host-01"]);
    }

    #[test]
    fn skip_chunks_gives_the_same_series_without_chunks() {
        let (_dir, db) = db();
        for (mint, maxt) in [(0, 5 * HOUR), (HOUR / 2, HOUR / 2), (4 * HOUR + 1, 5 * HOUR), (6 * HOUR, 7 * HOUR)] {
            let full = select(&db, &SelectRequest::new(Vec::new(), mint, maxt));
            let labels_only =
                select(&db, &SelectRequest { skip_chunks: true, ..SelectRequest::new(Vec::new(), mint, maxt) });
            let labels = |set: &[SeriesChunks]| set.iter().map(|s| s.labels.clone()).collect::<Vec<Labels>>();
            assert_eq!(labels(&labels_only), labels(&full), "[{mint}, {maxt}]");
            assert!(labels_only.iter().all(|s| s.chunks.is_empty()));
        }
    }

    #[test]
    fn shards_split_the_series() {
        let (_dir, db) = db();
        let all = select(&db, &SelectRequest::new(up(), 0, 5 * HOUR));
        let mut union = Vec::new();
        for shard_index in 0..3 {
            let shard = ShardInfo { shard_index, total_shards: 3, by: true, labels: vec!["instance".into()] };
            let part =
                select(&db, &SelectRequest { shard: Some(shard.clone()), ..SelectRequest::new(up(), 0, 5 * HOUR) });
            assert!(!part.is_empty() && part.len() < all.len(), "shard {shard_index}: {} series", part.len());
            assert!(part.iter().all(|s| shard.matches(&s.labels)));
            union.extend(part);
        }
        union.sort_by(|a, b| a.labels.cmp(&b.labels));
        assert_eq!(union, all);
    }

    #[test]
    fn a_set_outlives_the_call_and_moves_to_another_thread() {
        let (_dir, db) = db();
        let req = SelectRequest::new(up(), 0, 5 * HOUR);
        let want = select(&db, &req);
        let set = Storage::select(&db, &req).unwrap();
        // A series created after the call and samples past its range do not show; a block cut
        // meanwhile (which truncates the head) waits for the set to be read.
        let mut app = db.appender();
        app.append(&[("__name__", "up"), ("instance", "host-99")], [(5 * HOUR, 1.0)]).unwrap();
        app.append(&[("__name__", "up"), ("instance", "host-00")], [(7 * HOUR, 1.0)]).unwrap();
        app.commit().unwrap();
        let blocks = db.blocks().len();
        std::thread::scope(|scope| {
            let cut = scope.spawn(|| while db.cut_block().unwrap() {});
            let got = scope.spawn(move || set.checked().collect::<Result<Vec<_>, _>>()).join().unwrap().unwrap();
            assert_eq!(got, want);
            cut.join().unwrap();
        });
        assert!(db.blocks().len() > blocks, "a block was cut");
    }
}
