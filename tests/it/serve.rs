//! `earshot serve` end to end: the real binary on a random port, a temp data folder, real
//! models, HTTP over a socket.

use std::time::Duration;

use crate::common::server::{multipart_body, request, sha256_hex, Server};
use crate::common::*;

const JFK_WORDS: &str = "ask not what your country can do for you";

#[test]
fn openai_endpoint_answers_every_format_and_keeps_a_job() {
    let s = Server::start("tiny.en", &[]);
    for f in ["telegram_jfk.oga", "instagram_jfk.m4a", "chrome_jfk.webm"] {
        let r = s.multipart(
            "/v1/audio/transcriptions",
            &[("model", "whisper-1")],
            Some((f, &read_fixture(f))),
            &[],
        );
        assert_eq!(r.status, 200, "{f}: {}", r.text());
        assert!(
            normalize(r.json()["text"].as_str().unwrap()).contains(JFK_WORDS),
            "{f}: {}",
            r.text()
        );
        let id = r
            .header("x-earshot-job-id")
            .expect("job id header")
            .to_string();
        // Every request is a durable record, and its audio downloads byte-identical.
        let job = s.get(&format!("/v1/jobs/{id}")).json();
        assert_eq!(
            (
                job["status"].as_str(),
                job["filename"].as_str(),
                job["source"].as_str()
            ),
            (Some("done"), Some(f), Some("openai"))
        );
        let audio = s.get(&format!("/v1/jobs/{id}/audio"));
        assert_eq!(sha256_hex(&audio.body), sha256_hex(&read_fixture(f)));
    }
    // Every other valid fixture format answers 200 through the same endpoint.
    for f in [
        "telegram_ru.oga",
        "whatsapp_ru.opus",
        "messenger_ru.mp4",
        "android_ru_opus.m4a",
        "goforward.mp3",
        "goforward_16k.wav",
        "cards_48k_stereo.wav",
        "goforward_8k_mulaw.wav",
        "silence_10s.oga",
        "short_0.2s.oga",
    ] {
        let r = s.multipart(
            "/v1/audio/transcriptions",
            &[("model", "whisper-1"), ("response_format", "verbose_json")],
            Some((f, &read_fixture(f))),
            &[],
        );
        assert_eq!(r.status, 200, "{f}: {}", r.text());
        let v = r.json();
        assert!(v["duration"].as_f64().unwrap() > 0.1, "{f}: {v}");
        assert_eq!(
            v["text"].as_str().unwrap().is_empty(),
            f.starts_with("silence") || f.starts_with("short"),
            "{f}: {v}"
        );
    }
    let file = read_fixture("goforward.flac");
    let form = |fmt: &str| {
        s.multipart(
            "/v1/audio/transcriptions",
            &[("model", "whisper-1"), ("response_format", fmt)],
            Some(("a.flac", &file)),
            &[],
        )
    };
    assert_eq!(normalize(&form("text").text()), "go forward 10 meters");
    // The first segment starts where the speech does, within the first second.
    let srt = form("srt").text();
    assert!(
        srt.starts_with("1\n00:00:00,") && srt.contains(" --> 00:00:0"),
        "{srt}"
    );
    let vtt = form("vtt").text();
    assert!(vtt.starts_with("WEBVTT\n\n00:00:00."), "{vtt}");
    let v = form("verbose_json").json();
    assert_eq!(
        (v["task"].as_str(), v["language"].as_str()),
        (Some("transcribe"), Some("english"))
    );
    assert!(v["segments"][0]["end"].as_f64().unwrap() > 1.0);
    let words = s.multipart(
        "/v1/audio/transcriptions",
        &[
            ("model", "whisper-1"),
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
        ],
        Some(("a.flac", &file)),
        &[],
    );
    assert!(
        words.json()["words"].as_array().unwrap().len() >= 3,
        "{}",
        words.text()
    );

    // Errors: OpenAI's shape, with param and a machine-readable code.
    let e = s.multipart(
        "/v1/audio/transcriptions",
        &[("model", "whisper-1")],
        Some(("x.ogg", &read_fixture("broken/cdn_error.ogg"))),
        &[],
    );
    assert_eq!(e.status, 400);
    let err = &e.json()["error"];
    assert_eq!(
        (
            err["code"].as_str(),
            err["param"].as_str(),
            err["type"].as_str()
        ),
        (
            Some("not_audio"),
            Some("file"),
            Some("invalid_request_error")
        )
    );
    assert_eq!(err["message"], "not audio (looks like an HTML page)");
    // ...and the undecodable upload is kept, failed, and downloadable.
    let failed_id = e.header("x-earshot-job-id").unwrap().to_string();
    assert_eq!(
        s.get(&format!("/v1/jobs/{failed_id}")).json()["error"]["code"],
        "not_audio"
    );
    assert_eq!(
        s.get(&format!("/v1/jobs/{failed_id}/audio")).body,
        read_fixture("broken/cdn_error.ogg")
    );
    let bad = |fields: &[(&str, &str)], param: &str, status: u16| {
        let r = s.multipart(
            "/v1/audio/transcriptions",
            fields,
            Some(("a.flac", &file)),
            &[],
        );
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{}", r.text());
    };
    bad(&[("model", "gpt-9")], "model", 404);
    bad(&[("response_format", "docx")], "response_format", 400);
    bad(&[("language", "klingon")], "language", 400);
    bad(&[("temperature", "7")], "temperature", 400);
    bad(&[("accurate", "very")], "accurate", 400);
    bad(&[("beam_size", "0")], "beam_size", 400);
    bad(&[("beam_size", "wide")], "beam_size", 400);
    // The careful settings on request: the same text, and the job remembers them.
    let r = s.multipart(
        "/v1/audio/transcriptions",
        &[("model", "whisper-1"), ("accurate", "true")],
        Some(("a.flac", &file)),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        normalize(r.json()["text"].as_str().unwrap()),
        "go forward 10 meters"
    );
    let job = r.header("x-earshot-job-id").unwrap().to_string();
    assert_eq!(
        s.get(&format!("/v1/jobs/{job}")).json()["options"]["accurate"],
        true
    );
    let nofile = s.multipart(
        "/v1/audio/transcriptions",
        &[("model", "whisper-1")],
        None,
        &[],
    );
    assert_eq!(
        (nofile.status, nofile.json()["error"]["param"].as_str()),
        (400, Some("file"))
    );
}

