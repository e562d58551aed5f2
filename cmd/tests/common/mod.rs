//! Helpers for end-to-end tests that run the `strata` binary next to real Prometheus tools:
//! child processes that cannot outlive a failing test, free ports, a minimal HTTP client and
//! polling with deadlines.

#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of `name` on PATH; fails the test with an install hint when it is missing.
pub fn require_binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file()).unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed or not on PATH; this end-to-end test needs it \
                 (Debian: apt-get install {package}; .ci/run installs it)"
        )
    })
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind an ephemeral port")
}

/// A child process that is killed when dropped, with its output in a log file.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, cmd: Command, log: &Path) -> Proc {
        let out = File::options().create(true).append(true).open(log).expect("open log file");
        Proc::spawn_with_stdout(name, cmd, out, log)
    }

    /// Starts `cmd` with stdout going to `stdout` and stderr appended to `log`.
    pub fn spawn_with_stdout(name: &str, mut cmd: Command, stdout: File, log: &Path) -> Proc {
        let err = File::options().create(true).append(true).open(log).expect("open log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc { name: name.to_string(), child: Some(child), log: log.to_path_buf() }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("process already reaped")
    }

    /// Fails with the log when the process has already exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child().try_wait() {
            panic!("{} exited early with {status}\n{}", self.name, self.log_tail());
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("process already reaped");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap killed process");
    }

    /// SIGTERM, then wait up to `timeout` for the exit status.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.child().id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "send SIGTERM to {}", self.name);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().expect("wait for child") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                panic!("{} did not exit within {timeout:?} of SIGTERM\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait(mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().expect("wait for child") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                panic!("{} did not finish within {timeout:?}\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!("--- last lines of {} log ---\n{}", self.name, lines[start..].join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET http://addr/path` over HTTP/1.0 (no chunked encoding to undo); returns status and body.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let timeout = Some(Duration::from_secs(30));
    stream.set_read_timeout(timeout).map_err(|e| e.to_string())?;
    stream.set_write_timeout(timeout).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n\r\n")
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| format!("malformed HTTP response from {addr}{path}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line from {addr}{path}: {head:?}"))?;
    Ok((status, body.to_string()))
}

/// `http_get` that insists on 200 and parses JSON.
pub fn get_json(addr: &str, path: &str) -> Result<serde_json::Value, String> {
    let (status, body) = http_get(addr, path)?;
    if status != 200 {
        return Err(format!("GET {addr}{path}: status {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {addr}{path}: bad JSON ({e}): {body}"))
}

/// Percent-encodes a query-string component.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Calls `check` every 100 ms until it returns `Ok` or `timeout` passes; the error then names
/// what was awaited and the last thing `check` saw.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => {
                return Err(format!("timed out after {timeout:?} waiting for {what}; last: {last}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Sum of every sample of metric `name` in a Prometheus text exposition.
pub fn metric_sum(exposition: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if rest.starts_with('{') { rest.rsplit_once("} ").map(|(_, v)| v) } else { rest.strip_prefix(' ') };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

/// A label set, sorted by name.
pub type LabelSet = Vec<(String, String)>;

/// Parses `{a="b", c="d"}` as printed by Prometheus's `labels.String()` (Go-quoted values),
/// returning the labels and the rest of the input.
pub fn parse_labels(s: &str) -> Result<(LabelSet, &str), String> {
    let mut rest = s.strip_prefix('{').ok_or_else(|| format!("no '{{' in {s:?}"))?;
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('}') {
        return Ok((labels, after));
    }
    loop {
        let (name, after) = rest.split_once("=\"").ok_or_else(|| format!("no label value in {s:?}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("dangling escape in {s:?}")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {s:?}")),
            }
        };
        labels.push((name.to_string(), value));
        rest = &after[end + 1..];
        if let Some(r) = rest.strip_prefix(", ") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('}') {
            labels.sort();
            return Ok((labels, r));
        } else {
            return Err(format!("expected ', ' or '}}' in {s:?}"));
        }
    }
}

/// Parses a `tsdb dump` line: `{labels} value timestamp_ms`.
pub fn parse_dump_line(line: &str) -> Result<(LabelSet, f64, i64), String> {
    let (labels, rest) = parse_labels(line)?;
    let mut fields = rest.split_whitespace();
    let value =
        fields.next().and_then(|v| v.parse::<f64>().ok()).ok_or_else(|| format!("no value in dump line {line:?}"))?;
    let ts = fields
        .next()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| format!("no timestamp in dump line {line:?}"))?;
    Ok((labels, value, ts))
}

/// One HTTP/1.0 POST; returns status and body.
pub fn http_post(addr: &str, path: &str, headers: &str, body: &[u8]) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let head = format!("POST {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).and_then(|_| s.write_all(body)).map_err(|e| format!("send to {addr}: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("malformed response {text:?}"))?;
    let status =
        head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Sends `req` as a snappy-compressed remote-write 1.0 request; fails the test unless it gets a
/// 2xx.
pub fn remote_write(addr: &str, path: &str, req: &strata_proto::prometheus::WriteRequest) {
    use prost::Message;
    use strata_proto::protocol::{Version, CONTENT_ENCODING_HEADER, SNAPPY_ENCODING, VERSION_HEADER};
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy");
    let headers = format!(
        "{CONTENT_ENCODING_HEADER}: {SNAPPY_ENCODING}\r\nContent-Type: {}\r\n{VERSION_HEADER}: {}\r\n",
        Version::V1.content_type(),
        Version::V1.header_value()
    );
    let (status, text) =
        http_post(addr, path, &headers, &body).unwrap_or_else(|e| panic!("remote write to {addr}{path}: {e}"));
    assert!((200..300).contains(&status), "remote write to {addr}{path}: {status} {text}");
}

/// Polls `/-/ready` until it answers 200; fails with the process's log otherwise.
pub fn wait_ready(proc: &mut Proc, addr: &str, what: &str) {
    let ready = wait_for(what, Duration::from_secs(60), || {
        proc.assert_running();
        match http_get(addr, "/-/ready")? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("status {status}: {body}")),
        }
    });
    if let Err(e) = ready {
        panic!("{e}\n{}", proc.log_tail());
    }
}

