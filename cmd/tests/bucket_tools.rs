//! `strata tools bucket verify|mark|cleanup|retention|downsample|replicate|rewrite` against a
//! real S3 server (moto, one shared by the tests of this binary, a bucket per case) and the
//! real Thanos:
//! - verify: a clean bucket passes with strata and with `thanos tools bucket verify`; overlapping
//!   blocks and a block with broken index bytes are reported by both, `--issues` and `--id`
//!   narrow the check; a duplicated block (Thanos's `duplicated_compaction`) is reported by
//!   both and removed by `--repair`, after which Thanos's verify passes;
//! - mark: strata's marks are honoured by `thanos compact` (no-compact) and `thanos tools bucket
//!   cleanup` (deletion), Thanos's marks by `strata compact` (no-compact, no-downsample) and
//!   `strata tools bucket cleanup`; `--remove` and `strata tools bucket downsample` then
//!   downsample the block;
//! - retention and cleanup leave two identical buckets the same under strata's and Thanos's tool;
//! - replicate copies the matching blocks (not marked, not partial ones) once;
//! - rewrite: after `--delete-blocks` a store over the bucket no longer returns the deleted
//!   series and the rest unchanged; `--rewrite.to-relabel-config` (alone, with deletions,
//!   dropping every series, merging series) writes the block, the change log and
//!   `relabels_applied` Thanos's rewrite writes; malformed relabel configs are refused;
//! - bad input fails naming what is wrong and changes nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::blocks::{ship, write_block_in, Series};
use common::corpus;
use strata_shipper::markers::{DELETION_MARK_FILENAME, NO_COMPACT_MARK_FILENAME, NO_DOWNSAMPLE_MARK_FILENAME};
use strata_shipper::{Bucket, MetaFetcher};
use strata_testkit::{peer, wait_for, Fleet, Moto, Node, Proc};
use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::Labels;
use ulid::Ulid;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// One moto server for the tests running at the same time: started by the first, stopped when
/// the last lets go.
struct SharedMoto {
    moto: Moto,
    _dir: tempfile::TempDir,
}

