//! The differential PromQL corpus shared by the end-to-end tests: generated data (every family
//! the corpus needs), the corpus and known-difference files, the evaluation times, and the
//! comparison of two servers' answers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use strata_proto::prometheus as v1;
use strata_testkit::{http, url_encode};

use super::LabelSet;

pub const SECOND: i64 = 1000;
pub const MINUTE: i64 = 60 * SECOND;
/// Length of the generated data.
pub const SPAN: i64 = 120 * MINUTE;
/// Prometheus's stale marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
/// Largest relative difference of two values that still agree.
pub const TOLERANCE: f64 = 1e-6;
/// Parallel queries in flight (each asks both servers in turn).
pub const WORKERS: usize = 3;

/// SplitMix64: deterministic pseudo-random numbers, so every run writes the same data.
pub struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A generated series: sorted labels and (time in ms after the data start, value) samples.
pub type Series = (LabelSet, Vec<(i64, f64)>);

/// The data being generated.
pub struct Data {
    pub rng: Rng,
    pub series: Vec<Series>,
}

impl Data {
    /// Scrape times from `from` to `to` (exclusive), `interval` apart at a random phase, each
    /// jittered by up to ±400 ms and never on a whole second.
    fn times(&mut self, interval: i64, from: i64, to: i64) -> Vec<i64> {
        let phase = self.rng.below(interval as u64) as i64;
        let mut out = Vec::new();
        let mut t = from + phase;
        while t < to {
            let mut ts = t + self.rng.below(801) as i64 - 400;
            if ts % SECOND == 0 {
                ts += 1;
            }
            out.push(ts.max(from + 1));
            t += interval;
        }
        out
    }

    fn add(&mut self, name: &str, labels: &[(&str, &str)], samples: Vec<(i64, f64)>) {
        let mut all: Vec<(String, String)> = labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        all.push(("__name__".into(), name.into()));
        all.sort();
        self.series.push((all, samples));
    }

    /// A counter over `times` growing by up to `step` per sample (whole numbers when `whole`),
    /// dropping to a small value at each index in `resets`.
    fn counter(&mut self, times: &[i64], step: f64, whole: bool, resets: &[usize]) -> Vec<(i64, f64)> {
        let mut v = (self.rng.unit() * 1000.0).floor();
        let mut out = Vec::with_capacity(times.len());
        for (i, &t) in times.iter().enumerate() {
            if resets.contains(&i) {
                v = (self.rng.unit() * step).floor();
            } else {
                let inc = self.rng.unit() * step;
                v += if whole { inc.floor() } else { inc };
            }
            out.push((t, v));
        }
        out
    }

    /// A gauge doing a random walk from `start` in steps of up to ±`step`.
    fn walk(&mut self, times: &[i64], start: f64, step: f64) -> Vec<(i64, f64)> {
        let mut v = start;
        times
            .iter()
            .map(|&t| {
                v += (self.rng.unit() * 2.0 - 1.0) * step;
                (t, v)
            })
            .collect()
    }
}

pub const JOBS: [&str; 2] = ["api", "web"];
pub const INSTANCES: [&str; 4] = ["host-0:9100", "host-1:9100", "host-2:9100", "host-3:9100"];
pub const LE: [&str; 12] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];

