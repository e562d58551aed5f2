//! The store gateway's reads against blocks in a bucket, compared with reading the same blocks
//! from disk: blocks written by our `BlockWriter` (small chunk segments, so chunk refs reach
//! several segment objects) and by `promtool tsdb create-blocks-from openmetrics` (promtool is
//! looked up as testkit does; without it this test fails). Also: the index header is built once
//! and kept, rebuilt when missing or corrupt, neighbouring ranges are read together, and the
//! bucket view follows blocks added, deleted and marked for deletion.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prometheus_client::registry::Registry;
use strata_shipper::Bucket;
use strata_storage::{LabelsRequest, SelectRequest, SeriesChunks, Storage};
use strata_store::bucket::block::{BlockStorage, HEADER_FILENAME};
use strata_store::bucket::{BucketStore, BucketStoreOptions};
use strata_store::Store;
use strata_testkit::promtool::{create_blocks, om_timestamp};
use strata_tsdb::block::meta::ThanosMeta;
use strata_tsdb::block::{Block, BlockCompaction, BlockMeta, BlockWriter, ChunkData};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::matchers::{MatchOp, Matcher};
use strata_tsdb::Labels;
use ulid::Ulid;

const HOUR: i64 = 3_600_000;
/// 2023-11-14T22:00:00Z, a two-hour block boundary.
const START: i64 = 1_699_999_200_000;

/// Writes a block of `n` series over `[min, max)` (a sample every 15 s, chunks of 120) in 16 KiB
/// chunk segments.
fn write_block(dir: &Path, n: usize, min: i64, max: i64) -> PathBuf {
    let id = Ulid::new();
    let mut w = BlockWriter::with_segment_size(dir, id, 16 * 1024).unwrap();
    let mut series: Vec<Labels> = (0..n)
        .map(|i| {
            Labels::from_pairs(&[
                ("__name__", ["http_requests_total", "up", "node_load1"][i % 3]),
                ("instance", &format!("host-{i:04}")),
                ("job", ["api", "node"][i % 2]),
            ])
        })
        .collect();
    series.sort();
    let symbols: BTreeSet<&str> = series.iter().flat_map(|l| l.iter().flat_map(|(n, v)| [n, v])).collect();
    w.add_symbols(symbols).unwrap();
    for (i, labels) in series.iter().enumerate() {
        let mut chunks = Vec::new();
        let mut t = min + (i as i64 % 7) * 1000;
        while t < max {
            let mut app = XorAppender::new();
            let first = t;
            let mut last = t;
            while t < max && app.num_samples() < 120 {
                app.append(t, (i as f64) * 1.5 + (t - min) as f64 / 1000.0);
                last = t;
                t += 15_000;
            }
            chunks.push(ChunkData {
                min_time: first,
                max_time: last,
                encoding: Encoding::Xor,
                data: bytes::Bytes::from(app.into_bytes()),
            });
        }
        w.add_series(labels, &chunks).unwrap();
    }
    w.finish(min, max, BlockCompaction { level: 1, sources: vec![id], ..BlockCompaction::default() }).unwrap();
    dir.join(id.to_string())
}

/// Blocks from promtool: two metrics over four hours, so two two-hour blocks.
fn promtool_blocks(dir: &Path) -> Vec<PathBuf> {
    let mut om = String::new();
    for metric in ["cpu_seconds_total", "memory_bytes"] {
        writeln!(om, "# TYPE {metric} {}", if metric.ends_with("_total") { "counter" } else { "gauge" }).unwrap();
        for host in 0..20 {
            for step in 0..(4 * 240) {
                let t = START + step * 15_000;
                writeln!(om, "{metric}{{host=\"h{host}\",dc=\"eu\"}} {} {}", host * 1000 + step, om_timestamp(t))
                    .unwrap();
            }
        }
    }
    om.push_str("# EOF\n");
    create_blocks(&om, dir)
}

/// A FILESYSTEM bucket at `root`.
fn fs_bucket(root: &Path) -> Bucket {
    let yaml = format!("type: FILESYSTEM\nconfig:\n  directory: {}\n", root.display());
    strata_shipper::parse_objstore_config(&yaml, "test").unwrap().build().unwrap()
}

