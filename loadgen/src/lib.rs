//! Remote-write load generation for benchmarks (`strata tools bench-write`).
//!
//! Sends realistic remote-write traffic (1.0 or 2.0) to any remote-write URL: Strata's
//! `/api/v1/receive` or Prometheus's `/api/v1/write`. The series are shaped like what
//! node_exporter and kube-state-metrics expose: per scrape target 10 counters, 10 gauges and 80
//! classic histogram series (`_bucket` with `le`, `_sum`, `_count`), each with 6 to 10 labels.
//! Their values are invented, so every metric name starts with [`METRIC_PREFIX`]: written into a
//! store that also holds real data, they cannot pass for the exporters' own series.
//!
//! Each series belongs to exactly one batch and each batch to exactly one connection, so the
//! samples of a series always arrive in timestamp order even with many connections. Rounds (one
//! sample per series, one scrape interval apart in sample time) are sent back to back, or, with a
//! round interval, paced in wall-clock time: round k is not sent before k intervals after the
//! start, so rounds arrive like scrapes. Every request's send time, latency and status can be
//! written to a log, to line requests up with events on the server.
//!
//! The label part of every series is encoded once up front; per request only the samples are
//! encoded and spliced in, and a dedicated encoder thread per connection keeps the next batches
//! ready, so the sender measures the server rather than the client. The report says how long the
//! encoders were busy and how long senders waited for them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::encoding::{encode_key, encode_varint, message, WireType};
use prost::Message;
use strata_proto::prometheus as v1;
pub use strata_proto::protocol::Version;
use strata_proto::protocol::{CONTENT_ENCODING_HEADER, SAMPLES_WRITTEN_HEADER, SNAPPY_ENCODING, VERSION_HEADER};
use strata_proto::write_v2 as v2;
use tokio::sync::mpsc;

/// Header carrying the tenant, as Thanos receive expects it.
pub const TENANT_HEADER: &str = "THANOS-TENANT";
/// Start of every metric name the generator writes.
pub const METRIC_PREFIX: &str = "bench_";

/// How many failure bodies the report keeps verbatim.
const KEPT_ERROR_BODIES: usize = 5;
/// Longest failure body kept, in bytes; receivers may echo large payloads back.
const MAX_ERROR_BODY: usize = 512;
/// Encoded requests queued per connection ahead of the sender.
const ENCODE_AHEAD: usize = 4;

/// Field number of the repeated time series in the top-level request message.
fn timeseries_field(version: Version) -> u32 {
    match version {
        Version::V1 => 1,
        Version::V2 => 5,
    }
}

/// What load to send where.
#[derive(Debug, Clone)]
pub struct Config {
    /// Remote-write URL, plain `http://` only.
    pub url: String,
    /// Number of distinct series (active series on the receiver).
    pub series: usize,
    /// Samples per series, i.e. the number of rounds.
    pub samples_per_series: usize,
    /// Series per request.
    pub batch_size: usize,
    /// Parallel connections.
    pub concurrency: usize,
    pub protocol: Version,
    /// Value of the `THANOS-TENANT` header; not sent when `None`.
    pub tenant: Option<String>,
    /// Distance between rounds in sample time, milliseconds.
    pub scrape_interval_ms: i64,
    /// Timestamp of the first round, milliseconds since the epoch. `None` means
    /// now minus rounds × interval, so every sample is recent enough for a receiver's head.
    pub start_ms: Option<i64>,
    /// Deadline for one request including reading its response.
    pub request_timeout: Duration,
    /// Wall-clock time between the starts of consecutive rounds; `None` sends them back to back.
    pub round_interval: Option<Duration>,
    /// File to write one line per request to: unix milliseconds at send, latency in
    /// milliseconds, HTTP status (or `transport` / `timeout`), ordered by send time.
    pub latency_log: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: "http://127.0.0.1:19291/api/v1/receive".to_string(),
            series: 10_000,
            samples_per_series: 10,
            batch_size: 2000,
            concurrency: 4,
            protocol: Version::V1,
            tenant: None,
            scrape_interval_ms: 15_000,
            start_ms: None,
            request_timeout: Duration::from_secs(60),
            round_interval: None,
            latency_log: None,
        }
    }
}

/// Failures that stop a load run before or while it runs (not failed requests: those are
/// counted in the [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid load configuration: {0}")]
    Config(String),
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("load generator task failed: {0}")]
    Task(String),
    #[error("cannot write latency log {path:?}: {source}")]
    LatencyLog { path: PathBuf, source: std::io::Error },
}

/// Outcome of a load run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub protocol: Option<Version>,
    pub series: usize,
    pub samples_per_series: usize,
    pub batch_size: usize,
    pub concurrency: usize,
    /// Requests sent, successful or not.
    pub requests: u64,
    /// Requests answered with a 2xx status.
    pub ok_requests: u64,
    pub samples_sent: u64,
    /// Samples in requests answered with a 2xx status.
    pub samples_accepted: u64,
    /// Snappy-compressed request bytes sent.
    pub bytes_sent: u64,
    /// Failed requests by HTTP status code, or `transport` / `timeout`.
    pub errors: BTreeMap<String, u64>,
    /// The first few failure descriptions, with the response body text.
    pub error_bodies: Vec<String>,
    /// Time from the first request being prepared to the last response.
    pub wall: Duration,
    /// Time spent building label sets before the clock started.
    pub prepare: Duration,
    /// Time the encoder threads were busy (protobuf plus snappy), summed over threads.
    pub encode_busy: Duration,
    /// Time the senders sat idle waiting for an encoded request, summed over connections.
    pub send_wait: Duration,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
    /// The round interval, when rounds were paced.
    pub round_interval: Option<Duration>,
    /// Rounds (counted per connection) whose first request went out after the round's
    /// scheduled start because the previous round was still being sent: the load fell short
    /// of the configured rate.
    pub late_rounds: u64,
}

