//! `inspect::list` and `inspect::analyze` against `promtool tsdb list` and `promtool tsdb
//! analyze` (the Debian `prometheus` package's promtool, 2.42) on blocks promtool made itself
//! with `create-blocks-from openmetrics`.
//!
//! list output must be byte-identical, SIZE included (both count meta.json, index, tombstones
//! and chunk segments). analyze output must be identical except for the order of entries with
//! equal counts within a ranking: promtool collects them from a Go map (random iteration
//! order) and sorts unstably, so its order among ties changes from run to run, while ours is
//! by key. Those rankings are compared as sequences of counts plus sets of entries.
//!
//! promtool is looked up on `PATH`; without it the test fails rather than passing vacuously.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_testkit::promtool::{create_blocks, om_timestamp, path_arg, promtool};
use strata_tsdb::block::open_blocks;
use strata_tsdb::inspect;

/// 2023-11-14T22:13:20Z.
const START_MS: i64 = 1_700_000_000_000;

/// An OpenMetrics file of about five hours: counters, gauges and histogram buckets, with
/// series that start late, stop early or exist for one hour only (a `pod` label that changes
/// every hour), so that the churn rankings have non-zero entries, and with many equal counts.
fn openmetrics(rng: &mut StdRng) -> String {
    let mut text = String::new();
    let mut series = |text: &mut String, name: &str, labels: &str, from: i64, to: i64, counter: bool| {
        let mut v = if counter { 0.0 } else { f64::from(rng.gen_range(0u32..1000)) };
        let mut t = from;
        while t < to {
            v += if counter { f64::from(rng.gen_range(0u32..10)) } else { f64::from(rng.gen_range(-5i32..=5)) };
            let _ = writeln!(text, "{name}{{{labels}}} {v} {}", om_timestamp(t + rng.gen_range(0..5)));
            t += 15_000;
        }
    };
    let hour = 3_600_000;
    let end = START_MS + 5 * hour;

    text.push_str("# TYPE http_requests counter\n");
    for instance in 0..4 {
        for code in ["200", "404", "500"] {
            // Instance 3 joins after 90 minutes; instance 2 leaves after three hours.
            let from = START_MS + if instance == 3 { 90 * 60_000 } else { 0 };
            let to = if instance == 2 { START_MS + 3 * hour } else { end };
            let labels = format!("code=\"{code}\",instance=\"10.0.0.{instance}:8080\",job=\"api\"");
            series(&mut text, "http_requests_total", &labels, from, to, true);
        }
    }
    text.push_str("# TYPE container_memory_bytes gauge\n");
    for h in 0..5 {
        for c in ["app", "sidecar"] {
            let labels = format!("container=\"{c}\",job=\"kubelet\",pod=\"web-{h}\"");
            series(&mut text, "container_memory_bytes", &labels, START_MS + h * hour, START_MS + (h + 1) * hour, false);
        }
    }
    text.push_str("# TYPE request_duration_seconds histogram\n");
    for instance in 0..2 {
        for le in ["0.1", "0.5", "1.0", "+Inf"] {
            let labels = format!("instance=\"10.0.1.{instance}:9000\",job=\"db\",le=\"{le}\"");
            series(&mut text, "request_duration_seconds_bucket", &labels, START_MS, end, true);
        }
    }
    text.push_str("# EOF\n");
    text
}

fn ours(f: impl FnOnce(&mut Vec<u8>) -> strata_tsdb::Result<()>) -> String {
    let mut out = Vec::new();
    f(&mut out).expect("inspect");
    String::from_utf8(out).expect("UTF-8 output")
}

/// analyze output split into the header lines and the rankings, each a title and its
/// `(count, key)` entries.
struct Analysis {
    header: Vec<String>,
    rankings: Vec<(String, Vec<(u64, String)>)>,
}