/// Copies a block into the bucket directory, with `labels` as its Thanos external labels.
fn put_block(root: &Path, block: &Path, labels: &[(&str, &str)]) -> Ulid {
    let mut meta = BlockMeta::read(block).unwrap();
    let dst = root.join(meta.ulid.to_string());
    std::fs::create_dir_all(dst.join("chunks")).unwrap();
    std::fs::copy(block.join("index"), dst.join("index")).unwrap();
    for e in std::fs::read_dir(block.join("chunks")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join("chunks").join(e.file_name())).unwrap();
    }
    meta.thanos = Some(ThanosMeta {
        labels: labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        source: "test".into(),
        ..ThanosMeta::default()
    });
    meta.write(&dst).unwrap();
    meta.ulid
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

fn select(s: &dyn Storage, req: &SelectRequest) -> Vec<SeriesChunks> {
    s.select(req).unwrap().checked().collect::<Result<_, _>>().unwrap()
}

struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    rt: tokio::runtime::Runtime,
    bucket_root: PathBuf,
    data_dir: PathBuf,
    disk: Vec<PathBuf>,
}

fn fixture() -> Fixture {
    let src = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut disk = vec![write_block(src.path(), 600, START, START + 2 * HOUR)];
    disk.extend(promtool_blocks(&src.path().join("promtool")));
    put_block(bucket.path(), &disk[0], &[("source", "strata"), ("replica", "a")]);
    for b in &disk[1..] {
        put_block(bucket.path(), b, &[("source", "promtool")]);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    Fixture {
        bucket_root: bucket.path().to_owned(),
        data_dir: data.path().to_owned(),
        _dirs: vec![src, bucket, data],
        rt,
        disk,
    }
}

impl Fixture {
    fn store(&self) -> BucketStore {
        self.store_with(BucketStoreOptions::default())
    }

    /// A synced store over the fixture's bucket and data dir, with `options` otherwise.
    fn store_with(&self, options: BucketStoreOptions) -> BucketStore {
        let options = BucketStoreOptions {
            data_dir: self.data_dir.clone(),
            ignore_deletion_marks_delay: std::time::Duration::ZERO,
            ..options
        };
        let store =
            BucketStore::new(fs_bucket(&self.bucket_root), options, self.rt.handle().clone(), &mut Registry::default());
        self.rt.block_on(store.sync()).unwrap();
        store
    }
}

/// Every selection, label-names and label-values request over each block gives what the same
/// block read from disk gives.
#[test]
fn blocks_read_from_the_bucket_as_from_disk() {
    let f = fixture();
    let store = f.store();
    let blocks = store.blocks();
    assert_eq!(blocks.len(), f.disk.len());
    let selections: Vec<Vec<Matcher>> = vec![
        vec![m(MatchOp::Equal, "__name__", "up")],
        vec![m(MatchOp::Regex, "__name__", ".+")],
        vec![m(MatchOp::Regex, "instance", "host-00[1-3].*"), m(MatchOp::NotEqual, "job", "api")],
        vec![m(MatchOp::Equal, "__name__", "memory_bytes"), m(MatchOp::NotRegex, "host", "h1.*")],
        vec![m(MatchOp::Regex, "__name__", "up|node_load1|cpu_seconds_total"), m(MatchOp::Equal, "missing", "")],
        vec![m(MatchOp::Equal, "job", "nope")],
        vec![m(MatchOp::NotEqual, "__name__", "")],
    ];
    let ranges = [(i64::MIN, i64::MAX), (START + HOUR, START + HOUR + 60_000), (START + 3 * HOUR, START + 5 * HOUR)];
    for path in &f.disk {
        let disk = Block::open(path).unwrap();
        let id = disk.meta().ulid;
        let block = blocks.iter().find(|b| b.id() == id).expect("block loaded").clone();
        let remote = BlockStorage(block);
        for matchers in &selections {
            for &(mint, maxt) in &ranges {
                let want = disk.select(matchers, mint, maxt).unwrap();
                let got = select(&remote, &SelectRequest::new(matchers.clone(), mint, maxt));
                assert_eq!(got, want, "{id}: {matchers:?} [{mint}, {maxt}]");
                let labels_only = select(
                    &remote,
                    &SelectRequest { skip_chunks: true, ..SelectRequest::new(matchers.clone(), mint, maxt) },
                );
                assert_eq!(labels_only.len(), want.len());
            }
            let req = LabelsRequest::new(matchers.clone(), i64::MIN, i64::MAX);
            assert_eq!(remote.label_names(&req).unwrap().values, disk.label_names(matchers).unwrap(), "{matchers:?}");
            for name in ["__name__", "instance", "host", "job", "missing"] {
                assert_eq!(
                    remote.label_values(name, &req).unwrap().values,
                    disk.label_values(name, matchers).unwrap(),
                    "{name} {matchers:?}"
                );
            }
        }
        let all = LabelsRequest::new(Vec::new(), i64::MIN, i64::MAX);
        assert_eq!(remote.label_names(&all).unwrap().values, disk.label_names(&[]).unwrap());
    }

    // The store: series carry their block's external labels, blocks are merged.
    let up = vec![m(MatchOp::Equal, "__name__", "up")];
    let got = select(&store, &SelectRequest::new(up, i64::MIN, i64::MAX));
    assert_eq!(got.len(), 200);
    assert!(got.iter().all(|s| s.labels.get("replica") == Some("a") && s.labels.get("source") == Some("strata")));
    let cpu = vec![m(MatchOp::Equal, "__name__", "cpu_seconds_total"), m(MatchOp::Equal, "host", "h3")];
    let got = select(&store, &SelectRequest::new(cpu, i64::MIN, i64::MAX));
    assert_eq!(got.len(), 1, "one series across the promtool blocks");
    let samples: usize =
        got[0].chunks.iter().map(|c| strata_tsdb::chunkenc::XorIter::new(&c.data).unwrap().count()).sum();
    assert_eq!(samples, 4 * 240);
    let names = store.label_names(&LabelsRequest::new(Vec::new(), i64::MIN, i64::MAX)).unwrap().values;
    assert_eq!(names, ["__name__", "dc", "host", "instance", "job", "replica", "source"]);
    let sources = store.label_values("source", &LabelsRequest::new(Vec::new(), i64::MIN, i64::MAX)).unwrap().values;
    assert_eq!(sources, ["promtool", "strata"]);
    let only_promtool = vec![m(MatchOp::Regex, "__name__", ".+"), m(MatchOp::Equal, "source", "promtool")];
    assert_eq!(select(&store, &SelectRequest::new(only_promtool, i64::MIN, i64::MAX)).len(), 40);

    let info = store.info();
    assert_eq!(info.component, strata_store::Component::Store);
    assert_eq!(info.min_time, START);
    assert_eq!(info.label_sets.len(), 2);
    // promtool's blocks end a millisecond after their last sample, short of the next block's
    // start, so they are two ranges, as in Thanos.
    assert_eq!(info.tsdb_infos.len(), 3, "{:?}", info.tsdb_infos);
}

/// Reading every series of the block takes a handful of GETs: neighbouring series and chunks
/// are fetched together; read again, postings and series come from the index cache.
#[test]
fn neighbouring_ranges_are_read_together() {
    let f = fixture();
    let store = f.store();
    let before = store.fetch_stats().requests();
    let matchers = vec![m(MatchOp::Equal, "replica", "a"), m(MatchOp::Regex, "__name__", ".+")];
    let req = SelectRequest::new(matchers, i64::MIN, i64::MAX);
    let got = select(&store, &req);
    assert_eq!(got.len(), 600);
    let segments = std::fs::read_dir(f.disk[0].join("chunks")).unwrap().count() as u64;
    let gets = store.fetch_stats().requests() - before;
    // One postings read, one series read, one read per chunk segment.
    assert!(gets <= 2 + segments, "{gets} GETs for {segments} segments");
    assert!(segments > 3, "{segments} segments");
    // Again: postings and series come from the index cache, only chunks are read.
    let before = store.fetch_stats().requests();
    assert_eq!(select(&store, &req), got);
    assert_eq!(store.fetch_stats().requests() - before, segments);
}

/// The header is built from ranged reads once and kept; a restart reads it from disk, a corrupt
/// or missing one is built again, and the block answers the same either way.
#[test]
fn index_header_is_kept_and_rebuilt() {
    let f = fixture();
    let up = SelectRequest::new(vec![m(MatchOp::Equal, "__name__", "up")], i64::MIN, i64::MAX);
    let first = f.store();
    assert_eq!(first.fetch_stats().requests(), 3 * f.disk.len() as u64, "TOC, symbols, postings table per block");
    let want = select(&first, &up);
    drop(first);

    let again = f.store();
    assert_eq!(again.fetch_stats().requests(), 0, "headers read from disk");
    assert_eq!(select(&again, &up), want);
    drop(again);

    let id = BlockMeta::read(&f.disk[0]).unwrap().ulid;
    let header = f.data_dir.join(id.to_string()).join(HEADER_FILENAME);
    let mut bytes = std::fs::read(&header).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&header, &bytes).unwrap();
    std::fs::remove_file(f.data_dir.join(BlockMeta::read(&f.disk[1]).unwrap().ulid.to_string()).join(HEADER_FILENAME))
        .unwrap();
    let rebuilt = f.store();
    assert_eq!(rebuilt.fetch_stats().requests(), 6, "two headers rebuilt");
    assert_eq!(select(&rebuilt, &up), want);
    assert!(std::fs::read(&header).unwrap() != bytes);
}

