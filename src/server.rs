//! Start-up of `earshot serve`: data folder, database (migrated), blob store, model, workers,
//! listener; then serve until a shutdown signal, and wind down within the grace period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::Settings;
use crate::config::{AudioStore, Database};
use crate::http::{self, AppState};
use crate::jobs::Service;
use crate::store::{Blobs, FsBlobs, Outbox, Postgres, S3Blobs, Sqlite, Store};

/// Run the service until SIGTERM/SIGINT.
pub async fn run(cfg: Settings) -> anyhow::Result<()> {
    eprintln!("earshot serve: effective configuration\n{}", cfg.describe());
    let keys = cfg.keys()?;
    let telegram = cfg.telegram()?;
    let fetch_rules = cfg.fetch_rules();
    if keys.is_empty() && !cfg.listen.ip().is_loopback() {
        tracing::warn!(listen = %cfg.listen, "NO API KEY IS SET and the service listens beyond this machine: anyone who can reach it can use it. Set --api-key / EARSHOT_API_KEYS.");
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data folder {}", cfg.data_dir.display()))?;
    // Both stores block: SQLite on its one connection, PostgreSQL on the network (and its
    // client must not run on a runtime thread). Here they are opened and recovered on the
    // blocking pool; after that, only `jobs::Service` (for the handlers), the worker threads
    // and the webhook thread call them.
    let db: Arc<dyn Store> = match cfg.database()? {
        Database::Sqlite(path) => Arc::new(
            tokio::task::spawn_blocking(move || {
                Sqlite::open(&path)
                    .with_context(|| format!("opening the database {}", path.display()))
            })
            .await??,
        ),
        Database::Postgres(url) => {
            let url = url.expose().to_string();
            let pg = tokio::task::spawn_blocking(move || Postgres::open(&url))
                .await?
                .context("connecting to PostgreSQL (--database-url)")?;
            Arc::new(pg)
        }
    };
    let blobs: Arc<dyn Blobs> = match cfg.audio_store()? {
        AudioStore::Folder(dir) => Arc::new(
            FsBlobs::open(&dir)
                .with_context(|| format!("opening the audio folder {}", dir.display()))?,
        ),
        AudioStore::S3(url) => {
            let spool = cfg.data_dir.join("spool");
            Arc::new(
                tokio::task::spawn_blocking(move || {
                    S3Blobs::open(&url, &spool, &crate::store::S3Options::from_env())
                })
                .await?
                .context("opening the audio store (--audio-store)")?,
            )
        }
    };
    let (requeued, crashed) = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || db.recover_running(crate::jobs::MAX_ATTEMPTS)).await??
    };
    if requeued > 0 {
        tracing::info!(
            requeued,
            "jobs left running by the previous process are queued again"
        );
    }
    if crashed > 0 {
        tracing::error!(
            crashed,
            "jobs that were running each time the process died are failed as crashed_worker"
        );
    }
    let started = Instant::now();
    let model = cfg.model.clone();
    let engine = Arc::new(
        tokio::task::spawn_blocking(move || model.load())
            .await?
            .context("loading the model")?,
    );
    let defaults = cfg.defaults(&engine)?;
    let backend = engine.backend().clone();
    let par = cfg.parallelism(&backend);
    eprintln!(
        "earshot serve: backend={backend} workers={} threads_per_job={} cpu_features={}",
        par.jobs,
        par.threads,
        crate::engine::cpu_features()
    );
    tracing::info!(model = %engine.model_path().display(), took_ms = started.elapsed().as_millis() as u64, backend = %backend, "model loaded");
    let limits = cfg.limits;
    let queue = Service::new(
        db.clone(),
        blobs,
        engine,
        limits,
        par.jobs,
        par.threads,
        defaults,
    );
    let workers = queue.start();
    let model_name = cfg.model.model.clone();
    let grace = cfg.shutdown_grace;
    let limits = crate::listener::Limits {
        max_connections: fit_connections(cfg.connections.max_connections),
        ..cfg.connections
    };
    let (listen, retention_days) = (cfg.listen, cfg.retention_days);
    let (secret, allow) = (
        cfg.webhook_secret.as_ref().map(|s| s.expose().to_string()),
        cfg.webhook_allow_private,
    );
    let state = AppState::new(cfg, keys, queue.clone(), model_name);
    let local_files = telegram.as_ref().and_then(|t| t.local_files.clone());
    let bot = match telegram {
        Some(bot) => {
            let (queue, db, rt) = (queue.clone(), db.clone(), tokio::runtime::Handle::current());
            Some(
                tokio::task::spawn_blocking(move || crate::telegram::start(bot, queue, db, rt))
                    .await?
                    .context("starting the Telegram bot (--telegram)")?,
            )
        }
        None => None,
    };
    crate::fetch::Fetcher {
        service: queue.clone(),
        bot,
        local_files,
        urls: fetch_rules,
    }
    .start()
    .context("starting the fetch threads")?;
    {
        // The webhook body is the body of GET /v1/jobs/{id}, signed audio URL included.
        let db: Arc<dyn Outbox> = db;
        let state = state.clone();
        std::thread::Builder::new()
            .name("earshot-webhooks".into())
            .spawn(move || {
                let db2 = db.clone();
                crate::webhooks::run(db, secret, allow, move |job| {
                    let delivery = db2.latest_delivery(&job.id).ok().flatten();
                    state.job_body(job.clone(), delivery)
                })
            })?;
    }
    if let Some(days) = retention_days {
        let queue = queue.clone();
        tokio::spawn(async move {
            loop {
                match queue.expire(days).await {
                    Ok(ids) => {
                        for id in ids {
                            tracing::info!(id = %id, days, "deleted by the retention policy");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "retention sweep failed"),
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    // SIGHUP: read the API keys again (a revoked key is refused from then on).
    {
        let state = state.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                state.reload_keys();
            }
        });
    }
    let app = http::router(state);
    // One plain line that scripts and tests can wait for.
    eprintln!("earshot: listening on http://{addr}");

    // SIGTERM/SIGINT: claim nothing more and stop accepting at once; running jobs get the
    // grace period, then whisper is interrupted and their jobs go back to the queue.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let signal = {
        let queue = queue.clone();
        async move {
            crate::shutdown::signal().await;
            queue.stop();
            let _ = stop_tx.send(true);
        }
    };
    let wind_down = {
        let queue = queue.clone();
        tokio::spawn(async move {
            if stop_rx.wait_for(|s| *s).await.is_err() {
                return; // the server ended without a signal
            }
            let running = || workers.iter().any(|w| !w.is_finished());
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && running() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if running() {
                tracing::warn!(
                    grace_s = grace.as_secs(),
                    "grace period over: interrupting running jobs; they are queued again"
                );
                queue.engine.cancel();
                let hard = Instant::now() + Duration::from_secs(10);
                while Instant::now() < hard && running() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    };
    // Connections get a little longer than the jobs, so a synchronous client whose job was
    // interrupted still gets its 503 answer.
    crate::listener::serve(listener, app, limits, signal, move || {
        grace + Duration::from_secs(2)
    })
    .await;
    let _ = wind_down.await;
    Ok(())
}

/// The connection cap, lowered to what the file-descriptor limit allows (raised to its hard
/// maximum first), with room for the database, audio files and the webhook sender.
fn fit_connections(wanted: usize) -> usize {
    const RESERVED: u64 = 64;
    // SAFETY: getrlimit/setrlimit fill or read a plain struct.
    let soft = unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return wanted;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
        r.rlim_cur as u64
    };
    let fits = soft.saturating_sub(RESERVED).max(8) as usize;
    if fits < wanted {
        tracing::warn!(
            wanted,
            max_connections = fits,
            open_files_limit = soft,
            "the open-files limit is low: fewer connections are accepted"
        );
        eprintln!("earshot serve: max_connections lowered to {fits} (open-files limit {soft})");
    }
    wanted.min(fits)
}
