//! Interoperability with real Prometheus chunks.
//!
//! Writes an OpenMetrics file, lets `promtool tsdb create-blocks-from openmetrics` (the Debian
//! `prometheus` package, 2.42) turn it into blocks, then reads every chunk segment of every block:
//! each chunk's CRC must hold, its samples must decode to exactly the file's samples (floats
//! bitwise), and re-encoding them must give Prometheus's bytes. The one allowed difference is the
//! empty byte pre-3.0 writers leave after some chunks; a model of that writer predicts for each
//! chunk whether it is there, and the test checks the prediction both ways.
//!
//! promtool is looked up on `PATH`; without it the test fails rather than pass vacuously.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_testkit::promtool::{create_blocks, exact_ms, om_timestamp};
use strata_tsdb::chunkenc::{Encoding, XorAppender, XorIter};

/// Prometheus's NaN: what its OpenMetrics parser stores for any `NaN` in the text.
const PROMETHEUS_NAN: u64 = 0x7ff8_0000_0000_0001;
/// Block ranges promtool cuts by default; blocks start at multiples of it.
const BLOCK_MS: i64 = 2 * 3600 * 1000;
const SCRAPE_MS: i64 = 15_000;
const START_MS: i64 = 1_700_000_000_000;

struct Series {
    labels: Vec<(&'static str, String)>,
    /// Timestamp in ms, value bits as Prometheus will store them, value as written.
    samples: Vec<(i64, u64, String)>,
}

struct Family {
    name: &'static str,
    counter: bool,
    series: Vec<Series>,
}

impl Family {
    /// The metric name on sample lines: OpenMetrics counters add `_total`.
    fn sample_name(&self) -> String {
        if self.counter {
            format!("{}_total", self.name)
        } else {
            self.name.to_owned()
        }
    }
}

#[test]
fn promtool_blocks_decode_and_reencode_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = StdRng::seed_from_u64(0x0bad_c0de);
    let families = generate(&mut rng);
    let blocks = create_blocks(&openmetrics(&families), &dir.path().join("blocks"));

    let series: Vec<(String, &Series)> =
        families.iter().flat_map(|f| f.series.iter().map(|s| (f.sample_name(), s))).collect();
    let mut coverage = Coverage::new(&series);
    let mut stats = Stats::default();
    assert!(blocks.len() >= 3, "expected the data to span at least 3 two-hour blocks, got {}", blocks.len());
    for block in &blocks {
        let chunk_dir = block.join("chunks");
        let mut segments: Vec<PathBuf> = read_dir(&chunk_dir);
        segments.sort();
        assert!(!segments.is_empty(), "{} has no chunk segments", chunk_dir.display());
        for segment in segments {
            let data = std::fs::read(&segment).expect("read segment");
            for (offset, chunk) in parse_segment(&segment, &data) {
                let at = format!("{} offset {offset}", segment.display());
                check_chunk(&at, chunk, &mut coverage, &mut stats);
            }
        }
    }
    coverage.assert_complete();

    println!(
        "{} blocks, {} chunks, {} samples; {} chunks with the pre-3.0 empty byte ({} of them 1-sample), \
         {} ending byte-aligned without it, {} ending with a whole-byte field off alignment",
        blocks.len(),
        stats.chunks,
        stats.samples,
        stats.open_byte,
        stats.one_sample,
        stats.aligned_only,
        stats.whole_only
    );
    assert_eq!(stats.samples, series.iter().map(|s| s.1.samples.len()).sum::<usize>());
    // Every way a chunk can end must have been seen, or the trailing-byte rule went untested.
    assert!(stats.one_sample >= 1, "no 1-sample chunk");
    assert!(stats.open_byte > stats.one_sample, "no multi-sample chunk with the empty byte");
    assert!(stats.aligned_only >= 1, "no byte-aligned chunk ending on a bit-by-bit field");
    assert!(stats.whole_only >= 1, "no chunk ending on a whole-byte field off alignment");
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect()
}

