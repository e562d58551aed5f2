//! Blocks written with `BlockWriter` read back through `Block` exactly, and selecting with
//! random matchers returns what a brute-force filter over the input returns.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use strata_tsdb::block::{Block, BlockCompaction, BlockSeries, BlockWriter, ChunkData, SeriesChunks};
use strata_tsdb::chunkenc::{Encoding, XorAppender, XorIter};
use strata_tsdb::matchers::{MatchOp, Matcher};
use strata_tsdb::Labels;
use ulid::Ulid;

/// Label names the generator uses; `absent` is never on a series but is used in matchers.
const NAMES: &[&str] = &["__name__", "job", "instance", "zone", "ü"];
const ABSENT: &str = "absent";

fn value() -> impl Strategy<Value = String> {
    // Mostly a tiny alphabet, so that series share values and matchers hit several of them.
    prop_oneof![3 => "[ab\u{e9}]", 1 => "[ab\u{e9}\u{2603}\n.]{1,3}"]
}

fn series_labels() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map(prop::sample::select(NAMES), value(), 1..=NAMES.len())
        .prop_map(|m| Labels::from_pairs(&m.into_iter().collect::<Vec<_>>()))
}

/// Chunks of random samples: increasing timestamps across chunks, any value bits.
fn chunks() -> impl Strategy<Value = Vec<ChunkData>> {
    (-10_000i64..10_000, prop::collection::vec(prop::collection::vec((1i64..2_000, any::<u64>()), 1..=120), 1..=4))
        .prop_map(|(start, chunks)| {
            let mut t = start;
            chunks
                .into_iter()
                .map(|samples| {
                    let mut app = XorAppender::new();
                    let min_time = t + samples[0].0;
                    for (step, bits) in samples {
                        t += step;
                        app.append(t, f64::from_bits(bits));
                    }
                    ChunkData { min_time, max_time: t, encoding: Encoding::Xor, data: app.bytes().to_vec().into() }
                })
                .collect()
        })
}

fn matcher() -> impl Strategy<Value = (String, MatchOp, String)> {
    let name = prop::sample::select([NAMES, &[ABSENT]].concat());
    let op = prop::sample::select(vec![MatchOp::Equal, MatchOp::NotEqual, MatchOp::Regex, MatchOp::NotRegex]);
    let plain = prop_oneof![value(), Just(String::new())];
    let pattern = prop::sample::select(vec![
        ".*",
        ".+",
        "",
        "a|b",
        "a|",
        "a.*",
        ".*\u{e9}",
        ".*b.*",
        "(a|\u{2603})+",
        "[ab]",
        "a?",
        "\n|.",
        "\\.",
        "\u{e9}.+",
    ])
    .prop_map(str::to_owned);
    (name, op, prop_oneof![plain, pattern]).prop_map(|(n, op, v)| (n.to_owned(), op, v))
}

