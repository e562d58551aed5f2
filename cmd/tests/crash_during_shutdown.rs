//! A clean shutdown writes a head snapshot that the next start restores instead of replaying
//! the WAL; a SIGKILL while that snapshot is being written (right after the SIGTERM) leaves
//! the WAL to replay. Either way every acknowledged sample is there exactly once.

mod common;

use std::path::Path;
use std::time::Duration;

use common::crash::Rounds;
use common::strata_bin;
use strata_testkit::{send_signal, Fleet, Node, Signal};

/// Enough series that writing their snapshot takes a while for the kill to land in.
const SERIES: usize = 20_000;
const STEP_MS: i64 = 15_000;
/// Past the first closed chunk (about round 120): the snapshot holds open chunks of 30 samples
/// and the chunk files the closed ones.
const ROUNDS: i64 = 150;

fn has_snapshot(tenant: &Path) -> bool {
    std::fs::read_dir(tenant).is_ok_and(|rd| {
        rd.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().starts_with("chunk_snapshot."))
    })
}

fn log_has(node: &Node, text: &str) -> bool {
    std::fs::read_to_string(node.proc.log()).is_ok_and(|log| log.contains(text))
}

#[test]
fn sigkill_during_the_shutdown_snapshot_loses_nothing_and_a_clean_restart_skips_the_wal() {
    let work = tempfile::tempdir().unwrap();
    let slot = Fleet::new(work.path()).slot("strata-receive");
    let tenant = slot.data_dir.join("default-tenant");
    let rounds = Rounds::new("shutdown_crash_test", SERIES, STEP_MS);
    let mut rx = Node::start(strata_bin(), &slot, slot.receive_args());
    rounds.write(&slot, 0..ROUNDS);

    // SIGTERM, then SIGKILL as soon as the snapshot directory appears (half written, most
    // likely, or just renamed into place).
    rx.proc.signal(Signal::Term);
    let pid = rx.proc.pid();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !has_snapshot(&tenant) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(100));
    }
    send_signal(pid, Signal::Kill);
    let half_written = std::fs::read_dir(&tenant)
        .is_ok_and(|rd| rd.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().ends_with(".tmp")));
    eprintln!("killed with the snapshot {}", if half_written { "half written" } else { "complete" });
    drop(rx);

    // The restart replays the WAL (a snapshot, whole or not, is not trusted after a crash) or
    // restores the finished snapshot; the samples are the same.
    let rx = Node::start(strata_bin(), &slot, slot.receive_args());
    let more = ROUNDS + 5;
    rounds.write(&slot, ROUNDS..more);
    let status = rx.proc.terminate(Duration::from_secs(120));
    assert!(status.success(), "unclean exit {status:?}");
    assert!(has_snapshot(&tenant), "a clean shutdown leaves a head snapshot");

    // After the clean shutdown the head comes from the snapshot, without the WAL's samples.
    let rx = Node::start(strata_bin(), &slot, slot.receive_args());
    assert!(log_has(&rx, "head snapshot read"), "{}", rx.proc.log_tail());
    assert!(log_has(&rx, &format!("series_from_snapshot={SERIES}")), "{}", rx.proc.log_tail());
    let last = more + 5;
    rounds.write(&slot, more..last);
    let status = rx.proc.terminate(Duration::from_secs(120));
    assert!(status.success(), "unclean exit {status:?}");

    for (i, samples) in rounds.dumped(&tenant).iter().enumerate() {
        let want: Vec<(i64, f64)> = (0..last).map(|r| rounds.sample(r, i)).collect();
        assert_eq!(samples, &want, "series {i}");
    }
}
