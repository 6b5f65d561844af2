//! The operator inbox: one page at `/` that lists every voice note with its transcript, a
//! player for the original and its status, takes uploads, and searches. Plain HTML, CSS and JS
//! compiled into the binary (no build step, no CDN, works offline). The page is a client of
//! the public `/v1` API and nothing else; it holds no data itself, so it is served without a
//! key, under a strict Content-Security-Policy (no inline script, same origin only).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("index.html");
const INBOX_JS: &str = include_str!("inbox.js");
const INBOX_CSS: &str = include_str!("inbox.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// `/`, `/inbox.js` and `/inbox.css`, for a router of any state (the page needs none).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/inbox.js",
            get(|| async { asset("text/javascript; charset=utf-8", INBOX_JS) }),
        )
        .route(
            "/inbox.css",
            get(|| async { asset("text/css; charset=utf-8", INBOX_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