/// Every series of the data set, relative to the data start; see the corpus for what each
/// family is for.
pub fn generate() -> Vec<Series> {
    let mut d = Data { rng: Rng(42), series: Vec::new() };
    for (j, job) in JOBS.iter().enumerate() {
        for (i, instance) in INSTANCES.iter().enumerate() {
            let base = [("job", *job), ("instance", *instance)];
            let times = d.times(15 * SECOND, 0, SPAN);
            for method in ["GET", "POST"] {
                for (c, code) in ["200", "404", "500"].into_iter().enumerate() {
                    // Every fifth series restarts once, one restarts twice.
                    let resets: Vec<usize> = match (j * 24 + i * 6 + c) % 5 {
                        0 => vec![100 + 37 * i],
                        _ if i == 3 && c == 2 => vec![150, 330],
                        _ => vec![],
                    };
                    let step = [40.0, 6.0, 2.0][c] * (1.0 + i as f64);
                    let samples = d.counter(&times, step, true, &resets);
                    d.add("diff_http_requests_total", &[base[0], base[1], ("method", method), ("code", code)], samples);
                }
            }
            let cpu_times = d.times(30 * SECOND, 0, SPAN);
            for mode in ["user", "system", "idle", "iowait"] {
                let resets = if i == 3 { vec![120] } else { vec![] };
                let samples = d.counter(&cpu_times, 25.0, false, &resets);
                d.add("diff_cpu_seconds_total", &[base[0], base[1], ("mode", mode)], samples);
            }
            let start = 2e9 + 1e9 * (j * 4 + i) as f64;
            let samples = d.walk(&times, start, 5e7);
            d.add("diff_memory_bytes", &base, samples);
            for (sensor, level, step) in [("cpu", 45.0, 1.5), ("ambient", -2.0 + i as f64, 0.8)] {
                let samples = d.walk(&times, level, step);
                d.add("diff_temperature_celsius", &[base[0], base[1], ("sensor", sensor)], samples);
            }
            for queue in ["a", "b"] {
                // Mostly empty queues: whole numbers, many zeros.
                let samples = times.iter().map(|&t| (t, (d.rng.unit() * 12.0 - 7.0).max(0.0).floor())).collect();
                d.add("diff_queue_length", &[base[0], base[1], ("queue", queue)], samples);
            }
            let samples = d.walk(&times, 0.0, 0.2).into_iter().map(|(t, v)| (t, v.sin())).collect();
            d.add("diff_ratio", &base, samples);
            let version = ["1.0.0", "1.1.0"][(i + j) % 2];
            let samples = times.iter().map(|&t| (t, 1.0)).collect();
            d.add("diff_build_info", &[base[0], base[1], ("version", version)], samples);
            histogram(&mut d, "diff_request_duration_seconds", &base, &LE, i == 2, i == 3);
        }
    }
    for handler in ["/orders", "/users"] {
        let le = ["100", "1000", "10000", "+Inf"];
        histogram(&mut d, "diff_response_size_bytes", &[("handler", handler)], &le, false, false);
    }
    extremes(&mut d);
    flaky(&mut d);
    constants(&mut d);
    grid(&mut d);
    d.series
}

/// A classic histogram (`_bucket` per `le`, `_sum`, `_count`) fed by random observations; `idle`
/// gets no observations after the first half hour, `restart` resets every part at once.
pub fn histogram(d: &mut Data, name: &str, base: &[(&str, &str)], le: &[&str], idle: bool, restart: bool) {
    let times = d.times(15 * SECOND, 0, SPAN);
    let bounds: Vec<f64> = le.iter().map(|b| b.parse().unwrap_or(f64::INFINITY)).collect();
    let scale = bounds[bounds.len() / 2];
    let mut counts = vec![0.0; bounds.len()];
    let mut sum = 0.0;
    let mut parts: Vec<Vec<(i64, f64)>> = vec![Vec::new(); bounds.len() + 2];
    for (k, &t) in times.iter().enumerate() {
        if restart && k == 200 {
            counts.iter_mut().for_each(|c| *c = 0.0);
            sum = 0.0;
        }
        let observations = if idle && t > 30 * MINUTE { 0 } else { d.rng.below(20) };
        for _ in 0..observations {
            // Log-uniform values around the middle bucket.
            let x = scale * 10f64.powf(d.rng.unit() * 3.0 - 1.5);
            sum += x;
            for (c, b) in counts.iter_mut().zip(&bounds) {
                if x <= *b {
                    *c += 1.0;
                }
            }
        }
        for (p, &c) in parts.iter_mut().zip(&counts) {
            p.push((t, c));
        }
        parts[bounds.len()].push((t, sum));
        parts[bounds.len() + 1].push((t, counts[bounds.len() - 1]));
    }
    let mut parts = parts.into_iter();
    for b in le {
        let mut labels = base.to_vec();
        labels.push(("le", b));
        d.add(&format!("{name}_bucket"), &labels, parts.next().unwrap_or_default());
    }
    d.add(&format!("{name}_sum"), base, parts.next().unwrap_or_default());
    d.add(&format!("{name}_count"), base, parts.next().unwrap_or_default());
}

