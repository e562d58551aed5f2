//! Block inspection with the output of `promtool tsdb list` and `promtool tsdb analyze` as
//! Prometheus 2.42 prints them, so that scripts and habits built on promtool carry over.
//!
//! Both take a TSDB directory holding blocks (such as a receiver's `<tsdb.path>/<tenant>`) or
//! a single block directory. Blocks that cannot be opened are logged and skipped, where
//! promtool would refuse the whole directory. A directory without blocks gets an answer that
//! says what is there instead: the head rebuilt from the WAL, or, for a directory that is not
//! a TSDB directory, the TSDB directories below it ([`check_tsdb_dir`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The block id [`analyze`] takes, re-exported so callers need no ulid dependency of their own.
pub use ulid::Ulid;

use crate::block::meta::META_FILENAME;
use crate::block::{open_blocks, Block, CHUNKS_DIR, TOMBSTONES_FILENAME};
use crate::gotext::format_duration;
use crate::head::HeadOptions;
use crate::index::INDEX_FILENAME;
use crate::postings::PostingsSource;
use crate::{Error, Result};

/// promtool's tabwriter settings: every aligned column at least this wide…
const MIN_COLUMN_WIDTH: usize = 13;
/// …and this many spaces wider than its widest cell.
const COLUMN_PADDING: usize = 2;

/// Prints one line per block, oldest first, like `promtool tsdb list [-r]`: ULID, min and
/// max time (ms, or UTC date-times with `human_readable`), duration, samples, chunks, series
/// and the bytes of the block's files (humanized with `human_readable`). A TSDB directory
/// without blocks gets the header alone, and the returned note says what its head holds.
pub fn list(dir: &Path, human_readable: bool, out: &mut dyn Write) -> Result<Option<String>> {
    let blocks = blocks_in(dir)?;
    let mut rows: Vec<[String; 8]> = Vec::with_capacity(blocks.len() + 1);
    rows.push(
        ["BLOCK ULID", "MIN TIME", "MAX TIME", "DURATION", "NUM SAMPLES", "NUM CHUNKS", "NUM SERIES", "SIZE"]
            .map(String::from),
    );
    for b in &blocks {
        let m = b.meta();
        let size = block_size(b.dir())?;
        let (min_time, max_time, size) = if human_readable {
            (go_utc_time(m.min_time), go_utc_time(m.max_time), base2_bytes(size))
        } else {
            (m.min_time.to_string(), m.max_time.to_string(), size.to_string())
        };
        rows.push([
            m.ulid.to_string(),
            min_time,
            max_time,
            format_duration((i128::from(m.max_time) - i128::from(m.min_time)) * 1_000_000),
            m.stats.num_samples.to_string(),
            m.stats.num_chunks.to_string(),
            m.stats.num_series.to_string(),
            size,
        ]);
    }
    write_table(&rows, out).map_err(output_error)?;
    if blocks.is_empty() {
        return Ok(Some(format!("no blocks in {} yet: {}", dir.display(), head_summary(dir)?)));
    }
    Ok(None)
}

/// Prints label and churn statistics of one block, like `promtool tsdb analyze`: the block
/// named by `block`, or else the one with the latest min time. Each ranking shows its top
/// `limit` entries; entries with equal counts are in key order (promtool's order among them
/// is arbitrary).
pub fn analyze(dir: &Path, block: Option<Ulid>, limit: usize, out: &mut dyn Write) -> Result<()> {
    let b = match block {
        // Opened directly, so a damaged block reports why it cannot be opened, not that it is missing.
        Some(id) if dir.join(id.to_string()).is_dir() => Block::open(&dir.join(id.to_string()))?,
        Some(id) => blocks_in(dir)?
            .into_iter()
            .find(|b| b.meta().ulid == id)
            .ok_or_else(|| not_found(dir, format!("block {id} not found")))?,
        None => match blocks_in(dir)?.pop() {
            Some(b) => b,
            None => return Err(not_found(dir, format!("no blocks to analyze yet: {}", head_summary(dir)?))),
        },
    };
    let stats = BlockStats::gather(&b)?;
    stats.print(&b, limit, out).map_err(output_error)
}

/// What `analyze` prints, gathered from a block's index.
struct BlockStats {
    label_names: Vec<String>,
    /// Per `name=value`: summed uncovered time of its series, and its series count.
    pairs: HashMap<String, (u64, u64)>,
    /// Per label name: summed uncovered time of its series.
    names_uncovered: HashMap<String, u64>,
    /// Label pairs over all series.
    entries: u64,
    /// Per label name: value count and summed byte length of the values.
    values: Vec<(String, u64, u64)>,
    /// Per metric name: series count.
    metrics: Vec<(String, u64)>,
}

