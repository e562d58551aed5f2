//! The ruler's HTTP peers (query APIs, Alertmanagers) as Thanos finds them. Every way of
//! naming them becomes [`SourceSpec`]s: a `--query` or `--alertmanagers.url` value is one
//! source of one target, each entry of `--query.config` / `--alertmanagers.config` is one
//! source of its `static_configs` and `file_sd_configs`. A target is a static address or a
//! `dns+` / `dnssrv+` (`dnssrvnoa+`) name, looked up again every refresh; each address found
//! becomes one client with the source's scheme, path prefix, credentials and timeouts.
//! File-SD files (Prometheus's format; globs in the file name) are read again when they change
//! and every refresh interval; a file that cannot be read keeps its last targets.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use strata_query::frontend::downstream::{Answer, Downstream, Transport, DEFAULT_MAX_ANSWER_BYTES};
use strata_query::frontend::tls::{Tls, TlsConfig};
use strata_store::endpoints::{EndpointSpec, Resolver, SdFile};

use crate::config::{Access, AlertApi, SourceSpec};
use crate::Error;

/// How often a request is tried (connection errors and 5xx answers).
const ATTEMPTS: usize = 3;

/// A file-SD glob and the files it matched.
struct SdGlob {
    pattern: PathBuf,
    refresh: Duration,
    files: BTreeMap<PathBuf, SdFile>,
}

impl SdGlob {
    /// Picks up files that appeared and drops those that vanished.
    fn expand(&mut self) {
        let Some(pattern) = self.pattern.to_str() else {
            tracing::warn!(pattern = %self.pattern.display(), "SD file pattern is not UTF-8");
            return;
        };
        let paths: Vec<PathBuf> = match glob::glob(pattern) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(e) => {
                tracing::warn!(pattern, error = %e, "bad SD file pattern");
                return;
            }
        };
        self.files.retain(|p, _| paths.contains(p));
        for p in paths {
            self.files.entry(p.clone()).or_insert_with(|| SdFile::new(p));
        }
    }

    fn due(&self) -> bool {
        self.files.values().any(|f| f.due(self.refresh))
    }
}

struct Source {
    scheme: String,
    path: String,
    specs: Vec<EndpointSpec>,
    sd: Vec<SdGlob>,
    access: Arc<Access>,
    /// Built once for all the source's peers (its files read at start).
    tls: Option<Tls>,
}

/// One peer: a client of one address, and how its source asks.
pub struct Peer {
    client: Downstream,
    access: Arc<Access>,
    source: usize,
}

impl Peer {
    pub fn url(&self) -> &str {
        self.client.url()
    }

    /// The path Alertmanager takes alerts at, by the source's `api_version`.
    pub fn alerts_path(&self) -> &'static str {
        self.access.alert_api.path()
    }

    pub fn alert_api(&self) -> AlertApi {
        self.access.alert_api
    }

    fn headers(&self, base: &HeaderMap) -> Result<HeaderMap, String> {
        let mut headers = base.clone();
        let mut auth = |value: String| {
            HeaderValue::from_str(&value)
                .map(|v| {
                    headers.insert(header::AUTHORIZATION, v);
                })
                .map_err(|_| "credentials hold characters not allowed in a header".to_owned())
        };
        if let Some((user, password)) = &self.access.basic_auth {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.read()?));
            auth(format!("Basic {encoded}"))?;
        }
        if let Some(token) = &self.access.bearer_token {
            auth(format!("Bearer {}", token.read()?))?;
        }
        Ok(headers)
    }

    async fn bounded(&self, call: impl std::future::Future<Output = Result<Answer, String>>) -> Result<Answer, String> {
        match self.access.timeout {
            Some(t) => tokio::time::timeout(t, call).await.unwrap_or_else(|_| {
                Err(format!("no answer within {}", strata_tsdb::gotext::format_duration(t.as_nanos() as i128)))
            }),
            None => call.await,
        }
    }

    pub async fn get(&self, path_and_query: &str) -> Result<Answer, String> {
        let headers = self.headers(&HeaderMap::new())?;
        self.bounded(async { self.client.get(path_and_query, &headers).await.map_err(|e| e.msg) }).await
    }

    pub async fn post(&self, path_and_query: &str, headers: &HeaderMap, body: Bytes) -> Result<Answer, String> {
        let headers = self.headers(headers)?;
        self.bounded(async { self.client.post(path_and_query, &headers, body).await.map_err(|e| e.msg) }).await
    }
}