impl Report {
    /// Accepted samples per wall-clock second.
    pub fn samples_per_second(&self) -> f64 {
        let secs = self.wall.as_secs_f64();
        if secs > 0.0 {
            self.samples_accepted as f64 / secs
        } else {
            0.0
        }
    }

    pub fn failed_requests(&self) -> u64 {
        self.errors.values().sum()
    }

    /// One logfmt line with the numbers scripts need.
    pub fn logfmt(&self) -> String {
        format!(
            "result requests={} ok_requests={} failed_requests={} samples_sent={} \
             samples_accepted={} bytes_sent={} wall_seconds={:.3} samples_per_second={:.0} \
             p50_ms={:.3} p99_ms={:.3} encode_busy_seconds={:.3} send_wait_seconds={:.3} \
             late_rounds={}",
            self.requests,
            self.ok_requests,
            self.failed_requests(),
            self.samples_sent,
            self.samples_accepted,
            self.bytes_sent,
            self.wall.as_secs_f64(),
            self.samples_per_second(),
            ms(self.latency_p50),
            ms(self.latency_p99),
            self.encode_busy.as_secs_f64(),
            self.send_wait.as_secs_f64(),
            self.late_rounds,
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = self.protocol.map(|p| p.to_string()).unwrap_or_default();
        writeln!(
            f,
            "protocol {protocol}: {} series x {} samples, {} series per request, {} connections",
            self.series, self.samples_per_series, self.batch_size, self.concurrency
        )?;
        writeln!(
            f,
            "requests: {} sent, {} ok; samples: {} sent, {} accepted; {:.1} MiB compressed",
            self.requests,
            self.ok_requests,
            self.samples_sent,
            self.samples_accepted,
            self.bytes_sent as f64 / (1024.0 * 1024.0)
        )?;
        writeln!(f, "wall {:.3} s, {:.0} samples/s accepted", self.wall.as_secs_f64(), self.samples_per_second())?;
        writeln!(
            f,
            "request latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(self.latency_p50),
            ms(self.latency_p99),
            ms(self.latency_max)
        )?;
        writeln!(
            f,
            "client: prepare {:.3} s (before the clock), encoders busy {:.3} s, senders waited {:.3} s for encoded requests",
            self.prepare.as_secs_f64(),
            self.encode_busy.as_secs_f64(),
            self.send_wait.as_secs_f64()
        )?;
        if let Some(interval) = self.round_interval {
            writeln!(
                f,
                "pacing: one round every {interval:?}; {} rounds (per connection) started late",
                self.late_rounds
            )?;
        }
        if self.errors.is_empty() {
            writeln!(f, "errors: none")?;
        } else {
            let by_code: Vec<String> = self.errors.iter().map(|(code, n)| format!("{code} x{n}")).collect();
            writeln!(f, "errors: {}", by_code.join(", "))?;
            for body in &self.error_bodies {
                writeln!(f, "  {body}")?;
            }
        }
        write!(f, "{}", self.logfmt())
    }
}

/// Sends the configured load and reports what happened.
pub async fn run(config: &Config) -> Result<Report, Error> {
    validate(config)?;
    let uri: Uri = config
        .url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| Error::Url { url: config.url.clone(), reason: e.to_string() })?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(Error::Url { url: config.url.clone(), reason: "expected an http:// URL with a host".to_string() });
    }
    let tenant = match &config.tenant {
        Some(t) => Some(
            HeaderValue::from_str(t)
                .map_err(|e| Error::Config(format!("tenant {t:?} is not a valid header value: {e}")))?,
        ),
        None => None,
    };

    let log_error = |source| Error::LatencyLog { path: config.latency_log.clone().unwrap_or_default(), source };
    // Created up front so that a bad path fails before the load, not after it.
    let log_file = match &config.latency_log {
        Some(path) => Some(std::fs::File::create(path).map_err(log_error)?),
        None => None,
    };

    let prepare_started = Instant::now();
    let (series, batch_size, protocol) = (config.series, config.batch_size, config.protocol);
    let workload = tokio::task::spawn_blocking(move || Workload::new(series, batch_size, protocol))
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
    let workload = Arc::new(workload);
    let prepare = prepare_started.elapsed();

    let rounds = config.samples_per_series;
    let interval = config.scrape_interval_ms;
    let start_ms = config
        .start_ms
        .unwrap_or_else(|| now_ms() - i64::try_from(rounds).unwrap_or(i64::MAX / 2).saturating_mul(interval));

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(config.concurrency).build(connector);
    let headers = Arc::new(RequestTemplate {
        uri,
        content_type: HeaderValue::from_static(protocol.content_type()),
        version: HeaderValue::from_static(protocol.header_value()),
        user_agent: HeaderValue::from_static(concat!("strata-bench-write/", env!("CARGO_PKG_VERSION"))),
        tenant,
        timeout: config.request_timeout,
        require_written_header: protocol == Version::V2,
    });

    let started = Instant::now();
    let mut encoders = Vec::with_capacity(config.concurrency);
    let mut senders = Vec::with_capacity(config.concurrency);
    for worker in 0..config.concurrency {
        let batches: Vec<usize> = (worker..workload.batches.len()).step_by(config.concurrency).collect();
        if batches.is_empty() {
            continue;
        }
        let (tx, rx) = mpsc::channel(ENCODE_AHEAD);
        let wl = Arc::clone(&workload);
        encoders.push(tokio::task::spawn_blocking(move || encode_loop(&wl, &batches, rounds, start_ms, interval, tx)));
        let pace = config.round_interval.map(|every| (started, every));
        senders.push(tokio::spawn(send_loop(client.clone(), Arc::clone(&headers), rx, pace)));
    }

    let mut report = Report {
        protocol: Some(protocol),
        series: config.series,
        samples_per_series: rounds,
        batch_size: config.batch_size,
        concurrency: config.concurrency,
        prepare,
        round_interval: config.round_interval,
        ..Report::default()
    };
    let mut latencies = Vec::new();
    let mut sent = Vec::new();
    for sender in senders {
        let stats = sender.await.map_err(|e| Error::Task(e.to_string()))?;
        report.requests += stats.requests;
        report.ok_requests += stats.ok_requests;
        report.samples_sent += stats.samples_sent;
        report.samples_accepted += stats.samples_accepted;
        report.bytes_sent += stats.bytes_sent;
        report.send_wait += stats.wait;
        report.late_rounds += stats.late_rounds;
        for (code, n) in stats.errors {
            *report.errors.entry(code).or_default() += n;
        }
        for body in stats.error_bodies {
            if report.error_bodies.len() < KEPT_ERROR_BODIES {
                report.error_bodies.push(body);
            }
        }
        latencies.extend(stats.sent.iter().map(|s| s.latency));
        sent.extend(stats.sent);
    }
    report.wall = started.elapsed();
    for encoder in encoders {
        report.encode_busy += encoder.await.map_err(|e| Error::Task(e.to_string()))?;
    }
    latencies.sort_unstable();
    report.latency_p50 = percentile(&latencies, 0.50);
    report.latency_p99 = percentile(&latencies, 0.99);
    report.latency_max = latencies.last().copied().unwrap_or_default();
    if let Some(file) = log_file {
        sent.sort_by_key(|s| s.at_unix_ms);
        write_latency_log(file, &sent).map_err(log_error)?;
    }
    Ok(report)
}

