//! Writing and replaying the WAL: every record type, multi-page records, rotation, reopening,
//! concurrent writers, checkpoints, and a property test over random record sequences.

mod wal_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use strata_tsdb::wal::{self, record, Record, RefSample, RefSeries, DEFAULT_SEGMENT_SIZE, PAGE_SIZE};
use wal_common::*;

fn all_types() -> Vec<Vec<u8>> {
    vec![
        series_rec(1..=3),
        samples_rec(&[(1, 1000, 1.0), (2, 1000, f64::from_bits(0x7ff0_0000_0000_0002)), (3, 999, -0.0)]),
        tombstones_rec(&[(2, 0, 500), (3, i64::MIN, i64::MAX)]),
        metadata_rec(&[(1, 1, "seconds", "How long it took."), (2, 2, "", "")]),
        samples_rec(&[]),
    ]
}

#[test]
fn every_record_type_round_trips_with_and_without_compression() {
    for compress in [true, false] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let w = open(&dir, DEFAULT_SEGMENT_SIZE, compress);
        let recs = all_types();
        log_each(&w, &recs);
        // A batch in one call, plus the same records repeated so snappy has something to find.
        let batch: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        assert!(w.log(&[&recs[0], &[]]).is_err(), "an empty record is refused");
        w.log(&batch).expect("log batch");
        w.close().expect("close");
        assert!(w.log(&[&recs[0]]).is_err(), "log after close must fail");

        let (got, stats) = replay_bytes(&dir);
        let want: Vec<Vec<u8>> = recs.iter().chain(recs.iter()).cloned().collect();
        assert_eq!(got, want, "compress={compress}");
        assert_eq!(stats.records, 10);
        assert_eq!(stats.series, 6);
        assert_eq!(stats.samples, 6);
        assert_eq!(stats.corruptions_repaired, 0);
        assert_eq!(stats.checkpoint, None);
    }
}

#[test]
fn compression_is_used_only_when_it_saves_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let w = open(&dir, DEFAULT_SEGMENT_SIZE, true);
    let compressible = series_rec(1..=200);
    // Random refs, times and values: varint deltas and float bits with nothing to share.
    let noisy = noise(24 * 40, 7);
    let random: Vec<(u64, i64, f64)> = noisy
        .chunks(24)
        .map(|c| {
            let word = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().expect("8 bytes"));
            (word(0), word(8) as i64, f64::from_bits(word(16)))
        })
        .collect();
    let incompressible = samples_rec(&random);
    w.log(&[&compressible, &incompressible]).expect("log");
    w.close().expect("close");
    let bytes = std::fs::read(segments(&dir)[0].1.clone()).expect("read");
    let frags = fragments(&bytes);
    assert!(frags[0].compressed && frags[0].len < compressible.len() / 2, "{frags:?}");
    let last = frags.last().expect("fragments");
    assert!(!last.compressed && last.len == incompressible.len(), "{frags:?}");
    assert!(w.stats().record_bytes_saved_total.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(replay_bytes(&dir).0, vec![compressible, incompressible]);
}

#[test]
fn records_larger_than_pages_are_fragmented() {
    for compress in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let w = open(&dir, DEFAULT_SEGMENT_SIZE, compress);
        let recs = vec![
            series_rec(1..=2),
            big_series_rec(10, 40_000, 1), // first + last
            samples_rec(&[(1, 5, 1.0)]),
            big_series_rec(100, 5 * PAGE_SIZE, 2), // first + middles + last
            big_series_rec(1000, PAGE_SIZE - 20, 3),
            samples_rec(&[(2, 6, 2.0)]),
        ];
        log_each(&w, &recs);
        w.close().expect("close");

        let bytes = std::fs::read(&segments(&dir)[0].1).expect("read");
        let frags = fragments(&bytes);
        let kinds: Vec<u8> = frags.iter().map(|f| f.kind).collect();
        assert!(kinds.contains(&2) && kinds.contains(&4), "{kinds:?}");
        assert!(kinds.iter().filter(|&&k| k == 3).count() >= 3, "{kinds:?}");
        let (got, _) = replay_bytes(&dir);
        assert_eq!(got, recs, "compress={compress}");
    }
}

