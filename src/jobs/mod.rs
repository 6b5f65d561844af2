//! Jobs: the [`Service`] the API calls (submit, get, list, retry, delete, wait), the workers
//! that run the queue (`worker`), and a job as the API shows it (`json`). The record itself,
//! its options and its result are typed in [`crate::job`].
//!
//! The service owns the job rules: the Idempotency-Key decision, deduplication by content,
//! and the audio files' lifetime (a file goes when the last record pointing at it goes, in
//! the same step). Handlers parse, call it, and render.

mod estimate;
mod json;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::audio::Limits;
use crate::engine::{Engine, Progress};
use crate::error::ErrorCode;
use crate::job::{
    Defaults, Deleted, Delivery, Inserted, Job, ListFilter, NewJob, Priority, QueueFull, Status,
};
use crate::store::{Blobs, PendingBlob, StorageError, Store};

pub use estimate::{retry_after_s, Estimate};
pub use json::{job_json, JobView, ProgressView, WebhookView};
pub use worker::{Stats, BUCKETS_S, MAX_ATTEMPTS};

/// The job service: what the API calls, and what the workers share.
pub struct Service {
    db: Arc<dyn Store>,
    blobs: Arc<dyn Blobs>,
    pub engine: Arc<Engine>,
    pub limits: Limits,
    pub threads_per_job: usize,
    pub workers: usize,
    /// The service-wide language and prompt, for jobs that do not bring their own.
    pub defaults: Defaults,
    pub stats: Stats,
    pub finished: broadcast::Sender<String>,
    wake: (Mutex<u64>, Condvar),
    stopping: AtomicBool,
    /// How far each running long job has got (see [`Service::progress`]).
    progress: Mutex<std::collections::HashMap<String, Progress>>,
    /// Held while an audio file and the rows that point at it change together: storing an
    /// upload (the file, deduplicated by hash, then its row) and deleting a job (its row,
    /// then the file when no other row points at it). Without it, an upload of bytes that
    /// are already stored could find the file present, a delete could then remove it as
    /// unreferenced, and the upload's row would point at nothing. It covers this process;
    /// nodes sharing a database also take [`Records::lock_audio`](crate::store::Records::lock_audio) under it.
    audio_refs: Mutex<()>,
    /// Wakes the fetch threads when a job to fetch is submitted.
    fetch_wake: Condvar,
    fetch_wake_lock: Mutex<()>,
}

impl Service {
    pub fn new(
        db: Arc<dyn Store>,
        blobs: Arc<dyn Blobs>,
        engine: Arc<Engine>,
        limits: Limits,
        workers: usize,
        threads_per_job: usize,
        defaults: Defaults,
    ) -> Arc<Service> {
        let (finished, _) = broadcast::channel(1024);
        Arc::new(Service {
            db,
            blobs,
            engine,
            limits,
            threads_per_job,
            workers,
            defaults,
            stats: Stats::default(),
            finished,
            wake: (Mutex::new(0), Condvar::new()),
            stopping: AtomicBool::new(false),
            audio_refs: Mutex::new(()),
            fetch_wake: Condvar::new(),
            fetch_wake_lock: Mutex::new(()),
            progress: Mutex::new(Default::default()),
        })
    }

