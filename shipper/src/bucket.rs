//! A bucket: an `object_store` client plus the settings uploads need (part size, metadata), with
//! the few operations the Thanos layout uses, and a bounded retry for transient failures.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attributes, GetResultPayload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    WriteMultipart,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::{Error, Result};

/// Parts of one multipart upload that may be in flight at once; bounds memory to
/// `(MAX_PARTS_IN_FLIGHT + 1) * part_size`.
const MAX_PARTS_IN_FLIGHT: usize = 4;

/// An object store with the key prefix already applied, and how to upload to it.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    description: String,
    part_size: u64,
    multipart: bool,
    attributes: Attributes,
    credentials: Option<CredentialSearch>,
    /// The store itself when it is a FILESYSTEM bucket: uploads then copy files in the kernel.
    local: Option<Arc<LocalFileSystem>>,
}

/// Where a cloud store looks for credentials before it asks the instance metadata endpoint,
/// which it does when nothing else provides any. A failure to get them there then reads as
/// "no credentials found" and where they were looked for, instead of object_store's retry
/// report of the metadata requests.
#[derive(Clone, Debug)]
pub(crate) struct CredentialSearch {
    pub store: &'static str,
    /// The config fields and environment variables, in words.
    pub searched: &'static str,
    /// The metadata endpoint as the store uses it.
    pub endpoint: String,
    /// Pieces of the metadata request URLs, by which an error from them is recognised.
    pub requests: &'static [&'static str],
    /// Appended to the message (places that are not searched, say).
    pub note: &'static str,
}

impl CredentialSearch {
    /// The "no credentials" error for `e` if `e` is a failed credential request to the
    /// metadata endpoint.
    pub(crate) fn explain(&self, e: &object_store::Error) -> Option<Error> {
        let text = e.to_string();
        if !self.requests.iter().any(|r| text.contains(r)) {
            return None;
        }
        // The innermost cause says why the endpoint gave nothing (refused, timed out, 404).
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        Some(Error::NoCredentials {
            store: self.store,
            searched: self.searched,
            endpoint: self.endpoint.clone(),
            cause: cause.to_string(),
            note: self.note,
        })
    }
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// What an upload of one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadedFile {
    pub size: u64,
    /// 0 for a single PUT, else the number of multipart parts.
    pub parts: u64,
}