/// Values far from the usual ranges, real NaNs, infinities, and a histogram whose buckets are
/// not monotonic.
pub fn extremes(d: &mut Data) {
    let times = d.times(15 * SECOND, 0, SPAN);
    let huge = d.walk(&times, 1e20, 1e18);
    d.add("diff_extreme", &[("kind", "huge")], huge);
    let neg = d.walk(&times, -1e18, 1e16);
    d.add("diff_extreme", &[("kind", "negative_huge")], neg);
    let tiny = d.walk(&times, 1e-9, 1e-11);
    d.add("diff_extreme", &[("kind", "tiny")], tiny);
    d.add("diff_extreme", &[("kind", "zero")], times.iter().map(|&t| (t, 0.0)).collect());
    d.add("diff_extreme", &[("kind", "constant")], times.iter().map(|&t| (t, 7.25)).collect());
    d.add("diff_extreme", &[("kind", "max")], times.iter().map(|&t| (t, f64::MAX)).collect());
    for (instance, nan_every, inf_at) in [("n0", 7, 50), ("n1", 3, 300)] {
        let mut samples = d.walk(&times, 10.0, 2.0);
        for (k, s) in samples.iter_mut().enumerate() {
            if k % nan_every == 0 {
                s.1 = f64::NAN;
            } else if k == inf_at {
                s.1 = f64::INFINITY;
            }
        }
        d.add("diff_nan", &[("instance", instance)], samples);
    }
    let le = ["1", "2", "4", "+Inf"];
    let mut cum = [0.0; 4];
    let mut parts: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 4];
    for &t in &times {
        for (k, c) in cum.iter_mut().enumerate() {
            *c += d.rng.below(5 + k as u64) as f64;
        }
        for (p, &c) in parts.iter_mut().zip(&cum) {
            p.push((t, c));
        }
    }
    for (b, p) in le.iter().zip(parts) {
        d.add("diff_unordered_bucket", &[("le", b)], p);
    }
    let only_inf = d.counter(&times, 5.0, true, &[]);
    d.add("diff_inf_only_bucket", &[("le", "+Inf")], only_inf);
}

/// Series with gaps, explicit stale markers, late starts and early ends.
pub fn flaky(d: &mut Data) {
    let stale = f64::from_bits(STALE_NAN);
    let times = d.times(15 * SECOND, 0, SPAN);
    let in_range = |from: i64, to: i64| times.iter().copied().filter(move |&t| t >= from && t < to);
    let gauge = |d: &mut Data, ts: Vec<i64>| d.walk(&ts, 50.0, 5.0);
    // A ten-minute hole with no marker.
    let ts: Vec<i64> = in_range(0, 50 * MINUTE).chain(in_range(60 * MINUTE, SPAN)).collect();
    let s = gauge(d, ts);
    d.add("diff_flaky", &[("instance", "f0")], s);
    // A stale marker, then five minutes of nothing.
    let mut s = gauge(d, in_range(0, 45 * MINUTE).collect());
    s.push((45 * MINUTE + 7_301, stale));
    s.extend(gauge(d, in_range(50 * MINUTE, SPAN).collect()));
    d.add("diff_flaky", &[("instance", "f1")], s);
    // Starts late.
    let s = gauge(d, in_range(40 * MINUTE, SPAN).collect());
    d.add("diff_flaky", &[("instance", "f2")], s);
    // Ends early with a marker, and without one.
    let mut s = gauge(d, in_range(0, 80 * MINUTE).collect());
    s.push((80 * MINUTE + 3_007, stale));
    d.add("diff_flaky", &[("instance", "f3")], s);
    let s = gauge(d, in_range(0, 80 * MINUTE).collect());
    d.add("diff_flaky", &[("instance", "f4")], s);
    // One sample every two minutes.
    let sparse = d.times(2 * MINUTE, 0, SPAN);
    let s = gauge(d, sparse);
    d.add("diff_flaky", &[("instance", "f5")], s);
    // Counters: with a marker between two runs, and with a hole across a reset.
    let mut s = d.counter(&in_range(0, 70 * MINUTE).collect::<Vec<_>>(), 10.0, true, &[]);
    s.push((70 * MINUTE + 5_123, stale));
    let rest: Vec<i64> = in_range(72 * MINUTE, SPAN).collect();
    s.extend(d.counter(&rest, 10.0, true, &[]));
    d.add("diff_flaky_total", &[("instance", "c0")], s);
    let ts: Vec<i64> = in_range(0, 30 * MINUTE).chain(in_range(42 * MINUTE, SPAN)).collect();
    let s = d.counter(&ts, 10.0, true, &[120]);
    d.add("diff_flaky_total", &[("instance", "c1")], s);
}