    fn lock_audio_refs(&self) -> std::sync::MutexGuard<'_, ()> {
        self.audio_refs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the blocking pool, in the current span: the one way from the async
    /// handlers to the stores, whose calls block (SQLite's one connection while a worker
    /// writes; the PostgreSQL client, which must not run on a runtime thread; fsyncs and
    /// bucket requests). Each public async method of the service is one such call.
    async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce(&Service) -> Result<T, JobError> + Send + 'static,
    {
        let me = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| f(&me)))
            .await
            .map_err(|e| JobError::Internal(e.to_string()))?
    }

    /// Make an upload durable and record its job: the audio file first (deduplicated by
    /// hash), then the row, as one step against [`Service::delete`]; wake a worker for a new
    /// job. `job` builds the row from the audio's hash and size. The Idempotency-Key rule
    /// lives here: the same key with the same bytes is the same job; the same key with other
    /// bytes is refused, and the bytes just stored go unless another job uses them.
    ///
    /// The slow part of storing (an fsync, a PUT to a bucket) is staged first, outside the
    /// locks, so that uploads are not stored one at a time and no database connection waits
    /// on the store. Bytes stored for a job that then fails to be recorded (staged in a
    /// bucket, or moved into place in the data folder just before the row was refused) are
    /// taken back.
    pub async fn submit(
        self: &Arc<Self>,
        blob: PendingBlob,
        job: impl FnOnce(String, u64) -> NewJob + Send + 'static,
    ) -> Result<Submitted, JobError> {
        self.blocking(move |s| Ok(s.submit_now(blob, job)?)).await
    }

    fn submit_now(
        &self,
        mut blob: PendingBlob,
        job: impl FnOnce(String, u64) -> NewJob,
    ) -> Result<Submitted, StorageError> {
        self.blobs.stage(&mut blob)?;
        let sha = blob.sha256();
        let submitted = self.record(blob, job);
        if submitted.is_err() {
            self.take_back(&sha);
        }
        let submitted = submitted?;
        if let Submitted::Created(_) = submitted {
            self.notify();
        }
        Ok(submitted)
    }

    /// Stored bytes no job came to use: removed unless a job uses them after all. When the
    /// database cannot say (it is down, which is likely why the job failed), they stay: an
    /// unreferenced object costs space, never audio.
    fn take_back(&self, sha: &str) {
        let _refs = self.lock_audio_refs();
        let gone = self.db.lock_audio(sha).and_then(|_audio| {
            if !self.db.sha_in_use(sha)? {
                self.blobs.remove(sha)?;
            }
            Ok(())
        });
        if let Err(e) = gone {
            tracing::warn!(sha, error = %e, "audio stored for a job that was not recorded, if any was, is left in the store");
        }
    }

    /// The locked half of [`Service::submit`]: the commit and the row, as one step against
    /// [`Service::delete`].
    fn record(
        &self,
        blob: PendingBlob,
        job: impl FnOnce(String, u64) -> NewJob,
    ) -> Result<Submitted, StorageError> {
        let _refs = self.lock_audio_refs();
        let _audio = self.db.lock_audio(&blob.sha256())?;
        let (sha, size) = self.blobs.commit(blob)?;
        let inserted = self.db.insert(job(sha.clone(), size))?;
        let unused = |s: &Service| -> Result<(), StorageError> {
            if !s.db.sha_in_use(&sha)? {
                s.blobs.remove(&sha)?;
            }
            Ok(())
        };
        Ok(match inserted {
            Inserted::New(stored) => Submitted::Created(stored),
            Inserted::Existing(stored) if stored.sha256 == sha => Submitted::Replayed(stored),
            Inserted::Existing(stored) => {
                unused(self)?;
                Submitted::KeyReused(stored)
            }
            Inserted::Full(full) => {
                unused(self)?;
                Submitted::QueueFull(full)
            }
        })
    }

    /// A job by id, with its latest webhook delivery.
    pub async fn get(self: &Arc<Self>, id: &str, scope: &Scope) -> Result<Shown, JobError> {
        let (id, scope) = (id.to_string(), scope.clone());
        self.blocking(move |s| s.show(s.get_now(&id, &scope)?))
            .await
    }

    fn get_now(&self, id: &str, scope: &Scope) -> Result<Job, JobError> {
        self.db
            .get(id)?
            .filter(|j| scope.sees(j))
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    /// A job with its latest webhook delivery (an unreadable delivery is logged and left
    /// out: the job itself still shows).
    fn show(&self, job: Job) -> Result<Shown, JobError> {
        let delivery = self
            .db
            .latest_delivery(&job.id)
            .map_err(|e| tracing::warn!(id = %job.id, error = %e, "webhook delivery unreadable"))
            .ok()
            .flatten();
        Ok(Shown { job, delivery })
    }

    /// Jobs, newest first, as `filter` picks them within `scope`, each with its latest
    /// webhook delivery.
    pub async fn list(
        self: &Arc<Self>,
        mut filter: ListFilter,
        scope: &Scope,
    ) -> Result<Vec<Shown>, JobError> {
        if let Scope::Client(name) = scope {
            filter.client = Some(name.clone());
        }
        self.blocking(move |s| s.db.list(&filter)?.into_iter().map(|j| s.show(j)).collect())
            .await
    }

    /// How far a running job has got: seconds of audio done, of how many. Known for a
    /// recording long enough to be decoded in pieces, from its first piece on; `None`
    /// otherwise (a short note is done in one step).
    pub fn progress(&self, id: &str) -> Option<Progress> {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    pub(super) fn set_progress(&self, id: &str, progress: Option<Progress>) {
        let mut map = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        match progress {
            Some(p) => map.insert(id.to_string(), p),
            None => map.remove(id),
        };
    }

    /// Jobs waiting to run: all of them, or those of one priority.
    pub async fn queued(self: &Arc<Self>, priority: Option<Priority>) -> Result<usize, JobError> {
        self.blocking(move |s| Ok(s.db.queued_count(priority)? as usize))
            .await
    }

    /// Start spooling an upload's bytes (a local temp file, made without blocking for
    /// long); [`Service::submit`] makes them durable.
    pub fn begin_upload(&self) -> Result<PendingBlob, JobError> {
        Ok(self.blobs.begin().map_err(StorageError::Io)?)
    }

    /// A job's stored audio, as uploaded.
    pub async fn audio(self: &Arc<Self>, sha256: &str) -> Result<Vec<u8>, JobError> {
        let sha = sha256.to_string();
        self.blocking(move |s| Ok(s.blobs.read(&sha).map_err(StorageError::Io)?))
            .await
    }

    /// Readiness: whether the database takes writes, and whether the audio store answers.
    pub async fn ready(self: &Arc<Self>) -> Result<(bool, std::io::Result<()>), JobError> {
        self.blocking(|s| Ok((s.db.writable(), s.blobs.check())))
            .await
    }

    /// Jobs by status (metrics); empty when the database cannot say.
    pub async fn count_by_status(self: &Arc<Self>) -> Vec<(Status, i64)> {
        self.blocking(|s| Ok(s.db.count_by_status()?))
            .await
            .map_err(|e| tracing::warn!(error = %e, "job counts unreadable"))
            .unwrap_or_default()
    }

    /// Queue a done or failed job again, its attempts counted from zero; the job as queued.
    pub async fn retry(self: &Arc<Self>, id: &str, scope: &Scope) -> Result<Shown, JobError> {
        let (id, scope) = (id.to_string(), scope.clone());
        self.blocking(move |s| {
            let job = s.get_now(&id, &scope)?;
            if matches!(job.status, Status::Running | Status::Queued) {
                return Err(JobError::NotRetryable {
                    id: id.clone(),
                    status: job.status,
                });
            }
            s.db.requeue(&id, true)?;
            s.notify();
            s.show(s.get_now(&id, &scope)?)
        })
        .await
    }

    /// Delete a job that is not running: its record, and its audio when no other record
    /// points at it.
    pub async fn delete(self: &Arc<Self>, id: &str, scope: &Scope) -> Result<(), JobError> {
        let (id, scope) = (id.to_string(), scope.clone());
        self.blocking(move |s| {
            if s.get_now(&id, &scope)?.status == Status::Running {
                return Err(JobError::Running(id.clone()));
            }
            Ok(s.remove(&id)?)
        })
        .await
    }

    /// Delete the jobs created more than `days` ago, whatever their state (the retention
    /// policy); the ids deleted.
    pub async fn expire(self: &Arc<Self>, days: u64) -> Result<Vec<String>, JobError> {
        self.blocking(move |s| {
            let mut gone = Vec::new();
            for id in s.db.expired(days)? {
                match s.remove(&id) {
                    Ok(()) => gone.push(id),
                    Err(e) => {
                        tracing::error!(id = %id, error = %e, "retention could not delete a job")
                    }
                }
            }
            Ok(gone)
        })
        .await
    }

    /// A job's record (if there is one), and its audio when no other record points at it,
    /// as one step against [`Service::submit`].
    fn remove(&self, id: &str) -> Result<(), StorageError> {
        let Some(job) = self.db.get(id)? else {
            return Ok(());
        };
        let _refs = self.lock_audio_refs();
        let _audio = self.db.lock_audio(&job.sha256)?;
        match self.db.delete(id)? {
            // A job that never got its audio (it was fetching) has none to remove.
            Deleted::AudioUnused(sha) if !sha.is_empty() => self.blobs.remove(&sha)?,
            _ => {}
        }
        Ok(())
    }

    /// Record a job whose audio is to be fetched (`fetching`, no audio yet), or the job its
    /// idempotency key made before (the same source: replayed; another: the key is reused).
    pub async fn submit_fetch(self: &Arc<Self>, job: NewJob) -> Result<Submitted, JobError> {
        self.blocking(move |s| {
            let source = job.fetch.clone();
            let submitted = match s.db.insert(job)? {
                Inserted::New(stored) => Submitted::Created(stored),
                Inserted::Existing(stored) if stored.fetch == source => Submitted::Replayed(stored),
                Inserted::Existing(stored) => Submitted::KeyReused(stored),
                Inserted::Full(full) => Submitted::QueueFull(full),
            };
            if let Submitted::Created(_) = submitted {
                s.fetch_wake.notify_all();
            }
            Ok(submitted)
        })
        .await
    }

    /// A fetching job's audio, fetched: stored as an upload is, then the job is queued.
    /// `false` (and the audio taken back) when the job is no longer fetching. Blocks: for the
    /// fetch threads.
    pub fn attach(&self, id: &str, mut blob: PendingBlob) -> Result<bool, StorageError> {
        self.blobs.stage(&mut blob)?;
        let sha = blob.sha256();
        let attached = {
            let _refs = self.lock_audio_refs();
            let _audio = self.db.lock_audio(&sha)?;
            let (sha, size) = self.blobs.commit(blob)?;
            self.db.fetched(id, &sha, size)
        };
        match attached {
            Ok(true) => {
                self.notify();
                Ok(true)
            }
            Ok(false) => {
                self.take_back(&sha);
                Ok(false)
            }
            Err(e) => {
                self.take_back(&sha);
                Err(e)
            }
        }
    }

    /// The next fetching job due, waiting up to `wait` for one to be submitted.
    pub fn next_fetch(&self, lease_ms: i64, wait: Duration) -> Result<Option<Job>, StorageError> {
        if let Some(job) = self.db.claim_fetch(lease_ms)? {
            return Ok(Some(job));
        }
        let guard = self
            .fetch_wake_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let _ = self.fetch_wake.wait_timeout(guard, wait);
        self.db.claim_fetch(lease_ms)
    }

    /// Fail a job (a fetch that cannot succeed); its webhook fires.
    pub fn fail(&self, id: &str, code: ErrorCode, message: &str) -> Result<(), StorageError> {
        self.db.finish_failed(id, code, message)
    }

    /// Try a fetch again at `at_ms`.
    pub fn fetch_later(&self, id: &str, at_ms: i64) -> Result<(), StorageError> {
        self.db.fetch_later(id, at_ms)
    }

    /// Wait until a job is done or failed, or until the service stops while the job is still
    /// queued. The job keeps running if the caller stops waiting.
    pub async fn wait(self: &Arc<Self>, id: &str) -> Result<Waited, JobError> {
        let mut finished = self.finished.subscribe();
        loop {
            let id2 = id.to_string();
            let job = self.blocking(move |s| s.get_now(&id2, &Scope::All)).await?;
            if job.status.is_finished() {
                return Ok(Waited::Finished(job));
            }
            if self.is_stopping() && job.status == Status::Queued {
                return Ok(Waited::Stopped(job));
            }
            // Woken by any job's end; the state is read again either way, so a missed or
            // lagged message costs at most the 2 s poll.
            match tokio::time::timeout(Duration::from_secs(2), finished.recv()).await {
                Ok(Ok(_)) | Err(_) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(JobError::Stopped),
            }
        }
    }

    /// Tell idle workers there is work.
    pub fn notify(&self) {
        let (m, c) = &self.wake;
        *m.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        c.notify_all();
    }

    /// Start the worker threads.
    pub fn start(self: &Arc<Self>) -> Vec<std::thread::JoinHandle<()>> {
        // Jobs queued by other nodes on a shared database wake the workers too.
        let me = Arc::downgrade(self);
        self.db.on_queued(Box::new(move || {
            if let Some(s) = me.upgrade() {
                s.notify();
            }
        }));
        (0..self.workers)
            .map(|i| {
                let q = self.clone();
                std::thread::Builder::new()
                    .name(format!("earshot-worker-{i}"))
                    .spawn(move || q.work())
                    .expect("spawn worker")
            })
            .collect()
    }

    /// Stop claiming new jobs; running ones finish (or are cancelled through the engine).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.notify();
        // Wake synchronous requests, which answer 503 for a job that will not run now.
        let _ = self.finished.send(String::new());
    }

    /// Whether the service is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// Queued jobs accepted before `POST /v1/jobs` answers 429 (`--queue-limit`).
pub const QUEUE_LIMIT: usize = 10_000;

/// Longest a synchronous request waits for a worker, by default (`--sync-max-wait`): the
/// OpenAI SDKs wait 10 minutes for an answer, but a request held much longer than this is
/// better sent to `POST /v1/jobs`.
pub const SYNC_MAX_WAIT_S: u64 = 30;

/// What became of a submitted upload.
#[derive(Debug)]
pub enum Submitted {
    /// A new job, queued.
    Created(Job),
    /// Its Idempotency-Key was seen before with the same bytes: that job.
    Replayed(Job),
    /// Its Idempotency-Key was seen before with other bytes: nothing was stored; the job
    /// that holds the key.
    KeyReused(Job),
    /// Over a queue limit (counted in the inserting transaction): nothing was stored.
    QueueFull(QueueFull),
}

/// Which jobs a caller may see and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every job: an admin key, a signed audio URL, or a service without keys.
    All,
    /// The jobs this client (API key name) created.
    Client(String),
}

