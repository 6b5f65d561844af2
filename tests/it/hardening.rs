//! Issue #13: single requests that took the service down, and the gaps an adversarial pass
//! found. Each test runs the real `earshot serve` and sends what the pass sent.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::server::Server;
use crate::common::*;

/// A 16-bit PCM WAV whose header claims `rate` Hz, with 40 KB of data.
fn wav_claiming_rate(rate: u32) -> Vec<u8> {
    let mut w = wav16k((0..20_000).map(|i| ((i as f32) * 0.05).sin() * 0.3), None);
    w[24..28].copy_from_slice(&rate.to_le_bytes());
    w
}

/// About `secs` seconds of real speech (the JFK clip, repeated): a job that stays running.
fn long_speech(secs: usize) -> Vec<u8> {
    let jfk = ffmpeg_decode(&fixture("goforward_16k.wav"));
    let samples: Vec<f32> = jfk.iter().cycle().take(secs * 16_000).copied().collect();
    wav16k(samples, None)
}

fn post_job(s: &Server, body: &[u8], query: &str) -> serde_json::Value {
    let r = s.req(
        "POST",
        &format!("/v1/jobs{query}"),
        &[("Content-Type", "audio/wav")],
        body,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()
}

/// `POST /v1/jobs{query}` with the audio itself as an Ogg body.
fn post_ogg(s: &Server, query: &str, body: &[u8]) -> crate::common::server::Resp {
    s.req(
        "POST",
        &format!("/v1/jobs{query}"),
        &[("Content-Type", "audio/ogg")],
        body,
    )
}

fn wait_status(s: &Server, id: &str, status: &str) {
    let start = Instant::now();
    while s.get(&format!("/v1/jobs/{id}")).json()["status"] != status {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "job {id} never {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_error(r: &crate::common::server::Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let j: serde_json::Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {:?}", r.text()));
    assert_eq!(j["error"]["code"], code, "{j}");
    assert!(
        j["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{j}"
    );
    assert!(j["error"]["type"].is_string(), "{j}");
}

/// Item 1: the 40 KB WAV claiming 4294967295 Hz. It killed the server at every start; now it
/// fails as `corrupt`, and the server keeps answering.
#[test]
fn absurd_sample_rate_fails_the_job_not_the_server() {
    let s = Server::start("tiny.en", &[]);
    for rate in [u32::MAX, 10_000_000] {
        let job = post_job(&s, &wav_claiming_rate(rate), "");
        let done = s.wait_job(job["id"].as_str().unwrap(), Duration::from_secs(60));
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["error"]["code"], "corrupt", "{done}");
        assert!(done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sample rate"));
    }
    let r = s.multipart(
        "/v1/audio/transcriptions",
        &[],
        Some(("bomb.wav", &wav_claiming_rate(u32::MAX))),
        &[],
    );
    assert_error(&r, 400, "corrupt");
    assert_eq!(s.get("/healthz").status, 200);
}

/// Item 1, crash-loop protection: a job that is running each time the process dies is
/// failed as `crashed_worker` at the third start, keeps its audio, and can be retried.
#[test]
fn a_job_that_keeps_killing_the_process_fails_as_crashed_worker() {
    let dir = tempfile::tempdir().unwrap();
    let audio = long_speech(120);
    let mut id = String::new();
    for round in 1..=3 {
        let mut s = Server::start_in(dir.path(), "tiny.en", &["--workers", "1"]);
        if round == 1 {
            id = post_job(&s, &audio, "")["id"].as_str().unwrap().to_string();
        }
        wait_status(&s, &id, "running");
        s.kill9();
    }
    let s = Server::start_in(dir.path(), "tiny.en", &["--workers", "1"]);
    let j = s.get(&format!("/v1/jobs/{id}")).json();
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["error"]["code"], "crashed_worker", "{j}");
    assert_eq!(j["attempts"], 3, "{j}");
    // Its transcript answers with the job's own code (issue #40, item 3), not
    // `transcription_failed`.
    let t = s.get(&format!("/v1/jobs/{id}/transcript"));
    assert_eq!(t.status, 500, "{}", t.text());
    assert_eq!(t.json()["error"]["code"], "crashed_worker", "{}", t.text());
    let a = s.get(&format!("/v1/jobs/{id}/audio"));
    assert_eq!(a.status, 200);
    assert_eq!(
        crate::common::server::sha256_hex(&a.body),
        crate::common::server::sha256_hex(&audio)
    );
    let r = s.req("POST", &format!("/v1/jobs/{id}/retry"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    wait_status(&s, &id, "running");
}

/// Item 2: a 1,000+ character `language` segfaulted whisper.cpp's logger, and a NUL byte
/// panicked the handler. Both are 400 `invalid_language` now, and the server lives.
#[test]
fn hostile_language_and_prompt_are_refused() {
    let s = Server::start("base-q8_0", &[]);
    let jfk = read_fixture("telegram_jfk.oga");
    let long = "x".repeat(5000);
    for lang in [long.as_str(), "r\0u", "\0"] {
        let r = s.multipart(
            "/v1/audio/transcriptions",
            &[("language", lang)],
            Some(("a.oga", &jfk)),
            &[],
        );
        assert_error(&r, 400, "invalid_language");
        assert!(r.text().len() < 1000, "the message quotes it clipped");
    }
    let r = post_ogg(&s, &format!("?language={}", "y".repeat(3000)), &jfk);
    assert_error(&r, 400, "invalid_language");
    let r = post_ogg(&s, "?language=ru%00", &jfk);
    assert_error(&r, 400, "invalid_language");
    let r = s.multipart(
        "/v1/audio/transcriptions",
        &[("prompt", "a\0b")],
        Some(("a.oga", &jfk)),
        &[],
    );
    assert_error(&r, 400, "invalid_value");
    // A language given by name works, and the server is still the same process.
    let r = s.multipart(
        "/v1/audio/transcriptions",
        &[("language", "English")],
        Some(("a.oga", &jfk)),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/healthz").status, 200);
}

/// Reads until EOF or `limit`; returns what arrived and when the server closed.
fn read_until_closed(c: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match c.read(&mut buf) {
            Ok(0) => return (got, Some(start.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (got, Some(start.elapsed()))
            }
            Err(_) => {}
        }
    }
    (got, None)
}

/// Item 3: idle, half-header, half-body and keep-alive sockets stayed open for minutes, and
/// 300 of them starved /healthz. Each now closes on its own timeout, and over the cap a
/// connection gets a 503 at once.
#[test]
fn slow_and_idle_clients_are_cut_off() {
    let s = Server::start(
        "tiny.en",
        &[
            "--header-timeout",
            "1",
            "--body-idle-timeout",
            "2",
            "--keep-alive-timeout",
            "3",
            "--max-connections",
            "4",
        ],
    );
    // Idle: never sends a byte.
    let mut idle = TcpStream::connect(&s.addr).unwrap();
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(10));
    assert!(closed.is_some(), "an idle socket stayed open");
    // Half a header.
    let mut half = TcpStream::connect(&s.addr).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (got, closed) = read_until_closed(&mut half, Duration::from_secs(10));
    assert!(
        closed.is_some() && got.is_empty(),
        "half a header stayed open"
    );
    // Half a body: the request fails with 408 in the JSON shape.
    let mut body = TcpStream::connect(&s.addr).unwrap();
    body.write_all(
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: audio/ogg\r\nContent-Length: 100000\r\n\r\nOggS",
    )
    .unwrap();
    let (got, _) = read_until_closed(&mut body, Duration::from_secs(15));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"body_timeout\""), "{text}");
    // Keep-alive: open after a request, closed after its idle time.
    let mut ka = TcpStream::connect(&s.addr).unwrap();
    ka.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    ka.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let (_, closed) = read_until_closed(&mut ka, Duration::from_millis(1500));
    assert!(closed.is_none(), "keep-alive closed before its idle time");
    let (_, closed) = read_until_closed(&mut ka, Duration::from_secs(10));
    assert!(
        closed.is_some(),
        "an idle keep-alive connection stayed open"
    );
    // The cap: four open connections, the fifth is answered 503 right away, unless it is
    // the liveness probe, which the busy process still answers (and then closes).
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let r = s.get("/readyz");
    assert_error(&r, 503, "too_many_connections");
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = s.get("/healthz");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "ok");
    let mut probe = TcpStream::connect(&s.addr).unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (got, closed) = read_until_closed(&mut probe, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(
        closed.is_some(),
        "an over-the-cap probe's connection is closed"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.get("/healthz").status, 200);
}

