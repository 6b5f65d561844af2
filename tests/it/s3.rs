//! The audio in an S3 bucket (issue #16), against scripts/test.sh's Garage: what a node does
//! when the store refuses a PUT, goes away while the node runs, or comes back. These run
//! where `EARSHOT_TEST_S3_URL` names a bucket; elsewhere they say so and pass (under CI they
//! must run).

use std::time::{Duration, Instant};

use crate::common::server::{s3_env, Server};
use crate::common::*;

/// The test bucket's URL, if scripts/test.sh started Garage.
fn bucket() -> Option<String> {
    let url = std::env::var("EARSHOT_TEST_S3_URL").ok();
    if url.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the S3 tests: scripts/test.sh starts Garage and sets EARSHOT_TEST_S3_URL"
        );
        eprintln!("skipped: EARSHOT_TEST_S3_URL is not set (scripts/test.sh sets it)");
    }
    url
}

/// A node whose audio goes to a prefix of its own in the test bucket, through `env`.
fn node(url: &str, env: &[(&str, String)], extra: &[&str]) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("{url}/s3-{}", uuid::Uuid::now_v7().simple());
    let mut args = vec!["--audio-store", store.as_str()];
    args.extend_from_slice(extra);
    let mut s = Server::start_with(tmp.path(), tmp.path(), "tiny.en", &args, env);
    s.keep(tmp);
    s
}

fn assert_unavailable(r: &crate::common::server::Resp, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "storage_unavailable", "{what}: {e}");
    assert!(r.header("retry-after").is_some(), "{what}: no Retry-After");
}

/// A PUT the store refuses (a key that may only read) is a 503 the client can retry, and
/// leaves no job: a row never points at a missing object.
#[test]
fn a_refused_put_is_503_and_leaves_no_job() {
    let Some(url) = bucket() else { return };
    let s = node(&url, &s3_env(true), &[]);
    // The bucket answers to this key, so the node is ready; it only cannot write.
    assert_eq!(s.get("/readyz").status, 200);
    let audio = read_fixture("telegram_jfk.oga");
    let r = s.multipart("/v1/jobs", &[], Some(("a.oga", &audio)), &[]);
    assert_unavailable(&r, "POST /v1/jobs");
    let r = s.multipart(
        "/v1/audio/transcriptions",
        &[("model", "whisper-1")],
        Some(("a.oga", &audio)),
        &[],
    );
    assert_unavailable(&r, "POST /v1/audio/transcriptions");
    let jobs = s.get("/v1/jobs").json();
    assert_eq!(jobs["data"].as_array().unwrap().len(), 0, "{jobs}");
    let spool = std::fs::read_dir(s.data_dir.join("spool")).unwrap().count();
    assert_eq!(spool, 0, "the spooled uploads went");
}

/// A store that goes away while the node runs: /readyz says so (503), uploads are refused
/// with 503 and nothing stored, and a queued note whose audio cannot be fetched waits and
/// is retried, not failed. When the store is back, everything works again.
#[test]
fn a_store_that_goes_away_and_comes_back() {
    let Some(url) = bucket() else { return };
    let endpoint = std::env::var("EARSHOT_TEST_S3_ENDPOINT").unwrap();
    let upstream = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("the endpoint is http://IP:PORT");
    let proxy = TcpProxy::start(upstream);
    let mut env = s3_env(false);
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL", format!("http://{}", proxy.addr)));
    let s = node(&url, &env, &["--workers", "1", "--threads-per-job", "1"]);
    let ready = s.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["audio_store"]["ok"], true);

    // A note of about half a minute keeps the one worker busy while a second note is
    // posted and the store is cut: the second note's audio cannot be fetched when its turn
    // comes.
    let mut reader = hound::WavReader::open(fixture("goforward_16k.wav")).unwrap();
    let speech: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect();
    let long = wav16k(std::iter::repeat_n(speech, 12).flatten(), None);
    let first = s.multipart("/v1/jobs", &[], Some(("long.wav", &long)), &[]);
    assert_eq!(first.status, 202, "{}", first.text());
    let first = first.json()["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    while s.get(&format!("/v1/jobs/{first}")).json()["status"] != "running" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the long note never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let audio = read_fixture("telegram_jfk.oga");
    let second = s.multipart("/v1/jobs", &[], Some(("jfk.oga", &audio)), &[]);
    assert_eq!(second.status, 202, "{}", second.text());
    let second = second.json()["id"].as_str().unwrap().to_string();
    proxy.set_up(false);
    assert_eq!(
        s.get(&format!("/v1/jobs/{first}")).json()["status"],
        "running",
        "the long note must still hold the worker when the store goes"
    );

    let ready = s.get("/readyz");
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["audio_store"]["ok"], false);
    let r = s.multipart("/v1/jobs", &[], Some(("x.oga", &audio)), &[]);
    assert_unavailable(&r, "POST /v1/jobs while the store is away");

    // The worker reaches the second note, cannot fetch its audio, and puts it back.
    let started = Instant::now();
    while !s
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("audio store unavailable; the job waits for it"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the worker never met the missing store"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    proxy.set_up(true);
    let j = s.wait_job(&second, Duration::from_secs(120));
    assert_eq!(j["status"], "done", "{j}");
    assert!(
        j["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("country"),
        "{j}"
    );
    assert_eq!(
        s.wait_job(&first, Duration::from_secs(300))["status"],
        "done"
    );
    assert_eq!(s.get("/readyz").status, 200);
    let got = s.get(&format!("/v1/jobs/{second}/audio"));
    assert!(got.body == audio, "the audio comes back byte for byte");
    let jobs = s.get("/v1/jobs").json();
    assert_eq!(jobs["data"].as_array().unwrap().len(), 2, "{jobs}");
}
