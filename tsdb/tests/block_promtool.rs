//! Interoperability of blocks with Prometheus's own tools (the Debian `prometheus` package's
//! promtool, 2.42):
//!
//! - blocks `BlockWriter` writes open in `promtool tsdb list`, `analyze --extended` and `dump`,
//!   and the dump is exactly the samples written;
//! - blocks `promtool tsdb create-blocks-from openmetrics` writes read back through `Block`
//!   exactly equal to the file's samples.
//!
//! promtool is looked up on `PATH`; without it these tests fail rather than pass vacuously.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_testkit::promtool::{create_blocks, exact_ms, om_timestamp, path_arg, promtool};
use strata_tsdb::block::{open_blocks, BlockCompaction, BlockMeta, BlockWriter, ChunkData};
use strata_tsdb::chunkenc::{Encoding, XorAppender, XorIter};
use strata_tsdb::gotext::format_g;
use strata_tsdb::matchers::{MatchOp, Matcher};
use strata_tsdb::Labels;
use ulid::Ulid;

/// Prometheus's NaN: what its text parsers store for any `NaN`.
const PROMETHEUS_NAN: u64 = 0x7ff8_0000_0000_0001;
const HOUR_MS: i64 = 3_600_000;
/// Start of the data: 2023-11-14T22:13:20Z, inside a two-hour block range.
const START_MS: i64 = 1_700_000_000_000;

/// A series and its samples as (timestamp, value bits).
type Samples = BTreeMap<Labels, Vec<(i64, u64)>>;

/// Awkward values along with ordinary ones: signs, zeros, extremes, NaN payloads, infinities.
fn value(rng: &mut StdRng, prev: f64) -> f64 {
    const SPECIAL: &[f64] =
        &[0.0, -0.0, 1e-300, -5e-324, f64::MAX, f64::MIN_POSITIVE, f64::INFINITY, f64::NEG_INFINITY, 0.1, 1e21];
    match rng.gen_range(0..10) {
        0 => SPECIAL[rng.gen_range(0..SPECIAL.len())],
        1 => f64::from_bits(rng.gen()),
        2 => f64::from_bits(0x7ff0_0000_0000_0002), // the staleness marker
        3..=5 => prev,
        _ => prev + f64::from(rng.gen_range(0u32..1000)) * 0.25,
    }
}

/// Labels for series `i`: several metrics, some with quotes, backslashes, newlines and
/// non-ASCII in values, one label set without a metric name.
fn labels_for(i: usize) -> Labels {
    let metric = ["http_requests_total", "node_cpu_seconds", "temperature_\u{b0}c", "up"][i % 4];
    let instance = format!("host-{i:03}.example:9100");
    let mut pairs: Vec<(&str, String)> =
        vec![("instance", instance), ("job", ["api", "node", "w\u{fc}rfel"][i % 3].into())];
    if i % 7 != 6 {
        pairs.push(("__name__", metric.into()));
    }
    if matches!(i % 5, 0) {
        pairs.push(("path", "/a \"quoted\" \\ path\nline2 \u{2603}".into()));
    }
    Labels::from_pairs(&pairs)
}

/// Writes one block of `series` covering `[min_time, max_time)` into `dir`; returns its meta
/// and the samples written.
fn write_block(dir: &Path, rng: &mut StdRng, series: &[Labels], min_time: i64, max_time: i64) -> (BlockMeta, Samples) {
    // Small segments, so that chunk refs into later segment files get exercised.
    let mut w = BlockWriter::with_segment_size(dir, Ulid::new(), 64 * 1024).expect("block writer");
    let symbols: BTreeSet<&str> = series.iter().flat_map(|l| l.iter().flat_map(|(n, v)| [n, v])).collect();
    w.add_symbols(symbols).expect("symbols");
    let mut sorted = series.to_vec();
    sorted.sort();
    let mut written = Samples::new();
    for labels in &sorted {
        let mut t = min_time + rng.gen_range(0..15_000);
        let mut v = 0.0f64;
        let mut chunks = Vec::new();
        let mut samples = Vec::new();
        while t < max_time {
            let mut app = XorAppender::new();
            let min = t;
            let mut max = t;
            while t < max_time && app.num_samples() < 120 {
                v = value(rng, if v.is_finite() { v } else { 0.0 });
                app.append(t, v);
                samples.push((t, v.to_bits()));
                max = t;
                t += 15_000 + rng.gen_range(-500..500);
            }
            chunks.push(ChunkData {
                min_time: min,
                max_time: max,
                encoding: Encoding::Xor,
                data: app.bytes().to_vec().into(),
            });
        }
        w.add_series(labels, &chunks).expect("add series");
        written.insert(labels.clone(), samples);
    }
    let meta = w.finish(min_time, max_time, BlockCompaction { level: 1, ..Default::default() }).expect("finish block");
    (meta, written)
}

