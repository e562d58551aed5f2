//! The compactor's downsampling passes (Thanos's `downsampleBucket`): a raw block spanning at
//! least 40h becomes a 5m block, a 5m block spanning at least 10 days a 1h block, unless blocks
//! of the target resolution already hold all its sources. The block is written by
//! `strata_tsdb::downsample::downsample_block`, byte for byte as Thanos writes it, and uploaded
//! with the (replica-label-free) labels of its source; the source stays, for retention per
//! resolution to remove.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use futures::StreamExt;
use strata_shipper::{download_block, resolution, upload_block};
use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::block::Block;
use strata_tsdb::downsample::{
    downsample_block, RAW_DOWNSAMPLE_RANGE, RES_1H, RES_5M, RES_5M_DOWNSAMPLE_RANGE, RES_RAW,
};
use tracing::info;
use ulid::Ulid;

use crate::compactor::{remove_dir, Compactor};
use crate::group::group_key;
use crate::{Error, Result};

/// The resolution `m` is to be downsampled to, if it is due: long enough, and not yet covered
/// by blocks of the next resolution (`done_5m`, `done_1h`: their sources).
pub(crate) fn due(m: &BlockMeta, done_5m: &HashSet<Ulid>, done_1h: &HashSet<Ulid>) -> Option<i64> {
    let (target, min_span, done) = match resolution(m) {
        RES_RAW => (RES_5M, RAW_DOWNSAMPLE_RANGE, done_5m),
        RES_5M => (RES_1H, RES_5M_DOWNSAMPLE_RANGE, done_1h),
        _ => return None,
    };
    let missing = m.compaction.sources.iter().any(|s| !done.contains(s));
    (missing && m.max_time - m.min_time >= min_span).then_some(target)
}

impl Compactor {
    /// Two passes, as Thanos runs them, so that a 5m block made by the first is downsampled to
    /// 1h by the second. Blocks with a no-downsample mark are left out (Thanos's
    /// `GatherNoDownsampleMarkFilter`); `downsample_concurrency` blocks are downsampled at once.
    /// Also `tools bucket downsample`.
    pub async fn downsample_all(&self) -> Result<()> {
        for _ in 0..2 {
            let synced = self.sync().await?;
            let sources_at = |res: i64| -> HashSet<Ulid> {
                synced
                    .metas
                    .iter()
                    .filter(|m| resolution(m) == res)
                    .flat_map(|m| m.compaction.sources.iter().copied())
                    .collect()
            };
            let (done_5m, done_1h) = (sources_at(RES_5M), sources_at(RES_1H));
            let mut todo = Vec::new();
            for m in &synced.metas {
                let Some(target) = due(m, &done_5m, &done_1h) else { continue };
                if synced.no_downsample.contains(&m.ulid) {
                    info!(block = %m.ulid, "block marked no-downsample; not downsampling it");
                    continue;
                }
                todo.push((m, target));
            }
            let results: Vec<Result<()>> = futures::stream::iter(todo.into_iter().map(|(m, target)| async move {
                let labels = m.thanos.as_ref().map(|t| t.labels.clone()).unwrap_or_default();
                let group = group_key(resolution(m), &labels);
                let dir = self.options.data_dir.join("downsample").join(m.ulid.to_string());
                let result = self.downsample_one(m, target, &dir).await;
                if let Err(e) = remove_dir(&dir) {
                    tracing::warn!(block = %m.ulid, error = %e, "removing the downsampling scratch directory failed");
                }
                let counter =
                    if result.is_ok() { &self.metrics().downsamples } else { &self.metrics().downsample_failures };
                counter.get_or_create(&self.metrics().group(&group)).inc();
                result
            }))
            .buffer_unordered(self.options.downsample_concurrency.max(1))
            .collect()
            .await;
            results.into_iter().collect::<Result<Vec<()>>>()?;
        }
        Ok(())
    }

    async fn downsample_one(&self, m: &BlockMeta, target: i64, dir: &Path) -> Result<()> {
        let started = Instant::now();
        remove_dir(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create dir", dir, e))?;
        let src = download_block(&self.bucket, m.ulid, dir, self.options.block_files_concurrency).await?;
        let out = dir.join("out");
        std::fs::create_dir_all(&out).map_err(|e| Error::io("create dir", &out, e))?;
        let written = out.clone();
        let mut meta = tokio::task::spawn_blocking(move || -> Result<BlockMeta> {
            let block = Block::open(&src)?;
            Ok(downsample_block(&block, target, &written)?)
        })
        .await
        .map_err(|e| Error::Task("downsample", e.to_string()))??;
        // The synced labels, without replica labels, as Thanos's downsampler takes them.
        if let (Some(t), Some(from)) = (meta.thanos.as_mut(), m.thanos.as_ref()) {
            t.labels = from.labels.clone();
        }
        let id = meta.ulid;
        let sent = upload_block(&self.bucket, &self.retry, &out.join(id.to_string()), meta).await?;
        info!(from = %m.ulid, block = %id, resolution_ms = target, bytes = sent,
              duration_ms = started.elapsed().as_millis() as u64, "downsampled block uploaded");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_meta;

    fn at(res: i64, id: u128, span: i64, sources: &[u128]) -> BlockMeta {
        let mut m = test_meta(id, 0, span);
        m.compaction.sources = sources.iter().map(|&s| Ulid(s)).collect();
        m.thanos = Some(Default::default());
        if let Some(t) = m.thanos.as_mut() {
            t.downsample.resolution = res;
        }
        m
    }

    #[test]
    fn blocks_are_due_once_long_enough_and_not_yet_covered() {
        let none = HashSet::new();
        assert_eq!(due(&at(RES_RAW, 1, RAW_DOWNSAMPLE_RANGE, &[1]), &none, &none), Some(RES_5M));
        assert_eq!(due(&at(RES_RAW, 1, RAW_DOWNSAMPLE_RANGE - 1, &[1]), &none, &none), None);
        assert_eq!(due(&at(RES_5M, 2, RES_5M_DOWNSAMPLE_RANGE, &[1]), &none, &none), Some(RES_1H));
        assert_eq!(due(&at(RES_5M, 2, RES_5M_DOWNSAMPLE_RANGE - 1, &[1]), &none, &none), None);
        assert_eq!(due(&at(RES_1H, 3, i64::MAX / 2, &[1]), &none, &none), None);
        // Covered: every source is in a block of the next resolution; one missing is enough.
        let done: HashSet<Ulid> = [Ulid(1), Ulid(2)].into();
        assert_eq!(due(&at(RES_RAW, 9, RAW_DOWNSAMPLE_RANGE, &[1, 2]), &done, &none), None);
        assert_eq!(due(&at(RES_RAW, 9, RAW_DOWNSAMPLE_RANGE, &[1, 3]), &done, &none), Some(RES_5M));
        assert_eq!(due(&at(RES_5M, 9, RES_5M_DOWNSAMPLE_RANGE, &[1, 2]), &none, &done), None);
    }
}
