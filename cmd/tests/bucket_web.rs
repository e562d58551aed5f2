//! The bucket page (`strata tools bucket web`, and `/bucket/` of `strata standalone`):
//! - rendered by a headless Chromium over a FILESYSTEM bucket with blocks of two external label
//!   sets and two resolutions and a deletion-marked block: a box per block with its ULID, a
//!   row group per label set with rows per resolution, the marked block flagged; `#block=<ULID>`
//!   opens that block's meta;
//! - `/api/v1/blocks` lists the blocks the real `thanos tools bucket web` lists over the same
//!   bucket, each meta with the same fields and values;
//! - a garbage meta.json and a partial upload: both servers keep serving, ours lists the two
//!   as broken;
//! - `strata standalone` compacts 2h blocks in its bucket into an 8h block, marks the inputs
//!   (deleting nothing before --delete-delay) and shows the 8h block on its bucket page, which
//!   the query page links to; `strata compact --wait` serves the page of its last sync;
//! - over a moto S3 bucket: `--web.prefix-header` sets the prefix of the page's links;
//!   `--min-time`/`--max-time` list the blocks Thanos lists with the same flags;
//!   `POST /api/v1/blocks/mark` writes the marker `tools bucket mark` writes and the API shows
//!   it; bad requests and `--disable-admin-operations` get Thanos's answers, and nothing is
//!   written.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::blocks::{fs_bucket, ship, write_block_in, FsBucket, Series};
use serde_json::Value;
use strata_shipper::markers::mark_for_deletion;
use strata_shipper::{upload_block, RetryPolicy};
use strata_testkit::http::get_json;
use strata_testkit::{peer, tool, wait_for, Fleet, Moto, Node, Proc};
use strata_tsdb::block::meta::{BlockMeta, ThanosMeta};
use strata_tsdb::Labels;
use ulid::Ulid;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// Generous for a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The start of the 8h window three days ago, so that 2h blocks fill compaction ranges.
fn window_start() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    (now - 72 * HOUR) / (8 * HOUR) * (8 * HOUR)
}

/// A counter and a gauge with a sample a minute over `[from, to)`.
fn series(from: i64, to: i64) -> Vec<Series> {
    let times: Vec<i64> = (from..to).step_by(MINUTE as usize).collect();
    let labels = |name: &str| Labels::from_pairs(&[("__name__", name), ("job", "web")]);
    vec![
        (labels("up"), times.iter().map(|&t| (t, 1.0)).collect()),
        (labels("requests_total"), times.iter().enumerate().map(|(i, &t)| (t, i as f64)).collect()),
    ]
}

/// Ships 2h blocks at `starts` as `labels`' raw blocks; their ULIDs in order.
fn ship_raw(b: &FsBucket, labels: &[(&str, &str)], starts: &[i64]) -> Vec<Ulid> {
    let dir = tempfile::tempdir_in(b.work.path()).expect("blocks dir");
    let ids = starts
        .iter()
        .map(|&from| write_block_in(dir.path(), &series(from, from + 2 * HOUR), Some((from, from + 2 * HOUR))).unwrap())
        .collect();
    ship(&b.rt, &b.bucket, dir.path(), labels).expect("ship");
    ids
}

/// Uploads an 8h block at `from` as a 5m-resolution block of `labels` (a compactor's output).
fn upload_5m(b: &FsBucket, labels: &[(&str, &str)], from: i64) -> Ulid {
    let dir = tempfile::tempdir_in(b.work.path()).expect("block dir");
    let id = write_block_in(dir.path(), &series(from, from + 8 * HOUR), Some((from, from + 8 * HOUR))).unwrap();
    let block_dir = dir.path().join(id.to_string());
    let mut meta = BlockMeta::read(&block_dir).expect("meta");
    let mut thanos = ThanosMeta {
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        source: "compactor".to_owned(),
        ..ThanosMeta::default()
    };
    thanos.downsample.resolution = 300_000;
    meta.thanos = Some(thanos);
    b.rt.block_on(upload_block(&b.bucket, &RetryPolicy::default(), &block_dir, meta)).expect("upload");
    id
}

/// What the bucket of the page tests holds.
struct Blocks {
    eu_raw: Vec<Ulid>,
    eu_5m: Ulid,
    us_raw: Vec<Ulid>,
    us_5m: Ulid,
    marked: Ulid,
    garbage: Ulid,
    partial: Ulid,
}

impl Blocks {
    fn shown(&self) -> Vec<Ulid> {
        let mut all: Vec<Ulid> = self.eu_raw.iter().chain(&self.us_raw).copied().collect();
        all.extend([self.eu_5m, self.us_5m]);
        all.sort();
        all
    }
}

