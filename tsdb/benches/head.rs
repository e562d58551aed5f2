//! Head append throughput: batches shaped like remote-write requests (2,000 series with one
//! sample each), into a head alone and through the WAL as the receiver does it; the label
//! hash every append looks its series up by; and opening a full head (480 samples per series)
//! from the snapshot of a clean shutdown and by WAL replay; selecting every series of a full
//! head with its chunks, as a query or the StoreAPI reads the head.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::head::{Head, HeadOptions};
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::{MatchOp, Matcher};

const SERIES: usize = 2_000;

fn label_sets() -> Vec<Vec<(String, String)>> {
    (0..SERIES)
        .map(|i| {
            vec![
                ("__name__".into(), format!("http_request_duration_seconds_bucket_{}", i % 20)),
                ("cluster".into(), "eu-west-1".into()),
                ("instance".into(), format!("10.0.{}.{}:9100", i / 250, i % 250)),
                ("job".into(), "kubernetes-pods".into()),
                ("le".into(), format!("{}", (i % 12) as f64 * 0.25)),
                ("namespace".into(), "monitoring".into()),
                ("pod".into(), format!("api-{:05}", i / 12)),
            ]
        })
        .collect()
}

fn bench_append(c: &mut Criterion) {
    let sets = label_sets();
    let pairs: Vec<Vec<(&str, &str)>> =
        sets.iter().map(|s| s.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()).collect();
    let mut g = c.benchmark_group("head_append");
    g.throughput(Throughput::Elements(SERIES as u64));

    // Existing series, no WAL: the lookup and chunk-append cost.
    let head = Head::new(HeadOptions::default());
    let mut t = 0i64;
    g.bench_function("existing_series_no_wal", |b| {
        b.iter(|| {
            t += 15_000;
            let mut app = head.appender();
            for (i, p) in pairs.iter().enumerate() {
                app.append(p, [(t, i as f64)]).unwrap();
            }
            app.commit(None).unwrap()
        })
    });

    // Existing series through the WAL (snappy on), as a remote-write request is handled.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    let mut t = 0i64;
    g.bench_function("existing_series_with_wal", |b| {
        b.iter(|| {
            t += 15_000;
            let mut app = db.appender();
            for (i, p) in pairs.iter().enumerate() {
                app.append(p, [(t, i as f64)]).unwrap();
            }
            app.commit().unwrap()
        })
    });

    // New series every time: creation, postings and the series record.
    g.bench_function("new_series_no_wal", |b| {
        b.iter_batched(
            || Head::new(HeadOptions::default()),
            |head| {
                let mut app = head.appender();
                for p in &pairs {
                    app.append(p, [(1, 1.0)]).unwrap();
                }
                app.commit(None).unwrap();
                head
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_hash(c: &mut Criterion) {
    let sets = label_sets();
    let pairs: Vec<Vec<(&str, &str)>> =
        sets.iter().map(|s| s.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()).collect();
    let mut g = c.benchmark_group("labels_hash");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("hash_pairs", |b| {
        b.iter(|| pairs.iter().map(|p| Labels::hash_pairs(p)).fold(0, u64::wrapping_add))
    });
    g.finish();
}

/// A TSDB directory whose head holds 480 samples at 15 s for every series, closed cleanly
/// (with or without a snapshot).
fn full_head(pairs: &[Vec<(&str, &str)>], snapshot_on_shutdown: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), DbOptions { snapshot_on_shutdown, ..DbOptions::default() }).unwrap();
    for step in 0..480i64 {
        let mut app = db.appender();
        for (i, p) in pairs.iter().enumerate() {
            app.append(p, [(step * 15_000, (step as f64) * i as f64)]).unwrap();
        }
        app.commit().unwrap();
    }
    db.close().unwrap();
    dir
}

/// Copies the directory tree `from` into `to`.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn bench_open(c: &mut Criterion) {
    let sets = label_sets();
    let pairs: Vec<Vec<(&str, &str)>> =
        sets.iter().map(|s| s.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()).collect();
    let mut g = c.benchmark_group("head_open");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.sample_size(20);
    // An open changes its directory (a new WAL segment, the snapshot removed), so each one
    // gets a fresh copy.
    for (name, snapshot) in [("from_snapshot", true), ("wal_replay", false)] {
        let pristine = full_head(&pairs, snapshot);
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    copy_tree(pristine.path(), dir.path());
                    dir
                },
                |dir| {
                    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
                    assert_eq!(db.wal_replay().snapshot_series, if snapshot { SERIES as u64 } else { 0 });
                    (db, dir)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn bench_select(c: &mut Criterion) {
    let sets = label_sets();
    let pairs: Vec<Vec<(&str, &str)>> =
        sets.iter().map(|s| s.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()).collect();
    let dir = full_head(&pairs, true);
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    let job = [Matcher::new(MatchOp::Equal, "job", "kubernetes-pods").unwrap()];
    let mut g = c.benchmark_group("head_select");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("all_series_with_chunks", |b| {
        b.iter(|| {
            let got = db.head().select(&job, i64::MIN, i64::MAX, false).unwrap().count();
            assert_eq!(got, SERIES);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_append, bench_hash, bench_open, bench_select);
criterion_main!(benches);