fn write_latency_log(file: std::fs::File, sent: &[Sent]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(file);
    for s in sent {
        writeln!(out, "{} {:.3} {}", s.at_unix_ms, ms(s.latency), s.status)?;
    }
    out.flush()
}

fn validate(config: &Config) -> Result<(), Error> {
    let positive = [
        ("series", config.series),
        ("samples per series", config.samples_per_series),
        ("batch size", config.batch_size),
        ("concurrency", config.concurrency),
    ];
    for (what, n) in positive {
        if n == 0 {
            return Err(Error::Config(format!("{what} must be at least 1")));
        }
    }
    if config.round_interval == Some(Duration::ZERO) {
        return Err(Error::Config("round interval must be positive".to_string()));
    }
    if config.scrape_interval_ms <= 0 {
        return Err(Error::Config("scrape interval must be positive".to_string()));
    }
    if config.series > MAX_SERIES {
        return Err(Error::Config(format!("at most {MAX_SERIES} series are supported")));
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// One encoded, compressed request, how many samples it carries and its round.
struct Encoded {
    body: Bytes,
    samples: u64,
    round: usize,
}

/// Encodes the worker's batches round by round; returns the time spent encoding.
fn encode_loop(
    workload: &Workload,
    batches: &[usize],
    rounds: usize,
    start_ms: i64,
    interval_ms: i64,
    tx: mpsc::Sender<Encoded>,
) -> Duration {
    let mut busy = Duration::ZERO;
    let mut snappy = snap::raw::Encoder::new();
    let mut buf = Vec::new();
    for round in 0..rounds {
        let ts = start_ms.saturating_add((round as i64).saturating_mul(interval_ms));
        for &b in batches {
            let t = Instant::now();
            workload.encode(b, round as u64, ts, &mut buf);
            // Compressing a buffer we built ourselves cannot fail short of a bug in the sizes.
            let body = match snappy.compress_vec(&buf) {
                Ok(body) => body,
                Err(_) => return busy,
            };
            busy += t.elapsed();
            let samples = workload.batches[b].len() as u64;
            if tx.blocking_send(Encoded { body: Bytes::from(body), samples, round }).is_err() {
                // The sender is gone; nothing more will be sent.
                return busy;
            }
        }
    }
    busy
}

struct RequestTemplate {
    uri: Uri,
    content_type: HeaderValue,
    version: HeaderValue,
    user_agent: HeaderValue,
    tenant: Option<HeaderValue>,
    timeout: Duration,
    /// A 2.0 receiver reports on every answer how many samples it wrote; a 2xx without that
    /// header comes from a 1.x receiver that decoded the body as an empty 1.0 request, which
    /// the 2.0 spec says senders should treat as 415.
    require_written_header: bool,
}

#[derive(Default)]
struct SenderStats {
    requests: u64,
    ok_requests: u64,
    samples_sent: u64,
    samples_accepted: u64,
    bytes_sent: u64,
    wait: Duration,
    errors: BTreeMap<String, u64>,
    error_bodies: Vec<String>,
    late_rounds: u64,
    sent: Vec<Sent>,
}

/// One request as the latency log records it.
struct Sent {
    at_unix_ms: i64,
    latency: Duration,
    /// HTTP status code, or `transport` / `timeout` when there was no answer.
    status: String,
}

impl SenderStats {
    fn fail(&mut self, code: String, detail: String) {
        if self.error_bodies.len() < KEPT_ERROR_BODIES {
            self.error_bodies.push(format!("{code}: {detail}"));
        }
        *self.errors.entry(code).or_default() += 1;
    }
}

/// Posts the requests of one connection one after the other; with `pace` (start, interval),
/// none of round k before start + k × interval.
async fn send_loop(
    client: Client<HttpConnector, Full<Bytes>>,
    template: Arc<RequestTemplate>,
    mut rx: mpsc::Receiver<Encoded>,
    pace: Option<(Instant, Duration)>,
) -> SenderStats {
    let mut stats = SenderStats::default();
    let mut round = None;
    // When the previous answer arrived: a round is late if its predecessor ended after its start.
    let mut answered: Option<Instant> = None;
    loop {
        let waited = Instant::now();
        let Some(encoded) = rx.recv().await else {
            break;
        };
        stats.wait += waited.elapsed();
        if let Some((start, every)) = pace {
            if round != Some(encoded.round) {
                round = Some(encoded.round);
                let due = start + every.saturating_mul(u32::try_from(encoded.round).unwrap_or(u32::MAX));
                if answered.is_some_and(|t| t > due) {
                    stats.late_rounds += 1;
                }
                tokio::time::sleep_until(due.into()).await;
            }
        }
        stats.requests += 1;
        stats.samples_sent += encoded.samples;
        stats.bytes_sent += encoded.body.len() as u64;

        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(template.uri.clone())
            .header(CONTENT_ENCODING_HEADER, HeaderValue::from_static(SNAPPY_ENCODING))
            .header(CONTENT_TYPE, template.content_type.clone())
            .header(VERSION_HEADER, template.version.clone())
            .header(USER_AGENT, template.user_agent.clone());
        if let Some(tenant) = &template.tenant {
            builder = builder.header(TENANT_HEADER, tenant.clone());
        }
        let request = match builder.body(Full::new(encoded.body)) {
            Ok(r) => r,
            Err(e) => {
                stats.fail("request".to_string(), e.to_string());
                continue;
            }
        };

        let at_unix_ms = now_ms();
        let sent = Instant::now();
        let outcome = tokio::time::timeout(template.timeout, async {
            let response = client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let written = response.headers().contains_key(SAMPLES_WRITTEN_HEADER);
            // Read the whole body so the connection can be reused.
            let body = response.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, written, body.to_bytes()))
        })
        .await;
        let latency = sent.elapsed();
        answered = Some(sent + latency);
        let status = match &outcome {
            Ok(Ok((status, _, _))) => status.as_u16().to_string(),
            Ok(Err(_)) => "transport".to_string(),
            Err(_) => "timeout".to_string(),
        };
        stats.sent.push(Sent { at_unix_ms, latency, status });
        match outcome {
            Ok(Ok((status, false, _))) if status.is_success() && template.require_written_header => {
                stats.fail(
                    format!("{}-without-written-headers", status.as_u16()),
                    format!("no {SAMPLES_WRITTEN_HEADER} header: the receiver does not speak remote write 2.0"),
                );
            }
            Ok(Ok((status, _, _))) if status.is_success() => {
                stats.ok_requests += 1;
                stats.samples_accepted += encoded.samples;
            }
            Ok(Ok((status, _, body))) => {
                let cut = body.len().min(MAX_ERROR_BODY);
                let text = String::from_utf8_lossy(&body[..cut]).trim().to_string();
                stats.fail(status.as_u16().to_string(), text);
            }
            Ok(Err(e)) => stats.fail("transport".to_string(), e),
            Err(_) => stats.fail("timeout".to_string(), format!("no answer in {:?}", template.timeout)),
        }
    }
    stats
}

