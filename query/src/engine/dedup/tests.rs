//! The merges against Thanos's and Prometheus's test cases: the overlap split as Thanos's
//! `TestOverlapSplit`, the penalty iterator against Thanos's iterator tests and a direct port of
//! it (eager seeks, samples in memory) on random replicas, and the whole penalty merge (split,
//! then iterator) against the port over the split's runs.

use proptest::prelude::*;
use strata_storage::{ChunkData, SeriesChunks};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::labels::Labels;

use super::*;

type Samples = Vec<(i64, f64)>;

/// A replica's samples as a series of XOR chunks of `per_chunk` samples.
fn series(samples: &[(i64, f64)], per_chunk: usize) -> SeriesChunks {
    let chunks = samples
        .chunks(per_chunk.max(1))
        .map(|part| {
            let mut a = XorAppender::new();
            part.iter().for_each(|&(t, v)| a.append(t, v));
            ChunkData {
                min_time: part[0].0,
                max_time: part[part.len() - 1].0,
                encoding: Encoding::Xor,
                data: a.bytes().to_vec().into(),
            }
        })
        .collect();
    SeriesChunks { labels: Labels::from_pairs(&[("a", "1")]), chunks }
}

fn merged_in(replicas: &[Samples], mint: i64, maxt: i64, func: DedupFunc, counter: bool, per_chunk: usize) -> Samples {
    let replicas: Vec<SeriesChunks> = replicas.iter().map(|r| series(r, per_chunk)).collect();
    let mut out = Vec::new();
    for_each_sample(&replicas, mint, maxt, Merge { func, counter }, |t, v| out.push((t, v))).unwrap();
    out
}

fn merged(replicas: &[Samples], func: DedupFunc, counter: bool) -> Samples {
    // Small chunks, so that seeks cross and skip chunks.
    merged_in(replicas, i64::MIN, i64::MAX, func, counter, 3)
}

/// The penalty iterator over `replicas` as they are, without the overlap split.
fn iterated_in(replicas: &[Samples], counter: bool, per_chunk: usize) -> Samples {
    let replicas: Vec<SeriesChunks> = replicas.iter().map(|r| series(r, per_chunk)).collect();
    let mut out = Vec::new();
    strata_tsdb::dedup::penalty_merge(&replicas, i64::MIN, i64::MAX, counter, |t, v| out.push((t, v))).unwrap();
    out
}

fn iterated(replicas: &[Samples], counter: bool) -> Samples {
    iterated_in(replicas, counter, 3)
}

/// The samples of each run the overlap split makes of `replicas`.
fn runs(replicas: &[Samples], per_chunk: usize) -> Vec<Samples> {
    let replicas: Vec<SeriesChunks> = replicas.iter().map(|r| series(r, per_chunk)).collect();
    overlap_split(&replicas)
        .iter()
        .map(|run| {
            let mut out = Vec::new();
            for_each_series_sample(run, i64::MIN, i64::MAX, |t, v| out.push((t, v))).unwrap();
            out
        })
        .collect()
}

fn s(pairs: &[(i64, f64)]) -> Samples {
    pairs.to_vec()
}

/// Thanos's `dedupSeriesIterator` and its test mock, ported line by line: every seek is made
/// when Thanos makes it. `backward`: seeks search from the first sample, as the mock in
/// Thanos's tests does (`sort.Search` over all samples), and so may move back; the chunk
/// iterators Thanos reads stores with (`pkg/query/iter.go`) never do.
mod reference {
    use super::Samples;
    use strata_tsdb::dedup::INITIAL_PENALTY;

    pub trait It {
        fn next(&mut self) -> bool;
        fn seek(&mut self, t: i64) -> bool;
        fn at_t(&self) -> i64;
        fn at(&self) -> f64;
        fn adjust(&mut self, last: f64);
    }

    pub struct List {
        samples: Samples,
        cur: usize,
        started: bool,
        backward: bool,
        counter: bool,
        offset: f64,
    }