/// With lazy headers the sync builds the header files but opens none; the first read opens
/// them, a store unloading idle headers closes them (not while a read holds one), the next
/// read opens them again (rebuilding a file found corrupt), and the answers and Info are the
/// eager store's.
#[test]
fn lazy_index_headers_load_on_first_read_and_unload_when_idle() {
    let f = fixture();
    let n = f.disk.len() as u64;
    let lazy = f.store_with(BucketStoreOptions {
        lazy_index_header: true,
        index_header_idle_timeout: std::time::Duration::from_millis(1),
        ..BucketStoreOptions::default()
    });
    assert_eq!(lazy.fetch_stats().requests(), 3 * n, "headers built at sync");
    assert!(lazy.blocks().iter().all(|b| !b.header_loaded()), "none opened at sync");
    assert_eq!(lazy.header_metrics().loads(), 0);
    let eager = f.store();
    assert_eq!(eager.fetch_stats().requests(), 0, "headers kept by the lazy store");
    assert!(eager.blocks().iter().all(|b| b.header_loaded()));
    assert_eq!(lazy.info(), eager.info(), "Info from meta.json alone");
    assert!(lazy.blocks().iter().all(|b| !b.header_loaded()));

    let reqs = [
        SelectRequest::new(vec![m(MatchOp::Equal, "__name__", "up")], i64::MIN, i64::MAX),
        SelectRequest::new(vec![m(MatchOp::Regex, "instance", "host-00[1-3].*")], START, START + HOUR),
    ];
    let names = LabelsRequest::new(vec![], i64::MIN, i64::MAX);
    let answers = |s: &BucketStore| {
        let selected: Vec<Vec<SeriesChunks>> = reqs.iter().map(|r| select(s, r)).collect();
        (selected, s.label_names(&names).unwrap().values, s.label_values("job", &names).unwrap().values)
    };
    let want = answers(&eager);
    assert_eq!(answers(&lazy), want);
    assert_eq!(lazy.header_metrics().loads(), n, "each header opened once");
    assert!(lazy.blocks().iter().all(|b| b.header_loaded()));

    // A read holding a header keeps it open.
    let block = lazy.blocks()[0].clone();
    let held = block.header().unwrap();
    strata_testkit::wait_for("idle headers to be unloaded", std::time::Duration::from_secs(10), || {
        lazy.unload_idle_headers();
        match lazy.blocks().iter().filter(|b| b.header_loaded()).count() {
            1 => Ok(()),
            k => Err(format!("{k} headers open")),
        }
    })
    .unwrap();
    assert!(block.header_loaded(), "held by a read");
    assert_eq!(lazy.header_metrics().unloads(), n - 1);
    drop(held);
    strata_testkit::wait_for("the last header to be unloaded", std::time::Duration::from_secs(10), || {
        if lazy.unload_idle_headers() == 1 {
            Ok(())
        } else {
            Err("still open".into())
        }
    })
    .unwrap();
    assert_eq!(lazy.header_metrics().unloads(), n);

    // Reopened on the next read; a header file corrupted meanwhile is built again.
    let path = f.data_dir.join(block.id().to_string()).join(HEADER_FILENAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(answers(&lazy), want);
    assert_eq!(lazy.header_metrics().loads(), 2 * n);
    assert_eq!(lazy.header_metrics().load_failures(), 0);
    assert!(std::fs::read(&path).unwrap() != bytes, "rebuilt");

    // A header that cannot be built fails the read and counts as a failed load.
    strata_testkit::wait_for("the header to be unloaded", std::time::Duration::from_secs(10), || {
        lazy.unload_idle_headers();
        if block.header_loaded() {
            Err("still open".into())
        } else {
            Ok(())
        }
    })
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    let index = f.bucket_root.join(block.id().to_string()).join("index");
    let index_bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, vec![0u8; index_bytes.len()]).unwrap();
    assert!(BlockStorage(block.clone()).select(&reqs[0]).is_err());
    assert_eq!(lazy.header_metrics().load_failures(), 1);
    assert!(!block.header_loaded());
}

