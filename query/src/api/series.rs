//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/{name}/values` and `/api/v1/metadata`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use strata_storage::{LabelsRequest, SelectRequest};
use strata_tsdb::labels::Labels;

use super::error::ApiError;
use super::json::{self, JsonWriter};
use super::params::{limit_param, match_param, time_param, unescape_label_name, Params, MAX_TIME, MIN_TIME};
use super::querier::read_options;
use super::{blocking, ApiState};
use crate::engine::remove_labels;

const TRUNCATED: &str = "results truncated due to limit";

fn respond(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `start` and `end`, defaulting to all time.
fn time_range(p: &Params) -> Result<(i64, i64), ApiError> {
    Ok((time_param(p, "start", MIN_TIME)?, time_param(p, "end", MAX_TIME)?))
}

/// The storage limit for a request with `limit`: one more than it, so that a truncation shows.
fn storage_limit(limit: Option<usize>) -> usize {
    limit.map_or(0, |l| l.saturating_add(1))
}

/// Adds the `new` warnings not in `warnings` yet.
fn add_warnings(warnings: &mut Vec<String>, new: Vec<String>) {
    for w in new {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
}

/// Keeps the first `limit` items, saying so in a warning when that dropped some.
fn apply_limit<T>(items: &mut Vec<T>, limit: Option<usize>, warnings: &mut Vec<String>) {
    if let Some(limit) = limit {
        if items.len() > limit {
            items.truncate(limit);
            warnings.push(TRUNCATED.into());
        }
    }
}

pub async fn series(State(st): State<Arc<ApiState>>, headers: HeaderMap, p: Params) -> Response {
    respond(find_series(&st, &headers, &p).await)
}

/// The series of every `match[]` selector; deduplicating, without the replica labels, each
/// series once.
async fn find_series(st: &ApiState, headers: &HeaderMap, p: &Params) -> Result<Response, ApiError> {
    if p.all("match[]").next().is_none() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let limit = limit_param(p)?;
    let (start, end) = time_range(p)?;
    let sets = match_param(p).map_err(|e| ApiError::invalid_param("match[]", e))?;
    let opts = read_options(&st.querier, headers, p)?;
    let storage = st.storage.clone();
    let (found, mut warnings) = blocking(move || {
        // Several selectors: the union of their series, sorted by labels. The first `limit` + 1
        // of each are enough to know the union's first `limit` + 1.
        let mut all: BTreeSet<Labels> = BTreeSet::new();
        let mut warnings = Vec::new();
        for matchers in sets {
            let req = SelectRequest {
                skip_chunks: true,
                limit: storage_limit(limit),
                without_replica_labels: opts.replica_labels.clone(),
                scope: opts.scope.clone(),
                // Any resolution will do for labels, as Thanos asks.
                max_resolution_window: i64::MAX,
                ..SelectRequest::new(opts.enforce(matchers), start, end)
            };
            let mut set = storage.select(&req)?;
            for s in set.by_ref() {
                let labels = s?.labels;
                // A store may leave the replica labels in.
                let replica = opts.replica_labels.iter().any(|r| labels.get(r).is_some());
                all.insert(if replica { remove_labels(&labels, &opts.replica_labels) } else { labels });
            }
            add_warnings(&mut warnings, set.warnings());
        }
        Ok((all, warnings))
    })
    .await?;
    let mut found: Vec<Labels> = found.into_iter().collect();
    apply_limit(&mut found, limit, &mut warnings);
    let mut w = JsonWriter::success();
    w.raw("[");
    for (i, labels) in found.iter().enumerate() {
        if i > 0 {
            w.raw(",");
        }
        w.labels(labels);
    }
    w.raw("]");
    Ok(json::success(w, &warnings, &[]))
}

pub async fn label_names(State(st): State<Arc<ApiState>>, headers: HeaderMap, p: Params) -> Response {
    respond(strings_of(&st, &headers, &p, None).await)
}

pub async fn label_values(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    p: Params,
) -> Response {
    let name = unescape_label_name(&name);
    if name.is_empty() {
        return ApiError::bad_data(format!("invalid label name: {}", strata_tsdb::gotext::quote(&name)))
            .into_response();
    }
    respond(strings_of(&st, &headers, &p, Some(name)).await)
}

/// Label names (`name` is `None`) or the values of label `name`, of the series matching any
/// `match[]` selector (of all series without one, or all of the tenant's under enforcement).
/// Deduplicating, the replica labels are left out: no such name, no values of one.
async fn strings_of(
    st: &ApiState,
    headers: &HeaderMap,
    p: &Params,
    name: Option<String>,
) -> Result<Response, ApiError> {
    let limit = limit_param(p)?;
    let (start, end) = time_range(p)?;
    let mut sets = match_param(p).map_err(ApiError::bad_data)?;
    if sets.is_empty() {
        sets.push(Vec::new());
    }
    let opts = read_options(&st.querier, headers, p)?;
    let storage = st.storage.clone();
    let (found, mut warnings) = blocking(move || {
        let mut all: BTreeSet<String> = BTreeSet::new();
        let mut warnings: Vec<String> = Vec::new();
        if name.as_ref().is_some_and(|n| opts.replica_labels.contains(n)) {
            return Ok((all, warnings));
        }
        for matchers in sets {
            let req = LabelsRequest {
                limit: storage_limit(limit),
                without_replica_labels: opts.replica_labels.clone(),
                scope: opts.scope.clone(),
                ..LabelsRequest::new(opts.enforce(matchers), start, end)
            };
            let answer = match &name {
                None => storage.label_names(&req)?,
                Some(n) => storage.label_values(n, &req)?,
            };
            // A store may leave the replica labels in.
            all.extend(answer.values.into_iter().filter(|v| name.is_some() || !opts.replica_labels.contains(v)));
            add_warnings(&mut warnings, answer.warnings);
        }
        Ok((all, warnings))
    })
    .await?;
    let mut found: Vec<String> = found.into_iter().collect();
    apply_limit(&mut found, limit, &mut warnings);
    let mut w = JsonWriter::success();
    w.strings(found.iter().map(String::as_str));
    Ok(json::success(w, &warnings, &[]))
}

pub async fn metadata(State(st): State<Arc<ApiState>>, p: Params) -> Response {
    respond(list_metadata(&st, &p))
}

/// Prometheus's `limit` and `limit_per_metric` here: a negative number means no limit.
fn metadata_limit(p: &Params, name: &str) -> Result<Option<usize>, ApiError> {
    match p.get(name) {
        "" => Ok(None),
        v => v
            .parse::<i64>()
            .map(|n| usize::try_from(n).ok())
            .map_err(|_| ApiError::bad_data(format!("{name} must be a number"))),
    }
}

fn list_metadata(st: &ApiState, p: &Params) -> Result<Response, ApiError> {
    let limit = metadata_limit(p, "limit")?;
    let per_metric = metadata_limit(p, "limit_per_metric")?.filter(|&n| n > 0);
    let metric = Some(p.get("metric")).filter(|m| !m.is_empty());
    let families = st.metadata.metadata(metric);
    let mut w = JsonWriter::success();
    w.raw("{");
    for (i, (name, entries)) in families.iter().take(limit.unwrap_or(usize::MAX)).enumerate() {
        if i > 0 {
            w.raw(",");
        }
        w.string(name);
        w.raw(":[");
        for (j, md) in entries.iter().take(per_metric.unwrap_or(usize::MAX)).enumerate() {
            if j > 0 {
                w.raw(",");
            }
            w.raw(r#"{"type":"#);
            w.string(&md.metric_type);
            w.raw(r#","help":"#);
            w.string(&md.help);
            w.raw(r#","unit":"#);
            w.string(&md.unit);
            w.raw("}");
        }
        w.raw("]");
    }
    w.raw("}");
    Ok(json::success(w, &[], &[]))
}
