//! The query page: an expression box, a table of the instant result and a graph of the range
//! result, drawn as SVG in the browser. Everything is embedded; the page loads nothing from
//! other hosts.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("index.html");
const QUERY_JS: &str = include_str!("query.js");

/// `/` and `/graph` (Prometheus's path for the same page) serve the page; its script is at
/// `/static/query.js`.
pub fn router() -> Router {
    Router::new().route("/", get(index)).route("/graph", get(index)).route("/static/query.js", get(script))
}

async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML)
}

async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], QUERY_JS)
}
