//! Jobs that fetch their own audio from a URL (`source.url` on `POST /v1/jobs`), against a
//! file host in this process: fetched and transcribed; a redirect (to 127.0.0.1) not
//! followed; a host not allowed, plain http and a name that resolves to a private address
//! refused; a slow body, an oversized body, a 404 and a 401 each failing the job with its
//! code; a host that fails twice then answers, fetched; a restart mid-fetch, fetched after.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::common::read_fixture;
use crate::common::server::Server;

#[derive(Default)]
struct Host {
    /// Requests for /note.oga.
    note_hits: AtomicU32,
    /// /flaky answers 503 this many more times.
    flaky: AtomicU32,
    /// /hang holds its first request this long (ms), then answers.
    hang_ms: AtomicU32,
    port: AtomicU32,
}

fn note() -> Vec<u8> {
    read_fixture("telegram_jfk.oga")
}

async fn note_oga(State(h): State<Arc<Host>>) -> Response {
    h.note_hits.fetch_add(1, Ordering::SeqCst);
    ([(header::CONTENT_TYPE, "audio/ogg")], note()).into_response()
}

async fn redirect(State(h): State<Arc<Host>>) -> Response {
    let to = format!(
        "http://127.0.0.1:{}/note.oga",
        h.port.load(Ordering::SeqCst)
    );
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// Headers at once, then a byte every half second, for ever.
async fn slow() -> Response {
    let stream = futures_util::stream::unfold(0u32, |n| async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some((Ok::<_, std::io::Error>(vec![b'x']), n + 1))
    });
    Body::from_stream(stream).into_response()
}

/// 2 MB with no Content-Length (over the 1 MB cap the test sets).
async fn big() -> Response {
    let stream =
        futures_util::stream::iter((0..32).map(|_| Ok::<_, std::io::Error>(vec![0u8; 64 * 1024])));
    Body::from_stream(stream).into_response()
}

async fn flaky(State(h): State<Arc<Host>>) -> Response {
    if h.flaky
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    ([(header::CONTENT_TYPE, "audio/ogg")], note()).into_response()
}

async fn hang(State(h): State<Arc<Host>>) -> Response {
    let ms = h.hang_ms.swap(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms as u64)).await;
    note().into_response()
}

fn start_host() -> (Arc<Host>, u16) {
    let host = Arc::new(Host::default());
    let app = Router::new()
        .route("/note.oga", get(note_oga))
        .route("/redirect", get(redirect))
        .route("/slow", get(slow))
        .route("/big", get(big))
        .route("/flaky", get(flaky))
        .route("/hang", get(hang))
        .route("/gone", get(|| async { StatusCode::NOT_FOUND }))
        .route("/private", get(|| async { StatusCode::UNAUTHORIZED }))
        .with_state(host.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    host.port.store(port as u32, Ordering::SeqCst);
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app).await.unwrap();
            })
    });
    (host, port)
}

fn post_source(s: &Server, body: Value, key: Option<&str>) -> (u16, Value, Option<String>) {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(k) = key {
        headers.push(("Idempotency-Key", k));
    }
    let r = s.req("POST", "/v1/jobs", &headers, body.to_string().as_bytes());
    let replayed = r.header("idempotent-replayed").map(str::to_string);
    (r.status, r.json(), replayed)
}