/// The whitespace-separated fields of the line of `output` that mentions `key`.
fn line_with<'a>(output: &'a str, key: &str) -> Vec<&'a str> {
    output
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no line with {key:?} in promtool output:\n{output}"))
        .split_whitespace()
        .collect()
}

#[test]
fn promtool_reads_our_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(42);
    let series: Vec<Labels> = (0..150).map(labels_for).collect();
    let base = START_MS - START_MS.rem_euclid(2 * HOUR_MS);
    // Two consecutive two-hour blocks, the second with a subset of the series.
    let blocks = [
        write_block(dir.path(), &mut rng, &series, base, base + 2 * HOUR_MS),
        write_block(dir.path(), &mut rng, &series[..100], base + 2 * HOUR_MS, base + 4 * HOUR_MS),
    ];
    let mut want = Samples::new();
    for (_, samples) in &blocks {
        for (l, s) in samples {
            want.entry(l.clone()).or_default().extend_from_slice(s);
        }
    }

    // list: one row per block with the meta.json numbers.
    let list = promtool(&["tsdb", "list", path_arg(dir.path())]);
    for (meta, _) in &blocks {
        let row = line_with(&list, &meta.ulid.to_string());
        let s = &meta.stats;
        let want_row = [meta.min_time, meta.max_time].map(|t| t.to_string());
        assert_eq!(row[1..3], want_row, "list row {row:?}");
        let counts = [s.num_samples, s.num_chunks, s.num_series].map(|n| n.to_string());
        assert_eq!(row[4..7], counts, "list row {row:?}");
    }
    assert_eq!(list.lines().count(), 3, "{list}");

    // analyze --extended reads the index through Prometheus's reader and every chunk.
    for (meta, samples) in &blocks {
        let out = promtool(&["tsdb", "analyze", "--extended", path_arg(dir.path()), &meta.ulid.to_string()]);
        let pairs: BTreeSet<(&str, &str)> = samples.keys().flat_map(|l| l.iter()).collect();
        let names: BTreeSet<&str> = pairs.iter().map(|p| p.0).collect();
        let entries: usize = samples.keys().map(Labels::len).sum();
        assert_eq!(line_with(&out, "Block ID:")[2], meta.ulid.to_string());
        assert_eq!(line_with(&out, "Series:")[1], samples.len().to_string(), "{out}");
        assert_eq!(line_with(&out, "Label names:")[2], names.len().to_string(), "{out}");
        assert_eq!(line_with(&out, "Postings (unique label pairs):")[4], pairs.len().to_string(), "{out}");
        assert_eq!(line_with(&out, "Postings entries (total label pairs):")[5], entries.to_string(), "{out}");
    }

    // dump: exactly our samples, in promtool's format and order.
    // promtool 2.42's read-only open insists on a WAL directory, as any Prometheus data dir has.
    std::fs::create_dir(dir.path().join("wal")).unwrap();
    let dump = promtool(&["tsdb", "dump", path_arg(dir.path())]);
    let mut expected = String::new();
    for (labels, samples) in &want {
        for &(t, bits) in samples {
            let _ = writeln!(expected, "{labels} {} {t}", format_g(f64::from_bits(bits)));
        }
    }
    let total: usize = want.values().map(Vec::len).sum();
    for (i, (got, exp)) in dump.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, exp, "dump line {i} differs (promtool first)");
    }
    assert_eq!(dump.lines().count(), total, "dump has a different number of samples");
    println!(
        "promtool list/analyze/dump agree on {} blocks, {} series, {} chunks, {total} samples",
        blocks.len(),
        want.len(),
        blocks.iter().map(|b| b.0.stats.num_chunks).sum::<u64>()
    );
}

