//! `strata standalone` answers from the blocks it shipped to its bucket after local retention
//! deleted them, and a block both local and shipped gives each sample once.
//!
//! Ten hours of two series at one sample a minute go in by remote write, starting at a 2h
//! boundary long ago, so the head cuts blocks [0,2h) … [6h,8h) as the writes arrive. With
//! `--tsdb.retention=1h` every shipped block but the newest is then deleted locally. Queries
//! over the first six hours (bucket only) and over all ten (bucket only, bucket and local, head)
//! must give exactly the samples written, each once.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{range_samples, remote_write, strata_bin, LabelSet, STANDALONE_LABELS};
use strata_proto::prometheus as v1;
use strata_testkit::http::get;
use strata_testkit::metrics::metric_sum;
use strata_testkit::{s3_objstore_yaml, wait_for, Fleet, Moto, Node};

/// The first sample's time: a 2h block boundary.
const T0: i64 = 1_700_006_400_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const JOBS: [&str; 2] = ["a", "b"];

/// The value written for `job` at step `step` (minutes after [`T0`]).
fn value(job: usize, step: i64) -> f64 {
    (job as f64 + 1.0) * 1000.0 + step as f64
}

/// One request per hour of data, both series, steps `[from_hour*60, to_hour*60)`.
fn write_hours(addr: &str, from_hour: i64, to_hour: i64) {
    for hour in from_hour..to_hour {
        let steps = hour * 60..(hour + 1) * 60;
        let timeseries = JOBS
            .iter()
            .enumerate()
            .map(|(j, job)| v1::TimeSeries {
                labels: vec![
                    v1::Label { name: "__name__".into(), value: "m".into() },
                    v1::Label { name: "job".into(), value: (*job).into() },
                ],
                samples: steps.clone().map(|s| v1::Sample { value: value(j, s), timestamp: T0 + s * MINUTE }).collect(),
                ..Default::default()
            })
            .collect();
        remote_write(addr, "/api/v1/receive", &v1::WriteRequest { timeseries, ..Default::default() });
    }
}

/// `(ulid, minTime)` of every block directory under `dir`.
fn blocks(dir: &Path) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("meta.json")) else { continue };
        let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        if let (Some(ulid), Some(min)) = (meta["ulid"].as_str(), meta["minTime"].as_i64()) {
            out.push((ulid.to_owned(), min));
        }
    }
    out.sort_by_key(|b| b.1);
    out
}

fn min_times(blocks: &[(String, i64)]) -> Vec<i64> {
    blocks.iter().map(|b| (b.1 - T0) / HOUR).collect()
}

/// What was written with a timestamp in `[T0 + from_step min, T0 + to_step min)`, by series as
/// standalone labels them.
fn written(from_step: i64, to_step: i64) -> BTreeMap<LabelSet, Vec<(i64, f64)>> {
    JOBS.iter()
        .enumerate()
        .map(|(j, job)| {
            let mut labels: LabelSet = [("__name__", "m"), ("job", job)]
                .into_iter()
                .chain(STANDALONE_LABELS)
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            labels.sort();
            (labels, (from_step..to_step).map(|s| (T0 + s * MINUTE, value(j, s))).collect())
        })
        .collect()
}