impl BlockStats {
    fn gather(b: &Block) -> Result<Self> {
        let index = b.index();
        let meta = b.meta();
        // Go's unsigned arithmetic, so that odd metas give promtool's numbers rather than a panic.
        let range = meta.max_time.wrapping_sub(meta.min_time) as u64;
        let mut pairs: HashMap<String, (u64, u64)> = HashMap::new();
        let mut names_uncovered: HashMap<String, u64> = HashMap::new();
        let mut entries = 0u64;
        let mut chunks = Vec::new();
        let mut key = String::new();
        for r in index.all_postings()? {
            let labels = index.series(r, &mut chunks)?;
            // The part of the block's range outside this series' first and last sample. A
            // series without chunks (which promtool cannot handle) covers none of it.
            let covered = match (chunks.first(), chunks.last()) {
                (Some(first), Some(last)) => last.max_time.wrapping_sub(first.min_time) as u64,
                _ => 0,
            };
            let uncovered = range.wrapping_sub(covered);
            for (name, value) in labels.iter() {
                key.clear();
                key.push_str(name);
                key.push('=');
                key.push_str(value);
                // Looked up by reference first: most pairs repeat, and the key need not be copied.
                match pairs.get_mut(key.as_str()) {
                    Some((u, n)) => {
                        *u = u.wrapping_add(uncovered);
                        *n += 1;
                    }
                    None => {
                        pairs.insert(key.clone(), (uncovered, 1));
                    }
                }
                match names_uncovered.get_mut(name) {
                    Some(u) => *u = u.wrapping_add(uncovered),
                    None => {
                        names_uncovered.insert(name.to_owned(), uncovered);
                    }
                }
                entries += 1;
            }
        }
        let label_names = index.label_names()?;
        let mut values = Vec::with_capacity(label_names.len());
        for name in &label_names {
            let vs = index.label_values(name)?;
            let total_len = vs.iter().map(|v| v.len() as u64).sum();
            values.push((name.clone(), vs.len() as u64, total_len));
        }
        let mut metrics = Vec::new();
        for name in index.label_values("__name__")? {
            let n = index.postings("__name__", &name)?.len() as u64;
            metrics.push((name, n));
        }
        Ok(BlockStats { label_names, pairs, names_uncovered, entries, values, metrics })
    }

    fn print(&self, b: &Block, limit: usize, out: &mut dyn Write) -> std::io::Result<()> {
        let meta = b.meta();
        writeln!(out, "Block ID: {}", meta.ulid)?;
        writeln!(
            out,
            "Duration: {}",
            format_duration((i128::from(meta.max_time) - i128::from(meta.min_time)) * 1_000_000)
        )?;
        writeln!(out, "Series: {}", meta.stats.num_series)?;
        writeln!(out, "Label names: {}", self.label_names.len())?;
        writeln!(out, "Postings (unique label pairs): {}", self.pairs.len())?;
        writeln!(out, "Postings entries (total label pairs): {}", self.entries)?;

        // Uncovered time in units of the block's range: roughly how many series with this
        // label came or went during the block. promtool divides in floating point and truncates.
        let range = meta.max_time.wrapping_sub(meta.min_time);
        let churn = |uncovered: u64| (uncovered as f64 / range as f64) as u64;
        let ranking = |title: &str, items: Vec<(&str, u64)>, out: &mut dyn Write| -> std::io::Result<()> {
            writeln!(out, "\n{title}:")?;
            print_top(items, limit, out)
        };
        ranking(
            "Label pairs most involved in churning",
            self.pairs.iter().map(|(k, &(u, _))| (k.as_str(), churn(u))).collect(),
            out,
        )?;
        ranking(
            "Label names most involved in churning",
            self.names_uncovered.iter().map(|(k, &u)| (k.as_str(), churn(u))).collect(),
            out,
        )?;
        ranking("Most common label pairs", self.pairs.iter().map(|(k, &(_, n))| (k.as_str(), n)).collect(), out)?;
        ranking(
            "Label names with highest cumulative label value length",
            self.values.iter().map(|(k, _, len)| (k.as_str(), *len)).collect(),
            out,
        )?;
        ranking("Highest cardinality labels", self.values.iter().map(|(k, n, _)| (k.as_str(), *n)).collect(), out)?;
        ranking("Highest cardinality metric names", self.metrics.iter().map(|(k, n)| (k.as_str(), *n)).collect(), out)
    }
}

