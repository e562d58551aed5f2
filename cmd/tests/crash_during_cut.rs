//! SIGKILL while `strata receive` writes a block: after a restart nothing acknowledged is lost
//! and no temporary block directory is left.

mod common;

use std::path::Path;
use std::time::Duration;

use common::crash::Rounds;
use common::strata_bin;
use strata_testkit::{wait_for, Fleet, Node};

const SERIES: usize = 4_000;
const STEP_MS: i64 = 30_000;
/// 3h20m of rounds: the head becomes cuttable (span > 3h) at about round 360.
const ROUNDS: i64 = 400;

fn tmp_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.contains(".tmp")).collect())
        .unwrap_or_default()
}

#[test]
fn sigkill_during_block_write_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    let slot = Fleet::new(work.path()).slot("strata-receive");
    let tenant = slot.data_dir.join("default-tenant");
    let rx = Node::start(strata_bin(), &slot, slot.receive_args());
    let rounds = Rounds::new("crash_test", SERIES, STEP_MS);

    // Kill the receiver the moment a block directory is being written.
    let watched = tenant.clone();
    let acked = rounds.write_until_killed(&slot, rx.proc.pid(), ROUNDS, move || {
        tmp_dirs(&watched).iter().any(|n| n.ends_with(".tmp-for-creation"))
    });
    assert!(acked >= 360, "the cut started before the head spanned 3h? acked {acked}");
    drop(rx);
    assert!(!tmp_dirs(&tenant).is_empty(), "the kill came after the block write finished; nothing was interrupted");
    // Restart: the leftover is removed, the WAL is replayed, the cut is redone.
    let rx = Node::start(strata_bin(), &slot, slot.receive_args());
    let block_dirs =
        || std::fs::read_dir(&tenant).unwrap().filter(|e| e.as_ref().unwrap().file_name().len() == 26).count();
    wait_for("the interrupted cut to be redone", Duration::from_secs(120), || {
        if block_dirs() >= 1 {
            Ok(())
        } else {
            Err(format!("{:?}", tmp_dirs(&tenant)))
        }
    })
    .unwrap();
    let status = rx.proc.terminate(Duration::from_secs(120));
    assert!(status.success(), "unclean exit {status:?}");
    assert!(tmp_dirs(&tenant).is_empty(), "temporary directories left: {:?}", tmp_dirs(&tenant));

    // Every acknowledged sample is there, once.
    for (i, samples) in rounds.dumped(&tenant).iter().enumerate() {
        assert!(samples.len() as i64 >= acked, "series {i}: {} samples, {acked} acknowledged", samples.len());
        for (round, &sample) in samples.iter().enumerate().take(acked as usize) {
            assert_eq!(sample, rounds.sample(round as i64, i), "series {i}");
        }
        assert!(samples.windows(2).all(|w| w[0].0 < w[1].0), "series {i}: duplicate or unordered samples");
    }
}
