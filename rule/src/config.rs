//! The ruler's peer configs in Thanos's YAML formats: `--query.config(-file)`, a list of
//! `httpconfig.Config`, and `--alertmanagers.config(-file)`, an `alert.AlertingConfig`. They
//! are read strictly as Thanos reads them (`yaml.UnmarshalStrict`: unknown fields refused),
//! checked, and turned into [`SourceSpec`]s, the form `--query` and `--alertmanagers.url`
//! values take too, so that both reach their peers through [`Peers`](crate::discovery::Peers).
//!
//! `http_config.proxy_url` (an `http://` proxy, with or without credentials), and prometheus/common's
//! `no_proxy` and `proxy_from_environment` (checked as its `ProxyConfig.Validate` checks them)
//! set the proxy peers are reached through (`strata_query::frontend::proxy`); anything else
//! about proxies is refused rather than ignored. Of `transport_config`, Go's transport
//! tunables, only `dialer_timeout` has an equivalent here (the connect timeout); the others are
//! read and have no effect.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;
use strata_query::frontend::proxy::Proxy;
use strata_query::frontend::tls::{TlsConfig, TlsFields};
use strata_tsdb::gotext::deserialize_model_duration;

use crate::Error;

/// Thanos's Alertmanager timeout when a config gives none (`DefaultAlertmanagerConfig`).
pub const DEFAULT_ALERTMANAGER_TIMEOUT: Duration = Duration::from_secs(10);
/// Prometheus's file-SD refresh interval when a config gives none.
pub const DEFAULT_SD_REFRESH: Duration = Duration::from_secs(300);
/// Connect timeout when `transport_config.dialer_timeout` gives none (Thanos's 5s).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BasicAuth {
    username: String,
    password: String,
    password_file: String,
}

/// Go's `http.Transport` settings; see the module documentation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TransportConfig {
    /// Nanoseconds, as Thanos reads it (a Go `int64`).
    dialer_timeout: i64,
    #[serde(rename = "max_idle_conns")]
    _max_idle_conns: IgnoredAny,
    #[serde(rename = "max_idle_conns_per_host")]
    _max_idle_conns_per_host: IgnoredAny,
    #[serde(rename = "idle_conn_timeout")]
    _idle_conn_timeout: IgnoredAny,
    #[serde(rename = "response_header_timeout")]
    _response_header_timeout: IgnoredAny,
    #[serde(rename = "expect_continue_timeout")]
    _expect_continue_timeout: IgnoredAny,
    #[serde(rename = "max_conns_per_host")]
    _max_conns_per_host: IgnoredAny,
    #[serde(rename = "disable_compression")]
    _disable_compression: IgnoredAny,
    #[serde(rename = "tls_handshake_timeout")]
    _tls_handshake_timeout: IgnoredAny,
}

/// `httpconfig.ClientConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ClientConfig {
    basic_auth: BasicAuth,
    bearer_token: String,
    bearer_token_file: String,
    proxy_url: String,
    no_proxy: String,
    proxy_from_environment: bool,
    tls_config: TlsFields,
    transport_config: TransportConfig,
}

/// `httpconfig.FileSDConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileSdConfig {
    files: Vec<String>,
    #[serde(deserialize_with = "deserialize_model_duration")]
    refresh_interval: Option<Duration>,
}

fn http() -> String {
    "http".to_owned()
}

/// `httpconfig.Config` and `alert.AlertmanagerConfig` (the same fields plus `timeout` and
/// `api_version`, which a query config refuses).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointsConfig {
    #[serde(default)]
    http_config: ClientConfig,
    #[serde(default)]
    static_configs: Vec<String>,
    #[serde(default)]
    file_sd_configs: Vec<FileSdConfig>,
    #[serde(default = "http")]
    scheme: String,
    #[serde(default)]
    path_prefix: String,
    #[serde(default, deserialize_with = "deserialize_model_duration")]
    timeout: Option<Duration>,
    #[serde(default)]
    api_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertingConfig {
    #[serde(default)]
    alertmanagers: Vec<EndpointsConfig>,
}