/// Blocks added, deleted and marked for deletion are picked up at the next sync; a block
/// whose index is garbage is skipped, the others still answer.
#[test]
fn the_view_follows_the_bucket() {
    let f = fixture();
    let store = f.store();
    let all =
        || select(&store, &SelectRequest::new(vec![m(MatchOp::Regex, "__name__", ".+")], i64::MIN, i64::MAX)).len();
    assert_eq!(all(), 640);

    let src = tempfile::tempdir().unwrap();
    let new = write_block(src.path(), 30, START + 4 * HOUR, START + 6 * HOUR);
    let new_id = put_block(&f.bucket_root, &new, &[("source", "strata"), ("replica", "b")]);
    f.rt.block_on(store.sync()).unwrap();
    assert_eq!(all(), 670);
    assert!(f.data_dir.join(new_id.to_string()).join(HEADER_FILENAME).is_file());

    // Marked for deletion (the mark's delay is zero here).
    let promtool_id = BlockMeta::read(&f.disk[1]).unwrap().ulid;
    let mark = format!(r#"{{"id":"{promtool_id}","deletion_time":1,"version":1}}"#);
    std::fs::write(f.bucket_root.join(promtool_id.to_string()).join("deletion-mark.json"), mark).unwrap();
    // Deleted.
    std::fs::remove_dir_all(f.bucket_root.join(new_id.to_string())).unwrap();
    f.rt.block_on(store.sync()).unwrap();
    assert_eq!(store.blocks().len(), f.disk.len() - 1);
    assert!(!f.data_dir.join(new_id.to_string()).exists(), "local files of a dropped block are removed");
    assert!(!f.data_dir.join(promtool_id.to_string()).exists());

    // A garbage index: the block is not loaded, the rest answers.
    let bad = write_block(src.path(), 5, START, START + 2 * HOUR);
    let bad_id = put_block(&f.bucket_root, &bad, &[("source", "bad")]);
    std::fs::write(
        f.bucket_root.join(bad_id.to_string()).join("index"),
        b"not an index at all, but long enough to have a TOC of 52 bytes",
    )
    .unwrap();
    f.rt.block_on(store.sync()).unwrap();
    assert!(store.blocks().iter().all(|b| b.id() != bad_id));
    assert_eq!(store.blocks().len(), f.disk.len() - 1);
    assert!(all() > 600);
}

/// Bad input in the bucket: stray objects, a meta.json that does not parse, a partial upload,
/// a truncated index, a chunk segment shorter than meta.json says, one truncated where meta.json
/// says nothing, a meta.json that lies about the time range, a block of a downsampling
/// resolution Thanos does not make (not served). Nothing panics; the blocks that
/// cannot be used are skipped with a log line and a metric, a read reaching a damaged chunk
/// fails with an error naming the object, and every other read answers as before.
#[test]
fn bad_input_is_skipped_or_an_error() {
    let f = fixture();
    let root = &f.bucket_root;
    let src = tempfile::tempdir().unwrap();
    std::fs::write(root.join("garbage.txt"), b"\x00\x01 not a block").unwrap();
    std::fs::create_dir_all(root.join("not-a-ulid")).unwrap();
    std::fs::write(root.join("not-a-ulid/meta.json"), b"{}").unwrap();
    let garbage_meta = Ulid::new();
    std::fs::create_dir_all(root.join(garbage_meta.to_string())).unwrap();
    std::fs::write(root.join(garbage_meta.to_string()).join("meta.json"), b"{\"ulid\": 12").unwrap();
    let partial = Ulid::new();
    std::fs::create_dir_all(root.join(partial.to_string()).join("chunks")).unwrap();
    std::fs::write(root.join(partial.to_string()).join("index"), b"half an index").unwrap();

    let block = |labels: &[(&str, &str)]| {
        let dir = write_block(src.path(), 20, START, START + 2 * HOUR);
        (put_block(root, &dir, labels), dir)
    };
    let truncate = |path: &Path, keep: usize| {
        let b = std::fs::read(path).unwrap();
        std::fs::write(path, &b[..keep.min(b.len())]).unwrap();
    };
    let (truncated_index, _) = block(&[("source", "truncated-index")]);
    let index = root.join(truncated_index.to_string()).join("index");
    let len = std::fs::metadata(&index).unwrap().len() as usize;
    truncate(&index, len / 2);
    let (short_listed, dir) = block(&[("source", "short-listed")]);
    let mut meta = BlockMeta::read(&root.join(short_listed.to_string())).unwrap();
    let segment = root.join(short_listed.to_string()).join("chunks/000001");
    let size = std::fs::metadata(dir.join("chunks/000001")).unwrap().len();
    if let Some(t) = meta.thanos.as_mut() {
        t.files = vec![strata_tsdb::block::meta::ThanosFile {
            rel_path: "chunks/000001".into(),
            size_bytes: Some(size),
            hash: None,
        }];
    }
    meta.write(&root.join(short_listed.to_string())).unwrap();
    truncate(&segment, 100);
    let (short_chunks, _) = block(&[("source", "short-chunks")]);
    truncate(&root.join(short_chunks.to_string()).join("chunks/000001"), 100);
    let (odd_resolution, _) = block(&[("source", "odd-resolution")]);
    let mut meta = BlockMeta::read(&root.join(odd_resolution.to_string())).unwrap();
    if let Some(t) = meta.thanos.as_mut() {
        t.downsample.resolution = 60_000;
    }
    meta.write(&root.join(odd_resolution.to_string())).unwrap();
    let (lying, _) = block(&[("source", "lying")]);
    let mut meta = BlockMeta::read(&root.join(lying.to_string())).unwrap();
    (meta.min_time, meta.max_time) = (0, 1000);
    meta.write(&root.join(lying.to_string())).unwrap();

    let mut registry = Registry::default();
    let options = BucketStoreOptions { data_dir: f.data_dir.clone(), ..BucketStoreOptions::default() };
    let store = BucketStore::new(fs_bucket(root), options, f.rt.handle().clone(), &mut registry);
    f.rt.block_on(store.sync()).unwrap();
    let loaded: BTreeSet<Ulid> = store.blocks().iter().map(|b| b.id()).collect();
    assert!(!loaded.contains(&truncated_index) && !loaded.contains(&short_listed));
    assert!(!loaded.contains(&odd_resolution), "only the resolutions 0, 5m and 1h are served");
    assert!(loaded.contains(&short_chunks) && loaded.contains(&lying));
    assert_eq!(loaded.len(), f.disk.len() + 2);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("thanos_bucket_store_block_load_failures_total 2"), "{text}");
    assert!(text.contains("thanos_blocks_meta_synced{state=\"corrupted-meta-json\"} 1"), "{text}");
    assert!(text.contains("thanos_blocks_meta_synced{state=\"no-meta-json\"} 1"), "{text}");

    // Reads that reach the damaged chunks fail, naming the segment; the others answer.
    let name = |v: &str| vec![m(MatchOp::Regex, "__name__", ".+"), m(MatchOp::Equal, "source", v)];
    let err = store.select(&SelectRequest::new(name("short-chunks"), i64::MIN, i64::MAX)).expect_err("an error");
    assert!(err.to_string().contains(&format!("{short_chunks}/chunks/000001")), "{err}");
    let fine = select(&store, &SelectRequest::new(name("strata"), i64::MIN, i64::MAX));
    assert_eq!(fine.len(), 600);
    let labels_only = select(
        &store,
        &SelectRequest { skip_chunks: true, ..SelectRequest::new(name("short-chunks"), i64::MIN, i64::MAX) },
    );
    assert_eq!(labels_only.len(), 20, "the index is whole");
    // The lying block is only asked for its claimed range, where no chunk is.
    assert!(select(&store, &SelectRequest::new(name("lying"), 0, 1000)).is_empty());
    assert!(select(&store, &SelectRequest::new(name("lying"), START, START + HOUR)).is_empty());
}

