//! `strata compact --deduplication.func=penalty` writes what the real `thanos compact` writes
//! with the same flags: two HA replicas' 2h blocks (replica label `replica`, scraped 6 s apart,
//! each with gaps the other covers, a counter that resets, staleness markers, jittered scrapes,
//! series only one replica has and series both hold identically) are merged into one block per
//! compactor, from copies of the same blocks in two FILESYSTEM buckets. Every series must have
//! the same labels and the same chunks (min time, max time, encoding, bytes), and the meta.json
//! fields that do not depend on the ULID or the time of writing must be equal. A chained merge
//! (the default) of the same blocks keeps both replicas' samples, so the penalty merge must
//! hold fewer.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::blocks::{assert_same_blocks, fs_bucket, ship, thanos_compact_once, write_block_in, FsBucket, Rng, Series};
use strata_testkit::Proc;
use strata_tsdb::block::Block;
use strata_tsdb::Labels;

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
/// 2026-01-01T00:00:00Z: a 2h block boundary.
const T0: i64 = 1_767_225_600_000;
const SCRAPE: i64 = 15 * SECOND;

const DEDUP_FLAGS: [&str; 2] = ["--deduplication.replica-label=replica", "--deduplication.func=penalty"];

fn stale() -> f64 {
    f64::from_bits(0x7ff0_0000_0000_0002)
}

fn labels(name: &str, id: &str) -> Labels {
    Labels::from_pairs(&[("__name__", name), ("id", id)])
}

/// Scrape times in the block from `offset`, every 15 s with up to `jitter` ms late, skipping
/// `gaps` (`[from, to)` after T0).
fn scrapes(rng: &mut Rng, offset: i64, jitter: u64, gaps: &[(i64, i64)]) -> Vec<i64> {
    let mut out = Vec::new();
    let mut t = T0 + offset;
    while t < T0 + 2 * HOUR - SCRAPE {
        let at = t + if jitter > 0 { (rng.next() % jitter) as i64 } else { 0 };
        if !gaps.iter().any(|&(from, to)| (T0 + from..T0 + to).contains(&at)) {
            out.push(at);
        }
        t += SCRAPE;
    }
    out
}

/// One replica's series: what both scrape, at its own times and with its own gaps.
fn replica(seed: u64, offset: i64, gaps: &[(i64, i64)]) -> Vec<Series> {
    let mut rng = Rng(seed);
    let mut out: Vec<Series> = Vec::new();
    // A counter that resets 90 minutes in: its value follows the time it is read at.
    let counter = |t: i64| {
        let since = if t - T0 >= 90 * MINUTE { t - T0 - 90 * MINUTE } else { t - T0 };
        (since / 100) as f64 * 0.25
    };
    let times = scrapes(&mut rng, offset, 0, gaps);
    out.push((labels("ha_requests_total", "api"), times.iter().map(|&t| (t, counter(t))).collect()));
    // A gauge with a staleness marker where this replica's gaps start.
    let mut samples = Vec::new();
    for t in scrapes(&mut rng, offset, 0, gaps) {
        if let Some(last) = samples.last().map(|&(t, _): &(i64, f64)| t) {
            if t - last > 2 * SCRAPE {
                samples.push((last + SCRAPE, stale()));
            }
        }
        samples.push((t, 20.0 + ((t - T0) as f64 / 600_000.0).sin()));
    }
    out.push((labels("ha_temperature", "room"), samples));
    // Scrapes up to 900 ms late.
    let times = scrapes(&mut rng, offset, 900, gaps);
    out.push((labels("ha_queue_length", "jittered"), times.iter().map(|&t| (t, ((t / 1000) % 17) as f64)).collect()));
    out
}

