//! Damaged WALs: torn tails at every byte, flipped bytes, garbage, damage before the last
//! segment, and random junk. Replay must keep exactly the records before the damage, cut the
//! rest, and leave a WAL that can be reopened, appended to and replayed again.

mod wal_common;

use std::path::{Path, PathBuf};

use strata_tsdb::wal::{self, Wal, WalOptions, DEFAULT_SEGMENT_SIZE, PAGE_SIZE};
use strata_tsdb::Error;
use wal_common::*;

/// A WAL with one completed segment and a last segment holding `tail`, as bytes to copy around.
struct Fixture {
    seg0: Vec<u8>,
    head: Vec<Vec<u8>>,
    seg1: Vec<u8>,
    tail: Vec<Vec<u8>>,
    /// End offsets of the records of `seg1`.
    ends: Vec<usize>,
}

fn fixture(tail: Vec<Vec<u8>>, compress: bool) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let w = open(&dir, DEFAULT_SEGMENT_SIZE, compress);
    let head = vec![series_rec(1..=5), samples_rec(&[(1, 100, 1.0), (5, 100, 5.0)])];
    log_each(&w, &head);
    w.next_segment().expect("next segment");
    log_each(&w, &tail);
    w.close().expect("close");
    let segs = segments(&dir);
    assert_eq!(segs.len(), 2);
    let seg0 = std::fs::read(&segs[0].1).expect("read");
    let seg1 = std::fs::read(&segs[1].1).expect("read");
    let ends = record_ends(&seg1);
    assert_eq!(ends.len(), tail.len());
    Fixture { seg0, head, seg1, tail, ends }
}

fn small_tail() -> Vec<Vec<u8>> {
    vec![
        series_rec(10..=12),
        samples_rec(&[(10, 200, 1.5), (11, 200, f64::NAN), (12, 201, -3.0)]),
        tombstones_rec(&[(11, 0, 150)]),
        metadata_rec(&[(10, 1, "bytes", "Bytes sent.")]),
        samples_rec(&[(10, 300, 2.5)]),
    ]
}

/// Writes the fixture with `seg1` replaced by `damaged` into a fresh directory.
fn materialise(fx: &Fixture, damaged: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("00000000"), &fx.seg0).expect("write");
    std::fs::write(dir.join("00000001"), damaged).expect("write");
    (tmp, dir)
}

fn file_len(p: &Path) -> usize {
    std::fs::metadata(p).expect("stat").len() as usize
}

/// Replays a damaged copy and checks it yields `head` plus the first `keep` tail records, that a
/// repair (if one was needed) cut the file right after record `keep`, and that the result can be
/// reopened, appended to and replayed cleanly (that last part, which fsyncs, only if `reopen`).
fn check(fx: &Fixture, damaged: &[u8], keep: usize, must_repair: bool, reopen: bool, what: &str) {
    let (_tmp, dir) = materialise(fx, damaged);
    let (got, stats) = replay_bytes(&dir);
    let want: Vec<Vec<u8>> = fx.head.iter().chain(&fx.tail[..keep]).cloned().collect();
    assert_eq!(got, want, "{what}: records");
    let good = if keep == 0 { 0 } else { fx.ends[keep - 1] };
    let len = file_len(&dir.join("00000001"));
    if stats.corruptions_repaired == 1 {
        assert_eq!(len, good, "{what}: truncated after the last good record");
        assert_eq!(stats.bytes_dropped as usize, damaged.len() - good, "{what}: bytes dropped");
    } else {
        assert!(!must_repair, "{what}: damage not detected");
        assert_eq!(stats.corruptions_repaired, 0, "{what}");
        assert_eq!(len, damaged.len(), "{what}: an intact file is not touched");
        assert!(len == good || len.is_multiple_of(PAGE_SIZE), "{what}: clean end at {len} is not a record end");
    }
    assert_eq!(file_len(&dir.join("00000000")), fx.seg0.len(), "{what}: earlier segment untouched");
    if !reopen {
        return;
    }

    let w = open(&dir, DEFAULT_SEGMENT_SIZE, true);
    let extra = samples_rec(&[(1, 999, 9.0)]);
    w.log(&[&extra]).expect("log after repair");
    w.close().expect("close");
    assert_eq!(w.stats().corruptions_total.load(std::sync::atomic::Ordering::Relaxed), 0, "{what}: open found damage");
    let (got2, stats2) = replay_bytes(&dir);
    let want2: Vec<Vec<u8>> = want.into_iter().chain([extra]).collect();
    assert_eq!(got2, want2, "{what}: replay after reopen");
    assert_eq!(stats2.corruptions_repaired, 0, "{what}: second replay");
}