/// The relabel selector serves only the blocks it keeps; `hashmod` on `__block_id` shards the
/// blocks over stores, each block in exactly one.
#[test]
fn the_selector_picks_blocks() {
    let f = fixture();
    let store = |yaml: &str| {
        let options = BucketStoreOptions {
            data_dir: f.data_dir.clone(),
            selector: strata_shipper::relabel::Relabel::parse(yaml).unwrap(),
            ..BucketStoreOptions::default()
        };
        let store =
            BucketStore::new(fs_bucket(&f.bucket_root), options, f.rt.handle().clone(), &mut Registry::default());
        f.rt.block_on(store.sync()).unwrap();
        store.blocks().iter().map(|b| b.id()).collect::<BTreeSet<Ulid>>()
    };
    let promtool = store("- action: keep\n  source_labels: [source]\n  regex: promtool\n");
    assert_eq!(promtool.len(), f.disk.len() - 1);
    let mut all = BTreeSet::new();
    for shard in 0..2 {
        let got = store(&format!(
            "- action: hashmod\n  source_labels: [__block_id]\n  target_label: shard\n  modulus: 2\n\
             - action: keep\n  source_labels: [shard]\n  regex: \"{shard}\"\n"
        ));
        assert!(got.is_disjoint(&all));
        all.extend(got);
    }
    assert_eq!(all.len(), f.disk.len());
}

