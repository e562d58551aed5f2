//! An HTTP API the process talks to: the frontend's downstream query API
//! (`--query-frontend.downstream-url`: requests passed through as they came, and the
//! frontend's own requests for pieces), the ruler's query APIs (`--query`) and Alertmanagers.
//! Requests are retried on connection errors and 5xx answers; answers are read into memory up
//! to a bound. `https://` URLs are reached over TLS ([`Tls`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::uri::{Authority, Scheme};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::proxy::{Proxy, ProxyConnector};
use super::tls::{Tls, TlsConfig};
use crate::api::error::ApiError;

/// Largest answer of the downstream to one piece that is read (answers passed through are
/// streamed and not bounded).
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 1 << 30;

/// How the client's connections behave: Thanos's downstream `http.Transport` settings that
/// hyper has (`--query-frontend.downstream-tripper-config`, [`super::tripper`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport {
    /// Longest wait for a TCP connection.
    pub dial_timeout: Duration,
    /// Longest TLS handshake: a connection (TCP and TLS) gets at most `dial_timeout` plus this.
    pub tls_handshake_timeout: Duration,
    /// An idle pooled connection is closed after this.
    pub idle_conn_timeout: Duration,
    /// Longest wait for an answer's headers once a request is sent; none: no limit.
    pub response_header_timeout: Option<Duration>,
    /// Idle connections kept in the pool; none: no limit.
    pub max_idle_conns: Option<usize>,
    /// Requests (so HTTP/1.1 connections) in flight at once; more wait; none: no limit.
    pub max_conns: Option<usize>,
    /// The HTTP proxy requests go through (`http_config`'s `proxy_url`, `no_proxy`,
    /// `proxy_from_environment`); the default: none.
    pub proxy: Proxy,
}

impl Transport {
    /// Thanos's downstream transport defaults, with `dial_timeout`.
    pub fn with_dial_timeout(dial_timeout: Duration) -> Transport {
        Transport {
            dial_timeout,
            tls_handshake_timeout: Duration::from_secs(10),
            idle_conn_timeout: Duration::from_secs(90),
            response_header_timeout: None,
            max_idle_conns: None,
            max_conns: None,
            proxy: Proxy::default(),
        }
    }
}

/// A connector whose connections (TCP and TLS) fail after `timeout`.
#[derive(Clone)]
struct TimeoutConnector<C> {
    inner: C,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower::Service<Uri> for TimeoutConnector<C>
where
    C: tower::Service<Uri> + Send,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (connecting, timeout) = (self.inner.call(uri), self.timeout);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(format!(
                    "connecting (TCP and TLS handshake) took longer than {timeout:?} (dial timeout plus tls_handshake_timeout)"
                )
                .into()),
            }
        })
    }
}

/// An answer's body holding its request's slot of `max_conns` until it is read or dropped.
struct PermittedBody {
    body: hyper::body::Incoming,
    _permit: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for PermittedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

pub struct Downstream {
    client: Client<TimeoutConnector<HttpsConnector<ProxyConnector>>, Body>,
    /// `max_conns` slots.
    slots: Option<Arc<Semaphore>>,
    response_header_timeout: Option<Duration>,
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without its trailing slash, put before every request's path.
    prefix: String,
    url: String,
    attempts: usize,
    max_answer_bytes: usize,
    /// The connector's proxies, for the credentials of requests a proxy reads.
    proxy: Proxy,
}

/// A complete answer of the downstream.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The answer as it came, for the client.
    pub fn into_response(self) -> Response {
        let mut r = Response::new(Body::from(self.body));
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers;
        strip_hop_by_hop(r.headers_mut());
        r
    }

