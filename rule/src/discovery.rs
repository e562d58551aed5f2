//! The ruler's HTTP peers (`--query`, `--alertmanagers.url`) as Thanos takes them: a static
//! address or URL, or a `dns+` / `dnssrv+` (`dnssrvnoa+`) name looked up again every refresh,
//! each address found becoming one client with the URL's scheme and path.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use strata_query::frontend::downstream::{Downstream, DEFAULT_MAX_ANSWER_BYTES};
use strata_store::endpoints::{EndpointSpec, Resolver};

use crate::Error;

/// How long a peer may take to accept a connection.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a request is tried (connection errors and 5xx answers).
const ATTEMPTS: usize = 3;

struct Target {
    /// `http` (only http is supported by the client).
    scheme: String,
    spec: EndpointSpec,
    /// The URL's path, put before every request's path.
    path: String,
}

/// The clients of one flag's values, as last resolved.
pub struct Peers {
    flag: &'static str,
    targets: Vec<Target>,
    resolver: Resolver,
    current: RwLock<Vec<Arc<Downstream>>>,
}

fn bad(flag: &str, value: &str, message: impl std::fmt::Display) -> Error {
    Error::Peer { flag: flag.to_owned(), value: value.to_owned(), message: message.to_string() }
}

impl Peers {
    /// Reads `values` of `flag`; an address without port gets `default_port` (Alertmanager's
    /// 9093) where there is one. Static values are usable at once, names after [`refresh`].
    ///
    /// [`refresh`]: Peers::refresh
    pub fn parse(flag: &'static str, values: &[String], default_port: Option<u16>) -> Result<Peers, Error> {
        let mut targets = Vec::with_capacity(values.len());
        for value in values {
            let (prefix, rest) = ["dnssrvnoa+", "dnssrv+", "dns+"]
                .iter()
                .find_map(|p| value.strip_prefix(p).map(|r| (*p, r)))
                .unwrap_or(("", value.as_str()));
            let (scheme, rest) = match rest.split_once("://") {
                Some((s, r)) => (s.to_owned(), r),
                None => ("http".to_owned(), rest),
            };
            if scheme != "http" {
                return Err(bad(flag, value, "only http is supported"));
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
            let spec = EndpointSpec::parse(&format!("{prefix}{host}")).map_err(|e| bad(flag, value, e))?;
            targets.push(Target { scheme, spec, path: path.to_owned() });
        }
        let peers = Peers { flag, targets, resolver: Resolver::default(), current: RwLock::new(Vec::new()) };
        let statics: Vec<String> = peers
            .targets
            .iter()
            .filter_map(|t| match &t.spec {
                EndpointSpec::Static(a) => Some(format!("{}://{a}{}", t.scheme, t.path)),
                _ => None,
            })
            .collect();
        *peers.current.write() = peers.clients(statics)?;
        Ok(peers)
    }

    fn clients(&self, urls: Vec<String>) -> Result<Vec<Arc<Downstream>>, Error> {
        let old = self.current.read().clone();
        let mut out = Vec::with_capacity(urls.len());
        for url in urls {
            // Keep the client (and its connections) of an address still found.
            match old.iter().find(|d| d.url() == url) {
                Some(d) => out.push(Arc::clone(d)),
                None => out.push(Arc::new(
                    Downstream::new(self.flag, &url, ATTEMPTS, DEFAULT_MAX_ANSWER_BYTES, DIAL_TIMEOUT)
                        .map_err(|e| bad(self.flag, &url, e))?,
                )),
            }
        }
        Ok(out)
    }

    /// Looks every name up again; a name whose lookup fails keeps no addresses until the next
    /// refresh (logged).
    pub async fn refresh(&self) {
        let mut urls = Vec::new();
        for t in &self.targets {
            match self.resolver.resolve(&t.spec).await {
                Ok(addresses) => urls.extend(addresses.into_iter().map(|a| format!("{}://{a}{}", t.scheme, t.path))),
                Err(e) => tracing::warn!(flag = self.flag, target = %t.spec, error = %e, "DNS lookup failed"),
            }
        }
        urls.dedup();
        match self.clients(urls) {
            Ok(c) => *self.current.write() = c,
            Err(e) => tracing::warn!(error = %e, "discovered address unusable"),
        }
    }

    /// Whether any value is a DNS name that needs refreshing.
    pub fn has_names(&self) -> bool {
        self.targets.iter().any(|t| !matches!(t.spec, EndpointSpec::Static(_)))
    }

    /// The clients as last resolved.
    pub fn current(&self) -> Vec<Arc<Downstream>> {
        self.current.read().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(p: &Peers) -> Vec<String> {
        p.current().iter().map(|d| d.url().to_owned()).collect()
    }

    #[test]
    fn static_values_and_defaults() {
        let p = Peers::parse("--query", &["q:10902".into(), "http://r:9090/prefix/".into()], None).unwrap();
        assert_eq!(urls(&p), ["http://q:10902", "http://r:9090/prefix"]);
        let p = Peers::parse("--alertmanagers.url", &["http://am".into()], Some(9093)).unwrap();
        assert_eq!(urls(&p), ["http://am:9093"]);
        for bad in ["https://x:1", "http://", "dns+http://", "q", "dnssrv+"] {
            assert!(Peers::parse("--query", &[bad.into()], None).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn dns_names_resolve_on_refresh() {
        let p = Peers::parse("--alertmanagers.url", &["dns+http://localhost:9093/am".into()], None).unwrap();
        assert!(p.has_names() && p.current().is_empty());
        p.refresh().await;
        let found = urls(&p);
        assert!(found.contains(&"http://127.0.0.1:9093/am".to_owned()), "{found:?}");
    }
}
