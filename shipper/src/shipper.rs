//! The shipper: uploads finished level-1 blocks (optionally compacted ones too) of a TSDB directory to the bucket in the Thanos
//! layout, remembering what it uploaded in `thanos.shipper.json` (Thanos's file and format).
//!
//! Per block the order is `chunks/*`, `index`, then `meta.json` with the `thanos` section: a
//! block without `meta.json` in the bucket is a partial upload that readers ignore, and the next
//! sync uploads it again from the start (re-putting an object replaces it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_tsdb::block::meta::{BlockMeta, ThanosFile, META_FILENAME};
use tracing::{debug, info, warn};
use ulid::Ulid;

use crate::bucket::{Bucket, RetryPolicy};
use crate::{Error, Result};

/// Name of the state file in the TSDB directory (Thanos's default `--shipper.meta-file-name`).
pub const STATE_FILENAME: &str = "thanos.shipper.json";
const STATE_VERSION: u32 = 1;

/// Counters for `/metrics`, named as Thanos names them.
#[derive(Debug, Default)]
pub struct ShipperMetrics {
    /// `thanos_shipper_uploads_total`: blocks uploaded.
    pub uploads_total: AtomicU64,
    /// `thanos_shipper_upload_failures_total`: block uploads that failed.
    pub upload_failures_total: AtomicU64,
    /// `thanos_shipper_dir_syncs_total`: sync passes over the directory.
    pub dir_syncs_total: AtomicU64,
    /// `thanos_shipper_dir_sync_failures_total`: sync passes that ended with an error.
    pub dir_sync_failures_total: AtomicU64,
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Blocks uploaded by this sync.
    pub uploaded: usize,
    /// Blocks found complete in the bucket already and now recorded as uploaded.
    pub already_in_bucket: usize,
    /// Blocks not to be shipped (no samples, or compacted).
    pub skipped: usize,
    /// Bytes uploaded by this sync.
    pub bytes: u64,
}

/// `thanos.shipper.json`.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    version: u32,
    /// Go writes `null` for an empty list.
    #[serde(default, deserialize_with = "null_as_empty")]
    uploaded: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Uploads the blocks of one TSDB directory.
pub struct Shipper {
    bucket: Bucket,
    dir: PathBuf,
    /// Replaced when the source's external labels change (a sidecar re-reads Prometheus's).
    labels: Mutex<BTreeMap<String, String>>,
    source: String,
    /// Upload blocks of any compaction level, not only level 1 (Thanos's
    /// `--shipper.upload-compacted`, for a Prometheus that compacted blocks before a sidecar
    /// ran beside it).
    upload_compacted: bool,
    retry: RetryPolicy,
    metrics: Arc<ShipperMetrics>,
    uploaded: Mutex<BTreeSet<Ulid>>,
    /// One sync at a time per directory.
    sync_lock: tokio::sync::Mutex<()>,
}