/// Splits a chunk segment into `(offset, (encoding, data))`, checking the header and every CRC.
fn parse_segment<'a>(path: &Path, data: &'a [u8]) -> Vec<(usize, (u8, &'a [u8]))> {
    let name = path.display();
    assert!(data.len() >= 8, "{name}: {} bytes is too short for the segment header", data.len());
    assert_eq!(data[..4], [0x85, 0xbd, 0x40, 0xdd], "{name}: magic");
    assert_eq!(data[4], 1, "{name}: chunk format version");
    assert_eq!(data[5..8], [0, 0, 0], "{name}: header padding");
    let mut chunks = Vec::new();
    let mut pos = 8;
    while pos < data.len() {
        let start = pos;
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            // Prometheus reads at most 5 bytes of length.
            assert!(shift < 35 && pos < data.len(), "{name} offset {start}: bad chunk length");
            let b = data[pos];
            pos += 1;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let end = pos + 1 + len;
        assert!(end + 4 <= data.len(), "{name} offset {start}: chunk of {len} bytes runs past the end");
        let body = &data[pos..end];
        let stored = u32::from_be_bytes([data[end], data[end + 1], data[end + 2], data[end + 3]]);
        assert_eq!(crc32c::crc32c(body), stored, "{name} offset {start}: CRC32C over encoding and data");
        chunks.push((start, (body[0], &body[1..])));
        pos = end + 4;
    }
    chunks
}

#[derive(Default)]
struct Stats {
    chunks: usize,
    samples: usize,
    open_byte: usize,
    one_sample: usize,
    aligned_only: usize,
    whole_only: usize,
}

fn check_chunk(at: &str, (encoding, data): (u8, &[u8]), coverage: &mut Coverage, stats: &mut Stats) {
    assert_eq!(Encoding::try_from(encoding).ok(), Some(Encoding::Xor), "{at}: encoding {encoding}");
    let mut it = XorIter::new(data).unwrap_or_else(|e| panic!("{at}: {e}"));
    let samples: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
    assert!(it.err().is_none(), "{at}: {:?}", it.err());
    assert_eq!(samples.len(), usize::from(it.num_samples()), "{at}: sample count");
    assert!(!samples.is_empty(), "{at}: empty chunk");

    let mut app = XorAppender::new();
    for &(t, v) in &samples {
        app.append(t, f64::from_bits(v));
    }
    let tail = legacy_tail(&samples);
    let mut expected = app.bytes().to_vec();
    if tail.open_byte() {
        expected.push(0);
    }
    if data != expected.as_slice() {
        let first_diff = data.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(data.len().min(expected.len()));
        panic!(
            "{at}: {} samples re-encode differently (pre-3.0 empty byte predicted: {}): promtool has {} bytes, \
             we expect {}, first difference at byte {first_diff}\n promtool: {:02x?}\n expected: {:02x?}",
            samples.len(),
            tail.open_byte(),
            data.len(),
            expected.len(),
            &data[first_diff.saturating_sub(8)..],
            &expected[first_diff.saturating_sub(8)..],
        );
    }

    coverage.claim(at, &samples);
    stats.chunks += 1;
    stats.samples += samples.len();
    match (tail.end_aligned, tail.last_field_whole_bytes) {
        (true, true) => {
            stats.open_byte += 1;
            stats.one_sample += usize::from(samples.len() == 1);
        }
        (true, false) => stats.aligned_only += 1,
        (false, true) => stats.whole_only += 1,
        (false, false) => {}
    }
}

/// How the bit writer of Prometheus before 3.0 ends a chunk.
///
/// Its `writeByte` completed the current byte and then always appended a fresh one, while
/// `writeBit` only appended a byte when it needed one. A field of whole bytes (the 64 value bits
/// of sample 0, or a value XOR with 8, 16, … significant bits) is written with `writeByte`; every
/// other final field (an unchanged value's single `0`, payloads of other lengths, whose last
/// bits go through `writeBit`) is not. So the chunk carries an extra empty byte exactly when its
/// last field is whole bytes and the stream ends byte-aligned (then it also started aligned).
struct LegacyTail {
    end_aligned: bool,
    last_field_whole_bytes: bool,
}

impl LegacyTail {
    fn open_byte(&self) -> bool {
        self.end_aligned && self.last_field_whole_bytes
    }
}

/// Replays the encoder's bit accounting (field sizes only) to find how the chunk ends.
fn legacy_tail(samples: &[(i64, u64)]) -> LegacyTail {
    let mut bits = 0u64;
    let mut last_field = 0u32;
    let (mut t_prev, mut delta_prev, mut v_prev) = (0i64, 0u64, 0u64);
    let mut window: Option<(u32, u32)> = None;
    for (i, &(t, v)) in samples.iter().enumerate() {
        if i == 0 {
            bits += 8 * varint_len(((t << 1) ^ (t >> 63)) as u64) + 64;
            last_field = 64;
        } else {
            let delta = t.wrapping_sub(t_prev) as u64;
            bits += if i == 1 {
                8 * varint_len(delta)
            } else {
                match delta.wrapping_sub(delta_prev) as i64 {
                    0 => 1,
                    -8191..=8192 => 16,
                    -65535..=65536 => 20,
                    -524287..=524288 => 24,
                    _ => 68,
                }
            };
            delta_prev = delta;
            let x = v ^ v_prev;
            last_field = if x == 0 {
                1
            } else {
                let (lz, tz) = (x.leading_zeros().min(31), x.trailing_zeros());
                match window {
                    Some((l, t)) if lz >= l && tz >= t => {
                        bits += 2;
                        64 - l - t
                    }
                    _ => {
                        window = Some((lz, tz));
                        bits += 13;
                        64 - lz - tz
                    }
                }
            };
            bits += u64::from(last_field);
        }
        t_prev = t;
        v_prev = v;
    }
    LegacyTail { end_aligned: bits & 7 == 0, last_field_whole_bytes: last_field & 7 == 0 }
}

fn varint_len(mut x: u64) -> u64 {
    let mut n = 1;
    while x >= 0x80 {
        x >>= 7;
        n += 1;
    }
    n
}

/// Which file samples the chunks have accounted for. A chunk must be a run of consecutive
/// samples of one series that no other chunk claimed; in the end every sample must be claimed.
struct Coverage<'a> {
    /// Metric name and series.
    series: &'a [(String, &'a Series)],
    claimed: Vec<Vec<bool>>,
    /// First sample of a run → where it could start.
    starts: HashMap<(i64, u64), Vec<(usize, usize)>>,
}

