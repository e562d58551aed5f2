//! Blocks for the bucket tests: written with `BlockWriter` and shipped with the strata shipper,
//! compacted and downsampled by the real `thanos compact`; and the fleet that reads them back
//! through both stores and both queriers.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use strata_testkit::{peer, Fleet, Node, Proc};

use strata_tsdb::block::{BlockCompaction, BlockWriter, ChunkData};
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

/// One run of the real `thanos compact` (no `--wait`) over the bucket of `config_file`, with
/// no consistency or deletion delay, its data directory and log in `work`: compacts, then
/// downsamples what is long enough (raw blocks of 40h to 5m, 5m blocks of 10 days to 1h).
/// Panics if it fails; returns its log.
pub fn thanos_compact_once(work: &Path, config_file: &Path) -> String {
    let mut compact = Command::new(peer("thanos"));
    compact.arg("compact").arg("--objstore.config-file").arg(config_file);
    compact.arg("--data-dir").arg(work.join("compact"));
    compact.args(["--consistency-delay=0s", "--delete-delay=0s", "--http-address=127.0.0.1:0"]);
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