/// The chunk pool bounds the chunk bytes reads hold: a read that needs more than it has fails
/// naming the limit; bytes go back once the answer is dropped.
#[test]
fn the_chunk_pool_bounds_chunk_bytes() {
    let f = fixture();
    let store = |pool: u64| {
        let options =
            BucketStoreOptions { data_dir: f.data_dir.clone(), chunk_pool_size: pool, ..BucketStoreOptions::default() };
        let store =
            BucketStore::new(fs_bucket(&f.bucket_root), options, f.rt.handle().clone(), &mut Registry::default());
        f.rt.block_on(store.sync()).unwrap();
        store
    };
    let req = SelectRequest::new(vec![m(MatchOp::Regex, "__name__", ".+")], i64::MIN, i64::MAX);
    let small = store(4096);
    let err = small.select(&req).expect_err("over the pool");
    assert_eq!(err.to_string(), "chunk pool bytes limit of 4096 exceeded");
    assert_eq!(small.chunk_pool_used(), 0);
    let big = store(64 << 20);
    let set = big.select(&req).unwrap();
    assert!(big.chunk_pool_used() > 0, "the first chunks are held");
    let all: Vec<SeriesChunks> = set.collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 640);
    assert!(big.chunk_pool_used() > 0, "held while the chunks live");
    drop(all);
    assert_eq!(big.chunk_pool_used(), 0);
}

