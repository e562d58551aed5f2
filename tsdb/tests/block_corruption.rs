//! Damaged blocks give errors that name the block, never panics; `open_blocks` skips them and
//! keeps the good ones; leftovers of interrupted writes are cleaned up.

use std::path::{Path, PathBuf};

use strata_tsdb::block::{open_blocks, remove_tmp_dirs, Block, BlockCompaction, BlockWriter, ChunkData};
use strata_tsdb::chunkenc::{Encoding, XorAppender};
use strata_tsdb::matchers::{MatchOp, Matcher};
use strata_tsdb::postings::PostingsSource;
use strata_tsdb::Labels;
use ulid::Ulid;

/// Writes a block of `n` series (`job` in a, b, c; 3 chunks each) into `dir`.
fn write_block(dir: &Path, n: usize) -> PathBuf {
    let ulid = Ulid::new();
    let mut w = BlockWriter::with_segment_size(dir, ulid, 2048).unwrap();
    let instances: Vec<String> = (0..n).map(|i| format!("i{i:04}")).collect();
    w.add_symbols(instances.iter().map(String::as_str).chain(["__name__", "m", "instance", "job", "a", "b", "c"]))
        .unwrap();
    for (i, inst) in instances.iter().enumerate() {
        let labels = Labels::from_pairs(&[("__name__", "m"), ("instance", inst), ("job", ["a", "b", "c"][i % 3])]);
        let chunks: Vec<ChunkData> = (0..3)
            .map(|c| {
                let mut app = XorAppender::new();
                for s in 0..40 {
                    app.append(c * 1000 + s * 10, (i as f64) * 0.5 + s as f64);
                }
                ChunkData {
                    min_time: c * 1000,
                    max_time: c * 1000 + 390,
                    encoding: Encoding::Xor,
                    data: app.bytes().to_vec().into(),
                }
            })
            .collect();
        w.add_series(&labels, &chunks).unwrap();
    }
    w.finish(0, 3000, BlockCompaction { level: 1, ..Default::default() }).unwrap();
    dir.join(ulid.to_string())
}

fn ulid_of(block: &Path) -> String {
    block.file_name().unwrap().to_string_lossy().into_owned()
}

/// Reads everything a query can reach: every series with its chunks (through a negative
/// matcher, which starts from the all-postings list), label names and every label's values
/// and postings.
fn read_all(block: &Block) -> strata_tsdb::Result<usize> {
    let all = block.select(&[Matcher::new(MatchOp::NotEqual, "job", "zzz").unwrap()], i64::MIN, i64::MAX)?;
    for name in block.label_names(&[])? {
        for value in block.label_values(&name, &[])? {
            block.index().postings(&name, &value)?;
        }
    }
    Ok(all.len())
}

/// Opens the block and reads all of it; the first error, as text.
fn open_and_read(dir: &Path) -> Result<usize, String> {
    Block::open(dir).and_then(|b| read_all(&b)).map_err(|e| e.to_string())
}

fn flip(path: &Path, offset: usize, mask: u8) {
    let mut b = std::fs::read(path).unwrap();
    b[offset] ^= mask;
    std::fs::write(path, b).unwrap();
}

fn put(path: &Path, offset: usize, bytes: &[u8]) {
    let mut b = std::fs::read(path).unwrap();
    b[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, b).unwrap();
}

fn be64(b: &[u8], at: usize) -> usize {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

/// Offsets from the index's table of contents: (symbols, series, postings start, postings table).
fn toc(index: &Path) -> (usize, usize, usize, usize) {
    let b = std::fs::read(index).unwrap();
    let t = b.len() - 52;
    (be64(&b, t), be64(&b, t + 8), be64(&b, t + 32), be64(&b, t + 40))
}

/// How a corruption is expected to show.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fails {
    Open,
    Read,
}