    /// Whether the downstream forbids storing the answer (`Cache-Control: no-store`).
    pub fn no_store(&self) -> bool {
        self.headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-store")))
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

impl Downstream {
    /// A client of the API at `url` (`http[s]://host:port[/prefix]`), given by the flag `flag`
    /// (named in errors); `attempts` is how often a request is tried (at least once);
    /// connections as `transport` says. An `https://` URL is reached with `tls`, or without it
    /// with the system's CA certificates.
    pub fn new(
        flag: &str,
        url: &str,
        attempts: usize,
        max_answer_bytes: usize,
        transport: &Transport,
        tls: Option<&Tls>,
    ) -> Result<Downstream, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{flag} {url:?}: {e}"))?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!("{flag} {url:?}: the scheme must be http or https"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{flag} {url:?}: no host:port (write http://host:port or https://host:port)"))?;
        let tls = match tls {
            Some(tls) => tls.clone(),
            // Without a config only https needs the system's certificates; http never uses them.
            None if scheme == Scheme::HTTPS => {
                Tls::new(&TlsConfig::default()).map_err(|e| format!("{flag} {url:?}: {e}"))?
            }
            None => Tls::trusting_nobody().map_err(|e| format!("{flag} {url:?}: {e}"))?,
        };
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(transport.dial_timeout));
        // Lets https URLs through to the TLS layer; http ones get no TLS.
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new().with_tls_config((*tls.config).clone()).https_or_http();
        let connector = match tls.server_name {
            Some(name) => connector.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => connector,
        };
        let connector = TimeoutConnector {
            inner: connector.enable_http1().wrap_connector(ProxyConnector { http, proxy: transport.proxy.clone() }),
            timeout: transport.dial_timeout.saturating_add(transport.tls_handshake_timeout),
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(transport.idle_conn_timeout);
        if let Some(n) = transport.max_idle_conns {
            builder.pool_max_idle_per_host(n);
        }
        let client = builder.build(connector);
        Ok(Downstream {
            client,
            slots: transport.max_conns.map(|n| Arc::new(Semaphore::new(n.max(1)))),
            response_header_timeout: transport.response_header_timeout,
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            url: url.trim_end_matches('/').to_owned(),
            attempts: attempts.max(1),
            max_answer_bytes,
            proxy: transport.proxy.clone(),
        })
    }

    /// Sends `req` once `max_conns` allows; the answer's headers, within
    /// `response_header_timeout`, and its body holding the slot.
    async fn send(&self, mut req: Request) -> Result<axum::http::Response<PermittedBody>, String> {
        // Through a proxy an https request is tunnelled (its CONNECT carries the credentials);
        // an http one is read by the proxy itself, so it carries them.
        if req.uri().scheme() != Some(&Scheme::HTTPS) {
            if let Some(value) = self.proxy.for_uri(req.uri()).and_then(|p| p.authorization.clone()) {
                req.headers_mut().insert(header::PROXY_AUTHORIZATION, value);
            }
        }
        let permit = match &self.slots {
            Some(slots) => Some(Arc::clone(slots).acquire_owned().await.map_err(|e| e.to_string())?),
            None => None,
        };
        let sending = self.client.request(req);
        let resp = match self.response_header_timeout {
            Some(limit) => tokio::time::timeout(limit, sending)
                .await
                .map_err(|_| format!("no answer headers within {limit:?} (response_header_timeout)"))?,
            None => sending.await,
        };
        let resp = resp.map_err(|e| with_causes(&e))?;
        Ok(resp.map(|body| PermittedBody { body, _permit: permit }))
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri, ApiError> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path_and_query}", self.prefix))
            .build()
            .map_err(|e| ApiError::bad_data(format!("cannot forward {path_and_query:?}: {e}")))
    }

    /// Sends `req` to the downstream as it is (method, headers, body) and gives its answer
    /// back as it is, streamed both ways.
    pub async fn forward(&self, req: Request) -> Response {
        let (mut parts, body) = req.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        parts.uri = match self.uri(&target) {
            Ok(u) => u,
            Err(e) => return e.into_response(),
        };
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::HOST);
        match self.send(Request::from_parts(parts, body)).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Body::new(body))
            }
            Err(e) => self.unreachable(&target, &e).into_response(),
        }
    }

    fn unreachable(&self, target: &str, e: &dyn std::fmt::Display) -> ApiError {
        ApiError::internal(format!("downstream {} did not answer {target}: {e}", self.url))
    }

    /// The URL requests go to, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET path_and_query` with `headers`, tried again on connection errors and 5xx answers;
    /// the last answer (of any status), or an error once every attempt failed to connect or
    /// the answer is larger than allowed.
    pub async fn get(&self, path_and_query: &str, headers: &HeaderMap) -> Result<Answer, ApiError> {
        self.request(Method::GET, path_and_query, headers, Bytes::new()).await
    }

    /// `POST path_and_query` with `headers` and `body`, retried as [`Downstream::get`].
    pub async fn post(&self, path_and_query: &str, headers: &HeaderMap, body: Bytes) -> Result<Answer, ApiError> {
        self.request(Method::POST, path_and_query, headers, body).await
    }

    async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer, ApiError> {
        let uri = self.uri(path_and_query)?;
        let mut last_error = String::new();
        for attempt in 1..=self.attempts {
            let mut req = Request::new(Body::from(body.clone()));
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers.clone();
            match self.send(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = match Limited::new(body, self.max_answer_bytes).collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(e) => {
                            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                                return Err(ApiError::internal(format!(
                                    "downstream {} answered {path_and_query} with more than {} bytes; ask for a shorter range or a larger step",
                                    self.url, self.max_answer_bytes
                                )));
                            }
                            last_error = format!("reading the answer: {e}");
                            continue;
                        }
                    };
                    let answer = Answer { status: parts.status, headers: parts.headers, body };
                    if answer.status.is_server_error() && attempt < self.attempts {
                        tracing::debug!(status = %answer.status, attempt, path = path_and_query, "downstream failed; retrying");
                        continue;
                    }
                    return Ok(answer);
                }
                Err(e) => {
                    last_error = e;
                    tracing::debug!(error = %last_error, attempt, path = path_and_query, "downstream unreachable; retrying");
                }
            }
        }
        Err(self.unreachable(path_and_query, &format!("{last_error} ({} attempts)", self.attempts)))
    }
}