impl<'a> Coverage<'a> {
    fn new(series: &'a [(String, &'a Series)]) -> Self {
        let mut starts: HashMap<(i64, u64), Vec<(usize, usize)>> = HashMap::new();
        for (s, (_, ser)) in series.iter().enumerate() {
            for (i, &(t, v, _)) in ser.samples.iter().enumerate() {
                starts.entry((t, v)).or_default().push((s, i));
            }
        }
        Coverage { series, claimed: series.iter().map(|s| vec![false; s.1.samples.len()]).collect(), starts }
    }

    fn claim(&mut self, at: &str, chunk: &[(i64, u64)]) {
        let candidates = self.starts.get(&chunk[0]).map(Vec::as_slice).unwrap_or_default();
        let found = candidates.iter().copied().find(|&(s, i)| {
            let file = &self.series[s].1.samples;
            file.len() >= i + chunk.len()
                && !self.claimed[s][i]
                && file[i..i + chunk.len()].iter().zip(chunk).all(|(&(ft, fv, _), &(t, v))| (ft, fv) == (t, v))
        });
        let Some((s, i)) = found else {
            panic!(
                "{at}: the chunk's {} samples, from ({}, {:#x}), are not a run of any series in the file",
                chunk.len(),
                chunk[0].0,
                chunk[0].1
            )
        };
        for c in &mut self.claimed[s][i..i + chunk.len()] {
            assert!(!*c, "{at}: sample claimed by two chunks");
            *c = true;
        }
    }

    fn assert_complete(&self) {
        for (s, claimed) in self.claimed.iter().enumerate() {
            if let Some(i) = claimed.iter().position(|c| !c) {
                let (name, ser) = &self.series[s];
                panic!("{name}{:?}: sample {i} at {} is in no chunk", ser.labels, ser.samples[i].0);
            }
        }
    }
}

