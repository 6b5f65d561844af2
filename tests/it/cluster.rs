//! Several `earshot serve` nodes on one PostgreSQL database and one S3 bucket (issue #16),
//! each with a data folder of its own. These run where `EARSHOT_IT_POSTGRES` names a server
//! and `EARSHOT_IT_S3` a bucket: scripts/test.sh's second run of the service's tests.
//! Elsewhere they say so and pass.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::common::server::{multipart_body, request, sha256_hex, Server};
use crate::common::*;

fn cluster_here() -> bool {
    let here = ["EARSHOT_IT_POSTGRES", "EARSHOT_IT_S3"]
        .iter()
        .all(|v| std::env::var_os(v).is_some());
    if !here {
        eprintln!(
            "skipped: EARSHOT_IT_POSTGRES and EARSHOT_IT_S3 are not both set (scripts/test.sh sets them)"
        );
    }
    here
}

/// The operator's fear, as issue #16 puts it: three nodes share the queue; 200 notes go to
/// them, 20 Idempotency-Keys each sent to two nodes at once; one node is killed with `kill -9`
/// while a note runs, and another is stopped with SIGTERM and started again. Every accepted
/// note ends `done` with its audio byte for byte, a key makes one job, and each job's
/// webhook arrives once.
#[test]
fn three_nodes_lose_nothing_when_one_is_killed_and_one_restarted() {
    if !cluster_here() {
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
    // One cluster (database and bucket prefix named after `tmp`), three data folders.
    let dir = |n: &str| {
        let d = tmp.path().join(n);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let node = |n: &str| Server::start_node(tmp.path(), &dir(n), "tiny.en", &args);
    let mut a = node("a");
    let mut b = node("b");
    let c = node("c");
    let files = [
        "goforward.mp3",
        "goforward.flac",
        "goforward_16k.wav",
        "goforward_8k_mulaw.wav",
        "telegram_jfk.oga",
        "cards_48k_stereo.wav",
    ];
    let addrs = [a.addr.clone(), b.addr.clone(), c.addr.clone()];
    // 200 posts over the three nodes: the first 40 are 20 pairs, each pair one key and one
    // file sent to two nodes at the same moment; the other 160 have no key.
    let posts: Vec<(String, &str, Option<String>)> = (0..200)
        .map(|i| {
            let addr = addrs[i % 3].clone();
            if i < 40 {
                (
                    addr,
                    files[(i / 2) % files.len()],
                    Some(format!("key-{}", i / 2)),
                )
            } else {
                (addr, files[i % files.len()], None)
            }
        })
        .collect();
    let answers: Vec<(String, &str, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = posts
            .chunks(2)
            .map(|pair| {
                let hook = hook.clone();
                s.spawn(move || {
                    pair.iter()
                        .map(|(addr, f, key)| {
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
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    // One key, one job, whichever node each copy went to.
    let mut by_key: HashMap<String, HashSet<String>> = HashMap::new();
    for (id, _, key) in &answers {
        if let Some(k) = key {
            by_key.entry(k.clone()).or_default().insert(id.clone());
        }
    }
    assert_eq!(by_key.len(), 20);
    assert!(by_key.values().all(|ids| ids.len() == 1), "{by_key:?}");
    let jobs: HashMap<String, &str> = answers.iter().map(|(id, f, _)| (id.clone(), *f)).collect();
    assert_eq!(jobs.len(), 180);

    // Kill node A as soon as notes are running, then stop B with SIGTERM (it finishes the
    // note it runs) and start it again.
    let started = Instant::now();
    while c.get("/v1/jobs?status=running").json()["data"]
        .as_array()
        .unwrap()
        .len()
        < 2
    {
        assert!(started.elapsed() < Duration::from_secs(120), "nothing ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill9();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(b.child.id() as i32, libc::SIGTERM) };
    let status = b.child.wait().unwrap();
    assert!(status.success(), "node B's shutdown: {status:?}");
    let b = node("b");

    // A note A was running waits out its 60 s lease, then B or C takes it over.
    for (id, f) in &jobs {
        let j = c.wait_job(id, Duration::from_secs(600));
        assert_eq!(j["status"], "done", "{f}: {j}");
        assert!(!j["text"].as_str().unwrap().is_empty(), "{f}");
        let audio = b.get(&format!("/v1/jobs/{id}/audio"));
        assert_eq!(
            sha256_hex(&audio.body),
            sha256_hex(&read_fixture(f)),
            "{f}: audio changed"
        );
    }
    let listed = c.get("/v1/jobs?limit=1000").json()["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, 180, "no duplicate jobs");

    // One webhook per job: 180 deliveries, then no more.
    let mut delivered: HashMap<String, String> = HashMap::new();
    while delivered.len() < jobs.len() {
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

/// The throughput figure of docs/cluster.md (bench/bench-cluster.sh runs it, in release mode):
/// notes per minute through `EARSHOT_BENCH_NODES` nodes (default 1) on one database and
/// bucket, each with its default workers, for 60 Russian voice notes posted at once.
#[test]
#[ignore = "a benchmark: bench/bench-cluster.sh"]
fn throughput() {
    if !cluster_here() {
        return;
    }
    let nodes: usize = std::env::var("EARSHOT_BENCH_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let model = std::env::var("EARSHOT_BENCH_MODEL").unwrap_or_else(|_| "base".into());
    let tmp = tempfile::tempdir().unwrap();
    let servers: Vec<Server> = (0..nodes)
        .map(|i| {
            let d = tmp.path().join(i.to_string());
            std::fs::create_dir_all(&d).unwrap();
            Server::start_node(tmp.path(), &d, &model, &[])
        })
        .collect();
    let files = [
        "telegram_ru.oga",
        "whatsapp_ru.opus",
        "messenger_ru.mp4",
        "android_ru_opus.m4a",
    ];
    let notes = 60;
    let started = Instant::now();
    let ids: Vec<(usize, String)> = (0..notes)
        .map(|i| {
            let s = &servers[i % nodes];
            let r = s.multipart(
                "/v1/jobs",
                &[],
                Some((
                    files[i % files.len()],
                    &read_fixture(files[i % files.len()]),
                )),
                &[],
            );
            assert_eq!(r.status, 202, "{}", r.text());
            (i % nodes, r.json()["id"].as_str().unwrap().to_string())
        })
        .collect();
    let mut audio_s = 0.0;
    for (n, id) in &ids {
        let j = servers[*n].wait_job(id, Duration::from_secs(1800));
        assert_eq!(j["status"], "done", "{j}");
        audio_s += j["duration"].as_f64().unwrap_or(0.0);
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "throughput: {nodes} node(s), model {model}: {notes} notes ({audio_s:.0} s of audio) in {took:.1} s = {:.1} notes/min",
        notes as f64 * 60.0 / took
    );
}

/// Issue #39's fair share across nodes: two nodes of one worker each on one database; client
/// A queues 40 notes through node a, then client B posts 4 through node b. B's four are done
/// before A has finished 20: every node's claim takes turns between clients.
#[test]
fn two_nodes_take_turns_between_clients() {
    if !cluster_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--workers",
        "1",
        "--threads-per-job",
        "1",
        "--api-key",
        "shop-a=aaaa-secret",
        "--api-key",
        "shop-b=bbbb-secret",
    ];
    let dir = |n: &str| {
        let d = tmp.path().join(n);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let a = Server::start_node(tmp.path(), &dir("a"), "tiny.en", &args);
    let b = Server::start_node(tmp.path(), &dir("b"), "tiny.en", &args);
    let audio = read_fixture("telegram_jfk.oga");
    let post = |s: &Server, key: &str| {
        let auth = format!("Bearer {key}");
        let r = s.req(
            "POST",
            "/v1/jobs",
            &[("Authorization", &auth), ("Content-Type", "audio/ogg")],
            &audio,
        );
        assert_eq!(r.status, 202, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_string()
    };
    for _ in 0..40 {
        post(&a, "aaaa-secret");
    }
    let mine: Vec<String> = (0..4).map(|_| post(&b, "bbbb-secret")).collect();
    for id in &mine {
        b.wait_job_with(id, ("Authorization", "Bearer bbbb-secret"));
    }
    let done = a
        .req(
            "GET",
            "/v1/jobs?status=done&limit=100",
            &[("Authorization", "Bearer aaaa-secret")],
            b"",
        )
        .json();
    let a_done = done["data"].as_array().unwrap().len();
    assert!(
        a_done < 20,
        "{a_done} of A's notes were done before B's four"
    );
}
