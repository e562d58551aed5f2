//! Shipper-specific test helpers: S3 configs for a moto bucket, promtool blocks of a test gauge,
//! block copies and the bucket's and state file's view of them. Processes, the fault proxy and
//! promtool itself come from strata-testkit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata_shipper::Bucket;
use strata_tsdb::block::meta::BlockMeta;
use ulid::Ulid;

/// An objstore YAML for a moto bucket reached at `port` (moto itself or a proxy in front).
pub fn s3_yaml(port: u16, bucket: &str, part_size: u64, extra: &str) -> String {
    strata_testkit::s3_objstore_yaml(port, bucket, &format!("  part_size: {part_size}\n{extra}"))
}

pub fn s3_bucket(port: u16, bucket: &str, part_size: u64, extra: &str) -> Bucket {
    let cfg = strata_shipper::parse_objstore_config(&s3_yaml(port, bucket, part_size, extra), "test objstore config")
        .expect("valid config");
    cfg.build().expect("bucket")
}

/// Blocks of `series` gauges sampled every 15s over `hours` from `start_s`, made by promtool in
/// `out`; returns the new block directories, oldest first.
pub fn promtool_blocks(out: &Path, start_s: i64, hours: i64, series: usize) -> Vec<PathBuf> {
    let mut text = String::from("# HELP test_metric a test gauge\n# TYPE test_metric gauge\n");
    for s in 0..series {
        for t in (0..hours * 3600).step_by(15) {
            text.push_str(&format!("test_metric{{series=\"{s}\"}} {} {}\n", (t as f64) * 0.25 + s as f64, start_s + t));
        }
    }
    text.push_str("# EOF\n");
    strata_testkit::promtool::create_blocks(&text, out)
}

/// Copies a block under a new ULID, with `edit` applied to its meta.json; returns the new dir.
pub fn copy_block(src: &Path, dst_parent: &Path, edit: impl FnOnce(&mut BlockMeta)) -> PathBuf {
    let mut meta = BlockMeta::read(src).expect("read meta");
    let id = Ulid::new();
    meta.ulid = id;
    meta.compaction.sources = vec![id];
    edit(&mut meta);
    let dst = dst_parent.join(id.to_string());
    std::fs::create_dir_all(dst.join("chunks")).expect("mkdir");
    for rel in ["index", "tombstones"] {
        if src.join(rel).exists() {
            std::fs::copy(src.join(rel), dst.join(rel)).expect("copy");
        }
    }
    for e in std::fs::read_dir(src.join("chunks")).expect("read chunks") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dst.join("chunks").join(e.file_name())).expect("copy chunk");
    }
    meta.write(&dst).expect("write meta");
    dst
}

/// Adds a chunk segment of `size` bytes (a valid segment header, then random bytes that no
/// series refers to) to a block, to exercise multipart uploads.
pub fn add_big_segment(block: &Path, name: &str, size: usize) {
    use rand::RngCore;
    let mut data = vec![0u8; size];
    rand::thread_rng().fill_bytes(&mut data);
    data[..8].copy_from_slice(&[0x85, 0xBD, 0x40, 0xDD, 0x01, 0, 0, 0]);
    std::fs::write(block.join("chunks").join(name), data).expect("write segment");
}

/// The files the bucket must hold for a local block: chunks/*, index, with their sizes.
pub fn local_files(block: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(block.join("chunks")).expect("chunks") {
        let e = e.expect("entry");
        out.insert(format!("chunks/{}", e.file_name().to_string_lossy()), e.metadata().expect("stat").len());
    }
    out.insert("index".into(), std::fs::metadata(block.join("index")).expect("stat index").len());
    out
}

/// Object name → size for everything under `<id>/` in the bucket.
pub async fn bucket_files(bucket: &Bucket, id: &str) -> BTreeMap<String, u64> {
    bucket
        .list_recursive(id)
        .await
        .expect("list block")
        .into_iter()
        .map(|o| (o.location.as_ref().trim_start_matches(&format!("{id}/")).to_owned(), o.size))
        .collect()
}

/// The uploaded list of a shipper state file.
pub fn state_uploaded(tsdb: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(tsdb.join(strata_shipper::STATE_FILENAME)).expect("state file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("state json");
    assert_eq!(v["version"], 1, "{text}");
    v["uploaded"].as_array().expect("uploaded list").iter().map(|u| u.as_str().expect("ulid").to_owned()).collect()
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