/// A secret given inline or as a file read at every request (so that a rotated token is
/// used without a restart, as Prometheus's round trippers read it).
#[derive(Clone, Debug, PartialEq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl Secret {
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("read {}: {e}", p.display())),
        }
    }
}

/// Alertmanager's alert API a source's peers take alerts through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertApi {
    V1,
    V2,
}

impl AlertApi {
    pub fn path(self) -> &'static str {
        match self {
            AlertApi::V1 => "/api/v1/alerts",
            AlertApi::V2 => "/api/v2/alerts",
        }
    }
}

/// How the peers of one source are asked: credentials and timeouts.
#[derive(Clone, Debug, PartialEq)]
pub struct Access {
    /// User and password of HTTP basic authentication.
    pub basic_auth: Option<(String, Secret)>,
    pub bearer_token: Option<Secret>,
    /// Longest a request may take; `None`: no bound besides the peer's.
    pub timeout: Option<Duration>,
    pub dial_timeout: Duration,
    pub alert_api: AlertApi,
    /// For `https` peers.
    pub tls: TlsConfig,
    /// The HTTP proxy peers are reached through.
    pub proxy: Proxy,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            basic_auth: None,
            bearer_token: None,
            timeout: None,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            alert_api: AlertApi::V2,
            tls: TlsConfig::default(),
            proxy: Proxy::default(),
        }
    }
}

/// One group of peers: values as `--query` takes them (`host:port`, `dns+host:port`,
/// `dnssrv+name`), files of such values, and how to reach what they name.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSpec {
    pub scheme: String,
    /// Empty or `/…` without a trailing slash.
    pub path_prefix: String,
    pub targets: Vec<String>,
    /// File-SD files and how often each is read even when it seems unchanged.
    pub sd_files: Vec<(PathBuf, Duration)>,
    pub access: Access,
}

fn bad(source: &str, message: impl std::fmt::Display) -> Error {
    Error::Config { origin: source.to_owned(), message: message.to_string() }
}

/// Thanos's `path.Join("/", prefix)`: a leading slash, no trailing one, `""` for the root.
fn clean_prefix(prefix: &str) -> String {
    let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("/{}", parts.join("/"))
    }
}