/// Constant series: Unix times for the date functions and odd label values.
pub fn constants(d: &mut Data) {
    let times = d.times(15 * SECOND, 0, SPAN);
    let constant = |v: f64| times.iter().map(|&t| (t, v)).collect::<Vec<_>>();
    for (when, v) in [
        ("leap_day_end", 1_709_251_199.5),
        ("y2k", 946_684_800.0),
        ("y2100", 4_102_444_800.0),
        ("nov_2023", 1_700_000_000.0),
        ("epoch", 0.0),
        ("before_epoch", -86_400.5),
        ("dec_31_leap", 1_735_689_599.0),
    ] {
        d.add("diff_epoch_seconds", &[("when", when)], constant(v));
    }
    for (k, path) in ["/api/v1/users", "line1\nline2", "ünïcödé/ß", "a.b", "x-y-z"].iter().enumerate() {
        d.add("diff_info", &[("path", path), ("src", "a-b-c")], constant(k as f64));
    }
}

/// Series sampled exactly every 15 s on whole seconds, for the on-sample section.
pub fn grid(d: &mut Data) {
    let times: Vec<i64> = (0..SPAN / (15 * SECOND)).map(|k| k * 15 * SECOND).collect();
    for instance in ["g0", "g1"] {
        let s = d.counter(&times, 8.0, true, &[300]);
        d.add("diff_grid_total", &[("instance", instance)], s);
        let s = d.walk(&times, 10.0, 3.0);
        d.add("diff_grid_gauge", &[("instance", instance)], s);
    }
    let early: Vec<i64> = times.iter().copied().filter(|&t| t <= 60 * MINUTE).collect();
    let s = d.walk(&early, 5.0, 1.0);
    d.add("diff_grid_ending", &[("instance", "g0")], s);
}

/// Remote-write requests holding the data from `t0` on, ten minutes of every series each, in
/// time order: Prometheus rejects samples more than an hour older than the newest it has.
pub fn write_requests(t0: i64, data: &[Series]) -> Vec<v1::WriteRequest> {
    let window = 10 * MINUTE;
    (0..SPAN.div_euclid(window) + 1)
        .map(|w| {
            let timeseries = data
                .iter()
                .filter_map(|(labels, samples)| {
                    let samples: Vec<v1::Sample> = samples
                        .iter()
                        .filter(|(t, _)| t.div_euclid(window) == w)
                        .map(|&(t, value)| v1::Sample { value, timestamp: t0 + t })
                        .collect();
                    (!samples.is_empty()).then(|| v1::TimeSeries {
                        labels: labels
                            .iter()
                            .map(|(name, value)| v1::Label { name: name.clone(), value: value.clone() })
                            .collect(),
                        samples,
                        ..Default::default()
                    })
                })
                .collect();
            v1::WriteRequest { timeseries, metadata: Vec::new() }
        })
        .collect()
}

/// A corpus section: its queries are evaluated at the section's times.
pub struct Section {
    pub name: String,
    /// Evaluated on the 15 s sample grid of the `diff_grid_*` series.
    pub on_grid: bool,
    pub queries: Vec<String>,
}

/// Reads the corpus: `## name` starts a section (`## name @grid` for on-sample times), `#`
/// lines are comments, every other non-empty line is a query.
pub fn read_corpus(path: &Path) -> Vec<Section> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut sections: Vec<Section> = Vec::new();
    let mut seen = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if let Some(head) = line.strip_prefix("## ") {
            let (name, on_grid) = match head.strip_suffix(" @grid") {
                Some(name) => (name, true),
                None => (head, false),
            };
            sections.push(Section { name: name.trim().to_string(), on_grid, queries: Vec::new() });
        } else if !line.is_empty() && !line.starts_with('#') {
            let section = sections.last_mut().unwrap_or_else(|| panic!("query before any section: {line}"));
            assert!(seen.insert(line.to_string()), "query listed twice in the corpus: {line}");
            section.queries.push(line.to_string());
        }
    }
    sections
}