/// `strata standalone` and Prometheus (remote-write receiver on, nothing scraped), both ready,
/// for asking both the same questions about the same data.
pub struct StrataAndPrometheus {
    /// HTTP API address of strata.
    pub strata: String,
    /// HTTP API address of Prometheus.
    pub prometheus: String,
    /// Remote-write address of strata (path `/api/v1/receive`).
    pub strata_rw: String,
    pub strata_proc: Proc,
    pub prom_proc: Proc,
}

impl StrataAndPrometheus {
    /// Starts both with data and logs under `work`; fails clearly when `prometheus` is missing.
    pub fn start(work: &Path) -> StrataAndPrometheus {
        let prometheus_bin = require_binary("prometheus", "prometheus");
        let (rw, http, grpc, prom) = (free_port(), free_port(), free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("standalone")
            .arg("--data-dir")
            .arg(work.join("strata"))
            .args(["--remote-write.address", &format!("127.0.0.1:{rw}")])
            .args(["--http-address", &format!("127.0.0.1:{http}")])
            .args(["--grpc-address", &format!("127.0.0.1:{grpc}")]);
        let mut strata_proc = Proc::spawn("strata standalone", cmd, &work.join("strata.log"));
        let config = work.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").expect("write prometheus.yml");
        let mut cmd = Command::new(prometheus_bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", work.join("prometheus").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom}"))
            .arg("--web.enable-remote-write-receiver");
        let mut prom_proc = Proc::spawn("prometheus", cmd, &work.join("prometheus.log"));
        let strata = format!("127.0.0.1:{http}");
        let prometheus = format!("127.0.0.1:{prom}");
        wait_ready(&mut strata_proc, &strata, "strata /-/ready");
        wait_ready(&mut prom_proc, &prometheus, "prometheus /-/ready");
        StrataAndPrometheus { strata, prometheus, strata_rw: format!("127.0.0.1:{rw}"), strata_proc, prom_proc }
    }

    /// Remote-writes `req` to both.
    pub fn write_both(&self, req: &strata_proto::prometheus::WriteRequest) {
        remote_write(&self.strata_rw, "/api/v1/receive", req);
        remote_write(&self.prometheus, "/api/v1/write", req);
    }
}
