//! SIGKILL while `strata receive` writes closed head chunks to `chunks_head/`, then a torn tail
//! on the newest chunk file (what a machine crash can leave): after a restart every
//! acknowledged sample is there exactly once, the chunk files' part read from them, the rest
//! from the WAL.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{parse_dump_line, remote_write_body, strata_bin, REMOTE_WRITE_V1};
use strata_proto::prometheus as v1;
use strata_testkit::promtool::path_arg;
use strata_testkit::tools::run_ok;
use strata_testkit::{http, send_signal, Fleet, Node, Signal};

/// Series per request: every one closes a chunk in the same round, so one request writes this
/// many chunks, a window the kill lands in.
const SERIES: usize = 20_000;
const STEP_MS: i64 = 15_000;
/// Chunks of 120 samples at 15 s: the round that closes the first one is about round 120.
const ROUNDS: i64 = 200;

fn round_body(round: i64, t0: i64) -> Vec<u8> {
    let timeseries = (0..SERIES)
        .map(|i| v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: "chunk_crash_test".into() },
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

    // Kill the receiver as soon as closed chunks start going to the chunk files.
    let killed = Arc::new(AtomicBool::new(false));
    let pid = rx.proc.pid();
    let watcher = {
        let killed = killed.clone();
        let tenant = tenant.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while Instant::now() < deadline {
                if written_bytes(&tenant) > 0 {
                    // The receiver is reaped only when `rx` is dropped, after this thread is joined.
                    send_signal(pid, Signal::Kill);
                    killed.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_micros(100));
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
        if killed.load(Ordering::SeqCst) {
            break;
        }
    }
    watcher.join().unwrap();
    assert!(killed.load(Ordering::SeqCst), "no chunk write was seen to kill; acked {acked} rounds");
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
    for round in acked..more {
        match http::post(&slot.remote_write, "/api/v1/receive", &REMOTE_WRITE_V1, &round_body(round, t0)) {
            Ok((200, _)) => {}
            other => panic!("round {round} after the restart: {other:?}"),
        }
    }
    let status = rx.proc.terminate(Duration::from_secs(120));
    assert!(status.success(), "unclean exit {status:?}");

    // Every acknowledged sample is there, once, and so are those written after the restart.
    let dump = run_ok(strata_bin(), &["tools", "tsdb", "dump", "--tsdb.path", path_arg(&tenant)]);
    let mut per_series = vec![Vec::<(i64, f64)>::new(); SERIES];
    for line in dump.lines() {
        let (labels, v, t) = parse_dump_line(line).unwrap_or_else(|e| panic!("{e}"));
        let i = labels.iter().find(|(name, _)| name == "i").map(|(_, i)| i.parse::<usize>());
        let i = i.unwrap_or_else(|| panic!("no label i in {line}")).unwrap_or_else(|e| panic!("{line}: {e}"));
        per_series[i].push((t, v));
    }
    // The round in flight at the kill is sent again after the restart with the same values,
    // so each series holds exactly rounds 0..more.
    for (i, samples) in per_series.iter().enumerate() {
        let want: Vec<(i64, f64)> =
            (0..more).map(|r| (t0 + r * STEP_MS, (r * SERIES as i64 + i as i64) as f64)).collect();
        assert_eq!(samples, &want, "series {i}");
    }
}