fn source_spec(source: &str, at: &str, c: EndpointsConfig, alerting: bool) -> Result<SourceSpec, Error> {
    let field = |name: &str| format!("{at}.{name}");
    match c.scheme.as_str() {
        "http" | "https" => {}
        other => {
            return Err(bad(
                source,
                format!("{}: {other:?} is not a supported scheme; use http or https", field("scheme")),
            ))
        }
    }
    let h = c.http_config;
    let proxy = match (h.proxy_url.as_str(), h.no_proxy.as_str(), h.proxy_from_environment) {
        ("", "", false) => Proxy::default(),
        ("", "", true) => Proxy::from_environment()
            .map_err(|e| bad(source, format!("{}: {e}", field("http_config.proxy_from_environment"))))?,
        (_, _, true) => {
            return Err(bad(
                source,
                format!(
                    "{}: if proxy_from_environment is configured, proxy_url and no_proxy must not be configured",
                    field("http_config.proxy_from_environment")
                ),
            ))
        }
        ("", _, false) => {
            return Err(bad(
                source,
                format!(
                    "{}: if no_proxy is configured, proxy_url must also be configured",
                    field("http_config.no_proxy")
                ),
            ))
        }
        (url, no_proxy, false) => Proxy::from_url(url, no_proxy)
            .map_err(|e| bad(source, format!("{}: {e}", field("http_config.proxy_url"))))?,
    };
    if !h.bearer_token.is_empty() && !h.bearer_token_file.is_empty() {
        return Err(bad(
            source,
            format!("{}: at most one of bearer_token and bearer_token_file may be set", field("http_config")),
        ));
    }
    let b = h.basic_auth;
    if !b.password.is_empty() && !b.password_file.is_empty() {
        return Err(bad(
            source,
            format!("{}: at most one of password and password_file may be set", field("http_config.basic_auth")),
        ));
    }
    let basic_auth = (!(b.username.is_empty() && b.password.is_empty() && b.password_file.is_empty())).then(|| {
        let password =
            if b.password_file.is_empty() { Secret::Inline(b.password) } else { Secret::File(b.password_file.into()) };
        (b.username, password)
    });
    let bearer_token = match (h.bearer_token.is_empty(), h.bearer_token_file.is_empty()) {
        (false, _) => Some(Secret::Inline(h.bearer_token)),
        (true, false) => Some(Secret::File(h.bearer_token_file.into())),
        (true, true) => None,
    };
    let dial_timeout = match h.transport_config.dialer_timeout {
        n if n < 0 => {
            return Err(bad(
                source,
                format!("{}: must not be negative", field("http_config.transport_config.dialer_timeout")),
            ))
        }
        0 => DEFAULT_DIAL_TIMEOUT,
        n => Duration::from_nanos(n.unsigned_abs()),
    };
    let (timeout, alert_api) = if alerting {
        let api = match c.api_version.as_deref() {
            None | Some("v1") => AlertApi::V1,
            Some("v2") => AlertApi::V2,
            Some(other) => {
                return Err(bad(
                    source,
                    format!(
                        "{}: expected Alertmanager API version to be one of [v1 v2] but got {other:?}",
                        field("api_version")
                    ),
                ))
            }
        };
        (Some(c.timeout.unwrap_or(DEFAULT_ALERTMANAGER_TIMEOUT)), api)
    } else {
        for (name, set) in [("timeout", c.timeout.is_some()), ("api_version", c.api_version.is_some())] {
            if set {
                return Err(bad(source, format!("{}: unknown field in a query config", field(name))));
            }
        }
        (None, AlertApi::V2)
    };
    for (i, t) in c.static_configs.iter().enumerate() {
        if t.trim().is_empty() {
            return Err(bad(source, format!("{}[{i}]: empty address", field("static_configs"))));
        }
    }
    let mut sd_files = Vec::new();
    for (i, sd) in c.file_sd_configs.into_iter().enumerate() {
        if sd.files.is_empty() {
            return Err(bad(source, format!("{}[{i}].files: no file given", field("file_sd_configs"))));
        }
        let refresh = match sd.refresh_interval {
            Some(d) if d.is_zero() => {
                return Err(bad(source, format!("{}[{i}].refresh_interval: must be above 0", field("file_sd_configs"))))
            }
            Some(d) => d,
            None => DEFAULT_SD_REFRESH,
        };
        for f in sd.files {
            check_sd_file_name(&f).map_err(|e| bad(source, format!("{}[{i}].files: {e}", field("file_sd_configs"))))?;
            sd_files.push((PathBuf::from(f), refresh));
        }
    }
    Ok(SourceSpec {
        scheme: c.scheme,
        path_prefix: clean_prefix(&c.path_prefix),
        targets: c.static_configs,
        sd_files,
        access: Access {
            basic_auth,
            bearer_token,
            timeout,
            dial_timeout,
            alert_api,
            tls: h.tls_config.into_config(),
            proxy,
        },
    })
}

/// File SD reads a file by its extension (Prometheus's `readFile`), so others are refused.
fn check_sd_file_name(f: &str) -> Result<(), String> {
    if f.ends_with(".json") || f.ends_with(".yml") || f.ends_with(".yaml") {
        Ok(())
    } else {
        Err(format!("{f:?}: the extension must be .json, .yml or .yaml"))
    }
}

/// The source of Thanos's `--query.sd-files` (`flag`): the query APIs listed in file-SD
/// `files` (globs), read again when they change and every `refresh`.
pub fn sd_files_source(flag: &str, files: &[String], refresh: Duration) -> Result<SourceSpec, Error> {
    for f in files {
        check_sd_file_name(f).map_err(|e| bad(flag, e))?;
    }
    Ok(SourceSpec {
        scheme: http(),
        path_prefix: String::new(),
        targets: Vec::new(),
        sd_files: files.iter().map(|f| (PathBuf::from(f), refresh)).collect(),
        access: Access::default(),
    })
}

fn yaml_error(source: &str, e: &serde_norway::Error) -> Error {
    bad(source, format!("parsing YAML: {e}"))
}

