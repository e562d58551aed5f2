//! The Thanos querier's side of the API through the router: deduplication (`dedup`,
//! `replicaLabels[]`) on queries, series, labels and label values; `partial_response`,
//! `storeMatch[]`, `max_source_resolution` and the tenant as every read carries them; their
//! bad values; storage warnings in the envelope; tenancy enforcement.

mod api_common;

use std::sync::{Arc, Mutex};

use api_common::{api_over, SeriesDef, TestApi};
use serde_json::{json, Value};
use strata_query::api::{ApiState, QuerierOptions};
use strata_query::engine::EngineOptions;
use strata_storage::{LabelsAnswer, LabelsRequest, PartialResponse, SelectRequest, SeriesSet, Storage, StorageError};
use strata_testkit::url_encode;
use strata_tsdb::db::Db;

/// Two replicas (`replica="r1"`, `"r2"`) of each series.
fn replicated() -> Vec<SeriesDef> {
    let mut out: Vec<SeriesDef> = Vec::new();
    for replica in ["r1", "r2"] {
        out.push((vec![("__name__", "up"), ("instance", "a"), ("job", "api"), ("replica", replica)], |_| 1.0));
        out.push((vec![("__name__", "up"), ("instance", "b"), ("job", "api"), ("replica", replica)], |_| 0.0));
        out.push((vec![("__name__", "c_total"), ("job", "api"), ("replica", replica)], |t| 2.0 * t));
    }
    out
}

/// What the storage was asked.
#[derive(Default)]
struct Seen {
    selects: Vec<SelectRequest>,
    labels: Vec<LabelsRequest>,
}

/// The TSDB, recording requests and, with `warn`, adding a warning to every answer.
struct Recorder {
    db: Db,
    seen: Arc<Mutex<Seen>>,
    warn: bool,
}

const WARNING: &str = "store b did not answer";

impl Recorder {
    fn answer(&self, mut a: LabelsAnswer) -> LabelsAnswer {
        if self.warn {
            a.warnings.push(WARNING.into());
        }
        a
    }
}

impl Storage for Recorder {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        self.seen.lock().unwrap().selects.push(req.clone());
        let set = Storage::select(&self.db, req)?;
        if self.warn {
            set.warnings_handle().add(WARNING.into());
        }
        Ok(set)
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        self.seen.lock().unwrap().labels.push(req.clone());
        Ok(self.answer(Storage::label_names(&self.db, req)?))
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        self.seen.lock().unwrap().labels.push(req.clone());
        Ok(self.answer(Storage::label_values(&self.db, name, req)?))
    }
}

/// `series` behind the API with `querier` options; what the storage is asked lands in the
/// returned `Seen`.
fn querier_api(series: &[SeriesDef], querier: QuerierOptions, warn: bool) -> (TestApi, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let recorded = Arc::clone(&seen);
    let api = api_over(
        series,
        move |db| Arc::new(Recorder { db, seen: recorded, warn }),
        EngineOptions::default(),
        |st: &mut ApiState| st.querier = querier,
    );
    (api, seen)
}

fn dedup_api() -> TestApi {
    querier_api(&replicated(), QuerierOptions { replica_labels: vec!["replica".into()], ..Default::default() }, false).0
}

fn metrics(data: &Value) -> Vec<Value> {
    data["result"].as_array().unwrap().iter().map(|s| s["metric"].clone()).collect()
}

