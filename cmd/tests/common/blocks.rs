//! Blocks for the bucket tests: written with `BlockWriter` and shipped with the strata shipper,
//! compacted and downsampled by the real `thanos compact`; and the fleet that reads them back
//! through both stores and both queriers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use strata_testkit::{peer, Fleet, Node, Proc};

use strata_tsdb::block::{Block, BlockCompaction, BlockSeries, BlockWriter, ChunkData};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::Labels;

/// A series with its samples at absolute times.
pub type Series = (Labels, Vec<(i64, f64)>);

/// Writes `series` as one level-1 block under `dir` with `BlockWriter`, in chunks of 120
/// samples, spanning its samples; returns the block's ULID.
pub fn write_block(dir: &Path, series: &[Series]) -> strata_tsdb::Result<ulid::Ulid> {
    write_block_in(dir, series, None)
}

/// [`write_block`] with the block's time range given (`[min, max)`, as a receiver cuts 2h
/// blocks) instead of taken from the samples.
pub fn write_block_in(dir: &Path, series: &[Series], range: Option<(i64, i64)>) -> strata_tsdb::Result<ulid::Ulid> {
    let mut sorted: Vec<&Series> = series.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let id = ulid::Ulid::new();
    let mut w = BlockWriter::new(dir, id)?;
    let mut symbols: Vec<&str> = sorted.iter().flat_map(|(l, _)| l.iter().flat_map(|(n, v)| [n, v])).collect();
    symbols.sort_unstable();
    symbols.dedup();
    w.add_symbols(symbols)?;
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for (labels, samples) in sorted {
        let chunks: Vec<ChunkData> = samples
            .chunks(120)
            .map(|part| {
                let mut app = XorAppender::new();
                for &(t, v) in part {
                    app.append(t, v);
                }
                ChunkData {
                    min_time: part[0].0,
                    max_time: part[part.len() - 1].0,
                    encoding: Encoding::Xor,
                    data: bytes::Bytes::from(app.into_bytes()),
                }
            })
            .collect();
        min = min.min(samples[0].0);
        max = max.max(samples[samples.len() - 1].0);
        w.add_series(labels, &chunks)?;
    }
    let (min, max) = range.unwrap_or((min, max + 1));
    w.finish(min, max, BlockCompaction { level: 1, sources: vec![id], ..BlockCompaction::default() })?;
    Ok(id)
}

/// A small deterministic generator (xorshift), so every run writes the same data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What differs between the series and chunks of two blocks.
pub fn chunk_differences(ours: &Block, theirs: &Block) -> Vec<String> {
    let all = |b| -> Vec<_> {
        BlockSeries::new(b, &[], i64::MIN, i64::MAX, false).expect("series").map(|s| s.expect("series")).collect()
    };
    let (ours, theirs) = (all(ours), all(theirs));
    let mut diffs = Vec::new();
    let names = |v: &[strata_tsdb::block::SeriesChunks]| v.iter().map(|s| s.labels.to_string()).collect::<Vec<_>>();
    if names(&ours) != names(&theirs) {
        diffs.push(format!("series differ:\n  ours   {:?}\n  theirs {:?}", names(&ours), names(&theirs)));
        return diffs;
    }
    for (o, t) in ours.iter().zip(&theirs) {
        if o.chunks.len() != t.chunks.len() {
            diffs.push(format!("{}: {} chunks, thanos {}", o.labels, o.chunks.len(), t.chunks.len()));
            continue;
        }
        for (i, (oc, tc)) in o.chunks.iter().zip(&t.chunks).enumerate() {
            if oc != tc {
                let at = oc.data.iter().zip(tc.data.iter()).position(|(a, b)| a != b);
                diffs.push(format!(
                    "{} chunk {i}: ours [{}, {}] {} {} bytes, thanos [{}, {}] {} {} bytes, first differing byte {at:?}",
                    o.labels,
                    oc.min_time,
                    oc.max_time,
                    oc.encoding,
                    oc.data.len(),
                    tc.min_time,
                    tc.max_time,
                    tc.encoding,
                    tc.data.len()
                ));
            }
        }
    }
    diffs
}

