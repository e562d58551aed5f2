//! `strata compact` end to end, against a real S3 server (moto) and the real Thanos:
//! - three days of data from two HA replicas (`replica="a"`/`"b"`, same samples, external
//!   label `cluster="eu"` as well) as 2h blocks; `strata compact
//!   --deduplication.replica-label=replica` (one pass) merges the replicas vertically and the
//!   levels up to a 2d block; `thanos tools bucket verify` passes on the result, the replica
//!   label is gone, every input is marked for deletion; range queries (raw selectors, rate,
//!   sum by, count) answer the same before (deduplicated by the queriers) and after, through
//!   `strata store` + `strata query` and through `thanos store` + `thanos query`; a pass with
//!   `--delete-delay=0s` then deletes the marked blocks and an abandoned upload, answers unchanged;
//! - a bucket compacted partly by `thanos compact` (8 hours of blocks) continues under
//!   `strata compact` once 10 more hours arrive, and the reverse, with no halt, the second
//!   building on the first's blocks, and the same answers;
//! - bad input: overlapping blocks without vertical compaction halt (metric, a log line naming
//!   the blocks, nothing marked or deleted); a corrupt block gets a no-compact mark with the
//!   reason and the others are compacted; bad flags fail before the bucket is touched;
//! - `strata compact` killed (SIGKILL) once it has uploaded a block: the answers do not change,
//!   and the next pass leaves every source block in exactly one live block.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::blocks::{ship, write_block_in, Series};
use common::corpus;
use strata_shipper::markers::{DeletionMark, NoCompactMark, DELETION_MARK_FILENAME, NO_COMPACT_MARK_FILENAME};
use strata_shipper::{Bucket, MetaFetcher};
use strata_testkit::metrics::metric_sum;
use strata_testkit::{http, peer, wait_for, FaultProxy, Fleet, Moto, Node, Proc};
use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::Labels;
use ulid::Ulid;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const SCRAPE: i64 = MINUTE;
const REPLICAS: [&str; 2] = ["a", "b"];

const QUERIES: [&str; 7] = [
    "app_temperature",
    r#"app_requests_total{job="api"}"#,
    "rate(app_requests_total[5m])",
    "sum by (job) (rate(app_requests_total[10m]))",
    "count(app_temperature)",
    "max_over_time(app_temperature[1h])",
    r#"count by (__name__) ({__name__=~"app_.*"})"#,
];

/// The start of the data: 48h before a 14-day boundary, at least four days ago. The 2d block of
/// the first two days then ends on that boundary, so the planner, which joins everything older
/// than the newest block within one 14d window, leaves it a 2d block.
fn data_start() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut boundary = now / (14 * DAY) * (14 * DAY);
    while boundary + DAY > now - 12 * HOUR {
        boundary -= 14 * DAY;
    }
    boundary - 2 * DAY
}

/// `hours` of data from `t0` on: counters per job and instance, gauges per instance.
fn series(t0: i64, hours: i64) -> Vec<Series> {
    let mut out = Vec::new();
    let times = (0..hours * HOUR / SCRAPE).map(|i| t0 + i * SCRAPE);
    for (j, job) in ["api", "web"].into_iter().enumerate() {
        for i in 0..3 {
            let instance = format!("host-{i}:9100");
            let labels =
                Labels::from_pairs(&[("__name__", "app_requests_total"), ("job", job), ("instance", &instance)]);
            let mut v = 0.0;
            let samples = times
                .clone()
                .enumerate()
                .map(|(n, t)| {
                    // A restart every 17 hours and a bit: a counter reset.
                    if n % 1031 == 1030 {
                        v = 0.0;
                    }
                    v += ((n * 7 + i * 3 + j) % 5) as f64 + 0.5;
                    (t, v)
                })
                .collect();
            out.push((labels, samples));
        }
    }
    for i in 0..3 {
        let instance = format!("host-{i}:9100");
        let labels = Labels::from_pairs(&[("__name__", "app_temperature"), ("instance", &instance)]);
        let samples =
            times.clone().enumerate().map(|(n, t)| (t, 20.0 + ((n as f64) / 97.0 + i as f64).sin() * 5.0)).collect();
        out.push((labels, samples));
    }
    out
}