    impl List {
        pub fn new(samples: Samples, backward: bool, counter: bool) -> Self {
            List { samples, cur: 0, started: false, backward, counter, offset: 0.0 }
        }
    }

    impl It for List {
        fn next(&mut self) -> bool {
            if self.started {
                self.cur += 1;
            }
            self.started = true;
            self.cur < self.samples.len()
        }

        fn seek(&mut self, t: i64) -> bool {
            let from = if self.backward || !self.started { 0 } else { self.cur };
            if !self.backward && self.started && self.samples.get(self.cur).is_some_and(|s| s.0 >= t) {
                return true;
            }
            self.started = true;
            self.cur = from + self.samples[from.min(self.samples.len())..].partition_point(|s| s.0 < t);
            self.cur < self.samples.len()
        }

        fn at_t(&self) -> i64 {
            self.samples[self.cur].0
        }

        fn at(&self) -> f64 {
            self.samples[self.cur].1 + self.offset
        }

        fn adjust(&mut self, last: f64) {
            if self.counter && last > self.at() {
                self.offset += last - self.at();
            }
        }
    }

    pub struct Pair {
        a: Box<dyn It>,
        b: Box<dyn It>,
        aval: bool,
        bval: bool,
        last_t: i64,
        last_a: bool,
        pen_a: i64,
        pen_b: i64,
        use_a: bool,
    }

    impl Pair {
        pub fn new(mut a: Box<dyn It>, mut b: Box<dyn It>) -> Self {
            let (aval, bval) = (a.next(), b.next());
            Pair { a, b, aval, bval, last_t: i64::MIN, last_a: true, pen_a: 0, pen_b: 0, use_a: true }
        }

        fn last(&self) -> &dyn It {
            if self.last_a {
                &*self.a
            } else {
                &*self.b
            }
        }
    }

    impl It for Pair {
        fn next(&mut self) -> bool {
            let last_use_a = self.use_a;
            let is_float = if self.use_a { self.aval } else { self.bval };
            let last_v = if is_float { self.last().at() } else { 0.0 };
            if self.aval {
                self.aval = self.a.seek(self.last_t + 1 + self.pen_a);
            }
            if self.bval {
                self.bval = self.b.seek(self.last_t + 1 + self.pen_b);
            }
            let ret = if !self.aval {
                self.use_a = false;
                if self.bval {
                    self.last_t = self.b.at_t();
                    self.last_a = false;
                    self.pen_b = 0;
                }
                self.bval
            } else if !self.bval {
                self.use_a = true;
                self.last_t = self.a.at_t();
                self.last_a = true;
                self.pen_a = 0;
                self.aval
            } else {
                let (ta, tb) = (self.a.at_t(), self.b.at_t());
                self.use_a = ta <= tb;
                let t = if self.use_a { ta } else { tb };
                let pen = if self.last_t != i64::MIN { 2 * (t - self.last_t) } else { INITIAL_PENALTY };
                if self.use_a {
                    (self.pen_a, self.pen_b) = (0, pen);
                } else {
                    (self.pen_a, self.pen_b) = (pen, 0);
                }
                self.last_t = t;
                self.last_a = self.use_a;
                true
            };
            if self.use_a != last_use_a && is_float {
                self.adjust(last_v);
            }
            ret
        }

        fn seek(&mut self, t: i64) -> bool {
            loop {
                let ts = self.at_t();
                if ts >= t {
                    return if self.use_a { self.a.seek(ts) } else { self.b.seek(ts) };
                }
                if !self.next() {
                    return false;
                }
            }
        }

        fn at_t(&self) -> i64 {
            if self.use_a {
                self.a.at_t()
            } else {
                self.b.at_t()
            }
        }

        fn at(&self) -> f64 {
            self.last().at()
        }

