//! Several `earshot serve` nodes on one PostgreSQL database and one audio folder (issue
//! #16). These run where `EARSHOT_IT_POSTGRES` names a server: scripts/test.sh's second run
//! of the service's tests. Elsewhere they say so and pass.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::common::server::{multipart_body, request, sha256_hex, Server};
use crate::common::*;

fn postgres_here() -> bool {
    let here = std::env::var_os("EARSHOT_IT_POSTGRES").is_some();
    if !here {
        eprintln!("skipped: EARSHOT_IT_POSTGRES is not set (scripts/test.sh sets it)");
    }
    here
}

/// Two nodes share the queue; notes go to either, some with one Idempotency-Key sent to both
/// at once; one node is killed with `kill -9` while a note is running and a third takes its
/// place. Every accepted note ends `done` with its audio byte for byte, a key makes one job,
/// and each job's webhook arrives once.
#[test]
fn nodes_share_the_queue_and_lose_nothing_when_one_is_killed() {
    if !postgres_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = receiver(listener, 0);
    let args = [
        "--workers",
        "1",
        "--threads-per-job",
        "1",
        "--webhook-allow-private",
    ];
    let mut a = Server::start_in(tmp.path(), "tiny.en", &args);
    let b = Server::start_in(tmp.path(), "tiny.en", &args);
    let files = [
        "telegram_jfk.oga",
        "goforward.mp3",
        "goforward.flac",
        "goforward_16k.wav",
        "cards_48k_stereo.wav",
        "chrome_jfk.webm",
    ];
    // 16 posts, alternating nodes: the first 8 are 4 pairs, each pair one key and one file
    // sent to both nodes at the same moment; the other 8 have no key.
    let posts: Vec<(String, &str, Option<String>)> = (0..16)
        .map(|i| {
            let addr = if i % 2 == 0 { &a.addr } else { &b.addr };
            if i < 8 {
                (
                    addr.clone(),
                    files[(i / 2) % files.len()],
                    Some(format!("key-{}", i / 2)),
                )
            } else {
                (addr.clone(), files[i % files.len()], None)
            }
        })
        .collect();
    let answers: Vec<(String, &str, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = posts
            .iter()
            .map(|(addr, f, key)| {
                let hook = hook.clone();
                s.spawn(move || {
                    let (ct, body) = multipart_body(
                        &[("callback_url", hook.as_str())],
                        Some((f, &read_fixture(f))),
                    );
                    let mut h = vec![("Content-Type", ct.as_str())];
                    if let Some(k) = key {
                        h.push(("Idempotency-Key", k.as_str()));
                    }
                    let r = request(addr, "POST", "/v1/jobs", &h, &body);
                    assert_eq!(r.status, 202, "{f}: {}", r.text());
                    (
                        r.json()["id"].as_str().unwrap().to_string(),
                        *f,
                        key.clone(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // One key, one job, whichever node each copy went to.
    let mut by_key: HashMap<String, HashSet<String>> = HashMap::new();
    for (id, _, key) in &answers {
        if let Some(k) = key {
            by_key.entry(k.clone()).or_default().insert(id.clone());
        }
    }
    assert_eq!(by_key.len(), 4);
    assert!(by_key.values().all(|ids| ids.len() == 1), "{by_key:?}");
    let jobs: HashMap<String, &str> = answers.iter().map(|(id, f, _)| (id.clone(), *f)).collect();
    assert_eq!(jobs.len(), 12);

    // Kill node A as soon as any note is running (on either node), and start node C.
    let started = Instant::now();
    while b.get("/v1/jobs?status=running").json()["data"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(started.elapsed() < Duration::from_secs(120), "nothing ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill9();
    let c = Server::start_in(tmp.path(), "tiny.en", &args);

    // A note A was running waits out its 60 s lease, then B or C takes it over.
    for (id, f) in &jobs {
        let j = c.wait_job(id, Duration::from_secs(300));
        assert_eq!(j["status"], "done", "{f}: {j}");
        assert!(!j["text"].as_str().unwrap().is_empty(), "{f}");
        let audio = b.get(&format!("/v1/jobs/{id}/audio"));
        assert_eq!(
            sha256_hex(&audio.body),
            sha256_hex(&read_fixture(f)),
            "{f}: audio changed"
        );
    }
    let listed = c.get("/v1/jobs?limit=100").json()["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, 12, "no duplicate jobs");

    // One webhook per job: 12 deliveries, then no more.
    let mut delivered: HashMap<String, String> = HashMap::new();
    while delivered.len() < 12 {
        let (h, body) = got
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("only {} webhooks arrived", delivered.len()));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        assert!(jobs.contains_key(&id), "a webhook for an unknown job {id}");
        let delivery = header(&h, "x-earshot-delivery").to_string();
        assert!(
            delivered.insert(id.clone(), delivery).is_none(),
            "job {id} was delivered twice"
        );
    }
    assert!(
        got.recv_timeout(Duration::from_secs(3)).is_err(),
        "a webhook was delivered twice"
    );
}