/// The blocks of replicas `a` and `b` and the two buckets they are shipped to.
fn replica_blocks(work: &Path) -> (PathBuf, PathBuf) {
    let mut a = replica(0x5eed_0001, 0, &[(30 * MINUTE, 35 * MINUTE), (100 * MINUTE, 101 * MINUTE)]);
    let mut b = replica(0x5eed_0002, 6 * SECOND, &[(70 * MINUTE, 74 * MINUTE)]);
    // One series only replica a has; one both hold with the same samples (identical chunks).
    a.push((labels("ha_only", "a"), (0..400).map(|k| (T0 + k * SCRAPE, k as f64)).collect()));
    let same: Vec<(i64, f64)> = (0..450).map(|k| (T0 + 3 * SECOND + k * SCRAPE, (k % 5) as f64)).collect();
    a.push((labels("ha_same", "both"), same.clone()));
    b.push((labels("ha_same", "both"), same));
    let dirs = (work.join("replica-a"), work.join("replica-b"));
    for (dir, data) in [(&dirs.0, &a), (&dirs.1, &b)] {
        std::fs::create_dir_all(dir).expect("blocks dir");
        write_block_in(dir, data, Some((T0, T0 + 2 * HOUR))).expect("write block");
    }
    dirs
}

fn ship_replicas(bucket: &FsBucket, dirs: &(PathBuf, PathBuf)) {
    for (dir, replica) in [(&dirs.0, "a"), (&dirs.1, "b")] {
        // The shipper remembers what it uploaded from a directory; each bucket gets the blocks.
        let _ = std::fs::remove_file(dir.join("thanos.shipper.json"));
        ship(&bucket.rt, &bucket.bucket, dir, &[("cluster", "ha"), ("replica", replica)]).expect("ship");
    }
}

/// One pass of `strata compact` over `bucket`; returns its log.
fn strata_compact_once(bucket: &FsBucket, flags: &[&str]) -> String {
    let work = bucket.work.path();
    let mut cmd = Command::new(common::strata_bin());
    cmd.arg("compact").arg("--objstore.config-file").arg(&bucket.config_file);
    cmd.arg("--data-dir").arg(work.join("compact"));
    cmd.args(["--consistency-delay=0s", "--delete-delay=0s", "--http-address=127.0.0.1:0"]).args(flags);
    let log_path = work.join("strata-compact.log");
    let status = Proc::spawn("strata compact", cmd, &log_path).wait(Duration::from_secs(300));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "strata compact failed: {status}\n{log}");
    log
}

/// The compacted (level 2) block in the FILESYSTEM bucket at `root`.
fn compacted(root: &Path, log: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("list bucket")
        .flatten()
        .map(|e| e.path())
        .filter(|p| Block::open(p).is_ok_and(|b| b.meta().compaction.level == 2))
        .collect();
    assert_eq!(found.len(), 1, "compacted blocks in {}: {found:?}\n{log}", root.display());
    found[0].clone()
}

#[test]
fn penalty_deduplicated_blocks_are_thanos_bytes() {
    let work = tempfile::tempdir().expect("temp dir");
    let dirs = replica_blocks(work.path());

    let theirs = fs_bucket();
    ship_replicas(&theirs, &dirs);
    let log = thanos_compact_once(theirs.work.path(), &theirs.config_file, &DEDUP_FLAGS);
    let theirs_block = compacted(&theirs.root, &log);

    let ours = fs_bucket();
    ship_replicas(&ours, &dirs);
    let log = strata_compact_once(&ours, &DEDUP_FLAGS);
    let ours_block = compacted(&ours.root, &log);
    assert_same_blocks("penalty deduplication", &ours_block, &theirs_block);

    // The chained merge of the same blocks keeps every sample of both replicas.
    let chained = fs_bucket();
    ship_replicas(&chained, &dirs);
    let log = strata_compact_once(&chained, &DEDUP_FLAGS[..1]);
    let chained_samples = Block::open(&compacted(&chained.root, &log)).expect("open").meta().stats.num_samples;
    let penalty_samples = Block::open(&ours_block).expect("open").meta().stats.num_samples;
    assert!(
        penalty_samples * 3 < chained_samples * 2,
        "penalty merge kept {penalty_samples} samples, the chained merge {chained_samples}"
    );
}
