//! Uploads every block of a TSDB directory once with the shipper and prints the throughput.
//! Driven by scripts/bench-upload.sh; usage: upload_bench <objstore.yml> <tsdb-dir>

use std::collections::BTreeMap;
use std::time::Instant;

use strata_shipper::{parse_objstore_config, Shipper, STATE_FILENAME};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, config_path, tsdb] = args.as_slice() else {
        return Err("usage: upload_bench <objstore.yml> <tsdb-dir>".into());
    };
    let yaml = std::fs::read_to_string(config_path)?;
    let bucket = parse_objstore_config(&yaml, config_path)?.build()?;
    // A fresh state file each run, so every block is uploaded (the bucket must be empty too).
    match std::fs::remove_file(std::path::Path::new(tsdb).join(STATE_FILENAME)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let labels = BTreeMap::from([("replica".to_owned(), "bench".to_owned())]);
    let shipper = Shipper::new(bucket.clone(), tsdb, labels, "receive")?;
    let started = Instant::now();
    let stats = shipper.sync().await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "bucket={bucket} part_size={} blocks={} bytes={} seconds={secs:.2} MiB/s={:.1}",
        bucket.part_size(),
        stats.uploaded,
        stats.bytes,
        stats.bytes as f64 / (1 << 20) as f64 / secs
    );
    Ok(())
}
