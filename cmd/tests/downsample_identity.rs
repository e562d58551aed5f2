//! strata's downsampler writes what Thanos's does, byte for byte: a raw block of 10.5 days
//! (counters with resets at 15 s and jittered 60 s intervals, gauges with gaps, staleness
//! markers, NaN and infinite values, series of one sample, a series of staleness markers only,
//! short series) is downsampled by the real `thanos compact` (interop/bin/thanos) to 5m and 1h,
//! and by `strata_tsdb::downsample::downsample_block` from the same inputs: raw to 5m, Thanos's
//! 5m block to 1h, and strata's own 5m block to 1h; and 3 days of blocks promtool wrote, which
//! Thanos compacts into a 2-day block before downsampling it. Every series must have the same
//! labels and the same chunks (min time, max time, encoding, bytes), and the meta.json fields
//! that do not depend on the ULID or the time of writing (index_stats included) must be equal.

mod common;

use std::path::{Path, PathBuf};

use common::blocks::{
    assert_same_blocks, fs_bucket, resolutions, ship, thanos_compact_once, write_block, FsBucket, Rng, Series,
};
use strata_testkit::promtool::{create_blocks, om_timestamp};
use strata_tsdb::block::Block;
use strata_tsdb::downsample::{downsample_block, RES_1H, RES_5M};
use strata_tsdb::Labels;

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
/// Long enough for Thanos to downsample raw data (40h) and 5m data (10 days).
const SPAN: i64 = 252 * HOUR;

fn stale() -> f64 {
    f64::from_bits(0x7ff0_0000_0000_0002)
}

fn labels(name: &str, id: &str) -> Labels {
    Labels::from_pairs(&[("__name__", name), ("id", id)])
}

/// The raw series; every sample lies in `[T0, T0 + SPAN)`.
fn data() -> Vec<Series> {
    let mut rng = Rng(0x0dd5_eed5_1234_5678);
    let mut out: Vec<Series> = Vec::new();
    // Counters: resets at irregular times, 60 s with up to 1 s of jitter, and one at 15 s.
    for (id, interval, jitter) in [("c60a", MINUTE, SECOND), ("c60b", MINUTE, SECOND), ("c15", 15 * SECOND, 0)] {
        let mut v = 0.0;
        let mut samples = Vec::new();
        let mut t = T0 + 7 * SECOND;
        while t < T0 + SPAN {
            if rng.next().is_multiple_of(1500) {
                v = (rng.next() % 5) as f64;
            }
            v += (rng.next() % 1000) as f64 / 8.0;
            samples.push((t, v));
            t += interval + if jitter > 0 { (rng.next() % jitter as u64) as i64 } else { 0 };
        }
        out.push((labels("id_requests_total", id), samples));
    }
    // A gauge with gaps of a few hours, NaN values, staleness markers before each gap and two
    // infinities.
    let mut samples = Vec::new();
    let mut t = T0;
    let mut i = 0u64;
    while t < T0 + SPAN {
        i += 1;
        let v = match i {
            _ if i.is_multiple_of(997) => f64::NAN,
            1234 => f64::INFINITY,
            4321 => f64::NEG_INFINITY,
            _ => 20.0 + ((i as f64) / 90.0).sin() * 5.0 + (rng.next() % 100) as f64 / 100.0,
        };
        samples.push((t, v));
        if rng.next().is_multiple_of(400) {
            samples.push((t + 30 * SECOND, stale()));
            t += (1 + rng.next() % 5) as i64 * HOUR + 17 * SECOND;
        }
        t += MINUTE;
    }
    out.push((labels("id_temperature", "gaps"), samples));
    // A gauge at 30 s going negative.
    let samples = (0..SPAN / (30 * SECOND)).map(|k| (T0 + k * 30 * SECOND, -(k as f64) / 3.0)).collect();
    out.push((labels("id_temperature", "negative"), samples));
    // One sample, at the start, inside the span and at its last millisecond.
    out.push((labels("id_single", "first"), vec![(T0, 42.0)]));
    out.push((labels("id_single", "middle"), vec![(T0 + 100 * HOUR + 123, 7.5)]));
    out.push((labels("id_single", "last"), vec![(T0 + SPAN - 1, 1.0)]));
    // Staleness markers only: nothing to downsample.
    out.push((labels("id_stale", "only"), vec![(T0 + HOUR, stale()), (T0 + 2 * HOUR, stale())]));
    // Short series: three hours of a counter, a window's worth at 10 s, and one day at 5 m.
    let samples = (0..180).map(|k| (T0 + 50 * HOUR + k * MINUTE, k as f64 * 3.0)).collect();
    out.push((labels("id_short", "3h"), samples));
    let samples = (0..30).map(|k| (T0 + 90 * HOUR + 2 * MINUTE + k * 10 * SECOND, (k % 7) as f64)).collect();
    out.push((labels("id_short", "5m"), samples));
    let samples = (0..288).map(|k| (T0 + 24 * HOUR + k * 5 * MINUTE, (k * k % 11) as f64)).collect();
    out.push((labels("id_short", "1d-at-5m"), samples));
    out
}

