//! The bucket page and its API (Thanos's block viewer), served by `strata tools bucket web`,
//! `strata compact` and `strata standalone`: `GET /api/v1/blocks` answers Thanos's
//! `{"status":"success","data":{"label","blocks","refreshedAt","err"}}` with the metas of the
//! bucket's blocks (`?view=global`, the default: the whole bucket as last fetched;
//! `?view=loaded`: the compactor's last sync), plus the blocks' marks and the blocks that
//! cannot be read; `GET /` and `/blocks` the page that draws them on a time line;
//! `POST /api/v1/blocks/mark` Thanos's marking of a block (`id`, `action`, `detail`), unless
//! admin operations are disabled.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde::Serialize;
use strata_shipper::fetch::{overlaps_range, TimeBound};
use strata_shipper::markers::{
    DeletionMark, DELETION_MARK_FILENAME, NO_COMPACT_MARK_FILENAME, NO_DOWNSAMPLE_MARK_FILENAME,
};
use strata_shipper::relabel::Relabel;
use strata_shipper::{deduplicate, Bucket, FetchedMetas, MetaFetcher};
use strata_tsdb::block::meta::{BlockMeta, ThanosMeta};
use tracing::{info, warn};
use ulid::Ulid;

/// The page: markup, style and script in one document, nothing loaded from elsewhere.
const PAGE_HTML: &str = include_str!("web/blocks.html");

/// Go's zero `time.Time` as JSON, what Thanos answers before the first refresh.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The marks of a block, for the page (Thanos's API has no place for them).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BlockMarks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion: Option<DeletionMark>,
    #[serde(rename = "noCompact", skip_serializing_if = "std::ops::Not::not")]
    pub no_compact: bool,
    #[serde(rename = "noDownsample", skip_serializing_if = "std::ops::Not::not")]
    pub no_downsample: bool,
}

/// A block directory without a usable meta.json: a partial upload or a corrupt meta.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokenBlock {
    pub ulid: String,
    pub reason: String,
}

/// What one sync of the bucket found, as the page shows it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub blocks: Vec<BlockMeta>,
    pub marks: BTreeMap<Ulid, BlockMarks>,
    pub broken: Vec<BrokenBlock>,
}

impl Snapshot {
    /// `blocks` with the marks `fetched` found for them and the blocks it could not use.
    /// Every block gets a `thanos` section, as Thanos's metas always have one.
    pub fn new(mut blocks: Vec<BlockMeta>, fetched: &FetchedMetas) -> Snapshot {
        blocks.sort_by(|a, b| a.min_time.cmp(&b.min_time).then(a.ulid.cmp(&b.ulid)));
        let mut marks: BTreeMap<Ulid, BlockMarks> = BTreeMap::new();
        for m in &mut blocks {
            m.thanos.get_or_insert_with(ThanosMeta::default);
            let id = m.ulid;
            let mark = BlockMarks {
                deletion: fetched.deletion_marks.get(&id).cloned(),
                no_compact: fetched.no_compact_marked.contains(&id),
                no_downsample: fetched.no_downsample_marked.contains(&id),
            };
            if mark != BlockMarks::default() {
                marks.insert(id, mark);
            }
        }
        let partial = fetched.partial.iter().map(|id| BrokenBlock {
            ulid: id.to_string(),
            reason: "no meta.json: an upload in progress or abandoned".to_owned(),
        });
        let corrupt = fetched.corrupt.iter().map(|(id, reason)| BrokenBlock {
            ulid: id.to_string(),
            reason: format!("unreadable meta.json: {reason}"),
        });
        Snapshot { blocks, marks, broken: partial.chain(corrupt).collect() }
    }

    /// The whole bucket as `tools bucket web` shows it (Thanos's filters there, in its order):
    /// the blocks overlapping the filter's time range that its selector selects, blocks a
    /// compacted block supersedes left out.
    pub fn global(mut fetched: FetchedMetas, filter: &GlobalFilter) -> Snapshot {
        let no_labels = BTreeMap::new();
        let (min, max) = (filter.min_time.now(), filter.max_time.now());
        let selected: Vec<BlockMeta> = std::mem::take(&mut fetched.metas)
            .into_values()
            .filter(|m| overlaps_range(m, min, max))
            .filter(|m| {
                filter.selector.selects(m.thanos.as_ref().map_or(&no_labels, |t| &t.labels), &m.ulid.to_string())
            })
            .collect();
        let (blocks, _) = deduplicate(selected);
        Snapshot::new(blocks, &fetched)
    }
}