fn parse_analysis(text: &str) -> Analysis {
    let mut parts = text.split("\n\n");
    let header = parts.next().unwrap_or_default().lines().map(str::to_owned).collect();
    let rankings = parts
        .map(|part| {
            let mut lines = part.lines();
            let title = lines.next().unwrap_or_default().to_owned();
            let entries = lines
                .map(|l| {
                    let (n, key) = l.split_once(' ').unwrap_or_else(|| panic!("bad ranking line {l:?}"));
                    (n.parse().unwrap_or_else(|_| panic!("bad count in {l:?}")), key.to_owned())
                })
                .collect();
            (title, entries)
        })
        .collect();
    Analysis { header, rankings }
}

/// Checks our analyze output for one block and limit against promtool's. `complete` is
/// promtool's output with a limit large enough to list every entry; it decides which entries
/// tie. Our entries must come in promtool's order of counts, each be one promtool lists with
/// that count, and with ties in key order.
fn check_analysis(ours: &str, promtool: &str, complete: &str) {
    let (ours, theirs, complete) = (parse_analysis(ours), parse_analysis(promtool), parse_analysis(complete));
    assert_eq!(ours.header, theirs.header);
    let titles = |a: &Analysis| a.rankings.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    assert_eq!(titles(&ours), titles(&theirs));
    for ((title, got), ((_, want), (_, all))) in
        ours.rankings.iter().zip(theirs.rankings.iter().zip(&complete.rankings))
    {
        let counts = |v: &[(u64, String)]| v.iter().map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(counts(got), counts(want), "{title} counts");
        let all: BTreeSet<&(u64, String)> = all.iter().collect();
        for e in got {
            assert!(all.contains(e), "{title}: {e:?} is not in promtool's ranking");
        }
        assert!(got.windows(2).all(|w| w[0].0 > w[1].0 || w[0].1 < w[1].1), "{title}: ties not in key order");
        if got.len() == all.len() {
            // Everything listed: the same entries, not just entries promtool also has.
            let want: BTreeSet<&(u64, String)> = want.iter().collect();
            assert_eq!(got.iter().collect::<BTreeSet<_>>(), want, "{title}");
        }
    }
}

#[test]
fn list_and_analyze_match_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_blocks(&openmetrics(&mut StdRng::seed_from_u64(42)), &data);
    let blocks = open_blocks(&data).expect("open promtool's blocks");
    assert!(blocks.len() >= 3, "expected at least 3 blocks, got {}", blocks.len());

    // With blocks there is no note about the head.
    let list = |human: bool, o: &mut Vec<u8>| inspect::list(&data, human, o).map(|note| assert_eq!(note, None));
    assert_eq!(ours(|o| list(false, o)), promtool(&["tsdb", "list", path_arg(&data)]));
    assert_eq!(ours(|o| list(true, o)), promtool(&["tsdb", "list", "-r", path_arg(&data)]));

    let mut rankings_with_ties = 0;
    for block in blocks.iter().map(|b| Some(b.meta().ulid)).chain([None]) {
        let id = block.map(|u| u.to_string());
        let promtool_analyze = |limit: usize| {
            let limit = format!("--limit={limit}");
            let mut args = vec!["tsdb", "analyze", &limit, path_arg(&data)];
            args.extend(id.as_deref());
            promtool(&args)
        };
        let complete = promtool_analyze(10_000);
        for a in &parse_analysis(&complete).rankings {
            let counts: Vec<u64> = a.1.iter().map(|e| e.0).collect();
            rankings_with_ties += usize::from(counts.windows(2).any(|w| w[0] == w[1]));
        }
        for limit in [10_000, 3] {
            let got = ours(|o| inspect::analyze(&data, block, limit, o));
            check_analysis(&got, &promtool_analyze(limit), &complete);
        }
    }
    // The data is meant to exercise the tie handling; make sure it does.
    assert!(rankings_with_ties > 10, "only {rankings_with_ties} rankings with ties");

    // The churn rankings are not all zeros: the series that come and go show up.
    let newest = parse_analysis(&ours(|o| inspect::analyze(&data, None, 20, o)));
    let churn: BTreeMap<&str, u64> = newest.rankings[1].1.iter().map(|(n, k)| (k.as_str(), *n)).collect();
    assert!(churn.values().any(|&n| n > 0), "{churn:?}");
}
