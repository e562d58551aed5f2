//! SIGKILL while `strata receive` writes a block: after a restart nothing acknowledged is lost
//! and no temporary block directory is left.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, http_get, wait_for};
use prost::Message;
use strata_proto::prometheus as v1;
use strata_proto::protocol::{Version, CONTENT_ENCODING_HEADER, SNAPPY_ENCODING, VERSION_HEADER};

const SERIES: usize = 4_000;
const STEP_MS: i64 = 30_000;
/// 3h20m of rounds: the head becomes cuttable (span > 3h) at about round 360.
const ROUNDS: i64 = 400;

/// The receiver process; killed when dropped so a failing test leaves nothing behind.
struct Receiver {
    child: Child,
}

impl Receiver {
    fn start(dir: &Path, rw: u16, http: u16, log: &Path) -> Receiver {
        let log = std::fs::File::options().create(true).append(true).open(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["receive", "--tsdb.path"])
            .arg(dir)
            .args(["--remote-write.address", &format!("127.0.0.1:{rw}")])
            .args(["--http-address", &format!("127.0.0.1:{http}")])
            .args(["--grpc-address", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start strata receive");
        let addr = format!("127.0.0.1:{http}");
        wait_for("receiver ready", Duration::from_secs(60), || match http_get(&addr, "/-/ready") {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .unwrap();
        Receiver { child }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety implications.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    snap::raw::Encoder::new()
        .compress_vec(&v1::WriteRequest { timeseries, ..Default::default() }.encode_to_vec())
        .unwrap()
}

/// POSTs one remote-write body; Ok(status) or Err when the connection fails.
fn post(addr: &str, body: &[u8]) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let head = format!(
        "POST /api/v1/receive HTTP/1.0\r\nHost: {addr}\r\n{CONTENT_ENCODING_HEADER}: {SNAPPY_ENCODING}\r\n\
         Content-Type: {}\r\n{VERSION_HEADER}: {}\r\nContent-Length: {}\r\n\r\n",
        Version::V1.content_type(),
        Version::V1.header_value(),
        body.len()
    );
    s.write_all(head.as_bytes()).and_then(|_| s.write_all(body)).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad response {text:?}"))
}

fn tmp_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.contains(".tmp")).collect())
        .unwrap_or_default()
}

#[test]
fn sigkill_during_block_write_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let tenant = data.join("default-tenant");
    let log = work.path().join("strata.log");
    let (rw, http) = (free_port(), free_port());
    let rx = Receiver::start(&data, rw, http, &log);
    let rw_addr = format!("127.0.0.1:{rw}");

    // Kill the receiver the moment a block directory is being written.
    let seen_tmp = Arc::new(AtomicBool::new(false));
    let pid = rx.child.id() as i32;
    let watcher = {
        let seen = seen_tmp.clone();
        let tenant = tenant.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while Instant::now() < deadline {
                if tmp_dirs(&tenant).iter().any(|n| n.ends_with(".tmp-for-creation")) {
                    // SAFETY: see Receiver::signal.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
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
        match post(&rw_addr, &round_body(round, t0)) {
            Ok(200) => acked = round + 1,
            Ok(code) => panic!("round {round}: status {code}\n{}", std::fs::read_to_string(&log).unwrap_or_default()),
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
    let rx = Receiver::start(&data, rw, http, &log);
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
    rx.signal(libc::SIGTERM);
    let mut rx = rx;
    let status = rx.child.wait().unwrap();
    assert!(status.success(), "unclean exit {status:?}");
    assert!(tmp_dirs(&tenant).is_empty(), "temporary directories left: {:?}", tmp_dirs(&tenant));

    // Every acknowledged sample is there, once.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["tools", "tsdb", "dump", "--tsdb.path"])
        .arg(&tenant)
        .output()
        .unwrap();
    assert!(out.status.success(), "dump failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut per_series = vec![Vec::<(i64, f64)>::new(); SERIES];
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (labels, rest) = line.split_once("} ").unwrap();
        let i: usize = labels.rsplit_once("i=\"").unwrap().1.trim_end_matches('"').parse().unwrap();
        let (v, t) = rest.split_once(' ').unwrap();
        per_series[i].push((t.parse().unwrap(), v.parse().unwrap()));
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
