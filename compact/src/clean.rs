//! Retention and garbage collection, Thanos's way: retention and compaction only ever write
//! deletion marks; a marked block is deleted once its mark is older than `--delete-delay`, so
//! every reader has long stopped using it; uploads abandoned for two days are deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_shipper::markers::{DeletionMark, DELETION_MARK_FILENAME};
use strata_shipper::{resolution, Bucket};
use strata_tsdb::block::meta::{BlockMeta, META_FILENAME};
use ulid::Ulid;

use crate::Result;

/// How long an upload without meta.json may sit before it counts as abandoned (Thanos's
/// `PartialUploadThresholdAge`).
pub const PARTIAL_UPLOAD_THRESHOLD: Duration = Duration::from_secs(2 * 24 * 3600);

/// Retention per resolution (`--retention.resolution-raw/-5m/-1h`); zero keeps forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub raw: Duration,
    pub five_minutes: Duration,
    pub one_hour: Duration,
}

impl Retention {
    fn for_resolution(&self, res: i64) -> Duration {
        match res {
            0 => self.raw,
            300_000 => self.five_minutes,
            3_600_000 => self.one_hour,
            _ => Duration::ZERO,
        }
    }
}

/// Blocks whose data is all older than their resolution's retention at `now_ms` (Thanos's
/// `ApplyRetentionPolicyByResolution`: max time before now minus the retention).
pub fn expired(metas: &[BlockMeta], retention: &Retention, now_ms: i64) -> Vec<Ulid> {
    metas
        .iter()
        .filter(|m| {
            let keep = retention.for_resolution(resolution(m));
            let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            !keep.is_zero() && m.max_time < now_ms.saturating_sub(keep_ms)
        })
        .map(|m| m.ulid)
        .collect()
}

/// Marked blocks whose mark is older than `delete_delay` at `now_ms`. Measured in milliseconds,
/// as Thanos measures it (`time.Since`), so that with no delay a mark of this very second is due.
pub fn due_for_deletion(marks: &BTreeMap<Ulid, DeletionMark>, delete_delay: Duration, now_ms: i64) -> Vec<Ulid> {
    let delay = i64::try_from(delete_delay.as_millis()).unwrap_or(i64::MAX);
    marks
        .iter()
        .filter(|(_, m)| now_ms.saturating_sub(m.deletion_time.saturating_mul(1000)) > delay)
        .map(|(&id, _)| id)
        .collect()
}

/// Partial uploads (no meta.json) whose ULID is older than [`PARTIAL_UPLOAD_THRESHOLD`].
pub fn abandoned_partials(partial: &[Ulid], now_ms: u64) -> Vec<Ulid> {
    let threshold = PARTIAL_UPLOAD_THRESHOLD.as_millis() as u64;
    partial.iter().filter(|id| now_ms.saturating_sub(id.timestamp_ms()) > threshold).copied().collect()
}

/// Deletes a block from the bucket as Thanos's `block.Delete` does: meta.json first (so the
/// block turns partial and no reader picks it up again), then every other object, the
/// deletion mark last (so an interrupted delete is found and finished next time).
pub async fn delete_block(bucket: &Bucket, id: Ulid) -> Result<()> {
    let meta_key = format!("{id}/{META_FILENAME}");
    let mark_key = format!("{id}/{DELETION_MARK_FILENAME}");
    if bucket.exists(&meta_key).await? {
        bucket.delete(&meta_key).await?;
    }
    let mut has_mark = false;
    for o in bucket.list_recursive(&id.to_string()).await? {
        // Keys are relative to the bucket's prefix: the store applies it.
        let rel = o.location.as_ref();
        if rel == mark_key {
            has_mark = true;
            continue;
        }
        if rel != meta_key {
            bucket.delete(rel).await?;
        }
    }
    if has_mark {
        bucket.delete(&mark_key).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn retention_per_resolution() {
        let now = 100 * 24 * HOUR;
        let mut metas = Vec::new();
        for (i, res) in [0i64, 300_000, 3_600_000].into_iter().enumerate() {
            for (j, age_days) in [1i64, 10, 40].into_iter().enumerate() {
                let max = now - age_days * 24 * HOUR;
                let mut m = crate::test_meta((i * 10 + j) as u128 + 1, max - 2 * HOUR, max);
                let mut thanos = strata_tsdb::block::meta::ThanosMeta::default();
                thanos.downsample.resolution = res;
                m.thanos = Some(thanos);
                metas.push(m);
            }
        }
        let day = Duration::from_secs(24 * 3600);
        let r = Retention { raw: 5 * day, five_minutes: 30 * day, one_hour: Duration::ZERO };
        let got: Vec<u128> = expired(&metas, &r, now).iter().map(|u| u.0).collect();
        // Raw: 10 and 40 days old go; 5m: only 40 days; 1h: kept forever.
        assert_eq!(got, vec![2, 3, 13]);
        assert!(expired(&metas, &Retention::default(), now).is_empty());
        // A block ending exactly at the retention edge stays.
        let edge = crate::test_meta(99, now - 5 * 24 * HOUR - 1, now - 5 * 24 * HOUR);
        assert!(expired(&[edge], &r, now).is_empty());
    }

    #[test]
    fn deletion_after_delay() {
        let mark = |t: i64| DeletionMark { id: Ulid(1), version: 1, details: String::new(), deletion_time: t };
        let marks = BTreeMap::from([(Ulid(1), mark(1_000)), (Ulid(2), mark(5_000)), (Ulid(3), mark(10_000))]);
        let got = due_for_deletion(&marks, Duration::from_secs(4_000), 9_001_000);
        assert_eq!(got, vec![Ulid(1), Ulid(2)]);
        assert_eq!(due_for_deletion(&marks, Duration::ZERO, 10_001_000).len(), 3);
        // Without a delay, a mark of this second is due a millisecond later.
        assert_eq!(due_for_deletion(&marks, Duration::ZERO, 10_000_001), vec![Ulid(1), Ulid(2), Ulid(3)]);
        assert_eq!(due_for_deletion(&marks, Duration::ZERO, 10_000_000), vec![Ulid(1), Ulid(2)]);
        assert!(due_for_deletion(&marks, Duration::from_secs(48 * 3600), 10_001_000).is_empty());
    }

    #[test]
    fn abandoned_after_two_days() {
        let now_ms = 10 * 24 * 3_600_000u64;
        let young = Ulid::from_parts(now_ms - 3_600_000, 1);
        let old = Ulid::from_parts(now_ms - 49 * 3_600_000, 2);
        let future = Ulid::from_parts(now_ms + 3_600_000, 3);
        assert_eq!(abandoned_partials(&[young, old, future], now_ms), vec![old]);
    }
}