        fn adjust(&mut self, last: f64) {
            if self.aval {
                self.a.adjust(last);
            }
            if self.bval {
                self.b.adjust(last);
            }
        }
    }

    /// The merge of `replicas`, pairwise as Thanos chains them.
    pub fn merge(replicas: &[Samples], counter: bool, backward: bool) -> Samples {
        let list = |r: &Samples| -> Box<dyn It> { Box::new(List::new(r.clone(), backward, counter)) };
        let mut it = Pair::new(list(&replicas[0]), list(&replicas[1]));
        for r in &replicas[2..] {
            it = Pair::new(Box::new(it), list(r));
        }
        let mut out = Vec::new();
        while it.next() {
            out.push((it.at_t(), it.at()));
        }
        out
    }
}

/// Thanos's `TestDedupSeriesIterator`.
#[test]
fn penalty_as_thanos_iterator_tests() {
    let cases: [(Samples, Samples, Samples); 5] = [
        // Generally prefer the first series.
        (
            s(&[(10000, 10.0), (20000, 11.0), (30000, 12.0), (40000, 13.0)]),
            s(&[(10000, 20.0), (20000, 21.0), (30000, 22.0), (40000, 23.0)]),
            s(&[(10000, 10.0), (20000, 11.0), (30000, 12.0), (40000, 13.0)]),
        ),
        // Prefer b if it starts earlier.
        (
            s(&[(10100, 1.0), (20100, 1.0), (30100, 1.0), (40100, 1.0)]),
            s(&[(10000, 2.0), (20000, 2.0), (30000, 2.0), (40000, 2.0)]),
            s(&[(10000, 2.0), (20000, 2.0), (30000, 2.0), (40000, 2.0)]),
        ),
        // Don't switch series on a single delta sized gap.
        (
            s(&[(10000, 1.0), (20000, 1.0), (40000, 1.0)]),
            s(&[(10000, 2.0), (20000, 2.0), (30000, 2.0), (40000, 2.0)]),
            s(&[(10000, 1.0), (20000, 1.0), (40000, 1.0)]),
        ),
        (
            s(&[(10000, 1.0), (20000, 1.0), (40000, 1.0)]),
            s(&[(15000, 2.0), (25000, 2.0), (35000, 2.0), (45000, 2.0)]),
            s(&[(10000, 1.0), (20000, 1.0), (40000, 1.0)]),
        ),
        // Once the gap gets bigger than 2 deltas, switch and stay with the new series.
        (
            s(&[(10000, 1.0), (20000, 1.0), (30000, 1.0), (60000, 1.0), (70000, 1.0)]),
            s(&[(10100, 2.0), (20100, 2.0), (30100, 2.0), (40100, 2.0), (50100, 2.0), (60100, 2.0)]),
            s(&[(10000, 1.0), (20000, 1.0), (30000, 1.0), (50100, 2.0), (60100, 2.0)]),
        ),
    ];
    for (i, (a, b, want)) in cases.into_iter().enumerate() {
        let replicas = [a, b];
        assert_eq!(iterated(&replicas, false), want, "case {i}");
        assert_eq!(reference::merge(&replicas, false, true), want, "case {i}: the port");
    }
}

/// The groups of Thanos's `TestDedupSeriesSet` "Single dedup label" and "Multi dedup label":
/// four and two replicas of one series, merged pairwise.
#[test]
fn penalty_as_thanos_series_set_tests() {
    let early = s(&[(10000, 1.0), (20000, 2.0)]);
    let later = s(&[(60000, 3.0), (70000, 4.0)]);
    let last = s(&[(200000, 5.0), (210000, 6.0)]);
    let four = [early.clone(), later.clone(), last, early.clone()];
    let want = s(&[(10000, 1.0), (20000, 2.0), (60000, 3.0), (70000, 4.0), (200000, 5.0), (210000, 6.0)]);
    assert_eq!(iterated(&four, false), want);
    assert_eq!(iterated(&[early, later], false), want[..4]);
}

