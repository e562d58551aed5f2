//! What the API does as Thanos's querier (`pkg/api/query/v1.go`, `pkg/tenancy`): the settings
//! its flags give ([`QuerierOptions`]) and the per-request parameters over them (`dedup`,
//! `replicaLabels[]`, `partial_response`, `storeMatch[]`, `max_source_resolution`, the tenant
//! header), turned into the [`QueryOptions`] every read of the request is made with.

use axum::http::HeaderMap;
use strata_storage::{PartialResponse, ReadScope};
use strata_tsdb::gotext::quote;
use strata_tsdb::matchers::{MatchOp, Matcher};

use super::error::ApiError;
use super::params::{parse_duration, parse_selector, Params};
use crate::engine::{DedupFunc, QueryOptions};

/// The tenant header Thanos components use among themselves, also read when a custom one is
/// configured and absent.
pub const DEFAULT_TENANT_HEADER: &str = "THANOS-TENANT";
pub const DEFAULT_TENANT: &str = "default-tenant";
pub const DEFAULT_TENANT_LABEL: &str = "tenant_id";

/// The querier's settings, as `strata query` takes them from Thanos's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerierOptions {
    /// `--query.replica-label`: labels that tell replicas apart. Requests deduplicate over them
    /// unless they say `dedup=false` or name others in `replicaLabels[]`.
    pub replica_labels: Vec<String>,
    /// `--deduplication.func`.
    pub dedup_func: DedupFunc,
    /// `--query.partial-response`: without a `partial_response` parameter, answer from the
    /// stores that answered, with a warning (true), or fail (false).
    pub partial_response: bool,
    /// `--query.auto-downsampling`: without `max_source_resolution`, range queries accept data
    /// downsampled to a fifth of their step.
    pub auto_downsampling: bool,
    /// `--query.tenant-header`.
    pub tenant_header: String,
    /// `--query.default-tenant-id`: the tenant of requests without a tenant header.
    pub default_tenant: String,
    /// `--query.tenant-label-name`: the label that holds a series' tenant.
    pub tenant_label: String,
    /// `--query.enforce-tenancy`: every read of a request is limited to its tenant's series.
    pub enforce_tenancy: bool,
}

impl Default for QuerierOptions {
    /// Thanos's defaults.
    fn default() -> Self {
        QuerierOptions {
            replica_labels: Vec::new(),
            dedup_func: DedupFunc::Penalty,
            partial_response: true,
            auto_downsampling: false,
            tenant_header: DEFAULT_TENANT_HEADER.into(),
            default_tenant: DEFAULT_TENANT.into(),
            tenant_label: DEFAULT_TENANT_LABEL.into(),
            enforce_tenancy: false,
        }
    }
}

/// The read options of a request: deduplication (`dedup`, `replicaLabels[]`), store
/// matchers, partial-response strategy and tenant; raw resolution (queries add theirs with
/// [`max_source_resolution`]). Errors are Thanos's `bad_data`.
pub(crate) fn read_options(q: &QuerierOptions, headers: &HeaderMap, p: &Params) -> Result<QueryOptions, ApiError> {
    let dedup = bool_param(p, "dedup", true)?;
    let mut replica_labels: Vec<String> = p.all("replicaLabels[]").map(str::to_owned).collect();
    if replica_labels.is_empty() {
        replica_labels = q.replica_labels.clone();
    }
    if !dedup {
        replica_labels.clear();
    }
    let store_matchers =
        p.all("storeMatch[]").map(parse_selector).collect::<Result<Vec<_>, _>>().map_err(ApiError::bad_data)?;
    let partial_response = if bool_param(p, "partial_response", q.partial_response)? {
        PartialResponse::Warn
    } else {
        PartialResponse::Abort
    };
    let tenant = tenant(q, headers)?;
    let enforced_matchers = if q.enforce_tenancy {
        vec![Matcher::new(MatchOp::Equal, q.tenant_label.as_str(), tenant.as_str())
            .map_err(|e| ApiError::internal(format!("tenant matcher: {e}")))?]
    } else {
        Vec::new()
    };
    Ok(QueryOptions {
        replica_labels,
        dedup_func: q.dedup_func,
        scope: ReadScope { tenant: Some(tenant), partial_response, store_matchers },
        max_resolution_window: 0,
        enforced_matchers,
    })
}