/// meta.json without what depends on the ULID, the time of writing or the upload (the files
/// Thanos lists as it uploads), parents in order of min time and ULID.
pub fn comparable_meta(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("meta.json")).expect("meta.json");
    let mut meta: serde_json::Value = serde_json::from_str(&text).expect("meta.json");
    let obj = meta.as_object_mut().expect("meta object");
    obj.remove("ulid");
    let thanos = obj.get_mut("thanos").and_then(|t| t.as_object_mut()).expect("thanos section");
    for k in ["files", "upload_time"] {
        thanos.remove(k);
    }
    // Thanos's planner sorts blocks by min time with an unstable sort, so parents starting at
    // the same time come in any order.
    if let Some(parents) = meta.pointer_mut("/compaction/parents").and_then(|p| p.as_array_mut()) {
        parents.sort_by_key(|p| (p["minTime"].as_i64(), p["ulid"].as_str().map(str::to_owned)));
    }
    meta
}

/// Fails unless the blocks at `ours` and `theirs` hold the same series and chunks, byte for
/// byte, and the same meta.json but for the ULID, the time of writing and the upload.
pub fn assert_same_blocks(what: &str, ours: &Path, theirs: &Path) {
    let (o, t) = (Block::open(ours).expect("open ours"), Block::open(theirs).expect("open theirs"));
    let diffs = chunk_differences(&o, &t);
    assert!(diffs.is_empty(), "{what}: {} differences:\n{}", diffs.len(), diffs.join("\n"));
    assert!(t.meta().stats.num_series > 0, "{what}: thanos wrote no series");
    let (om, tm) = (comparable_meta(ours), comparable_meta(theirs));
    assert_eq!(om, tm, "{what}: meta.json differs");
}

/// A temporary FILESYSTEM bucket and what drives it.
pub struct FsBucket {
    pub work: tempfile::TempDir,
    /// The bucket's directory.
    pub root: PathBuf,
    /// Its objstore config, for `thanos` and `strata` flags.
    pub config_file: PathBuf,
    pub bucket: strata_shipper::Bucket,
    pub rt: tokio::runtime::Runtime,
}

pub fn fs_bucket() -> FsBucket {
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().join("bucket");
    std::fs::create_dir_all(&root).expect("bucket dir");
    let yaml = format!("type: FILESYSTEM\nconfig:\n  directory: {}\n", root.display());
    let config_file = work.path().join("objstore.yml");
    std::fs::write(&config_file, &yaml).expect("write objstore config");
    let bucket = strata_shipper::parse_objstore_config(&yaml, "objstore.yml").expect("config").build().expect("bucket");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    FsBucket { work, root, config_file, bucket, rt }
}

/// One run of the real `thanos compact` (no `--wait`) over the bucket of `config_file`, with
/// no consistency or deletion delay, its data directory and log in `work`: compacts, then
/// downsamples what is long enough (raw blocks of 40h to 5m, 5m blocks of 10 days to 1h).
/// `flags` are added to its command line. Panics if it fails; returns its log.
pub fn thanos_compact_once(work: &Path, config_file: &Path, flags: &[&str]) -> String {
    let mut compact = Command::new(peer("thanos"));
    compact.arg("compact").arg("--objstore.config-file").arg(config_file);
    compact.arg("--data-dir").arg(work.join("compact"));
    compact.args(["--consistency-delay=0s", "--delete-delay=0s", "--http-address=127.0.0.1:0"]).args(flags);
    let status = Proc::spawn("thanos compact", compact, &work.join("compact.log")).wait(Duration::from_secs(300));
    let log = std::fs::read_to_string(work.join("compact.log")).unwrap_or_default();
    assert!(status.success(), "thanos compact failed: {status}\n{log}");
    log
}