/// Thanos's regression tests for issue 2401: replica a (taken first) misses samples, b is
/// behind it. Thanos's expectations come from its test mock, whose seeks may move back (see
/// [`reference`]); the port reproduces them with such seeks. Reading chunks, seeks never move
/// back: after the switch to b the merge has sought a to 95004 before b runs out, so a's
/// sample at 90000 is behind it, as in Thanos reading stores.
#[test]
fn penalty_as_thanos_counter_regression_tests() {
    let a = s(&[
        (10000, 8.0),
        (20000, 9.0),
        (50001, 10.0),
        (60000, 11.0),
        (70000, 12.0),
        (80000, 13.0),
        (90000, 14.0),
        (100000, 15.0),
    ]);
    let b = s(&[(10001, 8.0), (45001, 8.5), (55001, 9.5), (65001, 10.5)]);
    let replicas = [a, b];
    for (counter, thanos, ours) in [
        (
            true,
            s(&[(10000, 8.0), (20000, 9.0), (45001, 9.0), (55001, 10.0), (65001, 11.0), (90000, 14.0), (100000, 15.0)]),
            s(&[(10000, 8.0), (20000, 9.0), (45001, 9.0), (55001, 10.0), (65001, 11.0), (100000, 15.0)]),
        ),
        (
            false,
            s(&[(10000, 8.0), (20000, 9.0), (45001, 8.5), (55001, 9.5), (65001, 10.5), (90000, 14.0), (100000, 15.0)]),
            s(&[(10000, 8.0), (20000, 9.0), (45001, 8.5), (55001, 9.5), (65001, 10.5), (100000, 15.0)]),
        ),
    ] {
        assert_eq!(reference::merge(&replicas, counter, true), thanos, "counter {counter}: the port, as Thanos's test");
        assert_eq!(reference::merge(&replicas, counter, false), ours, "counter {counter}: the port, forward seeks");
        assert_eq!(iterated(&replicas, counter), ours, "counter {counter}");
    }
}

/// Thanos's "Regression test on real data against 2401": a counter switched to a replica that
/// is behind; from the switch on, its values are raised by the difference (7).
#[test]
fn penalty_as_thanos_real_data_test() {
    let mut sections: Vec<Samples> = Vec::new();
    for line in include_str!("issue2401.txt").lines().filter(|l| !l.starts_with('#')) {
        if line.starts_with('[') {
            sections.push(Vec::new());
            continue;
        }
        let (t, v) = line.split_once(' ').unwrap();
        sections.last_mut().unwrap().push((t.parse().unwrap(), v.parse().unwrap()));
    }
    let [a, b, want] = <[Samples; 3]>::try_from(sections).unwrap();
    let replicas = [a, b];
    assert_eq!(reference::merge(&replicas, true, true), want);
    assert_eq!(iterated(&replicas, true), want);
    for per_chunk in [1, 120, 1000] {
        assert_eq!(iterated_in(&replicas, true, per_chunk), want);
    }
}

/// Prometheus's `TestChainSampleIterator` (float cases).
#[test]
fn chain_as_prometheus_tests() {
    let f = |ts: &[i64]| -> Samples { ts.iter().map(|&t| (t, t as f64)).collect() };
    let cases: [(Vec<Samples>, Samples); 4] = [
        (vec![f(&[0, 1])], f(&[0, 1])),
        (vec![f(&[0, 1]), f(&[2, 3])], f(&[0, 1, 2, 3])),
        (vec![f(&[0, 3]), f(&[1, 4]), f(&[2, 5])], f(&[0, 1, 2, 3, 4, 5])),
        (vec![f(&[0, 1]), f(&[0, 2]), f(&[2, 3]), f(&[]), f(&[]), f(&[])], f(&[0, 1, 2, 3])),
    ];
    for (replicas, want) in cases {
        let replicas: Vec<Samples> = replicas.into_iter().filter(|r| !r.is_empty()).collect();
        assert_eq!(merged(&replicas, DedupFunc::Chain, false), want, "{replicas:?}");
    }
    // On equal timestamps the first replica's sample.
    let a = s(&[(0, 1.0), (10, 1.0), (20, 1.0)]);
    let b = s(&[(5, 2.0), (10, 2.0), (20, 2.0), (30, 2.0)]);
    assert_eq!(merged(&[a, b], DedupFunc::Chain, true), s(&[(0, 1.0), (5, 2.0), (10, 1.0), (20, 1.0), (30, 2.0)]));
}