/// Reads the known differences: `## reason` headings, each followed by list items whose first
/// code span is a corpus query. Returns query → reason.
pub fn read_known(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut reason = None;
    let mut known = BTreeMap::new();
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("## ") {
            reason = Some(head.trim().to_string());
        } else if let Some(item) = line.strip_prefix("- `") {
            let query = item.split_once("` ").map_or(item.trim_end_matches('`'), |(q, _)| q);
            let reason = reason.clone().unwrap_or_else(|| panic!("listed query before any reason: {line}"));
            assert!(known.insert(query.to_string(), reason).is_none(), "listed twice: {query}");
        }
    }
    known
}

/// Replaces `$T{<duration>}` with the Unix time in seconds that far after `t0`.
pub fn expand(query: &str, t0: i64) -> String {
    let mut out = String::new();
    let mut rest = query;
    while let Some(i) = rest.find("$T{") {
        out.push_str(&rest[..i]);
        let (dur, after) = rest[i + 3..].split_once('}').unwrap_or_else(|| panic!("unclosed $T{{ in {query}"));
        out.push_str(&((t0 + duration_ms(dur)) / SECOND).to_string());
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `1h2m3s`-style durations in milliseconds.
pub fn duration_ms(s: &str) -> i64 {
    let d = strata_tsdb::gotext::parse_duration(s).unwrap_or_else(|e| panic!("bad duration {s:?}: {e}"));
    d.as_millis() as i64
}

/// One question asked of both servers.
#[derive(Clone)]
pub enum Eval {
    Instant { time: i64 },
    Range { start: i64, end: i64, step: i64 },
}

impl Eval {
    pub fn path(&self, query: &str) -> String {
        let q = url_encode(query);
        match self {
            Eval::Instant { time } => format!("/api/v1/query?query={q}&time={}", time / SECOND),
            Eval::Range { start, end, step } => format!(
                "/api/v1/query_range?query={q}&start={}&end={}&step={}",
                start / SECOND,
                end / SECOND,
                step / SECOND
            ),
        }
    }

    pub fn describe(&self, t0: i64) -> String {
        let rel = |t: i64| {
            let d = (t - t0) / SECOND;
            format!("t0+{}m{}s", d / 60, d % 60)
        };
        match self {
            Eval::Instant { time } => format!("instant at {}", rel(*time)),
            Eval::Range { start, end, step } => {
                format!("range {}..{} step {}s", rel(*start), rel(*end), step / SECOND)
            }
        }
    }
}

/// Times for ordinary sections: whole seconds not on any 15 s multiple (so never `t - range` on
/// a subquery step) and one after the data ends, inside the lookback window.
pub fn evals(t0: i64, on_grid: bool) -> Vec<Eval> {
    if on_grid {
        // On grid samples; at 65m the last sample of diff_grid_ending is exactly 5m old.
        let at = |d: &str| Eval::Instant { time: t0 + duration_ms(d) };
        let range = Eval::Range { start: t0 + 30 * MINUTE, end: t0 + 70 * MINUTE, step: 15 * SECOND };
        vec![at("45m"), at("65m"), at("90m"), range]
    } else {
        let at = |d: &str| Eval::Instant { time: t0 + duration_ms(d) };
        // Start 3 s past a minute with a one-minute step: never a multiple of 15 s.
        let range = Eval::Range { start: t0 + duration_ms("5m3s"), end: t0 + duration_ms("125m3s"), step: MINUTE };
        vec![at("30m7s"), at("61m13s"), at("95m41s"), at("121m53s"), range]
    }
}

/// An answer reduced to what must agree: the result type and, per label set, its points (or
/// the error type).
#[derive(Debug)]
pub enum Answer {
    Error { kind: String, message: String },
    Data { kind: String, series: Vec<(String, Vec<(f64, f64)>)> },
}

pub fn parse_value(v: &Value) -> Result<f64, String> {
    match v.as_str() {
        Some("NaN") => Ok(f64::NAN),
        Some("+Inf") => Ok(f64::INFINITY),
        Some("-Inf") => Ok(f64::NEG_INFINITY),
        Some(s) => s.parse().map_err(|_| format!("bad value {v}")),
        None => Err(format!("value {v} is not a string")),
    }
}

pub fn parse_point(p: &Value) -> Result<(f64, f64), String> {
    let t = p[0].as_f64().ok_or_else(|| format!("bad time in {p}"))?;
    Ok((t, parse_value(&p[1])?))
}

/// Labels in name order, as one comparable string.
pub fn label_key(metric: &Value) -> Result<String, String> {
    let map = metric.as_object().ok_or_else(|| format!("metric {metric} is not an object"))?;
    let sorted: BTreeMap<&String, &Value> = map.iter().collect();
    serde_json::to_string(&sorted).map_err(|e| e.to_string())
}

pub fn ask(addr: &str, path: &str) -> Result<Answer, String> {
    let (status, body) = http::get(addr, path)?;
    let json: Value = serde_json::from_str(&body).map_err(|e| format!("status {status}, not JSON ({e}): {body}"))?;
    if json["status"] != "success" {
        return Ok(Answer::Error {
            kind: json["errorType"].as_str().unwrap_or_default().to_string(),
            message: json["error"].as_str().unwrap_or_default().to_string(),
        });
    }
    let kind = json["data"]["resultType"].as_str().ok_or_else(|| format!("no resultType: {body}"))?.to_string();
    let result = &json["data"]["result"];
    let series = match kind.as_str() {
        "scalar" => vec![(String::new(), vec![parse_point(result)?])],
        // A string's value is not a number: it is part of the key.
        "string" => vec![(result[1].to_string(), vec![(result[0].as_f64().unwrap_or(f64::NAN), 0.0)])],
        _ => result
            .as_array()
            .ok_or_else(|| format!("result is not a list: {body}"))?
            .iter()
            .map(|s| {
                let points = match (s.get("value"), s.get("values")) {
                    (Some(v), _) => vec![parse_point(v)?],
                    (_, Some(Value::Array(vs))) => vs.iter().map(parse_point).collect::<Result<_, _>>()?,
                    _ => return Err(format!("series without values: {s}")),
                };
                Ok((label_key(&s["metric"])?, points))
            })
            .collect::<Result<_, String>>()?,
    };
    Ok(Answer::Data { kind, series })
}

pub fn close(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= TOLERANCE * a.abs().max(b.abs())
}

/// `None` when the answers agree, else what differs first. Series order counts only when
/// `ordered` (instant `sort`/`sort_desc`).
pub fn compare(ours: &Answer, theirs: &Answer, ordered: bool, names: Names) -> Option<String> {
    let (a, b) = names;
    match (ours, theirs) {
        (Answer::Error { .. }, Answer::Error { .. }) => None,
        (Answer::Error { kind, message }, _) => Some(format!("only {a} fails: {kind}: {message}")),
        (_, Answer::Error { kind, message }) => Some(format!("only {b} fails: {kind}: {message}")),
        (Answer::Data { kind: ka, series: sa }, Answer::Data { kind: kb, series: sb }) => {
            if ka != kb {
                return Some(format!("result type {ka} ({a}) vs {kb} ({b})"));
            }
            if ordered {
                let (la, lb): (Vec<_>, Vec<_>) = (sa.iter().map(|s| &s.0).collect(), sb.iter().map(|s| &s.0).collect());
                if la != lb {
                    return Some(format!("series order: {a} {la:?} vs {b} {lb:?}"));
                }
            }
            let ma: BTreeMap<&String, &Vec<(f64, f64)>> = sa.iter().map(|(k, v)| (k, v)).collect();
            let mb: BTreeMap<&String, &Vec<(f64, f64)>> = sb.iter().map(|(k, v)| (k, v)).collect();
            if ma.len() != sa.len() || mb.len() != sb.len() {
                return Some("duplicate series in a result".to_string());
            }
            if let Some(k) = ma.keys().find(|k| !mb.contains_key(*k)) {
                return Some(format!("series only in {a}: {k} ({} vs {} series)", ma.len(), mb.len()));
            }
            if let Some(k) = mb.keys().find(|k| !ma.contains_key(*k)) {
                return Some(format!("series only in {b}: {k} ({} vs {} series)", ma.len(), mb.len()));
            }
            for (k, pa) in &ma {
                let pb = mb[k];
                let ta: BTreeSet<u64> = pa.iter().map(|p| p.0.to_bits()).collect();
                let tb: BTreeSet<u64> = pb.iter().map(|p| p.0.to_bits()).collect();
                if let Some(t) = ta.symmetric_difference(&tb).next() {
                    let t = f64::from_bits(*t);
                    let side = if ta.contains(&t.to_bits()) { a } else { b };
                    return Some(format!("{k}: point at {t} only in {side} ({} vs {} points)", pa.len(), pb.len()));
                }
                for ((t, va), (_, vb)) in pa.iter().zip(pb.iter()) {
                    if !close(*va, *vb) {
                        return Some(format!("{k} at {t}: {a} {va} vs {b} {vb}"));
                    }
                }
            }
            None
        }
    }
}

/// What happened to one corpus query.
pub struct Outcome {
    pub section: usize,
    pub query: String,
    pub evaluations: usize,
    /// Evaluation description and difference, for every evaluation that differed.
    pub differences: Vec<(String, String)>,
}

/// Who is compared with whom: the names used in difference messages.
pub type Names = (&'static str, &'static str);

/// Asks every corpus query of `sections` of both servers (`ours` and `theirs`, HTTP addresses)
/// at the section's evaluation times, `WORKERS` queries at a time; returns what differed.
pub fn run(sections: &[Section], t0: i64, ours: &str, theirs: &str, names: Names) -> Run {
    let jobs: Vec<(usize, &str)> =
        sections.iter().enumerate().flat_map(|(i, s)| s.queries.iter().map(move |q| (i, q.as_str()))).collect();
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let Some(&(section, query)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                let expanded = expand(query, t0);
                let ordered_query = query.starts_with("sort(") || query.starts_with("sort_desc(");
                let evals = evals(t0, sections[section].on_grid);
                let mut differences = Vec::new();
                for eval in &evals {
                    let path = eval.path(&expanded);
                    let ask_one = |addr: &str| {
                        ask(addr, &path).unwrap_or_else(|e| panic!("{query} ({}): {addr}: {e}", eval.describe(t0)))
                    };
                    let (a, b) = (ask_one(ours), ask_one(theirs));
                    let ordered = ordered_query && matches!(eval, Eval::Instant { .. });
                    if let Some(d) = compare(&a, &b, ordered, names) {
                        differences.push((eval.describe(t0), d));
                    }
                }
                let outcome = Outcome { section, query: query.to_string(), evaluations: evals.len(), differences };
                outcomes.lock().expect("outcomes lock").push(outcome);
            });
        }
    });
    Run { outcomes: outcomes.into_inner().expect("outcomes lock"), elapsed: started.elapsed() }
}

