//! HTTP proxies for the [`Downstream`](super::downstream::Downstream) clients: Prometheus's
//! `http_config` `proxy_url`, `no_proxy` and `proxy_from_environment` (prometheus/common's
//! `ProxyConfig`, with Go's `httpproxy` rules). An `http://` target is asked through the proxy
//! with the absolute URL as request target; an `https://` target through a `CONNECT` tunnel,
//! TLS inside it. Credentials in the proxy URL (`http://user:password@proxy:3128`) are sent as
//! Go sends them: `Proxy-Authorization: Basic ...` on each request to an `http://` target and on
//! the `CONNECT`. Only `http://` proxies are supported; `https://` and `socks5://` proxies are
//! refused when the configuration is read.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::uri::{Authority, Scheme};
use axum::http::{HeaderValue, Uri};
use base64::Engine as _;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest answer head of a proxy to `CONNECT`.
const MAX_CONNECT_ANSWER: usize = 16 << 10;

/// Which requests go through which proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proxy {
    /// The proxy of `http://` targets.
    http: Option<ProxyServer>,
    /// The proxy of `https://` targets.
    https: Option<ProxyServer>,
    /// `None`: every target (Go's `http.ProxyURL`); else Go's `httpproxy` rules: never
    /// localhost or a loopback address, nor a host the list names.
    no_proxy: Option<NoProxy>,
}

/// One proxy: where it listens and the credentials it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyServer {
    pub authority: Authority,
    /// `Basic <base64 of user:password>`, marked sensitive so that it is never printed.
    pub authorization: Option<HeaderValue>,
}

impl Proxy {
    /// `proxy_url` with `no_proxy` (empty: none), as prometheus/common builds them.
    pub fn from_url(proxy_url: &str, no_proxy: &str) -> Result<Proxy, String> {
        let server = proxy_server("proxy_url", proxy_url)?;
        Ok(Proxy {
            http: Some(server.clone()),
            https: Some(server),
            no_proxy: (!no_proxy.is_empty()).then(|| NoProxy::parse(no_proxy)),
        })
    }

    /// `proxy_from_environment`: `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` (or their lower-case
    /// forms), read now, as Go's `httpproxy.FromEnvironment`.
    pub fn from_environment() -> Result<Proxy, String> {
        let var = |upper: &str, lower: &str| {
            std::env::var(upper).ok().filter(|v| !v.is_empty()).or_else(|| std::env::var(lower).ok())
        };
        let proxy = |name: &str, value: Option<String>| match value.filter(|v| !v.is_empty()) {
            Some(v) => proxy_server(name, &v).map(Some),
            None => Ok(None),
        };
        Ok(Proxy {
            http: proxy("HTTP_PROXY", var("HTTP_PROXY", "http_proxy"))?,
            https: proxy("HTTPS_PROXY", var("HTTPS_PROXY", "https_proxy"))?,
            no_proxy: Some(NoProxy::parse(&var("NO_PROXY", "no_proxy").unwrap_or_default())),
        })
    }

    /// The proxy a request to `uri` goes through, if any.
    pub fn for_uri(&self, uri: &Uri) -> Option<&ProxyServer> {
        let proxy = if uri.scheme() == Some(&Scheme::HTTPS) { self.https.as_ref() } else { self.http.as_ref() }?;
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(if uri.scheme() == Some(&Scheme::HTTPS) { 443 } else { 80 });
        match &self.no_proxy {
            Some(rules) if !rules.use_proxy(host, port) => None,
            _ => Some(proxy),
        }
    }
}

/// A proxy URL's `host:port` (port 80 when none) and credentials: `http://` only (no scheme is
/// `http://`, as Go reads it). User and password are percent-decoded, as Go's `url.Parse` does.
fn proxy_server(name: &str, url: &str) -> Result<ProxyServer, String> {
    let full = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
    // Not echoed in errors past this point: the URL may hold a password.
    let shown = redact_password(&full);
    let uri: Uri = full.parse().map_err(|e| format!("{name} {shown:?}: not a URL: {e}"))?;
    if uri.scheme() != Some(&Scheme::HTTP) {
        return Err(format!("{name} {shown:?}: only http:// proxies are supported"));
    }
    let authority = uri.authority().ok_or_else(|| format!("{name} {shown:?}: no host"))?;
    let (userinfo, host_port) = match authority.as_str().rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority.as_str()),
    };
    let authority: Authority = host_port.parse().map_err(|e| format!("{name} {shown:?}: {e}"))?;
    if authority.host().is_empty() {
        return Err(format!("{name} {shown:?}: no host"));
    }
    let authority = match authority.port_u16() {
        Some(_) => authority,
        None => format!("{}:80", authority.as_str()).parse().map_err(|e| format!("{name} {shown:?}: {e}"))?,
    };
    let authorization = match userinfo {
        None => None,
        Some(userinfo) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let decode = |part: &str, what: &str| {
                percent_encoding::percent_decode_str(part)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| format!("{name} {shown:?}: the {what} is not UTF-8 once decoded"))
            };
            let credentials = format!("{}:{}", decode(user, "user")?, decode(password, "password")?);
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
                .map_err(|e| format!("{name} {shown:?}: credentials: {e}"))?;
            value.set_sensitive(true);
            Some(value)
        }
    };
    Ok(ProxyServer { authority, authorization })
}