fn moto() -> Arc<SharedMoto> {
    static SHARED: Mutex<Weak<SharedMoto>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = shared.upgrade() {
        return m;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let m = Arc::new(SharedMoto { moto: Moto::start(dir.path()), _dir: dir });
    *shared = Arc::downgrade(&m);
    m
}

/// A bucket of the shared moto with its config file and a client.
struct Env {
    moto: Arc<SharedMoto>,
    work: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

struct TestBucket {
    config_file: PathBuf,
    bucket: Bucket,
}

impl Env {
    fn new() -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        Env { moto: moto(), work: tempfile::tempdir().expect("temp dir"), rt }
    }

    fn yaml(&self, name: &str) -> String {
        strata_testkit::s3_objstore_yaml(self.moto.moto.port, name, "")
    }

    /// A new bucket (created in moto unless `create` is false).
    fn bucket(&self, name: &str, create: bool) -> TestBucket {
        if create {
            self.moto.moto.create_bucket(name);
        }
        let yaml = self.yaml(name);
        let config_file = self.work.path().join(format!("{name}.yml"));
        std::fs::write(&config_file, &yaml).expect("write objstore config");
        let bucket =
            strata_shipper::parse_objstore_config(&yaml, "objstore.yml").expect("config").build().expect("bucket");
        TestBucket { config_file, bucket }
    }

    /// Writes 2h blocks starting at each of `starts` (ms) and ships them as `labels`' stream;
    /// returns their ULIDs in the order of `starts`.
    fn ship_blocks(&self, b: &TestBucket, labels: &[(&str, &str)], starts: &[(i64, i64)]) -> Vec<Ulid> {
        let dir = tempfile::tempdir_in(self.work.path()).expect("blocks dir");
        let ids: Vec<Ulid> = starts
            .iter()
            .map(|&(from, to)| write_block_in(dir.path(), &series(from, to), Some((from, to))).expect("write block"))
            .collect();
        ship(&self.rt, &b.bucket, dir.path(), labels).expect("ship");
        ids
    }

    /// Every block's meta and the deletion-marked ones.
    fn blocks(&self, b: &TestBucket) -> (BTreeMap<Ulid, BlockMeta>, BTreeSet<Ulid>) {
        let fetched = self
            .rt
            .block_on(MetaFetcher::new(b.bucket.clone()).with_deletion_mark_delay(Duration::MAX).fetch())
            .expect("fetch");
        (fetched.metas, fetched.deletion_marks.keys().copied().collect())
    }

    /// Every object key of the bucket.
    fn objects(&self, b: &TestBucket) -> BTreeSet<String> {
        let list = self.rt.block_on(b.bucket.list_recursive("")).expect("list");
        list.into_iter().map(|o| o.location.as_ref().to_owned()).collect()
    }

    fn has(&self, b: &TestBucket, key: &str) -> bool {
        self.rt.block_on(b.bucket.exists(key)).expect("head")
    }
}

/// Two series of a minute's samples over `[from, to)`: a counter and a gauge.
fn series(from: i64, to: i64) -> Vec<Series> {
    let times: Vec<i64> = (from..to).step_by(MINUTE as usize).collect();
    vec![
        (
            Labels::from_pairs(&[("__name__", "app_requests_total"), ("job", "api")]),
            times.iter().enumerate().map(|(i, &t)| (t, i as f64 * 3.0)).collect(),
        ),
        (
            Labels::from_pairs(&[("__name__", "secret_metric"), ("job", "api")]),
            times.iter().enumerate().map(|(i, &t)| (t, (i % 7) as f64)).collect(),
        ),
    ]
}

/// Runs `strata tools bucket <args>` with the bucket's config.
fn strata(b: &TestBucket, args: &[&str]) -> Output {
    let mut cmd = Command::new(common::strata_bin());
    cmd.args(["tools", "bucket"]).args(&args[..1]).arg("--objstore.config-file").arg(&b.config_file);
    cmd.args(&args[1..]).env_remove("RUST_BACKTRACE").output().expect("run strata tools bucket")
}

/// Runs `thanos tools bucket <args>` with the bucket's config; returns stdout and stderr.
fn thanos(b: &TestBucket, args: &[&str]) -> (bool, String) {
    let out = Command::new(peer("thanos"))
        .args(["tools", "bucket"])
        .args(&args[..1])
        .arg("--objstore.config-file")
        .arg(&b.config_file)
        .args(&args[1..])
        .output()
        .expect("run thanos tools bucket");
    (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// `thanos tools bucket verify` passes: no warning or error logged.
fn thanos_verify_passes(b: &TestBucket) {
    let (success, log) = thanos(b, &["verify"]);
    assert!(success && !log.contains("level=warn") && !log.contains("level=error"), "thanos verify:\n{log}");
}

/// A compactor run (strata's or Thanos's) over the bucket, once.
fn compact(env: &Env, b: &TestBucket, program: &Path, name: &str, flags: &[&str]) -> String {
    let log = env.work.path().join(format!("{name}.log"));
    let mut cmd = Command::new(program);
    cmd.arg("compact").arg("--objstore.config-file").arg(&b.config_file);
    cmd.arg("--data-dir").arg(env.work.path().join(format!("{name}-data")));
    cmd.args(["--consistency-delay=0s", "--http-address=127.0.0.1:0"]).args(flags);
    let status = Proc::spawn(name, cmd, &log).wait(Duration::from_secs(120));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{name} failed: {status}\n{text}");
    text
}

/// The start of an 8h window `days` days ago (so 2h blocks from it are planned together).
fn days_ago(days: i64) -> i64 {
    (now_ms() - days * DAY) / (8 * HOUR) * (8 * HOUR)
}

#[test]
fn verify_reports_what_thanos_reports() {
    let env = Env::new();
    let b = env.bucket("verify", true);
    let t0 = days_ago(3);
    env.ship_blocks(&b, &[("cluster", "clean")], &[(t0, t0 + 2 * HOUR), (t0 + 2 * HOUR, t0 + 4 * HOUR)]);
    let out = ok(&strata(&b, &["verify"]), "strata verify of a clean bucket");
    assert_eq!(out, "", "no problem lines");
    thanos_verify_passes(&b);

    // Overlapping blocks of one stream, and a block whose index bytes are broken (same size,
    // so it uploads and downloads).
    let overlapping =
        env.ship_blocks(&b, &[("cluster", "overlap")], &[(t0, t0 + 2 * HOUR), (t0 + HOUR, t0 + 3 * HOUR)]);
    let dir = tempfile::tempdir_in(env.work.path()).expect("dir");
    let corrupt = write_block_in(dir.path(), &series(t0, t0 + 2 * HOUR), Some((t0, t0 + 2 * HOUR))).expect("write");
    let index = dir.path().join(corrupt.to_string()).join("index");
    let mut bytes = std::fs::read(&index).expect("read index");
    for x in &mut bytes[20..60] {
        *x ^= 0x5a;
    }
    std::fs::write(&index, &bytes).expect("write index");
    ship(&env.rt, &b.bucket, dir.path(), &[("cluster", "corrupt")]).expect("ship");

    let before = env.objects(&b);
    let out = strata(&b, &["verify"]);
    assert!(!out.status.success(), "verify passed a bad bucket");
    let lines = text(&out.stdout);
    let overlap_line =
        lines.lines().find(|l| l.starts_with("issue=overlapped_blocks")).unwrap_or_else(|| panic!("{lines}"));
    for id in &overlapping {
        assert!(overlap_line.contains(&id.to_string()), "{overlap_line}");
    }
    let index_line =
        lines.lines().find(|l| l.starts_with("issue=index_known_issues")).unwrap_or_else(|| panic!("{lines}"));
    assert!(index_line.contains(&format!("block={corrupt}")), "{index_line}");
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(text(&out.stderr).contains("2 problem(s) found"), "{}", text(&out.stderr));
    let (_, log) = thanos(&b, &["verify"]);
    let warns: Vec<&str> = log.lines().filter(|l| l.contains("level=warn")).collect();
    assert!(
        warns.iter().any(|l| l.contains("overlapped") && overlapping.iter().all(|id| l.contains(&id.to_string()))),
        "{log}"
    );
    assert!(warns.iter().any(|l| l.contains(&corrupt.to_string())), "thanos does not report the corrupt block:\n{log}");

    // Narrowed by issue and by block.
    let only_overlaps = strata(&b, &["verify", "--issues=overlapped_blocks"]);
    assert_eq!(text(&only_overlaps.stdout).lines().count(), 1, "{}", text(&only_overlaps.stdout));
    let one = strata(&b, &["verify", &format!("--id={corrupt}"), "-i", "index_known_issues"]);
    assert!(!one.status.success() && text(&one.stdout).lines().count() == 1, "{}", text(&one.stdout));
    let clean_id = overlapping[0];
    let fine = strata(&b, &["verify", &format!("--id={clean_id}"), "--issues=index_known_issues"]);
    ok(&fine, "verify of one sound block");
    assert_eq!(env.objects(&b), before, "verify changed the bucket");
}

#[test]
fn verify_repair_leaves_a_bucket_thanos_verify_passes() {
    let env = Env::new();
    let b = env.bucket("repair", true);
    let backup = env.bucket("repair-backup", true);
    let t0 = days_ago(3);
    // A block whose meta.json says it ends an hour before its last chunk does: a chunk outside
    // the block's range, which Thanos's verifier reports and repairs.
    let dir = tempfile::tempdir_in(env.work.path()).expect("dir");
    let broken = write_block_in(dir.path(), &series(t0, t0 + 3 * HOUR), Some((t0, t0 + 3 * HOUR))).expect("write");
    let block_dir = dir.path().join(broken.to_string());
    let mut meta = BlockMeta::read(&block_dir).expect("meta");
    meta.max_time = t0 + 2 * HOUR;
    meta.write(&block_dir).expect("write meta");
    ship(&env.rt, &b.bucket, dir.path(), &[("cluster", "eu")]).expect("ship");
    let fine = env.ship_blocks(&b, &[("cluster", "eu")], &[(t0 + 2 * HOUR, t0 + 4 * HOUR)])[0];

    let out = strata(&b, &["verify"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(&format!("issue=index_known_issues block={broken}")), "{}", text(&out.stdout));
    let (_, log) = thanos(&b, &["verify"]);
    assert!(log.lines().any(|l| l.contains("level=warn") && l.contains(&broken.to_string())), "{log}");

    let no_backup = strata(&b, &["verify", "--repair"]);
    assert!(!no_backup.status.success() && text(&no_backup.stderr).contains("--objstore-backup.config-file"));
    let backup_flag = format!("--objstore-backup.config-file={}", backup.config_file.display());
    let out = ok(&strata(&b, &["verify", "--repair", &backup_flag]), "verify --repair");
    assert!(out.contains("repaired as"), "{out}");
    thanos_verify_passes(&b);
    ok(&strata(&b, &["verify"]), "strata verify after the repair");
    let (metas, _) = env.blocks(&b);
    assert!(!metas.contains_key(&broken) && metas.contains_key(&fine), "{:?}", metas.keys());
    let repaired: Vec<&BlockMeta> = metas.values().filter(|m| m.ulid != fine).collect();
    assert_eq!(repaired.len(), 1);
    assert_eq!(repaired[0].thanos.as_ref().map(|t| t.source.as_str()), Some("bucket.repair"));
    assert_eq!((repaired[0].min_time, repaired[0].max_time), (t0, t0 + 2 * HOUR));
    assert_eq!(repaired[0].stats.num_samples, 2 * 120, "the chunks inside the range are kept");
    assert!(env.blocks(&backup).0.contains_key(&broken), "the broken block is not in the backup bucket");
}

#[test]
fn duplicated_compaction_is_reported_and_repaired_as_thanos() {
    let env = Env::new();
    let b = env.bucket("duplicated", true);
    let backup = env.bucket("duplicated-backup", true);
    let t0 = days_ago(3);
    // A block and an exact copy of it under another ULID: same range, level, sources, stats.
    let dir = tempfile::tempdir_in(env.work.path()).expect("dir");
    let original = write_block_in(dir.path(), &series(t0, t0 + 2 * HOUR), Some((t0, t0 + 2 * HOUR))).expect("write");
    let copy = Ulid::new();
    let (from, to) = (dir.path().join(original.to_string()), dir.path().join(copy.to_string()));
    std::fs::create_dir_all(to.join("chunks")).expect("mkdir");
    for file in ["index", "tombstones", "chunks/000001"] {
        std::fs::copy(from.join(file), to.join(file)).expect("copy block file");
    }
    let mut meta = BlockMeta::read(&from).expect("meta");
    meta.ulid = copy;
    meta.write(&to).expect("write meta");
    ship(&env.rt, &b.bucket, dir.path(), &[("cluster", "eu")]).expect("ship");

    let (_, log) = thanos(&b, &["verify", "--issues=duplicated_compaction"]);
    let found = log.lines().find(|l| l.contains("Found duplicated blocks")).unwrap_or_else(|| panic!("{log}"));
    // Which of the two Thanos keeps depends on its sort; strata keeps the older ULID.
    let names_one = found.contains(&copy.to_string()) || found.contains(&original.to_string());
    assert!(found.contains("num=1") && names_one, "{found}");
    let out = strata(&b, &["verify", "--issues=duplicated_compaction"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let line = text(&out.stdout);
    let (kept, duplicate) = (original.min(copy), original.max(copy));
    assert!(
        line.starts_with(&format!("issue=duplicated_compaction block={duplicate} "))
            && line.contains(&kept.to_string()),
        "{line}"
    );
    let with_id = strata(&b, &["verify", "--issues=duplicated_compaction", &format!("--id={duplicate}")]);
    assert!(!with_id.status.success() && text(&with_id.stderr).contains("--id is not supported"));

    let backup_flag = format!("--objstore-backup.config-file={}", backup.config_file.display());
    ok(&strata(&b, &["verify", "--issues=duplicated_compaction", "--repair", &backup_flag]), "verify --repair");
    let (metas, _) = env.blocks(&b);
    assert_eq!(metas.keys().copied().collect::<Vec<_>>(), [kept]);
    assert!(env.blocks(&backup).0.contains_key(&duplicate), "the duplicate is not in the backup bucket");
    thanos_verify_passes(&b);
    ok(&strata(&b, &["verify", "--issues=duplicated_compaction", "--issues=overlapped_blocks"]), "verify after");
}

#[test]
fn marks_are_honoured_both_ways() {
    let env = Env::new();
    let t0 = days_ago(3);
    let windows: Vec<(i64, i64)> = (0..5).map(|i| (t0 + i * 2 * HOUR, t0 + (i + 1) * 2 * HOUR)).collect();

    // strata's no-compact mark, thanos compact; then Thanos's mark, strata compact.
    for (marker, compactor) in [("strata", "thanos"), ("thanos", "strata")] {
        let b = env.bucket(&format!("nocompact-{marker}"), true);
        let ids = env.ship_blocks(&b, &[("cluster", "eu")], &windows);
        let id = ids[2].to_string();
        let args = ["mark", "--id", &id, "--marker", NO_COMPACT_MARK_FILENAME, "--details", "keep it apart"];
        if marker == "strata" {
            ok(&strata(&b, &args), "strata mark");
            let (success, log) = thanos(&b, &["inspect"]);
            assert!(success && log.contains(&id), "thanos inspect does not list the marked block:\n{log}");
        } else {
            let (success, log) = thanos(&b, &args);
            assert!(success, "{log}");
        }
        let program = if compactor == "strata" { common::strata_bin().to_path_buf() } else { peer("thanos") };
        let log = compact(&env, &b, &program, &format!("{compactor}-compact-nc"), &["--downsampling.disable"]);
        let (metas, marked) = env.blocks(&b);
        assert!(!marked.contains(&ids[2]), "the no-compact block was compacted away\n{log}");
        assert!(marked.contains(&ids[0]) && marked.contains(&ids[1]), "the blocks before it were not compacted\n{log}");
        for m in metas.values().filter(|m| m.compaction.level > 1) {
            assert!(!m.compaction.sources.contains(&ids[2]), "{compactor} compacted the no-compact block\n{log}");
        }
    }

    // Deletion marks: each side's cleanup deletes the other's marked block.
    let b = env.bucket("deletion-marks", true);
    let ids = env.ship_blocks(&b, &[("cluster", "eu")], &windows[..2]);
    let (a, c) = (ids[0].to_string(), ids[1].to_string());
    ok(&strata(&b, &["mark", "--id", &a, "--marker", DELETION_MARK_FILENAME, "--details", "by strata"]), "mark");
    let (success, log) = thanos(&b, &["cleanup", "--delete-delay=0s", "--consistency-delay=0s"]);
    assert!(success, "{log}");
    assert!(!env.objects(&b).iter().any(|k| k.starts_with(&a)), "thanos cleanup kept strata's marked block:\n{log}");
    let (success, log) =
        thanos(&b, &["mark", "--id", &c, "--marker", DELETION_MARK_FILENAME, "--details", "by thanos"]);
    assert!(success, "{log}");
    ok(&strata(&b, &["cleanup", "--delete-delay=0s", "--consistency-delay=0s"]), "strata cleanup");
    assert!(env.objects(&b).is_empty(), "strata cleanup kept thanos's marked block: {:?}", env.objects(&b));

    // No-downsample: a 40h block, marked by Thanos, is not downsampled by strata compact; once
    // the mark is removed, strata's downsample tool does it.
    let b = env.bucket("nodownsample", true);
    let long = env.ship_blocks(&b, &[("cluster", "eu")], &[(t0 - 40 * HOUR, t0)])[0].to_string();
    let (success, log) =
        thanos(&b, &["mark", "--id", &long, "--marker", NO_DOWNSAMPLE_MARK_FILENAME, "--details", "raw only"]);
    assert!(success, "{log}");
    let log = compact(&env, &b, common::strata_bin(), "strata-compact-nd", &[]);
    let (metas, _) = env.blocks(&b);
    assert_eq!(metas.len(), 1, "the no-downsample block was downsampled\n{log}");
    assert!(log.contains("no-downsample"), "{log}");
    let removed =
        ok(&strata(&b, &["mark", "--id", &long, "--marker", NO_DOWNSAMPLE_MARK_FILENAME, "--remove"]), "remove");
    assert!(removed.contains("marker removed"), "{removed}");
    assert!(!env.has(&b, &format!("{long}/{NO_DOWNSAMPLE_MARK_FILENAME}")));
    let data = env.work.path().join("downsample-data");
    let data = data.to_str().unwrap();
    ok(&strata(&b, &["downsample", "--data-dir", data, "--downsample.concurrency=2"]), "strata downsample");
    let (metas, _) = env.blocks(&b);
    let resolutions: Vec<i64> =
        metas.values().map(|m| m.thanos.as_ref().map_or(0, |t| t.downsample.resolution)).collect();
    assert_eq!(resolutions.iter().filter(|&&r| r == 5 * MINUTE).count(), 1, "{resolutions:?}");
    thanos_verify_passes(&b);
}

#[test]
fn retention_and_cleanup_leave_the_bucket_as_thanos_does() {
    let env = Env::new();
    let recent = (now_ms() - 4 * HOUR) / (2 * HOUR) * (2 * HOUR);
    let old = days_ago(10);
    let dir = tempfile::tempdir_in(env.work.path()).expect("dir");
    for (from, to) in [(old, old + 2 * HOUR), (old + 2 * HOUR, old + 4 * HOUR), (recent, recent + 2 * HOUR)] {
        write_block_in(dir.path(), &series(from, to), Some((from, to))).expect("write");
    }
    let abandoned = Ulid::from_parts((now_ms() - 3 * DAY) as u64, 7);
    let buckets: Vec<TestBucket> = ["retention-strata", "retention-thanos"].map(|n| env.bucket(n, true)).into();
    for b in &buckets {
        // The same blocks in both buckets: the shipper's state file is dropped in between.
        let _ = std::fs::remove_file(dir.path().join(strata_shipper::STATE_FILENAME));
        ship(&env.rt, &b.bucket, dir.path(), &[("cluster", "eu")]).expect("ship");
        env.rt.block_on(b.bucket.put_bytes(&format!("{abandoned}/chunks/000001"), vec![1u8; 16].into())).expect("put");
    }
    let flags = ["--retention.resolution-raw=5d", "--consistency-delay=0s"];
    ok(&strata(&buckets[0], &[&["retention"][..], &flags].concat()), "strata retention");
    let (success, log) = thanos(&buckets[1], &[&["retention"][..], &flags].concat());
    assert!(success, "{log}");
    let (_, strata_marked) = env.blocks(&buckets[0]);
    let (_, thanos_marked) = env.blocks(&buckets[1]);
    assert_eq!(strata_marked.len(), 2, "the two old blocks are marked");
    assert_eq!(strata_marked, thanos_marked, "strata and thanos retention marked different blocks");

    let flags = ["--delete-delay=0s", "--consistency-delay=0s"];
    ok(&strata(&buckets[0], &[&["cleanup"][..], &flags].concat()), "strata cleanup");
    let (success, log) = thanos(&buckets[1], &[&["cleanup"][..], &flags].concat());
    assert!(success, "{log}");
    // An upload is abandoned once its ULID is two days old for strata; Thanos v0.42 goes by its
    // objects' modification time (here: just now), so only strata deletes it.
    let partial = |k: &String| k.starts_with(&abandoned.to_string());
    let (left_strata, left_thanos) = (env.objects(&buckets[0]), env.objects(&buckets[1]));
    assert!(!left_strata.iter().any(partial), "abandoned upload kept");
    let left_thanos: BTreeSet<String> = left_thanos.into_iter().filter(|k| !partial(k)).collect();
    assert_eq!(left_strata, left_thanos, "strata and thanos cleanup left different objects");
    assert_eq!(env.blocks(&buckets[0]).0.len(), 1, "{left_strata:?}");
    thanos_verify_passes(&buckets[0]);
}

#[test]
fn replicate_copies_matching_blocks_once() {
    let env = Env::new();
    let from = env.bucket("replicate-from", true);
    let to = env.bucket("replicate-to", true);
    let t0 = days_ago(3);
    let eu = env.ship_blocks(
        &from,
        &[("cluster", "eu")],
        &[(t0, t0 + 2 * HOUR), (t0 + 2 * HOUR, t0 + 4 * HOUR), (t0 + 4 * HOUR, t0 + 6 * HOUR)],
    );
    let us = env.ship_blocks(&from, &[("cluster", "us")], &[(t0, t0 + 2 * HOUR)]);
    ok(
        &strata(&from, &["mark", "--id", &eu[2].to_string(), "--marker", DELETION_MARK_FILENAME, "--details", "gone"]),
        "mark",
    );
    let partial = Ulid::new();
    env.rt.block_on(from.bucket.put_bytes(&format!("{partial}/index"), vec![0u8; 8].into())).expect("put");

    let to_flag = format!("--objstore-to.config-file={}", to.config_file.display());
    let out = ok(&strata(&from, &["replicate", &to_flag, "--matcher", r#"cluster="eu""#, "--single-run"]), "replicate");
    assert_eq!(out.lines().count(), 2, "{out}");
    let (metas, _) = env.blocks(&to);
    assert_eq!(metas.keys().copied().collect::<BTreeSet<_>>(), BTreeSet::from([eu[0], eu[1]]));
    let (success, ls) = thanos(&to, &["ls"]);
    assert!(success && ls.contains(&eu[0].to_string()) && ls.contains(&eu[1].to_string()), "{ls}");
    assert!(!ls.contains(&us[0].to_string()) && !ls.contains(&eu[2].to_string()), "{ls}");
    thanos_verify_passes(&to);
    let objects = env.objects(&to);
    assert!(!objects.iter().any(|k| k.starts_with(&partial.to_string()) || k.contains(DELETION_MARK_FILENAME)));

    // Again: nothing to copy.
    let again = strata(&from, &["replicate", &to_flag, "--matcher", r#"cluster="eu""#, "--single-run"]);
    assert_eq!(ok(&again, "replicate again"), "");
    assert!(text(&again.stderr).contains("replicated 0 blocks"), "{}", text(&again.stderr));
    assert_eq!(env.objects(&to), objects, "a second run changed the target");
    // By id, whatever the matchers.
    let by_id = strata(&from, &["replicate", &to_flag, "--id", &us[0].to_string(), "--matcher", r#"cluster="eu""#]);
    assert_eq!(ok(&by_id, "replicate by id").trim(), format!("{} replicated", us[0]));
    // Without --single-run: a run every minute, its metrics on --http-address, until SIGTERM.
    let late = env.ship_blocks(&from, &[("cluster", "eu")], &[(t0 + 6 * HOUR, t0 + 8 * HOUR)])[0];
    let port = strata_testkit::free_port();
    let mut cmd = Command::new(common::strata_bin());
    cmd.args(["tools", "bucket", "replicate", "--objstore.config-file"]).arg(&from.config_file);
    cmd.args([to_flag.as_str(), "--matcher", r#"cluster="eu""#, &format!("--http-address=127.0.0.1:{port}")]);
    let proc = Proc::spawn("strata replicate", cmd, &env.work.path().join("replicate.log"));
    wait_for("a replication run counted", Duration::from_secs(60), || {
        let (_, body) = strata_testkit::http::get(&format!("127.0.0.1:{port}"), "/metrics")?;
        let replicated = strata_testkit::metrics::metric_sum(&body, "thanos_replicate_blocks_replicated_total");
        let runs =
            strata_testkit::metrics::metric_sum(&body, "thanos_replicate_replication_runs_total{result=\"success\"}");
        match (replicated, runs) {
            (Some(r), Some(n)) if r == 1.0 && n >= 1.0 => Ok(()),
            _ => Err(body),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(proc.terminate(Duration::from_secs(10)).success(), "replicate did not stop on SIGTERM");
    assert!(env.blocks(&to).0.contains_key(&late));
    // A regex matcher matching nothing more.
    let none = strata(&from, &["replicate", &to_flag, "--matcher", r#"cluster=~"a.*""#, "--single-run"]);
    assert_eq!(ok(&none, "replicate none"), "");
}

/// strata store + strata query over the bucket; the answers to `queries` over `[from, to)`.
fn answers(env: &Env, b: &TestBucket, label: &str, queries: &[&str], from: i64, to: i64) -> Vec<corpus::Answer> {
    let mut fleet = Fleet::new(&env.work.path().join(format!("fleet-{label}")));
    let store = fleet.slot("store");
    let mut args: Vec<OsString> = vec!["store".into(), "--objstore.config-file".into(), b.config_file.clone().into()];
    args.extend(["--data-dir".into(), store.data_dir.clone().into_os_string()]);
    args.extend(["--http-address", &store.http, "--grpc-address", &store.grpc].map(OsString::from));
    // Blocks marked for deletion are hidden at once, as they are after the usual delay.
    args.push("--ignore-deletion-marks-delay=0s".into());
    let _store = Node::start(common::strata_bin(), &store, args);
    let query = fleet.slot("query");
    let query_node = Node::start(common::strata_bin(), &query, query.query_args(&[&store.grpc]));
    let eval = corpus::Eval::Range { start: from + 7 * MINUTE, end: to - MINUTE, step: 10 * MINUTE };
    let probe = eval.path("count(app_requests_total)");
    wait_for("query to see the blocks", Duration::from_secs(60), || match corpus::ask(query_node.http(), &probe) {
        Ok(corpus::Answer::Data { series, .. }) if !series.is_empty() => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    queries.iter().map(|q| corpus::ask(query_node.http(), &eval.path(q)).expect("answer")).collect()
}

#[test]
fn rewrite_deletes_series_for_readers() {
    let env = Env::new();
    let b = env.bucket("rewrite", true);
    let t0 = days_ago(3);
    let ids = env.ship_blocks(&b, &[("cluster", "eu")], &[(t0, t0 + 2 * HOUR), (t0 + 2 * HOUR, t0 + 4 * HOUR)]);
    let queries = ["app_requests_total", "secret_metric", "rate(app_requests_total[5m])"];
    let before = answers(&env, &b, "before", &queries, t0, t0 + 4 * HOUR);
    let config = env.work.path().join("delete.yml");
    std::fs::write(&config, "- matchers: '{__name__=\"secret_metric\", job=\"api\"}'\n").expect("write");
    let config = format!("--rewrite.to-delete-config-file={}", config.display());
    let tmp = format!("--tmp.dir={}", env.work.path().join("rewrite-tmp").display());
    let id_flags: Vec<String> = ids.iter().map(|id| format!("--id={id}")).collect();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a = vec!["rewrite".to_owned(), config.clone(), tmp.clone()];
        a.extend(id_flags.iter().cloned());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        strata(&b, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let objects = env.objects(&b);
    let dry = ok(&run(&[]), "dry run");
    assert_eq!(dry.lines().count(), 2, "{dry}");
    assert!(dry.lines().all(|l| l.contains("would delete 1 series, 1 chunks, 120 samples")), "{dry}");
    assert_eq!(env.objects(&b), objects, "a dry run changed the bucket");

    let done = ok(&run(&["--no-dry-run", "--delete-blocks"]), "rewrite");
    assert!(done.lines().all(|l| l.contains("deleted 1 series")), "{done}");
    let (metas, marked) = env.blocks(&b);
    assert_eq!(marked, ids.iter().copied().collect(), "sources not marked for deletion");
    let new: Vec<&BlockMeta> = metas.values().filter(|m| !ids.contains(&m.ulid)).collect();
    assert_eq!(new.len(), 2);
    for m in &new {
        let t = m.thanos.as_ref().expect("thanos section");
        assert_eq!(t.source, "bucket.rewrite");
        assert_eq!(m.compaction.sources, vec![m.ulid]);
        assert_eq!(t.labels, BTreeMap::from([("cluster".to_owned(), "eu".to_owned())]));
        let rewrites = t.rewrites.as_ref().expect("rewrites");
        assert_eq!(rewrites[0]["deletions_applied"][0]["matchers"][0]["Value"], "secret_metric", "{rewrites}");
        assert_eq!(m.stats.num_series, 1);
    }
    thanos_verify_passes(&b);

    let after = answers(&env, &b, "after", &queries, t0, t0 + 4 * HOUR);
    match &after[1] {
        corpus::Answer::Data { series, .. } => assert!(series.is_empty(), "deleted series returned: {series:?}"),
        other => panic!("{other:?}"),
    }
    for i in [0, 2] {
        if let Some(diff) = corpus::compare(&after[i], &before[i], false, ("after", "before")) {
            panic!("{}: {diff}", queries[i]);
        }
    }
}

/// A deletion with time intervals removes only the samples inside them, as Thanos's rewrite
/// does: the same block rewritten by both tools holds the same series, chunks' samples and
/// sample count.
#[test]
fn rewrite_with_intervals_deletes_the_samples_thanos_deletes() {
    let env = Env::new();
    let t0 = days_ago(3);
    let config = env.work.path().join("delete-intervals.yml");
    // Half an hour of both series (31 samples each, the bounds included), and a minute of the
    // counter's job that a second request names.
    std::fs::write(
        &config,
        format!(
            "- matchers: '{{job=\"api\"}}'\n  intervals:\n  - mint: {}\n    maxt: {}\n\
             - matchers: '{{__name__=\"app_requests_total\"}}'\n  intervals: [{{mint: {}, maxt: {}}}]\n",
            t0 + 10 * MINUTE,
            t0 + 40 * MINUTE,
            t0 + 90 * MINUTE,
            t0 + 90 * MINUTE
        ),
    )
    .expect("write");
    let config = format!("--rewrite.to-delete-config-file={}", config.display());
    let mut rewritten = Vec::new();
    for tool in ["strata", "thanos"] {
        let b = env.bucket(&format!("rewrite-intervals-{tool}"), true);
        let id = env.ship_blocks(&b, &[("cluster", "eu")], &[(t0, t0 + 2 * HOUR)])[0];
        let tmp = format!("--tmp.dir={}", env.work.path().join(format!("{tool}-tmp")).display());
        let args = ["rewrite", &config, &tmp, &format!("--id={id}"), "--no-dry-run"];
        if tool == "strata" {
            ok(&strata(&b, &args), "strata rewrite");
        } else {
            let (success, log) = thanos(&b, &args);
            assert!(success, "thanos rewrite:\n{log}");
        }
        let (metas, _) = env.blocks(&b);
        let new = metas.into_values().find(|m| m.ulid != id).expect("a rewritten block");
        let dir = env.work.path().join(format!("{tool}-check"));
        let block = env.rt.block_on(strata_shipper::download_block(&b.bucket, new.ulid, &dir, 2)).expect("download");
        let block = strata_tsdb::block::Block::open(&block).expect("open");
        let samples: Vec<(Labels, Vec<i64>)> = block
            .select(&[], i64::MIN, i64::MAX)
            .expect("select")
            .into_iter()
            .map(|s| {
                let times = s
                    .chunks
                    .iter()
                    .flat_map(|c| strata_tsdb::chunkenc::XorIter::new(&c.data).expect("chunk").map(|(t, _)| t))
                    .collect();
                (s.labels, times)
            })
            .collect();
        rewritten.push((new.stats.num_samples, samples));
    }
    assert_eq!(rewritten[0].0, 2 * 120 - 2 * 31 - 1, "strata's sample count");
    assert_eq!(rewritten[0], rewritten[1], "strata's rewrite differs from Thanos's");
}

#[test]
fn bad_input_fails_and_changes_nothing() {
    let env = Env::new();
    let b = env.bucket("bad-input", true);
    let t0 = days_ago(3);
    let id = env.ship_blocks(&b, &[("cluster", "eu")], &[(t0, t0 + 2 * HOUR)])[0].to_string();
    let missing = env.bucket("no-such-bucket", false);
    let to_flag = format!("--objstore-to.config-file={}", b.config_file.display());
    let config = env.work.path().join("bad-delete.yml");
    std::fs::write(&config, "- matchers: '{__name__=\"x\"'\n").expect("write");
    let bad_config = format!("--rewrite.to-delete-config-file={}", config.display());
    let fresh = Ulid::new().to_string();
    let to_missing = format!("--objstore-to.config-file={}", missing.config_file.display());
    let cases: Vec<(&TestBucket, Vec<&str>, &str)> = vec![
        (&b, vec!["mark", "--id", &id, "--marker", "nope.json", "--details", "x"], "unknown marker"),
        (&b, vec!["mark", "--id", "not-a-ulid", "--marker", DELETION_MARK_FILENAME, "--details", "x"], "not-a-ulid"),
        (&b, vec!["mark", "--id", &id, "--marker", DELETION_MARK_FILENAME], "--details is required"),
        (
            &b,
            vec!["mark", "--id", &id, "--id", &fresh, "--marker", DELETION_MARK_FILENAME, "--details", "x"],
            "not in bucket",
        ),
        (&b, vec!["verify", "--issues", "everything"], "unknown issue"),
        (&b, vec!["verify", "--id", "01ARZ"], "not a block ULID"),
        (&b, vec!["verify", "--id", &fresh], "not in bucket"),
        (&b, vec!["replicate", &to_flag, "--matcher", "cluster=~\"(\""], "--matcher"),
        (&b, vec!["replicate", &to_flag, "--matcher", "cluster"], "--matcher"),
        (&b, vec!["replicate", "--single-run"], "--objstore-to.config"),
        (&b, vec!["replicate", &to_flag, "--resolution", "5x"], "--resolution"),
        (&b, vec!["rewrite", "--id", &id], "--rewrite.to-delete-config"),
        (&b, vec!["rewrite", "--id", &id, &bad_config], "bad-delete.yml"),
        (
            &b,
            vec!["rewrite", "--id", &id, "--rewrite.to-delete-config=- matchers: '{a=~\".*\"}'", "--no-dry-run"],
            "match every series",
        ),
        (
            &b,
            vec!["rewrite", "--id", &id, "--rewrite.to-delete-config=- matchers: '{}'", "--no-dry-run"],
            "no matcher given",
        ),
        (
            &b,
            vec!["rewrite", "--id", &id, "--rewrite.to-delete-config=- matchers: '{a=\"b\"}'", "--delete-blocks"],
            "--no-dry-run",
        ),
        (
            &b,
            vec!["rewrite", "--id", &fresh, "--rewrite.to-delete-config=- matchers: '{a=\"b\"}'", "--no-dry-run"],
            "not in bucket",
        ),
        (&b, vec!["retention", "--retention.resolution-raw=-1d"], "--retention.resolution-raw"),
        (&b, vec!["cleanup", "--delete-delay=forever"], "--delete-delay"),
        (&b, vec!["downsample", "--downsample.concurrency=many"], "--downsample.concurrency"),
        (&missing, vec!["verify"], "no-such-bucket"),
        (&missing, vec!["cleanup"], "no-such-bucket"),
        (&missing, vec!["retention", "--retention.resolution-raw=1d"], "no-such-bucket"),
        (&missing, vec!["replicate", &to_flag, "--single-run"], "no-such-bucket"),
        (&b, vec!["replicate", "--single-run", &to_missing], "no-such-bucket"),
    ];
    let objects = env.objects(&b);
    for (bucket, args, want) in cases {
        let out = strata(bucket, &args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted:\n{}", text(&out.stdout));
        assert!(err.contains(want), "{args:?}: error does not mention {want:?}:\n{err}");
        assert_eq!(env.objects(&b), objects, "{args:?} changed the bucket");
    }
    // Without any objstore flag and no standalone bucket here: the error says what to give.
    let work = tempfile::tempdir().expect("dir");
    for sub in ["verify", "cleanup", "mark"] {
        let out = Command::new(common::strata_bin())
            .current_dir(work.path())
            .args(["tools", "bucket", sub])
            .args(if sub == "mark" {
                vec!["--id", id.as_str(), "--marker", DELETION_MARK_FILENAME, "--details", "x"]
            } else {
                vec![]
            })
            .output()
            .expect("run");
        assert!(
            !out.status.success() && text(&out.stderr).contains("--objstore.config-file"),
            "{sub}: {}",
            text(&out.stderr)
        );
    }
}

/// What a rewritten block holds: its sample count, and per series its labels and sample
/// timestamps (values too, unless `values` is false).
type BlockContent = (u64, Vec<(String, Vec<(i64, Option<u64>)>)>);

fn block_content(env: &Env, b: &TestBucket, id: Ulid, dir: &Path, values: bool) -> BlockContent {
    let (metas, _) = env.blocks(b);
    let meta = &metas[&id];
    let block = env.rt.block_on(strata_shipper::download_block(&b.bucket, id, dir, 2)).expect("download");
    let block = strata_tsdb::block::Block::open(&block).expect("open");
    let series = block
        .select(&[], i64::MIN, i64::MAX)
        .expect("select")
        .into_iter()
        .map(|s| {
            let samples = s
                .chunks
                .iter()
                .flat_map(|c| strata_tsdb::chunkenc::XorIter::new(&c.data).expect("chunk"))
                .map(|(t, v)| (t, values.then_some(v.to_bits())))
                .collect();
            (s.labels.to_string(), samples)
        })
        .collect();
    (meta.stats.num_samples, series)
}

/// Relabelling (alone, with deletions, dropping everything, merging series) gives the block
/// Thanos's rewrite gives, the same change log and `relabels_applied`, and a bucket Thanos's
/// verify passes.
#[test]
fn rewrite_relabels_series_as_thanos_does() {
    let env = Env::new();
    let t0 = days_ago(3);
    let rename = "- source_labels: [__name__]\n  regex: secret_metric\n  target_label: __name__\n  replacement: renamed_metric\n\
                  - target_label: env\n  replacement: prod\n";
    let interval = format!("{{mint: {}, maxt: {}}}", t0 + 10 * MINUTE, t0 + 40 * MINUTE);
    let cases: Vec<(&str, String, Option<String>, bool)> = vec![
        ("relabel-only", rename.to_owned(), None, true),
        (
            "delete-and-relabel",
            rename.to_owned(),
            // Deletions see the relabelled series, as in Thanos.
            Some(format!(
                "- matchers: '{{__name__=\"renamed_metric\"}}'\n- matchers: '{{env=\"prod\"}}'\n  intervals: [{interval}]\n"
            )),
            true,
        ),
        ("drop-all", "- source_labels: [job]\n  regex: api\n  action: drop\n".to_owned(), None, true),
        // Both series become {job="api"}: merged, one sample per timestamp. Which series'
        // value wins a tie is the merge's own choice (Thanos's heap order), so only the
        // timestamps are compared.
        ("merge", "- action: labeldrop\n  regex: __name__\n".to_owned(), None, false),
    ];
    for (name, relabel, delete, values) in cases {
        let relabel_file = env.work.path().join(format!("{name}-relabel.yml"));
        std::fs::write(&relabel_file, &relabel).expect("write");
        let mut flags = vec![format!("--rewrite.to-relabel-config-file={}", relabel_file.display())];
        if let Some(delete) = &delete {
            let file = env.work.path().join(format!("{name}-delete.yml"));
            std::fs::write(&file, delete).expect("write");
            flags.push(format!("--rewrite.to-delete-config-file={}", file.display()));
        }
        let mut results = Vec::new();
        for tool in ["strata", "thanos"] {
            let b = env.bucket(&format!("relabel-{name}-{tool}"), true);
            let id = env.ship_blocks(&b, &[("cluster", "eu")], &[(t0, t0 + 2 * HOUR)])[0];
            let tmp = env.work.path().join(format!("{name}-{tool}-tmp"));
            let mut args = vec!["rewrite".to_owned(), format!("--tmp.dir={}", tmp.display()), format!("--id={id}")];
            args.extend(flags.iter().cloned());
            args.extend(["--no-dry-run".to_owned(), "--delete-blocks".to_owned()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if tool == "strata" {
                let out = ok(&strata(&b, &args), &format!("{name}: strata rewrite"));
                assert!(out.contains("relabelled"), "{name}: {out}");
            } else {
                let (success, log) = thanos(&b, &args);
                assert!(success, "{name}: thanos rewrite:\n{log}");
            }
            thanos_verify_passes(&b);
            let (metas, _) = env.blocks(&b);
            let new = metas.values().find(|m| m.ulid != id).expect("a rewritten block").clone();
            let rewrites = new.thanos.as_ref().and_then(|t| t.rewrites.clone()).expect("rewrites");
            let change_log = std::fs::read_to_string(tmp.join(new.ulid.to_string()).join("change.log"))
                .unwrap_or_else(|e| panic!("{name}: {tool}'s change.log: {e}"));
            let content =
                block_content(&env, &b, new.ulid, &env.work.path().join(format!("{name}-{tool}-check")), values);
            results.push((content, change_log, rewrites[0]["relabels_applied"].clone()));
        }
        let (ours, theirs) = (&results[0], &results[1]);
        assert_eq!(ours.0, theirs.0, "{name}: the rewritten block differs from Thanos's");
        assert_eq!(ours.1, theirs.1, "{name}: the change log differs from Thanos's");
        assert_eq!(ours.1.lines().count(), if name == "delete-and-relabel" { 4 } else { 2 }, "{name}: {}", ours.1);
        assert_eq!(ours.2, theirs.2, "{name}: relabels_applied differs from Thanos's");
        match name {
            "drop-all" => assert!(ours.0 .1.is_empty(), "{name}: {:?}", ours.0),
            "merge" => assert_eq!(ours.0 .1.len(), 1, "{name}: {:?}", ours.0),
            _ => assert!(ours.0 .1.iter().any(|(l, _)| l.contains("env=\"prod\"")), "{name}: {:?}", ours.0),
        }
    }
}

#[test]
fn rewrite_refuses_malformed_relabel_configs() {
    let env = Env::new();
    let b = env.bucket("relabel-bad", true);
    let t0 = days_ago(3);
    let id = env.ship_blocks(&b, &[("cluster", "eu")], &[(t0, t0 + 2 * HOUR)])[0].to_string();
    let file = env.work.path().join("bad-relabel.yml");
    std::fs::write(&file, "- action: [nope\n").expect("write");
    let file_flag = format!("--rewrite.to-relabel-config-file={}", file.display());
    let objects = env.objects(&b);
    for (flag, want) in [
        (file_flag.as_str(), "bad-relabel.yml"),
        ("--rewrite.to-relabel-config=- action: explode\n  source_labels: [a]", "--rewrite.to-relabel-config"),
        ("--rewrite.to-relabel-config=- source_labels: [a]\n  regex: '('\n  action: drop", "invalid regex"),
        ("--rewrite.to-relabel-config=- action: replace\n  source_labels: [a]", "target_label"),
        ("--rewrite.to-relabel-config=- action: hashmod\n  target_label: a", "modulus"),
        ("--rewrite.to-relabel-config=[]", "no relabel configs"),
        ("--rewrite.to-relabel-config=- {nope: 1}", "nope"),
    ] {
        let out = strata(&b, &["rewrite", "--id", &id, flag, "--no-dry-run"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{flag:?} accepted:\n{}", text(&out.stdout));
        assert!(err.contains(want), "{flag:?}: error does not mention {want:?}:\n{err}");
        assert!(!err.contains("panicked"), "{flag:?}: {err}");
        assert_eq!(env.objects(&b), objects, "{flag:?} changed the bucket");
    }
}