impl Bucket {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        prefix: String,
        description: String,
        part_size: u64,
        multipart: bool,
        attributes: Attributes,
    ) -> Bucket {
        Bucket { store, prefix, description, part_size, multipart, attributes, credentials: None, local: None }
    }

    /// Marks `store` (the one this bucket writes through, before the prefix) as a FILESYSTEM
    /// bucket, so that files are uploaded by an in-kernel copy rather than read into parts.
    pub(crate) fn with_local_files(mut self, store: Arc<LocalFileSystem>) -> Bucket {
        self.local = Some(store);
        self
    }

    /// Explains credential failures with where `search` says credentials were looked for.
    pub(crate) fn with_credential_search(mut self, search: CredentialSearch) -> Bucket {
        self.credentials = Some(search);
        self
    }

    /// The error of a failed store operation: a missing credential explained, or else the
    /// store's error with the operation and key.
    fn error(&self, op: &'static str, key: impl ToString, e: object_store::Error) -> Error {
        self.credentials.as_ref().and_then(|c| c.explain(&e)).unwrap_or_else(|| Error::bucket(op, key, e))
    }

    /// Wraps any store (e.g. `object_store::memory::InMemory`) with default upload settings.
    pub fn from_store(store: Arc<dyn ObjectStore>, description: impl Into<String>) -> Bucket {
        let attributes = Attributes::new();
        Bucket::new(store, String::new(), description.into(), crate::config::DEFAULT_PART_SIZE, true, attributes)
    }

    /// Files larger than this go up as multipart uploads of parts this size.
    pub fn with_part_size(mut self, part_size: u64) -> Bucket {
        self.part_size = part_size.max(1);
        self
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The config's prefix (already applied to every key used through this bucket).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("head", key, e)),
        }
    }

    /// An object's content, or `None` if it does not exist.
    pub async fn get_opt(&self, key: &str) -> Result<Option<Bytes>> {
        let res = match self.store.get(&ObjectPath::from(key)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("get", key, e)),
        };
        res.bytes().await.map(Some).map_err(|e| self.error("get", key, e))
    }

    /// A byte range of an object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.store.get_range(&ObjectPath::from(key), range).await.map_err(|e| self.error("get range", key, e))
    }

    /// Writes a small object in one request.
    pub async fn put_bytes(&self, key: &str, data: Bytes) -> Result<()> {
        let opts = PutOptions { attributes: self.attributes.clone(), ..Default::default() };
        self.store
            .put_opts(&ObjectPath::from(key), PutPayload::from(data), opts)
            .await
            .map(|_| ())
            .map_err(|e| self.error("put", key, e))
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        self.store.delete(&ObjectPath::from(key)).await.map_err(|e| self.error("delete", key, e))
    }

    /// Uploads a local file: one PUT up to the part size, a multipart upload above it (parts
    /// read and sent a few at a time, so memory stays bounded whatever the file size).
    pub async fn upload_file(&self, key: &str, path: &Path) -> Result<UploadedFile> {
        if let Some(local) = &self.local {
            let location = ObjectPath::from_iter(
                ObjectPath::from(self.prefix.as_str()).parts().chain(ObjectPath::from(key).parts()),
            );
            let dest = local.path_to_filesystem(&location).map_err(|e| self.error("put", key, e))?;
            let src = path.to_owned();
            let size = tokio::task::spawn_blocking(move || copy_into_local_bucket(&src, &dest))
                .await
                .map_err(|e| Error::io("upload", path, std::io::Error::other(e)))??;
            return Ok(UploadedFile { size, parts: 0 });
        }
        let mut file = tokio::fs::File::open(path).await.map_err(|e| Error::io("open", path, e))?;
        let size = file.metadata().await.map_err(|e| Error::io("stat", path, e))?.len();
        if !self.multipart || size <= self.part_size {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf).await.map_err(|e| Error::io("read", path, e))?;
            if buf.len() as u64 != size {
                return Err(changed_while_reading(path, size, buf.len() as u64));
            }
            self.put_bytes(key, Bytes::from(buf)).await?;
            return Ok(UploadedFile { size, parts: 0 });
        }

        let opts = PutMultipartOptions { attributes: self.attributes.clone(), ..Default::default() };
        let upload = self
            .store
            .put_multipart_opts(&ObjectPath::from(key), opts)
            .await
            .map_err(|e| self.error("start multipart upload", key, e))?;
        let part_size = self.part_size as usize;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
        let sent = async {
            let mut total = 0u64;
            let mut parts = 0u64;
            loop {
                let mut part = BytesMut::zeroed(part_size);
                let mut filled = 0;
                while filled < part_size {
                    let n = file.read(&mut part[filled..]).await.map_err(|e| Error::io("read", path, e))?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    break;
                }
                part.truncate(filled);
                total += filled as u64;
                parts += 1;
                writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await.map_err(|e| self.error("upload part", key, e))?;
                writer.put(part.freeze());
                debug!(key, part = parts, bytes = total, of = size, "multipart upload progress");
                if filled < part_size {
                    break;
                }
            }
            if total != size {
                return Err(changed_while_reading(path, size, total));
            }
            Ok(parts)
        }
        .await;
        match sent {
            Ok(parts) => {
                writer.finish().await.map_err(|e| self.error("complete multipart upload", key, e))?;
                Ok(UploadedFile { size, parts })
            }
            Err(e) => {
                // Leave no billed, invisible parts behind when the store allows it.
                if let Err(abort) = writer.abort().await {
                    warn!(key, error = %abort, "could not abort multipart upload");
                }
                Err(e)
            }
        }
    }

    /// Streams an object into a local file (through `<file>.tmp`, fsynced, then renamed).
    pub async fn download_file(&self, key: &str, dst: &Path) -> Result<u64> {
        let res = self.store.get(&ObjectPath::from(key)).await.map_err(|e| self.error("get", key, e))?;
        let mut tmp = dst.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let written = match res.payload {
            // A FILESYSTEM bucket hands over the file: one copy in the kernel
            // (copy_file_range) on a blocking thread, instead of a task hop per 8 KiB piece
            // read and written.
            GetResultPayload::File(file, _) => {
                let (dst, range) = (tmp.clone(), res.range);
                tokio::task::spawn_blocking(move || {
                    let mut out = File::create(&dst).map_err(|e| Error::io("create", &dst, e))?;
                    copy_range(file, range, &mut out, &dst)
                })
                .await
                .map_err(|e| Error::io("copy to", &tmp, std::io::Error::other(e)))??
            }
            GetResultPayload::Stream(mut stream) => {
                let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| Error::io("create", &tmp, e))?;
                // The body arrives in small pieces; each write is a blocking-thread hop.
                let mut buf = BytesMut::with_capacity(DOWNLOAD_WRITE_SIZE);
                let mut written = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| self.error("read", key, e))?;
                    written += chunk.len() as u64;
                    buf.extend_from_slice(&chunk);
                    if buf.len() >= DOWNLOAD_WRITE_SIZE {
                        out.write_all(&buf).await.map_err(|e| Error::io("write", &tmp, e))?;
                        buf.clear();
                    }
                }
                out.write_all(&buf).await.map_err(|e| Error::io("write", &tmp, e))?;
                out.sync_all().await.map_err(|e| Error::io("fsync", &tmp, e))?;
                written
            }
        };
        tokio::fs::rename(&tmp, dst).await.map_err(|e| Error::io("rename", &tmp, e))?;
        Ok(written)
    }

    /// Names of the top-level "directories" (common prefixes) of the bucket.
    pub async fn list_top_level(&self) -> Result<Vec<String>> {
        let res = self.store.list_with_delimiter(None).await.map_err(|e| self.error("list", "/", e))?;
        Ok(res.common_prefixes.iter().filter_map(|p| p.parts().next_back().map(|s| s.as_ref().to_owned())).collect())
    }

    /// Every object under `dir/`, recursively.
    pub async fn list_recursive(&self, dir: &str) -> Result<Vec<ObjectMeta>> {
        self.store.list(Some(&ObjectPath::from(dir))).try_collect().await.map_err(|e| self.error("list", dir, e))
    }
}