#[test]
fn jobs_lifecycle_range_retry_delete() {
    let s = Server::start("tiny.en", &[]);
    let flac = read_fixture("goforward.flac");
    // Raw body with an audio/* type, a path-traversing filename kept only as metadata.
    let r = s.req(
        "POST",
        "/v1/jobs?external_id=wa-123&source=whatsapp&beam_size=3",
        &[
            ("Content-Type", "audio/flac"),
            (
                "Content-Disposition",
                "attachment; filename=\"../../etc/passwd\"",
            ),
        ],
        &flac,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json();
    assert_eq!(
        (job["status"].as_str(), job["external_id"].as_str()),
        (Some("queued"), Some("wa-123"))
    );
    // Every option can come as a query parameter too; the job keeps what it asked.
    assert_eq!(job["options"]["beam_size"], 3);
    let id = job["id"].as_str().unwrap().to_string();
    let done = s.wait_job(&id, Duration::from_secs(120));
    assert_eq!(done["status"], "done");
    assert_eq!(
        normalize(done["text"].as_str().unwrap()),
        "go forward 10 meters"
    );
    assert_eq!(done["filename"], "../../etc/passwd");
    let stored = s.stored_audio();
    assert!(
        !stored.is_empty()
            && stored
                .iter()
                .all(|n| n.len() == 64 && !n.contains("passwd")),
        "audio is stored by hash: {stored:?}"
    );

    // Transcript in every format.
    assert_eq!(
        normalize(
            &s.get(&format!("/v1/jobs/{id}/transcript?format=txt"))
                .text()
        ),
        "go forward 10 meters"
    );
    assert!(s
        .get(&format!("/v1/jobs/{id}/transcript?format=srt"))
        .text()
        .starts_with("1\n"));
    assert_eq!(
        s.get(&format!("/v1/jobs/{id}/transcript?format=verbose_json"))
            .json()["language"],
        "english"
    );

    // Audio: original type, safe disposition, ranges.
    let a = s.get(&format!("/v1/jobs/{id}/audio"));
    assert_eq!(
        (a.status, a.header("content-type")),
        (200, Some("audio/flac"))
    );
    // Neither name can point anywhere: no folders, no leading dots, in `filename` and in
    // `filename*` (which RFC 6266 clients prefer) alike.
    assert_eq!(
        a.header("content-disposition"),
        Some("attachment; filename=\"passwd\"; filename*=UTF-8''passwd")
    );
    let part = s.req(
        "GET",
        &format!("/v1/jobs/{id}/audio"),
        &[("Range", "bytes=100-199")],
        b"",
    );
    assert_eq!((part.status, part.body.as_slice()), (206, &flac[100..200]));
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-199/{}", flac.len()).as_str())
    );
    let tail = s.req(
        "GET",
        &format!("/v1/jobs/{id}/audio"),
        &[("Range", "bytes=-10")],
        b"",
    );
    assert_eq!(tail.body.as_slice(), &flac[flac.len() - 10..]);
    assert_eq!(
        s.req(
            "GET",
            &format!("/v1/jobs/{id}/audio"),
            &[("Range", "bytes=999999-")],
            b""
        )
        .status,
        416
    );

    // Multipart job that fails, then is retried (and fails the same way, keeping its audio).
    let bad = s.multipart(
        "/v1/jobs",
        &[("external_id", "tg-9")],
        Some(("voice.oga", &read_fixture("broken/error.json.oga"))),
        &[],
    );
    assert_eq!(bad.status, 202);
    let bad_id = bad.json()["id"].as_str().unwrap().to_string();
    let failed = s.wait_job(&bad_id, Duration::from_secs(60));
    assert_eq!(
        (failed["status"].as_str(), failed["error"]["code"].as_str()),
        (Some("failed"), Some("not_audio"))
    );
    assert_eq!(
        s.get(&format!("/v1/jobs/{bad_id}/transcript")).json()["error"]["code"],
        "not_audio"
    );
    let retry = s.req("POST", &format!("/v1/jobs/{bad_id}/retry"), &[], b"");
    assert_eq!(retry.status, 202, "{}", retry.text());
    assert_eq!(s.wait_job(&bad_id, Duration::from_secs(60))["attempts"], 1);

    // Listing and filters.
    let list = s.get("/v1/jobs?status=failed").json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.get("/v1/jobs?external_id=wa-123").json()["data"][0]["id"],
        id.as_str()
    );
    assert_eq!(
        s.get("/v1/jobs?limit=1").json()["data"][0]["id"],
        bad_id.as_str(),
        "newest first"
    );
    assert_eq!(
        s.get(&format!("/v1/jobs?before={bad_id}")).json()["data"][0]["id"],
        id.as_str()
    );
    assert_eq!(
        s.get("/v1/jobs?status=bogus").json()["error"]["param"],
        "status"
    );

    // Delete: record and (unshared) audio go; unknown ids are 404.
    assert_eq!(
        s.req("DELETE", &format!("/v1/jobs/{bad_id}"), &[], b"")
            .status,
        200
    );
    assert_eq!(s.get(&format!("/v1/jobs/{bad_id}")).status, 404);
    assert_eq!(
        s.get(&format!("/v1/jobs/{bad_id}/audio")).json()["error"]["code"],
        "job_not_found"
    );

    // Unsupported body type.
    assert_eq!(
        s.req(
            "POST",
            "/v1/jobs",
            &[("Content-Type", "text/plain")],
            b"hello"
        )
        .status,
        415
    );

    // Models, health, readiness, metrics.
    let models = s.get("/v1/models").json();
    assert!(models["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "whisper-1"));
    assert_eq!(s.get("/healthz").status, 200);
    let ready = s.get("/readyz").json();
    assert_eq!(
        (
            ready["status"].as_str(),
            ready["model"]["loaded"].as_bool(),
            ready["model"]["backend"].as_str()
        ),
        (Some("ready"), Some(true), Some("cpu"))
    );
    let m = s.get("/metrics").text();
    for line in [
        "earshot_jobs{status=\"done\"} 1",
        "earshot_queue_depth 0",
        "earshot_processing_seconds_count",
        "earshot_real_time_factor",
        "earshot_http_requests_total{route=\"/v1/jobs\",status=\"202\"}",
    ] {
        assert!(m.contains(line), "metrics lack {line}:\n{m}");
    }
    // Every x86-64 build has SSE3; on a CPU with AVX-512 VNNI the q8_0 tiles are in use,
    // compiled in (a native build) or chosen at run time (a portable one).
    #[cfg(target_arch = "x86_64")]
    assert!(
        m.contains("earshot_cpu_feature{feature=\"SSE3\",how=\"build\"} 1"),
        "{m}"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        assert!(
            m.contains("earshot_cpu_feature{feature=\"AVX512_VNNI\",how="),
            "{m}"
        );
    }

    // Past axum's default 2 MiB body limit: accepted, stored, then failed as not audio.
    let mut big = b"%PDF-1.7\n".to_vec();
    big.extend((0..2_600_000u32 - 9).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let r = s.req("POST", "/v1/jobs", &[("Content-Type", "audio/ogg")], &big);
    assert_eq!(r.status, 202, "{}", r.text());
    let big_job = s.wait_job(r.json()["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(
        (big_job["status"].as_str(), big_job["size"].as_u64()),
        (Some("failed"), Some(2_600_000))
    );
    assert_eq!(
        big_job["error"]["message"],
        "not audio (looks like a PDF document)"
    );
    assert_eq!(
        sha256_hex(
            &s.get(&format!(
                "/v1/jobs/{}/audio",
                big_job["id"].as_str().unwrap()
            ))
            .body
        ),
        sha256_hex(&big)
    );
}

#[test]
fn idempotency_keys() {
    let s = Server::start("tiny.en", &[]);
    let a = read_fixture("goforward.mp3");
    let first = s.req(
        "POST",
        "/v1/jobs",
        &[
            ("Content-Type", "audio/mpeg"),
            ("Idempotency-Key", "msg-42"),
        ],
        &a,
    );
    let again = s.req(
        "POST",
        "/v1/jobs",
        &[
            ("Content-Type", "audio/mpeg"),
            ("Idempotency-Key", "msg-42"),
        ],
        &a,
    );
    assert_eq!((first.status, again.status), (202, 202));
    assert_eq!(first.json()["id"], again.json()["id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other = s.req(
        "POST",
        "/v1/jobs",
        &[
            ("Content-Type", "audio/flac"),
            ("Idempotency-Key", "msg-42"),
        ],
        &read_fixture("goforward.flac"),
    );
    assert_eq!(
        (other.status, other.json()["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(
        s.get("/v1/jobs").json()["data"].as_array().unwrap().len(),
        1
    );
    // The refused bytes were not kept.
    let flac_sha = sha256_hex(&read_fixture("goforward.flac"));
    let stored = s.stored_audio();
    assert!(!stored.contains(&flac_sha), "{stored:?}");
    assert_eq!(stored.len(), 1, "{stored:?}");
    // Identical audio under two jobs is stored once.
    let dup = s.req("POST", "/v1/jobs", &[("Content-Type", "audio/mpeg")], &a);
    assert_eq!(dup.json()["sha256"], first.json()["sha256"]);
}

/// Audio stored for a job that the database then refused to record is taken back out of
/// the store, and the client gets a JSON error that does not echo the database; once the
/// database records jobs again, the same upload works.
#[test]
fn audio_of_a_job_the_database_refused_is_not_kept() {
    let s = Server::start("tiny.en", &[]);
    s.db_execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON jobs \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    let a = read_fixture("goforward.mp3");
    let post = || s.req("POST", "/v1/jobs", &[("Content-Type", "audio/mpeg")], &a);
    let refused = post();
    assert_eq!(
        (refused.status, refused.json()["error"]["code"].as_str()),
        (500, Some("storage_error")),
        "{}",
        refused.text()
    );
    assert!(!refused.text().contains("refused by the test"));
    assert!(s.stored_audio().is_empty(), "{:?}", s.stored_audio());
    assert!(s.spooled().is_empty(), "{:?}", s.spooled());
    s.db_execute(
        "DROP TRIGGER refuse;",
        "DROP TRIGGER refuse ON jobs; DROP FUNCTION refuse();",
    );
    let taken = post();
    assert_eq!(taken.status, 202, "{}", taken.text());
    assert_eq!(s.stored_audio(), [sha256_hex(&a)]);
}

#[test]
fn auth_and_size_limits() {
    let s = Server::start(
        "tiny.en",
        &[
            "--api-key",
            "sekret-1",
            "--api-key",
            "sekret-2",
            "--max-upload-bytes",
            "30000",
        ],
    );
    let r = s.get("/v1/jobs");
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    assert_eq!(
        s.req("GET", "/v1/jobs", &[("Authorization", "Bearer wrong")], b"")
            .status,
        401
    );
    assert_eq!(
        s.req(
            "GET",
            "/v1/jobs",
            &[("Authorization", "Bearer sekret-2")],
            b""
        )
        .status,
        200
    );
    assert_eq!(s.get("/healthz").status, 200, "health needs no key");
    let auth = [("Authorization", "Bearer sekret-1")];
    // 413 for an oversize body (the 47 KB M4A), through both upload routes; nothing stored.
    let big = read_fixture("instagram_jfk.m4a");
    let r = s.multipart(
        "/v1/audio/transcriptions",
        &[("model", "whisper-1")],
        Some(("big.m4a", &big)),
        &auth,
    );
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
    let r = s.req(
        "POST",
        "/v1/jobs",
        &[("Content-Type", "audio/mp4"), auth[0]],
        &big,
    );
    assert_eq!(r.status, 413);
    let (ct, body) = multipart_body(&[], Some(("big.m4a", &big)));
    let r = request(
        &s.addr,
        "POST",
        "/v1/jobs",
        &[("Content-Type", &ct), auth[0]],
        &body,
    );
    assert_eq!(r.status, 413);
    assert_eq!(
        s.req("GET", "/v1/jobs", &auth, b"").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let (stored, spooled) = (s.stored_audio(), s.spooled());
    assert!(
        stored.is_empty() && spooled.is_empty(),
        "refused uploads left files: {stored:?} {spooled:?}"
    );
    // A small upload passes.
    let ok = s.req(
        "POST",
        "/v1/jobs",
        &[("Content-Type", "audio/ogg"), auth[0]],
        &read_fixture("telegram_ru.oga"),
    );
    assert_eq!(ok.status, 202, "{}", ok.text());
}

/// Back-pressure. A long note keeps the single worker busy: queued jobs past --queue-limit
/// get 429, and a synchronous request with one already waiting gets 503; both with
/// Retry-After, and neither leaves a record. A client that hangs up still gets its job done.
#[test]
fn backpressure_429_503_and_disconnects() {
    // No wait allowed for a synchronous request: any work ahead of it refuses it.
    let s = Server::start(
        "tiny.en",
        &[
            "--queue-limit",
            "1",
            "--workers",
            "1",
            "--sync-max-wait",
            "0",
        ],
    );
    let long = long_wav(3); // 33 s: keeps the worker busy for a while
    let r1 = s.req("POST", "/v1/jobs", &[("Content-Type", "audio/wav")], &long);
    assert_eq!(r1.status, 202, "{}", r1.text());
    let id1 = r1.json()["id"].as_str().unwrap().to_string();
    while s.get(&format!("/v1/jobs/{id1}")).json()["status"] == "queued" {
        std::thread::sleep(Duration::from_millis(50));
    }
    let r2 = s.req(
        "POST",
        "/v1/jobs",
        &[("Content-Type", "audio/ogg")],
        &read_fixture("telegram_ru.oga"),
    );
    assert_eq!(r2.status, 202);
    let r3 = s.req(
        "POST",
        "/v1/jobs",
        &[("Content-Type", "audio/ogg")],
        &read_fixture("telegram_jfk.oga"),
    );
    assert_eq!(
        (r3.status, r3.json()["error"]["code"].as_str()),
        (429, Some("queue_full"))
    );
    assert!(r3.header("retry-after").is_some());

    // A synchronous request whose client hangs up right after sending: it waits in the queue...
    let (ct, body) = multipart_body(
        &[("model", "whisper-1")],
        Some(("bye.flac", &read_fixture("goforward.flac"))),
    );
    {
        use std::io::Write;
        let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
        let head = format!("POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n", body.len());
        sock.write_all(head.as_bytes()).unwrap();
        sock.write_all(&body).unwrap();
        let start = std::time::Instant::now();
        while !s.get("/v1/jobs?status=queued").json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["filename"] == "bye.flac")
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the synchronous job was not stored"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    } // ...and the client is gone.
      // With the worker busy and a synchronous request already waiting: 503 before any reading.
    let r4 = s.multipart(
        "/v1/audio/transcriptions",
        &[("model", "whisper-1")],
        Some(("x.flac", &read_fixture("goforward.flac"))),
        &[],
    );
    assert_eq!(
        (r4.status, r4.json()["error"]["code"].as_str()),
        (503, Some("overloaded"))
    );
    assert!(r4.header("retry-after").is_some());
    let jobs = s.get("/v1/jobs").json();
    assert_eq!(
        jobs["data"].as_array().unwrap().len(),
        3,
        "refused requests left no record: {jobs}"
    );
    let bye = jobs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["filename"] == "bye.flac")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = s.wait_job(&bye, Duration::from_secs(300));
    assert_eq!(
        normalize(done["text"].as_str().unwrap()),
        "go forward 10 meters"
    );
}

/// The JFK fixture decoded and repeated `times` times, as a 16 kHz WAV.
fn long_wav(times: usize) -> Vec<u8> {
    let a = earshot::audio::decode(&read_fixture("telegram_jfk.oga"), &Default::default())
        .unwrap()
        .samples;
    wav16k((0..times).flat_map(|_| a.iter().copied()), None)
}

/// kill -9 while jobs run, restart: every 2xx'd job reaches done and its audio is intact.
#[test]
fn kill_9_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), "tiny.en", &["--workers", "1"]);
    let files = [
        "telegram_jfk.oga",
        "chrome_jfk.webm",
        "goforward.mp3",
        "goforward.flac",
        "goforward_16k.wav",
        "cards_48k_stereo.wav",
    ];
    let mut accepted = Vec::new();
    for f in files {
        let r = s.multipart("/v1/jobs", &[], Some((f, &read_fixture(f))), &[]);
        assert_eq!(r.status, 202, "{}", r.text());
        accepted.push((r.json()["id"].as_str().unwrap().to_string(), f));
    }
    // Kill as soon as a job is running.
    while s.get("/v1/jobs?status=running").json()["data"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();
    let s = Server::start_in(tmp.path(), "tiny.en", &[]);
    for (id, f) in &accepted {
        let j = s.wait_job(id, Duration::from_secs(180));
        assert_eq!(j["status"], "done", "{f}: {j}");
        assert!(!j["text"].as_str().unwrap().is_empty(), "{f}");
        let audio = s.get(&format!("/v1/jobs/{id}/audio"));
        assert_eq!(
            sha256_hex(&audio.body),
            sha256_hex(&read_fixture(f)),
            "{f}: audio changed"
        );
    }
}

/// 20 uploads at once: every accepted one finishes, with its own audio and text.
#[test]
fn twenty_concurrent_uploads() {
    let s = Server::start("tiny.en", &["--workers", "2", "--threads-per-job", "1"]);
    let files = [
        "goforward.flac",
        "goforward.mp3",
        "goforward_16k.wav",
        "goforward_8k_mulaw.wav",
    ];
    let addr = s.addr.clone();
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let addr = addr.clone();
            let f = files[i % files.len()];
            std::thread::spawn(move || {
                let (ct, body) = multipart_body(
                    &[("external_id", &format!("n{i}"))],
                    Some((f, &read_fixture(f))),
                );
                let r = request(&addr, "POST", "/v1/jobs", &[("Content-Type", &ct)], &body);
                (r.status, r.json(), f)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (status, job, f) in results {
        assert_eq!(status, 202, "{job}");
        let done = s.wait_job(job["id"].as_str().unwrap(), Duration::from_secs(300));
        assert_eq!(done["status"], "done");
        assert_eq!(
            normalize(done["text"].as_str().unwrap()),
            "go forward 10 meters",
            "{f}"
        );
        assert_eq!(
            sha256_hex(
                &s.get(&format!("/v1/jobs/{}/audio", done["id"].as_str().unwrap()))
                    .body
            ),
            sha256_hex(&read_fixture(f))
        );
    }
    assert_eq!(
        s.get("/v1/jobs?limit=100").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
}

/// Issue #14's race: uploads of the same bytes while jobs holding those bytes are deleted. An
/// upload that found the file already stored (deduplicated) used to race a delete that
/// removed it as unreferenced, leaving the new job pointing at nothing. Every job must keep
/// its audio for as long as it exists.
#[test]
fn uploads_and_deletes_of_the_same_bytes_never_lose_audio() {
    let s = Server::start("tiny.en", &["--workers", "1", "--threads-per-job", "1"]);
    // Half a second of silence: the voice-activity step answers at once, so the workers
    // keep up and a delete is rarely refused as running.
    let wav = wav16k(std::iter::repeat_n(0.0, 8_000), None);
    let want = sha256_hex(&wav);
    let addr = s.addr.clone();
    let lost: Vec<String> = (0..4)
        .map(|t| {
            let (addr, wav, want) = (addr.clone(), wav.clone(), want.clone());
            std::thread::spawn(move || {
                let mut lost = Vec::new();
                for i in 0..100 {
                    let (ct, body) = multipart_body(
                        &[("external_id", &format!("t{t}-{i}"))],
                        Some(("same.wav", &wav)),
                    );
                    let r = request(&addr, "POST", "/v1/jobs", &[("Content-Type", &ct)], &body);
                    assert_eq!(r.status, 202, "{}", r.text());
                    let id = r.json()["id"].as_str().unwrap().to_string();
                    let audio = request(&addr, "GET", &format!("/v1/jobs/{id}/audio"), &[], &[]);
                    if audio.status != 200 || sha256_hex(&audio.body) != want {
                        lost.push(format!("{id}: audio answered {}", audio.status));
                    }
                    // Delete it again (a running job is refused with 409 until it is done).
                    for _ in 0..300 {
                        let d = request(&addr, "DELETE", &format!("/v1/jobs/{id}"), &[], &[]);
                        if d.status == 200 {
                            break;
                        }
                        assert_eq!(d.status, 409, "{}", d.text());
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                lost
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(lost.is_empty(), "jobs whose audio was gone: {lost:?}");
    // Everything was deleted, so the one stored file went with the last job.
    assert_eq!(
        s.get("/v1/jobs?limit=100").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let files = s.stored_audio();
    assert!(files.is_empty(), "audio left behind: {files:?}");
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

#[test]
fn webhooks_are_signed_retried_and_survive_restarts() {
    // Refused without --webhook-allow-private, and for other schemes.
    let strict = Server::start("tiny.en", &[]);
    let (ct, body) = multipart_body(
        &[("callback_url", "http://127.0.0.1:9/hook")],
        Some(("a.flac", &read_fixture("goforward.flac"))),
    );
    let r = request(
        &strict.addr,
        "POST",
        "/v1/jobs",
        &[("Content-Type", &ct)],
        &body,
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("callback_url")),
        "{}",
        r.text()
    );
    let r = strict.req(
        "POST",
        "/v1/jobs?callback_url=file:///etc/passwd",
        &[("Content-Type", "audio/flac")],
        &read_fixture("goforward.flac"),
    );
    assert_eq!(r.json()["error"]["code"], "invalid_callback_url");
    drop(strict);

    let tmp = tempfile::tempdir().unwrap();
    let args = ["--webhook-secret", "s3cret", "--webhook-allow-private"];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = receiver(listener, 1);
    let s = Server::start_in(tmp.path(), "tiny.en", &args);
    let r = s.req(
        "POST",
        &format!("/v1/jobs?callback_url={hook}&external_id=ig-7"),
        &[("Content-Type", "audio/flac")],
        &read_fixture("goforward.flac"),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let (h1, b1) = got
        .recv_timeout(Duration::from_secs(120))
        .expect("first delivery");
    let (h2, b2) = got
        .recv_timeout(Duration::from_secs(30))
        .expect("retry after the 500");
    assert_eq!(
        header(&h1, "x-earshot-delivery"),
        header(&h2, "x-earshot-delivery"),
        "a retry keeps its delivery id"
    );
    assert_eq!(header(&h2, "x-earshot-signature"), hmac_hex("s3cret", &b2));
    assert_eq!(header(&h2, "x-earshot-event"), "job.done");
    let body: serde_json::Value = serde_json::from_slice(&b2).unwrap();
    assert_eq!(
        (
            body["id"].as_str(),
            body["status"].as_str(),
            body["external_id"].as_str()
        ),
        (Some(id.as_str()), Some("done"), Some("ig-7"))
    );
    assert_eq!(
        normalize(body["text"].as_str().unwrap()),
        "go forward 10 meters"
    );
    assert!(!b1.is_empty());
    // The job shows its delivery state.
    let mut job = s.get(&format!("/v1/jobs/{id}")).json();
    for _ in 0..50 {
        if job["webhook"]["status"] == "delivered" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        job = s.get(&format!("/v1/jobs/{id}")).json();
    }
    assert_eq!(
        (
            job["webhook"]["status"].as_str(),
            job["webhook"]["attempts"].as_u64()
        ),
        (Some("delivered"), Some(2)),
        "{job}"
    );

    // The outbox survives kill -9: the receiver is down while the job finishes.
    let spare = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = spare.local_addr().unwrap();
    drop(spare);
    let mut s = s;
    let r = s.req(
        "POST",
        &format!("/v1/jobs?callback_url=http://{addr}/hook"),
        &[("Content-Type", "audio/mpeg")],
        &read_fixture("goforward.mp3"),
    );
    let id2 = r.json()["id"].as_str().unwrap().to_string();
    let j = s.wait_job(&id2, Duration::from_secs(120));
    assert_eq!(j["status"], "done");
    while s.get(&format!("/v1/jobs/{id2}")).json()["webhook"]["attempts"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    s.kill9();
    let got2 = receiver(std::net::TcpListener::bind(addr).unwrap(), 0);
    let s = Server::start_in(tmp.path(), "tiny.en", &args);
    let (h, b) = got2
        .recv_timeout(Duration::from_secs(60))
        .expect("delivered after the restart");
    assert_eq!(header(&h, "x-earshot-signature"), hmac_hex("s3cret", &b));
    let body: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(body["id"], id2.as_str());
    drop(s);
}

/// SIGTERM: the listener closes, the running job finishes within the grace period, the
/// process exits 0, and after a restart everything accepted is done.
#[test]
fn sigterm_lets_running_jobs_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(
        tmp.path(),
        "tiny.en",
        &["--workers", "1", "--shutdown-grace", "120"],
    );
    let r = s.req(
        "POST",
        "/v1/jobs",
        &[("Content-Type", "audio/wav")],
        &long_wav(2),
    );
    let id = r.json()["id"].as_str().unwrap().to_string();
    let queued = s
        .req(
            "POST",
            "/v1/jobs",
            &[("Content-Type", "audio/ogg")],
            &read_fixture("telegram_ru.oga"),
        )
        .json();
    while s.get(&format!("/v1/jobs/{id}")).json()["status"] == "queued" {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let s = Server::start_in(tmp.path(), "tiny.en", &[]);
    let j = s.get(&format!("/v1/jobs/{id}")).json();
    assert_eq!(
        j["status"], "done",
        "the running job finished before exit: {j}"
    );
    assert_eq!(
        s.wait_job(queued["id"].as_str().unwrap(), Duration::from_secs(120))["status"],
        "done"
    );
}

/// CPU-only build: `serve --require-gpu` refuses to start and says why.
#[cfg(not(feature = "cuda"))]
#[test]
fn require_gpu_refuses_to_start_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
        .current_dir(crate::common::root())
        .args(["serve", "--listen", "127.0.0.1:0", "--model", "tiny.en"])
        .args(["--require-gpu", "--data-dir"])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--require-gpu is set but"), "{err}");
    assert!(!err.contains("listening on"), "{err}");
}

/// Every finished job carries a review verdict: in the job, in verbose_json, in the list
/// filter `?review=needed`, and counted in /metrics. A room-noise note is `no_speech`; a
/// clean English note is not flagged.
#[test]
fn review_verdict_in_jobs_list_and_metrics() {
    let s = Server::start("tiny.en", &[]);
    let post = |name: &str| {
        let r = s.req(
            "POST",
            "/v1/jobs",
            &[("Content-Type", "audio/ogg")],
            &read_fixture(name),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_string();
        s.wait_job(&id, Duration::from_secs(120))
    };
    let noise = post("low_noise_10s.oga");
    let clean = post("telegram_jfk.oga");
    assert_eq!(noise["text"], "");
    assert_eq!(
        noise["review"],
        serde_json::json!({"needed": true, "reasons": ["no_speech"]})
    );
    assert_eq!(clean["review"]["needed"], false, "{}", clean["review"]);
    let confidence = clean["review"]["confidence"].as_f64().unwrap();
    assert!(confidence > 0.6 && confidence <= 1.0, "{confidence}");
    let id = |j: &serde_json::Value| j["id"].as_str().unwrap().to_string();
    let verbose = s
        .get(&format!(
            "/v1/jobs/{}/transcript?format=verbose_json",
            id(&noise)
        ))
        .json();
    assert_eq!(
        verbose["review"]["reasons"],
        serde_json::json!(["no_speech"])
    );

    let listed = |q: &str| -> Vec<String> {
        let r = s.get(&format!("/v1/jobs?{q}"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(id)
            .collect()
    };
    assert_eq!(listed("review=needed"), [id(&noise)]);
    assert_eq!(listed("review=ok"), [id(&clean)]);
    assert_eq!(listed("").len(), 2);
    let bad = s.get("/v1/jobs?review=maybe");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "invalid_value");

    let metrics = s.get("/metrics").text();
    assert!(
        metrics.contains("earshot_review_needed_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("earshot_review_reasons_total{reason=\"no_speech\"} 1\n"));
    assert!(metrics.contains("earshot_review_reasons_total{reason=\"low_confidence\"} 0\n"));
}

/// `serve --language` and `--glossary` apply to every note that does not bring its own
/// language or prompt; a request's `language=auto` still detects. A glossary longer than
/// the model reads stops the start with a sentence saying so.
#[test]
fn service_wide_language_and_glossary() {
    let dir = tempfile::tempdir().unwrap();
    let glossary = dir.path().join("names.txt");
    std::fs::write(&glossary, "# shop names\nГрафские развалины\nНаполеон\n").unwrap();
    let s = Server::start(
        "base",
        &["--language", "en", "--glossary", glossary.to_str().unwrap()],
    );
    let ru = read_fixture("telegram_ru.oga");
    let job = |q: &str| {
        let r = s.req(
            "POST",
            &format!("/v1/jobs{q}"),
            &[("Content-Type", "audio/ogg")],
            &ru,
        );
        assert_eq!(r.status, 202, "{}", r.text());
        s.wait_job(r.json()["id"].as_str().unwrap(), Duration::from_secs(120))
    };
    assert_eq!(job("")["language"], "en", "the service default");
    assert_eq!(
        job("?language=auto")["language"],
        "ru",
        "the request's own choice"
    );

    let long = dir.path().join("long.txt");
    std::fs::write(&long, "Графские развалины, Наполеон, Медовик\n".repeat(40)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
        .current_dir(root())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--model",
            "base",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--glossary")
        .arg(&long)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tokens; the model reads at most 224"), "{err}");
}