/// Prints the `limit` largest entries as `count key`, largest first, ties in key order.
fn print_top(mut items: Vec<(&str, u64)>, limit: usize, out: &mut dyn Write) -> std::io::Result<()> {
    items.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    for (key, n) in items.into_iter().take(limit) {
        writeln!(out, "{n} {key}")?;
    }
    Ok(())
}

/// The blocks of a TSDB directory sorted by min time, or the block `dir` itself if it is one.
fn blocks_in(dir: &Path) -> Result<Vec<Block>> {
    match check_tsdb_dir(dir)? {
        Layout::Block => Ok(vec![Block::open(dir)?]),
        Layout::Tsdb => open_blocks(dir),
    }
}

/// What a directory given to a TSDB tool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One block: it has a `meta.json`.
    Block,
    /// A TSDB directory: blocks, a WAL (`wal/`), or both.
    Tsdb,
}

/// How many of the TSDB directories found below a directory an error names.
const MAX_NAMED_DIRS: usize = 10;

/// Checks that `dir` is a TSDB directory or a block. Any other directory is an error that says
/// what it holds instead: the TSDB directories one or two levels below it (a receiver's
/// `--tsdb.path` holds one per tenant, and standalone's `--data-dir` holds `receive/<tenant>`),
/// or nothing a TSDB keeps.
pub fn check_tsdb_dir(dir: &Path) -> Result<Layout> {
    if dir.join(META_FILENAME).is_file() {
        return Ok(Layout::Block);
    }
    if holds_tsdb(dir)? {
        return Ok(Layout::Tsdb);
    }
    // Directories below that cannot be read are passed over: they are only suggestions.
    let mut found: Vec<(bool, PathBuf)> = Vec::new();
    for child in subdirs(dir)? {
        if holds_tsdb(&child).unwrap_or(false) {
            found.push((child.join("wal").is_dir(), child));
            continue;
        }
        for grandchild in subdirs(&child).unwrap_or_default() {
            if holds_tsdb(&grandchild).unwrap_or(false) {
                found.push((grandchild.join("wal").is_dir(), grandchild));
            }
        }
    }
    // Those with a WAL first: a receiver's tenants rather than a directory of blocks (such as
    // a local bucket).
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let Some((_, first)) = found.first() else {
        return Err(not_found(
            dir,
            "not a TSDB directory: no blocks and no WAL segments (no wal/ directory) in it; a receiver keeps \
             one TSDB directory per tenant, in <tsdb.path>/<tenant>"
                .into(),
        ));
    };
    let names: Vec<String> = found
        .iter()
        .take(MAX_NAMED_DIRS)
        .map(|(_, p)| p.strip_prefix(dir).unwrap_or(p).display().to_string())
        .collect();
    let more = found.len().saturating_sub(MAX_NAMED_DIRS);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    Err(not_found(
        dir,
        format!(
            "not a TSDB directory (no blocks and no wal/ in it); it holds the TSDB directories {}{more}: \
             try --tsdb.path {}",
            names.join(", "),
            first.display()
        ),
    ))
}

/// The error for a block directory given where a TSDB directory is needed.
pub fn block_not_tsdb(dir: &Path) -> Error {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    not_found(
        dir,
        format!(
            "this is a block, not a TSDB directory: try --tsdb.path {}, the directory holding it",
            parent.display()
        ),
    )
}