/// `url` with the password of its user info replaced by `xxxxx`, as Go's `URL.Redacted` shows it.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:xxxxx@{host}{}", &rest[end..])
        }
        _ => url.to_owned(),
    }
}

/// Go's `httpproxy` `NO_PROXY` rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct NoProxy {
    all: bool,
    /// Networks (address, prefix length).
    cidrs: Vec<(IpAddr, u8)>,
    ips: Vec<(IpAddr, Option<u16>)>,
    /// Domains as `.example.com`, and whether `example.com` itself matches.
    domains: Vec<(String, Option<u16>, bool)>,
}

impl NoProxy {
    fn parse(list: &str) -> NoProxy {
        let mut rules = NoProxy::default();
        for entry in list.split(',') {
            let entry = entry.trim().to_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                rules.all = true;
                return rules;
            }
            if let Some((ip, bits)) = entry.split_once('/') {
                if let (Ok(ip), Ok(bits)) = (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
                    rules.cidrs.push((ip, bits));
                    continue;
                }
            }
            let (host, port) = split_host_port(&entry);
            if let Ok(ip) = host.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
                rules.ips.push((ip, port));
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(host);
            let (host, exact) = match host.strip_prefix('.') {
                Some(_) => (host.to_owned(), false),
                None => (format!(".{host}"), true),
            };
            rules.domains.push((host, port, exact));
        }
        rules
    }

    fn use_proxy(&self, host: &str, port: u16) -> bool {
        let host = host.trim_matches(|c| c == '[' || c == ']').to_lowercase();
        if host == "localhost" {
            return false;
        }
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) || self.all {
            return false;
        }
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
        if let Some(ip) = ip {
            if self.cidrs.iter().any(|&(net, bits)| in_network(ip, net, bits))
                || self.ips.iter().any(|(i, p)| *i == ip && port_ok(p))
            {
                return false;
            }
        }
        !self
            .domains
            .iter()
            .any(|(d, p, exact)| (host.ends_with(d.as_str()) || (*exact && host == d[1..])) && port_ok(p))
    }
}

/// `host[:port]` of a no_proxy entry.
fn split_host_port(entry: &str) -> (&str, Option<u16>) {
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// A TCP connection to the target, or to the proxy in front of it (then marked so, and HTTP/1
/// requests carry the absolute URL), or a `CONNECT` tunnel through the proxy.
pub struct ProxyStream {
    io: TokioIo<TcpStream>,
    via_proxy: bool,
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.via_proxy)
    }
}

impl Read for ProxyStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for ProxyStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Connects to targets directly or through [`Proxy`].
#[derive(Clone)]
pub struct ProxyConnector {
    pub(crate) http: HttpConnector,
    pub(crate) proxy: Proxy,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, target: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let proxy = self.proxy.for_uri(&target).cloned();
        Box::pin(async move {
            let Some(ProxyServer { authority: proxy, authorization }) = proxy else {
                let io = tower::Service::call(&mut http, target).await?;
                return Ok(ProxyStream { io, via_proxy: false });
            };
            let proxy_uri: Uri = format!("http://{proxy}").parse()?;
            let io = tower::Service::call(&mut http, proxy_uri)
                .await
                .map_err(|e| format!("connecting to proxy {proxy}: {e}"))?;
            if target.scheme() != Some(&Scheme::HTTPS) {
                return Ok(ProxyStream { io, via_proxy: true });
            }
            let host = target.host().unwrap_or_default();
            let port = target.port_u16().unwrap_or(443);
            let tunnel = connect_tunnel(io.into_inner(), &proxy, authorization.as_ref(), host, port).await?;
            Ok(ProxyStream { io: TokioIo::new(tunnel), via_proxy: false })
        })
    }
}

