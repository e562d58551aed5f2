//! The non-query endpoints through the router over a real TSDB: series, label names and
//! values, metadata, exemplars, status, rules/alerts/targets, format_query, the query page,
//! the request observer, and Prometheus's 404/405/503 answers.

mod api_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use api_common::{api, api_with};
use axum::body::Body;
use axum::http::Request;
use serde_json::json;
use strata_query::engine::EngineOptions;
use strata_testkit::url_encode;

#[tokio::test]
async fn series_by_selector_get_and_post() {
    let api = api();
    let want = json!([
        {"__name__": "up", "instance": "a", "job": "api"},
        {"__name__": "up", "instance": "b", "job": "api"},
        {"__name__": "up", "instance": "c", "job": "db"},
    ]);
    assert_eq!(api.get("/api/v1/series?match[]=up").await.data(), want);
    assert_eq!(api.post_form("/api/v1/series", "match%5B%5D=up").await.data(), want);
    // Several selectors: the union, sorted, each series once.
    let data = api
        .get(&format!(
            "/api/v1/series?match[]={}&match[]={}",
            url_encode(r#"{job="db"}"#),
            url_encode(r#"up{instance="c"}"#)
        ))
        .await
        .data();
    assert_eq!(data, json!([{"__name__": "up", "instance": "c", "job": "db"}]));
    let data = api
        .get(&format!("/api/v1/series?match[]={}", url_encode(r#"{__name__=~"up|huge",instance!="a"}"#)))
        .await
        .data();
    assert_eq!(data.as_array().map(Vec::len), Some(3), "{data}");
    // Nothing in the time range.
    assert_eq!(api.get("/api/v1/series?match[]=up&start=700&end=800").await.data(), json!([]));
    assert_eq!(api.get("/api/v1/series?match[]=up&start=600&end=800").await.data().as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn series_errors_and_limit() {
    let api = api();
    api.get("/api/v1/series").await.assert_error(400, "bad_data", "no match[] parameter provided");
    let a = api.get("/api/v1/series?match[]=up(").await;
    assert_eq!(a.status, 400);
    assert!(a.json()["error"].as_str().is_some_and(|e| e.starts_with("invalid parameter \"match[]\": ")), "{}", a.body);
    api.get("/api/v1/series?match[]=up&start=yesterday").await.assert_error(
        400,
        "bad_data",
        "invalid parameter \"start\": Invalid time value for 'start': cannot parse \"yesterday\" to a valid timestamp",
    );
    api.get("/api/v1/series?match[]=up&limit=x").await.assert_error(
        400,
        "bad_data",
        "invalid parameter \"limit\": strconv.Atoi: parsing \"x\": invalid syntax",
    );
    let a = api.get("/api/v1/series?match[]=up&limit=2").await;
    assert_eq!(a.data().as_array().map(Vec::len), Some(2));
    assert_eq!(a.json()["warnings"], json!(["results truncated due to limit"]));
    let a = api.get("/api/v1/series?match[]=up&limit=3").await;
    assert!(a.json().get("warnings").is_none(), "{}", a.body);
}

#[tokio::test]
async fn label_names() {
    let api = api();
    let all = json!(["__name__", "code", "instance", "job", "service.name"]);
    assert_eq!(api.get("/api/v1/labels").await.data(), all);
    assert_eq!(api.post_form("/api/v1/labels", "start=0&end=600").await.data(), all);
    assert_eq!(
        api.get(&format!("/api/v1/labels?match[]={}", url_encode("http_requests_total"))).await.data(),
        json!(["__name__", "code", "job"])
    );
    assert_eq!(api.get("/api/v1/labels?match[]=huge&match[]=up").await.data(), json!(["__name__", "instance", "job"]));
    let a = api.get("/api/v1/labels?limit=2").await;
    assert_eq!(a.data(), json!(["__name__", "code"]));
    assert_eq!(a.json()["warnings"], json!(["results truncated due to limit"]));
    // Prometheus does not name the parameter here, unlike for series.
    let a = api.get(&format!("/api/v1/labels?match[]={}", url_encode(r#"{job=""}"#))).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.json()["error"].as_str().is_some_and(|e| e.ends_with("must contain at least one non-empty matcher")),
        "{}",
        a.body
    );
    api.get("/api/v1/labels?end=x").await.assert_error(
        400,
        "bad_data",
        "invalid parameter \"end\": Invalid time value for 'end': cannot parse \"x\" to a valid timestamp",
    );
}

#[tokio::test]
async fn label_values() {
    let api = api();
    assert_eq!(api.get("/api/v1/label/job/values").await.data(), json!(["api", "db"]));
    assert_eq!(
        api.get("/api/v1/label/__name__/values").await.data(),
        json!(["http_requests_total", "huge", "tiny", "up"])
    );
    assert_eq!(api.get("/api/v1/label/instance/values?match[]=%7Bjob%3D%22db%22%7D").await.data(), json!(["c"]));
    assert_eq!(api.get("/api/v1/label/nope/values").await.data(), json!([]));
    // Prometheus 3's escaping of names that are not identifiers, and plain percent-encoding.
    assert_eq!(api.get("/api/v1/label/U__service_2e_name/values").await.data(), json!(["x<y"]));
    assert_eq!(api.get("/api/v1/label/service.name/values").await.data(), json!(["x<y"]));
    let a = api.get("/api/v1/label/job/values?limit=1").await;
    assert_eq!(a.data(), json!(["api"]));
    assert_eq!(a.json()["warnings"], json!(["results truncated due to limit"]));
    // Label values are GET only in Prometheus.
    let a = api.post_form("/api/v1/label/job/values", "").await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (405, "Method Not Allowed\n"));
}

#[tokio::test]
async fn values_are_escaped_like_go() {
    let api = api();
    let a = api.get("/api/v1/label/service.name/values").await;
    assert_eq!(a.body, r#"{"status":"success","data":["x\u003cy"]}"#);
}

#[tokio::test]
async fn metadata() {
    let api = api();
    let all = api.get("/api/v1/metadata").await.data();
    assert_eq!(
        all,
        json!({
            "http_requests_total": [{"type": "counter", "help": "Requests served.", "unit": ""}],
            "up": [
                {"type": "gauge", "help": "Target is up.", "unit": ""},
                {"type": "gauge", "help": "Whether the target is up.", "unit": ""},
            ],
        })
    );
    assert_eq!(
        api.get("/api/v1/metadata?metric=up&limit_per_metric=1").await.data(),
        json!({"up": [{"type": "gauge", "help": "Target is up.", "unit": ""}]})
    );
    assert_eq!(api.get("/api/v1/metadata?limit=1").await.data().as_object().map(|o| o.len()), Some(1));
    assert_eq!(api.get("/api/v1/metadata?limit=0").await.data(), json!({}));
    assert_eq!(api.get("/api/v1/metadata?limit=-1").await.data(), all);
    assert_eq!(api.get("/api/v1/metadata?metric=nope").await.data(), json!({}));
    api.get("/api/v1/metadata?limit=abc").await.assert_error(400, "bad_data", "limit must be a number");
    api.get("/api/v1/metadata?limit_per_metric=x").await.assert_error(
        400,
        "bad_data",
        "limit_per_metric must be a number",
    );
}

#[tokio::test]
async fn exemplars_are_empty() {
    let api = api();
    assert_eq!(api.get("/api/v1/query_exemplars?query=up").await.data(), json!([]));
    assert_eq!(
        api.post_form("/api/v1/query_exemplars", "query=rate%28up%5B5m%5D%29&start=0&end=10").await.data(),
        json!([])
    );
    let a = api.get("/api/v1/query_exemplars?query=1").await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (204, ""));
    api.get("/api/v1/query_exemplars?query=up&start=10&end=5").await.assert_error(
        400,
        "bad_data",
        "end timestamp must not be before start timestamp",
    );
    assert_eq!(api.get("/api/v1/query_exemplars?query=up(").await.status, 400);
}

#[tokio::test]
async fn status_endpoints() {
    let api = api_with(EngineOptions::default(), |st| {
        st.flags.insert("query.timeout".into(), "2m".into());
        st.flags.insert("http-address".into(), "127.0.0.1:10902".into());
        st.storage_retention = "15d".into();
    });
    let b = api.get("/api/v1/status/buildinfo").await.data();
    assert_eq!(b["version"], env!("CARGO_PKG_VERSION"));
    for key in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(b[key].is_string(), "{key} in {b}");
    }
    // Grafana takes a server without `features` for Prometheus.
    assert!(b.get("features").is_none());
    assert_eq!(
        api.get("/api/v1/status/flags").await.data(),
        json!({"http-address": "127.0.0.1:10902", "query.timeout": "2m"})
    );
    let r = api.get("/api/v1/status/runtimeinfo").await.data();
    assert_eq!(r["storageRetention"], "15d");
    assert_eq!(r["reloadConfigSuccess"], true);
    assert!(r["startTime"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
    for key in ["CWD", "lastConfigTime", "GOGC", "GODEBUG"] {
        assert!(r[key].is_string(), "{key} in {r}");
    }
    for key in ["corruptionCount", "goroutineCount", "GOMAXPROCS"] {
        assert!(r[key].is_u64(), "{key} in {r}");
    }
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let api = api();
    for path in ["/api/v1/nope", "/api/v2/query", "/api/v1/query/extra"] {
        let a = api.get(path).await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (404, "404 page not found\n"), "{path}");
    }
    let a = api.send(Request::put("/api/v1/query").body(Body::empty()).expect("request")).await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (405, "Method Not Allowed\n"));
    assert_eq!(api.post_form("/api/v1/metadata", "").await.status, 405);
}

#[tokio::test]
async fn not_ready_answers_503_but_serves_the_page() {
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    let api = api_with(EngineOptions::default(), move |st| st.ready = Arc::new(move || flag.load(Ordering::Acquire)));
    for path in ["/api/v1/query?query=1", "/api/v1/labels", "/api/v1/status/buildinfo"] {
        let a = api.get(path).await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (503, "Service Unavailable"), "{path}");
    }
    assert_eq!(api.get("/").await.status, 200);
    ready.store(true, Ordering::Release);
    assert_eq!(api.get("/api/v1/labels").await.status, 200);
}

#[tokio::test]
async fn query_page() {
    let api = api();
    for path in ["/", "/graph"] {
        let a = api.get(path).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.content_type, "text/html; charset=utf-8");
        assert!(a.body.contains("id=\"execute\"") && a.body.contains("static/query.js"), "{path}");
        // Nothing may come from other hosts: the network is closed where Strata runs.
        for remote in ["src=\"http", "href=\"http", "https://", "url(http"] {
            assert!(!a.body.contains(remote), "{path} loads {remote}…");
        }
    }
    let js = api.get("/static/query.js").await;
    assert_eq!(js.status, 200);
    assert_eq!(js.content_type, "text/javascript; charset=utf-8");
    assert!(js.body.contains("api/v1/query_range") && js.body.contains("api/v1/query"));
    assert!(!js.body.contains("https://"));
}

#[tokio::test]
async fn stores_page_and_api() {
    let api = api();
    let page = api.get("/stores").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert!(page.body.contains("static/stores.js") && !page.body.contains("https://"));
    let js = api.get("/static/stores.js").await;
    assert_eq!(js.content_type, "text/javascript; charset=utf-8");
    assert!(js.body.contains("/api/v1/stores") && !js.body.contains("https://"));
    // Without a querier's endpoints the list is empty, as Thanos's is with none.
    let stores = api.get("/api/v1/stores").await;
    assert_eq!(stores.status, 200);
    assert_eq!(stores.body, r#"{"status":"success","data":{}}"#);
}

#[tokio::test]
async fn rules_alerts_and_targets_are_empty_as_in_prometheus_without_any() {
    let api = api();
    for (path, body) in [
        ("/api/v1/rules", r#"{"status":"success","data":{"groups":[]}}"#),
        ("/api/v1/alerts", r#"{"status":"success","data":{"alerts":[]}}"#),
        (
            "/api/v1/targets",
            r#"{"status":"success","data":{"activeTargets":[],"droppedTargets":[],"droppedTargetCounts":{}}}"#,
        ),
    ] {
        let a = api.get(path).await;
        assert_eq!((a.status.as_u16(), a.content_type.as_str(), a.body.as_str()), (200, "application/json", body));
    }
    // GET only, as in Prometheus.
    assert_eq!(api.post_form("/api/v1/rules", "").await.status, 405);
}

#[tokio::test]
async fn config_is_the_flags_as_yaml() {
    let api = api_with(EngineOptions::default(), |st| {
        st.flags.insert("query.timeout".into(), "2m".into());
        st.flags.insert("label".into(), r#"receive="standalone""#.into());
    });
    let yaml = api.get("/api/v1/status/config").await.data()["yaml"].as_str().map(str::to_owned);
    assert_eq!(yaml.as_deref(), Some("flags:\n  label: \"receive=\\\"standalone\\\"\"\n  query.timeout: \"2m\"\n"));
}

#[tokio::test]
async fn format_query_get_post_and_errors() {
    let api = api();
    let q = url_encode("sum(rate(x[5m]))by(job)");
    assert_eq!(api.get(&format!("/api/v1/format_query?query={q}")).await.data(), json!("sum by (job) (rate(x[5m]))"));
    assert_eq!(
        api.post_form("/api/v1/format_query", &format!("query={q}")).await.data(),
        json!("sum by (job) (rate(x[5m]))")
    );
    api.get(&format!("/api/v1/format_query?query={}", url_encode("sum("))).await.assert_error(
        400,
        "bad_data",
        "invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis",
    );
    // Deep nesting, as far as queries may go, is printed without running out of stack.
    let deep = format!("{}x{}", "sum(".repeat(400), ")".repeat(400));
    let a = api.post_form("/api/v1/format_query", &format!("query={}", url_encode(&deep))).await;
    assert_eq!(a.data().as_str().map(|s| s.matches("sum(").count()), Some(400));
}

#[tokio::test]
async fn every_api_request_is_observed_by_endpoint_name() {
    let seen: Arc<Mutex<Vec<(String, String, u16)>>> = Arc::default();
    let record = seen.clone();
    let ready = Arc::new(AtomicBool::new(true));
    let flag = ready.clone();
    let api = api_with(EngineOptions::default(), move |st| {
        st.ready = Arc::new(move || flag.load(Ordering::Acquire));
        st.observe = Some(Arc::new(move |handler, method, code, _| {
            record.lock().unwrap().push((handler.to_owned(), method.to_string(), code.as_u16()));
        }));
    });
    api.get("/api/v1/query?query=up").await;
    api.post_form("/api/v1/query_range", "query=up&start=0&end=60&step=15").await;
    api.get("/api/v1/label/job/values").await;
    api.get("/api/v1/labels").await;
    api.get("/api/v1/query?query=sum(").await;
    api.get("/api/v1/nope").await;
    ready.store(false, Ordering::Release);
    api.get("/api/v1/rules").await;
    let want = [
        ("query", "GET", 200),
        ("query_range", "POST", 200),
        ("label_values", "GET", 200),
        ("label_names", "GET", 200),
        ("query", "GET", 400),
        ("rules", "GET", 503),
    ]
    .map(|(h, m, c)| (h.to_owned(), m.to_owned(), c));
    assert_eq!(*seen.lock().unwrap(), want);
}

#[tokio::test]
async fn buildinfo_names_the_build() {
    let api = api_with(EngineOptions::default(), |st| {
        st.build_revision = "0123abc".into();
        st.build_branch = "main".into();
    });
    let b = api.get("/api/v1/status/buildinfo").await.data();
    assert_eq!((b["revision"].as_str(), b["branch"].as_str()), (Some("0123abc"), Some("main")));
}