/// OpenMetrics text for the families.
fn openmetrics(families: &[Family]) -> String {
    let mut out = String::new();
    for fam in families {
        let _ = writeln!(out, "# TYPE {} {}", fam.name, if fam.counter { "counter" } else { "gauge" });
        let name = fam.sample_name();
        for s in &fam.series {
            let labels = s.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(",");
            for (t, _, text) in &s.samples {
                let _ = writeln!(out, "{name}{{{labels}}} {text} {}", om_timestamp(*t));
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The text for a value and the bits Prometheus will store for it.
fn value(v: f64) -> (u64, String) {
    if v.is_nan() {
        return (PROMETHEUS_NAN, "NaN".into());
    }
    let text = match v {
        f64::INFINITY => "+Inf".to_owned(),
        f64::NEG_INFINITY => "-Inf".to_owned(),
        // The shortest text that parses back to the same bits.
        _ => format!("{v:e}"),
    };
    if v.is_finite() {
        assert_eq!(text.parse::<f64>().map(f64::to_bits).ok(), Some(v.to_bits()), "{text}");
    }
    (v.to_bits(), text)
}

/// Scrape times from `start`: a 15s grid with a few ms of jitter, occasional missed scrapes and
/// the given long gaps (index of the sample after which the gap comes, its length).
fn scrape_times(rng: &mut StdRng, start: i64, n: usize, gaps: &[(usize, i64)]) -> Vec<i64> {
    let mut grid = start;
    let mut last = i64::MIN;
    (0..n)
        .map(|i| {
            grid += SCRAPE_MS;
            if rng.gen_bool(0.02) {
                grid += SCRAPE_MS * rng.gen_range(1..4);
            }
            if let Some(&(_, gap)) = gaps.iter().find(|&&(at, _)| at == i) {
                grid += gap;
            }
            let t = exact_ms((grid + rng.gen_range(-4..=4)).max(last + 1));
            last = t;
            t
        })
        .collect()
}

fn series(labels: &[(&'static str, &str)], times: &[i64], values: impl IntoIterator<Item = f64>) -> Series {
    Series {
        labels: labels.iter().map(|&(k, v)| (k, v.to_owned())).collect(),
        samples: times
            .iter()
            .zip(values)
            .map(|(&t, v)| {
                let (bits, text) = value(v);
                (t, bits, text)
            })
            .collect(),
    }
}

/// A counter: integer or fractional increments, idle stretches and resets.
fn counter(rng: &mut StdRng, step: f64, n: usize) -> Vec<f64> {
    let mut v = (rng.gen_range(0..10_000) as f64) * step;
    (0..n)
        .map(|_| {
            if rng.gen_bool(0.01) {
                v = 0.0;
            } else if rng.gen_bool(0.85) {
                v += f64::from(rng.gen_range(1u32..500)) * step;
            }
            v
        })
        .collect()
}

/// Awkward values: signs, zeros, extremes, subnormals, integers, NaN and infinities.
fn special(rng: &mut StdRng) -> f64 {
    const FIXED: &[f64] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        42.0,
        -1e9,
        9_007_199_254_740_993.0,
        f64::MAX,
        f64::MIN,
        1e300,
        -1e-300,
        f64::MIN_POSITIVE,
        5e-324,
        -2.5e-320,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.1,
        1.0 / 3.0,
    ];
    match rng.gen_range(0..4) {
        0 => FIXED[rng.gen_range(0..FIXED.len())],
        1 => f64::from(rng.gen_range(-1000i32..1000)),
        2 => rng.gen_range(-1.0..1.0) * 10f64.powi(rng.gen_range(-300..300)),
        _ => loop {
            let v = f64::from_bits(rng.gen());
            if v.is_finite() {
                break v;
            }
        },
    }
}

fn generate(rng: &mut StdRng) -> Vec<Family> {
    const LONG: usize = 1000;
    let mut requests = Vec::new();
    for code in ["200", "500"] {
        let times = scrape_times(rng, START_MS, LONG, &[(400, 40 * 60_000)]);
        requests.push(series(&[("code", code), ("job", "api")], &times, counter(rng, 1.0, LONG)));
    }
    let times = scrape_times(rng, START_MS + 7, LONG, &[]);
    let cpu = vec![series(&[("job", "api")], &times, counter(rng, 0.01, LONG))];

    let times = scrape_times(rng, START_MS + 3, LONG, &[(700, 3 * 3600 * 1000 / 4)]);
    let mut temp = 20.0f64;
    let walk: Vec<f64> = (0..LONG)
        .map(|_| {
            temp += rng.gen_range(-0.5..0.5);
            (temp * 100.0).round() / 100.0
        })
        .collect();
    let mut sensors = vec![series(&[("site", "münchen")], &times, walk)];
    let times = scrape_times(rng, START_MS + 11, LONG, &[(200, 600_000)]);
    let specials: Vec<f64> = (0..LONG).map(|_| special(rng)).collect();
    sensors.push(series(&[("site", "edge cases")], &times, specials));

    // Irregular intervals push the timestamp delta-of-delta into its wider buckets.
    let mut t = START_MS;
    let times: Vec<i64> = (0..LONG)
        .map(|_| {
            t = exact_ms(t + [1, 1_000, 15_000, 70_000, 600_001][rng.gen_range(0..5)] + rng.gen_range(0..3));
            t
        })
        .collect();
    let values: Vec<f64> = (0..LONG).map(|i| if i % 5 == 0 { special(rng) } else { 1.0 }).collect();
    let irregular = vec![series(&[("job", "batch")], &times, values)];

    // Short one-chunk series inside the second block, chosen so that every way a chunk can end
    // shows up.
    let second_block = (START_MS / BLOCK_MS + 1) * BLOCK_MS;
    let mut wanted = [(true, true, 3usize), (true, false, 3), (false, true, 3)];
    let mut short = Vec::new();
    let mut attempt = 0;
    while wanted.iter().any(|w| w.2 > 0) {
        attempt += 1;
        assert!(attempt < 100_000, "could not find short series for every chunk ending");
        let n = rng.gen_range(2..40);
        let times = scrape_times(rng, second_block + 600_000, n, &[]);
        let values: Vec<f64> = (0..n).map(|_| special(rng)).collect();
        let s = series(&[("case", &attempt.to_string())], &times, values);
        let tail = legacy_tail(&s.samples.iter().map(|&(t, v, _)| (t, v)).collect::<Vec<_>>());
        if let Some(w) = wanted.iter_mut().find(|w| (w.0, w.1) == (tail.end_aligned, tail.last_field_whole_bytes)) {
            if w.2 > 0 {
                w.2 -= 1;
                short.push(s);
            }
        }
    }
    let single = [(0, 3.5), (1, f64::NAN)]
        .into_iter()
        .map(|(i, v)| series(&[("n", &i.to_string())], &[exact_ms(second_block + 3_600_000 + i)], [v]))
        .collect();

    vec![
        Family { name: "http_requests", counter: true, series: requests },
        Family { name: "process_cpu_seconds", counter: true, series: cpu },
        Family { name: "sensor_celsius", counter: false, series: sensors },
        Family { name: "irregular", counter: false, series: irregular },
        Family { name: "short", counter: false, series: short },
        Family { name: "single", counter: false, series: single },
    ]
}
