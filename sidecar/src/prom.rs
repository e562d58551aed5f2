//! A client of the Prometheus next to the sidecar: its HTTP API (config, flags, readiness,
//! build info, series, labels), its `/metrics` (the lowest timestamp the TSDB holds) and its
//! remote-read endpoint, over hyper. Every answer it reads is parsed here by functions that
//! take the body, so that malformed answers are tested without a Prometheus.

use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{header, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::Matcher;

use crate::error::SidecarError;

/// Largest API answer read into memory (series and label lists of a big Prometheus fit).
const MAX_API_ANSWER: usize = 512 << 20;

/// Prometheus's remote-read content type of a streamed answer.
pub const STREAMED_CONTENT_TYPE: &str = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// The Prometheus API's time bounds (`MinTime`/`MaxTime` of web/api/v1), in milliseconds:
/// times outside them are sent clamped.
const API_MIN_MS: i64 = -9_223_309_901_258_000;
const API_MAX_MS: i64 = 9_223_309_901_257_000;

/// The HTTP client of one Prometheus.
pub struct PromClient {
    client: Client<HttpConnector, Full<Bytes>>,
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without its trailing slash, put before every request's path.
    prefix: String,
    url: String,
    timeout: Duration,
}

impl PromClient {
    /// A client of the Prometheus at `url` (`http://host:port[/prefix]`); every API request
    /// (not a remote read's streamed body) must answer within `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<PromClient, SidecarError> {
        let invalid = |message: &str| SidecarError::InvalidUrl { url: url.to_owned(), message: message.to_owned() };
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        if scheme != Scheme::HTTP {
            return Err(invalid("only http:// is supported"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| invalid("no host:port (write http://host:port)"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(connector);
        Ok(PromClient {
            client,
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            url: url.trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn unreachable(&self, what: &str, e: impl std::fmt::Display) -> SidecarError {
        SidecarError::Unreachable { url: self.url.clone(), what: what.to_owned(), message: e.to_string() }
    }

    fn bad_answer(&self, what: &str, e: impl std::fmt::Display) -> SidecarError {
        SidecarError::BadAnswer { url: self.url.clone(), what: what.to_owned(), message: e.to_string() }
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri, SidecarError> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path_and_query}", self.prefix))
            .build()
            .map_err(|e| SidecarError::InvalidUrl {
                url: format!("{}{path_and_query}", self.url),
                message: e.to_string(),
            })
    }

    /// Sends `req`; the answer's head, whatever its status.
    async fn send(&self, what: &str, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, SidecarError> {
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(self.unreachable(what, format!("no answer within {:?}", self.timeout))),
            Ok(Err(e)) => Err(self.unreachable(what, error_chain(&e))),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// The whole body of `resp`, at most [`MAX_API_ANSWER`] bytes, within the timeout.
    async fn body(&self, what: &str, resp: Response<Incoming>) -> Result<Bytes, SidecarError> {
        let read = Limited::new(resp.into_body(), MAX_API_ANSWER).collect();
        match tokio::time::timeout(self.timeout, read).await {
            Err(_) => Err(self.unreachable(what, format!("answer not read within {:?}", self.timeout))),
            Ok(Err(e)) => Err(self.unreachable(what, format!("reading the answer: {e}"))),
            Ok(Ok(b)) => Ok(b.to_bytes()),
        }
    }

    /// `GET path_and_query`: the body of a 2xx answer, any other status as an error with its
    /// body.
    async fn get(&self, path_and_query: &str) -> Result<Bytes, SidecarError> {
        let what = format!("GET {}", path_and_query.split('?').next().unwrap_or(path_and_query));
        let req = Request::builder()
            .method(Method::GET)
            .uri(self.uri(path_and_query)?)
            .header(header::USER_AGENT, USER_AGENT)
            .body(Full::default())
            .map_err(|e| self.unreachable(&what, e))?;
        let resp = self.send(&what, req).await?;
        let status = resp.status();
        let body = self.body(&what, resp).await?;
        if !status.is_success() {
            return Err(self.status_error(&what, status, &body));
        }
        Ok(body)
    }

    fn status_error(&self, what: &str, status: StatusCode, body: &[u8]) -> SidecarError {
        let mut body = String::from_utf8_lossy(body).trim().to_owned();
        // An error page is enough to tell what went wrong by its start.
        if body.len() > 1024 {
            let mut end = 1024;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
            body.push('…');
        }
        SidecarError::Status { url: self.url.clone(), what: what.to_owned(), status: status.as_u16(), body }
    }

    /// The `data` of a JSON API answer.
    async fn api<T: for<'de> Deserialize<'de>>(&self, path_and_query: &str) -> Result<T, SidecarError> {
        let body = self.get(path_and_query).await?;
        api_data(&body).map_err(|e| self.bad_answer(path_and_query.split('?').next().unwrap_or(path_and_query), e))
    }

    /// `GET /-/ready`: Ok once Prometheus answers 200 (it answers 503 while it replays its WAL).
    pub async fn ready(&self) -> Result<(), SidecarError> {
        self.get("/-/ready").await.map(drop)
    }

    /// The external labels of Prometheus's configuration (`global.external_labels`).
    pub async fn external_labels(&self) -> Result<Labels, SidecarError> {
        let config: ConfigData = self.api("/api/v1/status/config").await?;
        external_labels(&config.yaml).map_err(|e| self.bad_answer("GET /api/v1/status/config", e))
    }

    /// The block durations Prometheus runs with (`/api/v1/status/flags`).
    pub async fn flags(&self) -> Result<TsdbFlags, SidecarError> {
        let flags: std::collections::BTreeMap<String, String> = self.api("/api/v1/status/flags").await?;
        TsdbFlags::from_flags(&flags).map_err(|e| self.bad_answer("GET /api/v1/status/flags", e))
    }

    /// Prometheus's version (`/api/v1/status/buildinfo`).
    pub async fn version(&self) -> Result<String, SidecarError> {
        let info: BuildInfo = self.api("/api/v1/status/buildinfo").await?;
        Ok(info.version)
    }

    /// The oldest sample time (ms) the TSDB holds, from `prometheus_tsdb_lowest_timestamp_seconds`
    /// in its `/metrics`, as Thanos's sidecar reads it: `i64::MIN` while the TSDB is empty (so
    /// that a querier does not prune it).
    pub async fn lowest_timestamp(&self) -> Result<i64, SidecarError> {
        let body = self.get("/metrics").await?;
        lowest_timestamp(&body).map_err(|e| self.bad_answer("GET /metrics", e))
    }

    /// `/api/v1/series`: the label sets of the series matching `matchers` in `[min, max]` ms.
    pub async fn series(&self, matchers: &[Matcher], min: i64, max: i64) -> Result<Vec<Labels>, SidecarError> {
        let query = api_query(matchers, min, max, 0);
        let series: Vec<std::collections::BTreeMap<String, String>> =
            self.api(&format!("/api/v1/series?{query}")).await?;
        Ok(series
            .iter()
            .map(|m| Labels::from_sorted_unchecked(m.iter().map(|(n, v)| (n.as_str(), v.as_str()))))
            .collect())
    }

    /// `/api/v1/labels`: the label names of the series matching `matchers` in `[min, max]` ms.
    pub async fn label_names(
        &self,
        matchers: &[Matcher],
        min: i64,
        max: i64,
        limit: usize,
    ) -> Result<Vec<String>, SidecarError> {
        let query = api_query(matchers, min, max, limit);
        self.api::<Option<Vec<String>>>(&format!("/api/v1/labels?{query}")).await.map(Option::unwrap_or_default)
    }

    /// `/api/v1/label/<name>/values`.
    pub async fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        min: i64,
        max: i64,
        limit: usize,
    ) -> Result<Vec<String>, SidecarError> {
        let query = api_query(matchers, min, max, limit);
        // Names other than [a-zA-Z_][a-zA-Z0-9_]* go in Prometheus's `U__` escaping.
        let path_name: String = if name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()))
        {
            name.to_owned()
        } else {
            let mut s = String::from("U__");
            for c in name.chars() {
                if c == '_' {
                    s.push_str("__");
                } else if c.is_ascii_alphanumeric() {
                    s.push(c);
                } else {
                    s.push_str(&format!("_{:x}_", c as u32));
                }
            }
            s
        };
        self.api::<Option<Vec<String>>>(&format!("/api/v1/label/{path_name}/values?{query}"))
            .await
            .map(Option::unwrap_or_default)
    }

    /// Starts a remote read of `request` (a `prometheus.ReadRequest` asking for
    /// `STREAMED_XOR_CHUNKS`), sent as Thanos's sidecar sends it; the streamed body once
    /// Prometheus has answered 2xx with the streamed content type.
    pub async fn remote_read(&self, request: &[u8]) -> Result<Incoming, SidecarError> {
        let what = "POST /api/v1/read";
        let compressed = snap::raw::Encoder::new()
            .compress_vec(request)
            .map_err(|e| self.unreachable(what, format!("snappy: {e}")))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.uri("/api/v1/read")?)
            .header(header::CONTENT_ENCODING, "snappy")
            .header(header::CONTENT_TYPE, "application/x-stream-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .header(header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::from(compressed)))
            .map_err(|e| self.unreachable(what, e))?;
        let resp = self.send(what, req).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = self.body(what, resp).await.unwrap_or_default();
            return Err(self.status_error(what, status, &body));
        }
        let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.starts_with(STREAMED_CONTENT_TYPE) {
            return Err(self.bad_answer(
                what,
                format!("content type {content_type:?}, not the streamed chunks asked for (Prometheus 2.13 or newer streams them)"),
            ));
        }
        Ok(resp.into_body())
    }
}

const USER_AGENT: &str = concat!("strata-sidecar/", env!("CARGO_PKG_VERSION"));

/// The error and its causes, as one line (hyper's errors keep the useful part in the source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// `match[]`, `start`, `end` (seconds, as Prometheus's API reads them) and `limit` of an API call.
fn api_query(matchers: &[Matcher], min: i64, max: i64, limit: usize) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if !matchers.is_empty() {
        let selector: Vec<String> = matchers.iter().map(Matcher::to_string).collect();
        q.append_pair("match[]", &format!("{{{}}}", selector.join(",")));
    }
    q.append_pair("start", &seconds(min.clamp(API_MIN_MS, API_MAX_MS)));
    q.append_pair("end", &seconds(max.clamp(API_MIN_MS, API_MAX_MS)));
    if limit > 0 {
        q.append_pair("limit", &limit.to_string());
    }
    q.finish()
}

/// Milliseconds as decimal seconds, exactly.
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// The `data` of a Prometheus API answer (`{"status":"success","data":…}`).
pub fn api_data<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    #[derive(Deserialize)]
    struct Envelope<T> {
        status: String,
        data: Option<T>,
        error: Option<String>,
    }
    let envelope: Envelope<T> = serde_json::from_slice(body).map_err(|e| format!("not the API's JSON: {e}"))?;
    match (envelope.status.as_str(), envelope.data) {
        ("success", Some(data)) => Ok(data),
        ("success", None) => Err("no data in the answer".to_owned()),
        (status, _) => Err(format!("status {status:?}: {}", envelope.error.unwrap_or_default())),
    }
}

#[derive(Debug, Deserialize)]
struct ConfigData {
    yaml: String,
}

#[derive(Deserialize)]
struct BuildInfo {
    version: String,
}

/// The external labels of a Prometheus configuration file's text (`global.external_labels`;
/// none when the section is missing).
pub fn external_labels(yaml: &str) -> Result<Labels, String> {
    #[derive(Deserialize, Default)]
    struct Config {
        #[serde(default)]
        global: Option<Global>,
    }
    #[derive(Deserialize, Default)]
    struct Global {
        #[serde(default)]
        external_labels: Option<std::collections::BTreeMap<String, String>>,
    }
    let config: Option<Config> = serde_norway::from_str(yaml).map_err(|e| format!("configuration YAML: {e}"))?;
    let labels = config.and_then(|c| c.global).and_then(|g| g.external_labels).unwrap_or_default();
    if let Some(name) = labels.keys().find(|n| n.is_empty()) {
        return Err(format!("external label with an empty name {name:?}"));
    }
    // Prometheus drops labels with empty values, as Go's `labels.FromMap` keeps them; an
    // empty value is no label in PromQL either.
    Ok(Labels::from_sorted_unchecked(
        labels.iter().filter(|(_, v)| !v.is_empty()).map(|(n, v)| (n.as_str(), v.as_str())),
    ))
}

/// The TSDB block durations of `/api/v1/status/flags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsdbFlags {
    pub min_block_duration: Duration,
    pub max_block_duration: Duration,
    /// The two as Prometheus reports them, for messages.
    pub min_text: String,
    pub max_text: String,
    /// `--storage.tsdb.delay-compact-file.path` (Prometheus 3.x), empty when not set.
    pub delay_compact_file: String,
}

impl TsdbFlags {
    fn from_flags(flags: &std::collections::BTreeMap<String, String>) -> Result<TsdbFlags, String> {
        let duration = |name: &str| -> Result<Duration, String> {
            let text = flags.get(name).ok_or_else(|| format!("flag {name} missing"))?;
            strata_tsdb::gotext::parse_duration(text).map_err(|e| format!("flag {name}={text:?}: {e}"))
        };
        Ok(TsdbFlags {
            min_block_duration: duration("storage.tsdb.min-block-duration")?,
            max_block_duration: duration("storage.tsdb.max-block-duration")?,
            min_text: flags.get("storage.tsdb.min-block-duration").cloned().unwrap_or_default(),
            max_text: flags.get("storage.tsdb.max-block-duration").cloned().unwrap_or_default(),
            delay_compact_file: flags.get("storage.tsdb.delay-compact-file.path").cloned().unwrap_or_default(),
        })
    }

    /// Thanos's check before shipping: Prometheus must not compact its blocks (it would
    /// compact a block before it is uploaded, and the bucket would miss it), unless it delays
    /// compaction through the shipper's own state file `state_file`.
    pub fn check_for_shipping(&self, state_file: &std::path::Path) -> Result<(), SidecarError> {
        if !self.delay_compact_file.is_empty() {
            if std::path::Path::new(&self.delay_compact_file) != state_file {
                return Err(SidecarError::Config(format!(
                    "Prometheus tracks block uploads in --storage.tsdb.delay-compact-file.path={} while the sidecar \
                     writes {}; they must be the same file",
                    self.delay_compact_file,
                    state_file.display()
                )));
            }
            return Ok(());
        }
        if self.min_block_duration != self.max_block_duration {
            return Err(SidecarError::Config(format!(
                "Prometheus runs with --storage.tsdb.min-block-duration={} and --storage.tsdb.max-block-duration={}: \
                 it compacts its blocks, which could compact one away before it is uploaded. Start Prometheus with \
                 both set to the same value (--storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h)",
                self.min_text, self.max_text,
            )));
        }
        Ok(())
    }
}

/// `prometheus_tsdb_lowest_timestamp_seconds` of a `/metrics` text page, in ms; `i64::MIN` when
/// the TSDB is empty (Prometheus then exports the largest int64 as a float).
pub fn lowest_timestamp(text: &[u8]) -> Result<i64, String> {
    const NAME: &str = "prometheus_tsdb_lowest_timestamp_seconds";
    let text = std::str::from_utf8(text).map_err(|_| "the metrics page is not UTF-8".to_owned())?;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(NAME) else { continue };
        // The gauge has no labels; a longer name only shares the prefix.
        let Some(value) = rest.strip_prefix(' ') else { continue };
        let value = value.split_whitespace().next().unwrap_or("");
        let seconds = strata_tsdb::gotext::parse_float(value).map_err(|e| format!("{NAME} {value:?}: {e}"))?;
        if !seconds.is_finite() {
            return Err(format!("{NAME} is {value}"));
        }
        let ms = seconds * 1000.0;
        return Ok(if ms >= i64::MAX as f64 { i64::MIN } else { ms as i64 });
    }
    Err(format!("no {NAME} in the metrics page (is this Prometheus?)"))
}