/// The peers of one flag or config, as last found.
pub struct Peers {
    /// The flag or config file, for logs and errors.
    name: String,
    sources: Mutex<Vec<Source>>,
    resolver: Resolver,
    /// What each DNS name gave at its last lookup.
    names: Mutex<HashMap<EndpointSpec, Vec<String>>>,
    current: RwLock<Vec<Arc<Peer>>>,
}

fn bad(flag: &str, value: &str, message: impl std::fmt::Display) -> Error {
    Error::Peer { flag: flag.to_owned(), value: value.to_owned(), message: message.to_string() }
}

/// The sources of the values of `flag`, one each (see [`flag_source`]).
pub fn flag_sources(
    flag: &str,
    values: &[String],
    default_port: Option<u16>,
    access: &Access,
) -> Result<Vec<SourceSpec>, Error> {
    values.iter().map(|v| flag_source(flag, v, default_port, access)).collect()
}

/// A `--query` / `--alertmanagers.url` value as a source: `[dns+|dnssrv+][http://]host[:port][/prefix]`;
/// an address without port gets `default_port` (Alertmanager's 9093) where there is one.
fn flag_source(flag: &str, value: &str, default_port: Option<u16>, access: &Access) -> Result<SourceSpec, Error> {
    let (prefix, rest) = ["dnssrvnoa+", "dnssrv+", "dns+"]
        .iter()
        .find_map(|p| value.strip_prefix(p).map(|r| (*p, r)))
        .unwrap_or(("", value));
    let (scheme, rest) = match rest.split_once("://") {
        Some((s, r)) => (s.to_owned(), r),
        None => ("http".to_owned(), rest),
    };
    if scheme != "http" && scheme != "https" {
        return Err(bad(flag, value, "the scheme must be http or https"));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(bad(flag, value, "no host"));
    }
    let has_port = host.rsplit_once(':').is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
    let host = match (has_port, default_port, prefix.starts_with("dnssrv")) {
        (false, Some(port), false) => format!("{host}:{port}"),
        (false, None, false) => return Err(bad(flag, value, "no port (write host:port)")),
        _ => host.to_owned(),
    };
    Ok(SourceSpec {
        scheme,
        path_prefix: path.to_owned(),
        targets: vec![format!("{prefix}{host}")],
        sd_files: Vec::new(),
        access: access.clone(),
    })
}

impl Peers {
    /// Reads `values` of `flag`, each asked as `access` says. Static values are usable at once,
    /// names after [`refresh`](Peers::refresh).
    pub fn parse(flag: &str, values: &[String], default_port: Option<u16>, access: &Access) -> Result<Peers, Error> {
        Peers::new(flag, flag_sources(flag, values, default_port, access)?)
    }