/// Bytes of a streamed download gathered before they are written.
const DOWNLOAD_WRITE_SIZE: usize = 1 << 20;

/// Copies `range` of `src` to the empty file `out` at `dst` in the kernel (`std::io::copy`
/// between files is `copy_file_range`) and fsyncs it.
fn copy_range(mut src: File, range: Range<u64>, out: &mut File, dst: &Path) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    src.seek(SeekFrom::Start(range.start)).map_err(|e| Error::io("seek", dst, e))?;
    let want = range.end - range.start;
    let copied = std::io::copy(&mut src.take(want), out).map_err(|e| Error::io("copy to", dst, e))?;
    if copied != want {
        let reason = format!("the source ended after {copied} of its {want} bytes");
        return Err(Error::io("copy to", dst, std::io::Error::other(reason)));
    }
    out.sync_all().map_err(|e| Error::io("fsync", dst, e))?;
    Ok(copied)
}

/// Uploads `src` to `dest` in a FILESYSTEM bucket as object_store's `LocalFileSystem` (with
/// fsync) writes an object: into a staging file `<dest>#<n>`, which its listings skip, then
/// renamed into place, with the file and the directories it changed fsynced. The bytes are
/// copied in the kernel, as Thanos's `io.Copy` into its FILESYSTEM bucket does.
fn copy_into_local_bucket(src: &Path, dest: &Path) -> Result<u64> {
    let file = File::open(src).map_err(|e| Error::io("open", src, e))?;
    let size = file.metadata().map_err(|e| Error::io("stat", src, e))?.len();
    let Some(parent) = dest.parent() else {
        return Err(Error::io("upload to", dest, std::io::Error::other("the path has no parent directory")));
    };
    // The directories this upload creates, deepest first: each is fsynced into its parent.
    let created: Vec<&Path> = parent.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))?;
    let (mut out, staged) = create_staging_file(dest)?;
    let copied = copy_range(file, 0..size, &mut out, &staged)
        .and_then(|n| std::fs::rename(&staged, dest).map(|()| n).map_err(|e| Error::io("rename", &staged, e)));
    if copied.is_err() {
        // Best effort: the copy's error is the one to report.
        let _ = std::fs::remove_file(&staged);
    }
    let copied = copied?;
    let synced = std::iter::once(parent).chain(created.iter().filter_map(|d| d.parent()));
    for dir in synced {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("fsync", dir, e))?;
    }
    Ok(copied)
}

/// A new staging file `<dest>#<n>` for the first `n` not taken, as `LocalFileSystem` names them.
fn create_staging_file(dest: &Path) -> Result<(File, PathBuf)> {
    for n in 1u32.. {
        let mut path = dest.as_os_str().to_owned();
        path.push(format!("#{n}"));
        let path = PathBuf::from(path);
        match File::options().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create", &path, e)),
        }
    }
    Err(Error::io("create", dest, std::io::Error::other("every staging file name is taken")))
}

fn changed_while_reading(path: &Path, expected: u64, got: u64) -> Error {
    Error::io(
        "read",
        path,
        std::io::Error::other(format!("file changed while uploading: size was {expected}, read {got} bytes")),
    )
}

/// Bounded exponential backoff for whole operations (one file, one existence check) on top of
/// object_store's per-request retries: a store that is down for a minute does not fail a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in total, at least 1.
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 5, initial_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// Runs `op` until it succeeds, fails with a non-transient error, or the attempts run out.
    pub async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut backoff = self.initial_backoff;
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt < self.attempts.max(1) => {
                    warn!(what, attempt, error = %e, retry_in = ?backoff, "transient bucket error, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