#[test]
fn page_tail_too_small_for_a_header_is_padded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let w = open(&dir, DEFAULT_SEGMENT_SIZE, false);
    // One fragment leaving exactly 3 bytes in the page: those must become padding.
    let mut rec = vec![record::SAMPLES];
    rec.resize(PAGE_SIZE - 7 - 3, 0x55);
    let small = samples_rec(&[(1, 2, 3.0)]);
    w.log(&[&rec, &small]).expect("log");
    let path = segments(&dir)[0].1.clone();
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(&bytes[PAGE_SIZE - 3..PAGE_SIZE], &[0, 0, 0]);
    assert_eq!(bytes[PAGE_SIZE], 1, "next record starts a page with a full fragment");
    assert_eq!(bytes.len(), PAGE_SIZE + 7 + small.len(), "log() writes up to the end of the last record");
    w.close().expect("close");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 2 * PAGE_SIZE as u64, "close() pads the last page");
}

#[test]
fn fragment_header_is_type_length_crc() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let w = open(&dir, DEFAULT_SEGMENT_SIZE, false);
    let rec = samples_rec(&[(1, 2, 3.0)]);
    w.log(&[&rec]).expect("log");
    let bytes = std::fs::read(&segments(&dir)[0].1).expect("read");
    let mut want = vec![1u8];
    want.extend_from_slice(&(rec.len() as u16).to_be_bytes());
    want.extend_from_slice(&crc32c::crc32c(&rec).to_be_bytes());
    want.extend_from_slice(&rec);
    assert_eq!(bytes, want);
    // CRC-32C check value, as the format document gives it.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn segments_rotate_and_records_never_cross_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let seg_size = 2 * PAGE_SIZE;
    let w = open(&dir, seg_size, false);
    let mut recs = Vec::new();
    for i in 0..40u64 {
        recs.push(series_rec(i * 10..i * 10 + 10));
        recs.push(big_series_rec(5000 + i, 3000 + (i as usize * 777) % 20_000, i));
    }
    // Bigger than a whole segment: it gets a segment of its own, oversized.
    recs.push(big_series_rec(90_000, 3 * PAGE_SIZE, 99));
    recs.push(samples_rec(&[(1, 1, 1.0)]));
    log_each(&w, &recs);
    let (first, last) = w.segment_range();
    w.close().expect("close");

    let segs = segments(&dir);
    assert_eq!(segs.first().map(|s| s.0), Some(first));
    assert_eq!(segs.last().map(|s| s.0), Some(last));
    assert!(segs.len() > 5, "{} segments", segs.len());
    let mut oversized = 0;
    for (i, (n, path)) in segs.iter().enumerate() {
        assert_eq!(*n as usize, i, "consecutive numbering");
        let bytes = std::fs::read(path).expect("read");
        let frags = fragments(&bytes);
        assert!(matches!(frags.first().map(|f| f.kind), Some(1 | 2)), "segment {n} starts mid-record");
        assert!(matches!(frags.last().map(|f| f.kind), Some(1 | 4)), "segment {n} ends mid-record");
        if i + 1 < segs.len() {
            assert_eq!(bytes.len() % PAGE_SIZE, 0, "completed segment {n} is page aligned");
            if bytes.len() > seg_size {
                oversized += 1;
                assert_eq!(frags.iter().filter(|f| f.kind == 1 || f.kind == 2).count(), 1);
            }
        }
    }
    assert_eq!(oversized, 1);
    let (got, stats) = replay_bytes(&dir);
    assert_eq!(got, recs);
    assert_eq!(stats.segments as usize, segs.len());
}