fn file(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn queries_reach_shipped_blocks_that_retention_deleted_and_count_each_sample_once() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let slot = fleet.slot("standalone");
    let mut args = slot.standalone_args();
    args.extend(["--tsdb.retention=1h".into(), "--sync-block-duration=1s".into()]);
    let node = Node::start(strata_bin(), &slot, args);
    let (http, rw) = (node.http().to_owned(), slot.remote_write.clone());
    let local_dir = slot.data_dir.join("receive/default-tenant");
    let bucket_dir = slot.data_dir.join("bucket");
    let fail = |e: String| -> ! { panic!("{e}\n{}", node.proc.log_tail()) };

    // [0,2h) [2h,4h) [4h,6h) are cut and shipped; retention keeps them until they are shipped.
    write_hours(&rw, 0, 8);
    wait_for("three shipped blocks", Duration::from_secs(20), || match min_times(&blocks(&bucket_dir)) {
        m if m.len() >= 3 => Ok(()),
        m => Err(format!("bucket blocks at hours {m:?}")),
    })
    .unwrap_or_else(|e| fail(e));
    // The cut of [6h,8h) applies retention again: only it stays local, all four are shipped.
    write_hours(&rw, 8, 10);
    let newest = wait_for("retention to leave [6h,8h) alone locally", Duration::from_secs(20), || {
        let (local, shipped) = (blocks(&local_dir), blocks(&bucket_dir));
        match (min_times(&local).as_slice(), min_times(&shipped).as_slice()) {
            ([6], [0, 2, 4, 6]) if local[0].0 == shipped[3].0 => Ok(local[0].0.clone()),
            (l, s) => Err(format!("local blocks at hours {l:?}, shipped at {s:?}")),
        }
    })
    .unwrap_or_else(|e| fail(e));
    // The shipper uploads the local files: the chunks both stores read are the same bytes.
    for part in ["chunks/000001", "index"] {
        let (local, shipped) = (file(local_dir.join(&newest).join(part)), file(bucket_dir.join(&newest).join(part)));
        assert!(local == shipped, "{part} of block {newest} differs between the TSDB and the bucket");
    }
    wait_for("the bucket store to load all four blocks", Duration::from_secs(20), || {
        let (_, text) = get(&http, "/metrics")?;
        match metric_sum(&text, "thanos_bucket_store_blocks_loaded") {
            Some(n) if n >= 4.0 => Ok(()),
            n => Err(format!("thanos_bucket_store_blocks_loaded {n:?}")),
        }
    })
    .unwrap_or_else(|e| fail(e));

    // Only in the bucket: (T0 - 1ms, T0 + 6h - 1ms].
    let old = range_samples(&http, "m[6h]", T0 + 6 * HOUR - 1).unwrap_or_else(|e| fail(e));
    assert_eq!(old, written(0, 6 * 60), "the first six hours, from the bucket only");
    // Bucket only, bucket and local block [6h,8h), and the head: everything, once.
    let last = T0 + (10 * 60 - 1) * MINUTE;
    let all = range_samples(&http, "m[10h]", last).unwrap_or_else(|e| fail(e));
    assert_eq!(all, written(0, 10 * 60), "all ten hours, each sample once");
    // The stretch the local block and its shipped copy both hold.
    let both = range_samples(&http, "m[2h]", T0 + 8 * HOUR - 1).unwrap_or_else(|e| fail(e));
    assert_eq!(both, written(6 * 60, 8 * 60), "[6h,8h), local and shipped, each sample once");
}

/// Until its bucket is first listed, standalone says it is not ready (its answers would miss
/// every shipped block) while it takes writes; once the bucket answers, it becomes ready by
/// itself.
#[test]
fn not_ready_until_the_bucket_is_first_listed() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut moto = Moto::start(work.path());
    moto.kill();
    let mut fleet = Fleet::new(work.path());
    let slot = fleet.slot("standalone");
    let mut args = slot.standalone_args();
    args.push(format!("--objstore.config={}", s3_objstore_yaml(moto.port, "later", "")).into());
    args.push("--label=receive=\"standalone\"".into());
    let node = Node::spawn(strata_bin(), &slot, args);
    let fail = |e: String| -> ! { panic!("{e}\n{}", node.proc.log_tail()) };

    wait_for("standalone to say why it is not ready", Duration::from_secs(30), || match get(&slot.http, "/-/ready") {
        Ok((503, body)) if body.contains("first bucket sync") => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| fail(e));
    let (code, body) = get(&slot.http, "/api/v1/query?query=up").unwrap_or_else(|e| fail(e));
    assert_eq!(code, 503, "a query before the first sync: {body}");
    write_hours(&slot.remote_write, 0, 1);

    moto.restart();
    moto.create_bucket("later");
    wait_for("standalone to become ready", Duration::from_secs(30), || match get(&slot.http, "/-/ready") {
        Ok((200, _)) => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| fail(e));
}