fn wait_end(s: &Server, id: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let j = s.get(&format!("/v1/jobs/{id}")).json();
        if j["status"] == "done" || j["status"] == "failed" {
            return j;
        }
        assert!(start.elapsed() < timeout, "job {id} did not end: {j}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn jobs_fetch_their_audio_from_allowed_urls() {
    let (host, port) = start_host();
    let base = format!("http://127.0.0.1:{port}");
    let s = Server::start(
        "tiny.en",
        &[
            "--fetch-allow-host",
            "127.0.0.1",
            "--fetch-allow-private",
            "--fetch-timeout",
            "2",
            "--max-upload-bytes",
            "1000000",
        ],
    );
    let submit = |path: &str| -> String {
        let (status, job, _) = post_source(
            &s,
            json!({"source": {"url": format!("{base}{path}")}, "external_id": format!("crm{path}")}),
            None,
        );
        assert_eq!(status, 202, "{path}: {job}");
        job["id"].as_str().unwrap().to_string()
    };
    // The answer comes at once, before the audio: the job is recorded, fetching.
    let (status, first, _) = post_source(
        &s,
        json!({"source": {"url": format!("{base}/note.oga")}, "language": "en", "external_id": "crm-1"}),
        Some("order-1"),
    );
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["status"], "fetching");
    assert_eq!(first["audio_url"], Value::Null);
    assert_eq!(
        (first["source"].as_str(), first["filename"].as_str()),
        (Some("url"), Some("note.oga"))
    );
    let ids: Vec<(String, &str)> = [
        ("/redirect", "source_unreachable"),
        ("/slow", "source_unreachable"),
        ("/big", "source_too_large"),
        ("/gone", "source_expired"),
        ("/private", "source_auth"),
    ]
    .into_iter()
    .map(|(p, code)| (submit(p), code))
    .collect();
    host.flaky.store(2, Ordering::SeqCst);
    let flaky = submit("/flaky");

    let done = wait_end(&s, first["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(done["status"], "done", "{done}");
    let text = done["text"].as_str().unwrap_or_default().to_lowercase();
    assert!(text.contains("ask not what your country"), "{done}");
    assert_eq!(
        s.get(&format!("/v1/jobs/{}/audio", done["id"].as_str().unwrap()))
            .body,
        note()
    );
    // The same key and source: that job again; the key with another source: refused.
    let (status, again, replayed) = post_source(
        &s,
        json!({"source": {"url": format!("{base}/note.oga")}}),
        Some("order-1"),
    );
    assert_eq!(
        (status, again["id"].clone(), replayed.as_deref()),
        (202, first["id"].clone(), Some("true"))
    );
    let (status, reused, _) = post_source(
        &s,
        json!({"source": {"url": format!("{base}/flaky")}}),
        Some("order-1"),
    );
    assert_eq!(
        (status, reused["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{reused}"
    );

    for (id, code) in &ids {
        let j = wait_end(&s, id, Duration::from_secs(60));
        assert_eq!(
            (j["status"].as_str(), j["error"]["code"].as_str()),
            (Some("failed"), Some(*code)),
            "{j}"
        );
    }
    let redirect = s.get(&format!("/v1/jobs/{}", ids[0].0)).json();
    assert!(
        redirect["error"]["message"]
            .as_str()
            .unwrap()
            .contains("redirect"),
        "{redirect}"
    );
    assert_eq!(
        host.note_hits.load(Ordering::SeqCst),
        1,
        "the redirect was followed"
    );
    let slow = s.get(&format!("/v1/jobs/{}", ids[1].0)).json();
    assert!(
        slow["error"]["message"]
            .as_str()
            .unwrap()
            .contains("after 4 attempts"),
        "{slow}"
    );
    let flaky = wait_end(&s, &flaky, Duration::from_secs(60));
    assert_eq!(flaky["status"], "done", "{flaky}");

    // Refused when asked: a host not allowed (403), a source that does not read, a Telegram
    // file with no bot.
    for (body, status, code) in [
        (
            json!({"source": {"url": "https://files.example.com/a.ogg"}}),
            403,
            "host_not_allowed",
        ),
        (
            json!({"source": {"url": "ftp://127.0.0.1/a.ogg"}}),
            400,
            "invalid_source",
        ),
        (json!({"source": {"ftp": "x"}}), 400, "invalid_source"),
        (json!({"external_id": "x"}), 400, "invalid_source"),
        (
            json!({"source": {"telegram": {"file_id": "abc"}}}),
            400,
            "invalid_source",
        ),
        (
            json!({"source": {"url": format!("{base}/note.oga")}, "language": "xx"}),
            400,
            "invalid_language",
        ),
    ] {
        let (got, err, _) = post_source(&s, body.clone(), None);
        assert_eq!(
            (got, err["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {err}"
        );
    }
}

#[test]
fn a_source_url_is_https_and_public_unless_the_operator_allows_otherwise() {
    let (host, port) = start_host();
    let s = Server::start("tiny.en", &["--fetch-allow-host", "localhost"]);
    let (status, err, _) = post_source(
        &s,
        json!({"source": {"url": format!("http://localhost:{port}/note.oga")}}),
        None,
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_source")),
        "{err}"
    );
    // A name that resolves to a private address: refused when connecting, never reached.
    let (status, job, _) = post_source(
        &s,
        json!({"source": {"url": format!("https://localhost:{port}/note.oga")}}),
        None,
    );
    assert_eq!(status, 202, "{job}");
    let j = wait_end(&s, job["id"].as_str().unwrap(), Duration::from_secs(30));
    assert_eq!(j["error"]["code"], "source_unreachable", "{j}");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a global unicast address"),
        "{j}"
    );
    assert_eq!(host.note_hits.load(Ordering::SeqCst), 0);
}

#[test]
fn a_fetch_cut_by_a_restart_is_taken_up_again() {
    let (host, port) = start_host();
    host.hang_ms.store(60_000, Ordering::SeqCst);
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--fetch-allow-host",
        "127.0.0.1",
        "--fetch-allow-private",
        "--fetch-timeout",
        "90",
    ];
    let mut s = Server::start_in(tmp.path(), "tiny.en", &args);
    let (status, job, _) = post_source(
        &s,
        json!({"source": {"url": format!("http://127.0.0.1:{port}/hang")}}),
        None,
    );
    assert_eq!(status, 202, "{job}");
    std::thread::sleep(Duration::from_secs(1));
    s.kill9();
    let s = Server::start_in(tmp.path(), "tiny.en", &args);
    let j = wait_end(&s, job["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(j["status"], "done", "{j}");
}