/// The sources of a `--query.config` text; `source` (the file or the flag) is named in errors.
/// An empty text is no config, as for Thanos.
pub fn query_sources(text: &str, source: &str) -> Result<Vec<SourceSpec>, Error> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let configs: Vec<EndpointsConfig> = serde_norway::from_str(text).map_err(|e| yaml_error(source, &e))?;
    configs.into_iter().enumerate().map(|(i, c)| source_spec(source, &format!("[{i}]"), c, false)).collect()
}

/// The sources of an `--alertmanagers.config` text.
pub fn alertmanager_sources(text: &str, source: &str) -> Result<Vec<SourceSpec>, Error> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let config: AlertingConfig = serde_norway::from_str(text).map_err(|e| yaml_error(source, &e))?;
    config
        .alertmanagers
        .into_iter()
        .enumerate()
        .map(|(i, c)| source_spec(source, &format!("alertmanagers[{i}]"), c, true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_configs_in_thanos_format() {
        let yaml = r#"
- static_configs: ["q1:10902", "dns+q2:10902"]
  file_sd_configs:
    - files: ["sd/*.yml", "x.json"]
      refresh_interval: 1m
  scheme: http
  path_prefix: /thanos/
  http_config:
    basic_auth: {username: u, password: p}
    transport_config: {dialer_timeout: 2000000000, max_idle_conns: 3}
- static_configs: ["q3:9090"]
  http_config:
    bearer_token_file: /t
"#;
        let s = query_sources(yaml, "q.yml").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].targets, ["q1:10902", "dns+q2:10902"]);
        assert_eq!(s[0].path_prefix, "/thanos");
        assert_eq!(
            s[0].sd_files,
            [(PathBuf::from("sd/*.yml"), Duration::from_secs(60)), (PathBuf::from("x.json"), Duration::from_secs(60))]
        );
        assert_eq!(s[0].access.basic_auth, Some(("u".into(), Secret::Inline("p".into()))));
        assert_eq!(s[0].access.dial_timeout, Duration::from_secs(2));
        assert_eq!(s[0].access.timeout, None);
        assert_eq!(s[1].access.bearer_token, Some(Secret::File("/t".into())));
        assert_eq!(s[1].path_prefix, "");
        assert!(query_sources("", "q.yml").unwrap().is_empty());
        assert!(query_sources("# nothing\n", "q.yml").unwrap().is_empty());
    }

    #[test]
    fn alertmanager_configs_in_thanos_format() {
        let yaml = "alertmanagers:\n- static_configs: [am:9093]\n  api_version: v2\n  timeout: 3s\n- static_configs: [b:9093]\n";
        let s = alertmanager_sources(yaml, "am.yml").unwrap();
        assert_eq!(s[0].access.alert_api, AlertApi::V2);
        assert_eq!(s[0].access.timeout, Some(Duration::from_secs(3)));
        // Thanos's defaults.
        assert_eq!(s[1].access.alert_api, AlertApi::V1);
        assert_eq!(s[1].access.timeout, Some(DEFAULT_ALERTMANAGER_TIMEOUT));
    }

    #[test]
    fn https_peers_with_their_tls_config() {
        let yaml =
            "alertmanagers:\n- static_configs: [am:9093]\n  scheme: https\n  http_config:\n    tls_config:\n      \
                    ca_file: ca.pem\n      cert_file: c.pem\n      key_file: k.pem\n      server_name: am.example\n";
        let s = alertmanager_sources(yaml, "am.yml").unwrap();
        assert_eq!(s[0].scheme, "https");
        let want = TlsConfig {
            ca_file: Some("ca.pem".into()),
            cert_file: Some("c.pem".into()),
            key_file: Some("k.pem".into()),
            server_name: Some("am.example".into()),
            insecure_skip_verify: false,
        };
        assert_eq!(s[0].access.tls, want);
        let s = query_sources("- static_configs: [q:9090]\n  scheme: https\n", "q.yml").unwrap();
        assert_eq!(s[0].access.tls, TlsConfig::default());
    }

    #[test]
    fn peers_behind_a_proxy() {
        let yaml = "- static_configs: [q:9090]\n  http_config:\n    proxy_url: http://proxy:3128\n    no_proxy: q\n";
        let s = query_sources(yaml, "q.yml").unwrap();
        assert_eq!(s[0].access.proxy, Proxy::from_url("http://proxy:3128", "q").unwrap());
        let yaml = "alertmanagers:\n- static_configs: [am:9093]\n  http_config: {proxy_url: 'proxy:8080'}\n";
        let s = alertmanager_sources(yaml, "am.yml").unwrap();
        assert_eq!(s[0].access.proxy, Proxy::from_url("http://proxy:8080", "").unwrap());
        let s = query_sources("- static_configs: [q:9090]\n", "q.yml").unwrap();
        assert_eq!(s[0].access.proxy, Proxy::default());
    }

    #[test]
    fn bad_configs_name_the_source_and_field() {
        let cases: &[(&str, &str)] = &[
            ("- static_configs: [a:1]\n  bogus: 1\n", "unknown field `bogus`"),
            ("- static_configs: [a:1]\n  scheme: ftp\n", "[0].scheme: \"ftp\" is not a supported scheme"),
            ("- http_config: {tls_config: {ca: x}}\n", "unknown field `ca`"),
            (
                "- http_config: {proxy_url: 'https://p'}\n",
                "[0].http_config.proxy_url: proxy_url \"https://p\": only http://",
            ),
            (
                "- http_config: {proxy_url: 'socks5://u:secret@p:1080'}\n",
                "[0].http_config.proxy_url: proxy_url \"socks5://u:xxxxx@p:1080\": only http://",
            ),
            ("- http_config: {no_proxy: a}\n", "[0].http_config.no_proxy: if no_proxy is configured"),
            ("- http_config: {proxy_url: 'http://p', proxy_from_environment: true}\n", "must not be configured"),
            ("- http_config: {proxy_connect_header: {a: [b]}}\n", "unknown field `proxy_connect_header`"),
            ("- http_config: {bearer_token: a, bearer_token_file: b}\n", "at most one of bearer_token"),
            ("- http_config: {basic_auth: {password: a, password_file: b}}\n", "at most one of password"),
            ("- http_config: {basic_auth: {user: a}}\n", "unknown field `user`"),
            ("- static_configs: [a:1]\n  timeout: 1s\n", "[0].timeout: unknown field"),
            ("- static_configs: ['']\n", "[0].static_configs[0]: empty address"),
            ("- file_sd_configs: [{files: []}]\n", "[0].file_sd_configs[0].files: no file given"),
            ("- file_sd_configs: [{files: [a.txt]}]\n", "the extension must be"),
            ("- file_sd_configs: [{files: [a.yml], refresh_interval: 0s}]\n", "must be above 0"),
            ("- file_sd_configs: [{files: [a.yml], refresh_interval: soon}]\n", "not a valid duration"),
            ("- http_config: {transport_config: {dialer_timeout: -1}}\n", "must not be negative"),
            ("[unclosed\n", "parsing YAML"),
            ("static_configs: [a:1]\n", "parsing YAML"),
            ("- static_configs: a:1\n", "parsing YAML"),
            ("- \"\\xff\\u0000<script>\"\n", "parsing YAML"),
        ];
        for (yaml, want) in cases {
            let e = query_sources(yaml, "q.yml").unwrap_err().to_string();
            assert!(e.starts_with("q.yml: "), "{yaml}: {e}");
            assert!(e.contains(want), "{yaml}: {e} lacks {want}");
        }
        for (yaml, want) in [
            ("alertmanagers:\n- api_version: v3\n", "alertmanagers[0].api_version: expected Alertmanager API version"),
            ("alertmanagers:\n- timeout: x\n", "parsing YAML"),
            ("- static_configs: [a:1]\n", "parsing YAML"),
            ("alertmanager: []\n", "unknown field `alertmanager`"),
        ] {
            let e = alertmanager_sources(yaml, "am.yml").unwrap_err().to_string();
            assert!(e.starts_with("am.yml: ") && e.contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn prefixes_as_path_join() {
        assert_eq!(clean_prefix(""), "");
        assert_eq!(clean_prefix("/"), "");
        assert_eq!(clean_prefix("a/b/"), "/a/b");
        assert_eq!(clean_prefix("//a//"), "/a");
    }
}