/// Which blocks the global view shows: `--selector.relabel-config` and (`tools bucket web`)
/// `--min-time` / `--max-time`, relative bounds taken at each refresh.
#[derive(Debug, Clone)]
pub struct GlobalFilter {
    pub selector: Relabel,
    pub min_time: TimeBound,
    pub max_time: TimeBound,
}

impl GlobalFilter {
    /// The blocks `selector` selects, of any time.
    pub fn selecting(selector: Relabel) -> GlobalFilter {
        GlobalFilter { selector, min_time: TimeBound::Absolute(i64::MIN), max_time: TimeBound::Absolute(i64::MAX) }
    }
}

impl Default for GlobalFilter {
    fn default() -> GlobalFilter {
        GlobalFilter::selecting(Relabel::default())
    }
}

/// One view's state, as Thanos's `BlocksInfo`, and its API answer, rendered once per change
/// (a big bucket's answer is large, and asked for far more often than it changes).
struct ViewState {
    snapshot: Snapshot,
    refreshed_at: Option<SystemTime>,
    err: Option<String>,
    body: Bytes,
}

impl ViewState {
    fn new(label: &str) -> ViewState {
        let mut v = ViewState { snapshot: Snapshot::default(), refreshed_at: None, err: None, body: Bytes::new() };
        v.render(label);
        v
    }

    /// A failed refresh keeps the last blocks and says why (as Thanos does).
    fn set(&mut self, label: &str, result: Result<Snapshot, String>) {
        self.refreshed_at = Some(SystemTime::now());
        match result {
            Ok(s) => {
                self.snapshot = s;
                self.err = None;
            }
            Err(e) => self.err = Some(e),
        }
        self.render(label);
    }

    fn render(&mut self, label: &str) {
        let refreshed_at = self.refreshed_at.map_or_else(
            || ZERO_TIME.to_owned(),
            |t| go_rfc3339_nano(chrono::DateTime::<chrono::Utc>::from(t).fixed_offset()),
        );
        let response = BlocksResponse {
            status: "success",
            data: BlocksInfo {
                label,
                blocks: self.snapshot.blocks.iter().map(thanos_json).collect(),
                refreshed_at,
                err: self.err.as_deref(),
                marks: self.snapshot.marks.iter().map(|(id, m)| (id.to_string(), m)).collect(),
                broken: &self.snapshot.broken,
            },
        };
        // Strings, numbers and maps with string keys always serialize.
        self.body = serde_json::to_vec(&response).map(Bytes::from).unwrap_or_default();
    }
}

/// The two views the API answers, shared by the refresher, the compactor and the handlers.
pub struct BlocksView {
    label: String,
    global: RwLock<ViewState>,
    loaded: RwLock<ViewState>,
    /// Wakes the global view's refresher early: a block was marked through the API.
    refresh: tokio::sync::Notify,
}

impl BlocksView {
    /// `label`: the external label the page titles block rows by (`--label`).
    pub fn new(label: &str) -> BlocksView {
        BlocksView {
            label: label.to_owned(),
            global: RwLock::new(ViewState::new(label)),
            loaded: RwLock::new(ViewState::new(label)),
            refresh: tokio::sync::Notify::new(),
        }
    }

    /// Asks the global view's refresher (if one runs) to fetch the metas now.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    pub fn set_global(&self, result: Result<Snapshot, String>) {
        if let Ok(mut v) = self.global.write() {
            v.set(&self.label, result);
        }
    }

    /// The compactor's last sync.
    pub fn set_loaded(&self, result: Result<Snapshot, String>) {
        if let Ok(mut v) = self.loaded.write() {
            v.set(&self.label, result);
        }
    }

    /// Whether the global view has been refreshed once (successfully or not).
    pub fn refreshed(&self) -> bool {
        self.global.read().is_ok_and(|v| v.refreshed_at.is_some())
    }

    /// The API's JSON answer for `view` (`loaded`, anything else is the global view).
    pub fn body(&self, view: &str) -> Bytes {
        let lock = if view == "loaded" { &self.loaded } else { &self.global };
        lock.read().map(|v| v.body.clone()).unwrap_or_default()
    }
}

/// `/api/v1/blocks`'s body.
#[derive(Serialize)]
struct BlocksResponse<'a> {
    status: &'a str,
    data: BlocksInfo<'a>,
}