/// Asks `proxy` on `stream` for a tunnel to `host:port` (with `authorization` as its
/// `Proxy-Authorization`); the stream once it answers 200.
async fn connect_tunnel(
    mut stream: TcpStream,
    proxy: &Authority,
    authorization: Option<&HeaderValue>,
    host: &str,
    port: u16,
) -> Result<TcpStream, BoxError> {
    let target = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(value) = authorization {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(value.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so nothing of the tunnelled stream is read here.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_ANSWER {
            return Err(format!("proxy {proxy} answered CONNECT with a head over {MAX_CONNECT_ANSWER} bytes").into());
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(format!("proxy {proxy} closed the connection during CONNECT {target}").into());
        }
        head.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(stream),
        _ => Err(format!("proxy {proxy} refused CONNECT {target}: {status_line}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn proxy_urls_as_go_takes_them() {
        let p = Proxy::from_url("http://proxy.example:3128", "").unwrap();
        let at = |u: &str| p.for_uri(&uri(u)).map(|s| s.authority.as_str().to_owned());
        assert_eq!(at("http://127.0.0.1:9090/x").as_deref(), Some("proxy.example:3128"));
        assert_eq!(at("https://query:443/").as_deref(), Some("proxy.example:3128"));
        assert!(p.http.as_ref().unwrap().authorization.is_none());
        assert_eq!(Proxy::from_url("proxy:8080", "").unwrap().http.unwrap().authority.as_str(), "proxy:8080");
        assert_eq!(Proxy::from_url("http://proxy", "").unwrap().http.unwrap().authority.as_str(), "proxy:80");
        for (bad, want) in [
            ("https://proxy:443", "only http://"),
            ("socks5://proxy:1080", "only http://"),
            ("https://user:secret@proxy:443", "user:xxxxx@proxy"),
            ("http://user:pass%ff@proxy:3128", "not UTF-8"),
            ("http://user:pass@", "user:xxxxx@"),
            ("http://", "proxy_url"),
            ("http://[::1", "not a URL"),
            ("::::", "proxy_url"),
        ] {
            let err = Proxy::from_url(bad, "").unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn credentials_as_go_sends_them() {
        let auth = |url: &str| {
            let server = Proxy::from_url(url, "").unwrap().http.unwrap();
            let value = server.authorization.expect("credentials");
            assert!(value.is_sensitive());
            (server.authority.as_str().to_owned(), value.to_str().unwrap().to_owned())
        };
        // base64("strata:s3cr3t"), base64("user:"), base64("a@b:p:q w").
        assert_eq!(auth("http://strata:s3cr3t@proxy:3128"), ("proxy:3128".into(), "Basic c3RyYXRhOnMzY3IzdA==".into()));
        assert_eq!(auth("http://user@proxy"), ("proxy:80".into(), "Basic dXNlcjo=".into()));
        assert_eq!(auth("http://a%40b:p:q%20w@proxy:1"), ("proxy:1".into(), "Basic YUBiOnA6cSB3".into()));
        let err = Proxy::from_url("socks5://u:hidden@proxy:1080", "").unwrap_err();
        assert!(!err.contains("hidden") && err.contains("u:xxxxx@"), "{err}");
    }

    #[test]
    fn no_proxy_as_go_httpproxy_reads_it() {
        let p =
            Proxy::from_url("http://proxy:3128", "example.com, .internal,10.0.0.0/8, 192.168.1.2:8080, [::2]").unwrap();
        let through = |u: &str| p.for_uri(&uri(u)).is_some();
        for direct in [
            "http://example.com/",
            "http://a.example.com:9090/",
            "http://x.internal/",
            "http://10.1.2.3:9090/",
            "http://192.168.1.2:8080/",
            "http://[::2]:80/",
            // With no_proxy set, loopback and localhost never go through the proxy.
            "http://127.0.0.1:9090/",
            "http://localhost:9090/",
            "http://[::1]:9090/",
        ] {
            assert!(!through(direct), "{direct} went through the proxy");
        }
        for proxied in ["http://notexample.com/", "http://internal/", "http://11.0.0.1/", "http://192.168.1.2:9090/"] {
            assert!(through(proxied), "{proxied} went direct");
        }
        let all = Proxy::from_url("http://proxy:3128", "*").unwrap();
        assert!(all.for_uri(&uri("http://anything:1/")).is_none());
        // Without no_proxy even loopback goes through the proxy (Go's http.ProxyURL).
        let plain = Proxy::from_url("http://proxy:3128", "").unwrap();
        assert!(plain.for_uri(&uri("http://127.0.0.1:9090/")).is_some());
        // Hostile lists parse to something and never panic.
        for hostile in [",,,", "[", "]:", "a:b:c", "/99", "300.1.1.1/8", ":::::", "*.", "."] {
            let p = Proxy::from_url("http://proxy:3128", hostile).unwrap();
            let _ = p.for_uri(&uri("http://example.com:80/"));
        }
    }

    #[tokio::test]
    async fn https_targets_go_through_a_connect_tunnel() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy_task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = conn.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\ntunnelled").await.unwrap();
            head
        });
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let mut c = ProxyConnector { http, proxy: Proxy::from_url(&format!("http://u:p@{addr}"), "").unwrap() };
        let stream = tower::Service::call(&mut c, uri("https://query.example:9443/")).await.unwrap();
        assert!(!stream.connected().is_proxied(), "a tunnel is a direct connection to the target");
        let mut rest = String::new();
        stream.io.into_inner().read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "tunnelled", "nothing of the tunnel read by the CONNECT");
        let head = proxy_task.await.unwrap();
        assert!(head.starts_with("CONNECT query.example:9443 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nProxy-Authorization: Basic dTpw\r\n\r\n"), "{head}");

        // A refusal is an error naming the proxy and its answer.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let _ = conn.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
        });
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let mut c = ProxyConnector { http, proxy: Proxy::from_url(&format!("http://{addr}"), "").unwrap() };
        let err = tower::Service::call(&mut c, uri("https://query.example:9443/")).await.err().unwrap().to_string();
        assert!(err.contains("403") && err.contains(&addr.to_string()), "{err}");
    }
}
