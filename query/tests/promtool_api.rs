//! promtool 2.42 (a client_golang client, as Grafana's backend and most tools are) against the
//! API served over TCP: it must understand every answer, errors included.

mod api_common;

use api_common::api;
use strata_testkit::promtool::{promtool, promtool_output, query_args};
use strata_testkit::tools::ToolOutput;

/// `promtool query <args[0]> <url> <args[1..]>`, off the runtime's threads (the server under
/// test runs on them); the test fails (never skips) without promtool.
async fn run(url: &str, args: &[&str]) -> ToolOutput {
    let args = query_args(url, args);
    tokio::task::spawn_blocking(move || promtool_output(&args)).await.expect("join")
}

/// [`run`] that must succeed; its stdout.
async fn ok(url: &str, args: &[&str]) -> String {
    let args = query_args(url, args);
    tokio::task::spawn_blocking(move || promtool(&args)).await.expect("join")
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
    assert!(!r.status.success());
    assert!(r.stderr.contains("bad_data: invalid parameter \"query\""), "{}", r.stderr);
    let r = run(&url, &["range", "--start", "0", "--end", "20000", "--step", "1s", "up"]).await;
    assert!(!r.status.success());
    assert!(r.stderr.contains("exceeded maximum resolution of 11,000 points per timeseries"), "{}", r.stderr);
    let r = run(&url, &["instant", "--time", "600", r#"label_replace(up, "instance", "x", "job", ".*")"#]).await;
    assert!(!r.status.success());
    assert!(r.stderr.contains("execution: vector cannot contain metrics with the same labelset"), "{}", r.stderr);
    server.abort();
}