impl Shipper {
    /// A shipper for the blocks in `tsdb_dir`. `external_labels` become the blocks' Thanos
    /// labels (their stream identity) and must not be empty; `source` is the component name
    /// written into meta.json (`receive`, `sidecar`, `ruler`).
    pub fn new(
        bucket: Bucket,
        tsdb_dir: impl Into<PathBuf>,
        external_labels: BTreeMap<String, String>,
        source: &str,
    ) -> Result<Shipper> {
        if external_labels.is_empty() {
            return Err(Error::InvalidShipper(
                "no external labels configured: blocks uploaded without them cannot be told apart from other \
                 sources' blocks; add at least one, e.g. --label 'replica=\"0\"'"
                    .into(),
            ));
        }
        let dir = tsdb_dir.into();
        let uploaded = read_state(&dir.join(STATE_FILENAME)).into_iter().collect();
        Ok(Shipper {
            bucket,
            dir,
            labels: Mutex::new(external_labels),
            source: source.to_owned(),
            upload_compacted: false,
            retry: RetryPolicy::default(),
            metrics: Arc::default(),
            uploaded: Mutex::new(uploaded),
            sync_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// How hard to retry a failing file upload or existence check within one sync.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Shipper {
        self.retry = retry;
        self
    }

    /// Uploads compacted blocks too.
    pub fn with_upload_compacted(mut self, upload_compacted: bool) -> Shipper {
        self.upload_compacted = upload_compacted;
        self
    }

    /// The labels later uploads carry; empty labels are refused, as at [`Shipper::new`], and
    /// leave the current ones.
    pub fn set_external_labels(&self, labels: BTreeMap<String, String>) -> bool {
        if labels.is_empty() {
            return false;
        }
        if let Ok(mut current) = self.labels.lock() {
            *current = labels;
        }
        true
    }

    pub fn metrics(&self) -> Arc<ShipperMetrics> {
        self.metrics.clone()
    }

    /// Whether the block is recorded as shipped, so local retention may delete it.
    pub fn is_uploaded(&self, id: Ulid) -> bool {
        self.uploaded.lock().is_ok_and(|u| u.contains(&id))
    }

    /// One pass over the directory: uploads every block not yet shipped, oldest first, and
    /// rewrites the state file. Fails (after finishing the other blocks) if any block failed.
    pub async fn sync(&self) -> Result<SyncStats> {
        let _guard = self.sync_lock.lock().await;
        self.metrics.dir_syncs_total.fetch_add(1, Ordering::Relaxed);
        let res = self.sync_locked().await;
        if res.is_err() {
            self.metrics.dir_sync_failures_total.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    async fn sync_locked(&self) -> Result<SyncStats> {
        let state_path = self.dir.join(STATE_FILENAME);
        let previously: BTreeSet<Ulid> = read_state(&state_path).into_iter().collect();
        let (metas, unreadable) = local_blocks(&self.dir)?;

        let mut stats = SyncStats::default();
        // Rebuilt from the blocks still on disk, so deleted blocks drop out of the file.
        let mut uploaded = Vec::new();
        let mut failed = 0usize;
        let mut first_error = None;
        for (id, err) in unreadable {
            if previously.contains(&id) {
                uploaded.push(id);
            } else {
                warn!(block = %id, error = %err, "cannot read block meta.json; not uploading it");
                failed += 1;
                first_error.get_or_insert(err.to_string());
            }
        }
        for meta in metas {
            let id = meta.ulid;
            if previously.contains(&id) {
                uploaded.push(id);
                continue;
            }
            if meta.stats.num_samples == 0 {
                debug!(block = %id, "block has no samples; not uploading");
                stats.skipped += 1;
                continue;
            }
            if meta.compaction.level > 1 && !self.upload_compacted {
                info!(block = %id, level = meta.compaction.level, "compacted block; only level-1 blocks are uploaded");
                stats.skipped += 1;
                continue;
            }
            let meta_key = format!("{id}/{META_FILENAME}");
            match self.retry.run("check block in bucket", || self.bucket.exists(&meta_key)).await {
                Ok(true) => {
                    info!(block = %id, "block already in the bucket; recording it as uploaded");
                    stats.already_in_bucket += 1;
                    uploaded.push(id);
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(block = %id, error = %e, "cannot check whether the block is in the bucket");
                    failed += 1;
                    first_error.get_or_insert(e.to_string());
                    continue;
                }
            }
            match self.upload_block(&meta).await {
                Ok(bytes) => {
                    self.metrics.uploads_total.fetch_add(1, Ordering::Relaxed);
                    stats.uploaded += 1;
                    stats.bytes += bytes;
                    uploaded.push(id);
                }
                Err(e) => {
                    self.metrics.upload_failures_total.fetch_add(1, Ordering::Relaxed);
                    warn!(block = %id, error = %e, "block upload failed; it will be uploaded again on the next sync");
                    failed += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }

        write_state(&state_path, &uploaded)?;
        if let Ok(mut set) = self.uploaded.lock() {
            *set = uploaded.iter().copied().collect();
        }
        match first_error {
            Some(first_error) => Err(Error::SyncIncomplete { uploaded: stats.uploaded, failed, first_error }),
            None => Ok(stats),
        }
    }

    /// Uploads one block with this shipper's labels and source; returns the bytes sent.
    async fn upload_block(&self, local: &BlockMeta) -> Result<u64> {
        let mut meta = local.clone();
        let mut thanos = meta.thanos.take().unwrap_or_default();
        thanos.version = Some(1);
        thanos.labels = self.labels.lock().map(|l| l.clone()).unwrap_or_default();
        thanos.source = self.source.clone();
        meta.thanos = Some(thanos);
        upload_block(&self.bucket, &self.retry, &self.dir.join(local.ulid.to_string()), meta).await
    }
}

/// Uploads the block in `block_dir` (`chunks/*`, `index`, then `meta.json` last) with `meta`,
/// whose `thanos` section (labels, source, resolution) the caller has set; the segment files,
/// file list and upload time are filled in here. Returns the bytes sent.
pub async fn upload_block(bucket: &Bucket, retry: &RetryPolicy, block_dir: &Path, mut meta: BlockMeta) -> Result<u64> {
    let id = meta.ulid;
    let started = Instant::now();

    let chunks_dir = block_dir.join("chunks");
    let mut segments = Vec::new();
    let entries = std::fs::read_dir(&chunks_dir).map_err(|e| Error::io("read dir", &chunks_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read dir", &chunks_dir, e))?;
        let md = entry.metadata().map_err(|e| Error::io("stat", entry.path(), e))?;
        if md.is_file() {
            if let Some(name) = entry.file_name().to_str() {
                segments.push((name.to_owned(), md.len()));
            }
        }
    }
    segments.sort();
    let index_path = block_dir.join("index");
    let index_size = std::fs::metadata(&index_path).map_err(|e| Error::io("stat", &index_path, e))?.len();

    let mut files: Vec<ThanosFile> = segments
        .iter()
        .map(|(name, size)| ThanosFile { rel_path: format!("chunks/{name}"), size_bytes: Some(*size), hash: None })
        .collect();
    files.push(ThanosFile { rel_path: "index".into(), size_bytes: Some(index_size), hash: None });
    files.push(ThanosFile { rel_path: META_FILENAME.into(), size_bytes: None, hash: None });
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    let total: u64 = files.iter().filter_map(|f| f.size_bytes).sum();
    info!(block = %id, files = files.len(), bytes = total, "uploading block");

    let mut sent = 0u64;
    let uploads = segments.iter().map(|(name, _)| format!("chunks/{name}")).chain(std::iter::once("index".to_owned()));
    for rel in uploads {
        let key = format!("{id}/{rel}");
        let path = block_dir.join(&rel);
        let file_started = Instant::now();
        let up = retry.run("upload file", || bucket.upload_file(&key, &path)).await?;
        sent += up.size;
        debug!(block = %id, file = %rel, bytes = up.size, parts = up.parts, ms = file_started.elapsed().as_millis() as u64,
               done = sent, of = total, "uploaded file");
    }

    let mut thanos = meta.thanos.take().unwrap_or_default();
    thanos.segment_files = segments.iter().map(|(name, _)| name.clone()).collect();
    thanos.files = files;
    thanos.upload_time = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    meta.thanos = Some(thanos);
    let meta_json = Bytes::from(meta.to_json());
    let meta_key = format!("{id}/{META_FILENAME}");
    retry.run("upload meta.json", || bucket.put_bytes(&meta_key, meta_json.clone())).await?;
    sent += meta_json.len() as u64;

    let secs = started.elapsed().as_secs_f64();
    info!(block = %id, bytes = sent, duration_ms = (secs * 1000.0) as u64,
          mib_per_s = format!("{:.1}", sent as f64 / (1 << 20) as f64 / secs.max(1e-9)), "uploaded block");
    Ok(sent)
}

/// Readable block metas, and the blocks whose meta.json could not be read.
type LocalBlocks = (Vec<BlockMeta>, Vec<(Ulid, Error)>);

/// Block directories (names that are ULIDs) with their meta.json, sorted by minTime; blocks
/// whose meta.json cannot be read are returned apart.
fn local_blocks(dir: &Path) -> Result<LocalBlocks> {
    let mut metas = Vec::new();
    let mut unreadable = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("read dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read dir", dir, e))?;
        // Exactly the canonical (upper-case) text, as Prometheus names block directories.
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| Ulid::from_string(n).ok().filter(|id| id.to_string() == n)) else {
            continue;
        };
        if !entry.file_type().map_err(|e| Error::io("stat", entry.path(), e))?.is_dir() {
            continue;
        }
        match BlockMeta::read(&entry.path()) {
            Ok(m) => metas.push(m),
            Err(e) => unreadable.push((id, Error::from(e))),
        }
    }
    metas.sort_by_key(|m| (m.min_time, m.ulid));
    Ok((metas, unreadable))
}

/// The uploaded ULIDs in the state file; a missing or unreadable file counts as empty (the
/// bucket check then finds blocks uploaded before).
fn read_state(path: &Path) -> Vec<Ulid> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            info!(path = %path.display(), "no shipper state file yet; starting empty");
            return Vec::new();
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read shipper state file; starting empty");
            return Vec::new();
        }
    };
    let state: State = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "corrupt shipper state file; starting empty");
            return Vec::new();
        }
    };
    if state.version != STATE_VERSION {
        warn!(path = %path.display(), version = state.version, "unknown shipper state file version; starting empty");
        return Vec::new();
    }
    let mut ids = Vec::with_capacity(state.uploaded.len());
    for s in &state.uploaded {
        match Ulid::from_string(s) {
            Ok(id) => ids.push(id),
            Err(_) => warn!(path = %path.display(), entry = %s, "ignoring invalid ULID in shipper state file"),
        }
    }
    ids
}