/// Two label sets with raw and 5m blocks, one raw block marked for deletion, a block whose
/// meta.json is garbage and a partial upload (an index, no meta.json).
fn populate(b: &FsBucket) -> Blocks {
    let t0 = window_start();
    let eu_raw = ship_raw(b, &[("cluster", "eu")], &[t0, t0 + 2 * HOUR]);
    let us_raw = ship_raw(b, &[("cluster", "us")], &[t0 + 2 * HOUR]);
    let eu_5m = upload_5m(b, &[("cluster", "eu")], t0 - 8 * HOUR);
    let us_5m = upload_5m(b, &[("cluster", "us")], t0 - 8 * HOUR);
    let marked = eu_raw[1];
    assert!(b.rt.block_on(mark_for_deletion(&b.bucket, marked, "test", 1_700_000_000)).unwrap());
    let garbage = Ulid::new();
    std::fs::create_dir_all(b.root.join(garbage.to_string())).unwrap();
    std::fs::write(b.root.join(format!("{garbage}/meta.json")), "{\"ulid\": \"not a ulid\", ").unwrap();
    std::fs::write(b.root.join(format!("{garbage}/index")), b"garbage").unwrap();
    let partial = Ulid::new();
    std::fs::create_dir_all(b.root.join(format!("{partial}/chunks"))).unwrap();
    std::fs::write(b.root.join(format!("{partial}/index")), b"half an upload").unwrap();
    Blocks { eu_raw, eu_5m, us_raw, us_5m, marked, garbage, partial }
}

/// `strata tools bucket web` over `b`, ready (its first fetch done).
fn strata_web(b: &FsBucket, fleet: &mut Fleet, extra: &[&str]) -> Node {
    let slot = fleet.slot("strata-web");
    let mut args: Vec<OsString> = ["tools", "bucket", "web", "--objstore.config-file"].map(OsString::from).to_vec();
    args.push(b.config_file.clone().into());
    args.extend(["--http-address", &slot.http, "--refresh=10m", "--timeout=1m"].map(OsString::from));
    args.extend(extra.iter().map(OsString::from));
    Node::start(common::strata_bin(), &slot, args)
}

/// The DOM Chromium has after the page at `url` ran its script.
fn dump_dom(work: &Path, url: &str) -> String {
    let profile = tempfile::tempdir_in(work).expect("profile dir");
    let out = work.join(format!("dom-{}.html", Ulid::new()));
    let mut cmd = Command::new(tool("chromium"));
    cmd.args(["--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=5000"]);
    cmd.arg(format!("--user-data-dir={}", profile.path().display()));
    cmd.args(["--dump-dom", url]);
    let stdout = std::fs::File::create(&out).expect("dom file");
    let status = Proc::spawn_with_stdout("chromium", cmd, stdout, &work.join("chromium.log")).wait(TIMEOUT);
    assert!(status.success(), "chromium failed: {status}");
    std::fs::read_to_string(&out).expect("read dom")
}

/// The opening tags of the elements of class `class` (the first class in their list).
fn tags_of_class<'a>(dom: &'a str, class: &str) -> Vec<&'a str> {
    let needle = format!("class=\"{class}");
    dom.match_indices(&needle)
        .filter_map(|(at, _)| {
            let start = dom[..at].rfind('<')?;
            let end = at + dom[at..].find('>')?;
            Some(&dom[start..=end])
        })
        .collect()
}

