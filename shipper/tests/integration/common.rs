//! Test helpers: a moto S3 server per test, a byte-counting TCP proxy to interrupt uploads at a
//! chosen point, and real Prometheus blocks made by promtool.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use strata_shipper::Bucket;
use strata_tsdb::block::meta::BlockMeta;
use ulid::Ulid;

/// Fails the test with a clear message when a tool the test needs is not installed.
pub fn require_tool(name: &str, install_hint: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is not on PATH; this test needs it. Install it with: {install_hint} (.ci/run does this)");
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A moto S3 server on 127.0.0.1, killed when dropped.
pub struct Moto {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Moto {
    pub fn start(log_dir: &Path) -> Moto {
        let mut m = Moto { port: free_port(), child: None, log: log_dir.join("moto.log") };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let exe = require_tool("moto_server", "pip install 'moto[server]'");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open moto log");
        let child = Command::new(exe)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start moto_server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "moto_server exited with {status}; log: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if http(self.port, "GET", "/", b"").is_some_and(|(code, _)| code == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "moto_server did not answer on port {} within 60s", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: the server vanishes mid-request, and its in-memory buckets with it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a fresh server on the same port (empty: moto keeps its state in memory).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn create_bucket(&self, name: &str) {
        let (code, body) = http(self.port, "PUT", &format!("/{name}"), b"").expect("create bucket request");
        assert_eq!(code, 200, "create bucket {name}: {}", String::from_utf8_lossy(&body));
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 request to 127.0.0.1 (for moto's unsigned bucket creation and readiness).
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp);
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body_start = text.find("\r\n\r\n").map(|i| i + 4).unwrap_or(resp.len());
    Some((code, resp[body_start..].to_vec()))
}

/// An objstore YAML for a moto bucket reached at `port` (moto itself or a proxy in front).
pub fn s3_yaml(port: u16, bucket: &str, part_size: u64, extra: &str) -> String {
    format!(
        "type: S3\nconfig:\n  bucket: {bucket}\n  endpoint: 127.0.0.1:{port}\n  region: us-east-1\n  access_key: test\n  \
         secret_key: test\n  insecure: true\n  part_size: {part_size}\n{extra}"
    )
}

pub fn s3_bucket(port: u16, bucket: &str, part_size: u64, extra: &str) -> Bucket {
    let cfg = strata_shipper::parse_objstore_config(&s3_yaml(port, bucket, part_size, extra), "test objstore config")
        .expect("valid config");
    cfg.build().expect("bucket")
}

/// A TCP proxy on 127.0.0.1 that counts the bytes clients send; once a threshold is crossed it
/// runs a trigger (kill the server, or cut every connection and refuse new ones).
pub struct Proxy {
    pub port: u16,
    inner: Arc<ProxyInner>,
    accept: Option<JoinHandle<()>>,
}

type Trigger = Box<dyn FnMut() + Send>;

struct ProxyInner {
    upstream: u16,
    sent: AtomicU64,
    trip_at: AtomicU64,
    down: AtomicBool,
    stop: AtomicBool,
    tripped: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    trigger: Mutex<Option<Trigger>>,
}

impl ProxyInner {
    fn cut_all(&self) {
        if let Ok(mut conns) = self.conns.lock() {
            for c in conns.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    fn count(&self, n: u64) {
        let total = self.sent.fetch_add(n, Ordering::SeqCst) + n;
        if total >= self.trip_at.load(Ordering::SeqCst) && !self.tripped.swap(true, Ordering::SeqCst) {
            if let Some(t) = self.trigger.lock().ok().and_then(|mut t| t.take()) {
                let mut t = t;
                t();
            }
        }
    }
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let inner = Arc::new(ProxyInner {
            upstream,
            sent: AtomicU64::new(0),
            trip_at: AtomicU64::new(u64::MAX),
            down: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            tripped: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            trigger: Mutex::new(None),
        });
        let acc = inner.clone();
        let accept = std::thread::spawn(move || {
            while !acc.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if acc.down.load(Ordering::SeqCst) {
                            drop(client);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", acc.upstream)) else { continue };
                        if let (Ok(c2), Ok(s2), Ok(mut conns)) =
                            (client.try_clone(), server.try_clone(), acc.conns.lock())
                        {
                            conns.push(c2);
                            conns.push(s2);
                        }
                        pipe(client.try_clone(), server.try_clone(), Some(acc.clone()));
                        pipe(Ok(server), Ok(client), None);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Proxy { port, inner, accept: Some(accept) }
    }

    /// Bytes clients have sent through the proxy so far.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::SeqCst)
    }

    /// Runs `trigger` once, as soon as `bytes` more client bytes have gone through.
    pub fn trip_after(&self, bytes: u64, trigger: impl FnMut() + Send + 'static) {
        *self.inner.trigger.lock().expect("trigger lock") = Some(Box::new(trigger));
        self.inner.tripped.store(false, Ordering::SeqCst);
        self.inner.trip_at.store(self.sent() + bytes, Ordering::SeqCst);
    }

    pub fn tripped(&self) -> bool {
        self.inner.tripped.load(Ordering::SeqCst)
    }

    /// A handle that cuts every connection and refuses new ones (the server "goes away" while
    /// keeping its state), for use inside a trigger.
    pub fn outage_switch(&self) -> impl FnMut() + Send + 'static {
        let inner = self.inner.clone();
        move || {
            inner.down.store(true, Ordering::SeqCst);
            inner.cut_all();
        }
    }

    pub fn set_up(&self) {
        self.inner.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.cut_all();
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn pipe(from: std::io::Result<TcpStream>, to: std::io::Result<TcpStream>, counter: Option<Arc<ProxyInner>>) {
    let (Ok(mut from), Ok(mut to)) = (from, to) else { return };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(c) = &counter {
                if c.down.load(Ordering::SeqCst) {
                    break;
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            if let Some(c) = &counter {
                c.count(n as u64);
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Writes an OpenMetrics file with `series` gauges sampled every 15s over `hours` from `start_s`
/// and turns it into 2h blocks with promtool; returns the block directories, oldest first.
pub fn promtool_blocks(work: &Path, out: &Path, start_s: i64, hours: i64, series: usize) -> Vec<PathBuf> {
    let promtool = require_tool("promtool", "apt-get install prometheus");
    let mut text = String::from("# HELP test_metric a test gauge\n# TYPE test_metric gauge\n");
    for s in 0..series {
        for t in (0..hours * 3600).step_by(15) {
            text.push_str(&format!("test_metric{{series=\"{s}\"}} {} {}\n", (t as f64) * 0.25 + s as f64, start_s + t));
        }
    }
    text.push_str("# EOF\n");
    let input = work.join(format!("input-{start_s}.om"));
    std::fs::write(&input, text).expect("write openmetrics");
    std::fs::create_dir_all(out).expect("create out dir");
    let before: Vec<PathBuf> = block_dirs(out);
    let output = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(out)
        .output()
        .expect("run promtool");
    assert!(output.status.success(), "promtool failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut made: Vec<PathBuf> = block_dirs(out).into_iter().filter(|d| !before.contains(d)).collect();
    made.sort_by_key(|d| BlockMeta::read(d).map(|m| m.min_time).unwrap_or_default());
    assert!(!made.is_empty(), "promtool made no blocks");
    made
}

/// ULID-named directories in `dir`.
pub fn block_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir() && e.file_name().to_str().is_some_and(|n| Ulid::from_string(n).is_ok()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Copies a block under a new ULID, with `edit` applied to its meta.json; returns the new dir.
pub fn copy_block(src: &Path, dst_parent: &Path, edit: impl FnOnce(&mut BlockMeta)) -> PathBuf {
    let mut meta = BlockMeta::read(src).expect("read meta");
    let id = Ulid::new();
    meta.ulid = id;
    meta.compaction.sources = vec![id];
    edit(&mut meta);
    let dst = dst_parent.join(id.to_string());
    std::fs::create_dir_all(dst.join("chunks")).expect("mkdir");
    for rel in ["index", "tombstones"] {
        if src.join(rel).exists() {
            std::fs::copy(src.join(rel), dst.join(rel)).expect("copy");
        }
    }
    for e in std::fs::read_dir(src.join("chunks")).expect("read chunks") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dst.join("chunks").join(e.file_name())).expect("copy chunk");
    }
    meta.write(&dst).expect("write meta");
    dst
}

/// Adds a chunk segment of `size` bytes (a valid segment header, then random bytes that no
/// series refers to) to a block, to exercise multipart uploads.
pub fn add_big_segment(block: &Path, name: &str, size: usize) {
    use rand::RngCore;
    let mut data = vec![0u8; size];
    rand::thread_rng().fill_bytes(&mut data);
    data[..8].copy_from_slice(&[0x85, 0xBD, 0x40, 0xDD, 0x01, 0, 0, 0]);
    std::fs::write(block.join("chunks").join(name), data).expect("write segment");
}

/// The files the bucket must hold for a local block: chunks/*, index, with their sizes.
pub fn local_files(block: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(block.join("chunks")).expect("chunks") {
        let e = e.expect("entry");
        out.insert(format!("chunks/{}", e.file_name().to_string_lossy()), e.metadata().expect("stat").len());
    }
    out.insert("index".into(), std::fs::metadata(block.join("index")).expect("stat index").len());
    out
}

/// Object name → size for everything under `<id>/` in the bucket.
pub async fn bucket_files(bucket: &Bucket, id: &str) -> BTreeMap<String, u64> {
    bucket
        .list_recursive(id)
        .await
        .expect("list block")
        .into_iter()
        .map(|o| (o.location.as_ref().trim_start_matches(&format!("{id}/")).to_owned(), o.size))
        .collect()
}

/// The uploaded list of a shipper state file.
pub fn state_uploaded(tsdb: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(tsdb.join(strata_shipper::STATE_FILENAME)).expect("state file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("state json");
    assert_eq!(v["version"], 1, "{text}");
    v["uploaded"].as_array().expect("uploaded list").iter().map(|u| u.as_str().expect("ulid").to_owned()).collect()
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `promtool tsdb analyze` on one block of a directory; panics with its output on failure.
pub fn promtool_analyze(dir: &Path, id: &str) -> String {
    let promtool = require_tool("promtool", "apt-get install prometheus");
    let out = Command::new(promtool).args(["tsdb", "analyze"]).arg(dir).arg(id).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool tsdb analyze {id} failed: {text}");
    text
}

/// Awaits `fut`, failing the test if it takes longer than `secs` (a hung request must not hang
/// the suite).
pub async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {secs}s"),
    }
}