/// `max_source_resolution` in milliseconds: `auto` (or nothing, with auto-downsampling) is
/// `auto` (a fifth of a range query's step, raw data for instant queries); `raw` and `0s`
/// ask for raw data; else a duration.
pub(crate) fn max_source_resolution(q: &QuerierOptions, p: &Params, auto: i64) -> Result<i64, ApiError> {
    const NAME: &str = "max_source_resolution";
    let ns = match p.get(NAME) {
        "" if q.auto_downsampling => return Ok(auto),
        "" | "raw" => 0,
        "auto" => return Ok(auto),
        v => parse_duration(v).map_err(|e| ApiError::bad_data(format!("'{NAME}' parameter: {e}")))?,
    };
    if ns < 0 {
        return Err(ApiError::bad_data(format!("negative '{NAME}' is not accepted. Try a positive integer")));
    }
    Ok(ns / 1_000_000)
}

/// A boolean parameter as Go's `strconv.ParseBool` reads it, `default` when absent.
fn bool_param(p: &Params, name: &str, default: bool) -> Result<bool, ApiError> {
    match p.get(name) {
        "" => Ok(default),
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        v => Err(ApiError::bad_data(format!(
            "'{name}' parameter: strconv.ParseBool: parsing {}: invalid syntax",
            quote(v)
        ))),
    }
}