#[test]
fn page_draws_blocks_by_label_set_and_resolution() {
    let b = fs_bucket();
    let blocks = populate(&b);
    let mut fleet = Fleet::new(&b.work.path().join("fleet"));
    let web = strata_web(&b, &mut fleet, &["--label=cluster"]);
    let url = format!("http://{}/", web.http());
    let dom = dump_dom(b.work.path(), &url);

    let boxes = tags_of_class(&dom, "block level-");
    // The legend's samples have no ULID.
    let boxes: Vec<&str> = boxes.into_iter().filter(|t| t.contains("data-ulid")).collect();
    assert_eq!(boxes.len(), blocks.shown().len(), "one box per block: {boxes:#?}");
    for id in blocks.shown() {
        let with_id: Vec<&&str> = boxes.iter().filter(|t| t.contains(&format!("data-ulid=\"{id}\""))).collect();
        assert_eq!(with_id.len(), 1, "block {id}: {boxes:#?}");
        let marked = with_id[0].contains("marked-deletion") && with_id[0].contains("data-marked=\"deletion\"");
        assert_eq!(marked, id == blocks.marked, "block {id} flagged as marked iff it is: {}", with_id[0]);
    }
    let groups = tags_of_class(&dom, "group");
    assert_eq!(groups.len(), 2, "{groups:#?}");
    assert!(groups[0].contains("{cluster=&quot;eu&quot;}") && groups[1].contains("{cluster=&quot;us&quot;}"));
    assert!(dom.contains("cluster=eu"), "rows titled by --label's value");
    let rows = tags_of_class(&dom, "row\"");
    let resolutions: Vec<bool> = rows.iter().map(|r| r.contains("data-resolution=\"300000\"")).collect();
    assert_eq!(resolutions, vec![false, true, false, true], "raw and 5m rows per label set: {rows:#?}");
    // The broken blocks are listed below the time line, not drawn.
    for id in [blocks.garbage, blocks.partial] {
        assert!(dom.contains(&format!("class=\"broken-block\" data-ulid=\"{id}\"")), "{id} listed as broken");
    }
    assert!(dom.contains("id=\"meta\" hidden"), "no block's meta shown without a #block fragment");

    // The meta panel for a URL fragment, as a click sets it.
    let dom = dump_dom(b.work.path(), &format!("{url}#block={}", blocks.marked));
    let panel = dom.split("id=\"meta\"").nth(1).expect("meta panel");
    let panel = &panel[..panel.find("id=\"broken\"").unwrap_or(panel.len())];
    assert!(panel.starts_with(&format!(" data-ulid=\"{}\"", blocks.marked)), "{panel}");
    let t0 = window_start();
    for expected in [
        format!("<td>{}</td>", blocks.marked),
        format!("{}", t0 + 2 * HOUR),
        "<th>Level</th><td>1</td>".to_owned(),
        "<th>Resolution</th><td>raw</td>".to_owned(),
        "<th>Series</th><td>2</td>".to_owned(),
        "<th>Marked for deletion</th><td>2023-11-14T22:13:20.000Z: test</td>".to_owned(),
        "{cluster=\"eu\"}".to_owned(),
        "index: ".to_owned(),
    ] {
        assert!(panel.contains(&expected), "{expected} in the meta panel: {panel}");
    }
    let marked_box = tags_of_class(&dom, "block level-")
        .into_iter()
        .find(|t| t.contains(&format!("data-ulid=\"{}\"", blocks.marked)))
        .expect("the marked block's box");
    assert!(marked_box.contains(" selected"), "the block is highlighted: {marked_box}");
}

/// The metas of an `/api/v1/blocks` answer by ULID.
fn metas(answer: &Value) -> BTreeMap<String, Value> {
    let blocks = answer["data"]["blocks"].as_array().cloned().unwrap_or_default();
    blocks.into_iter().map(|m| (m["ulid"].as_str().unwrap_or_default().to_owned(), m)).collect()
}

#[test]
fn api_lists_what_thanos_lists_and_survives_broken_blocks() {
    let b = fs_bucket();
    let blocks = populate(&b);
    let mut fleet = Fleet::new(&b.work.path().join("fleet"));
    let ours = strata_web(&b, &mut fleet, &[]);
    let slot = fleet.slot("thanos-web");
    let mut args: Vec<OsString> = ["tools", "bucket", "web", "--objstore.config-file"].map(OsString::from).to_vec();
    args.push(b.config_file.clone().into());
    args.extend(["--http-address", &slot.http, "--refresh=10m", "--timeout=1m"].map(OsString::from));
    let thanos = Node::start(&peer("thanos"), &slot, args);
    let theirs = wait_for("thanos to list the blocks", TIMEOUT, || {
        let answer = get_json(thanos.http(), "/api/v1/blocks")?;
        if answer["data"]["refreshedAt"] == "0001-01-01T00:00:00Z" {
            return Err(format!("not refreshed yet: {answer}"));
        }
        Ok(answer)
    })
    .unwrap();
    let answer = get_json(ours.http(), "/api/v1/blocks").unwrap();

    assert_eq!(answer["status"], "success");
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    for key in keys(&theirs["data"]) {
        assert!(answer["data"].get(&key).is_some(), "data.{key} in {answer}");
    }
    assert_eq!(answer["data"]["label"], theirs["data"]["label"]);
    let (ours_metas, theirs_metas) = (metas(&answer), metas(&theirs));
    let expected: Vec<String> = blocks.shown().iter().map(Ulid::to_string).collect();
    assert_eq!(theirs_metas.keys().cloned().collect::<Vec<_>>(), expected, "thanos lists the readable blocks");
    assert_eq!(ours_metas.keys().cloned().collect::<Vec<_>>(), expected);
    for (id, theirs) in &theirs_metas {
        assert_eq!(&ours_metas[id], theirs, "block {id}'s meta");
    }
    let marks = &answer["data"]["marks"];
    assert_eq!(marks.as_object().map(|m| m.len()), Some(1), "{marks}");
    assert_eq!(marks[blocks.marked.to_string()]["deletion"]["details"], "test");
    let broken: Vec<&str> =
        answer["data"]["broken"].as_array().unwrap().iter().map(|b| b["ulid"].as_str().unwrap()).collect();
    let mut expected_broken = vec![blocks.garbage.to_string(), blocks.partial.to_string()];
    expected_broken.sort();
    let mut broken: Vec<String> = broken.into_iter().map(str::to_owned).collect();
    broken.sort();
    assert_eq!(broken, expected_broken);

    // The views, the page's paths and the probes; hostile parameters change nothing.
    let loaded = get_json(ours.http(), "/api/v1/blocks?view=loaded").unwrap();
    assert_eq!(loaded["data"]["blocks"], serde_json::json!([]), "no compactor loaded anything");
    for path in ["/api/v1/blocks?view=%zz&view=loaded", "/api/v1/blocks?view=global&&x=%ff"] {
        let a = get_json(ours.http(), path).unwrap();
        assert_eq!(a["status"], "success", "{path}");
    }
    for path in ["/", "/blocks", "/-/ready", "/-/healthy", "/metrics"] {
        let (status, _) = strata_testkit::http::get(ours.http(), path).unwrap();
        assert_eq!(status, 200, "{path}");
    }
}