#[test]
fn reopening_appends_in_a_new_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let w = open(&dir, DEFAULT_SEGMENT_SIZE, true);
    let a = vec![series_rec(1..=2), samples_rec(&[(1, 10, 1.0), (2, 10, 2.0)])];
    log_each(&w, &a);
    assert_eq!(w.segment_range(), (0, 0));
    w.close().expect("close");

    let w = open(&dir, DEFAULT_SEGMENT_SIZE, true);
    assert_eq!(w.segment_range(), (0, 1));
    let b = vec![samples_rec(&[(1, 20, 3.0)])];
    log_each(&w, &b);
    // Dropped without close, as after a kill: log() already handed everything to the OS.
    drop(w);

    let w = open(&dir, DEFAULT_SEGMENT_SIZE, true);
    assert_eq!(w.segment_range(), (0, 2));
    assert_eq!(w.next_segment().expect("next segment"), 3);
    let c = vec![samples_rec(&[(2, 30, 4.0)])];
    log_each(&w, &c);
    w.close().expect("close");

    let (got, stats) = replay_bytes(&dir);
    let want: Vec<Vec<u8>> = a.into_iter().chain(b).chain(c).collect();
    assert_eq!(got, want);
    assert_eq!(stats.segments, 4);
    let bytes = std::fs::read(&segments(&dir)[1].1).expect("read");
    assert!(bytes.len() < PAGE_SIZE, "a segment left without close() or rotation is not padded");
    assert_eq!(std::fs::metadata(&segments(&dir)[2].1).expect("stat").len() % PAGE_SIZE as u64, 0);
}