/// What [`run`] found, and how long it took.
pub struct Run {
    pub outcomes: Vec<Outcome>,
    pub elapsed: Duration,
}

/// Fails unless `addr` answers that it holds every one of the `n` series of the data set, so
/// that agreement is not merely two empty answers.
pub fn assert_holds_all(addr: &str, t0: i64, n: usize) {
    let everything =
        Eval::Instant { time: t0 + SPAN + MINUTE }.path(r#"count(last_over_time({__name__=~"diff_.+"}[3h]))"#);
    match ask(addr, &everything) {
        Ok(Answer::Data { series, .. }) if series.len() == 1 && series[0].1[0].1 == n as f64 => {}
        other => panic!("{addr} does not hold the {n} series written: {other:?}"),
    }
}

/// A start time for the data: a multiple of two hours, three to five hours ago, so that data,
/// evaluation times and the head chunks a TSDB cuts (never across a two-hour boundary) keep
/// their phases from run to run.
pub fn data_start() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    let block = 120 * MINUTE;
    (now - 3 * 60 * MINUTE).div_euclid(block) * block
}

/// The corpus (promql_diff/queries.txt) and a list of known differences in the same directory,
/// checked against each other.
pub fn load(known_file: &str) -> (Vec<Section>, BTreeMap<String, String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql_diff");
    let sections = read_corpus(&dir.join("queries.txt"));
    let known = read_known(&dir.join(known_file));
    let total: usize = sections.iter().map(|s| s.queries.len()).sum();
    assert!(total >= 300, "the corpus has only {total} queries");
    let corpus: BTreeSet<&str> = sections.iter().flat_map(|s| s.queries.iter().map(String::as_str)).collect();
    for q in known.keys() {
        assert!(corpus.contains(q.as_str()), "{known_file} lists a query that is not in the corpus: {q}");
    }
    (sections, known)
}