#[tokio::test]
async fn dedup_merges_replicas_in_queries() {
    let api = dedup_api();
    let up = |instance: &str| json!({"__name__": "up", "instance": instance, "job": "api"});
    let data = api.get("/api/v1/query?query=up&time=600").await.data();
    assert_eq!(metrics(&data), [up("a"), up("b")]);
    // Without deduplication every replica, with its label.
    let data = api.get("/api/v1/query?query=up&time=600&dedup=false").await.data();
    assert_eq!(metrics(&data).len(), 4);
    assert!(metrics(&data).iter().all(|m| m["replica"].is_string()), "{data}");
    // Other replica labels for this request: series equal but for `instance` merge.
    let data = api.get("/api/v1/query?query=up&time=600&replicaLabels[]=instance").await.data();
    assert_eq!(
        metrics(&data),
        [
            json!({"__name__": "up", "job": "api", "replica": "r1"}),
            json!({"__name__": "up", "job": "api", "replica": "r2"})
        ]
    );
    // Ranges: each series once, so the sum is that of one copy.
    for (dedup, sum) in [("true", "1"), ("false", "2")] {
        let uri = format!("/api/v1/query_range?query=sum(up)&start=0&end=600&step=60&dedup={dedup}");
        assert_eq!(api.get(&uri).await.data()["result"][0]["values"][10][1], sum, "dedup={dedup}");
    }
    let data = api.get(&format!("/api/v1/query?query={}&time=600", url_encode("rate(c_total[5m])"))).await.data();
    assert_eq!(metrics(&data), [json!({"job": "api"})]);
    let rate: f64 = data["result"][0]["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap();
    assert!((rate - 2.0).abs() < 1e-9, "{data}");
}

#[tokio::test]
async fn dedup_in_series_and_labels() {
    let api = dedup_api();
    let up = |instance: &str| json!({"__name__": "up", "instance": instance, "job": "api"});
    assert_eq!(api.get("/api/v1/series?match[]=up").await.data(), json!([up("a"), up("b")]));
    let all = api.get("/api/v1/series?match[]=up&dedup=0").await.data();
    assert_eq!(all.as_array().map(Vec::len), Some(4), "{all}");
    let names = api.get("/api/v1/labels").await.data();
    assert_eq!(names, json!(["__name__", "instance", "job"]));
    let names = api.get("/api/v1/labels?dedup=false").await.data();
    assert_eq!(names, json!(["__name__", "instance", "job", "replica"]));
    assert_eq!(api.get("/api/v1/label/replica/values").await.data(), json!([]));
    assert_eq!(api.get("/api/v1/label/replica/values?dedup=false").await.data(), json!(["r1", "r2"]));
    assert_eq!(api.get("/api/v1/label/instance/values").await.data(), json!(["a", "b"]));
}

#[tokio::test]
async fn bad_parameters_are_bad_data() {
    let api = dedup_api();
    let endpoints = [
        "/api/v1/query?query=up&time=600",
        "/api/v1/query_range?query=up&start=0&end=600&step=60",
        "/api/v1/series?match[]=up",
        "/api/v1/labels?x=1",
        "/api/v1/label/job/values?x=1",
    ];
    let bad = [
        ("dedup=maybe", "'dedup' parameter: strconv.ParseBool: parsing \"maybe\": invalid syntax"),
        ("partial_response=2", "'partial_response' parameter: strconv.ParseBool: parsing \"2\": invalid syntax"),
        ("storeMatch[]=up(", "1:3: parse error: unexpected \"(\""),
    ];
    for endpoint in endpoints {
        for (param, message) in bad {
            api.get(&format!("{endpoint}&{param}")).await.assert_error(400, "bad_data", message);
        }
        api.get_with(endpoint, &[("THANOS-TENANT", "a/b")]).await.assert_error(
            400,
            "bad_data",
            "Tenant name not valid",
        );
    }
    for endpoint in &endpoints[..2] {
        for (param, message) in [
            ("max_source_resolution=x", "'max_source_resolution' parameter: cannot parse \"x\" to a valid duration"),
            ("max_source_resolution=-300", "negative 'max_source_resolution' is not accepted. Try a positive integer"),
        ] {
            api.get(&format!("{endpoint}&{param}")).await.assert_error(400, "bad_data", message);
        }
    }
}

#[tokio::test]
async fn read_options_reach_the_storage() {
    let (api, seen) = querier_api(&replicated(), QuerierOptions::default(), false);
    let last_select = || seen.lock().unwrap().selects.pop().expect("a select");
    // Thanos's defaults: partial responses, raw data, the default tenant.
    api.get("/api/v1/query?query=up&time=600").await.data();
    let req = last_select();
    assert_eq!(req.scope.partial_response, PartialResponse::Warn);
    assert_eq!(req.scope.tenant.as_deref(), Some("default-tenant"));
    assert!(req.scope.store_matchers.is_empty());
    assert_eq!(req.max_resolution_window, 0);

    let uri = format!(
        "/api/v1/query?query=up&time=600&partial_response=false&max_source_resolution=5m&storeMatch[]={}",
        url_encode(r#"{zone="eu"}"#)
    );
    api.get_with(&uri, &[("THANOS-TENANT", "team")]).await.data();
    let req = last_select();
    assert_eq!(req.scope.partial_response, PartialResponse::Abort);
    assert_eq!(req.scope.tenant.as_deref(), Some("team"));
    let store: Vec<(String, String)> =
        req.scope.store_matchers.iter().flatten().map(|m| (m.name.clone(), m.value.clone())).collect();
    assert_eq!(store, [("zone".to_owned(), "eu".to_owned())]);
    assert_eq!(req.max_resolution_window, 300_000);

    // `auto`: a fifth of the step, raw data for instant queries.
    let range = |extra: &str| format!("/api/v1/query_range?query=up&start=0&end=600&step=60{extra}");
    api.get(&range("&max_source_resolution=auto")).await.data();
    assert_eq!(last_select().max_resolution_window, 12_000);
    api.get(&range("")).await.data();
    assert_eq!(last_select().max_resolution_window, 0);
    api.get("/api/v1/query?query=up&time=600&max_source_resolution=auto").await.data();
    assert_eq!(last_select().max_resolution_window, 0);

    // Series and labels carry the scope and the replica labels to leave out.
    api.get_with("/api/v1/series?match[]=up&partial_response=0", &[("THANOS-TENANT", "team")]).await.data();
    let req = last_select();
    assert_eq!((req.scope.tenant.as_deref(), req.scope.partial_response), (Some("team"), PartialResponse::Abort));
    assert!(req.skip_chunks);
    api.get("/api/v1/labels?replicaLabels[]=replica").await.data();
    api.get("/api/v1/label/job/values?replicaLabels[]=replica&dedup=false").await.data();
    let labels = std::mem::take(&mut seen.lock().unwrap().labels);
    assert_eq!(labels.len(), 2);
    assert_eq!(labels[0].without_replica_labels, ["replica"]);
    assert!(labels[1].without_replica_labels.is_empty());
    assert!(labels.iter().all(|r| r.scope.tenant.as_deref() == Some("default-tenant")));

    // The flags' defaults.
    let flags = QuerierOptions {
        partial_response: false,
        auto_downsampling: true,
        replica_labels: vec!["replica".into()],
        ..Default::default()
    };
    let (api, seen) = querier_api(&replicated(), flags, false);
    let last_select = || seen.lock().unwrap().selects.pop().expect("a select");
    api.get(&range("")).await.data();
    let req = last_select();
    assert_eq!((req.scope.partial_response, req.max_resolution_window), (PartialResponse::Abort, 12_000));
    api.get(&range("&max_source_resolution=raw")).await.data();
    assert_eq!(last_select().max_resolution_window, 0);
    api.get("/api/v1/series?match[]=up").await.data();
    assert_eq!(last_select().without_replica_labels, ["replica"]);
}

#[tokio::test]
async fn storage_warnings_reach_the_envelope() {
    let (api, _) = querier_api(&replicated(), QuerierOptions::default(), true);
    for uri in [
        "/api/v1/query?query=up&time=600",
        "/api/v1/query_range?query=sum(up)&start=0&end=600&step=60",
        "/api/v1/series?match[]=up",
        "/api/v1/labels",
        "/api/v1/label/job/values",
    ] {
        let a = api.get(uri).await;
        a.data();
        assert_eq!(a.json()["warnings"], json!([WARNING]), "{uri}: {}", a.body);
    }
}

/// Series of two tenants; `t2`'s have a label of their own.
fn tenants() -> Vec<SeriesDef> {
    vec![
        (vec![("__name__", "up"), ("instance", "a"), ("tenant_id", "t1")], |_| 1.0),
        (vec![("__name__", "up"), ("instance", "b"), ("tenant_id", "t2")], |_| 1.0),
        (vec![("__name__", "secret"), ("only_t2", "x"), ("tenant_id", "t2")], |_| 7.0),
    ]
}

/// With enforcement a tenant reads its own series only, whatever its selectors say about the
/// tenant label or leave out.
#[tokio::test]
async fn tenancy_enforced_everywhere() {
    let (api, _) = querier_api(&tenants(), QuerierOptions { enforce_tenancy: true, ..Default::default() }, false);
    let t1 = [("THANOS-TENANT", "t1")];
    let tenants_in = |data: &Value| -> Vec<String> {
        let series: Vec<Value> = match data.get("result") {
            Some(r) => r.as_array().unwrap().iter().map(|s| s["metric"].clone()).collect(),
            None => data.as_array().unwrap().clone(),
        };
        series.iter().map(|m| m["tenant_id"].as_str().unwrap_or("").to_owned()).collect()
    };
    for q in [
        "up",
        r#"up{tenant_id="t2"}"#,
        r#"up{tenant_id=~".+"}"#,
        r#"up{tenant_id!="t1"}"#,
        r#"{__name__=~".+"}"#,
        r#"{tenant_id="t2"}"#,
        r#"{__name__=~".+", tenant_id=~"t1|t2"}"#,
        r#"count by (tenant_id) ({__name__=~".+"})"#,
        r#"last_over_time({__name__=~".+"}[5m])"#,
        r#"{__name__=~".+"} or secret"#,
    ] {
        for uri in [
            format!("/api/v1/query?query={}&time=600", url_encode(q)),
            format!("/api/v1/query_range?query={}&start=0&end=600&step=60", url_encode(q)),
        ] {
            let data = api.get_with(&uri, &t1).await.data();
            let seen = tenants_in(&data);
            assert!(!seen.is_empty() && seen.iter().all(|t| t == "t1"), "{q}: {data}");
        }
    }
    let data = api.get_with("/api/v1/query?query=secret&time=600", &t1).await.data();
    assert_eq!(data["result"], json!([]));
    for selectors in [vec![r#"{__name__=~".+"}"#], vec![r#"{tenant_id="t2"}"#, "secret", r#"up{tenant_id=~".*t.*"}"#]] {
        let params: Vec<String> = selectors.iter().map(|s| format!("match[]={}", url_encode(s))).collect();
        let data = api.get_with(&format!("/api/v1/series?{}", params.join("&")), &t1).await.data();
        assert_eq!(data, json!([{"__name__": "up", "instance": "a", "tenant_id": "t1"}]), "{selectors:?}");
        let names = api.get_with(&format!("/api/v1/labels?{}", params.join("&")), &t1).await.data();
        assert_eq!(names, json!(["__name__", "instance", "tenant_id"]), "{selectors:?}");
    }
    assert_eq!(api.get_with("/api/v1/labels", &t1).await.data(), json!(["__name__", "instance", "tenant_id"]));
    assert_eq!(api.get_with("/api/v1/label/__name__/values", &t1).await.data(), json!(["up"]));
    assert_eq!(api.get_with("/api/v1/label/tenant_id/values", &t1).await.data(), json!(["t1"]));
    let secret = format!("/api/v1/label/only_t2/values?match[]={}", url_encode(r#"{tenant_id="t2"}"#));
    assert_eq!(api.get_with(&secret, &t1).await.data(), json!([]));
    // No tenant header: the default tenant, which has no series here.
    assert_eq!(api.get("/api/v1/query?query=up&time=600").await.data()["result"], json!([]));
    assert_eq!(api.get("/api/v1/labels").await.data(), json!([]));

    // A tenant header of the operator's choosing; Thanos's own still counts.
    let custom = QuerierOptions { enforce_tenancy: true, tenant_header: "X-Scope-OrgID".into(), ..Default::default() };
    let (api, _) = querier_api(&tenants(), custom, false);
    let data = api.get_with("/api/v1/series?match[]=up", &[("X-Scope-OrgID", "t2")]).await.data();
    assert_eq!(data, json!([{"__name__": "up", "instance": "b", "tenant_id": "t2"}]));
    let data = api.get_with("/api/v1/series?match[]=up", &t1).await.data();
    assert_eq!(data, json!([{"__name__": "up", "instance": "a", "tenant_id": "t1"}]));

    // Without enforcement the tenant only travels with the reads.
    let (api, seen) = querier_api(&tenants(), QuerierOptions::default(), false);
    let data = api.get_with("/api/v1/series?match[]=up", &t1).await.data();
    assert_eq!(data.as_array().map(Vec::len), Some(2), "{data}");
    assert_eq!(seen.lock().unwrap().selects[0].scope.tenant.as_deref(), Some("t1"));
}
