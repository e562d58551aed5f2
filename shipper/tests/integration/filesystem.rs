//! A FILESYSTEM bucket end to end: ship promtool blocks, list and inspect them, download one
//! back into something promtool opens, and the fetcher's filters.

use std::path::Path;
use std::time::Duration;

use strata_shipper::markers::{DeletionMark, DELETION_MARK_FILENAME};
use strata_shipper::{download_block, parse_objstore_config, read_block_range, tools, Bucket, MetaFetcher, Shipper};
use strata_tsdb::block::meta::BlockMeta;
use ulid::Ulid;

use strata_testkit::promtool::{path_arg, promtool};

use crate::common::*;

fn fs_bucket(dir: &Path, prefix: &str) -> Bucket {
    let yaml = format!("type: FILESYSTEM\nconfig:\n  directory: {}\nprefix: {prefix}\n", dir.display());
    parse_objstore_config(&yaml, "fs.yml").expect("config").build().expect("bucket")
}

fn id_of(block: &Path) -> String {
    block.file_name().and_then(|n| n.to_str()).expect("block dir name").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_bucket_end_to_end() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tsdb = tmp.path().join("tsdb");
    let blocks = promtool_blocks(&tsdb, 1_700_006_400, 5, 3);
    assert_eq!(blocks.len(), 3, "5h of data makes three 2h-aligned blocks");
    let empty = copy_block(&blocks[0], &tsdb, |m| m.stats = Default::default());
    let compacted = copy_block(&blocks[0], &tsdb, |m| m.compaction.level = 2);

    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, "/tenant-a/");
    let ext = labels(&[("replica", "0"), ("tenant_id", "a")]);
    let shipper = Shipper::new(bucket.clone(), &tsdb, ext.clone(), "receive").expect("shipper");
    let stats = shipper.sync().await.expect("sync");
    assert_eq!((stats.uploaded, stats.skipped, stats.already_in_bucket), (3, 2, 0), "{stats:?}");

    let ids: Vec<String> = blocks.iter().map(|b| id_of(b)).collect();
    for (block, id) in blocks.iter().zip(&ids) {
        // The prefix is a directory level of the bucket.
        let on_disk = bucket_dir.join("tenant-a").join(id);
        let mut want = local_files(block);
        let meta_size = std::fs::metadata(on_disk.join("meta.json")).expect("meta.json uploaded").len();
        let listed = bucket_files(&bucket, id).await;
        want.insert("meta.json".into(), meta_size);
        assert_eq!(listed, want, "objects of {id}");
        let meta = BlockMeta::read(&on_disk).expect("uploaded meta parses");
        let t = meta.thanos.expect("thanos section");
        assert_eq!(t.labels, ext);
        assert_eq!(t.source, "receive");
    }
    for skipped in [&empty, &compacted] {
        assert!(!bucket_dir.join("tenant-a").join(id_of(skipped)).exists());
        assert!(!shipper.is_uploaded(Ulid::from_string(&id_of(skipped)).expect("ulid")));
    }
    assert_eq!(state_uploaded(&tsdb), ids, "state file lists the shipped blocks oldest first");
    assert!(ids.iter().all(|id| shipper.is_uploaded(Ulid::from_string(id).expect("ulid"))));
    let m = shipper.metrics();
    assert_eq!(m.uploads_total.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(m.dir_syncs_total.load(std::sync::atomic::Ordering::Relaxed), 1);

    // ls: one row per block with RFC 3339 times, labels and source.
    let mut out = Vec::new();
    tools::bucket_ls(&bucket, &mut out).await.expect("ls");
    let ls = String::from_utf8(out).expect("utf8");
    let lines: Vec<&str> = ls.lines().collect();
    assert!(lines[0].starts_with("ULID") && lines[0].contains("SAMPLES") && lines[0].ends_with("SOURCE"), "{ls}");
    for (i, block) in blocks.iter().enumerate() {
        let meta = BlockMeta::read(block).expect("meta");
        let row = lines[i + 1];
        assert!(row.starts_with(&ids[i]), "rows oldest first: {ls}");
        for cell in [tools::rfc3339_ms(meta.min_time), meta.stats.num_samples.to_string(), "receive".into()] {
            assert!(row.contains(&cell), "row {row:?} lacks {cell:?}");
        }
        assert!(row.contains("replica=\"0\",tenant_id=\"a\""), "{row}");
    }
    assert!(ls.contains("\n3 blocks; 0 partial uploads, 0 marked for deletion"), "{ls}");

    // inspect: the stored meta.json and every object with its size.
    let mut out = Vec::new();
    tools::bucket_inspect(&bucket, Ulid::from_string(&ids[0]).expect("ulid"), &mut out).await.expect("inspect");
    let inspect = String::from_utf8(out).expect("utf8");
    let index_size = std::fs::metadata(blocks[0].join("index")).expect("index").len();
    assert!(inspect.contains("\"source\": \"receive\""), "{inspect}");
    assert!(
        inspect.lines().any(|l| l.trim_start().starts_with("index") && l.trim_end().ends_with(&index_size.to_string())),
        "{inspect}"
    );
    assert!(inspect.contains("chunks/000001"), "{inspect}");
    let missing = tools::bucket_inspect(&bucket, Ulid::new(), &mut Vec::new()).await;
    assert!(missing.is_err_and(|e| e.to_string().contains("not found")));

    // Download: the block comes back whole and promtool opens it.
    let dl = tmp.path().join("download");
    let id0 = Ulid::from_string(&ids[0]).expect("ulid");
    let got = download_block(&bucket, id0, &dl, 2).await.expect("download");
    assert_eq!(got, dl.join(&ids[0]));
    assert_eq!(local_files(&got), local_files(&blocks[0]));
    for rel in local_files(&blocks[0]).keys() {
        assert_eq!(
            std::fs::read(got.join(rel)).expect("downloaded"),
            std::fs::read(blocks[0].join(rel)).expect("local"),
            "{rel}"
        );
    }
    let analysis = promtool(&["tsdb", "analyze", path_arg(&dl), &ids[0]]);
    assert!(analysis.contains(&ids[0]), "{analysis}");

    let index = std::fs::read(blocks[0].join("index")).expect("index");
    let range = read_block_range(&bucket, id0, "index", 4..20).await.expect("range");
    assert_eq!(&range[..], &index[4..20]);

    // Fetcher filters: a deletion mark hides a block, a directory without meta.json is partial,
    // the consistency delay hides fresh uploads except the compactor's.
    let id1 = Ulid::from_string(&ids[1]).expect("ulid");
    let mark =
        DeletionMark { id: id1, version: 1, details: "test".into(), deletion_time: chrono::Utc::now().timestamp() };
    let mark_json = serde_json::to_vec(&mark).expect("mark json");
    bucket.put_bytes(&format!("{id1}/{DELETION_MARK_FILENAME}"), mark_json.into()).await.expect("put mark");
    let partial = Ulid::new();
    bucket.put_bytes(&format!("{partial}/index"), index.clone().into()).await.expect("put partial");
    let compactor_block = Ulid::new();
    let mut cmeta = BlockMeta::read(&blocks[2]).expect("meta");
    cmeta.ulid = compactor_block;
    let mut t = cmeta.thanos.take().unwrap_or_default();
    t.source = "compactor".into();
    t.labels = ext.clone();
    cmeta.thanos = Some(t);
    bucket.put_bytes(&format!("{compactor_block}/meta.json"), cmeta.to_json().into()).await.expect("put meta");

    let fetched = MetaFetcher::new(bucket.clone()).with_concurrency(2).fetch().await.expect("fetch");
    let visible: Vec<Ulid> = fetched.metas.keys().copied().collect();
    let mut want = vec![id0, Ulid::from_string(&ids[2]).expect("ulid"), compactor_block];
    want.sort();
    assert_eq!(visible, want);
    assert_eq!(fetched.marked_for_deletion, vec![id1]);
    assert_eq!(fetched.partial, vec![partial]);

    let delayed = MetaFetcher::new(bucket.clone())
        .with_consistency_delay(Duration::from_secs(3600))
        .fetch()
        .await
        .expect("fetch");
    assert_eq!(
        delayed.metas.keys().copied().collect::<Vec<_>>(),
        vec![compactor_block],
        "only the compactor's block is exempt"
    );
    assert_eq!(delayed.too_fresh.len(), 2);

    let lenient = MetaFetcher::new(bucket.clone())
        .with_deletion_mark_delay(Duration::from_secs(3600))
        .fetch()
        .await
        .expect("fetch");
    assert!(lenient.metas.contains_key(&id1), "a mark younger than the delay does not hide the block yet");

    // One recursive listing sorts the blocks out the same, and finds no-compact marks; a mark
    // removed is seen gone at the next fetch although its content was kept.
    let id2 = Ulid::from_string(&ids[2]).expect("ulid");
    bucket.put_bytes(&format!("{id2}/no-compact-mark.json"), b"{}".to_vec().into()).await.expect("put no-compact mark");
    let recursive = MetaFetcher::new(bucket.clone()).with_recursive_listing();
    let listed = recursive.fetch().await.expect("fetch");
    assert_eq!(listed.metas.keys().copied().collect::<Vec<_>>(), want);
    assert_eq!((listed.marked_for_deletion.clone(), listed.partial.clone()), (vec![id1], vec![partial]));
    assert_eq!(listed.no_compact_marked, vec![id2]);
    assert_eq!(listed.deletion_marks.get(&id1), Some(&mark));
    assert!(fetched.no_compact_marked.is_empty(), "only a recursive listing looks for no-compact marks");
    bucket.delete(&format!("{id1}/{DELETION_MARK_FILENAME}")).await.expect("delete mark");
    let listed = recursive.fetch().await.expect("fetch");
    assert!(listed.metas.contains_key(&id1) && listed.deletion_marks.is_empty());
    bucket
        .put_bytes(&format!("{id1}/{DELETION_MARK_FILENAME}"), serde_json::to_vec(&mark).expect("json").into())
        .await
        .expect("put mark");

    let mut out = Vec::new();
    tools::bucket_ls(&bucket, &mut out).await.expect("ls");
    let ls = String::from_utf8(out).expect("utf8");
    assert!(ls.contains("\n3 blocks; 1 partial uploads, 1 marked for deletion"), "{ls}");
    let mut out = Vec::new();
    tools::bucket_inspect(&bucket, id1, &mut out).await.expect("inspect");
    assert!(String::from_utf8_lossy(&out).contains("marked for deletion at"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_file_loss_partial_uploads_and_local_deletion() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tsdb = tmp.path().join("tsdb");
    let blocks = promtool_blocks(&tsdb, 1_700_100_000, 4, 2);
    let ids: Vec<String> = blocks.iter().map(|b| id_of(b)).collect();
    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, "");
    let ext = labels(&[("replica", "1")]);
    let shipper = Shipper::new(bucket.clone(), &tsdb, ext.clone(), "sidecar").expect("shipper");
    assert_eq!(shipper.sync().await.expect("sync").uploaded, blocks.len());

    // A corrupt state file counts as empty; the bucket check finds the blocks, nothing is re-sent.
    std::fs::write(tsdb.join(strata_shipper::STATE_FILENAME), b"{\"version\": 1, \"uploaded\": [").expect("corrupt");
    let shipper = Shipper::new(bucket.clone(), &tsdb, ext.clone(), "sidecar").expect("shipper");
    assert!(!shipper.is_uploaded(Ulid::from_string(&ids[0]).expect("ulid")));
    let stats = shipper.sync().await.expect("sync");
    assert_eq!((stats.uploaded, stats.already_in_bucket), (0, blocks.len()));
    assert_eq!(state_uploaded(&tsdb), ids);

    // A partial upload (objects without meta.json, not in the state file) is uploaded again whole.
    let last = ids.last().expect("a block");
    std::fs::remove_file(bucket_dir.join(last).join("meta.json")).expect("remove meta");
    std::fs::remove_file(bucket_dir.join(last).join("index")).expect("remove index");
    let keep: Vec<String> = ids[..ids.len() - 1].to_vec();
    let state = format!("{{\"version\":1,\"uploaded\":{}}}", serde_json::to_string(&keep).expect("json"));
    std::fs::write(tsdb.join(strata_shipper::STATE_FILENAME), state).expect("state");
    let stats = shipper.sync().await.expect("sync");
    assert_eq!(stats.uploaded, 1);
    let mut want = local_files(blocks.last().expect("a block"));
    want.insert("meta.json".into(), std::fs::metadata(bucket_dir.join(last).join("meta.json")).expect("meta").len());
    assert_eq!(bucket_files(&bucket, last).await, want);

    // Deleting a block locally drops it from the state file (the bucket keeps it).
    std::fs::remove_dir_all(&blocks[0]).expect("remove block");
    shipper.sync().await.expect("sync");
    assert_eq!(state_uploaded(&tsdb), ids[1..].to_vec());
    assert!(bucket_dir.join(&ids[0]).join("meta.json").exists());
}

/// `--shipper.upload-compacted`: compacted blocks go too; a change of the external labels
/// applies to the blocks uploaded after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_compacted_and_new_labels() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tsdb = tmp.path().join("tsdb");
    let blocks = promtool_blocks(&tsdb, 1_700_006_400, 1, 1);
    let compacted = copy_block(&blocks[0], &tsdb, |m| m.compaction.level = 3);
    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, "");
    let shipper = Shipper::new(bucket, &tsdb, labels(&[("cluster", "a")]), "sidecar")
        .expect("shipper")
        .with_upload_compacted(true);
    assert!(!shipper.set_external_labels(Default::default()), "empty labels are refused");
    assert!(shipper.set_external_labels(labels(&[("cluster", "b"), ("prometheus_replica", "r0")])));
    let stats = shipper.sync().await.expect("sync");
    assert_eq!((stats.uploaded, stats.skipped), (2, 0), "{stats:?}");
    for block in [&blocks[0], &compacted] {
        let meta = BlockMeta::read(&bucket_dir.join(id_of(block))).expect("uploaded meta parses");
        let t = meta.thanos.expect("thanos section");
        assert_eq!(t.labels, labels(&[("cluster", "b"), ("prometheus_replica", "r0")]));
        assert_eq!(t.source, "sidecar");
    }
    assert_eq!(
        BlockMeta::read(&bucket_dir.join(id_of(&compacted))).expect("meta").compaction.level,
        3,
        "the compaction level is kept"
    );
}