/// Whether `dir` has a `wal/` directory or a block directory (named by a ULID).
fn holds_tsdb(dir: &Path) -> Result<bool> {
    if dir.join("wal").is_dir() {
        return Ok(true);
    }
    Ok(subdirs(dir)?
        .iter()
        .any(|d| d.file_name().and_then(|n| n.to_str()).is_some_and(|n| Ulid::from_string(n).is_ok())))
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// What the head of the TSDB in `dir` holds, rebuilt from its WAL without changing anything,
/// and when blocks are cut from it.
fn head_summary(dir: &Path) -> Result<String> {
    let opts = HeadOptions::default();
    let every = short_duration(opts.chunk_range);
    let first = short_duration(opts.chunk_range / 2 * 3);
    let (_, head, _) = crate::db::load(dir, opts, false)?;
    let (min, max) = (head.min_time(), head.max_time());
    if min > max {
        return Ok("the head (rebuilt from the WAL) is empty: nothing has been written here".into());
    }
    Ok(format!(
        "the head (rebuilt from the WAL) holds {} series with samples from {} to {}; blocks are cut every {every} \
         of samples, the first once the head spans {first} (`tools tsdb dump` prints the head's samples)",
        head.num_series(),
        go_utc_time(min),
        go_utc_time(max),
    ))
}

/// Bytes of the files Prometheus counts as a block's size: meta.json, index, tombstones and
/// the chunk segments.
fn block_size(dir: &Path) -> Result<u64> {
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len());
    let mut total = 0;
    for name in [META_FILENAME, INDEX_FILENAME, TOMBSTONES_FILENAME] {
        let path = dir.join(name);
        total += match len(&path) {
            Ok(n) => n,
            // Tombstones are optional; a block without them counts zero bytes for them.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == TOMBSTONES_FILENAME => 0,
            Err(e) => return Err(Error::io("stat", path, e)),
        };
    }
    let chunks = dir.join(CHUNKS_DIR);
    for entry in std::fs::read_dir(&chunks).map_err(|e| Error::io("list", &chunks, e))? {
        let entry = entry.map_err(|e| Error::io("list", &chunks, e))?;
        // Only numbered files are segments, as for the chunk reader.
        let is_segment =
            entry.file_name().to_str().is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
        if is_segment {
            total += len(&entry.path()).map_err(|e| Error::io("stat", entry.path(), e))?;
        }
    }
    Ok(total)
}

fn not_found(dir: &Path, message: String) -> Error {
    Error::NotFound { path: dir.to_owned(), message }
}

fn output_error(e: std::io::Error) -> Error {
    Error::io("write output", "-", e)
}