/// The block of `resolution` in the FILESYSTEM bucket at `root`.
fn block_at(root: &Path, resolution: i64) -> PathBuf {
    for entry in std::fs::read_dir(root).expect("list bucket").flatten() {
        let Ok(meta) = std::fs::read_to_string(entry.path().join("meta.json")) else { continue };
        let meta: serde_json::Value = serde_json::from_str(&meta).expect("meta.json");
        if meta["thanos"]["downsample"]["resolution"].as_i64() == Some(resolution) {
            return entry.path();
        }
    }
    panic!("no block of resolution {resolution} in {}", root.display());
}

/// Downsamples the block at `src` with strata into `<work>/ours`; returns the new block's
/// directory.
fn ours(work: &Path, src: &Path, resolution: i64) -> PathBuf {
    let out = work.join("ours");
    std::fs::create_dir_all(&out).expect("output dir");
    let block = Block::open(src).expect("open the source block");
    let meta = downsample_block(&block, resolution, &out).expect("downsample");
    out.join(meta.ulid.to_string())
}

#[test]
fn downsampled_blocks_are_thanos_bytes() {
    let FsBucket { work, root, config_file, bucket, rt } = fs_bucket();
    let raw_dir = work.path().join("raw-blocks");
    std::fs::create_dir_all(&raw_dir).expect("blocks dir");
    write_block(&raw_dir, &data()).expect("write block");
    ship(&rt, &bucket, &raw_dir, &[("cluster", "ds"), ("replica", "a")]).expect("ship");
    let log = thanos_compact_once(work.path(), &config_file, &[]);
    assert_eq!(resolutions(&root).unwrap(), [0, RES_5M, RES_1H], "blocks after thanos compact\n{log}");
    let (raw, theirs_5m, theirs_1h) = (block_at(&root, 0), block_at(&root, RES_5M), block_at(&root, RES_1H));

    // From the bucket's copies, with the meta Thanos read (external labels, source).
    let ours_5m = ours(work.path(), &raw, RES_5M);
    assert_same_blocks("raw to 5m", &ours_5m, &theirs_5m);
    assert_same_blocks("thanos's 5m to 1h", &ours(work.path(), &theirs_5m, RES_1H), &theirs_1h);
    assert_same_blocks("strata's 5m to 1h", &ours(work.path(), &ours_5m, RES_1H), &theirs_1h);
}

/// Blocks promtool wrote (2h each, 3 days at 15 s, counters with resets, a gauge with NaN
/// values and a gap), compacted by Thanos into a 2-day block of level > 1 and downsampled: the
/// compaction section (level, sources, parents) is carried over as Thanos carries it.
#[test]
fn compacted_promtool_blocks_downsample_as_thanos_does() {
    let FsBucket { work, root, config_file, bucket, rt } = fs_bucket();
    let mut rng = Rng(0xfeed_beef_0bad_cafe);
    let mut om = String::new();
    let end = T0 + 72 * HOUR;
    for id in ["a", "b", "c"] {
        om.push_str("# TYPE om_requests gauge\n");
        let mut v = 0u64;
        for t in (T0..end).step_by(15_000) {
            if rng.next().is_multiple_of(3000) {
                v = 0;
            }
            v += rng.next() % 50;
            om.push_str(&format!("om_requests{{id=\"{id}\"}} {v} {}\n", om_timestamp(t)));
        }
    }
    om.push_str("# TYPE om_temperature gauge\n");
    for (k, t) in (T0..end).step_by(15_000).enumerate() {
        if (20 * HOUR..23 * HOUR).contains(&(t - T0)) {
            continue;
        }
        let v = if k % 777 == 0 { "NaN".to_owned() } else { format!("{}", (k % 400) as f64 / 4.0 - 30.0) };
        om.push_str(&format!("om_temperature {v} {}\n", om_timestamp(t)));
    }
    om.push_str("# EOF\n");
    let raw_dir = work.path().join("raw-blocks");
    create_blocks(&om, &raw_dir);
    ship(&rt, &bucket, &raw_dir, &[("cluster", "om")]).expect("ship");
    let log = thanos_compact_once(work.path(), &config_file, &[]);
    let theirs_5m = block_at(&root, RES_5M);
    let theirs_meta = Block::open(&theirs_5m).expect("5m block").meta().clone();
    assert!(theirs_meta.compaction.level > 1, "thanos downsampled an uncompacted block\n{log}");
    // Its source: the raw block with the same compaction section.
    let raw = std::fs::read_dir(&root)
        .expect("list bucket")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            Block::open(p).is_ok_and(|b| {
                b.meta().thanos.as_ref().is_some_and(|t| t.downsample.resolution == 0)
                    && b.meta().compaction == theirs_meta.compaction
            })
        })
        .unwrap_or_else(|| panic!("no raw block with the 5m block's compaction section\n{log}"));
    assert_same_blocks("compacted promtool blocks to 5m", &ours(work.path(), &raw, RES_5M), &theirs_5m);
}