/// Thanos's `BlocksInfo` (`label`, `blocks`, `refreshedAt`, `err`) and the marks and broken
/// blocks the page shows.
#[derive(Serialize)]
struct BlocksInfo<'a> {
    label: &'a str,
    /// The metas as Thanos's `metadata.Meta` marshals them.
    blocks: Vec<serde_json::Value>,
    #[serde(rename = "refreshedAt")]
    refreshed_at: String,
    /// The last refresh's error; Thanos serializes its error value, which comes out as `{}`.
    err: Option<&'a str>,
    marks: BTreeMap<String, &'a BlockMarks>,
    broken: &'a [BrokenBlock],
}

/// `meta` as Go marshals Thanos's `metadata.Meta`: `index_stats` is a struct and always
/// there, `upload_time` a `time.Time` (always there, the zero time when unknown, in
/// RFC3339 with trailing zeros of the fraction cut).
fn thanos_json(meta: &BlockMeta) -> serde_json::Value {
    let mut v = serde_json::to_value(meta).unwrap_or(serde_json::Value::Null);
    if let Some(t) = v.get_mut("thanos").and_then(serde_json::Value::as_object_mut) {
        t.entry("index_stats").or_insert_with(|| serde_json::json!({}));
        let upload = t.get("upload_time").and_then(serde_json::Value::as_str).map_or_else(
            || ZERO_TIME.to_owned(),
            |s| chrono::DateTime::parse_from_rfc3339(s).map_or_else(|_| s.to_owned(), go_rfc3339_nano),
        );
        t.insert("upload_time".to_owned(), serde_json::Value::String(upload));
    }
    v
}

/// Go's `time.RFC3339Nano`: the fraction without trailing zeros (none when zero), `Z` for UTC.
fn go_rfc3339_nano(t: chrono::DateTime<chrono::FixedOffset>) -> String {
    use chrono::Timelike;
    let mut out = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos > 0 {
        out.push_str(format!(".{nanos:09}").trim_end_matches('0'));
    }
    if t.offset().local_minus_utc() == 0 {
        out.push('Z');
    } else {
        out.push_str(&t.format("%:z").to_string());
    }
    out
}

/// The first `view` parameter of a query string, empty without one (any other parameter or
/// a malformed one is ignored, as Go's `URL.Query().Get` does).
fn view_param(query: Option<&str>) -> String {
    let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes());
    pairs.into_iter().find(|(k, _)| k == "view").map(|(_, v)| v.into_owned()).unwrap_or_default()
}

async fn blocks_api(State(state): State<WebState>, RawQuery(query): RawQuery) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], state.view.body(&view_param(query.as_deref()))).into_response()
}

/// How the page and the API are served: `--web.route-prefix`, `--web.external-prefix`,
/// `--web.prefix-header` and whether blocks may be marked (`--disable-admin-operations`).
#[derive(Clone, Default)]
pub struct WebOptions {
    pub route_prefix: String,
    pub external_prefix: String,
    /// The request header whose value is the path prefix the page's links use (behind a
    /// proxy that strips it); ignored when `external_prefix` is set, as in Thanos.
    pub prefix_header: Option<HeaderName>,
    /// The bucket `POST /api/v1/blocks/mark` writes markers into; `None` refuses it
    /// ("Admin operations are disabled").
    pub admin: Option<Bucket>,
}

impl WebOptions {
    /// Served under `route_prefix`, nothing else set (admin operations disabled).
    pub fn under(route_prefix: &str) -> WebOptions {
        WebOptions { route_prefix: route_prefix.to_owned(), ..WebOptions::default() }
    }
}

/// What the handlers share.
#[derive(Clone)]
struct WebState {
    view: Arc<BlocksView>,
    external_prefix: String,
    prefix_header: Option<HeaderName>,
    admin: Option<Bucket>,
}