/// Item 6: the busy check ran before the body was read, so slow uploaders all got in. A
/// synchronous request's place is taken before its body is read (issue #39: by its expected
/// work, against `--sync-max-wait`; 0 here, so any work ahead refuses): while a slow
/// uploader holds one, the next request is refused before its body; once it goes, one is
/// admitted again.
#[test]
fn sync_slots_are_reserved_before_the_body() {
    let s = Server::start("tiny.en", &["--workers", "1", "--sync-max-wait", "0"]);
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    slow.write_all(
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let r = s.multipart(
        "/v1/audio/transcriptions",
        &[],
        Some(("a.oga", &read_fixture("telegram_jfk.oga"))),
        &[],
    );
    assert_error(&r, 503, "overloaded");
    assert!(r.header("retry-after").is_some());
    drop(slow);
    std::thread::sleep(Duration::from_millis(500));
    let r = s.multipart(
        "/v1/audio/transcriptions",
        &[],
        Some(("a.oga", &read_fixture("telegram_jfk.oga"))),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Item 7: `--min-free-disk-mb` only changed /readyz, and a full disk answered 500. Below
/// the minimum, uploads are refused with 507 before anything is stored.
#[test]
fn uploads_below_the_free_disk_minimum_get_507() {
    let s = Server::start("tiny.en", &["--min-free-disk-mb", "1000000000"]);
    let jfk = read_fixture("telegram_jfk.oga");
    let r = post_ogg(&s, "", &jfk);
    assert_error(&r, 507, "insufficient_storage");
    let r = s.multipart("/v1/audio/transcriptions", &[], Some(("a.oga", &jfk)), &[]);
    assert_error(&r, 507, "insufficient_storage");
    assert_eq!(
        s.get("/v1/jobs").json()["data"].as_array().unwrap().len(),
        0
    );
    assert_eq!(s.get("/readyz").status, 503);
}

/// Items 9 and 10: length caps, and the JSON error shape on every 4xx, 404 included.
#[test]
fn caps_and_the_error_shape_everywhere() {
    let s = Server::start("tiny.en", &[]);
    let jfk = read_fixture("telegram_jfk.oga");
    let long_name = format!("{}.oga", "я".repeat(35_000));
    let r = s.multipart("/v1/jobs", &[], Some((&long_name, &jfk)), &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let name = r.json()["filename"].as_str().unwrap().to_string();
    assert!(name.len() <= 255 && name.len() > 240, "{}", name.len());
    assert!(long_name.starts_with(&name));
    let id = r.json()["id"].as_str().unwrap().to_string();
    let a = s.get(&format!("/v1/jobs/{id}/audio"));
    assert!(a.header("content-disposition").unwrap().len() < 3000);
    let r = post_ogg(&s, &format!("?external_id={}", "e".repeat(10_000)), &jfk);
    assert_error(&r, 400, "invalid_value");
    for q in ["limit=-1", "limit=abc"] {
        assert_error(&s.get(&format!("/v1/jobs?{q}")), 400, "invalid_request");
    }
    for q in ["limit=0", "limit=1001", "before=garbage"] {
        assert_error(&s.get(&format!("/v1/jobs?{q}")), 400, "invalid_value");
    }
    let r = s.req(
        "POST",
        "/v1/audio/transcriptions",
        &[("Content-Type", "multipart/form-data; boundary=right")],
        b"--wrong\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--wrong--\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"]["code"].is_string(), "{}", r.text());
    assert_error(&s.get("/no/such/route"), 404, "not_found");
    assert_error(&s.get("/v1/jobs/nope"), 404, "job_not_found");
    assert_error(
        &s.req("PUT", "/v1/jobs", &[], b""),
        405,
        "method_not_allowed",
    );
}

/// Item 4: with a 3 s grace the process exited 41 s after SIGTERM, after *starting* a
/// waiting job. Now: no new work, whisper is interrupted at the deadline, the job goes back
/// to the queue uncounted, and a waiting synchronous client is told to retry.
#[test]
fn sigterm_keeps_to_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--workers", "1", "--shutdown-grace", "2"];
    let mut s = Server::start_in(dir.path(), "tiny.en", &extra);
    let long = post_job(&s, &long_speech(300), "")["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&s, &long, "running");
    let addr = s.addr.clone();
    let waiting = std::thread::spawn(move || {
        let (ct, body) = crate::common::server::multipart_body(
            &[],
            Some(("a.oga", &read_fixture("telegram_jfk.oga"))),
        );
        crate::common::server::request(
            &addr,
            "POST",
            "/v1/audio/transcriptions",
            &[("Content-Type", &ct)],
            &body,
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let pid = s.child.id() as i32;
    let t = Instant::now();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = s.child.wait().unwrap();
    let took = t.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(12),
        "exit took {took:?} with a 2 s grace"
    );
    let r = waiting.join().unwrap();
    assert_error(&r, 503, "shutting_down");
    let sync_id = r.header("x-earshot-job-id").unwrap().to_string();
    drop(s);
    let s = Server::start_in(dir.path(), "tiny.en", &extra);
    let j = s.get(&format!("/v1/jobs/{long}")).json();
    assert_ne!(j["status"], "failed", "{j}");
    assert!(
        j["attempts"].as_u64().unwrap() <= 1,
        "the interrupted attempt was counted: {j}"
    );
    // The synchronous note was kept and runs after the restart.
    let done = s.wait_job(&sync_id, Duration::from_secs(120));
    assert_eq!(done["status"], "done", "{done}");
}
