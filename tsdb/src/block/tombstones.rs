//! The `tombstones` file: deleted time ranges per series.
//!
//! `BE32 magic 0130BA30 | u8 version 1 | (uvarint series ref, varint mint, varint maxt)* |
//! BE32 CRC32C` with the CRC over the entries only (not the version byte). A missing file
//! means no tombstones.

use std::path::Path;

use crate::encoding::{put_be32, Decbuf};
use crate::fileutil::write_atomic;
use crate::{Error, Result};

const MAGIC: [u8; 4] = [0x01, 0x30, 0xBA, 0x30];
const VERSION: u8 = 1;
/// Name of the file in a block directory.
pub const TOMBSTONES_FILENAME: &str = "tombstones";

/// Samples of series `series_ref` in `[min_time, max_time]` (inclusive) are deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tombstone {
    pub series_ref: u64,
    pub min_time: i64,
    pub max_time: i64,
}

/// Reads `<block_dir>/tombstones`; a missing file is no tombstones.
pub fn read_tombstones(block_dir: &Path) -> Result<Vec<Tombstone>> {
    let path = block_dir.join(TOMBSTONES_FILENAME);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    parse(&data).map_err(|reason| Error::CorruptFile { path, reason: reason.into() })
}

fn parse(data: &[u8]) -> std::result::Result<Vec<Tombstone>, &'static str> {
    let mut d = Decbuf::new(data);
    if d.bytes(4)? != MAGIC {
        return Err("bad magic, not a tombstones file");
    }
    if d.byte()? != VERSION {
        return Err("unknown tombstones format version");
    }
    let entries_len = d.remaining().checked_sub(4).ok_or("too short for its CRC")?;
    let entries = d.bytes(entries_len)?;
    if d.be32()? != crc32c::crc32c(entries) {
        return Err("CRC32C mismatch");
    }
    let mut d = Decbuf::new(entries);
    let mut out = Vec::new();
    while d.remaining() > 0 {
        out.push(Tombstone { series_ref: d.uvarint()?, min_time: d.varint()?, max_time: d.varint()? });
    }
    Ok(out)
}

/// Writes the 9-byte empty tombstones file Prometheus puts in every new block, atomically
/// (through `tombstones.tmp`).
pub fn write_empty_tombstones(block_dir: &Path) -> Result<()> {
    let mut content = MAGIC.to_vec();
    content.push(VERSION);
    // CRC32C of no bytes.
    put_be32(&mut content, crc32c::crc32c(&[]));
    write_atomic(&block_dir.join(TOMBSTONES_FILENAME), &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_prometheus_bytes() {
        let dir = tempfile::tempdir().unwrap();
        write_empty_tombstones(dir.path()).unwrap();
        let bytes = std::fs::read(dir.path().join(TOMBSTONES_FILENAME)).unwrap();
        assert_eq!(bytes, [0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0]);
        assert_eq!(read_tombstones(dir.path()).unwrap(), vec![]);
    }

    #[test]
    fn reads_entries_and_rejects_corruption() {
        // Series 3, [-1, 10]; series 200, [5, 5].
        let entries = [3u8, 1, 20, 0xc8, 0x01, 10, 10];
        let mut file = MAGIC.to_vec();
        file.push(VERSION);
        file.extend_from_slice(&entries);
        file.extend_from_slice(&crc32c::crc32c(&entries).to_be_bytes());
        assert_eq!(
            parse(&file).unwrap(),
            vec![
                Tombstone { series_ref: 3, min_time: -1, max_time: 10 },
                Tombstone { series_ref: 200, min_time: 5, max_time: 5 },
            ]
        );
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x40;
            assert!(parse(&bad).is_err(), "flip at {i}");
        }
        for n in 0..file.len() {
            assert!(parse(&file[..n]).is_err(), "truncated to {n}");
        }
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_tombstones(dir.path()).unwrap(), vec![]);
    }
}
