//! Tenancy end to end, through the real gRPC path: one `strata receive` gets remote writes for
//! two tenants (the `THANOS-TENANT` header), each with a metric and a label name of its own and
//! a metric both have; `strata query --query.enforce-tenancy` reads it over the StoreAPI. For
//! each tenant (the same header on the query API), queries (instant and range), `/api/v1/series`,
//! label names and label values never show the other tenant's series, names or values, whatever
//! matchers are sent: regexes and negations on `tenant_id`, the other tenant's `tenant_id`,
//! `{__name__=~".+"}`, `or` with the other tenant's selector, matchers through `match[]`. A
//! request without the header is the default tenant's, which holds nothing. The same requests to
//! a querier without enforcement do see both tenants: the data is there to leak.

mod common;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{remote_write_body, strata_bin, REMOTE_WRITE_V1};
use serde_json::Value;
use strata_proto::prometheus as v1;
use strata_testkit::{http, url_encode, wait_for, Fleet, Node};

const TENANTS: [&str; 2] = ["team-a", "team-b"];

/// The metric and the label name only `tenant` has.
fn own(tenant: &str) -> (String, String) {
    let suffix = tenant.trim_start_matches("team-");
    (format!("tenancy_only_{suffix}"), format!("secret_{suffix}"))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// Writes `tenancy_shared{instance="i0"}` and `tenant`'s own metric with its own label, each
/// with a sample a little before now.
fn write(addr: &str, tenant: &str) {
    let (metric, label) = own(tenant);
    let series = |labels: &[(&str, &str)]| v1::TimeSeries {
        labels: labels.iter().map(|(n, v)| v1::Label { name: (*n).into(), value: (*v).into() }).collect(),
        samples: vec![v1::Sample { value: 1.0, timestamp: now_ms() - 1000 }],
        ..Default::default()
    };
    let req = v1::WriteRequest {
        timeseries: vec![
            series(&[("__name__", "tenancy_shared"), ("instance", "i0")]),
            series(&[("__name__", &metric), (&label, tenant)]),
        ],
        metadata: Vec::new(),
    };
    let mut headers = REMOTE_WRITE_V1.to_vec();
    headers.push(("THANOS-TENANT", tenant));
    let (status, text) = http::post(addr, "/api/v1/receive", &headers, &remote_write_body(&req)).expect("write");
    assert!((200..300).contains(&status), "remote write for {tenant}: {status} {text}");
}

/// `GET path` as `tenant` (no header for `None`); the `data` of a successful answer.
fn ask(addr: &str, path: &str, tenant: Option<&str>) -> Value {
    let headers: Vec<(&str, &str)> = tenant.map(|t| ("THANOS-TENANT", t)).into_iter().collect();
    let (status, body) = http::request(addr, "GET", path, &headers, b"").expect("query API");
    let json: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {status}, not JSON ({e}): {body}"));
    assert_eq!((status, &json["status"]), (200, &Value::from("success")), "{path} as {tenant:?}: {json}");
    json["data"].clone()
}

/// The label sets of a query result or of `/api/v1/series`.
fn label_sets(data: &Value) -> Vec<&serde_json::Map<String, Value>> {
    let list = data.get("result").unwrap_or(data);
    list.as_array()
        .expect("a list of series")
        .iter()
        .map(|s| s.get("metric").unwrap_or(s).as_object().expect("labels"))
        .collect()
}

fn strings(data: &Value) -> BTreeSet<String> {
    data.as_array().expect("a list of strings").iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
}

/// Queries (with `$T` for the tenant and `$O` for the other one) whose every series must be
/// the tenant's own, and how many series they give at least. A selector left with the tenant
/// label alone selects nothing: a store answers it "no matchers specified (excluding external
/// labels)", as Thanos's do, which the querier turns into a warning.
const QUERIES: [(&str, usize); 9] = [
    (r#"{__name__=~".+"}"#, 2),
    (r#"{__name__=~".+", tenant_id="$O"}"#, 2),
    (r#"{__name__=~".+", tenant_id=~".*"}"#, 2),
    (r#"{__name__=~".+", tenant_id!="$T"}"#, 2),
    (r#"{tenant_id=~"team-.+"}"#, 0),
    (r#"tenancy_shared or {tenant_id="$O"}"#, 1),
    (r#"count by (tenant_id, __name__) ({__name__=~"tenancy_.+"})"#, 2),
    (r#"last_over_time({__name__=~".+", tenant_id=~"$O|$T"}[10m])"#, 2),
    (r#"sum by (tenant_id) (count_over_time({__name__=~".+", tenant_id!~"$T"}[5m]))"#, 1),
];

#[test]
fn a_tenant_never_sees_another_tenants_data() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let receive_slot = fleet.slot("receive");
    let mut receive = Node::spawn(strata_bin(), &receive_slot, receive_slot.receive_args());
    let enforced_slot = fleet.slot("query-enforced");
    let mut args = enforced_slot.query_args(&[receive_slot.grpc.as_str()]);
    args.push("--query.enforce-tenancy".into());
    let mut enforced = Node::spawn(strata_bin(), &enforced_slot, args);
    let open_slot = fleet.slot("query-open");
    let mut open = Node::spawn(strata_bin(), &open_slot, open_slot.query_args(&[receive_slot.grpc.as_str()]));
    for node in [&mut receive, &mut enforced, &mut open] {
        node.wait_ready();
    }
    for tenant in TENANTS {
        write(&receive_slot.remote_write, tenant);
    }
    let everything = format!("/api/v1/series?match[]={}", url_encode(r#"{__name__=~"tenancy_.+"}"#));
    wait_for("the open querier to see both tenants", std::time::Duration::from_secs(30), || {
        let n = label_sets(&ask(open.http(), &everything, None)).len();
        if n == 4 {
            Ok(())
        } else {
            Err(format!("{n} series"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let now = now_ms() / 1000;
    for (i, tenant) in TENANTS.iter().enumerate() {
        let other = TENANTS[1 - i];
        let (own_metric, own_label) = own(tenant);
        let (their_metric, their_label) = own(other);
        let fill = |q: &str| q.replace("$T", tenant).replace("$O", other);
        let own_only = |what: &str, data: &Value, at_least: usize| {
            let sets = label_sets(data);
            assert!(sets.len() >= at_least, "{what} as {tenant}: {data}");
            for set in sets {
                let text = Value::from(set.clone()).to_string();
                assert!(
                    !text.contains(other) && !text.contains(&their_metric) && !text.contains(&their_label),
                    "{what} as {tenant} shows {other}'s data: {data}"
                );
            }
        };
        for (q, at_least) in QUERIES {
            let q = fill(q);
            let instant = format!("/api/v1/query?query={}&time={now}", url_encode(&q));
            own_only(&q, &ask(enforced.http(), &instant, Some(tenant)), at_least);
            let range = format!("/api/v1/query_range?query={}&start={}&end={now}&step=15", url_encode(&q), now - 60);
            own_only(&q, &ask(enforced.http(), &range, Some(tenant)), at_least);
            // Without enforcement the same query reaches the other tenant's series.
            let seen = ask(open.http(), &instant, Some(tenant)).to_string();
            let theirs = format!(r#""tenant_id":"{other}""#);
            assert!(seen.contains(&theirs) || at_least == 0, "{q} without enforcement: {seen}");
        }
        for (matcher, at_least) in
            [(r#"{__name__=~".+"}"#, 2), (r#"{tenant_id="$O"}"#, 0), (r#"{tenant_id=~".+", __name__!=""}"#, 2)]
        {
            let matcher = fill(matcher);
            let path = format!("/api/v1/series?match[]={}&start={}&end={now}", url_encode(&matcher), now - 600);
            own_only(&matcher, &ask(enforced.http(), &path, Some(tenant)), at_least);
        }
        let match_other = format!("match[]={}", url_encode(&format!(r#"{{tenant_id="{other}"}}"#)));
        for params in ["", match_other.as_str()] {
            let names = strings(&ask(enforced.http(), &format!("/api/v1/labels?{params}"), Some(tenant)));
            assert!(names.contains(&own_label) && !names.contains(&their_label), "label names as {tenant}: {names:?}");
            let metrics =
                strings(&ask(enforced.http(), &format!("/api/v1/label/__name__/values?{params}"), Some(tenant)));
            assert!(
                metrics.contains(&own_metric) && !metrics.contains(&their_metric),
                "metric names as {tenant}: {metrics:?}"
            );
            let tenants =
                strings(&ask(enforced.http(), &format!("/api/v1/label/tenant_id/values?{params}"), Some(tenant)));
            assert_eq!(tenants, BTreeSet::from([tenant.to_string()]), "tenant_id values as {tenant}");
            let theirs =
                strings(&ask(enforced.http(), &format!("/api/v1/label/{their_label}/values?{params}"), Some(tenant)));
            assert!(theirs.is_empty(), "{their_label} values as {tenant}: {theirs:?}");
        }
    }
    // Without the header: the default tenant, which wrote nothing.
    for q in [r#"{__name__=~".+"}"#, r#"{tenant_id=~"team-.+"}"#] {
        let data = ask(enforced.http(), &format!("/api/v1/query?query={}&time={now}", url_encode(q)), None);
        assert!(label_sets(&data).is_empty(), "{q} without a tenant: {data}");
    }
    assert!(strings(&ask(enforced.http(), "/api/v1/label/tenant_id/values", None)).is_empty());
    // The open querier sees both tenants' label names.
    let names = strings(&ask(open.http(), "/api/v1/labels", Some(TENANTS[0])));
    assert!(names.contains("secret_a") && names.contains("secret_b"), "{names:?}");
}
