//! The shipper against a real S3-protocol server (moto) with real Prometheus blocks.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use strata_shipper::{download_block, Bucket, MetaFetcher, RetryPolicy, Shipper};
use strata_tsdb::block::meta::BlockMeta;
use ulid::Ulid;

use strata_testkit::promtool::{path_arg, promtool};
use strata_testkit::{within, FaultProxy, Moto};

use crate::common::*;

const MIB: u64 = 1 << 20;
const PART: u64 = 5 * MIB;
/// Larger than two parts, so a multipart upload has three.
const BIG_SEGMENT: usize = 13 * MIB as usize;

fn id_of(block: &Path) -> String {
    block.file_name().and_then(|n| n.to_str()).expect("block dir name").to_owned()
}

/// Three promtool blocks and a copy of the first with a 13 MiB second chunk segment, placed
/// second in upload order (its minTime is one ms after the first block's).
fn test_blocks(tsdb: &Path) -> Vec<PathBuf> {
    let mut blocks = promtool_blocks(tsdb, 1_700_006_400, 5, 3);
    let big = copy_block(&blocks[0], tsdb, |m| m.min_time += 1);
    add_big_segment(&big, "000002", BIG_SEGMENT);
    blocks.insert(1, big);
    blocks
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy { attempts: 2, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_millis(200) }
}

