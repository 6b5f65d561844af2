//! Start-up of `earshot serve`: data folder, database (migrated), blob store, model, workers,
//! listener; then serve until a shutdown signal, and wind down within the grace period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::audio::Limits;
use crate::config::ServeConfig;
use crate::http::{self, AppState};
use crate::jobs::Queue;
use crate::storage::{BlobStore, Db};

/// Run the service until SIGTERM/SIGINT.
pub async fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    eprintln!("earshot serve: effective configuration\n{}", cfg.describe());
    if cfg.api_keys.is_empty() && !cfg.listen.ip().is_loopback() {
        tracing::warn!(listen = %cfg.listen, "NO API KEY IS SET and the service listens beyond this machine: anyone who can reach it can use it. Set --api-key / EARSHOT_API_KEYS.");
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data folder {}", cfg.data_dir.display()))?;
    let db =
        Arc::new(Db::open(&cfg.data_dir.join("earshot.sqlite")).context("opening the database")?);
    let blobs =
        Arc::new(BlobStore::open(&cfg.data_dir.join("audio")).context("opening the audio store")?);
    let requeued = db.requeue_all_running()?;
    if requeued > 0 {
        tracing::info!(
            requeued,
            "jobs left running by the previous process are queued again"
        );
    }
    let started = Instant::now();
    let model = cfg.model.clone();
    let engine = Arc::new(
        tokio::task::spawn_blocking(move || model.load())
            .await?
            .map_err(anyhow::Error::msg)?,
    );
    let backend = engine.backend().clone();
    let par = cfg.parallelism(&backend);
    eprintln!(
        "earshot serve: backend={backend} workers={} threads_per_job={}",
        par.jobs, par.threads
    );
    tracing::info!(model = %engine.model_path().display(), took_ms = started.elapsed().as_millis() as u64, backend = %backend, "model loaded");
    let limits = Limits {
        max_bytes: cfg.max_upload_bytes,
        max_duration_s: cfg.max_duration,
    };
    let queue = Queue::new(db, blobs, engine, limits, par.jobs, par.threads);
    let workers = queue.start();
    {
        let (db, secret, allow) = (
            queue.db.clone(),
            cfg.webhook_secret.clone(),
            cfg.webhook_allow_private,
        );
        std::thread::Builder::new()
            .name("earshot-webhooks".into())
            .spawn(move || {
                let db2 = db.clone();
                crate::webhooks::run(db, secret, allow, move |job| {
                    crate::jobs::job_json(job, db2.latest_delivery(&job.id).ok().flatten().as_ref())
                })
            })?;
    }
    if let Some(days) = cfg.retention_days {
        let (db, blobs) = (queue.db.clone(), queue.blobs.clone());
        std::thread::Builder::new()
            .name("earshot-retention".into())
            .spawn(move || loop {
                match db.expired(days) {
                    Ok(ids) => {
                        for id in ids {
                            if let Ok(Some(Some(sha))) = db.delete(&id) {
                                let _ = blobs.remove(&sha);
                            }
                            tracing::info!(id = %id, days, "deleted by the retention policy");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "retention sweep failed"),
                }
                std::thread::sleep(Duration::from_secs(3600));
            })?;
    }
    let model_name = cfg.model.model.clone();
    let grace = Duration::from_secs(cfg.shutdown_grace);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let app = http::router(AppState::new(cfg, queue.clone(), model_name));
    // One plain line that scripts and tests can wait for.
    eprintln!("earshot: listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::shutdown::signal())
        .await?;
    queue.stop();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && workers.iter().any(|w| !w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if workers.iter().any(|w| !w.is_finished()) {
        tracing::warn!(
            "grace period over with jobs still running; they are queued again at the next start"
        );
    }
    Ok(())
}
