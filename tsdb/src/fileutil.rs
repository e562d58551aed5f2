//! Durable file writes: whole small files replaced atomically, directory fsyncs, and the
//! positioned buffered writer the block files are written through; and the memory maps block
//! files are read through.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{Mmap, UncheckedAdvice};

use crate::{Error, Result};

/// A read-only memory map of a whole file that is never modified once in place (a block's
/// index and chunk segments), shared by every [`Bytes`] cut from it: views stay valid after
/// the reader that made them is dropped.
#[derive(Clone)]
pub struct FileMap(Arc<Mmap>);

impl FileMap {
    /// Maps `file`, opened from `path` (named in errors).
    pub fn map(file: &File, path: &Path) -> Result<FileMap> {
        // SAFETY: mapping a file is unsound only if it changes while mapped. Block files are
        // written under a temporary name and never modified once renamed into place, so the
        // mapping is effectively immutable. A file truncated underneath us by another process
        // would still raise SIGBUS on access; nothing in Strata does that.
        let map = unsafe { Mmap::map(file) }.map_err(|e| Error::io("mmap", path, e))?;
        Ok(FileMap::from_map(map))
    }

    /// Shares a map made elsewhere; its maker answers for what [`FileMap::map`] promises.
    pub fn from_map(map: Mmap) -> FileMap {
        FileMap(Arc::new(map))
    }

    /// The whole file as shared bytes.
    pub fn bytes(&self) -> Bytes {
        Bytes::from_owner(self.clone())
    }

    /// See [`release_pages`].
    pub fn release_pages(&self) {
        release_pages(&self.0);
    }
}

impl AsRef<[u8]> for FileMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Unmaps the pages of `map` read so far from the process. They stay in the page cache, and
/// a later read maps them again, so nothing is lost: a scan that reads a file once (a block
/// compacted, downsampled or verified; the head chunk files at open) does not leave the file's
/// bytes counted in the process's resident memory.
pub fn release_pages(map: &Mmap) {
    // SAFETY: the map is a shared, read-only file mapping: dropping its pages loses nothing,
    // the next access reads the file again.
    if let Err(error) = unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) } {
        tracing::debug!(%error, "madvise(MADV_DONTNEED) on a file map failed");
    }
}

/// Replaces `path` with `contents` so that a crash leaves either the old file or the new one,
/// never a mix, and the new one survives once this returns: the bytes go to `<path>.tmp` beside
/// it, which is fsynced and renamed over `path`, and then the directory is fsynced so the rename
/// itself is on disk. A failed write removes the temporary file again.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = File::create(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))
        .and_then(|mut f| {
            f.write_all(contents).map_err(|e| Error::io("write", &tmp, e))?;
            f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e)));
    if written.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(parent_dir(path))
}

/// Fsyncs a directory so that entries created, renamed or removed in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("fsync directory", dir, e))
}

/// The directory a path's entry lives in; `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A buffered file writer that knows its position, for sections that record their offsets.
pub(crate) struct FileWriter {
    out: BufWriter<File>,
    pos: u64,
    path: PathBuf,
}

impl FileWriter {
    /// Creates (or truncates) `path`.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let f = File::create(path).map_err(|e| Error::io("create", path, e))?;
        Ok(FileWriter { out: BufWriter::with_capacity(1 << 20, f), pos: 0, path: path.to_owned() })
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).map_err(|e| Error::io("write", &self.path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Zero bytes up to the next multiple of `align`.
    pub(crate) fn pad(&mut self, align: u64) -> Result<()> {
        const ZEROS: [u8; 16] = [0; 16];
        let n = (align - self.pos % align) % align;
        self.write(&ZEROS[..n as usize])
    }

    /// Flushes and fsyncs; the file is complete on disk when this returns.
    pub(crate) fn finish(self) -> Result<()> {
        let path = self.path;
        let f = self.out.into_inner().map_err(|e| Error::io("write", &path, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io("fsync", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.json");
        write_atomic(&path, b"old").unwrap();
        // The temporary name is taken by a directory, so creating it fails.
        std::fs::create_dir(dir.path().join("meta.json.tmp")).unwrap();
        assert!(write_atomic(&path, b"new").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        // A directory that does not exist is an error too, not a panic.
        assert!(write_atomic(&dir.path().join("missing").join("f"), b"x").is_err());
    }

    #[test]
    fn bare_file_names_live_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("f")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/f")), Path::new("a"));
    }
}
