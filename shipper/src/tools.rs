//! `strata tools bucket ls` and `strata tools bucket inspect`: what is in a bucket, for people.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, SecondsFormat};
use strata_tsdb::block::meta::{BlockMeta, META_FILENAME};
use strata_tsdb::gotext::{format_duration, quote};
use ulid::Ulid;

use crate::bucket::Bucket;
use crate::fetch::MetaFetcher;
use crate::markers::{DeletionMark, DELETION_MARK_FILENAME};
use crate::{Error, Result};

const LS_HEADER: [&str; 11] =
    ["ULID", "FROM", "UNTIL", "RANGE", "LEVEL", "RESOLUTION", "SERIES", "SAMPLES", "CHUNKS", "LABELS", "SOURCE"];

/// Writes a table of the bucket's blocks, oldest first, then a line counting the blocks that are
/// partial uploads, deletion-marked or unreadable.
pub async fn bucket_ls(bucket: &Bucket, out: &mut dyn Write) -> Result<()> {
    let fetched = MetaFetcher::new(bucket.clone()).fetch().await?;
    let mut metas: Vec<&BlockMeta> = fetched.metas.values().collect();
    metas.sort_by_key(|m| (m.min_time, m.ulid));
    let rows: Vec<[String; 11]> = metas.iter().map(|m| ls_row(m)).collect();
    let mut text = String::new();
    let mut widths = LS_HEADER.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header = LS_HEADER.map(str::to_owned);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.push_str(&format!(
        "{} blocks; {} partial uploads, {} marked for deletion, {} with unreadable meta.json\n",
        rows.len(),
        fetched.partial.len(),
        fetched.marked_for_deletion.len(),
        fetched.corrupt.len()
    ));
    out.write_all(text.as_bytes()).map_err(|e| Error::io("write", "<output>", e))
}

fn ls_row(m: &BlockMeta) -> [String; 11] {
    let (labels, resolution, source) = match &m.thanos {
        Some(t) => (
            t.labels.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect::<Vec<_>>().join(","),
            t.downsample.resolution,
            t.source.clone(),
        ),
        None => (String::new(), 0, String::new()),
    };
    [
        m.ulid.to_string(),
        rfc3339_ms(m.min_time),
        rfc3339_ms(m.max_time),
        format_duration((i128::from(m.max_time) - i128::from(m.min_time)) * 1_000_000),
        m.compaction.level.to_string(),
        format_duration(i128::from(resolution) * 1_000_000),
        m.stats.num_series.to_string(),
        m.stats.num_samples.to_string(),
        m.stats.num_chunks.to_string(),
        labels,
        source,
    ]
}

/// Milliseconds since the epoch as RFC 3339 UTC (with milliseconds only when non-zero).
pub fn rfc3339_ms(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => ms.to_string(),
    }
}

/// Writes a block's meta.json as stored, its objects with their sizes, and its markers.
pub async fn bucket_inspect(bucket: &Bucket, id: Ulid, out: &mut dyn Write) -> Result<()> {
    let meta_key = format!("{id}/{META_FILENAME}");
    let objects = bucket.list_recursive(&id.to_string()).await?;
    let meta_text = bucket.get_opt(&meta_key).await?;
    if objects.is_empty() && meta_text.is_none() {
        return Err(Error::BlockNotFound(id));
    }
    let mut text = format!("block {id} in {bucket}\n");
    match &meta_text {
        Some(raw) => {
            text.push_str("meta.json:\n");
            text.push_str(&String::from_utf8_lossy(raw));
            text.push('\n');
            if let Err(e) = BlockMeta::parse(raw, Path::new(&meta_key)) {
                text.push_str(&format!("warning: {e}\n"));
            }
        }
        None => text.push_str("meta.json: missing (a partial upload)\n"),
    }
    let prefix = format!("{id}/");
    let mut rows: Vec<(String, String)> = objects
        .iter()
        .map(|o| {
            let key = o.location.as_ref();
            (key.strip_prefix(&prefix).unwrap_or(key).to_owned(), o.size.to_string())
        })
        .collect();
    rows.sort();
    let width = rows.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    let total: u64 = objects.iter().map(|o| o.size).sum();
    text.push_str(&format!("files ({} objects, {total} bytes):\n", rows.len()));
    for (path, size) in &rows {
        text.push_str(&format!("  {path:<width$}  {size:>12}\n"));
    }
    if let Some(raw) = bucket.get_opt(&format!("{id}/{DELETION_MARK_FILENAME}")).await? {
        match DeletionMark::parse(&raw) {
            Ok(m) => text.push_str(&format!(
                "marked for deletion at {}{}\n",
                rfc3339_ms(m.deletion_time.saturating_mul(1000)),
                if m.details.is_empty() { String::new() } else { format!(": {}", m.details) }
            )),
            Err(e) => text.push_str(&format!("unreadable {DELETION_MARK_FILENAME}: {e}\n")),
        }
    }
    out.write_all(text.as_bytes()).map_err(|e| Error::io("write", "<output>", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