#[test]
fn replicas_are_read_within_the_range() {
    let a: Samples = (0..100).map(|i| (i * 10, i as f64)).collect();
    let b: Samples = (0..100).map(|i| (i * 10 + 5, 100.0 + i as f64)).collect();
    for func in [DedupFunc::Penalty, DedupFunc::Chain] {
        let got = merged_in(&[a.clone(), b.clone()], 300, 600, func, false, 7);
        assert!(got.iter().all(|&(t, _)| (300..=600).contains(&t)), "{func:?}: {got:?}");
        assert_eq!(got.first().map(|p| p.0), Some(300), "{func:?}");
    }
}

/// While run a has samples, b's chunks past its first are not decoded: a corrupt one there
/// goes unnoticed by the penalty iterator, which the chain merge (reading everything) and a
/// switch to b do notice.
#[test]
fn penalty_leaves_the_other_run_unread() {
    let a: Samples = (0..60).map(|i| (i * 15_000, i as f64)).collect();
    // b's samples a millisecond later, so that no chunk of b equals one of a.
    let b: Samples = a.iter().map(|&(t, v)| (t + 1, v)).collect();
    let mut b = series(&b, 20);
    let corrupt = ChunkData { data: vec![0, 20, 0xff].into(), ..b.chunks[1].clone() };
    b.chunks[1] = corrupt;
    let replicas = [series(&a, 20), b];
    let iterate = |replicas: &[SeriesChunks]| {
        let mut out = Vec::new();
        strata_tsdb::dedup::penalty_merge(replicas, i64::MIN, i64::MAX, false, |t, v| out.push((t, v))).map(|()| out)
    };
    let chain = |replicas: &[SeriesChunks]| {
        let merge = Merge { func: DedupFunc::Chain, counter: false };
        for_each_sample(replicas, i64::MIN, i64::MAX, merge, |_, _| ())
    };
    assert_eq!(iterate(&replicas).unwrap(), a);
    assert!(chain(&replicas).is_err());
    // A gap in a over b's corrupt chunk makes the merge read it.
    let gappy: Samples = a.iter().copied().filter(|&(t, _)| !(20 * 15_000..40 * 15_000).contains(&t)).collect();
    let replicas = [series(&gappy, 20), replicas[1].clone()];
    assert!(iterate(&replicas).is_err());
}

/// Thanos's `TestOverlapSplit` ("3_tworeplicas", "5_minimaloverlap", "6_fourreplica"): each
/// chunk joins the first run whose last chunk ends before it starts. Runs as (min, max) times.
#[test]
fn overlap_split_as_thanos() {
    let chunk = |(min_time, max_time): (i64, i64)| ChunkData {
        min_time,
        max_time,
        encoding: Encoding::Xor,
        // Distinct bytes: no two chunks are identical.
        data: format!("{min_time}-{max_time}").into_bytes().into(),
    };
    // The pool is sorted first: the replicas may come in any order.
    let split = |replicas: &[&[(i64, i64)]]| -> Vec<Vec<(i64, i64)>> {
        let replicas: Vec<SeriesChunks> = replicas
            .iter()
            .rev()
            .map(|r| SeriesChunks {
                labels: Labels::from_pairs(&[("a", "1")]),
                chunks: r.iter().copied().map(chunk).collect(),
            })
            .collect();
        overlap_split(&replicas).iter().map(|r| r.chunks.iter().map(|c| (c.min_time, c.max_time)).collect()).collect()
    };
    assert_eq!(
        split(&[&[(0, 20), (21, 50), (100, 160)], &[(0, 30), (31, 60)]]),
        [vec![(0, 20), (21, 50), (100, 160)], vec![(0, 30), (31, 60)]]
    );
    assert_eq!(split(&[&[(50, 55)], &[(55, 100)]]), [vec![(50, 55)], vec![(55, 100)]]);
    assert_eq!(
        split(&[&[(0, 20), (21, 50), (100, 160)], &[(0, 30), (31, 60)], &[(1, 15), (16, 200)], &[(2, 36)]]),
        [vec![(0, 20), (21, 50), (100, 160)], vec![(0, 30), (31, 60)], vec![(1, 15), (16, 200)], vec![(2, 36)]]
    );
    assert!(split(&[]).is_empty());
}