/// The request's tenant: the configured tenant header, else Thanos's own, else the default
/// tenant. A tenant with a `/` in it is refused, as Thanos refuses names that are not a single
/// path element.
fn tenant(q: &QuerierOptions, headers: &HeaderMap) -> Result<String, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    let tenant = header(&q.tenant_header).or_else(|| header(DEFAULT_TENANT_HEADER)).unwrap_or(&q.default_tenant);
    // Go's `path.Base(t) == t`.
    if tenant != "/" && (tenant.is_empty() || tenant.contains('/')) {
        return Err(ApiError::bad_data("Tenant name not valid"));
    }
    Ok(tenant.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        let mut p = Params::default();
        p.extend_from(q.as_bytes());
        p
    }

    fn read(q: &QuerierOptions, headers: &[(&'static str, &str)], query: &str) -> Result<QueryOptions, String> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        read_options(q, &h, &params(query)).map_err(|e| e.to_string())
    }

    #[test]
    fn dedup_and_replica_labels() {
        let q = QuerierOptions { replica_labels: vec!["replica".into()], ..QuerierOptions::default() };
        assert_eq!(read(&q, &[], "").unwrap().replica_labels, ["replica"]);
        assert_eq!(read(&q, &[], "dedup=true").unwrap().replica_labels, ["replica"]);
        assert!(read(&q, &[], "dedup=0").unwrap().replica_labels.is_empty());
        assert_eq!(read(&q, &[], "replicaLabels[]=a&replicaLabels[]=b").unwrap().replica_labels, ["a", "b"]);
        assert!(read(&q, &[], "replicaLabels[]=a&dedup=false").unwrap().replica_labels.is_empty());
        assert_eq!(
            read(&q, &[], "dedup=yes").unwrap_err(),
            "'dedup' parameter: strconv.ParseBool: parsing \"yes\": invalid syntax"
        );
    }

    #[test]
    fn partial_response_and_store_matchers() {
        let q = QuerierOptions::default();
        assert_eq!(read(&q, &[], "").unwrap().scope.partial_response, PartialResponse::Warn);
        assert_eq!(read(&q, &[], "partial_response=false").unwrap().scope.partial_response, PartialResponse::Abort);
        let abort = QuerierOptions { partial_response: false, ..QuerierOptions::default() };
        assert_eq!(read(&abort, &[], "").unwrap().scope.partial_response, PartialResponse::Abort);
        assert_eq!(read(&abort, &[], "partial_response=T").unwrap().scope.partial_response, PartialResponse::Warn);
        assert_eq!(
            read(&q, &[], "partial_response=2").unwrap_err(),
            "'partial_response' parameter: strconv.ParseBool: parsing \"2\": invalid syntax"
        );
        let m = read(&q, &[], "storeMatch[]=%7Bzone%3D%22eu%22%7D&storeMatch[]=up").unwrap().scope.store_matchers;
        assert_eq!(m.len(), 2);
        assert_eq!((m[0][0].name.as_str(), m[0][0].value.as_str()), ("zone", "eu"));
        assert_eq!(read(&q, &[], "storeMatch[]=up(").unwrap_err(), "1:3: parse error: unexpected \"(\"");
    }

    #[test]
    fn resolution() {
        let q = QuerierOptions::default();
        let res =
            |q: &QuerierOptions, query: &str| max_source_resolution(q, &params(query), 3000).map_err(|e| e.to_string());
        assert_eq!(res(&q, ""), Ok(0));
        assert_eq!(res(&q, "max_source_resolution=auto"), Ok(3000));
        assert_eq!(res(&q, "max_source_resolution=raw"), Ok(0));
        assert_eq!(res(&q, "max_source_resolution=0s"), Ok(0));
        assert_eq!(res(&q, "max_source_resolution=5m"), Ok(300_000));
        assert_eq!(res(&q, "max_source_resolution=1h"), Ok(3_600_000));
        assert_eq!(res(&q, "max_source_resolution=90"), Ok(90_000));
        let auto = QuerierOptions { auto_downsampling: true, ..QuerierOptions::default() };
        assert_eq!(res(&auto, ""), Ok(3000));
        assert_eq!(res(&auto, "max_source_resolution=1h"), Ok(3_600_000));
        assert_eq!(
            res(&q, "max_source_resolution=x"),
            Err("'max_source_resolution' parameter: cannot parse \"x\" to a valid duration".into())
        );
        assert_eq!(
            res(&q, "max_source_resolution=-5"),
            Err("negative 'max_source_resolution' is not accepted. Try a positive integer".into())
        );
    }

    #[test]
    fn tenants() {
        let q = QuerierOptions::default();
        let tenant_of = |q: &QuerierOptions, h: &[(&'static str, &str)]| read(q, h, "").map(|o| o.scope.tenant);
        assert_eq!(tenant_of(&q, &[]), Ok(Some("default-tenant".into())));
        assert_eq!(tenant_of(&q, &[("thanos-tenant", "team-a")]), Ok(Some("team-a".into())));
        let custom = QuerierOptions { tenant_header: "X-Scope-OrgID".into(), ..QuerierOptions::default() };
        assert_eq!(tenant_of(&custom, &[("x-scope-orgid", "b")]), Ok(Some("b".into())));
        // Thanos's own header still counts when the configured one is absent.
        assert_eq!(tenant_of(&custom, &[("thanos-tenant", "c")]), Ok(Some("c".into())));
        assert_eq!(tenant_of(&custom, &[("x-scope-orgid", "b"), ("thanos-tenant", "c")]), Ok(Some("b".into())));
        for bad in ["a/b", "../x", "x/"] {
            assert_eq!(tenant_of(&q, &[("thanos-tenant", bad)]), Err("Tenant name not valid".into()), "{bad}");
        }
        assert_eq!(tenant_of(&q, &[("thanos-tenant", "..")]), Ok(Some("..".into())));
        // Enforcement: a matcher on the tenant label, of the request's tenant.
        let enforce = QuerierOptions { enforce_tenancy: true, ..QuerierOptions::default() };
        let opts = read(&enforce, &[("thanos-tenant", "a")], "").unwrap();
        let m = &opts.enforced_matchers;
        assert_eq!((m.len(), m[0].name.as_str(), m[0].op, m[0].value.as_str()), (1, "tenant_id", MatchOp::Equal, "a"));
        assert!(read(&q, &[], "").unwrap().enforced_matchers.is_empty());
    }
}