#[test]
fn concurrent_writers_keep_every_record_whole_and_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let w = Arc::new(open(&dir, 4 * PAGE_SIZE, true));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let w = Arc::clone(&w);
            std::thread::spawn(move || {
                for i in 0..150i64 {
                    let n = 1 + (i as usize * 7 + t as usize) % 300;
                    let samples: Vec<(u64, i64, f64)> = (0..n).map(|k| (t, i, k as f64)).collect();
                    w.log(&[&samples_rec(&samples)]).expect("log");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    w.close().expect("close");
    let mut next_i = [0i64; 4];
    wal::replay(&dir, |r| {
        let Record::Samples(s) = r else { panic!("unexpected record") };
        let (t, i) = (s[0].series_ref as usize, s[0].t);
        assert_eq!(i, next_i[t], "thread {t} order");
        assert_eq!(s.len(), 1 + (i as usize * 7 + t) % 300);
        assert!(s.iter().enumerate().all(|(k, x)| x.series_ref == t as u64 && x.t == i && x.v == k as f64));
        next_i[t] += 1;
        Ok(())
    })
    .expect("replay");
    assert_eq!(next_i, [150; 4]);
}

/// What the head would hold after replay: series by ref, samples by (ref, t).
#[derive(Default, Debug, PartialEq)]
struct Model {
    series: BTreeMap<u64, String>,
    samples: BTreeMap<(u64, i64), u64>,
    tombstones: BTreeSet<(u64, i64, i64)>,
    metadata: BTreeMap<u64, (u8, String, String)>,
}

fn model_of(dir: &std::path::Path) -> (Model, wal::ReplayStats) {
    let mut m = Model::default();
    let stats = wal::replay(dir, |r| {
        match r {
            Record::Series(s) => s.into_iter().for_each(|s| {
                m.series.insert(s.series_ref, s.labels.to_string());
            }),
            Record::Samples(s) => s.into_iter().for_each(|s| {
                m.samples.insert((s.series_ref, s.t), s.v.to_bits());
            }),
            Record::Tombstones(t) => t.into_iter().for_each(|t| {
                m.tombstones.insert((t.series_ref, t.mint, t.maxt));
            }),
            Record::Metadata(md) => md.into_iter().for_each(|x| {
                m.metadata.insert(x.series_ref, (x.metric_type, x.unit, x.help));
            }),
            Record::Unsupported(t) => panic!("unsupported {t}"),
        }
        Ok(())
    })
    .expect("replay");
    (m, stats)
}

#[test]
fn checkpoint_truncate_replay_keeps_what_the_head_needs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let w = open(&dir, PAGE_SIZE, true);
    // 60 series; samples at t = 0..600 spread over several segments; metadata updated once.
    log_each(&w, &[series_rec(1..=60), metadata_rec(&[(1, 1, "old", "old help"), (2, 2, "b", "b")])]);
    for t in 0..600i64 {
        let s: Vec<(u64, i64, f64)> = (1..=60).map(|r| (r, t, (r * 1000 + t as u64) as f64)).collect();
        w.log(&[&samples_rec(&s)]).expect("log");
        if t == 50 {
            log_each(
                &w,
                &[
                    tombstones_rec(&[(4, 0, 10), (6, 190, 220), (7, 230, 240)]),
                    metadata_rec(&[(1, 1, "new", "new help")]),
                ],
            );
        }
    }
    // An exemplar record: skipped by replay, not carried into the checkpoint.
    w.log(&[&[record::EXEMPLARS, 0, 1, 2]]).expect("log");
    let before = model_of(&dir).0;

    let last = w.next_segment().expect("next segment");
    let (first, _) = w.segment_range();
    let to = first + (last - first) * 2 / 3;
    let keep = |r: u64| r.is_multiple_of(2) || r == 1;
    let mint = 200;
    let cp = w.checkpoint(first, to, keep, mint).expect("checkpoint");
    assert_eq!(cp.checkpoint, to);
    assert_eq!(cp.series_kept, 31);
    assert_eq!(cp.series_dropped, 29);
    assert!(cp.samples_dropped > 0 && cp.samples_kept > 0);
    assert_eq!(cp.tombstones_kept, 1, "only (6, 190, 220) belongs to a kept series and reaches mint");
    assert_eq!(cp.metadata_kept, 2);
    w.truncate(to + 1).expect("truncate");
    assert_eq!(w.segment_range(), (to + 1, last));
    assert!(dir.join(format!("checkpoint.{to:08}")).is_dir());

    let (after, stats) = model_of(&dir);
    assert_eq!(stats.checkpoint, Some(to));
    assert_eq!(stats.unsupported_records, 1, "the exemplar record lies after the checkpoint");
    // Series: the kept ones. Samples: everything from the kept segments, plus checkpointed t >= mint.
    let want_series: BTreeMap<u64, String> =
        before.series.iter().filter(|(r, _)| keep(**r)).map(|(r, l)| (*r, l.clone())).collect();
    assert_eq!(after.series, want_series);
    assert!(after.samples.keys().all(|&(_, t)| t >= mint), "old samples were dropped");
    let want_samples: BTreeMap<(u64, i64), u64> =
        before.samples.iter().filter(|((_, t), _)| *t >= mint).map(|(k, v)| (*k, *v)).collect();
    let got_recent: BTreeMap<(u64, i64), u64> =
        after.samples.iter().filter(|((_, t), _)| *t >= mint).map(|(k, v)| (*k, *v)).collect();
    assert_eq!(got_recent, want_samples);
    assert_eq!(after.tombstones, [(6, 190, 220)].into_iter().collect());
    assert_eq!(after.metadata.get(&1), Some(&(1, "new".to_string(), "new help".to_string())));

    // A second checkpoint folds in the first and deletes it.
    let last2 = w.next_segment().expect("next segment");
    let cp2 = w.checkpoint(to + 1, last2 - 1, keep, mint).expect("second checkpoint");
    assert_eq!(cp2.from, to + 1);
    assert_eq!(cp2.checkpoints_deleted, 1);
    assert_eq!(cp2.unsupported_dropped, 1);
    w.truncate(last2).expect("truncate");
    assert!(!dir.join(format!("checkpoint.{to:08}")).exists());
    let (after2, stats2) = model_of(&dir);
    assert_eq!(stats2.checkpoint, Some(last2 - 1));
    assert_eq!(after2, after);
    w.close().expect("close");

    // Reopening starts after the checkpoint and keeps the numbering consecutive.
    let w = open(&dir, PAGE_SIZE, true);
    assert_eq!(w.segment_range(), (last2, last2 + 1));
    w.close().expect("close");
    assert_eq!(model_of(&dir).0, after);
}

#[test]
fn checkpoint_refuses_a_gap_and_leaves_no_tmp_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let w = open(&dir, PAGE_SIZE, false);
    for i in 0..4 {
        log_each(&w, &[series_rec([i])]);
        w.next_segment().expect("next");
    }
    assert!(w.checkpoint(0, 9, |_| true, 0).is_err(), "segment 9 does not exist");
    w.checkpoint(0, 1, |_| true, 0).expect("checkpoint");
    assert!(w.checkpoint(3, 3, |_| true, 0).is_err(), "segment 2 would be lost");
    let names: Vec<String> =
        std::fs::read_dir(&dir).expect("ls").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let st = w.stats();
    assert_eq!(st.checkpoint_creations_total.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(st.checkpoint_creations_failed_total.load(std::sync::atomic::Ordering::Relaxed), 2);
}

// ---- property test -------------------------------------------------------------------------

fn arb_labels() -> impl Strategy<Value = strata_tsdb::Labels> {
    prop::collection::vec(("[a-z_][a-z0-9_]{0,6}", "[ -~]{0,12}|\\PC{0,4}"), 1..6)
        .prop_map(|pairs| strata_tsdb::Labels::from_pairs(&pairs))
}

fn arb_record() -> impl Strategy<Value = Vec<u8>> {
    let series = prop::collection::vec((any::<u64>(), arb_labels()), 0..20).prop_map(|v| {
        let s: Vec<RefSeries> = v.into_iter().map(|(series_ref, labels)| RefSeries { series_ref, labels }).collect();
        let mut b = Vec::new();
        record::encode_series(&s, &mut b);
        b
    });
    let samples = prop::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..400).prop_map(|v| {
        let s: Vec<RefSample> =
            v.into_iter().map(|(r, t, bits)| RefSample { series_ref: r, t, v: f64::from_bits(bits) }).collect();
        let mut b = Vec::new();
        record::encode_samples(&s, &mut b);
        b
    });
    // Regular samples like a scrape produces: compress well.
    let regular = (1u64..1000, 0i64..1 << 40, 1usize..3000).prop_map(|(r, t, n)| {
        let s: Vec<(u64, i64, f64)> = (0..n).map(|i| (r + i as u64, t, 1.0)).collect();
        samples_rec(&s)
    });
    let tombstones =
        prop::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 0..20).prop_map(|v| tombstones_rec(&v));
    let metadata = prop::collection::vec((any::<u64>(), 0u8..8, "\\PC{0,10}", "\\PC{0,40}"), 0..10).prop_map(|v| {
        let v: Vec<(u64, u8, &str, &str)> = v.iter().map(|(r, t, u, h)| (*r, *t, u.as_str(), h.as_str())).collect();
        metadata_rec(&v)
    });
    let big = (0usize..150_000, any::<u64>()).prop_map(|(n, seed)| big_series_rec(seed % 1000, n, seed));
    prop_oneof![4 => series, 4 => samples, 2 => regular, 2 => tombstones, 2 => metadata, 1 => big]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn random_record_sequences_round_trip(
        recs in prop::collection::vec(arb_record(), 0..40),
        batches in prop::collection::vec(1usize..5, 40),
        pages in 1usize..5,
        compress in any::<bool>(),
        reopen_at in 0usize..40,
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let mut w = open(&dir, pages * PAGE_SIZE, compress);
        let mut i = 0;
        let mut b = 0;
        let mut reopened = false;
        while i < recs.len() {
            if !reopened && reopen_at > 0 && i >= reopen_at {
                w.close().expect("close");
                w = open(&dir, pages * PAGE_SIZE, compress);
                reopened = true;
            }
            let n = batches[b % batches.len()].min(recs.len() - i);
            let batch: Vec<&[u8]> = recs[i..i + n].iter().map(|r| r.as_slice()).collect();
            w.log(&batch).expect("log");
            i += n;
            b += 1;
        }
        w.close().expect("close");
        let (got, stats) = replay_bytes(&dir);
        prop_assert_eq!(stats.corruptions_repaired, 0);
        prop_assert_eq!(got, recs);
    }
}