/// Series per scrape target: 10 counters, 10 gauges, 5 histograms of 16 series each.
const SERIES_PER_TARGET: usize = 100;
/// Targets get distinct IPv4 addresses from a /8, which bounds the series count.
const MAX_SERIES: usize = SERIES_PER_TARGET << 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

struct Family {
    /// The exporter's metric name; series get [`METRIC_PREFIX`] in front of it.
    name: &'static str,
    help: &'static str,
    labels: &'static [(&'static str, &'static str)],
}

const ORDERS: &str = "/api/v1/orders";

const COUNTERS: [Family; 10] = [
    Family {
        name: "http_requests_total",
        help: "Total number of HTTP requests by status code, handler and method.",
        labels: &[("code", "200"), ("handler", ORDERS), ("method", "GET")],
    },
    Family {
        name: "http_requests_total",
        help: "Total number of HTTP requests by status code, handler and method.",
        labels: &[("code", "201"), ("handler", ORDERS), ("method", "POST")],
    },
    Family {
        name: "http_requests_total",
        help: "Total number of HTTP requests by status code, handler and method.",
        labels: &[("code", "404"), ("handler", ORDERS), ("method", "GET")],
    },
    Family {
        name: "http_requests_total",
        help: "Total number of HTTP requests by status code, handler and method.",
        labels: &[("code", "503"), ("handler", ORDERS), ("method", "POST")],
    },
    Family {
        name: "http_requests_total",
        help: "Total number of HTTP requests by status code, handler and method.",
        labels: &[("code", "200"), ("handler", "/healthz"), ("method", "GET")],
    },
    Family { name: "process_cpu_seconds_total", help: "Total user and system CPU time spent in seconds.", labels: &[] },
    Family {
        name: "node_network_receive_bytes_total",
        help: "Network device statistic receive_bytes.",
        labels: &[("device", "eth0")],
    },
    Family {
        name: "node_network_transmit_bytes_total",
        help: "Network device statistic transmit_bytes.",
        labels: &[("device", "eth0")],
    },
    Family {
        name: "container_cpu_usage_seconds_total",
        help: "Cumulative cpu time consumed in seconds.",
        labels: &[("container", "app"), ("cpu", "total")],
    },
    Family {
        name: "kube_pod_container_status_restarts_total",
        help: "The number of container restarts per container.",
        labels: &[("container", "app")],
    },
];