/// Writes the chunks of a 5m-resolution block over `[min, max)` with the series of `raw` (a
/// block this file wrote), one downsampled chunk each holding count and sum (the aggregates'
/// values are not looked at here); the resolution goes in once the block is in the bucket.
fn write_downsampled_block(dir: &Path, raw: &Path, min: i64, max: i64) -> strata_tsdb::Result<PathBuf> {
    use strata_tsdb::chunkenc::{AggrChunk, AggrType, SubChunk};
    const RES: i64 = 300_000;
    let series = Block::open(raw)?.select(&[], i64::MIN, i64::MAX)?;
    let id = Ulid::new();
    let mut w = BlockWriter::new(dir, id)?;
    let symbols: BTreeSet<&str> = series.iter().flat_map(|s| s.labels.iter().flat_map(|(n, v)| [n, v])).collect();
    w.add_symbols(symbols)?;
    for s in &series {
        let mut aggr = AggrChunk::default();
        for t in [AggrType::Count, AggrType::Sum] {
            let mut app = XorAppender::new();
            (min..max).step_by(RES as usize).for_each(|start| app.append(start + RES - 1, 20.0));
            aggr.set(t, Some(SubChunk { encoding: Encoding::Xor, data: bytes::Bytes::from(app.into_bytes()) }));
        }
        let chunk = ChunkData {
            min_time: min + RES - 1,
            max_time: max - 1,
            encoding: Encoding::Aggr,
            data: aggr.encode().into(),
        };
        w.add_series(&s.labels, &[chunk])?;
    }
    w.finish(min, max, BlockCompaction { level: 1, sources: vec![id], ..BlockCompaction::default() })?;
    Ok(dir.join(id.to_string()))
}