/// The downsampling resolutions of the blocks in the FILESYSTEM bucket at `root`.
pub fn resolutions(root: &Path) -> Result<Vec<i64>, String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| format!("list {}: {e}", root.display()))?.flatten() {
        let Ok(meta) = std::fs::read_to_string(entry.path().join("meta.json")) else { continue };
        let meta: serde_json::Value =
            serde_json::from_str(&meta).map_err(|e| format!("{}/meta.json: {e}", entry.path().display()))?;
        out.push(meta["thanos"]["downsample"]["resolution"].as_i64().unwrap_or(0));
    }
    out.sort_unstable();
    Ok(out)
}

/// Uploads the blocks in `dir` to the bucket with the strata shipper, as `labels`' stream; fails
/// when nothing was uploaded.
pub fn ship(
    rt: &tokio::runtime::Runtime,
    bucket: &strata_shipper::Bucket,
    dir: &Path,
    labels: &[(&str, &str)],
) -> Result<(), String> {
    let labels = labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let shipper = strata_shipper::Shipper::new(bucket.clone(), dir, labels, "receive")
        .map_err(|e| format!("shipper over {}: {e}", dir.display()))?;
    let stats = rt.block_on(shipper.sync()).map_err(|e| format!("ship blocks of {}: {e}", dir.display()))?;
    if stats.uploaded == 0 {
        return Err(format!("nothing shipped from {}", dir.display()));
    }
    Ok(())
}

/// `strata store` and `thanos store` over the bucket of `config_file`, and each querier over
/// each store, all ready. The queriers are named and ordered: Thanos's querier over its own
/// store first (the reference), then thanos over strata, strata over strata, strata over
/// thanos.
pub struct CrossReadFleet {
    pub stores: [Node; 2],
    pub queriers: Vec<(&'static str, Node)>,
}

/// Starts a [`CrossReadFleet`] in `fleet`; `store_flags` go to both stores,
/// `thanos_query_flags` to Thanos's queriers.
pub fn cross_read_fleet(
    fleet: &mut Fleet,
    thanos: &Path,
    config_file: &Path,
    store_flags: &[&str],
    thanos_query_flags: &[&str],
) -> CrossReadFleet {
    let store_args = |slot: &strata_testkit::Slot| -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["store".into()];
        args.extend(["--objstore.config-file".into(), config_file.as_os_str().to_owned()]);
        args.extend(["--data-dir".into(), slot.data_dir.clone().into_os_string()]);
        args.extend(["--http-address", &slot.http, "--grpc-address", &slot.grpc].map(OsString::from));
        args.extend(store_flags.iter().map(OsString::from));
        args
    };
    let strata_slot = fleet.slot("strata-store");
    let thanos_slot = fleet.slot("thanos-store");
    let mut stores = [
        Node::spawn(super::strata_bin(), &strata_slot, store_args(&strata_slot)),
        Node::spawn(thanos, &thanos_slot, store_args(&thanos_slot)),
    ];
    for store in &mut stores {
        store.wait_ready();
    }
    let mut queriers: Vec<(&'static str, Node)> = [
        ("thanos query over thanos store", thanos, &thanos_slot),
        ("thanos query over strata store", thanos, &strata_slot),
        ("strata query over strata store", super::strata_bin(), &strata_slot),
        ("strata query over thanos store", super::strata_bin(), &thanos_slot),
    ]
    .into_iter()
    .map(|(name, bin, store)| {
        let slot = fleet.slot(&name.replace(' ', "-"));
        let args = if bin == super::strata_bin() {
            slot.query_args(&[&store.grpc])
        } else {
            let mut args = slot.thanos_query_args(&[&store.grpc]);
            args.extend(thanos_query_flags.iter().map(OsString::from));
            args
        };
        (name, Node::spawn(bin, &slot, args))
    })
    .collect();
    for (_, node) in &mut queriers {
        node.wait_ready();
    }
    CrossReadFleet { stores, queriers }
}