    /// The peers of `sources`, named `name` (a flag or a config file) in logs and errors.
    pub fn new(name: &str, sources: Vec<SourceSpec>) -> Result<Peers, Error> {
        let mut built = Vec::with_capacity(sources.len());
        for s in sources {
            let specs = s
                .targets
                .iter()
                .map(|t| EndpointSpec::parse(t).map_err(|e| bad(name, t, e)))
                .collect::<Result<Vec<_>, _>>()?;
            let sd = s
                .sd_files
                .into_iter()
                .map(|(pattern, refresh)| SdGlob { pattern, refresh, files: BTreeMap::new() })
                .collect();
            let tls = (s.scheme == "https" || s.access.tls != TlsConfig::default())
                .then(|| Tls::new(&s.access.tls).map_err(|e| bad(name, "tls_config", e)))
                .transpose()?;
            built.push(Source { scheme: s.scheme, path: s.path_prefix, specs, sd, access: Arc::new(s.access), tls });
        }
        let peers = Peers {
            name: name.to_owned(),
            sources: Mutex::new(built),
            resolver: Resolver::default(),
            names: Mutex::new(HashMap::new()),
            current: RwLock::new(Vec::new()),
        };
        let statics: Vec<(usize, String)> = peers
            .sources
            .lock()
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.specs.iter().filter_map(move |spec| match spec {
                    EndpointSpec::Static(a) => Some((i, format!("{}://{a}{}", s.scheme, s.path))),
                    _ => None,
                })
            })
            .collect();
        let clients = peers.clients(statics)?;
        *peers.current.write() = clients;
        Ok(peers)
    }

    fn clients(&self, urls: Vec<(usize, String)>) -> Result<Vec<Arc<Peer>>, Error> {
        let old = self.current.read().clone();
        let sources = self.sources.lock();
        let mut out = Vec::with_capacity(urls.len());
        for (source, url) in urls {
            // Keep the client (and its connections) of an address still found.
            match old.iter().find(|p| p.source == source && p.url() == url) {
                Some(p) => out.push(Arc::clone(p)),
                None => {
                    let Some(s) = sources.get(source) else { continue };
                    let client = Downstream::new(
                        &self.name,
                        &url,
                        ATTEMPTS,
                        DEFAULT_MAX_ANSWER_BYTES,
                        &Transport {
                            proxy: s.access.proxy.clone(),
                            ..Transport::with_dial_timeout(s.access.dial_timeout)
                        },
                        s.tls.as_ref(),
                    )
                    .map_err(|e| bad(&self.name, &url, e))?;
                    out.push(Arc::new(Peer { client, access: Arc::clone(&s.access), source }));
                }
            }
        }
        Ok(out)
    }

    /// Whether anything can change: DNS names or SD files.
    pub fn is_dynamic(&self) -> bool {
        self.sources
            .lock()
            .iter()
            .any(|s| !s.sd.is_empty() || s.specs.iter().any(|t| !matches!(t, EndpointSpec::Static(_))))
    }

    /// Whether an SD file changed or is due for its periodic read.
    pub fn sd_due(&self) -> bool {
        let mut sources = self.sources.lock();
        sources.iter_mut().flat_map(|s| s.sd.iter_mut()).any(|g| {
            g.expand();
            g.due()
        })
    }

    /// Reads changed and due SD files; looks names up again when `lookup` (or when a name
    /// was never looked up). A lookup that fails keeps the name's last addresses (logged).
    pub async fn refresh(&self, lookup: bool) {
        let mut targets: Vec<(usize, EndpointSpec)> = Vec::new();
        {
            let mut sources = self.sources.lock();
            for (i, s) in sources.iter_mut().enumerate() {
                targets.extend(s.specs.iter().map(|t| (i, t.clone())));
                for g in &mut s.sd {
                    g.expand();
                    for f in g.files.values_mut() {
                        if f.due(g.refresh) {
                            f.reload();
                        }
                        for t in f.targets() {
                            match EndpointSpec::parse(t) {
                                Ok(spec) => targets.push((i, spec)),
                                Err(e) => {
                                    tracing::warn!(peers = %self.name, file = %f.path().display(), error = %e, "SD target left out")
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut urls = Vec::new();
        for (i, spec) in targets {
            let addresses = match &spec {
                EndpointSpec::Static(a) => vec![a.clone()],
                _ => {
                    let known = self.names.lock().get(&spec).cloned();
                    match known {
                        Some(a) if !lookup => a,
                        _ => match self.resolver.resolve(&spec).await {
                            Ok(a) => {
                                self.names.lock().insert(spec.clone(), a.clone());
                                a
                            }
                            Err(e) => {
                                tracing::warn!(peers = %self.name, target = %spec, error = %e, "DNS lookup failed");
                                known.unwrap_or_default()
                            }
                        },
                    }
                }
            };
            let sources = self.sources.lock();
            let Some(s) = sources.get(i) else { continue };
            urls.extend(addresses.into_iter().map(|a| (i, format!("{}://{a}{}", s.scheme, s.path))));
        }
        let mut seen = std::collections::BTreeSet::new();
        urls.retain(|u| seen.insert(u.clone()));
        match self.clients(urls) {
            Ok(c) => *self.current.write() = c,
            Err(e) => tracing::warn!(error = %e, "discovered address unusable"),
        }
    }

    /// The peers as last found.
    pub fn current(&self) -> Vec<Arc<Peer>> {
        self.current.read().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn urls(p: &Peers) -> Vec<String> {
        p.current().iter().map(|d| d.url().to_owned()).collect()
    }

    #[test]
    fn static_values_and_defaults() {
        let a = Access::default();
        let p = Peers::parse("--query", &["q:10902".into(), "http://r:9090/prefix/".into()], None, &a).unwrap();
        assert_eq!(urls(&p), ["http://q:10902", "http://r:9090/prefix"]);
        assert!(!p.is_dynamic());
        let p = Peers::parse("--alertmanagers.url", &["http://am".into()], Some(9093), &a).unwrap();
        assert_eq!(urls(&p), ["http://am:9093"]);
        let p = Peers::parse("--query", &["https://q:443".into()], None, &a).unwrap();
        assert_eq!(urls(&p), ["https://q:443"]);
        for bad in ["ftp://x:1", "http://", "dns+http://", "q", "dnssrv+"] {
            assert!(Peers::parse("--query", &[bad.into()], None, &a).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn dns_names_resolve_on_refresh() {
        let p = Peers::parse("--alertmanagers.url", &["dns+http://localhost:9093/am".into()], None, &Access::default())
            .unwrap();
        assert!(p.is_dynamic() && p.current().is_empty());
        p.refresh(true).await;
        let found = urls(&p);
        assert!(found.contains(&"http://127.0.0.1:9093/am".to_owned()), "{found:?}");
    }

    #[tokio::test]
    async fn sd_files_are_read_again_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.yml");
        std::fs::write(&file, "- targets: ['a:1', 'b:2']\n").unwrap();
        let source = SourceSpec {
            scheme: "http".into(),
            path_prefix: "/p".into(),
            targets: vec!["s:3".into()],
            sd_files: vec![(dir.path().join("*.yml"), Duration::from_secs(300))],
            access: Access::default(),
        };
        let p = Peers::new("q.yml", vec![source]).unwrap();
        assert_eq!(urls(&p), ["http://s:3/p"]);
        assert!(p.is_dynamic() && p.sd_due());
        p.refresh(false).await;
        assert_eq!(urls(&p), ["http://s:3/p", "http://a:1/p", "http://b:2/p"]);
        assert!(!p.sd_due());
        // A different length is a change even within the same second.
        std::fs::write(&file, "- targets: ['c:33']\n").unwrap();
        assert!(p.sd_due());
        p.refresh(false).await;
        assert_eq!(urls(&p), ["http://s:3/p", "http://c:33/p"]);
        // A broken file keeps its last targets; a second file adds its own.
        std::fs::write(&file, "- targets: [").unwrap();
        std::fs::write(dir.path().join("r.yml"), "- targets: ['d:4']\n").unwrap();
        p.refresh(false).await;
        assert_eq!(urls(&p), ["http://s:3/p", "http://c:33/p", "http://d:4/p"]);
    }

    #[test]
    fn credentials_become_headers() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0k\n").unwrap();
        let access = Access { bearer_token: Some(Secret::File(token.clone())), ..Access::default() };
        let p = Peers::parse("--query", &["q:1".into()], None, &access).unwrap();
        let h = p.current()[0].headers(&HeaderMap::new()).unwrap();
        assert_eq!(h[header::AUTHORIZATION], "Bearer t0k");
        let access = Access { basic_auth: Some(("u".into(), Secret::Inline("p".into()))), ..Access::default() };
        let p = Peers::parse("--query", &["q:1".into()], None, &access).unwrap();
        let h = p.current()[0].headers(&HeaderMap::new()).unwrap();
        assert_eq!(h[header::AUTHORIZATION], "Basic dTpw");
        let access = Access { bearer_token: Some(Secret::Inline("a\nb".into())), ..Access::default() };
        let p = Peers::parse("--query", &["q:1".into()], None, &access).unwrap();
        assert!(p.current()[0].headers(&HeaderMap::new()).is_err());
        std::fs::remove_file(&token).unwrap();
        let access = Access { bearer_token: Some(Secret::File(token)), ..Access::default() };
        let p = Peers::parse("--query", &["q:1".into()], None, &access).unwrap();
        assert!(p.current()[0].headers(&HeaderMap::new()).unwrap_err().contains("token"));
    }
}