/// Two raw blocks of two hours and a 5m block of the first: a raw read gets raw chunks only; a
/// read allowing 5m gets the downsampled chunks for the first two hours and the second raw
/// block's chunks for the rest (Thanos's `getFor`); the block loads with its resolution.
#[test]
fn downsampled_blocks_are_picked_by_resolution() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let raw = write_block(src.path(), 6, START, START + 2 * HOUR);
    let later = write_block(src.path(), 6, START + 2 * HOUR, START + 4 * HOUR);
    let five = write_downsampled_block(src.path(), &raw, START, START + 2 * HOUR).unwrap();
    let labels = [("source", "ds")];
    put_block(root.path(), &raw, &labels);
    put_block(root.path(), &later, &labels);
    // put_block writes the Thanos section: the resolution goes in after.
    let five_id = put_block(root.path(), &five, &labels);
    let mut meta = BlockMeta::read(&root.path().join(five_id.to_string())).unwrap();
    meta.thanos.as_mut().unwrap().downsample.resolution = 300_000;
    meta.write(&root.path().join(five_id.to_string())).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut registry = Registry::default();
    let options = BucketStoreOptions { data_dir: data.path().to_owned(), ..BucketStoreOptions::default() };
    let store = BucketStore::new(fs_bucket(root.path()), options, rt.handle().clone(), &mut registry);
    rt.block_on(store.sync()).unwrap();
    assert_eq!(store.blocks().len(), 3);

    let up = vec![m(MatchOp::Equal, "__name__", "up")];
    let req = SelectRequest::new(up, START, START + 4 * HOUR);
    let raw_read = select(&store, &req);
    assert!(!raw_read.is_empty());
    for s in &raw_read {
        assert!(s.chunks.iter().all(|c| c.encoding == Encoding::Xor), "{}", s.labels);
        assert!(s.chunks.first().unwrap().min_time < START + HOUR);
    }
    let five_read = select(&store, &SelectRequest { max_resolution_window: 300_000, ..req.clone() });
    assert_eq!(five_read.len(), raw_read.len());
    for s in &five_read {
        let (aggr, raw): (Vec<&ChunkData>, Vec<&ChunkData>) =
            s.chunks.iter().partition(|c| c.encoding == Encoding::Aggr);
        assert_eq!(aggr.len(), 1, "{}", s.labels);
        assert!(aggr[0].max_time < START + 2 * HOUR);
        assert!(!raw.is_empty() && raw.iter().all(|c| c.min_time >= START + 2 * HOUR), "{}: {raw:?}", s.labels);
    }
}
