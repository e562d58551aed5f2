//! Helpers shared by the WAL integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use strata_tsdb::wal::{
    self, record, Record, RefMetadata, RefSample, RefSeries, RefTombstone, Wal, WalOptions, PAGE_SIZE,
};
use strata_tsdb::Labels;

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}

pub fn series_rec(refs: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let series: Vec<RefSeries> = refs
        .into_iter()
        .map(|r| RefSeries {
            series_ref: r,
            labels: labels(&[("__name__", "test_metric"), ("instance", &format!("host-{r}")), ("job", "wal")]),
        })
        .collect();
    let mut buf = Vec::new();
    record::encode_series(&series, &mut buf);
    buf
}

pub fn samples_rec(samples: &[(u64, i64, f64)]) -> Vec<u8> {
    let s: Vec<RefSample> = samples.iter().map(|&(series_ref, t, v)| RefSample { series_ref, t, v }).collect();
    let mut buf = Vec::new();
    record::encode_samples(&s, &mut buf);
    buf
}

pub fn tombstones_rec(t: &[(u64, i64, i64)]) -> Vec<u8> {
    let t: Vec<RefTombstone> =
        t.iter().map(|&(series_ref, mint, maxt)| RefTombstone { series_ref, mint, maxt }).collect();
    let mut buf = Vec::new();
    record::encode_tombstones(&t, &mut buf);
    buf
}

pub fn metadata_rec(md: &[(u64, u8, &str, &str)]) -> Vec<u8> {
    let md: Vec<RefMetadata> = md
        .iter()
        .map(|&(series_ref, metric_type, unit, help)| RefMetadata {
            series_ref,
            metric_type,
            unit: unit.into(),
            help: help.into(),
        })
        .collect();
    let mut buf = Vec::new();
    record::encode_metadata(&md, &mut buf);
    buf
}

/// Encodes a decoded record again: comparing bytes compares float bits exactly (NaN included).
pub fn encode(rec: &Record) -> Vec<u8> {
    let mut buf = Vec::new();
    match rec {
        Record::Series(s) => record::encode_series(s, &mut buf),
        Record::Samples(s) => record::encode_samples(s, &mut buf),
        Record::Tombstones(t) => record::encode_tombstones(t, &mut buf),
        Record::Metadata(m) => record::encode_metadata(m, &mut buf),
        Record::Unsupported(t) => panic!("unexpected unsupported record type {t}"),
    }
    buf
}

/// Replays `dir` and returns every record re-encoded, with the stats.
pub fn replay_bytes(dir: &Path) -> (Vec<Vec<u8>>, wal::ReplayStats) {
    let mut out = Vec::new();
    let stats = wal::replay(dir, |r| {
        out.push(encode(&r));
        Ok(())
    })
    .expect("replay");
    (out, stats)
}

pub fn open(dir: &Path, segment_size: usize, compress: bool) -> Wal {
    Wal::open(dir, WalOptions { segment_size, compress }).expect("open WAL")
}

/// Logs each record with its own `log` call.
pub fn log_each(wal: &Wal, recs: &[Vec<u8>]) {
    for r in recs {
        wal.log(&[r]).expect("log");
    }
}

/// Segment files of `dir` with their numbers, ascending.
pub fn segments(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if name.len() != 8 || !name.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((name.parse().ok()?, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// A fragment as found by walking a segment independently of the crate's reader.
#[derive(Debug, Clone, Copy)]
pub struct Frag {
    pub offset: usize,
    pub kind: u8,
    pub compressed: bool,
    pub len: usize,
}

/// Walks well-formed segment bytes: fragment headers, skipping page padding.
pub fn fragments(bytes: &[u8]) -> Vec<Frag> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes[pos] == 0 {
            pos = (pos / PAGE_SIZE + 1) * PAGE_SIZE;
            continue;
        }
        let len = u16::from_be_bytes([bytes[pos + 1], bytes[pos + 2]]) as usize;
        out.push(Frag { offset: pos, kind: bytes[pos] & 7, compressed: bytes[pos] & 8 != 0, len });
        assert_eq!(pos / PAGE_SIZE, (pos + 7 + len - 1) / PAGE_SIZE, "fragment at {pos} crosses a page");
        pos += 7 + len;
    }
    out
}

/// End offsets of the complete records in well-formed segment bytes.
pub fn record_ends(bytes: &[u8]) -> Vec<usize> {
    fragments(bytes).iter().filter(|f| f.kind == 1 || f.kind == 4).map(|f| f.offset + 7 + f.len).collect()
}

/// Bytes no compressor can shrink, from a fixed seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A series record of roughly `len` bytes whose label values are incompressible noise.
pub fn big_series_rec(first_ref: u64, len: usize, seed: u64) -> Vec<u8> {
    let n = len / 1000 + 1;
    let series: Vec<RefSeries> = (0..n as u64)
        .map(|i| {
            let v: String = noise(970, seed + i).iter().map(|b| char::from(b'!' + b % 90)).collect();
            RefSeries { series_ref: first_ref + i, labels: labels(&[("__name__", "big"), ("v", &v)]) }
        })
        .collect();
    let mut buf = Vec::new();
    record::encode_series(&series, &mut buf);
    buf
}
