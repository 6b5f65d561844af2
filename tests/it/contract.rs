//! Where the service and docs/api.md disagreed (issue #40), one test each, against a real
//! server.

use std::time::Duration;

use crate::common::server::Server;
use crate::common::*;

fn post(s: &Server) -> String {
    let r = s.req(
        "POST",
        "/v1/jobs",
        &[("Content-Type", "audio/ogg")],
        &read_fixture("telegram_jfk.oga"),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

/// Item 5: `has_more` is true exactly when another page follows; the exact last page says
/// false (it used to say true, and the next page was empty).
#[test]
fn has_more_is_exact() {
    let s = Server::start("tiny.en", &[]);
    let ids: Vec<String> = (0..3).map(|_| post(&s)).collect();
    let page = |q: &str| s.get(&format!("/v1/jobs?{q}")).json();
    let all = page("limit=3");
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
    assert_eq!(all["has_more"], false, "the exact last page");
    let first = page("limit=2");
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_more"], true);
    let last_id = first["data"][1]["id"].as_str().unwrap();
    let second = page(&format!("limit=2&before={last_id}"));
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["has_more"], false);
    assert_eq!(second["data"][0]["id"].as_str(), Some(ids[0].as_str()));
}

/// Item 9: `filename*` is as safe as `filename`: no folders, no leading dots, whatever the
/// upload was called; a Unicode name survives in `filename*`.
#[test]
fn the_download_name_names_no_path_in_either_form() {
    let s = Server::start("tiny.en", &[]);
    for (given, ascii, star) in [
        ("../../etc/passwd", "passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini", "boot.ini"),
        (
            "заказ/../Жёлтая коробка.oga",
            "______ _______.oga",
            "%D0%96%D1%91%D0%BB%D1%82%D0%B0%D1%8F%20%D0%BA%D0%BE%D1%80%D0%BE%D0%B1%D0%BA%D0%B0.oga",
        ),
        ("..", "", ""),
    ] {
        let r = s.multipart(
            "/v1/jobs",
            &[],
            Some((given, &read_fixture("telegram_jfk.oga"))),
            &[],
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_string();
        let a = s.get(&format!("/v1/jobs/{id}/audio"));
        assert_eq!(a.status, 200);
        let (ascii, star) = if ascii.is_empty() {
            (format!("{id}.bin"), format!("{id}.bin"))
        } else {
            (ascii.to_string(), star.to_string())
        };
        assert_eq!(
            a.header("content-disposition"),
            Some(format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{star}").as_str()),
            "uploaded as {given:?}"
        );
    }
}

/// Item 10: a signed audio URL keeps working when the same API keys are listed in another
/// order (a restart with the list rewritten), and stops when a key changes.
#[test]
fn signed_urls_do_not_depend_on_the_order_of_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let url = {
        let s = Server::start_in(
            dir.path(),
            "tiny.en",
            &["--api-key", "key-a", "--api-key", "key-b"],
        );
        let r = s.req(
            "POST",
            "/v1/jobs",
            &[
                ("Content-Type", "audio/ogg"),
                ("Authorization", "Bearer key-a"),
            ],
            &read_fixture("telegram_jfk.oga"),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let url = r.json()["audio_url"].as_str().unwrap().to_string();
        assert!(url.contains("sig="), "{url}");
        assert_eq!(s.get(&url).status, 200);
        url
    };
    let s = Server::start_in(
        dir.path(),
        "tiny.en",
        &["--api-key", "key-b", "--api-key", "key-a"],
    );
    assert_eq!(s.get(&url).status, 200, "the same keys in another order");
    drop(s);
    let s = Server::start_in(
        dir.path(),
        "tiny.en",
        &["--api-key", "key-b", "--api-key", "key-c"],
    );
    assert_eq!(s.get(&url).status, 401, "a key changed");
}

/// Item 1: a callback host that does not resolve now (the docs' own example) is accepted:
/// the note is stored and transcribed, and delivery resolves the host again each time. A
/// host at a private address is still refused at submit.
#[test]
fn a_callback_host_that_does_not_resolve_now_is_accepted() {
    let s = Server::start("tiny.en", &[]);
    let audio = read_fixture("telegram_jfk.oga");
    let r = s.req(
        "POST",
        "/v1/jobs?callback_url=https://crm.example/hooks/earshot",
        &[("Content-Type", "audio/ogg")],
        &audio,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(s.wait_job(&id, Duration::from_secs(120))["status"], "done");
    let private = s.req(
        "POST",
        "/v1/jobs?callback_url=http://127.0.0.1:9/hook",
        &[("Content-Type", "audio/ogg")],
        &audio,
    );
    assert_eq!(
        (private.status, private.json()["error"]["code"].as_str()),
        (400, Some("invalid_callback_url"))
    );
}

/// Item 2: the webhook body is the body of `GET /v1/jobs/{id}`: with `audio_url` (signed,
/// with keys) and `progress`, and the same fields and values.
#[test]
fn the_webhook_body_is_the_job_as_get_shows_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = receiver(listener, 0);
    let s = Server::start(
        "tiny.en",
        &["--webhook-allow-private", "--api-key", "sk-contract"],
    );
    let auth = ("Authorization", "Bearer sk-contract");
    let r = s.req(
        "POST",
        &format!("/v1/jobs?callback_url={hook}"),
        &[auth, ("Content-Type", "audio/ogg")],
        &read_fixture("telegram_jfk.oga"),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let (_, body) = got
        .recv_timeout(Duration::from_secs(120))
        .expect("a delivery");
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = sent["id"].as_str().unwrap();
    let shown = s.req("GET", &format!("/v1/jobs/{id}"), &[auth], b"").json();
    assert!(
        sent["audio_url"].as_str().unwrap().contains("sig="),
        "{sent}"
    );
    assert!(sent.get("progress").is_some(), "{sent}");
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&sent), keys(&shown));
    // The delivery's own state moves on once it is sent; everything else is the same.
    for k in keys(&shown).iter().filter(|k| *k != "webhook") {
        assert_eq!(sent[k], shown[k], "{k}");
    }
    // A client can fetch the audio from what it was sent.
    assert_eq!(s.get(sent["audio_url"].as_str().unwrap()).status, 200);
}

/// Item 4: a raw upload whose Content-Length is over the limit by one byte gets 413 before
/// any of the body is sent; one at the limit is read.
#[test]
fn one_byte_over_the_limit_is_refused_from_the_length_alone() {
    use std::io::{Read, Write};
    let audio = read_fixture("telegram_jfk.oga");
    let max = audio.len().to_string();
    let s = Server::start("tiny.en", &["--max-upload-bytes", &max]);
    let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: audio/ogg\r\nContent-Length: {}\r\n\r\n",
        audio.len() + 1
    );
    sock.write_all(head.as_bytes()).unwrap();
    // No body is sent: the answer must come from the header alone.
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = vec![0; 4096];
    let n = sock.read(&mut answer).expect("an answer before any body");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too_large"), "{answer}");
    let ok = s.req("POST", "/v1/jobs", &[("Content-Type", "audio/ogg")], &audio);
    assert_eq!(ok.status, 202, "{}", ok.text());
}

/// Item 6: `timestamp_granularities[]`, OpenAI's name, works as a query parameter too, and a
/// value it does not know is refused.
#[test]
fn timestamp_granularities_works_as_a_query_parameter() {
    let s = Server::start("tiny.en", &[]);
    let audio = read_fixture("telegram_jfk.oga");
    let r = s.req(
        "POST",
        "/v1/jobs?timestamp_granularities[]=word&timestamp_granularities[]=segment",
        &[("Content-Type", "audio/ogg")],
        &audio,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["options"]["word_timestamps"], true);
    let bad = s.req(
        "POST",
        "/v1/jobs?timestamp_granularities[]=bogus",
        &[("Content-Type", "audio/ogg")],
        &audio,
    );
    assert_eq!(
        (bad.status, bad.json()["error"]["code"].as_str()),
        (400, Some("invalid_value"))
    );
}

/// Item 7: ё in an `external_id` is searched as е, as in transcripts and file names.
#[test]
fn yo_in_an_external_id_is_found_as_ye() {
    let s = Server::start("tiny.en", &[]);
    let r = s.req(
        "POST",
        "/v1/jobs?external_id=Где%20мой%20заказ%3F%20Жёлтая%20коробка.",
        &[("Content-Type", "audio/ogg")],
        &read_fixture("telegram_jfk.oga"),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let found = s.get("/v1/jobs?q=заказ%20жел").json();
    assert_eq!(found["data"].as_array().unwrap().len(), 1, "{found}");
}

/// Item 12: malformed HTTP (a bad request line, `Content-Length: abc`) gets the JSON error
/// shape like every other error, not hyper's bare 400; a well-formed request on another
/// connection is still served, and `Expect: 100-continue` still gets its interim answer.
#[test]
fn malformed_http_gets_the_json_error_shape() {
    use std::io::{Read, Write};
    let s = Server::start("tiny.en", &[]);
    let raw = |request: &[u8]| {
        let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = sock.read_to_end(&mut out);
        String::from_utf8_lossy(&out).to_string()
    };
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n12345",
    ] {
        let answer = raw(request);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"));
        assert_eq!(json["error"]["code"], "invalid_request", "{answer}");
        assert!(json["error"]["message"].as_str().is_some());
    }
    let interim = raw(
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(interim.contains("HTTP/1.1 200"), "{interim}");
    assert_eq!(s.get("/v1/models").status, 200);
}
