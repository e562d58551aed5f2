//! The query frontend against a downstream played by a test server: retries, errors passed on,
//! answers it cannot read, bad parameters, what is and is not cached, cache servers that fail,
//! and requests passed through untouched.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use strata_cache::Lru;
use strata_query::frontend::cache::ResultsCache;
use strata_query::frontend::downstream::{Downstream, Transport};
use strata_query::frontend::{router, Frontend, FrontendMetrics, FrontendOptions};
use tower::ServiceExt as _;

const DAY: i64 = 86_400_000;

/// What the test downstream was asked.
#[derive(Clone, Debug)]
struct Asked {
    method: String,
    path_and_query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

type Reply = dyn Fn(&Asked, usize) -> Response + Send + Sync;

/// A downstream answering with `reply(request, number of the request)`; its address and log.
async fn downstream(reply: Arc<Reply>) -> (String, Arc<Mutex<Vec<Asked>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let seen = log.clone();
    let app = Router::new().fallback(move |req: Request| {
        let (reply, seen, count) = (reply.clone(), seen.clone(), count.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec();
            let asked = Asked {
                method: parts.method.to_string(),
                path_and_query: parts.uri.path_and_query().unwrap().to_string(),
                headers: parts.headers,
                body,
            };
            seen.lock().unwrap().push(asked.clone());
            reply(&asked, count.fetch_add(1, Ordering::SeqCst))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, log)
}

fn param(asked: &Asked, name: &str) -> String {
    let query = asked.path_and_query.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// A matrix answer with one series holding 1 at every step of the asked range, with `extra`
/// (e.g. `,"warnings":[…]`) after the data.
fn matrix(asked: &Asked, extra: &str) -> String {
    let (start, end, step): (f64, f64, f64) = (
        param(asked, "start").parse().unwrap(),
        param(asked, "end").parse().unwrap(),
        param(asked, "step").parse().unwrap(),
    );
    let mut points = Vec::new();
    let mut t = start;
    while t <= end {
        points.push(format!("[{t},\"1\"]"));
        t += step;
    }
    format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"job":"a"}},"values":[{}]}}]}}{extra}}}"#,
        points.join(",")
    )
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}

fn options() -> FrontendOptions {
    FrontendOptions {
        split_interval: DAY,
        labels_split_interval: DAY,
        max_query_parallelism: 4,
        align_range_with_step: true,
        max_freshness: Duration::from_secs(60),
        tenant_headers: vec!["THANOS-TENANT".into()],
    }
}

fn frontend_with(addr: &str, cache: Option<ResultsCache>, max_answer: usize) -> Router {
    let downstream = Downstream::new(
        "--query-frontend.downstream-url",
        &format!("http://{addr}"),
        5,
        max_answer,
        &Transport::with_dial_timeout(Duration::from_secs(5)),
        None,
    )
    .unwrap();
    router(Frontend::new(options(), downstream, cache, FrontendMetrics::default(), None))
}

fn frontend(addr: &str) -> Router {
    frontend_with(addr, Some(ResultsCache::InMemory(Lru::new(1 << 20, 0, None))), 1 << 20)
}

async fn call(app: &Router, req: Request) -> (StatusCode, HeaderMap, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
}

async fn get(app: &Router, path: &str) -> (StatusCode, String) {
    let (status, _, body) = call(app, Request::get(path).body(Body::empty()).unwrap()).await;
    (status, body)
}

/// Three days, well in the past, at a 5-minute step.
const RANGE: &str = "/api/v1/query_range?query=up&start=1700000100&end=1700259300&step=300";

