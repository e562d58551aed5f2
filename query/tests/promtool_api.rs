//! promtool 2.42 (a client_golang client, as Grafana's backend and most tools are) against the
//! API served over TCP: it must understand every answer, errors included.

mod api_common;

use std::path::PathBuf;
use std::process::Command;

use api_common::api;

/// promtool on PATH; the test fails (never skips) without it.
fn promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("promtool")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("`promtool` is not installed or not on PATH; this test needs it (Debian: apt-get install prometheus; .ci/run installs it)")
    })
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn run(url: &str, args: &[&str]) -> Run {
    let bin = promtool();
    let (sub, rest) = args.split_first().expect("promtool subcommand");
    let mut cmd = Command::new(bin);
    cmd.args(["query", sub]).arg(url).args(rest);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("run promtool");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ok(url: &str, args: &[&str]) -> String {
    let r = run(url, args).await;
    assert!(r.ok, "promtool query {args:?} failed: {}", r.stderr);
    r.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_reads_every_answer() {
    let api = api();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move { axum::serve(listener, api.router.clone()).await });

    assert_eq!(
        ok(&url, &["instant", "--time", "600", "up"]).await,
        "up{instance=\"a\", job=\"api\"} => 1 @[600]\nup{instance=\"b\", job=\"api\"} => 0 @[600]\nup{instance=\"c\", job=\"db\"} => 1 @[600]\n"
    );
    assert_eq!(ok(&url, &["instant", "--time", "600.5", "1+1"]).await, "scalar: 2 @[600.5]\n");
    assert_eq!(
        ok(&url, &["instant", "--time", "600", "tiny"]).await,
        "tiny{service.name=\"x<y\"} => 0.0000001 @[600]\n"
    );
    assert_eq!(
        ok(&url, &["instant", "-o", "json", "--time", "600", "huge"]).await.trim(),
        r#"[{"metric":{"__name__":"huge"},"value":[600,"1000000000000000000000"]}]"#
    );
    assert_eq!(
        ok(&url, &["range", "--start", "0", "--end", "30", "--step", "15s", r#"up{instance="b"}"#]).await,
        "up{instance=\"b\", job=\"api\"} =>\n0 @[0]\n0 @[15]\n0 @[30]\n"
    );
    assert_eq!(
        ok(&url, &["series", "--start", "0", "--end", "1000", "--match", "up", "--match", "huge"]).await,
        "{__name__=\"huge\"}\n{__name__=\"up\", instance=\"a\", job=\"api\"}\n{__name__=\"up\", instance=\"b\", job=\"api\"}\n{__name__=\"up\", instance=\"c\", job=\"db\"}\n"
    );
    // The fixture is from 1970; promtool's default range reaches back about 14 months.
    assert_eq!(ok(&url, &["labels", "--start", "0", "--end", "1000", "job"]).await, "api\ndb\n");
    assert_eq!(ok(&url, &["labels", "--start", "0", "--match", r#"{job="db"}"#, "instance"]).await, "c\n");

    // client_golang reads the error envelope of 400 and 422 answers.
    let r = run(&url, &["instant", "up("]).await;
    assert!(!r.ok);
    assert!(r.stderr.contains("bad_data: invalid parameter \"query\""), "{}", r.stderr);
    let r = run(&url, &["range", "--start", "0", "--end", "20000", "--step", "1s", "up"]).await;
    assert!(!r.ok);
    assert!(r.stderr.contains("exceeded maximum resolution of 11,000 points per timeseries"), "{}", r.stderr);
    let r = run(&url, &["instant", "--time", "600", r#"label_replace(up, "instance", "x", "job", ".*")"#]).await;
    assert!(!r.ok);
    assert!(r.stderr.contains("execution: vector cannot contain metrics with the same labelset"), "{}", r.stderr);
    server.abort();
}