const GAUGES: [Family; 10] = [
    Family { name: "process_resident_memory_bytes", help: "Resident memory size in bytes.", labels: &[] },
    Family { name: "go_goroutines", help: "Number of goroutines that currently exist.", labels: &[] },
    Family { name: "process_open_fds", help: "Number of open file descriptors.", labels: &[] },
    Family {
        name: "node_memory_MemAvailable_bytes",
        help: "Memory information field MemAvailable_bytes.",
        labels: &[],
    },
    Family {
        name: "node_filesystem_avail_bytes",
        help: "Filesystem space available to non-root users in bytes.",
        labels: &[("device", "/dev/nvme0n1p1"), ("fstype", "ext4"), ("mountpoint", "/")],
    },
    Family { name: "node_load1", help: "1m load average.", labels: &[] },
    Family {
        name: "container_memory_working_set_bytes",
        help: "Current working set in bytes.",
        labels: &[("container", "app"), ("image", "registry.example.com/shop/app:v1.42.3")],
    },
    Family {
        name: "kube_pod_status_ready",
        help: "Describes whether the pod is ready to serve requests.",
        labels: &[("condition", "true")],
    },
    Family {
        name: "kube_pod_container_resource_requests",
        help: "The number of requested request resource by a container.",
        labels: &[("container", "app"), ("resource", "cpu"), ("unit", "core")],
    },
    Family { name: "up", help: "Whether the target could be scraped.", labels: &[] },
];

const LATENCY_BUCKETS: [&str; 14] =
    ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "25", "60", "+Inf"];
const SIZE_BUCKETS: [&str; 14] =
    ["64", "128", "256", "512", "1024", "2048", "4096", "8192", "16384", "32768", "65536", "131072", "262144", "+Inf"];
/// Series per histogram: the buckets, `_sum` and `_count`.
const HISTOGRAM_SERIES: usize = LATENCY_BUCKETS.len() + 2;

const HISTOGRAMS: [(Family, &[&str; 14]); 5] = [
    (
        Family {
            name: "http_request_duration_seconds",
            help: "Duration of HTTP requests in seconds.",
            labels: &[("handler", ORDERS), ("method", "GET")],
        },
        &LATENCY_BUCKETS,
    ),
    (
        Family {
            name: "http_request_duration_seconds",
            help: "Duration of HTTP requests in seconds.",
            labels: &[("handler", ORDERS), ("method", "POST")],
        },
        &LATENCY_BUCKETS,
    ),
    (
        Family {
            name: "http_response_size_bytes",
            help: "Size of HTTP responses in bytes.",
            labels: &[("handler", ORDERS)],
        },
        &SIZE_BUCKETS,
    ),
    (
        Family {
            name: "grpc_server_handling_seconds",
            help: "Histogram of response latency of gRPC calls handled by the server.",
            labels: &[
                ("grpc_method", "GetOrder"),
                ("grpc_service", "shop.orders.v1.OrderService"),
                ("grpc_type", "unary"),
            ],
        },
        &LATENCY_BUCKETS,
    ),
    (
        Family {
            name: "db_query_duration_seconds",
            help: "Time spent running database queries.",
            labels: &[("operation", "select"), ("table", "order_items")],
        },
        &LATENCY_BUCKETS,
    ),
];

/// Cluster names of the generated targets (also `strata tools bench-blocks`'s).
pub const CLUSTERS: [&str; 3] = ["prod-eu-west-1", "prod-us-east-1", "staging-eu-central-1"];
const NAMESPACES: [&str; 8] =
    ["checkout", "payments", "catalog", "search", "identity", "shipping", "monitoring", "ingress"];
const APPS: [&str; 4] = ["api", "worker", "frontend", "gateway"];
/// The alphabet Kubernetes uses for generated name suffixes.
pub const POD_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// SplitMix64 finaliser: cheap, well-mixed pseudo-random numbers from an index, so values can
/// be derived from (series, round) without per-series state.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// [`mix`] of two numbers.
pub fn mix2(a: u64, b: u64) -> u64 {
    mix(mix(a) ^ b)
}

/// Where a series sits in its target's template.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Counter(usize),
    Gauge(usize),
    /// Histogram index and part: bucket index, then `_sum`, then `_count`.
    Histogram(usize, usize),
}

impl Slot {
    fn of(series: usize) -> Slot {
        let i = series % SERIES_PER_TARGET;
        if i < COUNTERS.len() {
            Slot::Counter(i)
        } else if i < COUNTERS.len() + GAUGES.len() {
            Slot::Gauge(i - COUNTERS.len())
        } else {
            let h = i - COUNTERS.len() - GAUGES.len();
            Slot::Histogram(h / HISTOGRAM_SERIES, h % HISTOGRAM_SERIES)
        }
    }

    fn kind(self) -> Kind {
        match self {
            Slot::Counter(_) => Kind::Counter,
            Slot::Gauge(_) => Kind::Gauge,
            Slot::Histogram(..) => Kind::Histogram,
        }
    }

    fn help(self) -> &'static str {
        match self {
            Slot::Counter(i) => COUNTERS[i].help,
            Slot::Gauge(i) => GAUGES[i].help,
            Slot::Histogram(h, _) => HISTOGRAMS[h].0.help,
        }
    }
}

