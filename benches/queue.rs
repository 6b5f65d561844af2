//! What the queue itself costs per job, without transcription: insert, then claim and finish
//! (`finish_done` with a voice note's result, which also queues its webhook), by 1 and 2
//! workers on one node and by 3 nodes of 2 workers, on SQLite and on PostgreSQL.
//!
//! `bench/bench-queue.sh` starts a throw-away PostgreSQL server and runs this; it reads the
//! server from EARSHOT_BENCH_DATABASE_URL and makes a fresh database per run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use earshot::job::{JobOptions, JobResult, NewJob, Priority};
use earshot::store::{Postgres, Sqlite, Store};

const JOBS: usize = 2000;

fn job(i: usize) -> NewJob {
    NewJob {
        sha256: format!("{i:064x}"),
        size: 40_000 + i as u64,
        content_type: Some("audio/ogg".into()),
        filename: Some(format!("note-{i}.oga")),
        external_id: Some(format!("ig-{i}")),
        source: None,
        options: JobOptions {
            language: Some("ru".into()),
            ..JobOptions::default()
        },
        priority: Priority::Queued,
        idempotency_key: Some(format!("k-{i}")),
        callback_url: Some("http://127.0.0.1:9/hook".into()),
        client: Some(format!("shop-{}", i % 3)),
        limit: None,
        fetch: None,
    }
}

/// A finished voice note's stored result, about 1 KB.
fn result() -> JobResult {
    serde_json::from_value(serde_json::json!({
        "text": "Здравствуйте, подскажите, пожалуйста, когда придёт мой заказ номер двадцать девять триста сорок? Спасибо.",
        "language": "ru",
        "duration": 6.4,
        "segments": [{ "id": 0, "start": 0.0, "end": 6.4, "text": "Здравствуйте, подскажите, пожалуйста, когда придёт мой заказ номер двадцать девять триста сорок? Спасибо.", "tokens": [], "temperature": 0.0, "avg_logprob": -0.21, "no_speech_prob": 0.01, "compression_ratio": 1.3 }],
        "review": { "needed": false, "reasons": [] },
        "language_probability": null,
        "task": "transcribe"
    }))
    .expect("a stored result")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Insert JOBS jobs, then let `workers` on each of `nodes` claim and finish them all; print
/// the figures.
fn run(name: &str, nodes: Vec<Arc<dyn Store>>, workers: usize) {
    let t = Instant::now();
    for i in 0..JOBS {
        nodes[i % nodes.len()].insert(job(i)).unwrap();
    }
    let insert_ms = t.elapsed().as_secs_f64() * 1000.0 / JOBS as f64;
    let done = result();
    let t = Instant::now();
    let mut each: Vec<Duration> = std::thread::scope(|s| {
        let workers: Vec<_> = nodes
            .iter()
            .flat_map(|n| std::iter::repeat_n(n.clone(), workers))
            .map(|db| {
                let done = &done;
                s.spawn(move || {
                    let mut times = Vec::new();
                    loop {
                        let t = Instant::now();
                        let Some(j) = db.claim(60_000, 30_000, 3).unwrap() else {
                            break;
                        };
                        db.finish_done(&j.id, done).unwrap();
                        times.push(t.elapsed());
                    }
                    times
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let wall = t.elapsed().as_secs_f64();
    assert_eq!(each.len(), JOBS, "every job claimed once");
    each.sort();
    println!(
        "{name}: {} node(s) x {workers} worker(s), {JOBS} jobs: insert {insert_ms:.2} ms/job; claim + finish {:.2} ms/job mean, p50 {:.2}, p99 {:.2} ms; {:.0} jobs/s through the queue",
        nodes.len(),
        each.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / JOBS as f64,
        percentile(&each, 0.5),
        percentile(&each, 0.99),
        JOBS as f64 / wall,
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    for workers in [1, 2] {
        let file = dir.path().join(format!("q{workers}.sqlite"));
        run(
            "sqlite",
            vec![Arc::new(Sqlite::open(&file).unwrap())],
            workers,
        );
    }
    let Ok(url) = std::env::var("EARSHOT_BENCH_DATABASE_URL") else {
        eprintln!("set EARSHOT_BENCH_DATABASE_URL for PostgreSQL (bench/bench-queue.sh does)");
        return;
    };
    for (nodes, workers) in [(1, 1), (1, 2), (3, 2)] {
        let name = format!("earshot_bench_{nodes}_{workers}_{}", std::process::id());
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let mut config: postgres::Config = url.parse().unwrap();
        config.dbname(&name);
        let nodes: Vec<Arc<dyn Store>> = (0..nodes)
            .map(|_| Arc::new(Postgres::with_config(config.clone()).unwrap()) as Arc<dyn Store>)
            .collect();
        run("postgres", nodes, workers);
    }
}