/// The page, with a `<base>` of the prefix its links must use when there is one (Thanos's
/// `GetWebPrefix`: `--web.external-prefix`, else the prefix header's value, sanitized).
fn page(state: &WebState, headers: &HeaderMap) -> Response {
    let given = if !state.external_prefix.is_empty() {
        state.external_prefix.as_str()
    } else {
        state.prefix_header.as_ref().and_then(|h| headers.get(h)).and_then(|v| v.to_str().ok()).unwrap_or_default()
    };
    let prefix = absolute_prefix(&sanitize_prefix(given));
    let body = if prefix.is_empty() {
        PAGE_HTML.to_owned()
    } else {
        let base = format!("<head>\n<base href=\"{}/\">", escape_attribute(&prefix));
        PAGE_HTML.replacen("<head>", &base, 1)
    };
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// Thanos's `SanitizePrefix`: the path of the value taken as a URL (scheme and host dropped,
/// so a header cannot send the page's requests elsewhere), cleaned, without a trailing slash;
/// empty when the value is not a URL.
fn sanitize_prefix(value: &str) -> String {
    let Some(path) = url_path(value) else {
        return String::new();
    };
    let cleaned = go_path_clean(&path);
    let cleaned = cleaned.strip_prefix('.').unwrap_or(&cleaned);
    cleaned.strip_suffix('/').unwrap_or(cleaned).to_owned()
}

/// Thanos's `absolutePrefix`: empty stays empty, anything else is rooted; the root alone is
/// empty too (links `/` + `/api` would name another host).
fn absolute_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        return String::new();
    }
    let rooted = go_path_clean(&format!("/{prefix}"));
    if rooted == "/" {
        String::new()
    } else {
        rooted
    }
}

/// The decoded path of `value` as Go's `url.Parse` finds it; `None` where Go fails (a control
/// character, a bad `%` escape, a colon in a relative first segment).
fn url_path(value: &str) -> Option<String> {
    if value.chars().any(|c| c.is_ascii_control()) {
        return None;
    }
    let value = value.split('#').next().unwrap_or_default();
    let value = value.split('?').next().unwrap_or_default();
    let scheme_end = value.find(':').filter(|&i| {
        let scheme = &value[..i];
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let rest = match scheme_end {
        // An opaque URL (`mailto:x`) has no path.
        Some(i) if !value[i + 1..].starts_with('/') => return Some(String::new()),
        Some(i) => &value[i + 1..],
        None => {
            let first = value.split('/').next().unwrap_or_default();
            if first.contains(':') {
                return None;
            }
            value
        }
    };
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path.find('/').map_or("", |i| &authority_and_path[i..]),
        None => rest,
    };
    percent_decode(path)
}

/// `%XX` escapes decoded; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Go's `path.Clean`: one slash between elements, `.` dropped, `..` taking its parent with
/// it (dropped at the root), `.` for nothing.
fn go_path_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|&l| l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// `s` safe inside a double-quoted HTML attribute.
fn escape_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Thanos's API error answer: `bad_data` and 400, as its blocks API answers every failure.
fn bad_data(message: &str) -> Response {
    let body = serde_json::json!({"status": "error", "errorType": "bad_data", "error": message});
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")],
        body.to_string(),
    )
        .into_response()
}

/// The first value of `key` as Go's `Request.FormValue` finds it: in a form-encoded body
/// first, then in the query string; empty without one.
fn form_value(body: Option<&[u8]>, query: Option<&str>, key: &str) -> String {
    let first = |input: &[u8]| form_urlencoded::parse(input).find(|(k, _)| k == key).map(|(_, v)| v.into_owned());
    body.and_then(first).or_else(|| first(query.unwrap_or_default().as_bytes())).unwrap_or_default()
}

/// The marker file an `action` of Thanos's blocks API writes.
fn marker_of(action: &str) -> Option<&'static str> {
    match action {
        "DELETION" => Some(DELETION_MARK_FILENAME),
        "NO_COMPACTION" => Some(NO_COMPACT_MARK_FILENAME),
        // Not in Thanos v0.42's API, which puts this marker only through `tools bucket mark`.
        "NO_DOWNSAMPLE" => Some(NO_DOWNSAMPLE_MARK_FILENAME),
        _ => None,
    }
}

/// A block ID as Go's `ulid.Parse` takes it, with its error texts.
fn parse_ulid(s: &str) -> Result<Ulid, &'static str> {
    if s.len() != 26 {
        return Err("ulid: bad data size when unmarshaling");
    }
    if s.as_bytes()[0] > b'7' {
        return Err("ulid: overflow when unmarshaling");
    }
    Ulid::from_string(s).map_err(|_| "ulid: bad data characters when unmarshaling")
}