/// A FILESYSTEM bucket takes files by an in-kernel copy: the object is the file byte for byte,
/// under the prefix, no staging file is left, a second upload replaces the object, and a
/// missing source is an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_uploads_copy_whole_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bucket_dir = tmp.path().join("bucket");
    let bucket = fs_bucket(&bucket_dir, "tenant-b");
    let src = tmp.path().join("src");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&src, &big).expect("write source");
    let up = bucket.upload_file("01ABC/chunks/000001", &src).await.expect("upload");
    assert_eq!((up.size, up.parts), (big.len() as u64, 0));
    let on_disk = bucket_dir.join("tenant-b/01ABC/chunks/000001");
    assert!(std::fs::read(&on_disk).expect("object file") == big, "the object is the file");
    assert_eq!(bucket.get_opt("01ABC/chunks/000001").await.expect("get").as_deref(), Some(&big[..]));

    std::fs::write(&src, b"smaller").expect("rewrite source");
    bucket.upload_file("01ABC/chunks/000001", &src).await.expect("upload again");
    assert_eq!(std::fs::read(&on_disk).expect("object file"), b"smaller");
    let names: Vec<String> = std::fs::read_dir(on_disk.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["000001"], "no staging file is left beside the object");

    let missing = tmp.path().join("nothing-here");
    let err = bucket.upload_file("01ABC/index", &missing).await.expect_err("no source").to_string();
    assert!(err.contains("nothing-here"), "{err}");
    assert!(!bucket_dir.join("tenant-b/01ABC/index").exists());
}