#[tokio::test]
async fn pieces_are_retried_on_5xx_and_merged() {
    let (addr, log) = downstream(Arc::new(|asked: &Asked, n| {
        if n < 2 {
            json(StatusCode::SERVICE_UNAVAILABLE, "{}".into())
        } else {
            json(StatusCode::OK, matrix(asked, ""))
        }
    }))
    .await;
    let (status, body) = get(&frontend(&addr), RANGE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pieces = log.lock().unwrap().len() - 2;
    assert!(pieces >= 3, "{pieces} pieces for three days");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let values = v["data"]["result"][0]["values"].as_array().unwrap();
    // Every step once, in order, across the pieces' boundaries.
    assert_eq!(values.len(), (1700259300 - 1700000100) / 300 + 1);
    assert!(values.windows(2).all(|w| w[0][0].as_f64() < w[1][0].as_f64()));
}

#[tokio::test]
async fn the_downstreams_error_is_the_answer_and_nothing_is_cached() {
    let body = r#"{"status":"error","errorType":"internal","error":"store down"}"#;
    let (addr, log) =
        downstream(Arc::new(move |_: &Asked, _| json(StatusCode::INTERNAL_SERVER_ERROR, body.into()))).await;
    let app = frontend(&addr);
    let (status, got) = get(&app, RANGE).await;
    assert_eq!((status, got.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, body));
    let asked = log.lock().unwrap().len();
    // Five attempts per piece.
    assert_eq!(asked % 5, 0, "{asked}");
    let (addr, log) = downstream(Arc::new(|_: &Asked, _| {
        json(StatusCode::UNPROCESSABLE_ENTITY, r#"{"status":"error","errorType":"execution","error":"x"}"#.into())
    }))
    .await;
    let app = frontend(&addr);
    for _ in 0..2 {
        assert_eq!(get(&app, RANGE).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // 4xx is not retried, and the second request asked again: nothing was cached.
    let asked = log.lock().unwrap().len();
    assert_eq!(asked % 2, 0);
    assert!(asked >= 2 * 3, "{asked}");
}

#[tokio::test]
async fn unreadable_oversized_and_missing_downstreams_are_clear_errors() {
    let (addr, _) = downstream(Arc::new(|_: &Asked, _| json(StatusCode::OK, "<html>not json</html>".into()))).await;
    let (status, body) = get(&frontend(&addr), RANGE).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains(r#""errorType":"internal""#) && body.contains("cannot be read"), "{body}");

    let (addr, _) = downstream(Arc::new(|asked: &Asked, _| json(StatusCode::OK, matrix(asked, "")))).await;
    let (status, body) = get(&frontend_with(&addr, None, 100), RANGE).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("more than 100 bytes"), "{body}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (status, body) = get(&frontend(&closed), RANGE).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains(&closed) && body.contains("5 attempts"), "{body}");
}

#[tokio::test]
async fn bad_parameters_are_refused_as_prometheus_refuses_them() {
    let (addr, log) = downstream(Arc::new(|asked: &Asked, _| json(StatusCode::OK, matrix(asked, "")))).await;
    let app = frontend(&addr);
    for (path, want) in [
        (
            "/api/v1/query_range?query=up&start=abc&end=2&step=1",
            r#"invalid parameter \"start\": cannot parse \"abc\" to a valid timestamp"#,
        ),
        ("/api/v1/query_range?query=up&start=1&end=x&step=1", r#"invalid parameter \"end\""#),
        ("/api/v1/query_range?query=up&start=5&end=1&step=1", "end timestamp must not be before start time"),
        ("/api/v1/query_range?query=up&start=1&end=2&step=0", "zero or negative query resolution step widths"),
        ("/api/v1/query_range?query=up&start=1&end=2&step=-3", "zero or negative query resolution step widths"),
        ("/api/v1/query_range?query=up&start=1&end=2&step=zz", r#"invalid parameter \"step\""#),
        ("/api/v1/query_range?query=up&start=0&end=11001&step=1", "exceeded maximum resolution of 11,000 points"),
        ("/api/v1/query_range?query=up&end=2&step=1", r#"invalid parameter \"start\""#),
    ] {
        let (status, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body.contains(r#""errorType":"bad_data""#) && body.contains(want), "{path}: {body}");
    }
    assert!(log.lock().unwrap().is_empty(), "bad requests reached the downstream");
}

#[tokio::test]
async fn answers_with_warnings_or_no_store_are_not_cached() {
    for extra in [r#","warnings":["partial"]"#, r#","infos":["i"]"#, ""] {
        let no_store = extra.is_empty();
        let (addr, log) = downstream(Arc::new(move |asked: &Asked, _| {
            let mut r = json(StatusCode::OK, matrix(asked, extra));
            if no_store {
                r.headers_mut().insert("cache-control", "private, no-store".parse().unwrap());
            }
            r
        }))
        .await;
        let app = frontend(&addr);
        let first = get(&app, RANGE).await;
        let asked = log.lock().unwrap().len();
        let second = get(&app, RANGE).await;
        assert_eq!(first, second);
        assert_eq!(log.lock().unwrap().len(), 2 * asked, "{extra:?}: the second request was answered from the cache");
        if !extra.is_empty() {
            assert!(first.1.ends_with(&format!("}}{extra}}}")), "{}", first.1);
        }
    }
    // A clean answer is cached: asked again, the downstream hears nothing; moved a day on, only
    // what is missing is asked: the rest of the last day, and the new day.
    let (addr, log) = downstream(Arc::new(|asked: &Asked, _| json(StatusCode::OK, matrix(asked, "")))).await;
    let app = frontend(&addr);
    let first = get(&app, RANGE).await;
    let asked = log.lock().unwrap().len();
    assert_eq!(get(&app, RANGE).await, first);
    assert_eq!(log.lock().unwrap().len(), asked);
    let moved = RANGE.replace("start=1700000100&end=1700259300", "start=1700086500&end=1700345700");
    assert_eq!(get(&app, &moved).await.0, StatusCode::OK);
    assert_eq!(log.lock().unwrap().len(), asked + 2);
    // Other parameters change the answer, so they are part of the key.
    assert_eq!(get(&app, &format!("{RANGE}&dedup=false")).await.0, StatusCode::OK);
    assert_eq!(log.lock().unwrap().len(), 2 * asked + 2);
}

#[tokio::test]
async fn failing_cache_servers_are_misses() {
    let (addr, _) = downstream(Arc::new(|asked: &Asked, _| json(StatusCode::OK, matrix(asked, "")))).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    for yaml in [
        format!("type: MEMCACHED\nconfig:\n  addresses: [\"{closed}\"]\n  timeout: 200ms\n"),
        format!("type: REDIS\nconfig:\n  addr: \"{closed}\"\n  read_timeout: 200ms\n"),
    ] {
        let cache = ResultsCache::from_yaml(&yaml, "test").unwrap();
        let app = frontend_with(&addr, Some(cache), 1 << 20);
        let (status, body) = get(&app, RANGE).await;
        assert_eq!(status, StatusCode::OK, "{yaml}: {body}");
    }
}

#[tokio::test]
async fn other_requests_pass_through_untouched() {
    let (addr, log) = downstream(Arc::new(|asked: &Asked, _| {
        (StatusCode::IM_A_TEAPOT, [("x-answer", "yes")], format!("echo {}", String::from_utf8_lossy(&asked.body)))
            .into_response()
    }))
    .await;
    let app = frontend(&addr);
    let req = Request::post("/api/v1/query?x=1")
        .header("THANOS-TENANT", "team-a")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("query=up&time=5"))
        .unwrap();
    let (status, headers, body) = call(&app, req).await;
    assert_eq!((status, body.as_str()), (StatusCode::IM_A_TEAPOT, "echo query=up&time=5"));
    assert_eq!(headers["x-answer"], "yes");
    let asked = log.lock().unwrap()[0].clone();
    assert_eq!((asked.method.as_str(), asked.path_and_query.as_str()), ("POST", "/api/v1/query?x=1"));
    assert_eq!(asked.headers["thanos-tenant"], "team-a");
    // Range queries the frontend does not split go through whole, POST bodies included.
    let req = Request::post("/api/v1/query_range")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("query=x%20@%20start()&start=1&end=100000&step=60"))
        .unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::IM_A_TEAPOT);
    assert_eq!(log.lock().unwrap()[1].body, b"query=x%20@%20start()&start=1&end=100000&step=60");
}

#[tokio::test]
async fn labels_and_series_are_split_and_merged() {
    let (addr, log) = downstream(Arc::new(|asked: &Asked, n| {
        let body = if asked.path_and_query.starts_with("/api/v1/series") {
            format!(
                r#"{{"status":"success","data":[{{"__name__":"up","n":"{}"}},{{"__name__":"up","n":"0"}}]}}"#,
                n % 2
            )
        } else {
            format!(r#"{{"status":"success","data":["b","a{}"]}}"#, n % 2)
        };
        json(StatusCode::OK, body)
    }))
    .await;
    let app = frontend(&addr);
    let (status, body) = get(&app, "/api/v1/labels?start=1700000000&end=1700200000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"status":"success","data":["a0","a1","b"]}"#);
    let (_, body) = get(&app, "/api/v1/series?match[]=up&start=1700000000&end=1700200000").await;
    assert_eq!(body, r#"{"status":"success","data":[{"__name__":"up","n":"0"},{"__name__":"up","n":"1"}]}"#);
    // Four days touched, four pieces each.
    assert_eq!(log.lock().unwrap().len(), 8);
    // Without a range they go through whole.
    get(&app, "/api/v1/label/job/values").await;
    assert_eq!(log.lock().unwrap().len(), 9);
}