/// `e` and what caused it: the client's own message names only the stage that failed
/// ("client error (Connect)"), its causes say why (refused, a certificate not trusted).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The headers of a client's request worth passing on with the frontend's own requests for
/// its pieces: all but those about the connection and the request body.
pub fn piece_headers(original: &HeaderMap) -> HeaderMap {
    let mut h = original.clone();
    strip_hop_by_hop(&mut h);
    let drop: [HeaderName; 4] = [header::HOST, header::CONTENT_LENGTH, header::CONTENT_TYPE, header::ACCEPT_ENCODING];
    for name in drop {
        h.remove(name);
    }
    h
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server that reads each request and answers it after `delay` (never, for `None`),
    /// counting the requests it holds at once.
    async fn slow_server(delay: Option<Duration>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let seen = Arc::clone(&most);
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let (now, most) = (Arc::clone(&now), Arc::clone(&most));
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let held = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(held, Ordering::SeqCst);
                    match delay {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending::<()>().await,
                    }
                    now.fetch_sub(1, Ordering::SeqCst);
                    let _ =
                        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn response_header_timeout_bounds_the_wait() {
        let (addr, _) = slow_server(None).await;
        let transport = Transport {
            response_header_timeout: Some(Duration::from_millis(200)),
            ..Transport::with_dial_timeout(Duration::from_secs(1))
        };
        let d = Downstream::new("--url", &format!("http://{addr}"), 1, 1 << 20, &transport, None).unwrap();
        let err = d.get("/api/v1/query", &HeaderMap::new()).await.err().unwrap();
        assert!(format!("{err:?}").contains("response_header_timeout"), "{err:?}");
    }

    #[tokio::test]
    async fn max_conns_bounds_the_requests_in_flight() {
        let (addr, most) = slow_server(Some(Duration::from_millis(100))).await;
        let transport = Transport { max_conns: Some(2), ..Transport::with_dial_timeout(Duration::from_secs(1)) };
        let d = Arc::new(Downstream::new("--url", &format!("http://{addr}"), 1, 1 << 20, &transport, None).unwrap());
        let asks = (0..6).map(|_| {
            let d = Arc::clone(&d);
            tokio::spawn(async move { d.get("/", &HeaderMap::new()).await.map(|a| a.status) })
        });
        for ask in futures::future::join_all(asks).await {
            assert_eq!(ask.unwrap().unwrap(), StatusCode::OK);
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "at most max_conns requests at once");
    }
}