/// The samples of `data` in `[from, to)`.
fn window(data: &[Series], from: i64, to: i64) -> Vec<Series> {
    data.iter()
        .map(|(l, s)| (l.clone(), s.iter().copied().filter(|&(t, _)| t >= from && t < to).collect::<Vec<_>>()))
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

/// A moto bucket with its config file, a client and a runtime for it.
struct Env {
    work: tempfile::TempDir,
    moto: Moto,
    config_file: PathBuf,
    bucket: Bucket,
    rt: tokio::runtime::Runtime,
    t0: i64,
}

impl Env {
    fn new(name: &str) -> Env {
        let work = tempfile::tempdir().expect("temp dir");
        let moto = Moto::start(work.path());
        let yaml = moto.new_bucket(name);
        let config_file = work.path().join("objstore.yml");
        std::fs::write(&config_file, &yaml).expect("write objstore config");
        let bucket =
            strata_shipper::parse_objstore_config(&yaml, "objstore.yml").expect("config").build().expect("bucket");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        Env { work, moto, config_file, bucket, rt, t0: data_start() }
    }

    /// Ships 2h blocks of hours `[from, to)` (relative to t0) of both replicas; returns their
    /// ULIDs.
    fn ship_replicas(&self, from_hour: i64, to_hour: i64) -> Vec<Ulid> {
        self.ship_replicas_to(&self.bucket, "", from_hour, to_hour)
    }

    /// [`Env::ship_replicas`] into `bucket`, the blocks written under a directory named with
    /// `tag`.
    fn ship_replicas_to(&self, bucket: &Bucket, tag: &str, from_hour: i64, to_hour: i64) -> Vec<Ulid> {
        let data = series(self.t0, 72);
        let mut ids = Vec::new();
        for replica in REPLICAS {
            let dir = self.work.path().join(format!("blocks{tag}-{replica}-{from_hour}"));
            std::fs::create_dir_all(&dir).expect("blocks dir");
            for h in (from_hour..to_hour).step_by(2) {
                let (from, to) = (self.t0 + h * HOUR, self.t0 + (h + 2) * HOUR);
                ids.push(write_block_in(&dir, &window(&data, from, to), Some((from, to))).expect("write block"));
            }
            ship(&self.rt, bucket, &dir, &[("cluster", "eu"), ("replica", replica)]).expect("ship");
        }
        ids
    }

    /// Runs one pass of `program compact` (strata's or Thanos's) with `flags`; returns its log.
    fn compact(&self, program: &Path, name: &str, flags: &[&str]) -> String {
        let log = self.work.path().join(format!("{name}.log"));
        let mut cmd = Command::new(program);
        cmd.arg("compact").arg("--objstore.config-file").arg(&self.config_file);
        cmd.arg("--data-dir").arg(self.work.path().join(format!("{name}-data")));
        cmd.args(["--consistency-delay=0s", "--http-address=127.0.0.1:0"]).args(flags);
        let started = Instant::now();
        let status = Proc::spawn(name, cmd, &log).wait(Duration::from_secs(180));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "{name} failed: {status}\n{text}");
        eprintln!("{name}: {:.1} s", started.elapsed().as_secs_f64());
        text
    }

    /// Every block with its meta, and the deletion marks.
    fn blocks(&self) -> (BTreeMap<Ulid, BlockMeta>, BTreeMap<Ulid, DeletionMark>) {
        self.blocks_in(&self.bucket)
    }

    /// [`Env::blocks`] of `bucket`.
    fn blocks_in(&self, bucket: &Bucket) -> (BTreeMap<Ulid, BlockMeta>, BTreeMap<Ulid, DeletionMark>) {
        let fetched = self
            .rt
            .block_on(MetaFetcher::new(bucket.clone()).with_deletion_mark_delay(Duration::MAX).fetch())
            .expect("fetch");
        (fetched.metas, fetched.deletion_marks)
    }

    /// Blocks not marked for deletion.
    fn live_blocks(&self) -> Vec<BlockMeta> {
        let (metas, marks) = self.blocks();
        metas.into_values().filter(|m| !marks.contains_key(&m.ulid)).collect()
    }

    fn thanos_verify(&self) {
        let out = Command::new(peer("thanos"))
            .args(["tools", "bucket", "verify", "--objstore.config-file"])
            .arg(&self.config_file)
            .output()
            .expect("run thanos tools bucket verify");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "thanos tools bucket verify failed:\n{text}");
        assert!(
            !text.contains("level=warn") && !text.contains("level=error"),
            "thanos tools bucket verify found issues:\n{text}"
        );
    }

    /// The answers to [`QUERIES`] of strata store + query and thanos store + query over the
    /// bucket, both deduplicating on `replica`; asserts they agree and returns strata's.
    fn answers(&self, label: &str, hours: i64) -> Vec<corpus::Answer> {
        let mut fleet = Fleet::new(&self.work.path().join(format!("fleet-{label}")));
        let thanos = peer("thanos");
        let mut nodes = Vec::new();
        for (name, program) in [("strata", common::strata_bin()), ("thanos", thanos.as_path())] {
            let store = fleet.slot(&format!("{name}-store"));
            let mut args: Vec<OsString> =
                vec!["store".into(), "--objstore.config-file".into(), self.config_file.clone().into()];
            args.extend(["--data-dir".into(), store.data_dir.clone().into_os_string()]);
            args.extend(["--http-address", &store.http, "--grpc-address", &store.grpc].map(OsString::from));
            let store_node = Node::start(program, &store, args);
            let query = fleet.slot(&format!("{name}-query"));
            let mut args = if name == "strata" {
                query.query_args(&[&store.grpc])
            } else {
                query.thanos_query_args(&[&store.grpc])
            };
            args.push("--query.replica-label=replica".into());
            let query_node = Node::start(program, &query, args);
            nodes.push((name, store_node, query_node));
        }
        let eval =
            corpus::Eval::Range { start: self.t0 + HOUR + 7 * MINUTE, end: self.t0 + hours * HOUR, step: 30 * MINUTE };
        let count = corpus::Eval::Instant { time: self.t0 + (hours - 1) * HOUR }.path("count(app_temperature)");
        for (name, _, query) in &nodes {
            wait_for(&format!("{name} query to see the blocks"), Duration::from_secs(60), || {
                match corpus::ask(query.http(), &count) {
                    Ok(corpus::Answer::Data { series, .. }) if series.len() == 1 && series[0].1[0].1 == 3.0 => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut ours = Vec::new();
        for q in QUERIES {
            let path = eval.path(q);
            let strata = corpus::ask(nodes[0].2.http(), &path).expect("strata answer");
            let thanos = corpus::ask(nodes[1].2.http(), &path).expect("thanos answer");
            match &strata {
                corpus::Answer::Data { series, .. } if !series.is_empty() => {}
                other => panic!("{label}: {q}: strata answered nothing: {other:?}"),
            }
            if let Some(diff) = corpus::compare(&strata, &thanos, false, ("strata", "thanos")) {
                panic!("{label}: {q}: {diff}");
            }
            ours.push(strata);
        }
        ours
    }
}

fn assert_same(before: &[corpus::Answer], after: &[corpus::Answer], what: &str) {
    for ((q, b), a) in QUERIES.iter().zip(before).zip(after) {
        if let Some(diff) = corpus::compare(a, b, false, ("after", "before")) {
            panic!("{what}: {q}: {diff}");
        }
    }
}

fn labels_of(m: &BlockMeta) -> BTreeMap<String, String> {
    m.thanos.as_ref().map(|t| t.labels.clone()).unwrap_or_default()
}

#[test]
fn ha_replicas_compact_to_two_day_blocks_with_the_same_answers() {
    let env = Env::new("compact-ha");
    let inputs = env.ship_replicas(0, 72);
    assert_eq!(inputs.len(), 72);
    let before = env.answers("before", 72);

    let log = env.compact(common::strata_bin(), "strata-compact", &["--deduplication.replica-label=replica"]);
    for step in [
        "compaction planned",
        "downloaded blocks",
        "merged blocks",
        "uploaded compacted block",
        "marked source blocks for deletion",
    ] {
        assert!(log.contains(step), "no {step:?} line in the log:\n{log}");
    }
    env.thanos_verify();

    let (_, marks) = env.blocks();
    for id in &inputs {
        assert!(marks.contains_key(id), "input {id} not marked for deletion");
    }
    let live = env.live_blocks();
    let eu = BTreeMap::from([("cluster".to_owned(), "eu".to_owned())]);
    for m in &live {
        assert_eq!(labels_of(m), eu, "block {} keeps other labels", m.ulid);
        assert_eq!(m.thanos.as_ref().map(|t| t.source.as_str()), Some("compactor"), "block {}", m.ulid);
    }
    let spans: BTreeSet<(i64, i64, u32, usize)> = live
        .iter()
        .map(|m| {
            ((m.min_time - env.t0) / HOUR, (m.max_time - env.t0) / HOUR, m.compaction.level, m.compaction.sources.len())
        })
        .collect();
    // Every pair merged vertically; the first two days as one 2d block of the 48 source
    // blocks; the 8h windows of the third day that are full and end before the newest block's
    // start (the 64h-72h window does not: it is left until a block after it arrives).
    let want = BTreeSet::from([
        (0, 48, 4, 48),
        (48, 56, 3, 8),
        (56, 64, 3, 8),
        (64, 66, 2, 2),
        (66, 68, 2, 2),
        (68, 70, 2, 2),
        (70, 72, 2, 2),
    ]);
    assert_eq!(spans, want, "blocks after compaction (hours from t0, level, sources)\n{log}");
    // The 2d block spans more than 40h: it is downsampled to 5m as well (the bytes are
    // Thanos's: tests/downsample_identity.rs); nothing else is long enough.
    let resolution = |m: &BlockMeta| m.thanos.as_ref().map_or(0, |t| t.downsample.resolution);
    let downsampled: Vec<(i64, i64, usize)> = live
        .iter()
        .filter(|m| resolution(m) != 0)
        .map(|m| (resolution(m), (m.max_time - m.min_time) / HOUR, m.compaction.sources.len()))
        .collect();
    assert_eq!(downsampled, [(5 * MINUTE, 48, 48)], "downsampled blocks (resolution, hours, sources)\n{log}");
    assert!(log.contains("downsampled block uploaded"), "no downsampling line in the log:\n{log}");

    let after = env.answers("after", 72);
    assert_same(&before, &after, "after strata compact");

    // A pass with no delete delay deletes every marked block, and an upload abandoned three
    // days ago; a fresh partial upload stays.
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let abandoned = Ulid::from_parts(now_ms - 3 * DAY as u64, 1);
    let fresh = Ulid::new();
    for id in [abandoned, fresh] {
        env.rt.block_on(env.bucket.put_bytes(&format!("{id}/chunks/000001"), vec![1u8; 64].into())).expect("put");
    }
    let log = env.compact(
        common::strata_bin(),
        "strata-compact-gc",
        &["--deduplication.replica-label=replica", "--delete-delay=0s"],
    );
    let (metas, marks) = env.blocks();
    assert!(marks.is_empty(), "marked blocks left: {:?}\n{log}", marks.keys());
    assert_eq!(metas.keys().copied().collect::<BTreeSet<_>>(), live.iter().map(|m| m.ulid).collect(), "{log}");
    let listed = env.rt.block_on(env.bucket.list_top_level()).expect("list");
    assert!(!listed.contains(&abandoned.to_string()), "abandoned upload kept\n{log}");
    assert!(listed.contains(&fresh.to_string()), "fresh partial upload deleted\n{log}");
    env.thanos_verify();
    assert_same(&before, &env.answers("after-gc", 72), "after deleting the marked blocks");
}

#[test]
fn thanos_and_strata_compactors_continue_each_other() {
    for (first, second) in [("thanos", "strata"), ("strata", "thanos")] {
        let env = Env::new(&format!("compact-{first}-then-{second}"));
        let program = |name: &str| if name == "strata" { common::strata_bin().to_path_buf() } else { peer("thanos") };
        let flags = ["--deduplication.replica-label=replica", "--downsampling.disable"];
        env.ship_replicas(0, 8);
        env.compact(&program(first), &format!("{first}-compact-1"), &flags);
        let after_first = env.live_blocks();
        assert!(after_first.iter().any(|m| m.compaction.level > 1), "{first} compacted nothing");
        env.ship_replicas(8, 18);
        let before = env.answers(&format!("{first}-then-{second}-before"), 18);
        let log = env.compact(&program(second), &format!("{second}-compact-2"), &flags);
        assert!(!log.contains("halt"), "{second} halted on {first}'s blocks:\n{log}");
        env.thanos_verify();
        let live = env.live_blocks();
        let first_ids: BTreeSet<Ulid> = after_first.iter().map(|m| m.ulid).collect();
        assert!(
            live.iter().any(|m| m.compaction.parents.iter().any(|p| first_ids.contains(&p.ulid))),
            "{second} did not build on {first}'s blocks: {:?}",
            live.iter().map(|m| (m.ulid, m.min_time, m.max_time)).collect::<Vec<_>>()
        );
        let after = env.answers(&format!("{first}-then-{second}-after"), 18);
        assert_same(&before, &after, &format!("{first} then {second}"));
    }
}

fn metric(text: &str, name: &str) -> f64 {
    metric_sum(text, name).unwrap_or(0.0)
}

#[test]
fn overlaps_halt_and_corrupt_blocks_are_skipped() {
    let env = Env::new("compact-bad");
    // Overlapping blocks of one stream (no replica label to tell them apart): a halt.
    let data = series(env.t0, 72);
    let dir = env.work.path().join("overlapping");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut overlapping = Vec::new();
    for (from, to) in [(0, 2), (1, 3), (4, 6), (6, 8), (8, 10)] {
        let (from, to) = (env.t0 + from * HOUR, env.t0 + to * HOUR);
        overlapping.push(write_block_in(&dir, &window(&data, from, to), Some((from, to))).expect("write"));
    }
    ship(&env.rt, &env.bucket, &dir, &[("cluster", "overlap")]).expect("ship");

    let mut fleet = Fleet::new(&env.work.path().join("halt"));
    let slot = fleet.slot("compact");
    let mut args: Vec<OsString> =
        vec!["compact".into(), "--objstore.config-file".into(), env.config_file.clone().into()];
    args.extend(["--data-dir".into(), slot.data_dir.clone().into_os_string()]);
    args.extend(
        ["--http-address", &slot.http, "--wait", "--wait-interval=1h", "--consistency-delay=0s"].map(OsString::from),
    );
    let node = Node::start(common::strata_bin(), &slot, args);
    wait_for("thanos_compact_halted 1", Duration::from_secs(60), || {
        let (_, body) = http::get(node.http(), "/metrics")?;
        if metric(&body, "thanos_compact_halted") == 1.0 {
            Ok(())
        } else {
            Err(body)
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let log = std::fs::read_to_string(&node.slot.log).unwrap_or_default();
    let halt_line = log
        .lines()
        .find(|l| l.contains("overlapping blocks") && l.contains("halting"))
        .unwrap_or_else(|| panic!("no halt line:\n{log}"));
    for id in &overlapping[..2] {
        assert!(halt_line.contains(&id.to_string()), "halt line does not name {id}: {halt_line}");
    }
    let (_, body) = http::get(node.http(), "/metrics").expect("metrics");
    assert_eq!(metric(&body, "thanos_compact_group_compactions_failures_total"), 1.0, "{body}");
    assert_eq!(metric(&body, "thanos_compact_group_compactions_total"), 0.0, "{body}");
    assert!(metric(&body, "thanos_blocks_meta_syncs_total") >= 1.0, "{body}");
    assert_eq!(
        metric_sum(&body, "thanos_blocks_meta_synced{state=\"loaded\"}"),
        Some(overlapping.len() as f64),
        "{body}"
    );
    drop(node);
    let (metas, marks) = env.blocks();
    assert!(marks.is_empty(), "blocks marked after a halt: {marks:?}");
    assert_eq!(metas.len(), overlapping.len(), "blocks after a halt");

    // A corrupt block among good ones in another stream: it is marked no-compact, the rest
    // compacted into an 8h block.
    let dir = env.work.path().join("corrupt");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut ids = Vec::new();
    for h in (0..10).step_by(2) {
        let (from, to) = (env.t0 + h * HOUR, env.t0 + (h + 2) * HOUR);
        ids.push(write_block_in(&dir, &window(&data, from, to), Some((from, to))).expect("write"));
    }
    // Overwrite the series section's first bytes in the index of the third block: same size,
    // so the upload and download succeed, but the index no longer verifies.
    let index = dir.join(ids[2].to_string()).join("index");
    let mut bytes = std::fs::read(&index).expect("read index");
    for b in &mut bytes[20..60] {
        *b ^= 0x5a;
    }
    std::fs::write(&index, &bytes).expect("write index");
    ship(&env.rt, &env.bucket, &dir, &[("cluster", "corrupt")]).expect("ship");
    // The overlapping stream is left to the selector: this pass only takes `cluster="corrupt"`.
    let selector =
        r#"--selector.relabel-config=[{"source_labels": ["cluster"], "regex": "corrupt", "action": "keep"}]"#;
    let log = env.compact(common::strata_bin(), "strata-compact-corrupt", &[selector]);
    let mark = env
        .rt
        .block_on(env.bucket.get_opt(&format!("{}/{NO_COMPACT_MARK_FILENAME}", ids[2])))
        .expect("get")
        .unwrap_or_else(|| panic!("no no-compact mark:\n{log}"));
    let mark = NoCompactMark::parse(&mark).expect("no-compact mark");
    assert_eq!(mark.reason, strata_compact::CORRUPT_BLOCK_REASON);
    assert!(!mark.details.is_empty());
    for (i, id) in ids.iter().enumerate() {
        let marked = env.rt.block_on(env.bucket.exists(&format!("{id}/{DELETION_MARK_FILENAME}"))).expect("head");
        // Blocks 0 and 1 merge (2 is marked, the run before it); 3 and the newest, 4, stay.
        assert_eq!(marked, i < 2, "block {i} deletion mark\n{log}");
    }
    let live = env.live_blocks();
    assert!(
        live.iter()
            .any(|m| labels_of(m).get("cluster").map(String::as_str) == Some("corrupt") && m.compaction.level == 2),
        "no compacted block of the good ones\n{log}"
    );
    for id in &overlapping {
        assert!(live.iter().any(|m| m.ulid == *id), "overlapping block {id} touched by the selected pass");
    }
}

#[test]
fn bad_flags_fail_before_any_work() {
    let work = tempfile::tempdir().expect("temp dir");
    let bucket_dir = work.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).expect("bucket dir");
    let objstore = format!("--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}\n", bucket_dir.display());
    let cases: [(&[&str], &str); 8] = [
        (&["--deduplication.func=foo"], "--deduplication.func"),
        (&["--deduplication.func=penalty"], "--deduplication.replica-label"),
        (&["--deduplication.replica-label="], "replica label"),
        (&[r#"--selector.relabel-config=[{"action": "nope"}]"#], "--selector.relabel-config"),
        (&[r#"--selector.relabel-config=[{"action": "replace"}]"#], "target_label"),
        (&["--delete-delay=5x"], "--delete-delay"),
        (&["--retention.resolution-raw=-1d"], "--retention.resolution-raw"),
        (&["--selector.relabel-config-file=/nonexistent/relabel.yml"], "relabel.yml"),
    ];
    for (flags, want) in cases {
        let out = Command::new(common::strata_bin())
            .arg("compact")
            .arg(&objstore)
            .arg("--data-dir")
            .arg(work.path().join("data"))
            .arg("--http-address=127.0.0.1:0")
            .args(flags)
            .output()
            .expect("run strata compact");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} accepted");
        assert!(stderr.contains(want), "{flags:?}: error does not mention {want:?}:\n{stderr}");
    }
    let out = Command::new(common::strata_bin()).args(["compact", "--http-address=127.0.0.1:0"]).output().expect("run");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no bucket"));
    assert_eq!(std::fs::read_dir(&bucket_dir).expect("bucket dir").count(), 0, "the bucket was written to");
}

#[test]
fn killed_mid_pass_the_next_pass_finishes_the_work() {
    let env = Env::new("compact-killed");
    env.ship_replicas(0, 18);
    let before = env.answers("killed-before", 18);
    // Killed (SIGKILL) once its first compacted block is uploaded: before, while or after its
    // inputs are marked, as the poll happens to catch it. No answer may change at any point.
    let log = env.work.path().join("killed.log");
    let mut cmd = Command::new(common::strata_bin());
    cmd.arg("compact").arg("--objstore.config-file").arg(&env.config_file);
    cmd.arg("--data-dir").arg(env.work.path().join("killed-data"));
    cmd.args(["--consistency-delay=0s", "--http-address=127.0.0.1:0", "--deduplication.replica-label=replica"]);
    let proc = Proc::spawn("strata compact", cmd, &log);
    wait_for("a compacted block uploaded", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("uploaded compacted block") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    proc.kill();
    let answers = env.answers("killed-after-kill", 18);
    assert_same(&before, &answers, "after the kill");

    let log = env.compact(common::strata_bin(), "strata-compact-again", &["--deduplication.replica-label=replica"]);
    env.thanos_verify();
    assert_sources_held_once(env.blocks(), 18, &log);
    assert_same(&before, &env.answers("killed-after-rerun", 18), "after the second pass");
}

/// Every block of a bucket (metas and deletion marks) is either live (no mark) or covered by a
/// live block holding its sources, and the live blocks hold each of `sources` source blocks once.
fn assert_sources_held_once(
    (metas, marks): (BTreeMap<Ulid, BlockMeta>, BTreeMap<Ulid, DeletionMark>),
    sources: usize,
    log: &str,
) {
    let live: Vec<&BlockMeta> = metas.values().filter(|m| !marks.contains_key(&m.ulid)).collect();
    for m in metas.values().filter(|m| marks.contains_key(&m.ulid)) {
        assert!(
            live.iter().any(|l| m.compaction.sources.iter().all(|s| l.compaction.sources.contains(s))),
            "marked block {} not covered by a live block\n{log}",
            m.ulid
        );
    }
    let mut held: Vec<Ulid> = live.iter().flat_map(|l| l.compaction.sources.iter().copied()).collect();
    let n = held.len();
    held.sort();
    held.dedup();
    assert_eq!(held.len(), n, "a source block in two live blocks\n{log}");
    assert_eq!(n, sources, "live blocks hold every source once\n{log}");
}

/// `strata store` (syncing every second) and `strata query` over the bucket of `objstore`
/// (YAML), deduplicating on `replica`.
fn strata_reader(fleet: &mut Fleet, name: &str, objstore: &str) -> (Node, Node) {
    let store = fleet.slot(&format!("{name}-store"));
    let mut args: Vec<OsString> = vec!["store".into(), format!("--objstore.config={objstore}").into()];
    args.extend(["--data-dir".into(), store.data_dir.clone().into_os_string()]);
    args.extend(["--http-address", &store.http, "--grpc-address", &store.grpc].map(OsString::from));
    args.extend(["--sync-block-duration=1s", "--ignore-deletion-marks-delay=0s"].map(OsString::from));
    let store_node = Node::start(common::strata_bin(), &store, args);
    let query = fleet.slot(&format!("{name}-query"));
    let mut args = query.query_args(&[&store.grpc]);
    args.push("--query.replica-label=replica".into());
    (store_node, Node::start(common::strata_bin(), &query, args))
}

/// The answers to [`QUERIES`] over the first `hours` of data, as `query` gives them.
fn strata_answers(env: &Env, query: &Node, hours: i64) -> Result<Vec<corpus::Answer>, String> {
    let eval = corpus::Eval::Range { start: env.t0 + HOUR + 7 * MINUTE, end: env.t0 + hours * HOUR, step: 30 * MINUTE };
    QUERIES.iter().map(|q| corpus::ask(query.http(), &eval.path(q))).collect()
}

/// Waits until `query` answers [`QUERIES`] as `before`: the store syncs every second, and no
/// state of the bucket may give other answers.
fn wait_same(env: &Env, query: &Node, before: &[corpus::Answer], hours: i64, what: &str) {
    // Generous: a new querier finds its store within seconds, but a loaded machine is slow.
    wait_for(what, Duration::from_secs(120), || {
        let now = strata_answers(env, query, hours)?;
        for ((q, b), a) in QUERIES.iter().zip(before).zip(&now) {
            if let Some(diff) = corpus::compare(a, b, false, ("now", "before")) {
                return Err(format!("{q}: {diff}"));
            }
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// SIGKILL at 20 points of a pass, spread over the bytes it sends to S3 (through a proxy that
/// counts them): half before the compacted block is completely uploaded (sync, downloads,
/// upload), half after (deletion marks, the next sync, deletions); then the bucket going away
/// at 4 such points. After each kill the answers are unchanged; a second
/// pass finishes the work with every source held once and the answers still unchanged.
#[test]
fn killed_or_cut_off_at_random_points_no_answer_changes() {
    const HOURS: i64 = 8;
    const RUNS: usize = 20;
    let env = Env::new("compact-kill-reference");
    let mut fleet = Fleet::new(&env.work.path().join("kill-fleet"));
    let flags = ["--consistency-delay=0s", "--delete-delay=0s", "--deduplication.replica-label=replica"];
    let compact_cmd = |objstore: &str, data: &str| {
        let mut cmd = Command::new(common::strata_bin());
        cmd.arg("compact").arg(format!("--objstore.config={objstore}"));
        cmd.arg("--data-dir").arg(env.work.path().join(data));
        cmd.arg("--http-address=127.0.0.1:0").args(flags);
        cmd
    };
    let bucket_for = |name: &str| {
        let yaml = env.moto.new_bucket(name);
        let bucket = strata_shipper::parse_objstore_config(&yaml, "objstore").expect("config").build().expect("bucket");
        env.ship_replicas_to(&bucket, name, 0, HOURS);
        (yaml, bucket)
    };

    // The answers before any compaction, and the bytes one whole pass sends.
    let (yaml, _) = bucket_for("kill-whole-pass");
    let (_store, query) = strata_reader(&mut fleet, "reference", &yaml);
    let before = wait_for("the reference answers", Duration::from_secs(60), || {
        let answers = strata_answers(&env, &query, HOURS)?;
        match &answers[4] {
            corpus::Answer::Data { series, .. } if series.len() == 1 => Ok(answers),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(env.moto.port);
    let through_proxy = |yaml: &str| yaml.replace(&format!(":{}\n", env.moto.port), &format!(":{}\n", proxy.port));
    let log = env.work.path().join("whole-pass.log");
    let start = proxy.sent();
    let pass = Proc::spawn("strata compact", compact_cmd(&through_proxy(&yaml), "whole-data"), &log);
    // Where the upload of the compacted block ends, in bytes sent: the kills spread on both sides.
    let uploaded = wait_for("the compacted block uploaded", Duration::from_secs(60), || {
        let sent = proxy.sent() - start;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("uploaded compacted block").then_some(sent).ok_or(text)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let status = pass.wait(Duration::from_secs(120));
    assert!(status.success(), "the whole pass failed: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let whole = proxy.sent() - start;
    wait_same(&env, &query, &before, HOURS, "answers after a whole pass");

    let mut rng = common::blocks::Rng(0x6b11_1ed0_0000_0020);
    let (mut during_upload, mut after_upload) = (0, 0);
    // Twenty kills, then four times the bucket goes away (every connection cut, new ones
    // refused) instead: the pass fails, and nothing it leaves may change an answer either.
    for run in 0..RUNS + 4 {
        let outage = run >= RUNS;
        let name = format!("{}-{run}", if outage { "outage" } else { "kill" });
        let (yaml, bucket) = bucket_for(&name);
        let fraction = (rng.next() % 10_000) as f64 / 10_000.0;
        let upload_end = uploaded as f64 / whole as f64;
        let fraction = if run % 2 == 0 { fraction * upload_end } else { upload_end + fraction * (1.0 - upload_end) };
        let log = env.work.path().join(format!("{name}.log"));
        let proc = Proc::spawn("strata compact", compact_cmd(&through_proxy(&yaml), &format!("{name}-data")), &log);
        let pid = proc.pid();
        let at = (whole as f64 * fraction) as u64;
        if outage {
            proxy.trip_after(at, proxy.outage_switch());
        } else {
            proxy.trip_after(at, move || strata_testkit::send_signal(pid, strata_testkit::Signal::Kill));
        }
        let status = proc.wait(Duration::from_secs(300));
        let tripped = proxy.tripped();
        // Disarmed and up again: a pass that ended before the point must not leave it set.
        proxy.trip_after(u64::MAX / 2, || {});
        proxy.set_up();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success() || tripped, "{name}: failed without a fault: {status}\n{text}");
        if outage {
            // A failed pass says which request failed.
            assert!(status.success() || text.contains("Error: bucket"), "{name}: failed without saying why\n{text}");
        } else if text.contains("uploaded compacted block") {
            after_upload += 1;
        } else {
            during_upload += 1;
        }
        let (_store, query) = strata_reader(&mut fleet, &name, &yaml);
        wait_same(&env, &query, &before, HOURS, &format!("{name}: answers after the fault at {fraction:.3} of a pass"));
        let status = Proc::spawn("strata compact", compact_cmd(&yaml, &format!("{name}-again")), &log)
            .wait(Duration::from_secs(120));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "{name}: the pass after the fault failed: {status}\n{text}");
        assert_sources_held_once(env.blocks_in(&bucket), REPLICAS.len() * (HOURS / 2) as usize, &text);
        wait_same(&env, &query, &before, HOURS, &format!("{name}: answers after the next pass"));
    }
    eprintln!("killed {during_upload} times before the compacted block was uploaded, {after_upload} after");
    assert!(
        during_upload >= 3 && after_upload >= 3,
        "kills: {during_upload} before the upload ended, {after_upload} after"
    );
}