/// The sorted label set of series number `series`.
fn series_labels(series: usize) -> Vec<(String, String)> {
    let target = (series / SERIES_PER_TARGET) as u64;
    let ns = NAMESPACES[(target / CLUSTERS.len() as u64) as usize % NAMESPACES.len()];
    let app = APPS[(mix(target) % APPS.len() as u64) as usize];
    let mut pod = format!("{ns}-{app}-");
    let h = mix2(target, 0x706f64);
    for k in 0..15 {
        if k == 10 {
            pod.push('-');
        }
        let idx = ((h >> (k * 4)) as usize ^ k) % POD_ALPHABET.len();
        pod.push(POD_ALPHABET[idx] as char);
    }
    let mut labels = vec![
        ("cluster".to_string(), CLUSTERS[target as usize % CLUSTERS.len()].to_string()),
        ("instance".to_string(), format!("10.{}.{}.{}:8080", (target >> 16) & 255, (target >> 8) & 255, target & 255)),
        ("job".to_string(), "kubernetes-pods".to_string()),
        ("namespace".to_string(), ns.to_string()),
        ("pod".to_string(), pod),
    ];
    let (name, extra): (String, &[(&str, &str)]) = match Slot::of(series) {
        Slot::Counter(i) => (format!("{METRIC_PREFIX}{}", COUNTERS[i].name), COUNTERS[i].labels),
        Slot::Gauge(i) => (format!("{METRIC_PREFIX}{}", GAUGES[i].name), GAUGES[i].labels),
        Slot::Histogram(hist, part) => {
            let (family, buckets) = &HISTOGRAMS[hist];
            let suffix = match part.cmp(&buckets.len()) {
                std::cmp::Ordering::Less => {
                    labels.push(("le".to_string(), buckets[part].to_string()));
                    "bucket"
                }
                std::cmp::Ordering::Equal => "sum",
                std::cmp::Ordering::Greater => "count",
            };
            (format!("{METRIC_PREFIX}{}_{suffix}", family.name), family.labels)
        }
    };
    labels.push(("__name__".to_string(), name));
    labels.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    labels.sort_unstable();
    labels
}

/// The value series number `series` has in round `round`: counters and histogram parts never
/// decrease, gauges move around a per-series level.
fn series_value(series: usize, round: u64) -> f64 {
    let s = series as u64;
    match Slot::of(series) {
        Slot::Counter(_) => {
            let rate = 1 + mix(s) % 50;
            let base = mix2(s, 1) % 100_000;
            // The jitter stays below the rate, so consecutive values never decrease.
            (base + round * rate + mix2(s, round) % rate) as f64
        }
        Slot::Gauge(_) => {
            let level = (1 + mix(s) % 1_000_000) as f64;
            let wobble = (mix2(s, round) % 2001) as f64 - 1000.0;
            level + level * wobble / 10_000.0
        }
        Slot::Histogram(hist, part) => {
            let target = s / SERIES_PER_TARGET as u64;
            let seed = mix2(target, hist as u64);
            let rate = 1 + seed % 200;
            let total = seed % 1000 + round * rate + mix2(seed, round) % rate;
            let buckets = HISTOGRAMS[hist].1.len();
            if part + 1 < buckets {
                // Cumulative share of observations up to this bucket.
                let share = 1.0 - 0.6f64.powi(part as i32 + 1);
                (total as f64 * share).floor()
            } else if part + 1 == buckets || part == buckets + 1 {
                total as f64
            } else {
                let mean = (1 + seed % 97) as f64 / 400.0;
                total as f64 * mean
            }
        }
    }
}

/// Pre-encoded label parts of a batch of series.
struct Batch {
    /// First series number in the batch.
    first: usize,
    /// Encoded request fields preceding the time series (the v2 symbol table).
    prefix: Vec<u8>,
    /// Per series: encoded fields before the samples, then fields after them.
    parts: Vec<u8>,
    /// Two end offsets into `parts` per series: end of the leading fields, end of the trailing.
    ends: Vec<u32>,
}

impl Batch {
    fn len(&self) -> usize {
        self.ends.len() / 2
    }
}

/// Every series of a run, grouped into request-sized batches with their labels encoded.
struct Workload {
    protocol: Version,
    batches: Vec<Batch>,
}

impl Workload {
    fn new(series: usize, batch_size: usize, protocol: Version) -> Workload {
        let batches = (0..series)
            .step_by(batch_size)
            .map(|first| {
                let end = (first + batch_size).min(series);
                match protocol {
                    Version::V1 => Self::batch_v1(first, end),
                    Version::V2 => Self::batch_v2(first, end),
                }
            })
            .collect();
        Workload { protocol, batches }
    }

    fn batch_v1(first: usize, end: usize) -> Batch {
        let mut parts = Vec::new();
        let mut ends = Vec::with_capacity(2 * (end - first));
        for s in first..end {
            let labels = series_labels(s).into_iter().map(|(name, value)| v1::Label { name, value }).collect();
            let head = v1::TimeSeries { labels, ..Default::default() };
            head.encode_raw(&mut parts);
            let offset = parts.len() as u32;
            ends.extend([offset, offset]);
        }
        Batch { first, prefix: Vec::new(), parts, ends }
    }

    fn batch_v2(first: usize, end: usize) -> Batch {
        // Symbol 0 must be the empty string.
        let mut symbols = vec![String::new()];
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut intern = |s: String, symbols: &mut Vec<String>| -> u32 {
            *index.entry(s).or_insert_with_key(|k| {
                symbols.push(k.clone());
                (symbols.len() - 1) as u32
            })
        };
        let mut parts = Vec::new();
        let mut ends = Vec::with_capacity(2 * (end - first));
        for s in first..end {
            let mut labels_refs = Vec::new();
            for (name, value) in series_labels(s) {
                labels_refs.push(intern(name, &mut symbols));
                labels_refs.push(intern(value, &mut symbols));
            }
            let slot = Slot::of(s);
            let metric_type = match slot.kind() {
                Kind::Counter => v2::metadata::MetricType::Counter,
                Kind::Gauge => v2::metadata::MetricType::Gauge,
                Kind::Histogram => v2::metadata::MetricType::Histogram,
            };
            let metadata = v2::Metadata {
                r#type: metric_type as i32,
                help_ref: intern(slot.help().to_string(), &mut symbols),
                unit_ref: 0,
            };
            // Field order as a real sender writes it: labels, samples, metadata.
            v2::TimeSeries { labels_refs, ..Default::default() }.encode_raw(&mut parts);
            let lead = parts.len() as u32;
            v2::TimeSeries { metadata: Some(metadata), ..Default::default() }.encode_raw(&mut parts);
            ends.extend([lead, parts.len() as u32]);
        }
        let prefix = v2::Request { symbols, ..Default::default() }.encode_to_vec();
        Batch { first, prefix, parts, ends }
    }

