//! One TSDB directory: a head rebuilt from, and appended through, a write-ahead log.
//!
//! Layout (as Prometheus): `<dir>/wal/` holds the WAL segments and checkpoints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::head::{AppendOutcome, Head, HeadAppender, HeadOptions};
use crate::labels::{Labels, LabelsError};
use crate::wal::{self, Record, ReplayStats, Wal, WalOptions};
use crate::{Error, Result};

/// Options for a TSDB directory.
#[derive(Debug, Clone, Default)]
pub struct DbOptions {
    pub head: HeadOptions,
    pub wal: WalOptions,
}

/// An open TSDB.
pub struct Db {
    dir: PathBuf,
    head: Head,
    wal: Wal,
}

/// What replaying a WAL into a head found.
#[derive(Debug, Default, Clone)]
pub struct HeadReplay {
    pub wal: ReplayStats,
    /// Samples that refer to a series no series record introduced.
    pub unknown_refs: u64,
    /// Samples the head refused (out of order or duplicate timestamps).
    pub refused: u64,
}

/// Rebuilds a head from the WAL in `wal_dir`.
fn replay_into(head: &Head, wal_dir: &Path, repair: bool) -> Result<HeadReplay> {
    let mut out = HeadReplay::default();
    let apply = |rec: Record| -> Result<()> {
        match rec {
            Record::Series(series) => {
                for s in series {
                    head.replay_series(s.series_ref, s.labels);
                }
            }
            Record::Samples(samples) => {
                // Samples records group many samples of few series; look each series up once
                // per run of equal refs.
                let mut cur: Option<std::sync::Arc<crate::head::MemSeries>> = None;
                for s in samples {
                    if cur.as_ref().map(|c| c.series_ref) != Some(s.series_ref) {
                        cur = head.series_by_ref(s.series_ref);
                    }
                    match &cur {
                        Some(series) => {
                            if !matches!(head.replay_sample(series, s.t, s.v), crate::head::AppendResult::Appended { .. }) {
                                out.refused += 1;
                            }
                        }
                        None => out.unknown_refs += 1,
                    }
                }
            }
            Record::Tombstones(_) | Record::Metadata(_) | Record::Unsupported(_) => {}
        }
        Ok(())
    };
    out.wal = if repair { wal::replay(wal_dir, apply)? } else { wal::replay_read_only(wal_dir, apply)? };
    Ok(out)
}

impl Db {
    /// Opens (or creates) the TSDB in `dir`, replaying its WAL into a new head. A torn or
    /// corrupt WAL tail is cut off (and logged); the rest is replayed.
    pub fn open(dir: &Path, opts: DbOptions) -> Result<Db> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create TSDB directory", dir, e))?;
        let wal_dir = dir.join("wal");
        let head = Head::new(opts.head.clone());
        let started = Instant::now();
        let replay = replay_into(&head, &wal_dir, true)?;
        tracing::info!(
            dir = %dir.display(),
            segments = replay.wal.segments,
            series = head.num_series(),
            samples = replay.wal.samples,
            unknown_series_refs = replay.unknown_refs,
            refused_samples = replay.refused,
            corruptions_repaired = replay.wal.corruptions_repaired,
            duration = ?started.elapsed(),
            "WAL replay completed"
        );
        let wal = Wal::open(&wal_dir, opts.wal)?;
        wal.stats()
            .corruptions_total
            .fetch_add(u64::from(replay.wal.corruptions_repaired), std::sync::atomic::Ordering::Relaxed);
        Ok(Db { dir: dir.to_owned(), head, wal })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Starts a batch of appends; see [`DbAppender::commit`].
    pub fn appender(&self) -> DbAppender<'_> {
        DbAppender { db: self, inner: self.head.appender() }
    }

    /// Flushes and fsyncs the WAL. Later appends fail.
    pub fn close(&self) -> Result<()> {
        self.wal.close()
    }
}

/// A batch of appends to a [`Db`].
pub struct DbAppender<'a> {
    db: &'a Db,
    inner: HeadAppender<'a>,
}

impl DbAppender<'_> {
    /// See [`HeadAppender::append`].
    pub fn append(&mut self, pairs: &[(&str, &str)], samples: impl IntoIterator<Item = (i64, f64)>) -> std::result::Result<(), LabelsError> {
        self.inner.append(pairs, samples)
    }

    /// Writes the batch to the WAL, then applies it to the head. When this returns `Ok`, every
    /// sample counted as appended is in the WAL.
    pub fn commit(self) -> Result<AppendOutcome> {
        self.inner.commit(Some(self.db.wal()))
    }
}