#[test]
fn torn_tail_at_every_byte_offset() {
    for compress in [true, false] {
        let fx = fixture(small_tail(), compress);
        // Every byte of the records, some of the padding close() added, and the whole page.
        let last_end = fx.ends[fx.ends.len() - 1];
        for cut in (0..=last_end + 16).chain([fx.seg1.len()]) {
            let keep = fx.ends.iter().filter(|&&e| e <= cut).count();
            let clean = cut == 0 || fx.ends.contains(&cut) || cut == fx.seg1.len();
            check(&fx, &fx.seg1[..cut], keep, !clean, true, &format!("compress={compress} cut={cut}"));
        }
    }
}

#[test]
fn torn_multi_page_record_at_the_tail() {
    let mut tail = small_tail();
    tail.insert(2, big_series_rec(50, 3 * PAGE_SIZE, 5));
    let fx = fixture(tail, false);
    let frag_offsets: Vec<usize> = fragments(&fx.seg1).iter().map(|f| f.offset).collect();
    let mut cuts: Vec<usize> = (0..=fx.seg1.len()).step_by(97).collect();
    // Every byte around fragment headers and page boundaries, where the parsing decisions are.
    for &o in frag_offsets.iter().chain(&fx.ends) {
        cuts.extend(o.saturating_sub(3)..(o + 10).min(fx.seg1.len() + 1));
    }
    for p in (PAGE_SIZE..fx.seg1.len()).step_by(PAGE_SIZE) {
        cuts.extend(p - 10..(p + 3).min(fx.seg1.len() + 1));
    }
    cuts.sort_unstable();
    cuts.dedup();
    for (i, cut) in cuts.into_iter().enumerate() {
        let keep = fx.ends.iter().filter(|&&e| e <= cut).count();
        let clean = cut == 0 || fx.ends.contains(&cut) || cut == fx.seg1.len();
        check(&fx, &fx.seg1[..cut], keep, !clean, i % 8 == 0, &format!("cut={cut}"));
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    for compress in [true, false] {
        let fx = fixture(small_tail(), compress);
        let last_end = fx.ends[fx.ends.len() - 1];
        for p in 0..last_end + 16 {
            for mask in [0xff, 0x01, 0x80] {
                let mut damaged = fx.seg1.clone();
                damaged[p] ^= mask;
                let keep = fx.ends.iter().filter(|&&e| e <= p).count();
                check(&fx, &damaged, keep, true, mask == 0xff, &format!("compress={compress} byte={p} mask={mask:#x}"));
            }
        }
    }
}

#[test]
fn flipped_bytes_in_page_padding_are_detected() {
    // A record leaving 3 bytes of padding at the end of the first page (no compression, so the
    // help text's length sets the fragment's length exactly).
    let pad = 3;
    let filler = (0..PAGE_SIZE)
        .map(|h| metadata_rec(&[(1, 1, "", &"h".repeat(h))]))
        .find(|r| r.len() == PAGE_SIZE - 7 - pad)
        .expect("a help length that fits");
    let fx = fixture(vec![filler, samples_rec(&[(1, 1, 1.0)])], false);
    assert_eq!(fx.ends[0], PAGE_SIZE - pad);
    for p in PAGE_SIZE - pad..PAGE_SIZE {
        let mut damaged = fx.seg1.clone();
        damaged[p] = 0x42;
        check(&fx, &damaged, 1, true, true, &format!("padding byte {p}"));
    }
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let fx = fixture(small_tail(), true);
    let crc_bad_fragment = {
        let mut f = vec![1u8, 0, 4, 0xde, 0xad, 0xbe, 0xef];
        f.extend_from_slice(&[2, 0, 0, 0]);
        f
    };
    let valid_first_fragment = {
        let data = [2u8, 1, 2, 3];
        let mut f = vec![2u8, 0, 4];
        f.extend_from_slice(&crc32c::crc32c(&data).to_be_bytes());
        f.extend_from_slice(&data);
        f
    };
    let too_long = vec![1u8, 0x7f, 0xf0, 0, 0, 0, 0, 1, 2, 3];
    let garbages: Vec<(&str, Vec<u8>)> = vec![
        ("noise", noise(300, 3)),
        ("ones", vec![0xff; 50]),
        ("zeros then junk", vec![0, 0, 0, 5, 6]),
        ("zeros short of the page end", vec![0; 100]),
        ("bad crc", crc_bad_fragment),
        ("first fragment without last", valid_first_fragment),
        ("length past the page", too_long),
        ("lone header byte", vec![1]),
    ];
    for (what, garbage) in garbages {
        let mut damaged = fx.seg1.clone();
        damaged.extend_from_slice(&garbage);
        check(&fx, &damaged, fx.tail.len(), true, true, what);
    }
}

#[test]
fn zero_length_and_empty_trailing_segments() {
    let fx = fixture(small_tail(), true);
    check(&fx, &[], 0, false, true, "empty last segment");

    // Damage followed by empty segments (restarts that logged nothing) is still a tail: cut,
    // but the empty segments stay.
    let (_tmp, dir) = materialise(&fx, &fx.seg1[..fx.ends[fx.ends.len() - 1] - 2]);
    std::fs::write(dir.join("00000002"), b"").expect("write");
    std::fs::write(dir.join("00000003"), b"").expect("write");
    let (got, stats) = replay_bytes(&dir);
    assert_eq!(got.len(), fx.head.len() + fx.tail.len() - 1);
    assert_eq!(stats.corruptions_repaired, 1);
    assert_eq!(segments(&dir).len(), 4);
}

#[test]
fn damage_before_the_last_segment_drops_everything_after_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let w = open(&dir, DEFAULT_SEGMENT_SIZE, true);
    let recs: Vec<Vec<u8>> = (0..9u64).map(|i| series_rec([i])).collect();
    for chunk in recs.chunks(3) {
        log_each(&w, chunk);
        w.next_segment().expect("next");
    }
    w.close().expect("close");
    let segs = segments(&dir);
    assert_eq!(segs.len(), 4);
    let mut seg1 = std::fs::read(&segs[1].1).expect("read");
    let ends = record_ends(&seg1);
    seg1[ends[0] + 10] ^= 0xff; // inside the second record of segment 1
    std::fs::write(&segs[1].1, &seg1).expect("write");
    let later: u64 = segs[2..].iter().map(|s| std::fs::metadata(&s.1).expect("stat").len()).sum();

    let (got, stats) = replay_bytes(&dir);
    assert_eq!(got, recs[..4].to_vec());
    assert_eq!(stats.corruptions_repaired, 1);
    assert_eq!(stats.bytes_dropped, (seg1.len() - ends[0]) as u64 + later);
    assert_eq!(segments(&dir).iter().map(|s| s.0).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(file_len(&segs[1].1), ends[0]);

    let w = open(&dir, DEFAULT_SEGMENT_SIZE, true);
    assert_eq!(w.segment_range(), (0, 2));
    w.log(&[&recs[8]]).expect("log");
    w.close().expect("close");
    let (got, stats) = replay_bytes(&dir);
    let want: Vec<Vec<u8>> = recs[..4].iter().chain([&recs[8]]).cloned().collect();
    assert_eq!(got, want);
    assert_eq!(stats.corruptions_repaired, 0);
}

#[test]
fn open_repairs_a_torn_tail_before_appending() {
    let fx = fixture(small_tail(), true);
    let cut = fx.ends[2] + 5;
    let (_tmp, dir) = materialise(&fx, &fx.seg1[..cut]);
    let w = Wal::open(&dir, WalOptions::default()).expect("open");
    assert_eq!(w.stats().corruptions_total.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(file_len(&dir.join("00000001")), fx.ends[2]);
    let extra = samples_rec(&[(2, 5, 5.0)]);
    w.log(&[&extra]).expect("log");
    w.close().expect("close");
    let (got, stats) = replay_bytes(&dir);
    let want: Vec<Vec<u8>> = fx.head.iter().chain(&fx.tail[..3]).chain([&extra]).cloned().collect();
    assert_eq!(got, want);
    assert_eq!(stats.corruptions_repaired, 0);
}

/// Replays expecting an error; returns it after checking nothing on disk changed.
fn replay_fails(dir: &Path) -> Error {
    let before = snapshot(dir);
    let err = wal::replay(dir, |_| Ok(())).expect_err("replay must fail");
    assert_eq!(snapshot(dir), before, "a failed replay changes nothing");
    err
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("ls").flatten() {
        if e.path().is_dir() {
            out.extend(snapshot(&e.path()));
        } else {
            out.push((e.path(), std::fs::read(e.path()).expect("read")));
        }
    }
    out.sort();
    out
}

#[test]
fn unrepairable_states_are_errors_not_repairs() {
    let fx = fixture(small_tail(), true);

    // A hole in the numbering.
    let (_t1, dir) = materialise(&fx, &fx.seg1);
    std::fs::write(dir.join("00000003"), &fx.seg1).expect("write");
    let err = replay_fails(&dir);
    assert!(err.to_string().contains("consecutive"), "{err}");

    // A damaged checkpoint.
    let (_t2, dir) = materialise(&fx, &fx.seg1);
    let cp = dir.join("checkpoint.00000000");
    std::fs::create_dir(&cp).expect("mkdir");
    std::fs::write(cp.join("00000000"), &fx.seg1[..fx.seg1.len() - 1]).expect("write");
    std::fs::remove_file(dir.join("00000000")).expect("rm");
    assert!(matches!(replay_fails(&dir), Error::CorruptWal { .. }));

    // A zstd-compressed record (newer Prometheus option): valid, but not readable here.
    let (_t3, dir) = materialise(&fx, &fx.seg1);
    let data = [1u8, 2, 3];
    let mut frag = vec![0x11u8, 0, 3];
    frag.extend_from_slice(&crc32c::crc32c(&data).to_be_bytes());
    frag.extend_from_slice(&data);
    let mut seg1 = fx.seg1.clone();
    seg1.extend_from_slice(&frag);
    std::fs::write(dir.join("00000001"), &seg1).expect("write");
    let err = replay_fails(&dir);
    assert!(err.to_string().contains("zstd"), "{err}");

    // An error from the callback stops replay and changes nothing.
    let (_t4, dir) = materialise(&fx, &fx.seg1[..fx.seg1.len() - 1]);
    let before = snapshot(&dir);
    let res = wal::replay(&dir, |_| Err(Error::CorruptRecord("refused by the head".into())));
    assert!(matches!(res, Err(Error::CorruptRecord(_))));
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn random_junk_never_panics_and_stays_usable() {
    let fx = fixture(small_tail(), true);
    for seed in 0..300u64 {
        let len = (noise(2, seed)[0] as usize * 263 + seed as usize * 31) % (3 * PAGE_SIZE);
        let mut junk = noise(len, seed + 1000);
        // Some junk starts like a real log to get past the first checks.
        if seed % 3 == 0 {
            let keep = (seed as usize) % fx.seg1.len();
            junk.splice(0..0, fx.seg1[..keep].iter().copied());
        }
        if seed % 5 == 0 {
            junk.iter_mut().step_by(3).for_each(|b| *b &= 0x0f);
        }
        let (_tmp, dir) = materialise(&fx, &junk);
        let mut n = 0;
        let stats = wal::replay(&dir, |_| {
            n += 1;
            Ok(())
        })
        .expect("junk in the last segment is repaired, not an error");
        assert!(n >= fx.head.len(), "seed {seed}");
        assert!(stats.corruptions_repaired <= 1);
        let w = open(&dir, DEFAULT_SEGMENT_SIZE, true);
        w.log(&[&samples_rec(&[(1, 1, 1.0)])]).expect("log");
        w.close().expect("close");
        let mut m = 0;
        let stats = wal::replay(&dir, |_| {
            m += 1;
            Ok(())
        })
        .expect("replay after junk");
        assert_eq!((m, stats.corruptions_repaired), (n + 1, 0), "seed {seed}");
    }
}