    /// Encodes batch `b` with one sample per series for `round` at timestamp `ts` into `out`.
    fn encode(&self, b: usize, round: u64, ts: i64, out: &mut Vec<u8>) {
        let batch = &self.batches[b];
        out.clear();
        out.extend_from_slice(&batch.prefix);
        let field = timeseries_field(self.protocol);
        let mut start = 0usize;
        for (i, pair) in batch.ends.chunks_exact(2).enumerate() {
            let (lead_end, end) = (pair[0] as usize, pair[1] as usize);
            let value = series_value(batch.first + i, round);
            encode_key(field, WireType::LengthDelimited, out);
            match self.protocol {
                Version::V1 => {
                    let sample = v1::Sample { value, timestamp: ts };
                    let len = end - start + message::encoded_len(2, &sample);
                    encode_varint(len as u64, out);
                    out.extend_from_slice(&batch.parts[start..lead_end]);
                    message::encode(2, &sample, out);
                }
                Version::V2 => {
                    let sample = v2::Sample { value, timestamp: ts, ..Default::default() };
                    let len = end - start + message::encoded_len(2, &sample);
                    encode_varint(len as u64, out);
                    out.extend_from_slice(&batch.parts[start..lead_end]);
                    message::encode(2, &sample, out);
                }
            }
            out.extend_from_slice(&batch.parts[lead_end..end]);
            start = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn valid_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'));
        first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }

    #[test]
    fn label_sets_are_valid_unique_and_shaped_like_exporters() {
        let n = 5_000;
        let mut seen = HashSet::new();
        let (mut counters, mut gauges, mut histograms) = (0, 0, 0);
        for s in 0..n {
            let labels = series_labels(s);
            assert!((6..=10).contains(&labels.len()), "series {s}: {labels:?}");
            assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "unsorted or repeated: {labels:?}");
            for (name, value) in &labels {
                assert!(valid_name(name, false), "bad label name {name:?}");
                assert!(!value.is_empty(), "empty value for {name}");
            }
            let metric = &labels.iter().find(|(n, _)| n == "__name__").expect("has a name").1;
            assert!(valid_name(metric, true), "bad metric name {metric:?}");
            assert!(metric.starts_with(METRIC_PREFIX), "{metric:?} could pass for an exporter's series");
            match Slot::of(s).kind() {
                Kind::Counter => {
                    assert!(metric.ends_with("_total"));
                    counters += 1;
                }
                Kind::Gauge => gauges += 1,
                Kind::Histogram => {
                    let has_le = labels.iter().any(|(n, _)| n == "le");
                    assert_eq!(has_le, metric.ends_with("_bucket"), "{labels:?}");
                    histograms += 1;
                }
            }
            assert!(seen.insert(labels), "series {s} repeats an earlier label set");
        }
        assert_eq!((counters, gauges, histograms), (n / 10, n / 10, n * 8 / 10));
    }

    #[test]
    fn counters_and_buckets_never_decrease_and_buckets_are_cumulative() {
        for s in 0..SERIES_PER_TARGET * 3 {
            for round in 0..50 {
                let (a, b) = (series_value(s, round), series_value(s, round + 1));
                assert!(a.is_finite() && b.is_finite());
                if Slot::of(s).kind() != Kind::Gauge {
                    assert!(b >= a, "series {s} went from {a} to {b}");
                }
            }
            if let Slot::Histogram(_, part) = Slot::of(s) {
                if part > 0 && part < LATENCY_BUCKETS.len() {
                    assert!(series_value(s, 7) >= series_value(s - 1, 7), "series {s}");
                }
            }
        }
    }

    fn decode_v1(body: &[u8]) -> v1::WriteRequest {
        v1::WriteRequest::decode(body).expect("valid WriteRequest")
    }