/// Prints every sample of the TSDB in `dir` with time in `[mint, maxt]`, as `promtool tsdb dump`
/// does: one line per sample, `{labels} value timestamp`, series in label order. Reads the WAL
/// without changing anything on disk, so it is safe on the directory of a running receiver.
pub fn dump(dir: &Path, mint: i64, maxt: i64, out: &mut dyn Write) -> Result<()> {
    let head = Head::new(HeadOptions::default());
    let replay = replay_into(&head, &dir.join("wal"), false)?;
    if replay.wal.segments == 0 && replay.wal.checkpoint.is_none() {
        return Err(Error::io(
            "find WAL in",
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no WAL segments; is this a TSDB directory such as <tsdb.path>/<tenant>?"),
        ));
    }
    let io = |e| Error::io("write dump output", "-", e);
    for series in head.series_sorted() {
        let labels: &Labels = &series.labels;
        let mut err = None;
        series.for_each_sample(mint, maxt, |t, v| {
            if err.is_none() {
                if let Err(e) = writeln!(out, "{labels} {} {t}", format_go_g(v)) {
                    err = Some(e);
                }
            }
        })?;
        if let Some(e) = err {
            return Err(io(e));
        }
    }
    out.flush().map_err(io)
}

/// Formats a float as Go's `%g` (`strconv.FormatFloat(v, 'g', -1, 64)`): the shortest digits
/// that round-trip, in exponent form when the decimal exponent is below -4 or at least 6 (Go
/// decides with precision 6 when printing the shortest form).
pub fn format_go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(db: &Db, name: &str, samples: &[(i64, f64)]) -> AppendOutcome {
        let mut app = db.appender();
        app.append(&[("__name__", name), ("job", "j")], samples.iter().copied()).unwrap();
        app.commit().unwrap()
    }

    fn dump_lines(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        dump(dir, i64::MIN, i64::MAX, &mut out).unwrap();
        String::from_utf8(out).unwrap().lines().map(str::to_owned).collect()
    }

    #[test]
    fn reopen_replays_everything_committed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(write(&db, "a", &[(1000, 1.0), (2000, 2.0)]).appended, 2);
        assert_eq!(write(&db, "b", &[(1000, 3.5)]).appended, 1);
        // Dropped without close, as a killed process leaves it.
        drop(db);
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(db.head().num_series(), 2);
        assert_eq!((db.head().min_time(), db.head().max_time()), (1000, 2000));
        // The replayed head refuses what the original would have refused.
        let out = write(&db, "a", &[(2000, 9.0), (3000, 3.0)]);
        assert_eq!((out.appended, out.rejected.duplicate_timestamp), (1, 1));
        db.close().unwrap();
        assert_eq!(
            dump_lines(dir.path()),
            vec![
                r#"{__name__="a", job="j"} 1 1000"#,
                r#"{__name__="a", job="j"} 2 2000"#,
                r#"{__name__="a", job="j"} 3 3000"#,
                r#"{__name__="b", job="j"} 3.5 1000"#,
            ]
        );
    }

    #[test]
    fn dump_changes_nothing_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        write(&db, "a", &[(1000, 1.0)]);
        // A half-written record at the tail, as a running receiver may have at any moment.
        let seg = db.wal().dir().join(crate::wal::segment_name(db.wal().segment_range().1));
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        std::io::Write::write_all(&mut f, &[1, 0, 200, 0, 0, 0, 0, 42]).unwrap();
        let len = std::fs::metadata(&seg).unwrap().len();
        assert_eq!(dump_lines(dir.path()), vec![r#"{__name__="a", job="j"} 1 1000"#]);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), len, "dump must not repair");
        // Opening for writing does repair it, and keeps the good record.
        drop(db);
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(db.head().num_series(), 1);
        assert!(std::fs::metadata(&seg).unwrap().len() < len);
    }

    #[test]
    fn dump_of_a_directory_without_wal_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = dump(dir.path(), 0, 1, &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("no WAL segments"), "{err}");
    }

    #[test]
    fn go_g_format() {
        for (v, want) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (-0.0, "-0"),
            (100000.5, "100000.5"),
        ] {
            assert_eq!(format_go_g(v), want, "{v}");
        }
    }
}