#[test]
fn targeted_corruption_is_an_error_naming_the_block() {
    type Damage = fn(&Path);
    let cases: &[(&str, Damage, Fails)] = &[
        (
            "TOC byte",
            |b| flip(&b.join("index"), std::fs::metadata(b.join("index")).unwrap().len() as usize - 30, 1),
            Fails::Open,
        ),
        ("index magic", |b| flip(&b.join("index"), 1, 0xff), Fails::Open),
        ("index version 1", |b| put(&b.join("index"), 4, &[1]), Fails::Open),
        ("symbol byte", |b| flip(&b.join("index"), toc(&b.join("index")).0 + 12, 4), Fails::Open),
        ("symbol table length 4 GiB", |b| put(&b.join("index"), 5, &[0xff, 0xff, 0xff, 0xf0]), Fails::Open),
        ("postings offset table byte", |b| flip(&b.join("index"), toc(&b.join("index")).3 + 9, 0x10), Fails::Open),
        (
            "postings offset table length",
            |b| put(&b.join("index"), toc(&b.join("index")).3, &[0x7f, 0, 0, 0]),
            Fails::Open,
        ),
        (
            "TOC pointing past the end",
            |b| {
                let index = b.join("index");
                let len = std::fs::metadata(&index).unwrap().len() as usize;
                // A forged TOC with a valid CRC but a postings table offset far outside the file.
                let mut toc = std::fs::read(&index).unwrap()[len - 52..len - 4].to_vec();
                toc[40..48].copy_from_slice(&(1u64 << 40).to_be_bytes());
                let crc = crc32c::crc32c(&toc);
                toc.extend_from_slice(&crc.to_be_bytes());
                put(&index, len - 52, &toc);
            },
            Fails::Open,
        ),
        (
            "index truncated",
            |b| {
                let f = std::fs::OpenOptions::new().write(true).open(b.join("index")).unwrap();
                f.set_len(f.metadata().unwrap().len() / 2).unwrap();
            },
            Fails::Open,
        ),
        (
            "series entry byte",
            |b| flip(&b.join("index"), toc(&b.join("index")).1.next_multiple_of(16) + 3, 0x08),
            Fails::Read,
        ),
        (
            "series entry length huge",
            |b| put(&b.join("index"), toc(&b.join("index")).1.next_multiple_of(16), &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Fails::Read,
        ),
        (
            "all-postings list byte",
            |b| flip(&b.join("index"), toc(&b.join("index")).2.next_multiple_of(4) + 10, 0x01),
            Fails::Read,
        ),
        (
            "all-postings list length huge",
            |b| put(&b.join("index"), toc(&b.join("index")).2.next_multiple_of(4), &[0xff, 0xff, 0xff, 0xfc]),
            Fails::Read,
        ),
        ("chunk data byte", |b| flip(&b.join("chunks/000001"), 40, 0x80), Fails::Read),
        ("chunk length huge", |b| put(&b.join("chunks/000001"), 8, &[0xff, 0xff, 0xff, 0xff, 0x0f]), Fails::Read),
        ("chunk segment magic", |b| flip(&b.join("chunks/000002"), 0, 0xff), Fails::Open),
        ("chunk segment missing", |b| std::fs::remove_file(b.join("chunks/000003")).unwrap(), Fails::Read),
        (
            "chunk segment truncated",
            |b| {
                let f = std::fs::OpenOptions::new().write(true).open(b.join("chunks/000002")).unwrap();
                f.set_len(100).unwrap();
            },
            Fails::Read,
        ),
        ("meta.json garbage", |b| put(&b.join("meta.json"), 0, b"[[["), Fails::Open),
        ("tombstones CRC", |b| flip(&b.join("tombstones"), 8, 1), Fails::Open),
        ("index missing", |b| std::fs::remove_file(b.join("index")).unwrap(), Fails::Open),
    ];
    for &(what, damage, fails) in cases {
        let dir = tempfile::tempdir().unwrap();
        let good = write_block(dir.path(), 30);
        let bad = write_block(dir.path(), 30);
        assert!(std::fs::read_dir(bad.join("chunks")).unwrap().count() >= 3, "want several segments");
        assert_eq!(open_and_read(&bad), Ok(30), "{what}: before the damage");
        damage(&bad);

        let err = match (Block::open(&bad), fails) {
            (Err(e), Fails::Open) => e.to_string(),
            (Ok(b), Fails::Read) => read_all(&b).expect_err(what).to_string(),
            (Ok(_), Fails::Open) => panic!("{what}: block opened"),
            (Err(e), Fails::Read) => panic!("{what}: expected open to succeed and reads to fail, got {e}"),
        };
        assert!(err.contains(&ulid_of(&bad)), "{what}: error does not name the block: {err}");

        let opened: Vec<String> = open_blocks(dir.path()).unwrap().iter().map(|b| b.meta().ulid.to_string()).collect();
        match fails {
            Fails::Open => assert_eq!(opened, [ulid_of(&good)], "{what}"),
            Fails::Read => assert_eq!(opened.len(), 2, "{what}"),
        }
        assert_eq!(open_and_read(&good), Ok(30), "{what}: the good block");
        println!("{what}: {err}");
    }
}

#[test]
fn version_1_index_is_reported_as_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let block = write_block(dir.path(), 3);
    put(&block.join("index"), 4, &[1]);
    let err = Block::open(&block).err().expect("version 1 refused").to_string();
    assert!(err.contains("unsupported index format version 1"), "{err}");
}