impl Scope {
    /// Whether `job` is in scope. A job out of scope is answered as missing, so its id
    /// tells another client nothing.
    pub fn sees(&self, job: &Job) -> bool {
        match self {
            Scope::All => true,
            Scope::Client(name) => job.client.as_deref() == Some(name),
        }
    }
}

/// A job as the API shows it: the record, and its latest webhook delivery.
#[derive(Debug)]
pub struct Shown {
    pub job: Job,
    pub delivery: Option<Delivery>,
}

/// How a wait for a job ended.
#[derive(Debug)]
pub enum Waited {
    /// It is done or failed.
    Finished(Job),
    /// The service is stopping and the job is still queued: it runs after the restart.
    Stopped(Job),
}

/// Why the service refused a request about a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no job with id '{0}'")]
    NotFound(String),
    #[error("job {id} is {}", status.as_str())]
    NotRetryable { id: String, status: Status },
    #[error("job {0} is running; delete it when it is done")]
    Running(String),
    #[error("the worker pool stopped")]
    Stopped,
    /// A call on the blocking pool did not return (it panicked, or the runtime is going).
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl JobError {
    /// The API's code for it.
    pub fn code(&self) -> ErrorCode {
        match self {
            JobError::NotFound(_) => ErrorCode::JobNotFound,
            JobError::NotRetryable { .. } => ErrorCode::NotRetryable,
            JobError::Running(_) => ErrorCode::JobRunning,
            JobError::Stopped | JobError::Internal(_) => ErrorCode::InternalError,
            JobError::Storage(e) if e.is_full() => ErrorCode::InsufficientStorage,
            JobError::Storage(e) if e.is_unavailable() => ErrorCode::StorageUnavailable,
            JobError::Storage(_) => ErrorCode::StorageError,
        }
    }
}
