//! SIGKILL while `strata receive` writes closed head chunks to `chunks_head/`, then a torn tail
//! on the newest chunk file (what a machine crash can leave): after a restart every
//! acknowledged sample is there exactly once, the chunk files' part read from them, the rest
//! from the WAL.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::crash::Rounds;
use common::strata_bin;
use strata_testkit::{Fleet, Node};

/// Series per request: every one closes a chunk in the same round, so one request writes this
/// many chunks, a window the kill lands in.
const SERIES: usize = 20_000;
const STEP_MS: i64 = 15_000;
/// Chunks of 120 samples at 15 s: the round that closes the first one is about round 120.
const ROUNDS: i64 = 200;

/// Head chunk files, oldest first.
fn chunk_files(tenant: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(tenant.join("chunks_head"))
        .map(|rd| rd.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn written_bytes(tenant: &Path) -> u64 {
    chunk_files(tenant).iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len().saturating_sub(8)).sum()
}

#[test]
fn sigkill_while_writing_head_chunks_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    let slot = Fleet::new(work.path()).slot("strata-receive");
    let tenant = slot.data_dir.join("default-tenant");
    let rx = Node::start(strata_bin(), &slot, slot.receive_args());
    let rounds = Rounds::new("chunk_crash_test", SERIES, STEP_MS);

    // Kill the receiver as soon as closed chunks start going to the chunk files.
    let watched = tenant.clone();
    let acked = rounds.write_until_killed(&slot, rx.proc.pid(), ROUNDS, move || written_bytes(&watched) > 0);
    assert!(acked >= 100, "chunks were written before the first chunk could be full? acked {acked}");
    drop(rx);
    let written = written_bytes(&tenant);
    eprintln!(
        "killed with {written} bytes of closed chunks written ({SERIES} chunks need about {} bytes)",
        SERIES * 60
    );

    // Tear the newest file's tail, as a machine crash in the middle of a write leaves it.
    let newest = chunk_files(&tenant).pop().unwrap();
    let len = std::fs::metadata(&newest).unwrap().len();
    if len > 8 + 3 {
        std::fs::OpenOptions::new().write(true).open(&newest).unwrap().set_len(len - 3).unwrap();
    }

    // Restart: the torn file is removed, the WAL fills in, appends go on.
    let rx = Node::start(strata_bin(), &slot, slot.receive_args());
    let more = acked + 5;
    rounds.write(&slot, acked..more);
    let status = rx.proc.terminate(Duration::from_secs(120));
    assert!(status.success(), "unclean exit {status:?}");

    // Every acknowledged sample is there, once, and so are those written after the restart.
    // The round in flight at the kill is sent again after the restart with the same values,
    // so each series holds exactly rounds 0..more.
    for (i, samples) in rounds.dumped(&tenant).iter().enumerate() {
        let want: Vec<(i64, f64)> = (0..more).map(|r| rounds.sample(r, i)).collect();
        assert_eq!(samples, &want, "series {i}");
    }
}