/// `POST /api/v1/blocks/mark`: Thanos's checks in its order, then the marker written as
/// `tools bucket mark` writes it (a block keeps an existing mark). 204 without a body on
/// success, as Thanos answers.
async fn mark_api(
    State(state): State<WebState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(bucket) = &state.admin else {
        return bad_data("Admin operations are disabled");
    };
    let form_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.split(';').next().is_some_and(|m| m.trim() == "application/x-www-form-urlencoded"))
        .then_some(&body[..]);
    let value = |key| form_value(form_body, query.as_deref(), key);
    let (id, action, detail) = (value("id"), value("action"), value("detail"));
    if id.is_empty() {
        return bad_data("ID cannot be empty");
    }
    if action.is_empty() {
        return bad_data("Action cannot be empty");
    }
    let ulid = match parse_ulid(&id) {
        Ok(u) => u,
        Err(e) => return bad_data(&format!("ULID {} is not valid: {e}", strata_tsdb::gotext::quote(&id))),
    };
    let Some(marker) = marker_of(&action) else {
        return bad_data(&format!("not supported marker {action}"));
    };
    match crate::tools::mark(bucket, &[ulid], marker, &detail, false).await {
        Ok(_) => {
            info!(block = %ulid, marker, "block marked through the API");
            state.view.request_refresh();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            warn!(block = %ulid, marker, error = %e, "marking a block through the API failed");
            bad_data(&e.to_string())
        }
    }
}

/// `route_prefix` normalized as Thanos does: empty, or `/` and no trailing slash.
pub fn normalize_prefix(route_prefix: &str) -> String {
    let trimmed = route_prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// The page at `<prefix>/` and `<prefix>/blocks`, the API at `<prefix>/api/v1/blocks` and
/// `<prefix>/api/v1/blocks/mark`, and `<prefix>` redirected to `<prefix>/`. The page asks for
/// the API by a relative URL, so it works behind a proxy that serves it under another path
/// (`--web.external-prefix`, `--web.prefix-header`).
pub fn router(view: Arc<BlocksView>, options: WebOptions) -> Router {
    let p = normalize_prefix(&options.route_prefix);
    let state = WebState {
        view,
        external_prefix: options.external_prefix,
        prefix_header: options.prefix_header,
        admin: options.admin,
    };
    let page_handler = |State(state): State<WebState>, headers: HeaderMap| std::future::ready(page(&state, &headers));
    let mut r = Router::new()
        .route(&format!("{p}/"), get(page_handler))
        .route(&format!("{p}/blocks"), get(page_handler))
        .route(&format!("{p}/api/v1/blocks"), get(blocks_api))
        .route(&format!("{p}/api/v1/blocks/mark"), post(mark_api));
    if !p.is_empty() {
        let target = format!("{p}/");
        r = r.route(&p, get(move || std::future::ready(Redirect::to(&target))));
    }
    r.with_state(state)
}

/// Keeps the global view of `view` fresh: a fetch now, then every `interval`, each given at
/// most `timeout`; a failed fetch is tried again after a minute (or `interval`, if shorter),
/// as Thanos's `tools bucket web` does, and at once when a block was marked through the API.
/// Ends when `stop` completes.
pub async fn refresh_global(
    fetcher: MetaFetcher,
    filter: GlobalFilter,
    view: Arc<BlocksView>,
    interval: Duration,
    timeout: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let interval = interval.max(Duration::from_secs(1));
    loop {
        let result = match tokio::time::timeout(timeout, fetcher.fetch()).await {
            Ok(Ok(fetched)) => {
                for (id, reason) in &fetched.corrupt {
                    warn!(block = %id, reason, "block with an unreadable meta.json; listed apart on the page");
                }
                Ok(Snapshot::global(fetched, &filter))
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("fetching the block metas took longer than {timeout:?} (--timeout)")),
        };
        let wait = match &result {
            Ok(s) => {
                info!(blocks = s.blocks.len(), broken = s.broken.len(), "refreshed the bucket's block metas");
                interval
            }
            Err(e) => {
                warn!(error = %e, "refreshing the bucket's block metas failed; trying again");
                interval.min(Duration::from_secs(60))
            }
        };
        view.set_global(result);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = view.refresh.notified() => {}
            _ = &mut stop => return,
        }
    }
}