/// Equal times sort the chunk with the greater bytes first (`AggrChunk.Compare`); identical
/// chunks are kept once, so copies of one replica are one run, read as it is.
#[test]
fn overlap_split_orders_by_bytes_and_drops_identical_chunks() {
    let a = s(&[(0, 1.0), (10, 1.0), (20, 1.0)]);
    let b = s(&[(0, 2.0), (10, 2.0), (20, 2.0)]);
    let greater = if series(&a, 3).chunks[0].data > series(&b, 3).chunks[0].data { &a } else { &b };
    assert_eq!(&runs(&[a.clone(), b.clone()], 3)[0], greater);
    assert_eq!(&runs(&[b.clone(), a.clone()], 3)[0], greater);
    assert_eq!(runs(&[a.clone(), a.clone(), a.clone()], 2), vec![a.clone()]);
    for func in [DedupFunc::Penalty, DedupFunc::Chain] {
        assert_eq!(merged(&[a.clone(), a.clone()], func, false), a, "{func:?}");
    }
}

/// Two receivers fed the same remote write, a down for a while: their chunks before the gap are
/// identical, after it they differ. The run that continues b's chunks over a's gap is the one
/// the merge stays on, so the gap is filled at once; the iterator over the replicas themselves
/// would wait out the penalty on b and skip its first samples.
#[test]
fn a_gap_is_filled_from_the_run_that_spans_it() {
    // Scrapes every 10 s; a misses 40 s to 60 s.
    let at = |ts: &[i64], v: f64| -> Samples { ts.iter().map(|&t| (t * 10_000, v)).collect() };
    let a = [at(&[0, 1, 2, 3], 1.0), at(&[7, 8, 9], 1.5)].concat();
    let b = [at(&[0, 1, 2, 3], 1.0), at(&[4, 5, 6, 7, 8, 9], 2.0)].concat();
    // Chunks of four samples: the first is the same in both.
    assert_eq!(runs(&[a.clone(), b.clone()], 4), [b.clone(), a[4..].to_vec()]);
    assert_eq!(merged_in(&[a.clone(), b.clone()], i64::MIN, i64::MAX, DedupFunc::Penalty, false, 4), b);
    let mut skipped = b.clone();
    skipped.retain(|&(t, _)| t != 40_000 && t != 50_000);
    assert_eq!(iterated_in(&[a, b], false, 4), skipped);
}

#[test]
fn counter_adjustment_keeps_staleness_markers() {
    let stale = f64::from_bits(crate::engine::types::STALE_NAN_BITS);
    let a = s(&[(0, 10.0), (15_000, 11.0)]);
    let b = s(&[(1, 5.0), (60_000, 6.0), (75_000, stale), (90_000, 7.0)]);
    let got = iterated(&[a, b], true);
    assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 15_000, 60_000, 75_000, 90_000]);
    // Raised by 5 from the switch on, but a staleness marker stays one.
    assert_eq!(got[2].1, 11.0);
    assert_eq!(got[3].1.to_bits(), crate::engine::types::STALE_NAN_BITS);
    assert_eq!(got[4].1, 12.0);
}

