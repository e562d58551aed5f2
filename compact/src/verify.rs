//! Index verification as Thanos's `block.VerifyIndex` (`GatherIndexHealthStats`): before a
//! block is merged, and before a merged block is uploaded, its index must be sound: postings
//! sorted and naming series that exist, series in strictly increasing label order with sorted,
//! distinct label names, every series with chunks, chunks in order without overlap and inside
//! the block's time range, every chunk readable (for a block just written here, every chunk
//! reference inside a segment).

use std::path::Path;

use strata_tsdb::block::{Block, ScanPages};
use strata_tsdb::postings::PostingsSource;

/// What is wrong with a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    /// Chunks of a series out of order or overlapping (Thanos's `OutOfOrderChunksErr`); such a
    /// block can be skipped with `--compact.skip-block-with-out-of-order-chunks`.
    OutOfOrderChunks(String),
    /// Anything else: the block cannot be read or breaks the format.
    Corrupt(String),
}

impl Issue {
    pub fn reason(&self) -> &str {
        match self {
            Issue::OutOfOrderChunks(r) | Issue::Corrupt(r) => r,
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// What a sound block holds, for the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub series: u64,
    pub chunks: u64,
}

/// How much of each chunk a verification reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkCheck {
    /// The whole chunk, CRC-checked: for blocks that came from elsewhere.
    Read,
    /// Only that its reference points into a segment: for a block this process has just
    /// written from checked chunks, whose bytes reading back would only find in the page
    /// cache what was written (Thanos's `VerifyIndex` reads no chunks at all).
    Refs,
}

/// Opens the block in `dir` and checks its index and chunk references, reading the chunks as
/// `chunks` says.
pub fn verify_block(dir: &Path, chunks: ChunkCheck) -> Result<IndexStats, Issue> {
    let block = Block::open(dir).map_err(|e| Issue::Corrupt(format!("open: {e}")))?;
    let (min_time, max_time) = (block.meta().min_time, block.meta().max_time);
    let index = block.index();
    let corrupt = |e: strata_tsdb::Error| Issue::Corrupt(e.to_string());

    let all = index.all_postings().map_err(corrupt)?;
    if let Some(w) = all.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Issue::Corrupt(format!("all-postings list not strictly increasing at series ref {}", w[1])));
    }
    // Refs are offsets / 16 of series entries, which lie inside the index file.
    let index_len = index.header().index_len();
    if let Some(&last) = all.last().filter(|&&last| last.saturating_mul(16) >= index_len) {
        return Err(Issue::Corrupt(format!("series ref {last} lies past the end of the {index_len}-byte index")));
    }
    // One bit per possible ref up to the last series' (a bit per 16 bytes of the index at
    // most): membership in one probe, where a binary search of `all` per posting was most of
    // the verification's own time.
    let mut is_series = vec![0u64; all.last().map_or(0, |&last| last / 64 + 1) as usize];
    for &r in &all {
        is_series[(r / 64) as usize] |= 1 << (r % 64);
    }
    let names_series = |r: u64| is_series.get((r / 64) as usize).is_some_and(|w| w & (1 << (r % 64)) != 0);
    for name in index.label_names().map_err(corrupt)? {
        for value in index.label_values(&name).map_err(corrupt)? {
            let list = index.postings(&name, &value).map_err(corrupt)?;
            if list.is_empty() {
                return Err(Issue::Corrupt(format!("postings list of {name}={value:?} is empty")));
            }
            if list.windows(2).any(|w| w[0] >= w[1]) {
                return Err(Issue::Corrupt(format!("postings list of {name}={value:?} not strictly increasing")));
            }
            if let Some(r) = list.iter().find(|&&r| !names_series(r)) {
                return Err(Issue::Corrupt(format!(
                    "postings list of {name}={value:?} names series ref {r}, which is not a series"
                )));
            }
        }
    }

    let mut stats = IndexStats::default();
    let mut previous = None;
    let mut metas = Vec::new();
    let mut scan = ScanPages::default();
    for &r in &all {
        if scan.series_read() {
            block.release_pages();
        }
        let labels = index.series(r, &mut metas).map_err(corrupt)?;
        let mut last_name: Option<&str> = None;
        for (name, _) in labels.iter() {
            if last_name.is_some_and(|l| l >= name) {
                return Err(Issue::Corrupt(format!(
                    "series {labels:?}: label names not sorted or repeated at {name:?}"
                )));
            }
            last_name = Some(name);
        }
        if labels.is_empty() {
            return Err(Issue::Corrupt(format!("series ref {r} has no labels")));
        }
        if previous.as_ref().is_some_and(|p| p >= &labels) {
            return Err(Issue::Corrupt(format!("series {labels:?} out of order (after {previous:?})")));
        }
        if metas.is_empty() {
            return Err(Issue::Corrupt(format!("series {labels:?} has no chunks")));
        }
        for (i, c) in metas.iter().enumerate() {
            if c.min_time > c.max_time {
                return Err(Issue::Corrupt(format!(
                    "series {labels:?}: chunk with min time {} after max time {}",
                    c.min_time, c.max_time
                )));
            }
            // Thanos's bounds: a chunk may end at the block's (exclusive) max time.
            if c.min_time < min_time || c.max_time > max_time {
                return Err(Issue::Corrupt(format!(
                    "series {labels:?}: chunk [{}, {}] outside the block's range [{min_time}, {max_time})",
                    c.min_time, c.max_time
                )));
            }
            if i > 0 && c.min_time <= metas[i - 1].max_time {
                return Err(Issue::OutOfOrderChunks(format!(
                    "series {labels:?}: chunk [{}, {}] out of order or overlapping the previous one ending at {}",
                    c.min_time,
                    c.max_time,
                    metas[i - 1].max_time
                )));
            }
            match chunks {
                ChunkCheck::Read => block.chunks().chunk(c.chunk_ref).map(|_| ()),
                ChunkCheck::Refs => block.chunks().check_ref(c.chunk_ref),
            }
            .map_err(corrupt)?;
        }
        stats.series += 1;
        stats.chunks += metas.len() as u64;
        previous = Some(labels);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use strata_tsdb::block::meta::BlockCompaction;
    use strata_tsdb::block::{BlockWriter, ChunkData};
    use strata_tsdb::chunkenc::{Encoding, XorAppender};
    use strata_tsdb::labels::Labels;
    use ulid::Ulid;

    use super::*;

    fn chunk(times: std::ops::Range<i64>) -> ChunkData {
        let mut a = XorAppender::new();
        for t in times.clone() {
            a.append(t, t as f64);
        }
        ChunkData {
            min_time: times.start,
            max_time: times.end - 1,
            encoding: Encoding::Xor,
            data: a.into_bytes().into(),
        }
    }

    /// A block of two series with `chunks` each, declared to span `range`.
    fn block(dir: &Path, chunks: &[ChunkData], range: (i64, i64)) -> PathBuf {
        let id = Ulid::new();
        let mut w = BlockWriter::new(dir, id).unwrap();
        w.add_symbols(["__name__", "a", "b", "x"]).unwrap();
        for name in ["a", "b"] {
            w.add_series(&Labels::from_pairs(&[("__name__", name), ("x", "x")]), chunks).unwrap();
        }
        w.finish(range.0, range.1, BlockCompaction { level: 1, sources: vec![id], ..BlockCompaction::default() })
            .unwrap();
        dir.join(id.to_string())
    }

    /// `x="x"` names both series; its list's last ref becomes one past the last series (the
    /// list stays sorted and its CRC is made right again).
    #[test]
    fn a_postings_list_naming_no_series_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let b = block(dir.path(), &[chunk(0..100)], (0, 100));
        let path = b.join("index");
        let index = strata_tsdb::index::IndexReader::open(&path).unwrap();
        let last = *index.all_postings().unwrap().last().unwrap();
        let start = index.header().postings_range("x", "x").unwrap().unwrap().start as usize;
        drop(index);
        // `BE32 len | BE32 n | n × BE32 ref | BE32 CRC32C(n, refs)`
        let mut bytes = std::fs::read(&path).unwrap();
        let n = u32::from_be_bytes(bytes[start + 4..start + 8].try_into().unwrap()) as usize;
        let (refs_end, bad) = (start + 8 + 4 * n, u32::try_from(last + 1).unwrap());
        bytes[refs_end - 4..refs_end].copy_from_slice(&bad.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[start + 4..refs_end]);
        bytes[refs_end..refs_end + 4].copy_from_slice(&crc.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        match verify_block(&b, ChunkCheck::Read) {
            Err(Issue::Corrupt(reason)) => assert!(reason.contains("which is not a series"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sound_block_passes() {
        let dir = tempfile::tempdir().unwrap();
        let b = block(dir.path(), &[chunk(0..100), chunk(100..200)], (0, 200));
        assert_eq!(verify_block(&b, ChunkCheck::Read), Ok(IndexStats { series: 2, chunks: 4 }));
    }

    #[test]
    fn chunks_outside_the_range_are_corrupt() {
        // The writer refuses such a block, so its meta.json is narrowed afterwards.
        let dir = tempfile::tempdir().unwrap();
        let b = block(dir.path(), &[chunk(0..100), chunk(100..300)], (0, 300));
        let mut meta = strata_tsdb::block::meta::BlockMeta::read(&b).unwrap();
        meta.max_time = 200;
        meta.write(&b).unwrap();
        match verify_block(&b, ChunkCheck::Read) {
            Err(Issue::Corrupt(r)) => assert!(r.contains("outside the block's range"), "{r}"),
            other => panic!("{other:?}"),
        }
        meta.max_time = 299;
        meta.write(&b).unwrap();
        assert!(
            verify_block(&b, ChunkCheck::Read).is_ok(),
            "a chunk may end at the block's max time, as Thanos allows"
        );
    }

    #[test]
    fn damaged_files_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        type Damage = fn(&mut Vec<u8>);
        let damage: [(&str, Damage); 5] = [
            ("index", |b| b.truncate(b.len() / 2)),
            ("index", |b| b.iter_mut().skip(8).take(40).for_each(|x| *x ^= 0xff)),
            ("index", |b| b.clear()),
            ("chunks/000001", |b| b.truncate(20)),
            ("chunks/000001", |b| b.iter_mut().skip(12).for_each(|x| *x = !*x)),
        ];
        for (i, (file, f)) in damage.into_iter().enumerate() {
            let b = block(dir.path(), &[chunk(0..100)], (0, 100));
            let path = b.join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            f(&mut bytes);
            std::fs::write(&path, &bytes).unwrap();
            assert!(
                matches!(verify_block(&b, ChunkCheck::Read), Err(Issue::Corrupt(_))),
                "damage {i} to {file}: {:?}",
                verify_block(&b, ChunkCheck::Read)
            );
        }
        // Checking references only does not read the chunks, but a reference past the end of
        // its segment is still found.
        let b = block(dir.path(), &[chunk(0..100)], (0, 100));
        let path = b.join("chunks/000001");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.iter_mut().skip(12).for_each(|x| *x = !*x);
        std::fs::write(&path, &bytes).unwrap();
        assert!(verify_block(&b, ChunkCheck::Refs).is_ok());
        bytes.truncate(8);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(verify_block(&b, ChunkCheck::Refs), Err(Issue::Corrupt(_))));

        let b = block(dir.path(), &[chunk(0..100)], (0, 100));
        std::fs::remove_file(b.join("index")).unwrap();
        assert!(matches!(verify_block(&b, ChunkCheck::Read), Err(Issue::Corrupt(_))));
        assert!(matches!(verify_block(&dir.path().join("nothing"), ChunkCheck::Read), Err(Issue::Corrupt(_))));
    }
}
