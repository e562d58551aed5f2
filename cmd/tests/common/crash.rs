//! The crash tests' common shape: rounds of one sample per series written to a receiver until a
//! watcher sees the moment to SIGKILL it, then every sample read back from the TSDB directory.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_proto::prometheus as v1;
use strata_testkit::promtool::path_arg;
use strata_testkit::tools::run_ok;
use strata_testkit::{http, send_signal, Signal, Slot};

use super::{parse_dump_line, remote_write_body, strata_bin, REMOTE_WRITE_V1};

/// `series` series `{__name__=metric, i="<n>"}`, each with one sample at `t0 + round * step_ms`
/// whose value tells the round and the series apart.
pub struct Rounds {
    pub metric: &'static str,
    pub series: usize,
    pub step_ms: i64,
    pub t0: i64,
}

impl Rounds {
    pub fn new(metric: &'static str, series: usize, step_ms: i64) -> Rounds {
        Rounds { metric, series, step_ms, t0: 1_700_000_000_000 - 1_700_000_000_000 % 7_200_000 }
    }

    /// The sample series `i` gets in `round`.
    pub fn sample(&self, round: i64, i: usize) -> (i64, f64) {
        (self.t0 + round * self.step_ms, (round * self.series as i64 + i as i64) as f64)
    }

    pub fn body(&self, round: i64) -> Vec<u8> {
        let timeseries = (0..self.series)
            .map(|i| {
                let (timestamp, value) = self.sample(round, i);
                v1::TimeSeries {
                    labels: vec![
                        v1::Label { name: "__name__".into(), value: self.metric.into() },
                        v1::Label { name: "i".into(), value: i.to_string() },
                    ],
                    samples: vec![v1::Sample { value, timestamp }],
                    ..Default::default()
                }
            })
            .collect();
        remote_write_body(&v1::WriteRequest { timeseries, ..Default::default() })
    }

    /// Writes `rounds` to the receiver in `slot`, each acknowledged before the next is sent.
    pub fn write(&self, slot: &Slot, rounds: std::ops::Range<i64>) {
        for round in rounds {
            match http::post(&slot.remote_write, "/api/v1/receive", &REMOTE_WRITE_V1, &self.body(round)) {
                Ok((200, _)) => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
    }

    /// Writes rounds from 0 while a watcher polls `kill_now` and SIGKILLs `pid` when it holds;
    /// returns how many rounds were acknowledged. Fails when the kill never came.
    pub fn write_until_killed(
        &self,
        slot: &Slot,
        pid: u32,
        max_rounds: i64,
        kill_now: impl Fn() -> bool + Send + 'static,
    ) -> i64 {
        let killed = Arc::new(AtomicBool::new(false));
        let watcher = {
            let killed = killed.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(300);
                while Instant::now() < deadline {
                    if kill_now() {
                        // The process is reaped only when its `Node` is dropped, after this
                        // thread is joined, so the pid cannot be reused in between.
                        send_signal(pid, Signal::Kill);
                        killed.store(true, Ordering::SeqCst);
                        return;
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
            })
        };
        let mut acked = 0;
        for round in 0..max_rounds {
            match http::post(&slot.remote_write, "/api/v1/receive", &REMOTE_WRITE_V1, &self.body(round)) {
                Ok((200, _)) => acked = round + 1,
                Ok((code, body)) => panic!("round {round}: status {code}: {body}"),
                Err(_) => break,
            }
            if killed.load(Ordering::SeqCst) {
                break;
            }
        }
        watcher.join().unwrap();
        assert!(killed.load(Ordering::SeqCst), "the moment to kill never came; acked {acked} rounds");
        acked
    }

    /// Every sample of the TSDB directory `tenant` (read with `strata tools tsdb dump`), per
    /// series index, in the dump's order.
    pub fn dumped(&self, tenant: &Path) -> Vec<Vec<(i64, f64)>> {
        let dump = run_ok(strata_bin(), &["tools", "tsdb", "dump", "--tsdb.path", path_arg(tenant)]);
        let mut per_series = vec![Vec::new(); self.series];
        for line in dump.lines() {
            let (labels, v, t) = parse_dump_line(line).unwrap_or_else(|e| panic!("{e}"));
            let i = labels.iter().find(|(name, _)| name == "i").map(|(_, i)| i.parse::<usize>());
            let i = i.unwrap_or_else(|| panic!("no label i in {line}")).unwrap_or_else(|e| panic!("{line}: {e}"));
            per_series[i].push((t, v));
        }
        per_series
    }
}
