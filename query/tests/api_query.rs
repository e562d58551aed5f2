//! `/api/v1/query` and `/api/v1/query_range` through the router and the engine over a real
//! TSDB: result shapes and exact bytes, parameters, limits and error codes.

mod api_common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_common::{api, api_with};
use axum::body::Body;
use axum::http::Request;
use futures::StreamExt;
use serde_json::json;
use strata_query::engine::EngineOptions;
use strata_storage::{LabelsAnswer, LabelsRequest, SelectRequest, SeriesSet, Storage, StorageError};
use strata_testkit::url_encode;
use tower::ServiceExt;

#[tokio::test]
async fn grafana_health_check() {
    let api = api();
    // Grafana's "Save & test": a form-encoded POST of 1+1 at 4 s, then the build info.
    let a = api.post_form("/api/v1/query", "query=1%2B1&time=4").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "application/json");
    assert_eq!(a.body, r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#);
    assert_eq!(api.get("/api/v1/status/buildinfo").await.status, 200);
}

#[tokio::test]
async fn instant_vector_exact_bytes() {
    let api = api();
    let a = api.get(&format!("/api/v1/query?query={}&time=600.5", url_encode(r#"up{instance="a"}"#))).await;
    assert_eq!(
        a.body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"a","job":"api"},"value":[600.500,"1"]}]}}"#
    );
    // The same through a POST form and with an RFC 3339 time.
    let b = api
        .post_form("/api/v1/query", &format!("query={}&time=1970-01-01T00:10:00.5Z", url_encode(r#"up{instance="a"}"#)))
        .await;
    assert_eq!(b.body, a.body);
    // Body parameters win over the query string, as in Go's Request.FormValue.
    let c =
        api.post_form("/api/v1/query?time=1", &format!("query={}&time=600.5", url_encode(r#"up{instance="a"}"#))).await;
    assert_eq!(c.body, a.body);
    let all = api.get("/api/v1/query?query=up&time=600").await.data();
    assert_eq!(all["resultType"], "vector");
    assert_eq!(all["result"].as_array().map(Vec::len), Some(3), "{all}");
}

#[tokio::test]
async fn value_formatting() {
    let api = api();
    let cases = [
        (
            "tiny",
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"tiny","service.name":"x\u003cy"},"value":[600,"1e-07"]}]}"#,
        ),
        ("huge", r#"{"resultType":"vector","result":[{"metric":{"__name__":"huge"},"value":[600,"1e+21"]}]}"#),
        // Scalars print without an exponent and their time in the shortest form.
        ("scalar(tiny)", r#"{"resultType":"scalar","result":[600,"0.0000001"]}"#),
        ("scalar(huge)", r#"{"resultType":"scalar","result":[600,"1000000000000000000000"]}"#),
        ("1/0", r#"{"resultType":"scalar","result":[600,"+Inf"]}"#),
        ("-1/0", r#"{"resultType":"scalar","result":[600,"-Inf"]}"#),
        ("0/0", r#"{"resultType":"scalar","result":[600,"NaN"]}"#),
        ("0.1+0.2", r#"{"resultType":"scalar","result":[600,"0.30000000000000004"]}"#),
        (r#""a\"b""#, r#"{"resultType":"string","result":[600,"a\"b"]}"#),
    ];
    for (q, data) in cases {
        let a = api.get(&format!("/api/v1/query?query={}&time=600", url_encode(q))).await;
        assert_eq!(a.body, format!(r#"{{"status":"success","data":{data}}}"#), "{q}");
    }
    let a = api.get("/api/v1/query?query=time()&time=1.009").await;
    assert_eq!(a.body, r#"{"status":"success","data":{"resultType":"scalar","result":[1.009,"1.009"]}}"#);
    let a = api.get("/api/v1/query?query=vector(time())&time=-1.5").await;
    assert_eq!(
        a.body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[-1.500,"-1.5"]}]}}"#
    );
}

#[tokio::test]
async fn default_time_is_now() {
    let api = api();
    let data = api.get("/api/v1/query?query=time()").await.data();
    let t = data["result"][0].as_f64().expect("scalar time");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!((now - t).abs() < 60.0, "{t} vs {now}");
}

#[tokio::test]
async fn range_query_matrix() {
    let api = api();
    let q = url_encode(r#"up{job="api"}"#);
    let a = api.get(&format!("/api/v1/query_range?query={q}&start=0&end=30&step=15")).await;
    assert_eq!(
        a.body,
        concat!(
            r#"{"status":"success","data":{"resultType":"matrix","result":["#,
            r#"{"metric":{"__name__":"up","instance":"a","job":"api"},"values":[[0,"1"],[15,"1"],[30,"1"]]},"#,
            r#"{"metric":{"__name__":"up","instance":"b","job":"api"},"values":[[0,"0"],[15,"0"],[30,"0"]]}]}}"#
        )
    );
    // Step as a duration, times as RFC 3339, parameters in a POST form: the same answer.
    let b = api
        .post_form(
            "/api/v1/query_range",
            &format!("query={q}&start=1970-01-01T00:00:00Z&end=1970-01-01T00:00:30Z&step=15s"),
        )
        .await;
    assert_eq!(b.body, a.body);
    // Millisecond steps print three decimals.
    let c = api.get("/api/v1/query_range?query=time()&start=0&end=1&step=0.25").await;
    assert_eq!(
        c.body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[0,"0"],[0.250,"0.25"],[0.500,"0.5"],[0.750,"0.75"],[1,"1"]]}]}}"#
    );
}

/// The body of a GET as the chunks it arrives in, and its content-length header if any.
async fn chunks_of(api: &api_common::TestApi, uri: &str) -> (Vec<axum::body::Bytes>, Option<String>) {
    let resp = api.router.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let length = resp.headers().get("content-length").map(|v| v.to_str().unwrap().to_owned());
    let mut body = resp.into_body().into_data_stream();
    let mut chunks = Vec::new();
    while let Some(chunk) = body.next().await {
        chunks.push(chunk.unwrap());
    }
    (chunks, length)
}

/// The series of a matrix answer over the fixture from 0 to 600 s at 0.1 s: all 7, each with
/// all 6001 points.
fn every_series_whole(body: &[u8]) -> Vec<serde_json::Value> {
    let j: serde_json::Value = serde_json::from_slice(body).unwrap();
    let result = j["data"]["result"].as_array().unwrap().clone();
    assert_eq!(result.len(), 7);
    for s in &result {
        assert_eq!(s["values"].as_array().map(Vec::len), Some(6001), "{}", s["metric"]);
    }
    result
}

#[tokio::test]
async fn results_come_whole_or_streamed_by_size() {
    let api = api();
    // 6001 points for each of 7 series, about 600 KB of JSON: one body with its length (in the
    // pieces it was encoded in).
    let small = format!("/api/v1/query_range?query={}&start=0&end=600&step=0.1", url_encode(r#"{__name__=~".+"}"#));
    let (chunks, length) = chunks_of(&api, &small).await;
    let bytes: Vec<u8> = chunks.concat();
    assert_eq!(length, Some(bytes.len().to_string()));
    let result = every_series_whole(&bytes);
    assert!(result.iter().all(|s| s["values"][6000][0] == json!(600)));

    // With 17-digit values the same points pass a mebibyte: sent in pieces as they are encoded
    // (the start held until then, encoded runs, the rest), never as one string.
    let q = url_encode(r#"{__name__=~".+"} + time() / 7"#);
    let large = format!("/api/v1/query_range?query={q}&start=0&end=600&step=0.1");
    let (chunks, length) = chunks_of(&api, &large).await;
    let bytes: Vec<u8> = chunks.concat();
    assert!(bytes.len() > 1 << 20, "{} bytes", bytes.len());
    assert!(chunks.len() >= 3, "{} chunks for {} bytes", chunks.len(), bytes.len());
    assert_eq!(length, None);
    let result = every_series_whole(&bytes);
    let up_a = result.iter().find(|s| s["metric"]["instance"] == "a").unwrap();
    assert_eq!(up_a["values"][70], json!([7, "2"]));
    assert_eq!(up_a["values"][1][1].as_str().unwrap().parse::<f64>().unwrap(), 1.0 + 0.1 / 7.0);

    // A client that leaves after the first chunk does not hold the server's encoder up.
    for _ in 0..8 {
        let resp = api.router.clone().oneshot(Request::get(&large).body(Body::empty()).unwrap()).await.unwrap();
        let mut body = resp.into_body().into_data_stream();
        assert!(body.next().await.is_some());
    }
    let small = api.get("/api/v1/query?query=1&time=1").await;
    assert_eq!(small.body, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#);
}

#[tokio::test]
async fn range_query_parameter_errors() {
    let api = api();
    for (params, msg) in [
        ("end=10&step=1", "invalid parameter \"start\": cannot parse \"\" to a valid timestamp"),
        ("start=x&end=10&step=1", "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp"),
        ("start=0&step=1", "invalid parameter \"end\": cannot parse \"\" to a valid timestamp"),
        ("start=10&end=5&step=1", "invalid parameter \"end\": end timestamp must not be before start time"),
        ("start=0&end=10", "invalid parameter \"step\": cannot parse \"\" to a valid duration"),
        ("start=0&end=10&step=abc", "invalid parameter \"step\": cannot parse \"abc\" to a valid duration"),
        (
            "start=0&end=10&step=0",
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            "start=0&end=10&step=-1m",
            "invalid parameter \"step\": cannot parse \"-1m\" to a valid duration",
        ),
        (
            "start=0&end=11001&step=1",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
        ("start=0&end=10&step=1&timeout=soon", "invalid parameter \"timeout\": cannot parse \"soon\" to a valid duration"),
    ] {
        api.get(&format!("/api/v1/query_range?query=1&{params}")).await.assert_error(400, "bad_data", msg);
    }
    // Exactly 11,000 steps (11,001 points) is allowed.
    let data = api.get("/api/v1/query_range?query=1&start=0&end=11000&step=1").await.data();
    assert_eq!(data["result"][0]["values"].as_array().map(Vec::len), Some(11_001));
    // Only instant vectors and scalars can be graphed.
    let a = api.get(&format!("/api/v1/query_range?query={}&start=0&end=10&step=1", url_encode("up[5m]"))).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.json()["error"].as_str().is_some_and(|e| e.starts_with("invalid parameter \"query\": ")), "{}", a.body);
}

#[tokio::test]
async fn query_errors() {
    let api = api();
    for q in ["up(", "", "sum(", "up{"] {
        let a = api.get(&format!("/api/v1/query?query={}&time=600", url_encode(q))).await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
        let j = a.json();
        assert_eq!(j["errorType"], "bad_data");
        assert!(j["error"].as_str().is_some_and(|e| e.starts_with("invalid parameter \"query\": ")), "{q}: {}", a.body);
    }
    api.get("/api/v1/query?query=1&time=tomorrow").await.assert_error(
        400,
        "bad_data",
        "invalid parameter \"time\": Invalid time value for 'time': cannot parse \"tomorrow\" to a valid timestamp",
    );
    api.get("/api/v1/query?query=1&limit=-1").await.assert_error(
        400,
        "bad_data",
        "invalid parameter \"limit\": limit must be non-negative",
    );
    // Evaluation failures are `execution` (422): here two api series end up with equal labels.
    api.get(&format!(
        "/api/v1/query?query={}&time=600",
        url_encode(r#"label_replace(up, "instance", "x", "job", ".*")"#)
    ))
    .await
    .assert_error(422, "execution", "vector cannot contain metrics with the same labelset");
}

#[tokio::test]
async fn too_many_samples_is_422() {
    let api = api_with(EngineOptions { max_samples: 10, ..EngineOptions::default() }, |_| {});
    api.get("/api/v1/query?query=up%5B10m%5D&time=600").await.assert_error(
        422,
        "execution",
        "query processing would load too many samples into memory in query execution",
    );
    // A small query still runs.
    assert_eq!(api.get("/api/v1/query?query=1&time=600").await.status, 200);
}

#[tokio::test]
async fn timeouts_are_503() {
    let api = api();
    api.get("/api/v1/query?query=up&timeout=0").await.assert_error(503, "timeout", "query timed out in query queue");
    let a = api.get("/api/v1/query_range?query=up&start=0&end=600&step=1&timeout=0.000000001").await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.json()["errorType"], "timeout");
    // A request's timeout cannot exceed --query.timeout.
    let api = api_with(EngineOptions { timeout: Duration::from_nanos(1), ..EngineOptions::default() }, |_| {});
    let a = api.get("/api/v1/query?query=up&timeout=1h").await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.json()["errorType"], "timeout");
}

/// A storage cut off at a deadline, as a proxy is: its reads wait until then and fail.
struct CutOffAt(std::time::Instant);

impl Storage for CutOffAt {
    fn select(&self, _: &SelectRequest) -> Result<SeriesSet, StorageError> {
        std::thread::sleep(self.0.saturating_duration_since(std::time::Instant::now()));
        Err(StorageError::Unavailable("query deadline exceeded while waiting for store s".into()))
    }
    fn label_names(&self, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        Ok(LabelsAnswer::default())
    }
    fn label_values(&self, _: &str, _: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        Ok(LabelsAnswer::default())
    }
}

/// With `storage_until`, a query reads the storage it gives for the query's deadline; a read
/// cut off there fails the query as a timeout.
#[tokio::test]
async fn queries_read_the_storage_for_their_deadline() {
    let deadlines = Arc::new(Mutex::new(Vec::new()));
    let seen = deadlines.clone();
    let api = api_with(EngineOptions { timeout: Duration::from_secs(60), ..EngineOptions::default() }, move |st| {
        st.storage_until = Some(Arc::new(move |deadline| {
            seen.lock().unwrap().push(deadline);
            Arc::new(CutOffAt(deadline)) as Arc<dyn Storage>
        }));
    });
    let asked = std::time::Instant::now();
    let a = api.get("/api/v1/query?query=up&time=600&timeout=300ms").await;
    let answered = std::time::Instant::now();
    a.assert_error(503, "timeout", "query timed out in expression evaluation");
    // The request's timeout from when the API took it.
    let timeout = Duration::from_millis(300);
    let deadline = deadlines.lock().unwrap()[0];
    assert!(deadline >= asked + timeout && deadline <= answered + timeout, "{:?}", deadline - asked);
}

#[tokio::test]
async fn stats_limit_and_lookback() {
    let api = api();
    let data = api.get("/api/v1/query?query=up&time=600&stats=all").await.data();
    let stats = &data["stats"];
    for key in
        ["evalTotalTime", "resultSortTime", "queryPreparationTime", "innerEvalTime", "execQueueTime", "execTotalTime"]
    {
        assert!(stats["timings"][key].is_number(), "{key} in {stats}");
    }
    assert!(stats["samples"]["totalQueryableSamples"].as_u64().is_some_and(|n| n >= 3), "{stats}");
    assert!(stats["samples"]["peakSamples"].as_u64().is_some_and(|n| n >= 3), "{stats}");
    assert!(api.get("/api/v1/query?query=up&time=600").await.data().get("stats").is_none());
    let data = api.get("/api/v1/query_range?query=up&start=0&end=60&step=15&stats=all").await.data();
    assert!(data["stats"]["samples"]["totalQueryableSamples"].is_u64(), "{data}");

    let a = api.get("/api/v1/query?query=up&time=600&limit=1").await;
    assert_eq!(a.data()["result"].as_array().map(Vec::len), Some(1));
    assert_eq!(a.json()["warnings"], json!(["results truncated due to limit"]));
    let a = api.get("/api/v1/query_range?query=up&start=0&end=60&step=15&limit=2").await;
    assert_eq!(a.data()["result"].as_array().map(Vec::len), Some(2));
    assert_eq!(a.json()["warnings"], json!(["results truncated due to limit"]));

    // The last samples are at 600 s: 100 s later the default 5m lookback finds them, 1m not.
    assert_eq!(api.get("/api/v1/query?query=up&time=700").await.data()["result"].as_array().map(Vec::len), Some(3));
    assert_eq!(api.get("/api/v1/query?query=up&time=700&lookback_delta=1m").await.data()["result"], json!([]));
}