#[cfg(test)]
mod tests {
    use strata_tsdb::matchers::MatchOp;

    use super::*;

    #[test]
    fn external_labels_from_the_config() {
        let yaml = "global:\n  scrape_interval: 15s\n  external_labels:\n    prometheus_replica: a\n    cluster: eu\nscrape_configs: []\n";
        assert_eq!(
            external_labels(yaml).unwrap(),
            Labels::from_pairs(&[("cluster", "eu"), ("prometheus_replica", "a")])
        );
        for none in
            ["", "global:\n  scrape_interval: 15s\n", "global:\n  external_labels: {}\n", "scrape_configs: []\n"]
        {
            assert!(external_labels(none).unwrap().is_empty(), "{none:?}");
        }
        assert_eq!(
            external_labels("global:\n  external_labels:\n    a: \"\"\n    b: x\n").unwrap(),
            Labels::from_pairs(&[("b", "x")])
        );
        for bad in [
            "global: [",
            "global:\n  external_labels: [a, b]\n",
            "global:\n  external_labels:\n    a: {b: c}\n",
            "- 1\n",
        ] {
            assert!(external_labels(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn api_envelopes() {
        let data: ConfigData = api_data(br#"{"status":"success","data":{"yaml":"global: {}"}}"#).unwrap();
        assert_eq!(data.yaml, "global: {}");
        let err = api_data::<ConfigData>(br#"{"status":"error","errorType":"internal","error":"boom"}"#).unwrap_err();
        assert!(err.contains("boom"), "{err}");
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"status":"success"}"#,
            br#"{"status":"success","data":{"yaml":1}}"#,
            b"\xff\xfe",
        ] {
            assert!(api_data::<ConfigData>(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn flags(min: &str, max: &str, delay: Option<&str>) -> Result<TsdbFlags, String> {
        let mut m = std::collections::BTreeMap::new();
        m.insert("storage.tsdb.min-block-duration".to_owned(), min.to_owned());
        m.insert("storage.tsdb.max-block-duration".to_owned(), max.to_owned());
        if let Some(d) = delay {
            m.insert("storage.tsdb.delay-compact-file.path".to_owned(), d.to_owned());
        }
        TsdbFlags::from_flags(&m)
    }

    #[test]
    fn block_durations_are_checked() {
        let state = std::path::Path::new("data/thanos.shipper.json");
        assert!(flags("2h", "2h", None).unwrap().check_for_shipping(state).is_ok());
        assert!(flags("2h", "120m", None).unwrap().check_for_shipping(state).is_ok());
        let err = flags("2h", "1d12h", None).unwrap().check_for_shipping(state).unwrap_err().to_string();
        assert!(err.contains("--storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h"), "{err}");
        assert!(err.contains("max-block-duration=1d12h"), "{err}");
        assert!(flags("2h", "1d", Some("data/thanos.shipper.json")).unwrap().check_for_shipping(state).is_ok());
        assert!(flags("2h", "1d", Some("elsewhere.json")).unwrap().check_for_shipping(state).is_err());
        assert!(flags("2h", "2x", None).is_err());
        assert!(flags("", "2h", None).is_err());
        assert!(TsdbFlags::from_flags(&Default::default()).unwrap_err().contains("missing"));
    }

    #[test]
    fn lowest_timestamp_from_metrics() {
        let page = b"# HELP prometheus_tsdb_lowest_timestamp_seconds Lowest timestamp value stored in the database.\n\
            # TYPE prometheus_tsdb_lowest_timestamp_seconds gauge\n\
            prometheus_tsdb_lowest_timestamp_seconds_total 1\n\
            prometheus_tsdb_lowest_timestamp_seconds 1.700000000123e+09\n";
        assert_eq!(lowest_timestamp(page).unwrap(), 1_700_000_000_123);
        let empty = b"prometheus_tsdb_lowest_timestamp_seconds 9.223372036854776e+18\n";
        assert_eq!(lowest_timestamp(empty).unwrap(), i64::MIN);
        for bad in [
            &b"up 1\n"[..],
            b"prometheus_tsdb_lowest_timestamp_seconds x\n",
            b"prometheus_tsdb_lowest_timestamp_seconds NaN\n",
            b"\xff",
        ] {
            assert!(lowest_timestamp(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn api_queries() {
        let m = vec![
            Matcher::new(MatchOp::Equal, "__name__", "up").unwrap(),
            Matcher::new(MatchOp::Regex, "job", "a|\"b\"").unwrap(),
        ];
        let q = api_query(&m, -1500, 2_000, 10);
        let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("match[]".to_owned(), r#"{__name__="up",job=~"a|\"b\""}"#.to_owned()),
                ("start".to_owned(), "-1.500".to_owned()),
                ("end".to_owned(), "2.000".to_owned()),
                ("limit".to_owned(), "10".to_owned()),
            ]
        );
        let q = api_query(&[], i64::MIN, i64::MAX, 0);
        assert_eq!(q, "start=-9223309901258.000&end=9223309901257.000");
    }

    #[test]
    fn urls() {
        assert!(PromClient::new("http://localhost:9090", Duration::from_secs(1)).is_ok());
        for bad in ["https://localhost:9090", "localhost:9090/x", "http://", "::"] {
            assert!(PromClient::new(bad, Duration::from_secs(1)).is_err(), "{bad}");
        }
    }
}