/// Brute force: the series whose labels satisfy every matcher (a missing label is `""`).
fn matches(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn blocks_round_trip_and_select_like_brute_force(
        input in prop::collection::btree_map(series_labels(), chunks(), 1..40),
        queries in prop::collection::vec(
            (prop::collection::vec(matcher(), 1..4), -12_000i64..300_000, 0i64..300_000),
            1..12,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ulid = Ulid::new();
        // Small segments, so that larger inputs span several segment files.
        let mut w = BlockWriter::with_segment_size(dir.path(), ulid, 4096).unwrap();
        let symbols: BTreeSet<&str> = input.keys().flat_map(|l| l.iter().flat_map(|(n, v)| [n, v])).collect();
        w.add_symbols(symbols.iter().copied()).unwrap();
        for (labels, chunks) in &input {
            w.add_series(labels, chunks).unwrap();
        }
        let min_time = input.values().map(|c| c[0].min_time).min().unwrap();
        let max_time = input.values().map(|c| c[c.len() - 1].max_time).max().unwrap() + 1;
        let meta = w.finish(min_time, max_time, BlockCompaction { level: 1, ..Default::default() }).unwrap();

        let block = Block::open(&dir.path().join(ulid.to_string())).unwrap();
        prop_assert_eq!(block.meta(), &meta);
        prop_assert_eq!(meta.compaction.sources.clone(), vec![ulid]);
        prop_assert_eq!(meta.stats.num_series, input.len() as u64);
        prop_assert_eq!(meta.stats.num_chunks, input.values().map(|c| c.len() as u64).sum::<u64>());
        let samples: u64 = input
            .values()
            .flat_map(|cs| cs.iter().map(|c| XorIter::new(&c.data).unwrap().count() as u64))
            .sum();
        prop_assert_eq!(meta.stats.num_samples, samples);
        prop_assert_eq!(meta.stats.num_float_samples, samples);
        prop_assert!(block.tombstones().is_empty());

        // Everything, by an always-true matcher.
        let all = block.select(&[Matcher::new(MatchOp::Regex, "absent", ".*").unwrap()], i64::MIN, i64::MAX).unwrap();
        let want: Vec<SeriesChunks> =
            input.iter().map(|(l, c)| SeriesChunks { labels: l.clone(), chunks: c.clone() }).collect();
        prop_assert_eq!(&all, &want);
        prop_assert_eq!(block.index().symbols().unwrap(), symbols.iter().map(|s| s.to_string()).collect::<Vec<_>>());

        let mut names: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for l in input.keys() {
            for (n, v) in l.iter() {
                names.entry(n).or_default().insert(v);
            }
        }
        prop_assert_eq!(block.label_names(&[]).unwrap(), names.keys().map(|s| s.to_string()).collect::<Vec<_>>());
        for (n, vals) in &names {
            prop_assert_eq!(block.label_values(n, &[]).unwrap(), vals.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }

        for (spec, mint, span) in queries {
            let ms: Vec<Matcher> = spec.iter().map(|(n, op, v)| Matcher::new(*op, n.as_str(), v.as_str()).unwrap()).collect();
            let maxt = mint + span;
            let want: Vec<SeriesChunks> = input
                .iter()
                .filter(|(l, _)| matches(l, &ms))
                .map(|(l, cs)| SeriesChunks {
                    labels: l.clone(),
                    chunks: cs.iter().filter(|c| c.min_time <= maxt && c.max_time >= mint).cloned().collect(),
                })
                .filter(|s| !s.chunks.is_empty())
                .collect();
            let got = block.select(&ms, mint, maxt).unwrap();
            prop_assert_eq!(&got, &want, "select {:?} [{}, {}]", spec, mint, maxt);

            let selected: Vec<&Labels> = input.keys().filter(|l| matches(l, &ms)).collect();
            let want_names: BTreeSet<String> = selected.iter().flat_map(|l| l.iter().map(|(n, _)| n.to_owned())).collect();
            prop_assert_eq!(block.label_names(&ms).unwrap(), want_names.into_iter().collect::<Vec<_>>(), "names {:?}", spec);
            for name in NAMES {
                let want_values: BTreeSet<String> =
                    selected.iter().filter_map(|l| l.get(name).map(str::to_owned)).collect();
                prop_assert_eq!(
                    block.label_values(name, &ms).unwrap(),
                    want_values.into_iter().collect::<Vec<_>>(),
                    "values of {} for {:?}", name, spec
                );
            }
        }
    }
}

#[test]
fn writer_skips_empty_series_and_refuses_out_of_range_samples() {
    let dir = tempfile::tempdir().unwrap();
    let ulid = Ulid::new();
    let mut w = BlockWriter::new(dir.path(), ulid).unwrap();
    w.add_symbols(["a", "1", "2"]).unwrap();
    let mut app = XorAppender::new();
    app.append(100, 1.0);
    let chunk = ChunkData { min_time: 100, max_time: 100, encoding: Encoding::Xor, data: app.bytes().to_vec().into() };
    w.add_series(&Labels::from_pairs(&[("a", "1")]), &[]).unwrap();
    w.add_series(&Labels::from_pairs(&[("a", "2")]), std::slice::from_ref(&chunk)).unwrap();
    // maxt is exclusive: a sample at 100 needs maxt > 100.
    let err = w.finish(0, 100, BlockCompaction { level: 1, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("outside the block range"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "failed write left files behind");

    let mut w = BlockWriter::new(dir.path(), ulid).unwrap();
    w.add_symbols(["a", "1", "2"]).unwrap();
    w.add_series(&Labels::from_pairs(&[("a", "1")]), &[]).unwrap();
    w.add_series(&Labels::from_pairs(&[("a", "2")]), std::slice::from_ref(&chunk)).unwrap();
    let meta = w.finish(0, 101, BlockCompaction { level: 1, ..Default::default() }).unwrap();
    assert_eq!((meta.stats.num_series, meta.stats.num_chunks, meta.stats.num_samples), (1, 1, 1));
    let block = Block::open(&dir.path().join(ulid.to_string())).unwrap();
    assert_eq!(block.label_values("a", &[]).unwrap(), ["2"]);
    let names: Vec<String> = std::fs::read_dir(block.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["chunks", "index", "meta.json", "tombstones"]);
}

#[test]
fn large_segments_split_without_splitting_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let ulid = Ulid::new();
    let mut w = BlockWriter::with_segment_size(dir.path(), ulid, 100).unwrap();
    let values: Vec<String> = (0..50).map(|i| format!("{i:02}")).collect();
    w.add_symbols(values.iter().map(String::as_str).chain(["s"])).unwrap();
    let mut want = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut app = XorAppender::new();
        for t in 0..=(i as i64) {
            app.append(t * 10, t as f64 * 0.5);
        }
        let c = ChunkData {
            min_time: 0,
            max_time: i as i64 * 10,
            encoding: Encoding::Xor,
            data: app.bytes().to_vec().into(),
        };
        let labels = Labels::from_pairs(&[("s", v.as_str())]);
        w.add_series(&labels, std::slice::from_ref(&c)).unwrap();
        want.push(SeriesChunks { labels, chunks: vec![c] });
    }
    w.finish(0, 1000, BlockCompaction { level: 1, ..Default::default() }).unwrap();
    let block = Block::open(&dir.path().join(ulid.to_string())).unwrap();
    assert!(block.chunks().num_segments() > 10, "{} segments", block.chunks().num_segments());
    let all = block.select(&[Matcher::new(MatchOp::Regex, "s", ".+").unwrap()], i64::MIN, i64::MAX).unwrap();
    assert_eq!(all, want);
}

/// Resident bytes of this process's mappings of `file` (from /proc/self/smaps).
fn resident_bytes_of(file: &std::path::Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = file.to_str().unwrap();
    let mut in_mapping = false;
    let mut kib = 0;
    for line in smaps.lines() {
        if let Some(rss) = line.strip_prefix("Rss:") {
            if in_mapping {
                kib += rss.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
            }
        } else if line.split_whitespace().nth(1).is_some_and(|f| f.contains('-')) {
            // A mapping's first line: `start-end perms offset dev inode [path]`.
            in_mapping = line.ends_with(name);
        }
    }
    kib * 1024
}

#[test]
fn a_read_once_scan_releases_the_pages_it_read_and_its_chunks_stay_valid() {
    let dir = tempfile::tempdir().unwrap();
    let ulid = Ulid::new();
    let mut w = BlockWriter::new(dir.path(), ulid).unwrap();
    let values: Vec<String> = (0..20_000).map(|i| format!("{i:05}")).collect();
    w.add_symbols(values.iter().map(String::as_str).chain(["s"])).unwrap();
    for (i, v) in values.iter().enumerate() {
        let mut app = XorAppender::new();
        for t in 0..120 {
            app.append(t * 15_000, (i as f64 * 1.37 + t as f64).sqrt());
        }
        let c = ChunkData {
            min_time: 0,
            max_time: 119 * 15_000,
            encoding: Encoding::Xor,
            data: app.bytes().to_vec().into(),
        };
        w.add_series(&Labels::from_pairs(&[("s", v.as_str())]), &[c]).unwrap();
    }
    w.finish(0, 120 * 15_000, BlockCompaction { level: 1, ..Default::default() }).unwrap();
    let block_dir = dir.path().join(ulid.to_string());
    let segment = block_dir.join("chunks").join("000001");
    let size = std::fs::metadata(&segment).unwrap().len();
    assert!(size > 8 << 20, "segment of {size} bytes is too small to tell");

    let block = Block::open(&block_dir).unwrap();
    let kept: Vec<SeriesChunks> =
        BlockSeries::new(&block, &[], i64::MIN, i64::MAX, false).unwrap().read_once().map(Result::unwrap).collect();
    let resident = resident_bytes_of(&segment);
    assert!(resident < size / 4, "{resident} of {size} bytes still resident after a read-once scan");

    let again = Block::open(&block_dir).unwrap();
    let plain: Vec<SeriesChunks> =
        BlockSeries::new(&again, &[], i64::MIN, i64::MAX, false).unwrap().map(Result::unwrap).collect();
    assert!(resident_bytes_of(&segment) > size / 2, "a plain scan keeps what it read resident");
    assert_eq!(kept, plain, "chunks read before a release read the same afterwards");
}