/// Replicas of a scrape target: samples every `interval` ms give or take `jitter`, with gaps.
fn replica() -> impl Strategy<Value = Samples> {
    (1_000i64..20_000, 0i64..3_000, prop::collection::vec((0u8..20, 0u8..4), 1..80), any::<bool>()).prop_map(
        |(interval, jitter, steps, resets)| {
            let mut t = 0;
            let mut v = 0.0;
            let mut out = Vec::new();
            for (i, (skip, dv)) in steps.into_iter().enumerate() {
                // Mostly one interval on, sometimes a gap of several.
                let gap = if skip >= 17 { i64::from(skip - 15) * 3 } else { 1 };
                t += interval * gap + (i as i64 * 7919) % (jitter + 1);
                v = if resets && dv == 0 && i % 9 == 0 { 0.0 } else { v + f64::from(dv) };
                out.push((t, v));
            }
            out
        },
    )
}

/// Copies of one replica, each with a gap of its own (receivers fed the same remote write).
fn copies() -> impl Strategy<Value = Vec<Samples>> {
    (replica(), prop::collection::vec((0usize..80, 0usize..30), 2..4))
        .prop_map(|(base, gaps)| {
            gaps.iter()
                .map(|&(at, len)| {
                    base.iter().enumerate().filter(|(i, _)| !(at..at + len).contains(i)).map(|(_, &p)| p).collect()
                })
                .filter(|r: &Samples| !r.is_empty())
                .collect::<Vec<Samples>>()
        })
        .prop_filter("two replicas with samples", |r| r.len() >= 2)
}

/// The port over the runs the overlap split makes of `replicas` (one run as it is).
fn port_over_runs(replicas: &[Samples], counter: bool, per_chunk: usize) -> Samples {
    match runs(replicas, per_chunk).as_slice() {
        [] => Vec::new(),
        [one] => one.clone(),
        runs => reference::merge(runs, counter, false),
    }
}

proptest! {
    /// The lazy iterator takes exactly the samples the direct port takes (with seeks that never
    /// move back), for two to four replicas, counters or not.
    #[test]
    fn iterator_matches_the_port(replicas in prop::collection::vec(replica(), 2..5), counter in any::<bool>(), per_chunk in 1usize..10) {
        let want = reference::merge(&replicas, counter, false);
        prop_assert_eq!(iterated_in(&replicas, counter, per_chunk), want);
    }

    #[test]
    fn iterator_matches_the_port_on_copies(replicas in copies(), counter in any::<bool>(), per_chunk in 1usize..10) {
        let want = reference::merge(&replicas, counter, false);
        prop_assert_eq!(iterated_in(&replicas, counter, per_chunk), want);
    }

    /// The penalty merge is the port over the runs of the overlap split, whose runs never
    /// overlap within themselves.
    #[test]
    fn penalty_is_the_port_over_the_runs(replicas in copies(), counter in any::<bool>(), per_chunk in 1usize..10) {
        for run in runs(&replicas, per_chunk) {
            prop_assert!(run.windows(2).all(|w| w[0].0 < w[1].0), "{:?}", run);
        }
        let want = port_over_runs(&replicas, counter, per_chunk);
        prop_assert_eq!(merged_in(&replicas, i64::MIN, i64::MAX, DedupFunc::Penalty, counter, per_chunk), want);
    }

    #[test]
    fn penalty_is_the_port_over_the_runs_of_any_replicas(replicas in prop::collection::vec(replica(), 2..5), counter in any::<bool>(), per_chunk in 1usize..10) {
        let want = port_over_runs(&replicas, counter, per_chunk);
        prop_assert_eq!(merged_in(&replicas, i64::MIN, i64::MAX, DedupFunc::Penalty, counter, per_chunk), want);
    }
}