/// OpenMetrics label value escaping.
fn om_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Writes an OpenMetrics file of several families and returns it with the samples Prometheus
/// will store for it (NaN as Prometheus's NaN bits).
fn openmetrics(rng: &mut StdRng) -> (String, Samples) {
    let families: [(&str, &str, usize); 4] = [
        ("api_requests", "counter", 12),
        ("temperature", "gauge", 30),
        ("queue_length", "gauge", 60),
        ("odd", "gauge", 8),
    ];
    let mut text = String::new();
    let mut want = Samples::new();
    for (f, (family, kind, n)) in families.into_iter().enumerate() {
        let _ = writeln!(text, "# TYPE {family} {kind}");
        let name = if kind == "counter" { format!("{family}_total") } else { family.to_owned() };
        for i in 0..n {
            let mut pairs = vec![("__name__", name.clone()), ("instance", format!("10.0.{f}.{i}:8080"))];
            match family {
                "api_requests" => pairs.push(("code", ["200", "404", "500"][i % 3].to_owned())),
                "temperature" => pairs.push(("room", format!("r\u{e4}um {i} \"\u{2603}\" \\ x"))),
                "odd" => pairs.push(("note", format!("line one\nline two {i}"))),
                _ => {}
            }
            let labels = Labels::from_pairs(&pairs);
            let label_text: Vec<String> = pairs[1..].iter().map(|(k, v)| format!("{k}=\"{}\"", om_escape(v))).collect();
            // About five hours at a 15 s interval, some series starting late or ending early.
            let start = START_MS + rng.gen_range(0..3) * 40 * 60_000;
            let count = rng.gen_range(400..1300);
            let mut t = start;
            let mut v: f64 = if kind == "counter" { 0.0 } else { rng.gen_range(-50.0..50.0) };
            let samples = want.entry(labels).or_default();
            for _ in 0..count {
                t = exact_ms(t + 15_000 + rng.gen_range(-3..=3));
                v = match kind {
                    "counter" => v + f64::from(rng.gen_range(0u32..20)),
                    _ if family == "odd" => value(rng, if v.is_finite() { v } else { 1.0 }),
                    _ => v + rng.gen_range(-1.0..1.0),
                };
                let (bits, value_text) = if v.is_nan() {
                    (PROMETHEUS_NAN, "NaN".to_owned())
                } else if v.is_infinite() {
                    (v.to_bits(), if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned())
                } else {
                    (v.to_bits(), format!("{v:e}"))
                };
                let _ = writeln!(text, "{name}{{{}}} {value_text} {}", label_text.join(","), om_timestamp(t));
                samples.push((t, bits));
            }
        }
    }
    text.push_str("# EOF\n");
    (text, want)
}

#[test]
fn promtool_blocks_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let (text, want) = openmetrics(&mut rng);
    let out = dir.path().join("tsdb");
    let made = create_blocks(&text, &out);

    let blocks = open_blocks(&out).expect("open promtool's blocks");
    assert_eq!(blocks.len(), made.len(), "every block promtool wrote must open");
    assert!(blocks.len() >= 3, "expected the data to span at least 3 blocks, got {}", blocks.len());

    let everything = [Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()];
    let mut got = Samples::new();
    let (mut chunks, mut multi_chunk_series, mut samples_in_meta) = (0, 0, 0);
    let mut names = BTreeSet::new();
    for block in &blocks {
        let meta = block.meta();
        samples_in_meta += meta.stats.num_samples;
        names.extend(block.label_values("__name__", &[]).unwrap());
        for s in block.select(&everything, i64::MIN, i64::MAX).unwrap() {
            multi_chunk_series += usize::from(s.chunks.len() > 1);
            let samples = got.entry(s.labels.clone()).or_default();
            for c in &s.chunks {
                assert_eq!(c.encoding, Encoding::Xor);
                let mut it = XorIter::new(&c.data).unwrap();
                let decoded: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
                assert!(it.err().is_none(), "{}: {:?}", s.labels, it.err());
                assert_eq!((decoded[0].0, decoded[decoded.len() - 1].0), (c.min_time, c.max_time), "{}", s.labels);
                assert!(c.min_time >= meta.min_time && c.max_time < meta.max_time, "chunk outside its block");
                samples.extend(decoded);
                chunks += 1;
            }
        }
    }
    assert!(multi_chunk_series > 0, "no series with several chunks in one block");
    let total: usize = want.values().map(Vec::len).sum();
    assert_eq!(samples_in_meta, total as u64);
    assert_eq!(got.len(), want.len(), "series count");
    for ((gl, gs), (wl, ws)) in got.iter().zip(&want) {
        assert_eq!(gl, wl);
        assert!(gs == ws, "{gl}: samples differ ({} read, {} in the file)", gs.len(), ws.len());
    }
    let want_names: BTreeSet<String> = want.keys().filter_map(|l| l.metric_name().map(str::to_owned)).collect();
    assert_eq!(names, want_names);
    println!(
        "{} promtool blocks, {} series, {chunks} chunks, {total} samples read back exactly",
        blocks.len(),
        got.len()
    );
}