/// A reason of a known-differences file (its `##` heading) and what every difference of a query
/// listed under it must look like: `check(query, difference)` (a difference as [`compare`]
/// words it).
pub type ReasonCheck = (&'static str, fn(&str, &str) -> bool);

/// Fails unless every reason of `known` has a check in `checks` and every difference of a
/// listed query passes its reason's check: a listed query differs for the reason it is listed
/// under, not for another.
pub fn check_reasons(known: &BTreeMap<String, String>, run: &Run, checks: &[ReasonCheck]) {
    let reasons: BTreeSet<&str> = known.values().map(String::as_str).collect();
    for reason in &reasons {
        assert!(checks.iter().any(|(r, _)| r == reason), "no check for the known-difference reason {reason:?}");
    }
    let mut wrong = Vec::new();
    for o in &run.outcomes {
        let Some(reason) = known.get(&o.query) else { continue };
        let Some((_, check)) = checks.iter().find(|(r, _)| r == reason) else { continue };
        for (eval, d) in &o.differences {
            if !check(&o.query, d) {
                wrong.push(format!("{} ({eval}): {d}\n    does not look like: {reason}", o.query));
            }
        }
    }
    assert!(wrong.is_empty(), "listed queries that differ for another reason than theirs:\n{}", wrong.join("\n"));
}

/// Prints the per-section and per-reason summary and every unexplained difference; fails when
/// there is one, or when a listed query agrees.
pub fn report(
    names: Names,
    sections: &[Section],
    known: &BTreeMap<String, String>,
    run: &Run,
    series: usize,
    samples: usize,
    t0: i64,
) {
    let (outcomes, elapsed) = (&run.outcomes, run.elapsed);
    let evaluations: usize = outcomes.iter().map(|o| o.evaluations).sum();
    println!(
        "{} queries, {evaluations} evaluations against each server in {elapsed:.1?}; data: {series} series, {samples} samples from t0 = {} s",
        outcomes.len(),
        t0 / SECOND
    );
    println!("{:<22} {:>7} {:>7} {:>7} {:>10}", "section", "queries", "agree", "known", "unexpected");
    let mut unexpected = Vec::new();
    let mut stale = Vec::new();
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, section) in sections.iter().enumerate() {
        let (mut n, mut agree, mut listed, mut bad) = (0, 0, 0, 0);
        for o in outcomes.iter().filter(|o| o.section == i) {
            n += 1;
            match (o.differences.is_empty(), known.get(&o.query)) {
                (true, None) => agree += 1,
                (true, Some(_)) => stale.push(o.query.as_str()),
                (false, Some(reason)) => {
                    listed += 1;
                    *by_reason.entry(reason.as_str()).or_default() += 1;
                }
                (false, None) => {
                    bad += 1;
                    unexpected.push(o);
                }
            }
        }
        println!("{:<22} {n:>7} {agree:>7} {listed:>7} {bad:>10}", section.name);
    }
    println!("known differences by reason:");
    for (reason, n) in &by_reason {
        println!("  {n:>3}  {reason}");
    }
    for o in &unexpected {
        println!("UNEXPECTED DIFFERENCE [{}] {}", sections[o.section].name, o.query);
        for (eval, d) in o.differences.iter().take(3) {
            println!("    {eval}: {d}");
        }
        if o.differences.len() > 3 {
            println!("    … and {} more evaluations", o.differences.len() - 3);
        }
    }
    for q in &stale {
        println!("LISTED BUT AGREES (remove it from the known differences): {q}");
    }
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "{} queries differ between {} and {} without being listed as known differences and {} listed queries agree; see the output above",
        unexpected.len(),
        names.0,
        names.1,
        stale.len()
    );
}