/// The fetcher of the global view: one listing per refresh, no consistency delay, marked
/// blocks kept (the page shows them marked).
pub fn global_fetcher(bucket: strata_shipper::Bucket) -> MetaFetcher {
    MetaFetcher::new(bucket).with_recursive_listing().with_deletion_mark_delay(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_meta;

    fn meta(id: u128, min: i64, max: i64, labels: &[(&str, &str)], resolution: i64) -> BlockMeta {
        let mut m = test_meta(id, min, max);
        let mut t = ThanosMeta {
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            source: "receive".to_owned(),
            ..ThanosMeta::default()
        };
        t.downsample.resolution = resolution;
        m.thanos = Some(t);
        m
    }

    fn json(v: &BlocksView, view: &str) -> serde_json::Value {
        serde_json::from_slice(&v.body(view)).unwrap()
    }

    #[test]
    fn before_a_refresh_the_views_are_empty_with_go_zero_time() {
        let v = BlocksView::new("cluster");
        let j = json(&v, "");
        assert_eq!(j["status"], "success");
        assert_eq!(j["data"]["label"], "cluster");
        assert_eq!(j["data"]["blocks"], serde_json::json!([]));
        assert_eq!(j["data"]["refreshedAt"], ZERO_TIME);
        assert_eq!(j["data"]["err"], serde_json::Value::Null);
        assert!(!v.refreshed());
    }

    #[test]
    fn global_view_has_thanos_shaped_metas_marks_and_broken_blocks() {
        let mut fetched = FetchedMetas::default();
        let a = meta(1, 0, 7_200_000, &[("cluster", "eu")], 0);
        let mut b = test_meta(2, 7_200_000, 14_400_000);
        b.thanos = None;
        fetched.metas.insert(a.ulid, a.clone());
        fetched.metas.insert(b.ulid, b);
        fetched.deletion_marks.insert(
            Ulid(2),
            DeletionMark { id: Ulid(2), version: 1, details: String::new(), deletion_time: 1_700_000_000 },
        );
        fetched.no_compact_marked.push(Ulid(1));
        fetched.partial.push(Ulid(3));
        fetched.corrupt.push((Ulid(4), "expected value at line 1".to_owned()));
        let v = BlocksView::new("");
        v.set_global(Ok(Snapshot::global(fetched, &GlobalFilter::default())));
        assert!(v.refreshed());
        let j = json(&v, "global");
        let blocks = j["data"]["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0]["ulid"], a.ulid.to_string());
        for key in ["ulid", "minTime", "maxTime", "stats", "compaction", "version", "thanos"] {
            assert!(blocks[0].get(key).is_some() && blocks[1].get(key).is_some(), "{key} in {blocks:?}");
        }
        assert_eq!(blocks[0]["thanos"]["labels"]["cluster"], "eu");
        assert_eq!(blocks[0]["thanos"]["downsample"]["resolution"], 0);
        assert_eq!(blocks[1]["thanos"]["labels"], serde_json::json!({}), "a missing thanos section is filled");
        let marks = &j["data"]["marks"];
        assert_eq!(marks[Ulid(1).to_string()]["noCompact"], true);
        assert_eq!(marks[Ulid(2).to_string()]["deletion"]["deletion_time"], 1_700_000_000);
        let broken = j["data"]["broken"].as_array().unwrap();
        assert_eq!(broken.len(), 2);
        assert_eq!(broken[0]["ulid"], Ulid(3).to_string());
        assert!(broken[1]["reason"].as_str().unwrap().contains("unreadable meta.json"));
        let refreshed = j["data"]["refreshedAt"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(refreshed).is_ok(), "{refreshed}");
        // Nothing was loaded by a compactor.
        assert_eq!(json(&v, "loaded")["data"]["blocks"], serde_json::json!([]));
    }

    #[test]
    fn superseded_and_unselected_blocks_are_left_out() {
        let mut fetched = FetchedMetas::default();
        let (x, y) = (meta(1, 0, 10, &[("a", "1")], 0), meta(2, 10, 20, &[("a", "1")], 0));
        let mut merged = meta(3, 0, 20, &[("a", "1")], 0);
        merged.compaction.sources = vec![x.ulid, y.ulid];
        let other = meta(4, 0, 10, &[("a", "2")], 0);
        for m in [x, y, merged, other] {
            fetched.metas.insert(m.ulid, m);
        }
        let selector = Relabel::parse("- action: keep\n  source_labels: [a]\n  regex: '1'\n").unwrap();
        let s = Snapshot::global(fetched, &GlobalFilter::selecting(selector));
        assert_eq!(s.blocks.iter().map(|m| m.ulid).collect::<Vec<_>>(), vec![Ulid(3)]);
    }

    #[test]
    fn a_failed_refresh_keeps_the_blocks_and_reports_the_error() {
        let v = BlocksView::new("");
        let mut fetched = FetchedMetas::default();
        let m = meta(1, 0, 10, &[], 0);
        fetched.metas.insert(m.ulid, m);
        v.set_loaded(Ok(Snapshot::global(fetched, &GlobalFilter::default())));
        v.set_loaded(Err("listing failed".to_owned()));
        let j = json(&v, "loaded");
        assert_eq!(j["data"]["blocks"].as_array().unwrap().len(), 1);
        assert_eq!(j["data"]["err"], "listing failed");
    }

    #[test]
    fn view_parameter_as_go_reads_it() {
        assert_eq!(view_param(None), "");
        assert_eq!(view_param(Some("view=loaded")), "loaded");
        assert_eq!(view_param(Some("view=loaded&view=global")), "loaded");
        assert_eq!(view_param(Some("x=1&view=%6Coaded")), "loaded");
        for hostile in ["view", "%zz=%%", "view=%ff%fe", "&&&=", "view=\u{0}"] {
            let v = view_param(Some(hostile));
            // Anything but `loaded` is the global view; nothing fails.
            let j = json(&BlocksView::new(""), &v);
            assert_eq!(j["status"], "success", "{hostile}");
        }
    }

    #[test]
    fn metas_marshal_as_go_does() {
        let mut m = meta(1, 0, 10, &[], 0);
        let j = thanos_json(&m);
        assert_eq!(j["thanos"]["index_stats"], serde_json::json!({}));
        assert_eq!(j["thanos"]["upload_time"], ZERO_TIME);
        for (given, go) in [
            ("2026-12-05T12:40:42.150140570Z", "2026-12-05T12:40:42.15014057Z"),
            ("2026-12-05T12:40:42.000Z", "2026-12-05T12:40:42Z"),
            ("2026-12-05T12:40:42.5+02:00", "2026-12-05T12:40:42.5+02:00"),
            ("not a time", "not a time"),
            ("", ""),
        ] {
            m.thanos.as_mut().unwrap().upload_time = Some(given.to_owned());
            assert_eq!(thanos_json(&m)["thanos"]["upload_time"], go, "{given}");
        }
        m.thanos.as_mut().unwrap().index_stats = Some(serde_json::json!({"series_max_size": 3}));
        assert_eq!(thanos_json(&m)["thanos"]["index_stats"]["series_max_size"], 3);
    }

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix("bucket/"), "/bucket");
        assert_eq!(normalize_prefix("/a/b"), "/a/b");
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for needle in ["http://", "https://", "<script src", "<link"] {
            assert!(!PAGE_HTML.contains(needle), "{needle}");
        }
        assert!(PAGE_HTML.contains("api/v1/blocks"));
    }

    #[test]
    fn time_filter_keeps_blocks_overlapping_the_range() {
        let mut fetched = FetchedMetas::default();
        for m in [meta(1, 0, 10, &[], 0), meta(2, 10, 20, &[], 0), meta(3, 21, 30, &[], 0), meta(4, -5, -1, &[], 0)] {
            fetched.metas.insert(m.ulid, m);
        }
        let filter = GlobalFilter {
            selector: Relabel::default(),
            min_time: TimeBound::Absolute(0),
            max_time: TimeBound::Absolute(20),
        };
        let s = Snapshot::global(fetched.clone(), &filter);
        // Both ends inclusive, as Thanos's TimePartitionMetaFilter.
        assert_eq!(s.blocks.iter().map(|m| m.ulid).collect::<Vec<_>>(), vec![Ulid(1), Ulid(2)]);
        let relative = GlobalFilter { min_time: TimeBound::Relative(-3_600_000), ..GlobalFilter::default() };
        assert!(Snapshot::global(fetched.clone(), &relative).blocks.is_empty(), "all blocks are from 1970");
        assert_eq!(Snapshot::global(fetched, &GlobalFilter::default()).blocks.len(), 4);
    }

    #[test]
    fn prefixes_are_sanitized_as_thanos_does() {
        for (given, expected) in [
            ("", ""),
            ("/", ""),
            ("/strata", "/strata"),
            ("/strata/", "/strata"),
            ("strata", "/strata"),
            // `//a` is a host to Go's url.Parse.
            ("//a//b/./c/../", "/b"),
            ("/a//b/./c/../", "/a/b"),
            ("/a/b/../../..", ""),
            ("http://evil.example/x/y", "/x/y"),
            ("//evil.example", ""),
            ("//evil.example/p", "/p"),
            ("mailto:someone", ""),
            ("/a%20b", "/a b"),
            ("/a%zz", ""),
            ("/a%+5", ""),
            ("/a%2", ""),
            ("/a\u{7}", ""),
            ("1a:b", ""),
            ("/p?x=1#frag", "/p"),
            // Thanos makes this `/`, and its page's links `//api/...`: another host.
            ("../..", ""),
        ] {
            assert_eq!(absolute_prefix(&sanitize_prefix(given)), expected, "{given:?}");
        }
        assert_eq!(go_path_clean(""), ".");
        assert_eq!(go_path_clean("a/../.."), "..");
        assert_eq!(escape_attribute("/\"><script>'&"), "/&quot;&gt;&lt;script&gt;&#39;&amp;");
    }

    fn state(external: &str, header: Option<&str>) -> WebState {
        WebState {
            view: Arc::new(BlocksView::new("")),
            external_prefix: external.to_owned(),
            prefix_header: header.map(|h| HeaderName::from_bytes(h.as_bytes()).unwrap()),
            admin: None,
        }
    }

    async fn text(r: Response) -> String {
        let body = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn page_links_follow_the_prefix_header_only_when_configured() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-prefix", "/proxied/bucket/".parse().unwrap());
        let with = text(page(&state("", Some("X-Forwarded-Prefix")), &headers)).await;
        assert!(with.contains("<base href=\"/proxied/bucket/\">"), "{}", &with[..200]);
        let without = text(page(&state("", None), &headers)).await;
        assert!(!without.contains("<base"), "no flag, no base");
        let external = text(page(&state("/ext", Some("X-Forwarded-Prefix")), &headers)).await;
        assert!(external.contains("<base href=\"/ext/\">"), "--web.external-prefix wins");
        let mut hostile = HeaderMap::new();
        hostile.insert("x-forwarded-prefix", "/\"><script>x</script>".parse().unwrap());
        let escaped = text(page(&state("", Some("X-Forwarded-Prefix")), &hostile)).await;
        assert!(!escaped.contains("<script>x"), "a header cannot inject markup");
        hostile.insert("x-forwarded-prefix", "https://evil.example".parse().unwrap());
        let stripped = text(page(&state("", Some("X-Forwarded-Prefix")), &hostile)).await;
        assert!(
            !stripped.contains("<base") && !stripped.contains("evil.example"),
            "a header cannot send requests away"
        );
    }

    #[test]
    fn form_values_as_go_reads_them() {
        assert_eq!(form_value(Some(b"id=a&id=b"), Some("id=c"), "id"), "a");
        assert_eq!(form_value(Some(b"x=1"), Some("id=c&id=d"), "id"), "c");
        assert_eq!(form_value(None, None, "id"), "");
        assert_eq!(form_value(Some(b"detail=a+b%21"), None, "detail"), "a b!");
        for hostile in [&b"%zz=%%&&="[..], b"\xff\xfe=\x00", b"id"] {
            let _ = form_value(Some(hostile), Some("%"), "id");
        }
    }

    #[test]
    fn block_ids_and_actions_as_thanos_takes_them() {
        let id = Ulid::new();
        assert_eq!(parse_ulid(&id.to_string()), Ok(id));
        assert_eq!(parse_ulid(&id.to_string().to_lowercase()), Ok(id));
        assert_eq!(parse_ulid("nope"), Err("ulid: bad data size when unmarshaling"));
        assert_eq!(parse_ulid(""), Err("ulid: bad data size when unmarshaling"));
        assert_eq!(parse_ulid("8ZZZZZZZZZZZZZZZZZZZZZZZZZ"), Err("ulid: overflow when unmarshaling"));
        assert_eq!(parse_ulid("01ARZ3NDEKTSV4RRFFQ69G5FA!"), Err("ulid: bad data characters when unmarshaling"));
        assert!(parse_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAü").is_err(), "multi-byte characters");
        assert_eq!(marker_of("DELETION"), Some(DELETION_MARK_FILENAME));
        assert_eq!(marker_of("NO_COMPACTION"), Some(NO_COMPACT_MARK_FILENAME));
        assert_eq!(marker_of("NO_DOWNSAMPLE"), Some(NO_DOWNSAMPLE_MARK_FILENAME));
        for bad in ["deletion", "", "DELETE", "NO_COMPACT"] {
            assert_eq!(marker_of(bad), None, "{bad}");
        }
    }
}