/// Every block is in the bucket exactly as on disk (chunks/*, index, meta.json with a thanos
/// section listing those files and sizes), no other block is, and the state file lists each
/// block once, oldest first.
async fn assert_all_shipped(bucket: &Bucket, tsdb: &Path, blocks: &[PathBuf]) {
    let ids: Vec<String> = blocks.iter().map(|b| id_of(b)).collect();
    let mut top = bucket.list_top_level().await.expect("list");
    top.sort();
    let mut want_top = ids.clone();
    want_top.sort();
    assert_eq!(top, want_top, "the bucket holds exactly the local blocks");
    assert_eq!(state_uploaded(tsdb), ids, "state file lists every block once, oldest first");
    for (block, id) in blocks.iter().zip(&ids) {
        let local = BlockMeta::read(block).expect("local meta");
        let text = bucket.get_opt(&format!("{id}/meta.json")).await.expect("get").expect("meta.json uploaded");
        let meta = BlockMeta::parse(&text, Path::new("meta.json")).expect("uploaded meta parses");
        let mut want = local_files(block);
        let thanos = meta.thanos.clone().expect("thanos section");
        let listed: Vec<(String, Option<u64>)> =
            thanos.files.iter().map(|f| (f.rel_path.clone(), f.size_bytes)).collect();
        let mut want_listed: Vec<(String, Option<u64>)> = want.iter().map(|(k, v)| (k.clone(), Some(*v))).collect();
        want_listed.push(("meta.json".into(), None));
        want_listed.sort();
        assert_eq!(listed, want_listed, "thanos.files of {id}");
        want.insert("meta.json".into(), text.len() as u64);
        assert_eq!(bucket_files(bucket, id).await, want, "objects of {id}");
        assert_eq!(thanos.labels, labels(&[("replica", "0")]));
        assert_eq!(thanos.source, "receive");
        assert_eq!(thanos.downsample.resolution, 0);
        assert_eq!(thanos.version, Some(1));
        let segs: Vec<String> = want.keys().filter_map(|k| k.strip_prefix("chunks/")).map(str::to_owned).collect();
        assert_eq!(thanos.segment_files, segs);
        let uploaded =
            chrono::DateTime::parse_from_rfc3339(thanos.upload_time.as_deref().expect("upload_time")).expect("rfc3339");
        assert!((chrono::Utc::now() - uploaded.to_utc()).num_seconds().abs() < 600, "upload_time {uploaded}");
        let mut stripped = meta.clone();
        stripped.thanos = None;
        assert_eq!(stripped, local, "the Prometheus part of meta.json is unchanged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_ships_blocks_with_thanos_meta_and_multipart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(tmp.path());
    moto.create_bucket("blocks");
    let tsdb = tmp.path().join("tsdb");
    let blocks = test_blocks(&tsdb);
    let bucket = s3_bucket(moto.port, "blocks", PART, "");
    let shipper = Shipper::new(bucket.clone(), &tsdb, labels(&[("replica", "0")]), "receive").expect("shipper");

    let stats = within(180, "sync", shipper.sync()).await.expect("sync");
    assert_eq!(stats.uploaded, blocks.len(), "{stats:?}");
    let local_bytes: u64 = blocks.iter().flat_map(|b| local_files(b).into_values()).sum();
    assert!(stats.bytes > local_bytes, "bytes sent {} cover the files ({local_bytes}) and meta.json", stats.bytes);
    assert_all_shipped(&bucket, &tsdb, &blocks).await;

    // The big segment went up in ceil(13/5) = 3 parts: S3 gives multipart objects an ETag of
    // "<md5 of part md5s>-<parts>"; single PUTs have a plain MD5.
    let big = id_of(&blocks[1]);
    let head = bucket.store().head(&ObjectPath::from(format!("{big}/chunks/000002"))).await.expect("head");
    let etag = head.e_tag.expect("etag");
    assert!(etag.trim_matches('"').ends_with("-3"), "multipart ETag expected, got {etag}");
    assert_eq!(head.size, BIG_SEGMENT as u64);
    let small = bucket.store().head(&ObjectPath::from(format!("{big}/chunks/000001"))).await.expect("head");
    assert!(!small.e_tag.expect("etag").contains('-'), "a small file is a single PUT");

    // Nothing is uploaded twice.
    let again = within(180, "sync", shipper.sync()).await.expect("second sync");
    assert_eq!(again.uploaded, 0);
    assert_all_shipped(&bucket, &tsdb, &blocks).await;
    let m = shipper.metrics();
    assert_eq!(m.uploads_total.load(Ordering::Relaxed), blocks.len() as u64);
    assert_eq!(m.dir_syncs_total.load(Ordering::Relaxed), 2);
    assert_eq!(m.dir_sync_failures_total.load(Ordering::Relaxed), 0);

    // Blocks read back: promtool opens a downloaded one; the multipart object is intact.
    let fetched = MetaFetcher::new(bucket.clone()).fetch().await.expect("fetch");
    assert_eq!(fetched.metas.len(), blocks.len());
    let dl = tmp.path().join("download");
    let id0 = id_of(&blocks[0]);
    download_block(&bucket, Ulid::from_string(&id0).expect("ulid"), &dl, 1).await.expect("download");
    let analysis = promtool(&["tsdb", "analyze", path_arg(&dl), &id0]);
    assert!(analysis.contains("Series: 3"), "{analysis}");
    let got = download_block(&bucket, Ulid::from_string(&big).expect("ulid"), &dl, 4).await.expect("download big");
    assert_eq!(
        std::fs::read(got.join("chunks/000002")).expect("downloaded"),
        std::fs::read(blocks[1].join("chunks/000002")).expect("local")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_mid_upload_then_clean_reupload() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(tmp.path());
    moto.create_bucket("blocks");
    let proxy = FaultProxy::start(moto.port);
    let tsdb = tmp.path().join("tsdb");
    let blocks = test_blocks(&tsdb);
    let via_proxy = s3_bucket(proxy.port, "blocks", PART, "  max_retries: 1\n");
    let direct = s3_bucket(moto.port, "blocks", PART, "");
    let shipper = Shipper::new(via_proxy, &tsdb, labels(&[("replica", "0")]), "receive")
        .expect("shipper")
        .with_retry_policy(quick_retries());

    // The connection dies after the first block and the big block's first segment are up,
    // inside the multipart upload of its 13 MiB segment.
    let first: u64 = local_files(&blocks[0]).values().sum();
    let big_first_segment = std::fs::metadata(blocks[1].join("chunks/000001")).expect("stat").len();
    proxy.trip_after(first + big_first_segment + 6 * MIB, proxy.outage_switch());
    let err = within(180, "sync", shipper.sync()).await.expect_err("sync through an outage fails");
    assert!(proxy.tripped());
    assert!(err.to_string().contains("1 uploaded"), "{err}");

    // What the server holds: the first block complete, the big one partial (no meta.json).
    let ids: Vec<String> = blocks.iter().map(|b| id_of(b)).collect();
    assert!(direct.exists(&format!("{}/meta.json", ids[0])).await.expect("head"));
    assert!(direct.exists(&format!("{}/chunks/000001", ids[1])).await.expect("head"), "partial upload left objects");
    assert!(!direct.exists(&format!("{}/meta.json", ids[1])).await.expect("head"));
    let fetched = MetaFetcher::new(direct.clone()).fetch().await.expect("fetch");
    assert_eq!(fetched.partial, vec![Ulid::from_string(&ids[1]).expect("ulid")]);
    assert_eq!(state_uploaded(&tsdb), vec![ids[0].clone()]);
    let m = shipper.metrics();
    assert_eq!(m.upload_failures_total.load(Ordering::Relaxed), 1, "the big block's upload failed");
    assert_eq!(m.dir_sync_failures_total.load(Ordering::Relaxed), 1);

    // Service is back: the next sync finishes the job, each block exactly once.
    proxy.set_up();
    let stats = within(180, "sync", shipper.sync()).await.expect("sync after the outage");
    assert_eq!(stats.uploaded, blocks.len() - 1);
    assert_all_shipped(&direct, &tsdb, &blocks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_killed_mid_upload_and_restarted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let moto = Arc::new(Mutex::new(Moto::start(tmp.path())));
    let port = moto.lock().expect("moto").port;
    moto.lock().expect("moto").create_bucket("blocks");
    let proxy = FaultProxy::start(port);
    let tsdb = tmp.path().join("tsdb");
    let mut blocks = test_blocks(&tsdb);
    // Make the big block the oldest, so the kill lands inside the first upload.
    let big = blocks.remove(1);
    let mut meta = BlockMeta::read(&big).expect("meta");
    meta.min_time -= 2;
    meta.write(&big).expect("write meta");
    blocks.insert(0, big);

    let shipper = Shipper::new(
        s3_bucket(proxy.port, "blocks", PART, "  max_retries: 1\n"),
        &tsdb,
        labels(&[("replica", "0")]),
        "receive",
    )
    .expect("shipper")
    .with_retry_policy(quick_retries());
    let first_segment = std::fs::metadata(blocks[0].join("chunks/000001")).expect("stat").len();
    let killer = moto.clone();
    proxy.trip_after(first_segment + 3 * MIB, move || {
        if let Ok(mut m) = killer.lock() {
            m.kill();
        }
    });
    within(180, "sync", shipper.sync()).await.expect_err("the server died mid-upload");
    assert!(proxy.tripped());
    assert!(state_uploaded(&tsdb).is_empty(), "nothing was completed");

    // A new server (moto keeps buckets in memory only, so it starts empty) gets everything.
    {
        let mut m = moto.lock().expect("moto");
        m.restart();
        m.create_bucket("blocks");
    }
    let stats = within(180, "sync", shipper.sync()).await.expect("sync after restart");
    assert_eq!(stats.uploaded, blocks.len());
    assert_all_shipped(&s3_bucket(port, "blocks", PART, ""), &tsdb, &blocks).await;
}