#[test]
fn route_prefix_serves_the_page_under_it() {
    let b = fs_bucket();
    let t0 = window_start();
    let id = ship_raw(&b, &[("cluster", "eu")], &[t0])[0];
    let mut fleet = Fleet::new(&b.work.path().join("fleet"));
    let web = strata_web(&b, &mut fleet, &["--web.route-prefix=/ui/"]);
    let (status, _) = strata_testkit::http::get(web.http(), "/ui").unwrap();
    assert_eq!(status, 303, "/ui redirects to /ui/");
    let (status, _) = strata_testkit::http::get(web.http(), "/").unwrap();
    assert_eq!(status, 303, "/ redirects to the prefix");
    let answer = get_json(web.http(), "/ui/api/v1/blocks").unwrap();
    assert_eq!(metas(&answer).keys().cloned().collect::<Vec<_>>(), vec![id.to_string()]);
    let dom = dump_dom(b.work.path(), &format!("http://{}/ui/", web.http()));
    assert!(dom.contains(&format!("data-ulid=\"{id}\"")), "the page under the prefix finds the API");
}

/// The value of an unlabelled counter in a /metrics text.
fn counter(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn standalone_compacts_its_bucket_and_shows_it() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let slot = fleet.slot("standalone");
    // Blocks a receiver would have shipped: four 2h blocks filling an 8h range, and a newer
    // one (the planner leaves the newest block alone).
    let root = slot.data_dir.join("bucket");
    std::fs::create_dir_all(&root).unwrap();
    let yaml = format!("type: FILESYSTEM\nconfig:\n  directory: {}\n", root.display());
    let bucket = strata_shipper::parse_objstore_config(&yaml, "objstore.yml").unwrap().build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let t0 = window_start();
    let dir = tempfile::tempdir_in(work.path()).unwrap();
    let starts = [t0, t0 + 2 * HOUR, t0 + 4 * HOUR, t0 + 6 * HOUR, t0 + 8 * HOUR];
    let inputs: Vec<Ulid> = starts
        .iter()
        .map(|&from| write_block_in(dir.path(), &series(from, from + 2 * HOUR), Some((from, from + 2 * HOUR))).unwrap())
        .collect();
    ship(&rt, &bucket, dir.path(), &[("receive", "standalone")]).unwrap();

    let mut args = slot.standalone_args();
    args.extend(["--consistency-delay=0s", "--wait-interval=1s", "--sync-block-duration=1s"].map(OsString::from));
    let node = Node::start(common::strata_bin(), &slot, args);

    let answer = wait_for("the 8h block on the bucket page", TIMEOUT, || {
        let answer = get_json(node.http(), "/bucket/api/v1/blocks")?;
        let found = metas(&answer)
            .into_values()
            .any(|m| m["compaction"]["level"] == 2 && m["minTime"] == t0 && m["maxTime"] == t0 + 8 * HOUR);
        if found {
            Ok(answer)
        } else {
            Err(format!("{answer}"))
        }
    })
    .unwrap();
    let shown = metas(&answer);
    assert_eq!(shown.len(), 2, "the 8h block and the newest 2h block: {answer}");
    assert!(shown.contains_key(&inputs[4].to_string()));
    for id in &inputs[..4] {
        // As Thanos's page: blocks a compacted block supersedes are not drawn.
        assert!(!shown.contains_key(&id.to_string()), "input {id} superseded");
        assert!(root.join(format!("{id}/deletion-mark.json")).is_file(), "input {id} marked for deletion");
        // Deleted only after --delete-delay (48h).
        assert!(root.join(format!("{id}/meta.json")).is_file(), "input {id} still in the bucket");
    }
    let loaded = get_json(node.http(), "/bucket/api/v1/blocks?view=loaded").unwrap();
    assert!(metas(&loaded).values().any(|m| m["compaction"]["level"] == 2), "the compactor's view: {loaded}");
    wait_for("compaction iterations", TIMEOUT, || {
        let (_, text) = strata_testkit::http::get(node.http(), "/metrics")?;
        match counter(&text, "thanos_compact_iterations_total") {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap();
    let dom = dump_dom(work.path(), &format!("http://{}/bucket/", node.http()));
    assert!(dom.contains("class=\"block level-2\""), "the 8h block drawn");
    // The query page links to it.
    let dom = dump_dom(work.path(), &format!("http://{}/", node.http()));
    let link = dom.split("id=\"bucket-link\"").nth(1).and_then(|rest| rest.split('>').next()).expect("bucket link");
    assert!(!link.contains("hidden"), "the query page shows its Bucket link: {link}");
}

#[test]
fn compact_serves_the_page_of_its_last_sync() {
    let b = fs_bucket();
    let t0 = window_start();
    let inputs = ship_raw(&b, &[("cluster", "eu")], &[t0, t0 + 2 * HOUR, t0 + 4 * HOUR, t0 + 6 * HOUR, t0 + 8 * HOUR]);
    let mut fleet = Fleet::new(&b.work.path().join("fleet"));
    let slot = fleet.slot("compact");
    let mut args: Vec<OsString> = ["compact", "--wait", "--objstore.config-file"].map(OsString::from).to_vec();
    args.push(b.config_file.clone().into());
    args.extend(["--data-dir".into(), slot.data_dir.clone().into_os_string()]);
    args.extend(["--http-address", &slot.http, "--consistency-delay=0s", "--wait-interval=1s"].map(OsString::from));
    args.push("--block-viewer.global.sync-block-interval=1s".into());
    let node = Node::start(common::strata_bin(), &slot, args);
    for view in ["loaded", "global"] {
        let answer = wait_for(&format!("the 8h block in the {view} view"), TIMEOUT, || {
            let answer = get_json(node.http(), &format!("/api/v1/blocks?view={view}"))?;
            let shown = metas(&answer);
            let compacted = shown.values().any(|m| m["compaction"]["level"] == 2 && m["minTime"] == t0);
            if compacted && shown.len() == 2 {
                Ok(answer)
            } else {
                Err(format!("{answer}"))
            }
        })
        .unwrap();
        assert!(metas(&answer).contains_key(&inputs[4].to_string()), "{answer}");
    }
    let dom = dump_dom(b.work.path(), &format!("http://{}/?view=loaded", node.http()));
    assert!(dom.contains("class=\"block level-2\""), "the 8h block drawn");
    assert!(dom.contains("loaded view: 2 blocks"), "the page says which view it shows");
}

#[test]
fn standalone_without_compaction_leaves_the_bucket_alone() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let slot = fleet.slot("standalone");
    let mut args = slot.standalone_args();
    args.extend(["--compact.disable", "--sync-block-duration=1s"].map(OsString::from));
    let node = Node::start(common::strata_bin(), &slot, args);
    let (_, text) = strata_testkit::http::get(node.http(), "/metrics").unwrap();
    assert!(!text.contains("thanos_compact_iterations"), "no compactor metrics");
    let answer = wait_for("the bucket page", TIMEOUT, || get_json(node.http(), "/bucket/api/v1/blocks")).unwrap();
    assert_eq!(answer["status"], "success");
}

#[test]
fn bad_flags_fail_naming_what_is_wrong() {
    let b = fs_bucket();
    let config = b.config_file.to_str().unwrap();
    for (args, expected) in [
        (vec!["--objstore.config-file", config, "--refresh=soon"], "--refresh"),
        (
            vec!["--objstore.config-file", config, "--selector.relabel-config=- action: [nope"],
            "--selector.relabel-config",
        ),
        (vec!["--objstore.config-file", config, "--http-address=999.0.0.1:1"], "--http-address"),
        // Without an objstore flag and without strata standalone's bucket here.
        (vec![], "no bucket given"),
    ] {
        let out = Command::new(common::strata_bin())
            .args(["tools", "bucket", "web"])
            .args(&args)
            .current_dir(b.work.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A bucket of a moto S3 server of its own, with what drives it.
struct S3Bucket {
    _moto: Moto,
    work: tempfile::TempDir,
    config_file: PathBuf,
    bucket: strata_shipper::Bucket,
    rt: tokio::runtime::Runtime,
}

fn s3_bucket() -> S3Bucket {
    let work = tempfile::tempdir().expect("temp dir");
    let moto = Moto::start(work.path());
    let yaml = moto.new_bucket("web");
    let config_file = work.path().join("objstore.yml");
    std::fs::write(&config_file, &yaml).expect("write objstore config");
    let bucket = strata_shipper::parse_objstore_config(&yaml, "objstore.yml").expect("config").build().expect("bucket");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    S3Bucket { _moto: moto, work, config_file, bucket, rt }
}

impl S3Bucket {
    /// Ships 2h blocks starting at `starts` as `{cluster="eu"}`'s; their ULIDs in order.
    fn ship(&self, starts: &[i64]) -> Vec<Ulid> {
        let dir = tempfile::tempdir_in(self.work.path()).expect("blocks dir");
        let ids = starts
            .iter()
            .map(|&from| {
                write_block_in(dir.path(), &series(from, from + 2 * HOUR), Some((from, from + 2 * HOUR))).unwrap()
            })
            .collect();
        ship(&self.rt, &self.bucket, dir.path(), &[("cluster", "eu")]).expect("ship");
        ids
    }

    /// `tools bucket web` of `program` over the bucket, ready, with `extra` flags.
    fn web(&self, program: &Path, fleet: &mut Fleet, name: &str, extra: &[&str]) -> Node {
        let slot = fleet.slot(name);
        let mut args: Vec<OsString> = ["tools", "bucket", "web", "--objstore.config-file"].map(OsString::from).to_vec();
        args.push(self.config_file.clone().into());
        args.extend(["--http-address", &slot.http, "--refresh=10m", "--timeout=1m"].map(OsString::from));
        args.extend(extra.iter().map(OsString::from));
        Node::start(program, &slot, args)
    }

    /// The object keys under `prefix`.
    fn objects(&self, prefix: &str) -> Vec<String> {
        let list = self.rt.block_on(self.bucket.list_recursive(prefix)).expect("list");
        let mut keys: Vec<String> = list.into_iter().map(|o| o.location.as_ref().to_owned()).collect();
        keys.sort();
        keys
    }

    fn marker(&self, id: Ulid, file: &str) -> Value {
        let bytes = self.rt.block_on(self.bucket.get_opt(&format!("{id}/{file}"))).expect("get").expect("marker");
        serde_json::from_slice(&bytes).expect("marker JSON")
    }
}

/// The blocks of `/api/v1/blocks` once the first fetch is done.
fn listed(addr: &str) -> Vec<String> {
    let answer = wait_for("the first fetch", TIMEOUT, || {
        let answer = get_json(addr, "/api/v1/blocks")?;
        if answer["data"]["refreshedAt"] == "0001-01-01T00:00:00Z" {
            return Err(format!("not refreshed yet: {answer}"));
        }
        Ok(answer)
    })
    .unwrap();
    metas(&answer).into_keys().collect()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn prefix_header_sets_the_prefix_of_the_page_links() {
    let b = s3_bucket();
    let mut fleet = Fleet::new(&b.work.path().join("fleet"));
    let strata = common::strata_bin();
    let with = b.web(strata, &mut fleet, "with", &["--web.prefix-header=X-Forwarded-Prefix"]);
    let page = |node: &Node, headers: &[(&str, &str)], path: &str| {
        let (status, body) = strata_testkit::http::request(node.http(), "GET", path, headers, b"").unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    let proxied = [("X-Forwarded-Prefix", "/proxied/bucket/")];
    for path in ["/", "/blocks"] {
        let body = page(&with, &proxied, path);
        assert!(body.contains("<base href=\"/proxied/bucket/\">"), "{path}: links under the header's prefix");
    }
    assert!(!page(&with, &[], "/").contains("<base"), "no header, relative links");
    // A header naming another host keeps only its path: the page's requests stay here.
    let body = page(&with, &[("X-Forwarded-Prefix", "https://evil.example/p")], "/");
    assert!(body.contains("<base href=\"/p/\">") && !body.contains("evil.example"), "host dropped");

    // Without the flag the header is not looked at; --web.external-prefix wins over it.
    let without = b.web(strata, &mut fleet, "without", &[]);
    assert!(!page(&without, &proxied, "/").contains("<base"), "header ignored without --web.prefix-header");
    let flags = ["--web.prefix-header=X-Forwarded-Prefix", "--web.external-prefix=/ext", "--web.route-prefix=/"];
    let external = b.web(strata, &mut fleet, "external", &flags);
    assert!(page(&external, &proxied, "/").contains("<base href=\"/ext/\">"), "--web.external-prefix wins");

    let out = Command::new(common::strata_bin())
        .args(["tools", "bucket", "web", "--objstore.config-file"])
        .arg(&b.config_file)
        .args(["--http-address=127.0.0.1:0", "--web.prefix-header=Bad Header"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--web.prefix-header"), "{stderr}");
}

#[test]
fn time_range_limits_the_blocks_as_thanos_does() {
    let b = s3_bucket();
    let t0 = window_start();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let old = b.ship(&[t0, t0 + 2 * HOUR, t0 + 4 * HOUR]);
    let recent = b.ship(&[(now - 4 * HOUR) / HOUR * HOUR])[0];
    let mut fleet = Fleet::new(&b.work.path().join("fleet"));
    // Both ends inclusive: the first block ends where the range starts.
    let range = [format!("--min-time={}", rfc3339(t0 + 2 * HOUR)), format!("--max-time={}", rfc3339(t0 + 3 * HOUR))];
    let range: Vec<&str> = range.iter().map(String::as_str).collect();
    for (name, flags, expected) in [
        ("absolute", range, vec![old[0], old[1]]),
        ("relative", vec!["--min-time=-1d"], vec![recent]),
        ("none", vec![], vec![old[0], old[1], old[2], recent]),
        ("empty", vec!["--min-time=-1d", "--max-time=-2d"], vec![]),
    ] {
        let ours = b.web(common::strata_bin(), &mut fleet, &format!("strata-{name}"), &flags);
        let theirs = b.web(&peer("thanos"), &mut fleet, &format!("thanos-{name}"), &flags);
        let mut expected: Vec<String> = expected.iter().map(Ulid::to_string).collect();
        expected.sort();
        assert_eq!(listed(theirs.http()), expected, "{name}: thanos");
        assert_eq!(listed(ours.http()), expected, "{name}: strata");
    }
    for bad in ["--min-time=yesterday", "--max-time=2024-13-01T00:00:00Z"] {
        let out = Command::new(common::strata_bin())
            .args(["tools", "bucket", "web", "--objstore.config-file"])
            .arg(&b.config_file)
            .args(["--http-address=127.0.0.1:0", bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let flag = bad.split('=').next().unwrap();
        assert!(!out.status.success() && stderr.contains(flag), "{bad}: {stderr}");
    }
}

const FORM: [(&str, &str); 1] = [("Content-Type", "application/x-www-form-urlencoded")];

/// `POST /api/v1/blocks/mark` with a form body.
fn mark(addr: &str, form: &str) -> (u16, String) {
    strata_testkit::http::post(addr, "/api/v1/blocks/mark", &FORM, form.as_bytes()).unwrap()
}

#[test]
fn mark_writes_the_marker_and_shows_it() {
    let b = s3_bucket();
    let t0 = window_start();
    let ids = b.ship(&[t0, t0 + 2 * HOUR, t0 + 4 * HOUR]);
    let mut fleet = Fleet::new(&b.work.path().join("fleet"));
    let web = b.web(common::strata_bin(), &mut fleet, "strata", &[]);
    listed(web.http());

    for (id, action, file) in [
        (ids[0], "DELETION", "deletion-mark.json"),
        (ids[1], "NO_COMPACTION", "no-compact-mark.json"),
        (ids[2], "NO_DOWNSAMPLE", "no-downsample-mark.json"),
    ] {
        let (status, body) = mark(web.http(), &format!("id={id}&action={action}&detail=by+hand+%26+API"));
        assert_eq!((status, body.as_str()), (204, ""), "{action}: Thanos's answer");
        let marker = b.marker(id, file);
        assert_eq!(marker["id"], id.to_string(), "{file}");
        assert_eq!(marker["details"], "by hand & API", "{file}");
        assert_eq!(marker["version"], 1, "{file}");
        if action != "DELETION" {
            assert_eq!(marker["reason"], "manual", "{file}: as `tools bucket mark` writes it");
        }
    }
    // The page's API shows the marks without waiting for --refresh (10m).
    let answer = wait_for("the marks in /api/v1/blocks", TIMEOUT, || {
        let answer = get_json(web.http(), "/api/v1/blocks")?;
        let marks = &answer["data"]["marks"];
        let shown = marks[ids[0].to_string()]["deletion"]["details"] == "by hand & API"
            && marks[ids[1].to_string()]["noCompact"] == true
            && marks[ids[2].to_string()]["noDownsample"] == true;
        if shown {
            Ok(answer)
        } else {
            Err(format!("{answer}"))
        }
    })
    .unwrap();
    // Marked for deletion, the block is still listed (as Thanos lists it until deleted).
    assert!(metas(&answer).contains_key(&ids[0].to_string()), "{answer}");
    // Marking again keeps the first mark, as `tools bucket mark` does.
    let first = b.marker(ids[0], "deletion-mark.json");
    assert_eq!(mark(web.http(), &format!("id={}&action=DELETION&detail=again", ids[0])).0, 204);
    assert_eq!(b.marker(ids[0], "deletion-mark.json"), first);
    // The fields may come in the query string too, as Go's FormValue reads them.
    let (status, _) = strata_testkit::http::post(
        web.http(),
        &format!("/api/v1/blocks/mark?id={}&action=NO_COMPACTION", ids[0]),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 204);
    // No detail given: Thanos's marker leaves the field out.
    assert_eq!(b.marker(ids[0], "no-compact-mark.json")["details"], Value::Null);
}

#[test]
fn bad_marks_are_refused_as_thanos_refuses_them() {
    let b = s3_bucket();
    let t0 = window_start();
    let id = b.ship(&[t0])[0];
    let before = b.objects("");
    let mut fleet = Fleet::new(&b.work.path().join("fleet"));
    let ours = b.web(common::strata_bin(), &mut fleet, "strata", &[]);
    let theirs = b.web(&peer("thanos"), &mut fleet, "thanos", &[]);
    let too_big = format!("9{}", &id.to_string()[1..]);
    let cases = [
        "action=DELETION".to_owned(),
        "id=&action=DELETION".to_owned(),
        format!("id={id}"),
        format!("id={id}&action="),
        "id=nope&action=DELETION".to_owned(),
        format!("id={too_big}&action=DELETION"),
        format!("id={id}&action=DELETE"),
        format!("id={id}&action=deletion"),
        "id=nope&action=NOPE".to_owned(),
        "%zz=%%&&id".to_owned(),
    ];
    for form in &cases {
        let (status, body) = mark(ours.http(), form);
        let (their_status, their_body) = mark(theirs.http(), form);
        assert_eq!(status, 400, "{form}: {body}");
        assert_eq!(status, their_status, "{form}: status as Thanos's ({their_body})");
        let (ours_json, theirs_json): (Value, Value) =
            (serde_json::from_str(&body).unwrap(), serde_json::from_str(&their_body).unwrap());
        assert_eq!(ours_json, theirs_json, "{form}: answer as Thanos's");
    }
    // Stricter than Thanos, which would write a marker for a block that is not there.
    let (status, body) = mark(ours.http(), &format!("id={}&action=DELETION", Ulid::new()));
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &answer["errorType"]), (400, &Value::from("bad_data")), "{body}");
    assert!(answer["error"].as_str().unwrap().contains("not in bucket"), "{body}");
    // A body past the request limit is refused (413, or the connection closed while the
    // rest is still being sent); nothing is marked and the server goes on.
    let huge = format!("id={id}&action=DELETION&detail={}", "x".repeat(4 << 20));
    match strata_testkit::http::post(ours.http(), "/api/v1/blocks/mark", &FORM, huge.as_bytes()) {
        Ok((status, body)) => assert_eq!(status, 413, "{body}"),
        Err(e) => assert!(e.contains("Broken pipe") || e.contains("reset"), "{e}"),
    }
    let (status, _) = strata_testkit::http::get(ours.http(), "/api/v1/blocks/mark").unwrap();
    assert_eq!(status, 405, "marking takes POST only");
    assert_eq!(b.objects(""), before, "nothing written");

    // --disable-admin-operations: refused as Thanos refuses it, by `tools bucket web` and by
    // `strata compact`, whose page has the same endpoint.
    let ours = b.web(common::strata_bin(), &mut fleet, "strata-disabled", &["--disable-admin-operations"]);
    let theirs = b.web(&peer("thanos"), &mut fleet, "thanos-disabled", &["--disable-admin-operations"]);
    let slot = fleet.slot("compact-disabled");
    let mut args: Vec<OsString> = ["compact", "--wait", "--objstore.config-file"].map(OsString::from).to_vec();
    args.push(b.config_file.clone().into());
    args.extend(["--data-dir".into(), slot.data_dir.clone().into_os_string()]);
    args.extend(["--http-address", &slot.http, "--disable-admin-operations"].map(OsString::from));
    let compact = Node::start(common::strata_bin(), &slot, args);
    let valid = format!("id={id}&action=DELETION&detail=x");
    let (their_status, their_body) = mark(theirs.http(), &valid);
    assert_eq!(their_status, 400, "{their_body}");
    let theirs_json: Value = serde_json::from_str(&their_body).unwrap();
    for node in [&ours, &compact] {
        let (status, body) = mark(node.http(), &valid);
        assert_eq!(status, 400, "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), theirs_json);
    }
    assert_eq!(b.objects(""), before, "nothing written");

    // Without the flag, the compactor's page marks.
    let slot = fleet.slot("compact");
    let mut args: Vec<OsString> = ["compact", "--wait", "--objstore.config-file"].map(OsString::from).to_vec();
    args.push(b.config_file.clone().into());
    args.extend(["--data-dir".into(), slot.data_dir.clone().into_os_string()]);
    args.extend(["--http-address", &slot.http].map(OsString::from));
    let compact = Node::start(common::strata_bin(), &slot, args);
    assert_eq!(mark(compact.http(), &format!("id={id}&action=NO_COMPACTION&detail=y")).0, 204);
    assert_eq!(b.marker(id, "no-compact-mark.json")["details"], "y");
}