#[test]
fn every_byte_flip_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let block = write_block(dir.path(), 6);
    let ulid = ulid_of(&block);
    for file in ["index", "chunks/000001", "meta.json", "tombstones"] {
        let path = block.join(file);
        let good = std::fs::read(&path).unwrap();
        let mut detected = 0;
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            std::fs::write(&path, &bad).unwrap();
            match open_and_read(&block) {
                Err(e) => {
                    assert!(e.contains(&ulid), "{file} byte {i}: {e}");
                    detected += 1;
                }
                // A flip may go unnoticed only where it changes nothing that is read
                // (alignment padding, unused meta.json fields).
                Ok(n) => assert_eq!(n, 6, "{file} byte {i}: a flip changed what is read"),
            }
        }
        std::fs::write(&path, &good).unwrap();
        println!("{file}: {detected} of {} flipped bytes detected", good.len());
        // Index and chunks are under CRCs; only the index's alignment padding is unchecked.
        if file != "meta.json" {
            assert!(detected * 10 >= good.len() * 8, "{file}: only {detected} of {} flips detected", good.len());
        }
    }
}

#[test]
fn interrupted_writes_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let block = write_block(dir.path(), 3);
    // A writer dropped half way, as after a crash.
    let abandoned = Ulid::new();
    let mut w = BlockWriter::new(dir.path(), abandoned).unwrap();
    w.add_symbols(["a", "1"]).unwrap();
    let mut app = XorAppender::new();
    app.append(1, 1.0);
    let chunk = ChunkData { min_time: 1, max_time: 1, encoding: Encoding::Xor, data: app.bytes().to_vec().into() };
    w.add_series(&Labels::from_pairs(&[("a", "1")]), &[chunk]).unwrap();
    drop(w);
    let creating = dir.path().join(format!("{abandoned}.tmp-for-creation"));
    assert!(creating.join("index").is_file());
    let deleting = dir.path().join(format!("{}.tmp-for-deletion", Ulid::new()));
    let legacy = dir.path().join(format!("{}.tmp", Ulid::new()));
    for d in [&deleting, &legacy] {
        std::fs::create_dir_all(d.join("chunks")).unwrap();
    }
    // Not ours to remove: a non-ULID directory and a plain file with a tmp suffix.
    let foreign = dir.path().join("backup.tmp");
    std::fs::create_dir(&foreign).unwrap();
    let file = dir.path().join(format!("{}.tmp", Ulid::new()));
    std::fs::write(&file, b"x").unwrap();

    assert_eq!(open_blocks(dir.path()).unwrap().len(), 1, "temporary directories are not blocks");
    assert_eq!(remove_tmp_dirs(dir.path()).unwrap(), 3);
    assert!(!creating.exists() && !deleting.exists() && !legacy.exists());
    assert!(foreign.exists() && file.exists() && block.exists());
    assert_eq!(remove_tmp_dirs(dir.path()).unwrap(), 0);
}