    #[test]
    fn v1_requests_decode_to_the_expected_write_request() {
        let workload = Workload::new(250, 100, Version::V1);
        assert_eq!(workload.batches.len(), 3);
        assert_eq!(workload.batches[2].len(), 50);
        let mut buf = Vec::new();
        workload.encode(1, 3, 1_700_000_000_000, &mut buf);
        let expected = v1::WriteRequest {
            timeseries: (100..200)
                .map(|s| v1::TimeSeries {
                    labels: series_labels(s).into_iter().map(|(name, value)| v1::Label { name, value }).collect(),
                    samples: vec![v1::Sample { value: series_value(s, 3), timestamp: 1_700_000_000_000 }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        assert_eq!(decode_v1(&buf), expected);
        assert_eq!(buf, expected.encode_to_vec(), "byte-identical to prost's own encoding");
    }

    #[test]
    fn v2_requests_resolve_to_the_same_series() {
        let workload = Workload::new(120, 120, Version::V2);
        let mut buf = Vec::new();
        workload.encode(0, 2, 1_700_000_030_000, &mut buf);
        let request = v2::Request::decode(buf.as_slice()).expect("valid v2 Request");
        assert_eq!(request.symbols.first().map(String::as_str), Some(""));
        assert_eq!(request.timeseries.len(), 120);
        for (s, ts) in request.timeseries.iter().enumerate() {
            let labels: Vec<(String, String)> = ts
                .labels_refs
                .chunks_exact(2)
                .map(|p| (request.symbols[p[0] as usize].clone(), request.symbols[p[1] as usize].clone()))
                .collect();
            assert_eq!(labels, series_labels(s));
            assert_eq!(ts.samples.len(), 1);
            assert_eq!(ts.samples[0].timestamp, 1_700_000_030_000);
            assert_eq!(ts.samples[0].value, series_value(s, 2));
            let metadata = ts.metadata.expect("metadata set");
            assert_ne!(metadata.r#type, 0);
            assert_eq!(request.symbols[metadata.help_ref as usize], Slot::of(s).help());
        }
    }

    #[test]
    fn config_is_checked() {
        let bad = Config { batch_size: 0, ..Config::default() };
        assert!(matches!(validate(&bad), Err(Error::Config(_))));
        let unpaced = Config { round_interval: Some(Duration::ZERO), ..Config::default() };
        assert!(matches!(validate(&unpaced), Err(Error::Config(_))));
    }

    /// A local sink that checks the headers, decodes every body and answers every
    /// `fail_every`-th request (never when 0) with 409.
    async fn sink(fail_every: u64, written_header: bool) -> (String, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
        use axum::http::{HeaderMap, StatusCode};
        let samples = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&samples);
        let requests = Arc::new(AtomicU64::new(0));
        let handler = move |headers: HeaderMap, body: Bytes| {
            let count = Arc::clone(&count);
            let requests = Arc::clone(&requests);
            async move {
                let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(headers[CONTENT_ENCODING_HEADER], SNAPPY_ENCODING);
                assert_eq!(headers[CONTENT_TYPE], Version::V2.content_type());
                assert_eq!(headers[VERSION_HEADER], Version::V2.header_value());
                assert_eq!(headers[TENANT_HEADER], "team-a");
                assert!(headers[USER_AGENT].to_str().is_ok_and(|ua| ua.starts_with("strata-bench-write/")));
                let raw = snap::raw::Decoder::new().decompress_vec(&body).expect("snappy");
                let request = v2::Request::decode(raw.as_slice()).expect("protobuf");
                let mut answer = HeaderMap::new();
                if written_header {
                    answer.insert(SAMPLES_WRITTEN_HEADER, request.timeseries.len().into());
                }
                if n.checked_rem(fail_every) == Some(0) {
                    return (StatusCode::CONFLICT, answer, "out of order sample".to_string());
                }
                count.fetch_add(request.timeseries.len() as u64, Ordering::SeqCst);
                (StatusCode::NO_CONTENT, answer, String::new())
            }
        };
        let app = axum::Router::new().route("/api/v1/receive", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        (format!("http://{addr}/api/v1/receive"), samples, server)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_every_sample_and_counts_failures() {
        let (url, received, server) = sink(4, true).await;
        let config = Config {
            url,
            series: 1_050,
            samples_per_series: 4,
            batch_size: 100,
            concurrency: 3,
            protocol: Version::V2,
            tenant: Some("team-a".to_string()),
            ..Config::default()
        };
        let report = run(&config).await.expect("run");
        server.abort();
        // 11 batches of at most 100 series, 4 rounds each.
        assert_eq!(report.requests, 44);
        assert_eq!(report.samples_sent, 4_200);
        assert_eq!(report.failed_requests(), 11, "{report}");
        assert_eq!(report.errors.get("409"), Some(&11));
        assert!(report.error_bodies[0].contains("out of order sample"), "{report}");
        assert_eq!(report.samples_accepted, received.load(Ordering::SeqCst));
        assert!(report.latency_p50 <= report.latency_p99);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn v2_success_without_written_headers_counts_as_failure() {
        let (url, _, server) = sink(0, false).await;
        let config = Config {
            url,
            series: 300,
            samples_per_series: 1,
            batch_size: 100,
            protocol: Version::V2,
            tenant: Some("team-a".to_string()),
            ..Config::default()
        };
        let report = run(&config).await.expect("run");
        server.abort();
        assert_eq!(report.samples_accepted, 0);
        assert_eq!(report.errors.get("204-without-written-headers"), Some(&3), "{report}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paced_rounds_wait_for_their_start_and_every_request_is_logged() {
        let (url, _, server) = sink(0, true).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("latency.log");
        let config = Config {
            url,
            series: 300,
            samples_per_series: 3,
            batch_size: 100,
            concurrency: 2,
            protocol: Version::V2,
            tenant: Some("team-a".to_string()),
            round_interval: Some(Duration::from_millis(200)),
            latency_log: Some(log.clone()),
            ..Config::default()
        };
        let before = now_ms();
        let report = run(&config).await.expect("run");
        server.abort();
        assert_eq!((report.requests, report.failed_requests()), (9, 0));
        assert_eq!(report.late_rounds, 0, "{report}");
        assert!(report.wall >= Duration::from_millis(400), "{report}");
        let text = std::fs::read_to_string(&log).expect("latency log");
        let lines: Vec<(i64, f64, &str)> = text
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                assert_eq!(f.len(), 3, "{line:?}");
                (f[0].parse().expect("ms"), f[1].parse().expect("latency"), f[2])
            })
            .collect();
        assert_eq!(lines.len(), 9);
        assert!(lines.windows(2).all(|w| w[0].0 <= w[1].0), "{text}");
        assert!(lines.iter().all(|&(_, l, status)| l >= 0.0 && status == "204"));
        // Three requests per round, none sent before its round's start.
        assert!(lines[3].0 >= before + 200, "{text}");
        assert!(lines[6].0 >= before + 400, "{text}");
    }

    #[tokio::test]
    async fn an_unwritable_latency_log_fails_before_any_load() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            // Nothing listens there: the run must stop before connecting.
            url: "http://127.0.0.1:1/api/v1/receive".to_string(),
            latency_log: Some(dir.path().join("missing").join("latency.log")),
            ..Config::default()
        };
        assert!(matches!(run(&config).await, Err(Error::LatencyLog { .. })));
    }

    #[tokio::test]
    async fn refuses_https_and_garbage_urls() {
        for url in ["https://127.0.0.1:1/api/v1/receive", "not a url", "/api/v1/receive"] {
            let config = Config { url: url.to_string(), ..Config::default() };
            assert!(matches!(run(&config).await, Err(Error::Url { .. })), "{url}");
        }
    }
}
