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
/// The page's script: the table of words first, then the code that uses it.
const INBOX_JS: &str = concat!(
    "\"use strict\";\nconst STRINGS = ",
    include_str!("strings.json"),
    ";\n",
    include_str!("inbox.js")
);
/// The words of the page and of the Telegram bot's replies, in each language (`en`, `ru`):
/// one table, so that a review reason or an error reads the same in both.
const STRINGS_JSON: &str = include_str!("strings.json");
const INBOX_CSS: &str = include_str!("inbox.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The languages of [`strings`].
pub const LANGUAGES: [&str; 2] = ["en", "ru"];

/// The table of words in `language` (`ru` for a Russian speaker, else `en`; see
/// [`language_for`]).
pub fn strings(language: &str) -> &'static serde_json::Value {
    static TABLE: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        serde_json::from_str(STRINGS_JSON).expect("src/web/strings.json is JSON (a test reads it)")
    });
    &table[language_for(language)]
}

/// The table's language for a language code (`ru`, `ru-RU`, `en-US`, a Telegram user's
/// `language_code`): Russian for Russian, English for the rest.
pub fn language_for(code: &str) -> &'static str {
    if code.trim().to_ascii_lowercase().starts_with("ru") {
        "ru"
    } else {
        "en"
    }
}

/// One word or sentence from the table: `key` may be a path, `review.quiet_audio`. A key the
/// table lacks in `language` is looked up in English, and shown as itself past that.
pub fn word(language: &str, key: &str) -> String {
    let find = |t: &serde_json::Value| {
        key.split('.')
            .try_fold(t, |v, k| v.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    find(strings(language))
        .or_else(|| find(strings("en")))
        .unwrap_or_else(|| key.to_string())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_is_in_both_languages() {
        fn keys(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
            match v.as_object() {
                Some(o) => {
                    for (k, v) in o {
                        keys(v, format!("{at}.{k}"), out)
                    }
                }
                None => out.push(at),
            }
        }
        let (mut en, mut ru) = (Vec::new(), Vec::new());
        keys(strings("en"), String::new(), &mut en);
        keys(strings("ru-RU"), String::new(), &mut ru);
        en.sort();
        ru.sort();
        assert_eq!(en, ru);
        assert!(en.len() > 50, "{en:?}");
        assert_eq!(word("ru", "review.quiet_audio"), "очень тихая запись");
        assert_eq!(word("de", "review.quiet_audio"), "very quiet recording");
        assert_eq!(word("ru", "no.such.key"), "no.such.key");
        assert!(INBOX_JS.starts_with("\"use strict\";\nconst STRINGS = {"));
    }
}
