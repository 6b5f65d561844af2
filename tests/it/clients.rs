//! Issue #39 against a real server: named client keys scoped to their own jobs, an admin key
//! that sees all, keys read again on SIGHUP, and the fair share between clients.

use std::time::{Duration, Instant};

use crate::common::server::{Resp, Server};
use crate::common::*;

const A: (&str, &str) = ("Authorization", "Bearer aaaa-secret");
const B: (&str, &str) = ("Authorization", "Bearer bbbb-secret");
const C: (&str, &str) = ("Authorization", "Bearer cccc-secret");
const OPS: (&str, &str) = ("Authorization", "Bearer oooo-secret");

fn post(s: &Server, key: (&str, &str), audio: &[u8], extra: &[(&str, &str)]) -> Resp {
    let mut h = vec![key, ("Content-Type", "audio/ogg")];
    h.extend_from_slice(extra);
    s.req("POST", "/v1/jobs", &h, audio)
}

fn get(s: &Server, key: (&str, &str), path: &str) -> Resp {
    s.req("GET", path, &[key], b"")
}

fn ids(r: &Resp) -> Vec<String> {
    r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

/// Two client keys and an admin key: each client reaches only its own jobs, through every
/// route; the other's ids answer 404 as if they did not exist; the admin sees all and can
/// narrow by client. A key removed from the keys file is refused within a second of SIGHUP,
/// and its jobs are kept.
#[test]
fn each_client_key_reaches_only_its_own_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# the third shop\nshop-c=cccc-secret\n").unwrap();
    let s = Server::start(
        "tiny.en",
        &[
            "--api-key",
            "shop-a=aaaa-secret",
            "--api-key",
            "shop-b=bbbb-secret",
            "--admin-api-key",
            "ops=oooo-secret",
            "--api-keys-file",
            keys.to_str().unwrap(),
        ],
    );
    let audio = read_fixture("telegram_jfk.oga");
    let a = post(&s, A, &audio, &[("Idempotency-Key", "same-key")]);
    assert_eq!(a.status, 202, "{}", a.text());
    let a = a.json();
    assert_eq!(a["client"], "shop-a");
    let a_id = a["id"].as_str().unwrap().to_string();
    // The same Idempotency-Key from another client is that client's own: a new job.
    let b = post(&s, B, &audio, &[("Idempotency-Key", "same-key")]);
    assert_eq!(b.status, 202, "{}", b.text());
    assert!(b.header("idempotent-replayed").is_none());
    let b_id = b.json()["id"].as_str().unwrap().to_string();
    assert_ne!(a_id, b_id);
    let c = post(&s, C, &audio, &[]);
    assert_eq!(c.status, 202, "{}", c.text());
    let c_id = c.json()["id"].as_str().unwrap().to_string();
    s.wait_job_with(&a_id, OPS);
    s.wait_job_with(&b_id, OPS);

    // Own jobs: every route.
    for path in [
        format!("/v1/jobs/{a_id}"),
        format!("/v1/jobs/{a_id}/transcript"),
        format!("/v1/jobs/{a_id}/audio"),
    ] {
        assert_eq!(get(&s, A, &path).status, 200, "{path}");
    }
    assert_eq!(ids(&get(&s, A, "/v1/jobs")), [a_id.as_str()]);
    // Another client's: 404 job_not_found on every route, as for an id that does not exist.
    for (method, path) in [
        ("GET", format!("/v1/jobs/{b_id}")),
        ("GET", format!("/v1/jobs/{b_id}/transcript")),
        ("GET", format!("/v1/jobs/{b_id}/audio")),
        ("POST", format!("/v1/jobs/{b_id}/retry")),
        ("DELETE", format!("/v1/jobs/{b_id}")),
    ] {
        let r = s.req(method, &path, &[A], b"");
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (404, Some("job_not_found")),
            "{method} {path}"
        );
    }
    // A client cannot list another's by asking.
    assert_eq!(get(&s, A, "/v1/jobs?client=shop-b").status, 400);
    // The signed audio URL in a client's view opens that job's audio without a key.
    let url = get(&s, A, &format!("/v1/jobs/{a_id}")).json()["audio_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.get(&url).status, 200);
    // The admin sees all, and narrows by client.
    let mut all = ids(&get(&s, OPS, "/v1/jobs"));
    all.sort();
    let mut want = vec![a_id.clone(), b_id.clone(), c_id.clone()];
    want.sort();
    assert_eq!(all, want);
    assert_eq!(
        ids(&get(&s, OPS, "/v1/jobs?client=shop-b")),
        [b_id.as_str()]
    );
    assert_eq!(get(&s, OPS, &format!("/v1/jobs/{b_id}")).status, 200);
    // Deleting its own job works; the other client's stays.
    assert_eq!(
        s.req("DELETE", &format!("/v1/jobs/{a_id}"), &[A], b"")
            .status,
        200
    );
    assert_eq!(get(&s, OPS, &format!("/v1/jobs/{b_id}")).status, 200);
    let metrics = s.get("/metrics").text();
    assert!(
        metrics.contains("earshot_jobs_submitted_total{client=\"shop-b\"} 1"),
        "{metrics}"
    );

    // Revoked from the keys file: refused within a second of SIGHUP; its job is kept.
    assert_eq!(get(&s, C, "/v1/jobs").status, 200);
    std::fs::write(&keys, "# shop-c is gone\n").unwrap();
    let pid = s.child.id() as i32;
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let start = Instant::now();
    while get(&s, C, "/v1/jobs").status != 401 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the revoked key still works a second after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(&s, OPS, &format!("/v1/jobs/{c_id}")).status, 200);
    assert_eq!(get(&s, A, "/v1/jobs").status, 200, "the flags' keys stay");
}

/// The fair share, on one worker: client A queues 60 notes, then client B posts 4; B's four
/// are done before A has finished 20.
#[test]
fn one_clients_backlog_does_not_hold_up_anothers_notes() {
    let s = Server::start(
        "tiny.en",
        &[
            "--workers",
            "1",
            "--api-key",
            "shop-a=aaaa-secret",
            "--api-key",
            "shop-b=bbbb-secret",
        ],
    );
    let audio = read_fixture("telegram_jfk.oga");
    let mut a = Vec::new();
    for _ in 0..60 {
        let r = post(&s, A, &audio, &[]);
        assert_eq!(r.status, 202, "{}", r.text());
        a.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let mut b = Vec::new();
    for _ in 0..4 {
        let r = post(&s, B, &audio, &[]);
        assert_eq!(r.status, 202, "{}", r.text());
        b.push(r.json()["id"].as_str().unwrap().to_string());
    }
    for id in &b {
        s.wait_job_with(id, B);
    }
    let a_done = ids(&get(&s, A, "/v1/jobs?status=done&limit=100")).len();
    assert!(
        a_done < 20,
        "{a_done} of A's notes were done before B's four were"
    );
}