/// Writes the state file as Thanos does: tab-indented JSON, replaced atomically (through
/// `.tmp`).
fn write_state(path: &Path, uploaded: &[Ulid]) -> Result<()> {
    let state = State { version: STATE_VERSION, uploaded: uploaded.iter().map(Ulid::to_string).collect() };
    let mut text = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut text, serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    // A struct of a number and strings always serialises.
    let _ = state.serialize(&mut ser);
    Ok(strata_tsdb::fileutil::write_atomic(path, &text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trip_and_tolerance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILENAME);
        assert!(read_state(&path).is_empty());
        let ids = vec![Ulid::new(), Ulid::new()];
        write_state(&path, &ids).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("{{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"{}\",\n\t\t\"{}\"\n\t]\n}}", ids[0], ids[1])
        );
        assert_eq!(read_state(&path), ids);
        for bad in ["{", "{\"version\":2,\"uploaded\":[]}", ""] {
            std::fs::write(&path, bad).unwrap();
            assert!(read_state(&path).is_empty(), "{bad}");
        }
        std::fs::write(&path, "{\"version\":1,\"uploaded\":null}").unwrap();
        assert!(read_state(&path).is_empty());
    }

    #[test]
    fn refuses_empty_external_labels() {
        let bucket = Bucket::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
        let err = Shipper::new(bucket, "/nonexistent", BTreeMap::new(), "receive").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("--label 'replica=\"0\"'")));
    }
}
