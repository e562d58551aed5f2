//! SIGKILL while `strata receive` writes a block: after a restart nothing acknowledged is lost
//! and no temporary block directory is left.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{parse_dump_line, remote_write_body, strata_bin, REMOTE_WRITE_V1};
use strata_proto::prometheus as v1;
use strata_testkit::promtool::path_arg;
use strata_testkit::tools::run_ok;
use strata_testkit::{http, send_signal, wait_for, Fleet, Node, Signal};

const SERIES: usize = 4_000;
const STEP_MS: i64 = 30_000;
/// 3h20m of rounds: the head becomes cuttable (span > 3h) at about round 360.
const ROUNDS: i64 = 400;

fn round_body(round: i64, t0: i64) -> Vec<u8> {
    let timeseries = (0..SERIES)
        .map(|i| v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: "crash_test".into() },
                v1::Label { name: "i".into(), value: i.to_string() },
            ],
            samples: vec![v1::Sample {
                value: (round * SERIES as i64 + i as i64) as f64,
                timestamp: t0 + round * STEP_MS,
            }],
            ..Default::default()
        })
        .collect();
    remote_write_body(&v1::WriteRequest { timeseries, ..Default::default() })
}

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

    // Kill the receiver the moment a block directory is being written.
    let seen_tmp = Arc::new(AtomicBool::new(false));
    let pid = rx.proc.pid();
    let watcher = {
        let seen = seen_tmp.clone();
        let tenant = tenant.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while Instant::now() < deadline {
                if tmp_dirs(&tenant).iter().any(|n| n.ends_with(".tmp-for-creation")) {
                    // The receiver is reaped only when `rx` is dropped, after this thread is joined.
                    send_signal(pid, Signal::Kill);
                    seen.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let t0 = 1_700_000_000_000 - 1_700_000_000_000 % 7_200_000;
    let mut acked = 0;
    for round in 0..ROUNDS {
        match http::post(&slot.remote_write, "/api/v1/receive", &REMOTE_WRITE_V1, &round_body(round, t0)) {
            Ok((200, _)) => acked = round + 1,
            Ok((code, body)) => panic!("round {round}: status {code}: {body}"),
            Err(_) => break,
        }
        if seen_tmp.load(Ordering::SeqCst) {
            break;
        }
    }
    watcher.join().unwrap();
    assert!(seen_tmp.load(Ordering::SeqCst), "no block write was seen to kill; acked {acked} rounds");
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
    let dump = run_ok(strata_bin(), &["tools", "tsdb", "dump", "--tsdb.path", path_arg(&tenant)]);
    let mut per_series = vec![Vec::<(i64, f64)>::new(); SERIES];
    for line in dump.lines() {
        let (labels, v, t) = parse_dump_line(line).unwrap_or_else(|e| panic!("{e}"));
        let i = labels.iter().find(|(name, _)| name == "i").map(|(_, i)| i.parse::<usize>());
        let i = i.unwrap_or_else(|| panic!("no label i in {line}")).unwrap_or_else(|e| panic!("{line}: {e}"));
        per_series[i].push((t, v));
    }
    for (i, samples) in per_series.iter().enumerate() {
        assert!(samples.len() as i64 >= acked, "series {i}: {} samples, {acked} acknowledged", samples.len());
        for (round, &(t, v)) in samples.iter().enumerate().take(acked as usize) {
            let round = round as i64;
            assert_eq!((t, v), (t0 + round * STEP_MS, (round * SERIES as i64 + i as i64) as f64), "series {i}");
        }
        assert!(samples.windows(2).all(|w| w[0].0 < w[1].0), "series {i}: duplicate or unordered samples");
    }
}
