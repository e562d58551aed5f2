//! The query page: an expression box, a table of the instant result and a graph of the range
//! result, drawn as SVG in the browser; and the Stores page (a querier's StoreAPI endpoints from
//! `/api/v1/stores`). Everything is embedded; the pages load nothing from other hosts.

use axum::http::header;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("index.html");
const QUERY_JS: &str = include_str!("query.js");
const STORES_HTML: &str = include_str!("stores.html");
const STORES_JS: &str = include_str!("stores.js");

/// `/` and `/graph` (Prometheus's path for the same page) serve the query page, `/stores` the
/// Stores page; their scripts are under `/static/`.
pub fn router() -> Router {
    let page = |html: &'static str| {
        get(move || std::future::ready(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html)))
    };
    let script = |js: &'static str| {
        get(move || std::future::ready(([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], js)))
    };
    Router::new()
        .route("/", page(INDEX_HTML))
        .route("/graph", page(INDEX_HTML))
        .route("/stores", page(STORES_HTML))
        .route("/static/query.js", script(QUERY_JS))
        .route("/static/stores.js", script(STORES_JS))
}
