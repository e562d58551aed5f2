//! `/api/v1/stores`: the querier's StoreAPI endpoints in Thanos's shape, grouped by component
//! (`{"receive": [{"name", "lastCheck", "lastError", "labelSets", "minTime", "maxTime"}]}`).
//! An endpoint that never answered Info has no component and is left out, as Thanos does.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use strata_store::endpoints::EndpointStatus;

use super::json::{self, JsonWriter};
use super::ApiState;

/// What the querier's endpoints are now; set by `strata query`, absent elsewhere.
pub type StoresSource = Arc<dyn Fn() -> Vec<EndpointStatus> + Send + Sync>;

pub async fn stores(State(st): State<Arc<ApiState>>) -> Response {
    let statuses = st.stores.as_ref().map(|f| f()).unwrap_or_default();
    let mut w = JsonWriter::success();
    w.raw(&stores_json(&statuses).to_string());
    json::success(w, &[], &[])
}

fn stores_json(statuses: &[EndpointStatus]) -> Value {
    let mut groups: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for s in statuses {
        let Some(info) = &s.info else { continue };
        let label_sets: Vec<Value> = info
            .label_sets
            .iter()
            .map(|l| Value::Object(l.iter().map(|(n, v)| (n.to_owned(), Value::from(v))).collect::<Map<_, _>>()))
            .collect();
        // Go's zero time when never checked, as Thanos prints it.
        let last_check = s.last_check.map_or_else(
            || "0001-01-01T00:00:00Z".to_owned(),
            |t| DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::AutoSi, true),
        );
        groups.entry(info.component.as_str()).or_default().push(json!({
            "name": s.address,
            "lastCheck": last_check,
            "lastError": s.last_error,
            "labelSets": label_sets,
            "minTime": info.min_time,
            "maxTime": info.max_time,
        }));
    }
    json!(groups)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use strata_store::{Component, StoreInfo};
    use strata_tsdb::labels::Labels;

    use super::*;

    fn status(address: &str, component: Option<Component>, error: Option<&str>) -> EndpointStatus {
        EndpointStatus {
            address: address.into(),
            healthy: error.is_none(),
            last_error: error.map(str::to_owned),
            last_check: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            info: component.map(|component| StoreInfo {
                component,
                label_sets: vec![Labels::from_pairs(&[("replica", "a"), ("tenant_id", "t")])],
                min_time: 10,
                max_time: 20,
                tsdb_infos: Vec::new(),
            }),
        }
    }

    #[test]
    fn grouped_by_component_in_thanos_shape() {
        let got = stores_json(&[
            status("r1:10901", Some(Component::Receive), None),
            status("s1:10901", Some(Component::Store), Some("connection refused")),
            status("never:10901", None, Some("connection refused")),
        ]);
        let want = json!({
            "receive": [{
                "name": "r1:10901", "lastCheck": "2023-11-14T22:13:20.123Z", "lastError": null,
                "labelSets": [{"replica": "a", "tenant_id": "t"}], "minTime": 10, "maxTime": 20,
            }],
            "store": [{
                "name": "s1:10901", "lastCheck": "2023-11-14T22:13:20.123Z", "lastError": "connection refused",
                "labelSets": [{"replica": "a", "tenant_id": "t"}], "minTime": 10, "maxTime": 20,
            }],
        });
        assert_eq!(got, want);
    }
}
