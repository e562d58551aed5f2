//! `strata tools` as a user runs them from where `strata standalone` keeps its data: output
//! alone on stdout, no log lines, and an answer that says what is there when a directory holds
//! no blocks or is not a TSDB directory, or when no bucket is named.

use std::path::Path;
use std::process::{Command, Output};

use strata_tsdb::db::{Db, DbOptions};

/// Runs `strata` in `cwd` with the default log level.
fn strata(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .current_dir(cwd)
        .env_remove("STRATA_LOG_LEVEL")
        .args(args)
        .output()
        .expect("run strata")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn tsdb_tools_print_their_output_alone_and_explain_what_is_there() {
    let work = tempfile::tempdir().expect("temp dir");
    // A tenant of standalone's data directory in its first hours: a WAL, no blocks.
    let tenant = work.path().join("data/receive/default-tenant");
    let db = Db::open(&tenant, DbOptions::default()).expect("open TSDB");
    let mut app = db.appender();
    for job in ["a", "b"] {
        app.append(&[("__name__", "up"), ("job", job)], [(1_700_000_000_000, 1.0)]).expect("append");
    }
    app.commit().expect("commit");
    db.close().expect("close");
    let path = "data/receive/default-tenant";

    let dump = strata(work.path(), &["tools", "tsdb", "dump", "--tsdb.path", path]);
    assert!(dump.status.success(), "{}", text(&dump.stderr));
    assert_eq!(text(&dump.stdout).lines().count(), 2, "{}", text(&dump.stdout));
    assert_eq!(text(&dump.stderr), "", "no log lines around a tool's output");

    let list = strata(work.path(), &["tools", "tsdb", "list", "--tsdb.path", path]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    assert!(text(&list.stdout).starts_with("BLOCK ULID") && text(&list.stdout).lines().count() == 1);
    let note = text(&list.stderr);
    assert!(note.starts_with("no blocks in data/receive/default-tenant yet: the head"), "{note}");
    assert!(note.contains("holds 2 series") && note.contains("blocks are cut every 2h"), "{note}");

    // One level too high: not a TSDB directory, and the tenant is named.
    for args in [["tools", "tsdb", "list"], ["tools", "tsdb", "analyze"]] {
        let out = strata(work.path(), &[&args[..], &["--tsdb.path", "data/receive"]].concat());
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("not a TSDB directory") && err.contains("try --tsdb.path data/receive/default-tenant"),
            "{err}"
        );
    }

    // Logs come back when asked for.
    let logged = strata(work.path(), &["--log.level", "info", "tools", "tsdb", "dump", "--tsdb.path", path]);
    assert!(text(&logged.stderr).contains("level=info"), "{}", text(&logged.stderr));
}

#[test]
fn bucket_tools_use_the_standalone_bucket_when_none_is_named() {
    let work = tempfile::tempdir().expect("temp dir");
    let none = strata(work.path(), &["tools", "bucket", "ls"]);
    assert!(!none.status.success());
    let err = text(&none.stderr);
    assert!(err.contains("set --objstore.config-file or --objstore.config") && err.contains("./data/bucket"), "{err}");

    std::fs::create_dir_all(work.path().join("data/bucket")).expect("create bucket directory");
    let ls = strata(work.path(), &["tools", "bucket", "ls"]);
    assert!(ls.status.success(), "{}", text(&ls.stderr));
    assert!(text(&ls.stderr).starts_with("bucket: the FILESYSTEM bucket ./data/bucket of strata standalone"));
}