/// Writes rows as Go's tabwriter does with promtool's settings: every column but the last
/// padded with spaces to `max(MIN_COLUMN_WIDTH, widest cell + COLUMN_PADDING)`; the last
/// column is not aligned, so lines carry no trailing spaces.
fn write_table<const N: usize>(rows: &[[String; N]], out: &mut dyn Write) -> std::io::Result<()> {
    let mut widths = [MIN_COLUMN_WIDTH; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count() + COLUMN_PADDING);
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A duration as people write it: Go's `time.Duration.String` without zero minutes and seconds
/// (`2h`, `1h30m`).
fn short_duration(ms: i64) -> String {
    let mut s = format_duration(i128::from(ms) * 1_000_000);
    if s.ends_with("m0s") {
        s.truncate(s.len() - 2);
    }
    if s.ends_with("h0m") {
        s.truncate(s.len() - 2);
    }
    s
}

/// A millisecond timestamp as promtool's `-r` prints it: Go's `time.Time.String` of the whole
/// seconds (truncated toward zero) in UTC, e.g. `2023-11-14 22:13:20 +0000 UTC`.
fn go_utc_time(ms: i64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    // Go pads the year to four digits after any minus sign.
    let year = if year < 0 { format!("-{:04}", year.unsigned_abs()) } else { format!("{year:04}") };
    format!("{year}-{month:02}-{day:02} {:02}:{:02}:{:02} +0000 UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Count from 0000-03-01 in 400-year eras, so that leap days fall at the end of each
    // (March-based) year and the month lengths follow a fixed pattern.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Bytes as `alecthomas/units.Base2Bytes.String` prints them (promtool's `-r` sizes): every
/// non-zero base-1024 digit with its unit, largest first, e.g. `6KiB906B`, `1MiB`, `0B`.
fn base2_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n == 0 {
        return "0B".into();
    }
    let mut parts = Vec::new();
    let mut rest = n;
    for unit in UNITS {
        if rest == 0 {
            break;
        }
        let digit = rest % 1024;
        if digit != 0 {
            parts.push(format!("{digit}{unit}"));
        }
        rest /= 1024;
    }
    parts.reverse();
    parts.concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockCompaction, BlockWriter, ChunkData};
    use crate::chunkenc::{Encoding, XorAppender};
    use crate::Labels;

    #[test]
    fn times_print_like_go() {
        assert_eq!(go_utc_time(1_700_000_000_000), "2023-11-14 22:13:20 +0000 UTC");
        assert_eq!(go_utc_time(1_700_006_390_001), "2023-11-14 23:59:50 +0000 UTC");
        assert_eq!(go_utc_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_utc_time(951_782_400_000), "2000-02-29 00:00:00 +0000 UTC");
        // Go divides toward zero: -1500 ms is second -1.
        assert_eq!(go_utc_time(-1500), "1969-12-31 23:59:59 +0000 UTC");
        assert_eq!(go_utc_time(-62_167_219_200_000 - 86_400_000), "-0001-12-31 00:00:00 +0000 UTC");
    }

    #[test]
    fn sizes_print_like_units_base2bytes() {
        for (n, want) in [
            (0, "0B"),
            (906, "906B"),
            (7050, "6KiB906B"),
            (1024, "1KiB"),
            (1 << 20, "1MiB"),
            ((1 << 20) + 5, "1MiB5B"),
            (u64::MAX >> 1, "7EiB1023PiB1023TiB1023GiB1023MiB1023KiB1023B"),
        ] {
            assert_eq!(base2_bytes(n), want, "{n}");
        }
    }

    #[test]
    fn table_pads_like_tabwriter() {
        let rows = [["a".to_string(), "0123456789abcdef".into(), "x".into()], ["bb".into(), "c".into(), "yyyy".into()]];
        let mut out = Vec::new();
        write_table(&rows, &mut out).unwrap();
        let want = format!("a{}0123456789abcdef  x\nbb{}c{}yyyy\n", " ".repeat(12), " ".repeat(11), " ".repeat(17));
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    /// One XOR chunk with a sample every 15 s in `[from, to]`.
    fn chunk(from: i64, to: i64) -> ChunkData {
        let mut app = XorAppender::new();
        for t in (from..=to).step_by(15_000) {
            app.append(t, 1.0);
        }
        ChunkData { min_time: from, max_time: to, encoding: Encoding::Xor, data: app.bytes().to_vec().into() }
    }

    #[test]
    fn analyze_counts_churn_pairs_and_cardinality() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(dir.path(), Ulid::new()).unwrap();
        w.add_symbols(["__name__", "a", "b", "job", "x", "y"]).unwrap();
        let series = [
            // Whole range: uncovered 1 ms (the exclusive max time).
            (Labels::from_pairs(&[("__name__", "a"), ("job", "x")]), chunk(0, 3_600_000)),
            // Last quarter only: 3/4 of the range uncovered.
            (Labels::from_pairs(&[("__name__", "a"), ("job", "y")]), chunk(2_700_000, 3_600_000)),
            // A single sample: all of the range uncovered.
            (Labels::from_pairs(&[("__name__", "b"), ("job", "y")]), chunk(1_800_000, 1_800_000)),
        ];
        for (labels, c) in &series {
            w.add_series(labels, std::slice::from_ref(c)).unwrap();
        }
        let meta = w.finish(0, 3_600_001, BlockCompaction { level: 1, ..Default::default() }).unwrap();
        let mut out = Vec::new();
        analyze(dir.path(), None, 2, &mut out).unwrap();
        let want = format!(
            "Block ID: {}\nDuration: 1h0m0.001s\nSeries: 3\nLabel names: 2\n\
             Postings (unique label pairs): 4\nPostings entries (total label pairs): 6\n\n\
             Label pairs most involved in churning:\n1 __name__=b\n1 job=y\n\n\
             Label names most involved in churning:\n1 __name__\n1 job\n\n\
             Most common label pairs:\n2 __name__=a\n2 job=y\n\n\
             Label names with highest cumulative label value length:\n2 __name__\n2 job\n\n\
             Highest cardinality labels:\n2 __name__\n2 job\n\n\
             Highest cardinality metric names:\n2 a\n1 b\n",
            meta.ulid
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);

        // The block directory itself works too, and a named block must exist.
        let block_dir = dir.path().join(meta.ulid.to_string());
        let mut out = Vec::new();
        analyze(&block_dir, Some(meta.ulid), 1, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().starts_with(&format!("Block ID: {}\n", meta.ulid)));
        let other = Ulid::new();
        let err = analyze(dir.path(), Some(other), 1, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("block {other} not found")) && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn list_skips_damaged_blocks_and_names_missing_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(dir.path(), Ulid::new()).unwrap();
        w.add_symbols(["__name__", "a"]).unwrap();
        w.add_series(&Labels::from_pairs(&[("__name__", "a")]), &[chunk(0, 15_000)]).unwrap();
        let meta = w.finish(0, 15_001, BlockCompaction { level: 1, ..Default::default() }).unwrap();
        // A second block whose index is garbage.
        let bad = dir.path().join(Ulid::new().to_string());
        std::fs::create_dir_all(bad.join(CHUNKS_DIR)).unwrap();
        std::fs::copy(dir.path().join(meta.ulid.to_string()).join(META_FILENAME), bad.join(META_FILENAME)).unwrap();
        std::fs::write(bad.join(INDEX_FILENAME), b"not an index").unwrap();

        let mut out = Vec::new();
        list(dir.path(), false, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[1].starts_with(&meta.ulid.to_string()), "{out}");
        let fields: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(fields[1..7], ["0", "15001", "15.001s", "2", "1", "1"], "{out}");

        let missing = dir.path().join("nope");
        let err = list(&missing, false, &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    /// A TSDB directory with a WAL and no blocks, as a receiver leaves it in its first hours.
    fn head_only_tsdb(dir: &Path) {
        let db = crate::db::Db::open(dir, crate::db::DbOptions::default()).unwrap();
        let mut app = db.appender();
        for job in ["a", "b"] {
            app.append(&[("__name__", "up"), ("job", job)], [(1_700_000_000_000, 1.0), (1_700_000_060_000, 1.0)])
                .unwrap();
        }
        app.commit().unwrap();
        db.close().unwrap();
    }

    #[test]
    fn without_blocks_list_and_analyze_describe_the_head() {
        let dir = tempfile::tempdir().unwrap();
        head_only_tsdb(dir.path());
        let mut out = Vec::new();
        let note = list(dir.path(), false, &mut out).unwrap().unwrap_or_default();
        assert!(String::from_utf8(out).unwrap().starts_with("BLOCK ULID"), "the header alone, as promtool prints it");
        let head = "the head (rebuilt from the WAL) holds 2 series with samples from 2023-11-14 22:13:20 +0000 UTC \
                    to 2023-11-14 22:14:20 +0000 UTC; blocks are cut every 2h of samples, the first once the head \
                    spans 3h";
        assert!(note.starts_with(&format!("no blocks in {} yet: {head}", dir.path().display())), "{note}");
        let err = analyze(dir.path(), None, 10, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains(&format!("no blocks to analyze yet: {head}")), "{err}");
        // Said once: no cause repeats the message.
        assert!(std::error::Error::source(&err).is_none());

        // An empty WAL: nothing written yet.
        let fresh = tempfile::tempdir().unwrap();
        crate::db::Db::open(fresh.path(), crate::db::DbOptions::default()).unwrap().close().unwrap();
        let note = list(fresh.path(), false, &mut Vec::new()).unwrap().unwrap_or_default();
        assert!(note.ends_with("the head (rebuilt from the WAL) is empty: nothing has been written here"), "{note}");
    }

    #[test]
    fn a_directory_above_tsdbs_names_them() {
        // A standalone data directory: tenants under receive/, blocks in the local bucket.
        let data = tempfile::tempdir().unwrap();
        let receive = data.path().join("receive");
        for tenant in ["team-b", "default-tenant"] {
            head_only_tsdb(&receive.join(tenant));
        }
        let mut w = BlockWriter::new(&data.path().join("bucket"), Ulid::new()).unwrap();
        w.add_symbols(["__name__", "a"]).unwrap();
        w.add_series(&Labels::from_pairs(&[("__name__", "a")]), &[chunk(0, 15_000)]).unwrap();
        w.finish(0, 15_001, BlockCompaction { level: 1, ..Default::default() }).unwrap();

        let err = list(&receive, false, &mut Vec::new()).unwrap_err().to_string();
        let want = format!(
            "not a TSDB directory (no blocks and no wal/ in it); it holds the TSDB directories default-tenant, \
             team-b: try --tsdb.path {}",
            receive.join("default-tenant").display()
        );
        assert!(err.contains(&want), "{err}");
        // Two levels down; tenants (with a WAL) before a directory of blocks.
        let err = analyze(data.path(), None, 10, &mut Vec::new()).unwrap_err().to_string();
        let want = format!(
            "the TSDB directories receive/default-tenant, receive/team-b, bucket: try --tsdb.path {}",
            receive.join("default-tenant").display()
        );
        assert!(err.contains(&want), "{err}");
        assert_eq!(check_tsdb_dir(&receive.join("team-b")).unwrap(), Layout::Tsdb);
        assert_eq!(check_tsdb_dir(&data.path().join("bucket")).unwrap(), Layout::Tsdb);

        let empty = tempfile::tempdir().unwrap();
        let err = list(empty.path(), false, &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("not a TSDB directory: no blocks and no WAL segments"), "{err}");
    }
}
